//! A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost, made
//! with the `openssl` command line, for tests of the drivers' TLS modes.

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
    /// Creates the CA and the server certificate in `dir`.
    pub fn create(dir: &Path) -> Self {
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
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rotator test CA",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca_file),
        ]);
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
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
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

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?} failed");
}
