/*
 * entry.c — the canonical encoding of an audit entry (entry.h has the
 * format).
 *
 * jansson writes it: with JSON_SORT_KEYS (keys compared by strcmp, that is
 * byte order), JSON_COMPACT and JSON_ENSURE_ASCII the text depends only on
 * the entry. Floats are refused in params because their decimal spelling is
 * the one part of JSON with more than one way to write a value.
 */
#include "audit/entry.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/* Sets key to a string, when there is one; invalid UTF-8 fails. */
static int put_string(json_t *obj, const char *key, const char *value)
{
	if (!value)
		return DM_OK;
	json_t *s = json_string(value);
	if (!s)
		return DM_ERR_INVALID;
	return json_object_set_new(obj, key, s) == 0 ? DM_OK : DM_ERR_NOMEM;
}

static int put_integer(json_t *obj, const char *key, json_int_t value)
{
	json_t *n = json_integer(value);
	return n && json_object_set_new(obj, key, n) == 0 ? DM_OK : DM_ERR_NOMEM;
}

static int params_valid(json_t *params)
{
	if (!json_is_object(params))
		return 0;
	const char *key;
	json_t *value;
	json_object_foreach(params, key, value) {
		if (!json_is_string(value) && !json_is_integer(value))
			return 0;
	}
	return 1;
}

int audit_entry_encode(const struct audit_entry *e, struct dm_buf *out)
{
	if (!e->who_kind || !e->action || !e->outcome || (e->params && !params_valid(e->params)))
		return DM_ERR_INVALID;
	if (e->index > (uint64_t)INT64_MAX || (e->index == 0 && e->prev))
		return DM_ERR_INVALID;
	json_t *entry = json_object(), *who = json_object();
	int rc = entry && who ? DM_OK : DM_ERR_NOMEM;
	if (rc == DM_OK)
		rc = put_string(who, "kind", e->who_kind);
	if (rc == DM_OK)
		rc = put_string(who, "name", e->who);
	if (rc == DM_OK)
		rc = put_string(who, "role", e->role);
	if (rc == DM_OK) {
		rc = json_object_set_new(entry, "who", who) == 0 ? DM_OK : DM_ERR_NOMEM;
		who = NULL; /* the entry holds it now, or it was freed */
	}
	if (rc == DM_OK)
		rc = put_integer(entry, "v", AUDIT_ENTRY_VERSION);
	if (rc == DM_OK)
		rc = put_integer(entry, "index", (json_int_t)e->index);
	if (rc == DM_OK)
		rc = put_integer(entry, "time", (json_int_t)e->time_ms);
	if (rc == DM_OK)
		rc = put_string(entry, "site", e->site);
	if (rc == DM_OK)
		rc = put_string(entry, "request", e->request);
	if (rc == DM_OK)
		rc = put_string(entry, "action", e->action);
	if (rc == DM_OK)
		rc = put_string(entry, "object", e->object);
	if (rc == DM_OK)
		rc = put_string(entry, "outcome", e->outcome);
	if (rc == DM_OK)
		rc = put_string(entry, "prev", e->prev);
	if (rc == DM_OK && e->status)
		rc = put_integer(entry, "status", e->status);
	if (rc == DM_OK && e->params)
		rc = json_object_set(entry, "params", e->params) == 0 ? DM_OK : DM_ERR_NOMEM;
	char *text = NULL;
	if (rc == DM_OK) {
		text = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
		rc = text ? dm_buf_append(out, text, strlen(text)) : DM_ERR_NOMEM;
	}
	free(text);
	json_decref(who);
	json_decref(entry);
	return rc;
}
