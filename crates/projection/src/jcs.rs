//! RFC 8785 (JCS) bytes of a [`Record`], written directly for its known shape.
//!
//! Why this exists: re-deriving records is what the verifier's range reads spend their time on,
//! and the general-purpose `serde_jcs` (what `triplicate_core::canonical::to_jcs` uses) buffers
//! and sorts every object's members through a formatter: ~17 µs for a 1.3 KB record here, against
//! ~4 µs for this writer. It must give exactly `Record::to_bytes()`; three things keep it so:
//! - It destructures every record type exhaustively, so a field added in `triplicate-core` is a
//!   compile error here, not silently missing bytes.
//! - Debug builds (every test run) compare each output with `Record::to_bytes()` and panic on a
//!   difference; the conformance suite and property tests (random records, random floats) run
//!   through it on both backends.
//! - Each rule cites RFC 8785: members sorted by UTF-16 code units (§3.2.3), strings with the
//!   minimal escapes (§3.2.2.2, which is also what `serde_json` writes), numbers as ECMAScript's
//!   `Number.prototype.toString` (§3.2.2.3; non-integral doubles go through core's own
//!   canonicaliser).
//!
//! The better home for this is `triplicate-core` (its `to_jcs` is also most of the cost of
//! `Record::from_canonical_bytes`, which every store's write path pays).

use std::io::Write;

use base64::Engine;
use serde_json::{Map, Number, Value};
use triplicate_core::{Approval, Attachment, Decision, KeyId, NotarySignature, Record, Timestamp};
use uuid::Uuid;

/// `JCS(record)`, byte for byte what `record.to_bytes()` gives.
pub(crate) fn record_bytes(r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    write_record(&mut out, r);
    #[cfg(debug_assertions)]
    if let Ok(reference) = r.to_bytes() {
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&reference),
            "the projection's JCS writer disagrees with triplicate-core"
        );
    }
    out
}

/// `JCS(payload)`.
pub(crate) fn payload_bytes(payload: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_object(&mut out, payload);
    #[cfg(debug_assertions)]
    if let Ok(reference) = triplicate_core::canonical::to_jcs(payload) {
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&reference),
            "the projection's JCS writer disagrees with triplicate-core"
        );
    }
    out
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    let Record {
        version,
        seq,
        decision,
        approvals,
        recorded_at,
        notary,
    } = r;
    out.extend_from_slice(b"{\"approvals\":[");
    for (i, a) in approvals.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_approval(out, a);
    }
    out.extend_from_slice(b"],\"decision\":");
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

fn write_approval(out: &mut Vec<u8>, a: &Approval) {
    let Approval {
        key_id,
        alg,
        signature,
        signed_at,
    } = a;
    out.extend_from_slice(b"{\"alg\":");
    write_str(out, alg.as_str());
    out.extend_from_slice(b",\"key_id\":");
    write_key_id(out, key_id);
    out.extend_from_slice(b",\"signature\":");
    write_base64(out, signature);
    out.extend_from_slice(b",\"signed_at\":");
    write_time(out, signed_at);
    out.push(b'}');
}

fn write_notary(out: &mut Vec<u8>, n: &NotarySignature) {
    let NotarySignature {
        key_id,
        alg,
        signature,
    } = n;
    out.extend_from_slice(b"{\"alg\":");
    write_str(out, alg.as_str());
    out.extend_from_slice(b",\"key_id\":");
    write_key_id(out, key_id);
    out.extend_from_slice(b",\"signature\":");
    write_base64(out, signature);
    out.push(b'}');
}

fn write_decision(out: &mut Vec<u8>, d: &Decision) {
    let Decision {
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
    write_object(out, payload);
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

fn write_attachment(out: &mut Vec<u8>, a: &Attachment) {
    let Attachment {
        sha256,
        media_type,
        size,
        name,
    } = a;
    out.extend_from_slice(b"{\"media_type\":");
    write_str(out, media_type);
    // An empty name is no name (`Attachment`'s serde attributes skip both).
    if let Some(n) = name.as_deref().filter(|n| !n.is_empty()) {
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
    // Writing to a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_key_id(out: &mut Vec<u8>, k: &KeyId) {
    write_str(out, k.as_str());
}

fn write_uuid(out: &mut Vec<u8>, u: &Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn write_base64(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + b.len().div_ceil(3) * 4, 0);
    // The buffer was sized for exactly the encoding.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]);
    out.push(b'"');
}

/// `Timestamp`'s canonical text (`YYYY-MM-DDTHH:MM:SS[.F]Z`), without an intermediate String.
fn write_time(out: &mut Vec<u8>, t: &Timestamp) {
    let t = t.as_offset_date_time();
    let _ = write!(
        out,
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos > 0 {
        let mut frac = [b'0'; 9];
        let mut n = nanos;
        for d in frac.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let len = 9 - frac.iter().rev().take_while(|&&d| d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&frac[..len]);
    }
    out.extend_from_slice(b"Z\"");
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
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

/// ECMAScript `Number::toString(x)` (ECMA-262 §6.1.6.1.20) for a finite double, by
/// `triplicate-core`'s own canonicaliser, so it is the same text by construction. (Rust's
/// shortest-digit formatting breaks exact ties differently: 943743571560036.25 is "…036.3"
/// there and "…036.2" in ECMAScript.) Payload floats are rare next to integers and strings, so
/// this slower path costs little.
fn write_f64(out: &mut Vec<u8>, x: f64) {
    match triplicate_core::canonical::to_jcs(&x) {
        Ok(text) => out.extend_from_slice(&text),
        // Core refuses non-finite numbers; a stored payload cannot hold one either.
        Err(_) => out.push(b'0'),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures::{bench_record, sample_record, tricky_records};

    #[test]
    fn records_match_core() {
        let all = (0..60)
            .map(|s| sample_record(s, 0))
            .chain(tricky_records(60))
            .chain((0..10).map(bench_record));
        for r in all {
            assert_eq!(record_bytes(&r), r.to_bytes().unwrap(), "seq {}", r.seq);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, ..Default::default() })]

        #[test]
        fn any_double_matches_core(bits in proptest::prelude::any::<u64>()) {
            let x = f64::from_bits(bits);
            proptest::prop_assume!(x.is_finite());
            let mut out = Vec::new();
            write_f64(&mut out, x);
            let core = triplicate_core::canonical::to_jcs(&Value::from(x)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(core).unwrap());
        }

        #[test]
        fn any_integer_matches_core(i in proptest::prelude::any::<i64>()) {
            let mut out = Vec::new();
            write_number(&mut out, &Number::from(i));
            let core = triplicate_core::canonical::to_jcs(&Value::from(i)).unwrap();
            proptest::prop_assert_eq!(out, core);
        }
    }

    #[test]
    // RFC 8785's own examples are written with more digits than a double holds.
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
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, x);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{x:e}");
            let core = triplicate_core::canonical::to_jcs(&Value::from(x)).unwrap();
            assert_eq!(
                String::from_utf8(core).unwrap(),
                want,
                "core agrees on {x:e}"
            );
        }
    }
}
