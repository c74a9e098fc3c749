#include "crypto/keys_command.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "crypto/keystore.h"
#include "crypto/keystore_pkcs11.h"
#include "util/err.h"

static const char usage_text[] =
    "usage: domicile keys pkcs11-init --module M --token LABEL --key LABEL --pin-file F\n"
    "       domicile keys pkcs11-check --module M --token LABEL --key LABEL --pin-file F\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

/* Fills o from the options; returns 0 for a usage error. */
static int parse(int argc, char **argv, struct keystore_pkcs11_options *o)
{
	static const struct option options[] = {
	    {"module", required_argument, NULL, 'm'},
	    {"token", required_argument, NULL, 't'},
	    {"key", required_argument, NULL, 'k'},
	    {"pin-file", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'm':
			o->module = optarg;
			break;
		case 't':
			o->token = optarg;
			break;
		case 'k':
			o->key = optarg;
			break;
		case 'p':
			o->pin_file = optarg;
			break;
		default:
			return 0;
		}
	}
	return optind == argc && o->module && o->token && o->key && o->pin_file;
}

int keys_main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *what = argv[1];
	struct keystore_pkcs11_options o = {.pin = NULL};
	if (!parse(argc - 1, argv + 1, &o))
		return usage();
	int rc;
	if (strcmp(what, "pkcs11-init") == 0) {
		uint32_t id = 0;
		rc = keystore_pkcs11_create_key(&o, &id);
		if (rc == DM_OK)
			printf("token '%s': made key '%s', kek id %08x: AES-256, sensitive, "
			       "non-extractable\n",
			       o.token, o.key, (unsigned)id);
	} else if (strcmp(what, "pkcs11-check") == 0) {
		struct keystore *ks = NULL;
		rc = keystore_pkcs11_open(&o, &ks);
		if (rc == DM_OK)
			printf("token '%s': key '%s', kek id %08x: AES-256, sensitive, "
			       "non-extractable\n",
			       o.token, o.key, (unsigned)keystore_key_id(ks));
		keystore_free(ks);
	} else {
		return usage();
	}
	if (rc != DM_OK) {
		fprintf(stderr, "domicile keys %s: %s (token '%s', key '%s')\n", what,
		        dm_strerror(rc), o.token, o.key);
		return 1;
	}
	return 0;
}
