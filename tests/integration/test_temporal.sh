#!/usr/bin/env bash
# The temporal model through a real fleet: the coordinator serves the conv1d
# preset (1-D convolutional autoencoder over 16-step windows of 5 channels),
# two agents on the plant simulator build it from the GlobalModel, train it
# for 3 federated rounds and score every window with it; faults injected
# after the rounds raise alerts. A third agent with a 256 KiB budget refuses
# the model, naming the bytes of its convolution activations.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

shape='conv1d 16x5: c32k7s2-c16k7s2-t16k7s2-t32k7s2-c5k7s1'
chans=(vibration temperature pressure flow current)
# Repeated sections are fine for inih: these land in [model] and [round].
# A window every 4 vectors and 1024 buffered vectors keep each round's
# training small (the model costs ~77k multiply-adds per window forward,
# 20 times test_loop's dense one), so that a loaded or sanitised build
# still closes its rounds in time.
FV_ROUND_INTERVAL_MS=1500 fleet_write_coordinator 3 2 5 "[model]" "preset = conv1d" \
	"window = 16" "stride = 4" "[round]" "lr = 0.003" "min_samples = 100"
for m in pump-1 compressor-2 motor-3; do
	fleet_write_agent "$m" plant 1000 "${chans[@]}"
	sed -i 's/^buffer = .*/buffer = 1024/' "$FV_TMP/$m.ini"
done
printf '[agent]\nmax_model_kb = 256\n' >>"$FV_TMP/motor-3.ini"
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_sub alerts "fedvigil/v1/$FV_FLEET/agent/+/alert"
fleet_sub agentmetrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
sleep 0.3
fleet_start_coordinator
fleet_start_agent pump-1
fleet_start_agent compressor-2

# 250 simulated seconds per real second: 4500 s of normal operation (18 s)
# for the rounds, then faults until 7000 s.
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 2 \
	--period-ms 1000 --speed 250 --duration 7000 --normal 4500 --faults 2 --seed 5 \
	--truth "$FV_TMP/truth.csv" --start 2026-01-01T00:00:00Z >"$FV_TMP/sim.log" 2>&1 &
SIM_PID=$!
fv_track "$SIM_PID"

fv_wait_for "the coordinator's model" 10 grep -q "layers $shape" "$FV_TMP/coordinator.log" ||
	fv_fail "the coordinator does not serve $shape"
fv_wait_for "3 training rounds" 50 bash -c "[ \$(grep -c '\"kind\":\"train\"' '$FV_TMP/metrics.log') -ge 3 ]" ||
	fv_fail "fewer than 3 training rounds"

# Every round aggregated both agents, and the loss fell.
grep '"kind":"train"' "$FV_TMP/metrics.log" | while IFS= read -r l; do
	[ "$(json_field agents "$l")" = 2 ] || fv_fail "a round aggregated $(json_field agents "$l") agents: $l"
done
first=$(grep -m1 '"kind":"train"' "$FV_TMP/metrics.log")
last=$(grep '"kind":"train"' "$FV_TMP/metrics.log" | sed -n 3p)
l0=$(json_field loss "$first"); l1=$(json_field loss "$last")
v1=$(json_field version "$last")
echo "training loss: round 1 $l0, round 3 $l1; model v$v1, threshold $(json_field threshold "$last")"
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < a) }' || fv_fail "loss did not fall: $l0 -> $l1"

# Both agents built the temporal model from the message and hold v$v1.
for m in pump-1 compressor-2; do
	grep -q "model v[0-9]* loaded: $shape" "$FV_TMP/$m.log" || fv_fail "$m did not load $shape"
	fv_wait_for "$m holds v$v1" 10 bash -c \
		"grep 'agent/$m/metrics' '$FV_TMP/agentmetrics.log' | tail -1 | grep -q '\"model_version\":$v1[,}]'" ||
		fv_fail "$m does not hold model v$v1"
done

# They score every window with it: after the rounds, with the final model,
# finite positive scores against a threshold (score log: end_ms, score,
# threshold, above, raised, model_version).
wait "$SIM_PID" || fv_fail "simulator failed"
sleep 1
for m in pump-1 compressor-2; do
	awk -F, -v v="$v1" -v m="$m" '
		$6 == v { n++; if (!($2 > 0 && $2 < 1e30) || !($3 > 0)) bad++; s += $2 }
		END {
			printf "%s: %d windows scored with v%s, mean score %.4g, %d bad\n", m, n, v, n ? s / n : 0, bad
			exit !(n >= 200 && bad == 0)
		}' "$FV_TMP/$m.scores.csv" || fv_fail "$m did not score windows with model v$v1"
done
raised=$(grep -c '"state":"raised"' "$FV_TMP/alerts.log" || true)
echo "alerts raised: $raised"
[ "$raised" -ge 1 ] || fv_fail "the faults raised no alert"
"$FV_BIN/fedvigil-score" --truth "$FV_TMP/truth.csv" --alerts "$FV_TMP/alerts.log" | tail -3

# The memory budget covers the temporal model: 256 KiB cannot hold its
# training activations at agent.max_batch 256.
fleet_start_agent motor-3
fv_wait_for "motor-3 refuses the model" 15 grep -q 'refused: it needs' "$FV_TMP/motor-3.log" ||
	fv_fail "motor-3 did not refuse the model"
line=$(grep -m1 'refused: it needs' "$FV_TMP/motor-3.log")
echo "refusal: $line"
grep -q "($shape)" <<<"$line" || fv_fail "the refusal does not name the model"
act=$(sed -n 's/.*training at agent.max_batch 256: .* activations \([0-9]*\) bytes.*/\1/p' <<<"$line")
# Per window: 8x32 + 4x16 + 8x16 + 16x32 + 16x5 layer outputs, two 512-float
# gradient buffers and the 80-float batch row, 4 bytes each, 256 windows.
[ -n "$act" ] && [ "$act" -ge $(((1040 + 1024 + 80) * 4 * 256)) ] ||
	fv_fail "training activations of $act bytes are not the conv1d model's"
kill -0 "${AGENT_PIDS[motor-3]}" || fv_fail "motor-3 exited"
echo "PASS"
