//! Where a signing key lives, as a command line or a configuration file names it.
//!
//! One string names any key the service or the CLI can sign with:
//!
//! - a path: a software key file (PKCS#8 PEM, [`crate::SoftwareSigner`]);
//! - `pkcs11:…`: an RFC 7512 PKCS#11 URI, e.g.
//!   `pkcs11:token=notary;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/triplicate/pin`;
//! - `yubikey:slot=9c[;serial=N]`: a key in a YubiKey's PIV application, reached through the
//!   `yubikey` crate, with the same `?pin-source=…`/`pin-value=…` query attributes.
//!
//! PINs come from the URI's query: `pin-value=…` (tests only; the URI then is a secret),
//! `pin-source=file:/path` (RFC 7512; the file must not be world-readable) or
//! `pin-source=env:NAME` (an extension: the environment variable `NAME`). Without either the
//! opener asks its [`Interaction`] (a terminal prompt in the CLI) if it has one.
//!
//! A spec's [`Display`](fmt::Display) form never shows a `pin-value`: specs are logged.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

/// Why a key spec was refused. Nothing was opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySpecError {
    #[error("key spec is empty")]
    Empty,
    #[error("key URI {uri:?}: {reason}")]
    Invalid { uri: String, reason: String },
}

/// Where a signing key lives.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySpec {
    /// A software key file (development and tests).
    File(PathBuf),
    /// A key on a PKCS#11 token (SoftHSM2, ykcs11, OpenSC, a vendor HSM module).
    Pkcs11(Pkcs11Uri),
    /// A key in a YubiKey PIV slot, through the `yubikey` crate.
    YubikeyPiv(PivUri),
}

impl KeySpec {
    /// Parses `s`: `pkcs11:` and `yubikey:` prefixes name hardware keys, anything else is a
    /// path (a `file:` prefix is stripped).
    pub fn parse(s: &str) -> Result<KeySpec, KeySpecError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeySpecError::Empty);
        }
        if let Some(rest) = strip_scheme(s, "pkcs11:") {
            return Pkcs11Uri::parse_after_scheme(s, rest).map(KeySpec::Pkcs11);
        }
        if let Some(rest) = strip_scheme(s, "yubikey:") {
            return PivUri::parse_after_scheme(s, rest).map(KeySpec::YubikeyPiv);
        }
        let path = strip_scheme(s, "file:").unwrap_or(s);
        Ok(KeySpec::File(PathBuf::from(path)))
    }

    /// How the key is held, as `keys.toml`'s `held` names it.
    pub fn held(&self) -> &'static str {
        match self {
            KeySpec::File(_) => "software",
            KeySpec::Pkcs11(_) => "pkcs11",
            KeySpec::YubikeyPiv(_) => "yubikey-piv",
        }
    }

    /// The PIN source, for hardware keys.
    pub fn pin(&self) -> Option<&PinSource> {
        match self {
            KeySpec::File(_) => None,
            KeySpec::Pkcs11(u) => Some(&u.pin),
            KeySpec::YubikeyPiv(u) => Some(&u.pin),
        }
    }
}

impl FromStr for KeySpec {
    type Err = KeySpecError;
    fn from_str(s: &str) -> Result<KeySpec, KeySpecError> {
        KeySpec::parse(s)
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::File(p) => write!(f, "{}", p.display()),
            KeySpec::Pkcs11(u) => u.fmt(f),
            KeySpec::YubikeyPiv(u) => u.fmt(f),
        }
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySpec({self})")
    }
}

fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
        Some(&s[scheme.len()..])
    } else {
        None
    }
}

/// Where a PIN comes from.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PinSource {
    /// None given: ask the [`Interaction`] if there is one, else sign without logging in (and
    /// fail with [`crate::SignError::PinRequired`] if the key needs a PIN).
    #[default]
    Ask,
    /// `pin-value=…`: in the URI itself. For tests.
    Value(Zeroizing<String>),
    /// `pin-source=file:/path`: the first line of a file that is not world-readable.
    File(PathBuf),
    /// `pin-source=env:NAME`: an environment variable.
    Env(String),
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::Ask => f.write_str("Ask"),
            PinSource::Value(_) => f.write_str("Value(<redacted>)"),
            PinSource::File(p) => write!(f, "File({})", p.display()),
            PinSource::Env(n) => write!(f, "Env({n})"),
        }
    }
}

/// Why a PIN could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    #[error("PIN file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("PIN file {} is readable by others (mode {mode:04o}); chmod 600 it", path.display())]
    WorldReadable { path: PathBuf, mode: u32 },
    #[error("PIN file {} is empty", path.display())]
    EmptyFile { path: PathBuf },
    #[error("PIN environment variable {name} is not set (or not UTF-8)")]
    EnvMissing { name: String },
    #[error("PIN prompt failed: {0}")]
    Prompt(#[source] io::Error),
}

impl PinSource {
    /// The PIN, if one was given or the interaction supplies one; `Ok(None)` if the source is
    /// [`PinSource::Ask`] and there is nobody to ask. The PIN is never logged.
    pub fn resolve(
        &self,
        what: &str,
        interaction: Option<&dyn Interaction>,
    ) -> Result<Option<Zeroizing<String>>, PinError> {
        match self {
            PinSource::Value(v) => Ok(Some(v.clone())),
            PinSource::Env(name) => std::env::var(name)
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|_| PinError::EnvMissing { name: name.clone() }),
            PinSource::File(path) => read_pin_file(path).map(Some),
            PinSource::Ask => match interaction {
                Some(i) => i.pin(what).map(Some).map_err(PinError::Prompt),
                None => Ok(None),
            },
        }
    }
}

/// Reads a PIN file: refuses files other users can read, takes the first line.
pub fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, PinError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = fs::metadata(path).map_err(|source| PinError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(PinError::WorldReadable {
                path: path.to_owned(),
                mode,
            });
        }
        if mode & 0o070 != 0 {
            tracing::warn!(path = %path.display(), mode = format_args!("{mode:04o}"),
                "PIN file is accessible to its group; chmod 600 it");
        }
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| PinError::Read {
        path: path.to_owned(),
        source,
    })?);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(PinError::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// What a signer may ask of the person at the keyboard. The CLI implements it on the terminal;
/// the service has none (it must be configured with a PIN source and a key without touch).
pub trait Interaction: Send + Sync + fmt::Debug {
    /// Asks for the PIN of `what` (a token or card description). Never echoes it.
    fn pin(&self, what: &str) -> io::Result<Zeroizing<String>>;
    /// Tells the user to touch their key (`what` describes it); called once per signature
    /// that is waiting for a touch.
    fn touch(&self, what: &str);
}

/// How to open a hardware signer.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The signer's name (its signed-note key name).
    pub name: String,
    /// Who to ask for a PIN or a touch, if anyone.
    pub interaction: Option<Arc<dyn Interaction>>,
    /// How long a signature may wait for a touch before [`crate::SignError::TouchTimeout`].
    pub touch_timeout: Duration,
}

impl OpenOptions {
    pub fn named(name: impl Into<String>) -> OpenOptions {
        OpenOptions {
            name: name.into(),
            interaction: None,
            touch_timeout: Duration::from_secs(15),
        }
    }

    pub fn with_interaction(mut self, interaction: Arc<dyn Interaction>) -> OpenOptions {
        self.interaction = Some(interaction);
        self
    }
}

/// The query attributes shared by `pkcs11:` and `yubikey:` URIs.
fn parse_query(uri: &str, query: &str) -> Result<(PinSource, Vec<(String, String)>), KeySpecError> {
    let invalid = |reason: String| KeySpecError::Invalid {
        uri: redact(uri),
        reason,
    };
    let mut pin = PinSource::Ask;
    let mut rest = Vec::new();
    for attr in query.split('&').filter(|a| !a.is_empty()) {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| invalid(format!("query attribute {:?} has no value", k_only(attr))))?;
        let v = decode(v).map_err(|e| invalid(format!("{k}: {e}")))?;
        let set = |pin: &mut PinSource, p: PinSource| -> Result<(), KeySpecError> {
            if *pin != PinSource::Ask {
                return Err(invalid("more than one PIN attribute".to_owned()));
            }
            *pin = p;
            Ok(())
        };
        match k {
            "pin-value" => set(&mut pin, PinSource::Value(Zeroizing::new(v)))?,
            "pin-source" => {
                let p = if let Some(name) = v.strip_prefix("env:") {
                    if name.is_empty() {
                        return Err(invalid("pin-source=env: needs a variable name".to_owned()));
                    }
                    PinSource::Env(name.to_owned())
                } else if let Some(path) = v.strip_prefix("file://") {
                    PinSource::File(PathBuf::from(path))
                } else if let Some(path) = v.strip_prefix("file:") {
                    PinSource::File(PathBuf::from(path))
                } else if v.starts_with('/') {
                    PinSource::File(PathBuf::from(v))
                } else {
                    return Err(invalid(format!(
                        "pin-source {v:?}: expected file:/path or env:NAME"
                    )));
                };
                set(&mut pin, p)?
            }
            _ => rest.push((k.to_owned(), v)),
        }
    }
    Ok((pin, rest))
}

fn k_only(attr: &str) -> &str {
    attr.split('=').next().unwrap_or(attr)
}

fn decode(v: &str) -> Result<String, String> {
    percent_decode_str(v)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "percent-encoded value is not UTF-8".to_owned())
}

fn decode_bytes(v: &str) -> Vec<u8> {
    percent_decode_str(v).collect()
}

/// `s` with the value of any `pin-value` attribute replaced, for error messages and logs.
fn redact(s: &str) -> String {
    let Some((head, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let attrs: Vec<String> = query
        .split('&')
        .map(|a| {
            if a.starts_with("pin-value=") {
                "pin-value=<redacted>".to_owned()
            } else {
                a.to_owned()
            }
        })
        .collect();
    format!("{head}?{}", attrs.join("&"))
}

fn fmt_query(f: &mut fmt::Formatter<'_>, pin: &PinSource, mut first: bool) -> fmt::Result {
    let mut sep = |f: &mut fmt::Formatter<'_>| {
        let s = if first { "?" } else { "&" };
        first = false;
        f.write_str(s)
    };
    match pin {
        PinSource::Ask => {}
        PinSource::Value(_) => {
            sep(f)?;
            f.write_str("pin-value=<redacted>")?;
        }
        PinSource::File(p) => {
            sep(f)?;
            write!(f, "pin-source=file:{}", p.display())?;
        }
        PinSource::Env(n) => {
            sep(f)?;
            write!(f, "pin-source=env:{n}")?;
        }
    }
    Ok(())
}

/// An RFC 7512 PKCS#11 URI naming one private key.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Pkcs11Uri {
    /// `token=`: the token label.
    pub token: Option<String>,
    /// `manufacturer=`.
    pub manufacturer: Option<String>,
    /// `model=`.
    pub model: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `slot-id=`.
    pub slot_id: Option<u64>,
    /// `id=`: the key's CKA_ID (percent-encoded bytes, e.g. `%01`).
    pub id: Option<Vec<u8>>,
    /// `object=`: the key's CKA_LABEL.
    pub object: Option<String>,
    /// `module-path=`: the PKCS#11 module to load.
    pub module_path: Option<PathBuf>,
    /// `module-name=`: a module name, resolved as `lib<name>.so` by the loader's search path.
    pub module_name: Option<String>,
    /// The PIN source.
    pub pin: PinSource,
}

impl Pkcs11Uri {
    fn parse_after_scheme(uri: &str, rest: &str) -> Result<Pkcs11Uri, KeySpecError> {
        let invalid = |reason: String| KeySpecError::Invalid {
            uri: redact(uri),
            reason,
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (pin, others) = parse_query(uri, query)?;
        let mut u = Pkcs11Uri {
            pin,
            ..Pkcs11Uri::default()
        };
        for (k, v) in others {
            match k.as_str() {
                "module-path" => u.module_path = Some(PathBuf::from(v)),
                "module-name" => u.module_name = Some(v),
                _ => return Err(invalid(format!("unknown query attribute {k:?}"))),
            }
        }
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| invalid(format!("path attribute {attr:?} has no value")))?;
            let text = || decode(v).map_err(|e| invalid(format!("{k}: {e}")));
            let slot = match k {
                "token" => &mut u.token,
                "manufacturer" => &mut u.manufacturer,
                "model" => &mut u.model,
                "serial" => &mut u.serial,
                "object" => &mut u.object,
                "id" => {
                    if u.id.is_some() {
                        return Err(invalid("id given twice".to_owned()));
                    }
                    u.id = Some(decode_bytes(v));
                    continue;
                }
                "slot-id" => {
                    let n = text()?
                        .parse::<u64>()
                        .map_err(|_| invalid(format!("slot-id {v:?} is not a number")))?;
                    u.slot_id = Some(n);
                    continue;
                }
                "type" => {
                    let t = text()?;
                    if t != "private" {
                        return Err(invalid(format!("type={t}: a signing key is type=private")));
                    }
                    continue;
                }
                // Attributes that select a library or slot we take as given.
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-manufacturer"
                | "slot-description" => continue,
                _ => return Err(invalid(format!("unknown path attribute {k:?}"))),
            };
            if slot.is_some() {
                return Err(invalid(format!("{k} given twice")));
            }
            *slot = Some(text()?);
        }
        if u.id.is_none() && u.object.is_none() {
            return Err(invalid(
                "name the key with id=… (CKA_ID, e.g. id=%01) or object=… (its label)".to_owned(),
            ));
        }
        if u.module_path.is_none() && u.module_name.is_none() {
            return Err(invalid(
                "name the PKCS#11 module with ?module-path=/path/to/module.so".to_owned(),
            ));
        }
        Ok(u)
    }

    /// A short description for prompts and errors: the token and key, no PIN.
    pub fn describe(&self) -> String {
        let token = self.token.as_deref().unwrap_or("(any token)");
        match (&self.id, &self.object) {
            (Some(id), _) => format!("PKCS#11 token {token:?} key id {}", hex::encode(id)),
            (None, Some(label)) => format!("PKCS#11 token {token:?} key {label:?}"),
            (None, None) => format!("PKCS#11 token {token:?}"),
        }
    }
}

const PCHAR_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use percent_encoding::utf8_percent_encode as enc;
        f.write_str("pkcs11:")?;
        let mut parts: Vec<String> = Vec::new();
        for (k, v) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", enc(v, PCHAR_SET)));
            }
        }
        if let Some(n) = self.slot_id {
            parts.push(format!("slot-id={n}"));
        }
        if let Some(id) = &self.id {
            let hexed: String = id.iter().map(|b| format!("%{b:02X}")).collect();
            parts.push(format!("id={hexed}"));
        }
        if let Some(o) = &self.object {
            parts.push(format!("object={}", enc(o, PCHAR_SET)));
        }
        f.write_str(&parts.join(";"))?;
        let mut first = true;
        if let Some(p) = &self.module_path {
            write!(f, "?module-path={}", enc(&p.to_string_lossy(), PCHAR_SET))?;
            first = false;
        }
        if let Some(n) = &self.module_name {
            write!(
                f,
                "{}module-name={}",
                if first { "?" } else { "&" },
                enc(n, PCHAR_SET)
            )?;
            first = false;
        }
        fmt_query(f, &self.pin, first)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

/// `yubikey:slot=9c[;serial=N]`: a key in a YubiKey's PIV application.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PivUri {
    /// The PIV slot's key reference: `9a`, `9c`, `9d`, `9e` or a retired slot `82`–`95`.
    pub slot: u8,
    /// The YubiKey's serial number, when more than one may be connected.
    pub serial: Option<u32>,
    /// The PIN source.
    pub pin: PinSource,
}

impl PivUri {
    fn parse_after_scheme(uri: &str, rest: &str) -> Result<PivUri, KeySpecError> {
        let invalid = |reason: String| KeySpecError::Invalid {
            uri: redact(uri),
            reason,
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (pin, others) = parse_query(uri, query)?;
        if let Some((k, _)) = others.first() {
            return Err(invalid(format!("unknown query attribute {k:?}")));
        }
        let (mut slot, mut serial) = (None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| invalid(format!("attribute {attr:?} has no value")))?;
            match k {
                "slot" => {
                    let n = u8::from_str_radix(v, 16)
                        .ok()
                        .filter(|n| matches!(n, 0x9a | 0x9c | 0x9d | 0x9e | 0x82..=0x95))
                        .ok_or_else(|| {
                            invalid(format!(
                                "slot {v:?}: expected a PIV key slot in hex (9a, 9c, 9d, 9e, 82–95)"
                            ))
                        })?;
                    slot = Some(n);
                }
                "serial" => {
                    serial = Some(v.parse::<u32>().map_err(|_| {
                        invalid(format!("serial {v:?} is not a YubiKey serial number"))
                    })?);
                }
                _ => return Err(invalid(format!("unknown attribute {k:?}"))),
            }
        }
        let slot = slot.ok_or_else(|| invalid("name the PIV slot: slot=9c".to_owned()))?;
        Ok(PivUri { slot, serial, pin })
    }

    /// A short description for prompts and errors.
    pub fn describe(&self) -> String {
        match self.serial {
            Some(s) => format!("YubiKey {s} PIV slot {:02x}", self.slot),
            None => format!("YubiKey PIV slot {:02x}", self.slot),
        }
    }
}

impl fmt::Display for PivUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "yubikey:slot={:02x}", self.slot)?;
        if let Some(s) = self.serial {
            write!(f, ";serial={s}")?;
        }
        fmt_query(f, &self.pin, true)
    }
}

impl fmt::Debug for PivUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PivUri({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkcs11(s: &str) -> Pkcs11Uri {
        match KeySpec::parse(s) {
            Ok(KeySpec::Pkcs11(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn refused(s: &str) -> String {
        match KeySpec::parse(s) {
            Err(e) => e.to_string(),
            Ok(k) => panic!("{s} was accepted as {k:?}"),
        }
    }

    #[test]
    fn pkcs11_uri_with_id_token_module_and_pin_file() {
        let u = pkcs11(
            "pkcs11:token=triplicate-test;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
        );
        assert_eq!(u.token.as_deref(), Some("triplicate-test"));
        assert_eq!(u.id.as_deref(), Some(&[1u8][..]));
        assert_eq!(
            u.module_path.as_deref(),
            Some(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(u.pin, PinSource::File(PathBuf::from("/run/pin")));
    }

    #[test]
    fn pkcs11_uri_percent_decoding_and_round_trip() {
        let u = pkcs11("pkcs11:token=My%20Token;object=notary%3Bkey;id=%0A%ff?module-path=/m.so&pin-value=12%2634");
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("notary;key"));
        assert_eq!(u.id.as_deref(), Some(&[0x0a, 0xff][..]));
        assert_eq!(u.pin, PinSource::Value(Zeroizing::new("12&34".to_owned())));
        // The display form hides the PIN but otherwise parses back to the same key.
        let shown = u.to_string();
        assert!(!shown.contains("12"), "{shown}");
        assert!(shown.contains("pin-value=<redacted>"), "{shown}");
        let mut back = pkcs11(&shown.replace("<redacted>", "12%2634"));
        assert_eq!(back, u);
        back.pin = PinSource::Ask;
        assert_eq!(pkcs11(&back.to_string()), back);
    }

    #[test]
    fn pin_env_source() {
        let u = pkcs11("pkcs11:id=%02?module-name=softhsm2&pin-source=env:HSM_PIN");
        assert_eq!(u.pin, PinSource::Env("HSM_PIN".to_owned()));
        assert_eq!(u.module_name.as_deref(), Some("softhsm2"));
    }

    #[test]
    fn bad_pkcs11_uris_say_why_and_never_show_the_pin() {
        let e = refused("pkcs11:token=t?module-path=/m.so");
        assert!(e.contains("id="), "{e}");
        let e = refused("pkcs11:id=%01");
        assert!(e.contains("module-path"), "{e}");
        let e = refused("pkcs11:id=%01;colour=red?module-path=/m.so");
        assert!(e.contains("colour"), "{e}");
        let e = refused("pkcs11:id=%01?module-path=/m.so&pin-value=9876&pin-source=env:X");
        assert!(e.contains("more than one PIN"), "{e}");
        assert!(!e.contains("9876"), "{e}");
        let e = refused("pkcs11:id=%01;type=public?module-path=/m.so");
        assert!(e.contains("type=private"), "{e}");
        let e = refused("pkcs11:id=%01?module-path=/m.so&pin-source=https://x");
        assert!(e.contains("file:/path"), "{e}");
    }

    #[test]
    fn yubikey_uris() {
        let KeySpec::YubikeyPiv(u) =
            KeySpec::parse("yubikey:slot=9c;serial=123456?pin-source=env:YK_PIN")
                .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("not a PIV uri")
        };
        assert_eq!((u.slot, u.serial), (0x9c, Some(123456)));
        assert_eq!(u.pin, PinSource::Env("YK_PIN".to_owned()));
        assert_eq!(
            u.to_string(),
            "yubikey:slot=9c;serial=123456?pin-source=env:YK_PIN"
        );
        assert!(refused("yubikey:serial=1").contains("slot=9c"));
        assert!(refused("yubikey:slot=9b").contains("PIV key slot"));
        assert!(refused("yubikey:slot=9c?module-path=/x").contains("module-path"));
    }

    #[test]
    fn paths_are_software_keys() {
        assert_eq!(
            KeySpec::parse("keys/notary.pem").ok(),
            Some(KeySpec::File(PathBuf::from("keys/notary.pem")))
        );
        assert_eq!(
            KeySpec::parse("file:/etc/n.pem").ok(),
            Some(KeySpec::File(PathBuf::from("/etc/n.pem")))
        );
        assert!(matches!(KeySpec::parse("  "), Err(KeySpecError::Empty)));
        assert_eq!(
            KeySpec::parse("keys/n.pem").map(|k| k.held()).ok(),
            Some("software")
        );
    }

    #[cfg(unix)]
    #[test]
    fn pin_files_must_not_be_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("pin");
        fs::write(&path, "4321\nignored\n").unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read_pin_file(&path).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("chmod 600") && !e.contains("4321")),
            "{e:?}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        let pin = read_pin_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pin.as_str(), "4321");
        fs::write(&path, "\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            read_pin_file(&path),
            Err(PinError::EmptyFile { .. })
        ));
    }

    #[test]
    fn ask_without_interaction_is_no_pin() {
        assert!(matches!(PinSource::Ask.resolve("t", None), Ok(None)));
        let missing = PinSource::Env("TRIPLICATE_TEST_SURELY_UNSET_PIN".to_owned());
        assert!(matches!(
            missing.resolve("t", None),
            Err(PinError::EnvMissing { .. })
        ));
    }
}
