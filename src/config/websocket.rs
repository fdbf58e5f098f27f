//! The `websocket {}` (alias `ws`) section as nats-server 2.15 reads it.
//!
//! Field names, value forms and error texts follow the reference (`nats-server -t`):
//! an unknown field is `unknown field "x"`, a wrong type the Go interface conversion
//! text, a bad duration Go's `time: invalid duration`. `username_cookie` and
//! `password_cookie` are unknown to 2.15.1, so they are refused here too.

use std::sync::Arc;
use std::time::Duration;

use super::file::{parse_go_duration, render, Report};
use super::value::{Entry, Value};

/// What `websocket {}` configures.
#[derive(Clone, Debug, Default)]
pub struct WebsocketOpts {
    /// Listen host (`0.0.0.0` unless set, as nats-server).
    pub host: String,
    /// Listen port (-1 = any free port).
    pub port: i32,
    /// `advertise`: the URL shown in `ws_connect_urls`.
    pub advertise: Option<String>,
    /// `no_tls: true`: plain ws:// allowed.
    pub no_tls: bool,
    /// `tls {}`: wss://.
    pub tls: Option<Arc<crate::tls::TlsConfig>>,
    /// `compression`: offer permessage-deflate.
    pub compression: bool,
    /// `same_origin`: the Origin must match the request's Host.
    pub same_origin: bool,
    /// `allowed_origins`: Origins allowed (scheme://host[:port]).
    pub allowed_origins: Vec<String>,
    /// `handshake_timeout`; zero = none.
    pub handshake_timeout: Duration,
    /// `jwt_cookie`: the cookie carrying a user JWT.
    pub jwt_cookie: Option<String>,
    /// `token_cookie`: the cookie carrying a token.
    pub token_cookie: Option<String>,
    /// `authorization { user, password, token, timeout }` for websocket clients only.
    pub auth: WsAuth,
    /// `no_auth_user` for websocket clients.
    pub no_auth_user: Option<String>,
}

/// The websocket listener's own single-user or token authorization.
#[derive(Clone, Debug, Default)]
pub struct WsAuth {
    /// `user`.
    pub user: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `token`.
    pub token: Option<String>,
    /// `timeout` (seconds, float allowed).
    pub timeout: Option<Duration>,
}

impl WsAuth {
    /// True when the section overrides the server's authorization.
    pub fn any(&self) -> bool {
        self.user.is_some() || self.token.is_some()
    }
}

fn string(v: &Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| v.conversion_error("string"))
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| v.conversion_error("bool"))
}

fn int(v: &Value) -> Result<i64, String> {
    v.as_int().ok_or_else(|| v.conversion_error("int64"))
}

/// Parses the section; errors go to `r` at the offending key, as nats-server reports them.
pub fn parse_entry(e: &Entry, r: &mut Report) -> Option<WebsocketOpts> {
    let Value::Map(map) = &e.item.value else {
        r.errors.push(render(
            &e.key_pos,
            &e.item.value.conversion_error("map[string]interface {}"),
        ));
        return None;
    };
    let mut o = WebsocketOpts {
        host: "0.0.0.0".into(),
        ..WebsocketOpts::default()
    };
    let mut failed = false;
    for entry in map.entries() {
        let key = entry.key.to_ascii_lowercase();
        let v = &entry.item.value;
        let res: Result<(), String> = (|| {
            match key.as_str() {
                "listen" => {
                    let s = string(v)?;
                    let (h, p) = s
                        .rsplit_once(':')
                        .ok_or_else(|| format!("could not parse address string \"{s}\""))?;
                    o.port = p
                        .parse()
                        .map_err(|_| format!("could not parse port \"{p}\""))?;
                    let h = h.trim_start_matches('[').trim_end_matches(']');
                    if !h.is_empty() {
                        o.host = h.to_string();
                    }
                }
                "port" => o.port = int(v)? as i32,
                "host" | "net" => o.host = string(v)?,
                "advertise" => o.advertise = Some(string(v)?),
                "no_tls" => o.no_tls = boolean(v)?,
                "tls" => {
                    o.tls = crate::tls::parse_entry(entry, r).map(Arc::new);
                }
                "compression" => o.compression = boolean(v)?,
                "same_origin" => o.same_origin = boolean(v)?,
                "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin"
                | "origins" | "origin" => match v {
                    Value::String(s) => o.allowed_origins = vec![s.clone()],
                    Value::Array(items) => {
                        o.allowed_origins = items
                            .iter()
                            .map(|i| string(&i.value))
                            .collect::<Result<_, _>>()?;
                    }
                    other => return Err(other.conversion_error("string")),
                },
                "handshake_timeout" => {
                    o.handshake_timeout = match v {
                        Value::String(s) => Duration::from_nanos(
                            parse_go_duration(s)?.clamp(0, u64::MAX as i128) as u64,
                        ),
                        // An integer is seconds, as nats-server reads it.
                        Value::Int(n) => Duration::from_secs((*n).max(0) as u64),
                        other => return Err(other.conversion_error("string")),
                    }
                }
                "jwt_cookie" => o.jwt_cookie = Some(string(v)?),
                "token_cookie" => o.token_cookie = Some(string(v)?),
                "no_auth_user" => o.no_auth_user = Some(string(v)?),
                "authorization" | "authentication" => parse_auth(entry, &mut o.auth, r),
                _ => {
                    if entry.used_as_variable {
                        return Ok(());
                    }
                    return Err(format!("unknown field \"{}\"", entry.key));
                }
            }
            Ok(())
        })();
        if let Err(msg) = res {
            r.errors.push(render(&entry.key_pos, &msg));
            failed = true;
        }
    }
    (!failed).then_some(o)
}

fn parse_auth(e: &Entry, a: &mut WsAuth, r: &mut Report) {
    let Value::Map(map) = &e.item.value else {
        r.errors.push(render(
            &e.key_pos,
            &e.item.value.conversion_error("map[string]interface {}"),
        ));
        return;
    };
    for entry in map.entries() {
        let v = &entry.item.value;
        let res = match entry.key.to_ascii_lowercase().as_str() {
            "user" | "username" => string(v).map(|s| a.user = Some(s)),
            "pass" | "password" => string(v).map(|s| a.password = Some(s)),
            "token" => string(v).map(|s| a.token = Some(s)),
            "timeout" => match v {
                Value::Int(n) => {
                    a.timeout = Some(Duration::from_secs((*n).max(0) as u64));
                    Ok(())
                }
                Value::Float(f) => {
                    a.timeout = Some(Duration::from_secs_f64(f.max(0.0)));
                    Ok(())
                }
                other => Err(other.conversion_error("float64")),
            },
            _ => Err(format!("unknown field \"{}\"", entry.key)),
        };
        if let Err(msg) = res {
            r.errors.push(render(&entry.key_pos, &msg));
        }
    }
}
