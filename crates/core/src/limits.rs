//! Size limits every record obeys. Records live in C2SP entry bundles, whose entries are at most
//! 65,535 bytes; the whole record stays under 60 KiB so there is room to spare, and larger
//! documents are referenced from `attachments` by digest.

/// Longest title, in Unicode scalar values.
pub const TITLE_MAX_CHARS: usize = 200;
/// Longest body, in bytes of UTF-8.
pub const BODY_MAX_BYTES: usize = 32 * 1024;
/// Largest payload, in canonical (JCS) bytes.
pub const PAYLOAD_MAX_BYTES: usize = 16 * 1024;
/// Deepest nesting of arrays and objects in a payload.
pub const PAYLOAD_MAX_DEPTH: usize = 32;
/// Most approvals on one record.
pub const APPROVALS_MAX: usize = 32;
/// Largest record, in canonical bytes.
pub const RECORD_MAX_BYTES: usize = 60 * 1024;
/// Most attachments on one decision.
pub const ATTACHMENTS_MAX: usize = 64;
/// Longest decision kind.
pub const KIND_MAX_LEN: usize = 64;
/// Longest attachment media type.
pub const MEDIA_TYPE_MAX_LEN: usize = 127;
/// Largest integer every JSON implementation reproduces exactly (2^53).
pub const SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;
