/* A program whose bytes change without its metadata changing.
 *
 * Both modes make FILE (mode 0755, size N = both programs' larger size
 * rounded up to a page), map it shared and writable, and write GOOD into
 * the mapping (zero-padded to N). Later they write BAD over the same,
 * already dirty, pages — no page fault, so neither mtime nor ctime nor size
 * change — and unmap.
 *
 *   stale_hash run FILE GOOD BAD OUT
 *       Between the two writes, tries to run FILE while the mapping exists
 *       (the kernel refuses: "first=-ETXTBSY"; a supervisor judges and
 *       hashes it on the way); after them runs FILE OUT: "second=STATUS"
 *       (the exit status, or -errno of the exec).
 *   stale_hash hold FILE GOOD BAD
 *       Between the two writes, prints "ready" and waits for a byte on
 *       stdin, holding the mapping (meanwhile a supervised run may try to
 *       run FILE: the kernel refuses it, ETXTBSY, after the supervisor has
 *       judged and hashed it); after them prints "swapped". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) exit(3);
    char *b = malloc(st.st_size);
    if (read(fd, b, st.st_size) != st.st_size) exit(3);
    close(fd);
    *len = st.st_size;
    return b;
}

static long run(const char *file, const char *out) {
    pid_t c = fork();
    if (c == 0) {
        execl(file, file, out, (char *)NULL);
        _exit(100 + errno);
    }
    int st = 0;
    waitpid(c, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) >= 100) return -(WEXITSTATUS(st) - 100);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv) {
    int hold = argc == 5 && !strcmp(argv[1], "hold");
    if (!hold && !(argc == 6 && !strcmp(argv[1], "run"))) return 2;
    const char *file = argv[2];
    size_t lg, lb;
    char *good = slurp(argv[3], &lg), *bad = slurp(argv[4], &lb);
    size_t n = ((lg > lb ? lg : lb) + 4095) / 4096 * 4096;
    int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0755);
    if (fd < 0 || ftruncate(fd, n) || fchmod(fd, 0755)) return 4;
    char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 5;
    close(fd);
    memcpy(m, good, lg);
    if (hold) {
        printf("ready\n");
        fflush(stdout);
        char c;
        if (read(0, &c, 1) != 1) return 6;
    } else {
        printf("first=%ld\n", run(file, argv[5]));
    }
    memset(m, 0, n);
    memcpy(m, bad, lb);
    munmap(m, n);
    if (hold) {
        printf("swapped\n");
        fflush(stdout);
    } else {
        printf("second=%ld\n", run(file, argv[5]));
    }
    return 0;
}
