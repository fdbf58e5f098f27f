//! The identity in a client certificate, for `verify_and_map`: the SANs and the
//! subject, in the forms nats-server matches user names against.
//!
//! nats-server (`checkClientTLSCertSubject`) tries, in order, and the first
//! candidate equal to a configured user name wins:
//!
//! 1. each email SAN (`alice@acme.io`),
//! 2. each DNS SAN (`bob.acme.io`),
//! 3. each URI SAN (`spiffe://acme/bob`),
//! 4. the subject as a distinguished name, compared with every user name that
//!    parses as a DN (`CN=bob,OU=eng,O=acme`): first an exact match, then a match
//!    with the RDNs in another order ([`Dn::equal`], [`Dn::rdns_match`]),
//! 5. Go's RDN string of the subject with `DC=` components appended
//!    (`CN=bob,O=acme,DC=example,DC=com`), when the subject has DCs,
//! 6. Go's RDN string of the subject (`CN=bob,OU=eng,O=acme,C=US`): only the
//!    standard attributes C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER,
//!    most specific first, values escaped as RFC 2253 says.
//!
//! [`PeerCert::map_user`] runs that whole sequence; [`PeerCert::identities`] lists
//! the plain-string candidates (1-3, 5, 6) in order. The certificate is parsed with
//! a small DER reader (only the fields above are read); a certificate it cannot
//! read yields no identities rather than an error (rustls already verified it).

/// A distinguished name: RDNs most specific first (RFC 2253 order), each a set of
/// (attribute type, value). Types are short names (`CN`, `DC`, ...) or dotted OIDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dn {
    pub rdns: Vec<Vec<(String, String)>>,
}

impl Dn {
    /// Same RDNs in the same order (types compared case-insensitively, values exactly).
    pub fn equal(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .zip(&other.rdns)
                .all(|(a, b)| rdn_equal(a, b))
    }

    /// Same RDNs in any order.
    pub fn rdns_match(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .all(|a| other.rdns.iter().any(|b| rdn_equal(a, b)))
    }

    /// Parses an LDAP DN string such as `CN=bob, OU=eng+UID=7,O=acme` (RFC 4514:
    /// `,` or `;` between RDNs, `+` inside one, backslash escapes, quoted values,
    /// `#hex` values). None when it is not a DN (e.g. `alice@acme.io`).
    pub fn parse(s: &str) -> Option<Dn> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        loop {
            // attribute type
            let start = i;
            while i < chars.len() && chars[i] != '=' {
                if matches!(chars[i], ',' | ';' | '+') {
                    return None;
                }
                i += 1;
            }
            if i >= chars.len() {
                return None;
            }
            let ty: String = chars[start..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            if ty.is_empty() {
                return None;
            }
            i += 1;
            // value
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let mut value = String::new();
            if i < chars.len() && chars[i] == '#' {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i].is_ascii_hexdigit() {
                    i += 1;
                }
                let hex: String = chars[start..i].iter().collect();
                if !hex.len().is_multiple_of(2) {
                    return None;
                }
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap_or(0))
                    .collect();
                // A BER-encoded string value: take its content when it is one.
                value = match read_tlv(&bytes) {
                    Some((tag, content, _)) => {
                        decode_string(tag, content).unwrap_or_else(|| hex.clone())
                    }
                    None => hex,
                };
            } else if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return None;
                }
                i += 1;
            } else {
                let mut bytes = Vec::new();
                let mut trailing_escaped = 0usize;
                while i < chars.len() && !matches!(chars[i], ',' | ';' | '+') {
                    if chars[i] == '\\' {
                        i += 1;
                        if i >= chars.len() {
                            return None;
                        }
                        if i + 1 < chars.len()
                            && chars[i].is_ascii_hexdigit()
                            && chars[i + 1].is_ascii_hexdigit()
                        {
                            let h: String = chars[i..i + 2].iter().collect();
                            bytes.push(u8::from_str_radix(&h, 16).ok()?);
                            i += 2;
                        } else {
                            let mut b = [0u8; 4];
                            bytes.extend_from_slice(chars[i].encode_utf8(&mut b).as_bytes());
                            i += 1;
                        }
                        trailing_escaped = bytes.len();
                        continue;
                    }
                    let mut b = [0u8; 4];
                    bytes.extend_from_slice(chars[i].encode_utf8(&mut b).as_bytes());
                    i += 1;
                }
                // Unescaped trailing spaces are not part of the value.
                while bytes.len() > trailing_escaped && bytes.last() == Some(&b' ') {
                    bytes.pop();
                }
                value = String::from_utf8(bytes).ok()?;
            }
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            rdn.push((ty, value));
            if i >= chars.len() {
                rdns.push(std::mem::take(&mut rdn));
                break;
            }
            match chars[i] {
                '+' => {}
                ',' | ';' => rdns.push(std::mem::take(&mut rdn)),
                _ => return None,
            }
            i += 1;
        }
        Some(Dn { rdns })
    }
}

fn rdn_equal(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let has_all = |x: &[(String, String)], y: &[(String, String)]| {
        x.iter().all(|(t, v)| {
            y.iter()
                .any(|(t2, v2)| t.eq_ignore_ascii_case(t2) && v == v2)
        })
    };
    a.len() == b.len() && has_all(a, b) && has_all(b, a)
}

/// What a verified client certificate says about its owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// Email SANs (rfc822Name).
    pub emails: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// URI SANs, as written in the certificate.
    pub uris: Vec<String>,
    /// The subject as a DN, most specific RDN first, every attribute kept.
    pub subject: Dn,
    /// Go's `pkix.Name.ToRDNSequence().String()` of the subject.
    pub rdn_string: String,
    /// `DC=a,DC=b` from the subject in certificate order; empty when none.
    pub dc_suffix: String,
    /// The plain-string candidates in nats-server's order (see the module docs).
    pub identities: Vec<String>,
}

impl PeerCert {
    /// Reads the identity of a DER certificate. None when it cannot be parsed.
    pub fn from_der(der: &[u8]) -> Option<PeerCert> {
        let (tag, cert, _) = read_tlv(der)?;
        if tag != 0x30 {
            return None;
        }
        let (tag, mut tbs, _) = read_tlv(cert)?;
        if tag != 0x30 {
            return None;
        }
        let mut next = || -> Option<(u8, &[u8])> {
            let (t, c, rest) = read_tlv(tbs)?;
            tbs = rest;
            Some((t, c))
        };
        let (mut t, _) = next()?;
        if t == 0xA0 {
            t = next()?.0; // serial number
        }
        if t != 0x02 {
            return None;
        }
        next()?; // signature algorithm
        next()?; // issuer
        next()?; // validity
        let (t, subject) = next()?;
        if t != 0x30 {
            return None;
        }
        next()?; // subject public key info
        let mut out = PeerCert::default();
        while let Some((t, c)) = next() {
            if t == 0xA3 {
                read_extensions(c, &mut out);
            }
        }
        let raw = parse_rdn_sequence(subject)?;
        out.subject = Dn {
            rdns: raw
                .iter()
                .rev()
                .map(|rdn| {
                    rdn.iter()
                        .rev()
                        .map(|a| (ldap_type_name(&a.oid), a.ldap_value()))
                        .collect()
                })
                .collect(),
        };
        out.rdn_string = go_rdn_string(&raw);
        out.dc_suffix = raw
            .iter()
            .flatten()
            .filter(|a| a.oid == OID_DC)
            .filter_map(|a| a.text.as_ref().map(|v| format!("DC={v}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut ids: Vec<String> = Vec::new();
        ids.extend(out.emails.iter().cloned());
        ids.extend(out.dns_names.iter().cloned());
        ids.extend(out.uris.iter().cloned());
        if !out.dc_suffix.is_empty() {
            ids.push(format!("{},{}", out.rdn_string, out.dc_suffix));
        }
        ids.push(out.rdn_string.clone());
        out.identities = ids;
        Some(out)
    }

    /// The configured user this certificate maps to, nats-server's way: SANs, then
    /// the subject DN against user names that parse as DNs (exact, then reordered),
    /// then the RDN strings. `users` are the candidate user names (already filtered
    /// by e.g. allowed connection types).
    pub fn map_user<'a, I>(&self, users: I) -> Option<&'a str>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let users: Vec<&'a str> = users.into_iter().collect();
        let exact = |id: &str| users.iter().copied().find(|u| *u == id);
        for id in self.emails.iter().chain(&self.dns_names).chain(&self.uris) {
            if let Some(u) = exact(id) {
                return Some(u);
            }
        }
        let parsed: Vec<(&'a str, Dn)> = users
            .iter()
            .filter_map(|u| Dn::parse(u).map(|d| (*u, d)))
            .collect();
        if let Some((u, _)) = parsed.iter().find(|(_, d)| d.equal(&self.subject)) {
            return Some(u);
        }
        if let Some((u, _)) = parsed.iter().find(|(_, d)| d.rdns_match(&self.subject)) {
            return Some(u);
        }
        if !self.dc_suffix.is_empty() {
            if let Some(u) = exact(&format!("{},{}", self.rdn_string, self.dc_suffix)) {
                return Some(u);
            }
        }
        exact(&self.rdn_string)
    }
}

// ----- DER ------------------------------------------------------------------

const OID_DC: &str = "0.9.2342.19200300.100.1.25";
const OID_SAN: &str = "2.5.29.17";

/// One tag-length-value: (tag, content, rest). Definite lengths only (DER).
fn read_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    if tag & 0x1F == 0x1F {
        return None; // multi-byte tags do not occur in the fields read here
    }
    let first = *data.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for k in 0..n {
            len = (len << 8) | *data.get(2 + k)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > data.len() {
        return None;
    }
    Some((tag, &data[hdr..end], &data[end..]))
}

fn oid_string(der: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for (k, b) in der.iter().enumerate() {
        v = (v << 7) | (b & 0x7F) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() && k < der.len() {
                let (a, b) = if v < 40 {
                    (0, v)
                } else if v < 80 {
                    (1, v - 40)
                } else {
                    (2, v - 80)
                };
                parts.push(a);
                parts.push(b);
            } else {
                parts.push(v);
            }
            v = 0;
        }
    }
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of an ASN.1 string value, as Go's `encoding/asn1` decodes it.
fn decode_string(tag: u8, c: &[u8]) -> Option<String> {
    match tag {
        0x0C | 0x13 | 0x16 | 0x12 => String::from_utf8(c.to_vec()).ok(),
        0x14 => Some(c.iter().map(|&b| b as char).collect()),
        0x1E => {
            if !c.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = c
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

struct Attr {
    oid: String,
    /// The value when it is a string type.
    text: Option<String>,
    /// The whole encoded value (for `#hex` forms).
    der: Vec<u8>,
}

impl Attr {
    fn ldap_value(&self) -> String {
        self.text.clone().unwrap_or_else(|| {
            let hex: String = self.der.iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        })
    }
}

fn parse_rdn_sequence(mut seq: &[u8]) -> Option<Vec<Vec<Attr>>> {
    let mut out = Vec::new();
    while !seq.is_empty() {
        let (tag, mut set, rest) = read_tlv(seq)?;
        seq = rest;
        if tag != 0x31 {
            return None;
        }
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (tag, atv, rest) = read_tlv(set)?;
            set = rest;
            if tag != 0x30 {
                return None;
            }
            let (tag, oid, rest) = read_tlv(atv)?;
            if tag != 0x06 {
                return None;
            }
            let (vtag, vc, _) = read_tlv(rest)?;
            rdn.push(Attr {
                oid: oid_string(oid),
                text: decode_string(vtag, vc),
                der: rest.to_vec(),
            });
        }
        out.push(rdn);
    }
    Some(out)
}

fn read_extensions(c: &[u8], out: &mut PeerCert) {
    let Some((0x30, mut exts, _)) = read_tlv(c) else {
        return;
    };
    while let Some((tag, ext, rest)) = read_tlv(exts) {
        exts = rest;
        if tag != 0x30 {
            return;
        }
        let Some((0x06, oid, mut rest)) = read_tlv(ext) else {
            continue;
        };
        if oid_string(oid) != OID_SAN {
            continue;
        }
        if let Some((0x01, _, r)) = read_tlv(rest) {
            rest = r; // critical flag
        }
        let Some((0x04, value, _)) = read_tlv(rest) else {
            continue;
        };
        let Some((0x30, mut names, _)) = read_tlv(value) else {
            continue;
        };
        while let Some((tag, name, rest)) = read_tlv(names) {
            names = rest;
            let text = String::from_utf8_lossy(name).into_owned();
            match tag {
                0x81 => out.emails.push(text),
                0x82 => out.dns_names.push(text),
                0x86 => out.uris.push(text),
                _ => {}
            }
        }
    }
}

// ----- Go's names -------------------------------------------------------------

/// Short names nats-server's DN code (internal/ldap) gives attribute types.
fn ldap_type_name(oid: &str) -> String {
    go_type_name(oid)
        .or(match oid {
            OID_DC => Some("DC"),
            _ => None,
        })
        .map_or_else(|| oid.to_string(), str::to_string)
}

/// Go's `pkix` attribute type names.
fn go_type_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.6" => "C",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.3" => "CN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.17" => "POSTALCODE",
        _ => return None,
    })
}

/// Go's `cert.Subject.ToRDNSequence().String()`: the standard attributes only,
/// grouped by type in Go's fixed order, printed most specific first.
fn go_rdn_string(raw: &[Vec<Attr>]) -> String {
    // pkix.Name fields: multi-valued ones collect every value; CN and SERIALNUMBER
    // keep the last.
    let order = [
        "2.5.4.6", "2.5.4.8", "2.5.4.7", "2.5.4.9", "2.5.4.17", "2.5.4.10", "2.5.4.11", "2.5.4.3",
        "2.5.4.5",
    ];
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for oid in order {
        let mut vals: Vec<String> = raw
            .iter()
            .flatten()
            .filter(|a| a.oid == oid)
            .filter_map(|a| a.text.clone())
            .collect();
        if matches!(oid, "2.5.4.3" | "2.5.4.5") {
            vals = vals.pop().filter(|v| !v.is_empty()).into_iter().collect();
        }
        if !vals.is_empty() {
            groups.push((go_type_name(oid).unwrap_or(oid), vals));
        }
    }
    groups
        .iter()
        .rev()
        .map(|(name, vals)| {
            vals.iter()
                .map(|v| format!("{name}={}", go_escape(v)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's RDN value escaping.
fn go_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.len().saturating_sub(1);
    for (k, c) in v.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == last,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_parse_and_match() {
        let a = Dn::parse("CN=bob, OU=eng,O=acme").unwrap();
        assert_eq!(a.rdns.len(), 3);
        assert_eq!(a.rdns[0], vec![("CN".into(), "bob".into())]);
        let b = Dn::parse("O=acme,OU=eng,cn=bob").unwrap();
        assert!(!a.equal(&b));
        assert!(a.rdns_match(&b));
        assert!(a.equal(&Dn::parse("cn=bob,ou=eng,o=acme").unwrap()));
        assert!(Dn::parse("alice@acme.io").is_none());
        let e = Dn::parse("CN=a\\,b+UID=7;O=x\\2Cy").unwrap();
        assert_eq!(
            e.rdns,
            vec![
                vec![("CN".into(), "a,b".into()), ("UID".into(), "7".into())],
                vec![("O".into(), "x,y".into())]
            ]
        );
    }

    #[test]
    fn go_escaping() {
        assert_eq!(go_escape(" a,b "), "\\ a\\,b\\ ");
        assert_eq!(go_escape("#x#"), "\\#x#");
    }
}
