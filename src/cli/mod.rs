//! The command line: `serve` runs the server; the other commands are a gRPC client of it.

mod client;
pub mod events;
mod output;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Env};
use crate::secret::SecretString;

/// Exit code for a configuration error (EX_USAGE/EX_CONFIG convention).
pub const EXIT_CONFIG: u8 = 64;

/// `rotator --version`: the package version, the commit and the build date (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ", built ",
    env!("BUILD_DATE_UTC"),
    ")"
);

/// rotator: rotates secrets, by forwarding to Infisical or with local drivers.
#[derive(Debug, Parser)]
#[command(
    name = "rotator",
    version = VERSION,
    about,
    after_help = "Examples:
  rotator serve --config /etc/rotator/rotator.toml
  rotator rotate postgres-credentials 6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10
  rotator list --project my-project -o yaml
  rotator completions bash > /etc/bash_completion.d/rotator
  rotator man > /usr/local/share/man/man1/rotator.1

Client commands reach ROTATOR_SERVER (default http://127.0.0.1:50051) with the bearer token in
ROTATOR_TOKEN or --token-file. Documentation: README.md and docs/ in the source tree."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by the client commands.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The rotator server: http://host:port, or https://host:port for TLS.
    #[arg(
        long,
        env = "ROTATOR_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// Print the answer as JSON (Infisical's shape), and errors as a JSON object on stderr
    /// (code, message, reason, request_id); the same as `-o json`.
    #[arg(long, global = true, conflicts_with = "output")]
    json: bool,
    /// Output format of answers and errors: text (readable), json or yaml.
    #[arg(short = 'o', long, value_enum, global = true)]
    output: Option<output::Format>,
    /// Send this x-request-id instead of a generated one.
    #[arg(long, global = true)]
    request_id: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 130, global = true)]
    timeout_seconds: u64,
    /// Bearer token to authenticate with. Prefer ROTATOR_TOKEN or --token-file: a flag is
    /// visible to other users in the process list.
    #[arg(long, env = "ROTATOR_TOKEN", hide_env_values = true, value_parser = secret_arg, global = true)]
    token: Option<SecretString>,
    /// File holding the bearer token (trailing newline ignored).
    #[arg(
        long,
        env = "ROTATOR_TOKEN_FILE",
        conflicts_with = "token",
        global = true
    )]
    token_file: Option<PathBuf>,
    /// CA certificate(s), PEM, to verify the server with (default: the system roots).
    #[arg(long, env = "ROTATOR_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Client certificate, PEM, for mutual TLS (with --key-file).
    #[arg(
        long,
        env = "ROTATOR_CLIENT_CERT_FILE",
        requires = "key_file",
        global = true
    )]
    cert_file: Option<PathBuf>,
    /// Client private key, PEM, for mutual TLS (with --cert-file).
    #[arg(
        long,
        env = "ROTATOR_CLIENT_KEY_FILE",
        requires = "cert_file",
        global = true
    )]
    key_file: Option<PathBuf>,
    /// The name to verify the server certificate against, when it differs from the URL host.
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
}

// === impl ClientArgs ===

impl ClientArgs {
    /// The output format: `-o`, or `--json`, or text.
    fn format(&self) -> output::Format {
        match (self.output, self.json) {
            (Some(format), _) => format,
            (None, true) => output::Format::Json,
            (None, false) => output::Format::Text,
        }
    }
}

fn secret_arg(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::new(value))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    #[command(after_help = "Examples:
  rotator serve --config rotator.toml
  ROTATOR_INFISICAL_URL=https://app.infisical.com ROTATOR_INFISICAL_CLIENT_ID=… \\
    ROTATOR_INFISICAL_CLIENT_SECRET=… rotator serve

Stops on SIGTERM/SIGINT within shutdown_grace_seconds; exit 64 on a configuration error.")]
    Serve {
        /// A TOML configuration file; every setting can also come from ROTATOR_* variables.
        #[arg(long, env = "ROTATOR_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Rotate a rotation's secrets now.
    #[command(after_help = "Examples:
  rotator rotate postgres-credentials 6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10
  rotator rotate postgres-credentials 6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10 --json
  rotator rotate redis-credentials 0f9e… -o yaml --server https://rotator:50051 --ca-file ca.pem

Prints one line (name, type, id, active index, last rotated); --json or -o yaml print the whole
rotation.")]
    Rotate {
        /// The rotation type, e.g. postgres-credentials.
        #[arg(value_name = "TYPE")]
        rotation_type: String,
        /// The rotation id (UUID).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one rotation, by id or by name.
    #[command(after_help = "Examples:
  rotator get postgres-credentials 6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10
  rotator get postgres-credentials --name app-db --project my-project --environment prod
  rotator get mysql-credentials 1d2c… -o yaml")]
    Get {
        /// The rotation type.
        #[arg(value_name = "TYPE")]
        rotation_type: String,
        /// The rotation id (UUID); or use --name with --project, --environment, --secret-path.
        id: Option<String>,
        /// The rotation name.
        #[arg(long, requires_all = ["project", "environment"])]
        name: Option<String>,
        /// The project id (with --name).
        #[arg(long)]
        project: Option<String>,
        /// The environment slug (with --name).
        #[arg(long)]
        environment: Option<String>,
        /// The secret path (with --name).
        #[arg(long, default_value = "/")]
        secret_path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the rotations of a project, of one type or of all types.
    #[command(after_help = "Examples:
  rotator list --project my-project
  rotator list postgres-credentials --project my-project --json")]
    List {
        /// The rotation type; every type when absent.
        #[arg(value_name = "TYPE")]
        rotation_type: Option<String>,
        /// The project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a new credentials-encryption key (`id:base64`) for ROTATOR_ENCRYPTION_KEY.
    #[command(after_help = "Examples:
  rotator keygen > /run/secrets/rotator-key
  ROTATOR_ENCRYPTION_KEY=\"$(rotator keygen),$OLD_KEY\" rotator serve   # rotate the key ring")]
    Keygen,
    /// Follow the rotation events on NATS JetStream.
    #[command(
        subcommand,
        after_help = "Examples:
  rotator events tail --outcome failed
  ROTATOR_NATS_URL=nats://nats:4222 rotator events tail --type redis-credentials"
    )]
    Events(events::EventsCommand),
    /// Bearer-token helpers for `[[auth.identities]]`.
    #[command(after_help = "Examples:
  rotator token generate
  printf %s \"$TOKEN\" | rotator token hash")]
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Show a rotation's generated credentials (secret values!).
    #[command(after_help = "Examples:
  rotator credentials postgres-credentials 6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10
  rotator credentials postgres-credentials 6c7b5a6e-… --json | jq -r '.generatedCredentials[.activeIndex]'")]
    Credentials {
        /// The rotation type.
        #[arg(value_name = "TYPE")]
        rotation_type: String,
        /// The rotation id (UUID).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Confirm that a consumer now uses a committed version of a local rotation (confirmed
    /// handover): the next rotation waits for every consumer the rotation names.
    #[command(after_help = "Examples:
  rotator confirm redis-credentials 0f9e… --version 7 --consumer billing-api
  # from an exec sink's reload hook, after the application reloaded:
  rotator confirm redis-credentials \"$ROTATOR_ROTATION_ID\" --version \"$ROTATOR_VERSION\" --consumer worker --json

Prints the consumers still to confirm; confirming the same version again changes nothing.")]
    Confirm {
        /// The rotation type.
        #[arg(value_name = "TYPE")]
        rotation_type: String,
        /// The rotation id (UUID).
        id: String,
        /// The committed version the consumer now uses (1 or more).
        #[arg(long)]
        version: u64,
        /// The consumer's name, one of the rotation's `consumers`.
        #[arg(long)]
        consumer: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  rotator completions bash > /etc/bash_completion.d/rotator
  rotator completions zsh > \"${fpath[1]}/_rotator\"
  rotator completions fish > ~/.config/fish/completions/rotator.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:
  rotator man > /usr/local/share/man/man1/rotator.1
  rotator man --out-dir /usr/local/share/man/man1   # rotator.1, rotator-rotate.1, …")]
    Man {
        /// Write rotator.1 and a page per subcommand (rotator-serve.1, …) here instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Parses the command line `args` (program name first). A usage error (unknown flag, bad value,
/// missing argument) is printed as the JSON error object when the line asks for JSON
/// (`--json`, `-o json`, `--output json`), so scripts get JSON on every failure; else as clap's
/// text. Help and version go to standard output as usual.
///
/// # Errors
///
/// The exit code when there is nothing to run (a usage error, help or version, printed).
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, ExitCode> {
    let wants_json = asks_for_json(&args);
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(error) if error.use_stderr() && wants_json => {
            let rendered = error.render().to_string();
            // clap's text: "error: <what>\n\nUsage: …\n\nFor more information, try '--help'."
            let what = rendered.split("\n\nUsage:").next().unwrap_or(&rendered);
            let what = what.trim().trim_start_matches("error: ");
            Err(output::error(
                output::Format::Json,
                &output::CliError::usage(what.split_whitespace().collect::<Vec<_>>().join(" ")),
            ))
        }
        Err(error) => {
            // Help and version print to stdout with exit 0, usage errors to stderr with 2.
            let _ = error.print();
            Err(ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2)))
        }
    }
}

/// Whether the command line asks for JSON output (`--json`, `-o json`, `--output[=]json`).
fn asks_for_json(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.iter().enumerate().any(|(i, arg)| {
        *arg == "--json"
            || *arg == "--output=json"
            || *arg == "-ojson"
            || ((*arg == "-o" || *arg == "--output") && args.get(i + 1) == Some(&"json"))
    })
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Keygen => {
                println!("{}", crate::crypto::generate_key());
                ExitCode::SUCCESS
            }
            Command::Events(command) => events::run(command).await,
            Command::Rotate {
                rotation_type,
                id,
                client,
            } => client::rotate(&client, &rotation_type, &id).await,
            Command::Get {
                rotation_type,
                id,
                name,
                project,
                environment,
                secret_path,
                client,
            } => {
                let lookup = match (id, name) {
                    (Some(id), None) => client::Lookup::Id(id),
                    (None, Some(name)) => client::Lookup::Name {
                        name,
                        project: project.unwrap_or_default(),
                        environment: environment.unwrap_or_default(),
                        secret_path,
                    },
                    _ => {
                        return output::error(
                            client.format(),
                            &output::CliError::usage("give either an ID or --name"),
                        );
                    }
                };
                client::get(&client, &rotation_type, lookup).await
            }
            Command::List {
                rotation_type,
                project,
                client,
            } => client::list(&client, rotation_type.as_deref(), &project).await,
            Command::Credentials {
                rotation_type,
                id,
                client,
            } => client::credentials(&client, &rotation_type, &id).await,
            Command::Confirm {
                rotation_type,
                id,
                version,
                consumer,
                client,
            } => client::confirm(&client, &rotation_type, &id, version, &consumer).await,
            Command::Token { command } => token::run(command),
            Command::Completions { shell } => completions(shell),
            Command::Man { out_dir } => man(out_dir.as_deref()),
        }
    });
    // Dropping the runtime would wait for every blocking task, including an exporter thread
    // stuck on a silent collector: the stop budget has already been spent, so do not wait.
    runtime.shutdown_timeout(RUNTIME_STOP);
    code
}

/// How long exit waits for the runtime's last tasks after the command finished.
const RUNTIME_STOP: Duration = Duration::from_millis(100);

fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "rotator", &mut std::io::stdout());
    ExitCode::SUCCESS
}

fn man(out_dir: Option<&std::path::Path>) -> ExitCode {
    let command = <Cli as clap::CommandFactory>::command();
    let written = match out_dir {
        Some(dir) => clap_mangen::generate_to(command, dir),
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the man page: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_file: Option<PathBuf>) -> ExitCode {
    let env: Env = std::env::vars().collect();
    let config = match Config::load(config_file.as_deref(), &env) {
        Ok(config) => config,
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The registry against the drivers (apps, options, types, parameters): reported like the
    // file's own problems, before any port is bound.
    let problems = crate::local::check(&config);
    if !problems.is_empty() {
        eprint!("{}", crate::config::ConfigError(problems));
        return ExitCode::from(EXIT_CONFIG);
    }
    let telemetry = match crate::telemetry::Telemetry::builder(&config.telemetry, config.log_format)
        .install()
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let grace = config.shutdown_grace;
    let clock = crate::server::StopClock::new();
    let result = crate::run(config, clock.watch(crate::server::shutdown_signal())).await;
    if let Err(error) = &result {
        tracing::error!(%error, "rotator stopped");
        eprintln!("error: {error}");
    }
    // The last step of the one stop budget (`server::StopBudget`): whatever the drain and the
    // relay left of the grace, at most 5 s.
    telemetry
        .shutdown(clock.budget(grace).telemetry_timeout())
        .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_asked_by_either_flag_spelling() {
        let line = |args: &[&str]| asks_for_json(&args.iter().map(Into::into).collect::<Vec<_>>());
        for yes in [
            &["rotator", "list", "--json"][..],
            &["rotator", "list", "-o", "json"],
            &["rotator", "list", "--output", "json"],
            &["rotator", "list", "--output=json"],
            &["rotator", "list", "-ojson"],
        ] {
            assert!(line(yes), "{yes:?}");
        }
        for no in [
            &["rotator", "list"][..],
            &["rotator", "list", "-o", "yaml"],
            &["rotator", "list", "--project", "json"],
        ] {
            assert!(!line(no), "{no:?}");
        }
    }
}
