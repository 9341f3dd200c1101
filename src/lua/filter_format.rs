//! `message_formatter(format, tostring)`: a function that formats a log call's message the way
//! Prosody's `util.format.format` does, for the Lua side's `filter` option (a filter is given
//! the formatted message, as Prosody's file sink gives it).
//!
//! Formatting natively with `pure::format` costs about a tenth of `util.format` in Lua, which
//! would otherwise be most of a filtered line's cost. What only Lua can answer (`__tostring`,
//! `%q`, invalid UTF-8, unusual conversions) is asked of Prosody's own `util.format` and
//! `tostring`, one conversion at a time, as the sink's general path does; a message that is no
//! string, or one the rules refuse, is handed to `util.format` whole. Nothing here raises: a Lua
//! error in those calls falls back to `util.format`, and one there gives nil.

use std::cell::RefCell;

use mlua::{Function, Lua, MultiValue, Result, Value};

use crate::pure::format::{Arg, ArgValues, Args, FormatCache, FormatError};

/// What is reused from call to call: the formats' splits, and the output buffer.
#[derive(Default)]
struct FormatterBuffers {
    formats: FormatCache,
    out: Vec<u8>,
}

/// An argument with its string bytes copied out, so the formatter can borrow them.
enum CopiedArg {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    Other,
}

impl CopiedArg {
    fn of(value: &Value) -> CopiedArg {
        match value {
            Value::Nil => CopiedArg::Nil,
            Value::Boolean(b) => CopiedArg::Bool(*b),
            Value::Integer(n) => CopiedArg::Int(*n),
            Value::Number(n) => CopiedArg::Float(*n),
            Value::String(s) => CopiedArg::Str(s.as_bytes().to_vec()),
            _ => CopiedArg::Other,
        }
    }
}

/// One call's arguments, and the Lua functions for the rare conversions.
struct FilterCallArgs<'a> {
    lua: &'a Lua,
    copied: &'a [CopiedArg],
    values: &'a [Value],
    util_format: &'a Function,
    tostring: &'a Function,
}

impl<'a> ArgValues<'a> for FilterCallArgs<'a> {
    fn count(&self) -> usize {
        self.copied.len()
    }

    fn get(&self, i: usize) -> Arg<'a> {
        match self.copied.get(i) {
            None | Some(CopiedArg::Nil) => Arg::Nil,
            Some(CopiedArg::Bool(b)) => Arg::Bool(*b),
            Some(CopiedArg::Int(n)) => Arg::Int(*n),
            Some(CopiedArg::Float(n)) => Arg::Float(*n),
            Some(CopiedArg::Str(bytes)) => Arg::Str(bytes),
            Some(CopiedArg::Other) => Arg::Other,
        }
    }
}

/// Appends the string a Lua call returned.
fn append(result: Result<mlua::LuaString>, out: &mut Vec<u8>) -> std::result::Result<(), FormatError> {
    let text = result.map_err(|e| e.to_string())?;
    out.extend_from_slice(&text.as_bytes());
    Ok(())
}

impl<'a> Args<'a> for FilterCallArgs<'a> {
    fn lua_format(&mut self, spec: &[u8], i: usize, out: &mut Vec<u8>) -> std::result::Result<(), FormatError> {
        let spec = self.lua.create_string(spec).map_err(|e| e.to_string())?;
        let value = self.values.get(i).cloned().unwrap_or(Value::Nil);
        append(self.util_format.call((spec, value)), out)
    }

    fn tostring(&mut self, i: usize, out: &mut Vec<u8>) -> std::result::Result<(), FormatError> {
        let value = self.values.get(i).cloned().unwrap_or(Value::Nil);
        append(self.tostring.call(value), out)
    }

    fn lua_quote(&mut self, text: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), FormatError> {
        let text = self.lua.create_string(text).map_err(|e| e.to_string())?;
        append(self.util_format.call(("%s", text)), out)
    }
}

/// The formatter for `util_format` (Prosody's `util.format.format`) and `tostring`. It returns
/// nil, never an error, for a message that `util.format` itself cannot format (a message that
/// is no string, a `__tostring` that raises): the caller then stores the call as the sink would.
pub(crate) fn message_formatter(lua: &Lua, (util_format, tostring): (Function, Function)) -> Result<Function> {
    let buffers = RefCell::new(FormatterBuffers::default());
    lua.create_function(move |lua, (message, args): (Value, MultiValue)| {
        let Value::String(fmt) = &message else {
            return Ok(util_format.call::<Value>((message, args)).unwrap_or(Value::Nil));
        };
        let values: Vec<Value> = args.into_iter().collect();
        let copied: Vec<CopiedArg> = values.iter().map(CopiedArg::of).collect();
        let mut call =
            FilterCallArgs { lua, copied: &copied, values: &values, util_format: &util_format, tostring: &tostring };
        // A `__tostring` run from here may log through another filtered sink, which calls this
        // again: that call gets buffers of its own.
        let mut own = None;
        let mut reused = buffers.try_borrow_mut();
        let buffers = match reused.as_deref_mut() {
            Ok(buffers) => buffers,
            Err(_) => own.insert(FormatterBuffers::default()),
        };
        buffers.out.clear();
        let formatted = match buffers.formats.format(&fmt.as_bytes(), &mut call, &mut buffers.out) {
            Ok(_) => lua.create_string(&buffers.out).map(Value::String),
            Err(_) => util_format.call::<Value>((message, MultiValue::from_iter(values))),
        };
        Ok(formatted.unwrap_or(Value::Nil))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formatter, with a stand-in `util.format` that marks what it formatted.
    fn formatter(lua: &Lua) -> Function {
        let util_format: Function = lua
            .load(r#"return function (fmt, ...) return "<" .. string.format(fmt, ...) .. ">" end"#)
            .eval()
            .expect("stand-in");
        let tostring: Function = lua.globals().get("tostring").expect("tostring");
        message_formatter(lua, (util_format, tostring)).expect("formatter")
    }

    fn run(lua: &Lua, code: &str) -> Value {
        let f = formatter(lua);
        lua.globals().set("format_message", f).expect("set");
        lua.load(code).eval().expect("run")
    }

    #[test]
    fn formats_natively_and_asks_lua_for_the_rest() {
        let lua = Lua::new();
        let text = |code: &str| match run(&lua, code) {
            Value::String(s) => s.to_string_lossy(),
            other => format!("{other:?}"),
        };
        assert_eq!(text(r#"return format_message("a %s %d %s", "b", 3, nil)"#), "a b 3 (nil)");
        assert_eq!(text(r#"return format_message("extra", 1, true)"#), "extra [1] [true]");
        let tostring = r#"return format_message("%s", setmetatable({}, { __tostring = function () return "T" end }))"#;
        assert_eq!(text(tostring), "T");
        // %q is Lua's: the stand-in marks it.
        assert_eq!(text(r#"return format_message("%q", "x")"#), "<\"x\">");
        // Not a string: util.format whole; util.format raising (string.format of a table): nil.
        assert_eq!(text(r#"return format_message(42)"#), "<42>");
        assert_eq!(text(r#"return format_message({})"#), "Nil");
    }

    #[test]
    fn a_tostring_that_formats_again_gets_buffers_of_its_own() {
        let lua = Lua::new();
        let code = r#"
            local inner = setmetatable({}, { __tostring = function () return format_message("in %s %d", "x", 1) end })
            local first = format_message("out %s", inner)
            return first .. "|" .. format_message("again %s", "y")
        "#;
        match run(&lua, code) {
            Value::String(s) => assert_eq!(s.to_string_lossy(), "out in x 1|again y"),
            other => panic!("{other:?}"),
        }
    }
}
