//! Bearer tokens with roles. The configuration stores each token's SHA-256, never the token.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read decisions (when reads are restricted).
    Reader,
    /// Submit decisions.
    Submitter,
    /// Review reports and approve repairs (later issues); reads everything.
    Auditor,
    /// Everything, including policy reloads.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Submitter => "submitter",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Whether a token with this role may act as `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == needed
            || self == Role::Admin
            || (needed == Role::Reader && matches!(self, Role::Auditor | Role::Submitter))
    }
}

/// One configured token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it, for the access log.
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// The tokens the service accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], (String, Role)>,
}

/// Hex SHA-256 of a token, as the configuration stores it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Tokens {
    /// Builds the table; refuses a hash that is not 64 hex digits.
    pub fn new(entries: &[TokenEntry]) -> Result<Tokens, String> {
        let mut by_hash = HashMap::new();
        for e in entries {
            let h: [u8; 32] = hex::decode(&e.sha256)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("token {:?}: sha256 must be 64 hex digits", e.name))?;
            by_hash.insert(h, (e.name.clone(), e.role));
        }
        Ok(Tokens { by_hash })
    }

    /// The caller's name and role, if it sent a known bearer token.
    pub fn identify(&self, headers: &HeaderMap) -> Option<(String, Role)> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = value.strip_prefix("Bearer ")?;
        let h: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.by_hash.get(&h).cloned()
    }

    /// Requires a token allowing `needed`: 401 without a known token, 403 with too little.
    pub fn require(&self, headers: &HeaderMap, needed: Role) -> Result<(String, Role), Problem> {
        match self.identify(headers) {
            None => Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                format!(
                    "this call needs a bearer token with role {}",
                    needed.as_str()
                ),
            )),
            Some((name, role)) if role.allows(needed) => Ok((name, role)),
            Some((name, role)) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                format!(
                    "token {name:?} has role {}; this call needs {}",
                    role.as_str(),
                    needed.as_str()
                ),
            )),
        }
    }
}
