//! The scenario loader on arbitrary text: YAML parsing (nesting and alias expansion bounded by
//! the loader's budget) and every check after it never panic, and a rejected file always says
//! where (a line, or the whole file) and what is wrong.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Err(errors) = mqtt_scenarios::load::load_str(Path::new("fuzz/case.yaml"), text) {
        let message = errors.to_string();
        assert!(!message.is_empty(), "a rejection without a message");
        assert!(
            message.contains("fuzz/case.yaml"),
            "a rejection that does not name the file: {message}"
        );
    }
});
