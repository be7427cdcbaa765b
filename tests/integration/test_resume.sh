#!/usr/bin/env bash
# A coordinator killed with SIGKILL mid-run resumes from its state file:
# round numbers and model versions continue (no new statistics round, no
# restart from version 1) and the remaining rounds complete.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

chans=(vibration temperature pressure flow current)
fleet_write_coordinator 7 2 5
for m in pump-1 compressor-2; do fleet_write_agent "$m" plant 1000 "${chans[@]}"; done
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_sub agentmetrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
fleet_sub agentstate "fedvigil/v1/$FV_FLEET/agent/+/state"
sleep 0.3
fleet_start_coordinator
for m in pump-1 compressor-2; do fleet_start_agent "$m"; done
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 2 \
	--period-ms 1000 --speed 200 --duration 40000 --normal 40000 --faults 0 --seed 5 \
	>"$FV_TMP/sim.log" 2>&1 &
fv_track "$!"

fv_wait_for "3 training rounds" 60 bash -c "[ \$(grep -c '\"kind\":\"train\"' '$FV_TMP/metrics.log') -ge 3 ]"
kill -KILL "$COORD_PID"
wait "$COORD_PID" 2>/dev/null || true
before=$(grep '"kind":"train"' "$FV_TMP/metrics.log" | tail -1)
rb=$(json_field round "$before"); vb=$(json_field version "$before")
nb=$(grep -c . "$FV_TMP/metrics.log")
echo "killed after round $rb (model v$vb)"
[ -s "$FV_TMP/state/coordinator.state" ] || fv_fail "no state file after $rb rounds"

sleep 1
fleet_start_coordinator
fv_wait_for "7 training rounds in all" 60 bash -c "[ \$(grep -c '\"kind\":\"train\"' '$FV_TMP/metrics.log') -ge 7 ]" || true
after=$(tail -n +$((nb + 1)) "$FV_TMP/metrics.log")
[ -n "$after" ] || fv_fail "no round closed after the restart"
grep -q '"kind":"stats"' <<<"$after" && fv_fail "statistics round ran again after the restart"
first=$(head -1 <<<"$after")
ra=$(json_field round "$first"); va=$(json_field version "$first")
echo "first round after restart: $ra (model v$va)"
[ "$ra" -gt "$rb" ] || fv_fail "round went from $rb to $ra after restart"
[ "$va" -gt "$vb" ] || fv_fail "version went from $vb to $va after restart"
[ "$va" -eq $((ra + 1)) ] || fv_fail "round $ra produced v$va, expected v$((ra + 1))"
# Round numbers are consecutive across the restart (allowing the one round
# that may have closed between the state write and the metrics publish).
[ "$ra" -le $((rb + 2)) ] || fv_fail "rounds skipped: $rb -> $ra"
last=$(grep '"kind":"train"' "$FV_TMP/metrics.log" | tail -1)
[ "$(json_field round "$last")" -eq 7 ] || fv_fail "last round is $(json_field round "$last"), expected 7"
grep -qi "resum" "$FV_TMP/coordinator.log" || fv_fail "coordinator did not log that it resumed"

# An agent killed with SIGKILL: the broker publishes its last will, and the
# restarted agent syncs the current model from the retained message at once.
vlast=$(json_field version "$last")
kill -KILL "${AGENT_PIDS[pump-1]}"
wait "${AGENT_PIDS[pump-1]}" 2>/dev/null || true
fv_wait_for "LWT offline of pump-1" 60 grep -q 'agent/pump-1/state {"state":"offline"' "$FV_TMP/agentstate.log"
n0=$(grep -c . "$FV_TMP/agentmetrics.log")
fleet_start_agent pump-1
fv_wait_for "restarted pump-1 holds model v$vlast" 20 bash -c \
	"tail -n +$((n0 + 1)) '$FV_TMP/agentmetrics.log' | grep 'agent/pump-1/metrics' | grep -q '\"model_version\":$vlast,'"
echo "PASS"
