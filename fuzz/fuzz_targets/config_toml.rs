//! The configuration loader on arbitrary TOML text (and a fixed environment): it must report
//! problems, never panic, and never put a secret value into a problem.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use rotator::config::Config;

/// A value the environment holds; an `env:` reference may pull it into the config.
const SECRET: &str = "fuzz-secret-value-d41d8cd98f00b204";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `file:` references and `*_file` keys read the filesystem (a fuzzer would find /dev/zero);
    // that is I/O, not parsing, so those inputs are skipped.
    if text.contains("file") {
        return;
    }
    let env = HashMap::from([("FUZZ_SECRET".to_owned(), SECRET.to_owned())]);
    match Config::from_toml_str(text, &env) {
        Ok(config) => {
            let debug = format!("{config:?}");
            assert!(!debug.contains(SECRET), "a secret reached Debug");
        }
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.contains(SECRET), "a secret reached a config problem");
        }
    }
});
