/* Ways to exec a file.
 *   exec MODE FILE ARG...   runs FILE with argv {FILE, ARG...}
 * MODE: path (execv), execveat (O_PATH fd, "", AT_EMPTY_PATH), fexecve
 * (O_RDONLY fd), memfd (FILE's bytes copied into a memfd, then fexecve).
 * Prints "exec=-errno" when the exec returned. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *m = argv[1];
    char **av = &argv[2];
    if (!strcmp(m, "path")) {
        execv(argv[2], av);
    } else if (!strcmp(m, "execveat")) {
        int fd = open(argv[2], O_PATH);
        if (fd < 0) return 3;
        syscall(SYS_execveat, fd, "", av, environ, AT_EMPTY_PATH);
    } else if (!strcmp(m, "fexecve")) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) return 3;
        fexecve(fd, av, environ);
    } else if (!strcmp(m, "memfd")) {
        int src = open(argv[2], O_RDONLY);
        int fd = memfd_create("payload", MFD_CLOEXEC);
        if (src < 0 || fd < 0) return 3;
        char buf[65536];
        ssize_t n;
        while ((n = read(src, buf, sizeof buf)) > 0)
            if (write(fd, buf, n) != n) return 4;
        close(src);
        fexecve(fd, av, environ);
    } else {
        return 2;
    }
    printf("exec=%d\n", -errno);
    return 0;
}
