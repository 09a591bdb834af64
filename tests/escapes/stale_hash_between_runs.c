/* A program whose bytes change between two runs without its metadata
 * changing.
 *
 *   stale_hash_between_runs FILE GOOD BAD
 *       Makes FILE (mode 0755, size N = both programs' larger size rounded
 *       up to a page), maps it shared and writable and writes GOOD into the
 *       mapping (zero-padded to N); prints "ready" and waits for a byte on
 *       stdin, holding the mapping (meanwhile a supervised run may try to
 *       run FILE: the kernel refuses it, ETXTBSY, after the supervisor has
 *       judged and hashed it). Then writes BAD over the same, already dirty,
 *       pages — no page fault, so neither mtime nor ctime nor size change —
 *       unmaps, and prints "swapped". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    size_t lg, lb;
    char *good = slurp(argv[2], &lg), *bad = slurp(argv[3], &lb);
    size_t n = ((lg > lb ? lg : lb) + 4095) / 4096 * 4096;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0755);
    if (fd < 0 || ftruncate(fd, n) || fchmod(fd, 0755)) return 4;
    char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 5;
    close(fd);
    memcpy(m, good, lg);
    printf("ready\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1) return 6;
    memset(m, 0, n);
    memcpy(m, bad, lb);
    munmap(m, n);
    printf("swapped\n");
    fflush(stdout);
    return 0;
}
