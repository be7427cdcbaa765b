# Helpers to run a fedvigil fleet in integration tests: config files, the
# coordinator and agents as real processes, and reading their MQTT output.
# Source after lib.sh (needs FV_TMP, FV_BROKER_PORT, fv_track, fv_fail).

FV_BIN=${FV_BINARY_DIR:-$FV_SOURCE_DIR/build}
FV_FLEET=${FV_FLEET:-itest}

# fleet_write_coordinator ROUNDS MIN_AGENTS CHANNELS [extra INI lines...]
fleet_write_coordinator() {
	local rounds=$1 min_agents=$2 channels=$3
	shift 3
	{
		echo "[coordinator]"
		echo "fleet = $FV_FLEET"
		echo "broker = tcp://127.0.0.1:$FV_BROKER_PORT"
		echo "state_dir = $FV_TMP/state"
		echo "log_level = info"
		echo "[model]"
		echo "window = 10"
		echo "channels = $channels"
		echo "hidden = 32,8,32"
		echo "[round]"
		echo "rounds = $rounds"
		echo "min_agents = $min_agents"
		echo "deadline_ms = 20000"
		echo "interval_ms = ${FV_ROUND_INTERVAL_MS:-4500}"
		echo "epochs = 3"
		echo "lr = 0.002"
		echo "min_samples = 150"
		echo "[threshold]"
		echo "percentile = 99.5"
		echo "margin = 3"
		for l in "$@"; do echo "$l"; done
	} > "$FV_TMP/coordinator.ini"
}

# fleet_write_agent ID PREFIX PERIOD_MS CHANNEL...
fleet_write_agent() {
	local id=$1 prefix=$2 period=$3
	shift 3
	{
		echo "[agent]"
		echo "id = $id"
		echo "fleet = $FV_FLEET"
		echo "broker = tcp://127.0.0.1:$FV_BROKER_PORT"
		echo "log_level = info"
		echo "metrics_interval_ms = 500"
		echo "score_log = $FV_TMP/$id.scores.csv"
		echo "[ingest]"
		echo "clock = data"
		echo "period_ms = $period"
		echo "max_age_ms = $((period * 3))"
		echo "buffer = 8192"
		for c in "$@"; do
			echo "[channel.$c]"
			echo "topic = $prefix/$id/$c"
		done
	} > "$FV_TMP/$id.ini"
}

# fleet_start_coordinator: starts it, sets COORD_PID.
fleet_start_coordinator() {
	"$FV_BIN/fedvigil-coordinator" -c "$FV_TMP/coordinator.ini" "$@" >>"$FV_TMP/coordinator.log" 2>&1 &
	COORD_PID=$!
	fv_track "$COORD_PID"
}

# fleet_start_agent ID: starts it; its PID goes to AGENT_PIDS[ID].
declare -A AGENT_PIDS
fleet_start_agent() {
	"$FV_BIN/fedvigil-agent" -c "$FV_TMP/$1.ini" >>"$FV_TMP/$1.log" 2>&1 &
	AGENT_PIDS[$1]=$!
	fv_track "$!"
}

# fleet_sub NAME TOPIC: record a topic's messages (-v) into $FV_TMP/NAME.log.
fleet_sub() {
	mosquitto_sub -h 127.0.0.1 -p "$FV_BROKER_PORT" -v -t "$2" >"$FV_TMP/$1.log" 2>/dev/null &
	fv_track "$!"
}

# Number of training rounds closed so far (from coord/metrics).
fleet_train_rounds() { grep -c '"kind":"train"' "$FV_TMP/metrics.log" 2>/dev/null || true; }

# json_field NAME LINE: the value of a numeric JSON field in a line.
json_field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"; }

# Show the tail of every log when a test fails.
fleet_dump_logs() {
	for f in "$FV_TMP"/*.log; do
		echo "---- $(basename "$f") (last 15 lines)"
		tail -15 "$f" | cut -c1-300
	done
}
