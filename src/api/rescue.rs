//! A layer around every service of the server that (1) gives each call a request id before any
//! service sees it, and (2) rescues the statuses tonic produces on its own, before a handler
//! runs: a body that is not valid protobuf, a message over the size limit, a bad gRPC frame,
//! an unsupported encoding or an unknown method. Those statuses arrive with no details and no
//! request id, and tonic reports a malformed body as INTERNAL. The rescue gives them the same
//! rich error model as every other rotator error (ErrorInfo with the request id, RequestInfo,
//! `x-request-id`), classified in `error.rs`.
//!
//! How a tonic-made status is told apart: rotator's own handlers and interceptors always attach
//! `grpc-status-details-bin` (see `status::to_status`); a trailers-only error without it was
//! made by tonic while reading the request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::{Code, Status};

use super::admission::valid_request_id;
use super::error::ServiceError;
use super::status;
use crate::context::{CallContext, new_request_id};

/// Why tonic refused a request before a handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The body is not a valid gRPC frame of valid protobuf.
    Malformed,
    /// The message is larger than `max_message_bytes`.
    TooLarge,
    /// An unknown method or an unsupported `grpc-encoding`.
    Unsupported,
}

/// A request tonic refused, with tonic's description (field paths and sizes, never values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", match .kind {
    RejectionKind::Malformed => "malformed request",
    RejectionKind::TooLarge => "request too large",
    RejectionKind::Unsupported => "unsupported request",
})]
pub struct Rejection {
    /// What kind of refusal.
    pub kind: RejectionKind,
    /// tonic's message.
    pub detail: String,
}

/// The layer; see the module doc.
#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

/// The service the layer wraps around `S`.
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
}

// === impl Rejection ===

impl Rejection {
    /// The rejection a tonic-made status stands for; `None` for codes a request cannot cause.
    fn of(status: &Status) -> Option<Self> {
        let kind = match status.code() {
            // tonic: "failed to decode Protobuf message", bad frames, compressed flag, EOF.
            Code::Internal | Code::InvalidArgument | Code::DataLoss | Code::Unknown => {
                RejectionKind::Malformed
            }
            // tonic: "decoded message length too large".
            Code::OutOfRange | Code::ResourceExhausted => RejectionKind::TooLarge,
            // tonic: unknown route, or content compressed with an unsupported encoding.
            Code::Unimplemented => RejectionKind::Unsupported,
            _ => return None,
        };
        Some(Self {
            kind,
            detail: status.message().to_owned(),
        })
    }
}

// === impl RescueLayer ===

impl<S> tower::Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

// === impl Rescue ===

impl<S, B> tower::Service<http::Request<B>> for Rescue<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // An absent id is generated here so that every layer below sees the same one; an
        // invalid one is left for admission to refuse (with an id of its own).
        let request_id = match request.headers().get("x-request-id") {
            None => {
                let id = new_request_id();
                if let Ok(value) = http::HeaderValue::from_str(&id) {
                    request.headers_mut().insert("x-request-id", value);
                }
                id
            }
            Some(value) => value
                .to_str()
                .ok()
                .filter(|v| valid_request_id(v))
                .map_or_else(new_request_id, str::to_owned),
        };
        let future = self.inner.call(request);
        Box::pin(async move { Ok(rescue(future.await?, &request_id)) })
    }
}

fn rescue(mut response: http::Response<Body>, request_id: &str) -> http::Response<Body> {
    let ours = response.headers().contains_key("grpc-status-details-bin");
    if !ours
        && let Some(rejection) = Status::from_header_map(response.headers())
            .as_ref()
            .and_then(Rejection::of)
    {
        tracing::info!(request_id, kind = ?rejection.kind, detail = %rejection.detail, "request refused before a handler ran");
        let ctx = CallContext {
            request_id: request_id.to_owned(),
            deadline: None,
            idempotency_key: None,
        };
        return status::to_status(&ServiceError::Rejected(rejection), &ctx).into_http();
    }
    if !response.headers().contains_key("x-request-id")
        && let Ok(value) = http::HeaderValue::from_str(request_id)
    {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
