/* Internal dense-layer kernels of lib/nn, exposed for the unit tests (which
 * check the fast paths against the plain reference loops). Not part of the
 * public API: include only from lib/nn and tests/unit/test_nn.c. */
#ifndef FEDVIGIL_NN_KERNELS_H
#define FEDVIGIL_NN_KERNELS_H

#include <stdint.h>

/* Dense forward, fast path (blocked, vectorisable dot products).
 * x: (B, in), w: (out, in), b: (out) -> y: (B, out); y = x w^T + b.
 * y must not alias x or w. */
void fv_nn_matmul_fwd(float *y, const float *x, const float *w, const float *b,
		      uint32_t B, uint32_t in, uint32_t out);
/* The same product as three plain nested loops; the reference the fast path
 * is tested against. */
void fv_nn_matmul_fwd_ref(float *y, const float *x, const float *w, const float *b,
			  uint32_t B, uint32_t in, uint32_t out);

/* Dense forward from a transposed weight matrix, the fast path for batches:
 * x: (B, in), wt: (in, out), b: (out) -> y: (B, out). Performs the same
 * operations in the same order as fv_nn_matmul_fwd_ref() with w = wt^T. */
void fv_nn_matmul_fwd_t(float *y, const float *x, const float *wt, const float *b,
			uint32_t B, uint32_t in, uint32_t out);
/* w: (out, in) -> wt: (in, out). */
void fv_nn_transpose(float *wt, const float *w, uint32_t in, uint32_t out);

/* Dense backward, weight/bias gradients (overwritten, not accumulated).
 * dy: (B, out), x: (B, in) -> dw: (out, in) = dy^T x, db: (out) = sum_b dy. */
void fv_nn_matmul_bwd_w(float *dw, float *db, const float *dy, const float *x,
			uint32_t B, uint32_t in, uint32_t out);
/* Dense backward, input gradient (overwritten).
 * dy: (B, out), w: (out, in) -> dx: (B, in) = dy w. */
void fv_nn_matmul_bwd_x(float *dx, const float *dy, const float *w,
			uint32_t B, uint32_t in, uint32_t out);

#endif
