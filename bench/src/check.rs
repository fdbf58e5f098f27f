//! Per-subscriber delivery checks: count, loss, duplication and order per publisher.

/// Totals of one check, summed over subscribers and publishers.
#[derive(Clone, Debug, Default)]
pub struct CheckSum {
    pub expected: u64,
    pub unique: u64,
    pub lost: u64,
    pub dups: u64,
    pub reordered: u64,
    pub foreign: u64,
}

impl CheckSum {
    pub fn add(&mut self, o: &CheckSum) {
        self.expected += o.expected;
        self.unique += o.unique;
        self.lost += o.lost;
        self.dups += o.dups;
        self.reordered += o.reordered;
        self.foreign += o.foreign;
    }
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.dups == 0 && self.reordered == 0 && self.foreign == 0
    }
}

/// For a subscriber that must see every message of every publisher in order.
/// Fast path is one compare per message; gaps are kept as ranges so a late
/// arrival is told apart from a duplicate.
#[derive(Default)]
pub struct Ordered {
    next: u64,
    unique: u64,
    dups: u64,
    reordered: u64,
    gaps: Vec<(u64, u64)>,
}

impl Ordered {
    #[inline]
    pub fn record(&mut self, seq: u64) {
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
        } else if seq > self.next {
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            self.unique += 1;
        } else {
            self.slow(seq);
        }
    }
    #[cold]
    fn slow(&mut self, seq: u64) {
        if let Some(i) = self.gaps.iter().position(|&(a, b)| seq >= a && seq < b) {
            let (a, b) = self.gaps[i];
            self.gaps.remove(i);
            if seq + 1 < b {
                self.gaps.insert(i, (seq + 1, b));
            }
            if a < seq {
                self.gaps.insert(i, (a, seq));
            }
            self.unique += 1;
            self.reordered += 1;
        } else {
            self.dups += 1;
        }
    }
    pub fn summary(&self, published: u64) -> CheckSum {
        CheckSum {
            expected: published,
            unique: self.unique,
            lost: published.saturating_sub(self.unique),
            dups: self.dups,
            reordered: self.reordered,
            foreign: self.next.saturating_sub(published),
        }
    }
}

/// For queue-group members: a bitmap of received sequences per publisher, so
/// the union over members can be checked for exactly-once delivery; each
/// member's own stream must still be increasing.
#[derive(Default, Clone)]
pub struct Bitmap {
    bits: Vec<u64>,
    last: Option<u64>,
    pub dups: u64,
    pub reordered: u64,
}

impl Bitmap {
    #[inline]
    pub fn record(&mut self, seq: u64) {
        let w = (seq / 64) as usize;
        if w >= self.bits.len() {
            let n = (w + 1).max(self.bits.len() * 2).max(1024);
            self.bits.resize(n, 0);
        }
        let m = 1u64 << (seq % 64);
        if self.bits[w] & m != 0 {
            self.dups += 1;
            return;
        }
        self.bits[w] |= m;
        if let Some(l) = self.last {
            if seq < l {
                self.reordered += 1;
            }
        }
        self.last = Some(self.last.map_or(seq, |l| l.max(seq)));
    }
}

/// Union check over queue members for one publisher.
pub fn union_check(members: &[&Bitmap], published: u64) -> CheckSum {
    let words = members.iter().map(|b| b.bits.len()).max().unwrap_or(0);
    let mut unique = 0u64;
    let mut dups = members.iter().map(|b| b.dups).sum::<u64>();
    let reordered = members.iter().map(|b| b.reordered).sum::<u64>();
    let mut foreign = 0u64;
    for w in 0..words {
        let mut or = 0u64;
        for b in members {
            let x = b.bits.get(w).copied().unwrap_or(0);
            dups += (or & x).count_ones() as u64;
            or |= x;
        }
        if or == 0 {
            continue;
        }
        for bit in 0..64 {
            if or & (1 << bit) != 0 {
                let seq = w as u64 * 64 + bit;
                if seq < published {
                    unique += 1;
                } else {
                    foreign += 1;
                }
            }
        }
    }
    CheckSum {
        expected: published,
        unique,
        lost: published.saturating_sub(unique),
        dups,
        reordered,
        foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_detects_everything() {
        let mut o = Ordered::default();
        for s in [0, 1, 3, 2, 4, 4, 6] {
            o.record(s);
        }
        let c = o.summary(7);
        assert_eq!(c.unique, 6);
        assert_eq!(c.lost, 1); // 5
        assert_eq!(c.dups, 1); // second 4
        assert_eq!(c.reordered, 1); // 2 after 3
        let mut o = Ordered::default();
        (0..1000).for_each(|s| o.record(s));
        assert!(o.summary(1000).ok());
    }

    #[test]
    fn union_exactly_once() {
        let mut a = Bitmap::default();
        let mut b = Bitmap::default();
        for s in 0..100u64 {
            if s % 3 == 0 {
                a.record(s)
            } else {
                b.record(s)
            }
        }
        assert!(union_check(&[&a, &b], 100).ok());
        b.record(0); // delivered to two members
        let c = union_check(&[&a, &b], 101);
        assert_eq!((c.dups, c.lost, c.reordered), (1, 1, 1));
    }
}
