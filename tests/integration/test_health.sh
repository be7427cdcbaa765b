#!/usr/bin/env bash
# fedvigil-health (the containers' HEALTHCHECK) against real programs, and
# configuration from environment variables (what the compose file uses):
#   - an agent whose broker, id, fleet and metrics page come from
#     FEDVIGIL_* variables only is healthy; one stopped with SIGSTOP is not
#     (its main loop serves the page), nor one whose broker is gone;
#   - the simulator's --metrics-listen page is healthy while it runs;
#   - precedence defaults < file < environment < command line; a bad value
#     names the variable; an unknown FEDVIGIL_ variable is warned about.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
bin=$FV_BINARY_DIR
health=$bin/fedvigil-health
fv_tmpdir
fv_broker_start

# --- precedence, without running anything ---
cat >"$FV_TMP/a.ini" <<EOF
[agent]
id = from-file
log_level = notice
[detect]
k = 2
n = 9
[channel.x]
topic = t/x
EOF
dump=$(FEDVIGIL_DETECT_K=4 FEDVIGIL_AGENT_LOG_LEVEL=debug \
	"$bin/fedvigil-agent" -c "$FV_TMP/a.ini" --set detect.k=5 --dump-config)
grep -qx 'id = from-file' <<<"$dump" || fv_fail "file value lost: $(grep '^id' <<<"$dump")"
grep -qx 'log_level = debug' <<<"$dump" || fv_fail "environment did not override the file"
grep -qx 'k = 5' <<<"$dump" || fv_fail "command line did not override the environment"
grep -qx 'n = 9' <<<"$dump" || fv_fail "file value n lost"
if out=$(FEDVIGIL_DETECT_N=many "$bin/fedvigil-agent" -c "$FV_TMP/a.ini" --check-config 2>&1); then
	fv_fail "a bad environment value was accepted"
fi
grep -q "environment FEDVIGIL_DETECT_N: detect.n = 'many': not an integer" <<<"$out" ||
	fv_fail "bad environment value not named: $out"
if out=$(FEDVIGIL_ROUND_DEADLINE_MS=5 "$bin/fedvigil-coordinator" --check-config 2>&1); then
	fv_fail "coordinator accepted deadline_ms=5 from the environment"
fi
grep -q "FEDVIGIL_ROUND_DEADLINE_MS: round.deadline_ms = '5': out of range" <<<"$out" ||
	fv_fail "coordinator: bad environment value not named: $out"
FEDVIGIL_COORDINATOR_FLEET=envfleet "$bin/fedvigil-coordinator" --dump-config |
	grep -qx 'fleet = envfleet' || fv_fail "coordinator ignored FEDVIGIL_COORDINATOR_FLEET"

# --- an agent configured from the environment ---
mport=$(fv_free_port)
cat >"$FV_TMP/agent.ini" <<EOF
[agent]
log_level = info
[channel.x]
topic = t/health/x
EOF
FEDVIGIL_AGENT_BROKER=$FV_BROKER_URI FEDVIGIL_AGENT_ID=envagent FEDVIGIL_AGENT_FLEET=hf \
	FEDVIGIL_METRICS_LISTEN=127.0.0.1:$mport FEDVIGIL_AGENT_BROKR=typo \
	"$bin/fedvigil-agent" -c "$FV_TMP/agent.ini" 2>"$FV_TMP/agent.log" &
agent=$!
fv_track "$agent"
fv_wait_for "agent healthy" 15 "$health" "$mport" || {
	cat "$FV_TMP/agent.log" >&2
	"$health" "$mport" >&2 || true
	fv_fail "agent configured from the environment not healthy"
}
out=$("$health" "$mport")
[ "$out" = "healthy: main loop answering on 127.0.0.1:$mport, MQTT connected" ] ||
	fv_fail "unexpected output: $out"
# Without an address: the daemons' variable, as in the container images.
FEDVIGIL_METRICS_LISTEN=127.0.0.1:$mport "$health" | grep -q '^healthy' ||
	fv_fail "fedvigil-health did not take FEDVIGIL_METRICS_LISTEN"
# It really used the environment's id and fleet: its retained birth.
state=$(mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -C 1 -W 5 \
	-t 'fedvigil/v1/hf/agent/envagent/state' 2>/dev/null || true)
grep -q '"state":"online"' <<<"$state" || fv_fail "no online state for hf/envagent: '$state'"
grep -q 'FEDVIGIL_AGENT_BROKR is not a configuration key of fedvigil-agent' "$FV_TMP/agent.log" ||
	fv_fail "unknown variable not warned about"

# A stopped main loop: no answer in time.
kill -STOP "$agent"
if out=$("$health" -t 1 "$mport"); then
	kill -CONT "$agent"
	fv_fail "a stopped agent was healthy: $out"
fi
kill -CONT "$agent"
grep -q 'no answer in time' <<<"$out" || fv_fail "stopped agent: unexpected reason: $out"
fv_wait_for "agent healthy again" 10 "$health" "$mport" || fv_fail "agent not healthy after SIGCONT"

# --- the simulator's page ---
sport=$(fv_free_port)
"$bin/fedvigil-sim" --broker "$FV_BROKER_URI" --prefix t/sim --machines 1 --speed 20 \
	--duration 3600 --normal 600 --metrics-listen "$sport" -q >"$FV_TMP/sim.log" 2>&1 &
sim=$!
fv_track "$sim"
fv_wait_for "sim healthy" 15 "$health" "$sport" || { cat "$FV_TMP/sim.log" >&2; fv_fail "sim not healthy"; }
fv_wait_for "sim publishing" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$sport &&
	printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 &&
	grep -Eq '^fedvigil_sim_readings_published_total [1-9]' <&3" ||
	fv_fail "sim page shows no readings published"

# --- the broker goes away: both unhealthy (connected 0), loops still answer ---
fv_broker_stop
fv_wait_for "agent unhealthy" 10 bash -c "! '$health' -t 2 $mport" || fv_fail "agent healthy without a broker"
out=$("$health" -t 2 "$mport" || true)
grep -q 'not connected to the MQTT broker' <<<"$out" || fv_fail "agent without broker: $out"
fv_wait_for "sim unhealthy" 10 bash -c "! '$health' -t 2 $sport" || fv_fail "sim healthy without a broker"

# --- usage errors ---
env -u FEDVIGIL_METRICS_LISTEN "$health" 2>/dev/null && fv_fail "no address accepted"
"$health" nohost:x 2>/dev/null && fv_fail "bad address accepted"
rc=0
"$health" -t 1 "$(fv_free_port)" >/dev/null || rc=$?
[ "$rc" = 1 ] || fv_fail "closed port: exit $rc, expected 1"
echo PASS
