#!/usr/bin/env bash
# The coordinator killed (SIGKILL) at every point of a round, with real
# agents and a real Mosquitto: after each restart every update counts
# exactly once and every model version is bit-identical to an
# uninterrupted run's.
#
# Two fleets on one broker, each with three real fedvigil-agents that first
# take the same 600 rows per machine (fedvigil-replay; nothing arrives
# afterwards, so the agents' training is deterministic), then a coordinator
# runs the statistics round and 6 training rounds:
#   ref    uninterrupted;
#   crash  the coordinator kills itself (FV_TEST_CRASH, a test-only hook in
#          coordinator/coord.c that raise()s SIGKILL) at one point per round
#          and is restarted from its state file each time:
#            round 0  announced   (0 updates received)
#            round 1  accepted1   (1 of 3)
#            round 2  accepted2   (n-1)
#            round 3  accepted3   (n, before the close)
#            round 4  aggregated  (new model in memory, nothing written)
#            round 5  writing     (half of the new state file written)
#            round 6  persisted   (state written, model not yet published)
# Every model both coordinators published (v1..v7) is compared through
# fv-wiretool digest: version, round, agents aggregated, CRC-32 of the
# parameters, normalisation and column errors, threshold and loss bits.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
fv_broker_start
source "$FV_SOURCE_DIR/tests/integration/detfleet.sh"

setup ref
setup crash
sleep 0.3
start_agents ref
start_agents crash
both_ingested() { ingested ref && ingested crash; }
fv_wait_for "agents to take the rows" 60 both_ingested ||
	fv_fail "the agents did not take all $ROWS rows"

coordinator ref
REF_PID=$CPID

points=(announced@0 accepted1@1 accepted2@2 accepted3@3 aggregated@4 writing@5 persisted@6)
for p in "${points[@]}"; do
	coordinator crash "$p"
	rc=0
	# shellcheck disable=SC2016
	timeout 120 bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 0.1; done' _ "$CPID" || true
	wait "$CPID" 2>/dev/null || rc=$?
	[ "$rc" -eq 137 ] || fv_fail "crash at $p: coordinator exited $rc, not by SIGKILL (137)"
	grep -q "FV_TEST_CRASH: killing myself at $p" "$FV_TMP/crash/coordinator.log" ||
		fv_fail "crash at $p: the hook did not fire"
	if [ "$p" = writing@5 ]; then
		# What a power cut in the write leaves: a partial new file, the
		# old state intact (it loads on the restart below).
		[ -s "$FV_TMP/crash/state/coordinator.state.new" ] ||
			fv_fail "writing@5: no partial coordinator.state.new"
		cmp -s "$FV_TMP/crash/state/coordinator.state.new" "$FV_TMP/crash/state/coordinator.state" &&
			fv_fail "writing@5: the partial file equals the state"
	fi
	echo "killed at $p"
done
coordinator crash
CRASH_PID=$CPID
for f in ref crash; do
	fv_wait_for "$f: training finished" 120 grep -q "training finished" "$FV_TMP/$f/coordinator.log" ||
		fv_fail "$f: training did not finish"
done
fv_wait_for "models v7 received" 10 bash -c \
	"[ \$(grep -c . '$FV_TMP/ref/models.hex') -ge 7 ] && [ \$(grep -c . '$FV_TMP/crash/models.hex') -ge 7 ]" ||
	fv_fail "fewer than 7 models published"

digests ref > "$FV_TMP/ref.digest"
digests crash > "$FV_TMP/crash.digest"
cat "$FV_TMP/ref.digest"
# Distinct lines: a version published twice with two contents would show.
[ "$(wc -l < "$FV_TMP/ref.digest")" -eq 7 ] || fv_fail "ref: expected models v1..v7"
grep -c ' agents=3 ' "$FV_TMP/ref.digest" | grep -qx 7 || fv_fail "ref: a model did not aggregate 3 agents"
diff "$FV_TMP/ref.digest" "$FV_TMP/crash.digest" ||
	fv_fail "the restarted coordinator's models differ from the uninterrupted run's"

# Resent updates: the agents answered re-announced rounds from their cache.
grep -h "announced again: resent our update" "$FV_TMP"/crash/*.log | wc -l | sed 's/^/resent updates: /'
grep -q "rejected" "$FV_TMP/ref/coordinator.log" && fv_fail "ref: updates rejected"
echo "ok: 7 kills, every model bit-identical to the uninterrupted run's"
