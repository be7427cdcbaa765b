#!/usr/bin/env bash
# Network faults inside network namespaces (issue 8, docs/reliability.md
# "Network faults"). A real Mosquitto runs in its own namespace with the
# plant simulator and the test's subscribers; the coordinator and each of
# three agents run in namespaces of their own, each joined to the broker's
# by a veth pair. Faults are made on one link at a time, while the fleet
# trains (quorum 0.6 of 3, deadline 3 s, MQTT keepalive 2 s):
#   1. 25 % packet loss both ways on pump-1's link (nftables numgen drop):
#      rounds keep closing, pump-1's updates get through (TCP resends), and
#      those that take longer than the deadline are left out by quorum;
#   2. pump-1's upload limited to 24 kbit/s (tc tbf): its 15.7 kB update
#      takes ~5 s, the rounds close at their deadline with the other two
#      (missed, counted), nothing hangs; then the limit is lifted and pump-1
#      is in again;
#   3. a partition of compressor-2 (nftables drops everything, 7 s): the
#      broker declares it dead after 1.5 keepalives and publishes its will,
#      the coordinator takes it out of the selection, rounds close with two;
#      while partitioned the agent's main loop answers its metrics page;
#      healed, it reconnects by itself, syncs the current model and its
#      updates are accepted again;
#   4. the coordinator's link down (ip link set down, 8 s) in the middle of
#      training: agents keep running; with the link up the coordinator
#      reconnects, republishes, and rounds close with all three again;
#   5. SIGTERM to every daemon while motor-3 is partitioned: each exits 0
#      within 5 s.
# Needs root, ip netns, veth, nft and tc tbf; skips (77) without them.
# Labelled `once` with a ~45-55 s run (timers, not memory safety; the
# reconnect paths run under ASan in test_netproxy.sh and test_mqtt).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_sub >/dev/null || fv_skip "mosquitto-clients not installed"
[ "$(id -u)" = 0 ] || fv_skip "network namespaces need root"
for t in ip nft tc; do
	command -v "$t" >/dev/null || fv_skip "$t is not installed (scripts/deps: iproute2, nftables)"
done

fv_tmpdir
NS_PFX=fvnf$$
NSES=()
ns_cleanup() {
	local n
	for n in "${NSES[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	NSES=()
}
# Processes first (fv_cleanup), then the namespaces they lived in.
trap 'rc=$?; set +e; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; ns_cleanup; exit $rc' EXIT

ip netns add "$NS_PFX-brk" 2>/dev/null || fv_skip "cannot create a network namespace (ip netns add)"
NSES+=("$NS_PFX-brk")
NSB=$NS_PFX-brk
ip -n "$NSB" link set lo up
# link NAME INDEX: namespace $NS_PFX-NAME joined to the broker's by a veth
# pair: br<INDEX> (10.77.INDEX.1) on the broker's side, up0 (10.77.INDEX.2)
# on its own.
link() {
	local ns=$NS_PFX-$1 i=$2
	ip netns add "$ns"
	NSES+=("$ns")
	ip link add "br$i" netns "$NSB" type veth peer name up0 netns "$ns" ||
		fv_skip "cannot create a veth pair between namespaces"
	ip -n "$NSB" addr add "10.77.$i.1/24" dev "br$i"
	ip -n "$ns" addr add "10.77.$i.2/24" dev up0
	ip -n "$NSB" link set "br$i" up
	ip -n "$ns" link set up0 up
	ip -n "$ns" link set lo up
}
link coord 1
link pump-1 2
link compressor-2 3
link motor-3 4
nx() { local ns=$NS_PFX-$1; shift; ip netns exec "$ns" "$@"; }
nx pump-1 nft add table inet fv 2>/dev/null || fv_skip "nftables does not work here (nft add table)"
nx pump-1 nft delete table inet fv
tc -n "$NSB" qdisc add dev br2 root tbf rate 1mbit burst 16kb latency 1s 2>/dev/null ||
	fv_skip "tc tbf is not available"
tc -n "$NSB" qdisc del dev br2 root

# --- broker, simulator, subscribers: in the broker's namespace ---
FV_BROKER_PORT=1883
cat >"$FV_TMP/mosquitto.conf" <<EOF
listener 1883
allow_anonymous true
persistence false
log_dest stderr
log_type all
user $(id -un)
EOF
ip netns exec "$NSB" mosquitto -c "$FV_TMP/mosquitto.conf" >"$FV_TMP/mosquitto.out" 2>&1 &
fv_track $!
fv_wait_for "the broker" 10 ip netns exec "$NSB" mosquitto_pub -h 127.0.0.1 -t fv/ping -m 1 ||
	fv_fail "mosquitto did not start in its namespace"
sub() { # NAME TOPIC
	ip netns exec "$NSB" mosquitto_sub -h 127.0.0.1 -v -t "$2" >"$FV_TMP/$1.log" 2>/dev/null &
	fv_track $!
}
sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
sub states "fedvigil/v1/$FV_FLEET/agent/+/state"

# --- the fleet, each daemon in its namespace ---
chans=(vibration temperature pressure flow current)
FV_ROUND_INTERVAL_MS=300
fleet_write_coordinator 0 3 5 "[round]" "epochs = 1" "min_samples = 100" "quorum = 0.6" \
	"deadline_ms = 3000" "max_extensions = 1"
sed -i 's|^broker = .*|broker = tcp://10.77.1.1:1883\nkeepalive_s = 2|' "$FV_TMP/coordinator.ini"
agents=(pump-1 compressor-2 motor-3)
declare -A IDX=([pump-1]=2 [compressor-2]=3 [motor-3]=4)
declare -A PID
for m in "${agents[@]}"; do
	fleet_write_agent "$m" plant 1000 "${chans[@]}"
	sed -i "s|^broker = .*|broker = tcp://10.77.${IDX[$m]}.1:1883\nkeepalive_s = 2|" "$FV_TMP/$m.ini"
	cat >>"$FV_TMP/$m.ini" <<-EOF
		[metrics]
		listen = 127.0.0.1:9100
	EOF
	# ip netns exec execs the program: $! is the daemon's own PID.
	ip netns exec "$NS_PFX-$m" "$FV_BIN/fedvigil-agent" -c "$FV_TMP/$m.ini" >>"$FV_TMP/$m.log" 2>&1 &
	PID[$m]=$!
	fv_track $!
done
ip netns exec "$NS_PFX-coord" "$FV_BIN/fedvigil-coordinator" -c "$FV_TMP/coordinator.ini" \
	>>"$FV_TMP/coordinator.log" 2>&1 &
PID[coord]=$!
fv_track $!
ip netns exec "$NSB" "$FV_BIN/fedvigil-sim" --broker tcp://127.0.0.1:1883 --prefix plant --machines 3 \
	--period-ms 1000 --speed 100 --duration 100000 --normal 100000 --faults 0 --seed 11 -q \
	>"$FV_TMP/sim.log" 2>&1 &
fv_track $!

C=$FV_TMP/coordinator.log
M=$FV_TMP/metrics.log
say() { echo "netfaults: [$SECONDS s] $*"; }
now_ms() { date +%s%3N; }
# Seconds since T0_MS, with a decimal.
since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
closed() { grep -c '"kind":"train".*"result":"closed"' "$M" 2>/dev/null || true; }
last_round() { grep '"kind":"train".*"result":"closed"' "$M" | tail -1 | sed -n 's/.*"round":\([0-9]*\).*/\1/p'; }
# wait_closed N DESC TIMEOUT: until N more training rounds closed than now.
wait_closed() {
	local want=$(($(closed) + $1))
	fv_wait_for "$2" "$3" bash -c "[ \$(grep -c '\"kind\":\"train\".*\"result\":\"closed\"' '$M') -ge $want ]" ||
		fv_fail "$2: no $1 more rounds closed within $3 s"
}
# accepted AGENT FROM TO: updates of AGENT accepted for rounds FROM..TO.
accepted() {
	awk -v a="$1" -v f="$2" -v t="$3" '$0 ~ "update from " a " for round [0-9]+ accepted" {
		r = $0; sub(/.* for round /, "", r); sub(/ .*/, "", r); if (r + 0 >= f && r + 0 <= t) n++ }
		END { print n + 0 }' "$C"
}
# Milliseconds from round R's announcement to its close (coordinator log).
round_ms() {
	awk -v r="$1" '
		function ms(s) { split(substr(s, 12, 12), p, /[:.]/); return ((p[1] * 60 + p[2]) * 60 + p[3]) * 1000 + p[4] }
		$0 ~ "round " r " \\(train" && / announced/ { a = ms($1) }
		$0 ~ "round " r " closed" { c = ms($1) }
		END { if (a && c) print c - a; else print "?" }' "$C"
}
# Mean of round_ms over rounds FROM..TO.
mean_round_ms() {
	local r s=0 n=0 v
	for r in $(seq "$1" "$2"); do
		v=$(round_ms "$r")
		[ "$v" = "?" ] && continue
		s=$((s + v)); n=$((n + 1))
	done
	[ "$n" -gt 0 ] && echo $((s / n)) || echo "?"
}
online() { grep -c "agent $1 online" "$C" 2>/dev/null || true; }
# missed AGENT FROM TO: rounds FROM..TO that closed at their deadline without AGENT.
missed() {
	awk -v a="$1" -v f="$2" -v t="$3" '$0 ~ "round [0-9]+: no update from .*selected agents in time \\[.*" a {
		r = $0; sub(/.*round /, "", r); sub(/:.*/, "", r); if (r + 0 >= f && r + 0 <= t) n++ }
		END { print n + 0 }' "$C"
}

fv_wait_for "the fleet training" 60 bash -c "[ \$(grep -c '\"kind\":\"train\".*\"result\":\"closed\"' '$M') -ge 3 ]" ||
	fv_fail "no 3 training rounds without faults"
r0=$(last_round)
grep '"kind":"train".*"result":"closed"' "$M" | tail -2 | grep -q '"agents":3' ||
	fv_fail "rounds without faults did not close with all 3 agents"
base_ms=$(mean_round_ms 2 "$r0")
say "baseline: rounds 1..$r0 closed, $base_ms ms per round (announcement to close)"

# --- 1. packet loss ---
loss=25
for ch in input output; do
	dir=iifname
	[ $ch = output ] && dir=oifname
	nx pump-1 nft add table inet fv 2>/dev/null || true
	nx pump-1 nft add chain inet fv $ch "{ type filter hook $ch priority 0; }"
	nx pump-1 nft add rule inet fv $ch $dir up0 numgen random mod 100 \< $loss counter drop
done
ra=$(($(last_round) + 1))
wait_closed 4 "4 rounds with $loss % loss on pump-1's link" 60
rb=$(last_round)
drops=$(nx pump-1 nft list table inet fv | sed -n 's/.*packets \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
nx pump-1 nft delete table inet fv
n=$(accepted pump-1 "$ra" "$rb")
[ "$n" -ge 1 ] || fv_fail "$loss % loss: none of pump-1's updates for rounds $ra..$rb accepted"
say "$loss % loss on pump-1: rounds $ra..$rb closed, $n of $((rb - ra + 1)) pump-1 updates accepted, $(missed pump-1 "$ra" "$rb") closed at the deadline without it, $drops packets dropped, $(mean_round_ms "$ra" "$rb") ms per round"

# --- 2. bandwidth: pump-1's upload at 24 kbit/s ---
tc -n "$NS_PFX-pump-1" qdisc add dev up0 root tbf rate 24kbit burst 4kb latency 30s
ra=$(($(last_round) + 1))
t0=$SECONDS
wait_closed 2 "2 rounds with pump-1 at 24 kbit/s" 60
rb=$(last_round)
tc -n "$NS_PFX-pump-1" qdisc del dev up0 root
n=$(accepted pump-1 "$ra" "$rb")
missed=$(missed pump-1 "$ra" "$rb")
[ "$missed" -ge 1 ] || fv_fail "24 kbit/s: no round closed without pump-1 at its deadline"
say "24 kbit/s upload on pump-1: rounds $ra..$rb closed in $((SECONDS - t0)) s, $n of pump-1's updates in time, rounds without it at the deadline: $missed, $(mean_round_ms "$ra" "$rb") ms per round"
rc=$(($(last_round) + 1))
fv_wait_for "pump-1 in time again" 40 bash -c "grep -q 'update from pump-1 for round \([0-9]*\) accepted' '$C' &&
	[ \$(awk -v f=$rc '/update from pump-1 for round [0-9]+ accepted/ { r = \$0; sub(/.* for round /, \"\", r); sub(/ .*/, \"\", r); if (r + 0 >= f) n++ } END { print n + 0 }' '$C') -ge 1 ]" ||
	fv_fail "pump-1's updates were not accepted again after the limit was lifted"
say "limit lifted: pump-1's updates accepted again"

# --- 3. partition of compressor-2 ---
n_on=$(online compressor-2)
nx compressor-2 nft add table inet fv
for ch in input output; do
	nx compressor-2 nft add chain inet fv $ch "{ type filter hook $ch priority 0; }"
	nx compressor-2 nft add rule inet fv $ch $([ $ch = input ] && echo iifname || echo oifname) up0 drop
done
t0=$SECONDS
t0_ms=$(now_ms)
fv_wait_for "compressor-2's will" 15 grep -q "agent compressor-2 offline" "$C" ||
	fv_fail "partition: the coordinator never saw compressor-2 go offline"
t_will=$(since "$t0_ms")
grep -q 'compressor-2.*"offline"' "$FV_TMP/states.log" || fv_fail "partition: no will published for compressor-2"
ra=$(($(last_round) + 1))
wait_closed 1 "a round without compressor-2" 30
# The agent's own client notices too (no answer to its pings), then its
# metrics page says so: the main loop answers while the link is dead.
fv_wait_for "compressor-2 noticing the partition" 15 grep -q "lost connection to" "$FV_TMP/compressor-2.log" ||
	fv_fail "partition: compressor-2 never noticed that its link is dead"
t_lost=$(since "$t0_ms")
h=$(nx compressor-2 "$FV_BIN/fedvigil-health" -t 3 127.0.0.1:9100 || true)
grep -q "not connected to the MQTT broker" <<<"$h" || fv_fail "partition: compressor-2's metrics page: $h"
sleep $((7 - (SECONDS - t0) > 0 ? 7 - (SECONDS - t0) : 0))
nx compressor-2 nft delete table inet fv
t1_ms=$(now_ms)
rb=$(last_round)
[ "$(accepted compressor-2 "$ra" "$rb")" = 0 ] || fv_fail "partition: compressor-2's update accepted while partitioned"
fv_wait_for "compressor-2 back" 40 bash -c "[ \$(grep -c 'agent compressor-2 online' '$C') -gt $n_on ]" ||
	fv_fail "partition healed: compressor-2 never came back online"
t_back=$(since "$t1_ms")
rc=$(($(last_round) + 1))
fv_wait_for "compressor-2's update accepted" 40 bash -c "[ \$(awk -v f=$rc '/update from compressor-2 for round [0-9]+ accepted/ { r = \$0; sub(/.* for round /, \"\", r); sub(/ .*/, \"\", r); if (r + 0 >= f) n++ } END { print n + 0 }' '$C') -ge 1 ]" ||
	fv_fail "partition healed: compressor-2's updates not accepted again"
grep -q "reconnected to" "$FV_TMP/compressor-2.log" || fv_fail "compressor-2 did not log its reconnect"
say "partition of compressor-2 (7 s): will after $t_will s, the agent noticed by $t_lost s, rounds $ra..$rb closed without it, metrics page answered; healed: online again after $t_back s, updates accepted from round $rc on"

# --- 4. the coordinator's link down ---
v0=$(grep '"kind":"train".*"result":"closed"' "$M" | tail -1 | sed -n 's/.*"version":\([0-9]*\).*/\1/p')
# 8 s = 4 keepalives: a shorter outage may be ridden out by TCP without a
# reconnect (5 s was, in one run of four).
ip -n "$NS_PFX-coord" link set up0 down
sleep 8
ip -n "$NS_PFX-coord" link set up0 up
t1_ms=$(now_ms)
fv_wait_for "coordinator reconnected" 40 bash -c "[ \$(grep -c 'reconnected to' '$C') -ge 1 ]" ||
	fv_fail "link up: the coordinator did not reconnect"
wait_closed 2 "rounds after the coordinator's link came back" 40
t_back=$(since "$t1_ms")
grep '"kind":"train".*"result":"closed"' "$M" | tail -1 | grep -q '"agents":3' ||
	fv_fail "after the coordinator's outage rounds did not close with all 3 agents: $(tail -1 "$M")"
v1=$(grep '"kind":"train".*"result":"closed"' "$M" | tail -1 | sed -n 's/.*"version":\([0-9]*\).*/\1/p')
[ "$v1" -gt "$v0" ] || fv_fail "the model did not advance after the coordinator's outage ($v0 -> $v1)"
for m in "${agents[@]}"; do
	kill -0 "${PID[$m]}" 2>/dev/null || fv_fail "$m died during the faults"
done
say "coordinator's link down 8 s: reconnected, 2 rounds closed within $t_back s of link up, model v$v0 -> v$v1"

# --- 5. SIGTERM while motor-3 is partitioned ---
nx motor-3 nft add table inet fv
nx motor-3 nft add chain inet fv output "{ type filter hook output priority 0; }"
nx motor-3 nft add rule inet fv output oifname up0 drop
sleep 1
for p in coord "${agents[@]}"; do kill -TERM "${PID[$p]}"; done
t0_ms=$(now_ms)
for p in coord "${agents[@]}"; do
	for i in $(seq 1 50); do kill -0 "${PID[$p]}" 2>/dev/null || break; sleep 0.1; done
	kill -0 "${PID[$p]}" 2>/dev/null && fv_fail "$p did not exit within 5 s of SIGTERM"
	st=0
	wait "${PID[$p]}" || st=$?
	[ "$st" = 0 ] || fv_fail "$p exited with $st on SIGTERM"
done
say "SIGTERM (motor-3 partitioned): all 4 daemons exited 0 within $(since "$t0_ms") s"
# Late or resent updates may be refused as such; nothing else (a cut or a
# loss never makes a malformed update).
bad=$(grep 'rejected: ' "$C" | grep -v 'stale\|late\|duplicate\|not selected' || true)
[ -z "$bad" ] || fv_fail "updates rejected: $(head -3 <<<"$bad")"
say "refused as late/stale/duplicate: $(grep -c 'rejected: ' "$C" || true); malformed or other: 0"
echo "PASS"
