# A deterministic fleet for integration tests that compare runs bit for
# bit (test_crash.sh, test_hostile.sh). Source after lib.sh and
# fv_broker_start. Several fleets can share the broker: each has its own
# directory $FV_TMP/<fleet> (configurations, logs, the models it published
# in models.hex, its agents' metrics).
#
# Three real fedvigil-agents per fleet first take the same ROWS rows per
# machine (fedvigil-replay; nothing arrives afterwards, so what they train
# on and send is fixed), then the coordinator runs its rounds.
#   setup FLEET [INI LINES...]   configurations (extra [round] lines;
#                                DF_ROUNDS training rounds, default 6; the
#                                broker on port DF_PORT, default
#                                FV_BROKER_PORT) and the subscribers
#   start_agents FLEET           the agents, then the rows
#   ingested FLEET               true once every agent holds them
#   coordinator FLEET [CRASH]    start it with FV_TEST_CRASH=CRASH; PID in CPID
#   digests FLEET                fv-wiretool digest of every distinct model
#                                published, sorted by version
BIN=$FV_BINARY_DIR
TOOL=$FV_BINARY_DIR/tests/fv-wiretool
dump_logs() {
	for f in "$FV_TMP"/*/*.log; do
		echo "---- ${f#"$FV_TMP"/} (last 12 lines)"
		tail -12 "$f" | cut -c1-300
	done
}
trap 'rc=$?; [ $rc -ne 0 ] && [ $rc -ne 77 ] && dump_logs; fv_cleanup; exit $rc' EXIT
AGENTS=(pump-1 compressor-2 motor-3)
ROWS=600
# One CSV per machine: three correlated channels.
for i in 0 1 2; do
	awk -v seed="$((i + 3))" -v rows="$ROWS" 'BEGIN { srand(seed)
		for (t = 0; t < rows; t++) {
			a = sin(t / 11.0) + 0.1 * (rand() - 0.5); b = cos(t / 7.0) + 0.1 * (rand() - 0.5)
			printf "%.4f,%.4f,%.4f\n", a, b, a + b + 0.05 * (rand() - 0.5)
		}
	}' > "$FV_TMP/${AGENTS[$i]}.csv"
done

setup() {
	local f=$1 d=$FV_TMP/$1 a l port=${DF_PORT:-$FV_BROKER_PORT}
	local uri=tcp://127.0.0.1:$port
	shift
	mkdir -p "$d"
	echo "$uri" > "$d/uri"
	{ cat <<-EOF
		[coordinator]
		fleet = $f
		broker = $uri
		state_dir = $d/state
		log_level = info
		[model]
		window = 4
		channels = 3
		hidden = 8,2,8
		[round]
		rounds = ${DF_ROUNDS:-6}
		min_agents = 3
		deadline_ms = 60000
		interval_ms = 200
		epochs = 2
		lr = 0.005
		min_samples = 50
	EOF
	for l in "$@"; do echo "$l"; done; } > "$d/coordinator.ini"
	for a in "${AGENTS[@]}"; do
		cat > "$d/$a.ini" <<-EOF
			[agent]
			id = $a
			fleet = $f
			broker = $uri
			log_level = info
			metrics_interval_ms = 300
			[ingest]
			clock = data
			period_ms = 1000
			max_age_ms = 3000
			buffer = 8192
			[channel.c1]
			topic = $f/$a/c1
			[channel.c2]
			topic = $f/$a/c2
			[channel.c3]
			topic = $f/$a/c3
		EOF
	done
	mosquitto_sub -h 127.0.0.1 -p "$port" -t "fedvigil/v1/$f/model" -F '%x' \
		> "$d/models.hex" 2>/dev/null &
	fv_track "$!"
	mosquitto_sub -h 127.0.0.1 -p "$port" -t "fedvigil/v1/$f/agent/+/metrics" \
		> "$d/agentmetrics.txt" 2>/dev/null &
	fv_track "$!"
}

start_agents() {
	local f=$1 d=$FV_TMP/$1 a m=()
	for a in "${AGENTS[@]}"; do
		# $d/<agent>.env: extra environment (FV_TEST_CRASH=...)
		env $(cat "$d/$a.env" 2>/dev/null) "$BIN/fedvigil-agent" -c "$d/$a.ini" >> "$d/$a.log" 2>&1 &
		fv_track "$!"
		echo "$!" > "$d/$a.pid"
		m+=(--machine "$a=$FV_TMP/$a.csv")
	done
	fv_wait_for "$f agents online" 20 bash -c \
		"[ \$(grep -l 'connected to' '$d'/*.log 2>/dev/null | wc -l) -ge ${#AGENTS[@]} ]" ||
		fv_fail "$f: agents did not connect"
	"$BIN/fedvigil-replay" --broker "$(cat "$d/uri")" --prefix "$f" "${m[@]}" --header no \
		--period-ms 1000 --rate 0 -q > "$d/replay.log" 2>&1 || fv_fail "$f: replay failed"
}

# The last row's vector completes only with a later reading: ROWS-1.
ingested() {
	local d=$FV_TMP/$1 a v
	for a in "${AGENTS[@]}"; do
		v=$(grep "\"agent\":\"$a\"" "$d/agentmetrics.txt" | tail -1 |
			sed -n 's/.*"vectors":\([0-9]*\).*/\1/p')
		[ "${v:-0}" -ge $((ROWS - 1)) ] || return 1
	done
}

coordinator() {
	local d=$FV_TMP/$1
	if [ -n "${2:-}" ]; then
		FV_TEST_CRASH=$2 "$BIN/fedvigil-coordinator" -c "$d/coordinator.ini" >> "$d/coordinator.log" 2>&1 &
	else
		"$BIN/fedvigil-coordinator" -c "$d/coordinator.ini" >> "$d/coordinator.log" 2>&1 &
	fi
	CPID=$!
	fv_track "$CPID"
}

digests() {
	local d=$FV_TMP/$1 n=0 line
	while read -r line; do
		[ -n "$line" ] || continue
		n=$((n + 1))
		printf '%s' "$line" | tr a-f A-F | basenc --base16 -d > "$d/m$n.bin"
		"$TOOL" digest "$d/m$n.bin" || fv_fail "$1: model $n does not decode"
	done < "$d/models.hex" | sort -uV
}
