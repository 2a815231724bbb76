//! `infisical.ca_file` with self-signed server certificates.
//!
//! Regression: a certificate made by `openssl req -x509` (basicConstraints CA:TRUE) given as the
//! CA file failed every call with `invalid peer certificate: CaUsedAsEndEntity`. A server
//! certificate that is exactly one of the file's certificates is now accepted (pinning); any
//! other is fully verified, and a refusal says what to fix.
//!
//! The fake Infisical speaks plain HTTP; a small rustls listener in front of it serves TLS.

use std::path::Path;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rotator::config::{Config, Env};
use rotator::context::CallContext;
use rotator::proto::RotationType;
use rotator::upstream::infisical::Infisical;
use rotator_testkit::fake_infisical::{CLIENT_ID, CLIENT_SECRET, FakeInfisical, PROJECT_ID};
use rotator_testkit::tls_front::TlsFront;

fn upstream(url: &str, ca_file: &Path) -> Infisical {
    let env: Env = [
        ("ROTATOR_INFISICAL_URL", url),
        ("ROTATOR_INFISICAL_CLIENT_ID", CLIENT_ID),
        ("ROTATOR_INFISICAL_CLIENT_SECRET", CLIENT_SECRET),
        (
            "ROTATOR_INFISICAL_CA_FILE",
            ca_file.to_str().expect("utf-8 path"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_toml_str("", &env).expect("valid config");
    Infisical::new(config.infisical.as_ref().expect("infisical")).expect("client")
}

/// Lists rotations through the TLS front; the upstream's error text on failure.
async fn list_through(
    server_cert: &str,
    server_key: &str,
    ca_file_pem: &str,
) -> Result<(), String> {
    let fake = FakeInfisical::start().await;
    let backend = fake
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let front = TlsFront::start(&backend, server_cert, server_key).await;
    let url = front.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_file_pem).expect("write CA file");
    let result = upstream(&url, &ca_file)
        .list(
            RotationType::Unspecified,
            PROJECT_ID,
            &CallContext::generated(),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    fake.shutdown().await;
    result
}

/// A self-signed certificate for 127.0.0.1 with basicConstraints CA:TRUE, as rcgen makes it.
fn rcgen_self_signed() -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn an_openssl_req_x509_certificate_given_as_the_ca_file_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("openssl failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            eprintln!("skipped: the openssl command line is not available ({e})");
            return;
        }
    }
    let cert = std::fs::read_to_string(&cert).expect("cert");
    let key = std::fs::read_to_string(&key).expect("key");
    list_through(&cert, &key, &cert)
        .await
        .expect("pinned certificate accepted");
}

#[tokio::test]
async fn an_rcgen_ca_certificate_given_as_the_ca_file_is_accepted() {
    let (cert, key) = rcgen_self_signed();
    list_through(&cert, &key, &cert)
        .await
        .expect("pinned certificate accepted");
    // Among other certificates of the file, too.
    let (other, _) = rcgen_self_signed();
    list_through(&cert, &key, &format!("{other}{cert}"))
        .await
        .expect("pinned certificate accepted from a bundle");
}

#[tokio::test]
async fn a_different_self_signed_certificate_is_refused_with_what_to_fix() {
    let (cert, key) = rcgen_self_signed();
    let (other, _) = rcgen_self_signed();
    let error = list_through(&cert, &key, &other)
        .await
        .expect_err("refused");
    assert!(
        error.contains("certificate refused")
            && error.contains("put that exact certificate in infisical.ca_file"),
        "{error}"
    );
    assert!(!error.contains(CLIENT_SECRET), "{error}");
}

#[tokio::test]
async fn a_chain_is_still_fully_verified_including_the_name() {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("CA");
    let leaf = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.signed_by(&key, &ca).expect("leaf");
        (cert.pem(), key.serialize_pem())
    };
    let (good, good_key) = leaf("127.0.0.1");
    list_through(&good, &good_key, &ca.pem())
        .await
        .expect("chain to the CA accepted");
    let (wrong, wrong_key) = leaf("infisical.example");
    let error = list_through(&wrong, &wrong_key, &ca.pem())
        .await
        .expect_err("wrong name refused");
    assert!(
        error.contains("does not name 127.0.0.1") && error.contains("subjectAltName"),
        "{error}"
    );
}

/// The HTTP API drivers' `ca_file` pins the same way: a self-signed (CA) certificate given as
/// the connection's CA file is accepted as the server's; another self-signed certificate is a
/// TLS failure that says what to fix.
#[tokio::test]
async fn an_http_driver_pins_a_self_signed_certificate_from_its_ca_file() {
    use rotator::drivers::{
        AnyDriver, ConnectionConfig, Driver as _, DriverErrorKind, DriverOptions, TlsConfig,
        TlsMode,
    };
    use rotator::proto::{ClientIdParameters, rotation_parameters::Kind};
    use rotator::secret::SecretString;
    use rotator_testkit::fake_auth0::{AUDIENCE, FakeAuth0};

    let fake = FakeAuth0::start().await;
    let (cert, key) = rcgen_self_signed();
    let front = TlsFront::start(&format!("127.0.0.1:{}", fake.port()), &cert, &key).await;
    let port = front.port();
    let (admin, secret) = fake.admin();
    let probe = |ca_pem: String| {
        let mut options = toml::Table::new();
        options.insert("audience".into(), AUDIENCE.into());
        options.insert("propagation_wait_seconds".into(), 0.into());
        let built = AnyDriver::build(
            "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a99",
            ConnectionConfig {
                host: "127.0.0.1".into(),
                port,
                database: String::new(),
                admin_username: admin.clone(),
                admin_password: SecretString::new(secret.clone()),
                tls: TlsConfig {
                    mode: TlsMode::VerifyFull,
                    ca_pem: Some(ca_pem),
                },
            },
            &Kind::Auth0ClientSecret(ClientIdParameters {
                client_id: "app-client".into(),
            }),
            DriverOptions {
                options,
                ..DriverOptions::default()
            },
        )
        .expect("a valid auth0 rotation");
        async move { built.driver.probe().await }
    };
    probe(cert.clone())
        .await
        .expect("the pinned certificate is accepted");
    let (other, _) = rcgen_self_signed();
    let refused = probe(other)
        .await
        .expect_err("another self-signed certificate is refused");
    assert_eq!(refused.kind(), DriverErrorKind::Tls, "{refused}");
    assert!(refused.detail().contains("ca_file"), "{refused}");
}
