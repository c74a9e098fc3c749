/*
 * main.c — the `domicile` command: one binary, one subcommand per role.
 */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "api/principals_command.h"
#include "audit/command.h"
#include "crypto/keys_command.h"
#include "crypto/pki_command.h"
#include "node/node.h"
#include "residency/command.h"
#include "util/version.h"

static int usage(FILE *out)
{
	fprintf(out, "usage: domicile COMMAND [OPTIONS]\n"
		     "\n"
		     "commands:\n"
		     "  node -c FILE     run a site's node (MQTT ingest, store, HTTP API)\n"
		     "  agent [OPTIONS]  run simulated vehicles against a node (--help)\n"
		     "  residency report print a node's residency report (--help)\n"
		     "  pki ...          vehicle CA, certificates, revocation (no args: usage)\n"
		     "  principals ...   add, list, remove a node's API principals (--help)\n"
		     "  keys ...         the key store: PKCS#11 token key (no args: usage)\n"
		     "  audit ...        verify an exported audit log, proofs; the site key (--help)\n"
		     "  version          print the version\n");
	return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	const char *command = argv[1];
	if (strcmp(command, "node") == 0)
		return node_main(argc - 1, argv + 1);
	if (strcmp(command, "agent") == 0)
		return agent_main(argc - 1, argv + 1);
	if (strcmp(command, "pki") == 0)
		return pki_main(argc - 1, argv + 1);
	if (strcmp(command, "keys") == 0)
		return keys_main(argc - 1, argv + 1);
	if (strcmp(command, "principals") == 0)
		return principals_main(argc - 1, argv + 1);
	if (strcmp(command, "residency") == 0)
		return residency_main(argc - 1, argv + 1);
	if (strcmp(command, "audit") == 0)
		return audit_main(argc - 1, argv + 1);
	if (strcmp(command, "version") == 0) {
		printf("domicile %s\n", DM_VERSION);
		return 0;
	}
	if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0)
		return usage(stdout);
	fprintf(stderr, "domicile: unknown command '%s'\n", command);
	return usage(stderr);
}
