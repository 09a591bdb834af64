/* Descendants and calls that act on other processes.
 *
 *   procs untraced PROG OUT
 *       clone(CLONE_UNTRACED): a child the tracer would never be attached
 *       to; it execs PROG OUT. Prints "clone-untraced=R" (0 or -errno).
 *   procs tree DIR
 *       Makes descendants in every way a process can: fork, vfork + exec,
 *       posix_spawn, a thread, clone(CLONE_VM), clone(CLONE_PARENT), a
 *       double-forked setsid daemon, and tries clone(CLONE_UNTRACED). Each
 *       sleeps. Writes DIR/ready, then waits until DIR/done exists (at most
 *       60 s) and exits. Prints "clone-untraced=R".
 *   procs sleeper [DIR]
 *       Sleeps until DIR/done exists, at most 60 s (the exec'd descendants
 *       of "tree").
 *   procs aim parent|child|PID
 *       Every call that changes another process without a signal, aimed at
 *       the parent (under supervision: the supervisor), at a child of its
 *       own, or at PID: resource limits, priorities, scheduling, I/O
 *       priority, memory placement, the robust list, process_madvise.
 *       Prints "NAME=R" (R >= 0 or -errno).
 *   procs signals PID
 *       The kill family aimed at PID and its process group with SIGTERM,
 *       then kill(PID, 0). Prints "NAME=R". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
static const char *self;

static void report(const char *what, long r) {
    printf("%s=%ld\n", what, r < 0 ? -(long)errno : r);
    fflush(stdout);
}

static void nap(int ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int exists(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static const char *done_dir;

/* Sleeps until DIR/done exists ("tree"), at most 60 s. */
static void sleeper(void) {
    for (int i = 0; i < 6000 && !(done_dir && exists(done_dir, "done")); i++) nap(10);
    _exit(0);
}

static void *thread_main(void *arg) {
    (void)arg;
    sleeper();
    return NULL;
}

static int clone_fn(void *arg) {
    (void)arg;
    sleeper();
    return 0;
}

static long clone_untraced(void) {
    long r = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
    return r;
}

static void untraced(const char *prog, const char *out) {
    long r = clone_untraced();
    if (r == 0) {
        execl(prog, prog, out, (char *)NULL);
        _exit(127);
    }
    report("clone-untraced", r < 0 ? -1 : 0);
    if (r > 0) waitpid(r, NULL, 0);
}

static void tree(const char *dir) {
    done_dir = dir;
    pid_t p = fork();
    if (p == 0) sleeper();
    p = vfork();
    if (p == 0) {
        execl(self, self, "sleeper", dir, (char *)NULL);
        _exit(127);
    }
    posix_spawn(&p, self, NULL, NULL, (char *[]){(char *)self, "sleeper", (char *)dir, NULL}, environ);
    pthread_t t;
    pthread_create(&t, NULL, thread_main, NULL);
    static char stack_vm[65536], stack_parent[65536];
    clone(clone_fn, stack_vm + sizeof stack_vm, CLONE_VM | SIGCHLD, NULL);
    clone(clone_fn, stack_parent + sizeof stack_parent, CLONE_PARENT | SIGCHLD, NULL);
    p = fork();
    if (p == 0) {
        setsid();
        if (fork() == 0) sleeper();
        _exit(0);
    }
    waitpid(p, NULL, 0);
    long r = clone_untraced();
    if (r == 0) sleeper();
    report("clone-untraced", r < 0 ? -1 : 0);
    nap(200); /* let the exec'd sleepers get past their exec */
    char ready[4096];
    snprintf(ready, sizeof ready, "%s/ready", dir);
    close(open(ready, O_WRONLY | O_CREAT, 0644));
    for (int i = 0; i < 6000 && !exists(dir, "done"); i++) nap(10);
    /* The supervisor (or the test) kills whatever is left. */
    exit(0);
}

static pid_t victim(void) {
    pid_t v = fork();
    if (v == 0) {
        setpgid(0, 0);
        sleeper();
    }
    setpgid(v, v);
    return v;
}

struct sched_attr_v0 {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};

static void aim(pid_t t) {
    pid_t g = getpgid(t);
    struct rlimit nofile = {16, 16}, fsize = {1, 1};
    report("prlimit-nofile", syscall(SYS_prlimit64, t, RLIMIT_NOFILE, &nofile, NULL));
    report("prlimit-fsize", syscall(SYS_prlimit64, t, RLIMIT_FSIZE, &fsize, NULL));
    report("setpriority", setpriority(PRIO_PROCESS, t, 10));
    report("setpriority-pgrp", setpriority(PRIO_PGRP, g, 10));
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    report("sched_setaffinity", sched_setaffinity(t, sizeof one, &one));
    struct sched_param sp = {0};
    report("sched_setscheduler", sched_setscheduler(t, SCHED_BATCH, &sp));
    report("sched_setparam", sched_setparam(t, &sp));
    struct sched_attr_v0 attr = {sizeof attr, SCHED_IDLE, 0, 0, 0, 0, 0, 0};
    report("sched_setattr", syscall(SYS_sched_setattr, t, &attr, 0));
    /* IOPRIO_WHO_PROCESS = 1, IOPRIO_WHO_PGRP = 2, class idle = 3. */
    report("ioprio_set", syscall(SYS_ioprio_set, 1, t, 3 << 13));
    report("ioprio_set-pgrp", syscall(SYS_ioprio_set, 2, g, 3 << 13));
    unsigned long nodes = 1;
    report("migrate_pages", syscall(SYS_migrate_pages, t, 8 * sizeof nodes, &nodes, &nodes));
    int status = 0;
    report("move_pages", syscall(SYS_move_pages, t, 0, NULL, NULL, &status, 0));
    void *head = NULL;
    size_t len = 0;
    report("get_robust_list", syscall(SYS_get_robust_list, t, &head, &len));
    long pidfd = syscall(SYS_pidfd_open, t, 0);
    long r = pidfd;
    if (pidfd >= 0) {
        static char page[4096];
        struct iovec iov = {page, sizeof page};
        r = syscall(SYS_process_madvise, (int)pidfd, &iov, 1, MADV_COLD, 0);
        close(pidfd);
    }
    report("process_madvise", r);
}

static void signals(pid_t t) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGTERM;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    report("kill-probe", kill(t, 0));
    report("kill", kill(t, SIGTERM));
    report("kill-pgid", kill(-getpgid(t), SIGTERM));
    report("tkill", syscall(SYS_tkill, t, SIGTERM));
    report("tgkill", syscall(SYS_tgkill, t, t, SIGTERM));
    report("rt_sigqueueinfo", syscall(SYS_rt_sigqueueinfo, t, SIGTERM, &si));
}

int main(int argc, char **argv) {
    self = argv[0];
    if (argc >= 4 && !strcmp(argv[1], "untraced")) {
        untraced(argv[2], argv[3]);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "tree")) tree(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "sleeper")) {
        done_dir = argc >= 3 ? argv[2] : NULL;
        sleeper();
    }
    if (argc >= 3 && !strcmp(argv[1], "aim")) {
        pid_t v = 0, t;
        if (!strcmp(argv[2], "parent"))
            t = getppid();
        else if (!strcmp(argv[2], "child"))
            t = v = victim();
        else
            t = atoi(argv[2]);
        aim(t);
        if (v) {
            kill(v, SIGKILL);
            waitpid(v, NULL, 0);
        }
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "signals")) {
        signals(atoi(argv[2]));
        return 0;
    }
    return 2;
}
