//! TLS settings: a `tls {}` config block (and the `--tls*` flags) parsed into rustls
//! configurations, with nats-server's option names, checks and error texts
//! (`file:line:col: message`, so `-t` reports bad certificate files). The client,
//! websocket and leaf node ports serve TLS ([`Side::Serve`]); routes both serve and
//! dial it, always with mutual verification as nats-server forces for clusters
//! ([`Side::Route`]); leaf node remotes dial it ([`Side::Dial`]).
//!
//! The handshakes themselves live in `net/stream.rs`; the identity read from a
//! peer certificate for `verify_and_map` in [`identity`].

pub mod identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

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
    /// Routes only: the dialing side, presenting the same certificate.
    pub dial: Option<DialTls>,
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

impl PartialEq for TlsConfig {
    fn eq(&self, o: &Self) -> bool {
        (
            &self.cert_file,
            &self.key_file,
            &self.ca_file,
            self.verify,
            self.map,
            self.timeout,
            self.handshake_first,
            self.first_fallback,
            self.fingerprint,
        ) == (
            &o.cert_file,
            &o.key_file,
            &o.ca_file,
            o.verify,
            o.map,
            o.timeout,
            o.handshake_first,
            o.first_fallback,
            o.fingerprint,
        ) && self.dial == o.dial
    }
}

impl Eq for TlsConfig {}

/// The dialing side of TLS (routes, leaf node remotes): whom to trust and what
/// certificate, if any, to present.
#[derive(Clone)]
pub struct DialTls {
    /// The rustls client configuration.
    pub config: Arc<ClientConfig>,
    /// Handshake timeout.
    pub timeout: Duration,
    /// TLS before the peer's INFO (`handshake_first`, leaf remotes).
    pub handshake_first: bool,
    /// The server's certificate is not checked (`insecure`).
    pub insecure: bool,
    /// Digest of what the configuration was built from (see [`TlsConfig`]).
    pub fingerprint: u64,
}

impl std::fmt::Debug for DialTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialTls")
            .field("timeout", &self.timeout)
            .field("handshake_first", &self.handshake_first)
            .field("insecure", &self.insecure)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PartialEq for DialTls {
    fn eq(&self, o: &Self) -> bool {
        (
            self.timeout,
            self.handshake_first,
            self.insecure,
            self.fingerprint,
        ) == (o.timeout, o.handshake_first, o.insecure, o.fingerprint)
    }
}

impl Eq for DialTls {}

/// What a `tls {}` block is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// A port that accepts TLS: client, websocket, leaf node.
    Serve,
    /// The cluster port: serves and dials, client certificates always verified.
    Route,
    /// A leaf node remote: dials only; the certificate is optional.
    Dial,
}

/// Where system trust roots live on the common Linux distributions: a dialing side
/// without `ca_file` trusts these, as Go's `x509.SystemCertPool` does.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// `insecure: true`: any server certificate is accepted (its signature on the
/// handshake is still checked), as Go's `InsecureSkipVerify`.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
    /// Dialing: do not check the server's certificate.
    insecure: bool,
}

/// A certificate file's and a key file's contents.
type PemPair = (Vec<u8>, Vec<u8>);

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
    /// Digest of the inputs (see [`TlsConfig::fingerprint`]).
    fn fingerprint(&self, cert_pem: &[u8], key_pem: &[u8]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        cert_pem.hash(&mut h);
        key_pem.hash(&mut h);
        self.ca_file
            .as_ref()
            .map(|ca| std::fs::read(ca).unwrap_or_default())
            .hash(&mut h);
        (
            self.verify,
            self.min_tls13,
            &self.ciphers,
            &self.curves,
            self.insecure,
        )
            .hash(&mut h);
        h.finish()
    }

    /// The ring provider cut to the configured ciphers and curves.
    fn provider(&self) -> Arc<CryptoProvider> {
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
        Arc::new(provider)
    }

    fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        if self.min_tls13 {
            &TLS13_ONLY
        } else {
            &BOTH
        }
    }

    /// The certificate and key files' contents, when both are configured.
    fn read_pair(&self) -> Result<Option<PemPair>, BuildError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let cert_pem = read_file(cert).map_err(BuildError::Pair)?;
        let key_pem = read_file(key).map_err(BuildError::Pair)?;
        Ok(Some((cert_pem, key_pem)))
    }

    /// Serves TLS (client, websocket and leaf node ports).
    fn build(self) -> Result<TlsConfig, BuildError> {
        let (cert_pem, key_pem) = self.read_pair()?.unwrap_or_default();
        let fingerprint = self.fingerprint(&cert_pem, &key_pem);
        let (certs, key) = parse_pair(&cert_pem, &key_pem)?;
        let provider = self.provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions())
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
            cert_file: self.cert_file.unwrap_or_default(),
            key_file: self.key_file.unwrap_or_default(),
            ca_file: self.ca_file,
            verify: self.verify,
            map: self.map,
            timeout: self.timeout,
            handshake_first: self.handshake_first,
            first_fallback: self.first_fallback,
            server: Arc::new(server),
            dial: None,
            fingerprint,
        })
    }

    /// The cluster port: serves with client certificates required (nats-server
    /// forces that for routes) and dials with the same certificate.
    fn build_route(mut self) -> Result<TlsConfig, BuildError> {
        self.verify = true;
        let dial = self.build_dial()?;
        let mut t = self.build()?;
        t.dial = Some(dial);
        Ok(t)
    }

    /// Dials TLS: the server verified against `ca_file` (or the system roots), the
    /// certificate, when configured, presented to it.
    fn build_dial(&self) -> Result<DialTls, BuildError> {
        let pair = self.read_pair()?;
        let fingerprint = {
            let (c, k) = pair.as_ref().map_or((&[][..], &[][..]), |(c, k)| (c, k));
            self.fingerprint(c, k)
        };
        let provider = self.provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions())
            .map_err(|e| BuildError::Other(format!("error parsing tls config: {e}")))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        } else {
            let roots = match &self.ca_file {
                Some(ca) => load_roots(ca).map_err(BuildError::Other)?,
                None => system_roots().map_err(BuildError::Other)?,
            };
            builder.with_root_certificates(roots)
        };
        let config = match &pair {
            Some((cert_pem, key_pem)) => {
                let (certs, key) = parse_pair(cert_pem, key_pem)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| BuildError::Pair(pair_error(&e)))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(DialTls {
            config: Arc::new(config),
            timeout: self.timeout,
            handshake_first: self.handshake_first,
            insecure: self.insecure,
            fingerprint,
        })
    }
}

/// The certificate chain and private key of PEM files.
fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), BuildError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(BuildError::Pair(
            "tls: failed to find any PEM data in certificate input".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| BuildError::Pair("tls: failed to find any PEM data in key input".into()))?;
    Ok((certs, key))
}

/// The system's trust roots (the first bundle of [`SYSTEM_ROOTS`] that exists).
fn system_roots() -> Result<RootCertStore, String> {
    for path in SYSTEM_ROOTS {
        let Ok(pem) = std::fs::read(path) else {
            continue;
        };
        let mut roots = RootCertStore::empty();
        // A bundle may hold certificates webpki cannot use; the rest still count.
        roots
            .add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if !roots.is_empty() {
            return Ok(roots);
        }
    }
    Err("natrium found no system trust roots: set 'ca_file' (or 'insecure')".into())
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

/// Parses a port's `tls` entry onto a [`TlsConfig`], reporting errors and
/// warnings into `r` with nats-server's texts and positions. None on error.
pub fn parse_entry(e: &Entry, r: &mut Report) -> Option<TlsConfig> {
    parse_entry_for(e, r, Side::Serve)
}

/// Parses a `tls` entry that serves TLS ([`Side::Serve`] or [`Side::Route`]).
pub fn parse_entry_for(e: &Entry, r: &mut Report, side: Side) -> Option<TlsConfig> {
    let s = parse_settings(e, r, side)?;
    let built = match side {
        Side::Route => s.build_route(),
        _ => s.build(),
    };
    match built {
        Ok(t) => Some(t),
        Err(msg) => {
            r.errors.push(render(&e.key_pos, &msg.to_string()));
            None
        }
    }
}

/// Dialing TLS without a `tls {}` block (a `tls://` URL, or a hub whose INFO
/// requires TLS): the system roots, no certificate, the default timeout.
pub fn default_dial() -> Result<DialTls, String> {
    let s = Settings {
        timeout: DEFAULT_TIMEOUT,
        ..Settings::default()
    };
    s.build_dial().map_err(|e| e.to_string())
}

/// Parses a leaf node remote's `tls` entry (dialing only).
pub fn parse_dial_entry(e: &Entry, r: &mut Report) -> Option<DialTls> {
    let s = parse_settings(e, r, Side::Dial)?;
    match s.build_dial() {
        Ok(t) => Some(t),
        Err(msg) => {
            r.errors.push(render(&e.key_pos, &msg.to_string()));
            None
        }
    }
}

/// Reads the keys of a `tls` entry and checks them together.
fn parse_settings(e: &Entry, r: &mut Report, side: Side) -> Option<Settings> {
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
            "insecure" if side != Side::Serve => match v.as_bool() {
                Some(b) => s.insecure = b,
                None => fail(
                    r,
                    "error parsing tls config, expected 'insecure' to be a boolean".into(),
                ),
            },
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
        (None, None) if side != Side::Dial => {
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
    if side == Side::Route {
        s.verify = true;
    }
    if s.verify && s.ca_file.is_none() {
        r.refused.push(format!(
            "{}: tls verify without ca_file (system roots) is not supported by natrium",
            at(&e.key_pos)
        ));
        return None;
    }
    Some(s)
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
