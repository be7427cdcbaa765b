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
#include "nn/kernels.h"
#include "nn/nn-int.h"

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

/* Not fmax(): Debian 12's aarch64 gcc 12 crashes (internal compiler error
 * in vect_transform_reduction) vectorising that reduction once inlined into
 * test_forward_is_the_layers() at -O2. */
static double max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0.0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);

		if (d > m)
			m = d;
	}
	return m;
}

/* Scratch for one fast-kernel call, filled with NaN: no result may depend
 * on what it held (one buffer, grown as needed, freed by main()). */
static float *scratch_buf;
static size_t scratch_len;

static float *scr(uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s,
		  int deconv)
{
	size_t n = fv_conv1d_scratch(B, L, cin, cout, K, s, deconv);

	if (n > scratch_len) {
		free(scratch_buf);
		scratch_buf = malloc(sizeof(float) * n);
		assert_non_null(scratch_buf);
		scratch_len = n;
	}
	for (size_t i = 0; i < n; i++)
		scratch_buf[i] = NAN;
	return scratch_buf;
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
	fv_conv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 1, scr(1, 4, 1, 1, 3, 1, 0));
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[i], conv[i], 1e-6);
	fv_conv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 2, scr(1, 4, 1, 1, 3, 2, 0));
	assert_float_equal(y[0], conv[0], 1e-6);
	assert_float_equal(y[1], conv[2], 1e-6);
	fv_deconv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 1, scr(1, 4, 1, 1, 3, 1, 1));
	for (int i = 0; i < 4; i++)
		assert_float_equal(y[i], dec[i], 1e-6);
	/* deconv stride 2: x[t] lands on rows 2t-1, 2t, 2t+1 */
	fv_deconv1d_fwd(y, x, w, b, 1, 4, 1, 1, 3, 2, scr(1, 4, 1, 1, 3, 2, 1));
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
	fv_conv1d_fwd(y, x, wc, b, 1, L, CIN, COUT, K, S, scr(1, L, CIN, COUT, K, S, 0));
	for (int i = 0; i < 9; i++)
		assert_float_equal(y[i], conv[i], 1e-6);
	fv_deconv1d_fwd(y, x, wd, b, 1, L, CIN, COUT, K, S, scr(1, L, CIN, COUT, K, S, 1));
	for (int i = 0; i < 36; i++)
		assert_float_equal(y[i], dec[i], 1e-6);
}

struct kshape {
	uint32_t B, L, cin, cout, K, s;
};

/* Odd sizes, kernels wider than the sequence, strides that do not divide
 * it, fewer output channels than the GEMM path wants, batches of several
 * chunks, and the preset's layers (32 x 5 -> c32k7s2 -> c16k7s2 and back). */
static const struct kshape kshapes[] = {
	{ 1, 1, 1, 1, 1, 1 },    { 3, 8, 5, 7, 3, 1 },    { 2, 9, 4, 6, 5, 2 },
	{ 2, 32, 5, 32, 7, 2 },  { 1, 16, 32, 16, 7, 2 }, { 2, 7, 3, 2, 7, 3 },
	{ 2, 5, 2, 9, 9, 1 },    { 1, 10, 17, 3, 3, 4 },  { 5, 32, 5, 32, 7, 2 },
	{ 4, 16, 32, 16, 7, 2 }, { 4, 8, 16, 16, 7, 2 },  { 3, 24, 3, 8, 5, 3 },
	{ 6, 12, 4, 6, 3, 1 },   { 3, 4, 2, 3, 7, 2 },    { 7, 20, 9, 5, 9, 4 },
	{ 40, 16, 5, 8, 7, 2 },  { 65, 8, 3, 4, 5, 2 }, /* several chunks of 32 samples */
};

/* One layer's fast forward and backward (dx may be NULL). */
static void fast(int deconv, const struct kshape *k, float *y, float *dx, float *dw, float *db,
		 const float *x, const float *w, const float *b, const float *dy)
{
	if (deconv) {
		fv_deconv1d_fwd(y, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s,
				scr(k->B, k->L, k->cin, k->cout, k->K, k->s, 1));
		fv_deconv1d_bwd(dx, dw, db, dy, x, w, k->B, k->L, k->cin, k->cout, k->K, k->s,
				scr(k->B, k->L, k->cin, k->cout, k->K, k->s, 1));
	} else {
		fv_conv1d_fwd(y, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s,
			      scr(k->B, k->L, k->cin, k->cout, k->K, k->s, 0));
		fv_conv1d_bwd(dx, dw, db, dy, x, w, k->B, k->L, k->cin, k->cout, k->K, k->s,
			      scr(k->B, k->L, k->cin, k->cout, k->K, k->s, 0));
	}
}

static void reference(int deconv, const struct kshape *k, float *y, float *dx, float *dw,
		      float *db, const float *x, const float *w, const float *b, const float *dy)
{
	if (deconv) {
		fv_deconv1d_fwd_ref(y, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s);
		fv_deconv1d_bwd_ref(dx, dw, db, dy, x, w, k->B, k->L, k->cin, k->cout, k->K, k->s);
	} else {
		fv_conv1d_fwd_ref(y, x, w, b, k->B, k->L, k->cin, k->cout, k->K, k->s);
		fv_conv1d_bwd_ref(dx, dw, db, dy, x, w, k->B, k->L, k->cin, k->cout, k->K, k->s);
	}
}

/* Fast paths against the reference loops, forward and backward, with every
 * GEMM variant this CPU runs (kernels.h). */
static void test_kernels_match_reference(void **state)
{
	const struct fv_nn_kernels *vars[8];
	size_t nv = fv_nn_kernels_supported(vars, FV_ARRAY_SIZE(vars));
	struct fv_rng r;

	(void)state;
	assert_true(nv >= 1);
	fv_rng_seed(&r, 11);
	for (size_t v = 0; v < nv; v++) {
		assert_int_equal(fv_nn_kernels_select(vars[v]->name), 0);
		for (size_t c = 0; c < FV_ARRAY_SIZE(kshapes); c++)
			for (int deconv = 0; deconv <= 1; deconv++) {
				const struct kshape *k = &kshapes[c];
				uint32_t Lo = fv_conv1d_out_len(k->L, k->s, deconv);
				size_t nx = (size_t)k->B * k->L * k->cin;
				size_t ny = (size_t)k->B * Lo * k->cout, nw = (size_t)k->K * k->cin * k->cout;
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
				fast(deconv, k, y1, dx1, dw1, db1, x, w, b, dy);
				reference(deconv, k, y2, dx2, dw2, db2, x, w, b, dy);
				if (max_abs_diff(y1, y2, ny) > 1e-4 || max_abs_diff(dx1, dx2, nx) > 1e-4 ||
				    max_abs_diff(dw1, dw2, nw) > 1e-4 ||
				    max_abs_diff(db1, db2, k->cout) > 1e-4)
					fail_msg("%s, %s shape %zu: y %g dx %g dw %g db %g", vars[v]->name,
						 deconv ? "deconv" : "conv", c, max_abs_diff(y1, y2, ny),
						 max_abs_diff(dx1, dx2, nx), max_abs_diff(dw1, dw2, nw),
						 max_abs_diff(db1, db2, k->cout));
				/* dx may be NULL: the weight gradients do not change. */
				fast(deconv, k, y2, NULL, dw2, db2, x, w, b, dy);
				assert_memory_equal(dw1, dw2, sizeof(float) * nw);
				assert_memory_equal(db1, db2, sizeof(float) * k->cout);
				free(x), free(w), free(b), free(y1), free(y2), free(dy);
				free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2);
			}
	}
	assert_int_equal(fv_nn_kernels_select("auto"), 0);
}

/* The kernels' backward passes are the exact adjoints of their forward
 * passes: with loss = sum(y * g), dloss/dx, dloss/dw and dloss/db from the
 * reference forward in double-precision central differences must match
 * the fast backward kernel. */
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
	/* loop path, and GEMM path with edge steps */
	static const struct kshape shapes[] = { { 2, 7, 3, 4, 3, 2 }, { 1, 6, 2, 3, 5, 3 },
						{ 3, 8, 2, 3, 5, 2 } };
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
			fast(deconv, k, y, dx, dw, db, x, w, b, g);
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

/* ---- specs ---- */

/* A conv1d spec by hand: layer l is op[l] C_l -> C_{l+1}, kernel, stride. */
static struct fv_model_spec conv_spec(uint32_t window, uint32_t n, const uint32_t *ch,
				      const uint8_t *op, const uint8_t *k, const uint8_t *st,
				      const enum fv_act *acts)
{
	struct fv_model_spec s;

	memset(&s, 0, sizeof(s));
	s.kind = FV_MODEL_CONV1D;
	s.window = window;
	s.n_layers = n;
	for (uint32_t l = 0; l <= n; l++)
		s.sizes[l] = ch[l];
	for (uint32_t l = 0; l < n; l++) {
		s.conv[l] = op[l];
		s.kernel[l] = k[l];
		s.stride[l] = st[l];
		s.acts[l] = (uint8_t)acts[l];
	}
	return s;
}

static void test_preset_spec(void **state)
{
	struct fv_model_spec s, d;
	enum fv_preset p;
	char buf[128];
	/* 5*7*32+32, 32*7*16+16, 16*7*16+16, 16*7*32+32, 32*7*5+5 */
	const size_t want = 1152 + 3600 + 1808 + 3616 + 1125;

	(void)state;
	assert_int_equal(fv_preset_parse("conv1d", &p), 0);
	assert_int_equal(p, FV_PRESET_CONV1D);
	assert_string_equal(fv_preset_name(p), "conv1d");
	assert_int_equal(fv_preset_nominal_input(p), 0);
	/* It needs the window and the channels, not their product. */
	assert_int_equal(fv_model_spec_preset(p, 160, &s), -EINVAL);
	assert_int_equal(fv_model_spec_preset_wc(p, 32, 5, &s), 0);
	assert_int_equal(fv_model_spec_validate(&s), 0);
	assert_int_equal(s.kind, FV_MODEL_CONV1D);
	assert_int_equal(s.window, 32);
	assert_int_equal(fv_model_spec_nparams(&s), want);
	assert_int_equal(fv_model_spec_format(&s, buf, sizeof(buf)),
			 (int)strlen("conv1d 32x5: c32k7s2-c16k7s2-t16k7s2-t32k7s2-c5k7s1"));
	assert_string_equal(buf, "conv1d 32x5: c32k7s2-c16k7s2-t16k7s2-t32k7s2-c5k7s1");
	for (uint32_t l = 0; l < 4; l++)
		assert_int_equal(s.acts[l], FV_ACT_RELU);
	assert_int_equal(s.acts[4], FV_ACT_LINEAR);
	/* Windows must survive two halvings and two doublings. */
	assert_int_equal(fv_model_spec_preset_wc(p, 30, 5, &s), -EDOM);
	assert_int_equal(fv_model_spec_preset_wc(p, 4, 1, &s), 0);
	assert_int_equal(fv_model_spec_preset_wc(p, 0, 5, &s), -EINVAL);
	/* Dense presets through the same call take window * channels. */
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_AE8, 10, 5, &d), 0);
	fv_model_spec_format(&d, buf, sizeof(buf));
	assert_string_equal(buf, "50-4-2-4-50");
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_CUSTOM, 10, 5, &d), -EINVAL);
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_AE8, 1024, 256, &d), -E2BIG);

	/* The builder with other shapes: three levels, stride 3, kernel 5. */
	{
		const uint32_t f[] = { 8, 6, 4 };

		assert_int_equal(fv_model_spec_conv1d(54, 2, f, 3, 5, 3, FV_ACT_TANH,
						      FV_ACT_SIGMOID, &s),
				 0);
		fv_model_spec_format(&s, buf, sizeof(buf));
		assert_string_equal(buf, "conv1d 54x2: c8k5s3-c6k5s3-c4k5s3-t4k5s3-t6k5s3-t8k5s3-c2k5s1");
		assert_int_equal(s.n_layers, 7);
		assert_int_equal(fv_model_spec_conv1d(54, 2, f, 0, 5, 3, FV_ACT_TANH, FV_ACT_LINEAR,
						      &s),
				 -EINVAL);
		assert_int_equal(fv_model_spec_conv1d(54, 2, f, 8, 5, 3, FV_ACT_TANH, FV_ACT_LINEAR,
						      &s),
				 -E2BIG);
		assert_int_equal(fv_model_spec_conv1d(54, 2, f, 3, 4, 3, FV_ACT_TANH, FV_ACT_LINEAR,
						      &s),
				 -EDOM);
	}
}

/* Every malformed conv1d spec is refused by validation (which the wire
 * decoder and the agent rely on). */
static void test_validate(void **state)
{
	const uint32_t ch[] = { 3, 4, 3 };
	const uint8_t op[] = { FV_CONV_DOWN, FV_CONV_UP }, k[] = { 3, 3 }, st[] = { 2, 2 };
	const enum fv_act acts[] = { FV_ACT_RELU, FV_ACT_LINEAR };
	struct fv_model_spec good = conv_spec(8, 2, ch, op, k, st, acts), s;

	(void)state;
	assert_int_equal(fv_model_spec_validate(&good), 0);
	assert_int_equal(fv_model_spec_nparams(&good), 3 * 3 * 4 + 4 + 4 * 3 * 3 + 3);
#define BAD(stmt, err)                                          \
	do {                                                    \
		s = good;                                       \
		stmt;                                           \
		assert_int_equal(fv_model_spec_validate(&s), err); \
		assert_int_equal(fv_model_spec_nparams(&s), 0); \
	} while (0)
	BAD(s.window = 0, -EDOM);
	BAD(s.window = 9, -EDOM);                 /* 9 -> 5 -> 10: not the window */
	BAD(s.window = FV_NN_MAX_WINDOW + 4, -EDOM);
	BAD(s.kernel[0] = 4, -EDOM);              /* even */
	BAD(s.kernel[1] = 0, -EDOM);
	BAD(s.kernel[0] = FV_NN_MAX_KERNEL + 2, -EDOM);
	BAD(s.stride[0] = 0, -EDOM);
	BAD(s.stride[1] = FV_NN_MAX_STRIDE + 1, -EDOM);
	BAD(s.conv[0] = 2, -EDOM);
	BAD(s.acts[1] = 9, -EDOM);
	BAD(s.sizes[2] = 4, -EDOM);               /* output channels != input channels */
	BAD(s.sizes[1] = 0, -EDOM);
	BAD(s.sizes[1] = FV_NN_MAX_CHANNELS + 1, -E2BIG);
	BAD(s.dropout[0] = 0.1f, -EDOM);          /* no dropout in this kind */
	BAD(s.n_layers = 0, -EDOM);
	BAD(s.n_layers = FV_NN_MAX_LAYERS + 1, -EDOM);
	BAD((s.sizes[0] = s.sizes[2] = 512, s.sizes[1] = 1024, s.window = 1024), -E2BIG);
	BAD(s.kind = 7, -EDOM);
#undef BAD
	/* Big but legal: the parameter budget decides. */
	s = good;
	s.sizes[0] = s.sizes[2] = 1024;
	s.sizes[1] = 1024;
	s.kernel[0] = s.kernel[1] = 31;
	assert_int_equal(fv_model_spec_validate(&s), -E2BIG); /* 65 M parameters */
}

/* ---- models ---- */

/* Central differences of the batch objective (MSE + wd/2 |W|^2, through
 * fv_nn_grad_train() with a noisy input and a clean target), in double,
 * against the analytic gradient of every parameter -- the same check as
 * the dense layers' in test_nn.c. */
static double grad_check(const struct fv_model_spec *s, float wd, uint64_t seed)
{
	const uint32_t B = 3;
	const double eps = 1e-3, rtol = 1e-2, atol = 5e-4;
	struct fv_model *m = fv_model_new(s, B);
	size_t P, in = (size_t)s->window * s->sizes[0];
	float *x, *t, *g, lp, lm, obj, mse;
	struct fv_rng r;
	double gmax = 0.0, worst = 0.0;

	assert_non_null(m);
	P = fv_model_nparams(m);
	x = falloc(B * in);
	t = falloc(B * in);
	g = falloc(P);
	fv_rng_seed(&r, seed);
	fill_uniform(t, B * in, &r, -1.0, 1.0);
	for (size_t i = 0; i < B * in; i++)
		x[i] = t[i] + (float)(0.3 * (fv_rng_uniform(&r) - 0.5));
	fv_model_init(m, seed);
	for (size_t i = 0; i < P; i++) /* non-zero biases too */
		fv_model_params(m)[i] += (float)(0.2 * (fv_rng_uniform(&r) - 0.5));
	assert_int_equal(fv_nn_grad_train(m, x, t, B, wd, &obj, &mse), 0);
	memcpy(g, fv_model_grads(m), sizeof(float) * P);
	assert_true(mse > 0.0f);
	if (wd == 0.0f)
		assert_true(obj == mse);
	for (size_t i = 0; i < P; i++) {
		float *mp = fv_model_params(m);
		float orig = mp[i];
		double fd, err;

		mp[i] = (float)(orig + eps);
		fv_nn_grad_train(m, x, t, B, wd, &lp, NULL);
		mp[i] = (float)(orig - eps);
		fv_nn_grad_train(m, x, t, B, wd, &lm, NULL);
		mp[i] = orig;
		fd = ((double)lp - lm) / ((double)(float)(orig + eps) - (float)(orig - eps));
		err = fabs(fd - g[i]);
		if (err > rtol * fmax(fabs(fd), fabs(g[i])) + atol)
			fail_msg("param %zu of %zu: analytic %.6g, numeric %.6g", i, P, g[i], fd);
		if (fmax(fabs(fd), fabs(g[i])) > 100 * atol) /* above the noise floor */
			worst = fmax(worst, err / fmax(fabs(fd), fabs(g[i])));
		gmax = fmax(gmax, fabs(g[i]));
	}
	/* Gradients well above the noise floor, or this could not fail. */
	assert_true(gmax > 50 * atol);
	/* fv_model_grad() (clean input, no decay) agrees with the same call. */
	if (wd == 0.0f) {
		fv_nn_grad_train(m, t, t, B, 0.0f, &lp, NULL);
		memcpy(g, fv_model_grads(m), sizeof(float) * P);
		assert_int_equal(fv_model_grad(m, t, B, &lm), 0);
		assert_true(lp == lm);
		assert_memory_equal(fv_model_grads(m), g, sizeof(float) * P);
	}
	free(x), free(t), free(g);
	fv_model_free(m);
	return worst;
}

static void test_grad_each_act(void **state)
{
	const uint32_t ch[] = { 3, 4, 2, 3 };
	const uint8_t op[] = { FV_CONV_DOWN, FV_CONV_UP, FV_CONV_DOWN }, k[] = { 3, 5, 3 },
		      st[] = { 2, 2, 1 };

	(void)state;
	for (int a = FV_ACT_LINEAR; a <= FV_ACT_SIGMOID; a++) {
		const enum fv_act acts[] = { (enum fv_act)a, (enum fv_act)a, (enum fv_act)a };
		struct fv_model_spec s = conv_spec(6, 3, ch, op, k, st, acts);

		print_message("%s: worst relative gradient error %.2e\n", fv_act_name((enum fv_act)a),
			      grad_check(&s, 0.0f, 40 + (uint64_t)a));
	}
}

/* The preset's shape (two levels, mirrored, kernel 7) at a small size, a
 * three-level stride-3 net, and weight decay. */
static void test_grad_shapes(void **state)
{
	const uint32_t f2[] = { 4, 3 }, f3[] = { 3, 2, 2 };
	struct fv_model_spec s;

	(void)state;
	assert_int_equal(fv_model_spec_conv1d(8, 2, f2, 2, 7, 2, FV_ACT_RELU, FV_ACT_LINEAR, &s),
			 0);
	print_message("preset shape: %.2e\n", grad_check(&s, 0.0f, 50));
	print_message("preset shape, L2 0.05: %.2e\n", grad_check(&s, 0.05f, 51));
	assert_int_equal(
		fv_model_spec_conv1d(27, 2, f3, 3, 3, 3, FV_ACT_TANH, FV_ACT_SIGMOID, &s), 0);
	print_message("three levels, stride 3: %.2e\n", grad_check(&s, 0.01f, 52));
}

/* The model's forward pass is the chain of reference kernels and
 * activations, and one-sample scoring (scorer model) equals the batch
 * forward. */
static void test_forward_is_the_layers(void **state)
{
	const uint32_t f[] = { 6, 4 };
	struct fv_model_spec s;
	struct fv_model *m, *sc;
	struct fv_rng r;
	enum { B = 3 };
	float x[B * 16 * 3], y[B * 16 * 3], a[2][B * 16 * 6], sq[16 * 3];
	const float *w;

	(void)state;
	assert_int_equal(fv_model_spec_conv1d(16, 3, f, 2, 5, 2, FV_ACT_TANH, FV_ACT_LINEAR, &s),
			 0);
	m = fv_model_new(&s, B);
	sc = fv_model_new_scorer(&s, 1);
	assert_non_null(m);
	assert_non_null(sc);
	assert_null(fv_model_grads(sc));
	fv_model_init(m, 3);
	assert_int_equal(fv_model_set_params(sc, fv_model_params(m), fv_model_nparams(m)), 0);
	fv_rng_seed(&r, 4);
	fill_uniform(x, FV_ARRAY_SIZE(x), &r, -2, 2);
	for (size_t i = 0; i < fv_model_nparams(m); i++) /* biases matter too */
		fv_model_params(m)[i] += 0.05f;
	fv_model_set_params(sc, fv_model_params(m), fv_model_nparams(m));
	assert_int_equal(fv_model_forward(m, x, B, y), 0);

	/* By hand: c6k5s2, c4k5s2, t4k5s2, t6k5s2, c3k5s1 with tanh, linear out. */
	w = fv_model_params(m);
	{
		const float *in = x;
		uint32_t L = 16;
		size_t off = 0;

		for (uint32_t l = 0; l < s.n_layers; l++) {
			uint32_t cin = s.sizes[l], cout = s.sizes[l + 1], K = s.kernel[l];
			float *out = a[l % 2];
			size_t nw = (size_t)cin * K * cout;

			if (s.conv[l] == FV_CONV_UP)
				fv_deconv1d_fwd_ref(out, in, w + off, w + off + nw, B, L, cin, cout, K,
						    s.stride[l]);
			else
				fv_conv1d_fwd_ref(out, in, w + off, w + off + nw, B, L, cin, cout, K,
						  s.stride[l]);
			L = fv_conv1d_out_len(L, s.stride[l], s.conv[l] == FV_CONV_UP);
			if (l + 1 < s.n_layers)
				for (size_t i = 0; i < (size_t)B * L * cout; i++)
					out[i] = tanhf(out[i]);
			off += nw + cout;
			in = out;
		}
		assert_int_equal(L, 16);
		assert_true(max_abs_diff(y, in, FV_ARRAY_SIZE(y)) < 1e-5);
	}
	for (uint32_t n = 0; n < B; n++) {
		double want = 0.0;
		float sc1 = fv_model_score(sc, x + n * 48, sq);

		for (int i = 0; i < 48; i++) {
			double d = (double)y[n * 48 + i] - x[n * 48 + i];

			want += d * d;
			assert_float_equal(sq[i], d * d, 1e-5);
		}
		assert_float_equal(sc1, want / 48, 1e-5 * (want / 48));
	}
	fv_model_free(m);
	fv_model_free(sc);
}

/* The memory budget counts this kind's activations: they grow with the
 * batch and with the window; the scorer holds no gradients or moments. */
static void test_memory(void **state)
{
	struct fv_model_spec s, s2;
	struct fv_model_mem t1, t64, sc, w2;
	size_t P;

	(void)state;
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_CONV1D, 32, 5, &s), 0);
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_CONV1D, 64, 5, &s2), 0);
	P = fv_model_spec_nparams(&s);
	assert_int_equal(fv_model_spec_mem(&s, 1, true, &t1), 0);
	assert_int_equal(fv_model_spec_mem(&s, 64, true, &t64), 0);
	assert_int_equal(fv_model_spec_mem(&s, 1, false, &sc), 0);
	assert_int_equal(fv_model_spec_mem(&s2, 1, false, &w2), 0);
	assert_true(t1.params >= P * sizeof(float) && t1.params < P * sizeof(float) + 64);
	assert_int_equal(t1.grads, t1.params);
	assert_int_equal(t1.optim, 2 * t1.params);
	assert_int_equal(sc.grads, 0);
	assert_int_equal(sc.optim, 0);
	/* Per sample: layer outputs 16*32 + 8*16 + 16*16 + 32*32 + 32*5 floats. */
	assert_true(sc.act >= (16 * 32 + 8 * 16 + 16 * 16 + 32 * 32 + 32 * 5) * sizeof(float));
	assert_true(t64.act - t1.act >=
		    63 * (16 * 32 + 8 * 16 + 16 * 16 + 32 * 32 + 32 * 5) * sizeof(float));
	assert_true(w2.act > sc.act);
	assert_int_equal(w2.params, sc.params); /* same weights on any window */
	assert_int_equal(fv_model_spec_bytes(&s, 64), t64.total);
	{
		struct fv_model *m = fv_model_new(&s, 64);

		assert_non_null(m);
		fv_model_free(m);
	}
}

/* Same seed, same data: bit-identical parameters after training; another
 * seed gives other initial weights. */
static void test_deterministic(void **state)
{
	struct fv_model_spec s;
	struct fv_model *a, *b;
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
	struct fv_rng r;
	enum { N = 40, W = 8, C = 2 };
	float data[N * W * C], la, lb;

	(void)state;
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_CONV1D, W, C, &s), 0);
	s.noise = 0.1f; /* denoising works for this kind too */
	a = fv_model_new(&s, 8);
	b = fv_model_new(&s, 8);
	fv_rng_seed(&r, 9);
	fill_uniform(data, FV_ARRAY_SIZE(data), &r, -1, 1);
	fv_model_init(a, 77);
	fv_model_init(b, 78);
	assert_memory_not_equal(fv_model_params(a), fv_model_params(b),
				sizeof(float) * fv_model_nparams(a));
	fv_model_init(b, 77);
	assert_memory_equal(fv_model_params(a), fv_model_params(b),
			    sizeof(float) * fv_model_nparams(a));
	assert_int_equal(fv_model_train(a, data, N, 3, 8, &o, 5, &la), 0);
	assert_int_equal(fv_model_train(b, data, N, 3, 8, &o, 5, &lb), 0);
	assert_true(la == lb);
	assert_memory_equal(fv_model_params(a), fv_model_params(b),
			    sizeof(float) * fv_model_nparams(a));
	fv_model_free(a);
	fv_model_free(b);
}

/* What the temporal model is for: trained on windows of a two-tone signal
 * (random phase and amplitude), it reconstructs unseen windows of the same
 * signal well, and the very same values in the wrong order -- reversed
 * halves, or shuffled in time -- badly. Each channel's values, their
 * distribution and the window's mean are unchanged; only the order is. */
static void test_learns_order(void **state)
{
	/* Small enough to stay quick under qemu (test_arm64). */
	enum { W = 16, C = 2, N = 256, T = 64, EPOCHS = 12 };
	struct fv_model_spec s;
	struct fv_model *m;
	struct fv_train_opts o = FV_TRAIN_DEFAULTS;
	struct fv_rng r;
	float *train = falloc((size_t)N * W * C), *test = falloc((size_t)T * W * C);
	float bad[W * C], l0, l1;
	double ok = 0.0, swapped = 0.0, shuffled = 0.0;

	(void)state;
	fv_rng_seed(&r, 31);
	for (int set = 0; set < 2; set++) {
		float *d = set ? test : train;
		size_t n = set ? T : N;

		for (size_t i = 0; i < n; i++) {
			double ph = 6.2831853 * fv_rng_uniform(&r), amp = 0.7 + 0.6 * fv_rng_uniform(&r);

			for (uint32_t t = 0; t < W; t++) {
				d[(i * W + t) * C + 0] = (float)(amp * sin(ph + 0.35 * t));
				d[(i * W + t) * C + 1] = (float)(amp * cos(ph + 0.35 * t) * 0.5 +
								 0.3 * sin(2 * ph + 0.7 * t));
			}
		}
	}
	assert_int_equal(fv_model_spec_preset_wc(FV_PRESET_CONV1D, W, C, &s), 0);
	m = fv_model_new(&s, 32);
	assert_non_null(m);
	fv_model_init(m, 1);
	o.lr = 3e-3f;
	assert_int_equal(fv_model_train(m, train, N, 0, 32, &o, 2, &l0), 0);
	assert_int_equal(fv_model_train(m, train, N, EPOCHS, 32, &o, 2, &l1), 0);
	print_message("training loss %.4f -> %.4f\n", l0, l1);
	assert_true(l1 < 0.1f * l0);
	for (size_t i = 0; i < T; i++) {
		const float *x = test + i * W * C;

		ok += fv_model_score(m, x, NULL);
		/* the second half first */
		memcpy(bad, x + W / 2 * C, sizeof(float) * W / 2 * C);
		memcpy(bad + W / 2 * C, x, sizeof(float) * W / 2 * C);
		swapped += fv_model_score(m, bad, NULL);
		/* every step somewhere else (Fisher-Yates over the rows) */
		memcpy(bad, x, sizeof(bad));
		for (uint32_t t = W - 1; t > 0; t--) {
			uint32_t j = (uint32_t)fv_rng_below(&r, t + 1);

			for (uint32_t c = 0; c < C; c++) {
				float v = bad[t * C + c];

				bad[t * C + c] = bad[j * C + c];
				bad[j * C + c] = v;
			}
		}
		shuffled += fv_model_score(m, bad, NULL);
	}
	ok /= T, swapped /= T, shuffled /= T;
	print_message("mean score: in order %.4f, halves swapped %.4f, shuffled %.4f\n", ok,
		      swapped, shuffled);
	assert_true(swapped > 3 * ok);
	assert_true(shuffled > 10 * ok);
	free(train), free(test);
	fv_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_len),
		cmocka_unit_test(test_hand_values),
		cmocka_unit_test(test_pytorch_golden),
		cmocka_unit_test(test_kernels_match_reference),
		cmocka_unit_test(test_kernel_gradients),
		cmocka_unit_test(test_preset_spec),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_grad_each_act),
		cmocka_unit_test(test_grad_shapes),
		cmocka_unit_test(test_forward_is_the_layers),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_learns_order),
	};

	int rc;

	if (getenv("FV_TEST_FILTER")) /* e.g. FV_TEST_FILTER='*grad*' */
		cmocka_set_test_filter(getenv("FV_TEST_FILTER"));
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(scratch_buf);
	return rc;
}
