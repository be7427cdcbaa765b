#!/usr/bin/env bash
# Hostile update messages against a real coordinator: each is rejected and
# counted under exactly one reason, and every model the fleet publishes is
# bit-identical to a run that never saw them.
#
# Two fleets on one broker (tests/integration/detfleet.sh: three real
# agents each, the same rows), a statistics round and 3 training rounds.
# Each fleet has a fourth agent, ghost-9, played by this script: it is
# selected in every round and answers with a copy of pump-1's update of
# that round under its own name, but only when the script is done with the
# round, so round 2 of fleet "bad" stays open, whatever the timing, while
# these arrive:
#   too_big     21 MB of zeros                            (ghost-9's topic)
#   malformed   garbage bytes                             (ghost-9)
#   fleet       a valid update with fleet "other"         (ghost-9)
#   stale       header round 1 on round 2's topic         (ghost-9)
#   stale       base version 1 in round 2                 (ghost-9)
#   stale       pump-1's round-1 update as ghost-9's, unchanged otherwise
#   stale       pump-1's round-1 update replayed on round 1's topic
#   shape       one weight fewer                          (ghost-9)
#   nonfinite   first weight NaN; first weight +Inf       (ghost-9)
#   unselected  an update from intruder-7, not selected
#   other       ghost-9's update on compressor-2's topic (sender mismatch)
#   duplicate   pump-1's own round-2 update sent again after it was accepted
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
fv_broker_start
source "$FV_SOURCE_DIR/tests/integration/detfleet.sh"
pub() { mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" "$@"; }
hexfile() { tr a-f A-F < "$1" | tr -d '\n' | basenc --base16 -d; }

DF_ROUNDS=3
for f in ok bad; do
	setup "$f" "min_agents = 4"
	pub -r -q 1 -t "fedvigil/v1/$f/agent/ghost-9/state" -m '{"state":"online"}'
	for r in 0 1 2 3; do
		mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -C 1 -F '%x' \
			-t "fedvigil/v1/$f/round/$r/update/pump-1" > "$FV_TMP/$f.u$r.hex" 2>/dev/null &
		fv_track "$!"
	done
done
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/bad/coord/metrics" \
	> "$FV_TMP/bad/metrics.txt" 2>/dev/null &
fv_track "$!"
sleep 0.3
start_agents ok
start_agents bad
both_ingested() { ingested ok && ingested bad; }
fv_wait_for "agents to take the rows" 60 both_ingested || fv_fail "the agents did not take the rows"
coordinator ok
coordinator bad
BAD_PID=$CPID

T=fedvigil/v1/bad/round
G=$T/2/update/ghost-9
f() { "$TOOL" forge "$FV_TMP/bad.u1.bin" "$FV_TMP/$1.bin" "${@:2}" || fv_fail "forge $1"; }
hostile() {
	f fleet --sender ghost-9 --round 2 --base 2 --fleet other
	f round --sender ghost-9 --round 1 --base 2
	f base --sender ghost-9 --round 2 --base 1
	f replay --sender ghost-9
	f shape --sender ghost-9 --round 2 --base 2 --drop 1
	f nan --sender ghost-9 --round 2 --base 2 --nan
	f inf --sender ghost-9 --round 2 --base 2 --inf
	f intruder --sender intruder-7 --round 2 --base 2
	f mismatch --sender ghost-9 --round 2 --base 2
	head -c 21000000 /dev/zero > "$FV_TMP/big.bin"
	pub -q 1 -t "$G" -f "$FV_TMP/big.bin"
	pub -q 1 -t "$G" -m 'not a protobuf message'
	for x in fleet round base replay shape nan inf; do pub -q 1 -t "$G" -f "$FV_TMP/$x.bin"; done
	pub -q 1 -t "$T/2/update/intruder-7" -f "$FV_TMP/intruder.bin"
	pub -q 1 -t "$T/2/update/compressor-2" -f "$FV_TMP/mismatch.bin"
	pub -q 1 -t "$T/1/update/pump-1" -f "$FV_TMP/bad.u1.bin"
	fv_wait_for "pump-1's round-2 update accepted" 60 grep -q "update from pump-1 for round 2 accepted" \
		"$FV_TMP/bad/coordinator.log" || fv_fail "pump-1's round-2 update was not accepted"
	# The broker passes the messages on in the order it took them: all of
	# these reach the coordinator before ghost-9's answer closes the round.
	pub -q 1 -t "$T/2/update/pump-1" -f "$FV_TMP/bad.u2.bin"
}
# ghost-9 answers round R of fleet F once pump-1 has.
for r in 0 1 2 3; do
	for f in ok bad; do
		fv_wait_for "$f: pump-1's round $r update" 120 test -s "$FV_TMP/$f.u$r.hex" ||
			fv_fail "$f: pump-1 did not answer round $r"
		hexfile "$FV_TMP/$f.u$r.hex" > "$FV_TMP/$f.u$r.bin"
		[ "$f$r" = bad2 ] && hostile
		"$TOOL" forge "$FV_TMP/$f.u$r.bin" "$FV_TMP/$f.ghost$r.bin" --sender ghost-9 ||
			fv_fail "forge ghost $f $r"
		pub -q 1 -t "fedvigil/v1/$f/round/$r/update/ghost-9" -f "$FV_TMP/$f.ghost$r.bin"
	done
done

for f in ok bad; do
	fv_wait_for "$f: training finished" 120 grep -q "training finished" "$FV_TMP/$f/coordinator.log" ||
		fv_fail "$f: training did not finish"
done
kill -0 "$BAD_PID" || fv_fail "the coordinator died"
m=$(grep '"round":2,' "$FV_TMP/bad/metrics.txt" | tail -1)
echo "round 2: $m" | cut -c1-600
want='"rejected":{"too_big":1,"malformed":1,"schema":0,"fleet":1,"stale":4,"shape":1,"nonfinite":2,"duplicate":1,"unselected":1,"compression":0,"other":1,"signature":0}'
grep -qF "$want" <<< "$m" || fv_fail "round 2's rejection counts differ from $want"
grep -q '"agents":4,' <<< "$m" || fv_fail "round 2 did not aggregate its 4 updates"
# Rounds 1 and 3 saw nothing hostile.
for r in 1 3; do
	grep "\"round\":$r," "$FV_TMP/bad/metrics.txt" | grep -q '"rejected":{"too_big":0,"malformed":0,"schema":0,"fleet":0,"stale":0,"shape":0,"nonfinite":0,"duplicate":0,"unselected":0,"compression":0,"other":0,"signature":0}' ||
		fv_fail "round $r: unexpected rejections"
done
# Each rejection was logged with its reason (the first ten of a burst).
grep -c "update from .* for round [12] rejected" "$FV_TMP/bad/coordinator.log" | sed 's/^/rejections logged: /'

fv_wait_for "models v4" 10 bash -c \
	"[ \$(grep -c . '$FV_TMP/ok/models.hex') -ge 4 ] && [ \$(grep -c . '$FV_TMP/bad/models.hex') -ge 4 ]" ||
	fv_fail "fewer than 4 models published"
digests ok > "$FV_TMP/ok.digest"
digests bad > "$FV_TMP/bad.digest"
cat "$FV_TMP/ok.digest"
[ "$(wc -l < "$FV_TMP/ok.digest")" -eq 4 ] || fv_fail "ok: expected models v1..v4"
diff "$FV_TMP/ok.digest" "$FV_TMP/bad.digest" ||
	fv_fail "the models differ from those of the run without hostile messages"
echo "ok: 13 hostile messages, 13 rejections counted once each, models bit-identical"
