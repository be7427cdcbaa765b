/* Models of every kind: memory layout and budget, lifetime, the loss, the
 * training RNG, optimisers (SGD, momentum, Adam) and the mini-batch
 * training loop. The family-specific parts (layers) are behind
 * struct fv_nn_kind (nn-int.h).
 *
 * Everything a model needs is carved out of one allocation made by
 * fv_model_new() (see build()), so forward, grad, step and score never
 * allocate; fv_model_train() allocates only its shuffle index. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/kernels.h"
#include "nn/nn-int.h"

#define FALIGN (FV_NN_ALIGN / sizeof(float))

/* ---- arena and layout ---- */

float *fv_nn_arena_take(struct fv_nn_arena *a, size_t n1, size_t n2)
{
	size_t n, r, off;

	if (n2 != 0 && n1 > SIZE_MAX / n2) {
		a->overflow = true;
		return NULL;
	}
	n = n1 * n2;
	r = (n + FALIGN - 1) / FALIGN * FALIGN;
	if (r < n || a->used > SIZE_MAX / sizeof(float) - r) {
		a->overflow = true;
		return NULL;
	}
	off = a->used;
	a->used += r;
	return a->base && !a->overflow ? a->base + off : NULL;
}

/* The struct, rounded up to a cache line, followed by the float area. */
static size_t header_bytes(void)
{
	return (sizeof(struct fv_model) + FV_NN_ALIGN - 1) / FV_NN_ALIGN * FV_NN_ALIGN;
}

/* Lay a model of m->spec (valid), m->max_batch and m->train out over base
 * (NULL: only size it). *ret_mem gets the bytes by part; false on overflow. */
static bool build(struct fv_model *m, float *base, struct fv_model_mem *ret_mem)
{
	struct fv_nn_arena a = { .base = base };
	size_t P = m->nparams, in = m->kind->input(&m->spec), mark;
	uint32_t B = m->max_batch;

	memset(ret_mem, 0, sizeof(*ret_mem));
	m->params = fv_nn_arena_take(&a, P, 1);
	ret_mem->params = a.used * sizeof(float);
	m->grads = m->opt_m = m->opt_v = m->batch = m->noisy = NULL;
	if (m->train) {
		mark = a.used;
		m->grads = fv_nn_arena_take(&a, P, 1);
		ret_mem->grads = (a.used - mark) * sizeof(float);
		mark = a.used;
		m->opt_m = fv_nn_arena_take(&a, P, 1);
		m->opt_v = fv_nn_arena_take(&a, P, 1);
		ret_mem->optim = (a.used - mark) * sizeof(float);
	}
	mark = a.used;
	if (m->train) {
		m->batch = fv_nn_arena_take(&a, B, in);
		if (m->spec.noise > 0.0f)
			m->noisy = fv_nn_arena_take(&a, B, in);
	}
	m->kind->layout(m, &a);
	ret_mem->act = (a.used - mark) * sizeof(float);
	if (a.overflow || a.used > (SIZE_MAX - header_bytes()) / sizeof(float))
		return false;
	ret_mem->total = header_bytes() + a.used * sizeof(float);
	return true;
}

/* Fill the scalar fields of *m for spec; 0 or -errno. */
static int prepare(struct fv_model *m, const struct fv_model_spec *spec, uint32_t max_batch,
		   bool train)
{
	int r = fv_model_spec_validate(spec);

	if (r < 0)
		return r;
	if (max_batch == 0)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->spec = *spec;
	m->kind = fv_nn_kind_get(spec->kind);
	m->train = train;
	m->max_batch = max_batch;
	m->nparams = m->kind->nparams(spec);
	return 0;
}

int fv_model_spec_mem(const struct fv_model_spec *spec, uint32_t max_batch, bool train,
		      struct fv_model_mem *ret)
{
	struct fv_model tmp;
	struct fv_model_mem mem;
	int r = prepare(&tmp, spec, max_batch, train);

	if (r < 0)
		return r;
	if (!build(&tmp, NULL, &mem))
		return -EOVERFLOW;
	*ret = mem;
	return 0;
}

/* Exactly what fv_model_new() passes to aligned_alloc(). */
size_t fv_model_spec_bytes(const struct fv_model_spec *spec, uint32_t max_batch)
{
	struct fv_model_mem mem;
	int r = fv_model_spec_mem(spec, max_batch, true, &mem);

	if (r == -EOVERFLOW)
		return SIZE_MAX;
	return r < 0 ? 0 : mem.total;
}

/* ---- lifetime ---- */

/* One aligned_alloc() holds the struct and every array; on failure errno is
 * EINVAL (bad spec or max_batch 0) or ENOMEM. */
static struct fv_model *model_new(const struct fv_model_spec *spec, uint32_t max_batch,
				  bool train)
{
	struct fv_model tmp, *m;
	struct fv_model_mem mem;
	int r = prepare(&tmp, spec, max_batch, train);

	if (r < 0) {
		errno = EINVAL;
		return NULL;
	}
	if (!build(&tmp, NULL, &mem)) {
		errno = ENOMEM;
		return NULL;
	}
	m = aligned_alloc(FV_NN_ALIGN, mem.total); /* a multiple of FV_NN_ALIGN */
	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	memset(m, 0, mem.total);
	*m = tmp;
	build(m, (float *)((char *)m + header_bytes()), &mem);
	return m;
}

struct fv_model *fv_model_new(const struct fv_model_spec *spec, uint32_t max_batch)
{
	return model_new(spec, max_batch, true);
}

struct fv_model *fv_model_new_scorer(const struct fv_model_spec *spec, uint32_t max_batch)
{
	return model_new(spec, max_batch, false);
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

void fv_model_init(struct fv_model *m, uint64_t seed)
{
	struct fv_rng rng;

	fv_rng_seed(&rng, seed);
	m->kind->init(m, &rng);
	fv_model_optim_reset(m);
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

/* ---- forward, score, loss ---- */

int fv_model_forward(struct fv_model *m, const float *x, uint32_t B, float *ret_y)
{
	const float *y;

	if (!x || B == 0 || B > m->max_batch)
		return -EINVAL;
	y = m->kind->forward(m, x, B, false);
	if (ret_y)
		memcpy(ret_y, y, sizeof(float) * (size_t)B * m->kind->input(&m->spec));
	return 0;
}

/* No checks and no allocation: the agent calls this for every window. The
 * error is summed in double so that wide inputs do not lose the small terms. */
float fv_model_score(struct fv_model *m, const float *x, float *ret_sqerr)
{
	uint32_t n = m->kind->input(&m->spec);
	const float *y = m->kind->forward(m, x, 1, false);
	double acc = 0.0;

	for (uint32_t i = 0; i < n; i++) {
		float d = y[i] - x[i], e = d * d;

		if (ret_sqerr)
			ret_sqerr[i] = e;
		acc += e;
	}
	return (float)(acc / n);
}

double fv_nn_mse_grad(float *d, const float *y, const float *t, size_t n, float scale)
{
	return fv_nn_kernels()->mse_grad(d, y, t, n, scale);
}

static int grad(struct fv_model *m, const float *x_in, const float *target, uint32_t B,
		bool train, float wd, float *ret_obj, float *ret_mse)
{
	size_t total;
	double sse, l2, mse;

	if (!m->train)
		return -EPERM;
	if (!x_in || !target || B == 0 || B > m->max_batch)
		return -EINVAL;
	total = (size_t)B * m->kind->input(&m->spec);
	m->kind->forward(m, x_in, B, train);
	m->kind->backward(m, x_in, target, B, train, wd, &sse, &l2);
	mse = sse / (double)total;
	if (ret_obj)
		*ret_obj = (float)(mse + 0.5 * wd * l2);
	if (ret_mse)
		*ret_mse = (float)mse;
	return 0;
}

int fv_model_grad(struct fv_model *m, const float *x, uint32_t B, float *ret_loss)
{
	return grad(m, x, x, B, false, 0.0f, ret_loss, NULL);
}

int fv_nn_grad_train(struct fv_model *m, const float *x_in, const float *target, uint32_t B,
		     float weight_decay, float *ret_obj, float *ret_mse)
{
	return grad(m, x_in, target, B, true, weight_decay, ret_obj, ret_mse);
}

/* ---- training RNG ----
 * A counter hashed with a key: draws are independent of how the work is
 * split into loops, cheap, and vectorisable. lowbias32 (Chris Wellons'
 * hash-prospector) is the mixer. */

static inline uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

uint32_t fv_nn_rng_draw(uint64_t key, uint64_t ctr)
{
	uint32_t k0 = (uint32_t)key ^ mix32((uint32_t)(ctr >> 32)), k1 = (uint32_t)(key >> 32);

	return mix32(mix32((uint32_t)ctr + k0) ^ k1);
}

/* Draws [c, c + n) stay inside one 2^32 block of the counter. */
static bool one_block(uint64_t c, uint64_t n)
{
	return (c >> 32) == ((c + n - 1) >> 32);
}

void fv_nn_rng_dropout(struct fv_model *m, float *restrict mask, size_t n, float p)
{
	/* Keep when the top 24 bits, as a fraction, are >= p. */
	uint32_t thresh = (uint32_t)ceil((double)p * 16777216.0);
	float keep = 1.0f / (1.0f - p);
	uint64_t c = m->rng_ctr, key = m->rng_key;

	if (n && one_block(c, n)) {
		fv_nn_kernels()->dropout(mask, n, thresh, keep,
					 (uint32_t)key ^ mix32((uint32_t)(c >> 32)),
					 (uint32_t)(key >> 32), (uint32_t)c);
	} else {
		for (size_t i = 0; i < n; i++)
			mask[i] = (fv_nn_rng_draw(key, c + i) >> 8) >= thresh ? keep : 0.0f;
	}
	m->rng_ctr += n;
}

void fv_nn_rng_noise(struct fv_model *m, float *restrict dst, const float *restrict src,
		     size_t n, float sigma)
{
	/* Four 16-bit uniforms per element: mean 4 * 32767.5, variance
	 * 4 * (65536^2 - 1) / 12, so z = (s - 131070) * sqrt(3) / 65536 has
	 * zero mean and (to 1e-9) unit variance. */
	const float scale = sigma * (float)(1.7320508075688772 / 65536.0);
	uint64_t c = m->rng_ctr, key = m->rng_key;

	if (n && one_block(c, 2 * (uint64_t)n)) {
		fv_nn_kernels()->noise(dst, src, n, scale, (uint32_t)key ^ mix32((uint32_t)(c >> 32)),
				       (uint32_t)(key >> 32), (uint32_t)c);
	} else {
		for (size_t i = 0; i < n; i++) {
			uint32_t h1 = fv_nn_rng_draw(key, c + 2 * i);
			uint32_t h2 = fv_nn_rng_draw(key, c + 2 * i + 1);
			int32_t s = (int32_t)((h1 & 0xffffu) + (h1 >> 16) + (h2 & 0xffffu) +
					      (h2 >> 16));

			dst[i] = src[i] + scale * (float)(s - 131070);
		}
	}
	m->rng_ctr += 2 * n;
}

/* ---- optimisers ---- */

void fv_model_optim_reset(struct fv_model *m)
{
	if (!m->train)
		return;
	memset(m->opt_m, 0, sizeof(float) * m->nparams);
	memset(m->opt_v, 0, sizeof(float) * m->nparams);
	m->opt_t = 0;
}

void fv_model_prox_grad(struct fv_model *m, float mu, const float *base)
{
	for (size_t i = 0; i < m->nparams; i++)
		m->grads[i] += mu * (m->params[i] - base[i]);
}

int fv_model_step(struct fv_model *m, const struct fv_train_opts *o)
{
	float *restrict p = m->params, *restrict v = m->opt_m;
	const float *restrict g = m->grads;
	size_t n = m->nparams;

	if (!m->train)
		return -EPERM;
	m->opt_t++;
	switch (o->optim) {
	case FV_OPTIM_SGD:
		for (size_t i = 0; i < n; i++)
			p[i] -= o->lr * g[i];
		break;
	case FV_OPTIM_MOMENTUM:
		/* PyTorch's SGD with momentum (no dampening): the first step
		 * starts from v = 0, so v = g. */
		for (size_t i = 0; i < n; i++) {
			v[i] = o->momentum * v[i] + g[i];
			p[i] -= o->lr * v[i];
		}
		break;
	case FV_OPTIM_ADAM: {
		double t = (double)m->opt_t, c1 = 1.0 - pow(o->beta1, t), c2 = 1.0 - pow(o->beta2, t);

		/* Bias corrections are folded into the step size and epsilon:
		 * p -= lr m_hat / (sqrt(v_hat) + eps), m_hat = m / c1, v_hat = v / c2
		 * is p -= (lr sqrt(c2) / c1) m / (sqrt(v) + eps sqrt(c2)). */
		fv_nn_kernels()->adam(p, g, m->opt_m, m->opt_v, n, o->beta1, o->beta2,
				      (float)(o->lr * sqrt(c2) / c1), (float)(o->eps * sqrt(c2)));
		break;
	}
	default:
		return -EINVAL;
	}
	return 0;
}

/* ---- training ---- */

/* Beyond nn.h: the reported loss is the sample-weighted mean of the batch
 * losses seen during the last epoch (with dropout and noise active). The
 * shuffle uses fv_rng seeded with seed; masks and noise a counter-based
 * hash keyed by a value derived from seed, restarted at every call. */
int fv_model_train_rows(struct fv_model *m, fv_model_row_fn row, void *ctx, size_t N,
			uint32_t epochs, uint32_t batch, const struct fv_train_opts *o,
			uint64_t seed, float *ret_loss)
{
	uint32_t n;
	struct fv_rng rng;
	size_t *idx;
	double epoch_loss = 0.0;
	float sigma = m->spec.noise;

	if (!m->train)
		return -EPERM;
	n = m->kind->input(&m->spec);
	if (!row || !o || N == 0 || batch == 0 || batch > m->max_batch)
		return -EINVAL;
	if (fv_train_opts_validate(o) < 0)
		return -EINVAL;
	if (N > SIZE_MAX / sizeof(size_t) || N > SIZE_MAX / sizeof(float) / n)
		return -E2BIG;
	/* Garbage in would poison every parameter: refuse it before training
	 * (one pass through the rows, in the batch buffer). */
	for (size_t i = 0; i < N; i++) {
		row(ctx, i, m->batch);
		for (uint32_t k = 0; k < n; k++)
			if (!isfinite(m->batch[k]))
				return -ERANGE;
	}
	idx = malloc(sizeof(size_t) * N);
	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < N; i++)
		idx[i] = i;
	fv_rng_seed(&rng, seed);
	m->rng_key = fv_rng_u64(&rng);
	m->rng_ctr = 0;

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
			const float *in = m->batch;
			float loss = 0.0f;

			for (uint32_t b = 0; b < B; b++)
				row(ctx, idx[start + b], m->batch + (size_t)b * n);
			if (sigma > 0.0f) {
				fv_nn_rng_noise(m, m->noisy, m->batch, (size_t)B * n, sigma);
				in = m->noisy;
			}
			if (m->kind->draw_masks)
				m->kind->draw_masks(m, B);
			grad(m, in, m->batch, B, true, o->weight_decay, NULL, &loss);
			if (o->prox_mu > 0.0f && o->prox_base)
				fv_model_prox_grad(m, o->prox_mu, o->prox_base);
			fv_model_step(m, o);
			epoch_loss += (double)loss * B;
		}
	}
	free(idx);
	if (epochs == 0) {
		/* No training asked for: report the current loss over the data. */
		for (size_t start = 0; start < N; start += batch) {
			uint32_t B = (uint32_t)FV_MIN((size_t)batch, N - start);
			const float *y;

			for (uint32_t b = 0; b < B; b++)
				row(ctx, start + b, m->batch + (size_t)b * n);
			y = m->kind->forward(m, m->batch, B, false);
			for (size_t i = 0; i < (size_t)B * n; i++) {
				double d = (double)y[i] - m->batch[i];

				epoch_loss += d * d;
			}
		}
		epoch_loss /= n;
	}
	if (ret_loss)
		*ret_loss = (float)(epoch_loss / (double)N);
	return 0;
}

struct rows_of_array {
	const float *data; /* (N, n) */
	uint32_t n;
};

static void array_row(void *ctx, size_t i, float *dst)
{
	const struct rows_of_array *r = ctx;

	memcpy(dst, r->data + i * r->n, sizeof(float) * r->n);
}

int fv_model_train(struct fv_model *m, const float *data, size_t N, uint32_t epochs,
		   uint32_t batch, const struct fv_train_opts *o, uint64_t seed,
		   float *ret_loss)
{
	struct rows_of_array r = { data, m->kind->input(&m->spec) };

	if (!data)
		return -EINVAL;
	return fv_model_train_rows(m, array_row, &r, N, epochs, batch, o, seed, ret_loss);
}
