/* fedvigil scorer: how one agent scores its windows under the fleet's
 * global model, and the threshold it holds them against.
 *
 * The agent daemon and fedvigil-eval both score through this, so an offline
 * experiment detects exactly as a running agent does.
 *
 * Score of a window (rules carried in the global model):
 *   1. prepare: z-normalise with the fleet's mean/std, apply the features
 *      (values, first differences, or both);
 *   2. reconstruct; e_c = the window's mean squared error in input column c;
 *   3. calibrate (when the model says so): score = mean_c e_c / n_c, where
 *      n_c is this agent's mean e_c over its own normal windows, shrunk
 *      towards the fleet's mean (GlobalModel.col_err) by calib_prior
 *      windows. A machine whose normal differs from the fleet's (a noisier
 *      sensor, a channel the model reconstructs badly everywhere) then
 *      scores about 1 on its own normal data, so one fleet threshold fits
 *      every machine, and a channel with little normal error weighs more
 *      when it goes wrong. Without calibration: score = mean_c e_c (MSE);
 *   4. smooth: EWMA over consecutive windows (causal; restarts after a gap).
 *
 * Threshold (the agent's [detect] threshold):
 *   global    the fleet's threshold as published;
 *   local     the fleet's rule applied to (fleet's normal scores scaled to
 *             prior_windows) + (this agent's normal scores, at calibration);
 *   adaptive  the fleet's threshold, scaled by how far this agent's scores
 *             have moved since its calibration: thr = fleet threshold *
 *             Q(recent) / Q(reference), Q the fleet's rule, the reference
 *             local's distribution (the fleet's scores weighing
 *             prior_windows plus the agent's own at calibration), recent =
 *             the reference (still weighing prior_windows) plus every
 *             observed window with exponential decay (half-life
 *             `halflife` windows). A window above the threshold before the
 *             rule's margin counts as Q(recent) itself (censored), so
 *             anomalies neither pull the threshold up nor, left out, bias
 *             it down; the windows of an alert below it are left out (a
 *             climbing fault would otherwise lift it ahead of itself).
 * No threshold (0: no alerts) until the fleet has published one. */
#ifndef FEDVIGIL_SCORER_H
#define FEDVIGIL_SCORER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/detect.h"
#include "fedvigil/fl.h"
#include "fedvigil/nn.h"
#include "fedvigil/threshold.h"
#include "fedvigil/wire.h"

enum fv_thr_mode {
	FV_THRMODE_GLOBAL = 0,   /* the fleet's threshold */
	FV_THRMODE_LOCAL = 1,    /* fleet prior + own normal scores */
	FV_THRMODE_ADAPTIVE = 2, /* local, then following the calm scores */
};
#define FV_THRMODE__MAX 3

/* "global|local|adaptive" <-> enum. */
int fv_thr_mode_parse(const char *s, enum fv_thr_mode *ret);
const char *fv_thr_mode_name(enum fv_thr_mode m);

/* The agent's choices ([detect]). */
struct fv_scorer_opts {
	enum fv_thr_mode mode; /* which threshold */
	double prior_windows;  /* windows: fleet's scores (local), reference (adaptive) */
	double halflife;       /* adaptive: half-life of own scores in windows (> 0) */
	double calib_prior;    /* calibration: windows the fleet's column errors count as */
};

struct fv_scorer;

/* A scorer for C channels; NULL on bad options (errno EINVAL) or ENOMEM.
 * It scores nothing until fv_scorer_set_model(). */
struct fv_scorer *fv_scorer_new(const struct fv_scorer_opts *o, uint32_t C);
void fv_scorer_free(struct fv_scorer *s);

/* Score under global model g from now on. g is borrowed and must stay
 * valid (and unchanged) until the next call or fv_scorer_free(). Forgets
 * the calibration (the fleet's column errors stand in until the next
 * fv_scorer_calibrate()), the smoothing state and the adaptive history.
 * -EDOM if g has another channel count, -ENOMEM. */
int fv_scorer_set_model(struct fv_scorer *s, const struct fv_global *g);

/* Model input width: W * columns (0 before a model). */
size_t fv_scorer_input(const struct fv_scorer *s);
/* raw (W, C) -> ret (fv_scorer_input()): normalised and featured. */
void fv_scorer_prepare(const struct fv_scorer *s, const float *raw, float *ret);

/* Calibrate on this agent's normal windows x (N, fv_scorer_input()),
 * prepared; cont[i] (may be NULL: none) says window i directly follows
 * window i - 1, for smoothing. Sets the column weights and the local and
 * adaptive thresholds. ret_hist (may be NULL) gets the histogram of the
 * windows' final scores (reset first) and ret_col_err (may be NULL;
 * columns entries) the per-column sums of their mean squared errors: what
 * a ModelUpdate carries. -EINVAL before a model, -ENOMEM. */
int fv_scorer_calibrate(struct fv_scorer *s, const float *x, const uint8_t *cont, size_t N,
			struct fv_hist *ret_hist, double *ret_col_err);
/* The same over windows produced on demand: row(ctx, i, dst) writes
 * prepared window i (fv_scorer_input() floats), once per window, in
 * order (the agent builds them from its ring buffer: no copy of them all). */
int fv_scorer_calibrate_rows(struct fv_scorer *s, fv_model_row_fn row, void *ctx,
			     const uint8_t *cont, size_t N, struct fv_hist *ret_hist,
			     double *ret_col_err);

/* Score one raw window (W, C); cont = it directly follows the previous
 * one. *ret_score gets the final score (may be NaN/Inf for a broken
 * model); ret_share (C, may be NULL) each channel's share of the
 * (calibrated) error, summing to 1. -EINVAL before a model. */
int fv_scorer_score(struct fv_scorer *s, const float *raw, bool cont, float *ret_score,
		    float *ret_share);

/* The threshold in force (0 = none: no alerts). */
float fv_scorer_threshold(const struct fv_scorer *s);
/* A window scored this (call for every window, after its verdict;
 * in_alert: an alert is active): the adaptive threshold learns from it, as
 * described above. No-op in the other modes. */
void fv_scorer_observe(struct fv_scorer *s, float score, bool in_alert);
/* Windows in the last calibration (0: none since the model). */
size_t fv_scorer_calibrated(const struct fv_scorer *s);
/* Column weights in use (columns entries; all 1 without calibration). */
const float *fv_scorer_weights(const struct fv_scorer *s);

/* ---- the coordinator's side ----
 * The detection part of closing a training round over k updates: their
 * score histograms merged into g->scores, the threshold read from it by
 * rule into g->threshold (kept when no update carried scores, or the rule
 * gives nothing usable), the rule itself into g->rule, and the fleet's
 * per-column normal error (sum of the updates' col_err over the sum of
 * their histogram counts; updates without col_err, or with another length,
 * are left out) into g->col_err (kept when none had any). The coordinator
 * and fedvigil-eval both close rounds with this. -ENOMEM (g unchanged). */
int fv_detect_close_round(struct fv_global *g, const struct fv_update *u, uint32_t k,
			  const struct fv_thr_rule *rule);

#endif
