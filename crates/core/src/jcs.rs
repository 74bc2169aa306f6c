//! RFC 8785 (JCS) bytes of the record types, written directly for their known shapes.
//!
//! Why this exists: every store's write path validates records by re-canonicalising them, and
//! the verifier re-derives every record it reads. The general-purpose `serde_jcs` (what
//! [`crate::canonical::to_jcs`] uses) buffers and sorts every object's members through a
//! formatter, ~17 µs for a 1.3 KB record on the development VM; this writer takes ~4 µs.
//!
//! It must give exactly `serde_jcs`'s bytes; three things keep it so:
//! - It destructures every type exhaustively, so a field added to a record type is a compile
//!   error here, not silently missing bytes.
//! - Debug builds (every test run) compare each output with `serde_jcs` and panic on a
//!   difference; property tests (random records, random payloads, random doubles) compare the
//!   two in `tests/roundtrip.rs` and below; the golden vectors pin the bytes.
//! - Each rule cites RFC 8785: members sorted by UTF-16 code units (§3.2.3), strings with the
//!   minimal escapes (§3.2.2.2, which is also what `serde_json` writes), numbers as ECMAScript's
//!   `Number.prototype.toString` (§3.2.2.3; non-integral doubles go through `serde_jcs`).

use std::io::Write;

use serde_json::{Map, Number, Value};
use uuid::Uuid;

use crate::ids::{Algorithm, Hash, KeyId};
use crate::record::{Approval, Attachment, Decision, Record, UnsignedRecord};
use crate::timestamp::Timestamp;
use crate::view::{
    ApprovalView, AttachmentView, DecisionView, KeyIdRef, NotaryView, PayloadView, RecordView,
};

/// In debug builds, panics when `bytes` differ from `serde_jcs`'s bytes of `value`.
fn check<T: serde::Serialize + ?Sized>(bytes: &[u8], value: &T) {
    if cfg!(debug_assertions) {
        if let Ok(reference) = serde_jcs::to_vec(value) {
            assert_eq!(
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&reference),
                "the record-shaped JCS writer disagrees with serde_jcs"
            );
        }
    }
}

/// `JCS(record)`.
pub(crate) fn record_bytes(r: &Record) -> Vec<u8> {
    let out = with_views(r, |view| {
        let mut out = Vec::with_capacity(1024 + r.decision.body.len());
        write_record(&mut out, view);
        out
    });
    check(&out, r);
    out
}

/// `JCS(record)` with `payload` (the RFC 8785 text of an object, checked by the caller) written
/// as the payload member in place of `r.decision.payload`, which must be empty.
pub(crate) fn record_bytes_with_payload(r: &Record, payload: &[u8]) -> Vec<u8> {
    with_views(r, |view| {
        let mut view = *view;
        view.decision.payload = PayloadView::UncheckedText(payload);
        view.to_bytes()
    })
}

/// Calls `f` with the view of `r` (its approvals' and attachments' views held here).
fn with_views<T>(r: &Record, f: impl FnOnce(&RecordView<'_>) -> T) -> T {
    let approvals: Vec<ApprovalView<'_>> = r.approvals.iter().map(Approval::view).collect();
    let attachments: Vec<AttachmentView<'_>> = r
        .decision
        .attachments
        .iter()
        .map(Attachment::view)
        .collect();
    f(&RecordView {
        version: r.version,
        seq: r.seq,
        decision: r.decision.view(&attachments),
        approvals: &approvals,
        recorded_at: r.recorded_at,
        notary: r.notary.view(),
    })
}

/// `prefix || JCS(unsigned record)`.
pub(crate) fn unsigned_bytes(prefix: &[u8], r: &UnsignedRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 1024 + r.decision.body.len());
    out.extend_from_slice(prefix);
    write_unsigned(&mut out, r);
    check(&out[prefix.len()..], r);
    out
}

/// `JCS(decision)`.
pub(crate) fn decision_bytes(d: &Decision) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + d.body.len());
    let attachments: Vec<AttachmentView<'_>> = d.attachments.iter().map(Attachment::view).collect();
    write_decision(&mut out, &d.view(&attachments));
    check(&out, d);
    out
}

/// `JCS(object)`.
pub(crate) fn object_bytes(o: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_object(&mut out, o);
    check(&out, o);
    out
}

fn write_unsigned(out: &mut Vec<u8>, r: &UnsignedRecord) {
    let UnsignedRecord {
        version,
        seq,
        decision,
        approvals,
        recorded_at,
    } = r;
    let approvals: Vec<ApprovalView<'_>> = approvals.iter().map(Approval::view).collect();
    let attachments: Vec<AttachmentView<'_>> =
        decision.attachments.iter().map(Attachment::view).collect();
    write_approvals(out, &approvals);
    out.extend_from_slice(b",\"decision\":");
    write_decision(out, &decision.view(&attachments));
    out.extend_from_slice(b",\"recorded_at\":");
    write_time(out, recorded_at);
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, *seq);
    out.extend_from_slice(b",\"version\":");
    write_u64(out, u64::from(*version));
    out.push(b'}');
}

/// `{"approvals":[...]`: the first member of both record shapes.
fn write_approvals(out: &mut Vec<u8>, approvals: &[ApprovalView<'_>]) {
    out.extend_from_slice(b"{\"approvals\":[");
    for (i, a) in approvals.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_approval(out, a);
    }
    out.push(b']');
}

/// The record writer: `Record`'s bytes are written from its view, like every other view's.
pub(crate) fn write_record(out: &mut Vec<u8>, r: &RecordView<'_>) {
    let RecordView {
        version,
        seq,
        decision,
        approvals,
        recorded_at,
        notary,
    } = r;
    write_approvals(out, approvals);
    out.extend_from_slice(b",\"decision\":");
    write_decision(out, decision);
    out.extend_from_slice(b",\"notary\":");
    write_notary(out, notary);
    out.extend_from_slice(b",\"recorded_at\":");
    write_time(out, recorded_at);
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, *seq);
    out.extend_from_slice(b",\"version\":");
    write_u64(out, u64::from(*version));
    out.push(b'}');
}

/// `prefix || JCS({alg, decision_digest, key_id, signed_at})`: what an approver signs
/// (`digest::approval_message`), members in JCS order, the digest in lowercase hex. Checked
/// against `serde_jcs` by debug builds and a unit test.
pub(crate) fn approval_statement(
    prefix: &[u8],
    decision_digest: &Hash,
    key_id: &KeyId,
    alg: Algorithm,
    signed_at: &Timestamp,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 192);
    out.extend_from_slice(prefix);
    out.extend_from_slice(b"{\"alg\":");
    write_str(&mut out, alg.as_str());
    out.extend_from_slice(b",\"decision_digest\":\"");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in decision_digest {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    out.extend_from_slice(b"\",\"key_id\":");
    write_str(&mut out, key_id.as_str());
    out.extend_from_slice(b",\"signed_at\":");
    write_time(&mut out, signed_at);
    out.push(b'}');
    out
}

fn write_approval(out: &mut Vec<u8>, a: &ApprovalView<'_>) {
    let ApprovalView {
        key_id,
        alg,
        signature,
        signed_at,
    } = a;
    write_signature_members(out, *alg, key_id, signature);
    out.extend_from_slice(b",\"signed_at\":");
    write_time(out, signed_at);
    out.push(b'}');
}

/// `{"alg":…,"key_id":…,"signature":…`: the members an approval and the notary's signature
/// share, which sort first in both.
fn write_signature_members(
    out: &mut Vec<u8>,
    alg: Algorithm,
    key_id: &KeyIdRef<'_>,
    signature: &[u8],
) {
    out.extend_from_slice(b"{\"alg\":");
    write_str(out, alg.as_str());
    out.extend_from_slice(b",\"key_id\":");
    write_str(out, key_id.as_str());
    out.extend_from_slice(b",\"signature\":");
    write_base64(out, signature);
}

fn write_notary(out: &mut Vec<u8>, n: &NotaryView<'_>) {
    let NotaryView {
        key_id,
        alg,
        signature,
    } = n;
    write_signature_members(out, *alg, key_id, signature);
    out.push(b'}');
}

fn write_decision(out: &mut Vec<u8>, d: &DecisionView<'_>) {
    let DecisionView {
        id,
        kind,
        title,
        body,
        payload,
        proposed_at,
        supersedes,
        attachments,
    } = d;
    out.push(b'{');
    // Omitted when empty, as `Decision`'s serde attributes say.
    if !attachments.is_empty() {
        out.extend_from_slice(b"\"attachments\":[");
        for (i, a) in attachments.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_attachment(out, a);
        }
        out.extend_from_slice(b"],");
    }
    out.extend_from_slice(b"\"body\":");
    write_str(out, body);
    out.extend_from_slice(b",\"id\":");
    write_uuid(out, id);
    out.extend_from_slice(b",\"kind\":");
    write_str(out, kind);
    out.extend_from_slice(b",\"payload\":");
    match payload {
        PayloadView::UncheckedText(text) => {
            if cfg!(debug_assertions) {
                let object: Map<String, Value> =
                    serde_json::from_slice(text).expect("the payload text is a JSON object");
                assert_eq!(
                    String::from_utf8_lossy(text),
                    String::from_utf8_lossy(&object_bytes(&object)),
                    "the payload text is not its own RFC 8785 form"
                );
            }
            out.extend_from_slice(text)
        }
        PayloadView::Object(o) => write_object(out, o),
    }
    out.extend_from_slice(b",\"proposed_at\":");
    write_time(out, proposed_at);
    if let Some(s) = supersedes {
        out.extend_from_slice(b",\"supersedes\":");
        write_uuid(out, s);
    }
    out.extend_from_slice(b",\"title\":");
    write_str(out, title);
    out.push(b'}');
}

fn write_attachment(out: &mut Vec<u8>, a: &AttachmentView<'_>) {
    let AttachmentView {
        sha256,
        media_type,
        size,
        name,
    } = a;
    out.extend_from_slice(b"{\"media_type\":");
    write_str(out, media_type);
    // An empty name is no name (`Attachment`'s serde attributes skip both).
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        out.extend_from_slice(b",\"name\":");
        write_str(out, n);
    }
    out.extend_from_slice(b",\"sha256\":");
    write_str(out, sha256);
    out.extend_from_slice(b",\"size\":");
    write_u64(out, *size);
    out.push(b'}');
}

/// RFC 8785 §3.2.2.2: `"` and `\` escaped, U+0000–U+001F as `\b \t \n \f \r` or `\u00xx`
/// (lowercase hex), everything else as itself. `serde_json` writes strings exactly so.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // RFC 8785 §3.2.2.2 escapes only `"`, `\` and the controls below U+0020; most strings
    // (titles, bodies, kinds) hold none, and are copied whole. The test is a fold rather than
    // `any`, so the compiler can check many bytes at once.
    let plain = !b.iter().fold(false, |bad, &c| {
        bad | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if plain {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    // Writing to a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_uuid(out: &mut Vec<u8>, u: &Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

/// The standard base64 alphabet (RFC 4648 §4).
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Every 12-bit value as its two base64 characters: three bytes are two lookups. (Signatures
/// are written three times per record and re-derived by the verifier for every record; the
/// `base64` crate's encoder was ~2.5 % of a sweep's CPU.)
static BASE64_PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [BASE64[i >> 6], BASE64[i & 63]];
        i += 1;
    }
    t
};

/// `b` as a JSON string of its standard, padded base64 (what `base64::STANDARD` writes; a
/// property test compares the two).
fn write_base64(out: &mut Vec<u8>, b: &[u8]) {
    let chunks = b.chunks_exact(3);
    let rest = chunks.remainder();
    out.reserve(b.len().div_ceil(3) * 4 + 2);
    out.push(b'"');
    for c in chunks {
        let n = (usize::from(c[0]) << 16) | (usize::from(c[1]) << 8) | usize::from(c[2]);
        out.extend_from_slice(&BASE64_PAIRS[n >> 12]);
        out.extend_from_slice(&BASE64_PAIRS[n & 0xfff]);
    }
    match *rest {
        [x] => out.extend_from_slice(&[
            BASE64[usize::from(x >> 2)],
            BASE64[usize::from(x & 3) << 4],
            b'=',
            b'=',
        ]),
        [x, y] => out.extend_from_slice(&[
            BASE64[usize::from(x >> 2)],
            BASE64[(usize::from(x & 3) << 4) | usize::from(y >> 4)],
            BASE64[usize::from(y & 15) << 2],
            b'=',
        ]),
        _ => {}
    }
    out.push(b'"');
}

fn write_time(out: &mut Vec<u8>, t: &Timestamp) {
    out.push(b'"');
    t.write_canonical(out);
    out.push(b'"');
}

/// An unsigned integer as JCS writes it: as the double it denotes (RFC 8785 §3.2.2.3), which
/// is the integer itself up to 2^53. Validation refuses larger `seq` and sizes, but the bytes of
/// an invalid record are still computed (to report its size), and they must match `serde_jcs`.
fn write_u64(out: &mut Vec<u8>, n: u64) {
    if n <= 1 << 53 {
        let _ = write!(out, "{n}");
    } else {
        write_f64(out, n as f64);
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(o) => write_object(out, o),
    }
}

/// RFC 8785 §3.2.3: members sorted by their names' UTF-16 code units. That is the UTF-8 (and
/// `BTreeMap`) order except where a name holds a character at or above U+E000 and another a
/// supplementary-plane one, so the common case needs no sort.
fn write_object(out: &mut Vec<u8>, o: &Map<String, Value>) {
    let mut members: Vec<(&String, &Value)> = o.iter().collect();
    let simple = members
        .iter()
        .all(|(k, _)| k.chars().all(|c| (c as u32) < 0xE000));
    if simple {
        members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    } else {
        members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    }
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// RFC 8785 §3.2.2.3: a number is written as ECMAScript's `Number.prototype.toString` writes
/// the IEEE 754 double it denotes. Integers are converted to doubles first, as JCS does.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(i) = n.as_i64() {
        // Exactly representable, so the double's text is the integer's.
        if i.unsigned_abs() <= 1 << 53 {
            let _ = write!(out, "{i}");
            return;
        }
    } else if let Some(u) = n.as_u64() {
        if u <= 1 << 53 {
            let _ = write!(out, "{u}");
            return;
        }
    }
    write_f64(out, n.as_f64().unwrap_or(f64::NAN));
}

/// ECMAScript `Number::toString(x)` (ECMA-262 §6.1.6.1.20) for a finite double, by `serde_jcs`
/// (Rust's own shortest-digit formatting breaks exact ties differently: 943743571560036.25 is
/// "…036.3" there and "…036.2" in ECMAScript). Payload floats are rare next to integers and
/// strings, so this slower path costs little.
fn write_f64(out: &mut Vec<u8>, x: f64) {
    match serde_jcs::to_vec(&x) {
        Ok(text) => out.extend_from_slice(&text),
        // `serde_json::Number` cannot hold a non-finite double, so this is unreachable; writing
        // `null` (what JSON writers do for them) keeps the function total.
        Err(_) => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4_096, ..Default::default() })]

        #[test]
        fn any_double_matches_serde_jcs(bits in proptest::prelude::any::<u64>()) {
            let x = f64::from_bits(bits);
            proptest::prop_assume!(x.is_finite());
            let mut out = Vec::new();
            write_number(&mut out, &Number::from_f64(x).unwrap());
            let reference = serde_jcs::to_vec(&Value::from(x)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(reference).unwrap());
        }

        #[test]
        fn any_string_matches_serde_jcs(s in "[\\x00-\\x21\"\\\\a-z\u{7f}\u{80}\u{2028}\u{e000}\u{10000}]{0,40}") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_jcs::to_vec(&s).unwrap());
        }

        #[test]
        fn base64_matches_the_base64_crate(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            write_base64(&mut out, &bytes);
            let want = format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(&bytes));
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }

        #[test]
        fn any_integer_matches_serde_jcs(i in proptest::prelude::any::<i64>(), u in proptest::prelude::any::<u64>()) {
            let mut out = Vec::new();
            write_number(&mut out, &Number::from(i));
            proptest::prop_assert_eq!(out, serde_jcs::to_vec(&Value::from(i)).unwrap());
            let mut out = Vec::new();
            write_u64(&mut out, u);
            proptest::prop_assert_eq!(out, serde_jcs::to_vec(&Value::from(u)).unwrap());
        }

        #[test]
        fn any_object_matches_serde_jcs(keys in proptest::collection::vec("\\PC{0,6}", 0..12)) {
            // Names from the whole of Unicode, so the UTF-16 ordering path is exercised.
            let o: Map<String, Value> = keys.into_iter().enumerate().map(|(i, k)| (k, Value::from(i))).collect();
            proptest::prop_assert_eq!(object_bytes(&o), serde_jcs::to_vec(&o).unwrap());
        }
    }

    #[test]
    // RFC 8785's own examples are written with more digits than a double holds.
    #[allow(clippy::excessive_precision)]
    fn strings_are_escaped_as_rfc_8785_says() {
        for (s, want) in [
            ("", r#""""#),
            ("plain text, é, 🗳, \u{7f}", "\"plain text, é, 🗳, \u{7f}\""),
            ("a\"b", r#""a\"b""#),
            ("back\\slash", r#""back\\slash""#),
            ("\u{8}\t\n\u{c}\r", r#""\b\t\n\f\r""#),
            ("\u{0}\u{1f}", r#""\u0000\u001f""#),
            ("\u{2028}\u{2029}", "\"\u{2028}\u{2029}\""),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{s:?}");
        }
    }

    #[test]
    // The literals are written as the test vectors give them (the double nearest to each is
    // the case under test), not as their shortest round-trip form.
    #[allow(clippy::excessive_precision)]
    fn numbers_match_ecmascript() {
        for (x, want) in [
            (1e-7, "1e-7"),
            (0.5, "0.5"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (0.0000001234, "1.234e-7"),
            (333333333.33333329, "333333333.3333333"),
            (4.5, "4.5"),
            (2e-3, "0.002"),
            (1e-27, "1e-27"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-0.0, "0"),
            (-1.5e-10, "-1.5e-10"),
            (943743571560036.25, "943743571560036.2"),
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, x);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{x:e}");
        }
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // U+FB33 sorts after U+1F600 in UTF-16 (0xFB33 > 0xD83D) but before it in UTF-8.
        let o: Map<String, Value> = [("\u{1F600}", 1), ("\u{FB33}", 2), ("a", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        assert_eq!(
            String::from_utf8(object_bytes(&o)).unwrap(),
            "{\"a\":3,\"\u{1F600}\":1,\"\u{FB33}\":2}"
        );
    }
}
