/*
 * pki.c — the vehicle CA of one jurisdiction, with OpenSSL 3's C API.
 *
 * Formats (see pki.h for the directory layout): keys are PKCS#8 PEM,
 * certificates and the CRL are PEM; revoked.txt is text, one line per
 * revoked certificate, "SERIAL_HEX UNIX_SECONDS\n", the serial as
 * BN_bn2hex writes it (upper case, no leading zeros).
 *
 * Invariants:
 *  1. A key file is created with open(O_CREAT | O_EXCL, 0600): it never
 *     replaces an existing file and is never readable by others, not even
 *     for a moment. Certificates are created with O_EXCL too.
 *  2. Issuing leaves either both NAME.key and NAME.crt or neither: a
 *     certificate that cannot be written takes its fresh key with it.
 *  3. The C of an issued certificate is the CA's C; the caller cannot choose
 *     it. The CA key is checked against ca.crt before it signs anything.
 *  4. revoked.txt only grows (a serial is added once) and is replaced
 *     atomically before ca.crl is: a crash between the two leaves a CRL
 *     that the next revocation brings up to date, never a lost revocation.
 *  5. Every OpenSSL object is freed on every path; every message names the
 *     file, and OpenSSL's reason where OpenSSL failed.
 */
#include "crypto/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "crypto/fail.h"
#include "util/err.h"
#include "util/file.h"
#include "util/vin.h"

#define CURVE_NAME "P-256"
#define SERIAL_BYTES 16
#define CRL_NEXT_UPDATE_SECONDS (7L * 24 * 60 * 60)
#define REVOKED_FILE_MAX (64u * 1024 * 1024)
#define SITE_ID_MAX 63
#define SAN_MAX 32
#define HOST_MAX 253
#define WHY_MAX 256

/* The CA as loaded from its directory. */
struct ca {
	X509 *cert;
	EVP_PKEY *key;
	char jurisdiction[3];
};

/* What kind of leaf certificate to issue. */
enum leaf_kind { LEAF_CLIENT, LEAF_SERVER };

static int make_path(char *out, size_t out_len, const char *dir, const char *name,
                     const char *suffix, char *err, size_t err_len)
{
	int n = snprintf(out, out_len, "%s/%s%s", dir, name, suffix);
	if (n < 0 || (size_t)n >= out_len)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "%s/%s%s: path too long", dir, name,
		            suffix);
	return DM_OK;
}

/* ---- files ------------------------------------------------------------------------------- */

typedef int (*emit_fn)(FILE *f, const void *obj);

static int emit_key(FILE *f, const void *obj)
{
	return PEM_write_PrivateKey(f, (EVP_PKEY *)obj, NULL, NULL, 0, NULL, NULL) == 1;
}

static int emit_cert(FILE *f, const void *obj)
{
	return PEM_write_X509(f, (X509 *)obj) == 1;
}

static int emit_crl(FILE *f, const void *obj)
{
	return PEM_write_X509_CRL(f, (X509_CRL *)obj) == 1;
}

static int emit_text(FILE *f, const void *obj)
{
	const struct dm_buf *text = obj;
	return text->len == 0 || fwrite(text->data, 1, text->len, f) == text->len;
}

/* Writes obj to path through emit and fsyncs it. With O_EXCL in flags the
 * file must not exist; on failure a file this call created is removed. */
static int write_file(const char *path, int flags, mode_t mode, emit_fn emit, const void *obj,
                      char *err, size_t err_len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, mode);
	if (fd < 0) {
		if (errno == EEXIST)
			return crypto_fail(err, err_len, DM_ERR_EXISTS,
			            "%s: exists, refusing to overwrite", path);
		return crypto_fail(err, err_len, DM_ERR_IO, "%s: cannot create: %s", path,
		            strerror(errno));
	}
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		int saved = errno;
		close(fd);
		unlink(path);
		return crypto_fail(err, err_len, DM_ERR_IO, "%s: %s", path, strerror(saved));
	}
	int ok = emit(f, obj);
	if (!ok) {
		fclose(f);
		unlink(path);
		return crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, path);
	}
	int io_ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	int saved = errno;
	if (fclose(f) != 0 && io_ok) {
		io_ok = 0;
		saved = errno;
	}
	if (!io_ok) {
		unlink(path);
		return crypto_fail(err, err_len, DM_ERR_IO, "%s: cannot write: %s", path, strerror(saved));
	}
	return DM_OK;
}

/* Replaces path whole: writes path.tmp, then renames it over path. */
static int replace_file(const char *path, emit_fn emit, const void *obj, char *err, size_t err_len)
{
	char tmp[PATH_MAX];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "%s.tmp: path too long", path);
	unlink(tmp); /* a leftover of an earlier crash */
	int status = write_file(tmp, O_EXCL, 0644, emit, obj, err, err_len);
	if (status != DM_OK)
		return status;
	if (rename(tmp, path) != 0) {
		int saved = errno;
		unlink(tmp);
		return crypto_fail(err, err_len, DM_ERR_IO, "%s: cannot replace: %s", path,
		            strerror(saved));
	}
	return DM_OK;
}

static int refuse_existing(const char *path, char *err, size_t err_len)
{
	if (access(path, F_OK) == 0)
		return crypto_fail(err, err_len, DM_ERR_EXISTS, "%s: exists, refusing to overwrite", path);
	return DM_OK;
}

static int read_cert(const char *path, X509 **out, char *err, size_t err_len)
{
	*out = NULL;
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return crypto_fail(err, err_len, errno == ENOENT ? DM_ERR_NOT_FOUND : DM_ERR_IO,
		            "%s: cannot open: %s", path, strerror(errno));
	*out = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (*out == NULL) {
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "%s: not a PEM certificate", path);
		return crypto_ssl_fail(err, err_len, DM_ERR_MALFORMED, what);
	}
	return DM_OK;
}

/* ---- names ------------------------------------------------------------------------------- */

static int is_site_id(const char *s)
{
	size_t len = s == NULL ? 0 : strlen(s);
	if (len == 0 || len > SITE_ID_MAX || s[0] == '-' || s[len - 1] == '-')
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

/* A DNS name for a SAN: labels of [A-Za-z0-9-] (a leading "*." allowed),
 * 1..63 bytes each, not starting or ending with '-'. */
static int is_dns_name(const char *s, size_t len)
{
	if (len == 0 || len > HOST_MAX)
		return 0;
	size_t pos = 0;
	if (len > 2 && s[0] == '*' && s[1] == '.')
		pos = 2;
	size_t label = 0;
	for (; pos <= len; pos++) {
		char c = pos < len ? s[pos] : '.';
		if (c == '.') {
			if (label == 0 || label > 63 || s[pos - 1] == '-')
				return 0;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || (c == '-' && label > 0)) {
			label++;
		} else {
			return 0;
		}
	}
	return 1;
}

/* Copies the one entry of nid in name into out (out_len bytes with the NUL).
 * DM_ERR_INVALID when there is none, more than one, it does not fit or holds
 * a NUL. */
static int name_entry(const X509_NAME *name, int nid, char *out, size_t out_len)
{
	out[0] = '\0';
	int index = X509_NAME_get_index_by_NID(name, nid, -1);
	if (index < 0 || X509_NAME_get_index_by_NID(name, nid, index) >= 0)
		return DM_ERR_INVALID;
	const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
	int len = ASN1_STRING_length(data);
	const unsigned char *bytes = ASN1_STRING_get0_data(data);
	if (len <= 0 || (size_t)len >= out_len || memchr(bytes, '\0', (size_t)len) != NULL)
		return DM_ERR_INVALID;
	memcpy(out, bytes, (size_t)len);
	out[len] = '\0';
	return DM_OK;
}

/* ---- building certificates --------------------------------------------------------------- */

static EVP_PKEY *new_key(void)
{
	return EVP_EC_gen(CURVE_NAME);
}

/* A random positive serial of SERIAL_BYTES bytes (top bit clear, so that
 * the DER INTEGER needs no sign byte and stays at most 16 bytes; RFC 5280
 * allows 20). */
static int set_random_serial(X509 *cert)
{
	unsigned char bytes[SERIAL_BYTES];
	if (RAND_bytes(bytes, sizeof bytes) != 1)
		return 0;
	bytes[0] &= 0x7f;
	bytes[0] |= 0x40; /* never zero, always the full length */
	BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
	if (bn == NULL)
		return 0;
	ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	if (serial == NULL)
		return 0;
	int ok = X509_set_serialNumber(cert, serial) == 1;
	ASN1_INTEGER_free(serial);
	return ok;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return 0;
	int ok = X509_add_ext(cert, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok;
}

/* A certificate with version 3, a random serial, the validity, subject
 * CN=cn, C=country and the public half of key; issuer, extensions and the
 * signature are the caller's. NULL on failure (the error is in OpenSSL's
 * queue). */
static X509 *new_cert(EVP_PKEY *key, const char *cn, const char *country, unsigned days)
{
	X509 *cert = X509_new();
	if (cert == NULL)
		return NULL;
	X509_NAME *name = X509_get_subject_name(cert);
	int ok = X509_set_version(cert, X509_VERSION_3) == 1 && set_random_serial(cert) &&
	         X509_gmtime_adj(X509_getm_notBefore(cert), 0) != NULL &&
	         X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, NULL) != NULL &&
	         X509_NAME_add_entry_by_NID(name, NID_countryName, MBSTRING_ASC,
	                                    (const unsigned char *)country, -1, -1, 0) == 1 &&
	         X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	                                    (const unsigned char *)cn, -1, -1, 0) == 1 &&
	         X509_set_pubkey(cert, key) == 1;
	if (!ok) {
		X509_free(cert);
		return NULL;
	}
	return cert;
}

/* Adds the subjectAltName of hosts (see pki_issue_server) to cert.
 * DM_ERR_INVALID with a message for a bad entry. */
static int add_sans(X509 *cert, const char *hosts, char *err, size_t err_len)
{
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	if (names == NULL)
		return crypto_ssl_fail(err, err_len, DM_ERR_NOMEM, "subjectAltName");
	int status = DM_OK;
	const char *pos = hosts;
	for (;;) {
		const char *comma = strchr(pos, ',');
		size_t len = comma != NULL ? (size_t)(comma - pos) : strlen(pos);
		const char *start = pos;
		while (len > 0 && (*start == ' ' || *start == '\t')) {
			start++;
			len--;
		}
		while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
			len--;
		char host[HOST_MAX + 1];
		if (len == 0 || len > HOST_MAX) {
			status = crypto_fail(err, err_len, DM_ERR_INVALID,
			              "hosts: entry %d is empty or longer than %d bytes",
			              sk_GENERAL_NAME_num(names) + 1, HOST_MAX);
			break;
		}
		if (sk_GENERAL_NAME_num(names) >= SAN_MAX) {
			status = crypto_fail(err, err_len, DM_ERR_TOO_LARGE, "hosts: more than %d entries",
			              SAN_MAX);
			break;
		}
		memcpy(host, start, len);
		host[len] = '\0';

		unsigned char addr[16];
		GENERAL_NAME *gn = GENERAL_NAME_new();
		int ok = gn != NULL;
		if (ok &&
		    (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)) {
			ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
			ok = ip != NULL;
			if (ok)
				GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
		} else if (ok && is_dns_name(host, len)) {
			ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
			ok = dns != NULL && ASN1_STRING_set(dns, host, (int)len) == 1;
			if (ok)
				GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
			else
				ASN1_IA5STRING_free(dns);
		} else if (ok) {
			GENERAL_NAME_free(gn);
			status =
			    crypto_fail(err, err_len, DM_ERR_INVALID,
			         "hosts: '%.64s' is neither an IP address nor a DNS name", host);
			break;
		}
		if (!ok || sk_GENERAL_NAME_push(names, gn) <= 0) {
			GENERAL_NAME_free(gn);
			status = crypto_ssl_fail(err, err_len, DM_ERR_NOMEM, "subjectAltName");
			break;
		}
		if (comma == NULL)
			break;
		pos = comma + 1;
	}
	if (status == DM_OK && X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, 0) != 1)
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "subjectAltName");
	GENERAL_NAMES_free(names);
	return status;
}

/* ---- the CA ------------------------------------------------------------------------------ */

static void ca_release(struct ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	ca->cert = NULL;
	ca->key = NULL;
}

/* Loads ca.crt and ca.key of dir, checks they belong together and reads
 * the jurisdiction (the subject C) of the CA. */
static int ca_load(const char *dir, struct ca *ca, char *err, size_t err_len)
{
	memset(ca, 0, sizeof *ca);
	char path[PATH_MAX];
	int status = make_path(path, sizeof path, dir, "ca", ".crt", err, err_len);
	if (status == DM_OK)
		status = read_cert(path, &ca->cert, err, err_len);
	if (status != DM_OK)
		return status;
	if (name_entry(X509_get_subject_name(ca->cert), NID_countryName, ca->jurisdiction,
	               sizeof ca->jurisdiction) != DM_OK ||
	    !jurisdiction_code_valid(ca->jurisdiction)) {
		ca_release(ca);
		return crypto_fail(err, err_len, DM_ERR_MALFORMED,
		            "%s: subject has no single C of two upper-case letters", path);
	}
	status = make_path(path, sizeof path, dir, "ca", ".key", err, err_len);
	if (status != DM_OK) {
		ca_release(ca);
		return status;
	}
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		int saved = errno;
		ca_release(ca);
		return crypto_fail(err, err_len, saved == ENOENT ? DM_ERR_NOT_FOUND : DM_ERR_IO,
		            "%s: cannot open: %s", path, strerror(saved));
	}
	ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (ca->key == NULL) {
		ca_release(ca);
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "%s: not a PEM private key", path);
		return crypto_ssl_fail(err, err_len, DM_ERR_MALFORMED, what);
	}
	if (X509_check_private_key(ca->cert, ca->key) != 1) {
		ca_release(ca);
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "%s: does not match %s/ca.crt", path, dir);
		return crypto_ssl_fail(err, err_len, DM_ERR_INVALID, what);
	}
	return DM_OK;
}

static int build_crl(const struct ca *ca, const struct dm_buf *revoked, int64_t number,
                     long lifetime_s, X509_CRL **out, const char *crl_path, char *err,
                     size_t err_len);

static int check_days(unsigned days, char *err, size_t err_len)
{
	if (days == 0 || days > PKI_DAYS_MAX)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "validity of %u days is not in 1..%u",
		            days, PKI_DAYS_MAX);
	return DM_OK;
}

int pki_ca_create(const char *dir, const char *jurisdiction, unsigned days, char *err,
                  size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (dir == NULL || !jurisdiction_code_valid(jurisdiction))
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "jurisdiction '%.8s' is not two upper-case letters (ISO 3166 alpha-2)",
		            jurisdiction != NULL ? jurisdiction : "(null)");
	int status = check_days(days, err, err_len);
	if (status != DM_OK)
		return status;
	char key_path[PATH_MAX], cert_path[PATH_MAX], crl_path[PATH_MAX];
	if ((status = make_path(key_path, sizeof key_path, dir, "ca", ".key", err, err_len)) ||
	    (status = make_path(cert_path, sizeof cert_path, dir, "ca", ".crt", err, err_len)) ||
	    (status = make_path(crl_path, sizeof crl_path, dir, "ca", ".crl", err, err_len)) ||
	    (status = refuse_existing(key_path, err, err_len)) ||
	    (status = refuse_existing(cert_path, err, err_len)) ||
	    (status = refuse_existing(crl_path, err, err_len)))
		return status;

	EVP_PKEY *key = new_key();
	if (key == NULL)
		return crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "CA key generation");
	char cn[64];
	snprintf(cn, sizeof cn, "domicile vehicle CA %s", jurisdiction);
	X509 *cert = new_cert(key, cn, jurisdiction, days);
	int ok = cert != NULL && X509_set_issuer_name(cert, X509_get_subject_name(cert)) == 1 &&
	         add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") &&
	         add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") &&
	         add_ext(cert, cert, NID_subject_key_identifier, "hash") &&
	         X509_sign(cert, key, EVP_sha256()) > 0;
	if (!ok)
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "CA certificate");
	if (status == DM_OK)
		status = write_file(key_path, O_EXCL, 0600, emit_key, key, err, err_len);
	if (status == DM_OK) {
		status = write_file(cert_path, O_EXCL, 0644, emit_cert, cert, err, err_len);
		if (status != DM_OK)
			unlink(key_path);
	}
	if (status == DM_OK) {
		/* An empty CRL from the start: a node refuses a CA without one
		 * (revocation could not be enforced), so a new CA works at once.
		 * Its crlNumber is 1; the first revocation's is 2. */
		struct ca ca = {.cert = cert, .key = key};
		struct dm_buf none = {0};
		X509_CRL *crl = NULL;
		status = build_crl(&ca, &none, 1, CRL_NEXT_UPDATE_SECONDS, &crl, crl_path, err,
		                   err_len);
		if (status == DM_OK)
			status = write_file(crl_path, O_EXCL, 0644, emit_crl, crl, err, err_len);
		X509_CRL_free(crl);
		if (status != DM_OK) {
			unlink(cert_path);
			unlink(key_path);
		}
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	return status;
}

/* Issues NAME.key and NAME.crt in out_dir (see pki_issue_vehicle). */
static int issue_leaf(const char *ca_dir, const char *name, enum leaf_kind kind, const char *hosts,
                      const char *out_dir, unsigned days, char *err, size_t err_len)
{
	int status = check_days(days, err, err_len);
	if (status != DM_OK)
		return status;
	char key_path[PATH_MAX], cert_path[PATH_MAX];
	if ((status = make_path(key_path, sizeof key_path, out_dir, name, ".key", err, err_len)) ||
	    (status =
	         make_path(cert_path, sizeof cert_path, out_dir, name, ".crt", err, err_len)) ||
	    (status = refuse_existing(key_path, err, err_len)) ||
	    (status = refuse_existing(cert_path, err, err_len)))
		return status;
	struct ca ca;
	status = ca_load(ca_dir, &ca, err, err_len);
	if (status != DM_OK)
		return status;

	EVP_PKEY *key = new_key();
	X509 *cert = key != NULL ? new_cert(key, name, ca.jurisdiction, days) : NULL;
	const char *usage = kind == LEAF_CLIENT ? "clientAuth" : "serverAuth";
	const char *key_usage = kind == LEAF_CLIENT ? "critical,digitalSignature"
	                                            : "critical,digitalSignature,keyAgreement";
	int ok = cert != NULL && X509_set_issuer_name(cert, X509_get_subject_name(ca.cert)) == 1 &&
	         add_ext(cert, ca.cert, NID_basic_constraints, "critical,CA:FALSE") &&
	         add_ext(cert, ca.cert, NID_key_usage, key_usage) &&
	         add_ext(cert, ca.cert, NID_ext_key_usage, usage) &&
	         add_ext(cert, ca.cert, NID_subject_key_identifier, "hash") &&
	         add_ext(cert, ca.cert, NID_authority_key_identifier, "keyid:always");
	if (!ok)
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, cert_path);
	if (status == DM_OK && kind == LEAF_SERVER)
		status = add_sans(cert, hosts, err, err_len);
	if (status == DM_OK && X509_sign(cert, ca.key, EVP_sha256()) <= 0)
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, cert_path);
	if (status == DM_OK)
		status = write_file(key_path, O_EXCL, 0600, emit_key, key, err, err_len);
	if (status == DM_OK) {
		status = write_file(cert_path, O_EXCL, 0644, emit_cert, cert, err, err_len);
		if (status != DM_OK)
			unlink(key_path);
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	ca_release(&ca);
	return status;
}

int pki_issue_vehicle(const char *ca_dir, const char *vin, const char *out_dir, unsigned days,
                      char *err, size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (ca_dir == NULL || vin == NULL || out_dir == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "a directory or the VIN is missing");
	char why[WHY_MAX];
	size_t len = strnlen(vin, VIN_LEN + 1);
	if (vin_check(vin, len, why, sizeof why) != DM_OK)
		/* The VIN's first 3 characters (the maker) only: see vin.h on logging. */
		return crypto_fail(err, err_len, DM_ERR_INVALID, "%.3s...: not a valid VIN: %s", vin, why);
	return issue_leaf(ca_dir, vin, LEAF_CLIENT, NULL, out_dir, days, err, err_len);
}

int pki_issue_server(const char *ca_dir, const char *site_id, const char *hosts,
                     const char *out_dir, unsigned days, char *err, size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (ca_dir == NULL || out_dir == NULL || hosts == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "a directory or the hosts are missing");
	if (!is_site_id(site_id))
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "site id '%.64s' is not 1..63 of [a-z0-9-] without a '-' at either end",
		            site_id != NULL ? site_id : "(null)");
	return issue_leaf(ca_dir, site_id, LEAF_SERVER, hosts, out_dir, days, err, err_len);
}

/* ---- revocation -------------------------------------------------------------------------- */

/* Adds one revoked entry (serial in hex, revoked at when) to crl. */
static int add_revoked(X509_CRL *crl, const char *hex, time_t when)
{
	BIGNUM *bn = NULL;
	if (BN_hex2bn(&bn, hex) == 0)
		return 0;
	ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	ASN1_TIME *date = ASN1_TIME_set(NULL, when);
	X509_REVOKED *entry = X509_REVOKED_new();
	int ok = serial != NULL && date != NULL && entry != NULL &&
	         X509_REVOKED_set_serialNumber(entry, serial) == 1 &&
	         X509_REVOKED_set_revocationDate(entry, date) == 1 &&
	         X509_CRL_add0_revoked(crl, entry) == 1;
	if (!ok)
		X509_REVOKED_free(entry);
	ASN1_INTEGER_free(serial);
	ASN1_TIME_free(date);
	return ok;
}

/* The crlNumber of dir/ca.crl, or 0 when there is no CRL yet. */
static int previous_crl_number(const char *crl_path, int64_t *out, char *err, size_t err_len)
{
	*out = 0;
	FILE *f = fopen(crl_path, "r");
	if (f == NULL) {
		if (errno == ENOENT)
			return DM_OK;
		return crypto_fail(err, err_len, DM_ERR_IO, "%s: cannot open: %s", crl_path,
		            strerror(errno));
	}
	X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (crl == NULL) {
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "%s: not a PEM CRL", crl_path);
		return crypto_ssl_fail(err, err_len, DM_ERR_MALFORMED, what);
	}
	ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	int ok = number != NULL && ASN1_INTEGER_get_int64(out, number) == 1 && *out >= 0 &&
	         *out < INT64_MAX;
	ASN1_INTEGER_free(number);
	X509_CRL_free(crl);
	if (!ok) {
		ERR_clear_error();
		return crypto_fail(err, err_len, DM_ERR_MALFORMED, "%s: no usable crlNumber", crl_path);
	}
	return DM_OK;
}

/* Builds and signs the CRL of every line of revoked (already checked). */
static int build_crl(const struct ca *ca, const struct dm_buf *revoked, int64_t number,
                     long lifetime_s, X509_CRL **out, const char *crl_path, char *err,
                     size_t err_len)
{
	*out = NULL;
	X509_CRL *crl = X509_CRL_new();
	time_t now = time(NULL);
	ASN1_TIME *last = ASN1_TIME_set(NULL, now);
	ASN1_TIME *next = ASN1_TIME_set(NULL, now + lifetime_s);
	ASN1_INTEGER *crl_number = ASN1_INTEGER_new();
	int ok = crl != NULL && last != NULL && next != NULL && crl_number != NULL &&
	         X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1 &&
	         X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) == 1 &&
	         X509_CRL_set1_lastUpdate(crl, last) == 1 &&
	         X509_CRL_set1_nextUpdate(crl, next) == 1 &&
	         ASN1_INTEGER_set_int64(crl_number, number) == 1 &&
	         X509_CRL_add1_ext_i2d(crl, NID_crl_number, crl_number, 0, 0) == 1;
	if (ok) {
		X509V3_CTX ctx;
		X509V3_set_ctx(&ctx, ca->cert, NULL, NULL, crl, 0);
		X509_EXTENSION *aki =
		    X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
		ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) == 1;
		X509_EXTENSION_free(aki);
	}
	/* Lines were checked by read_revoked: "HEX SECONDS\n". */
	const char *text = (const char *)revoked->data;
	size_t pos = 0;
	while (ok && pos < revoked->len) {
		const char *line = text + pos;
		const char *end = memchr(line, '\n', revoked->len - pos);
		char hex[48];
		long long when = 0;
		ok = end != NULL && sscanf(line, "%40s %lld", hex, &when) == 2 &&
		     add_revoked(crl, hex, (time_t)when);
		pos = end != NULL ? (size_t)(end - text) + 1 : revoked->len;
	}
	ok = ok && X509_CRL_sort(crl) == 1 && X509_CRL_sign(crl, ca->key, EVP_sha256()) > 0;
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	ASN1_INTEGER_free(crl_number);
	if (!ok) {
		X509_CRL_free(crl);
		return crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, crl_path);
	}
	*out = crl;
	return DM_OK;
}

/* Reads revoked.txt (missing: empty) into out, checking every line, and
 * sets *found when serial is on one of them. */
static int read_revoked(const char *path, const char *serial, struct dm_buf *out, int *found,
                        char *err, size_t err_len)
{
	*found = 0;
	if (access(path, F_OK) != 0 && errno == ENOENT)
		return DM_OK;
	int status = dm_read_file(path, REVOKED_FILE_MAX, out, err, err_len);
	if (status != DM_OK)
		return status;
	size_t pos = 0, line_no = 1;
	size_t serial_len = strlen(serial);
	while (pos < out->len) {
		const char *line = (const char *)out->data + pos;
		const char *end = memchr(line, '\n', out->len - pos);
		if (end == NULL)
			return crypto_fail(err, err_len, DM_ERR_MALFORMED, "%s:%zu: no line end", path,
			            line_no);
		size_t len = (size_t)(end - line);
		size_t hex_len = 0;
		while (hex_len < len && ((line[hex_len] >= '0' && line[hex_len] <= '9') ||
		                         (line[hex_len] >= 'A' && line[hex_len] <= 'F')))
			hex_len++;
		size_t digits = 0;
		while (hex_len + 1 + digits < len && line[hex_len + 1 + digits] >= '0' &&
		       line[hex_len + 1 + digits] <= '9')
			digits++;
		if (hex_len == 0 || hex_len > 40 || hex_len >= len || line[hex_len] != ' ' ||
		    digits == 0 || digits > 18 || hex_len + 1 + digits != len)
			return crypto_fail(err, err_len, DM_ERR_MALFORMED,
			            "%s:%zu: expected 'SERIAL_HEX UNIX_SECONDS'", path, line_no);
		if (hex_len == serial_len && memcmp(line, serial, hex_len) == 0)
			*found = 1;
		pos += len + 1;
		line_no++;
	}
	return DM_OK;
}

/* Replaces ca.crl with one listing every line of revoked, numbered one
 * above the previous CRL, valid for lifetime_s from now. */
static int reissue_crl(const struct ca *ca, const struct dm_buf *revoked, const char *crl_path,
                       long lifetime_s, char *err, size_t err_len)
{
	int64_t number = 0;
	X509_CRL *crl = NULL;
	int status = previous_crl_number(crl_path, &number, err, err_len);
	if (status == DM_OK)
		status = build_crl(ca, revoked, number + 1, lifetime_s, &crl, crl_path, err,
		                   err_len);
	if (status == DM_OK)
		status = replace_file(crl_path, emit_crl, crl, err, err_len);
	X509_CRL_free(crl);
	return status;
}

int pki_revoke(const char *ca_dir, const char *cert_path, char *err, size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (ca_dir == NULL || cert_path == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "a directory or the certificate is missing");
	char revoked_path[PATH_MAX], crl_path[PATH_MAX];
	int status =
	    make_path(revoked_path, sizeof revoked_path, ca_dir, "revoked", ".txt", err, err_len);
	if (status == DM_OK)
		status = make_path(crl_path, sizeof crl_path, ca_dir, "ca", ".crl", err, err_len);
	if (status != DM_OK)
		return status;
	struct ca ca;
	status = ca_load(ca_dir, &ca, err, err_len);
	if (status != DM_OK)
		return status;
	X509 *cert = NULL;
	char *serial = NULL;
	struct dm_buf revoked = {0};
	status = read_cert(cert_path, &cert, err, err_len);
	if (status != DM_OK)
		goto out;
	EVP_PKEY *ca_public = X509_get0_pubkey(ca.cert);
	if (X509_check_issued(ca.cert, cert) != X509_V_OK || ca_public == NULL ||
	    X509_verify(cert, ca_public) != 1) {
		ERR_clear_error();
		status = crypto_fail(err, err_len, DM_ERR_INVALID, "%s: not issued by the CA in %s",
		              cert_path, ca_dir);
		goto out;
	}
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	serial = bn != NULL ? BN_bn2hex(bn) : NULL;
	BN_free(bn);
	if (serial == NULL || serial[0] == '-') {
		status = crypto_ssl_fail(err, err_len, DM_ERR_INVALID, cert_path);
		goto out;
	}
	int found = 0;
	status = read_revoked(revoked_path, serial, &revoked, &found, err, err_len);
	if (status != DM_OK)
		goto out;
	if (!found) {
		status = dm_buf_printf(&revoked, "%s %lld\n", serial, (long long)time(NULL));
		if (status == DM_OK)
			status = replace_file(revoked_path, emit_text, &revoked, err, err_len);
		else
			crypto_fail(err, err_len, status, "%s: out of memory", revoked_path);
		if (status != DM_OK)
			goto out;
	}
	status = reissue_crl(&ca, &revoked, crl_path, CRL_NEXT_UPDATE_SECONDS, err, err_len);
out:
	dm_buf_free(&revoked);
	OPENSSL_free(serial);
	X509_free(cert);
	ca_release(&ca);
	return status;
}

int pki_crl(const char *ca_dir, unsigned days, char *err, size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (ca_dir == NULL || days < 1 || days > PKI_CRL_DAYS_MAX)
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "a CA directory and a lifetime of 1 to %u days are needed",
		            PKI_CRL_DAYS_MAX);
	char revoked_path[PATH_MAX], crl_path[PATH_MAX];
	int status =
	    make_path(revoked_path, sizeof revoked_path, ca_dir, "revoked", ".txt", err, err_len);
	if (status == DM_OK)
		status = make_path(crl_path, sizeof crl_path, ca_dir, "ca", ".crl", err, err_len);
	if (status != DM_OK)
		return status;
	struct ca ca;
	status = ca_load(ca_dir, &ca, err, err_len);
	if (status != DM_OK)
		return status;
	struct dm_buf revoked = {0};
	int found = 0;
	status = read_revoked(revoked_path, "", &revoked, &found, err, err_len);
	if (status == DM_OK)
		status = reissue_crl(&ca, &revoked, crl_path, (long)days * 24 * 60 * 60, err,
		                     err_len);
	dm_buf_free(&revoked);
	ca_release(&ca);
	return status;
}

/* ---- identity ---------------------------------------------------------------------------- */

int pki_x509_jurisdiction(const X509 *cert, char jurisdiction[3])
{
	jurisdiction[0] = '\0';
	char country[3];
	if (cert == NULL ||
	    name_entry(X509_get_subject_name(cert), NID_countryName, country, sizeof country) !=
	        DM_OK ||
	    !jurisdiction_code_valid(country))
		return DM_ERR_INVALID;
	memcpy(jurisdiction, country, sizeof country);
	return DM_OK;
}

int pki_x509_identity(const X509 *cert, char vin[18], char jurisdiction[3], char *err,
                      size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	vin[0] = '\0';
	jurisdiction[0] = '\0';
	if (cert == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "no certificate");
	const X509_NAME *subject = X509_get_subject_name(cert);
	char cn[VIN_LEN + 1], country[3];
	char why[WHY_MAX];
	if (name_entry(subject, NID_commonName, cn, sizeof cn) != DM_OK)
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "subject needs exactly one CN of at most %d bytes", VIN_LEN);
	if (vin_check(cn, strlen(cn), why, sizeof why) != DM_OK)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "CN is not a valid VIN: %s", why);
	if (pki_x509_jurisdiction(cert, country) != DM_OK)
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "subject needs exactly one C of two upper-case letters");
	memcpy(vin, cn, sizeof cn);
	memcpy(jurisdiction, country, sizeof country);
	return DM_OK;
}

int pki_cert_identity(const char *cert_path, char vin[18], char jurisdiction[3], char *err,
                      size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	vin[0] = '\0';
	jurisdiction[0] = '\0';
	if (cert_path == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "no certificate path");
	X509 *cert = NULL;
	int status = read_cert(cert_path, &cert, err, err_len);
	if (status != DM_OK)
		return status;
	char why[WHY_MAX];
	status = pki_x509_identity(cert, vin, jurisdiction, why, sizeof why);
	if (status != DM_OK)
		crypto_fail(err, err_len, status, "%s: %s", cert_path, why);
	X509_free(cert);
	return status;
}
