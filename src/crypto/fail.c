/*
 * fail.c — the failure messages of the OpenSSL parts (fail.h).
 */
#include "crypto/fail.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>

#define REASON_MAX 256

int crypto_fail(char *err, size_t err_len, int status, const char *fmt, ...)
{
	if (err != NULL && err_len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return status;
}

int crypto_ssl_fail(char *err, size_t err_len, int status, const char *what)
{
	char reason[REASON_MAX] = "no reason given";
	unsigned long code = ERR_get_error();
	if (code != 0)
		ERR_error_string_n(code, reason, sizeof reason);
	ERR_clear_error();
	return crypto_fail(err, err_len, status, "%s: %s", what, reason);
}
