/* Installs a second seccomp filter with a user-notify listener that
 * catches execve, then a child execs PROG OUT and the parent answers the
 * notification with CONTINUE: the tree approving its own exec.
 *   listener PROG OUT
 * Prints "listener=N" (fd or -errno), "notified=1" when the listener got
 * the child's exec, and "child=STATUS". */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = 4, .filter = code};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int fd = (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
                          SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    printf("listener=%d\n", fd < 0 ? -errno : fd);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (fd >= 0) close(fd);
        char *av[] = {argv[1], argv[2], NULL};
        execv(argv[1], av);
        _exit(99);
    }
    if (fd >= 0) {
        struct seccomp_notif req;
        struct seccomp_notif_resp resp;
        memset(&req, 0, sizeof req);
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) == 0) {
            printf("notified=1\n");
            memset(&resp, 0, sizeof resp);
            resp.id = req.id;
            resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
        }
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child=%d\n", st);
    return 0;
}
