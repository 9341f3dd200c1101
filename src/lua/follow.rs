//! `ringbuffer:follow`'s native side: `handle:follow(...)` starts a follower (see
//! `runtime::follow`) and gives it to the shell as a userdata that the shell's timer asks for
//! batches of lines; dropping it, or `follower:stop()`, ends its thread. Bad arguments and the
//! "busy" answer are `nil, message`, never raised.

use mlua::{IntoLuaMulti, Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use super::binding::Handle;
use super::shell::{filter_from, sources, Sources, BATCH_BYTES, BATCH_LINES};
use crate::runtime::follow::{self, Follower};

/// The most backlog lines a follower starts with.
pub(crate) const MAX_BACKLOG: usize = 10_000;

pub(crate) fn add_methods<M: UserDataMethods<Handle>>(methods: &mut M) {
    // follow(filter, pattern, backlog, not_sources, only_sources): like scan (see shell), for
    // the lines stored from now on too.
    methods.add_method("follow", |lua, this, (filter, pattern, backlog, not_sources, only_sources): FollowArgs| {
        let started = filter_from(filter).and_then(|mut filter| {
            filter.not_sources = sources(not_sources).unwrap_or_default();
            filter.only_sources = sources(only_sources);
            let backlog = match backlog {
                None => 10,
                Some(n) if (0..=MAX_BACKLOG as i64).contains(&n) => n as usize,
                Some(n) => return Err(format!("backlog must be a whole number from 0 to {MAX_BACKLOG}, not {n}")),
            };
            follow::start(std::sync::Arc::clone(this.sink()), filter, pattern, backlog)
        });
        match started {
            Ok(follower) => lua.create_userdata(Following(follower))?.into_lua_multi(lua),
            Err(e) => (Value::Nil, e).into_lua_multi(lua),
        }
    });
}

type FollowArgs = (Option<Table>, Option<String>, Option<i64>, Sources, Sources);

/// How many followers exist (their threads running), for the shell's status and the tests.
pub(crate) fn followers(_: &Lua, (): ()) -> mlua::Result<usize> {
    Ok(follow::followers())
}

struct Following(Follower);

impl UserData for Following {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // The next batch: its lines joined by newlines (or nil), how many, and how many lines
        // were skipped before them; nothing at all if there is nothing to tell.
        methods.add_method("lines", |lua, this, ()| match this.0.take(BATCH_LINES, BATCH_BYTES) {
            None => Ok(MultiValue::new()),
            Some(batch) => {
                let text = if batch.lines > 0 { Value::String(lua.create_string(&batch.text)?) } else { Value::Nil };
                (text, batch.lines, batch.skipped).into_lua_multi(lua)
            }
        });
        methods.add_method("has_lines", |_, this, ()| Ok(this.0.has_lines()));
        methods.add_method("error", |_, this, ()| Ok(this.0.error()));
        methods.add_method("set_sources", |_, this, list: Vec<mlua::LuaString>| {
            this.0.set_sources(list.iter().map(|s| s.as_bytes().to_vec()).collect());
            Ok(())
        });
        methods.add_method("stop", |_, this, ()| {
            this.0.stop();
            Ok(())
        });
    }
}
