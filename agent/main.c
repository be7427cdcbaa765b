/* fedvigil-agent: command line, signals, main. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "fedvigil/version.h"

static volatile sig_atomic_t stop_requested, reload_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void on_hup(int sig)
{
	(void)sig;
	reload_requested = 1;
}

/* The command line, kept for reloads: the file, then the overrides in
 * command-line order. */
static const char *config_path;
static struct agent_config_set sets[64];
static size_t nsets;

/* Environment variables FEDVIGIL_<SECTION>_<KEY> (containers). */
#define ENV_PREFIX "FEDVIGIL_"

/* defaults < file < environment < command line, then the cross-field
 * checks. 0, or -errno with the message in err. Also what SIGHUP runs. */
static int load_config(struct agent_config *cfg, char *err, size_t errlen)
{
	return agent_config_load_all(cfg, config_path, ENV_PREFIX, environ, sets, nsets, err,
				     errlen);
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: fedvigil-agent [-c FILE] [OPTIONS]\n"
		"\n"
		"Watches one machine's sensor topics on MQTT, scores windows of readings with\n"
		"the fleet's global autoencoder, publishes alerts, and trains locally for the\n"
		"coordinator's federated rounds. Raw data never leaves this process.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE      INI configuration file\n"
		"      --broker URL       override agent.broker (e.g. tcp://127.0.0.1:1883)\n"
		"      --fleet NAME       override agent.fleet\n"
		"      --id NAME          override agent.id\n"
		"      --log-level LEVEL  override agent.log_level (err|warning|notice|info|debug)\n"
		"      --score-log FILE   override agent.score_log\n"
		"      --set SEC.KEY=VAL  override any key (repeatable)\n"
		"      --check-config     validate the configuration and exit\n"
		"      --dump-config      print the effective configuration and exit\n"
		"  -h, --help             this help\n"
		"  -V, --version          print the version\n"
		"\n"
		"Precedence: defaults < file < environment < command line (in its order).\n"
		"Every key can be set from the environment as FEDVIGIL_<SECTION>_<KEY>,\n"
		"e.g. FEDVIGIL_AGENT_BROKER=tcp://broker:1883, FEDVIGIL_DETECT_K=5.\n"
		"\n"
		"Configuration keys (section.key  type  default  help):\n");
	fv_cfg_print_help(agent_cfg_keys, agent_cfg_nkeys, out);
	fprintf(out,
		"  [channel.NAME] sections, one per model channel:\n"
		"    topic = plant/pump-1/temperature   (required)\n"
		"    format, value_path, ts_path        (default: the [ingest] keys)\n"
		"  or, fed by a Sparkplug B edge node ([sparkplug] group, node):\n"
		"    metric = Pump/Temperature          (the metric's name in NBIRTH/DBIRTH)\n"
		"    device = pump-1                    (default: sparkplug.device; empty = node)\n");
}

static void dump_channels(const struct agent_config *c)
{
	for (uint32_t i = 0; i < c->n_channels; i++) {
		const struct agent_channel *ch = &c->channels[i];

		if (ch->sp_metric[0]) {
			printf("\n[channel.%s]\nmetric = %s\ndevice = %s\n", ch->name, ch->sp_metric,
			       ch->sp_device);
			continue;
		}
		printf("\n[channel.%s]\ntopic = %s\nformat = %s\nvalue_path = %s\nts_path = %s\n",
		       ch->name, ch->topic, ch->fmt.format == FV_FMT_JSON ? "json" : "number",
		       ch->fmt.value_path, ch->fmt.ts_path);
	}
}

int main(int argc, char **argv)
{
	enum { OPT_BROKER = 256, OPT_FLEET, OPT_ID, OPT_LOG, OPT_SCORELOG, OPT_SET, OPT_CHECK,
	       OPT_DUMP, OPT_MAN_KEYS };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "broker", required_argument, NULL, OPT_BROKER },
		{ "fleet", required_argument, NULL, OPT_FLEET },
		{ "id", required_argument, NULL, OPT_ID },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "score-log", required_argument, NULL, OPT_SCORELOG },
		{ "set", required_argument, NULL, OPT_SET },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "dump-config", no_argument, NULL, OPT_DUMP },
		/* The key table as roff, for the man page (build time). */
		{ "man-keys", no_argument, NULL, OPT_MAN_KEYS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	/* Overrides are applied after the file, in command-line order. */
	static char setbuf[64][512];
	bool check = false, dump = false;
	static struct agent_config cfg;
	char err[512];
	int opt, r;

	opterr = 0; /* refused options are reported by fv_log_bad_option() */
	while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		const char *key = NULL;

		switch (opt) {
		case 'c': config_path = optarg; break;
		case OPT_BROKER: key = "agent.broker"; break;
		case OPT_FLEET: key = "agent.fleet"; break;
		case OPT_ID: key = "agent.id"; break;
		case OPT_LOG: key = "agent.log_level"; break;
		case OPT_SCORELOG: key = "agent.score_log"; break;
		case OPT_SET: {
			char *eq;

			if (nsets >= FV_ARRAY_SIZE(sets) ||
			    fv_strlcpy(setbuf[nsets], optarg, sizeof(setbuf[0])) < 0 ||
			    !(eq = strchr(setbuf[nsets], '='))) {
				fv_log_usage("fedvigil-agent",
					     "--set '%s': expected SECTION.KEY=VALUE", optarg);
				return 2;
			}
			*eq = '\0';
			sets[nsets].key = setbuf[nsets];
			sets[nsets].val = eq + 1;
			nsets++;
			break;
		}
		case OPT_CHECK: check = true; break;
		case OPT_DUMP: dump = true; break;
		case OPT_MAN_KEYS:
			fv_cfg_print_man(agent_cfg_keys, agent_cfg_nkeys, agent_live_keys, stdout);
			return 0;
		case 'h': usage(stdout); return 0;
		case 'V': printf("fedvigil-agent %s\n", FV_VERSION); return 0;
		default: fv_log_bad_option("fedvigil-agent", argv); return 2;
		}
		if (key) {
			if (nsets >= FV_ARRAY_SIZE(sets)) {
				fv_log_usage("fedvigil-agent", "too many overrides");
				return 2;
			}
			sets[nsets].key = key;
			sets[nsets].val = optarg;
			nsets++;
		}
	}
	if (optind < argc) {
		fv_log_usage("fedvigil-agent", "unexpected argument '%s'", argv[optind]);
		return 2;
	}
	r = load_config(&cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "%sfedvigil-agent: %s\n", fv_log_err_prefix(), err);
		return 2;
	}
	if (dump) {
		fv_cfg_dump(agent_cfg_keys, agent_cfg_nkeys, &cfg, stdout);
		dump_channels(&cfg);
		return 0;
	}
	if (check) {
		printf("%s: OK (%u channels)\n", config_path ? config_path : "configuration",
		       cfg.n_channels);
		return 0;
	}

	fv_log_setup((enum fv_log_level)(cfg.log_level + FV_LOG_ERR), "fedvigil-agent");
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	{
		const char *unknown[8];
		size_t nu = fv_cfg_env_unknown(agent_cfg_keys, agent_cfg_nkeys, ENV_PREFIX, environ,
					       unknown, FV_ARRAY_SIZE(unknown));

		for (size_t i = 0; i < nu && i < FV_ARRAY_SIZE(unknown); i++)
			fv_log(FV_LOG_WARNING, "environment: %.*s is not a configuration key of "
			       "fedvigil-agent (see --help); ignored",
			       (int)strcspn(unknown[i], "="), unknown[i]);
	}

	struct agent *a = agent_new(&cfg);
	if (!a) {
		fv_log(FV_LOG_ERR, "cannot start the agent (see above)");
		return 1;
	}
	const struct agent_ctl ctl = { .stop = &stop_requested, .reload = &reload_requested,
				       .load = load_config };

	r = agent_run(a, &ctl);
	agent_free(a);
	fv_log(FV_LOG_NOTICE, "stopped");
	return r;
}
