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

/// rotator: rotates secrets, by forwarding to Infisical or with local drivers.
#[derive(Debug, Parser)]
#[command(name = "rotator", version, about)]
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
    /// Print the answer as JSON (Infisical's shape) instead of readable lines.
    #[arg(long, global = true)]
    json: bool,
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

fn secret_arg(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::new(value))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve {
        /// A TOML configuration file; every setting can also come from ROTATOR_* variables.
        #[arg(long, env = "ROTATOR_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Rotate a rotation's secrets now.
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
    Keygen,
    /// Follow the rotation events on NATS JetStream.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Bearer-token helpers for `[[auth.identities]]`.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Show a rotation's generated credentials (secret values!).
    Credentials {
        /// The rotation type.
        #[arg(value_name = "TYPE")]
        rotation_type: String,
        /// The rotation id (UUID).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
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
                        eprintln!("error: give either an ID or --name");
                        return ExitCode::from(2);
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
            Command::Token { command } => token::run(command),
        }
    });
    // Dropping the runtime would wait for every blocking task, including an exporter thread
    // stuck on a silent collector: the stop budget has already been spent, so do not wait.
    runtime.shutdown_timeout(RUNTIME_STOP);
    code
}

/// How long exit waits for the runtime's last tasks after the command finished.
const RUNTIME_STOP: Duration = Duration::from_millis(100);

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
