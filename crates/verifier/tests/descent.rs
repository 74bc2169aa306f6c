//! Range digests and the top-down descents: one altered projection row among 4,096 is found
//! by comparing a few range digests and reading one leaf range; by row digests ([`locate`]) on
//! SQLite and on PostgreSQL, where the server computes them from its columns.

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use triplicate_core::Hash;
use triplicate_ledger::Ledger;
use triplicate_projection::Projection;
use triplicate_verifier::sweep::{
    descend, locate, range_digest, LeafSource, LedgerLeaves, ProjectionLeaves, RowDigestSource,
    Slot, StreamLeaves,
};
use triplicate_verifier::VerifyError;

/// Counts what crosses the store's boundary: leaves handed to the verifier, and digests asked
/// for. The digest is computed by the inner source, standing for a store that computes it
/// where its data lives and returns 32 bytes (the embedded adapters compute it by reading the
/// range; see `sweep`'s docs).
struct Counting<T> {
    inner: T,
    leaves_read: AtomicU64,
    digests: AtomicU64,
}

impl<T> Counting<T> {
    fn new(inner: T) -> Self {
        Counting {
            inner,
            leaves_read: AtomicU64::new(0),
            digests: AtomicU64::new(0),
        }
    }
}

impl<T: LeafSource> LeafSource for Counting<T> {
    async fn leaves(&self, range: Range<u64>) -> Result<Vec<Slot>, VerifyError> {
        let v = self.inner.leaves(range).await?;
        self.leaves_read
            .fetch_add(v.len() as u64, Ordering::Relaxed);
        Ok(v)
    }

    async fn digest(&self, range: Range<u64>) -> Result<Hash, VerifyError> {
        self.digests.fetch_add(1, Ordering::Relaxed);
        self.inner.digest(range).await
    }
}

impl<T: RowDigestSource> RowDigestSource for Counting<T> {
    async fn row_digests(
        &self,
        range: Range<u64>,
        parts: u32,
    ) -> Result<Vec<(u32, Hash)>, VerifyError> {
        self.digests.fetch_add(u64::from(parts), Ordering::Relaxed);
        self.inner.row_digests(range, parts).await
    }
}

const N: u64 = 4_096;

async fn populated() -> common::Env {
    let env = common::Env::new().await;
    let records: Vec<Vec<u8>> = (0..N)
        .map(|s| triplicate_stream::fixtures::event(s).record_bytes)
        .collect();
    for (k, part) in records.chunks(4_096).enumerate() {
        env.ledger.append(k as u64 * 4_096, part).unwrap();
    }
    env.copy_downstream(&records).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_altered_row_among_4096_reads_one_leaf_range() {
    let env = populated().await;
    let altered = 2_500;
    env.raw("projection.db")
        .execute_batch(&format!(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET body = body || ' (amended)' WHERE seq = {altered};"
        ))
        .unwrap();

    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&env.projection));
    let (leaf_range, fanout) = (32, 4);
    let found = descend(&ledger, &projection, 0..N, leaf_range, fanout)
        .await
        .unwrap();
    assert_eq!(found.differences.len(), 1, "{found:?}");
    let d = found.differences[0];
    assert_eq!(d.seq, altered);
    assert_eq!(
        d.left,
        Slot::Leaf(env.ledger.leaf_hashes(altered, altered + 1).unwrap()[0])
    );
    assert!(matches!(d.right, Slot::Leaf(h) if Slot::Leaf(h) != d.left));

    // log_4(4096 / 32) = 3.5: at most 5 levels of digests, `fanout` of them per level below
    // the top; one leaf range read from each side.
    let levels = 5;
    assert!(
        found.digests_compared <= 1 + fanout * (levels - 1),
        "{found:?}"
    );
    assert_eq!(found.leaf_ranges_read, 1);
    let read = projection.leaves_read.load(Ordering::Relaxed);
    assert!(read <= leaf_range, "read {read} leaves");
    assert!(read * 100 <= N, "read {read} of {N} rows: more than 1 %");
    assert_eq!(ledger.leaves_read.load(Ordering::Relaxed), read);
    assert_eq!(
        projection.digests.load(Ordering::Relaxed),
        found.digests_compared
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreeing_stores_cost_one_digest_and_the_stream_source_agrees() {
    let env = populated().await;
    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&env.projection));
    let found = descend(&ledger, &projection, 0..N, 32, 4).await.unwrap();
    assert!(found.differences.is_empty());
    assert_eq!((found.digests_compared, found.leaf_ranges_read), (1, 0));
    assert_eq!(projection.leaves_read.load(Ordering::Relaxed), 0);

    // The three sources give the same digest for the same content, and a digest covers its
    // bounds: the same slots at another start differ.
    let r = 1_000..3_000;
    let a = LedgerLeaves(&env.ledger).digest(r.clone()).await.unwrap();
    let b = ProjectionLeaves(&env.projection)
        .digest(r.clone())
        .await
        .unwrap();
    let c = StreamLeaves(&env.stream).digest(r.clone()).await.unwrap();
    assert_eq!((a, a), (b, c));
    let slots = LedgerLeaves(&env.ledger).leaves(r).await.unwrap();
    assert_ne!(range_digest(1_001, &slots), a);
    // Past the end, slots are absent, and absent differs from present.
    assert_eq!(env.projection.highest_seq().await.unwrap(), Some(N - 1));
    let tail = ProjectionLeaves(&env.projection)
        .leaves(N - 2..N + 2)
        .await
        .unwrap();
    assert!(matches!(
        tail[..],
        [Slot::Leaf(_), Slot::Leaf(_), Slot::Absent, Slot::Absent]
    ));
}

/// Asserts that `locate` found exactly `altered` (on the projection's side), compared few
/// digests and read at most one leaf range of at most `leaf_range` rows per alteration.
fn assert_located<L, P>(
    found: &triplicate_verifier::sweep::Descent,
    ledger: &Counting<L>,
    projection: &Counting<P>,
    altered: &[u64],
    leaf_range: u64,
) {
    let seqs: Vec<u64> = found.differences.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, altered, "{found:?}");
    for d in &found.differences {
        assert!(matches!(d.left, Slot::Leaf(_)));
        assert_ne!(d.left, d.right);
    }
    assert_eq!(found.leaf_ranges_read, altered.len() as u64, "{found:?}");
    let read = projection.leaves_read.load(Ordering::Relaxed);
    assert_eq!(read, found.leaves_read);
    assert!(
        read <= leaf_range * altered.len() as u64,
        "read {read} rows"
    );
    assert_eq!(ledger.leaves_read.load(Ordering::Relaxed), read);
    assert_eq!(
        projection.digests.load(Ordering::Relaxed),
        found.digests_compared
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_digests_locate_one_altered_row_among_4096_on_sqlite() {
    let env = populated().await;
    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&env.projection));
    let clean = locate(&ledger, &projection, 0..N, 32, 8).await.unwrap();
    assert!(clean.differences.is_empty());
    assert_eq!((clean.digests_compared, clean.leaves_read), (8, 0));

    env.raw("projection.db")
        .execute_batch(
            "DROP TRIGGER decisions_no_update;
             UPDATE decisions SET title = title || '!' WHERE seq = 2500;",
        )
        .unwrap();
    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&env.projection));
    let found = locate(&ledger, &projection, 0..N, 32, 8).await.unwrap();
    assert_located(&found, &ledger, &projection, &[2_500], 32);
    assert!(found.leaves_read * 100 <= N, "more than 1 % read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_digests_locate_altered_and_missing_rows_on_postgres() {
    use sqlx::ConnectOptions;
    let env = populated().await;
    let db = triplicate_projection::testkit::PgTestDb::create().await;
    let pg = db
        .projection(Some(triplicate_projection::PG_WRITER_ROLE))
        .await;
    let records = env.ledger.entries(0, N).unwrap();
    for part in records.chunks(1_000) {
        pg.apply(part.to_vec()).await.unwrap();
    }
    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&pg));
    let clean = locate(&ledger, &projection, 0..N, 32, 16).await.unwrap();
    assert!(clean.differences.is_empty());
    assert_eq!((clean.digests_compared, clean.leaves_read), (16, 0));

    // The tamperer the verifier exists for: a superuser with the triggers switched off.
    let mut c = db.connect_options().connect().await.unwrap();
    sqlx::raw_sql(
        "SET session_replication_role = replica;
         UPDATE decisions SET payload = '{\"amount\":1}' WHERE seq = 3001;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&pg));
    let found = locate(&ledger, &projection, 0..N, 32, 16).await.unwrap();
    assert_located(&found, &ledger, &projection, &[3_001], 32);
    assert!(found.leaves_read * 100 <= N, "more than 1 % read");

    // A second change elsewhere, this time to an approval: both are found, each in its range.
    sqlx::raw_sql("DELETE FROM approvals WHERE seq = 17 AND position = 0;")
        .execute(&mut c)
        .await
        .unwrap();
    let ledger = Counting::new(LedgerLeaves(&env.ledger));
    let projection = Counting::new(ProjectionLeaves(&pg));
    let found = locate(&ledger, &projection, 0..N, 32, 16).await.unwrap();
    assert_located(&found, &ledger, &projection, &[17, 3_001], 32);
    // A range past the ledger's end holds nothing on either side.
    let past = locate(&ledger, &projection, N..N + 500, 32, 16)
        .await
        .unwrap();
    assert!(past.differences.is_empty());
}
