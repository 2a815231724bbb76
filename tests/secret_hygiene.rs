//! Secret hygiene: run the main scenarios (forwarded rotate / get / list / credentials for all
//! 14 types, upstream failures, token expiry and revocation, a malformed credentials answer,
//! authentication and permission denials, a config error) with every log line captured at TRACE
//! (span fields included) and every gRPC error kept, then search all of it for every configured
//! or generated secret: the Infisical client secret, the access tokens the fake issued, the
//! callers' bearer tokens (valid and invalid), the server's TLS key and every generated
//! credential value. Zero hits.
//!
//! Exported spans carry the attributes recorded through `tracing`, which this capture sees as
//! span fields. Published events and OTLP exports are captured by their own suites: add their
//! payloads to [`Haystack`] (see `haystack.add(..)` below) to cover them here too.

use std::collections::HashMap;

use rotator::proto::get_secret_rotation_request::Lookup;
use rotator::proto::{
    GetGeneratedCredentialsRequest, GetSecretRotationRequest, ListSecretRotationsRequest,
    RotateSecretsRequest, RotationType,
};
use rotator::rotation::{TYPES, json};
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID, Route};
use rotator_testkit::log_capture::Capture;
use rotator_testkit::secure::{Pki, SecureServer, Transport, token_hash, with_token};
use serde_json::{Value, json};
use tonic_types::StatusExt;

const ADMIN: &str = "rtr_admin_token_9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const READER: &str = "rtr_reader_token_0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const ATTACKER: &str = "rtr_attacker_guess_7777777777777777777777777777";
const CONTROL: &str = "capture-control-value-5f1c2b9e";
const MALFORMED_CREDENTIAL: &str = "Leaky-Password-In-A-Malformed-Body-31415926";

/// Named texts to search.
#[derive(Default)]
struct Haystack(Vec<(String, String)>);

impl Haystack {
    fn add(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.0.push((place.into(), text.into()));
    }

    fn status(&mut self, place: &str, status: &tonic::Status) {
        self.add(format!("{place}: message"), status.message());
        self.add(
            format!("{place}: details"),
            format!("{:?}", status.get_error_details()),
        );
        self.add(
            format!("{place}: metadata"),
            format!("{:?}", status.metadata()),
        );
    }
}

/// Named secret values to look for.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, label: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        assert!(value.len() >= 12, "secret values must be distinctive");
        self.0.push((label.into(), value));
    }

    /// Every secret-looking string in a generated-credentials body.
    fn add_credentials_of(&mut self, body: &Value) {
        fn walk(secrets: &mut Secrets, key: &str, v: &Value) {
            match v {
                Value::Object(map) => map.iter().for_each(|(k, v)| walk(secrets, k, v)),
                Value::Array(items) => items.iter().for_each(|v| walk(secrets, key, v)),
                Value::String(s) => {
                    let k = key.to_ascii_lowercase();
                    let secret =
                        (k.contains("password") || k.contains("secret")) && !k.ends_with("id");
                    if secret && s.len() >= 12 {
                        secrets.add(format!("generated credential {key}"), s.clone());
                    }
                }
                _ => {}
            }
        }
        walk(self, "", body);
    }
}

fn rotate(t: RotationType, id: impl ToString) -> RotateSecretsRequest {
    RotateSecretsRequest {
        r#type: t as i32,
        rotation_id: id.to_string(),
    }
}

fn get(t: RotationType, id: impl ToString) -> GetSecretRotationRequest {
    GetSecretRotationRequest {
        r#type: t as i32,
        lookup: Some(Lookup::RotationId(id.to_string())),
    }
}

fn credentials(t: RotationType, id: impl ToString) -> GetGeneratedCredentialsRequest {
    GetGeneratedCredentialsRequest {
        r#type: t as i32,
        rotation_id: id.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_span_field_or_error_message() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.subscriber()).expect("the only subscriber");

    let mut haystack = Haystack::default();
    let mut secrets = Secrets::default();
    let fake = FakeInfisical::start().await;
    let pki = Pki::new("hygiene");
    let env = HashMap::from([
        ("ROTATOR_INFISICAL_URL".to_owned(), fake.base_url()),
        (
            "ROTATOR_INFISICAL_CLIENT_ID".to_owned(),
            CLIENT_ID.to_owned(),
        ),
        (
            "ROTATOR_INFISICAL_CLIENT_SECRET".to_owned(),
            "env:HYGIENE_CLIENT_SECRET".to_owned(),
        ),
        ("HYGIENE_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
    ]);
    let toml = format!(
        r#"
        {tls}
        [[auth.identities]]
        name = "admin"
        token_sha256 = "{admin}"
        [[auth.identities.permissions]]
        actions = ["rotate", "read", "read-credentials"]
        types = ["*"]
        rotations = ["*"]

        [[auth.identities]]
        name = "reader"
        token_sha256 = "{reader}"
        [[auth.identities.permissions]]
        actions = ["read"]
        types = ["*"]
        rotations = ["*"]
        "#,
        tls = pki.tls_toml(false, false),
        admin = token_hash(ADMIN),
        reader = token_hash(READER),
    );
    let server = SecureServer::start(&toml, &env).await;
    haystack.add("Debug of the live config", format!("{:?}", server.config));
    let mut client = server
        .client(Transport::Tls {
            ca_pem: &pki.ca_pem,
        })
        .await;

    // The happy path, every type: rotate, read back, read credentials, list.
    for info in TYPES {
        let id = fake.rotation_id(info.slug);
        let t = info.rotation_type;
        client
            .rotate_secrets(with_token(rotate(t, id), Some(ADMIN)))
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", info.slug));
        client
            .get_secret_rotation(with_token(get(t, id), Some(ADMIN)))
            .await
            .expect("get");
        let creds = client
            .get_generated_credentials(with_token(credentials(t, id), Some(ADMIN)))
            .await
            .expect("credentials")
            .into_inner();
        assert!(!creds.generated_credentials.is_empty());
        secrets.add_credentials_of(&json::generated_credentials_to_json(&creds));
        secrets.add_credentials_of(&fake.generated_credentials_json(id));
    }
    client
        .list_secret_rotations(with_token(
            ListSecretRotationsRequest {
                r#type: 0,
                project_id: PROJECT_ID.to_owned(),
            },
            Some(ADMIN),
        ))
        .await
        .expect("list");

    // Upstream failures.
    let pg = fake.rotation_id("postgres-credentials");
    let pg_t = RotationType::PostgresCredentials;
    fake.fail_next_rotation(pg, "password authentication failed for user \"app\"");
    let status = client
        .rotate_secrets(with_token(rotate(pg_t, pg), Some(ADMIN)))
        .await
        .expect_err("provider failure");
    haystack.status("provider failure", &status);
    fake.inject_next(
        Route::Get,
        403,
        json!({"reqId": "req-hygiene-1", "statusCode": 403, "message": "You are not allowed to read on secret-rotation", "error": "PermissionDenied"}),
        vec![],
    );
    let status = client
        .get_secret_rotation(with_token(get(pg_t, pg), Some(ADMIN)))
        .await
        .expect_err("injected 403");
    haystack.status("injected 403", &status);
    fake.expire_all_tokens();
    client
        .get_secret_rotation(with_token(get(pg_t, pg), Some(ADMIN)))
        .await
        .expect("re-login after expiry");
    fake.revoke_all_tokens();
    client
        .rotate_secrets(with_token(rotate(pg_t, pg), Some(ADMIN)))
        .await
        .expect("re-login after revocation");
    fake.inject_next(
        Route::GeneratedCredentials,
        200,
        json!({"generatedCredentials": [MALFORMED_CREDENTIAL], "activeIndex": 0, "rotationId": pg.to_string(), "type": "postgres-credentials"}),
        vec![],
    );
    secrets.add("a credential in a malformed answer", MALFORMED_CREDENTIAL);
    let status = client
        .get_generated_credentials(with_token(credentials(pg_t, pg), Some(ADMIN)))
        .await
        .expect_err("malformed credentials");
    haystack.status("malformed credentials", &status);

    // Authentication and permission denials.
    for (place, token) in [
        ("no token", None),
        ("attacker's token", Some(ATTACKER)),
        ("reader rotates", Some(READER)),
    ] {
        let status = client
            .rotate_secrets(with_token(rotate(pg_t, pg), token))
            .await
            .expect_err(place);
        haystack.status(place, &status);
    }
    let status = client
        .get_generated_credentials(with_token(credentials(pg_t, pg), Some(READER)))
        .await
        .expect_err("reader reads credentials");
    haystack.status("reader reads credentials", &status);
    let mut wrong_scheme = with_token(get(pg_t, pg), None);
    wrong_scheme.metadata_mut().insert(
        "authorization",
        format!("Token {ADMIN}").parse().expect("ascii"),
    );
    let status = client
        .get_secret_rotation(wrong_scheme)
        .await
        .expect_err("wrong scheme");
    haystack.status("wrong scheme", &status);

    // A configuration error with a secret in it.
    let error = rotator::config::Config::from_toml_str(
        &format!("[infisical]\nurl = \"https://x.test\"\nclient_secret = \"{CLIENT_SECRET}\"\n"),
        &HashMap::new(),
    )
    .expect_err("no client id");
    haystack.add("config error", error.to_string());

    // Positive control: a value logged at TRACE from another task is captured.
    tokio::spawn(async { tracing::trace!(control = CONTROL, "capture control") })
        .await
        .expect("control task");
    server.shutdown().await;

    // What to look for.
    secrets.add("Infisical client secret", CLIENT_SECRET);
    secrets.add("admin bearer token", ADMIN);
    secrets.add("reader bearer token", READER);
    secrets.add("attacker's bearer token", ATTACKER);
    let key_pem = std::fs::read_to_string(&pki.server_key_file).expect("server key");
    let key_line = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .max_by_key(|l| l.len())
        .expect("a base64 line");
    secrets.add("server TLS private key", key_line);
    let mut issued = 0;
    for request in fake.requests() {
        for (name, value) in &request.headers {
            if name == "authorization" {
                let token = value.trim_start_matches("Bearer ").to_owned();
                if !secrets.0.iter().any(|(_, v)| *v == token) {
                    secrets.add("an access token Infisical issued", token);
                    issued += 1;
                }
            }
        }
    }
    assert!(
        issued >= 3,
        "login, re-login after expiry, re-login after revocation"
    );
    assert!(
        secrets.0.len() > 14 + 3 + 5,
        "generated credentials were collected"
    );

    let logs = capture.text();
    assert!(
        logs.contains(CONTROL),
        "the capture sees TRACE events from other tasks"
    );
    assert!(logs.contains("rpc{"), "the capture sees span fields");
    haystack.add("logs", logs);
    let mut hits = Vec::new();
    for (label, secret) in &secrets.0 {
        for (place, text) in &haystack.0 {
            if text.contains(secret.as_str()) {
                hits.push(format!("{label} found in {place}"));
            }
        }
    }
    assert!(hits.is_empty(), "secrets leaked:\n{}", hits.join("\n"));
}
