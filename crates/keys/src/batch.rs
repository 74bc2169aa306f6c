//! Verifying many signatures at once.
//!
//! The write path judges the approvals of every submission waiting for the next commit
//! together, and the cross-verifier re-checks every approval and notary signature in a range of
//! records; Ed25519 batch verification makes both several times cheaper than one verification
//! per signature (see `benches/verify.rs`).

use ed25519_dalek::Signature;

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

/// Below this many Ed25519 items a batch is not worth its set-up (hashing keys into a map,
/// drawing weights); they are verified one by one.
const MIN_BATCH: usize = 4;

/// Verifies every item; `result[i]` is the verdict on `items[i]`, and it is exactly the verdict
/// of [`PublicKey::verify`] on that item.
///
/// P-256 items are verified one by one. Ed25519 items whose signature is well formed (canonical
/// `s`; canonical `R`, not of small order: [`ed25519_signature`]) go through `ed25519-zebra`'s
/// batch verifier in chunks; a chunk that passes is accepted whole, and only a chunk that fails
/// is re-verified item by item to find the culprits. The others are refused without batching.
///
/// # Why the batch and one-by-one verification agree
///
/// Both check the cofactored equation `[8]([s]B - R - [k]A) = 0` (see [`PublicKey::verify`]);
/// the batch checks `[8]` times a random linear combination of the same terms, with 128-bit
/// weights drawn from the thread's CSPRNG for each chunk. A chunk of signatures that all verify
/// always passes. A chunk with one that does not fails except with probability about 2^-128:
/// multiplying by 8 removes every small-order part, what remains lies in the prime-order
/// subgroup, where a non-zero term survives a random weight. (The cofactorless
/// `verify_strict`, which this function's earlier version had to pair with
/// `ed25519_dalek::verify_batch`, differs exactly on `R`s with a small-order part: its batch
/// accepts some of them with probability 1/2 to 1/8 and its single check refuses them all.)
pub fn verify_many(items: &[VerifyItem<'_>]) -> Vec<Result<(), VerifyError>> {
    let mut results: Vec<Result<(), VerifyError>> = Vec::with_capacity(items.len());
    // Indices of Ed25519 items that passed the pre-checks, with their parsed parts.
    let mut batch: Vec<(usize, ed25519_zebra::VerificationKeyBytes, Signature)> = Vec::new();

    for (i, item) in items.iter().enumerate() {
        results.push(Ok(()));
        match (item.key.ed25519_bytes(), ed25519_signature(item.sig)) {
            (Some(vk), Some(sig)) => batch.push((i, vk, sig)),
            _ => results[i] = item.key.verify(item.msg, item.sig),
        }
    }

    if batch.len() < MIN_BATCH {
        for &(i, _, _) in &batch {
            results[i] = items[i].key.verify(items[i].msg, items[i].sig);
        }
        return results;
    }
    let mut rng = rand::thread_rng();
    for chunk in batch.chunks(CHUNK) {
        let mut verifier = ed25519_zebra::batch::Verifier::new();
        for &(i, vk, sig) in chunk {
            verifier.queue((vk, sig, items[i].msg));
        }
        if verifier.verify(&mut rng).is_ok() {
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

/// The signature, if it is well formed under our rules: 64 bytes `R || s` with `s < ℓ` and `R`
/// the canonical encoding of a point that is not of small order (whether `R` is a point at all
/// is found by the verification itself). [`PublicKey::verify`] refuses every other signature.
pub(crate) fn ed25519_signature(sig: &[u8]) -> Option<Signature> {
    let sig = Signature::from_slice(sig).ok()?;
    if !scalar_is_canonical(sig.s_bytes()) {
        return None;
    }
    let r_bytes = sig.r_bytes();
    // Checked on the bytes: decoding R here would cost a square root, which the verification
    // pays again.
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
    use curve25519_dalek::{constants, scalar::clamp_integer, EdwardsPoint, Scalar};
    use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
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
        assert!(ed25519_signature(&sig.to_bytes()).is_some());
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
        // R = identity, s = 0: passes the bare cofactored equation for any key whose [8]A is
        // the identity... and for none of ours, but small-order R is refused before any
        // equation is checked, by both paths.
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert!(ed25519_signature(&sig).is_none());
        assert_eq!(
            verify_many(&[VerifyItem {
                key: &pk,
                msg: b"x",
                sig: &sig
            }]),
            vec![Err(pk.invalid())]
        );
    }

    /// The secret scalar `a` of `seed`'s key (RFC 8032 §5.1.5) and the key `A = [a]B`, with the
    /// nonce prefix.
    fn secret(seed: u8) -> (Scalar, [u8; 32], [u8; 32]) {
        use sha2::{Digest, Sha512};
        let h = Sha512::digest([seed; 32]);
        let mut low = [0u8; 32];
        low.copy_from_slice(&h[..32]);
        let a = Scalar::from_bytes_mod_order(clamp_integer(low));
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&h[32..]);
        let big_a = (constants::ED25519_BASEPOINT_POINT * a)
            .compress()
            .to_bytes();
        (a, big_a, prefix)
    }

    /// `SHA-512(parts...) mod ℓ`.
    fn hash_scalar(parts: &[&[u8]]) -> Scalar {
        use sha2::{Digest, Sha512};
        let mut h = Sha512::new();
        for p in parts {
            h.update(p);
        }
        let mut wide = [0u8; 64];
        wide.copy_from_slice(&h.finalize());
        Scalar::from_bytes_mod_order_wide(&wide)
    }

    /// `R ‖ s` with `s = r + k·a` for `R` the encoding of `big_r`.
    fn signature(
        a: Scalar,
        big_a: &[u8; 32],
        r: Scalar,
        big_r: EdwardsPoint,
        msg: &[u8],
    ) -> [u8; 64] {
        let big_r = big_r.compress();
        let k = hash_scalar(&[big_r.as_bytes(), big_a, msg]);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        sig
    }

    /// A signature by `seed`'s key over `msg` whose `R` has the small-order point `torsion`
    /// added (the identity for an ordinary signature). Only the key's holder can make one: `s`
    /// is computed with the secret scalar for the altered `R`.
    fn sign_with_torsion(seed: u8, msg: &[u8], torsion: &EdwardsPoint) -> [u8; 64] {
        let (a, big_a, prefix) = secret(seed);
        let r = hash_scalar(&[&prefix, msg]);
        signature(
            a,
            &big_a,
            r,
            constants::ED25519_BASEPOINT_POINT * r + torsion,
            msg,
        )
    }

    #[test]
    fn crafted_signatures_match_the_library_signer() {
        // With no torsion the construction is RFC 8032 signing itself.
        let (sk, _) = ed_key(9);
        let honest = sk.sign(b"same bytes").to_bytes();
        let crafted = sign_with_torsion(9, b"same bytes", &EdwardsPoint::default());
        assert_eq!(honest, crafted);
    }

    #[test]
    fn a_torsion_component_in_r_is_judged_alike_by_both_paths() {
        let (_, pk) = ed_key(3);
        let msg = b"a decision digest";
        for t in 1..8 {
            let torsion = constants::EIGHT_TORSION[t];
            let sig = sign_with_torsion(3, msg, &torsion);
            // The cofactorless rule refuses it ...
            let dalek = VerifyingKey::from_bytes(pk.as_bytes().try_into().unwrap()).unwrap();
            let strict = dalek.verify_strict(msg, &Signature::from_bytes(&sig));
            assert!(strict.is_err(), "torsion point {t}");
            // ... ours accepts it, alone and in every position of a batch, every time (the
            // cofactorless batch accepted it only when its random weight was a multiple of the
            // torsion point's order).
            assert_eq!(pk.verify(msg, &sig), Ok(()), "torsion point {t}");
            let keys: Vec<_> = (20..40u8).map(ed_key).collect();
            let msgs: Vec<Vec<u8>> = (0..20u32).map(|i| i.to_le_bytes().to_vec()).collect();
            let sigs: Vec<[u8; 64]> = keys
                .iter()
                .zip(&msgs)
                .map(|((sk, _), m)| sk.sign(m).to_bytes())
                .collect();
            for pos in [0, 7, 20] {
                let mut items: Vec<_> = keys
                    .iter()
                    .zip(&msgs)
                    .zip(&sigs)
                    .map(|(((_, pk), m), s)| VerifyItem {
                        key: pk,
                        msg: m,
                        sig: s,
                    })
                    .collect();
                items.insert(
                    pos,
                    VerifyItem {
                        key: &pk,
                        msg,
                        sig: &sig,
                    },
                );
                for _ in 0..4 {
                    assert!(
                        verify_many(&items).iter().all(Result::is_ok),
                        "t {t} pos {pos}"
                    );
                }
            }
        }
    }

    #[test]
    fn small_order_r_is_refused_with_or_without_a_valid_equation() {
        // R = T (small order) with s computed by the holder: the equation holds, the rule
        // refuses it on R's encoding, before any arithmetic.
        let (_, pk) = ed_key(4);
        let msg = b"m";
        for t in 0..8 {
            let torsion = constants::EIGHT_TORSION[t];
            // r = 0 makes R = T exactly.
            let (a, big_a, _) = secret(4);
            let sig = signature(a, &big_a, Scalar::ZERO, torsion, msg);
            assert!(ed25519_signature(&sig).is_none(), "{t}");
            assert_eq!(pk.verify(msg, &sig), Err(pk.invalid()), "{t}");
            let items = vec![
                VerifyItem {
                    key: &pk,
                    msg,
                    sig: &sig
                };
                MIN_BATCH + 1
            ];
            assert!(verify_many(&items).iter().all(Result::is_err), "{t}");
        }
    }

    #[test]
    fn batches_agree_with_one_by_one_on_random_mixes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7121);
        let keys: Vec<_> = (50..58u8).map(ed_key).collect();
        for round in 0..20 {
            let n = rng.gen_range(1..40);
            let mut owned: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
            for i in 0..n {
                let k = rng.gen_range(0..keys.len());
                let msg = format!("round {round} item {i}").into_bytes();
                let seed = 50 + k as u8;
                let mut sig = match rng.gen_range(0..6) {
                    0 => sign_with_torsion(
                        seed,
                        &msg,
                        &constants::EIGHT_TORSION[rng.gen_range(1..8)],
                    ),
                    _ => keys[k].0.sign(&msg).to_bytes(),
                };
                match rng.gen_range(0..8) {
                    0 => sig[rng.gen_range(0..64)] ^= 1 << rng.gen_range(0..8),
                    1 => sig[32..].copy_from_slice(&ELL),
                    _ => {}
                }
                let key = if rng.gen_range(0..10) == 0 {
                    (k + 1) % keys.len()
                } else {
                    k
                };
                owned.push((key, msg, sig.to_vec()));
            }
            let items: Vec<_> = owned
                .iter()
                .map(|(k, m, s)| VerifyItem {
                    key: &keys[*k].1,
                    msg: m,
                    sig: s,
                })
                .collect();
            let one_by_one: Vec<_> = items
                .iter()
                .map(|it| it.key.verify(it.msg, it.sig))
                .collect();
            assert_eq!(verify_many(&items), one_by_one, "round {round}");
        }
    }
}
