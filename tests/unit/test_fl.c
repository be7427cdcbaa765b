/* Unit tests for lib/fl: FedAvg, mergeable score histograms and quantiles,
 * federated normalisation statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/fl.h"
#include "fedvigil/util.h"

#define HIST_W ((FV_HIST_LOG10_HI - FV_HIST_LOG10_LO) / FV_HIST_BINS)

/* cmocka's assert_float_equal() rounds to float; these checks need double. */
#define assert_near(a, b, tol) near_impl((a), (b), (tol), __FILE__, __LINE__)

static void near_impl(double a, double b, double tol, const char *file, int line)
{
	if (!(fabs(a - b) <= tol))
		fail_msg("%s:%d: %.17g != %.17g (tolerance %.3g)", file, line, a, b, tol);
}

/* ---- FedAvg ---- */

/* d0 = (1, 2, -4) with 1 sample, d1 = (3, -2, 0.5) with 3, d2 = (100, 100, 100)
 * with 0 (ignored): sum w = 4,
 *   avg = ((1*1 + 3*3) / 4, (1*2 + 3*(-2)) / 4, (1*(-4) + 3*0.5) / 4)
 *       = (10/4, -4/4, -2.5/4) = (2.5, -1, -0.625). */
static void test_fedavg_hand(void **state)
{
	const float d0[] = { 1, 2, -4 }, d1[] = { 3, -2, 0.5f }, d2[] = { 100, 100, 100 };
	const float *const deltas[] = { d0, d1, d2 };
	const uint64_t w[] = { 1, 3, 0 };
	float avg[3];

	(void)state;
	assert_int_equal(fv_agg_fedavg(avg, deltas, w, 3, 3), 0);
	assert_true(avg[0] == 2.5f);
	assert_true(avg[1] == -1.0f);
	assert_true(avg[2] == -0.625f);

	/* A single input with any weight is returned unchanged. */
	const uint64_t w1[] = { 12345 };

	assert_int_equal(fv_agg_fedavg(avg, deltas, w1, 1, 3), 0);
	assert_memory_equal(avg, d0, sizeof(d0));
}

static void test_fedavg_errors(void **state)
{
	const float d0[] = { 1, 2 }, d1[] = { 3, NAN };
	const float *const deltas[] = { d0, d1 };
	const uint64_t zero[] = { 0, 0 }, both[] = { 1, 1 }, first[] = { 5, 0 };
	float avg[2] = { 42, 42 };

	(void)state;
	assert_int_equal(fv_agg_fedavg(avg, deltas, zero, 2, 2), -EINVAL);
	assert_int_equal(fv_agg_fedavg(avg, deltas, both, 0, 2), -EINVAL);
	assert_int_equal(fv_agg_fedavg(avg, deltas, both, 2, 2), -ERANGE);
	assert_true(avg[0] == 42 && avg[1] == 42); /* untouched on failure */
	/* A NaN in an input of weight 0 does not matter. */
	assert_int_equal(fv_agg_fedavg(avg, deltas, first, 2, 2), 0);
	assert_true(avg[0] == 1 && avg[1] == 2);
}

/* Many inputs and a long vector (several accumulation blocks) against a
 * straightforward double sum; also weights beyond 2^32. */
static void test_fedavg_large(void **state)
{
	enum { K = 7, N = 1000 };
	float *d[K], avg[N];
	uint64_t w[K];
	struct fv_rng r;

	(void)state;
	fv_rng_seed(&r, 3);
	for (int i = 0; i < K; i++) {
		d[i] = malloc(sizeof(float) * N);
		w[i] = fv_rng_below(&r, 1000) + ((uint64_t)i << 33);
		for (int j = 0; j < N; j++)
			d[i][j] = (float)fv_rng_normal(&r);
	}
	assert_int_equal(fv_agg_fedavg(avg, (const float *const *)d, w, K, N), 0);
	for (int j = 0; j < N; j++) {
		double num = 0, den = 0;

		for (int i = 0; i < K; i++) {
			num += (double)w[i] * d[i][j];
			den += (double)w[i];
		}
		assert_true(avg[j] == (float)(num / den));
	}
	for (int i = 0; i < K; i++)
		free(d[i]);
}

/* ---- histograms ---- */

static void test_hist_edges(void **state)
{
	struct fv_hist h;

	(void)state;
	assert_near(fv_hist_edge(0), 1e-6, 1e-18);
	assert_near(fv_hist_edge(FV_HIST_BINS / 2), 1.0, 1e-12);
	assert_near(fv_hist_edge(FV_HIST_BINS), 1e6, 1e-6);
	/* Each lower edge lands in its own bin, the value just below it in the
	 * previous one: binning agrees exactly with fv_hist_edge(). */
	for (uint32_t i = 0; i < FV_HIST_BINS; i++) {
		double e = fv_hist_edge(i);

		fv_hist_init(&h);
		assert_int_equal(fv_hist_add(&h, e), 0);
		assert_int_equal(h.bins[i], 1);
		fv_hist_init(&h);
		assert_int_equal(fv_hist_add(&h, nextafter(e, 0)), 0);
		if (i == 0)
			assert_int_equal(h.under, 1);
		else
			assert_int_equal(h.bins[i - 1], 1);
	}
}

static void test_hist_under_over(void **state)
{
	struct fv_hist h;
	double q;

	(void)state;
	fv_hist_init(&h);
	assert_int_equal(fv_hist_add(&h, 0.0), 0);
	assert_int_equal(fv_hist_add(&h, 1e-7), 0);
	assert_int_equal(fv_hist_add(&h, 1e-6), 0);
	assert_int_equal(fv_hist_add(&h, nextafter(1e6, 0)), 0);
	assert_int_equal(fv_hist_add(&h, 1e6), 0);
	assert_int_equal(fv_hist_add(&h, 1e300), 0);
	assert_int_equal(h.under, 2);
	assert_int_equal(h.bins[0], 1);
	assert_int_equal(h.bins[FV_HIST_BINS - 1], 1);
	assert_int_equal(h.over, 2);
	assert_int_equal(h.count, 6);

	/* Rejected values change nothing. */
	assert_int_equal(fv_hist_add(&h, NAN), -ERANGE);
	assert_int_equal(fv_hist_add(&h, INFINITY), -ERANGE);
	assert_int_equal(fv_hist_add(&h, -1e-3), -ERANGE);
	assert_int_equal(h.count, 6);

	/* Quantiles in the under bucket interpolate linearly on [0, 1e-6):
	 * 2 of 6 scores are under, so q = 1/6 is half-way: 0.5e-6. The over
	 * bucket saturates at 1e6. */
	assert_int_equal(fv_hist_quantile(&h, 1.0 / 6, &q), 0);
	assert_near(q, 0.5e-6, 1e-12);
	assert_int_equal(fv_hist_quantile(&h, 0.0, &q), 0);
	assert_true(q == 0.0);
	assert_int_equal(fv_hist_quantile(&h, 1.0, &q), 0);
	assert_true(q == 1e6);
	assert_int_equal(fv_hist_quantile(&h, 0.99, &q), 0);
	assert_true(q == 1e6);

	fv_hist_init(&h);
	assert_int_equal(fv_hist_quantile(&h, 0.5, &q), -ENODATA);
	assert_int_equal(fv_hist_add(&h, 1.0), 0);
	assert_int_equal(fv_hist_quantile(&h, -0.1, &q), -EINVAL);
	assert_int_equal(fv_hist_quantile(&h, 1.1, &q), -EINVAL);
	assert_int_equal(fv_hist_quantile(&h, NAN, &q), -EINVAL);
}

static void fill_random(struct fv_hist *h, struct fv_hist *a, struct fv_hist *b, size_t n,
			uint64_t seed)
{
	struct fv_rng r;

	fv_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++) {
		/* log-uniform over 1e-8 .. 1e8: under, bins and over all used */
		double s = pow(10.0, -8.0 + 16.0 * fv_rng_uniform(&r));

		if (i % 97 == 0)
			s = 0.0;
		assert_int_equal(fv_hist_add(h, s), 0);
		assert_int_equal(fv_hist_add(fv_rng_below(&r, 3) ? a : b, s), 0);
	}
}

static void test_hist_merge(void **state)
{
	struct fv_hist all, a, b, m;
	double qa, qm;

	(void)state;
	fv_hist_init(&all);
	fv_hist_init(&a);
	fv_hist_init(&b);
	fill_random(&all, &a, &b, 20000, 1);
	assert_true(a.count > 0 && b.count > 0);
	assert_true(all.under > 0 && all.over > 0);
	m = a;
	fv_hist_merge(&m, &b);
	assert_memory_equal(m.bins, all.bins, sizeof(all.bins));
	assert_true(m.under == all.under && m.over == all.over && m.count == all.count);
	/* Sums differ only by summation order. */
	assert_near(m.sum, all.sum, 1e-12 * all.sum);
	assert_near(m.sumsq, all.sumsq, 1e-12 * all.sumsq);
	for (double q = 0.0; q <= 1.0; q += 0.05) {
		assert_int_equal(fv_hist_quantile(&all, q, &qa), 0);
		assert_int_equal(fv_hist_quantile(&m, q, &qm), 0);
		assert_true(qa == qm);
	}
	/* Merging an empty histogram changes nothing. */
	fv_hist_init(&b);
	fv_hist_merge(&m, &b);
	assert_memory_equal(m.bins, all.bins, sizeof(all.bins));
	assert_true(m.count == all.count);
}

static void test_hist_quantile(void **state)
{
	struct fv_hist h;
	struct fv_rng r;
	double q;

	(void)state;
	/* 10000 scores uniform in log space over 1e-3 .. 1e3: the q quantile is
	 * 10^(-3 + 6q); the estimate must be within one bin width (in log10). */
	fv_hist_init(&h);
	fv_rng_seed(&r, 2);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(fv_hist_add(&h, pow(10.0, -3.0 + 6.0 * fv_rng_uniform(&r))), 0);
	for (double p = 0.01; p < 1.0; p += 0.01) {
		assert_int_equal(fv_hist_quantile(&h, p, &q), 0);
		/* one bin width plus the sampling error of 10000 draws */
		assert_true(fabs(log10(q) - (-3.0 + 6.0 * p)) <= HIST_W + 0.06);
	}
	/* Quantiles are monotone in q. */
	double prev = 0.0;

	for (double p = 0.0; p <= 1.0; p += 0.001) {
		assert_int_equal(fv_hist_quantile(&h, p, &q), 0);
		assert_true(q >= prev);
		prev = q;
	}

	/* Exact values: 90 scores of 1.0 and 10 of 50.0. Every quantile up to
	 * 0.9 lies in 1.0's bin [1, 10^0.05), the rest in 50's bin. */
	fv_hist_init(&h);
	for (int i = 0; i < 90; i++)
		fv_hist_add(&h, 1.0);
	for (int i = 0; i < 10; i++)
		fv_hist_add(&h, 50.0);
	uint32_t b50 = (uint32_t)floor((log10(50.0) - FV_HIST_LOG10_LO) / HIST_W);

	assert_int_equal(h.bins[FV_HIST_BINS / 2], 90);
	assert_int_equal(h.bins[b50], 10);
	assert_int_equal(fv_hist_quantile(&h, 0.5, &q), 0);
	assert_true(q >= 1.0 && q < fv_hist_edge(FV_HIST_BINS / 2 + 1));
	/* Half-way through the bin, log-linearly: 10^0.025. */
	assert_near(q, pow(10.0, (0.5 / 0.9) * HIST_W), 1e-9);
	assert_int_equal(fv_hist_quantile(&h, 0.9, &q), 0);
	assert_near(q, fv_hist_edge(FV_HIST_BINS / 2 + 1), 1e-9);
	assert_int_equal(fv_hist_quantile(&h, 0.95, &q), 0);
	assert_true(q >= fv_hist_edge(b50) && q <= fv_hist_edge(b50 + 1));
	assert_true(fabs(q - 50.0) <= fv_hist_edge(b50 + 1) - fv_hist_edge(b50));
	assert_int_equal(fv_hist_quantile(&h, 0.0, &q), 0);
	assert_true(q == 1.0);
}

static void test_hist_moments(void **state)
{
	struct fv_hist h;
	double mean, sd;

	(void)state;
	fv_hist_init(&h);
	assert_int_equal(fv_hist_moments(&h, &mean, &sd), -ENODATA);
	/* 1, 2, 3, 4: mean 2.5, population variance (2.25+0.25+0.25+2.25)/4 = 1.25 */
	for (int i = 1; i <= 4; i++)
		assert_int_equal(fv_hist_add(&h, i), 0);
	assert_int_equal(fv_hist_moments(&h, &mean, &sd), 0);
	assert_near(mean, 2.5, 1e-12);
	assert_near(sd, sqrt(1.25), 1e-12);
	/* Constant scores: std 0, never NaN from rounding. */
	fv_hist_init(&h);
	for (int i = 0; i < 1000; i++)
		fv_hist_add(&h, 0.1);
	assert_int_equal(fv_hist_moments(&h, &mean, &sd), 0);
	assert_near(mean, 0.1, 1e-12);
	assert_true(sd >= 0.0 && sd < 1e-6);
}

/* ---- normalisation statistics ---- */

static void test_chstats_merge(void **state)
{
	struct fv_chstats all, a, b, m;
	struct fv_rng r;

	(void)state;
	fv_chstats_init(&all);
	fv_chstats_init(&a);
	fv_chstats_init(&b);
	assert_true(isinf(all.min) && all.min > 0 && isinf(all.max) && all.max < 0);
	fv_rng_seed(&r, 4);
	for (int i = 0; i < 5000; i++) {
		double x = 20.0 + 5.0 * fv_rng_normal(&r);

		fv_chstats_add(&all, x);
		fv_chstats_add(fv_rng_below(&r, 2) ? &a : &b, x);
	}
	m = a;
	fv_chstats_merge(&m, &b);
	assert_true(m.count == all.count && m.count == 5000);
	assert_true(m.min == all.min && m.max == all.max);
	assert_near(m.sum, all.sum, 1e-12 * fabs(all.sum));
	assert_near(m.sumsq, all.sumsq, 1e-12 * all.sumsq);
	/* Non-finite readings are ignored. */
	fv_chstats_add(&m, NAN);
	fv_chstats_add(&m, INFINITY);
	assert_true(m.count == 5000 && m.max == all.max);
	/* Merging an empty one changes nothing; merging into an empty one copies. */
	fv_chstats_init(&b);
	fv_chstats_merge(&m, &b);
	assert_true(m.count == 5000 && m.min == all.min && m.max == all.max);
	fv_chstats_merge(&b, &m);
	assert_memory_equal(&b, &m, sizeof(m));
}

static void test_norm_from_stats(void **state)
{
	struct fv_chstats s[3];
	const double v0[] = { 2, 4, 4, 4, 5, 5, 7, 9 };
	float mean[3] = { -1, -1, -1 }, sd[3] = { -1, -1, -1 };

	(void)state;
	for (int c = 0; c < 3; c++)
		fv_chstats_init(&s[c]);
	/* Channel 0: mean 40/8 = 5; squared deviations 9+1+1+1+0+0+4+16 = 32,
	 * population variance 32/8 = 4, std 2. */
	for (size_t i = 0; i < FV_ARRAY_SIZE(v0); i++)
		fv_chstats_add(&s[0], v0[i]);
	/* Channel 1: constant 3 -> std 0, floored at min_std. */
	for (int i = 0; i < 10; i++)
		fv_chstats_add(&s[1], 3.0);
	/* Channel 2 is empty: nothing may be written. */
	assert_int_equal(fv_norm_from_stats(s, 3, 1e-3, mean, sd), -ENODATA);
	assert_true(mean[0] == -1 && sd[0] == -1);
	fv_chstats_add(&s[2], -1.0);
	fv_chstats_add(&s[2], 1.0);
	assert_int_equal(fv_norm_from_stats(s, 3, 1e-3, mean, sd), 0);
	assert_float_equal(mean[0], 5.0f, 1e-6);
	assert_float_equal(sd[0], 2.0f, 1e-6);
	assert_float_equal(mean[1], 3.0f, 1e-6);
	assert_float_equal(sd[1], 1e-3f, 1e-9);
	assert_float_equal(mean[2], 0.0f, 1e-9);
	assert_float_equal(sd[2], 1.0f, 1e-6);
	/* The floor applies to small but non-zero spreads too. */
	assert_int_equal(fv_norm_from_stats(s, 3, 1.5, mean, sd), 0);
	assert_float_equal(sd[0], 2.0f, 1e-6);
	assert_float_equal(sd[2], 1.5f, 1e-6);
	assert_int_equal(fv_norm_from_stats(s, 3, NAN, mean, sd), -EINVAL);
	assert_int_equal(fv_norm_from_stats(s, 3, -1.0, mean, sd), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fedavg_hand),
		cmocka_unit_test(test_fedavg_errors),
		cmocka_unit_test(test_fedavg_large),
		cmocka_unit_test(test_hist_edges),
		cmocka_unit_test(test_hist_under_over),
		cmocka_unit_test(test_hist_merge),
		cmocka_unit_test(test_hist_quantile),
		cmocka_unit_test(test_hist_moments),
		cmocka_unit_test(test_chstats_merge),
		cmocka_unit_test(test_norm_from_stats),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
