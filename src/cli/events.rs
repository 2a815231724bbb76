//! `rotator events tail`: prints rotation events from the JetStream stream as they arrive.
//!
//! It reads the NATS settings the server uses (`--config` file and `ROTATOR_NATS_*`), subscribes
//! with an ordered consumer (no state left on the server), filtered by subject, and prints one
//! line per event: readable by default, the CloudEvent JSON with `--json`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use serde_json::Value;

use super::EXIT_CONFIG;
use super::output::{self, CliError, Format};
use crate::config::{Config, Env};
use crate::events::cloudevent::CloudEvent;
use crate::events::model::Outcome;
use crate::events::{jetstream as js, subject};

/// `rotator events …`
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print rotation events as they are published (`PREFIX.<type>.<outcome>`).
    #[command(after_help = "Examples:
  rotator events tail --config rotator.toml
  rotator events tail --outcome failed
  rotator events tail --outcome delivery-failed
  rotator events tail --outcome handover-timed-out
  rotator events tail --type postgres-credentials --from-start --limit 10 --json")]
    Tail(TailArgs),
}

/// Options of `rotator events tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The server's TOML configuration (for its NATS settings); ROTATOR_NATS_* also apply.
    #[arg(long, env = "ROTATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Only this rotation type, e.g. postgres-credentials.
    #[arg(long = "type", value_name = "TYPE")]
    rotation_type: Option<String>,
    /// Only events of this outcome: rotation attempts (completed, failed), sink deliveries
    /// (delivered, delivery-failed) or confirmed handovers (handover-timed-out,
    /// handover-complete).
    #[arg(long, value_parser = [
        "completed", "failed", "delivered", "delivery-failed", "handover-timed-out",
        "handover-complete",
    ])]
    outcome: Option<String>,
    /// Replay the whole stream first, then follow.
    #[arg(long)]
    from_start: bool,
    /// Print each event as its CloudEvents JSON, one per line.
    #[arg(long)]
    json: bool,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
}

/// Runs an `events` command.
pub async fn run(command: EventsCommand) -> ExitCode {
    match command {
        EventsCommand::Tail(args) => tail(args).await,
    }
}

async fn tail(args: TailArgs) -> ExitCode {
    // Flags first: a wrong type is reported (with the valid ones) before any config or NATS.
    let rotation_type = match args.rotation_type.as_deref().map(super::client::parse_type) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(error)) => {
            return fail(
                args.json,
                CliError {
                    message: format!("--type: {}", error.message),
                    ..error
                },
            );
        }
    };
    let env: Env = std::env::vars().collect();
    let config = match Config::load(args.config.as_deref(), &env) {
        Ok(config) => config,
        Err(error) if args.json => {
            return fail(true, CliError::config(error.to_string().trim_end()));
        }
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(nats) = config.nats else {
        return fail(
            args.json,
            CliError::config("no NATS configured: set nats.url or ROTATOR_NATS_URL"),
        );
    };
    let outcome = args.outcome.as_deref().and_then(Outcome::parse);
    let filter = subject::filter(&nats.subject_prefix, rotation_type, outcome);

    let client = match js::connect(&nats, "rotator-events-tail").await {
        Ok(client) => client,
        Err(error) => return fail(args.json, CliError::unavailable(error.to_string())),
    };
    let context = jetstream::new(client.clone());
    let stream = match context.get_stream(&nats.stream.name).await {
        Ok(stream) => stream,
        Err(error) => {
            return fail(
                args.json,
                CliError::failed(format!(
                    "cannot open stream {}: {error} (has the server started?)",
                    nats.stream.name
                )),
            );
        }
    };
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: filter.clone(),
            deliver_policy: if args.from_start {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::New
            },
            ..Default::default()
        })
        .await;
    let mut messages = match consumer {
        Ok(consumer) => match consumer.messages().await {
            Ok(messages) => messages,
            Err(error) => {
                return fail(
                    args.json,
                    CliError::failed(format!("cannot subscribe: {error}")),
                );
            }
        },
        Err(error) => {
            return fail(
                args.json,
                CliError::failed(format!("cannot subscribe to {filter}: {error}")),
            );
        }
    };
    eprintln!("following {filter} on stream {}", nats.stream.name);
    let mut printed = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        if args.limit.is_some_and(|limit| printed >= limit) {
            return ExitCode::SUCCESS;
        }
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => return fail(args.json, CliError::failed(error.to_string())),
            None => return ExitCode::SUCCESS,
        };
        let line = if args.json {
            String::from_utf8_lossy(&message.payload).into_owned()
        } else {
            match CloudEvent::from_bytes(&message.payload) {
                Ok(event) => readable(&event),
                Err(error) => format!("{} (not a rotator event: {error})", message.subject),
            }
        };
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (e.g. `| head`).
            return ExitCode::SUCCESS;
        }
        printed += 1;
    }
}

/// Prints a failure as the client commands do: `error: …`, or with `--json` the JSON error
/// object (code, message, reason, request_id) on standard error. Returns its exit code.
fn fail(json: bool, error: CliError) -> ExitCode {
    let format = if json { Format::Json } else { Format::Text };
    output::error(format, &error)
}

/// One line for a person: time, outcome, type, rotation, then what is known.
pub fn readable(event: &CloudEvent) -> String {
    let data = &event.data;
    let attempt = &data["attempt"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mut line = format!(
        "{}  {:<9} {}  {}",
        event.time, event.outcome, event.rotationtype, event.subject
    );
    let mut field = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            line.push_str(&format!("  {name}={value}"));
        }
    };
    let delivery = &data["delivery"];
    if delivery.is_object() {
        field("name", text(&delivery["name"]));
        field("sink", text(&delivery["sink"]));
        field("version", text(&delivery["version"]));
        field(
            "try",
            delivery["attemptNumber"].as_u64().map(|n| n.to_string()),
        );
        field("after_commit", text(&delivery["sinceCommit"]));
        field("message", text(&data["message"]).map(|m| format!("{m:?}")));
        return line;
    }
    let handover = &data["handover"];
    if handover.is_object() {
        field("name", text(&handover["name"]));
        field("version", text(&handover["version"]));
        field("after_commit", text(&handover["sinceCommit"]));
        field(
            "unconfirmed",
            data["unconfirmedConsumers"].as_array().map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        );
        field("request", text(&handover["requestId"]));
        return line;
    }
    field("name", text(&attempt["name"]));
    field("env", text(&attempt["environment"]));
    field(
        "active",
        attempt["activeIndex"].as_u64().map(|n| n.to_string()),
    );
    field(
        "attempt",
        attempt["attemptNumber"].as_u64().map(|n| n.to_string()),
    );
    field("took", text(&attempt["duration"]));
    field("request", text(&attempt["requestId"]));
    if event.outcome == Outcome::Failed.as_str() {
        field("reason", text(&data["reason"]));
        field("code", text(&data["code"]));
        field(
            "retryable",
            data["retryable"].as_bool().map(|b| b.to_string()),
        );
        field("message", text(&data["message"]).map(|m| format!("{m:?}")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::RotationEvent;
    use crate::proto::{CredentialHandoverTimedOut, HandoverAttempt, RotationType};

    #[test]
    fn a_handover_event_reads_as_one_line_with_its_version_and_consumers() {
        let event = RotationEvent::HandoverTimedOut(CredentialHandoverTimedOut {
            handover: Some(HandoverAttempt {
                event_id: uuid::Uuid::now_v7().to_string(),
                rotation_id: "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10".into(),
                r#type: RotationType::RedisCredentials as i32,
                name: Some("app-cache".into()),
                version: 7,
                request_id: "r-1".into(),
                ..HandoverAttempt::default()
            }),
            unconfirmed_consumers: vec!["worker".into(), "billing-api".into()],
            grace: None,
        });
        let cloud = CloudEvent::new(&event, chrono::Utc::now(), &[]).expect("encode");
        assert_eq!(cloud.outcome, "handover-timed-out");
        let line = readable(&cloud);
        for part in [
            "handover-timed-out",
            "name=app-cache",
            "version=7",
            "unconfirmed=worker,billing-api",
            "request=r-1",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
}
