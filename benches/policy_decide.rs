//! Benchmark of `Policy::decide` on a 200-rule policy over a mix of exec and
//! open actions like those of a coding agent. Prints ns per decision
//! (median, p99, max of per-call timings) per action class and overall.
//!
//! Run: `cargo bench --bench policy_decide` (or `scripts/bench-policy`).

use std::ffi::OsString;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use lexecon::action::{Access, Action, ExecAction, OpenAction};
use lexecon::policy::{Policy, Vars};

fn vars() -> Vars {
    Vars {
        home: PathBuf::from("/home/dev"),
        workspace: PathBuf::from("/home/dev/project"),
        tmpdir: PathBuf::from("/tmp"),
    }
}

/// The shipped default policy plus generated rules up to 200 in total.
fn policy_text() -> (String, usize) {
    let default = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/default.yaml"),
    )
    .expect("policies/default.yaml is readable");
    let mut text = default;
    let base = text.matches("\n  - id: ").count();
    let mut n = base;
    let mut i = 0;
    let target: usize = std::env::var("BENCH_RULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
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
    let (text, rules) = policy_text();
    let load = Instant::now();
    let policy = Policy::from_str(&text, "bench.yaml", &vars()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let load_ms = load.elapsed().as_secs_f64() * 1e3;
    let actions = actions();
    // Timer overhead, subtracted from nothing: reported for reference.
    let mut overhead = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = Instant::now();
        overhead.push(t.elapsed().as_nanos() as u64);
    }
    overhead.sort_unstable();
    // Warm-up: lazy DFA caches, allocator.
    for _ in 0..2_000 {
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
    let rounds = 20_000;
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
        "policy: {rules} rules, loaded in {load_ms:.1} ms; {} actions x {rounds} rounds; timer overhead median {} ns",
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
