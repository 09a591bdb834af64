//! Start-up timing, for profiling: with `LEXECON_TIMING=1` in the
//! environment, [`mark`] prints the time since the first mark and since the
//! previous one on stderr (`lexecon: timing: 1.234 ms (+0.456) what`).
//! Without it, a mark costs one relaxed atomic load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// 0: not looked at yet; 1: off; 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);
static TIMES: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var_os("LEXECON_TIMING").is_some_and(|v| !v.is_empty() && v != "0");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Note that `what` has just happened.
pub fn mark(what: &str) {
    if !enabled() {
        return;
    }
    let now = Instant::now();
    let mut t = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    let (first, last) = t.get_or_insert((now, now));
    let total = now.duration_since(*first).as_secs_f64() * 1e3;
    let step = now.duration_since(*last).as_secs_f64() * 1e3;
    *last = now;
    drop(t);
    eprintln!("lexecon: timing: {total:.3} ms (+{step:.3}) {what}");
}
