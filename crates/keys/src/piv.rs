//! YubiKey PIV signing: [`PivSigner`], a [`Signer`] for a key in a PIV slot, reached over
//! PC/SC through the `yubikey` crate (0.8), and [`read_attestation`].
//!
//! Owns: finding the card (by serial, or the only one connected), learning the slot's public
//! key, the PIN verification before each signature, SHA-256 and the card's signature, the DER to
//! `r || s` conversion, the touch notice and timeout, reopening the card after it was reset or
//! re-inserted, and reading the slot's attestation certificates.
//!
//! Must not know: terminals (PIN prompts and "touch your YubiKey" are the [`Interaction`]'s,
//! which the CLI implements), key URI syntax (`spec`), records, or async runtimes.
//!
//! # Why it is built this way
//!
//! - **An optional feature.** The `yubikey` crate links libpcsclite when it is built (found
//!   with pkg-config), so building this module needs libpcsclite-dev. Behind the `yubikey`
//!   feature, a newcomer's `cargo build` works without it.
//! - **The PIN before every signature.** Slot 9c's PIN policy on a YubiKey is "always": the card
//!   signs only in the command right after a successful VERIFY. We verify before every signature
//!   in every slot, so one code path serves all slots and policies. The PIN is resolved from the
//!   URI's source each time (so a prompting [`Interaction`] is asked each time), handed to the
//!   card, and dropped; it is never logged, and no `Debug` here shows it. (The `yubikey` crate
//!   keeps its own zeroizing copy while the card is open, to log in again after a reconnect.)
//! - **The public key.** From the slot's metadata (GET METADATA, firmware 5.3 and later), else
//!   from the certificate in the slot. Metadata comes first because it describes the key
//!   itself; a certificate may be stale after the key was regenerated. A card with neither (a
//!   key generated without a certificate on older firmware; the `pivemu` test card, which
//!   answers GET METADATA with no data and has a certificate only if one was written) needs the
//!   expected key given: [`PivSigner::open_with_public_key`]. When the card reports a key as
//!   well, the two must agree.
//! - **Every signature is verified** against the public key before it is returned, so a wrong
//!   expected key fails at the first signature ([`SignError::Key`]) instead of putting a
//!   signature by another key into a record.
//! - **Signatures as the card made them.** PIV returns DER ECDSA; records carry the fixed-width
//!   `r || s` (each left-padded to 32 bytes). A high `s` is kept: [`PublicKey::verify`] accepts
//!   both `s` and `n - s`.
//! - **P-256 only.** Ed25519 in PIV needs firmware 5.7 and the `yubikey` crate's 0.9 line; this
//!   build reports [`SignError::Unsupported`] with the card's firmware version. Records carry no
//!   RSA or P-384 signatures.
//! - **Touch.** Each signature runs on its own short-lived thread, which holds the card's mutex
//!   while it talks to the card; the caller waits on a channel. If the card has not answered
//!   after 500 ms, the [`Interaction`] is told once ([`Interaction::touch`]); if it has not
//!   answered within [`OpenOptions::touch_timeout`], `sign` returns
//!   [`SignError::TouchTimeout`]. The thread keeps the mutex until the card itself gives up (a
//!   YubiKey waits about 15 s for a touch), so the next signature waits for it. This is the only
//!   place in the crate that starts a thread.
//! - **Reconnecting.** After a PC/SC error (the card was removed and re-inserted, or another
//!   application reset it) the handle is dropped and the operation is tried once more on the
//!   card with the same serial, freshly opened. If that fails too the error is returned, and the
//!   next signature tries to open the card again.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use p256::pkcs8::der::referenced::OwnedToRef as _;
use p256::pkcs8::der::Encode as _;
use triplicate_core::Algorithm;
use yubikey::piv::{self, AlgorithmId, ManagementAlgorithmId, SlotId};
use yubikey::{Certificate, YubiKey};
use zeroize::Zeroizing;

use crate::public_key::PublicKey;
use crate::signer::{SignError, Signer};
use crate::spec::{Interaction, OpenOptions, PivUri};
use crate::verifier_key::public_key_from_spki;

/// How long a signature may take before the user is told to touch the key.
const TOUCH_NOTICE_AFTER: Duration = Duration::from_millis(500);

/// A YubiKey firmware version, as the card reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl FirmwareVersion {
    const METADATA: FirmwareVersion = FirmwareVersion {
        major: 5,
        minor: 3,
        patch: 0,
    };
}

impl From<yubikey::Version> for FirmwareVersion {
    fn from(v: yubikey::Version) -> FirmwareVersion {
        FirmwareVersion {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
        }
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Where a [`PivSigner`]'s public key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PivKeySource {
    /// The slot's metadata (firmware 5.3 and later).
    Metadata,
    /// The certificate stored in the slot.
    Certificate,
    /// The caller ([`PivSigner::open_with_public_key`]); the card reported no key.
    Given,
}

/// A signer for the key in one PIV slot of one YubiKey. See the module docs.
pub struct PivSigner {
    name: String,
    uri: PivUri,
    slot: SlotId,
    what: String,
    serial: u32,
    firmware: FirmwareVersion,
    public_key: PublicKey,
    key_source: PivKeySource,
    interaction: Option<Arc<dyn Interaction>>,
    touch_timeout: Duration,
    // `None` after a PC/SC error: the next signature opens the card again. Shared with the
    // signing thread, which may outlive a `sign` call that gave up waiting for a touch.
    card: Arc<Mutex<Option<YubiKey>>>,
}

impl PivSigner {
    /// Opens the YubiKey `uri` names (by serial, or the only one connected) and learns the
    /// public key of its slot from the slot's metadata or certificate. Needs no PIN.
    ///
    /// Fails with [`SignError::TokenAbsent`] if no YubiKey (or none with the serial) is
    /// connected, or several are and the URI names no serial (the error lists their serials);
    /// [`SignError::Unsupported`] for keys other than P-256; [`SignError::Key`] if the card
    /// reports no key for the slot (then use [`PivSigner::open_with_public_key`]).
    pub fn open(uri: &PivUri, opts: &OpenOptions) -> Result<PivSigner, SignError> {
        PivSigner::open_inner(uri, opts, None)
    }

    /// As [`PivSigner::open`], for cards that cannot say which key a slot holds (no slot
    /// metadata, no certificate): `expected` is taken as the slot's public key. If the card
    /// does report a key, it must be `expected`. Either way every signature is verified with
    /// `expected`, so a wrong key fails at the first signature with [`SignError::Key`].
    pub fn open_with_public_key(
        uri: &PivUri,
        opts: &OpenOptions,
        expected: &PublicKey,
    ) -> Result<PivSigner, SignError> {
        PivSigner::open_inner(uri, opts, Some(expected))
    }

    fn open_inner(
        uri: &PivUri,
        opts: &OpenOptions,
        expected: Option<&PublicKey>,
    ) -> Result<PivSigner, SignError> {
        let slot = slot_id(uri.slot)?;
        let mut yk = open_card(uri.serial)?;
        let serial = yk.serial().0;
        let firmware = FirmwareVersion::from(yk.version());
        let what = format!("YubiKey {serial} PIV slot {:02x}", uri.slot);

        if expected.is_some_and(|k| k.alg() == Algorithm::Ed25519) {
            return Err(ed25519_unsupported(firmware));
        }
        let (public_key, key_source) =
            match (read_slot_key(&mut yk, slot, firmware, &what)?, expected) {
                (SlotKey::Found(key, source), None) => (key, source),
                (SlotKey::Found(key, source), Some(expected)) => {
                    if key != *expected {
                        return Err(SignError::Key {
                            detail: format!(
                            "{what} holds key {} (from its {source:?}), not the expected key {}",
                            key.key_id(),
                            expected.key_id()
                        ),
                        });
                    }
                    (key, source)
                }
                (SlotKey::NotFound(_), Some(expected)) => (expected.clone(), PivKeySource::Given),
                (SlotKey::NotFound(why), None) => {
                    return Err(SignError::Key {
                        detail: format!(
                        "cannot learn the public key of {what}: {}; give the expected public key \
                         (PivSigner::open_with_public_key)",
                        why.join("; ")
                    ),
                    })
                }
            };
        if public_key.alg() == Algorithm::Ed25519 {
            return Err(ed25519_unsupported(firmware));
        }
        tracing::debug!(card = %what, %firmware, key_id = %public_key.key_id(), ?key_source,
            "opened PIV signer");
        Ok(PivSigner {
            name: opts.name.clone(),
            uri: uri.clone(),
            slot,
            what,
            serial,
            firmware,
            public_key,
            key_source,
            interaction: opts.interaction.clone(),
            touch_timeout: opts.touch_timeout,
            card: Arc::new(Mutex::new(Some(yk))),
        })
    }

    /// The YubiKey's serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The YubiKey's firmware version, as it reported it when opened.
    pub fn firmware(&self) -> FirmwareVersion {
        self.firmware
    }

    /// The PIV slot's key reference (`0x9c` for slot 9c).
    pub fn slot(&self) -> u8 {
        self.uri.slot
    }

    /// Where the public key came from.
    pub fn key_source(&self) -> PivKeySource {
        self.key_source
    }

    /// The card and slot, as prompts and errors name them: `YubiKey 5436227 PIV slot 9c`.
    pub fn describe(&self) -> &str {
        &self.what
    }
}

impl fmt::Debug for PivSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No PIN here: the URI is not shown, only what it names.
        f.debug_struct("PivSigner")
            .field("name", &self.name)
            .field("card", &self.what)
            .field("firmware", &self.firmware)
            .field("key_id", &self.public_key.key_id())
            .field("key_source", &self.key_source)
            .finish_non_exhaustive()
    }
}

impl Signer for PivSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> PublicKey {
        self.public_key.clone()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let pin = self
            .uri
            .pin
            .resolve(&self.what, self.interaction.as_deref())?
            .ok_or(SignError::PinRequired)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, msg);
        let digest = digest.as_ref().to_vec();
        let card = Arc::clone(&self.card);
        let (serial, slot, what) = (self.serial, self.slot, self.what.clone());
        let op = move || card_sign(&card, serial, slot, &pin, &digest, &what);
        let notice = || {
            if let Some(i) = &self.interaction {
                i.touch(&self.what);
            }
        };
        let der = run_with_touch_notice(op, TOUCH_NOTICE_AFTER, self.touch_timeout, notice)??;
        let sig = der_to_raw(&der).map_err(|detail| SignError::Key {
            detail: format!("{}: {detail}", self.what),
        })?;
        self.public_key
            .verify(msg, &sig)
            .map_err(|e| SignError::Key {
                detail: format!(
                    "{}: the card's signature does not verify under the signer's public key ({e})",
                    self.what
                ),
            })?;
        Ok(sig)
    }
}

/// What [`read_attestation`] found. Each certificate is DER, or why the card did not give it.
#[derive(Debug, Clone)]
pub struct PivAttestation {
    /// The YubiKey's serial number.
    pub serial: u32,
    /// The YubiKey's firmware version.
    pub firmware: FirmwareVersion,
    /// The PIV slot attested (`0x9c` for slot 9c).
    pub slot: u8,
    /// The slot's attestation certificate (PIV ATTEST, INS F9): made by the card, it says the
    /// key was generated on the card and with which policies. Signed by `attestation_certificate`.
    pub slot_certificate: Result<Vec<u8>, String>,
    /// The card's attestation certificate (slot f9), signed by Yubico's PIV attestation CA.
    pub attestation_certificate: Result<Vec<u8>, String>,
}

/// Reads the attestation certificates of the slot `uri` names. Needs no PIN. Fails only if the
/// card cannot be opened or the slot is not a key slot; a card that does not attest says so in
/// the certificate fields.
pub fn read_attestation(uri: &PivUri) -> Result<PivAttestation, SignError> {
    let slot = slot_id(uri.slot)?;
    let mut yk = open_card(uri.serial)?;
    let serial = yk.serial().0;
    let firmware = FirmwareVersion::from(yk.version());
    let slot_certificate = piv::attest(&mut yk, slot)
        .map(|der| der.to_vec())
        .map_err(|e| {
            format!(
                "the card (firmware {firmware}) did not attest slot {:02x}: {e}",
                uri.slot
            )
        });
    let attestation_certificate = Certificate::read(&mut yk, SlotId::Attestation)
        .map_err(|e| format!("the card has no attestation certificate in slot f9: {e}"))
        .and_then(|c| {
            c.cert
                .to_der()
                .map_err(|e| format!("re-encode the slot f9 certificate: {e}"))
        });
    release(yk);
    Ok(PivAttestation {
        serial,
        firmware,
        slot: uri.slot,
        slot_certificate,
        attestation_certificate,
    })
}

fn slot_id(slot: u8) -> Result<SlotId, SignError> {
    match SlotId::try_from(slot) {
        Ok(
            id @ (SlotId::Authentication
            | SlotId::Signature
            | SlotId::KeyManagement
            | SlotId::CardAuthentication
            | SlotId::Retired(_)),
        ) => Ok(id),
        _ => Err(SignError::Key {
            detail: format!("{slot:02x} is not a PIV key slot"),
        }),
    }
}

fn ed25519_unsupported(firmware: FirmwareVersion) -> SignError {
    SignError::Unsupported {
        detail: format!(
            "Ed25519 PIV keys need YubiKey firmware 5.7 or later and the yubikey crate's 0.9 \
             line; this build uses yubikey 0.8 (P-256 only) and the card reports firmware \
             {firmware}"
        ),
    }
}

/// Opens the YubiKey with `serial`, or the only one connected. Cards not chosen are left as
/// they were (not reset), so other applications using them are not disturbed.
fn open_card(serial: Option<u32>) -> Result<YubiKey, SignError> {
    let mut ctx = yubikey::reader::Context::open().map_err(|e| card_error(e, "open PC/SC"))?;
    let mut found: Vec<YubiKey> = Vec::new();
    let readers = match ctx.iter() {
        Ok(readers) => readers,
        Err(yubikey::Error::PcscError {
            inner: Some(pcsc::Error::NoReadersAvailable),
        }) => {
            return Err(SignError::TokenAbsent {
                detail: "no smart card reader or YubiKey is connected".to_owned(),
            })
        }
        Err(e) => return Err(card_error(e, "list PC/SC readers")),
    };
    let mut failures = Vec::new();
    for reader in readers {
        match reader.open() {
            Ok(yk) => found.push(yk),
            Err(e) => failures.push(format!("{}: {e}", reader.name())),
        }
    }
    let serials = found
        .iter()
        .map(|y| y.serial().0.to_string())
        .collect::<Vec<_>>();
    let chosen = match serial {
        Some(s) => {
            found
                .iter()
                .position(|y| y.serial().0 == s)
                .ok_or_else(|| SignError::TokenAbsent {
                    detail: format!(
                        "no YubiKey with serial {s} is connected (connected: {})",
                        if serials.is_empty() {
                            "none".to_owned()
                        } else {
                            serials.join(", ")
                        }
                    ),
                })
        }
        None => match found.len() {
            0 => Err(SignError::TokenAbsent {
                detail: if failures.is_empty() {
                    "no YubiKey is connected".to_owned()
                } else {
                    format!("no YubiKey could be opened ({})", failures.join("; "))
                },
            }),
            1 => Ok(0),
            n => Err(SignError::TokenAbsent {
                detail: format!(
                    "{n} YubiKeys are connected (serials {}); name one in the key URI, e.g. \
                     yubikey:slot=9c;serial={}",
                    serials.join(", "),
                    serials.first().map_or("N", String::as_str)
                ),
            }),
        },
    };
    let mut chosen_key = None;
    for (i, yk) in found.into_iter().enumerate() {
        if chosen.as_ref().is_ok_and(|c| *c == i) {
            chosen_key = Some(yk);
        } else {
            release(yk);
        }
    }
    chosen?;
    chosen_key.ok_or_else(|| SignError::TokenAbsent {
        detail: "no YubiKey is connected".to_owned(),
    })
}

/// Disconnects without resetting the card (dropping a `YubiKey` resets it).
fn release(yk: YubiKey) {
    if let Err((_yk, e)) = yk.disconnect(pcsc::Disposition::LeaveCard) {
        tracing::debug!(error = %e, "disconnect from a YubiKey failed; it is reset instead");
    }
}

enum SlotKey {
    Found(PublicKey, PivKeySource),
    /// Why not, one reason per place looked.
    NotFound(Vec<String>),
}

fn read_slot_key(
    yk: &mut YubiKey,
    slot: SlotId,
    firmware: FirmwareVersion,
    what: &str,
) -> Result<SlotKey, SignError> {
    let mut why = Vec::new();
    if firmware >= FirmwareVersion::METADATA {
        match piv::metadata(yk, slot) {
            Ok(md) => match (md.algorithm, md.public) {
                (ManagementAlgorithmId::Asymmetric(AlgorithmId::EccP256), Some(spki)) => {
                    let key =
                        public_key_from_spki(spki.owned_to_ref()).map_err(|e| SignError::Key {
                            detail: format!("{what}: the public key in its metadata: {e}"),
                        })?;
                    return Ok(SlotKey::Found(key, PivKeySource::Metadata));
                }
                (ManagementAlgorithmId::Asymmetric(AlgorithmId::EccP256), None) => {
                    why.push("the slot metadata has no public key".to_owned());
                }
                (ManagementAlgorithmId::Asymmetric(alg), _) => {
                    return Err(SignError::Unsupported {
                        detail: format!(
                            "{what} holds a {alg:?} key; records carry P-256 or Ed25519 signatures"
                        ),
                    })
                }
                (other, _) => why.push(format!("the slot metadata names no key ({other:?})")),
            },
            // yubikey 0.8 knows no algorithm ids beyond RSA and ECC P-256/P-384: a 5.7 card's
            // Ed25519 (or X25519) key.
            Err(yubikey::Error::AlgorithmError) => return Err(ed25519_unsupported(firmware)),
            Err(e @ yubikey::Error::PcscError { .. }) => {
                return Err(card_error(e, "read the slot metadata"))
            }
            Err(e) => why.push(format!("no slot metadata (firmware {firmware}: {e})")),
        }
    } else {
        why.push(format!(
            "slot metadata needs firmware 5.3 (the card reports {firmware})"
        ));
    }
    match Certificate::read(yk, slot) {
        Ok(cert) => {
            let key =
                public_key_from_spki(cert.subject_pki()).map_err(|e| SignError::Unsupported {
                    detail: format!("{what}: the key in its certificate: {e}"),
                })?;
            Ok(SlotKey::Found(key, PivKeySource::Certificate))
        }
        Err(e @ yubikey::Error::PcscError { .. }) => {
            Err(card_error(e, "read the slot certificate"))
        }
        Err(e) => {
            why.push(format!("no certificate in the slot ({e})"));
            Ok(SlotKey::NotFound(why))
        }
    }
}

/// Verifies the PIN and signs `digest` on the card; runs on the signing thread. Reopens the
/// card once after a PC/SC error.
fn card_sign(
    card: &Mutex<Option<YubiKey>>,
    serial: u32,
    slot: SlotId,
    pin: &Zeroizing<String>,
    digest: &[u8],
    what: &str,
) -> Result<Vec<u8>, SignError> {
    let mut guard = card.lock().unwrap_or_else(PoisonError::into_inner);
    let mut reopened = false;
    loop {
        let yk = match guard.as_mut() {
            Some(yk) => yk,
            None => {
                reopened = true;
                guard.insert(open_card(Some(serial))?)
            }
        };
        let result = yk
            .verify_pin(pin.as_bytes())
            .and_then(|()| piv::sign_data(yk, digest, AlgorithmId::EccP256, slot));
        match result {
            Ok(der) => return Ok(der.to_vec()),
            Err(e @ yubikey::Error::PcscError { .. }) => {
                // The handle is dead (card removed, or reset by another application).
                *guard = None;
                if reopened {
                    return Err(card_error(e, what));
                }
                tracing::debug!(card = what, error = %e, "PIV card connection lost; reopening it");
            }
            Err(e) => return Err(card_error(e, what)),
        }
    }
}

/// Maps a `yubikey` error onto what a caller can act on.
fn card_error(e: yubikey::Error, what: &str) -> SignError {
    use yubikey::Error as E;
    match e {
        E::WrongPin { tries } => SignError::PinIncorrect {
            retries_left: Some(u32::from(tries)),
        },
        E::PinLocked => SignError::PinIncorrect {
            retries_left: Some(0),
        },
        E::NotFound => SignError::TokenAbsent {
            detail: format!("{what}: no YubiKey found"),
        },
        E::PcscError { inner: Some(p) }
            if matches!(
                p,
                pcsc::Error::NoSmartcard
                    | pcsc::Error::RemovedCard
                    | pcsc::Error::NoReadersAvailable
                    | pcsc::Error::ReaderUnavailable
                    | pcsc::Error::UnknownReader
                    | pcsc::Error::UnpoweredCard
            ) =>
        {
            SignError::TokenAbsent {
                detail: format!("{what}: {p}"),
            }
        }
        E::PcscError {
            inner: Some(p @ (pcsc::Error::NoService | pcsc::Error::ServiceStopped)),
        } => SignError::Device {
            detail: format!("{what}: the PC/SC service (pcscd) is not running ({p})"),
        },
        E::KeyError => SignError::Key {
            detail: format!("{what}: {e}"),
        },
        other => SignError::Device {
            detail: format!("{what}: {other}"),
        },
    }
}

/// Runs `op` on a new thread and waits for it: calls `notice` once if it has not finished after
/// `notice_after`, and gives up with [`SignError::TouchTimeout`] after `timeout` (the thread
/// runs on until `op` returns).
fn run_with_touch_notice<T: Send + 'static>(
    op: impl FnOnce() -> T + Send + 'static,
    notice_after: Duration,
    timeout: Duration,
    notice: impl FnOnce(),
) -> Result<T, SignError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let start = Instant::now();
    thread::Builder::new()
        .name("piv-sign".to_owned())
        .spawn(move || {
            // The receiver is gone if the caller timed out; nobody wants the result then.
            let _ = tx.send(op());
        })
        .map_err(|e| SignError::Device {
            detail: format!("start the signing thread: {e}"),
        })?;
    let died = || SignError::Device {
        detail: "the signing thread panicked".to_owned(),
    };
    match rx.recv_timeout(notice_after.min(timeout)) {
        Ok(v) => return Ok(v),
        Err(RecvTimeoutError::Disconnected) => return Err(died()),
        Err(RecvTimeoutError::Timeout) => {}
    }
    notice();
    match rx.recv_timeout(timeout.saturating_sub(start.elapsed())) {
        Ok(v) => Ok(v),
        Err(RecvTimeoutError::Timeout) => Err(SignError::TouchTimeout),
        Err(RecvTimeoutError::Disconnected) => Err(died()),
    }
}

/// A DER ECDSA P-256 signature as `r || s`, each left-padded to 32 bytes. `s` is kept as is.
fn der_to_raw(der: &[u8]) -> Result<Vec<u8>, String> {
    let sig = p256::ecdsa::Signature::from_der(der)
        .map_err(|e| format!("the card returned a malformed ECDSA signature ({e})"))?;
    Ok(sig.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fast_operations_do_not_ask_for_a_touch() {
        let notices = AtomicUsize::new(0);
        let r = run_with_touch_notice(
            || 7,
            200 * MS,
            1000 * MS,
            || {
                notices.fetch_add(1, Ordering::SeqCst);
            },
        );
        assert!(matches!(r, Ok(7)));
        assert_eq!(notices.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn slow_operations_ask_for_a_touch_once_and_finish() {
        let notices = AtomicUsize::new(0);
        let op = || {
            thread::sleep(150 * MS);
            "signed"
        };
        let r = run_with_touch_notice(op, 20 * MS, 5000 * MS, || {
            notices.fetch_add(1, Ordering::SeqCst);
        });
        assert!(matches!(r, Ok("signed")));
        assert_eq!(notices.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn untouched_operations_time_out() {
        let notices = AtomicUsize::new(0);
        let start = Instant::now();
        let r = run_with_touch_notice(
            || thread::sleep(2000 * MS),
            20 * MS,
            200 * MS,
            || {
                notices.fetch_add(1, Ordering::SeqCst);
            },
        );
        assert!(matches!(r, Err(SignError::TouchTimeout)), "{r:?}");
        assert_eq!(notices.load(Ordering::SeqCst), 1);
        let waited = start.elapsed();
        assert!(waited >= 200 * MS && waited < 1500 * MS, "{waited:?}");
    }

    #[test]
    fn panicking_operations_are_device_errors() {
        // A generous timeout: the panic hook (a backtrace under RUST_BACKTRACE) runs before the
        // thread's sender drops, which took over 200 ms on a loaded CI machine.
        let r: Result<(), _> =
            run_with_touch_notice(|| panic!("card driver bug"), 20 * MS, 30_000 * MS, || ());
        assert!(matches!(r, Err(SignError::Device { .. })), "{r:?}");
    }

    fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, r.len() as u8];
        body.extend_from_slice(r);
        body.extend_from_slice(&[0x02, s.len() as u8]);
        body.extend_from_slice(s);
        let mut out = vec![0x30, body.len() as u8];
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn der_signatures_become_fixed_width_r_and_s() {
        // r is short (31 bytes: a leading zero byte dropped); s has its high bit set, so DER
        // needs a 0x00 in front of it. Both come out as 32 bytes.
        let r = [0x11u8; 31];
        let mut s = vec![0x00];
        s.extend_from_slice(&[0x80u8; 32]);
        let raw = der_to_raw(&der(&r, &s)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(raw.len(), 64);
        assert_eq!(raw[0], 0);
        assert_eq!(&raw[1..32], &r[..]);
        assert_eq!(&raw[32..], &[0x80u8; 32][..]);
    }

    #[test]
    fn der_signatures_from_a_real_signer_round_trip() {
        use p256::ecdsa::signature::Signer as _;
        use p256::ecdsa::{Signature, SigningKey};
        let key = SigningKey::random(&mut rand_core::OsRng);
        for msg in [&b"one"[..], b"two", b"three", b"four"] {
            let sig: Signature = key.sign(msg);
            let raw = der_to_raw(sig.to_der().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(raw, sig.to_bytes().to_vec());
            let public = PublicKey::new(
                Algorithm::EcdsaP256,
                key.verifying_key().to_encoded_point(false).as_bytes(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            public.verify(msg, &raw).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn malformed_der_is_refused() {
        assert!(der_to_raw(&[]).is_err());
        assert!(der_to_raw(&[0x30, 0x02, 0x02, 0x00]).is_err());
        // r = 0 is not a valid signature scalar.
        assert!(der_to_raw(&der(&[0], &[1])).is_err());
    }

    #[test]
    fn wrong_pins_and_absent_cards_map_to_what_callers_act_on() {
        assert!(matches!(
            card_error(yubikey::Error::WrongPin { tries: 2 }, "k"),
            SignError::PinIncorrect {
                retries_left: Some(2)
            }
        ));
        assert!(matches!(
            card_error(yubikey::Error::PinLocked, "k"),
            SignError::PinIncorrect {
                retries_left: Some(0)
            }
        ));
        let removed = yubikey::Error::PcscError {
            inner: Some(pcsc::Error::RemovedCard),
        };
        assert!(matches!(
            card_error(removed, "k"),
            SignError::TokenAbsent { .. }
        ));
        assert!(matches!(
            card_error(yubikey::Error::GenericError, "k"),
            SignError::Device { .. }
        ));
    }

    #[test]
    fn only_key_slots_are_slots() {
        assert!(matches!(slot_id(0x9c), Ok(SlotId::Signature)));
        assert!(slot_id(0x82).is_ok());
        assert!(matches!(slot_id(0xf9), Err(SignError::Key { .. })));
        assert!(matches!(slot_id(0x9b), Err(SignError::Key { .. })));
    }
}
