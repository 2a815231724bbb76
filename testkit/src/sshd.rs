//! A private OpenSSH server on a free loopback port (Debian `openssh-server`), and real local
//! accounts for it, for the `unix-linux-local-account` driver.
//!
//! - [`Sshd`]: `sshd -D -e` with its own config and an ed25519 host key made in a temp dir,
//!   `UsePAM yes`, password and key logins, and `AllowUsers rotu_*` so that only the accounts
//!   tests create can log in. Ready when its port accepts; stopped by PID when the last holder
//!   drops it. One per test binary: [`Sshd::shared`].
//! - [`UnixUser`]: an account `rotu_<random>` made with `useradd` (retried while another test
//!   holds the `/etc/passwd` lock), its password set with `chpasswd` on stdin, removed with
//!   `userdel -r` on drop, with its sudoers drop-in when it has one.
//!
//! The accounts are real accounts of the machine (tests run as root), hence the prefix and the
//! removal on drop. A wrong-password login costs about 3 s (pam_unix's failure delay).

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The prefix of every test account (and of `AllowUsers`).
pub const USER_PREFIX: &str = "rotu_";

/// A running sshd.
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    host_key: String,
    host_fingerprint: String,
}

impl Sshd {
    /// The server shared by the tests of this binary (started by the first caller, stopped when
    /// the last holder drops it).
    pub async fn shared() -> Arc<Self> {
        static SHARED: tokio::sync::Mutex<Weak<Sshd>> = tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(tokio::task::block_in_place(Self::start));
        *slot = Arc::downgrade(&s);
        s
    }

    /// Starts a server and waits until its port accepts connections.
    pub fn start() -> Self {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "no /usr/sbin/sshd: run scripts/test.sh, which installs openssh-server and sudo"
        );
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("rotator-sshd-")
            .tempdir()
            .expect("a temp dir");
        let host_key = dir.path().join("host_ed25519");
        keygen(&host_key, "");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {pid}\n\
                 UsePAM yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin no\nAllowUsers {USER_PREFIX}*\n\
                 MaxAuthTries 10\nMaxStartups 100\nStrictModes no\nLogLevel VERBOSE\n",
                key = host_key.display(),
                pid = dir.path().join("sshd.pid").display(),
            ),
        )
        .expect("write sshd_config");
        let log = std::fs::File::create(dir.path().join("log")).expect("the log file");
        // The absolute path: sshd re-executes itself.
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).expect("host key");
        let host_key_line = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let host_fingerprint = fingerprint(&host_key.with_extension("pub"));
        let mut sshd = Self {
            dir,
            port,
            child,
            host_key: host_key_line,
            host_fingerprint,
        };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}): {}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "sshd not ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host public key, `ssh-ed25519 AAAA…`.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// The host key's fingerprint, `SHA256:…`.
    pub fn host_fingerprint(&self) -> &str {
        &self.host_fingerprint
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// A new ed25519 key pair in the server's temp dir (`passphrase` may be empty): the private
    /// key file and the public key line.
    pub fn client_key(&self, name: &str, passphrase: &str) -> (PathBuf, String) {
        let path = self.dir.path().join(name);
        keygen(&path, passphrase);
        let public = std::fs::read_to_string(path.with_extension("pub")).expect("client key");
        (path, public.trim().to_owned())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path, passphrase: &str) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "rotator-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client; run scripts/test.sh)");
    assert!(status.success(), "ssh-keygen {}", path.display());
}

fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .expect("ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_owned()
}

/// Runs `program` with `stdin`, retrying while another process holds the account files' lock.
fn run_locked(program: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("stdin");
        }
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("lock") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A local account `rotu_<random>`, removed (with its home and sudoers drop-in) on drop.
pub struct UnixUser {
    name: String,
    sudoers: Option<PathBuf>,
}

impl UnixUser {
    /// Creates the account with a home, a bash shell and `password`.
    pub fn create(password: &str) -> Self {
        let name = format!("{USER_PREFIX}{:08x}", rand::random::<u32>());
        let out = run_locked("useradd", &["-m", "-s", "/bin/bash", &name], "");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = Self {
            name,
            sudoers: None,
        };
        user.set_password(password);
        user
    }

    /// The account name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the password as root (chpasswd, on stdin).
    pub fn set_password(&self, password: &str) {
        let out = run_locked("chpasswd", &[], &format!("{}:{password}\n", self.name));
        assert!(
            out.status.success(),
            "chpasswd {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The password hash field of `/etc/shadow`: changes exactly when the password does.
    pub fn shadow_hash(&self) -> String {
        let shadow = std::fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
        shadow
            .lines()
            .find_map(|l| {
                let mut fields = l.split(':');
                (fields.next() == Some(self.name.as_str()))
                    .then(|| fields.next().unwrap_or_default().to_owned())
            })
            .unwrap_or_else(|| panic!("{} not in /etc/shadow", self.name))
    }

    /// Lets `public_key` (an `authorized_keys` line) log in as this account.
    pub fn authorize_key(&self, public_key: &str) {
        let ssh = Path::new("/home").join(&self.name).join(".ssh");
        std::fs::create_dir_all(&ssh).expect(".ssh");
        std::fs::write(ssh.join("authorized_keys"), format!("{public_key}\n"))
            .expect("authorized_keys");
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", self.name))
            .arg(&ssh)
            .status()
            .expect("chown");
        assert!(status.success());
    }

    /// Lets the account run `/usr/sbin/chpasswd` as root through sudo, with or without its
    /// password (a drop-in in `/etc/sudoers.d`, removed on drop).
    pub fn allow_sudo_chpasswd(&mut self, nopasswd: bool) {
        let path = Path::new("/etc/sudoers.d").join(&self.name);
        let tag = if nopasswd { "NOPASSWD: " } else { "" };
        std::fs::write(
            &path,
            format!("{} ALL=(root) {tag}/usr/sbin/chpasswd\n", self.name),
        )
        .expect("sudoers drop-in");
        let status = Command::new("chmod")
            .arg("0440")
            .arg(&path)
            .status()
            .expect("chmod");
        assert!(status.success());
        self.sudoers = Some(path);
    }
}

impl Drop for UnixUser {
    fn drop(&mut self) {
        if let Some(path) = self.sudoers.take() {
            let _ = std::fs::remove_file(path);
        }
        // -f: an sshd session of the account still being torn down must not keep it.
        let _ = run_locked("userdel", &["-f", "-r", &self.name], "");
    }
}
