//! Building the OTLP span and metric exporters (gRPC or HTTP/protobuf) from [`OtlpTarget`]s.
//!
//! The SDK's batch span processor and periodic metric reader run on their own threads and drive
//! the exporter's future there. The gRPC exporter's tonic channel does its I/O on the Tokio
//! runtime it was built on. For OTLP/HTTP, [`RuntimeHttpClient`] does the same: the request is
//! spawned onto the runtime and the export thread only waits for its answer. So export never
//! runs on, or blocks, a runtime worker, and no blocking reqwest client (with a runtime of its
//! own) is needed.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use crate::config::telemetry::{OtlpTarget, Protocol};

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The OTLP exporter rejected its configuration.
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Export needs a Tokio runtime to do its I/O on.
    #[error("OTLP export must be set up inside a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("cannot build the OTLP/HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The OTLP span exporter for `target`.
///
/// # Errors
///
/// [`ExporterError`].
pub fn span_exporter(target: &OtlpTarget) -> Result<SpanExporter, ExporterError> {
    Ok(match target.protocol {
        Protocol::Grpc => grpc_settings(SpanExporter::builder().with_tonic(), target).build()?,
        Protocol::HttpProtobuf => {
            http_settings(SpanExporter::builder().with_http(), target)?.build()?
        }
    })
}

/// The OTLP metric exporter for `target` (cumulative temporality, as Prometheus expects).
///
/// # Errors
///
/// [`ExporterError`].
pub fn metric_exporter(target: &OtlpTarget) -> Result<MetricExporter, ExporterError> {
    Ok(match target.protocol {
        Protocol::Grpc => grpc_settings(MetricExporter::builder().with_tonic(), target).build()?,
        Protocol::HttpProtobuf => {
            http_settings(MetricExporter::builder().with_http(), target)?.build()?
        }
    })
}

/// The OTLP/gRPC settings of either exporter: endpoint, timeout, retries, headers as metadata,
/// and TLS for an `https:` endpoint.
fn grpc_settings<B: WithExportConfig + WithTonicConfig>(builder: B, target: &OtlpTarget) -> B {
    let builder = builder
        .with_endpoint(target.endpoint.clone())
        .with_timeout(target.timeout)
        .with_retry_policy(retry_policy())
        .with_metadata(metadata(target));
    if target.endpoint.starts_with("https:") {
        builder.with_tls_config(tls())
    } else {
        builder
    }
}

/// The OTLP/HTTP (protobuf) settings of either exporter, with a client that does its I/O on the
/// runtime.
fn http_settings<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    target: &OtlpTarget,
) -> Result<B, ExporterError> {
    Ok(builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(target.endpoint.clone())
        .with_timeout(target.timeout)
        .with_retry_policy(retry_policy())
        .with_headers(headers(target))
        .with_http_client(RuntimeHttpClient::new(target.timeout)?))
}

/// One retry after a short pause, instead of the SDK's three with up to 1.6 s pauses.
///
/// Every attempt clones and re-encodes the whole batch; while a collector is down, three
/// retries per batch cost more CPU than exporting to a live one (`benches/telemetry.rs`), and
/// spans queued meanwhile are dropped anyway. One retry still rides over a collector restart.
fn retry_policy() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::default()
        .with_max_retries(1)
        .with_initial_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(1))
        .with_max_jitter(Duration::from_millis(100))
}

fn tls() -> tonic::transport::ClientTlsConfig {
    tonic::transport::ClientTlsConfig::new().with_native_roots()
}

fn metadata(target: &OtlpTarget) -> MetadataMap {
    let mut map = MetadataMap::new();
    for (name, value) in &target.headers {
        if let (Ok(key), Ok(mut value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            MetadataValue::try_from(value.expose()),
        ) {
            value.set_sensitive(true);
            map.insert(key, value);
        }
    }
    map
}

fn headers(target: &OtlpTarget) -> HashMap<String, String> {
    target
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

/// An OTLP/HTTP client that runs each request on the Tokio runtime it was built on, so the
/// SDK's export threads can use the async reqwest client.
#[derive(Debug)]
pub struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

// === impl RuntimeHttpClient ===

impl RuntimeHttpClient {
    /// The longest response body read from a collector.
    const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

    /// A client bound to the current runtime, with `timeout` per request.
    ///
    /// # Errors
    ///
    /// [`ExporterError::NoRuntime`] outside a runtime; a TLS setup failure.
    pub fn new(timeout: Duration) -> Result<Self, ExporterError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ExporterError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Self { client, runtime })
    }
}

#[tonic::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut builder = Response::builder().status(response.status());
            if let Some(headers) = builder.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            if body.len() > Self::MAX_BODY_BYTES {
                return Err::<_, HttpError>("the collector's answer is too large".into());
            }
            Ok(builder.body(body)?)
        });
        task.await?
    }
}
