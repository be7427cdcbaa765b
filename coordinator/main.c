/* fedvigil-coordinator: command line, configuration, main loop.
 *
 * Runs federated rounds for one fleet over MQTT (coord.c). Everything runs on
 * this thread: poll() waits on the MQTT client's eventfd with a timeout up to
 * the next round timer (at most 200 ms); SIGTERM/SIGINT set a flag checked on
 * every iteration (no SA_RESTART, so poll() returns at once). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/version.h"

#define PROG "fedvigil-coordinator"
#define POLL_MAX_MS 200
/* Events handled per loop iteration, so timers run even under a flood. */
#define DRAIN_MAX 256

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: " PROG " [OPTIONS]\n"
		"Run federated training rounds for a fleet of fedvigil agents over MQTT.\n"
		"\n"
		"  -c, --config FILE        INI configuration file (keys below)\n"
		"      --broker URL         = --set coordinator.broker=URL\n"
		"      --fleet NAME         = --set coordinator.fleet=NAME\n"
		"      --id NAME            = --set coordinator.id=NAME\n"
		"      --state-dir DIR      = --set coordinator.state_dir=DIR\n"
		"      --log-level LEVEL    = --set coordinator.log_level=LEVEL\n"
		"      --rounds N           = --set round.rounds=N\n"
		"      --set SECTION.KEY=VALUE  set any key (repeatable)\n"
		"      --dump-config        print the effective configuration and exit\n"
		"      --check-config       validate the configuration and exit\n"
		"      --reset              ignore the state file and start over from the\n"
		"                           statistics round (the file is overwritten at\n"
		"                           the first close)\n"
		"  -h, --help               show this help and exit\n"
		"  -V, --version            show the version and exit\n"
		"\n"
		"Precedence: defaults < config file < command line, in command-line order.\n"
		"Exit status: 0 ok, 1 runtime failure (e.g. corrupt state file), 2 bad\n"
		"command line or configuration.\n"
		"\n"
		"Configuration keys:\n");
	fv_cfg_print_help(coord_cfg_keys, coord_cfg_nkeys, out);
}

enum {
	OPT_BROKER = 0x100,
	OPT_FLEET,
	OPT_ID,
	OPT_STATE_DIR,
	OPT_LOG_LEVEL,
	OPT_ROUNDS,
	OPT_SET,
	OPT_DUMP,
	OPT_CHECK,
	OPT_RESET,
};

/* One command-line override, applied after the file. */
struct override {
	const char *key;   /* "section.name", or NULL: split value at '=' */
	const char *value; /* borrowed from argv */
};

struct args {
	const char *config;      /* -c FILE, or NULL */
	struct override *ovr;    /* argc entries at most */
	int n_ovr;
	bool dump, check, reset;
};

/* Returns -1 to continue, or an exit code. */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "broker", required_argument, NULL, OPT_BROKER },
		{ "fleet", required_argument, NULL, OPT_FLEET },
		{ "id", required_argument, NULL, OPT_ID },
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "rounds", required_argument, NULL, OPT_ROUNDS },
		{ "set", required_argument, NULL, OPT_SET },
		{ "dump-config", no_argument, NULL, OPT_DUMP },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "reset", no_argument, NULL, OPT_RESET },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		const char *key = NULL;

		switch (c) {
		case 'c':
			a->config = optarg;
			continue;
		case 'h':
			usage(stdout);
			return COORD_EXIT_OK;
		case 'V':
			printf(PROG " " FV_VERSION "\n");
			return COORD_EXIT_OK;
		case OPT_DUMP:
			a->dump = true;
			continue;
		case OPT_CHECK:
			a->check = true;
			continue;
		case OPT_RESET:
			a->reset = true;
			continue;
		case OPT_BROKER: key = "coordinator.broker"; break;
		case OPT_FLEET: key = "coordinator.fleet"; break;
		case OPT_ID: key = "coordinator.id"; break;
		case OPT_STATE_DIR: key = "coordinator.state_dir"; break;
		case OPT_LOG_LEVEL: key = "coordinator.log_level"; break;
		case OPT_ROUNDS: key = "round.rounds"; break;
		case OPT_SET: key = NULL; break;
		default:
			fprintf(stderr, "Try '" PROG " --help'.\n");
			return COORD_EXIT_CONFIG;
		}
		a->ovr[a->n_ovr].key = key;
		a->ovr[a->n_ovr].value = optarg;
		a->n_ovr++;
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\nTry '" PROG " --help'.\n",
			argv[optind]);
		return COORD_EXIT_CONFIG;
	}
	return -1;
}

/* defaults < file < command line. Returns 0 or an exit code (message
 * printed). */
static int build_config(const struct args *a, struct coord_config *cfg)
{
	char err[512];
	int r;

	r = coord_config_defaults(cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": internal error in defaults: %s\n", err);
		return COORD_EXIT_FAIL;
	}
	if (a->config) {
		r = fv_cfg_load(coord_cfg_keys, coord_cfg_nkeys, cfg, a->config, NULL, NULL, err,
				sizeof(err));
		if (r < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return COORD_EXIT_CONFIG;
		}
	}
	for (int i = 0; i < a->n_ovr; i++) {
		const struct override *o = &a->ovr[i];
		char key[128];
		const char *value = o->value;

		if (o->key) {
			fv_strlcpy(key, o->key, sizeof(key));
		} else {
			const char *eq = strchr(o->value, '=');

			if (!eq || eq == o->value || (size_t)(eq - o->value) >= sizeof(key)) {
				fprintf(stderr,
					PROG ": --set '%s': expected SECTION.KEY=VALUE\n",
					o->value);
				return COORD_EXIT_CONFIG;
			}
			memcpy(key, o->value, (size_t)(eq - o->value));
			key[eq - o->value] = '\0';
			value = eq + 1;
		}
		r = fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, cfg, key, value, err,
			       sizeof(err));
		if (r < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			return COORD_EXIT_CONFIG;
		}
	}
	r = coord_config_finish(cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": %s%s%s\n", a->config ? a->config : "", a->config ? ": " : "",
			err);
		return COORD_EXIT_CONFIG;
	}
	return 0;
}

static void drain(struct fv_mqtt *m, struct coord *co)
{
	for (int i = 0; i < DRAIN_MAX; i++) {
		struct fv_mqtt_msg msg;
		enum fv_mqtt_event ev;

		memset(&msg, 0, sizeof(msg));
		ev = fv_mqtt_next(m, &msg);
		switch (ev) {
		case FV_MQTT_EV_NONE:
			return;
		case FV_MQTT_EV_CONNECTED:
			/* the mqtt layer logs the connection itself */
			coord_on_connected(co);
			break;
		case FV_MQTT_EV_LOST: /* logged by the mqtt layer; it reconnects */
			break;
		case FV_MQTT_EV_MESSAGE:
			coord_on_message(co, msg.topic, msg.payload, msg.len);
			fv_mqtt_msg_clear(&msg);
			break;
		}
	}
}

static int run(const struct coord_config *cfg, bool reset)
{
	struct fv_mqtt_opts mo;
	struct fv_mqtt *m = NULL;
	struct coord *co = NULL;
	char f_states[FV_TOPIC_MAX], f_updates[FV_TOPIC_MAX], will[FV_TOPIC_MAX];
	const char *offline = coord_offline_payload();
	struct sigaction sa;
	int r, ret = COORD_EXIT_FAIL;

	/* The LWT topic is known before the coordinator exists. */
	if (!fv_topic_coord(will, cfg->fleet, "state")) {
		fv_log(FV_LOG_ERR, "fleet name '%s' makes topics too long", cfg->fleet);
		return COORD_EXIT_CONFIG;
	}
	char client_id[160];

	memset(&mo, 0, sizeof(mo));
	mo.uri = cfg->broker;
	/* Unique per fleet: two fleets may share a broker. */
	snprintf(client_id, sizeof(client_id), "fedvigil-coord-%s-%s", cfg->fleet, cfg->id);
	mo.client_id = client_id;
	mo.username = cfg->username[0] ? cfg->username : NULL;
	mo.password = cfg->password[0] ? cfg->password : NULL;
	fv_mqtt_tls_apply(&cfg->tls, &mo);
	mo.will_topic = will;
	mo.will_payload = offline;
	mo.will_len = strlen(offline);
	mo.will_qos = 1;
	mo.will_retain = true;
	m = fv_mqtt_new(&mo);
	if (!m)
		return COORD_EXIT_FAIL;
	co = coord_new(cfg, m, reset);
	if (!co)
		goto out;
	if (coord_filters(co, f_states, f_updates) < 0) {
		fv_log(FV_LOG_ERR, "fleet name '%s' makes topics too long", cfg->fleet);
		goto out;
	}
	if ((r = fv_mqtt_subscribe(m, f_states, 1)) < 0 ||
	    (r = fv_mqtt_subscribe(m, f_updates, 1)) < 0) {
		fv_log(FV_LOG_ERR, "cannot subscribe: %s", fv_strerror(r));
		goto out;
	}
	r = fv_mqtt_start(m);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot start MQTT client for %s: %s", cfg->broker,
		       fv_strerror(r));
		goto out;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: poll() must return on a signal */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	fv_log(FV_LOG_NOTICE, PROG " %s started: fleet %s, id %s, broker %s, state %s",
	       FV_VERSION, cfg->fleet, cfg->id, cfg->broker, cfg->state_dir);
	{
		char shape[160];

		fv_model_spec_format(&cfg->spec, shape, sizeof(shape));
		fv_log(FV_LOG_NOTICE,
		       "model: preset %s, layers %s (%zu parameters), dropout %g, noise %g; "
		       "local training: %s, lr %g",
		       fv_preset_name((enum fv_preset)cfg->preset), shape,
		       fv_model_spec_nparams(&cfg->spec),
		       cfg->spec.n_layers > 1 ? (double)cfg->spec.dropout[0] : 0.0,
		       (double)cfg->spec.noise, fv_optim_name((enum fv_optim)cfg->optimizer),
		       cfg->lr);
		if (cfg->preset_nominal && cfg->preset_nominal != cfg->spec.sizes[0])
			fv_log(FV_LOG_NOTICE,
			       "preset %s is published for %u inputs; window*channels = %u, so "
			       "its input and output layers are %u wide",
			       fv_preset_name((enum fv_preset)cfg->preset), cfg->preset_nominal,
			       cfg->spec.sizes[0], cfg->spec.sizes[0]);
	}
	while (!stop_signal) {
		struct pollfd p = { .fd = fv_mqtt_fd(m), .events = POLLIN };
		int timeout = coord_tick(co, fv_now_mono_ms(), POLL_MAX_MS);

		if (stop_signal)
			break;
		r = poll(&p, 1, timeout);
		if (r < 0 && errno != EINTR) {
			fv_log(FV_LOG_ERR, "poll: %s", fv_strerror(-errno));
			goto out;
		}
		if (r > 0)
			drain(m, co);
	}
	fv_log(FV_LOG_NOTICE, "signal %d: stopping", (int)stop_signal);
	coord_publish_offline(co);
	fv_mqtt_disconnect(m, 2000);
	ret = COORD_EXIT_OK;
out:
	coord_free(co);
	fv_mqtt_free(m, 1000);
	if (ret == COORD_EXIT_OK)
		fv_log(FV_LOG_NOTICE, "stopped");
	return ret;
}

int main(int argc, char **argv)
{
	struct coord_config cfg;
	struct args a;
	int r;

	memset(&a, 0, sizeof(a));
	a.ovr = calloc((size_t)argc + 1, sizeof(*a.ovr));
	if (!a.ovr)
		return COORD_EXIT_FAIL;
	r = parse_args(argc, argv, &a);
	if (r >= 0) { /* --help, --version or a usage error */
		free(a.ovr);
		return r;
	}
	r = build_config(&a, &cfg);
	free(a.ovr);
	a.ovr = NULL;
	if (r != 0)
		return r;
	if (a.dump) {
		fv_cfg_dump(coord_cfg_keys, coord_cfg_nkeys, &cfg, stdout);
		return COORD_EXIT_OK;
	}
	if (a.check) {
		printf("%s: configuration OK\n", a.config ? a.config : "(defaults)");
		return COORD_EXIT_OK;
	}
	fv_log_setup(cfg.level, PROG);
	return run(&cfg, a.reset);
}
