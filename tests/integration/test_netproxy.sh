#!/usr/bin/env bash
# Delay and connections cut in the middle of a message, through a TCP proxy
# of our own (tests/helpers/tcp_proxy.c; netem is not available), between a
# real Mosquitto and real daemons on loopback (issue 8, docs/reliability.md
# "Network faults"). The coordinator connects directly; each agent through
# its own proxy:
#   pump-1        400 ms each way (every byte, both directions);
#   compressor-2  its first two training updates (MQTT PUBLISH of ~15.7 kB)
#                 cut half-way, client to broker;
#   motor-3       the first GlobalModel sent to it (a retained PUBLISH of
#                 ~15 kB) cut half-way, broker to client.
# Asserts: the broker never delivers a partial message (the coordinator
# rejects nothing); compressor-2 reconnects, receives the retained round
# announcement again and resends its cached update, which is accepted once
# and the round closes with every agent it selected; motor-3 reconnects and gets the
# retained model whole; pump-1 answers every round in time despite the
# delay; every daemon and proxy exits 0 within 5 s of SIGTERM. Also under
# ASan (the reconnect and resend paths).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_sub >/dev/null || fv_skip "mosquitto-clients not installed"
fv_tmpdir
fv_broker_start
trap 'rc=$?; set +e; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT
PROXY=$FV_BINARY_DIR/tests/fv-tcp-proxy
[ -x "$PROXY" ] || fv_fail "$PROXY is not built"

say() { echo "netproxy: [$SECONDS s] $*"; }
declare -A PPORT PPID_ OPTS
OPTS[pump-1]="--delay-ms 400"
OPTS[compressor-2]="--cut-publish 10000 --cut-dir up --cut-count 2"
OPTS[motor-3]="--cut-publish 10000 --cut-dir down --cut-count 1"
agents=(pump-1 compressor-2 motor-3)
for m in "${agents[@]}"; do
	PPORT[$m]=$(fv_free_port)
	# shellcheck disable=SC2086
	"$PROXY" ${OPTS[$m]} "${PPORT[$m]}" 127.0.0.1 "$FV_BROKER_PORT" >"$FV_TMP/proxy-$m.log" 2>&1 &
	PPID_[$m]=$!
	fv_track $!
done
for m in "${agents[@]}"; do
	fv_wait_for "proxy for $m" 10 grep -q listening "$FV_TMP/proxy-$m.log" ||
		fv_fail "the proxy for $m did not start: $(cat "$FV_TMP/proxy-$m.log")"
done

chans=(vibration temperature pressure flow current)
FV_ROUND_INTERVAL_MS=300
fleet_write_coordinator 0 3 5 "[round]" "epochs = 1" "min_samples = 100" "quorum = 1.0" \
	"deadline_ms = 15000" "max_extensions = 0"
declare -A PID
for m in "${agents[@]}"; do
	fleet_write_agent "$m" plant 1000 "${chans[@]}"
	sed -i "s|^broker = .*|broker = tcp://127.0.0.1:${PPORT[$m]}\nkeepalive_s = 5|" "$FV_TMP/$m.ini"
	fleet_start_agent "$m"
	PID[$m]=${AGENT_PIDS[$m]}
done
fleet_sub metrics "fedvigil/v1/$FV_FLEET/coord/metrics"
fleet_start_coordinator
PID[coord]=$COORD_PID
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$FV_BROKER_PORT" --prefix plant --machines 3 \
	--period-ms 1000 --speed 100 --duration 100000 --normal 100000 --faults 0 --seed 11 -q \
	>"$FV_TMP/sim.log" 2>&1 &
fv_track $!
C=$FV_TMP/coordinator.log
M=$FV_TMP/metrics.log

rounds=6
fv_wait_for "$rounds training rounds" 90 bash -c "[ \$(grep -c '\"kind\":\"train\".*\"result\":\"closed\"' '$M') -ge $rounds ]" ||
	fv_fail "no $rounds training rounds closed"
say "$rounds training rounds closed"

# compressor-2: two updates cut half-way; each resent after the reconnect.
n=$(grep -c "cut up after" "$FV_TMP/proxy-compressor-2.log" || true)
[ "$n" = 2 ] || fv_fail "compressor-2's proxy cut $n updates, expected 2: $(cat "$FV_TMP/proxy-compressor-2.log")"
grep "cut up after" "$FV_TMP/proxy-compressor-2.log" | grep -q "/round/[0-9]*/update/compressor-2" ||
	fv_fail "the cut packets were not compressor-2's updates"
cut_rounds=$(sed -n 's|.*cut up after \([0-9]*\) of \([0-9]*\) bytes .*/round/\([0-9]*\)/update/.*|\3|p' \
	"$FV_TMP/proxy-compressor-2.log" | sort -un)
first_cut=$(grep -m1 "cut up after" "$FV_TMP/proxy-compressor-2.log" | sed 's/^proxy: //')
n=$(grep -c "reconnected to" "$FV_TMP/compressor-2.log" || true)
[ "$n" -ge 2 ] || fv_fail "compressor-2 reconnected $n times after 2 cuts"
n=$(grep -c "announced again: resent our update" "$FV_TMP/compressor-2.log" || true)
[ "$n" -ge 2 ] || fv_fail "compressor-2 resent its update $n times after 2 cuts"
for r in $cut_rounds; do
	n=$(grep -c "update from compressor-2 for round $r accepted" "$C" || true)
	[ "$n" = 1 ] || fv_fail "compressor-2's update for round $r (cut) accepted $n times"
	grep -Eq "round $r closed: agents=([0-9]+)/\1 " "$C" ||
		fv_fail "round $r (with a cut update) did not close with every selected agent: $(grep "round $r closed" "$C")"
done
# How long the cut cost: announcement to the resent update's acceptance.
cut_ms=$(awk -v r="$(echo $cut_rounds | cut -d' ' -f1)" '
	function ms(s) { split(substr(s, 12, 12), p, /[:.]/); return ((p[1] * 60 + p[2]) * 60 + p[3]) * 1000 + p[4] }
	$0 ~ "round " r " \\(train" && / announced/ { a = ms($1) }
	$0 ~ "update from compressor-2 for round " r " accepted" { c = ms($1) }
	END { print (a && c) ? c - a : "?" }' "$C")
say "compressor-2: $first_cut; round(s) $(echo $cut_rounds) closed with its resent update, accepted once each, $cut_ms ms after the announcement"

# motor-3: the model cut on its way down; the retained copy arrives whole.
grep -q "cut down after .* bytes of a PUBLISH to fedvigil/v1/$FV_FLEET/model" "$FV_TMP/proxy-motor-3.log" ||
	fv_fail "motor-3's proxy did not cut a model: $(cat "$FV_TMP/proxy-motor-3.log")"
cut_m=$(grep -m1 "cut down after" "$FV_TMP/proxy-motor-3.log" | sed 's/^proxy: //')
grep -q "reconnected to" "$FV_TMP/motor-3.log" || fv_fail "motor-3 did not reconnect after the cut"
grep "global model on .* rejected\|model v[0-9]* refused" "$FV_TMP/motor-3.log" &&
	fv_fail "motor-3 saw a damaged model"
last_v=$(grep '"kind":"train".*"result":"closed"' "$M" | tail -2 | head -1 | sed -n 's/.*"version":\([0-9]*\).*/\1/p')
grep -q "model v$last_v loaded" "$FV_TMP/motor-3.log" || fv_fail "motor-3 never loaded model v$last_v"
n=$(grep -c "update from motor-3 for round [0-9]* accepted" "$C" || true)
[ "$n" -ge $((rounds - 1)) ] || fv_fail "only $n of motor-3's updates accepted"
say "motor-3: $cut_m; reconnected, on model v$last_v, $n updates accepted"

# pump-1: 400 ms each way, in time in every round.
n=$(grep -c "update from pump-1 for round [0-9]* accepted" "$C" || true)
[ "$n" -ge $((rounds + 1)) ] || fv_fail "only $n of pump-1's updates accepted (statistics + $rounds rounds)"
grep -q "no update from .*pump-1" "$C" && fv_fail "pump-1 missed a deadline: $(grep 'no update from' "$C" | head -1)"
# Its answer time against motor-3's (direct but for the model cut) in the
# last training rounds: the announcement to the accepted update.
resp() { # AGENT: median ms from a round's announcement to AGENT's accepted update
	awk -v a="$1" '
		function ms(s) { split(substr(s, 12, 12), p, /[:.]/); return ((p[1] * 60 + p[2]) * 60 + p[3]) * 1000 + p[4] }
		/ \(train, base version [0-9]+\) announced/ { r = $0; sub(/.*round /, "", r); sub(/ .*/, "", r); an[r] = ms($1) }
		$0 ~ "update from " a " for round [0-9]+ accepted" { r = $0; sub(/.* for round /, "", r); sub(/ .*/, "", r)
			if (r in an) print ms($1) - an[r] }' "$C" | sort -n | awk '{ d[NR] = $1 } END { print NR ? d[int((NR + 1) / 2)] : "?" }'
}
say "pump-1 (400 ms each way): all $n updates in time; median answer $(resp pump-1) ms after the announcement, compressor-2 $(resp compressor-2) ms, motor-3 $(resp motor-3) ms"

bad=$(grep 'rejected: ' "$C" | grep -v 'duplicate\|stale' || true)
[ -z "$bad" ] || fv_fail "the coordinator rejected updates: $(head -3 <<<"$bad")"
grep -q '"malformed":[1-9]' "$M" && fv_fail "a malformed update reached the coordinator"

# Nothing hangs: SIGTERM to every daemon and proxy.
for p in coord "${agents[@]}"; do kill -TERM "${PID[$p]}"; done
for m in "${agents[@]}"; do kill -TERM "${PPID_[$m]}"; done
for p in "${PID[@]}" "${PPID_[@]}"; do
	for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$p" 2>/dev/null && fv_fail "PID $p did not exit within 5 s of SIGTERM"
	st=0
	wait "$p" || st=$?
	[ "$st" = 0 ] || fv_fail "PID $p exited with $st on SIGTERM"
done
say "SIGTERM: 4 daemons and 3 proxies exited 0"
echo "PASS"
