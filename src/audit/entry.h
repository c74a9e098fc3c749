/*
 * entry.h — one audit entry and its canonical encoding: the exact bytes
 * that become a leaf of the audit log's Merkle tree.
 *
 * An entry says when, who (a principal, a vehicle, or the node itself),
 * what (an action on an object, with the request's parameters), the
 * outcome and a request id. It never holds sample values, tokens or
 * secrets: callers pass only names, VINs registered here (for a foreign
 * vehicle, its keyed pseudonym), the query parameters their routes define
 * (the API keeps no other) and statuses.
 *
 * Encoding: a JSON object, UTF-8, no whitespace, keys in byte order at
 * every level, non-ASCII escaped as \uXXXX (upper-case hex, as jansson
 * writes it), integers in decimal, no floats, and only the fields that are
 * set (absent, not null):
 *
 *   {"action":"vehicle.samples","index":41,"object":"LSVAU218XN2183294",
 *    "outcome":"ok","params":{"signal":"Vehicle.Speed"},
 *    "prev":"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","request":"9f1c…",
 *    "site":"cn-shanghai-1","status":200,"time":1732400000123,"v":1,
 *    "who":{"kind":"principal","name":"li","role":"owner"}}
 *
 * The same entry always encodes to the same bytes, so it always hashes the
 * same; `index` is its position in the log, so an entry moved, dropped or
 * swapped no longer fits where it sits. `prev` chains the entries: in every
 * entry but the first (index 0, which has none) it is the base64 (standard,
 * padded, audit/checkpoint.h) of the Merkle leaf hash SHA-256(0x00 || bytes)
 * of the entry before it, so an entry changed in place no longer fits the
 * one after it (audit/verify.h).
 */
#ifndef DM_AUDIT_ENTRY_H
#define DM_AUDIT_ENTRY_H

#include <jansson.h>
#include <stdint.h>

#include "util/buf.h"

#define AUDIT_ENTRY_VERSION 1

struct audit_entry {
	uint64_t index;         /* set by the log when it appends */
	int64_t time_ms;        /* set by the log when 0 */
	const char *site;       /* set by the log */
	const char *request;    /* request id; NULL for none */
	const char *who_kind;   /* "principal", "vehicle", "node" or "anonymous" */
	const char *who;        /* principal name, VIN or pseudonym; NULL for none */
	const char *role;       /* the principal's role; NULL for none */
	const char *action;     /* e.g. "vehicle.samples", "principal.add", "mqtt.connect" */
	const char *object;     /* what it acted on; NULL for none */
	json_t *params;         /* borrowed: a JSON object of string or integer values; NULL */
	const char *outcome;    /* "ok", "denied", "refused", "redirected", "gone", "error" */
	int status;             /* HTTP status or MQTT reason code; 0 for none */
	const char *prev;       /* set by the log: base64 of the previous entry's leaf
	                         * hash; NULL for the first entry */
};

/* Appends the canonical encoding of e to out. Returns DM_OK; DM_ERR_INVALID
 * when a required field (who_kind, action, outcome) is missing, prev is set
 * on the entry of index 0, a string is
 * not valid UTF-8 or params holds anything but strings and integers;
 * DM_ERR_NOMEM. On failure out is unchanged. */
int audit_entry_encode(const struct audit_entry *e, struct dm_buf *out);

#endif
