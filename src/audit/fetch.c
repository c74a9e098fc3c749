/*
 * fetch.c — an auditor's export of a node's audit log (fetch.h): the
 * checkpoint first, since its size fixes what the export holds, then the
 * key, then the entries page by page; each file written only once all of
 * it was fetched.
 */
#include "audit/fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/client.h"
#include "audit/checkpoint.h"
#include "audit/store.h"
#include "audit/verify.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/file.h"

static const char *const export_files[] = {"checkpoint", "key", "entries.json"};
#define EXPORT_FILES (sizeof export_files / sizeof *export_files)

/* GET path into out (the body), which must answer 200. */
static int get(const struct api_client *client, const char *path, struct dm_buf *out, char *err,
	       size_t err_len)
{
	struct api_response response;
	char why[512];
	if (api_client_call(client, "GET", path, NULL, &response, why, sizeof why) != DM_OK) {
		dm_format_err(err, err_len, "GET %s: %s", path, why[0] ? why : "no answer");
		return DM_ERR_IO;
	}
	int rc = DM_OK;
	if (response.status != 200) {
		json_t *doc = response.body.data
				  ? json_loads((const char *)response.body.data, 0, NULL)
				  : NULL;
		const char *message = json_string_value(json_object_get(doc, "error"));
		dm_format_err(err, err_len, "GET %s: HTTP %d: %s", path, response.status,
			      message ? message : "unexpected answer");
		json_decref(doc);
		rc = response.status == 401 || response.status == 403 ? DM_ERR_DENIED
									: DM_ERR_MALFORMED;
	} else {
		*out = response.body;
		response.body = (struct dm_buf){0};
	}
	api_response_free(&response);
	return rc;
}

/* The size line of a checkpoint's text ("origin\nsize\nroot\n..."): its
 * shape only; verify checks the signature. */
static int checkpoint_size(const struct dm_buf *text, uint64_t *size)
{
	const char *start = text->data ? memchr(text->data, '\n', text->len) : NULL;
	if (!start)
		return DM_ERR_MALFORMED;
	start++;
	const char *end = memchr(start, '\n', text->len - (size_t)(start - (char *)text->data));
	if (!end)
		return DM_ERR_MALFORMED;
	return audit_parse_decimal(start, (size_t)(end - start), AUDIT_MAX_ENTRIES, size);
}

/* Appends the entries [start, end) to entries, through the parser verify
 * reads exports with. */
static int fetch_page(const struct api_client *client, uint64_t start, uint64_t end,
		      struct audit_entries *entries, char *err, size_t err_len)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/audit/entries?start=%" PRIu64 "&end=%" PRIu64, start, end);
	struct dm_buf body = {0};
	int rc = get(client, path, &body, err, err_len);
	if (rc == DM_OK)
		rc = audit_entries_add_export(entries, body.data ? (const char *)body.data : "",
					      body.len, path, err, err_len);
	dm_buf_free(&body);
	if (rc == DM_OK && entries->count != end) {
		dm_format_err(err, err_len, "GET %s: not %" PRIu64 " entries", path, end - start);
		rc = DM_ERR_MALFORMED;
	}
	return rc;
}

/* The export of entries: {"entries":["<base64>",...]}. */
static int format_export(const struct audit_entries *entries, struct dm_buf *out)
{
	int rc = dm_buf_append(out, "{\"entries\":[", 12);
	for (uint64_t i = 0; rc == DM_OK && i < entries->count; i++) {
		const uint8_t *entry;
		size_t len;
		audit_entries_get(entries, i, &entry, &len);
		rc = dm_buf_append(out, i ? ",\"" : "\"", i ? 2 : 1);
		if (rc == DM_OK)
			rc = audit_base64_encode(entry, len, out);
		if (rc == DM_OK)
			rc = dm_buf_append(out, "\"", 1);
	}
	if (rc == DM_OK)
		rc = dm_buf_append(out, "]}\n", 3);
	return rc;
}

/* dir/name, or "" when it does not fit. */
static void join(char *out, size_t len, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, len, "%s/%s", dir, name) >= len)
		out[0] = '\0';
}

int audit_fetch(const struct api_client *client, const char *dir, uint64_t *size, char *err,
		size_t err_len)
{
	*size = 0;
	char path[4096];
	for (size_t i = 0; i < EXPORT_FILES; i++) {
		join(path, sizeof path, dir, export_files[i]);
		if (!path[0] || access(path, F_OK) == 0) {
			dm_format_err(err, err_len, "%s: an export is already there; fetch into a new "
					  "directory (each export stays as it was fetched)",
				      path[0] ? path : dir);
			return DM_ERR_EXISTS;
		}
	}
	struct dm_buf files[EXPORT_FILES] = {{0}};
	int rc = get(client, "/v1/audit/checkpoint", &files[0], err, err_len);
	if (rc == DM_OK && checkpoint_size(&files[0], size) != DM_OK) {
		dm_format_err(err, err_len, "GET /v1/audit/checkpoint: not a checkpoint");
		rc = DM_ERR_MALFORMED;
	}
	if (rc == DM_OK)
		rc = get(client, "/v1/audit/key", &files[1], err, err_len);
	struct audit_entries entries = {0};
	for (uint64_t start = 0; rc == DM_OK && start < *size; start += API_AUDIT_PAGE_MAX) {
		uint64_t end = *size - start > API_AUDIT_PAGE_MAX ? start + API_AUDIT_PAGE_MAX : *size;
		rc = fetch_page(client, start, end, &entries, err, err_len);
	}
	if (rc == DM_OK && format_export(&entries, &files[2]) != DM_OK) {
		dm_format_err(err, err_len, "out of memory");
		rc = DM_ERR_NOMEM;
	}
	audit_entries_free(&entries);
	if (rc == DM_OK && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		dm_format_err(err, err_len, "%s: cannot create: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
	}
	size_t written = 0; /* files made by this call: removed on failure */
	while (rc == DM_OK && written < EXPORT_FILES) {
		join(path, sizeof path, dir, export_files[written]);
		rc = dm_write_secret(path, "audit export", 0, files[written].data, files[written].len);
		if (rc != DM_OK)
			dm_format_err(err, err_len, "%s: cannot write: %s", path, dm_strerror(rc));
		else
			written++;
	}
	if (rc == DM_OK)
		rc = dm_fsync_dir(dir);
	for (size_t i = 0; rc != DM_OK && i < written; i++) {
		join(path, sizeof path, dir, export_files[i]);
		unlink(path);
	}
	for (size_t i = 0; i < EXPORT_FILES; i++)
		dm_buf_free(&files[i]);
	return rc;
}
