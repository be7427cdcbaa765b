#!/usr/bin/env bash
# fedvigil-eval on real data: a slice of ASD (../shared/data/asd beside the
# checkout, or $FV_DATA_DIR/asd; never copied into the repository) through
# the shipped manifest, federated over three servers (omi-7..9) with the default
# detector and 3 rounds. Checks the report against the data's known counts
# (12,960 test points of which 572 anomalous) and that detection beats the
# flag-everything baseline (FPR 1) well below its false-positive rate. Quality floors of
# the detector itself are the detector's regression test (test_asd.sh).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
data="${FV_DATA_DIR:-$FV_SOURCE_DIR/../shared/data}/asd/csv"
[ -f "$data/omi-1_train.csv" ] || fv_skip "ASD dataset not found at $data (it lives in ../shared/data beside the checkout; FV_DATA_DIR overrides); skipping"
command -v jq >/dev/null || fv_skip "jq is not installed (scripts/deps installs it)"
fv_tmpdir
# Beside the checkout, the manifest's own relative root finds the data.
root=()
[ -n "${FV_DATA_DIR:-}" ] && root=(--root "$data")
"$FV_BINARY_DIR/fedvigil-eval" "$FV_SOURCE_DIR/tools/eval/manifests/asd.ini" "${root[@]}" \
	--entities omi-7,omi-8,omi-9 --mode federated --set round.rounds=3 --out "$FV_TMP/out" \
	--plots none -q > "$FV_TMP/stdout" 2> "$FV_TMP/stderr" || { cat "$FV_TMP/stderr"; fv_fail "fedvigil-eval failed"; }
cat "$FV_TMP/stdout"
r=$FV_TMP/out/report.json
jq -e '.pooled.points == 12960 and .pooled.anomalies == 572 and .dataset.channels == 19
       and (.per_entity | keys) == ["omi-7", "omi-8", "omi-9"] and .clients == 3
       and .pooled.unscored == 3 * (.model.window - 2) and .training_windows > 25000' "$r" > /dev/null ||
	fv_fail "report does not match the data: $(jq -c '{pooled: .pooled | {points, anomalies, unscored}, clients, training_windows}' "$r")"
jq -e '.pooled.f1 > .pooled.baselines.flag_everything.f1 and .pooled.fpr < 0.15
       and .pooled.roc_auc > 0.6' "$r" > /dev/null ||
	fv_fail "no better than flagging everything: $(jq -c '.pooled | {f1, fpr, roc_auc, flag: .baselines.flag_everything.f1}' "$r")"
echo PASS
