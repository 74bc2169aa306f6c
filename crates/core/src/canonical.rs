//! Canonical bytes: RFC 8785 JSON Canonicalization Scheme (JCS), through `serde_jcs` for any
//! serialisable value and through a faster writer of our own for the record types (see `jcs.rs`).
//!
//! JCS sorts object members by their UTF-16 code units, writes numbers as ECMAScript does, and
//! escapes strings minimally, so every language with a JCS library reproduces our bytes.

use serde::Serialize;

/// A value could not be canonicalised (a non-finite float or a map with non-string keys; the
/// record types never produce either).
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalise: {0}")]
pub struct CanonicalError(#[from] serde_json::Error);

/// RFC 8785 canonical bytes of `value`.
pub fn to_jcs<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    Ok(serde_jcs::to_vec(value)?)
}

/// RFC 8785 canonical bytes of a JSON object, such as a decision's payload: the same bytes as
/// [`to_jcs`], written by the record-shaped writer (infallible: a `serde_json::Value` holds no
/// non-finite number).
pub fn object_jcs(object: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    crate::jcs::object_bytes(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8785_examples() {
        // RFC 8785 §3.2.2.3 number serialisation.
        let v: serde_json::Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001]}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(to_jcs(&v).unwrap()).unwrap(),
            r#"{"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}"#
        );
        // RFC 8785 §3.2.3 sorting by UTF-16 code units.
        let v: serde_json::Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let out = String::from_utf8(to_jcs(&v).unwrap()).unwrap();
        let order: Vec<&str> = [
            "Carriage", "One", "Control", "Latin", "Euro", "Emoji", "Hebrew",
        ]
        .into_iter()
        .collect();
        let mut last = 0;
        for word in order {
            let at = out.find(word).unwrap();
            assert!(at > last, "{word} out of order in {out}");
            last = at;
        }
    }
}
