//! Logging setup: structured JSON or pretty lines, level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if result.is_err() {
        eprintln!("a global tracing subscriber was already installed");
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) of the current span, as header pairs,
/// for carrying the trace into an outbox row, an HTTP request or a NATS message.
/// Empty while no tracer is installed.
pub fn current_trace_headers() -> Vec<(String, String)> {
    Vec::new()
}
