#!/usr/bin/env bash
# The coordinator's state directory on a tiny tmpfs that fills up: the
# failed state writes are reported once, the last good state file stays
# intact, rounds and models go on, and once space is freed the state is
# written again (reported once) and a restart resumes from it.
#
# Runs in a private mount namespace (unshare -m; the tmpfs never shows
# outside it). Fleet from tests/integration/detfleet.sh with a fourth
# agent, ghost-9, played by this script (as in test_hostile.sh), so that
# the disk is filled and freed between known rounds:
#   rounds 0-1  state written (v1, v2);
#   then the disk is filled: rounds 2-3 close, models v3, v4 are published,
#   both writes fail (ENOSPC), one error line; the file still holds v2;
#   then the filler is removed: rounds 4-5 write v5, v6 ("written again").
# Finally the coordinator is SIGKILLed and restarted: it resumes from v6.
set -euo pipefail
if [ -z "${FV_IN_MOUNT_NS:-}" ]; then
	for u in "unshare -m" "unshare -r -m"; do
		if $u true 2>/dev/null; then
			FV_IN_MOUNT_NS=1 exec $u bash "$0" "$@"
		fi
	done
	echo "SKIP: cannot make a private mount namespace (unshare -m)" >&2
	exit 77
fi
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
DISK=$(mktemp -d "${TMPDIR:-/tmp}/fedvigil-disk.XXXXXX")
mount -t tmpfs -o size=64k,mode=0700 fvdisk "$DISK" || fv_skip "cannot mount a tmpfs"
fv_broker_start
source "$FV_SOURCE_DIR/tests/integration/detfleet.sh"
pub() { mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -q 1 "$@"; }
hexfile() { tr a-f A-F < "$1" | tr -d '\n' | basenc --base16 -d; }
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && dump_logs; fv_cleanup; umount "$DISK"; rmdir "$DISK"; exit $rc' EXIT

DF_ROUNDS=5
f=full
setup "$f" "min_agents = 4"
sed -i "s|^state_dir = .*|state_dir = $DISK/state|" "$FV_TMP/$f/coordinator.ini"
pub -r -t "fedvigil/v1/$f/agent/ghost-9/state" -m '{"state":"online"}'
for r in 0 1 2 3 4 5; do
	mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -C 1 -F '%x' \
		-t "fedvigil/v1/$f/round/$r/update/pump-1" > "$FV_TMP/u$r.hex" 2>/dev/null &
	fv_track "$!"
done
sleep 0.3
start_agents "$f"
fv_wait_for "agents to take the rows" 60 ingested "$f" || fv_fail "the agents did not take the rows"
coordinator "$f"
LOG=$FV_TMP/$f/coordinator.log
ST=$DISK/state/coordinator.state

for r in 0 1 2 3 4 5; do
	fv_wait_for "pump-1's round $r update" 120 test -s "$FV_TMP/u$r.hex" ||
		fv_fail "pump-1 did not answer round $r"
	hexfile "$FV_TMP/u$r.hex" > "$FV_TMP/u$r.bin"
	if [ "$r" = 2 ]; then
		# v2 is on disk (round 1 closed); fill what is left.
		fv_wait_for "v2 written" 30 grep -q "round 1 closed" "$LOG" || fv_fail "round 1 did not close"
		cp "$ST" "$FV_TMP/state.v2"
		dd if=/dev/zero of="$DISK/filler" bs=1k 2>/dev/null || true
		echo "disk filled: $(df -k "$DISK" | awk 'NR == 2 { print $4 }') KiB free"
	fi
	if [ "$r" = 4 ]; then
		fv_wait_for "round 3 closed" 30 grep -q "round 3 closed" "$LOG" || fv_fail "round 3 did not close"
		cmp -s "$ST" "$FV_TMP/state.v2" || fv_fail "the state file changed while the disk was full"
		[ ! -e "$ST.new" ] || fv_fail "a partial coordinator.state.new was left on the full disk"
		rm "$DISK/filler"
		echo "disk freed"
	fi
	"$TOOL" forge "$FV_TMP/u$r.bin" "$FV_TMP/ghost$r.bin" --sender ghost-9 || fv_fail "forge ghost $r"
	pub -t "fedvigil/v1/$f/round/$r/update/ghost-9" -f "$FV_TMP/ghost$r.bin"
done
fv_wait_for "training finished" 60 grep -q "training finished" "$LOG" || fv_fail "training did not finish"
grep "cannot write\|written again" "$LOG" | cut -c1-220
[ "$(grep -c "cannot write $ST: No space left on device" "$LOG")" = 1 ] ||
	fv_fail "the full disk was not reported exactly once"
[ "$(grep -c "written again after 2 failed writes" "$LOG")" = 1 ] ||
	fv_fail "the recovery was not reported once, after 2 failed writes"
# Every version reached the broker, also those the disk could not hold.
for v in 3 4 5 6; do
	grep -q "version=$v\$" "$LOG" || fv_fail "model v$v was not published"
done
# What is on disk now is the final state: a restart resumes from it.
kill -KILL "$CPID"
wait "$CPID" 2>/dev/null || true
coordinator "$f"
fv_wait_for "resumed" 20 grep -q "resuming .* (model version 6)" "$LOG" ||
	fv_fail "the restarted coordinator did not resume from v6: $(grep resuming "$LOG" | tail -1)"
echo "ok: a full disk reported once, the state kept intact, rounds went on, state written again after"
