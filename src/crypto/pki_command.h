/*
 * pki_command.h — `domicile pki`: the command line of crypto/pki.
 *
 *   domicile pki ca --dir CA_DIR --jurisdiction CC [--days N]
 *   domicile pki vehicle --ca CA_DIR --vin VIN --out DIR [--days N]
 *   domicile pki server --ca CA_DIR --site SITE --hosts H1,H2 --out DIR [--days N]
 *   domicile pki revoke --ca CA_DIR --cert FILE
 *   domicile pki crl --ca CA_DIR [--days N]
 *
 * Exits 0 on success, 1 when the operation failed (with the reason on
 * stderr), 2 for a usage error.
 */
#ifndef DM_PKI_COMMAND_H
#define DM_PKI_COMMAND_H

/* argv[0] is "pki". */
int pki_main(int argc, char **argv);

#endif
