#include "crypto/pki_command.h"

#include <errno.h>
#include <getopt.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/pki.h"
#include "util/err.h"

static const char usage_text[] =
	"usage: domicile pki ca --dir CA_DIR --jurisdiction CC [--days N]\n"
	"       domicile pki vehicle --ca CA_DIR --vin VIN --out DIR [--days N]\n"
	"       domicile pki server --ca CA_DIR --site SITE --hosts H1,H2 --out DIR [--days N]\n"
	"       domicile pki revoke --ca CA_DIR --cert FILE\n"
	"       domicile pki crl --ca CA_DIR [--days N]   (a fresh CRL; run daily)\n";

struct args {
	const char *dir, *jurisdiction, *ca, *vin, *out, *site, *hosts, *cert;
	unsigned days;
};

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static int parse(int argc, char **argv, struct args *a)
{
	static const struct option options[] = {
		{"dir", required_argument, NULL, 'd'},   {"jurisdiction", required_argument, NULL, 'j'},
		{"ca", required_argument, NULL, 'c'},    {"vin", required_argument, NULL, 'v'},
		{"out", required_argument, NULL, 'o'},   {"site", required_argument, NULL, 's'},
		{"hosts", required_argument, NULL, 'H'}, {"cert", required_argument, NULL, 'C'},
		{"days", required_argument, NULL, 'D'},  {NULL, 0, NULL, 0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'd': a->dir = optarg; break;
		case 'j': a->jurisdiction = optarg; break;
		case 'c': a->ca = optarg; break;
		case 'v': a->vin = optarg; break;
		case 'o': a->out = optarg; break;
		case 's': a->site = optarg; break;
		case 'H': a->hosts = optarg; break;
		case 'C': a->cert = optarg; break;
		case 'D': {
			unsigned long days = strtoul(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || days == 0 || days > PKI_DAYS_MAX) {
				fprintf(stderr, "domicile pki: --days must be 1 to %u\n", PKI_DAYS_MAX);
				return 0;
			}
			a->days = (unsigned)days;
			break;
		}
		default: return 0;
		}
	}
	return optind == argc;
}

int pki_main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *what = argv[1];
	struct args a = {.days = 0};
	if (!parse(argc - 1, argv + 1, &a))
		return usage();
	char err[1024] = "";
	int rc;
	/* The directories that will hold keys are made private. */
	const char *dir = strcmp(what, "ca") == 0 ? a.dir : strcmp(what, "crl") == 0 ? NULL : a.out;
	if (dir && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "domicile pki %s: cannot create %s: %s\n", what, dir,
			strerror(errno));
		return 1;
	}
	if (strcmp(what, "ca") == 0 && a.dir && a.jurisdiction)
		rc = pki_ca_create(a.dir, a.jurisdiction, a.days ? a.days : 3650, err, sizeof err);
	else if (strcmp(what, "vehicle") == 0 && a.ca && a.vin && a.out)
		rc = pki_issue_vehicle(a.ca, a.vin, a.out, a.days ? a.days : 825, err, sizeof err);
	else if (strcmp(what, "server") == 0 && a.ca && a.site && a.hosts && a.out)
		rc = pki_issue_server(a.ca, a.site, a.hosts, a.out, a.days ? a.days : 397, err,
				      sizeof err);
	else if (strcmp(what, "revoke") == 0 && a.ca && a.cert)
		rc = pki_revoke(a.ca, a.cert, err, sizeof err);
	else if (strcmp(what, "crl") == 0 && a.ca)
		rc = pki_crl(a.ca, a.days ? a.days : 7, err, sizeof err);
	else
		return usage();
	if (rc) {
		fprintf(stderr, "domicile pki %s: %s\n", what, err[0] ? err : dm_strerror(rc));
		return 1;
	}
	return 0;
}
