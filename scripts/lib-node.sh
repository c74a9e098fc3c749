# lib-node.sh — starting a node and registering vehicles, shared by the demo
# and the benchmarks (the end-to-end tests have their own stricter helpers in
# tests/e2e/lib.sh). Source it after setting DOMICILE and WORK.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# pick_ports VAR...: sets each VAR to a distinct loopback port that nothing
# listens on now (for configs that must name their ports in advance, such
# as a topology). Taken below the kernel's ephemeral range, so that no
# client connection can be holding one by the time a node binds it.
pick_ports() {
	local low high port given=" "
	read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
	[ "${low:-0}" -gt 11000 ] || low=32768
	for var in "$@"; do
		while :; do
			port=$((10000 + RANDOM % (low - 10000)))
			case $given in *" $port "*) continue ;; esac
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
			break
		done
		given="$given$port "
		printf -v "$var" '%s' "$port"
	done
}

# node_start NAME JURISDICTION SITE [EXTRA CONFIG LINES]: starts a node with
# data in $WORK/NAME and sets NODE_PID, MQTT_PORT, API_PORT, TOKEN. The
# listeners take free ports unless NODE_MQTT_PORT / NODE_API_PORT say.
node_start() {
	local name=$1 log="$WORK/$1.log"
	mkdir -p "$WORK/$name"
	{
		echo "jurisdiction $2"
		echo "site $3"
		echo "data_dir $WORK/$name"
		echo "mqtt_listen 127.0.0.1:${NODE_MQTT_PORT:-0}"
		echo "api_listen 127.0.0.1:${NODE_API_PORT:-0}"
		echo "catalog $REPO/catalog/signals.catalog"
		[ -n "${4:-}" ] && printf '%s\n' "$4"
	} >"$WORK/$name.conf"
	"$DOMICILE" node -c "$WORK/$name.conf" >"$log" 2>&1 &
	NODE_PID=$!
	local i
	for i in $(seq 1 400); do
		grep -q "ready: mqtt on port" "$log" && break
		kill -0 "$NODE_PID" 2>/dev/null || { cat "$log" >&2; return 1; }
		sleep 0.05
	done
	local line
	line=$(grep "ready: mqtt on port" "$log" | tail -1)
	[ -n "$line" ] || { cat "$log" >&2; return 1; }
	MQTT_PORT=$(echo "$line" | sed -E 's/.*mqtt on port ([0-9]+).*/\1/')
	API_PORT=$(echo "$line" | sed -E 's/.*api on port ([0-9]+).*/\1/')
	TOKEN=$(cat "$WORK/$name/admin.token")
}

# vin_for PREFIX N: a valid 17-character VIN (check digit computed) from an
# 8-character prefix (WMI + attributes) and a serial number.
vin_for() {
	local body="$1X$(printf 'P%07d' "$2")"
	local alphabet="0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
	local values=(0 1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 1 2 3 4 5 7 9 2 3 4 5 6 7 8 9)
	local weights=(8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2)
	local sum=0 i c idx
	for i in $(seq 0 16); do
		c=${body:$i:1}
		idx=${alphabet%%"$c"*}
		sum=$((sum + values[${#idx}] * weights[i]))
	done
	local check=$((sum % 11))
	[ $check -eq 10 ] && check=X
	echo "${body:0:8}$check${body:9:8}"
}

# register_fleet HOME PREFIX COUNT FILE: registers COUNT vehicles through
# one curl process and writes "VIN SECRET" lines to FILE.
register_fleet() {
	local home=$1 prefix=$2 count=$3 file=$4 cfg="$WORK/register.curl" i vin
	: >"$cfg"
	for i in $(seq 1 "$count"); do
		vin=$(vin_for "$prefix" "$i")
		{
			[ "$i" -gt 1 ] && echo "next"
			echo "url = \"http://127.0.0.1:$API_PORT/v1/vehicles\""
			echo "header = \"Authorization: Bearer $TOKEN\""
			echo "data = \"{\\\"vin\\\": \\\"$vin\\\", \\\"home\\\": \\\"$home\\\", \\\"model\\\": \\\"demo\\\"}\""
			echo "write-out = \"\\n\""
		} >>"$cfg"
	done
	curl -sS -K "$cfg" | jq -r 'select(.vin) | "\(.vin) \(.mqtt_secret)"' >"$file"
	[ "$(wc -l <"$file")" -eq "$count" ]
}
