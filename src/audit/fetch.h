/*
 * fetch.h — an auditor's export of a running node's audit log, through its
 * API with the auditor's token (api/client), into the files `domicile audit
 * verify` reads:
 *
 *   DIR/checkpoint    the latest signed checkpoint (GET /v1/audit/checkpoint)
 *   DIR/entries.json  every entry that checkpoint signs, index 0 to size - 1,
 *                     as one export {"entries": ["<base64>", ...]}, fetched
 *                     a page (API_AUDIT_PAGE_MAX) at a time
 *
 * The node is the party being audited, so nothing it says is taken on
 * trust: its verifier key (GET /v1/audit/key) must be the key the auditor
 * holds, and the checkpoint must carry that key's signature, for the log
 * "<key name>/audit", before its size decides how many entries to fetch.
 * Every answer is bounded (the key to 4 KiB, the checkpoint to
 * AUDIT_NOTE_MAX, a page to what API_AUDIT_PAGE_MAX entries of
 * AUDIT_ENTRY_MAX bytes can take) and every call has a deadline. The
 * entries are parsed as verify parses them, page by page, and written as
 * they come, so memory stays at one page. Whether the entries are the ones
 * the checkpoint signs is for verify to say.
 *
 * DIR must not exist: it is made (mode 0700), the files are made in it
 * (0600, never through a symlink), synced, and only then given their
 * names; on any failure DIR is removed again. An export is therefore whole
 * or absent, and never overwrites another. (A fetch killed midway leaves
 * DIR with hidden ".part" files: no export, and no name taken over.)
 */
#ifndef DM_AUDIT_FETCH_H
#define DM_AUDIT_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "audit/checkpoint.h"

struct api_client;

/* Fetches the export into dir (see above) from the node of client (whose
 * max_body this changes per call), checking the node's key and the
 * checkpoint against key; *size is the checkpoint's size. Errors, with a
 * message in err: DM_ERR_EXISTS (dir exists), DM_ERR_CRYPTO (the node's key
 * is not `key`, or the checkpoint's signature does not verify),
 * DM_ERR_DENIED (the node answered 401 or 403), DM_ERR_MALFORMED (an
 * answer of the wrong shape or status), DM_ERR_TOO_LARGE (an answer over
 * its bound), DM_ERR_IO (the node not reached in time, or a file not
 * written), DM_ERR_NOMEM. */
int audit_fetch(struct api_client *client, const struct audit_verifier *key, const char *dir,
		uint64_t *size, char *err, size_t err_len);

#endif
