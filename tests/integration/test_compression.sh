#!/usr/bin/env bash
# Bytes on the wire per [compression] setting, through real daemons and a
# real Mosquitto: five fleets side by side on one broker (one coordinator and
# one agent each, the same model), one per setting. Each update's payload
# length is read off the broker by an independent mosquitto_sub, and must
# match what the agent logged and what its coordinator counted; then:
#   fp32 >= 4 bytes per parameter; fp16 about half of it, int8 about a
#   quarter, top-k 10 % fp16 < 1/8 and top-k 10 % int8 < 1/12 of fp32, each
#   smaller than the one before it; every fleet's training round closes with
#   its own encoding and a finite loss.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_sub >/dev/null || fv_skip "mosquitto-clients not installed"
fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

chans=(vibration temperature pressure flow current)
# name | encoding | [compression] lines | agent (a machine of the simulator)
settings=(
	"fp32|fp32|encoding = fp32|pump-1"
	"fp16|fp16|encoding = fp16|compressor-2"
	"int8|int8|encoding = int8|motor-3"
	"tkf16|topk-fp16|encoding = fp16;topk = 0.1|pump-4"
	"tki8|topk-int8|encoding = int8;topk = 0.1|compressor-5"
)
# payload lengths, independent of our code: "topic length"
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/+/round/+/update/+" \
	-F '%t %l' >"$FV_TMP/lengths.log" 2>/dev/null &
fv_track "$!"
fleet_sub metrics "fedvigil/v1/+/coord/metrics"
sleep 0.3
FV_ROUND_INTERVAL_MS=300
for s in "${settings[@]}"; do
	IFS='|' read -r name enc lines agent <<<"$s"
	IFS=';' read -r -a comp <<<"$lines"
	FV_FLEET=$name
	fleet_write_coordinator 1 1 5 "[round]" "epochs = 1" "min_samples = 100" "[compression]" "${comp[@]}"
	sed "s#^state_dir = .*#state_dir = $FV_TMP/state-$name#" "$FV_TMP/coordinator.ini" >"$FV_TMP/$name.coord.ini"
	"$FV_BIN/fedvigil-coordinator" -c "$FV_TMP/$name.coord.ini" >"$FV_TMP/$name.coordinator.log" 2>&1 &
	fv_track "$!"
	fleet_write_agent "$agent" plant 1000 "${chans[@]}"
	fleet_start_agent "$agent"
done
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 5 \
	--period-ms 1000 --speed 200 --duration 40000 --normal 40000 --faults 0 --seed 5 \
	>"$FV_TMP/sim.log" 2>&1 &
fv_track "$!"

M=$FV_TMP/metrics.log
for s in "${settings[@]}"; do
	IFS='|' read -r name _ <<<"$s"
	fv_wait_for "fleet $name's training round" 90 \
		grep -q "^fedvigil/v1/$name/coord/metrics .*\"kind\":\"train\".*\"result\":\"closed\"" "$M" ||
		fv_fail "fleet $name closed no training round"
done

np=$(sed -n 's/.*loaded: .*, \([0-9]*\) parameters.*/\1/p' "$FV_TMP/pump-1.log" | head -1)
[ -n "$np" ] || fv_fail "no parameter count in pump-1's log"
declare -A B
prev=""
for s in "${settings[@]}"; do
	IFS='|' read -r name enc _ agent <<<"$s"
	l=$(grep "^fedvigil/v1/$name/coord/metrics .*\"kind\":\"train\".*\"result\":\"closed\"" "$M" | head -1)
	r=$(json_field round "$l")
	grep -q "\"encoding\":\"$enc\"" <<<"$l" || fv_fail "fleet $name's round is not $enc: $l"
	[ "$(json_field agents "$l")" = 1 ] || fv_fail "fleet $name's round did not aggregate one update: $l"
	loss=$(json_field loss "$l")
	awk -v x="$loss" 'BEGIN { exit !(x == x + 0 && x > 0 && x < 1e6) }' || fv_fail "fleet $name: loss '$loss'"
	# The same length three ways: the broker's delivery, the agent, the coordinator.
	wire=$(awk -v t="fedvigil/v1/$name/round/$r/update/$agent" '$1 == t { print $2; exit }' "$FV_TMP/lengths.log")
	[ -n "$wire" ] || fv_fail "no update of $agent for round $r seen on the broker"
	grep -q "round $r: trained on .* update $wire bytes ($enc)" "$FV_TMP/$agent.log" ||
		fv_fail "$agent did not log a $wire-byte $enc update for round $r: $(grep "round $r: trained" "$FV_TMP/$agent.log")"
	[ "$(json_field update_bytes "$l")" = "$wire" ] ||
		fv_fail "fleet $name's coordinator counted $(json_field update_bytes "$l") bytes, the broker carried $wire"
	B[$name]=$wire
	[ -z "$prev" ] || [ "$wire" -lt "${B[$prev]}" ] || fv_fail "$name update ($wire B) not smaller than $prev (${B[$prev]} B)"
	prev=$name
	echo "$enc: $wire bytes per update ($np parameters)"
done
f=${B[fp32]}
[ "$f" -ge $((4 * np)) ] && [ "$f" -lt $((4 * np + 4096)) ] || fv_fail "fp32 update of $f bytes for $np parameters"
[ $((B[fp16] * 100)) -lt $((f * 55)) ] || fv_fail "fp16 update ${B[fp16]} B is not about half of fp32's $f B"
[ $((B[int8] * 100)) -lt $((f * 30)) ] || fv_fail "int8 update ${B[int8]} B is not about a quarter of fp32's $f B"
[ $((B[tkf16] * 8)) -lt "$f" ] || fv_fail "top-k 10 % fp16 update ${B[tkf16]} B is not < 1/8 of fp32's $f B"
[ $((B[tki8] * 12)) -lt "$f" ] || fv_fail "top-k 10 % int8 update ${B[tki8]} B is not < 1/12 of fp32's $f B"
echo "PASS"
