/* Floods, then one forbidden action (exec of MARKER writing after.txt).
 *   exhaust forks N ALLOWED MARKER    N children at once, each execs ALLOWED
 *   exhaust threads N MARKER          N threads, released together, each
 *                                     opens protected/data for writing
 *   exhaust argv MARKER               execs MARKER with ~3 MiB of argv whose
 *                                     last word is FORBIDDEN (writes big.txt)
 *   exhaust pathmax MARKER            opens protected/data for writing via a
 *                                     path of exactly PATH_MAX-1 bytes, and
 *                                     via one of PATH_MAX bytes
 * Prints counters as "key=value". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_barrier_t barrier;
static int opened, refused;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *opener(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier);
    int fd = open("protected/data", O_WRONLY | O_TRUNC);
    pthread_mutex_lock(&mu);
    if (fd >= 0) {
        opened++;
        if (write(fd, "pwned\n", 6) < 0) opened += 0;
        close(fd);
    } else {
        refused++;
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void forbidden(const char *marker) {
    pid_t p = fork();
    if (p == 0) {
        execl(marker, marker, "after.txt", (char *)0);
        _exit(99);
    }
    int st;
    waitpid(p, &st, 0);
    printf("after=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *m = argv[1];
    const char *marker = argv[argc - 1];
    if (!strcmp(m, "forks")) {
        int n = atoi(argv[2]), ok = 0, bad = 0;
        pid_t *pids = calloc(n, sizeof *pids);
        for (int i = 0; i < n; i++) {
            pids[i] = fork();
            if (pids[i] == 0) {
                execl(argv[3], argv[3], (char *)0);
                _exit(99);
            }
        }
        for (int i = 0; i < n; i++) {
            int st;
            if (pids[i] > 0 && waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) &&
                WEXITSTATUS(st) == 0)
                ok++;
            else
                bad++;
        }
        printf("ok=%d bad=%d\n", ok, bad);
    } else if (!strcmp(m, "threads")) {
        int n = atoi(argv[2]), started = 0;
        pthread_t *t = calloc(n, sizeof *t);
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 64 * 1024);
        pthread_barrier_init(&barrier, NULL, n);
        for (int i = 0; i < n; i++)
            if (pthread_create(&t[i], &a, opener, NULL) == 0) started++;
            else return 3;
        for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
        printf("started=%d opened=%d refused=%d\n", started, opened, refused);
    } else if (!strcmp(m, "argv")) {
        /* Room for more than 2 MiB of arguments: the kernel allows a quarter
         * of the stack limit. */
        struct rlimit rl;
        getrlimit(RLIMIT_STACK, &rl);
        rlim_t want = 64ul << 20;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
            printf("stack-limit=%lu\n", (unsigned long)rl.rlim_max);
            return 0;
        }
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_STACK, &rl)) return 3;
        enum { WORDS = 24, LEN = 128 * 1024 - 1 };
        char **av = calloc(WORDS + 4, sizeof *av);
        av[0] = (char *)marker;
        av[1] = "big.txt";
        for (int i = 0; i < WORDS; i++) {
            av[2 + i] = malloc(LEN + 1);
            memset(av[2 + i], 'a', LEN);
            av[2 + i][LEN] = 0;
        }
        av[2 + WORDS] = "FORBIDDEN";
        av[3 + WORDS] = NULL;
        execv(marker, av);
        printf("exec=%d\n", -errno);
    } else if (!strcmp(m, "pathmax")) {
        const char *tail = "protected/data";
        for (int total = 4095; total <= 4096; total++) {
            char *p = malloc(total + 1);
            int pre = total - (int)strlen(tail), i = 0;
            if (pre % 2) {
                memcpy(p, ".//", 3);
                i = 3;
                pre -= 3;
            }
            for (; pre > 0; pre -= 2, i += 2) memcpy(p + i, "./", 2);
            strcpy(p + i, tail);
            int fd = open(p, O_WRONLY | O_TRUNC);
            printf("len%zu=%d\n", strlen(p), fd < 0 ? -errno : 0);
            if (fd >= 0) {
                if (write(fd, "pwned\n", 6) < 0) return 4;
                close(fd);
            }
            free(p);
        }
    } else {
        return 2;
    }
    fflush(stdout);
    forbidden(marker);
    return 0;
}
