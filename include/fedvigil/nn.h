/* fedvigil neural-network core: autoencoders trained on MSE with SGD,
 * momentum or Adam, dropout, denoising input noise and L2 weight decay.
 *
 * A model's parameters live in one contiguous float array and its gradients
 * in another, so averaging, compressing and saving are operations on one
 * vector. Dense layout, layer by layer: W (out x in, row-major) then b (out).
 *
 * Model families: a spec has a kind (enum fv_model_kind). FV_MODEL_DENSE is
 * a stack of fully connected layers described by sizes[] and acts[]; other
 * kinds (temporal models) interpret the spec their own way and plug into
 * lib/nn/model.c's dispatch (lib/nn/nn-int.h). Everything else here -- the
 * parameter vector, optimisers, training loop, memory budget -- is shared. */
#ifndef FEDVIGIL_NN_H
#define FEDVIGIL_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_NN_MAX_LAYERS 16     /* dense layers, including the output */
#define FV_NN_MAX_WIDTH 8192    /* any layer's width */
#define FV_NN_MAX_PARAMS (4u << 20)
#define FV_NN_MAX_DROPOUT 0.9f  /* largest drop probability */
#define FV_NN_MAX_NOISE 10.0f   /* largest input-noise standard deviation */
/* Temporal (conv1d) models: */
#define FV_NN_MAX_WINDOW 4096   /* time steps of an input, and of any layer */
#define FV_NN_MAX_CHANNELS 1024 /* channels of any layer */
#define FV_NN_MAX_KERNEL 31     /* taps of a convolution (odd) */
#define FV_NN_MAX_STRIDE 8      /* stride of a convolution */
#define FV_NN_MAX_CONV_ELEMS (1u << 18) /* steps * channels of any layer's output */

enum fv_act {
	FV_ACT_LINEAR = 0,
	FV_ACT_RELU = 1,
	FV_ACT_TANH = 2,
	FV_ACT_SIGMOID = 3,
};

/* "linear|relu|tanh|sigmoid" -> act; -EINVAL otherwise. */
int fv_act_parse(const char *s, enum fv_act *ret_act);
const char *fv_act_name(enum fv_act act);

/* Model families. The value travels in ModelSpec.kind; 0 is the dense
 * autoencoder, so messages from before kinds existed stay valid. */
enum fv_model_kind {
	FV_MODEL_DENSE = 0,  /* fully connected layers: sizes[], acts[] */
	FV_MODEL_CONV1D = 1, /* temporal: 1-D (transposed) convolutions over
			      * the window's time axis (lib/nn/conv1d.c) */
};

/* What a conv1d layer does to the time axis. */
enum fv_conv_op {
	FV_CONV_DOWN = 0, /* convolution: L steps -> ceil(L / stride) */
	FV_CONV_UP = 1,   /* transposed convolution: L steps -> L * stride */
};

/* Architecture. Dense: n_layers layers, sizes[0] inputs ... sizes[n_layers]
 * outputs (== sizes[0] for an autoencoder), acts[i] after layer i.
 * dropout and noise act only while training (fv_model_train()); scoring and
 * fv_model_forward()/fv_model_grad() are deterministic.
 * Conv1d: sizes[l] are channel counts (sizes[0] == sizes[n_layers] == the
 * window's channels C), layer l is conv[l] with kernel[l] taps and
 * stride[l]; the input is `window` steps of C values, time-major (W x C);
 * no dropout. Unused entries are zero (specs are compared with memcmp). */
struct fv_model_spec {
	uint32_t kind;                          /* enum fv_model_kind */
	uint32_t n_layers;                      /* 1..FV_NN_MAX_LAYERS */
	uint32_t sizes[FV_NN_MAX_LAYERS + 1];   /* layer widths */
	uint8_t acts[FV_NN_MAX_LAYERS];         /* enum fv_act per layer */
	float dropout[FV_NN_MAX_LAYERS];        /* drop probability of layer i's
						 * outputs (inverted dropout),
						 * 0..FV_NN_MAX_DROPOUT; 0 for
						 * the output layer */
	float noise;                            /* denoising: standard deviation
						 * of zero-mean noise added to
						 * the input (the loss compares
						 * with the clean input); 0 = off */
	uint32_t window;                        /* conv1d: time steps W of an
						 * input; 0 for dense */
	uint8_t conv[FV_NN_MAX_LAYERS];         /* conv1d: enum fv_conv_op */
	uint8_t kernel[FV_NN_MAX_LAYERS];       /* conv1d: taps, odd,
						 * 1..FV_NN_MAX_KERNEL */
	uint8_t stride[FV_NN_MAX_LAYERS];       /* conv1d: 1..FV_NN_MAX_STRIDE */
};

/* Build an autoencoder spec: input -> hidden[0] -> ... -> hidden[n-1] -> input,
 * hidden layers with `act`, output with `out_act`, no dropout or noise.
 * -EINVAL/-E2BIG on bad sizes. */
int fv_model_spec_autoencoder(uint32_t input, const uint32_t *hidden, uint32_t n_hidden,
			      enum fv_act act, enum fv_act out_act,
			      struct fv_model_spec *ret_spec);
/* Build a temporal convolutional autoencoder over windows of `window`
 * steps of `channels` values: n strided convolutions C -> filters[0] ->
 * ... -> filters[n-1] (the encoder: each divides the length by stride),
 * n transposed convolutions back through filters[n-1] ... filters[0]
 * (each multiplies it by stride), and a stride-1 convolution to C
 * channels with out_act; every layer has `kernel` taps (odd), the hidden
 * ones `act`. window must be a multiple of stride^n. -EINVAL on bad
 * arguments, -EDOM/-E2BIG when the result is not a valid spec. */
int fv_model_spec_conv1d(uint32_t window, uint32_t channels, const uint32_t *filters,
			 uint32_t n, uint32_t kernel, uint32_t stride, enum fv_act act,
			 enum fv_act out_act, struct fv_model_spec *ret_spec);
/* Set dropout p on every hidden layer's output and input noise sigma.
 * -EINVAL (spec untouched) unless 0 <= p <= FV_NN_MAX_DROPOUT and
 * 0 <= sigma <= FV_NN_MAX_NOISE. */
int fv_model_spec_regularize(struct fv_model_spec *spec, float p, float sigma);
/* Parse a hidden-layer list such as "32,8,32" into hidden[] (at most max
 * entries). Returns the count or -EINVAL. */
int fv_model_hidden_parse(const char *s, uint32_t *hidden, uint32_t max);
/* 0 if the spec is well formed (known kind, sizes in range, acts known,
 * autoencoder shape in == out, dropout/noise in range, total params <=
 * FV_NN_MAX_PARAMS), else -EDOM/-E2BIG. */
int fv_model_spec_validate(const struct fv_model_spec *spec);
/* Number of parameters (weights + biases); 0 for a malformed spec. */
size_t fv_model_spec_nparams(const struct fv_model_spec *spec);
/* The layer widths as "128-64-32-16-32-64-128" into buf (always
 * terminated); returns the length it needed, like snprintf. Conv1d:
 * "conv1d 32x5: c32k7s2-c16k7s2-t16k7s2-t32k7s2-c5k7s1" (window x
 * channels, then per layer c = conv or t = transposed, output channels,
 * kernel, stride). */
int fv_model_spec_format(const struct fv_model_spec *spec, char *buf, size_t len);

/* ---- presets: the models of the literature ----
 *
 *   ae8     8-4-2-4-8         relu hidden, linear output
 *   ae20    20-12-6-12-20     relu hidden, sigmoid output
 *   dae128  128-16-128        tanh hidden, linear output, dropout 0.2 on the
 *                             code, input noise sigma 0.1 (denoising)
 *   sae     128-64-32-16-32-64-128  relu hidden, linear output (stacked
 *                             encoder with a mirrored decoder)
 *   conv1d  temporal: conv 32 and 16 filters, kernel 7, stride 2, mirrored
 *           by transposed convs, then a kernel-7 conv back to C channels;
 *           relu hidden, linear output (the 1-D convolutional autoencoder
 *           of Keras' time-series anomaly example). Needs the window and
 *           the channels, not only their product: fv_model_spec_preset_wc().
 *
 * A preset fixes the hidden layers; its input and output layers take
 * whatever width the data has (window * channels), so "ae8" on 50 inputs is
 * 50-4-2-4-50. The nominal input is the width of the published model. */
enum fv_preset {
	FV_PRESET_CUSTOM = 0, /* no preset: layers given explicitly */
	FV_PRESET_AE8 = 1,
	FV_PRESET_AE20 = 2,
	FV_PRESET_DAE128 = 3,
	FV_PRESET_SAE = 4,
	FV_PRESET_CONV1D = 5,
};
#define FV_PRESET_COUNT 6

/* "custom|ae8|ae20|dae128|sae|conv1d" -> preset; -EINVAL otherwise. */
int fv_preset_parse(const char *s, enum fv_preset *ret_preset);
const char *fv_preset_name(enum fv_preset p);
/* Input width of the published model (0 for FV_PRESET_CUSTOM, and for
 * conv1d, which takes any window). */
uint32_t fv_preset_nominal_input(enum fv_preset p);
/* The preset's spec on `input` inputs. -EINVAL for CUSTOM or an unknown
 * preset, -E2BIG when input is too wide. */
int fv_model_spec_preset(enum fv_preset p, uint32_t input, struct fv_model_spec *ret_spec);
/* Any preset on windows of `window` steps of `channels` values: the dense
 * ones on window * channels inputs (as fv_model_spec_preset()), conv1d
 * through fv_model_spec_conv1d() (window a multiple of 4). -EINVAL for
 * CUSTOM, an unknown preset or a zero size; -E2BIG/-EDOM when it does not
 * fit. */
int fv_model_spec_preset_wc(enum fv_preset p, uint32_t window, uint32_t channels,
			    struct fv_model_spec *ret_spec);

/* ---- memory budget ---- */

/* Bytes a model takes, by part, before it is built. */
struct fv_model_mem {
	size_t params;  /* parameters */
	size_t grads;   /* gradients (0 for a scorer) */
	size_t optim;   /* optimiser state: two moment vectors (0 for a scorer) */
	size_t act;     /* activations, dropout masks and scratch for max_batch rows */
	size_t total;   /* everything fv_model_new()/fv_model_new_scorer()
			 * allocates: the parts above, alignment and the struct */
};
/* Fill *ret for a model of this spec holding max_batch rows; train selects
 * fv_model_new() (true) or fv_model_new_scorer() (false). -EDOM/-E2BIG for a
 * bad spec, -EINVAL for max_batch 0, -EOVERFLOW when it does not fit in
 * size_t. */
int fv_model_spec_mem(const struct fv_model_spec *spec, uint32_t max_batch, bool train,
		      struct fv_model_mem *ret);
/* Total bytes fv_model_new() would allocate for this spec and batch size;
 * 0 if the spec is invalid or max_batch is 0, SIZE_MAX if it overflows. */
size_t fv_model_spec_bytes(const struct fv_model_spec *spec, uint32_t max_batch);

/* ---- models ---- */

struct fv_model;

/* Allocate a trainable model (params, grads, optimiser state, activations
 * for up to max_batch samples). Parameters are zero until fv_model_init()
 * or fv_model_set_params(). Caller owns the result; NULL on -ENOMEM/bad spec
 * (errno ENOMEM or EINVAL). forward/grad/score/step never allocate. */
struct fv_model *fv_model_new(const struct fv_model_spec *spec, uint32_t max_batch);
/* The same for scoring only: no gradients or optimiser state (grad, step
 * and train return -EPERM). */
struct fv_model *fv_model_new_scorer(const struct fv_model_spec *spec, uint32_t max_batch);
void fv_model_free(struct fv_model *m);

const struct fv_model_spec *fv_model_get_spec(const struct fv_model *m);
size_t fv_model_nparams(const struct fv_model *m);
/* Borrowed pointers into the model's contiguous arrays (grads is NULL for a
 * scorer). */
float *fv_model_params(struct fv_model *m);
float *fv_model_grads(struct fv_model *m);

/* Deterministic initialisation from seed (Xavier/Glorot uniform for
 * tanh/sigmoid/linear, He for ReLU; biases zero). Resets optimiser state. */
void fv_model_init(struct fv_model *m, uint64_t seed);
/* Copy n params in; -EDOM if n != nparams, -ERANGE if any is NaN/Inf. */
int fv_model_set_params(struct fv_model *m, const float *params, size_t n);

/* Forward pass (no dropout, no noise).
 * x: (B, in) -> ret_y: (B, out) (may be NULL); B <= max_batch. */
int fv_model_forward(struct fv_model *m, const float *x, uint32_t B, float *ret_y);
/* Reconstruction score of one sample: mean of squared errors over the
 * input; ret_sqerr (in) gets each element's squared error (may be NULL). */
float fv_model_score(struct fv_model *m, const float *x, float *ret_sqerr);
/* MSE loss of a batch and its gradient into fv_model_grads() (overwritten),
 * without dropout, noise or weight decay.
 * loss = mean over B*in elements of (y - x)^2. x: (B, in). */
int fv_model_grad(struct fv_model *m, const float *x, uint32_t B, float *ret_loss);

/* ---- optimisers and training ---- */

/* Values travel in HyperParams.optimizer; 0 is Adam, the v1 default. */
enum fv_optim {
	FV_OPTIM_ADAM = 0,     /* Adam (Kingma & Ba), bias-corrected */
	FV_OPTIM_SGD = 1,      /* p -= lr g */
	FV_OPTIM_MOMENTUM = 2, /* v = momentum v + g; p -= lr v (PyTorch's SGD) */
};
/* "adam|sgd|momentum" -> optim; -EINVAL otherwise. */
int fv_optim_parse(const char *s, enum fv_optim *ret_optim);
const char *fv_optim_name(enum fv_optim o);

/* How to train. weight_decay is L2 regularisation of the weights (not the
 * biases): the objective gains weight_decay/2 * sum W^2, i.e. each weight's
 * gradient gains weight_decay * W, for every optimiser. */
struct fv_train_opts {
	enum fv_optim optim;
	float lr;           /* learning rate, > 0 */
	float momentum;     /* FV_OPTIM_MOMENTUM, 0 <= momentum < 1 */
	float beta1;        /* FV_OPTIM_ADAM: 0.9 */
	float beta2;        /* FV_OPTIM_ADAM: 0.999 */
	float eps;          /* FV_OPTIM_ADAM: 1e-8 */
	float weight_decay; /* L2 coefficient, >= 0 */
	/* FedProx (Li et al. 2020): fv_model_train() adds
	 * prox_mu * (params - prox_base) to every gradient before the step,
	 * the gradient of (prox_mu / 2) |w - w_base|^2. 0 / NULL = off.
	 * prox_base: nparams floats, borrowed for the call. */
	float prox_mu;      /* >= 0 */
	const float *prox_base;
};
#define FV_TRAIN_DEFAULTS                                                               \
	{ .optim = FV_OPTIM_ADAM, .lr = 1e-3f, .momentum = 0.9f, .beta1 = 0.9f,         \
	  .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f }
/* 0 if the options are usable (finite, in the ranges above), else -EINVAL. */
int fv_train_opts_validate(const struct fv_train_opts *o);

/* grads += mu * (params - base): the proximal term of FedProx, for the
 * gradients currently in fv_model_grads(). base: nparams floats. */
void fv_model_prox_grad(struct fv_model *m, float mu, const float *base);
/* Zero the optimiser state (moments, velocity, step count). */
void fv_model_optim_reset(struct fv_model *m);
/* One optimiser step with the gradients currently in fv_model_grads()
 * (which already include weight decay when they came from training). */
int fv_model_step(struct fv_model *m, const struct fv_train_opts *o);

/* Train `epochs` passes over data (N, in) in shuffled mini-batches of
 * `batch` (<= max_batch). seed drives the shuffle, the dropout masks and
 * the input noise: equal inputs give bit-identical results on one build.
 * *ret_loss gets the mean data loss (MSE, without the L2 term) of the last
 * epoch. A last partial batch is used. epochs == 0 only evaluates the loss
 * (without dropout and noise). -EINVAL on bad sizes or options, -EPERM on a
 * scorer, -ERANGE (before touching the model) if data holds NaN/Inf,
 * -ENOMEM if the shuffle index (N size_t, the only allocation) fails. */
int fv_model_train(struct fv_model *m, const float *data, size_t N, uint32_t epochs,
		   uint32_t batch, const struct fv_train_opts *o, uint64_t seed,
		   float *ret_loss);

/* Where fv_model_train_rows() gets its training rows: copy row i (< N) into
 * dst (in floats). Called for every row of every batch, and once for every
 * row before training (the NaN/Inf check), so it must return the same row
 * for the same i. */
typedef void (*fv_model_row_fn)(void *ctx, size_t i, float *dst);
/* fv_model_train() over rows produced on demand, for a training set that
 * is not one array (the agent builds each window from its ring buffer
 * instead of copying them all out first). Same semantics and results. */
int fv_model_train_rows(struct fv_model *m, fv_model_row_fn row, void *ctx, size_t N,
			uint32_t epochs, uint32_t batch, const struct fv_train_opts *o,
			uint64_t seed, float *ret_loss);

#endif
