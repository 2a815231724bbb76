//! A database of its own on the machine's PostgreSQL server (127.0.0.1:5432, trust), for tests
//! that give rotator a PostgreSQL store. Dropped (with FORCE) when the value is dropped, so a
//! failing test leaves no database behind on the shared server.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

/// The server scratch databases are created on, or `ROTATOR_TEST_POSTGRES_ADMIN_URL`.
fn admin_url() -> String {
    std::env::var("ROTATOR_TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A scratch database and its URL.
pub struct ScratchDatabase {
    /// `postgres://…/<name>`.
    pub url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates `rotator_it_<random>`.
    pub async fn create() -> Self {
        let name = format!("rotator_it_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(&admin_url())
            .await
            .expect("the machine's PostgreSQL (127.0.0.1:5432) is running");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let base = admin_url()
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .expect("the admin URL names a database");
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// A pool on the scratch database, for reading what rotator stored.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("connect")
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the test's runtime (or while it unwinds): use a runtime of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_database(&name));
            }
        })
        .join();
    }
}

/// `DROP DATABASE … WITH (FORCE)`, closing whatever still uses it; best effort.
async fn drop_database(name: &str) {
    if let Ok(admin) = PgPool::connect(&admin_url()).await {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(AssertSqlSafe(drop)).execute(&admin).await;
        admin.close().await;
    }
}
