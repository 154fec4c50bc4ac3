/* SPDX-License-Identifier: MIT */
/* Parsing of /v2/keys requests, following etcd 3.4's parseKeyRequest check by check: the order of
 * the checks decides which error a request with several problems gets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-request.h"
#include "kv-store-internal.h"

#define KEYS_PREFIX "/v2/keys"

void kv_request_done(KvRequest *r) {
        if (!r)
                return;
        free(r->error_cause);
        free(r->location);
        free(r->key);
        free(r->value);
        free(r->prev_value);
        *r = (KvRequest) {};
}

static int req_error(KvRequest *r, int code, const char *cause) {
        kv_request_done(r);
        r->kind = KV_REQUEST_ERROR;
        r->error_code = code;
        r->error_cause = strdup(cause);
        return r->error_cause ? 0 : -ENOMEM;
}

/* Go's strconv.ParseUint(s, 10, 64). */
static int parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (isempty(s))
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (streq(s, yes[i]) || streq(s, no[i])) {
                        *ret = streq(s, yes[i]);
                        return 0;
                }
        return -EINVAL;
}

/* Go's strconv.Quote, for the few bytes of a bad escape. */
static char *go_quote(const char *s) {
        Buf b = BUF_INIT(0);
        int r = buf_append(&b, "\"", 1);

        for (const unsigned char *p = (const unsigned char *) s; *p && r >= 0; p++) {
                if (*p == '"' || *p == '\\')
                        r = buf_printf(&b, "\\%c", *p);
                else if (*p >= 0x20 && *p < 0x7f)
                        r = buf_append(&b, p, 1);
                else if (*p == '\a' || *p == '\b' || *p == '\f' || *p == '\n' || *p == '\r' || *p == '\t' || *p == '\v')
                        r = buf_printf(&b, "\\%c", "abfnrtv"[strchr("\a\b\f\n\r\t\v", *p) - "\a\b\f\n\r\t\v"]);
                else if (*p >= 0xC2 && *p <= 0xDF && (p[1] & 0xC0) == 0x80) {
                        unsigned cp = (unsigned) (*p & 0x1F) << 6 | (p[1] & 0x3F);
                        r = cp < 0xA0 || cp == 0xAD ? buf_printf(&b, "\\u%04x", cp) : buf_append(&b, p, 2);
                        p++;
                } else
                        r = buf_printf(&b, "\\x%02x", *p);
        }
        if (r >= 0)
                r = buf_append(&b, "\"", 1);
        if (r < 0) {
                buf_done(&b);
                return NULL;
        }
        return buf_steal(&b);
}

/* Go's ServeMux cleanPath: path.Clean, keeping one trailing slash. */
static char *mux_clean(const char *p) {
        size_t n = strlen(p);
        char *c = kv_path_clean(p), *t;

        if (!c || n == 0 || p[n - 1] != '/' || streq(c, "/"))
                return c;
        if (asprintf(&t, "%s/", c) < 0)
                t = NULL;
        free(c);
        return t;
}

static const char *param(const KvRequestInput *in, const char *name) {
        return in->param ? in->param(in->userdata, name) : NULL;
}

static int get_bool(const KvRequestInput *in, const char *name, bool *ret) {
        const char *v = param(in, name);
        *ret = false;
        return v ? parse_bool(v, ret) : 0;
}

static int parse_flags(const KvRequestInput *in, KvRequest *r, bool get, bool *dir) {
        static const char *const names[] = { "recursive", "sorted", "wait", "dir", "quorum", "stream" };
        bool *fields[] = { &r->read.recursive, &r->read.sorted, &r->read.wait, dir, &r->read.quorum, &r->read.stream };
        char cause[64];

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (get_bool(in, names[i], fields[i]) < 0) {
                        (void) snprintf(cause, sizeof(cause), "invalid value for \"%s\"", names[i]);
                        return req_error(r, KV_ECODE_INVALID_FIELD, cause) ?: 1;
                }
        if (r->read.wait && !get)
                return req_error(r, KV_ECODE_INVALID_FIELD, "\"wait\" can only be used with GET requests") ?: 1;
        return 0;
}

/* The checks of parseKeyRequest after ParseForm; 1 when *r became an error. */
static int parse_params(const KvRequestInput *in, KvRequest *r, bool get, bool *dir, uint64_t *ttl, bool *has_ttl,
                        KvPrevExist *pe, bool *refresh) {
        const char *v, *pv;
        bool b;
        int k;

        if ((v = param(in, "prevIndex")) && parse_u64(v, &r->command.prev_index) < 0)
                return req_error(r, KV_ECODE_INDEX_NAN, "invalid value for \"prevIndex\"") ?: 1;
        if ((v = param(in, "waitIndex")) && parse_u64(v, &r->read.wait_index) < 0)
                return req_error(r, KV_ECODE_INDEX_NAN, "invalid value for \"waitIndex\"") ?: 1;
        if ((k = parse_flags(in, r, get, dir)) != 0)
                return k;
        pv = param(in, "prevValue");
        if (pv && !*pv)
                return req_error(r, KV_ECODE_PREV_VALUE_REQUIRED, "\"prevValue\" cannot be empty") ?: 1;
        if (get_bool(in, "noValueOnSuccess", &r->no_value_on_success) < 0)
                return req_error(r, KV_ECODE_INVALID_FIELD, "invalid value for \"noValueOnSuccess\"") ?: 1;
        *has_ttl = !isempty(v = param(in, "ttl"));
        if (*has_ttl && parse_u64(v, ttl) < 0)
                return req_error(r, KV_ECODE_TTL_NAN, "invalid value for \"ttl\"") ?: 1;
        if ((v = param(in, "prevExist"))) {
                if (parse_bool(v, &b) < 0)
                        return req_error(r, KV_ECODE_INVALID_FIELD, "invalid value for prevExist") ?: 1;
                *pe = b ? KV_PREV_EXIST_TRUE : KV_PREV_EXIST_FALSE;
        }
        if ((v = param(in, "refresh"))) {
                if (parse_bool(v, refresh) < 0)
                        return req_error(r, KV_ECODE_INVALID_FIELD, "invalid value for refresh") ?: 1;
                if (*refresh && !isempty(param(in, "value")))
                        return req_error(r, KV_ECODE_REFRESH_VALUE, "A value was provided on a refresh") ?: 1;
                if (*refresh && !*has_ttl)
                        return req_error(r, KV_ECODE_REFRESH_TTL_REQUIRED, "No TTL value set") ?: 1;
        }
        if (pv && !(r->prev_value = strdup(pv)))
                return -ENOMEM;
        return 0;
}

static int pre_checks(const KvRequestInput *in, KvRequest *r, const char **ret_rest) {
        _cleanup_free_ char *clean = NULL;
        const char *rest;

        /* etcd's CORS wrapper answers OPTIONS before anything else looks at the request. */
        if (streq(in->method, "OPTIONS")) {
                r->kind = KV_REQUEST_OPTIONS;
                return 1;
        }
        clean = mux_clean(in->path);
        if (!clean)
                return -ENOMEM;
        if (!streq(clean, in->path)) {
                r->kind = KV_REQUEST_REDIRECT;
                r->location = TAKE_PTR(clean);
                return 1;
        }
        rest = startswith(in->path, KEYS_PREFIX);
        if (!rest || (*rest && *rest != '/')) {
                r->kind = KV_REQUEST_NOT_FOUND;
                return 1;
        }
        if (!streq(in->method, "GET") && !streq(in->method, "HEAD") && !streq(in->method, "PUT") &&
            !streq(in->method, "POST") && !streq(in->method, "DELETE")) {
                r->kind = KV_REQUEST_METHOD_NOT_ALLOWED;
                return 1;
        }
        if (in->bad_escape) {
                _cleanup_free_ char *q = go_quote(in->bad_escape), *cause = NULL;
                if (!q || asprintf(&cause, "invalid URL escape %s", q) < 0)
                        return -ENOMEM;
                return req_error(r, KV_ECODE_INVALID_FORM, cause) ?: 1;
        }
        if (in->form_error)
                return req_error(r, KV_ECODE_INVALID_FORM, in->form_error) ?: 1;
        *ret_rest = rest;
        return 0;
}

static KvCommandMethod method_of(const char *m) {
        return streq(m, "PUT") ? KV_METHOD_PUT : streq(m, "POST") ? KV_METHOD_POST : KV_METHOD_DELETE;
}

int kv_request_parse(const KvRequestInput *in, KvRequest *ret) {
        KvRequest r = {};
        KvPrevExist pe = KV_PREV_EXIST_UNSET;
        bool get, dir = false, has_ttl = false, refresh = false;
        const char *rest = NULL, *v;
        uint64_t ttl = 0;
        int k;

        if (!in || !in->method || !in->path || !ret)
                return -EINVAL;
        k = pre_checks(in, &r, &rest);
        if (k == 0) {
                get = streq(in->method, "GET");
                if (!(r.key = kv_path_clean(rest)))
                        k = -ENOMEM;
                else
                        k = parse_params(in, &r, get, &dir, &ttl, &has_ttl, &pe, &refresh);
        }
        if (k < 0) {
                kv_request_done(&r);
                return k;
        }
        if (k > 0) {
                *ret = r;
                return 0;
        }
        r.read.path = r.key;
        r.read.head = streq(in->method, "HEAD");
        v = param(in, "value");
        if (v && !(r.value = strdup(v))) {
                kv_request_done(&r);
                return -ENOMEM;
        }
        r.command = (KvCommand) {
                .method = get ? KV_METHOD_QGET : method_of(in->method),
                .path = r.key,
                .value = r.value,
                .has_value = !!r.value,
                .dir = dir,
                .recursive = r.read.recursive,
                .sorted = r.read.sorted,
                .refresh = refresh,
                .prev_value = r.prev_value,
                .has_prev_value = !!r.prev_value,
                .prev_index = r.command.prev_index,
                .prev_exist = pe,
                /* Go: now.Add(time.Duration(ttl) * time.Second).UnixNano(), wrapping like int64. */
                .expiration_ns = has_ttl ? (int64_t) ((uint64_t) in->now_ns + ttl * 1000000000ULL) : 0,
                .time_ns = in->now_ns,
        };
        if (get && r.read.quorum)
                r.kind = KV_REQUEST_COMMAND;       /* RequestV2.Handle: quorum wins over wait */
        else if (get && r.read.wait)
                r.kind = KV_REQUEST_WATCH;
        else if (get || r.read.head)
                r.kind = KV_REQUEST_READ;
        else
                r.kind = KV_REQUEST_COMMAND;
        *ret = r;
        return 0;
}
