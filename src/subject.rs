//! Subject tokens, validity and wildcard matching (client-protocol digest §9).
//!
//! A subject is a sequence of tokens separated by `.`. It is **invalid** if it is
//! empty, has an empty token (`.a`, `a.`, `a..b`), contains whitespace (space, `\t`,
//! `\n`, `\r`, `\f`) anywhere, or has any token after a `>` token.
//!
//! Wildcards are whole tokens only: `*` matches exactly one token, `>` matches one or
//! more trailing tokens and must be last. `foo*`, `foo.*bar`, `foo.b>r` are literal
//! tokens.
//!
//! Published subjects are matched token by token. A published subject may itself
//! contain `*`/`>` tokens (non-pedantic publishing); those are plain literal tokens on
//! the publishing side: a `*` pattern token matches them like any other token, a
//! literal pattern token only matches the identical token. A published subject with
//! an empty token (or an empty subject) matches nothing. Whitespace in a *published*
//! subject is not checked by matching (as in nats-server; validation is the caller's
//! job when pedantic).

/// Token separator.
pub const TSEP: u8 = b'.';
/// Partial wildcard (`*`): exactly one token.
pub const PWC: u8 = b'*';
/// Full wildcard (`>`): one or more trailing tokens.
pub const FWC: u8 = b'>';

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// Iterates the `.`-separated tokens of `s`. An empty `s` yields one empty token;
/// empty tokens are yielded as empty slices (never skipped).
#[inline]
pub fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == TSEP)
}

/// Number of tokens in `s` (`s` empty counts as one empty token).
#[inline]
pub fn num_tokens(s: &[u8]) -> usize {
    memchr::memchr_iter(TSEP, s).count() + 1
}

/// `true` if `tok` is the whole-token partial wildcard `*`.
#[inline]
pub fn is_pwc(tok: &[u8]) -> bool {
    tok.len() == 1 && tok[0] == PWC
}

/// `true` if `tok` is the whole-token full wildcard `>`.
#[inline]
pub fn is_fwc(tok: &[u8]) -> bool {
    tok.len() == 1 && tok[0] == FWC
}

fn check(s: &[u8], allow_wildcards: bool) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut start = 0usize;
    let mut seen_fwc = false;
    let mut i = 0usize;
    while i <= s.len() {
        let end_of_token = i == s.len() || s[i] == TSEP;
        if end_of_token {
            let tok = &s[start..i];
            if tok.is_empty() || seen_fwc {
                return false;
            }
            if tok.len() == 1 && (tok[0] == PWC || tok[0] == FWC) {
                if !allow_wildcards {
                    return false;
                }
                seen_fwc = tok[0] == FWC;
            }
            start = i + 1;
        } else if is_ws(s[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// Valid subject for SUB: non-empty, no empty tokens, no whitespace, wildcards only as
/// whole tokens, `>` only as the last token.
pub fn is_valid_subject(s: &[u8]) -> bool {
    check(s, true)
}

/// Valid subject for a pedantic PUB: [`is_valid_subject`] and no `*`/`>` tokens.
pub fn is_valid_literal_subject(s: &[u8]) -> bool {
    check(s, false)
}

/// `true` if `s` has no wildcard token (`*` or `>` as a whole token). Does not check
/// validity otherwise.
pub fn is_literal(s: &[u8]) -> bool {
    if memchr::memchr2(PWC, FWC, s).is_none() {
        return true;
    }
    tokens(s).all(|t| !is_pwc(t) && !is_fwc(t))
}

/// Whether some subject matches both patterns `a` and `b`.
pub fn collide(a: &[u8], b: &[u8]) -> bool {
    let (mut ta, mut tb) = (tokens(a), tokens(b));
    loop {
        match (ta.next(), tb.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                if is_fwc(x) || is_fwc(y) {
                    return true;
                }
                if !(is_pwc(x) || is_pwc(y) || x == y) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Does the SUB `pattern` match the published `subject`? Returns `false` if `pattern`
/// is not a valid subject (see [`is_valid_subject`]) or `subject` is empty or has an
/// empty token.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    is_valid_subject(pattern) && matches_valid(pattern, subject)
}

/// Like [`matches`] but skips validating `pattern`: the caller guarantees it passed
/// [`is_valid_subject`] (e.g. when it was accepted by SUB). For an invalid pattern the
/// answer is unspecified, but this never panics.
pub fn matches_valid(pattern: &[u8], subject: &[u8]) -> bool {
    let mut st = tokens(subject);
    for pt in tokens(pattern) {
        if is_fwc(pt) {
            // One or more remaining subject tokens, none of them empty.
            let mut any = false;
            for t in st.by_ref() {
                if t.is_empty() {
                    return false;
                }
                any = true;
            }
            return any;
        }
        let Some(t) = st.next() else {
            return false;
        };
        if t.is_empty() || (!is_pwc(pt) && pt != t) {
            return false;
        }
    }
    st.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_table() {
        // (subject, valid for SUB, valid literal for pedantic PUB)
        let cases: &[(&[u8], bool, bool)] = &[
            (b"foo", true, true),
            (b"foo.bar", true, true),
            (b"foo.bar.baz", true, true),
            (b"a", true, true),
            (b"*", true, false),
            (b">", true, false),
            (b"foo.*", true, false),
            (b"foo.>", true, false),
            (b"*.bar", true, false),
            (b"*.*.*", true, false),
            (b"foo.*.>", true, false),
            (b"*.>", true, false),
            (b"foo*", true, true),
            (b"foo.*bar", true, true),
            (b"foo.b>r", true, true),
            (b"foo.>bar", true, true),
            (b"foo.bar>", true, true),
            (b"**", true, true),
            (b">>", true, true),
            (b"*>", true, true),
            (b"$SYS.REQ.SERVER.PING", true, true),
            (b"_INBOX.abc123.xyz", true, true),
            ("u\u{e9}l\u{f8}.\u{1f600}".as_bytes(), true, true),
            (b"Foo.BAR", true, true),
            (b"a-b_c.d~e", true, true),
            (b"\x00", true, true),
            (b"foo\x7f", true, true),
            // invalid
            (b"", false, false),
            (b".", false, false),
            (b"..", false, false),
            (b".a", false, false),
            (b"a.", false, false),
            (b"a..b", false, false),
            (b"foo.bar.", false, false),
            (b".foo.bar", false, false),
            (b"foo bar", false, false),
            (b" foo", false, false),
            (b"foo ", false, false),
            (b"foo\tbar", false, false),
            (b"foo\nbar", false, false),
            (b"foo\rbar", false, false),
            (b"foo\x0cbar", false, false),
            (b"foo.\t", false, false),
            (b"foo. .bar", false, false),
            (b">.foo", false, false),
            (b"foo.>.bar", false, false),
            (b"foo.>.>", false, false),
            (b">.>", false, false),
            (b">.*", false, false),
            (b"*..*", false, false),
            (b"foo.>.", false, false),
            (b"*.", false, false),
            (b".>", false, false),
        ];
        for &(s, sub, lit) in cases {
            assert_eq!(
                is_valid_subject(s),
                sub,
                "is_valid_subject({:?})",
                String::from_utf8_lossy(s)
            );
            assert_eq!(
                is_valid_literal_subject(s),
                lit,
                "is_valid_literal_subject({:?})",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn literal_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"foo", true),
            (b"foo.bar", true),
            (b"foo*", true),
            (b"foo.*bar", true),
            (b"foo.b>r", true),
            (b"", true),
            (b"a..b", true),
            (b"*", false),
            (b">", false),
            (b"foo.*", false),
            (b"foo.>", false),
            (b"*.foo", false),
            (b"a.*.b", false),
            (b"a.>.b", false),
        ];
        for &(s, lit) in cases {
            assert_eq!(
                is_literal(s),
                lit,
                "is_literal({:?})",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn tokens_and_counts() {
        let t: Vec<&[u8]> = tokens(b"a.bb.ccc").collect();
        assert_eq!(t, vec![&b"a"[..], b"bb", b"ccc"]);
        let t: Vec<&[u8]> = tokens(b"").collect();
        assert_eq!(t, vec![&b""[..]]);
        let t: Vec<&[u8]> = tokens(b"a..b.").collect();
        assert_eq!(t, vec![&b"a"[..], b"", b"b", b""]);
        assert_eq!(num_tokens(b""), 1);
        assert_eq!(num_tokens(b"a"), 1);
        assert_eq!(num_tokens(b"a.b.c"), 3);
        assert_eq!(num_tokens(b"a..b."), 4);
        assert!(is_pwc(b"*") && !is_pwc(b"**") && !is_pwc(b">") && !is_pwc(b""));
        assert!(is_fwc(b">") && !is_fwc(b">>") && !is_fwc(b"*") && !is_fwc(b""));
    }

    #[test]
    fn matching_table() {
        // (pattern, subject, matches)
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"foo", b"foo", true),
            (b"foo", b"bar", false),
            (b"foo", b"foo.bar", false),
            (b"foo.bar", b"foo", false),
            (b"foo.bar", b"foo.bar", true),
            (b"foo.bar", b"foo.baz", false),
            (b"Foo", b"foo", false),
            (b"a.*", b"a.b", true),
            (b"a.*", b"a.b.c", false),
            (b"a.*", b"a", false),
            (b"*", b"a", true),
            (b"*", b"a.b", false),
            (b"*.b", b"a.b", true),
            (b"*.b", b"a.c", false),
            (b"*.*", b"a.b", true),
            (b"*.*", b"a", false),
            (b"a.*.c", b"a.b.c", true),
            (b"a.*.c", b"a.b.d", false),
            (b"a.>", b"a.b", true),
            (b"a.>", b"a.b.c", true),
            (b"a.>", b"a", false),
            (b"a.>", b"b.c", false),
            (b">", b"a", true),
            (b">", b"a.b.c.d", true),
            (b"*.>", b"a", false),
            (b"*.>", b"a.b", true),
            (b"a.*.>", b"a.b", false),
            (b"a.*.>", b"a.b.c", true),
            (b"a.*.>", b"a.b.c.d", true),
            // literal tokens that look like wildcards
            (b"foo*", b"foo*", true),
            (b"foo*", b"foox", false),
            (b"foo.*bar", b"foo.xbar", false),
            (b"foo.*bar", b"foo.*bar", true),
            (b"foo.b>r", b"foo.b.r", false),
            (b"foo.b>r", b"foo.b>r", true),
            // published subjects with '*'/'>' tokens are literal
            (b"foo.*", b"foo.*", true),
            (b"foo.*", b"foo.>", true),
            (b"foo.>", b"foo.*", true),
            (b"foo.>", b"foo.>", true),
            (b">", b"*", true),
            (b">", b">", true),
            (b"*", b"*", true),
            (b"foo.bar", b"foo.*", false),
            (b"foo.bar", b"foo.>", false),
            (b"a.*", b"a.*.b", false),
            // empty tokens in the published subject match nothing
            (b">", b"", false),
            (b"*", b"", false),
            (b">", b"a..b", false),
            (b">", b".a", false),
            (b">", b"a.", false),
            (b"a.>", b"a.b.", false),
            (b"a.>", b"a..", false),
            (b"a.*", b"a.", false),
            (b"*.*", b".", false),
            (b"*.b", b".b", false),
            // invalid patterns match nothing
            (b"", b"", false),
            (b"", b"a", false),
            (b"a..b", b"a..b", false),
            (b"a.>.b", b"a.x.b", false),
            (b"a b", b"a b", false),
            (b"a.", b"a.", false),
        ];
        for &(p, s, want) in cases {
            assert_eq!(
                matches(p, s),
                want,
                "matches({:?}, {:?})",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
            if is_valid_subject(p) {
                assert_eq!(matches_valid(p, s), want);
            }
        }
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        let subjects: &[&[u8]] = &[b"a", b"a.b", b"a.b.c", b"b", b"a.*", b"a.>", b"*", b">"];
        for &p in subjects {
            if !is_literal(p) {
                continue;
            }
            for &s in subjects {
                assert_eq!(matches(p, s), p == s);
            }
        }
    }

    #[test]
    fn no_panic_on_garbage() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"ab.*> \t\r\n\x0c\x00\xff";
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 9) as usize;
            let mut p = Vec::with_capacity(len);
            let mut s = Vec::with_capacity(len);
            let mut y = x;
            for _ in 0..len {
                p.push(alphabet[(y % alphabet.len() as u64) as usize]);
                y /= alphabet.len() as u64;
                s.push(alphabet[(y % alphabet.len() as u64) as usize]);
                y = y.rotate_left(7);
            }
            let _ = is_valid_subject(&p);
            let _ = is_valid_literal_subject(&p);
            let _ = is_literal(&p);
            let _ = matches(&p, &s);
            let _ = matches_valid(&p, &s);
            let _ = tokens(&p).count();
            // A valid literal subject always matches itself and `>`.
            if is_valid_literal_subject(&p) {
                assert!(matches(&p, &p));
                assert!(matches(b">", &p));
            }
        }
    }
}
