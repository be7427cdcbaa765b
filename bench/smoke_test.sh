#!/usr/bin/env bash
# ctest bench.smoke (label once): bench/run on a tiny workload with the
# binaries of the build under test, so that the benchmark keeps compiling
# and working. Its timings mean nothing. Skips (77) without PyTorch.
set -uo pipefail
out=$(bash "$FV_SOURCE_DIR/bench/run" --smoke --bin-dir "$FV_BINARY_DIR" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 77 ] && { echo "SKIP: PyTorch (python3-torch for /usr/bin/python3) is not installed"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: bench/run --smoke exited $rc"; exit 1; }
for p in ae8 dae128; do
	grep -Eq "^preset=$p train_ratio=[0-9]+\.[0-9] score_ratio=[0-9]+\.[0-9] rss_mb=[0-9]+\.[0-9]{2}$" <<<"$out" ||
		{ echo "FAIL: no result line for $p"; exit 1; }
	grep -Eq "^$p +\| [0-9-]+ +\| [0-9]+ " <<<"$out" || { echo "FAIL: no table row for $p"; exit 1; }
done
grep -q "BLAS mapped: .*openblas" <<<"$out" || { echo "FAIL: torch does not use OpenBLAS"; exit 1; }
echo "ok"
