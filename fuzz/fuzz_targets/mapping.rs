//! Fuzzes subject mappings (`natrium::account::mapping`): the input is split at NUL
//! bytes into a source pattern, a destination, and subjects to publish. A mapping
//! that compiles must map every valid literal subject its source matches to a
//! subject that is itself valid and literal (no empty token, no wildcard), whatever
//! the dice say; bad sources and destinations must be errors, never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natrium::account::mapping::{map_subject, Mapping};
use natrium::subject::{is_literal, is_valid_subject};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let (Some(src), Some(dest)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(src), Ok(dest)) = (std::str::from_utf8(src), std::str::from_utf8(dest)) else {
        return;
    };
    // The first destination's weight comes from the data too (0..=120: some too much).
    let weight = (data.len() % 121) as u8;
    let dests = vec![
        (dest.to_string(), weight),
        (format!("{dest}.b"), 100u8.saturating_sub(weight)),
    ];
    let Ok(m) = Mapping::new(src, &dests) else {
        return;
    };
    let mut out = Vec::new();
    for subject in parts {
        if !is_valid_subject(subject) || !is_literal(subject) {
            continue;
        }
        for roll in [0u32, 37, 99, u32::MAX] {
            let mut dice = || roll;
            if map_subject(std::slice::from_ref(&m), subject, &mut dice, &mut out) {
                assert!(
                    is_valid_subject(&out) && is_literal(&out),
                    "{src:?} -> {dest:?} mapped {:?} to {:?}",
                    String::from_utf8_lossy(subject),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
});
