#!/bin/bash
# Residency with two real nodes, CN and DE, sharing one topology: a CN car is
# registered in CN only; pointed at the DE node it is sent home (MQTT 5:
# CONNACK 0x9D with the CN endpoint) or refused (3.1.1), and afterwards no
# file under the DE node's data directory, nor its log, holds the car's VIN
# or a value only this car sent. A topology without the node's own site
# stops the node.
. "$(dirname "$0")/lib.sh"
pick_ports CN_MQTT CN_API DE_MQTT DE_API
cat >"$WORK/topology" <<TOPO
# two jurisdictions, one site each
site CN cn-test-1 mqtt://127.0.0.1:$CN_MQTT http://127.0.0.1:$CN_API
site DE de-test-1 mqtt://127.0.0.1:$DE_MQTT http://127.0.0.1:$DE_API
TOPO
FLUSH_MS=3600000 # keep the CN batch in its write-ahead log, where a scan can see it
write_config cn CN cn-test-1
write_config de DE de-test-1
for n in cn de; do
	N=$(echo "$n" | tr a-z A-Z)
	mqtt=${N}_MQTT api=${N}_API
	sed -i "s/^mqtt_listen .*/mqtt_listen 127.0.0.1:${!mqtt}/; s/^api_listen .*/api_listen 127.0.0.1:${!api}/" "$WORK/$n.conf"
	echo "topology $WORK/topology" >>"$WORK/$n.conf"
	# Both stores keep samples in clear, so that the byte scan below
	# could see a value in DE if DE had stored one (sealed, it could not).
	echo "store_encryption off" >>"$WORK/$n.conf"
done
start_node de
DE_TOKEN=$TOKEN DE_PID=$NODE_PID
start_node cn
CN_TOKEN=$TOKEN

# Registration: refused in DE (naming CN and where to go), done in CN.
TOKEN=$DE_TOKEN API_PORT=$DE_API
out=$(api POST /v1/vehicles "{\"vin\": \"$VIN1\", \"home\": \"CN\", \"model\": \"test\"}")
expect_status 409 "$out"
body "$out" | grep -q "home is CN" || fail "refusal does not name the home: $out"
body "$out" | grep -q "http://127.0.0.1:$CN_API" || fail "refusal does not say where to register: $out"
TOKEN=$CN_TOKEN API_PORT=$CN_API
register "$VIN1"

# A value only this car sends, stored at home.
t=$(now_ms)
MARK=98765.4321
MQTT_PORT=$CN_MQTT
publish "$VIN1" "$SECRET" "{\"seq\": 1, \"samples\": [{\"ts\": $t, \"signal\": \"Vehicle.TraveledDistance\", \"value\": $MARK}]}" ||
	fail "publish at home: $PUB_OUT"

# Pointed at DE, over MQTT 5 and naming its home: sent to CN's endpoint.
out=$(mosquitto_pub -h 127.0.0.1 -p "$DE_MQTT" -V 5 -q 1 -i "$VIN1" -u "$VIN1" -P "$SECRET" \
	-D connect user-property home CN -t "v/$VIN1/telemetry" \
	-m "{\"seq\": 2, \"samples\": [{\"ts\": $t, \"signal\": \"Vehicle.TraveledDistance\", \"value\": $MARK}]}" 2>&1)
echo "$out" | grep -q "Server moved" || fail "MQTT 5 connection to DE was not sent home: $out"
grep -q "sent to its home site cn-test-1" "$WORK/de.log" || fail "DE did not log the redirect"
# Over MQTT 3.1.1 it cannot name a home: refused (not authorized).
out=$(mosquitto_pub -h 127.0.0.1 -p "$DE_MQTT" -V 311 -q 1 -i "$VIN1" -u "$VIN1" -P "$SECRET" \
	-t "v/$VIN1/telemetry" -m "{\"seq\": 3, \"samples\": []}" 2>&1) && fail "3.1.1 accepted in DE"
echo "$out" | grep -qi "not authori" || fail "3.1.1 connection to DE: $out"

# The agent, pointed at DE, follows the redirect to CN (which its own copy
# of the topology lists for CN) and every sample it sends is stored in CN.
echo "$VIN1 $SECRET 50.11 8.68 home=CN" >"$WORK/fleet.txt" # roaming in Germany
"$DOMICILE" agent --broker "127.0.0.1:$DE_MQTT" --fleet "$WORK/fleet.txt" \
	--topology "$WORK/topology" --rate 10 --batch 20 --duration 2 --seq-start 100 \
	--summary-json >"$WORK/agent.json" 2>"$WORK/agent.log" || fail "agent: $(cat "$WORK/agent.json")"
[ "$(jq -c '[.redirects_followed, .vehicles_by_endpoint["127.0.0.1:'"$CN_MQTT"'"]]' "$WORK/agent.json")" = "[1,1]" ] ||
	fail "the agent did not end up at home: $(cat "$WORK/agent.json")"
acked=$(jq .samples_acked "$WORK/agent.json")
out=$(TOKEN=$CN_TOKEN API_PORT=$CN_API api GET /v1/residency/report)
stored=$(body "$out" | jq '.stored.samples + .stored.samples_in_memory')
# Everything the agent had acknowledged, plus the one marked sample.
[ "$acked" -gt 0 ] && [ "$stored" -eq $((acked + 1)) ] || fail "acked $acked, CN holds $stored"

# The DE report counts all three; its self-check passes; CN holds the car.
out=$(TOKEN=$DE_TOKEN API_PORT=$DE_API api GET /v1/residency/report)
expect_status 200 "$out"
[ "$(body "$out" | jq -c '[.foreign_connections.redirected, .foreign_connections.refused, .self_check.passed]')" = "[2,1,true]" ] ||
	fail "DE report: $(body "$out")"
"$DOMICILE" residency report --api "127.0.0.1:$CN_API" --token-file "$WORK/cn.data/admin.token" >"$WORK/cn-report.txt" ||
	fail "CN self-check: $(cat "$WORK/cn-report.txt")"
grep -q "PASSED" "$WORK/cn-report.txt" || fail "CN report: $(cat "$WORK/cn-report.txt")"
samples "$VIN1" Vehicle.TraveledDistance | jq -e --argjson t "$t" --argjson m "$MARK" 'index([[$t, $m]]) != null' >/dev/null ||
	fail "CN data: $(samples "$VIN1" Vehicle.TraveledDistance)"

# No trace in DE: not in any file of its data directory, not in its log.
# The same scan of CN finds both, so the scan is known to see them.
stop_node TERM # CN: its log segment stays, and SQLite is checkpointed
kill -TERM "$DE_PID"; wait "$DE_PID" 2>/dev/null
grep -rqa -e "$VIN1" "$WORK/cn.data" || fail "the scan does not find the VIN even in CN"
grep -rqa -e "$MARK" "$WORK/cn.data" || fail "the scan does not find the value even in CN"
if grep -rla -e "$VIN1" -e "$MARK" "$WORK/de.data" "$WORK/de.log"; then
	fail "the DE node kept a trace of a CN car (files above)"
fi

# A topology that does not list the node's own site stops it.
grep -v de-test-1 "$WORK/topology" >"$WORK/topology.cn-only"
sed -i "s|^topology .*|topology $WORK/topology.cn-only|" "$WORK/de.conf"
out=$("$DOMICILE" node -c "$WORK/de.conf" 2>&1) && fail "DE started without its site in the topology"
echo "$out" | grep -q "site de-test-1 of DE is not in the topology" || fail "unclear error: $out"
pass
