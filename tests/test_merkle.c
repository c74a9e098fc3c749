/*
 * test_merkle.c — RFC 9162 tree hashing, proofs and their verification.
 *
 * The known vectors are the published ones of RFC 6962 / certificate
 * transparency (the eight standard leaves of the reference implementation's
 * tests, the roots of their trees of sizes 1..8, and the inclusion and
 * consistency proofs listed with them, as the transparency-dev merkle
 * module's verify tests carry them); they were computed outside this code.
 * Beyond those, every proof for every size up to 64 is compared with a
 * direct transcription of the RFC's recursive definitions (MTH, PATH,
 * SUBPROOF), verified, and tampered with.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit/merkle.h"
#include "util/err.h"

#define HASH MERKLE_HASH_LEN
#define MAX_LEAVES 64

/* ---- helpers ----------------------------------------------------------- */

static void from_hex(const char *hex, uint8_t out[HASH])
{
	assert_int_equal(strlen(hex), 2 * HASH);
	for (size_t i = 0; i < HASH; i++) {
		unsigned byte;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &byte), 1);
		out[i] = (uint8_t)byte;
	}
}

static void assert_hash_hex(const uint8_t hash[HASH], const char *hex)
{
	uint8_t want[HASH];
	from_hex(hex, want);
	assert_memory_equal(hash, want, HASH);
}

/* The inputs of the reference implementation's tests. */
static const struct {
	const char *bytes;
	size_t len;
} standard_inputs[8] = {
    {"", 0},
    {"\x00", 1},
    {"\x10", 1},
    {"\x20\x21", 2},
    {"\x30\x31", 2},
    {"\x40\x41\x42\x43", 4},
    {"\x50\x51\x52\x53\x54\x55\x56\x57", 8},
    {"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16},
};

/* MTH of the first n standard leaves, n = 1..8. */
static const char *const standard_roots[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

struct leaves {
	uint8_t hashes[MAX_LEAVES][HASH];
	struct merkle_memory mem;
	struct merkle_source src;
};

/* The 8 standard leaves, then generated ones up to MAX_LEAVES. */
static void make_leaves(struct leaves *leaves, uint64_t count)
{
	assert_true(count <= MAX_LEAVES);
	for (uint64_t i = 0; i < count; i++) {
		if (i < 8) {
			assert_int_equal(merkle_leaf_hash(standard_inputs[i].bytes,
			                                  standard_inputs[i].len,
			                                  leaves->hashes[i]),
			                 DM_OK);
		} else {
			char entry[32];
			int len = snprintf(entry, sizeof entry, "audit entry %llu",
			                   (unsigned long long)i);
			assert_int_equal(merkle_leaf_hash(entry, (size_t)len, leaves->hashes[i]),
			                 DM_OK);
		}
	}
	leaves->mem.leaves = (const uint8_t(*)[HASH])leaves->hashes;
	leaves->mem.count = count;
	merkle_memory_source(&leaves->mem, &leaves->src);
}

/* ---- the RFC's recursive definitions, transcribed ---------------------- */

static uint64_t ref_split(uint64_t n)
{
	uint64_t k = 1;
	while (k * 2 < n)
		k *= 2;
	return k;
}

static void ref_mth(const uint8_t (*leaves)[HASH], uint64_t n, uint8_t out[HASH])
{
	if (n == 1) {
		memcpy(out, leaves[0], HASH);
		return;
	}
	uint64_t k = ref_split(n);
	uint8_t left[HASH], right[HASH];
	ref_mth(leaves, k, left);
	ref_mth(leaves + k, n - k, right);
	assert_int_equal(merkle_node_hash(left, right, out), DM_OK);
}

/* PATH(m, D[n]) appended to out. */
static void ref_path(const uint8_t (*leaves)[HASH], uint64_t m, uint64_t n, uint8_t out[][HASH],
                     size_t *len)
{
	if (n == 1)
		return;
	uint64_t k = ref_split(n);
	if (m < k) {
		ref_path(leaves, m, k, out, len);
		ref_mth(leaves + k, n - k, out[(*len)++]);
	} else {
		ref_path(leaves + k, m - k, n - k, out, len);
		ref_mth(leaves, k, out[(*len)++]);
	}
}

/* SUBPROOF(m, D[n], b) appended to out. */
static void ref_subproof(const uint8_t (*leaves)[HASH], uint64_t m, uint64_t n, int b,
                         uint8_t out[][HASH], size_t *len)
{
	if (m == n) {
		if (!b)
			ref_mth(leaves, n, out[(*len)++]);
		return;
	}
	uint64_t k = ref_split(n);
	if (m <= k) {
		ref_subproof(leaves, m, k, b, out, len);
		ref_mth(leaves + k, n - k, out[(*len)++]);
	} else {
		ref_subproof(leaves + k, m - k, n - k, 0, out, len);
		ref_mth(leaves, k, out[(*len)++]);
	}
}

/* ---- published vectors ------------------------------------------------- */

static void test_merkle_hashes_the_empty_tree_and_leaves_as_rfc_9162_says(void **state)
{
	uint8_t hash[HASH];
	merkle_empty_root(hash);
	assert_hash_hex(hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	struct leaves leaves;
	make_leaves(&leaves, 0);
	assert_int_equal(merkle_root(&leaves.src, 0, hash), DM_OK);
	assert_hash_hex(hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* The leaf hash of the empty entry is the root of the 1-leaf tree. */
	assert_int_equal(merkle_leaf_hash("", 0, hash), DM_OK);
	assert_hash_hex(hash, standard_roots[0]);
	/* Node hashing may write over an input. */
	uint8_t left[HASH], right[HASH], joined[HASH];
	assert_int_equal(merkle_leaf_hash("", 0, left), DM_OK);
	assert_int_equal(merkle_leaf_hash("\x00", 1, right), DM_OK);
	assert_int_equal(merkle_node_hash(left, right, joined), DM_OK);
	assert_hash_hex(joined, standard_roots[1]);
	assert_int_equal(merkle_node_hash(left, right, left), DM_OK);
	assert_memory_equal(left, joined, HASH);
}

static void test_merkle_reproduces_the_published_roots_of_sizes_1_to_8(void **state)
{
	struct leaves leaves;
	make_leaves(&leaves, 8);
	for (uint64_t size = 1; size <= 8; size++) {
		/* A tree of size n is the first n leaves of a longer source. */
		uint8_t root[HASH];
		assert_int_equal(merkle_root(&leaves.src, size, root), DM_OK);
		assert_hash_hex(root, standard_roots[size - 1]);
	}
}

struct published_proof {
	uint64_t first; /* leaf index, or old size */
	uint64_t size;
	size_t count;
	const char *hashes[3];
};

/* Inclusion: leaf index (0-based), tree size, audit path. */
static const struct published_proof published_inclusion[] = {
    {0, 1, 0, {NULL}},
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     3,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

/* Consistency: old size, new size, proof. */
static const struct published_proof published_consistency[] = {
    {1, 1, 0, {NULL}},
    {1,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

static void test_merkle_generates_and_verifies_the_published_inclusion_proofs(void **state)
{
	struct leaves leaves;
	make_leaves(&leaves, 8);
	for (size_t v = 0; v < sizeof published_inclusion / sizeof published_inclusion[0]; v++) {
		const struct published_proof *want = &published_inclusion[v];
		uint8_t proof[MERKLE_MAX_PROOF][HASH], expected[3][HASH], root[HASH];
		size_t count = 99;
		assert_int_equal(
		    merkle_inclusion_proof(&leaves.src, want->first, want->size, proof, &count),
		    DM_OK);
		assert_int_equal(count, want->count);
		for (size_t i = 0; i < count; i++) {
			assert_hash_hex(proof[i], want->hashes[i]);
			from_hex(want->hashes[i], expected[i]);
		}
		from_hex(standard_roots[want->size - 1], root);
		/* The published proof itself, not just ours, verifies. */
		assert_int_equal(
		    merkle_verify_inclusion(want->first, want->size, leaves.hashes[want->first],
		                            (const uint8_t(*)[HASH])expected, want->count, root),
		    DM_OK);
	}
}

static void test_merkle_generates_and_verifies_the_published_consistency_proofs(void **state)
{
	struct leaves leaves;
	make_leaves(&leaves, 8);
	for (size_t v = 0; v < sizeof published_consistency / sizeof published_consistency[0];
	     v++) {
		const struct published_proof *want = &published_consistency[v];
		uint8_t proof[MERKLE_MAX_PROOF][HASH], expected[3][HASH], old_root[HASH],
		    root[HASH];
		size_t count = 99;
		assert_int_equal(
		    merkle_consistency_proof(&leaves.src, want->first, want->size, proof, &count),
		    DM_OK);
		assert_int_equal(count, want->count);
		for (size_t i = 0; i < count; i++) {
			assert_hash_hex(proof[i], want->hashes[i]);
			from_hex(want->hashes[i], expected[i]);
		}
		from_hex(standard_roots[want->first - 1], old_root);
		from_hex(standard_roots[want->size - 1], root);
		assert_int_equal(merkle_verify_consistency(want->first, want->size, old_root, root,
		                                           (const uint8_t(*)[HASH])expected,
		                                           want->count),
		                 DM_OK);
	}
}

/* ---- every proof up to 64 leaves --------------------------------------- */

static void test_merkle_roots_match_the_recursive_definition_up_to_64_leaves(void **state)
{
	static struct leaves leaves;
	make_leaves(&leaves, MAX_LEAVES);
	for (uint64_t size = 1; size <= MAX_LEAVES; size++) {
		uint8_t root[HASH], want[HASH];
		assert_int_equal(merkle_root(&leaves.src, size, root), DM_OK);
		ref_mth((const uint8_t(*)[HASH])leaves.hashes, size, want);
		assert_memory_equal(root, want, HASH);
	}
}

/* Expects verification to refuse, as a failed check or as impossible. */
static void assert_refused(int rc)
{
	if (rc != DM_ERR_CRYPTO && rc != DM_ERR_INVALID)
		fail_msg("expected a refusal, got %d (%s)", rc, dm_strerror(rc));
}

static void
test_merkle_every_inclusion_proof_up_to_64_verifies_and_no_tampered_one_does(void **state)
{
	static struct leaves leaves;
	make_leaves(&leaves, MAX_LEAVES);
	const uint8_t(*hashes)[HASH] = (const uint8_t(*)[HASH])leaves.hashes;
	uint8_t roots[MAX_LEAVES + 1][HASH];
	for (uint64_t size = 1; size <= MAX_LEAVES; size++)
		ref_mth(hashes, size, roots[size]);

	for (uint64_t size = 1; size <= MAX_LEAVES; size++) {
		for (uint64_t index = 0; index < size; index++) {
			uint8_t proof[MERKLE_MAX_PROOF][HASH], want[MERKLE_MAX_PROOF][HASH];
			size_t count = 0, want_count = 0;
			assert_int_equal(
			    merkle_inclusion_proof(&leaves.src, index, size, proof, &count), DM_OK);
			ref_path(hashes, index, size, want, &want_count);
			assert_int_equal(count, want_count);
			assert_memory_equal(proof, want, count * HASH);
			const uint8_t(*path)[HASH] = (const uint8_t(*)[HASH])proof;
			if (merkle_verify_inclusion(index, size, hashes[index], path, count,
			                            roots[size]) != DM_OK)
				fail_msg("inclusion %llu of %llu does not verify",
				         (unsigned long long)index, (unsigned long long)size);

			/* Any bit of any hash, the leaf or the root flipped. */
			for (size_t i = 0; i < count; i++) {
				for (int bit = 0; bit < 8; bit += 7) {
					proof[i][i % HASH] ^= (uint8_t)(1u << bit);
					assert_int_equal(
					    merkle_verify_inclusion(index, size, hashes[index],
					                            path, count, roots[size]),
					    DM_ERR_CRYPTO);
					proof[i][i % HASH] ^= (uint8_t)(1u << bit);
				}
			}
			uint8_t bad[HASH];
			memcpy(bad, hashes[index], HASH);
			bad[31] ^= 1;
			assert_int_equal(
			    merkle_verify_inclusion(index, size, bad, path, count, roots[size]),
			    DM_ERR_CRYPTO);
			memcpy(bad, roots[size], HASH);
			bad[0] ^= 0x80;
			assert_int_equal(
			    merkle_verify_inclusion(index, size, hashes[index], path, count, bad),
			    DM_ERR_CRYPTO);
			/* Another index with the same proof and root; another size
			 * with that size's root. (The same root under another size
			 * can verify where the two trees' shapes agree along the
			 * path: a root binds its size, a proof does not.) */
			for (uint64_t other = 0; other <= MAX_LEAVES; other++) {
				if (other != index)
					assert_refused(merkle_verify_inclusion(
					    other, size, hashes[index], path, count, roots[size]));
				if (other != size)
					assert_refused(merkle_verify_inclusion(
					    index, other, hashes[index], path, count,
					    roots[other ? other : 1]));
			}
			/* A hash dropped, one added, two swapped. */
			if (count > 0)
				assert_refused(merkle_verify_inclusion(
				    index, size, hashes[index], path, count - 1, roots[size]));
			memcpy(proof[count], roots[size], HASH);
			assert_refused(merkle_verify_inclusion(index, size, hashes[index], path,
			                                       count + 1, roots[size]));
			if (count > 1) {
				uint8_t swap[HASH];
				memcpy(swap, proof[0], HASH);
				memcpy(proof[0], proof[1], HASH);
				memcpy(proof[1], swap, HASH);
				assert_refused(merkle_verify_inclusion(index, size, hashes[index],
				                                       path, count, roots[size]));
			}
		}
	}
}

static void
test_merkle_every_consistency_proof_up_to_64_verifies_and_no_tampered_one_does(void **state)
{
	static struct leaves leaves;
	make_leaves(&leaves, MAX_LEAVES);
	const uint8_t(*hashes)[HASH] = (const uint8_t(*)[HASH])leaves.hashes;
	uint8_t roots[MAX_LEAVES + 1][HASH];
	for (uint64_t size = 1; size <= MAX_LEAVES; size++)
		ref_mth(hashes, size, roots[size]);
	merkle_empty_root(roots[0]);

	for (uint64_t size = 1; size <= MAX_LEAVES; size++) {
		for (uint64_t old = 1; old <= size; old++) {
			uint8_t proof[MERKLE_MAX_PROOF + 1][HASH], want[MERKLE_MAX_PROOF][HASH];
			size_t count = 0, want_count = 0;
			assert_int_equal(
			    merkle_consistency_proof(&leaves.src, old, size, proof, &count), DM_OK);
			ref_subproof(hashes, old, size, 1, want, &want_count);
			assert_int_equal(count, want_count);
			assert_memory_equal(proof, want, count * HASH);
			const uint8_t(*path)[HASH] = (const uint8_t(*)[HASH])proof;
			if (merkle_verify_consistency(old, size, roots[old], roots[size], path,
			                              count) != DM_OK)
				fail_msg("consistency %llu -> %llu does not verify",
				         (unsigned long long)old, (unsigned long long)size);
			if (old == size) {
				assert_int_equal(count, 0);
				assert_int_equal(merkle_verify_consistency(old, size, roots[old],
				                                           roots[old == 1 ? 2 : 1],
				                                           path, 0),
				                 DM_ERR_CRYPTO);
				continue;
			}
			for (size_t i = 0; i < count; i++) {
				proof[i][(i * 7) % HASH] ^= 0x10;
				assert_int_equal(merkle_verify_consistency(old, size, roots[old],
				                                           roots[size], path,
				                                           count),
				                 DM_ERR_CRYPTO);
				proof[i][(i * 7) % HASH] ^= 0x10;
			}
			uint8_t bad[HASH];
			memcpy(bad, roots[old], HASH);
			bad[5] ^= 4;
			assert_int_equal(
			    merkle_verify_consistency(old, size, bad, roots[size], path, count),
			    DM_ERR_CRYPTO);
			memcpy(bad, roots[size], HASH);
			bad[17] ^= 2;
			assert_int_equal(
			    merkle_verify_consistency(old, size, roots[old], bad, path, count),
			    DM_ERR_CRYPTO);
			assert_refused(merkle_verify_consistency(old, size, roots[size], roots[old],
			                                         path, count));
			/* Another size, with that size's root. */
			for (uint64_t other = 0; other <= MAX_LEAVES; other++) {
				if (other != old)
					assert_refused(merkle_verify_consistency(
					    other, size, roots[other], roots[size], path, count));
				if (other != size)
					assert_refused(merkle_verify_consistency(
					    old, other, roots[old], roots[other], path, count));
			}
			assert_refused(merkle_verify_consistency(old, size, roots[old], roots[size],
			                                         path, count - 1));
			memcpy(proof[count], roots[old], HASH);
			assert_refused(merkle_verify_consistency(old, size, roots[old], roots[size],
			                                         path, count + 1));
			assert_refused(merkle_verify_consistency(old, size, roots[old], roots[size],
			                                         path + 1, count - 1));
		}
	}
}

/* ---- arguments and sources --------------------------------------------- */

/* `count` hashes placed right before an inaccessible page: reading one
 * hash past them faults. */
struct guarded {
	uint8_t *map;
	size_t page;
	uint8_t (*hashes)[HASH];
};

static void guard_alloc(struct guarded *g, size_t count)
{
	g->page = (size_t)sysconf(_SC_PAGESIZE);
	assert_true(count * HASH <= g->page);
	g->map =
	    mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + g->page, g->page, PROT_NONE), 0);
	g->hashes = (uint8_t(*)[HASH])(g->map + g->page - count * HASH);
}

static void guard_free(struct guarded *g)
{
	munmap(g->map, 2 * g->page);
}

static void
test_merkle_verification_refuses_malformed_arguments_without_reading_past_the_proof(void **state)
{
	static struct leaves leaves;
	make_leaves(&leaves, MAX_LEAVES);
	const uint8_t(*hashes)[HASH] = (const uint8_t(*)[HASH])leaves.hashes;
	uint8_t root[HASH], old_root[HASH];
	assert_int_equal(merkle_root(&leaves.src, 37, root), DM_OK);
	assert_int_equal(merkle_root(&leaves.src, 13, old_root), DM_OK);

	uint8_t proof[MERKLE_MAX_PROOF][HASH];
	size_t count;
	assert_int_equal(merkle_inclusion_proof(&leaves.src, 20, 37, proof, &count), DM_OK);
	struct guarded g;
	guard_alloc(&g, count);
	memcpy(g.hashes, proof, count * HASH);
	const uint8_t(*path)[HASH] = (const uint8_t(*)[HASH])g.hashes;
	assert_int_equal(merkle_verify_inclusion(20, 37, hashes[20], path, count, root), DM_OK);
	/* Claimed longer than the array: refused before the array is read. */
	for (size_t more = count + 1; more <= MERKLE_MAX_PROOF + 2; more++)
		assert_int_equal(merkle_verify_inclusion(20, 37, hashes[20], path, more, root),
		                 DM_ERR_INVALID);
	/* Sizes whose proofs are longer than this one. */
	assert_int_equal(merkle_verify_inclusion(20, 1000, hashes[20], path, count, root),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(20, UINT64_MAX, hashes[20], path, count, root),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(37, 37, hashes[20], path, count, root),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(0, 0, hashes[0], NULL, 0, root), DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(UINT64_MAX, UINT64_MAX, hashes[0], NULL, 0, root),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(20, 37, hashes[20], NULL, count, root),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(20, 37, NULL, path, count, root), DM_ERR_INVALID);
	assert_int_equal(merkle_verify_inclusion(20, 37, hashes[20], path, count, NULL),
	                 DM_ERR_INVALID);
	guard_free(&g);

	assert_int_equal(merkle_consistency_proof(&leaves.src, 13, 37, proof, &count), DM_OK);
	guard_alloc(&g, count);
	memcpy(g.hashes, proof, count * HASH);
	path = (const uint8_t(*)[HASH])g.hashes;
	assert_int_equal(merkle_verify_consistency(13, 37, old_root, root, path, count), DM_OK);
	for (size_t more = count + 1; more <= MERKLE_MAX_PROOF + 2; more++)
		assert_int_equal(merkle_verify_consistency(13, 37, old_root, root, path, more),
		                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(13, 1u << 20, old_root, root, path, count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(0, 37, old_root, root, path, count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(38, 37, old_root, root, path, count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(37, 37, root, root, path, count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(0, 0, root, root, NULL, 0), DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(13, UINT64_MAX, old_root, root, path, count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(13, 37, NULL, root, path, count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_verify_consistency(13, 37, old_root, root, NULL, count),
	                 DM_ERR_INVALID);
	guard_free(&g);
}

static void test_merkle_generation_refuses_impossible_sizes(void **state)
{
	struct leaves leaves;
	make_leaves(&leaves, 8);
	uint8_t proof[MERKLE_MAX_PROOF][HASH];
	size_t count = 7;
	assert_int_equal(merkle_inclusion_proof(&leaves.src, 8, 8, proof, &count), DM_ERR_INVALID);
	assert_int_equal(count, 0);
	assert_int_equal(merkle_inclusion_proof(&leaves.src, 0, 0, proof, &count), DM_ERR_INVALID);
	assert_int_equal(merkle_consistency_proof(&leaves.src, 0, 8, proof, &count),
	                 DM_ERR_INVALID);
	assert_int_equal(merkle_consistency_proof(&leaves.src, 5, 4, proof, &count),
	                 DM_ERR_INVALID);
	assert_int_equal(
	    merkle_consistency_proof(&leaves.src, 1, ((uint64_t)1 << 63) + 1, proof, &count),
	    DM_ERR_INVALID);
	/* Beyond what the source holds: its error is passed on. */
	uint8_t root[HASH];
	assert_int_equal(merkle_root(&leaves.src, 9, root), DM_ERR_NOT_FOUND);
	count = 7;
	assert_int_equal(merkle_inclusion_proof(&leaves.src, 3, 9, proof, &count),
	                 DM_ERR_NOT_FOUND);
	assert_int_equal(count, 0);
	assert_int_equal(merkle_consistency_proof(&leaves.src, 3, 12, proof, &count),
	                 DM_ERR_NOT_FOUND);
	assert_int_equal(count, 0);
}

static void test_merkle_memory_source_answers_only_perfect_subtrees_within_the_tree(void **state)
{
	struct leaves leaves;
	make_leaves(&leaves, 6);
	uint8_t hash[HASH], want[HASH];
	const uint8_t(*hashes)[HASH] = (const uint8_t(*)[HASH])leaves.hashes;
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 0, 5, hash), DM_OK);
	assert_memory_equal(hash, hashes[5], HASH);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 1, 2, hash), DM_OK);
	ref_mth(hashes + 4, 2, want);
	assert_memory_equal(hash, want, HASH);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 2, 0, hash), DM_OK);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 0, 6, hash), DM_ERR_NOT_FOUND);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 2, 1, hash), DM_ERR_NOT_FOUND);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 3, 0, hash), DM_ERR_NOT_FOUND);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 64, 0, hash), DM_ERR_NOT_FOUND);
	assert_int_equal(leaves.src.subtree(leaves.src.arg, 1, UINT64_MAX, hash), DM_ERR_NOT_FOUND);
}

/* A source over a huge virtual tree: the hash of (level, index) is made up,
 * and every read is counted and checked to be a perfect subtree in range. */
struct counting {
	uint64_t size;
	size_t reads;
	int out_of_range;
	int fail_at; /* 1-based read that fails with DM_ERR_IO; 0: none */
};

static int counting_subtree(void *arg, unsigned level, uint64_t index, uint8_t out[HASH])
{
	struct counting *c = arg;
	c->reads++;
	if (c->fail_at && (int)c->reads == c->fail_at)
		return DM_ERR_IO;
	if (level >= 64 || index > (UINT64_MAX >> level) ||
	    (index << level) + ((uint64_t)1 << level) > c->size)
		c->out_of_range = 1;
	memset(out, 0, HASH);
	memcpy(out, &level, sizeof level);
	memcpy(out + 8, &index, sizeof index);
	return DM_OK;
}

static void test_merkle_proofs_read_o_log_n_hashes_and_pass_source_errors_on(void **state)
{
	const uint64_t sizes[] = {1,
	                          2,
	                          3,
	                          1000,
	                          1u << 20,
	                          ((uint64_t)1 << 40) + 12345,
	                          ((uint64_t)1 << 63) - 1,
	                          (uint64_t)1 << 63};
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		uint64_t size = sizes[s];
		struct counting c = {.size = size};
		struct merkle_source src = {counting_subtree, &c};
		uint8_t proof[MERKLE_MAX_PROOF][HASH], root[HASH];
		size_t count;
		unsigned log = 0;
		while (log < 64 && ((uint64_t)1 << log) < size)
			log++;
		const uint64_t indexes[] = {0, size / 3, size / 2, size - 1};
		for (size_t i = 0; i < 4; i++) {
			c.reads = 0;
			assert_int_equal(
			    merkle_inclusion_proof(&src, indexes[i], size, proof, &count), DM_OK);
			assert_true(count <= log);
			assert_true(c.reads <= 2 * (size_t)log + 1);
			const uint64_t olds[] = {1, size / 3 ? size / 3 : 1,
			                         size - 1 ? size - 1 : 1, size};
			c.reads = 0;
			assert_int_equal(
			    merkle_consistency_proof(&src, olds[i], size, proof, &count), DM_OK);
			assert_true(count <= (size_t)log + 1 && count <= MERKLE_MAX_PROOF);
			assert_true(c.reads <= 2 * (size_t)log + 2);
		}
		c.reads = 0;
		assert_int_equal(merkle_root(&src, size, root), DM_OK);
		assert_int_equal(c.reads, (size_t)__builtin_popcountll(size));
		assert_false(c.out_of_range);

		/* A failing read ends generation with its error, *count 0. */
		for (int fail = 1; fail <= 3; fail++) {
			c = (struct counting){.size = size, .fail_at = fail};
			count = 5;
			int rc = merkle_inclusion_proof(&src, size / 2, size, proof, &count);
			assert_true(rc == DM_ERR_IO || (rc == DM_OK && c.reads < (size_t)fail));
			if (rc != DM_OK)
				assert_int_equal(count, 0);
		}
		c = (struct counting){.size = size, .fail_at = 1};
		assert_int_equal(merkle_root(&src, size, root), DM_ERR_IO);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_merkle_hashes_the_empty_tree_and_leaves_as_rfc_9162_says),
	    cmocka_unit_test(test_merkle_reproduces_the_published_roots_of_sizes_1_to_8),
	    cmocka_unit_test(test_merkle_generates_and_verifies_the_published_inclusion_proofs),
	    cmocka_unit_test(test_merkle_generates_and_verifies_the_published_consistency_proofs),
	    cmocka_unit_test(test_merkle_roots_match_the_recursive_definition_up_to_64_leaves),
	    cmocka_unit_test(
	        test_merkle_every_inclusion_proof_up_to_64_verifies_and_no_tampered_one_does),
	    cmocka_unit_test(
	        test_merkle_every_consistency_proof_up_to_64_verifies_and_no_tampered_one_does),
	    cmocka_unit_test(
	        test_merkle_verification_refuses_malformed_arguments_without_reading_past_the_proof),
	    cmocka_unit_test(test_merkle_generation_refuses_impossible_sizes),
	    cmocka_unit_test(
	        test_merkle_memory_source_answers_only_perfect_subtrees_within_the_tree),
	    cmocka_unit_test(test_merkle_proofs_read_o_log_n_hashes_and_pass_source_errors_on),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
