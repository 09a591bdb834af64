/* Every call that creates a name or changes a file's metadata, aimed at a
 * directory T (relative to the cwd) holding a file T/data.
 *
 *   meta T
 *       Prints "NAME=R" (0 or -errno) for each call, in a fixed order:
 *       creations (mkdir, mkdirat, mknod, mknodat, symlink, symlinkat),
 *       then on T/data: chmod and chown by path, by a read-only
 *       descriptor, by an O_PATH descriptor (AT_EMPTY_PATH, and the fd-only
 *       forms, which the kernel refuses with EBADF), through a cwd inside T;
 *       times (utime, utimes, futimesat, utimensat, futimens); extended
 *       attributes (setxattr, lsetxattr, fsetxattr, removexattr,
 *       fremovexattr); inode flags (ioctl FS_IOC_SETFLAGS).
 *   meta race T N
 *       One thread flips a path buffer between T/../allowed/data and
 *       T/data while the main thread calls chmod(buffer, 0600) N times;
 *       prints "race-wins=W" where W counts how often T/data's mode changed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

static void report(const char *what, long r) {
    printf("%s=%ld\n", what, r < 0 ? -(long)errno : r);
    fflush(stdout);
}

static char path_buf[4096];
static volatile int stop;
static char good[4096], bad[4096];

static void *flipper(void *arg) {
    (void)arg;
    while (!stop) {
        strcpy(path_buf, good);
        strcpy(path_buf, bad);
    }
    return NULL;
}

static void race(const char *t, int n) {
    snprintf(good, sizeof good, "%s/../allowed/data", t);
    snprintf(bad, sizeof bad, "%s/data", t);
    strcpy(path_buf, good);
    char data[4096];
    snprintf(data, sizeof data, "%s/data", t);
    struct stat st;
    stat(data, &st);
    mode_t orig = st.st_mode & 07777;
    pthread_t th;
    pthread_create(&th, NULL, flipper, NULL);
    int wins = 0;
    for (int i = 0; i < n; i++) {
        chmod(path_buf, (orig ^ 0100) & 07777);
        if (stat(data, &st) == 0 && (st.st_mode & 07777) != orig) {
            wins++;
            chmod(data, orig);
        }
    }
    stop = 1;
    pthread_join(th, NULL);
    printf("race-wins=%d\n", wins);
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "race")) {
        race(argv[2], atoi(argv[3]));
        return 0;
    }
    if (argc < 2) return 2;
    const char *t = argv[1];
    char p[4096], data[4096];
    snprintf(data, sizeof data, "%s/data", t);
    int dfd = open(t, O_RDONLY | O_DIRECTORY);
    uid_t u = getuid();
    gid_t g = getgid();

    snprintf(p, sizeof p, "%s/newdir", t);
    report("mkdir", mkdir(p, 0755));
    report("mkdirat", mkdirat(dfd, "newdir2", 0755));
    snprintf(p, sizeof p, "%s/fifo", t);
    report("mknod", mknod(p, S_IFIFO | 0644, 0));
    report("mknodat", mknodat(dfd, "fifo2", S_IFIFO | 0644, 0));
    snprintf(p, sizeof p, "%s/link", t);
    report("symlink", symlink("/etc/passwd", p));
    report("symlinkat", symlinkat("/etc/passwd", dfd, "link2"));

    int ro = open(data, O_RDONLY);
    int op = open(data, O_PATH);
    report("chmod", chmod(data, 0604));
    report("fchmod-ro", fchmod(ro, 0606));
    report("fchmod-opath", fchmod(op, 0606));
    report("fchmodat", fchmodat(dfd, "data", 0607, 0));
    report("fchmodat2-opath", syscall(452, op, "", 0605, AT_EMPTY_PATH));
    report("chown", chown(data, u, g));
    report("fchown-ro", fchown(ro, u, g));
    report("lchown", lchown(data, u, g));
    report("fchownat-opath", fchownat(op, "", u, g, AT_EMPTY_PATH));
    struct utimbuf ub = {1000, 1000};
    report("utime", utime(data, &ub));
    struct timeval tv[2] = {{2000, 0}, {2000, 0}};
    report("utimes", utimes(data, tv));
    report("futimesat", syscall(SYS_futimesat, dfd, "data", tv));
    struct timespec ts[2] = {{3000, 0}, {3000, 0}};
    report("utimensat", utimensat(dfd, "data", ts, 0));
    report("futimens-ro", futimens(ro, ts));
    report("utimensat-opath", utimensat(op, "", ts, AT_EMPTY_PATH));
    report("setxattr", setxattr(data, "user.lexecon", "1", 1, 0));
    report("lsetxattr", lsetxattr(data, "user.lexecon2", "2", 1, 0));
    report("fsetxattr-ro", fsetxattr(ro, "user.lexecon3", "3", 1, 0));
    report("removexattr", removexattr(data, "user.lexecon"));
    report("fremovexattr-ro", fremovexattr(ro, "user.lexecon2"));
    int flags = 0;
    ioctl(ro, FS_IOC_GETFLAGS, &flags);
    flags |= FS_NOATIME_FL;
    report("ioctl-setflags", ioctl(ro, FS_IOC_SETFLAGS, &flags));
    if (chdir(t) == 0) {
        report("chmod-cwd", chmod("data", 0600));
        report("mkdir-cwd", mkdir("newdir3", 0755));
    }
    return 0;
}
