//! PostgreSQL's binary `COPY` format (PostgreSQL docs, "COPY", section "Binary Format"), for
//! the bulk paths: a batch's rows go in with `COPY … FROM STDIN (FORMAT binary)` and range
//! reads come out with `COPY (SELECT …) TO STDOUT (FORMAT binary)`.
//!
//! Why: per-row work in the driver (building a row object, decoding each column through the
//! type system) was most of a range read's cost, and `COPY` also skips the parse and plan of an
//! `INSERT`. The format is simple: a fixed header, then per tuple a 16-bit field count and per
//! field a 32-bit length (−1 for NULL) and the type's binary send format, then −1.

use uuid::Uuid;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The header of binary `COPY` data: the signature, no flags, no header extension.
pub(crate) const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The trailer: a tuple field count of −1.
pub(crate) const TRAILER: &[u8; 2] = &[0xff, 0xff];

/// Builds `COPY FROM STDIN (FORMAT binary)` data.
#[derive(Debug)]
pub(crate) struct CopyWriter {
    buf: Vec<u8>,
}

impl CopyWriter {
    /// A writer of tuples only: a piece of the data, sent between [`HEADER`] and [`TRAILER`]
    /// (several pieces may follow one another).
    pub fn tuples(bytes: usize) -> CopyWriter {
        CopyWriter {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The tuples written (see [`CopyWriter::tuples`]).
    pub fn into_tuples(self) -> Vec<u8> {
        self.buf
    }

    /// Starts a tuple of `fields` fields.
    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, data: &[u8]) {
        // Every value here is far below 2 GiB (records are under 60 KiB).
        self.buf
            .extend_from_slice(&(data.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(data);
    }

    pub fn i64(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.field(&v.to_be_bytes());
    }

    pub fn i16(&mut self, v: i16) {
        self.field(&v.to_be_bytes());
    }

    pub fn uuid(&mut self, u: &Uuid) {
        self.field(u.as_bytes());
    }

    /// `text` and `json` (whose binary format is its text).
    pub fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.field(b);
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `timestamptz`: microseconds since 2000-01-01 UTC.
    pub fn timestamp(&mut self, micros_since_2000: i64) {
        self.i64(micros_since_2000);
    }

    /// A one-dimensional `int8[]` without NULLs (`array_send`: dimensions, a has-NULLs flag,
    /// the element type's OID, each dimension's length and lower bound, then the elements).
    pub fn i64_array(&mut self, v: &[i64]) {
        let mut data = Vec::with_capacity(20 + 12 * v.len());
        let ndim: i32 = if v.is_empty() { 0 } else { 1 };
        data.extend_from_slice(&ndim.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&INT8_OID.to_be_bytes());
        if ndim == 1 {
            // Arrays of a report's seqs are far shorter than 2^31.
            data.extend_from_slice(&(v.len() as i32).to_be_bytes());
            data.extend_from_slice(&1i32.to_be_bytes());
            for x in v {
                data.extend_from_slice(&8i32.to_be_bytes());
                data.extend_from_slice(&x.to_be_bytes());
            }
        }
        self.field(&data);
    }
}

/// The OID of `int8`, the element type of `int8[]`.
const INT8_OID: i32 = 20;

/// Reads `COPY TO STDOUT (FORMAT binary)` data.
#[derive(Debug)]
pub(crate) struct CopyReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> CopyReader<'a> {
    /// Checks the header.
    pub fn new(data: &'a [u8]) -> Result<CopyReader<'a>, String> {
        let mut r = CopyReader { data, pos: 0 };
        if r.take(11)? != SIGNATURE {
            return Err("not binary COPY data (bad signature)".into());
        }
        let _flags = r.be_i32()?;
        let ext = r.be_i32()?;
        r.take(usize::try_from(ext).map_err(|_| "negative header extension".to_owned())?)?;
        Ok(r)
    }

    /// A reader of tuples starting at byte `pos` of data whose header [`CopyReader::new`]
    /// checked (a position [`CopyReader::position`] returned).
    pub fn at(data: &'a [u8], pos: usize) -> CopyReader<'a> {
        CopyReader { data, pos }
    }

    /// Where the next tuple starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| "binary COPY data ends early".to_owned())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be_i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next tuple's field count, or `None` at the trailer.
    pub fn row(&mut self, expected: i16) -> Result<Option<()>, String> {
        let b = self.take(2)?;
        let n = i16::from_be_bytes([b[0], b[1]]);
        match n {
            -1 => Ok(None),
            n if n == expected => Ok(Some(())),
            n => Err(format!("tuple has {n} fields; expected {expected}")),
        }
    }

    /// The next field's bytes, `None` for NULL.
    pub fn field(&mut self) -> Result<Option<&'a [u8]>, String> {
        let len = self.be_i32()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }

    fn not_null(&mut self, what: &str) -> Result<&'a [u8], String> {
        self.field()?.ok_or_else(|| format!("{what} is NULL"))
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let b = self.not_null(what)?;
        b.try_into()
            .map_err(|_| format!("{what} is {} bytes, not {N}", b.len()))
    }

    pub fn i64(&mut self, what: &str) -> Result<i64, String> {
        self.fixed::<8>(what).map(i64::from_be_bytes)
    }

    pub fn i32(&mut self, what: &str) -> Result<i32, String> {
        self.fixed::<4>(what).map(i32::from_be_bytes)
    }

    pub fn i16(&mut self, what: &str) -> Result<i16, String> {
        self.fixed::<2>(what).map(i16::from_be_bytes)
    }

    pub fn uuid(&mut self, what: &str) -> Result<Uuid, String> {
        self.fixed::<16>(what).map(Uuid::from_bytes)
    }

    pub fn opt_uuid(&mut self, what: &str) -> Result<Option<Uuid>, String> {
        match self.field()? {
            None => Ok(None),
            Some(b) => b
                .try_into()
                .map(|b: [u8; 16]| Some(Uuid::from_bytes(b)))
                .map_err(|_| format!("{what} is not 16 bytes")),
        }
    }

    pub fn text(&mut self, what: &str) -> Result<String, String> {
        let b = self.not_null(what)?;
        String::from_utf8(b.to_vec()).map_err(|e| format!("{what} is not UTF-8: {e}"))
    }

    pub fn opt_text(&mut self, what: &str) -> Result<Option<String>, String> {
        match self.field()? {
            None => Ok(None),
            Some(b) => String::from_utf8(b.to_vec())
                .map(Some)
                .map_err(|e| format!("{what} is not UTF-8: {e}")),
        }
    }

    pub fn bytes(&mut self, what: &str) -> Result<Vec<u8>, String> {
        self.not_null(what).map(<[u8]>::to_vec)
    }

    /// A `timestamptz` as microseconds since 2000-01-01 UTC (`infinity` is i64::MAX, which
    /// the caller then finds out of range).
    pub fn timestamp(&mut self, what: &str) -> Result<i64, String> {
        self.i64(what)
    }

    pub fn opt_i64(&mut self, what: &str) -> Result<Option<i64>, String> {
        match self.field()? {
            None => Ok(None),
            Some(b) => b
                .try_into()
                .map(|b: [u8; 8]| Some(i64::from_be_bytes(b)))
                .map_err(|_| format!("{what} is not 8 bytes")),
        }
    }

    /// A 32-byte hash (`bytea`).
    pub fn hash(&mut self, what: &str) -> Result<[u8; 32], String> {
        self.fixed::<32>(what)
    }

    pub fn opt_hash(&mut self, what: &str) -> Result<Option<[u8; 32]>, String> {
        match self.field()? {
            None => Ok(None),
            Some(b) => b
                .try_into()
                .map(Some)
                .map_err(|_| format!("{what} is {} bytes, not 32", b.len())),
        }
    }

    /// An `int8[]` of at most one dimension without NULLs (see [`CopyWriter::i64_array`]).
    pub fn i64_array(&mut self, what: &str) -> Result<Vec<i64>, String> {
        let data = self.not_null(what)?;
        let mut r = CopyReader { data, pos: 0 };
        let bad = |why: &str| format!("{what}: {why}");
        let ndim = r.be_i32()?;
        let has_nulls = r.be_i32()?;
        let oid = r.be_i32()?;
        if oid != INT8_OID {
            return Err(bad(&format!("element type {oid} is not int8")));
        }
        if has_nulls != 0 {
            return Err(bad("the array holds NULL"));
        }
        let len = match ndim {
            0 => 0,
            1 => {
                let len = r.be_i32()?;
                let _lower_bound = r.be_i32()?;
                usize::try_from(len).map_err(|_| bad("negative length"))?
            }
            n => return Err(bad(&format!("{n} dimensions; expected one"))),
        };
        let mut out = Vec::with_capacity(len.min(data.len() / 12));
        for _ in 0..len {
            out.push(r.i64(what)?);
        }
        if r.pos != data.len() {
            return Err(bad("trailing bytes after the elements"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_and_trailer_constants() {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&0i32.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(HEADER.as_slice(), h.as_slice());
        assert_eq!(TRAILER, &(-1i16).to_be_bytes());
        let mut w = CopyWriter::tuples(8);
        w.row(1);
        w.i16(3);
        let mut data = HEADER.to_vec();
        data.extend_from_slice(&w.into_tuples());
        data.extend_from_slice(TRAILER);
        let mut r = CopyReader::new(&data).unwrap();
        assert!(r.row(1).unwrap().is_some());
        assert_eq!(r.i16("a").unwrap(), 3);
        assert!(r.row(1).unwrap().is_none());
    }

    #[test]
    fn int8_arrays_read_back() {
        for v in [vec![], vec![0i64], vec![1, -2, i64::MAX]] {
            let mut w = CopyWriter::tuples(64);
            w.row(1);
            w.i64_array(&v);
            let mut data = HEADER.to_vec();
            data.extend_from_slice(&w.into_tuples());
            data.extend_from_slice(TRAILER);
            let mut r = CopyReader::new(&data).unwrap();
            assert!(r.row(1).unwrap().is_some());
            assert_eq!(r.i64_array("a").unwrap(), v);
            assert!(r.row(1).unwrap().is_none());
        }
    }

    #[test]
    fn writer_output_reads_back() {
        let mut w = CopyWriter::tuples(64);
        w.row(4);
        w.i64(-5);
        w.text("héllo");
        w.null();
        w.uuid(&Uuid::from_u128(7));
        let mut data = HEADER.to_vec();
        data.extend_from_slice(&w.into_tuples());
        data.extend_from_slice(TRAILER);
        let mut r = CopyReader::new(&data).unwrap();
        assert!(r.row(4).unwrap().is_some());
        assert_eq!(r.i64("a").unwrap(), -5);
        assert_eq!(r.text("b").unwrap(), "héllo");
        assert_eq!(r.opt_text("c").unwrap(), None);
        assert_eq!(r.uuid("d").unwrap(), Uuid::from_u128(7));
        assert!(r.row(4).unwrap().is_none());
        assert!(CopyReader::new(b"PGCOPY").is_err());
        let mut r = CopyReader::new(&data[..data.len() - 3]).unwrap();
        r.row(4).unwrap();
        r.i64("a").unwrap();
        r.text("b").unwrap();
        r.opt_text("c").unwrap();
        assert!(r.uuid("d").unwrap_err().contains("early"));
    }
}
