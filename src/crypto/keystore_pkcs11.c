/*
 * keystore_pkcs11.c — the PKCS#11 key store backend (keystore_pkcs11.h has
 * the user's view, the token's objects and the rotation steps; keystore.h
 * the blob).
 *
 * Invariants:
 *  1. The KEK's bytes never enter this process: every use is a call into the
 *     token by object handle, and every KEK we use was checked by check_kek
 *     (sensitive, not extractable, AES-256, a 4-byte non-zero id) first.
 *  2. The PIN is in memory only from reading it to C_Login, then wiped.
 *  3. `current` and `others` mirror the token: after every call that changed
 *     the token (rotate, drop) or failed midway, the cache is updated or
 *     reloaded from the token; when even the reload fails the keystore is
 *     `broken` and refuses everything (DM_ERR_STATE) rather than wrap with a
 *     KEK the token no longer calls current.
 *  4. Nothing is ever destroyed that may have wrapped a blob: only keys
 *     labelled L.retired (by drop, asked by the caller) and L.new while an L
 *     exists (step 1 of a rotation that never reached step 2).
 *
 * States of the KEK objects (labels; see the header for the rule that
 * names the current one):
 *
 *   {L=A, L.retired=R...}
 *      │ rotate 1: C_GenerateKey L.new=B        (fail/crash: A current, B stale)
 *      ▼
 *   {L=A, L.new=B, R...}
 *      │ rotate 2: relabel A → L.retired        (fail/crash: A current, B stale)
 *      ▼
 *   {L.new=B, L.retired=A, R...}                B current: wraps may use it
 *      │ rotate 3: relabel B → L                (fail/crash: B current; the next
 *      ▼                                         rotation redoes this step first)
 *   {L=B, L.retired=A, R...}                    drop(A) destroys A
 */
#include "crypto/keystore_pkcs11.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bytes.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#define SUFFIX_NEW ".new"
#define SUFFIX_RETIRED ".retired"
#define KEK_ID_LEN 4
#define KEK_LEN 32
#define LABEL_CAP (KEYSTORE_PKCS11_KEY_LABEL_MAX + sizeof SUFFIX_RETIRED)
#define FIND_BATCH 16
#define FRESH_ID_TRIES 8

struct kek_ref {
	uint32_t id;
	CK_OBJECT_HANDLE handle;
};

struct pkcs11_keystore {
	struct keystore base;     /* first: a struct keystore * points here */
	CK_FUNCTION_LIST *module; /* loaded by p11-kit, NULL until then */
	int initialized;          /* p11_kit_module_initialize succeeded */
	CK_SESSION_HANDLE session;
	int has_session;
	int read_only; /* the token is write-protected: no rotate, no drop */
	int broken;    /* invariant 3: refuse everything until reopened */
	char *module_path;
	char token[KEYSTORE_PKCS11_TOKEN_LABEL_MAX + 1];
	char label[LABEL_CAP];         /* L */
	char label_new[LABEL_CAP];     /* L.new */
	char label_retired[LABEL_CAP]; /* L.retired */
	struct kek_ref current;
	struct kek_ref *others; /* every other KEK met: retired, or current elsewhere */
	size_t n_others;
};

static const struct keystore_ops pkcs11_ops;

/* ---- small helpers ---- */

/* Translates a PKCS#11 result into the project's error space. */
static int from_ckr(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return DM_OK;
	case CKR_HOST_MEMORY:
		return DM_ERR_NOMEM;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_EXPIRED:
	case CKR_USER_PIN_NOT_INITIALIZED:
	case CKR_USER_NOT_LOGGED_IN:
		return DM_ERR_AUTH;
	case CKR_PIN_LOCKED:
	case CKR_TOKEN_WRITE_PROTECTED:
	case CKR_SESSION_READ_ONLY:
	case CKR_ACTION_PROHIBITED:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_ATTRIBUTE_READ_ONLY:
		return DM_ERR_DENIED;
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SLOT_ID_INVALID:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
		return DM_ERR_NOT_FOUND;
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_MEMORY:
	case CKR_DEVICE_REMOVED:
		return DM_ERR_IO;
	default:
		return DM_ERR_CRYPTO;
	}
}

static const char *ckr_text(CK_RV rv)
{
	const char *text = p11_kit_strerror(rv);
	return text ? text : "unknown PKCS#11 error";
}

static struct kek_ref *find_ref(struct pkcs11_keystore *ks, uint32_t id)
{
	if (ks->current.id == id)
		return &ks->current;
	for (size_t i = 0; i < ks->n_others; i++)
		if (ks->others[i].id == id)
			return &ks->others[i];
	return NULL;
}

static int add_other(struct pkcs11_keystore *ks, struct kek_ref ref)
{
	/* Handles and ids only, no key material: realloc is fine here. */
	struct kek_ref *bigger = dm_realloc(ks->others, (ks->n_others + 1) * sizeof *bigger);
	if (!bigger)
		return DM_ERR_NOMEM;
	ks->others = bigger;
	ks->others[ks->n_others++] = ref;
	return DM_OK;
}

static void remove_other(struct pkcs11_keystore *ks, uint32_t id)
{
	for (size_t i = 0; i < ks->n_others; i++)
		if (ks->others[i].id == id) {
			ks->others[i] = ks->others[--ks->n_others];
			return;
		}
}

/* ---- options and the PIN ---- */

static int has_suffix(const char *s, const char *suffix)
{
	size_t len = strlen(s), suffix_len = strlen(suffix);
	return len >= suffix_len && strcmp(s + len - suffix_len, suffix) == 0;
}

static int check_options(const struct keystore_pkcs11_options *o)
{
	if (!o->module || !o->module[0]) {
		dm_error("pkcs11: no module path given");
		return DM_ERR_INVALID;
	}
	if (!o->token || !o->token[0] || strlen(o->token) > KEYSTORE_PKCS11_TOKEN_LABEL_MAX) {
		dm_error("pkcs11: a token label is 1 to %d bytes", KEYSTORE_PKCS11_TOKEN_LABEL_MAX);
		return DM_ERR_INVALID;
	}
	if (!o->key || !o->key[0] || strlen(o->key) > KEYSTORE_PKCS11_KEY_LABEL_MAX) {
		dm_error("pkcs11: a key label is 1 to %d bytes", KEYSTORE_PKCS11_KEY_LABEL_MAX);
		return DM_ERR_INVALID;
	}
	if (has_suffix(o->key, SUFFIX_NEW) || has_suffix(o->key, SUFFIX_RETIRED)) {
		dm_error("pkcs11: key label '%s' may not end in '" SUFFIX_NEW
		         "' or '" SUFFIX_RETIRED "': those name the keys of a rotation",
		         o->key);
		return DM_ERR_INVALID;
	}
	if (!o->pin && (!o->pin_file || !o->pin_file[0])) {
		dm_error("pkcs11: neither a PIN nor a PIN file given");
		return DM_ERR_INVALID;
	}
	if (o->pin && (!o->pin[0] || strlen(o->pin) > KEYSTORE_PKCS11_PIN_MAX)) {
		dm_error("pkcs11: a PIN is 1 to %d bytes", KEYSTORE_PKCS11_PIN_MAX);
		return DM_ERR_INVALID;
	}
	return DM_OK;
}

/* Reads the PIN file into pin (NUL-terminated, *len bytes). */
static int read_pin_file(const char *path, char pin[KEYSTORE_PKCS11_PIN_MAX + 1], size_t *len)
{
	int fd;
	int rc = dm_open_secret(path, "the PIN file", 0, &fd);
	if (rc)
		return rc;
	/* Room for the longest PIN, "\r\n", and one byte to notice more. */
	char raw[KEYSTORE_PKCS11_PIN_MAX + 3];
	size_t used = 0;
	while (rc == DM_OK && used < sizeof raw) {
		ssize_t got = read(fd, raw + used, sizeof raw - used);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			dm_error("%s: cannot read the PIN file: %s", path, strerror(errno));
			rc = DM_ERR_IO;
		} else if (got == 0) {
			break;
		} else {
			used += (size_t)got;
		}
	}
	close(fd);
	if (rc == DM_OK) {
		if (used > 0 && raw[used - 1] == '\n')
			used--;
		if (used > 0 && raw[used - 1] == '\r')
			used--;
		if (used == 0) {
			dm_error("%s: the PIN file is empty", path);
			rc = DM_ERR_INVALID;
		} else if (used > KEYSTORE_PKCS11_PIN_MAX) {
			dm_error("%s: a PIN is at most %d bytes", path, KEYSTORE_PKCS11_PIN_MAX);
			rc = DM_ERR_INVALID;
		} else if (memchr(raw, '\n', used) || memchr(raw, '\r', used) ||
		           memchr(raw, '\0', used)) {
			dm_error("%s: a PIN file holds one line, the PIN", path);
			rc = DM_ERR_INVALID;
		}
	}
	if (rc == DM_OK) {
		memcpy(pin, raw, used);
		pin[used] = '\0';
		*len = used;
	}
	OPENSSL_cleanse(raw, sizeof raw);
	return rc;
}

/* ---- module, token, session ---- */

static int load_module(struct pkcs11_keystore *ks)
{
	struct stat st;
	if (stat(ks->module_path, &st) != 0) {
		int err = errno;
		dm_error("%s: cannot use the PKCS#11 module: %s", ks->module_path, strerror(err));
		return err == ENOENT ? DM_ERR_NOT_FOUND : DM_ERR_IO;
	}
	/* Managed (flags 0): p11-kit counts initialisations, so several users of
	 * one module in a process do not finalise each other. */
	ks->module = p11_kit_module_load(ks->module_path, 0);
	if (!ks->module) {
		const char *why = p11_kit_message();
		dm_error("%s: cannot load the PKCS#11 module: %s", ks->module_path,
		         why ? why : "not a PKCS#11 module");
		return DM_ERR_INVALID;
	}
	CK_RV rv = p11_kit_module_initialize(ks->module);
	if (rv != CKR_OK) {
		dm_error("%s: the PKCS#11 module failed to initialise: %s", ks->module_path,
		         ckr_text(rv));
		return DM_ERR_CRYPTO;
	}
	ks->initialized = 1;
	return DM_OK;
}

static int find_slot(struct pkcs11_keystore *ks, CK_SLOT_ID *slot)
{
	CK_FUNCTION_LIST *f = ks->module;
	CK_SLOT_ID *slots = NULL;
	CK_ULONG count = 0;
	CK_RV rv = CKR_OK;
	/* The list can grow between the two calls (a token plugged in). */
	for (int tries = 0; tries < 4; tries++) {
		rv = f->C_GetSlotList(CK_TRUE, NULL, &count);
		if (rv != CKR_OK)
			break;
		dm_free(slots);
		slots = dm_calloc(count ? count : 1, sizeof *slots);
		if (!slots)
			return DM_ERR_NOMEM;
		rv = f->C_GetSlotList(CK_TRUE, slots, &count);
		if (rv != CKR_BUFFER_TOO_SMALL)
			break;
	}
	if (rv != CKR_OK) {
		dm_error("%s: cannot list the tokens: %s", ks->module_path, ckr_text(rv));
		dm_free(slots);
		return from_ckr(rv);
	}
	size_t want = strlen(ks->token), matches = 0;
	for (CK_ULONG i = 0; i < count; i++) {
		CK_TOKEN_INFO info;
		if (f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue; /* removed meanwhile */
		size_t len = p11_kit_space_strlen(info.label, sizeof info.label);
		if (len == want && memcmp(info.label, ks->token, want) == 0) {
			if (matches++ == 0)
				*slot = slots[i];
			if (info.flags & CKF_WRITE_PROTECTED)
				ks->read_only = 1;
		}
	}
	dm_free(slots);
	if (matches == 0) {
		dm_error("%s: no token labelled '%s' (%lu tokens present)", ks->module_path,
		         ks->token, (unsigned long)count);
		return DM_ERR_NOT_FOUND;
	}
	if (matches > 1) {
		dm_error("%s: %zu tokens are labelled '%s'; labels must be unique", ks->module_path,
		         matches, ks->token);
		return DM_ERR_INVALID;
	}
	return DM_OK;
}

static int open_session(struct pkcs11_keystore *ks, CK_SLOT_ID slot, const char *pin,
                        size_t pin_len)
{
	CK_FUNCTION_LIST *f = ks->module;
	CK_FLAGS flags = CKF_SERIAL_SESSION | (ks->read_only ? 0 : CKF_RW_SESSION);
	CK_RV rv = f->C_OpenSession(slot, flags, NULL, NULL, &ks->session);
	if (rv == CKR_TOKEN_WRITE_PROTECTED && !ks->read_only) {
		ks->read_only = 1;
		rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ks->session);
	}
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot open a session: %s", ks->token, ckr_text(rv));
		return from_ckr(rv);
	}
	ks->has_session = 1;
	rv = f->C_Login(ks->session, CKU_USER, (CK_UTF8CHAR *)pin, (CK_ULONG)pin_len);
	/* Already logged in: by another session of this process (see the header). */
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		dm_error("pkcs11 token '%s': cannot log in: %s%s", ks->token, ckr_text(rv),
		         rv == CKR_PIN_INCORRECT ? " (the PIN is wrong)" : "");
		return from_ckr(rv);
	}
	return DM_OK;
}

/* Validates the options, loads the module, finds the token and logs in.
 * On failure *out is NULL and everything is released. */
static int connect_token(const struct keystore_pkcs11_options *o, struct pkcs11_keystore **out)
{
	*out = NULL;
	int rc = check_options(o);
	if (rc != DM_OK)
		return rc;
	char pin[KEYSTORE_PKCS11_PIN_MAX + 1];
	size_t pin_len = 0;
	if (o->pin) {
		pin_len = strlen(o->pin);
		memcpy(pin, o->pin, pin_len + 1);
	} else {
		rc = read_pin_file(o->pin_file, pin, &pin_len);
		if (rc != DM_OK)
			return rc;
	}
	struct pkcs11_keystore *ks = dm_calloc(1, sizeof *ks);
	if (!ks) {
		OPENSSL_cleanse(pin, sizeof pin);
		return DM_ERR_NOMEM;
	}
	ks->base.ops = &pkcs11_ops;
	snprintf(ks->token, sizeof ks->token, "%s", o->token);
	snprintf(ks->label, sizeof ks->label, "%s", o->key);
	snprintf(ks->label_new, sizeof ks->label_new, "%s" SUFFIX_NEW, o->key);
	snprintf(ks->label_retired, sizeof ks->label_retired, "%s" SUFFIX_RETIRED, o->key);
	ks->module_path = dm_strdup(o->module);
	rc = ks->module_path ? load_module(ks) : DM_ERR_NOMEM;
	CK_SLOT_ID slot = 0;
	if (rc == DM_OK)
		rc = find_slot(ks, &slot);
	if (rc == DM_OK)
		rc = open_session(ks, slot, pin, pin_len);
	OPENSSL_cleanse(pin, sizeof pin);
	if (rc != DM_OK) {
		keystore_free(&ks->base);
		return rc;
	}
	*out = ks;
	return DM_OK;
}

/* ---- objects ---- */

/* Every secret key labelled `label` (and with CKA_ID id, when id is not
 * NULL; with any label when label is NULL). *out: caller frees with dm_free. */
static int find_keys(struct pkcs11_keystore *ks, const char *label, const uint8_t *id,
                     CK_OBJECT_HANDLE **out, size_t *count)
{
	*out = NULL;
	*count = 0;
	CK_FUNCTION_LIST *f = ks->module;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE template[3] = {{CKA_CLASS, &cls, sizeof cls}};
	CK_ULONG n = 1;
	if (label)
		template[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
	if (id)
		template[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, KEK_ID_LEN};
	CK_RV rv = f->C_FindObjectsInit(ks->session, template, n);
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot search for keys: %s", ks->token, ckr_text(rv));
		return from_ckr(rv);
	}
	CK_OBJECT_HANDLE *handles = NULL;
	size_t used = 0;
	int rc = DM_OK;
	for (;;) {
		CK_OBJECT_HANDLE *bigger =
		    dm_realloc(handles, (used + FIND_BATCH) * sizeof *bigger);
		if (!bigger) {
			rc = DM_ERR_NOMEM;
			break;
		}
		handles = bigger;
		CK_ULONG got = 0;
		rv = f->C_FindObjects(ks->session, handles + used, FIND_BATCH, &got);
		if (rv != CKR_OK) {
			dm_error("pkcs11 token '%s': cannot search for keys: %s", ks->token,
			         ckr_text(rv));
			rc = from_ckr(rv);
			break;
		}
		used += got;
		if (got == 0)
			break;
	}
	f->C_FindObjectsFinal(ks->session);
	if (rc != DM_OK) {
		dm_free(handles);
		return rc;
	}
	*out = handles;
	*count = used;
	return DM_OK;
}

static int read_bool(struct pkcs11_keystore *ks, CK_OBJECT_HANDLE key, CK_ATTRIBUTE_TYPE type,
                     CK_BBOOL *value)
{
	CK_ATTRIBUTE attr = {type, value, sizeof *value};
	CK_RV rv = ks->module->C_GetAttributeValue(ks->session, key, &attr, 1);
	return rv == CKR_OK && attr.ulValueLen == sizeof *value ? DM_OK : DM_ERR_NOT_FOUND;
}

/* Checks that key, labelled label, may serve as a KEK (invariant 1) and
 * reads its id. need_encrypt: it is to wrap, not only unwrap. */
static int check_kek(struct pkcs11_keystore *ks, CK_OBJECT_HANDLE key, const char *label,
                     int need_encrypt, struct kek_ref *ref)
{
	CK_KEY_TYPE type = 0;
	CK_ULONG value_len = 0;
	CK_BBOOL extractable = CK_TRUE, sensitive = CK_FALSE, encrypt = CK_FALSE,
	         decrypt = CK_FALSE;
	uint8_t id[64];
	CK_ATTRIBUTE attrs[] = {
	    {CKA_EXTRACTABLE, &extractable, sizeof extractable},
	    {CKA_SENSITIVE, &sensitive, sizeof sensitive},
	    {CKA_KEY_TYPE, &type, sizeof type},
	    {CKA_VALUE_LEN, &value_len, sizeof value_len},
	    {CKA_ENCRYPT, &encrypt, sizeof encrypt},
	    {CKA_DECRYPT, &decrypt, sizeof decrypt},
	    {CKA_ID, id, sizeof id},
	};
	CK_RV rv = ks->module->C_GetAttributeValue(ks->session, key, attrs,
	                                           sizeof attrs / sizeof attrs[0]);
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s', key '%s': cannot read its attributes: %s", ks->token,
		         label, ckr_text(rv));
		return rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
		               rv == CKR_BUFFER_TOO_SMALL
		           ? DM_ERR_INVALID
		           : from_ckr(rv);
	}
	if (extractable != CK_FALSE) {
		dm_error("pkcs11 token '%s', key '%s': the key is extractable (CKA_EXTRACTABLE "
		         "true), so it can leave the token; a KEK must not. Make a new one with "
		         "'domicile keys pkcs11-init'",
		         ks->token, label);
		return DM_ERR_DENIED;
	}
	if (sensitive != CK_TRUE) {
		dm_error("pkcs11 token '%s', key '%s': the key is not sensitive (CKA_SENSITIVE "
		         "false), so its value can be read; a KEK must be sensitive",
		         ks->token, label);
		return DM_ERR_DENIED;
	}
	if (type != CKK_AES || value_len != KEK_LEN) {
		dm_error("pkcs11 token '%s', key '%s': a KEK is an AES-256 key (%d bytes)",
		         ks->token, label, KEK_LEN);
		return DM_ERR_INVALID;
	}
	if (decrypt != CK_TRUE || (need_encrypt && encrypt != CK_TRUE)) {
		dm_error("pkcs11 token '%s', key '%s': the key does not allow %s", ks->token, label,
		         decrypt != CK_TRUE ? "decryption (CKA_DECRYPT)"
		                            : "encryption (CKA_ENCRYPT)");
		return DM_ERR_INVALID;
	}
	if (attrs[6].ulValueLen != KEK_ID_LEN || get_be32(id) == 0) {
		dm_error("pkcs11 token '%s', key '%s': its CKA_ID must be %d bytes and not zero, "
		         "the kek id",
		         ks->token, label, KEK_ID_LEN);
		return DM_ERR_INVALID;
	}
	/* Once extractable or readable, a copy may exist outside: say so, but a
	 * token may not know (these are optional), so do not refuse. */
	CK_BBOOL never_extractable = CK_TRUE, always_sensitive = CK_TRUE;
	if ((read_bool(ks, key, CKA_NEVER_EXTRACTABLE, &never_extractable) == DM_OK &&
	     never_extractable != CK_TRUE) ||
	    (read_bool(ks, key, CKA_ALWAYS_SENSITIVE, &always_sensitive) == DM_OK &&
	     always_sensitive != CK_TRUE))
		dm_warn("pkcs11 token '%s', key '%s': the key was once extractable or not "
		        "sensitive; a copy may exist outside the token",
		        ks->token, label);
	ref->id = get_be32(id);
	ref->handle = key;
	return DM_OK;
}

/* Finds and checks the keys labelled L, L.new and L.retired (see the header
 * for which is current) into a fresh cache. */
static int load_keks(struct pkcs11_keystore *ks)
{
	CK_OBJECT_HANDLE *cur = NULL, *fresh = NULL, *retired = NULL;
	size_t n_cur = 0, n_fresh = 0, n_retired = 0;
	ks->current = (struct kek_ref){0, CK_INVALID_HANDLE};
	dm_free(ks->others);
	ks->others = NULL;
	ks->n_others = 0;
	int rc = find_keys(ks, ks->label, NULL, &cur, &n_cur);
	if (rc == DM_OK)
		rc = find_keys(ks, ks->label_new, NULL, &fresh, &n_fresh);
	if (rc == DM_OK)
		rc = find_keys(ks, ks->label_retired, NULL, &retired, &n_retired);
	if (rc == DM_OK && (n_cur > 1 || n_fresh > 1)) {
		dm_error("pkcs11 token '%s': %zu keys are labelled '%s'; there must be one",
		         ks->token, n_cur > 1 ? n_cur : n_fresh,
		         n_cur > 1 ? ks->label : ks->label_new);
		rc = DM_ERR_INVALID;
	}
	if (rc == DM_OK && n_cur == 0 && n_fresh == 0) {
		dm_error("pkcs11 token '%s': no key labelled '%s' (make it with 'domicile keys "
		         "pkcs11-init')",
		         ks->token, ks->label);
		rc = DM_ERR_NOT_FOUND;
	}
	if (rc == DM_OK && n_cur == 1) {
		rc = check_kek(ks, cur[0], ks->label, 1, &ks->current);
		if (rc == DM_OK && n_fresh == 1)
			dm_info("pkcs11 token '%s': '%s' is left from a rotation that stopped "
			        "before its second step; it never wrapped a key and the next "
			        "rotation destroys it",
			        ks->token, ks->label_new);
	} else if (rc == DM_OK) {
		rc = check_kek(ks, fresh[0], ks->label_new, 1, &ks->current);
		if (rc == DM_OK)
			dm_warn("pkcs11 token '%s': a rotation stopped before its last step; '%s' "
			        "(id %08x) is current, and the next rotation relabels it '%s'",
			        ks->token, ks->label_new, (unsigned)ks->current.id, ks->label);
	}
	for (size_t i = 0; rc == DM_OK && i < n_retired; i++) {
		struct kek_ref ref;
		rc = check_kek(ks, retired[i], ks->label_retired, 0, &ref);
		if (rc == DM_OK && find_ref(ks, ref.id)) {
			dm_error("pkcs11 token '%s': two keys labelled '%s' or '%s' have id %08x",
			         ks->token, ks->label, ks->label_retired, (unsigned)ref.id);
			rc = DM_ERR_INVALID;
		}
		if (rc == DM_OK)
			rc = add_other(ks, ref);
	}
	dm_free(cur);
	dm_free(fresh);
	dm_free(retired);
	return rc;
}

/* A KEK of this id the cache does not know: made or relabelled by another
 * process since this one opened. Adds it to the cache. */
static int lookup_kek(struct pkcs11_keystore *ks, uint32_t id, struct kek_ref **found)
{
	*found = NULL;
	uint8_t id_bytes[KEK_ID_LEN];
	put_be32(id_bytes, id);
	const char *labels[] = {ks->label_retired, ks->label, ks->label_new};
	for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
		CK_OBJECT_HANDLE *handles = NULL;
		size_t count = 0;
		int rc = find_keys(ks, labels[i], id_bytes, &handles, &count);
		struct kek_ref ref;
		if (rc == DM_OK && count > 0)
			rc = check_kek(ks, handles[0], labels[i], 0, &ref);
		dm_free(handles);
		if (rc != DM_OK)
			return rc;
		if (count > 0) {
			rc = add_other(ks, ref);
			if (rc == DM_OK)
				*found = &ks->others[ks->n_others - 1];
			return rc;
		}
	}
	return DM_ERR_NOT_FOUND;
}

static int set_label(struct pkcs11_keystore *ks, CK_OBJECT_HANDLE key, const char *label)
{
	CK_ATTRIBUTE attr = {CKA_LABEL, (void *)label, strlen(label)};
	CK_RV rv = ks->module->C_SetAttributeValue(ks->session, key, &attr, 1);
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot relabel a key '%s': %s", ks->token, label,
		         ckr_text(rv));
		return from_ckr(rv);
	}
	return DM_OK;
}

static int destroy_key(struct pkcs11_keystore *ks, CK_OBJECT_HANDLE key, const char *label)
{
	CK_RV rv = ks->module->C_DestroyObject(ks->session, key);
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot destroy key '%s': %s", ks->token, label,
		         ckr_text(rv));
		return from_ckr(rv);
	}
	return DM_OK;
}

/* A random id no secret key of the token has (invariant: ids unique). */
static int fresh_id(struct pkcs11_keystore *ks, uint32_t *id)
{
	for (int tries = 0; tries < FRESH_ID_TRIES; tries++) {
		uint8_t bytes[KEK_ID_LEN];
		if (RAND_bytes(bytes, sizeof bytes) != 1)
			return DM_ERR_CRYPTO;
		if (get_be32(bytes) == 0)
			continue;
		CK_OBJECT_HANDLE *handles = NULL;
		size_t count = 0;
		int rc = find_keys(ks, NULL, bytes, &handles, &count);
		dm_free(handles);
		if (rc != DM_OK)
			return rc;
		if (count == 0) {
			*id = get_be32(bytes);
			return DM_OK;
		}
	}
	dm_error("pkcs11 token '%s': no free key id found", ks->token);
	return DM_ERR_CRYPTO;
}

/* Generates a KEK inside the token (the attributes of the header). */
static int generate_kek(struct pkcs11_keystore *ks, const char *label, uint32_t id,
                        CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_ULONG len = KEK_LEN;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	uint8_t id_bytes[KEK_ID_LEN];
	put_be32(id_bytes, id);
	CK_ATTRIBUTE template[] = {
	    {CKA_CLASS, &cls, sizeof cls},
	    {CKA_KEY_TYPE, &type, sizeof type},
	    {CKA_VALUE_LEN, &len, sizeof len},
	    {CKA_TOKEN, &yes, sizeof yes},
	    {CKA_PRIVATE, &yes, sizeof yes},
	    {CKA_SENSITIVE, &yes, sizeof yes},
	    {CKA_EXTRACTABLE, &no, sizeof no},
	    {CKA_ENCRYPT, &yes, sizeof yes},
	    {CKA_DECRYPT, &yes, sizeof yes},
	    {CKA_WRAP, &no, sizeof no},
	    {CKA_UNWRAP, &no, sizeof no},
	    {CKA_SIGN, &no, sizeof no},
	    {CKA_VERIFY, &no, sizeof no},
	    {CKA_DERIVE, &no, sizeof no},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, id_bytes, sizeof id_bytes},
	};
	CK_MECHANISM mechanism = {CKM_AES_KEY_GEN, NULL, 0};
	CK_RV rv = ks->module->C_GenerateKey(ks->session, &mechanism, template,
	                                     sizeof template / sizeof template[0], key);
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot generate key '%s': %s", ks->token, label,
		         ckr_text(rv));
		return rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_VALUE_INVALID
		           ? DM_ERR_DENIED
		           : from_ckr(rv);
	}
	return DM_OK;
}

/* ---- AES-GCM inside the token ---- */

/* GCM parameters of one wrap or unwrap. ulIvBits is PKCS#11 2.40's (and
 * 3.0's) field; SoftHSM2 2.6 reads only pIv/ulIvLen, pAAD/ulAADLen and
 * ulTagBits, and checks ulParameterLen == sizeof(CK_GCM_PARAMS) with the
 * same 2.40 layout, which is p11-kit's too. The IV is written into the
 * blob before the call and read from there, so a token that insists on
 * making its own IV (and writes it back to pIv) still yields a valid blob. */
static CK_GCM_PARAMS gcm_params(uint8_t *iv, uint8_t *ad)
{
	CK_GCM_PARAMS gcm;
	memset(&gcm, 0, sizeof gcm);
	gcm.pIv = iv;
	gcm.ulIvLen = KEYSTORE_BLOB_NONCE_LEN;
	gcm.ulIvBits = KEYSTORE_BLOB_NONCE_LEN * 8;
	gcm.pAAD = ad;
	gcm.ulAADLen = KEYSTORE_DEK_AD_LEN;
	gcm.ulTagBits = KEYSTORE_BLOB_TAG_LEN * 8;
	return gcm;
}

static int check_usable(const struct pkcs11_keystore *ks)
{
	if (ks->broken) {
		dm_error("pkcs11 token '%s': the key store lost track of its keys after a failed "
		         "rotation; reopen it",
		         ks->token);
		return DM_ERR_STATE;
	}
	return DM_OK;
}

static int pkcs11_wrap(struct keystore *base, uint32_t vehicle_id,
                       const uint8_t dek[KEYSTORE_DEK_LEN], uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	struct pkcs11_keystore *ks = (struct pkcs11_keystore *)base;
	CK_FUNCTION_LIST *f = ks->module;
	int rc = check_usable(ks);
	uint8_t ad[KEYSTORE_DEK_AD_LEN];
	keystore_dek_ad(ad, vehicle_id);
	keystore_blob_begin(blob, ks->current.id);
	if (rc == DM_OK && RAND_bytes(blob + KEYSTORE_BLOB_NONCE, KEYSTORE_BLOB_NONCE_LEN) != 1)
		rc = DM_ERR_CRYPTO;
	CK_GCM_PARAMS gcm = gcm_params(blob + KEYSTORE_BLOB_NONCE, ad);
	CK_MECHANISM mechanism = {CKM_AES_GCM, &gcm, sizeof gcm};
	CK_RV rv = CKR_OK;
	if (rc == DM_OK)
		rv = f->C_EncryptInit(ks->session, &mechanism, ks->current.handle);
	/* The output is ciphertext || tag, which is the blob's tail. */
	CK_ULONG out_len = KEYSTORE_DEK_LEN + KEYSTORE_BLOB_TAG_LEN;
	if (rc == DM_OK && rv == CKR_OK)
		rv = f->C_Encrypt(ks->session, (CK_BYTE *)dek, KEYSTORE_DEK_LEN,
		                  blob + KEYSTORE_BLOB_CIPHER, &out_len);
	if (rc == DM_OK && rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot wrap a data key with key %08x: %s", ks->token,
		         (unsigned)ks->current.id, ckr_text(rv));
		rc = from_ckr(rv) == DM_ERR_NOMEM ? DM_ERR_NOMEM : DM_ERR_CRYPTO;
	}
	if (rc == DM_OK && out_len != KEYSTORE_DEK_LEN + KEYSTORE_BLOB_TAG_LEN) {
		dm_error("pkcs11 token '%s': wrapping gave %lu bytes, not %d", ks->token,
		         (unsigned long)out_len, KEYSTORE_DEK_LEN + KEYSTORE_BLOB_TAG_LEN);
		rc = DM_ERR_CRYPTO;
	}
	if (rc != DM_OK)
		memset(blob, 0, KEYSTORE_WRAPPED_LEN);
	return rc;
}

static int pkcs11_unwrap(struct keystore *base, uint32_t vehicle_id,
                         const uint8_t blob[KEYSTORE_WRAPPED_LEN], uint8_t dek[KEYSTORE_DEK_LEN])
{
	struct pkcs11_keystore *ks = (struct pkcs11_keystore *)base;
	CK_FUNCTION_LIST *f = ks->module;
	memset(dek, 0, KEYSTORE_DEK_LEN);
	int rc = check_usable(ks);
	if (rc != DM_OK)
		return rc;
	if (blob[KEYSTORE_BLOB_VERSION] != KEYSTORE_WRAP_VERSION)
		return DM_ERR_UNSUPPORTED;
	uint32_t id = keystore_blob_kek_id(blob);
	if (id == 0)
		return DM_ERR_NOT_FOUND;
	struct kek_ref *kek = find_ref(ks, id);
	if (!kek) {
		rc = lookup_kek(ks, id, &kek);
		if (rc != DM_OK)
			return rc;
	}
	/* C_Decrypt wants room for the whole input, tag included, on some
	 * tokens (SoftHSM2 does), before it knows the tag's length. */
	uint8_t nonce[KEYSTORE_BLOB_NONCE_LEN], ad[KEYSTORE_DEK_AD_LEN];
	uint8_t plain[KEYSTORE_DEK_LEN + KEYSTORE_BLOB_TAG_LEN];
	memcpy(nonce, blob + KEYSTORE_BLOB_NONCE, sizeof nonce);
	keystore_dek_ad(ad, vehicle_id);
	CK_GCM_PARAMS gcm = gcm_params(nonce, ad);
	CK_MECHANISM mechanism = {CKM_AES_GCM, &gcm, sizeof gcm};
	CK_RV rv = f->C_DecryptInit(ks->session, &mechanism, kek->handle);
	if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) {
		/* Destroyed by another process since: as if dropped. */
		dm_warn("pkcs11 token '%s': key %08x is gone from the token", ks->token,
		        (unsigned)id);
		if (kek != &ks->current)
			remove_other(ks, id);
		return DM_ERR_NOT_FOUND;
	}
	if (rv != CKR_OK) {
		dm_error("pkcs11 token '%s': cannot unwrap with key %08x: %s", ks->token,
		         (unsigned)id, ckr_text(rv));
		return from_ckr(rv) == DM_ERR_NOMEM ? DM_ERR_NOMEM : DM_ERR_CRYPTO;
	}
	CK_ULONG out_len = sizeof plain;
	rv = f->C_Decrypt(ks->session, (CK_BYTE *)blob + KEYSTORE_BLOB_CIPHER,
	                  KEYSTORE_DEK_LEN + KEYSTORE_BLOB_TAG_LEN, plain, &out_len);
	/* A failed tag (another vehicle, a damaged blob) is an answer, not an
	 * event: not logged, like aead_open's. */
	if (rv == CKR_OK && out_len == KEYSTORE_DEK_LEN)
		memcpy(dek, plain, KEYSTORE_DEK_LEN);
	else
		rc = rv == CKR_HOST_MEMORY ? DM_ERR_NOMEM : DM_ERR_CRYPTO;
	OPENSSL_cleanse(plain, sizeof plain);
	return rc;
}

static uint32_t pkcs11_key_id(const struct keystore *base)
{
	return ((const struct pkcs11_keystore *)base)->current.id;
}

/* Invariant 3 after a failed step: the token's view, or the error state. */
static void reload_after_failure(struct pkcs11_keystore *ks)
{
	if (load_keks(ks) != DM_OK) {
		ks->broken = 1;
		dm_error("pkcs11 token '%s': cannot reload the keys after a failed rotation; "
		         "the key store refuses work until reopened",
		         ks->token);
	}
}

/* Before step 1: finish or clear what an earlier rotation left (header). */
static int tidy_before_rotation(struct pkcs11_keystore *ks)
{
	CK_OBJECT_HANDLE *cur = NULL, *fresh = NULL;
	size_t n_cur = 0, n_fresh = 0;
	int rc = find_keys(ks, ks->label, NULL, &cur, &n_cur);
	if (rc == DM_OK)
		rc = find_keys(ks, ks->label_new, NULL, &fresh, &n_fresh);
	struct kek_ref ref = {0, CK_INVALID_HANDLE};
	if (rc == DM_OK && (n_cur > 1 || n_fresh > 1 || (n_cur == 0 && n_fresh == 0))) {
		dm_error("pkcs11 token '%s': expected one key labelled '%s' or '%s', found %zu and "
		         "%zu",
		         ks->token, ks->label, ks->label_new, n_cur, n_fresh);
		rc = n_cur + n_fresh == 0 ? DM_ERR_NOT_FOUND : DM_ERR_INVALID;
	}
	/* Whichever the token calls current must be the one this keystore wraps
	 * with, or another process rotated and our blobs would go unnoticed. */
	if (rc == DM_OK)
		rc = check_kek(ks, n_cur == 1 ? cur[0] : fresh[0],
		               n_cur == 1 ? ks->label : ks->label_new, 1, &ref);
	if (rc == DM_OK && ref.id != ks->current.id) {
		dm_error("pkcs11 token '%s': the token's current key is %08x, this key store's "
		         "%08x: another process rotated; reopen the key store",
		         ks->token, (unsigned)ref.id, (unsigned)ks->current.id);
		rc = DM_ERR_STATE;
	}
	if (rc == DM_OK && n_cur == 1 && n_fresh == 1) {
		rc = destroy_key(ks, fresh[0], ks->label_new);
		if (rc == DM_OK)
			dm_info("pkcs11 token '%s': destroyed '%s', left by a rotation that never "
			        "used it",
			        ks->token, ks->label_new);
	}
	if (rc == DM_OK && n_cur == 0) {
		rc = set_label(ks, fresh[0], ks->label);
		if (rc == DM_OK) {
			ks->current.handle = fresh[0];
			dm_info("pkcs11 token '%s': finished an earlier rotation: key %08x is now "
			        "labelled '%s'",
			        ks->token, (unsigned)ks->current.id, ks->label);
		}
	}
	dm_free(cur);
	dm_free(fresh);
	return rc;
}

static int pkcs11_rotate(struct keystore *base, uint32_t *new_id)
{
	struct pkcs11_keystore *ks = (struct pkcs11_keystore *)base;
	int rc = check_usable(ks);
	if (rc != DM_OK)
		return rc;
	if (ks->read_only) {
		dm_error("pkcs11 token '%s' is write-protected: cannot rotate", ks->token);
		return DM_ERR_DENIED;
	}
	rc = tidy_before_rotation(ks);
	uint32_t id = 0;
	if (rc == DM_OK)
		rc = fresh_id(ks, &id);
	/* Room in the cache first, so nothing can fail after step 3. */
	if (rc == DM_OK)
		rc = add_other(ks, ks->current);
	if (rc != DM_OK)
		return rc;
	ks->n_others--; /* reserved, not yet used */

	/* Step 1. */
	CK_OBJECT_HANDLE fresh = CK_INVALID_HANDLE;
	struct kek_ref fresh_ref;
	rc = generate_kek(ks, ks->label_new, id, &fresh);
	if (rc != DM_OK)
		return rc;
	rc = check_kek(ks, fresh, ks->label_new, 1, &fresh_ref);
	if (rc == DM_OK && fresh_ref.id != id) {
		dm_error("pkcs11 token '%s': the new key has id %08x, not %08x", ks->token,
		         (unsigned)fresh_ref.id, (unsigned)id);
		rc = DM_ERR_CRYPTO;
	}
	if (rc != DM_OK) {
		/* Never current, never wrapped anything (invariant 4). */
		destroy_key(ks, fresh, ks->label_new);
		return rc;
	}

	/* Step 2. */
	rc = set_label(ks, ks->current.handle, ks->label_retired);
	if (rc != DM_OK) {
		/* The relabel may have happened anyway: ask the token. */
		reload_after_failure(ks);
		return rc;
	}

	/* From here the new key is current by the header's rule. */
	ks->others[ks->n_others++] = ks->current;
	ks->current = fresh_ref;
	if (new_id)
		*new_id = id;

	/* Step 3. */
	if (set_label(ks, fresh, ks->label) != DM_OK)
		dm_warn("pkcs11 token '%s': key %08x is current but still labelled '%s'; the next "
		        "rotation relabels it",
		        ks->token, (unsigned)id, ks->label_new);
	dm_info("pkcs11 token '%s': key-encryption key rotated to id %08x", ks->token,
	        (unsigned)id);
	return DM_OK;
}

static int pkcs11_drop(struct keystore *base, uint32_t kek_id)
{
	struct pkcs11_keystore *ks = (struct pkcs11_keystore *)base;
	int rc = check_usable(ks);
	if (rc != DM_OK)
		return rc;
	if (kek_id == ks->current.id)
		return DM_ERR_INVALID;
	if (kek_id == 0)
		return DM_ERR_NOT_FOUND;
	uint8_t id_bytes[KEK_ID_LEN];
	put_be32(id_bytes, kek_id);
	CK_OBJECT_HANDLE *handles = NULL;
	size_t count = 0;
	rc = find_keys(ks, ks->label_retired, id_bytes, &handles, &count);
	if (rc == DM_OK && count == 0)
		rc = DM_ERR_NOT_FOUND;
	if (rc == DM_OK && ks->read_only) {
		dm_error("pkcs11 token '%s' is write-protected: cannot drop key %08x", ks->token,
		         (unsigned)kek_id);
		rc = DM_ERR_DENIED;
	}
	for (size_t i = 0; rc == DM_OK && i < count; i++)
		rc = destroy_key(ks, handles[i], ks->label_retired);
	dm_free(handles);
	if (rc == DM_OK) {
		remove_other(ks, kek_id);
		dm_info("pkcs11 token '%s': destroyed the retired key-encryption key %08x",
		        ks->token, (unsigned)kek_id);
	}
	return rc;
}

static void pkcs11_destroy(struct keystore *base)
{
	struct pkcs11_keystore *ks = (struct pkcs11_keystore *)base;
	/* No C_Logout: the login is the process's, shared with any other
	 * keystore on the token (see the header); closing our session is ours. */
	if (ks->has_session)
		ks->module->C_CloseSession(ks->session);
	if (ks->initialized)
		p11_kit_module_finalize(ks->module);
	if (ks->module)
		p11_kit_module_release(ks->module);
	dm_free(ks->others);
	dm_free(ks->module_path);
	dm_free(ks);
}

static const struct keystore_ops pkcs11_ops = {
    .name = "pkcs11",
    .wrap = pkcs11_wrap,
    .unwrap = pkcs11_unwrap,
    .key_id = pkcs11_key_id,
    .rotate = pkcs11_rotate,
    .drop = pkcs11_drop,
    .destroy = pkcs11_destroy,
};

/* ---- public ---- */

int keystore_pkcs11_open(const struct keystore_pkcs11_options *o, struct keystore **out)
{
	*out = NULL;
	struct pkcs11_keystore *ks = NULL;
	int rc = connect_token(o, &ks);
	if (rc != DM_OK)
		return rc;
	rc = load_keks(ks);
	if (rc != DM_OK) {
		keystore_free(&ks->base);
		return rc;
	}
	dm_info("pkcs11 token '%s': key-encryption key '%s', id %08x, non-extractable%s; %zu "
	        "retired",
	        ks->token, ks->label, (unsigned)ks->current.id,
	        ks->read_only ? ", token write-protected" : "", ks->n_others);
	*out = &ks->base;
	return DM_OK;
}

int keystore_pkcs11_create_key(const struct keystore_pkcs11_options *o, uint32_t *kek_id)
{
	if (kek_id)
		*kek_id = 0;
	struct pkcs11_keystore *ks = NULL;
	int rc = connect_token(o, &ks);
	if (rc != DM_OK)
		return rc;
	if (ks->read_only) {
		dm_error("pkcs11 token '%s' is write-protected: cannot create a key", ks->token);
		rc = DM_ERR_DENIED;
	}
	const char *labels[] = {ks->label, ks->label_new, ks->label_retired};
	for (size_t i = 0; rc == DM_OK && i < sizeof labels / sizeof labels[0]; i++) {
		CK_OBJECT_HANDLE *handles = NULL;
		size_t count = 0;
		rc = find_keys(ks, labels[i], NULL, &handles, &count);
		dm_free(handles);
		if (rc == DM_OK && count > 0) {
			dm_error(
			    "pkcs11 token '%s' already holds a key labelled '%s'; nothing made",
			    ks->token, labels[i]);
			rc = DM_ERR_EXISTS;
		}
	}
	uint32_t id = 0;
	if (rc == DM_OK)
		rc = fresh_id(ks, &id);
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	if (rc == DM_OK)
		rc = generate_kek(ks, ks->label, id, &key);
	struct kek_ref ref;
	if (rc == DM_OK) {
		/* Read back what the token made of our template. */
		rc = check_kek(ks, key, ks->label, 1, &ref);
		if (rc != DM_OK)
			destroy_key(ks, key, ks->label);
	}
	if (rc == DM_OK) {
		dm_info("pkcs11 token '%s': made key-encryption key '%s', id %08x", ks->token,
		        ks->label, (unsigned)ref.id);
		if (kek_id)
			*kek_id = ref.id;
	}
	keystore_free(&ks->base);
	return rc;
}
