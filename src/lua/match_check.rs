//! `dump_on_match` for the Lua side: `handle:match_trigger()` gives the sink's trigger (nil
//! without the option), whose `check()` a timer calls every 50 ms (see `runtime::match_trigger`).

use std::cell::RefCell;
use std::sync::Arc;

use mlua::{UserData, UserDataMethods};

use super::binding::Handle;
use crate::runtime::match_trigger::MatchTrigger;
use crate::runtime::sink::Sink;

struct MatchCheck {
    sink: Arc<Sink>,
    trigger: RefCell<MatchTrigger>,
}

impl UserData for MatchCheck {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // True if a line stored since the last call matched (a dump_on window opened or counted).
        methods.add_method("check", |_, this, ()| Ok(this.trigger.borrow_mut().check(&this.sink)));
    }
}

pub(crate) fn add_methods<M: UserDataMethods<Handle>>(methods: &mut M) {
    methods.add_method("match_trigger", |_, this, ()| {
        let sink = Arc::clone(this.sink());
        Ok(MatchTrigger::of(&sink).map(|trigger| MatchCheck { sink, trigger: RefCell::new(trigger) }))
    });
}
