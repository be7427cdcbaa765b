/* Internals of lib/nn shared by its files and the unit tests: the model
 * struct, the per-kind dispatch, the scratch arena and the training RNG.
 * Not part of the public API.
 *
 * Adding a model family: add its value to enum fv_model_kind (nn.h), write
 * a `const struct fv_nn_kind` in its own file (lib/nn/<kind>.c), add its
 * private state to struct fv_model and one line to the kinds[] table in
 * lib/nn/model.c. model.c then provides the parameter vector, optimisers,
 * input noise, training loop and memory budget for it. */
#ifndef FEDVIGIL_NN_INT_H
#define FEDVIGIL_NN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/nn.h"
#include "fedvigil/util.h"

#define FV_NN_ALIGN 64u /* bytes; every array starts on a cache line */

/* Carves float arrays out of one allocation. With base == NULL it only
 * counts (the sizing pass of fv_model_spec_mem()). */
struct fv_nn_arena {
	float *base;   /* start of the float area, or NULL when sizing */
	size_t used;   /* floats handed out so far, each array rounded up */
	bool overflow; /* a size did not fit in size_t */
};
/* Reserve n1 * n2 floats (cache-line aligned). Returns the array, or NULL
 * when sizing or on overflow (then a->overflow is set). */
float *fv_nn_arena_take(struct fv_nn_arena *a, size_t n1, size_t n2);

/* Dense-stack state: pointers into the model's float area. */
struct fv_nn_dense {
	size_t w_off[FV_NN_MAX_LAYERS];  /* offset of layer l's W in params */
	size_t b_off[FV_NN_MAX_LAYERS];  /* offset of layer l's b in params */
	float *act[FV_NN_MAX_LAYERS];    /* (max_batch, sizes[l+1]) outputs of layer l */
	float *mask[FV_NN_MAX_LAYERS];   /* (max_batch, sizes[l+1]) dropout multipliers
					  * (0 or 1/(1-p)); NULL without dropout */
	float *drop[FV_NN_MAX_LAYERS];   /* act * mask: next layer's input in training */
	float *delta[2];                 /* (max_batch, max_width) backprop scratch */
	float *wt;                       /* W^T scratch of the batch forward path, or NULL */
	uint32_t max_width;              /* widest layer */
};

/* Conv1d state (lib/nn/conv1d.c): offsets into params and pointers into
 * the model's float area. */
struct fv_nn_conv1d {
	size_t w_off[FV_NN_MAX_LAYERS];      /* offset of layer l's W in params */
	size_t b_off[FV_NN_MAX_LAYERS];      /* offset of layer l's b in params */
	uint32_t len[FV_NN_MAX_LAYERS + 1];  /* time steps into layer l; len[n_layers]
					      * = the output's (== window) */
	float *act[FV_NN_MAX_LAYERS];        /* (max_batch, len[l+1] * sizes[l+1])
					      * outputs of layer l */
	float *delta[2];                     /* (max_batch, max_elems) backprop scratch */
	float *scratch;                      /* the kernels' scratch (largest
					      * fv_conv1d_scratch() of any layer) */
	size_t max_elems;                    /* largest len[l] * sizes[l] */
};

struct fv_model {
	struct fv_model_spec spec;       /* architecture (validated) */
	const struct fv_nn_kind *kind;   /* its family's functions */
	bool train;                      /* has grads, optimiser state, training scratch */
	uint32_t max_batch;              /* rows the activation buffers hold */
	size_t nparams;                  /* parameter count */
	float *params;                   /* (nparams) */
	float *grads;                    /* (nparams) same layout; NULL for a scorer */
	float *opt_m;                    /* (nparams) Adam first moment / momentum velocity */
	float *opt_v;                    /* (nparams) Adam second moment */
	uint64_t opt_t;                  /* optimiser steps since reset */
	float *batch;                    /* (max_batch, in) clean training rows */
	float *noisy;                    /* (max_batch, in) noisy input; NULL without noise */
	uint64_t rng_key;                /* training RNG: masks and noise */
	uint64_t rng_ctr;                /* draws taken */
	struct fv_nn_dense dense;        /* FV_MODEL_DENSE */
	struct fv_nn_conv1d conv1d;      /* FV_MODEL_CONV1D */
};

/* One model family. Every function gets a model (or spec) of its kind. */
struct fv_nn_kind {
	const char *name;
	/* 0 or -EDOM/-E2BIG; the shared checks (kind, noise) are done. */
	int (*validate)(const struct fv_model_spec *spec);
	/* Parameter count of a valid spec. */
	size_t (*nparams)(const struct fv_model_spec *spec);
	/* Inputs of a valid spec (== outputs). */
	uint32_t (*input)(const struct fv_model_spec *spec);
	/* Take the kind's activation and scratch arrays for max_batch rows
	 * (training ones too when m->train) from a, storing the pointers in m;
	 * m->spec, max_batch, train and nparams are set. Also used for sizing
	 * (a->base NULL; pointers then stay NULL). */
	void (*layout)(struct fv_model *m, struct fv_nn_arena *a);
	/* Initial parameters from rng. */
	void (*init)(struct fv_model *m, struct fv_rng *rng);
	/* x: (B, in) -> the output (B, in) inside the model's scratch. train:
	 * apply dropout (masks already drawn by draw_masks). */
	const float *(*forward)(struct fv_model *m, const float *x, uint32_t B, bool train);
	/* After forward(m, x, B, train): MSE against target (B, in); gradients
	 * into m->grads (overwritten), plus weight_decay * W on the weights.
	 * *ret_sse = sum of squared errors, *ret_l2 = sum of squared weights
	 * (0 when weight_decay is 0). */
	void (*backward)(struct fv_model *m, const float *x, const float *target, uint32_t B,
			 bool train, float weight_decay, double *ret_sse, double *ret_l2);
	/* Draw fresh dropout masks for B rows from the training RNG (NULL if
	 * the kind has no dropout). */
	void (*draw_masks)(struct fv_model *m, uint32_t B);
};

extern const struct fv_nn_kind fv_nn_kind_dense;
extern const struct fv_nn_kind fv_nn_kind_conv1d;
/* fv_model_spec_format() of a valid conv1d spec. */
int fv_nn_conv1d_format(const struct fv_model_spec *spec, char *buf, size_t len);

/* Chain rule through the activation for every kind (lib/nn/dense.c; the
 * forward activation is fv_nn_kernels()->act), in terms of its output y:
 * d: (n) in place, d = d * act'(z). */
void fv_nn_act_backward(float *d, const float *y, size_t n, enum fv_act act);
/* The family of a kind value; NULL if unknown (lib/nn/spec.c holds the table). */
const struct fv_nn_kind *fv_nn_kind_get(uint32_t kind);

/* d = scale * (y - t) for n elements; returns sum (y - t)^2 (in double). */
double fv_nn_mse_grad(float *d, const float *y, const float *t, size_t n, float scale);

/* Counter-based training RNG: the i-th 32-bit draw after the model's
 * counter. fv_nn_rng_fill_* take n draws and advance the counter. */
uint32_t fv_nn_rng_draw(uint64_t key, uint64_t ctr);
/* mask[i] = 0 with probability p, else 1/(1-p). */
void fv_nn_rng_dropout(struct fv_model *m, float *mask, size_t n, float p);
/* dst[i] = src[i] + sigma * z_i, z_i zero-mean, unit-variance noise (a sum
 * of four uniforms: nearly Gaussian, bounded at +-3.46). */
void fv_nn_rng_noise(struct fv_model *m, float *dst, const float *src, size_t n, float sigma);

/* The training-mode gradient used by fv_model_train(): x_in is the network
 * input (noisy or clean), target the clean rows; dropout uses the masks
 * already in the model (fv_nn_dense.mask; tests may fill them by hand).
 * *ret_obj = MSE + weight_decay/2 sum W^2, *ret_mse = MSE (either may be
 * NULL). -EPERM on a scorer, -EINVAL on a bad B. */
int fv_nn_grad_train(struct fv_model *m, const float *x_in, const float *target, uint32_t B,
		     float weight_decay, float *ret_obj, float *ret_mse);

#endif
