//! Fuzzes the nats-server conf parser (`natrium::config::parser::parse_str_with_env`)
//! with includes and variables, then what `config::file::load` does with a parsed
//! map: the reload digest and `apply` onto default options.
//!
//! Once per process a temporary directory is filled with fixed include files (plain
//! values, variables, nested includes, a self include, an include cycle, a chain
//! nested deeper than the limit, a file with a syntax error); the input is parsed as
//! if it were `<dir>/main.conf`, so `include a.conf`, `include "sub/b.conf"` ... name
//! them. `$VARS` not defined in the text come from a fixed environment (numbers,
//! strings, maps, references to other variables, a cycle, a chain nested deeper than
//! the limit, text that does not parse).
//!
//! Sandbox: an `include` may name any path, and the fuzzer must not read devices or
//! files outside the directory (`/dev/zero` would never end, `/dev/stdin` would
//! block). Inputs that contain `include` (any case) are skipped when they also
//! contain `..`, a `\x` escape or a `/` right after whitespace or a quote (an
//! absolute path). TLS sections name certificate files that `apply` reads, so
//! inputs mentioning `tls` are parsed but not applied.
//!
//! Nested `$var` references copy their values, which once grew exponentially; the
//! parser now refuses a document whose references copy more than a bound (see
//! `MAX_COPIED_VALUES` in `src/config/parser.rs`), so no input is skipped for them.
//!
//! The input is the file text; invalid UTF-8 is replaced (the server reads the file
//! with `read_to_string`, which refuses it, so only valid text matters).

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use natrium::config::{file, parser, Options};

const INCLUDE_DEPTH_CHAIN: usize = 34; // > MAX_INCLUDE_DEPTH (32)
const ENV_DEPTH_CHAIN: usize = 34; // > MAX_ENV_DEPTH (32)

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("natrium-fuzz-conf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let mut files: Vec<(String, String)> = vec![
            (
                "a.conf".into(),
                "port: 4222\nhost: \"127.0.0.1\"\nmax_payload: 1MB\n".into(),
            ),
            (
                "vars.conf".into(),
                "N = 5\nS: 'str'\nlimits {\n  n: $N\n  list: [1, $N, $S]\n  inner { m: $N }\n}\n"
                    .into(),
            ),
            ("sub/b.conf".into(), "include ./c.conf\nb: true\n".into()),
            ("sub/c.conf".into(), "c: [1, 2, 3]\ntag: \"c\"\n".into()),
            ("sub/up.conf".into(), "include ../a.conf\nup: 1\n".into()),
            ("self.conf".into(), "x: 1\ninclude self.conf\n".into()),
            ("loop1.conf".into(), "include loop2.conf\n".into()),
            ("loop2.conf".into(), "include loop1.conf\n".into()),
            (
                "auth.conf".into(),
                "authorization {\n  user: u\n  password: p\n  timeout: 2\n}\n".into(),
            ),
            ("bad.conf".into(), "a: {\n b: [1,\n".into()),
            ("empty.conf".into(), String::new()),
            ("main.conf".into(), "include main.conf\n".into()),
        ];
        for i in 0..INCLUDE_DEPTH_CHAIN {
            files.push((
                format!("d{i}.conf"),
                format!("l{i}: {i}\ninclude d{}.conf\n", i + 1),
            ));
        }
        files.push((format!("d{INCLUDE_DEPTH_CHAIN}.conf"), "end: true\n".into()));
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    })
}

fn env(name: &str) -> Option<String> {
    let v = match name {
        "ENV_NUM" => "42",
        "ENV_SIZE" => "10KB",
        "ENV_STR" => "hello",
        "ENV_QUOTED" => "\"quoted \\x41 \\t\"",
        "ENV_BOOL" => "yes",
        "ENV_MAP" => "{a: 1, b: [x, y], c: {d: $ENV_NUM}}",
        "ENV_ARR" => "[1, 2, $ENV_STR]",
        "ENV_REF" => "$ENV_NUM",
        "ENV_CYC" => "$ENV_CYC",
        "ENV_A" => "$ENV_B",
        "ENV_B" => "$ENV_A",
        "ENV_BAD" => "x y",
        "ENV_OPEN" => "{a: 1",
        "ENV_EMPTY" => "",
        "ENV_DATE" => "2006-01-02T15:04:05Z",
        "ENV_BLOCK" => "(\n block\n)",
        _ => {
            let i: usize = name.strip_prefix("ENV_D")?.parse().ok()?;
            return (i <= ENV_DEPTH_CHAIN).then(|| format!("$ENV_D{}", i + 1));
        }
    };
    Some(v.to_string())
}

/// Whether an input that mentions `include` could name a path outside the directory.
fn escapes(text: &str) -> bool {
    if !text.to_ascii_lowercase().contains("include") {
        return false;
    }
    if text.contains("..") || text.contains("\\x") || text.contains("\\X") {
        return true;
    }
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'/'
            && (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'' | b'='))
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if escapes(&text) {
        return;
    }
    let origin = dir().join("main.conf");
    let Ok(map) = parser::parse_str_with_env(&text, &origin, &env) else {
        return;
    };
    let _ = file::digest(&map);
    if !text.to_ascii_lowercase().contains("tls") {
        let mut opts = Options::default();
        let report = file::apply(&map, &mut opts);
        for e in &report.errors {
            assert!(!e.is_empty());
        }
    }
});
