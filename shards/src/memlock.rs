//! RLIMIT_MEMLOCK: io_uring registers locked memory for each executor.

/// Current (soft, hard) RLIMIT_MEMLOCK, as text (`unlimited` or bytes).
pub(crate) fn memlock_limits() -> (String, String) {
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return ("?".into(), "?".into());
    }
    (show(lim.rlim_cur), show(lim.rlim_max))
}

/// Raises the soft RLIMIT_MEMLOCK to at least `want` bytes when the hard limit allows
/// (or as far as it allows). Returns the soft limit now in force.
pub fn raise_memlock_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on structs we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let target = if lim.rlim_max == libc::RLIM_INFINITY {
            want
        } else {
            want.min(lim.rlim_max)
        };
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) == 0 {
            return target;
        }
        lim.rlim_cur
    }
}
