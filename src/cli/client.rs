//! The client commands: one gRPC call each, printed readably, as JSON or as YAML; errors in the
//! same format ([`output::CliError`]).

use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::ClientArgs;
use super::output::{self, CliError};
use crate::proto::secret_rotation_service_client::SecretRotationServiceClient;
use crate::proto::{
    ConfirmCredentialInUseRequest, GetGeneratedCredentialsRequest, GetSecretRotationRequest,
    ListSecretRotationsRequest, RotateSecretsRequest, RotationName, RotationType,
    get_secret_rotation_request,
};
use crate::secret::SecretString;

/// How `get` finds the rotation.
pub enum Lookup {
    /// By id.
    Id(String),
    /// By name within a project, environment and path.
    Name {
        /// Rotation name.
        name: String,
        /// Project id.
        project: String,
        /// Environment slug.
        environment: String,
        /// Secret path.
        secret_path: String,
    },
}

/// The known rotation types, for error messages.
pub fn known_types() -> String {
    let known: Vec<_> = crate::rotation::TYPES.iter().map(|t| t.slug).collect();
    known.join(", ")
}

/// The rotation type named `text`, or a usage error listing the known ones.
pub fn parse_type(text: &str) -> Result<RotationType, CliError> {
    RotationType::parse(text).ok_or_else(|| {
        CliError::usage(format!(
            "unknown rotation type {text:?}; known types: {}",
            known_types()
        ))
    })
}

/// The largest token, certificate or key file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

fn read_file(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| CliError::usage(format!("cannot read {flag} {}: {e}", path.display())))?;
    Ok(bytes)
}

/// TLS settings for an https server, or `None` for plaintext.
fn tls_config(args: &ClientArgs) -> Result<Option<ClientTlsConfig>, CliError> {
    let https = args.server.starts_with("https://");
    let wants_tls = args.ca_file.is_some() || args.cert_file.is_some();
    if !https {
        if wants_tls || args.tls_server_name.is_some() {
            return Err(CliError::usage(
                "--ca-file, --cert-file and --tls-server-name need an https:// --server",
            ));
        }
        return Ok(None);
    }
    let mut config = ClientTlsConfig::new();
    config = match &args.ca_file {
        Some(path) => config.ca_certificate(Certificate::from_pem(read_file("--ca-file", path)?)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&args.cert_file, &args.key_file) {
        let cert = read_file("--cert-file", cert)?;
        let key = read_file("--key-file", key)?;
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(name) = &args.tls_server_name {
        config = config.domain_name(name.clone());
    }
    Ok(Some(config))
}

/// The bearer token from --token / ROTATOR_TOKEN or --token-file, if any.
fn bearer_token(args: &ClientArgs) -> Result<Option<SecretString>, CliError> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    let Some(path) = &args.token_file else {
        return Ok(None);
    };
    let bytes = read_file("--token-file", path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::usage(format!("--token-file {} is not UTF-8", path.display())))?;
    Ok(Some(SecretString::new(text.trim_end_matches(['\n', '\r']))))
}

async fn connect(args: &ClientArgs) -> Result<SecretRotationServiceClient<Channel>, CliError> {
    let mut endpoint = Channel::from_shared(args.server.clone())
        .map_err(|e| CliError::usage(format!("bad --server {:?}: {e}", args.server)))?;
    if let Some(tls) = tls_config(args)? {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| CliError::usage(format!("TLS settings: {e}")))?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| CliError::unavailable(format!("cannot connect to {}: {e}", args.server)))?;
    Ok(SecretRotationServiceClient::new(channel))
}

fn request<T>(args: &ClientArgs, message: T) -> Result<tonic::Request<T>, CliError> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(args.timeout_seconds));
    if let Some(id) = &args.request_id {
        let value = id
            .parse()
            .map_err(|_| CliError::usage("--request-id must be ASCII"))?;
        request.metadata_mut().insert("x-request-id", value);
    }
    if let Some(token) = bearer_token(args)? {
        let mut value: tonic::metadata::MetadataValue<_> = format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| CliError::usage("the token must be printable ASCII"))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Prints the outcome of a command in the format asked for.
fn finish(args: &ClientArgs, outcome: Result<ExitCode, CliError>) -> ExitCode {
    outcome.unwrap_or_else(|error| output::error(args.format(), &error))
}

/// `rotator rotate TYPE ID`.
pub async fn rotate(args: &ClientArgs, rotation_type: &str, id: &str) -> ExitCode {
    let outcome = async {
        let rotation_type = parse_type(rotation_type)?;
        let mut client = connect(args).await?;
        let req = request(
            args,
            RotateSecretsRequest {
                r#type: rotation_type as i32,
                rotation_id: id.to_owned(),
            },
        )?;
        let answer = client
            .rotate_secrets(req)
            .await
            .map_err(|status| CliError::from_status(&status))?;
        output::rotated(args.format(), answer.into_inner().secret_rotation.as_ref())
    };
    finish(args, outcome.await)
}

/// `rotator get TYPE (ID | --name …)`.
pub async fn get(args: &ClientArgs, rotation_type: &str, lookup: Lookup) -> ExitCode {
    let outcome = async {
        let rotation_type = parse_type(rotation_type)?;
        let lookup = match lookup {
            Lookup::Id(id) => get_secret_rotation_request::Lookup::RotationId(id),
            Lookup::Name {
                name,
                project,
                environment,
                secret_path,
            } => get_secret_rotation_request::Lookup::ByName(RotationName {
                name,
                project_id: project,
                environment,
                secret_path,
            }),
        };
        let mut client = connect(args).await?;
        let req = request(
            args,
            GetSecretRotationRequest {
                r#type: rotation_type as i32,
                lookup: Some(lookup),
            },
        )?;
        let answer = client
            .get_secret_rotation(req)
            .await
            .map_err(|status| CliError::from_status(&status))?;
        output::rotation(args.format(), answer.into_inner().secret_rotation.as_ref())
    };
    finish(args, outcome.await)
}

/// `rotator list [TYPE] --project P`.
pub async fn list(args: &ClientArgs, rotation_type: Option<&str>, project: &str) -> ExitCode {
    let outcome = async {
        let rotation_type = match rotation_type {
            Some(t) => parse_type(t)?,
            None => RotationType::Unspecified,
        };
        let mut client = connect(args).await?;
        let req = request(
            args,
            ListSecretRotationsRequest {
                r#type: rotation_type as i32,
                project_id: project.to_owned(),
            },
        )?;
        let answer = client
            .list_secret_rotations(req)
            .await
            .map_err(|status| CliError::from_status(&status))?;
        output::rotations(args.format(), &answer.into_inner().secret_rotations)
    };
    finish(args, outcome.await)
}

/// `rotator credentials TYPE ID`.
pub async fn credentials(args: &ClientArgs, rotation_type: &str, id: &str) -> ExitCode {
    let outcome = async {
        let rotation_type = parse_type(rotation_type)?;
        let mut client = connect(args).await?;
        let req = request(
            args,
            GetGeneratedCredentialsRequest {
                r#type: rotation_type as i32,
                rotation_id: id.to_owned(),
            },
        )?;
        let answer = client
            .get_generated_credentials(req)
            .await
            .map_err(|status| CliError::from_status(&status))?;
        output::credentials(args.format(), &answer.into_inner())
    };
    finish(args, outcome.await)
}

/// `rotator confirm TYPE ID --version N --consumer NAME`.
pub async fn confirm(
    args: &ClientArgs,
    rotation_type: &str,
    id: &str,
    version: u64,
    consumer: &str,
) -> ExitCode {
    let outcome = async {
        let rotation_type = parse_type(rotation_type)?;
        let mut client = connect(args).await?;
        let req = request(
            args,
            ConfirmCredentialInUseRequest {
                r#type: rotation_type as i32,
                rotation_id: id.to_owned(),
                version,
                consumer: consumer.to_owned(),
            },
        )?;
        let answer = client
            .confirm_credential_in_use(req)
            .await
            .map_err(|status| CliError::from_status(&status))?;
        output::confirmed(args.format(), id, &answer.into_inner())
    };
    finish(args, outcome.await)
}
