/* fedvigil-adversary: a compromised agent, for Byzantine tests.
 *
 * It is the agent (agent/agent.c, the same configuration file): it connects
 * under its id with its birth and last will, ingests its machine's sensor
 * topics, follows the round announcements and trains like an honest agent.
 * Just before a training update is sent, it rewrites it: scaled,
 * sign-flipped, replaced by Gaussian noise of a chosen norm, and/or with an
 * inflated window count. The result is a well-formed ModelUpdate (finite,
 * the right round, base version and shape), so it passes every wire check
 * and tests what aggregation does with it (docs/reliability.md, "Hostile
 * clients"). Not installed; a test tool. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/agent.h"
#include "cli.h"
#include "fedvigil/version.h"

#define PROG "fedvigil-adversary"
#define MAX_ATTACKS 8

static volatile sig_atomic_t stop_requested, reload_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

enum atk_kind { ATK_SCALE, ATK_RANDOM, ATK_CLAIM };

/* One rewrite, applied in command-line order. */
struct attack {
	enum atk_kind kind;
	double value; /* factor (scale), L2 norm (random), windows (claim) */
};

struct adversary {
	struct attack atk[MAX_ATTACKS];
	int n_atk;
	uint64_t from_round; /* honest before this round */
	uint64_t seed;       /* random attack */
	uint64_t n_sent;     /* updates rewritten */
	char desc[256];      /* the attacks, for the log */
};

static const char *config_path;
static struct agent_config_set sets[64];
static size_t nsets;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: " PROG " -c AGENT.INI --attack SPEC [--attack SPEC ...] [OPTIONS]\n"
		"\n"
		"A compromised fedvigil agent for Byzantine tests: runs the agent of AGENT.INI\n"
		"(its id, birth and last will, its sensor topics, honest local training) and\n"
		"rewrites each training update just before it is sent. The updates stay\n"
		"well-formed, so they reach the aggregation.\n"
		"\n"
		"Attacks (applied in the order given):\n"
		"  scale:L        multiply the honest delta by L (L < 0 flips its sign)\n"
		"  flip[:L]       multiply it by -L (default 1)\n"
		"  random:NORM    replace it by Gaussian noise of L2 norm NORM\n"
		"  inflate[:N]    claim N windows trained on (default 2^40)\n"
		"  none           send the honest update (a control)\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE      the agent's INI configuration (fedvigil-agent -c)\n"
		"  -a, --attack SPEC      an attack above (repeatable)\n"
		"      --from-round R     honest before training round R (default 1)\n"
		"      --seed N           seed of the random attack (default 1)\n"
		"      --broker URL, --fleet NAME, --id NAME, --log-level LEVEL\n"
		"                         override the agent's keys\n"
		"      --set SEC.KEY=VAL  override any agent key (repeatable)\n"
		"  -h, --help             this help\n"
		"  -V, --version          print the version\n"
		"\n"
		"Exit: 0 stopped by SIGTERM/SIGINT, 1 runtime error, 2 usage.\n");
}

/* "kind[:value]" -> a; 0 or -EINVAL. */
static int parse_attack(const char *s, struct attack *a, bool *none)
{
	const char *colon = strchr(s, ':');
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	double v = 0.0;
	bool have = false;
	char *end;

	if (colon) {
		errno = 0;
		v = strtod(colon + 1, &end);
		if (errno || end == colon + 1 || *end || !isfinite(v))
			return -EINVAL;
		have = true;
	}
	*none = false;
	if (n == 4 && strncmp(s, "none", 4) == 0 && !have) {
		*none = true;
	} else if (n == 5 && strncmp(s, "scale", 5) == 0 && have) {
		*a = (struct attack){ ATK_SCALE, v };
	} else if (n == 4 && strncmp(s, "flip", 4) == 0) {
		*a = (struct attack){ ATK_SCALE, have ? -v : -1.0 };
	} else if (n == 6 && strncmp(s, "random", 6) == 0 && have && v >= 0.0) {
		*a = (struct attack){ ATK_RANDOM, v };
	} else if (n == 7 && strncmp(s, "inflate", 7) == 0 && (!have || (v >= 1.0 && v <= 1.8e19))) {
		*a = (struct attack){ ATK_CLAIM, have ? v : 1099511627776.0 };
	} else {
		return -EINVAL;
	}
	return 0;
}

static double l2(const float *x, size_t n)
{
	double s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * (double)x[i];
	return sqrt(s);
}

/* The agent's hook: rewrite u as the attacks say. */
static void tamper(void *ctx, struct fv_update *u)
{
	struct adversary *adv = ctx;
	double before = l2(u->delta, u->n_params), after;
	uint64_t claimed = u->n_samples;

	if (u->h.round < adv->from_round) {
		fv_log(FV_LOG_INFO, "round %" PRIu64 ": honest (attacks from round %" PRIu64 ")",
		       u->h.round, adv->from_round);
		return;
	}
	for (int i = 0; i < adv->n_atk; i++) {
		const struct attack *a = &adv->atk[i];

		switch (a->kind) {
		case ATK_SCALE:
			for (size_t j = 0; j < u->n_params; j++)
				u->delta[j] = (float)((double)u->delta[j] * a->value);
			break;
		case ATK_RANDOM: {
			struct fv_rng rng;
			double norm;

			fv_rng_seed(&rng, adv->seed ^ (0x9e3779b97f4a7c15ull * (u->h.round + 1)));
			for (size_t j = 0; j < u->n_params; j++)
				u->delta[j] = (float)fv_rng_normal(&rng);
			norm = l2(u->delta, u->n_params);
			for (size_t j = 0; j < u->n_params && norm > 0.0; j++)
				u->delta[j] = (float)((double)u->delta[j] * a->value / norm);
			break;
		}
		case ATK_CLAIM:
			claimed = (uint64_t)a->value;
			break;
		}
	}
	/* Whatever the factor, the update must stay finite to be accepted. */
	for (size_t j = 0; j < u->n_params; j++)
		if (!isfinite(u->delta[j]))
			u->delta[j] = copysignf(3.0e38f, u->delta[j]);
	after = l2(u->delta, u->n_params);
	fv_log(FV_LOG_NOTICE,
	       "round %" PRIu64 ": sending %s: |delta| %.4g -> %.4g, %" PRIu64
	       " windows claimed (trained on %" PRIu64 ")",
	       u->h.round, adv->desc, before, after, claimed, u->n_samples);
	u->n_samples = claimed;
	adv->n_sent++;
}

/* As the agent's, without the environment. */
static int load_config(struct agent_config *cfg, char *err, size_t errlen)
{
	return agent_config_load_all(cfg, config_path, NULL, NULL, sets, nsets, err, errlen);
}

int main(int argc, char **argv)
{
	enum { OPT_BROKER = 256, OPT_FLEET, OPT_ID, OPT_LOG, OPT_SET, OPT_FROM, OPT_SEED };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "attack", required_argument, NULL, 'a' },
		{ "from-round", required_argument, NULL, OPT_FROM },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "broker", required_argument, NULL, OPT_BROKER },
		{ "fleet", required_argument, NULL, OPT_FLEET },
		{ "id", required_argument, NULL, OPT_ID },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "set", required_argument, NULL, OPT_SET },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	static char setbuf[64][512];
	static struct agent_config cfg;
	static struct adversary adv = { .from_round = 1, .seed = 1 };
	struct sigaction sa = { .sa_handler = on_signal };
	struct agent_ctl ctl = { &stop_requested, &reload_requested, load_config };
	struct agent *a;
	bool any = false;
	char err[512], *end;
	size_t off = 0;
	int opt, r;

	fv_cli_init(PROG);
	while ((opt = getopt_long(argc, argv, "c:a:hV", opts, NULL)) != -1) {
		const char *key = NULL;

		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'a': {
			struct attack at;
			bool none;

			if (parse_attack(optarg, &at, &none) < 0)
				return fv_cli_usage_error("--attack '%s': expected scale:L, flip[:L], "
						   "random:NORM, inflate[:N] or none", optarg);
			any = true;
			if (!none) {
				if (adv.n_atk >= MAX_ATTACKS)
					return fv_cli_usage_error("%s: too many attacks", optarg);
				adv.atk[adv.n_atk++] = at;
			}
			if (off < sizeof(adv.desc))
				off += (size_t)snprintf(adv.desc + off, sizeof(adv.desc) - off, "%s%s",
							off ? "+" : "", optarg);
			break;
		}
		case OPT_FROM:
		case OPT_SEED: {
			unsigned long long v;

			errno = 0;
			v = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || *optarg == '-')
				return fv_cli_usage_error("'%s' is not an unsigned integer", optarg);
			if (opt == OPT_FROM)
				adv.from_round = v;
			else
				adv.seed = v;
			break;
		}
		case OPT_BROKER: key = "agent.broker"; break;
		case OPT_FLEET: key = "agent.fleet"; break;
		case OPT_ID: key = "agent.id"; break;
		case OPT_LOG: key = "agent.log_level"; break;
		case OPT_SET: {
			char *eq;

			if (nsets >= FV_ARRAY_SIZE(sets) ||
			    fv_strlcpy(setbuf[nsets], optarg, sizeof(setbuf[0])) < 0 ||
			    !(eq = strchr(setbuf[nsets], '=')))
				return fv_cli_usage_error("--set '%s': expected SECTION.KEY=VALUE", optarg);
			*eq = '\0';
			sets[nsets].key = setbuf[nsets];
			sets[nsets].val = eq + 1;
			nsets++;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf(PROG " %s\n", FV_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try '" PROG " --help'.\n");
			return 2;
		}
		if (key) {
			if (nsets >= FV_ARRAY_SIZE(sets))
				return fv_cli_usage_error("%s: too many overrides", optarg);
			sets[nsets].key = key;
			sets[nsets].val = optarg;
			nsets++;
		}
	}
	if (optind < argc)
		return fv_cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!config_path)
		return fv_cli_usage_error("-c AGENT.INI is required (the agent it pretends to be)");
	if (!any)
		return fv_cli_usage_error("--attack is required (none for an honest control)");
	r = load_config(&cfg, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}
	fv_log_setup((enum fv_log_level)(cfg.log_level + FV_LOG_ERR), PROG);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	a = agent_new(&cfg);
	if (!a)
		return 1;
	agent_set_update_hook(a, tamper, &adv);
	fv_log(FV_LOG_NOTICE, "agent %s (fleet %s) will send: %s, from round %" PRIu64, cfg.id,
	       cfg.fleet, adv.desc, adv.from_round);
	r = agent_run(a, &ctl);
	fv_log(FV_LOG_NOTICE, "stopping: %" PRIu64 " updates rewritten", adv.n_sent);
	agent_free(a);
	return r;
}
