/* Foreign syscall ABIs from a 64-bit process.
 *
 *   foreign_abi i386-open PATH       int $0x80 open (nr 5) O_WRONLY|O_TRUNC, then write
 *   foreign_abi i386-exec PROG OUT   int $0x80 execve (nr 11) of PROG with argv {PROG, OUT}
 *   foreign_abi x32-open PATH        x32 openat (0x40000000|257) O_WRONLY|O_TRUNC, then write
 *   foreign_abi x32-exec PROG OUT    x32 execve (0x40000000|520)
 *
 * Built -static -no-pie so that the buffers below live under 4 GiB, where
 * 32-bit pointers can reach them. Prints "ret=N" (raw kernel return). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static char path[4096];
static char out[4096];
static uint32_t argv32[3];
static const char payload[] = "pwned\n";

static long int80(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if ((uintptr_t)path > 0xffffffffu) {
        puts("buffers above 4 GiB");
        return 3;
    }
    strncpy(path, argv[2], sizeof path - 1);
    if (argc > 3) strncpy(out, argv[3], sizeof out - 1);
    argv32[0] = (uint32_t)(uintptr_t)path;
    argv32[1] = (uint32_t)(uintptr_t)out;
    argv32[2] = 0;
    long ret;
    const char *mode = argv[1];
    if (!strcmp(mode, "i386-open")) {
        ret = int80(5, (long)(uintptr_t)path, O_WRONLY | O_TRUNC, 0);
    } else if (!strcmp(mode, "i386-exec")) {
        ret = int80(11, (long)(uintptr_t)path, (long)(uintptr_t)argv32, 0);
    } else if (!strcmp(mode, "x32-open")) {
        ret = syscall(0x40000000 | 257, AT_FDCWD, path, O_WRONLY | O_TRUNC, 0);
        if (ret < 0) ret = -errno;
    } else if (!strcmp(mode, "x32-exec")) {
        ret = syscall(0x40000000 | 520, path, argv32, 0);
        if (ret < 0) ret = -errno;
    } else {
        return 2;
    }
    printf("ret=%ld\n", ret);
    fflush(stdout);
    if (ret >= 0 && strstr(mode, "open")) {
        if (write((int)ret, payload, sizeof payload - 1) < 0) return 4;
    }
    return 0;
}
