#!/bin/bash
# The demo: two jurisdictions, CN and DE, one node each, sharing one
# topology. Cars sold in each drive for a while; some roam in the other
# country (their data still goes home), some are configured with the other
# country's endpoint at first (they are sent home before a byte is read).
# Then both residency reports side by side, an owner's read, both audit
# logs exported and verified offline as an auditor would, and a check of
# every promise the demo can see. Exits 0 only if all held; removes everything it made.
set -uo pipefail
: "${DOMICILE:?DOMICILE must name the domicile binary}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/domicile-demo.XXXXXX")
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
. "$(dirname "$0")/lib-node.sh"

SECONDS_TO_DRIVE=${DEMO_SECONDS:-20}
bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else echo "$*"; fi; }

bold "== Two jurisdictions, one node each"
pick_ports CN_MQTT CN_API DE_MQTT DE_API
cat >"$WORK/topology" <<TOPO
# The topology every node and every car reads: one line per site.
site CN cn-shanghai-1 mqtt://127.0.0.1:$CN_MQTT http://127.0.0.1:$CN_API
site DE de-frankfurt-1 mqtt://127.0.0.1:$DE_MQTT http://127.0.0.1:$DE_API
TOPO
sed 's/^/   /' "$WORK/topology"
# Checkpoints every second, so the audit logs are signed up to their end
# when the demo checks them (the default is every 60 s or 1000 entries).
NODE_MQTT_PORT=$CN_MQTT NODE_API_PORT=$CN_API node_start cn CN cn-shanghai-1 \
	"topology $WORK/topology"$'\n'"audit_checkpoint_seconds 1" || exit 1
PIDS+=("$NODE_PID") CN_TOKEN=$TOKEN
NODE_MQTT_PORT=$DE_MQTT NODE_API_PORT=$DE_API node_start de DE de-frankfurt-1 \
	"topology $WORK/topology"$'\n'"audit_checkpoint_seconds 1" || exit 1
PIDS+=("$NODE_PID") DE_TOKEN=$TOKEN

# as_auditor SITE PATH: GET PATH from the site's API (cn, de) as its auditor.
as_auditor() {
	local api_var=$(echo "$1" | tr a-z A-Z)_API
	curl -sf -H "Authorization: Bearer $(cat "$WORK/$1.auditor")" "http://127.0.0.1:${!api_var}$2"
}
# An auditor at each site holds the site's key, read on the site's host
# (not from the node's API), and keeps the first checkpoint the site hands
# out, to check at the end that the log only grew from it.
for site in cn de; do
	"$DOMICILE" audit key --file "$WORK/$site/audit.key" \
		--name "domicile-$(awk '$1 == "site" {print $2}' "$WORK/$site.conf")" >"$WORK/$site.site.key" ||
		{ echo "no audit key at $site" >&2; exit 1; }
	"$DOMICILE" principals add "auditor-$site" --role auditor -c "$WORK/$site.conf" \
		>"$WORK/$site.auditor" 2>/dev/null || { echo "no auditor at $site" >&2; exit 1; }
	# The first checkpoint that covers the auditor's own creation (the
	# one signed at start covers nothing yet).
	for _ in $(seq 1 100); do
		as_auditor "$site" /v1/audit/checkpoint >"$WORK/$site.first.ckpt" &&
			[ "$(sed -n 2p "$WORK/$site.first.ckpt")" -ge 3 ] && break
		sleep 0.1
	done
	[ "$(sed -n 2p "$WORK/$site.first.ckpt")" -ge 3 ] || { echo "no checkpoint from $site" >&2; exit 1; }
done

# fleet HOME PREFIX COUNT: registers COUNT cars at their home site.
fleet() {
	local api_var=${1}_API token_var=${1}_TOKEN
	API_PORT=${!api_var} TOKEN=${!token_var} register_fleet "$1" "$2" "$3" "$WORK/$1.all" ||
		{ echo "registering the $1 fleet failed" >&2; exit 1; }
}
bold "== Registering cars at their home sites: 6 sold in China, 4 in Germany"
fleet CN LSVAU218 6
fleet DE WVWZZZ1J 4
SHANGHAI="31.23 121.47" FRANKFURT="50.11 8.68"
# Each car: where it drives, and which endpoint it was configured with.
#   CN 1-2 at home; CN 3-4 roaming in Germany (still send to CN);
#   CN 5-6 configured with the DE endpoint (sent home by DE).
#   DE 1 at home; DE 2 roaming in China; DE 3-4 configured with CN's endpoint.
split_fleet() { # HOME FILE-OF-LINES LINES POSITION
	sed -n "$3p" "$WORK/$1.all" | sed "s/\$/ $4 home=$1/" >>"$WORK/$2"
}
split_fleet CN cn-home 1,2 "$SHANGHAI"
split_fleet CN cn-home 3,4 "$FRANKFURT"
split_fleet CN cn-misdirected 5,6 "$SHANGHAI"
split_fleet DE de-home 1 "$FRANKFURT"
split_fleet DE de-home 2 "$SHANGHAI"
split_fleet DE de-misdirected 3,4 "$FRANKFURT"
printf '   %-17s %-4s %-10s %s\n' VIN HOME "DRIVES IN" "FIRST CONNECTS TO"
for f in cn-home cn-misdirected de-home de-misdirected; do
	while read -r vin _ lat _ home; do
		where=$([ "${lat%%.*}" = 31 ] && echo China || echo Germany)
		case $f in
		cn-home | de-home) to=${home#home=} ;;
		cn-misdirected) to="DE (wrong)" ;;
		de-misdirected) to="CN (wrong)" ;;
		esac
		printf '   %-17s %-4s %-10s %s\n' "$vin" "${home#home=}" "$where" "$to"
	done <"$WORK/$f"
done

bold "== Driving for $SECONDS_TO_DRIVE s (5 samples per signal per second, QoS 1 batches of 50)"
drive() { # FLEET BROKER-PORT
	"$DOMICILE" agent --broker "127.0.0.1:$2" --fleet "$WORK/$1" --topology "$WORK/topology" \
		--rate 5 --batch 50 --duration "$SECONDS_TO_DRIVE" --format protobuf --summary-json \
		>"$WORK/$1.json" 2>"$WORK/$1.agent.log" &
	AGENTS+=($!)
}
AGENTS=()
drive cn-home "$CN_MQTT"
drive cn-misdirected "$DE_MQTT"
drive de-home "$DE_MQTT"
drive de-misdirected "$CN_MQTT"
PIDS+=("${AGENTS[@]}")

metric() { # PORT TOKEN NAME
	curl -sf -H "Authorization: Bearer $2" "http://127.0.0.1:$1/metrics" |
		awk -v m="$3" '$1 == m {print $2}'
}
progress() {
	for site in CN DE; do
		api_var=${site}_API token_var=${site}_TOKEN
		printf '   %s  vehicles connected %3s   samples stored %7s   sent home %2s   refused %2s\n' \
			"$site" "$(metric "${!api_var}" "${!token_var}" domicile_mqtt_connections_open)" \
			"$(metric "${!api_var}" "${!token_var}" domicile_samples_accepted_total)" \
			"$(metric "${!api_var}" "${!token_var}" 'domicile_connections_refused_total{reason="redirected_home"}')" \
			"$(metric "${!api_var}" "${!token_var}" 'domicile_connections_refused_total{reason="unknown_vehicle"}')"
	done
}
first=1
while kill -0 "${AGENTS[@]}" 2>/dev/null; do
	if [ -t 1 ]; then
		[ $first = 1 ] || printf '\033[2A'
		progress
		sleep 0.5
	else
		progress
		sleep 5
	fi
	first=0
done
for pid in "${AGENTS[@]}"; do wait "$pid"; done
[ -t 1 ] && printf '\033[2A' && progress

bold "== Residency reports"
report() { # SITE
	local api_var=${1}_API
	"$DOMICILE" residency report --api "127.0.0.1:${!api_var}" \
		--token-file "$WORK/$(echo "$1" | tr A-Z a-z)/admin.token" >"$WORK/$1.report.txt"
	"$DOMICILE" residency report --api "127.0.0.1:${!api_var}" \
		--token-file "$WORK/$(echo "$1" | tr A-Z a-z)/admin.token" --json >"$WORK/$1.report.json"
}
report CN
report DE
paste -d'|' "$WORK/CN.report.txt" "$WORK/DE.report.txt" |
	awk -F'|' '{printf "%-88s %s\n", $1, $2}'

bold "== Accountability: an owner reads, auditors check both audit logs offline"
# The owner of the first CN car reads its latest values; the answer's
# X-Request-Id names the audit entry of that read.
OWNED_VIN=$(awk 'NR == 1 {print $1}' "$WORK/CN.all")
"$DOMICILE" principals add li --role owner --vin "$OWNED_VIN" -c "$WORK/cn.conf" \
	>"$WORK/cn.owner" 2>/dev/null || { echo "no owner at cn" >&2; exit 1; }
OWNER_REQUEST=$(curl -sf -D - -o /dev/null -H "Authorization: Bearer $(cat "$WORK/cn.owner")" \
	"http://127.0.0.1:$CN_API/v1/vehicles/$OWNED_VIN/latest" | tr -d '\r' |
	awk -F': ' 'tolower($1) == "x-request-id" {print $2}')
echo "   owner li read the latest values of $OWNED_VIN (request $OWNER_REQUEST)"
# audit_export SITE: waits until the site's log is still and signed, then
# exports it as its auditor would (domicile audit fetch) into $WORK/SITE.export
# and checks it offline against the checkpoint kept at the start.
audit_export() {
	local site=$1 size before=-1 api_var
	api_var=$(echo "$site" | tr a-z A-Z)_API
	for _ in $(seq 1 50); do
		size=$(as_auditor "$site" /v1/audit/checkpoint | sed -n 2p)
		[ "$size" = "$before" ] && break
		before=$size
		sleep 1.2
	done
	"$DOMICILE" audit fetch --api "http://127.0.0.1:${!api_var}" --token-file "$WORK/$site.auditor" \
		--key-file "$WORK/$site.site.key" --out "$WORK/$site.export" >/dev/null || return 1
	jq -r '.entries[]' "$WORK/$site.export/entries.json" | while read -r e; do base64 -d <<<"$e"; echo; done \
		>"$WORK/$site.entries.txt"
	"$DOMICILE" audit verify --key-file "$WORK/$site.site.key" --checkpoint "$WORK/$site.export/checkpoint" \
		--trusted "$WORK/$site.first.ckpt" "$WORK/$site.export/entries.json" >"$WORK/$site.verify" 2>&1
	echo $? >"$WORK/$site.verify.status"
}
audit_export cn
audit_export de
for site in cn de; do
	printf '   %s: %s entries; first checkpoint kept: %s entries; audit verify: %s\n' \
		"$(echo $site | tr a-z A-Z)" "$(sed -n 2p "$WORK/$site.export/checkpoint")" \
		"$(sed -n 2p "$WORK/$site.first.ckpt")" "$(head -1 "$WORK/$site.verify" | sed 's/;.*//')"
	jq -r '"\(.action) \(.outcome)"' "$WORK/$site.entries.txt" | sort | uniq -c | sort -rn |
		awk '{printf "      %5d  %-22s %s\n", $1, $2, $3}'
done

bold "== Checking the promises"
failed=0
check() { # DESCRIPTION CONDITION...
	local what=$1
	shift
	if "$@"; then echo "   ok    $what"; else echo "   FAIL  $what"; failed=1; fi
}
json() { jq -r "$2" "$WORK/$1"; }
sum_acked() { echo $(($(json "$1.json" .samples_acked) + $(json "$2.json" .samples_acked))); }
stored() { json "$1.report.json" '.stored.samples + .stored.samples_in_memory'; }
only_home() { [ "$(json "$1.report.json" '.vehicles_by_home | keys | join(",")')" = "$1" ]; }
equal() { [ "$1" = "$2" ]; }
no_vin_of() { # FLEET-FILE DIR LOG: none of the fleet's VINs in any file there
	! grep -rqa -F -f <(awk '{print $1}' "$WORK/$1") "$WORK/$2" "$WORK/$3"
}
check "CN self-check: every vehicle in the CN store has its home in CN" \
	equal "$(json CN.report.json .self_check.passed)" true
check "DE self-check: every vehicle in the DE store has its home in DE" \
	equal "$(json DE.report.json .self_check.passed)" true
check "the CN store holds only CN cars" only_home CN
check "the DE store holds only DE cars" only_home DE
check "every batch sent was acknowledged (no refusals)" equal \
	"$(jq -s 'map(.batches_sent - .batches_acked + .batches_refused) | add' "$WORK"/*-home.json "$WORK"/*-misdirected.json)" 0
check "every sample of a CN car was stored once, in CN ($(sum_acked cn-home cn-misdirected))" \
	equal "$(stored CN)" "$(sum_acked cn-home cn-misdirected)"
check "every sample of a DE car was stored once, in DE ($(sum_acked de-home de-misdirected))" \
	equal "$(stored DE)" "$(sum_acked de-home de-misdirected)"
check "DE sent the 2 misdirected CN cars home, and they followed" equal \
	"$(json DE.report.json .foreign_connections.redirected) $(json cn-misdirected.json .redirects_followed)" "2 2"
check "CN sent the 2 misdirected DE cars home, and they followed" equal \
	"$(json CN.report.json .foreign_connections.redirected) $(json de-misdirected.json .redirects_followed)" "2 2"
check "no CN VIN in any file of the DE node, nor in its log" no_vin_of CN.all de de.log
check "no DE VIN in any file of the CN node, nor in its log" no_vin_of DE.all cn cn.log
check "the CN audit log verifies offline and extends the checkpoint its auditor kept" \
	equal "$(cat "$WORK/cn.verify.status")" 0
check "the DE audit log verifies offline and extends the checkpoint its auditor kept" \
	equal "$(cat "$WORK/de.verify.status")" 0
check "the owner's read is in the CN audit log under its request id" equal \
	"$(jq -r --arg r "$OWNER_REQUEST" 'select(.request == $r) | "\(.action) \(.object) \(.who.name)"' "$WORK/cn.entries.txt")" \
	"vehicle.latest $OWNED_VIN li"
# Each redirect is an entry naming a pseudonym, or (past the burst of a
# window) counted in an audit.suppressed entry.
check "DE's audit log accounts for every redirect its report counts, by pseudonym only" equal \
	"$(jq -s '([.[] | select(.action == "mqtt.connect" and .outcome == "redirected" and (.who.name | startswith("vh-")))] | length)
		+ ([.[] | select(.action == "audit.suppressed" and .object == "mqtt.connect/redirected_home") | .params.count] | add // 0)' "$WORK/de.entries.txt")" \
	"$(json DE.report.json .foreign_connections.redirected)"
echo
if [ $failed = 0 ]; then
	bold "All promises held. Stopping both nodes and removing $WORK."
else
	bold "Some promise did not hold (see FAIL above)."
fi
exit $failed
