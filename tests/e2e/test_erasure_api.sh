#!/bin/bash
# Erasure through the API: an owner asks, a privacy officer approves (or
# rejects, or erases alone with DELETE /v1/vehicles/{vin}). From the moment
# of approval no API returns the vehicle's data — its samples and latest
# values answer 410 Gone with when and by whom, fleet aggregates leave it
# out — while its registration shows it erased. Compaction then removes its
# samples from the store, and all of it holds across a restart.
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn

VIN4=LSVAU2185N2100001
VIN5=LSVAU2189N2100003
declare -A SECRETS
for vin in "$VIN1" "$VIN2" "$VIN3" "$VIN4" "$VIN5"; do
	register "$vin"
	SECRETS[$vin]=$SECRET
done

OWNER1=$(principal ow1 owner "[\"$VIN1\"]") || exit 1
OWNER2=$(principal ow2 owner "[\"$VIN2\"]") || exit 1
OWNER3=$(principal ow3 owner "[\"$VIN3\"]") || exit 1
OFFICER=$(principal po1 privacy_officer) || exit 1
ANALYST=$(principal an1 analyst) || exit 1
OPERATOR=$(principal op1 operator) || exit 1

# Every vehicle sends speeds into one bucket; VIN1 also a location and a DTC.
T=$(( ($(now_ms) - 600000) / 1000 * 1000 ))
value=10
for vin in "$VIN1" "$VIN2" "$VIN3" "$VIN4" "$VIN5"; do
	publish "$vin" "${SECRETS[$vin]}" "{\"seq\": 1, \"samples\": [
		{\"ts\": $((T + value)), \"signal\": \"Vehicle.Speed\", \"value\": $value},
		{\"ts\": $((T + value)), \"signal\": \"Vehicle.CurrentLocation.Latitude\", \"value\": 31.5},
		{\"ts\": $((T + value)), \"signal\": \"Vehicle.OBD.DTCList\", \"value\": \"P0301\"}]}" ||
		fail "publish: $PUB_OUT"
	value=$((value + 10))
done
AGG="/v1/fleet/aggregate?signal=Vehicle.Speed&from=$T&to=$((T + 1000))&step=1000"

# Once flushed, keep a piece of the sealed body of every block of the two
# vehicles that will be erased, to look for after compaction.
DB="$WORK/cn.data/store.db"
doomed="(SELECT id FROM vehicles WHERE vin IN ('$VIN1', '$VIN3'))"
both_flushed() {
	[ "$(sqlite3 "$DB" "SELECT COUNT(DISTINCT vehicle_id) FROM blocks WHERE vehicle_id IN $doomed")" = 2 ]
}
wait_for 20 both_flushed || fail "the blocks of $VIN1 and $VIN3 were not flushed"
CIPHER=$(sqlite3 "$DB" "SELECT hex(substr(data, 53, 24)) FROM blocks WHERE vehicle_id IN $doomed")
# holds_hex HEX: whether a file under the data directory holds those bytes.
holds_hex() {
	local f
	for f in $(find "$WORK/cn.data" -type f); do
		od -An -tx1 -v "$f" | tr -d ' \n' | grep -qi "$1" && { echo "$f"; return 0; }
	done
	return 1
}
for hex in $CIPHER; do holds_hex "$hex" >/dev/null || fail "the scan does not see a block's bytes"; done
as "$ANALYST" GET "$AGG&fn=count"
must 200 "aggregate before"
jq -e --argjson t "$T" '.points == [[$t, 5]]' <<<"$OUT" >/dev/null || fail "before: $OUT"
as "$OWNER1" GET "/v1/vehicles/$VIN1/samples?signal=Vehicle.Speed"
must 200 "owner reads"
[ "$(jq -c .samples <<<"$OUT")" = "[[$((T + 10)),10.0]]" ] || [ "$(jq -c .samples <<<"$OUT")" = "[[$((T + 10)),10]]" ] ||
	fail "owner's samples: $OUT"
before=$(api GET /v1/residency/report | sed '$d' | jq '.stored.samples + .stored.samples_in_memory')
[ "$before" = 15 ] || fail "the store holds $before samples, not 15"

# 1. The owner asks; asking again while pending points at the same request.
as "$OWNER1" POST "/v1/vehicles/$VIN1/erasure-requests"
must 202 "request"
ID=$(jq -r .id <<<"$OUT")
jq -e --arg vin "$VIN1" '.status == "pending" and .vin == $vin and .requested_by == "ow1"' <<<"$OUT" \
	>/dev/null || fail "request: $OUT"
as "$OWNER1" POST "/v1/vehicles/$VIN1/erasure-requests" '{}'
must 409 "asked twice"
[ "$(jq .id <<<"$OUT")" = "$ID" ] || fail "the pending request's id: $OUT"
as "$OWNER1" POST "/v1/vehicles/$VIN1/erasure-requests" '{"reason": "x"}'
must 400 "a body with fields"
as "$OWNER2" POST "/v1/vehicles/$VIN1/erasure-requests"
must 404 "another owner's vehicle"

# 2. Another request is rejected: nothing is erased, and a decision stands.
as "$OWNER2" POST "/v1/vehicles/$VIN2/erasure-requests"
must 202 "request 2"
ID2=$(jq -r .id <<<"$OUT")
as "$OFFICER" POST "/v1/erasure-requests/$ID2/reject"
must 200 "reject"
jq -e '.status == "rejected" and .decided_by == "po1" and .decided_ms > 0' <<<"$OUT" >/dev/null ||
	fail "rejected: $OUT"
as "$OFFICER" POST "/v1/erasure-requests/$ID2/approve"
must 409 "approving a rejected request"
as "$OWNER2" GET "/v1/vehicles/$VIN2/latest"
must 200 "a rejected request erases nothing"

# 3. The officer sees the pending request and approves it.
as "$OFFICER" GET "/v1/erasure-requests?status=pending"
must 200 "list"
jq -e --argjson id "$ID" --arg vin "$VIN1" '.requests == [.requests[] | select(.id == $id and .vin == $vin and .requested_by == "ow1")] and (.requests | length) == 1' \
	<<<"$OUT" >/dev/null || fail "pending: $OUT"
for bad in 0 x 007 99999 "$ID/x"; do
	as "$OFFICER" POST "/v1/erasure-requests/$bad/approve"
	[ "$STATUS" = 404 ] || fail "approve $bad: $STATUS $OUT"
done
as "$OFFICER" POST "/v1/erasure-requests/$ID/approve"
must 200 "approve"
jq -e '.status == "approved" and .requested_by == "ow1" and .decided_by == "po1" and .erased_by == "po1" and .erased_ms > 0' \
	<<<"$OUT" >/dev/null || fail "approved: $OUT"
ERASED_MS=$(jq .erased_ms <<<"$OUT")

# 4. At once, no API returns VIN1's data.
# check_erased LABEL VEHICLES_LEFT: VIN1 is erased, VEHICLES_LEFT vehicles
# (the lowest speed among them 20) still count in the aggregates.
check_erased() {
	for path in "/v1/vehicles/$VIN1/samples?signal=Vehicle.Speed" \
		"/v1/vehicles/$VIN1/samples?signal=Vehicle.CurrentLocation.Latitude" \
		"/v1/vehicles/$VIN1/samples?signal=Vehicle.Speed&from=x" "/v1/vehicles/$VIN1/latest"; do
		as "$OWNER1" GET "$path"
		must 410 "$1: $path"
		jq -e --arg vin "$VIN1" --argjson ms "$ERASED_MS" \
			'.vin == $vin and .erased_by == "po1" and .erased_ms == $ms and (has("samples") | not) and (has("signals") | not)' \
			<<<"$OUT" >/dev/null || fail "$1: 410 body: $OUT"
		grep -q "P0301\|31.5" <<<"$OUT" && fail "$1: data in $OUT"
	done
	for who in "$OWNER1" "$OFFICER" "$OPERATOR" "$TOKEN"; do
		as "$who" GET "/v1/vehicles/$VIN1"
		must 200 "$1: registration"
		jq -e --argjson ms "$ERASED_MS" '.erased == true and .erased_by == "po1" and .erased_ms == $ms' \
			<<<"$OUT" >/dev/null || fail "$1: registration: $OUT"
	done
	# The fleet's aggregates leave it out.
	as "$ANALYST" GET "$AGG&fn=count"
	jq -e --argjson t "$T" --argjson n "$2" '.points == [[$t, $n]]' <<<"$OUT" >/dev/null ||
		fail "$1: aggregate: $OUT"
	as "$ANALYST" GET "$AGG&fn=min"
	jq -e --argjson t "$T" '.points == [[$t, 20]]' <<<"$OUT" >/dev/null || fail "$1: aggregate min: $OUT"
	# Nobody can ask or erase again.
	as "$OWNER1" POST "/v1/vehicles/$VIN1/erasure-requests"
	must 410 "$1: asking after erasure"
	as "$OFFICER" DELETE "/v1/vehicles/$VIN1"
	must 410 "$1: erasing twice"
	as "$OFFICER" POST "/v1/erasure-requests/$ID/approve"
	must 409 "$1: approving twice"
	as "$OFFICER" GET "/v1/erasure-requests?status=approved"
	jq -e --argjson id "$ID" '[.requests[] | select(.id == $id and .decided_by == "po1")] | length == 1' \
		<<<"$OUT" >/dev/null || fail "$1: approved list: $OUT"
	# The others' data is untouched.
	as "$OWNER2" GET "/v1/vehicles/$VIN2/samples?signal=Vehicle.Speed"
	must 200 "$1: another vehicle"
	[ "$(jq '.samples | length' <<<"$OUT")" = 1 ] || fail "$1: another vehicle: $OUT"
}
check_erased "right after approval" 4

# 5. The officer erases VIN3 alone; the owner's pending request is answered.
as "$OWNER3" POST "/v1/vehicles/$VIN3/erasure-requests"
must 202 "request 3"
ID3=$(jq -r .id <<<"$OUT")
as "$OPERATOR" DELETE "/v1/vehicles/$VIN3"
must 403 "an operator erasing"
as "$OFFICER" DELETE "/v1/vehicles/$VIN3"
must 200 "direct erasure"
jq -e '.erased == true and .erased_by == "po1"' <<<"$OUT" >/dev/null || fail "direct: $OUT"
as "$OWNER3" GET "/v1/vehicles/$VIN3/latest"
must 410 "after direct erasure"
as "$OFFICER" GET "/v1/erasure-requests?status=pending"
[ "$(jq '.requests | length' <<<"$OUT")" = 0 ] || fail "still pending: $OUT"
as "$OFFICER" POST "/v1/erasure-requests/$ID3/reject"
must 409 "rejecting an answered request"
as "$OFFICER" DELETE "/v1/vehicles/LSVAU2187N2100002"
must 404 "erasing an unknown vehicle"

# 6. Compaction removes the erased vehicles' samples from the store.
wait_for 30 bash -c "curl -sf -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$API_PORT/v1/residency/report | jq -e '.stored.samples + .stored.samples_in_memory == 9' >/dev/null" ||
	fail "compaction: the store holds $(api GET /v1/residency/report | sed '$d' | jq '.stored.samples + .stored.samples_in_memory') samples, not 9"

# 7. All of it holds across a restart.
stop_node TERM
start_node cn
check_erased "after a restart" 3
as "$OWNER3" GET "/v1/vehicles/$VIN3/samples?signal=Vehicle.Speed"
must 410 "VIN3 after a restart"

# 8. No file of the store holds the erased vehicles' ciphertext any more.
stop_node TERM
for hex in $CIPHER; do
	where=$(holds_hex "$hex") && fail "an erased vehicle's block is still in $where"
done
pass
