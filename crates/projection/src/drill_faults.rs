//! Faults that recovery drills inflict on a **scratch copy** of the projection: losing it, and
//! making it unreachable for writers for a while. Never point these at a deployment's own
//! database: they exist so the service's drills (`triplicate drill run`) can prove that a lost
//! or unreachable projection is detected and recovered from, on real databases, without SQL
//! leaving this crate.

use std::path::Path;

use crate::ProjectionError;

fn unavailable(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Unavailable(e.to_string())
}

/// Removes `<data_dir>/projection.db` and its WAL and shared-memory files (no handle may be
/// open on it).
pub fn remove_sqlite(data_dir: &Path) -> Result<(), ProjectionError> {
    for name in ["projection.db", "projection.db-wal", "projection.db-shm"] {
        let p = data_dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable(format!("remove {}: {e}", p.display()))),
        }
    }
    Ok(())
}

/// Drops everything in the `public` schema of the scratch database at `owner_url` (and the
/// migrations' bookkeeping), as if the database had been lost and recreated empty.
pub async fn drop_postgres(owner_url: &str) -> Result<(), ProjectionError> {
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(owner_url)
        .await
        .map_err(unavailable)?;
    for stmt in [
        "DROP SCHEMA public CASCADE",
        "CREATE SCHEMA public",
        "DROP TABLE IF EXISTS _sqlx_migrations",
    ] {
        sqlx::query(stmt)
            .execute(&owner)
            .await
            .map_err(unavailable)?;
    }
    owner.close().await;
    Ok(())
}

/// Another session holding the projection's write lock, so the service's writes wait and
/// time out as they would against a database that is down. Dropping it without
/// [`WriteLock::release`] releases it too (the session ends).
#[derive(Debug)]
pub struct WriteLock {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Sqlite {
        release: std::sync::mpsc::Sender<()>,
        done: tokio::task::JoinHandle<()>,
    },
    Postgres {
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
        pool: sqlx::PgPool,
    },
}

impl WriteLock {
    /// `BEGIN EXCLUSIVE` on `<data_dir>/projection.db` from a connection of its own.
    pub async fn sqlite(data_dir: &Path) -> Result<WriteLock, ProjectionError> {
        let db = data_dir.join("projection.db");
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let done = tokio::task::spawn_blocking(move || {
            let held = rusqlite::Connection::open(&db)
                .and_then(|c| c.execute_batch("BEGIN EXCLUSIVE").map(|()| c))
                .map_err(|e| e.to_string());
            let _ = locked_tx.send(held.as_ref().map(|_| ()).map_err(Clone::clone));
            if let Ok(c) = held {
                let _ = wait.recv();
                let _ = c.execute_batch("ROLLBACK");
            }
        });
        locked_rx.await.map_err(unavailable)?.map_err(unavailable)?;
        Ok(WriteLock {
            inner: Inner::Sqlite { release, done },
        })
    }

    /// `LOCK TABLE decisions, approvals IN ACCESS EXCLUSIVE MODE` in a transaction of its own,
    /// as the owner at `owner_url`.
    pub async fn postgres(owner_url: &str) -> Result<WriteLock, ProjectionError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(owner_url)
            .await
            .map_err(unavailable)?;
        let mut tx = pool.begin().await.map_err(unavailable)?;
        sqlx::query("LOCK TABLE decisions, approvals IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Ok(WriteLock {
            inner: Inner::Postgres { tx, pool },
        })
    }

    /// What holds the lock, for reports.
    pub fn describe(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite { .. } => {
                "another session holds projection.db's write lock (BEGIN EXCLUSIVE)"
            }
            Inner::Postgres { .. } => {
                "another session holds ACCESS EXCLUSIVE locks on decisions and approvals"
            }
        }
    }

    /// Ends the session holding the lock.
    pub async fn release(self) -> Result<(), ProjectionError> {
        match self.inner {
            Inner::Sqlite { release, done } => {
                let _ = release.send(());
                done.await.map_err(unavailable)
            }
            Inner::Postgres { tx, pool } => {
                tx.rollback().await.map_err(unavailable)?;
                pool.close().await;
                Ok(())
            }
        }
    }
}
