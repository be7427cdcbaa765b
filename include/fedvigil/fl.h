/* fedvigil federated-learning primitives: aggregation, mergeable score
 * histograms and thresholds, federated normalisation statistics. */
#ifndef FEDVIGIL_FL_H
#define FEDVIGIL_FL_H

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
