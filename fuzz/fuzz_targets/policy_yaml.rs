//! The policy loader (its YAML event tree, the rule compiler, the
//! embedded examples): any text is either a policy or a list of located
//! errors, never a panic; a loaded policy decides.
#![no_main]
use lexecon::action::{Access, Action, ExecAction, FileOp, OpenAction};
use lexecon::policy::{Policy, Vars};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars = Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/w"),
        tmpdir: PathBuf::from("/tmp"),
    };
    let Ok(policy) = Policy::from_str(text, "fuzz.yaml", &vars) else {
        return;
    };
    let exec = Action::Exec(ExecAction {
        path: PathBuf::from("/usr/bin/rm"),
        argv: vec!["rm".into(), "-rf".into(), "/w".into()],
        cwd: PathBuf::from("/w"),
        sha256: None,
    });
    let _ = policy.decide(&exec);
    let _ = policy.explain(&exec);
    let open = Action::Open(OpenAction {
        path: PathBuf::from("/w/.git/config"),
        access: Access::READ | Access::WRITE,
        cwd: PathBuf::from("/w"),
        process: None,
        op: FileOp::Open,
        detail: None,
    });
    let _ = policy.decide(&open);
});
