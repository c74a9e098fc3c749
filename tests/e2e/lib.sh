# lib.sh — shared by the end-to-end tests: start real nodes in temporary
# directories on ports they pick themselves, wait until they are ready,
# talk to them with real clients (mosquitto_pub, curl), and clean up on
# every exit, failed or not.
#
# A test sources this file, calls its steps, and ends with `pass`.

set -u
: "${DOMICILE:?DOMICILE must name the domicile binary}"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# pick_ports and vin_for are shared with the demo and the benchmarks.
. "$REPO/scripts/lib-node.sh"
TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/domicile-$TEST_NAME.XXXXXX")
PIDS=()

cleanup() {
	local status=$?
	# SIGTERM first, so a sanitizer build gets to report leaks at exit.
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		local waited=0
		while kill -0 "$pid" 2>/dev/null && [ $waited -lt 200 ]; do
			sleep 0.05
			waited=$((waited + 1))
		done
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	# A sanitizer report in any log fails the test, whatever it checked.
	if grep -lE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$WORK"/*.log 2>/dev/null; then
		echo "FAIL $TEST_NAME: sanitizer report in the logs above" >&2
		grep -hE -A30 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$WORK"/*.log | head -60 >&2
		status=1
	fi
	if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
	exit $status
}
trap cleanup EXIT

fail() {
	echo "FAIL $TEST_NAME: $*" >&2
	for log in "$WORK"/*.log; do
		[ -f "$log" ] && { echo "--- $log (last 30 lines)" >&2; tail -30 "$log" >&2; }
	done
	exit 1
}

pass() { echo "PASS $TEST_NAME"; exit 0; }

# wait_for SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" 2>/dev/null; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.05
	done
}

# write_config NAME [JURISDICTION [SITE]]: a node config in $WORK/NAME.conf
# with data in $WORK/NAME.data and both listeners on free loopback ports.
write_config() {
	local name=$1 jur=${2:-CN} site=${3:-cn-test-1}
	cat >"$WORK/$name.conf" <<CONF
# end-to-end test node $name
jurisdiction $jur
site $site
data_dir $WORK/$name.data
mqtt_listen 127.0.0.1:0
api_listen 127.0.0.1:0
catalog $REPO/catalog/signals.catalog
flush_interval_ms ${FLUSH_MS:-500}
CONF
}

# start_node NAME: starts the node of $WORK/NAME.conf and waits until it
# says it is ready; sets MQTT_PORT, API_PORT, TOKEN and NODE_PID.
start_node() {
	local name=$1 log="$WORK/$1.log" skip=0
	[ -f "$log" ] && skip=$(wc -l <"$log")
	"$DOMICILE" node -c "$WORK/$name.conf" >>"$log" 2>&1 &
	NODE_PID=$!
	PIDS+=("$NODE_PID")
	ready_line() { tail -n "+$((skip + 1))" "$log" | grep "ready: mqtt on port" | tail -1; }
	wait_for 20 bash -c "tail -n +$((skip + 1)) '$log' | grep -q 'ready: mqtt on port'" ||
		fail "node $name did not become ready"
	local line
	line=$(ready_line)
	MQTT_PORT=$(echo "$line" | sed -E 's/.*mqtt on port ([0-9]+).*/\1/')
	API_PORT=$(echo "$line" | sed -E 's/.*api on port ([0-9]+).*/\1/')
	TOKEN=$(cat "$WORK/$name.data/admin.token")
}

# stop_node SIGNAL: stops NODE_PID with SIGNAL and waits for it to exit.
stop_node() {
	kill "-$1" "$NODE_PID" 2>/dev/null
	wait "$NODE_PID" 2>/dev/null
	return 0
}

# api METHOD PATH [BODY]: calls the API; prints the body, then the status
# on a last line of its own.
api() {
	local method=$1 path=$2 body=${3:-}
	if [ -n "$body" ]; then
		curl -sS -X "$method" -H "Authorization: Bearer $TOKEN" \
			-H 'Content-Type: application/json' --data "$body" \
			-w '\n%{http_code}\n' "http://127.0.0.1:$API_PORT$path"
	else
		curl -sS -X "$method" -H "Authorization: Bearer $TOKEN" \
			-w '\n%{http_code}\n' "http://127.0.0.1:$API_PORT$path"
	fi
}

# expect_status EXPECTED OUTPUT: checks the status line api() printed.
expect_status() {
	local got
	got=$(echo "$2" | tail -1)
	[ "$got" = "$1" ] || fail "expected HTTP $1, got $got: $(echo "$2" | head -c 400)"
}

body() { echo "$1" | sed '$d'; }

# register VIN: registers a CN vehicle and sets SECRET.
register() {
	local out
	out=$(api POST /v1/vehicles "{\"vin\": \"$1\", \"home\": \"CN\", \"model\": \"test\"}")
	expect_status 201 "$out"
	SECRET=$(body "$out" | jq -r .mqtt_secret)
	[ -n "$SECRET" ] && [ "$SECRET" != null ] || fail "no secret for $1"
}

# publish VIN SECRET PAYLOAD [VERSION]: one QoS 1 publish; returns
# mosquitto_pub's status, its output in PUB_OUT.
publish() {
	PUB_OUT=$(mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V "${4:-5}" -q 1 -i "$1" -u "$1" \
		-P "$2" -t "v/$1/telemetry" -m "$3" 2>&1)
}

# principal NAME ROLE [VINS_JSON]: adds a principal as the admin (TOKEN);
# prints its token.
principal() {
	local out extra=""
	[ -n "${3:-}" ] && extra=", \"vins\": $3"
	out=$(api POST /v1/principals "{\"name\": \"$1\", \"role\": \"$2\"$extra}")
	expect_status 201 "$out"
	body "$out" | jq -er .token || fail "no token for $1"
}

# as TOKEN METHOD PATH [BODY]: calls the API of API_PORT as the holder of
# TOKEN; sets STATUS and OUT (the body, also in $WORK/out).
as() {
	local args=(-sS -o "$WORK/out" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1")
	[ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' --data "$4")
	STATUS=$(curl "${args[@]}" "http://127.0.0.1:$API_PORT$3")
	OUT=$(cat "$WORK/out")
}

# must STATUS WHAT: the last `as` answered STATUS.
must() { [ "$STATUS" = "$1" ] || fail "expected HTTP $1, got $STATUS: $OUT ($2)"; }

# audit_export AUDITOR_TOKEN [SIZE]: as the auditor, waits for a checkpoint
# of SIZE entries (default: takes the latest one), then writes it to
# $WORK/latest.ckpt, the site's verifier key to $WORK/key, the export of
# the entries it signs to $WORK/entries.json and those entries, one per
# line, to $WORK/entries.txt; sets AUDIT_SIZE.
audit_export() {
	local token=$1 size=${2:-}
	if [ -n "$size" ]; then
		wait_for 10 bash -c "curl -sf -H 'Authorization: Bearer $token' http://127.0.0.1:$API_PORT/v1/audit/checkpoint | sed -n 2p | grep -qx $size" ||
			fail "no checkpoint of $size entries"
	fi
	as "$token" GET /v1/audit/checkpoint
	must 200 "the audit checkpoint"
	cp "$WORK/out" "$WORK/latest.ckpt"
	AUDIT_SIZE=$(sed -n 2p "$WORK/latest.ckpt")
	as "$token" GET /v1/audit/key
	must 200 "the audit key"
	cp "$WORK/out" "$WORK/key"
	as "$token" GET "/v1/audit/entries?start=0&end=$AUDIT_SIZE"
	must 200 "the audit entries"
	cp "$WORK/out" "$WORK/entries.json"
	jq -r '.entries[]' "$WORK/entries.json" | while read -r e; do base64 -d <<<"$e"; echo; done \
		>"$WORK/entries.txt"
}

# owner_token VIN: the token of an owner of VIN at the node of TOKEN and
# API_PORT — only a vehicle's owner reads its samples (api/principals.h).
# Made once per node and VIN, by the admin; kept in $WORK across restarts.
owner_token() {
	local key file out
	key=$(printf '%s' "$TOKEN" | sha256sum | cut -c1-12)
	file="$WORK/owner-$key-$1.token"
	if [ ! -s "$file" ]; then
		out=$(api POST /v1/principals \
			"{\"name\": \"owner-$key-${1,,}\", \"role\": \"owner\", \"vins\": [\"$1\"]}")
		expect_status 201 "$out"
		body "$out" | jq -r .token >"$file"
	fi
	cat "$file"
}

# samples VIN SIGNAL: the stored samples as compact JSON [[ts, value], ...],
# read as the vehicle's owner.
samples() {
	local out owner
	owner=$(owner_token "$1") || exit 1
	out=$(TOKEN=$owner api GET "/v1/vehicles/$1/samples?signal=$2")
	expect_status 200 "$out"
	body "$out" | jq -c .samples
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Valid VINs (check digit correct) for the tests.
VIN1=LSVAU218XN2183294
VIN2=LFV3A28KXL3007531
VIN3=1M8GDM9AXKP042788
