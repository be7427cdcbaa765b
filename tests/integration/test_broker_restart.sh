#!/usr/bin/env bash
# The broker restarted mid-round, cleanly (SIGTERM) and by SIGKILL, with
# persistence on: the retained model survives on disk, every daemon
# reconnects by itself, each update counts once, and every model is
# bit-identical to a fleet's on a broker that never went away.
#
# Fleet "ref" runs on the broker of lib.sh (no persistence), fleet "brk" on
# a second Mosquitto with the settings docs/reliability.md recommends:
#   persistence true, persistence_location DIR, autosave_interval 1
# Both fleets (tests/integration/detfleet.sh: three real agents, the same
# rows) have a fourth agent, ghost-9, played by this script as in
# test_hostile.sh: it answers each round with a copy of pump-1's update,
# so a round stays open until the script is done with it.
#   round 1 of brk: pump-1's update accepted, then the broker gets SIGTERM;
#   round 2 of brk: pump-1's update accepted, 2.5 s later SIGKILL.
# After each stop the broker's database is first opened on a spare port no
# daemon knows (what survived on disk: the retained model must be there),
# then the broker starts again on its own port.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
fv_broker_start
source "$FV_SOURCE_DIR/tests/integration/detfleet.sh"
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
B=$FV_TMP/brokerb
mkdir -p "$B/db"
PB=$(fv_free_port)
# brokerb PORT: start the persistent broker on PORT; its PID in BPID.
brokerb() {
	cat > "$B/$1.conf" <<-EOF
		listener $1 127.0.0.1
		user $(id -un)
		allow_anonymous true
		persistence true
		persistence_location $B/db/
		autosave_interval 1
		log_dest file $B/mosquitto.log
		log_type all
	EOF
	"$MOSQ" -c "$B/$1.conf" >> "$B/mosquitto.out" 2>&1 &
	BPID=$!
	fv_track "$BPID"
	fv_wait_for "broker on port $1" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" ||
		fv_fail "the persistent broker did not start on port $1"
}
# on_disk VERSION: the database alone (a broker on a spare port, no client
# but ours) holds the retained model VERSION.
on_disk() {
	local p
	p=$(fv_free_port)
	brokerb "$p"
	mosquitto_sub -h 127.0.0.1 -p "$p" -t fedvigil/v1/brk/model -C 1 -W 5 -F '%x' > "$B/disk.hex" ||
		fv_fail "no retained model in the broker's database"
	kill -TERM "$BPID"
	wait "$BPID" 2>/dev/null || true
	tr a-f A-F < "$B/disk.hex" | tr -d '\n' | basenc --base16 -d > "$B/disk.bin"
	"$TOOL" digest "$B/disk.bin" | tee -a "$FV_TMP/on_disk.txt" | grep -q "^version=$1 " ||
		fv_fail "the retained model on disk is not v$1: $(tail -1 "$FV_TMP/on_disk.txt")"
}
pub() { mosquitto_pub -h 127.0.0.1 -p "$1" -q 1 "${@:2}"; }
hexfile() { tr a-f A-F < "$1" | tr -d '\n' | basenc --base16 -d; }

brokerb "$PB"
DF_ROUNDS=3
for f in ref brk; do
	[ "$f" = ref ] && port=$FV_BROKER_PORT || port=$PB
	DF_PORT=$port setup "$f" "min_agents = 4"
	echo "$port" > "$FV_TMP/$f/port"
	pub "$port" -r -t "fedvigil/v1/$f/agent/ghost-9/state" -m '{"state":"online"}'
	for r in 0 1 2 3; do
		mosquitto_sub -h 127.0.0.1 -p "$port" -C 1 -F '%x' \
			-t "fedvigil/v1/$f/round/$r/update/pump-1" > "$FV_TMP/$f.u$r.hex" 2>/dev/null &
		fv_track "$!"
	done
done
sleep 0.3
start_agents ref
start_agents brk
both_ingested() { ingested ref && ingested brk; }
fv_wait_for "agents to take the rows" 60 both_ingested || fv_fail "the agents did not take the rows"
coordinator ref
coordinator brk
BRK_COORD=$CPID

# restart HOW VERSION ROUND: stop the broker (TERM or KILL), check the
# database, start it again, and wait until the coordinator is back: the
# agents resend their update of ROUND when it announces the round again,
# and it refuses pump-1's as a duplicate. (The agents also resend on the
# retained announcement the restarted broker hands them before the
# coordinator is back; with clean sessions those copies reach nobody.)
dups() { grep -c "update from pump-1 for round $1 rejected: duplicate" "$FV_TMP/brk/coordinator.log" || true; }
# Then every agent must be live at the coordinator again (a retained
# birth, or a new one when its reconnect comes later: Paho's backoff has
# jitter), or the next round would rightly be run without it.
all_live() {
	local a
	for a in "${AGENTS[@]}" ghost-9; do
		tail -n +"$1" "$FV_TMP/brk/coordinator.log" | grep -q "agent $a online" || return 1
	done
}
restart() {
	local n since
	n=$(dups "$3")
	since=$(($(wc -l < "$FV_TMP/brk/coordinator.log") + 1))
	kill -"$1" "$BPID"
	wait "$BPID" 2>/dev/null || true
	echo "broker $1: stopped"
	on_disk "$2"
	brokerb "$PB"
	fv_wait_for "brk: the coordinator back, pump-1's resent update refused" 60 \
		bash -c "[ \$(grep -c 'update from pump-1 for round $3 rejected: duplicate' '$FV_TMP/brk/coordinator.log') -gt $n ]" ||
		fv_fail "after the broker $1 the coordinator did not get round $3's updates again"
	fv_wait_for "brk: every agent live again" 60 all_live "$since" ||
		fv_fail "after the broker $1 not every agent came back"
}
for r in 0 1 2 3; do
	for f in ref brk; do
		fv_wait_for "$f: pump-1's round $r update" 120 test -s "$FV_TMP/$f.u$r.hex" ||
			fv_fail "$f: pump-1 did not answer round $r"
		hexfile "$FV_TMP/$f.u$r.hex" > "$FV_TMP/$f.u$r.bin"
		if [ "$f" = brk ] && [ "$r" -ge 1 ] && [ "$r" -le 2 ]; then
			fv_wait_for "brk: pump-1's round $r update accepted" 60 grep -q \
				"update from pump-1 for round $r accepted" "$FV_TMP/brk/coordinator.log" ||
				fv_fail "brk: pump-1's round-$r update was not accepted"
			if [ "$r" = 1 ]; then
				restart TERM 1 1
			else
				sleep 2.5 # > autosave_interval: v2 is on disk
				restart KILL 2 2
			fi
		fi
		"$TOOL" forge "$FV_TMP/$f.u$r.bin" "$FV_TMP/$f.ghost$r.bin" --sender ghost-9 ||
			fv_fail "forge ghost $f $r"
		pub "$(cat "$FV_TMP/$f/port")" -t "fedvigil/v1/$f/round/$r/update/ghost-9" \
			-f "$FV_TMP/$f.ghost$r.bin"
	done
done

for f in ref brk; do
	fv_wait_for "$f: training finished" 120 grep -q "training finished" "$FV_TMP/$f/coordinator.log" ||
		fv_fail "$f: training did not finish"
done
kill -0 "$BRK_COORD" || fv_fail "the coordinator died"
for a in "${AGENTS[@]}"; do
	kill -0 "$(cat "$FV_TMP/brk/$a.pid")" || fv_fail "agent $a died"
done
grep -c "reconnected to" "$FV_TMP"/brk/*.log | sed 's/^/reconnects: /'
# Updates the agents resent after the reconnects were already counted:
# refused as duplicates (or as stale, when a late reconnect hands an agent
# an old announcement after its round closed), never aggregated twice.
grep -h "rejected" "$FV_TMP/brk/coordinator.log" | grep -v "rejected: \(duplicate\|stale\)" &&
	fv_fail "rejections other than duplicates and stale resends"
echo "duplicates refused: $(grep -c "rejected: duplicate" "$FV_TMP/brk/coordinator.log")," \
	"stale resends refused: $(grep -c "rejected: stale" "$FV_TMP/brk/coordinator.log" || true)"

fv_wait_for "models v4" 10 bash -c \
	"[ \$(grep -c . '$FV_TMP/ref/models.hex') -ge 4 ] && [ \$(grep -c . '$FV_TMP/brk/models.hex') -ge 4 ]" ||
	fv_fail "fewer than 4 models published"
digests ref > "$FV_TMP/ref.digest"
digests brk > "$FV_TMP/brk.digest"
cat "$FV_TMP/ref.digest"
[ "$(wc -l < "$FV_TMP/ref.digest")" -eq 4 ] || fv_fail "ref: expected models v1..v4"
grep -c ' agents=4 ' "$FV_TMP/ref.digest" | grep -qx 4 || fv_fail "ref: a model did not aggregate 4 updates"
diff "$FV_TMP/ref.digest" "$FV_TMP/brk.digest" ||
	fv_fail "the models differ from those of the fleet whose broker stayed up"
echo "ok: broker SIGTERM and SIGKILL mid-round; retained model on disk; models bit-identical"
