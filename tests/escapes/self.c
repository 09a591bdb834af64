/* Attacks on the supervisor by the process tree.
 *
 *   self files KEYS_DIR PRIVKEY LEDGER
 *       Opens the key directory and private key, the ledger (read, write,
 *       create in its directory), the supervisor's /proc entries (fd, mem,
 *       environ, maps; stat, status and cmdline, which are readable), and
 *       a symlink to the private key. Everything read is appended to
 *       leak.bin. Prints "WHAT=N" (bytes read/written, or -errno).
 *   self threads TIDS_FILE
 *       The same /proc entries through the tids of the supervisor's other
 *       threads (not listed in /proc). The test, which is not supervised,
 *       lists them and writes them to TIDS_FILE (one per line, then
 *       "end"); this waits for it. Each tid is first checked to be a
 *       thread of the parent (its Tgid), or refused as the supervisor's.
 *   self keylink PRIVKEY
 *       A hard link to the private key in the workspace, then read.
 *   self signals native|supervisor
 *       Every way to signal a process: kill, kill(-pgid), kill(0) from its
 *       group, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo,
 *       pidfd_open + pidfd_send_signal, F_SETOWN async I/O (with F_SETSIG,
 *       and with the default SIGIO), and kill(-1, 0). "native": each aimed at a fresh victim child (in its
 *       own process group) and prints "WHAT=killed|alive"; "supervisor":
 *       aimed at the parent (the supervisor) with SIGKILL, prints "WHAT=R".
 *       Then ptrace(PTRACE_ATTACH/SEIZE) of the target. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int leak = -1;

static void report(const char *what, long r) {
    printf("%s=%ld\n", what, r < 0 ? -(long)errno : r);
    fflush(stdout);
}

/* Opens PATH with FLAGS; reads (or writes) through it; reports. */
static void try_open(const char *what, const char *path, int flags) {
    /* Never block on a pipe, FIFO or eventfd reached through /proc. */
    int fd = open(path, flags | O_NONBLOCK);
    if (fd < 0) {
        report(what, -1);
        return;
    }
    long total = 0;
    if ((flags & O_ACCMODE) == O_RDONLY && !(flags & O_PATH)) {
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0 && total < (1 << 20)) {
            total += n;
            if (write(leak, buf, n) < 0) break;
        }
    } else if ((flags & O_ACCMODE) != O_RDONLY) {
        total = write(fd, "junk\n", 5);
    }
    close(fd);
    report(what, total < 0 ? 0 : total);
}

/* Reads the mapping of the supervisor's executable through /proc/T/mem. */
static void try_mem(const char *what, int t) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", t);
    FILE *maps = fopen(path, "r");
    unsigned long lo = 0;
    if (maps) {
        if (fgets(line, sizeof line, maps)) lo = strtoul(line, NULL, 16);
        fclose(maps);
    }
    snprintf(path, sizeof path, "/proc/%d/mem", t);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report(what, -1);
        return;
    }
    char buf[256];
    long n = lo ? pread(fd, buf, sizeof buf, (off_t)lo) : -1;
    if (n > 0 && write(leak, buf, n) < 0) n = -1;
    close(fd);
    report(what, n < 0 ? 0 : n);
}

static int tgid_of(int t) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", t);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int tgid = -2;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Tgid:", 5)) tgid = atoi(line + 5);
    fclose(f);
    return tgid;
}

static void files(const char *keys, const char *key, const char *ledger) {
    int sup = getppid();
    char p[4096], w[64];
    leak = open("leak.bin", O_WRONLY | O_CREAT | O_APPEND, 0644);
    try_open("keys-dir", keys, O_RDONLY | O_DIRECTORY);
    try_open("keys-dir-path", keys, O_PATH);
    try_open("key-read", key, O_RDONLY);
    try_open("key-write", key, O_WRONLY);
    try_open("ledger-read", ledger, O_RDONLY);
    try_open("ledger-write", ledger, O_WRONLY | O_APPEND);
    snprintf(p, sizeof p, "%s.evil", ledger);
    try_open("ledger-dir-create", p, O_WRONLY | O_CREAT);
    symlink(key, "keysym");
    try_open("key-symlink", "keysym", O_RDONLY);
    snprintf(p, sizeof p, "/proc/%d/fd", sup);
    try_open("sup-fd-dir", p, O_RDONLY | O_DIRECTORY);
    /* Descriptors 0-2 are the terminal or pipes the tree shares anyway
       (reading fd 1 back would steal this program's own output); the
       supervisor's own descriptors start at 3. Non-blocking: a pipe with
       nothing in it must not hang the test. */
    for (int n = 3; n < 64; n++) {
        snprintf(p, sizeof p, "/proc/%d/fd/%d", sup, n);
        snprintf(w, sizeof w, "sup-fd-%d", n);
        try_open(w, p, O_RDONLY | O_NONBLOCK);
        snprintf(w, sizeof w, "sup-fd-%d-w", n);
        try_open(w, p, O_WRONLY | O_NONBLOCK);
    }
    snprintf(p, sizeof p, "/proc/%d/environ", sup);
    try_open("sup-environ", p, O_RDONLY);
    snprintf(p, sizeof p, "/proc/%d/maps", sup);
    try_open("sup-maps", p, O_RDONLY);
    try_mem("sup-mem", sup);
    snprintf(p, sizeof p, "/proc/%d/task/%d/environ", sup, sup);
    try_open("sup-task-environ", p, O_RDONLY);
    /* Readable (what ps and a process checking on its parent read), but
       only those, only for reading, and only as the process's own entry. */
    const char *pub[] = {"stat", "status", "cmdline"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "/proc/%d/%s", sup, pub[i]);
        snprintf(w, sizeof w, "public-%s", pub[i]);
        try_open(w, p, O_RDONLY);
        snprintf(w, sizeof w, "public-%s-w", pub[i]);
        try_open(w, p, O_WRONLY);
        snprintf(w, sizeof w, "public-%s-rw", pub[i]);
        try_open(w, p, O_RDWR);
        snprintf(p, sizeof p, "/proc/%d/task/%d/%s", sup, sup, pub[i]);
        snprintf(w, sizeof w, "public-%s-task", pub[i]);
        try_open(w, p, O_RDONLY);
        snprintf(p, sizeof p, "/proc/%d/%s/", sup, pub[i]);
        snprintf(w, sizeof w, "public-%s-slash", pub[i]);
        try_open(w, p, O_RDONLY);
    }
    snprintf(p, sizeof p, "/proc/%d", sup);
    try_open("sup-dir", p, O_RDONLY | O_DIRECTORY);
    snprintf(p, sizeof p, "/proc/%d/comm", sup);
    try_open("sup-comm", p, O_RDONLY);
    snprintf(p, sizeof p, "/proc/%d/stat/../environ", sup);
    try_open("sup-stat-dotdot-environ", p, O_RDONLY);
}

/* Waits (up to 60 s) for FILE to hold a list of tids ending in "end". */
static int read_tids(const char *file, int *tids, int max) {
    for (int tries = 0; tries < 6000; tries++) {
        FILE *f = fopen(file, "r");
        if (f) {
            char line[64];
            int n = 0, complete = 0;
            while (fgets(line, sizeof line, f)) {
                if (!strncmp(line, "end", 3)) {
                    complete = 1;
                    break;
                }
                if (n < max) tids[n++] = atoi(line);
            }
            fclose(f);
            if (complete) return n;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void threads(const char *tids_file) {
    int sup = getppid();
    char p[4096], w[64];
    int tids[64];
    leak = open("leak.bin", O_WRONLY | O_CREAT | O_APPEND, 0644);
    int listed = read_tids(tids_file, tids, 64);
    printf("threads-listed=%d\n", listed);
    int found = 0;
    for (int i = 0; i < listed; i++) {
        int t = tids[i];
        /* A refused status (EPERM) means the supervisor guards it as its own. */
        int tg = tgid_of(t);
        if (tg != sup && !(tg < 0 && errno == EPERM)) continue;
        found++;
        snprintf(w, sizeof w, "thread-%d-environ", found);
        snprintf(p, sizeof p, "/proc/%d/environ", t);
        try_open(w, p, O_RDONLY);
        snprintf(w, sizeof w, "thread-%d-maps", found);
        snprintf(p, sizeof p, "/proc/%d/maps", t);
        try_open(w, p, O_RDONLY);
        snprintf(w, sizeof w, "thread-%d-mem", found);
        try_mem(w, t);
        for (int n = 0; n < 64; n++) {
            snprintf(p, sizeof p, "/proc/%d/fd/%d", t, n);
            snprintf(w, sizeof w, "thread-%d-fd-%d", found, n);
            try_open(w, p, O_RDONLY);
        }
    }
    printf("threads-found=%d\n", found);
}

static void keylink(const char *key) {
    leak = open("leak.bin", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (link(key, "keylink") != 0) report("key-link", -1);
    try_open("key-hardlink", "keylink", O_RDONLY);
}

/* One signal attempt aimed at TARGET (a pid whose process group is PGID).
 * Returns the syscall's result. */
static long attempt(int i, pid_t target, pid_t pgid, int sig, const char **name) {
    static const char *names[] = {"kill",       "kill-pgid",         "kill-own-group",
                                  "tkill",      "tgkill",            "rt_sigqueueinfo",
                                  "rt_tgsigqueueinfo", "pidfd",      "f_setown",
                                  "f_setown-sigio",    "kill-all-0", NULL};
    *name = names[i];
    if (!names[i]) return 0;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    switch (i) {
    case 0: return kill(target, sig);
    case 1: return kill(-pgid, sig);
    case 2: {
        /* Join the target's group, then signal "my own group". */
        pid_t h = fork();
        if (h == 0) {
            if (setpgid(0, pgid) != 0) _exit(100 + errno);
            _exit(kill(0, sig) == 0 ? 0 : 100 + errno);
        }
        int st = 0;
        waitpid(h, &st, 0);
        if (WIFSIGNALED(st)) return 0; /* killed along with its group */
        errno = WEXITSTATUS(st) - 100;
        return WEXITSTATUS(st) == 0 ? 0 : -1;
    }
    case 3: return syscall(SYS_tkill, target, sig);
    case 4: return syscall(SYS_tgkill, target, target, sig);
    case 5: return syscall(SYS_rt_sigqueueinfo, target, sig, &si);
    case 6: return syscall(SYS_rt_tgsigqueueinfo, target, target, sig, &si);
    case 7: {
        long fd = syscall(SYS_pidfd_open, target, 0);
        if (fd < 0) return fd;
        return syscall(SYS_pidfd_send_signal, (int)fd, sig, NULL, 0);
    }
    case 8:
    case 9: {
        /* Async I/O notification: the kernel signals the fd's owner, with
         * SIG (F_SETSIG) or the default SIGIO. */
        int p[2];
        if (pipe(p)) return -1;
        if (fcntl(p[0], F_SETOWN, target) != 0) return -1;
        if (i == 8 && fcntl(p[0], F_SETSIG, sig) != 0) return -1;
        if (fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) != 0) return -1;
        long r = write(p[1], "x", 1) == 1 ? 0 : -1;
        close(p[0]);
        close(p[1]);
        return r;
    }
    case 10: return kill(-1, 0);
    }
    return 0;
}

/* Whether PID died within a generous bound (only to avoid hanging). */
static int died(pid_t pid) {
    for (int i = 0; i < 5000; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return 1;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

static void signals(int native) {
    const char *name;
    for (int i = 0;; i++) {
        if (native) {
            pid_t v = fork();
            if (v == 0) {
                setpgid(0, 0);
                for (;;) pause();
            }
            setpgid(v, v);
            long r = attempt(i, v, v, SIGKILL, &name);
            if (!name) {
                kill(v, SIGKILL);
                waitpid(v, NULL, 0);
                break;
            }
            if (i == 10) {
                /* kill(-1, 0) only probes: it reports whether it may signal. */
                printf("%s=%s\n", name, r == 0 ? "allowed" : "refused");
                kill(v, SIGKILL);
                waitpid(v, NULL, 0);
            } else {
                printf("%s=%s\n", name, died(v) ? "killed" : "alive");
            }
        } else {
            pid_t sup = getppid();
            long r = attempt(i, sup, getpgid(sup), SIGKILL, &name);
            if (!name) break;
            report(name, r);
        }
        fflush(stdout);
    }
    pid_t target = getppid();
    pid_t v = 0;
    if (native) {
        v = fork();
        if (v == 0) {
            for (;;) pause();
        }
        target = v;
    }
    long r = ptrace(PTRACE_ATTACH, target, 0, 0);
    report("ptrace-attach", r);
    if (r == 0) {
        waitpid(target, NULL, __WALL); /* the attach stop */
        ptrace(PTRACE_DETACH, target, 0, 0);
    }
    r = ptrace(PTRACE_SEIZE, target, 0, 0);
    report("ptrace-seize", r);
    if (v) {
        kill(v, SIGKILL);
        waitpid(v, NULL, 0);
    }
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "files")) {
        files(argv[2], argv[3], argv[4]);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "threads")) {
        threads(argv[2]);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "keylink")) {
        keylink(argv[2]);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "signals")) {
        signals(!strcmp(argv[2], "native"));
        return 0;
    }
    return 2;
}
