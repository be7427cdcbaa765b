#!/usr/bin/env bash
# Agents SIGKILLed mid-training and mid-publish: rounds are closed by the
# deadline policy with the updates that came, nothing hangs, and the
# restarted agents take the current model from the retained message.
#
# Fleet from tests/integration/detfleet.sh (three real agents that take
# fixed rows), 3 training rounds, quorum 0.6, a 4 s deadline, no
# extension. Test-only hook FV_TEST_CRASH (agent/agent.c):
#   motor-3       training@1    killed as it starts training for round 1
#   compressor-2  publishing@2  killed once its round-2 update is handed to
#                               the MQTT client (on the wire or not)
# Both are restarted after their round closed. They have no rows any more
# (they were in the killed processes), so they cannot answer round 3: it
# closes at its deadline with pump-1's update.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
fv_broker_start
source "$FV_SOURCE_DIR/tests/integration/detfleet.sh"
DF_ROUNDS=3
f=ac
setup "$f" "quorum = 0.6" "deadline_ms = 4000" "max_extensions = 0"
D=$FV_TMP/$f
LOG=$D/coordinator.log
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/$f/coord/metrics" > "$D/metrics.txt" 2>/dev/null &
fv_track "$!"
echo "FV_TEST_CRASH=training@1" > "$D/motor-3.env"
echo "FV_TEST_CRASH=publishing@2" > "$D/compressor-2.env"
sleep 0.3
start_agents "$f"
fv_wait_for "agents to take the rows" 60 ingested "$f" || fv_fail "the agents did not take the rows"
coordinator "$f"

# wait_dead AGENT POINT: it killed itself there (exit 137); restart it.
wait_dead() {
	local pid rc=0
	pid=$(cat "$D/$1.pid")
	fv_wait_for "$1 killed at $2" 90 bash -c "! kill -0 $pid 2>/dev/null" || fv_fail "$1 was not killed at $2"
	wait "$pid" 2>/dev/null || rc=$?
	[ "$rc" = 137 ] || fv_fail "$1 exited $rc, not by SIGKILL"
	grep -q "FV_TEST_CRASH: killing myself at $2" "$D/$1.log" || fv_fail "$1: the hook did not fire"
}
restart() {
	"$BIN/fedvigil-agent" -c "$D/$1.ini" >> "$D/$1.log" 2>&1 &
	fv_track "$!"
	echo "$!" > "$D/$1.pid"
}
wait_dead motor-3 training@1
fv_wait_for "round 1 closed" 30 grep -q "round 1 closed" "$LOG" || fv_fail "round 1 did not close"
grep "round 1 closed" "$LOG" | cut -c1-200
grep -q "round 1 closed: agents=2/3" "$LOG" || fv_fail "round 1 did not close with the 2 living agents"
restart motor-3
wait_dead compressor-2 publishing@2
fv_wait_for "round 2 closed" 30 grep -q "round 2 closed" "$LOG" || fv_fail "round 2 did not close"
grep "round 2 closed" "$LOG" | cut -c1-200
restart compressor-2
fv_wait_for "training finished" 60 grep -q "training finished" "$LOG" || fv_fail "training did not finish"
grep "round 3 closed" "$LOG" | cut -c1-200
kill -0 "$CPID" || fv_fail "the coordinator died"
# The restarted agents hold the final model v4 (retained), and run.
for a in motor-3 compressor-2; do
	fv_wait_for "$a on v4" 20 bash -c "grep '\"agent\":\"$a\"' '$D/agentmetrics.txt' | tail -1 | grep -q '\"model_version\":4,'" ||
		fv_fail "$a did not get model v4 after its restart"
	kill -0 "$(cat "$D/$a.pid")" || fv_fail "$a died after its restart"
done
# Every round was closed (none abandoned), each with what came.
[ "$(grep -c '"result":"closed"' "$D/metrics.txt")" -ge 4 ] || fv_fail "fewer than 4 rounds closed"
grep -q '"result":"abandoned"' "$D/metrics.txt" && fv_fail "a round was abandoned"
echo "ok: agents killed mid-training and mid-publish; rounds closed by the deadline; restarted agents on v4"
