/* Unit tests for lib/nn: specs, hand-computed forward pass, finite-difference
 * gradient checks for every activation, Adam, determinism, training, and the
 * fast matmul kernels against the plain reference loops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/nn.h"
#include "fedvigil/util.h"
#include "nn/kernels.h"

static struct fv_model_spec make_spec(uint32_t n_layers, const uint32_t *sizes,
				      const enum fv_act *acts)
{
	struct fv_model_spec s;

	memset(&s, 0, sizeof(s));
	s.n_layers = n_layers;
	for (uint32_t i = 0; i <= n_layers; i++)
		s.sizes[i] = sizes[i];
	for (uint32_t i = 0; i < n_layers; i++)
		s.acts[i] = (uint8_t)acts[i];
	return s;
}

static void fill_uniform(float *x, size_t n, struct fv_rng *r, double lo, double hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(lo + (hi - lo) * fv_rng_uniform(r));
}

/* ---- names, parsing, specs ---- */

static void test_act_names(void **state)
{
	enum fv_act a;

	(void)state;
	for (int i = FV_ACT_LINEAR; i <= FV_ACT_SIGMOID; i++) {
		assert_int_equal(fv_act_parse(fv_act_name((enum fv_act)i), &a), 0);
		assert_int_equal(a, i);
	}
	assert_string_equal(fv_act_name(FV_ACT_TANH), "tanh");
	assert_int_equal(fv_act_parse("ReLU", &a), -EINVAL);
	assert_int_equal(fv_act_parse("", &a), -EINVAL);
	assert_int_equal(fv_act_parse("softmax", &a), -EINVAL);
}

static void test_hidden_parse(void **state)
{
	uint32_t h[FV_NN_MAX_LAYERS];

	(void)state;
	assert_int_equal(fv_model_hidden_parse("32,8,32", h, FV_NN_MAX_LAYERS), 3);
	assert_int_equal(h[0], 32);
	assert_int_equal(h[1], 8);
	assert_int_equal(h[2], 32);
	assert_int_equal(fv_model_hidden_parse(" 16 , 4 ", h, FV_NN_MAX_LAYERS), 2);
	assert_int_equal(h[0], 16);
	assert_int_equal(h[1], 4);
	assert_int_equal(fv_model_hidden_parse("8192", h, 1), 1);
	assert_int_equal(h[0], 8192);

	h[0] = 77;
	assert_int_equal(fv_model_hidden_parse("", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("32,,8", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("32,", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse(",32", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("0", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("-3", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("8x", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("8 4", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("8193", h, FV_NN_MAX_LAYERS), -EINVAL);
	assert_int_equal(fv_model_hidden_parse("99999999999999999999", h, FV_NN_MAX_LAYERS),
			 -EINVAL);
	assert_int_equal(fv_model_hidden_parse("4,4,4", h, 2), -EINVAL);
	assert_int_equal(h[0], 77); /* untouched on failure */
}

static void test_spec_validate(void **state)
{
	const uint32_t ok_sizes[] = { 8, 4, 2, 4, 8 };
	const enum fv_act ok_acts[] = { FV_ACT_RELU, FV_ACT_RELU, FV_ACT_RELU, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(4, ok_sizes, ok_acts), bad;
	const uint32_t hidden[] = { 4, 2, 4 };
	const uint32_t huge[] = { 4096, 4096 };

	(void)state;
	assert_int_equal(fv_model_spec_validate(&s), 0);
	/* 8*4+4 + 4*2+2 + 2*4+4 + 4*8+8 */
	assert_int_equal(fv_model_spec_nparams(&s), 36 + 10 + 12 + 40);

	bad = s;
	bad.n_layers = 0;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.n_layers = FV_NN_MAX_LAYERS + 1;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	assert_int_equal(fv_model_spec_nparams(&bad), 0);
	bad = s;
	bad.sizes[2] = 0;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.sizes[2] = FV_NN_MAX_WIDTH + 1;
	assert_int_equal(fv_model_spec_validate(&bad), -E2BIG);
	bad = s;
	bad.acts[1] = 4;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.sizes[4] = 7; /* not an autoencoder */
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.n_layers = 2; /* 8-4-2 */
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	assert_int_equal(fv_model_spec_validate(NULL), -EDOM);

	/* 4096-4096-4096-4096: 2 * 4096^2 + 8192 params > 4 Mi */
	assert_int_equal(fv_model_spec_autoencoder(4096, huge, 1, FV_ACT_RELU, FV_ACT_LINEAR,
						   &bad),
			 -E2BIG);
	assert_int_equal(fv_model_spec_autoencoder(0, hidden, 3, FV_ACT_RELU, FV_ACT_LINEAR, &bad),
			 -EINVAL);
	assert_int_equal(fv_model_spec_autoencoder(8, hidden, 3, (enum fv_act)9, FV_ACT_LINEAR,
						   &bad),
			 -EINVAL);
	assert_int_equal(fv_model_spec_autoencoder(8, hidden, FV_NN_MAX_LAYERS, FV_ACT_RELU,
						   FV_ACT_LINEAR, &bad),
			 -E2BIG);
	memset(&bad, 0xab, sizeof(bad));
	assert_int_equal(fv_model_spec_autoencoder(8, hidden, 3, FV_ACT_RELU, FV_ACT_LINEAR, &bad),
			 0);
	assert_memory_equal(&bad, &s, sizeof(s)); /* unused entries are zeroed */

	/* Bytes: at least params, grads and both Adam moments, and it grows with
	 * the batch; 0 for bad specs; fv_model_new refuses what validate refuses. */
	size_t b1 = fv_model_spec_bytes(&s, 1), b64 = fv_model_spec_bytes(&s, 64);

	assert_true(b1 >= 4 * sizeof(float) * 98);
	assert_true(b64 > b1 + sizeof(float) * 63 * (4 + 2 + 4 + 8));
	assert_int_equal(fv_model_spec_bytes(&s, 0), 0);
	bad = s;
	bad.sizes[4] = 7;
	assert_int_equal(fv_model_spec_bytes(&bad, 1), 0);
	assert_null(fv_model_new(&bad, 1));
	assert_null(fv_model_new(&s, 0));
}

/* ---- hand-computed forward ---- */

/* 2-1-2 net, params {W1 = [0.5, -1], b1 = 0.25, W2 = [2, -1]^T, b2 = [0.1, 0.2]}.
 * ReLU hidden, linear output:
 *   x = (1, 0.25):  z1 = 0.5*1 - 1*0.25 + 0.25 = 0.5, h = 0.5,
 *                   y = (2*0.5 + 0.1, -1*0.5 + 0.2) = (1.1, -0.3);
 *                   squared errors (0.1^2, 0.55^2) = (0.01, 0.3025), score 0.15625.
 *   x = (-1, 1):    z1 = -0.5 - 1 + 0.25 = -1.25, h = 0, y = b2 = (0.1, 0.2);
 *                   squared errors (1.1^2, 0.8^2) = (1.21, 0.64).
 *   batch loss = (0.01 + 0.3025 + 1.21 + 0.64) / 4 = 0.540625.
 * Sigmoid hidden, x = (0.5, 0.5): z1 = 0.25 - 0.5 + 0.25 = 0, h = 0.5,
 *   y = (1.1, -0.3). Tanh hidden, same x: h = 0, y = (0.1, 0.2). */
static void test_forward_hand(void **state)
{
	const uint32_t sizes[] = { 2, 1, 2 };
	const float params[] = { 0.5f, -1.0f, 0.25f, 2.0f, -1.0f, 0.1f, 0.2f };
	const float x[] = { 1.0f, 0.25f, -1.0f, 1.0f };
	const float xh[] = { 0.5f, 0.5f };
	float y[4], sq[2], loss;
	enum fv_act acts[] = { FV_ACT_RELU, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model *m = fv_model_new(&s, 2);

	(void)state;
	assert_non_null(m);
	assert_int_equal(fv_model_nparams(m), 7);
	assert_int_equal(fv_model_set_params(m, params, 7), 0);
	assert_int_equal(fv_model_forward(m, x, 2, y), 0);
	assert_float_equal(y[0], 1.1f, 1e-6);
	assert_float_equal(y[1], -0.3f, 1e-6);
	assert_float_equal(y[2], 0.1f, 1e-6);
	assert_float_equal(y[3], 0.2f, 1e-6);
	assert_float_equal(fv_model_score(m, x, sq), 0.15625f, 1e-6);
	assert_float_equal(sq[0], 0.01f, 1e-6);
	assert_float_equal(sq[1], 0.3025f, 1e-6);
	assert_float_equal(fv_model_score(m, x + 2, NULL), (1.21f + 0.64f) / 2, 1e-6);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	assert_float_equal(loss, 0.540625f, 1e-6);
	/* Output bias gradient = 2/4 * sum over samples of (y - x)
	 * = 0.5 * ((0.1 + 1.1), (-0.55 + (-0.8))) = (0.6, -0.675). Sample 2 has
	 * h = 0 on the flat side of the ReLU, so only sample 1 reaches W1:
	 * dL/dh = 0.5 * (2*0.1 + (-1)*(-0.55)) = 0.375, dW1 = 0.375 * x1
	 * = (0.375, 0.09375), db1 = 0.375; dW2 = 0.5 * (0.1, -0.55) * h
	 * = (0.025, -0.1375). */
	assert_float_equal(fv_model_grads(m)[0], 0.375f, 1e-6);
	assert_float_equal(fv_model_grads(m)[1], 0.09375f, 1e-6);
	assert_float_equal(fv_model_grads(m)[2], 0.375f, 1e-6);
	assert_float_equal(fv_model_grads(m)[3], 0.025f, 1e-6);
	assert_float_equal(fv_model_grads(m)[4], -0.1375f, 1e-6);
	assert_float_equal(fv_model_grads(m)[5], 0.6f, 1e-6);
	assert_float_equal(fv_model_grads(m)[6], -0.675f, 1e-6);
	/* Shape errors. */
	assert_int_equal(fv_model_forward(m, x, 0, y), -EINVAL);
	assert_int_equal(fv_model_forward(m, x, 3, y), -EINVAL);
	assert_int_equal(fv_model_grad(m, x, 3, &loss), -EINVAL);
	assert_int_equal(fv_model_forward(m, x, 1, NULL), 0);
	fv_model_free(m);

	acts[0] = FV_ACT_SIGMOID;
	s = make_spec(2, sizes, acts);
	m = fv_model_new(&s, 1);
	assert_int_equal(fv_model_set_params(m, params, 7), 0);
	assert_int_equal(fv_model_forward(m, xh, 1, y), 0);
	assert_float_equal(y[0], 1.1f, 1e-6);
	assert_float_equal(y[1], -0.3f, 1e-6);
	fv_model_free(m);

	acts[0] = FV_ACT_TANH;
	s = make_spec(2, sizes, acts);
	m = fv_model_new(&s, 1);
	assert_int_equal(fv_model_set_params(m, params, 7), 0);
	assert_int_equal(fv_model_forward(m, xh, 1, y), 0);
	assert_float_equal(y[0], 0.1f, 1e-6);
	assert_float_equal(y[1], 0.2f, 1e-6);
	assert_memory_equal(fv_model_get_spec(m), &s, sizeof(s));
	fv_model_free(m);
}

static void test_set_params(void **state)
{
	const uint32_t sizes[] = { 2, 1, 2 };
	const enum fv_act acts[] = { FV_ACT_RELU, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model *m = fv_model_new(&s, 1);
	float p[7] = { 1, 2, 3, 4, 5, 6, 7 }, q[7];

	(void)state;
	assert_int_equal(fv_model_set_params(m, p, 7), 0);
	memcpy(q, p, sizeof(p));
	q[3] = NAN;
	assert_int_equal(fv_model_set_params(m, q, 7), -ERANGE);
	q[3] = INFINITY;
	assert_int_equal(fv_model_set_params(m, q, 7), -ERANGE);
	q[3] = -INFINITY;
	assert_int_equal(fv_model_set_params(m, q, 7), -ERANGE);
	assert_int_equal(fv_model_set_params(m, p, 6), -EDOM);
	assert_int_equal(fv_model_set_params(m, p, 8), -EDOM);
	assert_memory_equal(fv_model_params(m), p, sizeof(p)); /* untouched */
	fv_model_free(m);
}

/* ---- gradient checks ---- */

/* Central differences of the batch loss, in double, against the analytic
 * gradient of every parameter. Float forward passes make the difference
 * noisy (~1e-7 / eps), hence eps = 1e-3 and a 1e-2 relative tolerance with a
 * small absolute floor for near-zero gradients. */
static void grad_check(const struct fv_model_spec *s, uint64_t seed)
{
	const uint32_t B = 4;
	const double eps = 1e-3, rtol = 1e-2, atol = 5e-4;
	struct fv_model *m = fv_model_new(s, B);
	size_t P, in = s->sizes[0];
	float *x, *p, *g, lp, lm, loss;
	struct fv_rng r;
	double worst = 0.0;

	assert_non_null(m);
	P = fv_model_nparams(m);
	x = malloc(sizeof(float) * B * in);
	p = malloc(sizeof(float) * P);
	g = malloc(sizeof(float) * P);
	fv_rng_seed(&r, seed);
	fill_uniform(x, B * in, &r, -1.0, 1.0);
	fv_model_init(m, seed);
	/* Non-zero biases too, so they are exercised. */
	memcpy(p, fv_model_params(m), sizeof(float) * P);
	for (size_t i = 0; i < P; i++)
		p[i] += (float)(0.2 * (fv_rng_uniform(&r) - 0.5));
	assert_int_equal(fv_model_set_params(m, p, P), 0);
	assert_int_equal(fv_model_grad(m, x, B, &loss), 0);
	memcpy(g, fv_model_grads(m), sizeof(float) * P);
	assert_true(loss > 0.0f);

	for (size_t i = 0; i < P; i++) {
		float *mp = fv_model_params(m);
		float orig = mp[i];
		double fd, err;

		mp[i] = (float)(orig + eps);
		fv_model_grad(m, x, B, &lp);
		mp[i] = (float)(orig - eps);
		fv_model_grad(m, x, B, &lm);
		mp[i] = orig;
		/* Use the perturbation actually applied after rounding to float. */
		fd = ((double)lp - lm) / ((double)(float)(orig + eps) - (float)(orig - eps));
		err = fabs(fd - g[i]);
		if (err > rtol * fmax(fabs(fd), fabs(g[i])) + atol)
			fail_msg("param %zu of %zu: analytic %.6g, numeric %.6g", i, P, g[i], fd);
		worst = fmax(worst, err);
	}
	/* The net must have gradients well above the noise floor, otherwise
	 * this check could not fail. */
	double gmax = 0.0;

	for (size_t i = 0; i < P; i++)
		gmax = fmax(gmax, fabs(g[i]));
	assert_true(gmax > 50 * atol);
	free(x);
	free(p);
	free(g);
	fv_model_free(m);
}

static void test_grad_each_act(void **state)
{
	const uint32_t sizes[] = { 5, 3, 5 };

	(void)state;
	for (int a = FV_ACT_LINEAR; a <= FV_ACT_SIGMOID; a++) {
		const enum fv_act acts[] = { (enum fv_act)a, (enum fv_act)a };
		struct fv_model_spec s = make_spec(2, sizes, acts);

		grad_check(&s, 100 + (uint64_t)a);
	}
}

static void test_grad_mixed(void **state)
{
	const uint32_t sizes3[] = { 6, 5, 3, 6 };
	const enum fv_act acts3[] = { FV_ACT_RELU, FV_ACT_TANH, FV_ACT_SIGMOID };
	const uint32_t sizes4[] = { 9, 7, 2, 7, 9 };
	const enum fv_act acts4[] = { FV_ACT_TANH, FV_ACT_RELU, FV_ACT_SIGMOID, FV_ACT_LINEAR };
	struct fv_model_spec s3 = make_spec(3, sizes3, acts3);
	struct fv_model_spec s4 = make_spec(4, sizes4, acts4);

	(void)state;
	grad_check(&s3, 7);
	grad_check(&s4, 8);
}

/* ---- Adam ---- */

/* With zero moments, the first bias-corrected step is
 * p -= lr * g / (|g| + eps), i.e. lr * sign(g) for |g| >> eps. */
static void test_adam_first_step(void **state)
{
	const uint32_t sizes[] = { 3, 2, 3 };
	const enum fv_act acts[] = { FV_ACT_TANH, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model *m = fv_model_new(&s, 2);
	struct fv_adam_opts o = FV_ADAM_DEFAULTS;
	const float x[] = { 0.3f, -0.2f, 0.9f, 0.1f, 0.5f, -0.7f };
	size_t P = fv_model_nparams(m);
	float before[32], g[32], loss;

	(void)state;
	assert_true(P <= 32);
	o.lr = 0.01f;
	fv_model_init(m, 3);
	memcpy(before, fv_model_params(m), sizeof(float) * P);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	memcpy(g, fv_model_grads(m), sizeof(float) * P);
	fv_model_adam_step(m, &o);
	for (size_t i = 0; i < P; i++) {
		double want = before[i] - o.lr * g[i] / (fabs(g[i]) + o.eps);

		assert_float_equal(fv_model_params(m)[i], want, 1e-6);
	}
	/* A reset makes the next step a first step again. */
	fv_model_adam_reset(m);
	memcpy(before, fv_model_params(m), sizeof(float) * P);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	memcpy(g, fv_model_grads(m), sizeof(float) * P);
	fv_model_adam_step(m, &o);
	for (size_t i = 0; i < P; i++)
		assert_float_equal(fv_model_params(m)[i],
				   before[i] - o.lr * g[i] / (fabs(g[i]) + o.eps), 1e-6);
	fv_model_free(m);
}

/* ---- training ---- */

/* N points on a 2-D manifold in 8-D: x = tanh(A z) with z ~ U[-1,1]^2. */
static float *manifold_data(size_t N, uint64_t seed)
{
	float *d = malloc(sizeof(float) * N * 8);
	double A[8][2];
	struct fv_rng r;

	fv_rng_seed(&r, seed);
	for (int j = 0; j < 8; j++)
		for (int k = 0; k < 2; k++)
			A[j][k] = 2.0 * fv_rng_uniform(&r) - 1.0;
	for (size_t i = 0; i < N; i++) {
		double z0 = 2.0 * fv_rng_uniform(&r) - 1.0, z1 = 2.0 * fv_rng_uniform(&r) - 1.0;

		for (int j = 0; j < 8; j++)
			d[i * 8 + j] = (float)tanh(A[j][0] * z0 + A[j][1] * z1);
	}
	return d;
}

static struct fv_model *ae_8_4_2_4_8(uint32_t max_batch)
{
	const uint32_t hidden[] = { 4, 2, 4 };
	struct fv_model_spec s;

	assert_int_equal(fv_model_spec_autoencoder(8, hidden, 3, FV_ACT_TANH, FV_ACT_LINEAR, &s),
			 0);
	return fv_model_new(&s, max_batch);
}

static void test_train_reduces_loss(void **state)
{
	const size_t N = 512;
	float *data = manifold_data(N, 42);
	struct fv_model *m = ae_8_4_2_4_8(32);
	struct fv_adam_opts o = FV_ADAM_DEFAULTS;
	float loss0, loss1, loss_check;
	double mean_score = 0.0;

	(void)state;
	assert_non_null(m);
	o.lr = 1e-2f;
	fv_model_init(m, 1);
	/* epochs = 0: reports the current loss without training. */
	assert_int_equal(fv_model_train(m, data, N, 0, 32, &o, 5, &loss0), 0);
	for (size_t i = 0; i < N; i++)
		mean_score += fv_model_score(m, data + i * 8, NULL);
	assert_float_equal(loss0, mean_score / N, 1e-5 * loss0);

	assert_int_equal(fv_model_train(m, data, N, 150, 32, &o, 5, &loss1), 0);
	assert_true(loss1 < 0.5f * loss0);
	/* The last epoch's running loss is close to a fresh evaluation. */
	assert_int_equal(fv_model_train(m, data, N, 0, 32, &o, 5, &loss_check), 0);
	assert_true(loss_check < 0.5f * loss0);
	assert_true(fabsf(loss_check - loss1) < 0.5f * loss1);
	print_message("8-4-2-4-8 AE: loss %.4f -> %.4f (eval %.4f)\n", loss0, loss1, loss_check);

	/* Bad arguments. */
	assert_int_equal(fv_model_train(m, data, N, 1, 33, &o, 5, &loss1), -EINVAL);
	assert_int_equal(fv_model_train(m, data, N, 1, 0, &o, 5, &loss1), -EINVAL);
	assert_int_equal(fv_model_train(m, data, 0, 1, 8, &o, 5, &loss1), -EINVAL);
	data[17] = NAN;
	float before = fv_model_params(m)[0];

	assert_int_equal(fv_model_train(m, data, N, 1, 8, &o, 5, &loss1), -ERANGE);
	assert_true(fv_model_params(m)[0] == before);
	free(data);
	fv_model_free(m);
}

static void test_determinism(void **state)
{
	const size_t N = 100; /* not a multiple of the batch: a partial batch */
	float *data = manifold_data(N, 9);
	struct fv_model *a = ae_8_4_2_4_8(16), *b = ae_8_4_2_4_8(16);
	struct fv_adam_opts o = FV_ADAM_DEFAULTS;
	size_t P = fv_model_nparams(a);
	float la, lb;

	(void)state;
	fv_model_init(a, 77);
	fv_model_init(b, 77);
	assert_memory_equal(fv_model_params(a), fv_model_params(b), sizeof(float) * P);
	assert_int_equal(fv_model_train(a, data, N, 5, 16, &o, 3, &la), 0);
	assert_int_equal(fv_model_train(b, data, N, 5, 16, &o, 3, &lb), 0);
	assert_memory_equal(fv_model_params(a), fv_model_params(b), sizeof(float) * P);
	assert_memory_equal(&la, &lb, sizeof(la));

	/* A different shuffle seed gives a different trajectory. */
	fv_model_init(b, 77);
	assert_int_equal(fv_model_train(b, data, N, 5, 16, &o, 4, &lb), 0);
	assert_memory_not_equal(fv_model_params(a), fv_model_params(b), sizeof(float) * P);
	/* A different init seed gives different weights; biases start at zero. */
	fv_model_init(b, 78);
	assert_memory_not_equal(fv_model_params(a), fv_model_params(b), sizeof(float) * 32);
	for (size_t i = 32; i < 36; i++)
		assert_true(fv_model_params(b)[i] == 0.0f);
	free(data);
	fv_model_free(a);
	fv_model_free(b);
}

/* ---- kernels ---- */

static void test_matmul_fast_vs_ref(void **state)
{
	struct fv_rng r;
	const uint32_t shapes[][3] = {
		/* B, in, out: odd sizes hit every remainder path of the blocking */
		{ 1, 1, 1 }, { 1, 8, 4 }, { 3, 7, 5 }, { 2, 9, 3 }, { 5, 16, 8 },
		{ 4, 37, 13 }, { 1, 128, 16 }, { 7, 20, 12 }, { 2, 3, 64 }, { 5, 70, 33 },
		{ 3, 33, 97 },
	};

	(void)state;
	fv_rng_seed(&r, 11);
	for (size_t t = 0; t < FV_ARRAY_SIZE(shapes); t++) {
		uint32_t B = shapes[t][0], in = shapes[t][1], out = shapes[t][2];
		float *x = malloc(sizeof(float) * B * in), *w = malloc(sizeof(float) * out * in);
		float *bias = malloc(sizeof(float) * out), *y1 = malloc(sizeof(float) * B * out);
		float *y2 = malloc(sizeof(float) * B * out), *dy = malloc(sizeof(float) * B * out);
		float *dw = malloc(sizeof(float) * out * in), *db = malloc(sizeof(float) * out);
		float *dx = malloc(sizeof(float) * B * in), *wt = malloc(sizeof(float) * out * in);
		float *y3 = malloc(sizeof(float) * B * out);

		fill_uniform(x, (size_t)B * in, &r, -1, 1);
		fill_uniform(w, (size_t)out * in, &r, -1, 1);
		fill_uniform(bias, out, &r, -1, 1);
		fill_uniform(dy, (size_t)B * out, &r, -1, 1);
		fv_nn_matmul_fwd(y1, x, w, bias, B, in, out);
		fv_nn_matmul_fwd_ref(y2, x, w, bias, B, in, out);
		fv_nn_transpose(wt, w, in, out);
		for (uint32_t o = 0; o < out; o++)
			for (uint32_t i = 0; i < in; i++)
				assert_true(wt[i * out + o] == w[o * in + i]);
		fv_nn_matmul_fwd_t(y3, x, wt, bias, B, in, out);
		for (uint32_t s = 0; s < B; s++)
			for (uint32_t o = 0; o < out; o++) {
				double mag = fabs(bias[o]), exact = bias[o];

				for (uint32_t i = 0; i < in; i++) {
					exact += (double)x[s * in + i] * w[o * in + i];
					mag += fabs((double)x[s * in + i] * w[o * in + i]);
				}
				/* Both are within float rounding of the exact sum. */
				assert_float_equal(y1[s * out + o], exact, 1e-6 * mag + 1e-7);
				assert_float_equal(y2[s * out + o], exact, 1e-6 * mag + 1e-7);
				assert_float_equal(y3[s * out + o], exact, 1e-6 * mag + 1e-7);
			}

		/* Backward kernels against double loops. */
		fv_nn_matmul_bwd_w(dw, db, dy, x, B, in, out);
		fv_nn_matmul_bwd_x(dx, dy, w, B, in, out);
		for (uint32_t o = 0; o < out; o++) {
			double sb = 0.0;

			for (uint32_t i = 0; i < in; i++) {
				double sw = 0.0;

				for (uint32_t s = 0; s < B; s++)
					sw += (double)dy[s * out + o] * x[s * in + i];
				assert_float_equal(dw[o * in + i], sw, 1e-5);
			}
			for (uint32_t s = 0; s < B; s++)
				sb += dy[s * out + o];
			assert_float_equal(db[o], sb, 1e-5);
		}
		for (uint32_t s = 0; s < B; s++)
			for (uint32_t i = 0; i < in; i++) {
				double sx = 0.0;

				for (uint32_t o = 0; o < out; o++)
					sx += (double)dy[s * out + o] * w[o * in + i];
				assert_float_equal(dx[s * in + i], sx, 1e-5 * (1 + out));
			}
		free(x);
		free(w);
		free(bias);
		free(y1);
		free(y2);
		free(dy);
		free(dw);
		free(db);
		free(dx);
		free(wt);
		free(y3);
	}
}

/* Scoring one sample equals the batch forward pass on that row. */
static void test_score_matches_forward(void **state)
{
	const uint32_t hidden[] = { 16 };
	struct fv_model_spec s;
	struct fv_model *batch, *one;
	float x[4 * 128], y[4 * 128], sq[128];
	struct fv_rng r;

	(void)state;
	assert_int_equal(fv_model_spec_autoencoder(128, hidden, 1, FV_ACT_TANH, FV_ACT_LINEAR, &s),
			 0);
	batch = fv_model_new(&s, 4);
	one = fv_model_new(&s, 1);
	fv_model_init(batch, 5);
	assert_int_equal(fv_model_set_params(one, fv_model_params(batch), fv_model_nparams(batch)),
			 0);
	fv_rng_seed(&r, 6);
	fill_uniform(x, FV_ARRAY_SIZE(x), &r, -1, 1);
	assert_int_equal(fv_model_forward(batch, x, 4, y), 0);
	for (int b = 0; b < 4; b++) {
		double want = 0.0;
		float got = fv_model_score(one, x + b * 128, sq);

		for (int i = 0; i < 128; i++) {
			double d = (double)y[b * 128 + i] - x[b * 128 + i];

			assert_float_equal(sq[i], d * d, 1e-6);
			want += d * d;
		}
		assert_float_equal(got, want / 128, 1e-6);
	}
	fv_model_free(batch);
	fv_model_free(one);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_act_names),
		cmocka_unit_test(test_hidden_parse),
		cmocka_unit_test(test_spec_validate),
		cmocka_unit_test(test_forward_hand),
		cmocka_unit_test(test_set_params),
		cmocka_unit_test(test_grad_each_act),
		cmocka_unit_test(test_grad_mixed),
		cmocka_unit_test(test_adam_first_step),
		cmocka_unit_test(test_train_reduces_loss),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_matmul_fast_vs_ref),
		cmocka_unit_test(test_score_matches_forward),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
