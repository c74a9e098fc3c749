/*
 * keys_command.h — `domicile keys`: the command line of the key store.
 *
 *   domicile keys pkcs11-init --module M --token LABEL --key LABEL --pin-file F
 *       makes the KEK inside the token: AES-256, sensitive, non-extractable,
 *       labelled LABEL, with a random 4-byte CKA_ID (the kek id); refuses
 *       when the token already holds a key of that label
 *   domicile keys pkcs11-check --module M --token LABEL --key LABEL --pin-file F
 *       opens the key store as the node would and prints the current kek id
 *       and that the key is sensitive and non-extractable
 *
 * Exits 0 on success, 1 when the operation failed (the reason on stderr),
 * 2 for a usage error.
 */
#ifndef DM_KEYS_COMMAND_H
#define DM_KEYS_COMMAND_H

/* argv[0] is "keys". */
int keys_main(int argc, char **argv);

#endif
