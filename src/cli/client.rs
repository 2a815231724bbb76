//! The client commands: one gRPC call each, printed readably or as JSON.

use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

use super::{ClientArgs, output};
use crate::proto::secret_rotation_service_client::SecretRotationServiceClient;
use crate::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, ListSecretRotationsRequest,
    RotateSecretsRequest, RotationName, RotationType, get_secret_rotation_request,
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

fn parse_type(text: &str) -> Result<RotationType, ExitCode> {
    RotationType::parse(text).ok_or_else(|| {
        let known: Vec<_> = crate::rotation::TYPES.iter().map(|t| t.slug).collect();
        eprintln!(
            "error: unknown rotation type {text:?}; known types: {}",
            known.join(", ")
        );
        ExitCode::from(2)
    })
}

/// The largest token, certificate or key file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

fn read_file(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, ExitCode> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| {
            eprintln!("error: cannot read {flag} {}: {e}", path.display());
            ExitCode::from(2)
        })?;
    Ok(bytes)
}

/// TLS settings for an https server, or `None` for plaintext.
fn tls_config(args: &ClientArgs) -> Result<Option<ClientTlsConfig>, ExitCode> {
    let https = args.server.starts_with("https://");
    let wants_tls = args.ca_file.is_some() || args.cert_file.is_some();
    if !https {
        if wants_tls || args.tls_server_name.is_some() {
            eprintln!(
                "error: --ca-file, --cert-file and --tls-server-name need an https:// --server"
            );
            return Err(ExitCode::from(2));
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
fn bearer_token(args: &ClientArgs) -> Result<Option<SecretString>, ExitCode> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    let Some(path) = &args.token_file else {
        return Ok(None);
    };
    let bytes = read_file("--token-file", path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        eprintln!("error: --token-file {} is not UTF-8", path.display());
        ExitCode::from(2)
    })?;
    Ok(Some(SecretString::new(text.trim_end_matches(['\n', '\r']))))
}

async fn connect(args: &ClientArgs) -> Result<SecretRotationServiceClient<Channel>, ExitCode> {
    let mut endpoint = Channel::from_shared(args.server.clone()).map_err(|e| {
        eprintln!("error: bad --server {:?}: {e}", args.server);
        ExitCode::from(2)
    })?;
    if let Some(tls) = tls_config(args)? {
        endpoint = endpoint.tls_config(tls).map_err(|e| {
            eprintln!("error: TLS settings: {e}");
            ExitCode::from(2)
        })?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| {
            eprintln!("error: cannot connect to {}: {e}", args.server);
            ExitCode::FAILURE
        })?;
    Ok(SecretRotationServiceClient::new(channel))
}

fn request<T>(args: &ClientArgs, message: T) -> Result<tonic::Request<T>, ExitCode> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(args.timeout_seconds));
    if let Some(id) = &args.request_id {
        let value = id.parse().map_err(|_| {
            eprintln!("error: --request-id must be ASCII");
            ExitCode::from(2)
        })?;
        request.metadata_mut().insert("x-request-id", value);
    }
    if let Some(token) = bearer_token(args)? {
        let mut value: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", token.expose()).parse().map_err(|_| {
                eprintln!("error: the token must be printable ASCII");
                ExitCode::from(2)
            })?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Prints a failed call: code, message, reason and both request ids.
fn fail(status: &tonic::Status) -> ExitCode {
    let info = status.get_details_error_info();
    let request_id = status
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            info.as_ref()
                .and_then(|i| i.metadata.get("request_id").cloned())
        })
        .unwrap_or_else(|| "-".into());
    eprintln!("error: {:?}: {}", status.code(), status.message());
    if let Some(info) = &info {
        eprintln!("  reason: {}", info.reason);
        if let Some(req_id) = info.metadata.get("upstream_req_id") {
            eprintln!("  upstream reqId: {req_id}");
        }
    }
    eprintln!("  request id: {request_id}");
    ExitCode::FAILURE
}

macro_rules! try_exit {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

/// `rotator rotate TYPE ID`.
pub async fn rotate(args: &ClientArgs, rotation_type: &str, id: &str) -> ExitCode {
    let rotation_type = try_exit!(parse_type(rotation_type));
    let mut client = try_exit!(connect(args).await);
    let req = try_exit!(request(
        args,
        RotateSecretsRequest {
            r#type: rotation_type as i32,
            rotation_id: id.to_owned()
        }
    ));
    match client.rotate_secrets(req).await {
        Ok(response) => output::rotation(args.json, response.into_inner().secret_rotation.as_ref()),
        Err(status) => fail(&status),
    }
}

/// `rotator get TYPE (ID | --name …)`.
pub async fn get(args: &ClientArgs, rotation_type: &str, lookup: Lookup) -> ExitCode {
    let rotation_type = try_exit!(parse_type(rotation_type));
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
    let mut client = try_exit!(connect(args).await);
    let req = try_exit!(request(
        args,
        GetSecretRotationRequest {
            r#type: rotation_type as i32,
            lookup: Some(lookup)
        }
    ));
    match client.get_secret_rotation(req).await {
        Ok(response) => output::rotation(args.json, response.into_inner().secret_rotation.as_ref()),
        Err(status) => fail(&status),
    }
}

/// `rotator list [TYPE] --project P`.
pub async fn list(args: &ClientArgs, rotation_type: Option<&str>, project: &str) -> ExitCode {
    let rotation_type = match rotation_type {
        Some(t) => try_exit!(parse_type(t)),
        None => RotationType::Unspecified,
    };
    let mut client = try_exit!(connect(args).await);
    let req = try_exit!(request(
        args,
        ListSecretRotationsRequest {
            r#type: rotation_type as i32,
            project_id: project.to_owned()
        }
    ));
    match client.list_secret_rotations(req).await {
        Ok(response) => output::rotations(args.json, &response.into_inner().secret_rotations),
        Err(status) => fail(&status),
    }
}

/// `rotator credentials TYPE ID`.
pub async fn credentials(args: &ClientArgs, rotation_type: &str, id: &str) -> ExitCode {
    let rotation_type = try_exit!(parse_type(rotation_type));
    let mut client = try_exit!(connect(args).await);
    let req = try_exit!(request(
        args,
        GetGeneratedCredentialsRequest {
            r#type: rotation_type as i32,
            rotation_id: id.to_owned()
        }
    ));
    match client.get_generated_credentials(req).await {
        Ok(response) => output::credentials(args.json, &response.into_inner()),
        Err(status) => fail(&status),
    }
}
