/* Kernel dispatch and the reference loops.
 *
 * The fast variants are lib/nn/kernels_impl.h compiled once per
 * instruction set (kernels_generic.c: the target's baseline, i.e. SSE2 on
 * x86-64 and NEON on arm64; kernels_avx2.c, kernels_avx512.c on x86-64
 * only). A CPU check picks the widest one this machine runs, unless
 * FV_NN_KERNELS names another; the unit tests force each in turn. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "nn/kernels.h"

extern const struct fv_nn_kernels fv_nn_kernels_generic;
#if defined(__x86_64__)
extern const struct fv_nn_kernels fv_nn_kernels_avx2;
extern const struct fv_nn_kernels fv_nn_kernels_avx512;
#endif

/* Narrowest first. */
static const struct fv_nn_kernels *const variants[] = {
	&fv_nn_kernels_generic,
#if defined(__x86_64__)
	&fv_nn_kernels_avx2,
	&fv_nn_kernels_avx512,
#endif
};

static bool runs(const struct fv_nn_kernels *k)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (k == &fv_nn_kernels_avx2)
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	if (k == &fv_nn_kernels_avx512)
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
	return k == &fv_nn_kernels_generic;
}

static const struct fv_nn_kernels *active;

static const struct fv_nn_kernels *widest(void)
{
	for (size_t i = FV_ARRAY_SIZE(variants); i-- > 0;)
		if (runs(variants[i]))
			return variants[i];
	return &fv_nn_kernels_generic;
}

const struct fv_nn_kernels *fv_nn_kernels(void)
{
	if (!active) {
		const char *e = getenv("FV_NN_KERNELS");

		if (!e || fv_nn_kernels_select(e) < 0)
			active = widest();
	}
	return active;
}

int fv_nn_kernels_select(const char *name)
{
	if (!name)
		return -EINVAL;
	if (strcmp(name, "auto") == 0) {
		active = widest();
		return 0;
	}
	for (size_t i = 0; i < FV_ARRAY_SIZE(variants); i++)
		if (strcmp(name, variants[i]->name) == 0) {
			if (!runs(variants[i]))
				return -ENOTSUP;
			active = variants[i];
			return 0;
		}
	return -EINVAL;
}

size_t fv_nn_kernels_supported(const struct fv_nn_kernels **ret, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < FV_ARRAY_SIZE(variants); i++)
		if (runs(variants[i]) && n < max)
			ret[n++] = variants[i];
	return n;
}

/* ---- reference loops ---- */

void fv_nn_gemm_ref(float *c, const float *a, size_t rsa, size_t csa, const float *b, size_t ldb,
		    const float *bias, uint32_t M, uint32_t N, uint32_t K)
{
	for (uint32_t i = 0; i < M; i++)
		for (uint32_t j = 0; j < N; j++) {
			float acc = bias ? bias[j] : 0.0f;

			for (uint32_t k = 0; k < K; k++)
				acc += a[i * rsa + k * csa] * b[(size_t)k * ldb + j];
			c[(size_t)i * N + j] = acc;
		}
}

void fv_nn_gemv_ref(float *y, const float *w, const float *x, const float *b, uint32_t out,
		    uint32_t in)
{
	for (uint32_t o = 0; o < out; o++) {
		float acc = b[o];

		for (uint32_t i = 0; i < in; i++)
			acc += w[(size_t)o * in + i] * x[i];
		y[o] = acc;
	}
}

void fv_nn_adam_ref(float *p, const float *g, float *mo, float *ve, size_t n, float b1, float b2,
		    float step, float eps)
{
	for (size_t i = 0; i < n; i++) {
		mo[i] = b1 * mo[i] + (1.0f - b1) * g[i];
		ve[i] = b2 * ve[i] + (1.0f - b2) * g[i] * g[i];
		p[i] -= step * mo[i] / (sqrtf(ve[i]) + eps);
	}
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
