#!/bin/bash
# MQTT over TLS and HTTPS, with real clients (mosquitto_pub, curl): a CN
# node trusts the vehicle CAs of CN and DE (its topology's jurisdictions).
# A CN car with its certificate connects without a password and its batch
# is stored; the certificate, not a claim, names the car: another VIN's
# client id, no certificate, a certificate of an unknown CA, and (after
# `domicile pki revoke` and SIGHUP) a revoked one are refused; a DE car is
# sent to its home site by its certificate's home. The API answers HTTPS
# only. Plain MQTT off loopback and a trusted jurisdiction without its CA
# files stop the node at start.
. "$(dirname "$0")/lib.sh"
VIN_DE=WVWZZZ1JZXW000001 # a German car: its maker's VIN has no check digit
pick_ports CN_MQTTS CN_API DE_MQTTS DE_API PLAIN

# ---- PKI: the CN and DE vehicle CAs, a rogue "CN" CA nobody trusts ----
pki() { "$DOMICILE" pki "$@" >>"$WORK/pki.log" 2>&1 || fail "domicile pki $*: $(tail -3 "$WORK/pki.log")"; }
pki ca --dir "$WORK/ca-cn" --jurisdiction CN
pki ca --dir "$WORK/ca-de" --jurisdiction DE
pki ca --dir "$WORK/ca-rogue" --jurisdiction CN
CERTS=$WORK/certs ROGUE=$WORK/rogue
mkdir -p "$CERTS" "$ROGUE" "$WORK/trust"
pki server --ca "$WORK/ca-cn" --site cn-test-1 --hosts 127.0.0.1 --out "$CERTS"
pki vehicle --ca "$WORK/ca-cn" --vin "$VIN1" --out "$CERTS"
pki vehicle --ca "$WORK/ca-cn" --vin "$VIN2" --out "$CERTS"
pki vehicle --ca "$WORK/ca-de" --vin "$VIN_DE" --out "$CERTS"
pki vehicle --ca "$WORK/ca-rogue" --vin "$VIN1" --out "$ROGUE"
# The node's vehicle_ca_dir: CC.crt and CC.crl, here links to the CAs' own
# files, so a revocation is published by the CA and picked up at SIGHUP.
for cc in cn de; do
	CC=$(echo "$cc" | tr a-z A-Z)
	ln -s "$WORK/ca-$cc/ca.crt" "$WORK/trust/$CC.crt"
	ln -s "$WORK/ca-$cc/ca.crl" "$WORK/trust/$CC.crl"
done

cat >"$WORK/topology" <<TOPO
site CN cn-test-1 mqtts://127.0.0.1:$CN_MQTTS https://127.0.0.1:$CN_API
site DE de-test-1 mqtts://127.0.0.1:$DE_MQTTS https://127.0.0.1:$DE_API
TOPO
cat >"$WORK/cn.conf" <<CONF
jurisdiction CN
site cn-test-1
data_dir $WORK/cn.data
mqtt_tls_listen 127.0.0.1:$CN_MQTTS
api_listen 127.0.0.1:$CN_API
tls_cert $CERTS/cn-test-1.crt
tls_key $CERTS/cn-test-1.key
vehicle_ca_dir $WORK/trust
topology $WORK/topology
catalog $REPO/catalog/signals.catalog
flush_interval_ms 500
audit_checkpoint_entries 1
CONF

# ---- start-up refusals ----
# Plain MQTT anywhere but loopback.
sed "s/^mqtt_tls_listen .*/mqtt_listen 0.0.0.0:$PLAIN/" "$WORK/cn.conf" >"$WORK/plain.conf"
out=$("$DOMICILE" node -c "$WORK/plain.conf" 2>&1) && fail "a plain MQTT listener on 0.0.0.0 started"
echo "$out" | grep -q "mqtt_listen is plain TCP and may only bind loopback" || fail "unclear error: $out"
# A jurisdiction of the topology whose CA the directory lacks.
mv "$WORK/trust/DE.crt" "$WORK/DE.crt.aside"
out=$("$DOMICILE" node -c "$WORK/cn.conf" 2>&1) && fail "started without the DE vehicle CA"
echo "$out" | grep -q "trust/DE.crt: cannot open" || fail "missing CA not named: $out"
mv "$WORK/DE.crt.aside" "$WORK/trust/DE.crt"
# ... or its CRL: revocation could not be enforced.
mv "$WORK/trust/CN.crl" "$WORK/CN.crl.aside"
out=$("$DOMICILE" node -c "$WORK/cn.conf" 2>&1) && fail "started without the CN CRL"
echo "$out" | grep -q "trust/CN.crl: cannot open" || fail "missing CRL not named: $out"
mv "$WORK/CN.crl.aside" "$WORK/trust/CN.crl"

# ---- the node ----
"$DOMICILE" node -c "$WORK/cn.conf" >"$WORK/cn.log" 2>&1 &
NODE_PID=$!
PIDS+=("$NODE_PID")
wait_for 20 grep -q "ready: mqtts on port $CN_MQTTS, api on port $CN_API (https)" "$WORK/cn.log" ||
	fail "the node did not become ready"
TOKEN=$(cat "$WORK/cn.data/admin.token")

# https METHOD PATH [BODY]: as lib.sh's api(), over HTTPS with the CA's cert.
https() {
	local args=(-sS -X "$1" --cacert "$WORK/ca-cn/ca.crt" -H "Authorization: Bearer $TOKEN"
		-w '\n%{http_code}\n')
	[ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data "$3")
	curl "${args[@]}" "https://127.0.0.1:$CN_API$2"
}

# ---- the API: HTTPS only ----
out=$(curl -sS -m 5 "http://127.0.0.1:$CN_API/v1/health" 2>&1) && fail "plain HTTP answered: $out"
out=$(https GET /v1/health)
expect_status 200 "$out"
for vin in "$VIN1" "$VIN2"; do
	out=$(https POST /v1/vehicles "{\"vin\": \"$vin\", \"home\": \"CN\", \"model\": \"test\"}")
	expect_status 201 "$out"
done

# mqtts VIN CERT_NAME [DIR [ARGS...]]: one QoS 1 batch over TLS, with client
# id VIN and the certificate DIR/CERT_NAME.crt (DIR "-" for none); returns
# mosquitto_pub's status, its output in PUB_OUT.
SEQ=0
mqtts() {
	local vin=$1 name=$2 dir=${3:-$CERTS}
	shift 3 2>/dev/null || shift $#
	local cert=()
	[ "$dir" != - ] && cert=(--cert "$dir/$name.crt" --key "$dir/$name.key")
	SEQ=$((SEQ + 1))
	PUB_OUT=$(timeout 20 mosquitto_pub -h 127.0.0.1 -p "$CN_MQTTS" --cafile "$WORK/ca-cn/ca.crt" \
		"${cert[@]}" -i "$vin" -t "v/$vin/telemetry" -q 1 -V mqttv5 "$@" \
		-m "{\"seq\": $SEQ, \"samples\": [{\"ts\": $(now_ms), \"signal\": \"Vehicle.TraveledDistance\", \"value\": $SEQ.5}]}" 2>&1)
}

# ---- a vehicle with its own certificate: in, no password needed ----
mqtts "$VIN1" "$VIN1" || fail "valid certificate refused: $PUB_OUT"
first=$SEQ
mqtts "$VIN1" "$VIN1" "$CERTS" -V mqttv311 || fail "valid certificate refused over 3.1.1: $PUB_OUT"
mqtts "$VIN1" "$VIN1" "$CERTS" -u "$VIN1" || fail "user name = VIN refused: $PUB_OUT"
# A vehicle's samples are its owner's to read (roles: api/principals.h).
out=$(https POST /v1/principals "{\"name\": \"owner1\", \"role\": \"owner\", \"vins\": [\"$VIN1\"]}")
expect_status 201 "$out"
out=$(TOKEN=$(body "$out" | jq -r .token) https GET "/v1/vehicles/$VIN1/samples?signal=Vehicle.TraveledDistance")
expect_status 200 "$out"
body "$out" | jq -e --argjson v "$first.5" '[.samples[][1]] | index($v) != null' >/dev/null ||
	fail "the batch sent over TLS is not readable: $(body "$out")"

# The agent, over TLS with the vehicle's certificate and no secret.
"$DOMICILE" agent --broker "127.0.0.1:$CN_MQTTS" --tls-ca "$WORK/ca-cn/ca.crt" --cert-dir "$CERTS" \
	--vin "$VIN2" --home CN --rate 10 --batch 5 --duration 1 --summary-json \
	>"$WORK/agent.json" 2>"$WORK/agent.log" || fail "agent over TLS: $(cat "$WORK/agent.json" "$WORK/agent.log")"
[ "$(jq '.samples_acked > 0 and .connected == 1' "$WORK/agent.json")" = true ] ||
	fail "agent over TLS: $(cat "$WORK/agent.json")"
out=$("$DOMICILE" agent --broker "127.0.0.1:$CN_MQTTS" --tls-ca "$WORK/ca-cn/ca.crt" \
	--cert-dir "$WORK" --vin "$VIN2" 2>&1) && fail "agent started without its certificate"
echo "$out" | grep -q "$WORK/$VIN2.crt" || fail "agent: missing certificate not named: $out"

# ---- the certificate decides who it is ----
mqtts "$VIN2" "$VIN1" && fail "client id $VIN2 accepted with the certificate of $VIN1"
echo "$PUB_OUT" | grep -qi "identifier not valid" || fail "client id mismatch: $PUB_OUT"
mqtts "$VIN1" "$VIN1" "$CERTS" -u "$VIN2" && fail "user name of another VIN accepted"
mqtts "$VIN1" none - && fail "accepted without a client certificate"
mqtts "$VIN1" "$VIN1" "$ROGUE" && fail "accepted a certificate of an untrusted CA"
grep -q "TLS handshake failed: peer did not return a certificate" "$WORK/cn.log" ||
	fail "no log line for the missing certificate"
grep -q "TLS handshake failed: unable to get local issuer certificate" "$WORK/cn.log" ||
	fail "no log line for the unknown CA"
# A "home" property claims nothing over TLS: the certificate's home counts.
mqtts "$VIN1" "$VIN1" "$CERTS" -D connect user-property home DE || fail "home claim changed the decision: $PUB_OUT"

# ---- a DE car at the CN node: sent home by its certificate ----
mqtts "$VIN_DE" "$VIN_DE" && fail "a DE car was accepted in CN"
echo "$PUB_OUT" | grep -q "Server moved" || fail "the DE car was not redirected: $PUB_OUT"
grep -q "sent to its home site de-test-1" "$WORK/cn.log" || fail "no log line for the redirect"
grep -q "$VIN_DE" "$WORK/cn.log" && fail "the CN node logged a German VIN"

# The agent, roaming with that car, follows the redirect over TLS to the DE
# site its topology lists, and its batches are stored there.
sed -e "s/cn-test-1/de-test-1/; s/^jurisdiction CN/jurisdiction DE/; s/$CN_MQTTS/$DE_MQTTS/; s/$CN_API/$DE_API/" \
	-e "s|cn.data|de.data|; s|$CERTS|$WORK/certs-de|" "$WORK/cn.conf" >"$WORK/de.conf"
mkdir -p "$WORK/certs-de"
pki server --ca "$WORK/ca-de" --site de-test-1 --hosts 127.0.0.1 --out "$WORK/certs-de"
"$DOMICILE" node -c "$WORK/de.conf" >"$WORK/de.log" 2>&1 &
DE_PID=$!
PIDS+=("$DE_PID")
wait_for 20 grep -q "ready: mqtts on port $DE_MQTTS" "$WORK/de.log" || fail "the DE node did not become ready"
out=$(curl -sS --cacert "$WORK/ca-de/ca.crt" -H "Authorization: Bearer $(cat "$WORK/de.data/admin.token")" \
	-w '\n%{http_code}\n' --data "{\"vin\": \"$VIN_DE\", \"home\": \"DE\", \"model\": \"test\"}" \
	"https://127.0.0.1:$DE_API/v1/vehicles")
expect_status 201 "$out"
cat "$WORK/ca-cn/ca.crt" "$WORK/ca-de/ca.crt" >"$WORK/brokers.pem"
"$DOMICILE" agent --broker "127.0.0.1:$CN_MQTTS" --tls-ca "$WORK/brokers.pem" --cert-dir "$CERTS" \
	--vin "$VIN_DE" --home DE --topology "$WORK/topology" --rate 10 --batch 5 --duration 1 \
	--summary-json >"$WORK/agent-de.json" 2>"$WORK/agent-de.log" ||
	fail "roaming agent: $(cat "$WORK/agent-de.json" "$WORK/agent-de.log")"
[ "$(jq -c '[.redirects_followed, .vehicles_by_endpoint["127.0.0.1:'"$DE_MQTTS"'"], .samples_acked > 0]' "$WORK/agent-de.json")" = "[1,1,true]" ] ||
	fail "the roaming agent did not end up at home: $(cat "$WORK/agent-de.json")"
grep -q "$VIN_DE" "$WORK/cn.log" && fail "the CN node logged a German VIN"
kill -TERM "$DE_PID"

# ---- revocation, in force from the SIGHUP on ----
pki revoke --ca "$WORK/ca-cn" --cert "$CERTS/$VIN1.crt"
mqtts "$VIN1" "$VIN1" || fail "revoked before the reload (the node reads CRLs at SIGHUP): $PUB_OUT"
# VIN1 stays connected (a subscriber) while its certificate is revoked: the
# reload ends that session too, not only later handshakes.
stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$CN_MQTTS" --cafile "$WORK/ca-cn/ca.crt" \
	--cert "$CERTS/$VIN1.crt" --key "$CERTS/$VIN1.key" -i "$VIN1" -t "v/$VIN1/policy" \
	-V mqttv5 >"$WORK/sub.log" 2>&1 &
PIDS+=("$!")
wait_for 20 grep -q "received SUBACK" "$WORK/sub.log" || fail "the subscriber did not connect: $(cat "$WORK/sub.log")"
kill -HUP "$NODE_PID"
wait_for 10 grep -q "SIGHUP: vehicle CAs and CRLs of 2 jurisdictions reloaded" "$WORK/cn.log" ||
	fail "no reload after SIGHUP"
grep -q "SIGHUP: .* 1 connected vehicles no longer verify and were disconnected" "$WORK/cn.log" ||
	fail "the connected vehicle with the revoked certificate was not disconnected"
wait_for 10 grep -q "Received DISCONNECT (135)" "$WORK/sub.log" ||
	fail "the subscriber was not told: $(cat "$WORK/sub.log")"
mqtts "$VIN1" "$VIN1" && fail "a revoked certificate was accepted"
grep -q "TLS handshake failed: certificate revoked" "$WORK/cn.log" || fail "no log line for the revocation"
# The refused certificate is in the audit log, without the identity it claims.
out=$(https POST /v1/principals '{"name": "au1", "role": "auditor"}')
expect_status 201 "$out"
AUDITOR=$(body "$out" | jq -r .token)
# audit_entries JQ_FILTER: the audit log's entries that pass the filter.
audit_entries() {
	local out
	out=$(TOKEN=$AUDITOR https GET "/v1/audit/entries")
	expect_status 200 "$out"
	body "$out" | jq -r '.entries[]' | while read -r e; do base64 -d <<<"$e"; echo; done |
		jq -c "select($1)"
}
refusals=$(audit_entries '.action == "mqtt.connect" and .params.reason == "certificate"')
echo "$refusals" | grep -q '"tls":"certificate revoked"' || fail "the revoked handshake is not audited: $refusals"
echo "$refusals" | grep -q "$VIN1" && fail "the audit entry trusts the revoked certificate's VIN"
out=$(https GET /metrics)
expect_status 200 "$out"
failures=$(body "$out" | sed -n 's/^domicile_mqtt_tls_handshake_failures \([0-9]*\)$/\1/p')
[ "${failures:-0}" -ge 1 ] || fail "the refused handshake is not on /metrics: '${failures}'"
# An auditor exports the log over HTTPS, trusting the site's CA only.
printf '%s\n' "$AUDITOR" >"$WORK/auditor.token"
"$DOMICILE" audit key --file "$WORK/cn.data/audit.key" --name domicile-cn-test-1 >"$WORK/site.key" ||
	fail "audit key"
"$DOMICILE" audit fetch --api "https://127.0.0.1:$CN_API" --cacert "$WORK/ca-cn/ca.crt" \
	--token-file "$WORK/auditor.token" --key-file "$WORK/site.key" --out "$WORK/export" \
	>"$WORK/fetch.out" 2>&1 || fail "audit fetch over https: $(cat "$WORK/fetch.out")"
"$DOMICILE" audit verify --key-file "$WORK/site.key" --checkpoint "$WORK/export/checkpoint" \
	"$WORK/export/entries.json" >"$WORK/verify.out" 2>&1 || fail "the https export: $(cat "$WORK/verify.out")"
# Without the site's CA, the node is not trusted and nothing is fetched.
"$DOMICILE" audit fetch --api "https://127.0.0.1:$CN_API" --cacert "$WORK/ca-de/ca.crt" \
	--token-file "$WORK/auditor.token" --key-file "$WORK/site.key" --out "$WORK/export2" \
	>"$WORK/fetch.out" 2>&1 && fail "fetched from a node whose certificate is not trusted"
[ ! -e "$WORK/export2" ] || fail "an untrusted fetch left a directory"
# The reload, and the session it ended, are in the log too.
audit_entries '.action == "node.reload"' | jq -s -e 'any(.[]; .outcome == "ok" and .params.disconnected == 1)' >/dev/null ||
	fail "the reload is not audited: $(audit_entries '.action == "node.reload"')"
audit_entries '.action == "mqtt.disconnect"' |
	jq -s -e 'any(.[]; .who.name == "'"$VIN1"'" and .status == 135 and .params.tls == "certificate revoked")' >/dev/null ||
	fail "the forced disconnect is not audited: $(audit_entries '.action == "mqtt.disconnect"')"
mqtts "$VIN2" "$VIN2" || fail "an unrevoked certificate was refused after the reload: $PUB_OUT"
# A reload that fails keeps what is in force.
rm "$WORK/trust/DE.crl"
kill -HUP "$NODE_PID"
wait_for 10 grep -q "SIGHUP: vehicle CAs and CRLs not reloaded.*DE.crl" "$WORK/cn.log" ||
	fail "no error for the failed reload"
audit_entries '.action == "node.reload" and .outcome == "error"' | grep -q . ||
	fail "the failed reload is not audited"
mqtts "$VIN2" "$VIN2" || fail "refused after a failed reload: $PUB_OUT"
mqtts "$VIN1" "$VIN1" && fail "revocation lost by a failed reload"
kill -0 "$NODE_PID" || fail "the node died"
pass
