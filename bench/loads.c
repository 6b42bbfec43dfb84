/* The loads saferun's benchmark puts through it, as small C programs so that the
 * baseline is the fastest a pipe goes on this machine (1 MiB write/read calls, no
 * buffering library in the way):
 *
 *   loads write BYTES FDS   write BYTES of 128-byte lines to fd 1 (FDS=1), fd 2 (FDS=2)
 *                           or half to each, alternately (FDS=3)
 *   loads read BYTES        read stdin to its end; exit 1 unless exactly BYTES came
 *   loads relay             splice stdin to stdout, 256 KiB pipes: the practical limit of
 *                           any relay (counts nothing, watches nothing)
 *   loads lines FILE        write 16-byte lines to stdout, one write(2) each, and after
 *                           each one the number written so far into FILE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int do_write(long long bytes, int fds) {
    char *buf = malloc(CHUNK);
    if (!buf) return 1;
    for (int i = 0; i < CHUNK; i++) buf[i] = (i % 128 == 127) ? '\n' : 'a' + i % 26;
    long long left[3] = {0, fds & 1 ? bytes : 0, fds & 2 ? bytes : 0};
    if (fds == 3) left[1] = left[2] = bytes / 2;
    while (left[1] || left[2]) {
        for (int fd = 1; fd <= 2; fd++) {
            size_t n = left[fd] < CHUNK ? (size_t)left[fd] : CHUNK;
            if (!n) continue;
            if (write_all(fd, buf, n)) return errno == EPIPE ? 141 : 1;
            left[fd] -= (long long)n;
        }
    }
    return 0;
}

static int do_read(long long expected) {
    char *buf = malloc(CHUNK);
    long long total = 0;
    if (!buf) return 1;
    for (;;) {
        ssize_t r = read(0, buf, CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            perror("loads read");
            return 1;
        }
        if (r == 0) break;
        total += r;
    }
    if (total != expected) {
        fprintf(stderr, "loads read: %lld bytes, expected %lld\n", total, expected);
        return 1;
    }
    return 0;
}

static int do_relay(void) {
    fcntl(0, F_SETPIPE_SZ, 256 * 1024);
    fcntl(1, F_SETPIPE_SZ, 256 * 1024);
    for (;;) {
        ssize_t n = splice(0, NULL, 1, NULL, CHUNK, SPLICE_F_MOVE);
        if (n == 0) return 0;
        if (n < 0 && errno != EINTR) {
            perror("loads relay");
            return 1;
        }
    }
}

static int do_lines(const char *counter) {
    char line[17];
    for (long n = 0;; n++) {
        snprintf(line, sizeof line, "%015ld\n", n);
        if (write_all(1, line, 16)) return 1;
        int fd = open(counter, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            char text[32];
            int len = snprintf(text, sizeof text, "%ld\n", n + 1);
            write_all(fd, text, (size_t)len);
            close(fd);
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "write")) return do_write(atoll(argv[2]), atoi(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "read")) return do_read(atoll(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "relay")) return do_relay();
    if (argc >= 3 && !strcmp(argv[1], "lines")) return do_lines(argv[2]);
    fprintf(stderr, "usage: loads write BYTES FDS | read BYTES | relay | lines FILE\n");
    return 2;
}
