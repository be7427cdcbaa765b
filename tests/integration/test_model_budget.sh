#!/usr/bin/env bash
# The agent's memory budget against a real fleet: the coordinator serves
# the stacked autoencoder preset (sae); an agent with the default
# agent.max_model_kb loads it, one configured with 16 KiB refuses it with a
# message naming the bytes of every part and the limit, counts the refusal
# in its metrics, and keeps running (ingesting, publishing metrics).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

chans=(vibration temperature pressure flow current)
# Repeated sections are fine for inih: these land in [model] and [agent].
fleet_write_coordinator 1 2 5 "[model]" "preset = sae"
fleet_write_agent pump-1 plant 1000 "${chans[@]}"
fleet_write_agent compressor-2 plant 1000 "${chans[@]}"
printf '[agent]\nmax_model_kb = 16\n' >>"$FV_TMP/compressor-2.ini"
fleet_sub agentmetrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
sleep 0.3
fleet_start_coordinator
fleet_start_agent pump-1
fleet_start_agent compressor-2
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 2 \
	--period-ms 1000 --speed 200 --duration 2000 --normal 2000 --faults 0 --seed 4 \
	--start 2026-01-01T00:00:00Z >"$FV_TMP/sim.log" 2>&1 &
SIM_PID=$!
fv_track "$SIM_PID"

fv_wait_for "pump-1 loads the sae model" 40 grep -q 'model v1 loaded: 50-64-32-16-32-64-50' \
	"$FV_TMP/pump-1.log" || fv_fail "pump-1 did not load model v1"
fv_wait_for "compressor-2 refuses it" 10 grep -q 'model v1 .* refused' "$FV_TMP/compressor-2.log" ||
	fv_fail "compressor-2 did not refuse model v1"
line=$(grep -m1 'model v1 .* refused' "$FV_TMP/compressor-2.log")
echo "refusal: $line"
for part in 'it needs [0-9]+ bytes' 'agent.max_model_kb is 16 KiB \(16384 bytes\)' \
	'scoring: parameters [0-9]+ \+ activations [0-9]+ bytes' \
	'training at agent.max_batch 256: parameters [0-9]+ \+ gradients [0-9]+ \+ optimizer [0-9]+ \+ activations [0-9]+ bytes'; do
	grep -Eq "$part" <<<"$line" || fv_fail "the refusal does not say '$part'"
done
# The parts are the real sizes: 11,778 parameters of 4 bytes (each array
# rounded up to 64 bytes), and the optimiser holds two moment vectors.
p=$(sed -n 's/.*scoring: parameters \([0-9]*\) .*/\1/p' <<<"$line")
[ "$p" -ge 47112 ] && [ "$p" -lt $((47112 + 64 * 12)) ] || fv_fail "scorer parameters $p bytes"
o=$(sed -n 's/.* optimizer \([0-9]*\) .*/\1/p' <<<"$line")
[ "$o" -eq $((2 * p)) ] || fv_fail "optimizer $o bytes, parameters $p"
grep -q 'model v1 loaded' "$FV_TMP/compressor-2.log" && fv_fail "compressor-2 loaded the model anyway"

# Still alive, still ingesting, and the refusal is counted.
v0=$(json_field vectors "$(grep 'agent/compressor-2/metrics' "$FV_TMP/agentmetrics.log" | tail -1)")
fv_wait_for "compressor-2 metrics with models_rejected" 10 bash -c \
	"grep 'agent/compressor-2/metrics' '$FV_TMP/agentmetrics.log' | tail -1 | grep -Eq '\"models_rejected\":[1-9]'" ||
	fv_fail "models_rejected not counted"
fv_wait_for "compressor-2 keeps ingesting" 10 bash -c \
	"v=\$(grep 'agent/compressor-2/metrics' '$FV_TMP/agentmetrics.log' | tail -1 | sed -n 's/.*\"vectors\":\([0-9]*\).*/\1/p'); [ \"\${v:-0}\" -gt '${v0:-0}' ]" ||
	fv_fail "compressor-2 stopped ingesting"
kill -0 "${AGENT_PIDS[compressor-2]}" || fv_fail "compressor-2 exited"
echo "ok: pump-1 loaded sae, compressor-2 refused it within 16 KiB and kept running"
