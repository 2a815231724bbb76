//! Local PostgreSQL rotation through the real binary against a scram-only cluster: first create,
//! dual-phase rotations, clean failure with a wrong admin password.

use std::time::Duration;

use rotator::proto::secret_rotation_service_client::SecretRotationServiceClient;
use rotator::proto::{
    Backend, GetSecretRotationRequest, RotateSecretsRequest, RotationStatus, RotationType,
    get_secret_rotation_request,
};
use rotator_testkit::local_server::*;
use rotator_testkit::private_postgres::{ADMIN_PASSWORD, PrivatePostgres};

fn rotate_request() -> RotateSecretsRequest {
    RotateSecretsRequest {
        r#type: RotationType::PostgresCredentials as i32,
        rotation_id: PG_ROTATION.to_owned(),
    }
}

async fn start(
    dir: &std::path::Path,
    port_pg: u16,
    admin_password: &str,
    users: (&str, &str),
) -> (tokio::process::Child, tonic::transport::Channel) {
    let config = pg_config(dir, port_pg, users);
    let port = free_port();
    let child = rotator_command(
        env!("CARGO_BIN_EXE_rotator"),
        &config,
        &dir.join("data"),
        port,
        ("PG_ADMIN", admin_password),
    )
    .spawn()
    .expect("spawn");
    let channel = wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;
    (child, channel)
}

#[tokio::test]
async fn postgres_rotations_are_dual_phase() {
    let pg = PrivatePostgres::shared();
    pg.create_role("dual_a", "initial-a-Pw1").await;
    pg.create_role("dual_b", "initial-b-Pw1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_child, channel) =
        start(dir.path(), pg.port(), ADMIN_PASSWORD, ("dual_a", "dual_b")).await;

    // First create: one credential, slot 0, active index 0, and it logs in.
    let (active, creds) = credentials(&channel, PG_ROTATION).await;
    assert_eq!((active, creds.len()), (0, 1));
    assert_eq!(creds[0].0, "dual_a");
    assert!(pg_login(pg.port(), "dual_a", &creds[0].1).await);
    assert!(!pg_login(pg.port(), "dual_a", "initial-a-Pw1").await);

    let mut client = SecretRotationServiceClient::new(channel.clone());
    let mut previous = creds[0].clone();
    let mut before_previous: Option<(String, String)> = None;
    for round in 0..3 {
        let rotation = client
            .rotate_secrets(rotate_request())
            .await
            .expect("rotate")
            .into_inner()
            .secret_rotation
            .expect("rotation");
        assert_eq!(rotation.backend, Backend::Local as i32);
        assert_eq!(rotation.rotation_status, RotationStatus::Success as i32);
        let (active, creds) = credentials(&channel, PG_ROTATION).await;
        assert_eq!(creds.len(), 2);
        let new = creds[active as usize].clone();
        let inactive = creds[1 - active as usize].clone();
        assert_eq!(
            inactive, previous,
            "round {round}: the previous active credential is kept"
        );
        assert!(
            pg_login(pg.port(), &new.0, &new.1).await,
            "round {round}: new logs in"
        );
        assert!(
            pg_login(pg.port(), &previous.0, &previous.1).await,
            "round {round}: previous still logs in"
        );
        if let Some((user, password)) = &before_previous {
            assert!(
                !pg_login(pg.port(), user, password).await,
                "round {round}: the one before is revoked by the rotation"
            );
        }
        before_previous = Some(previous);
        previous = new;
    }
    let got = client
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::PostgresCredentials as i32,
            lookup: Some(get_secret_rotation_request::Lookup::RotationId(
                PG_ROTATION.to_owned(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .secret_rotation
        .expect("rotation");
    assert_eq!(got.connection.expect("connection").app, "postgres");
    assert_eq!(got.environment.expect("environment").slug, "prod");
    assert!(got.next_rotation_at.is_some());

    // The wrong type for a registered id is refused before anything runs.
    let err = client
        .rotate_secrets(RotateSecretsRequest {
            r#type: RotationType::MysqlCredentials as i32,
            rotation_id: PG_ROTATION.to_owned(),
        })
        .await
        .expect_err("type mismatch");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_wrong_admin_password_fails_cleanly() {
    let pg = PrivatePostgres::shared();
    pg.create_role("bad_a", "initial-a-Pw1").await;
    pg.create_role("bad_b", "initial-b-Pw1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_child, channel) = start(
        dir.path(),
        pg.port(),
        "not-the-admin-password",
        ("bad_a", "bad_b"),
    )
    .await;
    let mut client = SecretRotationServiceClient::new(channel.clone());
    let err = client
        .rotate_secrets(rotate_request())
        .await
        .expect_err("fails");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(!err.message().contains("not-the-admin-password"));
    let got = client
        .get_secret_rotation(GetSecretRotationRequest {
            r#type: RotationType::PostgresCredentials as i32,
            lookup: Some(get_secret_rotation_request::Lookup::RotationId(
                PG_ROTATION.to_owned(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .secret_rotation
        .expect("rotation");
    assert_eq!(got.rotation_status, RotationStatus::Failed as i32);
    assert!(got.last_rotation_message.is_some());
    // Nothing half-done: the users keep their passwords.
    assert!(pg_login(pg.port(), "bad_a", "initial-a-Pw1").await);
    assert!(pg_login(pg.port(), "bad_b", "initial-b-Pw1").await);
    let states = attempt_states(&dir.path().join("data")).await;
    assert!(
        !states.is_empty() && states.iter().all(|s| s == "failed"),
        "{states:?}"
    );
}
