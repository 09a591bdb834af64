//! Diagnostics (`LEXECON_LOG`, `-v`, `LEXECON_LOG_FILE`, `LEXECON_TIMING`):
//! what the supervisor found out about the machine is printed on its own
//! stderr when asked for, nothing of it otherwise, and never on the tree's
//! streams.

mod common;

use common::{stderr, stdout, Env, ALLOW_ALL};
use std::process::{Command, Output};

const VARS: [&str; 4] = [
    "LEXECON_LOG",
    "RUST_LOG",
    "LEXECON_LOG_FILE",
    "LEXECON_TIMING",
];

/// `supervise` with the diagnostics variables of the test's own
/// environment removed and `vars` set.
fn run(env: &Env, extra: &[&str], vars: &[(&str, &str)], cmd: &[&str]) -> Output {
    let policy = env.policy(ALLOW_ALL);
    let mut c: Command = env.supervise_cmd_with(&policy, extra, cmd);
    for v in VARS {
        c.env_remove(v);
    }
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "supervise failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn diag_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            ["lexecon: info: ", "lexecon: debug: ", "lexecon: trace: "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect()
}

/// The umask of this process, as `/proc/self/status` shows it.
fn own_umask() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("no Umask in /proc/self/status");
    v.trim().to_string()
}

fn has_line(err: &str, prefix: &str) -> bool {
    err.lines().any(|l| l.starts_with(prefix))
}

#[test]
fn debug_prints_the_machine_facts_the_locations_and_the_counters() {
    let env = Env::new();
    let out = run(&env, &[], &[("LEXECON_LOG", "debug")], &["true"]);
    let err = stderr(&out);
    let header = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "run")
        .expect("no run header");
    let hash = header["policy_sha256"].as_str().unwrap().to_string();
    let run_id = header["run"].as_str().unwrap().to_string();
    for prefix in [
        "lexecon: info: listener: WAIT_KILLABLE_RECV o".to_string(),
        "lexecon: info: listener: SYNC_WAKE_UP o".to_string(),
        "lexecon: info: ADDFD with SEND: ".to_string(),
        "lexecon: info: kernel: Linux ".to_string(),
        format!("lexecon: info: umask: the command's is {}", own_umask()),
        format!("lexecon: info: workspace: {}", env.ws.display()),
        "lexecon: info: policy: ".to_string(),
        format!("lexecon: info: key directory: {}", env.keys.display()),
        format!(
            "lexecon: info: ledger: {} (from the command line)",
            env.ledger.display()
        ),
        "lexecon: debug: timing: ".to_string(),
        format!("lexecon: info: run {run_id} ended: "),
    ] {
        assert!(has_line(&err, &prefix), "no line `{prefix}…` in:\n{err}");
    }
    assert!(
        err.contains(&format!("(sha256 {hash}, ")),
        "the policy's hash is not the recorded one ({hash}):\n{err}"
    );
    for step in ["start", "policy loaded", "command forked", "run sealed"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("lexecon: debug: timing: ") && l.contains(step)),
            "no timing of `{step}`:\n{err}"
        );
    }
    // `true` alone: one exec decision at least, all allowed.
    let ended = err
        .lines()
        .find(|l| l.contains(" ended: "))
        .unwrap()
        .to_string();
    assert!(ended.contains(" 0 refused, 0 killed"), "{ended}");
}

#[test]
fn without_it_nothing_extra_is_printed() {
    let env = Env::new();
    let quiet = run(&env, &[], &[], &["true"]);
    let err = stderr(&quiet);
    assert!(diag_lines(&err).is_empty(), "{err}");
    assert!(!err.contains("timing:"), "{err}");
    // The same run with diagnostics: only the diagnostics lines differ in
    // number.
    let loud = run(&env, &[], &[("LEXECON_LOG", "debug")], &["true"]);
    let loud_err = stderr(&loud);
    let extra = diag_lines(&loud_err).len();
    assert!(extra > 5, "{loud_err}");
    assert_eq!(
        loud_err.lines().count() - extra,
        err.lines().count(),
        "quiet:\n{err}\nloud:\n{loud_err}"
    );
    // A level too low for any of them prints none either.
    let warn = run(&env, &[], &[("LEXECON_LOG", "warn")], &["true"]);
    assert!(diag_lines(&stderr(&warn)).is_empty(), "{}", stderr(&warn));
}

#[test]
fn verbose_flags_pick_the_level() {
    let env = Env::new();
    let v = stderr(&run(&env, &["-v"], &[], &["true"]));
    assert!(has_line(&v, "lexecon: info: listener: "), "{v}");
    assert!(!has_line(&v, "lexecon: debug: "), "{v}");
    let vv = stderr(&run(&env, &["-vv"], &[], &["true"]));
    assert!(has_line(&vv, "lexecon: debug: timing: "), "{vv}");
    // RUST_LOG with a plain level is understood too; other forms of it are
    // someone else's and ignored.
    let r = stderr(&run(&env, &[], &[("RUST_LOG", "info")], &["true"]));
    assert!(has_line(&r, "lexecon: info: listener: "), "{r}");
    let other = stderr(&run(&env, &[], &[("RUST_LOG", "hyper=debug")], &["true"]));
    assert!(diag_lines(&other).is_empty(), "{other}");
    // LEXECON_TIMING alone: only the timing lines.
    let t = stderr(&run(&env, &[], &[("LEXECON_TIMING", "1")], &["true"]));
    let lines = diag_lines(&t);
    assert!(!lines.is_empty(), "{t}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("lexecon: debug: timing: ")),
        "{t}"
    );
}

#[test]
fn a_level_that_is_not_one_is_said_and_logging_stays_off() {
    let env = Env::new();
    let err = stderr(&run(&env, &[], &[("LEXECON_LOG", "loud")], &["true"]));
    assert!(
        err.contains("lexecon: warning: LEXECON_LOG=loud is not a level"),
        "{err}"
    );
    assert!(diag_lines(&err).is_empty(), "{err}");
}

#[test]
fn nothing_goes_to_the_trees_own_stderr() {
    let env = Env::new();
    // The tree's stderr is a file of its own; the supervisor's stays the
    // pipe the test reads.
    let out = run(
        &env,
        &[],
        &[("LEXECON_LOG", "debug")],
        &[
            "sh",
            "-c",
            "exec 2>tree.err; echo to-stdout; ls / >/dev/null; true",
        ],
    );
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(diag_lines(&stderr(&out)).len() > 5, "{}", stderr(&out));
    let tree = std::fs::read_to_string(env.ws.join("tree.err")).unwrap();
    assert_eq!(tree, "", "the tree's stderr got: {tree}");
}

#[test]
fn a_log_file_takes_the_lines_instead_of_stderr() {
    let env = Env::new();
    let file = env.root.join("lexecon.log");
    let out = run(
        &env,
        &["-vv"],
        &[("LEXECON_LOG_FILE", file.to_str().unwrap())],
        &["true"],
    );
    let err = stderr(&out);
    assert!(diag_lines(&err).is_empty(), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(has_line(&text, "lexecon: info: listener: "), "{text}");
    assert!(has_line(&text, "lexecon: debug: timing: "), "{text}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn what_the_user_named_is_escaped() {
    let env = Env::new();
    let policy = env.root.join("odd\u{1b}[31mname.yaml");
    std::fs::write(&policy, ALLOW_ALL).unwrap();
    let mut c = env.supervise_cmd_with(&policy, &[], &["true"]);
    for v in VARS {
        c.env_remove(v);
    }
    let out = c.env("LEXECON_LOG", "info").output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("lexecon: info: policy: "))
        .unwrap_or_else(|| panic!("no policy line:\n{err}"));
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert!(line.contains("odd"), "{line:?}");
}
