//! Throwaway server certificates for tests of the drivers' TLS modes: a certificate authority
//! and a server certificate it signed (the `openssl` command line), and self-signed server
//! certificates as `openssl req -x509` and rcgen make them (basicConstraints CA:TRUE), which a
//! `ca_file` holding exactly that certificate pins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of a test CA and one server certificate, in a directory the caller owns.
pub struct TestCa {
    /// The CA certificate (PEM), what `TlsConfig.ca_pem` takes.
    pub ca_pem: String,
    /// The CA certificate file.
    pub ca_file: PathBuf,
    /// The server certificate file (SAN IP:127.0.0.1, DNS:localhost).
    pub cert_file: PathBuf,
    /// The server key file.
    pub key_file: PathBuf,
}

impl TestCa {
    /// Creates the CA and the server certificate (for 127.0.0.1 and localhost) in `dir`.
    pub fn create(dir: &Path) -> Self {
        Self::create_for(dir, "IP:127.0.0.1,DNS:localhost")
    }

    /// Creates the CA and a server certificate whose subjectAltName is `names`
    /// (`IP:…,DNS:…`) in `dir`.
    pub fn create_for(dir: &Path, names: &str) -> Self {
        let p = |name: &str| dir.join(name);
        let s = |path: &PathBuf| path.to_str().expect("utf-8 path").to_owned();
        let (ca_key, ca_file, key_file, csr, cert_file, ext) = (
            p("ca.key"),
            p("ca.crt"),
            p("server.key"),
            p("server.csr"),
            p("server.crt"),
            p("server.ext"),
        );
        req_x509("/CN=rotator test CA", &[], &ca_key, &ca_file);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &s(&key_file),
            "-out",
            &s(&csr),
        ]);
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={names}\n"
            ),
        )
        .expect("write the extensions file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca_file),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &s(&ext),
            "-out",
            &s(&cert_file),
        ]);
        Self {
            ca_pem: std::fs::read_to_string(&ca_file).expect("read the CA"),
            ca_file,
            cert_file,
            key_file,
        }
    }
}

/// A self-signed server certificate for 127.0.0.1 and localhost, with basicConstraints CA:TRUE.
pub struct SelfSigned {
    /// The certificate (PEM): given as the `ca_file`, it pins the server.
    pub pem: String,
    /// The certificate file.
    pub cert_file: PathBuf,
    /// The key file.
    pub key_file: PathBuf,
}

impl SelfSigned {
    /// As `openssl req -x509` makes it (the most common way), in `dir`.
    pub fn openssl(dir: &Path) -> Self {
        Self::openssl_for(dir, "IP:127.0.0.1,DNS:localhost")
    }

    /// As [`SelfSigned::openssl`], with subjectAltName `names` (`IP:…,DNS:…`), in `dir`.
    pub fn openssl_for(dir: &Path, names: &str) -> Self {
        let (cert_file, key_file) = (dir.join("self-signed.crt"), dir.join("self-signed.key"));
        req_x509(
            "/CN=127.0.0.1",
            &["-addext", &format!("subjectAltName={names}")],
            &key_file,
            &cert_file,
        );
        Self {
            pem: std::fs::read_to_string(&cert_file).expect("read the certificate"),
            cert_file,
            key_file,
        }
    }

    /// As rcgen makes it with `is_ca` set, in `dir`.
    pub fn rcgen(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a key");
        let cert = params.self_signed(&key).expect("a self-signed certificate");
        let (cert_file, key_file) = (dir.join("rcgen.crt"), dir.join("rcgen.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        Self {
            pem: cert.pem(),
            cert_file,
            key_file,
        }
    }
}

/// `openssl req -x509`: a new RSA key in `key` and a self-signed certificate (CA:TRUE, openssl's
/// default) for `subject` in `cert`, valid for two days.
fn req_x509(subject: &str, extra: &[&str], key: &Path, cert: &Path) {
    let s = |path: &Path| path.to_str().expect("utf-8 path").to_owned();
    let (key, cert) = (s(key), s(cert));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-keyout", &key, "-out", &cert]);
    openssl(&args);
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?} failed");
}
