#!/usr/bin/env bash
# Participation and compression through real daemons and a real Mosquitto
# (run with deploy/mosquitto/limits.conf): 3 agents train with top-k int8
# updates (error feedback) on an fp16 model, quorum 0.6, an adaptive
# deadline, late updates staleness-weighted, stragglers sitting out six
# rounds (so that a late update is not superseded by its agent's next one).
#   1. a straggler: one agent is SIGSTOP'ed; a round closes without it
#      (missed, counted), it is left out of the next selection, and after
#      SIGCONT its late update is held and aggregated (late_applied);
#   2. a fourth agent joins mid-training: it syncs the retained model and is
#      selected from the next round on, and its update is accepted;
#   3. a round without quorum (three of four agents paused) is extended once
#      and abandoned (no_quorum = abandon); the next rounds run on;
#   4. compression end to end: every update is < 1/10 of its fp32 size, the
#      model travels as fp16, and the training loss falls.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_sub >/dev/null || fv_skip "mosquitto-clients not installed"
fv_tmpdir
port=$(fv_free_port)
{
	echo "listener $port 127.0.0.1"
	echo "allow_anonymous true"
	echo "persistence false"
	echo "log_dest stderr"
	cat "$FV_SOURCE_DIR/deploy/mosquitto/limits.conf"
} >"$FV_TMP/mosquitto.conf"
fv_broker_start_conf "$FV_TMP/mosquitto.conf" "$port"
STOPPED=()
cont_all() { for p in "${STOPPED[@]}"; do kill -CONT "$p" 2>/dev/null || true; done; }
trap 'rc=$?; cont_all; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

chans=(vibration temperature pressure flow current)
FV_ROUND_INTERVAL_MS=400
fleet_write_coordinator 0 2 5 \
	"[round]" "epochs = 1" "min_samples = 100" "quorum = 0.6" "deadline_ms = 4000" \
	"deadline_k = 3" "deadline_min_ms = 1200" "max_extensions = 1" "no_quorum = abandon" \
	"exclude_missed = 6" "late = stale" "staleness_max = 8" \
	"[compression]" "encoding = int8" "topk = 0.1" "error_feedback = true" "model = fp16" \
	"[metrics]" "listen = $(fv_free_port)"
agents=(pump-1 compressor-2 motor-3 pump-4)
for m in "${agents[@]}"; do fleet_write_agent "$m" plant 1000 "${chans[@]}"; done
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_sub agentmetrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
sleep 0.3
fleet_start_coordinator
for m in pump-1 compressor-2 motor-3; do fleet_start_agent "$m"; done
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 4 \
	--period-ms 1000 --speed 200 --duration 40000 --normal 40000 --faults 0 --seed 11 \
	>"$FV_TMP/sim.log" 2>&1 &
fv_track "$!"
C=$FV_TMP/coordinator.log
M=$FV_TMP/metrics.log
closed() { grep -c '"kind":"train".*"result":"closed"' "$M" 2>/dev/null || true; }

fv_wait_for "2 training rounds" 60 bash -c "[ \$(grep -c '\"kind\":\"train\".*\"result\":\"closed\"' '$M') -ge 2 ]" ||
	fv_fail "no 2 training rounds"

# 1. The straggler.
kill -STOP "${AGENT_PIDS[motor-3]}"
STOPPED+=("${AGENT_PIDS[motor-3]}")
fv_wait_for "a round closed without motor-3" 30 grep -q '"missed":1' "$M" || fv_fail "no missed update counted"
miss=$(grep -m1 '"missed":1' "$M")
rmiss=$(json_field round "$miss")
grep -q "round $rmiss: no update from 1 of 3 selected agents in time \[motor-3\]" "$C" ||
	fv_fail "the coordinator did not name the straggler of round $rmiss"
fv_wait_for "the next round announced" 20 grep -q "round $((rmiss + 1)) (train.*announced" "$C" || fv_fail "no round $((rmiss + 1))"
next=$(grep -m1 "round $((rmiss + 1)) (train.*announced" "$C")
grep -q "motor-3" <<<"$next" && fv_fail "the straggler was selected right after missing: $next"
grep -q "1 left out" <<<"$next" || fv_fail "round $((rmiss + 1)) does not say it left one agent out: $next"
kill -CONT "${AGENT_PIDS[motor-3]}"
STOPPED=()
fv_wait_for "motor-3's late update held" 30 grep -q "late update from motor-3 for round .* held" "$C" ||
	fv_fail "motor-3's late update was not held"
fv_wait_for "a late update aggregated" 30 grep -q '"late_applied":[1-9]' "$M" || fv_fail "no late update applied"

# 2. A fourth agent joins mid-training.
fleet_start_agent pump-4
fv_wait_for "pump-4 online" 20 grep -q "agent pump-4 online" "$C" || fv_fail "pump-4 never came online"
join=$(grep -m1 "agent pump-4 online" "$C")
from=$(sed -n 's/.*selectable from round \([0-9]*\).*/\1/p' <<<"$join")
fv_wait_for "pump-4's update accepted" 40 grep -q "update from pump-4 for round [0-9]* accepted" "$C" ||
	fv_fail "pump-4 never answered"
first=$(grep -m1 "update from pump-4 for round [0-9]* accepted" "$C" | sed -n 's/.*for round \([0-9]*\).*/\1/p')
[ -z "$from" ] || [ "$first" -ge "$from" ] || fv_fail "pump-4 answered round $first, before round $from"
grep -q "model v[0-9]* loaded" "$FV_TMP/pump-4.log" || fv_fail "pump-4 did not load the retained model"
echo "pump-4 joined (selectable from round ${from:-next}), first update for round $first"

# 3. No quorum: three of four paused; extended once, then abandoned.
n0=$(closed)
for m in pump-1 compressor-2 pump-4; do
	kill -STOP "${AGENT_PIDS[$m]}"
	STOPPED+=("${AGENT_PIDS[$m]}")
done
fv_wait_for "a round abandoned" 40 grep -q '"result":"abandoned"' "$M" || fv_fail "no round abandoned"
ab=$(grep -m1 '"result":"abandoned"' "$M")
rab=$(json_field round "$ab")
grep -q "round $rab: .* extending by" "$C" || fv_fail "round $rab was abandoned without an extension first"
grep -q "round $rab abandoned" "$C" || fv_fail "no log of round $rab's abandonment"
cont_all
STOPPED=()
fv_wait_for "a round closes after the abandoned one" 40 bash -c \
	"grep '\"result\":\"closed\"' '$M' | grep -q '\"round\":$((rab + 1))\|\"round\":$((rab + 2))\|\"round\":$((rab + 3))'" ||
	fv_fail "no round closed after round $rab was abandoned"
vab=$(json_field version "$ab")
after=$(grep '"result":"closed"' "$M" | tail -1)
[ "$(json_field version "$after")" -gt "$vab" ] || fv_fail "the model did not advance after the abandoned round"

# 4. Compression end to end.
np=$(sed -n 's/.*loaded: .*, \([0-9]*\) parameters.*/\1/p' "$FV_TMP/pump-1.log" | head -1)
[ -n "$np" ] || fv_fail "no parameter count in pump-1's log"
fp32=$((4 * np))
grep '"kind":"train".*"result":"closed"' "$M" | while IFS= read -r l; do
	grep -q '"encoding":"topk-int8"' <<<"$l" || fv_fail "a round without topk-int8: $l"
	ub=$(json_field update_bytes "$l"); na=$(json_field agents "$l")
	[ "$na" -gt 0 ] || continue
	[ $((ub * 10)) -lt $((fp32 * na)) ] || fv_fail "updates of $((ub / na)) bytes, fp32 would be $fp32: $l"
	mb=$(json_field model_bytes "$l")
	[ "$mb" -lt $((fp32 * 3 / 4)) ] || fv_fail "a model of $mb bytes is not fp16 ($np parameters): $l"
done
grep -q "update [0-9]* bytes (topk-int8)" "$FV_TMP/pump-1.log" || fv_fail "pump-1 did not log compressed updates"
firstl=$(grep -m1 '"kind":"train".*"result":"closed"' "$M")
lastl=$(grep '"kind":"train".*"result":"closed"' "$M" | tail -1)
l0=$(json_field loss "$firstl"); l1=$(json_field loss "$lastl")
ub0=$(json_field update_bytes "$firstl"); na0=$(json_field agents "$firstl")
echo "model: $np parameters, fp32 update $fp32 B, top-k int8 update $((ub0 / na0)) B; loss $l0 -> $l1"
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < a) }' || fv_fail "loss did not fall: $l0 -> $l1"
# The same counts on the coordinator's Prometheus page (plain HTTP through
# bash's /dev/tcp).
mport=$(sed -n 's/^listen = //p' "$FV_TMP/coordinator.ini")
page=$(exec 3<>"/dev/tcp/127.0.0.1/$mport" && printf 'GET /metrics HTTP/1.1\r\nHost: l\r\n\r\n' >&3 &&
	timeout 5 cat <&3) || fv_fail "no metrics page on port $mport"
for m in missed_total late_applied_total rounds_abandoned_total; do
	v=$(awk -v n="fedvigil_coordinator_$m" '$1 == n { print $2 }' <<<"$page")
	awk -v v="${v:-0}" 'BEGIN { exit !(v >= 1) }' || fv_fail "fedvigil_coordinator_$m is '$v'"
done
grep -q "rejected: " "$C" && grep "rejected: " "$C" | grep -v "stale\|not selected\|duplicate" | grep -q . &&
	fv_fail "updates rejected for another reason than stale, unselected or duplicate (a resend after a re-announcement): $(grep 'rejected: ' "$C" | grep -v 'stale\|not selected\|duplicate' | head -3)"
echo "PASS"
