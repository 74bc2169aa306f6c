//! Recovery drills' reports, kept in the projection so operators and auditors can query them
//! with SQL: the [`DrillStore`] trait, the rows it stores and reads back, and the checks every
//! backend runs before writing.
//!
//! A drill (`triplicate-recovery` runs them) damages a copy of the stores on purpose, or the
//! stores themselves (`in_place`), and measures how the service notices and recovers. Its
//! report is canonical JSON signed by the notary key; the caller hands over one
//! [`StoredDrill`] per drill: the body exactly as digested and signed, the digest, the
//! signature, and the fields operators filter and alert on, flattened into the columns of
//! `drill_reports`. The table is append-only, like the verification tables.
//!
//! The projection does not know what a scenario means (it is the caller's name, checked only
//! for being non-empty, at most [`MAX_NAME_BYTES`] bytes and free of NUL), and it neither
//! computes the digest nor verifies the signature: it keeps the body, digest and signature
//! byte for byte so anyone can.
//!
//! [`MAX_NAME_BYTES`]: crate::reports::MAX_NAME_BYTES

use std::collections::BTreeMap;
use std::future::Future;

use triplicate_core::{Hash, Timestamp};
use uuid::Uuid;

use crate::reports::{fits, json_body, name, opt_fits};
use crate::ProjectionError;

/// The most bytes a drill's signature may have (a hardware key's ECDSA or RSA-4096 signature
/// fits many times over).
pub const MAX_SIGNATURE_BYTES: usize = 512;

/// One recovery drill's report as the caller hands it over, and as [`DrillStore::drill`] gives
/// it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDrill {
    /// A UUIDv7: newest first is `drill_id` descending.
    pub drill_id: Uuid,
    /// The drill's scenario, a name: 1 to
    /// [`MAX_NAME_BYTES`](crate::reports::MAX_NAME_BYTES) bytes, no NUL.
    pub scenario: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub passed: bool,
    /// Whether the drill damaged the live stores rather than a copy.
    pub in_place: bool,
    pub records_before: u64,
    pub records_after: u64,
    /// How long the damage took to be noticed; `None` when it was not (or not measured).
    pub detect_ms: Option<u64>,
    pub recover_ms: u64,
    /// Discrepancies still found after recovery.
    pub discrepancies_left: u64,
    /// The report's digest, computed by the caller over `body`.
    pub digest: Hash,
    /// The notary's key id, a name.
    pub key_id: String,
    /// The signature algorithm, a name.
    pub alg: String,
    /// The notary's signature (the caller's to make and check): 1 to [`MAX_SIGNATURE_BYTES`]
    /// bytes.
    pub signature: Vec<u8>,
    /// The report's canonical JSON, exactly as digested; must be valid JSON. Stored and given
    /// back byte for byte.
    pub body: Vec<u8>,
    /// The seq of the ledger record that carries the digest, if any.
    pub audit_seq: Option<u64>,
}

/// A drill as listed: every field of [`StoredDrill`] but the signature's and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillSummary {
    pub drill_id: Uuid,
    pub scenario: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub passed: bool,
    pub in_place: bool,
    pub records_before: u64,
    pub records_after: u64,
    pub detect_ms: Option<u64>,
    pub recover_ms: u64,
    pub discrepancies_left: u64,
    pub digest: Hash,
    pub audit_seq: Option<u64>,
}

/// Where one scenario stands: its newest drill, and its newest drill that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillStatus {
    pub scenario: String,
    /// The scenario's newest drill (highest `drill_id`), passed or not.
    pub last: DrillSummary,
    /// The scenario's newest drill that passed; `None` when none has.
    pub last_passed: Option<DrillSummary>,
}

/// Where recovery drills' reports are kept.
///
/// Guarantees every backend gives:
/// - **Atomic, idempotent, checked writes.** [`DrillStore::store_drill`] writes the drill or
///   nothing. The same drill id with the same digest again writes nothing (`Ok(false)`), even
///   if other fields differ; with another digest it is [`ProjectionError::DrillConflict`]
///   naming both. The scenario, key id and algorithm must be names (non-empty, at most
///   [`MAX_NAME_BYTES`] bytes, no NUL), the signature 1 to [`MAX_SIGNATURE_BYTES`] bytes,
///   numbers must fit a signed 64-bit column, and the body must be valid JSON; otherwise
///   [`ProjectionError::InvalidDrill`] and nothing is written.
/// - **Byte-exact bodies and signatures.** Both come back exactly as stored.
/// - **Append-only.** Nothing updates or deletes a stored drill; the databases' triggers refuse
///   it (and on PostgreSQL the roles hold no such privilege).
/// - **Durable on `Ok`**, and **consistent reads**: a read sees one committed state.
///
/// [`MAX_NAME_BYTES`]: crate::reports::MAX_NAME_BYTES
pub trait DrillStore: Send + Sync {
    /// Stores a drill. Idempotent: the same `drill_id` with the same digest again is
    /// `Ok(false)` (nothing written); the same `drill_id` with another digest is refused
    /// ([`ProjectionError::DrillConflict`], naming both digests in hex) and nothing is
    /// written. `Ok(true)` when written.
    fn store_drill(
        &self,
        drill: StoredDrill,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send;

    /// Newest first (`drill_id` descending), at most `limit` (1..=[`MAX_REPORTS_PAGE`], else
    /// [`ProjectionError::InvalidQuery`]), starting strictly before `before` when given, only
    /// drills of `scenario` when given (a scenario no drill can have — empty, over
    /// [`MAX_NAME_BYTES`] bytes, with NUL — is [`ProjectionError::InvalidQuery`]).
    ///
    /// [`MAX_NAME_BYTES`]: crate::reports::MAX_NAME_BYTES
    /// [`MAX_REPORTS_PAGE`]: crate::reports::MAX_REPORTS_PAGE
    fn drills(
        &self,
        before: Option<Uuid>,
        limit: u32,
        scenario: Option<String>,
    ) -> impl Future<Output = Result<Vec<DrillSummary>, ProjectionError>> + Send;

    /// One drill, whole (with its body and signature); `None` when absent.
    fn drill(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredDrill>, ProjectionError>> + Send;

    /// One entry per scenario that has any stored drill, sorted by scenario (byte order): its
    /// newest drill and its newest passed drill. What the service's drill metrics start from.
    fn drill_status(
        &self,
    ) -> impl Future<Output = Result<Vec<DrillStatus>, ProjectionError>> + Send;
}

/// Every check [`DrillStore::store_drill`] makes before writing anything.
pub(crate) fn check_drill(d: &StoredDrill) -> Result<(), ProjectionError> {
    check_drill_fields(d).map_err(|reason| ProjectionError::InvalidDrill {
        drill_id: d.drill_id,
        reason,
    })
}

fn check_drill_fields(d: &StoredDrill) -> Result<(), String> {
    name("scenario", &d.scenario)?;
    name("key_id", &d.key_id)?;
    name("alg", &d.alg)?;
    if d.signature.is_empty() {
        return Err("signature is empty".into());
    }
    if d.signature.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "signature is {} bytes; a drill's signature has at most {MAX_SIGNATURE_BYTES}",
            d.signature.len()
        ));
    }
    for (what, v) in [
        ("records_before", d.records_before),
        ("records_after", d.records_after),
        ("recover_ms", d.recover_ms),
        ("discrepancies_left", d.discrepancies_left),
    ] {
        fits(what, v)?;
    }
    opt_fits("detect_ms", d.detect_ms)?;
    opt_fits("audit_seq", d.audit_seq)?;
    // Last: the most expensive check.
    json_body(&d.body)
}

/// Checks a scenario filter before any backend reads: a name no stored drill can have is a
/// mistake, refused alike by both backends (PostgreSQL could not even bind a NUL).
pub(crate) fn check_scenario_filter(scenario: Option<&str>) -> Result<(), ProjectionError> {
    match scenario {
        Some(s) => name("scenario", s)
            .map_err(|why| ProjectionError::InvalidQuery(format!("drill filter: {why}"))),
        None => Ok(()),
    }
}

/// A drill's summary (its fields but the signature's and the body): the conformance suite's
/// reference.
#[cfg(any(test, feature = "testkit"))]
pub(crate) fn summary_of(d: &StoredDrill) -> DrillSummary {
    DrillSummary {
        drill_id: d.drill_id,
        scenario: d.scenario.clone(),
        started_at: d.started_at,
        finished_at: d.finished_at,
        passed: d.passed,
        in_place: d.in_place,
        records_before: d.records_before,
        records_after: d.records_after,
        detect_ms: d.detect_ms,
        recover_ms: d.recover_ms,
        discrepancies_left: d.discrepancies_left,
        digest: d.digest,
        audit_seq: d.audit_seq,
    }
}

/// A whole drill from its summary and the columns a summary leaves out.
pub(crate) fn whole(
    s: DrillSummary,
    key_id: String,
    alg: String,
    signature: Vec<u8>,
    body: Vec<u8>,
) -> StoredDrill {
    StoredDrill {
        drill_id: s.drill_id,
        scenario: s.scenario,
        started_at: s.started_at,
        finished_at: s.finished_at,
        passed: s.passed,
        in_place: s.in_place,
        records_before: s.records_before,
        records_after: s.records_after,
        detect_ms: s.detect_ms,
        recover_ms: s.recover_ms,
        discrepancies_left: s.discrepancies_left,
        digest: s.digest,
        key_id,
        alg,
        signature,
        body,
        audit_seq: s.audit_seq,
    }
}

/// The status per scenario from each scenario's newest drill and newest passed drill (both
/// read in one snapshot), sorted by scenario in byte order whatever the database's collation.
pub(crate) fn statuses(
    last: Vec<DrillSummary>,
    passed: Vec<DrillSummary>,
) -> Result<Vec<DrillStatus>, ProjectionError> {
    let mut by_scenario: BTreeMap<String, DrillStatus> = BTreeMap::new();
    for s in last {
        let scenario = s.scenario.clone();
        let status = DrillStatus {
            scenario: scenario.clone(),
            last: s,
            last_passed: None,
        };
        if by_scenario.insert(scenario.clone(), status).is_some() {
            return Err(ProjectionError::Storage {
                what: "read drill status",
                reason: format!("scenario {scenario:?} has two newest drills"),
            });
        }
    }
    for s in passed {
        let Some(status) = by_scenario.get_mut(&s.scenario) else {
            return Err(ProjectionError::Storage {
                what: "read drill status",
                reason: format!("scenario {:?} has a passed drill but no newest", s.scenario),
            });
        };
        if !s.passed || s.drill_id > status.last.drill_id || status.last_passed.is_some() {
            return Err(ProjectionError::Storage {
                what: "read drill status",
                reason: format!(
                    "drill {} of scenario {:?} cannot be its newest passed",
                    s.drill_id, s.scenario
                ),
            });
        }
        status.last_passed = Some(s);
    }
    Ok(by_scenario.into_values().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reports::MAX_NAME_BYTES;

    fn drill() -> StoredDrill {
        StoredDrill {
            drill_id: Uuid::from_u128(7),
            scenario: "projection-loss".into(),
            started_at: Timestamp::from_unix_nanos(1).unwrap(),
            finished_at: Timestamp::from_unix_nanos(2).unwrap(),
            passed: true,
            in_place: false,
            records_before: 10,
            records_after: 10,
            detect_ms: Some(5),
            recover_ms: 100,
            discrepancies_left: 0,
            digest: [3; 32],
            key_id: "0011223344556677".into(),
            alg: "ed25519".into(),
            signature: vec![1; 64],
            body: b"{}".to_vec(),
            audit_seq: None,
        }
    }

    #[test]
    fn checks() {
        assert!(check_drill(&drill()).is_ok());
        type Edit = fn(&mut StoredDrill);
        let bad: [(&str, Edit); 8] = [
            ("empty scenario", |d| d.scenario.clear()),
            ("long alg", |d| d.alg = "a".repeat(MAX_NAME_BYTES + 1)),
            ("NUL key id", |d| d.key_id = "k\0".into()),
            ("no signature", |d| d.signature.clear()),
            ("long signature", |d| {
                d.signature = vec![0; MAX_SIGNATURE_BYTES + 1]
            }),
            ("recover_ms", |d| d.recover_ms = 1 << 63),
            ("detect_ms", |d| d.detect_ms = Some(u64::MAX)),
            ("body", |d| d.body = b"{".to_vec()),
        ];
        for (what, edit) in bad {
            let mut d = drill();
            edit(&mut d);
            match check_drill(&d) {
                Err(ProjectionError::InvalidDrill { drill_id, reason }) => {
                    assert_eq!(drill_id, d.drill_id, "{what}");
                    assert!(!reason.is_empty(), "{what}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        let mut d = drill();
        d.signature = vec![0; MAX_SIGNATURE_BYTES];
        d.recover_ms = i64::MAX as u64;
        d.scenario = "s".repeat(MAX_NAME_BYTES);
        assert!(check_drill(&d).is_ok(), "the limits themselves are allowed");
    }

    #[test]
    fn scenario_filters() {
        assert!(check_scenario_filter(None).is_ok());
        assert!(check_scenario_filter(Some("x")).is_ok());
        for bad in ["", "a\0", &"s".repeat(MAX_NAME_BYTES + 1)] {
            assert!(matches!(
                check_scenario_filter(Some(bad)),
                Err(ProjectionError::InvalidQuery(_))
            ));
        }
    }

    #[test]
    fn statuses_sort_by_bytes_and_pair_the_passed() {
        let mut a = drill();
        a.scenario = "b".into();
        a.passed = false;
        a.drill_id = Uuid::from_u128(9);
        let mut a_ok = drill();
        a_ok.scenario = "b".into();
        let mut c = drill();
        c.scenario = "B".into();
        c.passed = false;
        let got = statuses(
            vec![summary_of(&a), summary_of(&c)],
            vec![summary_of(&a_ok)],
        )
        .unwrap();
        assert_eq!(
            got.iter().map(|s| s.scenario.as_str()).collect::<Vec<_>>(),
            ["B", "b"]
        );
        assert_eq!(got[0].last_passed, None);
        assert_eq!(got[1].last, summary_of(&a));
        assert_eq!(got[1].last_passed, Some(summary_of(&a_ok)));
        // A passed drill newer than the newest is not a state one snapshot can hold.
        assert!(statuses(vec![summary_of(&a_ok)], vec![summary_of(&a)]).is_err());
        assert!(statuses(vec![], vec![summary_of(&a_ok)]).is_err());
    }
}
