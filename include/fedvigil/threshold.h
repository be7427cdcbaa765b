/* fedvigil thresholds: alert thresholds read from mergeable score
 * statistics.
 *
 * Every method reads a score distribution that is a sum of per-agent parts,
 * so the fleet's threshold is computed from what agents send (histograms
 * with shared bin edges, sums and sums of squares) and never from raw
 * scores:
 *
 *   percentile  the q-quantile of the normal scores;
 *   meanstd     mean + k * standard deviation;
 *   pot         peaks over threshold: a generalised Pareto distribution is
 *               fitted (method of moments) to the scores above the
 *               FV_THR_POT_TAIL quantile and its q-quantile is the
 *               threshold, so a high q is extrapolated from the tail's
 *               shape instead of read off the few scores beyond it.
 *
 * A fv_sdist is a histogram with real-valued weights (same buckets as
 * struct fv_hist): it can be decayed over time and mixed with a prior,
 * which is what the adaptive threshold (struct fv_thr_adapt) does. */
#ifndef FEDVIGIL_THRESHOLD_H
#define FEDVIGIL_THRESHOLD_H

#include <stdbool.h>
#include <stdint.h>

#include "fedvigil/fl.h"

/* Buckets of a distribution: [0] below 10^LO, [1..FV_HIST_BINS] the bins,
 * [FV_HIST_BINS + 1] at or above 10^HI. */
#define FV_SDIST_N (FV_HIST_BINS + 2)
/* The tail POT fits starts at this quantile of the distribution. */
#define FV_THR_POT_TAIL 0.98
/* POT needs this much weight in the tail; below it, it falls back to the
 * percentile. */
#define FV_THR_POT_MIN_TAIL 10.0

enum fv_thr_method {
	FV_THR_PERCENTILE = 0, /* q-quantile */
	FV_THR_MEANSTD = 1,    /* mean + k * std */
	FV_THR_POT = 2,        /* GPD fit to the tail, its q-quantile */
};
#define FV_THR__MAX 3

/* "percentile|meanstd|pot" <-> method. */
int fv_thr_method_parse(const char *s, enum fv_thr_method *ret);
const char *fv_thr_method_name(enum fv_thr_method m);

/* How a threshold is computed from a distribution. */
struct fv_thr_rule {
	enum fv_thr_method method;
	double q;      /* percentile, pot: quantile in (0, 1), e.g. 0.99 */
	double k;      /* meanstd: standard deviations above the mean (>= 0) */
	double margin; /* the result is multiplied by this (> 0) */
};

/* Score distribution with real weights. */
struct fv_sdist {
	double w[FV_SDIST_N]; /* weight per bucket (see FV_SDIST_N) */
	double total;         /* sum of w */
	double sum;           /* weighted sum of scores */
	double sumsq;         /* weighted sum of squared scores */
};

void fv_sdist_init(struct fv_sdist *d);
/* d = scale * h (scale >= 0). */
void fv_sdist_from_hist(struct fv_sdist *d, const struct fv_hist *h, double scale);
/* Add a score with weight w > 0; -ERANGE for NaN/Inf/negative scores,
 * -EINVAL for a bad weight. */
int fv_sdist_add(struct fv_sdist *d, double score, double w);
/* Multiply every weight (and the sums) by f >= 0: decay. */
void fv_sdist_scale(struct fv_sdist *d, double f);
/* dst += src. merge(d(A), d(B)) == d(A u B) up to rounding. */
void fv_sdist_merge(struct fv_sdist *dst, const struct fv_sdist *src);
/* The q-quantile (q in [0, 1]), interpolated as fv_hist_quantile() does;
 * -ENODATA when the total weight is 0, -EINVAL for a bad q. */
int fv_sdist_quantile(const struct fv_sdist *d, double q, double *ret_score);
/* Weighted mean and standard deviation; -ENODATA when empty. */
int fv_sdist_moments(const struct fv_sdist *d, double *ret_mean, double *ret_std);

/* 0 if the rule is usable (known method, q in (0, 1), k >= 0, margin > 0),
 * else -EINVAL. */
int fv_thr_rule_check(const struct fv_thr_rule *r);
/* Threshold of distribution d under rule r, into *ret (> 0 for any
 * non-degenerate distribution). -ENODATA when d is empty, -EINVAL for a
 * bad rule. */
int fv_thr_compute(const struct fv_sdist *d, const struct fv_thr_rule *r, double *ret);
/* The same from an integer histogram. */
int fv_thr_from_hist(const struct fv_hist *h, const struct fv_thr_rule *r, double *ret);

/* The POT estimate alone, for tests and diagnostics: tail from the tail_q
 * quantile, GPD by the method of moments (shape clamped to [-0.5, 0.45]),
 * q-quantile of the fitted model. *ret_shape / *ret_scale (may be NULL) get
 * the fitted parameters. Falls back to the plain quantile when the tail
 * holds less than FV_THR_POT_MIN_TAIL or q <= tail_q (then shape = scale =
 * 0). */
int fv_thr_pot(const struct fv_sdist *d, double tail_q, double q, double *ret, double *ret_shape,
	       double *ret_scale);

/* ---- adaptive threshold ----
 * The threshold of (prior + recent) under a rule, where `prior` is the
 * fleet's distribution of normal scores scaled to a fixed weight and
 * `recent` is this agent's own normal scores, exponentially decayed: every
 * observed calm score multiplies the old weights by 2^(-1/halflife) and
 * adds itself with weight 1. Early on the fleet's view dominates; after a
 * few half-lives the agent's own recent normal does. Scores that raised the
 * alarm are not observed (they would drag the threshold up behind an
 * anomaly). Threshold recomputation costs O(FV_SDIST_N). */
struct fv_thr_adapt {
	struct fv_thr_rule rule; /* how the threshold is read */
	struct fv_sdist prior;   /* fleet, total weight = prior_weight */
	struct fv_sdist recent;  /* this agent's calm scores, decayed */
	double decay;            /* per observation, 1 = none */
	double thr;              /* current threshold, 0 = none */
};

/* prior may be NULL or empty (then only the agent's own scores count);
 * prior_weight >= 0 is the weight it is scaled to; halflife > 0 in
 * observations, or 0 for no decay. -EINVAL on a bad rule or argument. */
int fv_thr_adapt_init(struct fv_thr_adapt *a, const struct fv_thr_rule *rule,
		      const struct fv_sdist *prior, double prior_weight, double halflife);
/* Add a distribution of the agent's own normal scores to `recent` at full
 * weight (e.g. its training windows) and recompute. */
void fv_thr_adapt_seed(struct fv_thr_adapt *a, const struct fv_sdist *own);
/* Observe one calm score (decays, adds, recomputes); -ERANGE if not finite. */
int fv_thr_adapt_observe(struct fv_thr_adapt *a, double score);
/* Current threshold (0 when there is no data at all). */
double fv_thr_adapt_threshold(const struct fv_thr_adapt *a);

#endif
