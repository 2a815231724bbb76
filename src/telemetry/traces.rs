//! The tracer provider: sampler, resource, the bounded batch span processor, and the request-id
//! propagation that puts `rotator.request_id` on every span of a call.
//!
//! The request id rides in the OpenTelemetry [`Context`] of the call's root span (see
//! [`with_request_id`]); every span started below it inherits that context, and
//! [`RequestIdProcessor`] copies the id into the span's attributes when it starts. Spans that
//! also name it as a field keep one copy: [`DedupAttributes`] drops the repeat before export.

use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};

use super::exporter::{self, ExporterError};
use crate::config::telemetry::{SamplerSetting, TelemetrySettings};

/// The instrumentation scope of rotator's spans.
pub const TRACER_NAME: &str = "rotator";
/// The attribute every span of a call carries.
pub const REQUEST_ID: &str = "rotator.request_id";

/// The request id of the call a context belongs to.
#[derive(Debug, Clone)]
struct RequestId(Arc<str>);

/// `cx` with `request_id` attached, for use as a call's root parent.
pub fn with_request_id(cx: Context, request_id: &str) -> Context {
    cx.with_value(RequestId(Arc::from(request_id)))
}

/// The resource of every signal: `service.name`, `service.version` and
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource(settings: &TelemetrySettings) -> Resource {
    Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

/// A tracer provider exporting to the configured OTLP endpoint, or `None` when none is set.
///
/// # Errors
///
/// The exporter could not be built.
pub fn provider(
    settings: &TelemetrySettings,
    resource: Resource,
) -> Result<Option<SdkTracerProvider>, ExporterError> {
    let Some(target) = &settings.traces else {
        return Ok(None);
    };
    let exporter = exporter::span_exporter(target)?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(settings.batch.max_queue_size)
        .with_scheduled_delay(settings.batch.scheduled_delay)
        .with_max_export_batch_size(settings.batch.max_export_batch_size)
        .build();
    let processor = BatchSpanProcessor::builder(DedupAttributes(exporter))
        .with_batch_config(batch)
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler(settings.sampler))
            .with_span_processor(RequestIdProcessor(processor))
            .build(),
    ))
}

/// The tracer rotator's spans are created with.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer(TRACER_NAME)
}

fn sampler(setting: SamplerSetting) -> Sampler {
    match setting {
        SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
        SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
        SamplerSetting::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerSetting::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerSetting::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerSetting::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

/// Copies the call's request id from the parent context onto each starting span, then hands
/// finished spans to the wrapped processor.
///
/// It wraps the batch processor rather than sitting beside it because the SDK clones every
/// finished span once per processor when there are several.
#[derive(Debug)]
pub struct RequestIdProcessor<P>(pub P);

impl<P: SpanProcessor> SpanProcessor for RequestIdProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        if let Some(RequestId(id)) = cx.get::<RequestId>() {
            use opentelemetry::trace::Span as _;
            // Shares the id's allocation: this runs for every span.
            let value = opentelemetry::StringValue::from(Arc::clone(id));
            span.set_attribute(KeyValue::new(REQUEST_ID, value));
        }
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Drops repeated attribute keys (the first value wins) before spans are exported.
#[derive(Debug)]
pub struct DedupAttributes<E>(pub E);

impl<E: SpanExporter> SpanExporter for DedupAttributes<E> {
    fn export(
        &self,
        mut batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        for span in &mut batch {
            dedup(&mut span.attributes);
        }
        self.0.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

fn dedup(attributes: &mut Vec<KeyValue>) {
    let mut i = 1;
    while i < attributes.len() {
        if attributes[..i].iter().any(|kv| kv.key == attributes[i].key) {
            attributes.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_a_repeated_attribute_wins() {
        let mut attrs = vec![
            KeyValue::new("a", 1),
            KeyValue::new(REQUEST_ID, "explicit"),
            KeyValue::new("b", 2),
            KeyValue::new(REQUEST_ID, "inherited"),
        ];
        dedup(&mut attrs);
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[1].value.as_str(), "explicit");
    }
}
