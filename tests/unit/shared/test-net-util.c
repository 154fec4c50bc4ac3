/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "shared/net-util.h"
#include "test-util.h"

static const char *addr_of(const struct addrinfo *a, char *buf, size_t size) {
        const void *p = a->ai_family == AF_INET ? (const void *) &((const struct sockaddr_in *) a->ai_addr)->sin_addr
                                                 : (const void *) &((const struct sockaddr_in6 *) a->ai_addr)->sin6_addr;
        return inet_ntop(a->ai_family, p, buf, size);
}

static uint16_t port_of(const struct addrinfo *a) {
        return ntohs(a->ai_family == AF_INET ? ((const struct sockaddr_in *) a->ai_addr)->sin_port
                                             : ((const struct sockaddr_in6 *) a->ai_addr)->sin6_port);
}

/* localhost and *.localhost are loopback without asking /etc/hosts or DNS, IPv4 first. */
static void localhost_is_loopback(void **state) {
        const char *names[] = { "localhost", "LocalHost", "member1.localhost" };
        char b[INET6_ADDRSTRLEN];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                struct addrinfo *ai = NULL;
                assert_int_equal(net_resolve(names[i], "2379", 0, &ai), 0);
                assert_string_equal(addr_of(ai, b, sizeof(b)), "127.0.0.1");
                assert_int_equal(port_of(ai), 2379);
                for (struct addrinfo *a = ai->ai_next; a; a = a->ai_next) {
                        assert_int_equal(a->ai_family, AF_INET6);
                        assert_string_equal(addr_of(a, b, sizeof(b)), "::1");
                }
                freeaddrinfo(ai);
        }
}

static void numeric_addresses(void **state) {
        struct addrinfo *ai = NULL;
        char b[INET6_ADDRSTRLEN];

        assert_int_equal(net_resolve("10.1.2.3", "80", 0, &ai), 0);
        assert_string_equal(addr_of(ai, b, sizeof(b)), "10.1.2.3");
        assert_int_equal(port_of(ai), 80);
        freeaddrinfo(ai);
        assert_int_equal(net_resolve("::1", "2380", 0, &ai), 0);
        assert_string_equal(addr_of(ai, b, sizeof(b)), "::1");
        freeaddrinfo(ai);
        /* Passive with no host: the wildcard address. */
        assert_int_equal(net_resolve(NULL, "2379", AI_PASSIVE, &ai), 0);
        assert_int_equal(port_of(ai), 2379);
        freeaddrinfo(ai);
}

/* Ports are numbers: a service name is refused, not looked up. */
static void bad_ports(void **state) {
        struct addrinfo *ai = NULL;

        assert_int_equal(net_resolve("127.0.0.1", "http", 0, &ai), -EINVAL);
        assert_int_equal(net_resolve("localhost", "http", 0, &ai), -EINVAL);
        assert_int_equal(net_resolve("127.0.0.1", "65536", 0, &ai), -EINVAL);
        assert_int_equal(net_resolve("127.0.0.1", "", 0, &ai), -EINVAL);
        assert_null(ai);
}

/* A listener on a name binds the first address that works, non-blocking and close-on-exec; a
 * port already taken and a bad port are errors, not a socket. */
static void listen_binds_and_reports_errors(void **state) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof(sa);
        char port[16];
        int fd, again;

        fd = net_listen("localhost", "0", 16);
        assert_true(fd >= 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
        assert_int_equal(sa.sin_family, AF_INET);
        assert_int_equal(ntohl(sa.sin_addr.s_addr), INADDR_LOOPBACK);
        assert_true(ntohs(sa.sin_port) > 0);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

        (void) snprintf(port, sizeof(port), "%u", ntohs(sa.sin_port));
        again = net_listen("127.0.0.1", port, 16);
        assert_int_equal(again, -EADDRINUSE);
        assert_int_equal(net_listen("127.0.0.1", "http", 16), -EINVAL);
        close(fd);
}

static void split_host_port(void **state) {
        static const struct {
                const char *in, *host, *port;
        } ok[] = {
                { "http://10.0.0.1:2380", "10.0.0.1", "2380" },
                { "https://etcd.example:2379/", "etcd.example", "2379" },
                { "http://[::1]:2380/v2", "::1", "2380" },
                { "127.0.0.1:0", "127.0.0.1", "0" },
                { ":2379", "", "2379" },
                { "http://[::]:65535", "::", "65535" },
        };
        static const char *const bad[] = { "http://host", "http://host:", "http://host:99999", "http://host:80x",
                                           "http://[::1:2380", "http://[::1]2380", "host:123456", "" };

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                char *h = NULL, *p = NULL;
                assert_int_equal(net_split_host_port(ok[i].in, &h, &p), 0);
                assert_string_equal(h, ok[i].host);
                assert_string_equal(p, ok[i].port);
                free(h);
                free(p);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *h = NULL, *p = NULL;
                if (net_split_host_port(bad[i], &h, &p) != -EINVAL)
                        fail_msg("'%s' accepted", bad[i]);
                assert_null(h);
                assert_null(p);
        }
}

TEST_MAIN(cmocka_unit_test(localhost_is_loopback), cmocka_unit_test(numeric_addresses), cmocka_unit_test(bad_ports),
          cmocka_unit_test(listen_binds_and_reports_errors), cmocka_unit_test(split_host_port))
