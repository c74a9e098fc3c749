/*
 * fetch.c — an auditor's export of a node's audit log (fetch.h): the key
 * and the checkpoint first, checked, since the checkpoint's size fixes
 * what the export holds; then the entries, page by page, straight into a
 * hidden file of a new directory; names are given once all is synced.
 */
#include "audit/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/client.h"
#include "audit/store.h"
#include "audit/verify.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/file.h"

/* The bounds of the answers (fetch.h): base64 makes 4 bytes of 3, and a
 * page's JSON adds a few bytes per entry. */
#define KEY_MAX 4096
#define PAGE_MAX ((size_t)API_AUDIT_PAGE_MAX * ((AUDIT_ENTRY_MAX + 2) / 3 * 4 + 8) + 4096)

/* The files, hidden while they are written, then named. */
static const char *const tmp_names[] = {".checkpoint.part", ".entries.json.part"};
static const char *const final_names[] = {"checkpoint", "entries.json"};
enum { CHECKPOINT_FILE, ENTRIES_FILE, FILE_COUNT };

/* GET path, answered 200 with at most max bytes, into out. */
static int get(struct api_client *client, const char *path, size_t max, struct dm_buf *out,
	       char *err, size_t err_len)
{
	struct api_response response;
	char why[512];
	client->max_body = max;
	int rc = api_client_call(client, "GET", path, NULL, &response, why, sizeof why);
	if (rc != DM_OK) {
		dm_format_err(err, err_len, "GET %s: %s", path, why[0] ? why : dm_strerror(rc));
		return rc == DM_ERR_TOO_LARGE || rc == DM_ERR_NOMEM ? rc : DM_ERR_IO;
	}
	if (response.status != 200) {
		char message[256];
		api_response_error(&response, message, sizeof message);
		dm_format_err(err, err_len, "GET %s: HTTP %d: %s", path, response.status, message);
		rc = response.status == 401 || response.status == 403 ? DM_ERR_DENIED
									: DM_ERR_MALFORMED;
	} else {
		*out = response.body;
		response.body = (struct dm_buf){0};
	}
	api_response_free(&response);
	return rc;
}

/* The node's key must be the auditor's, byte for byte once formatted. */
static int check_key(struct api_client *client, const struct audit_verifier *key, char *err,
		     size_t err_len)
{
	struct dm_buf theirs = {0}, ours = {0};
	int rc = get(client, "/v1/audit/key", KEY_MAX, &theirs, err, err_len);
	if (rc == DM_OK && audit_verifier_format(key, &ours) != DM_OK)
		rc = DM_ERR_NOMEM;
	size_t len = theirs.len;
	while (len > 0 && (theirs.data[len - 1] == '\n' || theirs.data[len - 1] == '\r'))
		len--;
	if (rc == DM_OK && (len != ours.len || memcmp(theirs.data, ours.data, len) != 0)) {
		dm_format_err(err, err_len,
			      "the node's audit key is not the key you hold (%.*s): fetch nothing",
			      (int)ours.len, (const char *)ours.data);
		rc = DM_ERR_CRYPTO;
	}
	dm_buf_free(&theirs);
	dm_buf_free(&ours);
	return rc;
}

/* Fetches entries [start, end) and appends them to fd, each but the
 * export's first after a comma; parsed as verify parses an export. */
static int fetch_page(struct api_client *client, uint64_t start, uint64_t end, int fd,
		      char *err, size_t err_len)
{
	char path[96];
	snprintf(path, sizeof path, "/v1/audit/entries?start=%" PRIu64 "&end=%" PRIu64, start, end);
	struct dm_buf body = {0}, out = {0};
	struct audit_entries page = {0};
	int rc = get(client, path, PAGE_MAX, &body, err, err_len);
	if (rc == DM_OK)
		rc = audit_entries_add_export(&page, body.data ? (const char *)body.data : "",
					      body.len, path, err, err_len);
	dm_buf_free(&body);
	if (rc == DM_OK && page.count != end - start) {
		dm_format_err(err, err_len, "GET %s: %" PRIu64 " entries, not %" PRIu64, path,
			      page.count, end - start);
		rc = DM_ERR_MALFORMED;
	}
	for (uint64_t i = 0; rc == DM_OK && i < page.count; i++) {
		const uint8_t *entry;
		size_t len;
		audit_entries_get(&page, i, &entry, &len);
		rc = dm_buf_append(&out, start + i ? ",\"" : "\"", start + i ? 2 : 1);
		if (rc == DM_OK)
			rc = audit_base64_encode(entry, len, &out);
		if (rc == DM_OK)
			rc = dm_buf_append(&out, "\"", 1);
		if (rc != DM_OK)
			dm_format_err(err, err_len, "out of memory");
	}
	if (rc == DM_OK && dm_write_all(fd, out.data, out.len) != DM_OK) {
		dm_format_err(err, err_len, "%s: cannot write: %s", tmp_names[ENTRIES_FILE],
			      strerror(errno));
		rc = DM_ERR_IO;
	}
	audit_entries_free(&page);
	dm_buf_free(&out);
	return rc;
}

/* Writes bytes to fd; DM_ERR_IO with the reason in err. */
static int write_file(int fd, const char *name, const void *bytes, size_t len, char *err,
		      size_t err_len)
{
	if (dm_write_all(fd, bytes, len) == DM_OK)
		return DM_OK;
	dm_format_err(err, err_len, "%s: cannot write: %s", name, strerror(errno));
	return DM_ERR_IO;
}

/* Makes dir, new, and syncs its parent so that it stays. */
static int make_dir(const char *dir, char *err, size_t err_len)
{
	if (mkdir(dir, 0700) != 0) {
		int e = errno;
		dm_format_err(err, err_len, "%s: %s", dir,
			      e == EEXIST ? "exists (an earlier export, or one cut short); fetch "
					    "into a new directory"
					  : strerror(e));
		return e == EEXIST ? DM_ERR_EXISTS : DM_ERR_IO;
	}
	char *parent = dm_parent_dir(dir);
	int rc = parent ? dm_fsync_dir(parent) : DM_ERR_NOMEM;
	dm_free(parent);
	if (rc != DM_OK) {
		dm_format_err(err, err_len, "%s: cannot sync the directory that holds it", dir);
		rmdir(dir);
	}
	return rc;
}

int audit_fetch(struct api_client *client, const struct audit_verifier *key, const char *dir,
		uint64_t *size, char *err, size_t err_len)
{
	*size = 0;
	struct dm_buf checkpoint = {0};
	struct audit_checkpoint cp;
	char why[512];
	int rc = check_key(client, key, err, err_len);
	if (rc == DM_OK)
		rc = get(client, "/v1/audit/checkpoint", AUDIT_NOTE_MAX, &checkpoint, err, err_len);
	/* The log a site's key signs is "<key name>/audit" (audit/log.h). */
	char origin[sizeof key->name + 8];
	snprintf(origin, sizeof origin, "%s/audit", key->name);
	if (rc == DM_OK &&
	    audit_checkpoint_open(checkpoint.data ? (const char *)checkpoint.data : "",
				  checkpoint.len, key, origin, &cp, why, sizeof why) != DM_OK) {
		dm_format_err(err, err_len, "the node's checkpoint does not verify with your key: %s",
			      why);
		rc = DM_ERR_CRYPTO;
	}
	if (rc == DM_OK)
		rc = make_dir(dir, err, err_len);
	if (rc != DM_OK) {
		dm_buf_free(&checkpoint);
		return rc;
	}

	int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int fds[FILE_COUNT] = {-1, -1};
	if (dir_fd < 0) {
		dm_format_err(err, err_len, "%s: cannot open: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
	}
	for (int i = 0; rc == DM_OK && i < FILE_COUNT; i++) {
		fds[i] = openat(dir_fd, tmp_names[i],
				O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fds[i] < 0) {
			dm_format_err(err, err_len, "%s/%s: cannot create: %s", dir, tmp_names[i],
				      strerror(errno));
			rc = DM_ERR_IO;
		}
	}
	if (rc == DM_OK)
		rc = write_file(fds[CHECKPOINT_FILE], tmp_names[CHECKPOINT_FILE], checkpoint.data,
				checkpoint.len, err, err_len);
	if (rc == DM_OK)
		rc = write_file(fds[ENTRIES_FILE], tmp_names[ENTRIES_FILE], "{\"entries\":[", 12,
				err, err_len);
	for (uint64_t start = 0; rc == DM_OK && start < cp.size; start += API_AUDIT_PAGE_MAX) {
		uint64_t end = cp.size - start > API_AUDIT_PAGE_MAX ? start + API_AUDIT_PAGE_MAX
								    : cp.size;
		rc = fetch_page(client, start, end, fds[ENTRIES_FILE], err, err_len);
	}
	if (rc == DM_OK)
		rc = write_file(fds[ENTRIES_FILE], tmp_names[ENTRIES_FILE], "]}\n", 3, err, err_len);
	for (int i = 0; rc == DM_OK && i < FILE_COUNT; i++) {
		if (fsync(fds[i]) != 0) {
			dm_format_err(err, err_len, "%s/%s: cannot sync: %s", dir, tmp_names[i],
				      strerror(errno));
			rc = DM_ERR_IO;
		}
	}
	for (int i = 0; rc == DM_OK && i < FILE_COUNT; i++) {
		if (renameat(dir_fd, tmp_names[i], dir_fd, final_names[i]) != 0) {
			dm_format_err(err, err_len, "%s/%s: cannot name: %s", dir, final_names[i],
				      strerror(errno));
			rc = DM_ERR_IO;
		}
	}
	if (rc == DM_OK && fsync(dir_fd) != 0) {
		dm_format_err(err, err_len, "%s: cannot sync: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
	}
	for (int i = 0; i < FILE_COUNT; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		if (rc != DM_OK && dir_fd >= 0) {
			unlinkat(dir_fd, tmp_names[i], 0);
			unlinkat(dir_fd, final_names[i], 0);
		}
	}
	if (dir_fd >= 0)
		close(dir_fd);
	if (rc != DM_OK && rmdir(dir) == 0) {
		char *parent = dm_parent_dir(dir);
		if (parent)
			dm_fsync_dir(parent);
		dm_free(parent);
	}
	if (rc == DM_OK)
		*size = cp.size;
	dm_buf_free(&checkpoint);
	return rc;
}
