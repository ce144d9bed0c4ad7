#!/bin/sh
# test.sh: install what is missing, build, and run every test: unit tests
# (criterion), black-box tests against the real binaries on loopback, and
# the lint step; then
#   - the whole suite again against the ASan+UBSan build (any sanitizer
#     report fails: the service's stderr is scanned by tests/blackbox/phtest.py
#     and the unit tests abort),
#   - the integration tests that start payhook serve under valgrind memcheck
#     (zero errors, no definite leaks: PAYHOOK_VALGRIND=1, see phtest.py),
#   - a short libFuzzer pass over every target (scripts/fuzz.sh).
# Long soaks, benchmarks and long fuzz runs are separate (bench/,
# scripts/fuzz.sh 600). Env: PAYHOOK_FUZZ_SECONDS (20 per target),
# PAYHOOK_TEST_QUICK=1 skips the ASan, valgrind and fuzz passes.
set -eu
cd "$(dirname "$0")/.."
scripts/setup-deps.sh test
start=$(date +%s)
lap=$start
times=""
step() {	# step NAME: record the time since the previous step
	now=$(date +%s)
	times="$times $1=$((now - lap))s"
	lap=$now
}

echo "== build (RelWithDebInfo, -Werror)"
scripts/build.sh build
echo "== tests"
(cd build && ctest --output-on-failure -j2 --timeout 600)
step tests

if [ "${PAYHOOK_TEST_QUICK:-0}" = 1 ]; then
	echo "== all tests passed in $(( $(date +%s) - start ))s (quick:$times)"
	exit 0
fi

echo "== build (ASan+UBSan)"
BUILD_TYPE=Debug scripts/build.sh build-asan -DPAYHOOK_SANITIZE=ON
echo "== all tests under ASan+UBSan"
# abort_on_error: a report kills the process, so it cannot go unnoticed;
# phtest.py also fails a black-box test whose service printed a report
# (leaks are only reported at exit, after the test looked at everything).
(cd build-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure -j2 --timeout 900)
step asan

echo "== integration tests under valgrind memcheck"
# Ingest contract, dispatch feed and replay, cross-check verdicts, and the
# harness self-test; each payhook serve runs as valgrind --error-exitcode=99
# --leak-check=full --errors-for-leak-kinds=definite.
(cd build &&
    PAYHOOK_VALGRIND=1 ctest --output-on-failure -j2 --timeout 1500 -R \
    'blackbox_test_(ingest_contract|dispatch_feed|dispatch_replay|crosscheck_verdicts|harness_reports)$')
step valgrind

echo "== short fuzz pass (clang libFuzzer, ASan+UBSan)"
scripts/fuzz.sh "${PAYHOOK_FUZZ_SECONDS:-20}"
step fuzz

echo "== all tests passed in $(( $(date +%s) - start ))s ($times )"
