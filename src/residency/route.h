/*
 * route.h — where a vehicle that is not registered at this site belongs.
 *
 * The residency decision at CONNECT, before a byte of payload is read: a
 * vehicle unknown here that names its home jurisdiction is sent to its home
 * site (MQTT 5 CONNACK 0x9D, Server moved, with the site's endpoint as the
 * Server Reference) when the topology knows that site and it is not this
 * one; otherwise it is refused. Pure: no I/O, no logging; the node logs and
 * counts. Sites handed out are the topology's: borrowed, valid until
 * topology_free.
 */
#ifndef DM_RESIDENCY_ROUTE_H
#define DM_RESIDENCY_ROUTE_H

#include <stddef.h>

#include "residency/topology.h"

enum residency_route {
	ROUTE_REDIRECT, /* *target is its home site */
	ROUTE_REFUSE,   /* no home given, or none the topology knows, or it is here */
};

/* home: the ISO code the vehicle claimed (NULL when it said nothing).
 * here_site: this node's site id. */
enum residency_route residency_route(const struct topology *topology, const char *here_site,
				     const char *home, const char *vin,
				     const struct topology_site **target);

#endif
