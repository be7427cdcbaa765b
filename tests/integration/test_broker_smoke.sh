#!/usr/bin/env bash
# lib.sh itself: a broker on a free port carries a retained message from
# mosquitto_pub to a later mosquitto_sub, stops, and restarts on the same
# port; fv_wait_for times out; fv_cleanup kills tracked processes.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
command -v mosquitto_pub >/dev/null || fv_skip "mosquitto-clients not installed"
fv_tmpdir
fv_broker_start
[ -n "$FV_BROKER_PORT" ] && [ -n "$FV_BROKER_PID" ] || fv_fail "broker variables not set"
kill -0 "$FV_BROKER_PID" || fv_fail "broker not running"

sub1() { mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -C 1 -W 5 -t "$1" 2>/dev/null || true; }

mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -q 1 -r -t fvtest/smoke -m "hello $$"
got=$(sub1 fvtest/smoke)
[ "$got" = "hello $$" ] || fv_fail "retained message: got '$got'"

# A live subscriber tracked for cleanup receives a plain publish.
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -v -t 'fvtest/live/#' >"$FV_TMP/live.log" 2>/dev/null &
SUB=$!
fv_track "$SUB"
# (publish until seen: the subscriber may not be connected yet)
fv_wait_for "live message" 10 bash -c "mosquitto_pub -h 127.0.0.1 -p $FV_BROKER_PORT \
	-t fvtest/live/x -m up && grep -q 'fvtest/live/x up' '$FV_TMP/live.log'" ||
	fv_fail "subscriber did not get the message"

# fv_wait_for gives up.
if fv_wait_for "never" 1 false; then fv_fail "fv_wait_for succeeded on false"; fi

# Stop and restart on the same port; no persistence, so the retained
# message is gone.
port=$FV_BROKER_PORT
old=$FV_BROKER_PID
fv_broker_stop
! kill -0 "$old" 2>/dev/null || fv_fail "broker still running after fv_broker_stop"
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fv_fail "port $port still open"
fv_broker_start "$port"
[ "$FV_BROKER_PORT" = "$port" ] || fv_fail "restarted on $FV_BROKER_PORT, not $port"
[ -z "$(mosquitto_sub -h 127.0.0.1 -p "$port" -C 1 -W 1 -t fvtest/smoke 2>/dev/null || true)" ] ||
	fv_fail "retained message survived a restart without persistence"

fv_cleanup
! kill -0 "$SUB" 2>/dev/null || fv_fail "tracked subscriber survived fv_cleanup"
[ ! -d "$FV_TMP" ] || [ "${FV_KEEP:-0}" = 1 ] || fv_fail "$FV_TMP not removed"
echo PASS
