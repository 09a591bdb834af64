/* One syscall from the filter's refused list, by name.
 *   refused NAME [DIR]
 * Prints "ret=N": the (non-negative) result, or -errno. Calls that only
 * make sense on a scratch directory take DIR. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/kcmp.h>
#include <linux/keyctl.h>
#include <linux/mount.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *n = argv[1];
    const char *dir = argc > 2 ? argv[2] : "/nonexistent";
    long r;
    pid_t child = 0;
    if (!strcmp(n, "kcmp") || !strcmp(n, "pidfd_getfd")) {
        child = fork();
        if (child == 0) {
            pause();
            _exit(0);
        }
    }
    if (!strcmp(n, "bpf")) {
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.map_type = BPF_MAP_TYPE_ARRAY;
        a.key_size = 4;
        a.value_size = 4;
        a.max_entries = 1;
        r = syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a);
    } else if (!strcmp(n, "userfaultfd")) {
        r = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    } else if (!strcmp(n, "kcmp")) {
        r = syscall(SYS_kcmp, getpid(), child, KCMP_VM, 0, 0);
    } else if (!strcmp(n, "pidfd_getfd")) {
        int pfd = (int)syscall(SYS_pidfd_open, child, 0);
        r = pfd < 0 ? pfd : syscall(SYS_pidfd_getfd, pfd, 1, 0);
    } else if (!strcmp(n, "perf_event_open")) {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_TASK_CLOCK;
        a.exclude_kernel = 1;
        a.exclude_hv = 1;
        r = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    } else if (!strcmp(n, "add_key")) {
        r = syscall(SYS_add_key, "user", "lexecon-escape-test", "x", 1,
                    KEY_SPEC_PROCESS_KEYRING);
    } else if (!strcmp(n, "keyctl")) {
        r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1);
    } else if (!strcmp(n, "request_key")) {
        r = syscall(SYS_request_key, "user", "lexecon-escape-none", NULL,
                    KEY_SPEC_PROCESS_KEYRING);
    } else if (!strcmp(n, "mount")) {
        r = mount("none", dir, "tmpfs", 0, NULL);
    } else if (!strcmp(n, "umount2")) {
        r = umount2(dir, MNT_DETACH);
    } else if (!strcmp(n, "pivot_root")) {
        r = syscall(SYS_pivot_root, dir, dir);
    } else if (!strcmp(n, "open_tree")) {
        r = syscall(SYS_open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE);
    } else if (!strcmp(n, "move_mount")) {
        r = syscall(SYS_move_mount, -1, "", AT_FDCWD, dir, 0);
    } else if (!strcmp(n, "fsopen")) {
        r = syscall(SYS_fsopen, "tmpfs", 0);
    } else if (!strcmp(n, "fsconfig")) {
        r = syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0);
    } else if (!strcmp(n, "fsmount")) {
        r = syscall(SYS_fsmount, -1, 0, 0);
    } else if (!strcmp(n, "fspick")) {
        r = syscall(SYS_fspick, AT_FDCWD, dir, 0);
    } else if (!strcmp(n, "mount_setattr")) {
        r = syscall(SYS_mount_setattr, AT_FDCWD, dir, 0, NULL, 0);
    } else if (!strcmp(n, "setns")) {
        int fd = open("/proc/self/ns/mnt", O_RDONLY);
        r = fd < 0 ? fd : syscall(SYS_setns, fd, CLONE_NEWNS);
    } else if (!strcmp(n, "kexec_load")) {
        r = syscall(SYS_kexec_load, 0, 0, NULL, 0);
    } else if (!strcmp(n, "kexec_file_load")) {
        r = syscall(SYS_kexec_file_load, -1, -1, 0, "", 0);
    } else if (!strcmp(n, "uselib")) {
        r = syscall(SYS_uselib, dir);
    } else if (!strcmp(n, "pidfd_send_signal")) {
        int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        r = pfd < 0 ? pfd : syscall(SYS_pidfd_send_signal, pfd, 0, NULL, 0);
    } else {
        return 2;
    }
    printf("ret=%ld\n", r < 0 ? -(long)errno : r);
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    return 0;
}
