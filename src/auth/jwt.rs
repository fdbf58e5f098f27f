//! NATS JWTs (operator mode): `base64url(header).base64url(claims).base64url(sig)`,
//! signed with the issuer's ed25519 nkey over `header.claims`. Decoding checks the
//! header, the signature against `iss`, and reads the claims every kind shares; the
//! NATS-specific part stays JSON for the kind's reader (operator, account, user,
//! activation) in [`super::operator`].

use data_encoding::BASE64URL_NOPAD;
use serde_json::Value;

/// The claims of a JWT whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: the public nkey that signed it.
    pub iss: String,
    /// Subject: the public nkey it is about.
    pub sub: String,
    /// `name`.
    pub name: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds); 0 = never.
    pub exp: i64,
    /// Not valid before (unix seconds); 0 = always.
    pub nbf: i64,
    /// The `nats` object (`type`, `version` and the kind's fields).
    pub nats: Value,
}

impl Claims {
    /// `nats.type`: `operator`, `account`, `user`, `activation`.
    pub fn kind(&self) -> &str {
        self.nats.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// Expired, or not valid yet, at `now` (unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        (self.exp > 0 && now > self.exp) || (self.nbf > 0 && now < self.nbf)
    }

    /// A string field of `nats`.
    pub fn str(&self, key: &str) -> &str {
        self.nats.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// Decodes the base64url text of a JWT part (padding tolerated).
fn part(s: &str) -> Result<Vec<u8>, String> {
    BASE64URL_NOPAD
        .decode(s.trim_end_matches('=').as_bytes())
        .map_err(|_| "illegal base64 data in JWT".to_string())
}

/// Decodes `token` and checks its signature; the error says why it is not a valid
/// JWT.
pub fn decode(token: &str) -> Result<Claims, String> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected 3 chunks".into());
    };
    let header: Value =
        serde_json::from_slice(&part(h)?).map_err(|e| format!("invalid JWT header: {e}"))?;
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if !typ.eq_ignore_ascii_case("jwt") {
        return Err(format!("not supported type {typ:?}"));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !matches!(
        alg.to_ascii_lowercase().as_str(),
        "ed25519-nkey" | "ed25519"
    ) {
        return Err(format!("unexpected {alg:?} algorithm"));
    }
    let body: Value =
        serde_json::from_slice(&part(c)?).map_err(|e| format!("invalid JWT claims: {e}"))?;
    let sig = part(s)?;
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let num = |k: &str| body.get(k).and_then(Value::as_i64).unwrap_or(0);
    let iss = text("iss");
    let key =
        nkeys::KeyPair::from_public_key(&iss).map_err(|_| format!("invalid issuer key {iss:?}"))?;
    let signed = &token[..h.len() + 1 + c.len()];
    key.verify(signed.as_bytes(), &sig)
        .map_err(|_| "claim failed V2 signature verification".to_string())?;
    Ok(Claims {
        iss,
        sub: text("sub"),
        name: text("name"),
        iat: num("iat"),
        exp: num("exp"),
        nbf: num("nbf"),
        nats: body.get("nats").cloned().unwrap_or(Value::Null),
    })
}

/// The user JWT and seed of a `.creds` file (or any text with the NATS decoration):
/// the first and second blocks between lines of three or more dashes. Undecorated
/// text is taken as a bare JWT.
pub fn parse_decorated(text: &str) -> (Option<String>, Option<String>) {
    let mut blocks = Vec::new();
    let mut inside = false;
    let mut current = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("---") && l.ends_with("---") && l.len() >= 6 {
            if inside {
                blocks.push(std::mem::take(&mut current));
            }
            inside = !inside;
            continue;
        }
        if inside {
            current.push_str(l);
        }
    }
    if blocks.is_empty() {
        let bare = text.trim();
        return ((!bare.is_empty()).then(|| bare.to_string()), None);
    }
    let mut it = blocks.into_iter();
    (it.next(), it.next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(claims: &Value, kp: &nkeys::KeyPair) -> String {
        let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let c = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let sig = kp.sign(format!("{h}.{c}").as_bytes()).unwrap();
        format!("{h}.{c}.{}", BASE64URL_NOPAD.encode(&sig))
    }

    #[test]
    fn signed_claims_decode_and_tampering_is_caught() {
        let acc = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user();
        let claims = serde_json::json!({
            "iss": acc.public_key(), "sub": user.public_key(), "name": "u", "iat": 5,
            "exp": 100, "nats": {"type": "user", "version": 2}
        });
        let token = sign(&claims, &acc);
        let c = decode(&token).unwrap();
        assert_eq!((c.kind(), c.iat, c.exp), ("user", 5, 100));
        assert!(c.expired(101) && !c.expired(99));
        // Another key's signature, a changed body, a truncated token.
        let forged = sign(&claims, &nkeys::KeyPair::new_account());
        assert!(decode(&forged).is_err());
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = BASE64URL_NOPAD.encode(claims.to_string().replace("\"u\"", "\"v\"").as_bytes());
        parts[1] = &other;
        assert!(decode(&parts.join(".")).is_err());
        assert!(decode(&token[..token.len() - 5]).is_err());
        assert!(decode("a.b").is_err());
    }

    #[test]
    fn creds_files_give_their_jwt_and_seed() {
        let text = "-----BEGIN NATS USER JWT-----\neyJ.x.y\n------END NATS USER JWT------\n\n\
                    ************************* IMPORTANT *************************\n\
                    -----BEGIN USER NKEY SEED-----\nSUAAA\n------END USER NKEY SEED------\n";
        assert_eq!(
            parse_decorated(text),
            (Some("eyJ.x.y".into()), Some("SUAAA".into()))
        );
        assert_eq!(
            parse_decorated(" eyJ.a.b \n"),
            (Some("eyJ.a.b".into()), None)
        );
    }
}
