//! Reading a ledger: `lexecon ledger show`, `ledger stats`, `explain`,
//! `ledger keys`, `ledger bundle`, and what `verify` says next, on the
//! ledger of a real supervised run; and the reader's refusal to show a
//! ledger that does not verify, or that changed after it was verified.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{stderr, stdout, Env};
use lexecon::ledger::note::{self, NoteVerifier};

/// The policy of the fixture: recursive deletes and `secret*` files of the
/// workspace are blocked, everything else allowed.
fn policy(env: &Env) -> std::path::PathBuf {
    env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: no-rm-rf\n    exec:\n      name: rm\n      flags: [\"-r\"]\n    decision: block\n    reason: recursive delete\n  - id: no-secret\n    open:\n      path: \"{}/secret*\"\n    decision: block\n    reason: secrets are off limits\n",
        env.ws.display()
    ))
}

/// A run that reads a file, tries `rm -rf`, reads a secret, and runs a
/// program whose argument holds an escape sequence and a newline.
fn fixture() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let p = policy(&env);
    std::fs::write(env.ws.join("f"), "hi\n").unwrap();
    std::fs::write(env.ws.join("secret.txt"), "s3cr3t\n").unwrap();
    let out = env.supervise(
        &p,
        &[
            "sh",
            "-c",
            "cat f; rm -rf ./gone; cat secret.txt; /bin/echo \"$(printf 'a\\033[2Jb\\nc')\"; true",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    env.assert_valid();
    (env, p)
}

fn lexecon(env: &Env, args: &[&str]) -> Output {
    Command::new(common::lexecon())
        .args(args)
        .current_dir(&env.root)
        .output()
        .unwrap()
}

fn with_key<'a>(env: &'a Env, ledger: &'a str, args: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.push(ledger.to_string());
    v.push("--pubkey".into());
    v.push(env.pubkey().display().to_string());
    v
}

fn run(env: &Env, args: Vec<String>) -> Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    lexecon(env, &a)
}

/// The decision records of the ledger (format-2 decisions written out as
/// format 1 has them).
fn decisions(env: &Env) -> Vec<serde_json::Value> {
    env.records()
        .into_iter()
        .filter(|r| r["kind"] == "decision")
        .collect()
}

/// The decision records of the ledger as written.
fn raw_decisions(env: &Env) -> Vec<serde_json::Value> {
    env.raw_records()
        .into_iter()
        .filter(|r| r["kind"] == "decision")
        .collect()
}

/// The path of `rm` as its exec was recorded.
fn rm_program(env: &Env) -> String {
    decisions(env)
        .into_iter()
        .find(|r| r["rule"] == "no-rm-rf")
        .and_then(|r| r["action"]["path"].as_str().map(str::to_string))
        .expect("rm was judged")
}

fn seq(r: &serde_json::Value) -> String {
    r["seq"].as_str().unwrap().to_string()
}

#[test]
fn show_prints_one_escaped_line_per_record_and_filters() {
    let (env, _) = fixture();
    let ledger = env.ledger.display().to_string();
    let out = run(&env, with_key(&env, &ledger, &["ledger", "show"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // Nothing the tree chose reaches the terminal raw.
    assert!(!out.stdout.contains(&0x1b), "raw ESC in the output");
    let lines: Vec<&str> = text.lines().collect();
    // One line per decision, plus the run header and end lines.
    let ds = decisions(&env);
    assert_eq!(
        lines.iter().filter(|l| !l.starts_with("== ")).count(),
        ds.len(),
        "{text}"
    );
    assert!(lines[0].starts_with("== run "), "{text}");
    assert!(lines.last().unwrap().starts_with("== run ") && text.contains(" ended "));
    // The block line, as the supervisor printed it.
    let rm = ds
        .iter()
        .find(|r| r["rule"] == "no-rm-rf")
        .expect("rm was judged");
    let block = format!(
        "blocked exec rm -rf ./gone (rule no-rm-rf, record {}): recursive delete",
        seq(rm)
    );
    assert!(text.contains(&block), "{text}");
    let secret = ds
        .iter()
        .find(|r| r["rule"] == "no-secret")
        .expect("the secret was judged");
    assert!(
        text.contains(&format!(
            "blocked open {}/secret.txt (read) (rule no-secret, record {}): secrets are off limits",
            env.ws.display(),
            seq(secret)
        )),
        "{text}"
    );
    // The argument with ESC and a newline is one escaped shell word.
    assert!(text.contains("exec /bin/echo $'a\\x1b[2Jb\\nc'"), "{text}");

    // --blocked: exactly the refused decisions.
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--blocked"]),
    );
    let text = stdout(&out);
    let refused = ds.iter().filter(|r| r["outcome"] != "allowed").count();
    assert!(refused >= 2);
    assert_eq!(text.lines().count(), refused, "{text}");
    assert!(text.lines().all(|l| l.contains(" blocked ")), "{text}");

    // --kind: exec requests and confirmations, no opens.
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--kind", "exec"]),
    );
    let text = stdout(&out);
    assert!(
        text.contains("exec cat f") && !text.contains(" open "),
        "{text}"
    );
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--kind", "bogus"]),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--kind bogus"), "{}", stderr(&out));

    // --last and --run select one run of two.
    let second = env.supervise(&policy(&env), &["cat", "f"]);
    assert!(second.status.success());
    let runs: Vec<String> = env
        .records()
        .iter()
        .filter(|r| r["kind"] == "run")
        .map(|r| r["run"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 2);
    let out = run(&env, with_key(&env, &ledger, &["ledger", "show", "--last"]));
    let text = stdout(&out);
    assert!(
        text.contains(&runs[1]) && !text.contains(&runs[0]),
        "{text}"
    );
    assert!(!text.contains("rm -rf"), "{text}");
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--run", &runs[0][..8]]),
    );
    let text = stdout(&out);
    assert!(
        text.contains(&runs[0]) && !text.contains(&runs[1]),
        "{text}"
    );
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--run", "ffffffffff"]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}

#[test]
fn show_json_is_one_document_with_every_record_as_recorded() {
    let (env, _) = fixture();
    let ledger = env.ledger.display().to_string();
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--json", "--blocked"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["verification"]["status"], "VALID");
    assert_eq!(v["verification"]["verified"], true);
    assert_eq!(v["blocked"], true);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(v["shown"], recs.len());
    let refused: Vec<serde_json::Value> = raw_decisions(&env)
        .into_iter()
        .filter(|r| r["outcome"] != "allowed" && !r["outcome"].is_null())
        .collect();
    assert_eq!(recs.len(), refused.len());
    for (r, d) in recs.iter().zip(&refused) {
        assert_eq!(r["kind"], "decision");
        assert_eq!(r["blocked"], true);
        assert_eq!(r["verified"], true);
        assert_eq!(&r["record"], d, "the record as the ledger holds it");
        assert_eq!(r["seq"], d["seq"]);
        assert!(r["line"].as_u64().unwrap() > 0);
        assert!(r["text"].as_str().unwrap().contains(" blocked "));
        assert_eq!(r["time"], d["time"]);
    }
    // Without --blocked: every record but checkpoints and epochs.
    let out = run(&env, with_key(&env, &ledger, &["ledger", "show", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = env.records();
    let shown = all
        .iter()
        .filter(|r| r["kind"] != "checkpoint" && r["kind"] != "epoch")
        .count();
    assert_eq!(v["records"].as_array().unwrap().len(), shown);
}

#[test]
fn stats_count_by_kind_verdict_rule_program_path() {
    let (env, _) = fixture();
    let ledger = env.ledger.display().to_string();
    let ds = decisions(&env);
    let out = run(
        &env,
        with_key(
            &env,
            &ledger,
            &["ledger", "stats", "--json", "--top", "1000"],
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decisions"], ds.len());
    assert_eq!(v["runs"], 1);
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| ds.iter().filter(|r| f(r)).count();
    assert_eq!(v["verdicts"]["block"], count(&|r| r["verdict"] == "block"));
    assert_eq!(
        v["outcomes"]["refused"],
        count(&|r| r["outcome"] == "refused")
    );
    assert_eq!(
        v["by_rule"]["no-rm-rf"],
        count(&|r| r["rule"] == "no-rm-rf")
    );
    assert_eq!(
        v["by_rule"]["no-secret"],
        count(&|r| r["rule"] == "no-secret")
    );
    let opens = count(&|r| r["action"]["kind"] == "open" && r["action"]["op"] == "open");
    assert_eq!(v["by_kind"]["open"], opens);
    let total: u64 = v["by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(total as usize, ds.len());
    let programs = v["programs"]["top"].as_array().unwrap();
    let rm_path = rm_program(&env);
    assert!(
        programs.iter().any(|p| p["program"] == *rm_path.as_str()),
        "{programs:?}"
    );
    // Code mappings are not programs executed.
    assert!(
        !programs
            .iter()
            .any(|p| p["program"].as_str().unwrap().contains(".so")),
        "{programs:?}"
    );
    let secret = format!("{}/secret.txt", env.ws.display());
    let paths = v["paths"]["top"].as_array().unwrap();
    let n = paths
        .iter()
        .find(|p| p["path"] == *secret.as_str())
        .map(|p| p["count"].as_u64().unwrap());
    let opened = count(&|r| r["action"]["path"] == *secret.as_str()) as u64;
    assert_eq!(n, Some(opened), "{paths:?}");
    // Text: the same numbers.
    let out = run(&env, with_key(&env, &ledger, &["ledger", "stats"]));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Decisions: {} (", ds.len())),
        "{text}"
    );
    assert!(
        text.contains("By rule:") && text.contains("no-rm-rf"),
        "{text}"
    );
    assert!(
        text.contains("Programs executed") && text.contains("Paths"),
        "{text}"
    );
    assert!(text.contains("Hosts: none"), "{text}");
}

#[test]
fn explain_shows_the_decision_and_with_the_policy_each_condition() {
    let (env, p) = fixture();
    let ledger = env.ledger.display().to_string();
    let rm = raw_decisions(&env)
        .into_iter()
        .find(|r| r["rule"] == "no-rm-rf")
        .unwrap();
    let s = seq(&rm);
    let args = vec![
        "explain".to_string(),
        ledger.clone(),
        s.clone(),
        "--pubkey".into(),
        env.pubkey().display().to_string(),
    ];
    let out = run(&env, args.clone());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        format!("Record: {s} "),
        "Action: exec rm -rf ./gone".to_string(),
        "  argv: rm -rf ./gone".to_string(),
        "Decision: BLOCK (outcome: refused, mode enforce)".to_string(),
        "Rule: no-rm-rf".to_string(),
        "Reason: recursive delete".to_string(),
        "pass --policy FILE".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    // With the run's policy: every condition and what it compared.
    let mut with_policy = args.clone();
    with_policy.push("--policy".into());
    with_policy.push(p.display().to_string());
    let out = run(&env, with_policy.clone());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("the run's policy"), "{text}");
    assert!(
        text.contains("Matched rules:\n  * no-rm-rf (block, line "),
        "{text}"
    );
    assert!(text.contains("      name: "), "{text}");
    assert!(text.contains("      flags: "), "{text}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    // JSON.
    with_policy.push("--json".into());
    let out = run(&env, with_policy);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["verdict"], "block");
    assert_eq!(v["decision"]["rule"], "no-rm-rf");
    assert_eq!(v["entry"]["record"], rm);
    assert_eq!(v["policy"]["matches_run"], true);
    assert_eq!(v["policy"]["agrees"], true);
    assert_eq!(v["policy"]["explanation"]["rule"], "no-rm-rf");
    let conds = v["policy"]["explanation"]["matched"][0]["conditions"]
        .as_array()
        .unwrap();
    assert!(conds
        .iter()
        .any(|c| c["condition"] == "flags" && c["holds"] == true));
    // Another policy: used, with a warning that it is not the run's.
    let other = env
        .policy("version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules: []\n");
    let mut args2 = args.clone();
    args2.push("--policy".into());
    args2.push(other.display().to_string());
    let out = run(&env, args2);
    assert!(
        stderr(&out).contains("is not the one the run used"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("NOT the run's policy") && text.contains("Decision: ALLOW"),
        "{text}"
    );
    // A record that is not an action, and one that does not exist.
    let out = run(
        &env,
        vec![
            "explain".into(),
            ledger.clone(),
            "0".into(),
            "--pubkey".into(),
            env.pubkey().display().to_string(),
        ],
    );
    assert!(
        stdout(&out).contains("is a `run` record"),
        "{}",
        stdout(&out)
    );
    let out = run(
        &env,
        vec![
            "explain".into(),
            ledger,
            "99999".into(),
            "--pubkey".into(),
            env.pubkey().display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no record with seq 99999"));
}

#[test]
fn a_ledger_that_does_not_verify_is_not_shown_unless_asked_and_then_marked() {
    let (env, _) = fixture();
    let ledger = env.ledger.display().to_string();
    // Forge: the rm decision rewritten as allowed.
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    let forged = text.replacen("\"outcome\":\"refused\",", "\"outcome\":\"allowed\",", 1);
    assert_ne!(forged, text);
    std::fs::write(&env.ledger, forged).unwrap();
    for cmd in [
        vec!["ledger", "show"],
        vec!["ledger", "stats"],
        vec!["ledger", "keys"],
    ] {
        let out = run(&env, with_key(&env, &ledger, &cmd));
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(out.stdout.is_empty(), "{cmd:?}: {}", stdout(&out));
        let e = stderr(&out);
        assert!(
            e.contains("not showing the records") && e.contains("--unverified"),
            "{e}"
        );
    }
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--unverified"]),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("WARNING: UNVERIFIED ledger"), "{text}");
    assert!(stderr(&out).contains("UNVERIFIED"));
    let out = run(
        &env,
        with_key(&env, &ledger, &["ledger", "show", "--unverified", "--json"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verification"]["verified"], false);
    assert_eq!(v["verification"]["status"], "INVALID");
    assert!(v["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["verified"] == false));
    // Without a key: VALID only against the ledger's own key, not shown.
    let (env2, _) = fixture();
    let empty = env2.root.join("no-keys");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(common::lexecon())
        .args(["ledger", "show", env2.ledger.to_str().unwrap()])
        .env("LEXECON_KEYS", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("--pubkey FILE"), "{}", stderr(&out));
}

#[test]
fn a_ledger_changed_after_verification_is_not_read_as_verified() {
    use lexecon::ledger::read;
    let (env, _) = fixture();
    let key = lexecon::ledger::keys::load_public_key(&env.pubkey()).unwrap();
    let report = lexecon::ledger::verify_file(&env.ledger, Some(key.verifying_key())).unwrap();
    assert!(report.is_valid());
    let mut n = 0;
    read::read(&env.ledger, Some(&report), |_| {
        n += 1;
        Ok(())
    })
    .expect("reads what was verified");
    assert_eq!(n, report.lines);
    // The same file, one record changed (and the chain recomputed would
    // not help: the last hash differs).
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    std::fs::write(
        &env.ledger,
        text.replacen("recursive delete", "recursive_delete", 1),
    )
    .unwrap();
    let e = read::read(&env.ledger, Some(&report), |_| Ok(())).unwrap_err();
    assert!(
        e.to_string().contains("changed while it was being read"),
        "{e}"
    );
    // Shorter than verified.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&env.ledger, format!("{}\n", lines[..3].join("\n"))).unwrap();
    let e = read::read(&env.ledger, Some(&report), |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("shorter than verified"), "{e}");
}

#[test]
fn keys_publishes_every_epoch_key_as_a_vkey_that_verifies_its_checkpoints() {
    let (env, _) = fixture();
    let ledger = env.ledger.display().to_string();
    let out = run(&env, with_key(&env, &ledger, &["ledger", "keys", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run0 = &v["runs"][0];
    let host = NoteVerifier::parse(run0["host_key"].as_str().unwrap()).expect("host vkey");
    let epochs: Vec<NoteVerifier> = run0["epoch_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| NoteVerifier::parse(k["vkey"].as_str().unwrap()).expect("epoch vkey"))
        .collect();
    assert!(epochs.len() >= 2, "{v}");
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e.name, format!("lexecon-epoch-{i}"));
    }
    // Every checkpoint of the run opens with these keys alone, as a C2SP
    // verifier given them would open it.
    let mut known = epochs.clone();
    known.push(host.clone());
    let mut checkpoints = 0;
    for r in env.records() {
        if r["kind"] == "checkpoint" {
            let n = r["note"].as_str().unwrap();
            let opened = note::open(n, &known).expect("opens with the published keys");
            assert!(!opened.signed_by.is_empty());
            assert_eq!(opened.ignored, 0);
            checkpoints += 1;
        }
    }
    assert!(checkpoints >= 3);
    let out = run(&env, with_key(&env, &ledger, &["ledger", "keys"]));
    let text = stdout(&out);
    assert!(text.contains("  epoch 0 lexecon-epoch-0+"), "{text}");
    assert!(
        text.contains(&format!("  host {}", host.to_vkey())),
        "{text}"
    );
}

#[test]
fn bundle_holds_the_ledger_key_policy_and_report_and_checks_out() {
    let (env, p) = fixture();
    let ledger = env.ledger.display().to_string();
    let out_dir = env.root.join("bundle");
    let mut args = with_key(&env, &ledger, &["ledger", "bundle"]);
    args.extend([
        "--out".to_string(),
        out_dir.display().to_string(),
        "--policy".into(),
        p.display().to_string(),
    ]);
    let out = run(&env, args.clone());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&out_dir),
        [
            "README",
            "SHA256SUMS",
            "keys.txt",
            "ledger.jsonl",
            "ledger.pub",
            "policies",
            "verify.json",
            "verify.txt"
        ]
    );
    assert_eq!(
        std::fs::read(out_dir.join("ledger.jsonl")).unwrap(),
        std::fs::read(&env.ledger).unwrap()
    );
    let pols = names(&out_dir.join("policies"));
    assert_eq!(pols.len(), 1);
    assert_eq!(
        std::fs::read(out_dir.join("policies").join(&pols[0])).unwrap(),
        std::fs::read(&p).unwrap()
    );
    let readme = std::fs::read_to_string(out_dir.join("README")).unwrap();
    assert!(readme.contains("lexecon verify ledger.jsonl --pubkey ledger.pub"));
    assert!(readme.contains("sha256sum -c SHA256SUMS"));
    assert!(readme.contains(&pols[0]));
    assert!(std::fs::read_to_string(out_dir.join("verify.txt"))
        .unwrap()
        .starts_with("Status: VALID\n"));
    let vj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("verify.json")).unwrap())
            .unwrap();
    assert_eq!(vj["status"], "VALID");
    // The checksums hold, and the bundle verifies on its own.
    let sums = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", stdout(&sums));
    let v = Command::new(common::lexecon())
        .args(["verify", "ledger.jsonl", "--pubkey", "ledger.pub"])
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
    // The policy in the bundle explains a record as the run's own.
    let rm = decisions(&env)
        .into_iter()
        .find(|r| r["rule"] == "no-rm-rf")
        .unwrap();
    let e = Command::new(common::lexecon())
        .args([
            "explain",
            "ledger.jsonl",
            &seq(&rm),
            "--pubkey",
            "ledger.pub",
        ])
        .arg("--policy")
        .arg(Path::new("policies").join(&pols[0]))
        .current_dir(&out_dir)
        .output()
        .unwrap();
    assert!(
        stdout(&e).contains("the run's policy"),
        "{}{}",
        stdout(&e),
        stderr(&e)
    );
    // Not over a non-empty directory; not with a policy no run used.
    let out = run(&env, args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    let other = env
        .policy("version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules: []\n");
    let mut args = with_key(&env, &ledger, &["ledger", "bundle"]);
    args.extend([
        "--out".to_string(),
        env.root.join("bundle2").display().to_string(),
        "--policy".into(),
        other.display().to_string(),
    ]);
    let out = run(&env, args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not the policy of any run"),
        "{}",
        stderr(&out)
    );
    assert!(!env.root.join("bundle2").exists());
}

#[test]
fn verify_says_what_to_read_next() {
    let (env, _) = fixture();
    let (code, out) = env.verify();
    assert_eq!(code, 0);
    assert!(out.contains("Last runs:"), "{out}");
    assert!(out.contains(", sealed): "), "{out}");
    assert!(out.contains("--blocked"), "{out}");
    assert!(out.contains("lexecon ledger stats"), "{out}");
    assert!(out.contains("lexecon explain"), "{out}");
    let out = Command::new(common::lexecon())
        .args(["verify", "--json", "--pubkey"])
        .arg(env.pubkey())
        .arg(&env.ledger)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["run_list"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["ending"], "sealed");
    assert_eq!(runs[0]["line"], 1);
    let refused = decisions(&env)
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .count();
    assert_eq!(runs[0]["refused"], refused);
    assert_eq!(runs[0]["decisions"], decisions(&env).len());
}

/// `prove` output with a witness cosignature added (c2sp.org/tlog-cosignature)
/// is still a valid proof for `verify-proof`; a malformed index is not.
#[test]
fn verify_proof_accepts_a_cosigned_checkpoint_and_refuses_a_malformed_index() {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use sha2::Digest as _;
    let (env, _) = fixture();
    let rm = decisions(&env)
        .into_iter()
        .find(|r| r["rule"] == "no-rm-rf")
        .unwrap();
    let record = env.root.join("record.json");
    let out = lexecon(
        &env,
        &[
            "prove",
            env.ledger.to_str().unwrap(),
            &seq(&rm),
            "--record-out",
            record.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let proof = stdout(&out);
    let body_start = proof.find("\n\nlexecon/").expect("checkpoint") + 2;
    let cp = &proof[body_start..];
    let body = &cp[..cp.find("\n\n").unwrap() + 1];
    // A witness cosignature: key ID over 0x04, timestamp, Ed25519 over
    // "cosignature/v1\ntime T\n" + body.
    let w = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let name = "witness.example.org/w";
    let mut pre = name.as_bytes().to_vec();
    pre.push(b'\n');
    pre.push(0x04);
    pre.extend_from_slice(w.verifying_key().as_bytes());
    let id = sha2::Sha256::digest(&pre);
    let ts = 1_764_590_000u64;
    let mut blob = id[..4].to_vec();
    blob.extend_from_slice(&ts.to_be_bytes());
    blob.extend_from_slice(
        &w.sign(format!("cosignature/v1\ntime {ts}\n{body}").as_bytes())
            .to_bytes(),
    );
    let cosigned = format!(
        "{proof}\u{2014} {name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    );
    let check = |text: &str| {
        let p = env.root.join("p.tlog-proof");
        std::fs::write(&p, text).unwrap();
        lexecon(
            &env,
            &[
                "verify-proof",
                "--proof",
                p.to_str().unwrap(),
                "--record",
                record.to_str().unwrap(),
                "--pubkey",
                env.pubkey().to_str().unwrap(),
            ],
        )
    };
    let out = check(&cosigned);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("Proof: VALID"));
    let index_line = proof.lines().nth(1).unwrap().to_string();
    let n = index_line.strip_prefix("index ").unwrap();
    for bad in [format!("index 0{n}"), format!("index +{n}")] {
        let out = check(&cosigned.replacen(&index_line, &bad, 1));
        assert_ne!(out.status.code(), Some(0), "{bad}");
        assert!(
            stderr(&out).contains("invalid index line"),
            "{}",
            stderr(&out)
        );
    }
}

/// Network actions written with the ledger's writer: `show` names each
/// destination as the block lines do, `stats` counts hosts by the name
/// bound to the address when there is one.
#[test]
fn network_destinations_are_shown_and_counted_by_host() {
    use ed25519_dalek::SigningKey;
    use lexecon::action::{
        Action, ConnectAction, Mode, NetFamily, NetOp, NetTarget, Protocol, Verdict,
    };
    use lexecon::ledger::{
        DecisionEntry, HostKey, LedgerWriter, LockMode, Outcome, RunEnd, RunHeader, Stage,
        SyncPolicy, WriterOptions,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let key = HostKey::from_signing_key("lexecon", SigningKey::from_bytes(&[3u8; 32])).unwrap();
    let pubfile = dir.path().join("ledger.pub");
    std::fs::write(&pubfile, format!("{}\n", key.public().to_vkey())).unwrap();
    let mut w = LedgerWriter::open(
        &path,
        key,
        WriterOptions {
            checkpoint_every: 4,
            checkpoint_interval: std::time::Duration::from_secs(3600),
            sync: SyncPolicy::Never,
            lock: LockMode::Fail,
        },
    )
    .unwrap();
    w.begin_run(RunHeader {
        command: vec!["agent".into()],
        cwd: "/w".into(),
        workspace: Some("/w".into()),
        policy_sha256: [7; 32],
        policy_path: None,
        mode: Mode::Enforce,
        ci: Default::default(),
        vars: None,
        policy_layers: Vec::new(),
    })
    .unwrap();
    let ip = |a: &str, port, names: &[&str]| {
        Action::Connect(ConnectAction {
            op: NetOp::Connect,
            protocol: Protocol::Tcp,
            target: NetTarget::Ip {
                family: NetFamily::Inet,
                addr: a.parse().unwrap(),
                port,
            },
            names: names.iter().map(|n| n.to_string()).collect(),
            process: None,
        })
    };
    let actions = [
        (ip("151.101.0.223", 443, &["pypi.org"]), Verdict::Allow),
        (ip("151.101.0.223", 443, &["pypi.org"]), Verdict::Allow),
        (ip("203.0.113.7", 443, &[]), Verdict::Block),
        (
            Action::Connect(ConnectAction {
                op: NetOp::Resolve,
                protocol: Protocol::Udp,
                target: NetTarget::Name("evil\u{1b}[2J.example".into()),
                names: Vec::new(),
                process: None,
            }),
            Verdict::Block,
        ),
    ];
    for (a, v) in &actions {
        w.append_decision(&DecisionEntry {
            pid: 10,
            ppid: 9,
            action: a,
            stage: Stage::Request,
            verdict: *v,
            outcome: if *v == Verdict::Block {
                Outcome::Refused
            } else {
                Outcome::Allowed
            },
            rule: (*v == Verdict::Block).then(|| "no-net".to_string()),
            matched: if *v == Verdict::Block {
                vec!["no-net".into()]
            } else {
                Vec::new()
            },
            reason: "network".into(),
            mode: Mode::Enforce,
            identity: None,
            loaded: None,
            note: None,
        })
        .unwrap();
    }
    w.end_run(RunEnd {
        exit_status: Some(0),
        signal: None,
        note: None,
    })
    .unwrap();
    drop(w);
    let run = |args: &[&str]| {
        Command::new(common::lexecon())
            .args(args)
            .arg(&path)
            .arg("--pubkey")
            .arg(&pubfile)
            .output()
            .unwrap()
    };
    let out = run(&["ledger", "show", "--kind", "connect"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!out.stdout.contains(&0x1b));
    assert!(
        text.contains(
            "allowed connect pypi.org:443 (151.101.0.223:443, tcp) (rule default, record "
        ),
        "{text}"
    );
    assert!(
        text.contains("blocked connect 203.0.113.7:443 (tcp) (rule no-net, record "),
        "{text}"
    );
    assert!(
        text.contains("blocked resolve $'evil\\x1b[2J.example' (rule no-net"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    let out = run(&["ledger", "show", "--kind", "resolve"]);
    assert_eq!(stdout(&out).lines().count(), 1);
    let out = run(&["ledger", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = v["hosts"]["top"].as_array().unwrap();
    assert_eq!(
        hosts[0],
        serde_json::json!({"host": "pypi.org", "count": 2})
    );
    assert_eq!(v["hosts"]["distinct"], 3);
    assert_eq!(v["by_kind"]["connect"], 3);
    assert_eq!(v["by_kind"]["resolve"], 1);
    assert_eq!(v["by_rule"]["no-net"], 2);
    let out = run(&["ledger", "stats"]);
    let text = stdout(&out);
    assert!(text.contains("Hosts (3 distinct):"), "{text}");
    assert!(text.contains("$'evil\\x1b[2J.example'"), "{text}");
}
