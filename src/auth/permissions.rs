//! Per-user publish/subscribe permissions with nats-server's semantics, and the
//! per-connection checker that caches decisions per subject so that a client with
//! permissions pays one hash lookup per message in the steady state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::subject;

/// One allow/deny entry: a subject pattern, optionally with a queue (subscribe only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermEntry {
    /// Subject pattern (wildcards allowed).
    pub subject: String,
    /// Queue group pattern (`"foo q"` entries).
    pub queue: Option<String>,
}

impl PermEntry {
    /// Parses `subject` or `subject queue`.
    pub fn parse(s: &str, allow_queue: bool) -> Option<PermEntry> {
        if subject::is_valid_subject(s.as_bytes()) {
            return Some(PermEntry {
                subject: s.to_string(),
                queue: None,
            });
        }
        if !allow_queue {
            return None;
        }
        let mut it = s.split(' ').filter(|t| !t.is_empty());
        let (subj, queue) = (it.next()?, it.next()?);
        if it.next().is_some() || !subject::is_valid_subject(subj.as_bytes()) {
            return None;
        }
        Some(PermEntry {
            subject: subj.to_string(),
            queue: Some(queue.to_string()),
        })
    }
}

/// Allow and deny lists for one direction. `None` = no list (allow: everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectPerm {
    /// Only these (when present; an empty list allows nothing).
    pub allow: Option<Vec<PermEntry>>,
    /// Never these.
    pub deny: Option<Vec<PermEntry>>,
}

/// Dynamic reply permissions (`allow_responses`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponsePerm {
    /// Responses allowed per received request (0 = unlimited).
    pub max: i64,
    /// How long a reply subject stays publishable (zero = forever).
    pub expires: Duration,
}

impl Default for ResponsePerm {
    fn default() -> Self {
        ResponsePerm {
            max: 1,
            expires: Duration::from_secs(120),
        }
    }
}

/// A user's permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// What the user may publish to.
    pub publish: Option<SubjectPerm>,
    /// What the user may subscribe to.
    pub subscribe: Option<SubjectPerm>,
    /// Reply permissions for received requests.
    pub response: Option<ResponsePerm>,
}

/// Is `subject` (which may hold wildcards) a subset of the pattern `test`?
/// nats-server's `subjectIsSubsetMatch`.
pub fn is_subset_match(subject: &str, test: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let test: Vec<&str> = test.split('.').collect();
    for (i, t2) in test.iter().enumerate() {
        if i >= tokens.len() || t2.is_empty() {
            return false;
        }
        if *t2 == ">" {
            return true;
        }
        let t1 = tokens[i];
        if t1.is_empty() || t1 == ">" {
            return false;
        }
        if t1 == "*" {
            if *t2 != "*" {
                return false;
            }
            continue;
        }
        if *t2 != "*" && t1 != *t2 {
            return false;
        }
    }
    tokens.len() == test.len()
}

fn queue_matches(queue: &str, entries: &[&PermEntry]) -> bool {
    entries.iter().any(|e| {
        let q = e.queue.as_deref().unwrap_or("");
        queue == q || (!subject::is_literal(q.as_bytes()) && is_subset_match(queue, q))
    })
}

/// Matches the entries of a list against a subscription subject: (any plain entry
/// matched, the queue entries that matched). Wildcards in `subj` match literally
/// against the patterns, as in nats-server's sublist.
fn match_list<'a>(list: &'a [PermEntry], subj: &[u8]) -> (bool, Vec<&'a PermEntry>) {
    let mut plain = false;
    let mut queues = Vec::new();
    for e in list {
        if subject::matches_valid(e.subject.as_bytes(), subj) {
            if e.queue.is_some() {
                queues.push(e);
            } else {
                plain = true;
            }
        }
    }
    (plain, queues)
}

fn list_matches(list: &[PermEntry], subj: &[u8]) -> bool {
    list.iter()
        .any(|e| e.queue.is_none() && subject::matches_valid(e.subject.as_bytes(), subj))
}

impl Permissions {
    /// nats-server's `canSubscribe`.
    pub fn can_subscribe(&self, subj: &[u8], queue: Option<&[u8]>) -> bool {
        let Some(sp) = &self.subscribe else {
            return true;
        };
        let queue = queue.map(|q| String::from_utf8_lossy(q));
        let mut allowed = true;
        if let Some(allow) = &sp.allow {
            let (plain, queues) = match_list(allow, subj);
            allowed = plain;
            if let Some(q) = &queue {
                if !queues.is_empty() {
                    allowed = queue_matches(q, &queues);
                }
            }
        }
        if allowed {
            if let Some(deny) = &sp.deny {
                let (plain, queues) = match_list(deny, subj);
                allowed = !plain;
                if let Some(q) = &queue {
                    if !queues.is_empty() {
                        allowed = !queue_matches(q, &queues);
                    }
                }
            }
        }
        allowed
    }

    /// The publish decision without reply permissions.
    pub fn can_publish_static(&self, subj: &[u8]) -> bool {
        let Some(pp) = &self.publish else {
            return true;
        };
        let mut allowed = true;
        if let Some(allow) = &pp.allow {
            allowed = list_matches(allow, subj);
        }
        if allowed {
            if let Some(deny) = &pp.deny {
                allowed = !list_matches(deny, subj);
            }
        }
        allowed
    }

    /// Does a wildcard subscription on `subj` overlap a subscribe deny entry, so
    /// that deliveries must be filtered?
    pub fn sub_needs_deny_filter(&self, subj: &[u8]) -> bool {
        let Some(deny) = self.subscribe.as_ref().and_then(|s| s.deny.as_ref()) else {
            return false;
        };
        if subject::is_literal(subj) {
            return false;
        }
        let subj = String::from_utf8_lossy(subj);
        deny.iter()
            .any(|e| e.queue.is_none() && is_subset_match(&e.subject, &subj))
    }
}

/// Cached decisions are dropped when a cache grows past this (nats-server: 128).
const CACHE_MAX: usize = 128;
/// Reply permissions are pruned when this many accumulate (nats-server: 4096).
const REPLIES_MAX: usize = 4096;

struct Reply {
    at: Instant,
    sent: i64,
}

/// One connection's permissions and its caches. Lives on the connection's shard.
pub struct ClientPerms {
    /// The permissions in force.
    pub perms: std::sync::Arc<Permissions>,
    pub_cache: RefCell<HashMap<Bytes, bool>>,
    /// Subscribe deny filter applied at delivery (only once a wildcard subscription
    /// overlapping a deny entry exists).
    deny_filter: std::cell::Cell<bool>,
    deny_cache: RefCell<HashMap<Bytes, bool>>,
    replies: RefCell<HashMap<Bytes, Reply>>,
    last_prune: std::cell::Cell<Instant>,
}

impl ClientPerms {
    /// A checker with empty caches.
    pub fn new(perms: std::sync::Arc<Permissions>) -> ClientPerms {
        ClientPerms {
            perms,
            pub_cache: RefCell::new(HashMap::new()),
            deny_filter: std::cell::Cell::new(false),
            deny_cache: RefCell::new(HashMap::new()),
            replies: RefCell::new(HashMap::new()),
            last_prune: std::cell::Cell::new(Instant::now()),
        }
    }

    /// Whether deliveries need [`ClientPerms::on_deliver`].
    pub fn needs_delivery_hook(&self) -> bool {
        self.deny_filter.get() || self.perms.response.is_some()
    }

    /// May this client publish to `subj`? Cached per subject; reply permissions
    /// (never cached) are consulted and consumed when the static answer is no.
    pub fn can_publish(&self, subj: &[u8]) -> bool {
        let cached = self.pub_cache.borrow().get(subj).copied();
        let allowed = match cached {
            Some(a) => a,
            None => {
                let a = self.perms.can_publish_static(subj);
                let mut cache = self.pub_cache.borrow_mut();
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(Bytes::copy_from_slice(subj), a);
                a
            }
        };
        if allowed {
            return true;
        }
        let Some(resp) = &self.perms.response else {
            return false;
        };
        let mut replies = self.replies.borrow_mut();
        let Some(r) = replies.get_mut(subj) else {
            return false;
        };
        r.sent += 1;
        let expired = !resp.expires.is_zero() && r.at.elapsed() > resp.expires;
        if (resp.max > 0 && r.sent > resp.max) || expired {
            replies.remove(subj);
            return false;
        }
        true
    }

    /// May this client subscribe? Turns the delivery deny filter on when needed.
    pub fn can_subscribe(&self, subj: &[u8], queue: Option<&[u8]>) -> bool {
        if !self.perms.can_subscribe(subj, queue) {
            return false;
        }
        if !self.deny_filter.get() && self.perms.sub_needs_deny_filter(subj) {
            self.deny_filter.set(true);
        }
        true
    }

    /// Called for each delivery to this client when [`needs_delivery_hook`]: false
    /// when the subject is denied; records `reply` for `allow_responses`.
    ///
    /// [`needs_delivery_hook`]: ClientPerms::needs_delivery_hook
    pub fn on_deliver(&self, subj: &[u8], reply: &[u8]) -> bool {
        if self.deny_filter.get() {
            let cached = self.deny_cache.borrow().get(subj).copied();
            let denied = match cached {
                Some(d) => d,
                None => {
                    let d = self
                        .perms
                        .subscribe
                        .as_ref()
                        .and_then(|s| s.deny.as_ref())
                        .is_some_and(|deny| list_matches(deny, subj));
                    let mut cache = self.deny_cache.borrow_mut();
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(Bytes::copy_from_slice(subj), d);
                    d
                }
            };
            if denied {
                return false;
            }
        }
        if let (Some(resp), false) = (&self.perms.response, reply.is_empty()) {
            let mut replies = self.replies.borrow_mut();
            let now = Instant::now();
            match replies.get_mut(reply) {
                Some(r) => {
                    r.at = now;
                    r.sent = 0;
                }
                None => {
                    replies.insert(Bytes::copy_from_slice(reply), Reply { at: now, sent: 0 });
                }
            }
            let ttl = if resp.expires.is_zero() {
                Duration::from_secs(3600)
            } else {
                resp.expires
            };
            if replies.len() > REPLIES_MAX || self.last_prune.get().elapsed() > ttl {
                let max = resp.max;
                replies.retain(|_, r| {
                    (max <= 0 || r.sent < max) && (resp.expires.is_zero() || r.at.elapsed() <= ttl)
                });
                self.last_prune.set(now);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(v: &[&str], q: bool) -> Vec<PermEntry> {
        v.iter().map(|s| PermEntry::parse(s, q).unwrap()).collect()
    }

    fn sub(allow: &[&str], deny: &[&str]) -> Permissions {
        Permissions {
            subscribe: Some(SubjectPerm {
                allow: (!allow.is_empty()).then(|| entries(allow, true)),
                deny: (!deny.is_empty()).then(|| entries(deny, true)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn subscribe_semantics_follow_nats_server() {
        let p = sub(&["foo.>", "bar v1", "baz v.*"], &["foo.secret"]);
        assert!(p.can_subscribe(b"foo.*", None));
        assert!(!p.can_subscribe(b"foo.secret", None));
        assert!(p.sub_needs_deny_filter(b"foo.*"));
        assert!(!p.sub_needs_deny_filter(b"foo.x"));
        assert!(!p.can_subscribe(b"bar", None));
        assert!(p.can_subscribe(b"bar", Some(b"v1")));
        assert!(!p.can_subscribe(b"bar", Some(b"v2")));
        assert!(p.can_subscribe(b"baz", Some(b"v.x")));
        assert!(!p.can_subscribe(b"baz", Some(b"v")));
        assert!(p.can_subscribe(b"foo.x", Some(b"any")));
        let p = sub(&["foo.bar"], &[]);
        assert!(!p.can_subscribe(b"foo.*", None));
        let p = sub(&[], &["bar v2"]);
        assert!(p.can_subscribe(b"bar", None));
        assert!(p.can_subscribe(b"bar", Some(b"v1")));
        assert!(!p.can_subscribe(b"bar", Some(b"v2")));
    }

    #[test]
    fn publish_cache_and_responses() {
        let p = Permissions {
            publish: Some(SubjectPerm {
                allow: Some(vec![]),
                deny: None,
            }),
            response: Some(ResponsePerm::default()),
            ..Default::default()
        };
        let c = ClientPerms::new(std::sync::Arc::new(p));
        assert!(!c.can_publish(b"_INBOX.1"));
        assert!(c.on_deliver(b"req", b"_INBOX.1"));
        assert!(c.can_publish(b"_INBOX.1"));
        assert!(!c.can_publish(b"_INBOX.1"));
    }

    #[test]
    fn subset_match() {
        assert!(is_subset_match("foo.secret", "foo.*"));
        assert!(is_subset_match("foo.secret", "foo.>"));
        assert!(is_subset_match("foo.*", "foo.*"));
        assert!(!is_subset_match("foo.*", "foo.bar"));
        assert!(!is_subset_match("v", "v.*"));
        assert!(is_subset_match("v.x", "v.*"));
    }
}
