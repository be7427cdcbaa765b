#!/usr/bin/env bash
# Reconnect cycles with flat memory and file descriptors: the broker drops
# an agent's and the coordinator's connections over and over (another
# client takes over their client ids, MQTT session takeover), each daemon
# reconnects by itself every time, and after the cycles their resident
# memory and open file descriptors are what they were after the first few.
#
# FV_RECONNECT_CYCLES cycles: default 10 in CI, as each waits ~4 s for
# Paho's reconnect timer (lib/mqtt/client.c); docs/reliability.md has a
# 100-cycle run. First pass only (label once): it measures the daemons,
# not new code paths.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
fv_broker_start
N=${FV_RECONNECT_CYCLES:-10}
fleet_write_coordinator 0 1 3
fleet_write_agent pump-1 plant 1000 a b c
fleet_start_coordinator
fleet_start_agent pump-1
AG=${AGENT_PIDS[pump-1]}
fv_wait_for "both connected" 20 bash -c \
	"grep -q 'connected to' '$FV_TMP/coordinator.log' && grep -q 'connected to' '$FV_TMP/pump-1.log'" ||
	fv_fail "the daemons did not connect"
reconnects() { grep -c "mqtt: reconnected to" "$1" || true; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
for i in $(seq 1 "$N"); do
	# Take over both client ids: each taker connects, publishes, leaves.
	mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -i "fedvigil-agent-$FV_FLEET-pump-1" \
		-t fv/none -m x >/dev/null 2>&1 || true
	mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -i "fedvigil-coord-$FV_FLEET-coordinator" \
		-t fv/none -m x >/dev/null 2>&1 || true
	fv_wait_for "reconnect $i" 30 bash -c \
		"[ \$(grep -c 'mqtt: reconnected to' '$FV_TMP/pump-1.log') -ge $i ] && [ \$(grep -c 'mqtt: reconnected to' '$FV_TMP/coordinator.log') -ge $i ]" ||
		fv_fail "cycle $i: a daemon did not reconnect"
	if [ "$i" = 3 ]; then
		r0a=$(rss "$AG"); f0a=$(fds "$AG"); r0c=$(rss "$COORD_PID"); f0c=$(fds "$COORD_PID")
	fi
done
kill -0 "$AG" && kill -0 "$COORD_PID" || fv_fail "a daemon died"
r1a=$(rss "$AG"); f1a=$(fds "$AG"); r1c=$(rss "$COORD_PID"); f1c=$(fds "$COORD_PID")
echo "agent: reconnects $(reconnects "$FV_TMP/pump-1.log"), RSS $r0a -> $r1a KiB, fds $f0a -> $f1a"
echo "coordinator: reconnects $(reconnects "$FV_TMP/coordinator.log"), RSS $r0c -> $r1c KiB, fds $f0c -> $f1c"
[ "$f1a" -le "$f0a" ] && [ "$f1c" -le "$f0c" ] || fv_fail "file descriptors grew"
# Flat: well under 1 KiB per cycle (an allocation kept per reconnect of a
# session's buffers would be several).
lim=$((N * 1 + 256))
[ $((r1a - r0a)) -le "$lim" ] && [ $((r1c - r0c)) -le "$lim" ] ||
	fv_fail "resident memory grew by more than $lim KiB over $N cycles"
echo "ok: $N reconnect cycles, RSS and file descriptors flat"
