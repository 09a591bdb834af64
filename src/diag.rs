//! Diagnostics: what the supervisor found out about the machine and decided
//! from it (the listener flags it got, feature fallbacks, the umask, where
//! the policy, keys and ledger are), how long each start-up phase took, and
//! the counters at the end of a run.
//!
//! Lines go through the [`log`] facade to the supervisor's own stderr, or to
//! the file `LEXECON_LOG_FILE` names, as `lexecon: LEVEL: message`. The
//! level comes from `LEXECON_LOG` (`error`, `warn`, `info`, `debug`, `off`),
//! else `RUST_LOG` (the same words; any other form of it is ignored), and
//! is raised by `supervise -v` (info) or `-vv` (debug). Without any of them
//! nothing is printed. `LEXECON_TIMING=1` prints the start-up timing lines
//! (the `lexecon::timing` target, at debug level) whatever the level.
//!
//! Never logged: anything between `fork` and `exec` in the child (the
//! child's facts come back to the parent and are logged there), and
//! anything on the supervised tree's streams. Whatever the tree controls is
//! passed through [`crate::escape`] before it is logged.

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The target of the start-up timing lines.
pub const TIMING: &str = "lexecon::timing";

struct Logger {
    /// The level asked for, as `LevelFilter as usize`.
    level: AtomicUsize,
    /// `LEXECON_TIMING` set: timing lines pass whatever the level.
    timing: AtomicBool,
    /// `LEXECON_LOG_FILE`, when it could be opened.
    file: OnceLock<Mutex<File>>,
}

static LOGGER: Logger = Logger {
    level: AtomicUsize::new(0),
    timing: AtomicBool::new(false),
    file: OnceLock::new(),
};

fn filter_of(n: usize) -> LevelFilter {
    match n {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// A level word (`error`, `warn`, `info`, `debug`, `trace`, `off`, any
/// case); `None` for anything else.
pub fn parse_level(word: &str) -> Option<LevelFilter> {
    word.trim().parse().ok()
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= filter_of(self.level.load(Ordering::Relaxed))
            || (m.target() == TIMING && self.timing.load(Ordering::Relaxed))
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let timing = if r.target() == TIMING { "timing: " } else { "" };
        // One write per line, so that lines of several threads do not mix.
        let line = format!("lexecon: {level}: {timing}{}\n", r.args());
        match self.file.get() {
            Some(f) => {
                let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                let _ = f.write_all(line.as_bytes());
            }
            // A closed or broken stderr must not stop the supervisor.
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// What the environment asks for: `LEXECON_LOG` (else `RUST_LOG`),
/// `LEXECON_LOG_FILE`, `LEXECON_TIMING`. Call once, first thing in `main`,
/// before any thread starts. Problems with the variables are reported on
/// stderr (once) and leave logging off.
pub fn init_from_env() {
    if log::set_logger(&LOGGER).is_err() {
        return;
    }
    let mut level = LevelFilter::Off;
    for var in ["LEXECON_LOG", "RUST_LOG"] {
        let Some(v) = std::env::var_os(var) else {
            continue;
        };
        match v.to_str().and_then(parse_level) {
            Some(l) => level = l,
            // RUST_LOG is often set for other programs, in forms of theirs.
            None if var == "RUST_LOG" => {}
            None => eprintln!(
                "lexecon: warning: {var}={} is not a level (error, warn, info, debug, off); diagnostics stay off",
                crate::escape::word(v.as_encoded_bytes())
            ),
        }
        break;
    }
    let timing = std::env::var_os("LEXECON_TIMING").is_some_and(|v| !v.is_empty() && v != "0");
    if let Some(path) = std::env::var_os("LEXECON_LOG_FILE").filter(|p| !p.is_empty()) {
        use std::os::unix::fs::OpenOptionsExt as _;
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                let _ = LOGGER.file.set(Mutex::new(f));
            }
            Err(e) => eprintln!(
                "lexecon: warning: cannot open LEXECON_LOG_FILE {}: {e}; diagnostics go to stderr",
                crate::escape::path(std::path::Path::new(&path))
            ),
        }
    }
    LOGGER.timing.store(timing, Ordering::Relaxed);
    set_level(level);
}

fn set_level(level: LevelFilter) {
    LOGGER.level.store(level as usize, Ordering::Relaxed);
    let timing = LOGGER.timing.load(Ordering::Relaxed);
    log::set_max_level(if timing {
        level.max(LevelFilter::Debug)
    } else {
        level
    });
}

/// Raises the level to at least `info` (`verbose` 1) or `debug` (2 or
/// more), as `-v`/`-vv` ask; never lowers what the environment asked.
pub fn raise(verbose: u8) {
    let wanted = match verbose {
        0 => return,
        1 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    };
    let now = filter_of(LOGGER.level.load(Ordering::Relaxed));
    set_level(now.max(wanted));
}

/// `on` / `off`, for flags in log lines.
pub fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_words() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("lexecon=debug"), None);
        assert_eq!(filter_of(LevelFilter::Info as usize), LevelFilter::Info);
        assert_eq!(filter_of(LevelFilter::Off as usize), LevelFilter::Off);
    }
}
