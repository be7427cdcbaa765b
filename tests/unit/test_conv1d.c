/* Unit tests for the temporal (1-D convolutional) autoencoder of lib/nn:
 * kernels against their reference loops and a hand-computed case, kernel
 * and whole-model gradients against finite differences (in double
 * precision around float parameters), specs, presets, determinism and
 * training on sequences whose order matters. */
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
#include "nn/conv1d.h"

static void fill_uniform(float *x, size_t n, struct fv_rng *r, double lo, double hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(lo + (hi - lo) * fv_rng_uniform(r));
}

static float *falloc(size_t n)
{
	float *p = calloc(n ? n : 1, sizeof(float));

	assert_non_null(p);
	return p;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0.0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - b[i]));
	return m;
}

/* ---- kernels ---- */

static void test_out_len(void **state)
{
	(void)state;
	assert_int_equal(fv_conv1d_out_len(32, 2, 0), 16);
	assert_int_equal(fv_conv1d_out_len(33, 2, 0), 17);
	assert_int_equal(fv_conv1d_out_len(5, 3, 0), 2);
	assert_int_equal(fv_conv1d_out_len(7, 1, 0), 7);
	assert_int_equal(fv_conv1d_out_len(16, 2, 1), 32);
	assert_int_equal(fv_conv1d_out_len(3, 4, 1), 12);
}

/* K = 3, stride 1, one channel in and out: y[t] = b + w0 x[t-1] + w1 x[t] +
 * w2 x[t+1] with zeros outside; the deconv of the same weights is the
 * correlation with the kernel flipped. Computed by hand. */
static void test_hand_values(void **state)
{
	const float x[4] = { 1, 2, 3, 4 }, w[3] = { 0.5f, -1, 2 }, b[1] = { 0.25f };
	const float conv[4] = { 0.25f + -1 + 4, 0.25f + 0.5f - 2 + 6, 0.25f + 1 - 3 + 8,
				0.25f + 1.5f - 4 };
	/* deconv: y[t + k - 1] += x[t] w[k] -> y[r] = w0 x[r+1] + w1 x[r] + w2 x[r-1] */
	const float dec[4] = { 0.25f + 1 - 1, 0.25f + 1.5f - 2 + 2, 0.25f + 2 - 3 + 4,
			       0.25f - 4 + 6 };
	/* stride 2: outputs at t = 0, 2 of the stride-1 result */
	float y[8];

	(void)state;
	fv_conv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 1);
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[i], conv[i], 1e-6);
	fv_conv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 2);
	assert_float_equal(y[0], conv[0], 1e-6);
	assert_float_equal(y[1], conv[2], 1e-6);
	fv_deconv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 1);
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[i], dec[i], 1e-6);
	/* deconv stride 2: x[t] lands on rows 2t-1, 2t, 2t+1 */
	fv_deconv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 2);
	{
		const float d2[8] = { 0.25f + 1 * -1, 0.25f + 1 * 2 + 2 * 0.5f, 0.25f + 2 * -1,
				      0.25f + 2 * 2 + 3 * 0.5f, 0.25f + 3 * -1,
				      0.25f + 3 * 2 + 4 * 0.5f, 0.25f + 4 * -1, 0.25f + 4 * 2 };
		for (int i = 0; i < 8; i++)
			assert_float_equal(y[i], d2[i], 1e-6);
	}
}

/* The same layers in PyTorch (tests/unit/conv1d_golden.py, float64):
 * Conv1d(2, 3, 3, stride=2, padding=1) and ConvTranspose1d(2, 3, 3,
 * stride=2, padding=1, output_padding=1) on 6 steps, with weights and
 * inputs given by formulas. */
static float gx(uint32_t t, uint32_t i)
{
	return (float)((int)((t * 7 + i * 3) % 11) - 5) / 5.0f;
}

static float gw(uint32_t a, uint32_t k, uint32_t c)
{
	return (float)((int)((a * 5 + k * 3 + c * 7) % 13) - 6) / 6.0f;
}

static void test_pytorch_golden(void **state)
{
	static const double conv[9] = { -0.866666667, 0.1, 1.5,	      0.6,	  1.6,
					-0.433333333, -0.766666667, -1.73333333, 1.2 };
	static const double dec[36] = {
		0.266666667,  -0.4,	    0.233333333,  -1,		2.13333333,
		-0.8,	      0.0333333333, -0.4,	  0.466666667,	1.1,
		-0.433333333, 1.5,	    0.166666667,  -0.4,		0.333333333,
		-0.833333333, -0.0666666667, -0.6,	  -0.8,		1.06666667,
		-0.533333333, -0.933333333, -0.0666666667, -0.5,	0.0666666667,
		-0.4,	      0.433333333,  1.16666667,	  -0.433333333, 1.43333333,
		0.2,	      -0.4,	    0.3,	  -0.1,		0.6,
		0.0,
	};
	enum { L = 6, CIN = 2, COUT = 3, K = 3, S = 2 };
	float x[L * CIN], wc[COUT * K * CIN], wd[CIN * K * COUT], b[COUT], y[L * S * COUT];

	(void)state;
	for (uint32_t t = 0; t < L; t++)
		for (uint32_t i = 0; i < CIN; i++)
			x[t * CIN + i] = gx(t, i);
	for (uint32_t o = 0; o < COUT; o++) {
		b[o] = ((float)o - 1.0f) * 0.1f;
		for (uint32_t k = 0; k < K; k++)
			for (uint32_t i = 0; i < CIN; i++) {
				wc[(o * K + k) * CIN + i] = gw(o, k, i); /* (cout, K, cin) */
				wd[(i * K + k) * COUT + o] = gw(i, k, o); /* (cin, K, cout) */
			}
	}
	fv_conv1d_fwd(y, x, wc, b, 1, L, CIN, COUT, K, S);
	for (int i = 0; i < 9; i++)
		assert_float_equal(y[i], conv[i], 1e-6);
	fv_deconv1d_fwd(y, x, wd, b, 1, L, CIN, COUT, K, S);
	for (int i = 0; i < 36; i++)
		assert_float_equal(y[i], dec[i], 1e-6);
}

struct kshape {
	uint32_t B, L, cin, cout, K, s;
};

static const struct kshape kshapes[] = {
	{ 1, 1, 1, 1, 1, 1 },  { 3, 8, 5, 7, 3, 1 },  { 2, 9, 4, 6, 5, 2 },
	{ 2, 32, 5, 32, 7, 2 }, { 1, 16, 32, 16, 7, 2 }, { 2, 7, 3, 2, 7, 3 },
	{ 2, 5, 2, 9, 9, 1 },  { 1, 10, 17, 3, 3, 4 },
};

/* Fast paths against the reference loops, forward and backward, on odd
 * sizes, kernels wider than the sequence and strides that do not divide it. */
static void test_kernels_match_reference(void **state)
{
	struct fv_rng r;

	(void)state;
	fv_rng_seed(&r, 11);
	for (size_t c = 0; c < FV_ARRAY_SIZE(kshapes); c++) {
		const struct kshape *k = &kshapes[c];

		for (int deconv = 0; deconv <= 1; deconv++) {
			uint32_t Lo = fv_conv1d_out_len(k->L, k->s, deconv);
			size_t nx = (size_t)k->B * k->L * k->cin, ny = (size_t)k->B * Lo * k->cout;
			size_t nw = (size_t)k->K * k->cin * k->cout;
			float *x = falloc(nx), *w = falloc(nw), *b = falloc(k->cout);
			float *y1 = falloc(ny), *y2 = falloc(ny), *dy = falloc(ny);
			float *dx1 = falloc(nx), *dx2 = falloc(nx), *dw1 = falloc(nw),
			      *dw2 = falloc(nw), *db1 = falloc(k->cout), *db2 = falloc(k->cout);

			fill_uniform(x, nx, &r, -1, 1);
			fill_uniform(w, nw, &r, -1, 1);
			fill_uniform(b, k->cout, &r, -1, 1);
			fill_uniform(dy, ny, &r, -1, 1);
			for (size_t i = 0; i < nx; i += 3) /* zeros take the skip paths */
				x[i] = 0.0f;
			for (size_t i = 0; i < ny; i += 4)
				dy[i] = 0.0f;
			if (deconv) {
				fv_deconv1d_fwd(y1, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s);
				fv_deconv1d_fwd_ref(y2, x, w, b, k->B, k->L, k->cin, k->cout, k->K,
						    k->s);
				fv_deconv1d_bwd(dx1, dw1, db1, dy, x, w, k->B, k->L, k->cin, k->cout,
						k->K, k->s);
				fv_deconv1d_bwd_ref(dx2, dw2, db2, dy, x, w, k->B, k->L, k->cin,
						    k->cout, k->K, k->s);
			} else {
				fv_conv1d_fwd(y1, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s);
				fv_conv1d_fwd_ref(y2, x, w, b, k->B, k->L, k->cin, k->cout, k->K,
						  k->s);
				fv_conv1d_bwd(dx1, dw1, db1, dy, x, w, k->B, k->L, k->cin, k->cout,
					      k->K, k->s);
				fv_conv1d_bwd_ref(dx2, dw2, db2, dy, x, w, k->B, k->L, k->cin,
						  k->cout, k->K, k->s);
			}
			if (max_abs_diff(y1, y2, ny) > 1e-4 || max_abs_diff(dx1, dx2, nx) > 1e-4 ||
			    max_abs_diff(dw1, dw2, nw) > 1e-4 ||
			    max_abs_diff(db1, db2, k->cout) > 1e-4)
				fail_msg("%s shape %zu: y %g dx %g dw %g db %g", deconv ? "deconv" : "conv",
					 c, max_abs_diff(y1, y2, ny), max_abs_diff(dx1, dx2, nx),
					 max_abs_diff(dw1, dw2, nw), max_abs_diff(db1, db2, k->cout));
			/* dx may be NULL: the weight gradients do not change. */
			if (deconv)
				fv_deconv1d_bwd(NULL, dw2, db2, dy, x, w, k->B, k->L, k->cin, k->cout,
						k->K, k->s);
			else
				fv_conv1d_bwd(NULL, dw2, db2, dy, x, w, k->B, k->L, k->cin, k->cout,
					      k->K, k->s);
			assert_memory_equal(dw1, dw2, sizeof(float) * nw);
			assert_memory_equal(db1, db2, sizeof(float) * k->cout);
			free(x), free(w), free(b), free(y1), free(y2), free(dy);
			free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2);
		}
	}
}

/* The kernels' backward passes are the exact adjoints of their forward
 * passes: with loss = sum(y * g), dloss/dx, dloss/dw and dloss/db from the
 * reference forward in double-precision central differences must match
 * the backward kernel. */
static double kernel_loss(int deconv, const float *x, const float *w, const float *b,
			  const float *g, const struct kshape *k, float *y)
{
	uint32_t Lo = fv_conv1d_out_len(k->L, k->s, deconv);
	double acc = 0.0;

	if (deconv)
		fv_deconv1d_fwd_ref(y, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s);
	else
		fv_conv1d_fwd_ref(y, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s);
	for (size_t i = 0; i < (size_t)k->B * Lo * k->cout; i++)
		acc += (double)y[i] * g[i];
	return acc;
}

static void test_kernel_gradients(void **state)
{
	static const struct kshape shapes[] = { { 2, 7, 3, 4, 3, 2 }, { 1, 6, 2, 3, 5, 3 } };
	struct fv_rng r;

	(void)state;
	fv_rng_seed(&r, 5);
	for (size_t c = 0; c < FV_ARRAY_SIZE(shapes); c++)
		for (int deconv = 0; deconv <= 1; deconv++) {
			const struct kshape *k = &shapes[c];
			uint32_t Lo = fv_conv1d_out_len(k->L, k->s, deconv);
			size_t nx = (size_t)k->B * k->L * k->cin, ny = (size_t)k->B * Lo * k->cout;
			size_t nw = (size_t)k->K * k->cin * k->cout;
			float *x = falloc(nx), *w = falloc(nw), *b = falloc(k->cout), *g = falloc(ny);
			float *y = falloc(ny), *dx = falloc(nx), *dw = falloc(nw), *db = falloc(k->cout);
			struct {
				float *v, *d;
				size_t n;
			} sets[3] = { { x, dx, nx }, { w, dw, nw }, { b, db, k->cout } };
			double worst = 0.0;

			fill_uniform(x, nx, &r, -1, 1);
			fill_uniform(w, nw, &r, -1, 1);
			fill_uniform(b, k->cout, &r, -1, 1);
			fill_uniform(g, ny, &r, -1, 1);
			if (deconv)
				fv_deconv1d_bwd(dx, dw, db, g, x, w, k->B, k->L, k->cin, k->cout, k->K,
						k->s);
			else
				fv_conv1d_bwd(dx, dw, db, g, x, w, k->B, k->L, k->cin, k->cout, k->K,
					      k->s);
			for (int s = 0; s < 3; s++)
				for (size_t i = 0; i < sets[s].n; i++) {
					float keep = sets[s].v[i];
					const float h = 1e-2f; /* the loss is linear in each value */
					double lp, lm, num;

					sets[s].v[i] = keep + h;
					lp = kernel_loss(deconv, x, w, b, g, k, y);
					sets[s].v[i] = keep - h;
					lm = kernel_loss(deconv, x, w, b, g, k, y);
					sets[s].v[i] = keep;
					num = (lp - lm) / (2.0 * h);
					worst = fmax(worst, fabs(num - sets[s].d[i]) /
								    fmax(1.0, fabs(num)));
				}
			print_message("%s kernel %zu: worst relative gradient error %.2e\n",
				      deconv ? "deconv" : "conv", c, worst);
			assert_true(worst < 1e-3);
			free(x), free(w), free(b), free(g), free(y), free(dx), free(dw), free(db);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_len),
		cmocka_unit_test(test_hand_values),
		cmocka_unit_test(test_pytorch_golden),
		cmocka_unit_test(test_kernels_match_reference),
		cmocka_unit_test(test_kernel_gradients),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
