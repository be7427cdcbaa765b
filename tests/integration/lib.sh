# Helpers for fedvigil integration tests. Source it from a test script:
#
#   set -euo pipefail
#   source "$FV_SOURCE_DIR/tests/integration/lib.sh"
#   fv_tmpdir
#   fv_broker_start
#
# Provides: fv_tmpdir, fv_free_port, fv_broker_start [PORT], fv_broker_stop,
# fv_track PID, fv_cleanup, fv_wait_for DESC TIMEOUT_S CMD..., fv_fail MSG,
# fv_skip MSG. An EXIT trap runs fv_cleanup; a script that installs its own
# EXIT trap must call fv_cleanup from it.
#
# Environment: FV_SOURCE_DIR (set by ctest; defaults to the checkout this
# file is in), FV_BINARY_DIR (set by ctest; defaults to $FV_SOURCE_DIR/build),
# FV_KEEP=1 keeps $FV_TMP after the test. Exported by the helpers: FV_TMP,
# FV_BROKER_PORT, FV_BROKER_PID, FV_BROKER_URI.

: "${FV_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FV_BINARY_DIR:=$FV_SOURCE_DIR/build}"
export FV_SOURCE_DIR FV_BINARY_DIR

FV_TMP=${FV_TMP:-}
FV_BROKER_PID=${FV_BROKER_PID:-}
FV_BROKER_PORT=${FV_BROKER_PORT:-}
FV_TRACKED=()
FV_TMP_OWNED=0

# fv_fail MSG: print the message and exit 1.
fv_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# fv_skip MSG: print the message and exit 77 (ctest SKIP_RETURN_CODE).
fv_skip() {
	echo "SKIP: $*" >&2
	exit 77
}

# fv_tmpdir: make a private temporary directory, exported as FV_TMP; it is
# removed by fv_cleanup unless FV_KEEP=1.
fv_tmpdir() {
	FV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedvigil-test.XXXXXX") || fv_fail "mktemp -d failed"
	FV_TMP_OWNED=1
	export FV_TMP
}

# fv_track PID: kill this process in fv_cleanup.
fv_track() {
	FV_TRACKED+=("$1")
}

# True when something listens on 127.0.0.1:PORT.
fv__port_busy() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# fv_free_port: print a loopback TCP port nobody listens on.
fv_free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! fv__port_busy "$p"; then
			echo "$p"
			return 0
		fi
	done
	fv_fail "no free TCP port found"
}

# True when 127.0.0.1:PORT accepts TCP connections.
fv__port_accepts() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# fv_broker_start [PORT]: run mosquitto on 127.0.0.1:PORT (a free port when
# omitted), config and log in $FV_TMP. Sets FV_BROKER_PORT, FV_BROKER_PID
# and FV_BROKER_URI; returns once the port accepts connections (10 s max).
fv_broker_start() {
	local mosq port=${1:-} i
	mosq=$(command -v mosquitto || true)
	if [ -z "$mosq" ]; then
		for d in /usr/sbin /usr/local/sbin /sbin; do
			[ -x "$d/mosquitto" ] && mosq=$d/mosquitto && break
		done
	fi
	[ -n "$mosq" ] || fv_skip "mosquitto is not installed"
	[ -n "$FV_TMP" ] || fv_tmpdir
	[ -z "$FV_BROKER_PID" ] || fv_fail "fv_broker_start: a broker is already running (PID $FV_BROKER_PID)"
	[ -n "$port" ] || port=$(fv_free_port)
	[ -n "$port" ] || fv_fail "no free TCP port for the broker"
	cat >"$FV_TMP/mosquitto.conf" <<-EOF
		listener $port 127.0.0.1
		allow_anonymous true
		persistence false
		log_dest stderr
	EOF
	"$mosq" -c "$FV_TMP/mosquitto.conf" >>"$FV_TMP/mosquitto.out" 2>&1 &
	FV_BROKER_PID=$!
	FV_BROKER_PORT=$port
	FV_BROKER_URI="tcp://127.0.0.1:$port"
	export FV_BROKER_PID FV_BROKER_PORT FV_BROKER_URI
	for i in $(seq 1 100); do
		if ! kill -0 "$FV_BROKER_PID" 2>/dev/null; then
			wait "$FV_BROKER_PID" 2>/dev/null || true
			FV_BROKER_PID=
			tail -5 "$FV_TMP/mosquitto.log" "$FV_TMP/mosquitto.out" >&2 2>/dev/null || true
			fv_fail "mosquitto exited at start on port $port"
		fi
		fv__port_accepts "$port" && return 0
		sleep 0.1
	done
	fv_fail "mosquitto did not accept connections on port $port within 10 s"
}

# fv_broker_start_conf CONF PORT...: run mosquitto with the config file
# CONF, which listens on every PORT given (TLS listeners, say). Sets
# FV_BROKER_PID and FV_BROKER_PORT (the first port); returns once every port
# accepts TCP connections (10 s max). Run as root, mosquitto drops to the
# user "mosquitto", which cannot read $FV_TMP: CONF should say `user $(id -un)`.
fv_broker_start_conf() {
	local conf=$1 mosq p i up
	shift
	mosq=$(command -v mosquitto || true)
	for d in /usr/sbin /usr/local/sbin /sbin; do
		[ -z "$mosq" ] && [ -x "$d/mosquitto" ] && mosq=$d/mosquitto
	done
	[ -n "$mosq" ] || fv_skip "mosquitto is not installed"
	[ -z "$FV_BROKER_PID" ] || fv_fail "fv_broker_start_conf: a broker is already running (PID $FV_BROKER_PID)"
	"$mosq" -c "$conf" >>"$FV_TMP/mosquitto.out" 2>&1 &
	FV_BROKER_PID=$!
	FV_BROKER_PORT=$1
	export FV_BROKER_PID FV_BROKER_PORT
	for i in $(seq 1 100); do
		if ! kill -0 "$FV_BROKER_PID" 2>/dev/null; then
			wait "$FV_BROKER_PID" 2>/dev/null || true
			FV_BROKER_PID=
			tail -5 "$FV_TMP/mosquitto.out" >&2 2>/dev/null || true
			fv_fail "mosquitto exited at start with $conf"
		fi
		up=1
		for p in "$@"; do fv__port_accepts "$p" || up=0; done
		[ "$up" = 1 ] && return 0
		sleep 0.1
	done
	fv_fail "mosquitto did not accept connections on ports $* within 10 s"
}

# fv_broker_stop: stop the broker started by fv_broker_start (TERM, then
# KILL after 5 s) and wait for it. FV_BROKER_PORT is kept, so
# `fv_broker_start "$FV_BROKER_PORT"` restarts it on the same port.
fv_broker_stop() {
	[ -n "$FV_BROKER_PID" ] || return 0
	fv__kill_wait "$FV_BROKER_PID" 5
	FV_BROKER_PID=
}

# Kill PID with TERM, then KILL after GRACE_S seconds; reap it if it is
# our child.
fv__kill_wait() {
	local pid=$1 grace=${2:-3} i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	for i in $(seq 1 $((grace * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# fv_cleanup: kill every tracked process and the broker (each by PID), then
# remove $FV_TMP unless FV_KEEP=1. Safe to call more than once.
fv_cleanup() {
	local pid
	for pid in "${FV_TRACKED[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${FV_TRACKED[@]}"; do
		fv__kill_wait "$pid" 3
	done
	FV_TRACKED=()
	fv_broker_stop
	if [ "$FV_TMP_OWNED" = 1 ] && [ -n "$FV_TMP" ] && [ -d "$FV_TMP" ]; then
		if [ "${FV_KEEP:-0}" = 1 ]; then
			echo "keeping $FV_TMP" >&2
		else
			rm -rf -- "$FV_TMP"
		fi
	fi
}

# fv_wait_for DESC TIMEOUT_S CMD...: run CMD every 0.2 s until it succeeds;
# returns 1 with a message after TIMEOUT_S seconds.
fv_wait_for() {
	local desc=$1 timeout=$2 deadline
	shift 2
	deadline=$((SECONDS + timeout))
	while :; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "timed out after ${timeout}s waiting for: $desc" >&2
			return 1
		fi
		sleep 0.2
	done
}

fv__exit_trap() {
	local rc=$?
	fv_cleanup
	exit "$rc"
}
trap fv__exit_trap EXIT
