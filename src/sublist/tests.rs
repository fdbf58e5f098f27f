use super::*;
use crate::subject::matches;
use std::collections::BTreeMap;

/// Order-independent view of a result: sorted plain entries, queue name -> (sorted
/// members, total).
type QMap = BTreeMap<Vec<u8>, (Vec<(u32, u32)>, u32)>;
type Norm = (Vec<(u32, u32)>, QMap);

fn norm(r: &SublistResult<u32>) -> Norm {
    let mut plain = r.plain.clone();
    plain.sort_unstable();
    let mut queues = BTreeMap::new();
    for q in &r.queues {
        let mut m = q.members.clone();
        m.sort_unstable();
        assert!(
            queues.insert(q.name.to_vec(), (m, q.total)).is_none(),
            "queue {:?} listed twice",
            q.name
        );
    }
    (plain, queues)
}

/// The model: (subject, queue, item) -> count.
type Model = BTreeMap<(Vec<u8>, Option<Vec<u8>>, u32), u32>;

fn brute(model: &Model, subject: &[u8]) -> Norm {
    let mut plain = Vec::new();
    let mut queues = QMap::new();
    for ((pat, q, item), &c) in model {
        if !matches(pat, subject) {
            continue;
        }
        match q {
            None => plain.push((*item, c)),
            Some(q) => {
                let e = queues.entry(q.clone()).or_default();
                e.0.push((*item, c));
                e.1 += c;
            }
        }
    }
    plain.sort_unstable();
    for v in queues.values_mut() {
        v.0.sort_unstable();
    }
    (plain, queues)
}

fn dump(s: &Sublist<u32>) -> Model {
    let mut m = Model::new();
    s.for_each(|subj, q, item, c| {
        let prev = m.insert((subj.to_vec(), q.map(|q| q.to_vec()), *item), c);
        assert!(prev.is_none(), "for_each visited an entry twice");
    });
    m
}

fn plain_of(r: &SublistResult<u32>) -> Vec<(u32, u32)> {
    norm(r).0
}

#[test]
fn empty_sublist() {
    let mut s: Sublist<u32> = Sublist::new();
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert!(s.match_subject(b"foo").is_empty());
    assert!(s.match_subject(b"").is_empty());
    assert!(!s.remove(b"foo", None, &1));
    assert_eq!(s.node_count(), 1);
}

#[test]
fn insert_rejects_invalid() {
    let mut s: Sublist<u32> = Sublist::new();
    for bad in [
        &b""[..],
        b".",
        b"a.",
        b".a",
        b"a..b",
        b"a b",
        b"a\tb",
        b"a.>.b",
        b">.a",
        b"a\r\n",
    ] {
        assert!(
            !s.insert(bad, None, 1),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(!s.insert(bad, Some(b"q"), 1));
        assert!(!s.remove(bad, None, &1));
    }
    assert!(!s.insert(b"foo", Some(b""), 1));
    assert_eq!(s.insert_n(b"foo", None, 1, 0), None);
    assert!(s.is_empty());
    assert_eq!(s.node_count(), 1);
}

#[test]
fn insert_remove_counts() {
    let mut s: Sublist<u32> = Sublist::new();
    assert!(s.insert(b"foo.bar", None, 7));
    assert!(s.insert(b"foo.bar", None, 7));
    assert!(s.insert(b"foo.bar", None, 8));
    assert_eq!(s.len(), 2);
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(7, 2), (8, 1)]);

    assert!(s.remove(b"foo.bar", None, &7));
    assert_eq!(s.len(), 2);
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(7, 1), (8, 1)]);
    assert!(s.remove(b"foo.bar", None, &7));
    assert_eq!(s.len(), 1);
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(8, 1)]);
    assert!(!s.remove(b"foo.bar", None, &7));
    assert!(!s.remove(b"foo.bar", Some(b"q"), &8));
    assert!(!s.remove(b"foo", None, &8));
    assert!(!s.remove(b"foo.bar.baz", None, &8));
    assert!(!s.remove(b"foo.*", None, &8));
    assert!(s.remove(b"foo.bar", None, &8));
    assert!(s.is_empty());
    assert!(s.match_subject(b"foo.bar").is_empty());
    assert_eq!(s.node_count(), 1);
}

#[test]
fn insert_n_remove_n() {
    let mut s: Sublist<u16> = Sublist::new();
    assert_eq!(s.insert_n(b"a.b", Some(b"q"), 3, 5), Some(5));
    assert_eq!(s.insert_n(b"a.b", Some(b"q"), 3, 2), Some(7));
    assert_eq!(s.insert_n(b"a.*", Some(b"q"), 4, 1), Some(1));
    let r = s.match_subject(b"a.b");
    assert_eq!(r.queues.len(), 1);
    assert_eq!(r.queues[0].total, 8);
    assert_eq!(s.remove_n(b"a.b", Some(b"q"), &3, 3), Some(4));
    assert_eq!(s.match_subject(b"a.b").queues[0].total, 5);
    assert_eq!(s.remove_n(b"a.b", Some(b"q"), &3, 100), Some(0));
    assert_eq!(s.remove_n(b"a.b", Some(b"q"), &3, 1), None);
    assert_eq!(s.match_subject(b"a.b").queues[0].total, 1);
    assert_eq!(s.len(), 1);
    assert_eq!(s.insert_n(b"x", None, 1, u32::MAX), Some(u32::MAX));
    assert_eq!(s.insert_n(b"x", None, 1, 5), Some(u32::MAX));
}

#[test]
fn wildcards() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"a.*", None, 1);
    s.insert(b"a.>", None, 2);
    s.insert(b">", None, 3);
    s.insert(b"*.b", None, 4);
    s.insert(b"a.b", None, 5);
    s.insert(b"*.*.c", None, 6);
    s.insert(b"*", None, 7);
    assert_eq!(
        plain_of(&s.match_subject(b"a.b")),
        vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
    );
    assert_eq!(
        plain_of(&s.match_subject(b"a.b.c")),
        vec![(2, 1), (3, 1), (6, 1)]
    );
    assert_eq!(plain_of(&s.match_subject(b"a")), vec![(3, 1), (7, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"x.b")), vec![(3, 1), (4, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"x.y.z")), vec![(3, 1)]);
}

#[test]
fn same_item_two_patterns_appears_twice() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"foo.*", None, 1);
    s.insert(b"foo.bar", None, 1);
    s.insert(b"foo.>", None, 1);
    assert_eq!(
        plain_of(&s.match_subject(b"foo.bar")),
        vec![(1, 1), (1, 1), (1, 1)]
    );
}

#[test]
fn literal_star_publishing() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"foo.*", None, 1); // wildcard
    s.insert(b"foo.bar", None, 2);
    s.insert(b"foo.>", None, 3);
    s.insert(b"foo*", None, 4); // literal token
    s.insert(b"foo.*bar", None, 5); // literal token
                                    // Published `foo.*` is literal: matched by the wildcards only.
    assert_eq!(plain_of(&s.match_subject(b"foo.*")), vec![(1, 1), (3, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"foo.>")), vec![(1, 1), (3, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"foo*")), vec![(4, 1)]);
    assert_eq!(
        plain_of(&s.match_subject(b"foo.*bar")),
        vec![(1, 1), (3, 1), (5, 1)]
    );
    assert_eq!(
        plain_of(&s.match_subject(b"foo.xbar")),
        vec![(1, 1), (3, 1)]
    );
    assert_eq!(plain_of(&s.match_subject(b"*")), Vec::<(u32, u32)>::new());
    s.insert(b"*", None, 6);
    s.insert(b">", None, 7);
    assert_eq!(plain_of(&s.match_subject(b"*")), vec![(6, 1), (7, 1)]);
    assert_eq!(plain_of(&s.match_subject(b">")), vec![(6, 1), (7, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"*.*")), vec![(7, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"foo.*.x")), vec![(3, 1), (7, 1)]);
}

#[test]
fn empty_token_subjects_match_nothing() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b">", None, 1);
    s.insert(b"*", None, 2);
    s.insert(b"a.>", None, 3);
    s.insert(b"a.*", None, 4);
    for bad in [
        &b""[..],
        b".",
        b"..",
        b"a.",
        b".a",
        b"a..b",
        b"a.b.",
        b"a..",
    ] {
        assert!(
            s.match_subject(bad).is_empty(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Not cached.
    assert_eq!(s.cache_len(), 0);
}

#[test]
fn queue_grouping_across_patterns() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"foo.*", Some(b"q"), 1);
    s.insert(b"foo.bar", Some(b"q"), 2);
    s.insert(b"foo.>", Some(b"q"), 3);
    s.insert(b"foo.bar", Some(b"r"), 4);
    s.insert(b"foo.bar", Some(b"r"), 4);
    s.insert(b"foo.bar", None, 5);
    s.insert(b"foo.baz", Some(b"q"), 6);
    let r = s.match_subject(b"foo.bar");
    let (plain, queues) = norm(&r);
    assert_eq!(plain, vec![(5, 1)]);
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[&b"q"[..]], (vec![(1, 1), (2, 1), (3, 1)], 3));
    assert_eq!(queues[&b"r"[..]], (vec![(4, 2)], 2));
    let r = s.match_subject(b"foo.baz");
    let (plain, queues) = norm(&r);
    assert!(plain.is_empty());
    assert_eq!(queues[&b"q"[..]], (vec![(1, 1), (3, 1), (6, 1)], 3));
    // Queue and plain entries of the same item are distinct entries.
    s.insert(b"x", None, 9);
    s.insert(b"x", Some(b"q"), 9);
    assert_eq!(s.len(), 8);
    assert!(s.remove(b"x", Some(b"q"), &9));
    assert_eq!(plain_of(&s.match_subject(b"x")), vec![(9, 1)]);
    assert!(s.match_subject(b"x").queues.is_empty());
}

#[test]
fn cache_hit_returns_same_rc() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"foo.*", None, 1);
    let a = s.match_subject(b"foo.bar");
    let b = s.match_subject(b"foo.bar");
    assert!(Rc::ptr_eq(&a, &b));
    let st = s.stats();
    assert_eq!(st.num_matches, 2);
    assert_eq!(st.cache_hits, 1);
    assert_eq!(st.num_cache, 1);
    // No-interest results are cached too (shared empty result).
    let e1 = s.match_subject(b"nobody");
    let e2 = s.match_subject(b"nobody");
    assert!(e1.is_empty() && Rc::ptr_eq(&e1, &e2));
    assert_eq!(s.cache_len(), 2);
}

#[test]
fn cache_invalidation_insert_and_remove() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"foo.bar", None, 1);
    let subjects: &[&[u8]] = &[b"foo.bar", b"foo.baz", b"foo.bar.x", b"other", b"foo.*"];
    for &x in subjects {
        s.match_subject(x);
    }
    assert_eq!(s.cache_len(), subjects.len());

    // Literal insert: only that subject is invalidated.
    s.insert(b"foo.bar", None, 2);
    assert_eq!(s.cache_len(), subjects.len() - 1);
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(1, 1), (2, 1)]);

    // Wildcard insert: foo.bar, foo.baz and the literal foo.* are invalidated.
    s.insert(b"foo.*", None, 3);
    assert_eq!(s.cache_len(), 2); // foo.bar.x, other
    assert_eq!(
        plain_of(&s.match_subject(b"foo.bar")),
        vec![(1, 1), (2, 1), (3, 1)]
    );
    assert_eq!(plain_of(&s.match_subject(b"foo.baz")), vec![(3, 1)]);
    assert_eq!(plain_of(&s.match_subject(b"foo.*")), vec![(3, 1)]);
    assert!(s.match_subject(b"foo.bar.x").is_empty());

    s.insert(b">", None, 4);
    assert_eq!(s.cache_len(), 0);
    assert_eq!(plain_of(&s.match_subject(b"other")), vec![(4, 1)]);

    // Removes.
    s.match_subject(b"foo.bar");
    s.match_subject(b"foo.baz");
    assert!(s.remove(b"foo.*", None, &3));
    assert_eq!(
        plain_of(&s.match_subject(b"foo.bar")),
        vec![(1, 1), (2, 1), (4, 1)]
    );
    assert_eq!(plain_of(&s.match_subject(b"foo.baz")), vec![(4, 1)]);
    assert!(s.remove(b">", None, &4));
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(1, 1), (2, 1)]);
    assert!(s.match_subject(b"foo.baz").is_empty());
    assert!(s.match_subject(b"other").is_empty());
    // A count change (not a removal) also invalidates.
    s.insert(b"foo.bar", None, 1);
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(1, 2), (2, 1)]);
    assert!(s.remove(b"foo.bar", None, &1));
    assert_eq!(plain_of(&s.match_subject(b"foo.bar")), vec![(1, 1), (2, 1)]);
    // Failed removes and rejected inserts keep the cache.
    let before = s.cache_len();
    assert!(!s.remove(b"foo.bar", None, &99));
    assert!(!s.insert(b"foo..bar", None, 1));
    assert_eq!(s.cache_len(), before);
}

#[test]
fn old_results_stay_valid_after_change() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"a", None, 1);
    let old = s.match_subject(b"a");
    s.insert(b"a", None, 2);
    let new = s.match_subject(b"a");
    assert_eq!(plain_of(&old), vec![(1, 1)]);
    assert_eq!(plain_of(&new), vec![(1, 1), (2, 1)]);
}

#[test]
fn cache_is_bounded() {
    let mut s: Sublist<u32> = Sublist::with_cache_capacity(64);
    s.insert(b">", None, 1);
    for i in 0..10_000u32 {
        let subj = format!("s.{i}");
        assert_eq!(plain_of(&s.match_subject(subj.as_bytes())), vec![(1, 1)]);
        assert!(s.cache_len() <= 64);
    }
    assert!(s.cache_len() > 0);

    let mut s: Sublist<u32> = Sublist::with_cache_capacity(0);
    s.insert(b"a", None, 1);
    let r1 = s.match_subject(b"a");
    let r2 = s.match_subject(b"a");
    assert_eq!(r1, r2);
    assert_eq!(s.cache_len(), 0);

    let mut s: Sublist<u32> = Sublist::with_cache_capacity(1);
    s.insert(b"a", None, 1);
    for subj in [&b"a"[..], b"b", b"a", b"c"] {
        s.match_subject(subj);
        assert!(s.cache_len() <= 1);
    }
    assert_eq!(plain_of(&s.match_subject(b"a")), vec![(1, 1)]);
}

#[test]
fn nodes_are_freed() {
    let mut s: Sublist<u32> = Sublist::new();
    // Literal subjects take one node each outside the trie; wildcard patterns a path.
    s.insert(b"a.b.c", None, 1);
    s.insert(b"a.b", None, 1);
    s.insert(b"a.*.c", Some(b"q"), 2);
    s.insert(b"a.>", None, 3);
    assert_eq!(s.node_count(), 1 + 2 + 3 + 1);
    assert!(s.remove(b"a.b.c", None, &1));
    assert_eq!(s.node_count(), 1 + 1 + 3 + 1);
    assert!(s.remove(b"a.*.c", Some(b"q"), &2));
    // `a` stays for `a.>`.
    assert_eq!(s.node_count(), 1 + 1 + 1 + 1);
    assert!(s.remove(b"a.b", None, &1));
    assert_eq!(s.node_count(), 1 + 1 + 1);
    // Free list reuse.
    s.insert(b"x.y", None, 4);
    assert_eq!(s.node_count(), 4);
    assert!(s.remove(b"a.>", None, &3));
    assert!(s.remove(b"x.y", None, &4));
    assert_eq!(s.node_count(), 1);
    assert!(s.is_empty());
    assert!(s.edges.is_empty());
    assert!(s.lits.is_empty());
    assert_eq!(s.nodes.len(), 1);
    // Still usable after a full reset.
    s.insert(b"a.b", None, 1);
    assert_eq!(plain_of(&s.match_subject(b"a.b")), vec![(1, 1)]);
}

#[test]
fn for_each_reports_everything() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"a.b", None, 1);
    s.insert(b"a.b", None, 1);
    s.insert(b"a.*", Some(b"q"), 2);
    s.insert(b">", None, 3);
    s.insert(b"*.>", Some(b"r"), 4);
    s.insert(b"foo*.b>r", None, 5);
    let m = dump(&s);
    let want: Model = [
        ((b"a.b".to_vec(), None, 1), 2),
        ((b"a.*".to_vec(), Some(b"q".to_vec()), 2), 1),
        ((b">".to_vec(), None, 3), 1),
        ((b"*.>".to_vec(), Some(b"r".to_vec()), 4), 1),
        ((b"foo*.b>r".to_vec(), None, 5), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(m, want);
}

#[test]
fn deep_subjects_do_not_overflow() {
    let mut s: Sublist<u32> = Sublist::new();
    let deep: Vec<u8> = std::iter::repeat_n(&b"a."[..], 200_000)
        .flatten()
        .copied()
        .chain(*b"end")
        .collect();
    assert!(s.insert(&deep, None, 1));
    let mut pat = deep[..deep.len() - 3].to_vec();
    pat.push(b'*');
    assert!(s.insert(&pat, None, 2));
    assert_eq!(plain_of(&s.match_subject(&deep)), vec![(1, 1), (2, 1)]);
    assert_eq!(dump(&s).len(), 2);
    assert!(s.remove(&deep, None, &1));
    assert!(s.remove(&pat, None, &2));
    assert_eq!(s.node_count(), 1);
    s.insert(&deep, None, 1);
    drop(s); // dropping a deep trie must not recurse
}

#[test]
fn rc_items() {
    // The shape used by a shard for its own subscriptions.
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct Sub {
        sid: u64,
    }
    let mut s: Sublist<Rc<Sub>> = Sublist::new();
    let a = Rc::new(Sub { sid: 1 });
    let b = Rc::new(Sub { sid: 2 });
    s.insert(b"foo", None, a.clone());
    s.insert(b"foo", Some(b"q"), b.clone());
    let r = s.match_subject(b"foo");
    assert_eq!(r.plain.len(), 1);
    assert_eq!(r.plain[0].0.sid, 1);
    assert_eq!(r.queues[0].members[0].0.sid, 2);
    drop(r);
    assert!(s.remove(b"foo", None, &a));
    assert!(s.remove(b"foo", Some(b"q"), &b));
    s.match_subject(b"foo");
    assert_eq!(Rc::strong_count(&a), 1);
    assert_eq!(Rc::strong_count(&b), 1);
}

/// xorshift64*: tiny deterministic PRNG for tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_subject(rng: &mut Rng, toks: &[&[u8]], allow_empty: bool) -> Vec<u8> {
    let n = 1 + rng.below(4) as usize;
    let mut v = Vec::new();
    for i in 0..n {
        if i > 0 {
            v.push(b'.');
        }
        if allow_empty && rng.below(30) == 0 {
            continue; // empty token
        }
        v.extend_from_slice(toks[rng.below(toks.len() as u64) as usize]);
    }
    v
}

#[test]
fn randomized_against_brute_force() {
    for seed in 1..=6u64 {
        randomized(seed, &[b"a", b"b", b"c", b"*", b">", b"a*"], 6, 3000, false);
    }
}

/// The same for a compact table (the shards' replicas): plain literal entries live
/// under a hash of their subject and must match exactly as the full table's do.
#[test]
fn randomized_compact_against_brute_force() {
    for seed in 1..=6u64 {
        randomized(seed, &[b"a", b"b", b"c", b"*", b">", b"a*"], 6, 3000, true);
    }
}

/// Few patterns and many items: entry lists cross [`INDEX_MIN`] both ways, so the
/// indexed insert/remove paths (and the index moving with a removed queue group) are
/// checked against the model too.
#[test]
fn randomized_long_lists_against_brute_force() {
    for seed in 1..=2u64 {
        randomized(seed, &[b"a"], 3 * INDEX_MIN as u64, 6000, false);
    }
    for seed in 3..=4u64 {
        randomized(seed, &[b"a", b"*"], 3 * INDEX_MIN as u64, 12000, seed == 4);
    }
}

/// Building and tearing down `n` subscriptions on one subject (one plain list and
/// one queue group) compares items a bounded number of times per operation, not
/// `O(n)` times: a client sending 10^5 SUBs on one subject cannot stall its shard.
#[test]
fn many_entries_on_one_subject_are_linear() {
    use std::cell::Cell;
    thread_local!(static EQS: Cell<u64> = const { Cell::new(0) });
    #[derive(Clone, Debug)]
    struct Item(u32);
    impl std::hash::Hash for Item {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            self.0.hash(h)
        }
    }
    impl PartialEq for Item {
        fn eq(&self, o: &Self) -> bool {
            EQS.with(|c| c.set(c.get() + 1));
            self.0 == o.0
        }
    }
    impl Eq for Item {}
    const N: u32 = 20_000;
    let mut s: Sublist<Item> = Sublist::new();
    for q in [None, Some(&b"workers"[..])] {
        EQS.with(|c| c.set(0));
        for i in 0..N {
            assert_eq!(s.insert_n(b"orders.new", q, Item(i), 1), Some(1));
        }
        assert_eq!(s.insert_n(b"orders.new", q, Item(7), 1), Some(2));
        for i in (0..N).rev() {
            assert!(s.remove(b"orders.new", q, &Item(i)));
        }
        assert_eq!(s.remove_n(b"orders.new", q, &Item(7), 1), Some(0));
        let eqs = EQS.with(|c| c.get());
        // Linear scans below INDEX_MIN cost about INDEX_MIN^2 in all; hash probes a
        // few comparisons each. Quadratic behaviour would be about N^2 / 2 = 2 * 10^8.
        assert!(
            eqs < 8 * N as u64,
            "{eqs} comparisons for {N} entries ({q:?})"
        );
    }
    assert!(s.is_empty());
    assert_eq!(s.node_count(), 1);
}

fn randomized(seed: u64, pattern_tokens: &[&[u8]], items: u64, steps: usize, compact: bool) {
    const PUB_TOKENS: &[&[u8]] = &[b"a", b"b", b"c", b"d", b"*", b">", b"a*"];
    const QUEUES: &[&[u8]] = &[b"q1", b"q2", b"q3"];
    {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let cap = [0usize, 1, 8, 1024][(seed % 4) as usize];
        let mut s: Sublist<u32> = if compact {
            Sublist {
                cache_cap: cap,
                ..Sublist::compact()
            }
        } else {
            Sublist::with_cache_capacity(cap)
        };
        let mut model = Model::new();
        for step in 0..steps {
            let op = rng.below(10);
            if op < 6 {
                let subj = random_subject(&mut rng, pattern_tokens, false);
                let q = if rng.below(3) == 0 {
                    Some(QUEUES[rng.below(3) as usize].to_vec())
                } else {
                    None
                };
                let item = rng.below(items) as u32;
                let ok = s.insert(&subj, q.as_deref(), item);
                assert_eq!(ok, crate::subject::is_valid_subject(&subj));
                if ok {
                    *model.entry((subj, q, item)).or_insert(0) += 1;
                }
            } else if op < 9 && !model.is_empty() {
                // Remove an existing entry (or a near miss).
                let idx = rng.below(model.len() as u64) as usize;
                let (key, _) = model.iter().nth(idx).map(|(k, v)| (k.clone(), *v)).unwrap();
                let (subj, q, mut item) = key;
                if rng.below(5) == 0 {
                    item += items as u32; // not present
                }
                let removed = s.remove(&subj, q.as_deref(), &item);
                let k = (subj, q, item);
                assert_eq!(removed, model.contains_key(&k));
                if removed {
                    let c = model.get_mut(&k).unwrap();
                    *c -= 1;
                    if *c == 0 {
                        model.remove(&k);
                    }
                }
            } else {
                let subj = random_subject(&mut rng, pattern_tokens, false);
                // A random remove: may or may not hit an entry.
                let item = rng.below(items) as u32;
                let removed = s.remove(&subj, None, &item);
                let k = (subj, None, item);
                assert_eq!(removed, model.contains_key(&k));
                if let Some(c) = model.get_mut(&k) {
                    *c -= 1;
                    if *c == 0 {
                        model.remove(&k);
                    }
                }
            }
            assert_eq!(s.len(), model.len(), "seed {seed} step {step}");
            for _ in 0..4 {
                let p = random_subject(&mut rng, PUB_TOKENS, true);
                let got = norm(&s.match_subject(&p));
                assert_eq!(
                    got,
                    brute(&model, &p),
                    "seed {seed} step {step} subject {:?}",
                    String::from_utf8_lossy(&p)
                );
            }
            if step % 500 == 0 && !compact {
                assert_eq!(dump(&s), model);
            }
        }
        if !compact {
            assert_eq!(dump(&s), model);
        }
        // Drain everything: the trie must shrink back to the root.
        for ((subj, q, item), c) in std::mem::take(&mut model) {
            for _ in 0..c {
                assert!(s.remove(&subj, q.as_deref(), &item));
            }
            assert!(!s.remove(&subj, q.as_deref(), &item));
        }
        assert!(s.is_empty());
        assert_eq!(s.node_count(), 1);
        assert!(s.match_subject(b"a").is_empty());
    }
}

// ---- allocation counting -------------------------------------------------------
//
// A counting global allocator for this test binary. It counts per thread, so tests
// running in parallel do not disturb each other.

mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        pub static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    fn bump() {
        // `try_with`: the thread-local may be gone during thread teardown.
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            bump();
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            bump();
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            bump();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn allocs() -> u64 {
        ALLOCS.with(|c| c.get())
    }
}

#[test]
fn cache_hit_does_not_allocate() {
    let mut s: Sublist<u32> = Sublist::new();
    s.insert(b"foo.*", None, 1);
    s.insert(b"foo.bar", Some(b"q"), 2);
    s.insert(b">", None, 3);
    let subjects: Vec<Vec<u8>> = (0..16).map(|i| format!("foo.s{i}").into_bytes()).collect();
    // Warm the cache.
    for subj in &subjects {
        s.match_subject(subj);
    }
    s.match_subject(b"foo.bar");
    let before = counting::allocs();
    let mut total = 0usize;
    for i in 0..10_000 {
        let r = s.match_subject(&subjects[i % subjects.len()]);
        total += r.plain.len();
        let r = s.match_subject(b"foo.bar");
        total += r.queues.len();
    }
    let after = counting::allocs();
    assert_eq!(after - before, 0, "cache hits allocated");
    assert_eq!(total, 10_000 * 3);
    // Sanity: the counter works.
    let before = counting::allocs();
    let v = std::hint::black_box(vec![1u8; 10]);
    drop(v);
    assert!(counting::allocs() > before);
}

#[test]
fn warm_miss_without_cache_does_not_allocate() {
    // With the cache disabled, a match that finds nothing reuses scratch buffers and
    // the shared empty result: no allocation at all once warm.
    let mut s: Sublist<u32> = Sublist::with_cache_capacity(0);
    s.insert(b"foo.bar", None, 1);
    s.match_subject(b"zzz.yyy");
    let before = counting::allocs();
    for _ in 0..1000 {
        assert!(s.match_subject(b"zzz.yyy").is_empty());
        assert!(s.match_subject(b"foo.zzz").is_empty());
    }
    assert_eq!(counting::allocs() - before, 0);
}

/// Micro benchmark: `cargo test --release -- --ignored --nocapture bench_match`.
#[test]
#[ignore]
fn bench_match() {
    use std::time::Instant;
    let mut s: Sublist<u32> = Sublist::new();
    for i in 0..100_000u32 {
        s.insert(format!("svc.{}.req", i).as_bytes(), None, i);
    }
    s.insert(b"svc.*.req", Some(b"workers"), 1);
    s.insert(b"svc.>", None, 2);
    let subjects: Vec<Vec<u8>> = (0..512)
        .map(|i| format!("svc.{i}.req").into_bytes())
        .collect();
    for subj in &subjects {
        s.match_subject(subj);
    }
    let n = 2_000_000;
    let before = counting::allocs();
    let t = Instant::now();
    let mut x = 0usize;
    for i in 0..n {
        x += s.match_subject(&subjects[i % subjects.len()]).plain.len();
    }
    let hit = t.elapsed();
    assert_eq!(counting::allocs() - before, 0);
    let t = Instant::now();
    for i in 0..n / 10 {
        // Misses: unique subjects, evicting as they go.
        let subj = format!("svc.{}.req", (i * 7919) % 100_000);
        s.clear_cache();
        x += s.match_subject(subj.as_bytes()).plain.len();
    }
    let miss = t.elapsed();
    println!(
        "cache hit: {:.1} ns/match, miss (incl. clear+format): {:.1} ns/match, nodes {}, x {}",
        hit.as_nanos() as f64 / n as f64,
        miss.as_nanos() as f64 / (n / 10) as f64,
        s.node_count(),
        x
    );
}

#[test]
fn node_is_compact() {
    assert!(std::mem::size_of::<Node<Rc<u64>>>() <= 48);
    assert!(std::mem::size_of::<Node<u16>>() <= 48);
}

/// Rough memory per subscription: `cargo test --release -- --ignored --nocapture mem_per_sub`.
#[test]
#[ignore]
fn mem_per_sub() {
    fn rss_bytes() -> usize {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = s
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }
    const N: u32 = 1_000_000;
    let before = rss_bytes();
    let mut s: Sublist<Rc<u64>> = Sublist::new();
    let mut name = Vec::with_capacity(64);
    for i in 0..N {
        name.clear();
        name.extend_from_slice(format!("app.orders.{i}.updates").as_bytes());
        s.insert(&name, None, Rc::new(u64::from(i)));
    }
    let after = rss_bytes();
    println!(
        "{} subs, {} nodes: ~{} bytes/sub (RSS delta, incl. the Rc<u64> items)",
        s.len(),
        s.node_count(),
        (after - before) / N as usize
    );
}
