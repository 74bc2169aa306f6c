//! The verifier's range read: each record's bytes written straight from its columns.
//!
//! The general path (`load` into owned [`RecordRows`](crate::rows::RecordRows), then
//! `rederive`) copies every column into a `String` or `Vec`, builds an owned `Record` from them
//! and writes it; on a 1,000,000-record sweep that was over half of the cross-verifier's CPU.
//! Here the three tables are read by three cursors stepping together in seq order; a record's
//! approvals and attachments (small) are copied into buffers reused from record to record, and
//! its decision row (the large columns) is written where SQLite holds it, through a
//! [`RecordView`] and core's record writer, the one `Record::to_bytes` uses.
//!
//! The fast path takes only rows that are plainly a record: the column types the schema
//! declares, positions `0..n`, ids, key ids, algorithms and times that parse, a payload that is
//! its own RFC 8785 text. Anything else (a damaged or tampered row, a payload with an unusual
//! number) is re-read through the general path, so what such rows are judged to be, and the
//! reasons given, are exactly the general path's. A test checks both paths agree on every
//! record of a projection with rows damaged in each such way.

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use triplicate_core::{
    Algorithm, ApprovalView, AttachmentView, DecisionView, KeyIdRef, NotaryView, PayloadView,
    RecordView, Timestamp,
};
use uuid::Uuid;

use super::{join_time, load, storage, Select};
use crate::{ProjectionError, Rederived, RederivedRecord};

/// 2^53: what a seq or size may reach (integers beyond it do not survive JCS exactly).
const SAFE_INTEGER: i64 = 1 << 53;

/// One approvals row, copied out of its cursor (the row is gone once the cursor moves on).
#[derive(Default)]
struct ApprovalCopy {
    seq: i64,
    position: i64,
    key_id: String,
    alg: String,
    signature: Vec<u8>,
    signed_at: i128,
    /// Every column held the type the schema declares.
    typed: bool,
}

/// One attachments row, copied out of its cursor.
#[derive(Default)]
struct AttachmentCopy {
    seq: i64,
    position: i64,
    sha256: Vec<u8>,
    media_type: String,
    size: i64,
    name: Option<String>,
    typed: bool,
    /// `sha256` as lowercase hex, filled when the record is written.
    hex: String,
}

fn text_into(v: ValueRef<'_>, into: &mut String) -> bool {
    into.clear();
    match v {
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => {
                into.push_str(s);
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}

fn blob_into(v: ValueRef<'_>, into: &mut Vec<u8>) -> bool {
    into.clear();
    match v {
        ValueRef::Blob(b) => {
            into.extend_from_slice(b);
            true
        }
        _ => false,
    }
}

fn int(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    }
}

fn text(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

fn time(s: ValueRef<'_>, ns: ValueRef<'_>) -> Option<Timestamp> {
    Timestamp::from_unix_nanos(join_time(int(s)?, int(ns)?)).ok()
}

/// Canonical UUID text only (what the general path accepts).
fn uuid(s: &str) -> Option<Uuid> {
    let u = Uuid::try_parse(s).ok()?;
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (u.hyphenated().encode_lower(&mut canonical) == s).then_some(u)
}

/// A child table's row copied out of its cursor.
trait ChildRow: Default {
    /// Copies cursor row `r` into `self`, reusing its buffers.
    fn fill(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()>;
    /// The row's seq (-1 when the column is not an integer).
    fn seq(&self) -> i64;
}

impl ChildRow for ApprovalCopy {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn fill(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        let seq = int(r.get_ref(0)?);
        let position = int(r.get_ref(1)?);
        let key_id = text_into(r.get_ref(2)?, &mut self.key_id);
        let alg = text_into(r.get_ref(3)?, &mut self.alg);
        let signature = blob_into(r.get_ref(4)?, &mut self.signature);
        let (s, ns) = (int(r.get_ref(5)?), int(r.get_ref(6)?));
        self.seq = seq.unwrap_or(-1);
        self.position = position.unwrap_or(-1);
        self.signed_at = join_time(s.unwrap_or(0), ns.unwrap_or(0));
        self.typed = seq.is_some()
            && position.is_some()
            && key_id
            && alg
            && signature
            && s.is_some()
            && ns.is_some();
        Ok(())
    }
}

impl ApprovalCopy {
    fn view(&self) -> Option<ApprovalView<'_>> {
        if !self.typed {
            return None;
        }
        Some(ApprovalView {
            key_id: KeyIdRef::parse(&self.key_id).ok()?,
            alg: self.alg.parse::<Algorithm>().ok()?,
            signature: &self.signature,
            signed_at: Timestamp::from_unix_nanos(self.signed_at).ok()?,
        })
    }
}

impl ChildRow for AttachmentCopy {
    fn seq(&self) -> i64 {
        self.seq
    }

    fn fill(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        let seq = int(r.get_ref(0)?);
        let position = int(r.get_ref(1)?);
        let sha256 = blob_into(r.get_ref(2)?, &mut self.sha256);
        let media_type = text_into(r.get_ref(3)?, &mut self.media_type);
        let size = int(r.get_ref(4)?);
        let name = match r.get_ref(5)? {
            ValueRef::Null => {
                self.name = None;
                true
            }
            v => text_into(v, self.name.get_or_insert_with(String::new)),
        };
        self.seq = seq.unwrap_or(-1);
        self.position = position.unwrap_or(-1);
        self.size = size.unwrap_or(-1);
        self.typed =
            seq.is_some() && position.is_some() && sha256 && media_type && size.is_some() && name;
        Ok(())
    }
}

impl AttachmentCopy {
    /// Fills `hex`; whether the row is plainly an attachment.
    fn prepare(&mut self) -> bool {
        if !self.typed
            || self.sha256.len() != 32
            || self.name.as_deref() == Some("")
            || !(0..=SAFE_INTEGER).contains(&self.size)
        {
            return false;
        }
        self.hex.clear();
        for b in &self.sha256 {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            self.hex.push(char::from(HEX[usize::from(b >> 4)]));
            self.hex.push(char::from(HEX[usize::from(b & 15)]));
        }
        true
    }

    fn view(&self) -> AttachmentView<'_> {
        AttachmentView {
            sha256: &self.hex,
            media_type: &self.media_type,
            size: self.size as u64,
            name: self.name.as_deref(),
        }
    }
}

/// Rows of one child table (approvals or attachments) for the record being written: the
/// cursor's next row, copied, and the rows taken for the current record, in buffers reused.
struct Children<T> {
    /// `rows[..taken]` belong to the current record; `rows[taken]`, when `pending`, is the
    /// cursor's next row, not yet taken.
    rows: Vec<T>,
    taken: usize,
    pending: bool,
    /// The cursor has no more rows.
    done: bool,
}

impl<T: ChildRow> Children<T> {
    fn new() -> Children<T> {
        Children {
            rows: Vec::new(),
            taken: 0,
            pending: false,
            done: false,
        }
    }

    /// Takes the rows of `seq` (skipping rows of lower seqs, which belong to no decision row),
    /// reading the cursor into copies whose `seq` is the row's seq (-1 when it is not an
    /// integer, which only a table stripped of STRICT can hold: such a row is taken by the
    /// record being written when the cursor reaches it, whose fast path then fails, so that
    /// record is re-derived by the general path).
    fn take(&mut self, seq: i64, rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<()> {
        // Move the pending row (if any) to the front; drop the last record's rows.
        if self.pending {
            self.rows.swap(0, self.taken);
        }
        self.taken = 0;
        loop {
            if !self.pending {
                if self.done {
                    return Ok(());
                }
                let Some(r) = rows.next()? else {
                    self.done = true;
                    return Ok(());
                };
                if self.rows.len() <= self.taken {
                    self.rows.push(T::default());
                }
                self.rows[self.taken].fill(r)?;
                self.pending = true;
            }
            let s = self.rows[self.taken].seq();
            if s > seq {
                return Ok(());
            }
            self.pending = false;
            if s == seq || s == -1 {
                self.taken += 1;
            }
        }
    }

    fn taken(&self) -> &[T] {
        &self.rows[..self.taken]
    }

    fn taken_mut(&mut self) -> &mut [T] {
        &mut self.rows[..self.taken]
    }
}

/// The re-derived records of seqs `a..b`, in seq order (see the module docs).
pub(super) fn rederive_range(
    tx: &Connection,
    a: i64,
    b: i64,
) -> Result<Vec<RederivedRecord>, ProjectionError> {
    let (mut out, general) = fast_pass(tx, a, b)?;
    if general.is_empty() {
        return Ok(out);
    }
    tracing::debug!(
        records = general.len(),
        "rows not plainly a record; re-derived by the general path"
    );
    let seqs: Vec<i64> = general.iter().map(|(_, s)| *s).collect();
    let mut rows = load(tx, &Select::seqs(&seqs))?.into_iter().peekable();
    for (at, seq) in general {
        // `load` returns the rows of these seqs in seq order, one record each.
        match rows.next_if(|r| r.decision.seq == seq) {
            Some(r) => out[at] = r.rederive(),
            None => {
                return Err(ProjectionError::Storage {
                    what: "read the projection",
                    reason: format!("seq {seq} was read once and not found again"),
                })
            }
        }
    }
    Ok(out)
}

/// The records of seqs `a..b` the fast path could write, with placeholders for those it left to
/// the general path, which are listed (index in the output, seq).
type FastPass = (Vec<RederivedRecord>, Vec<(usize, i64)>);

fn fast_pass(tx: &Connection, a: i64, b: i64) -> Result<FastPass, ProjectionError> {
    let read = storage("read the projection");
    let mut dq = tx
        .prepare_cached(
            "SELECT seq, id, version, kind, title, body, payload, proposed_at_s, proposed_at_ns, \
             recorded_at_s, recorded_at_ns, supersedes, notary_key_id, notary_alg, \
             notary_signature FROM decisions WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
        )
        .map_err(storage("prepare"))?;
    let mut aq = tx
        .prepare_cached(
            "SELECT seq, position, key_id, alg, signature, signed_at_s, signed_at_ns \
             FROM approvals WHERE seq >= ?1 AND seq < ?2 ORDER BY seq, position",
        )
        .map_err(storage("prepare"))?;
    let mut tq = tx
        .prepare_cached(
            "SELECT seq, position, sha256, media_type, size, name \
             FROM attachments WHERE seq >= ?1 AND seq < ?2 ORDER BY seq, position",
        )
        .map_err(storage("prepare"))?;
    let mut decisions = dq.query([a, b]).map_err(&read)?;
    let mut approval_rows = aq.query([a, b]).map_err(&read)?;
    let mut attachment_rows = tq.query([a, b]).map_err(&read)?;

    let width = usize::try_from(b.saturating_sub(a))
        .unwrap_or(0)
        .min(1 << 16);
    let mut out: Vec<RederivedRecord> = Vec::with_capacity(width);
    // Records the general path re-derives: their index in `out` and their seq.
    let mut general: Vec<(usize, i64)> = Vec::new();
    let mut approvals = Children::<ApprovalCopy>::new();
    let mut attachments = Children::<AttachmentCopy>::new();
    while let Some(d) = decisions.next().map_err(&read)? {
        let seq: i64 = d.get(0).map_err(&read)?;
        approvals.take(seq, &mut approval_rows).map_err(&read)?;
        attachments.take(seq, &mut attachment_rows).map_err(&read)?;
        let written =
            write_one(d, seq, approvals.taken(), attachments.taken_mut()).map_err(&read)?;
        match written {
            Some((bytes, id)) => out.push(RederivedRecord {
                seq: seq as u64,
                content: Rederived::Bytes(bytes),
                decision_id: Some(id),
            }),
            None => {
                general.push((out.len(), seq));
                out.push(RederivedRecord {
                    seq: seq as u64,
                    content: Rederived::Damaged(String::new()),
                    decision_id: None,
                });
            }
        }
    }
    Ok((out, general))
}

/// The bytes and decision id of the record in decision row `d` with `approvals` and
/// `attachments`, or `None` when the rows are not plainly a record.
fn write_one(
    d: &rusqlite::Row<'_>,
    seq: i64,
    approvals: &[ApprovalCopy],
    attachments: &mut [AttachmentCopy],
) -> rusqlite::Result<Option<(Vec<u8>, Uuid)>> {
    if !(0..=SAFE_INTEGER).contains(&seq) {
        return Ok(None);
    }
    let mut approval_views = Vec::with_capacity(approvals.len());
    for (i, a) in approvals.iter().enumerate() {
        if a.seq != seq || a.position != i as i64 {
            return Ok(None);
        }
        match a.view() {
            Some(v) => approval_views.push(v),
            None => return Ok(None),
        }
    }
    for (i, a) in attachments.iter_mut().enumerate() {
        if a.seq != seq || a.position != i as i64 || !a.prepare() {
            return Ok(None);
        }
    }
    let attachment_views: Vec<AttachmentView<'_>> =
        attachments.iter().map(AttachmentCopy::view).collect();
    // A payload the check cannot vouch for as its own RFC 8785 text (a non-integer number, say)
    // is parsed as strictly as the general path parses it, and written from the object.
    let parsed;
    let payload = match d.get_ref(6)? {
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(_) if crate::payload::canonical_object_len(t) == Some(t.len()) => {
                PayloadView::UncheckedText(t)
            }
            Ok(text) => match crate::rows::strict_payload(text) {
                Ok(object) => {
                    parsed = object;
                    PayloadView::Object(&parsed)
                }
                Err(_) => return Ok(None),
            },
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    let Some(view) = decision_view(d, seq, payload, &approval_views, &attachment_views)? else {
        return Ok(None);
    };
    Ok(Some((view.to_bytes(), view.decision.id)))
}

/// The view of decision row `d`, or `None` when it is not plainly one.
fn decision_view<'r>(
    d: &'r rusqlite::Row<'_>,
    seq: i64,
    payload: PayloadView<'r>,
    approvals: &'r [ApprovalView<'r>],
    attachments: &'r [AttachmentView<'r>],
) -> rusqlite::Result<Option<RecordView<'r>>> {
    let Some(id) = text(d.get_ref(1)?).and_then(uuid) else {
        return Ok(None);
    };
    let Some(version) = int(d.get_ref(2)?).and_then(|v| u32::try_from(v).ok()) else {
        return Ok(None);
    };
    let (Some(kind), Some(title), Some(body)) = (
        text(d.get_ref(3)?),
        text(d.get_ref(4)?),
        text(d.get_ref(5)?),
    ) else {
        return Ok(None);
    };
    let (Some(proposed_at), Some(recorded_at)) = (
        time(d.get_ref(7)?, d.get_ref(8)?),
        time(d.get_ref(9)?, d.get_ref(10)?),
    ) else {
        return Ok(None);
    };
    let supersedes = match d.get_ref(11)? {
        ValueRef::Null => None,
        v => match text(v).and_then(uuid) {
            Some(u) => Some(u),
            None => return Ok(None),
        },
    };
    let (Some(key_id), Some(alg), ValueRef::Blob(signature)) = (
        text(d.get_ref(12)?).and_then(|k| KeyIdRef::parse(k).ok()),
        text(d.get_ref(13)?).and_then(|a| a.parse::<Algorithm>().ok()),
        d.get_ref(14)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(RecordView {
        version,
        seq: seq as u64,
        decision: DecisionView {
            id,
            kind,
            title,
            body,
            payload,
            proposed_at,
            supersedes,
            attachments,
        },
        approvals,
        recorded_at,
        notary: NotaryView {
            key_id,
            alg,
            signature,
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::in_read_tx;
    use super::*;
    use crate::fixtures::{bytes, sample_record, tricky_records};
    use crate::rows::RecordRows;
    use crate::{Projection, SqliteProjection};

    /// Over `a..b`: what `rederive_range` returns, the seqs its fast pass left to the general
    /// path, and what the general path alone gives.
    async fn both(
        p: &SqliteProjection,
        a: i64,
        b: i64,
    ) -> (Vec<RederivedRecord>, Vec<i64>, Vec<RederivedRecord>) {
        p.with_conn(move |c| {
            in_read_tx(c, |tx| {
                let (_, general) = fast_pass(tx, a, b)?;
                let fast = rederive_range(tx, a, b)?;
                let slow: Vec<RederivedRecord> = load(tx, &Select::Range(a, b))?
                    .into_iter()
                    .map(RecordRows::rederive)
                    .collect();
                Ok((fast, general.into_iter().map(|(_, s)| s).collect(), slow))
            })
        })
        .await
        .unwrap()
    }

    /// A range read large enough to be split over several connections gives what one
    /// connection gives, damaged rows included, and keeps its extra connections for the next
    /// read until the projection is closed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_read_over_several_connections_is_the_one_connection_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = SqliteProjection::open(dir.path()).await.unwrap();
        let n = 5_000u64;
        for k in 0..5 {
            p.apply(
                (k * 1_000..(k + 1) * 1_000)
                    .map(|s| bytes(&sample_record(s, 1)))
                    .collect(),
            )
            .await
            .unwrap();
        }
        let c = rusqlite::Connection::open(dir.path().join("projection.db")).unwrap();
        c.execute_batch(
            "DROP TRIGGER approvals_no_update; \
             UPDATE approvals SET position = 7 WHERE seq = 2600 AND position = 0; \
             DROP TRIGGER decisions_no_update; \
             UPDATE decisions SET title = 'changed' WHERE seq = 4100;",
        )
        .unwrap();
        let parts = triplicate_core::available_threads().min(super::super::READERS_MAX);
        for (a, b) in [(0, n), (1_000, 4_101), (2_599, 2_601 + 2_048)] {
            let split = p.record_bytes(a, b).await.unwrap();
            let (one, _, _) = both(&p, a as i64, b as i64).await;
            assert_eq!(split, one, "{a}..{b}");
            assert_eq!(split.len() as u64, b - a);
            let kept = p.readers.lock().unwrap().len();
            assert_eq!(kept, parts - 1, "extra connections kept after {a}..{b}");
        }
        assert!(p.record_bytes(2_600, 2_601).await.unwrap()[0]
            .bytes()
            .is_none());
        // A range ending at the largest seq a read may name splits without overflowing.
        let top = i64::MAX as u64;
        assert!(p.record_bytes(top - 4_095, top).await.unwrap().is_empty());
        p.close();
        assert!(p.readers.lock().unwrap().is_empty());
        assert!(matches!(
            p.record_bytes(0, n).await,
            Err(crate::ProjectionError::Unavailable(_))
        ));
    }

    /// A range read (split over connections) while records are being applied shows a prefix of
    /// the range, never a gap. (Applies wait for a read today, as both use the writer's
    /// connection; the test keeps that property whatever changes there.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_read_during_applies_shows_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::sync::Arc::new(SqliteProjection::open(dir.path()).await.unwrap());
        let n = 6_000u64;
        let writer = {
            let p = p.clone();
            tokio::spawn(async move {
                for k in 0..n / 200 {
                    let batch = (k * 200..(k + 1) * 200)
                        .map(|s| bytes(&sample_record(s, 0)))
                        .collect();
                    p.apply(batch).await.unwrap();
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            // Centred on the records being applied, so the parts' boundary is where a snapshot
            // taken at the wrong moment would show a gap.
            let frontier = p.highest_seq().await.unwrap().map_or(0, |h| h + 1);
            let a = frontier.saturating_sub(1_000);
            let got = p.record_bytes(a, (a + 2_048).min(n)).await.unwrap();
            for (i, r) in got.iter().enumerate() {
                assert_eq!(
                    r.seq,
                    a + i as u64,
                    "a gap before seq {} in a read from {a} of {} records",
                    r.seq,
                    got.len()
                );
            }
            reads += 1;
        }
        writer.await.unwrap();
        assert_eq!(p.record_bytes(0, n).await.unwrap().len() as u64, n);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fast_path_agrees_with_the_general_one_on_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = SqliteProjection::open(dir.path()).await.unwrap();
        let mut records: Vec<Vec<u8>> = (0..200)
            .map(|s| bytes(&sample_record(s, (s % 3) as u8)))
            .collect();
        records.extend(tricky_records(200).iter().map(bytes));
        let n = records.len() as i64;
        let originals = records.clone();
        p.apply(records).await.unwrap();

        let (fast, general, slow) = both(&p, 0, n).await;
        assert_eq!(fast, slow);
        for (r, original) in fast.iter().zip(&originals) {
            assert_eq!(r.bytes(), Some(original.as_slice()), "seq {}", r.seq);
        }
        // The sample records (with attachments, supersedes, several approvals) all take the fast
        // path; of the tricky ones, those whose payload has numbers the check cannot vouch for
        // may not.
        assert!(general.iter().all(|s| *s >= 200), "{general:?}");

        // A tamperer, past the triggers and the CHECK constraints.
        let c = rusqlite::Connection::open(dir.path().join("projection.db")).unwrap();
        for t in ["decisions", "approvals", "attachments"] {
            c.execute_batch(&format!(
                "DROP TRIGGER {t}_no_update; DROP TRIGGER {t}_no_delete;"
            ))
            .unwrap();
        }
        c.execute_batch("PRAGMA ignore_check_constraints = ON")
            .unwrap();
        // (seq, change, whether the rows are no longer plainly a record).
        let changes: &[(i64, &str, bool)] = &[
            (
                2,
                "UPDATE decisions SET title = title || '!' WHERE seq = 2",
                false,
            ),
            (3, "UPDATE decisions SET id = upper(id) WHERE seq = 3", true),
            (
                4,
                "UPDATE decisions SET payload = '{\"b\":1,\"a\":2}' WHERE seq = 4",
                false,
            ),
            (
                17,
                "UPDATE decisions SET payload = '{\"a\":1,\"a\":2}' WHERE seq = 17",
                true,
            ),
            (
                18,
                "UPDATE decisions SET payload = '{\"a\":9007199254740993}' WHERE seq = 18",
                true,
            ),
            (
                19,
                "UPDATE decisions SET payload = '{\"a\":1e400}' WHERE seq = 19",
                true,
            ),
            (
                5,
                "UPDATE decisions SET notary_key_id = 'XYZ' WHERE seq = 5",
                true,
            ),
            (
                6,
                "UPDATE decisions SET notary_alg = 'rsa' WHERE seq = 6",
                true,
            ),
            (
                7,
                "UPDATE decisions SET version = 5000000000 WHERE seq = 7",
                true,
            ),
            (
                8,
                "UPDATE decisions SET proposed_at_s = 400000000000 WHERE seq = 8",
                true,
            ),
            (
                9,
                "UPDATE decisions SET supersedes = 'x' WHERE seq = 9",
                true,
            ),
            (
                10,
                "UPDATE approvals SET position = 5 WHERE seq = 10 AND position = 0",
                true,
            ),
            (
                11,
                "UPDATE approvals SET alg = 'rsa' WHERE seq = 11 AND position = 1",
                true,
            ),
            (
                12,
                "UPDATE approvals SET key_id = upper(key_id) WHERE seq = 12 AND position = 0",
                true,
            ),
            (
                14,
                "UPDATE approvals SET signed_at_s = 300000000000 WHERE seq = 14 AND position = 0",
                true,
            ),
            (
                15,
                "UPDATE decisions SET body = 'a \"quoted\" line\\' WHERE seq = 15",
                false,
            ),
            (
                16,
                "UPDATE decisions SET kind = 'other.kind' WHERE seq = 16",
                false,
            ),
            (20, "DELETE FROM decisions WHERE seq = 20", false),
            (
                22,
                "INSERT INTO approvals SELECT seq, 9, 'aaaaaaaaaaaaaaaa', alg, signature, signed_at_s, \
                 signed_at_ns FROM approvals WHERE seq = 22 AND position = 0",
                true,
            ),
            (
                28,
                "UPDATE attachments SET name = '' WHERE seq = 28 AND position = 1",
                true,
            ),
            (
                43,
                "UPDATE attachments SET size = 9007199254740993 WHERE seq = 43 AND position = 0",
                true,
            ),
            (
                58,
                "UPDATE attachments SET sha256 = x'00' WHERE seq = 58 AND position = 0",
                true,
            ),
            (
                73,
                "UPDATE attachments SET media_type = 'text/html' WHERE seq = 73 AND position = 0",
                false,
            ),
            (
                88,
                "UPDATE attachments SET position = 3 WHERE seq = 88 AND position = 1",
                true,
            ),
            (
                100,
                "UPDATE decisions SET notary_signature = x'01' WHERE seq = 100",
                false,
            ),
            (
                101,
                "UPDATE approvals SET signature = x'' WHERE seq = 101 AND position = 0",
                false,
            ),
        ];
        for (_, sql, _) in changes {
            assert_eq!(c.execute(sql, []).unwrap(), 1, "{sql}");
        }
        let (fast, general, slow) = both(&p, 0, n).await;
        assert_eq!(fast, slow);
        assert_eq!(fast.len() as i64, n - 1, "seq 20 has no decision row");
        for (seq, sql, odd) in changes {
            assert_eq!(
                general.contains(seq),
                *odd,
                "seq {seq} after {sql}: left to the general path {general:?}"
            );
        }
        // Damaged rows are reported as the general path reports them.
        let damaged: Vec<u64> = fast
            .iter()
            .filter(|r| r.bytes().is_none())
            .map(|r| r.seq)
            .collect();
        assert!(damaged.contains(&10) && damaged.contains(&5), "{damaged:?}");
        // Ranges starting and ending anywhere, including at orphaned approvals (seq 20).
        for (a, b) in [
            (19, 23),
            (20, 21),
            (21, 22),
            (0, 1),
            (n - 3, n + 5),
            (27, 29),
        ] {
            let (fast, _, slow) = both(&p, a, b).await;
            assert_eq!(fast, slow, "{a}..{b}");
        }
    }
}
