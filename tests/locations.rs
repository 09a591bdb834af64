//! Supervised runs with the default places for keys and ledgers (no
//! `--keys`, no `--ledger`), in a throwaway home directory: the workspace
//! holds nothing of Lexecon's, so tools that read or copy the whole
//! workspace work; every command finds the ledger; the hints printed work
//! as printed; a second run waiting for the ledger says so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, LEXECON};

const PATIENCE: Duration = Duration::from_secs(60);

/// A home directory `home` (no XDG or LEXECON variables) with a key pair at
/// its default place, and a workspace `ws` beside it.
struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    ws: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("lexecon-loc-")
            .tempdir()
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let home = root.join("home");
        let ws = root.join("ws");
        std::fs::create_dir(&home).unwrap();
        std::fs::create_dir(&ws).unwrap();
        let h = Home {
            _dir: dir,
            root,
            home,
            ws,
        };
        let o = h.lexecon(&h.ws, &["init-keys"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        h
    }

    /// `lexecon ARGS` in `dir` with this home.
    fn lexecon(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(LEXECON);
        c.args(args)
            .current_dir(dir)
            .env("HOME", &self.home)
            .stdin(Stdio::null());
        for v in [
            "XDG_CONFIG_HOME",
            "XDG_STATE_HOME",
            "LEXECON_KEYS",
            "LEXECON_LEDGER",
            "GITHUB_STEP_SUMMARY",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// `lexecon supervise OPTS -- CMD…` in the workspace, default places.
    fn supervise(&self, opts: &[&str], cmd: &[&str]) -> Command {
        let mut args = vec!["supervise", "--allow-root-tree", "--sync", "never"];
        args.extend_from_slice(opts);
        args.push("--");
        args.extend_from_slice(cmd);
        self.lexecon(&self.ws, &args)
    }

    /// A shell command line run the way a user runs a printed hint: in
    /// `dir`, with this home.
    fn run_hint(&self, dir: &Path, hint: &str) -> Output {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(hint.replacen("lexecon", LEXECON, 1))
            .current_dir(dir)
            .env("HOME", &self.home)
            .stdin(Stdio::null());
        for v in [
            "XDG_CONFIG_HOME",
            "XDG_STATE_HOME",
            "LEXECON_KEYS",
            "LEXECON_LEDGER",
        ] {
            c.env_remove(v);
        }
        c.output().unwrap()
    }

    fn ledgers(&self) -> PathBuf {
        self.home.join(".local/state/lexecon/ledgers")
    }

    /// The workspace's ledger at its default place.
    fn ledger(&self) -> PathBuf {
        self.ledgers()
            .join(lexecon::cli::locations::workspace_id(&self.ws))
            .join("ledger.jsonl")
    }

    fn records(&self) -> Vec<serde_json::Value> {
        common::expanded_records(&std::fs::read_to_string(self.ledger()).unwrap_or_default())
    }

    fn policy(&self, yaml: &str) -> PathBuf {
        let p = self.root.join("policy.yaml");
        std::fs::write(&p, yaml).unwrap();
        p
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The command after "check it with: " in a run's summary.
fn verify_hint(err: &str) -> String {
    err.lines()
        .find_map(|l| l.split_once("check it with: ").map(|(_, h)| h.to_string()))
        .unwrap_or_else(|| panic!("no verify hint in:\n{err}"))
}

#[test]
fn git_tar_grep_cp_work_on_the_whole_workspace_with_default_places() {
    let h = Home::new();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&h.ws)
            .env("HOME", &h.home)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    git(&["init", "-q"]);
    std::fs::create_dir(h.ws.join("src")).unwrap();
    std::fs::write(h.ws.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    std::fs::write(h.ws.join(".gitignore"), "*.o\n").unwrap();
    // A first run, so that the ledger exists while the second one works.
    let o = h.supervise(&[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::write(h.ws.join("main.o"), "object\n").unwrap();
    let script = "set -e
git add -A
git -c user.name=a -c user.email=a@example.com commit -qm first
grep -rq 'return 0' .
tar czf ../ws.tgz .
cp -r . ../copy
git clean -fdxq
test ! -e main.o
echo all-done";
    let o = h.supervise(&[], &["sh", "-c", script]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).contains("all-done"), "{}", stdout(&o));
    assert!(!stderr(&o).contains("lexecon: blocked"), "{}", stderr(&o));
    // Nothing of Lexecon's in the workspace; everything at its place.
    assert!(!h.ws.join(".audit").exists() && !h.ws.join(".lexecon").exists());
    let keys = h.home.join(".config/lexecon/keys");
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("ledger.key")), 0o600);
    let ledger = h.ledger();
    let dir = ledger.parent().unwrap();
    assert_eq!(mode(dir), 0o700);
    assert_eq!(
        std::fs::read_to_string(dir.join("workspace")).unwrap(),
        format!("{}\n", h.ws.display())
    );
    let o = h.lexecon(&h.ws, &["verify"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("Runs: 2 (2 sealed"), "{}", stdout(&o));
}

#[test]
fn every_ledger_at_the_default_place_is_the_supervisors_only() {
    let h = Home::new();
    let other = h.ledgers().join("other-000000000000");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("ledger.jsonl"), "").unwrap();
    let script = format!(
        "echo x >> {o}/ledger.jsonl && echo wrote-other; echo x > {l}/new && echo wrote-new; cat {o}/ledger.jsonl >/dev/null && echo read-other; true",
        o = other.display(),
        l = h.ledgers().display()
    );
    let o = h.supervise(&[], &["sh", "-c", &script]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("wrote-other") && !out.contains("wrote-new"),
        "{out}"
    );
    assert!(out.contains("read-other"), "{out}");
    let refused: Vec<_> = h
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["rule"] == "lexecon.self-protect.ledger")
        .collect();
    assert!(refused.len() >= 2, "{refused:?}");
}

#[test]
fn the_printed_verify_hints_work_as_printed() {
    let h = Home::new();
    // Default places, started in the workspace: the short form.
    let o = h.supervise(&[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hint = verify_hint(&stderr(&o));
    assert_eq!(hint, "lexecon verify");
    let v = h.run_hint(&h.ws, &hint);
    assert_eq!(v.status.code(), Some(0), "{hint}: {}", stdout(&v));

    // Started elsewhere with --workspace: the hint names the ledger.
    let o = h
        .lexecon(
            &h.root,
            &[
                "supervise",
                "--allow-root-tree",
                "--workspace",
                h.ws.to_str().unwrap(),
                "--",
                "true",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hint = verify_hint(&stderr(&o));
    assert!(hint.contains(h.ledger().to_str().unwrap()), "{hint}");
    let v = h.run_hint(&h.root, &hint);
    assert_eq!(v.status.code(), Some(0), "{hint}: {}", stdout(&v));

    // Keys and ledger given: both named (relative, as given).
    let o = h
        .lexecon(&h.ws, &["init-keys", "--dir", "../k"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = h
        .supervise(
            &["--keys", "../k", "--ledger", "../l/ledger.jsonl"],
            &["true"],
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hint = verify_hint(&stderr(&o));
    assert_eq!(
        hint,
        "lexecon verify ../l/ledger.jsonl --pubkey ../k",
        "{}",
        stderr(&o)
    );
    let v = h.run_hint(&h.ws, &hint);
    assert_eq!(v.status.code(), Some(0), "{hint}: {}", stdout(&v));

    // $LEXECON_KEYS: named too, so the hint works in another shell.
    let o = h
        .supervise(&[], &["true"])
        .env("LEXECON_KEYS", h.root.join("k"))
        .env("LEXECON_LEDGER", h.root.join("l2.jsonl"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hint = verify_hint(&stderr(&o));
    let v = h.run_hint(&h.ws, &hint);
    assert_eq!(v.status.code(), Some(0), "{hint}: {}", stdout(&v));
}

#[test]
fn a_torn_ledger_names_the_recover_command_that_works() {
    let h = Home::new();
    let o = h
        .lexecon(&h.ws, &["init-keys", "--dir", "../k"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for keys in [None, Some("../k")] {
        let mut opts = vec![];
        if let Some(k) = keys {
            opts.extend(["--keys", k]);
        }
        let o = h.supervise(&opts, &["true"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(h.ledger())
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"kind\":").unwrap();
        let o = h.supervise(&opts, &["true"]).output().unwrap();
        assert_eq!(o.status.code(), Some(125));
        let err = stderr(&o);
        let cmd = err
            .split('`')
            .find(|s| s.starts_with("lexecon ledger recover"))
            .unwrap_or_else(|| panic!("no recover command in: {err}"));
        let r = h.run_hint(&h.ws, cmd);
        assert!(r.status.success(), "{cmd}: {}", stderr(&r));
        let o = h.supervise(&opts, &["true"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // Start the next round with a key-consistent ledger.
        std::fs::remove_file(h.ledger()).unwrap();
    }
}

#[test]
fn a_ledger_left_in_the_workspace_by_an_earlier_version_is_moved_once() {
    let h = Home::new();
    // As an earlier version wrote it: in the workspace.
    let o = h
        .supervise(&["--ledger", ".audit/ledger.jsonl"], &["true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = h.supervise(&[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("moved this workspace's ledger") && err.contains(".audit/ledger.jsonl"),
        "{err}"
    );
    assert!(!h.ws.join(".audit").exists());
    let o = h.lexecon(&h.ws, &["verify"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("Runs: 2 (2 sealed"), "{}", stdout(&o));
    // Said once.
    let o = h.supervise(&[], &["true"]).output().unwrap();
    assert!(!stderr(&o).contains("moved"), "{}", stderr(&o));
}

#[test]
fn keys_left_by_an_earlier_version_are_named_not_replaced() {
    let h = Home::new();
    std::fs::remove_dir_all(h.home.join(".config/lexecon/keys")).unwrap();
    let o = h
        .lexecon(&h.ws, &["init-keys", "--dir", ".lexecon"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = h.supervise(&[], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains(".lexecon holds one") && err.contains("mv ") && err.contains("--keys"),
        "{err}"
    );
    assert!(!h.ledger().exists(), "nothing was started");
}

fn wait_for(p: &Path, what: &str) -> String {
    let t = Instant::now();
    loop {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        // The whole line: stderr is unbuffered, so a line may be written
        // in pieces.
        if s.find(what).is_some_and(|at| s[at..].contains('\n')) {
            return s;
        }
        assert!(t.elapsed() < PATIENCE, "{what:?} never appeared in:\n{s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_logged(mut c: Command, log: &Path) -> Child {
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_child(mut child: Child) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if t.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("a run did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_waiting_for_the_ledger_says_so_at_once() {
    let h = Home::new();
    let go = h.root.join("go");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    let log1 = h.root.join("run1.log");
    let first = spawn_logged(h.supervise(&[], &["sh", "-c", &script]), &log1);
    let pid = first.id();
    // The workspace line is printed once the ledger is open (and locked).
    wait_for(&log1, "lexecon: workspace");

    let o = h.supervise(&["--no-wait"], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("in use by another run (pid {pid}: ")) && err.contains("supervise"),
        "{err}"
    );

    let log2 = h.root.join("run2.log");
    let second = spawn_logged(h.supervise(&[], &["true"]), &log2);
    let said = wait_for(&log2, "waiting for the ledger");
    assert!(
        said.contains(&format!("pid {pid}: ")) && said.contains("--no-wait"),
        "{said}"
    );
    assert!(!said.contains("lexecon: workspace"), "{said}");
    std::fs::write(&go, "").unwrap();
    assert_eq!(wait_child(first), 0);
    assert_eq!(wait_child(second), 0);
    let o = h.lexecon(&h.ws, &["verify"]).output().unwrap();
    assert!(stdout(&o).contains("Runs: 2 (2 sealed"), "{}", stdout(&o));
}

#[test]
fn counts_are_per_action_and_worded_for_one() {
    let h = Home::new();
    let p = h.policy(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: ask-true\n    exec:\n      program: \"**/true\"\n    decision: escalate\n    reason: ask\n",
    );
    let o = h
        .supervise(
            &["--policy", p.to_str().unwrap(), "--on-escalate", "allow"],
            &["sh", "-c", "/bin/true; /bin/true; exec /bin/true"],
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // Three execs of true, each judged at its request and its exec event.
    assert!(err.contains("lexecon: 3 escalated actions\n"), "{err}");
    let requests = h
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "decision" && r["stage"] == "request")
        .count();
    assert!(
        err.contains(&format!("lexecon: {requests} actions judged (enforce mode): {requests} allowed, 0 blocked, 0 killed after exec")),
        "{requests} requests: {err}"
    );

    let o = h
        .supervise(
            &["--policy", p.to_str().unwrap(), "--on-escalate", "allow"],
            &["/bin/true"],
        )
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(err.contains("lexecon: 1 escalated action\n"), "{err}");
}

#[test]
fn the_printed_approve_hint_works_as_printed() {
    let h = Home::new();
    let p = h.policy(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: ask-touch\n    exec:\n      program: \"**/touch\"\n    decision: escalate\n    reason: ask\n",
    );
    let log = h.root.join("run.log");
    let run = spawn_logged(
        h.supervise(
            &["--policy", p.to_str().unwrap(), "--on-escalate", "wait"],
            &["touch", "made"],
        ),
        &log,
    );
    let said = wait_for(&log, "lexecon approve 1");
    let cmd = said
        .split('`')
        .find(|s| s.starts_with("lexecon approve 1"))
        .unwrap_or_else(|| panic!("no approve command in: {said}"))
        .to_string();
    assert_eq!(cmd, "lexecon approve 1", "{said}");
    // From another directory inside the workspace, as a user would.
    std::fs::create_dir(h.ws.join("sub")).unwrap();
    let pending = h.run_hint(&h.ws.join("sub"), "lexecon pending");
    assert!(
        stdout(&pending).contains("ask-touch") && stdout(&pending).contains("exec touch made"),
        "{}{}",
        stdout(&pending),
        stderr(&pending)
    );
    let a = h.run_hint(&h.ws.join("sub"), &cmd);
    assert!(a.status.success(), "{cmd}: {}", stderr(&a));
    assert_eq!(wait_child(run), 0);
    assert!(h.ws.join("made").exists());
}
