/* Unit tests for lib/detect/feat.c and lib/detect/scorer.c: features,
 * per-column calibration, smoothing, the threshold modes, attribution, and
 * the coordinator's detection part of closing a round, against
 * hand-computed values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/detect.h"
#include "fedvigil/ingest.h"
#include "fedvigil/scorer.h"

#define assert_near(a, b, tol) near_impl((a), (b), (tol), __FILE__, __LINE__)

static void near_impl(double a, double b, double tol, const char *file, int line)
{
	if (!(fabs(a - b) <= tol))
		fail_msg("%s:%d: %.17g != %.17g (tolerance %.3g)", file, line, a, b, tol);
}

static void test_features(void **state)
{
	/* W = 3 rows of C = 2 channels */
	const float raw[] = { 1, 10, 3, 10, 4, 16 };
	const float mean[] = { 1, 10 }, std[] = { 2, 3 };
	float v[6], ref[6], d[6], b[12];
	enum fv_feat f;

	(void)state;
	assert_int_equal(fv_feat_columns(FV_FEAT_VALUES, 7), 7);
	assert_int_equal(fv_feat_columns(FV_FEAT_DIFF, 7), 7);
	assert_int_equal(fv_feat_columns(FV_FEAT_BOTH, 7), 14);
	for (int i = 0; i < FV_FEAT__MAX; i++) {
		assert_int_equal(fv_feat_parse(fv_feat_name((enum fv_feat)i), &f), 0);
		assert_int_equal(f, i);
	}
	assert_int_equal(fv_feat_parse("delta", &f), -EINVAL);
	/* values: exactly what fv_window_normalize() makes */
	memcpy(ref, raw, sizeof(ref));
	fv_window_normalize(ref, 3, 2, mean, std);
	fv_feat_prepare(v, raw, 3, 2, mean, std, FV_FEAT_VALUES);
	assert_memory_equal(v, ref, sizeof(v));
	/* z = (0, 0), (1, 0), (1.5, 2): differences (0, 0), (1, 0), (0.5, 2) */
	fv_feat_prepare(d, raw, 3, 2, mean, std, FV_FEAT_DIFF);
	const float dref[] = { 0, 0, 1, 0, 0.5f, 2 };
	for (int i = 0; i < 6; i++)
		assert_near(d[i], dref[i], 1e-6);
	/* both: [z, dz] per row */
	fv_feat_prepare(b, raw, 3, 2, mean, std, FV_FEAT_BOTH);
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 2; c++) {
			assert_near(b[r * 4 + c], ref[r * 2 + c], 1e-6);
			assert_near(b[r * 4 + 2 + c], dref[r * 2 + c], 1e-6);
		}
}

/* A global model for W = 1, C = 2 whose weights are all zero: it
 * reconstructs every input as 0, so a column's error is the square of its
 * normalised value (mean 0, std 1 here). */
struct fixture {
	struct fv_global g;
	float mean[2], std[2], col_err[2];
};

static void make_global(struct fixture *f, bool calibrate, float smooth, float threshold)
{
	const uint32_t hidden[] = { 1 };

	memset(f, 0, sizeof(*f));
	f->mean[0] = f->mean[1] = 0.0f;
	f->std[0] = f->std[1] = 1.0f;
	assert_int_equal(
		fv_model_spec_autoencoder(2, hidden, 1, FV_ACT_TANH, FV_ACT_LINEAR, &f->g.spec), 0);
	f->g.n_params = fv_model_spec_nparams(&f->g.spec);
	f->g.params = calloc(f->g.n_params, sizeof(float));
	assert_non_null(f->g.params);
	f->g.window = 1;
	f->g.stride = 1;
	f->g.n_channels = 2;
	f->g.mean = f->mean;
	f->g.std = f->std;
	f->g.calibrate = calibrate;
	f->g.smooth = smooth;
	f->g.threshold = threshold;
	f->g.rule = (struct fv_thr_rule){ .method = FV_THR_PERCENTILE, .q = 0.5, .margin = 1.0 };
	f->g.version = 7;
}

static void drop_global(struct fixture *f)
{
	free(f->g.params);
}

/* Windows (1, 2) and (3, 4): column errors (1, 4) and (9, 16), sums
 * (10, 20) over 2 windows, normal errors (5, 10), weights (0.2, 0.1).
 * Scores: (0.2 + 0.4) / 2 = 0.3 and (1.8 + 1.6) / 2 = 1.7; with smoothing
 * 0.5 the second (continuing) becomes 0.5 * 1.7 + 0.5 * 0.3 = 1.0. */
static void test_calibrate_hand(void **state)
{
	struct fixture f;
	struct fv_scorer_opts o = {
		.mode = FV_THRMODE_GLOBAL, .prior_windows = 0, .halflife = 10, .calib_prior = 0
	};
	struct fv_scorer *s;
	const float x[] = { 1, 2, 3, 4 };
	const uint8_t cont[] = { 0, 1 };
	struct fv_hist h;
	double ce[2];
	float score, share[2];

	(void)state;
	make_global(&f, true, 0.5f, 2.0f);
	s = fv_scorer_new(&o, 2);
	assert_non_null(s);
	assert_int_equal(fv_scorer_calibrate(s, x, cont, 2, &h, ce), -EINVAL); /* no model */
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_int_equal(fv_scorer_input(s), 2);
	/* before calibration: no fleet errors, weights 1 */
	assert_true(fv_scorer_weights(s)[0] == 1.0f && fv_scorer_weights(s)[1] == 1.0f);
	assert_int_equal(fv_scorer_calibrate(s, x, cont, 2, &h, ce), 0);
	assert_int_equal(fv_scorer_calibrated(s), 2);
	assert_near(ce[0], 10.0, 1e-9);
	assert_near(ce[1], 20.0, 1e-9);
	assert_near(fv_scorer_weights(s)[0], 0.2, 1e-7);
	assert_near(fv_scorer_weights(s)[1], 0.1, 1e-7);
	assert_int_equal(h.count, 2);
	assert_near(h.sum, 0.3 + 1.0, 1e-6);
	/* live: the smoothing state starts fresh after a calibration */
	const float w1[] = { 1, 2 }, w2[] = { 3, 4 };

	assert_int_equal(fv_scorer_score(s, w1, true, &score, share), 0);
	assert_near(score, 0.3, 1e-6);
	/* shares of the calibrated error: 0.2 and 0.4 of 0.6 */
	assert_near(share[0], 1.0 / 3, 1e-6);
	assert_near(share[1], 2.0 / 3, 1e-6);
	assert_int_equal(fv_scorer_score(s, w2, true, &score, NULL), 0);
	assert_near(score, 1.0, 1e-6);
	/* a gap restarts the average */
	assert_int_equal(fv_scorer_score(s, w2, false, &score, NULL), 0);
	assert_near(score, 1.7, 1e-6);
	assert_true(fv_scorer_threshold(s) == 2.0f);
	fv_scorer_free(s);

	/* Without calibration the score is the plain MSE: (1 + 4) / 2. */
	drop_global(&f);
	make_global(&f, false, 1.0f, 2.0f);
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_int_equal(fv_scorer_calibrate(s, x, cont, 2, NULL, NULL), 0);
	assert_int_equal(fv_scorer_score(s, w1, true, &score, share), 0);
	assert_near(score, 2.5, 1e-6);
	assert_near(share[0], 0.2, 1e-6);
	fv_scorer_free(s);
	drop_global(&f);
}

/* With the fleet's column errors (2, 8) counted as P = 2 windows, the
 * normal errors become ((10 + 4) / 4, (20 + 16) / 4) = (3.5, 9): the prior
 * alone before any own data, then shrunk towards it. A column without
 * normal error is floored at 1e-3 of the mean. */
static void test_calibrate_prior(void **state)
{
	struct fixture f;
	struct fv_scorer_opts o = {
		.mode = FV_THRMODE_GLOBAL, .prior_windows = 0, .halflife = 10, .calib_prior = 2
	};
	struct fv_scorer *s;
	const float x[] = { 1, 2, 3, 4 }, z[] = { 0, 2, 0, 2 };

	(void)state;
	make_global(&f, true, 1.0f, 1.0f);
	f.col_err[0] = 2.0f;
	f.col_err[1] = 8.0f;
	f.g.col_err = f.col_err;
	f.g.n_col_err = 2;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_near(fv_scorer_weights(s)[0], 0.5, 1e-7);
	assert_near(fv_scorer_weights(s)[1], 0.125, 1e-7);
	assert_int_equal(fv_scorer_calibrate(s, x, NULL, 2, NULL, NULL), 0);
	assert_near(fv_scorer_weights(s)[0], 1.0 / 3.5, 1e-6);
	assert_near(fv_scorer_weights(s)[1], 1.0 / 9.0, 1e-6);
	fv_scorer_free(s);
	/* no prior, column 0 always exactly reconstructed: e = (0, 4), mean
	 * 2, floor 2e-3 */
	f.g.n_col_err = 0;
	f.g.col_err = NULL;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_int_equal(fv_scorer_calibrate(s, z, NULL, 2, NULL, NULL), 0);
	assert_near(fv_scorer_weights(s)[0], 1.0 / 2e-3, 1e-2);
	assert_near(fv_scorer_weights(s)[1], 0.25, 1e-7);
	fv_scorer_free(s);
	drop_global(&f);
}

/* Threshold modes. The fleet's scores: 100 at 1.0 (median 10^0.025 with
 * 20 bins a decade). global: the published threshold, whatever happens.
 * local: the fleet's rule on the fleet's scores (weight prior_windows =
 * 100) plus the agent's own (0.3 and 1.7, as in test_calibrate_hand
 * without smoothing), fixed between calibrations. adaptive: below. */
static void test_modes(void **state)
{
	struct fixture f;
	struct fv_scorer_opts o = { .prior_windows = 100, .halflife = 1, .calib_prior = 0 };
	const float x[] = { 1, 2, 3, 4 };
	struct fv_scorer *s;
	struct fv_sdist d;
	double expect;

	(void)state;
	make_global(&f, true, 1.0f, 5.0f);
	fv_hist_init(&f.g.scores);
	for (int i = 0; i < 100; i++)
		fv_hist_add(&f.g.scores, 1.0);
	for (int m = 0; m < FV_THRMODE__MAX; m++) {
		enum fv_thr_mode mode;

		assert_int_equal(fv_thr_mode_parse(fv_thr_mode_name((enum fv_thr_mode)m), &mode),
				 0);
		assert_int_equal(mode, m);
	}
	/* global */
	o.mode = FV_THRMODE_GLOBAL;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_int_equal(fv_scorer_calibrate(s, x, NULL, 2, NULL, NULL), 0);
	assert_true(fv_scorer_threshold(s) == 5.0f);
	fv_scorer_observe(s, 100.0f, false);
	assert_true(fv_scorer_threshold(s) == 5.0f);
	fv_scorer_free(s);
	/* local: the rule on prior (100 x 1.0) + own (0.3, 1.7) */
	fv_sdist_init(&d);
	fv_sdist_add(&d, 1.0, 100.0);
	fv_sdist_add(&d, 0.3, 1.0);
	fv_sdist_add(&d, 1.7, 1.0);
	assert_int_equal(fv_thr_compute(&d, &f.g.rule, &expect), 0);
	o.mode = FV_THRMODE_LOCAL;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	/* before calibration: the fleet's distribution alone */
	assert_near(fv_scorer_threshold(s), pow(10.0, 0.025), 1e-6);
	assert_int_equal(fv_scorer_calibrate(s, x, NULL, 2, NULL, NULL), 0);
	assert_near(fv_scorer_threshold(s), expect, 1e-6);
	fv_scorer_observe(s, 100.0f, false);
	assert_near(fv_scorer_threshold(s), expect, 1e-6);
	fv_scorer_free(s);
	/* adaptive: the fleet's threshold times Q(recent) / Q(reference).
	 * Right after calibration recent == reference: exactly the fleet's.
	 * The reference is local's distribution: the fleet's 100 scores at 1.0
	 * scaled to prior 2, plus own (0.3, 1.7); Q0 = its median. With
	 * halflife 1, thirty windows at 1.0 make recent ~ all 1.0, so the
	 * threshold becomes 5 * Q(1.0's bin) / Q0. Windows far above it then
	 * count as Q(recent) itself: the threshold stays in that bin. */
	double q0, lo, hi;

	fv_sdist_init(&d);
	fv_sdist_add(&d, 1.0, 2.0); /* the fleet's 100 scores scaled to prior 2 */
	fv_sdist_add(&d, 0.3, 1.0);
	fv_sdist_add(&d, 1.7, 1.0);
	assert_int_equal(fv_thr_compute(&d, &f.g.rule, &q0), 0);
	lo = 5.0 * 1.0 / q0;
	hi = 5.0 * pow(10.0, 0.05) / q0;
	o.mode = FV_THRMODE_ADAPTIVE;
	o.prior_windows = 2;
	o.halflife = 1;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_true(fv_scorer_threshold(s) == 5.0f); /* no own data: the fleet's */
	assert_int_equal(fv_scorer_calibrate(s, x, NULL, 2, NULL, NULL), 0);
	assert_near(fv_scorer_threshold(s), 5.0, 1e-5);
	for (int i = 0; i < 30; i++)
		fv_scorer_observe(s, 1.0f, false);
	assert_true(fv_scorer_threshold(s) >= lo && fv_scorer_threshold(s) < hi);
	/* The machine's normal moves up to 3.0 (below the threshold). The
	 * reference keeps its weight 2; the observations reach 2 (1 + 1/2 +
	 * ...) with halflife 1. Half the mass is then the reference's (0.3 at
	 * 0.5, 1.0 at 1, 1.7 at 0.5), half at 3.0: the median sits at the top
	 * of 1.7's bin, 10^0.25, and the threshold at 5 * 10^0.25 / Q0. */
	for (int i = 0; i < 30; i++)
		fv_scorer_observe(s, 3.0f, false);
	assert_near(fv_scorer_threshold(s), 5.0 * pow(10.0, 0.25) / q0, 1e-3);
	lo = 5.0 * pow(10.0, 0.2) / q0;
	hi = 5.0 * pow(10.0, 0.5) / q0;
	for (int i = 0; i < 100; i++)
		fv_scorer_observe(s, 1e6f, false);
	assert_true(fv_scorer_threshold(s) >= lo && fv_scorer_threshold(s) < hi);
	fv_scorer_observe(s, NAN, false); /* ignored */
	assert_true(fv_scorer_threshold(s) >= lo && fv_scorer_threshold(s) < hi);
	/* inside an alert, scores below the threshold are left out: a fault
	 * climbing towards it cannot lift it */
	float before = fv_scorer_threshold(s);

	for (int i = 0; i < 30; i++)
		fv_scorer_observe(s, 0.9f * before, true);
	assert_true(fv_scorer_threshold(s) == before);
	for (int i = 0; i < 30; i++)
		fv_scorer_observe(s, 0.9f * before, false);
	assert_true(fv_scorer_threshold(s) > before);
	fv_scorer_free(s);
	/* With a margin of 2, a score between the threshold / 2 and the
	 * threshold is already censored: 30 of them keep the threshold within
	 * a bin (12 %) of where it was; without the margin (as above) the same
	 * scores lift it. */
	f.g.rule.margin = 2.0;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_int_equal(fv_scorer_calibrate(s, x, NULL, 2, NULL, NULL), 0);
	before = fv_scorer_threshold(s);
	for (int i = 0; i < 30; i++)
		fv_scorer_observe(s, 0.9f * before, false);
	assert_true(fv_scorer_threshold(s) < 1.13f * before);
	fv_scorer_free(s);
	f.g.rule.margin = 1.0;

	/* no fleet threshold yet: no alerts in any mode */
	f.g.threshold = 0.0f;
	s = fv_scorer_new(&o, 2);
	assert_int_equal(fv_scorer_set_model(s, &f.g), 0);
	assert_int_equal(fv_scorer_calibrate(s, x, NULL, 2, NULL, NULL), 0);
	fv_scorer_observe(s, 1.0f, false);
	assert_true(fv_scorer_threshold(s) == 0.0f);
	fv_scorer_free(s);
	drop_global(&f);
}

static void test_bad(void **state)
{
	struct fixture f;
	struct fv_scorer_opts o = { .mode = FV_THRMODE_GLOBAL, .halflife = 1 };
	struct fv_scorer *s;
	float score;

	(void)state;
	o.halflife = 0;
	assert_null(fv_scorer_new(&o, 2));
	o.halflife = 1;
	o.mode = (enum fv_thr_mode)FV_THRMODE__MAX;
	assert_null(fv_scorer_new(&o, 2));
	o.mode = FV_THRMODE_GLOBAL;
	assert_null(fv_scorer_new(&o, 0));
	s = fv_scorer_new(&o, 3);
	assert_non_null(s);
	make_global(&f, true, 1.0f, 1.0f);
	assert_int_equal(fv_scorer_set_model(s, &f.g), -EDOM); /* 2 channels, not 3 */
	assert_int_equal(fv_scorer_score(s, f.mean, true, &score, NULL), -EINVAL);
	assert_true(fv_scorer_threshold(s) == 0.0f);
	fv_scorer_free(s);
	fv_scorer_free(NULL);
	drop_global(&f);
}

/* Closing a round: histograms merge (4 scores at 1.0 and 4 at 10.0: the
 * median sits at the top of 1.0's bin, 10^0.05), the column errors become
 * sums over counts ((4 + 12) / 8, (8 + 36) / 8); an update without them
 * (or with the wrong length) adds its scores but not its errors. */
static void test_close_round(void **state)
{
	struct fixture f;
	struct fv_update u[3];
	double ce0[2] = { 4, 8 }, ce1[2] = { 12, 36 }, bad[3] = { 1000, 1000, 1000 };
	struct fv_thr_rule rule = { .method = FV_THR_PERCENTILE, .q = 0.5, .margin = 2.0 };

	(void)state;
	make_global(&f, true, 1.0f, 0.0f);
	memset(u, 0, sizeof(u));
	for (int i = 0; i < 3; i++)
		fv_hist_init(&u[i].hist);
	for (int i = 0; i < 4; i++) {
		fv_hist_add(&u[0].hist, 1.0);
		fv_hist_add(&u[1].hist, 10.0);
		fv_hist_add(&u[2].hist, 1.0);
	}
	u[0].col_err = ce0;
	u[0].n_col_err = 2;
	u[1].col_err = ce1;
	u[1].n_col_err = 2;
	u[2].col_err = bad;
	u[2].n_col_err = 3;
	assert_int_equal(fv_detect_close_round(&f.g, u, 2, &rule), 0);
	assert_int_equal(f.g.n_col_err, 2);
	assert_near(f.g.col_err[0], 2.0, 1e-6);
	assert_near(f.g.col_err[1], 5.5, 1e-6);
	assert_int_equal(f.g.scores.count, 8);
	assert_near(f.g.threshold, 2.0 * pow(10.0, 0.05), 1e-5);
	assert_true(f.g.rule.margin == 2.0);
	/* the third update: its scores count, its errors do not */
	float *kept = f.g.col_err;

	assert_int_equal(fv_detect_close_round(&f.g, u, 3, &rule), 0);
	assert_ptr_equal(f.g.col_err, kept);
	assert_near(f.g.col_err[1], 5.5, 1e-6);
	assert_int_equal(f.g.scores.count, 12);
	/* no scores at all: the threshold stays */
	float thr = f.g.threshold;

	for (int i = 0; i < 3; i++)
		fv_hist_init(&u[i].hist);
	assert_int_equal(fv_detect_close_round(&f.g, u, 3, &rule), 0);
	assert_true(f.g.threshold == thr);
	free(f.g.col_err);
	drop_global(&f);
}

/* Calibration over windows produced on demand (the agent's path) gives
 * what calibration over the array gives, asking for each window once, in
 * order. */
struct rows {
	const float *x;
	size_t D, next;
	bool in_order;
};

static void rows_row(void *ctx, size_t i, float *dst)
{
	struct rows *r = ctx;

	r->in_order &= i == r->next++;
	memcpy(dst, r->x + i * r->D, r->D * sizeof(float));
}

static void test_calibrate_rows(void **state)
{
	struct fixture f;
	struct fv_scorer_opts o = {
		.mode = FV_THRMODE_LOCAL, .prior_windows = 0, .halflife = 10, .calib_prior = 0
	};
	struct fv_scorer *s1, *s2;
	const float x[] = { 1, 2, 3, 4, 0.5f, 0.25f, 2, 1, 4, 4 };
	const uint8_t cont[] = { 0, 1, 1, 0, 1 };
	struct rows r = { x, 2, 0, true };
	struct fv_hist h1, h2;
	double ce1[2], ce2[2];

	(void)state;
	make_global(&f, true, 0.5f, 2.0f);
	s1 = fv_scorer_new(&o, 2);
	s2 = fv_scorer_new(&o, 2);
	assert_non_null(s1);
	assert_non_null(s2);
	assert_int_equal(fv_scorer_calibrate_rows(s2, rows_row, &r, cont, 5, &h2, ce2), -EINVAL);
	assert_int_equal(fv_scorer_set_model(s1, &f.g), 0);
	assert_int_equal(fv_scorer_set_model(s2, &f.g), 0);
	assert_int_equal(fv_scorer_calibrate_rows(s2, NULL, &r, cont, 5, &h2, ce2), -EINVAL);
	assert_int_equal(fv_scorer_calibrate(s1, x, cont, 5, &h1, ce1), 0);
	assert_int_equal(fv_scorer_calibrate_rows(s2, rows_row, &r, cont, 5, &h2, ce2), 0);
	assert_int_equal(r.next, 5);
	assert_true(r.in_order);
	assert_memory_equal(ce1, ce2, sizeof(ce1));
	assert_int_equal(h1.count, h2.count);
	assert_true(h1.sum == h2.sum);
	assert_memory_equal(fv_scorer_weights(s1), fv_scorer_weights(s2), 2 * sizeof(float));
	assert_true(fv_scorer_threshold(s1) == fv_scorer_threshold(s2));
	assert_true(fv_scorer_threshold(s1) > 0.0f);
	assert_int_equal(fv_scorer_calibrated(s2), 5);
	fv_scorer_free(s1);
	fv_scorer_free(s2);
	drop_global(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_calibrate_hand),
		cmocka_unit_test(test_calibrate_rows),
		cmocka_unit_test(test_calibrate_prior),
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_close_round),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
