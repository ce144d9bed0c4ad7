#!/bin/sh
# test.sh: install what is missing, build, and run every test: unit tests
# (criterion), black-box tests against the real binaries on loopback, and
# the lint step; then the unit tests again under ASan+UBSan.
# Long soaks and benchmarks are separate (bench/).
set -eu
cd "$(dirname "$0")/.."
scripts/setup-deps.sh test
start=$(date +%s)

echo "== build (RelWithDebInfo, -Werror)"
scripts/build.sh build
echo "== tests"
(cd build && ctest --output-on-failure -j2 --timeout 600)

echo "== build (ASan+UBSan)"
BUILD_TYPE=Debug scripts/build.sh build-asan -DPAYHOOK_SANITIZE=ON
echo "== unit tests under ASan+UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j2 -L unit)

echo "== all tests passed in $(( $(date +%s) - start ))s"
