#!/usr/bin/env bash
# The installed systemd units, checked without a running systemd (PID 1 is
# not systemd in CI): `cmake --install` into a staging root, then
# - systemd-analyze verify --root on every unit (syntax, paths, targets);
# - systemd-analyze security --offline --threshold (exposure <= 2.0; a unit without
#   the sandbox must fail it, so the check can fail);
# - the installed daemons and example configs work (--check-config);
# - the man pages are installed, lint-clean, and document every key;
# - every system call the daemons make in a short run (under strace)
#   passes the units' SystemCallFilter= (@system-service minus
#   @privileged and @resources), so the filter cannot break them.
# Label "once": runs in the first pass only (strace of ASan builds differs).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT
command -v systemd-analyze >/dev/null || fv_skip "systemd-analyze not installed (package systemd)"
ROOT=$FV_TMP/root
# Exposure at most 2.0; --threshold= counts in tenths (0..100).
THRESHOLD=20

DESTDIR=$ROOT cmake --install "$FV_BINARY_DIR" --prefix /usr >"$FV_TMP/install.log" ||
	fv_fail "cmake --install failed: $(tail -3 "$FV_TMP/install.log")"
UNITDIR=$ROOT/lib/systemd/system
for u in fedvigil-coordinator.service fedvigil-agent.service fedvigil-agent@.service; do
	[ -f "$UNITDIR/$u" ] || fv_fail "$u not installed in /lib/systemd/system"
	grep -q '@FV_' "$UNITDIR/$u" && fv_fail "$u has unfilled placeholders"
	grep -q '^ExecStart=/usr/bin/fedvigil-' "$UNITDIR/$u" || fv_fail "$u: ExecStart not in /usr/bin"
done
# What verify needs from a real system besides our files: the targets we
# order against, and the ExecReload= binary.
cp /lib/systemd/system/*.target "$UNITDIR/"
mkdir -p "$ROOT/bin" && cp /bin/kill "$ROOT/bin/kill"
cd "$ROOT"
out=$(systemd-analyze verify --root="$ROOT" --man=no --generators=no \
	fedvigil-coordinator.service fedvigil-agent.service fedvigil-agent@pump-1.service 2>&1) ||
	fv_fail "systemd-analyze verify: $out"
[ -z "$out" ] || fv_fail "systemd-analyze verify complained: $out"

for u in fedvigil-coordinator.service fedvigil-agent.service fedvigil-agent@pump-1.service; do
	set +e
	out=$(systemd-analyze security --offline=true --root="$ROOT" --threshold=$THRESHOLD "$u" 2>&1)
	rc=$?
	set -e
	score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p' <<<"$out")
	echo "systemd-analyze security $u: exposure $score (at most 2.0)"
	[ $rc -eq 0 ] && [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' ||
		fv_fail "$u: exposure ${score:-?} above 2.0: $(grep '✗' <<<"$out" | head -20)"
done
# The check bites: the same unit without its sandbox fails.
grep -v -x -F -f "$FV_SOURCE_DIR/systemd/hardening.conf" "$UNITDIR/fedvigil-coordinator.service" \
	>"$UNITDIR/fedvigil-unsandboxed.service"
if systemd-analyze security --offline=true --root="$ROOT" --threshold=$THRESHOLD \
	fedvigil-unsandboxed.service >/dev/null 2>&1; then
	fv_fail "a unit without the sandbox passed the exposure threshold"
fi
rm "$UNITDIR/fedvigil-unsandboxed.service"
cd "$FV_TMP"

# Installed binaries and configs.
"$ROOT/usr/bin/fedvigil-agent" -c "$ROOT/etc/fedvigil/agent.ini" --check-config >/dev/null ||
	fv_fail "installed agent.ini does not check"
"$ROOT/usr/bin/fedvigil-coordinator" -c "$ROOT/etc/fedvigil/coordinator.ini" --check-config >/dev/null ||
	fv_fail "installed coordinator.ini does not check"
[ "$(stat -c %a "$ROOT/etc/fedvigil/agent.ini")" = 640 ] || fv_fail "agent.ini is not mode 0640"

# Man pages: installed, clean for groff, every key documented.
for prog in fedvigil-agent fedvigil-coordinator; do
	page=$ROOT/usr/share/man/man8/$prog.8.gz
	[ -f "$page" ] || fv_fail "$page not installed"
	if command -v groff >/dev/null; then
		w=$(zcat "$page" | groff -man -ww -z 2>&1) || true
		[ -z "$w" ] || fv_fail "$prog.8: groff warnings: $w"
	fi
	conf=$ROOT/etc/fedvigil/${prog#fedvigil-}.ini
	"$ROOT/usr/bin/$prog" -c "$conf" --dump-config | awk '
		/^\[/ { sec = substr($0, 2, length($0) - 2); next }
		/^[a-z_]+ = / && sec !~ /^channel\./ { print sec "." $1 }' | sort -u >"$FV_TMP/keys"
	[ -s "$FV_TMP/keys" ] || fv_fail "no keys from $prog --dump-config"
	zcat "$page" >"$FV_TMP/$prog.8"
	while read -r k; do
		grep -q "^\.B ${k//./\\.}\$" "$FV_TMP/$prog.8" || fv_fail "$prog.8 does not document $k"
	done <"$FV_TMP/keys"
done

# ---- system calls against the units' filter ----
command -v strace >/dev/null || fv_skip "strace not installed: filter check skipped"
# expand @GROUP: every syscall it contains, recursively.
expand() {
	systemd-analyze syscall-filter "$1" | sed -n '2,$p' | sed 's/^ *//' | while read -r s; do
		case "$s" in
		'' | '#'*) ;;
		@*) expand "$s" ;;
		*) echo "$s" ;;
		esac
	done
}
sed -n 's/^SystemCallFilter=//p' "$FV_SOURCE_DIR/systemd/hardening.conf" >"$FV_TMP/filter"
[ "$(head -1 "$FV_TMP/filter")" = "@system-service" ] &&
	[ "$(sed -n 2p "$FV_TMP/filter")" = "~@privileged @resources" ] ||
	fv_fail "hardening.conf's SystemCallFilter= changed: update this test"
expand @system-service | sort -u >"$FV_TMP/allow"
{ expand @privileged; expand @resources; } | sort -u >"$FV_TMP/deny"
comm -23 "$FV_TMP/allow" "$FV_TMP/deny" >"$FV_TMP/allowed"
grep -qx openat "$FV_TMP/allowed" && grep -qx sendto "$FV_TMP/allowed" &&
	! grep -qx setuid "$FV_TMP/allowed" && ! grep -qx sched_setaffinity "$FV_TMP/allowed" ||
	fv_fail "expanding the filter went wrong"

fv_broker_start
fleet_write_coordinator 1 1 5
printf '[metrics]\nlisten = 0\n' >>"$FV_TMP/coordinator.ini"
fleet_write_agent pump-1 plant 1000 vibration temperature pressure flow current
printf '[metrics]\nlisten = 0\n' >>"$FV_TMP/pump-1.ini"
strace -f -qq -o "$FV_TMP/coord.strace" "$ROOT/usr/bin/fedvigil-coordinator" -c "$FV_TMP/coordinator.ini" \
	>>"$FV_TMP/coordinator.log" 2>&1 &
SC=$!
fv_track $SC
strace -f -qq -o "$FV_TMP/agent.strace" "$ROOT/usr/bin/fedvigil-agent" -c "$FV_TMP/pump-1.ini" \
	>>"$FV_TMP/pump-1.log" 2>&1 &
SA=$!
fv_track $SA
"$FV_BIN/fedvigil-sim" --broker "$FV_BROKER_URI" --machines 1 --speed 1000 --duration 600 --faults 0 \
	--normal 600 -q >"$FV_TMP/sim.log" 2>&1 || fv_fail "simulator failed"
for log in coordinator pump-1; do
	port=$(sed -n 's|.*Prometheus metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$FV_TMP/$log.log")
	[ -n "$port" ] || fv_fail "$log did not start its metrics responder"
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
	timeout 5 cat <&3 >/dev/null || true
	exec 3<&- 3>&-
done
# Signals go to the traced daemons (strace's children), not to strace.
DC=$(pgrep -P $SC -x fedvigil-coordi || true)
DA=$(pgrep -P $SA -x fedvigil-agent || true)
[ -n "$DC" ] && [ -n "$DA" ] || fv_fail "traced daemons not found under strace"
kill -HUP "$DC" "$DA"
sleep 0.5
kill -TERM "$DC" "$DA"
wait $SC || fv_fail "coordinator under strace exited $?"
wait $SA || fv_fail "agent under strace exited $?"
for t in coord agent; do
	sed -n 's/^[0-9]\+ \+\([a-z0-9_]\+\)(.*/\1/p' "$FV_TMP/$t.strace" | sort -u >"$FV_TMP/$t.calls"
	[ "$(wc -l <"$FV_TMP/$t.calls")" -ge 20 ] || fv_fail "strace saw too few calls for $t"
	bad=$(comm -23 "$FV_TMP/$t.calls" "$FV_TMP/allowed" | tr '\n' ' ')
	echo "$t: $(wc -l <"$FV_TMP/$t.calls") distinct system calls, outside the filter: ${bad:-none}"
	[ -z "$bad" ] || fv_fail "$t makes system calls the units' SystemCallFilter= refuses: $bad"
done
echo PASS
