/*
 * principals.c — principals in memory, their tokens, and their rows.
 *
 * Invariants:
 *  1. set->items is sorted by id, strictly increasing; every item is a live
 *     principal whose row (deleted_ms = 0) is in the database.
 *  2. An item's vins are sorted and without repeats; only owners have any.
 *  3. A change reaches the database before memory, and memory is reserved
 *     before the database is touched, so a failure leaves both as they were
 *     (principals_add) or revokes in memory what the database revoked
 *     (principals_remove).
 */
#include "api/principals.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"

struct principals {
	struct db *db;
	struct principal admin;
	struct principal *items;
	size_t count, cap;
};

static const char *const role_names[ROLE_COUNT] = {
	[ROLE_ADMIN] = "admin",
	[ROLE_OPERATOR] = "operator",
	[ROLE_ANALYST] = "analyst",
	[ROLE_PRIVACY_OFFICER] = "privacy_officer",
	[ROLE_AUDITOR] = "auditor",
	[ROLE_OWNER] = "owner",
};

const char *role_name(enum role role)
{
	return (unsigned)role < ROLE_COUNT ? role_names[role] : "?";
}

int role_parse(const char *name, enum role *out)
{
	for (int r = 0; r < ROLE_COUNT; r++) {
		if (strcmp(name, role_names[r]) == 0) {
			*out = (enum role)r;
			return DM_OK;
		}
	}
	return DM_ERR_INVALID;
}

int principal_name_check(const char *name, char *err, size_t err_len)
{
	size_t len = strlen(name);
	if (len == 0 || len > PRINCIPAL_NAME_MAX) {
		snprintf(err, err_len, "a principal's name is 1 to %d bytes", PRINCIPAL_NAME_MAX);
		return DM_ERR_INVALID;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-')) {
			snprintf(err, err_len,
				 "a principal's name is made of a-z, 0-9, '.', '_' and '-' "
				 "(byte %zu is not)",
				 i + 1);
			return DM_ERR_INVALID;
		}
	}
	if (strcmp(name, "admin") == 0) {
		snprintf(err, err_len, "the name 'admin' is the bootstrap token's");
		return DM_ERR_INVALID;
	}
	return DM_OK;
}

static void principal_clear(struct principal *p)
{
	dm_free(p->vins);
	OPENSSL_cleanse(p->token_hash, sizeof p->token_hash);
	memset(p, 0, sizeof *p);
}

static struct principal *find_id(const struct principals *set, int64_t id)
{
	size_t lo = 0, hi = set->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (set->items[mid].id == id)
			return &set->items[mid];
		if (set->items[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Room for one more item; DM_ERR_NOMEM leaves the set as it was. */
static int reserve(struct principals *set)
{
	if (set->count < set->cap)
		return DM_OK;
	size_t cap = set->cap ? set->cap * 2 : 16;
	struct principal *items = dm_realloc(set->items, cap * sizeof *items);
	if (!items)
		return DM_ERR_NOMEM;
	set->items = items;
	set->cap = cap;
	return DM_OK;
}

static int compare_vins(const void *a, const void *b)
{
	return memcmp(a, b, VIN_LEN + 1);
}

/* ---- loading ---- */

static int load_principal(void *arg, const struct db_principal *row)
{
	struct principals *set = arg;
	enum role role;
	if (role_parse(row->role, &role) != DM_OK || role == ROLE_ADMIN) {
		/* A role this build does not know gets no access at all. */
		dm_warn("principal %s has role '%s', which this node does not know: ignored",
			row->name, row->role);
		return DM_OK;
	}
	if (strlen(row->token_hash) >= sizeof set->admin.token_hash) {
		dm_warn("principal %s has no token hash this node can read: ignored", row->name);
		return DM_OK;
	}
	if (set->count && set->items[set->count - 1].id >= row->id)
		return DM_ERR_MALFORMED; /* rows come in id order (invariant 1) */
	int rc = reserve(set);
	if (rc)
		return rc;
	struct principal *p = &set->items[set->count++];
	memset(p, 0, sizeof *p);
	p->id = row->id;
	p->role = role;
	snprintf(p->name, sizeof p->name, "%s", row->name);
	memcpy(p->token_hash, row->token_hash, strlen(row->token_hash) + 1);
	snprintf(p->created_by, sizeof p->created_by, "%s", row->created_by);
	p->created_ms = row->created_ms;
	return DM_OK;
}

static int load_vin(void *arg, int64_t principal_id, const char *vin)
{
	struct principals *set = arg;
	struct principal *p = find_id(set, principal_id);
	if (!p || p->role != ROLE_OWNER || strlen(vin) != VIN_LEN)
		return DM_OK; /* an ignored principal's, or not a VIN: grants nothing */
	if (p->vin_count >= PRINCIPAL_MAX_VINS)
		return DM_OK;
	char(*vins)[VIN_LEN + 1] = dm_realloc(p->vins, (p->vin_count + 1) * sizeof *vins);
	if (!vins)
		return DM_ERR_NOMEM;
	p->vins = vins;
	memcpy(p->vins[p->vin_count++], vin, VIN_LEN + 1);
	return DM_OK;
}

int principals_open(struct db *db, const char *admin_token_hash, struct principals **out)
{
	*out = NULL;
	struct principals *set = dm_calloc(1, sizeof *set);
	if (!set)
		return DM_ERR_NOMEM;
	set->db = db;
	snprintf(set->admin.name, sizeof set->admin.name, "admin");
	set->admin.role = ROLE_ADMIN;
	snprintf(set->admin.token_hash, sizeof set->admin.token_hash, "%s",
		 admin_token_hash ? admin_token_hash : "");
	int rc = db_roles_init(db);
	if (rc == DM_OK)
		rc = db_principal_each(db, load_principal, set);
	if (rc == DM_OK)
		rc = db_principal_vin_each(db, load_vin, set);
	if (rc) {
		principals_free(set);
		return rc;
	}
	for (size_t i = 0; i < set->count; i++)
		if (set->items[i].vin_count > 1)
			qsort(set->items[i].vins, set->items[i].vin_count, sizeof *set->items[i].vins,
			      compare_vins);
	*out = set;
	return DM_OK;
}

void principals_free(struct principals *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->count; i++)
		principal_clear(&set->items[i]);
	dm_free(set->items);
	principal_clear(&set->admin);
	dm_free(set);
}

/* ---- tokens ---- */

int principals_authenticate(const struct principals *set, const char *token, size_t len,
			    const struct principal **out)
{
	*out = NULL;
	if (len == SECRET_LEN && !memchr(token, '.', len)) {
		if (secret_verify(token, len, set->admin.token_hash) != DM_OK)
			return DM_ERR_AUTH;
		*out = &set->admin;
		return DM_OK;
	}
	/* "p<ID>.<SECRET>": 1 to 19 digits, no leading zero. */
	if (len < 3 || token[0] != 'p' || token[1] < '1' || token[1] > '9')
		return DM_ERR_AUTH;
	size_t pos = 1;
	int64_t id = 0;
	while (pos < len && token[pos] >= '0' && token[pos] <= '9') {
		if (pos > 19 || id > (INT64_MAX - 9) / 10)
			return DM_ERR_AUTH;
		id = id * 10 + (token[pos] - '0');
		pos++;
	}
	if (pos >= len || token[pos] != '.' || len - pos - 1 != SECRET_LEN)
		return DM_ERR_AUTH;
	const struct principal *p = find_id(set, id);
	if (!p || secret_verify(token + pos + 1, SECRET_LEN, p->token_hash) != DM_OK)
		return DM_ERR_AUTH;
	*out = p;
	return DM_OK;
}

/* ---- changes ---- */

/* Checks an owner's VIN list and copies it, sorted, into *out (caller frees
 * with dm_free). */
static int copy_vins(enum role role, const char *const *vins, size_t vin_count,
		     char (**out)[VIN_LEN + 1], char *err, size_t err_len)
{
	*out = NULL;
	if (role != ROLE_OWNER) {
		if (vin_count) {
			snprintf(err, err_len, "only owners have 'vins'");
			return DM_ERR_INVALID;
		}
		return DM_OK;
	}
	if (vin_count == 0 || vin_count > PRINCIPAL_MAX_VINS) {
		snprintf(err, err_len, "an owner needs 1 to %d VINs in 'vins'", PRINCIPAL_MAX_VINS);
		return DM_ERR_INVALID;
	}
	char(*copy)[VIN_LEN + 1] = dm_calloc(vin_count, sizeof *copy);
	if (!copy)
		return DM_ERR_NOMEM;
	for (size_t i = 0; i < vin_count; i++) {
		char why[128];
		size_t len = strlen(vins[i]);
		if (vin_check(vins[i], len, why, sizeof why) != DM_OK) {
			snprintf(err, err_len, "vins[%zu]: %s", i, why);
			dm_free(copy);
			return DM_ERR_INVALID;
		}
		memcpy(copy[i], vins[i], VIN_LEN + 1);
	}
	qsort(copy, vin_count, sizeof *copy, compare_vins);
	for (size_t i = 1; i < vin_count; i++) {
		if (memcmp(copy[i - 1], copy[i], VIN_LEN) == 0) {
			snprintf(err, err_len, "vin %s is listed twice", copy[i]);
			dm_free(copy);
			return DM_ERR_INVALID;
		}
	}
	*out = copy;
	return DM_OK;
}

int principals_add(struct principals *set, const char *name, enum role role,
		   const char *const *vins, size_t vin_count, const char *by, int64_t now_ms,
		   char *token, size_t token_len, const struct principal **out, char *err,
		   size_t err_len)
{
	*out = NULL;
	if (err_len)
		err[0] = '\0';
	if (token_len)
		token[0] = '\0';
	if (token_len < PRINCIPAL_TOKEN_BUF_SIZE)
		return DM_ERR_INVALID;
	int rc = principal_name_check(name, err, err_len);
	if (rc)
		return rc;
	if ((unsigned)role >= ROLE_COUNT || role == ROLE_ADMIN) {
		snprintf(err, err_len, "the admin is the bootstrap token: no principal gets its role");
		return DM_ERR_INVALID;
	}
	if (principals_find(set, name)) {
		snprintf(err, err_len, "principal %s exists", name);
		return DM_ERR_EXISTS;
	}
	char(*sorted)[VIN_LEN + 1] = NULL;
	if ((rc = copy_vins(role, vins, vin_count, &sorted, err, err_len)) != DM_OK)
		return rc;
	if ((rc = reserve(set)) != DM_OK) {
		dm_free(sorted);
		return rc;
	}

	char secret[SECRET_BUF_SIZE];
	struct db_principal row;
	memset(&row, 0, sizeof row);
	snprintf(row.name, sizeof row.name, "%s", name);
	snprintf(row.role, sizeof row.role, "%s", role_name(role));
	snprintf(row.created_by, sizeof row.created_by, "%s", by);
	row.created_ms = now_ms;
	rc = secret_generate(secret, sizeof secret);
	if (rc == DM_OK)
		rc = secret_hash(secret, SECRET_LEN, row.token_hash, sizeof row.token_hash);
	const char **list = NULL;
	if (rc == DM_OK && vin_count) {
		list = dm_calloc(vin_count, sizeof *list);
		rc = list ? DM_OK : DM_ERR_NOMEM;
		for (size_t i = 0; list && i < vin_count; i++)
			list[i] = sorted[i];
	}
	if (rc == DM_OK)
		rc = db_principal_insert(set->db, &row, list, vin_count);
	dm_free(list);
	if (rc == DM_ERR_EXISTS)
		snprintf(err, err_len,
			 "the name %s was used by a principal before; names are not reused", name);
	if (rc) {
		OPENSSL_cleanse(secret, sizeof secret);
		dm_free(sorted);
		return rc;
	}

	/* Ids only grow (AUTOINCREMENT), so appending keeps invariant 1. */
	struct principal *p = &set->items[set->count++];
	memset(p, 0, sizeof *p);
	p->id = row.id;
	p->role = role;
	p->created_ms = row.created_ms;
	memcpy(p->name, row.name, sizeof p->name);
	memcpy(p->token_hash, row.token_hash, sizeof p->token_hash);
	memcpy(p->created_by, row.created_by, sizeof p->created_by);
	p->vins = sorted;
	p->vin_count = vin_count;
	snprintf(token, token_len, "p%lld.%s", (long long)row.id, secret);
	OPENSSL_cleanse(secret, sizeof secret);
	OPENSSL_cleanse(row.token_hash, sizeof row.token_hash);
	*out = p;
	return DM_OK;
}

int principals_remove(struct principals *set, const char *name, const char *by,
		      int64_t now_ms)
{
	if (strcmp(name, "admin") == 0)
		return DM_ERR_DENIED;
	const struct principal *found = principals_find(set, name);
	if (!found)
		return DM_ERR_NOT_FOUND;
	int rc = db_principal_delete(set->db, name, by, now_ms);
	if (rc && rc != DM_ERR_NOT_FOUND)
		return rc;
	size_t i = (size_t)(found - set->items);
	principal_clear(&set->items[i]);
	memmove(&set->items[i], &set->items[i + 1], (set->count - i - 1) * sizeof *set->items);
	set->count--;
	return DM_OK;
}

/* ---- reading ---- */

size_t principals_count(const struct principals *set) { return set->count; }

const struct principal *principals_at(const struct principals *set, size_t i)
{
	return i < set->count ? &set->items[i] : NULL;
}

const struct principal *principals_find(const struct principals *set, const char *name)
{
	for (size_t i = 0; i < set->count; i++)
		if (strcmp(set->items[i].name, name) == 0)
			return &set->items[i];
	return NULL;
}

int principal_owns(const struct principal *p, const char *vin, size_t len)
{
	if (p->role != ROLE_OWNER || len != VIN_LEN || !p->vins)
		return 0;
	char key[VIN_LEN + 1];
	memcpy(key, vin, VIN_LEN);
	key[VIN_LEN] = '\0';
	return bsearch(key, p->vins, p->vin_count, sizeof *p->vins, compare_vins) != NULL;
}
