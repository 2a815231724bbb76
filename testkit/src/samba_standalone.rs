//! A private standalone Samba file server (`smbd`, tdbsam "local accounts") for the
//! `windows-local-account` driver (`test-peers.md` §12): on a free loopback port, with its
//! config, passdb, locks and logs in a temp dir, Unix users faked with nss_wrapper (so
//! `/etc/passwd` is never touched), ready when an SMB session setup as the admin works, and
//! stopped by PID on drop together with the `samba-dcerpcd` / `rpcd_*` it spawned on demand
//! (they detach from smbd, PPID 1). SAMR is reached through the named pipe over SMB on that
//! port. One per test binary: [`SambaStandalone::shared`].
//!
//! The admin is `root` with an smbpasswd entry. Accounts come from a pool of Unix names created
//! in the fake passwd before smbd starts (a name added while smbd runs cannot log on);
//! [`SambaStandalone::add_user`] hands out the next one and gives it a passdb entry.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The admin account (an smbpasswd entry for uid 0: allowed SamrSetUserInfo2).
pub const ADMIN: &str = "root";
/// The admin's password.
pub const ADMIN_PASSWORD: &str = "Root-Pass-1!";
/// The nss_wrapper library preloaded into smbd and smbpasswd (Debian `libnss-wrapper`).
const NSS_WRAPPER: &str = "libnss_wrapper.so";
/// How many accounts a test binary may create.
const POOL: usize = 40;

/// A running standalone smbd.
pub struct SambaStandalone {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    next_user: AtomicUsize,
}

impl SambaStandalone {
    /// The server shared by the tests of this binary (started by the first caller, stopped
    /// when the last holder drops it).
    pub async fn shared() -> Arc<Self> {
        static SHARED: tokio::sync::Mutex<Weak<SambaStandalone>> =
            tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(
            tokio::task::spawn_blocking(Self::start)
                .await
                .expect("smbd started"),
        );
        *slot = Arc::downgrade(&s);
        s
    }

    /// Writes the config and fake users, adds the admin, starts smbd and waits until the admin
    /// logs in.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotator-smbd-")
            .tempdir()
            .expect("a temp dir");
        let t = dir.path();
        for sub in ["etc", "private", "lock", "state", "cache", "run", "log"] {
            std::fs::create_dir_all(t.join(sub)).expect("mkdir");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = t.display();
        let conf = format!(
            "[global]
\tworkgroup = WORKGROUP
\tnetbios name = FS1
\tserver role = standalone server
\tinterfaces = 127.0.0.1
\tbind interfaces only = yes
\tsmb ports = {port}
\tdisable netbios = yes
\tpassdb backend = tdbsam:{d}/private/passdb.tdb
\tprivate dir = {d}/private
\tlock directory = {d}/lock
\tstate directory = {d}/state
\tcache directory = {d}/cache
\tpid directory = {d}/run
\tncalrpc dir = {d}/run/ncalrpc
\tlog file = {d}/log/log.%m
\tlogging = file
\tunix password sync = no
\tpam password change = no
\tload printers = no
\tprinting = bsd
\tprintcap name = /dev/null
\tdisable spoolss = yes
"
        );
        std::fs::write(t.join("etc/smb.conf"), conf).expect("smb.conf");
        // nobody/nogroup: without them smbd stops with "failed to setup guest info".
        let mut passwd = String::from(
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        );
        let mut group = String::from("root:x:0:\nnogroup:x:65534:\n");
        for i in 0..POOL {
            let (name, id) = (pool_name(i), 3000 + i);
            passwd.push_str(&format!(
                "{name}:x:{id}:{id}:test:/nonexistent:/usr/sbin/nologin\n"
            ));
            group.push_str(&format!("{name}:x:{id}:\n"));
        }
        std::fs::write(t.join("passwd"), passwd).expect("passwd");
        std::fs::write(t.join("group"), group).expect("group");
        smbpasswd_add(t, ADMIN, ADMIN_PASSWORD);
        let log = std::fs::File::create(t.join("smbd.out")).expect("smbd.out");
        let mut smbd = Command::new("smbd");
        smbd.arg("-s")
            .arg(t.join("etc/smb.conf"))
            .args(["-F", "--no-process-group"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        wrap_env(t, &mut smbd);
        // Its own process group: a Ctrl-C of the test run does not race our stop.
        std::os::unix::process::CommandExt::process_group(&mut smbd, 0);
        let child = smbd.spawn().unwrap_or_else(|e| {
            panic!("cannot start smbd ({e}); run scripts/test.sh, which installs samba, smbclient and libnss-wrapper")
        });
        let mut samba = Self {
            dir,
            port,
            child,
            next_user: AtomicUsize::new(0),
        };
        samba.wait_ready();
        samba
    }

    /// The TCP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's smb.conf.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("etc/smb.conf")
    }

    /// A new account with `password` (a pool name never handed out before in this server).
    pub fn add_user(&self, password: &str) -> String {
        let i = self.next_user.fetch_add(1, Ordering::SeqCst);
        assert!(i < POOL, "the pool of {POOL} test accounts is used up");
        let name = pool_name(i);
        smbpasswd_add(self.dir.path(), &name, password);
        name
    }

    /// Whether an SMB session setup as `user` with `password` works (no domain), checked with
    /// `smbclient -L` and a 0600 credentials file, as the driver does.
    pub fn login_works(&self, user: &str, password: &str) -> bool {
        let mut auth = tempfile::NamedTempFile::new().expect("auth file");
        write!(auth, "username = {user}\npassword = {password}\n").expect("write");
        auth.flush().expect("flush");
        Command::new("smbclient")
            .arg("-L")
            .arg("//127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-A")
            .arg(auth.path())
            .args([
                "--option=client min protocol=SMB3",
                "--option=client smb encrypt=required",
            ])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Readiness: the admin logs in over SMB; gives up after about 30 s or when smbd exits.
    fn wait_ready(&mut self) {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "smbd exited ({status}) before it was ready; see {}/smbd.out and log/",
                    self.dir.path().display()
                );
            }
            if self.login_works(ADMIN, ADMIN_PASSWORD) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "smbd did not become ready; see {}/log",
            self.dir.path().display()
        );
    }
}

impl Drop for SambaStandalone {
    fn drop(&mut self) {
        terminate(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        // samba-dcerpcd (and its rpcd_* workers) outlive smbd: stop them by their pid file.
        let run = self.dir.path().join("run");
        if let Some(pid) = read_pid(&run.join("samba-dcerpcd.pid"))
            && is_samba(pid)
        {
            let workers = children_of(pid);
            terminate(pid);
            for w in workers.into_iter().filter(|&w| is_samba(w)) {
                terminate(w);
            }
        }
    }
}

/// `smbpasswd -a` of `user` in the private passdb, with the nss_wrapper users.
fn smbpasswd_add(dir: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("smbpasswd");
    cmd.arg("-c")
        .arg(dir.join("etc/smb.conf"))
        .args(["-s", "-a", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    wrap_env(dir, &mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run smbpasswd ({e}); run scripts/test.sh"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("smbpasswd");
    assert!(
        out.status.success(),
        "smbpasswd -a {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The environment smbd and smbpasswd run in: fake users, and no winbindd (a DC's on the
/// same machine would be asked to map SIDs otherwise).
fn wrap_env(t: &Path, cmd: &mut Command) {
    cmd.env("LD_PRELOAD", NSS_WRAPPER)
        .env("NSS_WRAPPER_PASSWD", t.join("passwd"))
        .env("NSS_WRAPPER_GROUP", t.join("group"))
        .env("_NO_WINBINDD", "1");
}

fn pool_name(i: usize) -> String {
    format!("wla{i:02}")
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live Samba process (a pid file can outlive its process).
fn is_samba(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        String::from_utf8_lossy(&c).contains("samba-dcerpcd")
            || String::from_utf8_lossy(&c).contains("rpcd_")
    })
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                // Field 4 (PPID) follows the parenthesised command name.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// SIGTERM, then SIGKILL after about 5 s.
fn terminate(pid: u32) {
    let signal = |s: &str| {
        let _ = Command::new("kill")
            .args([s, &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    };
    signal("-TERM");
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal("-KILL");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}
