//! Signature verification throughput: which P-256 implementation to verify with, and what
//! Ed25519 batch verification buys. A plain `main` (no criterion): warm up, then time N rounds.
//!
//! Run with `cargo bench -p triplicate-keys`. Numbers are for BENCHMARKS.md, never asserted.

// A benchmark's output is its purpose.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use p256::ecdsa::signature::Verifier as _;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use triplicate_keys::{verify_many, Algorithm, PublicKey, VerifyItem};

const TRIPLES: usize = 1_000;
const ROUNDS: usize = 5;

/// Runs `f` once to warm up, then `ROUNDS` times; returns items verified per second.
fn rate(items_per_call: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        f();
    }
    let elapsed: Duration = start.elapsed();
    (items_per_call * ROUNDS) as f64 / elapsed.as_secs_f64()
}

fn report(label: &str, per_sec: f64) {
    println!(
        "{label:<58} {per_sec:>12.0} /s  {:>8.1} µs each",
        1e6 / per_sec
    );
}

/// A 32-byte message, like the decision digests approvals sign.
fn message(i: usize) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m[8..].fill(0x5a);
    m
}

fn main() {
    println!(
        "triplicate-keys verify benchmark: {TRIPLES} (key, msg, sig) triples, {ROUNDS} timed rounds after one warm-up"
    );
    println!();
    p256_bench();
    println!();
    ed25519_bench();
}

fn p256_bench() {
    let rng = ring::rand::SystemRandom::new();
    let triples: Vec<(Vec<u8>, [u8; 32], Vec<u8>)> = (0..TRIPLES)
        .map(|i| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate P-256 key");
            let kp =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("load P-256 key");
            let msg = message(i);
            let sig = kp.sign(&rng, &msg).expect("sign");
            (
                kp.public_key().as_ref().to_vec(),
                msg,
                sig.as_ref().to_vec(),
            )
        })
        .collect();

    // Like for like: both parse the SEC1 key and the signature on every call, as a verifier
    // handed (key bytes, msg, sig) from a record does.
    let p256_parse = rate(TRIPLES, || {
        for (pk, msg, sig) in &triples {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(pk).expect("key");
            let sig = p256::ecdsa::Signature::from_slice(sig).expect("sig");
            assert!(vk.verify(black_box(msg), &sig).is_ok());
        }
    });
    let p256_keys: Vec<p256::ecdsa::VerifyingKey> = triples
        .iter()
        .map(|(pk, _, _)| p256::ecdsa::VerifyingKey::from_sec1_bytes(pk).expect("key"))
        .collect();
    let p256_preparsed = rate(TRIPLES, || {
        for ((_, msg, sig), vk) in triples.iter().zip(&p256_keys) {
            let sig = p256::ecdsa::Signature::from_slice(sig).expect("sig");
            assert!(vk.verify(black_box(msg), &sig).is_ok());
        }
    });
    let ring_rate = rate(TRIPLES, || {
        for (pk, msg, sig) in &triples {
            let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pk);
            assert!(key.verify(black_box(msg), sig).is_ok());
        }
    });
    let ours: Vec<PublicKey> = triples
        .iter()
        .map(|(pk, _, _)| PublicKey::new(Algorithm::EcdsaP256, pk).expect("key"))
        .collect();
    let ours_rate = rate(TRIPLES, || {
        for ((_, msg, sig), key) in triples.iter().zip(&ours) {
            assert!(key.verify(black_box(msg), sig).is_ok());
        }
    });
    let new_rate = rate(TRIPLES, || {
        for (pk, _, _) in &triples {
            black_box(PublicKey::new(Algorithm::EcdsaP256, black_box(pk)).expect("key"));
        }
    });

    println!("ECDSA P-256 (SHA-256, r||s), verify");
    report("  RustCrypto p256 0.13 (parse key + verify)", p256_parse);
    report("  RustCrypto p256 0.13 (key parsed once)", p256_preparsed);
    report(
        "  ring 0.17 ECDSA_P256_SHA256_FIXED (parse key + verify)",
        ring_rate,
    );
    report("  triplicate PublicKey::verify (ring)", ours_rate);
    report(
        "  triplicate PublicKey::new (validate key, ring ECDH)",
        new_rate,
    );
    println!(
        "  ratio ring / p256 (both parsing):   {:.2}x",
        ring_rate / p256_parse
    );
    println!(
        "  ratio ring / p256 (p256 pre-parsed): {:.2}x",
        ring_rate / p256_preparsed
    );
}

fn ed25519_bench() {
    const N: usize = 1_024;
    let keys: Vec<SigningKey> = (0..N)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed[8] = 1;
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let msgs: Vec<[u8; 32]> = (0..N).map(message).collect();
    let sigs: Vec<ed25519_dalek::Signature> =
        keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let vks: Vec<ed25519_dalek::VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    let msg_refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();

    let single = rate(N, || {
        for ((vk, m), s) in vks.iter().zip(&msgs).zip(&sigs) {
            assert!(vk.verify_strict(black_box(m), s).is_ok());
        }
    });
    let batch = |size: usize| {
        rate(N, || {
            for ((m, s), k) in msg_refs
                .chunks(size)
                .zip(sigs.chunks(size))
                .zip(vks.chunks(size))
            {
                assert!(ed25519_dalek::verify_batch(black_box(m), s, k).is_ok());
            }
        })
    };
    let b64 = batch(64);
    let b256 = batch(256);
    let b1024 = batch(1024);

    let pks: Vec<PublicKey> = vks
        .iter()
        .map(|vk| PublicKey::new(Algorithm::Ed25519, vk.as_bytes()).expect("key"))
        .collect();
    let sig_bytes: Vec<[u8; 64]> = sigs.iter().map(|s| s.to_bytes()).collect();
    let items: Vec<VerifyItem<'_>> = pks
        .iter()
        .zip(&msgs)
        .zip(&sig_bytes)
        .map(|((key, msg), sig)| VerifyItem { key, msg, sig })
        .collect();
    let ours_single = rate(N, || {
        for it in &items {
            assert!(it.key.verify(black_box(it.msg), it.sig).is_ok());
        }
    });
    let many = rate(N, || {
        assert!(verify_many(black_box(&items)).iter().all(Result::is_ok));
    });
    // The write path's shape: many submissions approved by the same few keys (here 3), whose
    // terms the batch coalesces per key.
    let few_sigs: Vec<[u8; 64]> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 3].sign(m).to_bytes())
        .collect();
    let few_items: Vec<VerifyItem<'_>> = msgs
        .iter()
        .zip(&few_sigs)
        .enumerate()
        .map(|(i, (msg, sig))| VerifyItem {
            key: &pks[i % 3],
            msg,
            sig,
        })
        .collect();
    let many_few = rate(N, || {
        assert!(verify_many(black_box(&few_items)).iter().all(Result::is_ok));
    });
    // Small batches, as `verify_many` would make them (zebra, distinct keys), against
    // checking the same items one by one: where a batch starts to pay (its `MIN_BATCH`). A
    // submission that reaches the judge alone carries two approvals by two keys.
    let zebra = |size: usize| {
        rate(N - N % size, || {
            for (chunk, sigs) in vks[..N - N % size]
                .chunks(size)
                .zip(sig_bytes.chunks(size))
                .enumerate()
                .map(|(c, (k, s))| ((c, k), s))
            {
                let (c, keys) = chunk;
                let mut v = ed25519_zebra::batch::Verifier::new();
                for (j, (vk, sig)) in keys.iter().zip(sigs).enumerate() {
                    let vk = ed25519_zebra::VerificationKeyBytes::from(vk.to_bytes());
                    let sig = ed25519_zebra::Signature::from(*sig);
                    v.queue((vk, sig, black_box(&msgs[c * size + j][..])));
                }
                assert!(v.verify(rand::thread_rng()).is_ok());
            }
        })
    };
    let small: Vec<(usize, f64)> = [2, 3, 4, 8].iter().map(|&n| (n, zebra(n))).collect();
    let new_rate = rate(N, || {
        for vk in &vks {
            black_box(PublicKey::new(Algorithm::Ed25519, black_box(vk.as_bytes())).expect("key"));
        }
    });

    println!("Ed25519 ({N} distinct keys), verify");
    report("  verify_strict, one by one", single);
    report("  verify_batch, batches of 64", b64);
    report("  verify_batch, batches of 256", b256);
    report("  verify_batch, one batch of 1024", b1024);
    report(
        "  triplicate PublicKey::verify, one by one (cofactored)",
        ours_single,
    );
    report("  triplicate verify_many, 1024 keys (256-chunks)", many);
    report("  triplicate verify_many, 3 keys (256-chunks)", many_few);
    report("  triplicate PublicKey::new (validate key)", new_rate);
    for (n, r) in &small {
        report(&format!("  zebra batches of {n} (distinct keys)"), *r);
    }
    for (n, r) in &small {
        println!(
            "  ratio zebra batch of {n} / PublicKey::verify one by one: {:.2}x",
            r / ours_single
        );
    }
    println!("  ratio batch64 / single:   {:.2}x", b64 / single);
    println!("  ratio batch256 / single:  {:.2}x", b256 / single);
    println!("  ratio batch1024 / single: {:.2}x", b1024 / single);
    println!(
        "  ratio PublicKey::verify / verify_strict: {:.2}x",
        ours_single / single
    );
    println!("  ratio verify_many / single: {:.2}x", many / single);
    println!(
        "  ratio verify_many, 3 keys / single: {:.2}x",
        many_few / single
    );
}
