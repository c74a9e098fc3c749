#!/bin/bash
# Durability: a node killed with SIGKILL right after a PUBACK still has the
# batch after a restart (the log was fsynced before the ack), and a
# retransmission of it after the restart is stored once.
. "$(dirname "$0")/lib.sh"
FLUSH_MS=3600000 # no flush: the batch lives only in the write-ahead log
write_config cn
start_node cn
register "$VIN1"
t=$(now_ms)
batch="{\"seq\": 7, \"samples\": [{\"ts\": $t, \"signal\": \"Vehicle.TraveledDistance\", \"value\": 12345.6},
  {\"ts\": $((t + 1)), \"signal\": \"Vehicle.TraveledDistance\", \"value\": 12345.7}]}"
publish "$VIN1" "$SECRET" "$batch" 5 || fail "publish: $PUB_OUT"
stop_node KILL

start_node cn
[ "$(samples "$VIN1" Vehicle.TraveledDistance)" = "[[$t,12345.6],[$((t + 1)),12345.7]]" ] ||
	fail "after kill -9: $(samples "$VIN1" Vehicle.TraveledDistance)"
publish "$VIN1" "$SECRET" "$batch" 5 || fail "retransmission: $PUB_OUT"
[ "$(samples "$VIN1" Vehicle.TraveledDistance | jq length)" = 2 ] || fail "retransmission stored twice"

# A clean stop (SIGTERM) flushes to blocks; a restart finds the same data.
stop_node TERM
grep -q "node stopped" "$WORK/cn.log" || fail "SIGTERM did not stop the node cleanly"
start_node cn
[ "$(samples "$VIN1" Vehicle.TraveledDistance | jq length)" = 2 ] || fail "after SIGTERM and restart"
pass
