#!/usr/bin/env bash
# Hostile clients (issue 8): 2 of 10 agents are compromised. Several fleets
# run side by side on one real Mosquitto and watch the same plant simulator
# (10 machines): in each, 8 honest fedvigil-agent processes (machines 1-8)
# and, in the attacked fleets, 2 fedvigil-adversary processes (machines
# 9-10: the agent's own code, trained honestly, rewriting every training
# update just before sending it). Each fleet has its own coordinator and
# aggregation rule. The simulator publishes a normal phase, pauses while
# every fleet trains, then publishes the faulty phase, which every honest
# agent scores with its fleet's final model. Per fleet: per-point F1 of the
# honest agents' alerts against the simulator's truth (fedvigil-score
# --points), the final model's distance to the clean fleet's, the last
# round's loss.
#
# Asserts (attack flip:10, both adversaries send their update x -10): every
# hostile update was accepted (well-formed: nothing rejected, the
# adversaries' updates counted in every round); median, trimmed mean and
# multi-Krum stay within 0.05 of the clean fleet's F1 (8 honest agents, no
# adversary, FedAvg), FedAvg with clip_ratio 2 and sample_cap 1 within 0.12
# and Krum within 0.12, Krum and multi-Krum never take an adversary's
# update; FedAvg with its defaults falls more than 0.3 below the clean F1
# and its loss to over 10x. The measured table and its reproduction:
# docs/reliability.md, "Hostile clients". By default 5 fleets (clean,
# fedavg, median, multi_krum, fedavg_clip; 48 agent processes, ~45 s);
# scripts/byzantine-results runs all 8. Labelled `once` (too heavy under
# ASan); test_byzantine_krum.sh is the light check of the sanitizer pass.
#
# Environment: FV_BYZ_ATTACK (fedvigil-adversary --attack specs, space
# separated; default "flip:10"), FV_BYZ_FLEETS (names from the table below;
# default clean fedavg median multi_krum fedavg_clip), FV_BYZ_ROUNDS (10), FV_BYZ_SEED (simulator
# seed, 3), FV_BYZ_NOASSERT=1 (measure only, for other attacks:
# scripts/byzantine-results), FV_BYZ_TABLE (append the result rows to this
# file).
set -euo pipefail
source "$FV_SOURCE_DIR/tests/integration/lib.sh"
source "$FV_SOURCE_DIR/tests/integration/fleet.sh"
fv_tmpdir
# Many subscribers behind one fast publisher: let the broker queue what an
# agent has not read yet instead of dropping it (the agents' ingest checks
# below would time out on a loss).
port=$(fv_free_port)
cat >"$FV_TMP/broker.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
log_dest stderr
EOF
fv_broker_start_conf "$FV_TMP/broker.conf" "$port"
FV_BROKER_URI="tcp://127.0.0.1:$port"
trap 'rc=$?; set +e; [ $rc -ne 0 ] && [ $rc -ne 77 ] && byz_dump; fv_cleanup; exit $rc' EXIT

attack=${FV_BYZ_ATTACK:-flip:10}
seed=${FV_BYZ_SEED:-3}
rounds=${FV_BYZ_ROUNDS:-10}
margin=0.05      # median, trimmed mean, multi-Krum vs clean: F1 at most this much lower
margin_clip=0.12 # FedAvg + clip_ratio 2 + sample_cap 1 (a flipped direction is not clipped away)
margin_krum=0.12 # Krum (follows one agent per round: 0.05 below clean, unattacked)
drop=0.3         # FedAvg with its defaults vs clean: F1 more than this much lower
pause=${FV_BYZ_PAUSE:-400}      # normal phase: simulated seconds before the rounds
duration=${FV_BYZ_DURATION:-900} # then the faulty phase until here
speed=${FV_BYZ_SPEED:-0}         # simulated seconds per real second (0: as fast as the broker acks)

chans=(vibration temperature pressure flow current)
types=(pump compressor motor)
machines=()
for i in $(seq 1 10); do machines+=("${types[$(((i - 1) % 3))]}-$i"); done
honest=("${machines[@]:0:8}")
hostile=("${machines[@]:8:2}")

# name | [aggregation] keys (';'-separated) | attacked
all_fleets=(
	"clean|algorithm = fedavg|0"
	"fedavg|algorithm = fedavg|1"
	"fedavg_plain|algorithm = fedavg;clip_ratio = 0;sample_cap = 0|1"
	"median|algorithm = median|1"
	"trimmed_mean|algorithm = trimmed_mean;trim_beta = 0.2|1"
	"krum|algorithm = krum;krum_f = 2|1"
	"multi_krum|algorithm = multi_krum;krum_f = 2|1"
	"fedavg_clip|algorithm = fedavg;clip_ratio = 2;sample_cap = 1|1"
)
want=${FV_BYZ_FLEETS:-clean fedavg median multi_krum fedavg_clip}
fleets=()
for spec in "${all_fleets[@]}"; do
	for w in $want; do [ "${spec%%|*}" = "$w" ] && fleets+=("$spec"); done
done
[ "${#fleets[@]}" -ge 1 ] || fv_fail "FV_BYZ_FLEETS='$want' names no fleet"

say() { echo "byzantine: [$SECONDS s] $*"; }

byz_dump() {
	for f in "$FV_TMP"/*/coordinator.log "$FV_TMP"/*/"${hostile[0]}".log "$FV_TMP"/sim.log; do
		[ -f "$f" ] || continue
		echo "---- ${f#"$FV_TMP"/} (last 8 lines)"
		tail -8 "$f" | cut -c1-300
	done
}

write_coordinator() { # FLEET N_AGENTS AGG_KEYS
	local dir=$FV_TMP/$1
	{
		echo "[coordinator]"
		echo "fleet = $1"
		echo "broker = $FV_BROKER_URI"
		echo "state_dir = $dir/state"
		echo "log_level = info"
		echo "[model]"
		echo "window = 10"
		echo "channels = 5"
		echo "hidden = 32,8,32"
		echo "[round]"
		echo "rounds = $rounds"
		echo "min_agents = $2"
		echo "quorum = 1.0"
		echo "deadline_ms = 60000"
		echo "interval_ms = 200"
		echo "epochs = 3"
		echo "lr = 0.002"
		echo "min_samples = 150"
		echo "[threshold]"
		echo "percentile = 99.5"
		echo "margin = 3"
		echo "[aggregation]"
		tr ';' '\n' <<<"$3"
	} >"$dir/coordinator.ini"
}

write_agent() { # FLEET ID
	local dir=$FV_TMP/$1 c
	{
		echo "[agent]"
		echo "id = $2"
		echo "fleet = $1"
		echo "broker = $FV_BROKER_URI"
		echo "log_level = info"
		echo "metrics_interval_ms = 500"
		echo "score_log = $dir/$2.scores.csv"
		echo "[ingest]"
		echo "clock = data"
		echo "period_ms = 1000"
		echo "max_age_ms = 3000"
		echo "buffer = 8192"
		for c in "${chans[@]}"; do
			echo "[channel.$c]"
			echo "topic = plant/$2/$c"
		done
	} >"$dir/$2.ini"
}

# --- the fleets' agents and adversaries ---
n_proc=0
declare -A COORD
for spec in "${fleets[@]}"; do
	IFS='|' read -r name agg attacked <<<"$spec"
	mkdir -p "$FV_TMP/$name"
	n=${#honest[@]}
	[ "$attacked" = 1 ] && n=$((n + ${#hostile[@]}))
	write_coordinator "$name" "$n" "$agg"
	for m in "${honest[@]}"; do
		write_agent "$name" "$m"
		"$FV_BIN/fedvigil-agent" -c "$FV_TMP/$name/$m.ini" >>"$FV_TMP/$name/$m.log" 2>&1 &
		fv_track $!
		n_proc=$((n_proc + 1))
	done
	if [ "$attacked" = 1 ]; then
		atk_args=()
		for a in $attack; do atk_args+=(--attack "$a"); done
		for m in "${hostile[@]}"; do
			write_agent "$name" "$m"
			"$FV_BIN/fedvigil-adversary" -c "$FV_TMP/$name/$m.ini" "${atk_args[@]}" \
				--seed "$((seed * 31 + ${m##*-}))" >>"$FV_TMP/$name/$m.log" 2>&1 &
			fv_track $!
			n_proc=$((n_proc + 1))
		done
	fi
done
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -v -t 'fedvigil/v1/+/coord/metrics' \
	>"$FV_TMP/metrics.log" 2>/dev/null &
fv_track $!
mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t 'fedvigil/v1/+/agent/+/metrics' \
	>"$FV_TMP/agentmetrics.log" 2>/dev/null &
fv_track $!

online() {
	[ "$(mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t 'fedvigil/v1/+/agent/+/state' \
		--retained-only -W 1 2>/dev/null | grep -c '"online"')" -ge "$n_proc" ]
}
fv_wait_for "$n_proc agents online" 60 online || fv_fail "not every agent came online"
say "${#fleets[@]} fleets, $n_proc agent processes online; attack: $attack"

# --- normal phase, then the rounds while the simulator holds ---
"$FV_BIN/fedvigil-sim" --broker "$FV_BROKER_URI" --prefix plant --machines 10 --period-ms 1000 \
	--speed "$speed" --duration "$duration" --normal "$pause" --pause-at "$pause" --faults 2 \
	--seed "$seed" --truth "$FV_TMP/truth.csv" --start 2026-01-01T00:00:00Z -q \
	>"$FV_TMP/sim.log" 2>&1 &
SIM_PID=$!
fv_track "$SIM_PID"
fv_wait_for "the simulator's pause" 120 grep -q 'sim: paused' "$FV_TMP/sim.log" ||
	fv_fail "the simulator did not reach its pause"
say "normal phase published"

# The newest metrics line of every agent: "fleet/agent vectors incomplete
# mqtt_dropped model_version", one line each.
agent_state() {
	tail -n $((n_proc * 4)) "$FV_TMP/agentmetrics.log" | awk '
		{ a = $0; sub(/.*"agent":"/, "", a); sub(/".*/, "", a)
		  f = $0; sub(/.*"fleet":"/, "", f); sub(/".*/, "", f)
		  v = $0; sub(/.*"vectors":/, "", v); sub(/,.*/, "", v)
		  i = $0; sub(/.*"incomplete":/, "", i); sub(/,.*/, "", i)
		  d = $0; sub(/.*"mqtt_dropped":/, "", d); sub(/,.*/, "", d)
		  m = $0; sub(/.*"model_version":/, "", m); sub(/,.*/, "", m)
		  st[f "/" a] = v " " i " " d " " m }
		END { for (k in st) print k, st[k] }'
}
# Wait until every agent has formed (or lost) WANT vectors; fail naming the
# ones that have not, and if any reading was lost.
wait_vectors() { # WANT WHAT
	local want=$1 what=$2 t=0
	while :; do
		if [ "$(agent_state | awk -v w="$want" '$2 + $3 >= w' | wc -l)" -ge "$n_proc" ]; then
			break
		fi
		t=$((t + 1))
		if [ $t -gt 600 ]; then
			agent_state | awk -v w="$want" '$2 + $3 < w' | head -5 >&2
			fv_fail "not every agent ingested $what within 120 s (fleet/agent vectors incomplete dropped model)"
		fi
		sleep 0.2
	done
	agent_state | awk '$3 > 0 || $4 > 0 { bad = bad " " $0 } END { if (bad != "") {
		print "readings lost:" bad > "/dev/stderr"; exit 1 } }' ||
		fv_fail "agents lost readings during $what"
}
# Every agent has the whole normal phase in its buffer (the vector of the
# last tick is formed when the next reading arrives).
wait_vectors $((pause - 2)) "the normal phase"
say "normal phase ingested by every agent"

t0=$SECONDS
for spec in "${fleets[@]}"; do
	name=${spec%%|*}
	"$FV_BIN/fedvigil-coordinator" -c "$FV_TMP/$name/coordinator.ini" \
		>>"$FV_TMP/$name/coordinator.log" 2>&1 &
	COORD[$name]=$!
	fv_track $!
done
trained() {
	local spec
	for spec in "${fleets[@]}"; do
		[ "$(grep -c "^fedvigil/v1/${spec%%|*}/coord/metrics .*\"kind\":\"train\"" \
			"$FV_TMP/metrics.log")" -ge "$rounds" ] || return 1
	done
}
fv_wait_for "$rounds training rounds in every fleet" 240 trained ||
	fv_fail "not every fleet finished its rounds"
say "$rounds rounds done in every fleet ($((SECONDS - t0)) s)"
# The agents hold their fleet's final model before the faults begin.
synced() { [ "$(agent_state | awk -v w=$((rounds + 1)) '$5 >= w' | wc -l)" -ge "$n_proc" ]; }
fv_wait_for "every agent on the final model" 60 synced || fv_fail "agents did not get the final model"

# --- faulty phase ---
kill -USR1 "$SIM_PID"
wait "$SIM_PID" || fv_fail "simulator failed"
say "faulty phase published"
wait_vectors $((duration - 2)) "the faulty phase"
say "faulty phase scored by every agent"

# --- per fleet: F1, model distance, loss ---
# Labels per honest machine, one per second of the faulty phase.
for m in "${honest[@]}"; do
	awk -F, -v m="$m" -v t0=1767225600000 -v p=$pause -v d=$duration '
		NR > 1 && $1 == m { s[++n] = $4; e[n] = $5 }
		END { for (k = p; k < d; k++) { t = t0 + k * 1000; y = 0
			for (i = 1; i <= n; i++) if (t >= s[i] && t <= e[i]) y = 1
			print y } }' "$FV_TMP/truth.csv" >"$FV_TMP/$m.labels"
done
[ "$(cat "$FV_TMP"/*.labels | grep -c 1)" -gt 0 ] || fv_fail "no fault in the faulty phase"

declare -A F1 LOSS
rows=()
for spec in "${fleets[@]}"; do
	IFS='|' read -r name agg attacked <<<"$spec"
	pts=()
	for m in "${honest[@]}"; do pts+=(--points "$FV_TMP/$name/$m.scores.csv:$FV_TMP/$m.labels"); done
	score=$("$FV_BIN/fedvigil-score" "${pts[@]}" --start 2026-01-01T00:00:00Z --period-ms 1000 \
		--row-offset "$pause" | tail -1)
	f1=$(sed -n 's/.*f1=\([0-9.]*\).*/\1/p' <<<"$score")
	prec=$(sed -n 's/.*precision=\([0-9.]*\).*/\1/p' <<<"$score")
	rec=$(sed -n 's/.*recall=\([0-9.]*\).*/\1/p' <<<"$score")
	fpr=$(sed -n 's/.*fpr=\([0-9.]*\).*/\1/p' <<<"$score")
	[ -n "$f1" ] || fv_fail "$name: no F1 from fedvigil-score: $score"
	F1[$name]=$f1
	mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -t "fedvigil/v1/$name/model" -C 1 -N -W 5 \
		>"$FV_TMP/$name/model.pb"
	last=$(grep "^fedvigil/v1/$name/coord/metrics .*\"kind\":\"train\"" "$FV_TMP/metrics.log" | tail -1)
	loss=$(json_field loss "$last")
	LOSS[$name]=$loss
	thr=$(json_field threshold "$last")
	# Everything the adversaries sent was accepted: no rejection of any kind.
	rej=$(sed -n 's/.*"rejected":{\([^}]*\)}.*/\1/p' <<<"$last" | tr ',' '\n' | awk -F: '{ s += $2 } END { print s + 0 }')
	[ "$rej" = 0 ] || fv_fail "$name: the coordinator rejected $rej updates: $last"
	if [ "$attacked" = 1 ]; then
		for m in "${hostile[@]}"; do
			n=$(grep -c "update from $m for round [0-9]* accepted" "$FV_TMP/$name/coordinator.log" || true)
			# the statistics round and every training round
			[ "$n" -ge $((rounds + 1)) ] || fv_fail "$name: only $n updates of $m accepted"
			n=$(grep -c "sending " "$FV_TMP/$name/$m.log" || true)
			[ "$n" -ge "$rounds" ] || fv_fail "$name: $m rewrote only $n updates"
		done
	fi
	rows+=("$name|$agg|$attacked|$f1|$prec|$rec|$fpr|$loss|$thr")
done
clean_model=$FV_TMP/clean/model.pb
printf '%-13s %-6s %-6s %-6s %-6s %-10s %-10s %-10s %s\n' fleet f1 prec recall fpr loss threshold dist norm
for r in "${rows[@]}"; do
	IFS='|' read -r name agg attacked f1 prec rec fpr loss thr <<<"$r"
	dist=- norm=-
	if [ -s "$FV_TMP/$name/model.pb" ]; then
		if [ -s "$clean_model" ]; then
			md=$("$FV_BINARY_DIR/tests/fv-model-dist" "$FV_TMP/$name/model.pb" "$clean_model")
			dist=$(sed -n 's/.*dist=\([^ ]*\).*/\1/p' <<<"$md")
		else
			md=$("$FV_BINARY_DIR/tests/fv-model-dist" "$FV_TMP/$name/model.pb")
		fi
		norm=$(sed -n 's/.*norm=\([^ ]*\).*/\1/p' <<<"$md")
	fi
	printf '%-13s %-6s %-6s %-6s %-6s %-10s %-10s %-10s %s\n' "$name" "$f1" "$prec" "$rec" "$fpr" \
		"$loss" "$thr" "$dist" "$norm"
	if [ -n "${FV_BYZ_TABLE:-}" ]; then
		echo "$attack|$r|$dist|$norm" >>"$FV_BYZ_TABLE"
	fi
done

[ "${FV_BYZ_NOASSERT:-0}" = 1 ] && { echo "PASS (measured only)"; exit 0; }
[ -n "${F1[clean]:-}" ] || fv_fail "the assertions need the clean fleet"
clean=${F1[clean]}
awk -v c="$clean" 'BEGIN { exit !(c >= 0.4) }' ||
	fv_fail "the clean fleet's F1 $clean is too low to compare against (measured 0.715)"
# Floors from the measured table (docs/reliability.md, flip:10: clean 0.715,
# fedavg 0.000 with a loss of 67 against 0.021, median 0.669, trimmed mean
# 0.685, multi-Krum 0.773, FedAvg + clip_ratio 2 0.669, Krum 0.685).
for spec in "${fleets[@]}"; do
	IFS='|' read -r name agg attacked <<<"$spec"
	f1=${F1[$name]}
	case $name in
	clean) continue ;;
	fedavg | fedavg_plain)
		awk -v c="$clean" -v f="$f1" -v d="$drop" 'BEGIN { exit !(f < c - d) }' ||
			fv_fail "$name under attack: F1 $f1 is not more than $drop below the clean $clean"
		awk -v c="${LOSS[clean]}" -v l="${LOSS[$name]}" 'BEGIN { exit !(l > 10 * c) }' ||
			fv_fail "$name under attack: loss ${LOSS[$name]} is not 10x the clean ${LOSS[clean]}"
		say "$name under attack: F1 $f1 vs clean $clean (more than $drop lower), loss ${LOSS[$name]} vs ${LOSS[clean]}"
		continue
		;;
	krum) m=$margin_krum ;;
	fedavg_clip) m=$margin_clip ;;
	*) m=$margin ;;
	esac
	awk -v c="$clean" -v f="$f1" -v d="$m" 'BEGIN { exit !(f >= c - d) }' ||
		fv_fail "$name under attack: F1 $f1 is more than $m below the clean $clean"
	say "$name under attack: F1 $f1 vs clean $clean (at most $m lower)"
done
# Krum and multi-Krum never let an adversary's update in.
for name in krum multi_krum; do
	[ -f "$FV_TMP/$name/coordinator.log" ] || continue
	for r in $(seq 1 "$rounds"); do
		l=$(sed -n "s/.*round $r: $name left out [0-9]* of 10 updates: //p" "$FV_TMP/$name/coordinator.log")
		for m in "${hostile[@]}"; do
			grep -qw -- "$m" <<<"${l//,/ }" || fv_fail "$name took $m's update in round $r (left out: $l)"
		done
	done
done
echo "PASS"
