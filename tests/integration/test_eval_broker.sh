#!/usr/bin/env bash
# fedvigil-eval --broker: the federated experiment through a real mosquitto,
# a real fedvigil-coordinator and one fedvigil-agent per machine, on a
# dataset this test makes (two machines x three correlated channels, 600
# training rows, 300 test rows with a labelled fault that breaks the
# correlation). Checks the report (broker run, rounds, the bytes the broker
# carried, the daemons' peak RSS), that detection beats flagging
# everything, and that the in-process run of the same experiment (same
# data, same settings) gives exactly the same score and verdict for every
# test row: fedvigil-eval reproduces the daemons.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
command -v jq >/dev/null || fv_skip "jq is not installed (scripts/deps installs it)"
fv_tmpdir
fv_broker_start
d=$FV_TMP/data
mkdir -p "$d"
gen() { # SEED ROWS FAULT(a-b or empty) LABELS
	awk -v seed="$1" -v rows="$2" -v fault="$3" -v lab="$4" 'BEGIN {
		srand(seed); split(fault, r, "-")
		for (i = 0; i < rows; i++) {
			a = sin(i / 12.0) + 0.1 * (rand() - 0.5); b = cos(i / 17.0) + 0.1 * (rand() - 0.5)
			y = fault != "" && i >= r[1] && i <= r[2]
			printf "%.4f,%.4f,%.4f\n", a, b, (y ? a - b : a + b) + 0.05 * (rand() - 0.5)
			if (lab != "") print y > lab
		}
	}'
}
for m in 1 2; do
	gen "$m" 600 "" "" > "$d/m$m-train.csv"
	gen "$((m + 5))" 300 "$((80 * m))-$((80 * m + 40))" "$d/m$m-test.lab" > "$d/m$m-test.csv"
done
cat > "$FV_TMP/b.ini" <<'INI'
[dataset]
root = data
period_ms = 1000
header = no
[set]
model.window = 4
model.hidden = 6,2,6
round.rounds = 3
round.epochs = 2
round.lr = 0.005
round.interval_ms = 200
threshold.percentile = 99
[entity.m1]
train = m1-train.csv
test = m1-test.csv
labels = m1-test.lab
[entity.m2]
train = m2-train.csv
test = m2-test.csv
labels = m2-test.lab
INI
"$FV_BINARY_DIR/fedvigil-eval" "$FV_TMP/b.ini" --mode federated --broker "$FV_BROKER_URI" \
	--rate 0 --out "$FV_TMP/bk" --plots none -q > "$FV_TMP/bk.out" 2> "$FV_TMP/bk.err" ||
	{ cat "$FV_TMP/bk.err"; tail -20 "$FV_TMP"/bk/broker/*.log; fv_fail "fedvigil-eval --broker failed"; }
cat "$FV_TMP/bk.out"
r=$FV_TMP/bk/report.json
jq -e '.broker == true and .mode == "federated" and .clients == 2 and .rounds == 3
       and ([.round_log[] | select(.round > 0)] | length) == 3
       and .bytes.up > 0 and .bytes.down > 0 and .peak_rss_kb > 0
       and .pooled.points == 600 and .pooled.anomalies == 82
       and (.per_entity | keys) == ["m1", "m2"]
       and ([.per_entity[].model_version] | min) == 4' "$r" > /dev/null ||
	fv_fail "report: $(jq -c '{broker, clients, rounds, bytes, pooled: .pooled | {points, anomalies, unscored}, v: [.per_entity[].model_version]}' "$r")"
jq -e '.pooled.f1 > .pooled.baselines.flag_everything.f1 + 0.2 and .pooled.fpr < 0.2' "$r" > /dev/null ||
	fv_fail "no better than the baseline: $(jq -c '.pooled | {f1, fpr, flag: .baselines.flag_everything.f1}' "$r")"
# The daemons start their windows when the first model arrives, after the
# training rows but before the last training row's tick (it is sampled when
# the first test reading comes): the first W-2 = 2 test rows of each
# machine have no window of their own.
jq -e '.pooled.unscored == 4' "$r" > /dev/null || fv_fail "unscored: $(jq .pooled.unscored "$r")"
"$FV_BINARY_DIR/fedvigil-eval" "$FV_TMP/b.ini" --mode federated --out "$FV_TMP/ip" --plots none -q > "$FV_TMP/ip.out" ||
	fv_fail "in-process run failed"
cat "$FV_TMP/ip.out"
diff "$FV_TMP/bk/points.csv" "$FV_TMP/ip/points.csv" > "$FV_TMP/points.diff" ||
	{ head -20 "$FV_TMP/points.diff"; fv_fail "the in-process run does not reproduce the daemons' scores and verdicts"; }
jq -s -e '.[0].pooled.unscored == .[1].pooled.unscored and .[0].pooled.f1 == .[1].pooled.f1' \
	"$r" "$FV_TMP/ip/report.json" > /dev/null || fv_fail "broker and in-process reports disagree"
echo PASS
