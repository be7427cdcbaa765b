/* FV_MODEL_CONV1D: the temporal autoencoder, a stack of 1-D convolutions
 * over the window's time axis. Strided convolutions shorten the sequence
 * and widen the channels (the encoder), transposed convolutions lengthen it
 * again (the decoder), and a last stride-1 convolution maps back to the
 * window's channels. Why this rather than an LSTM: docs/models.md.
 *
 * Spec (nn.h): sizes[l] are channel counts, sizes[0] == sizes[n_layers] ==
 * C; layer l is spec->conv[l] (FV_CONV_DOWN or FV_CONV_UP) with
 * kernel[l] taps and stride[l]; the input is spec->window steps of C
 * channels, time-major, which is how the agent lays a window out. The
 * parameter vector holds, layer by layer, W then b (conv W: (cout, K, cin),
 * deconv W: (cin, K, cout); see conv1d.h), so FedAvg, compression and
 * checksums see one flat vector as for the dense kind. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/conv1d.h"
#include "nn/kernels.h"
#include "nn/nn-int.h"

/* ---- spec ---- */

/* Time steps entering each layer (len[n_layers] = the output's); false if
 * a length reaches 0 or exceeds the bound. */
static bool lengths(const struct fv_model_spec *s, uint32_t len[FV_NN_MAX_LAYERS + 1])
{
	len[0] = s->window;
	for (uint32_t l = 0; l < s->n_layers; l++) {
		uint64_t n = s->conv[l] == FV_CONV_UP ? (uint64_t)len[l] * s->stride[l]
						      : (len[l] + s->stride[l] - 1) / s->stride[l];

		if (n == 0 || n > FV_NN_MAX_WINDOW)
			return false;
		len[l + 1] = (uint32_t)n;
	}
	return true;
}

static int conv1d_validate(const struct fv_model_spec *s)
{
	uint32_t len[FV_NN_MAX_LAYERS + 1];

	if (s->n_layers < 1 || s->n_layers > FV_NN_MAX_LAYERS)
		return -EDOM;
	if (s->window == 0 || s->window > FV_NN_MAX_WINDOW)
		return -EDOM;
	for (uint32_t l = 0; l <= s->n_layers; l++)
		if (s->sizes[l] == 0 || s->sizes[l] > FV_NN_MAX_CHANNELS)
			return s->sizes[l] ? -E2BIG : -EDOM;
	for (uint32_t l = 0; l < s->n_layers; l++) {
		if (s->acts[l] > FV_ACT_SIGMOID || s->conv[l] > FV_CONV_UP)
			return -EDOM;
		if (s->kernel[l] == 0 || s->kernel[l] % 2 == 0 || s->kernel[l] > FV_NN_MAX_KERNEL)
			return -EDOM;
		if (s->stride[l] == 0 || s->stride[l] > FV_NN_MAX_STRIDE)
			return -EDOM;
		if (s->dropout[l] != 0.0f)
			return -EDOM; /* no dropout in this kind */
	}
	if (s->sizes[0] != s->sizes[s->n_layers])
		return -EDOM;
	if (!lengths(s, len) || len[s->n_layers] != s->window)
		return -EDOM; /* the output must be the window again */
	for (uint32_t l = 0; l <= s->n_layers; l++)
		if ((uint64_t)len[l] * s->sizes[l] > FV_NN_MAX_CONV_ELEMS)
			return -E2BIG;
	return 0;
}

/* Channels <= 1024, kernel <= 31, <= 16 layers: no overflow. */
static size_t conv1d_nparams(const struct fv_model_spec *s)
{
	size_t n = 0;

	for (uint32_t l = 0; l < s->n_layers; l++)
		n += (size_t)s->sizes[l] * s->kernel[l] * s->sizes[l + 1] + s->sizes[l + 1];
	return n;
}

static uint32_t conv1d_input(const struct fv_model_spec *s)
{
	return s->window * s->sizes[0];
}

int fv_model_spec_conv1d(uint32_t window, uint32_t channels, const uint32_t *filters,
			 uint32_t n, uint32_t kernel, uint32_t stride, enum fv_act act,
			 enum fv_act out_act, struct fv_model_spec *ret_spec)
{
	struct fv_model_spec s;
	uint32_t l = 0;
	int r;

	if (window == 0 || channels == 0 || n == 0 || !filters)
		return -EINVAL;
	if ((unsigned)act > FV_ACT_SIGMOID || (unsigned)out_act > FV_ACT_SIGMOID)
		return -EINVAL;
	if (2 * n + 1 > FV_NN_MAX_LAYERS)
		return -E2BIG;
	if (kernel > 255 || stride > 255)
		return -EDOM;
	memset(&s, 0, sizeof(s));
	s.kind = FV_MODEL_CONV1D;
	s.window = window;
	s.sizes[0] = channels;
	/* encoder: n strided convs C -> f0 -> ... -> f(n-1) */
	for (uint32_t i = 0; i < n; i++, l++) {
		if (filters[i] == 0)
			return -EINVAL;
		s.conv[l] = FV_CONV_DOWN;
		s.sizes[l + 1] = filters[i];
	}
	/* decoder: n transposed convs f(n-1) -> f(n-1) -> ... -> f0 */
	for (uint32_t i = n; i-- > 0; l++) {
		s.conv[l] = FV_CONV_UP;
		s.sizes[l + 1] = filters[i];
	}
	/* out: stride-1 conv back to C channels */
	s.conv[l] = FV_CONV_DOWN;
	s.sizes[l + 1] = channels;
	s.n_layers = l + 1;
	for (l = 0; l < s.n_layers; l++) {
		s.kernel[l] = (uint8_t)kernel;
		s.stride[l] = (uint8_t)(l + 1 < s.n_layers ? stride : 1);
		s.acts[l] = (uint8_t)(l + 1 < s.n_layers ? act : out_act);
	}
	r = fv_model_spec_validate(&s);
	if (r < 0)
		return r;
	*ret_spec = s;
	return 0;
}

int fv_nn_conv1d_format(const struct fv_model_spec *s, char *buf, size_t len)
{
	size_t used;
	int n = snprintf(buf, len, "conv1d %ux%u:", s->window, s->sizes[0]);

	if (n < 0)
		return n;
	used = (size_t)n;
	for (uint32_t l = 0; l < s->n_layers && l < FV_NN_MAX_LAYERS; l++) {
		n = snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0,
			     "%s%c%uk%us%u", l ? "-" : " ", s->conv[l] == FV_CONV_UP ? 't' : 'c',
			     s->sizes[l + 1], s->kernel[l], s->stride[l]);
		if (n < 0)
			return n;
		used += (size_t)n;
	}
	return (int)used;
}

/* ---- layout and init ---- */

static void conv1d_layout(struct fv_model *m, struct fv_nn_arena *a)
{
	const struct fv_model_spec *s = &m->spec;
	struct fv_nn_conv1d *c = &m->conv1d;
	uint32_t B = m->max_batch;
	size_t off = 0, scratch = 0;

	lengths(s, c->len); /* the spec is valid */
	c->max_elems = 0;
	for (uint32_t l = 0; l <= s->n_layers; l++)
		c->max_elems = FV_MAX(c->max_elems, (size_t)c->len[l] * s->sizes[l]);
	for (uint32_t l = 0; l < s->n_layers; l++) {
		c->w_off[l] = off;
		off += (size_t)s->sizes[l] * s->kernel[l] * s->sizes[l + 1];
		c->b_off[l] = off;
		off += s->sizes[l + 1];
		c->act[l] = fv_nn_arena_take(a, B, (size_t)c->len[l + 1] * s->sizes[l + 1]);
		scratch = FV_MAX(scratch, fv_conv1d_scratch(B, c->len[l], s->sizes[l], s->sizes[l + 1],
							    s->kernel[l], s->stride[l],
							    s->conv[l] == FV_CONV_UP));
	}
	c->scratch = fv_nn_arena_take(a, scratch, 1);
	c->delta[0] = c->delta[1] = NULL;
	if (m->train) {
		c->delta[0] = fv_nn_arena_take(a, B, c->max_elems);
		c->delta[1] = fv_nn_arena_take(a, B, c->max_elems);
	}
}

/* Glorot/He uniform as for dense layers, with the fan-in and fan-out of a
 * tap-weighted layer: a conv output sees K cin inputs, a deconv output
 * about K cin / s (each input step spreads over K outputs, s apart). */
static void conv1d_init(struct fv_model *m, struct fv_rng *rng)
{
	const struct fv_model_spec *s = &m->spec;

	for (uint32_t l = 0; l < s->n_layers; l++) {
		double K = s->kernel[l], cin = s->sizes[l], cout = s->sizes[l + 1];
		double div = s->conv[l] == FV_CONV_UP ? s->stride[l] : 1.0;
		double fan_in = fmax(1.0, K * cin / div), fan_out = fmax(1.0, K * cout / div);
		double lim = s->acts[l] == FV_ACT_RELU ? sqrt(6.0 / fan_in)
						       : sqrt(6.0 / (fan_in + fan_out));
		size_t nw = (size_t)s->sizes[l] * s->kernel[l] * s->sizes[l + 1];
		float *w = m->params + m->conv1d.w_off[l];

		for (size_t i = 0; i < nw; i++)
			w[i] = (float)((2.0 * fv_rng_uniform(rng) - 1.0) * lim);
		memset(m->params + m->conv1d.b_off[l], 0, sizeof(float) * s->sizes[l + 1]);
	}
}

/* ---- forward / backward ---- */

static const float *conv1d_forward(struct fv_model *m, const float *x, uint32_t B, bool train)
{
	const struct fv_model_spec *s = &m->spec;
	struct fv_nn_conv1d *c = &m->conv1d;
	const struct fv_nn_kernels *k = fv_nn_kernels();
	const float *a = x;

	(void)train; /* no dropout: training and scoring run the same layers */
	for (uint32_t l = 0; l < s->n_layers; l++) {
		const float *w = m->params + c->w_off[l], *b = m->params + c->b_off[l];

		if (s->conv[l] == FV_CONV_UP)
			fv_deconv1d_fwd(c->act[l], a, w, b, B, c->len[l], s->sizes[l], s->sizes[l + 1],
					s->kernel[l], s->stride[l], c->scratch);
		else
			fv_conv1d_fwd(c->act[l], a, w, b, B, c->len[l], s->sizes[l], s->sizes[l + 1],
				      s->kernel[l], s->stride[l], c->scratch);
		k->act(c->act[l], (size_t)B * c->len[l + 1] * s->sizes[l + 1], s->acts[l]);
		a = c->act[l];
	}
	return a;
}

/* The two delta buffers alternate: d holds the gradient at layer l's
 * output, the layer's backward writes its input's gradient into dprev. */
static void conv1d_backward(struct fv_model *m, const float *x, const float *target, uint32_t B,
			    bool train, float wd, double *ret_sse, double *ret_l2)
{
	const struct fv_model_spec *s = &m->spec;
	struct fv_nn_conv1d *c = &m->conv1d;
	uint32_t L = s->n_layers;
	size_t total = (size_t)B * conv1d_input(s);
	float *d = c->delta[0], *dprev = c->delta[1];
	double l2 = 0.0;

	(void)train;
	*ret_sse = fv_nn_mse_grad(d, c->act[L - 1], target, total, (float)(2.0 / (double)total));
	for (uint32_t l = L; l-- > 0;) {
		uint32_t cin = s->sizes[l], cout = s->sizes[l + 1], K = s->kernel[l];
		const float *in = l > 0 ? c->act[l - 1] : x, *w = m->params + c->w_off[l];
		float *dw = m->grads + c->w_off[l], *db = m->grads + c->b_off[l];
		float *dx = l > 0 ? dprev : NULL; /* the input's gradient is not needed */
		size_t nw = (size_t)cin * K * cout;

		fv_nn_act_backward(d, c->act[l], (size_t)B * c->len[l + 1] * cout,
				   (enum fv_act)s->acts[l]);
		if (s->conv[l] == FV_CONV_UP)
			fv_deconv1d_bwd(dx, dw, db, d, in, w, B, c->len[l], cin, cout, K,
					s->stride[l], c->scratch);
		else
			fv_conv1d_bwd(dx, dw, db, d, in, w, B, c->len[l], cin, cout, K, s->stride[l],
				      c->scratch);
		if (wd > 0.0f)
			for (size_t i = 0; i < nw; i++) {
				dw[i] += wd * w[i];
				l2 += (double)w[i] * w[i];
			}
		if (l > 0) {
			float *t = d;

			d = dprev;
			dprev = t;
		}
	}
	*ret_l2 = l2;
}

const struct fv_nn_kind fv_nn_kind_conv1d = {
	.name = "conv1d",
	.validate = conv1d_validate,
	.nparams = conv1d_nparams,
	.input = conv1d_input,
	.layout = conv1d_layout,
	.init = conv1d_init,
	.forward = conv1d_forward,
	.backward = conv1d_backward,
	.draw_masks = NULL,
};
