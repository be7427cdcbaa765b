/* fedvigil-coordinator: command line, configuration, main loop.
 *
 * Runs federated rounds for one fleet over MQTT (coord.c). Everything runs on
 * this thread: poll() waits on the MQTT client's eventfd with a timeout up to
 * the next round timer (at most 200 ms), and on the Prometheus responder's
 * sockets when metrics.listen is set; SIGTERM/SIGINT set a flag checked on
 * every iteration (no SA_RESTART, so poll() returns at once), SIGHUP one
 * that reloads the configuration there. Each iteration feeds systemd's
 * watchdog and updates STATUS= (fv_sd_*); READY=1 follows the first broker
 * connection (the state file is loaded before that), STOPPING=1 a stop
 * signal. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/svc.h"
#include "fedvigil/version.h"

#define PROG "fedvigil-coordinator"
#define POLL_MAX_MS 200
/* Events handled per loop iteration, so timers run even under a flood. */
#define DRAIN_MAX 256

static volatile sig_atomic_t stop_signal, reload_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void on_hup(int sig)
{
	(void)sig;
	reload_signal = 1;
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
		"Precedence: defaults < config file < environment < command line, in\n"
		"command-line order. Every key can be set from the environment as\n"
		"FEDVIGIL_<SECTION>_<KEY>, e.g. FEDVIGIL_COORDINATOR_BROKER=tcp://broker:1883,\n"
		"FEDVIGIL_ROUND_DEADLINE_MS=10000.\n"
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
	OPT_MAN_KEYS,
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
		/* The key table as roff, for the man page (build time). */
		{ "man-keys", no_argument, NULL, OPT_MAN_KEYS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opterr = 0; /* refused options are reported by fv_log_bad_option() */
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
		case OPT_MAN_KEYS:
			fv_cfg_print_man(coord_cfg_keys, coord_cfg_nkeys, coord_live_keys, stdout);
			return COORD_EXIT_OK;
		case OPT_BROKER: key = "coordinator.broker"; break;
		case OPT_FLEET: key = "coordinator.fleet"; break;
		case OPT_ID: key = "coordinator.id"; break;
		case OPT_STATE_DIR: key = "coordinator.state_dir"; break;
		case OPT_LOG_LEVEL: key = "coordinator.log_level"; break;
		case OPT_ROUNDS: key = "round.rounds"; break;
		case OPT_SET: key = NULL; break;
		default:
			fv_log_bad_option(PROG, argv);
			return COORD_EXIT_CONFIG;
		}
		a->ovr[a->n_ovr].key = key;
		a->ovr[a->n_ovr].value = optarg;
		a->n_ovr++;
	}
	if (optind < argc) {
		fv_log_usage(PROG, "unexpected argument '%s'", argv[optind]);
		return COORD_EXIT_CONFIG;
	}
	return -1;
}

/* Environment variables FEDVIGIL_<SECTION>_<KEY> (containers). */
#define ENV_PREFIX "FEDVIGIL_"

/* defaults < file < environment < command line. Returns 0, or an exit code
 * with the message in err (the caller prints or logs it: this also runs on
 * SIGHUP). */
static int build_config(const struct args *a, struct coord_config *cfg, char *err, size_t errlen)
{
	char why[512];
	int r;

	r = coord_config_defaults(cfg, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "internal error in defaults: %s", why);
		return COORD_EXIT_FAIL;
	}
	if (a->config) {
		r = fv_cfg_load(coord_cfg_keys, coord_cfg_nkeys, cfg, a->config, NULL, NULL, err,
				errlen);
		if (r < 0)
			return COORD_EXIT_CONFIG;
	}
	if (fv_cfg_env(coord_cfg_keys, coord_cfg_nkeys, cfg, ENV_PREFIX, environ, err, errlen) < 0)
		return COORD_EXIT_CONFIG;
	for (int i = 0; i < a->n_ovr; i++) {
		const struct override *o = &a->ovr[i];
		char key[128];
		const char *value = o->value;

		if (o->key) {
			fv_strlcpy(key, o->key, sizeof(key));
		} else {
			const char *eq = strchr(o->value, '=');

			if (!eq || eq == o->value || (size_t)(eq - o->value) >= sizeof(key)) {
				snprintf(err, errlen, "--set '%s': expected SECTION.KEY=VALUE",
					 o->value);
				return COORD_EXIT_CONFIG;
			}
			memcpy(key, o->value, (size_t)(eq - o->value));
			key[eq - o->value] = '\0';
			value = eq + 1;
		}
		r = fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, cfg, key, value, err, errlen);
		if (r < 0)
			return COORD_EXIT_CONFIG;
	}
	r = coord_config_finish(cfg, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s%s%s", a->config ? a->config : "", a->config ? ": " : "",
			 why);
		return COORD_EXIT_CONFIG;
	}
	return 0;
}

/* A key whose value changed on reload (fv_cfg_change_fn). */
static void on_change(const struct fv_cfg_key *k, const char *old_value, const char *new_value,
		      bool applied, void *userdata)
{
	bool secret = strstr(k->name, "password") != NULL;

	(void)userdata;
	if (applied)
		fv_log(FV_LOG_NOTICE, "reload: %s.%s = %s (was %s)", k->section, k->name,
		       secret ? "(hidden)" : new_value, secret ? "(hidden)" : old_value);
	else
		fv_log(FV_LOG_WARNING,
		       "reload: %s.%s changed to %s but takes effect only after a restart; "
		       "keeping %s",
		       k->section, k->name, secret ? "(hidden)" : new_value,
		       secret ? "(hidden)" : old_value);
}

/* SIGHUP: re-read the file with the same command line. A configuration that
 * does not load or validate is rejected whole; otherwise the live keys
 * (coord_live_keys) are applied and the others reported. */
static void reload(const struct args *a, struct coord_config *cfg, struct fv_sd *sd)
{
	struct coord_config *next = malloc(sizeof(*next));
	char err[600], why[512];
	int n;

	fv_sd_reloading(sd);
	if (!next) {
		fv_log(FV_LOG_ERR, "reload: out of memory; keeping the running configuration");
		return;
	}
	if (build_config(a, next, err, sizeof(err)) != 0) {
		fv_log(FV_LOG_ERR, "reload rejected: %s; keeping the running configuration", err);
		free(next);
		return;
	}
	n = fv_cfg_apply_live(coord_cfg_keys, coord_cfg_nkeys, cfg, next, coord_live_keys,
			      on_change, NULL);
	/* Derived fields (log level) follow the applied keys. */
	if (coord_config_finish(cfg, why, sizeof(why)) < 0)
		fv_log(FV_LOG_ERR, "reload: %s", why); /* cannot happen: next passed */
	fv_log_setup(cfg->level, PROG);
	fv_log(FV_LOG_NOTICE, "configuration reloaded from %s: %d key(s) changed",
	       a->config ? a->config : "(defaults)", n);
	free(next);
}

static void drain(struct fv_mqtt *m, struct coord *co, struct fv_sd *sd)
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
			/* Ready once connected: the state (and model) was
			 * loaded before the client started. */
			if (!sd->ready)
				fv_sd_ready(sd, "connected to the broker");
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

/* STATUS= for systemctl status: where the round machine is. */
static void update_status(struct fv_sd *sd, const struct coord *co, const struct fv_mqtt *m,
			  int64_t now)
{
	static const char *const phases[] = { "waiting for agents", "collecting updates",
					      "pause", "finished" };
	struct coord_info in;

	if (!sd->active)
		return;
	coord_get_info(co, &in);
	if (!fv_mqtt_connected(m)) {
		fv_sd_status(sd, now, "broker not connected; round %" PRIu64 ", model v%" PRIu64,
			     in.round, in.model ? in.model->version : 0);
		return;
	}
	fv_sd_status(sd, now,
		     "round %" PRIu64 " %s (%u/%u updates), %u live agents, model v%" PRIu64
		     ", loss %.4g, threshold %.4g",
		     in.round, phases[in.phase], in.n_answered, in.n_selected, in.n_live,
		     in.model ? in.model->version : 0, in.model ? (double)in.model->loss : 0.0,
		     in.model ? (double)in.model->threshold : 0.0);
}

static int run(struct coord_config *cfg, const struct args *a)
{
	struct fv_mqtt_opts mo;
	struct fv_mqtt *m = NULL;
	struct coord *co = NULL;
	struct fv_httpd *httpd = NULL;
	struct fv_sd sd;
	struct coord_prom prom;
	char f_states[FV_TOPIC_MAX], f_updates[FV_TOPIC_MAX], will[FV_TOPIC_MAX];
	const char *offline = coord_offline_payload();
	struct sigaction sa;
	int r, ret = COORD_EXIT_FAIL;

	fv_sd_init(&sd);
	/* Handlers first: a SIGHUP during start-up must not kill us. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: poll() must return on a signal */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

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
	mo.keepalive_s = (int)cfg->keepalive_s;
	mo.username = cfg->username[0] ? cfg->username : NULL;
	mo.password = cfg->password[0] ? cfg->password : NULL;
	fv_mqtt_tls_apply(&cfg->tls, &mo);
	mo.will_topic = will;
	mo.will_payload = offline;
	mo.will_len = strlen(offline);
	mo.will_qos = 1;
	mo.will_retain = true;
	/* Room for one round's updates of a full selection plus every agent's
	 * retained state after a reconnect; overflow shows in mqtt_dropped. */
	mo.queue_max = FV_MAX_SELECTED + COORD_MAX_AGENTS;
	m = fv_mqtt_new(&mo);
	if (!m)
		return COORD_EXIT_FAIL;
	co = coord_new(cfg, m, a->reset);
	if (!co)
		goto out;
	if (coord_filters(co, f_states, f_updates) < 0) {
		fv_log(FV_LOG_ERR, "fleet name '%s' makes topics too long", cfg->fleet);
		goto out;
	}
	if (cfg->metrics_listen[0]) {
		char err[300];

		prom = (struct coord_prom){ .co = co, .cfg = cfg, .mqtt = m, .sd = &sd };
		httpd = fv_httpd_new(cfg->metrics_listen, coord_render_prom, &prom, err, sizeof(err));
		if (!httpd) {
			fv_log(FV_LOG_ERR, "metrics.listen: %s", err);
			goto out;
		}
		fv_log(FV_LOG_INFO, "Prometheus metrics on http://%s/metrics", fv_httpd_addr(httpd));
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
		struct pollfd p[1 + FV_HTTPD_POLLFDS];
		int64_t now = fv_now_mono_ms();
		int timeout = coord_tick(co, now, POLL_MAX_MS), np = 1;

		/* One iteration of this loop is progress: only here is the
		 * watchdog fed. */
		timeout = FV_MIN(timeout, fv_sd_watchdog(&sd, now));
		update_status(&sd, co, m, now);
		if (reload_signal) {
			reload_signal = 0;
			reload(a, cfg, &sd);
			fv_sd_reloaded(&sd, "configuration reloaded");
		}
		if (stop_signal)
			break;
		p[0] = (struct pollfd){ .fd = fv_mqtt_fd(m), .events = POLLIN };
		if (httpd)
			np += fv_httpd_pollfds(httpd, p + 1, FV_HTTPD_POLLFDS);
		r = poll(p, (nfds_t)np, timeout);
		if (r < 0 && errno != EINTR) {
			fv_log(FV_LOG_ERR, "poll: %s", fv_strerror(-errno));
			goto out;
		}
		if (r > 0 && p[0].revents)
			drain(m, co, &sd);
		if (r > 0 && httpd)
			fv_httpd_handle(httpd, p + 1, np - 1, fv_now_mono_ms());
	}
	fv_log(FV_LOG_NOTICE, "signal %d: stopping", (int)stop_signal);
	fv_sd_stopping(&sd, "stopping");
	coord_publish_offline(co);
	fv_mqtt_disconnect(m, 2000);
	ret = COORD_EXIT_OK;
out:
	fv_httpd_free(httpd);
	coord_free(co);
	fv_mqtt_free(m, 1000);
	if (ret == COORD_EXIT_OK)
		fv_log(FV_LOG_NOTICE, "stopped");
	return ret;
}

/* A round holds every accepted update until it closes (1,000 sae updates
 * are 86 MB) and frees them all at once; Paho's receive thread allocates
 * each message in its own arena. With glibc's defaults each round's memory
 * goes back to the kernel at the close and is faulted in again, page by
 * zeroed page, while the next round's updates arrive: a fifth of the
 * coordinator's CPU at 1,000 agents (bench/scale, docs/federation.md).
 * Keep up to 256 MiB of freed heap, and serve blocks below 4 MiB from the
 * heap rather than fresh mmap()s, so a round reuses the last one's pages;
 * the peak RSS is the same, it is only no longer given back between
 * rounds. */
static void tune_malloc(void)
{
#if defined(__GLIBC__)
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

int main(int argc, char **argv)
{
	static struct coord_config cfg;
	struct args a;
	char err[600];
	int r;

	tune_malloc();
	memset(&a, 0, sizeof(a));
	a.ovr = calloc((size_t)argc + 1, sizeof(*a.ovr));
	if (!a.ovr)
		return COORD_EXIT_FAIL;
	r = parse_args(argc, argv, &a);
	if (r >= 0) { /* --help, --version or a usage error */
		free(a.ovr);
		return r;
	}
	r = build_config(&a, &cfg, err, sizeof(err));
	if (r != 0) {
		fprintf(stderr, "%s" PROG ": %s\n", fv_log_err_prefix(), err);
		free(a.ovr);
		return r;
	}
	if (a.dump) {
		fv_cfg_dump(coord_cfg_keys, coord_cfg_nkeys, &cfg, stdout);
		free(a.ovr);
		return COORD_EXIT_OK;
	}
	if (a.check) {
		printf("%s: configuration OK\n", a.config ? a.config : "(defaults)");
		free(a.ovr);
		return COORD_EXIT_OK;
	}
	fv_log_setup(cfg.level, PROG);
	{
		const char *unknown[8];
		size_t nu = fv_cfg_env_unknown(coord_cfg_keys, coord_cfg_nkeys, ENV_PREFIX, environ,
					       unknown, FV_ARRAY_SIZE(unknown));

		for (size_t i = 0; i < nu && i < FV_ARRAY_SIZE(unknown); i++)
			fv_log(FV_LOG_WARNING, "environment: %.*s is not a configuration key of "
			       PROG " (see --help); ignored",
			       (int)strcspn(unknown[i], "="), unknown[i]);
	}
	/* The overrides stay: a reload applies them again over the file. */
	r = run(&cfg, &a);
	free(a.ovr);
	return r;
}
