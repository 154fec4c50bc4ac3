/* SPDX-License-Identifier: MIT */
/* Address resolution for listeners and dialers. */
#pragma once

#include <netdb.h>

/* getaddrinfo() with negative errno results, where "localhost" and "*.localhost" always mean the
 * loopback addresses (RFC 6761), even on systems without /etc/hosts (minimal images, fresh
 * containers). The port must be a decimal number (-EINVAL otherwise); host names that do not
 * resolve give -EHOSTUNREACH. Free *ret with freeaddrinfo(). */
int net_resolve(const char *host, const char *port, int flags, struct addrinfo **ret);

/* A non-blocking, close-on-exec TCP listening socket (SO_REUSEADDR) on host:port, host NULL for
 * every address. A name may resolve to several addresses ("localhost" to ::1 first where only
 * 127.0.0.1 exists, e.g. IPv6 off in a namespace): the first that binds is taken. Returns the fd
 * or a negative errno (net_resolve()'s, or the last socket/bind/listen error). */
int net_listen(const char *host, const char *port, int backlog);

/* Splits "[http[s]://]host:port[/path]" or "[http[s]://][v6addr]:port[/path]" into host and
 * port. The host may be empty (":2379", meaning every address to a listener); the port must be
 * a number up to 65535. -EINVAL for anything else. */
int net_split_host_port(const char *address, char **ret_host, char **ret_port);
