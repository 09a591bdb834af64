/* Mapping a program's code without an exec.
 *
 *   codemap FILE
 *       Maps FILE executable in the ways a loader can: mmap with PROT_EXEC
 *       ("mmap-exec"), mmap readable then mprotect to PROT_EXEC
 *       ("mprotect-exec"), and for comparison anonymous memory made
 *       executable ("anon-exec", "anon-mprotect"). Prints "NAME=R" (0 or
 *       -errno). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static void report(const char *what, long r) {
    printf("%s=%ld\n", what, r < 0 ? -(long)errno : r);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) return 3;
    void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    report("mmap-exec", m == MAP_FAILED ? -1 : 0);
    if (m != MAP_FAILED) munmap(m, 4096);
    m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    report("mmap-read", m == MAP_FAILED ? -1 : 0);
    if (m != MAP_FAILED) report("mprotect-exec", mprotect(m, 4096, PROT_READ | PROT_EXEC));
    void *a = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report("anon-exec", a == MAP_FAILED ? -1 : 0);
    void *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report("anon-mprotect", mprotect(b, 4096, PROT_READ | PROT_EXEC));
    return 0;
}
