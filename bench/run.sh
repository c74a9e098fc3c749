#!/bin/bash
# make bench: the component benchmarks (bench/*.c), then the node end to end
# on loopback: ingest throughput and PUBACK latency with N simulated vehicles
# for protobuf and JSON batches, PUBACK latency at half the protobuf rate,
# bytes stored per sample after a flush, what an audit entry adds to an API
# call, and the node's resident memory with many idle connected vehicles.
# Prints a table; never fails the build on a missed target (it fails only if
# something does not run).
set -euo pipefail
: "${DOMICILE:?}" "${BENCH_DIR:?}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/domicile-bench.XXXXXX")
NODE_PID=
cleanup() {
	[ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
. "$(dirname "$0")/../scripts/lib-node.sh"

VEHICLES=${BENCH_VEHICLES:-1000}
IDLE=${BENCH_IDLE:-10000}
SECS=${BENCH_SECONDS:-10}
BATCH=${BENCH_BATCH:-100}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo
echo "== components"
for b in "$BENCH_DIR"/bench_*; do
	[ -x "$b" ] || continue
	echo "-- $(basename "$b")"
	"$b"
done

rows=()
row() { rows+=("$(printf '%-44s %16s   %s' "$1" "$2" "$3")"); }

node_stop() { kill "$NODE_PID" && wait "$NODE_PID" 2>/dev/null; NODE_PID=; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$NODE_PID/status"; }
metric() {
	curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/metrics" |
		awk -v m="$1" '$1 == m {print $2}'
}

# flood FORMAT: every vehicle publishes as fast as its in-flight window allows.
flood() {
	"$DOMICILE" agent --broker "127.0.0.1:$MQTT_PORT" --fleet "$WORK/fleet.txt" --flood \
		--format "$1" --batch "$BATCH" --duration "$SECS" --summary-json >"$WORK/$1.json"
	jq -r '"\(.samples_per_s) \(.puback_p50_ms) \(.puback_p99_ms) \(.batches_refused)"' "$WORK/$1.json"
}

echo
echo "== node ingest: $VEHICLES vehicles, batches of $BATCH samples, fsync before every PUBACK"
node_start ingest CN cn-bench-1 "flush_interval_ms 2000"
register_fleet CN LSVAU218 "$VEHICLES" "$WORK/fleet.txt"
for format in protobuf json; do
	read -r rate p50 p99 refused < <(flood "$format")
	row "ingest, $format (samples/s)" "$(printf '%.0f' "$rate")" "target ≥ $([ $format = protobuf ] && echo 1,000,000 || echo 300,000)"
	row "  PUBACK p50 / p99 at full load (ms)" "$p50 / $p99" "refused: $refused"
	[ "$format" = protobuf ] && proto_rate=$rate
done

# Half the protobuf rate, paced: samples/s per vehicle = rate × signals per tick.
# Latency is reported as the agent saw it (it shares the two cores and adds
# its own delay) and as the node measured it (arrival to PUBACK written).
scrape() {
	curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/metrics" |
		grep '^domicile_puback_latency_seconds_bucket' >"$1"
}
# p99 of the node's histogram between two scrapes, interpolated in a bucket.
node_p99_ms() {
	paste -d' ' "$1" "$2" | awk '{
		match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
		n++; bound[n] = le; count[n] = $4 - $2 }
	END {
		total = count[n]; want = 0.99 * total; lo = 0; prev = 0
		if (total == 0) { printf "n/a"; exit }
		for (i = 1; i <= n; i++) {
			if (count[i] >= want) {
				if (bound[i] == "+Inf") { printf ">%.0f", lo * 1000; exit }
				f = count[i] > prev ? (want - prev) / (count[i] - prev) : 1
				printf "%.1f (of %d)", (lo + (bound[i] - lo) * f) * 1000, total; exit
			}
			lo = bound[i]; prev = count[i]
		}
	}'
}
per_vehicle=$(awk -v r="$proto_rate" -v n="$VEHICLES" 'BEGIN {printf "%.2f", r / 2 / n / 9}')
scrape "$WORK/before"
"$DOMICILE" agent --broker "127.0.0.1:$MQTT_PORT" --fleet "$WORK/fleet.txt" --rate "$per_vehicle" \
	--format protobuf --batch "$BATCH" --duration "$SECS" --summary-json >"$WORK/half.json"
scrape "$WORK/after"
row "PUBACK p99 at half the protobuf rate (ms)" \
	"$(node_p99_ms "$WORK/before" "$WORK/after") node" \
	"target < 20; agent saw p50 $(jq -r .puback_p50_ms "$WORK/half.json"), p99 $(jq -r .puback_p99_ms "$WORK/half.json") at $(jq -r '.samples_per_s | floor' "$WORK/half.json") samples/s"

# Bytes per sample: wait for the flush that follows the load.
sleep 3
blocks=$(metric domicile_store_block_bytes)
samples=$(metric domicile_store_samples)
row "bytes stored per sample (blocks)" "$(awk -v b="$blocks" -v s="$samples" 'BEGIN {printf "%.2f", s ? b / s : 0}')" "target ≤ 2 ($samples samples)"

# The audit log's cost per API call: the same kind of call (authorized,
# a small JSON answer) with and without an audit entry, one connection
# each, API_CALLS calls in a row; the difference is the durable append.
API_CALLS=${BENCH_API_CALLS:-300}
# mean_call PATH [METHOD]: the mean time of API_CALLS sequential calls
# (GET by default), in ms.
mean_call() {
	local cfg="$WORK/calls.curl" i
	: >"$cfg"
	for i in $(seq 1 "$API_CALLS"); do
		[ "$i" -gt 1 ] && echo "next" >>"$cfg"
		printf 'url = "http://127.0.0.1:%s%s"\nrequest = "%s"\nheader = "Authorization: Bearer %s"\noutput = /dev/null\nwrite-out = "%%{time_total}\\n"\n' \
			"$API_PORT" "$1" "${2:-GET}" "$TOKEN" >>"$cfg"
	done
	curl -sS -K "$cfg" | awk '{ t += $1 } END { printf "%.3f", NR ? 1000 * t / NR : 0 }'
}
first_vin=$(head -1 "$WORK/fleet.txt" | cut -d' ' -f1)
audited_ms=$(mean_call "/v1/vehicles/$first_vin")
plain_ms=$(mean_call "/v1/routes")
row "audit append per API call (ms)" \
	"$(awk -v a="$audited_ms" -v p="$plain_ms" 'BEGIN {printf "%.3f", a - p}')" \
	"GET a vehicle (audited) $audited_ms ms, GET /v1/routes (not) $plain_ms ms, $API_CALLS each"
# A call that changes something is recorded twice (started, then its
# outcome): DELETE of a principal that does not exist changes nothing, but
# is recorded the same way.
changing_ms=$(mean_call /v1/principals/nobody DELETE)
row "audit appends per changing call (ms)" \
	"$(awk -v a="$changing_ms" -v p="$plain_ms" 'BEGIN {printf "%.3f", a - p}')" \
	"DELETE a principal (started + outcome) $changing_ms ms, $API_CALLS calls"
node_stop

# The same protobuf flood into a node that keeps samples in clear: what
# sealing log records and blocks (per-vehicle AES-256-GCM) costs.
echo "== the same, store_encryption off (for comparison only)"
node_start clear CN cn-bench-3 "flush_interval_ms 2000
store_encryption off"
register_fleet CN LSVAU218 "$VEHICLES" "$WORK/fleet.txt"
read -r clear_rate _ < <(flood protobuf)
row "ingest, protobuf, store in clear (samples/s)" "$(printf '%.0f' "$clear_rate")" \
	"sealed above: $(awk -v s="$proto_rate" -v c="$clear_rate" 'BEGIN {printf "%.1f%% of clear", c ? 100 * s / c : 0}')"
node_stop

echo "== idle connections: $IDLE vehicles connected, nothing sent"
node_start idle CN cn-bench-2
register_fleet CN LFV3A28K "$IDLE" "$WORK/idle.txt"
rss_before=$(rss_mib)
# libmosquitto needs three descriptors per client: several agents, so that
# none runs out of them.
split -l 3000 "$WORK/idle.txt" "$WORK/idle-part-"
agents=()
for part in "$WORK"/idle-part-*; do
	"$DOMICILE" agent --broker "127.0.0.1:$MQTT_PORT" --fleet "$part" --idle \
		--duration "$((SECS + 60))" >/dev/null 2>>"$WORK/idle-agents.log" &
	agents+=($!)
done
open=0
for _ in $(seq 1 600); do
	open=$(metric domicile_mqtt_connections_open || echo 0)
	[ "${open:-0}" -ge "$IDLE" ] && break
	sleep 0.1
done
row "resident memory, $open idle vehicles (MiB)" "$(rss_mib)" "target < 256 (empty node: $rss_before)"
kill "${agents[@]}" 2>/dev/null; wait "${agents[@]}" 2>/dev/null || true
node_stop

echo
printf '%-44s %16s   %s\n' "benchmark ($(nproc) cores)" "result" "note"
printf '%s\n' "${rows[@]}"
