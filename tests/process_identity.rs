//! Open rules with a `process:` condition, on real programs: the caller's
//! program is the image confirmed at its exec (and inherited across fork),
//! never its argv[0] or its name; a copy or a hard link under another path
//! is another program, code injected through the loader's environment makes
//! the caller unknown, and unknown never helps.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `reader FILE [fork|rename]`: opens FILE for reading and prints
/// `read=N` (bytes read) or `read=-ERRNO`. `fork`: the read is done by
/// `FORKS` forked children, one after the other, each (which runs the same image, never having executed
/// anything). `rename`: first renames its own process (`comm`) to `ssh`.
const READER_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#define FORKS 20
static void readit(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("read=-%d\n", errno); fflush(stdout); return; }
    char buf[4096];
    long total = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    close(fd);
    printf("read=%ld\n", total);
    fflush(stdout);
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (argc > 2 && !strcmp(argv[2], "rename")) prctl(PR_SET_NAME, "ssh", 0, 0, 0);
    if (argc > 2 && !strcmp(argv[2], "fork")) {
        /* Children that read at once, racing the tracer's view of them. */
        for (int i = 0; i < FORKS; i++) {
            pid_t c = fork();
            if (c == 0) { readit(argv[1]); _exit(0); }
            waitpid(c, NULL, 0);
        }
        return 0;
    }
    readit(argv[1]);
    return 0;
}
"#;

struct World {
    env: Env,
    /// The program the policy names.
    allowed: PathBuf,
    /// A byte-identical copy under another name.
    copy: PathBuf,
    secret: PathBuf,
}

fn world() -> World {
    let env = Env::new();
    let built = env.cc("reader", READER_C);
    let dir = env.root.join("tools");
    std::fs::create_dir(&dir).unwrap();
    let allowed = dir.join("reader");
    let copy = dir.join("reader-copy");
    std::fs::copy(&built, &allowed).unwrap();
    std::fs::copy(&built, &copy).unwrap();
    let secret = env.root.join("secret.txt");
    std::fs::write(&secret, "token=hunter2\n").unwrap();
    World {
        env,
        allowed,
        copy,
        secret,
    }
}

/// Reading `secret` is blocked unless the caller runs `program` (and, with
/// `sha256`, unless its content hash is listed).
fn policy(w: &World, program: &Path, sha256: Option<&str>) -> PathBuf {
    let conds = match sha256 {
        // A hash alone: any path with that content.
        Some(h) => format!("sha256: [\"{h}\"]"),
        None => format!("program: \"{}\"", program.display()),
    };
    w.env.policy(&format!(
        "version: 1\nrules:\n  - id: secret-for-reader\n    open:\n      path: \"{}\"\n      unless:\n        process:\n          {conds}\n    decision: block\n    reason: the secret is for the reader only\n",
        w.secret.display(),
    ))
}

/// `lexecon supervise` without the `LD_LIBRARY_PATH` the test harness may
/// set (it would make every caller unknown).
fn supervise<S: AsRef<std::ffi::OsStr>>(
    env: &Env,
    policy: &Path,
    cmd: &[S],
) -> std::process::Output {
    env.supervise_cmd(policy, cmd)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

fn reads(out: &std::process::Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter_map(|l| l.strip_prefix("read=").map(str::to_owned))
        .collect()
}

const SECRET_LEN: &str = "14";
const FORKS: usize = 20;

#[test]
fn only_the_named_program_reads_and_its_renamed_copy_cannot() {
    let w = world();
    // Natively both read the secret.
    for prog in [&w.allowed, &w.copy] {
        let native = w.env.native(&[prog.as_os_str(), w.secret.as_os_str()]);
        assert_eq!(reads(&native), [SECRET_LEN], "{}", stdout(&native));
    }
    let policy = policy(&w, &w.allowed, None);
    let script = format!(
        "{a} {s}; {c} {s}; {a} {s} fork; {c} {s} fork; {c} {s} rename; (exec -a {a} {c} {s}); cat {s} >/dev/null; echo cat=$?",
        a = w.allowed.display(),
        c = w.copy.display(),
        s = w.secret.display()
    );
    let out = supervise(&w.env, &policy, &["bash", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // allowed, copy, allowed's forked children, copy's forked children,
    // copy named ssh, copy started with argv[0] = the allowed path
    let mut want = vec![SECRET_LEN, "-1"];
    want.extend([SECRET_LEN; FORKS]);
    want.extend(["-1"; FORKS]);
    want.extend(["-1", "-1"]);
    assert_eq!(reads(&out), want, "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("cat=1"), "{}", stdout(&out));
    let recs = w.env.open_records(&w.secret);
    let allowed: Vec<_> = recs.iter().filter(|r| r["outcome"] == "allowed").collect();
    let refused: Vec<_> = recs.iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(allowed.len(), 1 + FORKS, "{recs:#?}");
    assert_eq!(refused.len(), 4 + FORKS, "{recs:#?}");
    let program = |r: &serde_json::Value| {
        r["action"]["process"]["program"]
            .as_str()
            .map(str::to_owned)
    };
    for r in &allowed {
        assert_eq!(program(r).as_deref(), w.allowed.to_str());
        assert_eq!(
            r["action"]["process"]["sha256"].as_str().map(str::len),
            Some(64)
        );
    }
    assert!(refused
        .iter()
        .any(|r| program(r).as_deref() == Some("/usr/bin/cat")));
    assert_eq!(
        refused
            .iter()
            .filter(|r| program(r).as_deref() == w.copy.to_str())
            .count(),
        3 + FORKS
    );
    w.env.assert_valid();
}

#[test]
fn the_first_command_is_known_by_its_confirmed_image() {
    let w = world();
    let policy = policy(&w, &w.allowed, None);
    let out = supervise(
        &w.env,
        &policy,
        &[w.allowed.as_os_str(), w.secret.as_os_str()],
    );
    assert_eq!(reads(&out), [SECRET_LEN], "{}", stderr(&out));
    let out = supervise(&w.env, &policy, &[w.copy.as_os_str(), w.secret.as_os_str()]);
    assert_eq!(reads(&out), ["-1"], "{}", stderr(&out));
}

#[test]
fn a_hard_link_is_another_path_and_a_hash_names_the_content() {
    let w = world();
    let link = w.env.root.join("tools/linked-reader");
    std::fs::hard_link(&w.allowed, &link).unwrap();
    let by_path = policy(&w, &w.allowed, None);
    let out = supervise(&w.env, &by_path, &[link.as_os_str(), w.secret.as_os_str()]);
    assert_eq!(
        reads(&out),
        ["-1"],
        "a hard link has another path: {}",
        stderr(&out)
    );
    // With the content hash, the copy is let in too, and a program with
    // other content is not.
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&w.allowed).unwrap()))
    };
    let by_hash = policy(&w, &w.allowed, Some(&hash));
    let script = format!(
        "{c} {s}; {l} {s}; head -c1 {s}",
        c = w.copy.display(),
        l = link.display(),
        s = w.secret.display()
    );
    let out = supervise(&w.env, &by_hash, &["sh", "-c", &script]);
    assert_eq!(reads(&out), [SECRET_LEN, SECRET_LEN], "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("token"),
        "head read it: {}",
        stdout(&out)
    );
}

#[test]
fn code_injected_through_the_loader_makes_the_caller_unknown() {
    let w = world();
    // An (empty) shared library: loading it is enough to run code in the
    // allowed program (a constructor), so the program's identity no longer
    // says what runs.
    let so_src = w.env.root.join("inject.c");
    std::fs::write(&so_src, "void lexecon_test_injected(void) {}\n").unwrap();
    let so = w.env.root.join("inject.so");
    let ok = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&so_src)
        .status()
        .unwrap();
    assert!(ok.success());
    let policy = policy(&w, &w.allowed, None);
    let lib_dir = w.env.root.join("libs");
    std::fs::create_dir(&lib_dir).unwrap();
    for (var, value) in [
        ("LD_PRELOAD", so.to_str().unwrap()),
        ("LD_AUDIT", so.to_str().unwrap()),
        ("LD_LIBRARY_PATH", lib_dir.to_str().unwrap()),
    ] {
        // Natively the library does not stop the read.
        let native = Command::new(&w.allowed)
            .arg(&w.secret)
            .env_remove("LD_LIBRARY_PATH")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(reads(&native), [SECRET_LEN], "{var} natively");
        let script = format!(
            "{var}={value} {a} {s}; {var}= {a} {s}; {var}={value} {a} {s} fork 2>&1 | sort -u",
            a = w.allowed.display(),
            s = w.secret.display()
        );
        let out = supervise(&w.env, &policy, &["sh", "-c", &script]);
        assert_eq!(
            reads(&out),
            // injected: refused; set but empty: nothing injected; the
            // injected program's forked child: refused too
            ["-1", SECRET_LEN, "-1"],
            "{var}: {}",
            stderr(&out)
        );
        let recs = w.env.open_records(&w.secret);
        assert!(
            recs.iter()
                .any(|r| r["action"]["process"]["injected"] == var && r["outcome"] == "refused"),
            "{var}: {recs:#?}"
        );
    }
    // The loader run as a program is not the program it loads.
    if let Some(ld) = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2"]
        .iter()
        .find(|p| Path::new(p).exists())
    {
        let out = supervise(
            &w.env,
            &policy,
            &[ld.as_ref(), w.allowed.as_os_str(), w.secret.as_os_str()],
        );
        assert_eq!(reads(&out), ["-1"], "{}", stderr(&out));
    }
}
