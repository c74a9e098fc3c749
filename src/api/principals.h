/*
 * principals.h — who may call the API: principals, each with one role and a
 * bearer token, kept in memory for the request path and in SQLite (see
 * db.h) across restarts.
 *
 * Roles:
 *   admin            the bootstrap token of data_dir/admin.token, an implicit
 *                    principal named "admin": manages principals and may do
 *                    what an operator may
 *   operator         vehicles, zones, sites
 *   analyst          aggregates across the fleet; no raw location or media
 *   privacy_officer  approves exports and erasures
 *   auditor          the audit log; no vehicle data
 *   owner            their own vehicles' data (the VINs given at creation)
 *
 * Tokens. A principal's token is "p<ID>.<SECRET>": ID is its row id in
 * decimal (never reused: invariant 1 in db.h) and SECRET 256 random bits
 * from secret_generate. Only secret_hash(SECRET) is kept. The ID is not a
 * secret; it says which one stored hash to check, so authenticating costs a
 * binary search and one SHA-256 whatever the number of principals, and a
 * forged token is checked against one principal only. The admin token is a
 * bare SECRET: base64url has no '.', so the two forms cannot be confused.
 * A token is shown once, by principals_add; nothing can show it again.
 *
 * Names are 1..64 bytes of [a-z0-9._-]; "admin" is reserved. Removing a
 * principal revokes its token at once, keeps its row (so records that name
 * it keep meaning it) and never gives its name to anyone else.
 *
 * Ownership: principals returned here are owned by the set: borrowed, valid
 * until the next principals_add, principals_remove or principals_free.
 * Loop thread only.
 */
#ifndef DM_PRINCIPALS_H
#define DM_PRINCIPALS_H

#include <stddef.h>
#include <stdint.h>

#include "util/secret.h"
#include "util/vin.h"

struct db;

enum role {
	ROLE_ADMIN,
	ROLE_OPERATOR,
	ROLE_ANALYST,
	ROLE_PRIVACY_OFFICER,
	ROLE_AUDITOR,
	ROLE_OWNER,
	ROLE_COUNT
};

#define ROLE_BIT(role) (1u << (role))

#define PRINCIPAL_NAME_MAX 64
#define PRINCIPAL_MAX_VINS 1000 /* an owner's vehicles; a fleet is not an owner */
/* "p" + up to 19 digits + "." + the secret + NUL */
#define PRINCIPAL_TOKEN_BUF_SIZE (1 + 19 + 1 + SECRET_LEN + 1)

struct principal {
	int64_t id; /* 0 for the admin */
	char name[PRINCIPAL_NAME_MAX + 1];
	enum role role;
	char token_hash[SECRET_HASH_BUF_SIZE];
	int64_t created_ms;
	char created_by[PRINCIPAL_NAME_MAX + 1];
	size_t vin_count;
	char (*vins)[VIN_LEN + 1]; /* an owner's VINs, sorted; NULL for other roles */
};

struct principals;

/* "operator", ...; "?" for a value out of range. */
const char *role_name(enum role role);
/* DM_OK, or DM_ERR_INVALID when name is no role. */
int role_parse(const char *name, enum role *out);

/* Checks a new principal's name; DM_ERR_INVALID with a message in err. */
int principal_name_check(const char *name, char *err, size_t err_len);

/* Makes the principals tables if need be and loads the live principals.
 * admin_token_hash (a secret_hash string) is copied. db is borrowed and must
 * outlive the set. Caller frees with principals_free. */
int principals_open(struct db *db, const char *admin_token_hash, struct principals **out);
void principals_free(struct principals *set); /* accepts NULL */

/* Who presents token[0..len): DM_OK with *out; DM_ERR_AUTH for anything
 * else (malformed, unknown id, wrong secret, removed principal). */
int principals_authenticate(const struct principals *set, const char *token, size_t len,
			    const struct principal **out);

/*
 * Adds a principal. vins (vin_count of them) are an owner's VINs, checked
 * and without repeats; other roles take none. `by` names who adds it. The
 * token is written to token (token_len >= PRINCIPAL_TOKEN_BUF_SIZE) — the
 * only time it exists outside the caller — and *out is the new principal.
 * Returns DM_OK; DM_ERR_INVALID (message in err) for a bad name, role or
 * VIN list; DM_ERR_EXISTS when the name is or was in use; DM_ERR_DB,
 * DM_ERR_NOMEM, DM_ERR_CRYPTO. On failure nothing changed and token is "".
 */
int principals_add(struct principals *set, const char *name, enum role role,
		   const char *const *vins, size_t vin_count, const char *by, int64_t now_ms,
		   char *token, size_t token_len, const struct principal **out, char *err,
		   size_t err_len);

/* Removes a principal: its token stops working before this returns.
 * DM_ERR_NOT_FOUND when no live principal has that name; DM_ERR_DENIED for
 * "admin"; DM_ERR_DB. */
int principals_remove(struct principals *set, const char *name, const char *by,
		      int64_t now_ms);

/* The live principals in id order (the admin is not among them). */
size_t principals_count(const struct principals *set);
const struct principal *principals_at(const struct principals *set, size_t i);
const struct principal *principals_find(const struct principals *set, const char *name);

/* Whether the principal is an owner of vin[0..len). */
int principal_owns(const struct principal *p, const char *vin, size_t len);

#endif
