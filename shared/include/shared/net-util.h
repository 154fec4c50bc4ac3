/* SPDX-License-Identifier: MIT */
/* Address resolution for listeners and dialers. */
#pragma once

#include <netdb.h>

/* getaddrinfo() with negative errno results, where "localhost" and "*.localhost" always mean the
 * loopback addresses (RFC 6761), even on systems without /etc/hosts (minimal images, fresh
 * containers). The port must be a decimal number (-EINVAL otherwise); host names that do not
 * resolve give -EHOSTUNREACH. Free *ret with freeaddrinfo(). */
int net_resolve(const char *host, const char *port, int flags, struct addrinfo **ret);
