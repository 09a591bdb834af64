/* A multi-threaded stand-in for the supervisor in native runs: starts two
 * idle threads, runs argv[1..] as its child and waits for it, holding only
 * /dev/null meanwhile. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static void *idle(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    pthread_create(&t, NULL, idle, NULL);
    pid_t p = fork();
    if (p == 0) {
        execv(argv[1], &argv[1]);
        _exit(127);
    }
    /* Nothing of ours worth stealing: every fd but /dev/null closed. */
    close_range(3, ~0u, 0);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++) dup2(null, fd);
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
