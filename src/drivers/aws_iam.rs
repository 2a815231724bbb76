//! `aws-iam-user-secret`: access keys of one IAM user, issued by IAM.
//!
//! IAM creates the secret access key, shows it once and names it with an access key id, so this
//! is an [`Issuer`]; the engine (`src/local/issued.rs`) seals the answer before anything else.
//! Every call is one signed (SigV4) request to IAM's or STS's Query API, its XML reply read here:
//!
//! - **issue**: `CreateAccessKey(UserName)`. IAM allows 2 keys per user; a third is
//!   `LimitExceeded`, which is [`DriverErrorKind::LimitReached`]: the engine then revokes the
//!   slot's replaced key (by its stored id) and issues again.
//! - **verify**: `sts:GetCallerIdentity` signed with the new key, which must answer with the
//!   target user's ARN. A new key takes a few seconds to reach every IAM endpoint on real AWS, so
//!   a rejected signature is retried with backoff for up to `verify_retry_seconds` (20 s by
//!   default) before it counts as `LoginRejected`.
//! - **revoke**: `DeleteAccessKey(UserName, AccessKeyId)` of exactly the id the engine asks for;
//!   an id IAM does not know is success. Upstream deleted "the oldest key" whenever the user had
//!   two, which could delete a key rotator never managed or the active one (spec §14 item 8).
//! - **list**: `ListAccessKeys(UserName)`, every page.
//!
//! Why verify retries itself rather than answering a transient kind: a key that IAM has not yet
//! propagated and a key that is wrong answer alike (`InvalidClientTokenId`), so only time tells
//! them apart. Retrying inside verify, bounded, keeps `LoginRejected` permanent (a wrong key is
//! never retried by the engine forever) while absorbing the propagation delay.
//!
//! The connection's `host`, `port` and `tls` are the IAM endpoint (`iam.amazonaws.com`, or
//! `iam.us-gov.amazonaws.com` / `iam.cn-north-1.amazonaws.com.cn` for the GovCloud and China
//! partitions; an emulator such as `127.0.0.1` with `tls = "disable"` in tests). `username` is the
//! admin's access key id and `password` its secret access key.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::{Client, Url};

use super::http::{error_chain, is_tls};
use super::redact::Redactor;
use super::{
    BuildContext, Built, CONNECT_TIMEOUT, ConnectionConfig, Credential, DbSystem, Descriptor,
    DriverError, DriverErrorKind, Issuer, OPERATION_TIMEOUT, Operations, Phase, TlsMode, invalid,
};
use crate::proto::{AwsIamUserSecretParameters, RotationType, rotation_parameters};
use crate::rotation::{CredentialShape, SecretSource};
use crate::secret::SecretString;

const SYSTEM: DbSystem = DbSystem::new("aws.iam");

/// The rotation's region when neither its parameters nor the connection name one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Option: the region when the rotation's `region` parameter is absent.
const REGION_OPTION: &str = "region";
/// Option: the STS endpoint URL for verify (default: `sts.<region>` of the partition, or the IAM
/// endpoint itself when that is not an AWS host, as emulators serve both).
const STS_ENDPOINT_OPTION: &str = "sts_endpoint";
/// Option: how long verify keeps retrying a rejected new key (IAM propagation), in seconds.
const VERIFY_RETRY_OPTION: &str = "verify_retry_seconds";
/// The default of [`VERIFY_RETRY_OPTION`].
const DEFAULT_VERIFY_RETRY: Duration = Duration::from_secs(20);
/// The first pause between verify tries; it doubles up to [`MAX_VERIFY_PAUSE`].
const FIRST_VERIFY_PAUSE: Duration = Duration::from_millis(500);
const MAX_VERIFY_PAUSE: Duration = Duration::from_secs(4);
/// `ListAccessKeys` pages read at most (IAM holds 2 keys per user; this bounds a broken peer).
const MAX_PAGES: usize = 20;

const IAM_VERSION: &str = "2010-05-08";
const STS_VERSION: &str = "2011-06-15";

/// `aws-iam-user-secret` on AWS IAM (access keys).
pub static DESCRIPTOR: Descriptor = Descriptor {
    app: "aws",
    default_port: 443,
    rotation_types: &[RotationType::AwsIamUserSecret],
    shape: CredentialShape::AccessKey,
    source: SecretSource::Issued,
    system: SYSTEM,
    operations: Operations {
        apply: "CreateAccessKey",
        verify: "GetCallerIdentity",
        revoke: "DeleteAccessKey",
        probe: "ListAccessKeys",
    },
    options: &[REGION_OPTION, STS_ENDPOINT_OPTION, VERIFY_RETRY_OPTION],
    build,
};

fn build(ctx: &BuildContext<'_>) -> Result<Built, DriverError> {
    let rotation_parameters::Kind::AwsIamUserSecret(parameters) = ctx.parameters else {
        return Err(ctx.wrong_parameters(SYSTEM));
    };
    let options = AwsOptions::from_table(ctx.options)?;
    Ok(Built::issued(AwsIamDriver::new(
        ctx.connection,
        parameters,
        &options,
    )?))
}

/// The connection options of the `aws` app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOptions {
    /// `region`: the region of rotations whose parameters name none. Since v0.1.
    pub region: Option<String>,
    /// `sts_endpoint`: where verify sends `GetCallerIdentity`. Since v0.1.
    pub sts_endpoint: Option<String>,
    /// `verify_retry_seconds`: how long verify retries a rejected new key. Since v0.1.
    pub verify_retry: Duration,
}

/// An AWS partition: which IAM endpoint serves a region, and the region IAM signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// The commercial regions (`aws`).
    Aws,
    /// GovCloud (`us-gov-*`).
    UsGov,
    /// China (`cn-*`).
    China,
}

/// The access key driver of one rotation.
#[derive(Debug, Clone)]
pub struct AwsIamDriver {
    /// The IAM user whose keys rotate.
    user_name: String,
    /// The admin's access key (`username`) and secret (`password`).
    admin: Credential,
    /// IAM's Query API.
    iam: QueryClient,
    /// STS's Query API (verify).
    sts: QueryClient,
    /// How long verify retries a rejected new key.
    verify_retry: Duration,
}

/// A SigV4-signed client of one Query API endpoint (IAM or STS). Public so that test fixtures
/// speak to an emulator exactly as the driver does.
#[derive(Debug, Clone)]
pub struct QueryClient {
    http: Client,
    url: Url,
    /// The region in the signature's scope.
    region: String,
    /// `iam` or `sts`.
    service: &'static str,
    /// The API version every request names.
    version: &'static str,
}

/// Why a Query API call failed, before the driver classifies it. Holds no secret except what
/// the peer wrote in `message` (scrub it).
#[derive(Debug)]
pub enum QueryError {
    /// The service answered with an error document (or an HTTP error without one).
    Service {
        /// The HTTP status.
        status: u16,
        /// The error code (`NoSuchEntity`, `LimitExceeded`, …); empty without a document.
        code: String,
        /// The service's message.
        message: String,
    },
    /// No answer: connect, TLS, timeout or a broken connection.
    Transport(reqwest::Error),
    /// The request could not be signed (a malformed key id or URL).
    Sign(String),
}

/// Whose key signed a call: decides how a rejected signature is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Admin,
    Candidate,
}

// === impl AwsOptions ===

impl AwsOptions {
    /// Reads `region`, `sts_endpoint` and `verify_retry_seconds` from a connection's options.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`] naming the option.
    pub fn from_table(options: &toml::Table) -> Result<Self, DriverError> {
        let string = |key: &str| -> Result<Option<String>, DriverError> {
            match options.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Some(s.to_owned()))
                    .ok_or_else(|| {
                        invalid(
                            SYSTEM,
                            Phase::Build,
                            format!("{key} must be a non-empty string"),
                        )
                    }),
            }
        };
        let verify_retry = match options.get(VERIFY_RETRY_OPTION) {
            None => DEFAULT_VERIFY_RETRY,
            Some(v) => v
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n <= 600)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    invalid(
                        SYSTEM,
                        Phase::Build,
                        format!("{VERIFY_RETRY_OPTION} must be an integer from 0 to 600"),
                    )
                })?,
        };
        Ok(Self {
            region: string(REGION_OPTION)?,
            sts_endpoint: string(STS_ENDPOINT_OPTION)?,
            verify_retry,
        })
    }
}

impl Default for AwsOptions {
    fn default() -> Self {
        Self {
            region: None,
            sts_endpoint: None,
            verify_retry: DEFAULT_VERIFY_RETRY,
        }
    }
}

// === impl Partition ===

impl Partition {
    /// The partition of `region`.
    pub fn of(region: &str) -> Self {
        if region.starts_with("us-gov-") {
            Self::UsGov
        } else if region.starts_with("cn-") {
            Self::China
        } else {
            Self::Aws
        }
    }

    /// The host of the partition's (global) IAM endpoint.
    pub fn iam_host(self) -> &'static str {
        match self {
            Self::Aws => "iam.amazonaws.com",
            Self::UsGov => "iam.us-gov.amazonaws.com",
            Self::China => "iam.cn-north-1.amazonaws.com.cn",
        }
    }

    /// The region IAM requests are signed in.
    pub fn iam_region(self) -> &'static str {
        match self {
            Self::Aws => "us-east-1",
            Self::UsGov => "us-gov-west-1",
            Self::China => "cn-north-1",
        }
    }

    /// The partition's DNS suffix.
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Self::Aws | Self::UsGov => "amazonaws.com",
            Self::China => "amazonaws.com.cn",
        }
    }
}

// === impl AwsIamDriver ===

impl AwsIamDriver {
    /// A driver for `parameters.user_name`'s keys through the connection's IAM endpoint.
    /// Sends nothing.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`]: a user name IAM would refuse, a bad region, an empty
    /// admin secret, `tls = "disable"` towards AWS, an IAM host of another partition than the
    /// region's, a bad `sts_endpoint`; [`DriverErrorKind::Tls`] for an unusable CA.
    pub fn new(
        connection: &ConnectionConfig,
        parameters: &AwsIamUserSecretParameters,
        options: &AwsOptions,
    ) -> Result<Self, DriverError> {
        let build_error = |m: String| invalid(SYSTEM, Phase::Build, m);
        let user_name = parameters.user_name.trim();
        if !is_user_name(user_name) {
            return Err(build_error(format!(
                "userName {user_name:?} is not an IAM user name (1-64 of A-Z a-z 0-9 +=,.@_-)"
            )));
        }
        let region = parameters
            .region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .or(options.region.as_deref())
            .unwrap_or(DEFAULT_REGION);
        if !is_region(region) {
            return Err(build_error(format!("{region:?} is not an AWS region name")));
        }
        if connection.admin_password.is_empty() {
            return Err(build_error(
                "the connection password (the admin's secret access key) is empty".into(),
            ));
        }
        if !is_key_id(&connection.admin_username) {
            return Err(build_error(
                "the connection username must be the admin's access key id".into(),
            ));
        }
        let partition = Partition::of(region);
        let host = connection.host.trim();
        let aws_host = is_aws_host(host);
        let disabled = connection.tls.mode == TlsMode::Disable;
        if aws_host && disabled {
            return Err(build_error(
                "tls = \"disable\" is refused for an AWS endpoint: keys would cross the network in the clear".into(),
            ));
        }
        if aws_host && host.starts_with("iam.") && host != partition.iam_host() {
            return Err(build_error(format!(
                "region {region} is served by IAM at {}, not {host}",
                partition.iam_host()
            )));
        }
        let scheme = if disabled { "http" } else { "https" };
        let iam_url = endpoint_url(&format!(
            "{scheme}://{}:{}/",
            bracketed(host),
            connection.port
        ))?;
        let sts_url = match &options.sts_endpoint {
            Some(text) => {
                let url = endpoint_url(text)?;
                if url.scheme() == "http" && !disabled {
                    return Err(build_error(format!(
                        "{STS_ENDPOINT_OPTION} is http: allowed only with tls = \"disable\""
                    )));
                }
                url
            }
            None if aws_host => endpoint_url(&format!(
                "https://sts.{region}.{}/",
                partition.dns_suffix()
            ))?,
            None => iam_url.clone(),
        };
        // `verify-full` with a ca_file pins a self-signed certificate as the HTTP drivers do.
        let http = super::http::client(connection, SYSTEM)?;
        Ok(Self {
            user_name: user_name.to_owned(),
            admin: Credential {
                id: connection.admin_username.clone(),
                secret: connection.admin_password.clone(),
            },
            iam: QueryClient {
                http: http.clone(),
                url: iam_url,
                region: partition.iam_region().to_owned(),
                service: "iam",
                version: IAM_VERSION,
            },
            sts: QueryClient {
                http,
                url: sts_url,
                region: region.to_owned(),
                service: "sts",
                version: STS_VERSION,
            },
            verify_retry: options.verify_retry,
        })
    }

    /// The IAM user whose keys rotate.
    pub fn user_name(&self) -> &str {
        &self.user_name
    }

    /// Where IAM requests go.
    pub fn iam_url(&self) -> &Url {
        &self.iam.url
    }

    /// Where verify's `GetCallerIdentity` goes.
    pub fn sts_url(&self) -> &Url {
        &self.sts.url
    }

    /// The region IAM requests are signed in.
    pub fn iam_region(&self) -> &str {
        &self.iam.region
    }

    /// An IAM call as the admin; errors classified for `phase`.
    async fn admin_call(
        &self,
        phase: Phase,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, DriverError> {
        self.iam
            .call(&self.admin, action, params)
            .await
            .map_err(|e| classify(&e, phase, Signer::Admin, &self.redactor()))
    }

    fn redactor(&self) -> Redactor<'_> {
        Redactor::new([self.admin.secret.expose()])
    }

    /// One `GetCallerIdentity` with `credential`: the ARN it answers to.
    async fn caller_arn(&self, credential: &Credential) -> Result<String, DriverError> {
        let redactor = self.redactor().also(credential.secret.expose());
        let xml = self
            .sts
            .call(credential, "GetCallerIdentity", &[])
            .await
            .map_err(|e| classify(&e, Phase::Verify, Signer::Candidate, &redactor))?;
        texts(&xml, "Arn")
            .map_err(|e| reply_error(Phase::Verify, e))?
            .into_iter()
            .next()
            .ok_or_else(|| reply_error(Phase::Verify, "no Arn in the GetCallerIdentity reply"))
    }
}

impl Issuer for AwsIamDriver {
    async fn issue(&self) -> Result<Credential, DriverError> {
        let xml = self
            .admin_call(
                Phase::Issue,
                "CreateAccessKey",
                &[("UserName", &self.user_name)],
            )
            .await?;
        // The reply holds the new secret: never quote it, whatever goes wrong.
        let doc = roxmltree::Document::parse(&xml)
            .map_err(|_| reply_error(Phase::Issue, "the CreateAccessKey reply is not XML"))?;
        let field = |tag: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name(tag))
                .and_then(|n| n.text())
                .map(str::trim)
                .filter(|t| !t.is_empty())
        };
        match (field("AccessKeyId"), field("SecretAccessKey")) {
            (Some(id), Some(secret)) => Ok(Credential {
                id: id.to_owned(),
                secret: SecretString::new(secret),
            }),
            _ => Err(reply_error(
                Phase::Issue,
                "the CreateAccessKey reply names no access key",
            )),
        }
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + self.verify_retry;
        let mut pause = FIRST_VERIFY_PAUSE;
        let arn = loop {
            match self.caller_arn(credential).await {
                Ok(arn) => break arn,
                Err(e)
                    if e.kind() == DriverErrorKind::LoginRejected
                        && tokio::time::Instant::now() + pause <= deadline =>
                {
                    tracing::debug!(id = %credential.id, ?pause,
                        "the new key is not accepted yet (IAM propagation); trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_VERIFY_PAUSE);
                }
                Err(e) => return Err(e),
            }
        };
        // `arn:<partition>:iam::<account>:user[/<path>]/<name>`
        let name = arn.rsplit('/').next().unwrap_or_default();
        if arn.contains(":user/") && name == self.user_name {
            Ok(())
        } else {
            Err(DriverError::new(
                DriverErrorKind::LoginRejected,
                SYSTEM,
                Phase::Verify,
                format!(
                    "the key answers as {arn}, not as IAM user {:?}",
                    self.user_name
                ),
            ))
        }
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        if !is_key_id(id) {
            return Err(invalid(
                SYSTEM,
                Phase::Revoke,
                format!("{id:?} is not an access key id"),
            ));
        }
        if id == self.admin.id {
            return Err(invalid(
                SYSTEM,
                Phase::Revoke,
                "refusing to delete the connection's own admin access key",
            ));
        }
        let params = [("UserName", self.user_name.as_str()), ("AccessKeyId", id)];
        match self
            .iam
            .call(&self.admin, "DeleteAccessKey", &params)
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (or never there): what revoke wants. A missing *user* answers the
            // same code; its keys are gone with it.
            Err(QueryError::Service { code, .. }) if code == "NoSuchEntity" => Ok(()),
            Err(e) => Err(classify(&e, Phase::Revoke, Signer::Admin, &self.redactor())),
        }
    }

    async fn list(&self) -> Result<Vec<String>, DriverError> {
        let mut ids = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![("UserName", self.user_name.as_str())];
            if let Some(m) = &marker {
                params.push(("Marker", m.as_str()));
            }
            let xml = self
                .admin_call(Phase::List, "ListAccessKeys", &params)
                .await?;
            let doc = roxmltree::Document::parse(&xml)
                .map_err(|_| reply_error(Phase::List, "the ListAccessKeys reply is not XML"))?;
            ids.extend(
                doc.descendants()
                    .filter(|n| n.has_tag_name("AccessKeyId"))
                    .filter_map(|n| n.text())
                    .map(|t| t.trim().to_owned()),
            );
            let truncated = doc
                .descendants()
                .find(|n| n.has_tag_name("IsTruncated"))
                .and_then(|n| n.text())
                .is_some_and(|t| t.trim() == "true");
            marker = doc
                .descendants()
                .find(|n| n.has_tag_name("Marker"))
                .and_then(|n| n.text())
                .map(|t| t.trim().to_owned());
            if !truncated || marker.is_none() {
                return Ok(ids);
            }
        }
        Err(reply_error(
            Phase::List,
            "ListAccessKeys kept answering with more pages",
        ))
    }
}

// === impl QueryClient ===

impl QueryClient {
    /// A client of the Query API at `url`, signing for `service` (`iam`, `sts`) in `region`.
    /// Plain `http` is accepted: callers decide whether it is allowed.
    ///
    /// # Errors
    ///
    /// [`DriverErrorKind::InvalidInput`] for a URL that is not http(s).
    pub fn new(url: &str, region: &str, service: &'static str) -> Result<Self, DriverError> {
        let version = match service {
            "sts" => STS_VERSION,
            _ => IAM_VERSION,
        };
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(OPERATION_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(SYSTEM, Phase::Build, error_chain(&e)))?;
        Ok(Self {
            http,
            url: endpoint_url(url)?,
            region: region.to_owned(),
            service,
            version,
        })
    }

    /// Sends `action` with `params`, signed with `key` (its id and secret access key), and
    /// returns the reply's XML.
    ///
    /// # Errors
    ///
    /// A [`QueryError`]: the service's error document, or no answer.
    pub async fn call(
        &self,
        key: &Credential,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, QueryError> {
        let body = form_body(action, self.version, params);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let identity = Credentials::new(
            key.id.as_str(),
            key.secret.expose(),
            None,
            None,
            "rotator",
        )
        .into();
        let signing = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| QueryError::Sign(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| QueryError::Sign(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &signing)
            .map_err(|e| QueryError::Sign(e.to_string()))?
            .into_parts();
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(QueryError::Transport)?;
        let status = response.status();
        let text = response.text().await.map_err(QueryError::Transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let (code, message) = error_document(&text);
        Err(QueryError::Service {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

// === impl QueryError ===

impl QueryError {
    /// The service's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service {
                status,
                code,
                message,
            } => write!(f, "HTTP {status} {code}: {message}"),
            Self::Transport(e) => f.write_str(&error_chain(e)),
            Self::Sign(m) => write!(f, "cannot sign the request: {m}"),
        }
    }
}

// === helpers ===

/// The text of every `<tag>` element of an XML reply.
///
/// # Errors
///
/// A static message when `xml` is not XML (never quoting it: it may hold a secret).
pub fn texts(xml: &str, tag: &str) -> Result<Vec<String>, &'static str> {
    let doc = roxmltree::Document::parse(xml).map_err(|_| "the reply is not XML")?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name(tag))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .collect())
}

/// `(Code, Message)` of an error reply (`<ErrorResponse><Error><Code>…`); empty when absent.
fn error_document(xml: &str) -> (String, String) {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return (String::new(), String::new());
    };
    let Some(error) = doc.descendants().find(|n| n.has_tag_name("Error")) else {
        return (String::new(), String::new());
    };
    let child = |tag: &str| {
        error
            .children()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    (child("Code"), child("Message"))
}

/// The form body of a Query API request, encoded as the AWS SDKs do: every byte but RFC 3986's
/// unreserved characters percent-encoded (so `*` is `%2A` and a space `%20`). The signature
/// covers the body's hash; emulators that re-encode the parsed form before hashing only agree
/// with this strict form.
fn form_body(action: &str, version: &str, params: &[(&str, &str)]) -> String {
    let mut body = String::new();
    let pairs = [("Action", action)]
        .into_iter()
        .chain(params.iter().copied())
        .chain([("Version", version)]);
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            body.push('&');
        }
        percent_encode(name, &mut body);
        body.push('=');
        percent_encode(value, &mut body);
    }
    body
}

fn percent_encode(text: &str, out: &mut String) {
    use std::fmt::Write as _;
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// Classifies a failed call. Texts from the peer are scrubbed with `redactor`.
fn classify(e: &QueryError, phase: Phase, signer: Signer, redactor: &Redactor<'_>) -> DriverError {
    let rejected = match signer {
        Signer::Admin => DriverErrorKind::AdminLoginRejected,
        Signer::Candidate => DriverErrorKind::LoginRejected,
    };
    let kind = match e {
        QueryError::Service { status, code, .. } => match code.as_str() {
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "InvalidAccessKeyId"
            | "AuthFailure"
            | "ExpiredToken"
            | "UnrecognizedClientException" => rejected,
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
                DriverErrorKind::PermissionDenied
            }
            "NoSuchEntity" => DriverErrorKind::UserNotFound,
            "LimitExceeded" => DriverErrorKind::LimitReached,
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "ServiceFailure"
            | "InternalFailure"
            | "InternalError" => DriverErrorKind::ServerUnavailable,
            "ValidationError" | "InvalidInput" | "MalformedInput" | "InvalidParameterValue" => {
                DriverErrorKind::InvalidInput
            }
            _ if *status >= 500 || *status == 429 => DriverErrorKind::ServerUnavailable,
            _ => DriverErrorKind::Server,
        },
        QueryError::Transport(t) if t.is_timeout() => DriverErrorKind::Timeout,
        QueryError::Transport(t) if t.is_connect() && is_tls(t) => DriverErrorKind::Tls,
        QueryError::Transport(_) => DriverErrorKind::Unreachable,
        QueryError::Sign(_) => DriverErrorKind::InvalidInput,
    };
    DriverError::new(kind, SYSTEM, phase, redactor.scrub(&e.to_string()))
}

/// A 2xx reply the driver cannot read. The text is the driver's own, never the reply's.
fn reply_error(phase: Phase, message: &'static str) -> DriverError {
    DriverError::new(DriverErrorKind::Server, SYSTEM, phase, message)
}

/// An endpoint URL: http(s), with a host, nothing after the path.
fn endpoint_url(text: &str) -> Result<Url, DriverError> {
    let bad = |why: &str| invalid(SYSTEM, Phase::Build, format!("endpoint {text:?} {why}"));
    let url = Url::parse(text).map_err(|_| bad("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad("must have no query, fragment or user"));
    }
    Ok(url)
}

/// `host` ready for a URL: IPv6 literals in brackets.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn is_aws_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// IAM user names: 1-64 of `[A-Za-z0-9+=,.@_-]`.
fn is_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Access key ids: 16-128 of `[A-Za-z0-9]` (`AKIA…`; emulators may use others).
fn is_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Region names: lower-case letters, digits and `-`, e.g. `eu-west-1`, `us-gov-west-1`.
fn is_region(region: &str) -> bool {
    (4..=32).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && region.contains('-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::TlsConfig;

    fn connection(host: &str, mode: TlsMode) -> ConnectionConfig {
        ConnectionConfig {
            host: host.into(),
            port: 443,
            database: String::new(),
            admin_username: "AKIAADMIN00000000001".into(),
            admin_password: SecretString::new("admin-secret-access-key-0000000000000000"),
            tls: TlsConfig {
                mode,
                ca_pem: None,
            },
        }
    }

    fn parameters(region: Option<&str>) -> AwsIamUserSecretParameters {
        AwsIamUserSecretParameters {
            user_name: "ci-deployer".into(),
            region: region.map(Into::into),
        }
    }

    fn driver(host: &str, mode: TlsMode, region: Option<&str>) -> Result<AwsIamDriver, DriverError> {
        AwsIamDriver::new(
            &connection(host, mode),
            &parameters(region),
            &AwsOptions::default(),
        )
    }

    #[test]
    fn each_partition_has_its_iam_endpoint_and_signing_region() {
        let d = driver("iam.amazonaws.com", TlsMode::VerifyFull, None).expect("commercial");
        assert_eq!(d.iam_url().as_str(), "https://iam.amazonaws.com/");
        assert_eq!(d.iam_region(), "us-east-1");
        assert_eq!(d.sts_url().as_str(), "https://sts.us-east-1.amazonaws.com/");

        let d = driver("iam.us-gov.amazonaws.com", TlsMode::VerifyFull, Some("us-gov-east-1"))
            .expect("GovCloud");
        assert_eq!(d.iam_region(), "us-gov-west-1");
        assert_eq!(d.sts_url().as_str(), "https://sts.us-gov-east-1.amazonaws.com/");

        let d = driver("iam.cn-north-1.amazonaws.com.cn", TlsMode::VerifyFull, Some("cn-northwest-1"))
            .expect("China");
        assert_eq!(d.iam_region(), "cn-north-1");
        assert_eq!(d.sts_url().as_str(), "https://sts.cn-northwest-1.amazonaws.com.cn/");
    }

    #[test]
    fn a_region_of_another_partition_than_the_iam_host_is_refused() {
        let e = driver("iam.amazonaws.com", TlsMode::VerifyFull, Some("us-gov-west-1"))
            .expect_err("GovCloud region on the commercial endpoint");
        assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
        assert!(e.detail().contains("iam.us-gov.amazonaws.com"), "{e}");
    }

    #[test]
    fn plain_http_needs_tls_disable_and_never_reaches_aws() {
        let e = driver("iam.amazonaws.com", TlsMode::Disable, None).expect_err("http to AWS");
        assert_eq!(e.kind(), DriverErrorKind::InvalidInput);

        let d = driver("127.0.0.1", TlsMode::Disable, None).expect("an emulator");
        assert_eq!(d.iam_url().as_str(), "http://127.0.0.1:443/");
        assert_eq!(d.sts_url(), d.iam_url(), "emulators serve STS on the same port");

        let options = AwsOptions {
            sts_endpoint: Some("http://127.0.0.1:9/".into()),
            ..AwsOptions::default()
        };
        let e = AwsIamDriver::new(
            &connection("127.0.0.1", TlsMode::VerifyFull),
            &parameters(None),
            &options,
        )
        .expect_err("an http STS endpoint without tls = disable");
        assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    }

    #[test]
    fn options_are_read_and_checked_by_name() {
        let table: toml::Table = toml::from_str(
            "region = \"eu-west-1\"\nsts_endpoint = \"https://sts.eu-west-1.amazonaws.com\"\nverify_retry_seconds = 3",
        )
        .expect("toml");
        let o = AwsOptions::from_table(&table).expect("valid");
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.verify_retry, Duration::from_secs(3));

        let d = AwsIamDriver::new(
            &connection("iam.amazonaws.com", TlsMode::VerifyFull),
            &parameters(None),
            &o,
        )
        .expect("the connection's region");
        assert_eq!(d.sts_url().as_str(), "https://sts.eu-west-1.amazonaws.com/");

        for bad in ["region = 3", "verify_retry_seconds = -1", "sts_endpoint = \"\""] {
            let table: toml::Table = toml::from_str(bad).expect("toml");
            let e = AwsOptions::from_table(&table).expect_err(bad);
            assert_eq!(e.kind(), DriverErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn user_names_regions_and_key_ids_are_checked_before_anything_is_sent() {
        assert!(is_user_name("ci-deployer+x=y,z.w@q_1"));
        assert!(!is_user_name(""));
        assert!(!is_user_name("a b"));
        assert!(!is_user_name(&"a".repeat(65)));
        assert!(is_region("us-gov-west-1") && is_region("eu-central-1"));
        assert!(!is_region("US-EAST-1") && !is_region("east") && !is_region("-a-"));
        assert!(is_key_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(!is_key_id("AKIA&Action=DeleteUser"));
    }

    #[test]
    fn query_bodies_are_form_encoded() {
        assert_eq!(
            form_body("ListAccessKeys", IAM_VERSION, &[("UserName", "a+b@c")]),
            "Action=ListAccessKeys&UserName=a%2Bb%40c&Version=2010-05-08"
        );
        assert_eq!(
            form_body("X", STS_VERSION, &[("P", "{\"a\": [\"*\"]}~é")]),
            "Action=X&P=%7B%22a%22%3A%20%5B%22%2A%22%5D%7D~%C3%A9&Version=2011-06-15"
        );
    }

    #[test]
    fn error_codes_map_to_kinds_by_signer() {
        let redactor = Redactor::new(["admin-secret-access-key-0000000000000000"]);
        let service = |status: u16, code: &str| QueryError::Service {
            status,
            code: code.into(),
            message: "m".into(),
        };
        let kind = |e: QueryError, s: Signer| classify(&e, Phase::Issue, s, &redactor).kind();
        use DriverErrorKind as K;
        assert_eq!(kind(service(403, "InvalidClientTokenId"), Signer::Admin), K::AdminLoginRejected);
        assert_eq!(kind(service(403, "SignatureDoesNotMatch"), Signer::Admin), K::AdminLoginRejected);
        assert_eq!(kind(service(403, "InvalidClientTokenId"), Signer::Candidate), K::LoginRejected);
        assert_eq!(kind(service(403, "AccessDenied"), Signer::Admin), K::PermissionDenied);
        assert_eq!(kind(service(404, "NoSuchEntity"), Signer::Admin), K::UserNotFound);
        assert_eq!(kind(service(409, "LimitExceeded"), Signer::Admin), K::LimitReached);
        assert_eq!(kind(service(400, "Throttling"), Signer::Admin), K::ServerUnavailable);
        assert_eq!(kind(service(503, ""), Signer::Admin), K::ServerUnavailable);
        assert_eq!(kind(service(400, "Whatever"), Signer::Admin), K::Server);
        assert!(kind(service(503, ""), Signer::Admin).is_transient());
    }

    #[test]
    fn error_documents_give_code_and_message_and_are_scrubbed() {
        let xml = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name x cannot be found; admin-secret-access-key-0000000000000000</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let (code, message) = error_document(xml);
        assert_eq!(code, "NoSuchEntity");
        let e = classify(
            &QueryError::Service {
                status: 404,
                code,
                message,
            },
            Phase::List,
            Signer::Admin,
            &Redactor::new(["admin-secret-access-key-0000000000000000"]),
        );
        assert!(!e.to_string().contains("admin-secret"), "{e}");
        assert_eq!(error_document("not xml"), (String::new(), String::new()));
    }
}
