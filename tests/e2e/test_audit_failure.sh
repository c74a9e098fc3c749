#!/bin/bash
# The audit log's disk fails under a real node (fdatasync of entries.log
# returns EIO, injected with tests/e2e/failsync.c): nothing is done that
# the log could not record.
#  1. The "started" entry of an erasure approval cannot be synced: the
#     answer is 503, the vehicle is not erased, /v1/health says the audit
#     log failed, every audited route is refused until a restart, while
#     vehicles go on sending.
#  2. The "started" entry is synced, the outcome's sync fails: the erasure
#     was done but the answer is 503; after a restart the log holds the
#     started entry of that request (its trace), no outcome, and verifies.
. "$(dirname "$0")/lib.sh"
: "${FAILSYNC_LIB:?FAILSYNC_LIB must name libfailsync.so (make e2e builds it)}"
write_config cn
echo "audit_checkpoint_seconds 1" >>"$WORK/cn.conf"
FAULT="$WORK/failsync"
# start_faulty: the node of cn.conf, with the fault armed by $FAULT.
start_faulty() {
	LD_PRELOAD=$FAILSYNC_LIB FAILSYNC_FILE=$FAULT FAILSYNC_SUFFIX=/audit/entries.log \
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 start_node cn
}
start_faulty

register "$VIN1"
SECRET1=$SECRET
register "$VIN2"
OFFICER=$(principal po1 privacy_officer) || exit 1
OWNER=$(principal ow1 owner "[\"$VIN1\", \"$VIN2\"]") || exit 1
AUDITOR=$(principal au1 auditor) || exit 1
for vin in "$VIN1" "$VIN2"; do
	as "$OWNER" POST "/v1/vehicles/$vin/erasure-requests"
	must 202 "erasure request for $vin"
done
ID1=$(as "$OFFICER" GET "/v1/erasure-requests?status=pending"; jq -r ".requests[] | select(.vin == \"$VIN1\") | .id" <<<"$OUT")
ID2=$(as "$OFFICER" GET "/v1/erasure-requests?status=pending"; jq -r ".requests[] | select(.vin == \"$VIN2\") | .id" <<<"$OUT")
[ -n "$ID1" ] && [ -n "$ID2" ] || fail "no pending requests: $OUT"

# ---- 1: the started entry cannot be recorded ----
echo 0 >"$FAULT"
as "$OFFICER" POST "/v1/erasure-requests/$ID1/approve"
must 503 "approval while the log cannot sync"
grep -q "nothing was done" <<<"$OUT" || fail "the 503 does not say nothing was done: $OUT"
as "$OFFICER" GET "/v1/erasure-requests?status=pending"
must 503 "an audited read after the failure"
STATUS=$(curl -s -o "$WORK/health" -w '%{http_code}' "http://127.0.0.1:$API_PORT/v1/health")
[ "$STATUS" = 503 ] && jq -e '.audit == "failed"' "$WORK/health" >/dev/null ||
	fail "health does not show the failed audit log: $STATUS $(cat "$WORK/health")"
# Collection is no access: vehicles go on sending.
publish "$VIN1" "$SECRET1" '{"seq": 1, "samples": [{"ts": 1700000000000, "signal": "Vehicle.Speed", "value": 1}]}' ||
	fail "a vehicle could not send while the audit log failed: $PUB_OUT"
grep -q "audit .*entries.log: fsync failed: Input/output error" "$WORK/cn.log" ||
	fail "the failed sync is not logged"

rm -f "$FAULT"
stop_node TERM
start_faulty
as "$TOKEN" GET "/v1/vehicles/$VIN1"
must 200 "the vehicle after the failed approval"
jq -e 'has("erased_ms") | not' <<<"$OUT" >/dev/null || fail "the vehicle was erased although nothing was recorded: $OUT"
as "$OFFICER" GET "/v1/erasure-requests?status=pending"
must 200 "pending requests after the restart"
jq -e --argjson id "$ID1" 'any(.requests[]; .id == $id)' <<<"$OUT" >/dev/null || fail "request $ID1 is no longer pending: $OUT"

# ---- 2: the started entry is recorded, the outcome is not ----
echo 1 >"$FAULT"
as "$OFFICER" POST "/v1/erasure-requests/$ID2/approve"
must 503 "approval whose outcome cannot be recorded"
grep -q "the change may have been made" <<<"$OUT" || fail "the 503 hides that the change may be made: $OUT"
rm -f "$FAULT"
stop_node TERM
start_faulty
as "$TOKEN" GET "/v1/vehicles/$VIN2"
must 200 "the vehicle after the half-recorded approval"
jq -e 'has("erased_ms")' <<<"$OUT" >/dev/null || fail "the approval did not erase (it ran before its outcome failed): $OUT"

# The log: the started entry of the approval is there, no outcome of it,
# and the whole log verifies.
# The checkpoint signed at this start covers every entry made before it.
audit_export "$AUDITOR"
approvals=$(jq -c 'select(.action == "erasure.approve" and .object == "'"$ID2"'") | .outcome' "$WORK/entries.txt" | paste -sd' ')
[ "$approvals" = '"started"' ] || fail "approval $ID2 in the log: $approvals (want only its started entry)"
[ -z "$(jq -c 'select(.action == "erasure.approve" and .object == "'"$ID1"'")' "$WORK/entries.txt")" ] ||
	fail "approval $ID1, which never ran, is in the log"
"$DOMICILE" audit verify --key-file "$WORK/key" --checkpoint "$WORK/latest.ckpt" "$WORK/entries.json" \
	>"$WORK/verify.out" 2>&1 || fail "audit verify: $(cat "$WORK/verify.out")"
pass
