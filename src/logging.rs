//! nats-server's log line format: `[PID] 2026/11/23 08:00:00.123456 [INF] message`.
//! Logging is never on the message path; a mutex around the sink is fine here.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

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

struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    logtime: bool,
    pid: u32,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);
static TRACE: AtomicBool = AtomicBool::new(false);

/// Installs the logger. Later calls keep the first logger but update the levels.
pub fn init(sink: Box<dyn Write + Send>, logtime: bool, debug: bool, trace: bool) {
    DEBUG.store(debug, Ordering::Relaxed);
    TRACE.store(trace, Ordering::Relaxed);
    let _ = LOGGER.set(Logger {
        sink: Mutex::new(sink),
        logtime,
        pid: std::process::id(),
    });
}

/// Whether debug lines are written.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Whether protocol trace lines are written.
pub fn trace_enabled() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// Local time as `2026/11/23 08:00:00.123456`.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r fills the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_micros()
    )
}

/// Writes one line at `level` (debug/trace lines only when enabled).
pub fn log(level: Level, args: std::fmt::Arguments<'_>) {
    match level {
        Level::Debug if !debug_enabled() => return,
        Level::Trace if !trace_enabled() => return,
        _ => {}
    }
    let line = match LOGGER.get() {
        Some(l) if l.logtime => format!("[{}] {} {} {}\n", l.pid, timestamp(), level.tag(), args),
        Some(l) => format!("[{}] {} {}\n", l.pid, level.tag(), args),
        None => format!(
            "[{}] {} {} {}\n",
            std::process::id(),
            timestamp(),
            level.tag(),
            args
        ),
    };
    match LOGGER.get() {
        Some(l) => {
            if let Ok(mut sink) = l.sink.lock() {
                let _ = sink.write_all(line.as_bytes());
                let _ = sink.flush();
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
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
