//! RustCrypto `p256` and `ring` agree on ECDSA P-256: SEC1 public keys, SHA-256, `r || s`.
//! We verify with `ring`; this pins that signatures from other P-256 implementations (PIV
//! cards, PKCS#11 modules, Go, OpenSSL in fixed-width form) are what it expects.

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use triplicate_keys::{Algorithm, PublicKey};

#[test]
fn p256_signature_verifies_with_ring() {
    for i in 0..20u8 {
        let sk = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pk_bytes = sk.verifying_key().to_encoded_point(false);
        let msg = [i; 40];
        let sig: Signature = sk.sign(&msg);
        let key = PublicKey::new(Algorithm::EcdsaP256, pk_bytes.as_bytes()).unwrap();
        key.verify(&msg, &sig.to_bytes()).unwrap();
        // The high-s twin is also a valid ECDSA signature; both libraries accept it.
        if let Some(low) = sig.normalize_s() {
            key.verify(&msg, &low.to_bytes()).unwrap();
        }
        assert!(key.verify(b"other", &sig.to_bytes()).is_err());
    }
}

#[test]
fn ring_signature_verifies_with_p256() {
    let rng = ring::rand::SystemRandom::new();
    for i in 0..20u8 {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let msg = [i; 40];
        let sig = kp.sign(&rng, &msg).unwrap();
        let vk = VerifyingKey::from_sec1_bytes(kp.public_key().as_ref()).unwrap();
        let sig = Signature::from_slice(sig.as_ref()).unwrap();
        vk.verify(&msg, &sig).unwrap();
        assert!(vk.verify(b"other", &sig).is_err());
    }
}

#[test]
fn key_validation_agrees_with_p256() {
    // Valid keys from p256 are accepted; corrupted ones are refused by both.
    for _ in 0..20 {
        let sk = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let good = sk
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        assert!(PublicKey::new(Algorithm::EcdsaP256, &good).is_ok());
        for byte in [1usize, 20, 33, 64] {
            let mut bad = good.clone();
            bad[byte] ^= 0x01;
            assert_eq!(
                PublicKey::new(Algorithm::EcdsaP256, &bad).is_ok(),
                VerifyingKey::from_sec1_bytes(&bad).is_ok(),
                "disagree on {}",
                hex::encode(&bad)
            );
        }
    }
}
