//! Start-up timing, for profiling: [`mark`] logs the time since the first
//! mark and since the previous one at debug level, on the
//! [`crate::diag::TIMING`] target (`lexecon: debug: timing: 1.234 ms
//! (+0.456) what`). `LEXECON_TIMING=1` shows these lines whatever the
//! level (see [`crate::diag`]). When they are not shown, a mark costs one
//! relaxed atomic load.

use std::sync::Mutex;
use std::time::Instant;

static TIMES: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

/// Note that `what` has just happened.
pub fn mark(what: &str) {
    if !log::log_enabled!(target: crate::diag::TIMING, log::Level::Debug) {
        return;
    }
    let now = Instant::now();
    let mut t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    let (first, last) = t.get_or_insert((now, now));
    let total = now.duration_since(*first).as_secs_f64() * 1e3;
    let step = now.duration_since(*last).as_secs_f64() * 1e3;
    *last = now;
    drop(t);
    log::debug!(target: crate::diag::TIMING, "{total:.3} ms (+{step:.3}) {what}");
}
