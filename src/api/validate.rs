//! Validation of request messages, before any backend is called.

use uuid::Uuid;

use super::error::{Field, ServiceError};
use crate::proto::{RotationName, RotationType};

/// The longest name, project id, environment or path accepted.
const MAX_TEXT_LEN: usize = 256;

/// A known, specified rotation type.
pub fn rotation_type(raw: i32) -> Result<RotationType, ServiceError> {
    match RotationType::try_from(raw) {
        Ok(RotationType::Unspecified) => Err(ServiceError::invalid(
            Field::RotationType,
            "type is required: set it to a rotation type such as ROTATION_TYPE_POSTGRES_CREDENTIALS",
        )),
        Ok(t) => Ok(t),
        Err(_) => Err(ServiceError::invalid(
            Field::RotationType,
            format!("type {raw} is not a known rotation type"),
        )),
    }
}

/// A type filter: unspecified means every type.
pub fn type_filter(raw: i32) -> Result<RotationType, ServiceError> {
    RotationType::try_from(raw).map_err(|_| {
        ServiceError::invalid(
            Field::RotationType,
            format!("type {raw} is not a known rotation type"),
        )
    })
}

/// A rotation id in canonical UUID form.
pub fn rotation_id(raw: &str) -> Result<Uuid, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid(
            Field::RotationId,
            "rotation_id is required",
        ));
    }
    if raw.len() != 36 {
        return Err(ServiceError::invalid(
            Field::RotationId,
            "rotation_id must be a UUID like 3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60",
        ));
    }
    Uuid::parse_str(raw).map_err(|_| {
        ServiceError::invalid(
            Field::RotationId,
            "rotation_id must be a UUID like 3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60",
        )
    })
}

/// A consumer name as a rotation's `consumers` lists them (1-64 characters of
/// `A-Z a-z 0-9 . _ -`).
pub fn consumer(raw: &str) -> Result<&str, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid(
            Field::Consumer,
            "consumer is required",
        ));
    }
    if !crate::config::registry::is_consumer_name(raw) {
        return Err(ServiceError::invalid(
            Field::Consumer,
            "consumer must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
        ));
    }
    Ok(raw)
}

/// A committed version: 1 or more.
pub fn version(raw: u64) -> Result<u64, ServiceError> {
    if raw == 0 {
        return Err(ServiceError::invalid(
            Field::Version,
            "version is required: the committed version the consumer now uses (1 or more)",
        ));
    }
    Ok(raw)
}

/// A project id: non-empty printable text.
pub fn project_id(raw: &str) -> Result<&str, ServiceError> {
    text(raw, Field::ProjectId, "project_id")
}

/// A by-name lookup: every part present.
pub fn rotation_name(name: &RotationName) -> Result<(), ServiceError> {
    text(&name.name, Field::RotationName, "by_name.name")?;
    if !name
        .name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ServiceError::invalid(
            Field::RotationName,
            "by_name.name may hold only lowercase letters, digits and hyphens",
        ));
    }
    text(&name.project_id, Field::RotationName, "by_name.project_id")?;
    text(
        &name.environment,
        Field::RotationName,
        "by_name.environment",
    )?;
    text(
        &name.secret_path,
        Field::RotationName,
        "by_name.secret_path",
    )?;
    Ok(())
}

fn text<'a>(raw: &'a str, field: Field, name: &str) -> Result<&'a str, ServiceError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::invalid(field, format!("{name} is required")));
    }
    if raw.len() > MAX_TEXT_LEN {
        return Err(ServiceError::invalid(
            field,
            format!("{name} is longer than {MAX_TEXT_LEN} bytes"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            format!("{name} contains control characters"),
        ));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_ids_and_names_are_checked() {
        assert!(rotation_type(0).is_err());
        assert!(rotation_type(99).is_err());
        assert_eq!(
            rotation_type(1).ok(),
            Some(RotationType::PostgresCredentials)
        );
        assert!(type_filter(0).is_ok());
        assert!(rotation_id("").is_err());
        assert!(rotation_id("not-a-uuid").is_err());
        assert!(rotation_id("3f0c5a0e8d4b4d1e9a432b8f4c1d7e60").is_err());
        assert!(rotation_id("3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60").is_ok());
        assert!(project_id(" ").is_err());
        assert!(project_id(&"p".repeat(300)).is_err());
        let mut name = RotationName {
            name: "pg-app".into(),
            project_id: "p".into(),
            environment: "prod".into(),
            secret_path: "/".into(),
        };
        assert!(rotation_name(&name).is_ok());
        name.name = "Bad Name".into();
        assert!(rotation_name(&name).is_err());
    }
}
