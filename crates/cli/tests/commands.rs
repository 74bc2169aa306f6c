//! The `triplicate` binary end to end: the demo, offline receipt and consistency verification,
//! proofs, fsck and keys, with the exit codes operators' scripts rely on
//! (0 valid/clean, 1 invalid/tampered, 2 unreadable).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn triplicate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_triplicate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn demo(dir: &Path, count: u64) {
    // The decisions only: the tamper tour's audit records would shift every seq below.
    let o = triplicate(&[
        "demo",
        "--data-dir",
        s(dir),
        "--count",
        &count.to_string(),
        "--no-tamper",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

fn vkey(dir: &Path) -> String {
    dir.join("notary.vkey").to_str().unwrap().to_owned()
}

fn verify_receipt(file: &Path, key: &str) -> Output {
    triplicate(&["verify", "receipt", s(file), "--notary-key", key])
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Changes the first character of the first base64 hash in a JSON list.
fn alter_first_hash(list: &mut Value) {
    let h = list[0].as_str().unwrap().to_owned();
    let first = if h.starts_with('A') { "B" } else { "A" };
    list[0] = format!("{first}{}", &h[1..]).into();
}

fn partial(dir: &Path, rel: &str) -> std::path::PathBuf {
    let p = dir.join("ledger").join(rel);
    let e = std::fs::read_dir(&p).unwrap().next().unwrap().unwrap();
    e.path()
}

fn flip(path: &Path, at: usize) {
    let mut d = std::fs::read(path).unwrap();
    d[at] ^= 0x01;
    std::fs::write(path, d).unwrap();
}

#[test]
fn demo_records_receipts_that_verify_offline() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    demo(d, 5);
    for seq in 0..5 {
        assert!(d.join(format!("receipts/{seq}.json")).is_file());
    }
    demo(d, 5);
    assert!(
        d.join("receipts/9.json").is_file(),
        "the second run continues at seq 5"
    );
    let o = triplicate(&["ledger", "checkpoint", "--data-dir", s(d)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let note = String::from_utf8(o.stdout).unwrap();
    assert_eq!(note.lines().nth(1), Some("10"), "{note}");

    let o = verify_receipt(&d.join("receipts/7.json"), &vkey(d));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).starts_with("VALID"), "{}", text(&o));
    // The key as a string, and as the notary's key file (only its public half is used).
    let key_string = std::fs::read_to_string(d.join("notary.vkey")).unwrap();
    assert_eq!(
        code(&verify_receipt(
            &d.join("receipts/0.json"),
            key_string.trim()
        )),
        0
    );
    assert_eq!(
        code(&verify_receipt(
            &d.join("receipts/0.json"),
            s(&d.join("keys/notary.pem"))
        )),
        0
    );
}

#[test]
fn tampered_receipts_are_invalid_and_name_the_step() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    demo(d, 3);
    let original = d.join("receipts/1.json");
    let case = |name: &str, f: &dyn Fn(&mut Value)| {
        let p = d.join(format!("{name}.json"));
        std::fs::copy(&original, &p).unwrap();
        edit_json(&p, f);
        verify_receipt(&p, &vkey(d))
    };

    let o = case("title", &|v| {
        v["record"]["decision"]["title"] = "Something else".into()
    });
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("leaf hash"), "{}", text(&o));

    let o = case("proof", &|v| {
        alter_first_hash(&mut v["inclusion_proof"]);
    });
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("inclusion proof"), "{}", text(&o));

    let o = case("checkpoint", &|v| {
        let c = v["checkpoint"]
            .as_str()
            .unwrap()
            .replacen("\n3\n", "\n4\n", 1);
        v["checkpoint"] = c.into();
    });
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("checkpoint"), "{}", text(&o));

    // Someone else's notary key.
    let other = d.join("other.pem");
    assert_eq!(
        code(&triplicate(&[
            "keys",
            "generate",
            "--out",
            s(&other),
            "--name",
            "mallory"
        ])),
        0
    );
    let o = verify_receipt(&original, s(&other));
    assert_eq!(code(&o), 1, "{}", text(&o));
}

#[test]
fn unreadable_receipts_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    demo(d, 1);
    assert_eq!(code(&verify_receipt(&d.join("missing.json"), &vkey(d))), 2);
    std::fs::write(d.join("junk.json"), "{not json").unwrap();
    assert_eq!(code(&verify_receipt(&d.join("junk.json"), &vkey(d))), 2);
    assert_eq!(
        code(&verify_receipt(&d.join("receipts/0.json"), "not-a-key")),
        2
    );
}

#[test]
fn proofs_and_consistency_between_checkpoints() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    demo(d, 5);
    let old = d.join("old.cp");
    std::fs::write(
        &old,
        triplicate(&["ledger", "checkpoint", "--data-dir", s(d)]).stdout,
    )
    .unwrap();
    demo(d, 5);
    let new = d.join("new.cp");
    std::fs::write(
        &new,
        triplicate(&["ledger", "checkpoint", "--data-dir", s(d)]).stdout,
    )
    .unwrap();

    let o = triplicate(&[
        "ledger",
        "prove",
        "--data-dir",
        s(d),
        "--index",
        "3",
        "--size",
        "7",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (p["index"].as_u64(), p["tree_size"].as_u64()),
        (Some(3), Some(7))
    );
    assert!(p["proof"].as_array().unwrap().len() >= 2);
    let o = triplicate(&["ledger", "prove", "--data-dir", s(d), "--index", "10"]);
    assert_ne!(code(&o), 0, "index 10 is outside a tree of 10");

    let o = triplicate(&[
        "ledger",
        "prove",
        "--data-dir",
        s(d),
        "--consistency",
        "5",
        "10",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let proof = d.join("proof.json");
    std::fs::write(&proof, &o.stdout).unwrap();
    let verify = |a: &Path, b: &Path, p: &Path| {
        triplicate(&[
            "verify",
            "consistency",
            s(a),
            s(b),
            "--proof",
            s(p),
            "--notary-key",
            &vkey(d),
        ])
    };
    let o = verify(&old, &new, &proof);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(code(&verify(&new, &old, &proof)), 1);
    let bad = d.join("bad.json");
    std::fs::copy(&proof, &bad).unwrap();
    edit_json(&bad, |v| {
        alter_first_hash(&mut v["proof"]);
    });
    assert_eq!(code(&verify(&old, &new, &bad)), 1);
    assert_eq!(code(&verify(&old, &new, &d.join("nope.json"))), 2);
}

#[test]
fn fsck_exit_codes_name_the_damage() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    demo(d, 4);
    let fsck = |extra: &[&str]| {
        let mut args = vec!["ledger", "fsck", "--data-dir", s(d)];
        args.extend_from_slice(extra);
        triplicate(&args)
    };
    let o = fsck(&["--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["result"].as_str(), v["size"].as_u64()),
        (Some("clean"), Some(4))
    );

    let other = d.join("other.pem");
    triplicate(&["keys", "generate", "--out", s(&other)]);
    assert_eq!(code(&fsck(&["--notary-key", s(&other)])), 1);

    let bundle = partial(d, "tile/entries/000.p");
    flip(&bundle, 100);
    let o = fsck(&[]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("tile/entries/000.p/4"), "{}", text(&o));
    flip(&bundle, 100);

    let tile = partial(d, "tile/0/000.p");
    flip(&tile, 5);
    let o = fsck(&[]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("tile/0/000.p/4"), "{}", text(&o));
    flip(&tile, 5);
    assert_eq!(code(&fsck(&[])), 0);

    std::fs::remove_file(d.join("ledger/checkpoint")).unwrap();
    assert_eq!(code(&fsck(&[])), 2);
}

#[test]
fn keys_generate_and_show() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("alice.pem");
    let o = triplicate(&["keys", "generate", "--out", s(&f), "--name", "alice"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_ne!(
        code(&triplicate(&["keys", "generate", "--out", s(&f)])),
        0,
        "never overwrites"
    );
    let o = triplicate(&["keys", "show", "--key", s(&f), "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "alice");
    assert_eq!(v["alg"], "ed25519");
    assert_eq!(v["key_id"].as_str().unwrap().len(), 16);
    assert!(v["note_verifier_key"]
        .as_str()
        .unwrap()
        .starts_with("alice+"));
}

#[test]
fn bench_reports_against_the_bound_and_needs_a_fresh_ledger() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let args = [
        "ledger",
        "bench",
        "--data-dir",
        s(d),
        "--entries",
        "600",
        "--batch",
        "100",
        "--proofs",
        "200",
        "--json",
    ];
    let o = triplicate(&args);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tree_size"], 600);
    assert!(v["entries_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["bound"]["seconds"].as_f64().unwrap() > 0.0);
    assert!(v["proofs_per_second"].as_f64().unwrap() > 0.0);
    assert_ne!(code(&triplicate(&args)), 0, "refuses an existing ledger");
}

#[test]
fn json_logs_are_json_lines() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_triplicate"))
        .args([
            "--log-format",
            "json",
            "demo",
            "--data-dir",
            s(t.path()),
            "--count",
            "1",
        ])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(stderr.lines().count() >= 2, "{stderr}");
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}
