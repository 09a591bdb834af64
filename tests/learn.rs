//! From observe mode to a policy, and back: `policy suggest` on real
//! recorded runs (a make/cc build, a git workflow, a Python script) gives a
//! policy that `policy check` accepts and under which `replay` refuses
//! nothing the run did; `replay` of a stricter and a looser policy lists
//! exactly the differences; `verify --policy` re-derives every decision and
//! catches a signed record whose verdict does not follow from the policy.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use common::{lexecon, stderr, stdout, Env};
use lexecon::action::{Action, ExecAction, Mode, Verdict};
use lexecon::ledger::{
    keys, DecisionEntry, LedgerWriter, LockMode, Outcome, RunEnd, RunHeader, Stage, SyncPolicy,
    WriterOptions,
};
use lexecon::policy::{Circumstances, Env as PolicyEnv, Policy, Vars};

/// A policy that judges like `observe` but blocks and escalates a few
/// things, so that a recorded run has verdicts of every kind.
const OBSERVED: &str = r#"version: 1
mode: observe
defaults:
  exec: allow
  open: allow
  connect: allow
rules:
  - id: no-secret
    open:
      path: ["${WORKSPACE}/secret.txt"]
    decision: block
    reason: the secret stays unread
  - id: ask-rm
    exec:
      name: rm
    decision: escalate
    reason: deleting needs a human
"#;

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(lexecon()).args(args).output().unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// Observes `cmd` in the env's workspace under `policy` (observe mode) and
/// checks the ledger verifies.
fn observe(env: &Env, policy: &Path, cmd: &[&str]) {
    let out = env
        .supervise_cmd_with(policy, &["--mode", "observe", "--quiet"], cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "observed run failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    env.assert_valid();
}

fn replay_json(env: &Env, policy: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        os("replay"),
        env.ledger.as_os_str(),
        os("--policy"),
        policy.as_os_str(),
        os("--pubkey"),
    ];
    let pk = env.pubkey();
    args.push(pk.as_os_str());
    args.push(os("--json"));
    for e in extra {
        args.push(os(e));
    }
    let out = run(&args);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("replay --json: {e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), j)
}

/// `policy suggest` → `policy check` → `replay`: the suggested policy is
/// valid, allows every recorded action the run carried out, and (with the
/// variables of the run) refuses nothing. Returns the policy's path.
fn round_trip(env: &Env) -> std::path::PathBuf {
    round_trip_with(env, &[])
}

fn round_trip_with(env: &Env, extra: &[&str]) -> std::path::PathBuf {
    let suggested = env.root.join("suggested.yaml");
    let mut args = vec![
        os("policy"),
        os("suggest"),
        env.ledger.as_os_str(),
        os("--pubkey"),
    ];
    let pk = env.pubkey();
    args.push(pk.as_os_str());
    args.extend([os("--force"), os("--out"), suggested.as_os_str()]);
    args.extend(extra.iter().map(|e| os(e)));
    let out = run(&args);
    assert!(out.status.success(), "suggest: {}", stderr(&out));
    let text = std::fs::read_to_string(&suggested).unwrap();
    assert!(text.starts_with("# Suggested by `lexecon policy suggest` from the ledger"));
    assert!(text.contains("\ndefaults:\n  exec: block\n  open: block\n  connect: block\n"));
    let check = Command::new(lexecon())
        .args([os("policy"), os("check"), suggested.as_os_str()])
        .current_dir(&env.ws)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the suggested policy does not pass `policy check`:\n{}{}\n{text}",
        stdout(&check),
        stderr(&check)
    );
    let (code, j) = replay_json(env, &suggested, &[]);
    assert_eq!(code, 0, "{j:#}\n{text}");
    assert_eq!(j["changes"]["refused"], 0, "{j:#}\n{text}");
    assert_eq!(j["changes"]["stricter"], 0, "{j:#}");
    assert!(j["actions"].as_u64().unwrap() > 5, "{j:#}");
    // Every change is to `allow` by a learned rule (from `allow` by the
    // observed policy's default or rules).
    for g in j["groups"].as_array().unwrap() {
        assert_eq!(g["to"]["verdict"], "allow", "{g:#}\n{text}");
        assert!(
            g["to"]["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("learned-")),
            "{g:#}"
        );
    }
    suggested
}

#[test]
fn suggest_check_replay_round_trip_on_a_make_build() {
    let env = Env::new();
    std::fs::write(
        env.ws.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        env.ws.join("Makefile"),
        "hello: hello.o\n\tcc -o hello hello.o\nhello.o: hello.c\n\tcc -c hello.c\n",
    )
    .unwrap();
    let policy = env.policy(OBSERVED);
    observe(&env, &policy, &["make"]);
    assert!(env.ws.join("hello").exists());
    let suggested = round_trip(&env);
    // The build runs again, enforced by the suggested policy, and nothing
    // it needs is refused.
    for f in ["hello", "hello.o"] {
        std::fs::remove_file(env.ws.join(f)).unwrap();
    }
    let out = env
        .supervise_cmd_with(&suggested, &["--fail-on-block"], &["make"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the build failed under its own suggested policy:\n{}",
        stderr(&out)
    );
    assert!(env.ws.join("hello").exists());
}

#[test]
fn suggest_check_replay_round_trip_on_a_git_workflow() {
    let env = Env::new();
    let policy = env.policy(OBSERVED);
    let script = "set -e; git init -q .; echo one > a.txt; git add a.txt; \
                  git -c user.name=t -c user.email=t@example.com commit -q -m one; \
                  git mv a.txt b.txt; git -c user.name=t -c user.email=t@example.com commit -q -m two; \
                  git log --oneline >/dev/null; git status --short";
    observe(&env, &policy, &["sh", "-c", script]);
    let suggested = round_trip(&env);
    let text = std::fs::read_to_string(suggested).unwrap();
    // git's lock files are renamed and removed in the workspace.
    assert!(text.contains("- id: learned-rename"), "{text}");
    assert!(text.contains("        - \"${WORKSPACE}/**\""), "{text}");
    // By content hash too: one rule per program, the run still allowed.
    let suggested = round_trip_with(&env, &["--sha256"]);
    let text = std::fs::read_to_string(suggested).unwrap();
    assert!(text.contains("- id: learned-exec-1\n"), "{text}");
    assert!(text.contains("      sha256:\n        - \""), "{text}");
    assert!(!text.contains("no content hash recorded"), "{text}");
}

#[test]
fn suggest_check_replay_round_trip_on_a_python_script() {
    let env = Env::new();
    std::fs::write(env.ws.join("data.json"), "{\"n\": 2}\n").unwrap();
    std::fs::write(
        env.ws.join("script.py"),
        "import json, subprocess, os\n\
         n = json.load(open('data.json'))['n']\n\
         open('out.txt', 'w').write(str(n * 21))\n\
         subprocess.run(['ls', '-l'], check=True, stdout=subprocess.DEVNULL)\n\
         os.makedirs('build/sub', exist_ok=True)\n\
         os.chmod('out.txt', 0o600)\n\
         import socket\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n\
         c = socket.create_connection(s.getsockname()); c.close(); s.close()\n",
    )
    .unwrap();
    let policy = env.policy(OBSERVED);
    observe(&env, &policy, &["python3", "script.py"]);
    assert_eq!(
        std::fs::read_to_string(env.ws.join("out.txt")).unwrap(),
        "42"
    );
    let suggested = round_trip(&env);
    let text = std::fs::read_to_string(suggested).unwrap();
    assert!(text.contains("- id: learned-mkdir"), "{text}");
    assert!(text.contains("- id: learned-chmod"), "{text}");
    assert!(
        text.contains("connect: {address: [\"127.0.0.1\"], port: [0], protocol: tcp, op: [bind]}"),
        "{text}"
    );
    assert!(text.contains(", protocol: tcp, op: [connect]}"), "{text}");
}

/// The observed run used by the replay tests: reads a file, reads the
/// secret (blocked, observe mode lets it through), runs `rm` twice
/// (escalated), `cat` once and `ls` once.
fn observed_run(env: &Env) {
    std::fs::write(env.ws.join("secret.txt"), "s\n").unwrap();
    std::fs::write(env.ws.join("notes.txt"), "n\n").unwrap();
    let policy = env.policy(OBSERVED);
    observe(
        env,
        &policy,
        &[
            "sh",
            "-c",
            "cat notes.txt >/dev/null; cat secret.txt >/dev/null; touch x y; rm x; rm y; ls >/dev/null",
        ],
    );
}

fn groups(j: &serde_json::Value) -> Vec<(String, String, String, String, String, u64)> {
    j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let r = |v: &serde_json::Value| v.as_str().unwrap_or("default").to_string();
            (
                g["change"].as_str().unwrap().to_string(),
                g["from"]["verdict"].as_str().unwrap().to_string(),
                r(&g["from"]["rule"]),
                g["to"]["verdict"].as_str().unwrap().to_string(),
                r(&g["to"]["rule"]),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn actions_of(j: &serde_json::Value, change: &str) -> Vec<String> {
    let mut v: Vec<String> = j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["change"] == change)
        .flat_map(|g| g["records"].as_array().unwrap().iter())
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn replay_of_a_stricter_policy_lists_exactly_what_it_would_refuse() {
    let env = Env::new();
    observed_run(&env);
    // Stricter: `cat` is blocked, reading notes.txt escalated; the rest
    // as observed.
    let stricter = env.policy(&format!(
        "{OBSERVED}  - id: no-cat\n    exec:\n      name: cat\n    decision: block\n    reason: no cat\n  - id: ask-notes\n    open:\n      path: [\"${{WORKSPACE}}/notes.txt\"]\n    decision: escalate\n    reason: notes are private\n"
    ));
    let (code, j) = replay_json(&env, &stricter, &[]);
    assert_eq!(code, 1, "{j:#}");
    let ws = env.ws.display();
    assert_eq!(
        groups(&j),
        vec![
            (
                "refused".into(),
                "allow".into(),
                "default".into(),
                "block".into(),
                "no-cat".into(),
                2
            ),
            (
                "refused".into(),
                "allow".into(),
                "default".into(),
                "escalate".into(),
                "ask-notes".into(),
                1
            ),
        ],
        "{j:#}"
    );
    assert_eq!(
        actions_of(&j, "refused"),
        vec![
            "exec cat notes.txt".to_string(),
            "exec cat secret.txt".to_string(),
            format!("open {ws}/notes.txt (read)"),
        ]
    );
    assert_eq!(j["changes"]["refused"], 3);
    assert_eq!(j["changes"]["looser"], 0);
    // The human form says the same, with the count.
    let out = run(&[
        os("replay"),
        env.ledger.as_os_str(),
        os("--policy"),
        stricter.as_os_str(),
        os("--pubkey"),
        env.pubkey().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("3 actions the run did would be refused:"),
        "{text}"
    );
    assert!(
        text.contains("  exec ×2: allow (rule default) -> block (rule no-cat)"),
        "{text}"
    );
    assert!(
        text.contains("Result: the new policy would refuse 3 actions the run did (exit 1)"),
        "{text}"
    );
}

#[test]
fn replay_of_a_looser_policy_lists_exactly_what_it_would_allow() {
    let env = Env::new();
    observed_run(&env);
    // Looser: the secret is readable and `rm` allowed by a rule.
    let looser = env.policy(
        "version: 1\nmode: observe\ndefaults:\n  exec: allow\n  open: allow\n  connect: allow\nrules:\n  - id: rm-ok\n    exec:\n      name: rm\n    decision: allow\n    reason: rm is fine here\n",
    );
    let (code, j) = replay_json(&env, &looser, &[]);
    assert_eq!(code, 0, "{j:#}");
    let ws = env.ws.display();
    assert_eq!(
        groups(&j),
        vec![
            (
                "looser".into(),
                "escalate".into(),
                "ask-rm".into(),
                "allow".into(),
                "rm-ok".into(),
                2
            ),
            (
                "looser".into(),
                "block".into(),
                "no-secret".into(),
                "allow".into(),
                "default".into(),
                1
            ),
        ],
        "{j:#}"
    );
    assert_eq!(
        actions_of(&j, "looser"),
        vec![
            "exec rm x".to_string(),
            "exec rm y".to_string(),
            format!("open {ws}/secret.txt (read)"),
        ]
    );
    // The pinned policy itself changes nothing.
    let pinned = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "run")
        .unwrap()["policy_path"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, j) = replay_json(&env, Path::new(&pinned), &[]);
    assert_eq!(code, 0);
    assert_eq!(j["pinned_by_run"], true);
    assert!(j["groups"].as_array().unwrap().is_empty(), "{j:#}");
}

#[test]
fn replay_refuses_an_unverified_ledger_unless_told() {
    let env = Env::new();
    observed_run(&env);
    let strict = env.policy("version: 1\ndefaults:\n  exec: block\nrules: []\n");
    // Cut the last line (the final checkpoint): INCOMPLETE.
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    std::fs::write(&env.ledger, cut[..cut.len() - 1].join("\n") + "\n").unwrap();
    let out = run(&[
        os("replay"),
        env.ledger.as_os_str(),
        os("--policy"),
        strict.as_os_str(),
        os("--pubkey"),
        env.pubkey().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("is INCOMPLETE"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("or pass --unverified"),
        "{}",
        stderr(&out)
    );
    let (code, j) = replay_json(&env, &strict, &["--unverified"]);
    assert_eq!(code, 1, "{j:#}");
    assert!(j["verification"]
        .as_str()
        .unwrap()
        .starts_with("INCOMPLETE"));
}

// ------------------------------------------------------------ verify --policy

const JUDGED: &str = "version: 1\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: no-rm-rf\n    exec:\n      name: rm\n      flags: [\"r|R|recursive\", \"f|force\"]\n    decision: block\n    reason: recursive forced delete\n";

fn exec(words: &[&str]) -> Action {
    Action::Exec(ExecAction {
        path: format!("/usr/bin/{}", words[0]).into(),
        argv: words.iter().map(OsString::from).collect(),
        cwd: "/w".into(),
        sha256: None,
    })
}

/// Writes a run judged by `JUDGED` with the env's real key, through the
/// writer: each action's decision is the policy's, except that `lie`
/// replaces the verdict and rule recorded for the action at that index.
fn write_judged_run(env: &Env, lie: Option<(usize, Verdict, Option<&str>)>) -> std::path::PathBuf {
    let policy_file = env.root.join("judged.yaml");
    std::fs::write(&policy_file, JUDGED).unwrap();
    let vars = Vars {
        home: "/home/u".into(),
        workspace: "/w".into(),
        tmpdir: "/tmp".into(),
    };
    let policy = Policy::from_str_with_env(
        JUDGED,
        "judged.yaml",
        &vars,
        &PolicyEnv::fixed::<&str, &str>([]),
    )
    .unwrap();
    let key = keys::load_signing_key(&env.keys).unwrap();
    let opts = WriterOptions {
        checkpoint_every: 2,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        sync: SyncPolicy::Never,
        lock: LockMode::Fail,
    };
    std::fs::create_dir_all(env.ledger.parent().unwrap()).unwrap();
    let mut w = LedgerWriter::open(&env.ledger, key, opts).unwrap();
    w.begin_run(RunHeader {
        command: vec!["agent".into()],
        cwd: "/w".into(),
        workspace: Some("/w".into()),
        policy_sha256: policy.sha256(),
        policy_path: Some(policy_file.clone()),
        mode: Mode::Enforce,
        ci: BTreeMap::new(),
        vars: Some(BTreeMap::from([
            ("HOME".to_string(), OsString::from("/home/u")),
            ("TMPDIR".to_string(), OsString::from("/tmp")),
            ("WORKSPACE".to_string(), OsString::from("/w")),
        ])),
        policy_layers: Vec::new(),
    })
    .unwrap();
    let actions = [
        exec(&["ls", "-l"]),
        exec(&["rm", "-rf", "/"]),
        exec(&["rm", "x"]),
        exec(&["git", "status"]),
    ];
    for (i, a) in actions.iter().enumerate() {
        let mut d = policy.judge(a, &Circumstances::default());
        if let Some((at, verdict, rule)) = lie {
            if at == i {
                d.verdict = verdict;
                d.rule = rule.map(str::to_string);
                d.matched = d.rule.iter().cloned().collect();
            }
        }
        let outcome = if d.verdict == Verdict::Allow {
            Outcome::Allowed
        } else {
            Outcome::Refused
        };
        w.append_decision(&DecisionEntry {
            pid: 100 + i as i32,
            ppid: 99,
            action: a,
            loaded: None,
            stage: Stage::Request,
            verdict: d.verdict,
            outcome,
            rule: d.rule.clone(),
            matched: d.matched.clone(),
            reason: d.reason.clone(),
            mode: Mode::Enforce,
            identity: None,
            note: None,
        })
        .unwrap();
    }
    w.end_run(RunEnd {
        exit_status: Some(0),
        ..Default::default()
    })
    .unwrap();
    policy_file
}

fn verify_with_policy(env: &Env, policies: &[&Path]) -> (i32, String) {
    let mut args: Vec<&std::ffi::OsStr> =
        vec![os("verify"), env.ledger.as_os_str(), os("--pubkey")];
    let pk = env.pubkey();
    args.push(pk.as_os_str());
    for p in policies {
        args.push(os("--policy"));
        args.push(p.as_os_str());
    }
    let out = run(&args);
    (out.status.code().unwrap_or(-1), stdout(&out))
}

#[test]
fn verify_policy_passes_an_honest_run() {
    let env = Env::new();
    let policy = write_judged_run(&env, None);
    let (code, out) = verify_with_policy(&env, &[&policy]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Status: VALID"), "{out}");
    assert!(
        out.contains("Decisions: 4 re-derived from the pinned policy (1 run: "),
        "{out}"
    );
    let out = run(&[
        os("verify"),
        env.ledger.as_os_str(),
        os("--pubkey"),
        env.pubkey().as_os_str(),
        os("--policy"),
        policy.as_os_str(),
        os("--json"),
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"], "VALID");
    assert_eq!(j["decisions"]["checked"], 4);
    assert_eq!(j["decisions"]["builtin"], 0);
    assert_eq!(
        j["decisions"]["runs"][0]["policy"],
        policy.display().to_string()
    );
}

#[test]
fn verify_policy_catches_a_signed_record_whose_verdict_was_a_lie() {
    let env = Env::new();
    // `rm -rf /` recorded as allowed by the default, signed with the key.
    let policy = write_judged_run(&env, Some((1, Verdict::Allow, None)));
    // Without --policy the ledger is intact: the lie is signed.
    let (code, out) = env.verify();
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_with_policy(&env, &[&policy]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Status: INVALID"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("[14 decision]"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("): [14 decision] exec rm -rf /: recorded allow (the default), but the policy gives block (rule no-rm-rf) for this action"),
        "{line}"
    );
    assert_eq!(out.matches("[14 decision]").count(), 1, "{out}");
}

#[test]
fn verify_policy_catches_a_lie_about_the_winning_rule() {
    let env = Env::new();
    let policy = write_judged_run(&env, Some((3, Verdict::Allow, Some("git-ok"))));
    let (code, out) = verify_with_policy(&env, &[&policy]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("exec git status: recorded allow (rule git-ok), but the policy gives allow (the default)"),
        "{out}"
    );
}

#[test]
fn verify_policy_says_when_no_policy_given_is_the_one_the_run_pinned() {
    let env = Env::new();
    write_judged_run(&env, None);
    let other = env.policy("version: 1\nrules: []\n");
    let (code, out) = verify_with_policy(&env, &[&other]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("Status: INCOMPLETE"), "{out}");
    assert!(
        out.contains("its decisions were not re-derived: it pinned policy sha256 "),
        "{out}"
    );
    assert!(
        out.contains("give the file the run was supervised with"),
        "{out}"
    );
}

#[test]
fn verify_policy_re_derives_a_real_observed_run() {
    let env = Env::new();
    observed_run(&env);
    let policy = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "run")
        .unwrap()["policy_path"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = verify_with_policy(&env, &[Path::new(&policy)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("re-derived from the pinned policy (1 run: "),
        "{out}"
    );
}

#[test]
fn a_run_without_recorded_variables_needs_them_given() {
    // A ledger whose header has no vars, as earlier versions wrote them.
    let env2 = Env::new();
    {
        let key = keys::load_signing_key(&env2.keys).unwrap();
        let opts = WriterOptions {
            checkpoint_every: 8,
            checkpoint_interval: std::time::Duration::from_secs(3600),
            sync: SyncPolicy::Never,
            lock: LockMode::Fail,
        };
        std::fs::create_dir_all(env2.ledger.parent().unwrap()).unwrap();
        let mut w = LedgerWriter::open(&env2.ledger, key, opts).unwrap();
        w.begin_run(RunHeader {
            command: vec!["agent".into()],
            cwd: "/w".into(),
            workspace: Some("/w".into()),
            policy_sha256: [0; 32],
            policy_path: None,
            mode: Mode::Enforce,
            ci: BTreeMap::new(),
            vars: None,
            policy_layers: Vec::new(),
        })
        .unwrap();
        let a = exec(&["ls"]);
        w.append_decision(&DecisionEntry {
            pid: 1,
            ppid: 0,
            action: &a,
            loaded: None,
            stage: Stage::Request,
            verdict: Verdict::Allow,
            outcome: Outcome::Allowed,
            rule: None,
            matched: vec![],
            reason: "r".into(),
            mode: Mode::Enforce,
            identity: None,
            note: None,
        })
        .unwrap();
        w.end_run(RunEnd::default()).unwrap();
    }
    let strict = env2.policy("version: 1\ndefaults:\n  exec: block\nrules: []\n");
    let out = run(&[
        os("replay"),
        env2.ledger.as_os_str(),
        os("--policy"),
        strict.as_os_str(),
        os("--pubkey"),
        env2.pubkey().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not record the value of HOME, TMPDIR")
            && stderr(&out).contains("give --var HOME=PATH --var TMPDIR=PATH"),
        "{}",
        stderr(&out)
    );
    let (code, j) = replay_json(
        &env2,
        &strict,
        &["--var", "HOME=/home/u", "--var", "TMPDIR=/tmp"],
    );
    assert_eq!(code, 1, "{j:#}");
    assert_eq!(j["vars"]["HOME"]["source"], "given");
    assert_eq!(j["vars"]["WORKSPACE"]["source"], "recorded");
    assert_eq!(actions_of(&j, "refused"), vec!["exec ls".to_string()]);
}

#[test]
fn suggest_with_a_base_writes_only_what_it_lacks() {
    let env = Env::new();
    observed_run(&env);
    let base_text = "version: 1\ndefaults:\n  exec: block\n  open: block\n  connect: block\nrules:\n  - id: base-sh\n    exec:\n      program: [/usr/bin/dash, /usr/bin/bash]\n    decision: allow\n    reason: shells\n  - id: base-no-secret\n    open:\n      path: [\"${WORKSPACE}/secret.txt\"]\n    decision: block\n    reason: the secret stays unread\n";
    let base = env.policy(base_text);
    let out = run(&[
        os("policy"),
        os("suggest"),
        env.ledger.as_os_str(),
        os("--pubkey"),
        env.pubkey().as_os_str(),
        os("--base"),
        base.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let additions = stdout(&out);
    assert!(
        stderr(&out).contains("1 actions of the run are refused by rules of the base policy"),
        "{}",
        stderr(&out)
    );
    assert!(additions.contains("Only additions to "), "{additions}");
    assert!(
        additions.contains("#   rule base-no-secret (block): 1 actions, e.g. open "),
        "{additions}"
    );
    assert!(!additions.contains("\ndefaults:"), "{additions}");
    assert!(
        additions.contains("        - \"/usr/bin/cat\"\n"),
        "{additions}"
    );
    assert!(
        !additions.contains("/usr/bin/dash"),
        "the base allows the shell already:\n{additions}"
    );
    // The additions alone are a valid policy …
    let add_file = env.policy(&additions);
    let check = run(&[os("policy"), os("check"), add_file.as_os_str()]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    // … and the base with them pasted into its rules allows everything
    // the run did but what the base's own rule refuses.
    let rules = additions.split_once("\nrules:\n").unwrap().1;
    let merged = env.policy(&format!("{base_text}{rules}"));
    let (code, j) = replay_json(&env, &merged, &[]);
    assert_eq!(code, 0, "{j:#}");
    for g in j["groups"].as_array().unwrap() {
        if g["to"]["rule"] == "base-no-secret" {
            assert_eq!(
                (&g["change"], &g["count"]),
                (&"rule".into(), &1.into()),
                "{g:#}"
            );
        } else {
            assert_eq!(g["to"]["verdict"], "allow", "{g:#}");
        }
    }
}

/// The dynamic loader asked to run a program (`ld.so PROG`) is judged as
/// PROG too, online and offline: its record carries the program, so a
/// replay with a policy that blocks PROG refuses the loader's exec, and a
/// run enforced that way re-derives.
#[test]
fn the_program_the_loader_runs_is_judged_offline_too() {
    let ld = "/lib64/ld-linux-x86-64.so.2";
    if !Path::new(ld).exists() {
        eprintln!("skipped: no {ld}");
        return;
    }
    let env = Env::new();
    let observed = env.policy(OBSERVED);
    observe(&env, &observed, &[ld, "/usr/bin/true"]);
    let loaded: Vec<serde_json::Value> = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r.get("loaded").is_some())
        .collect();
    assert!(
        !loaded.is_empty(),
        "no record names the program the loader ran"
    );
    assert_eq!(loaded[0]["loaded"]["path"], "/usr/bin/true");
    let no_true = "version: 1\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: no-true\n    exec:\n      program: /usr/bin/true\n    decision: block\n    reason: not this one\n";
    let policy = env.policy(no_true);
    let (code, j) = replay_json(&env, &policy, &[]);
    assert_eq!(code, 1, "{j:#}");
    let refused = actions_of(&j, "refused");
    assert!(
        refused
            .iter()
            .any(|a| a.starts_with(&format!("exec {ld} /usr/bin/true"))),
        "{j:#}"
    );
    // The suggested policy allows the program the loader ran.
    let suggested = round_trip(&env);
    let text = std::fs::read_to_string(suggested).unwrap();
    assert!(text.contains("        - \"/usr/bin/true\"\n"), "{text}");
    // Enforced: refused by the alias, and `verify --policy` agrees.
    let out = env
        .supervise_cmd(&policy, &[ld, "/usr/bin/true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (code, out) = verify_with_policy(&env, &[&observed, &policy]);
    assert_eq!(code, 0, "{out}");
}
