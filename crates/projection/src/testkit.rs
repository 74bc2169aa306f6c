//! Test support (feature `testkit`): each PostgreSQL test gets its own database, created fresh,
//! migrated with the real `migrations/postgres/` (or not, to test upgrades), and dropped when
//! the test ends (also when it panics), so tests run in parallel and leave nothing behind. The
//! roles the migrations create are cluster-wide and shared by every test database, as they are
//! in production.
//!
//! There is no skipping: when no server answers, [`PgTestDb::create`] panics and says how to
//! get one.

#![allow(clippy::expect_used)]

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::{PgOptions, PgProjection};

/// The environment variable naming the admin URL tests use.
pub const PG_URL_ENV: &str = "TRIPLICATE_TEST_PG_URL";
/// The admin URL when the variable is unset.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL from the environment, or the default.
pub fn admin_url() -> String {
    std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A fresh, migrated database; dropped on drop.
#[derive(Debug)]
pub struct PgTestDb {
    name: String,
    admin: PgConnectOptions,
    owner: PgPool,
}

impl PgTestDb {
    /// Creates and migrates a database on the server at [`admin_url`]. Panics with a message
    /// saying what to do when the server cannot be reached.
    pub async fn create() -> PgTestDb {
        PgTestDb::create_at(&admin_url()).await
    }

    /// Like [`PgTestDb::create`] with an explicit admin URL.
    pub async fn create_at(url: &str) -> PgTestDb {
        let db = PgTestDb::create_unmigrated_at(url).await;
        PgProjection::migrate(&db.owner)
            .await
            .unwrap_or_else(|e| panic!("migrate test database {}: {e}", db.name));
        db
    }

    /// A fresh database without the migrations applied (for testing upgrades: apply some of
    /// them, then [`PgProjection::migrate`]).
    pub async fn create_unmigrated() -> PgTestDb {
        PgTestDb::create_unmigrated_at(&admin_url()).await
    }

    async fn create_unmigrated_at(url: &str) -> PgTestDb {
        let admin = PgConnectOptions::from_str(url)
            .unwrap_or_else(|e| panic!("{PG_URL_ENV}={url:?} is not a PostgreSQL URL: {e}"));
        let mut conn = admin.connect().await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {} ({e}). The projection's PostgreSQL tests \
                     need a server and are never skipped: run ./scripts/test.sh (it starts or \
                     installs one), or start one and set {PG_URL_ENV} to an admin URL.",
                redact(url)
            )
        });
        let name = format!("triplicate_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
        let _ = conn.close().await;
        PgTestDb {
            owner: PgPoolOptions::new()
                .max_connections(4)
                .connect_with(admin.clone().database(&name))
                .await
                .unwrap_or_else(|e| panic!("connect to test database {name}: {e}")),
            name,
            admin,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options for this database as the admin user (who owns the schema).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }

    /// A pool connected as the admin user, the schema's owner.
    pub fn owner_pool(&self) -> &PgPool {
        &self.owner
    }

    /// A projection handle acting as `role` (`SET ROLE` on each connection), or as the owner.
    pub async fn projection(&self, role: Option<&str>) -> PgProjection {
        let options = PgOptions {
            role: role.map(str::to_owned),
            ..PgOptions::default()
        };
        PgProjection::connect_with(self.connect_options(), options)
            .await
            .unwrap_or_else(|e| panic!("connect to test database {}: {e}", self.name))
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime does the work. `WITH (FORCE)` ends connections the test left open.
        let (name, admin) = (self.name.clone(), self.admin.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            rt.block_on(async move {
                match admin.connect().await {
                    Ok(mut c) => {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        if let Err(e) = sqlx::query(&sql).execute(&mut c).await {
                            tracing::warn!(%name, error = %e, "could not drop the test database");
                        }
                        let _ = c.close().await;
                    }
                    Err(e) => tracing::warn!(%name, error = %e, "could not drop the test database"),
                }
            });
        });
        let _ = done.join();
    }
}

/// A slice of a range read's fetched data (a benchmark baseline: re-deriving alone, in
/// memory; see [`PgProjection::fetch_for_baseline`]).
#[derive(Debug)]
pub struct FetchedSlice(pub(crate) crate::pgrows::Fetched);

impl FetchedSlice {
    /// Decodes the rows and re-derives every record on up to `threads` threads; returns how
    /// many re-derived to bytes.
    pub fn rederive(self, threads: usize) -> usize {
        self.0
            .rederive(threads)
            .expect("fetched data decodes")
            .iter()
            .filter(|r| r.bytes().is_some())
            .count()
    }
}

/// Records' rows encoded as an apply writes them (binary `COPY` tuples), without validation,
/// in batches (a benchmark baseline: the database's share of an apply).
#[derive(Debug)]
pub struct PgCopyRows(Vec<crate::pgrows::EncodedChunk>);

impl PgCopyRows {
    /// Encodes `records` in batches of `batch`.
    pub fn encode(records: &[triplicate_core::Record], batch: usize) -> PgCopyRows {
        PgCopyRows(
            records
                .chunks(batch)
                .enumerate()
                .map(|(i, c)| {
                    crate::pgrows::encode_unvalidated(i * batch, c).expect("records encode")
                })
                .collect(),
        )
    }

    /// Writes each batch with the apply's `COPY` statements in one transaction of its own, on
    /// one connection: no validation, no lookups, no lock.
    pub async fn copy_into(&self, pool: &PgPool) {
        let mut conn = pool.acquire().await.expect("a connection");
        for chunk in &self.0 {
            let mut tx = conn.begin().await.expect("begin");
            crate::postgres::write_chunk(&mut tx, chunk, 0)
                .await
                .map_err(|e| e.0)
                .expect("COPY the rows");
            tx.commit().await.expect("commit");
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
