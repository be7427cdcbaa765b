#!/usr/bin/env bash
# fedvigil-sim, fedvigil-replay and fedvigil-score against a real Mosquitto:
# command lines (help, version, usage errors), the simulator's messages and
# truth file, a stuck-sensor fault seen on the wire, a clean SIGTERM, a CSV
# replay with a header and CRLF line ends, and the scorer on hand-written
# cases with known answers (event and point mode).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
B=${FV_BINARY_DIR:-$FV_SOURCE_DIR/build}
SIM=$B/fedvigil-sim
REPLAY=$B/fedvigil-replay
SCORE=$B/fedvigil-score
for b in "$SIM" "$REPLAY" "$SCORE"; do
	[ -x "$b" ] || fv_skip "$b not built"
done
command -v mosquitto_sub >/dev/null || fv_skip "mosquitto-clients not installed"
T0=1767225600000 # 2026-01-01T00:00:00Z

# expect_exit CODE PATTERN CMD...: run CMD, check its exit code and that its
# stderr matches PATTERN.
expect_exit() {
	local want=$1 pat=$2 rc=0
	shift 2
	"$@" >"$FV_TMP/out.txt" 2>"$FV_TMP/err.txt" || rc=$?
	[ "$rc" -eq "$want" ] || fv_fail "'$*' exited $rc, expected $want: $(cat "$FV_TMP/err.txt")"
	grep -Eq -- "$pat" "$FV_TMP/err.txt" || fv_fail "'$*': stderr lacks '$pat': $(cat "$FV_TMP/err.txt")"
}

# ---- command lines (no broker) ----
for b in "$SIM" "$REPLAY" "$SCORE"; do
	name=$(basename "$b")
	"$b" --help >"$FV_TMP/help.txt" || fv_fail "$name --help exited $?"
	grep -q -- "--version" "$FV_TMP/help.txt" || fv_fail "$name --help does not list --version"
	v=$("$b" --version) || fv_fail "$name --version exited $?"
	grep -Eq "^$name [0-9]+\.[0-9]+\.[0-9]+" <<<"$v" || fv_fail "$name --version printed '$v'"
	expect_exit 2 "unknown option '--no-such-flag'" "$b" --no-such-flag
done
for k in --broker --prefix --machines --period-ms --speed --duration --normal --faults \
	--seed --truth --start --qos --fault-types --quiet; do
	grep -q -- "$k" <("$SIM" --help) || fv_fail "fedvigil-sim --help does not mention $k"
done
expect_exit 2 "--broker is required" "$SIM"
expect_exit 2 "--broker: 'localhost:1883' is not a broker URI" "$SIM" --broker localhost:1883
expect_exit 2 "--machines: 0 is out of range" "$SIM" --broker tcp://127.0.0.1:1 --machines 0
expect_exit 2 "--period-ms: 'abc' is not an integer" "$SIM" --broker tcp://127.0.0.1:1 --period-ms abc
expect_exit 2 "--fault-types: unknown fault type 'rust'" "$SIM" --broker tcp://127.0.0.1:1 \
	--fault-types leak,rust
expect_exit 2 "--start: 'yesterday'" "$SIM" --broker tcp://127.0.0.1:1 --start yesterday
expect_exit 2 "do not fit" "$SIM" --broker tcp://127.0.0.1:1 --duration 600 --normal 300 --faults 10
expect_exit 2 "--qos: 3 is out of range" "$SIM" --broker tcp://127.0.0.1:1 --qos 3
expect_exit 2 "--machine: 'm1' is not NAME=FILE.csv" "$REPLAY" --broker tcp://127.0.0.1:1 --machine m1
expect_exit 2 "--machine NAME=FILE.csv is required" "$REPLAY" --broker tcp://127.0.0.1:1
expect_exit 2 "--header: 'maybe'" "$REPLAY" --broker tcp://127.0.0.1:1 --machine m=x.csv --header maybe
expect_exit 1 "cannot open $FV_TMP/none.csv" "$REPLAY" --broker tcp://127.0.0.1:1 \
	--machine m="$FV_TMP/none.csv"
expect_exit 2 "give --truth and --alerts" "$SCORE"
expect_exit 2 "--start is required with --points" "$SCORE" --points a.csv:b.csv --period-ms 1000
expect_exit 2 "--column: 'sometimes'" "$SCORE" --points a.csv:b.csv --column sometimes
# A broker that is not there: runtime error, not a hang.
expect_exit 1 "cannot connect" timeout 20 "$SIM" --broker tcp://127.0.0.1:1 --connect-timeout 1 \
	--duration 10 --normal 5 --faults 0

# ---- fedvigil-score, event mode: 2 faults, 3 episodes, 2 true positives ----
cat >"$FV_TMP/truth.csv" <<'EOF'
machine,fault,channel,start_ms,end_ms,start,end
pump-1,leak,*,1767227400000,1767227580000,2026-01-01T00:30:00.000Z,2026-01-01T00:33:00.000Z
compressor-2,spike,flow,1767228000000,1767228120000,2026-01-01T00:40:00.000Z,2026-01-01T00:42:00.000Z
EOF
A=fedvigil/v1/f1/agent
al() { # agent state start end
	echo "$A/$1/alert {\"fleet\":\"f1\",\"agent\":\"$1\",\"state\":\"$2\",\"start\":\"$3\",\"end\":\"$4\",\"score\":0.5,\"threshold\":0.1,\"model_version\":3,\"channels\":[{\"name\":\"flow\",\"share\":0.8}]}"
}
{
	al pump-1 raised 2026-01-01T00:30:30Z 2026-01-01T00:30:30Z # TP
	al pump-1 raised 2026-01-01T00:30:30Z 2026-01-01T00:30:40Z # same episode (redelivery)
	echo "not an alert line"
	al pump-1 cleared 2026-01-01T00:30:30Z 2026-01-01T00:33:30Z
	al compressor-2 raised 2026-01-01T00:42:40Z 2026-01-01T00:42:40Z # TP only thanks to slack; open
	al pump-1 raised 2026-01-01T00:50:00Z 2026-01-01T00:50:00Z # FP
	al pump-1 cleared 2026-01-01T00:50:00Z 2026-01-01T00:51:00Z
} >"$FV_TMP/alerts.log"
"$SCORE" --truth "$FV_TMP/truth.csv" --alerts "$FV_TMP/alerts.log" >"$FV_TMP/score.txt" 2>/dev/null ||
	fv_fail "score (events) exited $?"
last=$(tail -n 1 "$FV_TMP/score.txt")
[ "$last" = "alerts=3 tp=2 faults=2 detected=2 precision=0.667 recall=1.000" ] ||
	fv_fail "event score: '$last'"
grep -Eq '^pump-1 +1 +1 +2 +1$' "$FV_TMP/score.txt" || fv_fail "per-machine table: $(cat "$FV_TMP/score.txt")"
last=$("$SCORE" --truth "$FV_TMP/truth.csv" --alerts "$FV_TMP/alerts.log" --slack-ms 0 2>/dev/null | tail -n 1)
[ "$last" = "alerts=3 tp=1 faults=2 detected=1 precision=0.333 recall=0.500" ] ||
	fv_fail "event score without slack: '$last'"
: >"$FV_TMP/empty.log"
last=$("$SCORE" --truth "$FV_TMP/truth.csv" --alerts "$FV_TMP/empty.log" 2>/dev/null | tail -n 1)
[ "$last" = "alerts=0 tp=0 faults=2 detected=0 precision=0.000 recall=0.000" ] ||
	fv_fail "event score without alerts: '$last'"
expect_exit 1 "cannot open alert log" "$SCORE" --truth "$FV_TMP/truth.csv" --alerts "$FV_TMP/nope.log"

# ---- fedvigil-score, point mode ----
# labels 0 0 1 1 1 0 0 0 1 0; alerts on rows 2 3 6 (ts a few ms late), row 9
# has no score line, one line lies outside: TP 2 FP 1 FN 2 TN 5.
printf '0\n0\n1\n1\n1\n0\n0\n0\n1\n0\n' >"$FV_TMP/labels.csv"
{
	echo "ts_ms,score,threshold,above,alert,model_version"
	for i in 0 1 2 3 4 5 6 7 8; do
		alert=0 above=0
		case $i in 2 | 3 | 6) alert=1 ;; esac
		case $i in 2 | 3 | 4 | 6) above=1 ;; esac
		echo "$((T0 + 60000 * (i + 5) + 3)),0.5,0.1,$above,$alert,2"
	done
	echo "$((T0 + 60000 * 100)),0.9,0.1,1,1,2"
} >"$FV_TMP/scores.csv"
P=(--start 2026-01-01T00:00:00Z --period-ms 60000 --row-offset 5)
last=$("$SCORE" --points "$FV_TMP/scores.csv:$FV_TMP/labels.csv" "${P[@]}" 2>/dev/null | tail -n 1)
[ "$last" = "points=10 precision=0.667 recall=0.500 f1=0.571 fpr=0.167" ] || fv_fail "point score: '$last'"
# above: TP 3 (2 3 4) FP 1 (6) FN 1 (8) TN 5
last=$("$SCORE" --points "$FV_TMP/scores.csv:$FV_TMP/labels.csv" "${P[@]}" --column above 2>/dev/null | tail -n 1)
[ "$last" = "points=10 precision=0.750 recall=0.750 f1=0.750 fpr=0.167" ] || fv_fail "point score (above): '$last'"
# A second pair with CRLF and no score lines: pooled TP 2 FP 1 FN 3 TN 6.
printf 'ts_ms,score,threshold,above,alert,model_version\r\n' >"$FV_TMP/s2.csv"
printf '0\r\n1\r\n' >"$FV_TMP/l2.csv"
"$SCORE" --points "$FV_TMP/scores.csv:$FV_TMP/labels.csv" --points "$FV_TMP/s2.csv:$FV_TMP/l2.csv" \
	"${P[@]}" >"$FV_TMP/pts.txt" 2>/dev/null || fv_fail "point score (2 pairs) exited $?"
[ "$(tail -n 1 "$FV_TMP/pts.txt")" = "points=12 precision=0.667 recall=0.400 f1=0.500 fpr=0.143" ] ||
	fv_fail "pooled point score: $(cat "$FV_TMP/pts.txt")"
grep -q "^pooled: tp=2 fp=1 fn=3 tn=6 " "$FV_TMP/pts.txt" || fv_fail "pooled counts: $(cat "$FV_TMP/pts.txt")"

# ---- broker ----
fv_broker_start
URL=tcp://127.0.0.1:$FV_BROKER_PORT

# subscribe NAME COUNT TOPIC...: mosquitto_sub -C COUNT+1 on the topics plus a
# probe topic, returns once the subscription is live (the probe arrived).
subscribe() {
	local name=$1 count=$2
	shift 2
	local args=()
	for t in "$@"; do args+=(-t "$t"); done
	mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -q 1 -v -C $((count + 1)) -t "probe/$name" \
		"${args[@]}" >"$FV_TMP/$name.log" 2>/dev/null &
	SUB_PID=$!
	fv_track "$SUB_PID"
	for _ in $(seq 1 50); do
		mosquitto_pub -h 127.0.0.1 -p "$FV_BROKER_PORT" -q 1 -t "probe/$name" -m ready
		sleep 0.3
		grep -q "^probe/$name ready" "$FV_TMP/$name.log" && return 0
	done
	fv_fail "subscription $name never became live"
}

# ---- fedvigil-sim: 2 machines x 300 samples x 5 channels = 3000 messages ----
subscribe sim 3000 'tsim/+/+'
"$SIM" --broker "$URL" --prefix tsim --machines 2 --speed 0 --duration 300 --normal 120 \
	--faults 1 --seed 7 --truth "$FV_TMP/sim_truth.csv" >"$FV_TMP/sim.out" 2>"$FV_TMP/sim.err" ||
	fv_fail "fedvigil-sim exited $?: $(cat "$FV_TMP/sim.err")"
grep -qx "sim: done samples=600 messages=3000" "$FV_TMP/sim.out" || fv_fail "sim output: $(cat "$FV_TMP/sim.out")"
[ "$(grep -c '^sim: fault ' "$FV_TMP/sim.out")" -eq 2 ] || fv_fail "expected 2 fault lines: $(cat "$FV_TMP/sim.out")"
fv_wait_for "3000 simulator messages" 20 bash -c "! kill -0 $SUB_PID 2>/dev/null"
grep -v '^probe/' "$FV_TMP/sim.log" >"$FV_TMP/sim.msgs"
[ "$(wc -l <"$FV_TMP/sim.msgs")" -eq 3000 ] || fv_fail "got $(wc -l <"$FV_TMP/sim.msgs") messages, expected 3000"
bad=$(grep -Evc '^tsim/(pump-1|compressor-2)/(vibration|temperature|pressure|flow|current) \{"ts":[0-9]+,"value":-?[0-9]+(\.[0-9]+)?(e[-+][0-9]+)?\}$' \
	"$FV_TMP/sim.msgs" || true)
[ "$bad" -eq 0 ] || fv_fail "$bad malformed messages, e.g. $(grep -Ev '"ts":[0-9]+,"value"' "$FV_TMP/sim.msgs" | head -1)"
# Each of the 10 topics carries 300 samples, ts from T0 in 1000 ms steps.
for m in pump-1 compressor-2; do
	for c in vibration temperature pressure flow current; do
		n=$(grep -c "^tsim/$m/$c " "$FV_TMP/sim.msgs")
		[ "$n" -eq 300 ] || fv_fail "$m/$c: $n messages, expected 300"
	done
done
first=$(grep -m1 '^tsim/pump-1/flow ' "$FV_TMP/sim.msgs")
[[ $first == *"\"ts\":$T0,"* ]] || fv_fail "first ts: $first"
lastl=$(grep '^tsim/pump-1/flow ' "$FV_TMP/sim.msgs" | tail -n 1)
[[ $lastl == *"\"ts\":$((T0 + 299000)),"* ]] || fv_fail "last ts: $lastl"
if command -v python3 >/dev/null; then
	python3 - "$FV_TMP/sim.msgs" <<'EOF' || fv_fail "payloads are not the documented JSON"
import json, sys
for line in open(sys.argv[1]):
    topic, payload = line.rstrip("\n").split(" ", 1)
    d = json.loads(payload)
    assert set(d) == {"ts", "value"} and isinstance(d["ts"], int), line
    assert isinstance(d["value"], (int, float)), line
EOF
fi
# Truth: header and one row per machine, inside the fault phase.
head -n 1 "$FV_TMP/sim_truth.csv" | grep -qx 'machine,fault,channel,start_ms,end_ms,start,end' ||
	fv_fail "truth header: $(head -n 1 "$FV_TMP/sim_truth.csv")"
[ "$(tail -n +2 "$FV_TMP/sim_truth.csv" | wc -l)" -eq 2 ] || fv_fail "truth rows: $(cat "$FV_TMP/sim_truth.csv")"
tail -n +2 "$FV_TMP/sim_truth.csv" | while IFS=, read -r m f ch s e siso eiso; do
	case $m in pump-1 | compressor-2) ;; *) fv_fail "truth machine '$m'" ;; esac
	case $f in bearing_wear | leak | cavitation | drift | stuck | spike) ;; *) fv_fail "truth fault '$f'" ;; esac
	case $ch in '*' | vibration | temperature | pressure | flow | current) ;; *) fv_fail "truth channel '$ch'" ;; esac
	[ "$s" -ge $((T0 + 120000)) ] || fv_fail "fault starts in the normal phase: $s"
	[ "$e" -ge $((s + 29000)) ] || fv_fail "fault shorter than 30 samples: $s..$e"
	[ "$e" -le $((T0 + 299000)) ] || fv_fail "fault ends after the run: $e"
	[ "$(date -u -d "@$((s / 1000))" +%Y-%m-%dT%H:%M:%S.000Z)" = "$siso" ] || fv_fail "start $s vs $siso"
	[ "$(date -u -d "@$((e / 1000))" +%Y-%m-%dT%H:%M:%S.000Z)" = "$eiso" ] || fv_fail "end $e vs $eiso"
	grep -q "^sim: fault $f on $m at $siso" "$FV_TMP/sim.out" || fv_fail "no onset line for $m $f"
done
# The same seed gives the same plan, another seed another one.
"$SIM" --broker "$URL" --prefix tsim2 --machines 2 --speed 0 --duration 300 --normal 120 \
	--faults 1 --seed 7 --truth "$FV_TMP/again.csv" --quiet >/dev/null 2>&1 || fv_fail "sim rerun exited $?"
cmp -s "$FV_TMP/sim_truth.csv" "$FV_TMP/again.csv" || fv_fail "same seed, different truth"
"$SIM" --broker "$URL" --prefix tsim2 --machines 2 --speed 0 --duration 300 --normal 120 \
	--faults 1 --seed 8 --truth "$FV_TMP/other.csv" --quiet >/dev/null 2>&1 || fv_fail "sim seed 8 exited $?"
! cmp -s "$FV_TMP/sim_truth.csv" "$FV_TMP/other.csv" || fv_fail "seeds 7 and 8 gave the same truth"

# ---- a stuck sensor repeats one value on the wire while the process moves ----
subscribe stuck 1500 'tstuck/+/+'
"$SIM" --broker "$URL" --prefix tstuck --machines 1 --speed 0 --duration 300 --normal 120 \
	--faults 1 --fault-types stuck --seed 3 --truth "$FV_TMP/stuck.csv" --quiet >/dev/null 2>&1 ||
	fv_fail "stuck sim exited $?"
fv_wait_for "1500 messages" 20 bash -c "! kill -0 $SUB_PID 2>/dev/null"
IFS=, read -r m f ch s e _ < <(tail -n 1 "$FV_TMP/stuck.csv")
[ "$f" = stuck ] || fv_fail "fault-types stuck gave $f"
vals() { # topic from to -> distinct values of that topic within [from, to]
	grep "^tstuck/pump-1/$1 " "$FV_TMP/stuck.log" |
		sed -E 's/.*"ts":([0-9]+),"value":([^}]*)\}/\1 \2/' |
		awk -v a="$2" -v b="$3" '$1 >= a && $1 <= b { print $2 }' | sort -u | wc -l
}
[ "$(vals "$ch" "$s" "$e")" -eq 1 ] || fv_fail "stuck $ch has $(vals "$ch" "$s" "$e") values in $s..$e"
[ "$(vals current "$s" "$e")" -gt 10 ] || [ "$ch" = current ] || fv_fail "current frozen too"
[ "$(vals "$ch" "$T0" $((s - 1000)))" -gt 10 ] || fv_fail "$ch already constant before the fault"

# ---- SIGTERM: clean stop, exit 0, final line, truth rewritten ----
"$SIM" --broker "$URL" --prefix tterm --machines 2 --speed 20 --duration 3600 \
	--truth "$FV_TMP/term.csv" >"$FV_TMP/term.out" 2>"$FV_TMP/term.err" &
SIMPID=$!
fv_track "$SIMPID"
fv_wait_for "simulator running" 10 test -s "$FV_TMP/term.csv"
sleep 1
kill -TERM "$SIMPID"
rc=0
wait "$SIMPID" || rc=$?
[ "$rc" -eq 0 ] || fv_fail "sim after SIGTERM exited $rc: $(cat "$FV_TMP/term.err")"
grep -Eq '^sim: done samples=[0-9]+ messages=[0-9]+$' "$FV_TMP/term.out" || fv_fail "no final line after SIGTERM"
# Stopped inside the normal phase: the rewritten truth has no faults.
[ "$(wc -l <"$FV_TMP/term.csv")" -eq 1 ] || fv_fail "truth after early stop: $(cat "$FV_TMP/term.csv")"

# ---- fedvigil-replay: header + CRLF, an empty and a non-numeric cell ----
printf 'temp,pres,"flow rate"\r\n1.5,2,3\r\n4,,6\r\n7,x,9\r\n\r\n0.1,0.25,1e3\r\n' >"$FV_TMP/a.csv"
# a.csv: 3+2+2+3 = 10 readings over 4 rows (the blank line is no row).
subscribe replay 10 'trep/+/+'
"$REPLAY" --broker "$URL" --prefix trep --machine m1="$FV_TMP/a.csv" --period-ms 60000 \
	--start 2026-01-01T00:00:00Z --row-offset 10 --rate 0 >"$FV_TMP/rep.out" 2>"$FV_TMP/rep.err" ||
	fv_fail "replay exited $?: $(cat "$FV_TMP/rep.err")"
grep -qx "replay: done rows=4 messages=10" "$FV_TMP/rep.out" || fv_fail "replay output: $(cat "$FV_TMP/rep.out")"
grep -q "non-numeric=1" "$FV_TMP/rep.out" || fv_fail "non-numeric cell not counted: $(cat "$FV_TMP/rep.out")"
grep -q "'x' is not a number" "$FV_TMP/rep.err" || fv_fail "non-numeric cell not reported: $(cat "$FV_TMP/rep.err")"
fv_wait_for "10 replayed messages" 20 bash -c "! kill -0 $SUB_PID 2>/dev/null"
R0=$((T0 + 10 * 60000))
for want in \
	"trep/m1/temp {\"ts\":$R0,\"value\":1.5}" \
	"trep/m1/pres {\"ts\":$R0,\"value\":2}" \
	"trep/m1/flow_rate {\"ts\":$R0,\"value\":3}" \
	"trep/m1/temp {\"ts\":$((R0 + 60000)),\"value\":4}" \
	"trep/m1/flow_rate {\"ts\":$((R0 + 120000)),\"value\":9}" \
	"trep/m1/pres {\"ts\":$((R0 + 180000)),\"value\":0.25}" \
	"trep/m1/flow_rate {\"ts\":$((R0 + 180000)),\"value\":1000}"; do
	grep -qxF "$want" "$FV_TMP/replay.log" || fv_fail "replay: missing '$want' in $(cat "$FV_TMP/replay.log")"
done
grep -q "trep/m1/pres {\"ts\":$((R0 + 60000))," "$FV_TMP/replay.log" && fv_fail "empty cell was published"
# Two machines, no header, ';' delimiter: interleaved row by row, the
# shorter file simply ends.
printf '10;20\n30;40\n' >"$FV_TMP/b.csv"
printf '1;2\n3;4\n5;6\n' >"$FV_TMP/c.csv"
subscribe replay2 10 'trep2/+/+'
"$REPLAY" --broker "$URL" --prefix trep2 --machine m2="$FV_TMP/b.csv" --machine m3="$FV_TMP/c.csv" \
	--delimiter ';' --header no --rate 0 --quiet >"$FV_TMP/rep2.out" 2>"$FV_TMP/rep2.err" ||
	fv_fail "replay 2 exited $?: $(cat "$FV_TMP/rep2.err")"
grep -qx "replay: done rows=5 messages=10" "$FV_TMP/rep2.out" || fv_fail "replay 2 output: $(cat "$FV_TMP/rep2.out")"
fv_wait_for "10 replayed messages" 20 bash -c "! kill -0 $SUB_PID 2>/dev/null"
grep -v '^probe/' "$FV_TMP/replay2.log" | cut -d' ' -f1 | tr '\n' ' ' >"$FV_TMP/order.txt"
[ "$(cat "$FV_TMP/order.txt")" = "trep2/m2/c1 trep2/m2/c2 trep2/m3/c1 trep2/m3/c2 trep2/m2/c1 trep2/m2/c2 trep2/m3/c1 trep2/m3/c2 trep2/m3/c1 trep2/m3/c2 " ] ||
	fv_fail "replay order: $(cat "$FV_TMP/order.txt")"
grep -qxF "trep2/m3/c2 {\"ts\":$((T0 + 2 * 300000)),\"value\":6}" "$FV_TMP/replay2.log" ||
	fv_fail "default period: $(cat "$FV_TMP/replay2.log")"
echo "test_tools: ok"
