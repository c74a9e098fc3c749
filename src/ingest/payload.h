/*
 * payload.h — decoding a vehicle's batch (JSON or protobuf) into samples and
 * checking every sample against the signal catalog; encoding batches for the
 * agent and the tests.
 *
 * How the two forms are told apart: an MQTT 5 publisher may say so (Payload
 * Format Indicator 1 = UTF-8 text means JSON; a Content Type of
 * "application/json" or "application/x-protobuf" is taken at its word).
 * Otherwise the first byte that is not JSON whitespace decides: '{' (0x7B)
 * is JSON. In protobuf 0x7B would be the tag of field 15 with wire type 3
 * (start group), which our schema never uses, so no valid protobuf batch can
 * begin with it; anything else is decoded as protobuf.
 *
 * A batch is accepted whole or refused whole: an unknown signal, a value of
 * the wrong type, a value outside the catalog's range, a timestamp more than
 * max_future_ms ahead of now (or before 2000-01-01), more than max_samples
 * samples, or bytes that do not parse refuse the batch, with a reason for the
 * vehicle that names the sample index, the signal and what was expected.
 * Reasons never contain the refused value itself (promise 3: values never
 * reach logs).
 *
 * The decoder is reused from batch to batch so that decoding allocates
 * nothing per sample once warm. Samples and string values it hands out are
 * owned by the decoder: borrowed, valid until the next payload_decode or
 * payload_decoder_free. A decoder is used by one thread at a time.
 */
#ifndef DM_PAYLOAD_H
#define DM_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/catalog.h"
#include "util/buf.h"

enum payload_format { PAYLOAD_AUTO = 0, PAYLOAD_JSON = 1, PAYLOAD_PROTOBUF = 2 };

/* One value; which member is set follows the signal's catalog type
 * (SIG_BOOL uses i = 0 or 1). */
struct sample_value {
	union {
		double f;
		int64_t i;
	} num;
	const char *str; /* SIG_STRING only: not NUL-terminated */
	uint32_t str_len;
};

struct sample {
	int64_t ts_ms;
	uint16_t signal; /* catalog id */
	struct sample_value value;
};

struct payload_batch {
	uint64_t seq;
	size_t count;
	const struct sample *samples; /* count samples, in the order sent */
};

struct payload_limits {
	size_t max_samples;    /* default 10000 */
	int64_t max_future_ms; /* default 300000 (five minutes of clock skew) */
};

struct payload_decoder;

/* limits may be NULL for the defaults. The catalog is borrowed and must
 * outlive the decoder. */
int payload_decoder_new(const struct catalog *catalog, const struct payload_limits *limits,
			struct payload_decoder **out);
void payload_decoder_free(struct payload_decoder *decoder);

/* Which form `bytes` is in, by the rule above, when the sender did not say. */
enum payload_format payload_detect(const uint8_t *bytes, size_t len);

/*
 * Decodes and validates one batch. format PAYLOAD_AUTO detects.
 * Returns DM_OK and fills *out; or DM_ERR_MALFORMED (does not parse),
 * DM_ERR_INVALID (parses, but a sample breaks the catalog's rules) or
 * DM_ERR_TOO_LARGE (too many samples), with `reason` (NUL-terminated, at most
 * reason_len bytes) saying why, e.g.
 *   "sample 3 (Vehicle.Speed): above the maximum 400 km/h".
 * On failure *out is empty.
 */
int payload_decode(struct payload_decoder *decoder, const uint8_t *bytes, size_t len,
		   enum payload_format format, int64_t now_ms, struct payload_batch *out,
		   char *reason, size_t reason_len);

/* Encode a batch in either form, appending to out (used by the agent and
 * tests). Signals are named through the catalog. */
int payload_encode(const struct catalog *catalog, const struct payload_batch *batch,
		   enum payload_format format, struct dm_buf *out);

#endif
