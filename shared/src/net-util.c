/* SPDX-License-Identifier: MIT */
/* Address resolution with RFC 6761's rule for localhost. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/macro.h"
#include "shared/net-util.h"

static bool is_localhost(const char *host) {
        size_t l = strlen(host);
        return strcasecmp(host, "localhost") == 0 || (l > 10 && strcasecmp(host + l - 10, ".localhost") == 0);
}

static bool port_valid(const char *port) {
        size_t l = strspn(port, "0123456789");
        return l > 0 && l <= 5 && port[l] == '\0' && atoi(port) <= 65535;
}

int net_resolve(const char *host, const char *port, int flags, struct addrinfo **ret) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = flags | AI_NUMERICSERV };
        int r;

        /* glibc reports a service name under AI_NUMERICSERV as an unknown host: check first. */
        if (!port || !port_valid(port))
                return -EINVAL;

        if (host && is_localhost(host)) {
                /* 127.0.0.1 first: ::1 may be missing where IPv6 is off. */
                struct addrinfo *v4 = NULL, *v6 = NULL;
                hints.ai_flags |= AI_NUMERICHOST;
                r = getaddrinfo("127.0.0.1", port, &hints, &v4);
                if (r != 0)
                        return r == EAI_SYSTEM ? -errno : -EINVAL;
                /* glibc's freeaddrinfo() frees node by node, so the lists can be joined. */
                if (getaddrinfo("::1", port, &hints, &v6) == 0) {
                        struct addrinfo *last = v4;
                        while (last->ai_next)
                                last = last->ai_next;
                        last->ai_next = v6;
                }
                *ret = v4;
                return 0;
        }
        r = getaddrinfo(host, port, &hints, ret);
        if (r == 0)
                return 0;
        if (r == EAI_SYSTEM)
                return -errno;
        if (r == EAI_SERVICE || r == EAI_BADFLAGS)
                return -EINVAL;
        return -EHOSTUNREACH;
}

int net_listen(const char *host, const char *port, int backlog) {
        struct addrinfo *ai = NULL;
        int fd = -EBADF, one = 1, r;

        r = net_resolve(host, port, AI_PASSIVE, &ai);
        if (r < 0)
                return r;
        r = -EADDRNOTAVAIL;
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, backlog) == 0)
                        break;
                r = -errno;
                close(fd);
                fd = -EBADF;
        }
        freeaddrinfo(ai);
        return fd >= 0 ? fd : r;
}

int net_split_host_port(const char *address, char **ret_host, char **ret_port) {
        const char *a, *port, *end;
        char *host, *p;
        size_t hl;

        if (!address)
                return -EINVAL;
        a = address;
        if (strncmp(a, "http://", 7) == 0)
                a += 7;
        else if (strncmp(a, "https://", 8) == 0)
                a += 8;
        if (a[0] == '[') {
                const char *close_b = strchr(a, ']');
                if (!close_b || close_b[1] != ':')
                        return -EINVAL;
                a++;
                hl = (size_t) (close_b - a);
                port = close_b + 2;
        } else {
                const char *colon = strrchr(a, ':');
                if (!colon)
                        return -EINVAL;
                hl = (size_t) (colon - a);
                port = colon + 1;
        }
        end = port + strcspn(port, "/");
        if (end == port || (size_t) (end - port) > 5 || strspn(port, "0123456789") != (size_t) (end - port) ||
            atoi(port) > 65535)
                return -EINVAL;
        host = strndup(a, hl);
        p = strndup(port, (size_t) (end - port));
        if (!host || !p) {
                free(host);
                free(p);
                return -ENOMEM;
        }
        *ret_host = host;
        *ret_port = p;
        return 0;
}
