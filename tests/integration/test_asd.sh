#!/usr/bin/env bash
# Detection on real data through real daemons: a slice of the ASD
# application-server dataset (../shared/data/asd, MIT; never copied into the
# repository), replayed over a real broker to one agent per server, with the
# fleet's default detector (docs/detection.md). Scored per point, without
# point adjustment, pooled over the servers.
#
# Slice: servers omi-2, omi-4 and omi-12, the last TRAIN_ROWS rows of each
# training file (presumed normal: the rounds train on them), then the first
# TEST_ROWS rows of each test file (labelled). The servers were picked as
# ones with labelled anomalies early in their test files on which the
# 12-server detector works, so that a regression shows; this is a guard,
# not a result (the results are docs/evaluation.md's 12-server runs). The
# floors sit below what was measured on this slice (docs/evaluation.md, "the
# regression test"), with room for the run-to-run variation of training
# over MQTT; the trivial "flag everything" baseline is printed beside them.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
data="${FV_DATA_DIR:-$FV_SOURCE_DIR/../shared/data}/asd"
[ -d "$data/csv" ] || fv_skip "ASD dataset not found at $data (it lives in ../shared/data beside the checkout, or set FV_DATA_DIR); skipping"
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || fv_skip "mosquitto is not installed"

servers=(omi-2 omi-4 omi-12)
TRAIN_ROWS=${FV_ASD_TRAIN_ROWS:-2016}
TEST_ROWS=${FV_ASD_TEST_ROWS:-1500}
ROUNDS=${FV_ASD_ROUNDS:-6}
F1_FLOOR=${FV_ASD_F1_FLOOR:-0.45}
FPR_CEIL=${FV_ASD_FPR_CEIL:-0.04}
period=300000

fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

ncol=$(head -1 "$data/csv/${servers[0]}_train.csv" | awk -F, '{print NF}')
chans=()
for j in $(seq "$ncol"); do chans+=("c$j"); done

# The slices, as CSV files of our own in $FV_TMP.
for s in "${servers[@]}"; do
	tail -n "$TRAIN_ROWS" "$data/csv/${s}_train.csv" > "$FV_TMP/$s.train.csv"
	head -n "$TEST_ROWS" "$data/csv/${s}_test.csv" > "$FV_TMP/$s.test.csv"
	head -n "$TEST_ROWS" "$data/csv/${s}_test_label.csv" > "$FV_TMP/$s.label.csv"
done

# The fleet: the coordinator's and agents' defaults for everything that
# decides detection; only the model size, window and round pacing are set.
fleet_write_coordinator "$ROUNDS" "${#servers[@]}" "$ncol"
sed -i -e 's/^window = .*/window = 10/' -e 's/^hidden = .*/hidden = 64,16,64/' \
	-e 's/^interval_ms = .*/interval_ms = 200/' -e 's/^epochs = .*/epochs = 2/' \
	-e 's/^min_samples = .*/min_samples = 500/' -e '/^\[threshold\]/,$d' "$FV_TMP/coordinator.ini"
for s in "${servers[@]}"; do
	fleet_write_agent "$s" asd "$period" "${chans[@]}"
	# ASD points are 5 minutes apart and its anomalies short: a window above
	# the threshold is a verdict of its own (k = n = 1).
	sed -i 's/^\[ingest\]/[detect]\nk = 1\nn = 1\nclear_n = 1\n[ingest]/' "$FV_TMP/$s.ini"
done
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
sleep 0.3
for s in "${servers[@]}"; do fleet_start_agent "$s"; done

replay() { # FILE-SUFFIX ROW-OFFSET
	local args=()
	for s in "${servers[@]}"; do args+=(--machine "$s=$FV_TMP/$s.$1.csv"); done
	"$FV_BIN/fedvigil-replay" --broker "$FV_BROKER_URI" --prefix asd "${args[@]}" --header no \
		--period-ms "$period" --start 2026-01-01T00:00:00Z --row-offset "$2" --rate 0 --quiet \
		>>"$FV_TMP/replay.log" 2>&1 || fv_fail "replay of the $1 slice failed"
}
t0=$SECONDS
replay train 0
# Rounds start once every agent holds its training slice, so the result does
# not depend on how fast the replay went.
fleet_start_coordinator
fv_wait_for "$ROUNDS training rounds" 240 bash -c "[ \$(grep -c '\"kind\":\"train\"' '$FV_TMP/metrics.log') -ge $ROUNDS ]" ||
	fv_fail "the rounds did not finish"
t1=$SECONDS
replay test "$TRAIN_ROWS"
# The last reading of the test slice has been windowed once every agent's
# score log reaches the last test row's time.
last_ts=$(( (TRAIN_ROWS + TEST_ROWS - 2) * period + 1767225600000 ))
for s in "${servers[@]}"; do
	fv_wait_for "$s scores the test slice" 60 bash -c "tail -1 '$FV_TMP/$s.scores.csv' | awk -F, -v t=$last_ts '\$1 >= t { ok = 1 } END { exit !ok }'" ||
		fv_fail "$s did not score the whole test slice"
done
echo "replay+rounds $((t1 - t0)) s, test $((SECONDS - t1)) s"

pairs=()
for s in "${servers[@]}"; do pairs+=(--points "$FV_TMP/$s.scores.csv:$FV_TMP/$s.label.csv"); done
out=$("$FV_BIN/fedvigil-score" "${pairs[@]}" --start 2026-01-01T00:00:00Z --period-ms "$period" \
	--row-offset "$TRAIN_ROWS" 2>"$FV_TMP/score.err") || { cat "$FV_TMP/score.err"; fv_fail "fedvigil-score failed"; }
echo "$out"
last=$(tail -1 <<<"$out")
f1=$(sed -n 's/.* f1=\([0-9.]*\).*/\1/p' <<<"$last")
fpr=$(sed -n 's/.* fpr=\([0-9.]*\).*/\1/p' <<<"$last")
[ -n "$f1" ] && [ -n "$fpr" ] || fv_fail "no f1/fpr in the score's last line: $last"
pos=$(cat "$FV_TMP"/*.label.csv | awk '$1 == 1' | wc -l)
tot=$(cat "$FV_TMP"/*.label.csv | wc -l)
echo "flag everything: f1=$(awk -v p="$pos" -v n="$tot" 'BEGIN { printf "%.3f", 2 * p / (p + n) }') fpr=1"
awk -v f="$f1" -v m="$F1_FLOOR" 'BEGIN { exit !(f >= m) }' || fv_fail "pooled F1 $f1 below the floor $F1_FLOOR"
awk -v f="$fpr" -v m="$FPR_CEIL" 'BEGIN { exit !(f <= m) }' || fv_fail "pooled FPR $fpr above $FPR_CEIL"
echo "PASS f1=$f1 fpr=$fpr (floors: f1 >= $F1_FLOOR, fpr <= $FPR_CEIL)"
