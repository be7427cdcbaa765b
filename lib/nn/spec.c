/* Model specs: names, parsing, validation, presets and training options.
 * The per-kind parts are dispatched through fv_nn_kind_get(). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn-int.h"

/* Every model family, indexed by enum fv_model_kind. */
static const struct fv_nn_kind *const kinds[] = {
	[FV_MODEL_DENSE] = &fv_nn_kind_dense,
	[FV_MODEL_CONV1D] = &fv_nn_kind_conv1d,
};

const struct fv_nn_kind *fv_nn_kind_get(uint32_t kind)
{
	return kind < FV_ARRAY_SIZE(kinds) ? kinds[kind] : NULL;
}

/* ---- names ---- */

static int name_parse(const char *const *names, size_t n, const char *s, int *ret)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (names[i] && strcmp(s, names[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	return -EINVAL;
}

static const char *const act_names[] = {
	[FV_ACT_LINEAR] = "linear",
	[FV_ACT_RELU] = "relu",
	[FV_ACT_TANH] = "tanh",
	[FV_ACT_SIGMOID] = "sigmoid",
};

int fv_act_parse(const char *s, enum fv_act *ret_act)
{
	int v, r = name_parse(act_names, FV_ARRAY_SIZE(act_names), s, &v);

	if (r == 0)
		*ret_act = (enum fv_act)v;
	return r;
}

const char *fv_act_name(enum fv_act act)
{
	return (unsigned)act < FV_ARRAY_SIZE(act_names) ? act_names[act] : "unknown";
}

static const char *const optim_names[] = {
	[FV_OPTIM_ADAM] = "adam",
	[FV_OPTIM_SGD] = "sgd",
	[FV_OPTIM_MOMENTUM] = "momentum",
};

int fv_optim_parse(const char *s, enum fv_optim *ret_optim)
{
	int v, r = name_parse(optim_names, FV_ARRAY_SIZE(optim_names), s, &v);

	if (r == 0)
		*ret_optim = (enum fv_optim)v;
	return r;
}

const char *fv_optim_name(enum fv_optim o)
{
	return (unsigned)o < FV_ARRAY_SIZE(optim_names) ? optim_names[o] : "unknown";
}

/* ---- presets ---- */

struct preset {
	const char *name;
	uint32_t nominal;         /* input width of the published model */
	uint32_t n_hidden;
	uint32_t hidden[8];
	enum fv_act act, out_act;
	float dropout, noise;
};

static const struct preset presets[FV_PRESET_COUNT] = {
	[FV_PRESET_CUSTOM] = { .name = "custom" },
	[FV_PRESET_AE8] = { "ae8", 8, 3, { 4, 2, 4 }, FV_ACT_RELU, FV_ACT_LINEAR, 0, 0 },
	[FV_PRESET_AE20] = { "ae20", 20, 3, { 12, 6, 12 }, FV_ACT_RELU, FV_ACT_SIGMOID, 0, 0 },
	[FV_PRESET_DAE128] = { "dae128", 128, 1, { 16 }, FV_ACT_TANH, FV_ACT_LINEAR, 0.2f, 0.1f },
	[FV_PRESET_SAE] = { "sae", 128, 5, { 64, 32, 16, 32, 64 }, FV_ACT_RELU, FV_ACT_LINEAR, 0,
			    0 },
	/* Temporal: hidden[] are the encoder's filters (fv_model_spec_preset_wc). */
	[FV_PRESET_CONV1D] = { "conv1d", 0, 2, { 32, 16 }, FV_ACT_RELU, FV_ACT_LINEAR, 0, 0 },
};

/* The conv1d preset's kernel and stride. */
#define CONV1D_KERNEL 7
#define CONV1D_STRIDE 2

int fv_preset_parse(const char *s, enum fv_preset *ret_preset)
{
	const char *names[FV_PRESET_COUNT];
	int v, r;

	for (size_t i = 0; i < FV_PRESET_COUNT; i++)
		names[i] = presets[i].name;
	r = name_parse(names, FV_PRESET_COUNT, s, &v);
	if (r == 0)
		*ret_preset = (enum fv_preset)v;
	return r;
}

const char *fv_preset_name(enum fv_preset p)
{
	return (unsigned)p < FV_PRESET_COUNT ? presets[p].name : "unknown";
}

uint32_t fv_preset_nominal_input(enum fv_preset p)
{
	return (unsigned)p < FV_PRESET_COUNT ? presets[p].nominal : 0;
}

int fv_model_spec_preset(enum fv_preset p, uint32_t input, struct fv_model_spec *ret_spec)
{
	const struct preset *ps;
	struct fv_model_spec s;
	int r;

	if ((unsigned)p >= FV_PRESET_COUNT || p == FV_PRESET_CUSTOM || p == FV_PRESET_CONV1D)
		return -EINVAL;
	ps = &presets[p];
	r = fv_model_spec_autoencoder(input, ps->hidden, ps->n_hidden, ps->act, ps->out_act, &s);
	if (r < 0)
		return r;
	r = fv_model_spec_regularize(&s, ps->dropout, ps->noise);
	if (r < 0)
		return r;
	*ret_spec = s;
	return 0;
}

int fv_model_spec_preset_wc(enum fv_preset p, uint32_t window, uint32_t channels,
			    struct fv_model_spec *ret_spec)
{
	const struct preset *ps = &presets[FV_PRESET_CONV1D];

	if (p != FV_PRESET_CONV1D) {
		if (window == 0 || channels == 0)
			return -EINVAL;
		if ((uint64_t)window * channels > FV_NN_MAX_WIDTH)
			return -E2BIG;
		return fv_model_spec_preset(p, window * channels, ret_spec);
	}
	return fv_model_spec_conv1d(window, channels, ps->hidden, ps->n_hidden, CONV1D_KERNEL,
				    CONV1D_STRIDE, ps->act, ps->out_act, ret_spec);
}

/* ---- specs ---- */

size_t fv_model_spec_nparams(const struct fv_model_spec *spec)
{
	const struct fv_nn_kind *k = spec ? fv_nn_kind_get(spec->kind) : NULL;

	if (!k || k->validate(spec) < 0)
		return 0;
	return k->nparams(spec);
}

int fv_model_spec_validate(const struct fv_model_spec *spec)
{
	const struct fv_nn_kind *k = spec ? fv_nn_kind_get(spec->kind) : NULL;
	int r;

	if (!k)
		return -EDOM;
	if (!(spec->noise >= 0.0f && spec->noise <= FV_NN_MAX_NOISE)) /* NaN fails too */
		return -EDOM;
	if (spec->kind != FV_MODEL_CONV1D) {
		/* Other kinds' fields stay zero: specs are compared with memcmp. */
		static const uint8_t zero[FV_NN_MAX_LAYERS];

		if (spec->window || memcmp(spec->conv, zero, sizeof(zero)) ||
		    memcmp(spec->kernel, zero, sizeof(zero)) || memcmp(spec->stride, zero, sizeof(zero)))
			return -EDOM;
	}
	r = k->validate(spec);
	if (r < 0)
		return r;
	if (k->nparams(spec) > FV_NN_MAX_PARAMS)
		return -E2BIG;
	return 0;
}

int fv_model_spec_autoencoder(uint32_t input, const uint32_t *hidden, uint32_t n_hidden,
			      enum fv_act act, enum fv_act out_act,
			      struct fv_model_spec *ret_spec)
{
	struct fv_model_spec s;

	if (input == 0 || (n_hidden > 0 && !hidden))
		return -EINVAL;
	if ((unsigned)act > FV_ACT_SIGMOID || (unsigned)out_act > FV_ACT_SIGMOID)
		return -EINVAL;
	if (n_hidden + 1 > FV_NN_MAX_LAYERS || input > FV_NN_MAX_WIDTH)
		return -E2BIG;
	memset(&s, 0, sizeof(s));
	s.kind = FV_MODEL_DENSE;
	s.n_layers = n_hidden + 1;
	s.sizes[0] = input;
	for (uint32_t i = 0; i < n_hidden; i++) {
		if (hidden[i] == 0)
			return -EINVAL;
		if (hidden[i] > FV_NN_MAX_WIDTH)
			return -E2BIG;
		s.sizes[i + 1] = hidden[i];
		s.acts[i] = (uint8_t)act;
	}
	s.sizes[n_hidden + 1] = input;
	s.acts[n_hidden] = (uint8_t)out_act;
	if (fv_model_spec_validate(&s) < 0)
		return -E2BIG; /* only the parameter budget is left to fail */
	*ret_spec = s;
	return 0;
}

int fv_model_spec_regularize(struct fv_model_spec *spec, float p, float sigma)
{
	if (!spec || spec->kind != FV_MODEL_DENSE || spec->n_layers < 1 ||
	    spec->n_layers > FV_NN_MAX_LAYERS)
		return -EINVAL;
	if (!(p >= 0.0f && p <= FV_NN_MAX_DROPOUT) || !(sigma >= 0.0f && sigma <= FV_NN_MAX_NOISE))
		return -EINVAL;
	for (uint32_t l = 0; l + 1 < spec->n_layers; l++)
		spec->dropout[l] = p;
	spec->noise = sigma;
	return 0;
}

/* Accepts decimal widths 1..FV_NN_MAX_WIDTH separated by commas, with
 * optional blanks around each; hidden[] is untouched on failure. */
int fv_model_hidden_parse(const char *s, uint32_t *hidden, uint32_t max)
{
	uint32_t tmp[FV_NN_MAX_LAYERS];
	uint32_t n = 0;
	const char *p = s;

	if (!s || !hidden)
		return -EINVAL;
	for (;;) {
		unsigned long v = 0;
		bool any = false;

		while (*p == ' ' || *p == '\t')
			p++;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > FV_NN_MAX_WIDTH)
				return -EINVAL;
			any = true;
			p++;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (!any || v == 0 || n >= max || n >= FV_ARRAY_SIZE(tmp))
			return -EINVAL;
		tmp[n++] = (uint32_t)v;
		if (*p == '\0')
			break;
		if (*p != ',')
			return -EINVAL;
		p++;
	}
	memcpy(hidden, tmp, sizeof(uint32_t) * n);
	return (int)n;
}

int fv_model_spec_format(const struct fv_model_spec *spec, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	if (spec && spec->kind == FV_MODEL_CONV1D)
		return fv_nn_conv1d_format(spec, buf, len);
	if (!spec || spec->kind != FV_MODEL_DENSE || spec->n_layers > FV_NN_MAX_LAYERS)
		return snprintf(buf, len, "?");
	for (uint32_t l = 0; l <= spec->n_layers; l++) {
		int n = snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0,
				 l ? "-%u" : "%u", spec->sizes[l]);

		if (n < 0)
			return n;
		used += (size_t)n;
	}
	return (int)used;
}

/* ---- training options ---- */

int fv_train_opts_validate(const struct fv_train_opts *o)
{
	if (!o || (unsigned)o->optim > FV_OPTIM_MOMENTUM)
		return -EINVAL;
	if (!(o->lr > 0.0f && o->lr < INFINITY))
		return -EINVAL;
	if (!(o->weight_decay >= 0.0f && o->weight_decay < INFINITY))
		return -EINVAL;
	if (!(o->prox_mu >= 0.0f && o->prox_mu < INFINITY))
		return -EINVAL;
	if (o->optim == FV_OPTIM_MOMENTUM && !(o->momentum >= 0.0f && o->momentum < 1.0f))
		return -EINVAL;
	if (o->optim == FV_OPTIM_ADAM &&
	    !(o->beta1 >= 0.0f && o->beta1 < 1.0f && o->beta2 >= 0.0f && o->beta2 < 1.0f &&
	      o->eps > 0.0f && o->eps < INFINITY))
		return -EINVAL;
	return 0;
}
