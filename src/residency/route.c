#include "residency/route.h"

#include <string.h>

enum residency_route residency_route(const struct topology *topology, const char *here_site,
				     const char *home, const char *vin,
				     const struct topology_site **target)
{
	*target = NULL;
	if (!home)
		return ROUTE_REFUSE;
	const struct topology_site *site = topology_home_site(topology, home, vin);
	/* Its home site being this one means it should have been registered
	 * here: an unknown vehicle, not a misdirected one. */
	if (!site || strcmp(site->id, here_site) == 0)
		return ROUTE_REFUSE;
	*target = site;
	return ROUTE_REDIRECT;
}
