#!/usr/bin/env bash
# A time-boxed libFuzzer run of one target (ctest label fuzzrun, in a build
# configured with -DFV_LIBFUZZER=ON -DFV_SANITIZE=ON, compiler clang):
#
#   fuzzrun.sh TARGET_BINARY CORPUS_DIR
#
# The committed corpus is copied to a scratch directory first, so new
# inputs libFuzzer finds never land in the checkout; a crash, leak, UBSan
# report or timeout leaves its input in $FV_BINARY_DIR/fuzz-artifacts/<target>/
# and fails the test (commit such an input to CORPUS_DIR once fixed).
# FV_FUZZ_SECONDS (default 20) is the run's length.
set -euo pipefail
bin=$1
corpus=$2
secs=${FV_FUZZ_SECONDS:-20}
name=$(basename "$bin")
out=${FV_BINARY_DIR:-$(dirname "$bin")}/fuzz-artifacts/$name
work=$(mktemp -d "${TMPDIR:-/tmp}/fedvigil-fuzz.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$out" "$work/corpus"
cp -- "$corpus"/* "$work/corpus/"
n0=$(ls "$work/corpus" | wc -l)
rc=0
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$out/" "$work/corpus" >"$work/log" 2>&1 || rc=$?
n1=$(ls "$work/corpus" | wc -l)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
if [ "$rc" -ne 0 ]; then
	tail -60 "$work/log"
	echo "FAIL: $name: libFuzzer exited $rc after ${execs:-?} runs; input in $out/" >&2
	exit 1
fi
echo "$name: ${execs:-?} runs in ${secs}s, corpus $n0 -> $n1 inputs, no finding"
