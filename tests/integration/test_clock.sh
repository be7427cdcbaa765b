#!/usr/bin/env bash
# Wall-clock jumps (libfaketime) do not move the coordinator's deadlines:
# they run on the monotonic clock.
#
# A coordinator under libfaketime (LD_PRELOAD; its wall clock read from a
# file on every call, CLOCK_MONOTONIC left alone) with one live agent that
# never answers (a retained "online" state): every statistics round is
# abandoned at its 3 s deadline and starts again 0.2 s later. While rounds
# run, the wall clock jumps 1 hour forward, then 2 hours back. Each round
# must still last 3 s, by the coordinator's own account (duration_ms, on
# the monotonic clock) and by this script's unfaked clock: a deadline kept
# on the wall clock would end a round at once on the forward jump and hang
# for two hours on the backward one.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
FT=
for d in /usr/lib/x86_64-linux-gnu/faketime /usr/lib/aarch64-linux-gnu/faketime /usr/lib/faketime; do
	[ -r "$d/libfaketime.so.1" ] && FT=$d/libfaketime.so.1 && break
done
[ -n "$FT" ] || fv_skip "libfaketime is not installed (scripts/deps installs faketime)"
fv_tmpdir
fv_broker_start
F=clk
cat > "$FV_TMP/coordinator.ini" <<EOF
[coordinator]
fleet = $F
broker = $FV_BROKER_URI
state_dir = $FV_TMP/state
log_level = info
[model]
window = 4
channels = 3
hidden = 8,2,8
[round]
min_agents = 1
deadline_ms = 3000
interval_ms = 200
max_extensions = 0
EOF
mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -r -q 1 -t "fedvigil/v1/$F/agent/ghost-9/state" \
	-m '{"state":"online"}'
# Each metrics message with its arrival time (mosquitto_sub's clock, not
# faked), in seconds.
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/$F/coord/metrics" -F '%U %p' \
	> "$FV_TMP/metrics.txt" 2>/dev/null &
fv_track "$!"
sleep 0.3
echo "+0" > "$FV_TMP/faketime"
# verify_asan_link_order=0: an ASan build accepts the preloaded library.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
	LD_PRELOAD=$FT FAKETIME_TIMESTAMP_FILE=$FV_TMP/faketime FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 \
	"$FV_BINARY_DIR/fedvigil-coordinator" -c "$FV_TMP/coordinator.ini" > "$FV_TMP/coordinator.log" 2>&1 &
COORD=$!
fv_track "$COORD"
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && tail -20 "$FV_TMP/coordinator.log"; fv_cleanup; exit $rc' EXIT

abandoned() { grep -c '"result":"abandoned"' "$FV_TMP/metrics.txt" || true; }
fv_wait_for "a first abandoned round" 30 bash -c "[ \$(grep -c '\"result\":\"abandoned\"' '$FV_TMP/metrics.txt') -ge 1 ]" ||
	fv_fail "no round was abandoned at its deadline"
# Jump in the middle of a round: 1.5 s into the next one.
sleep 1.5
echo "+3600" > "$FV_TMP/faketime"
n=$(abandoned)
fv_wait_for "a round after the forward jump" 30 bash -c "[ \$(grep -c '\"result\":\"abandoned\"' '$FV_TMP/metrics.txt') -ge $((n + 2)) ]" ||
	fv_fail "rounds stopped after the forward jump"
sleep 1.5
echo "-3600" > "$FV_TMP/faketime"
n=$(abandoned)
fv_wait_for "a round after the backward jump" 30 bash -c "[ \$(grep -c '\"result\":\"abandoned\"' '$FV_TMP/metrics.txt') -ge $((n + 2)) ]" ||
	fv_fail "rounds stopped after the backward jump (a deadline on the wall clock?)"
kill -0 "$COORD" || fv_fail "the coordinator died"

# The jumps happened: the coordinator's log timestamps (wall clock) moved.
hours=$(sed -n 's/^[0-9-]*T\([0-9][0-9]\):.*/\1/p' "$FV_TMP/coordinator.log" | uniq | wc -l)
[ "$hours" -ge 3 ] || fv_fail "the faked wall clock did not jump (log hours: $(sed -n 's/^[0-9-]*T\([0-9][0-9]\):.*/\1/p' "$FV_TMP/coordinator.log" | uniq | tr '\n' ' '))"
# Every round lasted its deadline: duration_ms by the monotonic clock, and
# the gap between abandons (deadline + interval) by ours.
grep '"result":"abandoned"' "$FV_TMP/metrics.txt" > "$FV_TMP/ab.txt"
awk '{ $1 = int($1 * 1000); match($0, /"duration_ms":[0-9]+/); d = substr($0, RSTART + 14, RLENGTH - 14)
	printf "round: duration_ms %d", d
	if (NR > 1) printf ", %d ms after the previous one", $1 - prev
	printf "\n"
	if (d < 2990 || d > 4500) bad = 1
	if (NR > 1 && ($1 - prev < 2800 || $1 - prev > 6000)) bad = 1
	prev = $1 }
	END { exit bad }' "$FV_TMP/ab.txt" || fv_fail "a round did not last its 3 s deadline"
echo "ok: $(wc -l < "$FV_TMP/ab.txt") rounds, each 3 s, across wall-clock jumps of +1 h and -2 h"
