/* Thresholds from mergeable score distributions: percentile, mean + k*std,
 * peaks over threshold, and the adaptive (decayed, prior-mixed) variant.
 * See include/fedvigil/threshold.h for the methods. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "fedvigil/threshold.h"
#include "hist-int.h"

#define OVER (FV_HIST_BINS + 1)

static const char *const method_names[FV_THR__MAX] = { "percentile", "meanstd", "pot" };

int fv_thr_method_parse(const char *s, enum fv_thr_method *ret)
{
	for (int i = 0; i < FV_THR__MAX; i++)
		if (strcmp(s, method_names[i]) == 0) {
			*ret = (enum fv_thr_method)i;
			return 0;
		}
	return -EINVAL;
}

const char *fv_thr_method_name(enum fv_thr_method m)
{
	return (unsigned)m < FV_THR__MAX ? method_names[m] : "?";
}

/* ---- distributions ---- */

void fv_sdist_init(struct fv_sdist *d)
{
	memset(d, 0, sizeof(*d));
}

void fv_sdist_from_hist(struct fv_sdist *d, const struct fv_hist *h, double scale)
{
	d->w[0] = scale * (double)h->under;
	for (uint32_t i = 0; i < FV_HIST_BINS; i++)
		d->w[1 + i] = scale * (double)h->bins[i];
	d->w[OVER] = scale * (double)h->over;
	d->total = scale * (double)h->count;
	d->sum = scale * h->sum;
	d->sumsq = scale * h->sumsq;
}

int fv_sdist_add(struct fv_sdist *d, double score, double w)
{
	if (!isfinite(score) || score < 0.0)
		return -ERANGE;
	if (!(w > 0.0) || !isfinite(w))
		return -EINVAL;
	d->w[fv_hist_bucket(score)] += w;
	d->total += w;
	d->sum += w * score;
	d->sumsq += w * score * score;
	return 0;
}

void fv_sdist_scale(struct fv_sdist *d, double f)
{
	for (uint32_t i = 0; i < FV_SDIST_N; i++)
		d->w[i] *= f;
	d->total *= f;
	d->sum *= f;
	d->sumsq *= f;
}

void fv_sdist_merge(struct fv_sdist *dst, const struct fv_sdist *src)
{
	for (uint32_t i = 0; i < FV_SDIST_N; i++)
		dst->w[i] += src->w[i];
	dst->total += src->total;
	dst->sum += src->sum;
	dst->sumsq += src->sumsq;
}

/* Position of rank r = q * total: bucket b and the fraction f of its weight
 * below the rank. Returns false when the rank falls past every bucket
 * (then the over bucket's lower edge is the answer). */
static bool locate(const struct fv_sdist *d, double r, unsigned *ret_b, double *ret_f)
{
	double c = 0.0;

	for (unsigned b = 0; b < FV_SDIST_N; b++) {
		double n = d->w[b];

		if (n > 0.0 && r <= c + n) {
			*ret_b = b;
			*ret_f = (r - c) / n;
			return true;
		}
		c += n;
	}
	return false;
}

/* Score at fraction f of bucket b: linear on [0, 10^LO) below the scale,
 * log-linear inside a bin, the lower edge 10^HI for the over bucket (it
 * has no upper one, so a threshold saturates there). */
static double at(unsigned b, double f)
{
	if (b == 0)
		return fv_hist_edge(0) * f;
	if (b == OVER)
		return fv_hist_edge(FV_HIST_BINS);
	return fv_hist_pos((double)(b - 1) + f);
}

/* The quantile is found by rank r = q * total over the buckets in order
 * (under, bins, over); inside the bucket that holds rank r with c before it
 * and n in it, f = (r - c) / n is the position. q = 0 gives the lower edge
 * of the first non-empty bucket, q = 1 the upper edge of the last. */
int fv_sdist_quantile(const struct fv_sdist *d, double q, double *ret_score)
{
	unsigned b;
	double f;

	if (!(q >= 0.0 && q <= 1.0))
		return -EINVAL;
	if (!(d->total > 0.0))
		return -ENODATA;
	if (!locate(d, q * d->total, &b, &f)) {
		*ret_score = fv_hist_edge(FV_HIST_BINS);
		return 0;
	}
	*ret_score = at(b, f);
	return 0;
}

int fv_sdist_moments(const struct fv_sdist *d, double *ret_mean, double *ret_std)
{
	double mean, var;

	if (!(d->total > 0.0))
		return -ENODATA;
	mean = d->sum / d->total;
	var = d->sumsq / d->total - mean * mean;
	if (ret_mean)
		*ret_mean = mean;
	if (ret_std)
		*ret_std = sqrt(var > 0.0 ? var : 0.0);
	return 0;
}

/* ---- rules ---- */

int fv_thr_rule_check(const struct fv_thr_rule *r)
{
	if ((unsigned)r->method >= FV_THR__MAX || !(r->q > 0.0 && r->q < 1.0) || !(r->k >= 0.0) ||
	    !isfinite(r->k) || !(r->margin > 0.0) || !isfinite(r->margin))
		return -EINVAL;
	return 0;
}

/* Representative score of the part of bucket b above score t (t inside b
 * when part < 1): the log-midpoint of [t, upper edge) in a bin, the
 * midpoint below the scale, the lower edge for the over bucket. */
static double rep_above(unsigned b, double t, bool part)
{
	if (b == OVER)
		return fv_hist_edge(FV_HIST_BINS);
	if (b == 0)
		return part ? 0.5 * (t + fv_hist_edge(0)) : 0.5 * fv_hist_edge(0);
	if (part)
		return sqrt(t * fv_hist_edge(b));
	return fv_hist_pos((double)(b - 1) + 0.5);
}

/* Generalised Pareto tail by the method of moments: the excesses y = x - t
 * over the tail's start t have mean m and variance v; for a GPD with shape
 * xi and scale sigma, m = sigma / (1 - xi) and v = sigma^2 / ((1 - xi)^2
 * (1 - 2 xi)), so xi = (1 - m^2 / v) / 2, sigma = m (1 - xi). The shape is
 * clamped to [-0.5, 0.45] (the moments exist below 0.5; a very negative
 * shape means "no tail", where -0.5 is already a short one). The q-quantile
 * lies where the tail's survival is p = (1 - q) / P(X > t):
 *   z = t + sigma / xi * (p^-xi - 1), or t - sigma ln p as xi -> 0. */
int fv_thr_pot(const struct fv_sdist *d, double tail_q, double q, double *ret, double *ret_shape,
	       double *ret_scale)
{
	double t, f, nt = 0.0, s1 = 0.0, s2 = 0.0, m, v, xi, sigma, p, z;
	unsigned b;
	int r;

	if (!(tail_q > 0.0 && tail_q < 1.0) || !(q > 0.0 && q < 1.0))
		return -EINVAL;
	if (!(d->total > 0.0))
		return -ENODATA;
	if (ret_shape)
		*ret_shape = 0.0;
	if (ret_scale)
		*ret_scale = 0.0;
	if (q <= tail_q || !locate(d, tail_q * d->total, &b, &f))
		return fv_sdist_quantile(d, q, ret);
	t = at(b, f);
	for (unsigned i = b; i < FV_SDIST_N; i++) {
		double w = i == b ? (1.0 - f) * d->w[i] : d->w[i];
		double y;

		if (!(w > 0.0))
			continue;
		y = rep_above(i, t, i == b) - t;
		if (y < 0.0)
			y = 0.0;
		nt += w;
		s1 += w * y;
		s2 += w * y * y;
	}
	if (nt < FV_THR_POT_MIN_TAIL || !(s1 > 0.0))
		return fv_sdist_quantile(d, q, ret);
	m = s1 / nt;
	v = s2 / nt - m * m;
	xi = v > 0.0 ? 0.5 * (1.0 - m * m / v) : -0.5;
	if (xi < -0.5)
		xi = -0.5;
	if (xi > 0.45)
		xi = 0.45;
	sigma = m * (1.0 - xi);
	p = (1.0 - q) * d->total / nt;
	if (p >= 1.0) /* target inside the tail's start: rounding */
		return fv_sdist_quantile(d, q, ret);
	z = fabs(xi) < 1e-9 ? t - sigma * log(p) : t + sigma / xi * (pow(p, -xi) - 1.0);
	r = isfinite(z) ? 0 : -ERANGE;
	if (r == 0) {
		*ret = z;
		if (ret_shape)
			*ret_shape = xi;
		if (ret_scale)
			*ret_scale = sigma;
	}
	return r;
}

int fv_thr_compute(const struct fv_sdist *d, const struct fv_thr_rule *r, double *ret)
{
	double x = 0.0, mean, sd;
	int e;

	if (fv_thr_rule_check(r) < 0)
		return -EINVAL;
	switch (r->method) {
	case FV_THR_PERCENTILE:
		e = fv_sdist_quantile(d, r->q, &x);
		break;
	case FV_THR_MEANSTD:
		e = fv_sdist_moments(d, &mean, &sd);
		x = mean + r->k * sd;
		break;
	case FV_THR_POT:
		e = fv_thr_pot(d, FV_THR_POT_TAIL, r->q, &x, NULL, NULL);
		break;
	default:
		return -EINVAL;
	}
	if (e < 0)
		return e;
	x *= r->margin;
	if (!isfinite(x))
		return -ERANGE;
	*ret = x;
	return 0;
}

int fv_thr_from_hist(const struct fv_hist *h, const struct fv_thr_rule *r, double *ret)
{
	struct fv_sdist d;

	fv_sdist_from_hist(&d, h, 1.0);
	return fv_thr_compute(&d, r, ret);
}

/* ---- adaptive ---- */

static void adapt_update(struct fv_thr_adapt *a)
{
	struct fv_sdist all = a->prior;
	double x;

	fv_sdist_merge(&all, &a->recent);
	if (fv_thr_compute(&all, &a->rule, &x) == 0 && x > 0.0)
		a->thr = x;
	else if (!(all.total > 0.0))
		a->thr = 0.0;
	/* else keep the last one: a distribution that yields no threshold
	 * (all scores 0) must not switch alerting off */
}

int fv_thr_adapt_init(struct fv_thr_adapt *a, const struct fv_thr_rule *rule,
		      const struct fv_sdist *prior, double prior_weight, double halflife)
{
	if (fv_thr_rule_check(rule) < 0 || !(prior_weight >= 0.0) || !isfinite(prior_weight) ||
	    !(halflife >= 0.0) || !isfinite(halflife))
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->rule = *rule;
	if (prior && prior->total > 0.0 && prior_weight > 0.0) {
		a->prior = *prior;
		fv_sdist_scale(&a->prior, prior_weight / prior->total);
	}
	a->decay = halflife > 0.0 ? pow(0.5, 1.0 / halflife) : 1.0;
	adapt_update(a);
	return 0;
}

void fv_thr_adapt_seed(struct fv_thr_adapt *a, const struct fv_sdist *own)
{
	fv_sdist_merge(&a->recent, own);
	adapt_update(a);
}

int fv_thr_adapt_observe(struct fv_thr_adapt *a, double score)
{
	if (!isfinite(score) || score < 0.0)
		return -ERANGE;
	if (a->decay < 1.0)
		fv_sdist_scale(&a->recent, a->decay);
	fv_sdist_add(&a->recent, score, 1.0);
	adapt_update(a);
	return 0;
}

double fv_thr_adapt_threshold(const struct fv_thr_adapt *a)
{
	return a->thr;
}
