//! A populated set of the three real embedded stores in a temporary directory: the ledger
//! (EmbeddedLedger with a software notary), the stream (SqliteStream) and the projection
//! (SqliteProjection), with records built and signed as the write path builds them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use triplicate_core::{
    Approval, Decision, NotarySignature, Timestamp, UnsignedRecord, RECORD_VERSION,
};
use triplicate_keys::{Signer, SoftwareSigner};
use triplicate_ledger::{EmbeddedLedger, Ledger, LedgerConfig};
use triplicate_policy::Policy;
use triplicate_projection::{Projection, SqliteProjection};
use triplicate_stream::{AppendRequest, DecisionRecorded, EventStream, SqliteStream};
use triplicate_verifier::{RunRequest, Stores, Trust, VerificationPolicy};

pub const ORIGIN: &str = "triplicate.invalid/verifier-test";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub notary: Arc<SoftwareSigner>,
    pub approvers: Vec<SoftwareSigner>,
    pub registry: Arc<Policy>,
    pub ledger: EmbeddedLedger,
    pub stream: SqliteStream,
    pub projection: SqliteProjection,
    pub trust: Trust,
}

fn policy_text(notary: &SoftwareSigner, approvers: &[SoftwareSigner]) -> (String, String) {
    let mut keys = format!(
        "[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"software\"\n\n",
        notary.public_key().to_base64()
    );
    for (i, a) in approvers.iter().enumerate() {
        keys.push_str(&format!(
            "[[key]]\nalg = \"ed25519\"\npublic_key = \"{}\"\nholder = \"Approver {i}\"\n\
             groups = [\"board\"]\nheld = \"software\"\nvalid_from = 2000-01-01T00:00:00Z\n\n",
            a.public_key().to_base64()
        ));
    }
    let governance = "[groups.board]\ndescription = \"Board\"\nrequire_hardware = false\n\n\
        [default]\naction = \"quorum\"\nquorum = [{ group = \"board\", threshold = 2 }]\n"
        .to_owned();
    (keys, governance)
}

impl Env {
    pub async fn new() -> Env {
        Env::at(tempfile::tempdir().unwrap()).await
    }

    pub async fn at(dir: tempfile::TempDir) -> Env {
        let notary = Arc::new(SoftwareSigner::generate("verifier-test-notary"));
        let approvers = vec![
            SoftwareSigner::generate("approver-a"),
            SoftwareSigner::generate("approver-b"),
        ];
        let (keys, governance) = policy_text(&notary, &approvers);
        let registry = Arc::new(Policy::from_strs(&keys, &governance).unwrap());
        let ledger = EmbeddedLedger::open(
            LedgerConfig::new(dir.path().join("ledger"), ORIGIN),
            notary.clone(),
        )
        .unwrap();
        let stream = SqliteStream::open(dir.path()).await.unwrap();
        let projection = SqliteProjection::open(dir.path()).await.unwrap();
        let vkey =
            triplicate_keys::note::note_verifier_key(notary.name(), &notary.public_key()).unwrap();
        let trust = Trust::new(&vkey, Some(registry.clone())).unwrap();
        Env {
            dir,
            notary,
            approvers,
            registry,
            ledger,
            stream,
            projection,
            trust,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ledger_dir(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    pub fn stores(&self) -> Stores<'_, EmbeddedLedger, SqliteStream, SqliteProjection> {
        Stores {
            ledger: &self.ledger,
            stream: &self.stream,
            projection: &self.projection,
        }
    }

    /// A full sweep that checks the ledger's files too.
    pub fn full(&self) -> RunRequest {
        RunRequest {
            ledger_dir: Some(self.ledger_dir()),
            ..RunRequest::full()
        }
    }

    /// The canonical bytes of a decision at `seq`, approved by both approvers and notarised.
    pub fn record(&self, seq: u64) -> Vec<u8> {
        let approvers: Vec<&SoftwareSigner> = self.approvers.iter().collect();
        record_bytes(seq, &approvers, self.notary.as_ref(), "motion")
    }

    /// Appends `n` records to the ledger, and to the stream and projection up to `downstream`
    /// of them.
    pub async fn append(&self, n: u64, downstream: u64) {
        let first = self.ledger.tree_size();
        let records: Vec<Vec<u8>> = (first..first + n).map(|s| self.record(s)).collect();
        for (k, part) in records.chunks(1_000).enumerate() {
            self.ledger
                .append(first + (k * 1_000) as u64, part)
                .unwrap();
        }
        self.copy_downstream(&records[..downstream as usize]).await;
    }

    /// Writes records (already in the ledger) to the stream and the projection.
    pub async fn copy_downstream(&self, records: &[Vec<u8>]) {
        for part in records.chunks(5_000) {
            let batch: Vec<AppendRequest> = part
                .iter()
                .map(|b| {
                    AppendRequest::new_decision(
                        DecisionRecorded::from_record_bytes(b.clone()).unwrap(),
                    )
                })
                .collect();
            self.stream.append(batch).await.unwrap();
            self.projection.apply(part.to_vec()).await.unwrap();
        }
    }

    /// A connection to a store's file, as a superuser with the file would have.
    pub fn raw(&self, file: &str) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path().join(file)).unwrap()
    }
}

pub fn decision(seq: u64, kind: &str) -> Decision {
    Decision::from_json(
        serde_json::json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "kind": kind,
            "title": format!("Motion {seq}: adopt the annual report"),
            "body": "Moved by the chair, seconded, and carried after discussion. The secretary \
                     will publish the adopted report to members within fourteen days.",
            "payload": {"motion": seq, "votes": {"for": 7, "against": 1, "abstain": 1}},
            "proposed_at": Timestamp::now().to_string(),
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

pub fn approve(d: &Decision, key: &SoftwareSigner) -> Approval {
    triplicate_keys::approve(d, key, Timestamp::now()).unwrap()
}

pub fn record_bytes(
    seq: u64,
    approvers: &[&SoftwareSigner],
    notary: &dyn Signer,
    kind: &str,
) -> Vec<u8> {
    let d = decision(seq, kind);
    let mut approvals: Vec<Approval> = approvers.iter().map(|a| approve(&d, a)).collect();
    approvals.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    let unsigned = UnsignedRecord {
        version: RECORD_VERSION,
        seq,
        decision: d,
        approvals,
        recorded_at: Timestamp::now(),
    };
    let signature = notary.sign(&unsigned.notary_message().unwrap()).unwrap();
    unsigned
        .with_notary(NotarySignature {
            key_id: notary.key_id(),
            alg: notary.algorithm(),
            signature,
        })
        .to_bytes()
        .unwrap()
}

/// The policy the tests run with: re-verify signatures, repair minor findings.
pub fn policy() -> VerificationPolicy {
    VerificationPolicy::from_toml("reverify_signatures = true\ngrace_period = \"5m\"\n").unwrap()
}

/// An instant well past the grace period.
pub fn later() -> Timestamp {
    Timestamp::from_unix_nanos(Timestamp::now().unix_nanos() + 3_600 * 1_000_000_000).unwrap()
}
