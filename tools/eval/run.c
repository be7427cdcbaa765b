/* The in-process experiment: every entity is an agent as agent/agent.c
 * runs it, and the federation is the coordinator's rounds, with the library
 * code both daemons use (fv_fleet_norm, fv_local_train, fv_agg_round, the
 * scorer of lib/detect and fv_detect_close_round), every message encoded
 * and decoded as on the wire.
 *
 * The flow is that of scripts/demo --data: each entity's training rows go
 * through the agent's alignment (data clock) into its buffer; the
 * coordinator runs its statistics and training rounds; then the remaining
 * rows stream in and are scored as the agent scores them live (windowing,
 * scorer, threshold in force, debounce, buffer marking, recalibration).
 * Verdicts are causal: a row's verdict comes from the window that ends on
 * it. What the agent keeps as static code (its buffer, window collection,
 * calibration triggers, on_vector/on_window) is mirrored here and named
 * where it is; --broker runs the daemons themselves. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fedvigil/detect.h"
#include "fedvigil/fl.h"
#include "fedvigil/fleet.h"
#include "fedvigil/ingest.h"
#include "fedvigil/scorer.h"
#include "fedvigil/vecbuf.h"
#include "round.h"

#define MAX_TICKS_PER_MSG 100000 /* as agent/agent.c */
#define CALIB_MIN_VECTORS 64     /* as agent/agent.c */
#define WEIGHT_MAX (1ull << 40)  /* as coordinator/coord.c */
#define FLEET "eval"

/* Raw training windows as the agent cuts them (fv_vecbuf_windows()),
 * unprepared: ret_x (N, W*C), ret_cont (N) = follows the previous window
 * in the same run, ret_first (N) = first window of its run (may be NULL). */
static int collect_raw(const struct fv_vecbuf *b, uint32_t W, uint32_t S, int64_t period,
		       float **ret_x, uint8_t **ret_cont, uint8_t **ret_first, size_t *ret_n)
{
	size_t D = (size_t)W * b->C, n;
	size_t *end = NULL;
	uint8_t *cont = NULL, *first = NULL;
	float *x;

	if (fv_vecbuf_windows(b, W, S, period, &end, &cont, &first, &n) < 0)
		return -ENOMEM;
	x = malloc((n ? n : 1) * D * sizeof(float));
	if (!x) {
		free(end);
		free(cont);
		free(first);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		fv_vecbuf_window(b, end[i], W, x + i * D);
	free(end);
	*ret_x = x;
	*ret_cont = cont;
	if (ret_first)
		*ret_first = first;
	else
		free(first);
	*ret_n = n;
	return 0;
}

/* Prepare raw windows (N, W*C) for the scorer's model: (N, input). */
static float *prepare(const struct fv_scorer *sc, const float *raw, size_t N, size_t WC)
{
	size_t D = fv_scorer_input(sc);
	float *x = malloc((N ? N : 1) * D * sizeof(float));

	if (!x)
		return NULL;
	for (size_t i = 0; i < N; i++)
		fv_scorer_prepare(sc, raw + i * WC, x + i * D);
	return x;
}

/* The agent's calibrate(): on the buffer's normal windows. */
static int calibrate(struct fv_scorer *sc, const struct fv_vecbuf *b, uint32_t W, uint32_t S,
		     int64_t period)
{
	float *raw = NULL, *x;
	uint8_t *cont = NULL;
	size_t N = 0;
	int r = collect_raw(b, W, S, period, &raw, &cont, NULL, &N);

	if (r < 0)
		return r;
	x = prepare(sc, raw, N, (size_t)W * b->C);
	r = x ? fv_scorer_calibrate(sc, x, cont, N, NULL, NULL) : -ENOMEM;
	free(raw);
	free(x);
	free(cont);
	return r;
}

/* ---- an entity's agent: ingest, and scoring once it has a model ---- */

struct ent {
	const struct ev_ctx *cx;
	const struct fv_ds_entity *e;
	uint32_t C;
	struct fv_align *al;
	float *vec;               /* (C) */
	size_t *obs;              /* streamed rows, in order */
	size_t n_obs, p;          /* their count; the row mapping's position */
	size_t next;              /* rows [0, next) of the timeline are streamed */
	int64_t last_ts;          /* of the last streamed row */
	struct fv_vecbuf buf;     /* the training buffer */
	struct fv_chstats *stats; /* (C) every complete vector */
	uint64_t n_vectors;
	/* scoring (pass B) */
	const struct fv_global *g; /* model in force, NULL before */
	struct fv_scorer *sc;
	struct fv_window *win;
	float *winbuf;            /* (W*C) */
	struct fv_detector det;
	bool have_last;
	int64_t last_start;
	size_t calib_len;
	const long *test_idx;     /* timeline row -> test row, -1 */
	struct ev_points *pts;
};

static void ent_free(struct ent *t)
{
	fv_align_free(t->al);
	free(t->vec);
	free(t->obs);
	fv_vecbuf_free(&t->buf);
	free(t->stats);
	fv_scorer_free(t->sc);
	fv_window_free(t->win);
	free(t->winbuf);
	memset(t, 0, sizeof(*t));
}

static int ent_init(struct ent *t, const struct ev_ctx *cx, const struct fv_ds_entity *e,
		    uint32_t C)
{
	const struct agent_config *ac = &cx->ac;
	struct fv_scorer_opts so = { .mode = (enum fv_thr_mode)ac->thr_mode,
				     .prior_windows = ac->prior_windows,
				     .halflife = ac->halflife,
				     .calib_prior = ac->calib_prior };
	struct fv_detect_opts dopt = { .k = (uint32_t)ac->k, .n = (uint32_t)ac->n,
				       .clear_ratio = (float)ac->clear_ratio,
				       .clear_n = (uint32_t)ac->clear_n };

	memset(t, 0, sizeof(*t));
	t->cx = cx;
	t->e = e;
	t->C = C;
	t->al = fv_align_new(C, ac->period_ms, ac->max_age_ms);
	t->vec = malloc(C * sizeof(float));
	t->obs = malloc((e->n ? e->n : 1) * sizeof(*t->obs));
	t->stats = calloc(C, sizeof(*t->stats));
	t->sc = fv_scorer_new(&so, C);
	t->last_ts = INT64_MIN;
	if (!t->al || !t->vec || !t->obs || !t->stats || !t->sc ||
	    fv_vecbuf_init(&t->buf, C, (size_t)ac->buffer) < 0 || fv_detect_init(&t->det, &dopt) < 0)
		return -ENOMEM;
	for (uint32_t c = 0; c < C; c++)
		fv_chstats_init(&t->stats[c]);
	return 0;
}

/* The agent's on_window(). */
static void on_window(struct ent *t, int64_t start, int64_t end, long row)
{
	const struct fv_global *g = t->g;
	float score, thr;
	bool above, was_raised, cont;
	long k;

	cont = t->have_last && start == t->last_start + (int64_t)g->stride * t->cx->ac.period_ms;
	t->last_start = start;
	t->have_last = true;
	if (fv_scorer_score(t->sc, t->winbuf, cont, &score, NULL) < 0)
		return;
	thr = fv_scorer_threshold(t->sc);
	above = thr > 0 && score > thr;
	if (above)
		fv_vecbuf_mark_recent(&t->buf, g->window);
	if (!isfinite(score))
		return;
	was_raised = t->det.raised;
	fv_detect_push(&t->det, score, thr, start, end);
	if (was_raised || t->det.raised)
		fv_vecbuf_mark_recent(&t->buf, g->stride);
	k = row >= 0 && t->test_idx ? t->test_idx[row] : -1;
	/* Several ticks on one row (rows sparser than the period): the
	 * highest score and any alert count, as fedvigil-score does. */
	if (k >= 0) {
		if (isnan(t->pts->score[k]) || score > t->pts->score[k])
			t->pts->score[k] = score;
		t->pts->threshold[k] = thr;
		t->pts->pred[k] |= t->det.raised;
		t->pts->above[k] |= above;
	}
	/* After the verdict: the adaptive threshold learns from the windows
	 * (censored above the threshold; those of an alert below it left out). */
	fv_scorer_observe(t->sc, score, was_raised || t->det.raised);
}

/* The agent's on_vector(). */
static void on_vector(struct ent *t, int ok, int64_t tick, long row)
{
	int64_t start;

	if (ok < 0) {
		if (t->win)
			fv_window_reset(t->win);
		return;
	}
	t->n_vectors++;
	for (uint32_t c = 0; c < t->C; c++)
		fv_chstats_add(&t->stats[c], t->vec[c]);
	fv_vecbuf_push(&t->buf, t->vec, tick);
	if (t->g && fv_window_push(t->win, t->vec, tick, t->winbuf, &start) == 1)
		on_window(t, start, tick, row);
	if (t->g && t->buf.len >= FV_MAX(2 * t->calib_len, CALIB_MIN_VECTORS) &&
	    t->buf.len < t->buf.cap) {
		t->calib_len = t->buf.len;
		calibrate(t->sc, &t->buf, t->g->window, t->g->stride, t->cx->ac.period_ms);
	}
}

/* Feed rows [t->next, to) of the timeline whose role matches mask (0: all)
 * cell by cell through fv_align as the agent does on the data clock (before
 * each reading every tick due before its time is sampled; empty cells are
 * readings that never came). With flush, a last pass samples the final
 * row's tick (a reading one period later would). */
static void ent_stream(struct ent *t, size_t to, uint8_t mask, bool flush)
{
	const struct fv_ds_entity *e = t->e;
	uint32_t C = t->C;

	for (size_t i = t->next; i <= to; i++) {
		const float *x = i < to ? e->x + i * C : NULL;
		int64_t ts;

		if (!x && (!flush || t->last_ts == INT64_MIN))
			break;
		if (x && mask && !(e->role[i] & mask))
			continue;
		ts = x ? e->ts[i] : t->last_ts + 1;
		for (uint32_t c = 0; c < C || (!x && c == 0); c++) {
			uint64_t skipped = 0;
			uint32_t due;

			if (x && isnan(x[c]))
				continue;
			due = fv_align_due(t->al, ts, MAX_TICKS_PER_MSG, &skipped);
			if (skipped && t->win)
				fv_window_reset(t->win);
			for (uint32_t k = 0; k < due; k++) {
				int64_t tick;
				int ok = fv_align_sample(t->al, t->vec, &tick);

				if (ok == -EAGAIN)
					break;
				while (t->p + 1 < t->n_obs && e->ts[t->obs[t->p + 1]] <= tick)
					t->p++;
				on_vector(t, ok, tick,
					  t->n_obs && e->ts[t->obs[t->p]] <= tick ? (long)t->obs[t->p] : -1);
			}
			if (!x)
				break;
			fv_align_observe(t->al, c, x[c], ts);
		}
		if (x) {
			t->obs[t->n_obs++] = i;
			t->last_ts = ts;
		}
	}
	t->next = to;
}

/* The agent adopting its final model before the test rows: a window of the
 * model's shape, the scorer set to the model and calibrated on the buffer. */
static int ent_adopt(struct ent *t, const struct fv_global *g)
{
	size_t WC = (size_t)g->window * t->C;
	int r;

	t->win = fv_window_new(t->C, g->window, g->stride);
	t->winbuf = malloc(WC * sizeof(float));
	if (!t->win || !t->winbuf)
		return -ENOMEM;
	t->g = g;
	t->have_last = false;
	fv_detect_reset_history(&t->det);
	if ((r = fv_scorer_set_model(t->sc, g)) < 0)
		return r;
	t->calib_len = t->buf.len;
	return calibrate(t->sc, &t->buf, g->window, g->stride, t->cx->ac.period_ms);
}

/* ---- clients and the federation ---- */

struct client {
	char name[FV_NAME_MAX];
	struct fv_scorer *sc;     /* its scorer (calibration, update scores) */
	size_t N;                 /* training windows */
	float *raw;               /* (N, W*C) */
	uint8_t *cont;            /* (N) */
	float *x;                 /* (N, input) prepared after the statistics round */
	struct fv_chstats *stats; /* (C) statistics it reports */
	uint64_t n_vectors;       /* vectors behind the statistics */
};

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct fed {
	struct ev_ctx *cx;
	struct ev_result *res;
	const char *fleet_label;  /* local mode: the entity */
	uint32_t step, steps;     /* progress over all federations */
	/* Modes whose training clients are not the entities (centralized,
	 * iid, dirichlet): the entities' own windows. The detection part of
	 * every update (score histogram, column errors) is then what the
	 * entities' agents compute, each calibrated on its own windows as it
	 * scores its test rows; it travels in the first update of the round,
	 * the other updates carry none. NULL: every client's own. */
	struct client *det;
	uint32_t n_det;
};

static void fill_hdr(struct fv_hdr *h, const char *sender, uint64_t round, uint64_t base)
{
	memset(h, 0, sizeof(*h));
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, FLEET, sizeof(h->fleet));
	fv_strlcpy(h->sender, sender, sizeof(h->sender));
	h->round = round;
	h->base_version = base;
	h->ts_ms = fv_now_wall_ms();
}

static int log_round(struct ev_result *res, const struct ev_round *r)
{
	struct ev_round *l = realloc(res->log, (res->n_log + 1) * sizeof(*l));

	if (!l)
		return -ENOMEM;
	res->log = l;
	res->log[res->n_log++] = *r;
	return 0;
}

/* The announcement every client receives (retained): bytes down = payload
 * * receivers. It goes through encode and decode, and the clients train
 * with the hyper-parameters as decoded (ret_hp), as agents do. */
static int announce(const struct ev_ctx *cx, uint64_t round, enum fv_round_kind kind,
		    uint64_t base, char (*sel)[FV_NAME_MAX], uint32_t n_sel, size_t *ret_len,
		    struct fv_hparams *ret_hp)
{
	struct fv_announce a, seen;
	uint8_t *buf = NULL;
	int r;

	memset(&a, 0, sizeof(a));
	fill_hdr(&a.h, cx->cc.id, round, base);
	a.kind = kind;
	a.hp.epochs = (uint32_t)cx->cc.epochs;
	a.hp.batch = (uint32_t)cx->cc.batch;
	a.hp.lr = (float)cx->cc.lr;
	a.hp.seed = (uint64_t)cx->cc.seed ^ round;
	a.hp.min_windows = (uint32_t)cx->cc.min_samples;
	a.hp.optim = (enum fv_optim)cx->cc.optimizer;
	a.hp.momentum = (float)cx->cc.momentum;
	a.hp.weight_decay = (float)cx->cc.weight_decay;
	a.hp.prox_mu = (float)cx->cc.prox_mu;
	a.deadline_ms = fv_now_wall_ms() + cx->cc.deadline_ms;
	a.n_selected = n_sel;
	a.selected = sel;
	r = fv_announce_encode(&a, &buf, ret_len);
	if (r == 0)
		r = fv_announce_decode(buf, *ret_len, FLEET, &seen);
	free(buf);
	if (r == 0) {
		*ret_hp = seen.hp;
		fv_announce_clear(&seen);
	}
	return r;
}

static int publish_model(const struct fv_global *g, struct fv_global *ret_seen, size_t *ret_len)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = fv_global_encode(g, &buf, &len);

	if (r == 0)
		r = fv_global_decode(buf, len, FLEET, ret_seen);
	free(buf);
	*ret_len = len;
	return r;
}
static int send_update(const struct fv_update *u, enum fv_round_kind kind, size_t n_params,
		       uint32_t C, struct fv_update *ret, size_t *ret_len)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = fv_update_encode(u, &buf, &len);

	if (r == 0)
		r = fv_update_decode(buf, len, FLEET, ret);
	free(buf);
	if (r == 0) {
		r = fv_update_check(ret, kind, u->h.round, u->h.base_version, n_params, C);
		if (r < 0)
			fv_update_clear(ret);
	}
	*ret_len = len;
	return r;
}

/* The detection statistics of a training round under base model g from
 * the entities' windows (f->det), each calibrated on its own, as their
 * agents compute them: merged histogram and summed column errors. */
static int det_stats(const struct fed *f, const struct fv_global *g, struct fv_hist *ret_hist,
		     double *ret_col_err)
{
	uint32_t K = fv_global_columns(g);
	double col[FV_MAX_COLUMNS];
	struct fv_hist h;

	fv_hist_init(ret_hist);
	memset(ret_col_err, 0, FV_MAX_COLUMNS * sizeof(double));
	for (uint32_t i = 0; i < f->n_det; i++) {
		struct client *d = &f->det[i];
		int r;

		if (d->N == 0)
			continue;
		r = fv_scorer_set_model(d->sc, g);
		if (r == 0)
			r = fv_scorer_calibrate(d->sc, d->x, d->cont, d->N, &h, col);
		if (r < 0) {
			fv_log(FV_LOG_ERR, "%s: scoring its training windows failed: %s", d->name,
			       fv_strerror(r));
			return r;
		}
		fv_hist_merge(ret_hist, &h);
		for (uint32_t c = 0; c < K; c++)
			ret_col_err[c] += col[c];
	}
	return 0;
}

/* Run one federation over K clients: the statistics round, then
 * round.rounds training rounds. ret_g gets the final model as the clients
 * received it. */
static int federate(struct fed *f, struct client *cl, uint32_t K, struct fv_global *ret_g)
{
	struct ev_ctx *cx = f->cx;
	const struct coord_config *cc = &cx->cc;
	uint32_t C = cx->ds->C, W = (uint32_t)cc->window;
	const char **sorted = NULL;
	char (*live)[FV_NAME_MAX] = NULL, (*sel)[FV_NAME_MAX] = NULL;
	struct fv_update *upd = NULL;
	struct fv_agg_update *up = NULL;
	struct fv_chstats *merged = NULL;
	double *col_err = NULL;
	struct fv_global g, seen;
	struct fv_hist det_hist;
	double det_col_err[FV_MAX_COLUMNS];
	struct fv_model *m = NULL;
	struct fv_agg *agg = NULL;
	float *delta = NULL;
	uint32_t min_agents = (uint32_t)FV_MIN((long long)K, cc->min_agents);
	int r = -ENOMEM;

	memset(&g, 0, sizeof(g));
	memset(&seen, 0, sizeof(seen));
	sorted = malloc(K * sizeof(*sorted));
	live = calloc(K, FV_NAME_MAX);
	sel = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	upd = calloc(K, sizeof(*upd));
	up = calloc(K, sizeof(*up));
	merged = calloc(C, sizeof(*merged));
	col_err = calloc(FV_MAX_COLUMNS, sizeof(double));
	if (!sorted || !live || !sel || !upd || !up || !merged || !col_err)
		goto out;
	for (uint32_t i = 0; i < K; i++)
		sorted[i] = cl[i].name;
	qsort(sorted, K, sizeof(*sorted), cmp_name);
	for (uint32_t i = 0; i < K; i++)
		fv_strlcpy(live[i], sorted[i], FV_NAME_MAX);

	for (uint32_t R = 0; R <= (uint32_t)cc->rounds; R++) {
		enum fv_round_kind kind = R == 0 ? FV_ROUND_STATS : FV_ROUND_TRAIN;
		struct ev_round lr = { .round = R };
		struct fv_hparams hp = { 0 };

		if (f->fleet_label)
			fv_strlcpy(lr.fleet, f->fleet_label, sizeof(lr.fleet));
		int64_t t0 = fv_now_mono_ms();
		uint32_t n_upd = 0;
		size_t len;
		int n;

		n = round_select((const char (*)[FV_NAME_MAX])live, K, NULL, NULL, 0, min_agents,
				 cc->fraction, (uint64_t)cc->seed, R, sel);
		if (n <= 0) {
			r = n < 0 ? n : -ENODATA;
			goto out;
		}
		r = announce(cx, R, kind, R == 0 ? 0 : g.version, sel, (uint32_t)n, &len, &hp);
		if (r < 0)
			goto out;
		lr.bytes_down += (uint64_t)len * K;
		if (kind == FV_ROUND_TRAIN && f->det &&
		    (r = det_stats(f, &seen, &det_hist, det_col_err)) < 0)
			goto out;
		/* The coordinator sorts the answers by agent name before it
		 * aggregates; selecting from the sorted list and answering in
		 * that order gives the same. */
		for (uint32_t i = 0; i < K; i++) {
			struct client *c = NULL;
			struct fv_update u;

			if (round_find((const char (*)[FV_NAME_MAX])sel, (uint32_t)n, live[i]) < 0)
				continue;
			for (uint32_t j = 0; j < K; j++)
				if (strcmp(cl[j].name, live[i]) == 0)
					c = &cl[j];
			memset(&u, 0, sizeof(u));
			fill_hdr(&u.h, c->name, R, R == 0 ? 0 : g.version);
			u.kind = kind;
			fv_hist_init(&u.hist);
			if (kind == FV_ROUND_STATS) {
				if (c->n_vectors < hp.min_windows)
					continue; /* the agent waits for more data */
				u.n_samples = c->n_vectors;
				u.n_channels = C;
				u.stats = c->stats;
			} else {
				/* As the agent reads the announcement (agent.c). */
				struct fv_local_opts lo = { .epochs = hp.epochs, .seed = hp.seed,
							    .train = FV_TRAIN_DEFAULTS };
				float loss = 0.0f;

				lo.batch = hp.batch < 1 ? 1
							: FV_MIN(hp.batch, (uint32_t)cx->ac.max_batch);
				lo.train.optim = hp.optim;
				lo.train.lr = hp.lr;
				lo.train.momentum = hp.momentum;
				lo.train.weight_decay = hp.weight_decay;
				lo.train.prox_mu = hp.prox_mu;
				if (c->N < hp.min_windows || c->N == 0)
					continue; /* not enough normal windows */
				/* The agent's do_train_round(): calibrate the scorer on
				 * its windows under the base model (scores and
				 * per-column errors for the coordinator), then train.
				 * With f->det the entities' statistics stand in. */
				r = 0;
				if (!f->det) {
					r = fv_scorer_set_model(c->sc, &seen);
					if (r == 0)
						r = fv_scorer_calibrate(c->sc, c->x, c->cont, c->N,
									&u.hist, col_err);
				} else if (n_upd == 0) {
					u.hist = det_hist;
					memcpy(col_err, det_col_err, sizeof(det_col_err));
				}
				if (r == 0)
					r = fv_local_train(&seen.spec, seen.params, seen.n_params, c->x,
							   c->N, &lo, delta, &loss);
				if (r < 0) {
					fv_log(FV_LOG_ERR, "round %u: local training of %s failed: %s", R,
					       c->name, fv_strerror(r));
					goto out;
				}
				u.n_col_err = !f->det || n_upd == 0 ? fv_global_columns(&seen) : 0;
				u.col_err = u.n_col_err ? col_err : NULL;
				u.n_samples = c->N;
				u.loss = loss;
				u.n_params = seen.n_params;
				u.delta = delta;
			}
			r = send_update(&u, kind, R == 0 ? 0 : g.n_params, C, &upd[n_upd], &len);
			if (r < 0) {
				fv_log(FV_LOG_ERR, "round %u: the update of %s does not pass the wire: %s",
				       R, c->name, fv_strerror(r));
				goto out;
			}
			lr.bytes_up += len;
			n_upd++;
		}
		if (n_upd == 0) {
			fv_log(FV_LOG_ERR,
			       "round %u: no selected client has round.min_samples = %lld %s (the "
			       "coordinator would wait for ever)",
			       R, cc->min_samples, R == 0 ? "vectors" : "training windows");
			r = -ENODATA;
			goto out;
		}
		if (kind == FV_ROUND_STATS) {
			uint32_t bad = 0;

			for (uint32_t c = 0; c < C; c++)
				fv_chstats_init(&merged[c]);
			for (uint32_t i = 0; i < n_upd; i++)
				for (uint32_t c = 0; c < C; c++)
					fv_chstats_merge(&merged[c], &upd[i].stats[c]);
			g.mean = calloc(C, sizeof(float));
			g.std = calloc(C, sizeof(float));
			m = fv_model_new_scorer(&cc->spec, 1);
			if (!g.mean || !g.std || !m) {
				r = -ENOMEM;
				goto out;
			}
			r = fv_fleet_norm(merged, C, g.mean, g.std, &bad);
			if (r < 0) {
				fv_log(FV_LOG_ERR, "statistics round: channel %s has no readings",
				       cx->ds->channels[bad]);
				goto out;
			}
			fv_model_init(m, (uint64_t)cc->seed);
			g.n_params = fv_model_nparams(m);
			g.params = malloc(g.n_params * sizeof(float));
			delta = malloc(g.n_params * sizeof(float));
			if (!g.params || !delta) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(g.params, fv_model_params(m), g.n_params * sizeof(float));
			fill_hdr(&g.h, cc->id, R, 0);
			g.version = 1;
			g.spec = cc->spec;
			g.window = W;
			g.stride = (uint32_t)cc->stride;
			g.n_channels = C;
			g.percentile = (float)cc->percentile;
			fv_strlcpy(g.aggregation, fv_agg_algo_name(cc->agg.algo),
				   sizeof(g.aggregation));
			g.dp_delta = cc->agg.dp ? cc->agg.dp_delta : 0.0;
			agg = fv_agg_new(&cc->agg, g.n_params, K);
			if (!agg) {
				fv_log(FV_LOG_ERR, "aggregator %s: %s", fv_agg_algo_name(cc->agg.algo),
				       fv_strerror(-errno));
				r = errno ? -errno : -ENOMEM;
				goto out;
			}
			/* The scoring rules (coordinator/coord.c close_stats()). */
			g.features = (enum fv_feat)cc->features;
			g.calibrate = cc->calibrate;
			g.smooth = (float)cc->smooth;
			g.rule = cc->rule;
			/* Mean, std and features are the fleet's from now on: the
			 * agents prepare their windows once for all rounds. */
			for (uint32_t i = 0; i < K; i++) {
				r = fv_scorer_set_model(cl[i].sc, &g);
				free(cl[i].x);
				cl[i].x = r == 0 ? prepare(cl[i].sc, cl[i].raw, cl[i].N, (size_t)W * C)
						 : NULL;
				if (!cl[i].x) {
					r = r < 0 ? r : -ENOMEM;
					goto out;
				}
			}
			for (uint32_t i = 0; f->det && i < f->n_det; i++) {
				struct client *d = &f->det[i];

				r = fv_scorer_set_model(d->sc, &g);
				free(d->x);
				d->x = r == 0 ? prepare(d->sc, d->raw, d->N, (size_t)W * C) : NULL;
				if (!d->x) {
					r = r < 0 ? r : -ENOMEM;
					goto out;
				}
			}
		} else {
			struct fv_agg_result ares;
			float loss = 0.0f;

			double lsum = 0.0, wsum = 0.0;

			/* coordinator/coord.c close_train(): the aggregator's step
			 * (answers sorted by name inside), then the detection
			 * part (threshold, per-column errors). */
			for (uint32_t i = 0; i < n_upd; i++) {
				up[i] = (struct fv_agg_update){ .name = upd[i].h.sender,
								.delta = upd[i].delta,
								.n_samples = FV_MIN(upd[i].n_samples,
										    WEIGHT_MAX) };
				lsum += (double)up[i].n_samples * upd[i].loss;
				wsum += (double)up[i].n_samples;
			}
			/* sample_rate as the coordinator's: selected / live */
			r = fv_agg_round(agg, g.params, up, n_upd, FV_MIN(1.0, (double)n / K), R,
					 g.params, NULL, &ares);
			if (r == 0) {
				g.calibrate = cc->calibrate;
				g.smooth = (float)cc->smooth;
				r = fv_detect_close_round(&g, upd, n_upd, &cc->rule);
			}
			if (r < 0) {
				fv_log(FV_LOG_ERR, "round %u: aggregation failed: %s", R, fv_strerror(r));
				goto out;
			}
			loss = wsum > 0 ? (float)(lsum / wsum) : 0.0f;
			fill_hdr(&g.h, cc->id, R, g.version);
			g.version++;
			g.loss = loss;
			lr.loss = loss;
			if (ares.dp_epsilon > 0.0) {
				g.dp_epsilon = (float)FV_MIN(ares.dp_epsilon, (double)FLT_MAX);
				lr.dp_epsilon = ares.dp_epsilon;
			}
		}
		g.n_agents = n_upd;
		for (uint32_t i = 0; i < n_upd; i++)
			fv_update_clear(&upd[i]);
		fv_global_clear(&seen);
		r = publish_model(&g, &seen, &len);
		if (r < 0) {
			fv_log(FV_LOG_ERR, "round %u: the model does not pass the wire: %s", R,
			       fv_strerror(r));
			goto out;
		}
		lr.bytes_down += (uint64_t)len * K;
		lr.threshold = g.threshold;
		lr.agents = n_upd;
		lr.ms = fv_now_mono_ms() - t0;
		f->res->bytes_up += lr.bytes_up;
		f->res->bytes_down += lr.bytes_down;
		if ((r = log_round(f->res, &lr)) < 0)
			goto out;
		if (R > 0)
			ev_progress(cx, f->fleet_label ? f->fleet_label : "round", ++f->step, f->steps,
				    lr.loss);
	}
	*ret_g = seen;
	memset(&seen, 0, sizeof(seen));
	r = 0;
out:
	if (upd)
		for (uint32_t i = 0; i < K; i++)
			fv_update_clear(&upd[i]);
	free(upd);
	free(up);
	free(merged);
	free(col_err);
	free(sorted);
	free(live);
	free(sel);
	free(delta);
	fv_model_free(m);
	fv_agg_free(agg);
	fv_global_clear(&g);
	fv_global_clear(&seen);
	return r;
}

const char *ev_mode_name(enum ev_mode m)
{
	static const char *const names[] = { "centralized", "federated", "iid", "dirichlet",
					     "local" };

	return (unsigned)m < FV_ARRAY_SIZE(names) ? names[m] : "?";
}

/* ---- modes ---- */

static void clients_free(struct client *cl, uint32_t K)
{
	for (uint32_t i = 0; cl && i < K; i++) {
		fv_scorer_free(cl[i].sc);
		free(cl[i].raw);
		free(cl[i].cont);
		free(cl[i].x);
		free(cl[i].stats);
	}
	free(cl);
}

static struct client *clients_new(const struct ev_ctx *cx, uint32_t K, uint32_t C,
				  const char *prefix)
{
	const struct agent_config *ac = &cx->ac;
	struct fv_scorer_opts so = { .mode = (enum fv_thr_mode)ac->thr_mode,
				     .prior_windows = ac->prior_windows,
				     .halflife = ac->halflife,
				     .calib_prior = ac->calib_prior };
	struct client *cl = calloc(K, sizeof(*cl));

	if (!cl)
		return NULL;
	for (uint32_t i = 0; i < K; i++) {
		cl[i].stats = calloc(C, sizeof(*cl[i].stats));
		cl[i].sc = fv_scorer_new(&so, C);
		if (!cl[i].stats || !cl[i].sc) {
			clients_free(cl, K);
			return NULL;
		}
		for (uint32_t c = 0; c < C; c++)
			fv_chstats_init(&cl[i].stats[c]);
		if (prefix)
			snprintf(cl[i].name, sizeof(cl[i].name), "%s-%0*u", prefix, K > 99 ? 4 : 2,
				 i + 1);
	}
	return cl;
}

/* Append m windows of an entity to a client. */
static int client_append(struct client *c, const float *raw, const uint8_t *cont, size_t m,
			 size_t WC)
{
	float *x = realloc(c->raw, (c->N + m + 1) * WC * sizeof(float));
	uint8_t *k = realloc(c->cont, c->N + m + 1);

	if (x)
		c->raw = x;
	if (k)
		c->cont = k;
	if (!x || !k)
		return -ENOMEM;
	memcpy(c->raw + c->N * WC, raw, m * WC * sizeof(float));
	memcpy(c->cont + c->N, cont, m);
	c->N += m;
	return 0;
}

/* Per entity: its agent's training windows, as collected from its buffer. */
struct ewin {
	size_t n;
	float *raw;     /* (n, W*C) */
	uint8_t *cont;  /* (n) */
	uint8_t *first; /* (n) */
};

int ev_run(struct ev_ctx *cx, struct ev_result *res)
{
	const struct fv_dataset *ds = cx->ds;
	const struct coord_config *cc = &cx->cc;
	uint32_t E = ds->n_entities, C = ds->C, W = (uint32_t)cc->window, S = (uint32_t)cc->stride;
	size_t WC = (size_t)W * C;
	struct ent *ents = calloc(E, sizeof(*ents));
	struct ewin *ew = calloc(E, sizeof(*ew));
	struct fv_global *models = NULL;
	struct client *cl = NULL, *det = NULL;
	struct fed f = { .cx = cx, .res = res };
	uint32_t K = 0, n_models = 0;
	long *test_idx = NULL;
	int64_t t0 = fv_now_mono_ms();
	int r = -ENOMEM;

	res->pts = calloc(E, sizeof(*res->pts));
	if (!ents || !ew || !res->pts)
		goto out;
	res->spec = cc->spec;
	res->n_params = fv_model_spec_nparams(&cc->spec);
	res->rounds = (uint32_t)cc->rounds;

	/* Every entity's training rows through its agent's ingest into its
	 * buffer (no model yet: nothing is scored). */
	for (uint32_t e = 0; e < E; e++) {
		const struct fv_ds_entity *en = &ds->ent[e];
		size_t last = 0;

		if ((r = ent_init(&ents[e], cx, en, C)) < 0)
			goto out;
		for (size_t i = 0; i < en->n; i++)
			if (en->role[i] & FV_DS_TRAIN)
				last = i + 1;
		ent_stream(&ents[e], last, FV_DS_TRAIN, false);
		r = collect_raw(&ents[e].buf, W, S, cx->ac.period_ms, &ew[e].raw, &ew[e].cont,
				&ew[e].first, &ew[e].n);
		if (r < 0)
			goto out;
		res->windows_train += ew[e].n;
		if (ents[e].n_vectors + 1 < en->n_train)
			fv_log(FV_LOG_INFO,
			       "%s: %" PRIu64 " complete training vectors of %zu rows, %zu windows",
			       en->name, ents[e].n_vectors, en->n_train, ew[e].n);
	}
	r = -ENOMEM;

	/* The clients of each mode. */
	switch (cx->o.mode) {
	case EV_FEDERATED:
	case EV_LOCAL:
		K = E;
		if (!(cl = clients_new(cx, K, C, NULL)))
			goto out;
		for (uint32_t e = 0; e < E; e++) {
			fv_strlcpy(cl[e].name, ds->ent[e].name, sizeof(cl[e].name));
			if (client_append(&cl[e], ew[e].raw, ew[e].cont, ew[e].n, WC) < 0)
				goto out;
			/* the agent's own statistics: every complete vector */
			memcpy(cl[e].stats, ents[e].stats, C * sizeof(*cl[e].stats));
			cl[e].n_vectors = ents[e].n_vectors;
		}
		break;
	case EV_CENTRALIZED:
		K = 1;
		if (!(cl = clients_new(cx, 1, C, NULL)))
			goto out;
		fv_strlcpy(cl[0].name, "central", sizeof(cl[0].name));
		for (uint32_t e = 0; e < E; e++) {
			if (client_append(&cl[0], ew[e].raw, ew[e].cont, ew[e].n, WC) < 0)
				goto out;
			for (uint32_t c = 0; c < C; c++)
				fv_chstats_merge(&cl[0].stats[c], &ents[e].stats[c]);
			cl[0].n_vectors += ents[e].n_vectors;
		}
		break;
	case EV_IID:
	case EV_DIRICHLET: {
		size_t n = 0, at = 0;
		uint32_t *src, *who, *ofs;

		K = cx->o.clients ? cx->o.clients : E;
		if (!(cl = clients_new(cx, K, C, "client")))
			goto out;
		for (uint32_t e = 0; e < E; e++)
			n += ew[e].n;
		src = malloc((n ? n : 1) * sizeof(*src));
		who = malloc((n ? n : 1) * sizeof(*who));
		ofs = malloc((n ? n : 1) * sizeof(*ofs));
		if (!src || !who || !ofs) {
			free(src);
			free(who);
			free(ofs);
			goto out;
		}
		for (uint32_t e = 0; e < E; e++)
			for (size_t j = 0; j < ew[e].n; j++, at++) {
				src[at] = e;
				ofs[at] = (uint32_t)j;
			}
		r = cx->o.mode == EV_IID
			    ? fv_partition_iid(who, n, K, (uint64_t)cc->seed)
			    : fv_partition_dirichlet(who, src, n, E, K, cx->o.alpha, (uint64_t)cc->seed);
		/* Each client takes its windows in their original order; a
		 * window continues the client's previous one only when it did
		 * in its source. The statistics count each window's new
		 * vectors: all W for the first of a run, the last min(S, W)
		 * otherwise. */
		for (size_t j = 0; r == 0 && j < n; j++) {
			struct client *c = &cl[who[j]];
			const struct ewin *w = &ew[src[j]];
			uint32_t o = ofs[j], fresh = w->first[o] ? W : FV_MIN(S, W);
			const float *raw = w->raw + (size_t)o * WC;
			uint8_t ct = w->cont[o] && j > 0 && who[j - 1] == who[j] && src[j - 1] == src[j];

			r = client_append(c, raw, &ct, 1, WC);
			for (uint32_t k = W - fresh; r == 0 && k < W; k++)
				for (uint32_t ch = 0; ch < C; ch++)
					fv_chstats_add(&c->stats[ch], raw[(size_t)k * C + ch]);
			c->n_vectors += fresh;
		}
		free(src);
		free(who);
		free(ofs);
		if (r < 0)
			goto out;
		r = -ENOMEM;
		break;
	}
	}
	/* Where the training clients are not the entities, the entities
	 * still score (and calibrate) their own rows: the threshold comes from
	 * the same scores the test rows get (struct fed, det). */
	if (cx->o.mode == EV_CENTRALIZED || cx->o.mode == EV_IID || cx->o.mode == EV_DIRICHLET) {
		if (!(det = clients_new(cx, E, C, NULL)))
			goto out;
		for (uint32_t e = 0; e < E; e++) {
			fv_strlcpy(det[e].name, ds->ent[e].name, sizeof(det[e].name));
			det[e].N = ew[e].n;
			det[e].raw = ew[e].raw;
			det[e].cont = ew[e].cont;
			ew[e].raw = NULL;
			ew[e].cont = NULL;
		}
		f.det = det;
		f.n_det = E;
	}
	for (uint32_t e = 0; e < E; e++) {
		free(ew[e].raw);
		free(ew[e].cont);
		free(ew[e].first);
		memset(&ew[e], 0, sizeof(ew[e]));
	}
	res->n_clients = cx->o.mode == EV_LOCAL ? 1 : K;
	res->load_s += (double)(fv_now_mono_ms() - t0) / 1000.0;

	/* Train. */
	t0 = fv_now_mono_ms();
	f.steps = (uint32_t)cc->rounds * (cx->o.mode == EV_LOCAL ? E : 1);
	n_models = cx->o.mode == EV_LOCAL ? E : 1;
	models = calloc(n_models, sizeof(*models));
	if (!models)
		goto out;
	if (cx->o.mode == EV_LOCAL) {
		for (uint32_t e = 0; e < E; e++) {
			f.fleet_label = cl[e].name;
			if ((r = federate(&f, &cl[e], 1, &models[e])) < 0)
				goto out;
		}
	} else if ((r = federate(&f, cl, K, &models[0])) < 0) {
		goto out;
	}
	ev_progress_end(cx);
	res->train_s = (double)(fv_now_mono_ms() - t0) / 1000.0;
	clients_free(cl, K);
	cl = NULL;
	clients_free(det, E);
	det = NULL;

	/* Every entity's agent adopts its final model and scores the rest of
	 * its timeline live. */
	t0 = fv_now_mono_ms();
	for (uint32_t e = 0; e < E; e++) {
		const struct fv_ds_entity *en = &ds->ent[e];
		struct ev_points *p = &res->pts[e];
		const struct fv_global *g = &models[cx->o.mode == EV_LOCAL ? e : 0];
		size_t k = 0;

		r = -ENOMEM;
		test_idx = malloc((en->n ? en->n : 1) * sizeof(long));
		p->n = en->n_test;
		p->score = malloc((p->n ? p->n : 1) * sizeof(double));
		p->threshold = calloc(p->n ? p->n : 1, sizeof(float));
		p->pred = calloc(p->n ? p->n : 1, 1);
		p->above = calloc(p->n ? p->n : 1, 1);
		p->label = malloc(p->n ? p->n : 1);
		if (!test_idx || !p->score || !p->threshold || !p->pred || !p->above || !p->label)
			goto out;
		for (size_t i = 0; i < en->n; i++) {
			test_idx[i] = en->role[i] & FV_DS_TEST ? (long)k++ : -1;
			if (test_idx[i] >= 0)
				p->label[test_idx[i]] = en->label[i];
		}
		for (size_t t = 0; t < p->n; t++)
			p->score[t] = NAN;
		ents[e].test_idx = test_idx;
		ents[e].pts = p;
		if ((r = ent_adopt(&ents[e], g)) < 0) {
			fv_log(FV_LOG_ERR, "%s: adopting the model failed: %s", en->name, fv_strerror(r));
			goto out;
		}
		ent_stream(&ents[e], en->n, 0, true);
		for (size_t t = 0; t < p->n; t++)
			p->unscored += isnan(p->score[t]);
		p->final_threshold = fv_scorer_threshold(ents[e].sc);
		p->model_version = g->version;
		ent_free(&ents[e]);
		free(test_idx);
		test_idx = NULL;
	}
	res->score_s = (double)(fv_now_mono_ms() - t0) / 1000.0;
	r = 0;
out:
	if (r == -ENOMEM)
		fv_log(FV_LOG_ERR, "out of memory");
	clients_free(cl, K);
	clients_free(det, det ? E : 0);
	for (uint32_t e = 0; ents && e < E; e++)
		ent_free(&ents[e]);
	for (uint32_t e = 0; ew && e < E; e++) {
		free(ew[e].raw);
		free(ew[e].cont);
		free(ew[e].first);
	}
	for (uint32_t i = 0; models && i < n_models; i++)
		fv_global_clear(&models[i]);
	free(models);
	free(ents);
	free(ew);
	free(test_idx);
	return r;
}

void ev_result_free(struct ev_result *r, uint32_t n_entities)
{
	for (uint32_t e = 0; r->pts && e < n_entities; e++) {
		free(r->pts[e].score);
		free(r->pts[e].threshold);
		free(r->pts[e].pred);
		free(r->pts[e].above);
		free(r->pts[e].label);
	}
	free(r->pts);
	free(r->log);
	memset(r, 0, sizeof(*r));
}
