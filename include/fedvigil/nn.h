/* fedvigil neural-network core: dense autoencoders trained with MSE + Adam.
 *
 * A model's parameters live in one contiguous float array and its gradients
 * in another, so averaging, compressing and saving are operations on one
 * vector. Layout, layer by layer: W (out x in, row-major) then b (out). */
#ifndef FEDVIGIL_NN_H
#define FEDVIGIL_NN_H

#include <stddef.h>
#include <stdint.h>

#define FV_NN_MAX_LAYERS 16     /* dense layers, including the output */
#define FV_NN_MAX_WIDTH 8192    /* any layer's width */
#define FV_NN_MAX_PARAMS (4u << 20)

enum fv_act {
	FV_ACT_LINEAR = 0,
	FV_ACT_RELU = 1,
	FV_ACT_TANH = 2,
	FV_ACT_SIGMOID = 3,
};

/* "linear|relu|tanh|sigmoid" -> act; -EINVAL otherwise. */
int fv_act_parse(const char *s, enum fv_act *ret_act);
const char *fv_act_name(enum fv_act act);

/* Architecture: n_layers dense layers, sizes[0] inputs ... sizes[n_layers]
 * outputs (== sizes[0] for an autoencoder), acts[i] after layer i. */
struct fv_model_spec {
	uint32_t n_layers;                      /* 1..FV_NN_MAX_LAYERS */
	uint32_t sizes[FV_NN_MAX_LAYERS + 1];   /* layer widths */
	uint8_t acts[FV_NN_MAX_LAYERS];         /* enum fv_act per layer */
};

/* Build an autoencoder spec: input -> hidden[0] -> ... -> hidden[n-1] -> input,
 * hidden layers with `act`, output with `out_act`. -EINVAL/-E2BIG on bad
 * sizes. */
int fv_model_spec_autoencoder(uint32_t input, const uint32_t *hidden, uint32_t n_hidden,
			      enum fv_act act, enum fv_act out_act,
			      struct fv_model_spec *ret_spec);
/* Parse a hidden-layer list such as "32,8,32" into hidden[] (at most max
 * entries). Returns the count or -EINVAL. */
int fv_model_hidden_parse(const char *s, uint32_t *hidden, uint32_t max);
/* 0 if the spec is well formed (sizes in range, acts known, autoencoder
 * shape in == out, total params <= FV_NN_MAX_PARAMS), else -EDOM/-E2BIG. */
int fv_model_spec_validate(const struct fv_model_spec *spec);
/* Number of parameters (weights + biases). */
size_t fv_model_spec_nparams(const struct fv_model_spec *spec);
/* Bytes fv_model_new() would allocate for this spec and batch size; 0 if the
 * spec is invalid or max_batch is 0, SIZE_MAX if it overflows. */
size_t fv_model_spec_bytes(const struct fv_model_spec *spec, uint32_t max_batch);

struct fv_model;

/* Allocate a model (params, grads, Adam moments, activations for up to
 * max_batch samples). Parameters are zero until fv_model_init() or
 * fv_model_set_params(). Caller owns the result; NULL on -ENOMEM/bad spec
 * (errno ENOMEM or EINVAL). forward/grad/score/adam_step never allocate. */
struct fv_model *fv_model_new(const struct fv_model_spec *spec, uint32_t max_batch);
void fv_model_free(struct fv_model *m);

const struct fv_model_spec *fv_model_get_spec(const struct fv_model *m);
size_t fv_model_nparams(const struct fv_model *m);
/* Borrowed pointers into the model's contiguous arrays. */
float *fv_model_params(struct fv_model *m);
float *fv_model_grads(struct fv_model *m);

/* Deterministic initialisation from seed (Xavier/Glorot uniform for
 * tanh/sigmoid/linear, He for ReLU; biases zero). Resets Adam state. */
void fv_model_init(struct fv_model *m, uint64_t seed);
/* Copy n params in; -EDOM if n != nparams, -ERANGE if any is NaN/Inf. */
int fv_model_set_params(struct fv_model *m, const float *params, size_t n);

/* Forward pass.
 * x: (B, in) -> ret_y: (B, out) (may be NULL); B <= max_batch. */
int fv_model_forward(struct fv_model *m, const float *x, uint32_t B, float *ret_y);
/* Reconstruction score of one sample: mean of squared errors over the
 * input; ret_sqerr (in) gets each element's squared error (may be NULL). */
float fv_model_score(struct fv_model *m, const float *x, float *ret_sqerr);
/* MSE loss of a batch and its gradient into fv_model_grads() (overwritten).
 * loss = mean over B*in elements of (y - x)^2. x: (B, in). */
int fv_model_grad(struct fv_model *m, const float *x, uint32_t B, float *ret_loss);

/* Adam optimiser state kept inside the model. */
struct fv_adam_opts {
	float lr;    /* learning rate, e.g. 1e-3 */
	float beta1; /* 0.9 */
	float beta2; /* 0.999 */
	float eps;   /* 1e-8 */
};
#define FV_ADAM_DEFAULTS { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f }
/* Zero the moments and step count. */
void fv_model_adam_reset(struct fv_model *m);
/* One Adam step with the gradients currently in fv_model_grads(). */
void fv_model_adam_step(struct fv_model *m, const struct fv_adam_opts *o);

/* Train `epochs` passes over data (N, in) in shuffled mini-batches of
 * `batch` (<= max_batch), shuffling with seed. *ret_loss gets the mean loss
 * of the last epoch. Deterministic for equal inputs. A last partial batch is
 * used. epochs == 0 only evaluates the loss. -EINVAL on bad sizes or Adam
 * options, -ERANGE (before touching the model) if data holds NaN/Inf,
 * -ENOMEM if the shuffle index (N size_t, the only allocation) fails. */
int fv_model_train(struct fv_model *m, const float *data, size_t N, uint32_t epochs,
		   uint32_t batch, const struct fv_adam_opts *o, uint64_t seed,
		   float *ret_loss);

#endif
