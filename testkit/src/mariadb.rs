//! Accounts on the shared MariaDB (127.0.0.1:3306, `root` without a password), unique per test
//! and dropped when the [`Accounts`] guard drops (through the `mariadb` client, so it also runs
//! when a test panics).

use std::process::Command;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 3306;

/// A root connection to the shared server.
pub async fn root() -> MySqlConnection {
    MySqlConnectOptions::new()
        .host(HOST)
        .port(PORT)
        .username("root")
        .disable_statement_logging()
        .connect()
        .await
        .expect("root on the shared MariaDB at 127.0.0.1:3306")
}

/// Whether `user`/`password` log in to the shared server with a fresh connection.
pub async fn login(user: &str, password: &str) -> bool {
    match MySqlConnectOptions::new()
        .host(HOST)
        .port(PORT)
        .username(user)
        .password(password)
        .disable_statement_logging()
        .connect()
        .await
    {
        Ok(c) => {
            let _ = c.close().await;
            true
        }
        Err(_) => false,
    }
}

/// Runs `sql` as root.
pub async fn execute(sql: &str) {
    let mut conn = root().await;
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// A unique account name (MariaDB allows 80 characters).
pub fn unique(prefix: &str) -> String {
    format!(
        "rot_{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Accounts created by one test, dropped with the guard.
#[derive(Default)]
pub struct Accounts {
    created: Vec<(String, String)>,
}

impl Accounts {
    /// Creates `'<user>'@'<host>'` with `password` (plain names only; tests choose them).
    pub async fn create(&mut self, user: &str, host: &str, password: &str) {
        self.created.push((user.to_owned(), host.to_owned()));
        execute(&format!(
            "CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"
        ))
        .await;
    }

    /// Creates an admin able to change other accounts' passwords (global CREATE USER).
    pub async fn create_admin(&mut self, user: &str, password: &str) {
        self.create(user, "%", password).await;
        execute(&format!("GRANT CREATE USER ON *.* TO '{user}'@'%'")).await;
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        if self.created.is_empty() {
            return;
        }
        let list: Vec<String> = self
            .created
            .iter()
            .map(|(u, h)| format!("'{u}'@'{h}'"))
            .collect();
        let _ = Command::new("mariadb")
            .args(["-h", HOST, "-P", &PORT.to_string(), "-uroot", "-e"])
            .arg(format!("DROP USER IF EXISTS {}", list.join(", ")))
            .status();
    }
}
