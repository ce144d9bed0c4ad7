#!/bin/sh
# fuzz.sh [SECONDS]: build the libFuzzer targets (tests/fuzz, clang with
# ASan+UBSan) into build-fuzz, replay every committed regression input, then
# fuzz each target for SECONDS (default 20) and fail if any target crashes,
# leaks, times out or runs out of memory. The short run is part of
# scripts/test.sh; a longer one is e.g.:  scripts/fuzz.sh 600
# Env: FUZZ_TARGETS="webhook json ..." to pick targets, FUZZ_BUILD=dir.
# Crashes are saved as build-fuzz/tests/fuzz/artifacts/<target>/crash-*;
# once fixed, copy it to tests/fuzz/regressions/<target>/ to keep it
# replayed forever.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-20}
build=${FUZZ_BUILD:-build-fuzz}
targets=${FUZZ_TARGETS:-"webhook json signature config replay verdict normalise"}

cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPAYHOOK_FUZZ=ON -DPAYHOOK_TESTS=OFF >/dev/null
# Everything, so the whole project is also checked under clang -Werror.
cmake --build "$build" -j"$(nproc)" >/dev/null

dir=$build/tests/fuzz
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
fail=0
summary=""
for t in $targets; do
	bin=$dir/fuzz_$t
	case $t in
	webhook|json|verdict|normalise) dict=tests/fuzz/json.dict ;;
	*) dict=tests/fuzz/$t.dict ;;
	esac
	case $t in
	replay) maxlen=4000 ;;
	config) maxlen=8192 ;;
	*) maxlen=65536 ;;
	esac
	log=$dir/fuzz_$t.log
	mkdir -p "$dir/artifacts/$t" "$dir/corpus/$t"
	# The targets' temp dirs (journal, config files) live here, so a
	# crashed run leaves nothing behind in /tmp.
	TMPDIR=$(pwd)/$dir/tmp
	export TMPDIR
	rm -rf "$TMPDIR"
	mkdir -p "$TMPDIR"

	# 1. Every committed regression input and seed, once.
	regs=""
	for d in tests/fuzz/regressions/$t tests/fuzz/seeds/$t; do
		[ -d "$d" ] && regs="$regs $d"
	done
	if [ -n "$regs" ]; then
		# shellcheck disable=SC2086
		if ! "$bin" -runs=0 -rss_limit_mb=2048 $regs >"$log.replay" 2>&1; then
			echo "fuzz: $t: a regression input fails:" >&2
			tail -40 "$log.replay" >&2
			fail=1
			continue
		fi
	fi

	# 2. Fuzz for $secs seconds from the working corpus.
	if "$bin" "$dir/corpus/$t" -dict="$dict" -max_total_time="$secs" \
	    -rss_limit_mb=2048 -timeout=25 -max_len=$maxlen -print_final_stats=1 \
	    -artifact_prefix="$dir/artifacts/$t/" >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
		echo "fuzz: $t: ok, ${execs:-?} executions in ${secs}s, cov ${cov:-?}"
		summary="$summary $t=${execs:-?}"
	else
		echo "fuzz: $t: FAILED (log $log, inputs in $dir/artifacts/$t/):" >&2
		grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20 >&2
		fail=1
	fi
done
[ $fail -eq 0 ] && echo "fuzz: all targets passed:$summary"
exit $fail
