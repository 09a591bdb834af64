//! Layered policies end to end: `policy check` refusing a layer that tries
//! to loosen the one it includes (with the location), `policy explain` and
//! `lexecon explain` naming the layer of the winning rule, a supervised run
//! recording every layer with its hash, and `lexecon replay` / `verify
//! --policy` reloading every layer and naming the one that changed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{lexecon, Env};

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(lexecon())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const BASE: &str = "version: 1
defaults:
  exec: allow
  open: allow
rules:
  - id: base-block-rm
    exec: {name: rm}
    decision: block
    reason: the baseline refuses rm
  - id: base-escalate-curl
    exec: {name: curl}
    decision: escalate
    reason: the baseline asks about curl
";

#[test]
fn check_refuses_every_construct_of_a_layer_that_would_loosen_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("user")).unwrap();
    std::fs::write(
        d.join("user/base.yaml"),
        BASE.replace("  open: allow", "  open: escalate"),
    )
    .unwrap();
    std::fs::write(
        d.join("project.yaml"),
        "version: 1
include: user/base.yaml
mode: observe
defaults:
  open: allow
rules:
  - id: allow-rm-build
    exec: {name: rm, operand: [build]}
    decision: allow
    reason: the build directory may go
    examples:
      match:
        - exec: rm -rf build
  - id: curl-is-fine
    exec: {name: curl}
    decision: allow
    reason: loosening through a rule without examples has no effect either
",
    )
    .unwrap();
    let out = run(&["policy", "check", "project.yaml"], d);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    // mode (3:7), the default (5:9), the rule's example (13:11).
    assert!(
        all.contains("project.yaml:3:7: `mode: observe` would loosen"),
        "{all}"
    );
    assert!(
        all.contains("project.yaml:5:9: `defaults.open: allow` would loosen"),
        "{all}"
    );
    assert!(
        all.contains("project.yaml:13:11: rule 'allow-rm-build': the rule decides allow for this example, but the layers this file includes decide block (rule 'base-block-rm' of "),
        "{all}"
    );
    assert!(all.contains("project.yaml: invalid (3 errors)"), "{all}");

    // A rule without examples is probed with its own literal patterns.
    let project = "version: 1
include: user/base.yaml
defaults:
  open: block
rules:
  - id: curl-is-fine
    exec: {name: curl}
    decision: allow
    reason: has no effect under the baseline
  - id: project-escalate-curl
    exec: {name: curl}
    decision: escalate
    reason: the project asks about curl too
  - id: block-wget
    exec: {name: wget}
    decision: block
    reason: the project refuses wget
tests:
  - {exec: rm -rf x, expect: block, rule: base-block-rm}
  - {exec: curl x, expect: escalate, rule: base-escalate-curl}
  - {exec: wget x, expect: block, rule: block-wget}
  - {open: /etc/hosts, expect: block, rule: default}
";
    std::fs::write(d.join("project.yaml"), project).unwrap();
    let out = run(&["policy", "check", "project.yaml"], d);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("project.yaml:6:5: rule 'curl-is-fine': the rule decides allow for an exec of /usr/bin/curl it matches, but the layers this file includes decide escalate (rule 'base-escalate-curl' of "),
        "{all}"
    );
    assert!(all.contains("project.yaml: invalid (1 error)"), "{all}");

    // Tightening is fine.
    let tightening = project.replace(
        "  - id: curl-is-fine
    exec: {name: curl}
    decision: allow
    reason: has no effect under the baseline
",
        "",
    );
    std::fs::write(d.join("project.yaml"), tightening).unwrap();
    let out = run(&["policy", "check", "project.yaml"], d);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("defaults: exec allow, open block"), "{all}");
    let base = std::fs::canonicalize(d.join("user/base.yaml")).unwrap();
    assert!(
        all.contains(&format!("    {} (sha256 ", base.display())),
        "{all}"
    );

    let out = run(
        &[
            "policy",
            "explain",
            "project.yaml",
            "--",
            "exec",
            "curl",
            "x",
        ],
        d,
    );
    let all = text(&out);
    assert!(all.contains("Decision: ESCALATE"), "{all}");
    assert!(
        all.contains(&format!(
            "Rule: base-escalate-curl (layer {})",
            base.display()
        )),
        "{all}"
    );
    assert!(
        all.contains("- project-escalate-curl (escalate, project.yaml line 6)"),
        "{all}"
    );
    let out = run(
        &[
            "policy",
            "explain",
            "--json",
            "project.yaml",
            "--",
            "open",
            "/etc/hosts",
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "block");
    assert_eq!(v["layer"], "project.yaml");
}

#[test]
fn cycles_and_files_included_twice_are_refused_at_the_include() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("a.yaml"),
        "version: 1\ninclude: [b.yaml]\nrules: []\n",
    )
    .unwrap();
    std::fs::write(d.join("b.yaml"), "version: 1\ninclude: a.yaml\nrules: []\n").unwrap();
    let out = run(&["policy", "check", "a.yaml"], d);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("b.yaml:2:10: the include of a.yaml is a cycle"),
        "{all}"
    );

    std::fs::write(d.join("c.yaml"), "version: 1\nrules: []\n").unwrap();
    std::fs::write(d.join("b.yaml"), "version: 1\ninclude: c.yaml\nrules: []\n").unwrap();
    std::fs::write(
        d.join("a.yaml"),
        "version: 1\ninclude:\n  - b.yaml\n  - ./c.yaml\nrules: []\n",
    )
    .unwrap();
    let out = run(&["policy", "check", "a.yaml"], d);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("a.yaml:4:5: "), "{all}");
    assert!(all.contains("c.yaml is included already (at "), "{all}");
}

/// The decision record of the first exec of `name`.
fn exec_seq(env: &Env, name: &str) -> u64 {
    let r = env
        .exec_records(name)
        .into_iter()
        .find(|r| r["kind"] == "decision")
        .unwrap_or_else(|| panic!("no decision for {name}"));
    r["seq"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_layered_run_records_each_layer_and_is_replayed_and_rederived_from_them() {
    let env = Env::new();
    let base_dir = env.root.join("baseline");
    std::fs::create_dir(&base_dir).unwrap();
    let base = base_dir.join("base.yaml");
    std::fs::write(&base, BASE).unwrap();
    let policy = env.policy(
        "version: 1
include: baseline/base.yaml
rules:
  - id: project-block-mkdir
    exec: {name: mkdir}
    decision: block
    reason: the project refuses mkdir
",
    );
    let out = env
        .supervise_cmd(
            &policy,
            &["/bin/sh", "-c", "rm -f x; mkdir d; echo ran=done"],
        )
        .output()
        .unwrap();
    assert!(text(&out).contains("ran=done"), "{}", text(&out));
    env.assert_valid();
    assert!(!env.ws.join("d").exists(), "mkdir ran");

    // The header: both files, each with the hash of that file alone.
    let header = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "run")
        .unwrap();
    let layers = header["policy_layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 2, "{header}");
    assert_eq!(layers[0]["path"], base.display().to_string());
    assert_eq!(layers[1]["path"], policy.display().to_string());
    let alone = run(
        &[
            "policy",
            "check",
            "--json",
            "--workspace",
            env.ws.to_str().unwrap(),
            base.to_str().unwrap(),
            policy.to_str().unwrap(),
        ],
        &env.ws,
    );
    let v: serde_json::Value = serde_json::from_slice(&alone.stdout).unwrap();
    assert_eq!(layers[0]["sha256"], v["policies"][0]["sha256"], "{v}");
    assert_eq!(header["policy_sha256"], v["policies"][1]["sha256"], "{v}");
    assert_ne!(layers[1]["sha256"], header["policy_sha256"]);

    let ledger = env.ledger.to_str().unwrap();
    let pubkey = env.pubkey();
    let pubkey = pubkey.to_str().unwrap();
    let p = policy.to_str().unwrap();

    // Who decided: each record's rule, in its layer.
    let rm = exec_seq(&env, "rm").to_string();
    let out = run(
        &["explain", ledger, &rm, "--policy", p, "--pubkey", pubkey],
        &env.ws,
    );
    let all = text(&out);
    assert!(
        all.contains(&format!("Rule: base-block-rm (layer {})", base.display())),
        "{all}"
    );
    assert!(all.contains(", the run's policy)"), "{all}");
    assert!(
        all.contains(&format!("  layer: {}", base.display())),
        "{all}"
    );
    let mkdir = exec_seq(&env, "mkdir").to_string();
    let out = run(
        &["explain", ledger, &mkdir, "--policy", p, "--pubkey", pubkey],
        &env.ws,
    );
    let all = text(&out);
    assert!(
        all.contains(&format!("Rule: project-block-mkdir (layer {p})")),
        "{all}"
    );

    // `ledger show` names the layers in the run's line.
    let out = run(&["ledger", "show", ledger, "--pubkey", pubkey], &env.ws);
    let all = text(&out);
    assert!(
        all.contains(&format!("; layers {}, {p}), mode enforce", base.display())),
        "{all}"
    );

    // Re-judged and re-derived from every layer.
    let out = run(
        &["replay", ledger, "--policy", p, "--pubkey", pubkey],
        &env.ws,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("(the policy the run pinned)"), "{all}");
    assert!(
        all.contains(&format!("Layer: {} (sha256", base.display())),
        "{all}"
    );
    assert!(all.contains("Result: no change"), "{all}");
    let out = run(
        &["verify", ledger, "--pubkey", pubkey, "--policy", p],
        &env.ws,
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("Status: VALID"), "{all}");
    assert!(all.contains("re-derived from the pinned policy"), "{all}");

    // A baseline changed after the run: the layer is named.
    std::fs::write(&base, BASE.replace("decision: escalate", "decision: block")).unwrap();
    let out = run(
        &["verify", ledger, "--pubkey", pubkey, "--policy", p],
        &env.ws,
    );
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!(
            "layer 1 of the run, {} (sha256 {}), is now",
            base.display(),
            layers[0]["sha256"].as_str().unwrap()
        )),
        "{all}"
    );
    let out = run(
        &["replay", ledger, "--policy", p, "--pubkey", pubkey],
        &env.ws,
    );
    let all = text(&out);
    assert!(!all.contains("(the policy the run pinned)"), "{all}");
    assert!(all.contains("Note: layer 1 of the run"), "{all}");
}

#[test]
fn supervise_refuses_to_start_with_a_layer_that_would_loosen() {
    let env = Env::new();
    std::fs::write(env.root.join("base.yaml"), BASE).unwrap();
    let policy = env.policy(
        "version: 1
include: base.yaml
rules:
  - id: allow-rm
    exec: {name: rm}
    decision: allow
    reason: would loosen the baseline
",
    );
    let out = env
        .supervise_cmd(&policy, &["/bin/sh", "-c", "echo ran=yes"])
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(125), "{all}");
    assert!(!all.contains("ran=yes"), "{all}");
    assert!(
        all.contains(&format!(
            "{}:4:5: rule 'allow-rm': the rule decides allow for an exec of /usr/bin/rm it matches",
            policy.display()
        )),
        "{all}"
    );
}

/// Rate limits and the breaker of an included layer hold in the layers
/// below it (the session looks them up in every layer); a second breaker
/// below the first is an error at its location.
#[test]
fn limits_of_an_included_layer_hold_and_a_second_breaker_is_refused() {
    let env = Env::new();
    std::fs::write(
        env.root.join("base.yaml"),
        "version: 1
rules:
  - id: touch-sparingly
    exec: {name: touch}
    decision: allow
    reason: a few files
    rate: 2/min
breaker: {blocks: 50, within: 10min, then: block-all}
",
    )
    .unwrap();
    let project = env.root.join("project.yaml");
    std::fs::write(&project, "version: 1\ninclude: base.yaml\nrules: []\n").unwrap();
    let out = env.supervise(
        &project,
        &["sh", "-c", "for f in a b c; do touch $f; done; true"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(env.ws.join("a").exists() && env.ws.join("b").exists());
    assert!(
        !env.ws.join("c").exists(),
        "the included layer's rate limit did not hold"
    );
    assert!(env
        .records()
        .iter()
        .any(|r| r["kind"] == "limit" && r["rule"] == "touch-sparingly"));
    env.assert_valid();

    let second = env.root.join("second.yaml");
    std::fs::write(
        &second,
        "version: 1\ninclude: base.yaml\nbreaker: {blocks: 2, within: 1min, then: stop}\nrules: []\n",
    )
    .unwrap();
    let o = run(&["policy", "check", second.to_str().unwrap()], &env.root);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("second.yaml:3:10: `breaker:` is set already by"),
        "{}",
        text(&o)
    );
}
