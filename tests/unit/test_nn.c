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
#include "nn/nn-int.h"

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
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
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
	fv_model_step(m, &o);
	for (size_t i = 0; i < P; i++) {
		double want = before[i] - o.lr * g[i] / (fabs(g[i]) + o.eps);

		assert_float_equal(fv_model_params(m)[i], want, 1e-6);
	}
	/* A reset makes the next step a first step again. */
	fv_model_optim_reset(m);
	memcpy(before, fv_model_params(m), sizeof(float) * P);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	memcpy(g, fv_model_grads(m), sizeof(float) * P);
	fv_model_step(m, &o);
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
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
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

/* FedProx: the gradient of J(w) = loss(w) + mu/2 |w - b|^2 is
 * grad loss + mu (w - b); central differences of J against it. */
static void test_prox_grad(void **state)
{
	const uint32_t B = 4, sizes[] = { 5, 3, 5 };
	const enum fv_act acts[] = { FV_ACT_TANH, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model *m = fv_model_new(&s, B);
	const float mu = 0.7f;
	const double eps = 1e-3;
	float x[4 * 5], *base, *g, loss;
	struct fv_rng r;
	size_t P;

	(void)state;
	assert_non_null(m);
	P = fv_model_nparams(m);
	base = malloc(P * sizeof(float));
	g = malloc(P * sizeof(float));
	fv_rng_seed(&r, 3);
	fill_uniform(x, B * 5, &r, -1.0, 1.0);
	fv_model_init(m, 3);
	for (size_t i = 0; i < P; i++) /* the base: 0.3 away, either side */
		base[i] = fv_model_params(m)[i] + (i % 2 ? 0.3f : -0.3f);
	assert_int_equal(fv_model_grad(m, x, B, &loss), 0);
	fv_model_prox_grad(m, mu, base);
	memcpy(g, fv_model_grads(m), P * sizeof(float));
	for (size_t i = 0; i < P; i++) {
		float *p = fv_model_params(m), orig = p[i], lp, lm;
		double jp, jm, fd, hp, hm;

		p[i] = (float)(orig + eps);
		hp = (double)p[i] - base[i];
		fv_model_grad(m, x, B, &lp);
		p[i] = (float)(orig - eps);
		hm = (double)p[i] - base[i];
		fv_model_grad(m, x, B, &lm);
		p[i] = orig;
		/* Only coordinate i of |w - b|^2 changes. */
		jp = lp + 0.5 * mu * hp * hp;
		jm = lm + 0.5 * mu * hm * hm;
		fd = (jp - jm) / ((double)(float)(orig + eps) - (float)(orig - eps));
		if (fabs(fd - g[i]) > 1e-2 * fmax(fabs(fd), fabs(g[i])) + 5e-4)
			fail_msg("param %zu: analytic %.6g, numeric %.6g", i, g[i], fd);
	}
	free(base);
	free(g);
	fv_model_free(m);
}

/* Training with the proximal term: mu = 0 (or no base) is plain training,
 * bit for bit; a large mu keeps the weights near the base. */
static void test_train_prox(void **state)
{
	const size_t N = 256;
	float *data = manifold_data(N, 9), *base, l0, l1;
	struct fv_model *m = ae_8_4_2_4_8(32), *m2 = ae_8_4_2_4_8(32);
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
	double dist[3];
	const float mus[3] = { 0.0f, 0.1f, 10.0f };
	size_t P;

	(void)state;
	P = fv_model_nparams(m);
	base = malloc(P * sizeof(float));
	fv_model_init(m, 4);
	memcpy(base, fv_model_params(m), P * sizeof(float));
	o.lr = 1e-2f;
	for (int k = 0; k < 3; k++) {
		double d = 0;

		assert_int_equal(fv_model_set_params(m, base, P), 0);
		fv_model_optim_reset(m);
		o.prox_mu = mus[k];
		o.prox_base = base;
		assert_int_equal(fv_model_train(m, data, N, 20, 32, &o, 5, &l1), 0);
		for (size_t i = 0; i < P; i++)
			d += ((double)fv_model_params(m)[i] - base[i]) *
			     ((double)fv_model_params(m)[i] - base[i]);
		dist[k] = sqrt(d);
		if (k == 0) {
			/* Without the option at all: the same bits. */
			struct fv_train_opts plain = FV_TRAIN_DEFAULTS;

			plain.lr = 1e-2f;
			fv_model_set_params(m2, base, P);
			fv_model_optim_reset(m2);
			assert_int_equal(fv_model_train(m2, data, N, 20, 32, &plain, 5, &l0), 0);
			assert_memory_equal(fv_model_params(m2), fv_model_params(m),
					    P * sizeof(float));
			assert_true(l0 == l1);
		}
	}
	print_message("prox: |w - base| = %.4f (mu 0), %.4f (0.1), %.4f (10)\n", dist[0],
		      dist[1], dist[2]);
	assert_true(dist[1] < dist[0]);
	assert_true(dist[2] < 0.5 * dist[1]);
	o.prox_mu = -1.0f;
	assert_int_equal(fv_model_train(m, data, N, 1, 32, &o, 5, &l1), -EINVAL);
	free(base);
	free(data);
	fv_model_free(m);
	fv_model_free(m2);
}

static void test_determinism(void **state)
{
	const size_t N = 100; /* not a multiple of the batch: a partial batch */
	float *data = manifold_data(N, 9);
	struct fv_model *a = ae_8_4_2_4_8(16), *b = ae_8_4_2_4_8(16);
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
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

/* Every kernel variant this CPU runs, against exact sums in double, for
 * odd shapes that hit every remainder path of the register blocking and
 * the three ways the model calls the GEMM (forward on W^T, dW = dY^T X,
 * dX = dY W). */
static void test_kernels_vs_ref(void **state)
{
	const struct fv_nn_kernels *ks[8];
	size_t nk = fv_nn_kernels_supported(ks, 8);
	struct fv_rng r;
	const uint32_t shapes[][3] = {
		/* M, N, K */
		{ 1, 1, 1 }, { 1, 8, 4 }, { 3, 7, 5 }, { 2, 9, 3 }, { 5, 16, 8 }, { 6, 32, 128 },
		{ 4, 37, 13 }, { 1, 128, 16 }, { 7, 20, 12 }, { 2, 3, 64 }, { 13, 70, 33 },
		{ 32, 16, 128 }, { 32, 128, 16 }, { 128, 16, 32 }, { 11, 33, 97 }, { 6, 48, 5 },
	};

	(void)state;
	assert_true(nk >= 1);
	fv_rng_seed(&r, 11);
	for (size_t t = 0; t < FV_ARRAY_SIZE(shapes); t++) {
		uint32_t M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
		float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
		float *bias = malloc(sizeof(float) * N), *c = malloc(sizeof(float) * M * N);
		float *cr = malloc(sizeof(float) * M * N), *x = malloc(sizeof(float) * K);
		float *y = malloc(sizeof(float) * N), *yr = malloc(sizeof(float) * N);

		fill_uniform(a, (size_t)M * K, &r, -1, 1);
		fill_uniform(b, (size_t)K * N, &r, -1, 1);
		fill_uniform(bias, N, &r, -1, 1);
		fill_uniform(x, K, &r, -1, 1);
		for (int layout = 0; layout < 2; layout++) {
			/* layout 0: a row-major (M, K); 1: a = the transpose of a
			 * (K, M) buffer, as for dW = dY^T X. */
			size_t rsa = layout ? 1 : K, csa = layout ? M : 1;

			for (int with_bias = 0; with_bias < 2; with_bias++) {
				const float *bb = with_bias ? bias : NULL;

				fv_nn_gemm_ref(cr, a, rsa, csa, b, N, bb, M, N, K);
				for (size_t v = 0; v < nk; v++) {
					memset(c, 0xff, sizeof(float) * M * N); /* NaN: every cell written */
					ks[v]->gemm(c, a, rsa, csa, b, N, bb, M, N, K);
					for (uint32_t i = 0; i < M; i++)
						for (uint32_t j = 0; j < N; j++) {
							double e = bb ? bb[j] : 0.0, mag = fabs(e);

							for (uint32_t k = 0; k < K; k++) {
								double p = (double)a[i * rsa + k * csa] *
									   b[(size_t)k * N + j];

								e += p;
								mag += fabs(p);
							}
							/* Both within float rounding of the exact sum. */
							if (fabs(c[i * N + j] - e) > 1e-6 * mag + 1e-7 ||
							    fabs(cr[i * N + j] - e) > 1e-6 * mag + 1e-7)
								fail_msg("%s gemm %ux%ux%u layout %d: [%u,%u] = %g, ref %g, exact %g",
									 ks[v]->name, M, N, K, layout, i, j,
									 c[i * N + j], cr[i * N + j], e);
						}
				}
			}
		}
		/* gemv: w = b viewed as (N, K)... use a as (M, K) rows. */
		fv_nn_gemv_ref(yr, a, x, bias, M < N ? M : N, K);
		for (size_t v = 0; v < nk; v++) {
			uint32_t out = M < N ? M : N;

			ks[v]->gemv(y, a, x, bias, out, K);
			for (uint32_t o = 0; o < out; o++) {
				double e = bias[o], mag = fabs(e);

				for (uint32_t k = 0; k < K; k++) {
					e += (double)a[o * K + k] * x[k];
					mag += fabs((double)a[o * K + k] * x[k]);
				}
				assert_float_equal(y[o], e, 1e-6 * mag + 1e-7);
				assert_float_equal(yr[o], e, 1e-6 * mag + 1e-7);
			}
		}
		free(a);
		free(b);
		free(bias);
		free(c);
		free(cr);
		free(x);
		free(y);
		free(yr);
	}

	/* Adam: the same update as the reference loop, within rounding. */
	enum { P = 1003 };
	float p0[P], g[P], m0[P], v0[P], p1[P], m1[P], v1[P];

	fill_uniform(p0, P, &r, -1, 1);
	fill_uniform(g, P, &r, -1, 1);
	fill_uniform(m0, P, &r, -0.1, 0.1);
	fill_uniform(v0, P, &r, 0, 0.1);
	for (size_t v = 0; v < nk; v++) {
		float pr[P], mr[P], vr[P];

		memcpy(pr, p0, sizeof(p0));
		memcpy(mr, m0, sizeof(m0));
		memcpy(vr, v0, sizeof(v0));
		memcpy(p1, p0, sizeof(p0));
		memcpy(m1, m0, sizeof(m0));
		memcpy(v1, v0, sizeof(v0));
		fv_nn_adam_ref(pr, g, mr, vr, P, 0.9f, 0.999f, 1e-3f, 1e-8f);
		ks[v]->adam(p1, g, m1, v1, P, 0.9f, 0.999f, 1e-3f, 1e-8f);
		for (size_t i = 0; i < P; i++) {
			assert_float_equal(p1[i], pr[i], 1e-6);
			assert_float_equal(m1[i], mr[i], 1e-7);
			assert_float_equal(v1[i], vr[i], 1e-7);
		}
	}
	/* Activations: tanh and sigmoid within 2e-7 of libm in double, relu
	 * exact, linear untouched; saturation far out; odd symmetry of tanh. */
	enum { NA = 4001 };
	static float xa[NA], ya[NA];

	for (size_t i = 0; i < NA; i++)
		xa[i] = (float)(-20.0 + 40.0 * (double)i / (NA - 1));
	for (size_t v = 0; v < nk; v++)
		for (int act = FV_ACT_LINEAR; act <= FV_ACT_SIGMOID; act++) {
			memcpy(ya, xa, sizeof(xa));
			ks[v]->act(ya, NA, act);
			for (size_t i = 0; i < NA; i++) {
				double x = xa[i], want = act == FV_ACT_TANH	 ? tanh(x)
							 : act == FV_ACT_SIGMOID ? 1.0 / (1.0 + exp(-x))
							 : act == FV_ACT_RELU	 ? (x > 0 ? x : 0)
										 : x;

				if (fabs(ya[i] - want) > 2e-7)
					fail_msg("%s act %d at %g: %.9g, want %.9g", ks[v]->name, act,
						 x, ya[i], want);
			}
			if (act == FV_ACT_TANH)
				for (size_t i = 0; i < NA; i++)
					assert_true(ya[i] == -ya[NA - 1 - i]);
		}

	print_message("kernel variants on this CPU:");
	for (size_t v = 0; v < nk; v++)
		print_message(" %s", ks[v]->name);
	print_message(" (in use: %s)\n", fv_nn_kernels()->name);
}

/* Training does not depend on the variant beyond float rounding: each
 * preset trains for a few hundred steps with every variant this CPU runs,
 * from the same start, and ends at the same parameters and loss within a
 * tolerance far below what training changes. Selecting an unknown or
 * unsupported variant fails. */
static void test_kernels_train_paths(void **state)
{
	const struct fv_nn_kernels *ks[8];
	size_t nk = fv_nn_kernels_supported(ks, 8);
	const char *saved = fv_nn_kernels()->name;
	const enum fv_preset presets[] = { FV_PRESET_AE8, FV_PRESET_AE20, FV_PRESET_DAE128,
					   FV_PRESET_SAE };
	const size_t N = 320;
	struct fv_rng r;

	(void)state;
	assert_int_equal(fv_nn_kernels_select("no-such-isa"), -EINVAL);
	fv_rng_seed(&r, 5);
	for (size_t t = 0; t < FV_ARRAY_SIZE(presets); t++) {
		struct fv_model_spec s;
		uint32_t in = fv_preset_nominal_input(presets[t]);
		float *data = malloc(sizeof(float) * N * in), *first = NULL;
		float loss0 = 0.0f, init_diff = 0.0f;
		size_t P = 0;

		assert_int_equal(fv_model_spec_preset(presets[t], in, &s), 0);
		/* Low-rank data in (0, 1): every preset (sigmoid output too) fits. */
		for (size_t i = 0; i < N; i++) {
			double z0 = fv_rng_uniform(&r), z1 = fv_rng_uniform(&r);

			for (uint32_t j = 0; j < in; j++)
				data[i * in + j] = (float)(0.5 + 0.4 * sin(z0 * (j + 1) + 3 * z1));
		}
		for (size_t v = 0; v < nk; v++) {
			struct fv_model *m = fv_model_new(&s, 32);
			struct fv_train_opts o = FV_TRAIN_DEFAULTS;
			float loss;

			assert_int_equal(fv_nn_kernels_select(ks[v]->name), 0);
			assert_string_equal(fv_nn_kernels()->name, ks[v]->name);
			P = fv_model_nparams(m);
			fv_model_init(m, 3);
			o.lr = 3e-3f;
			assert_int_equal(fv_model_train(m, data, N, 20, 32, &o, 7, &loss), 0);
			if (v == 0) {
				first = malloc(sizeof(float) * P);
				memcpy(first, fv_model_params(m), sizeof(float) * P);
				loss0 = loss;
				/* What 200 steps changed, for scale. */
				fv_model_init(m, 3);
				for (size_t i = 0; i < P; i++)
					init_diff = fmaxf(init_diff,
							  fabsf(first[i] - fv_model_params(m)[i]));
			} else {
				float worst = 0.0f;

				for (size_t i = 0; i < P; i++)
					worst = fmaxf(worst, fabsf(fv_model_params(m)[i] - first[i]));
				print_message("%s: %s vs %s: max |param diff| %.3g (training moved "
					      "them up to %.3g), loss %.6g vs %.6g\n",
					      fv_preset_name(presets[t]), ks[v]->name, ks[0]->name,
					      worst, init_diff, loss, loss0);
				assert_true(worst < 2e-3f * init_diff);
				assert_float_equal(loss, loss0, 1e-3 * loss0);
			}
			fv_model_free(m);
		}
		free(first);
		free(data);
	}
	assert_int_equal(fv_nn_kernels_select(saved), 0);
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

/* ---- presets ---- */

static void test_presets(void **state)
{
	static const struct {
		const char *name;
		uint32_t nominal;
		const char *shape;
		enum fv_act act, out;
		float dropout, noise;
	} want[] = {
		{ "ae8", 8, "8-4-2-4-8", FV_ACT_RELU, FV_ACT_LINEAR, 0, 0 },
		{ "ae20", 20, "20-12-6-12-20", FV_ACT_RELU, FV_ACT_SIGMOID, 0, 0 },
		{ "dae128", 128, "128-16-128", FV_ACT_TANH, FV_ACT_LINEAR, 0.2f, 0.1f },
		{ "sae", 128, "128-64-32-16-32-64-128", FV_ACT_RELU, FV_ACT_LINEAR, 0, 0 },
	};
	struct fv_model_spec s;
	enum fv_preset p;
	char buf[64];

	(void)state;
	for (size_t i = 0; i < FV_ARRAY_SIZE(want); i++) {
		assert_int_equal(fv_preset_parse(want[i].name, &p), 0);
		assert_string_equal(fv_preset_name(p), want[i].name);
		assert_int_equal(fv_preset_nominal_input(p), want[i].nominal);
		assert_int_equal(fv_model_spec_preset(p, want[i].nominal, &s), 0);
		assert_int_equal(fv_model_spec_validate(&s), 0);
		assert_int_equal(fv_model_spec_format(&s, buf, sizeof(buf)),
				 (int)strlen(want[i].shape));
		assert_string_equal(buf, want[i].shape);
		for (uint32_t l = 0; l + 1 < s.n_layers; l++) {
			assert_int_equal(s.acts[l], want[i].act);
			assert_true(s.dropout[l] == want[i].dropout);
		}
		assert_int_equal(s.acts[s.n_layers - 1], want[i].out);
		assert_true(s.dropout[s.n_layers - 1] == 0.0f);
		assert_true(s.noise == want[i].noise);
	}
	/* Another input width keeps the hidden layers. */
	assert_int_equal(fv_model_spec_preset(FV_PRESET_AE8, 50, &s), 0);
	fv_model_spec_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "50-4-2-4-50");
	assert_int_equal(fv_model_spec_preset(FV_PRESET_SAE, 5, &s), 0);
	fv_model_spec_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "5-64-32-16-32-64-5");
	/* A short buffer is truncated but terminated; the length is still told. */
	assert_int_equal(fv_model_spec_format(&s, buf, 4), 18);
	assert_string_equal(buf, "5-6");

	assert_int_equal(fv_model_spec_preset(FV_PRESET_CUSTOM, 8, &s), -EINVAL);
	assert_int_equal(fv_model_spec_preset((enum fv_preset)9, 8, &s), -EINVAL);
	assert_int_equal(fv_model_spec_preset(FV_PRESET_AE8, 0, &s), -EINVAL);
	assert_int_equal(fv_model_spec_preset(FV_PRESET_AE8, FV_NN_MAX_WIDTH + 1, &s), -E2BIG);
	assert_int_equal(fv_preset_parse("AE8", &p), -EINVAL);
	assert_int_equal(fv_preset_parse("custom", &p), 0);
	assert_int_equal(p, FV_PRESET_CUSTOM);
	assert_int_equal(fv_preset_nominal_input(FV_PRESET_CUSTOM), 0);
}

static void test_regularize_validate(void **state)
{
	const uint32_t hidden[] = { 4, 2, 4 };
	struct fv_model_spec s, bad;

	(void)state;
	assert_int_equal(fv_model_spec_autoencoder(8, hidden, 3, FV_ACT_TANH, FV_ACT_LINEAR, &s),
			 0);
	assert_int_equal(fv_model_spec_regularize(&s, 0.3f, 0.5f), 0);
	assert_true(s.dropout[0] == 0.3f && s.dropout[2] == 0.3f && s.dropout[3] == 0.0f);
	assert_int_equal(fv_model_spec_validate(&s), 0);
	bad = s;
	assert_int_equal(fv_model_spec_regularize(&bad, 0.95f, 0.0f), -EINVAL);
	assert_int_equal(fv_model_spec_regularize(&bad, -0.1f, 0.0f), -EINVAL);
	assert_int_equal(fv_model_spec_regularize(&bad, NAN, 0.0f), -EINVAL);
	assert_int_equal(fv_model_spec_regularize(&bad, 0.1f, -1.0f), -EINVAL);
	assert_int_equal(fv_model_spec_regularize(&bad, 0.1f, 11.0f), -EINVAL);
	assert_memory_equal(&bad, &s, sizeof(s)); /* untouched on failure */
	bad.dropout[3] = 0.1f; /* never on the output */
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.dropout[1] = NAN;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.noise = NAN;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	bad = s;
	bad.kind = 99;
	assert_int_equal(fv_model_spec_validate(&bad), -EDOM);
	assert_int_equal(fv_model_spec_nparams(&bad), 0);
}

/* ---- memory budget ---- */

static void test_spec_mem(void **state)
{
	struct fv_model_spec s, sd;
	struct fv_model_mem t1, t32, sc, d32;
	struct fv_model *m;

	(void)state;
	assert_int_equal(fv_model_spec_preset(FV_PRESET_SAE, 128, &s), 0);
	assert_int_equal(fv_model_spec_mem(&s, 1, true, &t1), 0);
	assert_int_equal(fv_model_spec_mem(&s, 32, true, &t32), 0);
	assert_int_equal(fv_model_spec_mem(&s, 1, false, &sc), 0);
	/* 128*64+64 + 64*32+32 + 32*16+16 + mirrored = 21,616 + 21,696 params;
	 * each array is rounded up to a 64-byte line. */
	size_t P = fv_model_spec_nparams(&s);

	assert_int_equal(P, 8256 + 2080 + 528 + 544 + 2112 + 8320);
	assert_true(t1.params >= P * 4 && t1.params < P * 4 + 64 * 12);
	assert_int_equal(t1.grads, t1.params);
	assert_int_equal(t1.optim, 2 * t1.params);
	assert_int_equal(t32.params, t1.params);
	/* Activations: outputs of 6 layers (336 floats a row), two deltas of the
	 * widest layer and the batch copy per row, plus W^T scratch (8192). */
	assert_true(t32.act >= 4 * (32 * (336 + 2 * 128 + 128) + 8192));
	assert_true(t32.act > t1.act);
	assert_int_equal(sc.grads, 0);
	assert_int_equal(sc.optim, 0);
	assert_true(sc.act >= 4 * 336 && sc.act < t1.act);
	assert_true(sc.total < t1.total);
	/* total is the parts plus the struct, and what fv_model_new allocates. */
	assert_true(t32.total > t32.params + t32.grads + t32.optim + t32.act);
	assert_true(t32.total < t32.params + t32.grads + t32.optim + t32.act + 4096);
	assert_int_equal(fv_model_spec_bytes(&s, 32), t32.total);
	m = fv_model_new_scorer(&s, 1);
	assert_non_null(m);
	assert_null(fv_model_grads(m));
	fv_model_free(m);

	/* Dropout and noise add their masks and the noisy copy in training only. */
	assert_int_equal(fv_model_spec_preset(FV_PRESET_DAE128, 128, &sd), 0);
	assert_int_equal(fv_model_spec_mem(&sd, 32, true, &d32), 0);
	sd.noise = 0.0f;
	memset(sd.dropout, 0, sizeof(sd.dropout));
	assert_int_equal(fv_model_spec_mem(&sd, 32, true, &t32), 0);
	assert_int_equal(d32.act - t32.act, 4 * (32 * 128 + 2 * 32 * 16));
	assert_int_equal(fv_model_spec_preset(FV_PRESET_DAE128, 128, &sd), 0);
	assert_int_equal(fv_model_spec_mem(&sd, 1, false, &sc), 0);
	assert_int_equal(fv_model_spec_mem(&sd, 1, false, &t1), 0);
	assert_memory_equal(&sc, &t1, sizeof(sc));

	assert_int_equal(fv_model_spec_mem(&s, 0, true, &t1), -EINVAL);
	s.sizes[1] = 0;
	assert_int_equal(fv_model_spec_mem(&s, 1, true, &t1), -EDOM);
}

/* ---- training-mode gradients: dropout, noise, L2 ---- */

/* Central differences of the training objective (MSE + wd/2 sum W^2) with
 * fixed dropout masks, a noisy input and a clean target. */
static void grad_check_train(const struct fv_model_spec *s, float wd, uint64_t seed)
{
	const uint32_t B = 4;
	const double eps = 1e-3, rtol = 1e-2, atol = 5e-4;
	struct fv_model *m = fv_model_new(s, B);
	size_t P, in = s->sizes[0];
	float *x, *t, *g, lp, lm, obj, mse;
	struct fv_rng r;
	double gmax = 0.0, l2 = 0.0;
	uint32_t n_masks = 0;

	assert_non_null(m);
	P = fv_model_nparams(m);
	x = malloc(sizeof(float) * B * in);
	t = malloc(sizeof(float) * B * in);
	g = malloc(sizeof(float) * P);
	fv_rng_seed(&r, seed);
	fill_uniform(t, B * in, &r, -1.0, 1.0);
	for (size_t i = 0; i < B * in; i++)
		x[i] = t[i] + (float)(0.3 * (fv_rng_uniform(&r) - 0.5)); /* "noisy" input */
	fv_model_init(m, seed);
	for (size_t i = 0; i < P; i++)
		fv_model_params(m)[i] += (float)(0.2 * (fv_rng_uniform(&r) - 0.5));
	/* A fixed mask per dropout layer: drop about a third, scale the rest. */
	for (uint32_t l = 0; l < s->n_layers; l++) {
		float *mk = m->dense.mask[l];
		size_t n = (size_t)B * s->sizes[l + 1];

		if (!mk)
			continue;
		n_masks++;
		for (size_t i = 0; i < n; i++)
			mk[i] = fv_rng_uniform(&r) < s->dropout[l] ? 0.0f : 1.0f / (1.0f - s->dropout[l]);
	}
	assert_int_equal(fv_nn_grad_train(m, x, t, B, wd, &obj, &mse), 0);
	memcpy(g, fv_model_grads(m), sizeof(float) * P);
	for (uint32_t l = 0; l < s->n_layers; l++)
		for (size_t i = 0; i < (size_t)s->sizes[l] * s->sizes[l + 1]; i++) {
			double w = fv_model_params(m)[m->dense.w_off[l] + i];

			l2 += w * w;
		}
	assert_float_equal(obj, mse + 0.5 * wd * l2, 1e-6 * obj);

	for (size_t i = 0; i < P; i++) {
		float *mp = fv_model_params(m);
		float orig = mp[i];
		double fd;

		mp[i] = (float)(orig + eps);
		fv_nn_grad_train(m, x, t, B, wd, &lp, NULL);
		mp[i] = (float)(orig - eps);
		fv_nn_grad_train(m, x, t, B, wd, &lm, NULL);
		mp[i] = orig;
		fd = ((double)lp - lm) / ((double)(float)(orig + eps) - (float)(orig - eps));
		if (fabs(fd - g[i]) > rtol * fmax(fabs(fd), fabs(g[i])) + atol)
			fail_msg("param %zu of %zu: analytic %.6g, numeric %.6g", i, P, g[i], fd);
		gmax = fmax(gmax, fabs(g[i]));
	}
	assert_true(gmax > 50 * atol);
	/* Dropout must matter: without the masks the gradient differs. */
	if (n_masks) {
		fv_model_grad(m, t, B, &lp);
		assert_memory_not_equal(fv_model_grads(m), g, sizeof(float) * P);
	}
	free(x);
	free(t);
	free(g);
	fv_model_free(m);
}

static void test_grad_dropout_fixed_mask(void **state)
{
	const uint32_t sizes[] = { 6, 5, 3, 5, 6 };
	const enum fv_act acts[] = { FV_ACT_TANH, FV_ACT_RELU, FV_ACT_SIGMOID, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(4, sizes, acts);

	(void)state;
	s.dropout[0] = 0.3f;
	s.dropout[2] = 0.5f; /* layer 1 without: mixed */
	grad_check_train(&s, 0.0f, 21);
}

static void test_grad_l2(void **state)
{
	const uint32_t sizes[] = { 5, 3, 5 };
	const enum fv_act acts[] = { FV_ACT_TANH, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model_spec sd;

	(void)state;
	grad_check_train(&s, 0.05f, 22);
	/* Everything at once: dropout, noisy input, L2. */
	assert_int_equal(fv_model_spec_preset(FV_PRESET_DAE128, 12, &sd), 0);
	grad_check_train(&sd, 0.01f, 23);
}

/* The weight decay term reaches weights but not biases. */
static void test_l2_weights_only(void **state)
{
	const uint32_t sizes[] = { 3, 2, 3 };
	const enum fv_act acts[] = { FV_ACT_TANH, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model *m = fv_model_new(&s, 2);
	const float x[] = { 0.3f, -0.2f, 0.9f, 0.1f, 0.5f, -0.7f };
	float g0[32], g1[32];
	size_t P = fv_model_nparams(m);

	(void)state;
	fv_model_init(m, 4);
	assert_int_equal(fv_nn_grad_train(m, x, x, 2, 0.0f, NULL, NULL), 0);
	memcpy(g0, fv_model_grads(m), sizeof(float) * P);
	assert_int_equal(fv_nn_grad_train(m, x, x, 2, 0.5f, NULL, NULL), 0);
	memcpy(g1, fv_model_grads(m), sizeof(float) * P);
	for (uint32_t l = 0; l < 2; l++) {
		size_t w = m->dense.w_off[l], b = m->dense.b_off[l];

		for (size_t i = w; i < b; i++)
			assert_float_equal(g1[i], g0[i] + 0.5f * fv_model_params(m)[i], 1e-6);
		for (size_t i = b; i < b + sizes[l + 1]; i++)
			assert_true(g1[i] == g0[i]);
	}
	fv_model_free(m);
}

/* ---- training RNG: masks and noise ---- */

static void test_rng_masks_noise(void **state)
{
	enum { N = 1 << 16 };
	struct fv_model_spec s;
	struct fv_model *m;
	float *mask = malloc(sizeof(float) * N), *z = malloc(sizeof(float) * N);
	float *zero = calloc(N, sizeof(float)), *again = malloc(sizeof(float) * N);
	size_t dropped = 0;
	double sum = 0, sumsq = 0, m4 = 0, zmax = 0;

	(void)state;
	assert_int_equal(fv_model_spec_preset(FV_PRESET_DAE128, 8, &s), 0);
	m = fv_model_new(&s, 1);
	m->rng_key = 12345;
	m->rng_ctr = 0;
	fv_nn_rng_dropout(m, mask, N, 0.2f);
	assert_true(m->rng_ctr == N);
	for (size_t i = 0; i < N; i++) {
		if (mask[i] == 0.0f)
			dropped++;
		else
			assert_true(mask[i] == 1.25f);
	}
	/* Binomial(65536, 0.2): sd 102; 5 sd either side. */
	assert_true(fabs((double)dropped - 0.2 * N) < 510);
	fv_nn_rng_noise(m, z, zero, N, 1.0f);
	assert_true(m->rng_ctr == 3 * (uint64_t)N);
	for (size_t i = 0; i < N; i++) {
		sum += z[i];
		sumsq += (double)z[i] * z[i];
		m4 += (double)z[i] * z[i] * z[i] * z[i];
		zmax = fmax(zmax, fabs(z[i]));
	}
	/* Mean 0 (sd 1/256), variance 1, kurtosis 2.7 (Irwin-Hall n = 4; a
	 * Gaussian has 3, a uniform 1.8), bounded at 2 sqrt(3). */
	assert_true(fabs(sum / N) < 0.02);
	assert_true(fabs(sumsq / N - 1.0) < 0.03);
	assert_true(fabs(m4 / N - 2.7) < 0.15);
	assert_true(zmax <= 3.4642 && zmax > 2.5);
	/* The vector kernels and the scalar definition (fv_nn_rng_draw) agree,
	 * also across a 2^32 block of the counter (the scalar fallback). */
	const uint64_t starts[] = { 0, 4294967290ull, 77ull << 32 };

	for (size_t t = 0; t < FV_ARRAY_SIZE(starts); t++) {
		float mk[16], nz[16], src[16] = { 0 };

		m->rng_ctr = starts[t];
		fv_nn_rng_dropout(m, mk, 16, 0.5f);
		fv_nn_rng_noise(m, nz, src, 16, 1.0f);
		for (uint64_t i = 0; i < 16; i++) {
			uint32_t h = fv_nn_rng_draw(12345, starts[t] + i);
			uint32_t h1 = fv_nn_rng_draw(12345, starts[t] + 16 + 2 * i);
			uint32_t h2 = fv_nn_rng_draw(12345, starts[t] + 17 + 2 * i);
			int32_t hs = (int32_t)((h1 & 0xffffu) + (h1 >> 16) + (h2 & 0xffffu) +
					       (h2 >> 16));

			assert_true(mk[i] == ((h >> 8) >= 8388608u ? 2.0f : 0.0f));
			assert_float_equal(nz[i], (hs - 131070) * (1.7320508075688772 / 65536.0),
					   1e-6);
		}
	}
	/* Same key and counter, same draws; sigma scales. */
	m->rng_ctr = N;
	fv_nn_rng_noise(m, again, zero, N, 2.0f);
	for (size_t i = 0; i < N; i++)
		assert_float_equal(again[i], 2.0f * z[i], 1e-6);
	free(mask);
	free(z);
	free(zero);
	free(again);
	fv_model_free(m);
}

/* ---- optimisers ---- */

static void test_optimizers(void **state)
{
	const uint32_t sizes[] = { 3, 2, 3 };
	const enum fv_act acts[] = { FV_ACT_TANH, FV_ACT_LINEAR };
	struct fv_model_spec s = make_spec(2, sizes, acts);
	struct fv_model *m = fv_model_new(&s, 2);
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
	const float x[] = { 0.3f, -0.2f, 0.9f, 0.1f, 0.5f, -0.7f };
	size_t P = fv_model_nparams(m);
	float p0[32], g0[32], g1[32], p1[32], loss;

	(void)state;
	assert_int_equal(fv_train_opts_validate(&o), 0);
	/* SGD: p -= lr g. */
	o.optim = FV_OPTIM_SGD;
	o.lr = 0.1f;
	fv_model_init(m, 3);
	memcpy(p0, fv_model_params(m), sizeof(float) * P);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	memcpy(g0, fv_model_grads(m), sizeof(float) * P);
	assert_int_equal(fv_model_step(m, &o), 0);
	for (size_t i = 0; i < P; i++)
		assert_float_equal(fv_model_params(m)[i], p0[i] - 0.1f * g0[i], 1e-7);

	/* Momentum, two steps: v1 = g0, p1 = p0 - lr g0; v2 = mu g0 + g1,
	 * p2 = p1 - lr v2. */
	o.optim = FV_OPTIM_MOMENTUM;
	o.momentum = 0.9f;
	assert_int_equal(fv_model_set_params(m, p0, P), 0);
	fv_model_optim_reset(m);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	assert_int_equal(fv_model_step(m, &o), 0);
	memcpy(p1, fv_model_params(m), sizeof(float) * P);
	assert_int_equal(fv_model_grad(m, x, 2, &loss), 0);
	memcpy(g1, fv_model_grads(m), sizeof(float) * P);
	assert_int_equal(fv_model_step(m, &o), 0);
	for (size_t i = 0; i < P; i++) {
		assert_float_equal(p1[i], p0[i] - 0.1f * g0[i], 1e-7);
		assert_float_equal(fv_model_params(m)[i], p1[i] - 0.1f * (0.9f * g0[i] + g1[i]),
				   1e-6);
	}

	/* Options are checked. */
	o = (struct fv_train_opts)FV_TRAIN_DEFAULTS;
	o.lr = 0.0f;
	assert_int_equal(fv_train_opts_validate(&o), -EINVAL);
	o.lr = 1e-3f;
	o.weight_decay = -1.0f;
	assert_int_equal(fv_train_opts_validate(&o), -EINVAL);
	o.weight_decay = NAN;
	assert_int_equal(fv_train_opts_validate(&o), -EINVAL);
	o.weight_decay = 0.0f;
	o.optim = FV_OPTIM_MOMENTUM;
	o.momentum = 1.0f;
	assert_int_equal(fv_train_opts_validate(&o), -EINVAL);
	o.optim = (enum fv_optim)7;
	assert_int_equal(fv_train_opts_validate(&o), -EINVAL);
	o.optim = FV_OPTIM_ADAM;
	o.beta2 = 1.0f;
	assert_int_equal(fv_train_opts_validate(&o), -EINVAL);

	enum fv_optim op;

	assert_int_equal(fv_optim_parse("momentum", &op), 0);
	assert_int_equal(op, FV_OPTIM_MOMENTUM);
	assert_string_equal(fv_optim_name(FV_OPTIM_SGD), "sgd");
	assert_int_equal(fv_optim_parse("rmsprop", &op), -EINVAL);
	fv_model_free(m);
}

/* Every optimiser trains; the regularised presets train; all deterministic. */
static void test_train_each_optimizer(void **state)
{
	const size_t N = 256;
	float *data = manifold_data(N, 31);
	const enum fv_optim opts[] = { FV_OPTIM_SGD, FV_OPTIM_MOMENTUM, FV_OPTIM_ADAM };
	const float lrs[] = { 0.2f, 0.05f, 0.01f };

	(void)state;
	for (size_t k = 0; k < FV_ARRAY_SIZE(opts); k++) {
		struct fv_model *m = ae_8_4_2_4_8(16);
		struct fv_train_opts o = FV_TRAIN_DEFAULTS;
		float l0, l1;

		o.optim = opts[k];
		o.lr = lrs[k];
		o.weight_decay = 1e-4f;
		fv_model_init(m, 2);
		assert_int_equal(fv_model_train(m, data, N, 0, 16, &o, 1, &l0), 0);
		assert_int_equal(fv_model_train(m, data, N, 60, 16, &o, 1, &l1), 0);
		print_message("%s: loss %.4f -> %.4f\n", fv_optim_name(opts[k]), l0, l1);
		assert_true(l1 < 0.6f * l0);
		fv_model_free(m);
	}

	/* dae128 on 8 inputs: dropout + noise; same seed, same bits; other
	 * seed, other masks; the scorer sees the trained model. */
	struct fv_model_spec s;
	struct fv_model *a, *b, *sc;
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
	float la, lb, l0;

	assert_int_equal(fv_model_spec_preset(FV_PRESET_DAE128, 8, &s), 0);
	a = fv_model_new(&s, 16);
	b = fv_model_new(&s, 16);
	sc = fv_model_new_scorer(&s, 1);
	o.lr = 0.01f;
	fv_model_init(a, 5);
	fv_model_init(b, 5);
	assert_int_equal(fv_model_train(a, data, N, 0, 16, &o, 9, &l0), 0);
	assert_int_equal(fv_model_train(a, data, N, 30, 16, &o, 9, &la), 0);
	assert_int_equal(fv_model_train(b, data, N, 30, 16, &o, 9, &lb), 0);
	assert_memory_equal(fv_model_params(a), fv_model_params(b),
			    sizeof(float) * fv_model_nparams(a));
	assert_true(la == lb);
	assert_true(la < 0.8f * l0);
	fv_model_init(b, 5);
	assert_int_equal(fv_model_train(b, data, N, 1, 16, &o, 10, &lb), 0);
	fv_model_init(a, 5);
	assert_int_equal(fv_model_train(a, data, N, 1, 16, &o, 9, &la), 0);
	assert_memory_not_equal(fv_model_params(a), fv_model_params(b),
				sizeof(float) * fv_model_nparams(a));
	assert_int_equal(fv_model_set_params(sc, fv_model_params(a), fv_model_nparams(a)), 0);
	assert_float_equal(fv_model_score(sc, data, NULL), fv_model_score(a, data, NULL), 1e-7);
	/* A scorer cannot train. */
	assert_int_equal(fv_model_train(sc, data, N, 1, 1, &o, 9, &la), -EPERM);
	assert_int_equal(fv_model_grad(sc, data, 1, &la), -EPERM);
	assert_int_equal(fv_model_step(sc, &o), -EPERM);
	free(data);
	fv_model_free(a);
	fv_model_free(b);
	fv_model_free(sc);
}

/* Rows produced on demand train exactly like the same rows in an array:
 * here every second row of a bigger buffer, in reverse order. */
struct strided_rows {
	const float *buf;
	size_t N;
};

static void strided_row(void *ctx, size_t i, float *dst)
{
	const struct strided_rows *r = ctx;

	memcpy(dst, r->buf + 2 * (r->N - 1 - i) * 8, sizeof(float) * 8);
}

static void test_train_rows(void **state)
{
	const size_t N = 100;
	float *buf = manifold_data(2 * N, 12), *arr = malloc(sizeof(float) * N * 8);
	struct strided_rows src = { buf, N };
	struct fv_model *a = ae_8_4_2_4_8(16), *b = ae_8_4_2_4_8(16);
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
	float la, lb;

	(void)state;
	for (size_t i = 0; i < N; i++)
		strided_row(&src, i, arr + i * 8);
	fv_model_init(a, 1);
	fv_model_init(b, 1);
	assert_int_equal(fv_model_train(a, arr, N, 4, 16, &o, 3, &la), 0);
	assert_int_equal(fv_model_train_rows(b, strided_row, &src, N, 4, 16, &o, 3, &lb), 0);
	assert_memory_equal(fv_model_params(a), fv_model_params(b),
			    sizeof(float) * fv_model_nparams(a));
	assert_true(la == lb);
	assert_int_equal(fv_model_train(a, arr, N, 0, 16, &o, 3, &la), 0);
	assert_int_equal(fv_model_train_rows(b, strided_row, &src, N, 0, 16, &o, 3, &lb), 0);
	assert_true(la == lb);
	/* A NaN in a row that training would reach is refused up front. */
	buf[2 * (N - 1 - 37) * 8 + 5] = NAN;
	memcpy(arr, fv_model_params(b), sizeof(float) * fv_model_nparams(b));
	assert_int_equal(fv_model_train_rows(b, strided_row, &src, N, 1, 16, &o, 3, &lb), -ERANGE);
	assert_memory_equal(arr, fv_model_params(b), sizeof(float) * fv_model_nparams(b));
	assert_int_equal(fv_model_train_rows(b, NULL, &src, N, 1, 16, &o, 3, &lb), -EINVAL);
	free(buf);
	free(arr);
	fv_model_free(a);
	fv_model_free(b);
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
		cmocka_unit_test(test_prox_grad),
		cmocka_unit_test(test_train_prox),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_train_rows),
		cmocka_unit_test(test_kernels_vs_ref),
		cmocka_unit_test(test_kernels_train_paths),
		cmocka_unit_test(test_score_matches_forward),
		cmocka_unit_test(test_presets),
		cmocka_unit_test(test_regularize_validate),
		cmocka_unit_test(test_spec_mem),
		cmocka_unit_test(test_grad_dropout_fixed_mask),
		cmocka_unit_test(test_grad_l2),
		cmocka_unit_test(test_l2_weights_only),
		cmocka_unit_test(test_rng_masks_noise),
		cmocka_unit_test(test_optimizers),
		cmocka_unit_test(test_train_each_optimizer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
