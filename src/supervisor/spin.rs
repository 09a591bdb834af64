//! Keeping idle CPUs awake while the tree makes notified calls.
//!
//! Every emulated call is a round trip: the caller sleeps in the kernel, the
//! notification thread answers, and the answer (`ADDFD`, `SEND`) wakes the
//! caller — on another CPU whenever the one it slept on is busy with the
//! supervisor. A CPU with nothing to run halts, and waking a halted CPU is
//! slow: on a virtual machine the wake-up leaves the guest (tens of
//! microseconds per wake-up, several per call), on bare metal the CPU
//! climbs out of a sleep state. This is what dominates an open-heavy
//! workload (docs/bench.md, "The open path: waking a halted CPU").
//!
//! So, for a short while after each notification, a few threads of the
//! supervisor (one per CPU, at most four) spin at `SCHED_IDLE` priority: the
//! scheduler counts a CPU that runs only `SCHED_IDLE` threads as idle, so it
//! places the woken caller there as on an idle CPU and preempts the spinner
//! at once, and the CPU never halted. A spinner takes no CPU time from any
//! other thread (anything else preempts it), spins only until the window
//! after the last notification has passed, and then sleeps until the next
//! one. This is what the kernel's halt polling does inside a guest (the
//! `haltpoll` cpuidle driver), when it is on.
//!
//! Nothing judged depends on it: it changes only how long the caller waits.
//! Where `SCHED_IDLE` cannot be set (a sandbox refusing it), no thread spins,
//! since a spinner at normal priority would take CPU time from the tree.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The window `supervise` uses unless told otherwise, in microseconds.
pub const DEFAULT_WINDOW_US: u64 = 50;

/// `pause` instructions between two reads of the clock.
const SPIN_BATCH: usize = 8;

/// Spinners at most, whatever the number of CPUs.
const MAX_SPINNERS: usize = 4;

/// Nanoseconds since the first call (a monotonic clock read through the
/// vDSO: no syscall).
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct State {
    /// Spin until this time ([`now_ns`]).
    until: AtomicU64,
    /// Some spinner is asleep (or about to be).
    asleep: AtomicBool,
    stop: AtomicBool,
}

/// The spinning threads of a run; stopped and joined when dropped.
pub struct Spinners {
    state: Arc<State>,
    window: u64,
    threads: Vec<JoinHandle<()>>,
}

impl Spinners {
    /// Starts one spinner per CPU this process may run on (at most
    /// [`MAX_SPINNERS`]), spinning for `window` after each
    /// [`Spinners::notified`]. `None` when the window is zero or there is a
    /// single CPU. A spinner that cannot make itself `SCHED_IDLE` ends at
    /// once.
    pub fn start(window: Duration) -> Option<Spinners> {
        // The CPUs this process may use (its affinity, and a cgroup quota).
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if window.is_zero() || cpus < 2 {
            return None;
        }
        let state = Arc::new(State {
            until: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        // Not pinned: the scheduler moves an idle-priority thread freely
        // (it is never "cache hot"), so the spinners follow the CPUs that
        // fall idle, and the caller and the notification thread can stay
        // together on one CPU.
        let threads: Vec<_> = (0..cpus.min(MAX_SPINNERS))
            .filter_map(|_| {
                let state = Arc::clone(&state);
                std::thread::Builder::new()
                    .name("lexecon-spin".into())
                    .spawn(move || match crate::os::set_sched_idle() {
                        Ok(()) => spin(&state),
                        Err(e) => {
                            log::info!("wake spin: off for one thread (SCHED_IDLE refused: {e})")
                        }
                    })
                    .ok()
            })
            .collect();
        log::info!(
            "wake spin: {} threads at SCHED_IDLE keep idle CPUs awake {} µs after each notification",
            threads.len(),
            window.as_micros()
        );
        Some(Spinners {
            state,
            window: window.as_nanos() as u64,
            threads,
        })
    }

    /// A notification came: spin for the window from now, waking the
    /// spinners that slept.
    pub fn notified(&self) {
        self.state
            .until
            .store(now_ns() + self.window, Ordering::SeqCst);
        // A plain read first: while the spinners spin (every notification
        // of a burst), no read-modify-write on the notification's path.
        if self.state.asleep.load(Ordering::SeqCst)
            && self.state.asleep.swap(false, Ordering::SeqCst)
        {
            for t in &self.threads {
                t.thread().unpark();
            }
        }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn spin(state: &State) {
    while !state.stop.load(Ordering::Relaxed) {
        if now_ns() < state.until.load(Ordering::Relaxed) {
            // A `pause` at a time, the clock read about once a microsecond:
            // a spinning CPU that shares a core with a working one takes as
            // little of the core as it can.
            for _ in 0..SPIN_BATCH {
                std::hint::spin_loop();
            }
            continue;
        }
        // Say so before the last look at the deadline: a notification
        // after the store either is seen here or unparks this thread.
        state.asleep.store(true, Ordering::SeqCst);
        if now_ns() < state.until.load(Ordering::SeqCst) || state.stop.load(Ordering::SeqCst) {
            continue;
        }
        // Unparked by the next notification (a timeout only bounds a
        // missed wake-up).
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each spinner's state letter and scheduling policy (fields 3 and 41
    /// of its `/proc/self/task/TID/stat`), read from outside.
    fn spinners() -> Vec<(char, String)> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "lexecon-spin")
            })
            .filter_map(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                // The fields after the parenthesised name.
                let rest = &stat[stat.rfind(')')? + 2..];
                let state = rest.chars().next()?;
                Some((state, rest.split(' ').nth(38)?.to_string()))
            })
            .collect()
    }

    #[test]
    fn spinners_run_at_idle_priority_spin_after_a_notification_and_stop() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            assert!(Spinners::start(Duration::from_micros(50)).is_none());
            return;
        }
        assert!(Spinners::start(Duration::ZERO).is_none());
        let s = Spinners::start(Duration::from_millis(30)).expect("spinners");
        let n = s.threads.len();
        assert!((2..=MAX_SPINNERS).contains(&n));
        // SCHED_IDLE is policy 5 (each thread sets it as it starts).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let policies: Vec<String> = spinners().into_iter().map(|(_, p)| p).collect();
            if policies.len() == n && policies.iter().all(|p| p == "5") {
                break;
            }
            assert!(Instant::now() < deadline, "{policies:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Asleep before any notification; spinning (runnable) after one.
        let state_of = || -> Vec<char> { spinners().into_iter().map(|(c, _)| c).collect() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !state_of().iter().all(|&c| c == 'S') {
            assert!(Instant::now() < deadline, "spinners never slept");
            std::thread::sleep(Duration::from_millis(5));
        }
        s.notified();
        std::thread::sleep(Duration::from_millis(5));
        assert!(state_of().contains(&'R'), "{:?}", state_of());
        // The window passes: asleep again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !state_of().iter().all(|&c| c == 'S') {
            assert!(Instant::now() < deadline, "spinners kept spinning");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(s);
        assert!(spinners().is_empty(), "joined when dropped");
    }
}
