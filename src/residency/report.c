#include "residency/report.h"

#include <string.h>

#include "store/engine.h"
#include "util/clock.h"
#include "util/err.h"

void foreign_tally_count(struct foreign_tally *tally, const char *home, int redirected)
{
	char code[3] = "??";
	if (home && strlen(home) == 2)
		memcpy(code, home, 2);
	size_t i = 0;
	while (i < tally->homes && strcmp(tally->by_home[i].home, code) != 0)
		i++;
	if (i == tally->homes) {
		/* A full table lumps the rest together rather than growing. */
		if (tally->homes == FOREIGN_MAX_HOMES)
			i = FOREIGN_MAX_HOMES - 1;
		else
			memcpy(tally->by_home[tally->homes++].home, code, 3);
	}
	if (redirected) {
		tally->by_home[i].redirected++;
		tally->redirected++;
	} else {
		tally->by_home[i].refused++;
		tally->refused++;
	}
}

struct scan {
	const char *jurisdiction;
	json_t *by_home;
	json_t *violations;
	uint64_t vehicles, samples, bytes, blocks;
};

static int add_home(void *arg, const struct db_home_totals *totals)
{
	struct scan *scan = arg;
	json_object_set_new(scan->by_home, totals->home,
			    json_pack("{s:I, s:I, s:I, s:I}", "vehicles", (json_int_t)totals->vehicles,
				      "blocks", (json_int_t)totals->blocks, "samples",
				      (json_int_t)totals->samples, "bytes",
				      (json_int_t)totals->bytes));
	scan->vehicles += totals->vehicles;
	scan->samples += totals->samples;
	scan->bytes += totals->bytes;
	scan->blocks += totals->blocks;
	if (strcmp(totals->home, scan->jurisdiction) != 0)
		json_array_append_new(
			scan->violations,
			json_sprintf("%llu vehicles whose home is %s are in the store",
				     (unsigned long long)totals->vehicles, totals->home));
	return DM_OK;
}

static int check_in_memory(void *arg, struct fleet_vehicle *vehicle)
{
	struct scan *scan = arg;
	if (strcmp(vehicle->record.home, scan->jurisdiction) != 0)
		json_array_append_new(scan->violations,
				      json_sprintf("a vehicle whose home is %s is in memory",
						   vehicle->record.home));
	return DM_OK;
}

int residency_report_build(struct engine *engine, const char *jurisdiction, const char *site,
			   const struct foreign_tally *tally, json_t **out)
{
	*out = NULL;
	struct scan scan = {jurisdiction, json_object(), json_array(), 0, 0, 0, 0};
	uint64_t orphans = 0;
	int rc = engine_residency_scan(engine, add_home, &scan, &orphans);
	if (rc == DM_OK)
		rc = fleet_each(engine_fleet(engine), check_in_memory, &scan);
	if (rc) {
		json_decref(scan.by_home);
		json_decref(scan.violations);
		return rc;
	}
	if (orphans)
		json_array_append_new(scan.violations,
				      json_sprintf("%llu blocks belong to no registered vehicle",
						   (unsigned long long)orphans));
	struct engine_stats stats;
	engine_stats(engine, &stats);

	json_t *foreign = json_object();
	for (size_t i = 0; i < tally->homes; i++)
		json_object_set_new(foreign, tally->by_home[i].home,
				    json_pack("{s:I, s:I}", "redirected",
					      (json_int_t)tally->by_home[i].redirected, "refused",
					      (json_int_t)tally->by_home[i].refused));
	size_t violations = json_array_size(scan.violations);
	*out = json_pack(
		"{s:s, s:s, s:I, s:o, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:o},"
		" s:{s:b, s:I, s:I, s:o}}",
		"jurisdiction", jurisdiction, "site", site, "generated_ms", (json_int_t)dm_now_ms(),
		"vehicles_by_home", scan.by_home, "stored", "samples", (json_int_t)scan.samples,
		"bytes", (json_int_t)scan.bytes, "blocks", (json_int_t)scan.blocks,
		"samples_in_memory", (json_int_t)stats.memtable_samples, "foreign_connections",
		"redirected", (json_int_t)tally->redirected, "refused", (json_int_t)tally->refused,
		"by_home", foreign, "self_check", "passed", violations == 0, "vehicles_checked",
		(json_int_t)scan.vehicles, "blocks_checked", (json_int_t)scan.blocks,
		"violations", scan.violations);
	return *out ? DM_OK : DM_ERR_NOMEM;
}

static json_int_t int_at(const json_t *obj, const char *a, const char *b)
{
	const json_t *v = json_object_get(obj, a);
	if (b)
		v = json_object_get(v, b);
	return json_integer_value(v);
}

void residency_report_print(const json_t *report, FILE *out)
{
	const json_t *check = json_object_get(report, "self_check");
	fprintf(out, "Residency report: site %s, jurisdiction %s\n",
		json_string_value(json_object_get(report, "site")),
		json_string_value(json_object_get(report, "jurisdiction")));
	fprintf(out, "\n  %-6s %10s %14s %14s\n", "home", "vehicles", "samples", "bytes");
	const char *home;
	const json_t *totals;
	json_object_foreach((json_t *)json_object_get(report, "vehicles_by_home"), home, totals)
		fprintf(out, "  %-6s %10lld %14lld %14lld\n", home,
			(long long)int_at(totals, "vehicles", NULL),
			(long long)int_at(totals, "samples", NULL),
			(long long)int_at(totals, "bytes", NULL));
	fprintf(out, "  %-6s %10s %14lld %14s  (acknowledged, not yet in blocks)\n", "memory",
		"", (long long)int_at(report, "stored", "samples_in_memory"), "");
	fprintf(out, "\n  foreign vehicles sent to their home: %lld, refused: %lld\n",
		(long long)int_at(report, "foreign_connections", "redirected"),
		(long long)int_at(report, "foreign_connections", "refused"));
	const json_t *counts;
	json_object_foreach((json_t *)json_object_get(json_object_get(report, "foreign_connections"),
						      "by_home"),
			    home, counts)
		fprintf(out, "    home %s: %lld redirected, %lld refused\n", home,
			(long long)int_at(counts, "redirected", NULL),
			(long long)int_at(counts, "refused", NULL));
	int passed = json_is_true(json_object_get(check, "passed"));
	fprintf(out, "\n  self-check: %s (%lld vehicles, %lld blocks scanned)\n",
		passed ? "PASSED" : "FAILED", (long long)int_at(check, "vehicles_checked", NULL),
		(long long)int_at(check, "blocks_checked", NULL));
	if (passed)
		fprintf(out, "    every stored vehicle's home is %s\n",
			json_string_value(json_object_get(report, "jurisdiction")));
	size_t i;
	const json_t *violation;
	json_array_foreach(json_object_get(check, "violations"), i, violation)
		fprintf(out, "    ! %s\n", json_string_value(violation));
}
