#!/usr/bin/env bash
# fedvigil-agent's command line and config errors, and a running agent that
# survives garbage payloads and a broker restart.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT
A="$FV_BIN/fedvigil-agent"

"$A" --version | grep -Eq '^fedvigil-agent [0-9]+\.[0-9]+\.[0-9]+' || fv_fail "--version"
# (through a file: `| grep -q` may close the pipe while --help, over 4 KiB,
# is still writing, and pipefail then reports the SIGPIPE)
"$A" --help >"$FV_TMP/help.txt" || fv_fail "--help failed"
grep -q 'ingest.period_ms' "$FV_TMP/help.txt" || fv_fail "--help does not list the keys"
grep -q 'tls.key_file' "$FV_TMP/help.txt" || fv_fail "--help does not list the [tls] keys"
grep -q 'agent.max_batch' "$FV_TMP/help.txt" || fv_fail "--help does not list agent.max_batch"

# A bad value names the file, the line, the key and the range; exit 2.
cat > "$FV_TMP/bad.ini" <<'CONF'
[agent]
id = pump-1

[ingest]
period_ms = fast
CONF
set +e; out=$("$A" -c "$FV_TMP/bad.ini" 2>&1); rc=$?; set -e
[ $rc -eq 2 ] || fv_fail "bad config: exit $rc, expected 2"
for want in bad.ini ':5' period_ms; do
	grep -q -- "$want" <<<"$out" || fv_fail "bad-config message lacks '$want': $out"
done
# Unknown key, and a config without channels.
printf '[agent]\nidd = x\n' > "$FV_TMP/unknown.ini"
set +e; out=$("$A" -c "$FV_TMP/unknown.ini" 2>&1); rc=$?; set -e
[ $rc -eq 2 ] && grep -q 'idd' <<<"$out" && grep -q ':2' <<<"$out" || fv_fail "unknown key: rc=$rc $out"
printf '[agent]\nid = x\n' > "$FV_TMP/nochan.ini"
set +e; out=$("$A" -c "$FV_TMP/nochan.ini" 2>&1); rc=$?; set -e
[ $rc -eq 2 ] && grep -q 'channel' <<<"$out" || fv_fail "no channels: rc=$rc $out"
set +e; out=$("$A" -c "$FV_TMP/missing.ini" 2>&1); rc=$?; set -e
[ $rc -eq 2 ] && grep -q 'missing.ini' <<<"$out" || fv_fail "missing file: rc=$rc $out"
set +e; out=$("$A" --bogus 2>&1); rc=$?; set -e
[ $rc -eq 2 ] || fv_fail "unknown flag: exit $rc"

# Flags override the file; --dump-config shows the result.
fv_broker_start
fleet_write_agent pump-1 plant 1000 temperature flow
"$A" -c "$FV_TMP/pump-1.ini" --id pump-9 --fleet other --set detect.k=2 --dump-config > "$FV_TMP/dump.ini"
grep -q '^id = pump-9' "$FV_TMP/dump.ini" || fv_fail "--id not applied"
grep -q '^fleet = other' "$FV_TMP/dump.ini" || fv_fail "--fleet not applied"
grep -q '^k = 2' "$FV_TMP/dump.ini" || fv_fail "--set not applied"
"$A" -c "$FV_TMP/pump-1.ini" --check-config | grep -q OK || fv_fail "--check-config"

# Running: birth on MQTT, garbage payloads counted and survived.
fleet_start_agent pump-1
fv_wait_for "agent birth" 10 bash -c "mosquitto_sub -h 127.0.0.1 -p $FV_BROKER_PORT -C 1 -W 2 -t fedvigil/v1/$FV_FLEET/agent/pump-1/state | grep -q online"
for p in 'garbage' '{"value":' '{"value":"nan","ts":1}' '{"value":1e999,"ts":1}' '' '{"ts":5}' \
	"$(head -c 6000 /dev/zero | tr '\0' 'x')"; do
	mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t plant/pump-1/temperature -m "$p"
done
mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t plant/pump-1/flow -m '{"value":3.5,"ts":1767225600000}'
fleet_sub m "fedvigil/v1/$FV_FLEET/agent/pump-1/metrics"
fv_wait_for "metrics with parse errors" 10 bash -c "grep -q '\"parse_errors\":7' '$FV_TMP/m.log'"
kill -0 "${AGENT_PIDS[pump-1]}" || fv_fail "agent died on garbage input"
grep -q 'rejected' "$FV_TMP/pump-1.log" || fv_fail "no log line for rejected payloads"

# The broker goes away and comes back on the same port: the agent
# reconnects by itself and announces itself again.
fv_broker_stop
sleep 2
kill -0 "${AGENT_PIDS[pump-1]}" || fv_fail "agent died when the broker went away"
fv_broker_start "$FV_BROKER_PORT"
fv_wait_for "agent birth after broker restart" 40 bash -c "mosquitto_sub -h 127.0.0.1 -p $FV_BROKER_PORT -C 1 -W 2 -t fedvigil/v1/$FV_FLEET/agent/pump-1/state | grep -q online"

kill -TERM "${AGENT_PIDS[pump-1]}"
wait "${AGENT_PIDS[pump-1]}" || fv_fail "agent exit status $? on SIGTERM"
echo PASS
