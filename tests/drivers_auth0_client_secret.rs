//! The Auth0 client-secret driver against the fake tenant: the chosen-secret contract
//! (`driver_conformance`), revoke and probe, every refusal classified and changing nothing, no
//! secret in errors, `Debug` or traces; then the real binary: a single-phase local rotation, and
//! kill -9 at `prepared`, `applied` and `verified`, after which the tenant holds exactly the
//! stored secret and it logs in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::drivers::{
    AnyDriver, BuildError, ConnectionConfig, Credential, Driver as _, DriverError, DriverErrorKind,
    DriverOptions, RotationDriver, Slot, TlsConfig, TlsMode,
};
use rotator::proto::{ClientIdParameters, RotationType, rotation_parameters::Kind};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, check_contract, error_texts,
    start_trace_capture,
};
use rotator_testkit::fake_auth0::{AUDIENCE, Endpoint, FakeAuth0};
use rotator_testkit::issued_local::{self, Running};

const SYSTEM: &str = "auth0";
const ROTATION: &str = issued_local::ROTATION_ID;
const ADMIN_ENV: &str = "AUTH0_ADMIN";
const TYPE: RotationType = RotationType::Auth0ClientSecret;
const BIN: &str = env!("CARGO_BIN_EXE_rotator");

fn connection(fake: &FakeAuth0, mode: TlsMode) -> ConnectionConfig {
    let (id, secret) = fake.admin();
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: fake.port(),
        database: String::new(),
        admin_username: id,
        admin_password: SecretString::new(secret),
        tls: TlsConfig { mode, ca_pem: None },
    }
}

fn options(wait_seconds: i64) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("audience".into(), AUDIENCE.into());
    t.insert("propagation_wait_seconds".into(), wait_seconds.into());
    t
}

fn try_build(
    connection: ConnectionConfig,
    client_id: &str,
    options: toml::Table,
) -> Result<RotationDriver, BuildError> {
    AnyDriver::build(
        ROTATION,
        connection,
        &Kind::Auth0ClientSecret(ClientIdParameters {
            client_id: client_id.to_owned(),
        }),
        DriverOptions {
            options,
            ..DriverOptions::default()
        },
    )
}

fn driver(fake: &FakeAuth0, client_id: &str) -> RotationDriver {
    try_build(connection(fake, TlsMode::Disable), client_id, options(0))
        .expect("a valid auth0 rotation")
}

fn assert_kind(result: Result<(), DriverError>, kind: DriverErrorKind) -> DriverError {
    let e = result.expect_err("must fail");
    assert_eq!(e.kind(), kind, "{e}");
    e
}

#[tokio::test]
async fn contract_apply_verify_revoke_probe() {
    let fake = FakeAuth0::start().await;
    let client = fake.add_client();
    let rd = driver(&fake, &client);
    assert_eq!(rd.driver.username_for(Slot::First), client);
    assert_eq!(
        rd.driver.username_for(Slot::Second),
        client,
        "single-phase: one principal"
    );
    let secret = rd.password_policy.generate();
    assert_eq!(secret.expose().len(), 48);
    assert!(secret.expose().chars().all(|c| c.is_ascii_alphanumeric()));

    // apply, verify, apply again, a wrong secret refused, the replaced one refused: the client
    // has no grant for the Management API, so a right secret is answered 403 access_denied.
    let kept = check_contract(&rd.driver, &rd.password_policy, Slot::First).await;
    assert_eq!(
        fake.secret_of(&client).as_deref(),
        Some(kept.secret.expose())
    );
    rd.driver.probe().await.expect("probe");
    assert_phase_span("probe", SYSTEM, &fake.admin().0);

    rd.driver.revoke(&client).await.expect("revoke");
    assert!(!fake.secret_works(&client, kept.secret.expose()), "revoked");
    assert_eq!(fake.changes(&client).1, 1, "one rotate-secret");
    let refused = assert_kind(
        rd.driver.verify(&kept).await,
        DriverErrorKind::LoginRejected,
    );
    assert_no_secret(
        &[&kept.secret],
        error_texts(&[refused]).iter().map(String::as_str),
    );
    assert_phase_span("revoke", SYSTEM, &client);
    // Another client than the rotation's is refused before anything is sent.
    let other = fake.add_client();
    assert_kind(
        rd.driver.revoke(&other).await,
        DriverErrorKind::InvalidInput,
    );
    assert_eq!(fake.changes(&other), (0, 0));
}

#[tokio::test]
async fn verify_waits_for_a_new_secret_to_propagate() {
    let fake = FakeAuth0::start().await;
    let client = fake.add_client();
    let rd = try_build(connection(&fake, TlsMode::Disable), &client, options(10)).expect("build");
    fake.set_propagation_delay(Duration::from_millis(1500));
    let credential = Credential {
        id: client.clone(),
        secret: rd.password_policy.generate(),
    };
    rd.driver.apply(&credential).await.expect("apply");
    let started = tokio::time::Instant::now();
    rd.driver
        .verify(&credential)
        .await
        .expect("works once propagated");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn build_refuses_bad_options_and_plain_http_without_opt_in() {
    let fake = FakeAuth0::start().await;
    let client = fake.add_client();
    let c = |mode| connection(&fake, mode);
    assert!(try_build(c(TlsMode::Disable), &client, options(0)).is_ok());
    let mut no_slash = options(0);
    no_slash.insert(
        "audience".into(),
        "https://fake-tenant.auth0.test/api/v2".into(),
    );
    assert!(try_build(c(TlsMode::Disable), &client, no_slash).is_err());
    assert!(try_build(c(TlsMode::Disable), "a/../b", options(0)).is_err());
    assert!(
        try_build(c(TlsMode::Disable), &fake.admin().0, options(0)).is_err(),
        "the M2M app itself"
    );
    let mut unknown = options(0);
    unknown.insert("domain".into(), "x".into());
    assert!(try_build(c(TlsMode::Disable), &client, unknown).is_err());
    assert_eq!(fake.token_requests(), 0, "building sends nothing");
}

#[tokio::test]
async fn refusals_are_classified_and_change_nothing() {
    start_trace_capture();
    let fake = FakeAuth0::start().await;
    let client = fake.add_client();
    let rd = driver(&fake, &client);
    let before = fake.secret_of(&client).expect("secret");
    let candidate = Credential {
        id: client.clone(),
        secret: rd.password_policy.generate(),
    };
    let mut errors = Vec::new();

    fake.inject(Endpoint::Management, 429, Some(4), 1);
    let throttled = assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::ServerUnavailable,
    );
    assert!(
        throttled.is_transient() && throttled.detail().contains("retry after 4 s"),
        "{throttled}"
    );
    errors.push(throttled);
    fake.inject(Endpoint::Management, 500, None, 1);
    errors.push(assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::ServerUnavailable,
    ));

    let missing = driver(&fake, "NoSuchClient0000000000000000000");
    errors.push(assert_kind(
        missing
            .driver
            .apply(&Credential {
                id: "NoSuchClient0000000000000000000".into(),
                secret: candidate.secret.clone(),
            })
            .await,
        DriverErrorKind::UserNotFound,
    ));

    fake.set_admin_scopes(&["read:clients"]);
    errors.push(assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::PermissionDenied,
    ));
    errors.push(assert_kind(
        rd.driver.revoke(&client).await,
        DriverErrorKind::PermissionDenied,
    ));
    fake.set_admin_scopes(rotator_testkit::fake_auth0::ADMIN_SCOPES);

    fake.inject(Endpoint::Token, 503, None, 1);
    errors.push(assert_kind(
        rd.driver.probe().await,
        DriverErrorKind::ServerUnavailable,
    ));
    let old_admin = SecretString::new(fake.admin().1);
    fake.rotate_admin_secret();
    errors.push(assert_kind(
        rd.driver.apply(&candidate).await,
        DriverErrorKind::AdminLoginRejected,
    ));
    errors.push(assert_kind(
        rd.driver.probe().await,
        DriverErrorKind::AdminLoginRejected,
    ));

    assert_eq!(
        fake.secret_of(&client).as_deref(),
        Some(before.as_str()),
        "nothing changed"
    );
    assert_eq!(fake.changes(&client), (0, 0));
    let secrets = [&candidate.secret, &old_admin];
    assert_no_secret(&secrets, error_texts(&errors).iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [
            format!("{:?}", rd.driver).as_str(),
            captured_traces().as_str(),
        ],
    );
}

// === through the binary ===

fn config(dir: &Path, fake: &FakeAuth0, client: &str) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "tenant"
app = "auth0"
host = "127.0.0.1"
port = {port}
username = "{admin}"
password = "env:{ADMIN_ENV}"
tls = "disable"
audience = "{AUDIENCE}"
propagation_wait_seconds = 0

[[rotations]]
id = "{ROTATION}"
name = "m2m-secret"
type = "auth0-client-secret"
connection = "tenant"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {{ clientId = "{client}" }}
secrets_mapping = {{ clientId = "AUTH0_CLIENT_ID", clientSecret = "AUTH0_CLIENT_SECRET" }}
"#,
        port = fake.port(),
        admin = fake.admin().0,
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The tenant holds exactly the stored secret (slot 0), and it logs in.
async fn assert_tenant_holds_the_stored(
    fake: &FakeAuth0,
    client: &str,
    running: &Running,
    what: &str,
) -> String {
    let (active, creds) = running.credentials(TYPE).await;
    assert_eq!(active, 0, "{what}: single-phase types use slot 0");
    assert_eq!(creds.len(), 1, "{what}: one stored credential");
    let (client_id, secret) = (&creds[0].client_id, &creds[0].client_secret);
    assert_eq!(client_id, client);
    assert_eq!(
        fake.secret_of(client).as_deref(),
        Some(secret.as_str()),
        "{what}"
    );
    assert!(
        fake.secret_works(client, secret),
        "{what}: the stored secret logs in"
    );
    secret.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotation_through_the_binary_replaces_the_secret_in_place() {
    let fake = FakeAuth0::start().await;
    let client = fake.add_client();
    let original = fake.secret_of(&client).expect("secret");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &fake, &client);
    let admin = fake.admin().1;
    let running = issued_local::start(BIN, dir.path(), &config, (ADMIN_ENV, &admin), None)
        .await
        .expect("serving");

    let first = assert_tenant_holds_the_stored(&fake, &client, &running, "first create").await;
    assert!(
        !fake.secret_works(&client, &original),
        "the unmanaged secret was replaced"
    );
    running.rotate(TYPE).await.expect("rotate");
    let second = assert_tenant_holds_the_stored(&fake, &client, &running, "rotated").await;
    assert_ne!(first, second);
    assert!(
        !fake.secret_works(&client, &first),
        "single-phase: the previous secret dies"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_prepared_applied_verified_leaves_the_stored_secret_working() {
    for boundary in ["prepared", "applied", "verified"] {
        let fake = FakeAuth0::start().await;
        let client = fake.add_client();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), &fake, &client);
        let admin = fake.admin().1;
        let env = (ADMIN_ENV, admin.as_str());
        issued_local::crash_twice_at(
            BIN,
            dir.path(),
            &config,
            env,
            boundary,
            TYPE,
            async |clean, what| {
                assert_tenant_holds_the_stored(&fake, &client, clean, what).await;
            },
        )
        .await;
    }
}
