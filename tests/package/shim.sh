# Sourced inside the package test's chroot, where no systemd runs: just
# enough of `sudo`, `systemctl` and `journalctl` for docs/install.md's
# walk-through to run as written, as root. It is a stand-in for the service
# manager, not a mock of fedvigil:
# - `systemctl enable [--now] UNIT...` makes the symlinks of the unit's
#   [Install] WantedBy= in /etc/systemd/system, as systemctl does (the
#   package's purge must remove them again), and with --now starts the unit
#   as systemd would run it: its ExecStart= (with %i), as its User=/Group=,
#   StateDirectory= created with StateDirectoryMode=, a NOTIFY_SOCKET served
#   by fv-notify-listen and WATCHDOG_USEC from WatchdogSec=; it returns once
#   the daemon sent READY=1, or fails after 60 s as a start timeout would;
# - `systemctl status UNIT...` prints Active: and the last STATUS= received;
# - `journalctl -u UNIT` prints the unit's output;
# - `apt-get`/`apt install` run the real apt-get and, after installing
#   mosquitto, start its broker as mosquitto.service would.
# Everything started is stopped by shim_stop_all (the walk-through's EXIT).

SHIM_DIR=/run/fv-units
SHIM_PIDS=()
mkdir -p "$SHIM_DIR"

sudo() { "$@"; }

# unit_file UNIT: the installed file for UNIT (a template for NAME@INST).
shim_unit_file() {
	local u=$1
	case "$u" in
	*@*.service) echo "/lib/systemd/system/${u%%@*}@.service" ;;
	*) echo "/lib/systemd/system/$u" ;;
	esac
}

# shim_key FILE KEY: the value of KEY= in FILE's [Service] (last one wins).
shim_key() { sed -n "s/^$2=//p" "$1" | tail -1; }

shim_start() {
	local u=$1 f inst execstart user group sdir smode wd pid i
	f=$(shim_unit_file "$u")
	[ -f "$f" ] || { echo "Failed to start $u: Unit $u not found." >&2; return 5; }
	inst=""
	case "$u" in *@*.service) inst=${u#*@}; inst=${inst%.service} ;; esac
	execstart=$(shim_key "$f" ExecStart)
	execstart=${execstart//%i/$inst}
	user=$(shim_key "$f" User)
	group=$(shim_key "$f" Group)
	sdir=$(shim_key "$f" StateDirectory)
	sdir=${sdir//%i/$inst}
	smode=$(shim_key "$f" StateDirectoryMode)
	wd=$(shim_key "$f" WatchdogSec)
	[ "$(shim_key "$f" Type)" = notify ] || { echo "shim: $u is not Type=notify" >&2; return 1; }
	if [ -n "$sdir" ]; then
		install -d -o "${user:-root}" -g "${group:-root}" -m "${smode:-0755}" "/var/lib/$sdir"
	fi
	fv-notify-listen "$SHIM_DIR/$u.sock" >"$SHIM_DIR/$u.notify" 2>&1 &
	SHIM_PIDS+=($!)
	for i in $(seq 50); do [ -S "$SHIM_DIR/$u.sock" ] && break; sleep 0.1; done
	[ -S "$SHIM_DIR/$u.sock" ] || { echo "shim: no notify socket for $u: $(cat "$SHIM_DIR/$u.notify")" >&2; return 1; }
	# shellcheck disable=SC2086 # ExecStart= is split into words, as systemd does
	NOTIFY_SOCKET=$SHIM_DIR/$u.sock WATCHDOG_USEC=$((${wd:-0} * 1000000)) \
		setpriv --reuid="${user:-root}" --regid="${group:-root}" --clear-groups -- $execstart \
		>>"$SHIM_DIR/$u.log" 2>&1 &
	pid=$!
	SHIM_PIDS+=("$pid")
	echo "$pid" >"$SHIM_DIR/$u.pid"
	for i in $(seq 600); do
		grep -q 'READY=1' "$SHIM_DIR/$u.notify" && return 0
		kill -0 "$pid" 2>/dev/null || { echo "Job for $u failed: the daemon exited." >&2; tail -5 "$SHIM_DIR/$u.log" >&2; return 1; }
		sleep 0.1
	done
	echo "Job for $u failed: no READY=1 within 60 s (start timeout)." >&2
	return 1
}

shim_status() {
	local u=$1 pid state
	[[ $u == *.service ]] || u=$u.service
	pid=$(cat "$SHIM_DIR/$u.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q 'READY=1' "$SHIM_DIR/$u.notify"; then
		state="active (running)"
	else
		state="inactive (dead)"
	fi
	echo "* $u - $(shim_key "$(shim_unit_file "$u")" Description)"
	echo "     Active: $state"
	echo "     Status: \"$(sed -n 's/.*STATUS=\([^|]*\).*/\1/p' "$SHIM_DIR/$u.notify" 2>/dev/null | tail -1)\""
	echo "   Main PID: ${pid:-none}"
	[ "$state" = "active (running)" ]
}

systemctl() {
	local cmd=$1 now=0 u rc=0 f w
	shift
	case "$cmd" in
	enable)
		if [ "${1:-}" = --now ]; then now=1; shift; fi
		for u in "$@"; do
			[[ $u == *.service ]] || u=$u.service
			f=$(shim_unit_file "$u")
			[ -f "$f" ] || { echo "Failed to enable unit: Unit file $u does not exist." >&2; return 1; }
			for w in $(shim_key "$f" WantedBy); do
				mkdir -p "/etc/systemd/system/$w.wants"
				ln -sf "$f" "/etc/systemd/system/$w.wants/$u"
				echo "Created symlink /etc/systemd/system/$w.wants/$u -> $f."
			done
			if [ $now = 1 ]; then shim_start "$u" || return 1; fi
		done
		;;
	status)
		for u in "$@"; do shim_status "$u" || rc=3; done
		return $rc
		;;
	*)
		echo "shim: systemctl $cmd is not emulated" >&2
		return 1
		;;
	esac
}

journalctl() {
	local u=""
	while [ $# -gt 0 ]; do
		case "$1" in -u) u=$2; shift ;; esac
		shift
	done
	[[ $u == *.service ]] || u=$u.service
	cat "$SHIM_DIR/$u.log"
}

shim_apt() {
	local want_mosquitto=0 a
	for a in "$@"; do [ "$a" = mosquitto ] && want_mosquitto=1; done
	DEBIAN_FRONTEND=noninteractive command apt-get "$@" || return
	if [ $want_mosquitto = 1 ] && ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
		# What mosquitto.service does (ExecStartPre= makes /run/mosquitto).
		install -d -o mosquitto -g mosquitto -m 0740 /run/mosquitto /var/log/mosquitto
		mosquitto -c /etc/mosquitto/mosquitto.conf -d
		for a in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
		SHIM_PIDS+=("$(cat /run/mosquitto/mosquitto.pid)")
	fi
}
apt-get() { shim_apt "$@"; }
apt() { shim_apt "$@"; }

shim_stop_all() {
	local p
	for p in "${SHIM_PIDS[@]}" $(jobs -p); do kill -TERM "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${SHIM_PIDS[@]}" $(jobs -p); do kill -KILL "$p" 2>/dev/null || true; done
}
