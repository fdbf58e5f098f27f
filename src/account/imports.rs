//! Stream exports and imports: which subjects of one account another receives, and
//! how their subjects are rewritten on the way in.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::subject::{is_fwc, is_pwc, tokens};

/// A stream export: subjects of its account that others may import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamExport {
    /// Exported subject (may have wildcards).
    pub subject: String,
    /// Accounts allowed to import it; `None` = every account.
    pub accounts: Option<Vec<Arc<str>>>,
}

/// A stream import as configured: `into` receives what `from` publishes on `subject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamImport {
    /// Exporting account.
    pub from: Arc<str>,
    /// Imported subject in the exporting account (may have wildcards).
    pub subject: String,
    /// Importing account.
    pub into: Arc<str>,
    /// How subjects are rewritten for the importer.
    pub rewrite: Rewrite,
}

/// How an imported message's subject changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Delivered on the published subject.
    Keep,
    /// `prefix: p`: delivered on `p.<subject>`.
    Prefix(String),
    /// `to: t`: the wildcards of `t` take the tokens the import subject's wildcards
    /// matched, in order (a literal `t` replaces the subject).
    To(String),
}

impl Rewrite {
    /// The subject the importer sees for `subject`, published on a subject that
    /// `pattern` (the import subject) matches.
    pub fn apply(&self, pattern: &[u8], subject: &[u8]) -> Bytes {
        match self {
            Rewrite::Keep => Bytes::copy_from_slice(subject),
            Rewrite::Prefix(p) => {
                let mut out = BytesMut::with_capacity(p.len() + 1 + subject.len());
                out.put_slice(p.as_bytes());
                out.put_u8(b'.');
                out.put_slice(subject);
                out.freeze()
            }
            Rewrite::To(to) => {
                // What each wildcard of the pattern matched, in order; `>` takes the rest.
                let mut captured: Vec<&[u8]> = Vec::new();
                let mut rest: &[u8] = b"";
                let mut st = tokens(subject);
                let mut offset = 0;
                for pt in tokens(pattern) {
                    if is_fwc(pt) {
                        rest = &subject[offset.min(subject.len())..];
                        break;
                    }
                    let Some(t) = st.next() else { break };
                    offset += t.len() + 1;
                    if is_pwc(pt) {
                        captured.push(t);
                    }
                }
                let mut out = BytesMut::with_capacity(to.len() + subject.len());
                let mut next = captured.iter();
                for (i, t) in tokens(to.as_bytes()).enumerate() {
                    if i > 0 {
                        out.put_u8(b'.');
                    }
                    if is_pwc(t) {
                        out.put_slice(next.next().copied().unwrap_or(t));
                    } else if is_fwc(t) {
                        out.put_slice(if rest.is_empty() { t } else { rest });
                    } else {
                        out.put_slice(t);
                    }
                }
                out.freeze()
            }
        }
    }
}

/// Whether every subject `sub` matches is also matched by `sup` (both patterns).
pub fn is_subset(sub: &[u8], sup: &[u8]) -> bool {
    let mut a = tokens(sub);
    for p in tokens(sup) {
        if is_fwc(p) {
            return a.next().is_some();
        }
        let Some(t) = a.next() else { return false };
        if is_fwc(t) {
            return false;
        }
        if is_pwc(p) {
            continue;
        }
        if is_pwc(t) || t != p {
            return false;
        }
    }
    a.next().is_none()
}

/// Whether an export of `exported` to `accounts` (`None`: all) lets `into` import
/// `subject`.
fn admits(
    exported: &str,
    accounts: &Option<Vec<Arc<str>>>,
    subject: &str,
    into: &Arc<str>,
) -> bool {
    is_subset(subject.as_bytes(), exported.as_bytes())
        && accounts.as_ref().is_none_or(|list| list.contains(into))
}

/// Checks configured stream imports against the exports, as nats-server does at
/// start: the exporting account exists, exports a subject covering the import to the
/// importer, and no account imports the same subject from the same account twice.
/// `exports` lists each account's exports.
pub fn check_stream_imports(
    accounts: &[Arc<str>],
    exports: &[(Arc<str>, StreamExport)],
    imports: &[StreamImport],
) -> Result<(), String> {
    for (i, imp) in imports.iter().enumerate() {
        if !accounts.contains(&imp.from) {
            return Err(format!(
                "\"{}\" account not defined for stream import",
                imp.from
            ));
        }
        let dup = imports[..i]
            .iter()
            .any(|o| o.into == imp.into && o.from == imp.from && o.subject == imp.subject);
        if dup {
            return Err(format!(
                "Error adding stream import \"{}\": stream import already exists",
                imp.subject
            ));
        }
        let allowed = exports.iter().any(|(acc, e)| {
            *acc == imp.from && admits(&e.subject, &e.accounts, &imp.subject, &imp.into)
        });
        if !allowed {
            return Err(format!(
                "Error adding stream import \"{}\": stream import not authorized",
                imp.subject
            ));
        }
    }
    Ok(())
}

/// How many responses a service request may get (`response_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResponseType {
    /// One response; the reply mapping goes with it.
    #[default]
    Singleton,
    /// Any number until the threshold passes.
    Stream,
    /// Any number until the threshold passes (chunks of one response).
    Chunked,
}

impl ResponseType {
    /// nats-server's names, any case.
    pub fn parse(s: &str) -> Option<ResponseType> {
        match s.to_ascii_lowercase().as_str() {
            "singleton" => Some(ResponseType::Singleton),
            "stream" => Some(ResponseType::Stream),
            "chunked" => Some(ResponseType::Chunked),
            _ => None,
        }
    }
}

/// nats-server's default `response_threshold`: how long a reply mapping lives.
pub const DEFAULT_RESPONSE_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(120);

/// A service export: requests on `subject` may come from importing accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceExport {
    /// Exported subject (may have wildcards).
    pub subject: String,
    /// Accounts allowed to import it; `None` = every account.
    pub accounts: Option<Vec<Arc<str>>>,
    /// How many responses a request may get.
    pub response: ResponseType,
    /// How long a reply mapping lives.
    pub threshold: std::time::Duration,
}

/// A service import: requests the importer publishes on `local` go to `from` on
/// `subject`, and the responses come back on the requester's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceImport {
    /// Exporting account.
    pub from: Arc<str>,
    /// Subject in the exporting account.
    pub subject: String,
    /// Importing account.
    pub into: Arc<str>,
    /// Subject the importer publishes on (`to`, else `subject`).
    pub local: String,
    /// From the matching export.
    pub response: ResponseType,
    /// From the matching export.
    pub threshold: std::time::Duration,
}

/// Checks service imports against the exports as nats-server does at start, and
/// fills in each import's response type and threshold from its export.
pub fn check_service_imports(
    accounts: &[Arc<str>],
    exports: &[(Arc<str>, ServiceExport)],
    imports: &mut [ServiceImport],
) -> Result<(), String> {
    for imp in imports.iter_mut() {
        if !accounts.contains(&imp.from) {
            return Err(format!(
                "\"{}\" account not defined for service import",
                imp.from
            ));
        }
        let export = exports.iter().find(|(acc, e)| {
            *acc == imp.from && admits(&e.subject, &e.accounts, &imp.subject, &imp.into)
        });
        let Some((_, export)) = export else {
            return Err(format!(
                "Error adding service import \"{}\": service import not authorized",
                imp.subject
            ));
        };
        imp.response = export.response;
        imp.threshold = export.threshold;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_as_the_reference_delivers() {
        let keep = Rewrite::Keep.apply(b"foo.>", b"foo.x");
        assert_eq!(&keep[..], b"foo.x");
        let pre = Rewrite::Prefix("pre".into()).apply(b"bar", b"bar");
        assert_eq!(&pre[..], b"pre.bar");
        let to = Rewrite::To("mine.>".into()).apply(b"priv.>", b"priv.q.r");
        assert_eq!(&to[..], b"mine.q.r");
        let to = Rewrite::To("x.*.y".into()).apply(b"a.*", b"a.b");
        assert_eq!(&to[..], b"x.b.y");
        let lit = Rewrite::To("fixed".into()).apply(b"a.*", b"a.b");
        assert_eq!(&lit[..], b"fixed");
    }

    #[test]
    fn subsets() {
        assert!(is_subset(b"foo.x", b"foo.>"));
        assert!(is_subset(b"foo.>", b"foo.>"));
        assert!(is_subset(b"foo.*", b"foo.>"));
        assert!(is_subset(b"foo.*", b"foo.*"));
        assert!(!is_subset(b"foo.>", b"foo.*"));
        assert!(!is_subset(b"foo", b"foo.>"));
        assert!(!is_subset(b"foo.*", b"foo.x"));
        assert!(is_subset(b"a.b.c", b"a.*.c"));
        assert!(!is_subset(b"a.b", b"a.b.c"));
    }

    #[test]
    fn import_checks_use_the_reference_texts() {
        let a: Arc<str> = Arc::from("A");
        let b: Arc<str> = Arc::from("B");
        let accounts = vec![a.clone(), b.clone()];
        let exports = vec![(
            a.clone(),
            StreamExport {
                subject: "priv.>".into(),
                accounts: Some(vec![Arc::from("C")]),
            },
        )];
        let imp = |from: &Arc<str>, s: &str| StreamImport {
            from: from.clone(),
            subject: s.into(),
            into: b.clone(),
            rewrite: Rewrite::Keep,
        };
        assert_eq!(
            check_stream_imports(&accounts, &exports, &[imp(&a, "priv.>")]).unwrap_err(),
            "Error adding stream import \"priv.>\": stream import not authorized"
        );
        let z: Arc<str> = Arc::from("Z");
        assert_eq!(
            check_stream_imports(&accounts, &exports, &[imp(&z, "x")]).unwrap_err(),
            "\"Z\" account not defined for stream import"
        );
        let open = vec![(
            a.clone(),
            StreamExport {
                subject: "foo.>".into(),
                accounts: None,
            },
        )];
        assert!(check_stream_imports(&accounts, &open, &[imp(&a, "foo.x")]).is_ok());
        assert_eq!(
            check_stream_imports(&accounts, &open, &[imp(&a, "foo.x"), imp(&a, "foo.x")])
                .unwrap_err(),
            "Error adding stream import \"foo.x\": stream import already exists"
        );
    }
}
