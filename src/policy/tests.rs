//! Unit tests of loading and deciding.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
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
        path: PathBuf::from(path),
        access,
        cwd: PathBuf::from("/home/u/ws"),
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
    match Policy::from_file(&path, &vars()) {
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
