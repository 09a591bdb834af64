//! A policy whose pattern could not be evaluated refuses every action
//! (its own test binary: the state is process-wide and cannot be undone).

use lexecon::action::{Action, ExecAction, Verdict};
use lexecon::policy::{Policy, Vars};
use std::path::PathBuf;

#[test]
fn a_pattern_that_cannot_be_evaluated_refuses_everything() {
    let vars = Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/w"),
        tmpdir: PathBuf::from("/tmp"),
    };
    let p = Policy::from_str(
        "version: 1\ndefaults:\n  exec: block\nrules:\n  - id: ls\n    exec: {program: [\"/usr/bin/l?\"]}\n    decision: allow\n    reason: listing\n",
        "t.yaml",
        &vars,
    )
    .unwrap();
    let ls = Action::Exec(ExecAction {
        path: PathBuf::from("/usr/bin/ls"),
        argv: vec!["ls".into()],
        cwd: PathBuf::from("/w"),
        sha256: None,
    });
    assert_eq!(p.decide(&ls).verdict, Verdict::Allow);
    lexecon::policy::fail_pattern_evaluation_for_tests();
    let d = p.decide(&ls);
    assert_eq!(d.verdict, Verdict::Block, "{d:?}");
    assert!(d.reason.contains("could not be evaluated"), "{}", d.reason);
}
