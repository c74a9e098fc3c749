#!/bin/bash
# The audit log end to end: after a scenario (principals made, vehicles
# registered and sending, a fleet aggregate as analyst, samples as owner, a
# refused foreign vehicle, an erasure asked and approved) the log holds
# exactly the expected entries in order, without a sample value, a token or
# the foreign VIN; `domicile audit verify` accepts the export against the
# site's key, the latest checkpoint and an older one the auditor kept, and
# an inclusion proof from the API checks offline. Every entry after the
# first names the leaf hash of the one before it ("prev"). A deleted entry
# and a changed byte are caught and named.
. "$(dirname "$0")/lib.sh"
write_config cn
echo "audit_checkpoint_seconds 1" >>"$WORK/cn.conf"
start_node cn

VIN4=LSVAU2185N2100001
ANALYST=$(principal an1 analyst) || exit 1
AUDITOR=$(principal au1 auditor) || exit 1
OFFICER=$(principal po1 privacy_officer) || exit 1
declare -A SECRETS
for vin in "$VIN1" "$VIN2" "$VIN4"; do
	register "$vin"
	SECRETS[$vin]=$SECRET
done
OWNER=$(principal ow1 owner "[\"$VIN1\"]") || exit 1


# The auditor keeps the checkpoint handed out now, as a trusted old one:
# node.start, then a "started" and an outcome entry for each of 4
# principals and 3 registrations.
OLD=15
wait_for 10 bash -c "curl -sf -H 'Authorization: Bearer $AUDITOR' http://127.0.0.1:$API_PORT/v1/audit/checkpoint | sed -n 2p | grep -qx $OLD" ||
	fail "no checkpoint of the first $OLD entries"
as "$AUDITOR" GET /v1/audit/checkpoint
cp "$WORK/out" "$WORK/old.ckpt"

T=$(( ($(now_ms) - 60000) / 1000 * 1000 ))
value=50
for vin in "$VIN1" "$VIN2" "$VIN4"; do
	publish "$vin" "${SECRETS[$vin]}" "{\"seq\": 1, \"samples\": [
	  {\"ts\": $((T + 1)), \"signal\": \"Vehicle.Speed\", \"value\": $value.25}]}" || fail "publish: $PUB_OUT"
	value=$((value + 1))
done
as "$ANALYST" GET "/v1/fleet/aggregate?signal=Vehicle.Speed&from=$T&to=$((T + 1000))&fn=avg&step=1000"
[ "$STATUS" = 200 ] || fail "aggregate: $STATUS $OUT"
as "$OWNER" GET "/v1/vehicles/$VIN1/samples?signal=Vehicle.Speed"
[ "$STATUS" = 200 ] || fail "owner read: $STATUS $OUT"
# A call without a valid token does nothing and is not recorded, whatever
# it carries.
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" \
	"http://127.0.0.1:$API_PORT/v1/vehicles/$VIN1?token=SUPERSECRET123")
[ "$STATUS" = 401 ] || fail "a bad token got $STATUS"
FOREIGN=WVWZZZ1JZXW000001
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 1 -i "$FOREIGN" -u "$FOREIGN" -P x \
	-t "v/$FOREIGN/telemetry" -m '{}' >/dev/null 2>&1 && fail "a foreign vehicle was accepted"
as "$OWNER" POST "/v1/vehicles/$VIN1/erasure-requests"
[ "$STATUS" = 202 ] || fail "erasure request: $STATUS $OUT"
ID=$(jq -r .id <<<"$OUT")
as "$OFFICER" POST "/v1/erasure-requests/$ID/approve"
[ "$STATUS" = 200 ] || fail "approval: $STATUS $OUT"

# Export: the entries, the key and a checkpoint that covers them all. A
# call that changes something has two entries, "started" and its outcome;
# the erasure's last step, the compaction, is the node's own.
want="node.start principal.add principal.add principal.add principal.add principal.add
principal.add vehicle.register vehicle.register vehicle.register vehicle.register
vehicle.register vehicle.register principal.add principal.add fleet.aggregate vehicle.samples
mqtt.connect erasure.request erasure.request erasure.approve erasure.approve store.compact"
count=$(wc -w <<<"$want")
audit_export "$AUDITOR" "$count"

# Exactly the expected entries, in order, each naming its own place.
got=$(jq -r .action "$WORK/entries.txt" | paste -sd' ')
[ "$got" = "$(echo $want)" ] || fail "entries: got '$got', want '$(echo $want)'"
[ "$(jq -r .index "$WORK/entries.txt" | paste -sd' ')" = "$(seq 0 $((count - 1)) | paste -sd' ')" ] ||
	fail "indexes: $(jq -c .index "$WORK/entries.txt" | paste -sd' ')"
# entry ACTION CONDITION: the one outcome entry of ACTION meets the jq
# CONDITION.
entry() {
	jq -c --arg a "$1" 'select(.action == $a and .outcome != "started")' "$WORK/entries.txt" |
		jq -e "$2" >/dev/null || fail "the $1 entry: $(grep "\"$1\"" "$WORK/entries.txt")"
}
entry vehicle.samples '.who == {"kind": "principal", "name": "ow1", "role": "owner"} and .object == "'"$VIN1"'" and .params.signal == "Vehicle.Speed" and .outcome == "ok"'
entry erasure.approve '.who.name == "po1" and .status == 200 and .outcome == "ok" and .params.vin == "'"$VIN1"'"'
entry store.compact '.who.kind == "node" and .outcome == "ok" and .params.vehicles == 1'
# Every "started" entry is followed by its outcome: the same action, who
# and request id, and no status of its own.
jq -s -e '[range(length - 1) as $i | .[$i] as $a | .[$i + 1] as $b | select($a.outcome == "started")
	| ($b.action == $a.action and $b.request == $a.request and $b.who == $a.who and $b.outcome != "started"
	   and ($a | has("status") | not))] | length == 9 and all' "$WORK/entries.txt" >/dev/null ||
	fail "started entries without their outcome: $(jq -c 'select(.outcome == "started")' "$WORK/entries.txt")"
entry mqtt.connect '.outcome == "refused" and .who.kind == "vehicle" and (.who.name | length) > 0'
entry fleet.aggregate '.who.role == "analyst" and .params.fn == "avg"'
# The chain: entry 0 has no "prev"; every later one has the base64 of
# SHA-256(0x00 || the entry before it).
jq -e 'has("prev") | not' <(head -n1 "$WORK/entries.txt") >/dev/null || fail "entry 0 has a prev"
for i in $(seq 1 $((count - 1))); do
	want_hash=$( (printf '\x00'; jq -r ".entries[$((i - 1))]" "$WORK/entries.json" | base64 -d) |
		sha256sum | cut -d' ' -f1)
	prev=$(jq -r ".entries[$i]" "$WORK/entries.json" | base64 -d | jq -r .prev)
	got_hash=$(base64 -d <<<"$prev" | od -An -tx1 -v | tr -d ' \n')
	[ "$got_hash" = "$want_hash" ] || fail "entry $i: prev '$prev' is not the hash of entry $((i - 1)) ($want_hash)"
done
# Nothing that must not be there: sample values, tokens, the foreign VIN.
for secret in 50.25 51.25 52.25 SUPERSECRET123 "$FOREIGN" "${ANALYST#*.}" "${OWNER#*.}" "$TOKEN" "${SECRETS[$VIN1]}"; do
	grep -qF -- "$secret" "$WORK/entries.txt" && fail "the audit log holds '$secret'"
done

# The auditor's offline check: every signature, the tree, the old checkpoint.
verify() { "$DOMICILE" audit verify --key-file "$WORK/key" --checkpoint "$WORK/latest.ckpt" \
	--trusted "$WORK/old.ckpt" "$@" >"$WORK/verify.out" 2>&1; }
verify "$WORK/entries.json" || fail "audit verify: $(cat "$WORK/verify.out")"
grep -q "^OK" "$WORK/verify.out" || fail "audit verify said: $(cat "$WORK/verify.out")"

# Entries no checkpoint signs are not passed as verified.
"$DOMICILE" audit verify --key-file "$WORK/key" --checkpoint "$WORK/old.ckpt" "$WORK/entries.json" \
	>"$WORK/verify.out" 2>&1 && fail "entries past the checkpoint passed: $(cat "$WORK/verify.out")"
grep -q "^entries $OLD to $((count - 1)): not signed" "$WORK/verify.out" || fail "unsigned entries: $(cat "$WORK/verify.out")"

# The entry tampered with below: the owner's read, and the one before it.
T=$(jq -r 'select(.action == "vehicle.samples") | .index' "$WORK/entries.txt")
B=$((T - 1))
# One entry's inclusion proof, from the API, checked offline.
as "$AUDITOR" GET "/v1/audit/proof/inclusion?index=$T&size=$count"
cp "$WORK/out" "$WORK/proof.json"
"$DOMICILE" audit verify-inclusion --key-file "$WORK/key" --checkpoint "$WORK/latest.ckpt" \
	--proof "$WORK/proof.json" --entry "$(jq -r --argjson t "$T" '.entries[$t]' "$WORK/entries.json")" >"$WORK/incl.out" 2>&1 ||
	fail "inclusion proof: $(cat "$WORK/incl.out")"

# The entry deleted: named. The entry with one byte changed: named by the
# chain, without proofs, and by a neighbour's inclusion proof.
jq --argjson t "$T" '.entries |= del(.[$t])' "$WORK/entries.json" >"$WORK/deleted.json"
verify "$WORK/deleted.json" && fail "a deleted entry was not noticed"
grep -q "^entry $T: missing" "$WORK/verify.out" || fail "deletion: $(cat "$WORK/verify.out")"
changed=$(jq -r --argjson t "$T" '.entries[$t]' "$WORK/entries.json" | base64 -d | sed 's/"status":200/"status":201/' | base64 -w0)
jq --arg e "$changed" --argjson t "$T" '.entries[$t] = $e' "$WORK/entries.json" >"$WORK/changed.json"
verify "$WORK/changed.json" && fail "a changed entry was not noticed"
grep -q "^entry $T: changed" "$WORK/verify.out" || fail "change: $(cat "$WORK/verify.out")"
as "$AUDITOR" GET "/v1/audit/proof/inclusion?index=$B&size=$count"
printf '{"index": %s, "size": %s, "hashes": %s}' "$B" "$count" "$(jq -c .hashes <<<"$OUT")" >"$WORK/proofB.json"
verify --proofs "$WORK/proofB.json" "$WORK/changed.json" && fail "a changed entry was not noticed"
grep -q "^entry $T: changed" "$WORK/verify.out" || fail "change with a proof: $(cat "$WORK/verify.out")"

# A restart adds node.stop and node.start, and the log still verifies.
stop_node TERM
start_node cn
audit_export "$AUDITOR" $((count + 2))
[ "$(tail -n 2 "$WORK/entries.txt" | jq -r .action | paste -sd' ')" = "node.stop node.start" ] ||
	fail "the restart is not in the log"
verify "$WORK/entries.json" || fail "after the restart: $(cat "$WORK/verify.out")"

# A flood of refused connections: the first audit_refusal_burst of a reason
# are recorded one by one, then one entry says counting began, and the
# count is recorded in one audit.suppressed entry, at the latest before the
# node records its stop.
stop_node TERM
printf 'audit_refusal_burst 3\naudit_refusal_window_seconds 3600\n' >>"$WORK/cn.conf"
start_node cn
for i in 1 2 3 4 5 6 7 8; do
	mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 1 -i "$FOREIGN" -u "$FOREIGN" -P x \
		-t "v/$FOREIGN/telemetry" -m '{}' >/dev/null 2>&1 && fail "a foreign vehicle was accepted"
done
stop_node TERM
start_node cn
from=$((count + 2))
audit_export "$AUDITOR" $((from + 9))
tail -n +$((from + 1)) "$WORK/entries.txt" >"$WORK/flood.txt"
got=$(jq -r .action "$WORK/flood.txt" | paste -sd' ')
[ "$got" = "node.stop node.start mqtt.connect mqtt.connect mqtt.connect audit.suppressing audit.suppressed node.stop node.start" ] ||
	fail "after the flood: $got"
jq -s -e 'map(select(.action == "audit.suppressed")) | length == 1 and (.[0] |
	.object == "mqtt.connect/unknown_vehicle" and .params.count == 5 and
	.params.from <= .params.to and .who.kind == "node")' "$WORK/flood.txt" >/dev/null ||
	fail "the suppressed count: $(grep suppressed "$WORK/flood.txt")"
verify "$WORK/entries.json" || fail "after the flood: $(cat "$WORK/verify.out")"

# `domicile audit fetch`: the auditor's export in one command, over more
# than one page of entries (1,000 audited reads first), ready for verify.
cfg="$WORK/reads.curl"
: >"$cfg"
for i in $(seq 1 1000); do
	[ "$i" -gt 1 ] && echo next >>"$cfg"
	printf 'url = "http://127.0.0.1:%s/v1/vehicles/%s"\nheader = "Authorization: Bearer %s"\noutput = /dev/null\n' \
		"$API_PORT" "$VIN2" "$TOKEN" >>"$cfg"
done
curl -sS -K "$cfg" || fail "the 1,000 reads"
printf '%s\n' "$AUDITOR" >"$WORK/auditor.token"
# The auditor holds the site's key from the site's host, not from the API.
"$DOMICILE" audit key --file "$WORK/cn.data/audit.key" --name domicile-cn-test-1 >"$WORK/site.key" ||
	fail "audit key"
cmp -s <(tr -d '\n' <"$WORK/site.key") <(tr -d '\n' <"$WORK/key") || fail "the API hands out another key than the site's"
fetch() { "$DOMICILE" audit fetch --api "http://127.0.0.1:$API_PORT" --token-file "$1" \
	--key-file "$2" --out "$3" >"$WORK/fetch.out" 2>&1; }
wait_for 10 bash -c "curl -sf -H 'Authorization: Bearer $AUDITOR' http://127.0.0.1:$API_PORT/v1/audit/checkpoint | sed -n 2p | awk '\$1 > 1000 {ok = 1} END {exit !ok}'" ||
	fail "no checkpoint past 1,000 entries"
fetch "$WORK/auditor.token" "$WORK/site.key" "$WORK/fetched" || fail "audit fetch: $(cat "$WORK/fetch.out")"
fetched=$(sed -n 2p "$WORK/fetched/checkpoint")
[ "$fetched" -gt 1000 ] && [ "$(jq '.entries | length' "$WORK/fetched/entries.json")" = "$fetched" ] ||
	fail "the fetched export is not the checkpoint's $fetched entries"
[ "$(stat -c %a "$WORK/fetched") $(stat -c %a "$WORK/fetched/entries.json")" = "700 600" ] ||
	fail "the export is open to others"
[ "$(ls -A "$WORK/fetched" | paste -sd' ')" = "checkpoint entries.json" ] || fail "the export holds $(ls -A "$WORK/fetched")"
"$DOMICILE" audit verify --key-file "$WORK/site.key" --checkpoint "$WORK/fetched/checkpoint" --trusted "$WORK/old.ckpt" \
	"$WORK/fetched/entries.json" >"$WORK/verify.out" 2>&1 || fail "the fetched export: $(cat "$WORK/verify.out")"
grep -q "^OK: $fetched entries" "$WORK/verify.out" || fail "the fetched export: $(cat "$WORK/verify.out")"
# An export is never overwritten.
before=$(sha256sum "$WORK/fetched/entries.json")
fetch "$WORK/auditor.token" "$WORK/site.key" "$WORK/fetched" && fail "an export was fetched over another"
grep -q "fetch into a new directory" "$WORK/fetch.out" || fail "overwrite refused how? $(cat "$WORK/fetch.out")"
[ "$(sha256sum "$WORK/fetched/entries.json")" = "$before" ] || fail "the first export changed"
# A token without the auditor role, or a key that is not the site's, gets
# nothing, and leaves nothing.
printf '%s\n' "$OWNER" >"$WORK/owner.token"
fetch "$WORK/owner.token" "$WORK/site.key" "$WORK/by-owner" && fail "an owner fetched the audit log"
grep -q "HTTP 403" "$WORK/fetch.out" || fail "the owner's fetch: $(cat "$WORK/fetch.out")"
"$DOMICILE" audit key --file "$WORK/other.key" --name domicile-cn-test-1 >"$WORK/other.pub" || fail "another key"
fetch "$WORK/auditor.token" "$WORK/other.pub" "$WORK/other-key" && fail "fetched with a key that is not the site's"
grep -q "not the key you hold" "$WORK/fetch.out" || fail "the wrong key: $(cat "$WORK/fetch.out")"
[ ! -e "$WORK/by-owner" ] && [ ! -e "$WORK/other-key" ] || fail "a refused fetch left a directory"
# Plain http carries no token off loopback.
"$DOMICILE" audit fetch --api http://192.0.2.1:8080 --token-file "$WORK/auditor.token" \
	--key-file "$WORK/site.key" --out "$WORK/plain" >"$WORK/fetch.out" 2>&1 && fail "plain http off loopback"
grep -q "plain http only to a loopback address" "$WORK/fetch.out" || fail "plain http: $(cat "$WORK/fetch.out")"

# The auditors' guide names every action a route records and every action
# this log holds.
as "$AUDITOR" GET /v1/routes
must 200 "the route table"
actions=$( (jq -r '.routes[].audit_action // empty' <<<"$OUT"; jq -r .action "$WORK/entries.txt") | sort -u)
[ "$(wc -l <<<"$actions")" -ge 20 ] || fail "too few actions to check: $actions"
for action in $actions; do
	awk -v a="\`$action\`" '/^\|/ && index($0, a) {found = 1} END {exit !found}' "$REPO/docs/audit.md" ||
		fail "docs/audit.md does not describe $action"
done
pass
