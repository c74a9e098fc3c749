/*
 * command.c — `domicile audit` (usage and exit codes: command.h). Reads the
 * auditor's files, hands them to audit/verify and prints its verdict: the
 * verdict on stdout, problems reading the inputs on stderr. `fetch` hands
 * its work to audit/fetch.
 */
#include "audit/command.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include "api/client.h"
#include "audit/checkpoint.h"
#include "audit/fetch.h"
#include "audit/verify.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/file.h"

static const char usage_text[] =
    "usage: domicile audit verify (--key KEY | --key-file FILE) --checkpoint FILE\n"
    "           [--checkpoint FILE ...] [--trusted FILE ...] [--proofs FILE ...]\n"
    "           [--origin ORIGIN] ENTRIES.json [ENTRIES.json ...]\n"
    "       domicile audit verify-inclusion (--key KEY | --key-file FILE) --checkpoint FILE\n"
    "           --proof FILE|- (--entry BASE64 | --entry-file FILE) [--origin ORIGIN]\n"
    "       domicile audit key --file FILE --name NAME\n"
    "       domicile audit fetch --api URL --token-file FILE [--cacert FILE]\n"
    "           (--key KEY | --key-file FILE) --out DIR\n"
    "\n"
    "  --key KEY          the site's verifier key (NAME+KEYID+BASE64, GET /v1/audit/key)\n"
    "  --key-file FILE    a file holding it\n"
    "  --checkpoint FILE  a signed checkpoint (GET /v1/audit/checkpoint); repeat for more\n"
    "  --trusted FILE     an older checkpoint the auditor kept; repeat for more\n"
    "  --proofs FILE      inclusion proofs (GET /v1/audit/proof/inclusion) that help\n"
    "                     name a changed entry; one, several or a JSON array per file\n"
    "  --origin ORIGIN    the log's expected origin (default: the first checkpoint's)\n"
    "  ENTRIES.json       exports of GET /v1/audit/entries, in order, from index 0\n"
    "  --proof FILE|-     one inclusion proof, from a file or stdin\n"
    "  --entry BASE64     the entry as the export has it; --entry-file: its exact bytes\n"
    "  --api URL          the node's API, http[s]://HOST:PORT (fetch)\n"
    "  --token-file FILE  a file holding an auditor's bearer token (fetch)\n"
    "  --cacert FILE      over https, the CA certificate to trust (default: the system's)\n"
    "  --out DIR          a new directory, where fetch writes checkpoint and entries.json\n"
    "\n"
    "exit status: 0 verified (fetch: exported), 1 does not verify (fetch: nothing\n"
    "exported) or an input cannot be read, 2 usage\n";

#define MAX_FILES 64
#define EXPORT_FILE_MAX ((size_t)1 << 30)
#define PROOF_FILE_MAX ((size_t)64 << 20)

struct args {
	const char *key, *key_file, *origin, *proof, *entry, *entry_file, *file, *name;
	const char *api, *token_file, *cacert, *out; /* fetch */
	const char *checkpoints[MAX_FILES];
	size_t n_checkpoints;
	const char *trusted[MAX_FILES];
	size_t n_trusted;
	const char *proofs[MAX_FILES];
	size_t n_proofs;
};

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static int push(const char **list, size_t *count, const char *value)
{
	if (*count == MAX_FILES) {
		fprintf(stderr, "domicile audit: at most %d files of one kind\n", MAX_FILES);
		return 0;
	}
	list[(*count)++] = value;
	return 1;
}

/* Fills a from the options; returns 0 for a usage error. optind is where
 * the operands start. */
static int parse(int argc, char **argv, struct args *a)
{
	static const struct option options[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"key-file", required_argument, NULL, 'K'},
	    {"checkpoint", required_argument, NULL, 'c'},
	    {"trusted", required_argument, NULL, 't'},
	    {"proofs", required_argument, NULL, 'P'},
	    {"proof", required_argument, NULL, 'p'},
	    {"origin", required_argument, NULL, 'o'},
	    {"entry", required_argument, NULL, 'e'},
	    {"entry-file", required_argument, NULL, 'E'},
	    {"file", required_argument, NULL, 'f'},
	    {"name", required_argument, NULL, 'n'},
	    {"api", required_argument, NULL, 'a'},
	    {"token-file", required_argument, NULL, 'T'},
	    {"cacert", required_argument, NULL, 'C'},
	    {"out", required_argument, NULL, 'O'},
	    {NULL, 0, NULL, 0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'k':
			a->key = optarg;
			break;
		case 'K':
			a->key_file = optarg;
			break;
		case 'c':
			if (!push(a->checkpoints, &a->n_checkpoints, optarg))
				return 0;
			break;
		case 't':
			if (!push(a->trusted, &a->n_trusted, optarg))
				return 0;
			break;
		case 'P':
			if (!push(a->proofs, &a->n_proofs, optarg))
				return 0;
			break;
		case 'p':
			a->proof = optarg;
			break;
		case 'o':
			a->origin = optarg;
			break;
		case 'e':
			a->entry = optarg;
			break;
		case 'E':
			a->entry_file = optarg;
			break;
		case 'f':
			a->file = optarg;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 'a':
			a->api = optarg;
			break;
		case 'T':
			a->token_file = optarg;
			break;
		case 'C':
			a->cacert = optarg;
			break;
		case 'O':
			a->out = optarg;
			break;
		default:
			return 0;
		}
	}
	return 1;
}

/* Reads path ("-": stdin) whole into out. */
static int read_input(const char *path, size_t max, struct dm_buf *out)
{
	char err[512];
	if (strcmp(path, "-") != 0) {
		int rc = dm_read_file(path, max, out, err, sizeof err);
		if (rc != DM_OK)
			fprintf(stderr, "domicile audit: %s\n", err);
		return rc;
	}
	for (;;) {
		if (out->len > max) {
			fprintf(stderr, "domicile audit: stdin: more than %zu bytes\n", max);
			return DM_ERR_TOO_LARGE;
		}
		if (dm_buf_reserve(out, 65536) != DM_OK) {
			fprintf(stderr, "domicile audit: stdin: out of memory\n");
			return DM_ERR_NOMEM;
		}
		ssize_t got = read(STDIN_FILENO, out->data + out->len, 65536);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			fprintf(stderr, "domicile audit: stdin: %s\n", strerror(errno));
			return DM_ERR_IO;
		}
		if (got == 0)
			return DM_OK;
		out->len += (size_t)got;
	}
}

static int load_verifier(const struct args *a, struct audit_verifier *v)
{
	struct dm_buf file = {0};
	const char *text = a->key;
	size_t len = a->key ? strlen(a->key) : 0;
	const char *source = "--key";
	if (a->key_file) {
		if (read_input(a->key_file, 4096, &file) != DM_OK)
			return DM_ERR_IO;
		text = (const char *)file.data;
		len = file.len;
		/* One line: its end (and nothing else) is not part of the key. */
		if (len > 0 && text[len - 1] == '\n')
			len--;
		if (len > 0 && text[len - 1] == '\r')
			len--;
		source = a->key_file;
	}
	char err[256];
	int rc = audit_verifier_parse(text ? text : "", len, v, err, sizeof err);
	if (rc != DM_OK)
		fprintf(stderr, "domicile audit: %s: %s\n", source, err);
	dm_buf_free(&file);
	return rc;
}

static void format_time(int64_t ms, char *out, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&secs, &tm) || strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, len, "%" PRId64 " ms", ms);
		return;
	}
	size_t used = strlen(out);
	snprintf(out + used, len - used, ".%03dZ", (int)(ms % 1000));
}

static void print_checkpoint(const char *label, const struct audit_checkpoint *cp)
{
	struct dm_buf root = {0};
	char when[64];
	format_time(cp->time_ms, when, sizeof when);
	if (audit_base64_encode(cp->root, MERKLE_HASH_LEN, &root) != DM_OK)
		root.len = 0;
	printf("checkpoint %s (origin %s, size %" PRIu64 ", root %.*s, signed %s)", label,
	       cp->origin, cp->size, (int)root.len, root.data ? (char *)root.data : "", when);
	dm_buf_free(&root);
}

static int run_verify(struct args *a, int argc, char **argv)
{
	if ((!a->key == !a->key_file) || a->n_checkpoints == 0 || optind >= argc || a->proof ||
	    a->entry || a->entry_file || a->file || a->name)
		return usage();
	struct audit_verifier key;
	if (load_verifier(a, &key) != DM_OK)
		return 1;

	int status = 1;
	size_t n_cps = a->n_checkpoints + a->n_trusted;
	struct dm_buf texts[2 * MAX_FILES] = {{0}};
	struct audit_verify_checkpoint cps[2 * MAX_FILES];
	struct audit_entries entries = {0};
	struct audit_inclusion_proof *proofs = NULL;
	size_t n_proofs = 0;
	char err[512];

	for (size_t i = 0; i < n_cps; i++) {
		int trusted = i >= a->n_checkpoints;
		const char *path = trusted ? a->trusted[i - a->n_checkpoints] : a->checkpoints[i];
		if (read_input(path, AUDIT_NOTE_MAX, &texts[i]) != DM_OK)
			goto out;
		cps[i] = (struct audit_verify_checkpoint){path, (const char *)texts[i].data,
		                                          texts[i].len, trusted};
		if (!cps[i].text)
			cps[i].text = "";
	}
	for (int i = optind; i < argc; i++) {
		struct dm_buf file = {0};
		int rc = read_input(argv[i], EXPORT_FILE_MAX, &file);
		if (rc == DM_OK) {
			rc = audit_entries_add_export(&entries, file.data ? (char *)file.data : "",
			                              file.len, argv[i], err, sizeof err);
			if (rc != DM_OK)
				fprintf(stderr, "domicile audit: %s\n", err);
		}
		dm_buf_free(&file);
		if (rc != DM_OK)
			goto out;
	}
	for (size_t i = 0; i < a->n_proofs; i++) {
		struct dm_buf file = {0};
		struct audit_inclusion_proof *more = NULL;
		size_t n_more = 0;
		int rc = read_input(a->proofs[i], PROOF_FILE_MAX, &file);
		if (rc == DM_OK) {
			rc = audit_inclusion_proofs_parse(file.data ? (char *)file.data : "",
			                                  file.len, a->proofs[i], &more, &n_more,
			                                  err, sizeof err);
			if (rc != DM_OK)
				fprintf(stderr, "domicile audit: %s\n", err);
		}
		dm_buf_free(&file);
		if (rc == DM_OK && n_more > 0) {
			struct audit_inclusion_proof *all =
			    dm_realloc(proofs, (n_proofs + n_more) * sizeof *all);
			if (all) {
				memcpy(all + n_proofs, more, n_more * sizeof *all);
				proofs = all;
				n_proofs += n_more;
			} else {
				fprintf(stderr, "domicile audit: out of memory\n");
				rc = DM_ERR_NOMEM;
			}
		}
		dm_free(more);
		if (rc != DM_OK)
			goto out;
	}

	struct audit_verify_input in = {
	    .key = &key,
	    .origin = a->origin,
	    .entries = &entries,
	    .checkpoints = cps,
	    .checkpoint_count = n_cps,
	    .proofs = proofs,
	    .proof_count = n_proofs,
	    .proofs_label = a->n_proofs == 1 ? a->proofs[0] : "the proofs files",
	};
	struct audit_verify_result res;
	int rc = audit_verify_log(&in, &res);
	if (rc == DM_OK && (res.latest.size == 0 || entries.count > res.latest.size)) {
		/* Nothing, or not everything, of what was given is signed: an
		 * auditor must not read that as verified. */
		if (res.latest.size == 0)
			printf("entries 0 to %" PRIu64 ": no checkpoint signs any entry (the "
			       "latest, %s, has size 0)\n",
			       entries.count ? entries.count - 1 : 0, res.latest_label);
		else
			printf("entries %" PRIu64 " to %" PRIu64 ": not signed by any checkpoint "
			       "given (the latest, %s, has size %" PRIu64 "); fetch a newer one\n",
			       res.latest.size, entries.count - 1, res.latest_label, res.latest.size);
	} else if (rc == DM_OK) {
		printf("OK: %" PRIu64 " entries; entries 0 to %" PRIu64 " are what ", entries.count,
		       res.latest.size - 1);
		print_checkpoint(res.latest_label, &res.latest);
		printf(" signed\n");
		for (size_t i = 0; i < n_cps; i++)
			if (cps[i].trusted)
				printf("OK: consistent with trusted checkpoint %s\n", cps[i].label);
		if (n_proofs)
			printf("OK: %zu of %zu inclusion proofs verified\n", res.proofs_used,
			       n_proofs);
		if (res.note[0])
			printf("%s\n", res.note);
		status = 0;
	} else if (rc == DM_ERR_CRYPTO) {
		printf("%s\n", res.reason);
		if (res.note[0])
			printf("%s\n", res.note);
	} else {
		fprintf(stderr, "domicile audit verify: %s\n", dm_strerror(rc));
	}
out:
	for (size_t i = 0; i < n_cps; i++)
		dm_buf_free(&texts[i]);
	audit_entries_free(&entries);
	dm_free(proofs);
	return status;
}

static int run_verify_inclusion(struct args *a, int argc)
{
	if ((!a->key == !a->key_file) || a->n_checkpoints != 1 || a->n_trusted || a->n_proofs ||
	    !a->proof || (!a->entry == !a->entry_file) || optind != argc || a->file || a->name)
		return usage();
	struct audit_verifier key;
	if (load_verifier(a, &key) != DM_OK)
		return 1;
	int status = 1;
	struct dm_buf checkpoint = {0}, proof_text = {0}, entry = {0};
	struct audit_inclusion_proof *proofs = NULL;
	size_t n_proofs = 0;
	char err[512];
	if (read_input(a->checkpoints[0], AUDIT_NOTE_MAX, &checkpoint) != DM_OK ||
	    read_input(a->proof, PROOF_FILE_MAX, &proof_text) != DM_OK)
		goto out;
	if (audit_inclusion_proofs_parse(proof_text.data ? (char *)proof_text.data : "",
	                                 proof_text.len, strcmp(a->proof, "-") ? a->proof : "stdin",
	                                 &proofs, &n_proofs, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile audit: %s\n", err);
		goto out;
	}
	if (n_proofs != 1) {
		fprintf(stderr, "domicile audit verify-inclusion: %s holds %zu proofs, not one\n",
		        a->proof, n_proofs);
		goto out;
	}
	if (a->entry_file) {
		if (read_input(a->entry_file, AUDIT_ENTRY_MAX, &entry) != DM_OK)
			goto out;
	} else {
		size_t len = strlen(a->entry), got = 0;
		if (dm_buf_reserve(&entry, len / 4 * 3 + 1) != DM_OK ||
		    audit_base64_decode(a->entry, len, entry.data, entry.cap, &got) != DM_OK) {
			fprintf(stderr, "domicile audit: --entry is not canonical base64\n");
			goto out;
		}
		entry.len = got;
	}
	struct audit_checkpoint cp;
	char reason[512];
	int rc = audit_verify_inclusion(
	    &key, a->origin, checkpoint.data ? (char *)checkpoint.data : "", checkpoint.len,
	    &proofs[0], entry.data ? entry.data : (uint8_t *)"", entry.len, &cp, reason,
	    sizeof reason);
	if (rc == DM_OK) {
		printf("OK: entry %" PRIu64 " is in the log: ", proofs[0].index);
		print_checkpoint(a->checkpoints[0], &cp);
		printf(" signed it\n");
		status = 0;
	} else {
		printf("%s\n", reason[0] ? reason : dm_strerror(rc));
	}
out:
	dm_buf_free(&checkpoint);
	dm_buf_free(&proof_text);
	dm_buf_free(&entry);
	dm_free(proofs);
	return status;
}

static int run_key(struct args *a, int argc)
{
	if (!a->file || !a->name || optind != argc || a->key || a->key_file || a->n_checkpoints ||
	    a->n_trusted || a->n_proofs || a->proof || a->entry || a->entry_file || a->origin)
		return usage();
	struct audit_key *key = NULL;
	int rc = audit_key_load_or_create(a->file, a->name, &key);
	if (rc != DM_OK) {
		fprintf(stderr, "domicile audit key: %s: %s\n", a->file, dm_strerror(rc));
		return 1;
	}
	struct dm_buf text = {0};
	rc = audit_verifier_format(audit_key_verifier(key), &text);
	if (rc == DM_OK)
		printf("%.*s\n", (int)text.len, (char *)text.data);
	dm_buf_free(&text);
	audit_key_free(key);
	return rc == DM_OK ? 0 : 1;
}

/* The options of the offline commands: none of them reaches a node. */
static int offline_only(const struct args *a)
{
	return !a->api && !a->token_file && !a->cacert && !a->out;
}

static int run_fetch(struct args *a, int argc)
{
	if (!a->api || !a->token_file || !a->out || (!a->key == !a->key_file) || optind != argc ||
	    a->n_checkpoints || a->n_trusted || a->n_proofs || a->proof || a->entry ||
	    a->entry_file || a->origin || a->file || a->name)
		return usage();
	struct audit_verifier key;
	if (load_verifier(a, &key) != DM_OK)
		return 1;
	struct api_client client;
	char err[PATH_MAX + 512] = "";
	if (api_client_init(&client, a->api, a->token_file, a->cacert, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile audit fetch: %s\n", err);
		return 1;
	}
	uint64_t size = 0;
	int rc = audit_fetch(&client, &key, a->out, &size, err, sizeof err);
	OPENSSL_cleanse(client.token, sizeof client.token);
	if (rc != DM_OK) {
		fprintf(stderr, "domicile audit fetch: %s\n", err[0] ? err : dm_strerror(rc));
		return 1;
	}
	printf("fetched into %s the checkpoint signed by your key and the %" PRIu64
	       " entries it signs\n"
	       "check them, with a checkpoint you kept:\n"
	       "  domicile audit verify --key-file SITE.key --checkpoint %s/checkpoint "
	       "--trusted OLD.ckpt %s/entries.json\n",
	       a->out, size, a->out, a->out);
	return 0;
}

int audit_main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *what = argv[1];
	if (strcmp(what, "--help") == 0 || strcmp(what, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	struct args a;
	memset(&a, 0, sizeof a);
	if (!parse(argc - 1, argv + 1, &a))
		return usage();
	if (strcmp(what, "fetch") == 0)
		return run_fetch(&a, argc - 1);
	if (!offline_only(&a))
		return usage();
	if (strcmp(what, "verify") == 0)
		return run_verify(&a, argc - 1, argv + 1);
	if (strcmp(what, "verify-inclusion") == 0)
		return run_verify_inclusion(&a, argc - 1);
	if (strcmp(what, "key") == 0)
		return run_key(&a, argc - 1);
	return usage();
}
