#!/usr/bin/env bash
# Signed models and updates with real processes, against an attacker who
# can publish anything on the broker (the ACL bypassed: a leaked broker
# credential, a compromised broker).
#
# Keys from fedvigil-keygen. The coordinator signs models and
# announcements and verifies updates against sign.agent_keys; pump-1 and
# compressor-2 verify against sign.model_key, sign their updates and keep
# sign.version_file; motor-3 signs with a key the coordinator does not
# know. The fleet trains 2 rounds (models v1..v3, all captured from the
# wire). Then the attacks, each checked in the agents' counters, logs and
# model versions: an unsigned copy of the current model, a tampered one
# (threshold byte changed), old signed models (rollback), an announcement
# by a rogue coordinator with another key, unsigned clears, and the
# rollback after an agent restart (sign.version_file).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
command -v mosquitto_pub >/dev/null || fv_skip "mosquitto-clients not installed"
fv_tmpdir
fv_broker_start
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && fleet_dump_logs; fv_cleanup; exit $rc' EXIT
K=$FV_TMP/keys
mkdir -p "$K/agents"
KG="$FV_BIN/fedvigil-keygen"
"$KG" "$K/coordinator" >/dev/null
"$KG" "$K/rogue" >/dev/null
for a in pump-1 compressor-2 motor-3; do "$KG" "$K/$a" >/dev/null; done
[ "$(stat -c %a "$K/coordinator.key")" = 600 ] || fv_fail "keygen wrote a private key with mode $(stat -c %a "$K/coordinator.key")"
# The coordinator has the keys of pump-1 and compressor-2; for motor-3 it
# has another key than the one motor-3 signs with (an impostor with
# motor-3's broker access but not its signing key looks the same).
cp "$K/pump-1.pub" "$K/compressor-2.pub" "$K/agents/"
cp "$K/rogue.pub" "$K/agents/motor-3.pub"
F=fedvigil/v1/$FV_FLEET
P=$FV_BROKER_PORT

fleet_sub metrics "$F/coord/metrics"
fleet_sub agentmetrics "$F/agent/+/metrics"
mosquitto_sub -h 127.0.0.1 -p "$P" -t "$F/model" -F '%x' >"$FV_TMP/models.hex" 2>/dev/null &
fv_track "$!"
chans=(vibration temperature pressure flow current)
FV_ROUND_INTERVAL_MS=300 fleet_write_coordinator 2 2 5 \
	"[sign]" "key_file = $K/coordinator.key" "agent_keys = $K/agents"
# Rounds close at the deadline without motor-3, whose updates are refused.
sed -i -e 's/^deadline_ms = .*/deadline_ms = 1200/' -e 's/^\[round\]/[round]\nquorum = 0.6/' \
	"$FV_TMP/coordinator.ini"
for m in pump-1 compressor-2 motor-3; do
	fleet_write_agent "$m" plant 1000 "${chans[@]}"
	printf '[sign]\nmodel_key = %s\nkey_file = %s\nversion_file = %s\n' "$K/coordinator.pub" \
		"$K/$m.key" "$FV_TMP/$m.version" >>"$FV_TMP/$m.ini"
done
sleep 0.3
fleet_start_coordinator
for m in pump-1 compressor-2 motor-3; do fleet_start_agent "$m"; done
"$FV_BIN/fedvigil-sim" --broker "tcp://127.0.0.1:$P" --prefix plant --machines 3 --period-ms 1000 \
	--speed 300 --duration 20000 --normal 20000 --faults 0 --seed 7 \
	--start 2026-01-01T00:00:00Z >"$FV_TMP/sim.log" 2>&1 &
fv_track "$!"
fv_wait_for "2 signed training rounds" 90 grep -q "training finished after 2 rounds" \
	"$FV_TMP/coordinator.log" || fv_fail "the signed fleet did not finish"
for m in pump-1 compressor-2; do
	fv_wait_for "$m on v3" 10 grep -q "model v3 loaded" "$FV_TMP/$m.log" || fv_fail "$m did not get v3"
done
grep -q "signing models and announcements with fedvigil-ed25519 " "$FV_TMP/coordinator.log" ||
	fv_fail "the coordinator does not sign"

# Every update of motor-3 was refused for its signature, none of the others.
n_acc=$(grep -c "update from motor-3 .* accepted" "$FV_TMP/coordinator.log" || true)
[ "$n_acc" = 0 ] || fv_fail "an update of motor-3 (unknown key) was accepted"
grep -q "update from motor-3 for round [0-9]* rejected: bad signature" "$FV_TMP/coordinator.log" ||
	fv_fail "motor-3's updates were not refused for their signature"
sig_rej=$(grep '"kind"' "$FV_TMP/metrics.log" | sed -n 's/.*"signature":\([0-9]*\).*/\1/p' |
	awk '{ s += $1 } END { print s + 0 }')
[ "$sig_rej" -ge 3 ] || fv_fail "coordinator metrics count $sig_rej signature rejections, expected one per round (3)"
for m in pump-1 compressor-2; do
	[ "$(grep -c "update from $m .* accepted" "$FV_TMP/coordinator.log")" -ge 3 ] ||
		fv_fail "signed updates of $m were not accepted in every round"
done
echo "signed fleet: 2 training rounds; motor-3 (signs with a key the coordinator does not hold): $sig_rej updates refused, 0 accepted"

# The models v1..v3 as published (signed), from the wire.
grep -v '^$' "$FV_TMP/models.hex" | awk '!seen[$0]++' >"$FV_TMP/models.uniq"
[ "$(wc -l <"$FV_TMP/models.uniq")" -ge 3 ] || fv_fail "captured $(wc -l <"$FV_TMP/models.uniq") models, expected 3"
model() { sed -n "${1}p" "$FV_TMP/models.uniq" | xxd -r -p; } # model N: the N-th version
model 3 >"$FV_TMP/v3.bin"
model 2 >"$FV_TMP/v2.bin"
model 1 >"$FV_TMP/v1.bin"
# The signature is the last 66 bytes: tag 0x7a, length 64, signature.
[ "$(tail -c 66 "$FV_TMP/v3.bin" | head -c 2 | xxd -p)" = 7a40 ] || fv_fail "v3 does not end in a signature record"

pub() { mosquitto_pub -h 127.0.0.1 -p "$P" -q 1 "$@"; }
last_metric() { # last_metric AGENT FIELD
	local l
	l=$(grep "agent/$1/metrics" "$FV_TMP/agentmetrics.log" | tail -1)
	json_field "$2" "$l"
}
wait_metric() { # wait_metric AGENT FIELD VALUE [OP]: until FIELD OP VALUE (default -eq)
	fv_wait_for "$1 $2 ${4:--eq} $3" 10 bash -c "v=\$(grep 'agent/$1/metrics' '$FV_TMP/agentmetrics.log' | tail -1 | sed -n 's/.*\"$2\":\([0-9]*\).*/\1/p'); [ -n \"\$v\" ] && [ \"\$v\" ${4:--eq} '$3' ]" ||
		fv_fail "$1: $2 = $(last_metric "$1" "$2"), expected ${4:--eq} $3"
}
for m in pump-1 compressor-2; do
	wait_metric "$m" model_version 3
	[ "$(last_metric "$m" signature_rejected)" = 0 ] || fv_fail "$m refused a genuine model or announcement"
done
s0=$(last_metric pump-1 signature_rejected)

# 1. The current model without its signature.
head -c -66 "$FV_TMP/v3.bin" >"$FV_TMP/unsigned.bin"
pub -r -t "$F/model" -f "$FV_TMP/unsigned.bin"
# 2. The current model with one byte of the threshold changed (bytes 6..9
#    before the signature would do; flip one in the middle of the params).
cp "$FV_TMP/v3.bin" "$FV_TMP/tampered.bin"
off=$(( $(stat -c %s "$FV_TMP/v3.bin") / 2 ))
printf "$(printf '\\x%02x' $(( $(xxd -s "$off" -l 1 -p "$FV_TMP/v3.bin" | sed 's/^/0x/') ^ 1 )))" |
	dd of="$FV_TMP/tampered.bin" bs=1 seek="$off" conv=notrunc status=none
cmp -s "$FV_TMP/tampered.bin" "$FV_TMP/v3.bin" && fv_fail "tampering changed nothing"
pub -r -t "$F/model" -f "$FV_TMP/tampered.bin"
# 3. An announcement of a rogue coordinator with its own key: round 0 of
#    a "new epoch", to make every agent send its statistics.
printf '[coordinator]\nfleet = %s\nbroker = tcp://127.0.0.1:%s\nid = rogue\nstate_dir = %s/rogue\n[model]\nchannels = 5\nhidden = 32,8,32\n[round]\nmin_agents = 1\n[sign]\nkey_file = %s\n' \
	"$FV_FLEET" "$P" "$FV_TMP" "$K/rogue.key" >"$FV_TMP/rogue.ini"
"$FV_BIN/fedvigil-coordinator" -c "$FV_TMP/rogue.ini" >"$FV_TMP/rogue.log" 2>&1 &
ROGUE=$!
fv_track "$ROGUE"
fv_wait_for "rogue announcement" 10 grep -q "round 0 (stats.*announced" "$FV_TMP/rogue.log" ||
	fv_fail "the rogue coordinator did not announce"
for m in pump-1 compressor-2 motor-3; do
	fv_wait_for "$m refuses the rogue announcement" 10 grep -q "round announcement on .* refused: bad signature" \
		"$FV_TMP/$m.log" || fv_fail "$m did not refuse the rogue coordinator's announcement"
done
fv__kill_wait "$ROGUE" 3
# 4. Old signed models: v2, then v1 (rollback).
pub -r -t "$F/model" -f "$FV_TMP/v2.bin"
pub -r -t "$F/model" -f "$FV_TMP/v1.bin"
for m in pump-1 compressor-2; do
	wait_metric "$m" rollback_rejected 2
	grep -q "global model epoch [0-9]* v2 refused: older than epoch [0-9]* v3" "$FV_TMP/$m.log" ||
		fv_fail "$m: no rollback refusal logged"
done
wait_metric pump-1 signature_rejected $((s0 + 3)) -ge # unsigned, tampered, rogue announce
for m in pump-1 compressor-2; do
	[ "$(last_metric "$m" model_version)" = 3 ] || fv_fail "$m left v3"
	grep -q "global model on .* refused: not signed" "$FV_TMP/$m.log" || fv_fail "$m: unsigned model not refused"
	grep -q "global model on .* refused: bad signature" "$FV_TMP/$m.log" || fv_fail "$m: tampered model not refused"
	! grep -q "model v[4-9] loaded\|model v[12] loaded" <(sed -n '/model v3 loaded/,$p' "$FV_TMP/$m.log") ||
		fv_fail "$m loaded a model after v3"
done
# 5. An unsigned clear of the retained model: ignored.
n0=$(grep -c "unsigned clear of the global model ignored" "$FV_TMP/pump-1.log" || true)
pub -r -t "$F/model" -n
fv_wait_for "pump-1 ignores the clear" 10 bash -c "[ \$(grep -c 'unsigned clear of the global model ignored' '$FV_TMP/pump-1.log') -gt $n0 ]" ||
	fv_fail "pump-1 did not ignore an unsigned clear of the model"
sleep 0.6 # a metrics period
[ "$(last_metric pump-1 model_version)" = 3 ] || fv_fail "pump-1 dropped its model on an unsigned clear"
echo "attacks on a keyed agent: unsigned, tampered, rogue-signed and old models all refused; still on v3"

# 6. Rollback across a restart: pump-1 stops, the retained model becomes
#    the old signed v2, pump-1 starts again and must refuse it.
[ "$(cut -d' ' -f4 "$FV_TMP/pump-1.version")" = 3 ] || fv_fail "version file: $(cat "$FV_TMP/pump-1.version")"
fv__kill_wait "${AGENT_PIDS[pump-1]}" 5
pub -r -t "$F/model" -f "$FV_TMP/v2.bin"
: >"$FV_TMP/pump-1.log"
fleet_start_agent pump-1
fv_wait_for "pump-1 refuses v2 after its restart" 10 grep -q "global model epoch [0-9]* v2 refused: older" \
	"$FV_TMP/pump-1.log" || fv_fail "pump-1 accepted a rolled-back model after a restart"
grep -q "highest model accepted so far: epoch [0-9]* v3" "$FV_TMP/pump-1.log" || fv_fail "version file not read"
! grep -q "model v2 loaded" "$FV_TMP/pump-1.log" || fv_fail "pump-1 loaded v2"
# The genuine current model is taken again (same version, none loaded).
pub -r -t "$F/model" -f "$FV_TMP/v3.bin"
fv_wait_for "pump-1 reloads v3" 10 grep -q "model v3 loaded" "$FV_TMP/pump-1.log" ||
	fv_fail "pump-1 did not take the genuine v3 after its restart"
echo "rollback after restart refused (version file at v3); genuine v3 accepted again"

# A corrupt version file stops the agent with a clear message.
fv__kill_wait "${AGENT_PIDS[pump-1]}" 5
sed -i 's/ 3 / 5 /' "$FV_TMP/pump-1.version"
if "$FV_BIN/fedvigil-agent" -c "$FV_TMP/pump-1.ini" >"$FV_TMP/corrupt.log" 2>&1; then
	fv_fail "the agent started with a corrupt version file"
fi
grep -q "sign.version_file = .* is corrupt" "$FV_TMP/corrupt.log" || fv_fail "$(cat "$FV_TMP/corrupt.log")"
# No private key material in any log.
for k in coordinator pump-1 compressor-2 motor-3 rogue; do
	secret=$(sed -n 's/^fedvigil-ed25519-secret //p' "$K/$k.key")
	! grep -rqF "$secret" "$FV_TMP"/*.log || fv_fail "the private key of $k appears in a log"
done
echo PASS
