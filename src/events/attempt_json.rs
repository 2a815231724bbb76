//! The proto3 JSON of the two events every rotation attempt writes, `RotationCompleted` and
//! `RotationFailed`, serialized straight from the prost messages.
//!
//! The other events go through the descriptor set (`prost-reflect`), which decodes the message
//! into a dynamic one and looks up each field's descriptor on the way out: about 50,000
//! instructions for a 700-byte event, a quarter of a scheduled rotation's CPU when a thousand
//! fall due at once. Here it is a few thousand. The mapping is the same as `prost-reflect`'s
//! with default fields written: lowerCamelCase names, enums by name (an unknown value as its
//! number), `Timestamp` as RFC 3339 and `Duration` as seconds with an `s` (both as
//! `prost-types` prints them), non-`optional` scalars always, unset `optional` fields and
//! messages left out. The tests compare both serializations field for field, and build the
//! messages with every field named, so a field added to `events.proto` fails to compile there
//! until it is written here too.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::proto::{
    Backend, RotationAttempt, RotationCompleted, RotationFailed, RotationType, Trigger,
};

/// `RotationCompleted` in proto3 JSON.
pub(super) struct CompletedJson<'a>(pub(super) &'a RotationCompleted);

/// `RotationFailed` in proto3 JSON.
pub(super) struct FailedJson<'a>(pub(super) &'a RotationFailed);

struct AttemptJson<'a>(&'a RotationAttempt);

/// An enum field: its name, or its number when this build does not know it.
struct EnumJson(Option<&'static str>, i32);

impl Serialize for CompletedJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(attempt) = &self.0.attempt {
            map.serialize_entry("attempt", &AttemptJson(attempt))?;
        }
        map.end()
    }
}

impl Serialize for FailedJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let failed = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(attempt) = &failed.attempt {
            map.serialize_entry("attempt", &AttemptJson(attempt))?;
        }
        map.serialize_entry("code", &failed.code)?;
        map.serialize_entry("retryable", &failed.retryable)?;
        map.serialize_entry("message", &failed.message)?;
        map.serialize_entry("reason", &failed.reason)?;
        map.end()
    }
}

impl Serialize for AttemptJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("eventId", &a.event_id)?;
        if let Some(time) = &a.time {
            map.serialize_entry("time", &time.to_string())?;
        }
        map.serialize_entry("rotationId", &a.rotation_id)?;
        let kind = RotationType::try_from(a.r#type).ok();
        map.serialize_entry("type", &EnumJson(kind.map(|t| t.as_str_name()), a.r#type))?;
        for (name, value) in [
            ("name", &a.name),
            ("projectId", &a.project_id),
            ("environment", &a.environment),
            ("folderPath", &a.folder_path),
        ] {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        let backend = Backend::try_from(a.backend).ok();
        map.serialize_entry(
            "backend",
            &EnumJson(backend.map(|b| b.as_str_name()), a.backend),
        )?;
        if let Some(index) = a.active_index {
            map.serialize_entry("activeIndex", &index)?;
        }
        let trigger = Trigger::try_from(a.trigger).ok();
        map.serialize_entry(
            "trigger",
            &EnumJson(trigger.map(|t| t.as_str_name()), a.trigger),
        )?;
        map.serialize_entry("attemptNumber", &a.attempt_number)?;
        if let Some(duration) = &a.duration {
            map.serialize_entry("duration", &duration.to_string())?;
        }
        map.serialize_entry("requestId", &a.request_id)?;
        for (name, value) in [
            ("upstreamReqId", &a.upstream_req_id),
            ("traceId", &a.trace_id),
            ("resolvesEventId", &a.resolves_event_id),
        ] {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

impl Serialize for EnumJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(name) => serializer.serialize_str(name),
            None => serializer.serialize_i32(self.1),
        }
    }
}
