//! The AWS Secrets Manager sink: the mapped secrets as one JSON `SecretString`.
//!
//! `PutSecretValue` with `VersionStages = ["AWSCURRENT"]`: Secrets Manager moves `AWSPREVIOUS`
//! to the version that was current, so AWS-native consumers (the SDKs' caching clients, the
//! Lambda extension, External Secrets) read the new value unchanged. A secret that does not
//! exist yet is created (`CreateSecret`). `ClientRequestToken` is a UUID derived from (rotation,
//! version, secret id), so a retry after a lost answer is the same version to AWS, never a
//! second one. Requests are SigV4-signed with the sink's own access key.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use sha2::{Digest as _, Sha256};

use super::render::render;
use super::{Payload, Sink, SinkError};
use crate::config::sinks::{AwsSecretsManagerSink, Format};

const SERVICE: &str = "secretsmanager";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Sink for AwsSecretsManagerSink {
    async fn deliver(&self, payload: &Payload<'_>) -> Result<(), SinkError> {
        let value = render(&Format::Json, payload.values)?;
        let token = request_token(payload.rotation_id, payload.version, &self.secret_id);
        let put = serde_json::json!({
            "SecretId": self.secret_id,
            "SecretString": value.expose().trim_end(),
            "ClientRequestToken": token,
            "VersionStages": ["AWSCURRENT"],
        });
        match self.call("PutSecretValue", &put).await {
            Err(Failure::Service { code, .. }) if code == "ResourceNotFoundException" => {
                let create = serde_json::json!({
                    "Name": self.secret_id,
                    "SecretString": value.expose().trim_end(),
                    "ClientRequestToken": token,
                    "Description": "written by rotator (docs/delivery.md)",
                });
                self.call("CreateSecret", &create)
                    .await
                    .map(drop)
                    .map_err(Into::into)
            }
            other => other.map(drop).map_err(Into::into),
        }
    }
}

/// Why a call failed; its text never holds the request body.
enum Failure {
    Service { status: u16, code: String },
    Other(String),
}

impl From<Failure> for SinkError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Service { status, code } => {
                SinkError(format!("Secrets Manager answered HTTP {status} {code}"))
            }
            Failure::Other(text) => SinkError(text),
        }
    }
}

impl AwsSecretsManagerSink {
    fn endpoint(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| {
            let suffix = if self.region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://secretsmanager.{}.{suffix}/", self.region)
        })
    }

    /// One signed JSON-protocol call of `action` (e.g. `GetSecretValue`) with the sink's key:
    /// its answer, or an error naming the service's error type (never a body).
    ///
    /// # Errors
    ///
    /// [`SinkError`] without any value in its message.
    pub async fn request(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, SinkError> {
        self.call(action, body).await.map_err(Into::into)
    }

    async fn call(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, Failure> {
        let url = self.endpoint();
        let body = body.to_string();
        let target = format!("secretsmanager.{action}");
        let identity = Credentials::new(
            self.access_key_id.expose(),
            self.secret_access_key.expose(),
            None,
            None,
            "rotator-sink",
        )
        .into();
        let signing = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Failure::Other(format!("cannot sign: {e}")))?
            .into();
        let headers = [
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target.as_str()),
        ];
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| Failure::Other(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &signing)
            .map_err(|e| Failure::Other(format!("cannot sign: {e}")))?
            .into_parts();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| Failure::Other(format!("HTTP client: {e}")))?;
        let mut request = client
            .post(&url)
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", &target);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Other(format!("{action} to {url}: {}", transport(&e))))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
        }
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_owned))
            .map(|t| t.rsplit('#').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        Err(Failure::Service {
            status: status.as_u16(),
            code,
        })
    }
}

fn transport(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    }
}

/// A UUID that names one version of one rotation in one secret: retries send the same one.
pub fn request_token(rotation_id: &str, version: u64, secret_id: &str) -> String {
    let digest = Sha256::digest(format!(
        "rotator-delivery\0{rotation_id}\0{version}\0{secret_id}"
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_stable_per_version() {
        let a = request_token("r", 3, "app/db");
        assert_eq!(a, request_token("r", 3, "app/db"));
        assert_ne!(a, request_token("r", 4, "app/db"));
        assert_eq!(a.len(), 36);
    }
}
