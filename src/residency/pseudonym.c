#include "residency/pseudonym.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

static int read_key(int fd, const char *path, unsigned char key[PSEUDONYM_KEY_LEN])
{
	unsigned char extra;
	ssize_t got = read(fd, key, PSEUDONYM_KEY_LEN);
	if (got != PSEUDONYM_KEY_LEN || read(fd, &extra, 1) != 0) {
		dm_error("%s: a pseudonym key is exactly %d bytes", path, PSEUDONYM_KEY_LEN);
		return DM_ERR_INVALID;
	}
	return DM_OK;
}

int pseudonym_key_load(const char *data_dir, unsigned char key[PSEUDONYM_KEY_LEN])
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/pseudonym.key", data_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		int rc = read_key(fd, path, key);
		close(fd);
		return rc;
	}
	if (errno != ENOENT) {
		dm_error("cannot read %s: %s", path, strerror(errno));
		return DM_ERR_IO;
	}
	if (RAND_bytes(key, PSEUDONYM_KEY_LEN) != 1)
		return DM_ERR_CRYPTO;
	/* O_EXCL: two nodes on one directory must not each make a key. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = DM_OK;
	if (fd < 0 || write(fd, key, PSEUDONYM_KEY_LEN) != PSEUDONYM_KEY_LEN || fsync(fd) != 0) {
		dm_error("cannot write %s: %s", path, strerror(errno));
		rc = DM_ERR_IO;
	}
	if (fd >= 0)
		close(fd);
	if (rc != DM_OK)
		unlink(path);
	return rc;
}

int pseudonym_of(const unsigned char key[PSEUDONYM_KEY_LEN], const char *vin, size_t vin_len,
		 char out[PSEUDONYM_LEN])
{
	unsigned char mac[32];
	size_t mac_len = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, PSEUDONYM_KEY_LEN,
		       (const unsigned char *)vin, vin_len, mac, sizeof mac, &mac_len) ||
	    mac_len != sizeof mac) {
		snprintf(out, PSEUDONYM_LEN, "vh-unavailable");
		return DM_ERR_CRYPTO;
	}
	static const char hex[] = "0123456789abcdef";
	memcpy(out, "vh-", 3);
	for (int i = 0; i < 8; i++) {
		out[3 + 2 * i] = hex[mac[i] >> 4];
		out[4 + 2 * i] = hex[mac[i] & 15];
	}
	out[PSEUDONYM_LEN - 1] = '\0';
	return DM_OK;
}
