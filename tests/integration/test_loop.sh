#!/usr/bin/env bash
# The whole loop over a real Mosquitto: plant simulator -> 3 agents ->
# federated rounds -> global model + threshold -> alerts on MQTT.
# Asserts: >= 5 training rounds close with all 3 agents, the training loss
# falls, the model version advances and reaches the agents, and the
# injected faults produce alerts on the alert topic.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

chans=(vibration temperature pressure flow current)
fleet_write_coordinator 6 3 5
for m in pump-1 compressor-2 motor-3; do
	fleet_write_agent "$m" plant 1000 "${chans[@]}"
done
# motor-3's score log sits on a "full disk" (/dev/full: every write fails
# with ENOSPC): it must report that once and go on detecting.
sed -i 's|^score_log = .*|score_log = /dev/full|' "$FV_TMP/motor-3.ini"
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_sub alerts "fedvigil/v1/$FV_FLEET/agent/+/alert"
fleet_sub agentmetrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
sleep 0.3
fleet_start_coordinator
for m in pump-1 compressor-2 motor-3; do fleet_start_agent "$m"; done

# 200 simulated seconds per real second: 7000 s of normal operation (35 s)
# for the rounds, then faults until 12000 s.
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 3 \
	--period-ms 1000 --speed 200 --duration 12000 --normal 7000 --faults 2 --seed 3 \
	--truth "$FV_TMP/truth.csv" --start 2026-01-01T00:00:00Z >"$FV_TMP/sim.log" 2>&1 &
SIM_PID=$!
fv_track "$SIM_PID"

fv_wait_for "6 training rounds" 90 bash -c "[ \$(grep -c '\"kind\":\"train\"' '$FV_TMP/metrics.log') -ge 6 ]"
wait "$SIM_PID" || fv_fail "simulator failed"
sleep 2

# Every training round aggregated all three agents.
n=$(fleet_train_rounds)
[ "$n" -ge 5 ] || fv_fail "only $n training rounds"
grep '"kind":"train"' "$FV_TMP/metrics.log" | while IFS= read -r l; do
	a=$(json_field agents "$l")
	[ "$a" = 3 ] || fv_fail "a round aggregated $a agents, expected 3: $l"
done

# The loss falls from the first training round to the last.
first=$(grep -m1 '"kind":"train"' "$FV_TMP/metrics.log")
last=$(grep '"kind":"train"' "$FV_TMP/metrics.log" | tail -1)
l0=$(json_field loss "$first"); l1=$(json_field loss "$last")
echo "loss: first round $l0, last round $l1"
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < a) }' || fv_fail "loss did not fall: $l0 -> $l1"

# Versions advance by one per round; the agents hold the last one.
v0=$(json_field version "$first"); v1=$(json_field version "$last")
[ "$v1" -eq $((v0 + n - 1)) ] || fv_fail "model versions $v0..$v1 over $n rounds"
for m in pump-1 compressor-2 motor-3; do
	mv=$(grep "agent/$m/metrics" "$FV_TMP/agentmetrics.log" | tail -1)
	[ "$(json_field model_version "$mv")" = "$v1" ] || fv_fail "$m holds model $(json_field model_version "$mv"), expected v$v1"
done
thr=$(json_field threshold "$last")
awk -v t="$thr" 'BEGIN { exit !(t > 0) }' || fv_fail "no threshold in the last round"

# Faults were injected after the rounds, and they raised alerts on MQTT.
[ "$(wc -l < "$FV_TMP/truth.csv")" -ge 4 ] || fv_fail "simulator wrote no faults"
raised=$(grep -c '"state":"raised"' "$FV_TMP/alerts.log" || true)
echo "alerts raised: $raised"
[ "$raised" -ge 1 ] || fv_fail "no alert raised"
a=$(grep -m1 '"state":"raised"' "$FV_TMP/alerts.log")
for f in fleet agent start end score threshold model_version channels; do
	grep -q "\"$f\"" <<<"$a" || fv_fail "alert lacks field $f: $a"
done
n=$(grep -c 'write failed' "$FV_TMP/motor-3.log" || true)
[ "$n" -eq 1 ] || fv_fail "motor-3 reported its score-log write failure $n times, expected once"
grep -q '"agent":"motor-3"' "$FV_TMP/alerts.log" || fv_fail "motor-3 raised no alert after its disk filled"
"$FV_BIN/fedvigil-score" --truth "$FV_TMP/truth.csv" --alerts "$FV_TMP/alerts.log" | tail -3

# Clean shutdown on SIGTERM: exit 0 and an offline state.
for m in "${!AGENT_PIDS[@]}"; do kill -TERM "${AGENT_PIDS[$m]}"; done
kill -TERM "$COORD_PID"
for m in "${!AGENT_PIDS[@]}"; do wait "${AGENT_PIDS[$m]}" || fv_fail "agent $m exited $? on SIGTERM"; done
wait "$COORD_PID" || fv_fail "coordinator exited $? on SIGTERM"
st=$(mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -C 1 -W 3 -t "fedvigil/v1/$FV_FLEET/agent/pump-1/state")
grep -q '"offline"' <<<"$st" || fv_fail "agent state after SIGTERM: $st"
echo "PASS"
