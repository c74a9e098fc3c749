/*
 * verify.h — the offline verifier of a site's audit log: what an auditor
 * runs on exported entries, the site's verifier key and signed checkpoints,
 * without the node (`domicile audit verify`, audit/command.c).
 *
 * Inputs, as the node's API hands them out (docs of issue 6):
 *   entries      {"entries": ["<base64 of the exact leaf bytes>", …]} from
 *                GET /v1/audit/entries; several exports (in several files,
 *                or one after another in one file) are read in order as one
 *                log starting at index 0. Each entry is the canonical JSON of
 *                audit/entry.h, an object whose "index" is its position.
 *   checkpoints  signed checkpoints (audit/checkpoint.h): the latest, any
 *                older ones the auditor kept, marked trusted or not.
 *   proofs       optional inclusion proofs {"index": I, "size": N,
 *                "hashes": ["<base64>", …]} (GET /v1/audit/proof/inclusion),
 *                for a size N of one of the checkpoints.
 *
 * What it proves. A checkpoint of size N whose root equals the root of the
 * first N entries proves those entries are exactly what the site signed
 * (SHA-256 collision resistance); one whose root differs proves at least
 * one of them is not. An inclusion proof that verifies against a signed
 * root proves its leaf, and proves the hash of every sibling subtree on its
 * path: each sibling range of entries is then proven to fit or not to fit.
 * From these facts the verifier bounds the FIRST entry that does not fit:
 * at least the first index no fact proves good, at most the last unproven
 * index of the earliest failing fact. Structure adds exact answers: an
 * entry whose "index" is not its position names the place where entries
 * were deleted, inserted or swapped, and a log shorter than a checkpoint
 * names its first missing entry.
 *
 * The chain names a change inside an entry that keeps it well-formed with
 * the right index. Every entry i > 0 carries "prev", the leaf hash of entry
 * i - 1 (audit/entry.h); link i holds when it matches. One changed entry e
 * breaks link e + 1 (its hash changed), and link e as well when the change
 * is inside its own "prev". So with j the first broken link, the entry
 * named is j when link j + 1 is broken too or j's "prev" is missing or
 * malformed (and entry 0 when it has a "prev"), else j - 1. When no link
 * breaks up to the last entry a failing fact leaves unproven, that entry is
 * the one named: a change of any earlier entry alone would break a link.
 * A misfit of structure at or before j explains a broken link into its
 * place and is reported instead. What the chain cannot tell:
 *   - the last entry's "prev" changed to another well-formed hash looks
 *     like the entry before it changed: entry n - 2 is named, and last is
 *     n - 1;
 *   - a writer who changes entry e and rewrites every later "prev" to match
 *     (all of them signed by no checkpoint the auditor holds) breaks no
 *     link: only a checkpoint's root catches that. The entry named is then
 *     the last unproven one of the failing checkpoint, which such a rewrite
 *     changed too, and first..last stays the range where it can have begun.
 * So index names the entry that does not fit, exactly when one entry was
 * changed, and first..last bound it (all three equal when signed facts
 * bracket it). Against a writer who changed several entries, first stays
 * a lower bound of the first changed one, and an entry at most one place
 * after last did change; the note says when such a rewrite is not ruled
 * out.
 *
 * Ownership: struct audit_entries owns its memory (audit_entries_free);
 * proofs from audit_inclusion_proofs_parse are freed by the caller with
 * dm_free; results are plain values; labels are borrowed from the caller
 * for the duration of the call. Functions return DM_OK or a negative
 * DM_ERR_*; the verification itself returns DM_ERR_CRYPTO when the log
 * does not verify, with the reason in the result.
 */
#ifndef DM_AUDIT_VERIFY_H
#define DM_AUDIT_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "audit/checkpoint.h"
#include "audit/merkle.h"
#include "audit/store.h"
#include "util/buf.h"

/* The longest single entry accepted from an export is the longest the
 * store takes (AUDIT_ENTRY_MAX, audit/store.h). */

/* ---- entries ---- */

/* The leaves of a log, in order. A zeroed struct is an empty list. */
struct audit_entries {
	struct dm_buf bytes; /* every entry's bytes, back to back */
	size_t *ends;        /* ends[i]: the offset in bytes after entry i */
	uint64_t count;
	uint64_t cap;
};

/* Appends one entry (a copy of entry[0..len)). DM_ERR_NOMEM, DM_ERR_TOO_LARGE
 * (over AUDIT_ENTRY_MAX); entries unchanged on failure. */
int audit_entries_add(struct audit_entries *entries, const void *entry, size_t len);

/* Appends the entries of every export object in text[0..len) (one JSON
 * object {"entries": [...]}, or several one after another). Other members
 * of the object are ignored. DM_ERR_MALFORMED (with "NAME: what" in err),
 * DM_ERR_TOO_LARGE, DM_ERR_NOMEM; entries unchanged on failure. */
int audit_entries_add_export(struct audit_entries *entries, const char *text, size_t len,
                             const char *name, char *err, size_t err_len);

/* Entry index: borrowed, valid until the next add or free. index < count. */
void audit_entries_get(const struct audit_entries *entries, uint64_t index, const uint8_t **entry,
                       size_t *len);

void audit_entries_free(struct audit_entries *entries); /* accepts an empty list */

/* ---- inclusion proofs ---- */

struct audit_inclusion_proof {
	uint64_t index, size;
	size_t count;
	uint8_t hashes[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
};

/* Parses the proofs in text[0..len): one object, several one after
 * another, or a JSON array of them. *out (caller frees with dm_free) and
 * *count; DM_ERR_MALFORMED ("NAME: what" in err), DM_ERR_TOO_LARGE (more
 * than MERKLE_MAX_PROOF hashes), DM_ERR_NOMEM. */
int audit_inclusion_proofs_parse(const char *text, size_t len, const char *name,
                                 struct audit_inclusion_proof **out, size_t *count, char *err,
                                 size_t err_len);

/* The "index" member of an audit entry: DM_OK, or DM_ERR_MALFORMED when
 * entry is not a JSON object with a non-negative integer "index" (why in
 * err, if err_len > 0). */
int audit_entry_index(const void *entry, size_t len, uint64_t *index, char *err, size_t err_len);

/* ---- checking ---- */

struct audit_verify_checkpoint {
	const char *label; /* names it in the report, e.g. its file name */
	const char *text;  /* the signed note */
	size_t len;
	int trusted; /* the auditor's own copy of an earlier checkpoint */
};

struct audit_verify_input {
	const struct audit_verifier *key;
	const char *origin; /* expected origin; NULL: the first checkpoint's */
	const struct audit_entries *entries;
	const struct audit_verify_checkpoint *checkpoints; /* at least one */
	size_t checkpoint_count;
	const struct audit_inclusion_proof *proofs; /* may be NULL */
	size_t proof_count;
	const char *proofs_label; /* names the proofs in the report */
};

enum audit_verdict {
	AUDIT_VERIFIED = 0,
	AUDIT_BAD_CHECKPOINT, /* a checkpoint does not verify or does not belong */
	AUDIT_FORK,           /* two signed facts contradict: the site signed two trees */
	AUDIT_BAD_ENTRY,      /* an entry is changed, misplaced or malformed */
	AUDIT_MISSING_ENTRY,  /* the log ends before what a checkpoint commits to */
};

struct audit_verify_result {
	enum audit_verdict verdict;
	/* Entry verdicts: the reason names entry `index`, which does not fit;
	 * the first changed entry is one of first..last (all three equal: signed
	 * facts name it exactly; otherwise index is exact for one changed entry
	 * and first allows for a rewrite of several, links and all). */
	uint64_t index, first, last;
	char reason[512]; /* one line: "entry 5: …", "entries 4 to 7: …", "checkpoint X: …" */
	char note[512];   /* a second line, or "" */
	struct audit_checkpoint latest; /* the largest checkpoint, once all verified */
	const char *latest_label;
	uint64_t proven; /* entries [0, proven) are proven by a matching checkpoint */
	size_t proofs_used;
};

/* Verifies the log. DM_OK: every checkpoint verifies and belongs to the
 * entries, every entry is well-formed at its place, the entries cover every
 * checkpoint. DM_ERR_CRYPTO: it does not verify; out->verdict and
 * out->reason say what. DM_ERR_INVALID (no checkpoints), DM_ERR_NOMEM. */
int audit_verify_log(const struct audit_verify_input *in, struct audit_verify_result *out);

/* Verifies that entry is the leaf proof->index of the tree that checkpoint
 * (signed by key, of size proof->size) commits to, and that the entry's own
 * "index" says so. DM_OK; DM_ERR_CRYPTO (does not verify), DM_ERR_MALFORMED
 * or DM_ERR_INVALID (a checkpoint or proof that cannot be checked), with
 * the reason in reason. *cp (may be NULL) gets the checkpoint. */
int audit_verify_inclusion(const struct audit_verifier *key, const char *origin,
                           const char *checkpoint, size_t checkpoint_len,
                           const struct audit_inclusion_proof *proof, const void *entry,
                           size_t entry_len, struct audit_checkpoint *cp, char *reason,
                           size_t reason_len);

#endif
