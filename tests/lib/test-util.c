/* SPDX-License-Identifier: MIT */
/* Implementation of the test helpers in test-util.h. */
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "shared/log.h"
#include "test-util.h"

void test_init(void) {
        const char *l = getenv("FLOTILLA_TEST_LOG_LEVEL");
        int level = LOG_WARNING;

        if (l)
                (void) log_level_from_string(l, &level);
        log_set_max_level(level);
        log_set_ident("test");
        (void) signal(SIGPIPE, SIG_IGN);
        /* FLOTILLA_TEST_FILTER=name (wildcards allowed) runs only the matching tests. */
        if (getenv("FLOTILLA_TEST_FILTER"))
                cmocka_set_test_filter(getenv("FLOTILLA_TEST_FILTER"));
}

char *test_mkdtemp(void) {
        const char *t = getenv("TMPDIR") ?: "/tmp";
        char *p = NULL;

        if (asprintf(&p, "%s/flotilla-test-XXXXXX", t) < 0)
                return NULL;
        if (!mkdtemp(p)) {
                free(p);
                return NULL;
        }
        return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -errno : 0;
}

int test_rm_rf(const char *path) {
        if (!path)
                return 0;
        return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

int test_free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(a);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *) &a, &l) < 0)
                return -errno;
        return ntohs(a.sin_port);
}

int test_write_file(const char *path, const char *content) {
        FILE *f = fopen(path, "we");
        int r = 0;

        if (!f)
                return -errno;
        if (fputs(content, f) < 0)
                r = -EIO;
        if (fclose(f) < 0 && r == 0)
                r = -errno;
        return r;
}

void test_loop_for(sd_event *e, usec_t usec) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + usec;
        for (usec_t n; (n = now_usec(CLOCK_MONOTONIC)) < deadline;)
                assert_true(sd_event_run(e, deadline - n) >= 0);
}
