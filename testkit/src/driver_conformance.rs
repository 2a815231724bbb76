//! The executable driver contract (`docs/specs/driver.md`): one harness every driver test calls,
//! against a real server.
//!
//! [`check_contract`] applies and verifies credentials on one slot and asserts: apply then verify
//! works; applying the same credential again works; a wrong password is refused with a permanent
//! `LoginRejected`; the replaced password stops working; no error text, `Debug` output or trace
//! line holds a password; every phase ran in its span with the database attributes.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use rotator::drivers::password::PasswordPolicy;
use rotator::drivers::{AnyDriver, Credential, Driver, DriverError, DriverErrorKind, Slot};
use rotator::secret::SecretString;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything every test in this binary traced, at TRACE level, spans included.
fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let installed = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(sink.clone()))
            .try_init();
        assert!(
            installed.is_ok(),
            "the trace capture must be the global subscriber"
        );
        buffer
    })
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing traces (idempotent). Call before the first driver call of a test.
pub fn start_trace_capture() {
    capture();
}

/// The trace text captured so far. Panics when nothing was captured: a test that greps traces
/// must call [`start_trace_capture`] before its first driver call, or the grep proves nothing.
pub fn captured_traces() -> String {
    let bytes = capture().lock().map(|b| b.clone()).unwrap_or_default();
    assert!(
        !bytes.is_empty(),
        "no trace captured: call start_trace_capture() before the driver calls"
    );
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Panics if any of `texts` holds any of `secrets`.
pub fn assert_no_secret<'a>(secrets: &[&SecretString], texts: impl IntoIterator<Item = &'a str>) {
    for text in texts {
        for secret in secrets {
            assert!(
                !text.contains(secret.expose()),
                "a secret leaked into output: {}",
                text.replace(secret.expose(), "<THE SECRET>")
            );
        }
    }
}

/// A refused server certificate: `DRIVER_TLS`, permanent, a detail that contains `advice`, and
/// not `secret` anywhere in the error.
pub fn assert_certificate_refused(error: &DriverError, advice: &str, secret: &str) {
    assert_eq!(error.kind(), DriverErrorKind::Tls, "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(
        error.detail().contains(advice),
        "{advice:?} missing: {error}"
    );
    assert!(!error.to_string().contains(secret), "{error}");
}

/// The Display and Debug texts of `errors`.
pub fn error_texts(errors: &[DriverError]) -> Vec<String> {
    errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}"), e.detail().to_owned()])
        .collect()
}

/// Asserts the trace holds a span named `driver.<phase>` for `user` with `db.system` and
/// `db.operation` attributes.
pub fn assert_phase_span(phase: &str, system: &str, user: &str) {
    let traces = captured_traces();
    let found = traces.lines().any(|line| {
        line.contains(&format!("driver.{phase}{{"))
            && line.contains(&format!("db.system={system:?}"))
            && line.contains("db.operation=")
            && line.contains(&format!("db.user={user:?}"))
    });
    assert!(
        found,
        "no driver.{phase} span with db.system={system} for {user} in the trace"
    );
}

/// A credential for `slot` with a freshly generated password.
pub fn new_credential(driver: &AnyDriver, policy: &PasswordPolicy, slot: Slot) -> Credential {
    Credential {
        id: driver.username_for(slot).to_owned(),
        secret: policy.generate(),
    }
}

/// The driver contract, on one slot of a real target. Returns the credential left in place.
pub async fn check_contract(driver: &AnyDriver, policy: &PasswordPolicy, slot: Slot) -> Credential {
    start_trace_capture();
    let system = driver.system().as_str();
    let first = new_credential(driver, policy, slot);
    let user = first.id.clone();

    driver.apply(&first).await.expect("apply a new credential");
    driver
        .verify(&first)
        .await
        .expect("the new credential logs in");

    driver
        .apply(&first)
        .await
        .expect("applying the same credential again is fine (idempotent)");
    driver
        .verify(&first)
        .await
        .expect("the credential still logs in after the repeated apply");

    let wrong = new_credential(driver, policy, slot);
    let refused = driver
        .verify(&wrong)
        .await
        .expect_err("a wrong password must not log in");
    assert_eq!(refused.kind(), DriverErrorKind::LoginRejected, "{refused}");
    assert!(!refused.is_transient(), "a refused login is permanent");

    let second = new_credential(driver, policy, slot);
    driver
        .apply(&second)
        .await
        .expect("apply a second credential");
    driver
        .verify(&second)
        .await
        .expect("the second credential logs in");
    let replaced = driver
        .verify(&first)
        .await
        .expect_err("the replaced password of the same user must stop working");
    assert_eq!(
        replaced.kind(),
        DriverErrorKind::LoginRejected,
        "{replaced}"
    );

    let secrets = [&first.secret, &wrong.secret, &second.secret];
    let texts = error_texts(&[refused, replaced]);
    assert_no_secret(&secrets, texts.iter().map(String::as_str));
    assert_no_secret(
        &secrets,
        [
            format!("{first:?}"),
            format!("{second:?}"),
            format!("{driver:?}"),
        ]
        .iter()
        .map(String::as_str),
    );
    assert_no_secret(&secrets, [captured_traces().as_str()]);
    assert_phase_span("apply", system, &user);
    assert_phase_span("verify", system, &user);
    second
}
