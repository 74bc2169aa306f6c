//! The backends the configuration chose, behind one type per store trait.
//!
//! The store traits return `impl Future` (so backends need no boxing), which makes them
//! unusable as trait objects; an enum per trait dispatches instead, as neon's
//! `GenericRemoteStorage` does. Adding a backend (KurrentDB, JetStream) adds a variant here and
//! nowhere else.

// The impls spell out the traits' `impl Future + Send` signatures so a backend whose future is
// not `Send` fails here, at the dispatch, rather than in a distant caller.
#![allow(clippy::manual_async_fn)]

use std::future::Future;

use futures::stream::BoxStream;
use triplicate_core::{CanonicalProof, Record};
use triplicate_projection::drills::{DrillStatus, DrillStore, DrillSummary, StoredDrill};
use triplicate_projection::reports::{
    ActionRecord, FullReport, ReportStore, ReportSummary, ReviewRow, StoredReport,
};
use triplicate_projection::{
    ApplyOutcome, DecisionQuery, Page as ProjectionPage, PgProjection, Projection, ProjectionError,
    RederivedRecord, RemovalOutcome, RemovalRequest, RepairOutcome, RepairRequest,
    SqliteProjection,
};
use triplicate_stream::{
    AppendOutcome, AppendRequest, EventStream, Limits, NatsStream, Page, Position, SqliteStream,
    StoredEvent, StreamError, StreamId,
};
use uuid::Uuid;

/// The event stream in use.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamBackend {
    /// `<data-dir>/stream.db`.
    Sqlite(SqliteStream),
    /// A NATS JetStream stream.
    Nats(NatsStream),
    /// A KurrentDB / EventStoreDB server.
    #[cfg(feature = "kurrentdb")]
    Kurrent(triplicate_stream::KurrentStream),
}

impl StreamBackend {
    /// A short name for logs and status (`sqlite`).
    pub fn name(&self) -> &'static str {
        match self {
            StreamBackend::Sqlite(_) => "sqlite",
            StreamBackend::Nats(_) => "nats",
            #[cfg(feature = "kurrentdb")]
            StreamBackend::Kurrent(_) => "kurrentdb",
        }
    }
}

impl EventStream for StreamBackend {
    fn limits(&self) -> Limits {
        match self {
            StreamBackend::Sqlite(s) => s.limits(),
            StreamBackend::Nats(s) => s.limits(),
            #[cfg(feature = "kurrentdb")]
            StreamBackend::Kurrent(s) => s.limits(),
        }
    }

    fn append(
        &self,
        batch: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<AppendOutcome, StreamError>> + Send {
        async move {
            match self {
                StreamBackend::Sqlite(s) => s.append(batch).await,
                StreamBackend::Nats(s) => s.append(batch).await,
                #[cfg(feature = "kurrentdb")]
                StreamBackend::Kurrent(s) => s.append(batch).await,
            }
        }
    }

    fn read_stream(
        &self,
        stream_id: &StreamId,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StreamError>> + Send {
        let stream_id = *stream_id;
        async move {
            match self {
                StreamBackend::Sqlite(s) => s.read_stream(&stream_id).await,
                StreamBackend::Nats(s) => s.read_stream(&stream_id).await,
                #[cfg(feature = "kurrentdb")]
                StreamBackend::Kurrent(s) => s.read_stream(&stream_id).await,
            }
        }
    }

    fn read_all(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StreamError>> + Send {
        async move {
            match self {
                StreamBackend::Sqlite(s) => s.read_all(after, limit).await,
                StreamBackend::Nats(s) => s.read_all(after, limit).await,
                #[cfg(feature = "kurrentdb")]
                StreamBackend::Kurrent(s) => s.read_all(after, limit).await,
            }
        }
    }

    fn subscribe(
        &self,
        after: Option<Position>,
    ) -> BoxStream<'static, Result<StoredEvent, StreamError>> {
        match self {
            StreamBackend::Sqlite(s) => s.subscribe(after),
            StreamBackend::Nats(s) => s.subscribe(after),
            #[cfg(feature = "kurrentdb")]
            StreamBackend::Kurrent(s) => s.subscribe(after),
        }
    }

    fn highest_seq(&self) -> impl Future<Output = Result<Option<u64>, StreamError>> + Send {
        async move {
            match self {
                StreamBackend::Sqlite(s) => s.highest_seq().await,
                StreamBackend::Nats(s) => s.highest_seq().await,
                #[cfg(feature = "kurrentdb")]
                StreamBackend::Kurrent(s) => s.highest_seq().await,
            }
        }
    }
}

/// The projection in use.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProjectionBackend {
    /// `<data-dir>/projection.db`.
    Sqlite(SqliteProjection),
    /// PostgreSQL, connected as `triplicate_writer`.
    Postgres(PgProjection),
}

impl ProjectionBackend {
    /// A short name for logs and status (`sqlite`, `postgres`).
    pub fn name(&self) -> &'static str {
        match self {
            ProjectionBackend::Sqlite(_) => "sqlite",
            ProjectionBackend::Postgres(_) => "postgres",
        }
    }
}

impl Projection for ProjectionBackend {
    fn apply(
        &self,
        batch: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<ApplyOutcome, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.apply(batch).await,
                ProjectionBackend::Postgres(p) => p.apply(batch).await,
            }
        }
    }

    fn apply_proven(
        &self,
        batch: Vec<Vec<u8>>,
        proofs: Vec<Option<CanonicalProof>>,
    ) -> impl Future<Output = Result<ApplyOutcome, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.apply_proven(batch, proofs).await,
                ProjectionBackend::Postgres(p) => p.apply_proven(batch, proofs).await,
            }
        }
    }

    fn decision(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Record>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.decision(id).await,
                ProjectionBackend::Postgres(p) => p.decision(id).await,
            }
        }
    }

    fn query(
        &self,
        query: &DecisionQuery,
    ) -> impl Future<Output = Result<ProjectionPage, ProjectionError>> + Send {
        let query = query.clone();
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.query(&query).await,
                ProjectionBackend::Postgres(p) => p.query(&query).await,
            }
        }
    }

    fn record_bytes(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<RederivedRecord>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.record_bytes(start, end).await,
                ProjectionBackend::Postgres(p) => p.record_bytes(start, end).await,
            }
        }
    }

    fn highest_seq(&self) -> impl Future<Output = Result<Option<u64>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.highest_seq().await,
                ProjectionBackend::Postgres(p) => p.highest_seq().await,
            }
        }
    }

    fn repair(
        &self,
        request: RepairRequest,
    ) -> impl Future<Output = Result<RepairOutcome, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.repair(request).await,
                ProjectionBackend::Postgres(p) => p.repair(request).await,
            }
        }
    }
    fn remove_from(
        &self,
        request: RemovalRequest,
    ) -> impl Future<Output = Result<RemovalOutcome, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.remove_from(request).await,
                ProjectionBackend::Postgres(p) => p.remove_from(request).await,
            }
        }
    }
}

impl ReportStore for ProjectionBackend {
    fn store_report(
        &self,
        report: StoredReport,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.store_report(report).await,
                ProjectionBackend::Postgres(p) => p.store_report(report).await,
            }
        }
    }

    fn reports(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ReportSummary>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.reports(before, limit).await,
                ProjectionBackend::Postgres(p) => p.reports(before, limit).await,
            }
        }
    }

    fn report(
        &self,
        run_id: Uuid,
    ) -> impl Future<Output = Result<Option<FullReport>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.report(run_id).await,
                ProjectionBackend::Postgres(p) => p.report(run_id).await,
            }
        }
    }

    fn action(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<ActionRecord>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.action(id).await,
                ProjectionBackend::Postgres(p) => p.action(id).await,
            }
        }
    }

    fn record_review(
        &self,
        review: ReviewRow,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.record_review(review).await,
                ProjectionBackend::Postgres(p) => p.record_review(review).await,
            }
        }
    }
}

impl DrillStore for ProjectionBackend {
    fn store_drill(
        &self,
        drill: StoredDrill,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.store_drill(drill).await,
                ProjectionBackend::Postgres(p) => p.store_drill(drill).await,
            }
        }
    }

    fn drills(
        &self,
        before: Option<Uuid>,
        limit: u32,
        scenario: Option<String>,
    ) -> impl Future<Output = Result<Vec<DrillSummary>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.drills(before, limit, scenario).await,
                ProjectionBackend::Postgres(p) => p.drills(before, limit, scenario).await,
            }
        }
    }

    fn drill(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredDrill>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.drill(id).await,
                ProjectionBackend::Postgres(p) => p.drill(id).await,
            }
        }
    }

    fn drill_status(
        &self,
    ) -> impl Future<Output = Result<Vec<DrillStatus>, ProjectionError>> + Send {
        async move {
            match self {
                ProjectionBackend::Sqlite(p) => p.drill_status().await,
                ProjectionBackend::Postgres(p) => p.drill_status().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use triplicate_projection::conformance_drills;
    use triplicate_projection::testkit::PgTestDb;
    use triplicate_projection::PG_WRITER_ROLE;

    use super::*;

    // The dispatch passes every call and its arguments through: the drill conformance suite,
    // through the enum, on each backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drills_dispatch_to_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProjectionBackend::Sqlite(SqliteProjection::open(dir.path()).await.unwrap());
        conformance_drills::run(&p).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drills_dispatch_to_postgres() {
        let db = PgTestDb::create().await;
        let p = ProjectionBackend::Postgres(db.projection(Some(PG_WRITER_ROLE)).await);
        conformance_drills::run(&p).await;
    }
}
