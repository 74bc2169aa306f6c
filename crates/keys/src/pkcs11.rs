//! Keys on PKCS#11 tokens: SoftHSM2 in tests; ykcs11 (a YubiKey's PIV application), OpenSC or
//! a vendor HSM's module in production. One code path serves all of them.
//!
//! A key is named by an RFC 7512 URI ([`Pkcs11Uri`]): the module to load, the token (label,
//! serial, manufacturer, model or slot id) and the key (`id=` CKA_ID, `object=` CKA_LABEL).
//!
//! Why it is built this way:
//! - **One context per module per process.** `C_Initialize` may be called once per module; a
//!   process with a notary and an approver on the same token shares the module's context
//!   through a process-wide registry, and a per-token mutex, so that access to one token is
//!   serialised however many signers use it (many tokens can do one operation at a time).
//! - **Sessions are re-opened, not trusted.** A session dies when the token is pulled, the
//!   module restarts or the login is lost. A signature that fails for one of those reasons
//!   closes the session, finds the token again, logs in again and retries once; the key found
//!   must still be the key the signer was opened with, or the signature is refused.
//! - **`CKA_ALWAYS_AUTHENTICATE`** keys (PIV slot 9c through ykcs11) need a context-specific
//!   login between `C_SignInit` and `C_Sign`; such keys are signed in multi-part form
//!   (init, login, update, final), which is what ykcs11 expects.
//! - **Signatures are in record form.** Ed25519 through `CKM_EDDSA`; P-256 through
//!   `CKM_ECDSA` over a SHA-256 digest computed here (SoftHSM2 2.6 lacks `CKM_ECDSA_SHA256`),
//!   which returns raw `r || s`. Every signature is verified with the public key before it is
//!   handed out: a token that returns garbage is caught here, not by a verifier later.
//!
//! The PIN is resolved once when the signer is opened (it is needed again for re-logins and
//! context-specific logins), kept in zeroizing memory, and never logged.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use triplicate_core::Algorithm;
use zeroize::Zeroizing;

use crate::public_key::PublicKey;
use crate::signer::{SignError, Signer};
use crate::spec::{OpenOptions, PinSource, Pkcs11Uri};

/// DER of the OID 1.3.101.112 (Ed25519), as `CKA_EC_PARAMS` may carry it.
const EC_PARAMS_ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER PrintableString "edwards25519", as SoftHSM2 and OpenSC write `CKA_EC_PARAMS`.
const EC_PARAMS_ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// DER of the OID 1.2.840.10045.3.1.7 (P-256).
const EC_PARAMS_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A loaded PKCS#11 module and the locks of its tokens.
struct Module {
    ctx: Pkcs11,
    tokens: Mutex<HashMap<u64, Arc<Mutex<()>>>>,
}

fn modules() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves no half-written state behind: the
    // guarded data is a session handle or nothing. Recover rather than poison every signer.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn module_path(uri: &Pkcs11Uri) -> PathBuf {
    match (&uri.module_path, &uri.module_name) {
        (Some(p), _) => p.clone(),
        (None, Some(n)) => PathBuf::from(format!("lib{n}.so")),
        // The URI parser insists on one of the two.
        (None, None) => PathBuf::new(),
    }
}

fn load_module(path: &PathBuf) -> Result<Arc<Module>, SignError> {
    let mut all = lock(modules());
    if let Some(m) = all.get(path) {
        return Ok(m.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| SignError::Device {
        detail: format!("load PKCS#11 module {}: {e}", path.display()),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(SignError::Device {
                detail: format!("initialise PKCS#11 module {}: {e}", path.display()),
            })
        }
    }
    tracing::debug!(module = %path.display(), "loaded PKCS#11 module");
    let m = Arc::new(Module {
        ctx,
        tokens: Mutex::new(HashMap::new()),
    });
    all.insert(path.clone(), m.clone());
    Ok(m)
}

/// An open session with the key found in it.
struct Open {
    session: Session,
    key: ObjectHandle,
    always_authenticate: bool,
}

/// A signer whose key lives on a PKCS#11 token.
pub struct Pkcs11Signer {
    name: String,
    uri: Pkcs11Uri,
    module: Arc<Module>,
    slot: Slot,
    token_lock: Arc<Mutex<()>>,
    public: PublicKey,
    pin: Option<Zeroizing<String>>,
    open: Mutex<Option<Open>>,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("name", &self.name)
            .field("uri", &self.uri)
            .field("key_id", &self.public.key_id())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Loads the module, finds the token and the key, logs in with the URI's PIN (or the
    /// interaction's) and reads the public key. Fails if the key cannot be used for signing.
    pub fn open(uri: &Pkcs11Uri, opts: &OpenOptions) -> Result<Pkcs11Signer, SignError> {
        // A PIN from a file, the environment or the URI is checked (a world-readable PIN file
        // refused) before the module is even loaded; a prompt waits until the token is found.
        let early = match uri.pin {
            PinSource::Ask => None,
            _ => Some(uri.pin.resolve(&uri.describe(), None)?),
        };
        let path = module_path(uri);
        let module = load_module(&path)?;
        let slot = find_slot(&module.ctx, uri)?;
        let pin = match early {
            Some(pin) => pin,
            None => uri
                .pin
                .resolve(&uri.describe(), opts.interaction.as_deref())?,
        };
        let token_lock = lock(&module.tokens).entry(slot.id()).or_default().clone();
        let (open, public) = {
            let _token = lock(&token_lock);
            open_session(&module.ctx, slot, uri, pin.as_ref())?
        };
        tracing::info!(key = %uri, key_id = %public.key_id(), alg = %public.alg(),
            always_authenticate = open.always_authenticate, "opened PKCS#11 signing key");
        Ok(Pkcs11Signer {
            name: opts.name.clone(),
            uri: uri.clone(),
            module,
            slot,
            token_lock,
            public,
            pin,
            open: Mutex::new(Some(open)),
        })
    }

    /// The URI the signer was opened with (its PIN hidden when displayed).
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn sign_once(&self, open: &Open, msg: &[u8]) -> Result<Vec<u8>, CkError> {
        let (mechanism, data) = match self.public.alg() {
            Algorithm::Ed25519 => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                msg.to_vec(),
            ),
            Algorithm::EcdsaP256 => (
                Mechanism::Ecdsa,
                ring::digest::digest(&ring::digest::SHA256, msg)
                    .as_ref()
                    .to_vec(),
            ),
        };
        if !open.always_authenticate {
            return open.session.sign(&mechanism, open.key, &data);
        }
        open.session.sign_init(&mechanism, open.key)?;
        let pin = self.pin.as_ref().map(|p| AuthPin::from(p.as_str()));
        open.session
            .login(UserType::ContextSpecific, pin.as_ref())?;
        open.session.sign_update(&data)?;
        open.session.sign_final()
    }

    /// Test hook: logs the signer's session out, as a token reset or another application's
    /// `C_Logout` would. The next signature must log in again by itself.
    #[doc(hidden)]
    pub fn simulate_lost_login(&self) {
        let _token = lock(&self.token_lock);
        if let Some(open) = lock(&self.open).as_ref() {
            let _ = open.session.logout();
        }
    }
}

impl Signer for Pkcs11Signer {
    fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let _token = lock(&self.token_lock);
        let mut open = lock(&self.open);
        let mut reopened = false;
        loop {
            if open.is_none() {
                let (o, public) =
                    open_session(&self.module.ctx, self.slot, &self.uri, self.pin.as_ref())
                        .or_else(|_| {
                            // The token may be back in another slot; find it again.
                            let slot = find_slot(&self.module.ctx, &self.uri)?;
                            open_session(&self.module.ctx, slot, &self.uri, self.pin.as_ref())
                        })?;
                if public != self.public {
                    return Err(SignError::Key {
                        detail: format!(
                            "{} now holds key {}, not the key {} this signer was opened with",
                            self.uri.describe(),
                            public.key_id(),
                            self.public.key_id()
                        ),
                    });
                }
                *open = Some(o);
                reopened = true;
            }
            let Some(o) = open.as_ref() else {
                continue;
            };
            match self.sign_once(o, msg) {
                Ok(sig) => return self.checked(msg, sig),
                Err(e) if !reopened && session_lost(&e) => {
                    tracing::warn!(key = %self.uri, error = %e,
                        "PKCS#11 session lost; re-opening it and signing again");
                    *open = None;
                }
                Err(e) => {
                    if session_lost(&e) {
                        *open = None;
                    }
                    return Err(map_error(&self.module.ctx, self.slot, &self.uri, e));
                }
            }
        }
    }
}

impl Pkcs11Signer {
    fn checked(&self, msg: &[u8], sig: Vec<u8>) -> Result<Vec<u8>, SignError> {
        self.public.verify(msg, &sig).map_err(|e| SignError::Key {
            detail: format!(
                "{} returned a signature that does not verify with its public key: {e}",
                self.uri.describe()
            ),
        })?;
        Ok(sig)
    }
}

/// Errors after which a fresh session (and login) may succeed.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::DeviceError
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid,
            _
        )
    )
}

fn map_error(ctx: &Pkcs11, slot: Slot, uri: &Pkcs11Uri, e: CkError) -> SignError {
    let what = uri.describe();
    match e {
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _) => {
            SignError::PinIncorrect {
                retries_left: retries_left(ctx, slot),
            }
        }
        CkError::Pkcs11(RvError::PinLocked, _) => SignError::PinIncorrect {
            retries_left: Some(0),
        },
        CkError::Pkcs11(RvError::UserNotLoggedIn | RvError::UserPinNotInitialized, _) => {
            SignError::PinRequired
        }
        CkError::Pkcs11(
            RvError::TokenNotPresent
            | RvError::DeviceRemoved
            | RvError::SlotIdInvalid
            | RvError::TokenNotRecognized,
            _,
        ) => SignError::TokenAbsent {
            detail: format!("{what}: {e}"),
        },
        CkError::Pkcs11(
            RvError::KeyFunctionNotPermitted
            | RvError::KeyTypeInconsistent
            | RvError::MechanismInvalid
            | RvError::KeyHandleInvalid,
            _,
        ) => SignError::Key {
            detail: format!("{what}: {e}"),
        },
        other => SignError::Device {
            detail: format!("{what}: {other}"),
        },
    }
}

/// What the token's flags say about the tries left: 1 on the final try, 0 when locked.
fn retries_left(ctx: &Pkcs11, slot: Slot) -> Option<u32> {
    let info = ctx.get_token_info(slot).ok()?;
    if info.user_pin_locked() {
        Some(0)
    } else if info.user_pin_final_try() {
        Some(1)
    } else {
        None
    }
}

/// The one slot whose token matches the URI.
fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, SignError> {
    // SoftHSM2 answers CKR_GENERAL_ERROR, or lists no token, while another process rewrites
    // the token's files; other modules do on transient device errors, or while a token is
    // being inserted. Three tries, 100 ms apart, before a token counts as absent.
    let mut tries = 0;
    loop {
        match find_slot_once(ctx, uri) {
            Err(SignError::TokenAbsent { .. }) | Err(SignError::Device { .. }) if tries < 2 => {
                tries += 1;
                tracing::debug!(
                    tries,
                    "no PKCS#11 token matched, or the list failed; retrying"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn find_slot_once(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, SignError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| SignError::Device {
            detail: format!("list PKCS#11 slots: {e}"),
        })?;
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end();
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_none_or(|w| w.trim_end() == have.trim_end())
        };
        let matches = eq(&uri.token, label)
            && eq(&uri.manufacturer, info.manufacturer_id())
            && eq(&uri.model, info.model())
            && eq(&uri.serial, info.serial_number())
            && uri.slot_id.is_none_or(|id| id == slot.id());
        seen.push(format!(
            "{label:?} (serial {})",
            info.serial_number().trim_end()
        ));
        if matches {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(SignError::TokenAbsent {
            detail: format!(
                "no token matches {}; tokens present: {}",
                uri.describe(),
                if seen.is_empty() {
                    "none".to_owned()
                } else {
                    seen.join(", ")
                }
            ),
        }),
        _ => Err(SignError::Key {
            detail: format!(
                "{} tokens match {}; add token= or serial= to the URI (present: {})",
                found.len(),
                uri.describe(),
                seen.join(", ")
            ),
        }),
    }
}

/// Opens a session on `slot`, logs in if there is a PIN, finds the key and reads its public
/// half.
fn open_session(
    ctx: &Pkcs11,
    slot: Slot,
    uri: &Pkcs11Uri,
    pin: Option<&Zeroizing<String>>,
) -> Result<(Open, PublicKey), SignError> {
    let what = uri.describe();
    let session = ctx
        .open_ro_session(slot)
        .map_err(|e| map_error(ctx, slot, uri, e))?;
    match pin {
        Some(pin) => {
            let auth = AuthPin::from(pin.as_str());
            match session.login(UserType::User, Some(&auth)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(map_error(ctx, slot, uri, e)),
            }
        }
        None => {
            let needs_login = ctx
                .get_token_info(slot)
                .map(|i| i.login_required())
                .unwrap_or(true);
            if needs_login {
                return Err(SignError::PinRequired);
            }
        }
    }

    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    let keys = session
        .find_objects(&template)
        .map_err(|e| map_error(ctx, slot, uri, e))?;
    let key = match keys.as_slice() {
        [one] => *one,
        [] => {
            return Err(SignError::Key {
                detail: format!("{what}: no private key with that id/label on the token"),
            })
        }
        more => {
            return Err(SignError::Key {
                detail: format!(
                    "{what}: {} private keys match; name the key by id= and object=",
                    more.len()
                ),
            })
        }
    };
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::KeyType,
                AttributeType::Id,
                AttributeType::AlwaysAuthenticate,
                AttributeType::Sign,
            ],
        )
        .map_err(|e| map_error(ctx, slot, uri, e))?;
    let mut key_type = None;
    let mut key_id = Vec::new();
    let mut always_authenticate = false;
    let mut can_sign = true;
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Id(id) => key_id = id,
            Attribute::AlwaysAuthenticate(b) => always_authenticate = b,
            Attribute::Sign(b) => can_sign = b,
            _ => {}
        }
    }
    if !can_sign {
        return Err(SignError::Key {
            detail: format!("{what}: the key's CKA_SIGN is false"),
        });
    }
    let public = read_public_key(&session, &key_id, key_type, &what).map_err(|e| match e {
        ReadPublic::Ck(e) => map_error(ctx, slot, uri, e),
        ReadPublic::Key(detail) => SignError::Key { detail },
    })?;
    Ok((
        Open {
            session,
            key,
            always_authenticate,
        },
        public,
    ))
}

enum ReadPublic {
    Ck(CkError),
    Key(String),
}

/// The public half: the public key object with the private key's CKA_ID.
fn read_public_key(
    session: &Session,
    id: &[u8],
    key_type: Option<KeyType>,
    what: &str,
) -> Result<PublicKey, ReadPublic> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.to_vec()),
        ])
        .map_err(ReadPublic::Ck)?;
    let Some(object) = found.first() else {
        return Err(ReadPublic::Key(format!(
            "{what}: no public key object with the private key's id {}",
            hex::encode(id)
        )));
    };
    let attrs = session
        .get_attributes(*object, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(ReadPublic::Ck)?;
    let (mut params, mut point) = (None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let (Some(params), Some(point)) = (params, point) else {
        return Err(ReadPublic::Key(format!(
            "{what}: the key is not an elliptic-curve key (no CKA_EC_PARAMS/CKA_EC_POINT); \
             only Ed25519 and P-256 can sign records"
        )));
    };
    let alg = curve(&params, key_type).ok_or_else(|| {
        ReadPublic::Key(format!(
            "{what}: unsupported curve (CKA_EC_PARAMS {}); only Ed25519 and P-256 can sign records",
            hex::encode(&params)
        ))
    })?;
    let raw = unwrap_ec_point(&point, alg.public_key_len());
    PublicKey::new(alg, raw).map_err(|e| ReadPublic::Key(format!("{what}: public key: {e}")))
}

fn curve(params: &[u8], key_type: Option<KeyType>) -> Option<Algorithm> {
    if params == EC_PARAMS_ED25519_OID || params == EC_PARAMS_ED25519_NAME {
        return Some(Algorithm::Ed25519);
    }
    if params == EC_PARAMS_P256 && key_type.is_none_or(|t| t == KeyType::EC) {
        return Some(Algorithm::EcdsaP256);
    }
    None
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (`04 20 …` for Ed25519, `04 41 04 …`
/// for P-256); some modules return the bare point. Takes either.
fn unwrap_ec_point(point: &[u8], want: usize) -> &[u8] {
    match point {
        [0x04, len, rest @ ..] if *len as usize == rest.len() && rest.len() == want => rest,
        _ => point,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_wrapped_or_bare() {
        let ed = [7u8; 32];
        let mut wrapped = vec![0x04, 0x20];
        wrapped.extend_from_slice(&ed);
        assert_eq!(unwrap_ec_point(&wrapped, 32), &ed[..]);
        assert_eq!(unwrap_ec_point(&ed, 32), &ed[..]);
        let mut p256 = vec![0x04];
        p256.extend_from_slice(&[0x41; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&p256);
        assert_eq!(unwrap_ec_point(&wrapped, 65), &p256[..]);
        // A bare point whose X starts with 0x41 is not mistaken for a wrapped one.
        assert_eq!(unwrap_ec_point(&p256, 65), &p256[..]);
    }

    #[test]
    fn curves_by_oid_or_name() {
        assert_eq!(curve(EC_PARAMS_ED25519_OID, None), Some(Algorithm::Ed25519));
        assert_eq!(
            curve(EC_PARAMS_ED25519_NAME, Some(KeyType::EC_EDWARDS)),
            Some(Algorithm::Ed25519)
        );
        assert_eq!(
            curve(EC_PARAMS_P256, Some(KeyType::EC)),
            Some(Algorithm::EcdsaP256)
        );
        // secp384r1
        assert_eq!(
            curve(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22], None),
            None
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_world_readable_pin_file_is_refused_before_the_module_is_loaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "123456\n").unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
        let spec = format!(
            "pkcs11:id=%01?module-path={}&pin-source=file:{}",
            dir.path().join("no-such-module.so").display(),
            pin.display()
        );
        let crate::KeySpec::Pkcs11(uri) = crate::KeySpec::parse(&spec).unwrap() else {
            panic!("not a PKCS#11 spec");
        };
        let err = Pkcs11Signer::open(&uri, &OpenOptions::named("t")).unwrap_err();
        // The PIN file, not the missing module: nothing was loaded.
        assert!(matches!(err, SignError::Pin(_)), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
