/*
 * merkle.c — RFC 9162 section 2.1: tree hashes, proofs and their checks.
 *
 * THE TREE
 *
 * For n leaves, MTH(D[n]) splits at k, the largest power of two below n:
 * the left part is a perfect subtree of k leaves, the right part the tree of
 * the remaining n - k. Unrolled, the tree of n leaves is the perfect
 * subtrees given by the binary digits of n, highest first, hashed together
 * from the right:
 *
 *	n = 13 = 8 + 4 + 1:  MTH = node(P(3,0), node(P(2,2), P(0,12)))
 *
 * where P(level, index) is the perfect subtree of 2^level leaves starting
 * at leaf index << level, which struct merkle_source answers.
 *
 * INVARIANTS
 *
 * 1. Every subtree that the recursions of 2.1.3.1 (PATH) and 2.1.4.1
 *    (SUBPROOF) visit starts at a multiple of the smallest power of two at
 *    least its size (the root starts at 0; a left child of size k starts
 *    where its parent did, a right child at parent + k). So its own binary
 *    decomposition consists of aligned perfect subtrees, and range_hash can
 *    ask the source for each of them directly.
 * 2. Generation walks the recursion from the root down, one sibling per
 *    step, and reverses at the end: PATH and SUBPROOF list the deepest
 *    hash first. At most one sibling per proof is not a perfect subtree
 *    (going left makes the remaining size a power of two), so a proof reads
 *    O(log n) hashes from the source.
 * 3. Verification follows the algorithms of 2.1.3.2 and 2.1.4.2 exactly, but
 *    first computes the length a proof for (index, size) or (old_size,
 *    size) must have by running the same bit walk without hashing; any
 *    other count is refused (DM_ERR_INVALID) before proof[] is read, so a
 *    short array is never read past and a padded proof never verifies.
 * 4. A consistency proof for size up to 2^63 has at most 64 hashes
 *    (ceil(log2 size) siblings and one subtree hash); larger sizes are
 *    refused rather than overflow MERKLE_MAX_PROOF. Inclusion proofs have
 *    at most 64 hashes for any size.
 */
#include "audit/merkle.h"

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util/err.h"

#define HASH MERKLE_HASH_LEN
#define MAX_CONSISTENCY_SIZE ((uint64_t)1 << 63)

/* SHA-256 of nothing. */
static const uint8_t empty_root[HASH] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

/* ---- hashing ----------------------------------------------------------- */

/* Fetched once: an implicit fetch per digest would cost a provider lookup
 * on every node hash. */
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha_md;

static void sha_fetch(void)
{
	sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256(prefix || a || b). out may alias a or b: the inputs are consumed
 * before the digest is written. */
static int hash_prefixed(uint8_t prefix, const void *a, size_t a_len, const void *b, size_t b_len,
                         uint8_t out[HASH])
{
	pthread_once(&sha_once, sha_fetch);
	const EVP_MD *md = sha_md ? sha_md : EVP_sha256();
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned out_len = 0;
	int ok = ctx && EVP_DigestInit_ex2(ctx, md, NULL) == 1 &&
	         EVP_DigestUpdate(ctx, &prefix, 1) == 1 &&
	         (a_len == 0 || EVP_DigestUpdate(ctx, a, a_len) == 1) &&
	         (b_len == 0 || EVP_DigestUpdate(ctx, b, b_len) == 1) &&
	         EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == HASH;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		memset(out, 0, HASH);
		return DM_ERR_CRYPTO;
	}
	return DM_OK;
}

int merkle_leaf_hash(const void *entry, size_t len, uint8_t out[MERKLE_HASH_LEN])
{
	return hash_prefixed(0x00, entry, len, NULL, 0, out);
}

int merkle_node_hash(const uint8_t left[MERKLE_HASH_LEN], const uint8_t right[MERKLE_HASH_LEN],
                     uint8_t out[MERKLE_HASH_LEN])
{
	return hash_prefixed(0x01, left, HASH, right, HASH, out);
}

void merkle_empty_root(uint8_t out[MERKLE_HASH_LEN])
{
	memcpy(out, empty_root, HASH);
}

/* ---- shapes ------------------------------------------------------------ */

unsigned merkle_floor_log2(uint64_t n)
{
	return 63u - (unsigned)__builtin_clzll(n);
}

uint64_t merkle_split(uint64_t n)
{
	return (uint64_t)1 << merkle_floor_log2(n - 1);
}

static int is_power_of_two(uint64_t n)
{
	return n != 0 && (n & (n - 1)) == 0;
}

/* MTH(D[start:start+count]) for count >= 1 and start aligned as invariant 1
 * says: the pieces of count's binary decomposition, taken from the right so
 * that the fold needs one running hash. */
static int range_hash(const struct merkle_source *src, uint64_t start, uint64_t count,
                      uint8_t out[HASH])
{
	uint64_t end = start + count;
	int have = 0;
	for (unsigned level = 0; level < 64; level++) {
		if (!((count >> level) & 1))
			continue;
		uint64_t piece_start = end - ((uint64_t)1 << level);
		uint8_t piece[HASH];
		int rc = src->subtree(src->arg, level, piece_start >> level, have ? piece : out);
		if (rc == DM_OK && have)
			rc = merkle_node_hash(piece, out, out);
		if (rc != DM_OK)
			return rc;
		have = 1;
		end = piece_start;
	}
	return DM_OK;
}

static void reverse(uint8_t proof[][MERKLE_HASH_LEN], size_t count)
{
	for (size_t i = 0, j = count; i + 1 < j; i++, j--) {
		uint8_t swap[HASH];
		memcpy(swap, proof[i], HASH);
		memcpy(proof[i], proof[j - 1], HASH);
		memcpy(proof[j - 1], swap, HASH);
	}
}

/* ---- generation -------------------------------------------------------- */

int merkle_root(const struct merkle_source *src, uint64_t size, uint8_t out[MERKLE_HASH_LEN])
{
	if (size == 0) {
		merkle_empty_root(out);
		return DM_OK;
	}
	return range_hash(src, 0, size, out);
}

int merkle_inclusion_proof(const struct merkle_source *src, uint64_t index, uint64_t size,
                           uint8_t proof[][MERKLE_HASH_LEN], size_t *count)
{
	*count = 0;
	if (index >= size)
		return DM_ERR_INVALID;
	/* PATH(m, D[start:start+n]), from the root down (invariant 2). */
	uint64_t start = 0, n = size, m = index;
	size_t len = 0;
	while (n > 1) {
		uint64_t k = merkle_split(n);
		unsigned k_level = merkle_floor_log2(k);
		int rc;
		if (m < k) {
			rc = range_hash(src, start + k, n - k, proof[len]);
			n = k;
		} else {
			rc = src->subtree(src->arg, k_level, start >> k_level, proof[len]);
			start += k;
			m -= k;
			n -= k;
		}
		if (rc != DM_OK)
			return rc;
		len++;
	}
	reverse(proof, len);
	*count = len;
	return DM_OK;
}

int merkle_consistency_proof(const struct merkle_source *src, uint64_t old_size, uint64_t size,
                             uint8_t proof[][MERKLE_HASH_LEN], size_t *count)
{
	*count = 0;
	if (old_size == 0 || old_size > size || size > MAX_CONSISTENCY_SIZE)
		return DM_ERR_INVALID;
	/* SUBPROOF(m, D[start:start+n], whole), from the root down. `whole`
	 * stays true while the old tree is the left edge of the current
	 * subtree, whose hash the verifier then already holds. */
	uint64_t start = 0, n = size, m = old_size;
	int whole = 1;
	size_t len = 0;
	while (m != n) {
		uint64_t k = merkle_split(n);
		unsigned k_level = merkle_floor_log2(k);
		int rc;
		if (m <= k) {
			rc = range_hash(src, start + k, n - k, proof[len]);
			n = k;
		} else {
			rc = src->subtree(src->arg, k_level, start >> k_level, proof[len]);
			start += k;
			m -= k;
			n -= k;
			whole = 0;
		}
		if (rc != DM_OK)
			return rc;
		len++;
	}
	if (!whole) {
		int rc = range_hash(src, start, n, proof[len]);
		if (rc != DM_OK)
			return rc;
		len++;
	}
	reverse(proof, len);
	*count = len;
	return DM_OK;
}

/* ---- verification ------------------------------------------------------ */

/* One step of the bit walk shared by 2.1.3.2 and 2.1.4.2 after a hash that
 * puts the proof hash on the left: when fn was even (fn == sn, the right
 * edge), the levels where this node has no right sibling are skipped. */
static void skip_right_edge(uint64_t *fn, uint64_t *sn)
{
	while (!(*fn & 1) && *fn != 0) {
		*fn >>= 1;
		*sn >>= 1;
	}
}

/* The number of hashes the walk of 2.1.3.2 consumes for (fn, sn) before sn
 * reaches 0 (invariant 3). */
static size_t walk_length(uint64_t fn, uint64_t sn)
{
	size_t len = 0;
	while (sn != 0) {
		if (!(fn & 1) && fn == sn)
			skip_right_edge(&fn, &sn);
		fn >>= 1;
		sn >>= 1;
		len++;
	}
	return len;
}

int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_LEN],
                            const uint8_t proof[][MERKLE_HASH_LEN], size_t count,
                            const uint8_t root[MERKLE_HASH_LEN])
{
	if (!leaf || !root || (count > 0 && !proof) || index >= size)
		return DM_ERR_INVALID;
	if (count > MERKLE_MAX_PROOF || count != walk_length(index, size - 1))
		return DM_ERR_INVALID;
	uint64_t fn = index, sn = size - 1;
	uint8_t r[HASH];
	memcpy(r, leaf, HASH);
	for (size_t i = 0; i < count; i++) {
		if (sn == 0)
			return DM_ERR_CRYPTO; /* unreachable after the length check */
		int rc;
		if ((fn & 1) || fn == sn) {
			rc = merkle_node_hash(proof[i], r, r);
			if (!(fn & 1))
				skip_right_edge(&fn, &sn);
		} else {
			rc = merkle_node_hash(r, proof[i], r);
		}
		if (rc != DM_OK)
			return rc;
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0 || CRYPTO_memcmp(r, root, HASH) != 0)
		return DM_ERR_CRYPTO;
	return DM_OK;
}

/* The count of a consistency proof between 0 < old_size < size. */
static size_t consistency_length(uint64_t old_size, uint64_t size)
{
	uint64_t fn = old_size - 1, sn = size - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	/* The walk consumes the path after its first element; for a power of
	 * two that first element is old_root itself, not sent. */
	size_t walk = walk_length(fn, sn);
	return is_power_of_two(old_size) ? walk : walk + 1;
}

int merkle_verify_consistency(uint64_t old_size, uint64_t size,
                              const uint8_t old_root[MERKLE_HASH_LEN],
                              const uint8_t root[MERKLE_HASH_LEN],
                              const uint8_t proof[][MERKLE_HASH_LEN], size_t count)
{
	if (!old_root || !root || (count > 0 && !proof) || old_size == 0 || old_size > size ||
	    count > MERKLE_MAX_PROOF)
		return DM_ERR_INVALID;
	if (old_size == size) {
		if (count != 0)
			return DM_ERR_INVALID;
		return CRYPTO_memcmp(old_root, root, HASH) == 0 ? DM_OK : DM_ERR_CRYPTO;
	}
	if (size > MAX_CONSISTENCY_SIZE || count != consistency_length(old_size, size))
		return DM_ERR_INVALID;
	/* 2.1.4.2 step 2: for a power of two the path starts with old_root. */
	size_t next = 0;
	const uint8_t *seed = old_root;
	if (!is_power_of_two(old_size))
		seed = proof[next++];
	uint64_t fn = old_size - 1, sn = size - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	uint8_t fr[HASH], sr[HASH];
	memcpy(fr, seed, HASH);
	memcpy(sr, seed, HASH);
	for (size_t i = next; i < count; i++) {
		if (sn == 0)
			return DM_ERR_CRYPTO; /* unreachable after the length check */
		int rc;
		if ((fn & 1) || fn == sn) {
			rc = merkle_node_hash(proof[i], fr, fr);
			if (rc == DM_OK)
				rc = merkle_node_hash(proof[i], sr, sr);
			if (!(fn & 1))
				skip_right_edge(&fn, &sn);
		} else {
			rc = merkle_node_hash(sr, proof[i], sr);
		}
		if (rc != DM_OK)
			return rc;
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0 || CRYPTO_memcmp(fr, old_root, HASH) != 0 || CRYPTO_memcmp(sr, root, HASH) != 0)
		return DM_ERR_CRYPTO;
	return DM_OK;
}

/* ---- the in-memory source ---------------------------------------------- */

static int memory_hash(const uint8_t (*leaves)[MERKLE_HASH_LEN], unsigned level, uint8_t out[HASH])
{
	if (level == 0) {
		memcpy(out, leaves[0], HASH);
		return DM_OK;
	}
	uint8_t left[HASH], right[HASH];
	int rc = memory_hash(leaves, level - 1, left);
	if (rc == DM_OK)
		rc = memory_hash(leaves + ((uint64_t)1 << (level - 1)), level - 1, right);
	if (rc == DM_OK)
		rc = merkle_node_hash(left, right, out);
	return rc;
}

static int memory_subtree(void *arg, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	const struct merkle_memory *mem = arg;
	if (level >= 64 || index > (UINT64_MAX >> level))
		return DM_ERR_NOT_FOUND;
	uint64_t start = index << level, width = (uint64_t)1 << level;
	if (start >= mem->count || width > mem->count - start)
		return DM_ERR_NOT_FOUND;
	return memory_hash(mem->leaves + start, level, out);
}

void merkle_memory_source(struct merkle_memory *mem, struct merkle_source *out)
{
	out->subtree = memory_subtree;
	out->arg = mem;
}
