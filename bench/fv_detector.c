/* fv-detector: the detector experiments of docs/evaluation.md on the ASD
 * layout (csv/<server>_train.csv, _test.csv, _test_label.csv and
 * interpretation_label/<server>.txt), in-process with the daemons' own
 * code: the agent's scorer (lib/detect/scorer.c: features, calibration,
 * smoothing, thresholds), the coordinator's merging of histograms and column
 * errors (fv_detect_close_round), FedAvg (fv_agg_fedavg) and local training
 * (fv_model_train). What fedvigil-eval does not measure lives here: the
 * top-3 attribution hit rate against the interpretation labels, and the
 * transfer experiment (a machine that joins with the fleet's model against
 * one trained from scratch, as a function of its own training rows).
 *
 *   fv-detector --data DIR [--mode fed|central|local] [options]
 *
 * Every round: each agent scores its training windows with the base model
 * (its histogram and column errors, as a ModelUpdate carries them) and
 * trains one copy of it; the coordinator averages the deltas weighted by
 * window count and merges the statistics into the next threshold. The
 * threshold thus lags one model version, as in the fleet. Each test point
 * is scored by the window that ends at it (the window reaches back into
 * the training rows for the first points), causally, point by point. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/detect.h"
#include "fedvigil/fl.h"
#include "fedvigil/nn.h"
#include "fedvigil/scorer.h"
#include "fedvigil/threshold.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

#define MAX_ENT 64
#define MAX_SEG 64

enum mode { MODE_FED, MODE_CENTRAL, MODE_LOCAL };

struct seg {
	size_t a, b;       /* rows, inclusive */
	uint8_t dims[256]; /* dims[c] = channel c (0-based) is named */
	uint32_t n_dims;
};

struct ent {
	char name[64];
	float *tr, *te;  /* (rows, C) */
	size_t ntr, nte; /* rows */
	uint8_t *lab;    /* (nte) */
	size_t use;      /* training rows used (transfer: the first N) */
	float *x;        /* (nw, D) prepared training windows */
	uint8_t *cont;   /* (nw) */
	size_t nw;
	struct seg seg[MAX_SEG];
	uint32_t n_seg;
};

struct conf {
	const char *data;
	enum mode mode;
	uint32_t W;
	char hidden[128];
	enum fv_feat feat;
	bool calibrate;
	float smooth;
	struct fv_thr_rule rule;
	struct fv_scorer_opts so;
	uint32_t rounds, epochs, batch;
	float lr;
	uint64_t seed;
	uint32_t dk, dn; /* debounce */
	int holdout;     /* entity index, -1 = none */
	size_t train_rows;
	const char *save, *load, *points;
};

static struct ent E[MAX_ENT];
static uint32_t NE, C;
static struct conf cf = {
	.mode = MODE_FED,
	.W = 10,
	.hidden = "64,16,64",
	.feat = FV_FEAT_VALUES,
	.calibrate = true,
	.smooth = 1.0f,
	.rule = { .method = FV_THR_PERCENTILE, .q = 0.99, .k = 3.0, .margin = 1.0 },
	.so = { .mode = FV_THRMODE_ADAPTIVE,
		.prior_windows = 2000,
		.halflife = 2000,
		.calib_prior = 100 },
	.rounds = 20,
	.epochs = 1,
	.batch = 64,
	.lr = 1e-3f,
	.seed = 1,
	.dk = 1,
	.dn = 1,
	.holdout = -1,
};

static void die(const char *what)
{
	fprintf(stderr, "fv-detector: %s\n", what);
	exit(1);
}

/* Numbers of a CSV file without header: (rows, cols) floats, malloc'd. */
static float *read_csv(const char *path, uint32_t *io_cols, size_t *ret_rows)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, n = 0, alloc = 0;
	float *v = NULL;

	if (!f) {
		fprintf(stderr, "fv-detector: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	while (getline(&line, &cap, f) > 0) {
		uint32_t cols = 1;
		char *p = line;

		for (char *q = line; *q; q++)
			cols += *q == ',';
		if (*io_cols == 0)
			*io_cols = cols;
		if (cols != *io_cols) {
			fprintf(stderr, "fv-detector: %s:%zu: %u columns, expected %u\n", path,
				n + 1, cols, *io_cols);
			exit(1);
		}
		if (n == alloc) {
			alloc = alloc ? 2 * alloc : 4096;
			v = realloc(v, alloc * cols * sizeof(float));
			if (!v)
				die("out of memory");
		}
		for (uint32_t c = 0; c < cols; c++) {
			v[n * cols + c] = strtof(p, &p);
			if (*p == ',')
				p++;
		}
		n++;
	}
	free(line);
	fclose(f);
	*ret_rows = n;
	return v;
}

/* interpretation_label/<name>.txt: "a-b:d,d,..." (rows, 1-based dims). */
static void read_segments(struct ent *e)
{
	char path[1100], line[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/interpretation_label/%s.txt", cf.data, e->name);
	f = fopen(path, "r");
	if (!f)
		return; /* attribution is reported only where labels exist */
	while (fgets(line, sizeof(line), f) && e->n_seg < MAX_SEG) {
		struct seg *s = &e->seg[e->n_seg];
		char *p = line, *colon = strchr(line, ':');

		if (!colon)
			continue;
		memset(s, 0, sizeof(*s));
		s->a = strtoul(p, &p, 10);
		s->b = strtoul(p + 1, NULL, 10);
		for (p = colon + 1; *p && *p != '\n';) {
			unsigned long d = strtoul(p, &p, 10);

			if (d >= 1 && d <= C && !s->dims[d - 1]) {
				s->dims[d - 1] = 1;
				s->n_dims++;
			}
			if (*p == ',')
				p++;
			else
				break;
		}
		e->n_seg++;
	}
	fclose(f);
}

static void load_data(void)
{
	static const char *const names[] = {
		"omi-1", "omi-2", "omi-3", "omi-4",  "omi-5",  "omi-6",
		"omi-7", "omi-8", "omi-9", "omi-10", "omi-11", "omi-12"
	};
	char path[1100];

	NE = FV_ARRAY_SIZE(names);
	for (uint32_t i = 0; i < NE; i++) {
		struct ent *e = &E[i];
		uint32_t one = 1;
		size_t nl;
		float *l;

		snprintf(e->name, sizeof(e->name), "%s", names[i]);
		snprintf(path, sizeof(path), "%s/csv/%s_train.csv", cf.data, e->name);
		e->tr = read_csv(path, &C, &e->ntr);
		snprintf(path, sizeof(path), "%s/csv/%s_test.csv", cf.data, e->name);
		e->te = read_csv(path, &C, &e->nte);
		snprintf(path, sizeof(path), "%s/csv/%s_test_label.csv", cf.data, e->name);
		l = read_csv(path, &one, &nl);
		if (nl != e->nte)
			die("a label file does not match its test file");
		e->lab = malloc(nl);
		for (size_t t = 0; t < nl; t++)
			e->lab[t] = l[t] > 0.5f;
		free(l);
		e->use = (int)i == cf.holdout && cf.train_rows && cf.train_rows < e->ntr
				 ? cf.train_rows
				 : e->ntr;
		if (e->use < cf.W)
			die("fewer training rows than a window");
		read_segments(e);
	}
}

/* Version 1 of a model over the entities in mask: the statistics round's
 * normalisation (std floored as the coordinator does) and initial weights. */
static void make_global(struct fv_global *g, const bool *mask)
{
	struct fv_chstats st[256];
	uint32_t hid[FV_NN_MAX_LAYERS];
	int nh = fv_model_hidden_parse(cf.hidden, hid, FV_NN_MAX_LAYERS - 1);
	struct fv_model *m;

	if (nh <= 0)
		die("--hidden: not a list of widths");
	memset(g, 0, sizeof(*g));
	for (uint32_t c = 0; c < C; c++)
		fv_chstats_init(&st[c]);
	for (uint32_t e = 0; e < NE; e++)
		for (size_t i = 0; mask[e] && i < E[e].use; i++)
			for (uint32_t c = 0; c < C; c++)
				fv_chstats_add(&st[c], E[e].tr[i * C + c]);
	g->mean = malloc(C * sizeof(float));
	g->std = malloc(C * sizeof(float));
	for (uint32_t c = 0; c < C; c++) {
		double mean = st[c].sum / (double)st[c].count;

		fv_norm_from_stats(&st[c], 1, 1e-3 * fmax(1.0, fabs(mean)), &g->mean[c],
				   &g->std[c]);
	}
	g->features = cf.feat;
	g->n_channels = C;
	g->window = cf.W;
	g->stride = 1;
	if (fv_model_spec_autoencoder(cf.W * fv_feat_columns(cf.feat, C), hid, (uint32_t)nh,
				      FV_ACT_TANH, FV_ACT_LINEAR, &g->spec) < 0)
		die("the model does not fit the window");
	m = fv_model_new(&g->spec, 1);
	fv_model_init(m, cf.seed);
	g->n_params = fv_model_nparams(m);
	g->params = malloc(g->n_params * sizeof(float));
	memcpy(g->params, fv_model_params(m), g->n_params * sizeof(float));
	fv_model_free(m);
	g->calibrate = cf.calibrate;
	g->smooth = cf.smooth;
	g->rule = cf.rule;
	g->version = 1;
}

static void prep_windows(struct ent *e, const struct fv_global *g)
{
	size_t D = (size_t)cf.W * fv_global_columns(g);

	e->nw = e->use - cf.W + 1;
	e->x = malloc(e->nw * D * sizeof(float));
	e->cont = malloc(e->nw);
	for (size_t i = 0; i < e->nw; i++) {
		fv_feat_prepare(e->x + i * D, e->tr + i * C, cf.W, C, g->mean, g->std, g->features);
		e->cont[i] = i > 0;
	}
}

/* The detection statistics of one round, under base model g, into u. */
static void round_stats(struct fv_scorer *sc, const struct fv_global *g, const bool *mask,
			struct fv_update *u, uint32_t *ret_k)
{
	uint32_t k = 0;

	fv_scorer_set_model(sc, g);
	for (uint32_t e = 0; e < NE; e++) {
		if (!mask[e])
			continue;
		memset(&u[k], 0, sizeof(u[k]));
		u[k].n_col_err = fv_global_columns(g);
		u[k].col_err = calloc(u[k].n_col_err, sizeof(double));
		fv_scorer_calibrate(sc, E[e].x, E[e].cont, E[e].nw, &u[k].hist, u[k].col_err);
		k++;
	}
	*ret_k = k;
}

static void close_round(struct fv_global *g, struct fv_update *u, uint32_t k)
{
	g->calibrate = cf.calibrate;
	g->smooth = cf.smooth;
	if (fv_detect_close_round(g, u, k, &cf.rule) < 0)
		die("out of memory");
	for (uint32_t i = 0; i < k; i++)
		free(u[i].col_err);
	g->version++;
}

/* Train g over the entities in mask; *penult gets the parameters before
 * the last round (the model the last threshold was scored with). */
static void train(struct fv_global *g, const bool *mask, float *penult)
{
	struct fv_train_opts to = FV_TRAIN_DEFAULTS;
	size_t P = g->n_params, D = (size_t)cf.W * fv_global_columns(g);
	struct fv_model *tm = fv_model_new(&g->spec, cf.batch);
	struct fv_scorer *sc = fv_scorer_new(&cf.so, C);
	struct fv_update u[MAX_ENT];
	float *pool = NULL, *dl[MAX_ENT];
	const float *ds[MAX_ENT];
	uint64_t ws[MAX_ENT];
	size_t npool = 0;
	float loss = 0;
	uint32_t k;

	to.lr = cf.lr;
	if (cf.mode == MODE_CENTRAL) {
		for (uint32_t e = 0; e < NE; e++)
			npool += mask[e] ? E[e].nw : 0;
		pool = malloc(npool * D * sizeof(float));
		npool = 0;
		for (uint32_t e = 0; e < NE; e++)
			if (mask[e]) {
				memcpy(pool + npool * D, E[e].x, E[e].nw * D * sizeof(float));
				npool += E[e].nw;
			}
	}
	for (uint32_t r = 1; r <= cf.rounds; r++) {
		memcpy(penult, g->params, P * sizeof(float));
		round_stats(sc, g, mask, u, &k);
		if (cf.mode == MODE_CENTRAL) {
			fv_model_set_params(tm, g->params, P);
			fv_model_optim_reset(tm);
			fv_model_train(tm, pool, npool, cf.epochs, cf.batch, &to, cf.seed ^ r,
				       &loss);
			memcpy(g->params, fv_model_params(tm), P * sizeof(float));
		} else {
			float *avg = malloc(P * sizeof(float));
			uint32_t n = 0;

			for (uint32_t e = 0; e < NE; e++) {
				if (!mask[e])
					continue;
				fv_model_set_params(tm, g->params, P);
				fv_model_optim_reset(tm);
				fv_model_train(tm, E[e].x, E[e].nw, cf.epochs, cf.batch, &to,
					       cf.seed ^ r ^ ((uint64_t)e << 20), &loss);
				dl[n] = malloc(P * sizeof(float));
				for (size_t i = 0; i < P; i++)
					dl[n][i] = fv_model_params(tm)[i] - g->params[i];
				ds[n] = dl[n];
				ws[n] = E[e].nw;
				n++;
			}
			if (fv_agg_fedavg(avg, ds, ws, n, P) < 0)
				die("FedAvg failed");
			for (size_t i = 0; i < P; i++)
				g->params[i] += avg[i];
			for (uint32_t i = 0; i < n; i++)
				free(dl[i]);
			free(avg);
		}
		close_round(g, u, k);
		fprintf(stderr, "round %u: loss %.5f threshold %.4g\n", r, (double)loss,
			(double)g->threshold);
	}
	fv_scorer_free(sc);
	fv_model_free(tm);
	free(pool);
}

/* The last round's close again, under the current options (a loaded model
 * then gets the threshold its fleet would have published). */
static void reclose(struct fv_global *g, const bool *mask, float *penult)
{
	struct fv_scorer *sc = fv_scorer_new(&cf.so, C);
	struct fv_update u[MAX_ENT];
	float *fin = g->params;
	uint32_t k;

	g->params = penult;
	g->calibrate = cf.calibrate;
	g->smooth = cf.smooth;
	round_stats(sc, g, mask, u, &k);
	g->params = fin;
	g->threshold = 0;
	close_round(g, u, k);
	fv_scorer_free(sc);
}

static void model_file(const char *path, const char *suffix, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", path, suffix);
}

static void save_model(const char *suffix, const struct fv_global *g, const float *penult)
{
	char path[1100];
	FILE *f;

	model_file(cf.save, suffix, path, sizeof(path));
	f = fopen(path, "wb");
	if (!f || fwrite(g->params, sizeof(float), g->n_params, f) != g->n_params ||
	    fwrite(penult, sizeof(float), g->n_params, f) != g->n_params || fclose(f) != 0)
		die("cannot write the model file");
}

static void load_model(const char *suffix, struct fv_global *g, float *penult)
{
	char path[1100];
	FILE *f;

	model_file(cf.load, suffix, path, sizeof(path));
	f = fopen(path, "rb");
	if (!f || fread(g->params, sizeof(float), g->n_params, f) != g->n_params ||
	    fread(penult, sizeof(float), g->n_params, f) != g->n_params)
		die("cannot read the model file (or it has another shape)");
	fclose(f);
}

struct conf_mat {
	uint64_t tp, fp, fn, tn;
};

struct attr {
	double seg_hit, seg_rand, pt_hit, pt_rand;
	uint32_t seg_n, seg_all, pt_n;
};

/* Score entity e's test rows under g, as its agent would. */
static struct conf_mat score_entity(uint32_t e, const struct fv_global *g, FILE *pts,
				    struct attr *at)
{
	struct fv_scorer *sc = fv_scorer_new(&cf.so, C);
	struct fv_detect_opts dop = { .k = cf.dk, .n = cf.dn, .clear_ratio = 1.0f, .clear_n = 1 };
	struct fv_detector det;
	struct conf_mat m = { 0 };
	struct ent *en = &E[e];
	float *all = malloc((cf.W - 1 + en->nte) * C * sizeof(float)), share[256];
	float *best_score = calloc(en->n_seg, sizeof(float));
	uint32_t(*best_top)[3] = calloc(en->n_seg, sizeof(*best_top));

	fv_detect_init(&det, &dop);
	fv_scorer_set_model(sc, g);
	fv_scorer_calibrate(sc, en->x, en->cont, en->nw, NULL, NULL);
	memcpy(all, en->tr + (en->use - (cf.W - 1)) * C, (cf.W - 1) * C * sizeof(float));
	memcpy(all + (cf.W - 1) * C, en->te, en->nte * C * sizeof(float));
	for (uint32_t s = 0; s < en->n_seg; s++)
		best_score[s] = -1.0f;
	for (size_t t = 0; t < en->nte; t++) {
		float score, thr;
		uint32_t top[3];
		bool pred, was;

		fv_scorer_score(sc, all + t * C, t > 0, &score, share);
		thr = fv_scorer_threshold(sc);
		was = det.raised;
		fv_detect_push(&det, score, thr, (int64_t)t, (int64_t)t);
		pred = det.raised;
		fv_scorer_observe(sc, score, was || det.raised);
		if (pred && en->lab[t])
			m.tp++;
		else if (pred)
			m.fp++;
		else if (en->lab[t])
			m.fn++;
		else
			m.tn++;
		fv_detect_top(top, share, C, 3);
		if (pts)
			fprintf(pts, "%s,%zu,%.6g,%.6g,%d,%d,%u,%u,%u\n", en->name, t,
				(double)score, (double)thr, pred, en->lab[t], top[0] + 1,
				top[1] + 1, top[2] + 1);
		/* attribution: per true-positive point, and per segment at
		 * its highest detected score */
		for (uint32_t s = 0; pred && s < en->n_seg; s++) {
			const struct seg *sg = &en->seg[s];
			uint32_t h = 0, d = FV_MIN(3u, sg->n_dims);

			if (t < sg->a || t > sg->b)
				continue;
			for (int i = 0; i < 3; i++)
				h += sg->dims[top[i]];
			at->pt_hit += (double)h / d;
			at->pt_rand += (double)sg->n_dims / C * 3.0 / d;
			at->pt_n++;
			if (score > best_score[s]) {
				best_score[s] = score;
				memcpy(best_top[s], top, sizeof(top));
			}
		}
	}
	for (uint32_t s = 0; s < en->n_seg; s++) {
		const struct seg *sg = &en->seg[s];
		uint32_t h = 0, d = FV_MIN(3u, sg->n_dims);

		at->seg_all++;
		if (best_score[s] < 0.0f)
			continue;
		for (int i = 0; i < 3; i++)
			h += sg->dims[best_top[s][i]];
		at->seg_hit += (double)h / d;
		at->seg_rand += (double)sg->n_dims / C * 3.0 / d;
		at->seg_n++;
	}
	free(all);
	free(best_score);
	free(best_top);
	fv_scorer_free(sc);
	return m;
}

static void print_line(const char *what, double thr, const struct conf_mat *m)
{
	double p = m->tp + m->fp ? (double)m->tp / (double)(m->tp + m->fp) : 0.0;
	double r = m->tp + m->fn ? (double)m->tp / (double)(m->tp + m->fn) : 0.0;
	double f = p + r > 0.0 ? 2.0 * p * r / (p + r) : 0.0;
	double fpr = m->fp + m->tn ? (double)m->fp / (double)(m->fp + m->tn) : 0.0;

	printf("%-8s f1=%.3f precision=%.3f recall=%.3f fpr=%.4f tp=%llu fp=%llu fn=%llu "
	       "tn=%llu",
	       what, f, p, r, fpr, (unsigned long long)m->tp, (unsigned long long)m->fp,
	       (unsigned long long)m->fn, (unsigned long long)m->tn);
	if (thr >= 0.0)
		printf(" threshold=%.4g", thr);
	printf("\n");
}

static void usage(void)
{
	puts("Usage: fv-detector --data DIR [options]  (docs/evaluation.md)\n"
	     "  --mode fed|central|local   training (default fed)\n"
	     "  --window W --hidden L --features values|diff|both\n"
	     "  --calibrate 0|1 --smooth A --method percentile|meanstd|pot\n"
	     "  --percentile P --k K --margin M\n"
	     "  --threshold global|local|adaptive --prior-windows N --halflife N\n"
	     "  --calib-prior N --debounce K/N\n"
	     "  --rounds R --epochs E --batch B --lr LR --seed S\n"
	     "  --holdout NAME --train-rows N   transfer: NAME is left out of the\n"
	     "                                  fleet and uses its first N rows\n"
	     "  --save FILE | --load FILE      keep / reuse the trained model\n"
	     "  --points FILE                  per-point CSV with the top-3 channels");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "data", 1, 0, 'd' },          { "mode", 1, 0, 'm' },
		{ "window", 1, 0, 'W' },        { "hidden", 1, 0, 'H' },
		{ "features", 1, 0, 'F' },      { "calibrate", 1, 0, 'c' },
		{ "smooth", 1, 0, 's' },        { "method", 1, 0, 'M' },
		{ "percentile", 1, 0, 'q' },    { "k", 1, 0, 'k' },
		{ "margin", 1, 0, 'g' },        { "threshold", 1, 0, 't' },
		{ "prior-windows", 1, 0, 'p' }, { "halflife", 1, 0, 'h' },
		{ "calib-prior", 1, 0, 'P' },   { "debounce", 1, 0, 'D' },
		{ "rounds", 1, 0, 'r' },        { "epochs", 1, 0, 'e' },
		{ "batch", 1, 0, 'b' },         { "lr", 1, 0, 'l' },
		{ "seed", 1, 0, 'S' },          { "holdout", 1, 0, 'o' },
		{ "train-rows", 1, 0, 'n' },    { "save", 1, 0, 'v' },
		{ "load", 1, 0, 'L' },          { "points", 1, 0, 'x' },
		{ "help", 0, 0, 'Z' },          { 0, 0, 0, 0 },
	};
	const char *holdout = NULL;
	struct conf_mat pooled = { 0 };
	struct attr at = { 0 };
	FILE *pts = NULL;
	int o;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'd':
			cf.data = optarg;
			break;
		case 'm':
			cf.mode = !strcmp(optarg, "central") ? MODE_CENTRAL
				  : !strcmp(optarg, "local") ? MODE_LOCAL
							     : MODE_FED;
			break;
		case 'W':
			cf.W = (uint32_t)atoi(optarg);
			break;
		case 'H':
			snprintf(cf.hidden, sizeof(cf.hidden), "%s", optarg);
			break;
		case 'F':
			if (fv_feat_parse(optarg, &cf.feat) < 0)
				die("--features: values, diff or both");
			break;
		case 'c':
			cf.calibrate = atoi(optarg) != 0;
			break;
		case 's':
			cf.smooth = strtof(optarg, NULL);
			break;
		case 'M':
			if (fv_thr_method_parse(optarg, &cf.rule.method) < 0)
				die("--method: percentile, meanstd or pot");
			break;
		case 'q':
			cf.rule.q = atof(optarg) / 100.0;
			break;
		case 'k':
			cf.rule.k = atof(optarg);
			break;
		case 'g':
			cf.rule.margin = atof(optarg);
			break;
		case 't':
			if (fv_thr_mode_parse(optarg, &cf.so.mode) < 0)
				die("--threshold: global, local or adaptive");
			break;
		case 'p':
			cf.so.prior_windows = atof(optarg);
			break;
		case 'h':
			cf.so.halflife = atof(optarg);
			break;
		case 'P':
			cf.so.calib_prior = atof(optarg);
			break;
		case 'D':
			if (sscanf(optarg, "%u/%u", &cf.dk, &cf.dn) != 2)
				die("--debounce K/N");
			break;
		case 'r':
			cf.rounds = (uint32_t)atoi(optarg);
			break;
		case 'e':
			cf.epochs = (uint32_t)atoi(optarg);
			break;
		case 'b':
			cf.batch = (uint32_t)atoi(optarg);
			break;
		case 'l':
			cf.lr = strtof(optarg, NULL);
			break;
		case 'S':
			cf.seed = strtoull(optarg, NULL, 10);
			break;
		case 'o':
			holdout = optarg;
			break;
		case 'n':
			cf.train_rows = strtoul(optarg, NULL, 10);
			break;
		case 'v':
			cf.save = optarg;
			break;
		case 'L':
			cf.load = optarg;
			break;
		case 'x':
			cf.points = optarg;
			break;
		case 'Z':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (!cf.data) {
		usage();
		return 2;
	}
	if (fv_thr_rule_check(&cf.rule) < 0 || cf.W < 1 || cf.batch < 1)
		die("bad threshold rule, window or batch");
	for (int i = 0; holdout && i < 12; i++) {
		char name[16];

		snprintf(name, sizeof(name), "omi-%d", i + 1);
		if (!strcmp(name, holdout))
			cf.holdout = i;
	}
	if (holdout && cf.holdout < 0)
		die("--holdout: no such server");
	load_data();
	if (cf.points && !(pts = fopen(cf.points, "w")))
		die("cannot write --points");
	/* local: one fleet per entity; otherwise one fleet without the
	 * held-out entity (if any), which then joins with its model */
	for (uint32_t run = 0; run < (cf.mode == MODE_LOCAL ? NE : 1); run++) {
		bool mask[MAX_ENT];
		struct fv_global g;
		float *penult;
		char suffix[16] = "";

		if (cf.mode == MODE_LOCAL && cf.holdout >= 0 && (int)run != cf.holdout)
			continue;
		for (uint32_t e = 0; e < NE; e++)
			mask[e] = cf.mode == MODE_LOCAL ? e == run : (int)e != cf.holdout;
		if (cf.mode == MODE_LOCAL)
			snprintf(suffix, sizeof(suffix), ".%u", run);
		make_global(&g, mask);
		for (uint32_t e = 0; e < NE; e++)
			if (cf.mode != MODE_LOCAL || e == run) {
				free(E[e].x);
				free(E[e].cont);
				prep_windows(&E[e], &g);
			}
		penult = malloc(g.n_params * sizeof(float));
		if (cf.load) {
			load_model(suffix, &g, penult);
			reclose(&g, mask, penult);
		} else {
			train(&g, mask, penult);
			if (cf.save)
				save_model(suffix, &g, penult);
		}
		for (uint32_t e = 0; e < NE; e++) {
			struct conf_mat m;

			if (cf.mode == MODE_LOCAL ? e != run
						  : cf.holdout >= 0 && (int)e != cf.holdout)
				continue;
			m = score_entity(e, &g, pts, &at);
			print_line(E[e].name, g.threshold, &m);
			pooled.tp += m.tp;
			pooled.fp += m.fp;
			pooled.fn += m.fn;
			pooled.tn += m.tn;
		}
		free(penult);
		fv_global_clear(&g);
	}
	print_line("pooled", -1.0, &pooled);
	if (at.seg_all)
		printf("attribution: segments detected %u of %u; top-3 hit rate per detected "
		       "segment %.3f (random channels %.3f); per true-positive point %.3f over "
		       "%u points (random %.3f)\n",
		       at.seg_n, at.seg_all, at.seg_n ? at.seg_hit / at.seg_n : 0.0,
		       at.seg_n ? at.seg_rand / at.seg_n : 0.0, at.pt_n ? at.pt_hit / at.pt_n : 0.0,
		       at.pt_n, at.pt_n ? at.pt_rand / at.pt_n : 0.0);
	if (pts)
		fclose(pts);
	return 0;
}
