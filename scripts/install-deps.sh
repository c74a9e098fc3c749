#!/bin/sh
# Installs the Debian 12 packages that domicile's build, tests, demo and
# benchmarks need, when they are missing. Run as root (CI is); prints what it
# installs and does nothing when everything is present.
set -eu
PACKAGES="build-essential pkg-config libevent-dev libssl-dev libjansson-dev
libsqlite3-dev libprotobuf-c-dev protobuf-c-compiler libzstd-dev
libmosquitto-dev mosquitto-clients libcmocka-dev curl sqlite3 clang jq openssl
libp11-kit-dev p11-kit softhsm2"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: these packages are missing and installing them needs root:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
