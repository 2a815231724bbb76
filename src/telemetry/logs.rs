//! Log lines: one JSON object per line, each carrying the correlation fields of the span it was
//! written in, so a line can be joined to its call and its trace:
//!
//! ```json
//! {"timestamp":"2026-11-26T10:00:00.123456Z","level":"INFO","target":"rotator::api",
//!  "message":"call failed: …","reason":"UPSTREAM_ROTATION_FAILED","span":"rpc",
//!  "request_id":"0193…","rotation_id":"3f0c…","trace_id":"4bf9…","span_id":"00f0…"}
//! ```
//!
//! `request_id` and `rotation_id` come from the nearest enclosing span that names them
//! (`rotator.request_id`, `rotator.rotation_id`); `trace_id` and `span_id` from the
//! OpenTelemetry context of the current span, and only while an exporter is configured.

use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The span fields copied onto log lines, and the names they get there.
const CORRELATION_FIELDS: [(&str, &str); 2] = [
    ("rotator.request_id", "request_id"),
    ("rotator.rotation_id", "rotation_id"),
];

/// Writes each event as one JSON line to `W`.
pub struct JsonLogLayer<W> {
    make_writer: W,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

/// The correlation fields a span was created or recorded with.
#[derive(Debug, Default, Clone)]
struct Correlation {
    values: [Option<String>; 2],
}

// === impl JsonLogLayer ===

impl<W> JsonLogLayer<W> {
    /// A layer writing to `make_writer`.
    pub fn new(make_writer: W) -> Self {
        Self {
            make_writer,
            dispatch: OnceLock::new(),
        }
    }

    /// The trace and span id of `id`'s OpenTelemetry context, when the span is traced.
    fn trace_ids(&self, id: &span::Id) -> Option<(String, String)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

impl<W> std::fmt::Debug for JsonLogLayer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonLogLayer")
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut found = Correlation::default();
        attrs.record(&mut CorrelationVisitor(&mut found));
        if found.values.iter().any(Option::is_some)
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(found);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut found = Correlation::default();
        values.record(&mut CorrelationVisitor(&mut found));
        if found.values.iter().all(Option::is_none) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<Correlation>() {
                Some(existing) => {
                    for (slot, value) in existing.values.iter_mut().zip(found.values) {
                        if value.is_some() {
                            *slot = value;
                        }
                    }
                }
                None => extensions.insert(found),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut line));

        let leaf_id = ctx.event_span(event).map(|s| s.id());
        // Looked up before the scope walk below: it must not run while extensions are borrowed.
        let trace = leaf_id.as_ref().and_then(|id| self.trace_ids(id));
        if let Some(scope) = ctx.event_scope(event) {
            let mut values: [Option<String>; 2] = Default::default();
            let mut first = true;
            for span in scope {
                if first {
                    line.insert("span".into(), span.name().into());
                    first = false;
                }
                if let Some(c) = span.extensions().get::<Correlation>() {
                    for (slot, value) in values.iter_mut().zip(&c.values) {
                        if slot.is_none() {
                            slot.clone_from(value);
                        }
                    }
                }
                if values.iter().all(Option::is_some) {
                    break;
                }
            }
            for ((_, name), value) in CORRELATION_FIELDS.iter().zip(values) {
                if let Some(value) = value {
                    line.insert((*name).into(), value.into());
                }
            }
        }
        if let Some((trace_id, span_id)) = trace {
            line.insert("trace_id".into(), trace_id.into());
            line.insert("span_id".into(), span_id.into());
        }
        let mut text = match serde_json::to_vec(&Value::Object(line)) {
            Ok(text) => text,
            Err(_) => return,
        };
        text.push(b'\n');
        let _ = self.make_writer.make_writer_for(meta).write_all(&text);
    }
}

/// Collects an event's fields into the JSON object (`message` included).
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Picks the correlation fields out of a span's fields.
struct CorrelationVisitor<'a>(&'a mut Correlation);

impl CorrelationVisitor<'_> {
    fn slot(&mut self, field: &Field) -> Option<&mut Option<String>> {
        let index = CORRELATION_FIELDS
            .iter()
            .position(|(name, _)| *name == field.name())?;
        self.0.values.get_mut(index)
    }
}

impl Visit for CorrelationVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.slot(field) {
            *slot = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if let Some(slot) = self.slot(field) {
            // `%value` fields arrive here through their Display, without quotes.
            *slot = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn lines_carry_the_enclosing_request_and_rotation_ids() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(JsonLogLayer::new(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let rpc = tracing::info_span!(
                "rpc",
                rotator.request_id = %"req-1",
                rotator.rotation_id = tracing::field::Empty
            );
            let _rpc = rpc.enter();
            rpc.record("rotator.rotation_id", "rot-9");
            let inner = tracing::info_span!("http request");
            let _inner = inner.enter();
            tracing::info!(status = 200u64, "Infisical answered");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
        let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["message"], "Infisical answered");
        assert_eq!(line["status"], 200);
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["rotation_id"], "rot-9");
        assert_eq!(line["span"], "http request");
        assert_eq!(line["level"], "INFO");
        assert!(line.get("trace_id").is_none(), "no tracer, no trace id");
    }
}
