#!/bin/bash
# Encryption at rest, seen from the disk: after ingesting samples with
# distinctive values, a byte scan of the whole data directory finds none of
# them, neither while they sit in the write-ahead log nor once flushed into
# blocks. The same scan of a node started with `store_encryption off` does
# find them, so the scan is known to see what it looks for.
. "$(dirname "$0")/lib.sh"

# scan DIR NEEDLE: whether any file below DIR holds NEEDLE's bytes.
scan() { grep -r -a -F -q -- "$2" "$1"; }

# ingest NAME: registers a vehicle at node NAME and publishes a batch whose
# driver id is unique to this run; sets CANARY.
ingest() {
	register "$VIN1"
	CANARY="CANARY-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
	local t
	t=$(now_ms)
	publish "$VIN1" "$SECRET" "{\"seq\": 1, \"samples\": [
	  {\"ts\": $((t - 2000)), \"signal\": \"Vehicle.Driver.Identifier.Subject\", \"value\": \"$CANARY\"},
	  {\"ts\": $((t - 1000)), \"signal\": \"Vehicle.Driver.Identifier.Subject\", \"value\": \"$CANARY-2\"},
	  {\"ts\": $((t - 1000)), \"signal\": \"Vehicle.Speed\", \"value\": 123.456}]}" 5 ||
		fail "publish failed at node $1: $PUB_OUT"
}

flushed() {
	curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/metrics" |
		grep -q '^domicile_blocks_written_total [1-9]'
}

# A node that seals: the canary is nowhere, before and after the flush.
FLUSH_MS=3600000 write_config sealed
start_node sealed
ingest sealed
scan "$WORK/sealed.data" "$CANARY" && fail "the canary is in clear in the sealed node's log"
grep -q "^encryption" <(sqlite3 "$WORK/sealed.data/store.db" "SELECT key FROM meta") ||
	fail "the store does not record its encryption mode"
[ "$(sqlite3 "$WORK/sealed.data/store.db" "SELECT value FROM meta WHERE key = 'encryption'")" = aes-256-gcm ] ||
	fail "the store is not marked as sealed"
stop_node TERM # flushes memory into blocks on the way out
sqlite3 "$WORK/sealed.data/store.db" "SELECT COUNT(*) FROM blocks" | grep -qx '[1-9][0-9]*' ||
	fail "no block was written"
scan "$WORK/sealed.data" "$CANARY" && fail "the canary is in clear in the sealed node's store"
[ "$(sqlite3 "$WORK/sealed.data/store.db" "SELECT length(wrapped_key) FROM vehicles")" = 65 ] ||
	fail "the vehicle's data key is not stored wrapped"

# KEK rotation re-wraps the data key and leaves the blocks as they are; the
# old KEK is gone, and the samples still read after a restart.
start_node sealed
blocks_before=$(sqlite3 "$WORK/sealed.data/store.db" "SELECT hex(data) FROM blocks" | sha256sum)
key_before=$(sqlite3 "$WORK/sealed.data/store.db" "SELECT hex(wrapped_key) FROM vehicles")
out=$(api POST /v1/keys/rotate)
expect_status 200 "$out"
[ "$(ls "$WORK/sealed.data" | grep -c '^kek')" = 1 ] || fail "the old KEK was kept: $(ls "$WORK/sealed.data")"
[ "$(sqlite3 "$WORK/sealed.data/store.db" "SELECT hex(wrapped_key) FROM vehicles")" != "$key_before" ] ||
	fail "the data key was not re-wrapped"
stop_node TERM
[ "$(sqlite3 "$WORK/sealed.data/store.db" "SELECT hex(data) FROM blocks" | sha256sum)" = "$blocks_before" ] ||
	fail "the blocks changed with the KEK"
start_node sealed
[ "$(samples "$VIN1" Vehicle.Speed | jq -c '.[0][1]')" = 123.456 ] || fail "samples after rotation: $(samples "$VIN1" Vehicle.Speed)"

# A block copied onto another vehicle's row does not open: its owner gets a
# clear error, the first vehicle still reads.
register "$VIN2"
publish "$VIN2" "$SECRET" "{\"seq\": 1, \"samples\": [
  {\"ts\": $(($(now_ms) - 500)), \"signal\": \"Vehicle.Speed\", \"value\": 99.5}]}" 5 ||
	fail "publish of the second vehicle: $PUB_OUT"
stop_node TERM
sqlite3 "$WORK/sealed.data/store.db" "UPDATE blocks SET data = (SELECT data FROM blocks b
  JOIN vehicles v ON v.id = b.vehicle_id WHERE v.vin = '$VIN1' AND b.signal = 'Vehicle.Speed')
  WHERE signal = 'Vehicle.Speed' AND vehicle_id = (SELECT id FROM vehicles WHERE vin = '$VIN2')" ||
	fail "could not move the block"
start_node sealed
out=$(TOKEN=$(owner_token "$VIN2") api GET "/v1/vehicles/$VIN2/samples?signal=Vehicle.Speed")
expect_status 500 "$out"
body "$out" | grep -q "failed its integrity check" || fail "unclear error: $(body "$out")"
grep -q "fails its authentication" "$WORK/sealed.log" || fail "the node's log does not name the block"
[ "$(samples "$VIN1" Vehicle.Speed | jq -c '.[0][1]')" = 123.456 ] || fail "the first vehicle no longer reads"
stop_node TERM

# The control: the same scan of a node that keeps samples in clear.
FLUSH_MS=3600000 write_config clear
echo "store_encryption off" >>"$WORK/clear.conf"
start_node clear
grep -q "encryption is OFF" "$WORK/clear.log" || fail "the node did not warn that it stores in clear"
ingest clear
scan "$WORK/clear.data" "$CANARY" || fail "the scan did not find the canary in the clear node's log"
stop_node TERM
scan "$WORK/clear.data/store.db" "$CANARY" ||
	fail "the scan did not find the canary in the clear node's blocks"

# A sealed store is not opened in clear, nor the reverse.
echo "store_encryption off" >>"$WORK/sealed.conf"
"$DOMICILE" node -c "$WORK/sealed.conf" >"$WORK/mismatch.log" 2>&1 &&
	fail "a sealed store was opened with store_encryption off"
grep -q "cannot be opened with 'off'" "$WORK/mismatch.log" || fail "unclear refusal: $(cat "$WORK/mismatch.log")"
pass
