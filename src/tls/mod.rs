//! TLS for the client port: the `tls {}` config block (and `--tls*` flags) parsed
//! into a rustls server configuration, with nats-server's option names, checks and
//! error texts (`file:line:col: message`, so `-t` reports bad certificate files).
//!
//! The handshake itself lives in `client/stream.rs`; the identity read from a
//! client certificate for `verify_and_map` in [`identity`].

pub mod identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::file::{parse_go_duration, render, Report};
use crate::config::value::{Entry, Value};

pub use identity::{Dn, PeerCert};

/// nats-server's default TLS handshake timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// `handshake_first: auto`: wait this long for a TLS client hello before sending INFO.
pub const DEFAULT_FIRST_FALLBACK: Duration = Duration::from_millis(50);

/// The client port's TLS settings, ready to serve.
#[derive(Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// Require and verify client certificates (`verify` or `verify_and_map`).
    pub verify: bool,
    /// Map the client certificate to a user (`verify_and_map`).
    pub map: bool,
    /// Handshake timeout (`timeout`, seconds or a duration).
    pub timeout: Duration,
    /// TLS before INFO (`handshake_first`).
    pub handshake_first: bool,
    /// With `handshake_first`: send INFO if the client said nothing for this long.
    pub first_fallback: Option<Duration>,
    /// The rustls configuration built from the above.
    pub server: Arc<ServerConfig>,
    /// Digest of what the rustls configuration was built from (certificate, key and
    /// CA file contents, verification, versions, ciphers, curves): a reload that
    /// changes it logs `Reloaded: tls = enabled`, as nats-server does when its
    /// `tls.Config` differs.
    pub fingerprint: u64,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .field("verify", &self.verify)
            .field("map", &self.map)
            .field("timeout", &self.timeout)
            .field("handshake_first", &self.handshake_first)
            .field("first_fallback", &self.first_fallback)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// TLS asked for on the command line (`--tls --tlscert --tlskey --tlscacert
/// --tlsverify`); these replace a config file's `tls {}` when any is given.
#[derive(Clone, Debug, Default)]
pub struct TlsFlags {
    pub tls: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
}

impl TlsFlags {
    /// Any TLS flag given.
    pub fn any(&self) -> bool {
        self.tls
            || self.verify
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.ca_file.is_some()
    }

    /// Builds the TLS configuration the flags describe (nats-server: `--tlsverify`
    /// and `--tlscert` imply `--tls`). None when no TLS flag was given.
    pub fn build(&self) -> Option<Result<TlsConfig, String>> {
        if !self.any() {
            return None;
        }
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Some(Err(
                "TLS Server certificate must be present and valid (--tlscert and --tlskey)".into(),
            ));
        };
        let mut s = Settings {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ca_file: self.ca_file.clone(),
            verify: self.verify,
            ..Settings::default()
        };
        s.timeout = DEFAULT_TIMEOUT;
        Some(s.build().map_err(|e| e.to_string()))
    }
}

/// The `tls {}` options as written, before the rustls config is built.
#[derive(Default)]
struct Settings {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    verify: bool,
    map: bool,
    timeout: Duration,
    handshake_first: bool,
    first_fallback: Option<Duration>,
    min_tls13: bool,
    /// TLS 1.2 cipher suites by rustls name; None = rustls's defaults.
    ciphers: Option<Vec<String>>,
    /// Key exchange groups by rustls name, in preference order; None = defaults.
    curves: Option<Vec<String>>,
}

/// Why building the TLS configuration failed (rendered like nats-server's).
#[derive(Debug)]
enum BuildError {
    /// The certificate/key pair (`error parsing X509 certificate/key pair: ...`).
    Pair(String),
    /// Anything else, printed as is.
    Other(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Pair(m) => write!(f, "error parsing X509 certificate/key pair: {m}"),
            BuildError::Other(m) => f.write_str(m),
        }
    }
}

/// Go's text for an I/O error on `path`: `open <path>: no such file or directory`.
fn open_error(path: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    };
    format!("open {}: {why}", path.display())
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| open_error(path, &e))
}

impl Settings {
    fn build(self) -> Result<TlsConfig, BuildError> {
        let cert_file = self.cert_file.clone().unwrap_or_default();
        let key_file = self.key_file.clone().unwrap_or_default();
        let cert_pem = read_file(&cert_file).map_err(BuildError::Pair)?;
        let key_pem = read_file(&key_file).map_err(BuildError::Pair)?;
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            cert_pem.hash(&mut h);
            key_pem.hash(&mut h);
            self.ca_file
                .as_ref()
                .map(|ca| std::fs::read(ca).unwrap_or_default())
                .hash(&mut h);
            (self.verify, self.min_tls13, &self.ciphers, &self.curves).hash(&mut h);
            h.finish()
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(BuildError::Pair(
                "tls: failed to find any PEM data in certificate input".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            BuildError::Pair("tls: failed to find any PEM data in key input".into())
        })?;

        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(names) = &self.ciphers {
            provider.cipher_suites.retain(|s| {
                let name = format!("{:?}", s.suite());
                name.starts_with("TLS13_") || names.contains(&name)
            });
        }
        if let Some(names) = &self.curves {
            let all = provider.kx_groups.clone();
            provider.kx_groups = names
                .iter()
                .filter_map(|n| all.iter().find(|g| format!("{:?}", g.name()) == *n))
                .copied()
                .collect();
            if provider.kx_groups.is_empty() {
                provider.kx_groups = all;
            }
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = if self.min_tls13 {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| BuildError::Other(format!("error parsing tls config: {e}")))?;
        let builder = if self.verify {
            let Some(ca) = &self.ca_file else {
                return Err(BuildError::Other(
                    "natrium needs 'ca_file' to verify client certificates (system roots are \
                     not used)"
                        .into(),
                ));
            };
            let roots = load_roots(ca).map_err(BuildError::Other)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| BuildError::Other(format!("error parsing tls config: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            if let Some(ca) = &self.ca_file {
                // nats-server reads it even without verify: report a bad file the same.
                load_roots(ca).map_err(BuildError::Other)?;
            }
            builder.with_no_client_auth()
        };
        let server = builder
            .with_single_cert(certs, key)
            .map_err(|e| BuildError::Pair(pair_error(&e)))?;
        Ok(TlsConfig {
            cert_file,
            key_file,
            ca_file: self.ca_file,
            verify: self.verify,
            map: self.map,
            timeout: self.timeout,
            handshake_first: self.handshake_first,
            first_fallback: self.first_fallback,
            server: Arc::new(server),
            fingerprint,
        })
    }
}

fn pair_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => "tls: private key does not match public key".into(),
        other => format!("tls: {other}"),
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = read_file(path)?;
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| "failed to parse root ca certificate".to_string())?;
        roots
            .add(cert)
            .map_err(|_| "failed to parse root ca certificate".to_string())?;
        n += 1;
    }
    if n == 0 {
        return Err("failed to parse root ca certificate".into());
    }
    Ok(roots)
}

/// Go cipher suite names nats-server knows, with the rustls suite each is (None:
/// known to nats-server, not offered by rustls) and whether Go calls it insecure.
const CIPHERS: &[(&str, Option<&str>, bool)] = &[
    ("TLS_RSA_WITH_RC4_128_SHA", None, true),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", None, true),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", None, true),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", None, true),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", None, true),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", None, true),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", None, true),
    ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", None, true),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", None, true),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", None, true),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", None, true),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", None, true),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None, false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None, false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None, false),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None, false),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        false,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        false,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        false,
    ),
    // TLS 1.3 suites are always on (Go ignores cipher_suites for TLS 1.3).
    (
        "TLS_AES_128_GCM_SHA256",
        Some("TLS13_AES_128_GCM_SHA256"),
        false,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        Some("TLS13_AES_256_GCM_SHA384"),
        false,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        Some("TLS13_CHACHA20_POLY1305_SHA256"),
        false,
    ),
];

/// Go curve names nats-server accepts, with the rustls group (None: not offered).
const CURVES: &[(&str, Option<&str>)] = &[
    ("X25519", Some("X25519")),
    ("CurveP256", Some("secp256r1")),
    ("CurveP384", Some("secp384r1")),
    ("CurveP521", None),
    ("X25519MLKEM768", None),
    ("SecP256r1MLKEM768", None),
    ("SecP384r1MLKEM1024", None),
];

/// rustls's name of a cipher suite the way nats-server logs it (Go's names).
pub fn go_suite_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// Keys of `tls {}` natrium accepts without acting on them (a warning is logged),
/// and keys it must refuse (ignoring them would weaken security).
const IGNORED_KEYS: &[&str] = &["connection_rate_limit", "ca_certs_match", "insecure"];
const REFUSED_KEYS: &[&str] = &[
    "pinned_certs",
    "ocsp_peer",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "cert_match_skip_invalid",
    "certs",
    "verify_cert_and_check_known_urls",
];

/// Parses the top-level `tls` entry onto a [`TlsConfig`], reporting errors and
/// warnings into `r` with nats-server's texts and positions. None on error.
pub fn parse_entry(e: &Entry, r: &mut Report) -> Option<TlsConfig> {
    let map = match &e.item.value {
        Value::Map(m) => m,
        other => {
            r.errors.push(render(
                &e.key_pos,
                &format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    other.go_type()
                ),
            ));
            return None;
        }
    };
    let mut s = Settings {
        timeout: DEFAULT_TIMEOUT,
        ..Settings::default()
    };
    let mut failed = false;
    let mut allow_insecure = false;
    let mut insecure_named: Vec<String> = Vec::new();
    for entry in map.entries() {
        let key = entry.key.to_ascii_lowercase();
        let v = &entry.item.value;
        let pos = &entry.key_pos;
        let mut fail = |r: &mut Report, msg: String| {
            err(r, pos, msg);
            failed = true;
        };
        match key.as_str() {
            "cert_file" | "key_file" | "ca_file" => {
                let Some(path) = v.as_str() else {
                    fail(
                        r,
                        format!("error parsing tls config, expected '{key}' to be filename"),
                    );
                    continue;
                };
                let path = Some(PathBuf::from(path));
                match key.as_str() {
                    "cert_file" => s.cert_file = path,
                    "key_file" => s.key_file = path,
                    _ => s.ca_file = path,
                }
            }
            "verify" | "verify_and_map" => {
                let Some(b) = v.as_bool() else {
                    fail(
                        r,
                        format!("error parsing tls config, expected '{key}' to be a boolean"),
                    );
                    continue;
                };
                if key == "verify" {
                    s.verify = s.verify || b;
                } else {
                    s.map = b;
                    s.verify = s.verify || b;
                }
            }
            "timeout" => match v {
                Value::Int(n) => s.timeout = Duration::from_secs((*n).max(0) as u64),
                Value::Float(f) => s.timeout = Duration::from_secs_f64(f.max(0.0)),
                Value::String(t) => match parse_go_duration(t) {
                    Ok(ns) => s.timeout = Duration::from_nanos(ns.max(0) as u64),
                    Err(e) => fail(r, format!("error parsing tls config, 'timeout' {e}")),
                },
                _ => fail(r, "error parsing tls config, 'timeout' wrong type".into()),
            },
            "handshake_first" | "first" | "immediate" => match v {
                Value::Bool(b) => s.handshake_first = *b,
                Value::String(t) => match t.to_ascii_lowercase().as_str() {
                    "true" | "on" => s.handshake_first = true,
                    "false" | "off" => s.handshake_first = false,
                    "auto" | "auto_fallback" => {
                        s.handshake_first = true;
                        s.first_fallback = Some(DEFAULT_FIRST_FALLBACK);
                    }
                    _ => match parse_go_duration(t) {
                        Ok(ns) => {
                            s.handshake_first = true;
                            s.first_fallback = Some(Duration::from_nanos(ns.max(0) as u64));
                        }
                        Err(_) => fail(
                            r,
                            format!("field \"{}\"'s value \"{t}\" is invalid", entry.key),
                        ),
                    },
                },
                other => fail(
                    r,
                    format!(
                        "field \"{}\" should be a boolean or a string, got {}",
                        entry.key,
                        other.go_type()
                    ),
                ),
            },
            "min_version" => {
                let Some(t) = v.as_str() else {
                    fail(
                        r,
                        "error parsing tls config, expected 'min_version' to be a string".into(),
                    );
                    continue;
                };
                match t {
                    "1.2" => s.min_tls13 = false,
                    "1.3" => s.min_tls13 = true,
                    "1.0" | "1.1" => fail(
                        r,
                        format!("error parsing tls config: unsupported TLS version: TLS {t}"),
                    ),
                    _ => fail(r, format!("error parsing tls config: unknown version: {t}")),
                }
            }
            "cipher_suites" => {
                let Some(items) = v.as_array() else {
                    fail(r, v.conversion_error("[]interface {}"));
                    continue;
                };
                let mut names = Vec::new();
                for it in items {
                    let name = it.value.as_str().unwrap_or_default();
                    match CIPHERS.iter().find(|(n, _, _)| *n == name) {
                        None => {
                            err(r, &item_pos(it), format!("unrecognized cipher {name}"));
                            failed = true;
                        }
                        Some((n, rustls_name, insecure)) => {
                            if *insecure {
                                insecure_named.push(n.to_string());
                            }
                            match rustls_name {
                                Some(rn) => names.push(rn.to_string()),
                                None => r.unsupported.push(format!(
                                    "{}: cipher suite {n} is not supported by natrium; \
                                     ignoring it",
                                    at(&it.pos)
                                )),
                            }
                        }
                    }
                }
                s.ciphers = Some(names);
            }
            "curve_preferences" => {
                let Some(items) = v.as_array() else {
                    fail(r, v.conversion_error("[]interface {}"));
                    continue;
                };
                let mut names = Vec::new();
                for it in items {
                    let name = it.value.as_str().unwrap_or_default();
                    match CURVES.iter().find(|(n, _)| *n == name) {
                        None => {
                            err(
                                r,
                                &item_pos(it),
                                format!("unrecognized curve preference {name}"),
                            );
                            failed = true;
                        }
                        Some((_, Some(rn))) => names.push(rn.to_string()),
                        Some((n, None)) => r.unsupported.push(format!(
                            "{}: curve preference {n} is not supported by natrium; ignoring it",
                            at(&it.pos)
                        )),
                    }
                }
                s.curves = Some(names);
            }
            "allow_insecure_cipher_suites" => allow_insecure = v.as_bool().unwrap_or(false),
            k if IGNORED_KEYS.contains(&k) => r.unsupported.push(format!(
                "{}: tls option \"{}\" is not supported by natrium yet; ignoring it",
                at(pos),
                entry.key
            )),
            k if REFUSED_KEYS.contains(&k) => r.refused.push(format!(
                "{}: tls option \"{}\" is not supported by natrium yet, and running without it \
                 would be unsafe",
                at(pos),
                entry.key
            )),
            _ => fail(
                r,
                format!("error parsing tls config, unknown field \"{}\"", entry.key),
            ),
        }
    }
    if failed {
        return None;
    }
    if !insecure_named.is_empty() && !allow_insecure {
        r.errors.push(render(
            &e.key_pos,
            &format!(
                "insecure cipher suites configured without 'allow_insecure_cipher_suites' \
                 option set: {}",
                insecure_named.join(", ")
            ),
        ));
        return None;
    }
    match (&s.cert_file, &s.key_file) {
        (Some(_), None) => {
            r.errors.push(render(
                &e.key_pos,
                "missing 'key_file' in TLS configuration",
            ));
            return None;
        }
        (None, Some(_)) => {
            r.errors.push(render(
                &e.key_pos,
                "missing 'cert_file' in TLS configuration",
            ));
            return None;
        }
        (None, None) => {
            // nats-server accepts this and then fails every handshake.
            r.refused.push(format!(
                "{}: \"tls\" without cert_file and key_file cannot serve TLS",
                at(&e.key_pos)
            ));
            return None;
        }
        _ => {}
    }
    if s.timeout.is_zero() {
        // nats-server: a zero (or unset) timeout means the default.
        s.timeout = DEFAULT_TIMEOUT;
    }
    if s.verify && s.ca_file.is_none() {
        r.refused.push(format!(
            "{}: tls verify without ca_file (system roots) is not supported by natrium",
            at(&e.key_pos)
        ));
        return None;
    }
    match s.build() {
        Ok(t) => Some(t),
        Err(msg) => {
            r.errors.push(render(&e.key_pos, &msg.to_string()));
            None
        }
    }
}

fn err(r: &mut Report, pos: &crate::config::value::Pos, msg: String) {
    r.errors.push(render(pos, &msg));
}

/// Where nats-server reports an array item: at its first character, inside the
/// quotes for a quoted string (the parser's position is the opening quote).
fn item_pos(it: &crate::config::value::Item) -> crate::config::value::Pos {
    let mut pos = it.pos.clone();
    let quoted = std::fs::read_to_string(&*pos.file).ok().and_then(|text| {
        let line = text.lines().nth(pos.line.checked_sub(1)? as usize)?;
        let c = line.chars().nth(pos.col.checked_sub(1)? as usize)?;
        Some(c == '"' || c == '\'')
    });
    if quoted == Some(true) {
        pos.col += 1;
    }
    pos
}

/// `file:line:col` of a position (nats-server's numbering).
fn at(pos: &crate::config::value::Pos) -> String {
    render(pos, "").trim_end_matches(": ").to_string()
}

/// Reads `allow_non_tls` (a bool, like nats-server).
pub fn parse_allow_non_tls(e: &Entry, r: &mut Report) -> Option<bool> {
    match e.item.value.as_bool() {
        Some(b) => Some(b),
        None => {
            r.errors
                .push(render(&e.key_pos, &e.item.value.conversion_error("bool")));
            None
        }
    }
}

/// `verify_and_map` for a client (nats-server: with `users` configured and no nkey
/// in CONNECT, the verified client certificate names the user; no password is
/// checked). Fails when the connection has no certificate identity or it names no
/// configured user.
pub fn map_identity(
    cfg: &crate::auth::config::AuthConfig,
    client: &crate::client::Client,
) -> Result<crate::auth::Identity, crate::auth::Failure> {
    let tls = client.tls.borrow();
    let peer = tls.as_ref().and_then(|t| t.peer.as_ref());
    let Some(peer) = peer else {
        return Err(crate::auth::Failure::Anonymous);
    };
    let Some(name) = peer.map_user(cfg.users.keys().map(String::as_str)) else {
        crate::log_debug!(
            "cid:{} - User in cert [{:?}], not found",
            client.cid,
            peer.rdn_string
        );
        return Err(crate::auth::Failure::Anonymous);
    };
    crate::log_debug!(
        "cid:{} - Using certificate identity for auth [{name:?}]",
        client.cid
    );
    Ok(crate::auth::Identity::of(&cfg.users[name]))
}
