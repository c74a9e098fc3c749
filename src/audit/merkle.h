/*
 * merkle.h — the hashing of the audit log's Merkle tree, as RFC 9162
 * (Certificate Transparency 2.0, section 2.1) defines it, and its proofs.
 *
 *   leaf hash  = SHA-256(0x00 || entry bytes)
 *   node hash  = SHA-256(0x01 || left || right)
 *   MTH({})    = SHA-256() (the empty tree)
 *   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])) with k the largest power of
 *                two below n
 *
 * Proofs are those of RFC 9162 2.1.3 (inclusion: the audit path of a leaf)
 * and 2.1.4 (consistency between two tree sizes), so any independent
 * verifier checks them. Generation reads hashes through a struct
 * merkle_source, which answers the hash of any perfect subtree (2^level
 * leaves starting at index * 2^level) that lies wholly within the tree: the
 * on-disk store keeps exactly those, so a proof costs O(log n) reads.
 *
 * Nothing here allocates (OpenSSL's digest context aside); hashes are
 * MERKLE_HASH_LEN-byte arrays the caller owns. Every function but
 * merkle_empty_root and merkle_memory_source returns DM_OK or a negative
 * DM_ERR_*. Thread-safe: no state but OpenSSL's SHA-256, fetched once.
 */
#ifndef DM_MERKLE_H
#define DM_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN 32
/* The longest proof for any tree size below 2^63. */
#define MERKLE_MAX_PROOF 64

/* The hashes of RFC 9162 2.1.1. SHA-256 runs through OpenSSL's EVP, which
 * allocates a context internally: DM_OK, or DM_ERR_CRYPTO when OpenSSL
 * fails (out of memory), with out zeroed. */
int merkle_leaf_hash(const void *entry, size_t len, uint8_t out[MERKLE_HASH_LEN]);
int merkle_node_hash(const uint8_t left[MERKLE_HASH_LEN], const uint8_t right[MERKLE_HASH_LEN],
                     uint8_t out[MERKLE_HASH_LEN]);
/* SHA-256 of nothing (a constant; cannot fail). */
void merkle_empty_root(uint8_t out[MERKLE_HASH_LEN]);

/* The shape of the tree: floor(log2 n) for n > 0, and k of RFC 9162, the
 * largest power of two smaller than n (n >= 2), where a tree of n leaves
 * splits into its left and right subtrees. */
unsigned merkle_floor_log2(uint64_t n);
uint64_t merkle_split(uint64_t n);

/* Where proofs and roots read hashes from: the hash of the perfect subtree
 * of 2^level leaves starting at leaf index << level. Returns DM_OK, or an
 * error that the caller passes on (DM_ERR_IO, DM_ERR_NOT_FOUND). */
struct merkle_source {
	int (*subtree)(void *arg, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN]);
	void *arg;
};

/* MTH of the first size leaves (size 0: the empty root). */
int merkle_root(const struct merkle_source *src, uint64_t size, uint8_t out[MERKLE_HASH_LEN]);

/* The inclusion proof of leaf index in the tree of size leaves (index <
 * size): *count hashes into proof (at most MERKLE_MAX_PROOF), deepest first.
 * DM_ERR_INVALID when index >= size; a source error is passed on. On any
 * error *count is 0 and proof[] holds nothing of use. */
int merkle_inclusion_proof(const struct merkle_source *src, uint64_t index, uint64_t size,
                           uint8_t proof[][MERKLE_HASH_LEN], size_t *count);

/* The consistency proof between tree sizes old_size and size (0 < old_size
 * <= size <= 2^63); empty when they are equal. DM_ERR_INVALID for any other
 * sizes; errors as for merkle_inclusion_proof. */
int merkle_consistency_proof(const struct merkle_source *src, uint64_t old_size, uint64_t size,
                             uint8_t proof[][MERKLE_HASH_LEN], size_t *count);

/* Checks an inclusion proof against root: DM_OK, or DM_ERR_CRYPTO when it
 * does not hold, DM_ERR_INVALID for impossible arguments (index >= size, a
 * proof of the wrong length, a NULL hash). The expected length is computed
 * first, so proof[] is never read past count. Needs no source: this is the
 * verifier's side. */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_LEN],
                            const uint8_t proof[][MERKLE_HASH_LEN], size_t count,
                            const uint8_t root[MERKLE_HASH_LEN]);

/* Checks a consistency proof between (old_size, old_root) and (size, root):
 * DM_OK, DM_ERR_CRYPTO, DM_ERR_INVALID as above (also old_size == 0, old_size
 * > size, size > 2^63 when the sizes differ). Equal sizes need an empty proof
 * and equal roots. */
int merkle_verify_consistency(uint64_t old_size, uint64_t size,
                              const uint8_t old_root[MERKLE_HASH_LEN],
                              const uint8_t root[MERKLE_HASH_LEN],
                              const uint8_t proof[][MERKLE_HASH_LEN], size_t count);

/* A source over leaf hashes held in memory (leaves[0..count)), for the
 * offline verifier and tests: subtree hashes are computed on demand (O(2^level)
 * each). The source borrows mem, which must outlive it; mem borrows leaves. */
struct merkle_memory {
	const uint8_t (*leaves)[MERKLE_HASH_LEN];
	uint64_t count;
};
void merkle_memory_source(struct merkle_memory *mem, struct merkle_source *out);

#endif
