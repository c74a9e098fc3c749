#include "util/err.h"

const char *dm_strerror(int status)
{
	switch (status) {
	case DM_OK: return "success";
	case DM_NEED_MORE: return "more input needed";
	case DM_STOP: return "stopped";
	case DM_ERR_NOMEM: return "out of memory";
	case DM_ERR_IO: return "input/output error";
	case DM_ERR_MALFORMED: return "malformed input";
	case DM_ERR_TOO_LARGE: return "input too large";
	case DM_ERR_NOT_FOUND: return "not found";
	case DM_ERR_INVALID: return "invalid value";
	case DM_ERR_AUTH: return "authentication failed";
	case DM_ERR_DENIED: return "permission denied";
	case DM_ERR_EXISTS: return "already exists";
	case DM_ERR_STATE: return "component is in its error state";
	case DM_ERR_DB: return "database error";
	case DM_ERR_CRYPTO: return "cryptographic failure";
	case DM_ERR_UNSUPPORTED: return "not supported";
	case DM_ERR_CLOSED: return "closed";
	case DM_ERR_GONE: return "erased";
	}
	return "unknown error";
}
