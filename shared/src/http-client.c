/* SPDX-License-Identifier: MIT */
/* libcurl multi on sd-event: io sources per socket, one timer, finished transfers drained from a
 * defer source one per loop iteration (so callbacks never run inside curl's own callbacks). */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "shared/buf.h"
#include "shared/http-client.h"
#include "shared/list.h"
#include "shared/event-util.h"
#include "shared/log.h"

struct HttpCall {
        HttpClient *client;
        CURL *easy;
        struct curl_slist *req_headers;
        HttpCallSpec spec;          /* callbacks and userdata; pointers in it are not kept */
        char *post;                 /* copy of the request body */
        Buf body;                   /* collected response */
        char **resp_headers;        /* "Name: value" of the current response */
        int abort_error;            /* why a callback aborted the transfer */
        bool headers_done;
        bool in_callback;           /* inside a curl callback: removal must wait */
        bool cancelled;
        struct HttpCall *prev, *next;
};

struct HttpClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer, *defer;
        HttpCall *calls;
        unsigned n_calls;
        HttpCall *cancelled;        /* cancelled inside a curl callback; freed from defer */
};

static int curl_to_errno(CURLcode c) {
        switch (c) {
        case CURLE_OK:
                return 0;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        case CURLE_PARTIAL_FILE:
                return -EPIPE;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EINVAL;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_FILESIZE_EXCEEDED:
                return -E2BIG;
        case CURLE_TOO_MANY_REDIRECTS:
                return -ELOOP;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
                return -EPROTO;
        default:
                return -EIO;
        }
}

static void call_unlink(HttpCall *call) {
        LIST_REMOVE(call->client->calls, call);
        call->client->n_calls--;
}

static void call_free(HttpCall *call) {
        if (!call)
                return;
        if (call->easy) {
                (void) curl_multi_remove_handle(call->client->multi, call->easy);
                curl_easy_cleanup(call->easy);
        }
        curl_slist_free_all(call->req_headers);
        free(call->post);
        buf_done(&call->body);
        strv_free(call->resp_headers);
        free(call);
}

bool http_call_request_sent(HttpCall *call) {
        curl_off_t t = 0;
        /* Pre-transfer is reached right before the request goes out, on new and reused
         * connections alike. */
        return call->easy && curl_easy_getinfo(call->easy, CURLINFO_PRETRANSFER_TIME_T, &t) == CURLE_OK && t > 0;
}

unsigned http_client_active(HttpClient *c) {
        return c->n_calls;
}

const char *http_call_header(HttpCall *call, const char *name) {
        size_t l = strlen(name);

        STRV_FOREACH(h, call->resp_headers)
                if (strncasecmp(*h, name, l) == 0 && (*h)[l] == ':') {
                        const char *v = *h + l + 1;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        return v;
                }
        return NULL;
}

static void finish_headers(HttpCall *call) {
        long status = 0;

        if (call->headers_done)
                return;
        call->headers_done = true;
        if (call->spec.on_headers && !call->cancelled) {
                (void) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
                call->spec.on_headers(call, status, call->spec.userdata);
        }
}

static size_t on_curl_header(char *data, size_t size, size_t n, void *userdata) {
        HttpCall *call = userdata;
        size_t len = size * n, l = len;

        while (l > 0 && (data[l - 1] == '\n' || data[l - 1] == '\r'))
                l--;
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* A new response (after 100 Continue, for instance): forget the previous one. */
                call->resp_headers = strv_free(call->resp_headers);
                call->headers_done = false;
                return len;
        }
        if (l == 0) {
                long status = 0;
                (void) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
                if (status >= 200) {
                        call->in_callback = true;
                        finish_headers(call);
                        call->in_callback = false;
                }
                return call->cancelled ? 0 : len;
        }
        if (strv_length(call->resp_headers) >= 256 || strv_push(&call->resp_headers, strndup(data, l)) < 0) {
                call->abort_error = -E2BIG;
                return 0;
        }
        return len;
}

static size_t on_curl_write(char *data, size_t size, size_t n, void *userdata) {
        HttpCall *call = userdata;
        size_t len = size * n;
        int r;

        if (call->cancelled)
                return 0;
        call->in_callback = true;
        finish_headers(call);
        if (call->spec.on_data && !call->cancelled) {
                r = call->spec.on_data(call, data, len, call->spec.userdata);
                if (r < 0)
                        call->abort_error = r;
        } else if (!call->cancelled) {
                r = buf_append(&call->body, data, len);
                if (r < 0)
                        call->abort_error = r == -ENOBUFS ? -E2BIG : r;
        }
        call->in_callback = false;
        return call->abort_error < 0 || call->cancelled ? 0 : len;
}

/* s is the caller's spec: the call keeps only callbacks and userdata, not the pointers. */
static int call_setup(HttpCall *call, const HttpCallSpec *s) {
        usec_t timeout = s->timeout_usec ?: HTTP_CALL_TIMEOUT_DEFAULT;
        usec_t connect = s->connect_timeout_usec ?: MIN(timeout, HTTP_CONNECT_TIMEOUT_DEFAULT);
        CURL *e = call->easy;
        char ua[64];

#define SET(opt, val)                                              \
        do {                                                       \
                if (curl_easy_setopt(e, opt, val) != CURLE_OK) \
                        return -EINVAL;                            \
        } while (0)
        SET(CURLOPT_PRIVATE, call);
        SET(CURLOPT_URL, s->url);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_TIMEOUT_MS, (long) (timeout / USEC_PER_MSEC));
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long) MAX(connect / USEC_PER_MSEC, (usec_t) 1));
        SET(CURLOPT_TCP_NODELAY, 1L);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_WRITEFUNCTION, on_curl_write);
        SET(CURLOPT_WRITEDATA, call);
        SET(CURLOPT_HEADERFUNCTION, on_curl_header);
        SET(CURLOPT_HEADERDATA, call);
        if (!s->on_data)
                SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) (s->max_response_size ?: HTTP_MAX_RESPONSE_DEFAULT));
        (void) snprintf(ua, sizeof(ua), "flotilla/%s", FLOTILLA_VERSION);
        SET(CURLOPT_USERAGENT, ua);
        if (s->body) {
                SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) s->body_len);
                SET(CURLOPT_POSTFIELDS, call->post);
        }
        if (s->method && !streq(s->method, s->body ? "POST" : "GET")) {
                if (streq(s->method, "HEAD"))
                        SET(CURLOPT_NOBODY, 1L);
                else
                        SET(CURLOPT_CUSTOMREQUEST, s->method);
        }
#undef SET
        /* "Expect: 100-continue" costs a round trip (or a 1 s stall) for bodies over 1 KiB. */
        call->req_headers = curl_slist_append(call->req_headers, "Expect:");
        if (s->content_type) {
                _cleanup_free_ char *ct = NULL;
                if (asprintf(&ct, "Content-Type: %s", s->content_type) < 0)
                        return -ENOMEM;
                call->req_headers = curl_slist_append(call->req_headers, ct);
        }
        STRV_FOREACH(h, s->headers)
                call->req_headers = curl_slist_append(call->req_headers, *h);
        if (!call->req_headers)
                return -ENOMEM;
        return curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->req_headers) == CURLE_OK ? 0 : -EINVAL;
}

int http_call_start(HttpClient *c, const HttpCallSpec *spec, HttpCall **ret) {
        HttpCall *call;
        int r;

        if (!spec->url || !spec->on_done || !(startswith(spec->url, "http://") || startswith(spec->url, "https://")))
                return -EINVAL;
        call = new0(HttpCall, 1);
        if (!call)
                return -ENOMEM;
        call->client = c;
        call->spec = *spec;
        call->spec.url = NULL;
        call->spec.body = NULL;
        call->spec.headers = NULL;
        call->spec.content_type = NULL;
        call->spec.method = NULL;
        call->body = BUF_INIT(spec->max_response_size ?: HTTP_MAX_RESPONSE_DEFAULT);
        if (spec->body) {
                call->post = malloc(spec->body_len + 1);
                if (!call->post) {
                        free(call);
                        return -ENOMEM;
                }
                memcpy(call->post, spec->body, spec->body_len);
                call->post[spec->body_len] = 0;
        }
        call->easy = curl_easy_init();
        if (!call->easy) {
                call_free(call);
                return -ENOMEM;
        }
        r = call_setup(call, spec);
        if (r >= 0 && curl_multi_add_handle(c->multi, call->easy) != CURLM_OK)
                r = -ENOMEM;
        if (r < 0) {
                curl_easy_cleanup(TAKE_PTR(call->easy));
                call_free(call);
                return r;
        }
        LIST_PREPEND(c->calls, call);
        c->n_calls++;
        if (ret)
                *ret = call;
        return 0;
}

void http_call_cancel(HttpCall *call) {
        HttpClient *c;

        if (!call || call->cancelled)
                return;
        c = call->client;
        call->cancelled = true;
        call_unlink(call);
        if (call->in_callback) {
                /* curl is on the stack: it finds out from our callback's return value; the handle
                 * is removed from the defer source. */
                call->next = c->cancelled;
                c->cancelled = call;
                (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ON);
                return;
        }
        call_free(call);
}

/* Takes one finished transfer (or one cancelled call) per loop iteration. */
static int on_defer(sd_event_source *s, void *userdata) {
        HttpClient *c = userdata;
        CURLMsg *msg;
        HttpCall *call;
        long status = 0;
        int left, error;

        if (c->cancelled) {
                call = c->cancelled;
                c->cancelled = call->next;
                call_free(call);
                return 0;
        }
        msg = curl_multi_info_read(c->multi, &left);
        if (!msg) {
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return 0;
        }
        if (msg->msg != CURLMSG_DONE)
                return 0;
        if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &call) != CURLE_OK || !call)
                return 0;
        if (call->cancelled)
                return 0;
        error = call->abort_error ?: curl_to_errno(msg->data.result);
        (void) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        call_unlink(call);
        (void) curl_multi_remove_handle(c->multi, call->easy);
        finish_headers(call);
        if (!call->cancelled)
                call->spec.on_done(call, error, status, call->body.data ?: "", call->body.len, call->spec.userdata);
        call_free(call);
        return 0;
}

static void check_done(HttpClient *c) {
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ON);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HttpClient *c = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;
        (void) curl_multi_socket_action(c->multi, fd, action, &running);
        check_done(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpClient *c = userdata;
        int running;

        (void) curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
        return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        HttpClient *c = userp;
        sd_event_source *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        (void) sd_event_source_disable_unref(s);
                        (void) curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (s) {
                r = sd_event_source_set_io_events(s, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s, SD_EVENT_ON);
        } else {
                r = sd_event_add_io(c->event, &s, fd, events, on_io, c);
                if (r >= 0 && curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
                        s = sd_event_source_disable_unref(s);
                        r = -ENOMEM;
                }
        }
        if (r < 0)
                log_debug_errno(r, "Failed to watch curl socket %d: %m", (int) fd);
        return r < 0 ? -1 : 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        HttpClient *c = userp;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (sd_event_source_set_time_relative(c->timer, (usec_t) timeout_ms * USEC_PER_MSEC) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

int http_client_new(HttpClient **ret, sd_event *e) {
        HttpClient *c;
        int r;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        c = new0(HttpClient, 1);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->multi = curl_multi_init();
        if (!c->multi) {
                http_client_free(c);
                return -ENOMEM;
        }
        r = sd_event_add_time_relative(e, &c->timer, CLOCK_MONOTONIC, 0, EVENT_ACCURACY_EXACT_USEC, on_timer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(e, &c->defer, on_defer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        if (r < 0) {
                http_client_free(c);
                return r;
        }
        if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK) {
                http_client_free(c);
                return -EIO;
        }
        *ret = c;
        return 0;
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        while (c->calls) {
                HttpCall *call = c->calls;
                call->cancelled = true;
                call_unlink(call);
                call_free(call);
        }
        while (c->cancelled) {
                HttpCall *call = c->cancelled;
                c->cancelled = call->next;
                call_free(call);
        }
        if (c->multi)
                curl_multi_cleanup(c->multi); /* REMOVEs the remaining sockets through our callback */
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->defer);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}
