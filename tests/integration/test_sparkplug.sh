#!/usr/bin/env bash
# Sparkplug B input with no glue: fedvigil-sim --sparkplug plays an edge node
# (NBIRTH, a DBIRTH per machine with aliases, DDATA by alias only, NDEATH),
# an agent whose channels are `metric = ...` learns the aliases from the
# births, takes its device's values, trains with the coordinator and raises
# an alert. A second agent that starts after the births sees only aliases it
# cannot resolve: it counts them and asks the node for a rebirth (NCMD).
# Both agents are Sparkplug edge nodes themselves ([sparkplug] presence):
# NBIRTH, NDATA by alias (the alert at once), a new NBIRTH on an NCMD
# rebirth request, NDEATH on SIGTERM and as the will on SIGKILL.
# An edge node played by fv-spb-encode gives its own metrics on NDATA by
# name and by alias and a device's on DDATA by name (readings counted per
# channel); its NDEATH forgets the aliases, not the names.
# Garbage on a Sparkplug topic is counted and survived; config errors name
# the channel and key.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
trap 'rc=$?; set +e; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT
A=$FV_BIN/fedvigil-agent
chans=(vibration temperature pressure flow current)

# spb_agent ID DEVICE: an agent config reading DEVICE of edge node fedvigil-sim.
spb_agent() {
	{
		echo "[agent]"
		echo "id = $1"
		echo "fleet = $FV_FLEET"
		echo "broker = tcp://127.0.0.1:$FV_BROKER_PORT"
		echo "metrics_interval_ms = 500"
		echo "[ingest]"
		echo "clock = data"
		echo "period_ms = 1000"
		echo "max_age_ms = 3000"
		echo "[metrics]"
		echo "listen = 0"
		echo "[sparkplug]"
		echo "group = plant"
		echo "node = fedvigil-sim"
		echo "device = $2"
		echo "request_rebirth = true"
		echo "presence = true"
		for c in "${chans[@]}"; do
			echo "[channel.$c]"
			echo "metric = $c"
		done
	} >"$FV_TMP/$1.ini"
}
# prom ID NAME: a metric of agent ID's Prometheus page.
prom() {
	local port
	port=$(sed -n 's|.*Prometheus metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$FV_TMP/$1.log")
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
	timeout 5 cat <&3 | awk -v n="$2" '$1 == n { print $2 }'
	exec 3<&- 3>&-
}

# ---- configuration ----
FV_BROKER_PORT=1
spb_agent cfgtest pump-1
"$A" -c "$FV_TMP/cfgtest.ini" --check-config >/dev/null || fv_fail "a Sparkplug config does not check"
"$A" -c "$FV_TMP/cfgtest.ini" --dump-config | grep -q '^metric = flow$' || fv_fail "--dump-config lacks the metric"
sed '/^node = /d' "$FV_TMP/cfgtest.ini" >"$FV_TMP/nonode.ini"
set +e; out=$("$A" -c "$FV_TMP/nonode.ini" --check-config 2>&1); rc=$?; set -e
[ $rc -eq 2 ] && grep -q 'sparkplug.node' <<<"$out" || fv_fail "missing sparkplug.node: rc=$rc $out"
printf '[channel.flow]\ntopic = plant/x/flow\n' >>"$FV_TMP/cfgtest.ini"
set +e; out=$("$A" -c "$FV_TMP/cfgtest.ini" --check-config 2>&1); rc=$?; set -e
[ $rc -eq 2 ] && grep -q 'channel.flow.*exclude' <<<"$out" || fv_fail "metric and topic together: rc=$rc $out"

# ---- a fleet fed by an edge node ----
fv_broker_start
fleet_write_coordinator 2 1 5
# On a loaded machine the late agent can come online before round 1 is
# announced and be selected; it has no data to train on, so a quorum of
# half and a short deadline close the round without it.
sed -i 's/^min_samples = .*/min_samples = 100/; s/^interval_ms = .*/interval_ms = 300/;
	s/^deadline_ms = .*/deadline_ms = 6000\nquorum = 0.5/' "$FV_TMP/coordinator.ini"
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_sub ametrics "fedvigil/v1/$FV_FLEET/agent/+/metrics"
fleet_sub alerts "fedvigil/v1/$FV_FLEET/agent/+/alert"
fleet_sub states "fedvigil/v1/$FV_FLEET/agent/+/state"
fleet_sub cstates "fedvigil/v1/$FV_FLEET/coord/state"
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -v -t 'spBv1.0/plant/NCMD/fedvigil-sim' >"$FV_TMP/ncmd.log" 2>/dev/null &
fv_track $!
# The agents' own edge nodes, decoded.
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -F '%t %x' -t 'spBv1.0/plant/+/pump-1' \
	-t 'spBv1.0/plant/+/late' >"$FV_TMP/presence.hex" 2>/dev/null &
fv_track $!
# presence_log: decode what arrived so far into $FV_TMP/presence.log.
presence_log() { "$FV_BINARY_DIR/tests/fv-spb-dump" <"$FV_TMP/presence.hex" >"$FV_TMP/presence.log"; }
spb_agent pump-1 pump-1
spb_agent late compressor-2
fleet_start_coordinator
fleet_start_agent pump-1
fv_wait_for "pump-1 connected" 10 grep -q 'mqtt: connected' "$FV_TMP/pump-1.log" || fv_fail "pump-1 did not connect"
sleep 0.5
"$FV_BIN/fedvigil-sim" --broker "$FV_BROKER_URI" --prefix plant --sparkplug --machines 2 --speed 400 \
	--duration 4000 --normal 2500 --faults 2 --seed 7 -q >"$FV_TMP/sim.log" 2>&1 &
SIM=$!
fv_track $SIM
# The late agent joins once the births are over.
sleep 2
fleet_start_agent late
fv_wait_for "a training round" 40 grep -q '"kind":"train"' "$FV_TMP/metrics.log" || fv_fail "no training round closed"
fv_wait_for "an alert from pump-1" 30 grep -q 'agent/pump-1/alert .*"state":"raised"' "$FV_TMP/alerts.log" ||
	fv_fail "pump-1 raised no alert"
grep -m1 'agent/pump-1/alert' "$FV_TMP/alerts.log" | cut -c1-200
fv_wait_for "the late agent's rebirth request" 10 grep -aq 'Node Control/Rebirth' "$FV_TMP/ncmd.log" ||
	fv_fail "no NCMD rebirth request"
grep -q 'spBv1.0/plant/NCMD/fedvigil-sim ' "$FV_TMP/ncmd.log" || fv_fail "rebirth request on the wrong topic"
[ "$(grep -c 'Node Control/Rebirth' "$FV_TMP/ncmd.log")" -eq 1 ] || fv_fail "more than one rebirth request within 30 s"
grep -q 'asked for a rebirth' "$FV_TMP/late.log" || fv_fail "the late agent did not log its rebirth request"

v=$(prom pump-1 fedvigil_agent_sparkplug_values_total)
b=$(prom pump-1 fedvigil_agent_sparkplug_births_total)
g=$(prom pump-1 fedvigil_agent_sparkplug_seq_gaps_total)
u=$(prom late fedvigil_agent_sparkplug_unknown_alias_total)
lv=$(prom late fedvigil_agent_sparkplug_values_total)
echo "pump-1: $v values, $b births, $g seq gaps; late agent: $u unknown aliases, $lv values"
[ "$v" -gt 1000 ] || fv_fail "pump-1 took only $v Sparkplug values"
[ "$b" -ge 3 ] || fv_fail "pump-1 saw $b births (NBIRTH + 2 DBIRTH expected)"
[ "$g" -eq 0 ] || fv_fail "$g seq gaps on a QoS 1 subscription"
[ "$u" -gt 0 ] && [ "$lv" -eq 0 ] || fv_fail "the late agent resolved aliases it never saw a birth for"

# pump-1 as an edge node: NBIRTH with every metric, NDATA by alias.
presence_log
nb=$(grep -m1 '^spBv1.0/plant/NBIRTH/pump-1 ' "$FV_TMP/presence.log") || fv_fail "no NBIRTH of pump-1"
echo "$nb"
for m in 'seq=0 ' ' bdSeq#1=' ' fedvigil/score#3=' ' fedvigil/threshold#4=' ' fedvigil/alert#5=' \
	' fedvigil/model_version#7='; do
	grep -qF -- "$m" <<<"$nb" || fv_fail "NBIRTH lacks '$m'"
done
grep -q '^spBv1.0/plant/NDATA/pump-1 seq=[0-9]* .*#5=1' "$FV_TMP/presence.log" || fv_fail "no NDATA with the raised alert"
grep -q '^spBv1.0/plant/NDATA/pump-1 seq=[0-9]* .*#7=[1-9]' "$FV_TMP/presence.log" || fv_fail "no NDATA with the model version"
# A host asks for a rebirth: a second NBIRTH.
printf '\x12\x1a\x0a\x14Node Control/Rebirth\x20\x0b\x70\x01' >"$FV_TMP/rebirth.bin"
mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t spBv1.0/plant/NCMD/pump-1 -f "$FV_TMP/rebirth.bin"
for i in $(seq 25); do
	presence_log
	[ "$(grep -c '^spBv1.0/plant/NBIRTH/pump-1 ' "$FV_TMP/presence.log")" -ge 2 ] && break
	sleep 0.2
done
[ "$(grep -c '^spBv1.0/plant/NBIRTH/pump-1 ' "$FV_TMP/presence.log")" -ge 2 ] ||
	fv_fail "no NBIRTH after the rebirth request"

# Garbage on the node's topic: counted, survived.
pe0=$(prom pump-1 fedvigil_agent_parse_errors_total)
mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t spBv1.0/plant/DDATA/fedvigil-sim/pump-1 -m 'not protobuf'
for i in $(seq 25); do
	[ "$(prom pump-1 fedvigil_agent_sparkplug_decode_errors_total)" -ge 1 ] && break
	sleep 0.2
done
pe1=$(prom pump-1 fedvigil_agent_parse_errors_total)
de=$(prom pump-1 fedvigil_agent_sparkplug_decode_errors_total)
[ "$pe1" -gt "$pe0" ] && [ "$de" -ge 1 ] || fv_fail "garbage not counted (parse errors $pe0 -> $pe1, decode errors $de)"
grep -q 'Sparkplug payload on spBv1.0/plant/DDATA/fedvigil-sim/pump-1 rejected' "$FV_TMP/pump-1.log" ||
	fv_fail "no log line for the rejected payload"
kill -0 "${AGENT_PIDS[pump-1]}" || fv_fail "pump-1 died on garbage"

wait $SIM || fv_fail "simulator failed"
for i in $(seq 25); do
	[ "$(prom pump-1 fedvigil_agent_sparkplug_deaths_total)" -ge 1 ] && break
	sleep 0.2
done
[ "$(prom pump-1 fedvigil_agent_sparkplug_deaths_total)" -ge 1 ] || fv_fail "pump-1 did not see the NDEATH"
kill -TERM "${AGENT_PIDS[pump-1]}"
wait "${AGENT_PIDS[pump-1]}" || fv_fail "pump-1 exited $? on SIGTERM"
kill -KILL "${AGENT_PIDS[late]}"
wait "${AGENT_PIDS[late]}" 2>/dev/null || true
bd=$(sed -n 's/.* bdSeq#1=\([0-9]*\).*/\1/p' <<<"$nb")
sleep 1
presence_log
grep -q "^spBv1.0/plant/NDEATH/pump-1 seq=- bdSeq=$bd\$" "$FV_TMP/presence.log" ||
	fv_fail "no NDEATH with bdSeq $bd from pump-1 on SIGTERM"
grep -q '^spBv1.0/plant/NDEATH/late seq=- bdSeq=' "$FV_TMP/presence.log" ||
	fv_fail "no NDEATH will for the SIGKILLed agent"
kill -TERM "$COORD_PID"
wait "$COORD_PID" || fv_fail "coordinator exited $? on SIGTERM"
sleep 0.3

# ---- an edge node's own metrics: NDATA by name and by alias, DDATA by name ----
# Edge7's NBIRTH names four metrics with aliases (and one no channel reads);
# its NDATA then gives vibration and temperature by name, pressure and flow
# by alias only; current comes from its device Pump2, by name, with no
# DBIRTH at all. Each channel gets a different number of readings, so the
# per-channel counts show each value went to its own channel.
spb_agent edge ""
sed -i 's/^node = fedvigil-sim$/node = Edge7/; /^presence = /d; /^metric = current$/a device = Pump2' "$FV_TMP/edge.ini"
fleet_start_agent edge
fv_wait_for "edge connected" 10 grep -q 'mqtt: connected' "$FV_TMP/edge.log" || fv_fail "edge did not connect"
sleep 0.3
seq=0
# spb TYPE [DEVICE] METRIC...: publish as Edge7 (seq counted over all of its messages).
spb() {
	local type=$1 topic=spBv1.0/plant/$1/Edge7 args=()
	shift
	if [ "${type:0:1}" = D ]; then topic=$topic/$1; shift; fi
	[ "$type" = NDEATH ] || { args=(-s $((seq % 256))); seq=$((seq + 1)); }
	"$FV_BINARY_DIR/tests/fv-spb-encode" "${args[@]}" -t "$ts" "$@" >"$FV_TMP/spb.bin"
	mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -q 1 -t "$topic" -f "$FV_TMP/spb.bin"
}
ts=1767225600000
spb NBIRTH 'bdSeq:i=0' 'vibration#1=0.5' 'temperature#2=40' 'pressure#3=2' 'flow#4:f=10' 'Speed#9=1500'
spb DDATA Pump2 'current:i=5'
for k in 1 2 3 4 5 6; do
	ts=$((1767225600000 + k * 1000))
	m=("vibration=0.$k" 'Speed=1500' "#4:f=1$k")
	[ $k -le 4 ] && m+=("temperature=4$k")
	[ $((k % 2)) -eq 0 ] && m+=("#3=2.$k")
	spb NDATA "${m[@]}"
	spb DDATA Pump2 "current:i=$((5 + k))"
done
for i in $(seq 50); do
	[ "$(prom edge fedvigil_agent_sparkplug_values_total)" -ge 30 ] && break
	sleep 0.2
done
declare -A want=([vibration]=7 [temperature]=5 [pressure]=4 [flow]=7 [current]=7)
for c in "${!want[@]}"; do
	got=$(prom edge "fedvigil_agent_channel_readings_total{channel=\"$c\"}")
	[ "$got" = "${want[$c]}" ] || fv_fail "edge: channel $c got ${got:-no} readings, ${want[$c]} sent"
done
[ "$(prom edge fedvigil_agent_sparkplug_values_total)" -eq 30 ] || fv_fail "edge: values_total is not 30"
[ "$(prom edge fedvigil_agent_sparkplug_unknown_alias_total)" -eq 0 ] || fv_fail "edge: unknown aliases after a birth"
[ "$(prom edge fedvigil_agent_sparkplug_seq_gaps_total)" -eq 0 ] || fv_fail "edge: seq gaps counted"
[ "$(prom edge fedvigil_agent_vectors_total)" -ge 3 ] || fv_fail "edge: fewer than 3 complete vectors"
# NDEATH forgets the aliases: an alias is unknown now, a name still works.
spb NDEATH 'bdSeq:i=0'
ts=$((ts + 1000))
spb NDATA '#4:f=17' 'vibration=0.7'
for i in $(seq 50); do
	[ "$(prom edge fedvigil_agent_sparkplug_unknown_alias_total)" -ge 1 ] && break
	sleep 0.2
done
[ "$(prom edge fedvigil_agent_sparkplug_unknown_alias_total)" -eq 1 ] || fv_fail "edge: an alias survived the NDEATH"
[ "$(prom edge 'fedvigil_agent_channel_readings_total{channel="vibration"}')" -eq 8 ] ||
	fv_fail "edge: a name no longer resolves after the NDEATH"
[ "$(prom edge 'fedvigil_agent_channel_readings_total{channel="flow"}')" -eq 7 ] || fv_fail "edge: flow took a forgotten alias"
echo "edge node Edge7: NDATA by name and alias, DDATA by name, NDEATH: all counted per channel"
kill -TERM "${AGENT_PIDS[edge]}"
wait "${AGENT_PIDS[edge]}" || fv_fail "edge exited $? on SIGTERM"

# What common tools read: the alerts and the presence messages validate
# against the JSON Schemas in docs/schema (and a broken alert does not).
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || fv_fail "python3-jsonschema is not installed (scripts/deps)"
{
	check=$FV_SOURCE_DIR/tests/helpers/check_schema.py
	schemas=$FV_SOURCE_DIR/docs/schema
	/usr/bin/python3 "$check" "$schemas/alert.schema.json" "$FV_TMP/alerts.log" 1 || fv_fail "alerts do not match the schema"
	grep -q '"state":"offline"' "$FV_TMP/states.log" || fv_fail "no offline state recorded"
	/usr/bin/python3 "$check" "$schemas/state.schema.json" "$FV_TMP/states.log" 3 || fv_fail "agent states do not match the schema"
	/usr/bin/python3 "$check" "$schemas/state.schema.json" "$FV_TMP/cstates.log" 2 || fv_fail "coordinator states do not match the schema"
	head -1 "$FV_TMP/alerts.log" | sed 's/"model_version":[0-9]*,//' >"$FV_TMP/broken.log"
	if /usr/bin/python3 "$check" "$schemas/alert.schema.json" "$FV_TMP/broken.log" >/dev/null; then
		fv_fail "an alert without model_version passed the schema"
	fi
	# The telemetry of both daemons (rounds, rejections by reason, bytes,
	# scores, alerts, RSS, CPU).
	/usr/bin/python3 "$check" "$schemas/coord-metrics.schema.json" "$FV_TMP/metrics.log" 3 ||
		fv_fail "coordinator telemetry does not match the schema"
	/usr/bin/python3 "$check" "$schemas/agent-metrics.schema.json" "$FV_TMP/ametrics.log" 10 ||
		fv_fail "agent telemetry does not match the schema"
	grep -q '/agent/pump-1/metrics {.*"alerts":[1-9]' "$FV_TMP/ametrics.log" || fv_fail "no telemetry counting pump-1's alert"
	head -1 "$FV_TMP/ametrics.log" | sed 's/"rss_bytes":[0-9]*,//' >"$FV_TMP/broken.log"
	if /usr/bin/python3 "$check" "$schemas/agent-metrics.schema.json" "$FV_TMP/broken.log" >/dev/null; then
		fv_fail "agent telemetry without rss_bytes passed the schema"
	fi
	grep -m1 '"kind":"train"' "$FV_TMP/metrics.log" | sed 's/"stale":[0-9]*,//' >"$FV_TMP/broken.log"
	if /usr/bin/python3 "$check" "$schemas/coord-metrics.schema.json" "$FV_TMP/broken.log" >/dev/null; then
		fv_fail "coordinator telemetry without rejected.stale passed the schema"
	fi
}
echo PASS
