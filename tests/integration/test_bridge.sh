#!/usr/bin/env bash
# A fleet across two bridged brokers (docs/federation.md, "How a deployment
# grows past one broker"): a central Mosquitto with the coordinator, and a
# site Mosquitto bridged to it with deploy/mosquitto/bridge.conf (TLS and
# credentials left out), the site's agents on the site broker only.
#   1. 20 swarm agents at the site go through the statistics round and a
#      training round: every update crosses the bridge and is aggregated;
#   2. they leave; 20 new agents join at the site later. They must find the
#      current model retained on the *site* broker (retained flags survive
#      the bridge) and answer the next round, which closes with them.
#   3. the bridge's retained link state on the central broker says "1".
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_sub >/dev/null || fv_skip "mosquitto-clients not installed"
fv_tmpdir
central=$(fv_free_port)
site=$(fv_free_port)
[ "$site" != "$central" ] || site=$(fv_free_port)
{
	echo "listener $central 127.0.0.1"
	echo "allow_anonymous true"
	echo "persistence false"
	echo "log_dest stderr"
	cat "$FV_SOURCE_DIR/deploy/mosquitto/limits.conf"
} >"$FV_TMP/central.conf"
# The site broker: limits, and the example bridge pointed at the central
# broker without TLS and credentials.
{
	echo "listener $site 127.0.0.1"
	echo "allow_anonymous true"
	echo "persistence false"
	echo "log_dest stderr"
	cat "$FV_SOURCE_DIR/deploy/mosquitto/limits.conf"
	sed -e "s/FLEET/$FV_FLEET/g" -e "s/SITE/site-a/g" \
		-e "s/^address .*/address 127.0.0.1:$central/" \
		-e '/^remote_username/d' -e '/^remote_password/d' -e '/^bridge_cafile/d' \
		-e '/^bridge_tls_version/d' "$FV_SOURCE_DIR/deploy/mosquitto/bridge.conf"
} >"$FV_TMP/site.conf"
grep -q "^topic fedvigil/v1/$FV_FLEET/model in 1" "$FV_TMP/site.conf" || fv_fail "bridge.conf changed shape"
fv_broker_start_conf "$FV_TMP/central.conf" "$central"
CENTRAL_PID=$FV_BROKER_PID
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$FV_TMP/site.conf" >"$FV_TMP/site-broker.log" 2>&1 &
fv_track "$!"
FV_BROKER_PORT=$central # the coordinator and fleet_sub use the central broker
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && { for f in "$FV_TMP"/swarm-*.log "$FV_TMP/site-broker.log"; do echo "== $f"; tail -n 20 "$f"; done; fleet_dump_logs; }; fv_cleanup; exit $rc' EXIT

link="fedvigil/v1/$FV_FLEET/site/site-a/bridge"
fv_wait_for "the bridge is up" 20 bash -c \
	"mosquitto_sub -p $central -t '$link' -C 1 -W 2 | grep -qx 1" || fv_fail "the site's bridge did not connect"

N=20
cat >"$FV_TMP/coordinator.ini" <<EOF
[coordinator]
fleet = $FV_FLEET
broker = tcp://127.0.0.1:$central
state_dir = $FV_TMP/state
log_level = info
[model]
preset = ae20
window = 4
stride = 2
channels = 5
[round]
rounds = 2
min_agents = $N
deadline_ms = 15000
interval_ms = 500
epochs = 1
min_samples = 20
EOF
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
sleep 0.3
fleet_start_coordinator
C=$FV_TMP/coordinator.log
M=$FV_TMP/metrics.log

swarm() { # PREFIX SEED
	"$FV_BIN/fedvigil-swarm" --broker "tcp://127.0.0.1:$site" --fleet "$FV_FLEET" --agents $N \
		--id-prefix "$1" --seed "$2" --rounds 1 --idle-timeout 30 \
		--output "$FV_TMP/rounds-$1.jsonl" --log-level info >"$FV_TMP/swarm-$1.log" 2>&1
}

# 1. The site's first agents: statistics round and training round 1.
swarm a- 1 || fv_fail "the first swarm failed"
for r in 0 1; do
	n=$(grep -o "update from a-[^ ]* for round $r accepted" "$C" | sort -u | wc -l)
	[ "$n" -eq $N ] || fv_fail "round $r: $n of $N site updates accepted across the bridge"
	grep -q "\"round\":$r,.*\"agents\":$N,.*\"result\":\"closed\"" "$M" ||
		fv_fail "round $r did not close with $N agents: $(grep "\"round\":$r," "$M")"
done
fv_wait_for "the first agents offline" 10 grep -q "offline (0 live)" "$C" ||
	fv_fail "the coordinator did not see the site's agents leave (their offline state crosses the bridge)"

# 2. Late agents at the site: the model (v2) and round 2's announcement
# come from the site broker's retained copies.
retained=$(mosquitto_sub -p "$site" -t "fedvigil/v1/$FV_FLEET/model" -C 1 -W 5 | wc -c)
[ "$retained" -gt 100 ] || fv_fail "no retained model on the site broker ($retained bytes)"
swarm late- 2 || fv_fail "the late swarm failed: $(tail -5 "$FV_TMP/swarm-late-.log")"
line=$(grep '"round":2,' "$M" | head -1)
sel=$(json_field selected "$line")
agg=$(json_field agents "$line")
[ "$agg" -ge 1 ] && [ "$agg" -eq "$sel" ] ||
	fv_fail "round 2: $agg of $sel selected late agents aggregated: $line"
n=$(grep -o "update from late-[^ ]* for round 2 accepted" "$C" | sort -u | wc -l)
[ "$n" -eq "$agg" ] || fv_fail "round 2: $n late updates accepted, $agg aggregated"
grep -q "late-.*round 2 (training) announced\|round 2 (training) announced" "$FV_TMP/swarm-late-.log" ||
	fv_fail "the late swarm never saw round 2's announcement"
grep -q "model v2 " "$FV_TMP/swarm-late-.log" || fv_fail "the late swarm did not sync model v2 at the site"

# 3. The link state, retained on the central broker.
mosquitto_sub -p "$central" -t "$link" -C 1 -W 5 | grep -qx 1 || fv_fail "link state not retained as 1"
echo "ok: rounds 0-2 across the bridge, late agents synced from the site's retained model"
