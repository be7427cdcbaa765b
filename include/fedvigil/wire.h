/* fedvigil wire format: our structs <-> protobuf (proto/fedvigil.proto).
 *
 * protobuf-c types never leave this module: decoders check sizes first,
 * unpack, validate, copy into these structs and free the protobuf message.
 * Topic helpers build the names of ARCHITECTURE.md's topic table. */
#ifndef FEDVIGIL_WIRE_H
#define FEDVIGIL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/detect.h"
#include "fedvigil/fl.h"
#include "fedvigil/ingest.h"
#include "fedvigil/nn.h"
#include "fedvigil/threshold.h"

#define FV_SCHEMA_VERSION 1
#define FV_NAME_MAX 64                /* fleet and agent names, incl. NUL */
#define FV_MAX_MSG_BYTES (20u << 20)  /* no protobuf message is larger */
#define FV_MAX_SELECTED 4096          /* agents listed in one announce */
/* A state file holds a model and up to two moment vectors of its size. */
#define FV_MAX_STATE_BYTES (3u * 4u * FV_NN_MAX_PARAMS + (1u << 20))
#define FV_TOPIC_MAX 256

/* Present in every message. */
struct fv_hdr {
	uint32_t schema;              /* FV_SCHEMA_VERSION */
	char fleet[FV_NAME_MAX];      /* fleet name */
	char sender[FV_NAME_MAX];     /* agent or coordinator id */
	uint64_t round;               /* round number the message belongs to */
	uint64_t base_version;        /* model version it is based on */
	int64_t ts_ms;                /* sender's wall clock at send */
};

enum fv_round_kind {
	FV_ROUND_STATS = 1, /* send per-channel statistics */
	FV_ROUND_TRAIN = 2, /* train from the base model, send a delta */
};

/* How a delta (or a model's parameters) travels: ModelUpdate.encoding,
 * GlobalModel.params_encoding; the numbers of proto enum DeltaEncoding. */
enum fv_enc {
	FV_ENC_FP32 = 0,      /* float32 per parameter */
	FV_ENC_FP16 = 1,      /* IEEE binary16 per parameter */
	FV_ENC_INT8 = 2,      /* int8 per parameter, one scale per segment */
	FV_ENC_TOPK_FP32 = 3, /* the largest |values| only, with indices */
	FV_ENC_TOPK_FP16 = 4, /* top-k, binary16 values */
	FV_ENC_TOPK_INT8 = 5, /* top-k, int8 values with per-segment scales */
};
#define FV_ENC__MAX 6
#define FV_WIRE_MAX_SEG 64 /* scale segments of an int8 update */

/* "fp32", "fp16", "int8", "topk-fp32", "topk-fp16", "topk-int8". */
const char *fv_enc_name(enum fv_enc e);
/* True for the TOPK_* encodings. */
bool fv_enc_sparse(enum fv_enc e);

/* Update compression the coordinator asks for (RoundAnnounce). */
struct fv_compress {
	enum fv_enc enc;     /* encoding of the agents' deltas */
	float topk;          /* TOPK_*: share of the parameters sent, (0, 1] */
	bool error_feedback; /* agents keep what compression dropped and add it
			      * to their next delta */
};

/* Local-training hyper-parameters sent with each round. */
struct fv_hparams {
	uint32_t epochs;  /* local epochs */
	uint32_t batch;   /* mini-batch size */
	float lr;         /* learning rate */
	uint64_t seed;    /* shuffling / init seed for this round */
	uint32_t min_windows; /* answer only with at least this many windows */
	enum fv_optim optim;  /* optimiser of local training */
	float momentum;       /* FV_OPTIM_MOMENTUM: 0 <= momentum < 1 */
	float weight_decay;   /* L2 coefficient on the weights, >= 0 */
	float prox_mu;    /* FedProx: add prox_mu * (w - w_base) to local gradients */
};

struct fv_announce {
	struct fv_hdr h;            /* h.round = R, h.base_version = base model */
	enum fv_round_kind kind;
	struct fv_hparams hp;
	int64_t deadline_ms;        /* wall-clock deadline (informational) */
	uint64_t epoch;             /* coordinator epoch: (epoch, round) orders announcements */
	uint32_t n_selected;        /* 0 = every live agent */
	char (*selected)[FV_NAME_MAX]; /* n_selected names, owned (malloc) */
	struct fv_compress comp;    /* update compression (all zero = fp32) */
	float dp_epsilon;           /* DP epsilon spent before this round; 0 = none */
};

struct fv_update {
	struct fv_hdr h;              /* h.sender = agent id */
	enum fv_round_kind kind;
	uint64_t n_samples;           /* windows trained on / readings counted */
	float loss;                   /* mean training loss of the last epoch */
	size_t n_params;              /* length of delta (0 in a STATS update) */
	float *delta;                 /* local - base, owned (malloc); dense, also
				       * when it travelled compressed */
	/* Compression of delta (TRAIN updates). Encoding reads enc, topk and
	 * the segments; decoding fills enc, nnz and the segments. */
	enum fv_enc enc;              /* encoding on the wire */
	float topk;                   /* encode TOPK_*: share kept, (0, 1] */
	uint32_t n_seg;               /* INT8 scale segments; 0 = one for all */
	uint32_t seg[FV_WIRE_MAX_SEG]; /* their lengths, summing to n_params */
	size_t nnz;                   /* decoded: values that were on the wire */
	struct fv_hist hist;          /* base-model scores of local windows */
	uint32_t n_channels;          /* entries in stats (STATS update) */
	struct fv_chstats *stats;     /* per channel, owned (malloc) */
	uint32_t n_col_err;           /* entries in col_err: 0 or the model's input columns */
	double *col_err;              /* per column: sum over hist's windows of their mean
				       * squared error there, owned (malloc) */
	/* Not on the wire: a receiver's note of fv_agg_norm(delta) made as the
	 * update arrived (the coordinator, off the round's closing path). */
	bool have_norm;
	double norm;
};

struct fv_global {
	struct fv_hdr h;              /* h.round = round that produced it */
	uint64_t version;             /* model version, +1 per aggregation */
	uint64_t epoch;               /* coordinator epoch: (epoch, version) orders models */
	struct fv_model_spec spec;    /* architecture */
	uint32_t window;              /* W vectors per window */
	uint32_t stride;              /* S */
	uint32_t n_channels;          /* C; spec.sizes[0] == W * C */
	float *mean;                  /* C, owned */
	float *std;                   /* C, owned */
	size_t n_params;
	float *params;                /* owned */
	enum fv_enc params_enc;       /* FV_ENC_FP32 or FV_ENC_FP16 on the wire;
				       * FP16 sends params rounded to binary16
				       * (fv_fp16_round() them first to keep
				       * sender and receivers identical) */
	float threshold;              /* alert threshold on the score; 0 = none yet */
	float percentile;             /* percentile it came from, e.g. 99.5 */
	float loss;                   /* weighted mean training loss of the round */
	uint32_t n_agents;            /* updates aggregated into it */
	float dp_epsilon;             /* DP epsilon spent up to this model; 0 = none */
	double dp_delta;              /* delta of dp_epsilon */
	char aggregation[32];         /* algorithm that produced it; "" = unknown */
	/* detection (fields 45-48; defaults for models without them) */
	enum fv_feat features;        /* what the model sees of a window */
	bool calibrate;               /* agents calibrate per-column errors */
	float smooth;                 /* EWMA weight of the newest score, (0, 1]; 1 = none */
	struct fv_thr_rule rule;      /* how thresholds are read from score distributions */
	struct fv_hist scores;        /* merged normal scores behind threshold (count 0: none) */
	uint32_t n_col_err;           /* 0 or fv_feat_columns(features, n_channels) */
	float *col_err;               /* fleet mean per-column normal error, owned */
};

/* Model input columns of g: fv_feat_columns(g->features, g->n_channels). */
uint32_t fv_global_columns(const struct fv_global *g);

/* Why a message was rejected: one counter each. */
enum fv_reject {
	FV_REJ_TOO_BIG = 0, /* -E2BIG before decoding */
	FV_REJ_MALFORMED,   /* -EBADMSG */
	FV_REJ_SCHEMA,      /* -EPROTO */
	FV_REJ_FLEET,       /* -EXDEV */
	FV_REJ_STALE,       /* -ESTALE */
	FV_REJ_SHAPE,       /* -EDOM */
	FV_REJ_NONFINITE,   /* -ERANGE */
	FV_REJ_DUPLICATE,   /* -EALREADY */
	FV_REJ_UNSELECTED,  /* -EPERM */
	FV_REJ_COMPRESSION, /* -EILSEQ: bad compression side data */
	FV_REJ_OTHER,
	FV_REJ_SIGNATURE,   /* -ENOKEY (unsigned), -EKEYREJECTED (bad signature) */
	FV_REJ__MAX
};
enum fv_reject fv_reject_from_errno(int err);
const char *fv_reject_name(enum fv_reject r);

/* Encoders: *ret_buf is malloc'd, owned by the caller. 0 or -errno. */
int fv_announce_encode(const struct fv_announce *a, uint8_t **ret_buf, size_t *ret_len);
/* Compresses u->delta as u->enc says (-EINVAL for a bad topk or segments,
 * -ERANGE for a non-finite delta). */
int fv_update_encode(const struct fv_update *u, uint8_t **ret_buf, size_t *ret_len);
/* The same, and ret_sent (u->n_params floats, may be NULL) gets the dense
 * delta exactly as fv_update_decode() will rebuild it from the bytes: what
 * the coordinator sees, for error feedback. */
int fv_update_encode_sent(const struct fv_update *u, float *ret_sent, uint8_t **ret_buf,
			  size_t *ret_len);
int fv_global_encode(const struct fv_global *g, uint8_t **ret_buf, size_t *ret_len);

/* Decoders: check len (-E2BIG), unpack (-EBADMSG), schema or unknown
 * encoding (-EPROTO), fleet == expect_fleet when non-NULL (-EXDEV),
 * internal consistency (-EDOM: e.g. spec vs params count, channels vs
 * stats), compression side data (-EILSEQ: index out of range, repeated or
 * unordered, index and value counts differ, segments not summing to the
 * dense length, scale not finite and >= 0, int8 value -128, side data of
 * another encoding), finite numbers (-ERANGE). On success *ret is filled
 * and owns its arrays (free with the matching _clear); on failure *ret is
 * untouched. */
int fv_announce_decode(const void *buf, size_t len, const char *expect_fleet,
		       struct fv_announce *ret);
int fv_update_decode(const void *buf, size_t len, const char *expect_fleet,
		     struct fv_update *ret);
int fv_global_decode(const void *buf, size_t len, const char *expect_fleet,
		     struct fv_global *ret);

/* Free owned arrays and zero the struct. NULL-safe. */
void fv_announce_clear(struct fv_announce *a);
void fv_update_clear(struct fv_update *u);
void fv_global_clear(struct fv_global *g);
/* Deep copy; 0 or -ENOMEM. */
int fv_global_copy(const struct fv_global *src, struct fv_global *ret);

/* Check an update against the round it claims to belong to:
 * -ESTALE if round != expect_round or base_version != expect_base,
 * -EDOM if kind differs, or n_params != expect_params (TRAIN) or
 * n_channels != expect_channels (STATS). */
int fv_update_check(const struct fv_update *u, enum fv_round_kind expect_kind,
		    uint64_t expect_round, uint64_t expect_base, size_t expect_params,
		    uint32_t expect_channels);

/* ---- compression helpers (lib/wire/compress.c) ---- */

/* Segments for per-tensor int8 scales from a dense model's layout (each
 * layer's W, then b: nn.h): fills ret_seg (room for max) and returns the
 * count, or 0 for other model kinds or when they do not fit (then one
 * scale covers everything). */
uint32_t fv_compress_segments(const struct fv_model_spec *spec, uint32_t *ret_seg,
			      uint32_t max);
/* Round x (n) to the nearest binary16 value in place (ties to even;
 * beyond +-65504 saturates). What FP16 encodings send. */
void fv_fp16_round(float *x, size_t n);

/* Error feedback (agent side): what compression dropped from one update
 * is added to the next, so that over rounds
 *   sum(sent) + resid == sum(true deltas).
 * The residual must be reset when the base model changes shape. */
struct fv_ef {
	size_t n;     /* parameters */
	float *resid; /* (n) owned; what was not sent yet */
};
/* 0 or -ENOMEM; the residual starts at zero. */
int fv_ef_init(struct fv_ef *ef, size_t n);
void fv_ef_free(struct fv_ef *ef);
void fv_ef_reset(struct fv_ef *ef);
/* ret_v (n) = delta + resid: the vector to compress. */
void fv_ef_add(const struct fv_ef *ef, const float *delta, float *ret_v);
/* After compressing v into sent (fv_update_encode_sent): resid = v - sent. */
void fv_ef_commit(struct fv_ef *ef, const float *v, const float *sent);
/* Encode a TRAIN update as the round's compression c asks: sets u's enc,
 * topk and int8 segments (from spec), and with c->error_feedback adds ef's
 * residual to u->delta (the true delta: borrowed, left as it was) and keeps
 * what compression drops in ef (re-initialised when its size is not
 * u->n_params); without it ef is freed (may be NULL then). *ret_buf is
 * malloc'd, owned by the caller. 0 or -errno of fv_update_encode(). */
int fv_update_encode_comp(struct fv_update *u, const struct fv_compress *c,
			  const struct fv_model_spec *spec, struct fv_ef *ef, uint8_t **ret_buf,
			  size_t *ret_len);

/* ---- coordinator state file ----
 * "FVST" magic, u32 format version, u32 payload length, u32 CRC-32 of the
 * payload, then the payload (a protobuf CoordState). */
struct fv_coord_state {
	uint64_t round;           /* round in progress (next to close) */
	enum fv_round_kind kind;  /* its kind */
	uint64_t epoch;           /* coordinator epoch (0: file from before epochs) */
	bool have_model;          /* model below is valid */
	struct fv_global model;   /* last published global model */
	bool have_agg;            /* agg below is valid */
	struct fv_agg_state agg;  /* aggregator state; decoded: owned arrays,
				   * algo = FV_AGG__MAX for an unknown name */
};
int fv_state_encode(const struct fv_coord_state *s, uint8_t **ret_buf, size_t *ret_len);
/* -EBADMSG on bad magic/CRC/truncation, -EPROTO on unknown version,
 * -EDOM if the aggregator's moments do not match the model's size. */
int fv_state_decode(const void *buf, size_t len, struct fv_coord_state *ret);
void fv_state_clear(struct fv_coord_state *s);

/* ---- topics: fedvigil/v1/<fleet>/... ---- */
/* Each writes into buf (FV_TOPIC_MAX) and returns buf, or NULL if too long. */
char *fv_topic_round(char *buf, const char *fleet);
char *fv_topic_update(char *buf, const char *fleet, uint64_t round, const char *agent);
/* Subscription filter for all updates: fedvigil/v1/<fleet>/round/+/update/+ */
char *fv_topic_updates_filter(char *buf, const char *fleet);
char *fv_topic_model(char *buf, const char *fleet);
char *fv_topic_agent(char *buf, const char *fleet, const char *agent, const char *leaf);
char *fv_topic_coord(char *buf, const char *fleet, const char *leaf);
/* Parse ".../round/<R>/update/<agent>" -> R and agent; -EINVAL otherwise. */
int fv_topic_parse_update(const char *topic, const char *fleet, uint64_t *ret_round,
			  char ret_agent[FV_NAME_MAX]);
/* Parse ".../agent/<agent>/state" -> agent; -EINVAL otherwise. */
int fv_topic_parse_agent_state(const char *topic, const char *fleet,
			       char ret_agent[FV_NAME_MAX]);

#endif
