//! The key registry: `keys.toml`, the approvers' keys and the notary's.
//!
//! Format (see the crate README for the full description):
//!
//! ```toml
//! [notary]
//! key_id = "…"           # optional; must equal KeyId::derive(alg, public_key)
//! alg = "ed25519"        # the notary signs checkpoints (C2SP signed notes): Ed25519 only
//! public_key = "…"       # standard base64
//! held = "yubikey-piv"   # software | pkcs11 | yubikey-piv
//!
//! [[key]]
//! key_id = "…"           # optional, checked as for the notary
//! alg = "ed25519"        # ed25519 | ecdsa-p256
//! public_key = "…"
//! holder = "Alice Example <alice@example.org>"
//! groups = ["board"]
//! held = "yubikey-piv"
//! valid_from = 2026-01-01T00:00:00Z
//! valid_until = 2028-01-01T00:00:00Z        # optional
//! revoked = { at = 2026-06-01T00:00:00Z, reason = "token lost" }   # optional
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use triplicate_core::{Algorithm, KeyId, Timestamp};
use triplicate_keys::PublicKey;

use crate::doc::{self, Doc, Table};
use crate::evaluate::ApprovalFault;

/// How an approver's (or the notary's) private key is held.
///
/// Groups with `require_hardware = true` count only keys held in hardware: a software key's
/// secret sits in a file and in process memory, so anyone who copies the file can approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Held {
    /// A key file on disk (`triplicate keys generate`). Development and tests only.
    Software,
    /// A PKCS#11 token or HSM (SoftHSM2 in tests, ykcs11 or a vendor module in production).
    Pkcs11,
    /// A YubiKey's PIV applet (slot 9c), signing on the token.
    YubikeyPiv,
}

impl Held {
    /// The name used in `keys.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Software => "software",
            Held::Pkcs11 => "pkcs11",
            Held::YubikeyPiv => "yubikey-piv",
        }
    }

    /// Whether the secret key lives in hardware that does not give it out.
    pub fn is_hardware(self) -> bool {
        !matches!(self, Held::Software)
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Held {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "software" => Ok(Held::Software),
            "pkcs11" => Ok(Held::Pkcs11),
            "yubikey-piv" => Ok(Held::YubikeyPiv),
            other => Err(format!(
                "unknown `held` value {other:?}; expected \"software\", \"pkcs11\" or \"yubikey-piv\""
            )),
        }
    }
}

impl Serialize for Held {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A key's revocation: from `at` on, nothing it signs counts, whatever time the signature
/// claims (see [`KeyEntry::fault_at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Revocation {
    pub at: Timestamp,
    pub reason: String,
}

/// One approver's key, as `keys.toml` registers it. Built only by the loader, so every entry
/// is valid: its key parses, its id is derived from it, its groups exist, its validity window
/// is not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyEntry {
    /// `KeyId::derive(alg, public_key)`.
    pub key_id: KeyId,
    #[serde(serialize_with = "public_key_b64")]
    pub public_key: PublicKey,
    /// Who holds the key. Two keys with the same holder are one approver: see
    /// [`ApprovalFault::DuplicateHolder`].
    pub holder: String,
    /// The governance groups the key approves for.
    pub groups: Vec<String>,
    pub held: Held,
    /// First instant at which the key may sign.
    pub valid_from: Timestamp,
    /// First instant at which the key may no longer sign; `None` for no end.
    pub valid_until: Option<Timestamp>,
    pub revoked: Option<Revocation>,
    /// What a verified YubiKey attestation says about the key (`attestation = "file.pem"`),
    /// or `None` for keys without one. Groups with `require_attestation` count only keys that
    /// have one.
    pub attestation: Option<KeyAttestation>,
}

/// A key's verified attestation: the device that generated the key, as the device's own
/// attestation certificate (chained to a configured root) states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyAttestation {
    /// The PEM bundle, as `keys.toml` names it.
    pub file: String,
    /// The YubiKey's serial number.
    pub serial: u32,
    /// The YubiKey's firmware version.
    pub firmware: String,
    /// The slot's PIN policy (`never`, `once`, `always`).
    pub pin_policy: String,
    /// The slot's touch policy (`never`, `always`, `cached`).
    pub touch_policy: String,
    /// The PIV slot, e.g. `9c`, when the certificate names it.
    pub slot: Option<String>,
    /// The trusted root the chain ends at.
    pub root: String,
}

fn public_key_b64<S: Serializer>(k: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&k.to_base64())
}

impl KeyEntry {
    /// The key's algorithm.
    pub fn alg(&self) -> Algorithm {
        self.public_key.alg()
    }

    /// Whether the key approves for `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Every reason the key may not approve a submission whose approval says it was signed at
    /// `signed_at` and which the service accepts at `now`.
    ///
    /// The key must be usable at both instants. `signed_at` is the approver's claim, so it
    /// cannot be trusted on its own: a stolen key that was revoked, or a key that has expired,
    /// could otherwise sign with a back-dated `signed_at` and still count. So a key revoked or
    /// expired at or before *either* instant is refused, and so is a key not yet valid at
    /// either; an approval gathered just before its key expired must be submitted before then.
    pub fn fault_at(&self, signed_at: Timestamp, now: Timestamp) -> Vec<(ApprovalFault, String)> {
        let earliest = signed_at.min(now);
        let latest = signed_at.max(now);
        let when = format!("approval signed at {signed_at}, submitted at {now}");
        let mut faults = Vec::new();
        if earliest < self.valid_from {
            faults.push((
                ApprovalFault::NotYetValid,
                format!(
                    "key {} is valid from {} ({when})",
                    self.key_id, self.valid_from
                ),
            ));
        }
        if let Some(until) = self.valid_until.filter(|until| *until <= latest) {
            faults.push((
                ApprovalFault::Expired,
                format!("key {} expired at {until} ({when})", self.key_id),
            ));
        }
        if let Some(r) = self.revoked.as_ref().filter(|r| r.at <= latest) {
            faults.push((
                ApprovalFault::Revoked,
                format!(
                    "key {} was revoked at {} ({}) ({when})",
                    self.key_id, r.at, r.reason
                ),
            ));
        }
        faults
    }
}

/// The notary's key: it signs records and checkpoints, so receipts are verified with it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NotaryKey {
    /// `KeyId::derive(Algorithm::Ed25519, public_key)`.
    pub key_id: KeyId,
    /// Always Ed25519: checkpoints are C2SP signed notes, which have no other key type.
    #[serde(serialize_with = "public_key_b64")]
    pub public_key: PublicKey,
    pub held: Held,
}

/// What the loader learned about one `[[key]]` table, even a partly broken one, so that checks
/// across files (unknown groups, group sizes) still run and do not cascade.
#[derive(Debug)]
pub(crate) struct KeyDraft {
    /// Line of the `[[key]]` header.
    pub line: usize,
    /// The finished entry when every field of the table was valid.
    pub entry: Option<KeyEntry>,
    /// The key's id when its key material was valid, even if other fields were not.
    pub key_id: Option<KeyId>,
    /// Each named group, with the line it is named on.
    pub groups: Vec<(String, usize)>,
    /// False when `groups` is missing or not a list of strings: the key might be in any group.
    pub groups_known: bool,
    pub holder: Option<String>,
    pub held: Option<Held>,
    pub revoked: bool,
    /// `attestation`: the bundle's path as written and the line it is on.
    pub attestation: Option<(String, usize)>,
    /// Whether that attestation verified (set by the policy loader, which knows the roots).
    pub attested: bool,
}

/// What the loader read from `keys.toml`.
#[derive(Debug, Default)]
pub(crate) struct KeysFile {
    pub notary: Option<NotaryKey>,
    pub keys: Vec<KeyDraft>,
}

const TOP_FIELDS: &[&str] = &["notary", "key"];
const NOTARY_FIELDS: &[&str] = &["key_id", "alg", "public_key", "held"];
const KEY_FIELDS: &[&str] = &[
    "key_id",
    "alg",
    "public_key",
    "holder",
    "groups",
    "held",
    "valid_from",
    "valid_until",
    "revoked",
    "attestation",
];
const REVOKED_FIELDS: &[&str] = &["at", "reason"];

/// Reads `keys.toml`, recording every problem in `doc`.
pub(crate) fn parse(doc: &mut Doc<'_>, root: &toml::Spanned<toml::de::DeTable<'_>>) -> KeysFile {
    let top = Table::new(root.get_ref(), root.span(), "keys.toml");
    top.deny_unknown(doc, TOP_FIELDS);
    let mut out = KeysFile::default();
    match top.get("notary") {
        Some(v) => {
            if let Some(t) = Table::from_value(doc, v, "[notary]") {
                out.notary = parse_notary(doc, &t);
            }
        }
        None if doc.syntax_ok => doc.push(
            1,
            "missing [notary] table: the registry must name the notary's public key",
        ),
        None => {}
    }
    if let Some(v) = top.get("key") {
        match v.get_ref() {
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) = Table::from_value(doc, item, format!("[[key]] #{}", i + 1)) {
                        out.keys.push(parse_key(doc, &t));
                    }
                }
            }
            other => doc.at(
                v.span(),
                format!(
                    "`key` must be an array of tables ([[key]]), not {}",
                    doc::article(other.type_str())
                ),
            ),
        }
    }
    check_duplicates(doc, &out);
    out
}

/// Algorithm, public key and (optional) stated key id, checked against each other.
fn parse_key_material(doc: &mut Doc<'_>, t: &Table<'_, '_>) -> Option<PublicKey> {
    let alg = t.required(doc, "alg").and_then(|v| {
        let s = doc::string(doc, "alg", v)?;
        match s.parse::<Algorithm>() {
            Ok(a) => Some(a),
            Err(e) => {
                doc.at(v.span(), e.to_string());
                None
            }
        }
    });
    let public_key = t.required(doc, "public_key").and_then(|v| {
        let text = doc::string(doc, "public_key", v)?;
        // Without a known algorithm there is no length or curve to check the key against.
        let alg = alg?;
        match PublicKey::from_base64(alg, text) {
            Ok(k) => Some(k),
            Err(e) => {
                doc.at(v.span(), format!("malformed `public_key`: {e}"));
                None
            }
        }
    });
    if let Some(v) = t.get("key_id") {
        if let Some(text) = doc::string(doc, "key_id", v) {
            match text.parse::<KeyId>() {
                Err(e) => doc.at(v.span(), e.to_string()),
                Ok(stated) => {
                    if let Some(k) = &public_key {
                        let derived = k.key_id();
                        if stated != derived {
                            doc.at(
                                v.span(),
                                format!(
                                    "key_id {stated} does not match the public key: \
                                     KeyId::derive({}, public_key) is {derived}",
                                    k.alg()
                                ),
                            );
                            return None;
                        }
                    }
                }
            }
        }
    }
    public_key
}

fn parse_held(doc: &mut Doc<'_>, t: &Table<'_, '_>) -> Option<Held> {
    let v = t.required(doc, "held")?;
    let s = doc::string(doc, "held", v)?;
    match s.parse::<Held>() {
        Ok(h) => Some(h),
        Err(e) => {
            doc.at(v.span(), e);
            None
        }
    }
}

fn parse_notary(doc: &mut Doc<'_>, t: &Table<'_, '_>) -> Option<NotaryKey> {
    t.deny_unknown(doc, NOTARY_FIELDS);
    let key = parse_key_material(doc, t);
    let held = parse_held(doc, t);
    let key = key.filter(|k| {
        if k.alg() == Algorithm::Ed25519 {
            return true;
        }
        let span = t.get("alg").map_or(t.span.clone(), toml::Spanned::span);
        doc.at(
            span,
            format!(
                "the notary key must be ed25519, not {}: checkpoints are C2SP signed notes, \
                 which only define Ed25519 keys",
                k.alg()
            ),
        );
        false
    })?;
    Some(NotaryKey {
        key_id: key.key_id(),
        public_key: key,
        held: held?,
    })
}

fn parse_key(doc: &mut Doc<'_>, t: &Table<'_, '_>) -> KeyDraft {
    t.deny_unknown(doc, KEY_FIELDS);
    let line = doc.line(t.span.start);
    let public_key = parse_key_material(doc, t);
    let holder = t
        .required(doc, "holder")
        .and_then(|v| doc::non_empty_string(doc, "holder", v))
        .map(str::to_owned);
    let mut groups_ok = true;
    let mut groups_known = true;
    let mut groups: Vec<(String, usize)> = Vec::new();
    match t.required(doc, "groups") {
        None => (groups_ok, groups_known) = (false, false),
        Some(v) => match doc::string_array(doc, "groups", v) {
            None => (groups_ok, groups_known) = (false, false),
            Some(names) => {
                if names.is_empty() {
                    doc.at(
                        v.span(),
                        "`groups` is empty: a key in no group can approve nothing",
                    );
                    groups_ok = false;
                }
                for (name, span) in names {
                    let name_line = doc.line(span.start);
                    if groups.iter().any(|(g, _)| g == name) {
                        doc.at(span, format!("group `{name}` is listed twice"));
                        groups_ok = false;
                    } else {
                        groups.push((name.to_owned(), name_line));
                    }
                }
            }
        },
    }
    let held = parse_held(doc, t);
    let valid_from = t
        .required(doc, "valid_from")
        .and_then(|v| doc::instant(doc, "valid_from", v));
    let mut until_ok = true;
    let valid_until = match t.get("valid_until") {
        None => None,
        Some(v) => {
            let until = doc::instant(doc, "valid_until", v);
            until_ok = until.is_some();
            if let (Some(from), Some(u)) = (valid_from, until) {
                if u <= from {
                    doc.at(
                        v.span(),
                        format!(
                            "valid_until ({u}) is not after valid_from ({from}): the key would \
                             never be valid"
                        ),
                    );
                    until_ok = false;
                }
            }
            until
        }
    };
    let (revoked, revoked_ok) = match t.get("revoked") {
        None => (None, true),
        Some(v) => match parse_revoked(doc, v) {
            Some(r) => (Some(r), true),
            None => (None, false),
        },
    };
    let attestation = t.get("attestation").and_then(|v| {
        let file = doc::non_empty_string(doc, "attestation", v)?.to_owned();
        if held.is_some_and(|h| h != Held::YubikeyPiv) {
            doc.at(
                v.span(),
                "an attested key is held on a YubiKey: set held = \"yubikey-piv\"",
            );
        }
        Some((file, doc.line(v.span().start)))
    });
    let key_id = public_key.as_ref().map(PublicKey::key_id);
    let entry = match (public_key, &holder, held, valid_from) {
        (Some(public_key), Some(holder), Some(held), Some(valid_from))
            if groups_ok && until_ok && revoked_ok =>
        {
            Some(KeyEntry {
                key_id: public_key.key_id(),
                public_key,
                holder: holder.clone(),
                groups: groups.iter().map(|(g, _)| g.clone()).collect(),
                held,
                valid_from,
                valid_until,
                revoked,
                attestation: None,
            })
        }
        _ => None,
    };
    KeyDraft {
        line,
        key_id,
        entry,
        groups,
        groups_known,
        holder,
        held,
        // A `revoked` table that failed to parse still says the key is revoked.
        revoked: t.get("revoked").is_some(),
        attestation,
        attested: false,
    }
}

fn parse_revoked(doc: &mut Doc<'_>, v: &doc::Value<'_>) -> Option<Revocation> {
    let t = Table::from_value(doc, v, "`revoked`")?;
    t.deny_unknown(doc, REVOKED_FIELDS);
    let at = t
        .required(doc, "at")
        .and_then(|v| doc::instant(doc, "revoked.at", v));
    let reason = t
        .required(doc, "reason")
        .and_then(|v| doc::non_empty_string(doc, "revoked.reason", v));
    Some(Revocation {
        at: at?,
        reason: reason?.to_owned(),
    })
}

/// One key registered twice is refused: two entries could disagree on its holder, groups or
/// validity, and which one wins would be an accident of file order. The notary's key may not
/// be an approver's either: the service holds it, and a service that could approve would need
/// no approvers.
fn check_duplicates(doc: &mut Doc<'_>, file: &KeysFile) {
    let mut first: BTreeMap<&KeyId, usize> = BTreeMap::new();
    for draft in &file.keys {
        let Some(key_id) = &draft.key_id else {
            continue;
        };
        match first.get(key_id) {
            Some(line) => doc.push(
                draft.line,
                format!("duplicate key id {key_id}: the same key is registered at line {line}"),
            ),
            None => {
                first.insert(key_id, draft.line);
            }
        }
        if file.notary.as_ref().is_some_and(|n| n.key_id == *key_id) {
            doc.push(
                draft.line,
                format!(
                    "key {key_id} is the notary's key; the notary must not also be an approver"
                ),
            );
        }
    }
}
