#!/bin/sh
# bench/ingest/run.sh: the ingest benchmark of issue 2. One run measures,
# with the same wrk load (signed ~1.5 KB webhooks, each with its own id):
# nginx `return 200` (the HTTP ceiling), payhook serve (cross_check off,
# durability full) and adnanh/webhook with a payload-hmac-sha256 rule; then
# writes the "## ingest" section of bench/RESULTS.md. Loopback only, free
# ports, every load ends by itself (wrk -d), every process is stopped.
#
# usage: bench/ingest/run.sh [--duration S] [--connections N] [--threads N]
#                            [--webhooks N] [--profile] [--out FILE]
# environment: BUILD_DIR (default build-bench), PAYHOOK_BIN (skip the build)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$src/build-bench}
out=$src/bench/RESULTS.md

# Tools: wrk, nginx (nginx-light), webhook (adnanh/webhook); perf only for
# --profile. Installed from Debian when missing and we are root.
need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
command -v webhook >/dev/null 2>&1 || need="$need webhook"
case " $* " in
*" --profile "*) command -v perf >/dev/null 2>&1 || need="$need linux-perf" ;;
esac
if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench: missing:$need (install them, or run as root)" >&2
		exit 2
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
# nginx-light's package starts a system nginx on port 80; we never use it.
PATH=$PATH:/usr/sbin
export PATH

if [ -z "${PAYHOOK_BIN:-}" ]; then
	cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$build" --target payhook -j"$(nproc)" >/dev/null
	PAYHOOK_BIN=$build/payhook
fi
cache=$(dirname "$PAYHOOK_BIN")/CMakeCache.txt
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache" 2>/dev/null || true)

exec /usr/bin/python3 -B "$here/bench.py" --payhook "$PAYHOOK_BIN" \
    --build-type "${btype:-unknown}" --out "$out" "$@"
