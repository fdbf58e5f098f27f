//! The CONNECT document. Field names match case-insensitively and unknown fields are
//! ignored, as Go's encoding/json does for nats-server; values merge onto the current
//! options, whose defaults turn verbose, pedantic and echo on.

use serde_json::Value;

/// What a client asked for in CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOpts {
    /// Send `+OK` after each accepted op.
    pub verbose: bool,
    /// Check publish subjects strictly.
    pub pedantic: bool,
    /// Deliver this connection's own messages to its own subscriptions.
    pub echo: bool,
    /// Client protocol level (0 or 1).
    pub protocol: i64,
    /// Client speaks HPUB/HMSG.
    pub headers: bool,
    /// Client wants 503 status messages for requests nobody answers.
    pub no_responders: bool,
    /// Client name, language and version (for monitoring).
    pub name: String,
    /// Client library language.
    pub lang: String,
    /// Client library version.
    pub version: String,
    /// Credentials, checked by the auth layer.
    pub user: Option<String>,
    /// Password for `user`.
    pub pass: Option<String>,
    /// Token credential.
    pub auth_token: Option<String>,
    /// Public nkey.
    pub nkey: Option<String>,
    /// Signature of the nonce.
    pub sig: Option<String>,
    /// User JWT.
    pub jwt: Option<String>,
    /// A legacy `account` or `new_account` field was present.
    pub legacy_account: bool,
}

impl Default for ConnectOpts {
    fn default() -> Self {
        ConnectOpts {
            verbose: true,
            pedantic: true,
            echo: true,
            protocol: 0,
            headers: false,
            no_responders: false,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
            jwt: None,
            legacy_account: false,
        }
    }
}

/// Why CONNECT was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// Not JSON, or a field of the wrong type: the server closes without `-ERR`.
    Json,
}

fn want_bool(v: &Value, dst: &mut bool) -> Result<(), ConnectError> {
    match v {
        Value::Bool(b) => *dst = *b,
        Value::Null => {}
        _ => return Err(ConnectError::Json),
    }
    Ok(())
}

fn want_string(v: &Value, dst: &mut String) -> Result<(), ConnectError> {
    match v {
        Value::String(s) => *dst = s.clone(),
        Value::Null => {}
        _ => return Err(ConnectError::Json),
    }
    Ok(())
}

fn want_opt_string(v: &Value, dst: &mut Option<String>) -> Result<(), ConnectError> {
    match v {
        Value::String(s) => *dst = Some(s.clone()),
        Value::Null => {}
        _ => return Err(ConnectError::Json),
    }
    Ok(())
}

impl ConnectOpts {
    /// Merges a CONNECT argument onto these options.
    pub fn merge(&mut self, json: &[u8]) -> Result<(), ConnectError> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| ConnectError::Json)?;
        let map = match doc {
            Value::Object(map) => map,
            // Go leaves the target untouched when unmarshalling null.
            Value::Null => return Ok(()),
            _ => return Err(ConnectError::Json),
        };
        for (key, v) in &map {
            match key.to_ascii_lowercase().as_str() {
                "verbose" => want_bool(v, &mut self.verbose)?,
                "pedantic" => want_bool(v, &mut self.pedantic)?,
                "echo" => want_bool(v, &mut self.echo)?,
                "headers" => want_bool(v, &mut self.headers)?,
                "no_responders" => want_bool(v, &mut self.no_responders)?,
                "protocol" => match v {
                    Value::Number(n) => {
                        self.protocol = n.as_i64().ok_or(ConnectError::Json)?;
                    }
                    Value::Null => {}
                    _ => return Err(ConnectError::Json),
                },
                "name" => want_string(v, &mut self.name)?,
                "lang" => want_string(v, &mut self.lang)?,
                "version" => want_string(v, &mut self.version)?,
                "user" => want_opt_string(v, &mut self.user)?,
                "pass" => want_opt_string(v, &mut self.pass)?,
                "auth_token" => want_opt_string(v, &mut self.auth_token)?,
                "nkey" => want_opt_string(v, &mut self.nkey)?,
                "sig" => want_opt_string(v, &mut self.sig)?,
                "jwt" => want_opt_string(v, &mut self.jwt)?,
                "account" => {
                    let mut s = String::new();
                    want_string(v, &mut s)?;
                    self.legacy_account = true;
                }
                "new_account" => {
                    let mut b = false;
                    want_bool(v, &mut b)?;
                    self.legacy_account |= b;
                }
                "tls_required" => {
                    let mut b = false;
                    want_bool(v, &mut b)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_connect_keeps_verbose_and_pedantic_on() {
        let mut o = ConnectOpts::default();
        o.merge(b"{}").unwrap();
        assert!(o.verbose && o.pedantic && o.echo);
    }

    #[test]
    fn field_names_are_case_insensitive_and_merge() {
        let mut o = ConnectOpts::default();
        o.merge(br#"{"VERBOSE":false,"Protocol":1,"headers":true,"x":[1]}"#)
            .unwrap();
        assert!(!o.verbose && o.protocol == 1 && o.headers && o.pedantic);
        o.merge(br#"{"echo":false}"#).unwrap();
        assert!(!o.verbose && !o.echo && o.headers);
    }

    #[test]
    fn bad_json_and_types_are_refused() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"1",
            br#"{"verbose":"yes"}"#,
            br#"{"protocol":1.5}"#,
        ] {
            assert_eq!(
                ConnectOpts::default().merge(bad),
                Err(ConnectError::Json),
                "{bad:?}"
            );
        }
        assert!(ConnectOpts::default().merge(b"null").is_ok());
    }
}
