#!/usr/bin/env bash
# TLS and the broker ACL of deploy/mosquitto/ with real processes.
#
# A throw-away PKI (tests/tls/mkcerts.sh) and a Mosquitto started from
# deploy/mosquitto/fedvigil.conf + fedvigil.acl (paths and ports rewritten
# for the test): listener A takes TLS + password, listener B TLS + client
# certificate. The coordinator (certificate), pump-1 (certificate),
# compressor-2 (password file) and the simulator (user "sensors", password
# file) run a fleet to completion over TLS. Then the attacks: anonymous,
# wrong password, plain TCP, untrusted certificate; compressor-2 publishing
# as pump-1 and to the model and round topics, reading pump-1's updates;
# the monitor and sensors users publishing fleet messages. A spy user (test
# only, may read everything) proves none of it got through the broker, and
# the model and the agents' versions stay unchanged. Finally: no password
# in logs or --dump-config, and loose key/password files are refused.
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_pub >/dev/null || fv_skip "mosquitto-clients not installed"
command -v mosquitto_passwd >/dev/null || fv_skip "mosquitto_passwd not installed"
command -v openssl >/dev/null || fv_skip "openssl not installed"
fv_tmpdir
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT

T=$FV_TMP/tls
bash "$FV_SOURCE_DIR/tests/tls/mkcerts.sh" "$T" coordinator pump-1 compressor-2 >/dev/null
PA=$(fv_free_port)
PB=$(fv_free_port)
while [ "$PB" = "$PA" ]; do PB=$(fv_free_port); done

# Passwords: one per user, in files of mode 0600.
umask 077
declare -A PW
for u in coordinator compressor-2 sensors monitor spy; do
	PW[$u]="pw-$u-$RANDOM$RANDOM"
	printf '%s\n' "${PW[$u]}" >"$FV_TMP/$u.pass"
	mosquitto_passwd -b $([ -f "$FV_TMP/passwd" ] || echo -c) "$FV_TMP/passwd" "$u" "${PW[$u]}"
done
umask 022

# The deployed ACL, plus a test-only reader of everything.
cp "$FV_SOURCE_DIR/deploy/mosquitto/fedvigil.acl" "$FV_TMP/fedvigil.acl"
printf '\n# test only\nuser spy\ntopic read #\n' >>"$FV_TMP/fedvigil.acl"
sed -e "s|/etc/mosquitto/fedvigil/passwd|$FV_TMP/passwd|" \
	-e "s|/etc/mosquitto/fedvigil/fedvigil.acl|$FV_TMP/fedvigil.acl|" \
	-e "s|/etc/mosquitto/fedvigil/|$T/|" \
	-e "s|^persistence true|persistence false|" -e "/^persistence_location/d" \
	-e "s|^listener 8883\$|listener $PA 127.0.0.1|" -e "s|^listener 8884\$|listener $PB 127.0.0.1|" \
	"$FV_SOURCE_DIR/deploy/mosquitto/fedvigil.conf" >"$FV_TMP/mosquitto.conf"
printf 'user %s\nlog_dest file %s/mosquitto.log\nlog_type all\n' "$(id -un)" "$FV_TMP" >>"$FV_TMP/mosquitto.conf"
grep -q "^listener $PA" "$FV_TMP/mosquitto.conf" && grep -q "^listener $PB" "$FV_TMP/mosquitto.conf" ||
	fv_fail "deploy/mosquitto/fedvigil.conf no longer has listeners 8883 and 8884"
fv_broker_start_conf "$FV_TMP/mosquitto.conf" "$PA" "$PB"

# mosquitto_pub/sub over TLS: pw USER ARGS... (listener A), cert NAME ARGS... (B)
pw() { local u=$1; shift; "$@" -h localhost -p "$PA" --cafile "$T/ca.crt" -u "$u" -P "${PW[$u]}"; }
cert() { local n=$1; shift; "$@" -h localhost -p "$PB" --cafile "$T/ca.crt" --cert "$T/$n.crt" --key "$T/$n.key"; }
F=fedvigil/v1/$FV_FLEET

# ---- who may connect at all ----
refused() { # refused DESC CMD...: CMD must fail to publish
	local desc=$1
	shift
	if "$@" -t fvtest/x -m hello 2>>"$FV_TMP/refused.log"; then fv_fail "$desc: connection accepted"; fi
	echo "refused as expected: $desc"
}
refused "anonymous" mosquitto_pub -h localhost -p "$PA" --cafile "$T/ca.crt"
refused "wrong password" mosquitto_pub -h localhost -p "$PA" --cafile "$T/ca.crt" -u compressor-2 -P wrong
refused "plain MQTT to TLS" mosquitto_pub -h 127.0.0.1 -p "$PA" -u compressor-2 -P "${PW[compressor-2]}"
refused "no client certificate" mosquitto_pub -h localhost -p "$PB" --cafile "$T/ca.crt"
refused "certificate of another CA" mosquitto_pub -h localhost -p "$PB" --cafile "$T/ca.crt" \
	--cert "$T/rogue.crt" --key "$T/rogue.key"
refused "unknown server CA" mosquitto_pub -h localhost -p "$PA" --cafile "$T/rogue-ca.crt" \
	-u compressor-2 -P "${PW[compressor-2]}"
grep -q "not authorised" "$FV_TMP/mosquitto.log" || fv_fail "broker did not log the refused logins"

# ---- a fleet over TLS ----
# Not through pw(): a function in the background is a subshell, and $!
# must be mosquitto_sub itself for fv_track to stop it.
fleet_sub() {
	mosquitto_sub -h localhost -p "$PA" --cafile "$T/ca.crt" -u spy -P "${PW[spy]}" \
		-v -t "$2" >"$FV_TMP/$1.log" 2>/dev/null &
	fv_track "$!"
}
fleet_sub spy "#"
fleet_sub metrics "$F/coord/metrics"
chans=(vibration temperature pressure flow current)
FV_ROUND_INTERVAL_MS=300 fleet_write_coordinator 2 2 5
sed -i "s|^broker = .*|broker = ssl://localhost:$PB|" "$FV_TMP/coordinator.ini"
printf '[tls]\nca_file = %s\ncert_file = %s\nkey_file = %s\n' "$T/ca.crt" "$T/coordinator.crt" \
	"$T/coordinator.key" >>"$FV_TMP/coordinator.ini"
for m in pump-1 compressor-2; do fleet_write_agent "$m" plant1 1000 "${chans[@]}"; done
sed -i -e "s|^broker = .*|broker = ssl://localhost:$PB|" "$FV_TMP/pump-1.ini"
printf '[tls]\nca_file = %s\ncert_file = %s\nkey_file = %s\n' "$T/ca.crt" "$T/pump-1.crt" \
	"$T/pump-1.key" >>"$FV_TMP/pump-1.ini"
sed -i -e "s|^broker = .*|broker = ssl://localhost:$PA\nusername = compressor-2\npassword_file = $FV_TMP/compressor-2.pass|" \
	"$FV_TMP/compressor-2.ini"
printf '[tls]\nca_file = %s\n' "$T/ca.crt" >>"$FV_TMP/compressor-2.ini"
for m in pump-1 compressor-2; do sed -i 's/^log_level = info/log_level = debug/' "$FV_TMP/$m.ini"; done
sleep 0.3
fleet_start_coordinator
for m in pump-1 compressor-2; do fleet_start_agent "$m"; done
"$FV_BIN/fedvigil-sim" --broker "ssl://localhost:$PA" --cafile "$T/ca.crt" --username sensors \
	--password-file "$FV_TMP/sensors.pass" --prefix plant1 --machines 2 --period-ms 1000 \
	--speed 300 --duration 9000 --normal 9000 --faults 0 --seed 5 \
	--start 2026-01-01T00:00:00Z >"$FV_TMP/sim.log" 2>&1 &
SIM_PID=$!
fv_track "$SIM_PID"
fv_wait_for "2 training rounds over TLS" 60 grep -q "training finished after 2 rounds" \
	"$FV_TMP/coordinator.log" || fv_fail "the fleet did not finish over TLS"
for m in pump-1 compressor-2; do
	fv_wait_for "$m holds model v3" 10 grep -q "model v3 loaded" "$FV_TMP/$m.log" ||
		fv_fail "$m did not get model v3"
done
echo "fleet over TLS: 2 training rounds, both agents on model v3"

# ---- hostile publishes by authenticated users ----
model_md5() { pw spy mosquitto_sub -C 1 -W 5 -t "$F/model" | md5sum | cut -d' ' -f1; }
m0=$(model_md5)
[ -n "$m0" ] || fv_fail "no retained model"
n_spy=$(wc -l <"$FV_TMP/spy.log")
# Not through cert(): $! must be mosquitto_sub itself (see fleet_sub).
mosquitto_sub -h localhost -p "$PB" --cafile "$T/ca.crt" --cert "$T/compressor-2.crt" \
	--key "$T/compressor-2.key" -v -t "$F/round/+/update/+" -t "plant1/pump-1/#" \
	>"$FV_TMP/snoop.log" 2>&1 &
SNOOP=$!
fv_track "$SNOOP"
attack() { # attack N USER-ARGS...: publish ATTACK-N somewhere it must not go
	local n=$1
	shift
	"$@" -m "ATTACK-$n" 2>>"$FV_TMP/attack.log" || true
}
attack 1 cert compressor-2 mosquitto_pub -q 1 -t "$F/round/2/update/pump-1"
attack 2 cert compressor-2 mosquitto_pub -q 1 -r -t "$F/model"
attack 3 cert compressor-2 mosquitto_pub -q 1 -r -t "$F/round"
attack 4 cert compressor-2 mosquitto_pub -q 1 -r -t "$F/agent/pump-1/state"
attack 5 cert compressor-2 mosquitto_pub -q 1 -t "$F/agent/pump-1/alert"
attack 6 cert compressor-2 mosquitto_pub -q 1 -t "$F/coord/metrics"
attack 7 pw compressor-2 mosquitto_pub -q 1 -r -t "$F/model"
attack 8 pw monitor mosquitto_pub -q 1 -r -t "$F/model"
attack 9 pw sensors mosquitto_pub -q 1 -t "$F/round/2/update/pump-1"
attack 10 pw sensors mosquitto_pub -q 1 -r -t "$F/round"
attack 11 pw coordinator mosquitto_pub -q 1 -t "$F/agent/pump-1/alert"
# Control: a publish the ACL allows does get through the same way.
cert compressor-2 mosquitto_pub -q 1 -t "$F/agent/compressor-2/alert" -m "CONTROL-alert"
fv_wait_for "control publish" 10 grep -q "CONTROL-alert" "$FV_TMP/spy.log" ||
	fv_fail "the allowed control publish did not arrive"
# The sensor readings of pump-1 flow while the snooper listens (the
# simulator is still running); it must get none of them.
sleep 1
kill -0 "$SIM_PID" 2>/dev/null || fv_fail "the simulator ended before the snooping test"
if grep -q "ATTACK" "$FV_TMP/spy.log"; then
	grep "ATTACK" "$FV_TMP/spy.log" >&2
	fv_fail "a foreign publish reached a subscriber"
fi
[ ! -s "$FV_TMP/snoop.log" ] || fv_fail "compressor-2 read pump-1's topics: $(head -c 200 "$FV_TMP/snoop.log")"
denied=$(grep -c "Denied PUBLISH" "$FV_TMP/mosquitto.log" || true)
[ "$denied" -ge 11 ] || fv_fail "broker logged $denied denied publishes, expected >= 11"
echo "foreign publishes: 11 of 11 dropped by the broker ($denied 'Denied PUBLISH' lines), snooping got 0 messages"
[ "$(model_md5)" = "$m0" ] || fv_fail "the retained model changed"
for m in pump-1 compressor-2; do
	! grep -q "model v[4-9]\|rejected" "$FV_TMP/$m.log" || fv_fail "$m saw a forged message"
done
! grep -q "rejected" "$FV_TMP/coordinator.log" || fv_fail "the coordinator saw a forged update"
grep -q '"state":"online","agent":"pump-1"' <(pw spy mosquitto_sub -C 1 -W 5 -t "$F/agent/pump-1/state") ||
	fv_fail "pump-1's retained state was overwritten"

# ---- secrets ----
for u in coordinator compressor-2 sensors; do
	! grep -rqF "${PW[$u]}" "$FV_TMP"/*.log || fv_fail "the password of $u appears in a log"
done
"$FV_BIN/fedvigil-agent" -c "$FV_TMP/compressor-2.ini" --dump-config >"$FV_TMP/dump.txt"
! grep -qF "${PW[compressor-2]}" "$FV_TMP/dump.txt" || fv_fail "--dump-config printed the password"
grep -q "^; password = (set, not shown)" "$FV_TMP/dump.txt" || fv_fail "--dump-config does not say the password is set"
grep -q "^password_file = $FV_TMP/compressor-2.pass" "$FV_TMP/dump.txt" || fv_fail "--dump-config lost password_file"
"$FV_BIN/fedvigil-coordinator" -c "$FV_TMP/coordinator.ini" --set "coordinator.password=${PW[coordinator]}" \
	--dump-config >"$FV_TMP/dump2.txt"
! grep -qF "${PW[coordinator]}" "$FV_TMP/dump2.txt" || fv_fail "coordinator --dump-config printed the password"
grep -q "^cert_file = $T/coordinator.crt" "$FV_TMP/dump2.txt" || fv_fail "coordinator --dump-config lost [tls]"

# Loose permissions are refused, naming the file; 0600 is accepted.
chmod 640 "$FV_TMP/compressor-2.pass"
if "$FV_BIN/fedvigil-agent" -c "$FV_TMP/compressor-2.ini" --check-config 2>"$FV_TMP/perm.err"; then
	fv_fail "a group-readable password file was accepted"
fi
grep -q "compressor-2.pass is accessible by group or others (mode 0640)" "$FV_TMP/perm.err" ||
	fv_fail "unclear message: $(cat "$FV_TMP/perm.err")"
chmod 600 "$FV_TMP/compressor-2.pass"
chmod 644 "$T/pump-1.key"
if "$FV_BIN/fedvigil-agent" -c "$FV_TMP/pump-1.ini" --check-config 2>"$FV_TMP/perm.err"; then
	fv_fail "a world-readable TLS key was accepted"
fi
grep -q "pump-1.key is accessible by group or others (mode 0644)" "$FV_TMP/perm.err" ||
	fv_fail "unclear message: $(cat "$FV_TMP/perm.err")"
if "$FV_BIN/fedvigil-sim" --broker "ssl://localhost:$PB" --cafile "$T/ca.crt" --cert "$T/pump-1.crt" \
	--key "$T/pump-1.key" --duration 1 --faults 0 2>"$FV_TMP/perm.err"; then
	fv_fail "fedvigil-sim accepted a world-readable TLS key"
fi
grep -q "accessible by group or others" "$FV_TMP/perm.err" || fv_fail "sim: $(cat "$FV_TMP/perm.err")"
chmod 600 "$T/pump-1.key"
"$FV_BIN/fedvigil-agent" -c "$FV_TMP/pump-1.ini" --check-config >/dev/null || fv_fail "0600 key refused"
# TLS settings with a plain URI: refused, not silently unencrypted.
if "$FV_BIN/fedvigil-agent" -c "$FV_TMP/pump-1.ini" --broker "tcp://127.0.0.1:$PA" --check-config \
	2>"$FV_TMP/uri.err"; then
	fv_fail "[tls] with a tcp:// broker was accepted"
fi
grep -q "does not use TLS" "$FV_TMP/uri.err" || fv_fail "unclear message: $(cat "$FV_TMP/uri.err")"
echo PASS
