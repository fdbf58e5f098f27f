//! The interest table of one account: a token trie with a match cache.
//!
//! # Structure
//!
//! * Nodes live in one arena (`Vec<Node<T>>`, indexed by `u32`); freed nodes go on a
//!   free list and are reused. Nothing is recursive, so arbitrarily deep subjects
//!   cannot overflow the stack (not even on drop).
//! * Literal subjects (no wildcard token, most subscriptions) skip the trie: `lits`
//!   maps the whole subject to its node, so inserting, removing and matching one costs
//!   one hash lookup instead of one per token. The trie holds the wildcard patterns.
//! * A *compact* table ([`Sublist::compact`], the shards' replicas of each other's
//!   interest) keeps plain literal entries under a 64-bit seeded hash of the subject,
//!   without the subject itself: two subjects that collide (about 10^-8 at 10^6
//!   subjects) only make a match report interest that is not there, which costs a
//!   replica an envelope the other side finds nobody for. Such entries are matched,
//!   never listed ([`Sublist::for_each`] skips them).
//! * Entry lists hold one entry inline (most subjects have one subscriber), so a
//!   leaf costs no allocation of its own.
//! * Literal children are not stored per node: one table `edges` maps
//!   `parent id (4 bytes LE) ++ token` to the child id. A node only carries its `*` and
//!   `>` children, the number of literal children, and its entries. This keeps a node at
//!   48 bytes (for a pointer-sized `T`) and needs no per-node hash map.
//! * Entries of a node: plain `(item, count)` pairs and, if any, queue groups
//!   `(name, [(item, count)])`. The same `(subject, queue, item)` inserted twice bumps
//!   the count. Looking an item up inside one node is a linear scan (`T` is only `Eq`),
//!   while a list is short. A list that grows to [`INDEX_MIN`] entries (many
//!   subscribers on one subject, one queue group with many members) gets a hash index
//!   `item -> position` in a side table keyed by `(node, list)`, so inserting and
//!   removing stay `O(1)` and building or tearing down `k` subscriptions on one subject
//!   is linear; small lists, the common case, pay nothing for it.
//! * Empty nodes are unlinked and freed on remove.
//!
//! # Match cache
//!
//! `match_subject` caches `Rc<SublistResult<T>>` per published subject
//! (`HashMap<Box<[u8]>, _>`, looked up by `&[u8]`, so a hit does not allocate). Every
//! insert/remove invalidates exactly the cached subjects the changed pattern matches:
//! one hash removal for a literal pattern, a scan of the cache for a wildcard pattern
//! (`O(cache size)`, bounded by the capacity). When the cache is full, about a quarter
//! of it (arbitrary entries, effectively random) is evicted before the next insert.
//! Subjects with an empty token match nothing; they get the shared empty result and are
//! not cached.
//!
//! `Sublist` is deliberately `!Send` (`Rc`): one table per shard/account.

/// Maps keyed by subject bytes: foldhash is several times cheaper than SipHash on
/// short keys (the match cache is looked up on every publish) and is seeded per map,
/// so subjects chosen by a client cannot be made to collide.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::subject::{is_fwc, is_literal, is_pwc, is_valid_subject, matches_valid, tokens};

#[cfg(test)]
mod tests;

/// Default number of cached match results.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;
/// Node ids are `u32`; `NONE` is reserved.
const MAX_NODES: usize = (u32::MAX - 1) as usize;
/// Entry lists at least this long are indexed (see the module docs); below it a
/// linear scan of a few cache lines is cheaper than hashing.
pub const INDEX_MIN: usize = 32;
/// The list slot of a node's plain entries in the index table (queue groups use
/// their position in the node's group vector).
const PLAIN: u32 = u32::MAX;

/// Result of matching one published subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SublistResult<T> {
    /// Every matching non-queue entry with its count. The same item appears once per
    /// matching pattern it is subscribed with.
    pub plain: Vec<(T, u32)>,
    /// One group per distinct queue name among the matching queue entries; members
    /// from all matching patterns are merged.
    pub queues: Vec<QueueMatch<T>>,
}

/// The members of one queue group that match a published subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMatch<T> {
    pub name: Bytes,
    /// `(item, count)`; an item subscribed with two matching patterns appears twice.
    pub members: Vec<(T, u32)>,
    /// Sum of the members' counts (saturating).
    pub total: u32,
}

/// A number below `n` (at least 1) from xorshift64* state `rng`: cheap, no
/// allocation, good enough to spread queue picks.
pub fn rand_below(rng: &mut u64, n: u32) -> u32 {
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n.max(1) as u64) as u32
}

impl<T: Copy> QueueMatch<T> {
    /// One member, chosen by weight.
    pub fn pick(&self, rng: &mut u64) -> Option<T> {
        let mut pick = rand_below(rng, self.total);
        for &(item, weight) in &self.members {
            if pick < weight {
                return Some(item);
            }
            pick -= weight;
        }
        self.members.first().map(|m| m.0)
    }
}

impl<T> SublistResult<T> {
    /// No plain entries and no queue groups.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

impl<T> Default for SublistResult<T> {
    fn default() -> Self {
        SublistResult {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

/// Counters for monitoring (`/subsz`-like).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SublistStats {
    /// Distinct `(subject, queue, item)` entries.
    pub num_subs: usize,
    /// Cached match results.
    pub num_cache: usize,
    /// Successful `insert`/`insert_n` calls.
    pub num_inserts: u64,
    /// Successful `remove`/`remove_n` calls.
    pub num_removes: u64,
    /// `match_subject` calls.
    pub num_matches: u64,
    /// `match_subject` calls answered from the cache.
    pub cache_hits: u64,
    /// Largest fanout among the cached results (as nats-server: plain subscriptions
    /// plus one per queue group). Computed by [`Sublist::stats`], never per message.
    pub max_fanout: usize,
    /// Sum of the cached results' fanouts (`avg_fanout = total_fanout / num_cache`).
    pub total_fanout: usize,
}

impl SublistStats {
    /// The counters of two tables together (one shard's accounts): sums, and the
    /// larger max fanout.
    pub fn merge(&self, other: &SublistStats) -> SublistStats {
        SublistStats {
            num_subs: self.num_subs + other.num_subs,
            num_cache: self.num_cache + other.num_cache,
            num_inserts: self.num_inserts + other.num_inserts,
            num_removes: self.num_removes + other.num_removes,
            num_matches: self.num_matches + other.num_matches,
            cache_hits: self.cache_hits + other.cache_hits,
            max_fanout: self.max_fanout.max(other.max_fanout),
            total_fanout: self.total_fanout + other.total_fanout,
        }
    }
}

/// An entry list: `(item, count)`, one held inline.
type List<T> = SmallVec<[(T, u32); 1]>;

struct QueueEntries<T> {
    name: Bytes,
    members: List<T>,
}

struct Node<T> {
    plain: List<T>,
    /// Boxed on purpose: a thin pointer keeps `Node` at 48 bytes, and most nodes
    /// have no queue groups.
    #[allow(clippy::box_collection)]
    queues: Option<Box<Vec<QueueEntries<T>>>>,
    /// `*` child.
    pwc: u32,
    /// `>` child.
    fwc: u32,
    /// Number of literal children (entries in `Sublist::edges` with this parent).
    nlit: u32,
}

impl<T> Node<T> {
    fn new() -> Self {
        Node {
            plain: List::new(),
            queues: None,
            pwc: NONE,
            fwc: NONE,
            nlit: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty()
            && self.queues.is_none()
            && self.pwc == NONE
            && self.fwc == NONE
            && self.nlit == 0
    }

    fn has_entries(&self) -> bool {
        !self.plain.is_empty() || self.queues.is_some()
    }
}

/// The interest table of one account.
pub struct Sublist<T> {
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    /// `parent id (LE) ++ token` -> child id, for literal tokens.
    edges: HashMap<Box<[u8]>, u32>,
    /// Literal subject -> its node (not linked into the trie).
    lits: HashMap<Box<[u8]>, u32>,
    /// Compact tables only: seeded hash of a literal subject -> its plain entries.
    hashed: Option<HashMap<u64, List<T>>>,
    /// The seed of those hashes.
    seed: foldhash::fast::RandomState,
    count: usize,
    /// `(node, list slot)` -> `item -> position in that list`, for long lists only.
    index: HashMap<(u32, u32), HashMap<T, u32>>,
    cache: HashMap<Box<[u8]>, Rc<SublistResult<T>>>,
    cache_cap: usize,
    empty: Rc<SublistResult<T>>,
    stats: SublistStats,
    // Scratch buffers (reused so that lookups do not allocate once warm).
    key_buf: Vec<u8>,
    toks: Vec<(usize, usize)>,
    stack: Vec<(u32, usize)>,
    hits: Vec<u32>,
    path: Vec<u32>,
}

impl<T: Clone + Eq + Hash> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn edge_key(buf: &mut Vec<u8>, parent: u32, tok: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&parent.to_le_bytes());
    buf.extend_from_slice(tok);
}

/// Push with a tight growth policy for the common one-or-two-entries case.
#[inline]
fn push_compact<E>(v: &mut Vec<E>, e: E) {
    if v.len() == v.capacity() {
        let extra = if v.len() < 4 { 1 } else { v.len() };
        v.reserve_exact(extra);
    }
    v.push(e);
}

/// The same for an entry list.
#[inline]
fn push_list<T>(v: &mut List<T>, e: (T, u32)) {
    if v.len() == v.capacity() {
        let extra = if v.len() < 4 { 1 } else { v.len() };
        v.reserve_exact(extra);
    }
    v.push(e);
}

/// Releases spare capacity after removals once the vector is mostly empty.
#[inline]
fn maybe_shrink<E>(v: &mut Vec<E>) {
    if v.capacity() > 8 && v.len() * 4 <= v.capacity() {
        v.shrink_to(v.len() * 2);
    }
}

/// The same for an entry list (back inline once one entry is left).
#[inline]
fn shrink_list<T>(v: &mut List<T>) {
    if v.len() <= 1 || (v.capacity() > 8 && v.len() * 4 <= v.capacity()) {
        v.shrink_to_fit();
    }
}

fn sum_counts<T>(members: &[(T, u32)]) -> u32 {
    members.iter().fold(0u32, |a, (_, c)| a.saturating_add(*c))
}

/// Scratch vectors that grew very large for one odd subject are not kept around.
const SCRATCH_KEEP: usize = 4096;

/// Where `item` sits in `list` (indexed through `index` when the list is long).
#[inline]
fn find_entry<T: Eq + Hash>(
    index: &HashMap<(u32, u32), HashMap<T, u32>>,
    key: (u32, u32),
    list: &[(T, u32)],
    item: &T,
) -> Option<usize> {
    if list.len() >= INDEX_MIN {
        index.get(&key)?.get(item).map(|&i| i as usize)
    } else {
        list.iter().position(|(t, _)| t == item)
    }
}

/// Appends a new entry to `list`, keeping the index of `key` in step.
fn push_entry<T: Clone + Eq + Hash>(
    index: &mut HashMap<(u32, u32), HashMap<T, u32>>,
    key: (u32, u32),
    list: &mut List<T>,
    item: T,
    n: u32,
) {
    push_list(list, (item, n));
    let len = list.len();
    if len == INDEX_MIN {
        let mut m = HashMap::with_capacity_and_hasher(2 * INDEX_MIN, Default::default());
        for (i, (t, _)) in list.iter().enumerate() {
            m.insert(t.clone(), i as u32);
        }
        index.insert(key, m);
    } else if len > INDEX_MIN {
        if let Some(m) = index.get_mut(&key) {
            m.insert(list[len - 1].0.clone(), (len - 1) as u32);
        }
    }
}

/// Removes the entry at `i` of `list` (swap-remove), keeping the index of `key` in
/// step and dropping it once the list is short again.
fn remove_entry<T: Eq + Hash>(
    index: &mut HashMap<(u32, u32), HashMap<T, u32>>,
    key: (u32, u32),
    list: &mut List<T>,
    i: usize,
) {
    let before = list.len();
    let (gone, _) = list.swap_remove(i);
    if before >= INDEX_MIN {
        if list.len() < INDEX_MIN {
            index.remove(&key);
        } else if let Some(m) = index.get_mut(&key) {
            m.remove(&gone);
            if i < list.len() {
                if let Some(p) = m.get_mut(&list[i].0) {
                    *p = i as u32;
                }
            }
            if m.capacity() > 8 * INDEX_MIN && m.len() * 4 <= m.capacity() {
                m.shrink_to(m.len() * 2);
            }
        }
    }
    shrink_list(list);
}

impl<T: Clone + Eq + Hash> Sublist<T> {
    /// An empty table with a cache of [`DEFAULT_CACHE_CAPACITY`] entries.
    pub fn new() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// An empty table caching at most `n` match results (`0` disables the cache).
    pub fn with_cache_capacity(n: usize) -> Self {
        Sublist {
            nodes: vec![Node::new()],
            free: Vec::new(),
            edges: HashMap::default(),
            lits: HashMap::default(),
            hashed: None,
            seed: Default::default(),
            count: 0,
            index: HashMap::default(),
            cache: HashMap::default(),
            cache_cap: n,
            empty: Rc::new(SublistResult::default()),
            stats: SublistStats::default(),
            key_buf: Vec::new(),
            toks: Vec::new(),
            stack: Vec::new(),
            hits: Vec::new(),
            path: Vec::new(),
        }
    }

    /// A compact table (see the module docs): plain literal entries are kept under a
    /// hash of their subject, matched but never listed.
    pub fn compact() -> Self {
        Sublist {
            hashed: Some(HashMap::default()),
            ..Self::new()
        }
    }

    /// Number of distinct `(subject, queue, item)` entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// No entries at all.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Live trie nodes, the root included (for tests and memory accounting).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Number of cached match results.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Drops every cached match result.
    pub fn clear_cache(&mut self) {
        self.cache = HashMap::default();
    }

    /// Monitoring counters. The fanout figures scan the cache (at most its capacity),
    /// so this is meant for snapshots, not for the message path.
    pub fn stats(&self) -> SublistStats {
        let (mut max_fanout, mut total_fanout) = (0, 0);
        for r in self.cache.values() {
            let plain: usize = r.plain.iter().map(|&(_, n)| n as usize).sum();
            let fanout = plain + r.queues.len();
            max_fanout = max_fanout.max(fanout);
            total_fanout += fanout;
        }
        SublistStats {
            num_subs: self.count,
            num_cache: self.cache.len(),
            max_fanout,
            total_fanout,
            ..self.stats
        }
    }

    /// Adds one unit of interest of `item` in `subject` (optionally in queue group
    /// `queue`). If the same `(subject, queue, item)` is already present, its count goes
    /// up by one. Returns `false` (and changes nothing) if `subject` is not a valid
    /// subject or `queue` is `Some` empty name.
    pub fn insert(&mut self, subject: &[u8], queue: Option<&[u8]>, item: T) -> bool {
        self.insert_n(subject, queue, item, 1).is_some()
    }

    /// Adds `n` units of interest (see [`Sublist::insert`]). Returns the entry's new
    /// count, or `None` if rejected (invalid subject, empty queue name, `n == 0`).
    /// Counts saturate at `u32::MAX`.
    pub fn insert_n(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        item: T,
        n: u32,
    ) -> Option<u32> {
        if n == 0 || !is_valid_subject(subject) || queue.is_some_and(|q| q.is_empty()) {
            return None;
        }
        let literal = is_literal(subject);
        if literal && queue.is_none() && self.hashed.is_some() {
            let h = self.seed.hash_one(subject);
            let list = self.hashed.as_mut()?.entry(h).or_default();
            let new_count = match list.iter_mut().find(|(t, _)| *t == item) {
                Some(e) => {
                    e.1 = e.1.saturating_add(n);
                    e.1
                }
                None => {
                    push_list(list, (item, n));
                    self.count += 1;
                    n
                }
            };
            self.stats.num_inserts += 1;
            self.invalidate(subject);
            return Some(new_count);
        }
        // Make sure the walk below cannot run out of node ids halfway.
        let ntok = if literal {
            1
        } else {
            crate::subject::num_tokens(subject)
        };
        if self.free.len() + (MAX_NODES - self.nodes.len().min(MAX_NODES)) < ntok {
            return None;
        }

        let cur = if literal {
            match self.lits.get(subject) {
                Some(&c) => c,
                None => {
                    let c = self.alloc_node();
                    self.lits.insert(Box::from(subject), c);
                    c
                }
            }
        } else {
            self.walk_creating(subject)
        };

        let node = &mut self.nodes[cur as usize];
        let (slot, list) = match queue {
            None => (PLAIN, &mut node.plain),
            Some(q) => {
                let groups = node.queues.get_or_insert_with(|| Box::new(Vec::new()));
                let idx = match groups.iter().position(|g| g.name == q) {
                    Some(i) => i,
                    None => {
                        push_compact(
                            groups,
                            QueueEntries {
                                name: Bytes::copy_from_slice(q),
                                members: List::new(),
                            },
                        );
                        groups.len() - 1
                    }
                };
                (idx as u32, &mut groups[idx].members)
            }
        };
        let key = (cur, slot);
        let new_count = match find_entry(&self.index, key, list, &item) {
            Some(i) => {
                let e = &mut list[i];
                e.1 = e.1.saturating_add(n);
                e.1
            }
            None => {
                push_entry(&mut self.index, key, list, item, n);
                self.count += 1;
                n
            }
        };
        self.stats.num_inserts += 1;
        self.invalidate(subject);
        Some(new_count)
    }

    /// The trie node of wildcard pattern `subject`, created with its path if missing.
    fn walk_creating(&mut self, subject: &[u8]) -> u32 {
        let mut cur = ROOT;
        for tok in tokens(subject) {
            cur = if is_pwc(tok) {
                match self.nodes[cur as usize].pwc {
                    NONE => {
                        let c = self.alloc_node();
                        self.nodes[cur as usize].pwc = c;
                        c
                    }
                    c => c,
                }
            } else if is_fwc(tok) {
                match self.nodes[cur as usize].fwc {
                    NONE => {
                        let c = self.alloc_node();
                        self.nodes[cur as usize].fwc = c;
                        c
                    }
                    c => c,
                }
            } else {
                edge_key(&mut self.key_buf, cur, tok);
                match self.edges.get(&self.key_buf[..]) {
                    Some(&c) => c,
                    None => {
                        let c = self.alloc_node();
                        self.edges.insert(Box::from(&self.key_buf[..]), c);
                        self.nodes[cur as usize].nlit += 1;
                        c
                    }
                }
            };
        }
        self.trim_scratch();
        cur
    }

    /// Removes one unit of interest; returns `false` if `(subject, queue, item)` was not
    /// present.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, item: &T) -> bool {
        self.remove_n(subject, queue, item, 1).is_some()
    }

    /// Removes up to `n` units of interest. Returns `None` if `(subject, queue, item)`
    /// was not present, otherwise the remaining count (`0`: the entry is gone).
    pub fn remove_n(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        item: &T,
        n: u32,
    ) -> Option<u32> {
        if !is_valid_subject(subject) {
            return None;
        }
        let literal = is_literal(subject);
        if literal && queue.is_none() && self.hashed.is_some() {
            let h = self.seed.hash_one(subject);
            let hashed = self.hashed.as_mut()?;
            let list = hashed.get_mut(&h)?;
            let i = list.iter().position(|(t, _)| t == item)?;
            let e = &mut list[i];
            e.1 = e.1.saturating_sub(n);
            let left = e.1;
            if left == 0 {
                list.swap_remove(i);
                shrink_list(list);
                if list.is_empty() {
                    hashed.remove(&h);
                    if hashed.capacity() > 64 && hashed.len() * 4 < hashed.capacity() {
                        hashed.shrink_to(hashed.len() * 2);
                    }
                }
                self.count -= 1;
                if self.count == 0 {
                    self.reset();
                }
            }
            self.stats.num_removes += 1;
            self.invalidate(subject);
            return Some(left);
        }
        let cur = if literal {
            *self.lits.get(subject)?
        } else {
            // Walk, recording the path root..=leaf.
            self.path.clear();
            let mut cur = ROOT;
            self.path.push(cur);
            for tok in tokens(subject) {
                let node = &self.nodes[cur as usize];
                cur = if is_pwc(tok) {
                    node.pwc
                } else if is_fwc(tok) {
                    node.fwc
                } else if node.nlit == 0 {
                    NONE
                } else {
                    edge_key(&mut self.key_buf, cur, tok);
                    self.edges.get(&self.key_buf[..]).copied().unwrap_or(NONE)
                };
                if cur == NONE {
                    self.trim_scratch();
                    return None;
                }
                self.path.push(cur);
            }
            cur
        };

        let node = &mut self.nodes[cur as usize];
        let remaining = match queue {
            None => {
                let key = (cur, PLAIN);
                let i = find_entry(&self.index, key, &node.plain, item)?;
                let e = &mut node.plain[i];
                e.1 = e.1.saturating_sub(n);
                let left = e.1;
                if left == 0 {
                    remove_entry(&mut self.index, key, &mut node.plain, i);
                }
                left
            }
            Some(q) => {
                let groups = node.queues.as_mut()?;
                let gi = groups.iter().position(|g| g.name == q)?;
                let key = (cur, gi as u32);
                let members = &mut groups[gi].members;
                let i = find_entry(&self.index, key, members, item)?;
                let e = &mut members[i];
                e.1 = e.1.saturating_sub(n);
                let left = e.1;
                if left == 0 {
                    remove_entry(&mut self.index, key, members, i);
                    if members.is_empty() {
                        // The last group moves into slot `gi`: so does its index.
                        let last = groups.len() - 1;
                        groups.swap_remove(gi);
                        if gi != last {
                            if let Some(m) = self.index.remove(&(cur, last as u32)) {
                                self.index.insert(key, m);
                            }
                        }
                        if groups.is_empty() {
                            node.queues = None;
                        } else {
                            maybe_shrink(groups);
                        }
                    }
                }
                left
            }
        };
        if remaining == 0 {
            self.count -= 1;
            if literal {
                if !self.nodes[cur as usize].has_entries() {
                    self.lits.remove(subject);
                    self.free_node(cur);
                    if self.lits.capacity() > 64 && self.lits.len() * 4 < self.lits.capacity() {
                        self.lits.shrink_to(self.lits.len() * 2);
                    }
                }
            } else {
                self.prune(subject);
            }
            if self.count == 0 {
                self.reset();
            }
        }
        self.trim_scratch();
        self.stats.num_removes += 1;
        self.invalidate(subject);
        Some(remaining)
    }

    /// Unlinks and frees the empty nodes at the end of `self.path` (filled by
    /// `remove_n` for `subject`).
    fn prune(&mut self, subject: &[u8]) {
        // Tokens from the last one backwards: token k leads from path[k] to path[k+1].
        let mut k = self.path.len() - 1;
        for tok in subject.rsplit(|&b| b == crate::subject::TSEP) {
            let child = self.path[k];
            let parent = self.path[k - 1];
            if !self.nodes[child as usize].is_empty() {
                break;
            }
            if is_pwc(tok) {
                self.nodes[parent as usize].pwc = NONE;
            } else if is_fwc(tok) {
                self.nodes[parent as usize].fwc = NONE;
            } else {
                edge_key(&mut self.key_buf, parent, tok);
                self.edges.remove(&self.key_buf[..]);
                self.nodes[parent as usize].nlit -= 1;
            }
            self.free_node(child);
            k -= 1;
        }
    }

    /// Everything is gone: gives the arena's and the maps' memory back.
    fn reset(&mut self) {
        debug_assert!(self.edges.is_empty() && self.lits.is_empty());
        debug_assert!(self.index.is_empty());
        self.nodes.truncate(1);
        self.nodes[0] = Node::new();
        self.nodes.shrink_to_fit();
        self.free = Vec::new();
        self.edges = HashMap::default();
        self.lits = HashMap::default();
        self.index = HashMap::default();
        if let Some(h) = self.hashed.as_mut() {
            *h = HashMap::default();
        }
    }

    fn alloc_node(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.nodes.push(Node::new());
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn free_node(&mut self, id: u32) {
        // The node is empty; reset it to release any spare capacity.
        self.nodes[id as usize] = Node::new();
        self.free.push(id);
    }

    fn trim_scratch(&mut self) {
        if self.key_buf.capacity() > SCRATCH_KEEP {
            self.key_buf = Vec::new();
        }
        if self.path.capacity() > SCRATCH_KEEP {
            self.path = Vec::new();
        }
        if self.toks.capacity() > SCRATCH_KEEP {
            self.toks = Vec::new();
        }
        if self.stack.capacity() > SCRATCH_KEEP {
            self.stack = Vec::new();
        }
        if self.hits.capacity() > SCRATCH_KEEP {
            self.hits = Vec::new();
        }
    }

    /// Drops the cached results that the changed `pattern` (a valid subject) affects.
    fn invalidate(&mut self, pattern: &[u8]) {
        if self.cache.is_empty() {
            return;
        }
        if is_literal(pattern) {
            self.cache.remove(pattern);
        } else {
            self.cache.retain(|k, _| !matches_valid(pattern, k));
        }
    }

    /// All interest matching a published subject. Cached: repeated calls for the same
    /// subject return a clone of the same `Rc` without allocating. A subject that is
    /// empty or has an empty token matches nothing. `*`/`>` tokens in `subject` are
    /// literal tokens.
    pub fn match_subject(&mut self, subject: &[u8]) -> Rc<SublistResult<T>> {
        self.stats.num_matches += 1;
        if let Some(r) = self.cache.get(subject) {
            self.stats.cache_hits += 1;
            return Rc::clone(r);
        }
        let result = match self.collect(subject) {
            None => return Rc::clone(&self.empty),
            Some(r) if r.is_empty() => Rc::clone(&self.empty),
            Some(r) => Rc::new(r),
        };
        if self.cache_cap > 0 {
            if self.cache.len() >= self.cache_cap {
                self.evict();
            }
            self.cache.insert(Box::from(subject), Rc::clone(&result));
        }
        result
    }

    /// Evicts about a quarter of the cache (arbitrary entries).
    fn evict(&mut self) {
        let keep = self.cache_cap - self.cache_cap.div_ceil(4);
        let mut drop_n = self.cache.len().saturating_sub(keep);
        self.cache.retain(|_, _| {
            if drop_n > 0 {
                drop_n -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Walks the trie for `subject`. `None` if the subject has an empty token.
    fn collect(&mut self, subject: &[u8]) -> Option<SublistResult<T>> {
        self.toks.clear();
        let mut start = 0usize;
        for i in memchr::memchr_iter(crate::subject::TSEP, subject) {
            self.toks.push((start, i));
            start = i + 1;
        }
        self.toks.push((start, subject.len()));
        if self.toks.iter().any(|&(a, b)| a == b) {
            self.trim_scratch();
            return None;
        }
        let ntok = self.toks.len();

        self.hits.clear();
        self.stack.clear();
        if let Some(&n) = self.lits.get(subject) {
            self.hits.push(n);
        }
        let root = &self.nodes[ROOT as usize];
        if root.pwc != NONE || root.fwc != NONE || root.nlit > 0 {
            self.stack.push((ROOT, 0));
        }
        while let Some((n, i)) = self.stack.pop() {
            let node = &self.nodes[n as usize];
            if i == ntok {
                if node.has_entries() {
                    self.hits.push(n);
                }
                continue;
            }
            if node.fwc != NONE {
                self.hits.push(node.fwc);
            }
            if node.pwc != NONE {
                self.stack.push((node.pwc, i + 1));
            }
            if node.nlit > 0 {
                let (a, b) = self.toks[i];
                edge_key(&mut self.key_buf, n, &subject[a..b]);
                if let Some(&c) = self.edges.get(&self.key_buf[..]) {
                    self.stack.push((c, i + 1));
                }
            }
        }

        let mut res = SublistResult::default();
        if let Some(hashed) = &self.hashed {
            if let Some(list) = hashed.get(&self.seed.hash_one(subject)) {
                res.plain.extend(list.iter().cloned());
            }
        }
        for &h in &self.hits {
            let node = &self.nodes[h as usize];
            res.plain.extend(node.plain.iter().cloned());
            if let Some(groups) = &node.queues {
                for g in groups.iter() {
                    let sum = sum_counts(&g.members);
                    match res.queues.iter_mut().find(|m| m.name == g.name) {
                        Some(m) => {
                            m.members.extend(g.members.iter().cloned());
                            m.total = m.total.saturating_add(sum);
                        }
                        None => res.queues.push(QueueMatch {
                            name: g.name.clone(),
                            members: g.members.to_vec(),
                            total: sum,
                        }),
                    }
                }
            }
        }
        self.trim_scratch();
        Some(res)
    }

    /// Visits every entry (for monitoring): subject, queue, item, count. Allocates
    /// temporary bookkeeping proportional to the number of nodes. A compact table's
    /// hashed entries have no subject to report and are skipped.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Option<&[u8]>, &T, u32)) {
        fn visit<T>(
            f: &mut impl FnMut(&[u8], Option<&[u8]>, &T, u32),
            subj: &[u8],
            node: &Node<T>,
        ) {
            for (item, c) in &node.plain {
                f(subj, None, item, *c);
            }
            if let Some(groups) = &node.queues {
                for g in groups.iter() {
                    for (item, c) in &g.members {
                        f(subj, Some(&g.name), item, *c);
                    }
                }
            }
        }
        for (subj, &n) in &self.lits {
            visit(&mut f, subj, &self.nodes[n as usize]);
        }
        // For every node: (parent, token leading to it).
        let mut up: Vec<(u32, &[u8])> = vec![(NONE, &[][..]); self.nodes.len()];
        for (k, &c) in &self.edges {
            let mut p = [0u8; 4];
            p.copy_from_slice(&k[..4]);
            up[c as usize] = (u32::from_le_bytes(p), &k[4..]);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.pwc != NONE {
                up[node.pwc as usize] = (i as u32, b"*");
            }
            if node.fwc != NONE {
                up[node.fwc as usize] = (i as u32, b">");
            }
        }
        let mut toks: Vec<&[u8]> = Vec::new();
        let mut subj: Vec<u8> = Vec::new();
        let is_lit: std::collections::HashSet<u32, foldhash::fast::RandomState> =
            self.lits.values().copied().collect();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.has_entries() || is_lit.contains(&(i as u32)) {
                continue;
            }
            toks.clear();
            let mut n = i as u32;
            while n != ROOT && n != NONE {
                let (p, t) = up[n as usize];
                toks.push(t);
                n = p;
            }
            subj.clear();
            for (j, t) in toks.iter().rev().enumerate() {
                if j > 0 {
                    subj.push(crate::subject::TSEP);
                }
                subj.extend_from_slice(t);
            }
            visit(&mut f, &subj, node);
        }
    }
}
