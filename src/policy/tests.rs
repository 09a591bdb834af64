//! Unit tests of loading and deciding.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::*;
use crate::action::{Access, ExecAction, OpenAction};

pub(crate) fn vars() -> Vars {
    Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/home/u/ws"),
        tmpdir: PathBuf::from("/tmp"),
    }
}

pub(crate) fn exec_in(cwd: &str, words: &[&str]) -> Action {
    let first = words.first().copied().unwrap_or("");
    let path = if first.starts_with('/') {
        PathBuf::from(first)
    } else {
        PathBuf::from(format!("/usr/bin/{first}"))
    };
    Action::Exec(ExecAction {
        path,
        argv: words.iter().map(OsString::from).collect(),
        cwd: PathBuf::from(cwd),
        sha256: None,
    })
}

pub(crate) fn exec(words: &[&str]) -> Action {
    exec_in("/home/u/ws", words)
}

pub(crate) fn open(path: &str, access: Access) -> Action {
    Action::Open(OpenAction {
        op: crate::action::FileOp::Open,
        detail: None,
        path: PathBuf::from(path),
        access,
        cwd: PathBuf::from("/home/u/ws"),
        process: None,
    })
}

fn load(text: &str) -> Policy {
    match Policy::from_str(text, "t.yaml", &vars()) {
        Ok(p) => p,
        Err(e) => panic!("policy should load:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match Policy::from_str(text, "t.yaml", &vars()) {
        Ok(_) => panic!("policy should not load"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn shipped(name: &str) -> Policy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name);
    // Every `${env.…}` at its default, whatever the test's environment.
    match Policy::from_file_with_env(&path, &vars(), &Env::fixed::<&str, &str>([])) {
        Ok(p) => p,
        Err(e) => panic!("{name} should load:\n{e}"),
    }
}

#[test]
fn demo_policy_blocks_rm_rf_and_allows_the_rest() {
    let p = shipped("demo.yaml");
    let d = p.decide(&exec(&["rm", "-rf", "./important_data"]));
    assert_eq!(d.verdict, Verdict::Block);
    assert_eq!(d.rule.as_deref(), Some("block-rm-rf"));
    assert_eq!(d.matched, vec!["block-rm-rf".to_string()]);
    let d = p.decide(&exec(&["python3", "agent.py"]));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule, None);
    assert!(d.matched.is_empty());
    assert_eq!(p.mode(), Mode::Enforce);
}

#[test]
fn default_policy_headline_cases() {
    for name in ["default.yaml"] {
        let p = shipped(name);
        let blocked = [
            exec(&["rm", "-rf", "/"]),
            exec(&["rm", "-rf", "/home/u"]),
            exec(&["git", "push", "--force"]),
            exec(&["sudo", "ls"]),
            open("/home/u/.ssh/id_rsa", Access::READ),
        ];
        for a in &blocked {
            assert_eq!(p.decide(a).verdict, Verdict::Block, "{name}: {a:?}");
        }
        let allowed = [
            exec(&["ls"]),
            exec(&["cargo", "build"]),
            exec(&["git", "status"]),
            open(
                "/home/u/ws/src/main.rs",
                Access::WRITE | Access::CREATE | Access::TRUNCATE,
            ),
        ];
        for a in &allowed {
            assert_eq!(p.decide(a).verdict, Verdict::Allow, "{name}: {a:?}");
        }
    }
}

fn verdict(p: &Policy, a: &Action) -> Verdict {
    p.decide(a).verdict
}

const HEAD: &str = "version: 1\nrules:\n";

fn one_rule(kind_and_conds: &str) -> Policy {
    load(&format!(
        "{HEAD}  - id: r\n{kind_and_conds}    decision: block\n    reason: test\n"
    ))
}

#[test]
fn exec_program_glob() {
    let p = one_rule("    exec:\n      program: [\"/usr/bin/*\", \"/opt/**/bin/tool\"]\n");
    assert_eq!(verdict(&p, &exec(&["ls"])), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["/opt/x/y/bin/tool"])), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["/usr/local/bin/ls"])), Verdict::Allow);
}

#[test]
fn exec_name_matches_program_basename_or_argv0() {
    let p = one_rule("    exec:\n      name: [rm, \"mkfs.*\"]\n");
    assert_eq!(verdict(&p, &exec(&["rm"])), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["mkfs.ext4", "/dev/x"])), Verdict::Block);
    // busybox-style: the program is busybox, argv[0] says rm.
    let Action::Exec(mut e) = exec(&["rm", "-rf", "/"]) else {
        unreachable!()
    };
    e.path = PathBuf::from("/bin/busybox");
    assert_eq!(verdict(&p, &Action::Exec(e.clone())), Verdict::Block);
    // a renamed argv[0] does not hide the program file's name.
    e.path = PathBuf::from("/usr/bin/rm");
    e.argv[0] = OsString::from("harmless");
    assert_eq!(verdict(&p, &Action::Exec(e)), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["rmdir"])), Verdict::Allow);
}

#[test]
fn exec_sha256_recognises_renamed_binaries() {
    let h = [7u8; 32];
    let p = one_rule(&format!(
        "    exec:\n      sha256: [\"{}\"]\n",
        hex::encode(h)
    ));
    assert!(p.uses_content_hash());
    let Action::Exec(mut e) = exec(&["innocent"]) else {
        unreachable!()
    };
    e.sha256 = Some(h);
    assert_eq!(verdict(&p, &Action::Exec(e.clone())), Verdict::Block);
    e.sha256 = Some([8u8; 32]);
    assert_eq!(verdict(&p, &Action::Exec(e)), Verdict::Allow);
    assert!(!shipped("default.yaml").uses_content_hash());
}

/// A fact that could not be established never helps the tree: block and
/// escalate rules take it as matching (and their exceptions as not
/// applying), allow rules as not matching (and their exceptions as
/// applying).
#[test]
fn unknown_facts_never_help_the_tree() {
    let h = hex::encode([7u8; 32]);
    let unknown_hash = exec(&["innocent"]);
    let mut known_other = unknown_hash.clone();
    if let Action::Exec(e) = &mut known_other {
        e.sha256 = Some([8u8; 32]);
    }
    for strict in ["block", "escalate"] {
        let p = load(&format!(
            "version: 1\ndefaults: {{exec: allow, open: allow}}\nrules:\n  - id: r\n    exec:\n      sha256: [\"{h}\"]\n    decision: {strict}\n    reason: r\n"
        ));
        assert_eq!(verdict(&p, &known_other), Verdict::Allow, "{strict}");
        assert_ne!(
            verdict(&p, &unknown_hash),
            Verdict::Allow,
            "{strict}: unknown hash"
        );
    }
    // An allow rule by hash does not allow a program whose hash is unknown.
    let p = load(&format!(
        "version: 1\ndefaults: {{exec: block, open: allow}}\nrules:\n  - id: r\n    exec:\n      sha256: [\"{h}\"]\n    decision: allow\n    reason: r\n"
    ));
    assert_eq!(verdict(&p, &unknown_hash), Verdict::Block);
    // A block rule whose exception needs the hash: the exception does not
    // apply when the hash is unknown.
    let p = load(&format!(
        "version: 1\ndefaults: {{exec: allow, open: allow}}\nrules:\n  - id: r\n    exec:\n      name: innocent\n      unless:\n        sha256: [\"{h}\"]\n    decision: block\n    reason: r\n"
    ));
    assert_eq!(verdict(&p, &unknown_hash), Verdict::Block);
    let mut listed = unknown_hash.clone();
    if let Action::Exec(e) = &mut listed {
        e.sha256 = Some([7u8; 32]);
    }
    assert_eq!(verdict(&p, &listed), Verdict::Allow);
    // The working directory: unknown (empty) matches a block rule's `cwd`,
    // never an allow rule's; relative operands cannot be placed without it.
    let p = load(
        "version: 1\ndefaults: {exec: allow, open: block}\nrules:\n  - id: no-exec-in-secret\n    exec:\n      cwd: /secret/**\n    decision: block\n    reason: r\n  - id: open-in-ws\n    open:\n      cwd: [/home/u/ws, /home/u/ws/**]\n    decision: allow\n    reason: r\n  - id: no-rm-secret\n    exec:\n      name: rm\n      operand_path: /secret/**\n    decision: block\n    reason: r\n",
    );
    assert_eq!(verdict(&p, &exec_in("/home/u/ws", &["ls"])), Verdict::Allow);
    assert_eq!(verdict(&p, &exec_in("", &["ls"])), Verdict::Block);
    assert_eq!(
        verdict(&p, &exec_in("/home/u/ws", &["rm", "x"])),
        Verdict::Allow
    );
    assert_eq!(verdict(&p, &exec_in("", &["rm", "x"])), Verdict::Block);
    assert_eq!(
        verdict(&p, &exec_in("", &["rm", "/elsewhere/x"])),
        Verdict::Block,
        "cwd rule"
    );
    let mut o = open("/home/u/ws/a", Access::READ);
    assert_eq!(verdict(&p, &o), Verdict::Allow);
    if let Action::Open(oa) = &mut o {
        oa.cwd = PathBuf::new();
    }
    assert_eq!(verdict(&p, &o), Verdict::Block);
}

#[test]
fn exec_positional_args() {
    let p = one_rule("    exec:\n      name: git\n      args: [\"**\", push, \"*\", \"+*\"]\n");
    assert_eq!(
        verdict(&p, &exec(&["git", "push", "origin", "+main"])),
        Verdict::Block
    );
    assert_eq!(
        verdict(&p, &exec(&["git", "-C", "x", "push", "o", "+m"])),
        Verdict::Block
    );
    assert_eq!(
        verdict(&p, &exec(&["git", "push", "origin", "main"])),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &exec(&["git", "push", "+main"])),
        Verdict::Allow
    );
}

#[test]
fn exec_argv_regex_sees_the_whole_argv() {
    let p = one_rule("    exec:\n      argv_regex: '^python3? -c .*import os'\n");
    assert_eq!(
        verdict(&p, &exec(&["python3", "-c", "import os; os.system('x')"])),
        Verdict::Block
    );
    assert_eq!(verdict(&p, &exec(&["python3", "x.py"])), Verdict::Allow);
}

#[test]
fn exec_flags_in_every_spelling() {
    let p = one_rule("    exec:\n      name: rm\n      flags: [\"r|R|recursive\", \"f|force\"]\n");
    for argv in [
        &["rm", "-rf", "x"][..],
        &["rm", "-fr", "x"],
        &["rm", "-r", "-f", "x"],
        &["rm", "-Rf", "x"],
        &["rm", "--recursive", "--force", "x"],
        &["rm", "-r", "--force", "x"],
        &["rm", "x", "-rf"],
        &["rm", "x", "--force", "y", "-R"],
        &["rm", "-vrf", "x"],
        &["rm", "--recursive", "-f"],
    ] {
        assert_eq!(verdict(&p, &exec(argv)), Verdict::Block, "{argv:?}");
    }
    for argv in [
        &["rm", "-r", "x"][..],
        &["rm", "-f", "x"],
        &["rm", "--", "-rf"],
        &["rm", "x"],
        &["rm"],
    ] {
        assert_eq!(verdict(&p, &exec(argv)), Verdict::Allow, "{argv:?}");
    }
}

#[test]
fn exec_operands_text_path_and_outside() {
    let p = one_rule("    exec:\n      name: dd\n      operand: [\"of=/dev/sd*\"]\n");
    assert_eq!(
        verdict(&p, &exec(&["dd", "if=x", "of=/dev/sda"])),
        Verdict::Block
    );
    assert_eq!(verdict(&p, &exec(&["dd", "of=./img"])), Verdict::Allow);

    let p = one_rule("    exec:\n      operand_path: [\"/etc/**\"]\n");
    assert_eq!(
        verdict(&p, &exec_in("/etc/ssl", &["cat", "certs/x"])),
        Verdict::Block
    );
    assert_eq!(
        verdict(&p, &exec_in("/home/u/ws", &["cat", "../../../etc/passwd"])),
        Verdict::Block
    );
    assert_eq!(verdict(&p, &exec(&["cat", "etc/passwd"])), Verdict::Allow);

    let p = one_rule("    exec:\n      operand_outside: [\"${WORKSPACE}/**\"]\n");
    assert_eq!(verdict(&p, &exec(&["rm", "a", "/x"])), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["rm", "."])), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["rm", "a", "b/../c"])), Verdict::Allow);
    assert_eq!(verdict(&p, &exec(&["rm", "b/../../ws2"])), Verdict::Block);
    assert_eq!(verdict(&p, &exec(&["rm", "-rf"])), Verdict::Allow);

    let p = one_rule("    exec:\n      operand_covers: [\"${WORKSPACE}\", \"${HOME}/.ssh\"]\n");
    for argv in [
        &["rm", "."][..],
        &["rm", ".."],
        &["rm", "/"],
        &["rm", "/home"],
        &["rm", "x", "/home/u/ws/"],
        &["rm", "../.ssh"],
    ] {
        assert_eq!(verdict(&p, &exec(argv)), Verdict::Block, "{argv:?}");
    }
    for argv in [
        &["rm", "./a"][..],
        &["rm", "/home/u/w"],
        &["rm", "/home/u/wsx"],
        &["rm", "../.sshx"],
    ] {
        assert_eq!(verdict(&p, &exec(argv)), Verdict::Allow, "{argv:?}");
    }
    let e = errors(&format!("{HEAD}  - id: r\n    exec: {{operand_covers: [\"/a/*\"]}}\n    decision: block\n    reason: t\n"));
    assert!(
        e[0].starts_with("t.yaml:4:29: rule 'r': operand_covers takes absolute paths"),
        "{e:?}"
    );
}

#[test]
fn exec_and_open_cwd() {
    let p = one_rule("    exec:\n      cwd: [\"/etc\", \"/etc/**\"]\n");
    assert_eq!(verdict(&p, &exec_in("/etc", &["ls"])), Verdict::Block);
    assert_eq!(verdict(&p, &exec_in("/etcx", &["ls"])), Verdict::Allow);
    let p = one_rule("    open:\n      cwd: /srv/**\n");
    let Action::Open(mut o) = open("/x", Access::READ) else {
        unreachable!()
    };
    assert_eq!(verdict(&p, &Action::Open(o.clone())), Verdict::Allow);
    o.cwd = PathBuf::from("/srv/app");
    assert_eq!(verdict(&p, &Action::Open(o)), Verdict::Block);
}

#[test]
fn open_path_and_access_any_of() {
    let p = one_rule("    open:\n      path: \"${HOME}/.ssh/**\"\n      access: [write, append]\n");
    assert_eq!(
        verdict(&p, &open("/home/u/.ssh/k", Access::WRITE)),
        Verdict::Block
    );
    assert_eq!(
        verdict(&p, &open("/home/u/.ssh/k", Access::READ | Access::APPEND)),
        Verdict::Block
    );
    assert_eq!(
        verdict(&p, &open("/home/u/.ssh/k", Access::READ)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &open("/home/u/.sshx/k", Access::WRITE)),
        Verdict::Allow
    );
}

#[test]
fn unless_makes_exceptions() {
    let p = one_rule(
        "    open:\n      access: write\n      path: \"/**\"\n      unless:\n        path: [\"${WORKSPACE}/**\", /dev/null]\n",
    );
    assert_eq!(verdict(&p, &open("/etc/x", Access::WRITE)), Verdict::Block);
    assert_eq!(
        verdict(&p, &open("/home/u/ws/x", Access::WRITE)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &open("/dev/null", Access::WRITE)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &open("pipe:[12]", Access::WRITE)),
        Verdict::Allow
    );
    let ex = p.explain(&open("/home/u/ws/x", Access::WRITE));
    assert!(ex.matched.is_empty());
}

#[test]
fn empty_conditions_match_every_action_of_the_kind() {
    let p = one_rule("    exec: {}\n");
    assert_eq!(verdict(&p, &exec(&["true"])), Verdict::Block);
    assert_eq!(verdict(&p, &open("/x", Access::READ)), Verdict::Allow);
}

const PRECEDENCE: &str = r#"version: 1
defaults:
  exec: escalate
  open: block
rules:
  - id: allow-git
    exec: {name: git}
    decision: allow
    reason: git is fine
  - id: escalate-push
    exec: {name: git, args: [push, "**"]}
    decision: escalate
    reason: pushing needs approval
  - id: block-force
    exec: {name: git, args: [push, "**"], flags: ["f|force"]}
    decision: block
    reason: no force push
  - id: block-force-again
    exec: {name: git, flags: ["force"]}
    decision: block
    reason: second block rule
  - id: escalate-push-again
    exec: {name: git, args: [push, "**"]}
    decision: escalate
    reason: second escalate rule
"#;

#[test]
fn precedence_block_over_escalate_over_allow_first_in_file_order() {
    let p = load(PRECEDENCE);
    let d = p.decide(&exec(&["git", "status"]));
    assert_eq!(
        (d.verdict, d.rule.as_deref()),
        (Verdict::Allow, Some("allow-git"))
    );
    assert_eq!(d.reason, "git is fine");

    let d = p.decide(&exec(&["git", "push"]));
    assert_eq!(d.verdict, Verdict::Escalate);
    assert_eq!(d.rule.as_deref(), Some("escalate-push"));
    assert_eq!(
        d.matched,
        ["allow-git", "escalate-push", "escalate-push-again"]
    );

    let d = p.decide(&exec(&["git", "push", "--force"]));
    assert_eq!(d.verdict, Verdict::Block);
    assert_eq!(d.rule.as_deref(), Some("block-force"));
    assert_eq!(d.reason, "no force push");
    assert_eq!(
        d.matched,
        [
            "allow-git",
            "escalate-push",
            "block-force",
            "block-force-again",
            "escalate-push-again"
        ]
    );

    let d = p.decide(&exec(&["ls"]));
    assert_eq!((d.verdict, d.rule.clone()), (Verdict::Escalate, None));
    assert!(
        d.reason.contains("default for exec is escalate"),
        "{}",
        d.reason
    );
    assert_eq!(verdict(&p, &open("/x", Access::READ)), Verdict::Block);
    assert_eq!(p.default_verdict(ActionKind::Open), Verdict::Block);
}

#[test]
fn explain_lists_every_matching_rule_with_conditions() {
    let p = load(PRECEDENCE);
    let a = exec(&["git", "push", "-f"]);
    let ex = p.explain(&a);
    assert_eq!(ex.decision, p.decide(&a));
    let ids: Vec<&str> = ex.matched.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "allow-git",
            "escalate-push",
            "block-force",
            "escalate-push-again"
        ]
    );
    let force = &ex.matched[2];
    assert_eq!(force.line, 14);
    let conds: Vec<&str> = force.conditions.iter().map(|c| c.condition).collect();
    assert_eq!(conds, ["name", "args", "flags"]);
    assert!(force.conditions.iter().all(|c| c.holds));
    assert!(
        force.conditions[2].detail.contains("-f"),
        "{:?}",
        force.conditions
    );
    let j = ex.to_json();
    assert_eq!(j["verdict"], "block");
    assert_eq!(j["matched"][2]["winner"], true);
}

#[test]
fn variables_expand_at_load_and_unknown_ones_are_located_errors() {
    let p =
        one_rule("    open:\n      path: [\"${HOME}/a\", \"${WORKSPACE}/b\", \"${TMPDIR}/c\"]\n");
    for path in ["/home/u/a", "/home/u/ws/b", "/tmp/c"] {
        assert_eq!(
            verdict(&p, &open(path, Access::READ)),
            Verdict::Block,
            "{path}"
        );
    }
    let e = errors(&format!(
        "{HEAD}  - id: r\n    open:\n      path: [\"/a\", \"${{USER}}/x\"]\n    decision: block\n    reason: t\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:5:20: rule 'r': bad pattern in path: unknown variable '${USER}'"),
        "{e:?}"
    );
}

#[test]
fn errors_have_exact_locations_rule_ids_and_hints() {
    let text = r#"version: 1
mode: enforced
defaults:
  exec: deny
  unlink: allow
rules:
  - id: a
    exec:
      nme: rm
    decison: block
    reason: x
  - id: a
    open:
      path: "/x/**b"
      access: [write, exec]
    decision: block
    reason: y
  - id: c
    exec:
      argv_regex: "(unclosed"
      flags: ["-rf"]
    decision: allow
  - exec: {}
    decision: block
    reason: z
"#;
    let e = errors(text);
    let expected = [
        "t.yaml:2:7: unknown mode 'enforced'",
        "t.yaml:4:9: defaults.exec 'deny' is not a decision",
        "t.yaml:5:3: unknown action kind 'unlink' in defaults",
        "t.yaml:7:5: rule 'a': rule has no 'decision'",
        "t.yaml:9:7: rule 'a': unknown key 'nme' in `exec` conditions (did you mean 'name'?",
        "t.yaml:10:5: rule 'a': unknown key 'decison' in a rule (did you mean 'decision'?",
        "t.yaml:12:9: rule 'a': duplicate rule id (first used at line 7)",
        "t.yaml:14:13: rule 'a': bad pattern in path: '**' is not a whole path component",
        "t.yaml:15:23: rule 'a': unknown access 'exec'",
        "t.yaml:18:5: rule 'c': rule has no 'reason'",
        "t.yaml:20:19: rule 'c': bad regular expression",
        "t.yaml:21:15: rule 'c': '-rf' in flag '-rf' has one dash but several letters",
        "t.yaml:23:5: rule has no 'id'",
    ];
    for want in expected {
        assert!(
            e.iter().any(|got| got.starts_with(want)),
            "missing error starting with {want:?} in:\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), expected.len(), "{}", e.join("\n"));
}

#[test]
fn missing_and_wrong_types_at_top_level() {
    let e = errors("rules: []\n");
    assert_eq!(
        e,
        ["t.yaml:1:1: missing 'version' (start the file with `version: 1`)"]
    );
    let e = errors("version: 2\nrules: []\n");
    assert!(
        e[0].starts_with("t.yaml:1:10: unsupported policy version '2'"),
        "{e:?}"
    );
    let e = errors("version: 1\nrules: {a: 1}\n");
    assert!(
        e[0].starts_with("t.yaml:2:8: 'rules' must be a list"),
        "{e:?}"
    );
    let e = errors("- a\n- b\n");
    assert!(
        e[0].starts_with("t.yaml:1:1: the policy must be a mapping"),
        "{e:?}"
    );
    let e = errors("version: 1\nrules:\n  - id: [x]\n");
    assert!(
        e.iter()
            .any(|x| x.starts_with("t.yaml:3:9: id must be a string, found a list")),
        "{e:?}"
    );
    let e = errors("");
    assert!(e[0].starts_with("t.yaml:1:1: the policy is empty"), "{e:?}");
    let e = errors("version: 1\nrules: [\n");
    assert!(e[0].contains("YAML syntax error"), "{e:?}");
    let e = errors("version: 1\nversion: 1\nrules: []\n");
    assert!(
        e[0].starts_with("t.yaml:2:1: duplicate key 'version'"),
        "{e:?}"
    );
    let e = errors("version: 1\nrules:\n  - id: r\n    exec: {name: rm}\n    open: {}\n    decision: block\n    reason: x\n");
    assert!(
        e[0].starts_with("t.yaml:5:11: rule 'r': rule names more than one of"),
        "{e:?}"
    );
    let e = errors(
        "version: 1\nrules:\n  - id: r\n    exec: {name: []}\n    decision: block\n    reason: x\n",
    );
    assert!(
        e[0].starts_with("t.yaml:4:18: rule 'r': name is an empty list"),
        "{e:?}"
    );
    let e = errors("version: 1\nrules:\n  - id: r\n    open: {path: \"etc/x\"}\n    decision: block\n    reason: x\n");
    assert!(
        e[0].starts_with("t.yaml:4:18: rule 'r': path pattern 'etc/x' is relative"),
        "{e:?}"
    );
}

#[test]
fn failing_examples_are_load_errors_at_the_example() {
    let text = r#"version: 1
rules:
  - id: rf
    exec:
      name: rm
      flags: ["r", "f"]
    decision: block
    reason: no
    examples:
      match:
        - exec: rm -rf /
        - exec: rm -r /
      no_match:
        - exec: rm x
        - exec: [rm, -f, -r]
"#;
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:12:11: rule 'rf': example should match the rule but does not: flags: 'r' given as -r, 'f' not given"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.yaml:15:11: rule 'rf': example should not match the rule but does"),
        "{e:?}"
    );
}

#[test]
fn non_utf8_paths_and_argv_cannot_escape_block_rules() {
    let p = shipped("default.yaml");
    let bad = |prefix: &[u8], suffix: &[u8]| {
        let mut v = prefix.to_vec();
        v.extend_from_slice(&[0xff, 0xfe]);
        v.extend_from_slice(suffix);
        PathBuf::from(OsString::from_vec(v))
    };
    let key = Action::Open(OpenAction {
        op: crate::action::FileOp::Open,
        detail: None,
        path: bad(b"/home/u/.ssh/id_", b""),
        access: Access::READ,
        cwd: PathBuf::from("/"),
        process: None,
    });
    assert_eq!(verdict(&p, &key), Verdict::Block);
    let write = Action::Open(OpenAction {
        op: crate::action::FileOp::Open,
        detail: None,
        path: bad(b"/etc/", b".conf"),
        access: Access::WRITE,
        cwd: PathBuf::from("/"),
        process: None,
    });
    assert_eq!(verdict(&p, &write), Verdict::Block);
    let rm = Action::Exec(ExecAction {
        path: PathBuf::from("/usr/bin/rm"),
        argv: vec![
            OsString::from("rm"),
            OsString::from("-rf"),
            bad(b"/", b"").into_os_string(),
        ],
        cwd: bad(b"/home/u/", b""),
        sha256: None,
    });
    assert_eq!(verdict(&p, &rm), Verdict::Block);
    // A non-UTF-8 flag cluster still counts its letters.
    let rm2 = Action::Exec(ExecAction {
        path: PathBuf::from("/usr/bin/rm"),
        argv: vec![
            OsString::from("rm"),
            OsString::from_vec(b"-r\xfff".to_vec()),
            OsString::from("/"),
        ],
        cwd: PathBuf::from("/"),
        sha256: None,
    });
    assert_eq!(verdict(&p, &rm2), Verdict::Block);
    // Inside the workspace it stays allowed.
    let ok = Action::Open(OpenAction {
        op: crate::action::FileOp::Open,
        detail: None,
        path: bad(b"/home/u/ws/", b".txt"),
        access: Access::WRITE | Access::CREATE,
        cwd: PathBuf::from("/"),
        process: None,
    });
    assert_eq!(verdict(&p, &ok), Verdict::Allow);
    let _ = ok_bytes(&ok);
}

fn ok_bytes(a: &Action) -> usize {
    match a {
        Action::Open(o) => o.path.as_os_str().as_bytes().len(),
        Action::Exec(e) => e.path.as_os_str().as_bytes().len(),
        Action::Connect(_) | Action::Tool(_) => 0,
    }
}

#[test]
fn policy_hash_covers_text_and_variables() {
    let text = "version: 1\nrules: []\n";
    let a = load(text);
    let b = load("version: 1\nrules: []\n# comment\n");
    assert_ne!(a.sha256(), b.sha256());
    let mut v = vars();
    v.workspace = PathBuf::from("/other");
    let c = Policy::from_str(text, "t.yaml", &v).unwrap();
    assert_ne!(a.sha256(), c.sha256());
    assert_eq!(a.sha256(), load(text).sha256());
    // Known answer: the documented construction.
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"lexecon-policy-v1\0");
    for part in [text.as_bytes(), b"/home/u", b"/home/u/ws", b"/tmp"] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(a.sha256(), want);
}

#[test]
fn vars_are_normalised() {
    let v = Vars {
        home: PathBuf::from("/home/u/"),
        workspace: PathBuf::from("/home/u/ws/./x/.."),
        tmpdir: PathBuf::from("//tmp"),
    };
    assert_eq!(v.normalised(), vars());
    let p = Policy::from_str("version: 1\nrules: []\n", "t", &v).unwrap();
    assert_eq!(p.vars(), &vars());
}

#[test]
fn shipped_observe_and_ci_keep_the_default_rules() {
    let default: Vec<String> = shipped("default.yaml")
        .rule_ids()
        .map(str::to_owned)
        .collect();
    let observe: Vec<String> = shipped("observe.yaml")
        .rule_ids()
        .map(str::to_owned)
        .collect();
    assert_eq!(default, observe);
    assert_eq!(shipped("observe.yaml").mode(), Mode::Observe);
    let ci = shipped("ci.yaml");
    assert_eq!(ci.rule_ids().count(), default.len());
    for a in [
        exec(&["curl", "https://example.com"]),
        exec(&["npm", "publish"]),
        open("/home/u/.cache/x", Access::WRITE),
    ] {
        assert_eq!(verdict(&ci, &a), Verdict::Block, "{a:?}");
    }
    assert_eq!(
        verdict(
            &shipped("default.yaml"),
            &exec(&["curl", "https://example.com"])
        ),
        Verdict::Escalate
    );
}

#[test]
fn examples_do_not_depend_on_where_the_policy_is_loaded() {
    for ws in ["/", "/usr", "/tmp/w", "/home/u"] {
        let v = Vars {
            home: PathBuf::from("/home/u"),
            workspace: PathBuf::from(ws),
            tmpdir: PathBuf::from("/tmp"),
        };
        for name in ["default.yaml", "ci.yaml", "observe.yaml", "demo.yaml"] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("policies")
                .join(name);
            if let Err(e) = Policy::from_file(&path, &v) {
                panic!("{name} with WORKSPACE={ws}:\n{e}");
            }
        }
    }
    // The rules themselves use the real values.
    let v = Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/"),
        tmpdir: PathBuf::from("/tmp"),
    };
    let p = Policy::from_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/default.yaml"),
        &v,
    )
    .unwrap();
    assert_eq!(verdict(&p, &open("/etc/x", Access::WRITE)), Verdict::Allow);
    assert_eq!(
        verdict(&p, &exec_in("/", &["rm", "-rf", "/"])),
        Verdict::Block
    );
}

#[test]
fn policy_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<PolicyErrors>();
}

#[test]
fn malformed_examples_are_errors() {
    let text = r#"version: 1
rules:
  - id: r
    open: {path: "/x"}
    decision: block
    reason: t
    examples:
      match:
        - exec: rm -rf /
        - {open: /x, access: [wrte]}
        - {open: "${NOPE}/x"}
      maybe:
        - open: /x
"#;
    let e = errors(text);
    assert!(
        e.iter()
            .any(|x| x
                .starts_with("t.yaml:9:11: rule 'r': an example of an open rule needs `open:`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x
                .starts_with("t.yaml:9:11: rule 'r': `exec` belongs to examples of exec rules")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("t.yaml:10:31: rule 'r': unknown access 'wrte'")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("t.yaml:11:18: rule 'r': unknown variable '${NOPE}'")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("t.yaml:12:7: rule 'r': unknown key 'maybe' in examples")),
        "{e:?}"
    );
}

#[test]
fn errors_inside_and_beside_unless_are_all_reported() {
    let e = errors(
        "version: 1\nrules:\n  - id: r\n    open:\n      path: \"/a**\"\n      unless:\n        path: \"rel\"\n        unless: {}\n    decision: block\n    reason: x\n",
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("t.yaml:5:13: rule 'r': bad pattern in path")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with("t.yaml:7:15: rule 'r': path pattern 'rel' is relative")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|x| x.starts_with(
            "t.yaml:8:9: rule 'r': unknown key 'unless' in `open` conditions under `unless`"
        )),
        "{e:?}"
    );
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn policy_tests_check_the_whole_decision() {
    let ok = format!(
        "{PRECEDENCE}tests:\n  - {{exec: git push -f, expect: block, rule: block-force}}\n  - {{exec: ls, expect: escalate, rule: default}}\n  - {{open: /x, expect: block}}\n"
    );
    let p = load(&ok);
    assert_eq!(p.example_count(), 3);
    let bad = format!(
        "{PRECEDENCE}tests:\n  - {{exec: git push -f, expect: escalate}}\n  - {{exec: git push, expect: escalate, rule: escalate-push-again}}\n  - {{exec: ls, expect: escalate, rule: nope}}\n  - {{exec: ls}}\n  - {{exec: ls, open: /x, expect: allow}}\n  - {{exec: ls, expect: escalate, acces: [read]}}\n"
    );
    let e = errors(&bad);
    let want = [
        "t.yaml:27:5: test expects escalate, but the decision is block by block-force (matched: allow-git, escalate-push, block-force, escalate-push-again)",
        "t.yaml:28:5: test expects escalate by escalate-push-again, but the decision is escalate by escalate-push",
        "t.yaml:29:40: no rule has the id 'nope'",
        "t.yaml:30:5: a test needs `expect:`",
        "t.yaml:31:5: a test needs exactly one of `exec:`, `open:`, `connect:` and `tool:`",
        "t.yaml:32:34: unknown key 'acces' in a test (did you mean 'access'?",
    ];
    for w in want {
        assert!(
            e.iter().any(|x| x.starts_with(w)),
            "missing {w:?} in\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), want.len(), "{}", e.join("\n"));
    let e = errors("version: 1\nrules: []\ntests: {a: 1}\n");
    assert!(
        e[0].starts_with("t.yaml:3:8: 'tests' must be a list"),
        "{e:?}"
    );
}

#[test]
fn literal_programs_lists_wildcard_free_program_paths_once() {
    let text = "version: 1\nrules:\n  - id: a\n    exec:\n      program: [\"/usr/bin/rm\", \"/opt/*/bin/x\", \"${HOME}/bin/tool\"]\n    decision: block\n    reason: r\n  - id: b\n    exec:\n      program: /usr/bin/rm\n      unless:\n        program: /usr/bin/true\n    decision: block\n    reason: r\n";
    let vars = Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/w"),
        tmpdir: PathBuf::from("/tmp"),
    };
    let p = Policy::from_str(text, "t.yaml", &vars).unwrap();
    let got: Vec<String> = p
        .literal_programs()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(got, ["/usr/bin/rm", "/home/u/bin/tool", "/usr/bin/true"]);
}

#[test]
fn timeout_seconds_is_validated_and_only_for_escalations() {
    let vars = Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/w"),
        tmpdir: PathBuf::from("/tmp"),
    };
    let rule = |decision: &str, t: &str| {
        format!("version: 1\nrules:\n  - id: r\n    exec:\n      name: curl\n    decision: {decision}\n    reason: ask\n    timeout_seconds: {t}\n")
    };
    let p = Policy::from_str(&rule("escalate", "30"), "t.yaml", &vars).unwrap();
    assert_eq!(
        p.escalate_timeout("r"),
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(p.escalate_timeout("other"), None);
    for bad in ["0", "-5", "1.5", "soon", "86401"] {
        let e = Policy::from_str(&rule("escalate", bad), "t.yaml", &vars).unwrap_err();
        assert!(e.to_string().contains("t.yaml:8:"), "{bad}: {e}");
        assert!(e.to_string().contains("timeout_seconds"), "{bad}: {e}");
    }
    let e = Policy::from_str(&rule("block", "30"), "t.yaml", &vars).unwrap_err();
    assert!(
        e.to_string()
            .contains("only applies to `decision: escalate`"),
        "{e}"
    );
}

// ------------------------------------------------------ environment variables

type EnvPairs<'a> = &'a [(&'a str, &'a str)];

fn load_env(text: &str, env: EnvPairs) -> Result<Policy, Vec<String>> {
    Policy::from_str_with_env(text, "t.yaml", &vars(), &Env::fixed(env.iter().copied()))
        .map_err(|e| e.iter().map(ToString::to_string).collect())
}

const CARGO_BIN_BLOCK: &str = "version: 1\nrules:\n  - id: r\n    open:\n      path: \"${env.CARGO_HOME:-${HOME}/.cargo}/bin/**\"\n      access: [write]\n    decision: block\n    reason: t\n";

#[test]
fn env_reference_uses_the_value_when_set_and_the_default_when_unset_or_empty() {
    let set = load_env(CARGO_BIN_BLOCK, &[("CARGO_HOME", "/usr/local/cargo")]).unwrap();
    assert_eq!(
        verdict(&set, &open("/usr/local/cargo/bin/git", Access::WRITE)),
        Verdict::Block
    );
    assert_eq!(
        verdict(&set, &open("/home/u/.cargo/bin/git", Access::WRITE)),
        Verdict::Allow
    );
    assert_eq!(
        set.env_vars().get("CARGO_HOME").map(String::as_str),
        Some("/usr/local/cargo")
    );
    for env in [&[][..], &[("CARGO_HOME", "")][..], &[("OTHER", "/x")][..]] {
        let p = load_env(CARGO_BIN_BLOCK, env).unwrap();
        // Fail closed: the rule neither vanishes nor widens to everything.
        assert_eq!(
            verdict(&p, &open("/home/u/.cargo/bin/git", Access::WRITE)),
            Verdict::Block,
            "{env:?}"
        );
        for other in [
            "/bin/x",
            "/home/u/bin/x",
            "/usr/local/cargo/bin/x",
            "/home/u/ws/bin/x",
        ] {
            assert_eq!(
                verdict(&p, &open(other, Access::WRITE)),
                Verdict::Allow,
                "{env:?} {other}"
            );
        }
        assert_eq!(
            p.env_vars().get("CARGO_HOME").map(String::as_str),
            Some("/home/u/.cargo")
        );
    }
    // Values are paths: normalised, relative ones taken against the workspace,
    // inserted literally (a `*` in the value is not a wildcard).
    let p = load_env(CARGO_BIN_BLOCK, &[("CARGO_HOME", "/opt//c*rgo/")]).unwrap();
    assert_eq!(
        verdict(&p, &open("/opt/c*rgo/bin/x", Access::WRITE)),
        Verdict::Block
    );
    assert_eq!(
        verdict(&p, &open("/opt/cargo/bin/x", Access::WRITE)),
        Verdict::Allow
    );
    let p = load_env(CARGO_BIN_BLOCK, &[("CARGO_HOME", ".cargo")]).unwrap();
    assert_eq!(
        verdict(&p, &open("/home/u/ws/.cargo/bin/x", Access::WRITE)),
        Verdict::Block
    );
}

#[test]
fn env_defaults_nest_and_work_in_every_kind_of_pattern() {
    let text = "version: 1\nrules:\n  - id: r\n    open:\n      path: \"${env.GOCACHE:-${env.XDG_CACHE_HOME:-${HOME}/.cache}/go-build}/**\"\n    decision: block\n    reason: t\n  - id: e\n    exec:\n      program: \"${env.CARGO_HOME:-${HOME}/.cargo}/bin/*\"\n      argv_regex: 'x ${env.CARGO_HOME:-${HOME}/.cargo}$'\n    decision: block\n    reason: t\n";
    let cases: [(EnvPairs, &str); 3] = [
        (&[], "/home/u/.cache/go-build/a"),
        (&[("XDG_CACHE_HOME", "/c")], "/c/go-build/a"),
        (&[("XDG_CACHE_HOME", "/c"), ("GOCACHE", "/g")], "/g/a"),
    ];
    for (env, path) in cases {
        let p = load_env(text, env).unwrap();
        assert_eq!(
            verdict(&p, &open(path, Access::READ)),
            Verdict::Block,
            "{env:?}"
        );
        assert_eq!(
            verdict(&p, &open("/home/u/.cache/x", Access::READ)),
            Verdict::Allow
        );
    }
    let p = load_env(text, &[("CARGO_HOME", "/a.b")]).unwrap();
    assert_eq!(verdict(&p, &exec(&["/a.b/bin/x", "/a.b"])), Verdict::Block);
    // The value is escaped in the regular expression: `.` is literal.
    assert_eq!(verdict(&p, &exec(&["/a.b/bin/x", "/axb"])), Verdict::Allow);
}

#[test]
fn env_references_that_could_leave_a_pattern_undefined_are_errors() {
    let rule = |path: &str| {
        format!("version: 1\nrules:\n  - id: r\n    open:\n      path: \"{path}\"\n    decision: block\n    reason: t\n")
    };
    let cases: [(&str, EnvPairs, &str); 7] = [
        (
            "${env.CARGO_HOME}/bin/**",
            &[("CARGO_HOME", "/c")],
            "has no default",
        ),
        ("${env.CARGO_HOME:-}/bin/**", &[], "has no default"),
        (
            "${env.1X:-/a}/**",
            &[],
            "is not an environment variable name",
        ),
        ("${env.X:-relative}/**", &[], "not an absolute path"),
        (
            "${env.X:-/a}/**",
            &[("X", "/")],
            "would cover the whole filesystem",
        ),
        ("${env.X:-/}/**", &[], "would cover the whole filesystem"),
        ("${env.X:-${HOME}/**", &[], "unclosed variable reference"),
    ];
    for (path, env, want) in cases {
        let e = load_env(&rule(path), env)
            .err()
            .unwrap_or_else(|| panic!("{path} should fail"));
        assert!(
            e.len() == 1
                && e[0].starts_with("t.yaml:5:13: rule 'r': bad pattern in path:")
                && e[0].contains(want),
            "{path}: {e:?}"
        );
    }
    let e = Policy::from_str_with_env(
        &rule("${env.X:-/a}/**"),
        "t.yaml",
        &vars(),
        &Env::fixed([("X", OsString::from_vec(b"/\xff".to_vec()))]),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
}

#[test]
fn examples_and_tests_see_env_defaults_whatever_the_environment() {
    let text = "version: 1\nrules:\n  - id: r\n    open:\n      path: \"${env.CARGO_HOME:-${HOME}/.cargo}/bin/**\"\n    decision: block\n    reason: t\n    examples:\n      match:\n        - open: ${env.CARGO_HOME:-${HOME}/.cargo}/bin/x\n        - open: /home/user/.cargo/bin/x\n      no_match:\n        - open: /elsewhere/bin/x\ntests:\n  - {open: /home/user/.cargo/bin/git, expect: block}\n  - {open: /elsewhere/bin/git, expect: allow}\n";
    for v in [vars(), super::compile::example_vars()] {
        let p = Policy::from_str_with_env(
            text,
            "t.yaml",
            &v,
            &Env::fixed([("CARGO_HOME", "/elsewhere")]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.example_count(), 5);
        // The rules use the real value.
        assert_eq!(
            verdict(&p, &open("/elsewhere/bin/git", Access::READ)),
            Verdict::Block
        );
    }
}

#[test]
fn policy_hash_covers_env_values_and_is_unchanged_without_env_references() {
    let a = load_env(CARGO_BIN_BLOCK, &[]).unwrap();
    let b = load_env(CARGO_BIN_BLOCK, &[("CARGO_HOME", "/usr/local/cargo")]).unwrap();
    let c = load_env(CARGO_BIN_BLOCK, &[("CARGO_HOME", "/home/u/.cargo")]).unwrap();
    assert_ne!(a.sha256(), b.sha256());
    // Same rules, same hash: the value, not whether it was set, is covered.
    assert_eq!(a.sha256(), c.sha256());
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"lexecon-policy-v1\0");
    for part in [
        CARGO_BIN_BLOCK.as_bytes(),
        b"/home/u",
        b"/home/u/ws",
        b"/tmp",
        b"env.CARGO_HOME",
        b"/usr/local/cargo",
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(b.sha256(), want);
    let plain = "version: 1\nrules: []\n";
    assert_eq!(
        load_env(plain, &[("CARGO_HOME", "/x")]).unwrap().sha256(),
        load(plain).sha256()
    );
}

fn open_by(path: &str, access: Access, process: Option<crate::action::ProcessInfo>) -> Action {
    Action::Open(OpenAction {
        op: crate::action::FileOp::Open,
        detail: None,
        path: PathBuf::from(path),
        access,
        cwd: PathBuf::from("/home/u/ws"),
        process,
    })
}

fn proc_info(program: &str, sha256: Option<[u8; 32]>) -> crate::action::ProcessInfo {
    crate::action::ProcessInfo {
        program: PathBuf::from(program),
        sha256,
        file: Some((1, 2)),
        injected: None,
    }
}

const SSH_KEYS: &str = r#"
version: 1
rules:
  - id: block-ssh-keys
    open:
      path: ["${HOME}/.ssh/**"]
      unless:
        process:
          program: ["/usr/bin/ssh", "/usr/bin/scp"]
    decision: block
    reason: keys are for ssh
  - id: allow-token-to-tool
    open:
      path: "/srv/token"
      process: {program: "/opt/tool/bin/*", sha256: ["1111111111111111111111111111111111111111111111111111111111111111"]}
    decision: allow
    reason: the tool reads its token
  - id: block-token
    open:
      path: "/srv/token"
      unless:
        process: {name: tool}
    decision: escalate
    reason: others ask
"#;

#[test]
fn process_program_condition_matches_the_confirmed_program_only() {
    let p = load(SSH_KEYS);
    let key = "/home/u/.ssh/id_ed25519";
    let by = |prog: &str| p.decide(&open_by(key, Access::READ, Some(proc_info(prog, None))));
    assert_eq!(by("/usr/bin/ssh").verdict, Verdict::Allow);
    assert_eq!(by("/usr/bin/scp").verdict, Verdict::Allow);
    // Another program, a copy elsewhere, a name that only looks the same.
    for other in [
        "/usr/bin/cat",
        "/tmp/ssh",
        "/home/u/ws/usr/bin/ssh",
        "/usr/bin/ssh2",
    ] {
        let d = by(other);
        assert_eq!(d.verdict, Verdict::Block, "{other}");
        assert_eq!(d.rule.as_deref(), Some("block-ssh-keys"));
    }
}

#[test]
fn unknown_or_injected_caller_never_helps_the_tree() {
    let p = load(SSH_KEYS);
    let key = "/home/u/.ssh/id_ed25519";
    // Not known: the block rule's exception does not apply.
    assert_eq!(
        p.decide(&open_by(key, Access::READ, None)).verdict,
        Verdict::Block
    );
    // ssh with LD_PRELOAD: its identity says nothing about the code in it.
    let mut injected = proc_info("/usr/bin/ssh", None);
    injected.injected = Some("LD_PRELOAD".into());
    let d = p.decide(&open_by(key, Access::READ, Some(injected.clone())));
    assert_eq!(d.verdict, Verdict::Block);
    let e = p.explain(&open_by(key, Access::READ, Some(injected)));
    let detail = format!("{:?}", e.matched);
    assert!(detail.contains("LD_PRELOAD"), "{detail}");
    // An allow rule with a process condition does not match an unknown
    // caller; with a known one it needs every sub-condition.
    let h = [0x11u8; 32];
    let tok =
        |i: Option<crate::action::ProcessInfo>| p.decide(&open_by("/srv/token", Access::READ, i));
    assert_eq!(
        tok(Some(proc_info("/opt/tool/bin/tool", Some(h)))).verdict,
        Verdict::Allow
    );
    // Same path, other content; same path, hash not known; unknown caller:
    // the escalate rule's `name` exception does not apply to the unknown
    // one, and applies to the others.
    let d = tok(Some(proc_info("/opt/tool/bin/tool", Some([0x22; 32]))));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.rule, None);
    assert_eq!(tok(Some(proc_info("/opt/tool/bin/tool", None))).rule, None);
    assert_eq!(tok(None).verdict, Verdict::Escalate);
    assert_eq!(
        tok(Some(proc_info("/usr/bin/python3", Some(h)))).verdict,
        Verdict::Escalate
    );
}

#[test]
fn process_sha256_lets_a_copy_in_by_its_content() {
    let h = [0xabu8; 32];
    let p = load(&format!(
        r#"
version: 1
rules:
  - id: block-secret
    open:
      path: "/srv/secret"
      unless:
        process: {{sha256: ["{}"]}}
    decision: block
    reason: only the reader
"#,
        hex::encode(h)
    ));
    let by = |i| p.decide(&open_by("/srv/secret", Access::READ, i)).verdict;
    assert_eq!(
        by(Some(proc_info("/tmp/any/name", Some(h)))),
        Verdict::Allow
    );
    assert_eq!(
        by(Some(proc_info("/tmp/any/name", Some([0; 32])))),
        Verdict::Block
    );
    assert_eq!(by(Some(proc_info("/tmp/any/name", None))), Verdict::Block);
    assert_eq!(by(None), Verdict::Block);
}

#[test]
fn process_conditions_are_validated_and_examples_can_name_the_caller() {
    let bad = |conds: &str| {
        errors(&format!(
            "version: 1\nrules:\n  - id: r\n    open:\n      path: /x\n      process: {conds}\n    decision: allow\n    reason: r\n"
        ))
        .join("\n")
    };
    assert!(
        bad("{}").contains("`process` has no condition"),
        "{}",
        bad("{}")
    );
    assert!(bad("{programm: /usr/bin/ssh}").contains("did you mean 'program'"));
    assert!(bad("{program: ssh}").contains("relative"));
    assert!(bad("{name: bin/ssh}").contains("contains '/'"));
    assert!(bad("{sha256: [abc]}").contains("not a SHA-256 digest"));
    assert!(bad("/usr/bin/ssh").contains("must be a mapping"));
    // `process` is a condition of open rules only.
    let e = errors(
        "version: 1\nrules:\n  - id: r\n    exec:\n      process: {program: /x}\n    decision: block\n    reason: r\n",
    )
    .join("\n");
    assert!(e.contains("unknown key 'process'"), "{e}");
    // Examples and tests name the caller by path or mapping; an example
    // that fails reports the process condition.
    let e = errors(
        r#"
version: 1
rules:
  - id: r
    open:
      path: /x
      unless: {process: {program: /usr/bin/ssh}}
    decision: block
    reason: r
    examples:
      match:
        - {open: /x, process: /usr/bin/ssh}
"#,
    )
    .join("\n");
    assert!(e.contains("process.program"), "{e}");
    let p = load(
        r#"
version: 1
rules:
  - id: r
    open:
      path: /x
      unless: {process: {program: /usr/bin/ssh}}
    decision: block
    reason: r
    examples:
      match:
        - open: /x
        - {open: /x, process: /usr/bin/cat}
        - {open: /x, process: {program: /usr/bin/ssh, injected: LD_PRELOAD}}
      no_match:
        - {open: /x, process: /usr/bin/ssh}
        - {open: /x, process: {program: /usr/bin/ssh, sha256: "0000000000000000000000000000000000000000000000000000000000000000"}}
tests:
  - {open: /x, process: /usr/bin/ssh, expect: allow, rule: default}
  - {open: /x, expect: block, rule: r}
"#,
    );
    assert_eq!(p.example_count(), 7);
    let e = errors(
        "version: 1\nrules:\n  - id: r\n    exec: {name: x}\n    decision: block\n    reason: r\n    examples:\n      match:\n        - {exec: x, process: /usr/bin/x}\n",
    )
    .join("\n");
    assert!(
        e.contains("`process` belongs to examples of open rules"),
        "{e}"
    );
    let e = errors(
        "version: 1\nrules:\n  - id: r\n    open: {path: /x}\n    decision: block\n    reason: r\n    examples:\n      match:\n        - {open: /x, process: ssh}\n        - {open: /x, process: {sha256: abc}}\n",
    )
    .join("\n");
    assert!(e.contains("not an absolute path"), "{e}");
    assert!(e.contains("needs `program:`"), "{e}");
}

/// Moving or removing a directory takes everything beneath it along: a
/// block on paths below refuses it, at any depth, decided from the globs.
#[test]
fn moving_a_directory_is_judged_for_everything_beneath_it() {
    let p = load(
        "version: 1\ndefaults: {exec: allow, open: allow}\nrules:\n  - id: secret\n    open:\n      path: [\"/srv/data/secret/**\", \"/opt/*/keys/**\"]\n      access: [write, create, truncate]\n    decision: block\n    reason: r\n",
    );
    let moved = |path: &str| open(path, Access::READ | Access::WRITE | Access::DIRECTORY);
    for dir in [
        "/srv/data/secret",
        "/srv/data",
        "/srv",
        "/",
        "/opt",
        "/opt/app/keys",
    ] {
        assert_eq!(verdict(&p, &moved(dir)), Verdict::Block, "{dir}");
    }
    // `/opt/*/keys/**` matches /opt/app/keys at any new /opt/NAME: a move of
    // /opt/app is judged on its own path (see docs/policy.md).
    for dir in [
        "/srv/other",
        "/srv/data/public",
        "/opt/app/bin",
        "/home",
        "/opt/app",
    ] {
        assert_eq!(verdict(&p, &moved(dir)), Verdict::Allow, "{dir}");
    }
    // An rmdir (empty directories only) or a plain directory open is not a
    // move.
    assert_eq!(
        verdict(&p, &open("/srv/data", Access::WRITE | Access::DIRECTORY)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &open("/srv/data", Access::READ | Access::DIRECTORY)),
        Verdict::Allow
    );
    // Patterns that match anywhere never make a move of an unrelated
    // directory a match.
    let p = load(
        "version: 1\ndefaults: {exec: allow, open: allow}\nrules:\n  - id: hooks\n    open:\n      path: [\"**/.git/hooks/**\", \"/**/secret.txt\"]\n      access: [write]\n    decision: block\n    reason: r\n",
    );
    assert_eq!(verdict(&p, &moved("/home/u/ws/vendor/lib")), Verdict::Allow);
    // An allow rule does not allow a move because something beneath it
    // would be allowed.
    let p = load(
        "version: 1\ndefaults: {exec: allow, open: block}\nrules:\n  - id: build\n    open:\n      path: [\"/w/build/**\"]\n    decision: allow\n    reason: r\n",
    );
    assert_eq!(verdict(&p, &moved("/w")), Verdict::Block);
    assert_eq!(verdict(&p, &moved("/w/build/x")), Verdict::Allow);
}

fn op_open(path: &str, access: Access, op: crate::action::FileOp) -> Action {
    let mut a = open(path, access);
    if let Action::Open(o) = &mut a {
        o.op = op;
    }
    a
}

#[test]
fn op_limits_an_open_rule_to_the_operations_it_names() {
    use crate::action::FileOp;
    let p = load(
        r#"version: 1
defaults: {exec: allow, open: allow}
rules:
  - id: no-delete-in-data
    open:
      path: ["/srv/data/**"]
      op: [delete, rename]
    decision: block
    reason: data may be written, never removed
    examples:
      match:
        - {open: /srv/data/a, access: [write, truncate], op: delete}
      no_match:
        - {open: /srv/data/a, access: [write, truncate]}
  - id: no-chmod-in-ws
    open:
      op: chmod
      path: ["${WORKSPACE}/**"]
      unless:
        op: [chmod]
        path: ["${WORKSPACE}/bin/**"]
    decision: escalate
    reason: modes in the workspace are a question
tests:
  - {open: /srv/data/a, access: [write], op: truncate, expect: allow}
  - {open: /srv/data/a, access: [read, write], op: rename, expect: block, rule: no-delete-in-data}
  - {open: "${WORKSPACE}/x", access: [write], op: chmod, expect: escalate}
  - {open: "${WORKSPACE}/bin/x", access: [write], op: chmod, expect: allow}
"#,
    );
    let d = |path: &str, access: Access, op: FileOp| p.decide(&op_open(path, access, op)).verdict;
    let w = Access::WRITE | Access::TRUNCATE;
    assert_eq!(d("/srv/data/a", w, FileOp::Delete), Verdict::Block);
    assert_eq!(d("/srv/data/a", w, FileOp::Open), Verdict::Allow);
    assert_eq!(d("/srv/data/a", w, FileOp::Truncate), Verdict::Allow);
    assert_eq!(
        d("/home/u/ws/a", Access::WRITE, FileOp::Chmod),
        Verdict::Escalate
    );
    assert_eq!(
        d("/home/u/ws/a", Access::WRITE, FileOp::Chown),
        Verdict::Allow
    );
    assert_eq!(
        d("/home/u/ws/bin/a", Access::WRITE, FileOp::Chmod),
        Verdict::Allow
    );
    // A failing example names the operation.
    let e = errors(
        r#"version: 1
rules:
  - id: r
    open:
      op: [delete, rename]
    decision: block
    reason: x
    examples:
      match:
        - {open: /srv/data/a, access: [write]}
"#,
    );
    assert!(
        e.iter()
            .any(|m| m.contains("op: operation 'open' is none of [delete,rename]")),
        "{e:?}"
    );
}

#[test]
fn connect_rules_hosts_addresses_ports_and_unknown_names() {
    use crate::action::{ConnectAction, NetFamily, NetOp, NetTarget, Protocol};
    let p = load(
        r#"version: 1
defaults: {connect: escalate}
rules:
  - id: lo
    connect: {address: [127.0.0.0/8, "::1"]}
    decision: allow
    reason: loopback
  - id: pypi
    connect: {host: [pypi.org, "*.pythonhosted.org"], port: [443, 8000-8001], protocol: tcp}
    decision: allow
    reason: registry
  - id: evil
    connect: {host: "*.evil.example"}
    decision: block
    reason: exfil
"#,
    );
    let ip = |a: &str, port: u16, names: &[&str]| {
        Action::Connect(ConnectAction {
            op: NetOp::Connect,
            protocol: Protocol::Tcp,
            target: NetTarget::Ip {
                family: NetFamily::Inet6,
                addr: crate::policy::net::canonical(a.parse().unwrap()),
                port,
            },
            names: names.iter().map(|s| s.to_string()).collect(),
            process: None,
        })
    };
    assert_eq!(
        verdict(&p, &ip("::ffff:127.0.0.1", 80, &[])),
        Verdict::Allow
    );
    assert_eq!(verdict(&p, &ip("::1", 80, &[])), Verdict::Allow);
    assert_eq!(
        verdict(&p, &ip("203.0.113.9", 443, &["pypi.org"])),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &ip("203.0.113.9", 8001, &["pypi.org"])),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &ip("203.0.113.9", 22, &["pypi.org"])),
        Verdict::Escalate
    );
    // An address no name was seen for: the host rule does not match.
    assert_eq!(verdict(&p, &ip("203.0.113.9", 443, &[])), Verdict::Escalate);
    // Shared by an allowed and a forbidden name: block wins.
    assert_eq!(
        verdict(&p, &ip("203.0.113.9", 443, &["a.evil.example", "pypi.org"])),
        Verdict::Block
    );
    let resolve = |n: &str| {
        Action::Connect(ConnectAction {
            op: NetOp::Resolve,
            protocol: Protocol::Udp,
            target: NetTarget::Name(n.into()),
            names: Vec::new(),
            process: None,
        })
    };
    assert_eq!(verdict(&p, &resolve("x.evil.example")), Verdict::Block);
    let ssh = load(
        "version: 1\ndefaults: {connect: allow}\nrules:\n  - id: no-ssh\n    connect: {host: pypi.org, port: 22}\n    decision: block\n    reason: r\n",
    );
    // Blocking one port of a host does not block resolving it.
    assert_eq!(verdict(&ssh, &resolve("pypi.org")), Verdict::Allow);
    assert_eq!(
        verdict(&ssh, &ip("203.0.113.9", 22, &["pypi.org"])),
        Verdict::Block
    );
    // A name no rule allows gets the connect default: the query itself
    // carries the name out.
    assert_eq!(verdict(&p, &resolve("unknown.example")), Verdict::Escalate);
    let open = load("version: 1\ndefaults: {connect: allow}\nrules: []\n");
    assert_eq!(verdict(&open, &resolve("unknown.example")), Verdict::Allow);
    let strict = load("version: 1\ndefaults: {connect: block}\nrules: []\n");
    assert_eq!(
        verdict(&strict, &resolve("unknown.example")),
        Verdict::Block
    );
}

#[test]
fn a_rule_without_op_judges_every_operation_by_its_access() {
    use crate::action::FileOp;
    let p = load(
        r#"version: 1
defaults: {exec: allow, open: allow}
rules:
  - id: ro
    open:
      path: ["/etc/**"]
      access: [write]
    decision: block
    reason: read-only
"#,
    );
    for op in FileOp::ALL {
        for access in [
            Access::READ,
            Access::WRITE,
            Access::CREATE | Access::DIRECTORY,
        ] {
            assert_eq!(
                p.decide(&op_open("/etc/x", access, op)),
                p.decide(&open("/etc/x", access)),
                "{op} {access}"
            );
        }
    }
}

#[test]
fn unknown_operations_are_refused_with_the_list() {
    let e = errors(
        r#"version: 1
rules:
  - id: r
    open:
      op: [unlink]
    decision: block
    reason: x
"#,
    );
    assert!(
        e.iter()
            .any(|m| m.contains("unknown operation 'unlink'") && m.contains("delete, rename")),
        "{e:?}"
    );
    let e = errors(
        r#"version: 1
rules:
  - id: r
    exec:
      name: rm
    decision: block
    reason: x
    examples:
      match:
        - {exec: rm -rf /, op: delete}
"#,
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`op` belongs to examples of open rules")),
        "{e:?}"
    );
    let e = errors(
        r#"version: 1
rules:
  - id: r
    exec:
      name: rm
      op: [delete]
    decision: block
    reason: x
"#,
    );
    assert!(e.iter().any(|m| m.contains("unknown key 'op'")), "{e:?}");
}

#[test]
fn connect_rule_errors_are_located() {
    for (text, want) in [
        ("connect: {host: 10.0.0.1}", "not a host name pattern"),
        ("connect: {address: pypi.org}", "not an address or CIDR"),
        ("connect: {port: 70000}", "not a port"),
        ("connect: {protocol: sctp}", "unknown protocol"),
        ("connect: {op: accept}", "unknown op"),
        ("connect: {hosts: x}", "unknown"),
    ] {
        let y = format!(
            "version: 1\nrules:\n  - id: r\n    {text}\n    decision: block\n    reason: r\n"
        );
        let e = Policy::from_str(&y, "t.yaml", &vars())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn rule_ids_of_built_in_rules_are_reserved() {
    let text = "version: 1\nrules:\n  - id: lexecon.self-protect.keys\n    exec: {}\n    decision: allow\n    reason: r\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:3:9: rule id 'lexecon.self-protect.keys' begins with 'lexecon.'"),
        "{e:?}"
    );
}

/// Loading as before (every rule compiled again in the pass that runs the
/// examples, every glob matched by its automaton) and as now give the same
/// result: the same errors (text and location) or a policy with the same
/// hash, number of examples checked and decisions, on the shipped
/// policies, on a policy with generated rules, and on many mutations of
/// them, with variables that differ from the examples' (two passes) and
/// with the examples' own (one pass), with and without an environment.
mod load_as_before {
    use super::*;
    use crate::policy::compile::REFERENCE_LOAD;

    type Outcome = Result<(usize, [u8; 32], Vec<String>), Vec<String>>;

    fn actions(home: &str) -> Vec<Action> {
        let ws = format!("{home}/ws");
        let w = Access::WRITE | Access::CREATE | Access::TRUNCATE;
        let mut v = vec![
            exec(&["ls", "-la"]),
            exec(&["git", "push", "origin", "main"]),
            exec(&["git", "push", "--force"]),
            exec(&["rm", "-rf", "/"]),
            exec(&["rm", "-rf", "./build"]),
            exec(&["rm", "-rf", home]),
            exec(&["sudo", "ls"]),
            exec(&["curl", "-fsSL", "https://example.com"]),
            exec(&["cargo", "install", "ripgrep"]),
            exec(&["pip", "install", "--user", "x"]),
            exec(&["sh", "-c", "make && ./run"]),
            exec(&["tool3", "-x"]),
            exec(&["cli6", "deploy", "/srv/x"]),
            exec(&["/opt/vendor4/bin/run"]),
            exec(&["dd", "if=/dev/zero", "of=/dev/sda"]),
            exec(&["chmod", "+s", "/usr/bin/x"]),
        ];
        for p in [
            "/etc/passwd".to_string(),
            "/etc/ld.so.cache".to_string(),
            "/dev/null".to_string(),
            "/tmp/x".to_string(),
            "/srv/app2/data".to_string(),
            "/var/lib/svc7/a.db".to_string(),
            format!("{home}/.ssh/id_ed25519"),
            format!("{home}/.bashrc"),
            format!("{home}/.config/git/config"),
            format!("{home}/.config/tool8/token.json"),
            format!("{home}/.aws/credentials"),
            format!("{home}/.cache/pip/x"),
            format!("{ws}/src/main.rs"),
            format!("{ws}/.git/hooks/pre-commit"),
            format!("{ws}/.env"),
            "/home/u/cfg/git/config".to_string(),
        ] {
            v.push(open(&p, Access::READ));
            v.push(open(&p, w));
        }
        v
    }

    fn outcome(text: &str, vars: &Vars, env: &Env, reference: bool) -> Outcome {
        REFERENCE_LOAD.with(|r| r.set(reference));
        let loaded = Policy::from_str_with_env(text, "t.yaml", vars, env);
        REFERENCE_LOAD.with(|r| r.set(false));
        match loaded {
            Err(e) => Err(e.iter().map(ToString::to_string).collect()),
            Ok(p) => {
                let decisions = [vars.home.to_str().unwrap(), "/home/u", "/home/user"]
                    .iter()
                    .flat_map(|h| actions(h))
                    .map(|a| format!("{:?}", p.decide(&a)))
                    .collect();
                Ok((p.example_count(), p.sha256(), decisions))
            }
        }
    }

    fn same(text: &str, what: &str) -> bool {
        let envs = [
            Env::fixed::<&str, &str>([]),
            Env::fixed([("XDG_CONFIG_HOME", "/home/u/cfg")]),
        ];
        let mut loaded = false;
        for vars in [vars(), compile::example_vars()] {
            for env in &envs {
                let before = outcome(text, &vars, env, true);
                let now = outcome(text, &vars, env, false);
                assert_eq!(now, before, "{what} with {vars:?}");
                loaded |= before.is_ok();
            }
        }
        loaded
    }

    /// The shipped default policy with generated rules (as the load
    /// benchmark makes them), some referencing variables, some not.
    fn with_generated(n: usize) -> String {
        let default = shipped::shipped("default").unwrap();
        let split = default.find("\ntests:").map_or(default.len(), |i| i + 1);
        let (head, tail) = default.split_at(split);
        let mut text = head.to_string();
        for i in 0..n {
            text.push_str(&match i % 5 {
                0 => format!("  - id: gen-exec-name-{i}\n    exec:\n      name: [tool{i}, \"tool{i}-*\"]\n      flags: [\"x|execute\"]\n    decision: block\n    reason: generated\n    examples:\n      match:\n        - exec: tool{i} -x\n      no_match:\n        - exec: tool{i} -y\n"),
                1 => format!("  - id: gen-exec-args-{i}\n    exec:\n      name: cli{i}\n      args: [\"**\", \"deploy\", \"**\"]\n      operand_outside: [\"${{WORKSPACE}}/**\"]\n    decision: escalate\n    reason: generated\n    examples:\n      match:\n        - exec: cli{i} deploy /srv/x\n"),
                2 => format!("  - id: gen-open-dir-{i}\n    open:\n      path: [\"/srv/app{i}/**\", \"/var/lib/svc{i}/*.db\"]\n      access: [write, truncate]\n    decision: block\n    reason: generated\n"),
                3 => format!("  - id: gen-open-secret-{i}\n    open:\n      path: \"${{HOME}}/.config/tool{i}/{{token,credentials}}.json\"\n    decision: block\n    reason: generated\n    examples:\n      match:\n        - open: ${{HOME}}/.config/tool{i}/token.json\n"),
                _ => format!("  - id: gen-exec-program-{i}\n    exec:\n      program: \"/opt/vendor{i}/bin/*\"\n    decision: escalate\n    reason: generated\n"),
            });
        }
        text.push_str(tail);
        text.push_str("  - {exec: tool0 -x, expect: block, rule: gen-exec-name-0}\n  - {open: /srv/app2/a, access: [write], expect: block}\n");
        text
    }

    /// A small deterministic generator (no seed to record).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    /// One line of `text` changed: removed, repeated, or with a variable,
    /// a decision, an expectation, a character or a `/` changed.
    fn mutate(text: &str, rng: &mut Lcg) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let i = rng.below(lines.len());
        let line = lines[i].clone();
        let swap = |l: &str, a: &str, b: &str| l.replacen(a, b, 1);
        match rng.below(9) {
            0 => {
                lines.remove(i);
            }
            1 => lines.insert(i, line),
            2 => lines[i] = swap(&line, "${HOME}", "${WORKSPACE}"),
            3 => lines[i] = swap(&line, "${WORKSPACE}", "/home/user/project"),
            4 => lines[i] = swap(&line, "no_match:", "match:"),
            5 => lines[i] = swap(&line, "block", "allow"),
            6 => lines[i] = swap(&line, "/", ""),
            7 => lines[i] = swap(&line, "**", "*"),
            _ => {
                let chars: Vec<char> = line.chars().collect();
                let at = rng.below(chars.len() + 1);
                let c = ['*', '{', '}', '$', '?', 'x', ','][rng.below(7)];
                let mut l: String = chars[..at].iter().collect();
                l.push(c);
                l.extend(&chars[at..]);
                lines[i] = l;
            }
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }

    #[test]
    fn shipped_and_generated_policies_load_as_before() {
        for (name, text) in shipped::SHIPPED {
            assert!(same(text, name), "{name} loads");
        }
        assert!(same(&with_generated(60), "generated"), "generated loads");
    }

    #[test]
    fn mutated_policies_load_or_fail_as_before() {
        let mut rng = Lcg(0x006c_6578_6563_6f6e);
        let generated = with_generated(25);
        let bases: Vec<&str> = vec![
            shipped::shipped("default").unwrap(),
            &generated,
            shipped::shipped("ci").unwrap(),
            shipped::shipped("demo").unwrap(),
        ];
        let (mut loaded, mut failed) = (0, 0);
        for round in 0..160 {
            let base = bases[round % bases.len()];
            let mut text = mutate(base, &mut rng);
            if round % 3 == 0 {
                text = mutate(&text, &mut rng);
            }
            if same(&text, &format!("mutation {round}")) {
                loaded += 1;
            } else {
                failed += 1;
            }
        }
        // Both outcomes were compared many times.
        assert!(
            loaded > 20 && failed > 20,
            "loaded {loaded}, failed {failed}"
        );
    }
}

/// Each pattern of a list is checked once: every bad one is reported at
/// its own entry (also among good ones, and in every kind of list that
/// takes globs), and a list whose patterns are good loads.
#[test]
fn every_bad_pattern_of_a_list_is_reported_at_its_entry() {
    let e = errors(
        "version: 1\nrules:\n  - id: r\n    open:\n      path: [\"/ok/**\", \"/a**\", \"/b/*\", \"${NOPE}/x\", \"/c/{\"]\n      process:\n        name: [\"ssh\", \"x**\"]\n    decision: block\n    reason: x\n  - id: s\n    connect:\n      host: [\"a.example\", \"b**\"]\n      path: [\"/run/x.sock\", \"/y**\"]\n    decision: block\n    reason: x\n",
    );
    assert_eq!(
        e,
        [
            "t.yaml:5:24: rule 'r': bad pattern in path: '**' is not a whole path component in '/a**' (write 'dir/**/name' or 'dir/**'; use '*' to match within one name)",
            "t.yaml:5:40: rule 'r': bad pattern in path: unknown variable '${NOPE}' (the variables are ${HOME}, ${WORKSPACE}, ${TMPDIR} and ${env.NAME:-DEFAULT})",
            "t.yaml:5:53: rule 'r': bad pattern in path: unclosed '{' in '/c/{' (close the alternatives with '}', or write '\\{' for a literal brace)",
            "t.yaml:7:23: rule 'r': bad pattern in name: '**' is not a whole path component in 'x**' (write 'dir/**/name' or 'dir/**'; use '*' to match within one name)",
            "t.yaml:12:27: rule 's': bad pattern in host: '**' is not a whole path component in 'b**' (write 'dir/**/name' or 'dir/**'; use '*' to match within one name)",
            "t.yaml:13:29: rule 's': bad pattern in path: '**' is not a whole path component in '/y**' (write 'dir/**/name' or 'dir/**'; use '*' to match within one name)",
        ],
        "{e:#?}"
    );
    let p = load(
        "version: 1\nrules:\n  - id: r\n    open:\n      path: [\"/ok/**\", \"/b/*\", \"${HOME}/{x,y}\", \"/lit\"]\n    decision: block\n    reason: x\n",
    );
    for (path, v) in [
        ("/ok/a", Verdict::Block),
        ("/b/c", Verdict::Block),
        ("/home/u/y", Verdict::Block),
        ("/lit", Verdict::Block),
        ("/b/c/d", Verdict::Allow),
        ("/ok", Verdict::Allow),
    ] {
        assert_eq!(verdict(&p, &open(path, Access::READ)), v, "{path}");
    }
}
