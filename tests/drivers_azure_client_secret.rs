//! The Azure client-secret driver against the fake identity platform and Graph: the issued-secret
//! contract (issue, verify, list, revoke), every refusal classified and changing nothing, no
//! secret in errors, `Debug` or traces; then the real binary: a local rotation, and kill -9 at
//! `issued`, `applied` and `verified`, after which the fake holds exactly the stored secrets and
//! each of them logs in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rotator::drivers::{
    AnyIssuer, BuildError, ConnectionConfig, Credential, DriverError, DriverErrorKind,
    DriverOptions, LocalDriver, TlsConfig, TlsMode,
};
use rotator::proto::{AzureClientSecretParameters, RotationType, rotation_parameters::Kind};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, error_texts, start_trace_capture,
};
use rotator_testkit::fake_azure::{App, Endpoint, FakeAzure, PERSONAL_ACCOUNT_CAP};
use rotator_testkit::issued_local::{self, Running};

const SYSTEM: &str = "azure.graph";
const ROTATION: &str = issued_local::ROTATION_ID;
const ADMIN_ENV: &str = "AZ_ADMIN";
const TYPE: RotationType = RotationType::AzureClientSecret;
const BIN: &str = env!("CARGO_BIN_EXE_rotator");

fn connection(fake: &FakeAzure, mode: TlsMode) -> ConnectionConfig {
    let (id, secret) = fake.admin();
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: fake.port(),
        database: String::new(),
        admin_username: id.to_owned(),
        admin_password: SecretString::new(secret),
        tls: TlsConfig { mode, ca_pem: None },
    }
}

fn options(fake: &FakeAzure, wait_seconds: i64) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("tenant_id".into(), fake.tenant().into());
    t.insert("authority_url".into(), fake.url().into());
    t.insert("propagation_wait_seconds".into(), wait_seconds.into());
    t
}

fn parameters(app: &App) -> Kind {
    Kind::AzureClientSecret(AzureClientSecretParameters {
        object_id: app.object_id.clone(),
        client_id: app.app_id.clone(),
        app_name: None,
    })
}

fn try_build(
    connection: ConnectionConfig,
    app: &App,
    options: toml::Table,
    interval_days: Option<u32>,
) -> Result<AnyIssuer, BuildError> {
    match rotator::drivers::build(
        ROTATION,
        connection,
        &parameters(app),
        DriverOptions {
            options,
            interval_days,
            ..DriverOptions::default()
        },
    )? {
        LocalDriver::Issued(issuer) => Ok(issuer),
        LocalDriver::Chosen(_) => panic!("azure-client-secret is an issued secret"),
    }
}

fn issuer(fake: &FakeAzure, app: &App) -> AnyIssuer {
    try_build(
        connection(fake, TlsMode::Disable),
        app,
        options(fake, 0),
        Some(7),
    )
    .expect("a valid azure rotation")
}

fn assert_kind(
    result: Result<impl std::fmt::Debug, DriverError>,
    kind: DriverErrorKind,
) -> DriverError {
    let e = result.expect_err("must fail");
    assert_eq!(e.kind(), kind, "{e}");
    e
}

#[tokio::test]
async fn contract_issue_verify_list_revoke() {
    start_trace_capture();
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let driver = issuer(&fake, &app);

    let first = driver.issue().await.expect("issue");
    assert_eq!(fake.key_ids(&app.object_id), vec![first.id.clone()]);
    assert_eq!(driver.list().await.expect("list"), vec![first.id.clone()]);
    driver
        .verify(&first)
        .await
        .expect("the new secret logs in as the app");

    let (end, name) = fake
        .password_details(&app.object_id, &first.id)
        .expect("the fake holds it");
    let lifetime = end - chrono::Utc::now();
    assert!(
        (lifetime - chrono::Duration::days(2 * 7 + 3))
            .num_minutes()
            .abs()
            < 5,
        "endDateTime is now + (2·interval + 3) days: {lifetime}"
    );
    let name = name.unwrap_or_default();
    assert!(
        name.contains("rotator") && name.contains(ROTATION),
        "{name}"
    );

    let second = driver.issue().await.expect("a second secret");
    assert_eq!(fake.live_secrets(&app.object_id), 2);
    driver.revoke(&first.id).await.expect("revoke");
    driver
        .revoke(&first.id)
        .await
        .expect("revoking twice is fine");
    assert_eq!(driver.list().await.expect("list"), vec![second.id.clone()]);
    let revoked = assert_kind(driver.verify(&first).await, DriverErrorKind::LoginRejected);
    let wrong = Credential {
        id: second.id.clone(),
        secret: SecretString::new("abc8Q~not-the-secret-at-all-000000000000"),
    };
    let refused = assert_kind(driver.verify(&wrong).await, DriverErrorKind::LoginRejected);
    assert!(!refused.is_transient());
    driver
        .verify(&second)
        .await
        .expect("the kept secret still logs in");

    let secrets = [&first.secret, &second.secret, &wrong.secret];
    let texts = error_texts(&[revoked, refused]);
    assert_no_secret(&secrets, texts.iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [format!("{first:?}"), format!("{driver:?}")]
            .iter()
            .map(String::as_str),
    );
    assert_no_secret(&secrets, [captured_traces().as_str()]);
    let admin = fake.admin().0.to_owned();
    assert_phase_span("issue", SYSTEM, &admin);
    assert_phase_span("list", SYSTEM, &admin);
    assert_phase_span("verify", SYSTEM, &second.id);
    assert_phase_span("revoke", SYSTEM, &first.id);
}

#[tokio::test]
async fn the_admin_token_is_fetched_once_and_reused() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let driver = issuer(&fake, &app);
    let issued = driver.issue().await.expect("issue");
    driver.list().await.expect("list");
    driver.revoke(&issued.id).await.expect("revoke");
    assert_eq!(fake.token_requests(), 1, "one token for every Graph call");
    // A token Graph no longer accepts is dropped, and the call made again with a new one.
    fake.revoke_tokens();
    driver.list().await.expect("a new token");
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test]
async fn an_interval_over_909_days_is_refused_before_anything_is_sent() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let c = || connection(&fake, TlsMode::Disable);
    let refused = try_build(c(), &app, options(&fake, 0), Some(910)).expect_err("910 days");
    let BuildError::Invalid(e) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(e.kind(), DriverErrorKind::InvalidInput);
    try_build(c(), &app, options(&fake, 0), Some(909)).expect("909 days is the limit");
    assert_eq!(
        (
            fake.token_requests(),
            fake.graph_requests(),
            fake.live_secrets(&app.object_id)
        ),
        (0, 0, 0),
        "building sends nothing"
    );
}

#[tokio::test]
async fn a_plain_http_endpoint_needs_tls_disable() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let refused = try_build(
        connection(&fake, TlsMode::VerifyFull),
        &app,
        options(&fake, 0),
        Some(7),
    );
    assert!(
        matches!(refused, Err(BuildError::Invalid(ref e)) if e.kind() == DriverErrorKind::InvalidInput),
        "{refused:?}"
    );
    let mut no_tenant = options(&fake, 0);
    no_tenant.remove("tenant_id");
    assert!(
        try_build(
            connection(&fake, TlsMode::Disable),
            &app,
            no_tenant,
            Some(7)
        )
        .is_err()
    );
    let mut unknown = options(&fake, 0);
    unknown.insert("graph_version".into(), "beta".into());
    assert!(try_build(connection(&fake, TlsMode::Disable), &app, unknown, Some(7)).is_err());
}

#[tokio::test]
async fn refusals_are_classified_and_change_nothing() {
    start_trace_capture();
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let driver = issuer(&fake, &app);
    let kept = driver.issue().await.expect("issue");
    let before = fake.key_ids(&app.object_id);
    let mut errors = Vec::new();

    fake.set_admin_can_write(false);
    errors.push(assert_kind(
        driver.issue().await,
        DriverErrorKind::PermissionDenied,
    ));
    errors.push(assert_kind(
        driver.revoke(&kept.id).await,
        DriverErrorKind::PermissionDenied,
    ));
    fake.set_admin_can_write(true);

    fake.inject(Endpoint::Graph, 429, Some(5), 1);
    let throttled = assert_kind(driver.issue().await, DriverErrorKind::ServerUnavailable);
    assert!(throttled.is_transient());
    assert!(
        throttled.detail().contains("retry after 5 s"),
        "{throttled}"
    );
    errors.push(throttled);
    fake.inject(Endpoint::Graph, 503, None, 1);
    let unavailable = assert_kind(driver.issue().await, DriverErrorKind::ServerUnavailable);
    assert!(unavailable.is_transient());
    errors.push(unavailable);

    fake.set_cap(Some(1));
    errors.push(assert_kind(
        driver.issue().await,
        DriverErrorKind::LimitReached,
    ));
    fake.set_cap(None);
    assert_eq!(
        fake.key_ids(&app.object_id),
        before,
        "no refusal changed the app"
    );

    let missing = App {
        object_id: "7e57a000-0000-4000-8000-00000000dead".into(),
        app_id: app.app_id.clone(),
    };
    let gone = issuer(&fake, &missing);
    errors.push(assert_kind(
        gone.issue().await,
        DriverErrorKind::UserNotFound,
    ));
    errors.push(assert_kind(
        gone.list().await,
        DriverErrorKind::UserNotFound,
    ));

    // A fresh connection (no cached token) whose admin secret was removed.
    let fresh = issuer(&fake, &app);
    fake.inject(Endpoint::Token, 503, Some(1), 1);
    errors.push(assert_kind(
        fresh.list().await,
        DriverErrorKind::ServerUnavailable,
    ));
    let admin_secret = SecretString::new(fake.admin().1);
    fake.remove_admin_secret();
    let rejected = assert_kind(fresh.issue().await, DriverErrorKind::AdminLoginRejected);
    assert!(!rejected.is_transient());
    errors.push(rejected);
    assert_eq!(fake.key_ids(&app.object_id), before);

    let texts = error_texts(&errors);
    assert_no_secret(
        &[&kept.secret, &admin_secret],
        texts.iter().map(String::as_str),
    );
    assert_no_secret(&[&kept.secret, &admin_secret], [captured_traces().as_str()]);
}

#[tokio::test]
async fn verify_waits_for_a_new_secret_to_propagate() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let driver = try_build(
        connection(&fake, TlsMode::Disable),
        &app,
        options(&fake, 10),
        Some(7),
    )
    .expect("build");
    fake.set_propagation_delay(Duration::from_millis(1500));
    let issued = driver.issue().await.expect("issue");
    let started = tokio::time::Instant::now();
    driver.verify(&issued).await.expect("works once replicated");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

// === through the binary ===

fn config(dir: &Path, fake: &FakeAzure, app: &App) -> PathBuf {
    let path = dir.join("rotator.toml");
    let text = format!(
        r#"
[[connections]]
name = "entra"
app = "azure-client-secrets"
host = "127.0.0.1"
port = {port}
username = "{admin}"
password = "env:{ADMIN_ENV}"
tls = "disable"
tenant_id = "{tenant}"
authority_url = "{url}"
propagation_wait_seconds = 0

[[rotations]]
id = "{ROTATION}"
name = "app-secret"
type = "azure-client-secret"
connection = "entra"
rotation_interval_days = 7
rotate_at_utc = "03:30"
project_id = "proj"
environment = "prod"
parameters = {{ objectId = "{object}", clientId = "{client}" }}
secrets_mapping = {{ clientId = "AZURE_CLIENT_ID", clientSecret = "AZURE_CLIENT_SECRET" }}
"#,
        port = fake.port(),
        admin = fake.admin().0,
        tenant = fake.tenant(),
        url = fake.url(),
        object = app.object_id,
        client = app.app_id,
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_an_interval_over_909_days_at_start_without_calling_azure() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), &fake, &app);
    let text = std::fs::read_to_string(&path).expect("read config");
    std::fs::write(
        &path,
        text.replace("rotation_interval_days = 7", "rotation_interval_days = 910"),
    )
    .expect("write config");
    let admin = fake.admin().1;
    let Err(status) = issued_local::start(BIN, dir.path(), &path, (ADMIN_ENV, admin), None).await
    else {
        panic!("a rotation that cannot work ends the start")
    };
    assert!(!status.success(), "refused at start");
    assert_eq!((fake.token_requests(), fake.graph_requests()), (0, 0));
    assert_eq!(fake.live_secrets(&app.object_id), 0);
}

/// The fake holds exactly the stored secrets, and each of them logs in as the app.
async fn assert_fake_holds_exactly_the_stored(
    fake: &FakeAzure,
    app: &App,
    running: &Running,
    what: &str,
) {
    let creds = running
        .assert_provider_holds(TYPE, fake.key_ids(&app.object_id), what)
        .await;
    for c in &creds {
        assert_eq!(c.client_id, app.app_id);
        assert!(
            fake.secret_works(&app.app_id, &c.client_secret),
            "{what}: stored secret {} logs in",
            c.secret_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotation_through_the_binary_keeps_two_live_secrets_even_at_the_cap() {
    let fake = FakeAzure::start().await;
    let app = fake.add_app();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &fake, &app);
    let admin = fake.admin().1;
    let running = issued_local::start(BIN, dir.path(), &config, (ADMIN_ENV, admin), None)
        .await
        .expect("serving");

    // Start-up issued slot 0.
    assert_fake_holds_exactly_the_stored(&fake, &app, &running, "first create").await;
    assert_eq!(running.credentials(TYPE).await.1.len(), 1);
    running.rotate(TYPE).await.expect("rotate");
    let (active, creds) = running.credentials(TYPE).await;
    assert_eq!((active, creds.len()), (1, 2));
    assert_fake_holds_exactly_the_stored(&fake, &app, &running, "second").await;
    let first_key = creds[0].secret_id.clone();
    // The app now holds as many passwords as it may: the engine removes the slot's replaced key
    // before issuing the new one, and the active key keeps working throughout.
    fake.set_cap(Some(PERSONAL_ACCOUNT_CAP));
    running
        .rotate(TYPE)
        .await
        .expect("rotate again, at the cap");
    let (active, creds) = running.credentials(TYPE).await;
    assert_eq!(active, 0);
    assert!(
        creds.iter().all(|c| c.secret_id != first_key),
        "slot 0 holds a new secret"
    );
    assert!(
        !fake.key_ids(&app.object_id).contains(&first_key),
        "the replaced secret was removed"
    );
    assert_fake_holds_exactly_the_stored(&fake, &app, &running, "third").await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_issued_applied_verified_leaves_exactly_the_stored_secrets() {
    for boundary in ["issued", "applied", "verified"] {
        let fake = FakeAzure::start().await;
        let app = fake.add_app();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), &fake, &app);
        let admin = fake.admin().1;
        let env = (ADMIN_ENV, admin);
        issued_local::crash_twice_at(
            BIN,
            dir.path(),
            &config,
            env,
            boundary,
            TYPE,
            async |clean, what| {
                assert_fake_holds_exactly_the_stored(&fake, &app, clean, what).await;
            },
        )
        .await;
    }
}
