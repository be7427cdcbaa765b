/* Per-channel count/sum/sum of squares/min/max: the statistics round of
 * federated normalisation. Plain sums in double (rather than Welford) so that
 * merging is exact addition and the result does not depend on how readings
 * were split between agents beyond floating-point rounding. */
#include <errno.h>
#include <math.h>

#include "fedvigil/fl.h"

void fv_chstats_init(struct fv_chstats *s)
{
	s->count = 0;
	s->sum = 0.0;
	s->sumsq = 0.0;
	s->min = INFINITY;
	s->max = -INFINITY;
}

/* Non-finite readings are ignored: they must never reach the sums (callers
 * count and report them where they are parsed). */
void fv_chstats_add(struct fv_chstats *s, double x)
{
	if (!isfinite(x))
		return;
	s->count++;
	s->sum += x;
	s->sumsq += x * x;
	if (x < s->min)
		s->min = x;
	if (x > s->max)
		s->max = x;
}

void fv_chstats_merge(struct fv_chstats *dst, const struct fv_chstats *src)
{
	dst->count += src->count;
	dst->sum += src->sum;
	dst->sumsq += src->sumsq;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* mean = sum / n, var = sumsq / n - mean^2 (population variance, clamped at
 * 0 against rounding), std = max(sqrt(var), min_std). Nothing is written
 * unless every channel has data. */
int fv_norm_from_stats(const struct fv_chstats *s, uint32_t C, double min_std,
		       float *ret_mean, float *ret_std)
{
	if (!(min_std >= 0.0) || !isfinite(min_std))
		return -EINVAL;
	for (uint32_t c = 0; c < C; c++)
		if (s[c].count == 0)
			return -ENODATA;
	for (uint32_t c = 0; c < C; c++) {
		double n = (double)s[c].count;
		double mean = s[c].sum / n;
		double var = s[c].sumsq / n - mean * mean;
		double sd = sqrt(var > 0.0 ? var : 0.0);

		ret_mean[c] = (float)mean;
		ret_std[c] = (float)(sd > min_std ? sd : min_std);
	}
	return 0;
}
