#!/usr/bin/env bash
# fedvigil-eval end to end, in every mode, on a dataset this test makes:
# three machines x four correlated channels (one machine's export uses ';',
# CRLF line ends and a quoted header with spaces, one mixes CRLF and LF, one
# has empty cells), 800 training rows, 400 test rows
# with two labelled faults each that break the correlation. Checks the
# report's fields, that detection beats the flag-everything baseline, that
# verdicts are causal (cutting the test file short changes nothing before
# the cut), the plots, and the usage errors.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
command -v jq >/dev/null || fv_skip "jq is not installed (scripts/deps installs it)"
fv_tmpdir
eval_bin="$FV_BINARY_DIR/fedvigil-eval"
[ -x "$eval_bin" ] || fv_fail "$eval_bin not built"
d=$FV_TMP/data
mkdir -p "$d"

# gen NAME SEED ROWS FAULTS: rows of "c1,c2,c3,c4" (faults: "a-b a-b",
# 0-based rows where c2 and c4 break away from c1 and c3), labels to NAME.lab
gen() {
	awk -v seed="$2" -v rows="$3" -v faults="$4" -v lab="$1.lab" 'BEGIN {
		srand(seed); n = split(faults, f, " ")
		for (i = 0; i < rows; i++) {
			t = i / 15.0; a = sin(t) + 0.1 * (rand() - 0.5); b = cos(t * 0.7) + 0.1 * (rand() - 0.5)
			y = 0
			for (k = 1; k <= n; k++) { split(f[k], r, "-"); if (i >= r[1] && i <= r[2]) y = 1 }
			c2 = y ? -0.8 * a : 0.8 * a; c4 = y ? a - b : a + b
			printf "%.4f,%.4f,%.4f,%.4f\n", a, c2 + 0.05 * (rand() - 0.5), b, c4 + 0.05 * (rand() - 0.5)
			if (lab != ".lab") print y > lab
		}
	}'
}
for m in 1 2 3; do
	gen "" "$m" 800 "" > "$d/m$m-train.csv"
	gen "$d/m$m-test" "$((m + 10))" 400 "$((60 + 40 * m))-$((90 + 40 * m)) 300-330" > "$d/m$m-test.csv"
done
# m3 as a European spreadsheet would write it: header with spaces (two names
# quoted), ';', CRLF.
for part in train test; do
	{ printf '"Motor A";"Motor B";Pump C;Pump D\r\n'; tr ',' ';' < "$d/m3-$part.csv" | sed 's/$/\r/'; } > "$d/m3-$part.tmp"
	mv "$d/m3-$part.tmp" "$d/m3-$part.csv"
done
# m2's test export mixes CRLF and LF line ends; m1's training data has three
# empty cells (missing readings).
sed -i '0~2s/$/\r/' "$d/m2-test.csv"
awk -F, -v OFS=, 'NR == 100 || NR == 200 || NR == 300 { $2 = "" } { print }' "$d/m1-train.csv" > "$d/m1-train.tmp"
mv "$d/m1-train.tmp" "$d/m1-train.csv"
cat > "$FV_TMP/synth.ini" <<EOF
[dataset]
name = synth
root = data
period_ms = 1000
header = no
[set]
model.window = 4
model.hidden = 8,3,8
round.rounds = 3
round.epochs = 2
round.lr = 0.005
threshold.percentile = 99
[entity.m1]
train = m1-train.csv
test = m1-test.csv
labels = m1-test.lab
[entity.m2]
train = m2-train.csv
test = m2-test.csv
labels = m2-test.lab
[entity.m3]
delimiter = semicolon
header = yes
features = Motor A, Motor B, Pump C, Pump D
train = m3-train.csv
test = m3-test.csv
labels = m3-test.lab
EOF

check_report() { # DIR MODE CLIENTS
	local r=$1/report.json
	[ -f "$r" ] || fv_fail "$2: no report.json"
	jq -e --arg m "$2" --argjson k "$3" '
		.mode == $m and .clients == $k and .rounds == 3 and .dataset.entities == 3
		and .dataset.empty_cells == 3 and .dataset.train_rows == 2400
		and (.pooled | (.f1, .precision, .recall, .fpr, .roc_auc, .pr_auc) | type == "number")
		and .pooled.points == 1200 and .pooled.anomalies == 186
		and (.pooled.confusion | .tp + .fp + .fn + .tn) == 1200
		and (.per_entity | keys) == ["m1", "m2", "m3"]
		and ([.per_entity[] | .points] | add) == 1200
		and (.per_entity.m3 | (.f1, .fpr, .roc_auc, .threshold) | type == "number")
		and .pooled.baselines.flag_everything.recall == 1
		and .pooled.baselines.flag_nothing.f1 == 0
		and (.pooled.point_adjusted.f1 | type == "number")
		and (.pooled.best_factor | .f1 >= 0 and (.factor | type == "number")
		     and (.confusion | .tp + .fp + .fn + .tn) == 1200)
		and .pooled.best_factor.f1 >= .pooled.undebounced.f1
		and ([.per_entity[] | .best_factor.f1 >= .undebounced.f1] | all)
		and .bytes.total > 0 and .peak_rss_kb > 0 and .wall_time_s.total > 0
		and ([.round_log[] | select(.round > 0)] | length) == 3 * (if $m == "local" then 3 else 1 end)
	' "$r" >/dev/null || { jq -c '{mode, clients, rounds, pooled}' "$r"; fv_fail "$2: report fields"; }
	# detection beats flagging everything (FPR 1), by a margin; quality floors
	# of the detector itself are test_asd.sh's
	jq -e '.pooled.f1 > .pooled.baselines.flag_everything.f1 + 0.2 and .pooled.fpr < 0.2
	       and .pooled.roc_auc > 0.8' "$r" >/dev/null ||
		fv_fail "$2: no better than the baseline: $(jq -c '.pooled | {f1, fpr, roc_auc, flag: .baselines.flag_everything.f1}' "$r")"
	[ "$(wc -l < "$1/points.csv")" -eq 1201 ] || fv_fail "$2: points.csv has $(wc -l < "$1/points.csv") lines"
	head -1 "$1/points.csv" | grep -qx 'entity,row,score,threshold,predicted,label' || fv_fail "$2: points.csv header"
	[ -s "$1/report.md" ] && grep -q 'flag everything (baseline)' "$1/report.md" || fv_fail "$2: report.md"
	echo "$2: $(jq -c '.pooled | {f1, precision, recall, fpr, roc_auc}' "$r")"
}

run() { # MODE OUT [ARGS...]
	local mode=$1 out=$2
	shift 2
	"$eval_bin" "$FV_TMP/synth.ini" --mode "$mode" --out "$out" -q "$@" > "$out.stdout" 2> "$out.stderr" ||
		{ cat "$out.stderr"; fv_fail "fedvigil-eval --mode $mode failed"; }
	grep -q "^eval: mode=$mode " "$out.stdout" || fv_fail "$mode: no summary line"
}

run federated "$FV_TMP/fed" --plots png
check_report "$FV_TMP/fed" federated 3
for p in loss roc score-m1 score-m2 score-m3; do
	[ "$(head -c 4 "$FV_TMP/fed/$p.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ] || fv_fail "$p.png is not a PNG"
done
run centralized "$FV_TMP/cen" --plots none
check_report "$FV_TMP/cen" centralized 1
run local "$FV_TMP/loc" --plots none
check_report "$FV_TMP/loc" local 1
run iid "$FV_TMP/iid" --plots none --clients 5
check_report "$FV_TMP/iid" iid 5
run dirichlet "$FV_TMP/dir" --plots none --clients 4 --alpha 0.3
check_report "$FV_TMP/dir" dirichlet 4
jq -e '.alpha == 0.3' "$FV_TMP/dir/report.json" >/dev/null || fv_fail "dirichlet: alpha not reported"
# The fleet's threshold comes from the scores the entities' agents compute,
# each calibrated on its own windows, whoever trains: round 1's (scored
# under the same initial model in every mode) is federated's in centralized
# mode too (it was the pooled windows' calibration, another threshold).
thr1() { jq '.round_log[] | select(.round == 1) | .threshold' "$1/report.json"; }
[ "$(thr1 "$FV_TMP/cen")" = "$(thr1 "$FV_TMP/fed")" ] ||
	fv_fail "centralized round 1 threshold $(thr1 "$FV_TMP/cen") is not federated's $(thr1 "$FV_TMP/fed") (same initial model, same entities)"

# Causal verdicts: with the test files cut after row 250, rows 0..249 get
# exactly the same score and verdict.
mkdir -p "$FV_TMP/cut/data"
cp "$d"/*train.csv "$FV_TMP/cut/data/"
for m in 1 2 3; do
	lines=250; [ "$m" = 3 ] && lines=251 # the header
	head -n "$lines" "$d/m$m-test.csv" > "$FV_TMP/cut/data/m$m-test.csv"
	head -n 250 "$d/m$m-test.lab" > "$FV_TMP/cut/data/m$m-test.lab"
done
"$eval_bin" "$FV_TMP/synth.ini" --root "$FV_TMP/cut/data" --mode federated --out "$FV_TMP/cut/out" \
	-q --plots none > /dev/null || fv_fail "run on the cut data failed"
for m in m1 m2 m3; do
	diff <(grep "^$m," "$FV_TMP/fed/points.csv" | head -250) <(grep "^$m," "$FV_TMP/cut/out/points.csv") > /dev/null ||
		fv_fail "$m: verdicts before the cut changed when later rows were removed (not causal)"
done

# tools/eval/run-experiments on a list of its format: comments (one with an
# apostrophe, which once made it fail before running anything), an
# absolute manifest path; its row is the report's.
cat > "$FV_TMP/list.txt" <<EOF
# the detector's defaults, "quoted"
synth-fed | $FV_TMP/synth.ini | --mode federated --plots none
   # indented comment
EOF
FV_DATA_DIR=$FV_TMP "$FV_SOURCE_DIR/tools/eval/run-experiments" --list "$FV_TMP/list.txt" \
	--bin "$FV_BINARY_DIR" --out "$FV_TMP/exps" > "$FV_TMP/exps.md" 2> "$FV_TMP/exps.err" ||
	{ cat "$FV_TMP/exps.err"; fv_fail "run-experiments failed"; }
f1=$(jq -r '.pooled.f1 * 1000 | round / 1000 | tostring' "$FV_TMP/exps/synth-fed/report.json")
grep -q "^| synth-fed | federated | $f1 |" "$FV_TMP/exps.md" ||
	{ cat "$FV_TMP/exps.md"; fv_fail "run-experiments: no row with F1 $f1"; }
[ "$(grep -c '^| synth-fed' "$FV_TMP/exps.md")" -eq 1 ] || fv_fail "run-experiments: comments became rows"

# --set reaches both configurations; errors are usage errors (2) that say why.
run federated "$FV_TMP/set" --plots none --set detect.k=1 --set detect.n=1 --set threshold.margin=2
jq -e '.detect.k == 1 and .threshold.margin == 2' "$FV_TMP/set/report.json" >/dev/null || fv_fail "--set not applied"
# The coordinator's aggregation keys apply: the median of the updates trains
# another model than FedAvg (same data, same seed), so other scores.
# (Without -q: the progress line names the round, its loss and the ETA.)
"$eval_bin" "$FV_TMP/synth.ini" --mode federated --out "$FV_TMP/med" --plots none \
	--set aggregation.algorithm=median > "$FV_TMP/med.stdout" 2> "$FV_TMP/med.stderr" ||
	{ cat "$FV_TMP/med.stderr"; fv_fail "fedvigil-eval --set aggregation.algorithm=median failed"; }
grep -Eq '^fedvigil-eval: round 3/3 loss [0-9.]+ elapsed [0-9]+s eta 0s$' "$FV_TMP/med.stderr" ||
	{ cat "$FV_TMP/med.stderr"; fv_fail "no progress line with round, loss and ETA"; }
jq -e '.aggregation == "median"' "$FV_TMP/med/report.json" >/dev/null || fv_fail "aggregation.algorithm not applied"
cmp -s <(cut -d, -f3 "$FV_TMP/fed/points.csv") <(cut -d, -f3 "$FV_TMP/med/points.csv") &&
	fv_fail "aggregation.algorithm = median gave exactly FedAvg's scores"
expect_usage() { # WANT ARGS...
	local want=$1 rc=0
	shift
	"$eval_bin" "$@" > "$FV_TMP/err.out" 2>&1 || rc=$?
	[ "$rc" -eq 2 ] || { cat "$FV_TMP/err.out"; fv_fail "expected exit 2 for: $*"; }
	grep -q -- "$want" "$FV_TMP/err.out" || { cat "$FV_TMP/err.out"; fv_fail "no '$want' for: $*"; }
}
expect_usage "no such agent or coordinator key" "$FV_TMP/synth.ini" --mode federated --out "$FV_TMP/x" --set bogus.key=1
expect_usage "round.epochs = 'x'" "$FV_TMP/synth.ini" --mode federated --out "$FV_TMP/x" --set round.epochs=x
expect_usage "--mode is required" "$FV_TMP/synth.ini" --out "$FV_TMP/x"
expect_usage "is not one of" "$FV_TMP/synth.ini" --mode fancy --out "$FV_TMP/x"
expect_usage "no \[entity.nope\]" "$FV_TMP/synth.ini" --mode local --out "$FV_TMP/x" --entities nope
rc=0
"$eval_bin" "$FV_TMP/missing.ini" --mode local --out "$FV_TMP/x" > "$FV_TMP/err.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "missing.ini: cannot open" "$FV_TMP/err.out" || fv_fail "missing manifest: rc $rc"
"$eval_bin" --help > "$FV_TMP/help.txt" && grep -q -- "--mode MODE" "$FV_TMP/help.txt" || fv_fail "--help"
grep -q "threshold.percentile" "$FV_TMP/help.txt" || fv_fail "--help lacks the coordinator keys"
"$eval_bin" --version > "$FV_TMP/version.txt" && grep -q "^fedvigil-eval " "$FV_TMP/version.txt" || fv_fail "--version"
echo PASS
