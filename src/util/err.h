/*
 * err.h — the one error space of domicile.
 *
 * Every function that can fail returns an int: 0 (DM_OK) on success, a
 * negative DM_ERR_* on failure, or a positive named outcome that is not an
 * error (DM_NEED_MORE: a parser needs more bytes). errno, OpenSSL, SQLite and
 * jansson failures are translated into this space where they enter our code.
 * dm_strerror() returns a static string; nothing here allocates.
 */
#ifndef DM_ERR_H
#define DM_ERR_H

enum dm_status {
	DM_OK = 0,
	DM_NEED_MORE = 1, /* not an error: an incremental parser wants more input */
	DM_STOP = 2,      /* not an error: a callback ended an iteration on purpose */

	DM_ERR_NOMEM = -1,       /* an allocation failed */
	DM_ERR_IO = -2,          /* a read, write or fsync failed (see errno in the log) */
	DM_ERR_MALFORMED = -3,   /* bytes from the network or disk do not parse */
	DM_ERR_TOO_LARGE = -4,   /* an input exceeds a configured or protocol limit */
	DM_ERR_NOT_FOUND = -5,   /* the thing asked for does not exist */
	DM_ERR_INVALID = -6,     /* well-formed but not acceptable (range, type, value) */
	DM_ERR_AUTH = -7,        /* credentials missing or wrong */
	DM_ERR_DENIED = -8,      /* authenticated, but not allowed */
	DM_ERR_EXISTS = -9,      /* the thing to create already exists */
	DM_ERR_STATE = -10,      /* the component is in its error state and refuses work */
	DM_ERR_DB = -11,         /* the database backend failed */
	DM_ERR_CRYPTO = -12,     /* a cryptographic operation failed */
	DM_ERR_UNSUPPORTED = -13,/* a valid request this build does not support */
	DM_ERR_CLOSED = -14,     /* the peer or the component is shutting down */
	DM_ERR_GONE = -15,       /* the thing existed but was erased on purpose */
};

/* A static, human-readable description of status; never NULL. */
const char *dm_strerror(int status);

#endif
