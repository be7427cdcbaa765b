#!/usr/bin/env bash
# The Debian package, end to end, in a fresh Debian 12 chroot where systemd
# is not running (as in an image build or a container):
#   1. cpack builds fedvigil_<version>_<arch>.deb; its contents and control
#      data are checked;
#   2. a debootstrap --variant=minbase chroot (cached as a tarball in
#      ${XDG_CACHE_HOME:-~/.cache}/fedvigil, with the package's dependencies,
#      mosquitto and mosquitto-clients preinstalled, so later runs need no
#      network) gets the package;
#   3. docs/install.md's walk-through runs line by line inside the chroot, in
#      a network namespace of its own (the broker has port 1883 to itself),
#      as root; `systemctl` is emulated by tests/package/shim.sh, which starts
#      each unit's ExecStart= as its User= with a NOTIFY_SOCKET and waits for
#      READY=1 (deb-systemd-helper does the enabling for real);
#   4. reinstall (the upgrade path), remove and purge, checking what stays
#      and what goes: binaries, configuration, state, the user, the units'
#      deb-systemd-helper state.
# Label "package": the first pass of scripts/test only. Needs root
# (chroot, unshare) and, for the first run only, the Debian mirror.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
fv_tmpdir
trap 'rc=$?; set +e; cleanup_chroot; [ $rc -ne 0 ] && [ $rc -ne 77 ] && dump; fv_cleanup; exit $rc' EXIT
t0=$SECONDS
tstep() { echo "  [$((SECONDS - t0)) s] $*"; }

ROOT=$FV_TMP/root
dump() {
	for f in "$FV_TMP"/*.log "$ROOT"/run/fv-units/*.log "$ROOT"/run/fv-units/*.notify; do
		[ -f "$f" ] || continue
		echo "---- $f (last 20 lines)"
		tail -20 "$f" | cut -c1-300
	done
}
cleanup_chroot() {
	local m
	for m in "$ROOT/proc" "$ROOT/dev/pts" "$ROOT/dev"; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
	done
}
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

[ "$(id -u)" -eq 0 ] || fv_skip "needs root (chroot, unshare)"
for t in cpack dpkg-deb debootstrap unshare chroot; do
	command -v "$t" >/dev/null || fv_skip "$t not installed"
done

# ---- 1. build the package ----
cpack -G DEB -B "$FV_TMP/pkg" --config "$FV_BINARY_DIR/CPackConfig.cmake" >"$FV_TMP/cpack.log" 2>&1 ||
	fv_fail "cpack failed: $(tail -5 "$FV_TMP/cpack.log")"
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")/\1/p' "$FV_BINARY_DIR/CPackConfig.cmake")
arch=$(dpkg --print-architecture)
DEB=$FV_TMP/pkg/fedvigil_${version}_${arch}.deb
[ -f "$DEB" ] || fv_fail "no $(basename "$DEB") in $(ls "$FV_TMP/pkg")"
echo "package: $(basename "$DEB"), $(stat -c %s "$DEB") bytes ($((SECONDS - t0)) s)"
dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's|^\./|/|' >"$FV_TMP/contents"
for f in /usr/bin/fedvigil-agent /usr/bin/fedvigil-coordinator /usr/bin/fedvigil-sim \
	/usr/bin/fedvigil-replay /usr/bin/fedvigil-score /usr/bin/fedvigil-keygen \
	/lib/systemd/system/fedvigil-coordinator.service /lib/systemd/system/fedvigil-agent.service \
	/lib/systemd/system/fedvigil-agent@.service /etc/fedvigil/agent.ini /etc/fedvigil/coordinator.ini \
	/usr/share/man/man8/fedvigil-agent.8.gz /usr/share/man/man8/fedvigil-coordinator.8.gz \
	/usr/share/doc/fedvigil/copyright /usr/share/doc/fedvigil/install.md \
	/usr/share/doc/fedvigil/examples/agent.ini /usr/share/doc/fedvigil/schema/alert.schema.json; do
	grep -qx "$f" "$FV_TMP/contents" || fv_fail "package lacks $f"
done
dpkg-deb -f "$DEB" Architecture | grep -qx "$arch" || fv_fail "wrong Architecture"
depends=$(dpkg-deb -f "$DEB" Depends)
for d in adduser libpaho-mqtt1.3 libprotobuf-c1 libinih1 libcjson1; do
	grep -q "$d" <<<"$depends" || fv_fail "Depends lacks $d: $depends"
done
conffiles=$(dpkg-deb -I "$DEB" conffiles)
grep -qx /etc/fedvigil/agent.ini <<<"$conffiles" && grep -qx /etc/fedvigil/coordinator.ini <<<"$conffiles" ||
	fv_fail "the configs are not conffiles: $conffiles"
mkdir "$FV_TMP/x" && dpkg-deb -x "$DEB" "$FV_TMP/x"
[ "$(head -c 4 "$FV_TMP/x/usr/bin/fedvigil-agent" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
	fv_fail "fedvigil-agent is not an ELF binary"

# ---- 2. the chroot (cached) ----
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \[*[^]]*\]* *\(http[^ ]*\) bookworm main.*/\1/p; s/^deb \(http[^ ]*\) bookworm main.*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
# A Debian 12 with what the package depends on, a broker and its clients.
# The list is fixed (the cache key): if the package grows a dependency the
# chroot lacks, it is installed from the mirror below and the cache renewed.
base_pkgs=adduser,libpaho-mqtt1.3,libprotobuf-c1,libinih1,libcjson1,libsodium23,libssl3,libsystemd0,mosquitto,mosquitto-clients
cache=${XDG_CACHE_HOME:-$HOME/.cache}/fedvigil
key=$(printf '%s %s %s' "$arch" "$mirror" "$base_pkgs" | sha256sum | cut -c1-12)
tarball=$cache/pkgtest-bookworm-minbase-$arch-$key.tar.gz
save_cache() {
	cleanup_chroot
	rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* 2>/dev/null || true
	mkdir -p "$cache"
	tar -C "$ROOT" -czf "$tarball.tmp.$$" . && mv "$tarball.tmp.$$" "$tarball" ||
		{ rm -f "$tarball.tmp.$$"; fv_fail "cannot write the cache $tarball"; }
}
mkdir -p "$ROOT"
if [ -f "$tarball" ]; then
	tar -C "$ROOT" -xzf "$tarball" || fv_fail "cannot unpack $tarball"
	echo "chroot: from the cache $tarball ($((SECONDS - t0)) s so far)"
else
	echo "chroot: debootstrap --variant=minbase bookworm from $mirror (cached afterwards in $tarball)"
	debootstrap --variant=minbase --include="$base_pkgs" bookworm "$ROOT" "$mirror" >"$FV_TMP/debootstrap.log" 2>&1 ||
		fv_fail "debootstrap failed: $(tail -5 "$FV_TMP/debootstrap.log")"
	save_cache
	echo "chroot: made and cached in $((SECONDS - t0)) s"
fi
missing=()
for d in $(sed 's/([^)]*)//g; s/|[^,]*//g; s/,/ /g' <<<"$depends"); do
	in_root dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "chroot: the package needs ${missing[*]} too: installing from $mirror, renewing the cache"
	echo "deb $mirror bookworm main" >"$ROOT/etc/apt/sources.list"
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
	in_root apt-get update -qq >"$FV_TMP/apt.log" 2>&1 &&
		in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >>"$FV_TMP/apt.log" 2>&1 || fv_fail "cannot install ${missing[*]}: $(tail -3 "$FV_TMP/apt.log")"
	save_cache
fi
[ -x "$ROOT/usr/bin/deb-systemd-helper" ] || fv_fail "chroot has no deb-systemd-helper"
[ -d "$ROOT/run/systemd/system" ] && fv_fail "chroot looks like a running systemd"
# What an installed system has and a bare debootstrap lacks.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
mount -t proc proc "$ROOT/proc"
cp "$DEB" "$ROOT/root/"
install -m 0755 "$FV_BINARY_DIR/tests/fv-notify-listen" "$ROOT/usr/local/bin/fv-notify-listen"
cp "$FV_SOURCE_DIR/tests/package/shim.sh" "$ROOT/root/shim.sh"

# ---- 3. the walk-through of docs/install.md ----
awk '/^## Debian package and systemd/ { on = 1; next } on && /^## / { on = 0 }
	on && /^```sh/ { code = 1; next } on && code && /^```/ { code = 0; next }
	on && code && !/^ *#/ && NF { print }' "$FV_SOURCE_DIR/docs/install.md" >"$FV_TMP/steps"
[ "$(wc -l <"$FV_TMP/steps")" -ge 6 ] || fv_fail "found only $(wc -l <"$FV_TMP/steps") steps in docs/install.md"
grep -q "fedvigil_${version}_amd64.deb" "$FV_TMP/steps" || fv_fail "install.md does not install fedvigil_${version}_amd64.deb"
{
	echo 'set -euo pipefail'
	echo 'cd /root'
	echo 'source /root/shim.sh'
	echo "trap 'shim_stop_all' EXIT"
	# The doc names the amd64 package; on another host the same step
	# installs that host's.
	sed "s/fedvigil_${version}_amd64\.deb/fedvigil_${version}_${arch}.deb/" "$FV_TMP/steps" |
		while IFS= read -r line; do
			printf 'echo %q\n%s\n' "+ $line" "$line"
		done
} >"$ROOT/root/walkthrough.sh"
t1=$SECONDS
# Own network (the broker gets port 1883) and PID namespaces: whatever the
# walk-through starts dies with it, even when this script is killed.
unshare --net --pid --fork --kill-child --mount-proc="$ROOT/proc" -- bash -c "ip link set lo up && exec chroot '$ROOT' /usr/bin/env -i \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb /bin/bash /root/walkthrough.sh" \
	>"$FV_TMP/walkthrough.log" 2>&1 || fv_fail "install.md walk-through failed: $(tail -15 "$FV_TMP/walkthrough.log")"
echo "walk-through: $(wc -l <"$FV_TMP/steps") steps in $((SECONDS - t1)) s"
alert=$(grep -m1 '/alert {' "$FV_TMP/walkthrough.log") || fv_fail "no alert arrived in the walk-through"
echo "first alert: $(cut -c1-300 <<<"$alert")"
for f in fleet agent state start end score threshold model_version channels; do
	grep -q "\"$f\"" <<<"$alert" || fv_fail "the alert lacks $f: $alert"
done
grep -q '"state":"online"' "$FV_TMP/walkthrough.log" || fv_fail "the agent did not report online"
grep -q 'coord/metrics {.*"kind":"train"' "$FV_TMP/walkthrough.log" || fv_fail "no training round closed"
grep -q 'Active: active (running)' "$FV_TMP/walkthrough.log" || fv_fail "systemctl status shows no running unit"
# What the walk-through's subscriber recorded validates against the schemas
# the package installed (checked here on the host: python3-jsonschema).
if /usr/bin/python3 -c 'import jsonschema' 2>/dev/null; then
	schemas=$ROOT/usr/share/doc/fedvigil/schema
	fleet=$ROOT/root/fleet.log
	for k in 'agent/[^/]*/alert alert 1' 'agent/[^/]*/state state 1' 'coord/state state 1' \
		'agent/[^/]*/metrics agent-metrics 1' 'coord/metrics coord-metrics 2'; do
		read -r topic schema min <<<"$k"
		grep "^fedvigil/v1/plant1/$topic " "$fleet" >"$FV_TMP/$schema.log" || true
		/usr/bin/python3 "$FV_SOURCE_DIR/tests/helpers/check_schema.py" "$schemas/$schema.schema.json" \
			"$FV_TMP/$schema.log" "$min" || fv_fail "the walk-through's $topic does not match $schema.schema.json"
	done
	echo "walk-through messages validate against the installed schemas"
else
	fv_fail "python3-jsonschema is not installed (scripts/deps)"
fi

# What the installation did.
in_root getent passwd fedvigil | grep -q ':/var/lib/fedvigil:/usr/sbin/nologin$' || fv_fail "no system user fedvigil"
in_root stat -c '%U:%G %a' /var/lib/fedvigil | grep -qx 'fedvigil:fedvigil 750' || fv_fail "/var/lib/fedvigil not owned by fedvigil"
in_root stat -c '%U:%G %a' /etc/fedvigil/agent.ini | grep -qx 'root:fedvigil 640' || fv_fail "agent.ini not root:fedvigil 0640"
[ -f "$ROOT/var/lib/fedvigil/coordinator.state" ] || fv_fail "the coordinator kept no state in /var/lib/fedvigil"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/fedvigil-agent.service" ] || fv_fail "fedvigil-agent not enabled"
in_root man -w fedvigil-agent >/dev/null 2>&1 || [ -f "$ROOT/usr/share/man/man8/fedvigil-agent.8.gz" ] || fv_fail "no man page"

# ---- 4. reinstall, remove, purge ----
in_root dpkg -i "/root/$(basename "$DEB")" >"$FV_TMP/reinstall.log" 2>&1 || fv_fail "reinstall failed: $(tail -5 "$FV_TMP/reinstall.log")"
grep -q '^clock = data' "$ROOT/etc/fedvigil/agent.ini" || fv_fail "reinstall lost the edited agent.ini"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/fedvigil-agent.service" ] || fv_fail "reinstall disabled fedvigil-agent"
in_root dpkg -r fedvigil >"$FV_TMP/remove.log" 2>&1 || fv_fail "dpkg -r failed: $(tail -5 "$FV_TMP/remove.log")"
[ ! -e "$ROOT/usr/bin/fedvigil-agent" ] || fv_fail "remove left /usr/bin/fedvigil-agent"
[ ! -e "$ROOT/lib/systemd/system/fedvigil-agent.service" ] || fv_fail "remove left the unit"
[ -f "$ROOT/etc/fedvigil/agent.ini" ] || fv_fail "remove deleted the configuration"
[ -f "$ROOT/var/lib/fedvigil/coordinator.state" ] || fv_fail "remove deleted the state"
in_root getent passwd fedvigil >/dev/null || fv_fail "remove deleted the user"
in_root dpkg -P fedvigil >"$FV_TMP/purge.log" 2>&1 || fv_fail "dpkg -P failed: $(tail -5 "$FV_TMP/purge.log")"
[ ! -e "$ROOT/etc/fedvigil" ] || fv_fail "purge left /etc/fedvigil: $(ls -A "$ROOT/etc/fedvigil")"
[ ! -e "$ROOT/var/lib/fedvigil" ] || fv_fail "purge left /var/lib/fedvigil"
! in_root getent passwd fedvigil >/dev/null || fv_fail "purge left the user"
! in_root getent group fedvigil >/dev/null || fv_fail "purge left the group"
[ ! -e "$ROOT/etc/systemd/system/multi-user.target.wants/fedvigil-agent.service" ] || fv_fail "purge left the enablement"
! ls "$ROOT"/var/lib/systemd/deb-systemd-helper-enabled/ 2>/dev/null | grep -q fedvigil || fv_fail "purge left deb-systemd-helper state"
! ls "$ROOT"/var/lib/systemd/deb-systemd-helper-masked/ 2>/dev/null | grep -q fedvigil || fv_fail "purge left masked units"
in_root dpkg -s fedvigil >/dev/null 2>&1 && fv_fail "dpkg still knows fedvigil after purge"
echo "package test: $((SECONDS - t0)) s in all"
echo PASS
