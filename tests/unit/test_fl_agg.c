/* Unit tests for the aggregators of lib/fl (fl.h): every algorithm against
 * NumPy golden values (tests/unit/ref/agg_ref.py -> ref/agg_golden.h) and
 * small hand-computed cases, order independence under permutations,
 * atomic failure, state save/restore, and the DP noise. */
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
#include "ref/agg_golden.h"

#define assert_near(a, b, tol) near_impl((a), (b), (tol), __FILE__, __LINE__)

static void near_impl(double a, double b, double tol, const char *file, int line)
{
	if (!(fabs(a - b) <= tol))
		fail_msg("%s:%d: %.9g != %.9g (tolerance %.3g)", file, line, a, b, tol);
}

/* Float results against float32 NumPy values: a few ulps. */
static void assert_vec_near(const float *got, const float *want, size_t n, const char *what)
{
	for (size_t j = 0; j < n; j++)
		if (!(fabs((double)got[j] - want[j]) <= 4e-7 * fmax(1.0, fabs(want[j]))))
			fail_msg("%s[%zu]: %.9g != %.9g", what, j, (double)got[j],
				 (double)want[j]);
}

static struct fv_agg_config cfg_of(enum fv_agg_algo algo, double lr, double clip)
{
	struct fv_agg_config c = FV_AGG_CONFIG_DEFAULTS;

	c.algo = algo;
	c.server_lr = lr;
	c.clip_norm = clip;
	/* The goldens implement each rule as published: no relative clipping
	 * or capped claims (test_byzantine tests those). */
	c.clip_ratio = 0.0;
	c.sample_cap = 0.0;
	return c;
}

/* Run REF_ROUNDS rounds of the golden inputs, updates presented in the
 * order perm (NULL = as listed); the last round's `used` in used. */
static void run_ref(const struct fv_agg_config *c, const uint32_t *perm, float *ret_params,
		    struct fv_agg *(*keep), bool *used)
{
	struct fv_agg *a = fv_agg_new(c, REF_N, REF_K);
	struct fv_agg_update up[REF_K];
	bool u[REF_K];

	assert_non_null(a);
	memcpy(ret_params, ref_params0, sizeof(ref_params0));
	for (int t = 0; t < REF_ROUNDS; t++) {
		struct fv_agg_result res;

		for (uint32_t i = 0; i < REF_K; i++) {
			uint32_t s = perm ? perm[i] : i;

			up[i] = (struct fv_agg_update){ ref_names[s], ref_deltas[t][s],
							ref_samples[s] };
		}
		assert_int_equal(fv_agg_round(a, ret_params, up, REF_K, 1.0, (uint64_t)t,
					      ret_params, u, &res),
				 0);
		assert_int_equal(res.n_in, REF_K);
		assert_int_equal(res.steps, (uint64_t)t + 1);
	}
	if (used)
		for (uint32_t i = 0; i < REF_K; i++)
			used[perm ? perm[i] : i] = u[i];
	if (keep)
		*keep = a;
	else
		fv_agg_free(a);
}

static void check_moments(struct fv_agg *a, const float *m, const float *v, const char *what)
{
	struct fv_agg_state st;

	fv_agg_state_view(a, &st);
	assert_int_equal(st.n_params, REF_N);
	assert_non_null(st.m);
	assert_vec_near(st.m, m, REF_N, what);
	if (v) {
		assert_non_null(st.v);
		assert_vec_near(st.v, v, REF_N, what);
	}
}

static void test_golden_fedavg_family(void **state)
{
	float p[REF_N];
	struct fv_agg *a;
	struct fv_agg_config c;

	(void)state;
	c = cfg_of(FV_AGG_FEDAVG, 0, 0);
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_fedavg_params, REF_N, "fedavg");
	c = cfg_of(FV_AGG_FEDAVG, 0.5, 0);
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_fedavg_lr_params, REF_N, "fedavg lr 0.5");
	c = cfg_of(FV_AGG_FEDAVG, 0, 0.12);
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_fedavg_clip_params, REF_N, "fedavg clip");
	/* FedProx is FedAvg on the server. */
	c = cfg_of(FV_AGG_FEDPROX, 0, 0);
	c.prox_mu = 0.01;
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_fedavg_params, REF_N, "fedprox");

	c = cfg_of(FV_AGG_FEDAVGM, 1.0, 0);
	run_ref(&c, NULL, p, &a, NULL);
	assert_vec_near(p, ref_fedavgm_params, REF_N, "fedavgm");
	check_moments(a, ref_fedavgm_m, NULL, "fedavgm m");
	fv_agg_free(a);
}

static void test_golden_adaptive(void **state)
{
	static const struct {
		enum fv_agg_algo algo;
		const float *p, *m, *v;
	} cases[] = {
		{ FV_AGG_FEDADAM, ref_fedadam_params, ref_fedadam_m, ref_fedadam_v },
		{ FV_AGG_FEDYOGI, ref_fedyogi_params, ref_fedyogi_m, ref_fedyogi_v },
		{ FV_AGG_FEDADAGRAD, ref_fedadagrad_params, ref_fedadagrad_m, ref_fedadagrad_v },
	};
	float p[REF_N];

	(void)state;
	for (size_t i = 0; i < FV_ARRAY_SIZE(cases); i++) {
		struct fv_agg_config c = cfg_of(cases[i].algo, 0.01, 0);
		struct fv_agg *a;

		/* 0.01 is also the default server_lr of the adaptive ones. */
		assert_true(fv_agg_server_lr(&c) == 0.01);
		c.server_lr = 0;
		assert_true(fv_agg_server_lr(&c) == 0.01);
		run_ref(&c, NULL, p, &a, NULL);
		assert_vec_near(p, cases[i].p, REF_N, fv_agg_algo_name(cases[i].algo));
		check_moments(a, cases[i].m, cases[i].v, fv_agg_algo_name(cases[i].algo));
		fv_agg_free(a);
	}
}

static void test_golden_robust(void **state)
{
	struct fv_agg_config c;
	float p[REF_N];
	bool used[REF_K];

	(void)state;
	c = cfg_of(FV_AGG_MEDIAN, 0, 0);
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_median_params, REF_N, "median");
	c = cfg_of(FV_AGG_MEDIAN, 0, 0.12);
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_median_clip_params, REF_N, "median clip");
	c = cfg_of(FV_AGG_TRIMMED_MEAN, 0, 0);
	c.trim_beta = 0.2;
	run_ref(&c, NULL, p, NULL, NULL);
	assert_vec_near(p, ref_trimmed_params, REF_N, "trimmed mean");

	c = cfg_of(FV_AGG_KRUM, 0, 0);
	c.krum_f = 2;
	run_ref(&c, NULL, p, NULL, used);
	assert_vec_near(p, ref_krum_params, REF_N, "krum");
	for (int i = 0; i < REF_K; i++)
		assert_int_equal(used[i], i == ref_krum_pick[0]);
	assert_false(used[4]); /* the outlier */

	c = cfg_of(FV_AGG_MULTI_KRUM, 0, 0);
	c.krum_f = 2;
	c.krum_m = 3;
	run_ref(&c, NULL, p, NULL, used);
	assert_vec_near(p, ref_multi_krum_params, REF_N, "multi-krum");
	for (int i = 0, n = 0; i < REF_K; i++) {
		bool want = n < 3 && ref_multi_krum_pick[n] == i;

		assert_int_equal(used[i], want);
		n += want;
	}
}

/* Every algorithm gives bit-identical parameters (and moments) for any
 * order of the same updates. */
static void test_permutation_invariance(void **state)
{
	struct fv_rng rng;

	(void)state;
	fv_rng_seed(&rng, 99);
	for (int algo = 0; algo < FV_AGG__MAX; algo++) {
		struct fv_agg_config c = cfg_of((enum fv_agg_algo)algo, 0, algo % 2 ? 0.12 : 0);
		float p0[REF_N], p[REF_N];
		bool u0[REF_K], u[REF_K];

		c.prox_mu = 0.01;
		c.trim_beta = 0.2;
		c.krum_f = 2;
		run_ref(&c, NULL, p0, NULL, u0);
		for (int trial = 0; trial < 8; trial++) {
			uint32_t perm[REF_K];

			for (uint32_t i = 0; i < REF_K; i++)
				perm[i] = i;
			for (uint32_t i = REF_K - 1; i > 0; i--) {
				uint32_t j = (uint32_t)fv_rng_below(&rng, i + 1), t = perm[i];

				perm[i] = perm[j];
				perm[j] = t;
			}
			if (trial == 0) /* and the reverse order */
				for (uint32_t i = 0; i < REF_K; i++)
					perm[i] = REF_K - 1 - i;
			run_ref(&c, perm, p, NULL, u);
			if (memcmp(p, p0, sizeof(p)) != 0)
				fail_msg("%s: result depends on the order of updates",
					 fv_agg_algo_name((enum fv_agg_algo)algo));
			assert_memory_equal(u, u0, sizeof(u));
		}
	}
}

/* Small cases by hand. Five one-parameter... three-parameter updates:
 *   a = ( 1,  10, -3)   b = ( 2, -20,  0)   c = ( 3,  30,  3)
 *   d = ( 4, -40,  6)   e = (100, 50,  9)
 * median per coordinate: (3, 10, 3);
 * trimmed mean, beta 0.2 -> t = 1: drop min and max:
 *   x: (2+3+4)/3 = 3;  y: sorted -40 -20 10 30 50 -> (-20+10+30)/3 = 20/3;
 *   z: (0+3+6)/3 = 3.
 * Krum, f = 1 -> k - f - 2 = 2 neighbours; squared distances of coordinate
 * x only matter for e (|e - *| >= 96); a's nearest two by full distance:
 *   |a-b|^2 = 1+900+9 = 910, |a-c|^2 = 4+400+36 = 440, |a-d|^2 = 9+2500+81
 *   = 2590, so score(a) = 440 + 910 = 1350;
 *   b: |b-a| 910, |b-c| 1+2500+9 = 2510, |b-d| 4+400+36 = 440 -> 1350;
 *   c: |c-a| 440, |c-b| 2510, |c-d| 1+4900+9 = 4910 -> 440+2510 = 2950;
 *   d: 440 (b), 2590 (a) -> 3030;  e: >= 96^2 + ... -> largest.
 * a and b tie at 1350: the tie goes to the first name, a. */
static void test_hand_robust(void **state)
{
	static const float da[] = { 1, 10, -3 }, db[] = { 2, -20, 0 }, dc[] = { 3, 30, 3 },
			   dd[] = { 4, -40, 6 }, de[] = { 100, 50, 9 };
	struct fv_agg_update up[] = {
		{ "e", de, 1 }, { "c", dc, 1 }, { "a", da, 1 }, { "d", dd, 1 }, { "b", db, 1 },
	};
	const float zero[3] = { 0, 0, 0 };
	struct fv_agg_config c;
	struct fv_agg_result res;
	struct fv_agg *a;
	float p[3];
	bool used[5];

	(void)state;
	c = cfg_of(FV_AGG_MEDIAN, 0, 0);
	a = fv_agg_new(&c, 3, 8);
	assert_int_equal(fv_agg_round(a, zero, up, 5, 1.0, 1, p, NULL, &res), 0);
	assert_true(p[0] == 3 && p[1] == 10 && p[2] == 3);
	assert_true(res.robust_ok);
	/* Even k: mean of the two middle values. Without e: x 2,3 -> 2.5. */
	assert_int_equal(fv_agg_round(a, zero, up + 1, 4, 1.0, 2, p, NULL, &res), 0);
	assert_true(p[0] == 2.5f && p[1] == -5.0f && p[2] == 1.5f);
	fv_agg_free(a);

	c = cfg_of(FV_AGG_TRIMMED_MEAN, 0, 0);
	c.trim_beta = 0.2;
	a = fv_agg_new(&c, 3, 8);
	assert_int_equal(fv_agg_round(a, zero, up, 5, 1.0, 1, p, NULL, &res), 0);
	assert_near(p[0], 3.0, 1e-6);
	assert_near(p[1], 20.0 / 3.0, 1e-6);
	assert_near(p[2], 3.0, 1e-6);
	assert_int_equal(res.n_trimmed, 1);
	assert_int_equal(res.n_used, 3);
	assert_true(res.robust_ok);
	/* 4 updates: floor(0.8) = 0 trimmed -> plain mean, flagged. */
	assert_int_equal(fv_agg_round(a, zero, up + 1, 4, 1.0, 2, p, NULL, &res), 0);
	assert_int_equal(res.n_trimmed, 0);
	assert_false(res.robust_ok);
	fv_agg_free(a);

	c = cfg_of(FV_AGG_KRUM, 0, 0);
	c.krum_f = 1;
	a = fv_agg_new(&c, 3, 8);
	assert_int_equal(fv_agg_round(a, zero, up, 5, 1.0, 1, p, used, &res), 0);
	assert_memory_equal(p, da, sizeof(da));
	assert_true(used[2] && !used[0] && !used[1] && !used[3] && !used[4]);
	assert_true(res.robust_ok); /* 5 >= 2*1 + 3 */
	assert_int_equal(res.n_used, 1);
	/* 4 updates < 2f + 3: still answers, flagged. */
	assert_int_equal(fv_agg_round(a, zero, up + 1, 4, 1.0, 2, p, used, &res), 0);
	assert_false(res.robust_ok);
	fv_agg_free(a);

	/* Multi-Krum m = 2: the two best scores (a, b) averaged. */
	c = cfg_of(FV_AGG_MULTI_KRUM, 0, 0);
	c.krum_f = 1;
	c.krum_m = 2;
	a = fv_agg_new(&c, 3, 8);
	assert_int_equal(fv_agg_round(a, zero, up, 5, 1.0, 1, p, used, &res), 0);
	assert_true(p[0] == 1.5f && p[1] == -5.0f && p[2] == -1.5f);
	fv_agg_free(a);
}

/* Clipping by hand: (3, 4) has norm 5; clip 1 -> (0.6, 0.8); (0.3, 0.4)
 * is under the bound and stays. FedAvg with weights 1 and 3:
 * (0.6 + 3 * 0.3) / 4 = 0.375, (0.8 + 3 * 0.4) / 4 = 0.5. */
static void test_hand_clip(void **state)
{
	static const float big[] = { 3, 4 }, small[] = { 0.3f, 0.4f };
	struct fv_agg_update up[] = { { "x", big, 1 }, { "y", small, 3 } };
	struct fv_agg_config c = cfg_of(FV_AGG_FEDAVG, 0, 1.0);
	struct fv_agg_result res;
	const float zero[2] = { 0, 0 };
	struct fv_agg *a = fv_agg_new(&c, 2, 2);
	float p[2];

	(void)state;
	assert_int_equal(fv_agg_round(a, zero, up, 2, 1.0, 1, p, NULL, &res), 0);
	assert_near(p[0], 0.375, 1e-7);
	assert_near(p[1], 0.5, 1e-7);
	assert_int_equal(res.n_clipped, 1);
	assert_near(res.step_norm, 0.625, 1e-7);
	fv_agg_free(a);
}

/* Norms noted by the caller as updates arrive (the coordinator does) give
 * bit for bit the round of norms computed at the close, for every rule,
 * with absolute and relative clipping on; a norm fv_agg_norm() marked as
 * non-finite fails the round as a NaN delta does. */
static void test_precomputed_norms(void **state)
{
	enum { K = 7, N = 37 };
	static const enum fv_agg_algo algos[] = { FV_AGG_FEDAVG, FV_AGG_FEDAVGM, FV_AGG_FEDADAM,
						  FV_AGG_MEDIAN, FV_AGG_TRIMMED_MEAN,
						  FV_AGG_MULTI_KRUM };
	static const char *const names[K] = { "g", "b", "e", "a", "f", "c", "d" };
	float delta[K][N], base[N], p1[N], p2[N];
	struct fv_agg_update up[K];
	struct fv_rng rng;

	(void)state;
	fv_rng_seed(&rng, 11);
	for (int j = 0; j < N; j++)
		base[j] = (float)fv_rng_normal(&rng);
	for (int i = 0; i < K; i++)
		for (int j = 0; j < N; j++)
			delta[i][j] = (float)(fv_rng_normal(&rng) * (i == 3 ? 40.0 : 1.0));
	for (size_t t = 0; t < FV_ARRAY_SIZE(algos); t++) {
		struct fv_agg_config c = cfg_of(algos[t], 0, 4.0);
		struct fv_agg_result r1, r2;
		struct fv_agg *a1, *a2;

		c.clip_ratio = 2.0; /* the median norm's 2x: clips update "a" */
		a1 = fv_agg_new(&c, N, K);
		a2 = fv_agg_new(&c, N, K);
		assert_non_null(a1);
		assert_non_null(a2);
		for (uint64_t round = 1; round <= 2; round++) {
			for (int i = 0; i < K; i++)
				up[i] = (struct fv_agg_update){ names[i], delta[i], 10 + i };
			assert_int_equal(fv_agg_round(a1, base, up, K, 1.0, round, p1, NULL, &r1), 0);
			for (int i = 0; i < K; i++) {
				up[i].norm = fv_agg_norm(delta[i], N);
				up[i].have_norm = true;
				assert_true(up[i].norm > 0.0);
			}
			assert_int_equal(fv_agg_round(a2, base, up, K, 1.0, round, p2, NULL, &r2), 0);
			assert_memory_equal(p1, p2, sizeof(p1));
			assert_int_equal(r1.n_clipped, r2.n_clipped);
			assert_true(r1.n_clipped >= 1);
		}
		/* The noted norm is what the round uses (it does not read the
		 * delta again): one claimed far too large is clipped harder. */
		up[0].norm = 1e6;
		assert_int_equal(fv_agg_round(a2, base, up, K, 1.0, 3, p2, NULL, &r2), 0);
		assert_true(memcmp(p1, p2, sizeof(p1)) != 0);
		up[0].norm = fv_agg_norm(delta[0], N);
		assert_int_equal(fv_agg_round(a1, base, up, K, 1.0, 3, p1, NULL, &r1), 0);
		/* A delta with a NaN: its noted norm is -1, and the round fails
		 * before touching anything. */
		delta[5][N - 1] = NAN;
		up[5].norm = fv_agg_norm(delta[5], N);
		assert_true(up[5].norm == -1.0);
		memcpy(p2, p1, sizeof(p1));
		assert_int_equal(fv_agg_round(a2, base, up, K, 1.0, 3, p2, NULL, &r2), -ERANGE);
		assert_memory_equal(p1, p2, sizeof(p1));
		delta[5][N - 1] = 0.5f;
		fv_agg_free(a1);
		fv_agg_free(a2);
	}
}

/* FedAvgM and FedAdam by hand, one coordinate, two rounds with D = 0.1 then
 * D = -0.2 (a single update each, so D is the update):
 *   FedAvgM eta 1, beta 0.9: m1 = 0.1, x1 = 0.1; m2 = 0.09 - 0.2 = -0.11,
 *     x2 = -0.01.
 *   FedAdam eta 0.01, b1 0.9, b2 0.99, tau 1e-3, v0 = 1e-6:
 *     m1 = 0.01, v1 = 0.99e-6 + 0.01 * 0.01 = 1.0099e-4,
 *     x1 = 0.01 * 0.01 / (sqrt(1.0099e-4) + 1e-3) = 1e-4 / 0.0110494
 *        = 9.0503e-3 (to 5 digits). */
static void test_hand_optimizers(void **state)
{
	static const float d1[] = { 0.1f }, d2[] = { -0.2f };
	struct fv_agg_update u1 = { "a", d1, 5 }, u2 = { "a", d2, 5 };
	struct fv_agg_config c;
	struct fv_agg *a;
	float x[1] = { 0 };

	(void)state;
	c = cfg_of(FV_AGG_FEDAVGM, 0, 0);
	a = fv_agg_new(&c, 1, 1);
	assert_int_equal(fv_agg_round(a, x, &u1, 1, 1.0, 1, x, NULL, NULL), 0);
	assert_near(x[0], 0.1, 1e-7);
	assert_int_equal(fv_agg_round(a, x, &u2, 1, 1.0, 2, x, NULL, NULL), 0);
	assert_near(x[0], -0.01, 1e-7);
	fv_agg_free(a);

	x[0] = 0;
	c = cfg_of(FV_AGG_FEDADAM, 0, 0);
	a = fv_agg_new(&c, 1, 1);
	assert_int_equal(fv_agg_round(a, x, &u1, 1, 1.0, 1, x, NULL, NULL), 0);
	assert_near(x[0], 0.01 * 0.01 / (sqrt(1.0099e-4) + 1e-3), 1e-8);
	assert_near(x[0], 9.0503e-3, 1e-7);
	fv_agg_free(a);
}

/* A NaN or Inf anywhere in any update is refused, with and without
 * clipping (the two paths check finiteness differently), for every rule,
 * and leaves the parameters alone. */
static void test_nonfinite_anywhere(void **state)
{
	static const uint32_t bad_bits[] = { 0x7f800000, 0xff800000, 0x7fc00000 };
	enum { N = 1031, K = 3 };
	static const enum fv_agg_algo algos[] = { FV_AGG_FEDAVG, FV_AGG_MEDIAN, FV_AGG_KRUM };
	float *d = malloc(sizeof(float) * N * K), x[N], out[N];

	(void)state;
	assert_non_null(d);
	for (size_t i = 0; i < (size_t)N * K; i++)
		d[i] = (float)((i % 13) - 6) * 1e-3f;
	for (size_t j = 0; j < N; j++)
		x[j] = 1.0f;
	for (size_t al = 0; al < FV_ARRAY_SIZE(algos); al++)
		for (int clip = 0; clip < 2; clip++)
			for (size_t b = 0; b < FV_ARRAY_SIZE(bad_bits); b++)
				for (size_t at = 0; at < 3; at++) {
					size_t pos = (at == 0 ? 0 : at == 1 ? N / 2 : N - 1) + N * (at % K);
					struct fv_agg_config c = cfg_of(algos[al], 0, clip ? 0.5 : 0);
					struct fv_agg_update up[K] = { { "a", d, 1 }, { "b", d + N, 1 },
								       { "c", d + 2 * N, 1 } };
					struct fv_agg *a = fv_agg_new(&c, N, K);
					float keep = d[pos];

					assert_non_null(a);
					memcpy(&d[pos], &bad_bits[b], 4);
					memcpy(out, x, sizeof(out));
					assert_int_equal(fv_agg_round(a, x, up, K, 1.0, 1, out, NULL, NULL),
							 -ERANGE);
					assert_memory_equal(out, x, sizeof(out));
					d[pos] = keep;
					assert_int_equal(fv_agg_round(a, x, up, K, 1.0, 1, out, NULL, NULL), 0);
					fv_agg_free(a);
				}
	free(d);
}

static void test_errors_atomic(void **state)
{
	static const float ok[] = { 1, 2 }, bad[] = { 1, NAN }, huge[] = { 3e38f, 3e38f };
	struct fv_agg_config c = cfg_of(FV_AGG_FEDAVGM, 0, 0);
	struct fv_agg_update up[3] = { { "a", ok, 1 }, { "b", ok, 1 }, { "a", ok, 1 } };
	struct fv_agg_state st;
	float x[2] = { 7, 7 }, m_before[2];
	struct fv_agg *a = fv_agg_new(&c, 2, 2);

	(void)state;
	assert_int_equal(fv_agg_round(a, x, up, 2, 1.0, 1, x, NULL, NULL), 0);
	fv_agg_state_view(a, &st);
	memcpy(m_before, st.m, sizeof(m_before));
	x[0] = x[1] = 7;
	assert_int_equal(fv_agg_round(a, x, up, 3, 1.0, 2, x, NULL, NULL), -E2BIG);
	up[1].name = "a";
	assert_int_equal(fv_agg_round(a, x, up, 2, 1.0, 2, x, NULL, NULL), -EALREADY);
	up[1] = (struct fv_agg_update){ "b", bad, 1 };
	assert_int_equal(fv_agg_round(a, x, up, 2, 1.0, 2, x, NULL, NULL), -ERANGE);
	up[1] = (struct fv_agg_update){ "b", ok, 0 };
	up[0].n_samples = 0;
	assert_int_equal(fv_agg_round(a, x, up, 2, 1.0, 2, x, NULL, NULL), -EINVAL);
	assert_int_equal(fv_agg_round(a, x, up, 0, 1.0, 2, x, NULL, NULL), -EINVAL);
	/* Finite inputs whose result overflows: -ERANGE, nothing changed. */
	up[0] = (struct fv_agg_update){ "a", huge, 1 };
	up[1] = (struct fv_agg_update){ "b", huge, 1 };
	assert_int_equal(fv_agg_round(a, huge, up, 2, 1.0, 2, x, NULL, NULL), -ERANGE);
	assert_true(x[0] == 7 && x[1] == 7);
	fv_agg_state_view(a, &st);
	assert_memory_equal(st.m, m_before, sizeof(m_before));
	assert_int_equal(st.steps, 1);
	fv_agg_free(a);
}

static void test_config_check(void **state)
{
	struct fv_agg_config c;
	char err[256];
	enum fv_agg_algo algo;

	(void)state;
	for (int i = 0; i < FV_AGG__MAX; i++) {
		assert_int_equal(fv_agg_algo_parse(fv_agg_algo_names[i], &algo), 0);
		assert_int_equal(algo, i);
	}
	assert_int_equal(fv_agg_algo_parse("fedsgd", &algo), -EINVAL);

	c = cfg_of(FV_AGG_FEDPROX, 0, 0);
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "prox_mu"));
	c.prox_mu = 0.1;
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), 0);

	c = cfg_of(FV_AGG_MEDIAN, 0, 1.0);
	c.dp = true;
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "median"));
	c = cfg_of(FV_AGG_FEDAVG, 0, 0);
	c.dp = true;
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "clip_norm"));
	c.clip_norm = 1;
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), 0);
	c.dp_delta = 1;
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "dp_delta"));

	c = cfg_of(FV_AGG_TRIMMED_MEAN, 0, 0);
	c.trim_beta = 0.5;
	assert_int_equal(fv_agg_config_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "trim_beta"));
	assert_null(fv_agg_new(&c, 3, 3));
	assert_int_equal(errno, EINVAL);
}

/* Two rounds, save, a fresh aggregator restored from the copy, the third
 * round on both: identical bits (what a coordinator restart relies on). */
static void test_state_resume(void **state)
{
	(void)state;
	for (int algo = FV_AGG_FEDAVGM; algo <= FV_AGG_FEDADAGRAD; algo++) {
		struct fv_agg_config c = cfg_of((enum fv_agg_algo)algo, 0, 0);
		struct fv_agg *a = fv_agg_new(&c, REF_N, REF_K), *b;
		struct fv_agg_update up[REF_K];
		struct fv_agg_state st, copy;
		float pa[REF_N], pb[REF_N];

		memcpy(pa, ref_params0, sizeof(pa));
		for (int t = 0; t < REF_ROUNDS; t++) {
			for (uint32_t i = 0; i < REF_K; i++)
				up[i] = (struct fv_agg_update){ ref_names[i], ref_deltas[t][i],
								ref_samples[i] };
			if (t == REF_ROUNDS - 1) {
				/* "persist" a deep copy, "restart" */
				fv_agg_state_view(a, &st);
				copy = st;
				copy.m = malloc(REF_N * sizeof(float));
				copy.v = st.v ? malloc(REF_N * sizeof(float)) : NULL;
				memcpy(copy.m, st.m, REF_N * sizeof(float));
				if (st.v)
					memcpy(copy.v, st.v, REF_N * sizeof(float));
				copy.orders = copy.rdp = NULL;
				b = fv_agg_new(&c, REF_N, REF_K);
				assert_int_equal(fv_agg_set_state(b, &copy), 0);
				fv_agg_state_clear(&copy);
				memcpy(pb, pa, sizeof(pb));
				assert_int_equal(fv_agg_round(b, pb, up, REF_K, 1, t, pb, NULL, NULL),
						 0);
			}
			assert_int_equal(fv_agg_round(a, pa, up, REF_K, 1, t, pa, NULL, NULL), 0);
		}
		assert_memory_equal(pa, pb, sizeof(pa));
		fv_agg_state_view(b, &st);
		assert_int_equal(st.steps, REF_ROUNDS);

		/* Moments of another algorithm are dropped (1), not applied. */
		struct fv_agg_config other = cfg_of(algo == FV_AGG_FEDADAM ? FV_AGG_FEDYOGI
									  : FV_AGG_FEDADAM, 0, 0);
		struct fv_agg *o = fv_agg_new(&other, REF_N, REF_K);

		fv_agg_state_view(a, &st);
		assert_int_equal(fv_agg_set_state(o, &st), 1);
		fv_agg_free(o);
		fv_agg_free(a);
		fv_agg_free(b);
	}
}

/* DP: with zero updates the result is pure noise, std sigma*C/k per
 * coordinate; seeded by (dp_seed, round); epsilon grows every round and
 * equals the accountant's value for the summed RDP. */
static void test_dp_noise(void **state)
{
	enum { N = 40000, K = 4 };
	struct fv_agg_config c = cfg_of(FV_AGG_FEDAVG, 0, 0.5);
	struct fv_agg_update up[K];
	struct fv_agg_result res;
	struct fv_agg_state st;
	const char *names[K] = { "d", "c", "b", "a" };
	float *zero = calloc(N, sizeof(float)), *p1 = malloc(N * sizeof(float)),
	      *p2 = malloc(N * sizeof(float));
	double s = 0, ss = 0, eps_prev = 0;
	struct fv_agg *a, *b;

	(void)state;
	c.dp = true;
	c.dp_noise = 1.5;
	c.dp_seed = 1234;
	for (int i = 0; i < K; i++)
		up[i] = (struct fv_agg_update){ names[i], zero, 1000u * (i + 1) };
	a = fv_agg_new(&c, N, K);
	b = fv_agg_new(&c, N, K);
	assert_int_equal(fv_agg_round(a, zero, up, K, 0.2, 7, p1, NULL, &res), 0);
	for (int j = 0; j < N; j++) {
		s += p1[j];
		ss += (double)p1[j] * p1[j];
	}
	double mean = s / N, sd = sqrt(ss / N - mean * mean);

	/* sigma * C / k = 1.5 * 0.5 / 4 = 0.1875; the sample sd of 40000
	 * normals is within 2% of it with probability > 0.9999. */
	assert_near(sd, 0.1875, 0.1875 * 0.02);
	assert_near(mean, 0.0, 5 * 0.1875 / sqrt(N));
	/* Same seed and round: same noise; another round: other noise. */
	assert_int_equal(fv_agg_round(b, zero, up, K, 0.2, 7, p2, NULL, NULL), 0);
	assert_memory_equal(p1, p2, N * sizeof(float));
	assert_int_equal(fv_agg_round(b, zero, up, K, 0.2, 8, p2, NULL, NULL), 0);
	assert_memory_not_equal(p1, p2, N * sizeof(float));

	/* Accounting: 5 rounds at q = 0.2. */
	fv_agg_free(a);
	a = fv_agg_new(&c, N, K);
	for (int t = 1; t <= 5; t++) {
		double rdp[FV_DP_N_ORDERS], want;

		assert_int_equal(fv_agg_round(a, zero, up, K, 0.2, t, p1, NULL, &res), 0);
		assert_true(res.dp_epsilon > eps_prev);
		eps_prev = res.dp_epsilon;
		for (int o = 0; o < FV_DP_N_ORDERS; o++) {
			assert_int_equal(fv_dp_rdp(0.2, 1.5, fv_dp_orders[o], &rdp[o]), 0);
			rdp[o] *= t;
		}
		assert_int_equal(fv_dp_epsilon(fv_dp_orders, rdp, FV_DP_N_ORDERS, 1e-5, false,
					       &want, NULL),
				 0);
		assert_near(res.dp_epsilon, want, 1e-9 * want);
	}
	fv_agg_state_view(a, &st);
	assert_int_equal(st.dp_rounds, 5);
	assert_int_equal(st.n_orders, FV_DP_N_ORDERS);
	/* Restored into a fresh aggregator, the spent budget carries on. */
	assert_int_equal(fv_agg_set_state(b, &st), 0);
	assert_int_equal(fv_agg_round(b, zero, up, K, 0.2, 6, p2, NULL, &res), 0);
	assert_int_equal(fv_agg_round(a, zero, up, K, 0.2, 6, p1, NULL, NULL), 0);
	assert_true(res.dp_epsilon > eps_prev);
	/* Weights are ignored under DP: the mean is unweighted. */
	static const float one[] = { 1.0f }, three[] = { 3.0f };
	struct fv_agg_update w2[] = { { "a", one, 1 }, { "b", three, 1000 } };
	struct fv_agg_config c1 = c;

	c1.dp_noise = 1e-9; /* negligible noise */
	c1.clip_norm = 10;
	struct fv_agg *u = fv_agg_new(&c1, 1, 2);
	float x[1] = { 0 };

	assert_int_equal(fv_agg_round(u, x, w2, 2, 1.0, 1, x, NULL, NULL), 0);
	assert_near(x[0], 2.0, 1e-6);
	fv_agg_free(u);
	fv_agg_free(a);
	fv_agg_free(b);
	free(zero);
	free(p1);
	free(p2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_fedavg_family),
		cmocka_unit_test(test_golden_adaptive),
		cmocka_unit_test(test_golden_robust),
		cmocka_unit_test(test_permutation_invariance),
		cmocka_unit_test(test_hand_robust),
		cmocka_unit_test(test_hand_clip),
		cmocka_unit_test(test_precomputed_norms),
		cmocka_unit_test(test_hand_optimizers),
		cmocka_unit_test(test_errors_atomic),
		cmocka_unit_test(test_nonfinite_anywhere),
		cmocka_unit_test(test_config_check),
		cmocka_unit_test(test_state_resume),
		cmocka_unit_test(test_dp_noise),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
