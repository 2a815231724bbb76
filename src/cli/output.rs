//! Printing answers and errors: readable lines by default, Infisical's JSON with `--json`
//! (`-o json`), or the same document as YAML with `-o yaml`.
//!
//! Errors follow the format too: with `-o json`/`-o yaml` a failed command writes one document
//! `{"error": {"code", "message", "reason", "request_id", "upstream_req_id"}}` to standard error
//! (standard output stays for answers), and exits non-zero as in text mode.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::{Map, Value, json};
use tonic_types::StatusExt as _;

use crate::proto::{
    ConfirmCredentialInUseResponse, GetGeneratedCredentialsResponse, SecretRotation,
};
use crate::rotation::json;

/// How answers and errors are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Readable lines (`rotate`: one summary line).
    #[default]
    Text,
    /// Infisical's JSON shape, indented.
    Json,
    /// The JSON document as YAML.
    Yaml,
}

/// A command that failed: what is printed, and the exit code.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The gRPC code name (`NOT_FOUND`), or `INVALID_ARGUMENT` / `UNAVAILABLE` for problems
    /// found before or while connecting.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// `ErrorInfo.reason` from the server, or a `CLI_*` reason for local problems.
    pub reason: Option<String>,
    /// The request id of the call, when one was made.
    pub request_id: Option<String>,
    /// Infisical's `reqId`, when the server passed it on.
    pub upstream_req_id: Option<String>,
    /// Exit code: 2 for usage, 64 for configuration, 1 otherwise.
    pub exit: u8,
}

// === impl CliError ===

impl CliError {
    /// A bad flag or argument (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::local("INVALID_ARGUMENT", "CLI_USAGE", message, 2)
    }

    /// The server cannot be reached (exit 1).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::local("UNAVAILABLE", "CLI_CONNECT_FAILED", message, 1)
    }

    /// A configuration that does not load or lacks what the command needs (exit 64).
    pub fn config(message: impl Into<String>) -> Self {
        Self::local(
            "FAILED_PRECONDITION",
            "CLI_CONFIG",
            message,
            super::EXIT_CONFIG,
        )
    }

    /// Any other failure on this side (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::local("INTERNAL", "CLI_FAILED", message, 1)
    }

    fn local(code: &'static str, reason: &str, message: impl Into<String>, exit: u8) -> Self {
        Self {
            code,
            message: message.into(),
            reason: Some(reason.to_owned()),
            request_id: None,
            upstream_req_id: None,
            exit,
        }
    }

    /// A failed call: code, message, `ErrorInfo` reason, both request ids.
    pub fn from_status(status: &tonic::Status) -> Self {
        let info = status.get_details_error_info();
        let request_id = status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                info.as_ref()
                    .and_then(|i| i.metadata.get("request_id").cloned())
            });
        Self {
            code: code_name(status.code()),
            message: status.message().to_owned(),
            reason: info.as_ref().map(|i| i.reason.clone()),
            request_id,
            upstream_req_id: info.and_then(|i| i.metadata.get("upstream_req_id").cloned()),
            exit: 1,
        }
    }

    fn to_json(&self) -> Value {
        json!({ "error": {
            "code": self.code,
            "message": self.message,
            "reason": self.reason,
            "request_id": self.request_id,
            "upstream_req_id": self.upstream_req_id,
        }})
    }
}

/// The names of `google.rpc.Code`.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Prints `error` in `format` to standard error and returns its exit code.
pub fn error(format: Format, error: &CliError) -> ExitCode {
    match format {
        Format::Json => eprintln!(
            "{}",
            serde_json::to_string_pretty(&error.to_json()).unwrap_or_default()
        ),
        Format::Yaml => eprint!("{}", to_yaml(&error.to_json())),
        Format::Text if error.request_id.is_none() && error.reason_is_local() => {
            eprintln!("error: {}", error.message);
        }
        Format::Text => {
            eprintln!("error: {}: {}", camel(error.code), error.message);
            if let Some(reason) = &error.reason {
                eprintln!("  reason: {reason}");
            }
            if let Some(req_id) = &error.upstream_req_id {
                eprintln!("  upstream reqId: {req_id}");
            }
            eprintln!(
                "  request id: {}",
                error.request_id.as_deref().unwrap_or("-")
            );
        }
    }
    ExitCode::from(error.exit)
}

impl CliError {
    fn reason_is_local(&self) -> bool {
        self.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("CLI_"))
    }
}

/// `NOT_FOUND` → `NotFound`, as text mode has always printed it.
fn camel(code: &str) -> String {
    code.split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

fn print_document(format: Format, value: &Value) -> Result<ExitCode, CliError> {
    match format {
        Format::Yaml => print!("{}", to_yaml(value)),
        _ => {
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::failed(format!("cannot print JSON: {e}")))?;
            println!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// Prints one rotation, every field (`get`).
pub fn rotation(format: Format, rotation: Option<&SecretRotation>) -> Result<ExitCode, CliError> {
    let value = rotation.map(json::rotation_to_json).unwrap_or(Value::Null);
    if format == Format::Text {
        print_readable(&value, 0);
        return Ok(ExitCode::SUCCESS);
    }
    print_document(format, &json!({ "secretRotation": value }))
}

/// Prints a rotation just rotated: one summary line in text mode, the whole object otherwise.
pub fn rotated(format: Format, rotation: Option<&SecretRotation>) -> Result<ExitCode, CliError> {
    if format != Format::Text {
        return self::rotation(format, rotation);
    }
    let value = rotation.map(json::rotation_to_json).unwrap_or(Value::Null);
    println!("{}", summary(&value));
    Ok(ExitCode::SUCCESS)
}

/// `rotated app-db (postgres-credentials) 6c7b…  active index 1  last rotated 2026-…`
fn summary(rotation: &Value) -> String {
    let text = |key: &str| match &rotation[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    format!(
        "rotated {} ({}) {}  active index {}  last rotated {}",
        text("name"),
        text("type"),
        text("id"),
        text("activeIndex"),
        text("lastRotatedAt"),
    )
}

/// Prints a list of rotations.
pub fn rotations(format: Format, rotations: &[SecretRotation]) -> Result<ExitCode, CliError> {
    if format != Format::Text {
        let items: Vec<_> = rotations.iter().map(json::rotation_to_json).collect();
        return print_document(format, &json!({ "secretRotations": items }));
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
    Ok(ExitCode::SUCCESS)
}

/// Prints generated credentials.
pub fn credentials(
    format: Format,
    answer: &GetGeneratedCredentialsResponse,
) -> Result<ExitCode, CliError> {
    if format != Format::Text {
        return print_document(format, &json::generated_credentials_to_json(answer));
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
    Ok(ExitCode::SUCCESS)
}

/// Prints a confirmation (`confirm`): one line in text mode, the answer's JSON otherwise.
pub fn confirmed(
    format: Format,
    rotation_id: &str,
    answer: &ConfirmCredentialInUseResponse,
) -> Result<ExitCode, CliError> {
    let confirmation = answer.confirmation.clone().unwrap_or_default();
    let confirmed_at = confirmation.confirmed_at.and_then(|t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    });
    if format != Format::Text {
        return print_document(
            format,
            &json!({
                "confirmation": {
                    "consumer": confirmation.consumer,
                    "confirmedVersion": confirmation.confirmed_version,
                    "confirmedAt": confirmed_at,
                    "current": confirmation.current,
                },
                "unconfirmedConsumers": answer.unconfirmed_consumers,
            }),
        );
    }
    let waiting = if answer.unconfirmed_consumers.is_empty() {
        "handover complete".to_owned()
    } else {
        format!("waiting for {}", answer.unconfirmed_consumers.join(", "))
    };
    println!(
        "confirmed {} uses version {} of {rotation_id}  at {}  {waiting}",
        confirmation.consumer,
        confirmation.confirmed_version,
        confirmed_at.as_deref().unwrap_or("-"),
    );
    Ok(ExitCode::SUCCESS)
}

// === YAML ===
//
// A JSON document written as block-style YAML. Written here rather than with a YAML crate:
// serde_yaml is unmaintained and the output needs no more than this. Every string is written
// as a JSON string literal, which YAML reads as a double-quoted scalar with the same escapes,
// so no value can turn into another type (`no`, `1e3`, `~`) or break the layout.

/// `value` as a YAML document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => yaml_seq(&mut out, items, 0),
        scalar => {
            let _ = writeln!(out, "{}", yaml_scalar(scalar));
        }
    }
    out
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        // Numbers and booleans print the same in both; strings as JSON literals (see above).
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with('-');
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn yaml_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        let key = yaml_key(key);
        match value {
            Value::Object(inner) if is_block(value) => {
                let _ = writeln!(out, "{:indent$}{key}:", "");
                yaml_map(out, inner, indent + 2);
            }
            Value::Array(items) if is_block(value) => {
                let _ = writeln!(out, "{:indent$}{key}:", "");
                yaml_seq(out, items, indent + 2);
            }
            scalar => {
                let _ = writeln!(out, "{:indent$}{key}: {}", "", yaml_scalar(scalar));
            }
        }
    }
}

fn yaml_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            Value::Object(map) if is_block(item) => {
                // The first key on the dash line, the others aligned under it.
                let mut nested = String::new();
                yaml_map(&mut nested, map, indent + 2);
                let _ = write!(out, "{:indent$}- {}", "", &nested[indent + 2..]);
            }
            Value::Array(inner) if is_block(item) => {
                let _ = writeln!(out, "{:indent$}-", "");
                yaml_seq(out, inner, indent + 2);
            }
            scalar => {
                let _ = writeln!(out, "{:indent$}- {}", "", yaml_scalar(scalar));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_every_value_its_type() {
        let value = json!({
            "secretRotation": {
                "id": "6c7b",
                "name": "no",
                "activeIndex": 1,
                "isAutoRotationEnabled": true,
                "lastRotatedAt": null,
                "note": "a: b\n# c",
                "parameters": {},
                "users": ["x", {"a": 1, "b": [2, 3]}],
                "weird key": "1e3",
            }
        });
        let text = to_yaml(&value);
        assert_eq!(
            text,
            r#"secretRotation:
  activeIndex: 1
  id: "6c7b"
  isAutoRotationEnabled: true
  lastRotatedAt: null
  name: "no"
  note: "a: b\n# c"
  parameters: {}
  users:
    - "x"
    - a: 1
      b:
        - 2
        - 3
  "weird key": "1e3"
"#
        );
    }

    #[test]
    fn code_names_are_those_of_google_rpc_code() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(camel("DEADLINE_EXCEEDED"), "DeadlineExceeded");
    }
}
