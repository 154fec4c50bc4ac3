/* SPDX-License-Identifier: MIT */
/* Real etcd / flotilla-kv clusters for integration tests; see test-kv-server.h. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/buf.h"
#include "shared/macro.h"
#include "test-kv-server.h"
#include "test-util.h"

struct TestKvConn {
        CURL *easy;
        char *base;
        long timeout_ms;
};

void test_kv_conn_set_timeout(TestKvConn *k, long ms) {
        k->timeout_ms = ms;
}

static size_t collect(char *p, size_t s, size_t n, void *u) {
        return buf_append(u, p, s * n) < 0 ? 0 : s * n;
}

TestKvConn *test_kv_conn_new(const char *base_url) {
        TestKvConn *k = new0(TestKvConn, 1);
        k->easy = curl_easy_init();
        k->base = strdup(base_url);
        k->timeout_ms = 10000;
        return k;
}

void test_kv_conn_free(TestKvConn *k) {
        if (!k)
                return;
        curl_easy_cleanup(k->easy);
        free(k->base);
        free(k);
}

static long kv_do(TestKvConn *k, const char *method, const char *path, const char *body, const char *content_type,
                  char **ret_body) {
        _cleanup_free_ char *url = NULL;
        struct curl_slist *headers = NULL;
        Buf b = BUF_INIT(0);
        long status = 0;
        CURLcode cc;

        if (asprintf(&url, "%s%s", k->base, path) < 0)
                return -ENOMEM;
        curl_easy_reset(k->easy);
        curl_easy_setopt(k->easy, CURLOPT_URL, url);
        curl_easy_setopt(k->easy, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(k->easy, CURLOPT_TIMEOUT_MS, k->timeout_ms);
        curl_easy_setopt(k->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(k->easy, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(k->easy, CURLOPT_WRITEDATA, &b);
        if (body)
                curl_easy_setopt(k->easy, CURLOPT_POSTFIELDS, body);
        if (content_type) {
                char h[128];
                (void) snprintf(h, sizeof(h), "Content-Type: %s", content_type);
                headers = curl_slist_append(NULL, h);
                curl_easy_setopt(k->easy, CURLOPT_HTTPHEADER, headers);
        }
        cc = curl_easy_perform(k->easy);
        curl_slist_free_all(headers);
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &status);
        if (ret_body)
                *ret_body = buf_steal(&b);
        else
                buf_done(&b);
        return cc == CURLE_OK ? status : -EIO;
}

long test_kv_do(TestKvConn *k, const char *method, const char *path, const char *form, char **ret_body) {
        return kv_do(k, method, path, form, NULL, ret_body);
}

long test_kv_do_json(TestKvConn *k, const char *method, const char *path, const char *json, char **ret_body) {
        return kv_do(k, method, path, json, "application/json", ret_body);
}

static const char *kv_bin(void) {
        return getenv("FLOTILLA_TEST_KV_BIN") ?: "etcd";
}

static bool bin_exists(const char *bin) {
        if (strchr(bin, '/'))
                return access(bin, X_OK) == 0;
        _cleanup_free_ char *path = strdup(getenv("PATH") ?: "/usr/bin:/bin");
        for (char *save = NULL, *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char p[512];
                (void) snprintf(p, sizeof(p), "%s/%s", d, bin);
                if (access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

static int member_spawn_state(TestKvCluster *c, unsigned i, const char *state);

static int member_spawn(TestKvCluster *c, unsigned i) {
        return member_spawn_state(c, i, "new");
}

static int member_spawn_state(TestKvCluster *c, unsigned i, const char *state) {
        char name[16], data[512], log[512], listen_client[64], listen_peer[64], peer_url[64];
        char cluster[1024] = "", token[64];
        pid_t pid;

        (void) snprintf(name, sizeof(name), "m%u", i);
        (void) snprintf(data, sizeof(data), "%s/%s", c->dir, name);
        (void) snprintf(log, sizeof(log), "%s/%s.log", c->dir, name);
        (void) snprintf(listen_client, sizeof(listen_client), "%s", c->urls[i]);
        (void) snprintf(peer_url, sizeof(peer_url), "http://127.0.0.1:%d", c->peer_ports[i]);
        (void) snprintf(listen_peer, sizeof(listen_peer), "%s", peer_url);
        (void) snprintf(token, sizeof(token), "test-%d", (int) getpid());
        for (unsigned j = 0; j < c->n; j++) {
                char one[96];
                if (c->removed[j])
                        continue;
                (void) snprintf(one, sizeof(one), "%sm%u=http://127.0.0.1:%d", cluster[0] ? "," : "", j, c->peer_ports[j]);
                strncat(cluster, one, sizeof(cluster) - strlen(cluster) - 1);
        }
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                /* Never outlive the test, even if it crashes. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (fd >= 0) {
                        (void) dup2(fd, STDOUT_FILENO);
                        (void) dup2(fd, STDERR_FILENO);
                }
                const char *argv[64] = { c->bin, "--name", name, "--data-dir", data, "--listen-client-urls", listen_client,
                                         "--advertise-client-urls", listen_client, "--listen-peer-urls", listen_peer,
                                         "--initial-advertise-peer-urls", peer_url, "--initial-cluster", cluster,
                                         "--initial-cluster-state", state, "--initial-cluster-token", token,
                                         "--enable-v2=true", "--heartbeat-interval", "50", "--election-timeout", "500",
                                         "--log-level", getenv("FLOTILLA_TEST_KV_LOG_LEVEL") ?: "error" };
                size_t k = 0;
                while (argv[k])
                        k++;
                for (size_t j = 0; c->extra_args && c->extra_args[j] && k < ELEMENTSOF(argv) - 1; j++)
                        argv[k++] = c->extra_args[j];
                argv[k] = NULL;
                execvp(c->bin, (char *const *) argv);
                _exit(127);
        }
        c->pids[i] = pid;
        return 0;
}

int test_kv_wait_healthy(TestKvCluster *c, unsigned i, unsigned timeout_sec) {
        TestKvConn *k = test_kv_conn_new(c->urls[i]);
        time_t end = time(NULL) + timeout_sec;
        int r = -ETIMEDOUT, status;

        while (time(NULL) < end) {
                _cleanup_free_ char *body = NULL;
                if (c->pids[i] > 0 && waitpid(c->pids[i], &status, WNOHANG) == c->pids[i]) {
                        c->pids[i] = 0;
                        fprintf(stderr, "kv member %u exited (status %d); see %s/m%u.log\n", i, status, c->dir, i);
                        r = -ECHILD;
                        break;
                }
                if (test_kv_do(k, "GET", "/health", NULL, &body) == 200 && body && strstr(body, "\"true\"")) {
                        r = 0;
                        break;
                }
                usleep(50000);
        }
        test_kv_conn_free(k);
        return r;
}

static long metric_sum(const char *text, const char *name) {
        size_t len = strlen(name);
        long sum = -1;

        for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
                const char *v;
                if (strncmp(l, name, len) != 0 || (l[len] != ' ' && l[len] != '{'))
                        continue;
                v = strchr(l, ' ');
                if (v && (!strchr(l, '\n') || v < strchr(l, '\n')))
                        sum = (sum < 0 ? 0 : sum) + strtol(v + 1, NULL, 10);
        }
        return sum;
}

int test_kv_wait_active_peers(TestKvCluster *c, unsigned i, unsigned want, unsigned timeout_sec) {
        TestKvConn *k = test_kv_conn_new(c->urls[i]);
        time_t end = time(NULL) + timeout_sec;
        long seen = -1;
        int r = -ETIMEDOUT;

        while (time(NULL) < end) {
                _cleanup_free_ char *body = NULL;
                if (test_kv_do(k, "GET", "/metrics", NULL, &body) == 200 && body) {
                        seen = metric_sum(body, test_kv_is_flotilla(c) ? "flotilla_kv_active_peers"
                                                                        : "etcd_network_active_peers");
                        if (seen == (long) want) {
                                r = 0;
                                break;
                        }
                }
                usleep(100000);
        }
        if (r < 0)
                fprintf(stderr, "member %u: %ld active peers after %u s, wanted %u\n", i, seen, timeout_sec, want);
        test_kv_conn_free(k);
        return r;
}

static void new_member_ports(TestKvCluster *c, unsigned i) {
        c->client_ports[i] = test_free_port();
        c->peer_ports[i] = test_free_port();
        (void) snprintf(c->urls[i], sizeof(c->urls[i]), "http://127.0.0.1:%d", c->client_ports[i]);
}

int test_kv_member_add(TestKvCluster *c, unsigned via) {
        _cleanup_free_ char *body = NULL;
        char json[128];
        unsigned i = c->n;
        TestKvConn *k;
        long status;
        int r;

        if (i >= TEST_KV_MAX_MEMBERS)
                return -E2BIG;
        new_member_ports(c, i);
        (void) snprintf(json, sizeof(json), "{\"peerURLs\":[\"http://127.0.0.1:%d\"]}", c->peer_ports[i]);
        k = test_kv_conn_new(c->urls[via]);
        /* etcd refuses (500, "unhealthy cluster") until its leader has been connected to every
         * member for 5 s, so a cluster that just started is asked again. */
        for (int t = 0; t < 40; t++) {
                free(body);
                body = NULL;
                status = test_kv_do_json(k, "POST", "/v2/members", json, &body);
                if (status != 500)
                        break;
                usleep(500000);
        }
        test_kv_conn_free(k);
        if (status != 201) {
                fprintf(stderr, "adding a member: HTTP %ld %s\n", status, strna(body));
                return status < 0 ? (int) status : -EIO;
        }
        c->n++;
        c->endpoints[i] = c->urls[i];
        r = member_spawn_state(c, i, "existing");
        if (r >= 0)
                r = test_kv_wait_healthy(c, i, 30);
        return r < 0 ? r : (int) i;
}

int test_kv_member_remove(TestKvCluster *c, unsigned i, unsigned via) {
        _cleanup_free_ char *body = NULL, *path = NULL;
        char peer[64];
        const char *p, *id_start;
        TestKvConn *k = test_kv_conn_new(c->urls[via]);
        long status;
        int st;

        (void) snprintf(peer, sizeof(peer), "\"http://127.0.0.1:%d\"", c->peer_ports[i]);
        status = test_kv_do(k, "GET", "/v2/members", NULL, &body);
        /* {"id":"ID","name":...,"peerURLs":[PEER]...}: the id is the last one before the URL. */
        p = status == 200 && body ? strstr(body, peer) : NULL;
        if (!p) {
                test_kv_conn_free(k);
                return -ENOENT;
        }
        id_start = NULL;
        for (const char *q = body; (q = strstr(q, "\"id\":\"")) && q < p; q++)
                id_start = q + 6;
        if (!id_start || asprintf(&path, "/v2/members/%.*s", (int) strcspn(id_start, "\""), id_start) < 0) {
                test_kv_conn_free(k);
                return -EBADMSG;
        }
        free(body);
        body = NULL;
        status = test_kv_do(k, "DELETE", path, NULL, &body);
        test_kv_conn_free(k);
        if (status != 204) {
                fprintf(stderr, "removing member %u: HTTP %ld %s\n", i, status, strna(body));
                return status < 0 ? (int) status : -EIO;
        }
        c->removed[i] = true;
        c->endpoints[i] = NULL;
        for (unsigned j = 0, o = 0; j < c->n; j++) /* the endpoint list stays NULL-terminated */
                if (!c->removed[j])
                        c->endpoints[o++] = c->urls[j], c->endpoints[o] = NULL;
        for (int t = 0; t < 200 && c->pids[i] > 0; t++) {
                if (waitpid(c->pids[i], &st, WNOHANG) == c->pids[i])
                        c->pids[i] = 0;
                else
                        usleep(100000);
        }
        if (c->pids[i] > 0) {
                fprintf(stderr, "removed member %u did not stop by itself\n", i);
                (void) test_kv_member_signal(c, i, SIGKILL);
                return -ETIMEDOUT;
        }
        return 0;
}

int test_kv_cluster_start(TestKvCluster **ret, unsigned n) {
        return test_kv_cluster_start_args(ret, n, NULL);
}

bool test_kv_is_flotilla(const TestKvCluster *c) {
        return strstr(c->bin, "flotilla-kv") != NULL;
}

int test_kv_leader(TestKvCluster *c) {
        for (unsigned i = 0; i < c->n; i++) {
                _cleanup_free_ char *body = NULL;
                TestKvConn *k;
                if (c->pids[i] <= 0)
                        continue;
                k = test_kv_conn_new(c->urls[i]);
                if (test_kv_do(k, "GET", "/v2/stats/self", NULL, &body) == 200 && body && strstr(body, "\"StateLeader\"")) {
                        test_kv_conn_free(k);
                        return (int) i;
                }
                test_kv_conn_free(k);
        }
        return -1;
}

int test_kv_cluster_spawn_args(TestKvCluster **ret, unsigned n, const char *const *extra_args) {
        TestKvCluster *c;
        const char *bin = kv_bin();
        int r;

        if (!bin_exists(bin)) {
                if (getenv("FLOTILLA_TEST_REQUIRE")) {
                        fprintf(stderr, "required KV binary '%s' not found\n", bin);
                        exit(EXIT_FAILURE);
                }
                fprintf(stderr, "skipping: KV binary '%s' not found (apt-get install etcd-server)\n", bin);
                exit(TEST_EXIT_SKIP);
        }
        if (n == 0 || n > TEST_KV_MAX_MEMBERS)
                return -EINVAL;
        c = new0(TestKvCluster, 1);
        c->n = n;
        c->bin = bin;
        c->extra_args = extra_args;
        if (access("/dev/shm", W_OK) == 0 && !getenv("TMPDIR")) {
                setenv("TMPDIR", "/dev/shm", 1);
                c->dir = test_mkdtemp();
                unsetenv("TMPDIR");
        } else
                c->dir = test_mkdtemp();
        for (unsigned i = 0; i < n; i++) {
                c->client_ports[i] = test_free_port();
                c->peer_ports[i] = test_free_port();
                (void) snprintf(c->urls[i], sizeof(c->urls[i]), "http://127.0.0.1:%d", c->client_ports[i]);
                c->endpoints[i] = c->urls[i];
        }
        for (unsigned i = 0; i < n; i++)
                if ((r = member_spawn(c, i)) < 0) {
                        test_kv_cluster_stop(c);
                        return r;
                }
        *ret = c;
        return 0;
}

int test_kv_cluster_start_args(TestKvCluster **ret, unsigned n, const char *const *extra_args) {
        TestKvCluster *c = NULL;
        int r = test_kv_cluster_spawn_args(&c, n, extra_args);

        for (unsigned i = 0; r >= 0 && i < n; i++)
                r = test_kv_wait_healthy(c, i, 30);
        if (r < 0) {
                test_kv_cluster_stop(c);
                return r;
        }
        *ret = c;
        return 0;
}

static bool all_threads_stopped(pid_t pid) {
        char dir[64];
        DIR *d;
        bool stopped = true;

        (void) snprintf(dir, sizeof(dir), "/proc/%d/task", (int) pid);
        d = opendir(dir);
        if (!d)
                return false;
        for (struct dirent *de; stopped && (de = readdir(d));) {
                char path[384], buf[512];
                const char *st;
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                (void) snprintf(path, sizeof(path), "%s/%s/stat", dir, de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue; /* the thread exited */
                if (fgets(buf, sizeof(buf), f) && (st = strrchr(buf, ')')) && st[1] == ' ')
                        stopped = st[2] == 'T' || st[2] == 't';
                fclose(f);
        }
        closedir(d);
        return stopped;
}

int test_kv_member_signal(TestKvCluster *c, unsigned i, int sig) {
        if (i >= c->n || c->pids[i] <= 0)
                return -ESRCH;
        if (kill(c->pids[i], sig) < 0)
                return -errno;
        if (sig == SIGSTOP) {
                /* Signals are asynchronous: on another CPU the member can run on for a while
                 * after kill() returns. Wait until the kernel reports every thread stopped. */
                for (int tries = 0; tries < 2000; tries++) {
                        if (all_threads_stopped(c->pids[i]))
                                return 0;
                        usleep(1000);
                }
                return -ETIMEDOUT;
        }
        if (sig == SIGKILL || sig == SIGTERM) {
                (void) waitpid(c->pids[i], NULL, 0);
                c->pids[i] = 0;
        }
        return 0;
}

int test_kv_member_start(TestKvCluster *c, unsigned i) {
        if (i >= c->n || c->pids[i] > 0)
                return -EINVAL;
        return member_spawn(c, i);
}

int test_kv_member_restart(TestKvCluster *c, unsigned i) {
        int r;
        if (c->pids[i] > 0)
                (void) test_kv_member_signal(c, i, SIGKILL);
        r = member_spawn(c, i);
        return r < 0 ? r : test_kv_wait_healthy(c, i, 30);
}

void test_kv_cluster_stop(TestKvCluster *c) {
        if (!c)
                return;
        for (unsigned i = 0; i < c->n; i++)
                if (c->pids[i] > 0) {
                        (void) kill(c->pids[i], SIGCONT);
                        (void) test_kv_member_signal(c, i, SIGKILL);
                }
        if (getenv("FLOTILLA_TEST_KEEP"))
                fprintf(stderr, "kept kv data and logs in %s\n", c->dir);
        else
                (void) test_rm_rf(c->dir);
        free(c->dir);
        free(c);
}

int test_kv_member_wipe(TestKvCluster *c, unsigned i) {
        char data[PATH_MAX];

        if (i >= c->n || c->pids[i] > 0)
                return -EINVAL;
        (void) snprintf(data, sizeof(data), "%s/m%u", c->dir, i);
        return test_rm_rf(data);
}

/* The cluster's extra arguments plus --join URL, for one spawn. */
static int spawn_joining(TestKvCluster *c, unsigned i, unsigned via) {
        const char *const *saved = c->extra_args;
        const char *args[32] = { "--join", c->urls[via] };
        size_t k = 2;
        int r;

        for (size_t j = 0; saved && saved[j] && k < ELEMENTSOF(args) - 1; j++)
                args[k++] = saved[j];
        c->extra_args = args;   /* exec copies them */
        r = member_spawn_state(c, i, "new");
        c->extra_args = saved;
        return r;
}

int test_kv_member_spawn_join(TestKvCluster *c, unsigned via) {
        unsigned i = c->n;
        int r;

        if (i >= TEST_KV_MAX_MEMBERS)
                return -E2BIG;
        new_member_ports(c, i);
        c->n++;
        c->endpoints[i] = c->urls[i];
        r = spawn_joining(c, i, via);
        return r < 0 ? r : (int) i;
}

int test_kv_member_start_join(TestKvCluster *c, unsigned i, unsigned via) {
        if (i >= c->n || c->pids[i] > 0)
                return -EINVAL;
        return spawn_joining(c, i, via);
}
