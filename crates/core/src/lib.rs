//! `triplicate-core`: the governance record and everything needed to reproduce its bytes.
//!
//! Owns: the decision, approval, record and receipt types; their validation; their canonical
//! bytes (RFC 8785 JCS); the domain-separated digests that approvals and the notary sign; the
//! RFC 6962 leaf hash the ledger stores.
//!
//! Must not know: files, databases, networks, clocks, key storage or any signature algorithm's
//! implementation. It is pure and synchronous: the same input gives the same bytes on every
//! machine, in every store, in every language that implements JCS.

pub mod ids;

pub use ids::{Algorithm, Hash, KeyId, KeyIdError};
