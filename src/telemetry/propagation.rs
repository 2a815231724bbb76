//! W3C trace context (`traceparent`, `tracestate`) and `baggage`: read from incoming gRPC
//! metadata, written into upstream HTTP headers, NATS message headers and outbox rows.
//!
//! Without the OpenTelemetry layer (no exporter configured) every span's context is empty, so
//! injection writes nothing and extraction is skipped by the callers: no cost.

use std::sync::OnceLock;

use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::telemetry::Propagators;

static PROPAGATOR: OnceLock<TextMapCompositePropagator> = OnceLock::new();

/// Chooses the propagators (`OTEL_PROPAGATORS`). The first call wins; without one, trace
/// context and baggage are both on.
pub(crate) fn configure(choice: Propagators) {
    let _ = PROPAGATOR.set(build(choice));
}

fn build(choice: Propagators) -> TextMapCompositePropagator {
    let mut list: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    if choice.trace_context {
        list.push(Box::new(TraceContextPropagator::new()));
    }
    if choice.baggage {
        list.push(Box::new(BaggagePropagator::new()));
    }
    TextMapCompositePropagator::new(list)
}

fn propagator() -> &'static TextMapCompositePropagator {
    PROPAGATOR.get_or_init(|| {
        build(Propagators {
            trace_context: true,
            baggage: true,
        })
    })
}

/// The remote parent carried by gRPC request metadata; an empty context when there is none.
pub fn extract_grpc(metadata: &tonic::metadata::MetadataMap) -> Context {
    propagator().extract(&MetadataExtractor(metadata))
}

/// The context carried by stored header pairs (an outbox row, a NATS message).
pub fn extract_pairs(pairs: &[(String, String)]) -> Context {
    propagator().extract(&PairsExtractor(pairs))
}

/// The W3C headers for `span`'s context. Empty when the span is not traced.
pub fn inject_headers(span: &tracing::Span) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    propagator().inject_context(&span.context(), &mut PairsInjector(&mut pairs));
    pairs
}

/// Writes `span`'s W3C headers into an HTTP header map.
pub fn inject_http(span: &tracing::Span, headers: &mut http::HeaderMap) {
    propagator().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The W3C trace context (`traceparent`, `tracestate`, `baggage`) of the current span, as header
/// pairs, for carrying the trace into an outbox row, an HTTP request or a NATS message.
/// Empty while no tracer is installed.
pub fn current_trace_headers() -> Vec<(String, String)> {
    inject_headers(&tracing::Span::current())
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct PairsExtractor<'a>(&'a [(String, String)]);

impl Extractor for PairsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

struct PairsInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for PairsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_caller_traceparent_in_grpc_metadata_is_the_remote_parent() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("traceparent", PARENT.parse().expect("ascii"));
        let cx = extract_grpc(&md);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn stored_pairs_round_trip_and_garbage_yields_no_parent() {
        let cx = extract_pairs(&[("traceparent".into(), PARENT.into())]);
        assert!(cx.span().span_context().is_valid());
        let cx = extract_pairs(&[("traceparent".into(), "00-zz-yy-01".into())]);
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn without_a_tracer_nothing_is_injected() {
        assert!(current_trace_headers().is_empty());
        let mut headers = http::HeaderMap::new();
        inject_http(&tracing::Span::none(), &mut headers);
        assert!(headers.is_empty());
    }
}
