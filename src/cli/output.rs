//! Printing answers: readable `key: value` lines by default, Infisical's JSON with `--json`.

use std::process::ExitCode;

use serde_json::Value;

use crate::proto::{GetGeneratedCredentialsResponse, SecretRotation};
use crate::rotation::json;

fn print_json(value: &Value) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot print JSON: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `value` as indented `key: value` lines.
fn print_readable(value: &Value, indent: usize) {
    let Value::Object(map) = value else { return };
    for (key, v) in map {
        match v {
            Value::Object(_) => {
                println!("{:indent$}{key}:", "");
                print_readable(v, indent + 2);
            }
            Value::Null => println!("{:indent$}{key}: -", ""),
            Value::String(s) => println!("{:indent$}{key}: {s}", ""),
            other => println!("{:indent$}{key}: {other}", ""),
        }
    }
}

/// Prints one rotation.
pub fn rotation(as_json: bool, rotation: Option<&SecretRotation>) -> ExitCode {
    let value = rotation.map(json::rotation_to_json).unwrap_or(Value::Null);
    if as_json {
        return print_json(&serde_json::json!({ "secretRotation": value }));
    }
    print_readable(&value, 0);
    ExitCode::SUCCESS
}

/// Prints a list of rotations.
pub fn rotations(as_json: bool, rotations: &[SecretRotation]) -> ExitCode {
    if as_json {
        let items: Vec<_> = rotations.iter().map(json::rotation_to_json).collect();
        return print_json(&serde_json::json!({ "secretRotations": items }));
    }
    println!(
        "{:<38} {:<36} {:<26} {:<8} NEXT ROTATION",
        "ID", "TYPE", "NAME", "STATUS"
    );
    for r in rotations {
        let v = json::rotation_to_json(r);
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        println!(
            "{:<38} {:<36} {:<26} {:<8} {}",
            r.id,
            text("type"),
            r.name,
            text("rotationStatus"),
            text("nextRotationAt")
        );
    }
    ExitCode::SUCCESS
}

/// Prints generated credentials.
pub fn credentials(as_json: bool, answer: &GetGeneratedCredentialsResponse) -> ExitCode {
    let value = json::generated_credentials_to_json(answer);
    if as_json {
        return print_json(&value);
    }
    println!("rotationId: {}", answer.rotation_id);
    println!("activeIndex: {}", answer.active_index);
    for (index, credential) in answer.generated_credentials.iter().enumerate() {
        let marker = if index as u32 == answer.active_index {
            " (active)"
        } else {
            ""
        };
        println!("credential {index}{marker}:");
        print_readable(&json::credential_to_json(credential), 2);
    }
    ExitCode::SUCCESS
}
