//! CloudEvents 1.0 structured-mode JSON (`application/cloudevents+json`) of a rotation event.
//!
//! `data` is the proto3 JSON mapping of the event message (lowerCamelCase names, enums by name,
//! `Timestamp` as RFC 3339, `Duration` as `"1.500s"`), produced from the same descriptor set that
//! server reflection serves, so it always matches `events.proto`. Fields with default values
//! are written too (`"retryable": false`), unset `optional` fields are left out.

use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde::{Deserialize, Serialize};

use super::EventsError;
use super::attempt_json::{CompletedJson, FailedJson};
use super::model::RotationEvent;
use crate::proto::{RotationCompleted, RotationFailed};

/// The `content-type` NATS header of every event message.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The CloudEvents `source` of every event.
pub const SOURCE: &str = "/rotator";

/// The CloudEvents spec version.
pub const SPEC_VERSION: &str = "1.0";

static DESCRIPTORS: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
});

/// One event as a CloudEvents 1.0 structured JSON object. Extension attributes are lowercase
/// alphanumeric, as the spec requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The event id (UUIDv7), also the `Nats-Msg-Id`.
    pub id: String,
    /// Always `/rotator`.
    pub source: String,
    /// `rotator.v1.RotationCompleted`, `…RotationFailed`, `…CredentialDelivered`,
    /// `…CredentialDeliveryFailed`, `…CredentialHandoverTimedOut` or
    /// `…CredentialHandoverComplete`: the proto message of `data`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The rotation id.
    pub subject: String,
    /// When the attempt ended, RFC 3339 UTC.
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// Extension: the rotation type slug, e.g. `postgres-credentials`.
    pub rotationtype: String,
    /// Extension: `completed`, `failed`, `delivered`, `delivery-failed`, `handover-timed-out`
    /// or `handover-complete`.
    pub outcome: String,
    /// Extension: rotator's request id of the originating call (empty for deliveries).
    pub requestid: String,
    /// Distributed-tracing extension: the W3C `traceparent` of the originating call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Distributed-tracing extension: the W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The event message in proto3 JSON.
    pub data: serde_json::Value,
}

// === impl CloudEvent ===

impl CloudEvent {
    /// Wraps `event` with its envelope.
    ///
    /// # Errors
    ///
    /// [`EventsError::Encode`] when the descriptor set lacks the message (a build problem).
    pub fn new(
        event: &RotationEvent,
        time: DateTime<Utc>,
        trace_headers: &[(String, String)],
    ) -> Result<Self, EventsError> {
        let envelope = Envelope::of(event, time, trace_headers)?;
        Ok(Self {
            specversion: envelope.specversion.to_owned(),
            id: envelope.id.to_owned(),
            source: envelope.source.to_owned(),
            event_type: envelope.event_type.to_owned(),
            subject: envelope.subject.to_owned(),
            datacontenttype: envelope.datacontenttype.to_owned(),
            rotationtype: envelope.rotationtype.to_owned(),
            outcome: envelope.outcome.to_owned(),
            requestid: envelope.requestid.to_owned(),
            data: serde_json::to_value(&envelope.data)
                .map_err(|e| EventsError::Encode(e.to_string()))?,
            time: envelope.time,
            traceparent: envelope.traceparent,
            tracestate: envelope.tracestate,
        })
    }

    /// The JSON bytes of `event` with its envelope, as published: what [`CloudEvent::new`] then
    /// [`CloudEvent::to_bytes`] give, except that `data`'s keys come in field order rather than
    /// sorted. Written straight from the message, without a JSON tree in between: the tree was
    /// the costliest part of a rotation when a thousand fall due at once.
    ///
    /// # Errors
    ///
    /// As [`CloudEvent::new`].
    pub fn encode(
        event: &RotationEvent,
        time: DateTime<Utc>,
        trace_headers: &[(String, String)],
    ) -> Result<Vec<u8>, EventsError> {
        let envelope = Envelope::of(event, time, trace_headers)?;
        serde_json::to_vec(&envelope).map_err(|e| EventsError::Encode(e.to_string()))
    }

    /// The JSON bytes, as published.
    ///
    /// # Errors
    ///
    /// [`EventsError::Encode`]; JSON serialization of this shape does not fail in practice.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EventsError> {
        serde_json::to_vec(self).map_err(|e| EventsError::Encode(e.to_string()))
    }

    /// Parses a published message.
    ///
    /// # Errors
    ///
    /// [`EventsError::Encode`] when `bytes` is not a CloudEvent of this shape.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EventsError> {
        serde_json::from_slice(bytes).map_err(|e| EventsError::Encode(e.to_string()))
    }
}

/// A [`CloudEvent`] borrowed from its event, serialized field for field as [`CloudEvent`] is.
#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'static str,
    #[serde(rename = "type")]
    event_type: &'static str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    rotationtype: &'static str,
    outcome: &'static str,
    requestid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
    data: Proto3Json<'a>,
}

impl<'a> Envelope<'a> {
    fn of(
        event: &'a RotationEvent,
        time: DateTime<Utc>,
        trace_headers: &[(String, String)],
    ) -> Result<Self, EventsError> {
        let (event_id, rotation_id, request_id) = event
            .ids()
            .ok_or_else(|| EventsError::Encode("the event has no attempt".into()))?;
        let header = |name: &str| {
            trace_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        Ok(Self {
            specversion: SPEC_VERSION,
            id: event_id,
            source: SOURCE,
            event_type: event.message_name(),
            subject: rotation_id,
            time: time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            datacontenttype: "application/json",
            rotationtype: event.rotation_type().slug().unwrap_or("unspecified"),
            outcome: event.outcome().as_str(),
            requestid: request_id,
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            data: Proto3Json::of(event)?,
        })
    }
}

/// The event message, serialized in the proto3 JSON mapping: the two events of every attempt
/// by hand ([`attempt_json`](super::attempt_json), the hot path), the others through the
/// descriptor set.
enum Proto3Json<'a> {
    Completed(&'a RotationCompleted),
    Failed(&'a RotationFailed),
    Reflected(DynamicMessage),
}

impl<'a> Proto3Json<'a> {
    fn of(event: &'a RotationEvent) -> Result<Self, EventsError> {
        match event {
            RotationEvent::Completed(completed) => Ok(Self::Completed(completed)),
            RotationEvent::Failed(failed) => Ok(Self::Failed(failed)),
            other => Self::reflected(other),
        }
    }

    fn reflected(event: &RotationEvent) -> Result<Self, EventsError> {
        let pool = DESCRIPTORS
            .as_ref()
            .map_err(|e| EventsError::Encode(e.clone()))?;
        let descriptor = pool
            .get_message_by_name(event.message_name())
            .ok_or_else(|| {
                EventsError::Encode(format!(
                    "{} is not in the descriptor set",
                    event.message_name()
                ))
            })?;
        DynamicMessage::decode(descriptor, event.encode_to_vec().as_slice())
            .map(Self::Reflected)
            .map_err(|e| EventsError::Encode(e.to_string()))
    }
}

impl Serialize for Proto3Json<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Completed(completed) => CompletedJson(completed).serialize(serializer),
            Self::Failed(failed) => FailedJson(failed).serialize(serializer),
            Self::Reflected(message) => message.serialize_with_options(
                serializer,
                &SerializeOptions::new().skip_default_fields(false),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{RotationAttempt, RotationFailed, RotationType};

    /// Every field of `RotationAttempt` set (named one by one: a new field does not compile
    /// here until it is added), with sub-second parts of each precision.
    fn full_attempt(nanos: i32) -> RotationAttempt {
        RotationAttempt {
            event_id: "e-1".into(),
            time: Some(prost_types::Timestamp {
                seconds: 1_764_201_600,
                nanos,
            }),
            rotation_id: "r-1".into(),
            r#type: RotationType::RedisCredentials as i32,
            name: Some("n".into()),
            project_id: Some("p".into()),
            environment: Some("prod".into()),
            folder_path: Some("/".into()),
            backend: crate::proto::Backend::Local as i32,
            active_index: Some(0),
            trigger: crate::proto::Trigger::Scheduled as i32,
            attempt_number: 3,
            duration: Some(prost_types::Duration { seconds: 2, nanos }),
            request_id: "q-1".into(),
            upstream_req_id: Some("u-1".into()),
            trace_id: Some("t-1".into()),
            resolves_event_id: Some("e-0".into()),
        }
    }

    #[test]
    fn the_attempt_events_by_hand_match_the_descriptor_set() {
        let sparse = RotationAttempt {
            r#type: 999,
            backend: 77,
            ..Default::default()
        };
        let attempts = [0, 5_000_000, 5_000, 5]
            .map(full_attempt)
            .into_iter()
            .chain([sparse]);
        for attempt in attempts {
            let events = [
                RotationEvent::Completed(RotationCompleted {
                    attempt: Some(attempt.clone()),
                }),
                RotationEvent::Failed(RotationFailed {
                    attempt: Some(attempt.clone()),
                    code: "UNAVAILABLE".into(),
                    retryable: true,
                    message: "m".into(),
                    reason: "R".into(),
                }),
                RotationEvent::Completed(RotationCompleted { attempt: None }),
            ];
            for event in events {
                let by_hand = serde_json::to_value(Proto3Json::of(&event).expect("by hand"))
                    .expect("serialize");
                let reflected =
                    serde_json::to_value(Proto3Json::reflected(&event).expect("reflected"))
                        .expect("serialize");
                assert!(matches!(
                    Proto3Json::of(&event),
                    Ok(Proto3Json::Completed(_) | Proto3Json::Failed(_))
                ));
                assert_eq!(by_hand, reflected, "{event:?}");
            }
        }
    }

    #[test]
    fn data_is_proto3_json_with_every_non_optional_field() {
        let event = RotationEvent::Failed(RotationFailed {
            attempt: Some(RotationAttempt {
                event_id: "e-1".into(),
                time: Some(prost_types::Timestamp {
                    seconds: 1_764_201_600,
                    nanos: 0,
                }),
                rotation_id: "r-1".into(),
                r#type: RotationType::LdapPassword as i32,
                duration: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                request_id: "q-1".into(),
                attempt_number: 1,
                ..Default::default()
            }),
            code: "INTERNAL".into(),
            retryable: false,
            message: "boom".into(),
            reason: "UPSTREAM_ROTATION_FAILED".into(),
        });
        let headers = [(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        )];
        let now = Utc::now();
        let ce = CloudEvent::new(&event, now, &headers).expect("encode");
        let encoded = CloudEvent::encode(&event, now, &headers).expect("encode");
        assert_eq!(
            CloudEvent::from_bytes(&encoded).expect("parse"),
            ce,
            "the published bytes hold the same event as the tree"
        );
        assert_eq!(ce.event_type, "rotator.v1.RotationFailed");
        assert_eq!(ce.rotationtype, "ldap-password");
        assert_eq!(ce.outcome, "failed");
        assert_eq!(ce.traceparent.as_deref(), Some(headers[0].1.as_str()));
        assert_eq!(ce.tracestate, None);
        let data = &ce.data;
        assert_eq!(data["retryable"], false);
        assert_eq!(data["reason"], "UPSTREAM_ROTATION_FAILED");
        let attempt = &data["attempt"];
        assert_eq!(attempt["type"], "ROTATION_TYPE_LDAP_PASSWORD");
        assert_eq!(attempt["backend"], "BACKEND_UNSPECIFIED");
        assert_eq!(attempt["time"], "2025-11-27T00:00:00Z");
        assert_eq!(attempt["attemptNumber"], 1);
        assert!(
            attempt["duration"]
                .as_str()
                .is_some_and(|d| d.starts_with("1.5") && d.ends_with('s'))
        );
        assert!(
            attempt.get("name").is_none(),
            "unset optional fields are left out"
        );
        let bytes = ce.to_bytes().expect("bytes");
        assert_eq!(CloudEvent::from_bytes(&bytes).expect("parse"), ce);
    }
}
