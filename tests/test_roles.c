/*
 * test_roles.c — principals (names, tokens, owners' VINs, revocation,
 * persistence) on a real SQLite file, and the fleet aggregate's buckets and
 * their suppression. The role table itself is walked over HTTP by
 * tests/e2e/test_roles.sh against a real node.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/aggregate.h"
#include "api/principals.h"
#include "store/db.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"
#include "util/secret.h"

#define VIN_A "LSVAU218XN2183294"
#define VIN_B "LFV3A28KXL3007531"
#define VIN_C "1M8GDM9AXKP042788"

struct fixture {
	char dir[64];
	char path[96];
	char admin_token[SECRET_BUF_SIZE];
	char admin_hash[SECRET_HASH_BUF_SIZE];
	struct db *db;
	struct principals *set;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_roles.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
	assert_int_equal(secret_generate(f->admin_token, sizeof f->admin_token), DM_OK);
	assert_int_equal(secret_hash(f->admin_token, SECRET_LEN, f->admin_hash, sizeof f->admin_hash),
			 DM_OK);
	assert_int_equal(db_open(f->path, &f->db), DM_OK);
	assert_int_equal(principals_open(f->db, f->admin_hash, &f->set), DM_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	principals_free(f->set);
	db_close(f->db);
	char path[128];
	const char *suffixes[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s%s", f->path, suffixes[i]);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Closes and reopens the database and the set, as a node restart does. */
static void reopen(struct fixture *f)
{
	principals_free(f->set);
	db_close(f->db);
	assert_int_equal(db_open(f->path, &f->db), DM_OK);
	assert_int_equal(principals_open(f->db, f->admin_hash, &f->set), DM_OK);
}

static int add(struct fixture *f, const char *name, enum role role, const char *const *vins,
	       size_t vin_count, char *token)
{
	const struct principal *p;
	char err[256];
	return principals_add(f->set, name, role, vins, vin_count, "admin", 1000, token,
			      PRINCIPAL_TOKEN_BUF_SIZE, &p, err, sizeof err);
}

static const struct principal *who(struct fixture *f, const char *token)
{
	const struct principal *p = NULL;
	int rc = principals_authenticate(f->set, token, strlen(token), &p);
	assert_true((rc == DM_OK) == (p != NULL));
	return p;
}

/* ---- roles and names ---- */

static void test_role_names_round_trip(void **state)
{
	for (int r = 0; r < ROLE_COUNT; r++) {
		enum role back;
		assert_int_equal(role_parse(role_name((enum role)r), &back), DM_OK);
		assert_int_equal(back, r);
	}
	enum role back;
	assert_int_equal(role_parse("Operator", &back), DM_ERR_INVALID);
	assert_int_equal(role_parse("", &back), DM_ERR_INVALID);
	assert_string_equal(role_name(ROLE_COUNT), "?");
}

static void test_principal_names_are_1_to_64_of_a_small_alphabet(void **state)
{
	char err[128], name[80];
	memset(name, 'a', sizeof name);
	name[64] = '\0';
	assert_int_equal(principal_name_check(name, err, sizeof err), DM_OK);
	name[63] = '\0';
	assert_int_equal(principal_name_check(name, err, sizeof err), DM_OK);
	memset(name, 'a', sizeof name);
	name[65] = '\0';
	assert_int_equal(principal_name_check(name, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(principal_name_check("", err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(principal_name_check("a", err, sizeof err), DM_OK);
	assert_int_equal(principal_name_check("ops.team_1-b", err, sizeof err), DM_OK);
	assert_int_equal(principal_name_check("Alice", err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(principal_name_check("a/b", err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(principal_name_check("a b", err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(principal_name_check("admin", err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(principal_name_check("admin2", err, sizeof err), DM_OK);
}

/* ---- tokens ---- */

static void test_token_is_p_id_dot_secret_and_authenticates(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, token), DM_OK);
	const char *dot = strchr(token, '.');
	assert_non_null(dot);
	assert_int_equal(token[0], 'p');
	assert_int_equal(strlen(dot + 1), SECRET_LEN);
	const struct principal *p = who(f, token);
	assert_non_null(p);
	assert_string_equal(p->name, "olga");
	assert_int_equal(p->role, ROLE_OPERATOR);
	assert_string_equal(p->created_by, "admin");
	/* The admin's bare token still opens as the admin. */
	p = who(f, f->admin_token);
	assert_non_null(p);
	assert_int_equal(p->role, ROLE_ADMIN);
	assert_string_equal(p->name, "admin");
}

static void test_malformed_or_wrong_tokens_are_refused(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE], other[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, token), DM_OK);
	assert_int_equal(add(f, "ann", ROLE_ANALYST, NULL, 0, other), DM_OK);
	const char *secret = strchr(token, '.') + 1;
	const char *other_secret = strchr(other, '.') + 1;
	char forged[160];
	/* Another principal's id with this secret. */
	snprintf(forged, sizeof forged, "%.*s.%s", (int)(strchr(other, '.') - other), other,
		 secret);
	assert_null(who(f, forged));
	/* This id with another's secret. */
	snprintf(forged, sizeof forged, "%.*s.%s", (int)(strchr(token, '.') - token), token,
		 other_secret);
	assert_null(who(f, forged));
	/* A leading zero, id 0, no id, no 'p', an id too long, no dot. */
	snprintf(forged, sizeof forged, "p01.%s", secret);
	assert_null(who(f, forged));
	snprintf(forged, sizeof forged, "p0.%s", secret);
	assert_null(who(f, forged));
	snprintf(forged, sizeof forged, "p.%s", secret);
	assert_null(who(f, forged));
	snprintf(forged, sizeof forged, "1.%s", secret);
	assert_null(who(f, forged));
	snprintf(forged, sizeof forged, "p99999999999999999999.%s", secret);
	assert_null(who(f, forged));
	snprintf(forged, sizeof forged, "p1%s", secret);
	assert_null(who(f, forged));
	/* The secret one character short or long. */
	snprintf(forged, sizeof forged, "%s", token);
	forged[strlen(forged) - 1] = '\0';
	assert_null(who(f, forged));
	snprintf(forged, sizeof forged, "%sA", token);
	assert_null(who(f, forged));
	/* The admin's secret alone, minus a character, and the empty token. */
	snprintf(forged, sizeof forged, "%s", f->admin_token);
	forged[0] = forged[0] == 'A' ? 'B' : 'A';
	assert_null(who(f, forged));
	assert_null(who(f, ""));
	/* The admin's secret is no principal's. */
	snprintf(forged, sizeof forged, "%.*s.%s", (int)(strchr(token, '.') - token), token,
		 f->admin_token);
	assert_null(who(f, forged));
}

/* The token exists only in the caller's buffer: the database has its hash. */
static int row_holds(void *arg, int columns, char **values, char **names)
{
	const char *secret = arg;
	for (int i = 0; i < columns; i++)
		if (values[i] && strstr(values[i], secret))
			return 1;
	return 0;
}

static void test_only_a_hash_of_the_token_is_stored(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, token), DM_OK);
	const char *secret = strchr(token, '.') + 1;
	sqlite3 *conn;
	assert_int_equal(sqlite3_open(f->path, &conn), SQLITE_OK);
	assert_int_equal(sqlite3_exec(conn, "SELECT * FROM principals", row_holds, (void *)secret,
				      NULL),
			 SQLITE_OK);
	sqlite3_close(conn);
	const struct principal *p = principals_find(f->set, "olga");
	assert_non_null(p);
	assert_null(strstr(p->token_hash, secret));
	assert_int_equal(secret_verify(secret, SECRET_LEN, p->token_hash), DM_OK);
}

/* ---- changes ---- */

static void test_remove_revokes_at_once_and_names_are_not_reused(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE], again[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, token), DM_OK);
	assert_non_null(who(f, token));
	assert_int_equal(principals_remove(f->set, "olga", "admin", 2000), DM_OK);
	assert_null(who(f, token));
	assert_int_equal(principals_count(f->set), 0);
	assert_int_equal(principals_remove(f->set, "olga", "admin", 2000), DM_ERR_NOT_FOUND);
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, again), DM_ERR_EXISTS);
	assert_string_equal(again, "");
	assert_int_equal(principals_remove(f->set, "admin", "admin", 2000), DM_ERR_DENIED);
	reopen(f);
	assert_null(who(f, token));
	assert_null(principals_find(f->set, "olga"));
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, again), DM_ERR_EXISTS);
}

static void test_a_second_principal_of_one_name_is_refused(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "olga", ROLE_OPERATOR, NULL, 0, token), DM_OK);
	assert_int_equal(add(f, "olga", ROLE_AUDITOR, NULL, 0, token), DM_ERR_EXISTS);
	assert_string_equal(token, "");
	assert_int_equal(principals_count(f->set), 1);
}

static void test_nobody_is_made_admin(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "boss", ROLE_ADMIN, NULL, 0, token), DM_ERR_INVALID);
	assert_int_equal(add(f, "admin", ROLE_OPERATOR, NULL, 0, token), DM_ERR_INVALID);
	assert_int_equal(principals_count(f->set), 0);
}

static void test_owners_and_only_owners_have_vins(void **state)
{
	struct fixture *f = *state;
	char token[PRINCIPAL_TOKEN_BUF_SIZE];
	const char *two[] = {VIN_B, VIN_A};
	const char *twice[] = {VIN_A, VIN_A};
	const char *bad[] = {"LSVAU218XN218329"};
	const char *bad_digit[] = {"LSVAU2183N2183294"};
	assert_int_equal(add(f, "op", ROLE_OPERATOR, two, 1, token), DM_ERR_INVALID);
	assert_int_equal(add(f, "own0", ROLE_OWNER, NULL, 0, token), DM_ERR_INVALID);
	assert_int_equal(add(f, "own1", ROLE_OWNER, twice, 2, token), DM_ERR_INVALID);
	assert_int_equal(add(f, "own2", ROLE_OWNER, bad, 1, token), DM_ERR_INVALID);
	assert_int_equal(add(f, "own3", ROLE_OWNER, bad_digit, 1, token), DM_ERR_INVALID);
	assert_int_equal(principals_count(f->set), 0);
	assert_int_equal(add(f, "ola", ROLE_OWNER, two, 2, token), DM_OK);
	const struct principal *p = who(f, token);
	assert_non_null(p);
	assert_int_equal(p->vin_count, 2);
	assert_true(principal_owns(p, VIN_A, 17));
	assert_true(principal_owns(p, VIN_B, 17));
	assert_false(principal_owns(p, VIN_C, 17));
	assert_false(principal_owns(p, VIN_A, 16));
	/* A VIN followed by more path is not the VIN. */
	assert_false(principal_owns(p, VIN_A "X", 18));
	/* The VINs come back sorted after a restart. */
	reopen(f);
	p = who(f, token);
	assert_non_null(p);
	assert_int_equal(p->vin_count, 2);
	assert_string_equal(p->vins[0], VIN_B);
	assert_string_equal(p->vins[1], VIN_A);
	assert_true(principal_owns(p, VIN_A, 17));
}

static void test_principals_and_tokens_survive_a_restart(void **state)
{
	struct fixture *f = *state;
	char tokens[4][PRINCIPAL_TOKEN_BUF_SIZE];
	const char *vins[] = {VIN_C};
	assert_int_equal(add(f, "a1", ROLE_ANALYST, NULL, 0, tokens[0]), DM_OK);
	assert_int_equal(add(f, "p1", ROLE_PRIVACY_OFFICER, NULL, 0, tokens[1]), DM_OK);
	assert_int_equal(add(f, "u1", ROLE_AUDITOR, NULL, 0, tokens[2]), DM_OK);
	assert_int_equal(add(f, "o1", ROLE_OWNER, vins, 1, tokens[3]), DM_OK);
	assert_int_equal(principals_remove(f->set, "p1", "admin", 5), DM_OK);
	reopen(f);
	assert_int_equal(principals_count(f->set), 3);
	assert_int_equal(who(f, tokens[0])->role, ROLE_ANALYST);
	assert_null(who(f, tokens[1]));
	assert_int_equal(who(f, tokens[2])->role, ROLE_AUDITOR);
	assert_int_equal(who(f, tokens[3])->role, ROLE_OWNER);
	/* In id order. */
	assert_string_equal(principals_at(f->set, 0)->name, "a1");
	assert_string_equal(principals_at(f->set, 1)->name, "u1");
	assert_string_equal(principals_at(f->set, 2)->name, "o1");
	assert_null(principals_at(f->set, 3));
	/* New ids keep growing past the removed one's. */
	char token[PRINCIPAL_TOKEN_BUF_SIZE];
	assert_int_equal(add(f, "a2", ROLE_ANALYST, NULL, 0, token), DM_OK);
	assert_true(principals_find(f->set, "a2")->id > principals_find(f->set, "o1")->id);
	assert_int_equal(who(f, token)->role, ROLE_ANALYST);
}

/* Every allocation of an add may fail: nothing is left half made. */
static void test_add_survives_allocation_failure_at_every_point(void **state)
{
	struct fixture *f = *state;
	const char *vins[] = {VIN_A, VIN_B};
	char token[PRINCIPAL_TOKEN_BUF_SIZE], name[32];
	int rc = DM_ERR_NOMEM;
	long budget;
	dm_log_set_level(DM_LOG_ERROR + 1);
	for (budget = 0; budget < 100 && rc != DM_OK; budget++) {
		snprintf(name, sizeof name, "o%ld", budget);
		size_t before = principals_count(f->set);
		dm_alloc_fail_after(budget);
		rc = add(f, name, ROLE_OWNER, vins, 2, token);
		dm_alloc_fail_after(-1);
		if (rc) {
			assert_int_equal(rc, DM_ERR_NOMEM);
			assert_string_equal(token, "");
			assert_int_equal(principals_count(f->set), before);
		}
	}
	dm_log_set_level(DM_LOG_INFO);
	assert_int_equal(rc, DM_OK);
	assert_true(budget > 1);
	assert_non_null(who(f, token));
}

/* ---- aggregates ---- */

static void test_aggregate_bucket_count_limits(void **state)
{
	struct aggregate agg;
	assert_int_equal(aggregate_init(&agg, 10, 10, 1), DM_ERR_INVALID);
	assert_int_equal(aggregate_init(&agg, 11, 10, 1), DM_ERR_INVALID);
	assert_int_equal(aggregate_init(&agg, 0, 10, 0), DM_ERR_INVALID);
	assert_int_equal(aggregate_init(&agg, 0, AGGREGATE_MAX_BUCKETS, 1), DM_OK);
	assert_int_equal(agg.bucket_count, AGGREGATE_MAX_BUCKETS);
	aggregate_free(&agg);
	assert_int_equal(aggregate_init(&agg, 0, AGGREGATE_MAX_BUCKETS + 1, 1), DM_ERR_TOO_LARGE);
	assert_null(agg.buckets);
	/* A last, partial bucket counts. */
	assert_int_equal(aggregate_init(&agg, 0, 25, 10), DM_OK);
	assert_int_equal(agg.bucket_count, 3);
	assert_int_equal(aggregate_bucket_start(&agg, 2), 20);
	aggregate_free(&agg);
	/* The widest range does not overflow. */
	assert_int_equal(aggregate_init(&agg, 0, INT64_MAX, INT64_MAX / 2), DM_OK);
	assert_int_equal(agg.bucket_count, 3);
	aggregate_vehicle(&agg);
	aggregate_add(&agg, INT64_MAX - 1, 1.0);
	assert_int_equal(agg.buckets[2].count, 1);
	aggregate_free(&agg);
	assert_int_equal(aggregate_init(&agg, 0, INT64_MAX, 1), DM_ERR_TOO_LARGE);
}

static void test_aggregate_functions_over_three_vehicles(void **state)
{
	struct aggregate agg;
	assert_int_equal(aggregate_init(&agg, 1000, 1200, 100), DM_OK);
	/* Three vehicles in bucket 0; vehicle 1 sends two samples there. */
	aggregate_vehicle(&agg);
	aggregate_add(&agg, 1000, 10);
	aggregate_add(&agg, 1099, 20);
	aggregate_add(&agg, 1200, 999); /* at `to`: outside */
	aggregate_add(&agg, 999, 999);  /* before `from`: outside */
	aggregate_vehicle(&agg);
	aggregate_add(&agg, 1050, 30);
	aggregate_add(&agg, 1150, 1);
	aggregate_vehicle(&agg);
	aggregate_add(&agg, 1010, -20);
	aggregate_add(&agg, 1199, 2);
	double v;
	assert_true(aggregate_value(&agg, 0, AGGREGATE_AVG, AGGREGATE_MIN_VEHICLES, &v));
	assert_true(v == 10.0); /* (10 + 20 + 30 - 20) / 4 */
	assert_true(aggregate_value(&agg, 0, AGGREGATE_MIN, AGGREGATE_MIN_VEHICLES, &v));
	assert_true(v == -20.0);
	assert_true(aggregate_value(&agg, 0, AGGREGATE_MAX, AGGREGATE_MIN_VEHICLES, &v));
	assert_true(v == 30.0);
	assert_true(aggregate_value(&agg, 0, AGGREGATE_COUNT, AGGREGATE_MIN_VEHICLES, &v));
	assert_true(v == 4.0);
	assert_int_equal(agg.buckets[0].vehicles, 3);
	/* Bucket 1 has two vehicles: left out. */
	assert_int_equal(agg.buckets[1].vehicles, 2);
	assert_false(aggregate_value(&agg, 1, AGGREGATE_AVG, AGGREGATE_MIN_VEHICLES, &v));
	assert_false(aggregate_value(&agg, 2, AGGREGATE_AVG, AGGREGATE_MIN_VEHICLES, &v));
	aggregate_free(&agg);
}

static void test_aggregate_of_one_vehicle_shows_nothing(void **state)
{
	struct aggregate agg;
	assert_int_equal(aggregate_init(&agg, 0, 100, 10), DM_OK);
	aggregate_vehicle(&agg);
	for (int t = 0; t < 100; t++)
		aggregate_add(&agg, t, t);
	double v;
	for (size_t k = 0; k < agg.bucket_count; k++) {
		assert_int_equal(agg.buckets[k].count, 10);
		assert_false(aggregate_value(&agg, k, AGGREGATE_COUNT, AGGREGATE_MIN_VEHICLES, &v));
	}
	aggregate_free(&agg);
}

static void test_aggregate_fn_names(void **state)
{
	enum aggregate_fn fn;
	assert_int_equal(aggregate_fn_parse("avg", &fn), DM_OK);
	assert_int_equal(fn, AGGREGATE_AVG);
	assert_int_equal(aggregate_fn_parse("count", &fn), DM_OK);
	assert_string_equal(aggregate_fn_name(fn), "count");
	assert_int_equal(aggregate_fn_parse("sum", &fn), DM_ERR_INVALID);
	assert_int_equal(aggregate_fn_parse("", &fn), DM_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_names_round_trip),
		cmocka_unit_test(test_principal_names_are_1_to_64_of_a_small_alphabet),
		cmocka_unit_test_setup_teardown(test_token_is_p_id_dot_secret_and_authenticates,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_or_wrong_tokens_are_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_only_a_hash_of_the_token_is_stored, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_remove_revokes_at_once_and_names_are_not_reused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_second_principal_of_one_name_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nobody_is_made_admin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owners_and_only_owners_have_vins, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_principals_and_tokens_survive_a_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_add_survives_allocation_failure_at_every_point,
						setup, teardown),
		cmocka_unit_test(test_aggregate_bucket_count_limits),
		cmocka_unit_test(test_aggregate_functions_over_three_vehicles),
		cmocka_unit_test(test_aggregate_of_one_vehicle_shows_nothing),
		cmocka_unit_test(test_aggregate_fn_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
