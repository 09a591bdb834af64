//! The command-line conventions: versions that name their build, usage
//! errors that exit alike from both binaries, completions, man pages, JSON
//! from `policy check`, options from the environment.

mod common;

use std::process::Command;

use common::*;

const SUPERVISE: &str = env!("CARGO_BIN_EXE_lexecon-supervise");

#[test]
fn versions_name_the_build_and_are_recorded() {
    for bin in [LEXECON, SUPERVISE] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        let s = stdout(&out);
        assert!(s.contains(env!("CARGO_PKG_VERSION")), "{s}");
        assert!(s.contains("(commit ") && s.contains(" build)"), "{s}");
    }
    let env = Env::new();
    let out = env.supervise(&env.policy(ALLOW_ALL), &["/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let header = &env.records()[0];
    let version = header["version"].as_str().unwrap();
    assert!(version.contains("(commit "), "{header}");
    env.assert_valid();
}

#[test]
fn usage_errors_exit_alike_from_both_binaries() {
    let a = Command::new(LEXECON)
        .args(["supervise", "--bogus", "--", "true"])
        .output()
        .unwrap();
    let b = Command::new(SUPERVISE)
        .args(["--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(a.status.code(), Some(125), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(125), "{}", stderr(&b));
    // Other commands keep the usual usage-error status.
    let c = Command::new(LEXECON)
        .args(["verify", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(c.status.code(), Some(2));
    // --help is not an error.
    let h = Command::new(LEXECON)
        .args(["supervise", "--help"])
        .output()
        .unwrap();
    assert_eq!(h.status.code(), Some(0));
}

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(LEXECON)
            .args(["completions", shell])
            .output()
            .unwrap();
        let s = stdout(&out);
        assert!(out.status.success(), "{shell}");
        for word in ["supervise", "verify", "policy"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
        let out = Command::new(LEXECON)
            .args(["completions", shell, "--supervise"])
            .output()
            .unwrap();
        assert!(stdout(&out).contains("policy"), "{shell}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(LEXECON)
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "lexecon.1",
        "lexecon-supervise.1",
        "lexecon-verify.1",
        "lexecon-policy-check.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let text = std::fs::read_to_string(dir.path().join("lexecon-supervise.1")).unwrap();
    assert!(
        text.contains("on\\-escalate") || text.contains("on-escalate"),
        "{text}"
    );
}

#[test]
fn policy_check_json() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nrules:\n  - id: r\n    exec: {name: x}\n    decision: maybe\n    reason: r\n",
    )
    .unwrap();
    let out = Command::new(LEXECON)
        .args(["policy", "check", "--json", "ci"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["policies"][0]["valid"], true, "{v}");
    assert_eq!(v["policies"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["policies"][1]["valid"], false);
    let err = &v["policies"][1]["errors"][0];
    assert_eq!(err["line"], 5, "{v}");
    assert_eq!(err["rule"], "r", "{v}");
}

#[test]
fn the_policy_can_come_from_the_environment() {
    let env = Env::new();
    let block = env.policy(
        "version: 1\ndefaults: {exec: allow, open: allow}\nrules:\n  - id: no-true\n    exec: {name: true}\n    decision: block\n    reason: r\n",
    );
    // The helper passes --policy; without it, LEXECON_POLICY is used.
    let mut c = Command::new(LEXECON);
    c.args([
        "supervise",
        "--allow-root-tree",
        "--sync",
        "never",
        "--ledger",
    ])
    .arg(&env.ledger)
    .arg("--keys")
    .arg(&env.keys)
    .args(["--", "true"])
    .current_dir(&env.ws)
    .env("LEXECON_POLICY", &block);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-true"), "{}", stderr(&out));
}

#[test]
fn doctor_here_and_inside_a_supervised_run() {
    let out = Command::new(LEXECON)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    let e2e = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "end to end")
        .unwrap();
    assert_eq!(e2e["level"], "ok", "{v:#}");
    // Inside a supervised run a second supervisor cannot enforce (the
    // filter refuses a second listener and ptrace): doctor says so and
    // fails, instead of a tree where every call fails.
    let env = Env::new();
    let out = env.supervise(&env.policy(ALLOW_ALL), &[LEXECON, "doctor"]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{s}\n{}", stderr(&out));
    assert!(s.contains("FAIL  end to end"), "{s}");
    assert!(s.contains("warn  seccomp filters above"), "{s}");
    assert!(s.contains("cannot enforce"), "{s}");
}

#[test]
fn a_supervisor_inside_a_supervised_run_says_why_it_cannot_start() {
    let env = Env::new();
    let inner_keys = env.root.join("inner-keys");
    let out = Command::new(LEXECON)
        .args(["init-keys", "--dir"])
        .arg(&inner_keys)
        .output()
        .unwrap();
    assert!(out.status.success());
    let inner_ledger = env.root.join("inner.jsonl");
    let (k, l) = (
        inner_keys.display().to_string(),
        inner_ledger.display().to_string(),
    );
    let out = env.supervise(
        &env.policy(ALLOW_ALL),
        &[
            SUPERVISE,
            "--allow-root-tree",
            "--policy",
            "observe",
            "--keys",
            &k,
            "--ledger",
            &l,
            "--",
            "/bin/true",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("cannot be enforced here"), "{err}");
    assert!(err.contains("lexecon doctor"), "{err}");
    // Its own child, dead before it is reaped, is killed without a refusal.
    assert!(!err.contains("outside the supervised tree"), "{err}");
    env.assert_valid();
}
