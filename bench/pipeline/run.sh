#!/bin/sh
# bench/pipeline/run.sh: the pipeline benchmark of issue 4. Signed webhooks
# in at 1k/s, each cross-checked against payhook-sim on loopback with the
# simulator answering at 0 ms and at 50 ms; events/s and webhook -> verdict
# latency from the journal. Writes the "## pipeline" section of
# bench/RESULTS.md. Loopback only, free ports, every process is stopped.
#
# usage: bench/pipeline/run.sh [--rate N] [--duration S] [--pool N]
#                              [--big-pool N] [--out FILE]
# environment: BUILD_DIR (default build-pipeline), PAYHOOK_BIN and
# PAYHOOK_SIM_BIN (use these binaries instead of building)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$src/build-pipeline}
out=$src/bench/RESULTS.md

if [ -z "${PAYHOOK_BIN:-}" ] || [ -z "${PAYHOOK_SIM_BIN:-}" ]; then
	cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DPAYHOOK_TESTS=OFF >/dev/null
	cmake --build "$build" -j2 --target payhook payhook-sim >/dev/null
fi
PAYHOOK_BIN=${PAYHOOK_BIN:-$build/payhook}
PAYHOOK_SIM_BIN=${PAYHOOK_SIM_BIN:-$build/sim/payhook-sim}

exec python3 -B "$here/bench.py" --payhook-bin "$PAYHOOK_BIN" \
    --sim-bin "$PAYHOOK_SIM_BIN" --out "$out" "$@"
