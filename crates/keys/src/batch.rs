//! Verifying many signatures at once.
//!
//! The cross-verifier re-checks every approval and notary signature in a range of records;
//! Ed25519 batch verification makes that several times cheaper than one `verify_strict` per
//! signature (see `benches/verify.rs`).

use ed25519_dalek::{Signature, VerifyingKey};

use crate::public_key::{PublicKey, VerifyError};

/// One signature to check: `sig` over `msg` by `key`.
#[derive(Debug, Clone, Copy)]
pub struct VerifyItem<'a> {
    pub key: &'a PublicKey,
    pub msg: &'a [u8],
    pub sig: &'a [u8],
}

/// Ed25519 items are batched in chunks of this many, so that one bad signature costs at most one
/// chunk re-verified one by one rather than the whole input. Past a few hundred items a larger
/// batch is barely faster per signature (see `benches/verify.rs`).
const CHUNK: usize = 256;

/// Verifies every item; `result[i]` is the verdict on `items[i]`.
///
/// P-256 items are verified one by one with [`PublicKey::verify`]. Ed25519 items go through
/// `ed25519_dalek::verify_batch` in chunks; a chunk that passes is accepted whole, and only a
/// chunk that fails is re-verified item by item with `verify_strict` to find the culprits.
///
/// # How this differs from [`PublicKey::verify`]
///
/// `verify_strict` checks `[s]B == R + [k]A` exactly and refuses a small-order `R` or `A`. The
/// batch checks a random linear combination of the same equations. For signatures that pass
/// `verify_strict` the batch always passes, and a signature that fails the equation on the
/// prime-order subgroup fails the batch except with negligible probability. They can disagree
/// only through small-order (torsion) components, which we close off as follows:
///
/// - keys: [`PublicKey::new`] refuses weak keys, keys with a torsion component and
///   non-canonical encodings, so no batched key has a torsion part;
/// - before batching, each signature must have canonical `s` (`s < ℓ`) and a canonically
///   encoded `R` that is not one of the eight points of small order; a signature that fails
///   these goes straight to `verify_strict` (which refuses it), so it cannot spoil its chunk.
///   An `R` that is not a point at all fails its chunk, which is then checked item by item.
///
/// What remains: an `R` that is a valid point plus a small torsion point. Such a signature
/// fails `verify_strict` but satisfies the batch equation whenever the batch's random weight
/// for it is a multiple of the torsion point's order (probability 1/2, 1/4 or 1/8; the
/// weights are derived from the batch contents, so a signer can try again). Only the holder of
/// the secret key can make one: it needs a valid `s` for the altered `R`, so this is not a
/// forgery, only a signature two of our paths judge differently. Checking every `R` for a
/// torsion part would close the gap, but it is a full scalar multiplication (about 30 µs, as
/// much as `verify_strict` itself), which is more than the batch saves.
///
/// So: use this for bulk re-verification (the cross-verifier's sweeps), where every signature
/// was already accepted by [`PublicKey::verify`] on the write path, and the question is whether
/// stored bytes still verify. Accept new signatures (the write path, receipts checked offline,
/// checkpoints) with [`PublicKey::verify`] only.
pub fn verify_many(items: &[VerifyItem<'_>]) -> Vec<Result<(), VerifyError>> {
    let mut results: Vec<Result<(), VerifyError>> = Vec::with_capacity(items.len());
    // Indices of Ed25519 items that passed the pre-checks, with their parsed parts.
    let mut batch: Vec<(usize, &VerifyingKey, Signature)> = Vec::new();

    for (i, item) in items.iter().enumerate() {
        results.push(Ok(()));
        match item.key.ed25519() {
            Some(vk) => match batchable_signature(item.sig) {
                Some(sig) => batch.push((i, vk, sig)),
                None => results[i] = item.key.verify(item.msg, item.sig),
            },
            None => results[i] = item.key.verify(item.msg, item.sig),
        }
    }

    for chunk in batch.chunks(CHUNK) {
        let msgs: Vec<&[u8]> = chunk.iter().map(|&(i, _, _)| items[i].msg).collect();
        let sigs: Vec<Signature> = chunk.iter().map(|(_, _, s)| *s).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|(_, vk, _)| **vk).collect();
        if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
            continue;
        }
        tracing::debug!(
            chunk_len = chunk.len(),
            "ed25519 batch failed; verifying its items one by one"
        );
        for &(i, _, _) in chunk {
            results[i] = items[i].key.verify(items[i].msg, items[i].sig);
        }
    }
    results
}

/// The signature, if it is one the batch and `verify_strict` judge alike (see [`verify_many`]).
fn batchable_signature(sig: &[u8]) -> Option<Signature> {
    let sig = Signature::from_slice(sig).ok()?;
    if !scalar_is_canonical(sig.s_bytes()) {
        return None;
    }
    let r_bytes = sig.r_bytes();
    // Checked on the bytes: decoding R here would cost a square root, which the batch pays
    // again, and is a third of what batching saves per signature. An R that does not decode at
    // all fails the batch and is then found by `verify_strict`.
    if !field_element_is_canonical(r_bytes) || is_small_order_encoding(r_bytes) {
        return None;
    }
    Some(sig)
}

/// Whether the y coordinate of an Edwards point encoding (the low 255 bits, little-endian) is
/// below p = 2^255 - 19. With this, the only other non-canonical encodings are x = 0 with the
/// sign bit set, that is (0, ±1), which [`is_small_order_encoding`] refuses anyway.
fn field_element_is_canonical(enc: &[u8; 32]) -> bool {
    let top_all_ones = enc[31] & 0x7f == 0x7f && enc[1..31].iter().all(|&b| b == 0xff);
    !(top_all_ones && enc[0] >= 0xed)
}

/// The y coordinates of the eight points of small order (libsodium's blocklist, canonical
/// entries): 0 (order 4, two points), 1 (the identity), two values of order 8 (two points
/// each) and p - 1 (order 2). The sign bit picks between x and -x, so it is ignored.
/// `small_order_list_is_complete` derives the set from the curve to check it.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether a (canonical) point encoding is one of the eight points of small order.
fn is_small_order_encoding(enc: &[u8; 32]) -> bool {
    let mut y = *enc;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// Whether `s < ℓ`, comparing little-endian bytes from the most significant end.
fn scalar_is_canonical(s: &[u8; 32]) -> bool {
    for i in (0..32).rev() {
        if s[i] != ELL[i] {
            return s[i] < ELL[i];
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use triplicate_core::Algorithm;

    fn ed_key(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = PublicKey::new(Algorithm::Ed25519, sk.verifying_key().as_bytes()).unwrap();
        (sk, pk)
    }

    #[test]
    fn canonical_field_element_bound() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!field_element_is_canonical(&p));
        let mut p_minus_1 = p;
        p_minus_1[0] = 0xec;
        assert!(field_element_is_canonical(&p_minus_1));
        // The sign bit is not part of y.
        let mut signed = p_minus_1;
        signed[31] = 0xff;
        assert!(field_element_is_canonical(&signed));
        p[31] = 0xff;
        assert!(!field_element_is_canonical(&p));
        assert!(!field_element_is_canonical(&[0xff; 32]));
        // Agrees with decompress-then-compress on every y in [p - 3, 2^255).
        for low in 0xea..=0xffu8 {
            let mut enc = [0xffu8; 32];
            enc[0] = low;
            enc[31] = 0x7f;
            let roundtrip = VerifyingKey::from_bytes(&enc)
                .map(|vk| vk.to_edwards().compress().to_bytes() == enc)
                .unwrap_or(false);
            if VerifyingKey::from_bytes(&enc).is_ok() {
                assert_eq!(field_element_is_canonical(&enc), roundtrip, "{low:x}");
            }
        }
    }

    #[test]
    fn small_order_list_is_complete() {
        // Every listed y decodes to a small-order point (both signs of x).
        for y in SMALL_ORDER_Y {
            for sign in [0u8, 0x80] {
                let mut enc = y;
                enc[31] |= sign;
                let p = VerifyingKey::from_bytes(&enc).unwrap();
                assert!(p.is_weak(), "{}", hex::encode(enc));
                assert!(is_small_order_encoding(&enc));
            }
        }
        // The multiples of an order-8 point are all eight small-order points; their y
        // coordinates are exactly the list.
        let t = VerifyingKey::from_bytes(&SMALL_ORDER_Y[2])
            .unwrap()
            .to_edwards();
        let mut acc = t;
        let mut ys = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let mut y = acc.compress().to_bytes();
            y[31] &= 0x7f;
            ys.insert(y);
            acc += t;
        }
        assert_eq!(acc.compress(), t.compress(), "t has order 8");
        let want: std::collections::BTreeSet<_> = SMALL_ORDER_Y.into_iter().collect();
        assert_eq!(ys, want);
        // And an honest R is not on the list.
        let sk = SigningKey::from_bytes(&[5u8; 32]);
        let sig = sk.sign(b"m");
        assert!(batchable_signature(&sig.to_bytes()).is_some());
    }

    #[test]
    fn canonical_scalar_bound() {
        assert!(scalar_is_canonical(&[0u8; 32]));
        let mut below = ELL;
        below[0] -= 1;
        assert!(scalar_is_canonical(&below));
        assert!(!scalar_is_canonical(&ELL));
        let mut above = ELL;
        above[0] += 1;
        assert!(!scalar_is_canonical(&above));
        assert!(!scalar_is_canonical(&[0xff; 32]));
    }

    #[test]
    fn mixed_items_get_exact_per_item_results() {
        let (sk1, pk1) = ed_key(1);
        let (sk2, pk2) = ed_key(2);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pk3 = PublicKey::new(Algorithm::EcdsaP256, ec.public_key().as_ref()).unwrap();

        let m = [b"alpha".as_slice(), b"beta", b"gamma"];
        let s1 = sk1.sign(m[0]).to_bytes();
        let s2 = sk2.sign(m[1]).to_bytes();
        let s3 = ec.sign(&rng, m[2]).unwrap().as_ref().to_vec();
        let mut s1_flipped = s1;
        s1_flipped[5] ^= 0x20;
        let mut s2_big_s = s2;
        s2_big_s[32..].copy_from_slice(&ELL);
        let mut s3_flipped = s3.clone();
        s3_flipped[40] ^= 1;

        let items = [
            VerifyItem {
                key: &pk1,
                msg: m[0],
                sig: &s1,
            }, // 0 good
            VerifyItem {
                key: &pk2,
                msg: m[1],
                sig: &s2,
            }, // 1 good
            VerifyItem {
                key: &pk3,
                msg: m[2],
                sig: &s3,
            }, // 2 good p256
            VerifyItem {
                key: &pk1,
                msg: m[1],
                sig: &s1,
            }, // 3 wrong message
            VerifyItem {
                key: &pk2,
                msg: m[0],
                sig: &s1,
            }, // 4 wrong key
            VerifyItem {
                key: &pk1,
                msg: m[0],
                sig: &s1_flipped,
            }, // 5 flipped bit
            VerifyItem {
                key: &pk2,
                msg: m[1],
                sig: &s2_big_s,
            }, // 6 non-canonical s
            VerifyItem {
                key: &pk3,
                msg: m[2],
                sig: &s3_flipped,
            }, // 7 bad p256
            VerifyItem {
                key: &pk1,
                msg: m[0],
                sig: &s1[..63],
            }, // 8 short
            VerifyItem {
                key: &pk3,
                msg: m[2],
                sig: &s1,
            }, // 9 ed sig, p256 key
            VerifyItem {
                key: &pk1,
                msg: m[0],
                sig: &s1,
            }, // 10 good again
        ];
        let got = verify_many(&items);
        let bad1 = Err(pk1.invalid());
        let bad2 = Err(pk2.invalid());
        let bad3 = Err(pk3.invalid());
        let want = vec![
            Ok(()),
            Ok(()),
            Ok(()),
            bad1.clone(),
            bad2.clone(),
            bad1.clone(),
            bad2,
            bad3.clone(),
            Err(VerifyError::SignatureLength {
                alg: Algorithm::Ed25519,
                expected: 64,
                actual: 63,
            }),
            bad3,
            Ok(()),
        ];
        assert_eq!(got, want);
        // Same verdicts as one-by-one verification.
        let one_by_one: Vec<_> = items
            .iter()
            .map(|it| it.key.verify(it.msg, it.sig))
            .collect();
        assert_eq!(got, one_by_one);
    }

    #[test]
    fn all_good_batch_and_empty_input() {
        assert!(verify_many(&[]).is_empty());
        let keys: Vec<_> = (0..40u8).map(ed_key).collect();
        let msgs: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let sigs: Vec<[u8; 64]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 40].0.sign(m).to_bytes())
            .collect();
        let mut items: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| VerifyItem {
                key: &keys[i % 40].1,
                msg: m,
                sig: &sigs[i],
            })
            .collect();
        assert!(verify_many(&items).iter().all(Result::is_ok));
        // One bad item in the second chunk.
        items[300].msg = b"tampered";
        let got = verify_many(&items);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.is_err(), i == 300, "item {i}");
        }
    }

    #[test]
    fn small_order_r_is_refused_without_batching() {
        let (_, pk) = ed_key(7);
        // R = identity, s = 0: passes the cofactored check for some keys; never verify_strict.
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert!(batchable_signature(&sig).is_none());
        assert_eq!(
            verify_many(&[VerifyItem {
                key: &pk,
                msg: b"x",
                sig: &sig
            }]),
            vec![Err(pk.invalid())]
        );
    }
}
