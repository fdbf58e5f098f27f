//! nats-server's log line format: `[PID] 2026/11/23 08:00:00.123456 [INF] message`.
//! Logging is never on the message path; a mutex around the sink is fine here.
//!
//! The sink is stderr or a log file (`-l`, `logfile`). A log file rotates when it
//! passes `logfile_size_limit` (the full file is renamed
//! `<file>.YYYY.MM.DD.hh.mm.ss.nnnnnnnnn`, like nats-server) and, with
//! `logfile_max_num`, the oldest backups are purged. Levels, timestamps and the
//! file itself can be changed at run time ([`configure`], on reload) and the file
//! reopened ([`reopen`], SIGUSR1) for external log rotation.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::config::Options;

/// Severity of a log line, with nats-server's three-letter tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `[FTL]`
    Fatal,
    /// `[ERR]`
    Error,
    /// `[WRN]`
    Warn,
    /// `[INF]`
    Info,
    /// `[DBG]`
    Debug,
    /// `[TRC]`
    Trace,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Fatal => "[FTL]",
            Level::Error => "[ERR]",
            Level::Warn => "[WRN]",
            Level::Info => "[INF]",
            Level::Debug => "[DBG]",
            Level::Trace => "[TRC]",
        }
    }
}

/// A log file with nats-server's size-limit rotation.
struct FileLog {
    path: PathBuf,
    file: File,
    written: u64,
    /// Rotate past this many bytes; 0 = never.
    limit: u64,
    /// Files kept (current plus backups); 0 = all.
    max_num: i64,
}

/// Where lines go.
enum Target {
    Stderr,
    File(FileLog),
    Sink(Box<dyn Write + Send>),
}

static OUT: Mutex<Target> = Mutex::new(Target::Stderr);
static DEBUG: AtomicBool = AtomicBool::new(false);
static TRACE: AtomicBool = AtomicBool::new(false);
static LOGTIME: AtomicBool = AtomicBool::new(true);
static UTC: AtomicBool = AtomicBool::new(false);

/// The logging part of the options, as [`configure`] applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Log file; stderr when unset.
    pub file: Option<PathBuf>,
    /// Rotate the file past this many bytes; 0 = never.
    pub size_limit: i64,
    /// Files kept when rotating; 0 = all.
    pub max_num: i64,
    /// Prefix lines with the time.
    pub logtime: bool,
    /// Timestamps in UTC.
    pub utc: bool,
    /// `[DBG]` lines.
    pub debug: bool,
    /// `[TRC]` lines.
    pub trace: bool,
}

impl LogConfig {
    /// The logging settings of `o`.
    pub fn from_options(o: &Options) -> LogConfig {
        LogConfig {
            file: o.log_file.clone(),
            size_limit: o.log_size_limit,
            max_num: o.log_max_num,
            logtime: o.logtime,
            utc: o.logtime_utc,
            debug: o.debug,
            trace: o.trace,
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

/// Puts `cfg` in force: levels and timestamps at once; the log file is opened
/// when it differs from the current one (an error leaves the current sink).
pub fn configure(cfg: &LogConfig) -> Result<(), String> {
    DEBUG.store(cfg.debug, Ordering::Relaxed);
    TRACE.store(cfg.trace, Ordering::Relaxed);
    LOGTIME.store(cfg.logtime, Ordering::Relaxed);
    UTC.store(cfg.utc, Ordering::Relaxed);
    let mut out = OUT.lock().unwrap_or_else(|e| e.into_inner());
    match (&mut *out, &cfg.file) {
        (Target::File(f), Some(path)) if f.path == *path => {
            f.limit = cfg.size_limit.max(0) as u64;
            f.max_num = cfg.max_num;
        }
        (_, Some(path)) => {
            let (file, written) = open_log(path).map_err(|e| {
                format!(
                    "error opening file: open {}: {}",
                    path.display(),
                    go_error_text(&e)
                )
            })?;
            *out = Target::File(FileLog {
                path: path.clone(),
                file,
                written,
                limit: cfg.size_limit.max(0) as u64,
                max_num: cfg.max_num,
            });
        }
        (Target::File(_), None) => *out = Target::Stderr,
        (_, None) => {}
    }
    Ok(())
}

/// Go's text for an OS error, as nats-server prints it: `no such file or directory`,
/// `permission denied`, `is a directory`. Go's errno strings are the C library's with
/// the first letter lower-cased when the second is lower case (its `mkerrors.sh`), so
/// they are derived here the same way; errors without an errno keep Rust's text.
pub fn go_error_text(e: &std::io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second))
            if first.is_ascii_uppercase() && second.is_ascii_lowercase() =>
        {
            format!("{}{}", first.to_ascii_lowercase(), &text[1..])
        }
        _ => text.to_string(),
    }
}

/// `msg` as Go's standard logger prints it (`2026/12/03 08:48:28 msg`, local time):
/// nats-server's format for the errors it reports before its own logger exists, such
/// as a log file that cannot be opened.
pub fn go_log_line(msg: &str) -> String {
    let (d, _) = now_parts(false);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02} {msg}",
        d[0], d[1], d[2], d[3], d[4], d[5]
    )
}

/// Reopens the log file (SIGUSR1), e.g. after logrotate moved it away; logs the
/// outcome like nats-server.
pub fn reopen() {
    let mut out = OUT.lock().unwrap_or_else(|e| e.into_inner());
    let Target::File(f) = &mut *out else {
        drop(out);
        log(
            Level::Info,
            format_args!("File log re-open ignored, not a file logger"),
        );
        return;
    };
    match open_log(&f.path) {
        Ok((file, written)) => {
            f.file = file;
            f.written = written;
            drop(out);
            log(Level::Info, format_args!("File log re-opened"));
        }
        Err(e) => {
            let path = f.path.display().to_string();
            drop(out);
            log(
                Level::Error,
                format_args!("Unable to re-open log file {path}: {e}"),
            );
        }
    }
}

/// Installs a sink (stderr, a file opened by the caller...) and the levels.
pub fn init(sink: Box<dyn Write + Send>, logtime: bool, debug: bool, trace: bool) {
    DEBUG.store(debug, Ordering::Relaxed);
    TRACE.store(trace, Ordering::Relaxed);
    LOGTIME.store(logtime, Ordering::Relaxed);
    *OUT.lock().unwrap_or_else(|e| e.into_inner()) = Target::Sink(sink);
}

/// Whether debug lines are written.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Whether protocol trace lines are written (one relaxed load: the only cost of
/// tracing when it is off).
#[inline(always)]
pub fn trace_enabled() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// Now as year, month, day, hour, minute, second (local or UTC), and the time since
/// the epoch for the sub-second part.
fn now_parts(utc: bool) -> ([i32; 6], std::time::Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r/gmtime_r fill the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        if utc {
            libc::gmtime_r(&secs, &mut tm);
        } else {
            libc::localtime_r(&secs, &mut tm);
        }
    }
    let parts = [
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    ];
    (parts, now)
}

/// Local (or UTC) time as `2026/11/23 08:00:00.123456`.
fn timestamp() -> String {
    let (d, now) = now_parts(UTC.load(Ordering::Relaxed));
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06}",
        d[0],
        d[1],
        d[2],
        d[3],
        d[4],
        d[5],
        now.subsec_micros()
    )
}

/// Suffix of a rotated log file: local time `YYYY.MM.DD.hh.mm.ss.nnnnnnnnn`.
fn backup_suffix() -> String {
    let (d, now) = now_parts(false);
    format!(
        "{:04}.{:02}.{:02}.{:02}.{:02}.{:02}.{:09}",
        d[0],
        d[1],
        d[2],
        d[3],
        d[4],
        d[5],
        now.subsec_nanos()
    )
}

fn format_line(level: Level, args: std::fmt::Arguments<'_>) -> String {
    let pid = std::process::id();
    if LOGTIME.load(Ordering::Relaxed) {
        format!("[{pid}] {} {} {}\n", timestamp(), level.tag(), args)
    } else {
        format!("[{pid}] {} {}\n", level.tag(), args)
    }
}

/// Whether `name` is `<base>.YYYY.MM.DD.hh.mm.ss.<digits>`: a rotated backup.
fn is_backup(name: &str, base: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return false;
    };
    let parts: Vec<&str> = stamp.split('.').collect();
    parts.len() == 7
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl FileLog {
    fn write(&mut self, line: &str) {
        if self.file.write_all(line.as_bytes()).is_ok() {
            self.written += line.len() as u64;
        }
        if self.limit > 0 && self.written > self.limit {
            self.rotate();
        }
    }

    /// Renames the full file to a timestamped backup, starts a new one and purges
    /// old backups beyond `max_num`.
    fn rotate(&mut self) {
        let backup = PathBuf::from(format!("{}.{}", self.path.display(), backup_suffix()));
        if let Err(e) = std::fs::rename(&self.path, &backup) {
            self.written = 0;
            let line = format_line(
                Level::Error,
                format_args!("Unable to rotate log file {:?}: {e}", self.path),
            );
            let _ = self.file.write_all(line.as_bytes());
            return;
        }
        match open_log(&self.path) {
            Ok((file, written)) => {
                self.file = file;
                self.written = written;
            }
            Err(_) => return,
        }
        let line = format_line(
            Level::Info,
            format_args!(
                "Rotated log, backup saved as {:?}",
                backup.display().to_string()
            ),
        );
        let _ = self.file.write_all(line.as_bytes());
        self.written += line.len() as u64;
        if self.max_num > 0 {
            self.purge();
        }
    }

    fn purge(&mut self) {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(base) = self
            .path
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut backups: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_backup(n, &base))
            .collect();
        backups.sort();
        let keep = (self.max_num - 1).max(0) as usize;
        if backups.len() <= keep {
            return;
        }
        let excess = backups.len() - keep;
        for name in &backups[..excess] {
            let line = match std::fs::remove_file(dir.join(name)) {
                Ok(()) => format_line(Level::Info, format_args!("Purged log file {name:?}")),
                Err(e) => {
                    let line = format_line(
                        Level::Error,
                        format_args!(
                            "Unable to remove backup log file {name:?} ({e}), will attempt next rotation"
                        ),
                    );
                    let _ = self.file.write_all(line.as_bytes());
                    self.written += line.len() as u64;
                    return;
                }
            };
            let _ = self.file.write_all(line.as_bytes());
            self.written += line.len() as u64;
        }
    }
}

/// Writes one line at `level` (debug/trace lines only when enabled).
pub fn log(level: Level, args: std::fmt::Arguments<'_>) {
    match level {
        Level::Debug if !debug_enabled() => return,
        Level::Trace if !trace_enabled() => return,
        _ => {}
    }
    let line = format_line(level, args);
    let mut out = OUT.lock().unwrap_or_else(|e| e.into_inner());
    match &mut *out {
        Target::Stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Target::File(f) => f.write(&line),
        Target::Sink(s) => {
            let _ = s.write_all(line.as_bytes());
            let _ = s.flush();
        }
    }
}

/// Logs at `[INF]`.
#[macro_export]
macro_rules! log_info { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Info, format_args!($($t)*)) } }
/// Logs at `[WRN]`.
#[macro_export]
macro_rules! log_warn { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Warn, format_args!($($t)*)) } }
/// Logs at `[ERR]`.
#[macro_export]
macro_rules! log_error { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Error, format_args!($($t)*)) } }
/// Logs at `[FTL]`.
#[macro_export]
macro_rules! log_fatal { ($($t:tt)*) => { $crate::logging::log($crate::logging::Level::Fatal, format_args!($($t)*)) } }
/// Logs at `[DBG]` when debug is on.
#[macro_export]
macro_rules! log_debug { ($($t:tt)*) => { if $crate::logging::debug_enabled() { $crate::logging::log($crate::logging::Level::Debug, format_args!($($t)*)) } } }
/// Logs at `[TRC]` when trace is on.
#[macro_export]
macro_rules! log_trace { ($($t:tt)*) => { if $crate::logging::trace_enabled() { $crate::logging::log($crate::logging::Level::Trace, format_args!($($t)*)) } } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_error_texts() {
        let text = |code| go_error_text(&std::io::Error::from_raw_os_error(code));
        assert_eq!(text(libc::ENOENT), "no such file or directory");
        assert_eq!(text(libc::EACCES), "permission denied");
        assert_eq!(text(libc::EISDIR), "is a directory");
        assert_eq!(text(libc::ENOTDIR), "not a directory");
        assert_eq!(text(libc::EROFS), "read-only file system");
        let plain = std::io::Error::other("Odd");
        assert_eq!(go_error_text(&plain), "Odd");
    }

    #[test]
    fn go_log_lines() {
        let line = go_log_line("error opening file: x");
        // 2026/12/03 08:48:28 error opening file: x
        let (stamp, msg) = line.split_at(19);
        assert_eq!(msg, " error opening file: x");
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999/99/99 99:99:99");
    }

    #[test]
    fn backup_names() {
        assert!(is_backup("s.log.2026.11.26.06.31.24.877402479", "s.log"));
        assert!(!is_backup("s.log", "s.log"));
        assert!(!is_backup("s.log.old", "s.log"));
        assert!(!is_backup("s.logx.2026.11.26.06.31.24.1", "s.log"));
        assert_eq!(backup_suffix().len(), "2026.11.26.06.31.24.877402479".len());
    }
}
