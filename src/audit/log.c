/*
 * log.c — the node's audit log: durable appends and signed checkpoints
 * (log.h has the user's view).
 *
 * Invariants:
 *  1. checkpoint holds a checkpoint signed for checkpoint_size entries,
 *     which is never above the store's size.
 *  2. A checkpoint is signed when checkpoint_entries entries came since the
 *     last one (in append), when the timer finds any entry since the last
 *     one, at open and at close; never twice for one size in a row.
 *  3. When the store holds entries, last_leaf is the Merkle leaf hash of its
 *     last one (hashed at open from the store, then from the bytes of each
 *     append that succeeded); every entry appended after the first carries
 *     it, in base64, as "prev" (audit/entry.h). A failed append leaves it
 *     as it was.
 *  4. For every kind of bounded entry: `recorded` appends were attempted
 *     since window_start (monotonic ms), and `suppressed` were counted
 *     instead (between first_ms and last_ms, wall clock) and not yet
 *     summarised; the first of a window's suppressed entries made an
 *     "audit.suppressing" entry. A window's count is summarised before the
 *     kind's next window opens and before close.
 */
#include "audit/log.h"

#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "audit/checkpoint.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define DEFAULT_CHECKPOINT_ENTRIES 1000
#define DEFAULT_CHECKPOINT_SECONDS 60
#define DEFAULT_BURST 100
#define DEFAULT_WINDOW_MS 10000
#define MAX_KINDS 16
#define KIND_MAX 47

/* One kind of bounded entry (invariant 4). */
struct bounded_kind {
	char name[KIND_MAX + 1]; /* "" : unused */
	int64_t window_start;    /* monotonic ms; 0: no window yet */
	unsigned recorded;
	uint64_t suppressed;
	int64_t first_ms, last_ms;
};

struct audit_log {
	struct audit_store *store;
	struct audit_key *key;
	char site[64];
	char origin[AUDIT_KEY_NAME_MAX + 8]; /* name + "/audit" */
	uint64_t every_entries;
	struct event *timer;
	struct dm_buf checkpoint; /* invariant 1 */
	uint64_t checkpoint_size;
	int have_checkpoint;
	uint8_t last_leaf[MERKLE_HASH_LEN]; /* invariant 3 */
	unsigned burst;
	int64_t window_ms;
	struct bounded_kind kinds[MAX_KINDS];
	struct event *window_timer; /* summarises the windows that ended */
};

/* The monotonic clock in ms: windows must end even when the wall clock
 * steps back. */
static int64_t mono_ms(void)
{
	return (int64_t)(dm_mono_ns() / 1000000u);
}

/* The leaf hash of the store's last entry into log->last_leaf (invariant
 * 3); nothing to do for an empty store. */
static int hash_last_entry(struct audit_log *log)
{
	uint64_t size = audit_store_size(log->store);
	if (size == 0)
		return DM_OK;
	struct dm_buf bytes = {0};
	int rc = audit_store_entry(log->store, size - 1, &bytes);
	if (rc == DM_OK)
		rc = merkle_leaf_hash(bytes.data ? bytes.data : (const uint8_t *)"", bytes.len,
		                      log->last_leaf);
	dm_buf_free(&bytes);
	return rc;
}

/* Signs a checkpoint of the log as it is now. */
static int sign_checkpoint(struct audit_log *log)
{
	uint64_t size = audit_store_size(log->store);
	uint8_t root[MERKLE_HASH_LEN];
	struct dm_buf text = {0};
	int rc = audit_store_root(log->store, size, root);
	if (rc == DM_OK)
		rc = audit_checkpoint_sign(log->key, log->origin, size, root, dm_now_ms(), &text);
	if (rc) {
		dm_error("audit: cannot sign a checkpoint of %llu entries: %s",
			 (unsigned long long)size, dm_strerror(rc));
		dm_buf_free(&text);
		return rc;
	}
	dm_buf_free(&log->checkpoint);
	log->checkpoint = text;
	log->checkpoint_size = size;
	log->have_checkpoint = 1;
	return DM_OK;
}

/* Records what kind k suppressed, if anything (invariant 4). Nothing is
 * tried on a failed store: it refuses every append until reopened. */
static void summarise(struct audit_log *log, struct bounded_kind *k)
{
	if (!k->suppressed || audit_store_failed(log->store))
		return;
	json_t *params = json_pack("{s:I, s:I, s:I}", "count", (json_int_t)k->suppressed, "from",
				   (json_int_t)k->first_ms, "to", (json_int_t)k->last_ms);
	struct audit_entry e = {
		.who_kind = "node",
		.action = "audit.suppressed",
		.object = k->name,
		.params = params,
		.outcome = "ok",
	};
	/* On failure the count is kept: the store is failed for good then,
	 * and the error was logged by audit_log_append. */
	if (params && audit_log_append(log, &e) == DM_OK)
		k->suppressed = 0;
	json_decref(params);
}

/* Summarises every kind whose window ended by now (all of them: now is
 * INT64_MAX). */
static void summarise_ended(struct audit_log *log, int64_t now)
{
	for (size_t i = 0; i < MAX_KINDS && log->kinds[i].name[0]; i++)
		if (now == INT64_MAX || now - log->kinds[i].window_start >= log->window_ms)
			summarise(log, &log->kinds[i]);
}

void audit_log_summarise(struct audit_log *log)
{
	summarise_ended(log, INT64_MAX);
}

static void on_window_timer(evutil_socket_t fd, short what, void *arg)
{
	summarise_ended(arg, mono_ms());
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct audit_log *log = arg;
	if (audit_store_size(log->store) != log->checkpoint_size)
		sign_checkpoint(log);
}

int audit_log_open(struct event_base *base, const struct audit_log_options *options,
		   struct audit_log **out)
{
	*out = NULL;
	struct audit_log *log = dm_calloc(1, sizeof *log);
	if (!log)
		return DM_ERR_NOMEM;
	snprintf(log->site, sizeof log->site, "%s", options->site);
	char name[AUDIT_KEY_NAME_MAX + 1], path[PATH_MAX];
	snprintf(name, sizeof name, "domicile-%s", options->site);
	snprintf(log->origin, sizeof log->origin, "%s/audit", name);
	log->every_entries =
		options->checkpoint_entries ? options->checkpoint_entries : DEFAULT_CHECKPOINT_ENTRIES;
	unsigned seconds =
		options->checkpoint_seconds ? options->checkpoint_seconds : DEFAULT_CHECKPOINT_SECONDS;
	log->burst = options->burst ? options->burst : DEFAULT_BURST;
	log->window_ms = options->window_ms ? options->window_ms : DEFAULT_WINDOW_MS;

	snprintf(path, sizeof path, "%s/audit", options->data_dir);
	int rc = audit_store_open(path, NULL, &log->store);
	if (rc == DM_OK)
		rc = hash_last_entry(log);
	if (rc == DM_OK) {
		snprintf(path, sizeof path, "%s/audit.key", options->data_dir);
		rc = audit_key_load_or_create(path, name, &log->key);
	}
	if (rc == DM_OK)
		rc = sign_checkpoint(log);
	if (rc == DM_OK) {
		log->timer = event_new(base, -1, EV_PERSIST, on_timer, log);
		struct timeval every = {(time_t)seconds, 0};
		rc = log->timer && event_add(log->timer, &every) == 0 ? DM_OK : DM_ERR_NOMEM;
	}
	if (rc == DM_OK) {
		log->window_timer = event_new(base, -1, EV_PERSIST, on_window_timer, log);
		struct timeval every = {(time_t)(log->window_ms / 1000),
					(suseconds_t)(log->window_ms % 1000) * 1000};
		rc = log->window_timer && event_add(log->window_timer, &every) == 0 ? DM_OK
										      : DM_ERR_NOMEM;
	}
	if (rc) {
		dm_error("audit: the log in %s/audit cannot be opened: %s", options->data_dir,
			 dm_strerror(rc));
		audit_log_close(log);
		return rc;
	}
	*out = log;
	return DM_OK;
}

void audit_log_close(struct audit_log *log)
{
	if (!log)
		return;
	if (log->store && log->key)
		summarise_ended(log, INT64_MAX);
	if (log->store && log->key && audit_store_size(log->store) != log->checkpoint_size)
		sign_checkpoint(log);
	if (log->timer)
		event_free(log->timer);
	if (log->window_timer)
		event_free(log->window_timer);
	audit_store_close(log->store);
	audit_key_free(log->key);
	dm_buf_free(&log->checkpoint);
	dm_free(log);
}

int audit_log_append(struct audit_log *log, struct audit_entry *e)
{
	struct dm_buf bytes = {0}, prev = {0};
	e->index = audit_store_size(log->store);
	e->site = log->site;
	e->prev = NULL;
	if (!e->time_ms)
		e->time_ms = dm_now_ms();
	int rc = DM_OK;
	if (e->index > 0) {
		rc = audit_base64_encode(log->last_leaf, MERKLE_HASH_LEN, &prev);
		if (rc == DM_OK)
			e->prev = (const char *)prev.data;
	}
	if (rc == DM_OK)
		rc = audit_entry_encode(e, &bytes);
	uint64_t index = 0;
	uint8_t leaf[MERKLE_HASH_LEN];
	if (rc == DM_OK)
		rc = merkle_leaf_hash(bytes.data, bytes.len, leaf);
	if (rc == DM_OK)
		rc = audit_store_append(log->store, bytes.data, bytes.len, &index);
	if (rc == DM_OK)
		memcpy(log->last_leaf, leaf, MERKLE_HASH_LEN); /* invariant 3 */
	e->prev = NULL; /* it pointed into prev */
	dm_buf_free(&prev);
	dm_buf_free(&bytes);
	if (rc) {
		dm_error("audit: %s by %s not recorded: %s", e->action, e->who ? e->who : e->who_kind,
			 dm_strerror(rc));
		return rc;
	}
	if (audit_store_size(log->store) - log->checkpoint_size >= log->every_entries)
		sign_checkpoint(log);
	return DM_OK;
}

int audit_log_append_bounded(struct audit_log *log, const char *kind, struct audit_entry *e)
{
	char name[KIND_MAX + 1];
	snprintf(name, sizeof name, "%s", kind);
	struct bounded_kind *k = NULL;
	for (size_t i = 0; i < MAX_KINDS && !k; i++) {
		struct bounded_kind *slot = &log->kinds[i];
		if (i == MAX_KINDS - 1)
			snprintf(slot->name, sizeof slot->name, "other");
		else if (!slot->name[0])
			memcpy(slot->name, name, sizeof name);
		if (strcmp(slot->name, name) == 0 || i == MAX_KINDS - 1)
			k = slot;
	}
	int64_t now = mono_ms();
	if (!k->window_start || now - k->window_start >= log->window_ms) {
		summarise(log, k);
		k->window_start = now;
		k->recorded = 0;
	}
	if (k->recorded < log->burst) {
		k->recorded++;
		return audit_log_append(log, e);
	}
	int64_t wall = dm_now_ms();
	if (!k->suppressed) {
		/* Durable before anything is only counted (invariant 4). */
		json_t *params = json_pack("{s:I, s:I}", "burst", (json_int_t)log->burst,
					   "window_ms", (json_int_t)log->window_ms);
		struct audit_entry begins = {
			.who_kind = "node",
			.action = "audit.suppressing",
			.object = k->name,
			.params = params,
			.outcome = "ok",
		};
		int rc = params ? audit_log_append(log, &begins) : DM_ERR_NOMEM;
		json_decref(params);
		if (rc)
			return rc;
		k->first_ms = wall;
	}
	k->suppressed++;
	k->last_ms = wall;
	return DM_OK;
}

int audit_log_checkpoint(struct audit_log *log, struct dm_buf *out)
{
	if (!log->have_checkpoint && sign_checkpoint(log) != DM_OK)
		return DM_ERR_STATE;
	return dm_buf_append(out, log->checkpoint.data, log->checkpoint.len);
}

int audit_log_verifier_key(struct audit_log *log, struct dm_buf *out)
{
	return audit_verifier_format(audit_key_verifier(log->key), out);
}

uint64_t audit_log_checkpoint_size(const struct audit_log *log) { return log->checkpoint_size; }

struct audit_store *audit_log_store(struct audit_log *log) { return log->store; }
