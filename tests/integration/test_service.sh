#!/usr/bin/env bash
# Both daemons as services, seen from the service manager's side and from a
# monitoring stack's:
# - the notify protocol through a NOTIFY_SOCKET of our own (fv-notify-listen):
#   no READY=1 before the broker connection, READY=1 after it (the agent's
#   once the retained model is loaded), STATUS= with round and score,
#   WATCHDOG=1 only while the main loop goes round (SIGSTOP stops the pings,
#   SIGCONT resumes them), RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on
#   SIGTERM;
# - SIGHUP reloads: live keys applied, restart-only keys reported and kept,
#   a bad file rejected with the old configuration kept;
# - journald priorities: <N> prefixes when stderr is the JOURNAL_STREAM;
# - the Prometheus page on metrics.listen: format, counters that move, 404,
#   405, 431, and a responder that does not block the loop when clients idle.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
# Writes to a peer that already answered and closed (the 431 case) must
# fail, not kill the script.
trap "" PIPE
trap 'rc=$?; set +e; [ $rc -ne 0 ] && [ $rc -ne 77 ] && { fleet_dump_logs; for f in "$FV_TMP"/*.notify; do echo "-- $f"; grep -v WATCHDOG "$f" | tail -5; done; }; fv_cleanup; exit $rc' EXIT
LISTEN=$FV_BINARY_DIR/tests/fv-notify-listen
[ -x "$LISTEN" ] || fv_skip "$LISTEN not built"
chans=(vibration temperature pressure flow current)

# listen NAME: a notify socket $FV_TMP/NAME.sock logging to $FV_TMP/NAME.notify
listen() {
	"$LISTEN" "$FV_TMP/$1.sock" >"$FV_TMP/$1.notify" 2>&1 &
	fv_track $!
	fv_wait_for "notify socket $1" 5 test -S "$FV_TMP/$1.sock" || fv_fail "no notify socket"
}
now_ms() { date +%s%3N; }
# pings NAME FROM TO: WATCHDOG=1 lines of NAME with FROM <= time < TO (ms)
pings() { awk -v a="$2" -v b="$3" '$2 == "WATCHDOG=1" && $1 >= a && $1 < b' "$FV_TMP/$1.notify" | wc -l; }
# scrape PORT [PATH [METHOD]]: the whole HTTP response, via bash's /dev/tcp
scrape() {
	local port=$1 path=${2:-/metrics} method=${3:-GET}
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf '%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n' "$method" "$path" >&3
	timeout 5 cat <&3 || true
	exec 3<&- 3>&-
}
# prom_value TEXT NAME: the value of an unlabelled sample
prom_value() { awk -v n="$2" '$1 == n { print $2 }' <<<"$1"; }

# ---- coordinator: started before the broker exists ----
FV_BROKER_PORT=$(fv_free_port)
fleet_write_coordinator 2 1 5
sed -i 's/^min_samples = .*/min_samples = 40/; s/^interval_ms = .*/interval_ms = 300/' "$FV_TMP/coordinator.ini"
printf '[metrics]\nlisten = 127.0.0.1:0\n' >>"$FV_TMP/coordinator.ini"
listen coord
# stderr is the "journal stream": a file whose dev:ino goes in JOURNAL_STREAM.
: >"$FV_TMP/coordinator.log"
js=$(stat -c '%d:%i' "$FV_TMP/coordinator.log")
NOTIFY_SOCKET=$FV_TMP/coord.sock WATCHDOG_USEC=400000 JOURNAL_STREAM=$js \
	bash -c 'export WATCHDOG_PID=$$; exec "$0" "$@"' "$FV_BIN/fedvigil-coordinator" \
	-c "$FV_TMP/coordinator.ini" >>"$FV_TMP/coordinator.log" 2>&1 &
COORD_PID=$!
fv_track $COORD_PID
sleep 1.5
grep -q 'READY=1' "$FV_TMP/coord.notify" && fv_fail "coordinator READY=1 before any broker was up"
[ "$(pings coord 0 99999999999999)" -ge 3 ] || fv_fail "coordinator loop does not ping the watchdog"
grep -q 'STATUS=broker not connected' "$FV_TMP/coord.notify" || fv_fail "no STATUS= while disconnected"
# journald priorities: notice = <5>, warning = <4>, and no plain timestamps.
grep -q '^<5>fedvigil-coordinator .* started' "$FV_TMP/coordinator.log" || fv_fail "no <5> on the start notice"
grep -q '^<4>mqtt: cannot connect' "$FV_TMP/coordinator.log" || fv_fail "no <4> on the connect warning"
grep -qv '^<[0-7]>' "$FV_TMP/coordinator.log" && fv_fail "a log line without priority prefix under JOURNAL_STREAM"
# A bad configuration is an error in the journal too (it is printed before
# logging is set up), for both daemons; without JOURNAL_STREAM, no prefix.
printf '[agent]\nid = x\nfleet = f\n[detect]\nk = many\n' >"$FV_TMP/bad-agent.ini"
printf '[round]\ndeadline_ms = 5\n' >"$FV_TMP/bad-coord.ini"
for p in agent coordinator; do
	bad=$FV_TMP/bad-${p%inator}.ini
	: >"$FV_TMP/$p-js.log"
	rc=0
	JOURNAL_STREAM=$(stat -c '%d:%i' "$FV_TMP/$p-js.log") "$FV_BIN/fedvigil-$p" -c "$bad" --check-config \
		2>>"$FV_TMP/$p-js.log" || rc=$?
	[ $rc -eq 2 ] || fv_fail "fedvigil-$p: a bad config exited $rc"
	grep -q "^<3>fedvigil-$p: .*bad-.*\.ini:[0-9]" "$FV_TMP/$p-js.log" ||
		fv_fail "fedvigil-$p: config error not at priority 3: $(cat "$FV_TMP/$p-js.log")"
	out=$("$FV_BIN/fedvigil-$p" -c "$bad" --check-config 2>&1) && fv_fail "fedvigil-$p: a bad config passed"
	grep -q "^fedvigil-$p: " <<<"$out" || fv_fail "fedvigil-$p: config error prefixed outside the journal: $out"
	# A bad command line (an unknown flag, a flag without its value, a
	# stray argument): exit 2, every line at priority 3 in the journal.
	for args in "--no-such-flag" "--broker" "stray"; do
		: >"$FV_TMP/$p-js.log"
		rc=0
		JOURNAL_STREAM=$(stat -c '%d:%i' "$FV_TMP/$p-js.log") "$FV_BIN/fedvigil-$p" $args \
			2>>"$FV_TMP/$p-js.log" || rc=$?
		[ $rc -eq 2 ] || fv_fail "fedvigil-$p $args: exited $rc"
		grep -q "^<3>fedvigil-$p: .*${args#--}" "$FV_TMP/$p-js.log" &&
			! grep -qv '^<3>' "$FV_TMP/$p-js.log" ||
			fv_fail "fedvigil-$p $args: usage error not at priority 3: $(cat "$FV_TMP/$p-js.log")"
	done
	out=$("$FV_BIN/fedvigil-$p" --no-such-flag 2>&1) && fv_fail "fedvigil-$p: a bad flag passed"
	grep -q "^fedvigil-$p: option '--no-such-flag'" <<<"$out" ||
		fv_fail "fedvigil-$p: usage error outside the journal: $out"
done
fv_broker_start "$FV_BROKER_PORT"
fv_wait_for "coordinator READY=1" 15 grep -q 'READY=1' "$FV_TMP/coord.notify" || fv_fail "coordinator never READY"
cport=$(sed -n 's|.*Prometheus metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$FV_TMP/coordinator.log")
[ -n "$cport" ] || fv_fail "coordinator did not report its metrics port"

# ---- agents: pump-1 trains the first model, compressor-2 joins later ----
fleet_sub coordmetrics "fedvigil/v1/$FV_FLEET/coord/metrics"
for m in pump-1 compressor-2; do
	fleet_write_agent "$m" plant 1000 "${chans[@]}"
	listen "$m"
done
printf '[metrics]\nlisten = 0\n' >>"$FV_TMP/pump-1.ini"
NOTIFY_SOCKET=$FV_TMP/pump-1.sock WATCHDOG_USEC=400000 \
	"$FV_BIN/fedvigil-agent" -c "$FV_TMP/pump-1.ini" >>"$FV_TMP/pump-1.log" 2>&1 &
A1=$!
fv_track $A1
"$FV_BIN/fedvigil-sim" --broker "$FV_BROKER_URI" --machines 2 --speed 400 --duration 4000 \
	--normal 3000 --faults 1 --seed 5 -q >"$FV_TMP/sim.log" 2>&1 &
fv_track $!
fv_wait_for "model v1 (statistics round)" 30 grep -q '"version":1' "$FV_TMP/coordmetrics.log" ||
	fv_fail "the statistics round did not close"
# The model reaches the agent a moment after coord/metrics reaches us.
fv_wait_for "pump-1 READY=1" 10 grep -q 'READY=1|STATUS=connected' "$FV_TMP/pump-1.notify" ||
	fv_fail "pump-1 not READY"
NOTIFY_SOCKET=$FV_TMP/compressor-2.sock \
	"$FV_BIN/fedvigil-agent" -c "$FV_TMP/compressor-2.ini" >>"$FV_TMP/compressor-2.log" 2>&1 &
A2=$!
fv_track $A2
fv_wait_for "compressor-2 READY=1" 10 grep -q 'READY=1' "$FV_TMP/compressor-2.notify" || fv_fail "compressor-2 never READY"
grep -q 'READY=1|STATUS=connected, model v[0-9]* loaded' "$FV_TMP/compressor-2.notify" ||
	fv_fail "compressor-2 READY=1 without the retained model: $(grep READY "$FV_TMP/compressor-2.notify")"
# No watchdog for an agent that was not given one.
grep -q 'WATCHDOG=1' "$FV_TMP/compressor-2.notify" && fv_fail "compressor-2 pinged a watchdog it does not have"

# STATUS= carries the round and the last score once windows are scored.
fv_wait_for "pump-1 STATUS with a score" 20 grep -q 'STATUS=round [0-9]*, model v[0-9]*, last score' "$FV_TMP/pump-1.notify" ||
	fv_fail "pump-1 STATUS= lacks round and score"
grep -q 'STATUS=round [0-9]* .*live agents, model v' "$FV_TMP/coord.notify" || fv_fail "coordinator STATUS= lacks the round"

# ---- watchdog: SIGSTOP stops the pings, SIGCONT resumes them ----
t0=$(now_ms)
kill -STOP $A1
sleep 1.5
t1=$(now_ms)
kill -CONT $A1
sleep 1.5
t2=$(now_ms)
n_stopped=$(pings pump-1 $((t0 + 100)) "$t1")
n_after=$(pings pump-1 "$t1" "$t2")
n_before=$(pings pump-1 $((t0 - 1500)) "$t0")
echo "watchdog pings: $n_before in 1.5 s before SIGSTOP, $n_stopped while stopped, $n_after in 1.5 s after SIGCONT"
[ "$n_stopped" -eq 0 ] || fv_fail "$n_stopped WATCHDOG=1 while the agent was stopped"
# Period 200 ms. After SIGCONT the loop first works off the readings that
# queued up meanwhile (slowly under ASan), so fewer pings are fine.
[ "$n_before" -ge 3 ] && [ "$n_after" -ge 1 ] || fv_fail "pings did not run before/after the stop"

# ---- Prometheus page ----
aport=$(sed -n 's|.*Prometheus metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$FV_TMP/pump-1.log")
[ -n "$aport" ] || fv_fail "pump-1 did not report its metrics port"
r1=$(scrape "$aport")
head -1 <<<"$r1" | grep -q '^HTTP/1.1 200' || fv_fail "GET /metrics: $(head -1 <<<"$r1")"
grep -qi '^Content-Type: text/plain; version=0.0.4' <<<"$r1" || fv_fail "wrong content type"
body1=$(sed '1,/^\r$/d' <<<"$r1")
# Text format: comments, or NAME{LABELS} VALUE; every sample's family declared.
bad=$(grep -Ev '^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+0-9.eEInfNa]+)$' <<<"$body1" || true)
[ -z "$bad" ] || fv_fail "malformed exposition lines: $bad"
for fam in $(sed -n 's/^\([a-zA-Z_:][a-zA-Z0-9_:]*\)[{ ].*/\1/p' <<<"$body1" | sort -u); do
	grep -q "^# TYPE $fam " <<<"$body1" || fv_fail "sample $fam without # TYPE"
done
for n in fedvigil_agent_windows_total fedvigil_agent_vectors_total fedvigil_agent_alerts_total \
	fedvigil_agent_score fedvigil_agent_threshold fedvigil_agent_rounds_total \
	fedvigil_mqtt_sent_bytes_total process_resident_memory_bytes process_cpu_seconds_total; do
	[ -n "$(prom_value "$body1" $n)" ] || fv_fail "metric $n missing"
done
awk -v v="$(prom_value "$body1" process_resident_memory_bytes)" 'BEGIN { exit !(v > 1e6) }' || fv_fail "RSS not plausible"
sleep 1
body2=$(scrape "$aport" | sed '1,/^\r$/d')
w1=$(prom_value "$body1" fedvigil_agent_vectors_total); w2=$(prom_value "$body2" fedvigil_agent_vectors_total)
[ "$w2" -gt "$w1" ] || fv_fail "vectors_total did not grow between scrapes ($w1 -> $w2)"
cbody=$(scrape "$cport" | sed '1,/^\r$/d')
[ "$(prom_value "$cbody" fedvigil_coordinator_rounds_closed_total)" -ge 1 ] || fv_fail "coordinator rounds_closed_total"
grep -q '^fedvigil_coordinator_updates_rejected_total{reason="stale"} [0-9]' <<<"$cbody" || fv_fail "no rejections by reason"
[ "$(prom_value "$cbody" fedvigil_coordinator_updates_accepted_total)" -ge 1 ] || fv_fail "no accepted updates counted"
scrape "$aport" /nope | head -1 | grep -q ' 404 ' || fv_fail "unknown path not 404"
scrape "$aport" /metrics POST | head -1 | grep -q ' 405 ' || fv_fail "POST not 405"
big=$(head -c 3000 /dev/zero | tr '\0' 'a')
exec 3<>"/dev/tcp/127.0.0.1/$aport"
printf 'GET /metrics HTTP/1.1\r\nX: %s\r\n\r\n' "$big" >&3 || true
timeout 5 head -1 <&3 | grep -q ' 431 ' || fv_fail "oversized request head not 431"
exec 3<&- 3>&-
# Idle clients fill every slot: the loop goes on (watchdog pings), a
# client beyond the limit is turned away, and scrapes work once they leave.
for fd in 4 5 6 7 8 9 10 11; do eval "exec $fd<>/dev/tcp/127.0.0.1/$aport"; done
t0=$(now_ms)
sleep 1
[ "$(pings pump-1 "$t0" "$(now_ms)")" -ge 2 ] || fv_fail "idle HTTP clients stalled the agent's loop"
[ -z "$(scrape "$aport" | head -1)" ] || fv_fail "a 9th connection was served"
for fd in 4 5 6 7 8 9 10 11; do eval "exec $fd<&- $fd>&-"; done
fv_wait_for "scrape after idle clients left" 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$aport; printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3; head -1 <&3 | grep -q ' 200 '" ||
	fv_fail "responder did not recover"

# ---- SIGHUP: live keys, restart-only keys, a bad file ----
cp "$FV_TMP/pump-1.ini" "$FV_TMP/pump-1.ini.orig"
sed -i 's/^log_level = info/log_level = debug/; s|^broker = .*|broker = tcp://127.0.0.1:1|' "$FV_TMP/pump-1.ini"
printf '[detect]\nk = 2\n' >>"$FV_TMP/pump-1.ini"
kill -HUP $A1
fv_wait_for "reload logged" 5 grep -q 'configuration reloaded' "$FV_TMP/pump-1.log" || fv_fail "reload not done"
grep -q 'reload: detect.k = 2 (was 3)' "$FV_TMP/pump-1.log" || fv_fail "detect.k not applied live"
grep -q 'reload: agent.log_level = debug (was info)' "$FV_TMP/pump-1.log" || fv_fail "log_level not applied live"
grep -q 'reload: agent.broker changed to tcp://127.0.0.1:1 but takes effect only after a restart' "$FV_TMP/pump-1.log" ||
	fv_fail "restart-only key not reported"
grep -q 'RELOADING=1' "$FV_TMP/pump-1.notify" || fv_fail "no RELOADING=1"
after_reload() { grep -v WATCHDOG "$FV_TMP/pump-1.notify" | grep -A1 'RELOADING=1' | tail -1; }
after_reload | grep -q 'READY=1|STATUS=configuration reloaded' || fv_fail "no READY=1 after the reload"
# Still on the old broker: metrics keep arriving there.
fleet_sub pm "fedvigil/v1/$FV_FLEET/agent/pump-1/metrics"
fv_wait_for "metrics after reload" 5 test -s "$FV_TMP/pm.log" || fv_fail "agent left its broker on reload"
printf '[ingest]\nperiod_ms = fast\n' >>"$FV_TMP/pump-1.ini"
kill -HUP $A1
fv_wait_for "bad reload rejected" 5 grep -q "reload rejected: .*pump-1.ini:[0-9]*: ingest.period_ms = 'fast'" "$FV_TMP/pump-1.log" ||
	fv_fail "bad config not rejected with file:line:key"
grep -q '<3>\|\[err\] reload rejected' "$FV_TMP/pump-1.log" || fv_fail "rejection not logged as an error"
sleep 0.5
kill -0 $A1 || fv_fail "agent died on a bad reload"
after_reload | grep -q 'READY=1|STATUS=reload rejected' || fv_fail "no READY=1 after a rejected reload"
# The coordinator reloads too (a live round key).
sed -i 's/^deadline_ms = .*/deadline_ms = 15000/' "$FV_TMP/coordinator.ini"
kill -HUP $COORD_PID
fv_wait_for "coordinator reload" 5 grep -q 'reload: round.deadline_ms = 15000 (was 20000)' "$FV_TMP/coordinator.log" ||
	fv_fail "coordinator did not apply round.deadline_ms"

# ---- SIGTERM: STOPPING=1, exit 0 ----
for p in $A1 $A2 $COORD_PID; do kill -TERM $p; done
for p in $A1 $A2 $COORD_PID; do wait $p || fv_fail "daemon $p exited $? on SIGTERM"; done
for n in pump-1 compressor-2 coord; do
	grep -q 'STOPPING=1' "$FV_TMP/$n.notify" || fv_fail "$n sent no STOPPING=1"
done
echo PASS
