/*
 * fetch.h — an auditor's export of a running node's audit log, through its
 * API with the auditor's token (api/client), into the files `domicile audit
 * verify` reads:
 *
 *   DIR/checkpoint    the latest signed checkpoint (GET /v1/audit/checkpoint)
 *   DIR/key           the site's verifier key (GET /v1/audit/key), one line
 *   DIR/entries.json  every entry that checkpoint signs, index 0 to size - 1,
 *                     as one export {"entries": ["<base64>", ...]}, fetched
 *                     a page (API_AUDIT_PAGE_MAX) at a time
 *
 * Nothing fetched is trusted or checked here beyond its shape: that is
 * verify's job, against the key and the older checkpoints the auditor
 * already holds (the key in DIR/key comes from the node being audited). The
 * entries below a checkpoint's size never change, so pages fetched one
 * after another make one consistent export even while the log grows.
 *
 * DIR is created (mode 0700) when missing; the files are created, never
 * replaced (mode 0600): an export, once made, stays as it was fetched.
 */
#ifndef DM_AUDIT_FETCH_H
#define DM_AUDIT_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct api_client;

/* Fetches the export into dir; *size is the checkpoint's size. Errors, with
 * a message in err: DM_ERR_EXISTS (a file of an export is already in dir),
 * DM_ERR_IO (the node could not be reached or a file not written),
 * DM_ERR_DENIED (the node answered 401 or 403), DM_ERR_MALFORMED (an
 * answer of the wrong shape), DM_ERR_NOMEM. On error the files written so
 * far are removed. */
int audit_fetch(const struct api_client *client, const char *dir, uint64_t *size, char *err,
		size_t err_len);

#endif
