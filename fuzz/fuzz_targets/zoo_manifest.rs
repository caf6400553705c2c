//! Any text given as a zoo manifest parses to a checked manifest or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = graft::zoo::parse_manifest(text, Path::new("fuzz.json"));
    }
});
