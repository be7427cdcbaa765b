#!/usr/bin/env bash
# fedvigil-swarm against a real coordinator and a real Mosquitto (with
# deploy/mosquitto/limits.conf): 50 simulated agents, each on its own
# connection, go through the statistics round and two training rounds.
# Checks (a smoke test, nothing timed):
#   - the coordinator saw 50 agents come online and, for every round,
#     accepted an update from each of the 50 (its log names them) and
#     aggregated 50 (coord/metrics: agents, selected, missed, mqtt_dropped);
#   - the swarm's own report agrees (sent = aggregated = 50 per round);
#   - on a clean exit every agent publishes "offline" and the coordinator
#     counts them out.
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
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && { tail -30 "$FV_TMP/swarm.log"; fleet_dump_logs; }; fv_cleanup; exit $rc' EXIT

N=50
cat >"$FV_TMP/coordinator.ini" <<EOF
[coordinator]
fleet = $FV_FLEET
broker = tcp://127.0.0.1:$FV_BROKER_PORT
state_dir = $FV_TMP/state
log_level = info
[model]
preset = ae20
window = 4
stride = 2
channels = 5
[round]
rounds = 2
min_agents = $N
deadline_ms = 20000
interval_ms = 300
epochs = 1
min_samples = 20
EOF
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
sleep 0.3
fleet_start_coordinator
"$FV_BIN/fedvigil-swarm" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --fleet "$FV_FLEET" \
	--agents $N --rounds 2 --idle-timeout 30 --output "$FV_TMP/rounds.jsonl" \
	--log-level info >"$FV_TMP/swarm.log" 2>&1 &
SWARM=$!
fv_track "$SWARM"
wait "$SWARM" || fv_fail "fedvigil-swarm exited with $?"

C=$FV_TMP/coordinator.log
M=$FV_TMP/metrics.log
# The swarm's agents, by the names the coordinator logged as coming online.
grep -o "agent sw-[^ ]* online" "$C" | awk '{print $2}' | sort -u >"$FV_TMP/agents.txt"
online=$(wc -l <"$FV_TMP/agents.txt")
[ "$online" -eq $N ] || fv_fail "the coordinator saw $online of $N swarm agents come online"
for r in 0 1 2; do
	grep -o "update from sw-[^ ]* for round $r accepted" "$C" | awk '{print $3}' | sort -u \
		>"$FV_TMP/accepted-$r.txt"
	if ! cmp -s "$FV_TMP/agents.txt" "$FV_TMP/accepted-$r.txt"; then
		diff "$FV_TMP/agents.txt" "$FV_TMP/accepted-$r.txt" >&2 || true
		fv_fail "round $r: the coordinator did not accept an update from every swarm agent"
	fi
	line=$(grep "\"round\":$r," "$M" | head -1)
	[ -n "$line" ] || fv_fail "no coord/metrics for round $r"
	for want in "\"agents\":$N" "\"selected\":$N" '"result":"closed"' '"missed":0' \
		'"mqtt_dropped":0'; do
		grep -q "$want" <<<"$line" || fv_fail "round $r metrics lack $want: $line"
	done
	sw=$(grep "\"round\":$r," "$FV_TMP/rounds.jsonl" | head -1)
	[ -n "$sw" ] || fv_fail "the swarm did not report round $r"
	for want in "\"sent\":$N" "\"aggregated\":$N" '"result":"closed"'; do
		grep -q "$want" <<<"$sw" || fv_fail "the swarm's round $r report lacks $want: $sw"
	done
done
grep -q '"kind":"train".*"loss":' "$M" || fv_fail "no training metrics"
# Every update was aggregated: nothing rejected anywhere.
if grep -q "rejected" "$C"; then
	grep "rejected" "$C" | head -5 >&2
	fv_fail "the coordinator rejected swarm updates"
fi
# A clean exit: every agent said offline.
fv_wait_for "every swarm agent offline" 10 grep -q "offline (0 live)" "$C" ||
	fv_fail "the coordinator still counts swarm agents live after the swarm exited"
grep -q "swarm done: .* 0 connections lost" "$FV_TMP/swarm.log" ||
	fv_fail "the swarm lost connections: $(grep 'swarm done' "$FV_TMP/swarm.log")"
echo "ok: $N swarm agents, 3 rounds, every update aggregated"
