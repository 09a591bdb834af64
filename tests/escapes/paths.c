/* Routes to the protected file WS/protected/data (run with cwd = WS).
 * Each mode opens it for writing through another name and writes
 * "pwned\n" through the fd it gets.
 *   paths MODE
 * Prints "open=FD|-errno" for every attempt. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void attempt(long fd) {
    printf("open=%ld\n", fd < 0 ? -(long)errno : fd);
    fflush(stdout);
    if (fd >= 0) {
        if (write((int)fd, "pwned\n", 6) != 6) printf("write=%d\n", -errno);
        close((int)fd);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *m = argv[1];
    const int W = O_WRONLY | O_TRUNC;
    char p[8192], ws[4096];
    if (!getcwd(ws, sizeof ws)) return 3;
    if (!strcmp(m, "symlink")) {
        symlink("protected/data", "sym");
        symlink("protected", "symdir");
        symlink("/proc/self/cwd/protected/data", "symproc");
        attempt(open("sym", W));
        attempt(open("symdir/data", W));
        attempt(open("symproc", W));
    } else if (!strcmp(m, "hardlink")) {
        if (link("protected/data", "alias") != 0) printf("link=%d\n", -errno);
        attempt(open("alias", W));
    } else if (!strcmp(m, "dotdot")) {
        mkdir("sub", 0755);
        attempt(open("sub/../protected/data", W));
        attempt(open("protected/../protected/./data", W));
        snprintf(p, sizeof p, "%s/sub/../../%s/protected/data", ws, strrchr(ws, '/') + 1);
        attempt(open(p, W));
    } else if (!strcmp(m, "relative")) {
        if (chdir("protected")) return 3;
        attempt(open("data", W));
        attempt(open("./data", W));
        attempt(open("../protected/data", W));
    } else if (!strcmp(m, "dirfd")) {
        int d = open("protected", O_RDONLY | O_DIRECTORY);
        int dp = open("protected", O_PATH | O_DIRECTORY);
        int w = open(".", O_PATH | O_DIRECTORY);
        attempt(openat(d, "data", W));
        attempt(openat(dp, "data", W));
        attempt(openat(w, "protected/data", W));
        snprintf(p, sizeof p, "/proc/self/fd/%d/data", dp);
        attempt(open(p, W));
    } else if (!strcmp(m, "fchdir")) {
        int d = open("protected", O_PATH | O_DIRECTORY);
        if (fchdir(d)) return 3;
        attempt(open("data", W));
        attempt(open("/proc/self/cwd/data", W));
    } else if (!strcmp(m, "proc-root")) {
        snprintf(p, sizeof p, "/proc/self/root%s/protected/data", ws);
        attempt(open(p, W));
        snprintf(p, sizeof p, "/proc/%d/root%s/protected/data", getpid(), ws);
        attempt(open(p, W));
    } else if (!strcmp(m, "proc-cwd")) {
        attempt(open("/proc/self/cwd/protected/data", W));
        attempt(open("/proc/thread-self/cwd/protected/data", W));
        snprintf(p, sizeof p, "/proc/%d/task/%d/cwd/protected/data", getpid(), gettid());
        attempt(open(p, W));
    } else if (!strcmp(m, "proc-fd-rdonly") || !strcmp(m, "proc-fd-opath")) {
        int fd = open("protected/data", strcmp(m, "proc-fd-opath") ? O_RDONLY : O_PATH);
        if (fd < 0) return 3;
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        attempt(open(p, W));
        attempt(open(p, O_RDWR));
        attempt(open(p, O_WRONLY | O_APPEND));
        snprintf(p, sizeof p, "/dev/fd/%d", fd);
        attempt(open(p, W));
    } else if (!strcmp(m, "openat2")) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = W;
        attempt(syscall(SYS_openat2, AT_FDCWD, "protected/data", &how, sizeof how));
        how.resolve = RESOLVE_BENEATH;
        attempt(syscall(SYS_openat2, AT_FDCWD, "protected/data", &how, sizeof how));
        how.resolve = 0;
        how.flags = O_WRONLY | O_CREAT;
        how.mode = 0644;
        attempt(syscall(SYS_openat2, AT_FDCWD, "protected/new", &how, sizeof how));
    } else if (!strcmp(m, "legacy")) {
        attempt(syscall(SYS_open, "protected/data", W));
        attempt(syscall(SYS_creat, "protected/data", 0644));
        attempt(syscall(SYS_creat, "protected/new", 0644));
    } else {
        return 2;
    }
    return 0;
}
