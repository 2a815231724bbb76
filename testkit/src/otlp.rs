//! An OpenTelemetry collector inside the test: OTLP/gRPC (`TraceService`, `MetricsService`) or
//! OTLP/HTTP protobuf (`POST /v1/traces`, `/v1/metrics`) on 127.0.0.1:0, keeping what it receives
//! for assertions. Stopped on drop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span, status};
use prost::Message as _;

/// What the collector received.
#[derive(Default)]
struct Received {
    /// Count and drop instead of keeping (benchmarks: memory stays flat, as in a real collector).
    discard: bool,
    span_count: usize,
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

impl Received {
    fn add_traces(&mut self, request: ExportTraceServiceRequest) {
        self.span_count += request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum::<usize>();
        if !self.discard {
            self.traces.push(request);
        }
    }
}

type Shared = Arc<Mutex<Received>>;

/// A running collector.
pub struct OtlpCollector {
    addr: SocketAddr,
    protocol: &'static str,
    received: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// One exported span with the resource it came with, flattened for assertions.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    pub span: Span,
    pub resource: HashMap<String, String>,
}

impl OtlpCollector {
    /// An OTLP/gRPC collector.
    pub async fn start_grpc() -> Self {
        Self::grpc(false).await
    }

    /// An OTLP/gRPC collector that decodes and counts spans, then drops them.
    pub async fn start_grpc_discarding() -> Self {
        Self::grpc(true).await
    }

    async fn grpc(discard: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("local addr");
        let received = Shared::default();
        received.lock().expect("lock").discard = discard;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = Sink(Arc::clone(&received));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Self {
            addr,
            protocol: "grpc",
            received,
            stop: Some(stop),
        }
    }

    /// An OTLP/HTTP (protobuf) collector.
    pub async fn start_http() -> Self {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::routing::post;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("local addr");
        let received = Shared::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = axum::Router::new()
            .route(
                "/v1/traces",
                post(|State(r): State<Shared>, body: Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP traces");
                    r.lock().expect("lock").add_traces(request);
                    ExportTraceServiceResponse::default().encode_to_vec()
                }),
            )
            .route(
                "/v1/metrics",
                post(|State(r): State<Shared>, body: Bytes| async move {
                    let request = ExportMetricsServiceRequest::decode(body).expect("OTLP metrics");
                    r.lock().expect("lock").metrics.push(request);
                    ExportMetricsServiceResponse::default().encode_to_vec()
                }),
            )
            .with_state(Arc::clone(&received));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            protocol: "http/protobuf",
            received,
            stop: Some(stop),
        }
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for this collector.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `OTEL_EXPORTER_OTLP_PROTOCOL` for this collector.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        let received = self.received.lock().expect("lock");
        let mut out = Vec::new();
        for request in &received.traces {
            for rs in &request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(CollectedSpan {
                            span: span.clone(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// How many spans were received so far (kept or not).
    pub fn span_count(&self) -> usize {
        self.received.lock().expect("lock").span_count
    }

    /// Every metrics export received so far.
    pub fn metric_exports(&self) -> Vec<ExportMetricsServiceRequest> {
        self.received.lock().expect("lock").metrics.clone()
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Sink(Shared);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("lock")
            .add_traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("lock")
            .metrics
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP value as text (ints and bools printed, arrays joined).
pub fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(value_text)
            .collect::<Vec<_>>()
            .join(","),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(any_value::Value::KvlistValue(l)) => format!("{:?}", attributes(&l.values)),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Attributes as a map of texts.
pub fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(value_text).unwrap_or_default(),
            )
        })
        .collect()
}

impl CollectedSpan {
    /// The span's attributes as texts.
    pub fn attrs(&self) -> HashMap<String, String> {
        attributes(&self.span.attributes)
    }

    /// One attribute, or a panic naming the span and the key.
    pub fn attr(&self, key: &str) -> String {
        self.attrs()
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("span {:?} has no attribute {key}", self.span.name))
    }

    /// An integer attribute (the conventions type status codes and ports as ints), or a panic.
    pub fn int_attr(&self, key: &str) -> i64 {
        let value = self
            .span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref());
        match value {
            Some(any_value::Value::IntValue(i)) => *i,
            other => panic!("span {:?}: {key} is not an int: {other:?}", self.span.name),
        }
    }

    /// The span kind.
    pub fn kind(&self) -> span::SpanKind {
        span::SpanKind::try_from(self.span.kind).unwrap_or(span::SpanKind::Unspecified)
    }

    /// The trace id, hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id, hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id, hex (empty for a root).
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// Whether the status is error.
    pub fn is_error(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s: &Status| s.code == status::StatusCode::Error as i32)
    }

    /// The attributes of each event named `name`.
    pub fn events(&self, name: &str) -> Vec<HashMap<String, String>> {
        self.span
            .events
            .iter()
            .filter(|e| e.name == name)
            .map(|e| attributes(&e.attributes))
            .collect()
    }

    /// Every text the span carries: name, attribute keys and values, events, links, status.
    pub fn all_text(&self) -> Vec<String> {
        let mut out = vec![self.span.name.clone()];
        for kv in &self.span.attributes {
            out.push(kv.key.clone());
            out.push(kv.value.as_ref().map(value_text).unwrap_or_default());
        }
        for event in &self.span.events {
            out.push(event.name.clone());
            out.extend(attributes(&event.attributes).into_values());
        }
        for link in &self.span.links {
            out.extend(attributes(&link.attributes).into_values());
            out.push(link.trace_state.clone());
        }
        out.push(self.span.trace_state.clone());
        if let Some(status) = &self.span.status {
            out.push(status.message.clone());
        }
        out.extend(self.resource.values().cloned());
        out
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
