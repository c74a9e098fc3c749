#!/bin/bash
# The demo: one node in a temporary directory, a small fleet of simulated
# cars driving around Shanghai for a few seconds, then what the node stored
# per vehicle and signal. Everything is stopped and removed at the end.
set -euo pipefail
: "${DOMICILE:?DOMICILE must name the domicile binary}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/domicile-demo.XXXXXX")
NODE_PID=
cleanup() {
	[ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
. "$(dirname "$0")/lib-node.sh"

VEHICLES=${DEMO_VEHICLES:-5}
SECONDS_TO_DRIVE=${DEMO_SECONDS:-8}

echo "== starting a node for jurisdiction CN, site cn-demo-1 (data in $WORK)"
node_start cn CN cn-demo-1 "flush_interval_ms 2000"
echo "   MQTT on 127.0.0.1:$MQTT_PORT, API on 127.0.0.1:$API_PORT"

echo "== registering $VEHICLES vehicles sold in China"
register_fleet CN LSVAU218 "$VEHICLES" "$WORK/fleet.txt"
awk '{print "   " $1}' "$WORK/fleet.txt"

echo "== driving for $SECONDS_TO_DRIVE s: 10 samples per signal per second, QoS 1 batches"
"$DOMICILE" agent --broker "127.0.0.1:$MQTT_PORT" --fleet "$WORK/fleet.txt" --rate 10 \
	--batch 50 --duration "$SECONDS_TO_DRIVE" --format json --progress --summary-json \
	>"$WORK/agent.json"
echo
jq -r '"   agent: \(.batches_acked) batches acknowledged, \(.batches_refused) refused, \(.samples_acked) samples, PUBACK p50 \(.puback_p50_ms) ms, p99 \(.puback_p99_ms) ms"' "$WORK/agent.json"

echo "== what the node stored"
signals=$(grep -v '^#' "$REPO/catalog/signals.catalog" | awk 'NF {print $1}')
printf '   %-17s  %-58s %7s  %s\n' VIN SIGNAL SAMPLES LATEST
total=0
while read -r vin _; do
	latest=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/v1/vehicles/$vin/latest")
	for sig in $signals; do
		count=$(curl -sf -H "Authorization: Bearer $TOKEN" \
			"http://127.0.0.1:$API_PORT/v1/vehicles/$vin/samples?signal=$sig" | jq '.samples | length')
		[ "$count" -eq 0 ] && continue
		value=$(echo "$latest" | jq -r --arg s "$sig" '.signals[$s] | "\(.value) \(.unit)"')
		printf '   %-17s  %-58s %7d  %s\n' "$vin" "$sig" "$count" "$value"
		total=$((total + count))
	done
done <"$WORK/fleet.txt"

acked=$(jq .samples_acked "$WORK/agent.json")
echo "== $total samples stored, $acked acknowledged to the vehicles"
if [ "$total" -ne "$acked" ]; then
	echo "!! the node stored a different number of samples than it acknowledged" >&2
	exit 1
fi
echo "== every acknowledged sample is stored exactly once. Stopping the node."
