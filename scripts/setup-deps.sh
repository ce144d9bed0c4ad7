#!/bin/sh
# setup-deps.sh [build|test|bench|all]: install the Debian 12 packages payhook
# needs for that job, only when missing. Needs root (or sudo) only if
# something is missing. Safe to run again and again.
set -eu
job=${1:-build}

build="build-essential cmake pkg-config libevent-dev libssl-dev libcjson-dev
libzmq3-dev libsqlite3-dev"
test="$build libcriterion-dev python3 python3-zmq python3-jsonschema openssl
sqlite3 valgrind clang libclang-rt-14-dev prometheus python3-yaml nginx-light"
bench="$build wrk nginx-light webhook python3"
case "$job" in
build|demo) want=$build ;;
test) want=$test ;;
bench) want=$bench ;;
all) want="$test $bench" ;;
*) echo "usage: $0 build|test|bench|all" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "payhook: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1; then
	sudo="sudo"
else
	echo "payhook: need root (or sudo) to install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
