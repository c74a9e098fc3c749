/*
 * command.h — `domicile residency report`: fetches a running node's
 * residency report over its API and prints it as a table (or as JSON with
 * --json). Exits 0 when the report's self-check passed, 1 when it failed,
 * 2 for a usage or connection error.
 */
#ifndef DM_RESIDENCY_COMMAND_H
#define DM_RESIDENCY_COMMAND_H

/* argv[0] is "residency". */
int residency_main(int argc, char **argv);

#endif
