//! A database of its own on the machine's PostgreSQL server (127.0.0.1:5432, trust), for tests
//! that give rotator a PostgreSQL store. Dropped (with FORCE) by [`ScratchDatabase::drop_now`].
#![allow(dead_code)]

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

    /// Drops the database, closing whatever still uses it.
    pub async fn drop_now(self) {
        if let Ok(admin) = PgPool::connect(&admin_url()).await {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(AssertSqlSafe(drop)).execute(&admin).await;
            admin.close().await;
        }
    }
}
