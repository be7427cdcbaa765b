#!/usr/bin/env bash
# fedvigil-coordinator on its own, against a real Mosquitto, with fake agents
# made of mosquitto_pub: command line (--help, --version, --check-config,
# --dump-config, precedence), bad configuration (exit 2, file:line), waiting
# for min_agents, the retained RoundAnnounce, rejected updates, SIGTERM
# (exit 0, coord/state offline), and a corrupt state file (refused; --reset
# starts over). The full agents + coordinator loop is test_loop.sh.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
BIN=${FV_BINARY_DIR:-$FV_SOURCE_DIR/build}/fedvigil-coordinator
[ -x "$BIN" ] || fv_skip "$BIN not built"
command -v mosquitto_pub >/dev/null || fv_skip "mosquitto-clients not installed"
FLEET=ctest
ROOT=fedvigil/v1/$FLEET
trap 'rc=$?; if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then tail -30 "$FV_TMP"/coord*.log 2>/dev/null; fi; fv_cleanup; exit $rc' EXIT

# ---- command line, no broker needed ----
"$BIN" --help >"$FV_TMP/help.txt" || fv_fail "--help exited $?"
for k in coordinator.fleet model.window round.deadline_ms round.max_extensions \
	threshold.percentile --set --dump-config --reset; do
	grep -q -- "$k" "$FV_TMP/help.txt" || fv_fail "--help does not mention $k"
done
v=$("$BIN" --version) || fv_fail "--version exited $?"
grep -Eq '^fedvigil-coordinator [0-9]+\.[0-9]+\.[0-9]+' <<<"$v" || fv_fail "--version printed '$v'"

cat >"$FV_TMP/good.ini" <<EOF
# a comment
[coordinator]
fleet = $FLEET
state_dir = $FV_TMP/state
[round]
rounds = 4
min_agents = 2
deadline_ms = 5000
EOF
"$BIN" -c "$FV_TMP/good.ini" --check-config >/dev/null || fv_fail "--check-config of a good file exited $?"
"$BIN" -c "$FV_TMP/good.ini" --rounds 9 --set threshold.margin=2.5 --dump-config >"$FV_TMP/dump.ini" ||
	fv_fail "--dump-config exited $?"
grep -Eq '^rounds *= *9' "$FV_TMP/dump.ini" || fv_fail "--rounds did not override the file"
grep -Eq '^min_agents *= *2' "$FV_TMP/dump.ini" || fv_fail "file value min_agents lost"
grep -Eq '^margin *= *2\.5' "$FV_TMP/dump.ini" || fv_fail "--set threshold.margin not applied"
grep -Eq '^window *= *10' "$FV_TMP/dump.ini" || fv_fail "default window missing from dump"
# The dump is itself a valid config.
"$BIN" -c "$FV_TMP/dump.ini" --check-config >/dev/null || fv_fail "the dumped config does not load"

# Bad values: exit 2 and a message naming file:line and the key.
cp "$FV_TMP/good.ini" "$FV_TMP/bad.ini"
echo "quorum = 1.5" >>"$FV_TMP/bad.ini"
line=$(wc -l <"$FV_TMP/bad.ini")
rc=0; "$BIN" -c "$FV_TMP/bad.ini" --check-config 2>"$FV_TMP/bad.err" || rc=$?
[ $rc -eq 2 ] || fv_fail "bad quorum: exit $rc, expected 2"
grep -q "bad.ini:$line" "$FV_TMP/bad.err" || fv_fail "no file:line in: $(cat "$FV_TMP/bad.err")"
grep -q "quorum" "$FV_TMP/bad.err" || fv_fail "key not named in: $(cat "$FV_TMP/bad.err")"
printf '[model]\nwindow = abc\n' >"$FV_TMP/bad2.ini"
rc=0; "$BIN" -c "$FV_TMP/bad2.ini" --check-config 2>"$FV_TMP/bad2.err" || rc=$?
[ $rc -eq 2 ] || fv_fail "window = abc: exit $rc, expected 2"
grep -q "bad2.ini:2" "$FV_TMP/bad2.err" || fv_fail "no file:line in: $(cat "$FV_TMP/bad2.err")"
grep -q "1\.\.1024" "$FV_TMP/bad2.err" || fv_fail "range not named in: $(cat "$FV_TMP/bad2.err")"
printf '[round]\nno_such_key = 1\n' >"$FV_TMP/bad3.ini"
rc=0; "$BIN" -c "$FV_TMP/bad3.ini" --check-config 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fv_fail "unknown key: exit $rc, expected 2"
for bad in "--fleet a/b" "--id has+plus" "--set model.hidden=32,x" "--set round.nokey=1" \
	"--log-level loud" "--set model.window=1024 --set model.channels=256" "--bogus"; do
	rc=0
	# shellcheck disable=SC2086
	"$BIN" -c "$FV_TMP/good.ini" $bad --check-config >/dev/null 2>&1 || rc=$?
	[ $rc -eq 2 ] || fv_fail "'$bad': exit $rc, expected 2"
done
rc=0; "$BIN" -c "$FV_TMP/missing.ini" --check-config 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fv_fail "missing config file: exit $rc, expected 2"

# ---- against a broker ----
fv_broker_start
sub1() { mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -C 1 -W "${2:-3}" -t "$1" 2>/dev/null || true; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" "$@"; }
CFG=(-c "$FV_TMP/good.ini" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --set round.interval_ms=200)

"$BIN" "${CFG[@]}" --set metrics.listen=0 >"$FV_TMP/coord1.log" 2>&1 &
COORD=$!
fv_track "$COORD"
fv_wait_for "coordinator birth" 10 bash -c "mosquitto_sub -h 127.0.0.1 -p $FV_BROKER_PORT -C 1 -W 2 -t '$ROOT/coord/state' | grep -q '\"online\"'" || fv_fail "timed out"
st=$(sub1 "$ROOT/coord/state")
grep -q '"id":"coordinator"' <<<"$st" || fv_fail "birth lacks the id: $st"
grep -q '"version":"' <<<"$st" || fv_fail "birth lacks the version: $st"

# One agent is not enough (min_agents = 2): no announcement yet.
pub -r -q 1 -t "$ROOT/agent/pump-1/state" -m '{"state":"online","id":"pump-1"}'
sleep 1
[ -z "$(sub1 "$ROOT/round" 1)" ] || fv_fail "round announced with 1 of 2 agents"
grep -q "waiting for 2 live agent" "$FV_TMP/coord1.log" || fv_fail "no 'waiting for agents' log"
[ "$(grep -c "waiting for" "$FV_TMP/coord1.log")" -eq 1 ] || fv_fail "'waiting' logged more than once"
# An agent that is offline or says nothing useful does not count.
pub -r -q 1 -t "$ROOT/agent/pump-9/state" -m '{"state":"offline"}'
pub -r -q 1 -t "$ROOT/agent/pump-8/state" -m 'not json'
sleep 0.5
[ -z "$(sub1 "$ROOT/round" 1)" ] || fv_fail "round announced with offline agents counted"

# The second agent: the statistics round (R=0) is announced, retained,
# listing both agents.
pub -r -q 1 -t "$ROOT/agent/press-2/state" -m '{"state":"online","id":"press-2"}'
fv_wait_for "retained RoundAnnounce" 10 bash -c "[ \$(mosquitto_sub -h 127.0.0.1 -p $FV_BROKER_PORT -C 1 -W 2 -t '$ROOT/round' | wc -c) -gt 1 ]" || fv_fail "timed out"
sub1 "$ROOT/round" >"$FV_TMP/announce.bin"
grep -aq "pump-1" "$FV_TMP/announce.bin" || fv_fail "announcement does not select pump-1"
grep -aq "press-2" "$FV_TMP/announce.bin" || fv_fail "announcement does not select press-2"
grep -aq "pump-9" "$FV_TMP/announce.bin" && fv_fail "announcement selects the offline pump-9"
grep -q "round 0 (stats" "$FV_TMP/coord1.log" || fv_fail "no log of round 0's announcement"

# Bad updates are rejected with a counted, logged reason; the daemon lives on.
pub -q 1 -t "$ROOT/round/0/update/pump-1" -m 'garbage'
pub -q 1 -t "$ROOT/round/7/update/pump-1" -m 'late'
fv_wait_for "rejections logged" 10 bash -c "grep -q 'update from pump-1 for round 7 rejected: stale' '$FV_TMP/coord1.log' && grep -q 'update from pump-1 for round 0 rejected' '$FV_TMP/coord1.log'" || fv_fail "timed out"
kill -0 "$COORD" || fv_fail "coordinator died on bad updates"
# ... and counted by reason on the Prometheus page.
port=$(sed -n 's|.*Prometheus metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$FV_TMP/coord1.log")
[ -n "$port" ] || fv_fail "no Prometheus port logged"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
page=$(timeout 5 cat <&3)
exec 3<&- 3>&-
rej=$(grep '^fedvigil_coordinator_updates_rejected_total{' <<<"$page")
grep -qx 'fedvigil_coordinator_updates_rejected_total{reason="stale"} 1' <<<"$rej" ||
	fv_fail "the stale update is not counted: $rej"
[ "$(awk '{ n += $2 } END { print n }' <<<"$rej")" -eq 2 ] || fv_fail "not 2 rejections in all: $rej"
grep -q '^fedvigil_coordinator_updates_accepted_total 0' <<<"$page" || fv_fail "a bad update was accepted"

# SIGTERM: exit 0, coord/state offline (retained), "stopped" logged.
kill -TERM "$COORD"
rc=0; wait "$COORD" || rc=$?
[ $rc -eq 0 ] || fv_fail "coordinator exited $rc on SIGTERM"
st=$(sub1 "$ROOT/coord/state")
grep -q '"state":"offline"' <<<"$st" || fv_fail "coord/state after SIGTERM: $st"
grep -q "stopped" "$FV_TMP/coord1.log" || fv_fail "no 'stopped' log"

# ---- corrupt state file: refused, unless --reset ----
mkdir -p "$FV_TMP/state"
printf 'FVST\001\000\000\000garbage-garbage-garbage' >"$FV_TMP/state/coordinator.state"
rc=0; timeout 10 "$BIN" "${CFG[@]}" >"$FV_TMP/coord2.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fv_fail "corrupt state file: exit $rc, expected 1"
grep -q "coordinator.state is corrupt" "$FV_TMP/coord2.log" || fv_fail "no reason given: $(cat "$FV_TMP/coord2.log")"
: >"$FV_TMP/state/coordinator.state" # empty: truncated
rc=0; timeout 10 "$BIN" "${CFG[@]}" >"$FV_TMP/coord3.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fv_fail "empty state file: exit $rc, expected 1"

"$BIN" "${CFG[@]}" --reset >"$FV_TMP/coord4.log" 2>&1 &
COORD=$!
fv_track "$COORD"
fv_wait_for "--reset starts a statistics round" 10 grep -q "round 0 (stats" "$FV_TMP/coord4.log" || fv_fail "timed out"
kill -TERM "$COORD"
rc=0; wait "$COORD" || rc=$?
[ $rc -eq 0 ] || fv_fail "coordinator (--reset) exited $rc on SIGTERM"
echo "PASS"
