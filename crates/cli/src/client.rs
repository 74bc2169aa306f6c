//! The service's HTTP client and the client-side trust state that `submit`, `get` and
//! `verify --url` share.
//!
//! **Trust state.** Per server (keyed by its base URL) a small JSON file in the user's config
//! directory (`$XDG_CONFIG_HOME/triplicate/servers/<url>.json`, or the directory named by
//! `TRIPLICATE_CLIENT_STATE_DIR`) holds the notary's note verifier key, pinned on first
//! contact, and the newest checkpoint this client has seen from the server (published at
//! `/v1/ledger/checkpoint` or carried by a receipt). On every contact the client fetches the
//! current checkpoint, verifies its signature with the *pinned* key, and checks that the two
//! trees are one history: a consistency proof (RFC 9162 §2.1.4) from the smaller tree to the
//! larger, fetched from the server. A server that rewrote or lost its history, or that changed
//! its notary key, cannot pass; the command fails (exit 1) and the state is left as it was, so
//! the failure repeats until someone looks.
//!
//! Why "newest seen" and not "last published": `/v1/ledger/checkpoint` serves the last
//! flush's checkpoint, up to a second behind the one in a receipt just handed out. So the
//! server's published tree may be *smaller* than the one remembered; it then has to prove the
//! remembered tree extends its published one, which it can only do if it still holds the
//! remembered tree.
//!
//! Must not know: proof math (`triplicate-ledger`), record formats (`triplicate-core`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use triplicate_core::Timestamp;
use triplicate_ledger::proof::{b64_hash, verify_inclusion};
use triplicate_ledger::{Hash, SignedCheckpoint};

use crate::verify_cmd::check_consistency;

/// Overrides where the per-server state lives (tests point it at a temporary directory).
pub const STATE_DIR_ENV: &str = "TRIPLICATE_CLIENT_STATE_DIR";
/// The bearer token when neither `--token` nor `--token-file` is given.
pub const TOKEN_ENV: &str = "TRIPLICATE_TOKEN";
/// The prefix of every problem `type` (see the server's `problem.rs`).
const PROBLEM_BASE: &str = "https://triplicate.dev/problems/";

/// The server could not be reached or could not answer (a transport error or a 5xx): exit 2.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// A local input could not be read (a missing file, not JSON): exit 2.
#[derive(Debug)]
pub struct Unreadable(pub String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreadable {}

/// The server failed a trust check: its checkpoint does not verify with the pinned key, it
/// cannot prove its history consistent with what this client saw before, it changed its notary
/// key, or its receipt does not verify. Exit 1.
#[derive(Debug)]
pub struct Untrusted(pub String);

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UNTRUSTED: {}", self.0)
    }
}

impl std::error::Error for Untrusted {}

fn untrusted(msg: impl Into<String>) -> anyhow::Error {
    Untrusted(msg.into()).into()
}

/// The exit code for a failed command: 2 when the server or an input could not be read, 1
/// otherwise (refused, untrusted, invalid).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.is::<Unreachable>() || c.is::<Unreadable>())
    {
        2
    } else {
        1
    }
}

/// Reports a failed client command: the error on stderr and, with `--json`, an object on
/// stdout (`{"error", "kind", "exit"}`) so scripts parsing stdout see what happened.
pub fn fail(e: &anyhow::Error, json: bool) -> ExitCode {
    let code = exit_code(e);
    let kind = if e.chain().any(|c| c.is::<Untrusted>()) {
        "untrusted"
    } else if e.chain().any(|c| c.is::<Unreachable>()) {
        "unreachable"
    } else if e.chain().any(|c| c.is::<Unreadable>()) {
        "unreadable"
    } else {
        "error"
    };
    tracing::debug!(error = format!("{e:#}"), kind, "command failed");
    eprintln!("error: {e:#}");
    if json {
        println!(
            "{}",
            json!({ "error": format!("{e:#}"), "kind": kind, "exit": code })
        );
    }
    ExitCode::from(code)
}

/// A single-threaded runtime for a client command (one request at a time).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Runs a client command to completion on [`runtime`], reporting a failure with [`fail`].
pub fn run_client(
    json: bool,
    command: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let out = runtime().and_then(|rt| rt.block_on(command));
    Ok(out.unwrap_or_else(|e| fail(&e, json)))
}

/// A bearer token. Never printed: `Debug` shows only that there is one.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// How a command gets its bearer token: `--token`, `--token-file`, or `TRIPLICATE_TOKEN`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Bearer token (default: the environment variable TRIPLICATE_TOKEN).
    #[arg(long, conflicts_with = "token_file", value_name = "T")]
    pub token: Option<Secret>,
    /// A file holding the bearer token (the development set-up writes `data/dev-admin-token`).
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, if any: a flag beats the environment.
    pub fn resolve(&self) -> anyhow::Result<Option<Secret>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Unreadable(format!("read token file {}: {e}", f.display())))?;
            let t = text.trim();
            if t.is_empty() {
                return Err(Unreadable(format!("token file {} is empty", f.display())).into());
            }
            return Ok(Some(Secret::new(t)));
        }
        Ok(std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(Secret::new))
    }
}

/// Reads a local input file, failing with [`Unreadable`] (exit 2).
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Unreadable(format!("read {}: {e}", path.display())).into())
}

/// Writes a file atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("write {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// The server's base URL without a trailing slash; `http://` is assumed when no scheme is given.
pub fn normalise_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    anyhow::ensure!(!url.is_empty(), "--url is empty");
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", &url));
    let scheme = scheme.to_ascii_lowercase();
    anyhow::ensure!(
        scheme == "http" || scheme == "https",
        "--url {url:?}: only http and https are supported"
    );
    anyhow::ensure!(!rest.is_empty(), "--url {url:?} names no host");
    Ok(format!("{scheme}://{rest}"))
}

/// A file-name-safe form of a base URL: `http://127.0.0.1:8080` → `http_127.0.0.1_8080`.
pub fn state_name(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let rest: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{scheme}_{rest}")
}

/// The service's answer to a JSON request: its status and body (a result or problem+json).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An answer's status and bytes, unparsed.
pub struct RawReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        if self.body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&self.body)
        }
    }
}

/// `GET /v1/keys/notary`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NotaryKey {
    pub name: String,
    pub key_id: String,
    pub algorithm: String,
    pub public_key: String,
    pub note_verifier_key: String,
}

/// The HTTP client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
}

/// An error and its sources, one line (reqwest's own message omits the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl Client {
    /// A client of the server at `url`, sending `token` (if any) as a bearer token.
    pub fn new(url: &str, token: Option<Secret>) -> anyhow::Result<Client> {
        Client::with_pool(url, token, 8)
    }

    /// The same, keeping up to `idle` connections open (the load generator keeps one per
    /// concurrent request).
    pub fn with_pool(url: &str, token: Option<Secret>, idle: usize) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(idle)
            .user_agent(concat!("triplicate/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("build the HTTP client")?;
        Ok(Client {
            http,
            base: normalise_url(url)?,
            token,
        })
    }

    /// The normalised base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t.expose()),
            None => rb,
        }
    }

    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        rb.send()
            .await
            .map_err(|e| Unreachable(format!("{what} at {}: {}", self.base, chain(&e))).into())
    }

    /// Sends a request and reads the answer's bytes. 5xx answers are [`Unreachable`]: the
    /// service could not answer, which says nothing about the request.
    async fn raw(&self, rb: reqwest::RequestBuilder, what: &str) -> anyhow::Result<RawReply> {
        let resp = self.send(rb, what).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| {
            Unreachable(format!(
                "{what} at {}: read the answer: {}",
                self.base,
                chain(&e)
            ))
        })?;
        if status >= 500 {
            let problem = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(Unreachable(format!(
                "{what} at {}: {}",
                self.base,
                describe_problem(status, &problem)
            ))
            .into());
        }
        Ok(RawReply {
            status,
            body: body.to_vec(),
        })
    }

    /// Sends a request and reads a JSON answer (5xx answers are [`Unreachable`], as for
    /// [`Client::raw`]).
    async fn json(&self, rb: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Reply> {
        let raw = self.raw(rb, what).await?;
        let body = raw.json().map_err(|e| {
            Unreachable(format!(
                "{what} at {}: the answer ({}) is not JSON: {e}",
                self.base, raw.status
            ))
        })?;
        Ok(Reply {
            status: raw.status,
            body,
        })
    }

    /// `POST /v1/decisions` with a submission's bytes.
    pub async fn submit(&self, body: Vec<u8>) -> anyhow::Result<Reply> {
        self.json(self.submit_request(body), "submit").await
    }

    /// [`Client::submit`], the answer left unparsed (the load generator parses only the
    /// receipts it samples and the problems it reports).
    pub async fn submit_raw(&self, body: Vec<u8>) -> anyhow::Result<RawReply> {
        self.raw(self.submit_request(body), "submit").await
    }

    fn submit_request(&self, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, "/v1/decisions")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// `GET /v1/decisions/{id}`.
    pub async fn decision(&self, id: &str) -> anyhow::Result<Reply> {
        let rb = self.request(reqwest::Method::GET, &format!("/v1/decisions/{id}"));
        self.json(rb, "get the decision").await
    }

    /// `GET /v1/decisions?…`.
    pub async fn list(&self, query: &[(&str, String)]) -> anyhow::Result<Reply> {
        let rb = self
            .request(reqwest::Method::GET, "/v1/decisions")
            .query(query);
        self.json(rb, "list decisions").await
    }

    /// `GET /v1/keys/notary`.
    pub async fn notary_key(&self) -> anyhow::Result<NotaryKey> {
        let reply = self
            .json(
                self.request(reqwest::Method::GET, "/v1/keys/notary"),
                "get the notary key",
            )
            .await?;
        if !reply.is_success() {
            return Err(untrusted(format!(
                "{} does not serve a notary key: {}",
                self.base,
                describe_problem(reply.status, &reply.body)
            )));
        }
        serde_json::from_value(reply.body)
            .map_err(|e| untrusted(format!("{}: /v1/keys/notary: {e}", self.base)))
    }

    /// `GET /v1/ledger/checkpoint`: the signed note, unverified.
    pub async fn checkpoint(&self) -> anyhow::Result<String> {
        let what = "get the checkpoint";
        let resp = self
            .send(
                self.request(reqwest::Method::GET, "/v1/ledger/checkpoint"),
                what,
            )
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| {
            Unreachable(format!(
                "{what} at {}: read the answer: {}",
                self.base,
                chain(&e)
            ))
        })?;
        match status {
            200 => Ok(text),
            500.. => Err(Unreachable(format!("{what} at {}: status {status}", self.base)).into()),
            _ => Err(untrusted(format!(
                "{} serves no checkpoint (status {status})",
                self.base
            ))),
        }
    }

    /// `GET /v1/ledger/proof/consistency?from=&to=`. A refusal is [`Untrusted`]: the server
    /// cannot prove that its tree of `to` entries extends its tree of `from` entries.
    pub async fn consistency(&self, from: u64, to: u64) -> anyhow::Result<Vec<Hash>> {
        let reply = self
            .json(
                self.request(reqwest::Method::GET, "/v1/ledger/proof/consistency")
                    .query(&[("from", from), ("to", to)]),
                "get a consistency proof",
            )
            .await?;
        if !reply.is_success() {
            return Err(untrusted(format!(
                "{} cannot prove that its tree of {to} entries extends the tree of {from} \
                 entries it showed before: {}",
                self.base,
                describe_problem(reply.status, &reply.body)
            )));
        }
        let sizes = (reply.body["from"].as_u64(), reply.body["to"].as_u64());
        if sizes != (Some(from), Some(to)) {
            return Err(untrusted(format!(
                "{} answered a consistency proof for {:?} when asked for {from} -> {to}",
                self.base, sizes
            )));
        }
        hashes(&reply.body["proof"])
            .map_err(|e| untrusted(format!("{}: consistency proof: {e}", self.base)))
    }

    /// `GET /v1/ledger/proof/inclusion?index=&size=`: the leaf hash and its proof.
    pub async fn inclusion(&self, index: u64, size: u64) -> anyhow::Result<(Hash, Vec<Hash>)> {
        let reply = self
            .json(
                self.request(reqwest::Method::GET, "/v1/ledger/proof/inclusion")
                    .query(&[("index", index), ("size", size)]),
                "get an inclusion proof",
            )
            .await?;
        if !reply.is_success() {
            return Err(untrusted(format!(
                "{} cannot prove it holds the tree of {size} entries it showed before: {}",
                self.base,
                describe_problem(reply.status, &reply.body)
            )));
        }
        let leaf = reply.body["leaf_hash"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no leaf_hash"))
            .and_then(|s| b64_hash::decode(s).map_err(anyhow::Error::msg))
            .map_err(|e| untrusted(format!("{}: inclusion proof: {e}", self.base)))?;
        let proof = hashes(&reply.body["proof"])
            .map_err(|e| untrusted(format!("{}: inclusion proof: {e}", self.base)))?;
        Ok((leaf, proof))
    }
}

fn hashes(v: &Value) -> anyhow::Result<Vec<Hash>> {
    v.as_array()
        .ok_or_else(|| anyhow::anyhow!("`proof` is not a list"))?
        .iter()
        .map(|h| {
            h.as_str()
                .ok_or_else(|| anyhow::anyhow!("a proof hash is not a string"))
                .and_then(|s| b64_hash::decode(s).map_err(anyhow::Error::msg))
        })
        .collect()
}

/// One line for a problem+json answer: `422 approvals-refused: <detail>`.
pub fn describe_problem(status: u16, body: &Value) -> String {
    let kind = body["type"]
        .as_str()
        .map(|t| t.strip_prefix(PROBLEM_BASE).unwrap_or(t).to_owned());
    let detail = body["detail"]
        .as_str()
        .or_else(|| body["title"].as_str())
        .unwrap_or("");
    match kind {
        Some(k) => format!("{status} {k}: {detail}"),
        None if body.is_null() => format!("status {status}"),
        None => format!("status {status}: {body}"),
    }
}

/// A problem+json answer for people: the summary line, then one line per failing approval,
/// unmet requirement or invalid field.
pub fn render_problem(status: u16, body: &Value) -> String {
    let mut out = format!("REFUSED ({})", describe_problem(status, body));
    if let Some(title) = body["title"].as_str() {
        out.push_str(&format!("\n  {title}"));
    }
    if body["kind_refused"].as_bool() == Some(true) {
        out.push_str(&format!(
            "\n  kind `{}`: the policy lists no quorum for this kind and refuses unlisted kinds",
            body["kind"].as_str().unwrap_or("?")
        ));
    }
    for p in body["problems"].as_array().into_iter().flatten() {
        let field = p["field"].as_str().unwrap_or("?");
        let reason = p["reason"].as_str().unwrap_or("?");
        match p["line"].as_u64() {
            Some(line) => out.push_str(&format!("\n  {field}:{line}: {reason}")),
            None => out.push_str(&format!("\n  {field}: {reason}")),
        }
    }
    for a in body["approvals"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  approval {} (key {}): {}: {}",
            a["index"],
            a["key_id"].as_str().unwrap_or("?"),
            a["reason"].as_str().unwrap_or("?"),
            a["message"].as_str().unwrap_or("")
        ));
    }
    for u in body["unmet"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  unmet: group `{}` needs {} approval(s), got {}",
            u["group"].as_str().unwrap_or("?"),
            u["needed"],
            u["got"]
        ));
        if let Some(sw) = u["software_not_counted"]
            .as_array()
            .filter(|a| !a.is_empty())
        {
            let list: Vec<String> = sw.iter().map(|i| i.to_string()).collect();
            out.push_str(&format!(
                " (approvals {} are by software keys, which this group does not count)",
                list.join(", ")
            ));
        }
        if let Some(un) = u["unattested_not_counted"]
            .as_array()
            .filter(|a| !a.is_empty())
        {
            let list: Vec<String> = un.iter().map(|i| i.to_string()).collect();
            out.push_str(&format!(
                " (approvals {} are by keys without a verified attestation, which this group does not count)",
                list.join(", ")
            ));
        }
    }
    if let (Some(id), Some(seq)) = (body["decision_id"].as_str(), body["seq"].as_u64()) {
        out.push_str(&format!(
            "\n  decision {id} is recorded at seq {seq}: `triplicate get {id}` shows it"
        ));
    }
    out
}

/// What the state file holds for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ServerState {
    /// The server's normalised base URL.
    url: String,
    /// The notary's note verifier key, pinned on first contact.
    notary_verifier_key: String,
    /// The newest checkpoint seen from this server (a signed note), from
    /// `/v1/ledger/checkpoint` or a receipt.
    checkpoint: String,
    /// Its tree size, for people reading the file.
    size: u64,
    pinned_at: String,
    updated_at: String,
}

/// Where the per-server state files live.
#[derive(Debug, Clone)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// `$TRIPLICATE_CLIENT_STATE_DIR`, else `<config dir>/triplicate/servers`.
    pub fn locate() -> anyhow::Result<StateDir> {
        if let Some(d) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(StateDir(PathBuf::from(d)));
        }
        let base = dirs::config_dir()
            .with_context(|| format!("this user has no config directory; set {STATE_DIR_ENV}"))?;
        Ok(StateDir(base.join("triplicate").join("servers")))
    }

    /// The state file of the server at `url` (normalised).
    pub fn file(&self, url: &str) -> PathBuf {
        self.0.join(format!("{}.json", state_name(url)))
    }

    fn load(&self, url: &str) -> anyhow::Result<Option<ServerState>> {
        let path = self.file(url);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        let state: ServerState = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a server state file (remove it to start afresh)",
                path.display()
            )
        })?;
        Ok(Some(state))
    }
}

/// One contact with a server whose history checked out: the pinned notary key and the newest
/// checkpoint, consistent with everything seen before. Nothing is remembered until
/// [`Session::save`].
#[derive(Debug)]
pub struct Session {
    /// The pinned note verifier key.
    pub vkey: String,
    /// What the server says its notary key is (matches `vkey`).
    pub notary: NotaryKey,
    /// The newest checkpoint seen, consistent with every earlier one.
    pub latest: SignedCheckpoint,
    /// The tree size remembered before this contact; `None` on first contact.
    pub previous: Option<u64>,
    url: String,
    file: PathBuf,
    pinned_at: String,
}

impl Session {
    /// Contacts the server: pins (first contact) or checks its notary key, verifies its
    /// checkpoint with the pinned key and checks that its history extends the remembered one.
    pub async fn open(client: &Client, dir: &StateDir) -> anyhow::Result<Session> {
        let url = client.url().to_owned();
        let file = dir.file(&url);
        let state = dir.load(&url)?;
        let key = client.notary_key().await?;
        let (vkey, pinned_at) = match &state {
            Some(s) if s.notary_verifier_key != key.note_verifier_key => {
                return Err(untrusted(format!(
                    "{url} changed its notary key: {} was pinned on {}, the server now \
                     presents {}. If its operator rotated the key on purpose, check the new key \
                     out of band, then remove {} to trust it",
                    s.notary_verifier_key,
                    s.pinned_at,
                    key.note_verifier_key,
                    file.display()
                )))
            }
            Some(s) => (s.notary_verifier_key.clone(), s.pinned_at.clone()),
            None => {
                triplicate_keys::note::parse_note_verifier_key(&key.note_verifier_key).map_err(
                    |e| {
                        untrusted(format!(
                            "{url} presents an unusable notary key {:?}: {e}",
                            key.note_verifier_key
                        ))
                    },
                )?;
                (key.note_verifier_key.clone(), Timestamp::now().to_string())
            }
        };
        let note = client.checkpoint().await?;
        let current = SignedCheckpoint::verify(&note, &vkey).map_err(|e| {
            untrusted(format!(
                "{url}'s checkpoint does not verify with the pinned notary key: {e}"
            ))
        })?;
        let mut session = Session {
            vkey,
            notary: key,
            latest: current.clone(),
            previous: None,
            url,
            file,
            pinned_at,
        };
        if let Some(s) = state {
            let remembered =
                SignedCheckpoint::verify(&s.checkpoint, &session.vkey).with_context(|| {
                    format!(
                        "the checkpoint remembered in {} does not verify with its own pinned key \
                         (remove the file to start afresh)",
                        session.file.display()
                    )
                })?;
            session.previous = Some(remembered.size);
            session.latest = prove(client, &remembered, &current).await?;
        }
        Ok(session)
    }

    /// Checks another checkpoint from this server (a receipt's) against the newest one seen,
    /// keeping the newer of the two.
    pub async fn observe(&mut self, client: &Client, note: &str) -> anyhow::Result<()> {
        let cp = SignedCheckpoint::verify(note, &self.vkey).map_err(|e| {
            untrusted(format!(
                "a checkpoint from {} does not verify with the pinned notary key: {e}",
                self.url
            ))
        })?;
        self.latest = prove(client, &self.latest, &cp).await?;
        Ok(())
    }

    /// Remembers the pinned key and the newest checkpoint.
    pub fn save(&self) -> anyhow::Result<()> {
        let state = ServerState {
            url: self.url.clone(),
            notary_verifier_key: self.vkey.clone(),
            checkpoint: self.latest.note.clone(),
            size: self.latest.size,
            pinned_at: self.pinned_at.clone(),
            updated_at: Timestamp::now().to_string(),
        };
        let mut bytes = serde_json::to_vec_pretty(&state)?;
        bytes.push(b'\n');
        write_atomic(&self.file, &bytes)
            .with_context(|| format!("remember the checkpoint of {}", self.url))
    }

    /// One line for people: what this contact established.
    pub fn describe(&self) -> String {
        match self.previous {
            None => format!(
                "first contact: pinned notary key {} (key id {}); tree of {} entries",
                self.notary.name, self.notary.key_id, self.latest.size
            ),
            Some(prev) if prev == self.latest.size => format!(
                "consistent: the same tree of {prev} entries as seen before (notary {}, key id {})",
                self.notary.name, self.notary.key_id
            ),
            Some(prev) => format!(
                "consistent: the tree of {} entries extends the tree of {prev} entries seen before \
                 (notary {}, key id {})",
                self.latest.size, self.notary.name, self.notary.key_id
            ),
        }
    }

    /// The same, as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "url": self.url,
            "first_contact": self.previous.is_none(),
            "previous_size": self.previous,
            "size": self.latest.size,
            "root": crate::ledger_cmd::b64(&self.latest.root),
            "notary_key": self.vkey,
            "state_file": self.file,
        })
    }
}

/// Checks that two verified checkpoints of one server describe one history and returns the
/// larger. The server proves it: a consistency proof from the smaller tree to the larger, or,
/// when the smaller is empty (every tree extends it), an inclusion proof of the larger tree's
/// last entry, so the server still shows it holds that tree.
async fn prove(
    client: &Client,
    a: &SignedCheckpoint,
    b: &SignedCheckpoint,
) -> anyhow::Result<SignedCheckpoint> {
    let (old, new) = if a.size <= b.size { (a, b) } else { (b, a) };
    let inconsistent = |e: String| {
        untrusted(format!(
            "{} cannot prove that its tree of {} entries extends the tree of {} entries: {e}",
            client.url(),
            new.size,
            old.size
        ))
    };
    let proof = if old.size == 0 || old.size == new.size {
        Vec::new()
    } else {
        client.consistency(old.size, new.size).await?
    };
    check_consistency(old, new, &proof).map_err(inconsistent)?;
    if old.size == 0 && new.size > 0 {
        let index = new.size - 1;
        let (leaf, path) = client.inclusion(index, new.size).await?;
        verify_inclusion(&path, index, new.size, &new.root, &leaf)
            .map_err(|e| inconsistent(format!("inclusion proof of entry {index}: {e}")))?;
    }
    Ok(new.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise_and_name_files() {
        assert_eq!(
            normalise_url("127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalise_url("HTTPS://Example.org").unwrap(),
            "https://Example.org"
        );
        assert!(normalise_url("ftp://x").is_err());
        assert_eq!(state_name("http://127.0.0.1:8080"), "http_127.0.0.1_8080");
        assert_eq!(
            state_name("https://Gov.Example.org/api/v2"),
            "https_gov.example.org_api_v2"
        );
    }

    #[test]
    fn problems_render_every_reason() {
        let body = json!({
            "type": "https://triplicate.dev/problems/approvals-refused",
            "title": "The approvals do not satisfy the policy",
            "status": 422,
            "detail": "decision kind `motion` refused",
            "kind": "motion",
            "kind_refused": false,
            "approvals": [{"index": 1, "key_id": "00112233aabbccdd", "reason": "unknown_key", "message": "no such key"}],
            "unmet": [{"group": "board", "needed": 2, "got": 1}],
        });
        let text = render_problem(422, &body);
        assert!(text.contains("422 approvals-refused"), "{text}");
        assert!(
            text.contains("approval 1 (key 00112233aabbccdd): unknown_key: no such key"),
            "{text}"
        );
        assert!(
            text.contains("group `board` needs 2 approval(s), got 1"),
            "{text}"
        );
    }
}
