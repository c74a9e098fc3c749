/*
 * pki.h — a jurisdiction's vehicle certificate authority: creating it,
 * issuing vehicle (client) and site (server) certificates, revoking them,
 * and reading a vehicle's identity back out of its certificate.
 *
 * A vehicle proves who it is with a client certificate: its subject CN is
 * the VIN and its subject C is the home jurisdiction, copied from the CA's
 * own subject when the certificate is issued (never taken from a request),
 * so a node that trusts only its own jurisdiction's CA also learns home(V)
 * from the certificate (promise 1 and 3 of DESIGN.md).
 *
 * A CA directory holds:
 *   ca.key       P-256 private key, PEM (PKCS#8), mode 0600, never overwritten
 *   ca.crt       self-signed CA certificate, PEM
 *   revoked.txt  one revoked certificate per line: "SERIAL_HEX UNIX_SECONDS\n"
 *                (upper-case hex serial, revocation time); the CRL is rebuilt
 *                from it, so earlier revocations are kept
 *   ca.crl       the signed CRL (v2), PEM; written empty with crlNumber 1
 *                when the CA is created, then each revocation's crlNumber is
 *                the previous one's plus one
 * Issued files go to an output directory as NAME.key (0600) and NAME.crt
 * (0644), NAME being the VIN or the site id. Keys and certificates are
 * created with O_EXCL: nothing is ever overwritten. revoked.txt and ca.crl
 * are replaced whole (temporary file, fsync, rename).
 *
 * Every function returns DM_OK or a negative DM_ERR_* with a message in err
 * (truncated to err_len; err may be NULL when err_len is 0) naming the file
 * and what is wrong, with OpenSSL's own reason where OpenSSL failed. On
 * failure no new key or certificate is left behind. Nothing returned is
 * allocated; the functions are not safe to run concurrently on one CA
 * directory (revocation reads, then rewrites revoked.txt).
 */
#ifndef DM_PKI_H
#define DM_PKI_H

#include <stddef.h>

#include <openssl/x509.h>

/* Longest validity accepted, in days (100 years). */
#define PKI_DAYS_MAX 36500u

/* Creates the CA of jurisdiction (two upper-case letters, ISO 3166 alpha-2)
 * in the existing directory dir: ca.key and ca.crt, valid for days (1 ..
 * PKI_DAYS_MAX) from now. Subject CN="domicile vehicle CA <JURISDICTION>",
 * C=<JURISDICTION>; basicConstraints CA:TRUE and keyUsage keyCertSign,
 * cRLSign, both critical; subject key id. Also writes ca.crl: an empty CRL
 * (crlNumber 1, nextUpdate in 7 days) so that a node can enforce revocation
 * from the start. All three files or none. DM_ERR_EXISTS if ca.key, ca.crt
 * or ca.crl is there already; DM_ERR_INVALID for bad arguments; DM_ERR_IO, DM_ERR_CRYPTO,
 * DM_ERR_NOMEM. */
int pki_ca_create(const char *dir, const char *jurisdiction, unsigned days, char *err,
                  size_t err_len);

/* Issues <vin>.key and <vin>.crt in out_dir, signed by the CA in ca_dir:
 * subject CN=<vin>, C=<the CA's C>; random positive 128-bit serial;
 * extendedKeyUsage clientAuth; keyUsage digitalSignature; basicConstraints
 * CA:FALSE; subject and authority key ids. The VIN is checked with vin_check
 * first (DM_ERR_INVALID, nothing written). DM_ERR_EXISTS if either file is
 * there; DM_ERR_IO/DM_ERR_MALFORMED when the CA cannot be read; DM_ERR_CRYPTO,
 * DM_ERR_NOMEM. */
int pki_issue_vehicle(const char *ca_dir, const char *vin, const char *out_dir, unsigned days,
                      char *err, size_t err_len);

/* Issues <site_id>.key and <site_id>.crt in out_dir for a node's TLS
 * listener: subject CN=<site_id>, C=<the CA's C>; extendedKeyUsage
 * serverAuth; subjectAltName from hosts, a comma-separated list (blanks
 * around entries ignored) of IPv4/IPv6 addresses (IP entries) and DNS
 * names (DNS entries), 1 .. 32 of them. site_id follows the topology rule
 * (1..63 of [a-z0-9-], not starting or ending with '-'). Errors as
 * pki_issue_vehicle. */
int pki_issue_server(const char *ca_dir, const char *site_id, const char *hosts,
                     const char *out_dir, unsigned days, char *err, size_t err_len);

/* Revokes the certificate at cert_path, which must have been issued by the
 * CA in ca_dir (its signature is checked: DM_ERR_INVALID otherwise): adds
 * its serial to revoked.txt unless it is there already, then rewrites
 * ca.crl with every serial of revoked.txt, lastUpdate now, nextUpdate now +
 * 7 days and a crlNumber one above the previous ca.crl's. Revoking twice
 * keeps one entry but still issues a fresh CRL. */
int pki_revoke(const char *ca_dir, const char *cert_path, char *err, size_t err_len);

/* Longest CRL lifetime pki_crl accepts, in days. */
#define PKI_CRL_DAYS_MAX 365u

/* Issues a fresh ca.crl in ca_dir listing every serial of revoked.txt,
 * crlNumber one above the previous CRL's, lastUpdate now and nextUpdate
 * now + days (1 .. PKI_CRL_DAYS_MAX). A node refuses every vehicle of a CA
 * whose CRL is past its nextUpdate, so this runs well before then (from
 * cron, daily); the node picks the new CRL up on SIGHUP. */
int pki_crl(const char *ca_dir, unsigned days, char *err, size_t err_len);

/* Reads the identity a node acts on from the certificate at cert_path: the
 * subject CN into vin (a NUL-terminated VIN that passes vin_check) and the
 * subject C into jurisdiction (two upper-case letters). A subject with
 * none or more than one CN or C is refused (DM_ERR_INVALID): the identity
 * must not be ambiguous. The certificate's signature is NOT checked here;
 * the caller has verified the chain (TLS did). Both outputs are "" on
 * failure. */
int pki_cert_identity(const char *cert_path, char vin[18], char jurisdiction[3], char *err,
                      size_t err_len);

/* pki_cert_identity of a certificate already in memory (the peer of a
 * verified TLS session); messages do not name a file. */
int pki_x509_identity(const X509 *cert, char vin[18], char jurisdiction[3], char *err,
                      size_t err_len);

/* The subject C of cert into jurisdiction: DM_OK, or DM_ERR_INVALID (and "")
 * unless the subject has exactly one C of two upper-case letters. */
int pki_x509_jurisdiction(const X509 *cert, char jurisdiction[3]);

#endif
