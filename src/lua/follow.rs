//! `ringbuffer:follow`'s native side: `handle:follow(...)` starts a follower (see
//! `runtime::follow`) and gives it to the shell as a userdata that the shell's timer asks for
//! batches of lines; dropping it, or `follower:stop()`, ends its thread. Bad arguments and the
//! "busy" answer are `nil, message`, never raised.

use mlua::{IntoLuaMulti, Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use super::handle::Handle;
use super::shell::{filter_from, sources, Sources};
use crate::runtime::follow::{self, Follower, Shape};

/// The most backlog lines a follower starts with.
pub(crate) const MAX_BACKLOG: usize = 10_000;

pub(crate) fn add_methods<M: UserDataMethods<Handle>>(methods: &mut M) {
    // follow(filter, pattern, backlog, not_sources, only_sources, repl_output): like scan (see
    // shell), for the lines stored from now on too; with repl_output, each batch is the admin
    // socket's `<repl-output>` message of its lines, for the shell to send as it is.
    methods.add_method(
        "follow",
        |lua, this, (filter, pattern, backlog, not_sources, only_sources, repl_output): FollowArgs| {
            let started = filter_from(filter).and_then(|mut filter| {
                filter.not_sources = sources(not_sources).unwrap_or_default();
                filter.only_sources = sources(only_sources);
                let backlog = match backlog {
                    None => 10,
                    Some(n) if (0..=MAX_BACKLOG as i64).contains(&n) => n as usize,
                    Some(n) => return Err(format!("backlog must be a whole number from 0 to {MAX_BACKLOG}, not {n}")),
                };
                let shape = if repl_output == Some(true) { Shape::ReplOutput } else { Shape::Text };
                follow::start(std::sync::Arc::clone(this.sink()), filter, pattern, backlog, shape)
            });
            match started {
                Ok(follower) => lua.create_userdata(Following(follower))?.into_lua_multi(lua),
                Err(e) => (Value::Nil, e).into_lua_multi(lua),
            }
        },
    );
}

type FollowArgs = (Option<Table>, Option<String>, Option<i64>, Sources, Sources, Option<bool>);

/// How many followers exist (their threads running), for the shell's status and the tests.
pub(crate) fn followers(_: &Lua, (): ()) -> mlua::Result<usize> {
    Ok(follow::followers())
}

struct Following(Follower);

impl UserData for Following {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // The next turn (see Follower::turn): the text for the shell to send (its lines joined
        // by newlines, or their `<repl-output>` message; nil if none), how many lines, how many
        // were skipped before them, whether more wait for a turn at once, how many bytes went
        // to `socket` (the shell's, given when nothing else waits to be written to it), and
        // whether bytes wait for the socket to take them; nothing at all if there is nothing
        // to tell now.
        methods.add_method_mut("lines", |lua, this, socket: Option<i32>| match this.0.turn(socket) {
            None => Ok(MultiValue::new()),
            Some(turn) => {
                let text =
                    if turn.text.is_empty() { Value::Nil } else { Value::String(lua.create_string(&turn.text)?) };
                this.0.give_back(turn.text);
                (text, turn.lines, turn.skipped, turn.more, turn.sent, turn.blocked).into_lua_multi(lua)
            }
        });
        // What is left of a batch the shell's socket took part of, for the shell to send
        // before anything else (its last words), or nil.
        methods.add_method_mut("unsent", |lua, this, ()| {
            this.0.take_unsent().map(|rest| lua.create_string(rest)).transpose()
        });
        methods.add_method("error", |_, this, ()| Ok(this.0.error()));
        // False if the follower was busy: ask again.
        methods.add_method("set_sources", |_, this, list: Vec<mlua::LuaString>| {
            Ok(this.0.set_sources(list.iter().map(|s| s.as_bytes().to_vec()).collect()))
        });
        // Hands the follower's thread a snapshot of the lines stored so far.
        methods.add_method("look", |_, this, ()| {
            this.0.look();
            Ok(())
        });
        methods.add_method("stop", |_, this, ()| {
            this.0.stop();
            Ok(())
        });
    }
}
