//! A private OpenLDAP `slapd` (Debian `slapd`, slapd.conf + mdb) on two free loopback ports:
//! `ldap://` (plain and StartTLS) and `ldaps://`, both with a self-signed certificate for
//! 127.0.0.1 (the certificate a test pins through `ca_file`). Entries live under
//! [`SUFFIX`]; the root DN is the admin; `userPassword` is writable by its own entry
//! (`by self write`), readable by nobody, usable for binds.
//!
//! [`Slapd::shared`] hands out one server per test binary; it is stopped by its PID when the last
//! holder drops it.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ldap3::exop::PasswordModify;
use ldap3::{LdapConnAsync, LdapConnSettings};

/// The naming context.
pub const SUFFIX: &str = "dc=example,dc=test";
/// The root DN: the admin the driver binds as.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=test";
/// The root DN's password.
pub const ADMIN_PASSWORD: &str = "admin-pw-Ld4p";

/// A running slapd; dropping it stops the server (by PID) and deletes its files.
pub struct Slapd {
    dir: tempfile::TempDir,
    child: Child,
    ldap_port: u16,
    ldaps_port: u16,
    cert_pem: String,
}

impl Slapd {
    /// The server shared by the tests of this binary, started on first use.
    pub async fn shared() -> Arc<Self> {
        static SHARED: tokio::sync::Mutex<Weak<Slapd>> = tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(Self::start().await);
        *slot = Arc::downgrade(&s);
        s
    }

    /// Writes the config and certificate, starts slapd, waits for both ports, and adds the
    /// suffix entry.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-slapd-")
            .tempdir()
            .expect("a temp dir");
        let p = |name: &str| dir.path().join(name);
        std::fs::create_dir(p("db")).expect("the db dir");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(p("key.pem"))
            .arg("-out")
            .arg(p("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl req -x509 failed");
        let config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {pid}\n\
             TLSCertificateFile {cert}\n\
             TLSCertificateKeyFile {key}\n\
             database mdb\n\
             maxsize 104857600\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {db}\n\
             access to attrs=userPassword by self write by anonymous auth by * none\n\
             access to * by * read\n",
            pid = s(&p("slapd.pid")),
            cert = s(&p("cert.pem")),
            key = s(&p("key.pem")),
            db = s(&p("db")),
        );
        std::fs::write(p("slapd.conf"), config).expect("write slapd.conf");
        let cert_pem = std::fs::read_to_string(p("cert.pem")).expect("read the certificate");
        // A port picked free can be taken before slapd binds it: try a few.
        for _ in 0..5 {
            let (ldap_port, ldaps_port) = (free_port(), free_port());
            if ldap_port == ldaps_port {
                continue;
            }
            let log = std::fs::File::create(p("slapd.log")).expect("the log file");
            let mut child = Command::new("/usr/sbin/slapd")
                .arg("-f")
                .arg(p("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
                ))
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log file"))
                .stderr(log)
                .spawn()
                .expect("start slapd (run scripts/test.sh, which installs slapd and ldap-utils)");
            if wait_ready(&mut child, &[ldap_port, ldaps_port]) {
                let slapd = Self {
                    dir,
                    child,
                    ldap_port,
                    ldaps_port,
                    cert_pem,
                };
                slapd.add_suffix().await;
                return slapd;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "slapd did not start: {}",
            std::fs::read_to_string(p("slapd.log")).unwrap_or_default()
        );
    }

    /// The plain/StartTLS port (127.0.0.1).
    pub fn ldap_port(&self) -> u16 {
        self.ldap_port
    }

    /// The LDAPS port (127.0.0.1).
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    /// The server's self-signed certificate (PEM), to pin as the connection's `ca_file`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The server's certificate file.
    pub fn cert_file(&self) -> std::path::PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    async fn admin(&self) -> ldap3::Ldap {
        let mut ldap = self.connect().await;
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .await
            .and_then(ldap3::LdapResult::success)
            .expect("admin bind");
        ldap
    }

    async fn connect(&self) -> ldap3::Ldap {
        let url = format!("ldap://127.0.0.1:{}", self.ldap_port);
        let (conn, ldap) = LdapConnAsync::with_settings(
            LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10)),
            &url,
        )
        .await
        .expect("connect to slapd");
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap
    }

    async fn add_suffix(&self) {
        let mut ldap = self.admin().await;
        ldap.add(
            SUFFIX,
            vec![
                ("objectClass", ["dcObject", "organization"].into()),
                ("o", ["Example"].into()),
                ("dc", ["example"].into()),
            ],
        )
        .await
        .and_then(ldap3::LdapResult::success)
        .expect("add the suffix entry");
        let _ = ldap.unbind().await;
    }

    /// Adds `uid=<uid>,SUFFIX` with `password` (hashed by the server: set by Password Modify),
    /// and returns its DN.
    pub async fn create_user(&self, uid: &str, password: &str) -> String {
        let dn = format!("uid={uid},{SUFFIX}");
        let mut ldap = self.admin().await;
        ldap.add(
            &dn,
            vec![
                ("objectClass", ["inetOrgPerson"].into()),
                ("uid", [uid].into()),
                ("cn", [uid].into()),
                ("sn", ["Test"].into()),
            ],
        )
        .await
        .and_then(ldap3::LdapResult::success)
        .expect("add the user");
        ldap.extended(PasswordModify {
            user_id: Some(&dn),
            old_pass: None,
            new_pass: Some(password),
        })
        .await
        .and_then(|r| r.success())
        .expect("set the user's password");
        let _ = ldap.unbind().await;
        dn
    }

    /// Whether a simple bind as `dn` with `password` succeeds (plain `ldap://`). An empty
    /// password is never a success (it would be an anonymous bind).
    pub async fn can_bind(&self, dn: &str, password: &str) -> bool {
        if password.is_empty() {
            return false;
        }
        let mut ldap = self.connect().await;
        let ok = ldap
            .simple_bind(dn, password)
            .await
            .and_then(ldap3::LdapResult::success)
            .is_ok();
        let _ = ldap.unbind().await;
        ok
    }

    /// The stored `userPassword` of `dn`, read as the admin (to check it is hashed).
    pub async fn user_password(&self, dn: &str) -> Vec<String> {
        let mut ldap = self.admin().await;
        let (entries, _) = ldap
            .search(
                dn,
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["userPassword"],
            )
            .await
            .and_then(ldap3::SearchResult::success)
            .expect("read the entry");
        let _ = ldap.unbind().await;
        entries
            .into_iter()
            .flat_map(|e| {
                let e = ldap3::SearchEntry::construct(e);
                let mut values: Vec<String> =
                    e.attrs.get("userPassword").cloned().unwrap_or_default();
                values.extend(
                    e.bin_attrs
                        .get("userPassword")
                        .into_iter()
                        .flatten()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                );
                values
            })
            .collect()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every port accepts a connection; false when slapd exited first or a minute
/// passed.
fn wait_ready(child: &mut Child, ports: &[u16]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if ports
            .iter()
            .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
