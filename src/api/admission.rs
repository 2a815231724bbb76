//! Admission of one call: the request id, the deadline, metadata limits and the concurrency
//! bound. Runs before any validation of the message itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;

use super::error::{Field, ServiceError};
use crate::context::{CallContext, new_request_id};

/// The longest request id we honour.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// The most metadata (names + values, in bytes) a call may carry.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Bounds the number of calls served at once; excess calls are refused, not queued.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
}

/// A call that was admitted: its context and its concurrency slot.
#[derive(Debug)]
pub struct Admitted {
    /// The call's context.
    pub ctx: CallContext,
    _slot: OwnedSemaphorePermit,
}

// === impl Admission ===

impl Admission {
    /// Admits at most `max_concurrent_calls` calls at once.
    pub fn new(max_concurrent_calls: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent_calls)),
        }
    }

    /// Admits a call, or says why not. The error carries the context to answer with (its
    /// request id is a generated one when the caller's was unusable).
    pub fn admit(
        &self,
        metadata: &MetadataMap,
    ) -> Result<Admitted, Box<(CallContext, ServiceError)>> {
        let fallback = || CallContext {
            request_id: new_request_id(),
            deadline: None,
            idempotency_key: None,
        };
        let request_id = match metadata.get("x-request-id") {
            None => new_request_id(),
            Some(value) => match value.to_str().ok().filter(|v| valid_request_id(v)) {
                Some(v) => v.to_owned(),
                None => {
                    let message = format!(
                        "x-request-id must be 1 to {MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ : -"
                    );
                    return Err(Box::new((
                        fallback(),
                        ServiceError::invalid(Field::RequestId, message),
                    )));
                }
            },
        };
        let deadline = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| Instant::now() + d);
        let idempotency_key = match metadata.get("idempotency-key") {
            None => None,
            Some(value) => match value.to_str().ok().filter(|v| valid_request_id(v)) {
                Some(v) => Some(v.to_owned()),
                None => {
                    let message = format!(
                        "idempotency-key must be 1 to {MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ : -"
                    );
                    return Err(Box::new((
                        fallback(),
                        ServiceError::invalid(Field::Metadata, message),
                    )));
                }
            },
        };
        let ctx = CallContext {
            request_id,
            deadline,
            idempotency_key,
        };
        let size: usize = metadata
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if size > MAX_METADATA_BYTES {
            let message = format!(
                "request metadata is {size} bytes; at most {MAX_METADATA_BYTES} are accepted"
            );
            return Err(Box::new((
                ctx,
                ServiceError::invalid(Field::Metadata, message),
            )));
        }
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => Ok(Admitted { ctx, _slot: slot }),
            Err(_) => Err(Box::new((ctx, ServiceError::Overloaded))),
        }
    }
}

/// Whether a caller's `x-request-id` is honoured: 1 to 128 of `A-Z a-z 0-9 . _ : -`.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::Classify as _;

    #[test]
    fn grpc_timeout_values_parse_and_garbage_does_not() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789S", "12x", "-5S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_honoured_or_rejected_never_rewritten() {
        let admission = Admission::new(1);
        let mut md = MetadataMap::new();
        md.insert("x-request-id", "caller-123".parse().expect("ascii"));
        assert_eq!(
            admission.admit(&md).expect("admitted").ctx.request_id,
            "caller-123"
        );
        md.insert("x-request-id", "has space".parse().expect("ascii"));
        let (ctx, err) = *admission.admit(&md).expect_err("rejected");
        assert_ne!(ctx.request_id, "has space");
        assert_eq!(err.classify().reason, "INVALID_REQUEST_ID");
    }

    #[test]
    fn calls_beyond_the_bound_are_refused() {
        let admission = Admission::new(1);
        let first = admission.admit(&MetadataMap::new()).expect("first");
        let (_, err) = *admission.admit(&MetadataMap::new()).expect_err("second");
        assert!(matches!(err, ServiceError::Overloaded));
        drop(first);
        assert!(admission.admit(&MetadataMap::new()).is_ok());
    }
}
