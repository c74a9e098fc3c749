/*
 * keystore.c — the keystore interface's wrappers and the file backend
 * (keystore.h has the user's view, the wrapped blob's layout and the files).
 *
 * Invariants of the file backend:
 *  1. Every KEK that wrapped a blob still on disk stays readable until
 *     keystore_file_drop (keystore_drop) is told otherwise: a rotation
 *     links the old key to kek-<id>.key and fsyncs the directory before
 *     kek.key is replaced.
 *  2. A key file is used only when it is a regular file, not a symlink,
 *     no more open than 0600, and exactly 32 bytes; anything else stops the
 *     node with the file's name in the log, because a key another user can
 *     read is already lost and a truncated one would wrap with a wrong key.
 *  3. KEK ids are unique within one keystore and never 0 (0 means "no key"
 *     in the block header); the id is derived from the key, so a file named
 *     for another id is refused.
 *  4. Key material lives only in this struct; it is wiped with
 *     OPENSSL_cleanse before any memory that held it is freed (no realloc,
 *     which could leave a copy behind).
 *
 * Rotation states (files in data_dir):
 *
 *   [kek.key=A]
 *      │ write kek.key.new=B, fsync            (crash: A current; .new ignored)
 *      ▼
 *   [kek.key=A, kek.key.new=B]
 *      │ link kek.key → kek-<A>.key, fsync dir (crash: A current; its copy is
 *      ▼                                        skipped at open as a duplicate)
 *   [kek.key=A, kek-<A>.key=A, kek.key.new=B]
 *      │ rename kek.key.new → kek.key, fsync dir
 *      ▼
 *   [kek.key=B, kek-<A>.key=A]                 keystore_file_drop(A) unlinks
 *                                              kek-<A>.key when nothing needs it
 */
#include "crypto/keystore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/aead.h"
#include "util/bytes.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#define DEK_AD_LABEL "domicile-dek-v1"
#define DEK_AD_LABEL_LEN (sizeof DEK_AD_LABEL - 1)
_Static_assert(KEYSTORE_DEK_AD_LEN == DEK_AD_LABEL_LEN + 4, "the AD is the label and an id");
#define KEK_ID_LABEL "domicile-kek-id"
#define PATH_CAP (PATH_MAX + 32)

/* Offsets in the wrapped blob. */
#define BLOB_VERSION KEYSTORE_BLOB_VERSION
#define BLOB_KEK_ID KEYSTORE_BLOB_KEK_ID
#define BLOB_NONCE KEYSTORE_BLOB_NONCE
#define BLOB_CIPHER KEYSTORE_BLOB_CIPHER
#define BLOB_TAG KEYSTORE_BLOB_TAG
_Static_assert(KEYSTORE_BLOB_NONCE_LEN == AEAD_NONCE_LEN, "one nonce size");
_Static_assert(KEYSTORE_BLOB_TAG_LEN == AEAD_TAG_LEN, "one tag size");
_Static_assert(KEYSTORE_BLOB_TAG + KEYSTORE_BLOB_TAG_LEN == KEYSTORE_WRAPPED_LEN, "layout");

struct kek {
	uint32_t id;
	uint8_t key[KEYSTORE_KEK_LEN];
};

struct file_keystore {
	struct keystore base; /* first: a struct keystore * points here */
	char *dir;
	struct kek current;
	struct kek *old; /* kept after rotations, n_old of them */
	size_t n_old;
};

static const struct keystore_ops file_ops;

/* ---- the interface ---- */

int keystore_wrap(struct keystore *ks, uint32_t vehicle_id, const uint8_t dek[KEYSTORE_DEK_LEN],
                  uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	return ks->ops->wrap(ks, vehicle_id, dek, blob);
}

int keystore_unwrap(struct keystore *ks, uint32_t vehicle_id,
                    const uint8_t blob[KEYSTORE_WRAPPED_LEN], uint8_t dek[KEYSTORE_DEK_LEN])
{
	return ks->ops->unwrap(ks, vehicle_id, blob, dek);
}

uint32_t keystore_key_id(const struct keystore *ks)
{
	return ks->ops->key_id(ks);
}

int keystore_rotate(struct keystore *ks, uint32_t *new_id)
{
	if (new_id)
		*new_id = 0;
	if (!ks->ops->rotate)
		return DM_ERR_UNSUPPORTED;
	return ks->ops->rotate(ks, new_id);
}

int keystore_drop(struct keystore *ks, uint32_t kek_id)
{
	if (!ks->ops->drop)
		return DM_ERR_UNSUPPORTED;
	return ks->ops->drop(ks, kek_id);
}

uint32_t keystore_blob_kek_id(const uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	return get_be32(blob + BLOB_KEK_ID);
}

void keystore_dek_ad(uint8_t ad[KEYSTORE_DEK_AD_LEN], uint32_t vehicle_id)
{
	memcpy(ad, DEK_AD_LABEL, DEK_AD_LABEL_LEN);
	put_be32(ad + DEK_AD_LABEL_LEN, vehicle_id);
}

void keystore_blob_begin(uint8_t blob[KEYSTORE_WRAPPED_LEN], uint32_t kek_id)
{
	blob[BLOB_VERSION] = KEYSTORE_WRAP_VERSION;
	put_be32(blob + BLOB_KEK_ID, kek_id);
}

void keystore_free(struct keystore *ks)
{
	if (ks)
		ks->ops->destroy(ks);
}

/* ---- key files ---- */

static int kek_id_of(const uint8_t key[KEYSTORE_KEK_LEN], uint32_t *id)
{
	uint8_t input[sizeof KEK_ID_LABEL - 1 + KEYSTORE_KEK_LEN];
	uint8_t digest[32];
	size_t digest_len = 0;
	memcpy(input, KEK_ID_LABEL, sizeof KEK_ID_LABEL - 1);
	memcpy(input + sizeof KEK_ID_LABEL - 1, key, KEYSTORE_KEK_LEN);
	int ok = EVP_Q_digest(NULL, "SHA256", NULL, input, sizeof input, digest, &digest_len);
	OPENSSL_cleanse(input, sizeof input);
	if (!ok || digest_len != sizeof digest)
		return DM_ERR_CRYPTO;
	*id = get_be32(digest);
	return DM_OK;
}

static int path_join(char out[PATH_CAP], const char *dir, const char *name)
{
	int n = snprintf(out, PATH_CAP, "%s/%s", dir, name);
	if (n < 0 || n >= PATH_CAP) {
		dm_error("%s/%s: path too long", dir, name);
		return DM_ERR_INVALID;
	}
	return DM_OK;
}

static int old_kek_path(char out[PATH_CAP], const char *dir, uint32_t id)
{
	char name[32];
	snprintf(name, sizeof name, "kek-%08x.key", (unsigned)id);
	return path_join(out, dir, name);
}

static int read_key_file(const char *path, struct kek *kek)
{
	int rc = dm_read_secret(path, "the key file", 0, kek->key, KEYSTORE_KEK_LEN);
	if (rc == DM_OK)
		rc = kek_id_of(kek->key, &kek->id);
	if (rc == DM_OK && kek->id == 0) {
		dm_error("%s: this key has id 0, which is reserved; make a new one", path);
		rc = DM_ERR_INVALID;
	}
	if (rc != DM_OK)
		OPENSSL_cleanse(kek, sizeof *kek);
	return rc;
}

/* Creates path with the key, mode 0600, fsynced. Never replaces a file. */
static int write_key_file(const char *path, const uint8_t key[KEYSTORE_KEK_LEN])
{
	return dm_write_secret(path, "the key file", 0, key, KEYSTORE_KEK_LEN);
}

/* ---- the file backend ---- */

static struct kek *find_kek(struct file_keystore *fks, uint32_t id)
{
	if (fks->current.id == id)
		return &fks->current;
	for (size_t i = 0; i < fks->n_old; i++)
		if (fks->old[i].id == id)
			return &fks->old[i];
	return NULL;
}

static int file_wrap(struct keystore *ks, uint32_t vehicle_id, const uint8_t dek[KEYSTORE_DEK_LEN],
                     uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	struct file_keystore *fks = (struct file_keystore *)ks;
	uint8_t ad[KEYSTORE_DEK_AD_LEN];
	keystore_dek_ad(ad, vehicle_id);
	keystore_blob_begin(blob, fks->current.id);
	int rc = RAND_bytes(blob + BLOB_NONCE, AEAD_NONCE_LEN) == 1 ? DM_OK : DM_ERR_CRYPTO;
	if (rc == DM_OK)
		rc = aead_seal(fks->current.key, blob + BLOB_NONCE, ad, sizeof ad, dek,
		               KEYSTORE_DEK_LEN, blob + BLOB_CIPHER, blob + BLOB_TAG);
	if (rc != DM_OK)
		memset(blob, 0, KEYSTORE_WRAPPED_LEN);
	return rc;
}

static int file_unwrap(struct keystore *ks, uint32_t vehicle_id,
                       const uint8_t blob[KEYSTORE_WRAPPED_LEN], uint8_t dek[KEYSTORE_DEK_LEN])
{
	struct file_keystore *fks = (struct file_keystore *)ks;
	memset(dek, 0, KEYSTORE_DEK_LEN);
	if (blob[BLOB_VERSION] != KEYSTORE_WRAP_VERSION)
		return DM_ERR_UNSUPPORTED;
	struct kek *kek = find_kek(fks, get_be32(blob + BLOB_KEK_ID));
	if (!kek)
		return DM_ERR_NOT_FOUND;
	uint8_t ad[KEYSTORE_DEK_AD_LEN];
	keystore_dek_ad(ad, vehicle_id);
	return aead_open(kek->key, blob + BLOB_NONCE, ad, sizeof ad, blob + BLOB_CIPHER,
	                 KEYSTORE_DEK_LEN, blob + BLOB_TAG, dek);
}

static uint32_t file_key_id(const struct keystore *ks)
{
	return ((const struct file_keystore *)ks)->current.id;
}

static void file_destroy(struct keystore *ks)
{
	struct file_keystore *fks = (struct file_keystore *)ks;
	if (fks->old) {
		OPENSSL_cleanse(fks->old, fks->n_old * sizeof *fks->old);
		dm_free(fks->old);
	}
	dm_free(fks->dir);
	OPENSSL_cleanse(fks, sizeof *fks);
	dm_free(fks);
}

static const struct keystore_ops file_ops = {
    .name = "file",
    .wrap = file_wrap,
    .unwrap = file_unwrap,
    .key_id = file_key_id,
    .rotate = keystore_file_rotate,
    .drop = keystore_file_drop,
    .destroy = file_destroy,
};

/* Makes room for one more old KEK without realloc (invariant 4). */
static int grow_old(struct file_keystore *fks)
{
	struct kek *bigger = dm_calloc(fks->n_old + 1, sizeof *bigger);
	if (!bigger)
		return DM_ERR_NOMEM;
	if (fks->old) {
		memcpy(bigger, fks->old, fks->n_old * sizeof *bigger);
		OPENSSL_cleanse(fks->old, fks->n_old * sizeof *fks->old);
		dm_free(fks->old);
	}
	fks->old = bigger;
	return DM_OK;
}

/* Is name "kek-" + 8 lower-case hex digits + ".key"? Then *id is the number. */
static int parse_old_name(const char *name, uint32_t *id)
{
	if (strlen(name) != 16 || strncmp(name, "kek-", 4) != 0 || strcmp(name + 12, ".key") != 0)
		return 0;
	uint32_t value = 0;
	for (int i = 4; i < 12; i++) {
		char c = name[i];
		int digit = c >= '0' && c <= '9'   ? c - '0'
		            : c >= 'a' && c <= 'f' ? c - 'a' + 10
		                                   : -1;
		if (digit < 0)
			return 0;
		value = value << 4 | (uint32_t)digit;
	}
	*id = value;
	return 1;
}

static int load_old_keks(struct file_keystore *fks)
{
	DIR *dir = opendir(fks->dir);
	if (!dir) {
		dm_error("%s: cannot list the directory: %s", fks->dir, strerror(errno));
		return DM_ERR_IO;
	}
	int rc = DM_OK;
	struct dirent *entry;
	while (rc == DM_OK && (entry = readdir(dir)) != NULL) {
		uint32_t named = 0;
		if (!parse_old_name(entry->d_name, &named))
			continue;
		char path[PATH_CAP];
		struct kek kek;
		rc = path_join(path, fks->dir, entry->d_name);
		if (rc == DM_OK)
			rc = read_key_file(path, &kek);
		if (rc == DM_OK && kek.id != named) {
			dm_error("%s: the key in this file has id %08x, not the one its name says",
			         path, (unsigned)kek.id);
			rc = DM_ERR_INVALID;
		}
		/* The current key's own copy: left by a rotation that crashed before
		 * the rename (see the states at the top). */
		if (rc == DM_OK && !find_kek(fks, kek.id)) {
			rc = grow_old(fks);
			if (rc == DM_OK)
				fks->old[fks->n_old++] = kek;
		}
		OPENSSL_cleanse(&kek, sizeof kek);
	}
	closedir(dir);
	return rc;
}

static int new_kek(struct file_keystore *fks, struct kek *kek)
{
	/* Up to a few tries: a clash (id 0 or an id held) has odds of 2^-32. */
	for (int tries = 0; tries < 8; tries++) {
		if (RAND_bytes(kek->key, KEYSTORE_KEK_LEN) != 1)
			break;
		if (kek_id_of(kek->key, &kek->id) != DM_OK)
			break;
		if (kek->id != 0 && (!fks || !find_kek(fks, kek->id)))
			return DM_OK;
	}
	OPENSSL_cleanse(kek, sizeof *kek);
	return DM_ERR_CRYPTO;
}

static int create_current(struct file_keystore *fks, const char *path)
{
	struct kek kek;
	int rc = new_kek(NULL, &kek);
	if (rc == DM_OK)
		rc = write_key_file(path, kek.key);
	if (rc == DM_OK)
		rc = dm_fsync_dir(fks->dir);
	if (rc == DM_OK) {
		fks->current = kek;
		dm_info("%s: made a new key-encryption key, id %08x", path, (unsigned)kek.id);
	}
	OPENSSL_cleanse(&kek, sizeof kek);
	return rc;
}

int keystore_file_open(const char *data_dir, struct keystore **out)
{
	*out = NULL;
	char path[PATH_CAP];
	int rc = path_join(path, data_dir, KEYSTORE_KEK_FILE);
	if (rc != DM_OK)
		return rc;
	struct file_keystore *fks = dm_calloc(1, sizeof *fks);
	if (!fks)
		return DM_ERR_NOMEM;
	fks->base.ops = &file_ops;
	fks->dir = dm_strdup(data_dir);
	if (!fks->dir) {
		file_destroy(&fks->base);
		return DM_ERR_NOMEM;
	}
	struct stat st;
	if (lstat(path, &st) != 0 && errno == ENOENT)
		rc = create_current(fks, path);
	else
		rc = read_key_file(path, &fks->current);
	/* Two nodes starting on one fresh directory: the other one won. */
	if (rc == DM_ERR_EXISTS)
		rc = read_key_file(path, &fks->current);
	if (rc == DM_OK)
		rc = load_old_keks(fks);
	if (rc != DM_OK) {
		file_destroy(&fks->base);
		return rc;
	}
	*out = &fks->base;
	return DM_OK;
}

int keystore_file_rotate(struct keystore *ks, uint32_t *new_id)
{
	if (new_id)
		*new_id = 0;
	if (ks->ops != &file_ops)
		return DM_ERR_UNSUPPORTED;
	struct file_keystore *fks = (struct file_keystore *)ks;
	char cur_path[PATH_CAP], new_path[PATH_CAP], old_path[PATH_CAP];
	int rc = path_join(cur_path, fks->dir, KEYSTORE_KEK_FILE);
	if (rc == DM_OK)
		rc = path_join(new_path, fks->dir, KEYSTORE_KEK_FILE ".new");
	if (rc == DM_OK)
		rc = old_kek_path(old_path, fks->dir, fks->current.id);
	/* Room first, so nothing can fail after the files changed. */
	if (rc == DM_OK)
		rc = grow_old(fks);
	struct kek fresh;
	if (rc == DM_OK)
		rc = new_kek(fks, &fresh);
	if (rc != DM_OK)
		return rc;
	/* A kek.key.new left by a crash never wrapped anything: replace it. */
	if (unlink(new_path) != 0 && errno != ENOENT) {
		dm_error("%s: cannot remove: %s", new_path, strerror(errno));
		rc = DM_ERR_IO;
	}
	if (rc == DM_OK)
		rc = write_key_file(new_path, fresh.key);
	if (rc == DM_OK && link(cur_path, old_path) != 0) {
		if (errno == EEXIST) {
			/* From a crashed rotation: keep it only if it is this very key. */
			struct kek existing;
			rc = read_key_file(old_path, &existing);
			if (rc == DM_OK && existing.id != fks->current.id) {
				dm_error("%s: holds another key than %s", old_path, cur_path);
				rc = DM_ERR_EXISTS;
			}
			OPENSSL_cleanse(&existing, sizeof existing);
		} else {
			dm_error("%s: cannot keep the old key as %s: %s", cur_path, old_path,
			         strerror(errno));
			rc = DM_ERR_IO;
		}
	}
	if (rc == DM_OK)
		rc = dm_fsync_dir(fks->dir);
	if (rc == DM_OK && rename(new_path, cur_path) != 0) {
		dm_error("%s: cannot rename to %s: %s", new_path, cur_path, strerror(errno));
		rc = DM_ERR_IO;
	}
	if (rc != DM_OK) {
		unlink(new_path);
		OPENSSL_cleanse(&fresh, sizeof fresh);
		return rc;
	}
	/* The files now name the new key current, so memory must too, even when
	 * the last fsync fails: the caller then gets DM_ERR_IO and should stop
	 * wrapping, since after a power loss kek.key may be the old key again. */
	fks->old[fks->n_old++] = fks->current;
	fks->current = fresh;
	OPENSSL_cleanse(&fresh, sizeof fresh);
	rc = dm_fsync_dir(fks->dir);
	if (new_id)
		*new_id = fks->current.id;
	dm_info("%s: key-encryption key rotated to id %08x", cur_path, (unsigned)fks->current.id);
	return rc;
}

int keystore_file_drop(struct keystore *ks, uint32_t kek_id)
{
	if (ks->ops != &file_ops)
		return DM_ERR_UNSUPPORTED;
	struct file_keystore *fks = (struct file_keystore *)ks;
	if (kek_id == fks->current.id)
		return DM_ERR_INVALID;
	size_t index = 0;
	while (index < fks->n_old && fks->old[index].id != kek_id)
		index++;
	if (index == fks->n_old)
		return DM_ERR_NOT_FOUND;
	char path[PATH_CAP];
	int rc = old_kek_path(path, fks->dir, kek_id);
	if (rc != DM_OK)
		return rc;
	if (unlink(path) != 0 && errno != ENOENT) {
		dm_error("%s: cannot remove the old key: %s", path, strerror(errno));
		return DM_ERR_IO;
	}
	fks->old[index] = fks->old[fks->n_old - 1];
	OPENSSL_cleanse(&fks->old[fks->n_old - 1], sizeof fks->old[0]);
	fks->n_old--;
	return dm_fsync_dir(fks->dir);
}
