#define _GNU_SOURCE
/* Reaching into a sibling process: a forked child waits on a pipe, then
 * writes OUT if its flag was set by someone else.
 *   sibling ptrace-attach|ptrace-seize|pvw|pvr OUT
 * ptrace-*: attach, PTRACE_POKEDATA the flag, detach.
 * pvw: process_vm_writev the flag.  pvr: process_vm_readv a secret of
 * the sibling (prints "read=SECRET" when it worked).
 * Prints "attack=0" or "attack=-errno". */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile long flag;
static char secret[16] = "hidden";

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int p[2];
    if (pipe(p)) return 3;
    pid_t child = fork();
    if (child == 0) {
        close(p[1]);
        if (!strcmp(argv[1], "pvr")) strcpy(secret, "SECRET");
        char c;
        while (read(p[0], &c, 1) < 0 && errno == EINTR) {
        }
        if (flag) {
            int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) write(fd, "poked\n", 6);
        }
        _exit(0);
    }
    close(p[0]);
    long r = 0;
    const char *mode = argv[1];
    if (!strncmp(mode, "ptrace-", 7)) {
        int seize = !strcmp(mode, "ptrace-seize");
        r = seize ? ptrace(PTRACE_SEIZE, child, 0, 0) : ptrace(PTRACE_ATTACH, child, 0, 0);
        if (r == 0) {
            if (seize) ptrace(PTRACE_INTERRUPT, child, 0, 0);
            int st;
            waitpid(child, &st, __WALL);
            if (ptrace(PTRACE_POKEDATA, child, (void *)&flag, (void *)1L) != 0) r = -1;
            ptrace(PTRACE_DETACH, child, 0, 0);
        }
    } else if (!strcmp(mode, "pvw")) {
        long one = 1;
        struct iovec l = {&one, sizeof one}, rm = {(void *)&flag, sizeof flag};
        r = process_vm_writev(child, &l, 1, &rm, 1, 0) == sizeof one ? 0 : -1;
    } else if (!strcmp(mode, "pvr")) {
        char buf[16] = {0};
        /* Let the child set its secret first: it does so before reading. */
        usleep(1000);
        struct iovec l = {buf, 6}, rm = {secret, 6};
        for (int i = 0; i < 1000 && strcmp(buf, "SECRET"); i++) {
            r = process_vm_readv(child, &l, 1, &rm, 1, 0) == 6 ? 0 : -1;
            if (r) break;
            usleep(1000);
        }
        if (r == 0) printf("read=%s\n", buf);
    } else {
        return 2;
    }
    printf("attack=%ld\n", r == 0 ? 0L : -(long)errno);
    fflush(stdout);
    write(p[1], "x", 1);
    int st;
    waitpid(child, &st, 0);
    return 0;
}
