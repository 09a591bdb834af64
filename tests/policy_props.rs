//! Property tests of the policy engine: no input makes loading panic, and
//! the indexed `decide` agrees with `explain`, which tries every rule.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use lexecon::action::{Access, Action, ExecAction, OpenAction};
use lexecon::policy::{Policy, Vars};
use proptest::prelude::*;

fn vars() -> Vars {
    Vars {
        home: PathBuf::from("/home/u"),
        workspace: PathBuf::from("/home/u/ws"),
        tmpdir: PathBuf::from("/tmp"),
    }
}

fn shipped(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name);
    std::fs::read_to_string(path).expect("shipped policy is readable")
}

const WORDS: &[&str] = &[
    "rm",
    "-rf",
    "-r",
    "-f",
    "-R",
    "--recursive",
    "--force",
    "--",
    "/",
    ".",
    "..",
    "./x",
    "/home/u",
    "/home/u/ws/a",
    "/tmp/x",
    "git",
    "push",
    "+main",
    "origin",
    "--force-with-lease",
    "sudo",
    "dd",
    "of=/dev/sda",
    "of=/dev/null",
    "chmod",
    "777",
    "sh",
    "bash",
    "-c",
    "curl -fsSL x | sh",
    "curl",
    "npm",
    "publish",
    "find",
    "-delete",
    "-",
    "*",
    "é",
    "",
];

const PARTS: &[&str] = &[
    "home", "u", "ws", ".ssh", "id_rsa", ".env", "tmp", "etc", "dev", "null", "pts", "0", ".cache",
    "..", ".", "", "a b", "x*", "{a,b}", "pipe:[1]", "proc", "self", "fd",
];

fn word() -> impl Strategy<Value = OsString> {
    prop_oneof![
        8 => prop::sample::select(WORDS).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(OsString::from_vec),
    ]
}

fn path() -> impl Strategy<Value = PathBuf> {
    (
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![
                8 => prop::sample::select(PARTS).prop_map(|s| s.as_bytes().to_vec()),
                1 => prop::collection::vec(any::<u8>().prop_filter("no slash", |b| *b != b'/'), 1..4),
            ],
            0..6,
        ),
    )
        .prop_map(|(abs, parts)| {
            let mut v = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                if abs || i > 0 {
                    v.push(b'/');
                }
                v.extend_from_slice(p);
            }
            PathBuf::from(OsString::from_vec(v))
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (
            path(),
            prop::collection::vec(word(), 0..6),
            path(),
            prop::option::of(any::<[u8; 32]>())
        )
            .prop_map(|(path, argv, cwd, sha256)| Action::Exec(ExecAction {
                path,
                argv,
                cwd,
                sha256
            })),
        (path(), 0u8..64, path()).prop_map(|(path, bits, cwd)| {
            let mut access = Access::empty();
            for (i, (a, _)) in Access::ALL.iter().enumerate() {
                if bits & (1 << i) != 0 {
                    access |= *a;
                }
            }
            Action::Open(OpenAction {
                op: lexecon::action::FileOp::Open,
                detail: None,
                path,
                access,
                cwd,
                process: None,
            })
        }),
    ]
}

fn loaded() -> &'static [Policy] {
    static POLICIES: std::sync::OnceLock<Vec<Policy>> = std::sync::OnceLock::new();
    POLICIES.get_or_init(|| {
        ["default.yaml", "ci.yaml", "demo.yaml"]
            .iter()
            .map(|n| Policy::from_str(&shipped(n), n, &vars()).expect("shipped policy loads"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Policy::from_str(&text, "fuzz", &vars());
    }

    #[test]
    fn yamlish_text_never_panics(text in "[a-z:\\-\\[\\]{}\"'*/$, \n|&!#%@`>?.0-9]{0,300}") {
        let _ = Policy::from_str(&text, "fuzz", &vars());
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn mutated_policies_never_panic(
        which in prop::sample::select(&["default.yaml", "ci.yaml", "demo.yaml", "observe.yaml"][..]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[ -~\n]{0,8}"), 1..4),
        a in action(),
    ) {
        let mut text = shipped(which).into_bytes();
        for (at, op, s) in edits {
            let i = at.index(text.len() + 1);
            match op {
                0 => { text.drain(i..(i + s.len()).min(text.len())); }
                1 => { text.splice(i..i, s.bytes()); }
                2 => { let end = (i + s.len()).min(text.len()); text.splice(i..end, s.bytes()); }
                _ => {
                    // duplicate the line holding i
                    let start = text[..i].iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                    let end = text[i..].iter().position(|b| *b == b'\n').map_or(text.len(), |p| i + p + 1);
                    let line = text[start..end].to_vec();
                    text.splice(end..end, line);
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        if let Ok(p) = Policy::from_str(&text, "mutated", &vars()) {
            let d = p.decide(&a);
            prop_assert_eq!(d, p.explain(&a).decision);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn indexed_decide_agrees_with_trying_every_rule(a in action()) {
        for p in loaded() {
            let d = p.decide(&a);
            let e = p.explain(&a);
            prop_assert_eq!(&d, &e.decision);
            let ids: Vec<String> = e.matched.iter().map(|m| m.id.clone()).collect();
            prop_assert_eq!(d.matched, ids);
        }
    }
}
