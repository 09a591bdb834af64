//! Rate limits and the breaker in supervised runs: what they refuse, the
//! `limit` records of every change, and a ledger that verifies.

mod common;

use common::Env;

fn kinds<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

#[test]
fn a_rate_limited_rule_lets_its_count_through_then_blocks() {
    let env = Env::new();
    let policy = env.policy(
        "version: 1\nrules:\n  - id: touch-sparingly\n    exec: {name: touch}\n    decision: allow\n    reason: a few files\n    rate: 2/min\n",
    );
    let out = env.supervise(
        &policy,
        &["sh", "-c", "for f in a b c d; do touch $f; done; ls > list"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let list = std::fs::read_to_string(env.ws.join("list")).unwrap();
    assert_eq!(list.lines().filter(|l| l.len() == 1).count(), 2, "{list}");
    assert!(env.ws.join("a").exists() && env.ws.join("b").exists());
    assert!(!env.ws.join("c").exists() && !env.ws.join("d").exists());
    env.assert_valid();
    let records = env.records();
    let limits = kinds(&records, "limit");
    assert!(!limits.is_empty());
    for l in &limits {
        assert_eq!(l["event"], "rate");
        assert_eq!(l["rule"], "touch-sparingly");
        assert_eq!(l["count"], "2");
        assert_eq!(l["limit"], "2");
        assert_eq!(l["window_ms"], "60000");
    }
    let blocked: Vec<_> = env
        .exec_records("touch")
        .into_iter()
        .filter(|r| r["stage"] == "request" && r["verdict"] == "block")
        .collect();
    assert!(!blocked.is_empty());
    for b in &blocked {
        assert_eq!(b["rule"], "touch-sparingly");
        assert!(b["reason"]
            .as_str()
            .unwrap()
            .starts_with("rate limit of rule touch-sparingly reached (2 per 1 min): blocked"));
        // The limit record precedes the decision it changes, with its time.
        let seq: u64 = b["seq"].as_str().unwrap().parse().unwrap();
        let before = records
            .iter()
            .find(|r| r["seq"].as_str() == Some(&(seq - 1).to_string()))
            .unwrap();
        assert_eq!(before["kind"], "limit");
        assert_eq!(before["time"], b["time"]);
    }
}

#[test]
fn the_breaker_trips_on_blocks_and_then_blocks_everything() {
    let env = Env::new();
    let policy = env.policy(
        "version: 1\nbreaker: {blocks: 2, within: 10min, then: block-all}\nrules:\n  - id: no-rm\n    exec: {name: rm}\n    decision: block\n    reason: nothing is removed\n",
    );
    std::fs::write(env.ws.join("keep"), "x").unwrap();
    let out = env.supervise(
        &policy,
        &[
            "sh",
            "-c",
            "rm keep; rm keep; touch after; echo done > done",
        ],
    );
    let _ = out;
    assert!(env.ws.join("keep").exists());
    assert!(
        !env.ws.join("after").exists(),
        "an exec ran after the breaker tripped"
    );
    assert!(
        !env.ws.join("done").exists(),
        "an open ran after the breaker tripped"
    );
    env.assert_valid();
    let records = env.records();
    let limits = kinds(&records, "limit");
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits[0]["event"], "breaker");
    assert_eq!(limits[0]["then"], "block-all");
    assert_eq!(limits[0]["count"], "2");
    let trip: u64 = limits[0]["seq"].as_str().unwrap().parse().unwrap();
    let after: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["stage"] == "request")
        .filter(|r| r["seq"].as_str().unwrap().parse::<u64>().unwrap() > trip)
        .collect();
    assert!(!after.is_empty());
    for r in &after {
        assert_eq!(r["verdict"], "block", "{r}");
        if r["rule"] != "no-rm" {
            assert_eq!(r["rule"], "lexecon.breaker", "{r}");
        }
    }
}

/// Refusals at the gate count for the breaker too, and once it tripped
/// the gate blocks escalations without asking anyone.
#[test]
fn refusals_at_the_gate_trip_the_breaker_and_the_gate_tightens() {
    let env = Env::new();
    let policy = env.policy(
        "version: 1\nbreaker: {blocks: 2, within: 1h, then: block-escalations}\nrules:\n  - id: no-rm\n    exec: {name: rm}\n    decision: block\n    reason: nothing is removed\n  - id: deploys-ask\n    tool: {name: deploy}\n    decision: escalate\n    reason: deploys need a human\n",
    );
    let ask = |req: &str| {
        format!(
            "{} decide --json --request '{req}' >> answers; echo >> answers",
            common::LEXECON
        )
    };
    let rm = r#"{"action":{"kind":"exec","argv":["rm","-rf","x"]}}"#;
    let deploy = r#"{"action":{"kind":"tool","name":"deploy","input":{}}}"#;
    let script = [ask(deploy), ask(rm), ask(rm), ask(deploy)].join("; ");
    let out = env
        .supervise_cmd_with(
            &policy,
            &["--on-escalate", "wait", "--escalate-timeout", "1"],
            &["sh", "-c", &script],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let answers: Vec<serde_json::Value> = std::fs::read_to_string(env.ws.join("answers"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    // The first deploy, before any block, is asked of a human (nobody
    // answers: it times out after 1 s, blocked); the last, after two
    // blocks tripped the breaker, is blocked without asking.
    assert_eq!(answers[0]["asked"], true);
    assert_eq!(answers[1]["rule"], "no-rm");
    assert_eq!(answers[2]["rule"], "no-rm");
    assert_eq!(answers[3]["answer"], "block");
    assert_eq!(answers[3]["asked"], false);
    assert_eq!(answers[3]["rule"], "lexecon.breaker");
    env.assert_valid();
    let records = env.records();
    assert_eq!(kinds(&records, "limit").len(), 1);
    assert_eq!(kinds(&records, "escalation").len(), 1);
}

#[test]
fn a_breaker_that_stops_the_tree_kills_it() {
    let env = Env::new();
    let policy = env.policy(
        "version: 1\nbreaker: {blocks: 1, within: 1h, then: stop}\nrules:\n  - id: no-rm\n    exec: {name: rm}\n    decision: block\n    reason: nothing is removed\n",
    );
    std::fs::write(env.ws.join("keep"), "x").unwrap();
    let t = std::time::Instant::now();
    let out = env.supervise(&policy, &["sh", "-c", "rm keep; sleep 20; touch after"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "the tree was not stopped"
    );
    assert_eq!(out.status.code(), Some(137), "{}", common::stderr(&out));
    assert!(env.ws.join("keep").exists());
    assert!(!env.ws.join("after").exists());
    assert!(common::stderr(&out).contains("breaker tripped"));
    env.assert_valid();
    let records = env.records();
    let limits = kinds(&records, "limit");
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0]["then"], "stop");
}

/// `lexecon verify --policy` and `lexecon replay` of a rate-limited run:
/// the limit is applied again at the recorded times, so the pinned policy
/// re-derives every decision (blocks by the limit included), and a looser
/// limit lets exactly the actions it would have let through.
#[test]
fn rate_limited_decisions_are_re_derived_and_replayed_from_recorded_times() {
    let env = Env::new();
    let yaml = "version: 1\nrules:\n  - id: touch-sparingly\n    exec: {name: touch}\n    decision: allow\n    reason: a few files\n    rate: 2/min\n";
    let policy = env.policy(yaml);
    let out = env.supervise(
        &policy,
        &["sh", "-c", "for f in a b c d; do touch $f; done; true"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    // `lexecon VERB LEDGER --pubkey K --policy P [--json]`.
    let run = |verb: &str, p: &std::path::Path, json: bool| {
        let mut c = std::process::Command::new(common::lexecon());
        c.arg(verb)
            .arg(&env.ledger)
            .arg("--pubkey")
            .arg(env.pubkey())
            .arg("--policy")
            .arg(p);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let changes = |o: &std::process::Output| -> serde_json::Value {
        assert_eq!(o.status.code(), Some(0), "{}", common::stderr(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v
    };
    let o = run("verify", &policy, false);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        common::stdout(&o),
        common::stderr(&o)
    );
    let v = changes(&run("replay", &policy, true));
    assert_eq!(
        v["changes"],
        serde_json::json!({"looser": 0, "refused": 0, "rule": 0, "stricter": 0}),
        "{v}"
    );

    // With room for three, the first blocked touch (of c) would have run:
    // exactly one action gets a weaker verdict.
    let looser = env.policy(&yaml.replace("rate: 2/min", "rate: 3/min"));
    let v = changes(&run("replay", &looser, true));
    assert_eq!(
        v["changes"],
        serde_json::json!({"looser": 1, "refused": 0, "rule": 0, "stricter": 0}),
        "{v}"
    );
    let groups = v["groups"].to_string();
    assert!(
        groups.contains("touch c") && !groups.contains("touch d"),
        "{v}"
    );

    // With none, every touch would have been refused.
    let none = env.policy(
        &yaml
            .replace("decision: allow", "decision: block")
            .replace("    rate: 2/min\n", ""),
    );
    let o = run("replay", &none, false);
    assert_eq!(o.status.code(), Some(1), "{}", common::stdout(&o));
}
