/* Dense autoencoders: specs, forward/backward kernels, MSE loss, Adam and
 * the mini-batch training loop.
 *
 * Everything a model needs is carved out of one allocation made by
 * fv_model_new() (see layout()), so forward, grad, step and score never
 * allocate; fv_model_train() allocates only its shuffle index.
 *
 * The kernels are written for gcc -O3 without -ffast-math (so results are
 * deterministic for a given build): inner loops run over contiguous memory
 * through restrict pointers. Batches use linear combinations of rows with
 * register-resident accumulators (lincomb(); the forward pass transposes W
 * into scratch first); single samples (scoring) use dot products with 8
 * independent partial sums. Each fast kernel has a plain reference loop or
 * a double-precision check beside it in tests/unit/test_nn.c. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/nn.h"
#include "fedvigil/util.h"
#include "nn/kernels.h"

#define ALIGN 64u                 /* bytes; every array starts on a cache line */
#define FALIGN (ALIGN / sizeof(float))
/* Batches of at least this many rows go through fv_nn_matmul_fwd_t(): the
 * transpose of W it needs costs one pass over W, amortised over the rows.
 * Smaller batches (scoring) use the blocked dot products directly. */
#define FWD_T_MIN_BATCH 4u

struct fv_model {
	struct fv_model_spec spec;           /* architecture (validated) */
	uint32_t max_batch;                  /* rows the activation buffers hold */
	uint32_t max_width;                  /* widest layer */
	size_t nparams;                      /* weights + biases */
	size_t w_off[FV_NN_MAX_LAYERS];      /* offset of layer l's W in params */
	size_t b_off[FV_NN_MAX_LAYERS];      /* offset of layer l's b in params */
	float *params;                       /* (nparams) */
	float *grads;                        /* (nparams), same layout */
	float *adam_m;                       /* (nparams) first moments */
	float *adam_v;                       /* (nparams) second moments */
	uint64_t adam_t;                     /* Adam steps taken since reset */
	float *act[FV_NN_MAX_LAYERS];        /* (max_batch, sizes[l+1]) outputs of layer l */
	float *delta[2];                     /* (max_batch, max_width) backprop scratch */
	float *batch;                        /* (max_batch, sizes[0]) training rows */
	float *wt;                           /* (max in*out) W^T scratch; NULL if
					      * max_batch < FWD_T_MIN_BATCH */
};

/* ---- activations ---- */

static const char *const act_names[] = {
	[FV_ACT_LINEAR] = "linear",
	[FV_ACT_RELU] = "relu",
	[FV_ACT_TANH] = "tanh",
	[FV_ACT_SIGMOID] = "sigmoid",
};

int fv_act_parse(const char *s, enum fv_act *ret_act)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < FV_ARRAY_SIZE(act_names); i++) {
		if (strcmp(s, act_names[i]) == 0) {
			*ret_act = (enum fv_act)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *fv_act_name(enum fv_act act)
{
	if ((unsigned)act >= FV_ARRAY_SIZE(act_names))
		return "unknown";
	return act_names[act];
}

/* y: (n) in place, y = act(y). */
static void act_apply(float *restrict y, size_t n, enum fv_act act)
{
	switch (act) {
	case FV_ACT_LINEAR:
		break;
	case FV_ACT_RELU:
		for (size_t i = 0; i < n; i++)
			y[i] = y[i] > 0.0f ? y[i] : 0.0f;
		break;
	case FV_ACT_TANH:
		for (size_t i = 0; i < n; i++)
			y[i] = tanhf(y[i]);
		break;
	case FV_ACT_SIGMOID:
		for (size_t i = 0; i < n; i++)
			y[i] = 1.0f / (1.0f + expf(-y[i]));
		break;
	}
}

/* Chain rule through the activation, written in terms of its output y.
 * d: (n) in place, y: (n); d = d * act'(z). */
static void act_backward(float *restrict d, const float *restrict y, size_t n, enum fv_act act)
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

/* ---- kernels ---- */

void fv_nn_matmul_fwd_ref(float *y, const float *x, const float *w, const float *b,
			  uint32_t B, uint32_t in, uint32_t out)
{
	for (uint32_t s = 0; s < B; s++)
		for (uint32_t o = 0; o < out; o++) {
			float acc = b[o];

			for (uint32_t i = 0; i < in; i++)
				acc += x[(size_t)s * in + i] * w[(size_t)o * in + i];
			y[(size_t)s * out + o] = acc;
		}
}

#define LANES 8

static inline float hsum(const float a[LANES])
{
	return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* One row of x against four rows of w: each x element is loaded once for
 * four outputs, and each output keeps LANES partial sums, which gcc maps to
 * vector registers. */
static inline void dot4(float *restrict ret, const float *restrict x, const float *restrict w0,
			const float *restrict w1, const float *restrict w2,
			const float *restrict w3, uint32_t in)
{
	float a0[LANES] = { 0 }, a1[LANES] = { 0 }, a2[LANES] = { 0 }, a3[LANES] = { 0 };
	uint32_t n8 = in - in % LANES, i;

	for (i = 0; i < n8; i += LANES)
		for (uint32_t k = 0; k < LANES; k++) {
			float xv = x[i + k];

			a0[k] += xv * w0[i + k];
			a1[k] += xv * w1[i + k];
			a2[k] += xv * w2[i + k];
			a3[k] += xv * w3[i + k];
		}
	float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);

	for (; i < in; i++) {
		s0 += x[i] * w0[i];
		s1 += x[i] * w1[i];
		s2 += x[i] * w2[i];
		s3 += x[i] * w3[i];
	}
	ret[0] = s0;
	ret[1] = s1;
	ret[2] = s2;
	ret[3] = s3;
}

static inline float dot1(const float *restrict x, const float *restrict w, uint32_t in)
{
	float a[LANES] = { 0 };
	uint32_t n8 = in - in % LANES, i;

	for (i = 0; i < n8; i += LANES)
		for (uint32_t k = 0; k < LANES; k++)
			a[k] += x[i + k] * w[i + k];
	float s = hsum(a);

	for (; i < in; i++)
		s += x[i] * w[i];
	return s;
}

void fv_nn_matmul_fwd(float *restrict y, const float *restrict x, const float *restrict w,
		      const float *restrict b, uint32_t B, uint32_t in, uint32_t out)
{
	for (uint32_t s = 0; s < B; s++) {
		const float *xs = x + (size_t)s * in;
		float *ys = y + (size_t)s * out;
		uint32_t o = 0;

		for (; o + 4 <= out; o += 4) {
			const float *w0 = w + (size_t)o * in;

			dot4(ys + o, xs, w0, w0 + in, w0 + 2 * (size_t)in, w0 + 3 * (size_t)in, in);
			ys[o] += b[o];
			ys[o + 1] += b[o + 1];
			ys[o + 2] += b[o + 2];
			ys[o + 3] += b[o + 3];
		}
		for (; o < out; o++)
			ys[o] = dot1(xs, w + (size_t)o * in, in) + b[o];
	}
}

/* The three batch kernels share one shape: a linear combination of K rows,
 *   dst[j] = init[j] + sum_k a[k * astride] * rows[k * rstride + j],  j < len,
 * summed in k order (init NULL means 0). Columns are done CHUNK at a time
 * with the accumulator in registers, so each step of k is one load and one
 * multiply-add per element. Zero coefficients are skipped (ReLU gradients
 * are mostly zero); that changes nothing for finite inputs. */
#define CHUNK 32

static inline void lincomb(float *restrict dst, const float *restrict init,
			   const float *restrict a, size_t astride,
			   const float *restrict rows, size_t rstride, uint32_t K, uint32_t len)
{
	uint32_t j0 = 0;

	for (; j0 + CHUNK <= len; j0 += CHUNK) {
		float acc[CHUNK];

		for (uint32_t j = 0; j < CHUNK; j++)
			acc[j] = init ? init[j0 + j] : 0.0f;
		for (uint32_t k = 0; k < K; k++) {
			float c = a[k * astride];
			const float *restrict r = rows + k * rstride + j0;

			if (c == 0.0f)
				continue;
			for (uint32_t j = 0; j < CHUNK; j++)
				acc[j] += c * r[j];
		}
		memcpy(dst + j0, acc, sizeof(acc));
	}
	if (j0 < len) {
		uint32_t n = len - j0;
		float acc[CHUNK];

		for (uint32_t j = 0; j < n; j++)
			acc[j] = init ? init[j0 + j] : 0.0f;
		for (uint32_t k = 0; k < K; k++) {
			float c = a[k * astride];
			const float *restrict r = rows + k * rstride + j0;

			if (c == 0.0f)
				continue;
			for (uint32_t j = 0; j < n; j++)
				acc[j] += c * r[j];
		}
		memcpy(dst + j0, acc, sizeof(float) * n);
	}
}

void fv_nn_matmul_fwd_t(float *restrict y, const float *restrict x, const float *restrict wt,
			const float *restrict b, uint32_t B, uint32_t in, uint32_t out)
{
	/* y[s, :] = b + sum_i x[s, i] wt[i, :]: the same operations in the same
	 * order as fv_nn_matmul_fwd_ref(). */
	for (uint32_t s = 0; s < B; s++)
		lincomb(y + (size_t)s * out, b, x + (size_t)s * in, 1, wt, out, in, out);
}

void fv_nn_transpose(float *restrict wt, const float *restrict w, uint32_t in, uint32_t out)
{
	enum { T = 16 }; /* tile edge: both sides of a tile stay in L1 */

	for (uint32_t o0 = 0; o0 < out; o0 += T)
		for (uint32_t i0 = 0; i0 < in; i0 += T) {
			uint32_t o1 = FV_MIN(o0 + T, out), i1 = FV_MIN(i0 + T, in);

			for (uint32_t o = o0; o < o1; o++)
				for (uint32_t i = i0; i < i1; i++)
					wt[(size_t)i * out + o] = w[(size_t)o * in + i];
		}
}

void fv_nn_matmul_bwd_w(float *restrict dw, float *restrict db, const float *restrict dy,
			const float *restrict x, uint32_t B, uint32_t in, uint32_t out)
{
	/* dw[o, :] = sum_s dy[s, o] x[s, :] */
	for (uint32_t o = 0; o < out; o++)
		lincomb(dw + (size_t)o * in, NULL, dy + o, out, x, in, B, in);
	memset(db, 0, sizeof(float) * out);
	for (uint32_t s = 0; s < B; s++)
		for (uint32_t o = 0; o < out; o++)
			db[o] += dy[(size_t)s * out + o];
}

void fv_nn_matmul_bwd_x(float *restrict dx, const float *restrict dy, const float *restrict w,
			uint32_t B, uint32_t in, uint32_t out)
{
	/* dx[s, :] = sum_o dy[s, o] w[o, :] */
	for (uint32_t s = 0; s < B; s++)
		lincomb(dx + (size_t)s * in, NULL, dy + (size_t)s * out, 1, w, in, out, in);
}

/* ---- specs ---- */

size_t fv_model_spec_nparams(const struct fv_model_spec *spec)
{
	size_t n = 0;

	if (!spec || spec->n_layers > FV_NN_MAX_LAYERS)
		return 0;
	for (uint32_t l = 0; l < spec->n_layers; l++)
		n += (size_t)spec->sizes[l + 1] * spec->sizes[l] + spec->sizes[l + 1];
	return n;
}

int fv_model_spec_validate(const struct fv_model_spec *spec)
{
	if (!spec || spec->n_layers < 1 || spec->n_layers > FV_NN_MAX_LAYERS)
		return -EDOM;
	for (uint32_t l = 0; l <= spec->n_layers; l++) {
		if (spec->sizes[l] == 0)
			return -EDOM;
		if (spec->sizes[l] > FV_NN_MAX_WIDTH)
			return -E2BIG;
	}
	for (uint32_t l = 0; l < spec->n_layers; l++)
		if (spec->acts[l] > FV_ACT_SIGMOID)
			return -EDOM;
	if (spec->sizes[0] != spec->sizes[spec->n_layers])
		return -EDOM;
	/* Widths <= 8192 and <= 16 layers: this sum cannot overflow size_t. */
	if (fv_model_spec_nparams(spec) > FV_NN_MAX_PARAMS)
		return -E2BIG;
	return 0;
}

int fv_model_spec_autoencoder(uint32_t input, const uint32_t *hidden, uint32_t n_hidden,
			      enum fv_act act, enum fv_act out_act,
			      struct fv_model_spec *ret_spec)
{
	struct fv_model_spec s;

	if (input == 0 || (n_hidden > 0 && !hidden))
		return -EINVAL;
	if ((unsigned)act > FV_ACT_SIGMOID || (unsigned)out_act > FV_ACT_SIGMOID)
		return -EINVAL;
	if (n_hidden + 1 > FV_NN_MAX_LAYERS || input > FV_NN_MAX_WIDTH)
		return -E2BIG;
	memset(&s, 0, sizeof(s));
	s.n_layers = n_hidden + 1;
	s.sizes[0] = input;
	for (uint32_t i = 0; i < n_hidden; i++) {
		if (hidden[i] == 0)
			return -EINVAL;
		if (hidden[i] > FV_NN_MAX_WIDTH)
			return -E2BIG;
		s.sizes[i + 1] = hidden[i];
		s.acts[i] = (uint8_t)act;
	}
	s.sizes[n_hidden + 1] = input;
	s.acts[n_hidden] = (uint8_t)out_act;
	if (fv_model_spec_validate(&s) < 0)
		return -E2BIG; /* only the parameter budget is left to fail */
	*ret_spec = s;
	return 0;
}

/* Accepts decimal widths 1..FV_NN_MAX_WIDTH separated by commas, with
 * optional blanks around each; hidden[] is untouched on failure. */
int fv_model_hidden_parse(const char *s, uint32_t *hidden, uint32_t max)
{
	uint32_t tmp[FV_NN_MAX_LAYERS];
	uint32_t n = 0;
	const char *p = s;

	if (!s || !hidden)
		return -EINVAL;
	for (;;) {
		unsigned long v = 0;
		bool any = false;

		while (*p == ' ' || *p == '\t')
			p++;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > FV_NN_MAX_WIDTH)
				return -EINVAL;
			any = true;
			p++;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (!any || v == 0 || n >= max || n >= FV_ARRAY_SIZE(tmp))
			return -EINVAL;
		tmp[n++] = (uint32_t)v;
		if (*p == '\0')
			break;
		if (*p != ',')
			return -EINVAL;
		p++;
	}
	memcpy(hidden, tmp, sizeof(uint32_t) * n);
	return (int)n;
}

/* Offsets, in floats from the start of the float area, of each array of a
 * model with this (valid) spec and batch size; returns the total float count
 * or 0 when the sizes overflow. Each array is rounded up to a cache line. */
struct layout {
	size_t params, grads, m, v;
	size_t act[FV_NN_MAX_LAYERS];
	size_t delta[2];
	size_t batch;
	size_t wt;
	size_t total;
	uint32_t max_width;
};

static bool add_array(size_t *cursor, size_t n, size_t *ret_off)
{
	size_t r = (n + FALIGN - 1) / FALIGN * FALIGN;

	if (r < n || *cursor > SIZE_MAX / sizeof(float) - r)
		return false;
	*ret_off = *cursor;
	*cursor += r;
	return true;
}

static bool mul_ok(size_t a, size_t b, size_t *ret)
{
	if (a != 0 && b > SIZE_MAX / a)
		return false;
	*ret = a * b;
	return true;
}

static bool layout(const struct fv_model_spec *spec, uint32_t B, struct layout *L)
{
	size_t cur = 0, P = fv_model_spec_nparams(spec), n;

	memset(L, 0, sizeof(*L));
	for (uint32_t l = 0; l <= spec->n_layers; l++)
		L->max_width = FV_MAX(L->max_width, spec->sizes[l]);
	if (!add_array(&cur, P, &L->params) || !add_array(&cur, P, &L->grads) ||
	    !add_array(&cur, P, &L->m) || !add_array(&cur, P, &L->v))
		return false;
	for (uint32_t l = 0; l < spec->n_layers; l++)
		if (!mul_ok(B, spec->sizes[l + 1], &n) || !add_array(&cur, n, &L->act[l]))
			return false;
	if (!mul_ok(B, L->max_width, &n) || !add_array(&cur, n, &L->delta[0]) ||
	    !add_array(&cur, n, &L->delta[1]))
		return false;
	if (!mul_ok(B, spec->sizes[0], &n) || !add_array(&cur, n, &L->batch))
		return false;
	if (B >= FWD_T_MIN_BATCH) {
		size_t most = 0;

		for (uint32_t l = 0; l < spec->n_layers; l++)
			most = FV_MAX(most, (size_t)spec->sizes[l] * spec->sizes[l + 1]);
		if (!add_array(&cur, most, &L->wt))
			return false;
	}
	L->total = cur;
	return true;
}

/* The struct, rounded up to a cache line, followed by the float area. */
static size_t header_bytes(void)
{
	return (sizeof(struct fv_model) + ALIGN - 1) / ALIGN * ALIGN;
}

/* Exactly what fv_model_new() passes to aligned_alloc(); 0 for a bad spec or
 * max_batch 0, SIZE_MAX when the size does not fit in size_t. */
size_t fv_model_spec_bytes(const struct fv_model_spec *spec, uint32_t max_batch)
{
	struct layout L;

	if (fv_model_spec_validate(spec) < 0 || max_batch == 0)
		return 0;
	if (!layout(spec, max_batch, &L) || L.total > (SIZE_MAX - header_bytes()) / sizeof(float))
		return SIZE_MAX;
	return header_bytes() + L.total * sizeof(float);
}

/* ---- model lifetime ---- */

/* One aligned_alloc() holds the struct and every array (see layout()); on
 * failure errno is EINVAL (bad spec or max_batch 0) or ENOMEM. */
struct fv_model *fv_model_new(const struct fv_model_spec *spec, uint32_t max_batch)
{
	struct layout L;
	size_t bytes = fv_model_spec_bytes(spec, max_batch);
	struct fv_model *m;
	float *f;

	if (bytes == 0) {
		errno = EINVAL;
		return NULL;
	}
	if (bytes == SIZE_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	m = aligned_alloc(ALIGN, bytes); /* bytes is a multiple of ALIGN */
	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	memset(m, 0, bytes);
	layout(spec, max_batch, &L);
	f = (float *)((char *)m + header_bytes());
	m->spec = *spec;
	m->max_batch = max_batch;
	m->max_width = L.max_width;
	m->nparams = fv_model_spec_nparams(spec);
	m->params = f + L.params;
	m->grads = f + L.grads;
	m->adam_m = f + L.m;
	m->adam_v = f + L.v;
	for (uint32_t l = 0; l < spec->n_layers; l++)
		m->act[l] = f + L.act[l];
	m->delta[0] = f + L.delta[0];
	m->delta[1] = f + L.delta[1];
	m->batch = f + L.batch;
	m->wt = max_batch >= FWD_T_MIN_BATCH ? f + L.wt : NULL;

	size_t off = 0;

	for (uint32_t l = 0; l < spec->n_layers; l++) {
		m->w_off[l] = off;
		off += (size_t)spec->sizes[l + 1] * spec->sizes[l];
		m->b_off[l] = off;
		off += spec->sizes[l + 1];
	}
	return m;
}

void fv_model_free(struct fv_model *m)
{
	free(m);
}

const struct fv_model_spec *fv_model_get_spec(const struct fv_model *m)
{
	return &m->spec;
}

size_t fv_model_nparams(const struct fv_model *m)
{
	return m->nparams;
}

float *fv_model_params(struct fv_model *m)
{
	return m->params;
}

float *fv_model_grads(struct fv_model *m)
{
	return m->grads;
}

/* Draws weights layer by layer in parameter order from one fv_rng, so the
 * result depends only on the spec and the seed. */
void fv_model_init(struct fv_model *m, uint64_t seed)
{
	struct fv_rng rng;

	fv_rng_seed(&rng, seed);
	for (uint32_t l = 0; l < m->spec.n_layers; l++) {
		uint32_t in = m->spec.sizes[l], out = m->spec.sizes[l + 1];
		size_t nw = (size_t)in * out;
		float *w = m->params + m->w_off[l];
		/* Uniform(-a, a) has variance a^2/3: Glorot a = sqrt(6/(in+out)),
		 * He a = sqrt(6/in) (variance 2/in). */
		double a = m->spec.acts[l] == FV_ACT_RELU ? sqrt(6.0 / in)
							   : sqrt(6.0 / ((double)in + out));

		for (size_t i = 0; i < nw; i++)
			w[i] = (float)((2.0 * fv_rng_uniform(&rng) - 1.0) * a);
		memset(m->params + m->b_off[l], 0, sizeof(float) * out);
	}
	fv_model_adam_reset(m);
}

int fv_model_set_params(struct fv_model *m, const float *params, size_t n)
{
	if (n != m->nparams)
		return -EDOM;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(params[i]))
			return -ERANGE;
	memcpy(m->params, params, sizeof(float) * n);
	return 0;
}

/* ---- forward / backward ---- */

/* x: (B, in) -> m->act[l]: (B, sizes[l+1]) for every layer. */
static void forward(struct fv_model *m, const float *x, uint32_t B)
{
	const float *a = x;

	for (uint32_t l = 0; l < m->spec.n_layers; l++) {
		uint32_t in = m->spec.sizes[l], out = m->spec.sizes[l + 1];
		const float *w = m->params + m->w_off[l], *b = m->params + m->b_off[l];

		if (B >= FWD_T_MIN_BATCH) {
			fv_nn_transpose(m->wt, w, in, out);
			fv_nn_matmul_fwd_t(m->act[l], a, m->wt, b, B, in, out);
		} else {
			fv_nn_matmul_fwd(m->act[l], a, w, b, B, in, out);
		}
		act_apply(m->act[l], (size_t)B * out, (enum fv_act)m->spec.acts[l]);
		a = m->act[l];
	}
}

/* Batches of FWD_T_MIN_BATCH or more rows take the transposed-W path. */
int fv_model_forward(struct fv_model *m, const float *x, uint32_t B, float *ret_y)
{
	uint32_t L = m->spec.n_layers;

	if (!x || B == 0 || B > m->max_batch)
		return -EINVAL;
	forward(m, x, B);
	if (ret_y)
		memcpy(ret_y, m->act[L - 1], sizeof(float) * (size_t)B * m->spec.sizes[L]);
	return 0;
}

/* No checks and no allocation: the agent calls this for every window. The
 * error is summed in double so that wide inputs do not lose the small terms. */
float fv_model_score(struct fv_model *m, const float *x, float *ret_sqerr)
{
	uint32_t n = m->spec.sizes[0];
	const float *y;
	double acc = 0.0;

	forward(m, x, 1);
	y = m->act[m->spec.n_layers - 1];
	for (uint32_t i = 0; i < n; i++) {
		float d = y[i] - x[i], e = d * d;

		if (ret_sqerr)
			ret_sqerr[i] = e;
		acc += e;
	}
	return (float)(acc / n);
}

/* Forward, MSE, then backprop layer by layer through the two delta buffers.
 * Gradients are overwritten, never accumulated. */
int fv_model_grad(struct fv_model *m, const float *x, uint32_t B, float *ret_loss)
{
	uint32_t L = m->spec.n_layers, n = m->spec.sizes[0];
	size_t total = (size_t)B * n;
	const float *y;
	float *d, *dprev;
	double loss = 0.0;
	float scale;

	if (!x || B == 0 || B > m->max_batch)
		return -EINVAL;
	forward(m, x, B);

	/* loss = 1/(B n) sum (y - x)^2, dloss/dy = 2 (y - x) / (B n). */
	y = m->act[L - 1];
	d = m->delta[0];
	dprev = m->delta[1];
	scale = (float)(2.0 / (double)total);
	for (size_t i = 0; i < total; i++) {
		float e = y[i] - x[i];

		loss += (double)e * e;
		d[i] = scale * e;
	}

	for (uint32_t l = L; l-- > 0;) {
		uint32_t in = m->spec.sizes[l], out = m->spec.sizes[l + 1];
		const float *a_in = l > 0 ? m->act[l - 1] : x;

		act_backward(d, m->act[l], (size_t)B * out, (enum fv_act)m->spec.acts[l]);
		fv_nn_matmul_bwd_w(m->grads + m->w_off[l], m->grads + m->b_off[l], d, a_in, B, in,
				   out);
		if (l > 0) {
			float *t;

			fv_nn_matmul_bwd_x(dprev, d, m->params + m->w_off[l], B, in, out);
			t = d;
			d = dprev;
			dprev = t;
		}
	}
	if (ret_loss)
		*ret_loss = (float)(loss / (double)total);
	return 0;
}

/* ---- Adam ---- */

void fv_model_adam_reset(struct fv_model *m)
{
	memset(m->adam_m, 0, sizeof(float) * m->nparams);
	memset(m->adam_v, 0, sizeof(float) * m->nparams);
	m->adam_t = 0;
}

/* p, g, mo, ve: (n). Bias corrections are folded into the step size and
 * epsilon: p -= lr * m_hat / (sqrt(v_hat) + eps) with m_hat = m / c1,
 * v_hat = v / c2 equals p -= (lr sqrt(c2) / c1) * m / (sqrt(v) + eps sqrt(c2)).
 * gcc vectorises this loop only with -fno-math-errno (sqrtf may set errno);
 * it is O(nparams) per step against O(batch * nparams) for the matmuls, so
 * it is left scalar rather than compiled with special flags. */
static void adam_update(float *restrict p, const float *restrict g, float *restrict mo,
			float *restrict ve, size_t n, float b1, float b2, float step, float eps)
{
	for (size_t i = 0; i < n; i++) {
		float gi = g[i];

		mo[i] = b1 * mo[i] + (1.0f - b1) * gi;
		ve[i] = b2 * ve[i] + (1.0f - b2) * gi * gi;
		p[i] -= step * mo[i] / (sqrtf(ve[i]) + eps);
	}
}

void fv_model_adam_step(struct fv_model *m, const struct fv_adam_opts *o)
{
	double t, c1, c2;

	m->adam_t++;
	t = (double)m->adam_t;
	c1 = 1.0 - pow(o->beta1, t);
	c2 = 1.0 - pow(o->beta2, t);
	adam_update(m->params, m->grads, m->adam_m, m->adam_v, m->nparams, o->beta1, o->beta2,
		    (float)(o->lr * sqrt(c2) / c1), (float)(o->eps * sqrt(c2)));
}

/* ---- training ---- */

/* Beyond nn.h: a last partial batch is used (not dropped); the reported loss
 * is the sample-weighted mean of the batch losses seen during the last
 * epoch; epochs == 0 only evaluates the loss; NaN/Inf anywhere in data is
 * refused with -ERANGE before any parameter changes; bad Adam options are
 * -EINVAL. The only allocation is the shuffle index (N size_t). */
int fv_model_train(struct fv_model *m, const float *data, size_t N, uint32_t epochs,
		   uint32_t batch, const struct fv_adam_opts *o, uint64_t seed,
		   float *ret_loss)
{
	uint32_t n = m->spec.sizes[0];
	struct fv_rng rng;
	size_t *idx;
	double epoch_loss = 0.0;

	if (!data || !o || N == 0 || batch == 0 || batch > m->max_batch)
		return -EINVAL;
	if (!(o->lr > 0.0f && o->lr < INFINITY && o->beta1 >= 0.0f && o->beta1 < 1.0f &&
	      o->beta2 >= 0.0f && o->beta2 < 1.0f && o->eps > 0.0f && o->eps < INFINITY))
		return -EINVAL;
	if (N > SIZE_MAX / sizeof(size_t) || N > SIZE_MAX / sizeof(float) / n)
		return -E2BIG;
	/* Garbage in would poison every parameter: refuse it before training. */
	for (size_t i = 0; i < N * n; i++)
		if (!isfinite(data[i]))
			return -ERANGE;
	idx = malloc(sizeof(size_t) * N);
	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < N; i++)
		idx[i] = i;
	fv_rng_seed(&rng, seed);

	for (uint32_t e = 0; e < epochs; e++) {
		/* Fisher-Yates shuffle of the sample order. */
		for (size_t i = N - 1; i > 0; i--) {
			size_t j = (size_t)fv_rng_below(&rng, (uint64_t)i + 1), t = idx[i];

			idx[i] = idx[j];
			idx[j] = t;
		}
		epoch_loss = 0.0;
		for (size_t start = 0; start < N; start += batch) {
			uint32_t B = (uint32_t)FV_MIN((size_t)batch, N - start);
			float loss;

			for (uint32_t b = 0; b < B; b++)
				memcpy(m->batch + (size_t)b * n, data + idx[start + b] * n,
				       sizeof(float) * n);
			fv_model_grad(m, m->batch, B, &loss);
			fv_model_adam_step(m, o);
			epoch_loss += (double)loss * B;
		}
	}
	free(idx);
	if (epochs == 0) {
		/* No training asked for: report the current loss over the data. */
		for (size_t start = 0; start < N; start += batch) {
			uint32_t B = (uint32_t)FV_MIN((size_t)batch, N - start);
			const float *y;

			forward(m, data + start * n, B);
			y = m->act[m->spec.n_layers - 1];
			for (size_t i = 0; i < (size_t)B * n; i++) {
				double d = (double)y[i] - data[start * n + i];

				epoch_loss += d * d;
			}
		}
		epoch_loss /= n;
	}
	if (ret_loss)
		*ret_loss = (float)(epoch_loss / (double)N);
	return 0;
}
