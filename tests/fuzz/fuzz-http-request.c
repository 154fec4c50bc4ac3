/* SPDX-License-Identifier: MIT */
/* Feeds arbitrary bytes to the HTTP server over a real loopback connection: request line and
 * header parsing (libmicrohttpd), routing, escapes, form and JSON body handling (ours). The
 * server must answer or close, never crash, leak or hang. */
#include "fuzz.h"
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/http-server.h"
#include "shared/log.h"

static sd_event *event;
static HttpServer *server;
static int port;

static int h_form(HttpRequest *req, void *u) {
        const char *v = http_request_param(req, "value");
        const char *e = http_request_bad_escape(req);
        char out[64];
        int n = snprintf(out, sizeof(out), "%zu %s", v ? strlen(v) : 0, e ? "bad" : "ok");
        return http_reply(req, 200, "text/plain", out, (size_t) n);
}

static int h_json(HttpRequest *req, void *u) {
        json_t *j = NULL;
        int r = http_request_json(req, 8, &j);
        if (r < 0)
                return r;
        r = http_reply_json(req, 200, j);
        json_decref(j);
        return r;
}

static const HttpRoute routes[] = {
        { NULL, "/v2/keys", h_form, HTTP_ROUTE_PREFIX },
        { "POST", "/json", h_json },
};

static void init(void) {
        HttpServerConfig cfg = { .max_body_size = 4096, .header_timeout_usec = 200 * USEC_PER_MSEC,
                                 .body_timeout_usec = 200 * USEC_PER_MSEC };
        log_set_max_level(LOG_CRIT);
        if (sd_event_new(&event) < 0 || http_server_new(&server, event, &cfg, routes, 2, NULL) < 0 ||
            http_server_listen(server, "127.0.0.1:0") < 0)
                abort();
        port = http_server_port(server, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char buf[4096];
        int fd;

        if (!server)
                init();
        if (size > 64 * 1024)
                return 0;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return 0;
        if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS) {
                close(fd);
                return 0;
        }
        /* Send everything, let the server answer for a few loop iterations (a complete request is
         * answered in one or two), then hang up: incomplete requests are not worth waiting for. */
        size_t off = 0;
        for (int i = 0; i < 20; i++) {
                if (off < size) {
                        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
                        if (n > 0)
                                off += (size_t) n;
                }
                (void) sd_event_run(event, i < 10 ? 0 : 100); /* loopback delivers at once */
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN))
                        break;
        }
        close(fd);
        /* Let the server notice the close and free the request. */
        for (int i = 0; i < 3; i++)
                (void) sd_event_run(event, 0);
        return 0;
}
