#!/usr/bin/env bash
# The compose stack for real (ctest label `containers`): builds the images
# of docker/ and brings up deploy/docker-compose.yml - Mosquitto with
# passwords and the ACL, the coordinator, three agents and the simulator -
# on a private Docker engine, then waits on the published broker port
# (mosquitto_sub, as the read-only `monitor` user) for training rounds and a
# raised alert, checks the services' health, the broker's authentication and
# persistence, and tears everything down.
#
# It follows docs/install.md's compose path: one config edit (the
# coordinator's [aggregation] algorithm) must show up in the rounds.
#
# No registry is reachable here, so the base image debian:bookworm-slim is
# made with docker/mkbase (debootstrap from this machine's apt mirror). The
# engine is a dockerd of its own, with its own data-root, exec-root, pid
# file and socket, no iptables rules, no default bridge and no IP
# forwarding (nothing on the host changes); it is stopped by PID.
#
# Cache (kept between runs): ${FV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fedvigil}
#   bookworm-slim.tar   the base image (remade after 30 days)
#   docker/             the engine's data-root: images and build layers, so
#                       a warm run rebuilds only what changed
# FV_KEEP=1 keeps the stack and the engine running for a look (prints how).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
src=$FV_SOURCE_DIR
t0=$SECONDS
step() { echo "[$((SECONDS - t0))s] $*"; }

[ "$(id -u)" -eq 0 ] || fv_skip "needs root: it starts its own dockerd and runs debootstrap"
"$src/scripts/deps" --containers
docker=/usr/bin/docker # docker.io's client, as installed by scripts/deps
for p in /usr/sbin/dockerd "$docker" /usr/bin/docker-compose /usr/sbin/debootstrap; do
	[ -x "$p" ] || fv_fail "$p missing after scripts/deps --containers"
done

cache=${FV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fedvigil}
mkdir -p "$cache"
# One run at a time per cache: two engines must not share a data-root.
exec 9>"$cache/lock"
flock -w 900 9 || fv_fail "another containers test holds $cache/lock for 15 minutes"

fv_tmpdir
# Sockets need a short path (108 bytes): the engine's runtime dir is in /tmp.
run=$(mktemp -d /tmp/fvd.XXXXXX)
dpid=""
project=fvtest
compose=(/usr/bin/docker-compose -p "$project" -f "$src/deploy/docker-compose.yml")
export DOCKER_HOST="unix://$run/docker.sock"
# docker-compose builds through the Docker API (classic builder), not a CLI.
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0

stop_engine() {
	[ -n "$dpid" ] || return 0
	kill -TERM "$dpid" 2>/dev/null || true
	for _ in $(seq 1 150); do
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$dpid" 2>/dev/null || true
	wait "$dpid" 2>/dev/null || true
	# Its containerd, if it outlived it (the engine normally stops it).
	local cpid
	cpid=$(cat "$run/exec/containerd/containerd.pid" 2>/dev/null || true)
	if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
		kill -TERM "$cpid" 2>/dev/null || true
		sleep 2
		kill -KILL "$cpid" 2>/dev/null || true
	fi
	dpid=""
	# Anything the engine left mounted under its runtime dir.
	grep -o " $run[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$run"
}

finish() {
	local rc=$?
	if [ "${FV_KEEP:-0}" = 1 ] && [ -n "$dpid" ]; then
		echo "FV_KEEP=1: the stack and the engine (PID $dpid) keep running:"
		echo "  export DOCKER_HOST=$DOCKER_HOST; docker-compose -p $project -f $src/deploy/docker-compose.yml ps"
		echo "  stop: docker-compose ... down -v; kill $dpid"
	else
		if [ -n "$dpid" ]; then
			if [ "$rc" -ne 0 ]; then
				"${compose[@]}" ps 2>&1 | sed 's/^/  ps: /' || true
				for s in coordinator pump-1 compressor-2 motor-3 sim broker; do
					"${compose[@]}" logs --no-color --tail 15 "$s" 2>&1 | sed "s/^/  $s: /" || true
				done
			fi
			timeout 120 "${compose[@]}" down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
			# Dangling images only. The build stage is tagged first (a cache
			# hit, nothing runs): untagged, the classic builder's cache of
			# the compile would count as dangling and be lost.
			timeout 120 "$docker" build -q --network host -f "$src/docker/Dockerfile" \
				--target build -t fedvigil/build:cache "$src" >/dev/null 2>&1 &&
				timeout 60 "$docker" image prune -f >/dev/null 2>&1 || true
		fi
		stop_engine
	fi
	fv_cleanup
	exit "$rc"
}
trap finish EXIT

# --- the engine ---
step "starting dockerd (data-root $cache/docker)"
mkdir -p "$run/exec" "$cache/docker"
echo '{}' >"$run/daemon.json"
/usr/sbin/dockerd --config-file "$run/daemon.json" --data-root "$cache/docker" \
	--exec-root "$run/exec" --pidfile "$run/docker.pid" -H "$DOCKER_HOST" \
	--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
	--log-level=warn >"$FV_TMP/dockerd.log" 2>&1 9>&- &
dpid=$!
up=0
for _ in $(seq 1 300); do
	if ! kill -0 "$dpid" 2>/dev/null; then
		wait "$dpid" 2>/dev/null || true
		dpid=""
		tail -15 "$FV_TMP/dockerd.log" >&2
		fv_skip "dockerd does not start on this machine (its log above): the container engine cannot run here"
	fi
	if "$docker" version >/dev/null 2>&1; then up=1; break; fi
	sleep 0.2
done
[ "$up" = 1 ] || { tail -15 "$FV_TMP/dockerd.log" >&2; fv_fail "dockerd did not answer within 60 s"; }
# A container must run at all (cgroups, overlayfs, namespaces): else the
# sandbox cannot host containers, which is no fault of ours.
if ! "$docker" info --format '{{.Driver}} {{.CgroupDriver}}' >"$FV_TMP/info" 2>&1; then
	cat "$FV_TMP/info" >&2
	fv_fail "docker info failed"
fi
step "engine up: $(cat "$FV_TMP/info")"

# --- the base image ---
base=$cache/bookworm-slim.tar
if [ -f "$base" ] && [ -n "$(find "$base" -mtime +30)" ]; then rm -f "$base"; fi
if [ ! -f "$base" ]; then
	step "making debian:bookworm-slim with debootstrap from $("$src/docker/mkbase" --mirror)"
	if ! "$src/docker/mkbase" "$base" 2>"$FV_TMP/mkbase.log"; then
		cat "$FV_TMP/mkbase.log" >&2
		if grep -qE 'Failed getting release file|Couldn.t download|Could not resolve|Temporary failure' \
			"$FV_TMP/mkbase.log"; then
			fv_skip "the Debian mirror is unreachable: cannot make the base image"
		fi
		fv_fail "docker/mkbase failed"
	fi
	"$docker" rmi -f debian:bookworm-slim >/dev/null 2>&1 || true
fi
if ! "$docker" image inspect debian:bookworm-slim >/dev/null 2>&1; then
	"$docker" import --change 'CMD ["bash"]' "$base" debian:bookworm-slim >/dev/null
fi
step "base image: $("$docker" image inspect -f '{{.Size}}' debian:bookworm-slim | awk '{printf "%.0f MB", $1 / 1e6}')"

# A stack left by an interrupted run.
"${compose[@]}" down -v --remove-orphans -t 1 >/dev/null 2>&1 || true

# --- the images ---
step "building the images"
# The broker's packages download while the coordinator target compiles;
# the other targets then reuse the cached build and runtime stages.
if ! { "${compose[@]}" build --parallel broker coordinator && "${compose[@]}" build; } \
	>"$FV_TMP/build.log" 2>&1; then
	tail -40 "$FV_TMP/build.log" >&2
	fv_fail "docker-compose build failed"
fi
for i in agent coordinator sim broker; do
	size=$("$docker" image inspect -f '{{.Size}}' "fedvigil/$i:latest") ||
		fv_fail "image fedvigil/$i missing after the build"
	echo "  fedvigil/$i: $((size / 1000000)) MB"
	user=$("$docker" image inspect -f '{{.Config.User}}' "fedvigil/$i:latest")
	[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] ||
		fv_fail "fedvigil/$i runs as '${user:-root}', not as an unprivileged user"
	"$docker" image inspect -f '{{json .Config.Healthcheck.Test}}' "fedvigil/$i:latest" |
		grep -q fedvigil- || fv_fail "fedvigil/$i has no HEALTHCHECK of ours"
done
step "images built"

# --- docs/install.md: edit one config, bring the stack up ---
cp -r "$src/deploy/compose" "$FV_TMP/compose"
sed -i 's/^algorithm = fedavg$/algorithm = median/' "$FV_TMP/compose/coordinator.ini"
grep -qx 'algorithm = median' "$FV_TMP/compose/coordinator.ini" ||
	fv_fail "deploy/compose/coordinator.ini has no 'algorithm = fedavg' line to edit"
chmod 755 "$FV_TMP" "$FV_TMP/compose"
port=$(fv_free_port)
export FV_CONFIG_DIR=$FV_TMP/compose FV_BROKER_BIND=127.0.0.1 FV_BROKER_PORT=$port
export FV_FLEET=ctest FV_LOG_LEVEL=info
# The simulator's normal phase outlasts the ten rounds with a margin even on
# a loaded machine (56 s at 150x; the rounds took 26-37 s here), so that its
# faults meet the final model: faults during training meet a model still
# learning what normal is, and the alert this test waits for became a race.
export FV_SIM_NORMAL=8400 FV_SIM_DURATION=14400
# As docs/install.md: the broker first, a subscriber, then the fleet.
if ! "${compose[@]}" up -d --no-build broker >"$FV_TMP/up.log" 2>&1; then
	cat "$FV_TMP/up.log" >&2
	fv_fail "docker-compose up broker failed"
fi
health() { "$docker" inspect -f '{{.State.Health.Status}}' "$("${compose[@]}" ps -q "$1")" 2>/dev/null; }
fv_wait_for "broker healthy" 60 bash -c "[ \"\$('$docker' inspect -f '{{.State.Health.Status}}' \
	$("${compose[@]}" ps -q broker))\" = healthy ]" || fv_fail "broker is $(health broker)"
step "broker healthy on 127.0.0.1:$port"

# The operator's view: the monitor user's password from the broker's volume.
"${compose[@]}" exec -T broker cat /mosquitto/secrets/monitor.pass >"$FV_TMP/monitor.pass"
[ -s "$FV_TMP/monitor.pass" ] || fv_fail "no monitor password in the broker's volume"
mkdir -p "$FV_TMP/xdg"
printf -- '-u monitor\n-P %s\n' "$(cat "$FV_TMP/monitor.pass")" >"$FV_TMP/xdg/mosquitto_sub"
chmod 600 "$FV_TMP/xdg/mosquitto_sub"
sub() { XDG_CONFIG_HOME=$FV_TMP/xdg mosquitto_sub -h 127.0.0.1 -p "$port" "$@"; }

# Not through sub(): $! must be mosquitto_sub itself, not a subshell.
XDG_CONFIG_HOME=$FV_TMP/xdg mosquitto_sub -h 127.0.0.1 -p "$port" -v \
	-t "fedvigil/v1/$FV_FLEET/coord/metrics" -t "fedvigil/v1/$FV_FLEET/agent/+/alert" \
	>"$FV_TMP/mqtt.log" 2>"$FV_TMP/sub.err" 9>&- &
subpid=$!
fv_track "$subpid"

sleep 2
kill -0 "$subpid" 2>/dev/null || fv_fail "mosquitto_sub as monitor exited: $(cat "$FV_TMP/sub.err")"
if ! "${compose[@]}" up -d --no-build >>"$FV_TMP/up.log" 2>&1; then
	cat "$FV_TMP/up.log" >&2
	fv_fail "docker-compose up failed"
fi
step "stack up"

# Authentication is on: no anonymous client.
if mosquitto_sub -h 127.0.0.1 -p "$port" -t '#' -C 1 -W 3 >/dev/null 2>"$FV_TMP/anon.err"; then
	fv_fail "the broker let an anonymous client subscribe"
fi
grep -qi 'not authori' "$FV_TMP/anon.err" || fv_fail "anonymous client: $(cat "$FV_TMP/anon.err")"

rounds() { grep -c '/coord/metrics .*"kind":"train"' "$FV_TMP/mqtt.log" 2>/dev/null || true; }
alerts() { grep -c '/alert .*"state":"raised"' "$FV_TMP/mqtt.log" 2>/dev/null || true; }
fv_wait_for "3 training rounds" 240 bash -c "[ \$(grep -c '/coord/metrics .*\"kind\":\"train\"' '$FV_TMP/mqtt.log') -ge 3 ]" ||
	fv_fail "only $(rounds) training rounds on MQTT"
step "$(rounds) training rounds"
grep '/coord/metrics .*"kind":"train"' "$FV_TMP/mqtt.log" | grep -q '"algorithm":"median"' ||
	fv_fail "the rounds do not use the edited algorithm: $(grep -m1 train "$FV_TMP/mqtt.log")"
grep '/coord/metrics .*"kind":"train"' "$FV_TMP/mqtt.log" | grep -q '"agents":3' ||
	fv_fail "no round with updates from all three agents"
# An alert in the simulator's fault phase (its samples start at midnight;
# 8400 normal ones end at 02:20:00), not one of a model still training.
fault_alerts() {
	grep '/alert .*"state":"raised"' "$FV_TMP/mqtt.log" 2>/dev/null |
		sed -n 's/.*"start":"2026-01-01T\([0-9:]*\)\..*/\1/p' | awk '$1 >= "02:20:00"' | wc -l
}
export -f fault_alerts
export FV_TMP
fv_wait_for "a raised alert in the fault phase" 180 bash -c '[ "$(fault_alerts)" -ge 1 ]' ||
	fv_fail "no alert on MQTT in the simulator's fault phase ($(rounds) rounds, $(alerts) alerts in all)"
step "$(alerts) alert(s), $(fault_alerts) in the fault phase:"
grep '/alert .*"state":"raised"' "$FV_TMP/mqtt.log" | cut -c1-170 | sed 's/^/  /'

# Every long-running service is healthy by its own check.
for s in broker coordinator pump-1 compressor-2 motor-3; do
	id=$("${compose[@]}" ps -q "$s")
	fv_wait_for "$s healthy" 30 bash -c "[ \"\$('$docker' inspect -f '{{.State.Health.Status}}' $id)\" = healthy ]" ||
		fv_fail "$s is $("$docker" inspect -f '{{.State.Health.Status}}' "$id")"
done
# The agents' checks answer through their own Prometheus page.
"${compose[@]}" exec -T pump-1 fedvigil-health | grep -q '^healthy' || fv_fail "pump-1: fedvigil-health not healthy"
step "broker, coordinator and agents healthy"

# Persistence: the retained model survives a broker restart.
"${compose[@]}" restart -t 5 broker >/dev/null 2>&1
fv_wait_for "broker healthy after restart" 60 bash -c \
	"[ \"\$('$docker' inspect -f '{{.State.Health.Status}}' $("${compose[@]}" ps -q broker))\" = healthy ]" ||
	fv_fail "broker not healthy after a restart"
model=$(sub -C 1 -W 10 -t "fedvigil/v1/$FV_FLEET/model" 2>/dev/null | wc -c)
[ "$model" -gt 100 ] || fv_fail "retained model lost in a broker restart ($model bytes)"
step "retained model ($model bytes) kept across a broker restart"
echo "containers: $(rounds) rounds, $(alerts) alerts, wall $((SECONDS - t0)) s"
echo PASS
