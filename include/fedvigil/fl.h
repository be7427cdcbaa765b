/* fedvigil federated-learning primitives: aggregation, mergeable score
 * histograms and thresholds, federated normalisation statistics. */
#ifndef FEDVIGIL_FL_H
#define FEDVIGIL_FL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- aggregation ---- */
/* FedAvg weighted by sample count:
 * deltas: k vectors of n floats, weights: k sample counts
 * -> ret_avg (n) = sum_i w_i * d_i / sum_i w_i (accumulated in double, in the
 * given order; callers sort inputs for order independence).
 * -EINVAL if k == 0 or all weights are 0. */
int fv_agg_fedavg(float *ret_avg, const float *const *deltas, const uint64_t *weights,
		  uint32_t k, size_t n);

/* ---- aggregators: robust rules, server optimizers, clipping, DP ----
 *
 * One aggregator turns the k updates of a round into the next global
 * parameters:
 *
 *   clip (optional) -> rule (mean / median / trimmed mean / Krum)
 *     -> DP noise (optional, mean only) -> server optimizer -> params
 *
 * Updates are processed in strcmp order of their agent names, so the result
 * is bit-for-bit the same for any arrival order. Memory is allocated once in
 * fv_agg_new() (O(n_params + max_k)); fv_agg_round() never allocates.
 * docs/federation.md describes each algorithm and when to use it. */
enum fv_agg_algo {
	FV_AGG_FEDAVG = 0,   /* sample-weighted mean; params += lr * mean */
	FV_AGG_FEDPROX,      /* FedAvg on the server; agents add mu * (w - w_base) */
	FV_AGG_FEDAVGM,      /* mean, server momentum (Hsu et al. 2019) */
	FV_AGG_FEDADAM,      /* mean, server Adam (Reddi et al. 2021) */
	FV_AGG_FEDYOGI,      /* mean, server Yogi (Reddi et al. 2021) */
	FV_AGG_FEDADAGRAD,   /* mean, server Adagrad (Reddi et al. 2021) */
	FV_AGG_MEDIAN,       /* coordinate-wise median (unweighted) */
	FV_AGG_TRIMMED_MEAN, /* coordinate-wise beta-trimmed mean (unweighted) */
	FV_AGG_KRUM,         /* the one update closest to its k-f-2 neighbours */
	FV_AGG_MULTI_KRUM,   /* unweighted mean of the m best Krum scores */
	FV_AGG__MAX
};

/* NULL-terminated names in enum order ("fedavg", "fedprox", ...), for
 * config tables. */
extern const char *const fv_agg_algo_names[];
const char *fv_agg_algo_name(enum fv_agg_algo a);
/* Name -> algorithm; -EINVAL if unknown. */
int fv_agg_algo_parse(const char *s, enum fv_agg_algo *ret_algo);

/* Configuration of an aggregator. Start from FV_AGG_CONFIG_DEFAULTS. */
struct fv_agg_config {
	enum fv_agg_algo algo;
	double server_lr;   /* eta; 0 = the algorithm's default (fv_agg_server_lr()) */
	double momentum;    /* FedAvgM: beta in [0, 1) */
	double beta1;       /* FedAdam/Yogi/Adagrad first-moment decay, [0, 1) */
	double beta2;       /* FedAdam/Yogi second-moment decay, [0, 1) */
	double tau;         /* adaptivity (and sqrt of the initial v), > 0 */
	double trim_beta;   /* trimmed mean: fraction cut at each end, (0, 0.5) */
	uint32_t krum_f;    /* Krum: Byzantine updates tolerated */
	uint32_t krum_m;    /* multi-Krum: updates averaged; 0 = k - f */
	double clip_norm;   /* > 0: scale each update to L2 norm <= clip_norm */
	double clip_ratio;  /* >= 1 (not with dp): also scale each update to L2 norm
			     * <= clip_ratio * the round's median update norm; 0 = off */
	double sample_cap;  /* >= 1 (weighted mean rules): a claimed n_samples above
			     * sample_cap * the round's median claim counts as that
			     * much; 0 = trust every claim */
	double prox_mu;     /* FedProx mu for the agents' local training; not used
			     * by the aggregator itself (carried for its callers) */
	bool dp;            /* client-level DP: clip to clip_norm, uniform weights,
			     * Gaussian noise on the sum, RDP accounting */
	double dp_noise;    /* sigma: noise std on the sum = sigma * clip_norm */
	double dp_delta;    /* delta at which epsilon is reported, (0, 1) */
	uint64_t dp_seed;   /* noise RNG seed; 0 = draw one from getrandom(2) */
};
#define FV_AGG_CONFIG_DEFAULTS                                                          \
	{ .algo = FV_AGG_FEDAVG, .server_lr = 0.0, .momentum = 0.9, .beta1 = 0.9,        \
	  .beta2 = 0.99, .tau = 1e-3, .trim_beta = 0.1, .krum_f = 1, .krum_m = 0,        \
	  .clip_norm = 0.0, .clip_ratio = 10.0, .sample_cap = 10.0, .prox_mu = 0.0,      \
	  .dp = false, .dp_noise = 1.0, .dp_delta = 1e-5, .dp_seed = 0 }

/* The server learning rate cfg resolves to: cfg->server_lr if > 0, else 0.01
 * for FedAdam/FedYogi/FedAdagrad and 1 for everything else. */
double fv_agg_server_lr(const struct fv_agg_config *cfg);
/* Check a configuration: 0, or -EINVAL with the reason in err (names the
 * field, the value and what is accepted). */
int fv_agg_config_check(const struct fv_agg_config *cfg, char *err, size_t errlen);

/* One update of a round (borrowed by fv_agg_round()). */
struct fv_agg_update {
	const char *name;   /* agent name: unique within a round, sets the order */
	const float *delta; /* n_params floats: local - base, all finite */
	uint64_t n_samples; /* weight of the mean (FedAvg family without DP) */
	bool have_norm;     /* norm below is fv_agg_norm(delta, n_params), computed
			     * by the caller as the update arrived: the round then
			     * skips its own pass over delta (finite check, norm) */
	double norm;
};

/* The L2 norm of d (n) as fv_agg_round() computes it (a double sum in index
 * order), or -1 when d holds a NaN or an Inf. */
double fv_agg_norm(const float *d, size_t n);

/* What a round did (fv_agg_round()). */
struct fv_agg_result {
	uint32_t n_in;       /* updates given */
	uint32_t n_used;     /* updates that entered the aggregate: Krum 1, multi-Krum m,
			      * trimmed mean k - 2t per coordinate, others k */
	uint32_t n_trimmed;  /* trimmed mean: t cut at each end of every coordinate */
	uint32_t n_clipped;  /* updates scaled down (clip_norm or clip_ratio) */
	uint32_t n_capped;   /* claimed sample counts cut to the sample_cap */
	bool robust_ok;      /* the rule's assumption on k held: Krum k >= 2f + 3,
			      * median k >= 3, trimmed mean t >= 1; true otherwise */
	double step_norm;    /* L2 norm of ret_params - params */
	uint64_t steps;      /* server-optimizer steps taken, this one included */
	double dp_epsilon;   /* DP: epsilon spent so far at dp_delta; 0 without DP */
	double dp_order;     /* DP: the RDP order that gave dp_epsilon */
};

struct fv_agg;

/* Build an aggregator for n_params parameters and at most max_k updates per
 * round; cfg is copied (check it with fv_agg_config_check() first: NULL and
 * errno = EINVAL if it is invalid, ENOMEM if out of memory). Caller owns the
 * result. */
struct fv_agg *fv_agg_new(const struct fv_agg_config *cfg, size_t n_params, uint32_t max_k);
void fv_agg_free(struct fv_agg *a);
const struct fv_agg_config *fv_agg_get_config(const struct fv_agg *a);

/* Aggregate k updates: ret_params (n_params, may be params itself) =
 * params + the optimizer's step. sample_rate = selected / live agents of
 * the round (the DP accountant's q, in (0, 1]; ignored without DP); round
 * seeds the DP noise. used (k entries, may be NULL) gets, in the caller's
 * order, whether each update entered the aggregate (Krum's choice).
 * On failure nothing changes (params, optimizer state, privacy spent):
 * -EINVAL (k == 0, all weights 0 in a weighted mean, bad sample_rate,
 * NULL pointers), -E2BIG (k > max_k), -EALREADY (two updates with one name),
 * -ERANGE (a non-finite delta, or a non-finite result). */
int fv_agg_round(struct fv_agg *a, const float *params, const struct fv_agg_update *up,
		 uint32_t k, double sample_rate, uint64_t round, float *ret_params,
		 bool *used, struct fv_agg_result *ret);

/* The part of an aggregator that must survive a restart: server-optimizer
 * moments and the privacy spent. */
struct fv_agg_state {
	uint32_t algo;      /* enum fv_agg_algo the moments belong to */
	uint64_t steps;     /* server-optimizer steps taken */
	size_t n_params;    /* length of m and v; 0 if the algorithm keeps none */
	float *m;           /* momentum / first moment, or NULL */
	float *v;           /* second moment, or NULL */
	uint32_t n_orders;  /* RDP orders (FV_DP_N_ORDERS), 0 = nothing spent */
	double *orders;     /* the orders */
	double *rdp;        /* RDP spent per order */
	uint64_t dp_rounds; /* noisy aggregations accounted */
};
/* Borrowed view of a's state (valid until the next fv_agg_round/set_state). */
void fv_agg_state_view(const struct fv_agg *a, struct fv_agg_state *ret);
/* Restore state (copied). Moments of another algorithm or size are dropped
 * (returns 1; the optimizer starts afresh), else 0. Privacy spent is always
 * kept: -EDOM if its orders differ from FV_DP orders, -ERANGE if a value is
 * not finite or negative; nothing changes on failure. */
int fv_agg_set_state(struct fv_agg *a, const struct fv_agg_state *s);
/* Free the arrays of a state the caller owns (decoded ones) and zero it. */
void fv_agg_state_clear(struct fv_agg_state *s);

/* ---- differential privacy: RDP accountant ----
 * Renyi-DP of the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019,
 * "Renyi Differential Privacy of the Sampled Gaussian Mechanism"), summed
 * over rounds and turned into (epsilon, delta) with the conversion of Balle
 * et al. 2020 (as Opacus and TF-Privacy do). */
#define FV_DP_N_ORDERS 64
/* The fixed RDP orders (alpha > 1) the accountant tracks. */
extern const double fv_dp_orders[FV_DP_N_ORDERS];
/* RDP at order alpha > 1 of one release of the Gaussian mechanism with
 * noise multiplier sigma > 0 on a Poisson subsample of rate q in [0, 1].
 * -EINVAL on bad arguments. */
int fv_dp_rdp(double q, double sigma, double alpha, double *ret_rdp);
/* Smallest epsilon over the n orders at delta in (0, 1) from RDP totals;
 * *ret_order (may be NULL) gets the order that gave it. With classic set,
 * the older bound eps = rdp - log(delta) / (alpha - 1) (Mironov 2017,
 * Prop. 3) instead. -EINVAL on bad arguments. */
int fv_dp_epsilon(const double *orders, const double *rdp, uint32_t n, double delta,
		  bool classic, double *ret_eps, double *ret_order);

/* ---- score histograms ----
 * Fixed, shared bin edges (log10-spaced between FV_HIST_LO and FV_HIST_HI), so
 * any two histograms merge by adding counts: merge(h(A), h(B)) == h(A u B). */
#define FV_HIST_BINS 240
#define FV_HIST_LOG10_LO (-6.0) /* 1e-6 */
#define FV_HIST_LOG10_HI (6.0)  /* 1e6 */

struct fv_hist {
	uint64_t bins[FV_HIST_BINS]; /* counts per log10 bin */
	uint64_t under;              /* scores < 1e-6 (including 0) */
	uint64_t over;               /* scores >= 1e6 */
	uint64_t count;              /* all scores added */
	double sum;                  /* sum of scores (for mean + k*sigma) */
	double sumsq;                /* sum of squared scores */
};

void fv_hist_init(struct fv_hist *h);
/* Add one score; NaN/Inf/negative are rejected with -ERANGE. */
int fv_hist_add(struct fv_hist *h, double score);
/* dst += src. */
void fv_hist_merge(struct fv_hist *dst, const struct fv_hist *src);
/* q in [0, 1]: the score below which a fraction q of the scores lie,
 * interpolated log-linearly inside the bin. -ENODATA if empty. */
int fv_hist_quantile(const struct fv_hist *h, double q, double *ret_score);
/* Mean and standard deviation from sum/sumsq; -ENODATA if empty. */
int fv_hist_moments(const struct fv_hist *h, double *ret_mean, double *ret_std);
/* Lower edge of bin i (upper edge is bin i+1's lower edge). */
double fv_hist_edge(uint32_t i);

/* ---- federated normalisation ---- */
struct fv_chstats {
	uint64_t count; /* readings seen */
	double sum;     /* sum of readings */
	double sumsq;   /* sum of squared readings */
	double min;     /* smallest reading (+inf when count == 0) */
	double max;     /* largest reading (-inf when count == 0) */
};

void fv_chstats_init(struct fv_chstats *s);
void fv_chstats_add(struct fv_chstats *s, double x);
void fv_chstats_merge(struct fv_chstats *dst, const struct fv_chstats *src);
/* Per-channel mean and std for C channels; std floored at `min_std` (a
 * constant channel would divide by zero). -ENODATA if a channel is empty. */
int fv_norm_from_stats(const struct fv_chstats *s, uint32_t C, double min_std,
		       float *ret_mean, float *ret_std);

#endif
