//! RFC 3339 UTC timestamps in one canonical text form, so a record's bytes never depend on how
//! a client chose to write a time.
//!
//! Canonical form: `YYYY-MM-DDTHH:MM:SS[.F]Z` with an uppercase `T` and `Z`, and a fraction of
//! 1–9 digits without trailing zeros. Other RFC 3339 forms (offsets, lowercase, `.120`) are
//! refused with the canonical spelling in the error, rather than silently rewritten: an
//! approver's signature covers the bytes, so a rewrite would break it.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant, nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Why a string is not a canonical timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimestampError(pub String);

impl Timestamp {
    /// Now, from the system clock.
    pub fn now() -> Timestamp {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// From nanoseconds since the Unix epoch; years 0000-9999 only, like the text form (a
    /// negative year has no canonical spelling that parses back).
    pub fn from_unix_nanos(nanos: i128) -> Result<Timestamp, TimestampError> {
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|e| TimestampError(format!("{nanos} ns is out of range: {e}")))?;
        if !(0..=9999).contains(&t.year()) {
            return Err(TimestampError(format!(
                "{nanos} ns is outside years 0000-9999"
            )));
        }
        Ok(Timestamp(t))
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i128 {
        self.0.unix_timestamp_nanos()
    }

    /// The instant as a `time` value.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(30);
        self.write_canonical(&mut out);
        // Only ASCII digits and separators were written.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends the canonical text (`YYYY-MM-DDTHH:MM:SS[.F]Z`, the fraction without trailing
    /// zeros) without an intermediate `String`: the JCS writer calls this twice per approval.
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        // Digits by hand rather than through `write!`: this runs twice per approval whenever
        // a record is written or re-derived, and `core::fmt` was ~10 % of a projection's range
        // re-derivation (perf, `cargo bench -p triplicate-verifier --bench sweep`).
        fn two(out: &mut Vec<u8>, n: u8) {
            out.extend_from_slice(&[b'0' + n / 10, b'0' + n % 10]);
        }
        let (date, (hour, minute, second, nanos)) = (self.0.date(), self.0.to_hms_nano());
        let year = date.year();
        match u16::try_from(year) {
            Ok(y) if y <= 9999 => {
                let y = [y / 1000, y / 100 % 10, y / 10 % 10, y % 10];
                out.extend(y.map(|d| b'0' + d as u8));
            }
            // Not reachable through this type's constructors (years 0000-9999 only); written
            // as `time` would rather than as four wrong digits.
            _ => {
                let _ = write!(out, "{year:04}");
            }
        }
        let fields = [
            (b'-', u8::from(date.month())),
            (b'-', date.day()),
            (b'T', hour),
            (b':', minute),
            (b':', second),
        ];
        for (separator, n) in fields {
            out.push(separator);
            two(out, n);
        }
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
        out.push(b'Z');
    }

    /// The canonical text through `core::fmt` and `time`'s own accessors: the reference that
    /// [`Timestamp::write_canonical`] is tested against.
    #[cfg(test)]
    fn canonical_reference(&self) -> String {
        let t = self.0;
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        if t.nanosecond() > 0 {
            let frac = format!("{:09}", t.nanosecond());
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| TimestampError(format!("{s:?} is not an RFC 3339 timestamp: {e}")))?;
        // `to_offset` panics when the UTC instant falls outside the years `time` supports
        // (e.g. "9999-12-31T23:30:00-01:00"); untrusted input must be refused, not panic.
        let t = parsed
            .checked_to_offset(UtcOffset::UTC)
            .map(Timestamp)
            .filter(|t| (0..=9999).contains(&t.0.year()))
            .ok_or_else(|| TimestampError(format!("{s:?} is outside years 0000-9999")))?;
        let canonical = t.canonical();
        if canonical != s {
            return Err(TimestampError(format!(
                "{s:?} is not canonical UTC; write {canonical:?}"
            )));
        }
        Ok(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip() {
        for s in [
            "2026-11-22T11:25:37Z",
            "2026-01-01T00:00:00.12Z",
            "2026-02-28T23:59:59.000000001Z",
        ] {
            assert_eq!(s.parse::<Timestamp>().unwrap().to_string(), s);
        }
        let now = Timestamp::now();
        assert_eq!(now.to_string().parse::<Timestamp>().unwrap(), now);
    }

    #[test]
    fn hand_written_digits_match_the_formatter() {
        // Edges of every field, the years 0000 and 9999, and a spread of instants between.
        let mut nanos: Vec<i128> = vec![
            -62_167_219_200_000_000_000, // 0000-01-01T00:00:00Z
            253_402_300_799_999_999_999, // 9999-12-31T23:59:59.999999999Z
            0,
            1,
            999_999_999,
            1_000_000_000,
            951_782_400_000_000_000, // 2000-02-29
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span: i128 = 253_402_300_799_999_999_999 + 62_167_219_200_000_000_000;
            let mut n = i128::from(x) * 1_000_003 % span - 62_167_219_200_000_000_000;
            if x.is_multiple_of(3) {
                n -= n.rem_euclid(1_000_000_000); // whole seconds
            } else if x % 3 == 1 {
                n -= n.rem_euclid(1_000_000); // milliseconds
            }
            nanos.push(n);
        }
        for n in nanos {
            let t = Timestamp::from_unix_nanos(n).unwrap();
            let mut out = Vec::new();
            t.write_canonical(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                t.canonical_reference(),
                "{n}"
            );
        }
    }

    #[test]
    fn other_forms_are_refused_with_the_canonical_spelling() {
        let e = "2026-01-01T10:00:00.120Z".parse::<Timestamp>().unwrap_err();
        assert!(e.0.contains("\"2026-01-01T10:00:00.12Z\""), "{e}");
        let e = "2026-01-01T11:00:00+01:00"
            .parse::<Timestamp>()
            .unwrap_err();
        assert!(e.0.contains("\"2026-01-01T10:00:00Z\""), "{e}");
        assert!("2026-01-01t10:00:00z".parse::<Timestamp>().is_err());
        assert!("2026-02-30T10:00:00Z".parse::<Timestamp>().is_err());
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn instants_outside_years_0000_to_9999_are_refused_not_a_panic() {
        // The UTC instant is in year 10000, which `time` cannot represent.
        let e = "9999-12-31T23:30:00-01:00"
            .parse::<Timestamp>()
            .unwrap_err();
        assert!(e.0.contains("outside years 0000-9999"), "{e}");
        let e = "0000-01-01T00:30:00+01:00"
            .parse::<Timestamp>()
            .unwrap_err();
        assert!(e.0.contains("outside years 0000-9999"), "{e}");
        let year_0 = -62_167_219_200 * 1_000_000_000;
        assert!(Timestamp::from_unix_nanos(year_0).is_ok());
        assert!(Timestamp::from_unix_nanos(year_0 - 1).is_err());
    }
}
