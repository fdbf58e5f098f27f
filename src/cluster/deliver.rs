//! Where a message goes from the cluster core: from a client shard to the routes and
//! leafs that want it, from a route or a leaf to the client shards and the other
//! links the reference's rules allow. One pick per queue group, by weight, among the
//! members the message may reach; one line per link, however many patterns matched.

use bytes::Bytes;

use super::leaf::Leaf;
use super::{ClusterCore, CoreState};
use crate::account::AccountId;
use crate::bus::{Envelope, RoutedMsg};
use crate::sublist::rand_below;

/// Where one message goes on one client shard.
#[derive(Default)]
pub(super) struct ShardTarget {
    plain: bool,
    queues: Vec<Bytes>,
}

/// A queue member's place: a client shard or a link.
#[derive(Clone, Copy)]
pub(super) enum Hop {
    Shard(u16),
    Link(u64),
}

/// Where a message came from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// A client shard of this server.
    Local,
    /// A route.
    Route,
    /// A leaf connection.
    Leaf(&'a Leaf),
    /// An inbound gateway (another cluster).
    Gateway,
    /// A copy imported here from another account: for this server's shards only.
    Import,
}

/// A message as it is handed on.
struct Msg<'a> {
    account: AccountId,
    subject: &'a Bytes,
    reply: &'a Bytes,
    hdr_len: usize,
    payload: &'a Bytes,
}

fn pick(rng: &mut u64, candidates: &[(Hop, u32)]) -> Option<Hop> {
    let total: u32 = candidates.iter().map(|c| c.1).sum();
    if total == 0 {
        return None;
    }
    let mut at = rand_below(rng, total);
    for &(hop, w) in candidates {
        if at < w {
            return Some(hop);
        }
        at -= w;
    }
    None
}

impl ClusterCore {
    /// A message from a client shard for the links: the plain interest of every link
    /// and one member of each queue group that chose this core.
    pub(super) fn on_shard_msg(&self, m: &RoutedMsg) {
        if self.gateways_enabled() && self.send_routed_response(m) {
            return;
        }
        if m.status_token != 0 {
            // Sent on to another server: as far as this server can tell, taken.
            self.mesh.send(
                m.origin as usize,
                Envelope::Delivered {
                    token: m.status_token,
                    any: true,
                    more: 0,
                },
            );
        }
        let msg = Msg {
            account: m.account,
            subject: &m.subject,
            reply: &m.reply,
            hdr_len: m.hdr_len as usize,
            payload: &m.payload,
        };
        let groups = m.queue.iter().chain(m.more_queues.iter()).map(|q| &q[..]);
        self.fan_out(Source::Local, &msg, m.plain, groups);
    }

    /// A message from a route or an inbound gateway, already in `account`: to the
    /// client shards and the links the source allows, and to one member of each
    /// queue group the line lists.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver_from_cluster_link(
        &self,
        source: Source<'_>,
        account: AccountId,
        subject: Bytes,
        reply: Bytes,
        queues: &[u8],
        hdr_len: usize,
        payload: Bytes,
    ) {
        let msg = Msg {
            account,
            subject: &subject,
            reply: &reply,
            hdr_len,
            payload: &payload,
        };
        self.fan_out(source, &msg, true, split_queues(queues));
    }

    /// A response a client shard sent on a reply that came rewritten from another
    /// cluster: it goes straight to that cluster, whatever the interest says.
    /// Returns whether it was one (nothing else is done with it then, as with
    /// nats-server).
    fn send_routed_response(&self, m: &RoutedMsg) -> bool {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        if st.routed_replies.is_empty() {
            return false;
        }
        let Some((routed, _)) = st
            .routed_replies
            .get(&(m.account, m.subject.clone()))
            .cloned()
        else {
            return false;
        };
        drop(guard);
        self.send_to_cluster(m.account, &routed, &m.reply, m.hdr_len as usize, &m.payload);
        if m.status_token != 0 {
            self.mesh.send(
                m.origin as usize,
                Envelope::Delivered {
                    token: m.status_token,
                    any: true,
                    more: 0,
                },
            );
        }
        true
    }

    /// A message from a leaf connection, in its bound account.
    pub fn deliver_from_leaf(
        &self,
        leaf: &Leaf,
        subject: Bytes,
        reply: Bytes,
        queues: &[u8],
        hdr_len: usize,
        payload: Bytes,
    ) {
        if self.gateways_enabled() && super::gateway::is_routed_reply(&subject) {
            // A leaf's response on a rewritten reply: to the cluster it names.
            let account = leaf.account.get();
            let ours = self.state.borrow().reply_prefix.slice(5..11);
            if subject[5..11] == ours[..] {
                self.deliver_routed_reply(true, account, subject, reply, queues, hdr_len, payload);
            } else {
                self.send_to_cluster(account, &subject, &reply, hdr_len, &payload);
            }
            return;
        }
        let msg = Msg {
            account: leaf.account.get(),
            subject: &subject,
            reply: &reply,
            hdr_len,
            payload: &payload,
        };
        self.fan_out(Source::Leaf(leaf), &msg, true, split_queues(queues));
    }

    /// Sends a message on a rewritten reply (`routed`) straight to the cluster its
    /// hash names, whatever the interest says.
    fn send_to_cluster(
        &self,
        account: AccountId,
        routed: &Bytes,
        reply: &Bytes,
        hdr_len: usize,
        payload: &Bytes,
    ) {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let name = Self::account_name(&self.server, st, account);
        let target = st
            .gateways
            .values()
            .find(|g| {
                g.outbound()
                    && super::gateway::hash6(g.name.borrow().as_bytes())[..] == routed[5..11]
            })
            .cloned();
        drop(guard);
        if let Some(gw) = target {
            let headers = gw.headers.get();
            gw.send_with(|out| {
                crate::proto::route::msg(
                    out,
                    Some(&name),
                    routed,
                    reply,
                    &[],
                    hdr_len,
                    payload,
                    headers,
                )
            });
            gw.count_out(payload.len());
        }
    }

    /// Whether a message from `source` may go out on link `id`.
    fn may_send(st: &CoreState, source: Source<'_>, id: u64, subject: &[u8]) -> bool {
        if st.routes.contains_key(&id) {
            return match source {
                Source::Local | Source::Gateway => true,
                Source::Route | Source::Import => false,
                Source::Leaf(from) => !from.spoke.get(),
            };
        }
        if let Some(g) = st.gateways.get(&id) {
            return g.outbound() && matches!(source, Source::Local | Source::Leaf(_));
        }
        let Some(to) = st.leafs.get(&id) else {
            return false;
        };
        if !to.exports(subject) {
            return false;
        }
        match source {
            Source::Local | Source::Gateway => true,
            Source::Route => !to.spoke.get(),
            Source::Import => false,
            Source::Leaf(from) => {
                let cluster = from.remote_cluster.borrow();
                to.id != from.id
                    && !(from.spoke.get() && to.spoke.get())
                    && (cluster.is_empty() || *to.remote_cluster.borrow() != *cluster)
            }
        }
    }

    fn fan_out<'g>(
        &self,
        source: Source<'_>,
        msg: &Msg<'_>,
        plain: bool,
        groups: impl Iterator<Item = &'g [u8]> + Clone,
    ) {
        self.fan_out_in(source, msg, plain, groups.clone());
        if matches!(source, Source::Local | Source::Import) {
            return;
        }
        // What another server published in an exporting account reaches this
        // server's importers (that server imports only for its own).
        let taps = self.taps.borrow();
        for tap in taps.iter().filter(|t| t.from == msg.account) {
            if !crate::subject::matches_valid(&tap.pattern, msg.subject) {
                continue;
            }
            let subject = tap.rewrite.apply(&tap.pattern, msg.subject);
            let imported = Msg {
                account: tap.into,
                subject: &subject,
                reply: msg.reply,
                hdr_len: msg.hdr_len,
                payload: msg.payload,
            };
            self.fan_out_in(Source::Import, &imported, plain, groups.clone());
        }
    }

    fn fan_out_in<'g>(
        &self,
        source: Source<'_>,
        msg: &Msg<'_>,
        plain: bool,
        groups: impl Iterator<Item = &'g [u8]>,
    ) {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let i = msg.account.index();
        let to_shards = !matches!(source, Source::Local);
        let shards = match st.shards.get_mut(i) {
            Some(s) if to_shards => Some(s.match_subject(msg.subject)),
            _ => None,
        };
        let remote = st.remote.get_mut(i).map(|s| s.match_subject(msg.subject));
        if shards.as_ref().is_none_or(|r| r.is_empty())
            && remote.as_ref().is_none_or(|r| r.is_empty())
        {
            return;
        }
        let mut links = std::mem::take(&mut st.scratch_links);
        let mut picks = std::mem::take(&mut st.scratch_picks);
        let mut candidates = std::mem::take(&mut st.scratch_candidates);
        let mut any_shard = false;
        if plain {
            if let Some(res) = &shards {
                for &(shard, _) in &res.plain {
                    st.targets[shard as usize].plain = true;
                    any_shard = true;
                }
            }
            if let Some(res) = &remote {
                for &(id, _) in &res.plain {
                    if Self::may_send(st, source, id, msg.subject) {
                        links.push(id);
                    }
                }
            }
        }
        let mut local_shards = None;
        for group in groups {
            candidates.clear();
            if let Some(q) = shards
                .as_ref()
                .and_then(|r| r.queues.iter().find(|q| q.name == group))
            {
                candidates.extend(q.members.iter().map(|&(s, w)| (Hop::Shard(s), w)));
            }
            let mut other_clusters = false;
            let name = remote.as_ref().and_then(|r| {
                let q = r.queues.iter().find(|q| q.name == group)?;
                for &(id, w) in &q.members {
                    if Self::may_send(st, source, id, msg.subject) {
                        if st.gateways.contains_key(&id) {
                            other_clusters = true;
                        } else {
                            candidates.push((Hop::Link(id), w));
                        }
                    }
                }
                Some(q.name.clone())
            });
            if other_clusters && candidates.is_empty() {
                // A member in this cluster wins over any in another: one on this
                // server's shards (which did not pick it), else a gateway's.
                if matches!(source, Source::Local) {
                    let found = local_shards
                        .get_or_insert_with(|| {
                            st.shards.get_mut(i).map(|s| s.match_subject(msg.subject))
                        })
                        .as_ref()
                        .and_then(|r| r.queues.iter().find(|q| q.name == group).cloned());
                    if let Some(q) = found {
                        candidates.extend(q.members.iter().map(|&(s, w)| (Hop::Shard(s), w)));
                    }
                }
                if candidates.is_empty() {
                    let q = remote
                        .as_ref()
                        .and_then(|r| r.queues.iter().find(|q| q.name == group))
                        .expect("matched");
                    for &(id, w) in &q.members {
                        if st.gateways.contains_key(&id)
                            && Self::may_send(st, source, id, msg.subject)
                        {
                            candidates.push((Hop::Link(id), w));
                        }
                    }
                }
            }
            match pick(&mut st.rng, &candidates) {
                Some(Hop::Shard(s)) => {
                    let q = shards
                        .as_ref()
                        .or(local_shards.as_ref().and_then(|l| l.as_ref()))
                        .and_then(|r| r.queues.iter().find(|q| q.name == group))
                        .map(|q| q.name.clone())
                        .expect("picked from it");
                    st.targets[s as usize].queues.push(q);
                    any_shard = true;
                }
                Some(Hop::Link(id)) => {
                    picks.push((id, name.expect("picked from it")));
                    links.push(id);
                }
                None => {}
            }
        }
        if any_shard {
            self.send_to_shards(st, msg);
        }
        if !links.is_empty() {
            links.sort_unstable();
            links.dedup();
            self.send_to_links(st, msg, &links, &picks);
        }
        links.clear();
        picks.clear();
        st.scratch_links = links;
        st.scratch_picks = picks;
        st.scratch_candidates = candidates;
    }

    fn send_to_shards(&self, st: &mut CoreState, msg: &Msg<'_>) {
        let mut stripped: Option<Bytes> = None;
        for shard in 0..st.targets.len() {
            let t = &mut st.targets[shard];
            if !t.plain && t.queues.is_empty() {
                continue;
            }
            let plain = std::mem::take(&mut t.plain);
            let mut queues = std::mem::take(&mut t.queues);
            let queue = (!queues.is_empty()).then(|| queues.remove(0));
            // A reply rewritten by another cluster reaches clients as it was; their
            // responses come back here to go straight to that cluster.
            let reply = match &stripped {
                Some(r) => r.clone(),
                None if self.gateways_enabled() && super::gateway::is_routed_reply(msg.reply) => {
                    let r = self.track_routed_reply(st, msg.account, msg.reply);
                    stripped = Some(r.clone());
                    r
                }
                None => msg.reply.clone(),
            };
            self.mesh.send(
                shard,
                Envelope::Msg(RoutedMsg {
                    account: msg.account,
                    subject: msg.subject.clone(),
                    reply,
                    hdr_len: msg.hdr_len as u32,
                    payload: msg.payload.clone(),
                    plain,
                    queue,
                    more_queues: queues,
                    status_token: 0,
                    origin: self.id as u16,
                    // A queue message a shard cannot place is not handed back here:
                    // it came from another server and must not go out again.
                    tried: if self.id < 64 { 1 << self.id } else { 0 },
                    hops: 0,
                }),
            );
        }
    }

    fn send_to_links(
        &self,
        st: &mut CoreState,
        msg: &Msg<'_>,
        links: &[u64],
        picks: &[(u64, Bytes)],
    ) {
        let name = Self::account_name(&self.server, st, msg.account);
        let mut gateway_reply: Option<Bytes> = None;
        for &id in links {
            let queues: Vec<&[u8]> = picks
                .iter()
                .filter(|(l, _)| *l == id)
                .map(|(_, q)| &q[..])
                .collect();
            let mut reply = msg.reply;
            let (link, account, headers) = if let Some(r) = st.routes.get(&id) {
                (r.link.clone(), Some(&name[..]), r.headers.get())
            } else if let Some(l) = st.leafs.get(&id) {
                (l.link.clone(), None, l.headers.get())
            } else if let Some(g) = st.gateways.get(&id) {
                let link = g.link.clone();
                let headers = g.headers.get();
                if gateway_reply.is_none() {
                    gateway_reply = Some(self.gateway_reply(st, msg.account, msg.reply));
                }
                reply = gateway_reply.as_ref().expect("set");
                (link, Some(&name[..]), headers)
            } else {
                continue;
            };
            link.send_with(|out| {
                crate::proto::route::msg(
                    out,
                    account,
                    msg.subject,
                    reply,
                    &queues,
                    msg.hdr_len,
                    msg.payload,
                    headers,
                )
            });
            link.count_out(msg.payload.len());
        }
    }
}

/// The queue group names of a route or leaf message line.
fn split_queues(queues: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    queues
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|q| !q.is_empty())
}
