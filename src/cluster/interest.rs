//! Who is told about which interest. Every change (a client shard's subscription, a
//! route's or a leaf's `+`/`-`) recomputes, for that one account, subject and queue,
//! what each link should have been told, and sends the difference:
//!
//! * routes: this server's clients plus the leafs it is the hub for;
//! * a leaf this server is the hub for: everything of the bound account (clients,
//!   routes, the other leafs) except what came from that leaf's own cluster;
//! * a hub this server is the spoke of: its clients and the leafs it is the hub for.
//!
//! Plain interest is news on 0 -> 1 and 1 -> 0; a queue group's weight on every change.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::leaf::Leaf;
use super::route::Route;
use super::{ClusterCore, CoreState, InterestKey};
use crate::account::AccountId;
use crate::bus::Envelope;
use crate::sublist::Sublist;

/// Sets a link's weight for `key` (0 removes it) and returns the weight before.
pub(super) fn set_weight<K: Eq + std::hash::Hash>(
    map: &mut std::collections::HashMap<K, u32>,
    key: K,
    weight: u32,
) -> u32 {
    if weight == 0 {
        map.remove(&key).unwrap_or(0)
    } else {
        map.insert(key, weight).unwrap_or(0)
    }
}

/// Whether going from `told` to `now` is news for the peer.
fn news(told: u32, now: u32, queue: bool) -> bool {
    (told == 0) != (now == 0) || (queue && told != now)
}

/// Appends the `+` (or `-` for weight 0) line for `subject`/`queue`; `account` is
/// `None` on a leaf.
fn line(out: &mut BytesMut, account: Option<&[u8]>, subject: &[u8], queue: Option<&[u8]>, w: u32) {
    if w > 0 {
        crate::proto::route::sub(out, account, subject, queue.map(|q| (q, w)));
    } else {
        crate::proto::route::unsub(out, account, subject, queue);
    }
}

impl ClusterCore {
    /// A client shard's subscriptions on (account, subject, queue) changed by `n`.
    pub(super) fn on_shard_interest(
        &self,
        from: usize,
        account: AccountId,
        subject: Bytes,
        queue: Option<Bytes>,
        add: bool,
        n: u32,
    ) {
        let mut st = self.state.borrow_mut();
        let i = account.index();
        if st.shards.len() <= i {
            st.shards.resize_with(i + 1, Sublist::default);
        }
        if add {
            st.shards[i].insert_n(&subject, queue.as_deref(), from as u16, n);
        } else {
            st.shards[i].remove_n(&subject, queue.as_deref(), &(from as u16), n);
        }
        let key = (account, subject, queue);
        let before = st.local.get(&key).copied().unwrap_or(0);
        let after = if add {
            before.saturating_add(n)
        } else {
            before.saturating_sub(n)
        };
        if after == 0 {
            st.local.remove(&key);
        } else {
            st.local.insert(key.clone(), after);
        }
        if add && key.2.is_none() && self.gateways_enabled() {
            self.note_recent_sub(&mut st, account, &key.1);
        }
        self.refresh(&mut st, &key, true);
        self.shadow_interest(&mut st, &key, add, n);
    }

    /// Interest in an importing account is interest in the exporting one too (as
    /// nats-server's shadow subscriptions): other servers then send what is
    /// published there, and this server imports it.
    pub(super) fn shadow_interest(&self, st: &mut CoreState, key: &InterestKey, add: bool, n: u32) {
        let taps = self.taps.borrow();
        for tap in taps.iter().filter(|t| t.into == key.0) {
            let Some(shadow) = tap.shadow(&key.1) else {
                continue;
            };
            let skey = (tap.from, shadow, key.2.clone());
            let w = st.local.get(&skey).copied().unwrap_or(0);
            let w = if add {
                w.saturating_add(n)
            } else {
                w.saturating_sub(n)
            };
            if w == 0 {
                st.local.remove(&skey);
            } else {
                st.local.insert(skey.clone(), w);
            }
            self.refresh(st, &skey, true);
        }
    }

    fn count_links(&self, st: &CoreState) {
        let counts = &self.server.link_counts;
        let mut remotes: Vec<String> = st
            .routes
            .values()
            .map(|r| r.remote_id.borrow().clone())
            .collect();
        remotes.sort_unstable();
        remotes.dedup();
        counts
            .routes
            .store(st.routes.len() as u64, Ordering::Relaxed);
        counts
            .remotes
            .store(remotes.len() as u64, Ordering::Relaxed);
        counts.leafs.store(st.leafs.len() as u64, Ordering::Relaxed);
    }

    /// Registers a route whose handshake is done, and sends it what routes are told.
    pub fn register(&self, route: &Rc<Route>) {
        let lines = {
            let mut st = self.state.borrow_mut();
            st.routes.insert(route.id, route.clone());
            self.count_links(&st);
            let mut out = BytesMut::new();
            let told: Vec<(InterestKey, u32)> = st
                .told_routes
                .iter()
                .map(|(k, n)| (k.clone(), *n))
                .collect();
            for ((account, subject, queue), n) in told {
                let name = Self::account_name(&self.server, &mut st, account);
                line(&mut out, Some(&name), &subject, queue.as_deref(), n);
            }
            out
        };
        route.send(&lines);
    }

    /// Forgets a closed route and the interest it had.
    pub fn unregister(&self, route: &Route) {
        let interest = std::mem::take(&mut *route.interest.borrow_mut());
        let mut st = self.state.borrow_mut();
        if st
            .routes
            .get(&route.id)
            .is_some_and(|r| std::ptr::eq(&**r, route))
        {
            st.routes.remove(&route.id);
            self.count_links(&st);
        }
        for (key, weight) in interest {
            self.route_weight(&mut st, route.id, &key, weight, 0);
        }
        drop(st);
        self.refresh_connect_urls();
    }

    /// A route's interest in (account, subject, queue) is now `weight` (0: gone).
    pub fn set_route_interest(
        &self,
        route: &Route,
        account: AccountId,
        subject: &[u8],
        queue: Option<&[u8]>,
        weight: u32,
    ) {
        let key = (
            account,
            Bytes::copy_from_slice(subject),
            queue.map(Bytes::copy_from_slice),
        );
        let before = set_weight(&mut route.interest.borrow_mut(), key.clone(), weight);
        let mut st = self.state.borrow_mut();
        self.route_weight(&mut st, route.id, &key, before, weight);
    }

    fn route_weight(
        &self,
        st: &mut CoreState,
        id: u64,
        key: &InterestKey,
        before: u32,
        after: u32,
    ) {
        if before == after {
            return;
        }
        let old = st.routes_total.get(key).copied().unwrap_or(0);
        let total = old.saturating_add(after).saturating_sub(before);
        if total == 0 {
            st.routes_total.remove(key);
        } else {
            st.routes_total.insert(key.clone(), total);
        }
        self.change_remote_interest(st, id, key, before, after);
        self.refresh(st, key, false);
    }

    /// Registers a leaf connection whose handshake is done: its account's
    /// loop-detection subject joins this server's interest, and the leaf is told
    /// everything it may receive.
    pub fn register_leaf(&self, leaf: &Rc<Leaf>) {
        let mut st = self.state.borrow_mut();
        st.leafs.insert(leaf.id, leaf.clone());
        self.count_links(&st);
        let account = leaf.account.get();
        let lds = self.lds_subject(&mut st, account);
        let lds_key = (account, lds, None);
        if !st.local.contains_key(&lds_key) {
            st.local.insert(lds_key.clone(), 1);
            self.refresh(&mut st, &lds_key, true);
        }
        let mut keys: HashSet<InterestKey> = HashSet::new();
        keys.extend(st.local.keys().filter(|k| k.0 == account).cloned());
        keys.extend(st.routes_total.keys().filter(|k| k.0 == account).cloned());
        for other in st.leafs.values().filter(|l| l.account.get() == account) {
            keys.extend(
                other
                    .interest
                    .borrow()
                    .keys()
                    .map(|(s, q)| (account, s.clone(), q.clone())),
            );
        }
        let mut out = BytesMut::new();
        for key in keys {
            self.tell_leaf(&st, leaf, &key, &mut out);
        }
        if self.gateways_enabled() && !leaf.spoke.get() {
            // Responses on rewritten replies come back here to go to their cluster.
            crate::proto::route::sub(&mut out, None, super::gateway::REPLY_WILDCARD, None);
        }
        leaf.send(&out);
    }

    /// Forgets a closed leaf connection and the interest it had.
    pub fn unregister_leaf(&self, leaf: &Leaf) {
        let interest = std::mem::take(&mut *leaf.interest.borrow_mut());
        let mut st = self.state.borrow_mut();
        if st
            .leafs
            .get(&leaf.id)
            .is_some_and(|l| std::ptr::eq(&**l, leaf))
        {
            st.leafs.remove(&leaf.id);
            self.count_links(&st);
        }
        let account = leaf.account.get();
        for ((subject, queue), weight) in interest {
            let key = (account, subject, queue);
            self.change_remote_interest(&mut st, leaf.id, &key, weight, 0);
            self.refresh(&mut st, &key, true);
        }
    }

    /// A leaf's interest in (subject, queue) of its account is now `weight` (0: gone).
    pub fn set_leaf_interest(
        &self,
        leaf: &Leaf,
        subject: &[u8],
        queue: Option<&[u8]>,
        weight: u32,
    ) {
        let lkey = (
            Bytes::copy_from_slice(subject),
            queue.map(Bytes::copy_from_slice),
        );
        let before = set_weight(&mut leaf.interest.borrow_mut(), lkey.clone(), weight);
        if before == weight {
            return;
        }
        let key = (leaf.account.get(), lkey.0, lkey.1);
        let mut st = self.state.borrow_mut();
        self.change_remote_interest(&mut st, leaf.id, &key, before, weight);
        self.refresh(&mut st, &key, true);
    }

    /// `subject` is this server's own loop-detection subject in `account`.
    pub fn is_own_lds(&self, account: AccountId, subject: &[u8]) -> bool {
        let st = self.state.borrow();
        st.lds
            .get(account.index())
            .is_some_and(|l| !l.is_empty() && l[..] == *subject)
    }

    fn lds_subject(&self, st: &mut CoreState, account: AccountId) -> Bytes {
        let i = account.index();
        if st.lds.len() <= i {
            st.lds.resize(i + 1, Bytes::new());
        }
        if st.lds[i].is_empty() {
            let id = nkeys::KeyPair::new_user().public_key();
            st.lds[i] = Bytes::from(format!("$LDS.{}", &id[1..23]));
        }
        st.lds[i].clone()
    }

    /// A link's weight for `key` went from `before` to `after`: the remote table and
    /// the client shards' replicas follow.
    pub(super) fn change_remote_interest(
        &self,
        st: &mut CoreState,
        link: u64,
        key: &InterestKey,
        before: u32,
        after: u32,
    ) {
        if before == after {
            return;
        }
        Self::change_remote_table(st, link, key, before, after);
        let (add, n) = if after > before {
            (true, after - before)
        } else {
            (false, before - after)
        };
        self.tell_shards_interest(key, add, n);
    }

    /// The remote table alone follows a link's weight for `key` (the client shards
    /// are told separately, or not at all).
    pub(super) fn change_remote_table(
        st: &mut CoreState,
        link: u64,
        key: &InterestKey,
        before: u32,
        after: u32,
    ) {
        let (account, subject, queue) = key;
        let i = account.index();
        if st.remote.len() <= i {
            st.remote.resize_with(i + 1, Sublist::default);
        }
        if after > before {
            st.remote[i].insert_n(subject, queue.as_deref(), link, after - before);
        } else if before > after {
            st.remote[i].remove_n(subject, queue.as_deref(), &link, before - after);
        }
    }

    /// Tells every client shard that this core's interest in `key` changed by `n`.
    pub(super) fn tell_shards_interest(&self, key: &InterestKey, add: bool, n: u32) {
        let (account, subject, queue) = key;
        for &shard in &self.clients {
            self.mesh.send(
                shard,
                Envelope::Interest {
                    account: *account,
                    subject: subject.clone(),
                    queue: queue.clone(),
                    add,
                    n,
                },
            );
        }
    }

    /// Sends every link what changed for `key` (the routes too when `routes`).
    fn refresh(&self, st: &mut CoreState, key: &InterestKey, routes: bool) {
        if routes {
            let now = if self.route_imports(&key.1) {
                Self::for_routes(st, key)
            } else {
                0
            };
            let told = st.told_routes.get(key).copied().unwrap_or(0);
            if news(told, now, key.2.is_some()) {
                if now == 0 {
                    st.told_routes.remove(key);
                } else {
                    st.told_routes.insert(key.clone(), now);
                }
                if !st.routes.is_empty() {
                    let name = Self::account_name(&self.server, st, key.0);
                    let mut out = BytesMut::new();
                    line(&mut out, Some(&name), &key.1, key.2.as_deref(), now);
                    for r in st.routes.values() {
                        r.send(&out);
                    }
                }
            }
        }
        let mut out = BytesMut::new();
        for leaf in st.leafs.values() {
            if leaf.account.get() == key.0 {
                self.tell_leaf(st, leaf, key, &mut out);
                leaf.send(&out);
                out.clear();
            }
        }
        self.tell_gateways(st, key);
        self.gate_gateway_queue(st, key);
    }

    /// Appends to `out` what `leaf` must hear about `key`, and remembers it as told.
    fn tell_leaf(&self, st: &CoreState, leaf: &Leaf, key: &InterestKey, out: &mut BytesMut) {
        let now = Self::for_leaf(st, leaf, key);
        let lkey = (key.1.clone(), key.2.clone());
        let mut told = leaf.told.borrow_mut();
        let before = told.get(&lkey).copied().unwrap_or(0);
        if !news(before, now, key.2.is_some()) {
            return;
        }
        if now == 0 {
            told.remove(&lkey);
        } else {
            told.insert(lkey, now);
        }
        line(out, None, &key.1, key.2.as_deref(), now);
    }

    /// The cluster's permissions let routes send this server `subject` (their
    /// import side, nats-server's `canImport`): interest outside them is not told.
    fn route_imports(&self, subject: &[u8]) -> bool {
        self.opts
            .borrow()
            .permissions
            .as_ref()
            .is_none_or(|p| p.can_publish_static(subject))
    }

    /// The cluster's permissions let a route ask for `subject` (the export side,
    /// nats-server's `canExport`).
    pub fn route_exports(&self, subject: &[u8]) -> bool {
        self.opts
            .borrow()
            .permissions
            .as_ref()
            .is_none_or(|p| p.can_subscribe(subject, None))
    }

    /// After the cluster's permissions changed (reload): every route is told the
    /// interest they now allow, and route interest they no longer export is dropped.
    pub fn reapply_route_permissions(&self) {
        let keys: Vec<InterestKey> = {
            let st = self.state.borrow();
            st.local
                .keys()
                .chain(st.told_routes.keys())
                .cloned()
                .collect()
        };
        for key in keys {
            let mut st = self.state.borrow_mut();
            self.refresh(&mut st, &key, true);
        }
        let routes: Vec<Rc<Route>> = self.state.borrow().routes.values().cloned().collect();
        for r in routes {
            let gone: Vec<InterestKey> = r
                .interest
                .borrow()
                .keys()
                .filter(|k| !self.route_exports(&k.1))
                .cloned()
                .collect();
            for (account, subject, queue) in gone {
                self.set_route_interest(&r, account, &subject, queue.as_deref(), 0);
            }
        }
    }

    /// What the routes should know of `key`: local interest and that of the leafs
    /// this server is the hub for.
    fn for_routes(st: &CoreState, key: &InterestKey) -> u32 {
        let mut w = st.local.get(key).copied().unwrap_or(0);
        let lkey = (key.1.clone(), key.2.clone());
        for l in st.leafs.values() {
            if l.account.get() == key.0 && !l.spoke.get() {
                w = w.saturating_add(l.interest.borrow().get(&lkey).copied().unwrap_or(0));
            }
        }
        w
    }

    /// What `leaf` should know of `key`.
    fn for_leaf(st: &CoreState, leaf: &Leaf, key: &InterestKey) -> u32 {
        if key.0 != leaf.account.get() || !leaf.imports(&key.1) {
            return 0;
        }
        let mut w = st.local.get(key).copied().unwrap_or(0);
        if !leaf.spoke.get() {
            w = w.saturating_add(st.routes_total.get(key).copied().unwrap_or(0));
        }
        let lkey = (key.1.clone(), key.2.clone());
        let cluster = leaf.remote_cluster.borrow();
        for other in st.leafs.values() {
            if other.id == leaf.id
                || other.account.get() != key.0
                || (leaf.spoke.get() && other.spoke.get())
                || (!cluster.is_empty() && *other.remote_cluster.borrow() == *cluster)
            {
                continue;
            }
            w = w.saturating_add(other.interest.borrow().get(&lkey).copied().unwrap_or(0));
        }
        w
    }
}
