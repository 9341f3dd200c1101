//! Message formatting: Prosody's `util.format.format` rules, restated in Rust.
//!
//! `util.format` wraps `string.format` so that bad arguments never raise and cannot spoof log
//! lines. The common cases (plain `%s`, `%d`, `%i`, `%g`, `nil`, extra arguments) are done here
//! without touching Lua. Everything whose exact output depends on Lua itself (`__tostring`, `%q`
//! serialisation, invalid UTF-8, widths and precisions, `string.format` errors) is delegated to
//! the caller through [`Args`], which calls Prosody's own `util.format` for that one conversion.
//! `util.format` treats every conversion independently, so the delegated pieces compose into
//! exactly the string Prosody would produce.
//!
//! One job per file:
//! - this file: the arguments as the formatter sees them ([`Arg`], [`ArgValues`], [`Args`]) and
//!   the public surface;
//! - `rules`: `util.format`'s rules, the general path ([`format_message`]);
//! - `compile`: a format string split into its pieces once ([`Compiled`]);
//! - `cache`: recently used formats and their split, found by address (`FormatCache`);
//! - `fast`: the one-pass path for the most common line ([`format_simple`] into a [`FastLine`]),
//!   which checks and copies each string in the same pass and gives up, writing nothing that
//!   counts, at the first byte that needs care. The fuzz target checks it against the general
//!   path;
//! - `copy`: the byte-level work under both: which bytes need care, and word-wise copying;
//! - `numbers`: numbers as the Lua the library is built for prints them (5.1, 5.2 and LuaJIT
//!   have no integers and print `3`, 5.3 and 5.4 print the float `3.0`).

mod cache;
mod compile;
mod copy;
mod fast;
mod numbers;
mod rules;

pub(crate) use cache::FormatCache;
pub use compile::Compiled;
pub use fast::{format_simple, FastLine};
pub(crate) use numbers::push_float;
pub use numbers::{INTEGER_SUBTYPE, LUA_NAME};
pub use rules::format_message;
pub(crate) use rules::{sanitize_into, string_field};

/// One log call argument, as seen without calling into Lua.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    /// `nil`, or an argument beyond the last one given.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A Lua integer (5.3 and 5.4 only).
    Int(i64),
    /// A Lua float: every number on a Lua without integers (see [`INTEGER_SUBTYPE`]).
    Float(f64),
    /// A Lua string's bytes.
    Str(&'a [u8]),
    /// Tables, userdata, functions, threads: only Lua knows how to `tostring` them.
    Other,
}

/// Why a message could not be formatted the way `util.format` would.
pub type FormatError = String;

/// The arguments of one log call, read without calling Lua.
pub trait ArgValues<'a> {
    /// How many arguments there are.
    fn count(&self) -> usize;
    /// Argument `i` (0-based, counting after the format string); `Nil` past the last one.
    fn get(&self, i: usize) -> Arg<'a>;
}

/// [`ArgValues`], and Lua for the rare cases.
///
/// Strings handed out by [`ArgValues::get`] live for `'a`: an implementation that calls Lua in
/// the methods below must keep them alive (and unchanged) across those calls.
pub trait Args<'a>: ArgValues<'a> {
    /// Appends `util.format(spec, arg i)`.
    fn lua_format(&mut self, spec: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(), FormatError>;
    /// Appends `tostring(arg i)`, unsanitised (natively for stanzas where possible).
    fn tostring(&mut self, i: usize, out: &mut Vec<u8>) -> Result<(), FormatError>;
    /// Appends `util.format("%s", text)` for text that is not valid UTF-8 (Prosody serialises it).
    fn lua_quote(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError>;
    /// Keeps the format string `fmt` (the very string these bytes belong to) alive for as long
    /// as it sits in `FormatCache` slot `slot` (until another format takes that slot). True if
    /// it did: then no other string can have its address meanwhile, and the cache finds it by
    /// address alone.
    fn keep_format(&mut self, _fmt: &[u8], _slot: usize) -> bool {
        false
    }
}
