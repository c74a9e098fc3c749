#!/bin/bash
# The jurisdiction's KEK in a PKCS#11 token (SoftHSM2): `domicile keys
# pkcs11-init` makes it non-extractable inside the token, a node configured
# with `keystore pkcs11` wraps its vehicles' data keys with it there, stores
# and reads back a batch, rotates its KEK in the token, and reads the batch
# again after a restart; a node whose
# token or key is missing does not start, and says which.
. "$(dirname "$0")/lib.sh"

# No SoftHSM2 is a failure, not a skip: CI installs it (scripts/install-deps.sh).
MODULE=${DOMICILE_SOFTHSM2_MODULE:-}
if [ -z "$MODULE" ]; then
	for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
		/usr/local/lib/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so; do
		[ -f "$m" ] && { MODULE=$m; break; }
	done
fi
[ -n "$MODULE" ] || fail "SoftHSM2's libsofthsm2.so is not installed (scripts/install-deps.sh)"
command -v softhsm2-util >/dev/null || fail "softhsm2-util is not on PATH (scripts/install-deps.sh)"

# A token store of this test's own, removed with $WORK.
mkdir -m 700 "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
softhsm2-util --init-token --free --label cn-test-hsm --pin 4321 --so-pin 8765 >/dev/null ||
	fail "cannot initialise a SoftHSM2 token"
(umask 077 && echo 4321 >"$WORK/pin")

# keys COMMAND [KEY]: domicile keys COMMAND against the test token.
keys() {
	"$DOMICILE" keys "$1" --module "$MODULE" --token cn-test-hsm --key "${2:-cn-kek}" \
		--pin-file "$WORK/pin"
}

out=$(keys pkcs11-init 2>&1) || fail "keys pkcs11-init failed: $out"
echo "$out" | grep -q "non-extractable" || fail "pkcs11-init did not say non-extractable: $out"
KEK_ID=$(echo "$out" | sed -nE 's/.*kek id ([0-9a-f]{8}).*/\1/p')
[ -n "$KEK_ID" ] || fail "pkcs11-init printed no kek id: $out"
out=$(keys pkcs11-init 2>&1) && fail "a second pkcs11-init did not refuse: $out"
out=$(keys pkcs11-check 2>&1) || fail "keys pkcs11-check failed: $out"
echo "$out" | grep -q "kek id $KEK_ID.*non-extractable" || fail "pkcs11-check: $out"
out=$(keys pkcs11-check no-such-key 2>&1)
[ $? -eq 1 ] || fail "pkcs11-check of a missing key did not exit 1: $out"

# The node, with the token as its key store.
write_config cn
cat >>"$WORK/cn.conf" <<CONF
keystore pkcs11
pkcs11_module $MODULE
pkcs11_token cn-test-hsm
pkcs11_key cn-kek
pkcs11_pin_file $WORK/pin
CONF
start_node cn
register "$VIN1"
t=$(now_ms)
publish "$VIN1" "$SECRET" "{\"seq\": 1, \"samples\": [
  {\"ts\": $((t - 2000)), \"signal\": \"Vehicle.Speed\", \"value\": 61.5},
  {\"ts\": $((t - 1000)), \"signal\": \"Vehicle.Speed\", \"value\": 63.25}]}" 5 ||
	fail "publish failed: $PUB_OUT"
want="[[$((t - 2000)),61.5],[$((t - 1000)),63.25]]"
got=$(samples "$VIN1" Vehicle.Speed)
[ "$got" = "$want" ] || fail "speed: got $got, want $want"

# The data key was wrapped by the token's KEK (its id is bytes 1..4 of the
# blob), and no key file stands in for the token.
wrapped=$(sqlite3 "$WORK/cn.data/store.db" "SELECT hex(substr(wrapped_key, 2, 4)) FROM vehicles")
[ "$wrapped" = "$(echo "$KEK_ID" | tr a-f A-F)" ] ||
	fail "the data key is wrapped under kek id '$wrapped', not the token's $KEK_ID"
[ -e "$WORK/cn.data/kek.key" ] && fail "the node made a key file although its KEK is in a token"

# KEK rotation inside the token: a new key, the data key re-wrapped under
# it (the blob names the new id), the old key gone from the token.
out=$(api POST /v1/keys/rotate)
expect_status 200 "$out"
NEW_ID=$(body "$out" | jq -r .kek_id)
[ -n "$NEW_ID" ] && [ "$NEW_ID" != "$KEK_ID" ] || fail "rotation: $(body "$out")"
wrapped=$(sqlite3 "$WORK/cn.data/store.db" "SELECT hex(substr(wrapped_key, 2, 4)) FROM vehicles")
[ "$wrapped" = "$(echo "$NEW_ID" | tr a-f A-F)" ] || fail "after rotation the key is wrapped under '$wrapped'"
out=$(keys pkcs11-check 2>&1) || fail "keys pkcs11-check after rotation: $out"
echo "$out" | grep -q "kek id $NEW_ID.*non-extractable" || fail "pkcs11-check after rotation: $out"

# After a restart the data key is unwrapped by the token and the batch, now
# in blocks, reads back the same.
stop_node TERM
start_node cn
got=$(samples "$VIN1" Vehicle.Speed)
[ "$got" = "$want" ] || fail "speed after restart: got $got, want $want"
stop_node TERM

# refuses NAME WORD: the node of $WORK/NAME.conf exits non-zero at start,
# naming WORD.
refuses() {
	local status=0
	timeout 20 "$DOMICILE" node -c "$WORK/$1.conf" >"$WORK/$1.log" 2>&1 || status=$?
	[ $status -eq 124 ] && fail "node $1 started (killed after 20 s) instead of refusing"
	[ $status -ne 0 ] || fail "node $1 exited 0 instead of refusing"
	grep -q -- "$2" "$WORK/$1.log" || fail "node $1 refused without naming '$2'"
}
sed 's/^pkcs11_token .*/pkcs11_token no-such-token/' "$WORK/cn.conf" >"$WORK/no-token.conf"
refuses no-token no-such-token
sed 's/^pkcs11_key .*/pkcs11_key no-such-key/' "$WORK/cn.conf" >"$WORK/no-key.conf"
refuses no-key no-such-key
# And the original config still starts: the refusals changed nothing.
start_node cn
got=$(samples "$VIN1" Vehicle.Speed)
[ "$got" = "$want" ] || fail "speed after the refusals: got $got, want $want"
pass
