//! The `databricks-service-principal-secret` driver against the fake Databricks: the
//! issued-secret contract (issue, verify, revoke, list), the cached admin token, the cap checked
//! before any create, each error path classified and changing nothing, no secret in any error,
//! `Debug` or trace; then local rotations through the real binary (account API), with kill -9
//! at the `issued`, `applied` and `verified` boundaries.

use rotator::drivers::{
    AnyIssuer, BuildError, ConnectionConfig, Credential, DriverError, DriverErrorKind,
    DriverOptions, LocalDriver, TlsConfig, TlsMode,
};
use rotator::proto::{
    DatabricksServicePrincipalSecretParameters, RotationType, rotation_parameters,
};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, error_texts, start_trace_capture,
};
use rotator_testkit::fake_databricks::{Failure, FakeDatabricks};
use rotator_testkit::issued_local::{self, ids, sorted};

const SYSTEM: &str = "databricks";

fn connection(fake: &FakeDatabricks, admin: &(String, String)) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: fake.port(),
        database: String::new(),
        admin_username: admin.0.clone(),
        admin_password: SecretString::new(admin.1.clone()),
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_pem: None,
        },
    }
}

fn build(
    fake: &FakeDatabricks,
    admin: &(String, String),
    principal: &(String, String),
    options: &str,
) -> Result<AnyIssuer, BuildError> {
    let parameters = rotation_parameters::Kind::DatabricksServicePrincipalSecret(
        DatabricksServicePrincipalSecretParameters {
            service_principal_id: principal.0.clone(),
            client_id: principal.1.clone(),
            service_principal_name: None,
        },
    );
    let options = DriverOptions {
        options: toml::from_str(options).expect("options"),
        ..DriverOptions::default()
    };
    match rotator::drivers::build("dbx-test", connection(fake, admin), &parameters, options)? {
        LocalDriver::Issued(issuer) => Ok(issuer),
        LocalDriver::Chosen(_) => panic!("databricks issues its secrets"),
    }
}

fn issuer(fake: &FakeDatabricks, principal: &(String, String), options: &str) -> AnyIssuer {
    build(fake, &fake.admin(), principal, options).expect("build")
}

#[tokio::test]
async fn issue_verify_list_and_revoke_follow_the_contract() {
    start_trace_capture();
    let fake = FakeDatabricks::start().await;
    let principal = fake.create_principal();
    let dbx = issuer(&fake, &principal, "");

    let first = dbx.issue().await.expect("issue");
    assert_eq!(
        fake.lifetime_of(&principal.0, &first.id),
        Some(63 * 86_400),
        "(2·30 + 3) days by default"
    );
    assert_eq!(dbx.list().await.expect("list"), vec![first.id.clone()]);
    dbx.verify(&first)
        .await
        .expect("the new secret gets an M2M token");

    let wrong = Credential {
        id: first.id.clone(),
        secret: SecretString::new("dose-not-the-secret-0123456789abcdef"),
    };
    let refused = dbx.verify(&wrong).await.expect_err("a wrong secret");
    assert_eq!(refused.kind(), DriverErrorKind::LoginRejected, "{refused}");
    assert!(!refused.is_transient());

    let second = dbx.issue().await.expect("issue");
    assert_eq!(
        sorted(dbx.list().await.expect("list")),
        sorted(vec![first.id.clone(), second.id.clone()])
    );
    dbx.revoke(&first.id).await.expect("revoke");
    dbx.revoke(&first.id).await.expect("404 is success");
    assert_eq!(dbx.list().await.expect("list"), vec![second.id.clone()]);
    let revoked = dbx.verify(&first).await.expect_err("a deleted secret");
    assert_eq!(revoked.kind(), DriverErrorKind::LoginRejected);
    dbx.verify(&second).await.expect("the other secret works");

    let admin_secret = SecretString::new(fake.admin().1);
    let all = [&first.secret, &second.secret, &wrong.secret, &admin_secret];
    let texts = error_texts(&[refused, revoked]);
    assert_no_secret(&all, texts.iter().map(String::as_str));
    assert_no_secret(
        &all,
        [format!("{dbx:?}"), format!("{first:?}")]
            .iter()
            .map(String::as_str),
    );
    assert_no_secret(&all, [captured_traces().as_str()]);
    assert_phase_span("issue", SYSTEM, &fake.admin().0);
    assert_phase_span("verify", SYSTEM, &first.id);
    assert_phase_span("revoke", SYSTEM, &first.id);
    assert_phase_span("list", SYSTEM, &fake.admin().0);
}

#[tokio::test]
async fn the_admin_token_is_cached_until_shortly_before_it_expires() {
    let fake = FakeDatabricks::start().await;
    let principal = fake.create_principal();
    let dbx = issuer(&fake, &principal, "");
    for _ in 0..3 {
        dbx.list().await.expect("list");
    }
    assert_eq!(fake.token_requests(), 1, "one token for three calls");

    // A token revoked early (401 with a cached token) is replaced once, transparently.
    fake.expire_tokens();
    dbx.list().await.expect("a new token");
    assert_eq!(fake.token_requests(), 2);

    // A token that expires within the margin is never reused.
    fake.set_token_lifetime(30);
    fake.expire_tokens();
    dbx.list().await.expect("list");
    dbx.list().await.expect("list");
    assert_eq!(
        fake.token_requests(),
        4,
        "a 30 s token is renewed on every call"
    );
}

#[tokio::test]
async fn a_full_principal_is_limit_reached_without_any_create() {
    let fake = FakeDatabricks::start().await;
    let principal = fake.create_principal();
    for _ in 0..5 {
        fake.add_secret(&principal.0);
    }
    let dbx = issuer(&fake, &principal, "");
    let e = dbx.issue().await.expect_err("five secrets already");
    assert_eq!(e.kind(), DriverErrorKind::LimitReached, "{e}");
    assert_eq!(
        fake.create_calls(),
        0,
        "the cap is checked by listing, before creating"
    );
    assert_eq!(fake.live_secrets(&principal.0), 5);

    // `max_secrets` lowers the cap (an account with the older limit of four).
    let other = fake.create_principal();
    let four = issuer(&fake, &other, "max_secrets = 4");
    for _ in 0..4 {
        four.issue().await.expect("issue");
    }
    let e = four.issue().await.expect_err("four secrets");
    assert_eq!(e.kind(), DriverErrorKind::LimitReached);
    assert_eq!(fake.live_secrets(&other.0), 4);
    assert_eq!(fake.create_calls(), 4);
}

#[tokio::test]
async fn a_lifetime_over_730_days_is_refused_before_any_call() {
    let fake = FakeDatabricks::start().await;
    let principal = fake.create_principal();
    let e = build(
        &fake,
        &fake.admin(),
        &principal,
        "secret_lifetime_seconds = 63158400",
    )
    .expect_err("731 days");
    assert!(
        matches!(&e, BuildError::Invalid(d) if d.kind() == DriverErrorKind::InvalidInput),
        "{e}"
    );
    assert_eq!(fake.token_requests(), 0, "nothing was sent");
    let dbx = issuer(&fake, &principal, "secret_lifetime_seconds = 86400");
    let issued = dbx.issue().await.expect("issue");
    assert_eq!(fake.lifetime_of(&principal.0, &issued.id), Some(86_400));
}

fn assert_clean(
    fake: &FakeDatabricks,
    principal: &str,
    before: &[String],
    error: &DriverError,
    kind: DriverErrorKind,
) {
    assert_eq!(error.kind(), kind, "{error}");
    let now: Vec<String> = fake.secrets(principal).into_iter().map(|s| s.0).collect();
    assert_eq!(now, before, "a failed call changed nothing ({error})");
}

#[tokio::test]
async fn every_error_is_classified_and_changes_nothing() {
    start_trace_capture();
    let fake = FakeDatabricks::start().await;
    let principal = fake.create_principal();
    let (held, held_value) = fake.add_secret(&principal.0);
    let before = vec![held.clone()];
    let dbx = issuer(&fake, &principal, "");
    let mut errors = Vec::new();

    fake.fail_next(
        Failure::RateLimited {
            retry_after_secs: 9,
        },
        1,
    );
    let e = dbx.issue().await.expect_err("429");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::ServerUnavailable,
    );
    assert!(e.is_transient());
    assert!(e.detail().contains("retry after 9 s"), "{e}");
    errors.push(e);

    for status in [500, 503] {
        fake.fail_next(Failure::ServerError(status), 1);
        let e = dbx.issue().await.expect_err("5xx");
        assert_clean(
            &fake,
            &principal.0,
            &before,
            &e,
            DriverErrorKind::ServerUnavailable,
        );
        errors.push(e);
    }

    fake.fail_next(Failure::ServerError(502), 1);
    let e = dbx.revoke(&held).await.expect_err("502 on delete");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::ServerUnavailable,
    );
    errors.push(e);

    fake.fail_next(Failure::Forbidden, 1);
    let e = dbx.issue().await.expect_err("403");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::PermissionDenied,
    );
    assert!(!e.is_transient());
    errors.push(e);

    // A non-admin principal as the connection's admin: 403.
    let (other_id, other_app) = fake.create_principal();
    let (_, other_secret) = fake.add_secret(&other_id);
    let not_admin =
        build(&fake, &(other_app, other_secret.clone()), &principal, "").expect("build");
    let e = not_admin.revoke(&held).await.expect_err("403 on revoke");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::PermissionDenied,
    );
    errors.push(e);

    let missing = issuer(&fake, &("12345".to_owned(), "no-app".to_owned()), "");
    let e = missing.issue().await.expect_err("404");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::UserNotFound,
    );
    errors.push(e);

    fake.fail_next_token(Failure::ServerError(503), 1);
    let fresh = issuer(&fake, &principal, "");
    let e = fresh.list().await.expect_err("503 at the token endpoint");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::ServerUnavailable,
    );
    errors.push(e);

    // The admin's secret revoked: its tokens die, and no new one is issued.
    dbx.list().await.expect("the cached token works");
    fake.revoke_admin();
    let e = dbx.issue().await.expect_err("revoked admin");
    assert_clean(
        &fake,
        &principal.0,
        &before,
        &e,
        DriverErrorKind::AdminLoginRejected,
    );
    assert!(!e.is_transient());
    errors.push(e);

    let values = [
        SecretString::new(held_value),
        SecretString::new(other_secret),
        SecretString::new(fake.admin().1),
    ];
    let values: Vec<&SecretString> = values.iter().collect();
    let texts = error_texts(&errors);
    assert_no_secret(&values, texts.iter().map(String::as_str));
    assert_no_secret(&values, [captured_traces().as_str()]);
}

// === through the binary ===

const SECRET_ENV: &str = "DATABRICKS_ADMIN_SECRET";

fn config(
    dir: &std::path::Path,
    fake: &FakeDatabricks,
    principal: &(String, String),
) -> std::path::PathBuf {
    issued_local::write_config(
        dir,
        &format!(
            "app = \"databricks\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\npassword = \"env:{SECRET_ENV}\"\ntls = \"disable\"\naccount_id = \"{}\"",
            fake.port(),
            fake.admin().0,
            fake.account_id(),
        ),
        "databricks-service-principal-secret",
        &format!(
            "{{ servicePrincipalId = \"{}\", clientId = \"{}\" }}",
            principal.0, principal.1
        ),
    )
}

async fn assert_fake_holds_exactly(
    fake: &FakeDatabricks,
    principal: &(String, String),
    running: &issued_local::Running,
    context: &str,
) {
    let held = fake.secrets(&principal.0);
    let held_ids = held.iter().map(|s| s.0.clone()).collect();
    let stored = running
        .assert_provider_holds(
            RotationType::DatabricksServicePrincipalSecret,
            held_ids,
            context,
        )
        .await;
    let http = reqwest::Client::new();
    for s in &stored {
        assert_eq!(s.client_id, principal.1, "{context}");
        let answer = http
            .post(format!("{}/oidc/v1/token", fake.base_url()))
            .basic_auth(&s.client_id, Some(&s.client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
            .send()
            .await
            .expect("token request");
        assert!(
            answer.status().is_success(),
            "{context}: stored secret {} gets a token",
            s.secret_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotation_keeps_exactly_the_two_stored_secrets() {
    let fake = FakeDatabricks::start().await;
    let principal = fake.create_principal();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &fake, &principal);
    let secret = fake.admin().1;
    let bin = env!("CARGO_BIN_EXE_rotator");
    let running = issued_local::start(bin, dir.path(), &config, (SECRET_ENV, &secret), None)
        .await
        .expect("serving");
    let t = RotationType::DatabricksServicePrincipalSecret;
    let (_, first) = running.credentials(t).await;
    assert_eq!(first.len(), 1, "the first credential");
    assert_fake_holds_exactly(&fake, &principal, &running, "first").await;
    for round in 1..=2 {
        running.rotate(t).await.expect("rotate");
        assert_fake_holds_exactly(&fake, &principal, &running, &format!("rotation {round}")).await;
    }
    let (_, stored) = running.credentials(t).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        fake.live_secrets(&principal.0),
        2,
        "exactly the two stored secrets"
    );
    assert!(!ids(&stored).contains(&first[0].secret_id));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_issued_applied_or_verified_leaves_exactly_the_stored_secrets() {
    let bin = env!("CARGO_BIN_EXE_rotator");
    let t = RotationType::DatabricksServicePrincipalSecret;
    for boundary in ["issued", "applied", "verified"] {
        let fake = FakeDatabricks::start().await;
        let principal = fake.create_principal();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), &fake, &principal);
        let secret = fake.admin().1;
        let env = (SECRET_ENV, secret.as_str());

        let died = issued_local::start(bin, dir.path(), &config, env, Some(boundary)).await;
        assert!(
            died.is_err(),
            "{boundary}: the failpoint fires during the first create"
        );
        let running = issued_local::start(bin, dir.path(), &config, env, None)
            .await
            .expect("serving");
        assert_fake_holds_exactly(
            &fake,
            &principal,
            &running,
            &format!("{boundary}: first create"),
        )
        .await;
        running.rotate(t).await.expect("rotate");
        running.stop().await;

        let crashing = issued_local::start(bin, dir.path(), &config, env, Some(boundary))
            .await
            .expect("serving");
        let _ = crashing.rotate(t).await;
        let status = crashing.exited().await;
        assert!(!status.success(), "{boundary}: the failpoint fired");
        let running = issued_local::start(bin, dir.path(), &config, env, None)
            .await
            .expect("serving");
        assert_fake_holds_exactly(
            &fake,
            &principal,
            &running,
            &format!("{boundary}: rotation"),
        )
        .await;
        running.rotate(t).await.expect("the next rotation works");
        assert_fake_holds_exactly(&fake, &principal, &running, &format!("{boundary}: after")).await;
        running.stop().await;
    }
}
