//! A software Ed25519 signer and its key file, for development and tests only.
//!
//! The key file is PKCS#8 PEM (RFC 5958, RFC 8410), the form `openssl genpkey -algorithm
//! ed25519` writes, so standard tools can read and make these keys. We write a few explanatory
//! lines before the PEM block, which RFC 7468 section 2 allows; on reading, every line before
//! `-----BEGIN` is explanatory text, and a `# name: <name>` line among them names the key:
//!
//! ```text
//! # triplicate software key (development only)
//! # name: alice
//! -----BEGIN PRIVATE KEY-----
//! MC4CAQAwBQYDK2VwBCIEI...
//! -----END PRIVATE KEY-----
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, PrivateKeyInfo, SecretDocument, ALGORITHM_OID};
use ed25519_dalek::{Signer as _, SigningKey};
use triplicate_core::{Algorithm, KeyId};
use zeroize::Zeroizing;

use crate::note::is_valid_key_name;
use crate::public_key::PublicKey;
use crate::signer::{SignError, Signer};

/// The key name used when a key file has no `# name:` line.
pub const DEFAULT_KEY_NAME: &str = "triplicate-dev";

const HEADER: &str = "# triplicate software key (development only)\n";
const NAME_PREFIX: &str = "# name: ";

/// Why a key file could not be read or written. `path` is `None` for PEM text given directly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file does not exist.
    #[error("read key file {}: not found", show(path))]
    NotFound { path: Option<PathBuf> },
    /// Reading, writing or syncing failed.
    #[error("{op} key file {}: {source}", show(path))]
    Io {
        op: &'static str,
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
    /// `write_pem_file` found a file at the path and left it alone.
    #[error(
        "write key file {}: a file already exists there; refusing to overwrite it",
        show(path)
    )]
    Exists { path: Option<PathBuf> },
    /// No `-----BEGIN ...-----` / `-----END ...-----` block.
    #[error(
        "read key file {}: no PEM block (expected -----BEGIN PRIVATE KEY-----)",
        show(path)
    )]
    NoPem { path: Option<PathBuf> },
    /// A PEM block that is not an unencrypted PKCS#8 private key.
    #[error("read key file {}: not a PKCS#8 private key: {reason}", show(path))]
    NotPkcs8 {
        path: Option<PathBuf>,
        reason: String,
    },
    /// A PKCS#8 key of another algorithm.
    #[error(
        "read key file {}: not an Ed25519 key (algorithm {algorithm})",
        show(path)
    )]
    NotEd25519 {
        path: Option<PathBuf>,
        algorithm: String,
    },
    /// The `# name:` line does not hold a valid signed-note key name.
    #[error("key file {}: invalid key name {name:?}: a key name must be non-empty and contain no whitespace and no '+'", show(path))]
    InvalidName { path: Option<PathBuf>, name: String },
    /// More than one `# name:` line.
    #[error("read key file {}: more than one '# name:' line", show(path))]
    DuplicateName { path: Option<PathBuf> },
    /// A file given as a verifier holds no public key we can use.
    #[error("read key file {}: no usable public key: {reason}", show(path))]
    UnusableKey {
        path: Option<PathBuf>,
        reason: String,
    },
}

fn show(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(PEM text)".to_owned(),
    }
}

/// An Ed25519 key held in memory. For development and tests only: the secret key sits in
/// process memory and in a file, protected only by file permissions.
///
/// The secret key is zeroized on drop (ed25519-dalek's `zeroize` feature), and `Debug` prints
/// the name and key id only.
pub struct SoftwareSigner {
    name: String,
    key: SigningKey,
    public: PublicKey,
    key_id: KeyId,
}

impl SoftwareSigner {
    /// Generates a fresh key from the operating system's RNG.
    ///
    /// `name` should be a valid signed-note key name (see [`crate::note::is_valid_key_name`]);
    /// if it is not, [`SoftwareSigner::write_pem_file`] and [`crate::note::sign_note`] refuse
    /// the signer.
    ///
    /// # Panics
    ///
    /// If the operating system's RNG fails, which `getrandom` reports only on systems that
    /// cannot provide randomness at all.
    pub fn generate(name: &str) -> SoftwareSigner {
        SoftwareSigner::from_signing_key(
            name.to_owned(),
            SigningKey::generate(&mut rand_core::OsRng),
        )
    }

    fn from_signing_key(name: String, key: SigningKey) -> SoftwareSigner {
        let public = PublicKey::from_ed25519(key.verifying_key());
        let key_id = public.key_id();
        SoftwareSigner {
            name,
            key,
            public,
            key_id,
        }
    }

    /// Reads a key file (see the module docs for the format).
    ///
    /// A file readable by group or others is still read, with a warning: refusing would stop
    /// development setups for a problem that is theirs to fix.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<SoftwareSigner, KeyFileError> {
        let path = path.as_ref();
        let at = || Some(path.to_path_buf());
        let text = match fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeyFileError::NotFound { path: at() })
            }
            Err(e) => {
                return Err(KeyFileError::Io {
                    op: "read",
                    path: at(),
                    source: e,
                })
            }
        };
        warn_if_readable_by_others(path);
        let signer = parse_pem(&text, at)?;
        tracing::debug!(path = %path.display(), name = %signer.name, key_id = %signer.key_id, "loaded software key");
        Ok(signer)
    }

    /// Parses key-file text (see the module docs for the format).
    pub fn from_pem_str(text: &str) -> Result<SoftwareSigner, KeyFileError> {
        parse_pem(text, || None)
    }

    /// The key file text: our explanatory lines, then the PKCS#8 v1 PEM block (secret only,
    /// as `openssl genpkey` writes it).
    pub fn to_pem(&self) -> Zeroizing<String> {
        let pem = encode_pkcs8_pem(&self.key);
        let name_line = format!("{NAME_PREFIX}{}\n", self.name);
        // Sized up front so the secret is never left behind in a reallocated buffer.
        let mut out = Zeroizing::new(String::with_capacity(
            HEADER.len() + name_line.len() + pem.len(),
        ));
        out.push_str(HEADER);
        out.push_str(&name_line);
        out.push_str(&pem);
        out
    }

    /// Writes the key file: created with mode 0600 (on Unix), never over an existing file, and
    /// synced (file and directory) before returning, so a key handed out is a key kept.
    pub fn write_pem_file(&self, path: impl AsRef<Path>) -> Result<(), KeyFileError> {
        let path = path.as_ref();
        let at = || Some(path.to_path_buf());
        if !is_valid_key_name(&self.name) {
            return Err(KeyFileError::InvalidName {
                path: at(),
                name: self.name.clone(),
            });
        }
        let io_err = |op, source| KeyFileError::Io {
            op,
            path: at(),
            source,
        };
        let mut file = create_new_private(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists { path: at() }
            } else {
                io_err("create", e)
            }
        })?;
        let written = file
            .write_all(self.to_pem().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            // We created the file, so a half-written key is ours to remove; leaving it would
            // make the retry fail with `Exists`.
            if let Err(rm) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %rm, "remove partly written key file");
            }
            return Err(io_err("write", e));
        }
        sync_parent_dir(path).map_err(|e| io_err("sync directory of", e))?;
        Ok(())
    }
}

#[cfg(unix)]
fn create_new_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_new_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Syncs the directory holding `path`, so the new directory entry survives a crash.
#[cfg(unix)]
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; NTFS journals the entry itself.
    Ok(())
}

#[cfg(unix)]
pub(crate) fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:04o}"),
                "software key file is accessible to group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn warn_if_readable_by_others(_path: &Path) {}

/// The DER of a PKCS#8 v1 Ed25519 private key (RFC 8410 section 7) up to the 32-byte seed:
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
/// Every such key has exactly this prefix, so writing it needs no encoder and cannot fail;
/// reading goes through the `pkcs8` crate's full parser.
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn encode_pkcs8_pem(key: &SigningKey) -> Zeroizing<String> {
    let mut der = Zeroizing::new([0u8; 48]);
    der[..16].copy_from_slice(&PKCS8_V1_ED25519_PREFIX);
    der[16..].copy_from_slice(key.as_bytes());
    // 48 bytes of DER are 64 base64 characters: one PEM line, no wrapping needed.
    let mut pem = Zeroizing::new(String::with_capacity(100));
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    BASE64_STANDARD.encode_string(&der[..], &mut pem);
    pem.push_str("\n-----END PRIVATE KEY-----\n");
    pem
}

pub(crate) fn parse_pem(
    text: &str,
    at: impl Fn() -> Option<PathBuf>,
) -> Result<SoftwareSigner, KeyFileError> {
    let (preamble, block) = split_pem(text).ok_or_else(|| KeyFileError::NoPem { path: at() })?;
    let name = key_name(preamble, &at)?;

    let (label, doc) = SecretDocument::from_pem(block).map_err(|e| KeyFileError::NotPkcs8 {
        path: at(),
        reason: e.to_string(),
    })?;
    if label != "PRIVATE KEY" {
        let reason = match label {
            "ENCRYPTED PRIVATE KEY" => "encrypted keys are not supported".to_owned(),
            other => format!("PEM label is {other:?}, expected \"PRIVATE KEY\""),
        };
        return Err(KeyFileError::NotPkcs8 { path: at(), reason });
    }
    let info = PrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| KeyFileError::NotPkcs8 {
        path: at(),
        reason: e.to_string(),
    })?;
    if info.algorithm.oid != ALGORITHM_OID {
        return Err(KeyFileError::NotEd25519 {
            path: at(),
            algorithm: algorithm_name(&info.algorithm.oid.to_string()),
        });
    }
    let key = SigningKey::from_pkcs8_der(doc.as_bytes()).map_err(|e| KeyFileError::NotPkcs8 {
        path: at(),
        reason: e.to_string(),
    })?;
    Ok(SoftwareSigner::from_signing_key(name, key))
}

/// Splits text into the explanatory lines before the first PEM block and the block itself
/// (through its `-----END` line), dropping anything after it.
pub(crate) fn split_pem(text: &str) -> Option<(&str, &str)> {
    let begin = find_line_start(text, "-----BEGIN ")?;
    let (preamble, rest) = text.split_at(begin);
    let end = rest.find("-----END ")?;
    let end = match rest[end..].find('\n') {
        Some(nl) => end + nl + 1,
        None => rest.len(),
    };
    Some((preamble, &rest[..end]))
}

/// The byte offset of the first line that starts with `prefix`.
fn find_line_start(text: &str, prefix: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(prefix) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

pub(crate) fn key_name(
    preamble: &str,
    at: &impl Fn() -> Option<PathBuf>,
) -> Result<String, KeyFileError> {
    let mut name = None;
    for line in preamble.lines() {
        if let Some(n) = line.strip_prefix(NAME_PREFIX) {
            if name.is_some() {
                return Err(KeyFileError::DuplicateName { path: at() });
            }
            let n = n.trim_end();
            if !is_valid_key_name(n) {
                return Err(KeyFileError::InvalidName {
                    path: at(),
                    name: n.to_owned(),
                });
            }
            name = Some(n.to_owned());
        }
    }
    Ok(name.unwrap_or_else(|| DEFAULT_KEY_NAME.to_owned()))
}

pub(crate) fn algorithm_name(oid: &str) -> String {
    let known = match oid {
        "1.2.840.10045.2.1" => "EC (id-ecPublicKey)",
        "1.2.840.113549.1.1.1" => "RSA",
        "1.3.101.110" => "X25519",
        "1.3.101.113" => "Ed448",
        _ => return oid.to_owned(),
    };
    format!("{known}, {oid}")
}

impl Signer for SoftwareSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> KeyId {
        self.key_id.clone()
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519
    }

    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key
            .try_sign(msg)
            .map(|sig| sig.to_bytes().to_vec())
            .map_err(|e| SignError::Key {
                detail: e.to_string(),
            })
    }
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8410 section 10.3: a PKCS#8 v1 Ed25519 private key and its public key.
    const RFC8410_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";
    const RFC8410_PUBLIC: &str = "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";

    #[test]
    fn reads_rfc8410_key_with_default_name() {
        let s = SoftwareSigner::from_pem_str(RFC8410_PEM).unwrap();
        assert_eq!(hex::encode(s.public_key().as_bytes()), RFC8410_PUBLIC);
        assert_eq!(s.name(), DEFAULT_KEY_NAME);
    }

    #[test]
    fn writes_pkcs8_v1_that_reads_back() {
        let s = SoftwareSigner::from_pem_str(RFC8410_PEM).unwrap();
        let pem = s.to_pem();
        assert!(pem.starts_with(HEADER));
        assert!(pem.contains("# name: triplicate-dev\n"));
        // Same key, same encoding as RFC 8410's (v1, secret only).
        assert!(pem.ends_with(RFC8410_PEM), "{}", &*pem);
    }

    #[test]
    fn explanatory_text_and_crlf_are_tolerated() {
        let text = format!(
            "some words first\r\n# name: bob\r\n{}trailing words\n",
            RFC8410_PEM.replace('\n', "\r\n")
        );
        let s = SoftwareSigner::from_pem_str(&text).unwrap();
        assert_eq!(s.name(), "bob");
        assert_eq!(hex::encode(s.public_key().as_bytes()), RFC8410_PUBLIC);
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let s = SoftwareSigner::from_pem_str(RFC8410_PEM).unwrap();
        let dbg = format!("{s:?}");
        assert!(dbg.contains("triplicate-dev"));
        let secret = hex::encode(s.key.to_bytes());
        assert!(!dbg.contains(&secret));
        assert!(!dbg.contains("MC4CAQAw"));
    }
}
