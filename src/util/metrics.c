/*
 * metrics.c — the metrics registry and its text exposition (format 0.0.4).
 *
 * Output, per family, in registration order:
 *
 *     # HELP <name> <help, with \ and newline escaped>
 *     # TYPE <name> counter|gauge|histogram
 *     <name> <value>                                  counter, gauge
 *     <name>{<label>="<value, \ " newline escaped>"} <value>   labeled counter
 *     <name>_bucket{le="<bound>"} <cumulative count>  one per bound, then le="+Inf"
 *     <name>_sum <sum>
 *     <name>_count <count>
 *
 * Numbers: counts as integers, bounds and sums in the shortest form that
 * reads back as the same double ("0.1", not "0.10000000000000001").
 *
 * Invariants:
 *  1. The registry's lists change only during registration; after it,
 *     threads share only the atomic values, so updates need no lock.
 *  2. A histogram stores one count per bucket, not cumulative counts and no
 *     separate total: an observation is one atomic increment, and the
 *     renderer derives the cumulative counts, the +Inf bucket and _count from
 *     a single read of each bucket, so _count always equals +Inf.
 *  3. The sum is a double kept as its bit pattern in a 64-bit atomic and
 *     updated by compare-and-swap, so concurrent observations are never lost.
 *  4. A failed registration or render leaves no trace: registry unchanged,
 *     output buffer at its old length.
 */
#include "util/metrics.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free for metrics");
_Static_assert(sizeof(double) == sizeof(uint64_t), "the sum is stored as the bits of a double");

const double metrics_seconds_buckets[METRICS_SECONDS_BUCKET_COUNT] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

struct metrics_counter {
	_Atomic uint64_t value;
	char *label_value; /* NULL in an unlabeled family */
	struct metrics_counter *next;
};

struct metrics_gauge {
	_Atomic int64_t value;
};

struct metrics_histogram {
	size_t bound_count;
	double *bounds;
	_Atomic uint64_t *buckets; /* bound_count + 1; the last is +Inf */
	_Atomic uint64_t sum_bits;
};

struct family {
	enum kind kind;
	char *name;
	char *help;
	char *label; /* labeled counters only */
	struct metrics_counter *counters, *last_counter;
	struct metrics_gauge *gauge;
	struct metrics_histogram *histogram;
	struct family *next;
};

struct metrics {
	struct family *families, *last_family;
};

static int is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

static int valid_metric_name(const char *name)
{
	if (!name || !(is_name_start(name[0]) || name[0] == ':'))
		return 0;
	for (const char *c = name + 1; *c; c++)
		if (!is_name_char(*c) && *c != ':')
			return 0;
	return 1;
}

static int valid_label_name(const char *label)
{
	if (!label || !is_name_start(label[0]) || strncmp(label, "__", 2) == 0)
		return 0;
	for (const char *c = label + 1; *c; c++)
		if (!is_name_char(*c))
			return 0;
	return 1;
}

static struct family *find_family(struct metrics *metrics, const char *name)
{
	for (struct family *family = metrics->families; family; family = family->next)
		if (strcmp(family->name, name) == 0)
			return family;
	return NULL;
}

static void free_histogram(struct metrics_histogram *histogram)
{
	if (!histogram)
		return;
	dm_free(histogram->bounds);
	dm_free((void *)histogram->buckets);
	dm_free(histogram);
}

static void free_family(struct family *family)
{
	if (!family)
		return;
	struct metrics_counter *counter = family->counters;
	while (counter) {
		struct metrics_counter *next = counter->next;
		dm_free(counter->label_value);
		dm_free(counter);
		counter = next;
	}
	dm_free(family->gauge);
	free_histogram(family->histogram);
	dm_free(family->name);
	dm_free(family->help);
	dm_free(family->label);
	dm_free(family);
}

/* A family with copies of name and help, not yet in the registry. */
static int new_family(enum kind kind, const char *name, const char *help, struct family **out)
{
	*out = NULL;
	if (!valid_metric_name(name) || !help || !help[0])
		return DM_ERR_INVALID;
	struct family *family = dm_calloc(1, sizeof *family);
	if (!family)
		return DM_ERR_NOMEM;
	family->kind = kind;
	family->name = dm_strdup(name);
	family->help = dm_strdup(help);
	if (!family->name || !family->help) {
		free_family(family);
		return DM_ERR_NOMEM;
	}
	*out = family;
	return DM_OK;
}

static void add_family(struct metrics *metrics, struct family *family)
{
	if (metrics->last_family)
		metrics->last_family->next = family;
	else
		metrics->families = family;
	metrics->last_family = family;
}

int metrics_new(struct metrics **out)
{
	*out = dm_calloc(1, sizeof **out);
	return *out ? DM_OK : DM_ERR_NOMEM;
}

void metrics_free(struct metrics *metrics)
{
	if (!metrics)
		return;
	struct family *family = metrics->families;
	while (family) {
		struct family *next = family->next;
		free_family(family);
		family = next;
	}
	dm_free(metrics);
}

int metrics_counter(struct metrics *metrics, const char *name, const char *help,
		    struct metrics_counter **out)
{
	*out = NULL;
	struct family *family;
	int rc = new_family(KIND_COUNTER, name, help, &family);
	if (rc)
		return rc;
	if (find_family(metrics, name)) {
		free_family(family);
		return DM_ERR_EXISTS;
	}
	family->counters = family->last_counter = dm_calloc(1, sizeof *family->counters);
	if (!family->counters) {
		free_family(family);
		return DM_ERR_NOMEM;
	}
	add_family(metrics, family);
	*out = family->counters;
	return DM_OK;
}

int metrics_counter_labeled(struct metrics *metrics, const char *name, const char *help,
			    const char *label, const char *value, struct metrics_counter **out)
{
	*out = NULL;
	if (!valid_metric_name(name) || !help || !help[0] || !valid_label_name(label) || !value)
		return DM_ERR_INVALID;
	struct family *family = find_family(metrics, name);
	struct family *created = NULL;
	if (family) {
		/* Another kind, an unlabeled counter or another label: a clash. */
		if (family->kind != KIND_COUNTER || !family->label ||
		    strcmp(family->label, label) != 0)
			return DM_ERR_EXISTS;
		if (strcmp(family->help, help) != 0)
			return DM_ERR_INVALID;
		for (struct metrics_counter *c = family->counters; c; c = c->next)
			if (strcmp(c->label_value, value) == 0)
				return DM_ERR_EXISTS;
	} else {
		int rc = new_family(KIND_COUNTER, name, help, &created);
		if (rc)
			return rc;
		created->label = dm_strdup(label);
		if (!created->label) {
			free_family(created);
			return DM_ERR_NOMEM;
		}
		family = created;
	}
	struct metrics_counter *counter = dm_calloc(1, sizeof *counter);
	char *value_copy = dm_strdup(value);
	if (!counter || !value_copy) {
		dm_free(counter);
		dm_free(value_copy);
		free_family(created);
		return DM_ERR_NOMEM;
	}
	counter->label_value = value_copy;
	if (family->last_counter)
		family->last_counter->next = counter;
	else
		family->counters = counter;
	family->last_counter = counter;
	if (created)
		add_family(metrics, created);
	*out = counter;
	return DM_OK;
}

int metrics_gauge(struct metrics *metrics, const char *name, const char *help,
		  struct metrics_gauge **out)
{
	*out = NULL;
	struct family *family;
	int rc = new_family(KIND_GAUGE, name, help, &family);
	if (rc)
		return rc;
	if (find_family(metrics, name)) {
		free_family(family);
		return DM_ERR_EXISTS;
	}
	family->gauge = dm_calloc(1, sizeof *family->gauge);
	if (!family->gauge) {
		free_family(family);
		return DM_ERR_NOMEM;
	}
	add_family(metrics, family);
	*out = family->gauge;
	return DM_OK;
}

int metrics_histogram(struct metrics *metrics, const char *name, const char *help,
		      const double *bounds, size_t bound_count, struct metrics_histogram **out)
{
	*out = NULL;
	if (!bounds || bound_count == 0)
		return DM_ERR_INVALID;
	for (size_t i = 0; i < bound_count; i++)
		if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
			return DM_ERR_INVALID;
	struct family *family;
	int rc = new_family(KIND_HISTOGRAM, name, help, &family);
	if (rc)
		return rc;
	if (find_family(metrics, name)) {
		free_family(family);
		return DM_ERR_EXISTS;
	}
	struct metrics_histogram *histogram = dm_calloc(1, sizeof *histogram);
	family->histogram = histogram;
	if (histogram) {
		histogram->bound_count = bound_count;
		histogram->bounds = dm_calloc(bound_count, sizeof *histogram->bounds);
		histogram->buckets = dm_calloc(bound_count + 1, sizeof *histogram->buckets);
	}
	if (!histogram || !histogram->bounds || !histogram->buckets) {
		free_family(family);
		return DM_ERR_NOMEM;
	}
	memcpy(histogram->bounds, bounds, bound_count * sizeof *bounds);
	atomic_init(&histogram->sum_bits, 0); /* the bits of +0.0 */
	add_family(metrics, family);
	*out = histogram;
	return DM_OK;
}

void metrics_counter_inc(struct metrics_counter *counter) { metrics_counter_add(counter, 1); }

void metrics_counter_add(struct metrics_counter *counter, uint64_t amount)
{
	if (counter)
		atomic_fetch_add_explicit(&counter->value, amount, memory_order_relaxed);
}

void metrics_gauge_set(struct metrics_gauge *gauge, int64_t value)
{
	if (gauge)
		atomic_store_explicit(&gauge->value, value, memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_gauge *gauge, int64_t delta)
{
	if (gauge)
		atomic_fetch_add_explicit(&gauge->value, delta, memory_order_relaxed);
}

void metrics_histogram_observe(struct metrics_histogram *histogram, double value)
{
	if (!histogram || isnan(value))
		return;
	/* The first bound >= value; bound_count (the +Inf bucket) if none. */
	size_t low = 0, high = histogram->bound_count;
	while (low < high) {
		size_t mid = low + (high - low) / 2;
		if (value <= histogram->bounds[mid])
			high = mid;
		else
			low = mid + 1;
	}
	atomic_fetch_add_explicit(&histogram->buckets[low], 1, memory_order_relaxed);

	uint64_t old_bits = atomic_load_explicit(&histogram->sum_bits, memory_order_relaxed);
	for (;;) {
		double sum;
		memcpy(&sum, &old_bits, sizeof sum);
		sum += value;
		uint64_t new_bits;
		memcpy(&new_bits, &sum, sizeof new_bits);
		/* On failure old_bits is reloaded with the current sum. */
		if (atomic_compare_exchange_weak_explicit(&histogram->sum_bits, &old_bits, new_bits,
							  memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
}

void metrics_histogram_observe_ns(struct metrics_histogram *histogram, uint64_t ns)
{
	metrics_histogram_observe(histogram, (double)ns / 1e9);
}

uint64_t metrics_counter_value(const struct metrics_counter *counter)
{
	return counter ? atomic_load_explicit(&counter->value, memory_order_relaxed) : 0;
}

int64_t metrics_gauge_value(const struct metrics_gauge *gauge)
{
	return gauge ? atomic_load_explicit(&gauge->value, memory_order_relaxed) : 0;
}

/* value as Prometheus' own clients write it (Go's 'g' format with the
 * shortest precision): the fewest significant digits that read back as the
 * same double, in exponent form only when the exponent is below -4 or at
 * least 6 ("10", "0.0005", "1.7e+06", "1e-05"); "+Inf", "-Inf", "NaN". */
static void format_double(double value, char out[32])
{
	if (isnan(value)) {
		strcpy(out, "NaN");
		return;
	}
	if (isinf(value)) {
		strcpy(out, value > 0 ? "+Inf" : "-Inf");
		return;
	}
	int digits = 1;
	while (digits < 17) {
		snprintf(out, 32, "%.*e", digits - 1, value);
		if (strtod(out, NULL) == value)
			break;
		digits++;
	}
	snprintf(out, 32, "%.*e", digits - 1, value);
	int exponent = atoi(strchr(out, 'e') + 1);
	if (exponent < -4 || exponent >= 6)
		return;
	/* The same digits without an exponent: rounding at the same place. */
	int decimals = digits - 1 - exponent;
	snprintf(out, 32, "%.*f", decimals > 0 ? decimals : 0, value);
}

/* Appends text with `\` and newline escaped, and `"` too when in a label. */
static int append_escaped(struct dm_buf *out, const char *text, int in_label)
{
	int rc = DM_OK;
	for (const char *c = text; *c && rc == DM_OK; c++) {
		if (*c == '\\')
			rc = dm_buf_append(out, "\\\\", 2);
		else if (*c == '\n')
			rc = dm_buf_append(out, "\\n", 2);
		else if (*c == '"' && in_label)
			rc = dm_buf_append(out, "\\\"", 2);
		else
			rc = dm_buf_append_u8(out, (uint8_t)*c);
	}
	return rc;
}

static int render_histogram(const struct family *family, struct dm_buf *out)
{
	const struct metrics_histogram *histogram = family->histogram;
	char number[32];
	uint64_t cumulative = 0;
	int rc = DM_OK;
	for (size_t i = 0; i <= histogram->bound_count && rc == DM_OK; i++) {
		/* The cast drops const: C11 atomic_load takes a non-const pointer. */
		cumulative += atomic_load_explicit((_Atomic uint64_t *)&histogram->buckets[i],
						   memory_order_relaxed);
		if (i < histogram->bound_count)
			format_double(histogram->bounds[i], number);
		else
			strcpy(number, "+Inf");
		rc = dm_buf_printf(out, "%s_bucket{le=\"%s\"} %llu\n", family->name, number,
				   (unsigned long long)cumulative);
	}
	uint64_t sum_bits = atomic_load_explicit((_Atomic uint64_t *)&histogram->sum_bits,
						 memory_order_relaxed);
	double sum;
	memcpy(&sum, &sum_bits, sizeof sum);
	format_double(sum, number);
	if (rc == DM_OK)
		rc = dm_buf_printf(out, "%s_sum %s\n%s_count %llu\n", family->name, number,
				   family->name, (unsigned long long)cumulative);
	return rc;
}

static int render_family(const struct family *family, struct dm_buf *out)
{
	static const char *const kind_names[] = {"counter", "gauge", "histogram"};
	int rc = dm_buf_printf(out, "# HELP %s ", family->name);
	if (rc == DM_OK)
		rc = append_escaped(out, family->help, 0);
	if (rc == DM_OK)
		rc = dm_buf_printf(out, "\n# TYPE %s %s\n", family->name, kind_names[family->kind]);
	if (rc)
		return rc;
	switch (family->kind) {
	case KIND_COUNTER:
		for (struct metrics_counter *c = family->counters; c && rc == DM_OK; c = c->next) {
			rc = dm_buf_printf(out, "%s", family->name);
			if (rc == DM_OK && family->label) {
				rc = dm_buf_printf(out, "{%s=\"", family->label);
				if (rc == DM_OK)
					rc = append_escaped(out, c->label_value, 1);
				if (rc == DM_OK)
					rc = dm_buf_append(out, "\"}", 2);
			}
			if (rc == DM_OK)
				rc = dm_buf_printf(out, " %llu\n",
						   (unsigned long long)metrics_counter_value(c));
		}
		return rc;
	case KIND_GAUGE:
		return dm_buf_printf(out, "%s %lld\n", family->name,
				     (long long)metrics_gauge_value(family->gauge));
	case KIND_HISTOGRAM:
		return render_histogram(family, out);
	}
	return DM_ERR_INVALID;
}

int metrics_render(struct metrics *metrics, struct dm_buf *out)
{
	size_t old_len = out->len;
	int rc = DM_OK;
	for (struct family *family = metrics->families; family && rc == DM_OK;
	     family = family->next)
		rc = render_family(family, out);
	if (rc)
		out->len = old_len;
	return rc;
}
