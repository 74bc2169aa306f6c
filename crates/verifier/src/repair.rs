//! Repair planning and execution.
//!
//! Every repair restores what the ledger holds: the ledger is the store of record, and the
//! other two are copies of it. `minor` findings get actions that run without an auditor when
//! `verification.toml` allows it ([`apply_repairs`]); `major` findings get *proposed* actions
//! that wait for an auditor's approval (executing an approved one, and recording who approved
//! it, is a later part of issue 5); `lag` is left to the catch-up worker and `critical` cannot
//! be repaired from the copies.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use triplicate_core::Hash;
use triplicate_ledger::Ledger;
use triplicate_projection::{Projection, RemovalRequest, RepairRequest};
use triplicate_stream::{AppendRequest, DecisionRecorded, EventStream};
use uuid::Uuid;

use crate::compare::Stores;
use crate::model::{Class, Discrepancy, Kind, Store};
use crate::policy::VerificationPolicy;

/// What a repair does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Replace (or restore) the projection's rows of one seq with the ledger's record, through
    /// `Projection::repair`, which logs the change in the `repairs` table.
    ReplaceProjectionRows,
    /// Apply the ledger's record to the projection, as the write path would: for a seq past
    /// the projection's highest (`Projection::repair` replaces rows, it does not extend).
    ApplyProjectionRecords,
    /// Append the ledger's record to the stream as its missing event.
    AppendStreamEvent,
    /// Rebuild the stream from the ledger: an append-only stream cannot change or remove an
    /// event, nor fill a hole below its highest seq.
    RebuildStream,
    /// Remove projection rows the ledger has no record for (`Projection::remove_from`, which
    /// logs them in the `removals` table): every seq from this one up, checked to be past the
    /// ledger's end when it runs. Always waits for an auditor.
    RemoveProjectionRows,
}

/// Who lets the action run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// The policy lets the verifier run it on its own.
    Automatic,
    /// It waits for an auditor's approval.
    Auditor,
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Decided on, not run yet.
    Planned,
    /// Waiting for an auditor.
    Proposed,
    /// Run, and it changed the store.
    Applied,
    /// Run, and the store already held the ledger's content (the catch-up worker or an
    /// earlier repair got there first).
    Unchanged,
    /// Run, and it failed; `detail` says why.
    Failed,
}

/// One repair, planned from one finding (or, for a stream rebuild, from all of a run's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairAction {
    /// For auditors to approve or reject it by.
    pub id: Uuid,
    /// The seq repaired; `None` for a whole-store rebuild (`seqs` lists what prompted it).
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<u64>,
    pub store: Store,
    /// The class of the finding it answers.
    pub class: Class,
    /// The kind of the finding it answers.
    pub kind: Kind,
    pub operation: Operation,
    pub authority: Authority,
    pub status: ActionStatus,
    /// The ledger's leaf hash the store will hold afterwards, for single-seq repairs.
    #[serde(default, with = "crate::b64::option")]
    pub restores: Option<Hash>,
    /// Why, and after running, what happened.
    pub detail: String,
}

/// Plans the repairs for a run's findings. `minor` findings get actions that run on their own
/// when the policy lists `minor` under `[repair] automatic`; `major` ones get proposals.
pub fn plan_repairs(
    discrepancies: &[Discrepancy],
    policy: &VerificationPolicy,
) -> Vec<RepairAction> {
    let mut actions = Vec::new();
    // Stream findings no append can fix, gathered into one rebuild proposal: (the most
    // serious class, its kind, the seqs).
    let mut rebuild: Option<(Class, Kind, BTreeSet<u64>)> = None;
    for d in discrepancies {
        let single = |operation, authority| RepairAction {
            id: Uuid::now_v7(),
            seq: d.seq,
            seqs: Vec::new(),
            store: d.store,
            class: d.class,
            kind: d.kind,
            operation,
            authority,
            status: match authority {
                Authority::Automatic => ActionStatus::Planned,
                Authority::Auditor => ActionStatus::Proposed,
            },
            restores: d.expected_hash,
            detail: d.detail.clone(),
        };
        let authority = if policy.repairs_automatically(d.class) {
            Authority::Automatic
        } else {
            Authority::Auditor
        };
        match (d.class, d.store, d.kind) {
            (Class::Lag | Class::Critical, _, _) | (_, Store::Ledger, _) => {}
            (Class::Minor, Store::Projection, Kind::Missing) if d.seq.is_some() => {
                actions.push(single(Operation::ApplyProjectionRecords, authority));
            }
            (Class::Minor, Store::Projection, _) if d.seq.is_some() => {
                actions.push(single(Operation::ReplaceProjectionRows, authority));
            }
            (Class::Minor, Store::Stream, Kind::Missing) if d.seq.is_some() => {
                actions.push(single(Operation::AppendStreamEvent, authority));
            }
            (Class::Major, Store::Projection, Kind::Extra) => {
                actions.push(single(Operation::RemoveProjectionRows, Authority::Auditor));
            }
            (class, Store::Stream, kind) => {
                let r = rebuild.get_or_insert((class, kind, BTreeSet::new()));
                if class > r.0 {
                    (r.0, r.1) = (class, kind);
                }
                if let Some(s) = d.seq {
                    r.2.insert(s);
                }
            }
            (_, Store::Projection, _) => {
                actions.push(single(Operation::ReplaceProjectionRows, Authority::Auditor));
            }
        }
    }
    if let Some((class, kind, seqs)) = rebuild {
        actions.push(RepairAction {
            id: Uuid::now_v7(),
            seq: None,
            seqs: seqs.into_iter().collect(),
            store: Store::Stream,
            class,
            kind,
            operation: Operation::RebuildStream,
            authority: Authority::Auditor,
            status: ActionStatus::Proposed,
            restores: None,
            detail: "the stream is append-only: events that differ, extra or duplicate events and \
                     holes can only be fixed by rebuilding it from the ledger"
                .into(),
        });
    }
    actions
}

/// What [`apply_repairs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub applied: u64,
    pub unchanged: u64,
    pub failed: u64,
}

/// Runs every planned automatic action the policy still allows, in seq order, updating each
/// action's status and detail. Each ledger entry copied must still hash to the leaf hash the
/// comparison used (`RepairAction::restores`); callers do not run repairs at all when the run
/// found the ledger itself at fault ([`crate::run()`] does not). Projection rows are replaced through `Projection::repair` (which
/// logs old and new leaf hashes with `run_id`); missing stream events are appended in batches
/// of consecutive seqs. Proposed actions are left alone.
#[tracing::instrument(skip_all, fields(run_id = %run_id))]
pub async fn apply_repairs<L, S, P>(
    stores: Stores<'_, L, S, P>,
    policy: &VerificationPolicy,
    actions: &mut [RepairAction],
    run_id: Uuid,
) -> ApplySummary
where
    L: Ledger + ?Sized,
    S: EventStream,
    P: Projection,
{
    run_actions(stores, actions, run_id, |a| {
        a.authority == Authority::Automatic
            && a.status == ActionStatus::Planned
            && policy.repairs_automatically(a.class)
    })
    .await
}

impl Operation {
    /// Whether [`apply_approved`] can run it. Rebuilding the stream needs an operation the
    /// stream trait does not offer yet (recovery drills, issue 7): an auditor's approval of it
    /// is recorded, and the operator carries it out.
    pub fn is_executable(self) -> bool {
        matches!(
            self,
            Operation::ReplaceProjectionRows
                | Operation::ApplyProjectionRecords
                | Operation::AppendStreamEvent
                | Operation::RemoveProjectionRows
        )
    }
}

/// Runs one proposed action an auditor approved, as [`apply_repairs`] runs automatic ones
/// (the ledger entry must still hash to `restores`; projection repairs are logged with
/// `run_id`, the run that proposed it). The action's status and detail are updated:
/// `Applied`, `Unchanged` (the store already holds the ledger's content), or `Failed`. An
/// operation that is not [executable](Operation::is_executable) is left `Proposed` and
/// `Err` says why.
#[tracing::instrument(skip_all, fields(run_id = %run_id, action = %action.id))]
pub async fn apply_approved<L, S, P>(
    stores: Stores<'_, L, S, P>,
    action: &mut RepairAction,
    run_id: Uuid,
) -> Result<ApplySummary, String>
where
    L: Ledger + ?Sized,
    S: EventStream,
    P: Projection,
{
    if action.status != ActionStatus::Proposed || action.authority != Authority::Auditor {
        return Err(format!(
            "action {} is {:?} and {:?}, not a proposal waiting for an auditor",
            action.id, action.status, action.authority
        ));
    }
    if !action.operation.is_executable() || action.seq.is_none() {
        return Err(format!(
            "{:?} cannot be run by the service yet: it needs a store operation that does not \
             exist (a stream rebuild); the approval is recorded and the operator carries it out",
            action.operation
        ));
    }
    let one = std::slice::from_mut(action);
    Ok(run_actions(stores, one, run_id, |a| a.status == ActionStatus::Proposed).await)
}

async fn run_actions<L, S, P>(
    stores: Stores<'_, L, S, P>,
    actions: &mut [RepairAction],
    run_id: Uuid,
    select: impl Fn(&RepairAction) -> bool,
) -> ApplySummary
where
    L: Ledger + ?Sized,
    S: EventStream,
    P: Projection,
{
    let mut summary = ApplySummary::default();
    let mut runnable: Vec<usize> = (0..actions.len())
        .filter(|&i| select(&actions[i]) && actions[i].seq.is_some())
        .collect();
    runnable.sort_by_key(|&i| actions[i].seq);

    // Projection rows the ledger lacks: every row from the action's seq, or from the ledger's
    // end if the ledger has grown past it since, up. Rows at or past the ledger's size read here
    // are never records the ledger holds: a record reaches the projection only after the ledger
    // has it, and the ledger only grows. (A record the ledger appended meanwhile at a seq a
    // forged row held is compared by the next run, not removed here.)
    for &i in &runnable {
        if actions[i].operation != Operation::RemoveProjectionRows {
            continue;
        }
        let Some(seq) = actions[i].seq else { continue };
        let seq = seq.max(stores.ledger.tree_size());
        let request = RemovalRequest {
            from_seq: seq,
            reason: format!(
                "{} {}: {}",
                actions[i].store, actions[i].kind, actions[i].detail
            ),
            run_id: run_id.to_string(),
        };
        match stores.projection.remove_from(request).await {
            Ok(o) if o.removed.is_empty() => {
                actions[i].status = ActionStatus::Unchanged;
                actions[i].detail = format!(
                    "{}; the projection holds nothing from seq {seq} up (past the ledger's end) \
                     any more",
                    actions[i].detail
                );
                summary.unchanged += 1;
            }
            Ok(o) => {
                let seqs: Vec<u64> = o.removed.iter().map(|r| r.0).collect();
                actions[i].status = ActionStatus::Applied;
                actions[i].detail = format!(
                    "{}; removed the projection rows of seqs {seqs:?} (logged in removals)",
                    actions[i].detail
                );
                summary.applied += 1;
                tracing::warn!(?seqs, "removed projection rows the ledger lacks");
            }
            Err(e) => fail(
                &mut actions[i],
                &mut summary,
                format!("projection removal: {e}"),
            ),
        }
    }

    // Projection rows, one seq at a time (each repair is its own logged transaction).
    for &i in &runnable {
        if actions[i].operation != Operation::ReplaceProjectionRows {
            continue;
        }
        let Some(seq) = actions[i].seq else { continue };
        let record_bytes = match stores
            .ledger
            .entry(seq)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                check_restores(&b, seq, actions[i].restores)?;
                Ok(b)
            }) {
            Ok(b) => b,
            Err(e) => {
                fail(
                    &mut actions[i],
                    &mut summary,
                    format!("read ledger entry {seq}: {e}"),
                );
                continue;
            }
        };
        let request = RepairRequest {
            seq,
            record_bytes,
            reason: format!(
                "{} {}: {}",
                actions[i].store, actions[i].kind, actions[i].detail
            ),
            run_id: run_id.to_string(),
        };
        match stores.projection.repair(request).await {
            Ok(o) if o.changed => {
                actions[i].status = ActionStatus::Applied;
                actions[i].detail = format!(
                    "{}; repaired (repairs row {})",
                    actions[i].detail,
                    o.repair_id.map_or("?".into(), |id| id.to_string())
                );
                summary.applied += 1;
                tracing::info!(seq, "repaired projection rows from the ledger");
            }
            Ok(_) => {
                actions[i].status = ActionStatus::Unchanged;
                actions[i].detail = format!(
                    "{}; the rows already re-derive to the ledger's record",
                    actions[i].detail
                );
                summary.unchanged += 1;
            }
            Err(e) => fail(
                &mut actions[i],
                &mut summary,
                format!("projection repair: {e}"),
            ),
        }
    }

    // Records past the projection's highest seq, then missing stream events: consecutive runs
    // of seqs, each written as batches within the store's limits.
    for (operation, max) in [
        (
            Operation::ApplyProjectionRecords,
            triplicate_projection::MAX_BATCH,
        ),
        (
            Operation::AppendStreamEvent,
            stores.stream.limits().max_batch_events.max(1),
        ),
    ] {
        let todo: Vec<usize> = runnable
            .iter()
            .copied()
            .filter(|&i| actions[i].operation == operation)
            .collect();
        for group in consecutive(actions, &todo, max) {
            let (Some(first), Some(last)) =
                (actions[group[0]].seq, actions[group[group.len() - 1]].seq)
            else {
                continue;
            };
            let entries = stores
                .ledger
                .entries(first, last + 1)
                .map_err(|e| format!("read ledger entries {first}..={last}: {e}"))
                .and_then(|entries| {
                    for (&i, b) in group.iter().zip(&entries) {
                        let seq = actions[i].seq.unwrap_or_default();
                        check_restores(b, seq, actions[i].restores)?;
                    }
                    Ok(entries)
                });
            let written: Result<u64, String> = match (entries, operation) {
                (Err(e), _) => Err(e),
                (Ok(entries), Operation::ApplyProjectionRecords) => stores
                    .projection
                    .apply(entries)
                    .await
                    .map(|o| o.applied)
                    .map_err(|e| format!("projection apply: {e}")),
                (Ok(entries), _) => {
                    let batch: Result<Vec<AppendRequest>, String> = entries
                        .into_iter()
                        .map(|b| {
                            DecisionRecorded::from_record_bytes(b)
                                .map(AppendRequest::new_decision)
                                .map_err(|e| format!("ledger entry is not a record: {e}"))
                        })
                        .collect();
                    match batch {
                        Ok(batch) => stores
                            .stream
                            .append(batch)
                            .await
                            .map(|o| o.appended)
                            .map_err(|e| format!("stream append: {e}")),
                        Err(e) => Err(e),
                    }
                }
            };
            match written {
                Ok(n) => {
                    let status = if n > 0 {
                        ActionStatus::Applied
                    } else {
                        ActionStatus::Unchanged
                    };
                    for &i in &group {
                        actions[i].status = status;
                        if n > 0 {
                            summary.applied += 1;
                        } else {
                            actions[i].detail = format!(
                                "{}; the store already held the ledger's records",
                                actions[i].detail
                            );
                            summary.unchanged += 1;
                        }
                    }
                    tracing::info!(
                        first,
                        last,
                        written = n,
                        ?operation,
                        "restored missing records from the ledger"
                    );
                }
                Err(e) => {
                    for &i in &group {
                        fail(&mut actions[i], &mut summary, e.clone());
                    }
                }
            }
        }
    }
    summary
}

/// Refuses to copy a ledger entry that does not hash to what the comparison saw: a repair must
/// never spread bytes the ledger's own check would reject.
fn check_restores(bytes: &[u8], seq: u64, restores: Option<Hash>) -> Result<(), String> {
    let h = triplicate_core::digest::leaf_hash(bytes);
    match restores {
        Some(r) if r == h => Ok(()),
        Some(r) => Err(format!(
            "ledger entry {seq} now hashes to {}, not the {} the run compared with",
            crate::b64::encode(&h),
            crate::b64::encode(&r)
        )),
        None => Err(format!("no ledger hash was recorded for seq {seq}")),
    }
}

/// Splits action indices (sorted by seq) into runs of consecutive seqs of at most `max`.
fn consecutive(actions: &[RepairAction], todo: &[usize], max: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in todo {
        match out.last_mut() {
            Some(g)
                if g.len() < max
                    && g.last().and_then(|&j| actions[j].seq).map(|s| s + 1) == actions[i].seq =>
            {
                g.push(i);
            }
            _ => out.push(vec![i]),
        }
    }
    out
}

fn fail(a: &mut RepairAction, summary: &mut ApplySummary, why: String) {
    tracing::warn!(seq = a.seq, store = %a.store, error = %why, "repair failed");
    a.status = ActionStatus::Failed;
    a.detail = format!("{}; failed: {why}", a.detail);
    summary.failed += 1;
}
