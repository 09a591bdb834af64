//! Integration tests of `lexecon supervise` on real programs: blocked and
//! allowed execs and opens across the process tree, opens behaving exactly
//! as natively, races against the gate, supervisor death, exit codes, and
//! real tools running unchanged.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn block_program_policy(env: &Env, program: &Path) -> std::path::PathBuf {
    env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: block-marker\n    exec:\n      program: \"{}\"\n    decision: block\n    reason: the marker program is forbidden\n",
        program.display()
    ))
}

#[test]
fn blocked_exec_is_refused_with_eperm_and_never_runs() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = block_program_policy(&env, &marker);
    let script = format!("{} ran.txt; echo rc=$?", marker.display());
    let out = env.supervise(&policy, &["sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("rc=126"),
        "sh reports the refused exec: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("lexecon: blocked exec"),
        "{}",
        stderr(&out)
    );
    assert!(!env.ws.join("ran.txt").exists(), "the blocked program ran");
    let recs = env.exec_records("marker");
    assert!(!recs.is_empty());
    for r in &recs {
        assert_eq!(r["verdict"], "block");
        assert_eq!(r["outcome"], "refused");
        assert_eq!(r["rule"], "block-marker");
        assert_eq!(r["stage"], "request");
    }
    env.assert_valid();
}

#[test]
fn allowed_exec_runs_and_is_confirmed_with_its_identity() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = env.policy(ALLOW_ALL);
    let out = env.supervise(&policy, &[marker.as_os_str(), "ran.txt".as_ref()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(env.ws.join("ran.txt").exists());
    let recs = env.exec_records("marker");
    let stages: Vec<_> = recs
        .iter()
        .map(|r| r["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, ["request", "confirm"], "{recs:#?}");
    let confirm = &recs[1];
    assert_eq!(confirm["outcome"], "allowed");
    assert_eq!(confirm["action"]["argv"][1], "ran.txt");
    assert_eq!(confirm["action"]["path"], marker.to_str().unwrap());
    // The identity names the file really executed.
    let text = serde_json::to_string(confirm).unwrap();
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(std::fs::read(&marker).unwrap()));
    assert!(
        text.contains(&hash),
        "confirm record lacks the program's SHA-256: {text}"
    );
    env.assert_valid();
}

#[test]
fn children_grandchildren_and_threads_are_all_gated() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = block_program_policy(&env, &marker);
    let m = marker.display();
    // grandchild through two shells
    let out = env.supervise(
        &policy,
        &["sh", "-c", &format!("sh -c 'sh -c \"{m} g.txt\"'; true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!env.ws.join("g.txt").exists());
    // from a thread of a multi-threaded program, and from a subprocess pool
    let py = format!(
        "import threading, subprocess\n\
         def run():\n    subprocess.run(['{m}', 't.txt'])\n\
         ts=[threading.Thread(target=run) for _ in range(4)]\n\
         [t.start() for t in ts]; [t.join() for t in ts]\n\
         subprocess.run(['/bin/sh','-c','{m} s.txt'])\n\
         print('done')\n"
    );
    let out = env.supervise(&policy, &["python3", "-c", &py]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("done"));
    assert!(!env.ws.join("t.txt").exists());
    assert!(!env.ws.join("s.txt").exists());
    assert!(env.exec_records("marker").len() >= 5);
    env.assert_valid();
}

#[test]
fn vfork_and_posix_spawn_children_are_gated() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let spawner = env.cc(
        "spawner",
        r#"
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    char *a1[] = {argv[1], "vfork.txt", NULL};
    pid_t p = vfork();
    if (p == 0) { execve(argv[1], a1, environ); _exit(100); }
    int st; waitpid(p, &st, 0);
    printf("vfork child: %d\n", WEXITSTATUS(st));
    char *a2[] = {argv[1], "spawn.txt", NULL};
    int rc = posix_spawn(&p, argv[1], NULL, NULL, a2, environ);
    if (rc == 0) { waitpid(p, &st, 0); printf("spawn child: %d\n", WEXITSTATUS(st)); }
    else printf("posix_spawn: %d\n", rc);
    return 0;
}
"#,
    );
    let policy = block_program_policy(&env, &marker);
    let out = env.supervise(&policy, &[spawner.as_os_str(), marker.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!env.ws.join("vfork.txt").exists());
    assert!(!env.ws.join("spawn.txt").exists());
    let s = stdout(&out);
    assert!(s.contains("vfork child: 100"), "{s}");
    assert!(
        s.contains("posix_spawn: 1") || s.contains("spawn child: 127"),
        "{s}"
    );
    // Natively the same program runs the marker twice.
    let native = env.native(&[spawner.as_os_str(), marker.as_os_str()]);
    assert!(native.status.success());
    assert!(env.ws.join("vfork.txt").exists() && env.ws.join("spawn.txt").exists());
    env.assert_valid();
}

#[test]
fn double_fork_daemons_stay_supervised() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = block_program_policy(&env, &marker);
    let py = format!(
        "import os, time\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
         time.sleep(0.3)\n        r = os.system('{m} daemon.txt')\n        \
         open('daemon-done.txt','w').write(str(r))\n        os._exit(0)\n    os._exit(0)\n\
         for _ in range(100):\n    time.sleep(0.05)\n    \
         if os.path.exists('daemon-done.txt'): break\n",
        m = marker.display()
    );
    let out = env.supervise(&policy, &["python3", "-c", &py]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        env.ws.join("daemon-done.txt").exists(),
        "the daemon did not run: {}",
        stderr(&out)
    );
    assert!(
        !env.ws.join("daemon.txt").exists(),
        "the daemon escaped the gate"
    );
    env.assert_valid();
}

#[test]
fn blocked_open_for_write_leaves_the_file_untouched() {
    let env = Env::new();
    let policy = env.protected_data();
    let script = "echo evil > protected/data; echo evil >> protected/data; \
                  cd protected && echo evil > ./data; echo evil > ../protected/./data; \
                  ln -s protected/data ../link 2>/dev/null; echo evil > ../link; \
                  cat data";
    let out = env.supervise(&policy, &["sh", "-c", script]);
    assert_eq!(stdout(&out), "original\n", "stderr: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.ws.join("protected/data")).unwrap(),
        "original\n"
    );
    let recs = env.open_records(&env.ws.join("protected/data"));
    let refused = recs.iter().filter(|r| r["outcome"] == "refused").count();
    assert!(refused >= 4, "{recs:#?}");
    assert!(
        recs.iter().any(|r| r["outcome"] == "allowed"),
        "the read by cat is allowed"
    );
    env.assert_valid();
}

/// The open-flags table: every case is run natively and supervised, and
/// the observable results (errno, fd flags, mode, content, position) must
/// be identical.
#[test]
fn opens_behave_exactly_as_natively() {
    let env = Env::new();
    let probe = r#"
import os, stat, sys, errno
os.umask(0o022)
d = os.getcwd()
def reset():
    import shutil
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.isdir(p) and not os.path.islink(p): shutil.rmtree(p)
        else: os.unlink(p)
    os.mkdir('dir'); os.mkdir('dir/sub')
    open('file', 'w').write('hello\n')
    open('dir/inner', 'w').write('inner\n')
    os.symlink('file', 'link'); os.symlink('missing', 'dangling')
    os.symlink('dir', 'dirlink')
    os.mkfifo('fifo')
    open(b'caf\xe9', 'w').write('latin1\n')
O = os
def show(fd):
    st = os.fstat(fd)
    fl = __import__('fcntl').fcntl(fd, __import__('fcntl').F_GETFL)
    fdfl = __import__('fcntl').fcntl(fd, __import__('fcntl').F_GETFD)
    kind = stat.S_IFMT(st.st_mode)
    is_path = fl & O.O_PATH
    out = 'ok mode=%o fl=%o cloexec=%d pos=%d' % (st.st_mode, fl & ~0o100000, fdfl, os.lseek(fd, 0, 1) if kind != stat.S_IFIFO and not is_path else -1)
    if is_path: return out
    if stat.S_ISREG(st.st_mode) and (fl & 3) != 1:
        try: out += ' data=%r' % os.pread(fd, 64, 0)
        except OSError as e: out += ' read=' + errno.errorcode[e.errno]
    return out
O = os
cases = [
    ('file', O.O_RDONLY, 0, None),
    ('file', O.O_WRONLY | O.O_APPEND, 0, None),
    ('file', O.O_RDWR | O.O_TRUNC, 0, None),
    ('new1', O.O_WRONLY | O.O_CREAT, 0o666, None),
    ('new2', O.O_WRONLY | O.O_CREAT | O.O_EXCL, 0o640, None),
    ('file', O.O_WRONLY | O.O_CREAT | O.O_EXCL, 0o644, None),
    ('file', O.O_RDONLY | O.O_CLOEXEC, 0, None),
    ('file', O.O_RDONLY | O.O_DIRECTORY, 0, None),
    ('dir', O.O_RDONLY | O.O_DIRECTORY, 0, None),
    ('dir', O.O_WRONLY, 0, None),
    ('dir/', O.O_RDONLY, 0, None),
    ('file/', O.O_RDONLY, 0, None),
    ('newdir/', O.O_WRONLY | O.O_CREAT, 0o644, None),
    ('link', O.O_RDONLY, 0, None),
    ('link', O.O_RDONLY | O.O_NOFOLLOW, 0, None),
    ('dangling', O.O_RDONLY, 0, None),
    ('dangling', O.O_WRONLY | O.O_CREAT, 0o600, None),
    ('missing2', O.O_RDONLY, 0, None),
    ('no/such/dir', O.O_RDONLY, 0, None),
    ('dir/../file', O.O_RDONLY, 0, None),
    ('dirlink/../file', O.O_RDONLY, 0, None),
    ('./dir/./inner', O.O_RDONLY, 0, None),
    ('inner', O.O_RDONLY, 0, 'dir'),
    ('sub/../inner', O.O_RDONLY, 0, 'dir'),
    ('../file', O.O_RDONLY, 0, 'dir'),
    ('dir', O.O_RDONLY | O.O_TMPFILE | O.O_WRONLY, 0o600, None) if hasattr(O, 'O_TMPFILE') else ('file', 0, 0, None),
    ('fifo', O.O_RDONLY | O.O_NONBLOCK, 0, None),
    ('fifo', O.O_WRONLY | O.O_NONBLOCK, 0, None),
    (b'caf\xe9', O.O_RDONLY, 0, None),
    ('/proc/self/status', O.O_RDONLY, 0, None),
    ('/dev/null', O.O_WRONLY, 0, None),
    ('', O.O_RDONLY, 0, None),
    ('file', O.O_PATH, 0, None),
    ('link', O.O_PATH | O.O_NOFOLLOW, 0, None),
    ('dir', O.O_PATH | O.O_DIRECTORY, 0, None),
    ('missing3', O.O_PATH, 0, None),
]
for (path, flags, mode, base) in cases:
    reset()
    dfd = os.open(base, O.O_RDONLY | O.O_DIRECTORY) if base else None
    try:
        fd = os.open(path, flags, mode, dir_fd=dfd)
        res = show(fd)
        if path == '/proc/self/status':
            pid = [l for l in open(fd, closefd=False).read().splitlines() if l.startswith('Pid:')][0].split()[1]
            res = 'pid-is-self=%s' % (int(pid) == os.getpid())
        os.close(fd)
    except OSError as e:
        res = 'err ' + errno.errorcode[e.errno]
    if dfd is not None: os.close(dfd)
    print(repr(path), oct(flags), base, '->', res)
"#;
    std::fs::write(env.root.join("probe.py"), probe).unwrap();
    let probe_path = env.root.join("probe.py");
    let cmd = ["python3".as_ref(), probe_path.as_os_str()];
    let native = env.native(&cmd);
    assert!(
        native.status.success(),
        "probe fails natively: {}",
        stderr(&native)
    );
    let policy = env.policy(ALLOW_ALL);
    let sup = env.supervise(&policy, &cmd);
    assert!(
        sup.status.success(),
        "probe fails supervised: {}",
        stderr(&sup)
    );
    let (n, s) = (stdout(&native), stdout(&sup));
    for (a, b) in n.lines().zip(s.lines()) {
        assert_eq!(a, b, "native and supervised differ");
    }
    assert_eq!(n.lines().count(), s.lines().count());
    assert!(n.contains("pid-is-self=True"));
    env.assert_valid();
}

#[test]
fn proc_self_and_dev_stdin_mean_the_caller() {
    use std::io::Write;
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    let script = "cat /dev/stdin; grep -c '^Pid:' /proc/self/status; readlink /proc/self/exe";
    let mut child = env
        .supervise_cmd(&policy, &["sh", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = stdout(&out);
    assert!(s.starts_with("from stdin\n1\n"), "{s} {}", stderr(&out));
    // /proc/self/exe read by readlink names readlink itself, not the supervisor.
    assert!(s.trim_end().ends_with("/readlink"), "{s}");
    env.assert_valid();
}

#[test]
fn exit_codes_follow_the_command() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    assert_eq!(
        env.supervise(&policy, &["sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    assert_eq!(
        env.supervise(&policy, &["sh", "-c", "kill -TERM $$"])
            .status
            .code(),
        Some(128 + 15)
    );
    assert_eq!(
        env.supervise(&policy, &["no-such-program-xyz"])
            .status
            .code(),
        Some(127)
    );
    std::fs::write(env.ws.join("noexec"), "x").unwrap();
    assert_eq!(
        env.supervise(&policy, &["./noexec"]).status.code(),
        Some(126)
    );
    // A command the policy refuses cannot be run: 126, and the ledger says why.
    let marker = env.cc("marker", MARKER_C);
    let block = block_program_policy(&env, &marker);
    let out = env.supervise(&block, &[marker.as_os_str(), "x".as_ref()]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!env.ws.join("x").exists());
    env.assert_valid();
}

#[test]
fn no_keys_gives_a_clear_error() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    let out = Command::new(LEXECON)
        .args(["supervise", "--allow-root-tree", "--policy"])
        .arg(&policy)
        .arg("--keys")
        .arg(env.root.join("nokeys"))
        .args(["--", "true"])
        .current_dir(&env.ws)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("init-keys"), "{}", stderr(&out));
}

/// The check of a policy's embedded examples is skipped only for a text
/// that passed it with this build, as vouched for by a record in the key
/// directory authenticated with the signing key: a failing policy is refused
/// at every start, and a record moved onto another text does not help it.
#[test]
fn a_policy_whose_examples_fail_is_refused_at_every_start_whatever_was_recorded() {
    let env = Env::new();
    let good = "version: 1\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: no-rm\n    exec:\n      name: rm\n    decision: block\n    reason: no\n    examples:\n      match:\n        - exec: rm x\n";
    let bad = good.replace("exec: rm x", "exec: ls x");
    let good_policy = env.policy(good);
    let bad_policy = env.policy(&bad);
    let checks = env.keys.join("policy-checks");
    for _ in 0..2 {
        let out = env.supervise(&bad_policy, &["true"]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("example should match the rule but does not"),
            "{}",
            stderr(&out)
        );
    }
    assert!(
        std::fs::read_dir(&checks).map_or(true, |d| d.count() == 0),
        "a failing policy was recorded"
    );
    for _ in 0..2 {
        let out = env.supervise(&good_policy, &["true"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let records: Vec<_> = std::fs::read_dir(&checks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    // The good text's record, copied to the bad text's name: still refused.
    let bad_id = lexecon::policy::examples_id(&bad);
    std::fs::copy(&records[0], checks.join(hex::encode(bad_id))).unwrap();
    let out = env.supervise(&bad_policy, &["true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    env.assert_valid();
}

/// Another thread flips the exec path between an allowed program and the
/// forbidden one while the main thread execs it: the forbidden program must
/// never run, whoever wins the race at the kernel.
#[test]
fn exec_path_race_never_runs_a_blocked_program() {
    let env = Env::new();
    // Two programs whose paths differ in one byte, so that the flipping
    // thread's single-byte store never leaves a torn path: `tA` is allowed
    // (/bin/true), `tB` is the forbidden marker.
    std::fs::copy("/bin/true", env.bin.join("tA")).unwrap();
    let marker = env.cc("tB", MARKER_C);
    let racer = env.cc(
        "exec_racer",
        r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static char path[4096];
static size_t last;
static volatile unsigned long flips;
static void *flip(void *arg) {
    (void)arg;
    volatile char *c = &path[last];
    for (;;) { *c = 'B'; *c = 'A'; flips++; }
    return NULL;
}
/* argv: DIR N [until-win]: with until-win, stop as soon as the marker ran. */
int main(int argc, char **argv) {
    int n = atoi(argv[2]);
    int until_win = argc > 3;
    int ok = 0, refused = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            snprintf(path, sizeof path, "%s/tA", argv[1]);
            last = strlen(path) - 1;
            pthread_t t; pthread_create(&t, NULL, flip, NULL);
            /* make sure the flipper runs before the exec reads the path */
            while (flips < 1000) {}
            char *av[] = {path, "won.txt", NULL};
            execv(path, av);
            _exit(99);
        }
        int st; waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++; else refused++;
        if (until_win && access("won.txt", F_OK) == 0) break;
    }
    printf("ok=%d refused=%d\n", ok, refused);
    return 0;
}
"#,
    );
    // Natively the race is real: the marker runs at least once.
    let native = env.native(&[
        racer.as_os_str(),
        env.bin.as_os_str(),
        "20000".as_ref(),
        "until-win".as_ref(),
    ]);
    assert!(native.status.success());
    assert!(
        env.ws.join("won.txt").exists(),
        "the racer never reaches the marker natively: {}",
        stdout(&native)
    );
    std::fs::remove_file(env.ws.join("won.txt")).unwrap();

    let policy = block_program_policy(&env, &marker);
    let out = env.supervise(
        &policy,
        &[racer.as_os_str(), env.bin.as_os_str(), "1500".as_ref()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !env.ws.join("won.txt").exists(),
        "a blocked program ran: {}",
        stdout(&out)
    );
    let s = stdout(&out);
    assert!(
        s.contains("ok=") && !s.contains("ok=0 "),
        "the allowed program never ran: {s}"
    );
    env.assert_valid();
}

/// Another thread flips an open path between an allowed and a protected
/// file: the protected content must never be read.
#[test]
fn open_path_race_never_opens_a_blocked_file() {
    let env = Env::new();
    // Names differing in one byte: the flipping thread's store is atomic.
    std::fs::write(env.ws.join("fA"), "public").unwrap();
    std::fs::write(env.ws.join("fB"), "SECRET").unwrap();
    let racer = env.cc(
        "open_racer",
        r#"
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char path[64] = "fA";
static volatile unsigned long flips;
static void *flip(void *arg) {
    (void)arg;
    volatile char *c = &path[1];
    for (;;) { *c = 'B'; *c = 'A'; flips++; }
    return NULL;
}
/* argv: N [until-win]: with until-win, stop at the first win. */
int main(int argc, char **argv) {
    int n = atoi(argv[1]), wins = 0, opened = 0;
    int until_win = argc > 2;
    pthread_t t; pthread_create(&t, NULL, flip, NULL);
    while (flips < 1000) {}
    for (int i = 0; i < n && !(until_win && wins); i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        opened++;
        char buf[8] = {0};
        if (read(fd, buf, 6) == 6 && memcmp(buf, "SECRET", 6) == 0) wins++;
        close(fd);
    }
    printf("opened=%d wins=%d\n", opened, wins);
    return 0;
}
"#,
    );
    let native = env.native(&[racer.as_os_str(), "5000000".as_ref(), "until-win".as_ref()]);
    assert!(
        stdout(&native).contains("wins=") && !stdout(&native).contains("wins=0\n"),
        "no race natively: {}",
        stdout(&native)
    );
    let policy = env.policy(&format!(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: secret\n    open:\n      path: [\"{}/fB\"]\n    decision: block\n    reason: secret\n",
        env.ws.display()
    ));
    let out = env.supervise(&policy, &[racer.as_os_str(), "5000".as_ref()]);
    let s = stdout(&out);
    assert!(
        s.contains("wins=0\n"),
        "the protected file was read: {s} {}",
        stderr(&out)
    );
    assert!(!s.contains("opened=0 "), "nothing was opened at all: {s}");
    env.assert_valid();
}

#[test]
fn killing_the_supervisor_stops_the_tree_and_leaves_an_incomplete_ledger() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = env.policy(ALLOW_ALL);
    let script = format!(
        "echo up > started; while :; do {m} after.txt 2>/dev/null; : > tick 2>/dev/null; sleep 0.05; done",
        m = marker.display()
    );
    let mut child = env
        .supervise_cmd(&policy, &["sh", "-c", &script])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !env.ws.join("after.txt").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::remove_file(env.ws.join("after.txt")).unwrap();
    // Give any survivor ample time to act.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !env.ws.join("after.txt").exists(),
        "the tree still executes after the supervisor died"
    );
    // No process of the tree is left.
    let ps = Command::new("pgrep")
        .arg("-f")
        .arg(env.ws.join("after.txt"))
        .output();
    if let Ok(ps) = ps {
        assert!(
            stdout(&ps).trim().is_empty() || !ps.status.success(),
            "survivors: {}",
            stdout(&ps)
        );
    }
    let (code, out) = env.verify();
    assert!(out.contains("Status: INCOMPLETE"), "exit {code}:\n{out}");
    assert!(!out.contains("Status: INVALID"));
}

#[test]
fn observe_mode_records_what_would_be_blocked_and_allows_it() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = block_program_policy(&env, &marker);
    let out = env
        .supervise_cmd(&policy, &[marker.as_os_str(), "ran.txt".as_ref()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    let summary = env.root.join("summary.json");
    let step = env.root.join("step.md");
    let mut cmd = Command::new(LEXECON);
    cmd.args([
        "supervise",
        "--allow-root-tree",
        "--mode",
        "observe",
        "--sync",
        "never",
        "--policy",
    ])
    .arg(&policy)
    .arg("--ledger")
    .arg(&env.ledger)
    .arg("--keys")
    .arg(&env.keys)
    .arg("--json-summary")
    .arg(&summary)
    .arg("--")
    .arg(&marker)
    .arg("ran.txt")
    .env("GITHUB_STEP_SUMMARY", &step)
    .current_dir(&env.ws);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(env.ws.join("ran.txt").exists());
    let recs = env.exec_records("marker");
    let last = recs.last().unwrap();
    assert_eq!(last["verdict"], "block");
    assert_eq!(last["outcome"], "allowed");
    assert!(
        last["note"].as_str().unwrap_or("").contains("observe"),
        "{last}"
    );
    // What would have been blocked, in the line, the text summary, the JSON
    // and the markdown.
    let err = stderr(&out);
    let m = marker.display();
    assert!(
        err.contains(&format!(
            "lexecon: would block exec {m} ran.txt (rule block-marker, record "
        )) && err.contains("): the marker program is forbidden; observe mode: allowed"),
        "{err}"
    );
    assert!(
        err.contains("lexecon: observe mode: 1 action would have been refused or escalated:")
            && err.contains(&format!(
                "lexecon:   would block exec {m} ran.txt (rule block-marker"
            )),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["mode"], "observe");
    assert_eq!(json["would_block"][0]["rule"], "block-marker", "{json}");
    assert_eq!(json["would_block"][0]["verdict"], "would block");
    assert_eq!(json["blocked"].as_array().unwrap().len(), 0);
    let md = std::fs::read_to_string(&step).unwrap();
    assert!(
        md.contains("**Would have been refused or escalated** (observe mode, 1):")
            && md.contains(&format!(
                "- would block ` exec {m} ran.txt ` (rule ` block-marker `"
            )),
        "{md}"
    );
    env.assert_valid();
}

#[test]
fn non_utf8_names_are_recorded_losslessly() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    let name = std::ffi::OsStr::from_bytes(b"f\xff\xfe\x01");
    let out = env.supervise(&policy, &["touch".as_ref(), name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.ws.join(name).exists());
    let text = std::fs::read_to_string(&env.ledger).unwrap();
    assert!(
        text.contains("\"b64\":"),
        "non-UTF-8 names are stored as base64"
    );
    env.assert_valid();
}

// ---------------------------------------------------------------- real programs

fn same_as_native(env: &Env, cmd: &[&str]) {
    let native = env.native(cmd);
    let policy = env.policy(ALLOW_ALL);
    let sup = env.supervise(&policy, cmd);
    assert_eq!(
        sup.status.code(),
        native.status.code(),
        "supervised stderr: {}",
        stderr(&sup)
    );
    assert_eq!(stdout(&sup), stdout(&native));
    env.assert_valid();
}

#[test]
fn bash_script_runs_unchanged() {
    let env = Env::new();
    let script = "set -e; mkdir -p a/b; for i in 1 2 3; do echo $i > a/b/$i; done; \
                  cat a/b/* | sort -r | tr '\\n' ' '; echo; ls a/b | wc -l; \
                  (cd a && pwd | sed 's|.*/||'); x=$(printf '%s' hi); echo $x; rm -r a; test ! -e a && echo gone";
    same_as_native(&env, &["bash", "-c", script]);
}

#[test]
fn python_subprocess_and_multiprocessing_run_unchanged() {
    let env = Env::new();
    let py = "import subprocess, multiprocessing, json\n\
              def sq(x): return x*x\n\
              if __name__ == '__main__':\n    \
              with multiprocessing.Pool(2) as p: r = p.map(sq, range(10))\n    \
              out = subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout\n    \
              print(json.dumps([r, out]))\n";
    same_as_native(&env, &["python3", "-c", py]);
}

#[test]
fn git_init_add_commit_runs_unchanged() {
    let env = Env::new();
    let script = "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x \
                  GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' \
                  GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'; rm -rf repo; mkdir repo && cd repo && \
                  git init -q -b main && for i in $(seq 20); do echo $i > f$i; done && git add -A && \
                  git commit -q -m msg && git log --format=%H%n%s && git status --short";
    same_as_native(&env, &["sh", "-c", script]);
}

#[test]
fn make_and_gcc_run_unchanged() {
    let env = Env::new();
    let script = "rm -rf c; mkdir c && cd c && for i in 1 2 3 4; do printf 'int f%d(void){return %d;}\\n' $i $i > f$i.c; done && \
                  printf 'int f1(void);int f2(void);int f3(void);int f4(void);\\nint main(void){return f1()+f2()+f3()+f4()-10;}\\n' > main.c && \
                  printf 'p: main.o f1.o f2.o f3.o f4.o\\n\\tgcc -o p $^\\n%%.o: %%.c\\n\\tgcc -c -o $@ $<\\n' > Makefile && \
                  make -s -j2 && ./p && echo built";
    same_as_native(&env, &["sh", "-c", script]);
}

/// When the supervisor runs as root and the tree drops its privileges, an
/// emulated open must be checked with the tree's credentials, not root's.
#[test]
fn opens_use_the_callers_credentials_when_the_supervisor_is_root() {
    // SAFETY: geteuid takes no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to drop privileges in the tree");
        return;
    }
    let env = Env::new();
    std::fs::write(env.root.join("root-only"), "root secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        env.root.join("root-only"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&env.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let py = format!(
        "import os\nos.setgroups([])\nos.setgid(65534)\nos.setuid(65534)\n\
         try:\n    print(open('{}').read())\nexcept PermissionError:\n    print('denied')\n",
        env.root.join("root-only").display()
    );
    let native = env.native(&["python3", "-c", &py]);
    assert_eq!(stdout(&native), "denied\n", "{}", stderr(&native));
    let policy = env.policy(ALLOW_ALL);
    let sup = env.supervise(&policy, &["python3", "-c", &py]);
    assert_eq!(stdout(&sup), "denied\n", "{}", stderr(&sup));
}

/// The same thread first opens as root (so the supervisor has seen its
/// root ids), then drops privileges (per thread with the raw syscalls, and
/// then for the process) and opens again: every open after the drop is
/// checked with the ids the caller has then.
#[test]
fn opens_after_the_tree_drops_privileges_use_the_new_credentials() {
    // SAFETY: geteuid takes no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to drop privileges in the tree");
        return;
    }
    let env = Env::new();
    std::fs::write(env.root.join("root-only"), "root secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        env.root.join("root-only"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&env.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let py = format!(
        "import os, ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def t():\n    try:\n        return open('{f}').read().strip()\n    except PermissionError:\n        return 'denied'\n\
         r = [t(), t()]\n\
         libc.syscall(122, 65534)  # setfsuid (x86_64)\n\
         r.append(t())\n\
         libc.syscall(122, 0)\n\
         r.append(t())\n\
         os.setgroups([])\nos.setgid(65534)\nos.setuid(65534)\n\
         r.append(t())\n\
         print(' '.join(x.replace(' ', '-') for x in r))\n",
        f = env.root.join("root-only").display()
    );
    let expected = "root-secret root-secret denied root-secret denied\n";
    let native = env.native(&["python3", "-c", &py]);
    assert_eq!(stdout(&native), expected, "{}", stderr(&native));
    let policy = env.policy(ALLOW_ALL);
    let sup = env.supervise(&policy, &["python3", "-c", &py]);
    assert_eq!(stdout(&sup), expected, "{}", stderr(&sup));
}

#[test]
fn running_a_blocked_program_through_the_dynamic_loader_is_refused() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let ld = "/lib64/ld-linux-x86-64.so.2";
    let native = env.native(&[ld.as_ref(), marker.as_os_str(), "native.txt".as_ref()]);
    assert!(
        native.status.success() && env.ws.join("native.txt").exists(),
        "the loader does not run programs natively"
    );
    let policy = block_program_policy(&env, &marker);
    let out = env.supervise(
        &policy,
        &[ld.as_ref(), marker.as_os_str(), "ran.txt".as_ref()],
    );
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!env.ws.join("ran.txt").exists());
    let out = env.supervise(
        &policy,
        &[
            "sh".as_ref(),
            "-c".as_ref(),
            format!("{ld} --inhibit-cache {} ran.txt", marker.display()).as_ref()
                as &std::ffi::OsStr,
        ],
    );
    assert!(!env.ws.join("ran.txt").exists(), "{}", stderr(&out));
    env.assert_valid();
}

#[test]
fn removing_moving_linking_or_truncating_a_protected_file_is_refused() {
    let env = Env::new();
    let policy = env.protected_data();
    let py = "import os\n\
              def t(name, f):\n    try:\n        f(); print(name, 'ok')\n    except OSError as e:\n        print(name, e.errno)\n\
              t('rename', lambda: os.rename('protected/data', 'moved'))\n\
              t('link', lambda: os.link('protected/data', 'alias'))\n\
              t('unlink', lambda: os.unlink('protected/data'))\n\
              t('truncate', lambda: os.truncate('protected/data', 0))\n\
              t('replace-into', lambda: (open('evil','w').write('evil'), os.replace('evil', 'protected/data')))\n\
              print(open('protected/data').read(), end='')\n";
    let native_env = Env::new();
    std::fs::create_dir(native_env.ws.join("protected")).unwrap();
    std::fs::write(native_env.ws.join("protected/data"), "original\n").unwrap();
    let native = native_env.native(&["python3", "-c", py]);
    assert!(
        stdout(&native).contains("rename ok"),
        "the attacks work natively: {}",
        stdout(&native)
    );
    let out = env.supervise(&policy, &["python3", "-c", py]);
    let s = stdout(&out);
    for op in ["rename", "link", "unlink", "truncate", "replace-into"] {
        assert!(
            s.contains(&format!("{op} 1\n")),
            "{op} was not refused with EPERM: {s}\n{}",
            stderr(&out)
        );
    }
    assert!(s.ends_with("original\n"), "{s}");
    assert_eq!(
        std::fs::read_to_string(env.ws.join("protected/data")).unwrap(),
        "original\n"
    );
    assert!(!env.ws.join("moved").exists() && !env.ws.join("alias").exists());
    env.assert_valid();
}

#[test]
fn path_operations_behave_exactly_as_natively() {
    let env = Env::new();
    let probe = r#"
import os, errno
def reset():
    import shutil
    for n in os.listdir('.'):
        if os.path.isdir(n) and not os.path.islink(n): shutil.rmtree(n)
        else: os.unlink(n)
    os.mkdir('d'); open('d/x', 'w').write('x'); os.mkdir('empty')
    open('f', 'w').write('hello\n'); open('g', 'w').write('g\n')
    os.symlink('f', 'lf'); os.symlink('nowhere', 'dangling')
def t(name, f):
    reset()
    try:
        f(); r = 'ok'
    except OSError as e:
        r = errno.errorcode[e.errno]
    state = sorted((n, os.path.islink(n), open(n).read() if os.path.isfile(n) else None) for n in os.listdir('.'))
    print(name, r, state)
t('unlink file', lambda: os.unlink('f'))
t('unlink dir', lambda: os.unlink('d'))
t('unlink missing', lambda: os.unlink('missing'))
t('unlink symlink', lambda: os.unlink('lf'))
t('unlink dangling', lambda: os.unlink('dangling'))
t('rmdir nonempty', lambda: os.rmdir('d'))
t('rmdir empty', lambda: os.rmdir('empty'))
t('rmdir file', lambda: os.rmdir('f'))
t('rename new', lambda: os.rename('f', 'f2'))
t('rename over', lambda: os.rename('f', 'g'))
t('rename symlink', lambda: os.rename('lf', 'lf2'))
t('rename dir into itself', lambda: os.rename('d', 'd/sub'))
t('rename missing', lambda: os.rename('missing', 'x'))
t('link', lambda: os.link('f', 'hard'))
t('link exists', lambda: os.link('f', 'g'))
t('link dir', lambda: os.link('d', 'dd'))
t('link symlink nofollow', lambda: os.link('lf', 'hl', follow_symlinks=False))
t('link symlink follow', lambda: os.link('lf', 'hl', follow_symlinks=True))
t('truncate', lambda: os.truncate('f', 2))
t('truncate via symlink', lambda: os.truncate('lf', 1))
t('truncate dir', lambda: os.truncate('d', 0))
t('unlinkat dirfd', lambda: os.unlink('x', dir_fd=os.open('d', os.O_RDONLY)))
t('rename trailing slash', lambda: os.rename('empty/', 'empty2'))
"#;
    std::fs::write(env.root.join("probe.py"), probe).unwrap();
    let p = env.root.join("probe.py");
    let cmd = ["python3".as_ref(), p.as_os_str()];
    let native = env.native(&cmd);
    assert!(native.status.success(), "{}", stderr(&native));
    let policy = env.policy(ALLOW_ALL);
    let sup = env.supervise(&policy, &cmd);
    assert!(sup.status.success(), "{}", stderr(&sup));
    let (n, s) = (stdout(&native), stdout(&sup));
    for (a, b) in n.lines().zip(s.lines()) {
        assert_eq!(a, b, "native and supervised differ");
    }
    assert_eq!(n.lines().count(), s.lines().count());
    env.assert_valid();
}

#[test]
fn summaries_for_ci_json_step_summary_and_fail_on_block() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = block_program_policy(&env, &marker);
    let summary = env.root.join("summary.json");
    let step = env.root.join("step.md");
    let script = format!("{} x.txt; exit 0", marker.display());
    let out = Command::new(LEXECON)
        .args([
            "supervise",
            "--allow-root-tree",
            "--sync",
            "never",
            "--fail-on-block",
            "--policy",
        ])
        .arg(&policy)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .arg("--json-summary")
        .arg(&summary)
        .args(["--", "sh", "-c", &script])
        .env("GITHUB_STEP_SUMMARY", &step)
        .current_dir(&env.ws)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "--fail-on-block turns a blocked run into a failure: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let blocks = json["counts"]["refused"].as_u64().unwrap();
    assert!(blocks >= 1, "{json}");
    // Why the exit status is 1, in one line naming the count and the flag.
    assert!(
        err.contains(&format!(
            "lexecon: exit status 1 although the command succeeded: {blocks} action{} blocked and --fail-on-block is set",
            if blocks == 1 { " was" } else { "s were" }
        )),
        "{err}"
    );
    // The code returned and the command's own status, apart.
    assert_eq!(json["exit_code"], 1, "{json}");
    assert_eq!(json["exit_reason"], "fail-on-block");
    assert_eq!(json["command"]["exit_code"], 0);
    assert_eq!(json["command"]["exit_status"], 0);
    assert_eq!(json["exit_status"], 0);
    assert_eq!(json["blocked"][0]["rule"], "block-marker");
    assert_eq!(
        json["blocked"][0]["reason"],
        "the marker program is forbidden"
    );
    assert_eq!(json["sealed"], true);
    // The policy and its hash, as the run header records them.
    let header = env
        .records()
        .into_iter()
        .find(|r| r["kind"] == "run")
        .unwrap();
    let hash = header["policy_sha256"].as_str().unwrap().to_string();
    assert_eq!(json["policy"]["sha256"], hash.as_str());
    assert_eq!(json["policy"]["path"], policy.to_str().unwrap());
    let md = std::fs::read_to_string(&step).unwrap();
    for want in [
        "| judged |",
        "Exit status **1**: the command exited with status 0;",
        "`--fail-on-block`",
        &format!(
            "Policy: ` {} ` (SHA-256 `{hash}`), enforce mode.",
            policy.display()
        ),
        "- blocked ` exec ",
        "(rule ` block-marker `, record ",
        ": ` the marker program is forbidden `",
    ] {
        assert!(md.contains(want), "{want:?} missing from:\n{md}");
    }
    assert!(
        err.contains("lexecon verify"),
        "the summary says how to verify: {err}"
    );
    // Said with --quiet too.
    let quiet = Command::new(LEXECON)
        .args([
            "supervise",
            "--allow-root-tree",
            "--sync",
            "never",
            "--fail-on-block",
            "--quiet",
            "--policy",
        ])
        .arg(&policy)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .args(["--", "sh", "-c", &script])
        .current_dir(&env.ws)
        .output()
        .unwrap();
    assert_eq!(quiet.status.code(), Some(1));
    let qerr = stderr(&quiet);
    assert!(qerr.contains("--fail-on-block is set"), "{qerr}");
    // No summary; the block line only once, told to the denied process
    // (its stderr is the same pipe, and the supervisor printed none).
    assert!(!qerr.contains("actions judged"), "{qerr}");
    assert_eq!(qerr.matches("lexecon: blocked exec ").count(), 1, "{qerr}");
    env.assert_valid();
}

#[test]
fn signals_to_the_supervisor_reach_the_command() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    let script = "trap 'echo got-term > term.txt; exit 42' TERM; echo ready > ready.txt; while :; do sleep 0.05; done";
    let mut child = env
        .supervise_cmd(&policy, &["bash", "-c", script])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !env.ws.join("ready.txt").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(
        std::fs::read_to_string(env.ws.join("term.txt")).unwrap(),
        "got-term\n"
    );
    env.assert_valid();
}

#[test]
fn signals_aimed_at_the_supervisor_are_refused_and_recorded() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    // The supervisor is the parent of the command.
    let py = "import os, signal\n\
              sup = os.getppid()\n\
              for name, f in [('kill', lambda: os.kill(sup, signal.SIGKILL)),\n\
                              ('stop', lambda: os.kill(sup, signal.SIGSTOP)),\n\
                              ('probe', lambda: os.kill(sup, 0)),\n\
                              ('killpg-all', lambda: os.kill(-1, signal.SIGTERM))]:\n    \
              try:\n        f(); print(name, 'ok')\n    except OSError as e:\n        print(name, e.errno)\n\
              print('alive')\n";
    let out = env.supervise(&policy, &["python3", "-c", py]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s} {}", stderr(&out));
    assert!(
        s.contains("kill 1\n") && s.contains("stop 1\n") && s.contains("killpg-all 1\n"),
        "{s}"
    );
    assert!(s.contains("alive"));
    let refusals: Vec<_> = env
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "refusal")
        .collect();
    assert!(refusals.len() >= 3, "{refusals:#?}");
    assert!(refusals
        .iter()
        .all(|r| r["rule"] == "lexecon.self-protect.signal"));
    env.assert_valid();
}

/// A `program:` rule written with a path through a symlinked directory (as
/// `/bin/…` is on merged-/usr systems) still names the file: the program is
/// judged as the rule names it, whatever path the kernel resolved.
#[test]
fn program_rules_name_the_file_not_only_the_path() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    std::os::unix::fs::symlink(&env.bin, env.root.join("bin-link")).unwrap();
    let policy = block_program_policy(&env, &env.root.join("bin-link/marker"));
    let out = env.supervise(&policy, &[marker.as_os_str(), "ran.txt".as_ref()]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!env.ws.join("ran.txt").exists());
    let recs = env.exec_records("marker");
    assert_eq!(recs[0]["rule"], "block-marker", "{recs:#?}");
    assert!(
        recs[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the same file as"),
        "{recs:#?}"
    );
    env.assert_valid();
}

/// A vfork child shares its parent's memory, and only the calling thread of
/// the parent is suspended: another parent thread rewrites the child's exec
/// path. The forbidden program must never run.
#[test]
fn vfork_child_whose_path_another_thread_rewrites_never_runs_a_blocked_program() {
    let env = Env::new();
    std::fs::copy("/bin/true", env.bin.join("tA")).unwrap();
    let marker = env.cc("tB", MARKER_C);
    let racer = env.cc(
        "vfork_racer",
        r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static char path[4096];
static size_t last;
static volatile unsigned long flips;
static void *flip(void *arg) {
    (void)arg;
    volatile char *c = &path[last];
    for (;;) { *c = 'B'; *c = 'A'; flips++; }
    return NULL;
}
/* argv: DIR N [until-win] */
int main(int argc, char **argv) {
    int n = atoi(argv[2]), until_win = argc > 3, ok = 0, refused = 0;
    snprintf(path, sizeof path, "%s/tA", argv[1]);
    last = strlen(path) - 1;
    pthread_t t; pthread_create(&t, NULL, flip, NULL);
    while (flips < 1000) {}
    char *av[] = {path, "won.txt", NULL};
    for (int i = 0; i < n; i++) {
        pid_t p = vfork();
        if (p == 0) { execv(path, av); _exit(99); }
        int st; waitpid(p, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++; else refused++;
        if (until_win && access("won.txt", F_OK) == 0) break;
    }
    printf("ok=%d refused=%d\n", ok, refused);
    return 0;
}
"#,
    );
    let native = env.native(&[
        racer.as_os_str(),
        env.bin.as_os_str(),
        "20000".as_ref(),
        "until-win".as_ref(),
    ]);
    assert!(native.status.success());
    assert!(
        env.ws.join("won.txt").exists(),
        "the race never reaches the marker natively: {}",
        stdout(&native)
    );
    std::fs::remove_file(env.ws.join("won.txt")).unwrap();
    let policy = block_program_policy(&env, &marker);
    let out = env.supervise(
        &policy,
        &[racer.as_os_str(), env.bin.as_os_str(), "1000".as_ref()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !env.ws.join("won.txt").exists(),
        "a blocked program ran: {}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("ok=0 "),
        "the allowed program never ran: {}",
        stdout(&out)
    );
    env.assert_valid();
}

/// `cmd` with its umask set to `mask` before it starts (as a shell would
/// have it).
fn with_umask(mut cmd: Command, mask: libc::mode_t) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and takes an integer only.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// The tree inherits the user's umask (the supervisor itself runs with
/// umask 0): files and directories created by emulated `open(O_CREAT)`,
/// by `mkdir`, `git init` and `python3 -m venv` get the same modes as
/// natively.
#[test]
fn the_tree_keeps_the_users_umask() {
    let env = Env::new();
    let venv = Command::new("python3")
        .args(["-c", "import venv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv {
        eprintln!("note: python3 has no venv module: the venv part of this test is skipped");
    }
    let script = format!(
        "umask; rm -rf out; mkdir out && cd out && \
         python3 -c 'import os; os.close(os.open(\"creat\", os.O_CREAT | os.O_WRONLY, 0o666))' && \
         : > shell-created && mkdir d && mkdir -p p/q && touch t && \
         GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git init -q g && \
         {venv} find . -printf '%m %y %p\\n' | sort",
        venv = if venv {
            "python3 -m venv --without-pip v &&"
        } else {
            ""
        }
    );
    let policy = env.policy(ALLOW_ALL);
    let mut seen = Vec::new();
    for mask in [0o022, 0o077] {
        let mut native = Command::new("sh");
        native.args(["-c", &script]).current_dir(&env.ws);
        let native = with_umask(native, mask);
        assert!(native.status.success(), "native: {}", stderr(&native));
        let n = stdout(&native);
        assert!(n.starts_with(&format!("{mask:04o}\n")), "{n}");
        let sup = with_umask(env.supervise_cmd(&policy, &["sh", "-c", &script]), mask);
        assert!(sup.status.success(), "supervised: {}", stderr(&sup));
        assert_eq!(stdout(&sup), n, "modes differ natively and supervised");
        for probe in ["./creat", "./d", "./g/.git/config"] {
            assert!(n.contains(probe), "{probe} missing:\n{n}");
        }
        if venv {
            assert!(n.contains("./v/pyvenv.cfg"), "{n}");
        }
        seen.push(n);
    }
    assert_ne!(seen[0], seen[1], "the two umasks give different modes");
    assert!(seen[1].contains("600 f ./creat") && seen[1].contains("700 d ./d"));
    env.assert_valid();
}

/// `md` with every code span removed (CommonMark: a run of N backticks
/// opens a span that the next run of exactly N backticks closes).
fn outside_code_spans(md: &str) -> String {
    let mut out = String::new();
    let b = md.as_bytes();
    let run_at = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => i = end,
            None => {
                out.push_str(&md[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// Argv chosen to rewrite what a human reads (a carriage return, erase-line
/// and conceal sequences, a newline followed by a table row, an image, HTML
/// and backticks) is shown escaped in the block lines on stderr and cannot
/// add rows, images or links to the `$GITHUB_STEP_SUMMARY` markdown.
#[test]
fn block_lines_and_summaries_show_agent_bytes_escaped() {
    let env = Env::new();
    let marker = env.cc("marker", MARKER_C);
    let policy = block_program_policy(&env, &marker);
    let step = env.root.join("step.md");
    let script = format!(
        r#"m={m}
$m "$(printf 'x\r\033[2K  exec git status\033[8m')"
$m "$(printf 'a\n| 9 | 9 | 9 | 9 |\n![x](http://evil.example/x.png) <img src=x> [l](http://evil.example) `b`')"
exit 0"#,
        m = marker.display()
    );
    let out = Command::new(LEXECON)
        .args(["supervise", "--allow-root-tree", "--sync", "never"])
        .arg("--policy")
        .arg(&policy)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .args(["--", "sh", "-c", &script])
        .env("GITHUB_STEP_SUMMARY", &step)
        .current_dir(&env.ws)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains('\x1b') && !err.contains('\r'),
        "raw control bytes on stderr: {err:?}"
    );
    assert!(
        err.contains(&format!(
            "lexecon: blocked exec {} $'x\\r\\x1b[2K  exec git status\\x1b[8m' (rule block-marker",
            marker.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("$'a\\n| 9 | 9 | 9 | 9 |\\n![x](http://evil.example/x.png)"),
        "{err}"
    );
    let md = std::fs::read_to_string(&step).unwrap();
    assert!(md.contains("block-marker"), "{md}");
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 3, "the table has one row only:\n{md}");
    let blocked: Vec<&str> = md.lines().filter(|l| l.starts_with("- blocked ")).collect();
    assert_eq!(blocked.len(), 2, "one line per block:\n{md}");
    assert!(!md.contains('\x1b') && !md.contains('\r'), "{md:?}");
    let bare = outside_code_spans(&md);
    for bad in ["![", "](", "<img", "evil.example", "| 9 |"] {
        assert!(!bare.contains(bad), "{bad} outside a code span:\n{md}");
    }
    env.assert_valid();
}

/// `lexecon supervise` with `env`'s keys and ledger, run in `dir` with
/// `home` as `$HOME`.
fn supervise_in(
    env: &Env,
    dir: &Path,
    home: &Path,
    extra: &[&str],
    cmd: &[&str],
) -> std::process::Output {
    let policy = env.policy(ALLOW_ALL);
    Command::new(LEXECON)
        .args(["supervise", "--allow-root-tree", "--sync", "never"])
        .arg("--policy")
        .arg(&policy)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .args(extra)
        .arg("--")
        .args(cmd)
        .env("HOME", home)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The workspace is never silently `/`, `$HOME` or an ancestor of `$HOME`:
/// such a run is refused before anything starts (exit 125, nothing
/// recorded), unless `--allow-broad-workspace` accepts it.
#[test]
fn a_broad_workspace_is_refused_unless_accepted() {
    let env = Env::new();
    let home = env.root.join("home/me");
    std::fs::create_dir_all(&home).unwrap();
    let marker = env.root.join("ran");
    let touch = format!("touch {}", marker.display());
    let cmd = ["sh", "-c", touch.as_str()];
    let cases: [(&Path, &[&str], &str); 5] = [
        (Path::new("/"), &[], "the root directory"),
        (&home, &[], "your home directory"),
        (
            &env.root.join("home"),
            &[],
            "an ancestor of your home directory",
        ),
        (&env.ws, &["--workspace", "/"], "the root directory"),
        (
            &env.ws,
            &["--workspace", "../home/me"],
            "your home directory",
        ),
    ];
    for (dir, extra, what) in cases {
        let out = supervise_in(&env, dir, &home, extra, &cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{dir:?} {extra:?}: {err}");
        assert!(
            err.contains(what) && err.contains("--allow-broad-workspace"),
            "{err}"
        );
        assert!(err.contains("--workspace DIR"), "says what to do: {err}");
        assert!(!marker.exists(), "the command ran");
        assert!(!env.ledger.exists(), "a refused run records nothing");
    }
    // Accepted: the run starts, and says which workspace it has.
    let out = supervise_in(
        &env,
        Path::new("/"),
        &home,
        &["--allow-broad-workspace"],
        &cmd,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(marker.exists());
    assert!(
        stderr(&out).contains("lexecon: workspace / "),
        "{}",
        stderr(&out)
    );
    let header = &env.records()[0];
    assert_eq!(header["kind"], "run");
    assert_eq!(header["workspace"], "/");
    env.assert_valid();
}

/// `--workspace DIR` is what `${WORKSPACE}` means; it is printed when the
/// run starts (not with `--quiet`) and recorded in the run header, next to
/// the directory the command started in.
#[test]
fn the_workspace_option_binds_the_policy_and_is_recorded() {
    let env = Env::new();
    let other = env.root.join("other");
    std::fs::create_dir(&other).unwrap();
    let policy = env.policy(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: ws-read-only\n    open:\n      path: [\"${WORKSPACE}/**\"]\n      access: [write, create, truncate]\n    decision: block\n    reason: the workspace is read-only here\n",
    );
    let script = format!(
        "touch here; echo \"here=$?\"; touch {o}/there; echo \"there=$?\"",
        o = other.display()
    );
    let out = env
        .supervise_cmd_with(
            &policy,
            &["--workspace", "../other"],
            &["sh", "-c", &script],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "here=0\nthere=1\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("lexecon: workspace {} (", other.display())),
        "{}",
        stderr(&out)
    );
    let header = &env.records()[0];
    assert_eq!(header["workspace"], other.to_str().unwrap());
    assert_eq!(header["cwd"], env.ws.to_str().unwrap());
    env.assert_valid();
    let quiet = env
        .supervise_cmd_with(&policy, &["--quiet"], &["true"])
        .output()
        .unwrap();
    assert!(
        !stderr(&quiet).contains("lexecon: workspace"),
        "{}",
        stderr(&quiet)
    );
}

/// A command that would run as root (or with capabilities) does not start
/// unless `--allow-root-tree` (or `LEXECON_ALLOW_ROOT_TREE=1`) accepts it;
/// an accepted one is announced with what it weakens. Unprivileged, the
/// same command line starts without a word about it.
#[test]
fn a_root_tree_is_refused_unless_accepted() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    let marker = env.ws.join("ran");
    let base = |extra: &[&str]| {
        let mut c = Command::new(LEXECON);
        c.args(["supervise", "--sync", "never", "--policy"])
            .arg(&policy)
            .arg("--ledger")
            .arg(&env.ledger)
            .arg("--keys")
            .arg(&env.keys)
            .args(extra)
            .args(["--", "touch"])
            .arg(&marker)
            .env_remove("LEXECON_ALLOW_ROOT_TREE")
            .current_dir(&env.ws);
        c
    };
    // SAFETY: geteuid and getuid take no arguments.
    let root = unsafe { libc::geteuid() == 0 || libc::getuid() == 0 };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ambient = status
        .lines()
        .find_map(|l| l.strip_prefix("CapAmb:"))
        .is_some_and(|v| u64::from_str_radix(v.trim(), 16).unwrap() != 0);
    if !root && !ambient {
        let out = base(&[]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!stderr(&out).contains("root"), "{}", stderr(&out));
        eprintln!("note: not root: only the unprivileged case was checked");
        return;
    }
    let out = base(&[]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    for what in [
        "the command would run ",
        "signing key",
        "rewrite the ledger",
        "raw block device",
        "capabilities bypass the permission checks",
        "unprivileged user",
        "--allow-root-tree",
    ] {
        assert!(err.contains(what), "{what:?} missing: {err}");
    }
    assert!(!marker.exists(), "the command ran");
    assert!(!env.ledger.exists(), "a refused run records nothing");

    let out = base(&["--allow-root-tree"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(marker.exists());
    assert!(
        stderr(&out).contains("lexecon: warning: accepted by --allow-root-tree: the command runs ")
            && stderr(&out).contains("raw block device"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&marker).unwrap();
    let out = base(&[])
        .env("LEXECON_ALLOW_ROOT_TREE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(marker.exists());
    assert!(
        stderr(&out).contains("warning: accepted by LEXECON_ALLOW_ROOT_TREE=1: "),
        "{}",
        stderr(&out)
    );
    let quiet = base(&["--allow-root-tree", "--quiet"]).output().unwrap();
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
    env.assert_valid();
}

/// One supervised `true` with `--anchor-out`, a JSON summary and a step
/// summary: (stderr, JSON summary, step summary).
fn run_with_anchor_out(env: &Env, anchors: &Path) -> (String, serde_json::Value, String) {
    let policy = env.policy(ALLOW_ALL);
    let summary = env.root.join("summary.json");
    let step = env.root.join("step.md");
    let _ = std::fs::remove_file(&step);
    let out = Command::new(LEXECON)
        .args([
            "supervise",
            "--allow-root-tree",
            "--sync",
            "never",
            "--policy",
        ])
        .arg(&policy)
        .arg("--ledger")
        .arg(&env.ledger)
        .arg("--keys")
        .arg(&env.keys)
        .arg("--json-summary")
        .arg(&summary)
        .arg("--anchor-out")
        .arg(anchors)
        .args(["--", "true"])
        .env("GITHUB_STEP_SUMMARY", &step)
        .current_dir(&env.ws)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (stderr(&out), json, std::fs::read_to_string(&step).unwrap())
}

fn verify_with_anchors(env: &Env, anchors: &Path) -> (i32, String) {
    let out = Command::new(LEXECON)
        .arg("verify")
        .arg(&env.ledger)
        .arg("--pubkey")
        .arg(env.pubkey())
        .arg("--anchor")
        .arg(anchors)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out))
}

#[test]
fn anchors_published_by_the_supervisor_catch_a_cut_at_a_run_boundary() {
    let env = Env::new();
    let anchors = env.root.join("anchors.txt");
    let (err1, json1, md1) = run_with_anchor_out(&env, &anchors);
    let cut = std::fs::metadata(&env.ledger).unwrap().len();
    let (err2, json2, md2) = run_with_anchor_out(&env, &anchors);

    // One line per run, the same in the terminal summary, the JSON summary
    // and the step summary.
    let text = std::fs::read_to_string(&anchors).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, (err, json, md)) in lines
        .iter()
        .zip([(&err1, &json1, &md1), (&err2, &json2, &md2)])
    {
        let run = json["run_id"].as_str().unwrap();
        assert!(
            line.starts_with(&format!("lexecon-anchor/v1 lexecon/{run} ")),
            "{line}"
        );
        assert_eq!(json["anchor"], *line);
        assert!(
            err.lines()
                .any(|l| l.starts_with("lexecon: anchor") && l.ends_with(line)),
            "{err}"
        );
        assert!(md.contains(&format!("```\n{line}\n```")), "{md}");
    }
    let (code, out) = verify_with_anchors(&env, &anchors);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Anchors: 2 checked, 2 held"), "{out}");

    // Run 2 cut off at the run boundary: the ledger alone still verifies,
    // against the anchors it does not.
    let full = std::fs::read(&env.ledger).unwrap();
    std::fs::write(&env.ledger, &full[..cut as usize]).unwrap();
    env.assert_valid();
    let run2 = json2["run_id"].as_str().unwrap();
    let (code, out) = verify_with_anchors(&env, &anchors);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("run {run2}, tree size")) && out.contains("is not in the ledger"),
        "{out}"
    );

    // A new supervised run chained onto the cut: still caught.
    let later = env.root.join("later.txt");
    run_with_anchor_out(&env, &later);
    env.assert_valid();
    let (code, out) = verify_with_anchors(&env, &anchors);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Anchors: 2 checked, 1 held, 1 not held"),
        "{out}"
    );
    assert!(out.contains(&format!("no run {run2}")), "{out}");
}

/// The number in `lexecon: … (rule R, record N)` of the first line of `err`
/// that starts with `head`.
fn record_of(err: &str, head: &str) -> u64 {
    let line = err
        .lines()
        .find(|l| l.starts_with(head))
        .unwrap_or_else(|| panic!("no line starting with {head:?} in:\n{err}"));
    let at = line.find(", record ").expect(line) + ", record ".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The ledger record numbered `seq`.
fn record(env: &Env, seq: u64) -> serde_json::Value {
    env.records()
        .into_iter()
        .find(|r| r["seq"].as_str() == Some(seq.to_string().as_str()))
        .unwrap_or_else(|| panic!("no record {seq}"))
}

#[test]
fn block_lines_name_the_real_operation_and_the_rules_reason() {
    let env = Env::new();
    let policy = env.protected_data();
    std::fs::create_dir(env.ws.join("protected/sub")).unwrap();
    let py = "import os, ctypes\n\
              libc = ctypes.CDLL(None, use_errno=True)\n\
              def t(f):\n    try:\n        f()\n    except OSError:\n        pass\n\
              t(lambda: os.unlink('protected/data'))\n\
              t(lambda: os.rename('protected/data', 'moved'))\n\
              t(lambda: (open('evil', 'w').write('e'), os.replace('evil', 'protected/data')))\n\
              t(lambda: os.link('protected/data', 'alias'))\n\
              t(lambda: os.truncate('protected/data', 0))\n\
              t(lambda: os.rmdir('protected/sub'))\n\
              t(lambda: os.open('protected/sub', os.O_TMPFILE | os.O_WRONLY, 0o600))\n\
              print('creat', libc.syscall(85, b'protected/new', 0o644))\n\
              t(lambda: open('protected/data', 'a'))\n";
    let out = env.supervise(&policy, &["python3", "-c", py]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("creat -1"), "{}", stdout(&out));
    let err = stderr(&out);
    let ws = env.ws.display();
    let data = format!("{ws}/protected/data");
    for (head, access) in [
        (format!("lexecon: blocked unlink {data} "), "write,truncate"),
        (format!("lexecon: blocked rename {data} "), "read,write"),
        (
            format!("lexecon: blocked rename to {data} "),
            "write,create,truncate",
        ),
        (format!("lexecon: blocked link {data} "), "read,write"),
        (
            format!("lexecon: blocked truncate {data} "),
            "write,truncate",
        ),
        (
            format!("lexecon: blocked rmdir {ws}/protected/sub "),
            "write,directory",
        ),
        (
            format!("lexecon: blocked open O_TMPFILE in {ws}/protected/sub ("),
            "write,create",
        ),
        (
            format!("lexecon: blocked creat {ws}/protected/new "),
            "write,create,truncate",
        ),
        (
            format!("lexecon: blocked open {data} (write,create,append) "),
            "write,append",
        ),
    ] {
        let line = err.lines().find(|l| l.starts_with(&head));
        let line = line.unwrap_or_else(|| panic!("no {head:?} in:\n{err}"));
        assert!(
            line.contains("(rule protect, record ") && line.ends_with("): protected data"),
            "{line}"
        );
        // The record is an open with the access the operation amounts to,
        // and names the operation.
        let r = record(&env, record_of(&err, &head));
        assert_eq!(r["kind"], "decision", "{r}");
        assert_eq!(r["action"]["kind"], "open", "{r}");
        let verb = head["lexecon: blocked ".len()..].split(' ').next().unwrap();
        let op = match verb {
            "unlink" | "rmdir" => "delete",
            "rename" | "link" | "truncate" => verb,
            _ => "open",
        };
        assert_eq!(r["action"]["op"], op, "{r}");
        // No note names the call any more (an O_TMPFILE open keeps its own).
        assert!(
            r.get("note").is_none() || verb == "open" && head.contains("O_TMPFILE"),
            "{r}"
        );
        assert_eq!(r["outcome"], "refused", "{r}");
        assert_eq!(r["rule"], "protect", "{r}");
        let recorded: Vec<&str> = r["action"]["access"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_else(|| r["action"]["access"].as_str().unwrap().split(',').collect());
        for a in access.split(',') {
            assert!(recorded.contains(&a), "{a} not in {r}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(env.ws.join("protected/data")).unwrap(),
        "original\n"
    );
    env.assert_valid();
}

#[test]
fn identical_blocks_are_folded_and_counted_and_a_different_one_is_shown() {
    let env = Env::new();
    let policy = env.protected_data();
    let summary = env.root.join("summary.json");
    let py = "for i in range(30):\n    \
              try:\n        open('protected/data', 'w')\n    except OSError:\n        pass\n    \
              if i == 14:\n        \
              try:\n            open('protected/other', 'w')\n        except OSError:\n            pass\n";
    let out = env
        .supervise_cmd_with(
            &policy,
            &["--json-summary", summary.to_str().unwrap()],
            &["python3", "-c", py],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let data = format!(
        "lexecon: blocked open {}/protected/data (write,create,truncate) (rule protect, record ",
        env.ws.display()
    );
    let other = format!(
        "lexecon: blocked open {}/protected/other (write,create,truncate) (rule protect, record ",
        env.ws.display()
    );
    assert_eq!(err.matches(&data).count(), 1, "{err}");
    assert_eq!(err.matches(&other).count(), 1, "{err}");
    // The summary gives the count.
    assert!(
        err.contains(&format!(
            "lexecon:   blocked open {}/protected/data (write,create,truncate) ×30 (rule protect, records ",
            env.ws.display()
        )),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let blocked = json["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 2, "{json}");
    assert_eq!(blocked[0]["count"], 30);
    assert_eq!(blocked[1]["count"], 1);
    // Every refusal is in the ledger all the same.
    let refused = env
        .open_records(&env.ws.join("protected/data"))
        .into_iter()
        .filter(|r| r["outcome"] == "refused")
        .count();
    assert_eq!(refused, 30);
    env.assert_valid();
}

#[test]
fn the_step_summary_lists_the_first_50_blocks_and_counts_the_rest() {
    let env = Env::new();
    let policy = env.protected_data();
    let step = env.root.join("step.md");
    let py = "for i in range(60):\n    \
              try:\n        open('protected/f%02d' % i, 'w')\n    except OSError:\n        pass\n";
    let out = env
        .supervise_cmd(&policy, &["python3", "-c", py])
        .env("GITHUB_STEP_SUMMARY", &step)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = std::fs::read_to_string(&step).unwrap();
    let items: Vec<&str> = md.lines().filter(|l| l.starts_with("- blocked ")).collect();
    assert_eq!(items.len(), 50, "{md}");
    assert!(items[0].contains("/protected/f00 "), "{md}");
    assert!(items[49].contains("/protected/f49 "), "{md}");
    assert!(md.contains("**Blocked** (60):"), "{md}");
    assert!(
        md.contains("- and 10 more (the ledger has them all)"),
        "{md}"
    );
    assert!(
        md.contains("Exit status **0**: the command exited with status 0."),
        "{md}"
    );
    env.assert_valid();
}

/// A policy blocking `rm` (rule `block-rm-rf`).
fn block_rm_policy(env: &Env) -> std::path::PathBuf {
    env.policy(
        "version: 1\nmode: enforce\ndefaults:\n  exec: allow\n  open: allow\nrules:\n  - id: block-rm-rf\n    exec:\n      program: \"**/rm\"\n    decision: block\n    reason: recursive removal is not allowed here\n",
    )
}

#[test]
fn the_denied_process_is_told_why_on_its_own_stderr() {
    let env = Env::new();
    let policy = block_rm_policy(&env);
    std::fs::create_dir(env.ws.join("x")).unwrap();
    let script = r#"rm -rf "$(printf 'x\033[2K')" 2>err.txt; rm -rf x 2>>err.txt; exit 0"#;
    let out = env.supervise(&policy, &["sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let told = std::fs::read_to_string(env.ws.join("err.txt")).unwrap();
    assert!(!told.contains('\x1b'), "raw control bytes: {told:?}");
    let lines: Vec<&str> = told.lines().filter(|l| l.starts_with("lexecon:")).collect();
    // One line per refused command (a shell trying each directory of PATH
    // is told once), each with the rule, the record and the reason.
    assert_eq!(lines.len(), 2, "{told}");
    assert!(
        lines[0]
            .starts_with("lexecon: blocked exec rm -rf $'x\\x1b[2K' (rule block-rm-rf, record ")
            && lines[0].ends_with("): recursive removal is not allowed here"),
        "{told}"
    );
    assert!(
        lines[1].starts_with("lexecon: blocked exec rm -rf x (rule block-rm-rf, record "),
        "{told}"
    );
    let r = record(&env, record_of(&told, "lexecon: blocked exec rm -rf x "));
    assert_eq!(r["rule"], "block-rm-rf");
    assert_eq!(r["outcome"], "refused");
    assert_eq!(r["action"]["argv"][2], "x");
    // The shell's own message follows ours.
    let ours = told.find("lexecon: blocked exec rm -rf x").unwrap();
    assert!(told[ours..].contains("Operation not permitted"), "{told}");
    assert!(env.ws.join("x").exists());
    // The supervisor's stderr is also the tree's here (the same pipe): each
    // line is shown there once, not twice.
    let err = stderr(&out);
    assert_eq!(
        err.matches("lexecon: blocked exec rm -rf x (rule").count(),
        1,
        "{err}"
    );

    // --no-tell-process: the process gets its EPERM only.
    std::fs::remove_file(env.ws.join("err.txt")).unwrap();
    let out = env
        .supervise_cmd_with(&policy, &["--no-tell-process"], &["sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let told = std::fs::read_to_string(env.ws.join("err.txt")).unwrap();
    assert!(!told.contains("lexecon"), "{told}");
    assert!(told.contains("Operation not permitted"), "{told}");
    assert!(stderr(&out).contains("lexecon: blocked exec rm -rf x (rule block-rm-rf"));
    env.assert_valid();
}

/// A tree whose stderr is a pipe that is full and never read is still
/// served: the line it is told is dropped, nothing waits.
#[test]
fn a_full_stderr_pipe_nobody_reads_stalls_nothing() {
    let env = Env::new();
    let policy = env.protected_data();
    let py = "import os\n\
              r, w = os.pipe()\n\
              os.set_blocking(w, False)\n\
              try:\n    while True:\n        os.write(w, b'x' * 4096)\n\
              except BlockingIOError:\n    pass\n\
              try:\n    while True:\n        os.write(w, b'x')\n\
              except BlockingIOError:\n    pass\n\
              os.set_blocking(w, True)\n\
              saved = os.dup(2)\n\
              os.dup2(w, 2)\n\
              n = 0\n\
              for i in range(20):\n    \
              try:\n        open('protected/data%d' % i, 'w')\n    except PermissionError:\n        n += 1\n\
              os.dup2(saved, 2)\n\
              print('refused', n)\n";
    let mut child = env
        .supervise_cmd(&policy, &["python3", "-c", py])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the run stalled on a full stderr pipe");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "refused 20\n", "{}", stderr(&out));
    env.assert_valid();
}

#[test]
fn operations_are_judged_by_op_and_recorded_with_what_they_set() {
    let env = Env::new();
    std::fs::create_dir_all(env.ws.join("keep")).unwrap();
    std::fs::write(env.ws.join("keep/a"), "a\n").unwrap();
    std::fs::write(env.ws.join("f"), "f\n").unwrap();
    let ws = env.ws.display();
    let policy = env.policy(&format!(
        r#"version: 1
defaults: {{exec: allow, open: allow}}
rules:
  - id: keep-forever
    open:
      path: ["{ws}/keep/**"]
      op: [delete, rename, truncate]
    decision: block
    reason: kept files may be written, not removed
  - id: no-setuid-dir
    open:
      path: ["{ws}/keep/**"]
      op: [chmod, chown]
    decision: block
    reason: no mode changes in keep
"#
    ));
    let script = "echo b >> keep/a; echo write=$?\n\
                  rm -f keep/a; echo rm=$?\n\
                  chmod 4750 keep/a; echo chmod-keep=$?\n\
                  chmod 0751 f; echo chmod=$?\n\
                  chgrp 100 f; echo chgrp=$?\n\
                  ln -s '../\\x' link; echo ln=$?\n\
                  mkdir -m 0710 d; echo mkdir=$?\n";
    let out = env.supervise(&policy, &["sh", "-c", script]);
    assert_eq!(
        stdout(&out),
        "write=0\nrm=1\nchmod-keep=1\nchmod=0\nchgrp=0\nln=0\nmkdir=0\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(env.ws.join("keep/a")).unwrap(),
        "a\nb\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "lexecon: blocked unlink {ws}/keep/a (rule keep-forever,"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "lexecon: blocked chmod 4750 {ws}/keep/a (rule no-setuid-dir,"
        )),
        "{err}"
    );
    let by_op = |op: &str| -> Vec<serde_json::Value> {
        env.records()
            .into_iter()
            .filter(|r| r["kind"] == "decision" && r["action"]["op"] == op)
            .collect()
    };
    let chmod = by_op("chmod");
    assert_eq!(chmod.len(), 2, "{chmod:?}");
    assert_eq!(chmod[0]["action"]["detail"]["mode"], "4750");
    assert_eq!(chmod[0]["outcome"], "refused");
    assert_eq!(chmod[1]["action"]["detail"]["mode"], "0751");
    assert_eq!(chmod[1]["outcome"], "allowed");
    let chown = by_op("chown");
    assert_eq!(chown.len(), 1, "{chown:?}");
    assert_eq!(chown[0]["action"]["detail"]["gid"], "100");
    assert!(
        chown[0]["action"]["detail"].get("uid").is_none(),
        "{chown:?}"
    );
    let symlink = by_op("symlink");
    assert_eq!(symlink[0]["action"]["detail"]["target"], "../\\x");
    assert_eq!(symlink[0]["action"]["path"], format!("{ws}/link"));
    assert_eq!(by_op("mkdir")[0]["action"]["detail"]["mode"], "0710");
    assert_eq!(by_op("delete")[0]["rule"], "keep-forever");
    env.assert_valid();
}

/// Hashes outlast a run only for a tree that is neither root nor holds
/// capabilities: as root the key directory gets no hash cache, and one
/// planted there is neither read nor replaced; as another user the second
/// run of the same command takes the hashes of its programs and libraries
/// from the first (when they lie on a filesystem whose files keep hashes).
#[test]
fn hashes_outlast_a_run_only_for_an_unprivileged_tree() {
    let env = Env::new();
    let policy = env.policy(ALLOW_ALL);
    let run = || {
        let out = env
            .supervise_cmd_with(&policy, &["-v"], &["/bin/sh", "-c", "/bin/true"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    // "hash cache: H of K kept hashes used, A added" → (H, K, A).
    let counts = |err: &str| -> Option<(u64, u64, u64)> {
        let line = err.lines().find_map(|l| l.split_once("hash cache: "))?.1;
        let n: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        Some((n[0], n[1], n[2]))
    };
    let cache = env.keys.join("hash-cache");
    // `/proc/self` belongs to the process's effective uid.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if euid == 0 {
        let err = run();
        assert_eq!(counts(&err), None, "{err}");
        assert!(!cache.exists());
        std::fs::write(&cache, b"planted").unwrap();
        let err = run();
        assert_eq!(counts(&err), None, "{err}");
        assert_eq!(std::fs::read(&cache).unwrap(), b"planted");
        return;
    }
    let (used, known, added) = counts(&run()).expect("no hash cache line");
    assert_eq!((used, known), (0, 0));
    if added == 0 {
        // /bin/sh and its libraries are on a filesystem (an overlay, a
        // tmpfs) whose files keep no hash: nothing to use or write.
        assert!(!cache.exists());
        return;
    }
    assert!(cache.exists());
    let (used, known, again) = counts(&run()).unwrap();
    assert_eq!((used, known, again), (added, added, 0));
    // A cache that does not carry the key's tag is ignored.
    let mut bytes = std::fs::read(&cache).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&cache, &bytes).unwrap();
    assert_eq!(counts(&run()).unwrap(), (0, 0, added));
}
