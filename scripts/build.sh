#!/bin/sh
# build.sh [DIR] [cmake options...]: configure and build payhook into DIR
# (default ./build). Used by demo.sh, test.sh and the benchmarks.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build}
[ $# -gt 0 ] && shift
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
