//! Infisical's JSON model of a rotation, mapped to and from the proto messages.
//!
//! Reading is tolerant: unknown fields are ignored, optional fields may be absent, and numbers
//! that upstream does not check to be integers (`rotationInterval`, `rotateAtUtc`) are truncated.
//! Writing produces Infisical's camelCase shape, so `rotator get --json` looks like the upstream.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::proto::{
    self, GeneratedCredential, GetGeneratedCredentialsResponse, RotationParameters, RotationStatus,
    RotationType, SecretRotation, SecretsMapping, generated_credential, rotation_parameters,
    secrets_mapping,
};

/// Why an upstream JSON body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonModelError {
    /// The body is not the expected shape.
    #[error("unexpected JSON shape: {0}")]
    Shape(#[from] serde_json::Error),
    /// The `type` field names a type rotator does not know.
    #[error("unknown rotation type {0:?}")]
    UnknownType(String),
    /// The type-specific object does not match the rotation's type.
    #[error("the {field} of a {slug} rotation has an unexpected shape: {source}")]
    TypedField {
        field: &'static str,
        slug: &'static str,
        source: serde_json::Error,
    },
    /// A generated-credentials body is not the expected shape. serde's message is withheld on
    /// purpose: it can quote the offending value, and these values are secrets.
    #[error(
        "the generated credentials of a {slug} rotation have an unexpected shape (detail withheld: it could quote a secret)"
    )]
    CredentialShape {
        /// The rotation type, or `unknown` when the body did not say.
        slug: &'static str,
    },
}

/// Generates the per-type conversions from one list: the proto enum variant, the oneof case and
/// the slug share one identifier (`PostgresCredentials`).
macro_rules! per_type {
    ($($variant:ident),* $(,)?) => {
        pub(crate) fn parameters_from_json(t: RotationType, v: Value) -> Result<rotation_parameters::Kind, serde_json::Error> {
            use rotation_parameters::Kind;
            Ok(match t {
                $(RotationType::$variant => Kind::$variant(serde_json::from_value(v)?),)*
                RotationType::Unspecified => return Err(serde::de::Error::custom("unspecified type")),
            })
        }

        /// The rotation type of typed parameters.
        pub fn type_of_parameters(k: &rotation_parameters::Kind) -> RotationType {
            use rotation_parameters::Kind;
            match k { $(Kind::$variant(_) => RotationType::$variant,)* }
        }

        fn parameters_to_json(k: &rotation_parameters::Kind) -> Value {
            use rotation_parameters::Kind;
            match k { $(Kind::$variant(p) => serde_json::to_value(p).unwrap_or(Value::Null),)* }
        }

        pub(crate) fn mapping_from_json(t: RotationType, v: Value) -> Result<secrets_mapping::Kind, serde_json::Error> {
            use secrets_mapping::Kind;
            Ok(match t {
                $(RotationType::$variant => Kind::$variant(serde_json::from_value(v)?),)*
                RotationType::Unspecified => return Err(serde::de::Error::custom("unspecified type")),
            })
        }

        pub(crate) fn mapping_to_json(k: &secrets_mapping::Kind) -> Value {
            use secrets_mapping::Kind;
            match k { $(Kind::$variant(m) => serde_json::to_value(m).unwrap_or(Value::Null),)* }
        }

        /// Reads one generated credential of type `t` from its JSON object.
        pub fn credential_from_json(t: RotationType, v: Value) -> Result<GeneratedCredential, serde_json::Error> {
            use generated_credential::Kind;
            let kind = match t {
                $(RotationType::$variant => Kind::$variant(serde_json::from_value(v)?),)*
                RotationType::Unspecified => return Err(serde::de::Error::custom("unspecified type")),
            };
            Ok(GeneratedCredential { kind: Some(kind) })
        }

        /// Writes one generated credential as Infisical's JSON object.
        pub fn credential_to_json(c: &GeneratedCredential) -> Value {
            use generated_credential::Kind;
            match &c.kind {
                $(Some(Kind::$variant(v)) => serde_json::to_value(v).unwrap_or(Value::Null),)*
                None => Value::Null,
            }
        }
    };
}

per_type!(
    PostgresCredentials,
    MysqlCredentials,
    MssqlCredentials,
    OracledbCredentials,
    MongodbCredentials,
    RedisCredentials,
    LdapPassword,
    UnixLinuxLocalAccount,
    WindowsLocalAccount,
    Auth0ClientSecret,
    OktaClientSecret,
    AzureClientSecret,
    AwsIamUserSecret,
    DatabricksServicePrincipalSecret,
);

/// The rotation object as upstream sends it, before the type-specific parts are typed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRotation {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "default_true")]
    is_auto_rotation_enabled: bool,
    #[serde(default)]
    active_index: f64,
    folder_id: String,
    connection_id: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    rotation_interval: f64,
    /// `null` or a status this build does not know reads as unspecified (and is written back as
    /// `null`, which must read again: found by the `upstream_json` fuzz target).
    #[serde(default)]
    rotation_status: Option<String>,
    #[serde(default)]
    last_rotation_attempted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    last_rotated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    last_rotation_job_id: Option<String>,
    #[serde(default)]
    next_rotation_at: Option<DateTime<Utc>>,
    #[serde(default = "default_true")]
    is_last_rotation_manual: bool,
    connection: proto::Connection,
    environment: proto::Environment,
    project_id: String,
    folder: proto::Folder,
    rotate_at_utc: RawRotateAt,
    #[serde(default)]
    last_rotation_message: Option<String>,
    #[serde(rename = "type")]
    rotation_type: String,
    parameters: Value,
    secrets_mapping: Value,
}

#[derive(Deserialize)]
struct RawRotateAt {
    hours: f64,
    minutes: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGeneratedCredentials {
    generated_credentials: Vec<Value>,
    #[serde(default)]
    active_index: f64,
    rotation_id: String,
    #[serde(rename = "type")]
    rotation_type: String,
}

fn default_true() -> bool {
    true
}

/// Upstream does not check these numbers to be integers; the proto fields are.
fn whole(n: f64) -> u32 {
    if n.is_finite() && n > 0.0 {
        n.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn parse_type(slug: &str) -> Result<(RotationType, &'static str), JsonModelError> {
    RotationType::parse(slug)
        .and_then(|t| t.info().map(|i| (t, i.slug)))
        .ok_or_else(|| JsonModelError::UnknownType(slug.to_owned()))
}

/// Reads one upstream rotation object (the value of `secretRotation`).
pub fn rotation_from_json(value: Value) -> Result<SecretRotation, JsonModelError> {
    let raw: RawRotation = serde_json::from_value(value)?;
    let (rotation_type, slug) = parse_type(&raw.rotation_type)?;
    let parameters = parameters_from_json(rotation_type, raw.parameters).map_err(|source| {
        JsonModelError::TypedField {
            field: "parameters",
            slug,
            source,
        }
    })?;
    let mapping = mapping_from_json(rotation_type, raw.secrets_mapping).map_err(|source| {
        JsonModelError::TypedField {
            field: "secretsMapping",
            slug,
            source,
        }
    })?;
    let status = match raw.rotation_status.as_deref() {
        Some("success") => RotationStatus::Success,
        Some("failed") => RotationStatus::Failed,
        _ => RotationStatus::Unspecified,
    };
    Ok(SecretRotation {
        id: raw.id,
        name: raw.name,
        description: raw.description,
        is_auto_rotation_enabled: raw.is_auto_rotation_enabled,
        active_index: whole(raw.active_index),
        folder_id: raw.folder_id,
        connection_id: raw.connection_id,
        created_at: Some(timestamp(raw.created_at)),
        updated_at: Some(timestamp(raw.updated_at)),
        rotation_interval: whole(raw.rotation_interval),
        rotation_status: status as i32,
        last_rotation_attempted_at: raw.last_rotation_attempted_at.map(timestamp),
        last_rotated_at: raw.last_rotated_at.map(timestamp),
        last_rotation_job_id: raw.last_rotation_job_id,
        next_rotation_at: raw.next_rotation_at.map(timestamp),
        is_last_rotation_manual: raw.is_last_rotation_manual,
        connection: Some(raw.connection),
        environment: Some(raw.environment),
        project_id: raw.project_id,
        folder: Some(raw.folder),
        rotate_at_utc: Some(proto::RotateAtUtc {
            hours: whole(raw.rotate_at_utc.hours),
            minutes: whole(raw.rotate_at_utc.minutes),
        }),
        last_rotation_message: raw.last_rotation_message,
        r#type: rotation_type as i32,
        parameters: Some(RotationParameters {
            kind: Some(parameters),
        }),
        secrets_mapping: Some(SecretsMapping {
            kind: Some(mapping),
        }),
        backend: proto::Backend::Forwarded as i32,
    })
}

/// Reads the body of `GET .../generated-credentials`.
pub fn generated_credentials_from_json(
    value: Value,
) -> Result<GetGeneratedCredentialsResponse, JsonModelError> {
    let raw: RawGeneratedCredentials = serde_json::from_value(value)
        .map_err(|_| JsonModelError::CredentialShape { slug: "unknown" })?;
    let (rotation_type, slug) = parse_type(&raw.rotation_type)?;
    let generated_credentials = raw
        .generated_credentials
        .into_iter()
        .map(|c| credential_from_json(rotation_type, c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| JsonModelError::CredentialShape { slug })?;
    Ok(GetGeneratedCredentialsResponse {
        rotation_id: raw.rotation_id,
        r#type: rotation_type as i32,
        active_index: whole(raw.active_index),
        generated_credentials,
    })
}

fn time_json(t: Option<&prost_types::Timestamp>) -> Value {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// Writes a rotation in Infisical's JSON shape (the value of `secretRotation`).
pub fn rotation_to_json(r: &SecretRotation) -> Value {
    let status = match r.rotation_status() {
        RotationStatus::Success => json!("success"),
        RotationStatus::Failed => json!("failed"),
        RotationStatus::Unspecified => Value::Null,
    };
    let mut object = Map::new();
    let mut put = |key: &str, value: Value| {
        object.insert(key.to_owned(), value);
    };
    put("id", json!(r.id));
    put("name", json!(r.name));
    put("description", json!(r.description));
    put("isAutoRotationEnabled", json!(r.is_auto_rotation_enabled));
    put("activeIndex", json!(r.active_index));
    put("folderId", json!(r.folder_id));
    put("connectionId", json!(r.connection_id));
    put("createdAt", time_json(r.created_at.as_ref()));
    put("updatedAt", time_json(r.updated_at.as_ref()));
    put("rotationInterval", json!(r.rotation_interval));
    put("rotationStatus", status);
    put(
        "lastRotationAttemptedAt",
        time_json(r.last_rotation_attempted_at.as_ref()),
    );
    put("lastRotatedAt", time_json(r.last_rotated_at.as_ref()));
    put("lastRotationJobId", json!(r.last_rotation_job_id));
    put("nextRotationAt", time_json(r.next_rotation_at.as_ref()));
    put("isLastRotationManual", json!(r.is_last_rotation_manual));
    put(
        "connection",
        serde_json::to_value(&r.connection).unwrap_or(Value::Null),
    );
    put(
        "environment",
        serde_json::to_value(&r.environment).unwrap_or(Value::Null),
    );
    put("projectId", json!(r.project_id));
    put(
        "folder",
        serde_json::to_value(&r.folder).unwrap_or(Value::Null),
    );
    put(
        "rotateAtUtc",
        serde_json::to_value(r.rotate_at_utc).unwrap_or(Value::Null),
    );
    put("lastRotationMessage", json!(r.last_rotation_message));
    put("type", json!(r.r#type().slug()));
    let parameters = r.parameters.as_ref().and_then(|p| p.kind.as_ref());
    put(
        "parameters",
        parameters.map(parameters_to_json).unwrap_or(Value::Null),
    );
    let mapping = r.secrets_mapping.as_ref().and_then(|m| m.kind.as_ref());
    put(
        "secretsMapping",
        mapping.map(mapping_to_json).unwrap_or(Value::Null),
    );
    Value::Object(object)
}

/// Writes a generated-credentials answer in Infisical's JSON shape.
pub fn generated_credentials_to_json(r: &GetGeneratedCredentialsResponse) -> Value {
    json!({
        "generatedCredentials": r.generated_credentials.iter().map(credential_to_json).collect::<Vec<_>>(),
        "activeIndex": r.active_index,
        "rotationId": r.rotation_id,
        "type": r.r#type().slug(),
    })
}

/// The secret names a mapping writes to (its values), e.g. `DB_USER`, `DB_PASSWORD`.
pub fn mapped_names(
    mapping: &crate::proto::secrets_mapping::Kind,
) -> std::collections::BTreeSet<String> {
    match mapping_to_json(mapping) {
        Value::Object(fields) => fields
            .values()
            .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect(),
        _ => std::collections::BTreeSet::new(),
    }
}

/// Each mapped secret name with its value in `credential`: the mapping's field names (e.g.
/// `password`) are the credential's JSON field names. Sorted by name.
pub fn mapped_values(
    mapping: &crate::proto::secrets_mapping::Kind,
    credential: &crate::proto::GeneratedCredential,
) -> Vec<(String, crate::secret::SecretString)> {
    let Value::Object(names) = mapping_to_json(mapping) else {
        return Vec::new();
    };
    let Value::Object(values) = credential_to_json(credential) else {
        return Vec::new();
    };
    let mut out: Vec<(String, crate::secret::SecretString)> = names
        .iter()
        .filter_map(|(field, name)| {
            let name = name.as_str().filter(|s| !s.is_empty())?;
            let value = values.get(field)?.as_str()?;
            Some((
                name.to_owned(),
                crate::secret::SecretString::new(value.to_owned()),
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres_rotation() -> Value {
        json!({
            "id": "3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60",
            "name": "pg-app",
            "description": null,
            "isAutoRotationEnabled": true,
            "activeIndex": 1,
            "folderId": "9a1d8c57-2b63-4bd0-a8a1-0f3f5e3a1b22",
            "connectionId": "5b7e2f10-6c3a-4f0e-9d2b-7e1a8c4d3f55",
            "createdAt": "2025-01-10T05:00:00.000Z",
            "updatedAt": "2025-01-11T05:00:00.123Z",
            "rotationInterval": 7,
            "rotationStatus": "success",
            "lastRotationAttemptedAt": "2025-01-11T05:00:00.000Z",
            "lastRotatedAt": "2025-01-11T05:00:00.000Z",
            "lastRotationJobId": null,
            "nextRotationAt": "2025-01-18T02:00:00.000Z",
            "isLastRotationManual": true,
            "connection": {"app": "postgres", "name": "pg", "id": "5b7e2f10-6c3a-4f0e-9d2b-7e1a8c4d3f55"},
            "environment": {"slug": "prod", "name": "Production", "id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
            "projectId": "proj-1",
            "folder": {"id": "9a1d8c57", "path": "/"},
            "rotateAtUtc": {"hours": 2, "minutes": 0},
            "lastRotationMessage": null,
            "type": "postgres-credentials",
            "parameters": {"username1": "app_a", "username2": "app_b", "rotationStatement": "ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'",
                           "passwordRequirements": {"length": 32, "required": {"lowercase": 1, "uppercase": 1, "digits": 1, "symbols": 0}, "allowedSymbols": "-_"}},
            "secretsMapping": {"username": "POSTGRES_DB_USERNAME", "password": "POSTGRES_DB_PASSWORD"},
            "someFutureField": {"ignored": true}
        })
    }

    #[test]
    fn reads_every_field_and_writes_the_same_shape_back() {
        let original = postgres_rotation();
        let rotation = rotation_from_json(original.clone()).expect("valid rotation");
        assert_eq!(rotation.r#type(), RotationType::PostgresCredentials);
        assert_eq!(rotation.active_index, 1);
        assert_eq!(rotation.rotation_status(), RotationStatus::Success);
        let Some(rotation_parameters::Kind::PostgresCredentials(p)) =
            rotation.parameters.as_ref().and_then(|p| p.kind.clone())
        else {
            panic!("postgres parameters expected");
        };
        assert_eq!(p.username2, "app_b");
        assert_eq!(p.password_requirements.as_ref().map(|r| r.length), Some(32));
        let mut back = rotation_to_json(&rotation);
        let mut expected = original;
        if let Some(object) = expected.as_object_mut() {
            object.remove("someFutureField");
        }
        // Upstream omits absent optional parameters; we write them as null.
        if let Some(parameters) = back["parameters"].as_object_mut() {
            parameters.retain(|_, v| !v.is_null());
        }
        assert_eq!(back, expected);
    }

    #[test]
    fn tolerates_absent_optional_fields_and_fractional_numbers() {
        let mut value = postgres_rotation();
        let object = value.as_object_mut().expect("object");
        for key in [
            "description",
            "isAutoRotationEnabled",
            "activeIndex",
            "lastRotationJobId",
            "nextRotationAt",
            "lastRotationMessage",
        ] {
            object.remove(key);
        }
        object.insert("rotationInterval".into(), json!(7.5));
        let rotation = rotation_from_json(value).expect("tolerant read");
        assert!(rotation.is_auto_rotation_enabled);
        assert_eq!(rotation.rotation_interval, 7);
        assert_eq!(rotation.next_rotation_at, None);
    }

    #[test]
    fn rejects_an_unknown_type_and_mismatched_parameters() {
        let mut value = postgres_rotation();
        value["type"] = json!("gcp-iam-service-account-secret");
        assert!(matches!(
            rotation_from_json(value),
            Err(JsonModelError::UnknownType(_))
        ));
        let mut value = postgres_rotation();
        value["parameters"] = json!({"username1": 5});
        assert!(matches!(
            rotation_from_json(value),
            Err(JsonModelError::TypedField { .. })
        ));
    }

    #[test]
    fn a_malformed_credentials_body_never_quotes_its_values() {
        let secret = "S3cret-password-that-must-not-leak";
        let bodies = [
            json!({"generatedCredentials": [secret], "activeIndex": 0, "rotationId": "r", "type": "postgres-credentials"}),
            json!({"generatedCredentials": [{"username": "u", "password": 5}], "activeIndex": 0, "rotationId": "r", "type": "postgres-credentials"}),
            json!({"generatedCredentials": secret, "activeIndex": 0, "rotationId": "r", "type": "postgres-credentials"}),
            json!({"generatedCredentials": [], "activeIndex": secret, "rotationId": "r", "type": "postgres-credentials"}),
        ];
        for body in bodies {
            let error = generated_credentials_from_json(body).expect_err("malformed");
            assert!(matches!(error, JsonModelError::CredentialShape { .. }));
            assert!(!error.to_string().contains(secret), "{error}");
            assert!(!format!("{error:?}").contains(secret), "{error:?}");
        }
    }

    #[test]
    fn an_unknown_status_reads_as_unspecified_and_survives_a_round_trip() {
        let mut raw = postgres_rotation();
        raw["rotationStatus"] = json!("succe0ss");
        let rotation = rotation_from_json(raw).expect("an unknown status is still read");
        assert_eq!(rotation.rotation_status(), RotationStatus::Unspecified);
        let written = rotation_to_json(&rotation);
        assert_eq!(written["rotationStatus"], Value::Null);
        let again = rotation_from_json(written).expect("null reads back");
        assert_eq!(again, rotation);
    }
}
