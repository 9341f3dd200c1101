//! The handle Lua holds for one sink: the userdata that owns the sink's Lua-thread side
//! (`LuaSink`) and, through it, the shared `Sink`. Its methods are added in `binding` (the
//! module's own), `shell`, `dumped` and `follow`.

use std::rc::Rc;
use std::sync::Arc;

use super::sink_call::LuaSink;
use crate::runtime::sink::Sink;

/// The handle Lua holds for one sink.
pub(crate) struct Handle(Rc<LuaSink>);

impl Handle {
    /// The handle of `lua_sink`.
    pub(crate) fn new(lua_sink: Rc<LuaSink>) -> Self {
        Handle(lua_sink)
    }

    /// The sink behind the handle.
    pub(crate) fn sink(&self) -> &Arc<Sink> {
        &self.0.sink
    }

    /// The Lua thread's side of the sink.
    pub(crate) fn lua_sink(&self) -> &LuaSink {
        &self.0
    }
}
