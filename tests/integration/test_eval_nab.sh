#!/usr/bin/env bash
# fedvigil-eval on NAB's machine_temperature_system_failure.csv through the
# shipped manifest (tools/eval/manifests/nab-machine-temperature.ini): a
# timestamp column, a header, labels from NAB's combined_windows.json, one
# file split by row percentages. The data lives in ../shared/data/nab beside
# the checkout (the manifest's relative root finds it there; $FV_DATA_DIR
# points elsewhere) and is never copied into the repository. Checks the
# report against counts taken from the files themselves (22,695 rows, the
# first 15 % = 3,404 train; 1,701 of the 19,291 test rows fall in NAB's
# windows; one row is stamped before its predecessor) and that detection
# beats flagging everything. Quality floors of the detector are test_asd.sh's.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
data="${FV_DATA_DIR:-$FV_SOURCE_DIR/../shared/data}/nab"
[ -f "$data/realKnownCause/machine_temperature_system_failure.csv" ] ||
	fv_skip "NAB dataset not found at $data (it lives in ../shared/data beside the checkout; FV_DATA_DIR overrides); skipping"
command -v jq >/dev/null || fv_skip "jq is not installed (scripts/deps installs it)"
fv_tmpdir
root=()
[ -n "${FV_DATA_DIR:-}" ] && root=(--root "$data")
"$FV_BINARY_DIR/fedvigil-eval" "$FV_SOURCE_DIR/tools/eval/manifests/nab-machine-temperature.ini" \
	"${root[@]}" --mode local --out "$FV_TMP/out" --plots svg -q > "$FV_TMP/stdout" 2> "$FV_TMP/stderr" ||
	{ cat "$FV_TMP/stderr"; fv_fail "fedvigil-eval failed"; }
cat "$FV_TMP/stdout"
grep -q "machine-temperature: 1 rows stamped earlier than the row before them" "$FV_TMP/stderr" ||
	{ cat "$FV_TMP/stderr"; fv_fail "no warning about the row stamped out of order"; }
r=$FV_TMP/out/report.json
jq -e '.dataset.train_rows == 3404 and .dataset.test_rows == 19291 and .dataset.channels == 1
       and .pooled.points == 19291 and .pooled.anomalies == 1701
       and (.per_entity | keys) == ["machine-temperature"]' "$r" > /dev/null ||
	fv_fail "report does not match the data: $(jq -c '{dataset, pooled: .pooled | {points, anomalies}}' "$r")"
jq -e '.pooled.f1 > .pooled.baselines.flag_everything.f1 + 0.1 and .pooled.fpr < 0.05
       and .pooled.roc_auc > 0.7' "$r" > /dev/null ||
	fv_fail "no better than flagging everything: $(jq -c '.pooled | {f1, fpr, roc_auc, flag: .baselines.flag_everything.f1}' "$r")"
for p in loss roc score-machine-temperature; do
	grep -q '<svg' "$FV_TMP/out/$p.svg" || fv_fail "$p.svg is not an SVG"
done
[ "$(wc -l < "$FV_TMP/out/points.csv")" -eq 19292 ] || fv_fail "points.csv: $(wc -l < "$FV_TMP/out/points.csv") lines"
echo PASS
