/* Internal dense-layer kernels of lib/nn: the plain reference loops, and
 * the fast variants (one per instruction set, lib/nn/kernels_<isa>.c, all
 * from lib/nn/kernels_impl.h) behind a dispatch table chosen at run time.
 * Not part of the public API: include only from lib/nn and the unit tests,
 * which check every variant against the reference loops. */
#ifndef FEDVIGIL_NN_KERNELS_H
#define FEDVIGIL_NN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* One instruction-set variant of the fast kernels. */
struct fv_nn_kernels {
	const char *name; /* "generic" (x86-64 baseline, SSE2), "avx2", "avx512", "neon" */
	/* General matrix product with strided A:
	 *   a(i, k) = a[i * rsa + k * csa], b: (K, N) rows ldb apart,
	 *   bias: (N) or NULL -> c: (M, N) = bias + a b  (c rows N apart).
	 * c must not alias a, b or bias. */
	void (*gemm)(float *c, const float *a, size_t rsa, size_t csa, const float *b, size_t ldb,
		     const float *bias, uint32_t M, uint32_t N, uint32_t K);
	/* w: (out, in) row-major, x: (in), b: (out) -> y: (out) = w x + b. */
	void (*gemv)(float *y, const float *w, const float *x, const float *b, uint32_t out,
		     uint32_t in);
	/* Adam with folded bias corrections, p, g, mo, ve: (n):
	 * mo = b1 mo + (1-b1) g; ve = b2 ve + (1-b2) g^2; p -= step mo / (sqrt(ve) + eps). */
	void (*adam)(float *p, const float *g, float *mo, float *ve, size_t n, float b1, float b2,
		     float step, float eps);
	/* y: (n) in place, y = act(y), act an enum fv_act. */
	void (*act)(float *y, size_t n, int act);
	/* d = scale (y - t), all (n); returns sum (y - t)^2 (in double). */
	double (*mse_grad)(float *d, const float *y, const float *t, size_t n, float scale);
	/* The training RNG of nn-int.h for draws lo .. lo + n - 1 (or 2n) of one
	 * 2^32 block, with the key words k0 = key_lo ^ mix(block), k1 = key_hi:
	 * mask[i] = (draw(i) >> 8) >= thresh ? keep : 0;
	 * dst[i] = src[i] + scale * (sum of the four 16-bit halves of draws 2i,
	 * 2i+1, minus 131070). The caller keeps lo + 2n within the block. */
	void (*dropout)(float *mask, size_t n, uint32_t thresh, float keep, uint32_t k0,
			uint32_t k1, uint32_t lo);
	void (*noise)(float *dst, const float *src, size_t n, float scale, uint32_t k0, uint32_t k1,
		      uint32_t lo);
};

/* The variant in use. Chosen at first use: FV_NN_KERNELS=<name> in the
 * environment if this CPU runs it, else the widest one it runs. */
const struct fv_nn_kernels *fv_nn_kernels(void);
/* Use the named variant ("auto" = the widest supported). -EINVAL if no
 * variant has that name, -ENOTSUP if this CPU cannot run it. Not
 * thread-safe: call before models are used from several threads. */
int fv_nn_kernels_select(const char *name);
/* The variants this CPU runs, widest last; returns their count (<= max). */
size_t fv_nn_kernels_supported(const struct fv_nn_kernels **ret, size_t max);

/* Reference loops: the fast variants are tested against these. */
void fv_nn_gemm_ref(float *c, const float *a, size_t rsa, size_t csa, const float *b, size_t ldb,
		    const float *bias, uint32_t M, uint32_t N, uint32_t K);
void fv_nn_gemv_ref(float *y, const float *w, const float *x, const float *b, uint32_t out,
		    uint32_t in);
void fv_nn_adam_ref(float *p, const float *g, float *mo, float *ve, size_t n, float b1, float b2,
		    float step, float eps);

/* w: (out, in) -> wt: (in, out). */
void fv_nn_transpose(float *wt, const float *w, uint32_t in, uint32_t out);

#endif
