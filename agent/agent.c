/* fedvigil-agent: ingest -> windows -> score -> alerts, and local training
 * for the coordinator's rounds. Everything runs on the main loop; the MQTT
 * layer hands messages over through its queue. */
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "fedvigil/sign.h"
#include "fedvigil/svc.h"
#include "fedvigil/vecbuf.h"
#include "fedvigil/version.h"

#define MAX_TICKS_PER_MSG 100000
#define PENDING_RETRY_MS 250
/* The first calibration from the agent's own data waits for this many
 * buffered vectors; later ones whenever the buffer has doubled. */
#define CALIB_MIN_VECTORS 64
#define RESYNC_AFTER_MS 2000
#define RESYNC_EVERY_MS 5000

struct agent {
	struct agent_config cfg;
	struct fv_mqtt *mq;
	char t_round[FV_TOPIC_MAX], t_model[FV_TOPIC_MAX], t_state[FV_TOPIC_MAX];
	char t_alert[FV_TOPIC_MAX], t_metrics[FV_TOPIC_MAX];

	/* ingest */
	struct fv_align *align;
	struct fv_vecbuf buf;
	float *vec;                 /* (C) scratch */
	struct fv_chstats *stats;   /* (C) all complete vectors since start */

	/* model (NULL until the first GlobalModel) */
	struct fv_global gm;        /* last accepted global model */
	bool have_model;
	struct fv_scorer *sc;       /* scores windows under gm (lib/detect/scorer.c) */
	struct fv_scorer_opts sopt; /* its options */
	struct fv_window *win;
	float *winbuf;              /* (W*C) raw window */
	int64_t last_start;         /* start of the last scored window */
	bool have_last;             /* last_start is valid */
	size_t calib_len;           /* buffer length at the last calibration */
	float *share;               /* (C) */
	float *alert_share;         /* (C) shares at the episode's max score */
	struct fv_detector det;

	/* rounds */
	struct fv_announce ann;     /* last announcement */
	bool have_ann;
	bool pending;               /* selected, update not sent yet */
	uint64_t sent_round;        /* last round answered (+1, 0 = none) */
	uint64_t sent_base;
	uint8_t *sent_buf;          /* cached encoded update, for re-announces */
	size_t sent_len;
	struct fv_ef ef;            /* error feedback: what compression has not
				     * sent yet (n == 0: none) */
	int64_t ann_mono;           /* when the pending announcement arrived */
	int64_t next_resync;        /* no model re-fetch before (monotonic) */
	uint64_t n_resync;          /* model re-fetches asked for */

	/* counters */
	uint64_t n_msgs, n_parse_err, n_unknown_topic, n_vectors, n_incomplete, n_skipped;
	uint64_t *n_readings; /* (C) readings taken per channel */
	uint64_t n_windows, n_above, n_alerts, n_rounds, n_model_rejected, n_ann_rejected;
	float last_score;
	struct fv_ratelimit rl_parse;
	FILE *score_log;
	bool score_log_failed;      /* a write error was reported */
	int64_t next_metrics;
	int64_t next_try_ms;         /* next attempt at a pending round */

	/* trust (sign.*) */
	bool verify;                 /* models and announcements must be signed */
	struct fv_verify_keys model_keys; /* the coordinator's public keys */
	bool sign_updates;           /* key below signs our updates */
	struct fv_sign_key key;      /* this agent's private key */
	bool have_seen;              /* seen_* hold the highest model accepted */
	uint64_t seen_epoch, seen_version; /* persisted in sign.version_file */
	bool seen_write_failed;      /* a write error was reported */
	uint64_t n_sig_rejected;     /* unsigned or badly signed models/announcements */
	uint64_t n_rollback;         /* models older than one accepted */
	uint64_t n_clears_ignored;   /* unsigned empty model/round payloads ignored */
	struct fv_ratelimit rl_sec;  /* bounds the log lines of refusals */
	/* Sparkplug B channels (NULL when none) */
	struct fv_spb_map *spb;
	int64_t next_rebirth_ms;     /* earliest next rebirth request */
	uint64_t n_rebirth_requests;
	struct agent_presence *presence; /* [sparkplug] presence, NULL = off */

	/* service integration (fedvigil/svc.h) */
	struct fv_sd sd;             /* notify protocol and watchdog */
	struct fv_httpd *httpd;      /* Prometheus responder, NULL = off */
	int64_t connected_ms;        /* monotonic time of the last connect, 0 = never */
	/* tools/adversary only: rewrites each training update before it is
	 * sent (the daemon never sets it) */
	agent_update_hook update_hook;
	void *update_hook_ctx;
};

void agent_set_update_hook(struct agent *a, agent_update_hook fn, void *ctx)
{
	a->update_hook = fn;
	a->update_hook_ctx = ctx;
}

static void try_pending(struct agent *a, bool force);

/* Test hook (tests/integration/test_agent_crash.sh): FV_TEST_CRASH=
 * "training@R" or "publishing@R" makes the agent SIGKILL itself as it
 * starts training for round R, or once its update for round R is handed to
 * the MQTT client (maybe not yet on the wire). Never set outside tests. */
static void crash_at(const char *point, uint64_t round)
{
	const char *want = getenv("FV_TEST_CRASH");
	char here[64];

	snprintf(here, sizeof(here), "%s@%" PRIu64, point, round);
	if (want && strcmp(want, here) == 0) {
		fv_log(FV_LOG_WARNING, "FV_TEST_CRASH: killing myself at %s", here);
		raise(SIGKILL);
	}
}
static void calibrate(struct agent *a);

/* ---- publishing helpers ---- */

static void publish_state(struct agent *a, const char *state)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "{\"state\":\"%s\",\"agent\":\"%s\",\"fleet\":\"%s\",\"version\":\"%s\","
			 "\"channels\":%u,\"ts\":%" PRId64 "}",
			 state, a->cfg.id, a->cfg.fleet, FV_VERSION, a->cfg.n_channels,
			 fv_now_wall_ms());

	fv_mqtt_publish(a->mq, a->t_state, buf, (size_t)n, 1, true);
}

static void publish_metrics(struct agent *a)
{
	char buf[2048];
	struct fv_mqtt_stats ms;
	struct fv_proc_usage pu;
	int n;

	fv_mqtt_get_stats(a->mq, &ms);
	fv_proc_usage(&pu);
	n = snprintf(buf, sizeof(buf),
		     "{\"agent\":\"%s\",\"fleet\":\"%s\",\"ts\":%" PRId64 ",\"messages\":%" PRIu64
		     ",\"parse_errors\":%" PRIu64 ",\"unknown_topic\":%" PRIu64
		     ",\"vectors\":%" PRIu64 ",\"incomplete\":%" PRIu64 ",\"windows\":%" PRIu64
		     ",\"above\":%" PRIu64 ",\"alerts\":%" PRIu64 ",\"rounds\":%" PRIu64
		     ",\"model_version\":%" PRIu64 ",\"last_score\":%.6g,\"threshold\":%.6g"
		     ",\"buffer\":%zu,\"models_rejected\":%" PRIu64 ",\"announcements_rejected\":%" PRIu64
		     ",\"signature_rejected\":%" PRIu64 ",\"rollback_rejected\":%" PRIu64
		     ",\"clears_ignored\":%" PRIu64 ",\"model_epoch\":%" PRIu64
		     ",\"mqtt_dropped\":%" PRIu64
		     ",\"bytes_out\":%" PRIu64 ",\"rss_bytes\":%" PRIu64 ",\"cpu_seconds\":%.3f"
		     ",\"update_bytes\":%zu,\"model_resyncs\":%" PRIu64 "}",
		     a->cfg.id, a->cfg.fleet, fv_now_wall_ms(), a->n_msgs, a->n_parse_err,
		     a->n_unknown_topic, a->n_vectors, a->n_incomplete, a->n_windows, a->n_above,
		     a->n_alerts, a->n_rounds, a->have_model ? a->gm.version : 0,
		     (double)a->last_score, a->have_model ? (double)fv_scorer_threshold(a->sc) : 0.0,
		     a->buf.len, a->n_model_rejected, a->n_ann_rejected, a->n_sig_rejected,
		     a->n_rollback, a->n_clears_ignored, a->have_model ? a->gm.epoch : 0,
		     ms.dropped_full + ms.dropped_big, ms.bytes_out, pu.rss_bytes, pu.cpu_seconds,
		     a->sent_len, a->n_resync);
	fv_mqtt_publish(a->mq, a->t_metrics, buf, (size_t)n, 0, false);
}

/* [sparkplug] presence: the node's metrics as they are now (an alert
 * raised or cleared goes out at once, the rest on the metrics interval). */
static void presence_update(struct agent *a, int64_t now)
{
	struct agent_presence_values pv;

	if (!a->presence)
		return;
	pv = (struct agent_presence_values){
		.score = a->last_score,
		.threshold = a->have_model ? fv_scorer_threshold(a->sc) : 0,
		.alert = a->det.raised,
		.connected = fv_mqtt_connected(a->mq),
		.alerts = a->n_alerts,
		.model_version = a->have_model ? a->gm.version : 0,
		.round = a->have_ann ? a->ann.h.round : 0,
	};
	agent_presence_update(a->presence, &pv, now);
}

static void publish_alert(struct agent *a, const char *state)
{
	char buf[4096], t0[40], t1[40];
	uint32_t idx[FV_MAX_CHANNELS];
	uint32_t C = a->cfg.n_channels;
	uint32_t k = fv_detect_top(idx, a->alert_share, C, (uint32_t)a->cfg.top_channels);
	int n;

	n = snprintf(buf, sizeof(buf),
		     "{\"fleet\":\"%s\",\"agent\":\"%s\",\"state\":\"%s\",\"start\":\"%s\","
		     "\"end\":\"%s\",\"score\":%.6g,\"threshold\":%.6g,\"model_version\":%" PRIu64
		     ",\"channels\":[",
		     a->cfg.fleet, a->cfg.id, state, fv_iso8601(a->det.alert_start_ms, t0, sizeof(t0)),
		     fv_iso8601(a->det.alert_end_ms, t1, sizeof(t1)), (double)a->det.max_score,
		     (double)a->det.max_threshold, a->gm.version);
	for (uint32_t i = 0; i < k && n < (int)sizeof(buf) - 200; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s{\"name\":\"%s\",\"share\":%.3f}",
			      i ? "," : "", a->cfg.channels[idx[i]].name,
			      (double)a->alert_share[idx[i]]);
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "]}");
	if (fv_mqtt_publish(a->mq, a->t_alert, buf, (size_t)n, 1, false) < 0)
		fv_log(FV_LOG_WARNING, "alert could not be queued for publishing: %s", buf);
	fv_log(FV_LOG_NOTICE, "alert %s: score=%.4g threshold=%.4g from %s to %s top=%s", state,
	       (double)a->det.max_score, (double)a->det.max_threshold, t0, t1,
	       k ? a->cfg.channels[idx[0]].name : "-");
}

/* ---- model ---- */

static void drop_model_objects(struct agent *a)
{
	fv_window_free(a->win);
	free(a->winbuf);
	a->win = NULL;
	a->winbuf = NULL;
	a->have_last = false;
	/* The error-feedback residual belongs to this model's shape (and to
	 * this coordinator's lineage: a cleared model means it started over). */
	fv_ef_free(&a->ef);
}

static int adopt_model(struct agent *a, struct fv_global *g)
{
	const struct fv_global *old = a->have_model ? &a->gm : NULL;
	uint32_t C = a->cfg.n_channels;
	size_t need;
	bool rebuild;
	int r;

	if (g->n_channels != C) {
		fv_log(FV_LOG_ERR,
		       "model v%" PRIu64 " refused: it has %u channels, this agent is configured "
		       "with %u",
		       g->version, g->n_channels, C);
		return -EDOM;
	}
	/* The budget: the scorer kept for every window plus the trainer a
	 * round builds at the largest batch this agent accepts. */
	struct fv_model_mem ms, mt;
	uint32_t mb = (uint32_t)a->cfg.max_batch;

	if (fv_model_spec_mem(&g->spec, 1, false, &ms) < 0 ||
	    fv_model_spec_mem(&g->spec, mb, true, &mt) < 0) {
		fv_log(FV_LOG_ERR, "model v%" PRIu64 " refused: its size overflows", g->version);
		return -E2BIG;
	}
	need = ms.total + mt.total;
	if (need > (size_t)a->cfg.max_model_kb * 1024) {
		char shape[160];

		fv_model_spec_format(&g->spec, shape, sizeof(shape));
		fv_log(FV_LOG_ERR,
		       "model v%" PRIu64 " (%s) refused: it needs %zu bytes (%zu KiB), "
		       "agent.max_model_kb is %lld KiB (%lld bytes); scoring: parameters %zu + "
		       "activations %zu bytes; training at agent.max_batch %u: parameters %zu + "
		       "gradients %zu + optimizer %zu + activations %zu bytes",
		       g->version, shape, need, (need + 1023) / 1024, a->cfg.max_model_kb,
		       a->cfg.max_model_kb * 1024, ms.params, ms.act, mb, mt.params, mt.grads,
		       mt.optim, mt.act);
		return -E2BIG;
	}
	rebuild = !old || memcmp(&old->spec, &g->spec, sizeof(g->spec)) != 0 ||
		  old->window != g->window || old->stride != g->stride;
	if (rebuild) {
		size_t D = (size_t)g->window * C;

		drop_model_objects(a);
		a->win = fv_window_new(C, g->window, g->stride);
		a->winbuf = malloc(D * sizeof(float));
		if (!a->win || !a->winbuf) {
			drop_model_objects(a);
			fv_global_clear(&a->gm);
			a->have_model = false;
			fv_log(FV_LOG_ERR, "model v%" PRIu64 ": out of memory", g->version);
			return -ENOMEM;
		}
		fv_detect_reset_history(&a->det);
	}
	fv_global_clear(&a->gm);
	a->gm = *g;
	memset(g, 0, sizeof(*g));
	a->have_model = true;
	r = fv_scorer_set_model(a->sc, &a->gm);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "model v%" PRIu64 " refused: %s", a->gm.version, fv_strerror(r));
		drop_model_objects(a);
		fv_global_clear(&a->gm);
		a->have_model = false;
		return r;
	}
	calibrate(a);
	{
		char shape[160];

		fv_model_spec_format(&a->gm.spec, shape, sizeof(shape));
		fv_log(FV_LOG_INFO,
		       "model v%" PRIu64 " loaded: %s, %zu parameters, %zu KiB of %lld, window "
		       "%u x %u, threshold %.4g",
		       a->gm.version, shape, a->gm.n_params, (need + 1023) / 1024,
		       a->cfg.max_model_kb, a->gm.window, C, (double)a->gm.threshold);
	}
	return 0;
}

/* ---- trust: signatures and the highest model seen ---- */

/* (e1, v1) against (e2, v2): <0, 0, >0. */
static int order_cmp(uint64_t e1, uint64_t v1, uint64_t e2, uint64_t v2)
{
	if (e1 != e2)
		return e1 < e2 ? -1 : 1;
	return v1 < v2 ? -1 : v1 > v2;
}

/* Read sign.version_file: 0 (also when it does not exist yet), or -EBADMSG
 * / -errno with the reason logged (the agent then refuses to start: without
 * it, an older model would be accepted). */
static int seen_load(struct agent *a)
{
	const char *path = a->cfg.sign_version_file;
	char *text = NULL;
	uint64_t e = 0, v = 0;
	size_t len;
	int r;

	r = fv_file_read(path, 4096, (void **)&text, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		fv_log(FV_LOG_ERR, "sign.version_file = %s: cannot read: %s", path, fv_strerror(r));
		return r;
	}
	r = agent_seen_parse(text, len, &e, &v);
	free(text);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "sign.version_file = %s is corrupt; refusing to start (delete it to "
		       "accept the fleet's current model, whatever its version)", path);
		return r;
	}
	a->have_seen = true;
	a->seen_epoch = e;
	a->seen_version = v;
	fv_log(FV_LOG_INFO, "highest model accepted so far: epoch %" PRIu64 " v%" PRIu64 " (%s)",
	       a->seen_epoch, a->seen_version, path);
	return 0;
}

/* A model was adopted: remember it as the highest (and persist it). */
static void seen_update(struct agent *a, uint64_t epoch, uint64_t version)
{
	char text[160];
	int n, r;

	if (a->have_seen && order_cmp(epoch, version, a->seen_epoch, a->seen_version) <= 0)
		return;
	a->have_seen = true;
	a->seen_epoch = epoch;
	a->seen_version = version;
	if (!a->cfg.sign_version_file[0])
		return;
	n = agent_seen_format(text, sizeof(text), epoch, version);
	r = n < 0 ? n : fv_file_write_atomic(a->cfg.sign_version_file, text, (size_t)n);
	if (r < 0 && !a->seen_write_failed)
		fv_log(FV_LOG_ERR, "sign.version_file = %s: cannot write: %s (rollback protection "
		       "holds until a restart; further errors not reported)",
		       a->cfg.sign_version_file, fv_strerror(r));
	a->seen_write_failed = r < 0;
}

/* With sign.model_key: true when m carries a valid signature by one of the
 * coordinator's keys; otherwise the refusal is counted and logged. */
static bool signature_ok(struct agent *a, enum fv_msg_kind kind, const struct fv_mqtt_msg *m,
			 const char *what)
{
	uint64_t sup = 0;
	int r;

	if (!a->verify)
		return true;
	r = fv_msg_verify(kind, m->payload, m->len, &a->model_keys);
	if (r == 0)
		return true;
	a->n_sig_rejected++;
	if (fv_ratelimit_ok(&a->rl_sec, &sup))
		fv_log(FV_LOG_WARNING, "%s on %s refused: %s (%zu bytes; %" PRIu64 " refused so "
		       "far)%s",
		       what, m->topic,
		       r == -ENOKEY	  ? "not signed, and sign.model_key is set"
		       : r == -EKEYREJECTED ? "bad signature: not made by a key of sign.model_key"
					    : fv_strerror(r),
		       m->len, a->n_sig_rejected, sup ? " (more suppressed)" : "");
	return false;
}

static void on_model(struct agent *a, const struct fv_mqtt_msg *m)
{
	struct fv_global g;
	uint64_t sup = 0;
	int r, c;

	/* An empty payload clears the retained model; it cannot be signed,
	 * so with a key it is ignored (a coordinator that starts over sends
	 * models of a newer epoch, which replace ours anyway). */
	if (m->len == 0 && a->verify) {
		a->n_clears_ignored++;
		fv_log(FV_LOG_INFO, "unsigned clear of the global model ignored (sign.model_key is "
		       "set); keeping v%" PRIu64, a->have_model ? a->gm.version : 0);
		return;
	}
	if (m->len == 0) {
		/* The coordinator started over (fresh state or --reset): forget
		 * the model so that its new version 1 is accepted. */
		if (a->have_model) {
			fv_log(FV_LOG_NOTICE, "global model cleared by the coordinator; dropping v%" PRIu64,
			       a->gm.version);
			drop_model_objects(a);
			fv_global_clear(&a->gm);
			a->have_model = false;
		}
		fv_announce_clear(&a->ann);
		a->have_ann = false;
		a->pending = false;
		return;
	}
	/* Verified before decoding: with a key, forged bytes never reach the
	 * protobuf unpacker. */
	if (!signature_ok(a, FV_MSG_GLOBAL, m, "global model")) {
		a->n_model_rejected++;
		return;
	}
	r = fv_global_decode(m->payload, m->len, a->cfg.fleet, &g);
	if (r < 0) {
		a->n_model_rejected++;
		fv_log(FV_LOG_WARNING, "global model on %s rejected: %s", m->topic, fv_strerror(r));
		return;
	}
	/* (epoch, version) below the highest accepted: a rollback (a stale
	 * retained copy or a replay), refused. The same one again (the
	 * retained model after a reconnect) is taken only when we have none
	 * (after a restart). */
	c = a->have_seen ? order_cmp(g.epoch, g.version, a->seen_epoch, a->seen_version) : 1;
	if (c < 0) {
		a->n_rollback++;
		a->n_model_rejected++;
		if (fv_ratelimit_ok(&a->rl_sec, &sup))
			fv_log(FV_LOG_WARNING, "global model epoch %" PRIu64 " v%" PRIu64 " refused: "
			       "older than epoch %" PRIu64 " v%" PRIu64 ", already accepted "
			       "(rollback; %" PRIu64 " refused so far)",
			       g.epoch, g.version, a->seen_epoch, a->seen_version, a->n_rollback);
		fv_global_clear(&g);
		return;
	}
	if (c == 0 && a->have_model) {
		fv_global_clear(&g);
		return;
	}
	uint64_t epoch = g.epoch, version = g.version;

	if (adopt_model(a, &g) < 0) {
		a->n_model_rejected++;
		fv_global_clear(&g);
		return;
	}
	seen_update(a, epoch, version);
	try_pending(a, true);
}

/* ---- rounds ---- */

static bool selected(const struct agent *a, const struct fv_announce *ann)
{
	if (ann->n_selected == 0)
		return true;
	for (uint32_t i = 0; i < ann->n_selected; i++)
		if (strcmp(ann->selected[i], a->cfg.id) == 0)
			return true;
	return false;
}

/* Encode (ret_sent, when not NULL, gets the delta as the coordinator will
 * decode it), publish, and cache the bytes for re-announcements. */
/* Sign (if configured) and publish an encoded update (buf: malloc'd,
 * taken over and kept for resending). */
static int publish_update(struct agent *a, const struct fv_update *u, uint8_t *buf, size_t len)
{
	char topic[FV_TOPIC_MAX];
	int r;

	if (a->sign_updates && (r = fv_msg_sign(FV_MSG_UPDATE, &buf, &len, &a->key)) < 0) {
		free(buf);
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": cannot sign update: %s", u->h.round,
		       fv_strerror(r));
		return r;
	}
	fv_topic_update(topic, a->cfg.fleet, u->h.round, a->cfg.id);
	r = fv_mqtt_publish(a->mq, topic, buf, len, 1, false);
	crash_at("publishing", u->h.round);
	if (r < 0) {
		fv_log(FV_LOG_WARNING, "round %" PRIu64 ": update not queued: %s (will resend on "
		       "re-announce)", u->h.round, fv_strerror(r));
	}
	free(a->sent_buf);
	a->sent_buf = buf;
	a->sent_len = len;
	a->sent_round = u->h.round + 1;
	a->sent_base = u->h.base_version;
	a->pending = false;
	a->n_rounds++;
	return 0;
}

static int send_update(struct agent *a, struct fv_update *u)
{
	uint8_t *buf;
	size_t len;
	int r = fv_update_encode(u, &buf, &len);

	if (r < 0) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": cannot encode update: %s", u->h.round,
		       fv_strerror(r));
		return r;
	}
	return publish_update(a, u, buf, len);
}

static void fill_header(const struct agent *a, struct fv_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, a->cfg.fleet, sizeof(h->fleet));
	fv_strlcpy(h->sender, a->cfg.id, sizeof(h->sender));
	h->round = a->ann.h.round;
	h->base_version = a->ann.h.base_version;
	h->ts_ms = fv_now_wall_ms();
}

static void do_stats_round(struct agent *a)
{
	struct fv_update u;

	if (a->stats[0].count < a->ann.hp.min_windows)
		return; /* not enough data yet: try again as vectors arrive */
	memset(&u, 0, sizeof(u));
	fill_header(a, &u.h);
	u.kind = FV_ROUND_STATS;
	u.n_samples = a->stats[0].count;
	u.n_channels = a->cfg.n_channels;
	u.stats = a->stats; /* borrowed */
	fv_hist_init(&u.hist);
	if (send_update(a, &u) == 0)
		fv_log(FV_LOG_INFO, "round %" PRIu64 ": sent statistics of %" PRIu64 " vectors",
		       u.h.round, u.n_samples);
}

/* The buffer's training windows (stride S, no bad or missing vectors
 * inside, consecutive ticks), as positions: each is built and prepared for
 * the model (normalised, featured) when calibration or training asks for
 * it (window_row()), so a round holds no copy of them all (4096 windows of
 * 125 floats would be 2 MB, most of the agent's memory). */
struct winset {
	struct agent *a;
	size_t n;
	size_t *end;   /* (n) buffer index of each window's last vector */
	uint8_t *cont; /* (n) the window directly follows the previous one */
	float *raw;    /* (W, C) scratch */
};

static void winset_free(struct winset *ws)
{
	free(ws->end);
	free(ws->cont);
	free(ws->raw);
	memset(ws, 0, sizeof(*ws));
}

/* fv_model_row_fn: window i, prepared, into dst (fv_scorer_input()). */
static void window_row(void *ctx, size_t i, float *dst)
{
	const struct winset *ws = ctx;

	fv_vecbuf_window(&ws->a->buf, ws->end[i], ws->a->gm.window, ws->raw);
	fv_scorer_prepare(ws->a->sc, ws->raw, dst);
}

static int collect_windows(struct agent *a, struct winset *ws)
{
	memset(ws, 0, sizeof(*ws));
	ws->a = a;
	ws->raw = malloc((size_t)a->gm.window * a->buf.C * sizeof(float));
	if (!ws->raw || fv_vecbuf_windows(&a->buf, a->gm.window, a->gm.stride, a->cfg.period_ms,
					  &ws->end, &ws->cont, NULL, &ws->n) < 0) {
		winset_free(ws);
		return -ENOMEM;
	}
	return 0;
}

/* Calibrate the scorer on the buffer's normal windows (after a new model,
 * and whenever the buffer has doubled since: a machine that joins late
 * starts from the fleet's calibration and refines its own). */
static void calibrate(struct agent *a)
{
	struct winset ws;
	int r;

	a->calib_len = a->buf.len;
	if (collect_windows(a, &ws) < 0) {
		fv_log(FV_LOG_ERR, "model v%" PRIu64 ": out of memory collecting windows for "
		       "calibration", a->gm.version);
		return;
	}
	r = fv_scorer_calibrate_rows(a->sc, window_row, &ws, ws.cont, ws.n, NULL, NULL);
	if (r < 0)
		fv_log(FV_LOG_ERR, "model v%" PRIu64 ": calibration failed: %s", a->gm.version,
		       fv_strerror(r));
	else if (ws.n)
		fv_log(FV_LOG_INFO, "model v%" PRIu64 ": calibrated on %zu normal windows, "
		       "threshold %.4g (%s)", a->gm.version, ws.n, (double)fv_scorer_threshold(a->sc),
		       fv_thr_mode_name((enum fv_thr_mode)a->cfg.thr_mode));
	winset_free(&ws);
}

/* Send a training update compressed as the announcement asks
 * (fv_update_encode_comp, the same code as fedvigil-swarm's). With error
 * feedback, what compression dropped from earlier updates is added to this
 * delta first, and what it drops now is kept for the next one. u->delta is
 * the true delta (borrowed); 0 or -errno (logged). */
static int compress_and_send(struct agent *a, struct fv_update *u)
{
	uint8_t *buf;
	size_t len;
	int r = fv_update_encode_comp(u, &a->ann.comp, &a->gm.spec, &a->ef, &buf, &len);

	if (r < 0) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": cannot encode update: %s", u->h.round,
		       fv_strerror(r));
		return r;
	}
	return publish_update(a, u, buf, len);
}

/* The round needs a model version we do not hold. It normally arrives
 * (retained) right after the announcement; if it does not come within
 * RESYNC_AFTER_MS (a broker that dropped it from a full queue, a model we
 * refused earlier), subscribing again makes the broker send the retained
 * copy. At most every RESYNC_EVERY_MS. */
static void resync_model(struct agent *a)
{
	int64_t now = fv_now_mono_ms();

	if ((a->have_model && a->gm.version >= a->ann.h.base_version) ||
	    now - a->ann_mono < RESYNC_AFTER_MS || now < a->next_resync)
		return;
	a->next_resync = now + RESYNC_EVERY_MS;
	a->n_resync++;
	fv_log(FV_LOG_NOTICE,
	       "round %" PRIu64 " needs model v%" PRIu64 ", holding %s%" PRIu64
	       ": fetching the retained model again",
	       a->ann.h.round, a->ann.h.base_version, a->have_model ? "v" : "none, ",
	       a->have_model ? a->gm.version : 0);
	if (fv_mqtt_subscribe(a->mq, a->t_model, 1) < 0)
		fv_log(FV_LOG_WARNING, "cannot subscribe to %s again", a->t_model);
}

static void do_train_round(struct agent *a)
{
	const struct fv_hparams *hp = &a->ann.hp;
	struct fv_local_opts lo = { .epochs = hp->epochs, .seed = hp->seed,
				    .train = FV_TRAIN_DEFAULTS };
	struct fv_update u;
	struct winset ws;
	float *delta = NULL, loss = 0;
	double *col_err = NULL;
	size_t N = 0, P;
	int64_t t0 = fv_now_mono_ms();
	int r;

	if (!a->have_model || a->gm.version != a->ann.h.base_version || a->gm.epoch != a->ann.epoch) {
		resync_model(a); /* wait for the base model */
		return;
	}
	if (collect_windows(a, &ws) < 0) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": out of memory collecting windows", a->ann.h.round);
		return;
	}
	N = ws.n;
	if (N < hp->min_windows || N == 0) {
		winset_free(&ws);
		return; /* not enough normal windows yet */
	}
	memset(&u, 0, sizeof(u));
	fill_header(a, &u.h);
	u.kind = FV_ROUND_TRAIN;
	u.n_samples = N;
	/* Scores of the base model on local normal windows, as the agent
	 * scores them live (calibrated, smoothed): merged by the coordinator
	 * into the fleet's threshold; per-column errors into the fleet's
	 * calibration prior. Recalibrates the scorer on the way. */
	col_err = calloc(fv_global_columns(&a->gm), sizeof(double));
	if (!col_err ||
	    fv_scorer_calibrate_rows(a->sc, window_row, &ws, ws.cont, N, &u.hist, col_err) < 0) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": out of memory scoring windows", a->ann.h.round);
		goto out;
	}
	a->calib_len = a->buf.len;
	u.n_col_err = fv_global_columns(&a->gm);
	u.col_err = col_err; /* borrowed */

	/* The announcement comes from the network: the batch is capped by our
	 * memory budget, the epochs by the library (lib/fl/local.c, shared
	 * with fedvigil-eval). */
	lo.batch = hp->batch < 1 ? 1 : FV_MIN(hp->batch, (uint32_t)a->cfg.max_batch);
	lo.train.optim = hp->optim;
	lo.train.lr = hp->lr;
	lo.train.momentum = hp->momentum;
	lo.train.weight_decay = hp->weight_decay;
	lo.train.prox_mu = hp->prox_mu; /* FedProx, towards the base model */
	P = a->gm.n_params;
	delta = malloc(P * sizeof(float));
	if (!delta) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": out of memory for training", a->ann.h.round);
		goto out;
	}
	crash_at("training", a->ann.h.round);
	r = fv_local_train_rows(&a->gm.spec, a->gm.params, P, window_row, &ws, N, &lo, delta,
				&loss);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": local training failed: %s", a->ann.h.round,
		       r == -ERANGE ? "loss is not finite" : fv_strerror(r));
		goto out;
	}
	u.loss = loss;
	u.n_params = P;
	u.delta = delta; /* borrowed */
	if (a->update_hook)
		a->update_hook(a->update_hook_ctx, &u);
	r = compress_and_send(a, &u);
	if (r == 0)
		fv_log(FV_LOG_INFO,
		       "round %" PRIu64 ": trained on %zu windows, %u epochs, loss %.5f, update "
		       "%zu bytes (%s) (%" PRId64 " ms)",
		       u.h.round, N, hp->epochs, (double)loss, a->sent_len, fv_enc_name(u.enc),
		       fv_now_mono_ms() - t0);
out:
	free(delta);
	winset_free(&ws);
	free(col_err);
}

/* Answer the pending round if we can. Called after new vectors arrive, at
 * most every PENDING_RETRY_MS (collecting windows scans the whole buffer),
 * and at once (force) when the announcement or a model arrives. */
static void try_pending(struct agent *a, bool force)
{
	int64_t now = fv_now_mono_ms();

	if (!a->pending || (!force && now < a->next_try_ms))
		return;
	a->next_try_ms = now + PENDING_RETRY_MS;
	if (a->ann.kind == FV_ROUND_STATS)
		do_stats_round(a);
	else
		do_train_round(a);
}

static void on_round(struct agent *a, const struct fv_mqtt_msg *m)
{
	struct fv_announce ann;
	int r;

	if (m->len == 0) {
		/* Training finished: the coordinator cleared its announcement.
		 * Unsigned, so ignored with a key (at worst we answer a closed
		 * round, and the coordinator drops that as stale). */
		if (a->verify) {
			a->n_clears_ignored++;
			fv_log(FV_LOG_DEBUG, "unsigned clear of the round announcement ignored");
			return;
		}
		a->pending = false;
		return;
	}
	if (!signature_ok(a, FV_MSG_ANNOUNCE, m, "round announcement")) {
		a->n_ann_rejected++;
		return;
	}
	r = fv_announce_decode(m->payload, m->len, a->cfg.fleet, &ann);
	if (r < 0) {
		a->n_ann_rejected++;
		fv_log(FV_LOG_WARNING, "round announcement rejected: %s", fv_strerror(r));
		return;
	}
	/* An announcement older than one already seen (a stale retained copy,
	 * a replay), or of an older coordinator epoch than the newest model we
	 * accepted, is refused; a coordinator that starts over announces a
	 * newer epoch, which starts the round numbers again. */
	if ((a->have_ann && order_cmp(ann.epoch, ann.h.round, a->ann.epoch, a->ann.h.round) < 0) ||
	    (a->have_seen && ann.epoch < a->seen_epoch)) {
		a->n_ann_rejected++;
		fv_log(FV_LOG_WARNING, "round announcement rejected: %s (epoch %" PRIu64 " round %"
		       PRIu64 ", already at epoch %" PRIu64 " round %" PRIu64 ")",
		       fv_strerror(-ESTALE), ann.epoch, ann.h.round,
		       a->have_ann ? a->ann.epoch : a->seen_epoch, a->have_ann ? a->ann.h.round : 0);
		fv_announce_clear(&ann);
		return;
	}
	if (!selected(a, &ann)) {
		fv_log(FV_LOG_DEBUG, "round %" PRIu64 ": not selected", ann.h.round);
		fv_announce_clear(&ann);
		a->pending = false;
		return;
	}
	/* Our update for this very round may have been lost (coordinator
	 * restart, broker restart): send the cached one again. */
	if (a->sent_round == ann.h.round + 1 && a->sent_base == ann.h.base_version &&
	    a->sent_buf) {
		char topic[FV_TOPIC_MAX];

		fv_topic_update(topic, a->cfg.fleet, ann.h.round, a->cfg.id);
		fv_mqtt_publish(a->mq, topic, a->sent_buf, a->sent_len, 1, false);
		fv_log(FV_LOG_INFO, "round %" PRIu64 " announced again: resent our update",
		       ann.h.round);
		fv_announce_clear(&ann);
		return;
	}
	fv_announce_clear(&a->ann);
	a->ann = ann;
	a->have_ann = true;
	a->pending = true;
	a->ann_mono = fv_now_mono_ms();
	fv_log(FV_LOG_INFO, "round %" PRIu64 " (%s) announced, base model v%" PRIu64,
	       ann.h.round, ann.kind == FV_ROUND_STATS ? "statistics" : "training",
	       ann.h.base_version);
	try_pending(a, true);
}

/* ---- ingest ---- */

static void log_score(struct agent *a, int64_t end_ms, float score, float thr, bool above)
{
	if (!a->score_log)
		return;
	if (fprintf(a->score_log, "%" PRId64 ",%.6g,%.6g,%d,%d,%" PRIu64 "\n", end_ms,
		    (double)score, (double)thr, above, a->det.raised,
		    a->gm.version) < 0 ||
	    ferror(a->score_log)) {
		/* Full disk and the like: report once, keep detecting. */
		if (!a->score_log_failed)
			fv_log(FV_LOG_ERR, "agent.score_log = %s: write failed: %s (detection goes on; "
			       "further errors not reported)", a->cfg.score_log, strerror(errno));
		a->score_log_failed = true;
		clearerr(a->score_log);
	}
}

static void on_window(struct agent *a, int64_t start_ms, int64_t end_ms)
{
	uint32_t C = a->cfg.n_channels, W = a->gm.window;
	enum fv_detect_event ev;
	float score, thr;
	bool above, cont;

	/* A window continues the last one when it starts one stride later
	 * (no gap, no incomplete vector between): smoothing goes on. */
	cont = a->have_last && start_ms == a->last_start + (int64_t)a->gm.stride * a->cfg.period_ms;
	a->last_start = start_ms;
	a->have_last = true;
	if (fv_scorer_score(a->sc, a->winbuf, cont, &score, a->share) < 0)
		return;
	thr = fv_scorer_threshold(a->sc);
	a->n_windows++;
	a->last_score = score;
	above = thr > 0 && score > thr;
	if (above) {
		a->n_above++;
		fv_vecbuf_mark_recent(&a->buf, W);
	}
	if (!isfinite(score))
		return;
	bool was_raised = a->det.raised;
	ev = fv_detect_push(&a->det, score, thr, start_ms, end_ms);
	if (a->det.raised && (ev == FV_DETECT_RAISED || a->det.max_score == score))
		memcpy(a->alert_share, a->share, C * sizeof(float));
	if (was_raised || a->det.raised)
		fv_vecbuf_mark_recent(&a->buf, a->gm.stride);
	log_score(a, end_ms, score, thr, above);
	/* After the verdict: the adaptive threshold learns from the windows
	 * (censored above the threshold; those of an alert below it left out). */
	fv_scorer_observe(a->sc, score, was_raised || a->det.raised);
	if (ev == FV_DETECT_RAISED) {
		a->n_alerts++;
		publish_alert(a, "raised");
	} else if (ev == FV_DETECT_CLEARED) {
		publish_alert(a, "cleared");
	}
	/* Here, not only once per loop: a burst of data can raise and
	 * clear an alert within one iteration. */
	if (ev == FV_DETECT_RAISED || ev == FV_DETECT_CLEARED)
		presence_update(a, fv_now_mono_ms());
}

static void on_vector(struct agent *a, int ok, int64_t tick)
{
	int64_t start;

	if (ok < 0) {
		a->n_incomplete++;
		if (a->win)
			fv_window_reset(a->win);
		return;
	}
	a->n_vectors++;
	for (uint32_t c = 0; c < a->cfg.n_channels; c++)
		fv_chstats_add(&a->stats[c], a->vec[c]);
	fv_vecbuf_push(&a->buf, a->vec, tick);
	if (a->have_model && fv_window_push(a->win, a->vec, tick, a->winbuf, &start) == 1)
		on_window(a, start, tick);
	if (a->have_model && a->buf.len >= FV_MAX(2 * a->calib_len, CALIB_MIN_VECTORS) &&
	    a->buf.len < a->buf.cap)
		calibrate(a);
}

/* Emit every tick that is due before time `now` (data or wall clock). */
static void run_ticks(struct agent *a, int64_t now)
{
	uint64_t skipped = 0;
	uint32_t due = fv_align_due(a->align, now, MAX_TICKS_PER_MSG, &skipped);

	if (skipped) {
		a->n_skipped += skipped;
		a->n_incomplete += skipped;
		if (a->win)
			fv_window_reset(a->win);
	}
	for (uint32_t i = 0; i < due; i++) {
		int64_t tick;
		int ok = fv_align_sample(a->align, a->vec, &tick);

		if (ok == -EAGAIN)
			break;
		on_vector(a, ok, tick);
	}
	if (due)
		try_pending(a, false);
}

static void on_sensor(struct agent *a, uint32_t ch, const struct fv_mqtt_msg *m)
{
	double v;
	int64_t ts;
	int r;

	r = fv_payload_parse(&a->cfg.channels[ch].fmt, m->payload, m->len, &v, &ts);
	if (r < 0 || (a->cfg.clock == AGENT_CLOCK_DATA && ts < 0)) {
		uint64_t sup = 0;

		a->n_parse_err++;
		if (fv_ratelimit_ok(&a->rl_parse, &sup))
			fv_log(FV_LOG_WARNING,
			       "channel %s: payload on %s rejected (%zu bytes): %s%s (%" PRIu64
			       " more suppressed)",
			       a->cfg.channels[ch].name, m->topic, m->len,
			       r < 0 ? fv_strerror(r) : "no timestamp and ingest.clock = data", "",
			       sup);
		return;
	}
	if (a->cfg.clock == AGENT_CLOCK_DATA)
		run_ticks(a, ts);
	else if (ts < 0)
		ts = fv_now_wall_ms();
	if (fv_align_observe(a->align, ch, v, ts) == 0)
		a->n_readings[ch]++;
}

/* ---- Sparkplug B ---- */

#define REBIRTH_INTERVAL_MS 30000

/* A reading of channel ch from the edge node (fv_spb_value_fn). */
static void on_spb_value(uint32_t ch, double v, int64_t ts, void *userdata)
{
	struct agent *a = userdata;

	if (a->cfg.clock == AGENT_CLOCK_DATA) {
		if (ts < 0) {
			a->n_parse_err++;
			return;
		}
		run_ticks(a, ts);
	} else if (ts < 0) {
		ts = fv_now_wall_ms();
	}
	if (fv_align_observe(a->align, ch, v, ts) == 0)
		a->n_readings[ch]++;
}

static void on_sparkplug(struct agent *a, const struct fv_mqtt_msg *m)
{
	int r = fv_spb_map_message(a->spb, m->topic, m->payload, m->len, on_spb_value, a);
	int64_t now;

	if (r == -ENOENT || r == -EINVAL) {
		a->n_unknown_topic++; /* another node's, or a command */
		return;
	}
	if (r < 0) {
		uint64_t sup = 0;

		a->n_parse_err++;
		if (fv_ratelimit_ok(&a->rl_parse, &sup))
			fv_log(FV_LOG_WARNING,
			       "Sparkplug payload on %s rejected (%zu bytes): %s (%" PRIu64
			       " more suppressed)",
			       m->topic, m->len, fv_strerror(r), sup);
		return;
	}
	now = fv_now_mono_ms();
	if (a->cfg.sp_rebirth && fv_spb_map_wants_rebirth(a->spb) && now >= a->next_rebirth_ms) {
		char topic[FV_SPB_TOPIC_MAX];
		uint8_t *buf;
		size_t len;

		a->next_rebirth_ms = now + REBIRTH_INTERVAL_MS;
		if (fv_spb_topic(topic, sizeof(topic), FV_SPB_NCMD, a->cfg.sp_group, a->cfg.sp_node,
				 "") &&
		    fv_spb_rebirth_request(fv_now_wall_ms(), &buf, &len) == 0) {
			fv_mqtt_publish(a->mq, topic, buf, len, 0, false);
			free(buf);
			a->n_rebirth_requests++;
			fv_log(FV_LOG_NOTICE, "Sparkplug: data with unknown aliases from %s/%s; "
			       "asked for a rebirth on %s", a->cfg.sp_group, a->cfg.sp_node, topic);
		}
	}
}

static void on_message(struct agent *a, const struct fv_mqtt_msg *m)
{
	a->n_msgs++;
	if (a->spb && strncmp(m->topic, FV_SPB_NAMESPACE "/", sizeof(FV_SPB_NAMESPACE)) == 0) {
		on_sparkplug(a, m);
		return;
	}
	if (strcmp(m->topic, a->t_model) == 0) {
		on_model(a, m);
		return;
	}
	if (strcmp(m->topic, a->t_round) == 0) {
		on_round(a, m);
		return;
	}
	for (uint32_t i = 0; i < a->cfg.n_channels; i++)
		if (strcmp(m->topic, a->cfg.channels[i].topic) == 0) {
			on_sensor(a, i, m);
			return;
		}
	a->n_unknown_topic++;
}

/* ---- life cycle ---- */

struct agent *agent_new(const struct agent_config *c)
{
	struct agent *a = calloc(1, sizeof(*a));
	struct fv_mqtt_opts o = { 0 };
	struct fv_detect_opts dopt;
	struct fv_scorer_opts sopt;
	char will[256], client_id[160];
	uint32_t C = c->n_channels;
	int wl;

	if (!a)
		return NULL;
	a->cfg = *c;
	a->rl_parse = (struct fv_ratelimit)FV_RATELIMIT_INIT(10000, 5);
	a->rl_sec = (struct fv_ratelimit)FV_RATELIMIT_INIT(10000, 5);
	if (c->sign_model_key[0]) {
		char err[600];

		if (fv_verify_keys_load(c->sign_model_key, &a->model_keys, err, sizeof(err)) < 0) {
			fv_log(FV_LOG_ERR, "sign.model_key: %s", err);
			goto fail;
		}
		a->verify = true;
		fv_log(FV_LOG_NOTICE, "models and announcements must be signed by one of %u key(s) "
		       "of %s", a->model_keys.n, c->sign_model_key);
	} else {
		fv_log(FV_LOG_WARNING, "sign.model_key is not set: global models are not "
		       "authenticated (docs/security.md)");
	}
	if (c->sign_key_file[0]) {
		char err[600];

		if (fv_sign_key_load(c->sign_key_file, &a->key, err, sizeof(err)) < 0) {
			fv_log(FV_LOG_ERR, "sign.key_file: %s", err);
			goto fail;
		}
		a->sign_updates = true;
	}
	if (c->sign_version_file[0] && seen_load(a) < 0)
		goto fail;
	fv_topic_round(a->t_round, c->fleet);
	fv_topic_model(a->t_model, c->fleet);
	if (!fv_topic_agent(a->t_state, c->fleet, c->id, "state") ||
	    !fv_topic_agent(a->t_alert, c->fleet, c->id, "alert") ||
	    !fv_topic_agent(a->t_metrics, c->fleet, c->id, "metrics"))
		goto fail;
	dopt = (struct fv_detect_opts){ .k = (uint32_t)c->k, .n = (uint32_t)c->n,
					.clear_ratio = (float)c->clear_ratio,
					.clear_n = (uint32_t)c->clear_n };
	if (fv_detect_init(&a->det, &dopt) < 0)
		goto fail;
	sopt = (struct fv_scorer_opts){ .mode = (enum fv_thr_mode)c->thr_mode,
					.prior_windows = c->prior_windows,
					.halflife = c->halflife,
					.calib_prior = c->calib_prior };
	a->sc = fv_scorer_new(&sopt, C);
	if (!a->sc)
		goto fail;
	a->sopt = sopt;
	a->align = fv_align_new(C, c->period_ms, c->max_age_ms);
	a->vec = calloc(C, sizeof(float));
	a->share = calloc(C, sizeof(float));
	a->alert_share = calloc(C, sizeof(float));
	a->stats = calloc(C, sizeof(*a->stats));
	a->n_readings = calloc(C, sizeof(*a->n_readings));
	if (!a->align || !a->vec || !a->share || !a->alert_share || !a->stats || !a->n_readings ||
	    fv_vecbuf_init(&a->buf, C, (size_t)c->buffer) < 0)
		goto fail;
	for (uint32_t i = 0; i < C; i++)
		fv_chstats_init(&a->stats[i]);
	if (c->score_log[0]) {
		a->score_log = fopen(c->score_log, "a");
		if (!a->score_log) {
			fv_log(FV_LOG_ERR, "agent.score_log = %s: cannot open: %s", c->score_log,
			       strerror(errno));
			goto fail;
		}
		setvbuf(a->score_log, NULL, _IOLBF, 0);
		if (ftell(a->score_log) == 0)
			fprintf(a->score_log, "ts_ms,score,threshold,above,alert,model_version\n");
	}

	wl = snprintf(will, sizeof(will), "{\"state\":\"offline\",\"agent\":\"%s\",\"fleet\":\"%s\"}",
		      c->id, c->fleet);
	snprintf(client_id, sizeof(client_id), "fedvigil-agent-%s-%s", c->fleet, c->id);
	o.uri = c->broker;
	o.client_id = client_id;
	o.keepalive_s = (int)c->keepalive_s;
	o.username = c->username[0] ? c->username : NULL;
	o.password = c->password[0] ? c->password : NULL;
	fv_mqtt_tls_apply(&a->cfg.tls, &o);
	o.will_topic = a->t_state;
	o.will_payload = will;
	o.will_len = (size_t)wl;
	o.will_qos = 1;
	o.will_retain = true;
	/* Room for bursts and for the readings that arrive while we train
	 * (sensor payloads are small); overflow is counted in mqtt_dropped. */
	o.queue_max = 65536;
	a->mq = fv_mqtt_new(&o);
	if (!a->mq)
		goto fail;
	if (fv_mqtt_subscribe(a->mq, a->t_model, 1) < 0 || fv_mqtt_subscribe(a->mq, a->t_round, 1) < 0)
		goto fail;
	for (uint32_t i = 0; i < C; i++)
		if (!c->channels[i].sp_metric[0] && fv_mqtt_subscribe(a->mq, c->channels[i].topic, 1) < 0)
			goto fail;
	for (uint32_t i = 0; i < C; i++) {
		char f_node[FV_SPB_TOPIC_MAX], f_dev[FV_SPB_TOPIC_MAX];

		if (!c->channels[i].sp_metric[0])
			continue;
		if (!a->spb) {
			a->spb = fv_spb_map_new(c->sp_group, c->sp_node, C);
			if (!a->spb || fv_spb_map_filters(a->spb, f_node, f_dev) < 0 ||
			    fv_mqtt_subscribe(a->mq, f_node, 1) < 0 ||
			    fv_mqtt_subscribe(a->mq, f_dev, 1) < 0) {
				fv_log(FV_LOG_ERR, "cannot set up Sparkplug B input from %s/%s",
				       c->sp_group, c->sp_node);
				goto fail;
			}
		}
		if (fv_spb_map_add(a->spb, i, c->channels[i].sp_device, c->channels[i].sp_metric) < 0)
			goto fail; /* agent_config_check refused duplicates already */
	}
	if (c->sp_presence && !(a->presence = agent_presence_new(&a->cfg)))
		goto fail;
	return a;
fail:
	agent_free(a);
	return NULL;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	fv_mqtt_free(a->mq, 1000);
	fv_httpd_free(a->httpd);
	fv_spb_map_free(a->spb);
	agent_presence_free(a->presence);
	drop_model_objects(a);
	fv_scorer_free(a->sc);
	fv_global_clear(&a->gm);
	fv_announce_clear(&a->ann);
	fv_align_free(a->align);
	fv_vecbuf_free(&a->buf);
	free(a->vec);
	free(a->share);
	free(a->alert_share);
	free(a->stats);
	free(a->n_readings);
	free(a->sent_buf);
	fv_ef_free(&a->ef);
	if (a->score_log)
		fclose(a->score_log);
	fv_sign_key_wipe(&a->key);
	free(a);
}

/* ---- service integration: readiness, status, reload, Prometheus ---- */

/* Without a retained model the agent is ready this long after connecting
 * (a fleet whose coordinator has not produced one yet). */
#define READY_SETTLE_MS 2000

/* READY=1 once connected and synced: the retained global model has been
 * loaded, or none arrived within READY_SETTLE_MS of connecting. */
static void check_ready(struct agent *a, int64_t now)
{
	char status[160];

	if (a->sd.ready || !a->connected_ms || !fv_mqtt_connected(a->mq))
		return;
	if (!a->have_model && now - a->connected_ms < READY_SETTLE_MS)
		return;
	if (a->have_model)
		snprintf(status, sizeof(status), "connected, model v%" PRIu64 " loaded",
			 a->gm.version);
	else
		snprintf(status, sizeof(status), "connected, waiting for the first global model");
	fv_sd_ready(&a->sd, status);
}

static void update_status(struct agent *a, int64_t now)
{
	if (!a->sd.active)
		return;
	if (!fv_mqtt_connected(a->mq))
		fv_sd_status(&a->sd, now, "broker not connected; model v%" PRIu64 ", %" PRIu64
			     " alerts", a->have_model ? a->gm.version : 0, a->n_alerts);
	else if (!a->have_model)
		fv_sd_status(&a->sd, now, "waiting for the first global model; %" PRIu64
			     " vectors, round %" PRIu64, a->n_vectors,
			     a->have_ann ? a->ann.h.round : 0);
	else
		fv_sd_status(&a->sd, now, "round %" PRIu64 ", model v%" PRIu64 ", last score %.4g"
			     " (threshold %.4g), %" PRIu64 " alerts%s", a->have_ann ? a->ann.h.round : 0,
			     a->gm.version, (double)a->last_score,
			     (double)(a->have_model ? fv_scorer_threshold(a->sc) : 0.0f),
			     a->n_alerts, a->det.raised ? ", alert active" : "");
}

static void on_change(const struct fv_cfg_key *k, const char *old_value, const char *new_value,
		      bool applied, void *userdata)
{
	bool secret = strstr(k->name, "password") != NULL;

	(void)userdata;
	if (applied)
		fv_log(FV_LOG_NOTICE, "reload: %s.%s = %s (was %s)", k->section, k->name,
		       secret ? "(hidden)" : new_value, secret ? "(hidden)" : old_value);
	else
		fv_log(FV_LOG_WARNING,
		       "reload: %s.%s changed to %s but takes effect only after a restart; "
		       "keeping %s",
		       k->section, k->name, secret ? "(hidden)" : new_value,
		       secret ? "(hidden)" : old_value);
}

static bool channels_equal(const struct agent_config *x, const struct agent_config *y)
{
	if (x->n_channels != y->n_channels)
		return false;
	for (uint32_t i = 0; i < x->n_channels; i++) {
		const struct agent_channel *p = &x->channels[i], *q = &y->channels[i];

		if (strcmp(p->name, q->name) != 0 || strcmp(p->topic, q->topic) != 0 ||
		    p->fmt.format != q->fmt.format || strcmp(p->fmt.value_path, q->fmt.value_path) != 0 ||
		    strcmp(p->fmt.ts_path, q->fmt.ts_path) != 0 ||
		    strcmp(p->sp_metric, q->sp_metric) != 0 || strcmp(p->sp_device, q->sp_device) != 0)
			return false;
	}
	return true;
}

static void open_score_log(struct agent *a)
{
	if (a->score_log)
		fclose(a->score_log);
	a->score_log = NULL;
	a->score_log_failed = false;
	if (!a->cfg.score_log[0])
		return;
	a->score_log = fopen(a->cfg.score_log, "a");
	if (!a->score_log) {
		fv_log(FV_LOG_ERR, "agent.score_log = %s: cannot open: %s (scores are not logged)",
		       a->cfg.score_log, strerror(errno));
		return;
	}
	setvbuf(a->score_log, NULL, _IOLBF, 0);
	if (ftell(a->score_log) == 0)
		fprintf(a->score_log, "ts_ms,score,threshold,above,alert,model_version\n");
}

int agent_reload(struct agent *a, const struct agent_config *next)
{
	struct fv_detect_opts old = a->det.o;
	int n;

	if (!channels_equal(&a->cfg, next))
		fv_log(FV_LOG_WARNING, "reload: the [channel.NAME] sections changed; they take "
		       "effect only after a restart (the model's input is fixed)");
	n = fv_cfg_apply_live(agent_cfg_keys, agent_cfg_nkeys, &a->cfg, next, agent_live_keys,
			      on_change, NULL);
	fv_log_setup((enum fv_log_level)(a->cfg.log_level + FV_LOG_ERR), "fedvigil-agent");
	a->det.o = (struct fv_detect_opts){ .k = (uint32_t)a->cfg.k, .n = (uint32_t)a->cfg.n,
					    .clear_ratio = (float)a->cfg.clear_ratio,
					    .clear_n = (uint32_t)a->cfg.clear_n };
	/* New debounce rules start from a clean history; an active alert
	 * stays active and clears under the new rules. */
	if (memcmp(&old, &a->det.o, sizeof(old)) != 0)
		fv_detect_reset_history(&a->det);
	/* New threshold options: a new scorer, calibrated again under the
	 * current model. */
	struct fv_scorer_opts so = { .mode = (enum fv_thr_mode)a->cfg.thr_mode,
				     .prior_windows = a->cfg.prior_windows,
				     .halflife = a->cfg.halflife,
				     .calib_prior = a->cfg.calib_prior };

	if (so.mode != a->sopt.mode || so.prior_windows != a->sopt.prior_windows ||
	    so.halflife != a->sopt.halflife || so.calib_prior != a->sopt.calib_prior) {
		struct fv_scorer *sc = fv_scorer_new(&so, a->cfg.n_channels);

		if (!sc) {
			fv_log(FV_LOG_ERR, "reload: cannot build the scorer for the new [detect] "
			       "threshold options; keeping the old ones");
		} else {
			fv_scorer_free(a->sc);
			a->sc = sc;
			a->sopt = so;
			if (a->have_model && fv_scorer_set_model(a->sc, &a->gm) == 0)
				calibrate(a);
			else if (a->have_model) {
				drop_model_objects(a);
				fv_global_clear(&a->gm);
				a->have_model = false;
			}
		}
	}
	open_score_log(a);
	return n;
}

static void reload(struct agent *a, const struct agent_ctl *ctl)
{
	static struct agent_config next; /* large: not on the stack */
	char err[600];
	int r, n;

	fv_sd_reloading(&a->sd);
	r = ctl->load(&next, err, sizeof(err));
	if (r < 0) {
		fv_log(FV_LOG_ERR, "reload rejected: %s; keeping the running configuration", err);
	} else {
		n = agent_reload(a, &next);
		fv_log(FV_LOG_NOTICE, "configuration reloaded: %d key(s) changed", n);
	}
	fv_sd_reloaded(&a->sd, r < 0 ? "reload rejected, running configuration kept"
				     : "configuration reloaded");
}

static void render_prom(struct fv_prom *p, void *userdata)
{
	const struct agent *a = userdata;
	struct fv_mqtt_stats ms;
	char labels[300], id[FV_NAME_MAX * 2], fleet[FV_NAME_MAX * 2];

	snprintf(labels, sizeof(labels), "version=\"%s\",fleet=\"%s\",agent=\"%s\"", FV_VERSION,
		 fv_prom_label_escape(a->cfg.fleet, fleet, sizeof(fleet)),
		 fv_prom_label_escape(a->cfg.id, id, sizeof(id)));
	fv_prom_family(p, "fedvigil_agent_info", "gauge",
		       "Constant 1, labelled with the version, fleet and agent id.");
	fv_prom_sample(p, "fedvigil_agent_info", labels, 1);
	fv_prom_metric(p, "fedvigil_agent_channels", "gauge", "Model channels configured.",
		       a->cfg.n_channels);
	fv_prom_family(p, "fedvigil_agent_channel_readings_total", "counter",
		       "Readings taken per channel (from its topic or Sparkplug metric).");
	for (uint32_t i = 0; i < a->cfg.n_channels; i++) {
		char name[FV_NAME_MAX * 2];

		snprintf(labels, sizeof(labels), "channel=\"%s\"",
			 fv_prom_label_escape(a->cfg.channels[i].name, name, sizeof(name)));
		fv_prom_sample(p, "fedvigil_agent_channel_readings_total", labels,
			       (double)a->n_readings[i]);
	}
	fv_prom_metric(p, "fedvigil_agent_messages_total", "counter",
		       "MQTT messages handled by the main loop.", (double)a->n_msgs);
	fv_prom_metric(p, "fedvigil_agent_parse_errors_total", "counter",
		       "Sensor payloads rejected (unparseable, NaN/Inf, wrong type).",
		       (double)a->n_parse_err);
	fv_prom_metric(p, "fedvigil_agent_unknown_topic_total", "counter",
		       "Messages on topics no channel uses.", (double)a->n_unknown_topic);
	fv_prom_metric(p, "fedvigil_agent_vectors_total", "counter",
		       "Complete aligned vectors sampled.", (double)a->n_vectors);
	fv_prom_metric(p, "fedvigil_agent_incomplete_vectors_total", "counter",
		       "Sampling ticks with a missing or stale channel.", (double)a->n_incomplete);
	fv_prom_metric(p, "fedvigil_agent_windows_total", "counter", "Windows scored.",
		       (double)a->n_windows);
	fv_prom_metric(p, "fedvigil_agent_windows_above_total", "counter",
		       "Windows that scored above the threshold.", (double)a->n_above);
	fv_prom_metric(p, "fedvigil_agent_alerts_total", "counter", "Alerts raised.",
		       (double)a->n_alerts);
	fv_prom_metric(p, "fedvigil_agent_alert_active", "gauge", "1 while an alert is raised.",
		       a->det.raised ? 1 : 0);
	fv_prom_metric(p, "fedvigil_agent_score", "gauge",
		       "Reconstruction error of the last scored window.", (double)a->last_score);
	fv_prom_metric(p, "fedvigil_agent_threshold", "gauge",
		       "Alert threshold of the global model (0 = none yet).",
		       a->have_model ? (double)fv_scorer_threshold(a->sc) : 0);
	fv_prom_metric(p, "fedvigil_agent_model_version", "gauge",
		       "Version of the global model in use (0 = none yet).",
		       a->have_model ? (double)a->gm.version : 0);
	fv_prom_metric(p, "fedvigil_agent_models_rejected_total", "counter",
		       "Global models refused (decode errors, shape, memory limit).",
		       (double)a->n_model_rejected);
	fv_prom_metric(p, "fedvigil_agent_announcements_rejected_total", "counter",
		       "Round announcements refused (decode errors, stale).",
		       (double)a->n_ann_rejected);
	fv_prom_metric(p, "fedvigil_agent_rounds_total", "counter",
		       "Round updates sent to the coordinator.", (double)a->n_rounds);
	fv_prom_metric(p, "fedvigil_agent_round", "gauge", "Round of the last announcement.",
		       a->have_ann ? (double)a->ann.h.round : 0);
	fv_prom_metric(p, "fedvigil_agent_buffer_vectors", "gauge",
		       "Vectors in the local training buffer.", (double)a->buf.len);
	if (a->spb) {
		struct fv_spb_stats sp;

		fv_spb_map_get_stats(a->spb, &sp);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_messages_total", "counter",
			       "Sparkplug B messages of the edge node handled.", (double)sp.messages);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_births_total", "counter",
			       "NBIRTH and DBIRTH messages.", (double)sp.births);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_deaths_total", "counter",
			       "NDEATH and DDEATH messages.", (double)sp.deaths);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_values_total", "counter",
			       "Metric values delivered to channels.", (double)sp.values);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_decode_errors_total", "counter",
			       "Payloads that did not decode.", (double)sp.decode_errors);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_unknown_alias_total", "counter",
			       "Data metrics with an alias no birth explained.",
			       (double)sp.unknown_alias);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_not_numeric_total", "counter",
			       "Metrics of a channel without a usable number (null, string, NaN).",
			       (double)sp.not_numeric);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_seq_gaps_total", "counter",
			       "Sequence numbers that skipped (lost messages).", (double)sp.seq_gaps);
		fv_prom_metric(p, "fedvigil_agent_sparkplug_rebirth_requests_total", "counter",
			       "NCMD rebirth requests sent.", (double)a->n_rebirth_requests);
	}
	fv_mqtt_get_stats(a->mq, &ms);
	fv_prom_mqtt(p, &ms, fv_mqtt_connected(a->mq));
	fv_prom_metric(p, "fedvigil_watchdog_pings_total", "counter",
		       "WATCHDOG=1 notifications sent to the service manager.",
		       (double)a->sd.wd_sent);
	fv_prom_process(p);
}

int agent_run(struct agent *a, const struct agent_ctl *ctl)
{
	int64_t next_wall_tick = 0;

	fv_sd_init(&a->sd);
	if (a->cfg.metrics_listen[0]) {
		char err[300];

		a->httpd = fv_httpd_new(a->cfg.metrics_listen, render_prom, a, err, sizeof(err));
		if (!a->httpd) {
			fv_log(FV_LOG_ERR, "metrics.listen: %s", err);
			return 1;
		}
		fv_log(FV_LOG_INFO, "Prometheus metrics on http://%s/metrics", fv_httpd_addr(a->httpd));
	}
	if (fv_mqtt_start(a->mq) < 0 || (a->presence && agent_presence_start(a->presence) < 0)) {
		fv_log(FV_LOG_ERR, "cannot start the MQTT client for %s", a->cfg.broker);
		return 1;
	}
	fv_log(FV_LOG_NOTICE, "agent %s of fleet %s started: %u channels, broker %s, clock %s",
	       a->cfg.id, a->cfg.fleet, a->cfg.n_channels, a->cfg.broker,
	       a->cfg.clock == AGENT_CLOCK_DATA ? "data" : "wall");
	a->next_metrics = fv_now_mono_ms() + a->cfg.metrics_interval_ms;
	while (!*ctl->stop) {
		struct pollfd pfd[2 + FV_HTTPD_POLLFDS];
		struct fv_mqtt_msg m;
		enum fv_mqtt_event ev;
		int64_t now = fv_now_mono_ms();
		int timeout = 200, np = 1, hp;

		if (a->cfg.clock == AGENT_CLOCK_WALL) {
			if (next_wall_tick == 0 || now >= next_wall_tick) {
				run_ticks(a, fv_now_wall_ms());
				next_wall_tick = now + a->cfg.period_ms;
			}
			timeout = (int)FV_MIN((int64_t)timeout, FV_MAX(next_wall_tick - now, 0));
		}
		if (now >= a->next_metrics) {
			publish_metrics(a);
			a->next_metrics = now + a->cfg.metrics_interval_ms;
		}
		/* One iteration of this loop is progress: only here is the
		 * watchdog fed, so a loop stuck anywhere stops the pings. */
		timeout = FV_MIN(timeout, fv_sd_watchdog(&a->sd, now));
		check_ready(a, now);
		update_status(a, now);
		presence_update(a, now);
		if (*ctl->reload) {
			*ctl->reload = 0;
			reload(a, ctl);
		}
		pfd[0] = (struct pollfd){ .fd = fv_mqtt_fd(a->mq), .events = POLLIN };
		if (a->presence)
			pfd[np++] = (struct pollfd){ .fd = agent_presence_fd(a->presence),
						     .events = POLLIN };
		hp = np;
		if (a->httpd)
			np += fv_httpd_pollfds(a->httpd, pfd + hp, FV_HTTPD_POLLFDS);
		if (poll(pfd, (nfds_t)np, timeout) < 0 && errno != EINTR) {
			fv_log(FV_LOG_ERR, "poll: %s", strerror(errno));
			return 1;
		}
		if (a->httpd)
			fv_httpd_handle(a->httpd, pfd + hp, np - hp, fv_now_mono_ms());
		/* Bounded batch so timers keep running under a flood. */
		for (int i = 0; i < 10000 && !*ctl->stop; i++) {
			ev = fv_mqtt_next(a->mq, &m);
			if (ev == FV_MQTT_EV_NONE)
				break;
			if (ev == FV_MQTT_EV_CONNECTED) {
				a->connected_ms = fv_now_mono_ms();
				publish_state(a, "online");
			} else if (ev == FV_MQTT_EV_MESSAGE) {
				on_message(a, &m);
				fv_mqtt_msg_clear(&m);
			}
		}
	}
	fv_sd_stopping(&a->sd, "stopping");
	if (a->presence)
		agent_presence_stop(a->presence);
	fv_log(FV_LOG_NOTICE, "stopping: %" PRIu64 " vectors, %" PRIu64 " windows, %" PRIu64
	       " alerts, %" PRIu64 " rounds",
	       a->n_vectors, a->n_windows, a->n_alerts, a->n_rounds);
	publish_metrics(a);
	publish_state(a, "offline");
	fv_mqtt_disconnect(a->mq, 2000);
	return 0;
}
