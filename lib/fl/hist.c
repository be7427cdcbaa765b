/* Mergeable score histograms with fixed log10 bins, and thresholds read
 * from them.
 *
 * Bin i covers [10^(LO + i w), 10^(LO + (i+1) w)) with w = (HI - LO) / BINS
 * (0.05 decades, about 12 % relative width, for the defaults). Scores below
 * 10^LO (including 0) go to `under`, scores >= 10^HI to `over`. Because the
 * edges are the same everywhere, merging is adding counts. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "fedvigil/fl.h"

#define WIDTH ((FV_HIST_LOG10_HI - FV_HIST_LOG10_LO) / FV_HIST_BINS)

/* log10 of the position i (in bins) on the scale. Written so that every step
 * before the division is exact for integer i: LO + i * WIDTH would let a
 * compiler that contracts a*b+c into an FMA while constant-folding (clang
 * does, at -O3) disagree with the same expression evaluated at run time,
 * so that 1e6 fell into the last bin in one build and into `over` in
 * another. This way decade edges are exact integers and pow() is exact. */
static double pos_log10(double i)
{
	return (FV_HIST_LOG10_LO * FV_HIST_BINS + i * (FV_HIST_LOG10_HI - FV_HIST_LOG10_LO)) /
	       FV_HIST_BINS;
}

void fv_hist_init(struct fv_hist *h)
{
	memset(h, 0, sizeof(*h));
}

double fv_hist_edge(uint32_t i)
{
	return pow(10.0, pos_log10((double)i));
}

int fv_hist_add(struct fv_hist *h, double score)
{
	if (!isfinite(score) || score < 0.0)
		return -ERANGE;
	if (score < fv_hist_edge(0)) {
		h->under++;
	} else if (score >= fv_hist_edge(FV_HIST_BINS)) {
		h->over++;
	} else {
		double f = floor((log10(score) - FV_HIST_LOG10_LO) / WIDTH);
		uint32_t i = f < 0.0 ? 0 : f >= FV_HIST_BINS ? FV_HIST_BINS - 1 : (uint32_t)f;

		/* log10() may round a score that sits on an edge into the
		 * neighbouring bin; fv_hist_edge() is the definition. */
		if (i > 0 && score < fv_hist_edge(i))
			i--;
		else if (i + 1 < FV_HIST_BINS && score >= fv_hist_edge(i + 1))
			i++;
		h->bins[i]++;
	}
	h->count++;
	h->sum += score;
	h->sumsq += score * score;
	return 0;
}

void fv_hist_merge(struct fv_hist *dst, const struct fv_hist *src)
{
	for (uint32_t i = 0; i < FV_HIST_BINS; i++)
		dst->bins[i] += src->bins[i];
	dst->under += src->under;
	dst->over += src->over;
	dst->count += src->count;
	dst->sum += src->sum;
	dst->sumsq += src->sumsq;
}

/* The quantile is found by rank r = q * count over the buckets in order
 * (under, bins[0..], over); inside the bucket that holds rank r with c
 * scores before it and n in it, f = (r - c) / n is the position:
 *   bin i:  10^(LO + (i + f) w), log-linear between the edges;
 *   under:  f * 10^LO, linear on [0, 10^LO) (the bucket has no log scale);
 *   over:   10^HI, the bucket's lower edge (it has no upper one), so a
 *           threshold from a histogram saturates at 10^HI.
 * q = 0 gives the lower edge of the first non-empty bucket, q = 1 the upper
 * edge of the last. */
int fv_hist_quantile(const struct fv_hist *h, double q, double *ret_score)
{
	double r, c;

	if (!(q >= 0.0 && q <= 1.0))
		return -EINVAL;
	if (h->count == 0)
		return -ENODATA;
	r = q * (double)h->count;
	c = (double)h->under;
	if (h->under > 0 && r <= c) {
		*ret_score = fv_hist_edge(0) * (r / c);
		return 0;
	}
	for (uint32_t i = 0; i < FV_HIST_BINS; i++) {
		double n = (double)h->bins[i];

		if (h->bins[i] > 0 && r <= c + n) {
			double f = (r - c) / n;

			*ret_score = pow(10.0, pos_log10((double)i + f));
			return 0;
		}
		c += n;
	}
	*ret_score = fv_hist_edge(FV_HIST_BINS);
	return 0;
}

int fv_hist_moments(const struct fv_hist *h, double *ret_mean, double *ret_std)
{
	double mean, var;

	if (h->count == 0)
		return -ENODATA;
	mean = h->sum / (double)h->count;
	var = h->sumsq / (double)h->count - mean * mean;
	if (ret_mean)
		*ret_mean = mean;
	if (ret_std)
		*ret_std = sqrt(var > 0.0 ? var : 0.0);
	return 0;
}
