//! The mapping of Infisical's JSON to the proto model: arbitrary JSON must be read or refused,
//! never panic; a rotation that was read must survive being written back and read again; a
//! refused credentials body must not quote its values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotator::rotation::json;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let inner = value.get("secretRotation").cloned().unwrap_or_else(|| value.clone());
    if let Ok(rotation) = json::rotation_from_json(inner) {
        let written = json::rotation_to_json(&rotation);
        if let Err(error) = json::rotation_from_json(written.clone()) {
            panic!("a rotation we read cannot be read back after writing: {error}\n{written}");
        }
    }
    match json::generated_credentials_from_json(value.clone()) {
        Ok(credentials) => {
            let written = json::generated_credentials_to_json(&credentials);
            if let Err(error) = json::generated_credentials_from_json(written.clone()) {
                panic!("credentials we read cannot be read back after writing: {error}");
            }
        }
        // A refused body may hold secrets: only the variants that quote no value are allowed
        // (the type slug is not secret).
        Err(error) => assert!(
            matches!(
                error,
                json::JsonModelError::CredentialShape { .. } | json::JsonModelError::UnknownType(_)
            ),
            "a credentials error that may quote a value: {error:?}"
        ),
    }
});

