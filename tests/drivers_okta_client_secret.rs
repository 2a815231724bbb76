//! The `okta-client-secret` driver against the fake Okta: the issued-secret contract (issue,
//! verify, revoke, list), each error path classified and changing nothing, no secret in any
//! error, `Debug` or trace; then local rotations through the real binary, with kill -9 at the
//! `issued`, `applied` and `verified` boundaries.

use rotator::drivers::{
    AnyIssuer, ConnectionConfig, Credential, DriverError, DriverErrorKind, DriverOptions,
    LocalDriver, TlsConfig, TlsMode,
};
use rotator::proto::{ClientIdParameters, RotationType, rotation_parameters};
use rotator::secret::SecretString;
use rotator_testkit::driver_conformance::{
    assert_no_secret, assert_phase_span, captured_traces, error_texts, start_trace_capture,
};
use rotator_testkit::fake_okta::{Failure, FakeOkta};
use rotator_testkit::issued_local::{self, ids, sorted};

const SYSTEM: &str = "okta";

fn connection(fake: &FakeOkta, token: &str, mode: TlsMode) -> ConnectionConfig {
    ConnectionConfig {
        host: "127.0.0.1".into(),
        port: fake.port(),
        database: String::new(),
        admin_username: "rotator".into(),
        admin_password: SecretString::new(token),
        tls: TlsConfig { mode, ca_pem: None },
    }
}

fn issuer_with(fake: &FakeOkta, app: &str, token: &str, mode: TlsMode, options: &str) -> AnyIssuer {
    let parameters = rotation_parameters::Kind::OktaClientSecret(ClientIdParameters {
        client_id: app.to_owned(),
    });
    let options = DriverOptions {
        options: toml::from_str(options).expect("options"),
        ..DriverOptions::default()
    };
    match rotator::drivers::build(
        "okta-test",
        connection(fake, token, mode),
        &parameters,
        options,
    )
    .expect("build")
    {
        LocalDriver::Issued(issuer) => issuer,
        LocalDriver::Chosen(_) => panic!("okta issues its secrets"),
    }
}

fn issuer(fake: &FakeOkta, app: &str) -> AnyIssuer {
    issuer_with(fake, app, &fake.api_token(), TlsMode::Disable, "")
}

#[tokio::test]
async fn issue_verify_list_and_revoke_follow_the_contract() {
    start_trace_capture();
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let okta = issuer(&fake, &app);

    let first = okta.issue().await.expect("issue");
    assert_eq!(okta.list().await.expect("list"), vec![first.id.clone()]);
    okta.verify(&first)
        .await
        .expect("the new secret gets a token");

    let wrong = Credential {
        id: first.id.clone(),
        secret: SecretString::new("not-the-secret-at-all-0123456789"),
    };
    let refused = okta.verify(&wrong).await.expect_err("a wrong secret");
    assert_eq!(refused.kind(), DriverErrorKind::LoginRejected, "{refused}");
    assert!(!refused.is_transient());

    let second = okta.issue().await.expect("a second secret fits");
    assert_eq!(
        sorted(okta.list().await.expect("list")),
        sorted(vec![first.id.clone(), second.id.clone()])
    );

    // Okta holds two: the third is LimitReached and creates nothing.
    let full = okta.issue().await.expect_err("a third secret");
    assert_eq!(full.kind(), DriverErrorKind::LimitReached, "{full}");
    assert_eq!(fake.live_secrets(), 2);

    // Revoke deactivates the ACTIVE secret, then deletes it; again, it is already gone.
    okta.revoke(&first.id).await.expect("revoke");
    okta.revoke(&first.id).await.expect("revoke is idempotent");
    okta.revoke("ocsNoSuchSecret000000")
        .await
        .expect("an unknown id is success");
    assert_eq!(okta.list().await.expect("list"), vec![second.id.clone()]);
    let revoked = okta.verify(&first).await.expect_err("a revoked secret");
    assert_eq!(revoked.kind(), DriverErrorKind::LoginRejected);
    okta.verify(&second)
        .await
        .expect("the other secret still works");
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with(&format!("{}/lifecycle/deactivate", first.id))),
        "an ACTIVE secret is deactivated before its DELETE: {requests:?}"
    );

    // An id that would change the request path is refused before any call.
    let bad = okta
        .revoke("../../users/me")
        .await
        .expect_err("a path in an id");
    assert_eq!(bad.kind(), DriverErrorKind::InvalidInput);

    let secrets = [&first.secret, &second.secret, &wrong.secret];
    let token = SecretString::new(fake.api_token());
    let all = [&first.secret, &second.secret, &wrong.secret, &token];
    let texts = error_texts(&[refused, full, revoked, bad]);
    assert_no_secret(&all, texts.iter().map(String::as_str));
    assert_no_secret(
        &all,
        [
            format!("{okta:?}"),
            format!("{first:?}"),
            format!("{second:?}"),
        ]
        .iter()
        .map(String::as_str),
    );
    assert_no_secret(&secrets, [captured_traces().as_str()]);
    assert_no_secret(&[&token], [captured_traces().as_str()]);
    assert_phase_span("issue", SYSTEM, "rotator");
    assert_phase_span("verify", SYSTEM, &first.id);
    assert_phase_span("revoke", SYSTEM, &first.id);
    assert_phase_span("list", SYSTEM, "rotator");
}

#[tokio::test]
async fn a_custom_authorization_server_and_a_granted_scope_verify_too() {
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    fake.grant_scope(&app, "okta.apps.read");
    let okta = issuer_with(
        &fake,
        &app,
        &fake.api_token(),
        TlsMode::Disable,
        "authorization_server_id = \"default\"\nverify_scope = \"okta.apps.read\"",
    );
    let issued = okta.issue().await.expect("issue");
    okta.verify(&issued).await.expect("a token");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r == "POST /oauth2/default/v1/token"),
        "the custom server's endpoint"
    );
}

/// Asserts `error` has `kind` and that the app's secrets are still `before`.
fn assert_clean(
    fake: &FakeOkta,
    app: &str,
    before: &[String],
    error: &DriverError,
    kind: DriverErrorKind,
) {
    assert_eq!(error.kind(), kind, "{error}");
    let now: Vec<String> = fake.secrets(app).into_iter().map(|s| s.id).collect();
    assert_eq!(now, before, "a failed call changed nothing ({error})");
}

#[tokio::test]
async fn every_error_is_classified_and_changes_nothing() {
    start_trace_capture();
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let (held, held_value) = fake.add_secret(&app);
    let before = vec![held.clone()];
    let okta = issuer(&fake, &app);
    let mut errors = Vec::new();

    // 429 with Okta's headers: transient, and the wait is reported.
    fake.fail_next(
        Failure::RateLimited {
            retry_after_secs: 20,
        },
        1,
    );
    let e = okta.issue().await.expect_err("429");
    assert_clean(&fake, &app, &before, &e, DriverErrorKind::ServerUnavailable);
    assert!(e.is_transient());
    assert!(
        e.detail().contains("E0000047") && e.detail().contains("retry after"),
        "{e}"
    );
    errors.push(e);

    for status in [500, 503] {
        fake.fail_next(Failure::ServerError(status), 1);
        let e = okta.issue().await.expect_err("5xx");
        assert_clean(&fake, &app, &before, &e, DriverErrorKind::ServerUnavailable);
        assert!(e.is_transient());
        errors.push(e);
    }

    fake.fail_next(
        Failure::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let e = okta.revoke(&held).await.expect_err("429 on revoke");
    assert_clean(&fake, &app, &before, &e, DriverErrorKind::ServerUnavailable);
    errors.push(e);

    fake.fail_next(Failure::ServerError(502), 1);
    let e = okta.list().await.expect_err("502 on list");
    assert_clean(&fake, &app, &before, &e, DriverErrorKind::ServerUnavailable);
    errors.push(e);

    // 403: a read-only token may list but not create or revoke.
    let read_only = issuer_with(
        &fake,
        &app,
        &fake.new_api_token(false),
        TlsMode::Disable,
        "",
    );
    assert_eq!(
        read_only.list().await.expect("a read-only token lists"),
        before
    );
    let e = read_only.issue().await.expect_err("403");
    assert_clean(&fake, &app, &before, &e, DriverErrorKind::PermissionDenied);
    assert!(!e.is_transient());
    errors.push(e);
    let e = read_only.revoke(&held).await.expect_err("403 on revoke");
    assert_clean(&fake, &app, &before, &e, DriverErrorKind::PermissionDenied);
    errors.push(e);

    // 404: no such app.
    let missing = issuer(&fake, "0oaNoSuchApp00000000");
    let e = missing.issue().await.expect_err("404");
    assert_clean(&fake, &app, &before, &e, DriverErrorKind::UserNotFound);
    errors.push(e);

    // A revoked API token: 401 E0000011.
    let revoked_token = fake.new_api_token(true);
    let revoked = issuer_with(&fake, &app, &revoked_token, TlsMode::Disable, "");
    fake.revoke_api_token(&revoked_token);
    let e = revoked.issue().await.expect_err("401");
    assert_clean(
        &fake,
        &app,
        &before,
        &e,
        DriverErrorKind::AdminLoginRejected,
    );
    assert!(!e.is_transient());
    errors.push(e);

    // The cap.
    let filled = fake.add_secret(&app);
    let full = vec![held.clone(), filled.0.clone()];
    let e = okta.issue().await.expect_err("two secrets already");
    assert_clean(&fake, &app, &full, &e, DriverErrorKind::LimitReached);
    errors.push(e);

    // The token endpoint's own failures.
    let credential = Credential {
        id: held.clone(),
        secret: SecretString::new(held_value.clone()),
    };
    fake.fail_next_token(Failure::ServerError(503), 1);
    let e = okta
        .verify(&credential)
        .await
        .expect_err("503 at the token endpoint");
    assert_eq!(e.kind(), DriverErrorKind::ServerUnavailable);
    errors.push(e);
    okta.verify(&credential).await.expect("then it answers");

    let token = SecretString::new(fake.api_token());
    let values = [
        SecretString::new(held_value),
        SecretString::new(filled.1),
        token,
        SecretString::new(revoked_token),
    ];
    let values: Vec<&SecretString> = values.iter().collect();
    let texts = error_texts(&errors);
    assert_no_secret(&values, texts.iter().map(String::as_str));
    assert_no_secret(&values, [captured_traces().as_str()]);
}

#[tokio::test]
async fn plain_http_needs_the_explicit_opt_in() {
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    let okta = issuer_with(&fake, &app, &fake.api_token(), TlsMode::VerifyFull, "");
    let e = okta.list().await.expect_err("https to a plain-http fake");
    assert!(
        matches!(
            e.kind(),
            DriverErrorKind::Tls | DriverErrorKind::Unreachable
        ),
        "{e}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing was served over plain http"
    );
}

// === through the binary ===

const TOKEN_ENV: &str = "OKTA_API_TOKEN";

fn config(dir: &std::path::Path, fake: &FakeOkta, app: &str) -> std::path::PathBuf {
    issued_local::write_config(
        dir,
        &format!(
            "app = \"okta\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"rotator\"\npassword = \"env:{TOKEN_ENV}\"\ntls = \"disable\"",
            fake.port()
        ),
        "okta-client-secret",
        &format!("{{ clientId = \"{app}\" }}"),
    )
}

/// The fake holds exactly the stored secrets, with the stored values, and each gets a token.
async fn assert_fake_holds_exactly(
    fake: &FakeOkta,
    app: &str,
    running: &issued_local::Running,
    context: &str,
) {
    let held = fake.secrets(app);
    let held_ids = held.iter().map(|s| s.id.clone()).collect();
    let stored = running
        .assert_provider_holds(RotationType::OktaClientSecret, held_ids, context)
        .await;
    let http = reqwest::Client::new();
    for s in &stored {
        assert_eq!(s.client_id, app, "{context}");
        assert!(
            held.iter()
                .any(|h| h.id == s.secret_id && h.value == s.client_secret && h.active)
        );
        let answer = http
            .post(format!("{}/oauth2/v1/token", fake.base_url()))
            .basic_auth(&s.client_id, Some(&s.client_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "okta.apps.read"),
            ])
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
    let fake = FakeOkta::start().await;
    let app = fake.create_app();
    fake.grant_scope(&app, "okta.apps.read");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &fake, &app);
    let token = fake.api_token();
    let bin = env!("CARGO_BIN_EXE_rotator");
    let running = issued_local::start(bin, dir.path(), &config, (TOKEN_ENV, &token), None)
        .await
        .expect("serving");
    let (_, first) = running.credentials(RotationType::OktaClientSecret).await;
    assert_eq!(first.len(), 1, "the first credential");
    assert_fake_holds_exactly(&fake, &app, &running, "first").await;
    for round in 1..=2 {
        running
            .rotate(RotationType::OktaClientSecret)
            .await
            .expect("rotate");
        assert_fake_holds_exactly(&fake, &app, &running, &format!("rotation {round}")).await;
    }
    let (_, stored) = running.credentials(RotationType::OktaClientSecret).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(fake.live_secrets(), 2, "exactly the two stored secrets");
    assert!(
        !ids(&stored).contains(&first[0].secret_id),
        "the first secret was rotated out"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_issued_applied_or_verified_leaves_exactly_the_stored_secrets() {
    let bin = env!("CARGO_BIN_EXE_rotator");
    for boundary in ["issued", "applied", "verified"] {
        let fake = FakeOkta::start().await;
        let app = fake.create_app();
        fake.grant_scope(&app, "okta.apps.read");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), &fake, &app);
        let token = fake.api_token();
        let env = (TOKEN_ENV, token.as_str());

        // The first create dies at the boundary; the restart recovers it.
        let died = issued_local::start(bin, dir.path(), &config, env, Some(boundary)).await;
        assert!(
            died.is_err(),
            "{boundary}: the failpoint fires during the first create"
        );
        let running = issued_local::start(bin, dir.path(), &config, env, None)
            .await
            .expect("serving");
        assert_fake_holds_exactly(&fake, &app, &running, &format!("{boundary}: first create"))
            .await;
        running
            .rotate(RotationType::OktaClientSecret)
            .await
            .expect("rotate");
        running.stop().await;

        // A rotation with a full app (two secrets) dies at the boundary.
        let crashing = issued_local::start(bin, dir.path(), &config, env, Some(boundary))
            .await
            .expect("serving");
        let _ = crashing.rotate(RotationType::OktaClientSecret).await;
        let status = crashing.exited().await;
        assert!(!status.success(), "{boundary}: the failpoint fired");
        let running = issued_local::start(bin, dir.path(), &config, env, None)
            .await
            .expect("serving");
        assert_fake_holds_exactly(&fake, &app, &running, &format!("{boundary}: rotation")).await;
        running
            .rotate(RotationType::OktaClientSecret)
            .await
            .expect("the next rotation works");
        assert_fake_holds_exactly(&fake, &app, &running, &format!("{boundary}: after")).await;
        running.stop().await;
    }
}
