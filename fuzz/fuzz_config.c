/*
 * fuzz_config.c — node_config_parse on arbitrary bytes: it must never read
 * outside the input, crash or leave a half-filled struct, and every refusal
 * must come with a message naming the file.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/config.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct node_config config;
	char err[256];
	int rc = node_config_parse("fuzz.conf", (const char *)data, size, &config, err, sizeof err);
	if (rc != DM_OK && rc != DM_ERR_INVALID)
		abort();
	if (rc == DM_ERR_INVALID && strncmp(err, "fuzz.conf:", 10) != 0)
		abort();
	if (rc == DM_OK && (err[0] != '\0' || strlen(config.jurisdiction) != 2 ||
			    config.site[0] == '\0' || config.mqtt_listen[0] == '\0'))
		abort();
	return 0;
}
