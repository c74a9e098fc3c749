/*
 * addr.h — "HOST:PORT" strings, as the config and the command line give
 * listening and connecting addresses. HOST is an IPv4 address, a bracketed
 * IPv6 address or a name.
 */
#ifndef DM_ADDR_H
#define DM_ADDR_H

#include <stddef.h>

/* Splits address into host (without brackets) and port. DM_ERR_INVALID when
 * it is not HOST:PORT with a port in 0..65535. */
int addr_split(const char *address, char *host, size_t host_len, int *port);

#endif
