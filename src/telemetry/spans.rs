//! The spans rotator emits, built in one place so names and attributes stay consistent with the
//! OpenTelemetry semantic conventions (`docs/observability.md` lists them).
//!
//! | span | kind | where |
//! |---|---|---|
//! | `rotator.v1.SecretRotationService/<Method>` | server | [`ServerCall`], one per gRPC call |
//! | `rotate <type>` | internal | [`rotation`], one per rotation attempt |
//! | `<METHOD>` | client | [`super::upstream::ClientCall`], one per upstream HTTP request |
//! | `<phase> <system>` | client | [`driver_phase_span`], one per driver phase |
//! | `<operation>` (store) | client | [`store_transaction_span`], one per store transaction |
//! | `publish <subject>` | producer | [`producer_span`], one per NATS publish |
//!
//! Every span of a call carries `rotator.request_id`. Failures set the span status to error and
//! add one `exception` event whose message is redacted ([`record_error`]).

use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt as _};
use tokio::time::Instant;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{metrics, propagation, redact, traces};
use crate::proto::{Backend, RotationType, Trigger};
use crate::rotation::{AttemptRecord, Failure};

/// One gRPC call being served: its server span, its duration and its in-flight count.
///
/// Finish it with [`ServerCall::finish`]; a call dropped unfinished (the client went away and
/// tonic dropped the handler) is recorded as `CANCELLED`.
#[derive(Debug)]
pub struct ServerCall {
    span: Span,
    service: &'static str,
    method: &'static str,
    started: Instant,
    finished: bool,
    _active: metrics::ActiveCall,
}

// === impl ServerCall ===

impl ServerCall {
    /// Starts the server span of a call to `service/method`, parented on the caller's W3C
    /// trace context from `request`'s metadata.
    pub fn start<T>(
        request: &tonic::Request<T>,
        service: &'static str,
        method: &'static str,
        request_id: &str,
    ) -> Self {
        let span = tracing::info_span!(
            target: "rotator::rpc",
            "rpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            rotator.request_id = %request_id,
            rotator.rotation_id = Empty,
            rotator.rotation_type = Empty,
            error.type = Empty,
        );
        if !span.is_disabled() {
            let parent = propagation::extract_grpc(request.metadata());
            let _ = span.set_parent(traces::with_request_id(parent, request_id));
        }
        Self {
            _active: metrics::call_started(method),
            span,
            service,
            method,
            started: Instant::now(),
            finished: false,
        }
    }

    /// The server span; handlers run inside it.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Records the call's result: status code, error status and exception event, duration.
    ///
    /// The span status is error for the codes the gRPC semantic conventions count as server
    /// faults (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS);
    /// every failure, including the caller's own, still gets its exception event and code.
    pub fn finish(mut self, result: Result<(), &Failure>) {
        self.finished = true;
        let code = match result {
            Ok(()) => tonic::Code::Ok,
            Err(failure) => {
                let class = failure.classification;
                if is_server_fault(class.code) {
                    record_error(&self.span, class.reason, &failure.message);
                } else {
                    self.span.record("error.type", class.reason);
                    add_exception_event(&self.span, class.reason, &failure.message);
                }
                class.code
            }
        };
        self.record_code(code);
    }

    fn record_code(&self, code: tonic::Code) {
        self.span.record("rpc.grpc.status_code", code as i64);
        metrics::rpc_finished(self.service, self.method, code, self.started.elapsed());
    }
}

impl Drop for ServerCall {
    fn drop(&mut self) {
        if !self.finished {
            self.record_code(tonic::Code::Cancelled);
        }
    }
}

fn is_server_fault(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// Notes the rotation a call is about on the current (server) span.
pub fn record_rotation(rotation_type: RotationType, rotation_id: &str) {
    let span = Span::current();
    span.record(
        "rotator.rotation_type",
        rotation_type.slug().unwrap_or("unspecified"),
    );
    span.record("rotator.rotation_id", rotation_id);
}

/// The span of one rotation attempt. Instrument the attempt's task with it (it outlives a
/// cancelled call) and close it with [`rotation_finished`].
pub fn rotation(
    rotation_type: RotationType,
    rotation_id: &str,
    backend: Backend,
    trigger: Trigger,
    request_id: &str,
) -> Span {
    let slug = rotation_type.slug().unwrap_or("unspecified");
    let span = tracing::info_span!(
        target: "rotator::rotation",
        "rotation",
        otel.name = %format_args!("rotate {slug}"),
        rotator.rotation_id = %rotation_id,
        rotator.rotation_type = slug,
        rotator.backend = backend_label(backend),
        rotator.trigger = trigger_label(trigger),
        rotator.request_id = %request_id,
        rotator.outcome = Empty,
        error.type = Empty,
    );
    // Under a server span the rotation span is its child and inherits the call's context (the
    // request id with it). A scheduled rotation has no span above it: it roots its own trace,
    // with the id attached for its children.
    if !span.is_disabled() && Span::current().is_none() {
        let _ = span.set_parent(traces::with_request_id(
            opentelemetry::Context::new(),
            request_id,
        ));
    }
    span
}

/// Records the attempt's outcome on its span and in the rotation metrics.
pub fn rotation_finished(span: &Span, attempt: &AttemptRecord) {
    rotation_outcome(
        span,
        attempt.rotation_type,
        attempt.backend,
        attempt.failure.as_ref(),
        attempt.duration,
    );
}

/// Records a rotation's outcome on its span and in the rotation metrics, from its parts (for
/// backends that build their attempt record elsewhere).
pub fn rotation_outcome(
    span: &Span,
    rotation_type: RotationType,
    backend: Backend,
    failure: Option<&Failure>,
    duration: std::time::Duration,
) {
    let reason = failure.map(Failure::reason);
    let outcome = match failure {
        None => metrics::Outcome::Success,
        Some(failure) => {
            record_error(span, failure.reason(), &failure.message);
            metrics::Outcome::Failure
        }
    };
    span.record(
        "rotator.outcome",
        match outcome {
            metrics::Outcome::Success => "success",
            metrics::Outcome::Failure => "failure",
        },
    );
    metrics::rotation_finished(
        rotation_type.slug().unwrap_or("unspecified"),
        backend_label(backend),
        outcome,
        reason,
        duration,
    );
}

/// The span of one driver phase (`issue`, `apply`, `verify`, `revoke`) against a target system
/// (`postgresql`, `mysql`, `redis`, `ldap`, `aws.iam`, ...). `db.system.name` is set for
/// databases; `server.address` may be recorded once known. Close a failed phase with
/// [`record_error`].
///
/// # Examples
///
/// ```no_run
/// use tracing::Instrument;
/// # async fn apply() -> Result<(), std::io::Error> { Ok(()) }
/// # async fn demo() {
/// let span = rotator::telemetry::driver_phase_span("postgresql", "apply");
/// if let Err(error) = apply().instrument(span.clone()).await {
///     rotator::telemetry::record_error(&span, "DRIVER_APPLY_FAILED", &error.to_string());
/// }
/// # }
/// ```
pub fn driver_phase_span(system: &'static str, operation: &'static str) -> Span {
    let db_system = matches!(
        system,
        "postgresql" | "mysql" | "mariadb" | "mssql" | "oracle.db" | "mongodb" | "redis"
    );
    tracing::info_span!(
        target: "rotator::driver",
        "driver phase",
        otel.name = %format_args!("{operation} {system}"),
        otel.kind = "client",
        rotator.driver.system = system,
        rotator.driver.phase = operation,
        db.system.name = if db_system { Some(system) } else { None },
        server.address = Empty,
        error.type = Empty,
    )
}

/// The span of one store transaction (`commit attempt`, `claim lease`, `read outbox`, ...)
/// on `backend` (`sqlite` or `postgresql`).
pub fn store_transaction_span(backend: &'static str, operation: &'static str) -> Span {
    tracing::info_span!(
        target: "rotator::store",
        "store transaction",
        otel.name = operation,
        otel.kind = "client",
        db.system.name = backend,
        db.operation.name = operation,
        error.type = Empty,
    )
}

/// The producer span of one NATS publish of an outbox event.
///
/// Its parent is the trace context stored with the outbox row (from
/// [`super::current_trace_headers`] at the time the event was written), so a publish made
/// later, by the relay, still joins the caller's trace and the message's `traceparent`
/// ([`inject_headers`](super::inject_headers)) carries the caller's trace id. It also links to
/// that context, so backends that draw a late child apart still show where it came from.
/// Without a stored context the span is a child of the current one.
pub fn producer_span(
    subject: &str,
    event_id: &str,
    request_id: &str,
    stored_trace_headers: &[(String, String)],
) -> Span {
    let span = tracing::info_span!(
        target: "rotator::events",
        "publish",
        otel.name = %format_args!("publish {subject}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %subject,
        messaging.message.id = %event_id,
        rotator.request_id = %request_id,
        error.type = Empty,
    );
    if !span.is_disabled() {
        let stored = propagation::extract_pairs(stored_trace_headers);
        let origin = stored.span().span_context().clone();
        let parent = if origin.is_valid() {
            stored
        } else {
            Span::current().context()
        };
        let _ = span.set_parent(traces::with_request_id(parent, request_id));
        if origin.is_valid() {
            span.add_link_with_attributes(
                origin,
                vec![KeyValue::new("rotator.link", "outbox.origin")],
            );
        }
    }
    span
}

/// Marks `span` failed: status error with a redacted description, `error.type`, and one
/// `exception` event (`exception.type` = `kind`, `exception.message` redacted).
pub fn record_error(span: &Span, kind: &'static str, message: &str) {
    span.record("error.type", kind);
    let message = redact::message(message);
    span.set_status(Status::error(message.clone()));
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", kind),
            KeyValue::new("exception.message", message),
        ],
    );
}

fn add_exception_event(span: &Span, kind: &'static str, message: &str) {
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", kind),
            KeyValue::new("exception.message", redact::message(message)),
        ],
    );
}

/// The `rotator.backend` label of a backend.
pub fn backend_label(backend: Backend) -> &'static str {
    match backend {
        Backend::Forwarded => "forwarded",
        Backend::Local => "local",
        Backend::Unspecified => "unspecified",
    }
}

fn trigger_label(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Scheduled => "scheduled",
        Trigger::Unspecified => "unspecified",
    }
}
