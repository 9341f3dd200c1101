//! Fuzzes the filename template renderer: never panics, and text without braces is kept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_ringbuffer_native::template::{Template, Values};

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else { return };
    let values = Values {
        pid: 4242,
        count: 7,
        time: 1_700_000_000,
        paths: vec![("data".into(), "/var/lib/prosody".into()), ("config".into(), "/etc/prosody".into())],
    };
    let rendered = Template::parse(template).render(&values);
    if !template.contains('{') {
        assert_eq!(rendered, template);
    }
});
