/*
 * test_pki.c — the vehicle CA: creation, issuing, revocation and reading a
 * vehicle's identity back. Certificates are checked with OpenSSL's own
 * verifier (X509_verify_cert), not with pki.c's code, so the tests say what
 * a TLS peer will accept. Each case runs in its own mkdtemp directory with
 * ca/, out/ and other/ below it, removed afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/pki.h"
#include "util/err.h"

#define VIN_A "1M8GDM9AXKP042788" /* valid, with its check digit */
#define VIN_B "2HGFC2F54LH512345"
#define DAYS 30

struct dirs {
	char root[64];
	char ca[128];
	char out[128];
	char other[128];
};

static int setup(void **state)
{
	struct dirs *dirs = calloc(1, sizeof *dirs);
	if (dirs == NULL)
		return -1;
	strcpy(dirs->root, "/tmp/test_pki.XXXXXX");
	if (mkdtemp(dirs->root) == NULL) {
		free(dirs);
		return -1;
	}
	snprintf(dirs->ca, sizeof dirs->ca, "%s/ca", dirs->root);
	snprintf(dirs->out, sizeof dirs->out, "%s/out", dirs->root);
	snprintf(dirs->other, sizeof dirs->other, "%s/other", dirs->root);
	if (mkdir(dirs->ca, 0700) != 0 || mkdir(dirs->out, 0700) != 0 ||
	    mkdir(dirs->other, 0700) != 0)
		return -1;
	*state = dirs;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct dirs *dirs = *state;
	int rc = nftw(dirs->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(dirs);
	return rc;
}

static void path_of(char *out, const char *dir, const char *name)
{
	int len = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	assert_true(len > 0 && len < PATH_MAX);
}

static X509 *load_cert(const char *dir, const char *name)
{
	char path[PATH_MAX];
	path_of(path, dir, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(cert);
	return cert;
}

static X509_CRL *load_crl(const char *dir)
{
	char path[PATH_MAX];
	path_of(path, dir, "ca.crl");
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(crl);
	return crl;
}

/* X509_V_OK when OpenSSL's verifier accepts leaf under ca (and crl, if any,
 * with CRL checking on), else the verifier's error. */
static int verify_with(X509 *ca, X509_CRL *crl, X509 *leaf)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(store, ca), 1);
	if (crl != NULL) {
		assert_int_equal(X509_STORE_add_crl(store, crl), 1);
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
	int verified = X509_verify_cert(ctx);
	int error = X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return verified == 1 ? X509_V_OK : (error == X509_V_OK ? -1 : error);
}

static int verify_leaf(const struct dirs *dirs, const char *name, int with_crl)
{
	X509 *ca = load_cert(dirs->ca, "ca.crt");
	X509 *leaf = load_cert(dirs->out, name);
	X509_CRL *crl = with_crl ? load_crl(dirs->ca) : NULL;
	int result = verify_with(ca, crl, leaf);
	X509_CRL_free(crl);
	X509_free(leaf);
	X509_free(ca);
	return result;
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int count = 0;
	struct dirent *entry;
	while ((entry = readdir(d)) != NULL)
		if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
			count++;
	closedir(d);
	return count;
}

static int file_mode(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	path_of(path, dir, name);
	assert_int_equal(stat(path, &st), 0);
	return (int)(st.st_mode & 07777);
}

static int is_critical(X509 *cert, int nid)
{
	int index = X509_get_ext_by_NID(cert, nid, -1);
	assert_true(index >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(cert, index));
}

static long crl_number(X509_CRL *crl)
{
	ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	assert_non_null(number);
	long value = ASN1_INTEGER_get(number);
	ASN1_INTEGER_free(number);
	return value;
}

static void create_ca(const char *dir, const char *jurisdiction)
{
	char err[256];
	assert_int_equal(pki_ca_create(dir, jurisdiction, DAYS, err, sizeof err), DM_OK);
}

static void issue(const struct dirs *dirs, const char *vin)
{
	char err[256];
	int rc = pki_issue_vehicle(dirs->ca, vin, dirs->out, DAYS, err, sizeof err);
	if (rc != DM_OK)
		print_error("%s\n", err);
	assert_int_equal(rc, DM_OK);
}

static void revoke_leaf(const struct dirs *dirs, const char *name)
{
	char err[256], path[PATH_MAX];
	path_of(path, dirs->out, name);
	int rc = pki_revoke(dirs->ca, path, err, sizeof err);
	if (rc != DM_OK)
		print_error("%s\n", err);
	assert_int_equal(rc, DM_OK);
}

static void test_ca_key_is_written_readable_by_its_owner_only(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	assert_int_equal(file_mode(dirs->ca, "ca.key"), 0600);
	assert_int_equal(count_files(dirs->ca), 3); /* ca.key, ca.crt, ca.crl */
}

static void test_new_ca_has_an_empty_signed_crl_numbered_one(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	X509_CRL *crl = load_crl(dirs->ca);
	X509 *ca = load_cert(dirs->ca, "ca.crt");
	/* No entries: OpenSSL keeps no list at all (NULL counts -1). */
	assert_true(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) <= 0);
	assert_int_equal(crl_number(crl), 1);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
	X509_CRL_free(crl);
	X509_free(ca);
	/* With CRL checking on, a fresh CA's certificates verify at once. */
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 1), X509_V_OK);
}

static void test_ca_creation_refuses_to_overwrite_an_existing_ca(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	create_ca(dirs->ca, "CN");
	X509 *before = load_cert(dirs->ca, "ca.crt");
	assert_int_equal(pki_ca_create(dirs->ca, "CN", DAYS, err, sizeof err), DM_ERR_EXISTS);
	assert_non_null(strstr(err, "ca.key: exists, refusing to overwrite"));
	X509 *after = load_cert(dirs->ca, "ca.crt");
	assert_int_equal(X509_cmp(before, after), 0);
	X509_free(before);
	X509_free(after);

	/* A lone key (an interrupted earlier run) is not replaced either. */
	char path[PATH_MAX];
	path_of(path, dirs->ca, "ca.crt");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(pki_ca_create(dirs->ca, "CN", DAYS, err, sizeof err), DM_ERR_EXISTS);
	assert_int_equal(count_files(dirs->ca), 2);
}

static void test_ca_certificate_is_self_signed_and_a_critical_ca(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "DE");
	X509 *ca = load_cert(dirs->ca, "ca.crt");
	assert_int_equal(X509_check_issued(ca, ca), X509_V_OK);
	assert_int_equal(X509_verify(ca, X509_get0_pubkey(ca)), 1);
	assert_int_equal(verify_with(ca, NULL, ca), X509_V_OK);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_true(is_critical(ca, NID_basic_constraints));
	assert_true(is_critical(ca, NID_key_usage));
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(ca));

	char cn[64], c[8];
	X509_NAME *subject = X509_get_subject_name(ca);
	assert_true(X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof cn) > 0);
	assert_true(X509_NAME_get_text_by_NID(subject, NID_countryName, c, sizeof c) > 0);
	assert_string_equal(cn, "domicile vehicle CA DE");
	assert_string_equal(c, "DE");

	/* P-256, so that TLS 1.2 clients accept it. */
	char group[32];
	assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(ca)), EVP_PKEY_EC);
	assert_int_equal(EVP_PKEY_get_group_name(X509_get0_pubkey(ca), group, sizeof group, NULL),
	                 1);
	assert_string_equal(group, "prime256v1");
	X509_free(ca);
}

static void test_ca_creation_refuses_a_jurisdiction_that_is_not_two_capitals(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	assert_int_equal(pki_ca_create(dirs->ca, "cn", DAYS, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(pki_ca_create(dirs->ca, "CHN", DAYS, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(pki_ca_create(dirs->ca, "C", DAYS, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(pki_ca_create(dirs->ca, "CN", 0, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(count_files(dirs->ca), 0);
}

static void test_vehicle_certificate_verifies_and_names_the_vehicle_and_its_home(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	assert_int_equal(file_mode(dirs->out, VIN_A ".key"), 0600);
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 0), X509_V_OK);

	X509 *leaf = load_cert(dirs->out, VIN_A ".crt");
	assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT);
	assert_false(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
	assert_int_equal(X509_check_ca(leaf), 0);
	assert_non_null(X509_get0_authority_key_id(leaf));
	/* 128 random bits, positive. */
	const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
	assert_int_equal(ASN1_STRING_length(serial), 16);
	assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER);
	X509_free(leaf);

	char vin[18], jurisdiction[3], err[256];
	char path[PATH_MAX];
	path_of(path, dirs->out, VIN_A ".crt");
	assert_int_equal(pki_cert_identity(path, vin, jurisdiction, err, sizeof err), DM_OK);
	assert_string_equal(vin, VIN_A);
	assert_string_equal(jurisdiction, "CN");
}

static void test_vehicle_certificates_get_different_serials(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	issue(dirs, VIN_B);
	X509 *a = load_cert(dirs->out, VIN_A ".crt");
	X509 *b = load_cert(dirs->out, VIN_B ".crt");
	assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)),
	                     0);
	X509_free(a);
	X509_free(b);
}

static void test_a_bad_vin_is_refused_and_no_file_is_written(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	create_ca(dirs->ca, "CN");
	/* Wrong check digit, a forbidden letter, too short, a path. */
	const char *bad[] = {"1M8GDM9A0KP042788", "1M8GDM9AXKP04278I", "1M8GDM9AXKP04278",
	                     "../../../etc/pass", ""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		assert_int_equal(
		    pki_issue_vehicle(dirs->ca, bad[i], dirs->out, DAYS, err, sizeof err),
		    DM_ERR_INVALID);
		assert_non_null(strstr(err, "not a valid VIN"));
	}
	assert_int_equal(count_files(dirs->out), 0);
	assert_int_equal(count_files(dirs->ca), 3);
}

static void test_issuing_refuses_to_overwrite_an_existing_vehicle_key(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	X509 *before = load_cert(dirs->out, VIN_A ".crt");
	assert_int_equal(pki_issue_vehicle(dirs->ca, VIN_A, dirs->out, DAYS, err, sizeof err),
	                 DM_ERR_EXISTS);
	assert_non_null(strstr(err, VIN_A ".key: exists, refusing to overwrite"));
	X509 *after = load_cert(dirs->out, VIN_A ".crt");
	assert_int_equal(X509_cmp(before, after), 0);
	X509_free(before);
	X509_free(after);
}

static void test_issuing_without_a_ca_names_the_missing_file(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	assert_int_equal(pki_issue_vehicle(dirs->ca, VIN_A, dirs->out, DAYS, err, sizeof err),
	                 DM_ERR_NOT_FOUND);
	assert_non_null(strstr(err, "ca.crt: cannot open"));
	assert_int_equal(count_files(dirs->out), 0);
}

static void test_revoked_certificate_fails_while_an_unrevoked_one_still_verifies(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	issue(dirs, VIN_B);
	revoke_leaf(dirs, VIN_A ".crt");
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 1), X509_V_ERR_CERT_REVOKED);
	assert_int_equal(verify_leaf(dirs, VIN_B ".crt", 1), X509_V_OK);
	/* Without the CRL the revoked one still verifies: the CRL is what counts. */
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 0), X509_V_OK);
}

static void test_revoking_twice_keeps_one_entry_and_raises_the_crl_number(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	issue(dirs, VIN_B);

	revoke_leaf(dirs, VIN_A ".crt");
	X509_CRL *first = load_crl(dirs->ca);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(first)), 1);
	assert_int_equal(crl_number(first), 2); /* 1 is the CA's empty CRL */
	X509 *ca = load_cert(dirs->ca, "ca.crt");
	assert_int_equal(X509_CRL_verify(first, X509_get0_pubkey(ca)), 1);
	/* nextUpdate is a week after lastUpdate. */
	int days = 0, seconds = 0;
	assert_int_equal(ASN1_TIME_diff(&days, &seconds, X509_CRL_get0_lastUpdate(first),
	                                X509_CRL_get0_nextUpdate(first)),
	                 1);
	assert_int_equal(days, 7);
	assert_int_equal(seconds, 0);
	X509_CRL_free(first);

	revoke_leaf(dirs, VIN_A ".crt");
	X509_CRL *second = load_crl(dirs->ca);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(second)), 1);
	assert_int_equal(crl_number(second), 3);
	X509_CRL_free(second);

	/* A later revocation keeps the earlier one. */
	revoke_leaf(dirs, VIN_B ".crt");
	X509_CRL *third = load_crl(dirs->ca);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(third)), 2);
	assert_int_equal(crl_number(third), 4);
	assert_int_equal(X509_CRL_verify(third, X509_get0_pubkey(ca)), 1);
	X509_CRL_free(third);
	X509_free(ca);
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 1), X509_V_ERR_CERT_REVOKED);
	assert_int_equal(verify_leaf(dirs, VIN_B ".crt", 1), X509_V_ERR_CERT_REVOKED);
}

static void test_a_fresh_crl_keeps_every_revocation_with_the_lifetime_asked(void **state)
{
	struct dirs *dirs = *state;
	create_ca(dirs->ca, "CN");
	issue(dirs, VIN_A);
	revoke_leaf(dirs, VIN_A ".crt");
	char err[512];
	assert_int_equal(pki_crl(dirs->ca, 30, err, sizeof err), DM_OK);
	X509_CRL *crl = load_crl(dirs->ca);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
	assert_int_equal(crl_number(crl), 3);
	int days = 0, seconds = 0;
	assert_int_equal(ASN1_TIME_diff(&days, &seconds, X509_CRL_get0_lastUpdate(crl),
	                                X509_CRL_get0_nextUpdate(crl)),
	                 1);
	assert_int_equal(days, 30);
	X509_CRL_free(crl);
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 1), X509_V_ERR_CERT_REVOKED);
	/* Lifetimes outside 1 .. PKI_CRL_DAYS_MAX are refused, the CRL untouched. */
	assert_int_equal(pki_crl(dirs->ca, 0, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(pki_crl(dirs->ca, PKI_CRL_DAYS_MAX + 1, err, sizeof err),
	                 DM_ERR_INVALID);
	crl = load_crl(dirs->ca);
	assert_int_equal(crl_number(crl), 3);
	X509_CRL_free(crl);
}

static void test_certificate_from_another_ca_neither_verifies_nor_can_be_revoked(void **state)
{
	struct dirs *dirs = *state;
	char err[256], path[PATH_MAX];
	create_ca(dirs->ca, "CN");
	/* A second CA claiming the same jurisdiction: the name alone must not do. */
	create_ca(dirs->other, "CN");
	assert_int_equal(pki_issue_vehicle(dirs->other, VIN_A, dirs->out, DAYS, err, sizeof err),
	                 DM_OK);
	assert_int_equal(verify_leaf(dirs, VIN_A ".crt", 0),
	                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	path_of(path, dirs->out, VIN_A ".crt");
	assert_int_equal(pki_revoke(dirs->ca, path, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "not issued by the CA"));
	assert_int_equal(count_files(dirs->ca), 3); /* no revoked.txt, the CRL untouched */
}

static void test_server_certificate_has_the_given_names_and_server_auth(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	create_ca(dirs->ca, "CN");
	int rc = pki_issue_server(dirs->ca, "cn-shanghai-1",
	                          "10.1.0.5, mqtt.cn-shanghai-1.example.cn,2001:db8::5", dirs->out,
	                          DAYS, err, sizeof err);
	if (rc != DM_OK)
		print_error("%s\n", err);
	assert_int_equal(rc, DM_OK);
	assert_int_equal(file_mode(dirs->out, "cn-shanghai-1.key"), 0600);
	assert_int_equal(verify_leaf(dirs, "cn-shanghai-1.crt", 0), X509_V_OK);

	X509 *leaf = load_cert(dirs->out, "cn-shanghai-1.crt");
	assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
	assert_false(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT);
	assert_int_equal(X509_check_ip_asc(leaf, "10.1.0.5", 0), 1);
	assert_int_equal(X509_check_ip_asc(leaf, "2001:db8::5", 0), 1);
	assert_int_equal(X509_check_host(leaf, "mqtt.cn-shanghai-1.example.cn", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(leaf, "10.1.0.6", 0), 0);
	assert_int_equal(X509_check_host(leaf, "10.1.0.5", 0, 0, NULL), 0);

	/* Exactly three names: one DNS, two IP. */
	GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	assert_non_null(names);
	int dns = 0, ip = 0;
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		int type = sk_GENERAL_NAME_value(names, i)->type;
		dns += type == GEN_DNS;
		ip += type == GEN_IPADD;
	}
	assert_int_equal(sk_GENERAL_NAME_num(names), 3);
	assert_int_equal(dns, 1);
	assert_int_equal(ip, 2);
	GENERAL_NAMES_free(names);
	X509_free(leaf);
}

static void test_server_certificate_refuses_a_bad_host_and_writes_nothing(void **state)
{
	struct dirs *dirs = *state;
	char err[256];
	create_ca(dirs->ca, "CN");
	assert_int_equal(pki_issue_server(dirs->ca, "cn-shanghai-1", "10.1.0.5,,x.example",
	                                  dirs->out, DAYS, err, sizeof err),
	                 DM_ERR_INVALID);
	assert_int_equal(pki_issue_server(dirs->ca, "cn-shanghai-1", "bad host", dirs->out, DAYS,
	                                  err, sizeof err),
	                 DM_ERR_INVALID);
	assert_non_null(strstr(err, "neither an IP address nor a DNS name"));
	assert_int_equal(
	    pki_issue_server(dirs->ca, "cn-shanghai-1", "", dirs->out, DAYS, err, sizeof err),
	    DM_ERR_INVALID);
	assert_int_equal(
	    pki_issue_server(dirs->ca, "../evil", "x.example", dirs->out, DAYS, err, sizeof err),
	    DM_ERR_INVALID);
	assert_int_equal(count_files(dirs->out), 0);
}

static void test_identity_refuses_a_certificate_whose_cn_is_not_a_vin(void **state)
{
	struct dirs *dirs = *state;
	char vin[18], jurisdiction[3], err[256], path[PATH_MAX];
	create_ca(dirs->ca, "CN");
	path_of(path, dirs->ca, "ca.crt");
	assert_int_equal(pki_cert_identity(path, vin, jurisdiction, err, sizeof err),
	                 DM_ERR_INVALID);
	assert_string_equal(vin, "");
	assert_string_equal(jurisdiction, "");
	assert_non_null(strstr(err, "ca.crt"));

	path_of(path, dirs->ca, "ca.key");
	assert_int_equal(pki_cert_identity(path, vin, jurisdiction, err, sizeof err),
	                 DM_ERR_MALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define CASE(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    CASE(test_ca_key_is_written_readable_by_its_owner_only),
	    CASE(test_new_ca_has_an_empty_signed_crl_numbered_one),
	    CASE(test_ca_creation_refuses_to_overwrite_an_existing_ca),
	    CASE(test_ca_certificate_is_self_signed_and_a_critical_ca),
	    CASE(test_ca_creation_refuses_a_jurisdiction_that_is_not_two_capitals),
	    CASE(test_vehicle_certificate_verifies_and_names_the_vehicle_and_its_home),
	    CASE(test_vehicle_certificates_get_different_serials),
	    CASE(test_a_bad_vin_is_refused_and_no_file_is_written),
	    CASE(test_issuing_refuses_to_overwrite_an_existing_vehicle_key),
	    CASE(test_issuing_without_a_ca_names_the_missing_file),
	    CASE(test_revoked_certificate_fails_while_an_unrevoked_one_still_verifies),
	    CASE(test_revoking_twice_keeps_one_entry_and_raises_the_crl_number),
	    CASE(test_a_fresh_crl_keeps_every_revocation_with_the_lifetime_asked),
	    CASE(test_certificate_from_another_ca_neither_verifies_nor_can_be_revoked),
	    CASE(test_server_certificate_has_the_given_names_and_server_auth),
	    CASE(test_server_certificate_refuses_a_bad_host_and_writes_nothing),
	    CASE(test_identity_refuses_a_certificate_whose_cn_is_not_a_vin),
#undef CASE
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
