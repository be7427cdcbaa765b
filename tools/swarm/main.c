/* fedvigil-swarm: N simulated agents against one coordinator (swarm.c), or
 * the raw transport measurement of the scale benchmark (--raw, raw.c). See
 * docs/tools.md and docs/federation.md ("Scale"). */
#include "swarm.h"

#include "cli.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "fedvigil-swarm"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " --broker URI [options]\n"
		"       " PROG " --broker URI --raw --update-bytes B --model-bytes B [options]\n"
		"Run N simulated fedvigil agents in one process, each with its own MQTT\n"
		"connection (client id, retained birth, LWT) and its own simulated machine,\n"
		"answering the coordinator's rounds as fedvigil-agent does (statistics,\n"
		"local training, compressed updates). One JSON line per round closed.\n"
		"With --raw, measure instead how long the broker takes to carry a round's\n"
		"bytes: N clients publishing --update-bytes each to one subscriber, and\n"
		"--model-bytes fanned out to the N clients (one JSON line).\n"
		"\n"
		"  -b, --broker URI         tcp://HOST[:PORT] or mqtt://HOST[:PORT] (required;\n"
		"                           no TLS)\n"
		"  -F, --fleet NAME         fleet name (default default)\n"
		"  -n, --agents N           agents, 1..20000 (default 10)\n"
		"      --id-prefix P        agent ids are P<machine> (default sw-), e.g.\n"
		"                           sw-pump-1\n"
		"  -s, --seed N             plant seed (default 1)\n"
		"      --buffer N           vectors kept per agent: its training set, 8..1000000\n"
		"                           (default 256)\n"
		"      --fresh N            new vectors per agent before each training\n"
		"                           (default 16)\n"
		"      --period-ms MS       simulated sampling period (default 1000)\n"
		"      --max-batch N        largest local mini-batch (default 256)\n"
		"      --max-connecting N   connections set up at once (default 64)\n"
		"      --burst              hold every update until each selected agent has one,\n"
		"                           then publish them all at once (N devices finishing\n"
		"                           together: the transport's worst case)\n"
		"      --burst-wait S       ... but release after S seconds (default 120)\n"
		"  -r, --rounds N           exit after N training rounds (default 0: run until\n"
		"                           SIGTERM/SIGINT)\n"
		"      --idle-timeout S     exit 1 when nothing arrives for S seconds (default 0:\n"
		"                           never)\n"
		"  -o, --output FILE        JSON lines to FILE (default stdout)\n"
		"      --raw                the transport measurement instead\n"
		"      --update-bytes B     --raw: bytes of each update\n"
		"      --model-bytes B      --raw: bytes of the model\n"
		"      --reps N             --raw: repetitions (default 3)\n"
		"      --raw-sink mux|paho  --raw: the subscriber is one of our connections\n"
		"                           (default) or a Paho client like the coordinator's\n"
		"      --username NAME      broker user name\n"
		"      --password-file F    broker password: first line of F (mode 0600)\n"
		"      --log-level L        err|warning|notice|info|debug (default notice)\n"
		"  -h, --help               show this help\n"
		"  -V, --version            show the version\n"
		"\n"
		"Exit: 0 ok, 1 error, 2 usage.\n");
}

enum {
	OPT_PREFIX = 256,
	OPT_BUFFER,
	OPT_FRESH,
	OPT_PERIOD,
	OPT_MAX_BATCH,
	OPT_MAX_CONNECTING,
	OPT_BURST,
	OPT_BURST_WAIT,
	OPT_IDLE,
	OPT_RAW,
	OPT_UPDATE_BYTES,
	OPT_MODEL_BYTES,
	OPT_REPS,
	OPT_RAW_SINK,
	OPT_USERNAME,
	OPT_PASSWORD_FILE,
	OPT_LOG_LEVEL,
};

struct args {
	struct swarm_opts so;
	struct raw_opts ro;
	bool raw;
	const char *broker;
	const char *output;
	const char *password_file;
	char host[256];
	char password[256];
	char root[FV_TOPIC_MAX];
	enum fv_log_level level;
};

/* tcp://HOST[:PORT] or mqtt://HOST[:PORT]. */
static int parse_broker(const char *uri, char *host, size_t hostlen, int *ret_port)
{
	const char *p = NULL, *colon;
	long port = 1883;
	size_t n;

	if (strncmp(uri, "tcp://", 6) == 0)
		p = uri + 6;
	else if (strncmp(uri, "mqtt://", 7) == 0)
		p = uri + 7;
	if (!p || !*p)
		return -EINVAL;
	colon = strrchr(p, ':');
	n = colon ? (size_t)(colon - p) : strlen(p);
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	if (colon) {
		char *end;

		port = strtol(colon + 1, &end, 10);
		if (*end || port < 1 || port > 65535)
			return -EINVAL;
	}
	memcpy(host, p, n);
	host[n] = '\0';
	*ret_port = (int)port;
	return 0;
}

/* 0, or an exit code (2 usage, -1 = exit 0 after --help/--version). */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
		{ "broker", required_argument, NULL, 'b' },
		{ "fleet", required_argument, NULL, 'F' },
		{ "agents", required_argument, NULL, 'n' },
		{ "id-prefix", required_argument, NULL, OPT_PREFIX },
		{ "seed", required_argument, NULL, 's' },
		{ "buffer", required_argument, NULL, OPT_BUFFER },
		{ "fresh", required_argument, NULL, OPT_FRESH },
		{ "period-ms", required_argument, NULL, OPT_PERIOD },
		{ "max-batch", required_argument, NULL, OPT_MAX_BATCH },
		{ "max-connecting", required_argument, NULL, OPT_MAX_CONNECTING },
		{ "burst", no_argument, NULL, OPT_BURST },
		{ "burst-wait", required_argument, NULL, OPT_BURST_WAIT },
		{ "rounds", required_argument, NULL, 'r' },
		{ "idle-timeout", required_argument, NULL, OPT_IDLE },
		{ "output", required_argument, NULL, 'o' },
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "update-bytes", required_argument, NULL, OPT_UPDATE_BYTES },
		{ "model-bytes", required_argument, NULL, OPT_MODEL_BYTES },
		{ "reps", required_argument, NULL, OPT_REPS },
		{ "raw-sink", required_argument, NULL, OPT_RAW_SINK },
		{ "username", required_argument, NULL, OPT_USERNAME },
		{ "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	bool have_up = false, have_model = false;
	long long v;
	double d;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":b:F:n:s:r:o:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			a->broker = optarg;
			break;
		case 'F':
			a->so.fleet = optarg;
			break;
		case 'n':
			if (fv_cli_parse_int("--agents", optarg, 1, 20000, &v) < 0)
				return 2;
			a->so.n = a->ro.n = (uint32_t)v;
			break;
		case OPT_PREFIX:
			a->so.id_prefix = a->ro.id_prefix = optarg;
			break;
		case 's':
			if (fv_cli_parse_int("--seed", optarg, 0, INT64_MAX, &v) < 0)
				return 2;
			a->so.seed = (uint64_t)v;
			break;
		case OPT_BUFFER:
			if (fv_cli_parse_int("--buffer", optarg, 8, 1000000, &v) < 0)
				return 2;
			a->so.buffer = (uint32_t)v;
			break;
		case OPT_FRESH:
			if (fv_cli_parse_int("--fresh", optarg, 0, 1000000, &v) < 0)
				return 2;
			a->so.fresh = (uint32_t)v;
			break;
		case OPT_PERIOD:
			if (fv_cli_parse_int("--period-ms", optarg, 1, 86400000, &v) < 0)
				return 2;
			a->so.period_ms = v;
			break;
		case OPT_MAX_BATCH:
			if (fv_cli_parse_int("--max-batch", optarg, 1, 4096, &v) < 0)
				return 2;
			a->so.max_batch = (uint32_t)v;
			break;
		case OPT_MAX_CONNECTING:
			if (fv_cli_parse_int("--max-connecting", optarg, 1, 10000, &v) < 0)
				return 2;
			a->so.max_connecting = (uint32_t)v;
			break;
		case OPT_BURST:
			a->so.burst = true;
			break;
		case OPT_BURST_WAIT:
			if (fv_cli_parse_num("--burst-wait", optarg, 0.1, 86400, &d) < 0)
				return 2;
			a->so.burst_wait_ms = (int64_t)(d * 1000);
			break;
		case 'r':
			if (fv_cli_parse_int("--rounds", optarg, 0, 1000000, &v) < 0)
				return 2;
			a->so.rounds = (uint32_t)v;
			break;
		case OPT_IDLE:
			if (fv_cli_parse_num("--idle-timeout", optarg, 0, 86400, &d) < 0)
				return 2;
			a->so.idle_timeout_ms = (int64_t)(d * 1000);
			break;
		case 'o':
			a->output = optarg;
			break;
		case OPT_RAW:
			a->raw = true;
			break;
		case OPT_UPDATE_BYTES:
			if (fv_cli_parse_int("--update-bytes", optarg, 1, FV_MAX_MSG_BYTES, &v) < 0)
				return 2;
			a->ro.update_bytes = (size_t)v;
			have_up = true;
			break;
		case OPT_MODEL_BYTES:
			if (fv_cli_parse_int("--model-bytes", optarg, 4, FV_MAX_MSG_BYTES, &v) < 0)
				return 2;
			a->ro.model_bytes = (size_t)v;
			have_model = true;
			break;
		case OPT_REPS:
			if (fv_cli_parse_int("--reps", optarg, 1, 1000, &v) < 0)
				return 2;
			a->ro.reps = (uint32_t)v;
			break;
		case OPT_RAW_SINK:
			if (strcmp(optarg, "paho") && strcmp(optarg, "mux"))
				return fv_cli_usage_error("--raw-sink: '%s' is not mux or paho", optarg);
			a->ro.paho_sink = strcmp(optarg, "paho") == 0;
			break;
		case OPT_USERNAME:
			a->so.username = a->ro.username = optarg;
			break;
		case OPT_PASSWORD_FILE:
			a->password_file = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (fv_log_level_parse(optarg, &a->level) < 0)
				return fv_cli_usage_error("--log-level: '%s' is not one of "
							  "err|warning|notice|info|debug", optarg);
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf(PROG " %s\n", FV_VERSION);
			return -1;
		case ':':
			return fv_cli_usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return fv_cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fv_cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!a->broker)
		return fv_cli_usage_error("--broker is required");
	if (parse_broker(a->broker, a->host, sizeof(a->host), &a->so.port) < 0)
		return fv_cli_usage_error("--broker: '%s' is not tcp://HOST[:PORT] or "
					  "mqtt://HOST[:PORT] (the swarm speaks plain MQTT only)",
					  a->broker);
	if (!fv_name_valid(a->so.fleet))
		return fv_cli_usage_error("--fleet: '%s' is not a valid name", a->so.fleet);
	if (a->raw && (!have_up || !have_model))
		return fv_cli_usage_error("--raw needs --update-bytes and --model-bytes");
	if (!a->raw && (have_up || have_model))
		return fv_cli_usage_error("--update-bytes and --model-bytes go with --raw");
	a->so.host = a->ro.host = a->host;
	a->ro.port = a->so.port;
	a->ro.uri = a->broker;
	return 0;
}

int main(int argc, char **argv)
{
	struct args a = {
		.so = { .fleet = "default", .id_prefix = "sw-", .n = 10, .seed = 1, .buffer = 256,
			.fresh = 16, .period_ms = 1000, .max_batch = 256, .max_connecting = 64,
			.burst_wait_ms = 120000 },
		.ro = { .id_prefix = "sw-", .n = 10, .reps = 3, .timeout_ms = 120000 },
		.level = FV_LOG_NOTICE,
	};
	struct sigaction sa;
	FILE *out = stdout;
	int r;

	fv_cli_init(PROG);
	r = parse_args(argc, argv, &a);
	if (r)
		return r < 0 ? 0 : r;
	fv_log_setup(a.level, PROG);
	if (a.password_file) {
		char err[600];

		if (fv_secret_read_line(a.password_file, "--password-file", a.password,
					sizeof(a.password), err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return 2;
		}
		if (!a.so.username)
			return fv_cli_usage_error("--password-file needs --username");
		a.so.password = a.ro.password = a.password;
	}
	if (a.output && !(out = fopen(a.output, "w"))) {
		fprintf(stderr, PROG ": --output %s: %s\n", a.output, strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (a.raw) {
		snprintf(a.root, sizeof(a.root), "fedvigil/v1/%s", a.so.fleet);
		a.ro.root = a.root;
		r = swarm_raw_run(&a.ro, out, &stop_signal);
	} else {
		r = swarm_run(&a.so, out, &stop_signal);
	}
	if (out != stdout)
		fclose(out);
	return r;
}
