//! What operators' tools receive: `supervise --metrics-file` (the
//! Prometheus textfile agrees with the ledger, and the tree can neither
//! rewrite nor remove it) and `ledger export` (OTLP/JSON and ECS lines
//! carry every record, and only from a verified ledger). The formats are
//! also checked with the tools themselves by `scripts/test-observability`.

mod common;

use common::Env;
use std::collections::HashMap;

/// The samples of an exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_metrics_file_agrees_with_the_ledger_and_is_the_supervisors() {
    let env = Env::new();
    let metrics = env.root.join("lexecon.prom");
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    let policy = env.policy(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  \
         - id: no-secret\n    open:\n      path: [\"${WORKSPACE}/secret\"]\n    decision: block\n    \
         reason: secrets stay\n",
    );
    let script = format!(
        "cat secret; echo forged > {m}; rm -f {m}; mv {m} elsewhere; ls > /dev/null; true",
        m = metrics.display()
    );
    let out = env
        .supervise_cmd_with(
            &policy,
            &["--metrics-file", metrics.to_str().unwrap()],
            &["/bin/sh", "-c", &script],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    env.assert_valid();
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(!text.contains("forged"), "{text}");
    assert!(!env.ws.join("elsewhere").exists());
    let s = samples(&text);
    assert_eq!(s["lexecon_run_ended"], 1.0, "{text}");

    // Every decision record is counted once, under its kind, verdict,
    // outcome and rule.
    let records = env.records();
    let decisions: Vec<_> = records.iter().filter(|r| r["kind"] == "decision").collect();
    let total: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("lexecon_decisions_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total as usize, decisions.len(), "{text}");
    assert_eq!(
        s["lexecon_decisions_total{kind=\"open\",verdict=\"block\",outcome=\"refused\",rule=\"no-secret\"}"],
        1.0,
        "{text}"
    );
    // The writes, the removal and the rename of the metrics file were
    // refused by the built-in protection.
    let refused_metrics = decisions
        .iter()
        .filter(|r| {
            r["rule"] == "lexecon.self-protect.ledger"
                && r["action"]["path"] == metrics.to_str().unwrap()
        })
        .count();
    assert!(refused_metrics >= 3, "{refused_metrics} refusals: {text}");
    // The ledger's own counts match.
    let run = records.iter().find(|r| r["kind"] == "run").unwrap();
    assert!(text.contains(&format!("run=\"{}\"", run["run"].as_str().unwrap())));
    let n = records.iter().skip_while(|r| r["kind"] != "run").count() as f64;
    assert_eq!(s["lexecon_ledger_records_total"], n, "{text}");
    let judged = s["lexecon_judge_duration_seconds_count"];
    assert!(judged >= 1.0 && judged <= decisions.len() as f64, "{text}");
    assert_eq!(
        s["lexecon_judge_duration_seconds_bucket{le=\"+Inf\"}"],
        judged
    );
    assert_eq!(s["lexecon_escalations_held"], 0.0);
}

#[test]
fn exports_carry_every_record_and_only_from_a_verified_ledger() {
    let env = Env::new();
    std::fs::write(env.ws.join("secret"), "s\n").unwrap();
    let policy = env.policy(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  \
         - id: no-secret\n    open:\n      path: [\"${WORKSPACE}/secret\"]\n    decision: block\n    \
         reason: secrets stay\n",
    );
    let out = env.supervise(
        &policy,
        &["/bin/sh", "-c", "cat secret; echo '\u{1b}[2J' > /dev/null"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let export = |format: &str, ledger: &std::path::Path| {
        std::process::Command::new(common::lexecon())
            .args(["ledger", "export", "--format", format, "--pubkey"])
            .arg(env.pubkey())
            .arg(ledger)
            .output()
            .unwrap()
    };
    let records = env.records();
    let exported: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["kind"] != "checkpoint" && r["kind"] != "epoch")
        .collect();

    let otlp = export("otlp", &env.ledger);
    assert!(otlp.status.success(), "{}", common::stderr(&otlp));
    let doc: serde_json::Value = serde_json::from_slice(&otlp.stdout).unwrap();
    let logs = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap();
    assert_eq!(logs.len(), exported.len());
    // Each log record carries its ledger line, byte for byte, in order.
    let lines: Vec<String> = std::fs::read_to_string(&env.ledger)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"kind\":\"checkpoint\"") && !l.contains("\"kind\":\"epoch\""))
        .map(str::to_string)
        .collect();
    let attr = |rec: &serde_json::Value, key: &str| -> serde_json::Value {
        rec["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    for (rec, line) in logs.iter().zip(&lines) {
        assert_eq!(attr(rec, "lexecon.record")["stringValue"], line.as_str());
    }
    let blocked = logs
        .iter()
        .find(|r| attr(r, "lexecon.rule")["stringValue"] == "no-secret")
        .unwrap();
    assert_eq!(blocked["severityText"], "WARN");
    assert_eq!(attr(blocked, "lexecon.outcome")["stringValue"], "refused");
    assert_eq!(
        attr(blocked, "file.path")["stringValue"],
        env.ws.join("secret").to_str().unwrap()
    );
    // 64-bit integers are strings in OTLP/JSON.
    assert!(attr(blocked, "process.pid")["intValue"].is_string());
    let resource = doc["resourceLogs"][0]["resource"]["attributes"].to_string();
    let run = records.iter().find(|r| r["kind"] == "run").unwrap();
    assert!(
        resource.contains(run["run"].as_str().unwrap()),
        "{resource}"
    );

    let ecs = export("ecs", &env.ledger);
    assert!(ecs.status.success(), "{}", common::stderr(&ecs));
    let events: Vec<serde_json::Value> = String::from_utf8(ecs.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), exported.len());
    let denied = events
        .iter()
        .find(|e| e["rule"]["id"] == "no-secret")
        .unwrap();
    assert_eq!(denied["event"]["outcome"], "failure");
    assert_eq!(denied["event"]["category"], serde_json::json!(["file"]));
    assert_eq!(
        denied["event"]["type"],
        serde_json::json!(["access", "denied"])
    );
    assert!(denied["@timestamp"].as_str().unwrap().ends_with('Z'));
    // The caller's program (`cat`), which record format 2 keeps in a
    // `process` record, is on the event itself.
    assert!(
        denied["process"]["executable"]
            .as_str()
            .is_some_and(|p| p.ends_with("/cat")),
        "{denied}"
    );
    assert!(
        attr(blocked, "process.executable.path")["stringValue"]
            .as_str()
            .is_some_and(|p| p.ends_with("/cat")),
        "{blocked}"
    );
    // The tree's bytes reach the human-readable message escaped.
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().all(|m| !m.contains('\u{1b}')),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("\\x1b[2J")),
        "{messages:?}"
    );

    // A ledger that was changed is not exported.
    let tampered = env.root.join("tampered.jsonl");
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    std::fs::write(&tampered, text.replacen("secrets stay", "secrets go!", 1)).unwrap();
    for format in ["otlp", "ecs"] {
        let out = export(format, &tampered);
        assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
        assert!(out.stdout.is_empty(), "{format}: exported a changed ledger");
    }
}
