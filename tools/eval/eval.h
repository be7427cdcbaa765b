/* fedvigil-eval: offline experiments on a dataset manifest, with the
 * agent's ingest, windowing, scoring and debounce and the coordinator's
 * aggregation run in-process (docs/tools.md). */
#ifndef FEDVIGIL_TOOLS_EVAL_H
#define FEDVIGIL_TOOLS_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "coord.h"
#include "fedvigil/data.h"
#include "fedvigil/eval.h"
#include "fedvigil/wire.h"

enum ev_mode {
	EV_CENTRALIZED = 0, /* all training data pooled on one client */
	EV_FEDERATED,       /* one client per entity (the natural split) */
	EV_IID,             /* pooled windows dealt evenly to K clients */
	EV_DIRICHLET,       /* pooled windows split Dirichlet-alpha over K clients */
	EV_LOCAL,           /* one model per entity, no federation */
};

enum ev_plots {
	EV_PLOTS_PNG = 0,
	EV_PLOTS_SVG,
	EV_PLOTS_BOTH,
	EV_PLOTS_NONE,
};

/* One --set or manifest [set] entry. */
struct ev_set {
	const char *key;   /* "section.name" */
	const char *value;
	const char *where; /* "command line" or the manifest path */
};

struct ev_opts {
	const char *manifest;
	const char *out;        /* output directory */
	const char *root;       /* --root: replaces [dataset] root, NULL = manifest's */
	const char *broker;     /* --broker URL: through the real daemons; NULL = in-process */
	const char *bindir;     /* where fedvigil-agent/-coordinator live (--broker) */
	enum ev_mode mode;
	uint32_t clients;       /* iid/dirichlet: K; 0 = as many as entities */
	double alpha;           /* dirichlet concentration */
	double rate;            /* --broker: rows per second per entity, 0 = no pacing */
	enum ev_plots plots;
	bool quiet;             /* no progress line */
};

/* Everything a run needs: options, effective configs, the data. */
struct ev_ctx {
	struct ev_opts o;
	struct agent_config ac;   /* the agents' configuration */
	struct coord_config cc;   /* the coordinator's configuration */
	struct fv_manifest *man;
	struct fv_dataset *ds;
	uint32_t n_sets;
	struct ev_set *sets;      /* applied overrides, for the report */
	int64_t t_start;          /* monotonic ms at start */
};

/* One round as the coordinator closed it. */
struct ev_round {
	uint32_t round;       /* 0 = statistics round */
	char fleet[FV_NAME_MAX]; /* entity name in local mode, else "" */
	float loss;           /* weighted mean training loss (0 in round 0) */
	float threshold;      /* threshold published with the new model */
	uint32_t agents;      /* updates aggregated */
	uint64_t bytes_up;    /* update payloads */
	uint64_t bytes_down;  /* announcement and model payloads, times receivers */
	int64_t ms;           /* wall time of the round */
	double dp_epsilon;    /* differential privacy spent so far (0 without DP) */
};

/* Per entity: the verdict of every test row. */
struct ev_points {
	size_t n;             /* test rows */
	double *score;        /* (n) window score; NAN = no window ended on the row */
	float *threshold;     /* (n) threshold in force */
	uint8_t *pred;        /* (n) alert active after the row's window (debounced) */
	uint8_t *above;       /* (n) score > threshold (undebounced) */
	int8_t *label;        /* (n) */
	size_t unscored;      /* rows without a window of their own */
	float final_threshold;
	uint64_t model_version;
};

/* The outcome of a run. */
struct ev_result {
	uint32_t n_clients;        /* clients per federation */
	uint32_t rounds;           /* training rounds per federation */
	uint32_t n_log;
	struct ev_round *log;      /* rounds, in order (local: entity by entity) */
	struct ev_points *pts;     /* (n_entities) */
	struct fv_model_spec spec;
	size_t n_params;
	uint64_t bytes_up, bytes_down;
	uint64_t windows_train;    /* training windows over all clients */
	double load_s, train_s, score_s, total_s;
	long peak_rss_kb;          /* of this process (and, with --broker, the largest child) */
	bool broker;               /* ran through the daemons */
};

/* run.c: the in-process experiment. 0 or -errno (logged). */
int ev_run(struct ev_ctx *cx, struct ev_result *ret);
/* broker.c: the same through fedvigil-coordinator and fedvigil-agent
 * processes on the broker given with --broker. 0 or -errno (logged). */
int ev_run_broker(struct ev_ctx *cx, struct ev_result *ret);
void ev_result_free(struct ev_result *r, uint32_t n_entities);

/* report.c: report.json, report.md, points.csv, rounds.csv, roc.csv in
 * o.out. Prints the pooled summary line on stdout. 0 or -errno (logged). */
int ev_report(const struct ev_ctx *cx, const struct ev_result *r);
/* plot.c: render the plots with gnuplot (a warning, not an error, when it
 * is missing). */
int ev_plot(const struct ev_ctx *cx, const struct ev_result *r);

const char *ev_mode_name(enum ev_mode m);
/* Progress on stderr: "\r" updates on a terminal, one line per step
 * otherwise; silent with --quiet. done/total steps; loss of the last one. */
void ev_progress(const struct ev_ctx *cx, const char *what, uint32_t done, uint32_t total,
		 double loss);
void ev_progress_end(const struct ev_ctx *cx);

#endif
