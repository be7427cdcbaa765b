/* One agent's scoring under the global model: preparation, calibration,
 * smoothing and the threshold in force. See include/fedvigil/scorer.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/scorer.h"

/* A column's normal error is floored at this share of the mean over
 * columns: a column the model reconstructs perfectly on normal data (a
 * constant sensor) would otherwise get an unbounded weight. */
#define COL_FLOOR_REL 1e-3
#define COL_FLOOR_ABS 1e-12

struct fv_scorer {
	struct fv_scorer_opts o;   /* options */
	uint32_t C;                /* channels */
	const struct fv_global *g; /* borrowed; NULL before a model */
	struct fv_model *m;        /* batch 1, scoring only */
	struct fv_model_spec spec; /* of m */
	uint32_t W, K;             /* window rows, input columns */
	size_t D;                  /* W * K */
	float *x;                  /* (D) prepared window */
	float *sqerr;              /* (D) */
	float *colerr;             /* (K) window-mean error per column */
	float *w;                  /* (K) calibration weights */
	double ewma;               /* smoothing state */
	bool have_ewma;            /* ewma is valid */
	struct fv_thr_adapt ad;    /* local and adaptive thresholds */
	double ref_q;              /* adaptive: the rule's value on the reference */
	float thr;                 /* threshold in force */
	size_t calib_n;            /* windows of the last calibration */
};

static const char *const mode_names[FV_THRMODE__MAX] = { "global", "local", "adaptive" };

int fv_thr_mode_parse(const char *s, enum fv_thr_mode *ret)
{
	for (int i = 0; i < FV_THRMODE__MAX; i++)
		if (strcmp(s, mode_names[i]) == 0) {
			*ret = (enum fv_thr_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *fv_thr_mode_name(enum fv_thr_mode m)
{
	return (unsigned)m < FV_THRMODE__MAX ? mode_names[m] : "?";
}

struct fv_scorer *fv_scorer_new(const struct fv_scorer_opts *o, uint32_t C)
{
	struct fv_scorer *s;

	if (!o || (unsigned)o->mode >= FV_THRMODE__MAX || C == 0 || C > FV_MAX_CHANNELS ||
	    !(o->prior_windows >= 0.0) || !isfinite(o->prior_windows) || !(o->halflife > 0.0) ||
	    !isfinite(o->halflife) || !(o->calib_prior >= 0.0) || !isfinite(o->calib_prior)) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->o = *o;
	s->C = C;
	return s;
}

static void drop_model(struct fv_scorer *s)
{
	fv_model_free(s->m);
	free(s->x);
	free(s->sqerr);
	free(s->colerr);
	free(s->w);
	s->m = NULL;
	s->x = s->sqerr = s->colerr = s->w = NULL;
	s->g = NULL;
	s->D = 0;
}

void fv_scorer_free(struct fv_scorer *s)
{
	if (!s)
		return;
	drop_model(s);
	free(s);
}

size_t fv_scorer_input(const struct fv_scorer *s)
{
	return s->g ? s->D : 0;
}

void fv_scorer_prepare(const struct fv_scorer *s, const float *raw, float *ret)
{
	fv_feat_prepare(ret, raw, s->W, s->C, s->g->mean, s->g->std, s->g->features);
}

/* Weights from per-column error sums over n windows, shrunk towards the
 * fleet's per-column means by calib_prior windows: w_c = 1 / n_c with
 *   n_c = (sum_c + P f_c) / (n + P),
 * floored (COL_FLOOR_*). Without calibration, or with nothing to go on,
 * every weight is 1. */
static void set_weights(struct fv_scorer *s, const double *sum, size_t n)
{
	const struct fv_global *g = s->g;
	double P = g->n_col_err == s->K ? s->o.calib_prior : 0.0, mean = 0.0, floor_;
	double e[FV_MAX_COLUMNS];

	if (!g->calibrate || (double)n + P <= 0.0) {
		for (uint32_t c = 0; c < s->K; c++)
			s->w[c] = 1.0f;
		return;
	}
	for (uint32_t c = 0; c < s->K; c++) {
		double num = (sum ? sum[c] : 0.0) + (P > 0.0 ? P * g->col_err[c] : 0.0);

		e[c] = num / ((double)n + P);
		mean += e[c] / s->K;
	}
	floor_ = fmax(COL_FLOOR_REL * mean, COL_FLOOR_ABS);
	for (uint32_t c = 0; c < s->K; c++)
		s->w[c] = (float)(1.0 / fmax(e[c], floor_));
}

/* The threshold of local/adaptive mode from the fleet's scores and own
 * (NULL: none yet).
 *   local:    the fleet's rule on (fleet scaled to prior_windows) + own.
 *   adaptive: the fleet's threshold times Q(recent) / Q(reference), where
 *             the reference is local's distribution and recent is the
 *             reference (weight prior_windows, kept) plus the observed
 *             scores with decay: 1 at first, then the factor by which this
 *             machine's normal has moved since its calibration. */
static void set_threshold(struct fv_scorer *s, const struct fv_sdist *own)
{
	const struct fv_global *g = s->g;
	struct fv_sdist fleet, ref;
	double x;

	s->thr = g->threshold;
	s->ref_q = 0.0;
	if (s->o.mode == FV_THRMODE_GLOBAL || !(g->threshold > 0.0f))
		return;
	fv_sdist_from_hist(&fleet, &g->scores, 1.0);
	if (s->o.mode == FV_THRMODE_LOCAL) {
		if (fv_thr_adapt_init(&s->ad, &g->rule, &fleet, s->o.prior_windows, 0.0) < 0)
			return; /* the decoder checked the rule: cannot happen */
		if (own)
			fv_thr_adapt_seed(&s->ad, own);
		if (fv_thr_adapt_threshold(&s->ad) > 0.0)
			s->thr = (float)fv_thr_adapt_threshold(&s->ad);
		return;
	}
	/* The reference is what `local` reads: the fleet's scores (weighing
	 * prior_windows) plus own, so that a machine with few windows of its
	 * own leans on the fleet's. */
	fv_sdist_init(&ref);
	if (fleet.total > 0.0 && s->o.prior_windows > 0.0) {
		ref = fleet;
		fv_sdist_scale(&ref, s->o.prior_windows / fleet.total);
	}
	if (own)
		fv_sdist_merge(&ref, own);
	if (fv_thr_compute(&ref, &g->rule, &x) < 0 || !(x > 0.0) ||
	    fv_thr_adapt_init(&s->ad, &g->rule, &ref, fmax(s->o.prior_windows, 1.0),
			      s->o.halflife) < 0)
		return; /* nothing to adapt from: the fleet's threshold */
	s->ref_q = x;
}

int fv_scorer_set_model(struct fv_scorer *s, const struct fv_global *g)
{
	uint32_t K;

	if (!g || g->n_channels != s->C)
		return -EDOM;
	K = fv_global_columns(g);
	if (!s->m || memcmp(&s->spec, &g->spec, sizeof(g->spec)) != 0 || s->W != g->window ||
	    s->K != K) {
		drop_model(s);
		s->W = g->window;
		s->K = K;
		s->D = (size_t)g->window * K;
		s->spec = g->spec;
		s->m = fv_model_new_scorer(&g->spec, 1);
		s->x = malloc(s->D * sizeof(float));
		s->sqerr = malloc(s->D * sizeof(float));
		s->colerr = malloc(K * sizeof(float));
		s->w = malloc(K * sizeof(float));
		if (!s->m || !s->x || !s->sqerr || !s->colerr || !s->w) {
			drop_model(s);
			return -ENOMEM;
		}
	}
	if (fv_model_set_params(s->m, g->params, g->n_params) < 0) {
		drop_model(s);
		return -EDOM;
	}
	s->g = g;
	s->have_ewma = false;
	s->calib_n = 0;
	set_weights(s, NULL, 0);
	set_threshold(s, NULL);
	return 0;
}

/* Reconstruct prepared window x: per-column window-mean errors into
 * s->colerr, and the calibrated, unsmoothed score. */
static double raw_score(struct fv_scorer *s, const float *x)
{
	double total = 0.0;

	fv_model_score(s->m, x, s->sqerr);
	for (uint32_t c = 0; c < s->K; c++)
		s->colerr[c] = 0.0f;
	for (uint32_t r = 0; r < s->W; r++)
		for (uint32_t c = 0; c < s->K; c++)
			s->colerr[c] += s->sqerr[(size_t)r * s->K + c];
	for (uint32_t c = 0; c < s->K; c++) {
		s->colerr[c] /= (float)s->W;
		total += (double)s->w[c] * s->colerr[c];
	}
	return total / s->K;
}

static double smooth(struct fv_scorer *s, double v, bool cont)
{
	double a = s->g->smooth;

	if (!(a > 0.0 && a < 1.0) || !cont || !s->have_ewma || !isfinite(s->ewma))
		s->ewma = v;
	else
		s->ewma = a * v + (1.0 - a) * s->ewma;
	s->have_ewma = true;
	return s->ewma;
}

struct rows_of_array {
	const float *x; /* (N, D) */
	size_t D;
};

static void array_row(void *ctx, size_t i, float *dst)
{
	const struct rows_of_array *r = ctx;

	memcpy(dst, r->x + i * r->D, r->D * sizeof(float));
}

int fv_scorer_calibrate(struct fv_scorer *s, const float *x, const uint8_t *cont, size_t N,
			struct fv_hist *ret_hist, double *ret_col_err)
{
	struct rows_of_array r = { x, s->D };

	if (!s->g || (N && !x))
		return -EINVAL;
	return fv_scorer_calibrate_rows(s, array_row, &r, cont, N, ret_hist, ret_col_err);
}

int fv_scorer_calibrate_rows(struct fv_scorer *s, fv_model_row_fn row, void *ctx,
			     const uint8_t *cont, size_t N, struct fv_hist *ret_hist,
			     double *ret_col_err)
{
	double sum[FV_MAX_COLUMNS] = { 0 };
	struct fv_sdist own;
	float *ce = NULL;
	size_t n = 0;

	if (!s->g || (N && !row))
		return -EINVAL;
	if (N) {
		ce = malloc(N * s->K * sizeof(float));
		if (!ce)
			return -ENOMEM;
	}
	/* Pass 1: per-column errors of every window (the weights need them
	 * all before any window can be scored). A window whose error is not
	 * finite (a broken model) is left out. */
	for (size_t i = 0; i < N; i++) {
		bool ok = true;

		row(ctx, i, s->x);
		raw_score(s, s->x);
		for (uint32_t c = 0; c < s->K; c++)
			ok &= isfinite(s->colerr[c]);
		memcpy(ce + i * s->K, s->colerr, s->K * sizeof(float));
		if (!ok) {
			ce[i * s->K] = NAN;
			continue;
		}
		for (uint32_t c = 0; c < s->K; c++)
			sum[c] += s->colerr[c];
		n++;
	}
	set_weights(s, sum, n);
	/* Pass 2: scores as the live path computes them, smoothed along
	 * runs of consecutive windows. */
	fv_sdist_init(&own);
	if (ret_hist)
		fv_hist_init(ret_hist);
	s->have_ewma = false;
	for (size_t i = 0; i < N; i++) {
		const float *e = ce + i * s->K;
		double v = 0.0;

		if (isnan(e[0])) {
			s->have_ewma = false;
			continue;
		}
		for (uint32_t c = 0; c < s->K; c++)
			v += (double)s->w[c] * e[c];
		v = smooth(s, v / s->K, cont && cont[i]);
		fv_sdist_add(&own, v, 1.0);
		if (ret_hist)
			fv_hist_add(ret_hist, v);
	}
	/* The live stream continues from wherever it is, not from the
	 * buffer's last window. */
	s->have_ewma = false;
	if (ret_col_err)
		memcpy(ret_col_err, sum, s->K * sizeof(double));
	s->calib_n = n;
	set_threshold(s, &own);
	free(ce);
	return 0;
}

int fv_scorer_score(struct fv_scorer *s, const float *raw, bool cont, float *ret_score,
		    float *ret_share)
{
	double v, total = 0.0;

	if (!s->g)
		return -EINVAL;
	fv_scorer_prepare(s, raw, s->x);
	v = raw_score(s, s->x);
	*ret_score = (float)smooth(s, v, cont);
	if (!ret_share)
		return 0;
	/* Shares of this window's (calibrated) error, per channel: the
	 * columns of a channel's values and differences together. */
	for (uint32_t c = 0; c < s->C; c++)
		ret_share[c] = 0.0f;
	for (uint32_t k = 0; k < s->K; k++) {
		double part = (double)s->w[k] * s->colerr[k];

		if (!isfinite(part))
			part = 0.0;
		ret_share[k % s->C] += (float)part;
		total += part;
	}
	for (uint32_t c = 0; c < s->C; c++)
		ret_share[c] = total > 0.0 ? (float)(ret_share[c] / total) : 1.0f / (float)s->C;
	return 0;
}

float fv_scorer_threshold(const struct fv_scorer *s)
{
	return s->g ? s->thr : 0.0f;
}

void fv_scorer_observe(struct fv_scorer *s, float score, bool in_alert)
{
	double x, c, v = score;

	if (!s->g || s->o.mode != FV_THRMODE_ADAPTIVE || !(s->ref_q > 0.0) || !isfinite(v))
		return;
	/* Censored: a score above c, the threshold before the rule's margin,
	 * counts as the recent quantile x itself, so anomalies cannot lift
	 * the quantile, and leaving them out would not bias it down. (With a
	 * margin, scores between x and the threshold are ordinary; counting
	 * them as they are would let a fault lift the threshold ahead of
	 * itself.) An alert's windows below c are left out too. */
	x = fv_thr_adapt_threshold(&s->ad) / s->g->rule.margin; /* the rule's value has it */
	c = (double)s->thr / s->g->rule.margin;
	if (s->thr > 0.0f && v > c)
		v = x;
	else if (in_alert)
		return;
	if (fv_thr_adapt_observe(&s->ad, v) < 0)
		return;
	x = fv_thr_adapt_threshold(&s->ad);
	if (x > 0.0)
		s->thr = (float)((double)s->g->threshold * x / s->ref_q);
}

size_t fv_scorer_calibrated(const struct fv_scorer *s)
{
	return s->calib_n;
}

const float *fv_scorer_weights(const struct fv_scorer *s)
{
	return s->w;
}

int fv_detect_close_round(struct fv_global *g, const struct fv_update *u, uint32_t k,
			  const struct fv_thr_rule *rule)
{
	uint32_t K = fv_global_columns(g);
	double sum[FV_MAX_COLUMNS] = { 0 }, n = 0.0, x;
	struct fv_hist h;

	fv_hist_init(&h);
	for (uint32_t i = 0; i < k; i++) {
		fv_hist_merge(&h, &u[i].hist);
		if (u[i].n_col_err != K || !u[i].col_err || u[i].hist.count == 0)
			continue;
		for (uint32_t c = 0; c < K; c++)
			sum[c] += u[i].col_err[c];
		n += (double)u[i].hist.count;
	}
	if (n > 0.0) {
		float *ce = g->n_col_err == K ? g->col_err : malloc(K * sizeof(float));

		if (!ce)
			return -ENOMEM;
		for (uint32_t c = 0; c < K; c++)
			ce[c] = (float)(sum[c] / n);
		g->col_err = ce;
		g->n_col_err = K;
	}
	g->rule = *rule;
	if (h.count > 0) {
		g->scores = h;
		if (fv_thr_from_hist(&h, rule, &x) == 0 && x > 0.0 && x < 3.4e38)
			g->threshold = (float)x;
	}
	return 0;
}
