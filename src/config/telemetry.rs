//! The standard OpenTelemetry environment variables (and `RUST_LOG`), read from the injectable
//! environment map and validated with the rest of the configuration.
//!
//! Only the variables of the OpenTelemetry specification are read; there are no `ROTATOR_*`
//! equivalents, so a collector sidecar or an operator's usual `OTEL_*` set just works. Nothing set
//! means no OTLP exporter at all: no tracing-opentelemetry layer, no export thread.

use std::time::Duration;

use crate::config::{ConfigProblem, Env};
use crate::secret::SecretString;

/// Where the OTLP exporters send and how, plus sampling, batching, resource and log level.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
    /// else `rotator`.
    pub service_name: String,
    /// Other resource attributes from `OTEL_RESOURCE_ATTRIBUTES` (percent-decoded).
    pub resource_attributes: Vec<(String, String)>,
    /// The trace exporter, when one is configured and the SDK is not disabled.
    pub traces: Option<OtlpTarget>,
    /// The OTLP metric exporter, when configured. Prometheus text is served regardless.
    pub metrics: Option<OtlpTarget>,
    /// `OTEL_TRACES_SAMPLER` + `OTEL_TRACES_SAMPLER_ARG`. Default `parentbased_always_on`.
    pub sampler: SamplerSetting,
    /// `OTEL_BSP_*`: the bounded span queue and its export schedule.
    pub batch: BatchSettings,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (ms). Default 60 s.
    pub metric_export_interval: Duration,
    /// `OTEL_PROPAGATORS`: whether W3C trace context and baggage are read and written.
    pub propagators: Propagators,
    /// `RUST_LOG` directives for log lines. Default `info`.
    pub log_filter: String,
}

/// One OTLP destination.
#[derive(Debug, Clone)]
pub struct OtlpTarget {
    /// The full endpoint: for HTTP including the signal path (`/v1/traces`); for gRPC the
    /// `scheme://host:port` of the collector.
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Extra headers (`OTEL_EXPORTER_OTLP_*HEADERS`); values are often API keys, hence secret.
    pub headers: Vec<(String, SecretString)>,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_*TIMEOUT`, ms). Default 10 s.
    pub timeout: Duration,
}

/// The OTLP wire protocol (`OTEL_EXPORTER_OTLP_*PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`: OTLP/gRPC, usually port 4317.
    Grpc,
    /// `http/protobuf` (the specification's default): OTLP/HTTP, usually port 4318.
    HttpProtobuf,
}

/// The head sampler (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with the ratio in `OTEL_TRACES_SAMPLER_ARG`.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (default): follow the caller's sampled flag, sample new traces.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`.
    ParentBasedTraceIdRatio(f64),
}

/// The batch span processor's bounds (`OTEL_BSP_*`). When the queue is full, spans are dropped,
/// never waited for: a slow or dead collector cannot slow a call. Each export is bounded by the
/// exporter's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans held at most. Default 2048.
    pub max_queue_size: usize,
    /// Delay between two exports. Default 5 s.
    pub scheduled_delay: Duration,
    /// Spans per export at most. Default 512.
    pub max_export_batch_size: usize,
}

/// Which W3C propagators are on (`OTEL_PROPAGATORS`, default `tracecontext,baggage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagators {
    /// `traceparent` / `tracestate`.
    pub trace_context: bool,
    /// `baggage`.
    pub baggage: bool,
}

/// The default gRPC endpoint of the specification.
const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The default HTTP endpoint of the specification (the signal path is appended).
const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";

/// The two signals exported over OTLP.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
}

// === impl Signal ===

impl Signal {
    fn env_infix(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
        }
    }
}

// === impl TelemetrySettings ===

impl Default for TelemetrySettings {
    /// No export, default sampling and batching, `info` logs.
    fn default() -> Self {
        Self {
            service_name: "rotator".to_owned(),
            resource_attributes: Vec::new(),
            traces: None,
            metrics: None,
            sampler: SamplerSetting::ParentBasedAlwaysOn,
            batch: BatchSettings::default(),
            metric_export_interval: Duration::from_secs(60),
            propagators: Propagators {
                trace_context: true,
                baggage: true,
            },
            log_filter: "info".to_owned(),
        }
    }
}

impl TelemetrySettings {
    /// Reads the settings from `env`, adding a problem (named by variable, never by value) for
    /// every variable that is set but unusable.
    pub fn from_env(env: &Env, problems: &mut Vec<ConfigProblem>) -> Self {
        let mut reader = Reader { env, problems };
        let defaults = Self::default();
        let disabled = reader.bool("OTEL_SDK_DISABLED").unwrap_or(false);
        let (mut service_name, resource_attributes) = reader.resource_attributes();
        if let Some(name) = reader.non_empty("OTEL_SERVICE_NAME") {
            service_name = Some(name.to_owned());
        }
        let traces = reader.target(Signal::Traces, "OTEL_TRACES_EXPORTER", &["otlp", "none"]);
        let metrics = reader.target(
            Signal::Metrics,
            "OTEL_METRICS_EXPORTER",
            &["otlp", "prometheus", "none"],
        );
        let batch = BatchSettings {
            max_queue_size: reader
                .count("OTEL_BSP_MAX_QUEUE_SIZE")
                .unwrap_or(defaults.batch.max_queue_size),
            scheduled_delay: reader
                .millis("OTEL_BSP_SCHEDULE_DELAY")
                .unwrap_or(defaults.batch.scheduled_delay),
            max_export_batch_size: reader
                .count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .unwrap_or(defaults.batch.max_export_batch_size),
        };
        if batch.max_export_batch_size > batch.max_queue_size {
            reader.problem(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "must not exceed OTEL_BSP_MAX_QUEUE_SIZE",
            );
        }
        let log_filter = env
            .get("RUST_LOG")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .unwrap_or("info")
            .to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            reader.problem("RUST_LOG", "is not a valid filter, e.g. info,rotator=debug");
        }
        let sampler = reader.sampler();
        let metric_export_interval = reader
            .millis("OTEL_METRIC_EXPORT_INTERVAL")
            .unwrap_or(defaults.metric_export_interval);
        let propagators = reader.propagators();
        // The general variables feed both signals; report each bad one once.
        let mut seen = std::collections::HashSet::new();
        problems.retain(|p| seen.insert((p.key.clone(), p.reason.clone())));
        Self {
            service_name: service_name.unwrap_or(defaults.service_name),
            resource_attributes,
            traces: traces.filter(|_| !disabled),
            metrics: metrics.filter(|_| !disabled),
            sampler,
            batch,
            metric_export_interval,
            propagators,
            log_filter,
        }
    }
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            scheduled_delay: Duration::from_secs(5),
            max_export_batch_size: 512,
        }
    }
}

/// Reads typed values from the environment map, collecting problems.
struct Reader<'a> {
    env: &'a Env,
    problems: &'a mut Vec<ConfigProblem>,
}

// === impl Reader ===

impl Reader<'_> {
    fn problem(&mut self, var: &str, reason: &str) {
        self.problems.push(ConfigProblem {
            key: var.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn non_empty(&self, var: &str) -> Option<&str> {
        self.env
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The signal-specific variable, else the general one.
    fn layered(&self, signal: Signal, suffix: &str) -> Option<(String, &str)> {
        let specific = format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.env_infix());
        if let Some(v) = self.non_empty(&specific) {
            return Some((specific, v));
        }
        let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
        self.non_empty(&general).map(|v| (general, v))
    }

    fn bool(&mut self, var: &str) -> Option<bool> {
        let value = self.non_empty(var)?;
        match value.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.problem(var, "must be true or false");
                None
            }
        }
    }

    fn count(&mut self, var: &str) -> Option<usize> {
        let value = self.non_empty(var)?;
        match value.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.problem(var, "must be a whole number above 0");
                None
            }
        }
    }

    fn millis(&mut self, var: &str) -> Option<Duration> {
        let value = self.non_empty(var)?;
        match value.parse::<u64>() {
            Ok(n) if n > 0 => Some(Duration::from_millis(n)),
            _ => {
                self.problem(var, "must be a whole number of milliseconds above 0");
                None
            }
        }
    }

    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,...`, values percent-encoded. Returns the
    /// `service.name` found there separately.
    fn resource_attributes(&mut self) -> (Option<String>, Vec<(String, String)>) {
        const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
        let Some(value) = self.non_empty(VAR).map(str::to_owned) else {
            return (None, Vec::new());
        };
        match parse_key_values(&value) {
            Some(pairs) => {
                let mut service_name = None;
                let mut rest = Vec::new();
                for (k, v) in pairs {
                    if k == "service.name" {
                        service_name = Some(v);
                    } else {
                        rest.push((k, v));
                    }
                }
                (service_name, rest)
            }
            None => {
                self.problem(VAR, "must be key=value pairs separated by commas");
                (None, Vec::new())
            }
        }
    }

    /// The exporter for one signal: on when an endpoint is set or `OTEL_*_EXPORTER=otlp`.
    fn target(
        &mut self,
        signal: Signal,
        exporter_var: &str,
        allowed: &[&str],
    ) -> Option<OtlpTarget> {
        let exporter = self.non_empty(exporter_var).map(str::to_ascii_lowercase);
        if let Some(e) = &exporter
            && !allowed.contains(&e.as_str())
        {
            let reason = format!("must be one of {}", allowed.join(", "));
            self.problem(exporter_var, &reason);
            return None;
        }
        let endpoint_set = self.layered(signal, "ENDPOINT").is_some();
        let wanted = match exporter.as_deref() {
            Some("otlp") => true,
            Some(_) => false,
            None => endpoint_set,
        };
        if !wanted {
            return None;
        }
        let protocol = match self.layered(signal, "PROTOCOL") {
            None => Protocol::HttpProtobuf,
            Some((var, value)) => match value {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                "http/json" => {
                    self.problem(
                        &var,
                        "http/json is not supported; use grpc or http/protobuf",
                    );
                    return None;
                }
                _ => {
                    self.problem(&var, "must be grpc or http/protobuf");
                    return None;
                }
            },
        };
        let endpoint = self.endpoint(signal, protocol)?;
        let headers = match self.layered(signal, "HEADERS") {
            None => Vec::new(),
            Some((var, value)) => match parse_key_values(value) {
                Some(pairs) if pairs.iter().all(|(k, _)| valid_header_name(k)) => pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), SecretString::new(v)))
                    .collect(),
                _ => {
                    self.problem(&var, "must be name=value pairs separated by commas");
                    return None;
                }
            },
        };
        let timeout = match self.layered(signal, "TIMEOUT") {
            None => Duration::from_secs(10),
            Some((var, value)) => match value.parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_millis(n),
                _ => {
                    self.problem(&var, "must be a whole number of milliseconds above 0");
                    return None;
                }
            },
        };
        Some(OtlpTarget {
            endpoint,
            protocol,
            headers,
            timeout,
        })
    }

    /// The signal endpoint is used as is; the general one gets the signal path for HTTP.
    fn endpoint(&mut self, signal: Signal, protocol: Protocol) -> Option<String> {
        let specific = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.env_infix());
        let (var, url, append_path) = if let Some(v) = self.non_empty(&specific) {
            (specific, v.to_owned(), false)
        } else if let Some(v) = self.non_empty("OTEL_EXPORTER_OTLP_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), v.to_owned(), true)
        } else {
            let default = match protocol {
                Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
                Protocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
            };
            (String::new(), default.to_owned(), true)
        };
        let parsed = match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => {
                self.problem(&var, "must be an http(s) URL, e.g. http://collector:4318");
                return None;
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            self.problem(
                &var,
                "must not carry credentials; use OTEL_EXPORTER_OTLP_HEADERS",
            );
            return None;
        }
        Some(match (protocol, append_path) {
            (Protocol::HttpProtobuf, true) => {
                format!("{}{}", url.trim_end_matches('/'), signal.http_path())
            }
            _ => url,
        })
    }

    fn sampler(&mut self) -> SamplerSetting {
        let name = self
            .non_empty("OTEL_TRACES_SAMPLER")
            .map(str::to_ascii_lowercase);
        let mut ratio = || match self.non_empty("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    self.problem("OTEL_TRACES_SAMPLER_ARG", "must be a number from 0 to 1");
                    1.0
                }
            },
        };
        match name.as_deref() {
            None | Some("parentbased_always_on") => SamplerSetting::ParentBasedAlwaysOn,
            Some("always_on") => SamplerSetting::AlwaysOn,
            Some("always_off") => SamplerSetting::AlwaysOff,
            Some("traceidratio") => SamplerSetting::TraceIdRatio(ratio()),
            Some("parentbased_always_off") => SamplerSetting::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => SamplerSetting::ParentBasedTraceIdRatio(ratio()),
            Some(_) => {
                self.problem(
                    "OTEL_TRACES_SAMPLER",
                    "must be always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                );
                SamplerSetting::ParentBasedAlwaysOn
            }
        }
    }

    fn propagators(&mut self) -> Propagators {
        let Some(value) = self.non_empty("OTEL_PROPAGATORS").map(str::to_owned) else {
            return TelemetrySettings::default().propagators;
        };
        let mut p = Propagators {
            trace_context: false,
            baggage: false,
        };
        for name in value.split(',').map(str::trim) {
            match name {
                "tracecontext" => p.trace_context = true,
                "baggage" => p.baggage = true,
                "none" => {}
                _ => self.problem(
                    "OTEL_PROPAGATORS",
                    "only tracecontext, baggage and none are supported",
                ),
            }
        }
        p
    }
}

/// Parses `k=v,k2=v2` with percent-encoded values (W3C baggage octets), as
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` are written.
fn parse_key_values(text: &str) -> Option<Vec<(String, String)>> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (k, v) = item.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            Some((k.to_owned(), percent_decode(v.trim())?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn valid_header_name(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (TelemetrySettings, Vec<ConfigProblem>) {
        let env: Env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut problems = Vec::new();
        let settings = TelemetrySettings::from_env(&env, &mut problems);
        (settings, problems)
    }

    #[test]
    fn nothing_set_means_no_exporter() {
        let (s, problems) = read(&[]);
        assert!(problems.is_empty());
        assert!(s.traces.is_none() && s.metrics.is_none());
        assert_eq!(s.service_name, "rotator");
        assert_eq!(s.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert_eq!(s.log_filter, "info");
    }

    #[test]
    fn the_general_endpoint_gets_the_signal_path_for_http_only() {
        let (s, _) = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        let traces = s.traces.expect("traces on");
        assert_eq!(traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            s.metrics.expect("metrics on").endpoint,
            "http://collector:4318/v1/metrics"
        );
        let (s, _) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(s.traces.expect("on").endpoint, "http://collector:4317");
    }

    #[test]
    fn signal_variables_win_over_general_ones() {
        let (s, problems) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-api-key=abc%3D%3D,tenant=t1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let t = s.traces.expect("on");
        assert_eq!(t.endpoint, "http://traces:9999/custom");
        assert_eq!(t.protocol, Protocol::HttpProtobuf);
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert_eq!(t.headers[0].0, "x-api-key");
        assert_eq!(t.headers[0].1.expose(), "abc==");
        assert_eq!(s.metrics.expect("on").protocol, Protocol::Grpc);
    }

    #[test]
    fn disabled_sdk_and_none_exporters_turn_export_off() {
        let (s, _) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(s.traces.is_none() && s.metrics.is_none());
        let (s, _) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert!(s.traces.is_some() && s.metrics.is_none());
        let (s, _) = read(&[("OTEL_TRACES_EXPORTER", "otlp")]);
        assert_eq!(
            s.traces.expect("default endpoint").endpoint,
            "http://localhost:4318/v1/traces"
        );
    }

    #[test]
    fn resource_attributes_and_service_name() {
        let (s, _) = read(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,deployment.environment.name=prod%20eu",
        )]);
        assert_eq!(s.service_name, "from-attrs");
        assert_eq!(
            s.resource_attributes,
            [(
                "deployment.environment.name".to_owned(),
                "prod eu".to_owned()
            )]
        );
        let (s, _) = read(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "from-name"),
        ]);
        assert_eq!(s.service_name, "from-name");
    }

    #[test]
    fn samplers_parse_with_their_argument() {
        let (s, _) = read(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert_eq!(s.sampler, SamplerSetting::ParentBasedTraceIdRatio(0.25));
        let (s, _) = read(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert_eq!(s.sampler, SamplerSetting::AlwaysOff);
    }

    #[test]
    fn bad_values_are_reported_by_variable_and_never_echoed() {
        let (_, problems) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://secret-host"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign-s3cr3t"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_SDK_DISABLED", "maybe"),
            ("RUST_LOG", "rotator=[[["),
        ]);
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_TRACES_SAMPLER",
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "OTEL_SDK_DISABLED",
            "RUST_LOG",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        for p in &problems {
            assert!(!p.reason.contains("s3cr3t") && !p.reason.contains("secret-host"));
        }
        let (_, problems) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign-s3cr3t"),
        ]);
        assert_eq!(problems[0].key, "OTEL_EXPORTER_OTLP_HEADERS");
        let (_, problems) = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:pw@c:4318")]);
        assert_eq!(problems[0].key, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn http_json_is_refused_rather_than_silently_sent_as_protobuf() {
        let (s, problems) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        assert!(s.traces.is_none());
        assert_eq!(problems[0].key, "OTEL_EXPORTER_OTLP_PROTOCOL");
    }
}
