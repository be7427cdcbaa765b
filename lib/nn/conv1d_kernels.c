/* 1-D convolution kernels of the temporal autoencoder (see conv1d.h).
 *
 * Time-major layout makes every kernel a loop over output steps of dot
 * products or axpys on contiguous runs: the receptive field of output step
 * t is the run of input rows [t s - p + k0, t s - p + k1) (k0/k1 clip the
 * kernel at the window's edges instead of padding with zeros). gcc -O3
 * vectorises the inner loops (restrict pointers, independent partial sums);
 * no -ffast-math, so one build gives one result. Each fast kernel has a
 * plain reference loop, written the obvious way, that the unit tests
 * compare it with. */
#include <string.h>

#include "nn/conv1d.h"

#define LANES 8

uint32_t fv_conv1d_out_len(uint32_t L, uint32_t s, int deconv)
{
	return deconv ? L * s : (L + s - 1) / s;
}

/* Kernel taps [k0, k1) of output step t that fall inside n_in input rows,
 * for a layer whose tap k of step t reads row t s + k - p. */
static inline void taps(uint32_t t, uint32_t s, uint32_t p, uint32_t K, uint32_t n_in,
			uint32_t *k0, uint32_t *k1)
{
	long long first = (long long)t * s - p; /* row of tap 0 */
	long long lo = first < 0 ? -first : 0;
	long long hi = (long long)n_in - first;

	*k0 = (uint32_t)lo;
	*k1 = (uint32_t)(hi < (long long)K ? (hi < lo ? lo : hi) : K);
}

static inline float dot(const float *restrict a, const float *restrict b, uint32_t n)
{
	float acc[LANES] = { 0 };
	uint32_t n8 = n - n % LANES, i;

	for (i = 0; i < n8; i += LANES)
		for (uint32_t k = 0; k < LANES; k++)
			acc[k] += a[i + k] * b[i + k];
	float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));

	for (; i < n; i++)
		sum += a[i] * b[i];
	return sum;
}

/* y[i] += c * x[i] */
static inline void axpy(float *restrict y, float c, const float *restrict x, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] += c * x[i];
}

/* ---- conv ---- */

void fv_conv1d_fwd(float *restrict y, const float *restrict x, const float *restrict w,
		   const float *restrict b, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
		   uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 0), p = (K - 1) / 2;
	size_t row = (size_t)K * cin; /* one output channel's weights */

	for (uint32_t n = 0; n < B; n++) {
		const float *xs = x + (size_t)n * L * cin;
		float *ys = y + (size_t)n * Lo * cout;

		for (uint32_t t = 0; t < Lo; t++) {
			uint32_t k0, k1;

			taps(t, s, p, K, L, &k0, &k1);
			const float *in = xs + ((size_t)t * s + k0 - p) * cin;
			uint32_t len = (k1 - k0) * cin;

			for (uint32_t o = 0; o < cout; o++)
				ys[(size_t)t * cout + o] = b[o] + dot(in, w + o * row + (size_t)k0 * cin, len);
		}
	}
}

void fv_conv1d_fwd_ref(float *y, const float *x, const float *w, const float *b, uint32_t B,
		       uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 0), p = (K - 1) / 2;

	for (uint32_t n = 0; n < B; n++)
		for (uint32_t t = 0; t < Lo; t++)
			for (uint32_t o = 0; o < cout; o++) {
				float acc = b[o];

				for (uint32_t k = 0; k < K; k++) {
					long long r = (long long)t * s + k - p;

					if (r < 0 || r >= L)
						continue;
					for (uint32_t i = 0; i < cin; i++)
						acc += w[((size_t)o * K + k) * cin + i] *
						       x[((size_t)n * L + (size_t)r) * cin + i];
				}
				y[((size_t)n * Lo + t) * cout + o] = acc;
			}
}

void fv_conv1d_bwd(float *restrict dx, float *restrict dw, float *restrict db,
		   const float *restrict dy, const float *restrict x, const float *restrict w,
		   uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 0), p = (K - 1) / 2;
	size_t row = (size_t)K * cin;

	memset(dw, 0, sizeof(float) * row * cout);
	memset(db, 0, sizeof(float) * cout);
	if (dx)
		memset(dx, 0, sizeof(float) * B * L * cin);
	for (uint32_t n = 0; n < B; n++) {
		const float *xs = x + (size_t)n * L * cin, *dys = dy + (size_t)n * Lo * cout;

		for (uint32_t t = 0; t < Lo; t++) {
			uint32_t k0, k1;

			taps(t, s, p, K, L, &k0, &k1);
			size_t off = ((size_t)t * s + k0 - p) * cin;
			uint32_t len = (k1 - k0) * cin;

			for (uint32_t o = 0; o < cout; o++) {
				float g = dys[(size_t)t * cout + o];

				if (g == 0.0f) /* ReLU gradients are mostly zero */
					continue;
				db[o] += g;
				axpy(dw + o * row + (size_t)k0 * cin, g, xs + off, len);
				if (dx)
					axpy(dx + (size_t)n * L * cin + off, g,
					     w + o * row + (size_t)k0 * cin, len);
			}
		}
	}
}

void fv_conv1d_bwd_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
		       const float *w, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
		       uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 0), p = (K - 1) / 2;

	memset(dw, 0, sizeof(float) * K * cin * cout);
	memset(db, 0, sizeof(float) * cout);
	if (dx)
		memset(dx, 0, sizeof(float) * B * L * cin);
	for (uint32_t n = 0; n < B; n++)
		for (uint32_t t = 0; t < Lo; t++)
			for (uint32_t o = 0; o < cout; o++) {
				float g = dy[((size_t)n * Lo + t) * cout + o];

				db[o] += g;
				for (uint32_t k = 0; k < K; k++) {
					long long r = (long long)t * s + k - p;

					if (r < 0 || r >= L)
						continue;
					for (uint32_t i = 0; i < cin; i++) {
						size_t wi = ((size_t)o * K + k) * cin + i;
						size_t xi = ((size_t)n * L + (size_t)r) * cin + i;

						dw[wi] += g * x[xi];
						if (dx)
							dx[xi] += g * w[wi];
					}
				}
			}
}

/* ---- deconv (transposed conv) ---- */

void fv_deconv1d_fwd(float *restrict y, const float *restrict z, const float *restrict w,
		     const float *restrict b, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
		     uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 1), p = (K - 1) / 2;
	size_t row = (size_t)K * cout; /* one input channel's weights */

	for (uint32_t n = 0; n < B; n++) {
		const float *zs = z + (size_t)n * L * cin;
		float *ys = y + (size_t)n * Lo * cout;

		for (uint32_t t = 0; t < Lo; t++)
			memcpy(ys + (size_t)t * cout, b, sizeof(float) * cout);
		/* Step t scatters into output rows [t s - p + k0, t s - p + k1). */
		for (uint32_t t = 0; t < L; t++) {
			uint32_t k0, k1;

			taps(t, s, p, K, Lo, &k0, &k1);
			float *out = ys + ((size_t)t * s + k0 - p) * cout;
			uint32_t len = (k1 - k0) * cout;

			for (uint32_t i = 0; i < cin; i++) {
				float c = zs[(size_t)t * cin + i];

				if (c != 0.0f) /* ReLU outputs are often zero */
					axpy(out, c, w + i * row + (size_t)k0 * cout, len);
			}
		}
	}
}

void fv_deconv1d_fwd_ref(float *y, const float *z, const float *w, const float *b, uint32_t B,
			 uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 1), p = (K - 1) / 2;

	for (uint32_t n = 0; n < B; n++) {
		for (uint32_t t = 0; t < Lo; t++)
			for (uint32_t o = 0; o < cout; o++)
				y[((size_t)n * Lo + t) * cout + o] = b[o];
		for (uint32_t t = 0; t < L; t++)
			for (uint32_t k = 0; k < K; k++) {
				long long r = (long long)t * s + k - p;

				if (r < 0 || r >= Lo)
					continue;
				for (uint32_t i = 0; i < cin; i++)
					for (uint32_t o = 0; o < cout; o++)
						y[((size_t)n * Lo + (size_t)r) * cout + o] +=
							z[((size_t)n * L + t) * cin + i] *
							w[((size_t)i * K + k) * cout + o];
			}
	}
}

void fv_deconv1d_bwd(float *restrict dz, float *restrict dw, float *restrict db,
		     const float *restrict dy, const float *restrict z, const float *restrict w,
		     uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 1), p = (K - 1) / 2;
	size_t row = (size_t)K * cout;

	memset(dw, 0, sizeof(float) * row * cin);
	memset(db, 0, sizeof(float) * cout);
	for (uint32_t n = 0; n < B; n++) {
		const float *zs = z + (size_t)n * L * cin, *dys = dy + (size_t)n * Lo * cout;

		for (uint32_t t = 0; t < Lo; t++)
			for (uint32_t o = 0; o < cout; o++)
				db[o] += dys[(size_t)t * cout + o];
		for (uint32_t t = 0; t < L; t++) {
			uint32_t k0, k1;

			taps(t, s, p, K, Lo, &k0, &k1);
			const float *g = dys + ((size_t)t * s + k0 - p) * cout;
			uint32_t len = (k1 - k0) * cout;

			for (uint32_t i = 0; i < cin; i++) {
				const float *wi = w + i * row + (size_t)k0 * cout;
				float c = zs[(size_t)t * cin + i];

				if (dz)
					dz[((size_t)n * L + t) * cin + i] = dot(wi, g, len);
				if (c != 0.0f)
					axpy(dw + i * row + (size_t)k0 * cout, c, g, len);
			}
		}
	}
}

void fv_deconv1d_bwd_ref(float *dz, float *dw, float *db, const float *dy, const float *z,
			 const float *w, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
			 uint32_t K, uint32_t s)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 1), p = (K - 1) / 2;

	memset(dw, 0, sizeof(float) * K * cin * cout);
	memset(db, 0, sizeof(float) * cout);
	if (dz)
		memset(dz, 0, sizeof(float) * B * L * cin);
	for (uint32_t n = 0; n < B; n++) {
		for (uint32_t t = 0; t < Lo; t++)
			for (uint32_t o = 0; o < cout; o++)
				db[o] += dy[((size_t)n * Lo + t) * cout + o];
		for (uint32_t t = 0; t < L; t++)
			for (uint32_t k = 0; k < K; k++) {
				long long r = (long long)t * s + k - p;

				if (r < 0 || r >= Lo)
					continue;
				for (uint32_t i = 0; i < cin; i++)
					for (uint32_t o = 0; o < cout; o++) {
						size_t wi = ((size_t)i * K + k) * cout + o;
						float g = dy[((size_t)n * Lo + (size_t)r) * cout + o];

						dw[wi] += z[((size_t)n * L + t) * cin + i] * g;
						if (dz)
							dz[((size_t)n * L + t) * cin + i] += w[wi] * g;
					}
			}
	}
}
