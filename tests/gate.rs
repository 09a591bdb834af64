//! The gate: harness hooks answered from recorded inputs, the in-run gate
//! socket (a refusal at the gate and the same action refused at the system
//! call, in one verified ledger; askers from outside the tree refused), a
//! tool call escalated and approved with `lexecon approve`, intent records
//! that verify and whose tampering is caught.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, LEXECON};

const PATIENCE: Duration = Duration::from_secs(30);

fn home(env: &Env) -> PathBuf {
    let h = env.root.join("home");
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    h
}

/// The tests' policy, with `${HOME}` and `${WORKSPACE}` as the env's.
fn policy(env: &Env) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gate/policy.yaml"),
    )
    .unwrap();
    env.policy(&text)
}

/// `lexecon ARGS` in the workspace with the env's HOME, keys and ledger,
/// `stdin` written to its standard input.
fn run(env: &Env, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(LEXECON);
    c.args(args)
        .arg("--keys")
        .arg(&env.keys)
        .arg("--ledger")
        .arg(&env.ledger)
        .current_dir(&env.ws)
        .env("HOME", home(env))
        .env_remove("LEXECON_GATE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn cases(env: &Env, file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/gate")
            .join(file),
    )
    .unwrap()
    .replace("${WS}", &env.ws.to_string_lossy())
    .replace("${HOME}", &home(env).to_string_lossy());
    serde_json::from_str(&text).unwrap()
}

fn check_cases(harness: &str, file: &str, decision_of: fn(&serde_json::Value) -> (String, String)) {
    let env = Env::new();
    let policy = policy(&env);
    let p = policy.to_str().unwrap();
    for case in cases(&env, file) {
        let name = case["name"].as_str().unwrap();
        let out = run(
            &env,
            &["hook", harness, "--policy", p],
            &case["input"].to_string(),
        );
        assert!(
            out.status.success(),
            "{name}: exit {:?}: {}",
            out.status,
            common::stderr(&out)
        );
        let text = common::stdout(&out);
        match case["decision"].as_str() {
            None => assert!(
                text.trim().is_empty(),
                "{name}: an allow by the default prints nothing, got {text}"
            ),
            Some(want) => {
                let v: serde_json::Value = serde_json::from_str(text.trim())
                    .unwrap_or_else(|e| panic!("{name}: output is not JSON ({e}): {text}"));
                let (got, reason) = decision_of(&v);
                assert_eq!(got, want, "{name}: {text}");
                for c in case["contains"].as_array().into_iter().flatten() {
                    let c = c.as_str().unwrap();
                    assert!(reason.contains(c), "{name}: reason lacks {c:?}: {reason}");
                }
            }
        }
    }
    // Every question is on record, in runs that verify.
    env.assert_valid();
    let intents = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "intent")
        .count();
    // Inputs that are not the adapter's event are refused before judging.
    let judged = cases(&env, file)
        .iter()
        .filter(|c| c["name"] != "wrong-event")
        .count();
    assert_eq!(intents, judged);
}

#[test]
fn claude_code_hook_answers_recorded_pretooluse_inputs() {
    check_cases("claude-code", "claude-code.json", |v| {
        let h = &v["hookSpecificOutput"];
        assert_eq!(h["hookEventName"], "PreToolUse");
        (
            h["permissionDecision"].as_str().unwrap_or("").to_string(),
            h["permissionDecisionReason"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    });
}

#[test]
fn gemini_cli_hook_answers_recorded_beforetool_inputs() {
    check_cases("gemini-cli", "gemini-cli.json", |v| {
        (
            v["decision"].as_str().unwrap_or("").to_string(),
            v["reason"].as_str().unwrap_or("").to_string(),
        )
    });
}

#[test]
fn decide_json_records_an_intent_with_the_programs_of_a_shell_command() {
    let env = Env::new();
    let policy = policy(&env);
    let req = r#"{"action": {"kind": "tool", "name": "Bash", "input": {"command": "git status && rm -rf /srv"}, "shell": "/command"}}"#;
    let out = run(
        &env,
        &["decide", "--json", "--policy", policy.to_str().unwrap()],
        req,
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answer"], "block");
    assert_eq!(v["rule"], "block-rm-rf");
    assert_eq!(v["action"], "exec rm -rf /srv");
    let judged: Vec<&str> = v["judged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(judged, ["allow", "allow", "block"]);
    env.assert_valid();
    let intent = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "intent")
        .unwrap();
    assert_eq!(intent["channel"], "decide");
    assert_eq!(intent["outcome"], "refused");
    assert_eq!(intent["action"]["kind"], "tool");
    assert_eq!(intent["judged"][2]["action"]["argv"][2], "/srv");
    assert_eq!(
        intent["seq"].as_str(),
        Some(v["record"].to_string().as_str())
    );
    // A request that cannot be judged allows nothing (exit 2).
    let out = run(
        &env,
        &["decide", "--json", "--policy", policy.to_str().unwrap()],
        "{}",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("needs `action`"));
}

#[test]
fn tampering_with_an_intent_record_is_caught() {
    let env = Env::new();
    let policy = policy(&env);
    let out = run(
        &env,
        &["decide", "--json", "--policy", policy.to_str().unwrap()],
        r#"{"action": {"kind": "tool", "name": "mcp__github__get_issue", "input": {"n": 1}}}"#,
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    env.assert_valid();
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    let forged = text.replace(
        r#""reason":"reading GitHub changes nothing""#,
        r#""reason":"reading GitHub changes nothinG""#,
    );
    assert_ne!(forged, text);
    std::fs::write(&env.ledger, forged).unwrap();
    let (code, out) = env.verify();
    assert!(out.contains("Status: INVALID"), "{out}");
    assert_ne!(code, 0);
}

#[test]
fn a_tool_call_escalated_at_decide_is_approved_with_lexecon_approve() {
    let env = Env::new();
    let policy = policy(&env);
    let child = Command::new(LEXECON)
        .args(["decide", "--json", "--on-escalate", "wait", "--policy"])
        .arg(&policy)
        .arg("--keys")
        .arg(&env.keys)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--request")
        .arg(r#"{"action": {"kind": "tool", "name": "mcp__github__create_issue", "input": {"title": "x"}}}"#)
        .current_dir(&env.ws)
        .env_remove("LEXECON_GATE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let out = Command::new(LEXECON)
            .args(["pending", "--json", "--ledger"])
            .arg(&env.ledger)
            .output()
            .unwrap();
        if out.status.success() {
            let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(p) = v.first() {
                assert_eq!(p["rule"], "escalate-github-writes");
                assert!(p["action"]
                    .as_str()
                    .unwrap()
                    .starts_with("tool mcp__github__create_issue"));
                break;
            }
        }
        assert!(
            t.elapsed() < PATIENCE,
            "the escalation never became pending"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(LEXECON)
        .args(["approve", "1", "--ledger"])
        .arg(&env.ledger)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answer"], "allow");
    assert_eq!(v["verdict"], "escalate");
    assert_eq!(v["asked"], true);
    assert_eq!(v["request"], 1);
    env.assert_valid();
    let kinds: Vec<String> = env
        .records()
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or("").to_string())
        .filter(|k| ["escalation", "resolution", "intent"].contains(&k.as_str()))
        .collect();
    assert_eq!(kinds, ["escalation", "resolution", "intent"]);
    let intent = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "intent")
        .unwrap();
    assert_eq!(intent["outcome"], "allowed");
    assert!(intent["note"]
        .as_str()
        .unwrap()
        .contains("escalation request 1 approved by `lexecon approve`"));
}

/// A fake harness in a supervised run: it asks the gate (through `lexecon
/// hook claude-code`, which finds `$LEXECON_GATE`) whether it may run
/// `rm -rf ./data`, is refused with the rule and the record, then tries the
/// same command directly, and the kernel-level judge refuses it too.
#[test]
fn a_harness_refused_at_the_gate_is_refused_at_the_system_call_too() {
    let env = Env::new();
    let policy = policy(&env);
    std::fs::create_dir(env.ws.join("data")).unwrap();
    std::fs::write(env.ws.join("data/f"), "keep\n").unwrap();
    let script = env.root.join("harness.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo '{{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"tool_input\":{{\"command\":\"rm -rf ./data\"}}}}' | {lexecon} hook claude-code > hook.out\n\
             echo \"hook=$?\" >> hook.out\n\
             rm -rf ./data 2> rm.err\n\
             echo \"rm=$?\" >> hook.out\n",
            lexecon = LEXECON
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = env.supervise(&policy, &[script.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let hook = std::fs::read_to_string(env.ws.join("hook.out")).unwrap();
    let first: serde_json::Value = serde_json::from_str(hook.lines().next().unwrap()).unwrap();
    let h = &first["hookSpecificOutput"];
    assert_eq!(h["permissionDecision"], "deny", "{hook}");
    let reason = h["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("rule block-rm-rf: recursive forced delete"),
        "{reason}"
    );
    assert!(hook.contains("hook=0"));
    assert!(!hook.contains("rm=0"), "rm succeeded: {hook}");
    assert!(env.ws.join("data/f").exists(), "the data is gone");
    env.assert_valid();
    let records = env.records();
    let intent = records.iter().find(|r| r["kind"] == "intent").unwrap();
    assert_eq!(intent["channel"], "gate");
    assert_eq!(intent["outcome"], "refused");
    assert_eq!(intent["rule"], "block-rm-rf");
    // The asker is the hook process of the tree, as the kernel says.
    assert!(intent["program"].as_str().unwrap().ends_with("/lexecon"));
    let seq = intent["seq"].as_str().unwrap();
    assert!(reason.contains(&format!("record {seq} in ")), "{reason}");
    let blocked = env
        .exec_records("rm")
        .into_iter()
        .filter(|r| r["verdict"] == "block" && r["outcome"] == "refused")
        .count();
    assert!(blocked >= 1, "the direct rm was not refused at the exec");
    // The tree's connection to its gate is allowed by the built-in rule.
    assert!(records.iter().any(|r| r["kind"] == "decision"
        && r["action"]["kind"] == "connect"
        && r["rule"] == "lexecon.gate"));
}

/// A process outside the tree may not use the run's gate: the kernel's
/// credentials on its request name it, and it is not in the tree.
#[test]
fn the_gate_refuses_askers_outside_the_tree() {
    let env = Env::new();
    let policy = policy(&env);
    let mut child = env
        .supervise_cmd(
            &policy,
            &["sh", "-c", "echo $LEXECON_GATE > gate.path; sleep 30"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let path = loop {
        if let Ok(s) = std::fs::read_to_string(env.ws.join("gate.path")) {
            if s.ends_with('\n') {
                break PathBuf::from(s.trim());
            }
        }
        assert!(t.elapsed() < PATIENCE, "the gate path never appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        "ledger.jsonl.gate.sock"
    );
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.write_all(b"{\"op\":\"decide\",\"action\":{\"kind\":\"exec\",\"argv\":[\"true\"]}}\n")
        .unwrap();
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut reply).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("is not part of the supervised tree"),
        "{reply}"
    );
}

/// The gate answers `decide` only, so a process of the tree cannot answer
/// an escalation through it; and a request written with `sendmsg(2)` (which
/// the supervisor performs, so its bytes carry the supervisor's
/// credentials) is refused, since who asked cannot be established.
#[test]
fn the_gate_only_decides_and_needs_the_askers_own_write() {
    let env = Env::new();
    let policy = policy(&env);
    let script = r#"
import json, os, socket
def ask(line, use_sendmsg=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.environ["LEXECON_GATE"])
    if use_sendmsg:
        s.sendmsg([line])
    else:
        s.sendall(line)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    return json.loads(reply)
out = {
    "answer": ask(b'{"op":"answer","id":1,"allow":true,"for_run":true}\n'),
    "sendmsg": ask(b'{"action":{"kind":"exec","argv":["true"]}}\n', True),
    "decide": ask(b'{"action":{"kind":"exec","argv":["rm","-rf","/"]}}\n'),
}
open("gate.out", "w").write(json.dumps(out))
"#;
    let out = env.supervise(&policy, &["python3", "-c", script]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.ws.join("gate.out")).unwrap()).unwrap();
    assert_eq!(v["answer"]["ok"], false);
    assert!(
        v["answer"]["error"]
            .as_str()
            .unwrap()
            .contains("the gate answers `decide` only"),
        "{v}"
    );
    assert_eq!(v["sendmsg"]["ok"], false);
    assert!(
        v["sendmsg"]["error"]
            .as_str()
            .unwrap()
            .contains("sent by the supervisor on a process's behalf"),
        "{v}"
    );
    assert_eq!(v["decide"]["ok"], true);
    assert_eq!(v["decide"]["answer"], "block");
    assert_eq!(v["decide"]["rule"], "block-rm-rf");
    env.assert_valid();
    let intents: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "intent")
        .collect();
    assert_eq!(intents.len(), 1);
    assert!(intents[0]["program"].as_str().unwrap().contains("python3"));
}
