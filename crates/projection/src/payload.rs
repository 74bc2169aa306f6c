//! The `payload` column holds the payload object's RFC 8785 text. Parsing that text into a
//! `serde_json::Map` and writing it back out is a large share of re-deriving a record (~1.7 µs
//! and ~0.8 µs of ~5 µs for the benchmark's records).
//!
//! [`canonical_object_len`] instead checks, without building anything, that a text is exactly
//! its own RFC 8785 form. When it says so, the text is what `object_jcs(strict parse(text))`
//! would produce byte for byte, so it can stand in for that: re-derivation has core's writer
//! write the checked text as the payload member
//! (`Record::to_bytes_with_payload_text_unchecked`). When the quick check cannot decide (a
//! float, an escape in a member name,
//! a name with characters at or above U+E000, deep nesting, an integer of 17 digits) or the
//! text is not canonical, callers take the slow path, parsing and rewriting as before, which
//! decides what the text means (or that it is damage). Debug builds run both paths and compare.

/// 2^53: the integers JCS writes exactly (and the most a record may hold).
const SAFE_INTEGER: u64 = 1 << 53;

/// Nesting beyond this is left to the slow path (which has its own limit).
const MAX_DEPTH: u32 = 64;

/// If `text` starts with a JSON object that is exactly its own RFC 8785 form — members sorted
/// by their names' UTF-16 code units with no name twice, strings escaped minimally, integers in
/// canonical form within ±2^53, no whitespace — its length in bytes; `None` when that is not
/// so or the check cannot tell (see the module docs).
pub(crate) fn canonical_object_len(text: &[u8]) -> Option<usize> {
    let mut s = Scanner { b: text, i: 0 };
    s.object(0)?;
    Some(s.i)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let mut previous: Option<&'a [u8]> = None;
        loop {
            let (name, escaped) = self.string()?;
            // Byte order is UTF-16 order unless a name holds an escape or a character at or
            // above U+E000 (UTF-8 lead byte 0xEE and up); leave those to the slow path.
            if escaped || name.iter().any(|&c| c >= 0xEE) {
                return None;
            }
            if previous.is_some_and(|p| p >= name) {
                return None;
            }
            previous = Some(name);
            self.eat(b':')?;
            self.value(depth)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string as RFC 8785 writes it: `"` and `\` escaped, U+0000–U+001F as `\b \t \n \f \r`
    /// or `\u00xx` (lowercase hex), everything else as itself. Returns its raw content and
    /// whether it held an escape.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some((&self.b[start..self.i - 1], escaped)),
                b'\\' => {
                    escaped = true;
                    match self.peek()? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            let lower = |h: u8| h.is_ascii_digit() || (b'a'..=b'f').contains(&h);
                            let canonical = hex[0] == b'0'
                                && hex[1] == b'0'
                                && hex[2] <= b'1'
                                && hex[2..].iter().all(|&h| lower(h));
                            if !canonical {
                                return None;
                            }
                            let low = hex[3];
                            // These five have short forms, which JCS uses.
                            if hex[2] == b'0' && matches!(low, b'8' | b'9' | b'a' | b'c' | b'd') {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// An integer in canonical form (`0`, or an optional `-` and no leading zero; not `-0`)
    /// within ±2^53. Fractions and exponents are left to the slow path.
    fn integer(&mut self) -> Option<()> {
        let negative = self.eat(b'-').is_some();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty()
            || digits.len() > 16
            || (digits[0] == b'0' && (digits.len() > 1 || negative))
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        (n <= SAFE_INTEGER).then_some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// The slow path: `Some(text)` when the text is its own canonical form.
    fn slow(text: &str) -> Option<Vec<u8>> {
        let m = crate::rows::strict_payload(text).ok()?;
        let c = triplicate_core::canonical::object_jcs(&m);
        (c == text.as_bytes()).then_some(c)
    }

    fn check(text: &str) {
        if canonical_object_len(text.as_bytes()) == Some(text.len()) {
            assert_eq!(
                slow(text).as_deref(),
                Some(text.as_bytes()),
                "accepted but not canonical: {text:?}"
            );
        }
    }

    #[test]
    fn accepts_canonical_objects() {
        for t in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"a":[],"b":{},"c":[1,"x",null,true,false,{"d":-5}]}"#,
            r#"{"a":9007199254740992,"b":-9007199254740992,"c":0}"#,
            "{\"a\":\"\\u0000\\u001f\\b\\t\\n\\f\\r\\\"\\\\\u{7f}é🗳\"}",
            r#"{"":1,"A":2,"a":3,"é":4}"#,
        ] {
            assert_eq!(canonical_object_len(t.as_bytes()), Some(t.len()), "{t}");
            check(t);
        }
    }

    #[test]
    fn declines_what_it_cannot_or_must_not_accept() {
        for t in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{ "a":1}"#,
            r#"{"a":1 }"#,
            r#"{"a":01}"#,
            r#"{"a":-0}"#,
            r#"{"a":1.0}"#,
            r#"{"a":0.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":9007199254740993}"#,
            r#"{"a":-9007199254740993}"#,
            r#"{"a":12345678901234567}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"\u0001":1}"#,
            "{\"\u{e000}\":1,\"\u{10000}\":2}",
            r#"[1]"#,
            r#"{"a":tru}"#,
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
        ] {
            assert_ne!(canonical_object_len(t.as_bytes()), Some(t.len()), "{t}");
            check(t);
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        assert_eq!(canonical_object_len(deep.as_bytes()), None);
    }

    /// Core writes a checked payload text as the payload member: the bytes are the
    /// record's own.
    #[test]
    fn payload_text_writes_the_records_bytes() {
        for r in (0..30)
            .map(|s| crate::fixtures::sample_record(s, 0))
            .chain(crate::fixtures::tricky_records(30))
            .chain((0..5).map(crate::fixtures::bench_record))
        {
            let bytes = r.to_bytes().unwrap();
            let payload = triplicate_core::canonical::object_jcs(&r.decision.payload);
            let mut empty = r.clone();
            empty.decision.payload = Map::new();
            let written = empty
                .to_bytes_with_payload_text_unchecked(&payload)
                .unwrap();
            assert_eq!(written, bytes, "seq {}", r.seq);
            // A record that holds a payload does not take text in its place.
            if !r.decision.payload.is_empty() {
                assert_eq!(
                    r.to_bytes_with_payload_text_unchecked(b"{}"),
                    None,
                    "seq {}",
                    r.seq
                );
            }
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-9_007_199_254_740_992i64..=9_007_199_254_740_992).prop_map(Value::from),
            prop_oneof![Just(0.5), Just(-1.25e-7), Just(1e21)].prop_map(Value::from),
            "[\\x00-\\x1f\"\\\\\u{7f}\u{2028}é🗳a-z\u{e000}\u{10000}]{0,5}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[\\x00-\\x02a-cé\u{e000}\u{10000}]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Values the quick check must accept: no floats; names without escapes or high
    /// characters (string values may hold anything).
    fn plain() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-9_007_199_254_740_992i64..=9_007_199_254_740_992).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\\u{7f}\u{2028}é🗳\u{e000}\u{10000}]{0,5}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-cé\u{7f}]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever it accepts is exactly its own canonical form, before and after a one-byte
        /// edit; canonical objects of plain values are accepted.
        #[test]
        fn accepts_only_canonical_text(
            m in prop::collection::btree_map("[a-cé\\x00\u{e000}\u{10000}]{0,3}", json(), 0..5),
            p in prop::collection::btree_map("[a-cé]{0,3}", plain(), 0..5),
            edit in 0usize..64,
            byte in any::<u8>(),
        ) {
            let p: Map<String, Value> = p.into_iter().collect();
            let text = String::from_utf8(triplicate_core::canonical::object_jcs(&p)).unwrap();
            prop_assert_eq!(canonical_object_len(text.as_bytes()), Some(text.len()), "{}", text);
            let m: Map<String, Value> = m.into_iter().collect();
            let text = String::from_utf8(triplicate_core::canonical::object_jcs(&m)).unwrap();
            check(&text);
            for text in [text, String::from_utf8(triplicate_core::canonical::object_jcs(&p)).unwrap()] {
                let mut b = text.into_bytes();
                let at = edit % (b.len() + 1);
                match edit % 3 {
                    0 if at < b.len() => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {}
                }
                if let Ok(t) = String::from_utf8(b) {
                    check(&t);
                }
            }
        }
    }
}
