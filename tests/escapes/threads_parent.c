/* A multi-threaded stand-in for the supervisor in native runs: starts two
 * idle threads, then runs argv[1..] as its child and waits for it. */
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
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
