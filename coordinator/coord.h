/* fedvigil-coordinator: configuration and the round machine. */
#ifndef FEDVIGIL_COORD_H
#define FEDVIGIL_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fedvigil/cfg.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/fl.h"
#include "fedvigil/nn.h"
#include "fedvigil/threshold.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

/* Exit codes of the program. */
#define COORD_EXIT_OK 0
#define COORD_EXIT_FAIL 1   /* runtime failure (state file, MQTT setup) */
#define COORD_EXIT_CONFIG 2 /* bad command line or configuration */

/* Live agents tracked at most (births beyond are ignored and logged). */
#define COORD_MAX_AGENTS 16384

/* Effective configuration; every field is a key of coord_cfg_keys[]. */
struct coord_config {
	/* [coordinator] */
	char id[FV_NAME_MAX];        /* MQTT client id and message sender */
	char fleet[FV_NAME_MAX];     /* fleet name: topic root fedvigil/v1/<fleet>/ */
	char broker[256];            /* broker URI */
	char username[128];          /* "" = none */
	char password[128];          /* "" = none */
	char password_file[512];     /* file holding the password, "" = none */
	long long keepalive_s;       /* MQTT keepalive: a silent link is dead after 1.5x */
	char state_dir[512];         /* directory of coordinator.state */
	int log_level;               /* index into "err|warning|notice|info|debug" */
	/* [model] */
	int preset;                  /* enum fv_preset; CUSTOM = hidden/activation */
	long long window;            /* W vectors per window */
	long long stride;            /* S */
	long long channels;          /* C */
	int features;                /* enum fv_feat */
	char hidden[128];            /* hidden layer widths, "32,8,32" */
	int activation;              /* enum fv_act of hidden layers */
	int output_activation;       /* enum fv_act of the output layer */
	long long seed;              /* model init and selection seed */
	double dropout;              /* hidden-layer dropout, < 0 = the preset's */
	double noise;                /* input noise sigma, < 0 = the preset's */
	char conv_filters[128];      /* conv1d: encoder filters, "32,16" */
	long long conv_kernel;       /* conv1d: taps of every layer (odd) */
	long long conv_stride;       /* conv1d: stride of the encoder/decoder layers */
	/* [round] */
	long long rounds;            /* training rounds to run, 0 = unlimited */
	long long min_agents;        /* live agents needed before round 0 */
	double fraction;             /* share of live agents selected */
	double quorum;               /* share of selected that closes at deadline */
	long long deadline_ms;       /* round deadline (and each extension) */
	long long interval_ms;       /* pause between rounds */
	long long epochs;            /* local epochs */
	long long batch;             /* local mini-batch */
	double lr;                   /* local learning rate */
	int optimizer;               /* enum fv_optim */
	double momentum;             /* FV_OPTIM_MOMENTUM coefficient */
	double weight_decay;         /* L2 coefficient */
	long long min_samples;       /* windows an agent needs to answer */
	long long max_extensions;    /* deadline extensions without quorum */
	int no_quorum;               /* after them: 0 close with what came, 1 abandon */
	double deadline_k;           /* adaptive deadline: k * p90 response; 0 = fixed */
	long long deadline_min_ms;   /* lower bound of the adaptive deadline */
	long long exclude_missed;    /* rounds a straggler sits out; 0 = never */
	int late;                    /* late updates: 0 drop, 1 stale (weighted) */
	long long staleness_max;     /* stale: versions behind at most */
	double staleness_exponent;   /* stale: weight (1 + tau)^-a */
	/* [threshold] */
	int method;                  /* enum fv_thr_method */
	double percentile;           /* percentile, pot: quantile in %, 50..99.999 */
	double k;                    /* meanstd: sigmas above the mean */
	double margin;               /* threshold = method's value * margin */
	bool calibrate;              /* agents calibrate per-column errors */
	double smooth;               /* EWMA weight of the newest score */
	/* [compression] */
	int comp_encoding;           /* 0 fp32, 1 fp16, 2 int8 */
	double comp_topk;            /* share top-k sends, 0 = dense */
	bool comp_error_feedback;    /* agents keep the residual */
	int comp_model;              /* GlobalModel params: 0 fp32, 1 fp16 */
	/* [tls] */
	struct fv_mqtt_tls tls;      /* CA, client certificate, verification */
	/* [aggregation] (fl.h struct fv_agg_config) */
	int algorithm;               /* enum fv_agg_algo */
	double server_lr;            /* 0 = the algorithm's default */
	double server_momentum;      /* FedAvgM */
	double beta1, beta2, tau;    /* FedAdam / FedYogi / FedAdagrad */
	double trim_beta;            /* trimmed_mean */
	long long krum_f, krum_m;    /* krum / multi_krum */
	double clip_norm;            /* 0 = no clipping */
	double clip_ratio;           /* x the median update norm; 0 = off */
	double sample_cap;           /* x the median claimed count; 0 = off */
	double prox_mu;              /* FedProx mu sent to the agents */
	bool dp;                     /* client-level differential privacy */
	double dp_noise;             /* noise multiplier sigma */
	double dp_delta;             /* delta of the reported epsilon */
	long long dp_seed;           /* 0 = secret random seed */
	/* [sign] */
	char sign_key_file[512];     /* private key signing models/announcements, "" = unsigned */
	char sign_agent_keys[512];   /* directory of <agent>.pub; "" = updates unverified */
	/* [metrics] */
	char metrics_listen[64];     /* Prometheus address "127.0.0.1:9108", "" = off */

	/* Derived by coord_config_finish(), not keys. */
	struct fv_agg_config agg;    /* the [aggregation] keys, checked */
	struct fv_model_spec spec;   /* autoencoder built from [model] */
	uint32_t preset_nominal;     /* the preset's published input width (0: custom) */
	enum fv_log_level level;     /* log_level as enum fv_log_level */
	struct fv_thr_rule rule;     /* [threshold] as a rule */
	struct fv_compress comp;     /* [compression] as announced */
};

/* The key table (config.c) and its length. */
extern const struct fv_cfg_key coord_cfg_keys[];
extern const size_t coord_cfg_nkeys;
/* Keys applied live on SIGHUP ("section.name" or "section.*", NULL-ended). */
extern const char *const coord_live_keys[];

/* Fill defaults. 0 or -EINVAL (err says which default is broken). */
int coord_config_defaults(struct coord_config *c, char *err, size_t errlen);
/* Checks beyond the table's ranges (names, hidden layers, model shape) and
 * fills the derived fields. 0 or -EINVAL with the reason in err. */
int coord_config_finish(struct coord_config *c, char *err, size_t errlen);

/* The round machine (coord.c); opaque. */
struct coord;
struct fv_mqtt;

/* Create the coordinator: loads <state_dir>/coordinator.state unless reset
 * (a corrupt or mismatching file is an error: NULL, reason logged).
 * cfg is borrowed and must outlive the result; mqtt is borrowed too and may
 * be NULL in tests (nothing is published then). */
struct coord *coord_new(const struct coord_config *cfg, struct fv_mqtt *mqtt, bool reset);
void coord_free(struct coord *co);

/* Topics the coordinator subscribes to (agent states, updates); filled into
 * two FV_TOPIC_MAX buffers. 0 or -EINVAL. */
int coord_filters(const struct coord *co, char *ret_states, char *ret_updates);
/* Topic and payload of the coordinator's LWT ({"state":"offline"}). */
const char *coord_will_topic(const struct coord *co);
const char *coord_offline_payload(void);

/* (Re)connected: publish birth, current model and announcement. */
void coord_on_connected(struct coord *co);
/* One inbound message. */
void coord_on_message(struct coord *co, const char *topic, const void *payload,
		      size_t len);
/* The same at monotonic time now (tests drive a virtual clock). */
void coord_on_message_at(struct coord *co, const char *topic, const void *payload,
			 size_t len, int64_t now);
/* Run timers (start rounds, deadlines). Returns the milliseconds until the
 * next timer is due (<= max_ms). */
int coord_tick(struct coord *co, int64_t now_ms, int max_ms);
/* Phases of the round machine (coord_info.phase). */
enum coord_phase {
	COORD_WAIT_AGENTS = 0, /* not enough live agents (or not connected yet) */
	COORD_COLLECT,         /* round announced; collecting updates */
	COORD_PAUSE,           /* closed; waiting interval_ms for the next */
	COORD_FINISHED,        /* round.rounds done; idle until stopped */
};

/* Snapshot of the round machine (tests, diagnostics). */
struct coord_info {
	enum coord_phase phase;
	uint64_t round;                 /* round being run (next to close) */
	enum fv_round_kind kind;        /* its kind */
	uint32_t n_live;                /* live agents */
	uint32_t n_selected;            /* agents in the open announcement */
	uint32_t n_answered;            /* accepted updates */
	uint32_t extensions;            /* deadline extensions used */
	uint64_t rejected[FV_REJ__MAX]; /* rejections since the last close, by reason */
	const struct fv_global *model;  /* borrowed; NULL before version 1 */
	uint64_t epoch;                 /* coordinator epoch (proto/fedvigil.proto) */
	bool signing;                   /* models and announcements are signed */
	/* Since start (Prometheus counters). */
	uint64_t rounds_closed;         /* rounds closed */
	uint64_t accepted_total;        /* updates accepted */
	uint64_t rejected_total[FV_REJ__MAX]; /* updates rejected, by reason */
	uint64_t update_bytes_total;    /* payload bytes of update messages received */
	uint64_t late_valid_total;      /* valid late updates (then held or dropped) */
	int64_t deadline_ms;            /* the open round's deadline (length) */
	uint32_t excluded;              /* live agents left out of its selection */
	uint32_t late_held;             /* late updates waiting for the next close */
	uint64_t late_dropped;          /* late updates dropped since the last close */
	uint32_t missed;                /* selected agents without update, last close */
	uint32_t late_applied;          /* late updates aggregated, last close */
	uint64_t abandoned;             /* rounds abandoned since start */
	uint64_t missed_total;          /* selected agents without update, since start */
	uint64_t late_applied_total;    /* late updates aggregated, since start */
	uint64_t late_dropped_total;    /* late updates dropped, since start */
};
void coord_get_info(const struct coord *co, struct coord_info *ret);

/* Publish the retained offline state (before a clean disconnect). */
void coord_publish_offline(struct coord *co);

/* What the Prometheus page reads (metrics.c); all borrowed. */
struct fv_prom;
struct fv_sd;
struct coord_prom {
	const struct coord *co;
	const struct coord_config *cfg;
	const struct fv_mqtt *mqtt;
	const struct fv_sd *sd;
};
/* Render the page (an fv_httpd_render_fn; userdata is a struct coord_prom). */
void coord_render_prom(struct fv_prom *p, void *userdata);

#endif
