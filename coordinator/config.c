/* fedvigil-coordinator configuration: every key declared once, here.
 * The table drives loading, validation, --help, --dump-config and the
 * documentation in deploy/coordinator.ini and docs/coordinator.md. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "coord.h"
#include "fedvigil/svc.h"

static const char *const level_names[] = { "err", "warning", "notice", "info", "debug", NULL };
/* Order matches enum fv_act, so the index is the activation. */
static const char *const act_names[] = { "linear", "relu", "tanh", "sigmoid", NULL };
/* Order matches enum fv_preset and enum fv_optim. */
static const char *const preset_names[] = { "custom", "ae8",    "ae20", "dae128",
					    "sae",    "conv1d", NULL };
static const char *const optim_names[] = { "adam", "sgd", "momentum", NULL };
/* Value encodings of [compression] (FV_ENC_FP32/FP16/INT8 and, with topk,
 * their TOPK_* forms) and of the model's parameters. */
static const char *const enc_names[] = { "fp32", "fp16", "int8", NULL };
static const char *const model_enc_names[] = { "fp32", "fp16", NULL };
static const char *const noq_names[] = { "close", "abandon", NULL };
static const char *const late_names[] = { "drop", "stale", NULL };
/* Order matches enum fv_thr_method. */
static const char *const thr_names[] = { "percentile", "meanstd", "pot", NULL };
/* Order matches enum fv_feat. */
static const char *const feat_names[] = { "values", "diff", "both", NULL };

#define FIELD(f) offsetof(struct coord_config, f), sizeof(((struct coord_config *)0)->f)
#define K_STR(sec, key, f, def, help) \
	{ sec, key, FV_CFG_STR, def, 0, 0, NULL, FIELD(f), help }
/* A secret: --dump-config does not print it. */
#define K_SECRET(sec, key, f, help) \
	{ sec, key, FV_CFG_STR, "", 0, 0, NULL, FIELD(f), help, FV_CFG_SECRET }
#define K_INT(sec, key, f, def, lo, hi, help) \
	{ sec, key, FV_CFG_INT, def, lo, hi, NULL, FIELD(f), help }
#define K_DBL(sec, key, f, def, lo, hi, help) \
	{ sec, key, FV_CFG_DOUBLE, def, lo, hi, NULL, FIELD(f), help }
#define K_ENUM(sec, key, f, def, names, help) \
	{ sec, key, FV_CFG_ENUM, def, 0, 0, names, FIELD(f), help }
#define K_BOOL(sec, key, f, def, help) \
	{ sec, key, FV_CFG_BOOL, def, 0, 0, NULL, FIELD(f), help }

/* 2^53 - 1: the largest integer a double bound holds exactly. */
#define SEED_MAX 9007199254740991.0

const struct fv_cfg_key coord_cfg_keys[] = {
	K_STR("coordinator", "id", id, "coordinator",
	      "MQTT client id and sender name ([A-Za-z0-9_.-], 1..63)"),
	K_STR("coordinator", "fleet", fleet, "default",
	      "fleet name: topics live under fedvigil/v1/<fleet>/"),
	K_STR("coordinator", "broker", broker, "tcp://127.0.0.1:1883",
	      "MQTT broker URI (tcp://, mqtt://, ssl://)"),
	K_STR("coordinator", "username", username, "", "MQTT user name (empty: none)"),
	K_SECRET("coordinator", "password", password,
		 "MQTT password (empty: none; prefer password_file)"),
	K_STR("coordinator", "password_file", password_file, "",
	      "file holding the MQTT password (first line; mode 0600); instead of password"),
	K_INT("coordinator", "keepalive_s", keepalive_s, "30", 2, 3600,
	      "MQTT keepalive: a link silent for 1.5x this is declared dead (both ends), the "
	      "broker publishes our will, and we reconnect"),
	K_STR("coordinator", "state_dir", state_dir, "/var/lib/fedvigil",
	      "directory of coordinator.state (created if missing)"),
	K_ENUM("coordinator", "log_level", log_level, "info", level_names,
	       "most verbose level logged"),

	K_ENUM("model", "preset", preset, "custom", preset_names,
	       "architecture: ae8 (8-4-2-4-8), ae20 (20-12-6-12-20), dae128 (128-16-128 "
	       "denoising), sae (128-64-32-16 stacked), conv1d (temporal convolutional AE: "
	       "conv_filters, conv_kernel, conv_stride), or custom (hidden, activation); a "
	       "dense preset's input and output take the width window*channels"),
	K_INT("model", "window", window, "10", 1, 1024, "W: sample vectors per window"),
	K_INT("model", "stride", stride, "1", 1, 1024, "S: vectors between window starts"),
	K_INT("model", "channels", channels, "5", 1, 256, "C: channels per vector"),
	K_ENUM("model", "features", features, "values", feat_names,
	       "what the model sees of a window: values (z-normalised), diff (their first "
	       "differences) or both (2*channels columns)"),
	K_STR("model", "hidden", hidden, "32,8,32",
	      "custom: hidden layer widths of the autoencoder (input = window*channels)"),
	K_ENUM("model", "activation", activation, "tanh", act_names,
	       "custom: activation of the hidden layers"),
	K_ENUM("model", "output_activation", output_activation, "linear", act_names,
	       "custom: activation of the output layer"),
	K_DBL("model", "dropout", dropout, "-1", -1, 0.9,
	      "drop probability of hidden outputs in training; -1 = the preset's (dae128 0.2, "
	      "else 0)"),
	K_DBL("model", "noise", noise, "-1", -1, 10,
	      "denoising: std of the noise added to normalised inputs in training; -1 = the "
	      "preset's (dae128 0.1, else 0)"),
	K_STR("model", "conv_filters", conv_filters, "32,16",
	      "conv1d: filters of the encoder's strided convolutions (the decoder mirrors "
	      "them); window must be a multiple of conv_stride^count"),
	K_INT("model", "conv_kernel", conv_kernel, "7", 1, FV_NN_MAX_KERNEL,
	      "conv1d: taps of every convolution (odd)"),
	K_INT("model", "conv_stride", conv_stride, "2", 1, FV_NN_MAX_STRIDE,
	      "conv1d: stride of the encoder's and decoder's layers"),
	K_INT("model", "seed", seed, "1", 0, SEED_MAX,
	      "seed of the initial weights, agent selection and local shuffling"),

	K_INT("round", "rounds", rounds, "0", 0, 1e9,
	      "training rounds to run, then idle (0 = unlimited)"),
	K_INT("round", "min_agents", min_agents, "1", 1, FV_MAX_SELECTED,
	      "live agents needed before the statistics round; minimum selection"),
	K_DBL("round", "fraction", fraction, "1.0", 0.001, 1.0,
	      "share of live agents selected per round"),
	K_DBL("round", "quorum", quorum, "1.0", 0.001, 1.0,
	      "share of selected agents whose updates close a round at its deadline"),
	K_INT("round", "deadline_ms", deadline_ms, "30000", 100, 86400000,
	      "round deadline, and the length of each extension"),
	K_INT("round", "interval_ms", interval_ms, "1000", 0, 86400000,
	      "pause between the close of a round and the next announcement"),
	K_INT("round", "epochs", epochs, "3", 1, 1000, "local epochs per round"),
	K_INT("round", "batch", batch, "32", 1, 4096, "local mini-batch size"),
	K_DBL("round", "lr", lr, "0.001", 1e-7, 10.0, "local learning rate"),
	K_ENUM("round", "optimizer", optimizer, "adam", optim_names,
	       "local optimiser: adam, sgd, or momentum (SGD with momentum)"),
	K_DBL("round", "momentum", momentum, "0.9", 0.0, 0.999,
	      "momentum coefficient (optimizer = momentum)"),
	K_DBL("round", "weight_decay", weight_decay, "0", 0.0, 1.0,
	      "L2 weight decay of local training (weights, not biases)"),
	K_INT("round", "min_samples", min_samples, "64", 1, 100000000,
	      "windows an agent needs before it answers a round"),
	K_INT("round", "max_extensions", max_extensions, "3", 0, 1000,
	      "deadline extensions when the quorum is not reached"),
	K_ENUM("round", "no_quorum", no_quorum, "close", noq_names,
	       "close|abandon: a round still short of its quorum after max_extensions closes "
	       "with the updates it has (at least one), or is abandoned (a training round "
	       "moves on to the next round number on the same model)"),
	K_DBL("round", "deadline_k", deadline_k, "0", 0.0, 100.0,
	      "adaptive deadline: k * the 90th percentile of recent response times, within "
	      "deadline_min_ms..deadline_ms; 0 = always deadline_ms"),
	K_INT("round", "deadline_min_ms", deadline_min_ms, "1000", 100, 86400000,
	      "lower bound of the adaptive deadline"),
	K_INT("round", "exclude_missed", exclude_missed, "0", 0, 1000,
	      "rounds an agent that missed a deadline is left out of the selection (unless "
	      "needed for min_agents); 0 = never"),
	K_ENUM("round", "late", late, "drop", late_names,
	       "drop|stale: an update arriving after its round closed is dropped, or "
	       "aggregated in the next close with weight n_samples * (1 + tau)^-a, tau = "
	       "model versions behind"),
	K_INT("round", "staleness_max", staleness_max, "2", 1, 8,
	      "stale: late updates more versions behind than this are dropped"),
	K_DBL("round", "staleness_exponent", staleness_exponent, "0.5", 0.0, 10.0,
	      "stale: the exponent a of the weight (1 + tau)^-a"),

	K_ENUM("threshold", "method", method, "percentile", thr_names,
	       "percentile|meanstd|pot: how the threshold is read from the fleet's merged "
	       "normal-score statistics"),
	K_DBL("threshold", "percentile", percentile, "99", 50.0, 99.999,
	      "percentile and pot: the quantile (in %) of normal scores to alert above"),
	K_DBL("threshold", "k", k, "3.0", 0.0, 100.0,
	      "meanstd: threshold = mean + k * standard deviation of normal scores"),
	K_DBL("threshold", "margin", margin, "1.0", 0.1, 100.0,
	      "alert threshold = the method's value * margin"),
	K_BOOL("threshold", "calibrate", calibrate, "true",
	       "agents divide each input column's error by its mean on their own normal "
	       "windows (one threshold then fits machines whose normal differs)"),
	K_DBL("threshold", "smooth", smooth, "0.5", 0.01, 1.0,
	      "EWMA weight of the newest window's score (causal smoothing); 1 = none"),

	K_ENUM("compression", "encoding", comp_encoding, "fp32", enc_names,
	       "fp32|fp16|int8: how agents encode their update values (int8: one "
	       "scale per layer's weights and biases)"),
	K_DBL("compression", "topk", comp_topk, "0", 0.0, 1.0,
	      "share of the parameters an update sends (largest magnitudes, with "
	      "their indices); 0 = all of them"),
	K_BOOL("compression", "error_feedback", comp_error_feedback, "true",
	       "agents keep what compression dropped and add it to their next update"),
	K_ENUM("compression", "model", comp_model, "fp32", model_enc_names,
	       "fp32|fp16: encoding of the global model's parameters (fp16: rounded "
	       "on the coordinator too, so everyone holds the same values)"),

	FV_MQTT_TLS_KEYS(struct coord_config, tls),
	K_ENUM("aggregation", "algorithm", algorithm, "fedavg", fv_agg_algo_names,
	       "how updates become the next model (docs/federation.md)"),
	K_DBL("aggregation", "server_lr", server_lr, "0", 0.0, 100.0,
	      "server learning rate; 0 = 0.01 for fedadam/fedyogi/fedadagrad, else 1"),
	K_DBL("aggregation", "server_momentum", server_momentum, "0.9", 0.0, 0.999,
	      "fedavgm: server momentum"),
	K_DBL("aggregation", "beta1", beta1, "0.9", 0.0, 0.999,
	      "fedadam/fedyogi/fedadagrad: first-moment decay"),
	K_DBL("aggregation", "beta2", beta2, "0.99", 0.0, 0.99999,
	      "fedadam/fedyogi: second-moment decay"),
	K_DBL("aggregation", "tau", tau, "0.001", 1e-9, 10.0,
	      "fedadam/fedyogi/fedadagrad: adaptivity (sqrt of the initial v)"),
	K_DBL("aggregation", "trim_beta", trim_beta, "0.1", 0.01, 0.49,
	      "trimmed_mean: share of updates cut at each end, per coordinate"),
	K_INT("aggregation", "krum_f", krum_f, "1", 0, FV_MAX_SELECTED,
	      "krum/multi_krum: Byzantine agents tolerated (needs >= 2f+3 updates)"),
	K_INT("aggregation", "krum_m", krum_m, "0", 0, FV_MAX_SELECTED,
	      "multi_krum: updates averaged (0 = updates - krum_f)"),
	K_DBL("aggregation", "clip_norm", clip_norm, "0", 0.0, 1e9,
	      "scale every update to at most this L2 norm first (0 = off; dp: C)"),
	K_DBL("aggregation", "clip_ratio", clip_ratio, "10", 0.0, 1e9,
	      "also scale every update to at most this many times the round's median "
	      "update norm (0 = off, else >= 1; not with dp)"),
	K_DBL("aggregation", "sample_cap", sample_cap, "10", 0.0, 1e12,
	      "weighted means: a claimed window count counts as at most this many times "
	      "the round's median claim (0 = trust every claim, else >= 1)"),
	K_DBL("aggregation", "prox_mu", prox_mu, "0", 0.0, 1000.0,
	      "FedProx mu sent to the agents (any algorithm; fedprox needs > 0)"),
	K_BOOL("aggregation", "dp", dp, "false",
	       "client-level differential privacy: clip, add noise, account epsilon"),
	K_DBL("aggregation", "dp_noise", dp_noise, "1.0", 0.01, 1000.0,
	      "dp: noise multiplier sigma (noise std on the sum = sigma * clip_norm)"),
	K_DBL("aggregation", "dp_delta", dp_delta, "1e-5", 1e-12, 0.1,
	      "dp: delta at which epsilon is reported"),
	K_INT("aggregation", "dp_seed", dp_seed, "0", 0, SEED_MAX,
	      "dp: noise seed; 0 = secret random (a known seed voids the privacy)"),

	K_STR("sign", "key_file", sign_key_file, "",
	      "Ed25519 private key (fedvigil-keygen, mode 0600) that signs every model and "
	      "announcement; empty: unsigned"),
	K_STR("sign", "agent_keys", sign_agent_keys, "",
	      "directory of <agent-id>.pub: every update must be signed by its agent's key "
	      "(empty: updates are not verified)"),
	K_STR("metrics", "listen", metrics_listen, "",
	      "serve Prometheus metrics at http://ADDR/metrics: PORT, IPV4:PORT or [IPV6]:PORT "
	      "(PORT alone = 127.0.0.1; empty = off)"),
};

/* Keys a SIGHUP applies to the running coordinator; the others need a
 * restart (docs/coordinator.md, "Reloading"). */
const char *const coord_live_keys[] = {
	"coordinator.log_level", "round.*", "threshold.*", NULL,
};

const size_t coord_cfg_nkeys = FV_ARRAY_SIZE(coord_cfg_keys);

int coord_config_defaults(struct coord_config *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	return fv_cfg_defaults(coord_cfg_keys, coord_cfg_nkeys, c, err, errlen);
}

/* [compression] -> the announced struct fv_compress. */
static void compression_finish(struct coord_config *c)
{
	static const enum fv_enc dense[] = { FV_ENC_FP32, FV_ENC_FP16, FV_ENC_INT8 };
	static const enum fv_enc sparse[] = { FV_ENC_TOPK_FP32, FV_ENC_TOPK_FP16,
					      FV_ENC_TOPK_INT8 };
	int e = c->comp_encoding >= 0 && c->comp_encoding < 3 ? c->comp_encoding : 0;

	c->comp.enc = c->comp_topk > 0.0 ? sparse[e] : dense[e];
	c->comp.topk = c->comp_topk > 0.0 ? (float)c->comp_topk : 0.0f;
	c->comp.error_feedback = c->comp_error_feedback;
}

/* [model] preset = conv1d: the temporal autoencoder from conv_filters,
 * conv_kernel and conv_stride over window x channels. */
static int conv1d_spec(struct coord_config *c, char *err, size_t errlen)
{
	uint32_t filters[FV_NN_MAX_LAYERS];
	int n, r;

	/* 2n + 1 layers: at most 7 encoder levels. */
	n = fv_model_hidden_parse(c->conv_filters, filters, (FV_NN_MAX_LAYERS - 1) / 2);
	if (n <= 0) {
		snprintf(err, errlen,
			 "model.conv_filters = '%s': not a list of 1..%d filter counts like "
			 "\"32,16\"",
			 c->conv_filters, (FV_NN_MAX_LAYERS - 1) / 2);
		return -EINVAL;
	}
	if (c->conv_kernel % 2 == 0) {
		snprintf(err, errlen, "model.conv_kernel = %lld: must be odd (1..%d)",
			 c->conv_kernel, FV_NN_MAX_KERNEL);
		return -EINVAL;
	}
	/* The model's channels are the feature columns of each step (2 C with
	 * features = both). */
	r = fv_model_spec_conv1d((uint32_t)c->window,
				 fv_feat_columns((enum fv_feat)c->features, (uint32_t)c->channels),
				 filters, (uint32_t)n,
				 (uint32_t)c->conv_kernel, (uint32_t)c->conv_stride, FV_ACT_RELU,
				 FV_ACT_LINEAR, &c->spec);
	if (r < 0) {
		unsigned long long div = 1;

		for (int i = 0; i < n; i++)
			div *= (unsigned long long)c->conv_stride;
		if (c->window % (long long)div != 0)
			snprintf(err, errlen,
				 "model.preset = conv1d: window = %lld is not a multiple of "
				 "conv_stride^%d = %llu (%d strided layers of conv_filters = '%s')",
				 c->window, n, div, n, c->conv_filters);
		else
			snprintf(err, errlen,
				 "model.preset = conv1d with window %lld, %u columns, conv_filters "
				 "'%s', conv_kernel %lld: %s (at most %u parameters, filters <= %d)",
				 c->window,
				 fv_feat_columns((enum fv_feat)c->features, (uint32_t)c->channels),
				 c->conv_filters, c->conv_kernel,
				 fv_strerror(r), (unsigned)FV_NN_MAX_PARAMS, FV_NN_MAX_CHANNELS);
		return -EINVAL;
	}
	return 0;
}

int coord_config_finish(struct coord_config *c, char *err, size_t errlen)
{
	uint32_t hidden[FV_NN_MAX_LAYERS];
	uint32_t input;
	int n, r;

	if (!fv_name_valid(c->fleet)) {
		snprintf(err, errlen,
			 "coordinator.fleet = '%s': not a valid name (1..63 of [A-Za-z0-9_.-])",
			 c->fleet);
		return -EINVAL;
	}
	if (!fv_name_valid(c->id)) {
		snprintf(err, errlen,
			 "coordinator.id = '%s': not a valid name (1..63 of [A-Za-z0-9_.-])",
			 c->id);
		return -EINVAL;
	}
	if (!c->broker[0]) {
		snprintf(err, errlen, "coordinator.broker is empty");
		return -EINVAL;
	}
	r = fv_mqtt_tls_check(&c->tls, c->broker, "coordinator.broker", err, errlen);
	if (r < 0)
		return r;
	if (c->password_file[0]) {
		if (c->password[0]) {
			snprintf(err, errlen,
				 "coordinator.password and coordinator.password_file are both set");
			return -EINVAL;
		}
		r = fv_secret_read_line(c->password_file, "coordinator.password_file", c->password,
					sizeof(c->password), err, errlen);
		if (r < 0)
			return r;
	}
	if (c->sign_key_file[0]) {
		r = fv_file_check_private(c->sign_key_file, "sign.key_file", err, errlen);
		if (r < 0)
			return r;
	}
	if (c->sign_agent_keys[0]) {
		struct stat st;

		if (stat(c->sign_agent_keys, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "sign.agent_keys = %s: not a directory",
				 c->sign_agent_keys);
			return -EINVAL;
		}
	}
	if (c->metrics_listen[0] &&
	    fv_httpd_check_listen("metrics.listen", c->metrics_listen, err, errlen) < 0)
		return -EINVAL;
	if (!c->state_dir[0]) {
		snprintf(err, errlen, "coordinator.state_dir is empty");
		return -EINVAL;
	}
	if (c->features == FV_FEAT_DIFF && c->window < 2) {
		snprintf(err, errlen, "model.features = diff needs model.window >= 2 (differences "
			 "are taken inside a window)");
		return -EINVAL;
	}
	/* window <= 1024 and channels <= 256: the product cannot overflow. */
	input = (uint32_t)c->window *
		fv_feat_columns((enum fv_feat)c->features, (uint32_t)c->channels);
	c->preset_nominal = fv_preset_nominal_input((enum fv_preset)c->preset);
	if (c->preset == FV_PRESET_CONV1D) {
		r = conv1d_spec(c, err, errlen);
		if (r < 0)
			return r;
	} else if (c->preset != FV_PRESET_CUSTOM) {
		/* A preset keeps its hidden layers; the input and output layers
		 * take the data's width (see docs/models.md). */
		r = fv_model_spec_preset((enum fv_preset)c->preset, input, &c->spec);
		if (r < 0) {
			snprintf(err, errlen, "model.preset = %s with window*channels = %u: %s",
				 fv_preset_name((enum fv_preset)c->preset), input, fv_strerror(r));
			return -EINVAL;
		}
	} else {
		n = fv_model_hidden_parse(c->hidden, hidden, FV_NN_MAX_LAYERS - 1);
		if (n <= 0) {
			snprintf(err, errlen,
				 "model.hidden = '%s': not a list of 1..%d layer widths like "
				 "\"32,8,32\"",
				 c->hidden, FV_NN_MAX_LAYERS - 1);
			return -EINVAL;
		}
		r = fv_model_spec_autoencoder(input, hidden, (uint32_t)n,
					      (enum fv_act)c->activation,
					      (enum fv_act)c->output_activation, &c->spec);
		if (r >= 0)
			r = fv_model_spec_validate(&c->spec);
		if (r < 0) {
			snprintf(err, errlen,
				 "[model] window*channels = %u with hidden = '%s': %s (widths "
				 "1..%d, at most %u parameters)",
				 input, c->hidden, fv_strerror(r), FV_NN_MAX_WIDTH,
				 (unsigned)FV_NN_MAX_PARAMS);
			return -EINVAL;
		}
	}
	if (c->preset == FV_PRESET_CONV1D) {
		if (c->dropout > 0.0) {
			snprintf(err, errlen, "model.dropout = %g: the conv1d model has no dropout "
				 "(use model.noise to train it denoising)", c->dropout);
			return -EINVAL;
		}
		if (c->noise >= 0.0)
			c->spec.noise = (float)c->noise;
	} else if (c->dropout >= 0.0 || c->noise >= 0.0) {
		float p = c->spec.n_layers > 1 ? c->spec.dropout[0] : 0.0f;

		r = fv_model_spec_regularize(&c->spec, c->dropout >= 0.0 ? (float)c->dropout : p,
					     c->noise >= 0.0 ? (float)c->noise : c->spec.noise);
		if (r < 0) {
			snprintf(err, errlen, "model.dropout = %g / model.noise = %g: out of range",
				 c->dropout, c->noise);
			return -EINVAL;
		}
	}
	c->agg = (struct fv_agg_config)FV_AGG_CONFIG_DEFAULTS;
	c->agg.algo = (enum fv_agg_algo)c->algorithm;
	c->agg.server_lr = c->server_lr;
	c->agg.momentum = c->server_momentum;
	c->agg.beta1 = c->beta1;
	c->agg.beta2 = c->beta2;
	c->agg.tau = c->tau;
	c->agg.trim_beta = c->trim_beta;
	c->agg.krum_f = (uint32_t)c->krum_f;
	c->agg.krum_m = (uint32_t)c->krum_m;
	c->agg.clip_norm = c->clip_norm;
	c->agg.clip_ratio = c->clip_ratio;
	c->agg.sample_cap = c->sample_cap;
	c->agg.prox_mu = c->prox_mu;
	c->agg.dp = c->dp;
	c->agg.dp_noise = c->dp_noise;
	c->agg.dp_delta = c->dp_delta;
	c->agg.dp_seed = (uint64_t)c->dp_seed;
	{
		char why[200];

		if (fv_agg_config_check(&c->agg, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "[aggregation] %s", why);
			return -EINVAL;
		}
	}
	c->level = (enum fv_log_level)(FV_LOG_ERR + c->log_level);
	compression_finish(c);
	if (c->deadline_k > 0.0 && c->deadline_min_ms > c->deadline_ms) {
		snprintf(err, errlen,
			 "round.deadline_min_ms = %lld is above round.deadline_ms = %lld (the "
			 "adaptive deadline's upper bound)",
			 c->deadline_min_ms, c->deadline_ms);
		return -EINVAL;
	}
	c->rule = (struct fv_thr_rule){ .method = (enum fv_thr_method)c->method,
					.q = c->percentile / 100.0,
					.k = c->k,
					.margin = c->margin };
	if (fv_thr_rule_check(&c->rule) < 0) {
		snprintf(err, errlen, "[threshold]: method %s with percentile %g, k %g, margin %g "
			 "is not usable", fv_thr_method_name(c->rule.method), c->percentile, c->k,
			 c->margin);
		return -EINVAL;
	}
	return 0;
}
