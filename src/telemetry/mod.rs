//! Observability: log lines, OpenTelemetry traces with W3C propagation, and metrics.
//!
//! Settings (the standard `OTEL_*` variables and `RUST_LOG`) are read with the rest of the
//! configuration, in [`crate::config::telemetry`].
//! - [`traces`], [`exporter`]: the tracer provider, sampler, bounded batch export over OTLP
//!   (gRPC or HTTP/protobuf), and the request id on every span.
//! - [`spans`], [`upstream`]: the span of each gRPC call, rotation, upstream HTTP request,
//!   driver phase, store transaction and NATS publish.
//! - [`propagation`]: `traceparent` / `tracestate` / `baggage` in and out.
//! - [`metrics`]: counters, histograms and gauges, as Prometheus text and over OTLP.
//! - [`logs`]: JSON log lines with `request_id`, `rotation_id`, `trace_id`, `span_id`.
//! - [`admin`]: the admin HTTP listener (`/metrics`, `/livez`, `/readyz`, `/healthz`);
//!   [`health`]: the dependencies' state it shows (NATS, the Infisical token), pushed by their
//!   owners.
//! - [`redact`]: what may go into an attribute or exception event.
//!
//! With no exporter configured there is no OpenTelemetry layer at all: spans are plain
//! `tracing` spans for the log lines, and the propagation helpers return nothing.

pub mod admin;
pub mod exporter;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod propagation;
pub mod redact;
pub mod spans;
pub mod traces;
pub mod upstream;

use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer as _, Registry};

pub use self::propagation::{current_trace_headers, inject_headers};
pub use self::spans::{driver_phase_span, producer_span, record_error, store_transaction_span};
use crate::config::LogFormat;
pub use crate::config::telemetry::TelemetrySettings;

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is not a valid filter.
    #[error("RUST_LOG is not a valid filter: {0}")]
    LogFilter(#[from] tracing_subscriber::filter::ParseError),
    /// An OTLP exporter could not be built.
    #[error(transparent)]
    Exporter(#[from] exporter::ExporterError),
    /// A global subscriber was already installed.
    #[error("a global tracing subscriber was already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber for log lines only (no OpenTelemetry): JSON or pretty, level
/// from `RUST_LOG`. For the CLI client commands and anything that must not export.
pub fn init(format: LogFormat) {
    let env: crate::config::Env = std::env::vars().filter(|(k, _)| k == "RUST_LOG").collect();
    let mut problems = Vec::new();
    let settings = TelemetrySettings::from_env(&env, &mut problems);
    let settings = TelemetrySettings {
        traces: None,
        metrics: None,
        ..settings
    };
    let installed = Telemetry::builder(&settings, format)
        .build()
        .map_err(|e| e.to_string())
        .and_then(|(dispatch, _telemetry)| {
            tracing::dispatcher::set_global_default(dispatch).map_err(|e| e.to_string())
        });
    if let Err(error) = installed {
        eprintln!("cannot install logging: {error}");
    }
}

/// The installed telemetry: flush it on shutdown. Dropping it without [`Telemetry::shutdown`]
/// loses the spans still queued.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

/// Builds the subscriber and the exporters; see [`Telemetry::builder`].
pub struct TelemetryBuilder<'a> {
    settings: &'a TelemetrySettings,
    format: LogFormat,
    writer: BoxMakeWriter,
}

// === impl Telemetry ===

impl Telemetry {
    /// Telemetry from `settings`, writing log lines in `format` to standard error.
    pub fn builder(settings: &TelemetrySettings, format: LogFormat) -> TelemetryBuilder<'_> {
        TelemetryBuilder {
            settings,
            format,
            writer: BoxMakeWriter::new(std::io::stderr),
        }
    }

    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Exports every finished span and pending metric now. Runs on the blocking pool, so the
    /// export (whose I/O is on this runtime) can make progress meanwhile.
    pub async fn flush(&self) {
        let provider = self.tracer_provider.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(provider) = provider
                && let Err(error) = provider.force_flush()
            {
                tracing::warn!(%error, "flushing spans failed");
            }
            metrics::global().flush_blocking();
        })
        .await;
    }

    /// Flushes and stops the span and metric exporters at the same time, both within the one
    /// `timeout` (so a dead collector holds the process for `timeout`, not twice it).
    pub async fn shutdown(self, timeout: Duration) {
        let spans = self.tracer_provider.map(|provider| {
            tokio::task::spawn_blocking(move || {
                if let Err(error) = provider.shutdown_with_timeout(timeout) {
                    tracing::warn!(%error, "shutting down span export failed");
                }
            })
        });
        let metrics =
            tokio::task::spawn_blocking(move || metrics::global().shutdown_blocking(timeout));
        let both = async {
            if let Some(spans) = spans {
                let _ = spans.await;
            }
            let _ = metrics.await;
        };
        // The SDK bounds each by `timeout`; this bounds the pair, whatever the SDK does.
        if tokio::time::timeout(timeout, both).await.is_err() {
            tracing::warn!("telemetry did not flush within its shutdown timeout");
        }
    }
}

// === impl TelemetryBuilder ===

impl std::fmt::Debug for TelemetryBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder<'_> {
    /// Writes log lines to `writer` instead of standard error (tests capture them this way).
    pub fn with_writer(
        mut self,
        writer: impl for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    ) -> Self {
        self.writer = BoxMakeWriter::new(writer);
        self
    }

    /// Builds the subscriber (to install globally or per test with
    /// `tracing::dispatcher::set_default`) and the exporters. The first call in a process also
    /// sets up the metrics and their OTLP reader.
    ///
    /// With an OTLP endpoint this must run inside a Tokio runtime: export I/O runs on it.
    ///
    /// # Errors
    ///
    /// [`TelemetryError`].
    pub fn build(self) -> Result<(tracing::Dispatch, Telemetry), TelemetryError> {
        let settings = self.settings;
        let log_filter = EnvFilter::try_new(&settings.log_filter)?;
        propagation::configure(settings.propagators);
        let resource = traces::resource(settings);
        let tracer_provider = traces::provider(settings, resource.clone())?;
        let metric_reader = match &settings.metrics {
            Some(target) => Some(
                opentelemetry_sdk::metrics::PeriodicReader::builder(exporter::metric_exporter(
                    target,
                )?)
                .with_interval(settings.metric_export_interval)
                .build(),
            ),
            None => None,
        };
        let wanted_otlp_metrics = metric_reader.is_some();
        if !metrics::install(resource, metric_reader) && wanted_otlp_metrics {
            tracing::warn!("metrics were set up before telemetry; OTLP metric export is off");
        }

        // Spans and INFO+ events of rotator itself go to OpenTelemetry whatever RUST_LOG says,
        // so quieting the logs never loses traces; dependencies' spans stay out of traces.
        let otel_layer = tracer_provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(traces::tracer(provider))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                // rotator reads span contexts explicitly (`span.context()`), never through
                // OpenTelemetry's thread-local current context, so attaching one on every poll
                // of every instrumented future would be pure cost.
                .with_context_activation(false)
                .with_level(false)
                .with_target(false)
                .with_filter(FilterFn::new(|meta| {
                    meta.target().starts_with("rotator")
                        && (meta.is_span() || *meta.level() <= tracing::Level::INFO)
                }))
        });
        let log_layer = match self.format {
            LogFormat::Json => logs::JsonLogLayer::new(self.writer)
                .with_filter(log_filter)
                .boxed(),
            LogFormat::Pretty => tracing_subscriber::fmt::layer()
                .with_writer(self.writer)
                .with_filter(log_filter)
                .boxed(),
        };
        let subscriber = Registry::default().with(otel_layer).with(log_layer);
        Ok((
            tracing::Dispatch::new(subscriber),
            Telemetry { tracer_provider },
        ))
    }

    /// Builds and installs the subscriber globally.
    ///
    /// # Errors
    ///
    /// [`TelemetryError`]; [`TelemetryError::AlreadyInstalled`] on a second call.
    pub fn install(self) -> Result<Telemetry, TelemetryError> {
        let (dispatch, telemetry) = self.build()?;
        tracing::dispatcher::set_global_default(dispatch)
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        Ok(telemetry)
    }
}
