#!/bin/bash
# The simulated fleet against a real node: every batch the agent sends is
# acknowledged, and the node stores exactly the samples it acknowledged,
# over MQTT 5 with protobuf and over MQTT 3.1.1 with JSON.
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn
: >"$WORK/fleet.txt"
for vin in "$VIN1" "$VIN2" "$VIN3"; do
	register "$vin"
	echo "$vin $SECRET" >>"$WORK/fleet.txt"
done
"$DOMICILE" agent --broker "127.0.0.1:$MQTT_PORT" --fleet "$WORK/fleet.txt" --rate 20 \
	--batch 40 --duration 2 --format protobuf --protocol 5 --summary-json >"$WORK/a.json" 2>"$WORK/agent.log" ||
	fail "agent (MQTT 5, protobuf) did not get every batch acknowledged: $(cat "$WORK/a.json")"
"$DOMICILE" agent --broker "127.0.0.1:$MQTT_PORT" --fleet "$WORK/fleet.txt" --rate 20 \
	--batch 40 --duration 2 --format json --protocol 311 --seq-start 1000000 --summary-json \
	>"$WORK/b.json" 2>>"$WORK/agent.log" ||
	fail "agent (MQTT 3.1.1, JSON) did not get every batch acknowledged: $(cat "$WORK/b.json")"
acked=$(($(jq .samples_acked "$WORK/a.json") + $(jq .samples_acked "$WORK/b.json")))
[ "$acked" -gt 0 ] || fail "the agent sent nothing"

stored=0
for vin in "$VIN1" "$VIN2" "$VIN3"; do
	for sig in $(grep -v '^#' "$REPO/catalog/signals.catalog" | awk 'NF {print $1}'); do
		n=$(samples "$vin" "$sig" | jq length)
		stored=$((stored + n))
	done
done
[ "$stored" -eq "$acked" ] || fail "stored $stored samples, acknowledged $acked"

pass
