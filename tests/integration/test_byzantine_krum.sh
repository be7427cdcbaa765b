#!/usr/bin/env bash
# Hostile clients, the light check (also under ASan): one fleet of 5 honest
# fedvigil-agent processes and 2 fedvigil-adversary processes on a real
# Mosquitto, multi-Krum with krum_f = 2 (k = 7 = 2f + 3). One adversary
# sends its update sign-flipped and scaled x10 and claims 2^40 windows, the
# other Gaussian noise of norm 50.
#
# Asserts: the hostile updates are well-formed (the coordinator accepts all
# of them, rejects nothing, and logs the inflated claim), multi-Krum leaves
# out exactly the two adversaries in every training round, the honest
# agents' training loss falls and the final model reaches them. The F1
# comparison of every rule is test_byzantine.sh.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
fv_broker_start
trap 'rc=$?; set +e; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

rounds=3
pause=300
chans=(vibration temperature pressure flow current)
types=(pump compressor motor)
machines=()
for i in $(seq 1 7); do machines+=("${types[$(((i - 1) % 3))]}-$i"); done
honest=("${machines[@]:0:5}")
bad1=${machines[5]} bad2=${machines[6]}

fleet_write_coordinator "$rounds" 7 5 "[aggregation]" "algorithm = multi_krum" "krum_f = 2"
sed -i 's/^interval_ms = .*/interval_ms = 200/; s/^deadline_ms = .*/deadline_ms = 60000/' \
	"$FV_TMP/coordinator.ini"
for m in "${machines[@]}"; do fleet_write_agent "$m" plant 1000 "${chans[@]}"; done
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_sub agentmetrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
for m in "${honest[@]}"; do fleet_start_agent "$m"; done
"$FV_BIN/fedvigil-adversary" -c "$FV_TMP/$bad1.ini" --attack flip:10 --attack inflate \
	>>"$FV_TMP/$bad1.log" 2>&1 &
fv_track $!
"$FV_BIN/fedvigil-adversary" -c "$FV_TMP/$bad2.ini" --attack random:50 --seed 9 \
	>>"$FV_TMP/$bad2.log" 2>&1 &
fv_track $!
online() {
	[ "$(mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/$FV_FLEET/agent/+/state" \
		--retained-only -W 1 2>/dev/null | grep -c '"online"')" -ge 7 ]
}
fv_wait_for "7 agents online" 60 online || fv_fail "not every agent came online"

# The normal phase first, then the rounds while the simulator holds.
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 7 \
	--period-ms 1000 --speed 0 --duration $((pause + 100)) --normal $((pause + 100)) \
	--faults 0 --pause-at "$pause" --seed 5 -q >"$FV_TMP/sim.log" 2>&1 &
fv_track $!
fv_wait_for "the simulator's pause" 60 grep -q 'sim: paused' "$FV_TMP/sim.log" ||
	fv_fail "the simulator did not reach its pause"
ingested() {
	[ "$(awk -v want=$((pause - 2)) '
		{ a = $0; sub(/.*"agent":"/, "", a); sub(/".*/, "", a)
		  v = $0; sub(/.*"vectors":/, "", v); sub(/,.*/, "", v)
		  if (v + 0 >= want) ok[a] = 1 }
		END { print length(ok) }' "$FV_TMP/agentmetrics.log")" -ge 7 ]
}
fv_wait_for "every agent ingested the normal phase" 60 ingested ||
	fv_fail "not every agent ingested the normal phase"
fleet_start_coordinator
fv_wait_for "$rounds training rounds" 120 bash -c \
	"[ \$(grep -c '\"kind\":\"train\"' '$FV_TMP/metrics.log') -ge $rounds ]" ||
	fv_fail "the rounds did not finish"

# Well-formed: accepted, nothing rejected, the inflated claim as sent.
for m in "$bad1" "$bad2"; do
	n=$(grep -c "update from $m for round [0-9]* accepted" "$FV_TMP/coordinator.log" || true)
	[ "$n" -eq $((rounds + 1)) ] || fv_fail "$n updates of $m accepted, expected $((rounds + 1))"
	n=$(grep -c "round [0-9]*: sending " "$FV_TMP/$m.log" || true)
	[ "$n" -eq "$rounds" ] || fv_fail "$m rewrote $n updates, expected $rounds"
done
grep -q "update from $bad1 for round 1 accepted: 1099511627776 samples" "$FV_TMP/coordinator.log" ||
	fv_fail "the inflated claim of $bad1 is not in the coordinator's log"
grep '"kind":"train"' "$FV_TMP/metrics.log" | while IFS= read -r l; do
	rej=$(sed -n 's/.*"rejected":{\([^}]*\)}.*/\1/p' <<<"$l" | tr ',' '\n' |
		awk -F: '{ s += $2 } END { print s + 0 }')
	[ "$rej" = 0 ] || fv_fail "updates rejected: $l"
	[ "$(json_field excluded "$l")" = 2 ] || fv_fail "multi_krum did not leave out 2: $l"
done

# Left out: exactly the two adversaries, every round.
want=$(printf '%s\n' "$bad1" "$bad2" | sort | paste -sd,)
for r in $(seq 1 "$rounds"); do
	got=$(sed -n "s/.*round $r: multi_krum left out 2 of 7 updates: //p" "$FV_TMP/coordinator.log")
	[ "$got" = "$want" ] || fv_fail "round $r: multi_krum left out '$got', expected '$want'"
done
echo "multi_krum left out $want in each of $rounds rounds"

# The honest agents' loss falls; the final model is out.
for m in "${honest[@]}"; do
	l1=$(sed -n 's/.*round 1: trained on .* loss \([0-9.]*\),.*/\1/p' "$FV_TMP/$m.log")
	l3=$(sed -n "s/.*round $rounds: trained on .* loss \([0-9.]*\),.*/\1/p" "$FV_TMP/$m.log")
	awk -v a="$l1" -v b="$l3" 'BEGIN { exit !(b < a) }' ||
		fv_fail "$m: loss did not fall: round 1 $l1, round $rounds $l3"
done
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/$FV_FLEET/model" -C 1 -N -W 5 \
	>"$FV_TMP/final.pb"
"$FV_BINARY_DIR/tests/fv-model-dist" "$FV_TMP/final.pb" >"$FV_TMP/final.txt"
cat "$FV_TMP/final.txt"
grep -q "version=$((rounds + 1)) " "$FV_TMP/final.txt" || fv_fail "final model is not v$((rounds + 1))"
echo "PASS"
