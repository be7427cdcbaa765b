/* Unit tests for lib/fl/fleet.c and lib/fl/local.c: closing a statistics
 * round (the code the coordinator and fedvigil-eval share) and one agent's
 * local training. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/fleet.h"
#include "fedvigil/nn.h"
#include "fedvigil/util.h"

#define assert_near(a, b, tol) near_impl((a), (b), (tol), __FILE__, __LINE__)

static void near_impl(double a, double b, double tol, const char *file, int line)
{
	if (!(fabs(a - b) <= tol))
		fail_msg("%s:%d: %.17g != %.17g (tolerance %.3g)", file, line, a, b, tol);
}

/* Channel 0: readings 1, 3 -> mean 2, std 1. Channel 1: constant 1000 ->
 * std floored at 1e-3 * 1000 = 1. Channel 2: constant 0.5 -> floor 1e-3. */
static void test_norm(void **state)
{
	struct fv_chstats s[3];
	float mean[3], std[3];
	uint32_t bad = 99;

	(void)state;
	for (int c = 0; c < 3; c++)
		fv_chstats_init(&s[c]);
	fv_chstats_add(&s[0], 1.0);
	fv_chstats_add(&s[0], 3.0);
	fv_chstats_add(&s[1], 1000.0);
	fv_chstats_add(&s[1], 1000.0);
	fv_chstats_add(&s[2], 0.5);
	assert_int_equal(fv_fleet_norm(s, 3, mean, std, &bad), 0);
	assert_near(mean[0], 2.0, 1e-6);
	assert_near(std[0], 1.0, 1e-6);
	assert_near(mean[1], 1000.0, 1e-3);
	assert_near(std[1], 1.0, 1e-6);
	assert_near(std[2], 1e-3, 1e-9);

	fv_chstats_init(&s[1]);
	mean[0] = -7.0f;
	assert_int_equal(fv_fleet_norm(s, 3, mean, std, &bad), -ENODATA);
	assert_int_equal(bad, 1);
	assert_near(mean[0], -7.0, 0); /* nothing written */
}

/* Local training: deterministic, a delta that lowers the reconstruction
 * error of the windows it saw, FedProx pulling towards the base. */

/* Rows of an (N, n) array on demand, counting the calls. */
struct rows {
	const float *x;
	size_t n, calls;
};

static void rows_row(void *ctx, size_t i, float *dst)
{
	struct rows *r = ctx;

	memcpy(dst, r->x + i * r->n, r->n * sizeof(float));
	r->calls++;
}
static void test_local_train(void **state)
{
	const uint32_t hidden[] = { 4 };
	struct fv_model_spec spec;
	struct fv_local_opts o = { .epochs = 20, .batch = 16, .train = FV_TRAIN_DEFAULTS, .seed = 5 };
	struct fv_rng rng;
	struct fv_model *m;
	float *x, *base, *d1, *d2, loss = 0, loss2 = 0, before, after;
	size_t N = 200, P;

	(void)state;
	o.train.lr = 0.01f;
	assert_int_equal(fv_model_spec_autoencoder(8, hidden, 1, FV_ACT_TANH, FV_ACT_LINEAR, &spec), 0);
	m = fv_model_new(&spec, 1);
	assert_non_null(m);
	fv_model_init(m, 3);
	P = fv_model_nparams(m);
	base = malloc(P * sizeof(float));
	d1 = malloc(P * sizeof(float));
	d2 = malloc(P * sizeof(float));
	x = malloc(N * 8 * sizeof(float));
	memcpy(base, fv_model_params(m), P * sizeof(float));
	fv_rng_seed(&rng, 11);
	for (size_t i = 0; i < N; i++) {
		double t = fv_rng_normal(&rng);

		for (int j = 0; j < 8; j++) /* rank-1 data plus a little noise */
			x[i * 8 + j] = (float)(t * (j % 2 ? 1.0 : -0.5) + 0.05 * fv_rng_normal(&rng));
	}
	before = 0;
	for (size_t i = 0; i < N; i++)
		before += fv_model_score(m, x + i * 8, NULL);
	assert_int_equal(fv_local_train(&spec, base, P, x, N, &o, d1, &loss), 0);
	assert_int_equal(fv_local_train(&spec, base, P, x, N, &o, d2, &loss2), 0);
	assert_memory_equal(d1, d2, P * sizeof(float));
	assert_near(loss, loss2, 0);
	/* The agent's path, rows built on demand: the same delta, bit for bit. */
	{
		struct rows r = { x, 8, 0 };

		memset(d2, 0, P * sizeof(float));
		assert_int_equal(fv_local_train_rows(&spec, base, P, rows_row, &r, N, &o, d2, &loss2),
				 0);
		assert_memory_equal(d1, d2, P * sizeof(float));
		assert_true(loss == loss2);
		assert_true(r.calls >= N * (o.epochs + 1)); /* the NaN check, then every epoch */
		assert_int_equal(fv_local_train_rows(&spec, base, P, NULL, &r, N, &o, d2, &loss2),
				 -EINVAL);
	}
	for (size_t i = 0; i < P; i++)
		base[i] += d1[i];
	assert_int_equal(fv_model_set_params(m, base, P), 0);
	after = 0;
	for (size_t i = 0; i < N; i++)
		after += fv_model_score(m, x + i * 8, NULL);
	assert_true(after < 0.5f * before);

	/* FedProx: a strong pull towards the base gives a smaller step. */
	{
		double n_free = 0, n_prox = 0;

		for (size_t i = 0; i < P; i++)
			base[i] -= d1[i];
		o.train.prox_mu = 10.0f;
		assert_int_equal(fv_local_train(&spec, base, P, x, N, &o, d2, &loss2), 0);
		for (size_t i = 0; i < P; i++) {
			n_free += (double)d1[i] * d1[i];
			n_prox += (double)d2[i] * d2[i];
		}
		assert_true(n_prox < 0.5 * n_free);
		o.train.prox_mu = 0.0f;
	}

	assert_int_equal(fv_local_train(&spec, base, P - 1, x, N, &o, d1, &loss), -EDOM);
	assert_int_equal(fv_local_train(&spec, base, P, x, 0, &o, d1, &loss), -EINVAL);
	x[3] = NAN;
	assert_int_equal(fv_local_train(&spec, base, P, x, N, &o, d1, &loss), -ERANGE);
	fv_model_free(m);
	free(base);
	free(d1);
	free(d2);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_norm),
		cmocka_unit_test(test_local_train),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
