//! A Samba AD DC (Debian `samba`, `samba-ad-dc`, `samba-ad-provision`) bound to 127.0.0.1 for
//! the `ldap-password` Active Directory tests: LDAPS on 636 and StartTLS on 389, with a test CA
//! and a server certificate naming 127.0.0.1 (Samba's own has no SAN, which rustls refuses).
//!
//! A DC binds **fixed** ports (88, 135, 389, 445, 636, 3268, ...), so only one runs per machine:
//! every test using it is in the nextest test group `samba` (`max-threads = 1`), and a machine-wide
//! lock file serialises DCs of concurrent runs. Provisioning takes 5–10 s, so it happens once
//! into a template directory under /tmp (guarded by its own lock file); each start copies the
//! template with `cp -a` (keeps the NTACL xattrs), rewrites the paths in its smb.conf and starts
//! `samba -F -M single` in a process group of its own. Stopping sends SIGTERM to that group by
//! its PID and removes `/run/samba/winbindd/pipe`, which the DC's winbindd leaves behind.
//!
//! The DC keeps `old password allowed period = 0` (the old password dies at once) and
//! `minPwdAge = 0` (an account may change a password it was just given); complexity rules stay
//! on, so test passwords must meet them.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, Mod};

/// The realm's DNS domain.
pub const DOMAIN: &str = "samdom.test";
/// The domain's naming context.
pub const BASE_DN: &str = "DC=samdom,DC=test";
/// The domain admin, as a UPN.
pub const ADMIN_UPN: &str = "Administrator@samdom.test";
/// The domain admin's DN.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=samdom,DC=test";
/// The domain admin's password.
pub const ADMIN_PASSWORD: &str = "Admin-Pass-123!";
/// The template directory (provisioned once per machine).
const TEMPLATE: &str = "/tmp/rotator-samba-ad-template";
/// Held while provisioning the template.
const TEMPLATE_LOCK: &str = "/tmp/rotator-samba-ad-template.lock";
/// Held while a DC of this fixture runs: one DC per machine.
const RUN_LOCK: &str = "/tmp/rotator-samba-ad.lock";

/// A running DC; dropping it stops it and deletes its directory.
pub struct SambaAd {
    dir: tempfile::TempDir,
    child: Child,
    ca_pem: String,
    _lock: File,
}

impl SambaAd {
    /// The DC shared by the tests of this process, started on first use.
    pub async fn shared() -> Arc<Self> {
        static SHARED: tokio::sync::Mutex<Weak<SambaAd>> =
            tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(tokio::task::block_in_place(Self::start));
        s.wait_ready().await;
        *slot = Arc::downgrade(&s);
        s
    }

    /// Copies the template (provisioning it first if needed) and starts the DC; not ready yet.
    fn start() -> Self {
        let lock = File::create(RUN_LOCK).expect("the run lock file");
        lock.lock().expect("lock the run lock file");
        let template = template();
        let dir = tempfile::Builder::new()
            .prefix("rotator-samba-ad-")
            .tempdir()
            .expect("a temp dir");
        let d = dir.path().to_str().expect("utf-8 path").to_owned();
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", template.display()))
            .arg(&d));
        let conf = dir.path().join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).expect("read smb.conf");
        std::fs::write(&conf, text.replace(TEMPLATE, &d)).expect("write smb.conf");
        let ca_pem = std::fs::read_to_string(dir.path().join("tls/ca.pem")).expect("the CA");
        let _ = std::fs::remove_file("/run/samba/winbindd/pipe");
        let out = File::create(dir.path().join("samba.out")).expect("samba.out");
        let child = Command::new("samba")
            .arg("-s")
            .arg(&conf)
            .args(["-F", "--no-process-group", "-M", "single"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("samba.out"))
            .stderr(out)
            .spawn()
            .expect("start samba (run scripts/test.sh, which installs the Samba AD DC packages)");
        Self {
            dir,
            child,
            ca_pem,
            _lock: lock,
        }
    }

    /// Waits until an LDAPS bind as the admin succeeds.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.can_bind(ADMIN_UPN, ADMIN_PASSWORD).await {
                return;
            }
            let pid = self.child.id();
            let alive = Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(alive, "samba exited: {}", self.output());
            assert!(
                Instant::now() < deadline,
                "samba AD DC not ready after 60 s: {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("samba.out")).unwrap_or_default()
    }

    /// The test CA that issued the DC's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The DC's server certificate (PEM, CA-signed, SAN IP:127.0.0.1).
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tls/cert.pem")).expect("the certificate")
    }

    /// The CA file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    async fn connect() -> ldap3::Ldap {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(10))
            .set_no_tls_verify(true);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, "ldaps://127.0.0.1:636")
            .await
            .expect("connect to the DC");
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap
    }

    /// Whether a simple bind over LDAPS as `name` (DN, UPN or `DOMAIN\user`) with `password`
    /// succeeds. An empty password never does (it would be anonymous).
    pub async fn can_bind(&self, name: &str, password: &str) -> bool {
        if password.is_empty() {
            return false;
        }
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(10))
            .set_no_tls_verify(true);
        let Ok((conn, mut ldap)) =
            LdapConnAsync::with_settings(settings, "ldaps://127.0.0.1:636").await
        else {
            return false;
        };
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        let ok = ldap
            .simple_bind(name, password)
            .await
            .and_then(ldap3::LdapResult::success)
            .is_ok();
        let _ = ldap.unbind().await;
        ok
    }

    /// Creates an enabled user `name` (`CN=<name>,CN=Users,…`, UPN `<name>@samdom.test`) with
    /// `password` (must meet AD complexity); returns its DN.
    pub async fn create_user(&self, name: &str, password: &str) -> String {
        let dn = format!("CN={name},CN=Users,{BASE_DN}");
        let upn = format!("{name}@{DOMAIN}");
        let mut ldap = Self::connect().await;
        ldap.simple_bind(ADMIN_UPN, ADMIN_PASSWORD)
            .await
            .and_then(ldap3::LdapResult::success)
            .expect("admin bind");
        ldap.add(
            &dn,
            vec![
                (
                    "objectClass",
                    ["top", "person", "organizationalPerson", "user"].into(),
                ),
                ("sAMAccountName", [name].into()),
                ("userPrincipalName", [upn.as_str()].into()),
            ],
        )
        .await
        .and_then(ldap3::LdapResult::success)
        .expect("add the user");
        ldap.modify(
            &dn,
            vec![
                Mod::Replace(
                    b"unicodePwd".to_vec(),
                    [unicode_pwd(password)].into_iter().collect(),
                ),
                Mod::Replace(
                    b"userAccountControl".to_vec(),
                    [b"512".to_vec()].into_iter().collect(),
                ),
            ],
        )
        .await
        .and_then(ldap3::LdapResult::success)
        .expect("set the password and enable the user");
        let _ = ldap.unbind().await;
        dn
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // The workers of the group outlive the master by a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file("/run/samba/winbindd/pipe");
    }
}

/// The `unicodePwd` value of `password`.
pub fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The provisioned template, made once per machine.
fn template() -> PathBuf {
    let lock = File::create(TEMPLATE_LOCK).expect("the template lock file");
    lock.lock().expect("lock the template lock file");
    let t = Path::new(TEMPLATE);
    if t.join("ready").exists() {
        return t.to_owned();
    }
    let _ = std::fs::remove_dir_all(t);
    for sub in ["log", "run", "cache", "tls"] {
        std::fs::create_dir_all(t.join(sub)).expect("template dirs");
    }
    let log = File::create(t.join("provision.log")).expect("provision.log");
    let status = Command::new("samba-tool")
        .args(["domain", "provision"])
        .arg(format!("--targetdir={TEMPLATE}"))
        .args([
            "--realm=SAMDOM.TEST",
            "--domain=SAMDOM",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--host-name=dc1",
            "--host-ip=127.0.0.1",
        ])
        .arg(format!("--adminpass={ADMIN_PASSWORD}"))
        .args([
            "--option=interfaces = 127.0.0.1",
            "--option=bind interfaces only = yes",
            "--option=server services = s3fs, rpc, ldap, kdc, winbindd",
        ])
        .arg(format!("--option=log file = {TEMPLATE}/log/log.%m"))
        .arg(format!("--option=pid directory = {TEMPLATE}/run"))
        .arg(format!("--option=ncalrpc dir = {TEMPLATE}/run/ncalrpc"))
        .stdout(log.try_clone().expect("provision.log"))
        .stderr(log)
        .status()
        .expect("samba-tool (run scripts/test.sh, which installs samba-ad-provision)");
    assert!(
        status.success(),
        "samba-tool domain provision failed: {}",
        std::fs::read_to_string(t.join("provision.log")).unwrap_or_default()
    );
    let tls = |name: &str| format!("{TEMPLATE}/tls/{name}");
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .args(["-subj", "/CN=rotator test Samba CA"])
        .args(["-keyout", &tls("ca.key"), "-out", &tls("ca.pem")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=dc1.samdom.test",
        ])
        .args(["-keyout", &tls("key.pem"), "-out", &tls("srv.csr")]));
    std::fs::write(
        tls("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:dc1.samdom.test\n\
         extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\n",
    )
    .expect("the extensions file");
    run(Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-in",
            &tls("srv.csr"),
            "-CA",
            &tls("ca.pem"),
        ])
        .args(["-CAkey", &tls("ca.key"), "-CAcreateserial", "-days", "825"])
        .args(["-out", &tls("cert.pem"), "-extfile", &tls("ext")]));
    // Samba refuses a key file others can read.
    run(Command::new("chmod").args(["600", &tls("key.pem")]));
    // Provision drops "old password allowed period = 0" (it equals no default it knows).
    let conf = t.join("etc/smb.conf");
    let text = std::fs::read_to_string(&conf).expect("read smb.conf");
    let extra = format!(
        "[global]\n\told password allowed period = 0\n\ttls enabled = yes\n\
         \ttls keyfile = {}\n\ttls certfile = {}\n\ttls cafile = {}\n",
        tls("key.pem"),
        tls("cert.pem"),
        tls("ca.pem")
    );
    std::fs::write(&conf, text.replacen("[global]\n", &extra, 1)).expect("write smb.conf");
    // A change by the account right after a reset (the default minimum age is a day).
    run(Command::new("samba-tool")
        .args(["domain", "passwordsettings", "set", "-s"])
        .arg(&conf)
        .arg("--min-pwd-age=0"));
    std::fs::write(t.join("ready"), "").expect("mark the template ready");
    t.to_owned()
}

fn run(command: &mut Command) {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run a setup command");
    assert!(status.success(), "{command:?} failed");
}
