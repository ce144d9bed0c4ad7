#!/bin/sh
# bench/soak/run.sh: the soak of issue 7. One million signed webhooks at a
# steady ~2,500-3,000/s through the whole pipeline (wrk -> payhook serve,
# durability full, cross-checked against payhook-sim at 0 ms -> ZeroMQ ->
# payhook tail), RSS sampled every second; checks no error, every event
# accounted for and no RSS growth after warm-up; writes bench/soak/soak.png
# and the "## soak" section of bench/RESULTS.md. About 6-7 minutes.
# Loopback only, free ports, every process started is stopped, the load
# ends by itself (a reply count per wrk thread, -d as a bound).
#
# usage: bench/soak/run.sh [--webhooks N] [--connections N] [--delay-ms MS]
#                          [--payments N] [--warmup S] [--out FILE] [--keep]
# environment: BUILD_DIR (default build-soak), PAYHOOK_BIN and
# PAYHOOK_SIM_BIN (use these binaries instead of building)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$src/build-soak}

need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "soak: missing:$need (install them, or run as root)" >&2
		exit 2
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi

if [ -z "${PAYHOOK_BIN:-}" ] || [ -z "${PAYHOOK_SIM_BIN:-}" ]; then
	cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$build" -j2 --target payhook payhook-sim >/dev/null
fi
PAYHOOK_BIN=${PAYHOOK_BIN:-$build/payhook}
PAYHOOK_SIM_BIN=${PAYHOOK_SIM_BIN:-$build/sim/payhook-sim}

exec /usr/bin/python3 -B "$here/soak.py" --payhook "$PAYHOOK_BIN" \
    --sim "$PAYHOOK_SIM_BIN" "$@"
