//! `lexecon policy check` and `lexecon policy explain`, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lexecon(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lexecon"))
        .args(args)
        .current_dir(dir)
        .env("HOME", "/home/u")
        .env("TMPDIR", "/tmp")
        .output()
        .expect("lexecon runs")
}

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_every_shipped_policy_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = ["default.yaml", "ci.yaml", "observe.yaml", "demo.yaml"]
        .iter()
        .map(|f| policies().join(f).display().to_string())
        .collect();
    let mut args = vec!["policy", "check"];
    args.extend(files.iter().map(String::as_str));
    let out = lexecon(&args, dir.path());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches(": valid\n").count(), 4, "{stdout}");
    assert!(stdout.contains("  mode: observe\n"), "{stdout}");
    assert!(
        stdout.contains("  defaults: exec allow, open allow, connect allow\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  rules: 1 exec, 0 open, 0 connect; 13 examples and tests checked\n"),
        "{stdout}"
    );
    let sha_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  sha256: "))
        .collect();
    assert_eq!(sha_lines.len(), 4);
    assert!(sha_lines.iter().all(|l| l.len() == "  sha256: ".len() + 64));
}

#[test]
fn check_reports_every_error_with_its_location_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nrules:\n  - id: x\n    exec: {name: rm, flagz: [r]}\n    decision: blok\n    reason: r\n",
    )
    .unwrap();
    let good = policies().join("demo.yaml");
    let out = lexecon(
        &["policy", "check", "bad.yaml", good.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr,
        "bad.yaml:4:22: rule 'x': unknown key 'flagz' in `exec` conditions (did you mean 'flags'? allowed here: program, name, sha256, args, argv_regex, flags, operand, operand_path, operand_outside, operand_covers, cwd, unless)\n\
         bad.yaml:5:15: rule 'x': decision 'blok' is not a decision (write allow, block or escalate)\n"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("bad.yaml: invalid (2 errors)"), "{stdout}");
    assert!(stdout.contains("demo.yaml: valid"), "{stdout}");
}

#[test]
fn check_of_a_missing_file_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let out = lexecon(&["policy", "check", "nope.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("nope.yaml:0:0: cannot read the policy file"));
}

#[test]
fn explain_exec_shows_decision_winner_and_other_matches() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policies().join("default.yaml");
    let out = lexecon(
        &[
            "policy",
            "explain",
            policy.to_str().unwrap(),
            "--",
            "exec",
            "rm",
            "-rf",
            "/",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Decision: BLOCK\n"), "{stdout}");
    assert!(
        stdout.contains("Rule: block-rm-rf-outside-workspace\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Reason: recursive forced delete outside the workspace"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  * block-rm-rf-outside-workspace (block, line "),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - escalate-rm-r-outside-workspace (escalate, line "),
        "{stdout}"
    );
    assert!(
        stdout.contains("flags: 'r|R|recursive' given as -r, 'f|force' given as -f"),
        "{stdout}"
    );
}

#[test]
fn explain_rm_rf_inside_the_workspace_is_allowed_by_default_but_blocked_by_demo() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("important_data")).unwrap();
    let run = |policy: &str| {
        let p = policies().join(policy);
        lexecon(
            &[
                "policy",
                "explain",
                p.to_str().unwrap(),
                "--",
                "exec",
                "rm",
                "-rf",
                "./important_data",
            ],
            dir.path(),
        )
    };
    let out = text(&run("default.yaml").stdout);
    assert!(out.contains("Decision: ALLOW\n"), "{out}");
    assert!(out.contains("Rule: (none; default)\n"), "{out}");
    let out = text(&run("demo.yaml").stdout);
    assert!(
        out.contains("Decision: BLOCK\nRule: block-rm-rf\n"),
        "{out}"
    );
    assert!(dir.path().join("important_data").exists());
}

#[test]
fn explain_open_with_access_flags_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policies().join("default.yaml");
    let out = lexecon(
        &[
            "policy",
            "explain",
            "--json",
            policy.to_str().unwrap(),
            "--",
            "open",
            "/home/u/.ssh/id_rsa",
            "--read",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "block");
    assert_eq!(v["rule"], "block-ssh-keys");
    assert_eq!(v["action"]["kind"], "open");
    assert_eq!(v["action"]["access"], serde_json::json!(["read"]));
    assert_eq!(v["matched"][0]["winner"], true);
    assert_eq!(v["matched"][0]["conditions"][0]["condition"], "path");

    let out = lexecon(
        &[
            "policy",
            "explain",
            policy.to_str().unwrap(),
            "--",
            "open",
            "/etc/hosts",
            "--write",
            "--create",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Action: open /etc/hosts [write,create]\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Rule: block-writes-outside-workspace\n"),
        "{stdout}"
    );

    let ws = dir.path().join("src/main.rs");
    let out = lexecon(
        &[
            "policy",
            "explain",
            policy.to_str().unwrap(),
            "--",
            "open",
            "src/main.rs",
            "--write",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "Action: open {} [write]",
            ws.canonicalize().unwrap_or(ws.clone()).display()
        )) || stdout.contains("src/main.rs [write]"),
        "{stdout}"
    );
    assert!(stdout.contains("Decision: ALLOW\n"), "{stdout}");
}

#[test]
fn explain_cwd_option_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policies().join("default.yaml");
    let p = policy.to_str().unwrap();
    let out = lexecon(
        &[
            "policy",
            "explain",
            "--cwd",
            "/",
            "--workspace",
            "/home/u/ws",
            p,
            "--",
            "exec",
            "rm",
            "-rf",
            "home",
        ],
        dir.path(),
    );
    assert!(
        text(&out.stdout).contains("Decision: BLOCK\n"),
        "{}",
        text(&out.stdout)
    );
    let out = lexecon(
        &[
            "policy",
            "explain",
            "--workspace",
            "/",
            p,
            "--",
            "exec",
            "rm",
            "-rf",
            "/home/u/ws/x",
        ],
        dir.path(),
    );
    assert!(
        text(&out.stdout).contains("Decision: ALLOW\n"),
        "{}",
        text(&out.stdout)
    );
    let out = lexecon(
        &["policy", "explain", p, "--", "open", "/x", "--exec"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown access flag '--exec'"));
    let out = lexecon(&["policy", "explain", p, "--", "unlink", "/x"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown action 'unlink'"));
}

#[test]
fn explain_accepts_non_utf8_arguments() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let dir = tempfile::tempdir().unwrap();
    let policy = policies().join("default.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_lexecon"))
        .args(["policy", "explain"])
        .arg(&policy)
        .args(["--", "exec", "rm", "-rf"])
        .arg(OsString::from_vec(b"/\xff\xfe".to_vec()))
        .current_dir(dir.path())
        .env("HOME", "/home/u")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Decision: BLOCK\n"), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_lexecon"))
        .args(["policy", "explain", "--json"])
        .arg(&policy)
        .args(["--", "open"])
        .arg(OsString::from_vec(b"/home/u/.ssh/\xff".to_vec()))
        .current_dir(dir.path())
        .env("HOME", "/home/u")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "block");
}

/// The environment variables the shipped policies read through
/// `${env.…}`; removed so that the defaults apply unless a test sets them.
const TOOLCHAIN_VARS: &[&str] = &[
    "CARGO_HOME",
    "RUSTUP_HOME",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "npm_config_cache",
    "NPM_CONFIG_CACHE",
    "npm_config_prefix",
    "PIP_CACHE_DIR",
    "GOPATH",
    "GOBIN",
    "GOCACHE",
    "GOMODCACHE",
    "GRADLE_USER_HOME",
    "PNPM_HOME",
    "PYENV_ROOT",
];

fn lexecon_env(args: &[&str], dir: &Path, set: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lexecon"));
    c.args(args)
        .current_dir(dir)
        .env("HOME", "/home/u")
        .env("TMPDIR", "/tmp");
    for v in TOOLCHAIN_VARS {
        c.env_remove(v);
    }
    for (k, v) in set {
        c.env(k, v);
    }
    c.output().expect("lexecon runs")
}

/// `explain` of an open: (decision line, rule line).
fn explain_open(
    policy: &str,
    path: &str,
    flags: &[&str],
    set: &[(&str, &str)],
) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = policies().join(policy);
    let mut args = vec!["policy", "explain", p.to_str().unwrap(), "--", "open", path];
    args.extend_from_slice(flags);
    let out = lexecon_env(&args, dir.path(), set);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {stdout}"))
            .to_string()
    };
    (line("Decision: "), line("Rule: "))
}

#[test]
fn explain_persistence_writes_escalate_by_default_and_block_in_ci() {
    let w = ["--write"];
    let wc = ["--write", "--create", "--truncate"];
    assert_eq!(
        explain_open("default.yaml", "/home/u/.cargo/bin/git", &w, &[]),
        (
            "Decision: ESCALATE".into(),
            "Rule: escalate-install-locations".into()
        )
    );
    assert_eq!(
        explain_open("ci.yaml", "/home/u/.cargo/bin/git", &w, &[]),
        (
            "Decision: BLOCK".into(),
            "Rule: block-install-locations".into()
        )
    );
    for policy in ["default.yaml", "ci.yaml"] {
        for (path, rule) in [
            ("/home/u/.bashrc", "block-persistence-startup-and-session"),
            (
                "/home/u/.config/systemd/user/x.service",
                "block-persistence-startup-and-session",
            ),
            (
                "/home/u/.cargo/config.toml",
                "block-persistence-tool-config",
            ),
            (
                "/home/u/.gradle/init.d/x.gradle",
                "block-persistence-tool-config",
            ),
        ] {
            assert_eq!(
                explain_open(policy, path, &wc, &[]),
                ("Decision: BLOCK".into(), format!("Rule: {rule}")),
                "{policy}: {path}"
            );
        }
        assert_eq!(
            explain_open(policy, "/home/u/.cargo/bin/git", &["--read"], &[]).0,
            "Decision: ALLOW"
        );
    }
}

#[test]
fn caches_follow_cargo_home_and_the_policy_hash_covers_it() {
    let rwc = ["--read", "--write", "--create"];
    let ch = [("CARGO_HOME", "/usr/local/cargo")];
    for policy in ["default.yaml", "ci.yaml"] {
        for path in [
            "/usr/local/cargo/.package-cache",
            "/usr/local/cargo/registry/index/index.crates.io-x/config.json",
        ] {
            assert_eq!(
                explain_open(policy, path, &rwc, &ch).0,
                "Decision: ALLOW",
                "{policy}: {path}"
            );
            // Not a cache when CARGO_HOME is unset.
            assert_eq!(
                explain_open(policy, path, &rwc, &[]).0,
                "Decision: BLOCK",
                "{policy}: {path}"
            );
        }
        assert_ne!(
            explain_open(policy, "/usr/local/cargo/bin/cargo", &rwc, &ch).0,
            "Decision: ALLOW",
            "{policy}"
        );
        // The home default is not a cache any more once CARGO_HOME moves it.
        assert_eq!(
            explain_open(policy, "/home/u/.cargo/registry/x", &rwc, &ch).0,
            "Decision: BLOCK",
            "{policy}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let p = policies().join("ci.yaml");
    let sha = |set: &[(&str, &str)]| {
        let out = lexecon_env(&["policy", "check", p.to_str().unwrap()], dir.path(), set);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .find(|l| l.starts_with("  sha256: "))
            .unwrap()
            .to_string()
    };
    assert_ne!(sha(&[]), sha(&ch));
    assert_eq!(sha(&[]), sha(&[("CARGO_HOME", "")]), "empty is unset");
}

#[test]
fn an_environment_value_that_would_cover_everything_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    for policy in ["default.yaml", "ci.yaml"] {
        let p = policies().join(policy);
        let out = lexecon_env(
            &["policy", "check", p.to_str().unwrap()],
            dir.path(),
            &[("CARGO_HOME", "/")],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{policy}: {stderr}");
        assert!(
            stderr.contains("${env.CARGO_HOME} is '/'") && stderr.contains("whole filesystem"),
            "{policy}: {stderr}"
        );
        let out = lexecon_env(
            &[
                "policy",
                "explain",
                p.to_str().unwrap(),
                "--",
                "open",
                "/etc/passwd",
                "--write",
            ],
            dir.path(),
            &[("CARGO_HOME", "/")],
        );
        assert_eq!(out.status.code(), Some(1), "{policy}");
    }
}

#[test]
fn shipped_policies_by_name_and_a_closed_pipe() {
    const LEXECON: &str = env!("CARGO_BIN_EXE_lexecon");
    // Every shipped policy is built in: by name, with or without
    // `builtin:`, from a directory with no policies/ in it.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(LEXECON)
        .args([
            "policy",
            "check",
            "default",
            "ci",
            "builtin:observe",
            "demo.yaml",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["default", "ci", "observe", "demo"] {
        assert!(s.contains(&format!("builtin:{name}: valid")), "{s}");
    }
    let show = Command::new(LEXECON)
        .args(["policy", "show", "ci"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&show.stdout),
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/ci.yaml")).unwrap()
    );
    let bad = Command::new(LEXECON)
        .args(["policy", "show", "nope"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("default, ci, observe, demo"));
    // A file of that name in the directory wins over the built-in one.
    std::fs::write(dir.path().join("ci"), "version: 1\nrules: []\n").unwrap();
    let out = Command::new(LEXECON)
        .args(["policy", "check", "ci"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ci: valid"));
    // Output into a pipe closed early ends quietly.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("'{LEXECON}' policy show default | head -1"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
