//! Nkey challenge: the nonce sent in INFO and the check of the client's signature.

use data_encoding::{BASE64, BASE64URL_NOPAD};

/// A fresh nonce: 11 random bytes, base64 RawURL (15 characters), like nats-server.
pub fn new_nonce() -> String {
    let bytes: [u8; 11] = rand::random();
    BASE64URL_NOPAD.encode(&bytes)
}

/// Verifies `sig` (base64 RawURL, or standard base64 with padding) as the Ed25519
/// signature by the user key `public` over the ASCII bytes of `nonce`.
pub fn verify(public: &str, nonce: &str, sig: &str) -> bool {
    let Ok(kp) = nkeys::KeyPair::from_public_key(public) else {
        return false;
    };
    let raw = match BASE64URL_NOPAD.decode(sig.as_bytes()) {
        Ok(s) => s,
        Err(_) => match BASE64.decode(sig.as_bytes()) {
            Ok(s) => s,
            Err(_) => return false,
        },
    };
    kp.verify(nonce.as_bytes(), &raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_15_url_safe_chars() {
        let n = new_nonce();
        assert_eq!(n.len(), 15);
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn both_signature_encodings_verify() {
        let kp = nkeys::KeyPair::new_user();
        let nonce = new_nonce();
        let sig = kp.sign(nonce.as_bytes()).unwrap();
        let pk = kp.public_key();
        assert!(verify(&pk, &nonce, &BASE64URL_NOPAD.encode(&sig)));
        assert!(verify(&pk, &nonce, &BASE64.encode(&sig)));
        assert!(!verify(
            &pk,
            "other-nonce-xyz",
            &BASE64URL_NOPAD.encode(&sig)
        ));
        assert!(!verify(&pk, &nonce, "not base64!"));
        assert!(!verify("UBAD", &nonce, &BASE64URL_NOPAD.encode(&sig)));
    }
}
