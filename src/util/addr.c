#include "util/addr.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int addr_split(const char *address, char *host, size_t host_len, int *port)
{
	const char *colon = strrchr(address, ':');
	if (!colon || colon == address)
		return DM_ERR_INVALID;
	const char *start = address, *end = colon;
	if (*start == '[') {
		if (end[-1] != ']')
			return DM_ERR_INVALID;
		start++;
		end--;
	}
	size_t len = (size_t)(end - start);
	if (len == 0 || len >= host_len)
		return DM_ERR_INVALID;
	char *stop;
	long value = strtol(colon + 1, &stop, 10);
	if (colon[1] == '\0' || *stop != '\0' || value < 0 || value > 65535)
		return DM_ERR_INVALID;
	memcpy(host, start, len);
	host[len] = '\0';
	*port = (int)value;
	return DM_OK;
}
