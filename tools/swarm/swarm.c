/* fedvigil-swarm: N simulated agents in one process.
 *
 * Each agent has its own MQTT connection (client id, retained birth, LWT)
 * and its own plant machine (tools/sim/plant.c, seeded per machine) whose
 * normal readings fill a ring of recent vectors: its local training set.
 * For rounds it does what fedvigil-agent does, through the same library
 * code: the statistics round (per-channel count/sum/sum of squares/min/
 * max), and in a training round the windows of its ring prepared and
 * calibrated by the scorer (score histogram and per-column errors),
 * local training from the base model, and the delta compressed as the
 * round asks, with error feedback (fv_update_encode_comp(), shared with
 * the library).
 *
 * What it does not do: live scoring and alerts (a round does not need
 * them), sensor traffic through the broker, TLS, signatures.
 *
 * Shared, read-only state: every agent receives the same retained model
 * and announcement bytes, so each distinct payload is decoded once (its
 * bytes kept to recognise the copies) and agents record which version
 * they hold. One scorer serves everyone: calibrating it on an agent's
 * windows yields that agent's histogram and column errors from the model
 * and the windows alone. Work (training one agent) runs one job at a time
 * from a queue between polls, so the connections stay serviced.
 *
 * Memory per agent: the ring (buffer x 5 floats), the encoded update of
 * the current round (kept for a re-announcement, and held in --burst
 * mode), and with error feedback one residual of the model's size. */
#include "swarm.h"

#include "../sim/plant.h"
#include "fedvigil/fleet.h"
#include "fedvigil/scorer.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define C SIM_N_CHANNELS
#define RESYNC_AFTER_MS 2000
#define RESYNC_EVERY_MS 5000
#define JOB_SLICE_MS 5        /* work between two polls */
#define MAX_RECS 8            /* rounds tracked at once */
#define METRICS_WAIT_MS 3000  /* a synced round's metrics wait at most */
#define MAX_STATS_VECTORS 1000000 /* generated at most for min_windows */

struct agent {
	char id[FV_NAME_MAX];
	char client_id[FV_NAME_MAX + 16];
	char t_state[FV_TOPIC_MAX];
	char will[256];
	size_t will_len;
	struct mux_conn *c;
	uint32_t machine;      /* plant machine index */
	int64_t k;             /* its next sample */
	float *ring;           /* (buffer, C) newest vectors */
	uint32_t head, len;    /* next slot, vectors stored */
	struct fv_chstats st[C]; /* every vector generated */
	struct fv_ef ef;       /* error feedback residual (n 0 = none) */
	bool have_model;       /* holds the cached model's version below */
	uint64_t m_epoch, m_version;
	bool have_ann;         /* (a_epoch, a_round): newest announcement seen */
	uint64_t a_epoch, a_round;
	bool pending;          /* selected, no update yet */
	bool queued;           /* in the work queue */
	int64_t ann_mono;      /* when the pending announcement came */
	int64_t next_resync;   /* no model re-fetch before */
	uint64_t sent_round;   /* round + 1 of the update in sent, 0 = none */
	uint8_t *sent;         /* that update's bytes */
	size_t sent_len;
	bool held;             /* --burst: not published yet */
	int upd_pid;           /* packet id of the update publish (0 = acked) */
	bool counted;          /* done for the current round (burst count) */
};

/* What was seen of one round (one JSON line when complete). */
struct rec {
	bool used;
	uint64_t round;
	enum fv_round_kind kind;
	uint32_t n_sel;          /* selected in the (last) announcement */
	uint32_t n_here;         /* ... of them ours */
	uint32_t n_done;         /* ours that answered or gave up */
	uint32_t n_sent;         /* ours that sent an update */
	uint32_t n_unacked;      /* update publishes not acknowledged yet */
	uint64_t bytes;          /* update bytes we sent */
	int64_t t_ann, t_first, t_trained, t_released, t_acked, t_model, t_synced, t_metrics;
	uint64_t version;        /* model version the close produced */
	bool released;
	cJSON *metrics;          /* the coordinator's metrics of the round, owned */
};

struct swarm {
	const struct swarm_opts *o;
	struct mux *mx;
	struct sim_plant *plant;
	struct agent *ag;
	uint32_t n;
	struct mux_conn *obs;    /* observer: coord/metrics */
	char obs_id[FV_NAME_MAX + 16];
	char t_round[FV_TOPIC_MAX], t_model[FV_TOPIC_MAX], t_metrics[FV_TOPIC_MAX];

	/* the model every agent receives, decoded once */
	bool have_model;
	uint8_t *m_bytes;
	size_t m_len;
	struct fv_global gm;
	struct fv_scorer *sc;
	uint32_t n_synced;       /* agents holding gm */

	/* the announcement, decoded once */
	bool have_ann;
	uint8_t *a_bytes;
	size_t a_len;
	struct fv_announce ann;
	char (*sel)[FV_NAME_MAX]; /* ann's selection, sorted */

	/* work queue: agent indices */
	uint32_t *q;
	uint32_t q_head, q_len;

	/* scratch for one job, sized for the model */
	size_t D;                /* model input */
	uint32_t max_windows;
	float *x, *raw, *delta;
	uint8_t *cont;
	double *col_err;

	struct rec recs[MAX_RECS];
	uint32_t reported_train;  /* training rounds reported */
	int64_t t_start, t_all_up, last_progress, last_event;
	int64_t t_start_wall;    /* wall clock at t_start (t_* fields are relative) */
	uint64_t n_model_rejected, n_ann_rejected, n_resent, n_resync, n_failed, n_shape;
	FILE *out;
};

/* ---- helpers ---- */

static int order_cmp(uint64_t e1, uint64_t v1, uint64_t e2, uint64_t v2)
{
	if (e1 != e2)
		return e1 < e2 ? -1 : 1;
	return v1 < v2 ? -1 : v1 > v2;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int64_t rel(const struct swarm *s, int64_t t)
{
	return t ? t - s->t_start : -1;
}

/* The record of round `round`; with create, a new one replaces the
 * oldest when it is not tracked yet. */
static struct rec *rec_get(struct swarm *s, uint64_t round, bool create)
{
	struct rec *slot = NULL;

	for (int i = 0; i < MAX_RECS; i++)
		if (s->recs[i].used && s->recs[i].round == round)
			return &s->recs[i];
	if (!create)
		return NULL;
	for (int i = 0; i < MAX_RECS; i++) {
		struct rec *r = &s->recs[i];

		if (!r->used) {
			slot = r;
			break;
		}
		if (!slot || r->round < slot->round)
			slot = r;
	}
	cJSON_Delete(slot->metrics);
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->round = round;
	return slot;
}

static void enqueue(struct swarm *s, struct agent *a)
{
	if (a->queued)
		return;
	a->queued = true;
	s->q[(s->q_head + s->q_len) % s->n] = (uint32_t)(a - s->ag);
	s->q_len++;
}

/* Produce one normal vector of a's machine into its ring and statistics. */
static void gen_vector(struct swarm *s, struct agent *a)
{
	double v[C];
	const struct sim_fault *onset;
	float *slot = a->ring + (size_t)a->head * C;

	sim_plant_step(s->plant, (int)a->machine, a->k++, v, &onset);
	for (int c = 0; c < C; c++) {
		slot[c] = (float)v[c];
		fv_chstats_add(&a->st[c], v[c]);
	}
	a->head = (a->head + 1) % s->o->buffer;
	if (a->len < s->o->buffer)
		a->len++;
}

/* ---- publishing ---- */

static void publish_state(struct swarm *s, struct agent *a, const char *state)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "{\"state\":\"%s\",\"agent\":\"%s\",\"fleet\":\"%s\",\"version\":\"%s\","
			 "\"channels\":%d,\"swarm\":true,\"ts\":%" PRId64 "}",
			 state, a->id, s->o->fleet, FV_VERSION, C, fv_now_wall_ms());

	mux_publish(a->c, a->t_state, buf, (size_t)n, 1, true);
}

/* Publish a's update of the current round (now, or at the burst's
 * release). */
static void send_held(struct swarm *s, struct agent *a)
{
	char topic[FV_TOPIC_MAX];
	struct rec *r = rec_get(s, a->sent_round - 1, false);
	int pid;

	a->held = false;
	fv_topic_update(topic, s->o->fleet, a->sent_round - 1, a->id);
	pid = mux_publish(a->c, topic, a->sent, a->sent_len, 1, false);
	a->upd_pid = pid > 0 ? pid : 0;
	if (pid < 0) {
		fv_log(FV_LOG_WARNING, "%s: round %" PRIu64 ": update not sent: %s (resent when the "
		       "round is announced again)", a->id, a->sent_round - 1, fv_strerror(pid));
		return;
	}
	if (r) {
		r->n_sent++;
		r->n_unacked++;
		r->bytes += a->sent_len;
	}
}

static void release(struct swarm *s, struct rec *r)
{
	if (r->released)
		return;
	r->released = true;
	/* The burst starts with the first publish (as --raw's clock does). */
	r->t_released = fv_now_mono_ms();
	for (uint32_t i = 0; i < s->n; i++) {
		struct agent *a = &s->ag[i];

		if (a->held && a->sent_round == r->round + 1)
			send_held(s, a);
	}
	fv_log(FV_LOG_INFO, "round %" PRIu64 ": %u updates released", r->round, r->n_done);
}

/* a is done with the current round (answered, or cannot). */
static void done(struct swarm *s, struct agent *a, bool answered)
{
	struct rec *r = rec_get(s, s->ann.h.round, false);

	a->pending = false;
	if (!r || a->counted)
		return;
	a->counted = true;
	r->n_done++;
	if (answered) {
		r->t_trained = fv_now_mono_ms();
		if (!r->t_first)
			r->t_first = r->t_trained;
	}
	if (s->o->burst && r->n_done >= r->n_here)
		release(s, r);
}

/* Keep the encoded update and publish it (or hold it for the burst). */
static void answer(struct swarm *s, struct agent *a, uint8_t *buf, size_t len)
{
	free(a->sent);
	a->sent = buf;
	a->sent_len = len;
	a->sent_round = s->ann.h.round + 1;
	a->held = true;
	if (!s->o->burst)
		send_held(s, a);
	done(s, a, true);
	if (s->o->burst && a->held) {
		struct rec *r = rec_get(s, s->ann.h.round, false);

		if (r && r->released) /* a late straggler of a released burst */
			send_held(s, a);
	}
}

/* ---- the model and the announcement ---- */

/* Scratch for jobs under model g. 0 or -ENOMEM. */
static int size_scratch(struct swarm *s, const struct fv_global *g)
{
	size_t D = fv_scorer_input(s->sc);
	uint32_t W = g->window, S = g->stride;
	uint32_t nw = s->o->buffer >= W ? (s->o->buffer - W) / S + 1 : 0;

	free(s->x);
	free(s->raw);
	free(s->delta);
	free(s->cont);
	free(s->col_err);
	s->D = D;
	s->max_windows = nw;
	s->x = malloc(FV_MAX(nw, 1u) * D * sizeof(float));
	s->raw = malloc((size_t)W * C * sizeof(float));
	s->delta = malloc(FV_MAX(g->n_params, (size_t)1) * sizeof(float));
	s->cont = calloc(FV_MAX(nw, 1u), 1);
	s->col_err = calloc(FV_MAX(fv_global_columns(g), 1u), sizeof(double));
	return s->x && s->raw && s->delta && s->cont && s->col_err ? 0 : -ENOMEM;
}

/* New model bytes (not the cached ones): decode, and replace the cache
 * when newer. Returns 1 when the cache now holds these bytes, 0 when they
 * are older (not taken), -errno when refused (counted, logged once). */
static int take_model(struct swarm *s, const uint8_t *p, size_t len)
{
	struct fv_global g;
	uint8_t *copy;
	int r = fv_global_decode(p, len, s->o->fleet, &g);

	if (r < 0) {
		if (s->n_model_rejected++ == 0)
			fv_log(FV_LOG_WARNING, "global model (%zu bytes) rejected: %s", len,
			       fv_strerror(r));
		return r;
	}
	if (g.n_channels != C) {
		if (s->n_shape++ == 0)
			fv_log(FV_LOG_ERR, "model v%" PRIu64 " has %u channels; the swarm's machines "
			       "have %d ([model] channels = %d)", g.version, g.n_channels, C, C);
		fv_global_clear(&g);
		return -EDOM;
	}
	if (s->have_model && order_cmp(g.epoch, g.version, s->gm.epoch, s->gm.version) < 0) {
		fv_global_clear(&g);
		return 0;
	}
	copy = malloc(len);
	if (!copy) {
		fv_global_clear(&g);
		return -ENOMEM;
	}
	fv_global_clear(&s->gm);
	s->gm = g;
	free(s->m_bytes);
	s->m_bytes = copy;
	memcpy(copy, p, len);
	s->m_len = len;
	s->have_model = true;
	s->n_synced = 0;
	r = fv_scorer_set_model(s->sc, &s->gm);
	if (r == 0)
		r = size_scratch(s, &s->gm);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "model v%" PRIu64 ": %s", s->gm.version, fv_strerror(r));
		s->have_model = false;
		return r;
	}
	{
		char shape[160];
		struct rec *rc = rec_get(s, s->gm.h.round, true);

		fv_model_spec_format(&s->gm.spec, shape, sizeof(shape));
		fv_log(FV_LOG_INFO, "model v%" PRIu64 " (round %" PRIu64 "): %s, %zu parameters, "
		       "%zu bytes", s->gm.version, s->gm.h.round, shape, s->gm.n_params, len);
		if (rc && !rc->t_model) {
			rc->t_model = fv_now_mono_ms();
			rc->version = s->gm.version;
		}
	}
	/* Residuals belong to the old model's shape. */
	for (uint32_t i = 0; i < s->n; i++)
		if (s->ag[i].ef.n && s->ag[i].ef.n != s->gm.n_params)
			fv_ef_free(&s->ag[i].ef);
	return 1;
}

static void on_model(struct swarm *s, struct agent *a, const uint8_t *p, size_t len)
{
	bool same;

	if (len == 0) {
		a->have_model = false;
		return;
	}
	same = s->have_model && len == s->m_len && memcmp(p, s->m_bytes, len) == 0;
	if (!same && take_model(s, p, len) <= 0)
		return;
	if (a->have_model && a->m_epoch == s->gm.epoch && a->m_version == s->gm.version)
		return; /* the same again (a re-fetch) */
	a->have_model = true;
	a->m_epoch = s->gm.epoch;
	a->m_version = s->gm.version;
	s->n_synced++;
	if (s->n_synced == s->n) {
		struct rec *r = rec_get(s, s->gm.h.round, false);

		if (r && !r->t_synced)
			r->t_synced = fv_now_mono_ms();
	}
	if (a->pending)
		enqueue(s, a);
}

static bool is_selected(const struct swarm *s, const char *id)
{
	if (s->ann.n_selected == 0)
		return true;
	return bsearch(id, s->sel, s->ann.n_selected, FV_NAME_MAX, cmp_name) != NULL;
}

/* New announcement bytes: decode; replace the cache unless older. 1 when
 * the cache holds them now, 0 when older, -errno when refused. */
static int take_ann(struct swarm *s, const uint8_t *p, size_t len)
{
	struct fv_announce an;
	char (*sel)[FV_NAME_MAX] = NULL;
	uint8_t *copy;
	struct rec *r;
	bool fresh;
	int e = fv_announce_decode(p, len, s->o->fleet, &an);

	if (e < 0) {
		if (s->n_ann_rejected++ == 0)
			fv_log(FV_LOG_WARNING, "round announcement (%zu bytes) rejected: %s", len,
			       fv_strerror(e));
		return e;
	}
	if (s->have_ann && order_cmp(an.epoch, an.h.round, s->ann.epoch, s->ann.h.round) < 0) {
		fv_announce_clear(&an);
		return 0;
	}
	copy = malloc(len);
	if (an.n_selected)
		sel = malloc((size_t)an.n_selected * FV_NAME_MAX);
	if (!copy || (an.n_selected && !sel)) {
		free(copy);
		free(sel);
		fv_announce_clear(&an);
		return -ENOMEM;
	}
	memcpy(copy, p, len);
	if (an.n_selected) {
		memcpy(sel, an.selected, (size_t)an.n_selected * FV_NAME_MAX);
		qsort(sel, an.n_selected, FV_NAME_MAX, cmp_name);
	}
	fresh = !s->have_ann || an.epoch != s->ann.epoch || an.h.round != s->ann.h.round;
	fv_announce_clear(&s->ann);
	s->ann = an;
	free(s->a_bytes);
	s->a_bytes = copy;
	s->a_len = len;
	free(s->sel);
	s->sel = sel;
	s->have_ann = true;
	r = rec_get(s, an.h.round, true);
	if (fresh) {
		for (uint32_t i = 0; i < s->n; i++)
			s->ag[i].counted = false;
		r->t_ann = fv_now_mono_ms();
		r->kind = an.kind;
	}
	/* A re-announcement (an extension) may select others: count again. */
	r->n_sel = an.n_selected;
	r->n_here = 0;
	for (uint32_t i = 0; i < s->n; i++)
		r->n_here += is_selected(s, s->ag[i].id);
	r->n_done = 0;
	for (uint32_t i = 0; i < s->n; i++)
		r->n_done += s->ag[i].counted && is_selected(s, s->ag[i].id);
	fv_log(FV_LOG_INFO, "round %" PRIu64 " (%s) announced: %u selected, %u of them here",
	       an.h.round, an.kind == FV_ROUND_STATS ? "statistics" : "training", an.n_selected,
	       r->n_here);
	return 1;
}

static void on_round(struct swarm *s, struct agent *a, const uint8_t *p, size_t len)
{
	bool same;

	if (len == 0) {
		a->pending = false;
		return;
	}
	same = s->have_ann && len == s->a_len && memcmp(p, s->a_bytes, len) == 0;
	if (!same && take_ann(s, p, len) <= 0)
		return;
	if (a->have_ann && order_cmp(s->ann.epoch, s->ann.h.round, a->a_epoch, a->a_round) < 0)
		return;
	a->have_ann = true;
	a->a_epoch = s->ann.epoch;
	a->a_round = s->ann.h.round;
	/* Another round: the update kept for the last one (a re-announcement
	 * of it) is not needed any more, held or not. */
	if (a->sent_round && a->sent_round != s->ann.h.round + 1) {
		free(a->sent);
		a->sent = NULL;
		a->sent_len = 0;
		a->sent_round = 0;
		a->held = false;
	}
	if (!is_selected(s, a->id)) {
		a->pending = false;
		return;
	}
	if (a->sent_round == s->ann.h.round + 1 && a->sent) {
		/* Announced again (an extension, a coordinator restart): our
		 * update may have been lost; send the same bytes again. */
		if (!a->held) {
			char topic[FV_TOPIC_MAX];

			fv_topic_update(topic, s->o->fleet, s->ann.h.round, a->id);
			if (mux_publish(a->c, topic, a->sent, a->sent_len, 1, false) >= 0)
				s->n_resent++;
		}
		if (!a->counted)
			done(s, a, true);
		return;
	}
	a->pending = true;
	a->ann_mono = fv_now_mono_ms();
	enqueue(s, a);
}

/* ---- work: one agent's answer ---- */

static void fill_hdr(const struct swarm *s, const struct agent *a, struct fv_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, s->o->fleet, sizeof(h->fleet));
	fv_strlcpy(h->sender, a->id, sizeof(h->sender));
	h->round = s->ann.h.round;
	h->base_version = s->ann.h.base_version;
	h->ts_ms = fv_now_wall_ms();
}

static void job_stats(struct swarm *s, struct agent *a)
{
	struct fv_update u;
	uint8_t *buf;
	size_t len;
	int r;

	/* The real agent waits for readings; ours come on demand. */
	while (a->st[0].count < s->ann.hp.min_windows && a->st[0].count < MAX_STATS_VECTORS)
		gen_vector(s, a);
	memset(&u, 0, sizeof(u));
	fill_hdr(s, a, &u.h);
	u.kind = FV_ROUND_STATS;
	u.n_samples = a->st[0].count;
	u.n_channels = C;
	u.stats = a->st; /* borrowed */
	fv_hist_init(&u.hist);
	r = fv_update_encode(&u, &buf, &len);
	if (r < 0) {
		s->n_failed++;
		fv_log(FV_LOG_ERR, "%s: round %" PRIu64 ": cannot encode statistics: %s", a->id,
		       u.h.round, fv_strerror(r));
		done(s, a, false);
		return;
	}
	answer(s, a, buf, len);
}

/* The ring's windows (stride S, W vectors), prepared for the model, into
 * s->x; returns their count. */
static uint32_t collect(struct swarm *s, const struct agent *a)
{
	uint32_t W = s->gm.window, S = s->gm.stride, n = 0;
	uint32_t cap = s->o->buffer, oldest = (a->head + cap - a->len) % cap;

	for (uint32_t start = 0; start + W <= a->len && n < s->max_windows; start += S) {
		for (uint32_t w = 0; w < W; w++)
			memcpy(s->raw + (size_t)w * C, a->ring + (size_t)((oldest + start + w) % cap) * C,
			       C * sizeof(float));
		fv_scorer_prepare(s->sc, s->raw, s->x + (size_t)n * s->D);
		s->cont[n] = n > 0;
		n++;
	}
	return n;
}

/* Local training through the agent's own code (fv_local_train(): a copy
 * of the base model with a fresh optimiser, FedProx towards the base, the
 * epochs bounded); the delta into s->delta. 0 or -errno (-ERANGE: the
 * loss is not finite). */
static int train_local(struct swarm *s, uint64_t seed, uint32_t N, float *ret_loss)
{
	const struct fv_hparams *hp = &s->ann.hp;
	struct fv_local_opts lo = { .epochs = hp->epochs, .seed = seed,
				    .train = FV_TRAIN_DEFAULTS };

	/* The announcement comes from the network: the batch is capped as
	 * the agent caps it (its max_batch). */
	lo.batch = hp->batch < 1 ? 1 : FV_MIN(hp->batch, s->o->max_batch);
	lo.train.optim = hp->optim;
	lo.train.lr = hp->lr;
	lo.train.momentum = hp->momentum;
	lo.train.weight_decay = hp->weight_decay;
	lo.train.prox_mu = hp->prox_mu;
	return fv_local_train(&s->gm.spec, s->gm.params, s->gm.n_params, s->x, N, &lo, s->delta,
			      ret_loss);
}

static void job_train(struct swarm *s, struct agent *a)
{
	const struct fv_hparams *hp = &s->ann.hp;
	struct fv_update u;
	uint8_t *buf;
	size_t len;
	float loss = 0;
	uint32_t N;
	int r;

	if (!s->have_model || !a->have_model || a->m_version != s->ann.h.base_version ||
	    a->m_epoch != s->ann.epoch)
		return; /* waits for the base model (on_model queues it again) */
	for (uint32_t i = 0; i < s->o->fresh; i++)
		gen_vector(s, a);
	N = collect(s, a);
	if (N == 0 || N < hp->min_windows) {
		s->n_failed++;
		fv_log(FV_LOG_WARNING, "%s: round %" PRIu64 ": %u windows, the round needs %u "
		       "(--buffer)", a->id, s->ann.h.round, N, hp->min_windows);
		done(s, a, false);
		return;
	}
	memset(&u, 0, sizeof(u));
	fill_hdr(s, a, &u.h);
	u.kind = FV_ROUND_TRAIN;
	u.n_samples = N;
	/* The base model's scores on the agent's windows, as the agent
	 * scores them (calibrated, smoothed), and its per-column errors. */
	r = fv_scorer_calibrate(s->sc, s->x, s->cont, N, &u.hist, s->col_err);
	if (r == 0) {
		u.n_col_err = fv_global_columns(&s->gm);
		u.col_err = s->col_err; /* borrowed */
		/* The round's seed, as fedvigil-agent uses it. */
		r = train_local(s, hp->seed, N, &loss);
	}
	if (r == 0) {
		u.loss = loss;
		u.n_params = s->gm.n_params;
		u.delta = s->delta; /* borrowed */
		r = fv_update_encode_comp(&u, &s->ann.comp, &s->gm.spec, &a->ef, &buf, &len);
	}
	if (r < 0) {
		s->n_failed++;
		fv_log(FV_LOG_ERR, "%s: round %" PRIu64 ": %s", a->id, s->ann.h.round, fv_strerror(r));
		done(s, a, false);
		return;
	}
	answer(s, a, buf, len);
}

static void run_jobs(struct swarm *s)
{
	int64_t end = fv_now_mono_ms() + JOB_SLICE_MS;

	while (s->q_len && fv_now_mono_ms() < end) {
		struct agent *a = &s->ag[s->q[s->q_head]];

		s->q_head = (s->q_head + 1) % s->n;
		s->q_len--;
		a->queued = false;
		if (!a->pending || !s->have_ann || a->a_round != s->ann.h.round)
			continue;
		if (s->ann.kind == FV_ROUND_STATS)
			job_stats(s, a);
		else
			job_train(s, a);
	}
}

/* ---- MQTT callbacks ---- */

static void cb_connected(struct mux_conn *c, void *user)
{
	struct swarm *s = user;
	struct agent *a = mux_conn_user(c);

	s->last_event = fv_now_mono_ms();
	if (a)
		publish_state(s, a, "online");
}

static void cb_lost(struct mux_conn *c, int err, void *user)
{
	struct swarm *s = user;
	struct agent *a = mux_conn_user(c);
	uint64_t sup = 0;
	static struct fv_ratelimit rl = FV_RATELIMIT_INIT(10000, 5);

	(void)s;
	if (fv_ratelimit_ok(&rl, &sup))
		fv_log(FV_LOG_WARNING, "%s: connection lost: %s (reconnecting)%s",
		       a ? a->id : "observer", fv_strerror(err), sup ? " (more not logged)" : "");
	if (a)
		a->upd_pid = 0;
}

static void on_metrics(struct swarm *s, const uint8_t *p, size_t len)
{
	cJSON *o = cJSON_ParseWithLength((const char *)p, len);
	const cJSON *rd = o ? cJSON_GetObjectItemCaseSensitive(o, "round") : NULL;
	struct rec *r;

	if (!cJSON_IsNumber(rd)) {
		cJSON_Delete(o);
		return;
	}
	r = rec_get(s, (uint64_t)rd->valuedouble, false);
	if (!r || r->metrics) {
		cJSON_Delete(o);
		return;
	}
	r->metrics = o;
	r->t_metrics = fv_now_mono_ms();
}

static void cb_message(struct mux_conn *c, const char *topic, const uint8_t *p, size_t len,
		       bool retained, void *user)
{
	struct swarm *s = user;
	struct agent *a = mux_conn_user(c);

	(void)retained;
	s->last_event = fv_now_mono_ms();
	if (!a) {
		if (strcmp(topic, s->t_metrics) == 0)
			on_metrics(s, p, len);
		return;
	}
	if (strcmp(topic, s->t_model) == 0)
		on_model(s, a, p, len);
	else if (strcmp(topic, s->t_round) == 0)
		on_round(s, a, p, len);
}

static void cb_puback(struct mux_conn *c, uint16_t pid, void *user)
{
	struct swarm *s = user;
	struct agent *a = mux_conn_user(c);
	struct rec *r;

	if (!a || !a->upd_pid || pid != a->upd_pid)
		return;
	a->upd_pid = 0;
	r = rec_get(s, a->sent_round - 1, false);
	if (r && r->n_unacked && --r->n_unacked == 0 && r->n_done >= r->n_here)
		r->t_acked = fv_now_mono_ms();
}

/* ---- timers and reports ---- */

static double metric(const struct rec *r, const char *name)
{
	const cJSON *v = r->metrics ? cJSON_GetObjectItemCaseSensitive(r->metrics, name) : NULL;

	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *metric_str(const struct rec *r, const char *name)
{
	const cJSON *v = r->metrics ? cJSON_GetObjectItemCaseSensitive(r->metrics, name) : NULL;

	return cJSON_IsString(v) ? v->valuestring : "";
}

/* One JSON line for a round whose close we saw: its phases on the
 * monotonic clock (ms; -1 = not seen) and what the coordinator said. */
static void report(struct swarm *s, struct rec *r)
{
	/* Without the coordinator's metrics (not bridged to this broker, say)
	 * a round counts as closed once its new model reached every agent. */
	bool closed = r->metrics ? strcmp(metric_str(r, "result"), "closed") == 0 : r->t_synced != 0;
	/* Without --burst the last update sent stands in for the release. */
	int64_t rel_t = r->t_released ? r->t_released : r->t_trained;

	fprintf(s->out,
		"{\"round\":%" PRIu64 ",\"kind\":\"%s\",\"result\":\"%s\",\"agents\":%u,"
		"\"selected\":%u,\"selected_here\":%u,\"sent\":%u,\"update_bytes_sent\":%" PRIu64
		",\"aggregated\":%.0f,\"version\":%" PRIu64 ",\"burst\":%s,"
		"\"t_announce\":%" PRId64 ",\"t_first_trained\":%" PRId64 ",\"t_last_trained\":%" PRId64
		",\"t_released\":%" PRId64 ",\"t_acked\":%" PRId64 ",\"t_model\":%" PRId64
		",\"t_synced\":%" PRId64 ",\"t_metrics\":%" PRId64 ","
		"\"round_ms\":%" PRId64 ",\"compute_ms\":%" PRId64 ",\"transport_ms\":%" PRId64 ","
		"\"collect_ms\":%" PRId64 ",\"sync_ms\":%" PRId64 ","
		"\"coord_duration_ms\":%.0f,\"coord_rss_bytes\":%.0f,\"coord_cpu_seconds\":%.3f,"
		"\"coord_update_bytes\":%.0f,\"model_bytes\":%.0f,\"mqtt_dropped\":%.0f,"
		"\"missed\":%.0f,\"t0_wall\":%" PRId64 "}\n",
		r->round, r->kind == FV_ROUND_STATS ? "stats" : "train",
		r->metrics ? metric_str(r, "result") : closed ? "closed" : "", s->n,
		r->n_sel, r->n_here, r->n_sent, r->bytes, metric(r, "agents"), r->version,
		s->o->burst ? "true" : "false", rel(s, r->t_ann), rel(s, r->t_first),
		rel(s, r->t_trained), rel(s, r->t_released), rel(s, r->t_acked), rel(s, r->t_model),
		rel(s, r->t_synced), rel(s, r->t_metrics),
		closed && r->t_synced ? r->t_synced - r->t_ann : -1,
		rel_t ? rel_t - r->t_ann : -1,
		closed && r->t_synced && rel_t ? r->t_synced - rel_t : -1,
		r->t_model && rel_t ? r->t_model - rel_t : -1,
		r->t_synced && r->t_model ? r->t_synced - r->t_model : -1,
		metric(r, "duration_ms"), metric(r, "rss_bytes"), metric(r, "cpu_seconds"),
		metric(r, "update_bytes"), metric(r, "model_bytes"), metric(r, "mqtt_dropped"),
		metric(r, "missed"), s->t_start_wall);
	fflush(s->out);
	/* Rounds announced before we came count for nothing. */
	if (r->kind == FV_ROUND_TRAIN && closed && r->t_ann)
		s->reported_train++;
	cJSON_Delete(r->metrics);
	memset(r, 0, sizeof(*r));
}

static void timers(struct swarm *s, int64_t now)
{
	static int64_t next;

	if (now < next)
		return;
	next = now + 200;
	for (int i = 0; i < MAX_RECS; i++) {
		struct rec *r = &s->recs[i];
		bool closed;

		if (!r->used)
			continue;
		if (!r->metrics) {
			/* The model came, the metrics did not (QoS 0, or not
			 * bridged here): report from what the agents saw. */
			if (r->t_ann && r->t_synced && now - r->t_synced > METRICS_WAIT_MS)
				report(s, r);
			continue;
		}
		closed = strcmp(metric_str(r, "result"), "closed") == 0;
		/* Complete when every agent has the model the close produced
		 * (or after 30 s: some connection is down). */
		if (!closed || r->t_synced || now - r->t_metrics > 30000)
			report(s, r);
	}
	/* Burst fallback: release after --burst-wait even if some agent is
	 * still waiting for its base model. */
	if (s->o->burst && s->have_ann) {
		struct rec *r = rec_get(s, s->ann.h.round, false);

		if (r && !r->released && r->t_ann && now - r->t_ann > s->o->burst_wait_ms) {
			fv_log(FV_LOG_WARNING, "round %" PRIu64 ": releasing the burst with %u of %u "
			       "agents done after %" PRId64 " ms", r->round, r->n_done, r->n_here,
			       s->o->burst_wait_ms);
			release(s, r);
		}
	}
	/* Agents waiting too long for the base model fetch it again. */
	if (s->have_ann && s->ann.kind == FV_ROUND_TRAIN)
		for (uint32_t i = 0; i < s->n; i++) {
			struct agent *a = &s->ag[i];

			if (!a->pending || (a->have_model && a->m_version == s->ann.h.base_version) ||
			    now - a->ann_mono < RESYNC_AFTER_MS || now < a->next_resync)
				continue;
			a->next_resync = now + RESYNC_EVERY_MS;
			s->n_resync++;
			mux_subscribe(a->c, s->t_model, 1);
		}
	if (now - s->last_progress >= 5000) {
		struct mux_stats st;

		s->last_progress = now;
		mux_get_stats(s->mx, &st);
		fv_log(FV_LOG_INFO, "%u/%u connections up, %u agents on model v%" PRIu64 ", %u jobs "
		       "queued, %" PRIu64 " msgs in / %" PRIu64 " out, %" PRIu64 " lost",
		       st.up, s->n + 1, s->n_synced, s->have_model ? s->gm.version : 0, s->q_len,
		       st.msgs_in, st.msgs_out, st.lost);
	}
}

/* ---- life cycle ---- */

static int setup(struct swarm *s)
{
	const struct swarm_opts *o = s->o;
	struct mux_callbacks cb = { .on_connected = cb_connected, .on_lost = cb_lost,
				    .on_message = cb_message, .on_puback = cb_puback };
	struct mux_opts mo = { .host = o->host, .port = o->port,
			       .max_connecting = o->max_connecting };
	struct sim_config pc = { .machines = (int)o->n, .period_ms = o->period_ms,
				 .n_samples = INT64_MAX / 2, .normal_samples = INT64_MAX / 2,
				 .faults = 0, .seed = o->seed, .start_ms = 0 };
	struct fv_scorer_opts so = { .mode = FV_THRMODE_GLOBAL, .prior_windows = 100,
				     .halflife = 1000, .calib_prior = 20 };
	char err[256];
	char f_states[FV_TOPIC_MAX];

	s->n = o->n;
	fv_topic_round(s->t_round, o->fleet);
	fv_topic_model(s->t_model, o->fleet);
	if (!fv_topic_coord(s->t_metrics, o->fleet, "metrics")) {
		fv_log(FV_LOG_ERR, "fleet name '%s' makes topics too long", o->fleet);
		return -EINVAL;
	}
	(void)f_states;
	s->plant = sim_plant_new(&pc, err, sizeof(err));
	if (!s->plant) {
		fv_log(FV_LOG_ERR, "plant: %s", err);
		return -EINVAL;
	}
	s->sc = fv_scorer_new(&so, C);
	s->ag = calloc(o->n, sizeof(*s->ag));
	s->q = calloc(o->n, sizeof(*s->q));
	s->mx = mux_new(&mo, &cb, s);
	if (!s->sc || !s->ag || !s->q || !s->mx) {
		fv_log(FV_LOG_ERR, "cannot set up the swarm: %s", fv_strerror(-errno));
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < o->n; i++) {
		struct agent *a = &s->ag[i];
		struct mux_conn_opts co = { .username = o->username, .password = o->password,
					    .will_qos = 1, .will_retain = true, .keepalive_s = 60 };
		int n;

		a->machine = i;
		n = snprintf(a->id, sizeof(a->id), "%s%s", o->id_prefix,
			     sim_plant_machine_name(s->plant, (int)i));
		if (n < 0 || (size_t)n >= sizeof(a->id) ||
		    !fv_topic_agent(a->t_state, o->fleet, a->id, "state")) {
			fv_log(FV_LOG_ERR, "agent id '%s%s' is too long or not a valid name",
			       o->id_prefix, sim_plant_machine_name(s->plant, (int)i));
			return -EINVAL;
		}
		/* fedvigil-agent's client id scheme (fedvigil-agent-<fleet>-<id>)
		 * with a prefix of its own: a swarm never takes over a real
		 * agent's session. */
		snprintf(a->client_id, sizeof(a->client_id), "fv-swarm-%s-%s", o->fleet, a->id);
		a->will_len = (size_t)snprintf(a->will, sizeof(a->will),
					       "{\"state\":\"offline\",\"agent\":\"%s\",\"fleet\":\"%s\"}",
					       a->id, o->fleet);
		a->ring = calloc((size_t)o->buffer * C, sizeof(float));
		if (!a->ring)
			return -ENOMEM;
		for (int c = 0; c < C; c++)
			fv_chstats_init(&a->st[c]);
		for (uint32_t k = 0; k < o->buffer; k++)
			gen_vector(s, a);
		co.client_id = a->client_id;
		co.will_topic = a->t_state;
		co.will_payload = a->will;
		co.will_len = a->will_len;
		a->c = mux_add(s->mx, &co, a);
		if (!a->c || mux_subscribe(a->c, s->t_model, 1) < 0 ||
		    mux_subscribe(a->c, s->t_round, 1) < 0)
			return -ENOMEM;
	}
	{
		struct mux_conn_opts co = { .username = o->username, .password = o->password };

		snprintf(s->obs_id, sizeof(s->obs_id), "fv-swarm-%s-%sobserver", o->fleet,
			 o->id_prefix);
		co.client_id = s->obs_id;
		s->obs = mux_add(s->mx, &co, NULL);
		if (!s->obs || mux_subscribe(s->obs, s->t_metrics, 0) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void teardown(struct swarm *s)
{
	if (s->mx) {
		/* A clean exit says so (the LWT is for crashes). */
		for (uint32_t i = 0; i < s->n; i++)
			if (s->ag[i].c && mux_conn_up(s->ag[i].c))
				publish_state(s, &s->ag[i], "offline");
		mux_disconnect_all(s->mx, 3000);
	}
	for (uint32_t i = 0; s->ag && i < s->n; i++) {
		free(s->ag[i].ring);
		free(s->ag[i].sent);
		fv_ef_free(&s->ag[i].ef);
	}
	for (int i = 0; i < MAX_RECS; i++)
		cJSON_Delete(s->recs[i].metrics);
	mux_free(s->mx);
	sim_plant_free(s->plant);
	fv_scorer_free(s->sc);
	fv_global_clear(&s->gm);
	fv_announce_clear(&s->ann);
	free(s->m_bytes);
	free(s->a_bytes);
	free(s->sel);
	free(s->ag);
	free(s->q);
	free(s->x);
	free(s->raw);
	free(s->delta);
	free(s->cont);
	free(s->col_err);
}

int swarm_run(const struct swarm_opts *o, FILE *out, volatile sig_atomic_t *stop)
{
	struct swarm s;
	int ret = 1;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.out = out;
	s.t_start = s.last_progress = s.last_event = fv_now_mono_ms();
	s.t_start_wall = fv_now_wall_ms();
	if (setup(&s) < 0)
		goto out;
	fv_log(FV_LOG_NOTICE, "swarm of %u agents (%s...) for fleet %s on %s:%d%s", o->n,
	       s.ag[0].id, o->fleet, o->host, o->port, o->burst ? ", burst" : "");
	while (!*stop) {
		int64_t now;
		int r = mux_poll(s.mx, s.q_len ? 0 : 50);

		if (r < 0) {
			fv_log(FV_LOG_ERR, "epoll: %s", fv_strerror(r));
			goto out;
		}
		run_jobs(&s);
		now = fv_now_mono_ms();
		if (!s.t_all_up) {
			struct mux_stats st;

			mux_get_stats(s.mx, &st);
			if (st.up == s.n + 1) {
				s.t_all_up = now;
				fv_log(FV_LOG_NOTICE, "%u agents connected in %" PRId64 " ms", s.n,
				       now - s.t_start);
			}
		}
		timers(&s, now);
		if (o->rounds && s.reported_train >= o->rounds) {
			fv_log(FV_LOG_NOTICE, "%u training rounds done", s.reported_train);
			ret = 0;
			break;
		}
		if (o->idle_timeout_ms && now - s.last_event > o->idle_timeout_ms) {
			fv_log(FV_LOG_ERR, "nothing received for %" PRId64 " ms; giving up",
			       o->idle_timeout_ms);
			goto out;
		}
	}
	if (*stop)
		ret = 0;
out:
	{
		struct mux_stats st;

		if (s.mx) {
			mux_get_stats(s.mx, &st);
			fv_log(FV_LOG_NOTICE, "swarm done: %" PRIu64 " msgs in (%" PRIu64 " bytes), %" PRIu64
			       " out (%" PRIu64 " bytes), %" PRIu64 " connections lost, %" PRIu64
			       " resent, %" PRIu64 " model re-fetches, %" PRIu64 " failed answers",
			       st.msgs_in, st.bytes_in, st.msgs_out, st.bytes_out, st.lost, s.n_resent,
			       s.n_resync, s.n_failed);
		}
	}
	teardown(&s);
	return ret;
}
