/*
 * fuzz_catalog.c — the signal catalog parser on arbitrary bytes: it must
 * either refuse with a message or build a catalog whose every signal can be
 * found again by its path.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/catalog.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct catalog *catalog = NULL;
	char err[256];
	int rc = catalog_parse("fuzz.catalog", (const char *)data, size, &catalog, err, sizeof err);
	if (rc != DM_OK) {
		if (catalog || memchr(err, '\0', sizeof err) == NULL || err[0] == '\0')
			abort(); /* a refusal always explains itself and builds nothing */
		return 0;
	}
	for (size_t id = 0; id < catalog_count(catalog); id++) {
		const struct catalog_signal *sig = catalog_get(catalog, (uint16_t)id);
		if (!sig || sig->id != id || sig->min > sig->max ||
		    catalog_find(catalog, sig->path, strlen(sig->path)) != sig)
			abort();
	}
	catalog_free(catalog);
	return 0;
}
