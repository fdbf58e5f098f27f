//! Subject mappings (`mappings { "orders.*": "orders.new.{{wildcard(1)}}" }` at the top
//! level for `$G`, or inside an account): a client's publish on a matching subject is
//! delivered on the mapped subject instead, to one of several weighted destinations.
//!
//! Destinations may use `$N` or `{{wildcard(N)}}` (the N-th `*` of the source),
//! `{{partition(P,N,...)}}` (the FNV-1a hash of those wildcard tokens modulo P, as
//! nats-server computes it), and a trailing `>` (the rest of the subject). Other
//! transform functions are refused when the configuration is read, not ignored.

use crate::subject::{is_fwc, is_pwc, is_valid_subject, matches_valid, tokens};

/// One piece of a destination subject.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// A token copied as written.
    Literal(Vec<u8>),
    /// The value of the source's N-th `*` (0-based here).
    Wildcard(usize),
    /// FNV-1a of the listed wildcards' values (concatenated), modulo `buckets`.
    Partition { buckets: u32, of: Vec<usize> },
    /// The tokens the source's trailing `>` matched.
    Rest,
}

/// A destination and its share of the messages.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Destination {
    /// As configured (monitoring shows it).
    text: String,
    pieces: Vec<Piece>,
    /// Percent (1..=100).
    weight: u8,
}

/// One mapping of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    source: Vec<u8>,
    /// Number of `*` in the source.
    wildcards: usize,
    destinations: Vec<Destination>,
}

/// What to choose a weighted destination with: a number below 100.
pub type Dice<'a> = &'a mut dyn FnMut() -> u32;

impl Mapping {
    /// A mapping of `source` to weighted `(destination, percent)` pairs; the weights
    /// may add up to less than 100 (the rest keeps its subject), not to more.
    pub fn new(source: &str, destinations: &[(String, u8)]) -> Result<Mapping, String> {
        let src = source.as_bytes();
        if !is_valid_subject(src) {
            return Err(format!("invalid mapping source subject {source:?}"));
        }
        let toks: Vec<&[u8]> = tokens(src).collect();
        let wildcards = toks.iter().filter(|t| is_pwc(t)).count();
        let rest = toks.last().is_some_and(|t| is_fwc(t));
        if destinations.is_empty() {
            return Err(format!("mapping {source:?} has no destination"));
        }
        let total: u32 = destinations.iter().map(|d| d.1 as u32).sum();
        if total > 100 {
            return Err(format!(
                "mapping {source:?}: destination weights add up to {total}%, more than 100%"
            ));
        }
        let mut out = Vec::with_capacity(destinations.len());
        for (dest, weight) in destinations {
            if *weight == 0 {
                continue;
            }
            let pieces = parse_destination(source, dest, wildcards, rest)?;
            out.push(Destination {
                text: dest.clone(),
                pieces,
                weight: *weight,
            });
        }
        Ok(Mapping {
            source: src.to_vec(),
            wildcards,
            destinations: out,
        })
    }

    /// The source pattern.
    pub fn source(&self) -> &[u8] {
        &self.source
    }

    /// The destinations as `/accountz` shows them: each with the running total of
    /// the weights up to it (nats-server's cumulative form).
    pub fn destinations(&self) -> Vec<(&str, u32)> {
        let mut total = 0u32;
        self.destinations
            .iter()
            .map(|d| {
                total += d.weight as u32;
                (d.text.as_str(), total)
            })
            .collect()
    }

    /// The mapped subject for `subject` (written into `out`), `false` when the
    /// mapping does not apply: the subject does not match, or the dice chose the
    /// share that keeps its subject.
    pub fn apply(&self, subject: &[u8], dice: Dice<'_>, out: &mut Vec<u8>) -> bool {
        if !matches_valid(&self.source, subject) {
            return false;
        }
        let dest = if self.destinations.len() == 1 && self.destinations[0].weight == 100 {
            &self.destinations[0]
        } else {
            let mut roll = dice() % 100;
            let mut chosen = None;
            for d in &self.destinations {
                if roll < d.weight as u32 {
                    chosen = Some(d);
                    break;
                }
                roll -= d.weight as u32;
            }
            match chosen {
                Some(d) => d,
                None => return false,
            }
        };
        // The values of the source's wildcards, and where its `>` starts.
        let mut values: Vec<&[u8]> = Vec::with_capacity(self.wildcards);
        let mut rest_at = subject.len();
        let mut offset = 0;
        let mut subj = tokens(subject);
        for pat in tokens(&self.source) {
            if is_fwc(pat) {
                rest_at = offset;
                break;
            }
            let Some(tok) = subj.next() else { break };
            if is_pwc(pat) {
                values.push(tok);
            }
            offset += tok.len() + 1;
        }
        out.clear();
        for (i, piece) in dest.pieces.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            match piece {
                Piece::Literal(t) => out.extend_from_slice(t),
                Piece::Wildcard(n) => out.extend_from_slice(values.get(*n).copied().unwrap_or(b"")),
                Piece::Partition { buckets, of } => {
                    let mut h = Fnv1a::new();
                    for n in of {
                        h.write(values.get(*n).copied().unwrap_or(b""));
                    }
                    let mut b = itoa::Buffer::new();
                    out.extend_from_slice(b.format(h.finish() % buckets).as_bytes());
                }
                Piece::Rest => out.extend_from_slice(&subject[rest_at.min(subject.len())..]),
            }
        }
        true
    }
}

/// The first of `mappings` that maps `subject`, into `out`.
pub fn map_subject(
    mappings: &[Mapping],
    subject: &[u8],
    dice: Dice<'_>,
    out: &mut Vec<u8>,
) -> bool {
    mappings.iter().any(|m| m.apply(subject, dice, out))
}

/// 32-bit FNV-1a, as Go's `hash/fnv` computes it.
struct Fnv1a(u32);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0x811c_9dc5)
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u32;
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
    fn finish(&self) -> u32 {
        self.0
    }
}

/// Parses a destination against its source's wildcards.
fn parse_destination(
    source: &str,
    dest: &str,
    wildcards: usize,
    rest: bool,
) -> Result<Vec<Piece>, String> {
    let bad = |why: String| format!("invalid mapping destination {dest:?} for {source:?}: {why}");
    if dest.is_empty() {
        return Err(bad("empty".into()));
    }
    let wildcard = |n: &str| -> Result<usize, String> {
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad wildcard index {n:?}")))?;
        if n == 0 || n > wildcards {
            return Err(bad(format!(
                "wildcard index {n} out of range (the source has {wildcards})"
            )));
        }
        Ok(n - 1)
    };
    let mut pieces = Vec::new();
    let toks: Vec<&str> = dest.split('.').collect();
    for (i, tok) in toks.iter().enumerate() {
        if tok.is_empty() {
            return Err(bad("empty token".into()));
        }
        if *tok == ">" {
            if i + 1 != toks.len() || !rest {
                return Err(bad(
                    "'>' only at the end, for a source that ends in '>'".into()
                ));
            }
            pieces.push(Piece::Rest);
        } else if *tok == "*" {
            return Err(bad("'*' is not allowed in a destination".into()));
        } else if let Some(n) = tok.strip_prefix('$') {
            pieces.push(Piece::Wildcard(wildcard(n)?));
        } else if let Some(inner) = tok.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
            let inner = inner.trim();
            let (name, args) = inner
                .split_once('(')
                .and_then(|(n, a)| a.strip_suffix(')').map(|a| (n.trim(), a)))
                .ok_or_else(|| bad(format!("bad function {inner:?}")))?;
            let args: Vec<&str> = args.split(',').map(str::trim).collect();
            match name.to_ascii_lowercase().as_str() {
                "wildcard" if args.len() == 1 => pieces.push(Piece::Wildcard(wildcard(args[0])?)),
                "partition" if args.len() >= 2 => {
                    let buckets: u32 = args[0]
                        .parse()
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or_else(|| bad(format!("bad partition count {:?}", args[0])))?;
                    let of = args[1..]
                        .iter()
                        .map(|a| wildcard(a))
                        .collect::<Result<Vec<_>, _>>()?;
                    pieces.push(Piece::Partition { buckets, of });
                }
                other => {
                    return Err(bad(format!(
                        "natrium does not implement the transform function {other:?} yet"
                    )))
                }
            }
        } else if tok.contains("{{") || tok.contains("}}") || !is_valid_subject(tok.as_bytes()) {
            return Err(bad(format!("bad token {tok:?}")));
        } else {
            pieces.push(Piece::Literal(tok.as_bytes().to_vec()));
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(m: &Mapping, s: &str) -> Option<String> {
        let mut out = Vec::new();
        let mut dice = || 0;
        m.apply(s.as_bytes(), &mut dice, &mut out)
            .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn transforms() {
        let m = Mapping::new("a.*.*", &[("b.$2.{{wildcard(1)}}".into(), 100)]).unwrap();
        assert_eq!(map(&m, "a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(map(&m, "a.x"), None);
        let m = Mapping::new("a.>", &[("b.>".into(), 100)]).unwrap();
        assert_eq!(map(&m, "a.x.y").as_deref(), Some("b.x.y"));
        let m = Mapping::new("a.*.>", &[("b.$1.>".into(), 100)]).unwrap();
        assert_eq!(map(&m, "a.x.y.z").as_deref(), Some("b.x.y.z"));
        let m = Mapping::new("foo", &[("bar".into(), 100)]).unwrap();
        assert_eq!(map(&m, "foo").as_deref(), Some("bar"));
        assert_eq!(map(&m, "foo.x"), None);
        let m = Mapping::new("p.*", &[("p.{{partition(10,1)}}.$1".into(), 100)]).unwrap();
        // FNV-1a("abc") = 0x1a47e90b = 440920331; % 10 = 1.
        assert_eq!(map(&m, "p.abc").as_deref(), Some("p.1.abc"));
    }

    #[test]
    fn weights() {
        let m = Mapping::new("w", &[("a".into(), 30), ("b".into(), 50)]).unwrap();
        let at = |roll: u32| {
            let mut out = Vec::new();
            let mut dice = move || roll;
            m.apply(b"w", &mut dice, &mut out)
                .then(|| String::from_utf8(out).unwrap())
        };
        assert_eq!(at(0).as_deref(), Some("a"));
        assert_eq!(at(29).as_deref(), Some("a"));
        assert_eq!(at(30).as_deref(), Some("b"));
        assert_eq!(at(79).as_deref(), Some("b"));
        assert_eq!(at(80), None);
        assert!(Mapping::new("w", &[("a".into(), 60), ("b".into(), 50)]).is_err());
    }

    #[test]
    fn bad_destinations() {
        for (src, dest) in [
            ("a.*", "b.$2"),
            ("a.*", "b.*"),
            ("a.*", "b.>"),
            ("a.>", "b.>.c"),
            ("a.*", "b.{{nope(1)}}"),
            ("a.*", "b.{{wildcard(0)}}"),
            ("a.*", "b.{{partition(0,1)}}"),
            ("a.*", "b..c"),
            ("a..b", "c"),
            (">", "a.x.y z"),
            ("a", "b\tc"),
        ] {
            assert!(
                Mapping::new(src, &[(dest.into(), 100)]).is_err(),
                "{src} -> {dest}"
            );
        }
    }
}
