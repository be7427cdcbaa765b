#!/usr/bin/env bash
# Peak RSS of a real fedvigil-agent that trains a round of the given preset:
# a private Mosquitto, the coordinator (model.preset = PRESET), one agent
# and the plant simulator, stopped after the agent's first training round
# on a full buffer.
# Prints one JSON line: {"preset", "layers", "windows", "hwm_kb", ...}.
#
#   bench/agent_rss.sh PRESET WINDOW BIN_DIR
#
# Uses the integration-test helpers (tests/integration/lib.sh, fleet.sh):
# every process is started and stopped by PID.
set -euo pipefail
preset=$1 window=$2
FV_SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
FV_BINARY_DIR=$(cd "$3" && pwd)
export FV_SOURCE_DIR FV_BINARY_DIR
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
trap 'rc=$?; [ $rc -ne 0 ] && fleet_dump_logs >&2; fv_cleanup; exit $rc' EXIT
fv_broker_start

chans=(vibration temperature pressure flow current)
# The agent's buffer is filled first (its default ingest.buffer of 4096
# vectors; the simulator sends 4400 at 400x), then the coordinator starts
# and runs its rounds quickly: the training round always sees a full
# buffer, however loaded the machine is.
export FV_ROUND_INTERVAL_MS=${FV_ROUND_INTERVAL_MS:-2000}
fleet_write_coordinator 1 1 5 "[model]" "preset = $preset" "window = $window"
fleet_write_agent pump-1 plant 1000 "${chans[@]}"
sed -i 's/^buffer = .*/buffer = 4096/' "$FV_TMP/pump-1.ini"
fleet_start_agent pump-1
sleep 1 # its subscriptions; readings sent before them are only missed
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 1 \
	--period-ms 1000 --speed 400 --duration 4400 --normal 4400 --faults 0 --seed 5 \
	--quiet >"$FV_TMP/sim.log" 2>&1 &
sim=$!
fv_track "$sim"
wait "$sim" || { echo "agent_rss: the simulator failed" >&2; exit 1; }
fleet_start_coordinator
pid=${AGENT_PIDS[pump-1]}
fv_wait_for "the model" 60 grep -q 'model v1 loaded' "$FV_TMP/pump-1.log" || exit 1
idle=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
fv_wait_for "the agent's first training round" 300 grep -q 'round 1: trained on' \
	"$FV_TMP/pump-1.log" || exit 1
line=$(grep -m1 'round 1: trained on' "$FV_TMP/pump-1.log")
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
windows=$(sed -n 's/.*trained on \([0-9]*\) windows.*/\1/p' <<<"$line")
layers=$(grep -m1 'model v1 loaded' "$FV_TMP/pump-1.log" | sed -n 's/.*loaded: \([^,]*\),.*/\1/p')
printf '{"preset":"%s","layers":"%s","windows":%s,"hwm_before_round_kb":%s,"hwm_kb":%s,"rss_kb":%s}\n' \
	"$preset" "$layers" "${windows:-0}" "${idle:-0}" "${hwm:-0}" "${rss:-0}"
