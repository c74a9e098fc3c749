/*
 * principals_command.h — `domicile principals`: manage a running node's
 * principals through its API (so every change passes the API's
 * authorization, as the admin, and whatever the API records).
 *
 *   domicile principals add NAME --role ROLE [--vin VIN]... CONNECTION
 *   domicile principals list [--json] CONNECTION
 *   domicile principals remove NAME CONNECTION
 *
 * CONNECTION is -c NODE.CONF (the node's api_listen, https when it has
 * tls_cert, and data_dir/admin.token) or --api URL --token-file FILE;
 * --cacert FILE names the CA to trust over https. `add` prints the new
 * token alone on stdout: it is shown this once.
 *
 * Exits 0 on success, 1 when the operation failed (the reason on stderr),
 * 2 for a usage error.
 */
#ifndef DM_PRINCIPALS_COMMAND_H
#define DM_PRINCIPALS_COMMAND_H

/* argv[0] is "principals". */
int principals_main(int argc, char **argv);

#endif
