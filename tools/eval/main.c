/* fedvigil-eval: command line, configuration, progress, main. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "eval.h"
#include "fedvigil/version.h"

#define PROG "fedvigil-eval"
#define DEFAULT_ROUNDS 10 /* when round.rounds = 0 ("unlimited" for the daemon) */
#define MAX_SETS 256

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: " PROG " MANIFEST --mode MODE --out DIR [OPTIONS]\n"
		"\n"
		"Offline experiment on a dataset described by MANIFEST (an INI file: see\n"
		"docs/tools.md). Trains with the agent's and the coordinator's own code,\n"
		"in-process (or through the real daemons with --broker), scores every test\n"
		"row causally, and writes DIR/report.json, report.md, points.csv and plots.\n"
		"\n"
		"Modes:\n"
		"  centralized   all training data pooled on one client\n"
		"  federated     one client per entity (the natural split)\n"
		"  iid           training windows pooled and dealt evenly to --clients K\n"
		"  dirichlet     training windows split over K clients, Dirichlet(--alpha)\n"
		"                over source entities (small alpha: very non-IID)\n"
		"  local         one model per entity, no federation\n"
		"\n"
		"Options:\n"
		"      --mode MODE         one of the modes above (required)\n"
		"  -o, --out DIR           output directory (created; files overwritten)\n"
		"      --set SEC.KEY=VAL   any agent or coordinator key (repeatable; after the\n"
		"                          manifest's [set] section)\n"
		"      --clients K         iid/dirichlet: number of clients (default: entities)\n"
		"      --alpha A           dirichlet concentration (default 0.5)\n"
		"      --root DIR          data root, replacing the manifest's [dataset] root\n"
		"      --entities A,B,...  only these entities of the manifest\n"
		"      --plots FMT         png (default), svg, both or none\n"
		"      --broker URL        run through the real daemons (fedvigil-coordinator and\n"
		"                          one fedvigil-agent per entity) on this broker;\n"
		"                          --mode federated only\n"
		"      --bin DIR           where the daemons are (default: beside this program)\n"
		"      --rate R            --broker: rows published per second per entity\n"
		"                          (default 500, 0 = as fast as the broker takes them)\n"
		"  -q, --quiet             no progress line\n"
		"  -h, --help              this help\n"
		"  -V, --version           print the version\n"
		"\n"
		"round.rounds = 0 (the coordinator's \"unlimited\") runs %d rounds here.\n"
		"Exit status: 0 done, 1 runtime error (unreadable data, ...), 2 usage error.\n"
		"\n"
		"Agent keys:\n",
		DEFAULT_ROUNDS);
	fv_cfg_print_help(agent_cfg_keys, agent_cfg_nkeys, out);
	fprintf(out, "\nCoordinator keys:\n");
	fv_cfg_print_help(coord_cfg_keys, coord_cfg_nkeys, out);
}

static bool has_key(const struct fv_cfg_key *tab, size_t n, const char *dotted)
{
	const char *dot = strchr(dotted, '.');

	if (!dot)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strlen(tab[i].section) == (size_t)(dot - dotted) &&
		    strncmp(tab[i].section, dotted, (size_t)(dot - dotted)) == 0 &&
		    strcmp(tab[i].name, dot + 1) == 0)
			return true;
	return false;
}

/* One override into whichever config has the key (both when both do). */
static int apply_set(struct ev_ctx *cx, const struct ev_set *s)
{
	bool in_a = has_key(agent_cfg_keys, agent_cfg_nkeys, s->key);
	bool in_c = has_key(coord_cfg_keys, coord_cfg_nkeys, s->key);
	char err[512];

	if (!in_a && !in_c) {
		fprintf(stderr, PROG ": %s: %s: no such agent or coordinator key (see --help)\n",
			s->where, s->key);
		return -EINVAL;
	}
	if ((in_a && fv_cfg_set(agent_cfg_keys, agent_cfg_nkeys, &cx->ac, s->key, s->value, err,
				sizeof(err)) < 0) ||
	    (in_c && fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &cx->cc, s->key, s->value, err,
				sizeof(err)) < 0)) {
		fprintf(stderr, PROG ": %s: %s\n", s->where, err);
		return -EINVAL;
	}
	return 0;
}

static int add_set(struct ev_ctx *cx, const char *key, const char *value, const char *where)
{
	struct ev_set *s;

	if (cx->n_sets >= MAX_SETS)
		return -E2BIG;
	s = realloc(cx->sets, (cx->n_sets + 1) * sizeof(*s));
	if (!s)
		return -ENOMEM;
	cx->sets = s;
	cx->sets[cx->n_sets] = (struct ev_set){ key, value, where };
	return apply_set(cx, &cx->sets[cx->n_sets++]);
}

/* --entities: keep the listed entities (in the manifest's order). */
static int keep_entities(struct fv_manifest *m, const char *list)
{
	char buf[4096], *save = NULL;
	uint32_t kept = 0;
	bool *want = calloc(m->n_entities ? m->n_entities : 1, sizeof(bool));

	if (!want || fv_strlcpy(buf, list, sizeof(buf)) < 0) {
		free(want);
		fprintf(stderr, PROG ": --entities: list too long\n");
		return -E2BIG;
	}
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint32_t i;

		for (i = 0; i < m->n_entities; i++)
			if (strcmp(m->ent[i].name, t) == 0)
				break;
		if (i == m->n_entities) {
			fprintf(stderr, PROG ": --entities: no [entity.%s] in %s\n", t, m->path);
			free(want);
			return -EINVAL;
		}
		want[i] = true;
	}
	for (uint32_t i = 0; i < m->n_entities; i++)
		if (want[i])
			memmove(&m->ent[kept++], &m->ent[i], sizeof(m->ent[0]));
	m->n_entities = kept;
	free(want);
	return kept ? 0 : -EINVAL;
}

/* ---- progress ---- */

void ev_progress(const struct ev_ctx *cx, const char *what, uint32_t done, uint32_t total,
		 double loss)
{
	double el = (double)(fv_now_mono_ms() - cx->t_start) / 1000.0;
	double eta = done ? el / done * (double)(total - done) : 0.0;
	bool tty = isatty(STDERR_FILENO);

	if (cx->o.quiet)
		return;
	fprintf(stderr, "%s" PROG ": %s %u/%u loss %.5f elapsed %.0fs eta %.0fs%s",
		tty ? "\r" : "", what, done, total, loss, el, eta, tty ? "\033[K" : "\n");
	fflush(stderr);
}

void ev_progress_end(const struct ev_ctx *cx)
{
	if (!cx->o.quiet && isatty(STDERR_FILENO))
		fputc('\n', stderr);
}

enum {
	OPT_MODE = 256,
	OPT_SET,
	OPT_CLIENTS,
	OPT_ALPHA,
	OPT_ROOT,
	OPT_PLOTS,
	OPT_BROKER,
	OPT_ENTITIES,
	OPT_BIN,
	OPT_RATE,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "out", required_argument, NULL, 'o' },
		{ "set", required_argument, NULL, OPT_SET },
		{ "clients", required_argument, NULL, OPT_CLIENTS },
		{ "alpha", required_argument, NULL, OPT_ALPHA },
		{ "root", required_argument, NULL, OPT_ROOT },
		{ "plots", required_argument, NULL, OPT_PLOTS },
		{ "entities", required_argument, NULL, OPT_ENTITIES },
		{ "broker", required_argument, NULL, OPT_BROKER },
		{ "bin", required_argument, NULL, OPT_BIN },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const modes[] = { "centralized", "federated", "iid", "dirichlet", "local",
					     NULL };
	static const char *const plots[] = { "png", "svg", "both", "none", NULL };
	struct ev_ctx cx;
	struct ev_result res;
	struct rusage ru;
	char *cli_key[MAX_SETS];
	const char *cli_val[MAX_SETS];
	uint32_t n_cli = 0;
	char err[1024], buf_p[64], buf_a[64];
	bool have_mode = false;
	const char *only = NULL;
	long long ll;
	int opt, r, status = 1;

	fv_cli_init(PROG);
	memset(&cx, 0, sizeof(cx));
	memset(&res, 0, sizeof(res));
	cx.t_start = fv_now_mono_ms();
	cx.o.alpha = 0.5;
	cx.o.rate = 500;
	while ((opt = getopt_long(argc, argv, "o:qhV", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_MODE:
			for (int i = 0; modes[i]; i++)
				if (strcmp(optarg, modes[i]) == 0) {
					cx.o.mode = (enum ev_mode)i;
					have_mode = true;
				}
			if (!have_mode)
				return fv_cli_usage_error("--mode: '%s' is not one of centralized, "
							  "federated, iid, dirichlet, local",
							  optarg);
			break;
		case 'o':
			cx.o.out = optarg;
			break;
		case OPT_SET: {
			char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg)
				return fv_cli_usage_error("--set '%s': expected SECTION.KEY=VALUE", optarg);
			if (n_cli >= MAX_SETS)
				return fv_cli_usage_error("--set: at most %d", MAX_SETS);
			*eq = '\0';
			cli_key[n_cli] = optarg;
			cli_val[n_cli++] = eq + 1;
			break;
		}
		case OPT_CLIENTS:
			if (fv_cli_parse_int("--clients", optarg, 1, FV_MAX_SELECTED, &ll) < 0)
				return 2;
			cx.o.clients = (uint32_t)ll;
			break;
		case OPT_ALPHA:
			if (fv_cli_parse_num("--alpha", optarg, 1e-6, 1e9, &cx.o.alpha) < 0)
				return 2;
			break;
		case OPT_ROOT:
			cx.o.root = optarg;
			break;
		case OPT_ENTITIES:
			only = optarg;
			break;
		case OPT_BROKER:
			if (fv_cli_opt_broker(optarg, &cx.o.broker))
				return 2;
			break;
		case OPT_BIN:
			cx.o.bindir = optarg;
			break;
		case OPT_RATE:
			if (fv_cli_parse_num("--rate", optarg, 0, 1e7, &cx.o.rate) < 0)
				return 2;
			break;
		case OPT_PLOTS: {
			bool ok = false;

			for (int i = 0; plots[i]; i++)
				if (strcmp(optarg, plots[i]) == 0) {
					cx.o.plots = (enum ev_plots)i;
					ok = true;
				}
			if (!ok)
				return fv_cli_usage_error("--plots: '%s' is not png, svg, both or none",
							  optarg);
			break;
		}
		case 'q':
			cx.o.quiet = true;
			break;
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
	}
	if (optind != argc - 1)
		return fv_cli_usage_error(optind >= argc ? "no MANIFEST given"
							 : "one MANIFEST expected, got more arguments");
	cx.o.manifest = argv[optind];
	if (!have_mode)
		return fv_cli_usage_error("--mode is required");
	if (!cx.o.out)
		return fv_cli_usage_error("--out DIR is required");
	if ((cx.o.clients || cx.o.alpha != 0.5) && cx.o.mode != EV_IID &&
	    cx.o.mode != EV_DIRICHLET)
		return fv_cli_usage_error("--clients and --alpha apply to --mode iid and dirichlet");
	if (cx.o.broker && cx.o.mode != EV_FEDERATED)
		return fv_cli_usage_error("--broker runs --mode federated (one agent per entity)");
	fv_log_setup(FV_LOG_WARNING, PROG);

	/* Configuration: defaults, what the data dictates, the manifest's
	 * [set], then --set. */
	if (agent_config_load(&cx.ac, NULL, err, sizeof(err)) < 0 ||
	    coord_config_defaults(&cx.cc, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	r = fv_manifest_load(cx.o.manifest, cx.o.root, &cx.man, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return r == -ENOENT ? 1 : 2;
	}
	if (only && keep_entities(cx.man, only) < 0)
		goto usage_fail;
	if (cx.man->period_ms > 0) {
		snprintf(buf_p, sizeof(buf_p), "%lld", (long long)cx.man->period_ms);
		snprintf(buf_a, sizeof(buf_a), "%lld", (long long)cx.man->period_ms * 3);
		if (add_set(&cx, "ingest.period_ms", buf_p, "[dataset] period_ms") < 0 ||
		    add_set(&cx, "ingest.max_age_ms", buf_a, "[dataset] period_ms") < 0)
			goto usage_fail;
	}
	for (uint32_t i = 0; i < cx.man->n_sets; i++)
		if (add_set(&cx, cx.man->sets[i].key, cx.man->sets[i].value, cx.man->path) < 0)
			goto usage_fail;
	for (uint32_t i = 0; i < n_cli; i++)
		if (add_set(&cx, cli_key[i], cli_val[i], "--set") < 0)
			goto usage_fail;
	fv_log_setup((enum fv_log_level)(FV_LOG_ERR + cx.ac.log_level) < FV_LOG_WARNING
			     ? (enum fv_log_level)(FV_LOG_ERR + cx.ac.log_level)
			     : FV_LOG_WARNING,
		     PROG);

	r = fv_dataset_load(cx.man, cx.ac.period_ms, &cx.ds, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	for (uint32_t e = 0; e < cx.ds->n_entities; e++)
		if (cx.ds->ent[e].n_backward)
			fv_log(FV_LOG_WARNING,
			       "%s: %zu rows stamped earlier than the row before them (first at %s); "
			       "fed as they come, like the agent: they get no verdict of their own",
			       cx.ds->ent[e].name, cx.ds->ent[e].n_backward, cx.ds->ent[e].backward_at);
	/* The model's channels are the dataset's features. */
	cx.cc.channels = cx.ds->C;
	if (cx.cc.rounds == 0)
		cx.cc.rounds = DEFAULT_ROUNDS;
	if (coord_config_finish(&cx.cc, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto usage_fail;
	}
	if (cx.ac.k > cx.ac.n) {
		fprintf(stderr, PROG ": detect.k = %lld is larger than detect.n = %lld\n", cx.ac.k,
			cx.ac.n);
		goto usage_fail;
	}
	r = fv_mkdir_p(cx.o.out, 0755);
	if (r < 0) {
		fprintf(stderr, PROG ": --out %s: cannot create: %s\n", cx.o.out, fv_strerror(r));
		goto out;
	}
	res.load_s = (double)(fv_now_mono_ms() - cx.t_start) / 1000.0;
	r = cx.o.broker ? ev_run_broker(&cx, &res) : ev_run(&cx, &res);
	if (r < 0)
		goto out;
	res.total_s = (double)(fv_now_mono_ms() - cx.t_start) / 1000.0;
	getrusage(RUSAGE_SELF, &ru);
	if (!res.broker) /* with --broker: the largest daemon's */
		res.peak_rss_kb = ru.ru_maxrss;
	if (ev_report(&cx, &res) < 0)
		goto out;
	if (cx.o.plots != EV_PLOTS_NONE)
		ev_plot(&cx, &res);
	status = 0;
	goto out;
usage_fail:
	status = 2;
out:
	ev_result_free(&res, cx.ds ? cx.ds->n_entities : 0);
	fv_dataset_free(cx.ds);
	fv_manifest_free(cx.man);
	free(cx.sets);
	return status;
}
