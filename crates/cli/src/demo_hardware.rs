//! `triplicate demo --hardware`: the same tour with hardware keys, on the stand-ins of
//! `../shared/tools/hwtoken` (SoftHSM2 and an emulated PIV card) or on real tokens named by
//! the same `HWTOKEN_*` variables.
//!
//! - the notary signs on the SoftHSM2 token's Ed25519 key (`pkcs11:`), configured by URI as an
//!   operator would (`[notary] key = "pkcs11:…"`);
//! - approver 1 signs on the PIV card's slot 9c (`yubikey:slot=9c` in builds with the
//!   `yubikey` feature, otherwise the same key through ykcs11) and approver 2 on the SoftHSM2
//!   token's P-256 key;
//! - the board requires hardware keys (`require_hardware = true`); the auditor, who approves
//!   proposed repairs in the tamper tour, keeps a software key (group `auditors`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use triplicate_keys::{open_signer, KeySpec, OpenOptions, Signer, SoftwareSigner};
use triplicate_server::auth::{hash_token, Role, TokenEntry};
use triplicate_server::config::{Config, NotaryConfig, StoreConfig};
use triplicate_server::{Running, ServiceOptions};

/// The hardware demo's service and the keys its approvers sign with.
pub struct Hardware {
    pub running: Running,
    pub approvers: Vec<(String, Arc<dyn Signer>)>,
    pub notary_uri: String,
}

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| {
        anyhow::anyhow!(
            "{name} is not set: `triplicate demo --hardware` needs the hardware stand-ins. Bring them up with \
             ../shared/tools/hwtoken/up.sh DIR && scripts/hwtoken-provision.sh DIR && source DIR/env"
        )
    })
}

fn open(uri: &str, name: &str) -> anyhow::Result<Arc<dyn Signer>> {
    let spec = KeySpec::parse(uri)?;
    open_signer(&spec, &OpenOptions::named(name)).with_context(|| format!("open {spec}"))
}

fn token() -> String {
    use rand::RngCore as _;
    let mut raw = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("tpl_demo_{}", hex::encode(raw))
}

/// Writes the hardware policy into `data_dir/policies-hardware` and starts the service with
/// the notary on SoftHSM2.
pub async fn start(data_dir: &Path, origin: &str) -> anyhow::Result<Hardware> {
    let module = var("HWTOKEN_SOFTHSM_MODULE")?;
    let token_label = var("HWTOKEN_SOFTHSM_TOKEN")?;
    var("HWTOKEN_SOFTHSM_PIN")?;
    let piv_pin = var("HWTOKEN_PIV_PIN")?;
    let softhsm = |id: &str| {
        format!(
            "pkcs11:token={token_label};id=%{id}?module-path={module}&pin-source=env:HWTOKEN_SOFTHSM_PIN"
        )
    };
    let (piv_uri, piv_held) = if cfg!(feature = "yubikey") {
        (
            format!("yubikey:slot=9c?pin-value={piv_pin}"),
            "yubikey-piv",
        )
    } else {
        let ykcs11 = var("HWTOKEN_YKCS11_MODULE")?;
        (
            format!("pkcs11:id=%02?module-path={ykcs11}&pin-value={piv_pin}"),
            "pkcs11",
        )
    };
    let notary_uri = softhsm("01");
    let (notary, approvers) = tokio::task::spawn_blocking({
        let (notary_uri, piv_uri, p256) = (notary_uri.clone(), piv_uri.clone(), softhsm("02"));
        move || -> anyhow::Result<_> {
            let notary = open(&notary_uri, "triplicate-hw-notary")?;
            let alice = open(&piv_uri, "approver-piv")?;
            let bob = open(&p256, "approver-softhsm")?;
            Ok((notary, vec![(piv_uri, alice), (p256, bob)]))
        }
    })
    .await??;

    let auditor = SoftwareSigner::generate("demo-auditor");
    let policy_dir = data_dir.join("policies-hardware");
    std::fs::create_dir_all(&policy_dir)
        .with_context(|| format!("create {}", policy_dir.display()))?;
    let entry = |s: &dyn Signer, holder: &str, group: &str, held: &str| {
        format!(
            "[[key]]\nalg = \"{}\"\npublic_key = \"{}\"\nholder = \"{holder}\"\ngroups = [\"{group}\"]\n\
             held = \"{held}\"\nvalid_from = 2000-01-01T00:00:00Z\n\n",
            s.algorithm().as_str(),
            s.public_key().to_base64()
        )
    };
    let keys = format!(
        "# Written by `triplicate demo --hardware`.\n[notary]\nalg = \"ed25519\"\npublic_key = \"{}\"\nheld = \"pkcs11\"\n\n{}{}{}",
        notary.public_key().to_base64(),
        entry(approvers[0].1.as_ref(), "Demo approver on the PIV card", "board", piv_held),
        entry(approvers[1].1.as_ref(), "Demo approver on SoftHSM2", "board", "pkcs11"),
        entry(&auditor, "Demo auditor", "auditors", "software"),
    );
    std::fs::write(policy_dir.join("keys.toml"), keys)?;
    std::fs::write(
        policy_dir.join("governance.toml"),
        "# Written by `triplicate demo --hardware`.\n\
         [groups.board]\ndescription = \"Board: hardware keys only\"\nrequire_hardware = true\n\n\
         [groups.auditors]\ndescription = \"Auditors: review proposed repairs\"\n\n\
         [default]\naction = \"quorum\"\nquorum = [{ group = \"board\", threshold = 2 }]\n",
    )?;
    std::fs::write(
        policy_dir.join("verification.toml"),
        "# Written by `triplicate demo --hardware`: every run re-verifies every signature.\nreverify_signatures = true\n",
    )?;
    drop(notary); // the service opens its own, by URI

    let (admin, auditor_token) = (token(), token());
    let tok = |name: &str, role: Role, t: &str| TokenEntry {
        name: name.into(),
        role,
        sha256: hash_token(t),
    };
    let config = Config {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".parse()?,
        origin: origin.to_owned(),
        policy_dir,
        restrict_reads: false,
        notary: NotaryConfig {
            key: notary_uri.clone(),
            name: "triplicate-hw-notary".into(),
        },
        projection: StoreConfig::default(),
        stream: Default::default(),
        tokens: vec![
            tok("demo-admin", Role::Admin, &admin),
            tok("demo-auditor", Role::Auditor, &auditor_token),
        ],
    };
    let mut running = triplicate_server::start_configured(
        config,
        ServiceOptions {
            scheduled_crosscheck: false,
            ..ServiceOptions::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("start the service with the notary on SoftHSM2")?;
    running.admin_token = admin;
    running.auditor_token = auditor_token;
    running.auditor = Some(auditor);
    Ok(Hardware {
        running,
        approvers,
        notary_uri,
    })
}
