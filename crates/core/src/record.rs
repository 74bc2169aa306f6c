//! The governance record: decisions, approvals, the notarised record, and their validation.
//!
//! Parsing is strict (unknown fields refused, canonical text for ids and times) so that a parsed
//! value re-serialises to exactly the bytes it was signed as. Absent, `null` and empty optional
//! fields (`supersedes`, `attachments`, an attachment's `name`) are the same thing, and the
//! canonical form omits them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::canonical::{object_jcs, CanonicalError};
use crate::digest::{approval_message, domain_hash, leaf_hash, DECISION_DOMAIN, RECORD_DOMAIN};
use crate::error::{parse_json, Problems, ValidationError};
use crate::limits::*;
use crate::{Algorithm, Hash, KeyId, Timestamp};

/// The record format version this code writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// UUIDs as canonical lowercase hyphenated text only.
mod strict_uuid {
    use super::*;

    pub fn serialize<S: Serializer>(u: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.hyphenated().to_string())
    }

    pub fn parse(s: &str) -> Result<Uuid, String> {
        let u = Uuid::try_parse(s).map_err(|e| format!("{s:?} is not a UUID: {e}"))?;
        // Compared in a stack buffer: every record and submission parsed comes through here.
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let canonical = u.hyphenated().encode_lower(&mut buf);
        if canonical != s {
            return Err(format!("{s:?} is not canonical; write {canonical:?}"));
        }
        Ok(u)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(u: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
            match u {
                Some(u) => super::serialize(u, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => parse(&s).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

/// Bytes as standard, padded base64, decoded strictly.
pub(crate) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(&s)
            .map_err(|e| serde::de::Error::custom(format!("not standard padded base64: {e}")))
    }
}

/// Payloads whose objects name a member twice are refused. RFC 8785 canonicalises I-JSON, which
/// forbids duplicate names (RFC 7493 §2.3); accepting them would keep the last value silently
/// while a parser that keeps the first would read a different payload from the one signed.
mod unique_members {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde::Deserializer;
    use serde_json::{Map, Number, Value};

    struct AnyValue;

    impl<'de> DeserializeSeed<'de> for AnyValue {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for AnyValue {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
            // JCS writes an integral float as an integer (`1.0`, `1e2` and `-0.0` become `1`,
            // `100` and `0`), and those bytes read back as an integer `Number`. Holding it as an
            // integer from the start makes a parsed decision equal to the one its canonical bytes
            // give back, not merely byte-identical.
            if n.fract() == 0.0 && n.abs() <= crate::limits::SAFE_INTEGER {
                return Ok(Value::from(n as i64));
            }
            Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| E::custom("numbers must be finite"))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(AnyValue)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
            object(map).map(Value::Object)
        }
    }

    fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Map<String, Value>, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format!(
                    "member name {name:?} appears twice in one object"
                )));
            }
            let value = map.next_value_seed(AnyValue)?;
            members.insert(name, value);
        }
        Ok(members)
    }

    struct Object;

    impl<'de> Visitor<'de> for Object {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            object(map)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        d.deserialize_map(Object)
    }
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// An empty name is no name: the canonical form omits both, so a record built in code with
/// `Some("")` has the bytes it will have when read back.
fn no_name(name: &Option<String>) -> bool {
    name.as_deref().is_none_or(str::is_empty)
}

/// A document referenced by digest rather than carried in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// SHA-256 of the document, 64 lowercase hex digits.
    pub sha256: String,
    /// `type/subtype`, lowercase.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// A human name for the document.
    #[serde(default, skip_serializing_if = "no_name")]
    pub name: Option<String>,
}

/// What people propose and approvers sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// UUIDv7, canonical text.
    #[serde(with = "strict_uuid")]
    pub id: Uuid,
    /// Dotted lowercase name, e.g. `budget.approval`.
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Kind-specific data, a JSON object.
    #[serde(deserialize_with = "unique_members::deserialize")]
    pub payload: Map<String, Value>,
    pub proposed_at: Timestamp,
    /// The decision this one replaces.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "strict_uuid::option"
    )]
    pub supersedes: Option<Uuid>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub attachments: Vec<Attachment>,
}

/// One approver's signature over a decision (see [`approval_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub key_id: KeyId,
    pub alg: Algorithm,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    pub signed_at: Timestamp,
}

/// The notary's signature over a record's other fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotarySignature {
    pub key_id: KeyId,
    pub alg: Algorithm,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// A record before the notary signs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnsignedRecord {
    pub version: u32,
    pub seq: u64,
    pub decision: Decision,
    pub approvals: Vec<Approval>,
    pub recorded_at: Timestamp,
}

/// What the three stores hold. `record_bytes = JCS(record)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub version: u32,
    /// The record's index in the ledger.
    pub seq: u64,
    pub decision: Decision,
    pub approvals: Vec<Approval>,
    pub recorded_at: Timestamp,
    pub notary: NotarySignature,
}

fn is_kind(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut c = part.chars();
            matches!(c.next(), Some('a'..='z'))
                && c.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn check_numbers(path: &str, v: &Value, p: &mut Problems) {
    match v {
        Value::Number(n) => {
            let big = if let Some(i) = n.as_i64() {
                i.unsigned_abs() > SAFE_INTEGER as u64
            } else if let Some(u) = n.as_u64() {
                u > SAFE_INTEGER as u64
            } else {
                n.as_f64().is_none_or(|f| f.abs() > SAFE_INTEGER)
            };
            if big {
                p.push(
                    path,
                    format!(
                        "{n} is outside ±2^53: numbers outside ±2^53 cannot be reproduced \
                         exactly by every store and language; send it as a string"
                    ),
                );
            } else if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                // Parsing never produces these (it reads `2.0` as the integer 2); a payload built
                // in code can. Its bytes would say `2`, which reads back as a different value, so
                // the record would not equal itself after a trip through a store.
                p.push(
                    path,
                    format!(
                        "{n} is an integer held as a float; canonical JSON writes it as {}, \
                         which reads back as an integer: build it as an integer",
                        f as i64
                    ),
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_numbers(&format!("{path}[{i}]"), x, p);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                check_numbers(&format!("{path}.{k}"), x, p);
            }
        }
        _ => {}
    }
}

fn check_text(path: &str, s: &str, allow_newlines: bool, p: &mut Problems) {
    if s.chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
    {
        p.push(path, "contains control characters");
    }
}

impl Attachment {
    fn check(&self, path: &str, p: &mut Problems) {
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            p.push(
                format!("{path}.sha256"),
                "must be 64 lowercase hex digits (a SHA-256 digest)",
            );
        }
        let mt = &self.media_type;
        let ok_mt = mt.len() <= MEDIA_TYPE_MAX_LEN
            && mt.split_once('/').is_some_and(|(a, b)| {
                let tok = |t: &str| {
                    !t.is_empty()
                        && t.bytes().all(|c| {
                            c.is_ascii_lowercase()
                                || c.is_ascii_digit()
                                || b"!#$&-^_.+".contains(&c)
                        })
                };
                tok(a) && tok(b)
            });
        if !ok_mt {
            p.push(
                format!("{path}.media_type"),
                format!(
                    "must be a lowercase type/subtype of at most {MEDIA_TYPE_MAX_LEN} characters"
                ),
            );
        }
        // Compared as integers: `2^53 + 1` rounds to `2^53` as a float, and JCS would write it
        // as 9007199254740992, so the record would not read back as itself.
        if self.size > SAFE_INTEGER as u64 {
            p.push(format!("{path}.size"), "is larger than 2^53");
        }
        if let Some(name) = &self.name {
            if name.chars().count() > TITLE_MAX_CHARS {
                p.push(
                    format!("{path}.name"),
                    format!("is longer than {TITLE_MAX_CHARS} characters"),
                );
            }
            check_text(&format!("{path}.name"), name, false, p);
        }
    }
}

impl Decision {
    /// Parses and validates a decision from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Decision, ValidationError> {
        let mut d: Decision = parse_json("", bytes)?;
        d.normalise();
        d.validate("")?;
        Ok(d)
    }

    pub(crate) fn normalise(&mut self) {
        for a in &mut self.attachments {
            if a.name.as_deref() == Some("") {
                a.name = None;
            }
        }
    }

    /// Checks every rule; `prefix` is the field path of the decision (`""` or `"decision"`).
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        self.check(prefix, &mut p);
        p.into_result()
    }

    fn check(&self, prefix: &str, p: &mut Problems) {
        let f = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if self.id.get_version_num() != 7 {
            p.push(
                f("id"),
                format!(
                    "must be a UUIDv7 (time-ordered); this is version {}",
                    self.id.get_version_num()
                ),
            );
        } else if self.id.get_variant() != uuid::Variant::RFC4122 {
            p.push(
                f("id"),
                format!(
                    "must be an RFC 9562 UUID; this one has the {:?} variant",
                    self.id.get_variant()
                ),
            );
        }
        if self.kind.len() > KIND_MAX_LEN || !is_kind(&self.kind) {
            p.push(
                f("kind"),
                format!(
                    "must be a dotted lowercase name like \"budget.approval\" \
                     (letters, digits, '_'; each part starts with a letter; at most {KIND_MAX_LEN} characters)"
                ),
            );
        }
        let title_chars = self.title.chars().count();
        if title_chars == 0 || self.title.trim().is_empty() {
            p.push(f("title"), "must not be empty");
        } else if title_chars > TITLE_MAX_CHARS {
            p.push(
                f("title"),
                format!("is {title_chars} characters; at most {TITLE_MAX_CHARS} are allowed"),
            );
        }
        check_text(&f("title"), &self.title, false, p);
        if self.body.len() > BODY_MAX_BYTES {
            p.push(
                f("body"),
                format!(
                    "is {} bytes; at most {BODY_MAX_BYTES} are allowed (reference larger documents from attachments)",
                    self.body.len()
                ),
            );
        }
        check_text(&f("body"), &self.body, true, p);
        // Walk the map in place: cloning a payload per record was a third of validation.
        let payload_path = f("payload");
        for (k, v) in &self.payload {
            check_numbers(&format!("{payload_path}.{k}"), v, p);
        }
        let d = 1 + self.payload.values().map(depth).max().unwrap_or(0);
        if d > PAYLOAD_MAX_DEPTH {
            p.push(
                f("payload"),
                format!("nests {d} levels deep; at most {PAYLOAD_MAX_DEPTH} are allowed"),
            );
        }
        let canonical_len = object_jcs(&self.payload).len();
        if canonical_len > PAYLOAD_MAX_BYTES {
            p.push(
                f("payload"),
                format!(
                    "is {canonical_len} bytes canonicalised; at most {PAYLOAD_MAX_BYTES} are allowed (reference larger documents from attachments)"
                ),
            );
        }
        if self.supersedes == Some(self.id) {
            p.push(f("supersedes"), "a decision cannot supersede itself");
        }
        if self.attachments.len() > ATTACHMENTS_MAX {
            p.push(
                f("attachments"),
                format!(
                    "has {} entries; at most {ATTACHMENTS_MAX} are allowed",
                    self.attachments.len()
                ),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.attachments.iter().enumerate() {
            let path = f(&format!("attachments[{i}]"));
            a.check(&path, p);
            if !seen.insert(a.sha256.as_str()) {
                p.push(format!("{path}.sha256"), "duplicates an earlier attachment");
            }
        }
    }

    /// RFC 8785 canonical bytes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(crate::jcs::decision_bytes(self))
    }

    /// `SHA-256("triplicate/decision/v1\n" || JCS(decision))`.
    pub fn digest(&self) -> Result<Hash, CanonicalError> {
        Ok(domain_hash(DECISION_DOMAIN, &self.canonical_bytes()?))
    }
}

impl Approval {
    /// Parses one approval from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Approval, ValidationError> {
        let a: Approval = parse_json("", bytes)?;
        let mut p = Problems::default();
        a.check("", &mut p);
        p.into_result()?;
        Ok(a)
    }

    fn check(&self, path: &str, p: &mut Problems) {
        let expected = self.alg.signature_len();
        if self.signature.len() != expected {
            let field = if path.is_empty() {
                "signature".to_owned()
            } else {
                format!("{path}.signature")
            };
            p.push(
                field,
                format!(
                    "is {} bytes; an {} signature is {expected}",
                    self.signature.len(),
                    self.alg
                ),
            );
        }
    }

    /// The message this approval's key signed, for a decision with `decision_digest`.
    pub fn message(&self, decision_digest: &Hash) -> Result<Vec<u8>, CanonicalError> {
        approval_message(decision_digest, &self.key_id, self.alg, &self.signed_at)
    }
}

fn check_approvals(path: &str, approvals: &[Approval], p: &mut Problems) {
    if approvals.is_empty() {
        p.push(path, "a record needs at least one approval");
    }
    if approvals.len() > APPROVALS_MAX {
        p.push(
            path,
            format!(
                "has {} approvals; at most {APPROVALS_MAX} are allowed",
                approvals.len()
            ),
        );
    }
    for (i, a) in approvals.iter().enumerate() {
        let ap = format!("{path}[{i}]");
        a.check(&ap, p);
        if i > 0 {
            let prev = &approvals[i - 1].key_id;
            if *prev == a.key_id {
                p.push(
                    format!("{ap}.key_id"),
                    format!("key {} approves twice", a.key_id),
                );
            } else if *prev > a.key_id {
                p.push(
                    format!("{ap}.key_id"),
                    "approvals must be sorted by key_id (canonical order)",
                );
            }
        }
    }
}

/// What a submitter sends: a decision and its approvals, in any order.
///
/// The service judges the approvals in the order submitted (so a refusal can name "approval 2"
/// as the submitter numbered it), then records them sorted by `key_id`, the canonical order.
/// Duplicate approvers are the policy's to refuse, per approval, not a parse error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub decision: Decision,
    pub approvals: Vec<Approval>,
}

impl Submission {
    /// Parses and validates a submission: every rule of the decision, and each approval's own
    /// rules (count, signature length), with every problem reported at once.
    pub fn from_json(bytes: &[u8]) -> Result<Submission, ValidationError> {
        let mut s: Submission = parse_json("", bytes)?;
        s.decision.normalise();
        let mut p = Problems::default();
        s.decision.check("decision", &mut p);
        if s.approvals.is_empty() {
            p.push("approvals", "a record needs at least one approval");
        }
        if s.approvals.len() > APPROVALS_MAX {
            p.push(
                "approvals",
                format!(
                    "has {} approvals; at most {APPROVALS_MAX} are allowed",
                    s.approvals.len()
                ),
            );
        }
        for (i, a) in s.approvals.iter().enumerate() {
            a.check(&format!("approvals[{i}]"), &mut p);
        }
        p.into_result()?;
        Ok(s)
    }

    /// The approvals in canonical order (sorted by `key_id`), as a record carries them.
    pub fn canonical_approvals(&self) -> Vec<Approval> {
        let mut a = self.approvals.clone();
        a.sort_by(|x, y| x.key_id.cmp(&y.key_id));
        a
    }
}

fn check_record_fields(
    version: u32,
    seq: u64,
    decision: &Decision,
    approvals: &[Approval],
    p: &mut Problems,
) {
    if version != RECORD_VERSION {
        p.push("version", format!("must be {RECORD_VERSION}"));
    }
    // Compared as integers: `2^53 + 1 as f64` is 2^53, so a float comparison lets it through,
    // and JCS would then write the record with seq 9007199254740992.
    if seq > SAFE_INTEGER as u64 {
        p.push("seq", "is larger than 2^53");
    }
    decision.check("decision", p);
    check_approvals("approvals", approvals, p);
}

impl UnsignedRecord {
    /// Checks every rule of the fields (the size of the whole record is checked on [`Record`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        check_record_fields(
            self.version,
            self.seq,
            &self.decision,
            &self.approvals,
            &mut p,
        );
        p.into_result()
    }

    /// What the notary signs: `"triplicate/record/v1\n" || JCS(record without "notary")`.
    pub fn notary_message(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(crate::jcs::unsigned_bytes(RECORD_DOMAIN, self))
    }

    /// The record with the notary's signature.
    pub fn with_notary(self, notary: NotarySignature) -> Record {
        Record {
            version: self.version,
            seq: self.seq,
            decision: self.decision,
            approvals: self.approvals,
            recorded_at: self.recorded_at,
            notary,
        }
    }
}

/// Proof that the bytes whose RFC 6962 leaf hash is [`CanonicalProof::leaf_hash`] are a valid
/// record in canonical form, with this seq and decision id: what
/// [`Record::from_canonical_bytes`] establishes by parsing, validating and writing them again.
///
/// Only this crate makes one, from a record it has just validated and written
/// ([`Record::to_proven_bytes`]). The write path hands it to the stores with the bytes, so a
/// store checks the bytes it is given by hashing them (which it does anyway) instead of parsing
/// a record the service built a moment before. A store given bytes the proof does not cover
/// (another hash) checks them in full: a proof never lets different bytes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanonicalProof {
    leaf_hash: Hash,
    seq: u64,
    decision_id: Uuid,
}

impl CanonicalProof {
    /// `SHA-256(0x00 || record_bytes)` of the proven bytes.
    pub fn leaf_hash(&self) -> &Hash {
        &self.leaf_hash
    }

    /// The proven record's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The proven record's decision id.
    pub fn decision_id(&self) -> Uuid {
        self.decision_id
    }

    /// Whether these are the proven bytes (their leaf hash is the proof's).
    pub fn covers(&self, bytes: &[u8]) -> bool {
        bytes.len() <= RECORD_MAX_BYTES && leaf_hash(bytes) == self.leaf_hash
    }
}

impl Record {
    /// Parses and validates record bytes (from a store, a receipt, a file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Record, ValidationError> {
        Record::parse(bytes).map(|(r, _)| r)
    }

    /// Like [`Record::from_bytes`], and also refuses bytes that are not already canonical: what a
    /// store holds must be exactly `JCS(record)`, or its leaf hash would not be re-derivable.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Record, ValidationError> {
        let (r, canonical) = Record::parse(bytes)?;
        if canonical != bytes {
            return Err(ValidationError::one(
                "(record)",
                "is valid but not in RFC 8785 canonical form",
            ));
        }
        Ok(r)
    }

    /// The record's canonical bytes after every check [`Record::from_canonical_bytes`] makes
    /// of a record, with a [`CanonicalProof`] of it that a store can accept in place of parsing
    /// the bytes again.
    ///
    /// Reading the bytes back with `from_canonical_bytes` succeeds and gives this record (up
    /// to what the bytes cannot tell apart, such as an empty attachment name and none): the
    /// writer and the reader are each other's inverse on valid records. The core crate's
    /// property tests check that over generated records; debug builds also read every proven
    /// record back.
    pub fn to_proven_bytes(&self) -> Result<(Vec<u8>, CanonicalProof), ValidationError> {
        let bytes = self.checked_bytes()?;
        #[cfg(debug_assertions)]
        if let Err(e) = Record::from_canonical_bytes(&bytes) {
            // An invariant of this crate, not input: reaching it is a bug in the writer or
            // the reader, and proving such bytes would let a store skip the check they fail.
            // Debug builds refuse the record (no proof) so tests see it.
            return Err(ValidationError::one(
                "(record)",
                format!("is valid but its canonical bytes do not read back (a bug): {e}"),
            ));
        }
        let proof = CanonicalProof {
            leaf_hash: leaf_hash(&bytes),
            seq: self.seq,
            decision_id: self.decision.id,
        };
        Ok((bytes, proof))
    }

    /// Reads bytes that `proof` covers without checking them again: the proof says they are a
    /// valid record in canonical form. Only the leaf hash is computed to tie the bytes to the
    /// proof; bytes it does not cover are read with [`Record::from_canonical_bytes`], so the
    /// result is the same either way, only cheaper with a matching proof.
    pub fn from_proven_bytes(
        bytes: &[u8],
        proof: &CanonicalProof,
    ) -> Result<Record, ValidationError> {
        if !proof.covers(bytes) {
            return Record::from_canonical_bytes(bytes);
        }
        let mut r: Record = parse_json("", bytes)?;
        r.decision.normalise();
        Ok(r)
    }

    /// Parses, validates, and returns the record with its canonical bytes (computed once).
    fn parse(bytes: &[u8]) -> Result<(Record, Vec<u8>), ValidationError> {
        if bytes.len() > RECORD_MAX_BYTES {
            return Err(ValidationError::one(
                "(record)",
                format!(
                    "is {} bytes; at most {RECORD_MAX_BYTES} are allowed",
                    bytes.len()
                ),
            ));
        }
        let mut r: Record = parse_json("", bytes)?;
        r.decision.normalise();
        let canonical = r.checked_bytes()?;
        Ok((r, canonical))
    }

    /// Checks every rule, including the size of the canonical bytes.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.checked_bytes().map(|_| ())
    }

    /// Checks every rule and returns the canonical bytes.
    fn checked_bytes(&self) -> Result<Vec<u8>, ValidationError> {
        let mut p = Problems::default();
        check_record_fields(
            self.version,
            self.seq,
            &self.decision,
            &self.approvals,
            &mut p,
        );
        let expected = self.notary.alg.signature_len();
        if self.notary.signature.len() != expected {
            p.push(
                "notary.signature",
                format!(
                    "is {} bytes; an {} signature is {expected}",
                    self.notary.signature.len(),
                    self.notary.alg
                ),
            );
        }
        let bytes = match self.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                p.push("(record)", e.to_string());
                Vec::new()
            }
        };
        if bytes.len() > RECORD_MAX_BYTES {
            p.push(
                "(record)",
                format!(
                    "is {} bytes canonicalised; at most {RECORD_MAX_BYTES} are allowed (C2SP entry bundles hold entries under 64 KiB; reference large documents from attachments)",
                    bytes.len()
                ),
            );
        }
        p.into_result()?;
        Ok(bytes)
    }

    /// The record without its notary signature.
    pub fn unsigned(&self) -> UnsignedRecord {
        UnsignedRecord {
            version: self.version,
            seq: self.seq,
            decision: self.decision.clone(),
            approvals: self.approvals.clone(),
            recorded_at: self.recorded_at,
        }
    }

    /// `record_bytes = JCS(record)`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        Ok(crate::jcs::record_bytes(self))
    }

    /// `JCS(record)` for a record whose payload is held as text: `payload` is written as the
    /// payload member, in place of `self.decision.payload`. For a reader that rebuilds records
    /// from stored columns (the projection) and has checked that the text is the RFC 8785 form
    /// of a JSON object, which spares parsing it and writing it back.
    ///
    /// `None` unless `self.decision.payload` is empty, so the text cannot silently replace a
    /// payload the record holds. Nothing here checks the text: the caller must have checked it
    /// (debug builds do, and panic on text that is not an object's canonical form).
    pub fn to_bytes_with_payload_text_unchecked(&self, payload: &[u8]) -> Option<Vec<u8>> {
        self.decision
            .payload
            .is_empty()
            .then(|| crate::jcs::record_bytes_with_payload(self, payload))
    }

    /// `SHA-256(0x00 || record_bytes)`.
    pub fn leaf_hash(&self) -> Result<Hash, CanonicalError> {
        Ok(leaf_hash(&self.to_bytes()?))
    }

    /// The message the notary signed.
    pub fn notary_message(&self) -> Result<Vec<u8>, CanonicalError> {
        self.unsigned().notary_message()
    }
}
