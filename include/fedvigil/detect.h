/* fedvigil detection: debounced alert state and per-channel attribution.
 *
 * A window is "above" when its score exceeds the threshold. An alert is
 * raised when at least k of the last n windows were above, and cleared with
 * hysteresis once clear_n windows in a row scored below
 * threshold * clear_ratio. */
#ifndef FEDVIGIL_DETECT_H
#define FEDVIGIL_DETECT_H

#include <stdbool.h>
#include <stdint.h>

#include "fedvigil/ingest.h"

#define FV_DETECT_MAX_N 64

struct fv_detect_opts {
	uint32_t k;        /* windows above needed to raise ... */
	uint32_t n;        /* ... among the last n (1..FV_DETECT_MAX_N, k <= n) */
	float clear_ratio; /* a window counts as calm below threshold*clear_ratio */
	uint32_t clear_n;  /* calm windows in a row needed to clear */
};

enum fv_detect_event {
	FV_DETECT_NONE = 0,
	FV_DETECT_RAISED,
	FV_DETECT_CLEARED,
};

struct fv_detector {
	struct fv_detect_opts o;              /* options */
	bool above[FV_DETECT_MAX_N];          /* recent windows above? (ring) */
	int64_t start[FV_DETECT_MAX_N];       /* their start times */
	uint32_t pos;                         /* next ring slot */
	uint32_t filled;                      /* valid ring entries */
	uint32_t calm;                        /* calm windows in a row */
	bool raised;                          /* an alert is active */
	int64_t alert_start_ms;               /* first above window of the episode */
	int64_t alert_end_ms;                 /* end of the last above window */
	float max_score;                      /* highest score of the episode */
	float max_threshold;                  /* threshold in force at that score */
};

/* -EINVAL on inconsistent options. */
int fv_detect_init(struct fv_detector *d, const struct fv_detect_opts *o);
/* Forget history (e.g. after a model change); an active alert stays active. */
void fv_detect_reset_history(struct fv_detector *d);
/* Feed one window's score. threshold <= 0 means "no threshold yet": the
 * window counts as calm. Returns the event it caused. */
enum fv_detect_event fv_detect_push(struct fv_detector *d, float score, float threshold,
				    int64_t start_ms, int64_t end_ms);

/* Per-channel shares of a window's squared error.
 * sqerr: (W, C) -> ret_share: (C), summing to 1 (uniform when all zero). */
void fv_detect_channel_share(float *ret_share, const float *sqerr, uint32_t W, uint32_t C);
/* Indices of the `k` largest values of v (C entries), largest first. Returns
 * how many were written (min(k, C)). */
uint32_t fv_detect_top(uint32_t *ret_idx, const float *v, uint32_t C, uint32_t k);

/* ---- features: what the model sees of a window ----
 * Chosen by the coordinator ([model] features) and carried in the global
 * model, so every agent prepares its windows alike. */
enum fv_feat {
	FV_FEAT_VALUES = 0, /* z-normalised values */
	FV_FEAT_DIFF = 1,   /* their first differences inside the window (row 0: 0) */
	FV_FEAT_BOTH = 2,   /* values and differences side by side: 2C columns */
};
#define FV_FEAT__MAX 3
/* Model input columns per vector at most. */
#define FV_MAX_COLUMNS (2 * FV_MAX_CHANNELS)

/* "values|diff|both" <-> enum; -EINVAL for anything else. */
int fv_feat_parse(const char *s, enum fv_feat *ret);
const char *fv_feat_name(enum fv_feat f);
/* Model input columns per vector: C, or 2C for FV_FEAT_BOTH. */
uint32_t fv_feat_columns(enum fv_feat f, uint32_t C);
/* raw: (W, C) readings, oldest first -> ret: (W, fv_feat_columns(f, C)),
 * z-normalised with mean/std (C) and transformed by f. Differences are of
 * the normalised values, inside the window only, so a window needs nothing
 * from before it. ret and raw must not overlap. */
void fv_feat_prepare(float *ret, const float *raw, uint32_t W, uint32_t C, const float *mean,
		     const float *std, enum fv_feat f);

#endif
