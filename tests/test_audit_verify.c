/*
 * test_audit_verify.c — the offline verifier: a log built in memory (entries
 * shaped as audit/entry.h encodes them, with "index"), checkpoints signed
 * with a test key over roots that merkle.h computes from its own in-memory
 * source, and every tampering of issue 6 caught with the right index.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "audit/merkle.h"
#include "audit/verify.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"

#define ORIGIN "domicile.cn-shanghai-1/audit"
#define LOG_SIZE 20
#define MAX_ENTRIES 64

/* ---- a log in memory ---- */

struct log {
	char entry[MAX_ENTRIES][256];
	size_t count;
};

/* Writes entry i with the given outcome, chained to entry i - 1 as it is
 * now: its "prev" is the base64 of that entry's leaf hash. */
static void log_write(struct log *log, size_t i, const char *outcome)
{
	char prev[80] = "";
	if (i > 0) {
		uint8_t leaf[MERKLE_HASH_LEN];
		struct dm_buf b64 = {0};
		assert_int_equal(
		    merkle_leaf_hash(log->entry[i - 1], strlen(log->entry[i - 1]), leaf), DM_OK);
		assert_int_equal(audit_base64_encode(leaf, sizeof leaf, &b64), DM_OK);
		snprintf(prev, sizeof prev, "\"prev\":\"%s\",", (char *)b64.data);
		dm_buf_free(&b64);
	}
	snprintf(log->entry[i], sizeof log->entry[i],
	         "{\"action\":\"vehicle.samples\",\"index\":%zu,\"object\":"
	         "\"LSVAU218XN218329%zu\",\"outcome\":\"%s\",%s\"status\":200,\"time\":%zu,"
	         "\"v\":1,\"who\":{\"kind\":\"principal\",\"name\":\"li\"}}",
	         i, i % 10, outcome, prev, 1732400000000 + i);
}

static void log_make(struct log *log, size_t count)
{
	memset(log, 0, sizeof *log);
	for (size_t i = 0; i < count; i++)
		log_write(log, i, "ok");
	log->count = count;
}

static void log_entries(const struct log *log, struct audit_entries *out)
{
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < log->count; i++)
		assert_int_equal(audit_entries_add(out, log->entry[i], strlen(log->entry[i])),
		                 DM_OK);
}

static void log_leaves(const struct log *log, uint8_t leaves[][MERKLE_HASH_LEN])
{
	for (size_t i = 0; i < log->count; i++)
		assert_int_equal(merkle_leaf_hash(log->entry[i], strlen(log->entry[i]), leaves[i]),
		                 DM_OK);
}

/* The root of the first size entries, through merkle.h's own source. */
static void log_root(const struct log *log, uint64_t size, uint8_t root[MERKLE_HASH_LEN])
{
	uint8_t leaves[MAX_ENTRIES][MERKLE_HASH_LEN];
	log_leaves(log, leaves);
	struct merkle_memory mem = {(const uint8_t(*)[MERKLE_HASH_LEN])leaves, log->count};
	struct merkle_source src;
	merkle_memory_source(&mem, &src);
	assert_int_equal(merkle_root(&src, size, root), DM_OK);
}

static void log_proof(const struct log *log, uint64_t index, uint64_t size,
                      struct audit_inclusion_proof *proof)
{
	uint8_t leaves[MAX_ENTRIES][MERKLE_HASH_LEN];
	log_leaves(log, leaves);
	struct merkle_memory mem = {(const uint8_t(*)[MERKLE_HASH_LEN])leaves, log->count};
	struct merkle_source src;
	merkle_memory_source(&mem, &src);
	memset(proof, 0, sizeof *proof);
	proof->index = index;
	proof->size = size;
	assert_int_equal(merkle_inclusion_proof(&src, index, size, proof->hashes, &proof->count),
	                 DM_OK);
}

static struct audit_key *test_key(uint8_t first, const char *name)
{
	uint8_t seed[32];
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(first + i);
	struct audit_key *key = NULL;
	assert_int_equal(audit_key_from_seed(seed, name, &key), DM_OK);
	return key;
}

/* A signed checkpoint of the first size entries of log. */
struct ckpt {
	struct dm_buf text;
	struct audit_verify_checkpoint in;
};

static void ckpt_sign(struct ckpt *c, const struct audit_key *key, const struct log *log,
                      uint64_t size, int64_t time_ms, const char *label, int trusted)
{
	uint8_t root[MERKLE_HASH_LEN];
	log_root(log, size, root);
	memset(c, 0, sizeof *c);
	assert_int_equal(audit_checkpoint_sign(key, ORIGIN, size, root, time_ms, &c->text), DM_OK);
	c->in = (struct audit_verify_checkpoint){label, (const char *)c->text.data, c->text.len,
	                                         trusted};
}

static void ckpt_free(struct ckpt *c)
{
	dm_buf_free(&c->text);
}

struct fixture {
	struct audit_key *key;
	struct log original;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	f->key = test_key(0, "domicile.cn-shanghai-1");
	log_make(&f->original, LOG_SIZE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	audit_key_free(f->key);
	free(f);
	return 0;
}

/* Verifies log against the checkpoints (and proofs); returns the status. */
static int verify(const struct fixture *f, const struct log *log, struct ckpt **cks, size_t n,
                  const struct audit_inclusion_proof *proofs, size_t proof_count,
                  struct audit_verify_result *res)
{
	struct audit_entries entries;
	log_entries(log, &entries);
	struct audit_verify_checkpoint in[8];
	for (size_t i = 0; i < n; i++)
		in[i] = cks[i]->in;
	struct audit_verify_input input = {
	    .key = audit_key_verifier(f->key),
	    .entries = &entries,
	    .checkpoints = in,
	    .checkpoint_count = n,
	    .proofs = proofs,
	    .proof_count = proof_count,
	    .proofs_label = "proofs.json",
	};
	int rc = audit_verify_log(&input, res);
	audit_entries_free(&entries);
	return rc;
}

static void assert_starts_with(const char *s, const char *prefix)
{
	if (strncmp(s, prefix, strlen(prefix)) != 0)
		fail_msg("'%s' does not start with '%s'", s, prefix);
}

static void assert_contains(const char *s, const char *part)
{
	if (!strstr(s, part))
		fail_msg("'%s' does not contain '%s'", s, part);
}

/* Changes one byte inside entry i's "outcome" value: still a well-formed
 * entry with its index, only its hash tells. */
static void flip_quietly(struct log *log, size_t i)
{
	char *at = strstr(log->entry[i], "\"outcome\":\"ok\"");
	assert_non_null(at);
	at[strlen("\"outcome\":\"o")] ^= 0x01; /* "ok" -> "oj" */
}

/* ---- the untampered log ---- */

static void test_an_untampered_log_verifies(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest, &trusted};
	struct audit_verify_result res;
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_OK);
	assert_int_equal(res.verdict, AUDIT_VERIFIED);
	assert_int_equal(res.latest.size, LOG_SIZE);
	assert_int_equal(res.proven, LOG_SIZE);
	assert_string_equal(res.latest_label, "latest.ckpt");
	assert_string_equal(res.reason, "");
	assert_string_equal(res.note, "");

	/* The log here is what the real encoder writes, "prev" and all. */
	for (size_t i = 0; i < 3; i++) {
		struct dm_buf prev = {0}, bytes = {0};
		uint8_t leaf[MERKLE_HASH_LEN];
		if (i > 0) {
			const char *before = f->original.entry[i - 1];
			assert_int_equal(merkle_leaf_hash(before, strlen(before), leaf), DM_OK);
			assert_int_equal(audit_base64_encode(leaf, sizeof leaf, &prev), DM_OK);
		}
		char object[32];
		snprintf(object, sizeof object, "LSVAU218XN218329%zu", i);
		struct audit_entry e = {
		    .index = i,
		    .time_ms = 1732400000000 + (int64_t)i,
		    .who_kind = "principal",
		    .who = "li",
		    .action = "vehicle.samples",
		    .object = object,
		    .outcome = "ok",
		    .status = 200,
		    .prev = i > 0 ? (const char *)prev.data : NULL,
		};
		assert_int_equal(audit_entry_encode(&e, &bytes), DM_OK);
		assert_int_equal(bytes.len, strlen(f->original.entry[i]));
		assert_memory_equal(bytes.data, f->original.entry[i], bytes.len);
		dm_buf_free(&prev);
		dm_buf_free(&bytes);
	}
	/* Every size from 0 to 20, alone, verifies its prefix. */
	for (uint64_t size = 0; size <= LOG_SIZE; size++) {
		struct ckpt one;
		ckpt_sign(&one, f->key, &f->original, size, 1, "one", 0);
		struct ckpt *single[] = {&one};
		struct log prefix = f->original;
		prefix.count = size;
		assert_int_equal(verify(f, &prefix, single, 1, NULL, 0, &res), DM_OK);
		ckpt_free(&one);
	}
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_entries_newer_than_the_checkpoint_are_checked_for_form_only(void **state)
{
	struct fixture *f = *state;
	struct ckpt latest;
	ckpt_sign(&latest, f->key, &f->original, 15, 1, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest};
	struct audit_verify_result res;
	assert_int_equal(verify(f, &f->original, cks, 1, NULL, 0, &res), DM_OK);
	assert_int_equal(res.proven, 15);
	assert_contains(res.note, "entries 15 to 19 are newer than every checkpoint");
	/* ... but their form is checked. */
	struct log log = f->original;
	log.entry[17][0] = '[';
	assert_int_equal(verify(f, &log, cks, 1, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
	assert_int_equal(res.index, 17);
	assert_starts_with(res.reason, "entry 17: not an audit entry");
	ckpt_free(&latest);
}

/* ---- tampering ---- */

/* Changes the first character of entry i's "prev" value: still canonical
 * base64 of a hash, but not of entry i - 1. */
static void flip_prev(struct log *log, size_t i)
{
	char *at = strstr(log->entry[i], "\"prev\":\"");
	assert_non_null(at);
	at += strlen("\"prev\":\"");
	*at = *at == 'A' ? 'B' : 'A';
}

static void test_a_changed_entry_is_named_by_the_chain(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *two[] = {&latest, &trusted};
	struct audit_verify_result res;
	for (size_t i = 0; i < LOG_SIZE; i++) {
		/* A byte of a value, and one of its "prev" (but in the last entry,
		 * below): only the latest and the trusted old checkpoint. */
		for (int in_prev = 0; in_prev < 2; in_prev++) {
			if (in_prev && (i == 0 || i == LOG_SIZE - 1))
				continue;
			struct log log = f->original;
			if (in_prev)
				flip_prev(&log, i);
			else
				flip_quietly(&log, i);
			assert_int_equal(verify(f, &log, two, 2, NULL, 0, &res), DM_ERR_CRYPTO);
			assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
			/* A value of entry 18 changed looks like entry 19's "prev"
			 * changed (nothing after 19 tells): named 18, bounded by 19. */
			size_t last = !in_prev && i == LOG_SIZE - 2 ? i + 1 : i;
			if (res.index != i || res.last != last)
				fail_msg("%s of entry %zu changed: named %" PRIu64 " (%" PRIu64
				         "..%" PRIu64 "): %s",
				         in_prev ? "prev" : "a value", i, res.index, res.first,
				         res.last, res.reason);
			/* What is proven stays the lower bound: a rewrite of several
			 * entries is not ruled out before the trusted checkpoint. */
			assert_int_equal(res.first, i < 8 ? 0 : 8);
			char expect[64];
			snprintf(expect, sizeof expect, "entry %zu: changed", i);
			assert_starts_with(res.reason, expect);
			if (res.first < i)
				assert_contains(res.note, "rewrit");
		}
		/* Checkpoints at i and i + 1 name it too, with first == last. */
		struct log log = f->original;
		flip_quietly(&log, i);
		struct ckpt before, after;
		ckpt_sign(&before, f->key, &f->original, i, 1500, "before", 0);
		ckpt_sign(&after, f->key, &f->original, i + 1, 1600, "after", 0);
		struct ckpt *four[] = {&latest, &trusted, &before, &after};
		assert_int_equal(verify(f, &log, four, 4, NULL, 0, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
		assert_int_equal(res.index, i);
		assert_int_equal(res.first, i);
		assert_int_equal(res.last, i);
		char expect[64];
		snprintf(expect, sizeof expect, "entry %zu: changed", i);
		assert_starts_with(res.reason, expect);
		ckpt_free(&before);
		ckpt_free(&after);
	}
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_a_broken_link_in_the_last_or_first_entry_is_named(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *two[] = {&latest, &trusted};
	struct audit_verify_result res;
	size_t last = LOG_SIZE - 1;

	/* The last entry's "prev" made malformed ('=' -> '<'): that entry. */
	struct log log = f->original;
	char *pad = strstr(log.entry[last], "=\",");
	assert_non_null(pad);
	*pad ^= 0x01;
	assert_int_equal(verify(f, &log, two, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.index, last);
	assert_int_equal(res.last, last);
	assert_starts_with(res.reason,
	                   "entry 19: its \"prev\" is not the base64 of a 32-byte hash");

	/* ... made another hash: nothing after it tells that from entry 18
	 * changed, and the result says so. */
	log = f->original;
	flip_prev(&log, last);
	assert_int_equal(verify(f, &log, two, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.index, last - 1);
	assert_int_equal(res.first, 8);
	assert_int_equal(res.last, last);
	assert_starts_with(res.reason,
	                   "entry 18: changed: its hash is not the \"prev\" of entry 19");
	assert_contains(res.reason, "or that \"prev\" was changed");

	/* An entry without "prev". */
	log = f->original;
	char *prev = strstr(log.entry[12], "\"prev\":");
	char *status = strstr(log.entry[12], "\"status\"");
	memmove(prev, status, strlen(status) + 1);
	assert_int_equal(verify(f, &log, two, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.index, 12);
	assert_int_equal(res.last, 12);
	assert_starts_with(res.reason, "entry 12: has no \"prev\"");

	/* The first entry with one. */
	log = f->original;
	char *outcome = strstr(log.entry[0], "\"status\"");
	memmove(outcome + 10, outcome, strlen(outcome) + 1);
	memcpy(outcome, "\"prev\":\"\",", 10);
	assert_int_equal(verify(f, &log, two, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.index, 0);
	assert_int_equal(res.last, 0);
	assert_starts_with(res.reason, "entry 0: has a \"prev\", but the first entry has none");
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_a_consistent_rewrite_of_the_rest_of_the_log_is_a_range(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *two[] = {&latest, &trusted};
	struct audit_verify_result res;
	for (size_t i = 0; i < LOG_SIZE; i++) {
		/* Entry i changed, and every later one rewritten to chain to it:
		 * no link breaks, only the checkpoints' roots tell. */
		struct log log = f->original;
		log_write(&log, i, "oj");
		for (size_t j = i + 1; j < LOG_SIZE; j++)
			log_write(&log, j, "ok");
		assert_int_equal(verify(f, &log, two, 2, NULL, 0, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
		/* A range that holds i, never an exact wrong index; the entry the
		 * reason names is one that was rewritten. */
		if (!(res.first <= i && i <= res.last && res.first < res.last && res.index >= i))
			fail_msg("rewrite from %zu: named %" PRIu64 " (%" PRIu64 "..%" PRIu64
			         "): %s",
			         i, res.index, res.first, res.last, res.reason);
		assert_int_equal(res.last, i < 8 ? 7 : LOG_SIZE - 1);
		assert_contains(res.note, "rewritten, links and all");
	}
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_a_flipped_byte_is_named_by_one_neighbouring_inclusion_proof(void **state)
{
	struct fixture *f = *state;
	struct ckpt latest;
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest};
	struct audit_verify_result res;
	for (size_t i = 0; i < LOG_SIZE; i++) {
		struct log log = f->original;
		flip_quietly(&log, i);
		/* The proof of its neighbour carries entry i's true leaf hash. */
		struct audit_inclusion_proof proof;
		log_proof(&f->original, i ^ 1, LOG_SIZE, &proof);
		assert_int_equal(verify(f, &log, cks, 1, &proof, 1, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
		if (res.index != i || res.first != i || res.last != i)
			fail_msg("flip in %zu: named %" PRIu64 " (%" PRIu64 "..%" PRIu64 "): %s", i,
			         res.index, res.first, res.last, res.reason);
		assert_int_equal(res.proofs_used, 1);
		assert_contains(res.reason, "inclusion proof of entry");
		/* The proof of the changed entry itself does not verify and proves
		 * nothing: back to the range. */
		log_proof(&f->original, i, LOG_SIZE, &proof);
		assert_int_equal(verify(f, &log, cks, 1, &proof, 1, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.proofs_used, 0);
		assert_int_equal(res.first, 0);
		/* ... where the chain still names it (entry 18 up to 19, see
		 * test_a_changed_entry_is_named_by_the_chain). */
		assert_int_equal(res.index, i);
		assert_int_equal(res.last, i == LOG_SIZE - 2 ? i + 1 : i);
	}
	/* Proofs for every entry: always exact. */
	struct audit_inclusion_proof all[LOG_SIZE];
	for (size_t j = 0; j < LOG_SIZE; j++)
		log_proof(&f->original, j, LOG_SIZE, &all[j]);
	for (size_t i = 0; i < LOG_SIZE; i++) {
		struct log log = f->original;
		flip_quietly(&log, i);
		assert_int_equal(verify(f, &log, cks, 1, all, LOG_SIZE, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.index, i);
		assert_int_equal(res.first, i);
		assert_int_equal(res.last, i);
		assert_int_equal(res.proofs_used, LOG_SIZE - 1);
	}
	/* On the untampered log every proof is used and nothing is blamed. */
	assert_int_equal(verify(f, &f->original, cks, 1, all, LOG_SIZE, &res), DM_OK);
	assert_int_equal(res.proofs_used, LOG_SIZE);
	ckpt_free(&latest);
}

static void test_a_flip_that_breaks_the_entry_is_named_exactly(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest, &trusted};
	struct audit_verify_result res;
	struct {
		size_t at;
		const char *reason;
	} cases[] = {
	    {11, "entry 11: not an audit entry: not JSON"},
	    {12, "entry 12: says index 13, not its place"},
	    {15, "entry 15: has index 14 like the entry before it"},
	};
	for (size_t c = 0; c < 3; c++) {
		struct log log = f->original;
		char *entry = log.entry[cases[c].at];
		if (c == 0)
			entry[0] = '['; /* '{' -> '[' */
		else
			snprintf(entry, sizeof log.entry[0], "{\"index\":%zu}",
			         c == 1 ? cases[c].at + 1 : cases[c].at - 1);
		assert_int_equal(verify(f, &log, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
		assert_int_equal(res.index, cases[c].at);
		assert_int_equal(res.last, cases[c].at);
		assert_int_equal(res.first, 8);
		assert_starts_with(res.reason, cases[c].reason);
		assert_contains(res.note, "entries 8 to");
	}
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_a_deleted_entry_is_named(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest, &trusted};
	struct audit_verify_result res;
	for (size_t i = 0; i < LOG_SIZE; i++) {
		struct log log = f->original;
		memmove(log.entry[i], log.entry[i + 1], (LOG_SIZE - i - 1) * sizeof log.entry[0]);
		log.count = LOG_SIZE - 1;
		assert_int_equal(verify(f, &log, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_MISSING_ENTRY);
		assert_int_equal(res.index, i);
		assert_int_equal(res.last, i);
		char expect[64];
		snprintf(expect, sizeof expect, "entry %zu: missing", i);
		assert_starts_with(res.reason, expect);
		if (i < LOG_SIZE - 1)
			assert_contains(res.reason, "1 entry");
		else /* the last one deleted is a truncation */
			assert_contains(res.reason, "latest.ckpt (size 20) commits to 20 entries");
		/* Entries before 8 are proven by the trusted checkpoint, unless
		 * the deletion is among them (then it no longer matches). */
		assert_int_equal(res.first, i < 8 ? 0 : 8);
	}
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_two_swapped_entries_are_named(void **state)
{
	struct fixture *f = *state;
	struct ckpt latest;
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest};
	struct audit_verify_result res;
	for (size_t i = 0; i + 1 < LOG_SIZE; i++) {
		struct log log = f->original;
		char tmp[sizeof log.entry[0]];
		memcpy(tmp, log.entry[i], sizeof tmp);
		memcpy(log.entry[i], log.entry[i + 1], sizeof tmp);
		memcpy(log.entry[i + 1], tmp, sizeof tmp);
		assert_int_equal(verify(f, &log, cks, 1, NULL, 0, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
		assert_int_equal(res.index, i);
		char expect[96];
		snprintf(expect, sizeof expect, "entry %zu: entries %zu and %zu are swapped", i, i,
		         i + 1);
		assert_starts_with(res.reason, expect);
	}
	ckpt_free(&latest);
}

static void test_a_truncated_log_is_named_at_its_first_missing_entry(void **state)
{
	struct fixture *f = *state;
	struct ckpt trusted, latest;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest, &trusted};
	struct audit_verify_result res;
	for (size_t size = 0; size < LOG_SIZE; size++) {
		struct log log = f->original;
		log.count = size;
		assert_int_equal(verify(f, &log, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
		assert_int_equal(res.verdict, AUDIT_MISSING_ENTRY);
		assert_int_equal(res.index, size);
		assert_int_equal(res.last, size);
		char expect[160];
		snprintf(expect, sizeof expect,
		         "entry %zu: missing: checkpoint latest.ckpt (size 20) commits to 20 "
		         "entries, the log given ends at %zu: the log was truncated",
		         size, size);
		assert_string_equal(res.reason, expect);
	}
	ckpt_free(&trusted);
	ckpt_free(&latest);
}

static void test_a_replaced_checkpoint_signature_is_refused(void **state)
{
	struct fixture *f = *state;
	struct audit_key *other = test_key(77, "domicile.cn-shanghai-1");
	struct ckpt trusted, latest, forged;
	ckpt_sign(&trusted, f->key, &f->original, 8, 1000, "old.ckpt", 1);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	/* The same checkpoint signed by a key of the same name. */
	ckpt_sign(&forged, other, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	struct ckpt *cks[] = {&forged, &trusted};
	struct audit_verify_result res;
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_CHECKPOINT);
	assert_starts_with(res.reason, "checkpoint latest.ckpt: no signature of");

	/* Our key ID kept, the signature bytes replaced. */
	char *sig = strstr((char *)latest.text.data, "\xE2\x80\x94 ");
	assert_non_null(sig);
	char *b64 = strchr(sig + 4, ' ') + 1;
	b64[10] = b64[10] == 'A' ? 'B' : 'A';
	cks[0] = &latest;
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_CHECKPOINT);
	assert_starts_with(res.reason, "checkpoint latest.ckpt: signature line 1");
	assert_contains(res.reason, "does not verify");

	/* The trusted one tampered with: refused the same way. */
	ckpt_free(&latest);
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 2000, "latest.ckpt", 0);
	cks[0] = &latest;
	trusted.text.data[strlen(ORIGIN) + 1] = '9'; /* size 8 -> 9 */
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_CHECKPOINT);
	assert_starts_with(res.reason, "checkpoint old.ckpt:");

	ckpt_free(&forged);
	ckpt_free(&trusted);
	ckpt_free(&latest);
	audit_key_free(other);
}

static void test_a_rollback_after_a_newer_checkpoint_was_handed_out_is_named(void **state)
{
	struct fixture *f = *state;
	/* The auditor kept the checkpoint of size 20; the site now shows its
	 * state at 12, with the checkpoint it signed then. */
	struct ckpt handed_out, old_latest, resigned;
	ckpt_sign(&handed_out, f->key, &f->original, LOG_SIZE, 2000, "kept.ckpt", 1);
	ckpt_sign(&old_latest, f->key, &f->original, 12, 1200, "latest.ckpt", 0);
	struct log log = f->original;
	log.count = 12;
	struct ckpt *cks[] = {&old_latest, &handed_out};
	struct audit_verify_result res;
	assert_int_equal(verify(f, &log, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_MISSING_ENTRY);
	assert_int_equal(res.index, 12);
	assert_int_equal(res.first, 12);
	assert_int_equal(res.last, 12);
	assert_string_equal(res.reason,
	                    "entry 12: missing: trusted checkpoint kept.ckpt (size 20) commits to "
	                    "20 entries, the log given ends at 12: the log was truncated or rolled "
	                    "back after that checkpoint was handed out");
	assert_string_equal(res.note, "");

	/* Re-signed at size 12 after the larger one: the signatures prove it. */
	ckpt_sign(&resigned, f->key, &f->original, 12, 3000, "latest.ckpt", 0);
	cks[0] = &resigned;
	assert_int_equal(verify(f, &log, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.index, 12);
	assert_contains(res.reason, "checkpoint latest.ckpt (size 12) was signed after it: the "
	                            "log was rolled back");

	/* Rolled back, then grown again with a rewritten entry 5: the old and
	 * the new checkpoint cannot both be true. */
	struct log rewritten = f->original;
	flip_quietly(&rewritten, 5);
	struct ckpt kept12, new20;
	ckpt_sign(&kept12, f->key, &f->original, 12, 1200, "kept.ckpt", 1);
	ckpt_sign(&new20, f->key, &rewritten, LOG_SIZE, 4000, "latest.ckpt", 0);
	struct ckpt *fork[] = {&new20, &kept12};
	assert_int_equal(verify(f, &rewritten, fork, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_FORK);
	assert_int_equal(res.first, 0);
	assert_int_equal(res.last, 11);
	assert_starts_with(res.reason, "trusted checkpoint kept.ckpt (size 12) and checkpoint "
	                               "latest.ckpt (size 20) disagree about entries 0 to 11");
	ckpt_free(&kept12);
	ckpt_free(&new20);
	ckpt_free(&handed_out);
	ckpt_free(&old_latest);
	ckpt_free(&resigned);
}

static void test_checkpoints_that_disagree_or_do_not_belong_are_refused(void **state)
{
	struct fixture *f = *state;
	struct log other = f->original;
	flip_quietly(&other, 3);
	struct ckpt a, b;
	ckpt_sign(&a, f->key, &f->original, 10, 1, "a.ckpt", 0);
	ckpt_sign(&b, f->key, &other, 10, 2, "b.ckpt", 0);
	struct ckpt *cks[] = {&a, &b};
	struct audit_verify_result res;
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_FORK);
	assert_contains(res.reason, "both have size 10 but different roots");

	/* Another origin. */
	struct ckpt c = {0};
	uint8_t root[32];
	log_root(&f->original, 10, root);
	assert_int_equal(audit_checkpoint_sign(f->key, "elsewhere/audit", 10, root, 1, &c.text),
	                 DM_OK);
	c.in = (struct audit_verify_checkpoint){"c.ckpt", (char *)c.text.data, c.text.len, 0};
	cks[1] = &c;
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_CHECKPOINT);
	assert_starts_with(res.reason, "checkpoint c.ckpt: its origin is 'elsewhere/audit'");

	/* Size 0 with a root that is not the empty tree's. */
	struct ckpt z = {0};
	assert_int_equal(audit_checkpoint_sign(f->key, ORIGIN, 0, root, 1, &z.text), DM_OK);
	z.in = (struct audit_verify_checkpoint){"z.ckpt", (char *)z.text.data, z.text.len, 0};
	cks[1] = &z;
	assert_int_equal(verify(f, &f->original, cks, 2, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_CHECKPOINT);

	/* No checkpoint at all is a caller's error. */
	assert_int_equal(verify(f, &f->original, cks, 0, NULL, 0, &res), DM_ERR_INVALID);
	ckpt_free(&a);
	ckpt_free(&b);
	ckpt_free(&c);
	ckpt_free(&z);
}

static void test_a_malformed_entry_the_site_signed_is_reported_as_such(void **state)
{
	struct fixture *f = *state;
	struct log log = f->original;
	snprintf(log.entry[3], sizeof log.entry[3], "not json");
	struct ckpt latest;
	ckpt_sign(&latest, f->key, &log, LOG_SIZE, 1, "latest.ckpt", 0);
	struct ckpt *cks[] = {&latest};
	struct audit_verify_result res;
	assert_int_equal(verify(f, &log, cks, 1, NULL, 0, &res), DM_ERR_CRYPTO);
	assert_int_equal(res.verdict, AUDIT_BAD_ENTRY);
	assert_int_equal(res.index, 3);
	assert_starts_with(res.reason, "entry 3: not an audit entry");
	assert_contains(res.note, "signed this entry as it is");
	ckpt_free(&latest);
}

static void test_verify_recovers_from_every_allocation_failure(void **state)
{
	struct fixture *f = *state;
	struct ckpt latest;
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 1, "latest.ckpt", 0);
	struct audit_entries entries;
	log_entries(&f->original, &entries);
	struct audit_inclusion_proof proof;
	log_proof(&f->original, 4, LOG_SIZE, &proof);
	struct audit_verify_input input = {
	    .key = audit_key_verifier(f->key),
	    .entries = &entries,
	    .checkpoints = &latest.in,
	    .checkpoint_count = 1,
	    .proofs = &proof,
	    .proof_count = 1,
	};
	for (long fail = 0;; fail++) {
		struct audit_verify_result res;
		dm_alloc_fail_after(fail);
		int rc = audit_verify_log(&input, &res);
		dm_alloc_fail_after(-1);
		if (rc == DM_OK)
			break;
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_int_equal(res.verdict, AUDIT_VERIFIED);
		assert_string_equal(res.reason, "");
		assert_true(fail < 100);
	}
	audit_entries_free(&entries);
	ckpt_free(&latest);
}

/* ---- exports and proofs as the API hands them out ---- */

static void export_json(const struct log *log, size_t from, size_t to, struct dm_buf *out)
{
	assert_int_equal(dm_buf_printf(out, "{\"entries\": ["), DM_OK);
	for (size_t i = from; i < to; i++) {
		if (i > from)
			assert_int_equal(dm_buf_printf(out, ", "), DM_OK);
		assert_int_equal(dm_buf_printf(out, "\""), DM_OK);
		assert_int_equal(audit_base64_encode(log->entry[i], strlen(log->entry[i]), out),
		                 DM_OK);
		assert_int_equal(dm_buf_printf(out, "\""), DM_OK);
	}
	assert_int_equal(dm_buf_printf(out, "]}\n"), DM_OK);
}

static void test_exports_read_in_order_make_the_log(void **state)
{
	struct fixture *f = *state;
	struct dm_buf one = {0}, two = {0};
	export_json(&f->original, 0, 7, &one);
	export_json(&f->original, 7, 12, &one); /* two objects in one file */
	export_json(&f->original, 12, LOG_SIZE, &two);
	struct audit_entries entries = {0};
	char err[256];
	assert_int_equal(audit_entries_add_export(&entries, (char *)one.data, one.len, "one.json",
	                                          err, sizeof err),
	                 DM_OK);
	assert_int_equal(entries.count, 12);
	assert_int_equal(audit_entries_add_export(&entries, (char *)two.data, two.len, "two.json",
	                                          err, sizeof err),
	                 DM_OK);
	assert_int_equal(entries.count, LOG_SIZE);
	for (size_t i = 0; i < LOG_SIZE; i++) {
		const uint8_t *e;
		size_t len;
		audit_entries_get(&entries, i, &e, &len);
		assert_int_equal(len, strlen(f->original.entry[i]));
		assert_memory_equal(e, f->original.entry[i], len);
	}
	/* Bad exports change nothing and say where. */
	const char *bad[] = {
	    "",
	    "[]",
	    "{\"entries\": {}}",
	    "{\"entries\": [1]}",
	    "{\"entries\": [\"AB==\"]}",
	    "{\"entries\": [\"eyJpbmRleCI6MH0=\"]} trailing",
	    "{\"entries\": [], \"entries\": []}",
	    "{\"entries\": [\"eyJpbmRleCI6MH0=\"]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		if (audit_entries_add_export(&entries, bad[i], strlen(bad[i]), "bad.json", err,
		                             sizeof err) != DM_ERR_MALFORMED)
			fail_msg("bad export %zu accepted", i);
		assert_starts_with(err, "bad.json: ");
		assert_int_equal(entries.count, LOG_SIZE);
	}
	audit_entries_free(&entries);
	dm_buf_free(&one);
	dm_buf_free(&two);
}

static void proof_json(const struct audit_inclusion_proof *p, struct dm_buf *out)
{
	assert_int_equal(
	    dm_buf_printf(out, "{\"index\": %" PRIu64 ", \"size\": %" PRIu64 ", \"hashes\": [",
	                  p->index, p->size),
	    DM_OK);
	for (size_t h = 0; h < p->count; h++) {
		assert_int_equal(dm_buf_printf(out, h ? ", \"" : "\""), DM_OK);
		assert_int_equal(audit_base64_encode(p->hashes[h], MERKLE_HASH_LEN, out), DM_OK);
		assert_int_equal(dm_buf_printf(out, "\""), DM_OK);
	}
	assert_int_equal(dm_buf_printf(out, "]}\n"), DM_OK);
}

static void test_inclusion_proofs_verify_for_every_entry_and_nothing_else(void **state)
{
	struct fixture *f = *state;
	struct ckpt latest;
	ckpt_sign(&latest, f->key, &f->original, LOG_SIZE, 1, "latest.ckpt", 0);
	const struct audit_verifier *v = audit_key_verifier(f->key);
	char reason[300];
	for (size_t i = 0; i < LOG_SIZE; i++) {
		struct audit_inclusion_proof made, *parsed;
		size_t count;
		log_proof(&f->original, i, LOG_SIZE, &made);
		struct dm_buf json = {0};
		proof_json(&made, &json);
		assert_int_equal(audit_inclusion_proofs_parse((char *)json.data, json.len, "p.json",
		                                              &parsed, &count, reason,
		                                              sizeof reason),
		                 DM_OK);
		assert_int_equal(count, 1);
		assert_memory_equal(parsed, &made, sizeof made);
		const char *entry = f->original.entry[i];
		struct audit_checkpoint cp;
		assert_int_equal(audit_verify_inclusion(v, ORIGIN, latest.in.text, latest.in.len,
		                                        parsed, entry, strlen(entry), &cp, reason,
		                                        sizeof reason),
		                 DM_OK);
		assert_string_equal(reason, "");
		assert_int_equal(cp.size, LOG_SIZE);
		/* Another entry with this proof. */
		const char *other = f->original.entry[(i + 1) % LOG_SIZE];
		assert_int_equal(audit_verify_inclusion(v, ORIGIN, latest.in.text, latest.in.len,
		                                        parsed, other, strlen(other), NULL, reason,
		                                        sizeof reason),
		                 DM_ERR_CRYPTO);
		/* This entry, changed quietly. */
		struct log log = f->original;
		flip_quietly(&log, i);
		assert_int_equal(audit_verify_inclusion(v, ORIGIN, latest.in.text, latest.in.len,
		                                        parsed, log.entry[i], strlen(log.entry[i]),
		                                        NULL, reason, sizeof reason),
		                 DM_ERR_CRYPTO);
		char expect[64];
		snprintf(expect, sizeof expect, "entry %zu: not in the log", i);
		assert_starts_with(reason, expect);
		/* A hash of the proof changed. */
		parsed->hashes[0][5] ^= 0x40;
		assert_int_equal(audit_verify_inclusion(v, ORIGIN, latest.in.text, latest.in.len,
		                                        parsed, entry, strlen(entry), NULL, reason,
		                                        sizeof reason),
		                 DM_ERR_CRYPTO);
		dm_free(parsed);
		dm_buf_free(&json);
	}
	/* A proof for another size than the checkpoint's. */
	struct audit_inclusion_proof p;
	log_proof(&f->original, 2, 10, &p);
	assert_int_equal(audit_verify_inclusion(v, ORIGIN, latest.in.text, latest.in.len, &p,
	                                        f->original.entry[2], strlen(f->original.entry[2]),
	                                        NULL, reason, sizeof reason),
	                 DM_ERR_INVALID);
	assert_contains(reason, "size=20");
	/* One hash too few. */
	log_proof(&f->original, 2, LOG_SIZE, &p);
	p.count--;
	assert_int_equal(audit_verify_inclusion(v, ORIGIN, latest.in.text, latest.in.len, &p,
	                                        f->original.entry[2], strlen(f->original.entry[2]),
	                                        NULL, reason, sizeof reason),
	                 DM_ERR_INVALID);
	/* A wrong key. */
	struct audit_key *other = test_key(9, "domicile.cn-shanghai-1");
	log_proof(&f->original, 2, LOG_SIZE, &p);
	assert_int_equal(audit_verify_inclusion(audit_key_verifier(other), ORIGIN, latest.in.text,
	                                        latest.in.len, &p, f->original.entry[2],
	                                        strlen(f->original.entry[2]), NULL, reason,
	                                        sizeof reason),
	                 DM_ERR_CRYPTO);
	assert_starts_with(reason, "checkpoint: no signature");
	audit_key_free(other);
	ckpt_free(&latest);
}

static void test_proof_files_hold_one_several_or_an_array_of_proofs(void **state)
{
	struct fixture *f = *state;
	struct audit_inclusion_proof a, b, *parsed;
	log_proof(&f->original, 0, LOG_SIZE, &a);
	log_proof(&f->original, 19, LOG_SIZE, &b);
	struct dm_buf json = {0};
	proof_json(&a, &json);
	proof_json(&b, &json);
	size_t count;
	char err[256];
	assert_int_equal(audit_inclusion_proofs_parse((char *)json.data, json.len, "p.json",
	                                              &parsed, &count, err, sizeof err),
	                 DM_OK);
	assert_int_equal(count, 2);
	assert_memory_equal(&parsed[1], &b, sizeof b);
	dm_free(parsed);
	json.len = 0;
	assert_int_equal(dm_buf_printf(&json, "[\n"), DM_OK);
	proof_json(&a, &json);
	assert_int_equal(dm_buf_printf(&json, ",\n"), DM_OK);
	proof_json(&b, &json);
	assert_int_equal(dm_buf_printf(&json, "]"), DM_OK);
	assert_int_equal(audit_inclusion_proofs_parse((char *)json.data, json.len, "p.json",
	                                              &parsed, &count, err, sizeof err),
	                 DM_OK);
	assert_int_equal(count, 2);
	assert_memory_equal(&parsed[0], &a, sizeof a);
	dm_free(parsed);
	dm_buf_free(&json);
	const char *bad[] = {
	    "{\"index\": 5, \"size\": 5, \"hashes\": []}",
	    "{\"index\": -1, \"size\": 5, \"hashes\": []}",
	    "{\"index\": 1, \"size\": 5}",
	    "{\"index\": 1, \"size\": 5, \"hashes\": [\"AAAA\"]}",
	    "{\"index\": \"1\", \"size\": 5, \"hashes\": []}",
	    "{\"index\": 1, \"size\": 5, \"hashes\": []} x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (audit_inclusion_proofs_parse(bad[i], strlen(bad[i]), "p.json", &parsed, &count,
		                                 err, sizeof err) != DM_ERR_MALFORMED)
			fail_msg("bad proof %zu accepted", i);
		assert_null(parsed);
		assert_starts_with(err, "p.json: ");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_an_untampered_log_verifies, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_entries_newer_than_the_checkpoint_are_checked_for_form_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_changed_entry_is_named_by_the_chain, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_a_broken_link_in_the_last_or_first_entry_is_named,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_a_consistent_rewrite_of_the_rest_of_the_log_is_a_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_a_flipped_byte_is_named_by_one_neighbouring_inclusion_proof, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_flip_that_breaks_the_entry_is_named_exactly,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_deleted_entry_is_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_swapped_entries_are_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_a_truncated_log_is_named_at_its_first_missing_entry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_replaced_checkpoint_signature_is_refused, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_a_rollback_after_a_newer_checkpoint_was_handed_out_is_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_checkpoints_that_disagree_or_do_not_belong_are_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_a_malformed_entry_the_site_signed_is_reported_as_such, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verify_recovers_from_every_allocation_failure,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exports_read_in_order_make_the_log, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_inclusion_proofs_verify_for_every_entry_and_nothing_else, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_proof_files_hold_one_several_or_an_array_of_proofs,
	                                    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
