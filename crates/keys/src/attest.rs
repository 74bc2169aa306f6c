//! YubiKey PIV attestation: evidence that a key was generated on a YubiKey, and what the card
//! says about it.
//!
//! Enrolling a hardware key means trusting that its private half cannot be copied. A public key
//! alone cannot show that; a PIV attestation can. When asked to attest a slot
//! (`yubico-piv-tool -a attest`, the `yubikey` crate's `piv::attest`) the card issues a leaf
//! certificate for the slot's public key, signed by its slot-f9 attestation key. The f9
//! certificate is issued by Yubico's PIV CA (directly, or through intermediates on newer
//! devices). The card only issues such a leaf for keys it generated itself, so a chain to a
//! trusted Yubico root means: this key was generated on, and cannot leave, the YubiKey with this
//! serial number, under these PIN and touch policies. See Yubico's "PIV attestation" and "PIV
//! Attestation OID Arc" documents for the format.
//!
//! What is verified: every signature from the leaf up to one of the configured roots (RSA
//! PKCS#1 v1.5 with SHA-256/384/512, ECDSA P-256/P-384 with SHA-256/384, through `ring`), and
//! every certificate's validity period, the root's included, at the instant the caller gives.
//! Which roots to trust is the caller's configuration; nothing is built in.
//!
//! What is deliberately not verified: basic constraints, path lengths and key usage. Yubico's
//! own chains break them (some YubiKey 4 f9 certificates have no basic constraints; the older
//! U2F root that signed some f9 certificates has `pathlen:0`), and the question here is not
//! "may this certificate issue others" but "did a key we trust sign this statement". Revocation
//! is not checked either; Yubico publishes none for attestation.
//!
//! The Yubico extensions (OID arc 1.3.6.1.4.1.41482.3) are read from the leaf. Their values are
//! the extension's `extnValue` contents: raw bytes for the firmware version (3), the policies (2)
//! and the form factor (1), a DER INTEGER for the serial. A value additionally wrapped in an
//! OCTET STRING is accepted too. Serial, firmware and policy must be present (a certificate
//! without them is not one a YubiKey issued, and enrolment records need the serial); the form
//! factor is optional, as older firmware does not write it.
//!
//! Must not know: cards, PC/SC, or where certificates come from. Callers hand over bytes.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest;
use triplicate_core::{Algorithm, KeyId};
use x509_parser::asn1_rs::{FromDer as _, Integer, OctetString};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::public_key::{KeyError, PublicKey};

/// Firmware version of the YubiKey: three bytes, major, minor, patch.
pub const OID_FIRMWARE_VERSION: &str = "1.3.6.1.4.1.41482.3.3";
/// Serial number of the YubiKey: an INTEGER.
pub const OID_SERIAL_NUMBER: &str = "1.3.6.1.4.1.41482.3.7";
/// PIN policy then touch policy of the attested slot: two bytes.
pub const OID_KEY_POLICY: &str = "1.3.6.1.4.1.41482.3.8";
/// Form factor of the YubiKey: one byte.
pub const OID_FORM_FACTOR: &str = "1.3.6.1.4.1.41482.3.9";

/// The common name a YubiKey gives attestation leaves, followed by the slot in hex ("9c").
pub const LEAF_CN_PREFIX: &str = "YubiKey PIV Attestation ";

/// Intermediates allowed between the leaf and a root. Yubico's chains have one (the f9
/// certificate) or, on newer devices, three; the bound keeps path search trivially finite.
const MAX_INTERMEDIATES: usize = 8;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_PRIME256V1: &str = "1.2.840.10045.3.1.7";
const OID_SECP384R1: &str = "1.3.132.0.34";
const OID_SECP521R1: &str = "1.3.132.0.35";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// Signature algorithms accepted on certificates: what Yubico's CAs and cards use, and their
/// SHA-2 siblings. SHA-1 and the rest are refused even where `ring` could check them.
const ACCEPTED_SIGNATURES: &[(&str, &str)] = &[
    ("1.2.840.113549.1.1.11", "RSA PKCS#1 v1.5 with SHA-256"),
    ("1.2.840.113549.1.1.12", "RSA PKCS#1 v1.5 with SHA-384"),
    ("1.2.840.113549.1.1.13", "RSA PKCS#1 v1.5 with SHA-512"),
    ("1.2.840.10045.4.3.2", "ECDSA with SHA-256"),
    ("1.2.840.10045.4.3.3", "ECDSA with SHA-384"),
];

/// Which certificate of a chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// The attestation certificate for the slot's key.
    Leaf,
    /// An intermediate, counted from the leaf: 1 is the certificate that signed the leaf (the
    /// slot-f9 certificate on a YubiKey).
    Intermediate(usize),
    /// A configured trusted root.
    Root,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRole::Leaf => f.write_str("attestation (leaf) certificate"),
            CertRole::Intermediate(1) => f.write_str("intermediate certificate 1 (slot f9)"),
            CertRole::Intermediate(n) => write!(f, "intermediate certificate {n}"),
            CertRole::Root => f.write_str("trusted root certificate"),
        }
    }
}

/// Why an attestation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// Text given as PEM has a malformed block.
    #[error("read PEM certificates: {detail}")]
    Pem { detail: String },
    /// Text given as PEM holds no certificate.
    #[error("read PEM certificates: no CERTIFICATE block found")]
    NoCertificates,
    /// A certificate is not well-formed DER X.509. `what` says which input it was.
    #[error("parse {what}: {detail}")]
    Der { what: String, detail: String },
    /// A PEM bundle from which no single attestation certificate can be picked.
    #[error("cannot tell the attestation certificate in the bundle: {detail}")]
    Bundle { detail: String },
    /// No trusted roots were configured, so nothing can verify.
    #[error("no trusted attestation roots are configured")]
    NoRoots,
    /// A certificate is signed with an algorithm this module does not accept.
    #[error("{cert} ({subject}) is signed with {algorithm}, which is not accepted (RSA PKCS#1 v1.5 with SHA-256/384/512, ECDSA P-256/P-384 with SHA-256/384)")]
    UnsupportedSignatureAlgorithm {
        cert: CertRole,
        subject: String,
        algorithm: String,
    },
    /// A certificate's signature does not verify under the key of the certificate named as its
    /// issuer (or, for a root, its own key).
    #[error("the signature of the {cert} ({subject}) does not verify under the key of {issuer}")]
    BadSignature {
        cert: CertRole,
        subject: String,
        issuer: String,
    },
    /// The chain stops at a certificate whose issuer is neither a trusted root nor among the
    /// given intermediates.
    #[error("no path to a trusted root: the {cert} ({subject}) was issued by {issuer}, which is neither a configured root nor a given intermediate")]
    NoPathToRoot {
        cert: CertRole,
        subject: String,
        issuer: String,
    },
    /// The chain is longer than any real attestation chain.
    #[error("no path to a trusted root within {MAX_INTERMEDIATES} intermediates")]
    ChainTooLong,
    /// A certificate is expired or not yet valid at the given instant. Times are Unix seconds.
    #[error("the {cert} ({subject}) is not valid at {}: it is valid from {} to {}", fmt_time(*now), fmt_time(*not_before), fmt_time(*not_after))]
    Validity {
        cert: CertRole,
        subject: String,
        not_before: i64,
        not_after: i64,
        now: i64,
    },
    /// A required Yubico extension is absent from the leaf.
    #[error("the attestation certificate has no {name} extension ({oid})")]
    MissingExtension {
        name: &'static str,
        oid: &'static str,
    },
    /// A Yubico extension's value cannot be read.
    #[error("the attestation certificate's {name} extension ({oid}) is malformed: {detail}")]
    BadExtension {
        name: &'static str,
        oid: &'static str,
        detail: String,
    },
    /// The attested key is of a kind records cannot carry.
    #[error("YubiKey {serial} attested a {algorithm} key{}; only ECDSA P-256 and Ed25519 keys can be enrolled", match slot { Some(s) => format!(" in slot {s:02x}"), None => String::new() })]
    UnsupportedKey {
        algorithm: String,
        serial: u32,
        slot: Option<u8>,
    },
    /// The attested key is of a supported algorithm but not a valid key.
    #[error("attested key refused: {0}")]
    Key(#[source] KeyError),
    /// The attestation is for a different key than the one being enrolled.
    #[error("the attestation is for key {attested}, not the expected key {expected}")]
    KeyMismatch { expected: KeyId, attested: KeyId },
}

fn fmt_time(unix: i64) -> String {
    match ASN1Time::from_timestamp(unix) {
        Ok(t) => t.to_string(),
        Err(_) => format!("unix time {unix}"),
    }
}

/// A PIV PIN policy as the attestation states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinPolicy {
    /// No PIN needed to use the key.
    Never,
    /// The PIN once per session.
    Once,
    /// The PIN for every use.
    Always,
    /// A value this module does not name (for example a biometric policy of a YubiKey Bio).
    Other(u8),
}

impl PinPolicy {
    fn from_byte(b: u8) -> PinPolicy {
        match b {
            1 => PinPolicy::Never,
            2 => PinPolicy::Once,
            3 => PinPolicy::Always,
            n => PinPolicy::Other(n),
        }
    }
}

/// A PIV touch policy as the attestation states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TouchPolicy {
    /// No touch needed.
    Never,
    /// A touch for every use.
    Always,
    /// A touch, then uses without one for 15 seconds.
    Cached,
    /// A value this module does not name.
    Other(u8),
}

impl TouchPolicy {
    fn from_byte(b: u8) -> TouchPolicy {
        match b {
            1 => TouchPolicy::Never,
            2 => TouchPolicy::Always,
            3 => TouchPolicy::Cached,
            n => TouchPolicy::Other(n),
        }
    }
}

/// The YubiKey's firmware version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The YubiKey's form factor byte. The high bit marks FIPS devices; `Display` names the values
/// Yubico documents and prints others in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FormFactor(pub u8);

impl FormFactor {
    /// Whether the device is a FIPS series YubiKey.
    pub fn is_fips(self) -> bool {
        self.0 & 0x80 != 0
    }
}

impl fmt::Display for FormFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 & 0x7f {
            1 => "USB-A Keychain",
            2 => "USB-A Nano",
            3 => "USB-C Keychain",
            4 => "USB-C Nano",
            5 => "USB-C/Lightning Keychain",
            _ => return write!(f, "unknown form factor 0x{:02x}", self.0),
        };
        f.write_str(name)?;
        if self.is_fips() {
            f.write_str(" FIPS")?;
        }
        Ok(())
    }
}

/// An attestation whose chain verified: the attested key and what the card said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttestation {
    /// The key in the attested slot.
    pub public_key: PublicKey,
    /// The YubiKey's serial number.
    pub serial: u32,
    /// The YubiKey's firmware version.
    pub firmware: FirmwareVersion,
    /// The slot's PIN policy.
    pub pin_policy: PinPolicy,
    /// The slot's touch policy.
    pub touch_policy: TouchPolicy,
    /// The form factor, where the firmware states it.
    pub form_factor: Option<FormFactor>,
    /// The PIV slot (0x9a, 0x9c, …), from the leaf's common name where it has the YubiKey form.
    pub slot: Option<u8>,
    /// Subject of the trusted root the chain ends at, as text.
    pub root_subject: String,
    /// SHA-256 of the trusted root's DER encoding.
    pub root_fingerprint: [u8; 32],
}

impl VerifiedAttestation {
    /// Checks that the attested key is `expected`.
    pub fn check_key(&self, expected: &PublicKey) -> Result<(), AttestationError> {
        if &self.public_key == expected {
            Ok(())
        } else {
            Err(AttestationError::KeyMismatch {
                expected: expected.key_id(),
                attested: self.public_key.key_id(),
            })
        }
    }
}

/// The trust anchors attestations must chain to, typically Yubico's PIV root CA certificates.
#[derive(Clone)]
pub struct TrustedRoots {
    roots: Vec<Vec<u8>>,
}

impl TrustedRoots {
    /// Reads every CERTIFICATE block of `text`; at least one is required.
    pub fn from_pem(text: &str) -> Result<TrustedRoots, AttestationError> {
        TrustedRoots::from_der(read_pem_certificates(text)?)
    }

    /// Takes DER certificates; at least one is required.
    pub fn from_der(roots: Vec<Vec<u8>>) -> Result<TrustedRoots, AttestationError> {
        if roots.is_empty() {
            return Err(AttestationError::NoRoots);
        }
        for (i, der) in roots.iter().enumerate() {
            parse_cert(der, || format!("trusted root {}", i + 1))?;
        }
        Ok(TrustedRoots { roots })
    }

    /// The roots, DER.
    pub fn certificates(&self) -> &[Vec<u8>] {
        &self.roots
    }
}

impl fmt::Debug for TrustedRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subjects: Vec<String> = self
            .roots
            .iter()
            .map(|der| match X509Certificate::from_der(der) {
                Ok((_, c)) => c.subject().to_string(),
                Err(_) => "(unparsable)".to_owned(),
            })
            .collect();
        f.debug_struct("TrustedRoots")
            .field("subjects", &subjects)
            .finish()
    }
}

/// An unverified attestation: the leaf certificate and the certificates that may lead from it
/// to a root (the slot-f9 certificate, and any Yubico intermediates), in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    leaf: Vec<u8>,
    intermediates: Vec<Vec<u8>>,
}

impl Attestation {
    /// The leaf (what `attest` returns for the slot) and the other certificates of the chain,
    /// DER, in any order; usually just the slot-f9 certificate.
    pub fn new(leaf: Vec<u8>, intermediates: Vec<Vec<u8>>) -> Attestation {
        Attestation {
            leaf,
            intermediates,
        }
    }

    /// A PEM bundle holding the leaf and the chain in any order. The leaf is the one
    /// certificate that issued none of the others (self-signed certificates in the bundle are
    /// ignored: roots come from configuration, never from the bundle).
    pub fn from_pem_bundle(text: &str) -> Result<Attestation, AttestationError> {
        let ders = read_pem_certificates(text)?;
        let mut certs = Vec::with_capacity(ders.len());
        for (i, der) in ders.iter().enumerate() {
            certs.push(parse_cert(der, || {
                format!("certificate {} of the bundle", i + 1)
            })?);
        }
        let self_signed = |c: &X509Certificate<'_>| c.subject().as_raw() == c.issuer().as_raw();
        let issued_another = |i: usize| {
            certs.iter().enumerate().any(|(j, other)| {
                j != i
                    && !self_signed(other)
                    && other.issuer().as_raw() == certs[i].subject().as_raw()
            })
        };
        let candidates: Vec<usize> = (0..certs.len())
            .filter(|&i| !self_signed(&certs[i]) && !issued_another(i))
            .collect();
        let leaf = match candidates.as_slice() {
            [only] => *only,
            [] => {
                return Err(AttestationError::Bundle {
                    detail: "every certificate issued another or is self-signed".to_owned(),
                })
            }
            many => {
                let named: Vec<usize> = many
                    .iter()
                    .copied()
                    .filter(|&i| slot_from_subject(&certs[i]).is_some())
                    .collect();
                match named.as_slice() {
                    [only] => *only,
                    _ => {
                        return Err(AttestationError::Bundle {
                            detail: format!(
                                "{} certificates issued no other: {}",
                                many.len(),
                                many.iter()
                                    .map(|&i| certs[i].subject().to_string())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ),
                        })
                    }
                }
            }
        };
        let intermediates = ders
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != leaf && !self_signed(&certs[i]))
            .map(|(_, der)| der.clone())
            .collect();
        Ok(Attestation {
            leaf: ders[leaf].clone(),
            intermediates,
        })
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    /// Verifies the chain to one of `roots` at `now` and reads the attested key and the
    /// YubiKey's statements. Checks, in order: parsing, chain signatures and validity, the
    /// Yubico extensions, the key's algorithm.
    pub fn verify(
        &self,
        roots: &TrustedRoots,
        now: SystemTime,
    ) -> Result<VerifiedAttestation, AttestationError> {
        let now = unix_seconds(now);
        let leaf = parse_cert(&self.leaf, || "attestation certificate".to_owned())?;
        let mut pool = Vec::with_capacity(self.intermediates.len());
        for (i, der) in self.intermediates.iter().enumerate() {
            pool.push(parse_cert(der, || format!("chain certificate {}", i + 1))?);
        }
        let mut anchors = Vec::with_capacity(roots.roots.len());
        for (i, der) in roots.roots.iter().enumerate() {
            anchors.push(parse_cert(der, || format!("trusted root {}", i + 1))?);
        }
        if roots.roots.iter().any(|r| r == &self.leaf) {
            return Err(AttestationError::Bundle {
                detail: "the attestation certificate is itself a trusted root".to_owned(),
            });
        }

        let root = build_chain(&leaf, &pool, &anchors, now)?;
        let root_subject = root.subject().to_string();
        let mut root_fingerprint = [0u8; 32];
        root_fingerprint.copy_from_slice(digest::digest(&digest::SHA256, root.as_raw()).as_ref());

        let ext = read_extensions(&leaf)?;
        let slot = slot_from_subject(&leaf);
        let public_key = attested_key(leaf.public_key(), ext.serial, slot)?;
        tracing::debug!(
            serial = ext.serial,
            slot = ?slot,
            key_id = %public_key.key_id(),
            root = %root_subject,
            "verified YubiKey PIV attestation"
        );
        Ok(VerifiedAttestation {
            public_key,
            serial: ext.serial,
            firmware: ext.firmware,
            pin_policy: ext.pin_policy,
            touch_policy: ext.touch_policy,
            form_factor: ext.form_factor,
            slot,
            root_subject,
            root_fingerprint,
        })
    }

    /// [`Attestation::verify`], then [`VerifiedAttestation::check_key`]: the check to run
    /// before enrolling `expected` as a hardware key.
    pub fn verify_for(
        &self,
        expected: &PublicKey,
        roots: &TrustedRoots,
        now: SystemTime,
    ) -> Result<VerifiedAttestation, AttestationError> {
        let verified = self.verify(roots, now)?;
        verified.check_key(expected)?;
        Ok(verified)
    }
}

/// Reads every `CERTIFICATE` block of a PEM text, in order, as DER. Text outside blocks is
/// ignored; blocks of other types are an error, as are malformed blocks and text with none.
pub fn read_pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, AttestationError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let pem = block.map_err(|e| AttestationError::Pem {
            detail: e.to_string(),
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(AttestationError::Pem {
                detail: format!("expected CERTIFICATE blocks, found {:?}", pem.label),
            });
        }
        out.push(pem.contents);
    }
    if out.is_empty() {
        return Err(AttestationError::NoCertificates);
    }
    Ok(out)
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn parse_cert(
    der: &[u8],
    what: impl Fn() -> String,
) -> Result<X509Certificate<'_>, AttestationError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| AttestationError::Der {
        what: what(),
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(AttestationError::Der {
            what: what(),
            detail: format!("{} bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

fn check_validity(
    cert: &X509Certificate<'_>,
    role: CertRole,
    now: i64,
) -> Result<(), AttestationError> {
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before || now > not_after {
        return Err(AttestationError::Validity {
            cert: role,
            subject: cert.subject().to_string(),
            not_before,
            not_after,
            now,
        });
    }
    Ok(())
}

fn check_signature_algorithm(
    cert: &X509Certificate<'_>,
    role: CertRole,
) -> Result<(), AttestationError> {
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    // The outer algorithm is what the signature is checked with; the signed copy inside the
    // TBS must say the same (RFC 5280 4.1.1.2), or the signature would vouch for a different
    // algorithm than the one used.
    let inner = cert.tbs_certificate.signature.algorithm.to_id_string();
    if inner != oid || !ACCEPTED_SIGNATURES.iter().any(|(o, _)| *o == oid) {
        return Err(AttestationError::UnsupportedSignatureAlgorithm {
            cert: role,
            subject: cert.subject().to_string(),
            algorithm: if inner == oid {
                oid
            } else {
                format!("{oid} (but {inner} in the signed part)")
            },
        });
    }
    Ok(())
}

/// Walks from the leaf to a trusted root through `pool`, checking each certificate's
/// signature algorithm, validity and signature; returns the root reached.
///
/// At each step the issuer is looked for first among the roots, then among unused
/// intermediates; candidates whose subject matches the certificate's issuer name are tried
/// first, then the rest (names in the wild are not always encoded identically), and the first
/// whose key verifies the signature wins. The error names the certificate the walk stopped at.
fn build_chain<'a>(
    leaf: &X509Certificate<'_>,
    pool: &[X509Certificate<'_>],
    roots: &'a [X509Certificate<'a>],
    now: i64,
) -> Result<&'a X509Certificate<'a>, AttestationError> {
    let mut used = vec![false; pool.len()];
    let mut current = leaf;
    let mut role = CertRole::Leaf;
    for depth in 0..=MAX_INTERMEDIATES {
        check_signature_algorithm(current, role)?;
        check_validity(current, role, now)?;
        let issuer_name = current.issuer().as_raw();
        let verifies =
            |spki: &SubjectPublicKeyInfo<'_>| current.verify_signature(Some(spki)).is_ok();

        let mut name_matched: Option<String> = None;
        let mut note_match = |c: &X509Certificate<'_>| {
            if name_matched.is_none() && c.subject().as_raw() == issuer_name {
                name_matched = Some(c.subject().to_string());
            }
        };

        // A root first: the shortest path to trust.
        let mut ordered_roots: Vec<&X509Certificate<'_>> = roots.iter().collect();
        ordered_roots.sort_by_key(|c| c.subject().as_raw() != issuer_name);
        for root in ordered_roots {
            note_match(root);
            if verifies(root.public_key()) {
                check_validity(root, CertRole::Root, now)?;
                // The anchor's own signature is not part of the trust decision (the anchor is
                // trusted because it is configured), so it is not checked.
                return Ok(root);
            }
        }

        let mut ordered_pool: Vec<usize> = (0..pool.len()).filter(|&i| !used[i]).collect();
        ordered_pool.sort_by_key(|&i| pool[i].subject().as_raw() != issuer_name);
        let mut next = None;
        for i in ordered_pool {
            note_match(&pool[i]);
            if verifies(pool[i].public_key()) {
                next = Some(i);
                break;
            }
        }
        match next {
            Some(i) => {
                if depth == MAX_INTERMEDIATES {
                    break;
                }
                used[i] = true;
                current = &pool[i];
                role = CertRole::Intermediate(depth + 1);
            }
            None => {
                let subject = current.subject().to_string();
                return Err(match name_matched {
                    Some(issuer) => AttestationError::BadSignature {
                        cert: role,
                        subject,
                        issuer,
                    },
                    None => AttestationError::NoPathToRoot {
                        cert: role,
                        subject,
                        issuer: current.issuer().to_string(),
                    },
                });
            }
        }
    }
    Err(AttestationError::ChainTooLong)
}

struct Extensions {
    serial: u32,
    firmware: FirmwareVersion,
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
    form_factor: Option<FormFactor>,
}

fn read_extensions(leaf: &X509Certificate<'_>) -> Result<Extensions, AttestationError> {
    let find = |oid: &str| {
        leaf.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value)
    };
    let require = |name: &'static str, oid: &'static str| {
        find(oid).ok_or(AttestationError::MissingExtension { name, oid })
    };

    let value = require("firmware version", OID_FIRMWARE_VERSION)?;
    let [major, minor, patch] = fixed_bytes::<3>(value, "firmware version", OID_FIRMWARE_VERSION)?;
    let firmware = FirmwareVersion {
        major,
        minor,
        patch,
    };

    let value = require("serial number", OID_SERIAL_NUMBER)?;
    let serial = read_serial(value)?;

    let value = require("PIN and touch policy", OID_KEY_POLICY)?;
    let [pin, touch] = fixed_bytes::<2>(value, "PIN and touch policy", OID_KEY_POLICY)?;

    let form_factor = match find(OID_FORM_FACTOR) {
        Some(value) => {
            let [b] = fixed_bytes::<1>(value, "form factor", OID_FORM_FACTOR)?;
            Some(FormFactor(b))
        }
        None => None,
    };

    Ok(Extensions {
        serial,
        firmware,
        pin_policy: PinPolicy::from_byte(pin),
        touch_policy: TouchPolicy::from_byte(touch),
        form_factor,
    })
}

/// A fixed-length extension value: the raw `extnValue` contents as YubiKeys write them, or
/// those bytes wrapped once more in an OCTET STRING.
fn fixed_bytes<const N: usize>(
    value: &[u8],
    name: &'static str,
    oid: &'static str,
) -> Result<[u8; N], AttestationError> {
    if let Ok(raw) = <[u8; N]>::try_from(value) {
        return Ok(raw);
    }
    if let Ok((rest, inner)) = OctetString::from_der(value) {
        if rest.is_empty() {
            if let Ok(arr) = <[u8; N]>::try_from(inner.as_cow().as_ref()) {
                return Ok(arr);
            }
        }
    }
    Err(AttestationError::BadExtension {
        name,
        oid,
        detail: format!("expected {N} bytes, got {}", hex::encode(value)),
    })
}

/// The serial: a DER INTEGER (as YubiKeys write it), or one wrapped in an OCTET STRING.
fn read_serial(value: &[u8]) -> Result<u32, AttestationError> {
    let bad = |detail: String| AttestationError::BadExtension {
        name: "serial number",
        oid: OID_SERIAL_NUMBER,
        detail,
    };
    let integer = |bytes: &[u8]| -> Option<Result<u32, String>> {
        let (rest, int) = Integer::from_der(bytes).ok()?;
        if !rest.is_empty() {
            return None;
        }
        Some(
            int.as_u32()
                .map_err(|_| format!("INTEGER out of range for a serial: {}", hex::encode(bytes))),
        )
    };
    if let Some(r) = integer(value) {
        return r.map_err(bad);
    }
    if let Ok((rest, inner)) = OctetString::from_der(value) {
        if rest.is_empty() {
            if let Some(r) = integer(inner.as_cow().as_ref()) {
                return r.map_err(bad);
            }
        }
    }
    Err(bad(format!("not a DER INTEGER: {}", hex::encode(value))))
}

/// The slot from a common name of the form "YubiKey PIV Attestation 9c".
fn slot_from_subject(cert: &X509Certificate<'_>) -> Option<u8> {
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    let slot = cn.strip_prefix(LEAF_CN_PREFIX)?;
    if slot.len() != 2 {
        return None;
    }
    u8::from_str_radix(slot, 16).ok()
}

fn attested_key(
    spki: &SubjectPublicKeyInfo<'_>,
    serial: u32,
    slot: Option<u8>,
) -> Result<PublicKey, AttestationError> {
    let unsupported = |algorithm: String| AttestationError::UnsupportedKey {
        algorithm,
        serial,
        slot,
    };
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    let bits = spki.subject_public_key.data.as_ref();
    match alg_oid.as_str() {
        OID_ED25519 => PublicKey::new(Algorithm::Ed25519, bits).map_err(AttestationError::Key),
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_PRIME256V1) => {
                    PublicKey::new(Algorithm::EcdsaP256, bits).map_err(AttestationError::Key)
                }
                Some(OID_SECP384R1) => Err(unsupported("ECDSA P-384".to_owned())),
                Some(OID_SECP521R1) => Err(unsupported("ECDSA P-521".to_owned())),
                Some(other) => Err(unsupported(format!("EC key on curve {other}"))),
                None => Err(unsupported("EC key without a named curve".to_owned())),
            }
        }
        OID_RSA_ENCRYPTION => Err(unsupported("RSA".to_owned())),
        other => Err(unsupported(format!("key of algorithm {other}"))),
    }
}
