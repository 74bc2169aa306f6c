//! Helpers shared by the server's integration tests: decisions and approvals as a submitter
//! and approvers would make them.

// Each test binary uses its own subset.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use triplicate_core::{Approval, Decision, Timestamp};
use triplicate_keys::{Signer, SoftwareSigner};
use uuid::Uuid;

/// A valid decision of `kind` with a fresh UUIDv7.
pub fn decision(kind: &str, title: &str) -> Decision {
    Decision::from_json(
        json!({
            "id": Uuid::now_v7().to_string(),
            "kind": kind,
            "title": title,
            "body": "Moved and carried.",
            "payload": {"amount": 1200},
            "proposed_at": Timestamp::now().to_string(),
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// `key`'s approval of `d`, signed now.
pub fn approve(d: &Decision, key: &SoftwareSigner) -> Approval {
    let signed_at = Timestamp::now();
    let msg = triplicate_core::digest::approval_message(
        &d.digest().unwrap(),
        &key.key_id(),
        key.algorithm(),
        &signed_at,
    )
    .unwrap();
    Approval {
        key_id: key.key_id(),
        alg: key.algorithm(),
        signature: key.sign(&msg).unwrap(),
        signed_at,
    }
}

/// The `POST /v1/decisions` body.
pub fn body(d: &Decision, approvals: &[Approval]) -> Value {
    json!({ "decision": d, "approvals": approvals })
}

/// One request to `base` + `path` (GET, or POST with a JSON body), with an optional bearer
/// token: the status and the body as JSON (`Null` when it is not JSON).
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let mut req = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
