/* The fast kernels, written once and compiled once per instruction set:
 * lib/nn/kernels_<isa>.c defines FV_K_NAME (the variant's name and symbol
 * suffix) and FV_K_VBYTES (vector width in bytes), then includes this file
 * under its own -m flags (CMakeLists.txt). No intrinsics: GCC vector
 * extensions and plain loops, so the same source is SSE2, AVX2, AVX-512 or
 * NEON code depending on those flags.
 *
 * Determinism: each variant sums in a fixed order; variants differ only by
 * float rounding (vector width changes nothing in the order of the sums
 * below, but FMA contraction does, where the target has FMA).
 * tests/unit/test_nn.c runs every variant this CPU supports against the
 * reference loops and trains with each, comparing the results. */
#include <math.h>
#include <string.h>

#include "nn/kernels.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define KFN(f) CAT(f, CAT(_, FV_K_SUFFIX))

typedef float vf __attribute__((vector_size(FV_K_VBYTES)));
#define VL ((uint32_t)(FV_K_VBYTES / sizeof(float)))
#define MR 6 /* rows of a register tile */
#define NV 2 /* vectors (of VL columns) of a register tile */

static inline vf vload(const float *p)
{
	vf v;

	memcpy(&v, p, sizeof(v)); /* unaligned load */
	return v;
}

static inline void vstore(float *p, vf v)
{
	memcpy(p, &v, sizeof(v));
}

static inline vf vbcast(float x)
{
	return (vf){ 0 } + x;
}

/* One register tile: mr rows x nv vectors of C, the k loop innermost with
 * the accumulators in registers (mr and nv are constants after inlining). */
static inline __attribute__((always_inline)) void tile(int mr, int nv, float *restrict c,
						       size_t ldc, const float *restrict a,
						       size_t rsa, size_t csa,
						       const float *restrict b, size_t ldb,
						       const float *restrict bias, uint32_t K)
{
	vf acc[MR][NV];

	for (int r = 0; r < mr; r++)
		for (int v = 0; v < nv; v++)
			acc[r][v] = bias ? vload(bias + v * VL) : (vf){ 0 };
	for (uint32_t k = 0; k < K; k++) {
		const float *bk = b + (size_t)k * ldb, *ak = a + (size_t)k * csa;
		vf bv[NV];

		for (int v = 0; v < nv; v++)
			bv[v] = vload(bk + v * VL);
		for (int r = 0; r < mr; r++) {
			vf ar = vbcast(ak[(size_t)r * rsa]);

			for (int v = 0; v < nv; v++)
				acc[r][v] += ar * bv[v];
		}
	}
	for (int r = 0; r < mr; r++)
		for (int v = 0; v < nv; v++)
			vstore(c + (size_t)r * ldc + v * VL, acc[r][v]);
}

/* Columns left over after the vector tiles (n < VL), one row at a time
 * with scalar accumulators. */
static void tile_cols(float *restrict c, size_t ldc, const float *restrict a, size_t rsa,
		      size_t csa, const float *restrict b, size_t ldb, const float *restrict bias,
		      uint32_t M, uint32_t n, uint32_t K)
{
	for (uint32_t i = 0; i < M; i++) {
		float acc[VL];
		const float *ai = a + (size_t)i * rsa;

		for (uint32_t j = 0; j < n; j++)
			acc[j] = bias ? bias[j] : 0.0f;
		for (uint32_t k = 0; k < K; k++) {
			float ak = ai[(size_t)k * csa];
			const float *bk = b + (size_t)k * ldb;

			for (uint32_t j = 0; j < n; j++)
				acc[j] += ak * bk[j];
		}
		memcpy(c + (size_t)i * ldc, acc, sizeof(float) * n);
	}
}

/* Rows i0.. of one panel of nv vectors: full MR tiles, then the rest. */
static inline __attribute__((always_inline)) void panel(int nv, float *restrict c, size_t ldc,
							const float *restrict a, size_t rsa,
							size_t csa, const float *restrict b,
							size_t ldb, const float *restrict bias,
							uint32_t M, uint32_t K)
{
	uint32_t i = 0;

	for (; i + MR <= M; i += MR)
		tile(MR, nv, c + (size_t)i * ldc, ldc, a + (size_t)i * rsa, rsa, csa, b, ldb, bias,
		     K);
	switch (M - i) {
	case 5:
		tile(5, nv, c + (size_t)i * ldc, ldc, a + (size_t)i * rsa, rsa, csa, b, ldb, bias, K);
		break;
	case 4:
		tile(4, nv, c + (size_t)i * ldc, ldc, a + (size_t)i * rsa, rsa, csa, b, ldb, bias, K);
		break;
	case 3:
		tile(3, nv, c + (size_t)i * ldc, ldc, a + (size_t)i * rsa, rsa, csa, b, ldb, bias, K);
		break;
	case 2:
		tile(2, nv, c + (size_t)i * ldc, ldc, a + (size_t)i * rsa, rsa, csa, b, ldb, bias, K);
		break;
	case 1:
		tile(1, nv, c + (size_t)i * ldc, ldc, a + (size_t)i * rsa, rsa, csa, b, ldb, bias, K);
		break;
	default:
		break;
	}
}

static void KFN(gemm)(float *restrict c, const float *restrict a, size_t rsa, size_t csa,
		      const float *restrict b, size_t ldb, const float *restrict bias, uint32_t M,
		      uint32_t N, uint32_t K)
{
	uint32_t j = 0;

	/* Panels of NV vectors: the panel of B (K x NV*VL) stays in L1 while
	 * every row block of A streams past it. */
	for (; j + NV * VL <= N; j += NV * VL)
		panel(NV, c + j, N, a, rsa, csa, b + j, ldb, bias ? bias + j : NULL, M, K);
	for (; j + VL <= N; j += VL)
		panel(1, c + j, N, a, rsa, csa, b + j, ldb, bias ? bias + j : NULL, M, K);
	if (j < N)
		tile_cols(c + j, N, a, rsa, csa, b + j, ldb, bias ? bias + j : NULL, M, N - j, K);
}

static inline float hsum(vf v)
{
	float s[VL];

	memcpy(s, &v, sizeof(v));
	for (uint32_t w = VL / 2; w > 0; w /= 2) /* pairwise */
		for (uint32_t l = 0; l < w; l++)
			s[l] += s[l + w];
	return s[0];
}

/* Four rows of W against x, two vector accumulators per row (eight
 * independent FMA chains), the tail scalar. */
static void KFN(gemv)(float *restrict y, const float *restrict w, const float *restrict x,
		      const float *restrict b, uint32_t out, uint32_t in)
{
	uint32_t o = 0, nv2 = in - in % (2 * VL), nv1 = in - in % VL;

	for (; o + 4 <= out; o += 4) {
		const float *w0 = w + (size_t)o * in;
		vf a[4][2];
		float s[4];
		uint32_t i = 0;

		for (int r = 0; r < 4; r++)
			a[r][0] = a[r][1] = (vf){ 0 };
		for (; i < nv2; i += 2 * VL) {
			vf x0 = vload(x + i), x1 = vload(x + i + VL);

			for (int r = 0; r < 4; r++) {
				a[r][0] += vload(w0 + (size_t)r * in + i) * x0;
				a[r][1] += vload(w0 + (size_t)r * in + i + VL) * x1;
			}
		}
		for (; i < nv1; i += VL) {
			vf x0 = vload(x + i);

			for (int r = 0; r < 4; r++)
				a[r][0] += vload(w0 + (size_t)r * in + i) * x0;
		}
		for (int r = 0; r < 4; r++) {
			s[r] = hsum(a[r][0] + a[r][1]);
			for (uint32_t k = nv1; k < in; k++)
				s[r] += w0[(size_t)r * in + k] * x[k];
			y[o + r] = s[r] + b[o + r];
		}
	}
	for (; o < out; o++) {
		const float *wo = w + (size_t)o * in;
		vf a0 = { 0 }, a1 = { 0 };
		uint32_t i = 0;
		float s;

		for (; i < nv2; i += 2 * VL) {
			a0 += vload(wo + i) * vload(x + i);
			a1 += vload(wo + i + VL) * vload(x + i + VL);
		}
		for (; i < nv1; i += VL)
			a0 += vload(wo + i) * vload(x + i);
		s = hsum(a0 + a1);
		for (uint32_t k = nv1; k < in; k++)
			s += wo[k] * x[k];
		y[o] = s + b[o];
	}
}

/* Plain loop: gcc vectorises it for the variant's width (sqrtf too, with
 * -fno-math-errno). */
static void KFN(adam)(float *restrict p, const float *restrict g, float *restrict mo,
		      float *restrict ve, size_t n, float b1, float b2, float step, float eps)
{
	for (size_t i = 0; i < n; i++) {
		float gi = g[i];

		mo[i] = b1 * mo[i] + (1.0f - b1) * gi;
		ve[i] = b2 * ve[i] + (1.0f - b2) * gi * gi;
		p[i] -= step * mo[i] / (sqrtf(ve[i]) + eps);
	}
}

/* ---- activations ----
 * tanh and the logistic function from one exp approximation written as
 * straight-line float code, so that gcc vectorises these loops (libm's
 * tanhf and expf are calls per element). Accuracy: a few ulp for exp,
 * absolute error below 1e-7 for tanh and sigmoid (tests/unit/test_nn.c). */

/* e^x for x clamped to [-87, 88]: x = n ln2 + f (Cody-Waite), |f| <= ln2/2,
 * e^f by its Taylor series to degree 7 (error < 5e-9), 2^n from the
 * exponent bits. */
static inline float kexp(float x)
{
	float t, f, p, sc;
	int32_t n, bits;

	x = x < -87.0f ? -87.0f : x;
	x = x > 88.0f ? 88.0f : x;
	t = x * 1.44269502f;
	n = (int32_t)(t + 128.5f) - 128; /* round(t): the sum is positive */
	f = x - (float)n * 0.693145751953125f - (float)n * 1.42860677e-06f;
	p = 1.98412698e-04f;
	p = p * f + 1.38888889e-03f;
	p = p * f + 8.33333333e-03f;
	p = p * f + 4.16666667e-02f;
	p = p * f + 1.66666667e-01f;
	p = p * f + 0.5f;
	p = p * f + 1.0f;
	p = p * f + 1.0f;
	bits = (n + 127) << 23;
	memcpy(&sc, &bits, sizeof(sc));
	return p * sc;
}

/* Odd and bounded: |x| < 1/16 by its series (no cancellation), else
 * (e^2x - 1) / (e^2x + 1) on |x| (saturating to 1 beyond 9). */
static inline float ktanh(float x)
{
	float a = x < 0.0f ? -x : x, x2 = x * x, e, r, small;

	small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * -0.0539682540f)));
	a = a > 9.0f ? 9.0f : a;
	e = kexp(2.0f * a);
	r = (e - 1.0f) / (e + 1.0f);
	r = x < 0.0f ? -r : r;
	return (x < 0.0625f && x > -0.0625f) ? small : r;
}

static void KFN(act)(float *restrict y, size_t n, int act)
{
	switch (act) {
	case 1: /* relu */
		for (size_t i = 0; i < n; i++)
			y[i] = y[i] > 0.0f ? y[i] : 0.0f;
		break;
	case 2: /* tanh */
		for (size_t i = 0; i < n; i++)
			y[i] = ktanh(y[i]);
		break;
	case 3: /* sigmoid */
		for (size_t i = 0; i < n; i++)
			y[i] = 1.0f / (1.0f + kexp(-y[i]));
		break;
	default: /* linear */
		break;
	}
}

/* d = scale (y - t); returns sum (y - t)^2 in double. */
static double KFN(mse_grad)(float *restrict d, const float *restrict y, const float *restrict t,
			    size_t n, float scale)
{
	double sse = 0.0;

	for (size_t i = 0; i < n; i++) {
		float e = y[i] - t[i];

		sse += (double)(e * e);
		d[i] = scale * e;
	}
	return sse;
}

/* ---- training RNG (nn-int.h): draw i = mix(mix(lo + i + k0) ^ k1) ---- */

static inline uint32_t kmix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static void KFN(dropout)(float *restrict mask, size_t n, uint32_t thresh, float keep, uint32_t k0,
			 uint32_t k1, uint32_t lo)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t h = kmix(kmix(lo + (uint32_t)i + k0) ^ k1);

		mask[i] = (int32_t)(h >> 8) >= (int32_t)thresh ? keep : 0.0f;
	}
}

static void KFN(noise)(float *restrict dst, const float *restrict src, size_t n, float scale,
		       uint32_t k0, uint32_t k1, uint32_t lo)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t c = lo + 2 * (uint32_t)i + k0;
		uint32_t h1 = kmix(kmix(c) ^ k1), h2 = kmix(kmix(c + 1) ^ k1);
		int32_t s = (int32_t)((h1 & 0xffffu) + (h1 >> 16) + (h2 & 0xffffu) + (h2 >> 16));

		dst[i] = src[i] + scale * (float)(s - 131070);
	}
}

const struct fv_nn_kernels CAT(fv_nn_kernels_, FV_K_SUFFIX) = {
	.name = FV_K_NAME,
	.gemm = KFN(gemm),
	.gemv = KFN(gemv),
	.adam = KFN(adam),
	.act = KFN(act),
	.mse_grad = KFN(mse_grad),
	.dropout = KFN(dropout),
	.noise = KFN(noise),
};
