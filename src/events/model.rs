//! The event model: one `RotationCompleted` or `RotationFailed` per attempt, built from the
//! [`AttemptRecord`], and `CredentialDelivered` / `CredentialDeliveryFailed` per sink delivery
//! (built by `crate::delivery`), and `CredentialHandoverTimedOut` / `CredentialHandoverComplete`
//! per confirmed handover (built by `crate::local`). Only identifiers, timings and a scrubbed
//! message: never a secret.

use tonic::Code;

use super::redact::redact_message;
use crate::proto::{
    CredentialDelivered, CredentialDeliveryFailed, CredentialHandoverComplete,
    CredentialHandoverTimedOut, DeliveryAttempt, HandoverAttempt, RotationAttempt,
    RotationCompleted, RotationFailed, RotationType,
};
use crate::rotation::AttemptRecord;

/// Whether an attempt succeeded; the last token of the event's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The rotation succeeded.
    Completed,
    /// The rotation failed.
    Failed,
    /// A sink took a committed version.
    Delivered,
    /// A try to deliver a version to a sink failed.
    DeliveryFailed,
    /// A handover grace ended before every consumer confirmed; a rotation went ahead.
    HandoverTimedOut,
    /// Every named consumer confirmed the committed version.
    HandoverComplete,
}

/// One rotation event.
#[derive(Debug, Clone, PartialEq)]
pub enum RotationEvent {
    /// A successful attempt.
    Completed(RotationCompleted),
    /// A failed attempt.
    Failed(RotationFailed),
    /// A sink took a committed version.
    Delivered(CredentialDelivered),
    /// A delivery try failed.
    DeliveryFailed(CredentialDeliveryFailed),
    /// A handover grace ended with consumers unconfirmed.
    HandoverTimedOut(CredentialHandoverTimedOut),
    /// Every named consumer confirmed.
    HandoverComplete(CredentialHandoverComplete),
}

// === impl Outcome ===

impl Outcome {
    /// Every outcome, in subject-token order of the docs.
    pub const ALL: [Self; 6] = [
        Self::Completed,
        Self::Failed,
        Self::Delivered,
        Self::DeliveryFailed,
        Self::HandoverTimedOut,
        Self::HandoverComplete,
    ];

    /// The subject token: `completed`, `failed`, `delivered`, `delivery-failed`,
    /// `handover-timed-out` or `handover-complete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::DeliveryFailed => "delivery-failed",
            Self::HandoverTimedOut => "handover-timed-out",
            Self::HandoverComplete => "handover-complete",
        }
    }

    /// Parses a subject token.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

// === impl RotationEvent ===

impl RotationEvent {
    /// Builds the event of one attempt. `trace_id` is the W3C trace id of the originating call.
    pub fn from_attempt(record: &AttemptRecord, trace_id: Option<String>) -> Self {
        let rotation = record.rotation.as_ref();
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let attempt = RotationAttempt {
            event_id: record.event_id.to_string(),
            time: Some(prost_types::Timestamp {
                seconds: record.time.timestamp(),
                nanos: i32::try_from(record.time.timestamp_subsec_nanos()).unwrap_or_default(),
            }),
            rotation_id: record.rotation_id.clone(),
            r#type: record.rotation_type as i32,
            name: rotation.and_then(|r| non_empty(&r.name)),
            project_id: rotation.and_then(|r| non_empty(&r.project_id)),
            environment: rotation
                .and_then(|r| r.environment.as_ref())
                .and_then(|e| non_empty(&e.slug)),
            folder_path: rotation
                .and_then(|r| r.folder.as_ref())
                .and_then(|f| non_empty(&f.path)),
            backend: record.backend as i32,
            active_index: rotation.map(|r| r.active_index),
            trigger: record.trigger as i32,
            attempt_number: record.attempt_number,
            duration: prost_types::Duration::try_from(record.duration).ok(),
            request_id: record.request_id.clone(),
            upstream_req_id: record.upstream_req_id.clone(),
            trace_id,
            resolves_event_id: record.resolves_event_id.map(|id| id.to_string()),
        };
        match &record.failure {
            None => Self::Completed(RotationCompleted {
                attempt: Some(attempt),
            }),
            Some(failure) => {
                let class = failure.classification;
                Self::Failed(RotationFailed {
                    attempt: Some(attempt),
                    code: code_name(class.code).to_owned(),
                    retryable: class.retry_after.is_some(),
                    message: redact_message(&failure.message, &[]),
                    reason: class.reason.to_owned(),
                })
            }
        }
    }

    /// Its outcome, the last token of its subject.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Completed(_) => Outcome::Completed,
            Self::Failed(_) => Outcome::Failed,
            Self::Delivered(_) => Outcome::Delivered,
            Self::DeliveryFailed(_) => Outcome::DeliveryFailed,
            Self::HandoverTimedOut(_) => Outcome::HandoverTimedOut,
            Self::HandoverComplete(_) => Outcome::HandoverComplete,
        }
    }

    /// The attempt a rotation event describes; `None` for a delivery event.
    pub fn attempt(&self) -> Option<&RotationAttempt> {
        match self {
            Self::Completed(e) => e.attempt.as_ref(),
            Self::Failed(e) => e.attempt.as_ref(),
            Self::Delivered(_)
            | Self::DeliveryFailed(_)
            | Self::HandoverTimedOut(_)
            | Self::HandoverComplete(_) => None,
        }
    }

    /// The delivery try a delivery event describes; `None` for a rotation event.
    pub fn delivery(&self) -> Option<&DeliveryAttempt> {
        match self {
            Self::Delivered(e) => e.delivery.as_ref(),
            Self::DeliveryFailed(e) => e.delivery.as_ref(),
            Self::Completed(_)
            | Self::Failed(_)
            | Self::HandoverTimedOut(_)
            | Self::HandoverComplete(_) => None,
        }
    }

    /// The rotation and version a handover event is about; `None` for other events.
    pub fn handover(&self) -> Option<&HandoverAttempt> {
        match self {
            Self::HandoverTimedOut(e) => e.handover.as_ref(),
            Self::HandoverComplete(e) => e.handover.as_ref(),
            Self::Completed(_) | Self::Failed(_) | Self::Delivered(_) | Self::DeliveryFailed(_) => {
                None
            }
        }
    }

    /// The event id, the rotation id and the request id (empty for a delivery), whichever
    /// kind of event this is.
    pub fn ids(&self) -> Option<(&str, &str, &str)> {
        if let Some(a) = self.attempt() {
            return Some((&a.event_id, &a.rotation_id, &a.request_id));
        }
        if let Some(h) = self.handover() {
            return Some((&h.event_id, &h.rotation_id, &h.request_id));
        }
        self.delivery()
            .map(|d| (d.event_id.as_str(), d.rotation_id.as_str(), ""))
    }

    /// The rotation type of the attempt or delivery.
    pub fn rotation_type(&self) -> RotationType {
        match (self.attempt(), self.delivery(), self.handover()) {
            (Some(a), _, _) => a.r#type(),
            (None, Some(d), _) => d.r#type(),
            (None, None, Some(h)) => h.r#type(),
            (None, None, None) => RotationType::Unspecified,
        }
    }

    /// The fully-qualified proto message name, also the CloudEvents `type`.
    pub fn message_name(&self) -> &'static str {
        match self {
            Self::Completed(_) => "rotator.v1.RotationCompleted",
            Self::Failed(_) => "rotator.v1.RotationFailed",
            Self::Delivered(_) => "rotator.v1.CredentialDelivered",
            Self::DeliveryFailed(_) => "rotator.v1.CredentialDeliveryFailed",
            Self::HandoverTimedOut(_) => "rotator.v1.CredentialHandoverTimedOut",
            Self::HandoverComplete(_) => "rotator.v1.CredentialHandoverComplete",
        }
    }

    /// The protobuf encoding of the event.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        use prost::Message as _;
        match self {
            Self::Completed(e) => e.encode_to_vec(),
            Self::Failed(e) => e.encode_to_vec(),
            Self::Delivered(e) => e.encode_to_vec(),
            Self::DeliveryFailed(e) => e.encode_to_vec(),
            Self::HandoverTimedOut(e) => e.encode_to_vec(),
            Self::HandoverComplete(e) => e.encode_to_vec(),
        }
    }
}

/// The canonical gRPC code name, e.g. `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> &'static str {
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

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), when well formed.
pub fn trace_id_of(trace_headers: &[(String, String)]) -> Option<String> {
    let (_, value) = trace_headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))?;
    let mut parts = value.trim().split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let valid = trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Backend, Environment, Folder, SecretRotation, Trigger};
    use crate::rotation::{Classification, Failure};

    fn record(failure: Option<Failure>) -> AttemptRecord {
        AttemptRecord {
            event_id: uuid::Uuid::now_v7(),
            time: chrono::Utc::now(),
            rotation_id: "3f1c2a9e-0000-4000-8000-000000000001".into(),
            rotation_type: RotationType::PostgresCredentials,
            rotation: failure.is_none().then(|| SecretRotation {
                name: "pg-app".into(),
                project_id: "proj-1".into(),
                active_index: 1,
                environment: Some(Environment {
                    slug: "prod".into(),
                    ..Default::default()
                }),
                folder: Some(Folder {
                    path: "/db".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            backend: Backend::Forwarded,
            trigger: Trigger::Manual,
            attempt_number: 1,
            duration: std::time::Duration::from_millis(1500),
            request_id: "req-1".into(),
            upstream_req_id: failure.as_ref().and_then(|f| f.upstream_req_id.clone()),
            failure,
            resolves_event_id: None,
        }
    }

    #[test]
    fn a_success_carries_what_the_rotation_says() {
        let event = RotationEvent::from_attempt(&record(None), None);
        assert_eq!(event.outcome(), Outcome::Completed);
        let a = event.attempt().expect("attempt");
        assert_eq!(a.name.as_deref(), Some("pg-app"));
        assert_eq!(a.environment.as_deref(), Some("prod"));
        assert_eq!(a.folder_path.as_deref(), Some("/db"));
        assert_eq!(a.active_index, Some(1));
        assert_eq!(
            a.duration,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
    }

    #[test]
    fn a_failure_keeps_its_classification_and_is_scrubbed() {
        let failure = Failure {
            classification: Classification::new(Code::Internal, "UPSTREAM_ROTATION_FAILED", None),
            message: format!(
                "Infisical encountered an issue: password=hunter2 {}",
                "x".repeat(2000)
            ),
            upstream_req_id: Some("req-up-1".into()),
        };
        let RotationEvent::Failed(event) =
            RotationEvent::from_attempt(&record(Some(failure)), None)
        else {
            panic!("failed event expected");
        };
        assert_eq!(event.code, "INTERNAL");
        assert_eq!(event.reason, "UPSTREAM_ROTATION_FAILED");
        assert!(!event.retryable);
        assert!(!event.message.contains("hunter2"));
        assert_eq!(event.message.chars().count(), 1024);
        let attempt = event.attempt.expect("attempt");
        assert_eq!(attempt.upstream_req_id.as_deref(), Some("req-up-1"));
        assert_eq!(attempt.active_index, None);
    }

    #[test]
    fn trace_ids_come_only_from_well_formed_traceparents() {
        let header = |v: &str| vec![("traceparent".to_owned(), v.to_owned())];
        assert_eq!(
            trace_id_of(&header(
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
            ))
            .as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(
            trace_id_of(&header(
                "00-00000000000000000000000000000000-b7ad6b7169203331-01"
            )),
            None
        );
        assert_eq!(trace_id_of(&header("garbage")), None);
        assert_eq!(trace_id_of(&[]), None);
    }
}
