#!/bin/bash
# Bad input on the MQTT port: garbage bytes and a truncated packet close the
# connection, and the node goes on serving others. Wrong credentials and a
# foreign topic are refused.
. "$(dirname "$0")/lib.sh"
write_config cn
start_node cn
register "$VIN1"

# send_raw BYTES: writes the bytes (printf escapes) to a new connection and
# succeeds when the server ends it within 10 s, by EOF or by a reset (which
# is what closing with unread input sends); fails on a time-out.
send_raw() {
	timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT; printf '$1' >&3; cat <&3 >/dev/null" 2>/dev/null
	[ $? -ne 124 ]
}
# Not MQTT at all.
send_raw 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' || fail "garbage did not close the connection"
# A CONNECT packet that ends inside its protocol name (length 4, name "MQTT"
# cut after "MQ").
send_raw '\x10\x04\x00\x04MQ' || fail "truncated CONNECT did not close the connection"
# A remaining length that never ends (five continuation bytes).
send_raw '\x10\xff\xff\xff\xff\x7f' || fail "overlong length did not close the connection"

kill -0 "$NODE_PID" || fail "the node died"
t=$(now_ms)
publish "$VIN1" "$SECRET" "{\"seq\": 1, \"samples\": [{\"ts\": $t, \"signal\": \"Vehicle.Speed\", \"value\": 33}]}" ||
	fail "a good client after bad ones: $PUB_OUT"

# Wrong secret, and a VIN nobody registered: refused at CONNECT.
publish "$VIN1" "not-the-secret" '{}' 5 && fail "wrong secret accepted"
echo "$PUB_OUT" | grep -qi "bad user name or password" || fail "wrong secret: $PUB_OUT"
publish "$VIN2" "whatever" '{}' 311 && fail "unregistered vehicle accepted"
# Another vehicle's topic.
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -V 5 -q 1 -i "$VIN1" -u "$VIN1" -P "$SECRET" \
	-t "v/$VIN2/telemetry" -m '{"seq":1,"samples":[]}' 2>&1 | grep -qi "not authorized" ||
	fail "publishing to another vehicle's topic was not refused"
[ "$(samples "$VIN1" Vehicle.Speed)" = "[[$t,33.0]]" ] || [ "$(samples "$VIN1" Vehicle.Speed)" = "[[$t,33]]" ] ||
	fail "stored: $(samples "$VIN1" Vehicle.Speed)"
pass
