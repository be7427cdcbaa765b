/* Renyi-DP accountant for the sampled Gaussian mechanism.
 *
 * One training round releases sum_i clip(delta_i) + N(0, (sigma C)^2 I)
 * over the agents selected with probability q: a sampled Gaussian mechanism
 * of sensitivity C and noise multiplier sigma. Its RDP at order alpha is
 * log(A_alpha) / (alpha - 1), with (Mironov, Talwar, Zhang 2019)
 *
 *   A_alpha = E_{z ~ N(0, s^2)} [ ((1 - q) + q exp((2z - 1) / (2 s^2)))^alpha ].
 *
 * Integer orders: the binomial expansion is a finite sum of positive terms,
 *   A = sum_{k=0}^{alpha} C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 s^2)).
 * Fractional orders: the integral is split at z1 = s^2 log(1/q - 1) + 1/2
 * (where (1 - q) = q exp(...)) and each side expanded in the smaller term,
 * giving two infinite series with erfc factors (section 3.3 of the paper).
 * Everything is summed in log space. tests/unit/ref/dp_ref.py recomputes A
 * by numerical integration with mpmath, independently of these series. */
#include <errno.h>
#include <math.h>

#include "fedvigil/fl.h"

/* Fractional 1.25..10, every integer 11..40, then sparser up to 256. */
const double fv_dp_orders[FV_DP_N_ORDERS] = {
	1.25, 1.5, 1.75, 2,   2.25, 2.5, 2.75, 3,   3.25, 3.5, 3.75, 4,   4.5, 5,   5.5, 6,
	6.5,  7,   7.5,  8,   8.5,  9,   9.5,  10,  11,   12,  13,   14,  15,  16,  17,  18,
	19,   20,  21,   22,  23,   24,  25,   26,  27,   28,  29,   30,  31,  32,  33,  34,
	35,   36,  37,   38,  39,   40,  44,   48,  56,   64,  80,   96,  128, 160, 192, 256,
};

/* Terms below exp(-32) of a sum that is >= 1 (A_alpha >= 1) are dropped.
 * The fractional series decay only polynomially (about i^-(alpha+2): the
 * geometric factors cancel at z1), so a stricter cut costs many terms for
 * orders near 1; at this one the RDP agrees with numerical integration to
 * 1e-9 (tests/unit/test_fl_dp.c). */
#define TAIL_LOG (-32.0)
#define MAX_TERMS 100000

static double log_add(double a, double b)
{
	double hi = fmax(a, b), lo = fmin(a, b);

	if (hi == -INFINITY)
		return -INFINITY;
	return hi + log1p(exp(lo - hi));
}

/* log(erfc(x)) without underflow: the asymptotic expansion
 * erfc(x) = exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) ...)
 * where erfc() itself would round to 0. */
static double log_erfc(double x)
{
	if (x < 26.0)
		return log(erfc(x));
	double x2 = x * x;

	return -x2 - log(x) - 0.5 * log(M_PI) +
	       log1p(-1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2));
}

static double log_a_int(double q, double sigma, unsigned alpha)
{
	double s2 = sigma * sigma, acc = -INFINITY;

	for (unsigned k = 0; k <= alpha; k++) {
		double lc = lgamma(alpha + 1.0) - lgamma(k + 1.0) - lgamma(alpha - k + 1.0);
		double t = lc + (double)k * log(q) + (double)(alpha - k) * log1p(-q) +
			   ((double)k * k - k) / (2.0 * s2);

		acc = log_add(acc, t);
	}
	return acc;
}

static double log_a_frac(double q, double sigma, double alpha)
{
	double s2 = sigma * sigma, z1 = s2 * log(1.0 / q - 1.0) + 0.5;
	double pos = -INFINITY, neg = -INFINITY;
	double log_coef = 0.0; /* log |C(alpha, i)| */
	int sign = 1;          /* sign of C(alpha, i) */

	for (unsigned i = 0; i < MAX_TERMS; i++) {
		double j = alpha - i;
		double t0 = log_coef + i * log(q) + j * log1p(-q);
		double t1 = log_coef + j * log(q) + i * log1p(-q);
		double e0 = log(0.5) + log_erfc((i - z1) / (M_SQRT2 * sigma));
		double e1 = log(0.5) + log_erfc((z1 - j) / (M_SQRT2 * sigma));
		double s0 = t0 + ((double)i * i - i) / (2.0 * s2) + e0;
		double s1 = t1 + (j * j - j) / (2.0 * s2) + e1;

		if (sign > 0)
			pos = log_add(pos, log_add(s0, s1));
		else
			neg = log_add(neg, log_add(s0, s1));
		if (i > alpha && fmax(s0, s1) < TAIL_LOG)
			break;
		/* C(alpha, i + 1) = C(alpha, i) (alpha - i) / (i + 1). */
		if (alpha - i < 0)
			sign = -sign;
		log_coef += log(fabs(alpha - i)) - log(i + 1.0);
	}
	if (neg == -INFINITY)
		return pos;
	if (!(neg < pos))
		return NAN; /* cancelled beyond double precision */
	return pos + log1p(-exp(neg - pos));
}

int fv_dp_rdp(double q, double sigma, double alpha, double *ret_rdp)
{
	double log_a;

	if (!ret_rdp || !(q >= 0.0 && q <= 1.0) || !(sigma > 0.0 && isfinite(sigma)) ||
	    !(alpha > 1.0 && isfinite(alpha)))
		return -EINVAL;
	if (q == 0.0) {
		*ret_rdp = 0.0;
		return 0;
	}
	if (q == 1.0) { /* the plain Gaussian mechanism */
		*ret_rdp = alpha / (2.0 * sigma * sigma);
		return 0;
	}
	if (alpha == floor(alpha) && alpha <= 4096.0)
		log_a = log_a_int(q, sigma, (unsigned)alpha);
	else
		log_a = log_a_frac(q, sigma, alpha);
	if (isnan(log_a))
		return -ERANGE;
	/* A_alpha >= 1 in exact arithmetic; rounding may give -1e-17. */
	*ret_rdp = fmax(0.0, log_a / (alpha - 1.0));
	return 0;
}

int fv_dp_epsilon(const double *orders, const double *rdp, uint32_t n, double delta,
		  bool classic, double *ret_eps, double *ret_order)
{
	double best = INFINITY, best_order = 0.0;

	if (!orders || !rdp || n == 0 || !ret_eps || !(delta > 0.0 && delta < 1.0))
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		double a = orders[i], eps;

		if (!(a > 1.0) || !(rdp[i] >= 0.0))
			return -EINVAL;
		if (classic)
			eps = rdp[i] - log(delta) / (a - 1.0);
		else /* Balle et al. 2020, Theorem 21 */
			eps = rdp[i] + log1p(-1.0 / a) - (log(delta) + log(a)) / (a - 1.0);
		if (eps < best) {
			best = eps;
			best_order = a;
		}
	}
	*ret_eps = fmax(0.0, best);
	if (ret_order)
		*ret_order = best_order;
	return 0;
}
