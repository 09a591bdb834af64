/* Namespaces and roots that change what a path means.
 *   namespaces unshare-bind WS   unshare(CLONE_NEWUSER|CLONE_NEWNS) (just
 *       CLONE_NEWNS when root), bind WS/protected over WS/allowed, then
 *       open WS/allowed/data O_WRONLY|O_TRUNC and write
 *   namespaces clone-newuser OUT  raw clone(CLONE_NEWUSER|SIGCHLD); the
 *       child writes OUT
 *   namespaces clone3-newuser OUT clone3 with CLONE_NEWUSER; the child writes OUT
 *   namespaces chroot WS          chroot(WS), then open /protected/data
 *       O_WRONLY|O_TRUNC and write
 *   namespaces setns WS           setns into our own mount namespace
 * Prints "step=0|-errno" for each step. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *step, long r) {
    printf("%s=%ld\n", step, r < 0 ? -(long)errno : 0L);
    fflush(stdout);
    return r < 0;
}

static int write_to(const char *path) {
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (report("open", fd)) return 0;
    return write(fd, "pwned\n", 6) == 6 ? 0 : 5;
}

static void child_marks(const char *out) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) write(fd, "in new namespace\n", 17);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    char a[4096], b[4096];
    if (!strcmp(mode, "unshare-bind")) {
        int flags = CLONE_NEWNS | (geteuid() == 0 ? 0 : CLONE_NEWUSER);
        if (report("unshare", unshare(flags))) return 0;
        /* Keep every mount of this namespace to itself. */
        if (report("private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))) return 0;
        snprintf(a, sizeof a, "%s/protected", argv[2]);
        snprintf(b, sizeof b, "%s/allowed", argv[2]);
        if (report("bind", mount(a, b, NULL, MS_BIND, NULL))) return 0;
        snprintf(b, sizeof b, "%s/allowed/data", argv[2]);
        return write_to(b);
    }
    if (!strcmp(mode, "clone-newuser")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) child_marks(argv[2]);
        if (report("clone", pid)) return 0;
        waitpid((pid_t)pid, NULL, 0);
        return 0;
    }
    if (!strcmp(mode, "clone3-newuser")) {
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_NEWUSER;
        ca.exit_signal = SIGCHLD;
        long pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) child_marks(argv[2]);
        if (report("clone3", pid)) return 0;
        waitpid((pid_t)pid, NULL, 0);
        return 0;
    }
    if (!strcmp(mode, "chroot")) {
        if (report("chroot", chroot(argv[2]))) return 0;
        if (chdir("/")) return 3;
        return write_to("/protected/data");
    }
    if (!strcmp(mode, "setns")) {
        int fd = open("/proc/self/ns/mnt", O_RDONLY);
        if (report("nsfd", fd)) return 0;
        report("setns", setns(fd, CLONE_NEWNS));
        return 0;
    }
    return 2;
}
