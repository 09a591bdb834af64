/* Opening a file by handle, without a path.
 *   handle save PATH HANDLE_FILE   name_to_handle_at(PATH), handle saved
 *   handle open DIR HANDLE_FILE    open_by_handle_at(fd of DIR, saved handle,
 *                                  O_WRONLY|O_TRUNC), then write
 * Prints "name=0|-errno" / "open=N|-errno". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    struct file_handle *h = (struct file_handle *)buf;
    if (!strcmp(argv[1], "save")) {
        int mnt;
        h->handle_bytes = MAX_HANDLE_SZ;
        int r = name_to_handle_at(AT_FDCWD, argv[2], h, &mnt, 0);
        printf("name=%d\n", r < 0 ? -errno : 0);
        if (r < 0) return 0;
        FILE *f = fopen(argv[3], "wb");
        if (!f) return 3;
        fwrite(h, 1, sizeof *h + h->handle_bytes, f);
        fclose(f);
        return 0;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) return 3;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n < sizeof *h) return 3;
    int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (dir < 0) return 4;
    int fd = open_by_handle_at(dir, h, O_WRONLY | O_TRUNC);
    printf("open=%d\n", fd < 0 ? -errno : fd);
    if (fd >= 0 && write(fd, "pwned\n", 6) != 6) return 5;
    return 0;
}
