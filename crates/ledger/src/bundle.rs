//! Entry bundles as C2SP `tlog-tiles` defines them: each entry is a big-endian `uint16` length
//! followed by that many bytes, so no entry may exceed 65,535 bytes.

use crate::LedgerError;

/// The largest entry a bundle can hold.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Appends one entry to a bundle buffer.
pub fn push(buf: &mut Vec<u8>, entry: &[u8]) -> Result<(), LedgerError> {
    let len = u16::try_from(entry.len()).map_err(|_| LedgerError::EntryTooLarge {
        len: entry.len(),
        max: MAX_ENTRY_BYTES,
    })?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(entry);
    Ok(())
}

/// Splits a bundle into its entries, refusing trailing or truncated bytes.
pub fn parse(data: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(format!(
                "truncated length prefix after {} entries",
                out.len()
            ));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + len {
            return Err(format!(
                "entry {} claims {len} bytes but only {} remain",
                out.len(),
                rest.len() - 2
            ));
        }
        out.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut b = Vec::new();
        push(&mut b, b"one").unwrap();
        push(&mut b, b"").unwrap();
        push(&mut b, &[7u8; 300]).unwrap();
        let entries = parse(&b).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], b"one");
        assert_eq!(entries[2].len(), 300);
        assert!(parse(&b[..b.len() - 1]).is_err());
        assert!(parse(&[0]).is_err());
        assert!(push(&mut b, &vec![0u8; 70_000]).is_err());
    }
}
