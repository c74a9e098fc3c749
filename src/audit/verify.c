/*
 * verify.c — the offline verifier (what it proves and how: verify.h).
 *
 * Facts. Every check that involves a signature becomes a fact about a range
 * of entries [start, end): "good" when the signed hash of that range equals
 * the hash recomputed from the entries given, "bad" when it differs.
 *   - a checkpoint of size N <= count gives one fact about [0, N);
 *   - an inclusion proof for (I, N) that verifies, with the leaf hash of the
 *     entry given at I, against the root of a checkpoint of size N gives
 *     "good" for [I, I+1) and one fact per hash on its path (the RFC 9162
 *     PATH siblings, deepest first, each the MTH of a known range).
 * A proof that does not verify proves nothing (the proof may be the bad
 * part) and is only counted.
 *
 * The chain. Link i (i >= 1) holds when entry i's "prev" decodes to the leaf
 * hash of entry i - 1, which the tree already holds (level 0); entry 0 must
 * have none. The first broken link blames one entry (verify.h), unless a
 * misfit of structure at or before it explains it.
 *
 * Invariants:
 *  1. No entry is blamed without a signed fact or its own structure: the
 *     bounds of the first entry that does not fit are
 *       first = the lowest index no good fact covers,
 *       last  = min over bad facts of the highest index in it that no good
 *               fact covers, and over the structural findings (an "index"
 *               that is not the position; the first missing entry) and
 *               the entry the first broken link blames;
 *     so first <= the true first changed entry <= last (the chain's part
 *     holds for one changed entry; with several, an entry at most one
 *     place after last changed, see verify.h).
 *  2. A bad fact that good facts cover entirely cannot happen with one
 *     honest tree: it is reported as a fork (the site signed two trees that
 *     disagree), never as an entry.
 *  3. The tree of the entries is hashed once: every perfect aligned subtree
 *     is kept (levels[l][i] = hash of leaves i·2^l .. (i+1)·2^l − 1, < 2n
 *     hashes in all), so each root and each range costs O(log n).
 *  4. Nothing here trusts the order or the number of inputs: checkpoints are
 *     sorted by size, two of the same size must have the same root, and the
 *     origin of all of them must be the same.
 */
#include "audit/verify.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/err.h"
#include "util/file.h"

/* ---- entries ---- */

static int reserve_entry(struct audit_entries *entries)
{
	if (entries->count < entries->cap)
		return DM_OK;
	uint64_t cap = entries->cap ? entries->cap * 2 : 64;
	if (cap > SIZE_MAX / sizeof *entries->ends)
		return DM_ERR_NOMEM;
	size_t *ends = dm_realloc(entries->ends, (size_t)cap * sizeof *ends);
	if (!ends)
		return DM_ERR_NOMEM;
	entries->ends = ends;
	entries->cap = cap;
	return DM_OK;
}

int audit_entries_add(struct audit_entries *entries, const void *entry, size_t len)
{
	if (len > AUDIT_ENTRY_MAX)
		return DM_ERR_TOO_LARGE;
	if (reserve_entry(entries) != DM_OK || dm_buf_append(&entries->bytes, entry, len) != DM_OK)
		return DM_ERR_NOMEM;
	entries->ends[entries->count++] = entries->bytes.len;
	return DM_OK;
}

/* Appends the entry whose base64 is b64[0..len), decoded in place. */
static int add_base64_entry(struct audit_entries *entries, const char *b64, size_t len)
{
	if (len / 4 * 3 > AUDIT_ENTRY_MAX + 2)
		return DM_ERR_TOO_LARGE;
	/* At least one byte, so that data is never NULL below. */
	if (reserve_entry(entries) != DM_OK ||
	    dm_buf_reserve(&entries->bytes, len / 4 * 3 + 1) != DM_OK)
		return DM_ERR_NOMEM;
	size_t got = 0;
	int rc = audit_base64_decode(b64, len, entries->bytes.data + entries->bytes.len,
	                             AUDIT_ENTRY_MAX, &got);
	if (rc != DM_OK)
		return rc;
	entries->bytes.len += got;
	entries->ends[entries->count++] = entries->bytes.len;
	return DM_OK;
}

void audit_entries_get(const struct audit_entries *entries, uint64_t index, const uint8_t **entry,
                       size_t *len)
{
	size_t start = index ? entries->ends[index - 1] : 0;
	*entry = entries->bytes.data ? entries->bytes.data + start : (const uint8_t *)"";
	*len = entries->ends[index] - start;
}

void audit_entries_free(struct audit_entries *entries)
{
	dm_buf_free(&entries->bytes);
	dm_free(entries->ends);
	memset(entries, 0, sizeof *entries);
}

static size_t skip_space(const char *text, size_t len, size_t pos)
{
	while (pos < len &&
	       (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r'))
		pos++;
	return pos;
}

/* Calls each(value) for every JSON value in text, one after another. */
static int for_each_json(const char *text, size_t len, const char *name,
                         int (*each)(json_t *value, size_t nth, void *arg), void *arg, char *err,
                         size_t err_len)
{
	size_t pos = skip_space(text, len, 0), nth = 0;
	if (pos == len) {
		dm_format_err(err, err_len, "%s: no JSON object in it", name);
		return DM_ERR_MALFORMED;
	}
	while (pos < len) {
		json_error_t jerr;
		json_t *value = json_loadb(text + pos, len - pos,
		                           JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
		if (!value) {
			dm_format_err(err, err_len, "%s: not JSON near byte %zu: %s", name,
			        pos + (size_t)(jerr.position > 0 ? jerr.position : 0), jerr.text);
			return DM_ERR_MALFORMED;
		}
		pos += (size_t)jerr.position;
		int rc = each(value, nth++, arg);
		json_decref(value);
		if (rc != DM_OK)
			return rc;
		pos = skip_space(text, len, pos);
	}
	return DM_OK;
}

struct export_state {
	struct audit_entries *entries;
	const char *name;
	char *err;
	size_t err_len;
};

static int add_export(json_t *value, size_t nth, void *arg)
{
	struct export_state *st = arg;
	json_t *list = json_is_object(value) ? json_object_get(value, "entries") : NULL;
	if (!json_is_array(list)) {
		dm_format_err(st->err, st->err_len,
		        "%s: export %zu is not an object with an \"entries\" array", st->name,
		        nth + 1);
		return DM_ERR_MALFORMED;
	}
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *item = json_array_get(list, i);
		int rc = json_is_string(item)
		             ? add_base64_entry(st->entries, json_string_value(item),
		                                json_string_length(item))
		             : DM_ERR_MALFORMED;
		if (rc == DM_ERR_NOMEM) {
			dm_format_err(st->err, st->err_len, "%s: out of memory", st->name);
			return rc;
		}
		if (rc != DM_OK) {
			dm_format_err(st->err, st->err_len,
			        "%s: export %zu, entries[%zu] (log index %" PRIu64
			        "): not canonical base64 of at most %u bytes",
			        st->name, nth + 1, i, st->entries->count, AUDIT_ENTRY_MAX);
			return rc;
		}
	}
	return DM_OK;
}

int audit_entries_add_export(struct audit_entries *entries, const char *text, size_t len,
                             const char *name, char *err, size_t err_len)
{
	uint64_t count = entries->count;
	size_t bytes = entries->bytes.len;
	dm_format_err(err, err_len, "%s", "");
	struct export_state st = {entries, name, err, err_len};
	int rc = for_each_json(text, len, name, add_export, &st, err, err_len);
	if (rc != DM_OK) {
		entries->count = count;
		entries->bytes.len = bytes;
	}
	return rc;
}

int audit_entry_index(const void *entry, size_t len, uint64_t *index, char *err, size_t err_len)
{
	*index = 0;
	json_error_t jerr;
	json_t *root = json_loadb(entry, len, JSON_REJECT_DUPLICATES, &jerr);
	int rc = DM_ERR_MALFORMED;
	json_t *ix = json_is_object(root) ? json_object_get(root, "index") : NULL;
	if (!root)
		dm_format_err(err, err_len, "not JSON (%s)", jerr.text);
	else if (!json_is_object(root))
		dm_format_err(err, err_len, "not a JSON object");
	else if (!json_is_integer(ix) || json_integer_value(ix) < 0)
		dm_format_err(err, err_len, "has no non-negative integer \"index\"");
	else {
		*index = (uint64_t)json_integer_value(ix);
		rc = DM_OK;
	}
	json_decref(root);
	return rc;
}

/* ---- inclusion proofs ---- */

static int get_uint(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return DM_ERR_MALFORMED;
	*out = (uint64_t)json_integer_value(v);
	return DM_OK;
}

static int proof_from_json(json_t *obj, struct audit_inclusion_proof *p, const char *name,
                           size_t nth, char *err, size_t err_len)
{
	memset(p, 0, sizeof *p);
	json_t *hashes = json_is_object(obj) ? json_object_get(obj, "hashes") : NULL;
	if (!json_is_object(obj) || get_uint(obj, "index", &p->index) != DM_OK ||
	    get_uint(obj, "size", &p->size) != DM_OK || !json_is_array(hashes)) {
		dm_format_err(err, err_len,
		        "%s: proof %zu is not {\"index\": I, \"size\": N, \"hashes\": [...]} with "
		        "non-negative integers",
		        name, nth + 1);
		return DM_ERR_MALFORMED;
	}
	if (p->index >= p->size) {
		dm_format_err(err, err_len, "%s: proof %zu: index %" PRIu64 " is not below size %" PRIu64,
		        name, nth + 1, p->index, p->size);
		return DM_ERR_MALFORMED;
	}
	if (json_array_size(hashes) > MERKLE_MAX_PROOF) {
		dm_format_err(err, err_len, "%s: proof %zu has more than %d hashes", name, nth + 1,
		        MERKLE_MAX_PROOF);
		return DM_ERR_TOO_LARGE;
	}
	for (size_t i = 0; i < json_array_size(hashes); i++) {
		json_t *h = json_array_get(hashes, i);
		size_t got = 0;
		if (!json_is_string(h) ||
		    audit_base64_decode(json_string_value(h), json_string_length(h), p->hashes[i],
		                        MERKLE_HASH_LEN, &got) != DM_OK ||
		    got != MERKLE_HASH_LEN) {
			dm_format_err(err, err_len,
			        "%s: proof %zu, hashes[%zu]: not canonical base64 of 32 bytes",
			        name, nth + 1, i);
			return DM_ERR_MALFORMED;
		}
	}
	p->count = json_array_size(hashes);
	return DM_OK;
}

struct proofs_state {
	struct audit_inclusion_proof *proofs;
	size_t count, cap;
	const char *name;
	char *err;
	size_t err_len;
};

static int add_proof(json_t *obj, struct proofs_state *st)
{
	if (st->count == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 8;
		struct audit_inclusion_proof *grown = dm_realloc(st->proofs, cap * sizeof *grown);
		if (!grown) {
			dm_format_err(st->err, st->err_len, "%s: out of memory", st->name);
			return DM_ERR_NOMEM;
		}
		st->proofs = grown;
		st->cap = cap;
	}
	int rc =
	    proof_from_json(obj, &st->proofs[st->count], st->name, st->count, st->err, st->err_len);
	if (rc == DM_OK)
		st->count++;
	return rc;
}

static int add_proofs(json_t *value, size_t nth, void *arg)
{
	if (!json_is_array(value))
		return add_proof(value, arg);
	for (size_t i = 0; i < json_array_size(value); i++) {
		int rc = add_proof(json_array_get(value, i), arg);
		if (rc != DM_OK)
			return rc;
	}
	return DM_OK;
}

int audit_inclusion_proofs_parse(const char *text, size_t len, const char *name,
                                 struct audit_inclusion_proof **out, size_t *count, char *err,
                                 size_t err_len)
{
	*out = NULL;
	*count = 0;
	dm_format_err(err, err_len, "%s", "");
	struct proofs_state st = {.name = name, .err = err, .err_len = err_len};
	int rc = for_each_json(text, len, name, add_proofs, &st, err, err_len);
	if (rc != DM_OK) {
		dm_free(st.proofs);
		return rc;
	}
	*out = st.proofs;
	*count = st.count;
	return DM_OK;
}

/* ---- the tree of the entries ---- */

struct tree {
	uint8_t (*level[64])[MERKLE_HASH_LEN];
	uint64_t width[64];
	unsigned levels;
};

static void tree_free(struct tree *tree)
{
	for (unsigned l = 0; l < tree->levels; l++)
		dm_free(tree->level[l]);
	memset(tree, 0, sizeof *tree);
}

static int tree_build(struct tree *tree, const struct audit_entries *entries)
{
	memset(tree, 0, sizeof *tree);
	uint64_t width = entries->count;
	for (unsigned l = 0; width > 0 && l < 64; l++, width /= 2) {
		if (width > SIZE_MAX / MERKLE_HASH_LEN)
			return DM_ERR_NOMEM;
		tree->level[l] = dm_malloc((size_t)width * MERKLE_HASH_LEN);
		if (!tree->level[l])
			return DM_ERR_NOMEM;
		tree->width[l] = width;
		tree->levels = l + 1;
		for (uint64_t i = 0; i < width; i++) {
			int rc;
			if (l == 0) {
				const uint8_t *entry;
				size_t len;
				audit_entries_get(entries, i, &entry, &len);
				rc = merkle_leaf_hash(entry, len, tree->level[0][i]);
			} else {
				rc = merkle_node_hash(tree->level[l - 1][2 * i],
				                      tree->level[l - 1][2 * i + 1],
				                      tree->level[l][i]);
			}
			if (rc != DM_OK)
				return rc;
		}
	}
	return DM_OK;
}

static int tree_subtree(void *arg, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	const struct tree *tree = arg;
	if (level >= tree->levels || index >= tree->width[level])
		return DM_ERR_NOT_FOUND;
	memcpy(out, tree->level[level][index], MERKLE_HASH_LEN);
	return DM_OK;
}

/* MTH(D[start : start + count]), count >= 1, within the tree. */
static int tree_range(const struct tree *tree, uint64_t start, uint64_t count,
                      uint8_t out[MERKLE_HASH_LEN])
{
	if ((count & (count - 1)) == 0 && start % count == 0)
		return tree_subtree((void *)tree, merkle_floor_log2(count), start >> merkle_floor_log2(count),
		                    out);
	uint64_t k = merkle_split(count);
	uint8_t left[MERKLE_HASH_LEN], right[MERKLE_HASH_LEN];
	int rc = tree_range(tree, start, k, left);
	if (rc == DM_OK)
		rc = tree_range(tree, start + k, count - k, right);
	if (rc == DM_OK)
		rc = merkle_node_hash(left, right, out);
	return rc;
}

/* The ranges whose hashes make up the RFC 9162 PATH of leaf index in a tree
 * of size leaves, deepest first (the order of the proof). */
static size_t path_ranges(uint64_t index, uint64_t size, uint64_t start[MERKLE_MAX_PROOF],
                          uint64_t count[MERKLE_MAX_PROOF])
{
	uint64_t at = 0, n = size, m = index;
	size_t k = 0;
	while (n > 1 && k < MERKLE_MAX_PROOF) {
		uint64_t split = merkle_split(n);
		if (m < split) {
			start[k] = at + split, count[k] = n - split;
			n = split;
		} else {
			start[k] = at, count[k] = split;
			at += split, m -= split, n -= split;
		}
		k++;
	}
	for (size_t i = 0; i < k / 2; i++) {
		uint64_t s = start[i], c = count[i];
		start[i] = start[k - 1 - i], count[i] = count[k - 1 - i];
		start[k - 1 - i] = s, count[k - 1 - i] = c;
	}
	return k;
}

/* ---- facts ---- */

struct fact {
	uint64_t start, end;
	int good;
	size_t checkpoint; /* the signed checkpoint behind it */
	long proof;        /* the inclusion proof, or -1 for the checkpoint itself */
};

struct facts {
	struct fact *list;
	size_t count, cap;
	/* the good facts merged: sorted, disjoint, not adjacent */
	struct fact *good;
	size_t good_count;
};

static int add_fact(struct facts *facts, uint64_t start, uint64_t end, int good, size_t checkpoint,
                    long proof)
{
	if (facts->count == facts->cap) {
		size_t cap = facts->cap ? facts->cap * 2 : 16;
		struct fact *grown = dm_realloc(facts->list, cap * sizeof *grown);
		if (!grown)
			return DM_ERR_NOMEM;
		facts->list = grown;
		facts->cap = cap;
	}
	facts->list[facts->count++] = (struct fact){start, end, good, checkpoint, proof};
	return DM_OK;
}

static int by_start(const void *a, const void *b)
{
	const struct fact *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int merge_good(struct facts *facts)
{
	facts->good = dm_malloc((facts->count ? facts->count : 1) * sizeof *facts->good);
	if (!facts->good)
		return DM_ERR_NOMEM;
	size_t n = 0;
	for (size_t i = 0; i < facts->count; i++)
		if (facts->list[i].good)
			facts->good[n++] = facts->list[i];
	qsort(facts->good, n, sizeof *facts->good, by_start);
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		if (out > 0 && facts->good[i].start <= facts->good[out - 1].end) {
			if (facts->good[i].end > facts->good[out - 1].end)
				facts->good[out - 1].end = facts->good[i].end;
		} else {
			facts->good[out++] = facts->good[i];
		}
	}
	facts->good_count = out;
	return DM_OK;
}

/* The merged good range holding x, or NULL. */
static const struct fact *good_at(const struct facts *facts, uint64_t x)
{
	size_t lo = 0, hi = facts->good_count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (facts->good[mid].end <= x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < facts->good_count && facts->good[lo].start <= x ? &facts->good[lo] : NULL;
}

/* The lowest index no good fact covers. */
static uint64_t first_unproven(const struct facts *facts)
{
	const struct fact *g = good_at(facts, 0);
	return g ? g->end : 0;
}

/* The highest index of [start, end) no good fact covers: 1 and *out, or 0
 * when good facts cover all of it. */
static int last_unproven(const struct facts *facts, uint64_t start, uint64_t end, uint64_t *out)
{
	uint64_t x = end;
	while (x > start) {
		const struct fact *g = good_at(facts, x - 1);
		if (!g) {
			*out = x - 1;
			return 1;
		}
		x = g->start;
	}
	return 0;
}

/* A good fact in the input (not merged) covering x, for naming it. */
static const struct fact *good_fact_covering(const struct facts *facts, uint64_t x)
{
	for (size_t i = 0; i < facts->count; i++)
		if (facts->list[i].good && facts->list[i].start <= x && x < facts->list[i].end)
			return &facts->list[i];
	return NULL;
}

/* ---- the verification ---- */

struct run {
	const struct audit_verify_input *in;
	struct audit_checkpoint *cps;
	size_t *order; /* checkpoint indexes by size, ascending */
	struct tree tree;
	struct facts facts;
	size_t proofs_failed, proofs_unmatched;
};

static void describe_fact(const struct run *run, const struct fact *f, char *out, size_t len)
{
	const struct audit_verify_checkpoint *c = &run->in->checkpoints[f->checkpoint];
	const struct audit_checkpoint *cp = &run->cps[f->checkpoint];
	if (f->proof < 0) {
		dm_format_err(out, len, "%scheckpoint %s (size %" PRIu64 ")",
		        c->trusted ? "trusted " : "", c->label, cp->size);
	} else {
		const struct audit_inclusion_proof *p = &run->in->proofs[f->proof];
		dm_format_err(out, len,
		        "the inclusion proof of entry %" PRIu64 " in %s (size %" PRIu64
		        ", verified under checkpoint %s)",
		        p->index, run->in->proofs_label ? run->in->proofs_label : "the proofs",
		        p->size, c->label);
	}
}

static int open_checkpoints(struct run *run, struct audit_verify_result *out)
{
	const struct audit_verify_input *in = run->in;
	const char *origin = in->origin;
	for (size_t i = 0; i < in->checkpoint_count; i++) {
		const struct audit_verify_checkpoint *c = &in->checkpoints[i];
		char err[300];
		int rc = audit_checkpoint_open(c->text, c->len, in->key, NULL, &run->cps[i], err,
		                               sizeof err);
		if (rc == DM_OK && origin && strcmp(run->cps[i].origin, origin) != 0) {
			dm_format_err(err, sizeof err, "its origin is '%.100s', not '%.100s'",
			        run->cps[i].origin, origin);
			rc = DM_ERR_INVALID;
		}
		if (rc != DM_OK) {
			out->verdict = AUDIT_BAD_CHECKPOINT;
			dm_format_err(out->reason, sizeof out->reason, "checkpoint %s: %s", c->label,
			        err);
			return DM_ERR_CRYPTO;
		}
		if (!origin)
			origin = run->cps[i].origin;
		uint8_t empty[MERKLE_HASH_LEN];
		merkle_empty_root(empty);
		if (run->cps[i].size == 0 &&
		    memcmp(run->cps[i].root, empty, MERKLE_HASH_LEN) != 0) {
			out->verdict = AUDIT_BAD_CHECKPOINT;
			dm_format_err(out->reason, sizeof out->reason,
			        "checkpoint %s: size 0 with a root that is not the empty tree's",
			        c->label);
			return DM_ERR_CRYPTO;
		}
	}
	/* Insertion sort by size: a handful of checkpoints. */
	for (size_t i = 0; i < in->checkpoint_count; i++) {
		size_t j = i;
		while (j > 0 && run->cps[run->order[j - 1]].size > run->cps[i].size) {
			run->order[j] = run->order[j - 1];
			j--;
		}
		run->order[j] = i;
	}
	for (size_t i = 1; i < in->checkpoint_count; i++) {
		const struct audit_checkpoint *a = &run->cps[run->order[i - 1]];
		const struct audit_checkpoint *b = &run->cps[run->order[i]];
		if (a->size == b->size && memcmp(a->root, b->root, MERKLE_HASH_LEN) != 0) {
			out->verdict = AUDIT_FORK;
			out->first = 0;
			out->last = a->size ? a->size - 1 : 0;
			dm_format_err(out->reason, sizeof out->reason,
			        "checkpoints %s and %s both have size %" PRIu64
			        " but different roots: the site signed two different logs (a fork)",
			        in->checkpoints[run->order[i - 1]].label,
			        in->checkpoints[run->order[i]].label, a->size);
			return DM_ERR_CRYPTO;
		}
	}
	return DM_OK;
}

static int gather_facts(struct run *run)
{
	const struct audit_verify_input *in = run->in;
	uint64_t n = in->entries->count;
	struct merkle_source src = {tree_subtree, &run->tree};
	for (size_t i = 0; i < in->checkpoint_count; i++) {
		const struct audit_checkpoint *cp = &run->cps[i];
		if (cp->size > n)
			continue;
		uint8_t root[MERKLE_HASH_LEN];
		int rc = merkle_root(&src, cp->size, root);
		if (rc != DM_OK)
			return rc;
		/* An empty checkpoint proves nothing about any entry. */
		if (cp->size > 0)
			rc = add_fact(&run->facts, 0, cp->size,
			              memcmp(root, cp->root, MERKLE_HASH_LEN) == 0, i, -1);
		if (rc != DM_OK)
			return rc;
	}
	for (size_t p = 0; p < in->proof_count; p++) {
		const struct audit_inclusion_proof *proof = &in->proofs[p];
		size_t c = in->checkpoint_count;
		for (size_t i = 0; i < in->checkpoint_count && c == in->checkpoint_count; i++)
			if (run->cps[i].size == proof->size)
				c = i;
		if (c == in->checkpoint_count || proof->size > n || proof->index >= proof->size) {
			run->proofs_unmatched++;
			continue;
		}
		if (merkle_verify_inclusion(proof->index, proof->size,
		                            run->tree.level[0][proof->index],
		                            (const uint8_t(*)[MERKLE_HASH_LEN])proof->hashes,
		                            proof->count, run->cps[c].root) != DM_OK) {
			run->proofs_failed++;
			continue;
		}
		uint64_t start[MERKLE_MAX_PROOF], count[MERKLE_MAX_PROOF];
		size_t k = path_ranges(proof->index, proof->size, start, count);
		if (k != proof->count) { /* cannot be: the proof verified at this length */
			run->proofs_failed++;
			continue;
		}
		int rc = add_fact(&run->facts, proof->index, proof->index + 1, 1, c, (long)p);
		for (size_t h = 0; h < k && rc == DM_OK; h++) {
			uint8_t hash[MERKLE_HASH_LEN];
			rc = tree_range(&run->tree, start[h], count[h], hash);
			if (rc == DM_OK)
				rc = add_fact(&run->facts, start[h], start[h] + count[h],
				              memcmp(hash, proof->hashes[h], MERKLE_HASH_LEN) == 0,
				              c, (long)p);
		}
		if (rc != DM_OK)
			return rc;
	}
	return merge_good(&run->facts);
}

/* Two signed facts that contradict each other (invariant 2). */
static int find_fork(struct run *run, struct audit_verify_result *out)
{
	for (size_t i = 0; i < run->facts.count; i++) {
		const struct fact *bad = &run->facts.list[i];
		uint64_t x;
		if (bad->good || last_unproven(&run->facts, bad->start, bad->end, &x))
			continue;
		const struct fact *good = good_fact_covering(&run->facts, bad->end - 1);
		char a[256], b[256] = "other checkpoints";
		describe_fact(run, bad, a, sizeof a);
		if (good)
			describe_fact(run, good, b, sizeof b);
		out->verdict = AUDIT_FORK;
		out->first = bad->start;
		out->last = bad->end - 1;
		dm_format_err(out->reason, sizeof out->reason,
		        "%s and %s disagree about entries %" PRIu64 " to %" PRIu64
		        ": the site signed two different logs (a fork, or history rewritten "
		        "after the first was handed out)",
		        a, b, bad->start, bad->end - 1);
		dm_format_err(out->note, sizeof out->note, "note: the entries given fit %s",
		        good ? b : "the other checkpoints");
		return DM_ERR_CRYPTO;
	}
	return DM_OK;
}

/* What is wrong with the entry at position i, structurally: DM_OK when it
 * is an audit entry whose "index" is i; else a reason and its verdict. */
static int check_structure(const struct audit_entries *entries, uint64_t i, char *reason,
                           size_t len, enum audit_verdict *verdict)
{
	const uint8_t *entry;
	size_t entry_len;
	audit_entries_get(entries, i, &entry, &entry_len);
	uint64_t index;
	char why[200];
	*verdict = AUDIT_BAD_ENTRY;
	if (audit_entry_index(entry, entry_len, &index, why, sizeof why) != DM_OK) {
		dm_format_err(reason, len, "entry %" PRIu64 ": not an audit entry: %s", i, why);
		return DM_ERR_MALFORMED;
	}
	if (index == i)
		return DM_OK;
	/* The entries before i are in place (the scan stops at the first
	 * misfit), so the neighbours tell a deletion, a swap, a repeat and a
	 * changed index apart. */
	uint64_t next = UINT64_MAX;
	if (i + 1 < entries->count) {
		const uint8_t *e2;
		size_t e2_len;
		audit_entries_get(entries, i + 1, &e2, &e2_len);
		if (audit_entry_index(e2, e2_len, &next, NULL, 0) != DM_OK)
			next = UINT64_MAX;
	}
	if (index == i + 1 && next == i) {
		dm_format_err(reason, len,
		        "entry %" PRIu64 ": entries %" PRIu64 " and %" PRIu64
		        " are swapped (this place holds the entry of index %" PRIu64 ")",
		        i, i, i + 1, i + 1);
	} else if (index > i && (i + 1 == entries->count || next == index + 1)) {
		*verdict = AUDIT_MISSING_ENTRY;
		dm_format_err(reason, len,
		        "entry %" PRIu64 ": missing: the entry at this place has index %" PRIu64
		        ", so %" PRIu64 " entr%s from %" PRIu64 " on %s gone",
		        i, index, index - i, index - i == 1 ? "y" : "ies", i,
		        index - i == 1 ? "is" : "are");
	} else if (i > 0 && index == i - 1) {
		dm_format_err(reason, len,
		        "entry %" PRIu64 ": has index %" PRIu64
		        " like the entry before it: an entry was repeated or inserted",
		        i, index);
	} else {
		dm_format_err(reason, len,
		        "entry %" PRIu64 ": says index %" PRIu64
		        ", not its place: the entry was changed or moved",
		        i, index);
	}
	return DM_ERR_INVALID;
}

/* ---- the chain ---- */

/* How entry i's "prev" fits entry i - 1 (audit/entry.h). */
enum link_state {
	LINK_OK,        /* the leaf hash of entry i - 1; or absent in entry 0 */
	LINK_NONE,      /* absent in an entry after the first */
	LINK_MALFORMED, /* not the base64 of a hash, or the entry is no object */
	LINK_EXTRA,     /* present in entry 0 */
	LINK_WRONG,     /* a hash, not entry i - 1's */
};

static enum link_state check_link(const struct run *run, uint64_t i)
{
	const uint8_t *entry;
	size_t len;
	audit_entries_get(run->in->entries, i, &entry, &len);
	json_t *root = json_loadb((const char *)entry, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *prev = json_is_object(root) ? json_object_get(root, "prev") : NULL;
	enum link_state state;
	uint8_t hash[MERKLE_HASH_LEN];
	size_t got = 0;
	if (!json_is_object(root))
		state = LINK_MALFORMED;
	else if (!prev)
		state = i == 0 ? LINK_OK : LINK_NONE;
	else if (i == 0)
		state = LINK_EXTRA;
	else if (!json_is_string(prev) ||
	         audit_base64_decode(json_string_value(prev), json_string_length(prev), hash,
	                             sizeof hash, &got) != DM_OK ||
	         got != MERKLE_HASH_LEN)
		state = LINK_MALFORMED;
	else
		state = memcmp(hash, run->tree.level[0][i - 1], MERKLE_HASH_LEN) == 0 ? LINK_OK
		                                                                      : LINK_WRONG;
	json_decref(root);
	return state;
}

/* The first broken link of the chain and the entry it blames (verify.h). */
struct chain_break {
	uint64_t link;    /* entry link's "prev" does not fit; UINT64_MAX: none */
	uint64_t at;      /* the entry blamed */
	uint64_t last;    /* at, or link when it may be link's "prev" that changed */
	int signed_as_is; /* good facts cover every entry it could blame */
	char reason[400];
};

static void find_chain_break(const struct run *run, struct chain_break *out)
{
	uint64_t n = run->in->entries->count;
	memset(out, 0, sizeof *out);
	out->link = UINT64_MAX;
	uint64_t j = 0;
	enum link_state state = LINK_OK;
	while (j < n && (state = check_link(run, j)) == LINK_OK)
		j++;
	if (j == n)
		return;
	out->link = j;
	/* Entry j is itself at fault when its own "prev" is wrong in form, or
	 * when the next link breaks too (a change inside its "prev" breaks
	 * both); otherwise entry j - 1 no longer hashes to what j names. The
	 * last entry with a well-formed wrong "prev" could be either. */
	int next_broken = j + 1 < n && check_link(run, j + 1) != LINK_OK;
	int own = state != LINK_WRONG || next_broken;
	uint64_t at = own ? j : j - 1, other = own ? (j > 0 ? j - 1 : j) : j;
	int ambiguous = state == LINK_WRONG && !next_broken && j + 1 == n;
	/* A good fact proves its entries as signed: blame the other one. */
	int at_good = good_at(&run->facts, at) != NULL;
	int other_good = good_at(&run->facts, other) != NULL;
	if (at_good && !other_good && state == LINK_WRONG) {
		at = other;
		ambiguous = 0;
	} else if (ambiguous && other_good) {
		ambiguous = 0;
	}
	out->signed_as_is = at_good && (other_good || state != LINK_WRONG);
	out->at = at;
	out->last = ambiguous ? j : at;
	switch (state) {
	case LINK_NONE:
		dm_format_err(out->reason, sizeof out->reason,
		        "entry %" PRIu64 ": has no \"prev\": every entry after the first names the "
		        "hash of the one before it",
		        j);
		break;
	case LINK_MALFORMED:
		dm_format_err(out->reason, sizeof out->reason,
		        "entry %" PRIu64 ": its \"prev\" is not the base64 of a %d-byte hash", j,
		        MERKLE_HASH_LEN);
		break;
	case LINK_EXTRA:
		dm_format_err(out->reason, sizeof out->reason,
		        "entry 0: has a \"prev\", but the first entry has none");
		break;
	default:
		if (at == j && next_broken)
			dm_format_err(out->reason, sizeof out->reason,
			        "entry %" PRIu64
			        ": changed: its \"prev\" is not the hash of entry %" PRIu64
			        ", and entry %" PRIu64 "'s \"prev\" is not its hash",
			        j, j - 1, j + 1);
		else if (at == j)
			dm_format_err(out->reason, sizeof out->reason,
			        "entry %" PRIu64
			        ": changed: its \"prev\" is not the hash of entry %" PRIu64
			        ", which is signed as it is",
			        j, j - 1);
		else
			dm_format_err(out->reason, sizeof out->reason,
			        "entry %" PRIu64
			        ": changed: its hash is not the \"prev\" of entry %" PRIu64 "%s",
			        j - 1, j,
			        ambiguous
			            ? " (or that \"prev\" was changed: no entry after it tells)"
			            : "");
		break;
	}
}

/* The largest checkpoint, which the entries must reach. */
static size_t largest(const struct run *run)
{
	return run->order[run->in->checkpoint_count - 1];
}

static void missing_reason(const struct run *run, char *out, size_t len)
{
	const struct audit_verify_input *in = run->in;
	uint64_t n = in->entries->count;
	size_t big = largest(run);
	const struct audit_checkpoint *cp = &run->cps[big];
	const struct audit_verify_checkpoint *c = &in->checkpoints[big];
	/* A smaller checkpoint signed later: the site's log shrank. */
	size_t later = in->checkpoint_count;
	for (size_t i = 0; i < in->checkpoint_count; i++)
		if (run->cps[i].size < cp->size && run->cps[i].time_ms > cp->time_ms &&
		    (later == in->checkpoint_count || run->cps[i].size > run->cps[later].size))
			later = i;
	char why[256];
	if (later < in->checkpoint_count)
		dm_format_err(why, sizeof why,
		        "; checkpoint %s (size %" PRIu64
		        ") was signed after it: the log was rolled back",
		        in->checkpoints[later].label, run->cps[later].size);
	else if (c->trusted)
		dm_format_err(why, sizeof why,
		        ": the log was truncated or rolled back after that checkpoint was "
		        "handed out");
	else
		dm_format_err(why, sizeof why, ": the log was truncated");
	dm_format_err(out, len,
	        "entry %" PRIu64 ": missing: %scheckpoint %s (size %" PRIu64 ") commits to %" PRIu64
	        " entries, the log given ends at %" PRIu64 "%s",
	        n, c->trusted ? "trusted " : "", c->label, cp->size, cp->size, n, why);
}

static int judge(struct run *run, struct audit_verify_result *out)
{
	const struct audit_verify_input *in = run->in;
	const struct audit_entries *entries = in->entries;
	uint64_t n = entries->count;
	const struct facts *facts = &run->facts;

	/* The earliest bad fact, by the highest unproven index in it; of equals
	 * the narrowest, the most direct evidence to name. */
	const struct fact *bad = NULL;
	uint64_t bad_last = UINT64_MAX;
	for (size_t i = 0; i < facts->count; i++) {
		const struct fact *f = &facts->list[i];
		uint64_t x;
		if (f->good || !last_unproven(facts, f->start, f->end, &x))
			continue;
		if (x < bad_last || (x == bad_last && f->end - f->start < bad->end - bad->start))
			bad = f, bad_last = x;
	}
	/* Structure: the first misfit no good fact covers (one at bad_last is
	 * preferred to the fact, it says more), and the first one a good fact
	 * covers, which the site itself signed. */
	uint64_t shape = UINT64_MAX, signed_shape = UINT64_MAX;
	char shape_reason[400] = "", signed_reason[400] = "";
	const char *signed_what = "a malformed entry";
	enum audit_verdict shape_verdict = AUDIT_BAD_ENTRY;
	for (uint64_t i = 0; i < n; i++) {
		int covered = good_at(facts, i) != NULL;
		if (covered && signed_shape != UINT64_MAX)
			continue;
		char reason[400];
		enum audit_verdict verdict;
		if (check_structure(entries, i, reason, sizeof reason, &verdict) == DM_OK)
			continue;
		if (covered) {
			signed_shape = i;
			memcpy(signed_reason, reason, sizeof reason);
		} else {
			shape = i;
			shape_verdict = verdict;
			memcpy(shape_reason, reason, sizeof reason);
			break;
		}
	}
	/* The chain: its first broken link, unless a misfit of structure at or
	 * before it explains it (an entry deleted, inserted or moved breaks the
	 * link into its place too). */
	struct chain_break chain;
	find_chain_break(run, &chain);
	int by_chain = chain.link != UINT64_MAX && (shape == UINT64_MAX || chain.link < shape);
	if (by_chain && chain.signed_as_is) {
		by_chain = 0;
		if (chain.at < signed_shape) {
			signed_shape = chain.at;
			memcpy(signed_reason, chain.reason, sizeof signed_reason);
			signed_what = "an entry that does not fit the chain";
		}
	}
	int missing = run->cps[largest(run)].size > n;

	uint64_t first = first_unproven(facts);
	uint64_t last = UINT64_MAX;
	enum { NONE, BY_FACT, BY_CHAIN, BY_SHAPE, BY_MISSING } kind = NONE;
	if (bad)
		last = bad_last, kind = BY_FACT;
	/* The chain names an entry no later than the facts do; where both name
	 * the same one exactly, the signed facts say it. */
	if (by_chain && (chain.at < last || (chain.at == last && first < last)))
		last = chain.last < last ? chain.last : last, kind = BY_CHAIN;
	if (shape != UINT64_MAX && shape <= last && kind != BY_CHAIN)
		last = shape, kind = BY_SHAPE;
	if (missing && n < last)
		last = n, kind = BY_MISSING;

	if (signed_shape != UINT64_MAX && (kind == NONE || signed_shape < first)) {
		const struct fact *g = good_fact_covering(facts, signed_shape);
		char src[256] = "a checkpoint";
		if (g)
			describe_fact(run, g, src, sizeof src);
		out->verdict = AUDIT_BAD_ENTRY;
		out->index = out->first = out->last = signed_shape;
		dm_format_err(out->reason, sizeof out->reason, "%s", signed_reason);
		dm_format_err(out->note, sizeof out->note,
		        "note: %s signed this entry as it is: the site logged %s", src,
		        signed_what);
		return DM_ERR_CRYPTO;
	}
	if (kind == NONE)
		return DM_OK;

	out->first = first;
	out->last = last;
	if (kind == BY_CHAIN) {
		out->verdict = AUDIT_BAD_ENTRY;
		out->index = chain.at;
		dm_format_err(out->reason, sizeof out->reason, "%s", chain.reason);
		if (first < chain.at) {
			char span[64];
			if (first + 1 == chain.at)
				dm_format_err(span, sizeof span, "entry %" PRIu64 " is", first);
			else
				dm_format_err(span, sizeof span, "entries %" PRIu64 " to %" PRIu64 " are",
				        first, chain.at - 1);
			dm_format_err(
			    out->note, sizeof out->note,
			    "note: the chain names this entry; %s not proven by any checkpoint "
			    "or proof, so a rewrite of several entries, links and all, starting "
			    "there cannot be ruled out",
			    span);
		}
		return DM_ERR_CRYPTO;
	}
	int chain_holds = chain.link == UINT64_MAX || chain.link > bad_last;
	if (kind == BY_FACT && chain_holds && first < last) {
		/* No link breaks up to bad_last: a change of any earlier entry
		 * alone would break one, so entry bad_last is changed, and so is
		 * every entry from the first changed one to it. */
		char src[256];
		describe_fact(run, bad, src, sizeof src);
		out->verdict = AUDIT_BAD_ENTRY;
		out->index = last;
		dm_format_err(out->reason, sizeof out->reason,
		        "entry %" PRIu64 ": changed: its hash is not the one %s commits to, and no "
		        "link of the chain breaks before it",
		        last, src);
		dm_format_err(
		    out->note, sizeof out->note,
		    "note: if more than this entry was changed, entries from one of %" PRIu64
		    " to %" PRIu64 " on were rewritten, links and all; checkpoints of sizes in "
		    "between, or inclusion proofs (GET /v1/audit/proof/inclusion?index=I&size=N) "
		    "for them with --proofs, tell where",
		    first, last);
		return DM_ERR_CRYPTO;
	}
	if (kind == BY_FACT) {
		char src[256];
		describe_fact(run, bad, src, sizeof src);
		out->verdict = AUDIT_BAD_ENTRY;
		out->index = first;
		if (first == last) {
			dm_format_err(out->reason, sizeof out->reason,
			        "entry %" PRIu64 ": changed: its hash is not the one %s commits to",
			        first, src);
		} else {
			dm_format_err(out->reason, sizeof out->reason,
			        "entries %" PRIu64 " to %" PRIu64
			        ": the first changed entry is one of these (%s does not match "
			        "them; nothing signed narrows it further)",
			        first, last, src);
			dm_format_err(out->note, sizeof out->note,
			        "note: to name it, give checkpoints of sizes in between, or "
			        "inclusion proofs (GET /v1/audit/proof/inclusion?index=I&size=N) "
			        "for entries %" PRIu64 " to %" PRIu64 " with --proofs",
			        first, last);
		}
		return DM_ERR_CRYPTO;
	}
	out->index = last;
	if (kind == BY_SHAPE) {
		out->verdict = shape_verdict;
		dm_format_err(out->reason, sizeof out->reason, "%s", shape_reason);
	} else {
		out->verdict = AUDIT_MISSING_ENTRY;
		missing_reason(run, out->reason, sizeof out->reason);
	}
	if (first < last)
		dm_format_err(out->note, sizeof out->note,
		        "note: entries %" PRIu64 " to %" PRIu64
		        " are not proven by any checkpoint or proof either, so an earlier change "
		        "among them cannot be ruled out",
		        first, last - 1);
	return DM_ERR_CRYPTO;
}

int audit_verify_log(const struct audit_verify_input *in, struct audit_verify_result *out)
{
	memset(out, 0, sizeof *out);
	if (!in->key || !in->entries || !in->checkpoints || in->checkpoint_count == 0 ||
	    (in->proof_count && !in->proofs))
		return DM_ERR_INVALID;
	struct run run = {.in = in};
	run.cps = dm_calloc(in->checkpoint_count, sizeof *run.cps);
	run.order = dm_calloc(in->checkpoint_count, sizeof *run.order);
	int rc = run.cps && run.order ? DM_OK : DM_ERR_NOMEM;
	if (rc == DM_OK)
		rc = open_checkpoints(&run, out);
	if (rc == DM_OK)
		rc = tree_build(&run.tree, in->entries);
	if (rc == DM_OK)
		rc = gather_facts(&run);
	if (rc == DM_OK)
		rc = find_fork(&run, out);
	if (rc == DM_OK)
		rc = judge(&run, out);
	if (rc == DM_OK || rc == DM_ERR_CRYPTO) {
		out->proofs_used = in->proof_count - run.proofs_failed - run.proofs_unmatched;
		out->proven = first_unproven(&run.facts);
	}
	if (rc == DM_OK) {
		size_t big = largest(&run);
		out->verdict = AUDIT_VERIFIED;
		out->latest = run.cps[big];
		out->latest_label = in->checkpoints[big].label;
		/* Without a checkpoint of size > 0 nothing is proven, only shaped. */
		out->proven = run.cps[big].size;
		if (in->entries->count > run.cps[big].size)
			dm_format_err(out->note, sizeof out->note,
			        "note: entries %" PRIu64 " to %" PRIu64
			        " are newer than every checkpoint: checked for form only",
			        run.cps[big].size, in->entries->count - 1);
		else if (run.proofs_failed || run.proofs_unmatched)
			dm_format_err(out->note, sizeof out->note,
			        "note: %zu inclusion proof(s) did not verify and %zu match no "
			        "checkpoint: not used",
			        run.proofs_failed, run.proofs_unmatched);
	}
	if (rc != DM_OK && rc != DM_ERR_CRYPTO)
		memset(out, 0, sizeof *out);
	tree_free(&run.tree);
	dm_free(run.facts.list);
	dm_free(run.facts.good);
	dm_free(run.cps);
	dm_free(run.order);
	return rc;
}

/* ---- one inclusion proof ---- */

int audit_verify_inclusion(const struct audit_verifier *key, const char *origin,
                           const char *checkpoint, size_t checkpoint_len,
                           const struct audit_inclusion_proof *proof, const void *entry,
                           size_t entry_len, struct audit_checkpoint *cp, char *reason,
                           size_t reason_len)
{
	struct audit_checkpoint local;
	if (!cp)
		cp = &local;
	dm_format_err(reason, reason_len, "%s", "");
	char err[300];
	int rc =
	    audit_checkpoint_open(checkpoint, checkpoint_len, key, origin, cp, err, sizeof err);
	if (rc != DM_OK) {
		dm_format_err(reason, reason_len, "checkpoint: %s", err);
		return rc;
	}
	if (cp->size != proof->size) {
		dm_format_err(reason, reason_len,
		        "the proof is for a tree of size %" PRIu64
		        ", the checkpoint has size %" PRIu64 ": fetch the proof for size=%" PRIu64,
		        proof->size, cp->size, cp->size);
		return DM_ERR_INVALID;
	}
	uint64_t index;
	if (audit_entry_index(entry, entry_len, &index, err, sizeof err) != DM_OK) {
		dm_format_err(reason, reason_len, "entry %" PRIu64 ": not an audit entry: %s",
		        proof->index, err);
		return DM_ERR_CRYPTO;
	}
	if (index != proof->index) {
		dm_format_err(reason, reason_len,
		        "entry %" PRIu64 ": the entry given says index %" PRIu64
		        ", the proof is for index %" PRIu64,
		        proof->index, index, proof->index);
		return DM_ERR_CRYPTO;
	}
	uint8_t leaf[MERKLE_HASH_LEN];
	rc = merkle_leaf_hash(entry, entry_len, leaf);
	if (rc != DM_OK)
		return rc;
	rc = merkle_verify_inclusion(proof->index, proof->size, leaf,
	                             (const uint8_t(*)[MERKLE_HASH_LEN])proof->hashes, proof->count,
	                             cp->root);
	if (rc == DM_ERR_INVALID) {
		dm_format_err(reason, reason_len,
		        "entry %" PRIu64 ": a proof for index %" PRIu64 " in size %" PRIu64
		        " cannot have %zu hashes",
		        proof->index, proof->index, proof->size, proof->count);
		return DM_ERR_INVALID;
	}
	if (rc != DM_OK) {
		dm_format_err(reason, reason_len,
		        "entry %" PRIu64 ": not in the log the checkpoint signed (the proof does "
		        "not lead from this entry to the checkpoint's root)",
		        proof->index);
		return DM_ERR_CRYPTO;
	}
	return DM_OK;
}
