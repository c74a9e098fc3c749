/*
 * log.h — the node's audit log: entries appended durably (audit/store), and
 * checkpoints signed with the site's Ed25519 key (audit/checkpoint) every N
 * entries or T seconds, whichever comes first (promise 4 of DESIGN.md).
 *
 * Files, in data_dir:
 *   audit/             the entries and their Merkle tree (audit/store.h)
 *   audit.key          the site's Ed25519 signing key, mode 0600, made at
 *                      first start
 * The latest checkpoint lives in memory; a new one is signed at every start,
 * so nothing on disk needs to be trusted for it (auditors keep the ones
 * they were handed).
 *
 * The key is named "domicile-<site>" and the log's origin is
 * "domicile-<site>/audit"; GET /v1/audit/key hands out the verifier key an
 * auditor checks checkpoints with.
 *
 * Everything runs on the event loop; an append blocks until the entry is
 * on disk, so the action it records can return its result after it.
 */
#ifndef DM_AUDIT_LOG_H
#define DM_AUDIT_LOG_H

#include <stdint.h>

#include "audit/entry.h"
#include "audit/store.h"
#include "util/buf.h"

struct event_base;
struct audit_log;

struct audit_log_options {
	const char *data_dir;
	const char *site;
	uint64_t checkpoint_entries; /* N; 0: 1000 */
	unsigned checkpoint_seconds; /* T; 0: 60 */
	/* audit_log_append_bounded: entries of one kind per window; 0: 100
	 * per 10000 ms. */
	unsigned burst;
	unsigned window_ms;
};

/* Opens (or creates) the log and the key, and signs a checkpoint of the
 * log as it is. Errors are logged and returned (the node does not start
 * without its audit log). */
int audit_log_open(struct event_base *base, const struct audit_log_options *options,
		   struct audit_log **out);

/* Signs a last checkpoint if entries came since the previous one, and
 * frees everything. Accepts NULL. */
void audit_log_close(struct audit_log *log);

/* Appends e, setting its index, site and (when 0) time, durably; signs a
 * checkpoint when N entries came since the last one. Every entry after the
 * first is chained to the one before it: its "prev" is the base64 of that
 * entry's leaf hash (audit/entry.h), which the log keeps from the last
 * append that succeeded (or, at open, from the store's last entry); e->prev
 * is set for the encoding only and is NULL again on return. Returns DM_OK, or what
 * audit_store_append or audit_entry_encode returned: then nothing was
 * recorded and the caller must not report the action as done. */
int audit_log_append(struct audit_log *log, struct audit_entry *e);

/* For what anyone on the network can cause at will (a refused vehicle
 * connection): appends e as audit_log_append does while fewer than `burst`
 * entries of the same kind (a short name, e.g. "mqtt.connect/bad_secret")
 * came in the current window. The first entry past that is replaced by one
 * of the node's own, action "audit.suppressing" (object: the kind; params
 * burst, window_ms), so that even a crash leaves the fact in the log; the
 * rest of the window's entries of the kind are only counted. When the
 * window has ended (checked at every window's length by a timer, at the
 * next entry of the kind, and by audit_log_summarise) one more entry,
 * "audit.suppressed", records how many there were and between which times
 * (params count, from, to; wall-clock ms). So a flood of refusals costs at
 * most burst + 2 synced appends per kind and window, and the log still says
 * it happened. Windows are measured on the monotonic clock. Fifteen kinds
 * get their own counts; the kinds past them share one, "other". Returns
 * DM_OK for an entry counted, else what audit_log_append returned. */
int audit_log_append_bounded(struct audit_log *log, const char *kind, struct audit_entry *e);

/* Records every count audit_log_append_bounded holds now, window ended or
 * not (the node calls it before its last entry); audit_log_close does it
 * too. */
void audit_log_summarise(struct audit_log *log);

/* The latest signed checkpoint, appended to out. */
int audit_log_checkpoint(struct audit_log *log, struct dm_buf *out);

/* The verifier key, "<name>+<key id>+<base64>", appended to out. */
int audit_log_verifier_key(struct audit_log *log, struct dm_buf *out);

/* The tree size the latest checkpoint signs: what proofs are made for
 * unless a caller names another size. */
uint64_t audit_log_checkpoint_size(const struct audit_log *log);

/* The store, for entries and proofs (borrowed). */
struct audit_store *audit_log_store(struct audit_log *log);

#endif
