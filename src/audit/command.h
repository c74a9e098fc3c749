/*
 * command.h — `domicile audit`: the auditor's offline tools (audit/verify)
 * and the site key's verifier string (audit/checkpoint).
 *
 *   domicile audit verify (--key KEY | --key-file FILE) --checkpoint FILE
 *        [--checkpoint FILE ...] [--trusted FILE ...] [--proofs FILE ...]
 *        [--origin ORIGIN] ENTRIES.json [ENTRIES.json ...]
 *   domicile audit verify-inclusion (--key KEY | --key-file FILE)
 *        --checkpoint FILE --proof FILE|- (--entry BASE64 | --entry-file FILE)
 *        [--origin ORIGIN]
 *   domicile audit key --file FILE --name NAME
 *   domicile audit fetch --api URL --token-file FILE [--cacert FILE]
 *        (--key KEY | --key-file FILE) --out DIR
 *
 * ENTRIES.json files are exports of GET /v1/audit/entries, read in the order
 * given (and, within a file, one object after another) as one log from
 * index 0. KEY is the signed-note verifier key (GET /v1/audit/key); a key
 * file holds it on one line. `key` prints the verifier key of the key file,
 * creating the file (mode 0600) when it does not exist.
 *
 * `fetch` exports a running node's log as an auditor (audit/fetch.h) into
 * the new directory DIR: checkpoint and entries.json, ready for `verify`,
 * after checking the node's key and checkpoint against KEY; it exits 0
 * when the export was written, 1 when nothing was.
 *
 * Exits 0 when everything verifies (printing "OK: …"), 1 when it does not
 * (printing the first problem, "entry N: reason" or "checkpoint FILE: …",
 * and a "note: …" line when there is more to say) or an input cannot be
 * read, 2 for a usage error.
 */
#ifndef DM_AUDIT_COMMAND_H
#define DM_AUDIT_COMMAND_H

/* argv[0] is "audit". */
int audit_main(int argc, char **argv);

#endif
