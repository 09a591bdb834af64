//! Benchmark of loading a policy and of `Policy::decide` over a mix of exec
//! and open actions like those of a coding agent, at several policy sizes
//! (the shipped default policy plus generated rules). Prints, per size, the
//! load time (wall and CPU; the minimum of several loads for small sizes)
//! and ns per decision (median, p99, p99.9 of per-call timings) per action
//! class and overall.
//!
//! Run: `cargo bench --bench policy_decide [-- SIZES]` (or
//! `scripts/bench-policy [SIZES]`), SIZES a comma list of rule counts
//! (default `200,10000`; `BENCH_RULES` is read when no size is given).
//! `LEXECON_TIMING=1` also prints the steps of every load.

use std::ffi::OsString;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lexecon::action::{Access, Action, ExecAction, OpenAction};
use lexecon::policy::{Policy, Vars};

fn vars() -> Vars {
    Vars {
        home: PathBuf::from("/home/dev"),
        workspace: PathBuf::from("/home/dev/project"),
        tmpdir: PathBuf::from("/tmp"),
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively
    // borrowed `ts`.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The shipped default policy with generated rules added to its `rules:`
/// list (before its `tests:`, which must keep passing) up to `target`
/// rules in total.
fn policy_text(target: usize) -> (String, usize) {
    let default = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/default.yaml"),
    )
    .expect("policies/default.yaml is readable");
    let split = default.find("\ntests:").map_or(default.len(), |i| i + 1);
    let (head, tail) = default.split_at(split);
    let mut text = head.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let base = text.matches("\n  - id: ").count();
    let mut n = base;
    let mut i = 0;
    while n < target {
        let rule = match i % 5 {
            0 => format!(
                "  - id: gen-exec-name-{i}\n    exec:\n      name: [tool{i}, \"tool{i}-*\"]\n      flags: [\"x|execute\"]\n    decision: block\n    reason: generated\n"
            ),
            1 => format!(
                "  - id: gen-exec-args-{i}\n    exec:\n      name: cli{i}\n      args: [\"**\", \"deploy\", \"**\"]\n      operand_outside: [\"${{WORKSPACE}}/**\"]\n    decision: escalate\n    reason: generated\n"
            ),
            2 => format!(
                "  - id: gen-open-dir-{i}\n    open:\n      path: [\"/srv/app{i}/**\", \"/var/lib/svc{i}/*.db\"]\n      access: [write, truncate]\n    decision: block\n    reason: generated\n"
            ),
            3 => format!(
                "  - id: gen-open-secret-{i}\n    open:\n      path: \"${{HOME}}/.config/tool{i}/{{token,credentials}}.json\"\n    decision: block\n    reason: generated\n"
            ),
            _ => format!(
                "  - id: gen-exec-program-{i}\n    exec:\n      program: \"/opt/vendor{i}/bin/*\"\n    decision: escalate\n    reason: generated\n"
            ),
        };
        text.push_str(&rule);
        n += 1;
        i += 1;
    }
    text.push_str(tail);
    (text, n)
}

fn exec(path: &str, argv: &[&str]) -> Action {
    Action::Exec(ExecAction {
        path: PathBuf::from(path),
        argv: argv.iter().map(OsString::from).collect(),
        cwd: PathBuf::from("/home/dev/project"),
        sha256: None,
    })
}

fn open(path: &str, access: Access) -> Action {
    Action::Open(OpenAction {
        op: lexecon::action::FileOp::Open,
        detail: None,
        path: PathBuf::from(path),
        access,
        cwd: PathBuf::from("/home/dev/project"),
        process: None,
    })
}

fn actions() -> Vec<(&'static str, Action)> {
    let w = Access::WRITE | Access::CREATE | Access::TRUNCATE;
    vec![
        ("exec", exec("/usr/bin/ls", &["ls", "-la"])),
        ("exec", exec("/usr/bin/git", &["git", "status", "--short"])),
        (
            "exec",
            exec("/usr/bin/git", &["git", "push", "origin", "main"]),
        ),
        (
            "exec",
            exec(
                "/home/dev/.cargo/bin/cargo",
                &["cargo", "build", "--release"],
            ),
        ),
        (
            "exec",
            exec("/usr/bin/rm", &["rm", "-rf", "./target/debug/incremental"]),
        ),
        ("exec", exec("/usr/bin/rm", &["rm", "-rf", "/"])),
        (
            "exec",
            exec(
                "/usr/bin/python3.11",
                &["python3", "-m", "pytest", "-q", "tests/"],
            ),
        ),
        (
            "exec",
            exec(
                "/usr/bin/cc",
                &["cc", "-O2", "-c", "src/a.c", "-o", "build/a.o"],
            ),
        ),
        (
            "exec",
            exec("/usr/bin/dash", &["sh", "-c", "make -j2 && ./run-tests"]),
        ),
        (
            "exec",
            exec("/usr/bin/curl", &["curl", "-fsSL", "https://example.com"]),
        ),
        (
            "open",
            open("/usr/lib/x86_64-linux-gnu/libc.so.6", Access::READ),
        ),
        ("open", open("/etc/ld.so.cache", Access::READ)),
        ("open", open("/home/dev/project/src/main.rs", Access::READ)),
        (
            "open",
            open("/home/dev/project/target/debug/deps/lexecon-1234.d", w),
        ),
        (
            "open",
            open("/home/dev/project/pkg/__pycache__/m.cpython-311.pyc", w),
        ),
        ("open", open("/tmp/tmp.abc123", w)),
        ("open", open("/dev/null", Access::WRITE)),
        ("open", open("/home/dev/.ssh/id_ed25519", Access::READ)),
        ("open", open("/etc/passwd", Access::WRITE)),
        ("open", open("/proc/self/status", Access::READ)),
        ("open", open("/home/dev/.cache/pip/http/x/y/z", w)),
        ("open", open("/usr/share/zoneinfo/UTC", Access::READ)),
    ]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    lexecon::diag::init_from_env();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .find(|a| a.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .or_else(|| std::env::var("BENCH_RULES").ok())
        .unwrap_or_else(|| "200,10000".into())
        .split(',')
        .map(|s| {
            s.trim().parse().unwrap_or_else(|_| {
                eprintln!("bench-policy: '{s}' is not a number of rules (give e.g. 200,10000)");
                std::process::exit(2)
            })
        })
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for size in sizes {
        bench(size, rounds);
    }
}

fn bench(size: usize, rounds: usize) {
    let (text, rules) = policy_text(size);
    // Small policies load several times (the minimum is reported, the
    // machine being shared); large ones once.
    let loads = if rules <= 1000 { 10 } else { 1 };
    let mut best: Option<(Duration, Duration)> = None;
    let mut policy = None;
    for _ in 0..loads {
        let wall = Instant::now();
        let cpu = thread_cpu();
        let p = Policy::from_str(&text, "bench.yaml", &vars()).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
        let t = (wall.elapsed(), thread_cpu() - cpu);
        best = Some(best.map_or(t, |b| (b.0.min(t.0), b.1.min(t.1))));
        policy = Some(p);
    }
    let (load_wall, load_cpu) = best.expect("loaded once");
    let policy = policy.expect("loaded once");
    let actions = actions();
    // Timer overhead, subtracted from nothing: reported for reference.
    let mut overhead = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = Instant::now();
        overhead.push(t.elapsed().as_nanos() as u64);
    }
    overhead.sort_unstable();
    // Warm-up: lazy DFA caches, allocator.
    for _ in 0..rounds.min(2_000) {
        for (_, a) in &actions {
            black_box(policy.decide(black_box(a)));
        }
    }
    if std::env::var_os("BENCH_PER_ACTION").is_some() {
        for (_, a) in &actions {
            let mut v: Vec<u64> = (0..5_000)
                .map(|_| {
                    let t = Instant::now();
                    black_box(policy.decide(black_box(a)));
                    t.elapsed().as_nanos() as u64
                })
                .collect();
            v.sort_unstable();
            println!("{:>6} ns  {:?}", percentile(&v, 0.5), a);
        }
    }
    let mut all = Vec::with_capacity(rounds * actions.len());
    let mut exec_ns = Vec::new();
    let mut open_ns = Vec::new();
    for _ in 0..rounds {
        for (kind, a) in &actions {
            let t = Instant::now();
            let d = policy.decide(black_box(a));
            let ns = t.elapsed().as_nanos() as u64;
            black_box(d);
            all.push(ns);
            if *kind == "open" {
                open_ns.push(ns);
            } else {
                exec_ns.push(ns);
            }
        }
    }
    println!(
        "policy: {rules} rules, loaded in {:.1} ms wall, {:.1} ms CPU ({}); {} actions x {rounds} rounds; timer overhead median {} ns",
        load_wall.as_secs_f64() * 1e3,
        load_cpu.as_secs_f64() * 1e3,
        if loads > 1 { format!("best of {loads}") } else { "one load".into() },
        actions.len(),
        percentile(&overhead, 0.5)
    );
    for (name, v) in [
        ("exec", &mut exec_ns),
        ("open", &mut open_ns),
        ("all", &mut all),
    ] {
        v.sort_unstable();
        println!(
            "decide {name:>4}: median {:>5} ns  p99 {:>5} ns  p99.9 {:>6} ns  (n={})",
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 0.999),
            v.len()
        );
    }
}
