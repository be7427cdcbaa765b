/* Unit tests for lib/fl/threshold.c: the threshold methods against
 * hand-computed cases and known distributions, merge-equals-union, the
 * adaptive threshold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fedvigil/threshold.h"
#include "fedvigil/util.h"

#define assert_near(a, b, tol) near_impl((a), (b), (tol), __FILE__, __LINE__)

static void near_impl(double a, double b, double tol, const char *file, int line)
{
	if (!(fabs(a - b) <= tol))
		fail_msg("%s:%d: %.17g != %.17g (tolerance %.3g)", file, line, a, b, tol);
}

/* Bin width in decades (0.05 with the defaults). */
#define BW ((FV_HIST_LOG10_HI - FV_HIST_LOG10_LO) / FV_HIST_BINS)

static void test_names(void **state)
{
	enum fv_thr_method m;

	(void)state;
	for (int i = 0; i < FV_THR__MAX; i++) {
		assert_int_equal(fv_thr_method_parse(fv_thr_method_name((enum fv_thr_method)i), &m),
				 0);
		assert_int_equal(m, i);
	}
	assert_int_equal(fv_thr_method_parse("POT", &m), -EINVAL);
	assert_int_equal(fv_thr_method_parse("", &m), -EINVAL);
	assert_string_equal(fv_thr_method_name((enum fv_thr_method)7), "?");
}

/* 100 scores of exactly 1.0 sit at the lower edge of the bin [1, 10^0.05):
 * the median is halfway through it in log10, 10^0.025; with margin 2 the
 * threshold doubles. */
static void test_percentile_hand(void **state)
{
	struct fv_hist h;
	struct fv_thr_rule r = { .method = FV_THR_PERCENTILE, .q = 0.5, .margin = 1.0 };
	double x;

	(void)state;
	fv_hist_init(&h);
	for (int i = 0; i < 100; i++)
		fv_hist_add(&h, 1.0);
	assert_int_equal(fv_thr_from_hist(&h, &r, &x), 0);
	assert_near(x, pow(10.0, 0.5 * BW), 1e-12);
	r.margin = 2.0;
	assert_int_equal(fv_thr_from_hist(&h, &r, &x), 0);
	assert_near(x, 2.0 * pow(10.0, 0.5 * BW), 1e-12);
	/* 0.99: 99 % of the way through the bin */
	r.q = 0.99;
	r.margin = 1.0;
	assert_int_equal(fv_thr_from_hist(&h, &r, &x), 0);
	assert_near(x, pow(10.0, 0.99 * BW), 1e-12);
}

/* Scores 1, 2, 3, 4: mean 2.5, population std sqrt(1.25); k = 2 and
 * margin 1.5 give 1.5 * (2.5 + 2 sqrt(1.25)). */
static void test_meanstd_hand(void **state)
{
	struct fv_hist h;
	struct fv_sdist d;
	struct fv_thr_rule r = { .method = FV_THR_MEANSTD, .q = 0.99, .k = 2.0, .margin = 1.5 };
	double x, mean, sd;

	(void)state;
	fv_hist_init(&h);
	fv_sdist_init(&d);
	for (int i = 1; i <= 4; i++) {
		fv_hist_add(&h, i);
		fv_sdist_add(&d, i, 1.0);
	}
	assert_int_equal(fv_thr_from_hist(&h, &r, &x), 0);
	assert_near(x, 1.5 * (2.5 + 2.0 * sqrt(1.25)), 1e-12);
	assert_int_equal(fv_thr_compute(&d, &r, &x), 0);
	assert_near(x, 1.5 * (2.5 + 2.0 * sqrt(1.25)), 1e-12);
	/* Weights: 3 at 1.0 and 1 at 5.0 is the same as four samples. */
	fv_sdist_init(&d);
	fv_sdist_add(&d, 1.0, 3.0);
	fv_sdist_add(&d, 5.0, 1.0);
	assert_int_equal(fv_sdist_moments(&d, &mean, &sd), 0);
	assert_near(mean, 2.0, 1e-12);
	assert_near(sd, sqrt((3 * 1.0 + 9.0) / 4.0), 1e-12);
}

/* 980 scores at 1.0 and 20 at 10.0. The tail starts at the 0.98 quantile,
 * the top of 1.0's bin: t = 10^BW. The 20 excesses sit at 10's bin
 * log-midpoint, 10^(1 + BW/2): all equal, so the variance is 0 and the
 * shape is clamped to -0.5, scale = mean excess * 1.5. For q = 0.99 the
 * tail survival is p = 0.01 * 1000 / 20 = 0.5:
 *   z = t + sigma / xi * (p^-xi - 1) = t - 2 sigma (sqrt(0.5) - 1). */
static void test_pot_hand(void **state)
{
	struct fv_sdist d;
	double x, xi, sigma, t = pow(10.0, BW), m = pow(10.0, 1.0 + BW / 2) - pow(10.0, BW);

	(void)state;
	fv_sdist_init(&d);
	fv_sdist_add(&d, 1.0, 980.0);
	fv_sdist_add(&d, 10.0, 20.0);
	assert_int_equal(fv_thr_pot(&d, 0.98, 0.99, &x, &xi, &sigma), 0);
	assert_near(xi, -0.5, 1e-12);
	assert_near(sigma, 1.5 * m, 1e-9);
	assert_near(x, t - 2.0 * 1.5 * m * (sqrt(0.5) - 1.0), 1e-9);
	/* q at or below the tail's start: the plain quantile */
	assert_int_equal(fv_thr_pot(&d, 0.98, 0.5, &x, &xi, &sigma), 0);
	assert_near(x, pow(10.0, (500.0 / 980.0) * BW), 1e-12);
	assert_near(xi, 0.0, 0.0);
	/* a tail below FV_THR_POT_MIN_TAIL: the plain quantile too */
	fv_sdist_init(&d);
	fv_sdist_add(&d, 1.0, 98.0);
	fv_sdist_add(&d, 10.0, 2.0);
	assert_int_equal(fv_thr_pot(&d, 0.98, 0.99, &x, NULL, NULL), 0);
	assert_near(x, pow(10.0, 1.0 + 0.5 * BW), 1e-12);
}

/* Exponential scores (shape 0, scale 1), drawn as evenly spaced quantiles
 * x_i = -ln(1 - (i + 0.5) / N): POT should find a shape near 0 and a scale
 * near 1, and extrapolate q = 0.9999 (beyond what 50,000 points show well)
 * to near -ln(1e-4) = 9.21. A Pareto tail with alpha = 4 (shape 0.25) is
 * recognised as heavy. */
static void test_pot_known(void **state)
{
	enum { N = 50000 };
	struct fv_sdist d;
	double x, xi, sigma;

	(void)state;
	fv_sdist_init(&d);
	for (int i = 0; i < N; i++)
		fv_sdist_add(&d, -log(1.0 - (i + 0.5) / N), 1.0);
	assert_int_equal(fv_thr_pot(&d, 0.98, 0.9999, &x, &xi, &sigma), 0);
	assert_true(fabs(xi) < 0.06);
	assert_near(sigma, 1.0, 0.1);
	assert_near(x, -log(1e-4), 0.3);

	fv_sdist_init(&d);
	for (int i = 0; i < N; i++)
		fv_sdist_add(&d, pow(1.0 - (i + 0.5) / N, -1.0 / 4.0), 1.0);
	assert_int_equal(fv_thr_pot(&d, 0.98, 0.9999, &x, &xi, &sigma), 0);
	assert_near(xi, 0.25, 0.07);
	assert_near(x, pow(1e-4, -0.25), 0.1 * pow(1e-4, -0.25));
}

/* Agents' histograms merge into the histogram of the union, so every
 * threshold of the merged statistics equals the one of the pooled scores:
 * exactly for percentile and POT (integer counts), to rounding for
 * mean + k std (sums added in another order). */
static void test_merge_equals_union(void **state)
{
	struct fv_hist a, b, u, m;
	struct fv_sdist da, db, du;
	struct fv_rng rng;
	const struct fv_thr_rule rules[] = {
		{ .method = FV_THR_PERCENTILE, .q = 0.99, .margin = 1.0 },
		{ .method = FV_THR_MEANSTD, .q = 0.99, .k = 3.0, .margin = 1.0 },
		{ .method = FV_THR_POT, .q = 0.995, .margin = 1.2 },
	};

	(void)state;
	fv_rng_seed(&rng, 42);
	fv_hist_init(&a);
	fv_hist_init(&b);
	fv_hist_init(&u);
	fv_sdist_init(&da);
	fv_sdist_init(&db);
	fv_sdist_init(&du);
	for (int i = 0; i < 20000; i++) {
		/* two agents with different normal levels */
		bool first = i % 3 != 0;
		double s = (first ? 0.01 : 0.05) * -log(1.0 - fv_rng_uniform(&rng));

		fv_hist_add(first ? &a : &b, s);
		fv_hist_add(&u, s);
		fv_sdist_add(first ? &da : &db, s, 1.0);
		fv_sdist_add(&du, s, 1.0);
	}
	m = a;
	fv_hist_merge(&m, &b);
	fv_sdist_merge(&da, &db);
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		double xm, xu, xs;

		assert_int_equal(fv_thr_from_hist(&m, &rules[i], &xm), 0);
		assert_int_equal(fv_thr_from_hist(&u, &rules[i], &xu), 0);
		assert_int_equal(fv_thr_compute(&da, &rules[i], &xs), 0);
		if (rules[i].method == FV_THR_MEANSTD) {
			assert_near(xm, xu, 1e-12 * xu);
			assert_near(xs, xu, 1e-12 * xu);
		} else {
			assert_true(xm == xu);
			assert_near(xs, xu, 1e-12 * xu);
		}
		assert_true(xu > 0.0);
	}
	/* The pooled percentile lies between the two agents' own. */
	double qa, qb, qu;

	assert_int_equal(fv_thr_from_hist(&a, &rules[0], &qa), 0);
	assert_int_equal(fv_thr_from_hist(&b, &rules[0], &qb), 0);
	assert_int_equal(fv_thr_from_hist(&u, &rules[0], &qu), 0);
	assert_true(qa < qu && qu < qb);
}

/* The integer histogram and the real-weighted distribution agree on the
 * quantile at every q (one implementation behind both), including the
 * under and over buckets. */
static void test_hist_sdist_agree(void **state)
{
	struct fv_hist h;
	struct fv_sdist d;
	const double s[] = { 0.0, 5e-7, 1e-6, 0.3, 0.3, 2.0, 7.5, 1e6, 3e7 };

	(void)state;
	fv_hist_init(&h);
	fv_sdist_init(&d);
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		fv_hist_add(&h, s[i]);
		fv_sdist_add(&d, s[i], 1.0);
	}
	for (int i = 0; i <= 100; i++) {
		double x1, x2;

		assert_int_equal(fv_hist_quantile(&h, i / 100.0, &x1), 0);
		assert_int_equal(fv_sdist_quantile(&d, i / 100.0, &x2), 0);
		assert_true(x1 == x2);
	}
}

static void test_errors(void **state)
{
	struct fv_sdist d;
	struct fv_hist h;
	struct fv_thr_rule r = { .method = FV_THR_PERCENTILE, .q = 0.99, .margin = 1.0 };
	double x = 42.0;

	(void)state;
	fv_sdist_init(&d);
	fv_hist_init(&h);
	for (int m = 0; m < FV_THR__MAX; m++) {
		r.method = (enum fv_thr_method)m;
		assert_int_equal(fv_thr_compute(&d, &r, &x), -ENODATA);
		assert_int_equal(fv_thr_from_hist(&h, &r, &x), -ENODATA);
	}
	assert_true(x == 42.0);
	fv_sdist_add(&d, 1.0, 1.0);
	r.method = FV_THR_PERCENTILE;
	r.q = 1.0;
	assert_int_equal(fv_thr_compute(&d, &r, &x), -EINVAL);
	r.q = 0.0;
	assert_int_equal(fv_thr_compute(&d, &r, &x), -EINVAL);
	r.q = 0.5;
	r.margin = 0.0;
	assert_int_equal(fv_thr_compute(&d, &r, &x), -EINVAL);
	r.margin = 1.0;
	r.k = -1.0;
	assert_int_equal(fv_thr_compute(&d, &r, &x), -EINVAL);
	r.k = 0.0;
	r.method = (enum fv_thr_method)FV_THR__MAX;
	assert_int_equal(fv_thr_compute(&d, &r, &x), -EINVAL);
	assert_true(x == 42.0);
	assert_int_equal(fv_sdist_add(&d, NAN, 1.0), -ERANGE);
	assert_int_equal(fv_sdist_add(&d, -1.0, 1.0), -ERANGE);
	assert_int_equal(fv_sdist_add(&d, 1.0, 0.0), -EINVAL);
	assert_int_equal(fv_sdist_add(&d, 1.0, INFINITY), -EINVAL);
	assert_int_equal(fv_sdist_quantile(&d, 1.5, &x), -EINVAL);
}

/* Halflife 1: each observation halves the older weights. After 1.0 then
 * 100.0 the weights are 0.5 and 1; the median (rank 0.75) lies a quarter
 * into 100's bin. */
static void test_adapt_hand(void **state)
{
	struct fv_thr_adapt a;
	struct fv_thr_rule r = { .method = FV_THR_PERCENTILE, .q = 0.5, .margin = 1.0 };

	(void)state;
	assert_int_equal(fv_thr_adapt_init(&a, &r, NULL, 0.0, 1.0), 0);
	assert_true(fv_thr_adapt_threshold(&a) == 0.0);
	assert_int_equal(fv_thr_adapt_observe(&a, 1.0), 0);
	assert_near(fv_thr_adapt_threshold(&a), pow(10.0, 0.5 * BW), 1e-12);
	assert_int_equal(fv_thr_adapt_observe(&a, 100.0), 0);
	assert_near(fv_thr_adapt_threshold(&a), pow(10.0, 2.0 + 0.25 * BW), 1e-10);
	assert_int_equal(fv_thr_adapt_observe(&a, INFINITY), -ERANGE);
	assert_int_equal(fv_thr_adapt_init(&a, &r, NULL, -1.0, 1.0), -EINVAL);
	assert_int_equal(fv_thr_adapt_init(&a, &r, NULL, 1.0, -1.0), -EINVAL);
}

/* A prior of 1000 scores at 1.0 scaled to weight 100, no decay, and 10
 * observations at 10.0: q = 0.95 is rank 104.5 of 110, 4.5 of the 10 into
 * 10's bin. Seeding adds the agent's own windows at full weight. */
static void test_adapt_prior(void **state)
{
	struct fv_thr_adapt a;
	struct fv_thr_rule r = { .method = FV_THR_PERCENTILE, .q = 0.95, .margin = 1.0 };
	struct fv_sdist prior, own;

	(void)state;
	fv_sdist_init(&prior);
	fv_sdist_add(&prior, 1.0, 1000.0);
	assert_int_equal(fv_thr_adapt_init(&a, &r, &prior, 100.0, 0.0), 0);
	assert_near(fv_thr_adapt_threshold(&a), pow(10.0, 0.95 * BW), 1e-12);
	for (int i = 0; i < 10; i++)
		fv_thr_adapt_observe(&a, 10.0);
	assert_near(fv_thr_adapt_threshold(&a), pow(10.0, 1.0 + 0.45 * BW), 1e-10);
	fv_sdist_init(&own);
	fv_sdist_add(&own, 10.0, 90.0);
	fv_thr_adapt_seed(&a, &own);
	/* 100 at 1.0, 100 at 10.0: q = 0.95 is rank 190, 90 % into 10's bin */
	assert_near(fv_thr_adapt_threshold(&a), pow(10.0, 1.0 + 0.9 * BW), 1e-10);
}

/* When an agent's normal level moves from 1 to 4, a decayed threshold
 * follows within a few half-lives while an undecayed one still reflects
 * the old level; a prior keeps a floor under both. */
static void test_adapt_tracks(void **state)
{
	struct fv_thr_adapt fast, slow;
	struct fv_thr_rule r = { .method = FV_THR_MEANSTD, .q = 0.99, .k = 3.0, .margin = 1.0 };
	struct fv_rng rng;

	(void)state;
	fv_rng_seed(&rng, 7);
	assert_int_equal(fv_thr_adapt_init(&fast, &r, NULL, 0.0, 200.0), 0);
	assert_int_equal(fv_thr_adapt_init(&slow, &r, NULL, 0.0, 0.0), 0);
	for (int i = 0; i < 4000; i++) {
		double level = i < 2000 ? 1.0 : 4.0;
		double s = level * (0.9 + 0.2 * fv_rng_uniform(&rng));

		fv_thr_adapt_observe(&fast, s);
		fv_thr_adapt_observe(&slow, s);
		if (i == 1999) {
			assert_true(fv_thr_adapt_threshold(&fast) < 1.3);
			assert_true(fv_thr_adapt_threshold(&slow) < 1.3);
		}
	}
	/* 2000 windows = 10 half-lives: the fast one sits near 4 * 1.17 */
	assert_true(fv_thr_adapt_threshold(&fast) > 4.2 && fv_thr_adapt_threshold(&fast) < 4.8);
	/* the undecayed one mixes both levels: its std is large */
	assert_true(fv_thr_adapt_threshold(&slow) > 6.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_percentile_hand),
		cmocka_unit_test(test_meanstd_hand),
		cmocka_unit_test(test_pot_hand),
		cmocka_unit_test(test_pot_known),
		cmocka_unit_test(test_merge_equals_union),
		cmocka_unit_test(test_hist_sdist_agree),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_adapt_hand),
		cmocka_unit_test(test_adapt_prior),
		cmocka_unit_test(test_adapt_tracks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
