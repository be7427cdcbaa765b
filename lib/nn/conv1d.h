/* Internal 1-D convolution kernels of the temporal autoencoder
 * (lib/nn/conv1d.c), exposed for the unit tests, which check each fast
 * path against its plain reference loop and every gradient against finite
 * differences. Not part of the public API.
 *
 * Sequences are time-major ("channels last"): a window of L steps of c
 * channels is the row-major (L, c) array the agent already builds, so the
 * input of one output step is one contiguous run of K * cin floats.
 * Padding is (K - 1) / 2 zeros each side (K odd), as in PyTorch
 *   conv:   Conv1d(cin, cout, K, stride=s, padding=(K-1)/2)        L -> ceil(L/s)
 *   deconv: ConvTranspose1d(cin, cout, K, stride=s, padding=(K-1)/2,
 *                           output_padding=s-1)                      L -> L*s
 * with weights laid out (cout, K, cin) for conv and (cin, K, cout) for
 * deconv (PyTorch: (cout, cin, K) and (cin, cout, K)).
 *
 * The fast kernels run their interior steps through fv_nn_kernels()->gemm
 * and need `scratch` floats of fv_conv1d_scratch() for their shape (their
 * results do not depend on its contents). */
#ifndef FEDVIGIL_NN_CONV1D_H
#define FEDVIGIL_NN_CONV1D_H

#include <stddef.h>
#include <stdint.h>

/* Output length of one layer: ceil(L / s) for conv, L * s for deconv. */
uint32_t fv_conv1d_out_len(uint32_t L, uint32_t s, int deconv);
/* Scratch floats the fast forward and backward kernels of this layer need
 * for B samples. */
size_t fv_conv1d_scratch(uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K,
			 uint32_t s, int deconv);

/* Conv forward.
 * x: (B, L, cin), w: (cout, K, cin), b: (cout) -> y: (B, Lo, cout),
 * Lo = ceil(L / s), y[t, o] = b[o] + sum_{k,i} w[o, k, i] x[t s + k - p, i]. */
void fv_conv1d_fwd(float *y, const float *x, const float *w, const float *b, uint32_t B,
		   uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s, float *scratch);
void fv_conv1d_fwd_ref(float *y, const float *x, const float *w, const float *b, uint32_t B,
		       uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s);
/* Conv backward: dy: (B, Lo, cout), x, w as above -> dw: (cout, K, cin),
 * db: (cout), dx: (B, L, cin) (all overwritten; dx may be NULL). */
void fv_conv1d_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
		   const float *w, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout, uint32_t K,
		   uint32_t s, float *scratch);
void fv_conv1d_bwd_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
		       const float *w, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
		       uint32_t K, uint32_t s);

/* Transposed conv ("deconv") forward.
 * z: (B, L, cin), w: (cin, K, cout), b: (cout) -> y: (B, L s, cout),
 * y[t s + k - p, o] += z[t, i] w[i, k, o] over every t, k, i, plus b[o]. */
void fv_deconv1d_fwd(float *y, const float *z, const float *w, const float *b, uint32_t B,
		     uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s, float *scratch);
void fv_deconv1d_fwd_ref(float *y, const float *z, const float *w, const float *b, uint32_t B,
			 uint32_t L, uint32_t cin, uint32_t cout, uint32_t K, uint32_t s);
/* Deconv backward: dy: (B, L s, cout) -> dw: (cin, K, cout), db: (cout),
 * dz: (B, L, cin) (all overwritten; dz may be NULL). */
void fv_deconv1d_bwd(float *dz, float *dw, float *db, const float *dy, const float *z,
		     const float *w, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
		     uint32_t K, uint32_t s, float *scratch);
void fv_deconv1d_bwd_ref(float *dz, float *dw, float *db, const float *dy, const float *z,
			 const float *w, uint32_t B, uint32_t L, uint32_t cin, uint32_t cout,
			 uint32_t K, uint32_t s);

#endif
