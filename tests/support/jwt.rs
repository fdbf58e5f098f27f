//! Making NATS JWTs for operator-mode tests, as `nsc` would: claims signed with
//! the issuer's nkey, and `.creds` files.

use data_encoding::BASE64URL_NOPAD;
use nkeys::KeyPair;
use serde_json::{json, Value};

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `claims` (with `sub`, `nats` ...) by `issuer`: `iss`, `iat` and `jti`
/// are filled in unless given.
pub fn encode(mut claims: Value, issuer: &KeyPair) -> String {
    let obj = claims.as_object_mut().expect("claims object");
    obj.insert("iss".into(), issuer.public_key().into());
    obj.entry("iat").or_insert(now().into());
    obj.entry("jti")
        .or_insert(format!("T{}", rand_suffix()).into());
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let sig = issuer.sign(format!("{header}.{body}").as_bytes()).unwrap();
    format!("{header}.{body}.{}", BASE64URL_NOPAD.encode(&sig))
}

fn rand_suffix() -> String {
    KeyPair::new_user().public_key()[1..20].to_string()
}

/// Unlimited limits, as `nsc` writes them (a JWT without limits allows nothing).
pub fn unlimited() -> Value {
    json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
           "wildcards": true, "conn": -1, "leaf": -1})
}

/// An operator JWT for `op` (self-signed) with `nats` fields merged in.
pub fn operator(op: &KeyPair, name: &str, extra: Value) -> String {
    let mut nats = json!({"type": "operator", "version": 2});
    merge(&mut nats, extra);
    encode(
        json!({"sub": op.public_key(), "name": name, "nats": nats}),
        op,
    )
}

/// An account JWT for `acc` issued by `by`, unlimited unless `extra` says more.
pub fn account(acc: &KeyPair, name: &str, by: &KeyPair, extra: Value) -> String {
    let mut nats = json!({"type": "account", "version": 2, "limits": unlimited()});
    merge(&mut nats, extra);
    encode(
        json!({"sub": acc.public_key(), "name": name, "nats": nats}),
        by,
    )
}

/// A user JWT for `user` issued by `by`, with unlimited subs/data/payload unless
/// `extra` says more (`null` values remove a field).
pub fn user(user: &KeyPair, name: &str, by: &KeyPair, extra: Value) -> String {
    let mut nats = json!({"type": "user", "version": 2, "pub": {}, "sub": {},
                          "subs": -1, "data": -1, "payload": -1});
    merge(&mut nats, extra);
    encode(
        json!({"sub": user.public_key(), "name": name, "nats": nats}),
        by,
    )
}

/// Sets the fields of `extra` on `into`; a `null` removes the field.
fn merge(into: &mut Value, extra: Value) {
    let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) else {
        return;
    };
    for (k, v) in extra {
        if v.is_null() {
            into.remove(&k);
        } else {
            into.insert(k, v);
        }
    }
}

/// A `.creds` file's text for a user JWT and its seed.
pub fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}
