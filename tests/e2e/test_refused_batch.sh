#!/bin/bash
# A batch with one bad sample is refused whole (PUBACK 0x99 with a reason
# string) and nothing of it is stored; a repeated (vehicle, seq) is
# acknowledged and stored once.
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn
register "$VIN1"
t=$(now_ms)

check_refused() {
	local what=$1 payload=$2
	publish "$VIN1" "$SECRET" "$payload" 5
	echo "$PUB_OUT" | grep -qi "payload format invalid" ||
		fail "$what: not refused with 0x99: $PUB_OUT"
}
# The good sample in each batch must not be stored either.
check_refused "speed above range" "{\"seq\": 10, \"samples\": [
  {\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 50},
  {\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 4321.987}]}"
check_refused "unknown signal" "{\"seq\": 11, \"samples\": [
  {\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 51},
  {\"ts\": $t, \"signal\": \"Vehicle.Cabin.Secret\", \"value\": 1}]}"
check_refused "wrong type" "{\"seq\": 12, \"samples\": [
  {\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 52},
  {\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": \"fast\"}]}"
check_refused "far future" "{\"seq\": 13, \"samples\": [
  {\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 53},
  {\"ts\": $((t + 86400000)), \"signal\": \"Vehicle.Speed\", \"value\": 54}]}"
check_refused "not JSON at all" "{\"seq\": 14, \"samples\": [tru"

[ "$(samples "$VIN1" Vehicle.Speed)" = "[]" ] || fail "a refused batch left samples behind"

# The reason reaches the node's metrics, and the value never reaches its log.
grep -qF "4321.987" "$WORK/cn.log" && fail "the refused value appears in the node's log"
out=$(api GET /metrics)
body "$out" | grep -q 'domicile_batches_refused_total{reason="invalid_sample"} 4' ||
	fail "refusals not counted: $(body "$out" | grep refused)"

# QoS 0 telemetry cannot be acknowledged, so it is refused, not stored.
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 0 -i "$VIN1" -u "$VIN1" -P "$SECRET" \
	-t "v/$VIN1/telemetry" -m "{\"seq\": 30, \"samples\": [{\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 70}]}" >/dev/null 2>&1
wait_for 10 bash -c "curl -sf -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$API_PORT/metrics | grep -q 'domicile_batches_refused_total{reason=\"qos0\"} 1'" ||
	fail "a QoS 0 batch was not refused"
[ "$(samples "$VIN1" Vehicle.Speed)" = "[]" ] || fail "a QoS 0 batch was stored"

# The same seq twice: both acknowledged, stored once.
batch="{\"seq\": 20, \"samples\": [{\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 61.5}]}"
publish "$VIN1" "$SECRET" "$batch" 5 || fail "first copy: $PUB_OUT"
publish "$VIN1" "$SECRET" "$batch" 5 || fail "second copy: $PUB_OUT"
[ "$(samples "$VIN1" Vehicle.Speed)" = "[[$t,61.5]]" ] || fail "duplicate stored: $(samples "$VIN1" Vehicle.Speed)"
pass
