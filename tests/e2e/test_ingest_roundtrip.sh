#!/bin/bash
# A batch published with the real Mosquitto client, over MQTT 5 and 3.1.1,
# in JSON, reads back through the API with the same values, in time order.
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn
register "$VIN1"
t=$(now_ms)
publish "$VIN1" "$SECRET" "{\"seq\": 1, \"samples\": [
  {\"ts\": $((t - 3000)), \"signal\": \"Vehicle.Speed\", \"value\": 72.5},
  {\"ts\": $((t - 2000)), \"signal\": \"Vehicle.Speed\", \"value\": 80},
  {\"ts\": $((t - 2000)), \"signal\": \"Vehicle.CurrentLocation.Latitude\", \"value\": 31.2304167}]}" 5 ||
	fail "MQTT 5 publish failed: $PUB_OUT"
publish "$VIN1" "$SECRET" "{\"seq\": 2, \"samples\": [
  {\"ts\": $((t - 2500)), \"signal\": \"Vehicle.Speed\", \"value\": 75.25},
  {\"ts\": $((t - 1000)), \"signal\": \"Vehicle.OBD.DTCList\", \"value\": \"P0301\"}]}" 311 ||
	fail "MQTT 3.1.1 publish failed: $PUB_OUT"

got=$(samples "$VIN1" Vehicle.Speed)
want="[[$((t - 3000)),72.5],[$((t - 2500)),75.25],[$((t - 2000)),80.0]]"
[ "$got" = "$want" ] || [ "$got" = "${want/80.0/80}" ] || fail "speed: got $got, want $want"
got=$(samples "$VIN1" Vehicle.CurrentLocation.Latitude)
[ "$got" = "[[$((t - 2000)),31.2304167]]" ] || fail "latitude: got $got"
got=$(samples "$VIN1" Vehicle.OBD.DTCList)
[ "$got" = "[[$((t - 1000)),\"P0301\"]]" ] || fail "DTC: got $got"

# A time range narrows the answer.
out=$(TOKEN=$(owner_token "$VIN1") api GET "/v1/vehicles/$VIN1/samples?signal=Vehicle.Speed&from=$((t - 2600))&to=$((t - 2400))")
expect_status 200 "$out"
[ "$(body "$out" | jq -c .samples)" = "[[$((t - 2500)),75.25]]" ] || fail "range: $(body "$out")"

# After a flush the same values come from blocks.
wait_for 20 bash -c "curl -sf -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$API_PORT/metrics | grep -q '^domicile_blocks_written_total [1-9]'" ||
	fail "no flush happened"
got=$(samples "$VIN1" Vehicle.Speed)
[ "$got" = "$want" ] || [ "$got" = "${want/80.0/80}" ] || fail "speed after flush: $got"

# Latest gives the newest value of each signal.
out=$(TOKEN=$(owner_token "$VIN1") api GET "/v1/vehicles/$VIN1/latest")
expect_status 200 "$out"
[ "$(body "$out" | jq -c '.signals["Vehicle.Speed"].value')" = 80.0 ] ||
	[ "$(body "$out" | jq -c '.signals["Vehicle.Speed"].value')" = 80 ] ||
	fail "latest: $(body "$out")"
pass
