//! Go-compatible renderings: RFC3339Nano times, nats-server's uptime strings, Go's
//! `time.Duration` strings, Go float JSON numbers and `encoding/json` escaping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serializer;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// `2026-11-26T06:30:15.3592828Z` (Go's `time.RFC3339Nano` in UTC: trailing zeros of
/// the fraction dropped, no fraction when it is zero).
pub fn rfc3339(t: SystemTime) -> String {
    let (secs, nanos) = split(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// `Thu, 26 Nov 2026 06:30:16 GMT` for the HTTP `Date` header.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (secs, _) = split(t);
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(mo - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// nats-server's uptime/idle string: `4m37s`, `2h0m5s`, `3d1h0m0s`, `1y2d0h0m0s`.
pub fn uptime(d: Duration) -> String {
    let tsecs = d.as_secs();
    let tmins = tsecs / 60;
    let thrs = tmins / 60;
    let tdays = thrs / 24;
    let tyrs = tdays / 365;
    if tyrs > 0 {
        format!(
            "{tyrs}y{}d{}h{}m{}s",
            tdays % 365,
            thrs % 24,
            tmins % 60,
            tsecs % 60
        )
    } else if tdays > 0 {
        format!("{tdays}d{}h{}m{}s", thrs % 24, tmins % 60, tsecs % 60)
    } else if thrs > 0 {
        format!("{thrs}h{}m{}s", tmins % 60, tsecs % 60)
    } else if tmins > 0 {
        format!("{tmins}m{}s", tsecs % 60)
    } else {
        format!("{tsecs}s")
    }
}

/// `v` with `prec` fractional digits, trailing zeros (and a bare dot) removed.
fn frac(whole: u64, part: u64, digits: usize) -> String {
    if part == 0 {
        return whole.to_string();
    }
    let p = format!("{part:0digits$}");
    format!("{whole}.{}", p.trim_end_matches('0'))
}

/// Go's `time.Duration.String()`: `0s`, `420ns`, `1.5µs`, `100.94244ms`, `2m3.5s`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos() as u64;
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns / 1_000, ns % 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns / 1_000_000, ns % 1_000_000, 6));
    }
    let secs = ns / 1_000_000_000;
    let s = frac(secs % 60, ns % 1_000_000_000, 9);
    let mins = secs / 60;
    if mins == 0 {
        return format!("{s}s");
    }
    let hrs = mins / 60;
    if hrs == 0 {
        return format!("{mins}m{s}s");
    }
    format!("{hrs}h{}m{s}s", mins % 60)
}

/// A round trip as nats-server shows it: microsecond precision below a millisecond.
pub fn rtt(d: Duration) -> String {
    if d > Duration::from_micros(1) && d < Duration::from_millis(1) {
        go_duration(Duration::from_micros(d.as_micros() as u64))
    } else {
        go_duration(d)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One DER element at the start of `b`: (tag, contents, rest).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize);
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// A DER UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let num = |i: usize| rest.get(i..i + 2)?.parse::<u32>().ok();
    let days = days_from_civil(year, num(0)?, num(2)?);
    let secs = days * 86_400 + (num(4)? * 3600 + num(6)? * 60 + num(8)?) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// `notAfter` of the first certificate in a PEM file (`/varz` `tls_cert_not_after`).
pub fn cert_not_after(path: &std::path::Path) -> Option<SystemTime> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).ok()?;
    let cert = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()?
        .ok()?;
    let (_, cert, _) = der(cert.as_ref())?;
    let (_, tbs, _) = der(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    // [0] version (optional), serial, signature, issuer, then validity.
    rest = if tag == 0xa0 { r } else { rest };
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (_, validity, _) = der(rest)?;
    let (_, _, after) = der(validity)?;
    let (tag, v, _) = der(after)?;
    der_time(tag, v)
}

/// Serializes a float as Go's `encoding/json` does for typical values: whole numbers
/// without a fraction (`2`, not `2.0`).
pub fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_i64(0)
    }
}

/// Seconds of a duration as a float (`auth_timeout`, `tls_timeout`).
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Pretty JSON (two-space indent) with Go's HTML-safe escaping of `<`, `>` and `&`.
pub fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    go_escape(s).into_bytes()
}

/// Compact JSON with Go's escaping.
pub fn to_json_compact<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    go_escape(s).into_bytes()
}

/// `<`, `>`, `&` only occur inside JSON strings, so a plain replace is exact.
fn go_escape(s: String) -> String {
    if !s.contains(['<', '>', '&']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::new(1_795_674_615, 359_282_800);
        assert_eq!(rfc3339(t), "2026-11-26T06:30:15.3592828Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1)),
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(http_date(t), "Thu, 26 Nov 2026 06:30:15 GMT");
    }

    #[test]
    fn durations() {
        assert_eq!(uptime(Duration::from_secs(277)), "4m37s");
        assert_eq!(uptime(Duration::from_secs(3 * 86_400 + 5)), "3d0h0m5s");
        assert_eq!(
            go_duration(Duration::from_nanos(100_942_440)),
            "100.94244ms"
        );
        assert_eq!(go_duration(Duration::from_micros(420)), "420µs");
        assert_eq!(go_duration(Duration::from_millis(123_500)), "2m3.5s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(rtt(Duration::from_nanos(420_123)), "420µs");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
