/* 1-D convolution kernels of the temporal autoencoder (see conv1d.h).
 *
 * Time-major layout makes every step's receptive field one contiguous run:
 * output step t of a conv reads input rows [t s - p, t s - p + K), K cin
 * floats from x + (t s - p) cin. The fast kernels copy those runs into a
 * patch matrix (im2col; taps outside the window become zeros), one row per
 * step of the whole batch, and hand the products to lib/nn's
 * register-blocked GEMM (kernels.h); results that overlap in time are added
 * back run by run (col2im), clipped at the window's edges:
 *
 *   conv forward    Y = P(X) W^T + b        P(X): (B Lo, K cin) patches
 *   conv dW         dW = dY^T P(X)
 *   conv dX         dX = col2im(dY W)
 *   deconv forward  Y = col2im(Z W) + b
 *   deconv dZ       dZ = P(dY) W^T          P(dY): (B L, K cout) patches
 *   deconv dW       dW = Z^T P(dY)
 *
 * The copies cost 1/cout (or 1/cin) of the products. No -ffast-math: one
 * build gives one result. Each fast kernel has a plain reference loop,
 * written the obvious way, that the unit tests compare it with (for every
 * GEMM variant this CPU runs). */
#include <string.h>

#include "nn/conv1d.h"
#include "nn/kernels.h"


/* Below this many output channels a conv's forward runs one GEMV per step. */
#define SMALL_COUT 8

uint32_t fv_conv1d_out_len(uint32_t L, uint32_t s, int deconv)
{
	return deconv ? L * s : (L + s - 1) / s;
}

/* Kernel taps [k0, k1) of step t that fall inside n_in rows, for a layer
 * whose tap k of step t is row t s + k - p. */
static inline void taps(uint32_t t, uint32_t s, uint32_t p, uint32_t K, uint32_t n_in,
			uint32_t *k0, uint32_t *k1)
{
	long long first = (long long)t * s - p; /* row of tap 0 */
	long long lo = first < 0 ? -first : 0;
	long long hi = (long long)n_in - first;

	*k0 = (uint32_t)lo;
	*k1 = (uint32_t)(hi < (long long)K ? (hi < lo ? lo : hi) : K);
}

/* y[i] += x[i] */
static inline void add(float *restrict y, const float *restrict x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += x[i];
}

/* x: (B, L, c) -> P: (B n_steps, K c), row (b, t) = rows [t s - p, t s - p + K)
 * of sample b, zeros where they fall outside [0, L). */
static void im2col(float *restrict P, const float *restrict x, uint32_t B, uint32_t L,
		   uint32_t c, uint32_t K, uint32_t s, uint32_t n_steps)
{
	uint32_t p = (K - 1) / 2;
	size_t KC = (size_t)K * c;

	for (uint32_t n = 0; n < B; n++)
		for (uint32_t t = 0; t < n_steps; t++) {
			float *row = P + ((size_t)n * n_steps + t) * KC;
			uint32_t k0, k1;

			taps(t, s, p, K, L, &k0, &k1);
			memset(row, 0, sizeof(float) * k0 * c);
			memcpy(row + (size_t)k0 * c, x + ((size_t)n * L + (size_t)t * s + k0 - p) * c,
			       sizeof(float) * (k1 - k0) * c);
			memset(row + (size_t)k1 * c, 0, sizeof(float) * (K - k1) * c);
		}
}

/* The adjoint of im2col, added: y: (B, L, c) += the rows of G: (B n_steps,
 * K c) on the runs they came from, clipped to [0, L). */
static void col2im_add(float *restrict y, const float *restrict G, uint32_t B, uint32_t L,
		       uint32_t c, uint32_t K, uint32_t s, uint32_t n_steps)
{
	uint32_t p = (K - 1) / 2;
	size_t KC = (size_t)K * c;

	for (uint32_t n = 0; n < B; n++)
		for (uint32_t t = 0; t < n_steps; t++) {
			uint32_t k0, k1;

			taps(t, s, p, K, L, &k0, &k1);
			add(y + ((size_t)n * L + (size_t)t * s + k0 - p) * c,
			    G + ((size_t)n * n_steps + t) * KC + (size_t)k0 * c, (size_t)(k1 - k0) * c);
		}
}

/* db[o] = sum over the n rows of dy (n, c) */
static void col_sums(float *restrict db, const float *restrict dy, size_t n, uint32_t c)
{
	memset(db, 0, sizeof(float) * c);
	for (size_t r = 0; r < n; r++)
		add(db, dy + r * c, c);
}

/* Samples per GEMM: the patch matrices hold at most this many, so the
 * scratch (and a model's memory) does not grow with max_batch beyond it. */
#define CHUNK 32u

size_t fv_conv1d_scratch(uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K,
			 uint32_t s, int deconv)
{
	size_t nb = B < CHUNK ? B : CHUNK, Lo = fv_conv1d_out_len(L, s, deconv);

	if (deconv) /* Z W or P(dY); W^T; a chunk's dW */
		return nb * L * K * cout + 2 * (size_t)K * cout * cin;
	/* P(X), then dY W in its place; W^T or a chunk's dW */
	return nb * Lo * K * cin + (size_t)K * cin * cout;
}

/* Chunk [n0, n0 + nb) of B samples. */
#define FOR_CHUNKS(n0, nb, B) \
	for (uint32_t n0 = 0, nb; n0 < (B) && ((nb = (B) - n0 < CHUNK ? (B) - n0 : CHUNK), 1); \
	     n0 += nb)

/* ---- conv ---- */

void fv_conv1d_fwd(float *restrict y, const float *restrict x, const float *restrict w,
		   const float *restrict b, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
		   uint32_t K, uint32_t s, float *restrict scratch)
{
	const struct fv_nn_kernels *k = fv_nn_kernels();
	uint32_t Lo = fv_conv1d_out_len(L, s, 0);
	size_t KC = (size_t)K * cin;
	float *P = scratch, *wt = scratch + (size_t)(B < CHUNK ? B : CHUNK) * Lo * KC;

	if (cout >= SMALL_COUT)
		fv_nn_transpose(wt, w, (uint32_t)KC, cout); /* (KC, cout) */
	FOR_CHUNKS(n0, nb, B) {
		size_t rows = (size_t)nb * Lo;
		float *yc = y + (size_t)n0 * Lo * cout;

		im2col(P, x + (size_t)n0 * L * cin, nb, L, cin, K, s, Lo);
		if (cout < SMALL_COUT) {
			/* A GEMM tile is 16+ columns wide: for a few output channels
			 * (the last layer maps back to the window's channels) one
			 * matrix-vector product per step wastes less. */
			for (size_t r = 0; r < rows; r++)
				k->gemv(yc + r * cout, w, P + r * KC, b, cout, (uint32_t)KC);
		} else {
			k->gemm(yc, P, KC, 1, wt, cout, b, (uint32_t)rows, cout, (uint32_t)KC);
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
		   uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s,
		   float *restrict scratch)
{
	const struct fv_nn_kernels *k = fv_nn_kernels();
	uint32_t Lo = fv_conv1d_out_len(L, s, 0);
	size_t KC = (size_t)K * cin;
	float *P = scratch, *dwc = scratch + (size_t)(B < CHUNK ? B : CHUNK) * Lo * KC;

	col_sums(db, dy, (size_t)B * Lo, cout);
	if (dx)
		memset(dx, 0, sizeof(float) * B * L * cin);
	FOR_CHUNKS(n0, nb, B) {
		size_t rows = (size_t)nb * Lo;
		const float *dyc = dy + (size_t)n0 * Lo * cout;

		/* dW (cout, KC) = dY^T (cout, rows) P(X) (rows, KC), summed over chunks */
		im2col(P, x + (size_t)n0 * L * cin, nb, L, cin, K, s, Lo);
		k->gemm(n0 ? dwc : dw, dyc, 1, cout, P, KC, NULL, cout, (uint32_t)KC, (uint32_t)rows);
		if (n0)
			add(dw, dwc, KC * cout);
		if (dx) {
			/* dY W (rows, KC): row r is the gradient of row r's patch */
			k->gemm(P, dyc, cout, 1, w, KC, NULL, (uint32_t)rows, (uint32_t)KC, cout);
			col2im_add(dx + (size_t)n0 * L * cin, P, nb, L, cin, K, s, Lo);
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
		     uint32_t K, uint32_t s, float *restrict scratch)
{
	uint32_t Lo = fv_conv1d_out_len(L, s, 1);
	size_t KO = (size_t)K * cout;

	for (size_t r = 0; r < (size_t)B * Lo; r++)
		memcpy(y + r * cout, b, sizeof(float) * cout);
	FOR_CHUNKS(n0, nb, B) {
		/* G (nb L, KO) = Z W: row t of G is what input step t adds onto
		 * output rows [t s - p, t s - p + K). */
		fv_nn_kernels()->gemm(scratch, z + (size_t)n0 * L * cin, cin, 1, w, KO, NULL, nb * L,
				      (uint32_t)KO, cin);
		col2im_add(y + (size_t)n0 * Lo * cout, scratch, nb, Lo, cout, K, s, L);
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
		     uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s,
		     float *restrict scratch)
{
	const struct fv_nn_kernels *k = fv_nn_kernels();
	uint32_t Lo = fv_conv1d_out_len(L, s, 1);
	size_t KO = (size_t)K * cout;
	float *Q = scratch, *wt = scratch + (size_t)(B < CHUNK ? B : CHUNK) * L * KO;
	float *dwc = wt + KO * cin;

	col_sums(db, dy, (size_t)B * Lo, cout);
	if (dz)
		fv_nn_transpose(wt, w, (uint32_t)KO, cin); /* (KO, cin) */
	FOR_CHUNKS(n0, nb, B) {
		size_t rows = (size_t)nb * L;
		const float *zc = z + (size_t)n0 * L * cin;

		/* P(dY) (rows, KO): input step t's patch of dY, rows [t s - p, t s - p + K) */
		im2col(Q, dy + (size_t)n0 * Lo * cout, nb, Lo, cout, K, s, L);
		/* dW (cin, KO) = Z^T (cin, rows) P(dY), summed over chunks */
		k->gemm(n0 ? dwc : dw, zc, 1, cin, Q, KO, NULL, cin, (uint32_t)KO, (uint32_t)rows);
		if (n0)
			add(dw, dwc, KO * cin);
		/* dZ (rows, cin) = P(dY) W^T (KO, cin) */
		if (dz)
			k->gemm(dz + (size_t)n0 * L * cin, Q, KO, 1, wt, cin, NULL, (uint32_t)rows, cin,
				(uint32_t)KO);
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
