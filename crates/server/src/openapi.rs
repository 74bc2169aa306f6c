//! The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`. The review
//! pages (`/ui/…`, [`crate::http::UI_ROUTES`]) are HTML for browsers, not API, and are left out;
//! the API call that signs a browser in to them (`POST /v1/ui/tickets`) is in.
//!
//! Written by hand as a `serde_json` value rather than derived (utoipa and the like): the
//! request and response types are `triplicate-core`'s and the policy's, whose serde forms are
//! partly hand-written (timestamps, key ids, base64) and which must not know HTTP, so a derive
//! would need annotations on crates that may not carry them. The price of writing it by hand
//! is drift, which `tests/openapi.rs` prevents: it compares the document's paths and methods
//! with [`crate::http::ROUTES`] both ways, resolves every `$ref`, checks the problem types
//! against the README, checks each operation's `security` against how the server answers
//! without a token, and validates real responses against the schemas.
//!
//! Conventions: every operation states `security` itself (`[]` is public); an operation whose
//! reads a configuration may restrict lists `{}` (anonymous) as an alternative. The role a call
//! needs is the bearer requirement's list (OpenAPI 3.1 allows role names there). Problem
//! responses are `application/problem+json` with `type` pinned by `const`.

use serde_json::{json, Map, Value};
use triplicate_core::limits;
use triplicate_projection::query::{DEFAULT_LIMIT, MAX_LIMIT, MAX_TEXT_LEN};

use crate::http::MAX_BODY_BYTES;
use crate::problem::PROBLEM_BASE;

/// Every problem `type` the API answers with (the last segment of the URI), its status and
/// title, and the name of its schema and response in the document. The README's
/// "HTTP problems" lists the same set; `tests/openapi.rs` checks that it does.
pub const PROBLEM_TYPES: &[ProblemType] = &[
    ProblemType::new("invalid-submission", 422, "InvalidSubmission"),
    ProblemType::new("approvals-refused", 422, "ApprovalsRefused"),
    ProblemType::new("decision-id-conflict", 409, "DecisionIdConflict"),
    ProblemType::new("invalid-policy", 422, "InvalidPolicy"),
    ProblemType::new("unauthorized", 401, "Unauthorized"),
    ProblemType::new("forbidden", 403, "Forbidden"),
    ProblemType::new("not-found", 404, "NotFound"),
    ProblemType::new("bad-request", 400, "BadRequest"),
    ProblemType::new("unavailable", 503, "Unavailable"),
    ProblemType::new("writes-frozen", 503, "WritesFrozen"),
    ProblemType::new("internal", 500, "Internal"),
    ProblemType::new("review-closed", 409, "ReviewClosed"),
    ProblemType::new("review-refused", 422, "ReviewRefused"),
    ProblemType::new("drill-running", 409, "DrillRunning"),
];

/// One stable problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    /// The last segment of the `type` URI.
    pub kind: &'static str,
    pub status: u16,
    /// The component name: schema `Problem<name>`, response `<name>`.
    pub name: &'static str,
}

impl ProblemType {
    const fn new(kind: &'static str, status: u16, name: &'static str) -> ProblemType {
        ProblemType { kind, status, name }
    }

    /// The full `type` URI.
    pub fn uri(&self) -> String {
        format!("{PROBLEM_BASE}{}", self.kind)
    }
}

/// The OpenAPI path template of an axum route: `{*rest}` (a wildcard over several segments)
/// becomes `{rest}`, since OpenAPI templates have no wildcard; the parameter says it spans
/// segments.
pub fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Triplicate",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Governance decisions, signed by a quorum of approvers, notarised and kept in three stores that must agree.",
            "description": "Decisions are submitted with their approvals and, once the verified ledger holds them durably, answered with a receipt that verifies offline with the notary's key. The ledger endpoints are public and cacheable (C2SP tlog-tiles, tlog-checkpoint). Errors are RFC 9457 problem details whose `type` never changes.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "tags": [
            { "name": "decisions", "description": "Submitting and reading decisions." },
            { "name": "ledger", "description": "The verified ledger, public by design: checkpoint, tiles, proofs, the notary key." },
            { "name": "admin", "description": "Operating the service." },
            { "name": "verification", "description": "Cross-check reports, on-demand runs and auditors' verdicts on proposed repairs." },
            { "name": "drills", "description": "Recovery drills: a store lost and rebuilt on a scratch copy, with signed reports." },
            { "name": "ui", "description": "Signing a browser in to the review pages (`/ui/reports`), which are HTML and not described here." },
            { "name": "operations", "description": "Health, readiness, metrics and this document." }
        ],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from the service's configuration (which stores its SHA-256). Roles: `reader`, `submitter`, `auditor`, `admin`; `admin` may do everything, `submitter` and `auditor` may also read."
                }
            },
            "parameters": parameters(),
            "schemas": schemas(),
            "responses": responses(),
        }
    })
}

/// `#/components/...` reference.
fn r(section: &str, name: &str) -> Value {
    json!({ "$ref": format!("#/components/{section}/{name}") })
}

fn schema(name: &str) -> Value {
    r("schemas", name)
}

fn response(name: &str) -> Value {
    r("responses", name)
}

fn json_body(description: &str, schema_name: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema(schema_name) } }
    })
}

fn cache_header(description: &str) -> Value {
    json!({ "Cache-Control": { "description": description, "schema": { "type": "string" } } })
}

/// No token needed.
fn public() -> Value {
    json!([])
}

fn needs(role: &str) -> Value {
    json!([{ "bearer": [role] }])
}

/// Open to anyone unless the configuration restricts reads; then a `reader` token.
fn reads() -> Value {
    json!([{}, { "bearer": ["reader"] }])
}

fn paths() -> Value {
    json!({
        "/v1/decisions": {
            "post": {
                "operationId": "submitDecision",
                "tags": ["decisions"],
                "summary": "Submit a decision with its approvals",
                "description": format!("Checks the submission, each approval's signature and key, and the quorum for the decision's kind; on success the record is notarised, appended to the ledger durably and answered with its receipt. Concurrent submissions share one ledger commit. Idempotent by decision id: the same submission again returns the original receipt (200); different content under a recorded id is refused (409). Bodies over {MAX_BODY_BYTES} bytes are refused (413)."),
                "security": needs("submitter"),
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": schema("Submission") } }
                },
                "responses": {
                    "201": json_body("Recorded now: the receipt and where each store stands.", "Accepted"),
                    "200": json_body("Recorded earlier with the same content: the original record with a fresh proof.", "Accepted"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "409": response("DecisionIdConflict"),
                    "413": response("PayloadTooLarge"),
                    "422": {
                        "description": "The submission is malformed (`invalid-submission`, every field problem listed) or its approvals do not satisfy the policy (`approvals-refused`, every failing approval and unmet requirement listed). Nothing is written.",
                        "content": { "application/problem+json": { "schema": {
                            "oneOf": [schema("ProblemInvalidSubmission"), schema("ProblemApprovalsRefused")]
                        } } }
                    },
                    "500": response("Internal"),
                    "503": {
                        "description": "The service cannot record now (`unavailable`), or the cross-verifier found the ledger at fault and writes are frozen until an admin resumes them (`writes-frozen`, the detail says why).",
                        "content": { "application/problem+json": { "schema": {
                            "oneOf": [schema("ProblemUnavailable"), schema("ProblemWritesFrozen")]
                        } } }
                    }
                }
            },
            "get": {
                "operationId": "listDecisions",
                "tags": ["decisions"],
                "summary": "List decisions, newest first",
                "description": "Read from the SQL projection, which may lag the ledger briefly. Filters combine; page with `cursor` (the previous page's `next`) and the same filters. Unknown parameters are refused (400).",
                "security": reads(),
                "parameters": [
                    { "name": "kind", "in": "query", "description": "Only decisions of this kind.", "schema": { "type": "string" } },
                    { "name": "from", "in": "query", "description": "Recorded at or after this time.", "schema": schema("Timestamp") },
                    { "name": "to", "in": "query", "description": "Recorded before this time.", "schema": schema("Timestamp") },
                    { "name": "approver", "in": "query", "description": "Approved with this key.", "schema": schema("KeyId") },
                    { "name": "q", "in": "query", "description": "Every word appears in the title (case-insensitive, whole words).", "schema": { "type": "string", "maxLength": MAX_TEXT_LEN } },
                    { "name": "cursor", "in": "query", "description": "Where to continue: the previous page's `next`.", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "description": format!("Results per page; 0 or absent means {DEFAULT_LIMIT}."), "schema": { "type": "integer", "minimum": 0, "maximum": MAX_LIMIT } }
                ],
                "responses": {
                    "200": json_body("A page of records.", "DecisionPage"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/decisions/{id}": {
            "get": {
                "operationId": "getDecision",
                "tags": ["decisions"],
                "summary": "A decision's record, a receipt with a fresh inclusion proof, and per-store status",
                "security": reads(),
                "parameters": [r("parameters", "DecisionId")],
                "responses": {
                    "200": json_body("The receipt and where each store stands.", "DecisionRead"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "404": response("NotFound"),
                    "500": response("Internal"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/ledger/checkpoint": {
            "get": {
                "operationId": "getCheckpoint",
                "tags": ["ledger"],
                "summary": "The ledger's checkpoint (C2SP tlog-checkpoint in a signed note)",
                "description": "The checkpoint of the last flush (at most about a second behind the newest, which receipts carry), so every tile it names can be fetched.",
                "security": public(),
                "responses": {
                    "200": {
                        "description": "The signed note.",
                        "headers": cache_header("`no-cache`: the checkpoint changes as the ledger grows."),
                        "content": { "text/plain": { "schema": { "type": "string" } } }
                    }
                }
            }
        },
        "/v1/ledger/tile/{path}": {
            "get": {
                "operationId": "getTile",
                "tags": ["ledger"],
                "summary": "A C2SP tlog-tiles tile or entry bundle, served from the ledger's files",
                "security": public(),
                "parameters": [{
                    "name": "path",
                    "in": "path",
                    "required": true,
                    "description": "The C2SP tlog-tiles path below `tile/`, over several segments: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, with `<N>` in `x`-prefixed groups of three digits.",
                    "schema": { "type": "string" },
                    "examples": { "hash tile": { "value": "0/x001/234" }, "partial bundle": { "value": "entries/000.p/7" } }
                }],
                "responses": {
                    "200": {
                        "description": "The tile's bytes.",
                        "headers": cache_header("Full tiles are immutable (`public, max-age=31536000, immutable`); partial ones (`.p/`) are `no-cache`."),
                        "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } }
                    },
                    "400": response("BadRequest"),
                    "404": response("NotFound")
                }
            }
        },
        "/v1/ledger/proof/inclusion": {
            "get": {
                "operationId": "getInclusionProof",
                "tags": ["ledger"],
                "summary": "RFC 9162 inclusion proof of one entry in a tree",
                "security": public(),
                "parameters": [
                    { "name": "index", "in": "query", "required": true, "description": "The entry (a record's seq).", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "size", "in": "query", "description": "The tree size; absent means the current size.", "schema": { "type": "integer", "minimum": 1 } }
                ],
                "responses": {
                    "200": {
                        "description": "The proof. Immutable when `size` was given.",
                        "headers": cache_header("Immutable when `size` was given, `no-cache` otherwise."),
                        "content": { "application/json": { "schema": schema("InclusionProof") } }
                    },
                    "400": response("BadRequest")
                }
            }
        },
        "/v1/ledger/proof/consistency": {
            "get": {
                "operationId": "getConsistencyProof",
                "tags": ["ledger"],
                "summary": "RFC 9162 consistency proof between two tree sizes",
                "security": public(),
                "parameters": [
                    { "name": "from", "in": "query", "required": true, "description": "The older tree size.", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "to", "in": "query", "description": "The newer tree size; absent means the current size.", "schema": { "type": "integer", "minimum": 0 } }
                ],
                "responses": {
                    "200": {
                        "description": "The proof. Immutable when `to` was given.",
                        "headers": cache_header("Immutable when `to` was given, `no-cache` otherwise."),
                        "content": { "application/json": { "schema": schema("ConsistencyProof") } }
                    },
                    "400": response("BadRequest")
                }
            }
        },
        "/v1/keys/notary": {
            "get": {
                "operationId": "getNotaryKey",
                "tags": ["ledger"],
                "summary": "The notary's public key and note verifier key",
                "description": "What verifies receipts and checkpoints offline.",
                "security": public(),
                "responses": {
                    "200": json_body("The notary's key.", "NotaryKey"),
                    "500": response("Internal")
                }
            }
        },
        "/v1/admin/policies/reload": {
            "post": {
                "operationId": "reloadPolicies",
                "tags": ["admin"],
                "summary": "Reload keys.toml and governance.toml",
                "description": "An invalid new policy is refused with every problem (file, line, reason) and the old one stays in force. SIGHUP does the same.",
                "security": needs("admin"),
                "responses": {
                    "200": json_body("The new policy is in force.", "PolicyReloaded"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "422": response("InvalidPolicy")
                }
            }
        },
        "/v1/admin/crosscheck": {
            "post": {
                "operationId": "runCrosscheck",
                "tags": ["admin"],
                "summary": "Run one cross-check of the three stores now",
                "description": "Incremental from the last run unless the body is `{\"full\": true}` (the body is optional). Waits for a run under way to finish first; runs never overlap. Minor findings are repaired as `verification.toml` allows; a critical finding freezes writes. An auditor or admin token.",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "requestBody": {
                    "required": false,
                    "content": { "application/json": { "schema": schema("CrosscheckRequest") } }
                },
                "responses": {
                    "200": json_body("The run's report.", "CrosscheckReport"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/crosscheck/last": {
            "get": {
                "operationId": "getLastCrosscheck",
                "tags": ["admin"],
                "summary": "The last cross-check's report",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "responses": {
                    "200": json_body("The last report.", "CrosscheckReport"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "404": response("NotFound"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/drills": {
            "get": {
                "operationId": "listDrills",
                "tags": ["drills"],
                "summary": "Stored recovery-drill reports, newest first",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "parameters": [
                    { "name": "scenario", "in": "query", "description": "Only this scenario.", "schema": schema("DrillScenario") },
                    { "name": "before", "in": "query", "description": "Drills older than this one (the previous page's `next`).", "schema": schema("Uuid") },
                    { "name": "limit", "in": "query", "description": "Drills per page (default 50).", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
                ],
                "responses": {
                    "200": json_body("A page of drill summaries.", "DrillPage"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/drills/{id}": {
            "get": {
                "operationId": "getDrill",
                "tags": ["drills"],
                "summary": "One drill report, with the notary's signature and the ledger's audit record checked",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "parameters": [{ "name": "id", "in": "path", "required": true, "description": "The drill id.", "schema": schema("Uuid") }],
                "responses": {
                    "200": json_body("The report, its digest, signature and audit record.", "StoredDrill"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "404": response("NotFound"),
                    "500": response("Internal"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/drills/runs": {
            "post": {
                "operationId": "runDrill",
                "tags": ["drills"],
                "summary": "Run one drill now on a scratch copy; its signed report is stored and its digest appended to the ledger",
                "security": [{ "bearer": ["admin"] }],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "required": ["scenario"],
                        "additionalProperties": false,
                        "properties": {
                            "scenario": schema("DrillScenario"),
                            "in_place": { "type": "boolean", "description": "Must be false (the default): a running service drills a scratch copy; in-place drills run from the CLI on a stopped deployment." }
                        }
                    } } }
                },
                "responses": {
                    "201": json_body("The drill's report (passed or not).", "DrillRun"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "409": response("DrillRunning"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/verification/reports": {
            "get": {
                "operationId": "listVerificationReports",
                "tags": ["verification"],
                "summary": "Stored cross-check reports, newest first",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "parameters": [
                    { "name": "before", "in": "query", "description": "Reports older than this run (the previous page's `next`).", "schema": schema("Uuid") },
                    { "name": "limit", "in": "query", "description": "Reports per page (default 50).", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
                ],
                "responses": {
                    "200": json_body("A page of report summaries.", "VerificationReportPage"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/verification/reports/{id}": {
            "get": {
                "operationId": "getVerificationReport",
                "tags": ["verification"],
                "summary": "One stored report, checked against its digest and the ledger's audit record",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "parameters": [{ "name": "id", "in": "path", "required": true, "description": "The run id.", "schema": schema("Uuid") }],
                "responses": {
                    "200": json_body("The report, its digest, its audit record and each action's status and reviews.", "StoredVerificationReport"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "404": response("NotFound"),
                    "500": response("Internal"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/verification/runs": {
            "post": {
                "operationId": "runVerification",
                "tags": ["verification"],
                "summary": "Run one cross-check now; its report is stored and its digest appended to the ledger",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "requestBody": {
                    "required": false,
                    "content": { "application/json": { "schema": schema("CrosscheckRequest") } }
                },
                "responses": {
                    "201": json_body("The run's stored report (Location: its URL).", "StoredVerificationReport"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/verification/repairs/{id}": {
            "get": {
                "operationId": "getProposedRepair",
                "tags": ["verification"],
                "summary": "One repair action: what an auditor signs a verdict over",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "parameters": [{ "name": "id", "in": "path", "required": true, "description": "The action id.", "schema": schema("Uuid") }],
                "responses": {
                    "200": json_body("The action, its run and report digest, its status and reviews.", "ProposedRepair"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "404": response("NotFound"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/verification/repairs/{id}/approve": {
            "post": {
                "operationId": "approveRepair",
                "tags": ["verification"],
                "summary": "An auditor's signed approval; the service runs the repair when it can",
                "description": "The signature is over `\"triplicate/repair-review/v1\\n\" || JCS({action_id, alg, key_id, reason, report_digest (hex), run_id, signed_at, verdict})` with a key in group `auditors`. Projection rows (replaced, restored, or removed past the ledger's end) and missing stream events are repaired at once (outcome `applied` or `unchanged`); so is a rebuild of the embedded stream (a new stream filled from the ledger, checked against its signed checkpoint, swapped in; the damaged file is kept and named in the outcome). A JetStream or KurrentDB stream rebuild is recorded as `deferred` for the operator. A failed repair leaves the action proposed.",
                "security": needs("auditor"),
                "parameters": [{ "name": "id", "in": "path", "required": true, "description": "The action id.", "schema": schema("Uuid") }],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": schema("SignedVerdict") } }
                },
                "responses": {
                    "200": json_body("The verdict is recorded.", "VerdictRecorded"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "404": response("NotFound"),
                    "409": response("ReviewClosed"),
                    "422": response("ReviewRefused"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/verification/repairs/{id}/reject": {
            "post": {
                "operationId": "rejectRepair",
                "tags": ["verification"],
                "summary": "An auditor's signed rejection; nothing is run",
                "security": needs("auditor"),
                "parameters": [{ "name": "id", "in": "path", "required": true, "description": "The action id.", "schema": schema("Uuid") }],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": schema("SignedVerdict") } }
                },
                "responses": {
                    "200": json_body("The verdict is recorded.", "VerdictRecorded"),
                    "400": response("BadRequest"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "404": response("NotFound"),
                    "409": response("ReviewClosed"),
                    "422": response("ReviewRefused"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/ui/tickets": {
            "post": {
                "operationId": "issueUiTicket",
                "tags": ["ui"],
                "summary": "A single-use ticket that signs a browser in to the review pages",
                "description": "Browsers send no bearer token on a navigation, so the review pages (`/ui/reports`) use a session cookie. This call exchanges an auditor's or admin's token for a ticket that works once, within `expires_in` seconds: opening `login_path` (optionally with `&next=/ui/...`, a path under `/ui/`) starts a session of 8 hours for the token's name and role and redirects there. An admin's session sees the pages without review controls. No request body.",
                "security": [{ "bearer": ["auditor"] }, { "bearer": ["admin"] }],
                "responses": {
                    "201": {
                        "description": "The ticket (not cacheable).",
                        "headers": cache_header("`no-store`."),
                        "content": { "application/json": { "schema": schema("UiTicket") } }
                    },
                    "401": response("Unauthorized"),
                    "403": response("Forbidden"),
                    "500": response("Internal"),
                    "503": response("Unavailable")
                }
            }
        },
        "/v1/admin/resume": {
            "post": {
                "operationId": "resumeWrites",
                "tags": ["admin"],
                "summary": "Accept writes again after a critical cross-check finding",
                "security": needs("admin"),
                "responses": {
                    "200": json_body("Writes are accepted again.", "WritesResumed"),
                    "401": response("Unauthorized"),
                    "403": response("Forbidden")
                }
            }
        },
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "tags": ["operations"],
                "summary": "Liveness: the process answers",
                "security": public(),
                "responses": {
                    "200": { "description": "`ok`.", "content": { "text/plain": { "schema": { "type": "string" } } } }
                }
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadiness",
                "tags": ["operations"],
                "summary": "Readiness: whether the service accepts writes, and each store's lag",
                "security": public(),
                "responses": {
                    "200": json_body("Accepting writes.", "Health"),
                    "503": json_body("Not accepting writes.", "Health")
                }
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics (OpenMetrics text)",
                "security": public(),
                "responses": {
                    "200": { "description": "Submissions by outcome, commit batch sizes, latencies, store lag.", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } }
                }
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "tags": ["operations"],
                "summary": "This document",
                "security": public(),
                "responses": {
                    "200": { "description": "The OpenAPI 3.1 document.", "content": { "application/json": { "schema": { "type": "object" } } } }
                }
            }
        }
    })
}

fn parameters() -> Value {
    json!({
        "DecisionId": {
            "name": "id",
            "in": "path",
            "required": true,
            "description": "The decision's id.",
            "schema": schema("Uuid")
        }
    })
}

fn schemas() -> Value {
    let mut all = Map::new();
    for part in [record_schemas(), answer_schemas(), problem_schemas()] {
        if let Value::Object(m) = part {
            all.extend(m);
        }
    }
    Value::Object(all)
}

/// What a record is made of (`triplicate-core`'s serde forms).
fn record_schemas() -> Value {
    json!({
        "Uuid": { "type": "string", "format": "uuid", "description": "Canonical lowercase text." },
        "Timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 UTC in one canonical form: uppercase `T` and `Z`, a fraction of 1–9 digits without trailing zeros. Other forms are refused, not rewritten, since signatures cover the bytes.",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,8}[1-9])?Z$",
            "examples": ["2026-03-01T12:00:00Z", "2026-03-01T12:00:00.25Z"]
        },
        "KeyId": {
            "type": "string",
            "description": "First 8 bytes (16 hex digits) of SHA-256(\"triplicate/key/v1\\n\" ‖ alg ‖ \"\\n\" ‖ public key).",
            "pattern": "^[0-9a-f]{16}$"
        },
        "Algorithm": { "type": "string", "enum": ["ed25519", "ecdsa-p256"] },
        "Base64": { "type": "string", "contentEncoding": "base64", "description": "Standard base64 with padding." },
        "Attachment": {
            "type": "object",
            "description": "A document referenced by digest rather than carried in the record.",
            "required": ["sha256", "media_type", "size"],
            "additionalProperties": false,
            "properties": {
                "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
                "media_type": { "type": "string", "maxLength": limits::MEDIA_TYPE_MAX_LEN, "description": "`type/subtype`, lowercase." },
                "size": { "type": "integer", "minimum": 0 },
                "name": { "type": "string" }
            }
        },
        "Decision": {
            "type": "object",
            "description": "What people propose and approvers sign.",
            "required": ["id", "kind", "title", "body", "payload", "proposed_at"],
            "additionalProperties": false,
            "properties": {
                "id": { "$ref": "#/components/schemas/Uuid", "description": "A UUIDv7." },
                "kind": { "type": "string", "maxLength": limits::KIND_MAX_LEN, "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$", "description": "Dotted lowercase name, e.g. `budget.approval`; selects the quorum." },
                "title": { "type": "string", "minLength": 1, "maxLength": limits::TITLE_MAX_CHARS },
                "body": { "type": "string", "description": format!("At most {} bytes of UTF-8.", limits::BODY_MAX_BYTES) },
                "payload": { "type": "object", "description": format!("Kind-specific data; at most {} canonical bytes, nested at most {} deep.", limits::PAYLOAD_MAX_BYTES, limits::PAYLOAD_MAX_DEPTH) },
                "proposed_at": schema("Timestamp"),
                "supersedes": { "$ref": "#/components/schemas/Uuid", "description": "The decision this one replaces." },
                "attachments": { "type": "array", "maxItems": limits::ATTACHMENTS_MAX, "items": schema("Attachment") }
            }
        },
        "Approval": {
            "type": "object",
            "description": "One approver's signature over the approval message (\"triplicate/approval/v1\\n\" ‖ JCS({alg, decision_digest, key_id, signed_at})).",
            "required": ["key_id", "alg", "signature", "signed_at"],
            "additionalProperties": false,
            "properties": {
                "key_id": schema("KeyId"),
                "alg": schema("Algorithm"),
                "signature": schema("Base64"),
                "signed_at": schema("Timestamp")
            }
        },
        "Submission": {
            "type": "object",
            "description": "A decision with its approvals, as `POST /v1/decisions` takes it.",
            "required": ["decision", "approvals"],
            "additionalProperties": false,
            "properties": {
                "decision": schema("Decision"),
                "approvals": { "type": "array", "maxItems": limits::APPROVALS_MAX, "items": schema("Approval") }
            }
        },
        "NotarySignature": {
            "type": "object",
            "required": ["key_id", "alg", "signature"],
            "additionalProperties": false,
            "properties": {
                "key_id": schema("KeyId"),
                "alg": schema("Algorithm"),
                "signature": schema("Base64")
            }
        },
        "Record": {
            "type": "object",
            "description": "What the three stores hold; its bytes are JCS(record).",
            "required": ["version", "seq", "decision", "approvals", "recorded_at", "notary"],
            "additionalProperties": false,
            "properties": {
                "version": { "type": "integer", "minimum": 1 },
                "seq": { "type": "integer", "minimum": 0, "description": "The record's index in the ledger." },
                "decision": schema("Decision"),
                "approvals": { "type": "array", "items": schema("Approval"), "description": "Sorted by key id." },
                "recorded_at": schema("Timestamp"),
                "notary": schema("NotarySignature")
            }
        },
        "Receipt": {
            "type": "object",
            "description": "Proof that a record is in the ledger, checkable offline with the notary's public key alone.",
            "required": ["version", "seq", "leaf_hash", "record", "checkpoint", "inclusion_proof"],
            "additionalProperties": false,
            "properties": {
                "version": { "type": "integer", "minimum": 1 },
                "seq": { "type": "integer", "minimum": 0 },
                "leaf_hash": { "$ref": "#/components/schemas/Base64", "description": "SHA-256(0x00 ‖ JCS(record))." },
                "record": schema("Record"),
                "checkpoint": { "type": "string", "description": "The signed checkpoint note the proof is against." },
                "inclusion_proof": { "type": "array", "items": schema("Base64") }
            }
        }
    })
}

/// The API's own answers.
fn answer_schemas() -> Value {
    json!({
        "StoreState": {
            "type": "string",
            "enum": ["written", "pending"],
            "description": "`pending`: the catch-up worker will write it."
        },
        "StoreStatus": {
            "type": "object",
            "required": ["ledger", "stream", "projection"],
            "additionalProperties": false,
            "properties": {
                "ledger": { "$ref": "#/components/schemas/StoreState", "description": "Always `written`: nothing is acknowledged before the ledger has it." },
                "stream": schema("StoreState"),
                "projection": schema("StoreState")
            }
        },
        "Accepted": {
            "type": "object",
            "required": ["receipt", "stores"],
            "additionalProperties": false,
            "properties": { "receipt": schema("Receipt"), "stores": schema("StoreStatus") }
        },
        "DecisionRead": {
            "type": "object",
            "required": ["receipt", "stores"],
            "additionalProperties": false,
            "properties": {
                "receipt": { "$ref": "#/components/schemas/Receipt", "description": "With an inclusion proof against the current checkpoint." },
                "stores": schema("StoreStatus")
            }
        },
        "DecisionPage": {
            "type": "object",
            "required": ["decisions", "next"],
            "additionalProperties": false,
            "properties": {
                "decisions": { "type": "array", "items": schema("Record"), "description": "Newest first." },
                "next": { "type": ["string", "null"], "description": "The cursor for the next page; null on the last." }
            }
        },
        "InclusionProof": {
            "type": "object",
            "required": ["index", "tree_size", "leaf_hash", "proof"],
            "additionalProperties": false,
            "properties": {
                "index": { "type": "integer", "minimum": 0 },
                "tree_size": { "type": "integer", "minimum": 1 },
                "leaf_hash": { "type": ["string", "null"], "contentEncoding": "base64" },
                "proof": { "type": "array", "items": schema("Base64") }
            }
        },
        "ConsistencyProof": {
            "type": "object",
            "required": ["from", "to", "proof"],
            "additionalProperties": false,
            "properties": {
                "from": { "type": "integer", "minimum": 0 },
                "to": { "type": "integer", "minimum": 0 },
                "proof": { "type": "array", "items": schema("Base64") }
            }
        },
        "NotaryKey": {
            "type": "object",
            "required": ["name", "key_id", "algorithm", "public_key", "note_verifier_key"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string" },
                "key_id": schema("KeyId"),
                "algorithm": schema("Algorithm"),
                "public_key": schema("Base64"),
                "note_verifier_key": { "type": "string", "description": "C2SP signed-note verifier key: `<name>+<hex id>+<base64 key>`." }
            }
        },
        "CrosscheckRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "full": { "type": "boolean", "default": false, "description": "A full sweep rather than an incremental run." } }
        },
        "CrosscheckReport": {
            "type": "object",
            "description": "A verification report (`triplicate-verifier`'s `Report`): run id, mode, times, checkpoints old and new, ranges, counts per class, every discrepancy and every repair action.",
            "required": ["version", "run_id", "mode", "started_at", "finished_at", "counts", "discrepancies", "actions"],
            "properties": {
                "version": { "type": "integer" },
                "run_id": { "type": "string", "format": "uuid" },
                "mode": { "enum": ["incremental", "full"] },
                "started_at": { "type": "string" },
                "finished_at": { "type": "string" },
                "counts": {
                    "type": "object",
                    "properties": {
                        "lag": { "type": "integer" },
                        "minor": { "type": "integer" },
                        "major": { "type": "integer" },
                        "critical": { "type": "integer" }
                    }
                },
                "discrepancies": { "type": "array", "items": { "type": "object" } },
                "actions": { "type": "array", "items": { "type": "object" } }
            }
        },
        "VerificationReportSummary": {
            "type": "object",
            "required": ["run_id", "mode", "started_at", "finished_at", "counts", "records_compared", "digest", "pending_actions"],
            "properties": {
                "run_id": schema("Uuid"),
                "mode": { "enum": ["incremental", "full"] },
                "started_at": schema("Timestamp"),
                "finished_at": schema("Timestamp"),
                "worst_class": { "type": ["string", "null"], "enum": ["lag", "minor", "major", "critical", null] },
                "counts": schema("ClassCounts"),
                "records_compared": { "type": "integer", "minimum": 0 },
                "checkpoint_size": { "type": ["integer", "null"] },
                "digest": { "type": "string", "description": "Standard base64 of SHA-256(\"triplicate/verification-report/v1\\n\" || JCS(report))." },
                "audit_seq": { "type": ["integer", "null"], "description": "The ledger seq of the audit record carrying the digest." },
                "pending_actions": { "type": "integer", "minimum": 0 }
            }
        },
        "ClassCounts": {
            "type": "object",
            "required": ["lag", "minor", "major", "critical"],
            "properties": {
                "lag": { "type": "integer" },
                "minor": { "type": "integer" },
                "major": { "type": "integer" },
                "critical": { "type": "integer" }
            }
        },
        "DrillScenario": { "enum": ["lose-projection", "lose-stream", "corrupt-ledger", "restore-all", "store-outage"] },
        "DrillSummary": {
            "type": "object",
            "required": ["drill_id", "scenario", "started_at", "finished_at", "passed", "in_place", "records_before", "records_after", "recover_ms", "discrepancies_left", "digest"],
            "properties": {
                "drill_id": schema("Uuid"),
                "scenario": schema("DrillScenario"),
                "started_at": schema("Timestamp"),
                "finished_at": schema("Timestamp"),
                "passed": { "type": "boolean" },
                "in_place": { "type": "boolean" },
                "records_before": { "type": "integer" },
                "records_after": { "type": "integer" },
                "detect_ms": { "type": ["integer", "null"] },
                "recover_ms": { "type": "integer" },
                "discrepancies_left": { "type": "integer" },
                "digest": { "type": "string", "description": "Base64 SHA-256 of `triplicate/drill-report/v1\\n` and the report's canonical JSON." },
                "audit_seq": { "type": ["integer", "null"] }
            }
        },
        "DrillPage": {
            "type": "object",
            "required": ["drills", "next"],
            "properties": {
                "drills": { "type": "array", "items": schema("DrillSummary") },
                "next": { "type": ["string", "null"], "description": "Pass as `before` for older drills." }
            }
        },
        "DrillReport": {
            "type": "object",
            "description": "What a drill did and found: records before and after, checkpoints, times to detect and recover, every step, the final full cross-check, pass or fail.",
            "required": ["version", "drill_id", "scenario", "started_at", "finished_at", "records_before", "records_after", "records_lost", "steps", "discrepancies_left", "passed"],
            "properties": {
                "version": { "type": "integer" },
                "drill_id": schema("Uuid"),
                "scenario": schema("DrillScenario"),
                "in_place": { "type": "boolean" },
                "started_at": schema("Timestamp"),
                "finished_at": schema("Timestamp"),
                "records_before": { "type": "integer" },
                "records_after": { "type": "integer" },
                "records_lost": { "type": "integer" },
                "detect_seconds": { "type": ["number", "null"] },
                "detected_by": { "type": ["string", "null"] },
                "recover_seconds": { "type": ["number", "null"] },
                "steps": { "type": "array", "items": { "type": "object" } },
                "final_check": { "type": ["object", "null"] },
                "discrepancies_left": { "type": "integer" },
                "passed": { "type": "boolean" },
                "failure": { "type": ["string", "null"] }
            }
        },
        "StoredDrill": {
            "type": "object",
            "required": ["drill_id", "report", "digest", "signature", "audit_seq", "audit_record_matches"],
            "properties": {
                "drill_id": schema("Uuid"),
                "report": schema("DrillReport"),
                "digest": { "type": "string" },
                "signature": {
                    "type": "object",
                    "required": ["key_id", "alg", "value", "valid"],
                    "properties": {
                        "key_id": schema("KeyId"),
                        "alg": { "type": "string" },
                        "value": { "type": "string" },
                        "valid": { "type": "boolean" },
                        "problem": { "type": ["string", "null"] }
                    }
                },
                "audit_seq": { "type": ["integer", "null"] },
                "audit_record_matches": { "type": ["boolean", "null"] }
            }
        },
        "DrillRun": {
            "type": "object",
            "required": ["drill_id", "report", "digest", "audit_seq", "stored"],
            "properties": {
                "drill_id": schema("Uuid"),
                "report": schema("DrillReport"),
                "digest": { "type": "string" },
                "audit_seq": { "type": ["integer", "null"] },
                "stored": { "type": "boolean" }
            }
        },
        "VerificationReportPage": {
            "type": "object",
            "required": ["reports", "next"],
            "properties": {
                "reports": { "type": "array", "items": schema("VerificationReportSummary") },
                "next": { "type": ["string", "null"], "description": "Pass as `before` for older reports." }
            }
        },
        "Review": {
            "type": "object",
            "required": ["action_id", "verdict", "key_id", "alg", "signature", "signed_at", "reason", "recorded_at"],
            "properties": {
                "action_id": schema("Uuid"),
                "verdict": { "enum": ["approved", "rejected"] },
                "key_id": schema("KeyId"),
                "alg": { "type": "string" },
                "signature": { "type": "string" },
                "signed_at": schema("Timestamp"),
                "reason": { "type": "string" },
                "outcome": { "type": ["string", "null"] },
                "recorded_at": schema("Timestamp")
            }
        },
        "ActionState": {
            "type": "object",
            "required": ["id", "status", "pending", "reviews"],
            "properties": {
                "id": schema("Uuid"),
                "status": { "type": "string", "description": "planned, proposed, applied, unchanged, failed, rejected, or approved (deferred to the operator)." },
                "pending": { "type": "boolean" },
                "reviews": { "type": "array", "items": schema("Review") }
            }
        },
        "StoredVerificationReport": {
            "type": "object",
            "required": ["run_id", "digest", "audit_seq", "audit_record_matches", "report", "actions"],
            "properties": {
                "run_id": schema("Uuid"),
                "digest": { "type": "string" },
                "audit_seq": { "type": ["integer", "null"] },
                "audit_record_matches": { "type": ["boolean", "null"], "description": "Whether the ledger's record at `audit_seq` carries `digest`; null without an audit record." },
                "report": schema("CrosscheckReport"),
                "actions": { "type": "array", "items": schema("ActionState") }
            }
        },
        "ProposedRepair": {
            "type": "object",
            "required": ["id", "run_id", "report_digest", "action", "status", "pending", "reviews"],
            "properties": {
                "id": schema("Uuid"),
                "run_id": schema("Uuid"),
                "report_digest": { "type": "string" },
                "action": { "type": "object" },
                "status": { "type": "string" },
                "pending": { "type": "boolean" },
                "reviews": { "type": "array", "items": schema("Review") }
            }
        },
        "SignedVerdict": {
            "type": "object",
            "required": ["key_id", "alg", "signature", "signed_at"],
            "additionalProperties": false,
            "properties": {
                "key_id": schema("KeyId"),
                "alg": { "enum": ["ed25519", "ecdsa-p256"] },
                "signature": { "type": "string", "description": "Standard base64." },
                "signed_at": schema("Timestamp"),
                "reason": { "type": "string", "maxLength": 4096 }
            }
        },
        "VerdictRecorded": {
            "type": "object",
            "required": ["action_id", "run_id", "verdict", "status", "review"],
            "properties": {
                "action_id": schema("Uuid"),
                "run_id": schema("Uuid"),
                "verdict": { "enum": ["approved", "rejected"] },
                "status": { "type": "string" },
                "outcome": { "type": ["string", "null"] },
                "review": schema("Review")
            }
        },
        "UiTicket": {
            "type": "object",
            "required": ["ticket", "expires_at", "expires_in", "login_path"],
            "additionalProperties": false,
            "properties": {
                "ticket": { "type": "string", "pattern": "^[A-Za-z0-9_-]{43}$", "description": "256 random bits, URL-safe base64 without padding. Works once." },
                "expires_at": schema("Timestamp"),
                "expires_in": { "type": "integer", "minimum": 1, "description": "Seconds it can be redeemed for (60)." },
                "login_path": { "type": "string", "description": "`/ui/login?ticket=…`: open it in a browser on this service, optionally adding `&next=/ui/…`." }
            }
        },
        "WritesResumed": {
            "type": "object",
            "required": ["accepting_writes", "was_frozen"],
            "properties": {
                "accepting_writes": { "const": true },
                "was_frozen": { "type": ["string", "null"], "description": "Why writes were frozen, if they were." }
            }
        },
        "PolicyReloaded": {
            "type": "object",
            "required": ["reloaded"],
            "additionalProperties": false,
            "properties": { "reloaded": { "const": true } }
        },
        "StoreLag": {
            "type": "object",
            "required": ["size", "lag", "healthy"],
            "additionalProperties": false,
            "properties": {
                "size": { "type": "integer", "minimum": 0, "description": "Records the store holds." },
                "lag": { "type": "integer", "minimum": 0, "description": "Records it lacks behind the ledger." },
                "healthy": { "type": "boolean" }
            }
        },
        "Health": {
            "type": "object",
            "required": ["ledger_size", "stream", "projection", "accepting_writes", "writes_frozen"],
            "additionalProperties": false,
            "properties": {
                "ledger_size": { "type": "integer", "minimum": 0 },
                "stream": schema("StoreLag"),
                "projection": schema("StoreLag"),
                "accepting_writes": { "type": "boolean" },
                "writes_frozen": {
                    "type": "boolean",
                    "description": "True while writes are refused after a critical cross-check finding, until an admin resumes them."
                }
            }
        },
        "FieldProblem": {
            "type": "object",
            "required": ["field", "reason"],
            "properties": { "field": { "type": "string" }, "reason": { "type": "string" } }
        },
        "ApprovalProblem": {
            "type": "object",
            "required": ["index", "key_id", "reason", "message"],
            "properties": {
                "index": { "type": "integer", "minimum": 0, "description": "Position in the submitted list." },
                "key_id": schema("KeyId"),
                "reason": { "type": "string", "enum": ["unknown_key", "algorithm_mismatch", "not_yet_valid", "expired", "revoked", "duplicate_key", "duplicate_holder", "bad_signature"] },
                "message": { "type": "string" }
            }
        },
        "UnmetRequirement": {
            "type": "object",
            "required": ["group", "needed", "got"],
            "properties": {
                "group": { "type": "string" },
                "needed": { "type": "integer", "minimum": 1 },
                "got": { "type": "integer", "minimum": 0 },
                "software_not_counted": { "type": "array", "items": { "type": "integer", "minimum": 0 }, "description": "Sound approvals that did not count because the group requires hardware keys." },
                "unattested_not_counted": { "type": "array", "items": { "type": "integer", "minimum": 0 }, "description": "Sound approvals that did not count because the group requires keys with a verified YubiKey attestation and these keys have none." }
            }
        },
        "PolicyProblem": {
            "type": "object",
            "required": ["file", "line", "reason"],
            "properties": {
                "file": { "type": "string" },
                "line": { "type": "integer", "minimum": 0, "description": "1-based; 0 when about the whole file." },
                "reason": { "type": "string" }
            }
        }
    })
}

/// Extension members of the problem types that have them.
fn problem_extensions(kind: &str) -> Value {
    match kind {
        "invalid-submission" => json!({
            "required": ["problems"],
            "properties": { "problems": { "type": "array", "items": schema("FieldProblem") } }
        }),
        "approvals-refused" => json!({
            "required": ["kind", "kind_refused", "approvals", "unmet"],
            "properties": {
                "kind": { "type": "string" },
                "kind_refused": { "type": "boolean", "description": "The kind is not listed and the policy refuses unlisted kinds." },
                "approvals": { "type": "array", "items": schema("ApprovalProblem") },
                "unmet": { "type": "array", "items": schema("UnmetRequirement") }
            }
        }),
        "decision-id-conflict" => json!({
            "required": ["decision_id", "seq"],
            "properties": {
                "decision_id": schema("Uuid"),
                "seq": { "type": "integer", "minimum": 0, "description": "Where the recorded decision is." }
            }
        }),
        "invalid-policy" => json!({
            "required": ["problems"],
            "properties": { "problems": { "type": "array", "items": schema("PolicyProblem") } }
        }),
        _ => json!({}),
    }
}

fn problem_schemas() -> Value {
    let mut s = Map::new();
    s.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "RFC 9457 problem details. Clients branch on `type`, which never changes.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "format": "uri" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" }
            }
        }),
    );
    for p in PROBLEM_TYPES {
        // The base schema's members, with `type` and `status` pinned, then the extensions.
        let mut pinned = json!({
            "properties": {
                "type": { "const": p.uri() },
                "status": { "const": p.status }
            }
        });
        let ext = problem_extensions(p.kind);
        if let (Some(props), Some(ext_props)) = (
            pinned["properties"].as_object_mut(),
            ext["properties"].as_object(),
        ) {
            props.extend(ext_props.clone());
        }
        if let Some(required) = ext.get("required") {
            pinned["required"] = required.clone();
        }
        s.insert(
            format!("Problem{}", p.name),
            json!({ "allOf": [schema("Problem"), pinned] }),
        );
    }
    Value::Object(s)
}

fn responses() -> Value {
    let mut s = Map::new();
    for p in PROBLEM_TYPES {
        s.insert(
            p.name.into(),
            json!({
                "description": format!("`{}` problem ({}).", p.uri(), p.status),
                "content": { "application/problem+json": { "schema": schema(&format!("Problem{}", p.name)) } }
            }),
        );
    }
    s.insert(
        "PayloadTooLarge".into(),
        json!({
            "description": format!("The body is over {MAX_BODY_BYTES} bytes."),
            "content": { "text/plain": { "schema": { "type": "string" } } }
        }),
    );
    Value::Object(s)
}
