#!/bin/bash
# domicile pki, checked by an independent verifier (the openssl command):
# a vehicle certificate verifies against its jurisdiction's CA until it is
# revoked; its subject carries the VIN and the home; keys are mode 0600.
. "$(dirname "$0")/lib.sh"
CA=$WORK/ca OUT=$WORK/out
mkdir -p "$OUT"
"$DOMICILE" pki ca --dir "$CA" --jurisdiction CN || fail "creating the CA"
[ "$(stat -c %a "$CA/ca.key")" = 600 ] || fail "CA key mode $(stat -c %a "$CA/ca.key")"
"$DOMICILE" pki ca --dir "$CA" --jurisdiction CN 2>"$WORK/err" && fail "the CA was overwritten"
grep -q "refusing to overwrite" "$WORK/err" || fail "unclear error: $(cat "$WORK/err")"
"$DOMICILE" pki vehicle --ca "$CA" --vin "$VIN1" --out "$OUT" || fail "issuing $VIN1"
"$DOMICILE" pki vehicle --ca "$CA" --vin "$VIN2" --out "$OUT" || fail "issuing $VIN2"
"$DOMICILE" pki vehicle --ca "$CA" --vin LSVAU218XN2183295 --out "$OUT" 2>/dev/null &&
	fail "a VIN with a wrong check digit got a certificate"
[ "$(stat -c %a "$OUT/$VIN1.key")" = 600 ] || fail "vehicle key mode"
openssl x509 -in "$OUT/$VIN1.crt" -noout -subject | grep -q "CN = $VIN1" || fail "subject CN"
openssl x509 -in "$OUT/$VIN1.crt" -noout -subject | grep -q "C = CN" || fail "subject C"
"$DOMICILE" pki server --ca "$CA" --site cn-test-1 --hosts 127.0.0.1,node.example --out "$OUT" ||
	fail "issuing the server certificate"
openssl verify -CAfile "$CA/ca.crt" -purpose sslclient "$OUT/$VIN1.crt" >/dev/null || fail "vehicle cert"
openssl verify -CAfile "$CA/ca.crt" -purpose sslserver "$OUT/cn-test-1.crt" >/dev/null || fail "server cert"
"$DOMICILE" pki revoke --ca "$CA" --cert "$OUT/$VIN1.crt" || fail "revoking"
openssl verify -CAfile "$CA/ca.crt" -crl_check -CRLfile "$CA/ca.crl" "$OUT/$VIN1.crt" 2>&1 |
	grep -q "certificate revoked" || fail "the revoked certificate still verifies"
openssl verify -CAfile "$CA/ca.crt" -crl_check -CRLfile "$CA/ca.crl" "$OUT/$VIN2.crt" >/dev/null ||
	fail "an unrevoked certificate no longer verifies"
# A fresh CRL (the daily job) keeps the revocation and lasts as long as asked.
"$DOMICILE" pki crl --ca "$CA" --days 30 || fail "issuing a fresh CRL"
next=$(date -d "$(openssl crl -in "$CA/ca.crl" -noout -nextupdate | cut -d= -f2)" +%s)
days=$(((next - $(date +%s)) / 86400))
[ "$days" -ge 29 ] && [ "$days" -le 30 ] || fail "the fresh CRL lasts $days days, not 30"
openssl verify -CAfile "$CA/ca.crt" -crl_check -CRLfile "$CA/ca.crl" "$OUT/$VIN1.crt" 2>&1 |
	grep -q "certificate revoked" || fail "the fresh CRL forgot the revocation"
"$DOMICILE" pki crl --ca "$CA" --days 0 2>/dev/null && fail "a CRL lifetime of 0 days was accepted"
pass
