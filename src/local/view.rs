//! A local rotation as the API answers it: the same `SecretRotation` shape as a forwarded one.

use chrono::{DateTime, Utc};

use crate::config::registry::{LocalRotation, Registry};
use crate::config::sinks::{SinkKind, SinkSpec};
use crate::proto::{
    Backend, RotationParameters, RotationStatus, SecretRotation, SecretsMapping, SinkDelivery,
};
use crate::store::deliveries::DeliveryRow;
use crate::store::local::{LocalStatus, RotationState};

/// `rotation` of `registry` with its stored `state`, shaped as Infisical answers a rotation.
pub fn secret_rotation(
    registry: &Registry,
    rotation: &LocalRotation,
    state: &RotationState,
) -> SecretRotation {
    let connection = registry.connections.get(&rotation.connection);
    SecretRotation {
        id: rotation.id.to_string(),
        name: rotation.name.clone(),
        description: rotation.description().map(str::to_owned),
        is_auto_rotation_enabled: rotation.auto_rotation,
        active_index: state.active_index,
        folder_id: String::new(),
        connection_id: connection.map(|c| c.id.to_string()).unwrap_or_default(),
        created_at: Some(timestamp(state.created_at)),
        updated_at: Some(timestamp(state.updated_at)),
        rotation_interval: rotation.interval_days,
        rotation_status: match state.status {
            LocalStatus::Success => RotationStatus::Success,
            LocalStatus::Failed => RotationStatus::Failed,
        } as i32,
        last_rotation_attempted_at: state.last_rotation_attempted_at.map(timestamp),
        last_rotated_at: state.last_rotated_at.map(timestamp),
        last_rotation_job_id: None,
        next_rotation_at: state.next_rotation_at.map(timestamp),
        is_last_rotation_manual: state.is_last_rotation_manual,
        connection: connection.map(|c| crate::proto::Connection {
            app: c.app.as_str().to_owned(),
            name: c.name.clone(),
            id: c.id.to_string(),
        }),
        environment: Some(crate::proto::Environment {
            slug: rotation.environment.clone(),
            name: rotation.environment.clone(),
            id: String::new(),
        }),
        project_id: rotation.project_id.clone(),
        folder: Some(crate::proto::Folder {
            id: String::new(),
            path: rotation.folder_path.clone(),
        }),
        rotate_at_utc: Some(crate::proto::RotateAtUtc {
            hours: rotation.rotate_at.0,
            minutes: rotation.rotate_at.1,
        }),
        last_rotation_message: state.last_message.clone(),
        r#type: rotation.rotation_type as i32,
        parameters: Some(RotationParameters {
            kind: Some(rotation.parameters.clone()),
        }),
        secrets_mapping: Some(SecretsMapping {
            kind: Some(rotation.secrets_mapping.clone()),
        }),
        backend: Backend::Local as i32,
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// One sink's delivery state as `GetSecretRotation` shows it.
pub fn sink_delivery(sink: &SinkSpec, row: Option<&DeliveryRow>) -> SinkDelivery {
    let kind = match sink.kind {
        SinkKind::File(_) => "file",
        SinkKind::Exec(_) => "exec",
        SinkKind::AwsSecretsManager(_) => "aws-secrets-manager",
        SinkKind::Infisical(_) => "infisical",
        SinkKind::KubernetesSecret(_) => "kubernetes-secret",
    };
    let Some(row) = row else {
        return SinkDelivery {
            sink: sink.name.clone(),
            kind: kind.to_owned(),
            ..SinkDelivery::default()
        };
    };
    let lagging = row.delivered_version < row.wanted_version;
    SinkDelivery {
        sink: sink.name.clone(),
        kind: kind.to_owned(),
        wanted_version: row.wanted_version,
        delivered_version: row.delivered_version,
        delivered_at: row.delivered_at.map(timestamp),
        last_error: row.last_error.clone(),
        failing_since: row.failing_since.map(timestamp),
        failures: row.failures,
        next_try_at: lagging.then(|| timestamp(row.next_try_at)),
    }
}
