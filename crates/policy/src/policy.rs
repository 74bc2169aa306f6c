//! The loaded policy: both files read, every check passed, and the checks that span them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use triplicate_core::KeyId;

use crate::doc::Doc;
use crate::error::PolicyError;
use crate::governance::{self, DefaultRule, GovernanceFile, Group, Quorum, QuorumDraft};
use crate::keys::{self, Held, KeyAttestation, KeyEntry, KeysFile, NotaryKey};

/// The key registry's file name inside a policy directory.
pub const KEYS_FILE: &str = "keys.toml";
/// The quorum rules' file name inside a policy directory.
pub const GOVERNANCE_FILE: &str = "governance.toml";

/// Which rule a decision kind was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// The kind's own `[kinds."…"]` entry.
    Kind,
    /// `[default]`, for a kind that is not listed.
    Default,
}

/// A validated key registry and quorum policy.
///
/// Only [`Policy::load`] and [`Policy::from_strs`] build one, and they refuse files with any
/// problem, so a `Policy` always satisfies: every key's id is derived from its key; no key is
/// registered twice; the notary is an Ed25519 key and no approver's; every group a key or a
/// quorum names exists; every threshold is at least 1 and at most the number of distinct
/// holders of unrevoked keys that can count for its group.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) keys: BTreeMap<KeyId, KeyEntry>,
    pub(crate) notary: NotaryKey,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) kinds: BTreeMap<String, Quorum>,
    pub(crate) default: DefaultRule,
}

impl Policy {
    /// Reads `keys.toml` and `governance.toml` from `dir` and validates them.
    ///
    /// Other files in `dir` are ignored: `verification.toml` (the cross-verifier's schedule
    /// and classes) lives there too and has its own loader. Both files are always read and
    /// checked, so the error lists the problems of both.
    pub fn load(dir: &Path) -> Result<Policy, PolicyError> {
        let keys_path = dir.join(KEYS_FILE);
        let gov_path = dir.join(GOVERNANCE_FILE);
        let keys_text = read(&keys_path);
        let gov_text = read(&gov_path);
        let policy = Policy::from_sources(&keys_path, keys_text, &gov_path, gov_text)?;
        tracing::info!(
            dir = %dir.display(),
            keys = policy.keys.len(),
            groups = policy.groups.len(),
            kinds = policy.kinds.len(),
            notary = %policy.notary.key_id,
            "loaded policy"
        );
        Ok(policy)
    }

    /// Validates policy files given as text, as if read from a directory. Problems name the
    /// files `keys.toml` and `governance.toml`.
    pub fn from_strs(keys_toml: &str, governance_toml: &str) -> Result<Policy, PolicyError> {
        Policy::from_sources(
            Path::new(KEYS_FILE),
            Ok(keys_toml.to_owned()),
            Path::new(GOVERNANCE_FILE),
            Ok(governance_toml.to_owned()),
        )
    }

    fn from_sources(
        keys_path: &Path,
        keys_text: Result<String, String>,
        gov_path: &Path,
        gov_text: Result<String, String>,
    ) -> Result<Policy, PolicyError> {
        let (mut keys_doc, mut keys_file) = match &keys_text {
            Ok(text) => {
                let (mut doc, root) = Doc::parse(keys_path, text);
                let file = keys::parse(&mut doc, &root);
                (doc, file)
            }
            Err(reason) => (
                Doc::unreadable(keys_path, reason.clone()),
                KeysFile::default(),
            ),
        };
        let (mut gov_doc, gov_file) = match &gov_text {
            Ok(text) => {
                let (mut doc, root) = Doc::parse(gov_path, text);
                let file = governance::parse(&mut doc, &root);
                (doc, file)
            }
            Err(reason) => (
                Doc::unreadable(gov_path, reason.clone()),
                GovernanceFile::default(),
            ),
        };
        let base = keys_path.parent().unwrap_or(Path::new(""));
        attestations(
            base,
            &mut keys_doc,
            &mut keys_file,
            &mut gov_doc,
            &gov_file,
            std::time::SystemTime::now(),
        );
        cross_check(&mut keys_doc, &keys_file, &mut gov_doc, &gov_file);
        let mut problems = keys_doc.into_problems();
        problems.extend(gov_doc.into_problems());
        if !problems.is_empty() {
            return Err(PolicyError { problems });
        }
        build(keys_file, gov_file).ok_or_else(|| PolicyError {
            // Unreachable: every path that leaves a part unbuilt records a problem. Refusing
            // here rather than panicking keeps that a bug report, not an outage.
            problems: vec![crate::error::Problem {
                file: keys_path.to_path_buf(),
                line: 0,
                reason: "internal error: policy incomplete although no problem was found"
                    .to_owned(),
            }],
        })
    }

    /// The registered approver key with this id.
    pub fn key(&self, key_id: &KeyId) -> Option<&KeyEntry> {
        self.keys.get(key_id)
    }

    /// Every registered approver key, in key id order.
    pub fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values()
    }

    /// The notary's key.
    pub fn notary(&self) -> &NotaryKey {
        &self.notary
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Every group, in name order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The quorum `governance.toml` lists for `kind` itself (not the default).
    pub fn quorum(&self, kind: &str) -> Option<&Quorum> {
        self.kinds.get(kind)
    }

    /// Every listed kind and its quorum, in kind order.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &Quorum)> {
        self.kinds.iter().map(|(k, q)| (k.as_str(), q))
    }

    /// What happens to kinds that are not listed.
    pub fn default_rule(&self) -> &DefaultRule {
        &self.default
    }

    /// The quorum that applies to `kind` and where it comes from; `None` when the kind is not
    /// listed and the default refuses it.
    pub fn rule_for(&self, kind: &str) -> Option<(RuleSource, &Quorum)> {
        match (self.kinds.get(kind), &self.default) {
            (Some(q), _) => Some((RuleSource::Kind, q)),
            (None, DefaultRule::Quorum(q)) => Some((RuleSource::Default, q)),
            (None, DefaultRule::Refuse) => None,
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                "cannot read: no such file (a policy directory holds keys.toml and \
                 governance.toml)"
                    .to_owned()
            }
            _ => format!("cannot read: {e}"),
        })
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|e| {
                format!(
                    "not UTF-8 (invalid byte at offset {}): TOML files are UTF-8",
                    e.utf8_error().valid_up_to()
                )
            })
        })
}

/// Who can count for one group, for the "threshold larger than the group" check.
#[derive(Debug, Default)]
struct Membership {
    keys: usize,
    revoked: usize,
    software: usize,
    unattested: usize,
    /// Distinct holders of the keys that can count. A holder with two keys is one approver
    /// (see `ApprovalFault::DuplicateHolder`), so is counted once.
    holders: BTreeSet<String>,
}

/// Reads `[attestation] roots` and verifies every key's `attestation` bundle against them
/// at `now`: the chain must reach a root, every certificate must be valid now, and the
/// attested key must be the key registered. Verified keys get their [`KeyAttestation`];
/// every failure is a problem on the line that names the file.
///
/// Attestations are checked when the policy is loaded (at start, on reload), not per
/// submission: an attestation is a statement about how a key was generated, fixed once made.
fn attestations(
    base: &Path,
    keys_doc: &mut Doc<'_>,
    keys: &mut KeysFile,
    gov_doc: &mut Doc<'_>,
    gov: &GovernanceFile,
    now: std::time::SystemTime,
) {
    use triplicate_keys::attest::{Attestation, TrustedRoots};
    let any_key = keys.keys.iter().any(|d| d.attestation.is_some());
    let required = gov.groups.iter().any(|g| g.require_attestation);
    if gov.attestation_roots.is_empty() {
        if required {
            gov_doc.push(
                gov.attestation_line,
                "a group requires attestation but no [attestation] roots are configured: \
                 add roots = [\"<Yubico PIV root CA certificate>.pem\"]",
            );
        }
        if any_key {
            for d in keys.keys.iter().filter(|d| d.attestation.is_some()) {
                let line = d.attestation.as_ref().map_or(d.line, |a| a.1);
                keys_doc.push(
                    line,
                    format!(
                        "this key has an attestation but {GOVERNANCE_FILE} configures no \
                         [attestation] roots to verify it against"
                    ),
                );
            }
        }
        return;
    }
    let mut roots_der = Vec::new();
    for (file, line) in &gov.attestation_roots {
        let path = base.join(file);
        match std::fs::read_to_string(&path) {
            Err(e) => gov_doc.push(*line, format!("attestation root {}: {e}", path.display())),
            Ok(text) => match triplicate_keys::attest::read_pem_certificates(&text) {
                Ok(mut certs) => roots_der.append(&mut certs),
                Err(e) => gov_doc.push(*line, format!("attestation root {}: {e}", path.display())),
            },
        }
    }
    let Ok(roots) = TrustedRoots::from_der(roots_der) else {
        return; // every root file had a problem, already reported
    };
    for draft in &mut keys.keys {
        let Some((file, line)) = draft.attestation.clone() else {
            continue;
        };
        let path = base.join(&file);
        let verified = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| Attestation::from_pem_bundle(&text).map_err(|e| e.to_string()))
            .and_then(|a| a.verify(&roots, now).map_err(|e| e.to_string()));
        let v = match verified {
            Ok(v) => v,
            Err(e) => {
                keys_doc.push(line, format!("attestation {}: {e}", path.display()));
                continue;
            }
        };
        let Some(entry) = draft.entry.as_mut() else {
            continue;
        };
        if let Err(e) = v.check_key(&entry.public_key) {
            keys_doc.push(line, format!("attestation {}: {e}", path.display()));
            continue;
        }
        draft.attested = true;
        entry.attestation = Some(KeyAttestation {
            file,
            serial: v.serial,
            firmware: v.firmware.to_string(),
            pin_policy: format!("{:?}", v.pin_policy).to_lowercase(),
            touch_policy: format!("{:?}", v.touch_policy).to_lowercase(),
            slot: v.slot.map(|s| format!("{s:02x}")),
            root: v.root_subject.clone(),
        });
        tracing::debug!(key_id = %entry.key_id, serial = v.serial, "verified key attestation");
    }
}

/// Checks that need both files: unknown groups, and thresholds no set of keys could meet.
///
/// A check is skipped when what it reads could not be read (a file with TOML syntax errors, a
/// key whose `groups` is not a list), so one typo does not bury the real problems under
/// "unknown group" or "threshold larger than the group" reports that fixing it would clear.
fn cross_check(
    keys_doc: &mut Doc<'_>,
    keys: &KeysFile,
    gov_doc: &mut Doc<'_>,
    gov: &GovernanceFile,
) {
    let groups: BTreeMap<&str, &Group> = gov.groups.iter().map(|g| (g.name.as_str(), g)).collect();

    if gov_doc.syntax_ok {
        for draft in &keys.keys {
            for (group, line) in &draft.groups {
                if !groups.contains_key(group.as_str()) {
                    keys_doc.push(
                        *line,
                        format!(
                            "unknown group `{group}`: {GOVERNANCE_FILE} declares {}",
                            list(groups.keys())
                        ),
                    );
                }
            }
        }
    }

    // Load-time checks do not read the clock, so validity windows are not considered here;
    // revocations are, since a revoked key never counts again.
    let mut members: BTreeMap<&str, Membership> = BTreeMap::new();
    for draft in &keys.keys {
        for (group, _) in &draft.groups {
            let Some(g) = groups.get(group.as_str()) else {
                continue;
            };
            let m = members.entry(group.as_str()).or_default();
            m.keys += 1;
            if draft.revoked {
                m.revoked += 1;
            } else if g.require_hardware && draft.held == Some(Held::Software) {
                m.software += 1;
            } else if g.require_attestation && !draft.attested {
                m.unattested += 1;
            } else {
                // A key whose holder failed to parse still counts, as its own holder, so one
                // mistake does not also show up as a too-small group.
                m.holders.insert(
                    draft
                        .holder
                        .clone()
                        .unwrap_or_else(|| format!("(key at line {})", draft.line)),
                );
            }
        }
    }
    for draft in &keys.keys {
        let Some(entry) = &draft.entry else { continue };
        for group in &entry.groups {
            if groups
                .get(group.as_str())
                .is_some_and(|g| g.require_hardware)
                && !entry.held.is_hardware()
            {
                tracing::warn!(
                    key_id = %entry.key_id,
                    group,
                    "a software key is in a group that requires hardware keys; it will not count there"
                );
            }
        }
    }

    // Group sizes are only known when keys.toml parsed and every key's groups could be read;
    // otherwise a too-small group may just be one whose members we could not see.
    let sizes_known = keys_doc.syntax_ok && keys.keys.iter().all(|d| d.groups_known);
    let mut check_quorum = |quorum: &QuorumDraft| {
        for r in &quorum.requirements {
            if !groups.contains_key(r.group.as_str()) {
                gov_doc.push(
                    r.group_line,
                    format!(
                        "unknown group `{}`: declare it as [groups.{}]; declared: {}",
                        r.group,
                        r.group,
                        list(groups.keys())
                    ),
                );
                continue;
            }
            if !sizes_known {
                continue;
            }
            let empty = Membership::default();
            let m = members.get(r.group.as_str()).unwrap_or(&empty);
            let can_count = m.holders.len();
            if r.threshold > can_count {
                let mut why = vec![format!(
                    "{} key{} in {KEYS_FILE}",
                    m.keys,
                    if m.keys == 1 { "" } else { "s" }
                )];
                if m.revoked > 0 {
                    why.push(format!("{} revoked", m.revoked));
                }
                if m.software > 0 {
                    why.push(format!(
                        "{} held in software, which this group does not count \
                         (require_hardware = true)",
                        m.software
                    ));
                }
                if m.unattested > 0 {
                    why.push(format!(
                        "{} without a verified attestation, which this group does not count \
                         (require_attestation = true)",
                        m.unattested
                    ));
                }
                gov_doc.push(
                    r.threshold_line,
                    format!(
                        "threshold {} is larger than group `{}`, which has {can_count} \
                         approver{} who can count ({})",
                        r.threshold,
                        r.group,
                        if can_count == 1 { "" } else { "s" },
                        why.join(", "),
                    ),
                );
            }
        }
    };
    for (_, quorum) in &gov.kinds {
        check_quorum(quorum);
    }
    if let Some(quorum) = &gov.default {
        check_quorum(quorum);
    }
}

fn list<'a>(names: impl Iterator<Item = &'a &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "no groups".to_owned()
    } else {
        names.join(", ")
    }
}

/// Assembles the policy once no problem was found; `None` if some part is missing (which the
/// parsers have then reported).
fn build(keys: KeysFile, gov: GovernanceFile) -> Option<Policy> {
    let mut entries = BTreeMap::new();
    for draft in keys.keys {
        let entry = draft.entry?;
        entries.insert(entry.key_id.clone(), entry);
    }
    let mut kinds = BTreeMap::new();
    for (kind, quorum) in gov.kinds {
        if !quorum.complete {
            return None;
        }
        kinds.insert(kind, quorum.build());
    }
    let default = match gov.default {
        None => DefaultRule::Refuse,
        Some(q) if q.complete => DefaultRule::Quorum(q.build()),
        Some(_) => return None,
    };
    Some(Policy {
        keys: entries,
        notary: keys.notary?,
        groups: gov
            .groups
            .into_iter()
            .map(|g| (g.name.clone(), g))
            .collect(),
        kinds,
        default,
    })
}
