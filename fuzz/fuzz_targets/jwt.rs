//! Fuzzes operator mode's JWT handling (`natrium::auth::jwt`, `auth::operator`).
//!
//! Byte 0 picks what the rest feeds:
//! * 0: `jwt::decode` of the text (a forged or malformed token must be an error,
//!   never a panic), and `parse_decorated` as a `.creds` file;
//! * 1: the text as a user JWT's claims (a JSON object gets this target's user key
//!   as `sub`; anything else becomes its `nats` part), signed by the account, then
//!   `operator::login` with the nonce signed by the user: permissions, templates
//!   of no scope, src networks, connect times, limits and connection types read from
//!   arbitrary claims;
//! * 2: the same claims signed by the account's scoped signing key, whose template
//!   is the JSON the text holds after a NUL byte (template functions expanded);
//! * 3: the text as an account JWT's `nats` part (exports, imports with activation
//!   tokens, signing keys, revocations, limits), added to the trust and its imports
//!   computed, then a plain user of it logs in.
//!
//! Checks: no panic; a login only succeeds for a JWT this target signed.

#![no_main]

use std::sync::OnceLock;

use data_encoding::BASE64URL_NOPAD;
use libfuzzer_sys::fuzz_target;
use natrium::auth::jwt;
use natrium::auth::operator::{login, Origin, Trust};
use natrium::proto::connect::ConnectOpts;
use nkeys::KeyPair;
use serde_json::{json, Value};

struct Keys {
    op: KeyPair,
    acc: KeyPair,
    scoped: KeyPair,
    user: KeyPair,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        op: KeyPair::new_operator(),
        acc: KeyPair::new_account(),
        scoped: KeyPair::new_account(),
        user: KeyPair::new_user(),
    })
}

fn sign(claims: &Value, by: &KeyPair) -> String {
    let h = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let c = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let sig = by.sign(format!("{h}.{c}").as_bytes()).unwrap();
    format!("{h}.{c}.{}", BASE64URL_NOPAD.encode(&sig))
}

/// A trust holding the account (with a scoped key carrying `template`) and `extra`
/// account fields.
fn trust(template: Value, extra: Option<Value>) -> Trust {
    let k = keys();
    let mut t = Trust::default();
    t.keys.insert(k.op.public_key());
    let mut nats = json!({"type": "account", "version": 2,
        "limits": {"subs": -1, "payload": -1, "conn": -1, "data": -1},
        "signing_keys": [{"kind": "user_scope", "key": k.scoped.public_key(), "template": template}]});
    if let Some(Value::Object(m)) = extra {
        for (key, v) in m {
            nats[key] = v;
        }
    }
    let account = sign(
        &json!({"sub": k.acc.public_key(), "name": "A", "nats": nats}),
        &k.op,
    );
    let _ = t.add_account(&account);
    t
}

fn user_claims(text: &str) -> Value {
    let k = keys();
    let mut c = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Value::Object(m),
        Ok(other) => json!({"nats": other}),
        Err(_) => json!({"nats": text}),
    };
    c["sub"] = k.user.public_key().into();
    c
}

fn try_login(t: &Trust, token: String) {
    let k = keys();
    let nonce = "fuzz-nonce-1234";
    let sig = k.user.sign(nonce.as_bytes()).unwrap();
    let opts = ConnectOpts {
        jwt: Some(token),
        sig: Some(BASE64URL_NOPAD.encode(&sig)),
        ..Default::default()
    };
    let origin = Origin {
        ip: Some("127.0.0.1".parse().unwrap()),
        kind: "STANDARD",
    };
    let _ = login(t, &opts, Some(nonce), &origin, 1_700_000_000);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let k = keys();
    match mode % 4 {
        0 => {
            if let Ok(c) = jwt::decode(&text) {
                // Only a token signed by `iss` decodes; the fuzzer cannot forge one.
                assert!(nkeys::KeyPair::from_public_key(&c.iss).is_ok());
            }
            let _ = jwt::parse_decorated(&text);
        }
        1 => {
            let t = trust(json!({}), None);
            let claims = user_claims(&text);
            try_login(&t, sign(&claims, &k.acc));
        }
        2 => {
            let (claims, template) = text.split_once('\0').unwrap_or((&text, "{}"));
            let template = serde_json::from_str(template).unwrap_or(json!({}));
            let t = trust(template, None);
            let mut claims = user_claims(claims);
            if !claims["nats"].is_object() {
                claims["nats"] = json!({"type": "user", "version": 2});
            }
            claims["nats"]["issuer_account"] = k.acc.public_key().into();
            try_login(&t, sign(&claims, &k.scoped));
        }
        _ => {
            let extra = serde_json::from_str::<Value>(&text).ok();
            let t = trust(json!({}), extra);
            let _ = t.imports(1_700_000_000);
            let claims = json!({"sub": k.user.public_key(),
                "nats": {"type": "user", "version": 2, "subs": -1, "payload": -1}});
            try_login(&t, sign(&claims, &k.acc));
        }
    }
});
