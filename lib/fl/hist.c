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
#include "fedvigil/threshold.h"
#include "hist-int.h"

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

double fv_hist_pos(double i)
{
	return pow(10.0, pos_log10(i));
}

void fv_hist_init(struct fv_hist *h)
{
	memset(h, 0, sizeof(*h));
}

double fv_hist_edge(uint32_t i)
{
	return pow(10.0, pos_log10((double)i));
}

unsigned fv_hist_bucket(double score)
{
	double f;
	unsigned i;

	if (score < fv_hist_edge(0))
		return 0;
	if (score >= fv_hist_edge(FV_HIST_BINS))
		return FV_HIST_BINS + 1;
	f = floor((log10(score) - FV_HIST_LOG10_LO) / WIDTH);
	i = f < 0.0 ? 0 : f >= FV_HIST_BINS ? FV_HIST_BINS - 1 : (unsigned)f;
	/* log10() may round a score that sits on an edge into the
	 * neighbouring bin; fv_hist_edge() is the definition. */
	if (i > 0 && score < fv_hist_edge(i))
		i--;
	else if (i + 1 < FV_HIST_BINS && score >= fv_hist_edge(i + 1))
		i++;
	return i + 1;
}

int fv_hist_add(struct fv_hist *h, double score)
{
	unsigned b;

	if (!isfinite(score) || score < 0.0)
		return -ERANGE;
	b = fv_hist_bucket(score);
	if (b == 0)
		h->under++;
	else if (b == FV_HIST_BINS + 1)
		h->over++;
	else
		h->bins[b - 1]++;
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

/* The quantile rule is fv_sdist_quantile()'s (threshold.c): one
 * implementation for integer and real weights. */
int fv_hist_quantile(const struct fv_hist *h, double q, double *ret_score)
{
	struct fv_sdist d;

	if (!(q >= 0.0 && q <= 1.0))
		return -EINVAL;
	if (h->count == 0)
		return -ENODATA;
	fv_sdist_from_hist(&d, h, 1.0);
	return fv_sdist_quantile(&d, q, ret_score);
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
