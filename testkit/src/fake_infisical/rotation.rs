//! The rotation model: one row of `secret_rotations_v2` with its folder, environment and
//! connection, its exact JSON shape, `nextRotationAt`, and what a successful or failed rotation
//! does to it (`lifecycle.md`).

use chrono::{DateTime, Days, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::PROVIDER_FAILURE_PREFIX;
use super::codec::iso;
use super::credentials::generate_credential;

#[derive(Clone, Debug)]
pub(super) struct Environment {
    pub(super) slug: String,
    pub(super) name: String,
    pub(super) id: Uuid,
}

#[derive(Clone, Debug)]
pub(super) struct Folder {
    pub(super) id: String,
    pub(super) env_slug: String,
    pub(super) path: String,
}

#[derive(Clone, Debug)]
pub(super) struct Connection {
    pub(super) app: &'static str,
    pub(super) name: String,
    pub(super) id: Uuid,
}

/// One row of `secret_rotations_v2`, joined, plus its decrypted generated credentials.
#[derive(Clone, Debug)]
pub(super) struct Rotation {
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) is_auto_rotation_enabled: bool,
    pub(super) active_index: usize,
    pub(super) folder: Folder,
    pub(super) connection: Connection,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) rotation_interval: u32,
    pub(super) rotation_status: &'static str,
    pub(super) last_rotation_attempted_at: DateTime<Utc>,
    pub(super) last_rotated_at: DateTime<Utc>,
    pub(super) last_rotation_job_id: Option<String>,
    pub(super) next_rotation_at: Option<DateTime<Utc>>,
    pub(super) is_last_rotation_manual: bool,
    pub(super) environment: Environment,
    pub(super) project_id: String,
    pub(super) rotate_at_utc: (u32, u32),
    pub(super) last_rotation_message: Option<String>,
    pub(super) type_slug: &'static str,
    pub(super) parameters: Value,
    pub(super) secrets_mapping: Value,
    pub(super) generated_credentials: Vec<Value>,
}

impl Rotation {
    /// The `secretRotation` object exactly as the strict serializer emits it (`infisical-api.md` §6):
    /// every field, `null` for unset nullable fields, ISO-8601 timestamps with milliseconds.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "name": self.name,
            "description": self.description,
            "isAutoRotationEnabled": self.is_auto_rotation_enabled,
            "activeIndex": self.active_index,
            "folderId": self.folder.id,
            "connectionId": self.connection.id.to_string(),
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "rotationInterval": self.rotation_interval,
            "rotationStatus": self.rotation_status,
            "lastRotationAttemptedAt": iso(self.last_rotation_attempted_at),
            "lastRotatedAt": iso(self.last_rotated_at),
            "lastRotationJobId": self.last_rotation_job_id,
            "nextRotationAt": self.next_rotation_at.map(iso),
            "isLastRotationManual": self.is_last_rotation_manual,
            "connection": {
                "app": self.connection.app,
                "name": self.connection.name,
                "id": self.connection.id.to_string(),
            },
            "environment": {
                "slug": self.environment.slug,
                "name": self.environment.name,
                "id": self.environment.id.to_string(),
            },
            "projectId": self.project_id,
            "folder": { "id": self.folder.id, "path": self.folder.path },
            "rotateAtUtc": { "hours": self.rotate_at_utc.0, "minutes": self.rotate_at_utc.1 },
            "lastRotationMessage": self.last_rotation_message,
            "type": self.type_slug,
            "parameters": self.parameters,
            "secretsMapping": self.secrets_mapping,
        })
    }

    /// The 200 body of `GET .../generated-credentials`.
    pub(super) fn generated_credentials_body(&self) -> Value {
        json!({
            "generatedCredentials": self.generated_credentials,
            "activeIndex": self.active_index,
            "rotationId": self.id.to_string(),
            "type": self.type_slug,
        })
    }

    pub(super) fn recompute_next_rotation_at(&mut self, now: DateTime<Utc>) {
        self.next_rotation_at = calculate_next_rotation_at(
            self.is_auto_rotation_enabled,
            self.rotation_status == "failed",
            self.last_rotated_at,
            self.rotation_interval,
            self.rotate_at_utc,
            self.is_last_rotation_manual,
            now,
        );
    }

    /// A successful manual rotation (`lifecycle.md` §2 and §4): new credential in the inactive slot,
    /// flip `activeIndex`, reset status and message, recompute `nextRotationAt`.
    pub(super) fn apply_successful_rotation(&mut self, now: DateTime<Utc>) {
        let inactive = (self.active_index + 1) % 2;
        let new_set = generate_credential(self.type_slug, &self.parameters, inactive);
        if inactive < self.generated_credentials.len() {
            self.generated_credentials[inactive] = new_set;
        } else {
            self.generated_credentials.push(new_set);
        }
        self.active_index = inactive;
        self.is_last_rotation_manual = true;
        self.last_rotated_at = now;
        self.last_rotation_attempted_at = now;
        self.rotation_status = "success";
        self.last_rotation_message = None;
        self.recompute_next_rotation_at(now);
        self.updated_at = now;
    }

    /// A failed final attempt (`lifecycle.md` §5.2). Returns the message for the 500 body.
    pub(super) fn apply_failed_rotation(
        &mut self,
        provider_detail: &str,
        now: DateTime<Utc>,
    ) -> String {
        let mut message = format!("{PROVIDER_FAILURE_PREFIX}{provider_detail}");
        for secret in self.known_passwords() {
            if !secret.is_empty() {
                message = message.replace(&secret, "*******************");
            }
        }
        if message.chars().count() > 1024 {
            message = format!("{}...", message.chars().take(1021).collect::<String>());
        }
        self.rotation_status = "failed";
        self.last_rotation_message = Some(message.clone());
        self.last_rotation_attempted_at = now;
        self.recompute_next_rotation_at(now);
        self.updated_at = now;
        message
    }

    pub(super) fn known_passwords(&self) -> Vec<String> {
        let mut out = Vec::new();
        for set in &self.generated_credentials {
            for key in ["password", "clientSecret", "secretAccessKey"] {
                if let Some(s) = set.get(key).and_then(Value::as_str) {
                    out.push(s.to_string());
                }
            }
        }
        out
    }
}

/// `calculateNextRotationAt` (`lifecycle.md` §7.2).
/// Disabled -> None; failed -> next UTC day at `rotateAtUtc`; otherwise the day of `lastRotatedAt` at
/// `rotateAtUtc` plus the interval, plus one more day for a manual rotation at/after `rotateAtUtc`.
pub fn calculate_next_rotation_at(
    is_auto_rotation_enabled: bool,
    rotation_failed: bool,
    last_rotated_at: DateTime<Utc>,
    rotation_interval_days: u32,
    rotate_at_utc: (u32, u32),
    is_manual: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !is_auto_rotation_enabled {
        return None;
    }
    let (hours, minutes) = (rotate_at_utc.0.min(23), rotate_at_utc.1.min(59));
    let at = |date: chrono::NaiveDate| date.and_hms_opt(hours, minutes, 0).map(|n| n.and_utc());
    if rotation_failed {
        return at(now.date_naive().checked_add_days(Days::new(1))?);
    }
    let base = at(last_rotated_at.date_naive())?;
    let mut next = base.checked_add_days(Days::new(u64::from(rotation_interval_days)))?;
    if is_manual && last_rotated_at >= base {
        next = next.checked_add_days(Days::new(1))?;
    }
    Some(next)
}
