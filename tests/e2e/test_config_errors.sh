#!/bin/bash
# A bad config stops the node with FILE:LINE: what is wrong.
. "$(dirname "$0")/lib.sh"
expect_config_error() {
	local want=$1 conf="$WORK/bad.conf"
	cat >"$conf"
	out=$("$DOMICILE" node -c "$conf" 2>&1) && fail "node started with a bad config ($want)"
	echo "$out" | grep -qF "$want" || fail "expected '$want' in: $out"
}
expect_config_error "$WORK/bad.conf:3: unknown key 'mqtt_lisen'" <<CONF
jurisdiction CN
site cn-test-1
mqtt_lisen 127.0.0.1:1883
CONF
expect_config_error "$WORK/bad.conf:1:" <<CONF
jurisdiction china
CONF
expect_config_error "data_dir" <<CONF
jurisdiction CN
site cn-test-1
mqtt_listen 127.0.0.1:0
api_listen 127.0.0.1:0
CONF
expect_config_error "$WORK/bad.conf:2:" <<CONF
jurisdiction CN
mqtt_max_packet 12
CONF
out=$("$DOMICILE" node -c "$WORK/missing.conf" 2>&1) && fail "started without a config file"
echo "$out" | grep -q "missing.conf" || fail "missing file not named: $out"
pass
