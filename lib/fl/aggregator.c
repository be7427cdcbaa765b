/* Aggregators: clipping, robust rules, DP noise and server optimizers (fl.h).
 *
 * A round, for k updates d_1..d_k of n parameters each:
 *
 *  1. Order: the updates are sorted by agent name; every loop below runs in
 *     that order, so equal inputs give bit-identical outputs whatever order
 *     they arrived in (floating-point sums are not associative).
 *  2. Clip: f_i = min(1, C / |d_i|) with C = clip_norm (when > 0), and
 *     f_i = min(f_i, r med_j |d_j| / |d_i|) with r = clip_ratio (when > 0,
 *     not under DP). The clipped updates are never materialised: every rule
 *     reads f_i * d_i. Weighted means cap each claimed n_samples at
 *     sample_cap * the median claim of the round first.
 *  3. Rule -> one pseudo-gradient D (n floats):
 *       mean          sum_i w_i f_i d_i / sum_i w_i, w_i = n_samples
 *                     (w_i = 1 under DP: then sum_i f_i d_i + sigma C z, / k)
 *       median        per coordinate, the middle value (mean of the two
 *                     middle ones for even k)
 *       trimmed mean  per coordinate, drop the t = floor(beta k) smallest and
 *                     largest values, average the k - 2t others
 *       Krum          score_i = sum of squared distances from f_i d_i to its
 *                     k - f - 2 nearest others; D = the update of least score
 *       multi-Krum    the unweighted mean of the m updates of least score
 *  4. Server optimizer (Reddi et al. 2021, "Adaptive Federated Optimization",
 *     Algorithm 2, without bias correction; m_{-1} = 0, v_{-1} = tau^2):
 *       plain         x += eta D
 *       FedAvgM       m = beta m + D;                        x += eta m
 *       FedAdagrad    m = b1 m + (1-b1) D; v = v + D^2;       x += eta m/(sqrt v + tau)
 *       FedAdam       ...                  v = b2 v + (1-b2) D^2
 *       FedYogi       ...                  v = v - (1-b2) D^2 sign(v - D^2)
 *
 * The new parameters are computed into a scratch vector and checked before
 * anything is committed, so a failed round leaves params, moments and the
 * privacy spent as they were. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "fedvigil/fl.h"
#include "fedvigil/util.h"

#define BLOCK 256 /* coordinates accumulated per pass over the k inputs */

const char *const fv_agg_algo_names[FV_AGG__MAX + 1] = {
	[FV_AGG_FEDAVG] = "fedavg",
	[FV_AGG_FEDPROX] = "fedprox",
	[FV_AGG_FEDAVGM] = "fedavgm",
	[FV_AGG_FEDADAM] = "fedadam",
	[FV_AGG_FEDYOGI] = "fedyogi",
	[FV_AGG_FEDADAGRAD] = "fedadagrad",
	[FV_AGG_MEDIAN] = "median",
	[FV_AGG_TRIMMED_MEAN] = "trimmed_mean",
	[FV_AGG_KRUM] = "krum",
	[FV_AGG_MULTI_KRUM] = "multi_krum",
	[FV_AGG__MAX] = NULL,
};

struct order_ent {
	const char *name; /* borrowed from the update */
	uint32_t idx;     /* index in the caller's array */
};

struct fv_agg {
	struct fv_agg_config cfg;
	size_t n;            /* parameters */
	uint32_t max_k;      /* updates per round at most */
	double lr;           /* resolved server learning rate */
	uint64_t dp_seed;    /* resolved noise seed */

	/* persisted state */
	uint64_t steps;      /* optimizer steps taken */
	float *m;            /* n: momentum / first moment (NULL if unused) */
	float *v;            /* n: second moment (NULL if unused) */
	double rdp[FV_DP_N_ORDERS]; /* privacy spent per order */
	uint64_t dp_rounds;  /* noisy rounds accounted */
	double cache_q;      /* sampling rate of cache_rdp (-1: none) */
	double cache_rdp[FV_DP_N_ORDERS]; /* RDP of one round at cache_q */

	/* scratch, sized at creation */
	float *step;         /* n: the rule's pseudo-gradient D */
	float *out;          /* n: new parameters before commit */
	struct order_ent *ord; /* max_k: updates in name order */
	const float **d;     /* max_k: deltas in name order */
	double *w;           /* max_k: weights in name order */
	double *f;           /* max_k: clip factors in name order */
	float *col;          /* max_k: one coordinate of every update */
	double *nrm;         /* max_k: update norms in name order */
	double *tmp;         /* max_k: sort scratch for medians */
	double *dist;        /* max_k: distances from one update to the others */
	double *score;       /* max_k: Krum scores */
	uint32_t *pick;      /* max_k: Krum ranking */
	bool *in_use;        /* max_k: entered the aggregate (name order) */
};

const char *fv_agg_algo_name(enum fv_agg_algo a)
{
	if ((unsigned)a >= FV_AGG__MAX)
		return "unknown";
	return fv_agg_algo_names[a];
}

int fv_agg_algo_parse(const char *s, enum fv_agg_algo *ret_algo)
{
	if (!s || !ret_algo)
		return -EINVAL;
	for (int i = 0; i < FV_AGG__MAX; i++) {
		if (strcmp(s, fv_agg_algo_names[i]) == 0) {
			*ret_algo = (enum fv_agg_algo)i;
			return 0;
		}
	}
	return -EINVAL;
}

static bool is_adaptive(enum fv_agg_algo a)
{
	return a == FV_AGG_FEDADAM || a == FV_AGG_FEDYOGI || a == FV_AGG_FEDADAGRAD;
}

static bool is_mean(enum fv_agg_algo a)
{
	return a <= FV_AGG_FEDADAGRAD;
}

double fv_agg_server_lr(const struct fv_agg_config *cfg)
{
	if (cfg->server_lr > 0.0)
		return cfg->server_lr;
	return is_adaptive(cfg->algo) ? 0.01 : 1.0;
}

int fv_agg_config_check(const struct fv_agg_config *c, char *err, size_t errlen)
{
#define BAD(...) (snprintf(err, errlen, __VA_ARGS__), -EINVAL)
	if (!c)
		return BAD("no configuration");
	if ((unsigned)c->algo >= FV_AGG__MAX)
		return BAD("algorithm %d: unknown", (int)c->algo);
	if (!(c->server_lr >= 0.0 && isfinite(c->server_lr)))
		return BAD("server_lr = %g: must be >= 0 (0 = the algorithm's default)",
			   c->server_lr);
	if (!(c->momentum >= 0.0 && c->momentum < 1.0))
		return BAD("momentum = %g: must be in [0, 1)", c->momentum);
	if (!(c->beta1 >= 0.0 && c->beta1 < 1.0))
		return BAD("beta1 = %g: must be in [0, 1)", c->beta1);
	if (!(c->beta2 >= 0.0 && c->beta2 < 1.0))
		return BAD("beta2 = %g: must be in [0, 1)", c->beta2);
	if (!(c->tau > 0.0 && isfinite(c->tau)))
		return BAD("tau = %g: must be > 0", c->tau);
	if (c->algo == FV_AGG_TRIMMED_MEAN && !(c->trim_beta > 0.0 && c->trim_beta < 0.5))
		return BAD("trim_beta = %g: trimmed_mean needs 0 < trim_beta < 0.5",
			   c->trim_beta);
	if (!(c->clip_norm >= 0.0 && isfinite(c->clip_norm)))
		return BAD("clip_norm = %g: must be >= 0 (0 = no clipping)", c->clip_norm);
	if (!(c->clip_ratio == 0.0 || (c->clip_ratio >= 1.0 && isfinite(c->clip_ratio))))
		return BAD("clip_ratio = %g: must be 0 (off) or >= 1 (times the median "
			   "update norm)", c->clip_ratio);
	if (!(c->sample_cap == 0.0 || (c->sample_cap >= 1.0 && isfinite(c->sample_cap))))
		return BAD("sample_cap = %g: must be 0 (off) or >= 1 (times the median "
			   "claimed sample count)", c->sample_cap);
	if (!(c->prox_mu >= 0.0 && isfinite(c->prox_mu)))
		return BAD("prox_mu = %g: must be >= 0", c->prox_mu);
	if (c->algo == FV_AGG_FEDPROX && !(c->prox_mu > 0.0))
		return BAD("fedprox needs prox_mu > 0 (it is FedAvg with a proximal term)");
	if (c->algo == FV_AGG_MULTI_KRUM && c->krum_m == 1)
		return BAD("krum_m = 1: that is krum; use algorithm = krum");
	if (c->dp) {
		if (!is_mean(c->algo))
			return BAD("dp with %s: the noise is calibrated to the sum of clipped "
				   "updates, so dp needs a mean-based algorithm (fedavg, fedprox, "
				   "fedavgm, fedadam, fedyogi, fedadagrad)",
				   fv_agg_algo_name(c->algo));
		if (!(c->clip_norm > 0.0))
			return BAD("dp needs clip_norm > 0 (the sensitivity C)");
		if (!(c->dp_noise > 0.0 && isfinite(c->dp_noise)))
			return BAD("dp_noise = %g: must be > 0", c->dp_noise);
		if (!(c->dp_delta > 0.0 && c->dp_delta < 1.0))
			return BAD("dp_delta = %g: must be in (0, 1)", c->dp_delta);
	}
	return 0;
#undef BAD
}

struct fv_agg *fv_agg_new(const struct fv_agg_config *cfg, size_t n_params, uint32_t max_k)
{
	struct fv_agg *a;
	char err[256];
	size_t k;

	if (!cfg || n_params == 0 || max_k == 0 || fv_agg_config_check(cfg, err, sizeof(err))) {
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		goto nomem;
	a->cfg = *cfg;
	a->n = n_params;
	a->max_k = max_k;
	a->lr = fv_agg_server_lr(cfg);
	a->cache_q = -1.0;
	a->dp_seed = cfg->dp_seed;
	if (cfg->dp && a->dp_seed == 0) {
		/* A known seed lets anyone subtract the noise: draw a secret one. */
		if (getrandom(&a->dp_seed, sizeof(a->dp_seed), 0) != sizeof(a->dp_seed)) {
			free(a);
			errno = EIO;
			return NULL;
		}
	}
	k = max_k;
	a->step = malloc(n_params * sizeof(float));
	a->out = malloc(n_params * sizeof(float));
	a->ord = malloc(k * sizeof(*a->ord));
	a->d = malloc(k * sizeof(*a->d));
	a->w = malloc(k * sizeof(double));
	a->f = malloc(k * sizeof(double));
	a->col = malloc(k * sizeof(float));
	a->nrm = malloc(k * sizeof(double));
	a->tmp = malloc(k * sizeof(double));
	a->dist = malloc(k * sizeof(double));
	a->score = malloc(k * sizeof(double));
	a->pick = malloc(k * sizeof(uint32_t));
	a->in_use = malloc(k * sizeof(bool));
	if (!a->step || !a->out || !a->ord || !a->d || !a->w || !a->f || !a->col || !a->nrm ||
	    !a->tmp || !a->dist || !a->score || !a->pick || !a->in_use)
		goto nomem;
	if (cfg->algo == FV_AGG_FEDAVGM || is_adaptive(cfg->algo)) {
		a->m = calloc(n_params, sizeof(float));
		if (!a->m)
			goto nomem;
	}
	if (is_adaptive(cfg->algo)) {
		a->v = malloc(n_params * sizeof(float));
		if (!a->v)
			goto nomem;
		for (size_t j = 0; j < n_params; j++)
			a->v[j] = (float)(cfg->tau * cfg->tau);
	}
	return a;
nomem:
	fv_agg_free(a);
	errno = ENOMEM;
	return NULL;
}

void fv_agg_free(struct fv_agg *a)
{
	if (!a)
		return;
	free(a->m);
	free(a->v);
	free(a->step);
	free(a->out);
	free(a->ord);
	free(a->d);
	free(a->w);
	free(a->f);
	free(a->col);
	free(a->nrm);
	free(a->tmp);
	free(a->dist);
	free(a->score);
	free(a->pick);
	free(a->in_use);
	free(a);
}

const struct fv_agg_config *fv_agg_get_config(const struct fv_agg *a)
{
	return &a->cfg;
}

/* ---- rules ---- */

static int cmp_order(const void *x, const void *y)
{
	const struct order_ent *a = x, *b = y;

	return strcmp(a->name, b->name);
}

static int cmp_float(const void *x, const void *y)
{
	float a = *(const float *)x, b = *(const float *)y;

	return (a > b) - (a < b);
}

/* D = (sum_i c_i d_i + noise) / denom with c_i = w_i f_i; noise is sigma C z
 * (z standard normal, one per coordinate in order) when rng is given. */
static void rule_mean(struct fv_agg *a, uint32_t k, double denom, struct fv_rng *rng,
		      double noise_std)
{
	for (size_t j0 = 0; j0 < a->n; j0 += BLOCK) {
		size_t len = FV_MIN((size_t)BLOCK, a->n - j0);
		double acc[BLOCK];

		for (size_t j = 0; j < len; j++)
			acc[j] = 0.0;
		for (uint32_t i = 0; i < k; i++) {
			const float *d = a->d[i] + j0;
			double c = a->w[i] * a->f[i];

			if (a->w[i] == 0.0)
				continue;
			for (size_t j = 0; j < len; j++)
				acc[j] += c * (double)d[j];
		}
		if (rng)
			for (size_t j = 0; j < len; j++)
				acc[j] += noise_std * fv_rng_normal(rng);
		for (size_t j = 0; j < len; j++)
			a->step[j0 + j] = (float)(acc[j] / denom);
	}
}

/* Per coordinate: sort the k clipped values, average [lo, k - lo). */
static void rule_sorted(struct fv_agg *a, uint32_t k, uint32_t lo)
{
	uint32_t hi = k - lo;

	for (size_t j = 0; j < a->n; j++) {
		double s = 0.0;

		for (uint32_t i = 0; i < k; i++)
			a->col[i] = (float)(a->f[i] * (double)a->d[i][j]);
		qsort(a->col, k, sizeof(float), cmp_float);
		for (uint32_t i = lo; i < hi; i++)
			s += (double)a->col[i];
		a->step[j] = (float)(s / (double)(hi - lo));
	}
}

static void rule_median(struct fv_agg *a, uint32_t k)
{
	/* Odd k: the middle one (lo = (k-1)/2 leaves one); even k: the mean
	 * of the two middle ones (lo = k/2 - 1 leaves two). */
	rule_sorted(a, k, k % 2 ? (k - 1) / 2 : k / 2 - 1);
}

static double sqdist(const struct fv_agg *a, uint32_t x, uint32_t y)
{
	const float *dx = a->d[x], *dy = a->d[y];
	double fx = a->f[x], fy = a->f[y], s = 0.0;

	for (size_t j = 0; j < a->n; j++) {
		double e = fx * (double)dx[j] - fy * (double)dy[j];

		s += e * e;
	}
	return s;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

/* Scores in a->score; a->pick = indices by ascending score, ties by name. */
static void krum_rank(struct fv_agg *a, uint32_t k, uint32_t f)
{
	/* Neighbours: k - f - 2 (Blanchard et al. 2017); at least 1 when
	 * there are fewer updates than the rule assumes, 0 with one update. */
	uint32_t nb = k > f + 2 ? k - f - 2 : 1;

	if (nb > k - 1)
		nb = k - 1;
	for (uint32_t i = 0; i < k; i++) {
		uint32_t c = 0;
		double s = 0.0;

		/* d(i, j) is computed from both ends; (x - y)^2 == (y - x)^2
		 * exactly, so the two agree bit for bit. */
		for (uint32_t j = 0; j < k; j++)
			if (j != i)
				a->dist[c++] = sqdist(a, i, j);
		qsort(a->dist, c, sizeof(double), cmp_double);
		for (uint32_t j = 0; j < nb; j++)
			s += a->dist[j];
		a->score[i] = s;
	}
	/* Stable selection sort by score: k is small (Krum is O(k^2 n)). */
	for (uint32_t i = 0; i < k; i++)
		a->pick[i] = i;
	for (uint32_t i = 0; i < k; i++) {
		uint32_t best = i;

		for (uint32_t j = i + 1; j < k; j++)
			if (a->score[a->pick[j]] < a->score[a->pick[best]])
				best = j;
		uint32_t t = a->pick[best];

		memmove(&a->pick[i + 1], &a->pick[i], (best - i) * sizeof(uint32_t));
		a->pick[i] = t;
	}
}

/* Median of the n values of x (only those > 0 with pos: an agent that
 * sent nothing, or whose weight is 0, says nothing about the scale), the
 * mean of the two middle ones for an even count, sorted in a->tmp; 0 if
 * none. */
static double median_of(struct fv_agg *a, const double *x, uint32_t n, bool pos)
{
	uint32_t c = 0;

	for (uint32_t i = 0; i < n; i++)
		if (!pos || x[i] > 0.0)
			a->tmp[c++] = x[i];
	if (c == 0)
		return 0.0;
	qsort(a->tmp, c, sizeof(double), cmp_double);
	return c % 2 ? a->tmp[c / 2] : 0.5 * (a->tmp[c / 2 - 1] + a->tmp[c / 2]);
}

/* ---- optimizer ---- */

/* New parameters into a->out; commit = also update the moments. false if a
 * value is not finite (only possible without commit: the caller runs a dry
 * pass first). */
static bool optimize(struct fv_agg *a, const float *params, bool commit, double *ret_norm)
{
	const struct fv_agg_config *c = &a->cfg;
	double lr = a->lr, norm = 0.0;

	for (size_t j = 0; j < a->n; j++) {
		double D = (double)a->step[j], x = (double)params[j], m, v, s;

		switch (c->algo) {
		case FV_AGG_FEDAVGM:
			m = c->momentum * (double)a->m[j] + D;
			s = lr * (double)(float)m;
			if (commit)
				a->m[j] = (float)m;
			break;
		case FV_AGG_FEDADAM:
		case FV_AGG_FEDYOGI:
		case FV_AGG_FEDADAGRAD:
			m = c->beta1 * (double)a->m[j] + (1.0 - c->beta1) * D;
			v = (double)a->v[j];
			if (c->algo == FV_AGG_FEDADAGRAD)
				v = v + D * D;
			else if (c->algo == FV_AGG_FEDADAM)
				v = c->beta2 * v + (1.0 - c->beta2) * D * D;
			else
				v = v - (1.0 - c->beta2) * D * D *
						(double)((v > D * D) - (v < D * D));
			/* The step uses the moments as they are stored. */
			m = (double)(float)m;
			v = (double)(float)v;
			s = lr * m / (sqrt(fmax(v, 0.0)) + c->tau);
			if (commit) {
				a->m[j] = (float)m;
				a->v[j] = (float)v;
			}
			break;
		default:
			s = lr * D;
			break;
		}
		a->out[j] = (float)(x + s);
		if (!isfinite(a->out[j]))
			return false;
		double e = (double)a->out[j] - x;

		norm += e * e;
	}
	if (ret_norm)
		*ret_norm = sqrt(norm);
	return true;
}

/* ---- round ---- */

/* Eight running sums (j mod 8), added pairwise at the end: a fixed order,
 * so the same bytes give the same norm wherever they are summed, and no
 * chain of dependent additions (one sum was ~30 ms for 1,000 updates of
 * 21,453 floats, latency-bound). */
double fv_agg_norm(const float *d, size_t n)
{
	double s[8] = { 0 };
	size_t j = 0;

	for (; j + 8 <= n; j += 8)
		for (int l = 0; l < 8; l++)
			s[l] += (double)d[j + l] * (double)d[j + l];
	for (int l = 0; j < n; j++, l++)
		s[l] += (double)d[j] * (double)d[j];
	double nrm = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));

	return isfinite(nrm) ? sqrt(nrm) : -1.0;
}

/* No NaN or Inf among x (n): every exponent bit set means one. */
static bool all_finite(const float *x, size_t n)
{
	uint32_t bad = 0;

	for (size_t j = 0; j < n; j++) {
		uint32_t b;

		memcpy(&b, &x[j], 4);
		bad |= (b & 0x7f800000u) == 0x7f800000u;
	}
	return !bad;
}

static uint64_t noise_seed(uint64_t seed, uint64_t round)
{
	return seed ^ (0xD1B54A32D192ED03ull * (round + 1));
}

int fv_agg_round(struct fv_agg *a, const float *params, const struct fv_agg_update *up,
		 uint32_t k, double sample_rate, uint64_t round, float *ret_params,
		 bool *used, struct fv_agg_result *ret)
{
	const struct fv_agg_config *c;
	struct fv_agg_result res;
	double rdp_new[FV_DP_N_ORDERS];
	double wsum = 0.0;
	uint32_t t = 0, n_used = 0;
	bool robust_ok = true;
	int r;

	if (!a || !params || !up || !ret_params || k == 0)
		return -EINVAL;
	if (k > a->max_k)
		return -E2BIG;
	c = &a->cfg;
	if (c->dp && !(sample_rate > 0.0 && sample_rate <= 1.0))
		return -EINVAL;
	for (uint32_t i = 0; i < k; i++) {
		if (!up[i].name || !up[i].delta)
			return -EINVAL;
		a->ord[i].name = up[i].name;
		a->ord[i].idx = i;
	}
	qsort(a->ord, k, sizeof(*a->ord), cmp_order);
	for (uint32_t i = 1; i < k; i++)
		if (strcmp(a->ord[i - 1].name, a->ord[i].name) == 0)
			return -EALREADY;

	memset(&res, 0, sizeof(res));
	for (uint32_t i = 0; i < k; i++) {
		const struct fv_agg_update *u = &up[a->ord[i].idx];
		double nrm = 0.0;

		a->d[i] = u->delta;
		/* Robust rules and DP do not trust claimed sample counts. */
		a->w[i] = is_mean(c->algo) && !c->dp ? (double)u->n_samples : 1.0;
		wsum += a->w[i];
		/* One pass without early exits (it vectorises); the norm only
		 * when clipping needs it (clip_norm, or clip_ratio without DP):
		 * a close of thousands of updates reads every delta here once,
		 * unless the caller did it as the update arrived. */
		if (u->have_norm) {
			if (!(u->norm >= 0.0) || !isfinite(u->norm))
				return -ERANGE; /* fv_agg_norm() saw a NaN or an Inf */
			a->nrm[i] = u->norm;
		} else if (c->clip_norm > 0.0 || (c->clip_ratio > 0.0 && !c->dp)) {
			nrm = fv_agg_norm(u->delta, a->n);
			if (nrm < 0.0)
				return -ERANGE;
			a->nrm[i] = nrm;
		} else if (!all_finite(u->delta, a->n)) {
			return -ERANGE;
		} else {
			a->nrm[i] = 0.0; /* not needed */
		}
		a->in_use[i] = a->w[i] > 0.0;
	}
	/* Claimed counts are the agents' word: a weighted mean caps them at
	 * sample_cap times the round's median claim, so that a few liars
	 * (2^40 windows) cannot take the mean over. The median is an honest
	 * agent's as long as fewer than half lie. */
	if (is_mean(c->algo) && !c->dp && c->sample_cap > 0.0) {
		double cap = c->sample_cap * median_of(a, a->w, k, true);

		wsum = 0.0;
		for (uint32_t i = 0; i < k; i++) {
			if (a->w[i] > cap) {
				a->w[i] = cap;
				res.n_capped++;
			}
			wsum += a->w[i];
		}
	}
	/* Clip: to clip_norm, and (without DP, whose sensitivity must not
	 * depend on the data) to clip_ratio times the median norm, which bounds
	 * a huge but finite update whatever the model's scale. */
	{
		double rel = c->clip_ratio > 0.0 && !c->dp
				     ? c->clip_ratio * median_of(a, a->nrm, k, true)
				     : 0.0;

		for (uint32_t i = 0; i < k; i++) {
			double lim = c->clip_norm > 0.0 ? c->clip_norm : INFINITY;

			if (rel > 0.0 && rel < lim)
				lim = rel;
			a->f[i] = 1.0;
			if (a->nrm[i] > lim) {
				a->f[i] = lim / a->nrm[i];
				res.n_clipped++;
			}
		}
	}

	switch (c->algo) {
	case FV_AGG_MEDIAN:
		rule_median(a, k);
		robust_ok = k >= 3;
		n_used = k;
		break;
	case FV_AGG_TRIMMED_MEAN:
		t = (uint32_t)floor(c->trim_beta * k + 1e-9);
		if (2 * t >= k) /* cannot happen with beta < 0.5; keep one */
			t = (k - 1) / 2;
		rule_sorted(a, k, t);
		robust_ok = t >= 1;
		n_used = k - 2 * t;
		break;
	case FV_AGG_KRUM:
	case FV_AGG_MULTI_KRUM: {
		uint32_t m = 1;

		if (c->algo == FV_AGG_MULTI_KRUM)
			m = c->krum_m ? c->krum_m : (k > c->krum_f ? k - c->krum_f : 1);
		m = FV_MAX(1u, FV_MIN(m, k));
		krum_rank(a, k, c->krum_f);
		for (uint32_t i = 0; i < k; i++) {
			a->w[i] = 0.0;
			a->in_use[i] = false;
		}
		for (uint32_t i = 0; i < m; i++) {
			a->w[a->pick[i]] = 1.0;
			a->in_use[a->pick[i]] = true;
		}
		rule_mean(a, k, (double)m, NULL, 0.0);
		robust_ok = (uint64_t)k >= 2ull * c->krum_f + 3;
		n_used = m;
		break;
	}
	default: { /* the FedAvg family */
		struct fv_rng rng;

		if (!(wsum > 0.0))
			return -EINVAL;
		if (c->dp) {
			fv_rng_seed(&rng, noise_seed(a->dp_seed, round));
			rule_mean(a, k, (double)k, &rng, c->dp_noise * c->clip_norm);
		} else {
			rule_mean(a, k, wsum, NULL, 0.0);
		}
		n_used = 0;
		for (uint32_t i = 0; i < k; i++)
			n_used += a->w[i] > 0.0;
		break;
	}
	}

	if (c->dp) {
		/* The sampling rate rarely changes between rounds; the series
		 * of the fractional orders are worth keeping. */
		if (sample_rate != a->cache_q) {
			for (uint32_t o = 0; o < FV_DP_N_ORDERS; o++) {
				/* An order whose series cannot be summed in double
				 * precision drops out of the minimum (infinite). */
				r = fv_dp_rdp(sample_rate, c->dp_noise, fv_dp_orders[o],
					      &a->cache_rdp[o]);
				if (r < 0)
					a->cache_rdp[o] = INFINITY;
			}
			a->cache_q = sample_rate;
		}
		for (uint32_t o = 0; o < FV_DP_N_ORDERS; o++)
			rdp_new[o] = a->rdp[o] + a->cache_rdp[o];
		r = fv_dp_epsilon(fv_dp_orders, rdp_new, FV_DP_N_ORDERS, c->dp_delta, false,
				  &res.dp_epsilon, &res.dp_order);
		if (r < 0)
			return r;
	}

	/* Dry run, then commit: no state changes unless the result is finite. */
	if (!optimize(a, params, false, &res.step_norm))
		return -ERANGE;
	optimize(a, params, true, NULL);
	memcpy(ret_params, a->out, a->n * sizeof(float));
	a->steps++;
	if (c->dp) {
		memcpy(a->rdp, rdp_new, sizeof(a->rdp));
		a->dp_rounds++;
	}
	if (used)
		for (uint32_t i = 0; i < k; i++)
			used[a->ord[i].idx] = a->in_use[i];
	res.n_in = k;
	res.n_used = n_used;
	res.n_trimmed = t;
	res.robust_ok = robust_ok;
	res.steps = a->steps;
	if (!c->dp && a->dp_rounds > 0) /* spent earlier, still spent */
		fv_dp_epsilon(fv_dp_orders, a->rdp, FV_DP_N_ORDERS, c->dp_delta > 0 ?
			      c->dp_delta : 1e-5, false, &res.dp_epsilon, &res.dp_order);
	if (ret)
		*ret = res;
	return 0;
}

/* ---- state ---- */

void fv_agg_state_view(const struct fv_agg *a, struct fv_agg_state *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->algo = (uint32_t)a->cfg.algo;
	ret->steps = a->steps;
	if (a->m) {
		ret->n_params = a->n;
		ret->m = a->m;
		ret->v = a->v;
	}
	if (a->dp_rounds > 0) {
		ret->n_orders = FV_DP_N_ORDERS;
		ret->orders = (double *)(uintptr_t)fv_dp_orders;
		ret->rdp = (double *)(uintptr_t)a->rdp;
	}
	ret->dp_rounds = a->dp_rounds;
}

int fv_agg_set_state(struct fv_agg *a, const struct fv_agg_state *s)
{
	bool moments;

	if (!a || !s)
		return -EINVAL;
	if (s->n_orders) {
		if (s->n_orders != FV_DP_N_ORDERS || !s->orders || !s->rdp)
			return -EDOM;
		for (uint32_t o = 0; o < FV_DP_N_ORDERS; o++) {
			if (s->orders[o] != fv_dp_orders[o])
				return -EDOM;
			if (!(s->rdp[o] >= 0.0) || isnan(s->rdp[o]))
				return -ERANGE;
		}
	}
	moments = s->algo == (uint32_t)a->cfg.algo && a->m && s->n_params == a->n && s->m &&
		  (!a->v || s->v);
	if (moments) {
		for (size_t j = 0; j < a->n; j++)
			if (!isfinite(s->m[j]) || (a->v && !(isfinite(s->v[j]) && s->v[j] >= 0)))
				return -ERANGE;
		memcpy(a->m, s->m, a->n * sizeof(float));
		if (a->v)
			memcpy(a->v, s->v, a->n * sizeof(float));
	}
	if (s->n_orders)
		memcpy(a->rdp, s->rdp, sizeof(a->rdp));
	else
		memset(a->rdp, 0, sizeof(a->rdp));
	a->dp_rounds = s->n_orders ? s->dp_rounds : 0;
	a->steps = s->steps;
	/* Nothing to restore when the algorithm keeps no moments. */
	return moments || (!a->m && s->n_params == 0) ? 0 : 1;
}

void fv_agg_state_clear(struct fv_agg_state *s)
{
	if (!s)
		return;
	free(s->m);
	free(s->v);
	free(s->orders);
	free(s->rdp);
	memset(s, 0, sizeof(*s));
}
