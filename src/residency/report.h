/*
 * report.h — the residency report: what a site holds, by home jurisdiction,
 * which foreign vehicles were sent away, and a self-check that every stored
 * vehicle belongs here. Served as JSON by GET /v1/residency/report and
 * printed as a table by `domicile residency report`.
 *
 * The tally is kept by the node on its loop thread. A report is a jansson
 * object the caller owns (json_decref).
 */
#ifndef DM_RESIDENCY_REPORT_H
#define DM_RESIDENCY_REPORT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

struct engine;

#define FOREIGN_MAX_HOMES 64

/* Foreign connections since the node started, by the home they named. */
struct foreign_tally {
	struct {
		char home[3];
		uint64_t redirected, refused;
	} by_home[FOREIGN_MAX_HOMES];
	size_t homes;
	uint64_t redirected, refused;
};

/* Counts one connection; home may be NULL or unknown (counted as "??"). */
void foreign_tally_count(struct foreign_tally *tally, const char *home, int redirected);

/* Builds the report. DM_OK, DM_ERR_DB when the store cannot be scanned,
 * DM_ERR_NOMEM. */
int residency_report_build(struct engine *engine, const char *jurisdiction, const char *site,
			   const struct foreign_tally *tally, json_t **out);

/* Prints a report (as built above) as a table for people. */
void residency_report_print(const json_t *report, FILE *out);

#endif
