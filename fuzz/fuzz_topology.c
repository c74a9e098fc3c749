/*
 * fuzz_topology.c — topology_parse on arbitrary bytes: it must never read
 * outside the input or crash, every refusal must name the file, and every
 * topology it accepts must answer for its own sites: each is found again by
 * id, is in its jurisdiction's list, and its own MQTT URL is an endpoint its
 * jurisdiction allows (and no other jurisdiction's).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "residency/topology.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct topology *topology;
	char err[256];
	int rc = topology_parse("fuzz.topology", (const char *)data, size, &topology, err,
				sizeof err);
	if (rc != DM_OK) {
		if (rc != DM_ERR_INVALID && rc != DM_ERR_TOO_LARGE)
			abort();
		if (topology || strncmp(err, "fuzz.topology:", 14) != 0)
			abort();
		return 0;
	}
	if (!topology || err[0] != '\0')
		abort();
	size_t count = topology_count(topology);
	if (count == 0 || count > TOPOLOGY_SITES_MAX)
		abort();
	for (size_t i = 0; i < count; i++) {
		const struct topology_site *site = topology_get(topology, i);
		if (topology_find_site(topology, site->id) != site)
			abort();
		if (!topology_endpoint_allowed(topology, site->jurisdiction, site->mqtt_url))
			abort();
		/* An endpoint belongs to one site, so to one jurisdiction. */
		for (size_t j = 0; j < count; j++) {
			const struct topology_site *other = topology_get(topology, j);
			if (strcmp(other->jurisdiction, site->jurisdiction) != 0 &&
			    topology_endpoint_allowed(topology, other->jurisdiction,
						      site->mqtt_url))
				abort();
		}
		const struct topology_site *first;
		if (topology_sites_of(topology, site->jurisdiction, &first, 1) == 0 ||
		    !topology_has_jurisdiction(topology, site->jurisdiction))
			abort();
		const struct topology_site *home =
			topology_home_site(topology, site->jurisdiction, site->id);
		if (!home || strcmp(home->jurisdiction, site->jurisdiction) != 0)
			abort();
	}
	if (topology_get(topology, count) != NULL)
		abort();
	topology_free(topology);
	return 0;
}
