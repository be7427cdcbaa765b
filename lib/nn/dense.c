/* FV_MODEL_DENSE: a stack of fully connected layers with activations and
 * (while training) inverted dropout on the hidden outputs.
 *
 * Forward and backward are sequences of calls into the kernels of
 * lib/nn/kernels.h (register-blocked GEMM, GEMV), the activation loops are
 * here. Batches of FWD_T_MIN_BATCH rows or more run the forward pass as a
 * GEMM on W^T (transposed into scratch first: one pass over W amortised
 * over the rows); fewer rows (scoring) use dot products on W directly. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "nn/kernels.h"
#include "nn/nn-int.h"

#define FWD_T_MIN_BATCH 4u

/* ---- activations ---- */

/* Shared with the other kinds through nn-int.h. */
void fv_nn_act_backward(float *restrict d, const float *restrict y, size_t n, enum fv_act act)
{
	switch (act) {
	case FV_ACT_LINEAR:
		break;
	case FV_ACT_RELU:
		for (size_t i = 0; i < n; i++)
			d[i] = y[i] > 0.0f ? d[i] : 0.0f;
		break;
	case FV_ACT_TANH:
		for (size_t i = 0; i < n; i++)
			d[i] *= 1.0f - y[i] * y[i];
		break;
	case FV_ACT_SIGMOID:
		for (size_t i = 0; i < n; i++)
			d[i] *= y[i] * (1.0f - y[i]);
		break;
	}
}

/* ---- spec ---- */

static int dense_validate(const struct fv_model_spec *spec)
{
	if (spec->n_layers < 1 || spec->n_layers > FV_NN_MAX_LAYERS)
		return -EDOM;
	for (uint32_t l = 0; l <= spec->n_layers; l++) {
		if (spec->sizes[l] == 0)
			return -EDOM;
		if (spec->sizes[l] > FV_NN_MAX_WIDTH)
			return -E2BIG;
	}
	for (uint32_t l = 0; l < spec->n_layers; l++) {
		if (spec->acts[l] > FV_ACT_SIGMOID)
			return -EDOM;
		if (!(spec->dropout[l] >= 0.0f && spec->dropout[l] <= FV_NN_MAX_DROPOUT))
			return -EDOM;
	}
	if (spec->dropout[spec->n_layers - 1] != 0.0f)
		return -EDOM; /* the reconstruction itself is never dropped */
	if (spec->sizes[0] != spec->sizes[spec->n_layers])
		return -EDOM;
	return 0;
}

/* Widths <= 8192 and <= 16 layers: this sum cannot overflow size_t. */
static size_t dense_nparams(const struct fv_model_spec *spec)
{
	size_t n = 0;

	for (uint32_t l = 0; l < spec->n_layers; l++)
		n += (size_t)spec->sizes[l + 1] * spec->sizes[l] + spec->sizes[l + 1];
	return n;
}

static uint32_t dense_input(const struct fv_model_spec *spec)
{
	return spec->sizes[0];
}

static void dense_layout(struct fv_model *m, struct fv_nn_arena *a)
{
	const struct fv_model_spec *s = &m->spec;
	struct fv_nn_dense *d = &m->dense;
	uint32_t B = m->max_batch;
	size_t off = 0, most = 0;

	d->max_width = 0;
	for (uint32_t l = 0; l <= s->n_layers; l++)
		d->max_width = FV_MAX(d->max_width, s->sizes[l]);
	for (uint32_t l = 0; l < s->n_layers; l++) {
		d->w_off[l] = off;
		off += (size_t)s->sizes[l + 1] * s->sizes[l];
		d->b_off[l] = off;
		off += s->sizes[l + 1];
		most = FV_MAX(most, (size_t)s->sizes[l] * s->sizes[l + 1]);
	}
	for (uint32_t l = 0; l < s->n_layers; l++) {
		d->act[l] = fv_nn_arena_take(a, B, s->sizes[l + 1]);
		d->mask[l] = d->drop[l] = NULL;
		if (m->train && s->dropout[l] > 0.0f) {
			d->mask[l] = fv_nn_arena_take(a, B, s->sizes[l + 1]);
			d->drop[l] = fv_nn_arena_take(a, B, s->sizes[l + 1]);
		}
	}
	d->delta[0] = d->delta[1] = NULL;
	if (m->train) {
		d->delta[0] = fv_nn_arena_take(a, B, d->max_width);
		d->delta[1] = fv_nn_arena_take(a, B, d->max_width);
	}
	d->wt = B >= FWD_T_MIN_BATCH ? fv_nn_arena_take(a, most, 1) : NULL;
}

/* Draws weights layer by layer in parameter order, so the result depends
 * only on the spec and the RNG's seed. */
static void dense_init(struct fv_model *m, struct fv_rng *rng)
{
	const struct fv_model_spec *s = &m->spec;

	for (uint32_t l = 0; l < s->n_layers; l++) {
		uint32_t in = s->sizes[l], out = s->sizes[l + 1];
		size_t nw = (size_t)in * out;
		float *w = m->params + m->dense.w_off[l];
		/* Uniform(-a, a) has variance a^2/3: Glorot a = sqrt(6/(in+out)),
		 * He a = sqrt(6/in) (variance 2/in). */
		double lim = s->acts[l] == FV_ACT_RELU ? sqrt(6.0 / in)
						       : sqrt(6.0 / ((double)in + out));

		for (size_t i = 0; i < nw; i++)
			w[i] = (float)((2.0 * fv_rng_uniform(rng) - 1.0) * lim);
		memset(m->params + m->dense.b_off[l], 0, sizeof(float) * out);
	}
}

/* The input of layer l: x for the first, else the previous layer's output
 * (after dropout while training). */
static const float *layer_input(const struct fv_model *m, const float *x, uint32_t l, bool train)
{
	if (l == 0)
		return x;
	if (train && m->dense.mask[l - 1])
		return m->dense.drop[l - 1];
	return m->dense.act[l - 1];
}

/* x: (B, in) -> act[l]: (B, sizes[l+1]) for every layer. */
static const float *dense_forward(struct fv_model *m, const float *x, uint32_t B, bool train)
{
	const struct fv_model_spec *s = &m->spec;
	const struct fv_nn_kernels *k = fv_nn_kernels();
	struct fv_nn_dense *d = &m->dense;

	for (uint32_t l = 0; l < s->n_layers; l++) {
		uint32_t in = s->sizes[l], out = s->sizes[l + 1];
		const float *w = m->params + d->w_off[l], *b = m->params + d->b_off[l];
		const float *a = layer_input(m, x, l, train);
		size_t n = (size_t)B * out;

		if (B >= FWD_T_MIN_BATCH) {
			/* y (B, out) = x (B, in) W^T (in, out) + b */
			fv_nn_transpose(d->wt, w, in, out);
			k->gemm(d->act[l], a, in, 1, d->wt, out, b, B, out, in);
		} else {
			for (uint32_t r = 0; r < B; r++)
				k->gemv(d->act[l] + (size_t)r * out, w, a + (size_t)r * in, b, out, in);
		}
		k->act(d->act[l], n, s->acts[l]);
		if (train && d->mask[l]) {
			const float *restrict mk = d->mask[l], *restrict y = d->act[l];
			float *restrict o = d->drop[l];

			for (size_t i = 0; i < n; i++)
				o[i] = y[i] * mk[i];
		}
	}
	return d->act[s->n_layers - 1];
}

/* Backprop layer by layer through the two delta buffers. */
static void dense_backward(struct fv_model *m, const float *x, const float *target, uint32_t B,
			   bool train, float wd, double *ret_sse, double *ret_l2)
{
	const struct fv_model_spec *s = &m->spec;
	const struct fv_nn_kernels *k = fv_nn_kernels();
	struct fv_nn_dense *dn = &m->dense;
	uint32_t L = s->n_layers, n = s->sizes[0];
	size_t total = (size_t)B * n;
	float *d = dn->delta[0], *dprev = dn->delta[1];
	double l2 = 0.0;

	/* loss = 1/(B n) sum (y - t)^2, dloss/dy = 2 (y - t) / (B n). */
	*ret_sse = fv_nn_mse_grad(d, dn->act[L - 1], target, total, (float)(2.0 / (double)total));

	for (uint32_t l = L; l-- > 0;) {
		uint32_t in = s->sizes[l], out = s->sizes[l + 1];
		size_t nout = (size_t)B * out;
		float *dw = m->grads + dn->w_off[l];
		const float *w = m->params + dn->w_off[l];

		/* d is the gradient of what layer l passed on: through the mask
		 * first (zero where dropped), then the activation. */
		if (train && dn->mask[l]) {
			const float *restrict mk = dn->mask[l];

			for (size_t i = 0; i < nout; i++)
				d[i] *= mk[i];
		}
		fv_nn_act_backward(d, dn->act[l], nout, (enum fv_act)s->acts[l]);
		/* dW (out, in) = d^T (out, B) x (B, in); db = column sums of d */
		k->gemm(dw, d, 1, out, layer_input(m, x, l, train), in, NULL, out, in, B);
		{
			float *restrict db = m->grads + dn->b_off[l];

			memset(db, 0, sizeof(float) * out);
			for (uint32_t r = 0; r < B; r++)
				for (uint32_t o = 0; o < out; o++)
					db[o] += d[(size_t)r * out + o];
		}
		if (wd > 0.0f) {
			size_t nw = (size_t)in * out;

			for (size_t i = 0; i < nw; i++) {
				dw[i] += wd * w[i];
				l2 += (double)w[i] * w[i];
			}
		}
		if (l > 0) {
			float *t;

			/* dx (B, in) = d (B, out) W (out, in) */
			k->gemm(dprev, d, out, 1, w, in, NULL, B, in, out);
			t = d;
			d = dprev;
			dprev = t;
		}
	}
	*ret_l2 = l2;
}

static void dense_draw_masks(struct fv_model *m, uint32_t B)
{
	const struct fv_model_spec *s = &m->spec;

	for (uint32_t l = 0; l < s->n_layers; l++)
		if (m->dense.mask[l])
			fv_nn_rng_dropout(m, m->dense.mask[l], (size_t)B * s->sizes[l + 1],
					  s->dropout[l]);
}

const struct fv_nn_kind fv_nn_kind_dense = {
	.name = "dense",
	.validate = dense_validate,
	.nparams = dense_nparams,
	.input = dense_input,
	.layout = dense_layout,
	.init = dense_init,
	.forward = dense_forward,
	.backward = dense_backward,
	.draw_masks = dense_draw_masks,
};
