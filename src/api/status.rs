//! Turns a [`ServiceError`] into a `tonic::Status` with the rich error model: `ErrorInfo`
//! (reason, domain, request ids), `RequestInfo`, and `RetryInfo` where a retry is safe.

use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic_types::{ErrorDetails, StatusExt};

use super::error::ServiceError;
use crate::context::CallContext;
use crate::engine::EngineError;
use crate::rotation::Classify as _;
use crate::upstream::infisical::UpstreamError;

/// The `ErrorInfo.domain` of every rotator error.
pub const ERROR_DOMAIN: &str = "rotator.v1";

/// Builds the status for `error`, logging internal detail under the request id.
pub fn to_status(error: &ServiceError, ctx: &CallContext) -> Status {
    let class = error.classify();
    if let ServiceError::Engine(EngineError::TaskFailed(detail)) = error {
        tracing::error!(request_id = %ctx.request_id, %detail, "internal error");
    }
    let mut info =
        std::collections::HashMap::from([("request_id".to_owned(), ctx.request_id.clone())]);
    if let Some(req_id) = error.upstream_req_id() {
        info.insert("upstream_req_id".to_owned(), req_id.to_owned());
    }
    for (key, value) in error.error_metadata() {
        info.insert(key.to_owned(), value);
    }
    if let ServiceError::Engine(EngineError::Upstream(UpstreamError::Http(f))) = error {
        info.insert("upstream_status".to_owned(), f.status.to_string());
        if let Some(name) = &f.error_name {
            info.insert("upstream_error".to_owned(), name.clone());
        }
    }
    let mut details = ErrorDetails::new();
    details.set_error_info(class.reason, ERROR_DOMAIN, info);
    details.set_request_info(ctx.request_id.clone(), "");
    if class.retry_after.is_some() {
        details.set_retry_info(class.retry_after);
    }
    let mut metadata = MetadataMap::new();
    insert_request_id(&mut metadata, &ctx.request_id);
    let message = format!("{} (request id {})", error.public_message(), ctx.request_id);
    Status::with_error_details_and_metadata(class.code, message, details, metadata)
}

/// Adds `x-request-id` to response metadata. Request ids are validated ASCII, so this holds.
pub fn insert_request_id(metadata: &mut MetadataMap, request_id: &str) {
    if let Ok(value) = request_id.parse() {
        metadata.insert("x-request-id", value);
    }
}
