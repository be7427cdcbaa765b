#!/usr/bin/env bash
# Cross-build fedvigil for arm64 with Debian's gcc-aarch64-linux-gnu (in its
# own build dir, $FV_BINARY_DIR/arm64) and run the unit tests and the fuzz
# corpus replays under qemu-user. test_mqtt starts the host's mosquitto on
# loopback, which the emulated client talks to. Label `arm64`: scripts/test
# runs it in the first pass only. Needs `scripts/deps --arm64`.
set -euo pipefail
src=${FV_SOURCE_DIR:?FV_SOURCE_DIR not set (run through ctest)}
out=${FV_BINARY_DIR:?FV_BINARY_DIR not set (run through ctest)}/arm64
jobs=${FV_ARM64_JOBS:-2}

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
for pc in libprotobuf-c inih libcjson cmocka libsystemd libsodium openssl; do
	[ -e "/usr/lib/aarch64-linux-gnu/pkgconfig/$pc.pc" ] || missing+=("$pc.pc:arm64")
done
[ -e /usr/lib/aarch64-linux-gnu/cmake/eclipse-paho-mqtt-c ] || missing+=(libpaho-mqtt-dev:arm64)
if [ ${#missing[@]} -gt 0 ]; then
	echo "test_arm64: missing ${missing[*]}; install them with scripts/deps --arm64" >&2
	exit 1
fi

t0=$(date +%s)
cmake -S "$src" -B "$out" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFV_TESTS=ON >/dev/null
cmake --build "$out" -j"$jobs"
t1=$(date +%s)

# The programs must really be arm64, not host binaries that would pass anyway.
for b in fedvigil-agent fedvigil-coordinator tests/test_nn; do
	machine=$(readelf -h "$out/$b" | sed -n 's/^ *Machine: *//p')
	if [ "$machine" != "AArch64" ]; then
		echo "test_arm64: $out/$b is '$machine', not AArch64" >&2
		exit 1
	fi
done
# The daemons start under emulation and read their example configs.
qemu-aarch64 "$out/fedvigil-agent" --version
qemu-aarch64 "$out/fedvigil-agent" -c "$src/deploy/agent.ini" --check-config
qemu-aarch64 "$out/fedvigil-coordinator" -c "$src/deploy/coordinator.ini" --check-config

# Emulation makes the arm64 programs several times slower, and a test that
# waits for a TLS handshake or a reconnect can miss its deadline when the
# machine is busy: a failed test gets one more run (ctest prints both).
ctest --test-dir "$out" -L '^(unit|fuzz)$' --output-on-failure -j"$jobs" --repeat until-pass:2
t2=$(date +%s)

# The arm64 Debian package (docs/install.md) from the same build: its
# architecture, dependencies from the arm64 libraries (dpkg-shlibdeps via
# multiarch), AArch64 binaries that run.
rm -rf "$out/packages" "$out/deb-root"
(cd "$out" && DEB_HOST_ARCH=arm64 cpack -G DEB -B "$out/packages" >/dev/null)
deb=$(ls "$out"/packages/fedvigil_*_arm64.deb)
[ "$(dpkg-deb -f "$deb" Architecture)" = arm64 ] || { echo "test_arm64: $deb is not arm64" >&2; exit 1; }
dpkg-deb -f "$deb" Depends | grep -q 'libpaho-mqtt1.3' || { echo "test_arm64: $deb lacks its Depends" >&2; exit 1; }
dpkg-deb -x "$deb" "$out/deb-root"
for b in fedvigil-agent fedvigil-coordinator; do
	[ "$(readelf -h "$out/deb-root/usr/bin/$b" | sed -n 's/^ *Machine: *//p')" = AArch64 ] ||
		{ echo "test_arm64: packaged $b is not AArch64" >&2; exit 1; }
done
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/deb-root/usr/bin/fedvigil-agent" --version
echo "test_arm64: package $(basename "$deb"), $(stat -c %s "$deb") bytes"
t3=$(date +%s)
echo "test_arm64: cross-build $((t1 - t0)) s, tests under qemu-aarch64 $((t2 - t1)) s, package $((t3 - t2)) s"
