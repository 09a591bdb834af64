//! Escalation: held calls, answered over the approval socket.
//!
//! Every test drives a real supervised tree. Nothing depends on timing for
//! pass or fail: the tests poll `lexecon pending` until the request shows,
//! then answer; the agents wait for files the test creates.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, LEXECON};

/// Generous bound for anything to happen.
const PATIENCE: Duration = Duration::from_secs(60);

/// A policy: execs of `touch` and reads of `secret*` in the workspace escalate.
fn policy(env: &Env) -> PathBuf {
    env.policy(&format!(
        r#"version: 1
mode: enforce
defaults:
  exec: allow
  open: allow
rules:
  - id: ask-touch
    exec:
      program: "**/touch"
    decision: escalate
    reason: touching files needs a human
  - id: ask-secret
    open:
      path: ["{ws}/secret*"]
    decision: escalate
    reason: secrets need a human
"#,
        ws = env.ws.display()
    ))
}

fn agent(env: &Env, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = env.ws.join("agent.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn start(env: &Env, policy: &Path, extra: &[&str]) -> Child {
    let mut c = Command::new(LEXECON);
    c.arg("supervise")
        .arg("--allow-root-tree")
        .arg("--policy")
        .arg(policy)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .arg("--sync")
        .arg("never")
        .args(extra)
        .arg("--")
        .arg("./agent.sh")
        .env("LEXECON", LEXECON)
        .env("LEDGER", &env.ledger)
        .current_dir(&env.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn wait_child(mut child: Child) -> Output {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the supervised run did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn lexecon(env: &Env, args: &[&str]) -> Output {
    Command::new(LEXECON)
        .args(args)
        .arg("--ledger")
        .arg(&env.ledger)
        .output()
        .unwrap()
}

/// The pending list, once it holds request `id`.
fn pending_with(env: &Env, id: u64) -> Vec<serde_json::Value> {
    let t = Instant::now();
    loop {
        let out = lexecon(env, &["pending", "--json"]);
        if out.status.success() {
            let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            if v.iter().any(|p| p["id"] == id) {
                return v;
            }
        }
        assert!(t.elapsed() < PATIENCE, "request {id} never became pending");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answer(env: &Env, verb: &str, id: u64, for_run: bool) {
    let id = id.to_string();
    let mut args = vec![verb, id.as_str()];
    if for_run {
        args.push("--for-run");
    }
    // Approvals are given with `--json` and denials as text, so that both
    // outputs are checked by every test that answers.
    let json = verb == "approve";
    if json {
        args.push("--json");
    }
    let out = lexecon(env, &args);
    assert!(
        out.status.success(),
        "{verb} {id} failed: {}",
        common::stderr(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    if json {
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["request"].to_string(), id, "{stdout}");
        assert_eq!(v["answer"], "approved", "{stdout}");
        assert_eq!(v["for_run"], for_run, "{stdout}");
        assert_eq!(v["receipt"], false, "{stdout}");
    } else {
        assert!(
            stdout.starts_with(&format!("request {id} denied")),
            "{stdout}"
        );
    }
}

fn wait_file(p: &Path) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(t.elapsed() < PATIENCE, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn of_kind(env: &Env, kind: &str) -> Vec<serde_json::Value> {
    env.records()
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

#[test]
fn held_exec_waits_while_a_sibling_works_then_runs_when_approved() {
    let env = Env::new();
    let p = policy(&env);
    agent(
        &env,
        "touch approved &\n\
         i=0; while [ ! -e go ]; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.02; done\n\
         wait $!; echo \"touch=$?\" > result\n",
    );
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "120"],
    );
    let list = pending_with(&env, 1);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["rule"], "ask-touch");
    assert_eq!(list[0]["action"], "exec touch approved");
    // The sibling keeps working while the exec is held.
    let count = |env: &Env| -> u64 {
        std::fs::read_to_string(env.ws.join("counter"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let c1 = count(&env);
    let t = Instant::now();
    while count(&env) < c1 + 5 {
        assert!(
            t.elapsed() < PATIENCE,
            "the sibling stalled while a call was held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!env.ws.join("approved").exists(), "the held exec ran");
    answer(&env, "approve", 1, false);
    std::fs::write(env.ws.join("go"), "").unwrap();
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.ws.join("result")).unwrap(),
        "touch=0\n"
    );
    assert!(env.ws.join("approved").exists());
    assert!(common::stderr(&out).contains("request 1 is waiting for approval: exec touch approved"));

    let esc = of_kind(&env, "escalation");
    let res = of_kind(&env, "resolution");
    assert_eq!((esc.len(), res.len()), (1, 1));
    assert_eq!(esc[0]["rule"], "ask-touch");
    assert_eq!(esc[0]["request"], "1");
    assert_eq!(res[0]["by"], "approver");
    assert_eq!(res[0]["outcome"], "allowed");
    assert_eq!(res[0]["escalation"], esc[0]["seq"]);
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(res[0]["peer_uid"], uid.to_string());
    let touch = env.exec_records("touch");
    assert_eq!(touch.len(), 2, "{touch:?}");
    assert_eq!(touch[0]["stage"], "request");
    assert_eq!(touch[0]["outcome"], "allowed");
    assert!(touch[0]["note"]
        .as_str()
        .unwrap()
        .contains("request 1 approved"));
    // The exec event confirms the approved program instead of killing it.
    assert_eq!(touch[1]["stage"], "confirm");
    assert_eq!(touch[1]["outcome"], "allowed");
    env.assert_valid();
}

#[test]
fn held_open_denied_fails_with_eperm_and_approved_open_reads_the_file() {
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("secret1"), "one\n").unwrap();
    std::fs::write(env.ws.join("secret2"), "two\n").unwrap();
    agent(
        &env,
        "cat secret1 > got1 2> err1; echo \"cat1=$?\" > r1\n\
         cat secret2 > got2; echo \"cat2=$?\" > r2\n",
    );
    let summary = env.root.join("summary.json");
    let child = start(
        &env,
        &p,
        &[
            "--on-escalate",
            "wait",
            "--escalate-timeout",
            "120",
            "--json-summary",
            summary.to_str().unwrap(),
        ],
    );
    let list = pending_with(&env, 1);
    assert!(list[0]["action"].as_str().unwrap().contains("secret1"));
    answer(&env, "deny", 1, false);
    assert_eq!(wait_file(&env.ws.join("r1")), "cat1=1\n");
    let err = std::fs::read_to_string(env.ws.join("err1")).unwrap();
    assert!(err.contains("Operation not permitted"), "{err}");
    // The denied process is told what was refused, by which rule and why,
    // and that a human denied it.
    let told = format!(
        "lexecon: blocked open {}/secret1 (read) (rule ask-secret, record ",
        env.ws.display()
    );
    assert!(
        err.starts_with(&told)
            && err.contains(
                "): secrets need a human; escalation request 1 denied by `lexecon deny` (uid "
            ),
        "{err}"
    );
    let list = pending_with(&env, 2);
    assert!(list[0]["action"].as_str().unwrap().contains("secret2"));
    answer(&env, "approve", 2, false);
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.ws.join("r2")).unwrap(),
        "cat2=0\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.ws.join("got2")).unwrap(),
        "two\n"
    );
    let res = of_kind(&env, "resolution");
    assert_eq!(res.len(), 2);
    assert_eq!(res[0]["outcome"], "refused");
    assert_eq!(res[1]["outcome"], "allowed");
    let opens = env.open_records(&env.ws.join("secret1"));
    assert_eq!(opens.len(), 1);
    assert_eq!(opens[0]["outcome"], "refused");
    assert_eq!(opens[0]["verdict"], "escalate");
    // The summaries say how each escalation ended.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let esc = json["escalations"].as_array().unwrap();
    assert_eq!(esc.len(), 2, "{json}");
    assert!(esc[0]["action"].as_str().unwrap().contains("secret1"));
    assert!(
        esc[0]["ended"]
            .as_str()
            .unwrap()
            .contains("request 1 denied"),
        "{json}"
    );
    assert_eq!(
        esc[0]["record"],
        opens[0]["seq"].as_str().unwrap().parse::<u64>().unwrap()
    );
    assert!(
        esc[1]["ended"]
            .as_str()
            .unwrap()
            .contains("request 2 approved"),
        "{json}"
    );
    let text = common::stderr(&out);
    assert!(
        text.contains("lexecon: 2 escalated actions")
            && text.contains(": escalation request 2 approved by `lexecon approve`"),
        "{text}"
    );
    env.assert_valid();
}

#[test]
fn a_held_request_times_out_blocked() {
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    agent(&env, "cat secret; echo \"cat=$?\"\n");
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "1"],
    );
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        common::stdout(&out).contains("cat=1"),
        "{}",
        common::stdout(&out)
    );
    let res = of_kind(&env, "resolution");
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["by"], "timeout");
    assert_eq!(res[0]["outcome"], "refused");
    let opens = env.open_records(&env.ws.join("secret"));
    assert!(opens[0]["note"].as_str().unwrap().contains("timed out"));
    env.assert_valid();
}

#[test]
fn beyond_the_pending_limit_escalations_are_blocked_at_once() {
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("secret1"), "1\n").unwrap();
    std::fs::write(env.ws.join("secret2"), "2\n").unwrap();
    agent(
        &env,
        "cat secret1 > /dev/null & \n\
         while [ ! -e go ]; do sleep 0.02; done\n\
         cat secret2 > /dev/null 2>&1; echo \"second=$?\" > second\n\
         wait\n",
    );
    let child = start(
        &env,
        &p,
        &[
            "--on-escalate",
            "wait",
            "--escalate-timeout",
            "120",
            "--max-pending",
            "1",
        ],
    );
    pending_with(&env, 1);
    std::fs::write(env.ws.join("go"), "").unwrap();
    // The second is refused without being held, while the first still waits.
    assert_eq!(wait_file(&env.ws.join("second")), "second=1\n");
    let list = pending_with(&env, 1);
    assert_eq!(list.len(), 1);
    answer(&env, "deny", 1, false);
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0));
    let second = env.open_records(&env.ws.join("secret2"));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["outcome"], "refused");
    assert!(
        second[0]["note"]
            .as_str()
            .unwrap()
            .contains("1 requests are already waiting"),
        "{second:?}"
    );
    assert_eq!(of_kind(&env, "escalation").len(), 1);
    env.assert_valid();
}

#[test]
fn unattended_default_blocks_at_once_without_a_socket() {
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    let step = env.root.join("step.md");
    let out = env
        .supervise_cmd(&p, &["sh", "-c", "cat secret; echo \"cat=$?\""])
        .env("GITHUB_STEP_SUMMARY", &step)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(common::stdout(&out).contains("cat=1"));
    let opens = env.open_records(&env.ws.join("secret"));
    assert_eq!(opens[0]["outcome"], "refused");
    // The block line says why, and how to attach an approver.
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!(
            "lexecon: blocked open {}/secret (read) (rule ask-secret, record {}): secrets need a human; it needs a human's approval and no approver is attached: run with --on-escalate wait (answer with `lexecon approve`) or --on-escalate prompt to be asked",
            env.ws.display(),
            opens[0]["seq"].as_str().unwrap()
        )),
        "{err}"
    );
    assert!(
        err.contains("(rule ask-secret, record ")
            && err.contains("): blocked: no approver attached (--on-escalate block)"),
        "{err}"
    );
    let md = std::fs::read_to_string(&step).unwrap();
    assert!(
        md.contains("**Escalations** (1):")
            && md.contains("  - ended: ` blocked: no approver attached (--on-escalate block) `"),
        "{md}"
    );
    assert!(opens[0]["note"]
        .as_str()
        .unwrap()
        .contains("non-interactive rule: block"));
    assert!(of_kind(&env, "escalation").is_empty());
    let sock = lexecon::approval::socket_path(&env.ledger);
    assert!(!sock.exists());
    let pending = lexecon(&env, &["pending"]);
    assert!(!pending.status.success());
    env.assert_valid();
}

const RAW_CONNECT_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 2; }
    const char *req = "{\"op\":\"answer\",\"id\":1,\"allow\":true,\"for_run\":true}\n";
    send(s, req, strlen(req), MSG_NOSIGNAL);
    char buf[512] = {0};
    ssize_t n = read(s, buf, sizeof buf - 1);
    printf("connected; reply: %s", n > 0 ? buf : "(none)\n");
    return 0;
}
"#;

#[test]
fn the_agent_cannot_approve_its_own_request() {
    let env = Env::new();
    let p = policy(&env);
    let raw = env.cc("raw_connect", RAW_CONNECT_C);
    let sock = lexecon::approval::socket_path(&env.ledger);
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    agent(
        &env,
        &format!(
            "cat secret > got 2>/dev/null & \n\
             while [ ! -e go ]; do sleep 0.02; done\n\
             \"$LEXECON\" approve 1 --for-run --ledger \"$LEDGER\" > cli.out 2>&1; echo \"cli=$?\" >> cli.out\n\
             {raw} {sock} > raw.out 2>&1; echo \"raw=$?\" >> raw.out\n\
             echo done > tried\n\
             wait $!; echo \"cat=$?\" > result\n",
            raw = raw.display(),
            sock = sock.display()
        ),
    );
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "120"],
    );
    pending_with(&env, 1);
    std::fs::write(env.ws.join("go"), "").unwrap();
    wait_file(&env.ws.join("tried"));
    let cli = std::fs::read_to_string(env.ws.join("cli.out")).unwrap();
    let raw_out = std::fs::read_to_string(env.ws.join("raw.out")).unwrap();
    assert!(cli.contains("refused: pid"), "{cli}");
    assert!(cli.contains("part of the supervised tree"), "{cli}");
    assert!(!cli.contains("cli=0"), "{cli}");
    if !raw_out.contains("refused") {
        answer(&env, "deny", 1, false);
        let out = wait_child(child);
        panic!(
            "raw: {raw_out:?}\n{}\n{:?}",
            common::stderr(&out),
            env.exec_records("raw_connect")
        );
    }
    assert!(raw_out.contains("connected; reply:"), "{raw_out}");
    // Still held: neither attempt answered it.
    let list = pending_with(&env, 1);
    assert_eq!(list.len(), 1);
    assert!(!env.ws.join("result").exists());
    answer(&env, "deny", 1, false);
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.ws.join("result")).unwrap(),
        "cat=1\n"
    );
    let res = of_kind(&env, "resolution");
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["outcome"], "refused");
    // Both attempts are on record.
    let refusals: Vec<_> = of_kind(&env, "refusal")
        .into_iter()
        .filter(|r| r["rule"] == "lexecon.self-protect.approval")
        .collect();
    assert_eq!(
        refusals.len(),
        2,
        "{:?} {}",
        of_kind(&env, "refusal"),
        common::stderr(&out)
    );
    assert_eq!(refusals[0]["syscall"], "connect");
    env.assert_valid();
}

#[test]
fn the_agent_cannot_replace_the_approval_socket() {
    let env = Env::new();
    let p = policy(&env);
    // A ledger in the workspace: its directory is not the ledger's own, so
    // only the built-in rule for the socket protects it.
    let ledger = env.ws.join("ledger.jsonl");
    let sock = lexecon::approval::socket_path(&ledger);
    std::fs::write(env.ws.join("x"), "").unwrap();
    let out = Command::new(LEXECON)
        .args(["supervise", "--allow-root-tree", "--on-escalate", "wait"])
        .args(["--sync", "never"])
        .arg("--policy")
        .arg(&p)
        .arg("--ledger")
        .arg(&ledger)
        .arg("--keys")
        .arg(&env.keys)
        .arg("--")
        .args([
            "sh",
            "-c",
            &format!(
                "test -S {s}; echo \"before=$?\"; rm -f {s}; echo \"rm=$?\"; mv x {s}; echo \"mv=$?\"; test -S {s}; echo \"after=$?\"",
                s = sock.display()
            ),
        ])
        .current_dir(&env.ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = common::stdout(&out);
    assert_eq!(
        stdout,
        "before=0\nrm=1\nmv=1\nafter=0\n",
        "{}",
        common::stderr(&out)
    );
    assert!(
        !sock.exists(),
        "the socket is removed at the end of the run"
    );
    let decisions: Vec<serde_json::Value> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "decision" && r["rule"] == "lexecon.self-protect.ledger")
        .collect();
    assert!(
        decisions.iter().all(|d| d["outcome"] == "refused"),
        "{decisions:?}"
    );
    let ops: Vec<&str> = decisions
        .iter()
        .filter_map(|d| d["action"]["op"].as_str())
        .collect();
    assert!(ops.contains(&"delete"), "{ops:?}");
    assert!(ops.contains(&"rename"), "{ops:?}");
}

#[test]
fn grants_for_the_run_cover_the_same_action_and_nothing_more() {
    let env = Env::new();
    let p = policy(&env);
    // By absolute path: a shell that meets EPERM tries the next PATH entry
    // (`/bin/touch` after `/usr/bin/touch`), which would ask twice.
    let touch = std::fs::canonicalize("/usr/bin/touch").unwrap();
    let t = touch.display();
    agent(
        &env,
        &format!(
            "T={t}\n\
             $T a; echo \"1=$?\" >> log\n\
             $T a; echo \"2=$?\" >> log\n\
             $T b; echo \"3=$?\" >> log\n\
             $T a; echo \"4=$?\" >> log\n\
             $T c; echo \"5=$?\" >> log\n\
             $T c; echo \"6=$?\" >> log\n\
             $T a b; echo \"7=$?\" >> log\n"
        ),
    );
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "120"],
    );
    let l = pending_with(&env, 1);
    assert_eq!(l[0]["action"], format!("exec {t} a"));
    answer(&env, "approve", 1, true);
    // The second `touch a` is covered: the next question is `touch b`.
    let l = pending_with(&env, 2);
    assert_eq!(l[0]["action"], format!("exec {t} b"));
    answer(&env, "deny", 2, false);
    let l = pending_with(&env, 3);
    assert_eq!(l[0]["action"], format!("exec {t} c"));
    answer(&env, "deny", 3, true);
    // `touch c` again is refused by the grant; `touch a b` is a new question.
    let l = pending_with(&env, 4);
    assert_eq!(l[0]["action"], format!("exec {t} a b"));
    answer(&env, "deny", 4, false);
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let log = std::fs::read_to_string(env.ws.join("log")).unwrap();
    // 126: the shell could not execute the program (EPERM).
    assert_eq!(log, "1=0\n2=0\n3=126\n4=0\n5=126\n6=126\n7=126\n");
    assert_eq!(of_kind(&env, "escalation").len(), 4);
    let res = of_kind(&env, "resolution");
    assert_eq!(res[0]["scope"], "run");
    assert_eq!(res[1]["scope"], "once");
    let notes: Vec<String> = env
        .exec_records("touch")
        .iter()
        .filter(|r| r["stage"] == "request")
        .map(|r| r["note"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(notes.len(), 7, "{notes:?}");
    assert!(notes[1].contains("grant for this run made by escalation request 1"));
    assert!(notes[3].contains("grant for this run made by escalation request 1"));
    assert!(notes[5].contains("refusal for this run made by escalation request 3"));
    env.assert_valid();
}

/// A supervisor run on a pseudo-terminal of its own: its controlling
/// terminal is the pty, whose master side the test reads and types into.
struct Pty {
    child: Child,
    master: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Pty {
    fn start(env: &Env, policy: &Path) -> Pty {
        use std::os::fd::FromRawFd;
        use std::os::unix::process::CommandExt;
        let (mut m, mut s) = (0, 0);
        // SAFETY: out-pointers to two ints; name, termios and winsize may be null.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors owned from here on.
        let (master, slave) =
            unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) };
        let mut c = Command::new(LEXECON);
        c.arg("supervise")
            .arg("--allow-root-tree")
            .arg("--policy")
            .arg(policy)
            .arg("--ledger")
            .arg(&env.ledger)
            .arg("--keys")
            .arg(&env.keys)
            .args(["--sync", "never", "--on-escalate", "prompt"])
            .args(["--escalate-timeout", "120"])
            .arg("--")
            .arg("./agent.sh")
            .current_dir(&env.ws)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&output);
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once every slave descriptor is closed.
            while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            output,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits for the prompt of request `id`; its code.
    fn prompt(&self, id: u64) -> String {
        let head = format!("request {id} needs an answer");
        let t = Instant::now();
        loop {
            let text = self.text();
            if let Some(at) = text.find(&head) {
                let rest = &text[at..];
                if let Some(c) = rest.find("then the code ") {
                    let code = &rest[c + "then the code ".len()..];
                    if code.len() >= 3 {
                        return code[..3].to_string();
                    }
                }
            }
            assert!(
                t.elapsed() < PATIENCE,
                "no prompt for request {id}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The code of the latest "new code" line, once the `n`th was printed.
    fn new_code(&self, n: usize) -> String {
        let mark = "the new code ";
        let t = Instant::now();
        loop {
            let text = self.text();
            if text.matches(mark).count() >= n {
                let at = text.rfind(mark).unwrap() + mark.len();
                if text.len() >= at + 3 {
                    return text[at..at + 3].to_string();
                }
            }
            assert!(t.elapsed() < PATIENCE, "no new code:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, s: &str) {
        use std::io::Write;
        self.master.write_all(format!("{s}\r").as_bytes()).unwrap();
    }
}

#[test]
fn terminal_prompt_answers_do_what_they_say() {
    let env = Env::new();
    let p = policy(&env);
    let touch = std::fs::canonicalize("/usr/bin/touch").unwrap();
    agent(
        &env,
        &format!(
            "T={t}\n\
             $T a; echo \"1=$?\" >> log\n\
             $T a; echo \"2=$?\" >> log\n\
             $T b; echo \"3=$?\" >> log\n\
             $T b; echo \"4=$?\" >> log\n\
             $T c; echo \"5=$?\" >> log\n\
             $T c; echo \"6=$?\" >> log\n",
            t = touch.display()
        ),
    );
    let mut pty = Pty::start(&env, &p);
    let code = pty.prompt(1);
    assert!(pty.text().contains(&format!("exec {} a", touch.display())));
    assert!(pty
        .text()
        .contains("rule ask-touch: touching files needs a human"));
    assert!(pty.text().contains("(agent.sh)"), "{}", pty.text());
    // Without the code, the answer is not taken.
    pty.type_line("A");
    let mut n = 1;
    let mut new_code = pty.new_code(n);
    assert!(!env.ws.join("a").exists());
    // A wrong attempt voids the code: the old one is refused too.
    if new_code != code {
        pty.type_line(&format!("A{code}"));
        n += 1;
        new_code = pty.new_code(n);
        assert!(!env.ws.join("a").exists());
    }
    pty.type_line(&format!("A{new_code}"));
    // `touch a` again is covered by the grant: the next question is `touch b`.
    let code = pty.prompt(2);
    assert!(pty.text().contains(&format!("exec {} b", touch.display())));
    pty.type_line(&format!("b{code}"));
    let code = pty.prompt(3);
    pty.type_line(&format!("a{code}"));
    let code = pty.prompt(4);
    assert!(pty.text().contains(&format!("exec {} c", touch.display())));
    pty.type_line(&format!("B{code}"));
    let t = Instant::now();
    while pty.child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < PATIENCE,
            "the run did not end:\n{}",
            pty.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pty.child.wait().unwrap().success(), "{}", pty.text());
    let log = std::fs::read_to_string(env.ws.join("log")).unwrap();
    assert_eq!(
        log,
        "1=0\n2=0\n3=126\n4=0\n5=126\n6=126\n",
        "{}",
        pty.text()
    );
    assert!(!pty.text().contains("request 5 needs an answer"));
    let res = of_kind(&env, "resolution");
    let summary: Vec<(String, String, String)> = res
        .iter()
        .map(|r| {
            (
                r["by"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["scope"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let exp = |o: &str, s: &str| ("terminal".to_string(), o.to_string(), s.to_string());
    assert_eq!(
        summary,
        vec![
            exp("allowed", "run"),
            exp("refused", "once"),
            exp("allowed", "once"),
            exp("refused", "run"),
        ]
    );
    env.assert_valid();
}

const STI_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
int main(void) {
    int fd = open("/dev/tty", O_RDWR);
    if (fd < 0) { printf("open: %s\n", strerror(errno)); return 1; }
    const char *s = "a\r";
    for (const char *p = s; *p; p++) {
        if (ioctl(fd, TIOCSTI, p) != 0) { printf("sti: %s\n", strerror(errno)); return 1; }
    }
    printf("sti: injected\n");
    return 0;
}
"#;

#[test]
fn the_agent_cannot_type_into_the_prompt() {
    let env = Env::new();
    let p = policy(&env);
    let sti = env.cc("sti", STI_C);
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    agent(
        &env,
        &format!(
            "cat secret > got 2>/dev/null &\n\
             while [ ! -e go ]; do sleep 0.02; done\n\
             {sti} > sti.out 2>&1\n\
             wait $!; echo \"cat=$?\" > result\n",
            sti = sti.display()
        ),
    );
    let mut pty = Pty::start(&env, &p);
    let code = pty.prompt(1);
    std::fs::write(env.ws.join("go"), "").unwrap();
    let out = wait_file(&env.ws.join("sti.out"));
    assert_eq!(out, "sti: Operation not permitted\n");
    // Nothing was typed: the request is still waiting for the human.
    assert!(!env.ws.join("result").exists());
    assert!(!pty.text().contains("not an answer"), "{}", pty.text());
    pty.type_line(&format!("b{code}"));
    assert_eq!(wait_file(&env.ws.join("result")), "cat=1\n");
    let t = Instant::now();
    while pty.child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < PATIENCE,
            "the run did not end:\n{}",
            pty.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let res = of_kind(&env, "resolution");
    assert_eq!(res.len(), 1);
    assert_eq!(
        (res[0]["by"].as_str(), res[0]["outcome"].as_str()),
        (Some("terminal"), Some("refused"))
    );
    env.assert_valid();
}

#[test]
fn answers_signed_with_an_approver_key_carry_receipts_that_verify() {
    let env = Env::new();
    let p = policy(&env);
    let keys = env.root.join("approver");
    let out = Command::new(LEXECON)
        .args(["init-keys", "--approver", "--dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let key = keys.join("approver.key");
    let public = keys.join("approver.pub");
    std::fs::write(env.ws.join("secret1"), "1\n").unwrap();
    std::fs::write(env.ws.join("secret2"), "2\n").unwrap();
    agent(
        &env,
        "cat secret1 > got1; echo \"1=$?\" >> log\ncat secret2 > got2; echo \"2=$?\" >> log\n",
    );
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "120"],
    );
    pending_with(&env, 1);
    let key_s = key.to_str().unwrap();
    let out = lexecon(&env, &["approve", "1", "--key", key_s]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout(&out).contains("signing the answer to request 1"));
    pending_with(&env, 2);
    // Answered without the key: no receipt.
    answer(&env, "approve", 2, false);
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.ws.join("log")).unwrap(),
        "1=0\n2=0\n"
    );
    let res = of_kind(&env, "resolution");
    assert!(res[0]["receipt"]["sig"].is_string(), "{:?}", res[0]);
    assert!(res[1]["receipt"].is_null());
    env.assert_valid();
    let verify = |approver: &Path| {
        Command::new(LEXECON)
            .arg("verify")
            .arg(&env.ledger)
            .arg("--pubkey")
            .arg(env.pubkey())
            .arg("--approver-pubkey")
            .arg(approver)
            .output()
            .unwrap()
    };
    // Request 2 was allowed without a receipt: with the approver key
    // required, the ledger does not verify, and says why.
    let out = verify(&public);
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let text = common::stdout(&out);
    assert!(text.contains("allowed without a receipt"), "{text}");
    assert_eq!(text.matches("error:").count(), 1, "{text}");
    // Another approver's key did not sign request 1.
    let other = env.root.join("other");
    Command::new(LEXECON)
        .args(["init-keys", "--approver", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    let out = verify(&other.join("approver.pub"));
    assert!(common::stdout(&out).contains("not by the approver key supplied"));
}

#[test]
fn a_rule_can_set_its_own_deadline() {
    let env = Env::new();
    let p = env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: ask-secret-briefly\n    open:\n      path: [\"{ws}/secret*\"]\n    decision: escalate\n    reason: secrets need a human, quickly\n    timeout_seconds: 1\n",
        ws = env.ws.display()
    ));
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    agent(&env, "cat secret; echo \"cat=$?\"\n");
    // The run's own deadline is long: only the rule's one second can end it.
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "3600"],
    );
    let out = wait_child(child);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        common::stdout(&out).contains("cat=1"),
        "{}",
        common::stdout(&out)
    );
    let res = of_kind(&env, "resolution");
    assert_eq!(res.len(), 1);
    assert_eq!(res[0]["by"], "timeout");
    let opens = env.open_records(&env.ws.join("secret"));
    assert!(
        opens[0]["note"]
            .as_str()
            .unwrap()
            .contains("timed out after 1 s"),
        "{:#?}",
        opens[0]
    );
    env.assert_valid();
}

/// An argv crafted to repaint the line it is printed on: a carriage return,
/// erase-line, a fake action, conceal, and a bidi override.
const REPAINT: &str = r"x\r\033[2K  exec git status\033[8m\342\200\256";
/// How it must be shown.
const REPAINT_SHOWN: &str = r"$'x\r\x1b[2K  exec git status\x1b[8m\u202e'";

/// Whether `s` holds a byte that would move the cursor, start an escape
/// sequence or reorder text: ESC, a CR not part of a line end (a terminal
/// shows the prompt's `\r\n` as `\r\r\n`), a bidi override.
fn has_raw_controls(s: &str) -> bool {
    s.contains('\x1b')
        || s.replace("\r\r\n", "\n")
            .replace("\r\n", "\n")
            .contains('\r')
        || s.contains('\u{202e}')
}

#[test]
fn pending_and_the_wait_message_show_agent_bytes_escaped() {
    let env = Env::new();
    let p = policy(&env);
    let touch = std::fs::canonicalize("/usr/bin/touch").unwrap();
    agent(
        &env,
        &format!(
            "{t} \"$(printf '{REPAINT}')\"; echo \"rc=$?\" > r\n",
            t = touch.display()
        ),
    );
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "120"],
    );
    pending_with(&env, 1);
    let out = lexecon(&env, &["pending"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let list = common::stdout(&out);
    assert!(!has_raw_controls(&list), "raw bytes in `pending`: {list:?}");
    assert!(
        list.contains(&format!("exec {} {REPAINT_SHOWN} (pid ", touch.display())),
        "{list}"
    );
    answer(&env, "deny", 1, false);
    assert_eq!(wait_file(&env.ws.join("r")), "rc=126\n");
    let out = wait_child(child);
    let err = common::stderr(&out);
    assert!(!has_raw_controls(&err), "raw bytes on stderr: {err:?}");
    assert!(
        err.contains(&format!(
            "request 1 is waiting for approval: exec {} {REPAINT_SHOWN} (pid ",
            touch.display()
        )),
        "{err}"
    );
    env.assert_valid();
}

#[test]
fn the_prompt_shows_agent_bytes_escaped() {
    let env = Env::new();
    let p = policy(&env);
    let touch = std::fs::canonicalize("/usr/bin/touch").unwrap();
    // The held exec runs in a copy of sh whose process name holds a bidi
    // override: the ancestry line shows it escaped.
    agent(
        &env,
        &format!(
            "n=\"./$(printf 'n\\342\\200\\256m')\"; cp /bin/sh \"$n\"\n\
             \"$n\" -c '{t} \"$(printf \"{REPAINT}\")\"; echo \"rc=$?\" > r'\n",
            t = touch.display()
        ),
    );
    let mut pty = Pty::start(&env, &p);
    let code = pty.prompt(1);
    let shown = pty.text();
    assert!(
        !has_raw_controls(&shown),
        "raw bytes at the prompt: {shown:?}"
    );
    assert!(
        shown.contains(&format!("  exec {} {REPAINT_SHOWN}\r", touch.display())),
        "{shown}"
    );
    assert!(shown.contains(r"($'n\u202em')"), "{shown}");
    pty.type_line(&format!("b{code}"));
    assert_eq!(wait_file(&env.ws.join("r")), "rc=126\n");
    let t = Instant::now();
    while pty.child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < PATIENCE,
            "the run did not end:\n{}",
            pty.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    env.assert_valid();
}

#[test]
fn a_two_path_call_whose_second_path_escalates_records_its_first_path_once() {
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("a"), "a\n").unwrap();
    agent(&env, "mv a secret-b; echo \"mv=$?\"\n");
    let child = start(
        &env,
        &p,
        &["--on-escalate", "wait", "--escalate-timeout", "1"],
    );
    let out = wait_child(child);
    assert!(
        common::stdout(&out).contains("mv=1"),
        "{}",
        common::stderr(&out)
    );
    assert!(env.ws.join("a").exists() && !env.ws.join("secret-b").exists());
    let renames = |path: &Path| -> Vec<serde_json::Value> {
        env.open_records(path)
            .into_iter()
            .filter(|r| r["action"]["op"] == "rename")
            .collect()
    };
    // The source was allowed once, on the notification loop; the held
    // call judged it again from scratch but recorded it no second time.
    let source = renames(&env.ws.join("a"));
    assert_eq!(source.len(), 1, "{source:?}");
    assert_eq!(source[0]["outcome"], "allowed");
    let dest = renames(&env.ws.join("secret-b"));
    assert_eq!(dest.len(), 1, "{dest:?}");
    assert_eq!(dest[0]["outcome"], "refused");
    assert_eq!(dest[0]["rule"], "ask-secret");
    assert_eq!(of_kind(&env, "escalation").len(), 1);
    env.assert_valid();
}

#[test]
fn a_call_beyond_the_held_call_limit_is_refused_on_record() {
    // The supervisor holds at most 256 calls at once, whatever
    // --max-pending says.
    const HELD: usize = 256;
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    agent(
        &env,
        &format!(
            "i=0\n\
             while [ $i -lt {HELD} ]; do cat secret > /dev/null 2>&1 & i=$((i+1)); done\n\
             while [ ! -e go ]; do sleep 0.05; done\n\
             cat secret > /dev/null 2> last.err; echo \"last=$?\" > last\n\
             kill -KILL 0\n"
        ),
    );
    // The 256 "waiting for approval" lines would fill a pipe nobody reads
    // before the run ends: stderr goes to a file.
    let err = std::fs::File::create(env.root.join("stderr")).unwrap();
    let child = Command::new(LEXECON)
        .args(["supervise", "--allow-root-tree", "--policy"])
        .arg(&p)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .args(["--sync", "never", "--on-escalate", "wait"])
        .args(["--escalate-timeout", "600", "--max-pending", "1000"])
        .args(["--", "./agent.sh"])
        .current_dir(&env.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let out = lexecon(&env, &["pending", "--json"]);
        if out.status.success() {
            let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            if v.len() >= HELD {
                break;
            }
        }
        assert!(t.elapsed() < PATIENCE * 3, "the calls were never all held");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(env.ws.join("go"), "").unwrap();
    assert_eq!(wait_file(&env.ws.join("last")), "last=1\n");
    // The agent kills its whole group: the held calls are withdrawn.
    let out = wait_child(child);
    let err = std::fs::read_to_string(env.root.join("stderr")).unwrap();
    assert_eq!(out.status.code(), Some(128 + 9), "{err}");
    assert!(
        err.contains("refused openat by pid") && err.contains("lexecon.contain.held-limit"),
        "{err}"
    );
    let refusals: Vec<_> = of_kind(&env, "refusal")
        .into_iter()
        .filter(|r| r["rule"] == "lexecon.contain.held-limit")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["errno"], libc::EAGAIN);
    assert!(
        refusals[0]["reason"]
            .as_str()
            .unwrap()
            .contains("256 held calls are already waiting"),
        "{refusals:?}"
    );
    env.assert_valid();
}

#[test]
fn a_ledger_named_with_ledger_protects_its_own_files_not_its_neighbours() {
    let env = Env::new();
    let p = policy(&env);
    // A first run creates the ledger; a hard link to it made before the
    // next run is the same file.
    agent(&env, "true\n");
    assert_eq!(wait_child(start(&env, &p, &[])).status.code(), Some(0));
    let dir = env.ledger.parent().unwrap().to_path_buf();
    std::fs::hard_link(&env.ledger, dir.join("pre-alias")).unwrap();
    agent(
        &env,
        "L=\"$LEDGER\"; D=$(dirname \"$L\"); S=\"$L.approval.sock\"\n\
         test -S \"$S\"; echo \"sock-exists=$?\"\n\
         echo n > \"$D/neighbour\"; echo \"neighbour=$?\"\n\
         mkdir \"$D/sub\" && echo y > \"$D/sub/f\"; echo \"sub=$?\"\n\
         mv \"$D/neighbour\" \"$D/renamed\"; echo \"mv-neighbour=$?\"\n\
         rm \"$D/renamed\"; echo \"rm-neighbour=$?\"\n\
         echo x >> \"$L\" 2>/dev/null; echo \"ledger-write=$?\"\n\
         cat \"$L\" > /dev/null 2>&1; echo \"ledger-read=$?\"\n\
         echo x >> \"$D/pre-alias\" 2>/dev/null; echo \"alias-write=$?\"\n\
         ln \"$L\" \"$D/alias\" 2>/dev/null; echo \"ledger-link=$?\"\n\
         mv \"$L\" \"$D/moved\" 2>/dev/null; echo \"ledger-mv=$?\"\n\
         rm -f \"$L\" 2>/dev/null; echo \"ledger-rm=$?\"\n\
         rm -f \"$S\" 2>/dev/null; echo \"sock-rm=$?\"\n\
         mv \"$D\" \"$D.away\" 2>/dev/null; echo \"dir-mv=$?\"\n",
    );
    // Observe mode: the built-in protections are carried out all the same
    // (a refused redirection is status 2 in sh),
    // and nothing else next to the ledger is refused.
    let out = wait_child(start(
        &env,
        &p,
        &["--mode", "observe", "--on-escalate", "wait"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        common::stdout(&out),
        "sock-exists=0\nneighbour=0\nsub=0\nmv-neighbour=0\nrm-neighbour=0\n\
         ledger-write=2\nledger-read=1\nalias-write=2\nledger-link=1\nledger-mv=1\n\
         ledger-rm=1\nsock-rm=1\ndir-mv=1\n",
        "{}",
        common::stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(dir.join("sub/f")).unwrap(), "y\n");
    let refused: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["rule"] == "lexecon.self-protect.ledger")
        .collect();
    assert!(
        refused.iter().all(|r| r["outcome"] == "refused"),
        "{refused:?}"
    );
    let ops: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["action"]["op"].as_str())
        .collect();
    for op in ["open", "link", "rename", "delete"] {
        assert!(ops.contains(&op), "{op} not refused: {ops:?}");
    }
    env.assert_valid();
}
