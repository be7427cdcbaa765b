/* Dense-layer matmul kernels: the plain reference loops and the fast paths
 * the model uses (tests/unit/test_nn.c checks one against the other).
 *
 * Written for gcc -O3 without -ffast-math (so results are deterministic for
 * a given build): inner loops run over contiguous memory through restrict
 * pointers. Batches use linear combinations of rows with register-resident
 * accumulators (lincomb(); the forward pass runs on W^T); single samples
 * (scoring) use dot products with 8 independent partial sums. */
#include <string.h>

#include "fedvigil/util.h"
#include "nn/kernels.h"

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

