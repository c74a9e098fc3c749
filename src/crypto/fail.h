/*
 * fail.h — how the OpenSSL parts (crypto/pki, crypto/tls) fail: a message
 * for the caller in err, a status returned, and OpenSSL's error queue left
 * empty, so that a later failure never reports this one's reason.
 */
#ifndef DM_CRYPTO_FAIL_H
#define DM_CRYPTO_FAIL_H

#include <stddef.h>

/* Writes the message into err (truncated to err_len; nothing when err is
 * NULL or err_len 0) and returns status. */
int crypto_fail(char *err, size_t err_len, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* crypto_fail with "<what>: <OpenSSL's reason>" (the earliest error in
 * OpenSSL's queue, which names the cause), and the queue emptied. */
int crypto_ssl_fail(char *err, size_t err_len, int status, const char *what);

#endif
