//! RFC 9457 problem details (`application/problem+json`) with stable `type` URIs.
//!
//! The `type` URIs are an API contract: clients branch on them. They are URNs-as-URLs under
//! `https://triplicate.dev/problems/`, documented in the README, never renamed.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

/// The base of every problem `type`.
pub const PROBLEM_BASE: &str = "https://triplicate.dev/problems/";

/// One problem response.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The last segment of the `type` URI (`invalid-submission`).
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extension members (RFC 9457 §3.2), merged into the body.
    pub extensions: Value,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            extensions: Value::Null,
        }
    }

    /// Adds extension members from a serialisable value (an object).
    pub fn with<T: Serialize>(mut self, extensions: &T) -> Problem {
        self.extensions = serde_json::to_value(extensions).unwrap_or(Value::Null);
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("{PROBLEM_BASE}{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let (Value::Object(b), Value::Object(ext)) = (&mut body, &self.extensions) {
            for (k, v) in ext {
                b.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}
