//! `supervise --metrics-file`: the Prometheus textfile agrees with the
//! ledger, and the tree can neither rewrite nor remove it.

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
