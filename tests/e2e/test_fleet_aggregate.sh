#!/bin/bash
# Fleet aggregates for analysts over real ingested data: the values of avg,
# min, max and count over three vehicles, buckets drawn from fewer than
# three vehicles left out, the same before and after a flush into blocks,
# and the refusals (location data, string signals, too many buckets, bad
# queries).
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn

declare -A SECRETS
for vin in "$VIN1" "$VIN2" "$VIN3"; do
	register "$vin"
	SECRETS[$vin]=$SECRET
done
out=$(api POST /v1/principals '{"name": "ana", "role": "analyst"}')
expect_status 201 "$out"
ANALYST=$(body "$out" | jq -r .token)

# T is a whole second ten minutes ago; buckets are 1 s wide:
#   bucket 0 [T, T+1000):      VIN1 10, 20; VIN2 30; VIN3 40 -> three vehicles
#   bucket 1 [T+1000, T+2000): VIN1 50                      -> one vehicle
#   bucket 2 [T+2000, T+3000): VIN1 60; VIN2 70             -> two vehicles
#   T+3000 (at `to`) and T-1 (before `from`): outside
T=$(( ($(now_ms) - 600000) / 1000 * 1000 ))
s() { echo "{\"ts\": $1, \"signal\": \"$2\", \"value\": $3}"; }
batch() { local seq=$1; shift; local IFS=,; echo "{\"seq\": $seq, \"samples\": [$*]}"; }
publish "$VIN1" "${SECRETS[$VIN1]}" "$(batch 1 "$(s $T Vehicle.Speed 10)" "$(s $((T + 500)) Vehicle.Speed 20)" \
	"$(s $((T + 1500)) Vehicle.Speed 50)" "$(s $((T + 2999)) Vehicle.Speed 60)" \
	"$(s $((T + 3000)) Vehicle.Speed 300)" "$(s $((T - 1)) Vehicle.Speed 300)" \
	"$(s $T Vehicle.CurrentLocation.Latitude 31.2)" "$(s $T Vehicle.OBD.DTCList '"P0301"')")" ||
	fail "publish: $PUB_OUT"
publish "$VIN2" "${SECRETS[$VIN2]}" "$(batch 1 "$(s $((T + 999)) Vehicle.Speed 30)" \
	"$(s $((T + 2000)) Vehicle.Speed 70)")" || fail "publish: $PUB_OUT"
publish "$VIN3" "${SECRETS[$VIN3]}" "$(batch 1 "$(s $((T + 1)) Vehicle.Speed 40)")" ||
	fail "publish: $PUB_OUT"

# aggregate QUERY: GET /v1/fleet/aggregate?QUERY as the analyst; sets
# STATUS and AGG (the body).
aggregate() {
	STATUS=$(curl -sS -H "Authorization: Bearer $ANALYST" -o "$WORK/agg.json" -w '%{http_code}' \
		"http://127.0.0.1:$API_PORT/v1/fleet/aggregate?$1")
	AGG=$(cat "$WORK/agg.json")
}
range="signal=Vehicle.Speed&from=$T&to=$((T + 3000))&step=1000"

# expect FN QUERY POINTS: the analyst's answer to QUERY&fn=FN has exactly
# POINTS (compared as numbers: 25 and 25.0 are equal).
expect() {
	aggregate "$2&fn=$1"
	[ "$STATUS" = 200 ] || fail "$1 $2: HTTP $STATUS $AGG"
	jq -e --argjson want "$3" '.points == $want' <<<"$AGG" >/dev/null ||
		fail "$1 $2: want $3, got $AGG"
}

check_values() {
	expect avg "$range" "[[$T, 25]]"
	jq -e '.min_vehicles == 3 and .suppressed_buckets == 2 and .fn == "avg" and
		.signal == "Vehicle.Speed" and .unit == "km/h"' <<<"$AGG" >/dev/null || fail "$1: $AGG"
	expect min "$range" "[[$T, 10]]"
	expect max "$range" "[[$T, 40]]"
	expect count "$range" "[[$T, 4]]"
	# One bucket over the whole range: all three vehicles in it.
	expect count "signal=Vehicle.Speed&from=$T&to=$((T + 3000))&step=3000" "[[$T, 7]]"
	expect avg "signal=Vehicle.Speed&from=$T&to=$((T + 3000))&step=3000" "[[$T, 40]]"
	# A range where only VIN1 has data: nothing shown.
	expect max "signal=Vehicle.Speed&from=$((T + 1000))&to=$((T + 2000))&step=100" "[]"
	# Two vehicles in the range: nothing shown either.
	expect count "signal=Vehicle.Speed&from=$((T + 2000))&to=$((T + 3000))&step=1000" "[]"
}
check_values "from memory"

# After a flush the same answers come from blocks.
wait_for 20 bash -c "curl -sf -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$API_PORT/metrics | grep -q '^domicile_blocks_written_total [1-9]'" ||
	fail "no flush happened"
check_values "from blocks"

# Refusals.
aggregate "signal=Vehicle.CurrentLocation.Latitude&from=$T&to=$((T + 3000))&step=1000&fn=avg"; [ "$STATUS" = 403 ] ||
	fail "location aggregated: $AGG"
aggregate "signal=Vehicle.OBD.DTCList&from=$T&to=$((T + 3000))&step=1000&fn=count"; [ "$STATUS" = 400 ] ||
	fail "string signal: $AGG"
aggregate "signal=Vehicle.Speed&from=0&to=10000&step=1&fn=avg"; [ "$STATUS" = 200 ] || fail "10000 buckets: $AGG"
aggregate "signal=Vehicle.Speed&from=0&to=10001&step=1&fn=avg"; [ "$STATUS" = 400 ] || fail "10001 buckets: $AGG"
for bad in "signal=Vehicle.Speed&from=$T&to=$T&step=1000&fn=avg" \
	"signal=Vehicle.Speed&from=$T&to=$((T + 1))&step=0&fn=avg" \
	"signal=Vehicle.Speed&from=$T&to=$((T + 1))&step=1&fn=sum" \
	"signal=Vehicle.Nothing&from=$T&to=$((T + 1))&step=1&fn=avg" \
	"signal=Vehicle.Speed&from=$T&to=$((T + 1))&fn=avg" \
	"signal=Vehicle.Speed&from=-1&to=$((T + 1))&step=1&fn=avg" \
	"signal=Vehicle.Speed&from=$T&to=$((T + 1))&step=1&fn=avg&vin=$VIN1" \
	"signal=Vehicle.Speed&from=1x&to=$((T + 1))&step=1&fn=avg"; do
	aggregate "$bad"; [ "$STATUS" = 400 ] || fail "expected 400 for $bad: $AGG"
done
pass
