/* fedvigil-coordinator round machine.
 *
 * Everything here runs on the main thread: main.c feeds MQTT events and
 * messages in and calls coord_tick() for the timers. One round is open at a
 * time:
 *
 *   WAIT_AGENTS --enough live--> COLLECT --close--> PAUSE --interval--> ...
 *                                   |  ^                  \--rounds done--> FINISHED
 *                          deadline |  | extend / restart
 *                                   \--/
 *
 * Round 0 is the statistics round (federated normalisation); it produces
 * model version 1. Training round R >= 1 is based on the current version and
 * produces version + 1. After each close the state is persisted before the
 * model is published, so a restart never goes back behind what agents saw. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "coord.h"
#include "fedvigil/scorer.h"
#include "fedvigil/fl.h"
#include "fedvigil/fleet.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/sign.h"
#include "fedvigil/svc.h"
#include "fedvigil/version.h"
#include "part.h"
#include "round.h"

#define STATE_FILE "coordinator.state"
/* A state file holds one model plus a small header. */
#define STATE_MAX_BYTES (FV_MAX_STATE_BYTES + 4096)
/* Agent state payloads are tiny JSON objects; larger ones are not parsed. */
#define AGENT_STATE_MAX 4096
/* Weights above this are clamped: one agent cannot claim 2^64 windows. */
#define WEIGHT_MAX (1ull << 40)
/* After a (re)connect the broker replays the retained agent states; wait
 * this long before selecting, so a round does not start with the first
 * agent that happened to arrive. */
#define SETTLE_MS 500

struct coord {
	const struct coord_config *cfg; /* borrowed */
	struct fv_mqtt *mqtt;           /* borrowed; NULL = publish nothing */
	char t_round[FV_TOPIC_MAX];     /* .../round */
	char t_model[FV_TOPIC_MAX];     /* .../model */
	char t_state[FV_TOPIC_MAX];     /* .../coord/state */
	char t_metrics[FV_TOPIC_MAX];   /* .../coord/metrics */
	char state_path[600];           /* <state_dir>/coordinator.state */

	char (*live)[FV_NAME_MAX];      /* live agents, sorted, COORD_MAX_AGENTS */
	uint32_t n_live;

	bool have_model;                /* model is valid */
	struct fv_global model;         /* current global model (owned) */
	struct fv_agg *agg;             /* aggregator for model (owned); NULL before v1 */
	float *new_params;              /* model.n_params scratch for the aggregate */
	double sample_rate;             /* selected / live of this round (DP's q) */

	enum coord_phase phase;
	uint64_t round;                 /* round being run (next to close) */
	enum fv_round_kind kind;        /* its kind */
	char (*sel)[FV_NAME_MAX];       /* selected agents, FV_MAX_SELECTED */
	uint32_t n_sel;
	uint32_t *sel_ord;              /* indices of sel sorted by name (lookups by
					 * binary search: thousands of updates per
					 * round must not cost O(n^2)) */
	uint8_t *got;                   /* got[i]: sel[i]'s update was accepted */
	struct fv_update *upd;          /* accepted updates (owned), cap_upd */
	uint32_t n_upd, cap_upd;
	uint32_t quorum_n;              /* answers that close at the deadline */
	uint32_t extensions;            /* deadline extensions used */
	int64_t start_mono;             /* first announcement of this round */
	int64_t deadline_mono;          /* current deadline, monotonic */
	int64_t deadline_wall;          /* the same, wall clock (announced) */
	int64_t pause_until;            /* COORD_PAUSE: next round starts then */
	bool wait_logged;               /* "waiting for agents" said once */
	bool connected;                 /* coord_on_connected() seen */
	int64_t settle_until;           /* no new selection before (monotonic) */
	uint64_t rejected[FV_REJ__MAX]; /* rejections since the last close */
	struct fv_ratelimit rl;         /* bounds rejection log lines */
	struct fv_agg_result agg_res;   /* what the last training close did */
	uint32_t n_excluded;            /* updates the rule left out of it */
	uint64_t epoch;                 /* (epoch, version) orders our models */
	bool signing;                   /* key below is loaded */
	struct fv_sign_key key;         /* signs models and announcements */
	/* Since start, for the Prometheus page (coord_info). */
	uint64_t rounds_closed, accepted_total, update_bytes_total;
	uint64_t late_valid_total;      /* late updates that passed validation */
	uint64_t rejected_total[FV_REJ__MAX];
	uint64_t bytes_in;              /* accepted update payload bytes, this round */
	size_t model_bytes;             /* size of the last published GlobalModel */

	/* participation (part.h) */
	struct part part;               /* records, response times, late updates */
	uint8_t *prio;                  /* enum round_prio per live agent (scratch) */
	int64_t deadline_len;           /* this round's deadline (and extension) */
	uint32_t excluded;              /* live agents not selected by priority */
	uint64_t late_dropped;          /* late updates dropped since the last close */
	uint32_t missed;                /* selected without update at the last close */
	uint32_t late_applied;          /* late updates in the last aggregation */
	uint64_t abandoned;             /* rounds abandoned since start */
	uint64_t persist_failures;      /* state writes failed in a row */
	uint64_t missed_total;          /* since start: selected without update */
	uint64_t late_applied_total;    /* since start: late updates aggregated */
	uint64_t late_dropped_total;    /* since start: late updates dropped */
};

/* ---- publishing ---- */

static void publish(struct coord *co, const char *topic, const void *buf, size_t len, int qos,
		    bool retain)
{
	int r;

	/* While disconnected nothing is sent: coord_on_connected()
	 * republishes every retained topic, and metrics are QoS 0 anyway. */
	if (!co->mqtt || !fv_mqtt_connected(co->mqtt)) {
		fv_log(FV_LOG_DEBUG, "not connected: %s (%zu bytes) not published", topic, len);
		return;
	}
	r = fv_mqtt_publish(co->mqtt, topic, buf, len, qos, retain);
	if (r < 0)
		fv_log(FV_LOG_WARNING, "publish to %s (%zu bytes) failed: %s", topic, len,
		       fv_strerror(r));
}

static void publish_json(struct coord *co, const char *topic, cJSON *obj, int qos, bool retain)
{
	char *text = cJSON_PrintUnformatted(obj);

	if (!text) {
		fv_log(FV_LOG_ERR, "out of memory formatting JSON for %s", topic);
		return;
	}
	publish(co, topic, text, strlen(text), qos, retain);
	cJSON_free(text);
}

static void publish_birth(struct coord *co)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return;
	cJSON_AddStringToObject(o, "state", "online");
	cJSON_AddStringToObject(o, "id", co->cfg->id);
	cJSON_AddStringToObject(o, "fleet", co->cfg->fleet);
	cJSON_AddStringToObject(o, "version", FV_VERSION);
	publish_json(co, co->t_state, o, 1, true);
	cJSON_Delete(o);
}

const char *coord_offline_payload(void)
{
	return "{\"state\":\"offline\"}";
}

void coord_publish_offline(struct coord *co)
{
	const char *p = coord_offline_payload();

	publish(co, co->t_state, p, strlen(p), 1, true);
}

static void fill_hdr(const struct coord *co, struct fv_hdr *h, uint64_t round, uint64_t base)
{
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, co->cfg->fleet, sizeof(h->fleet));
	fv_strlcpy(h->sender, co->cfg->id, sizeof(h->sender));
	h->round = round;
	h->base_version = base;
	h->ts_ms = fv_now_wall_ms();
}

static uint64_t base_version(const struct coord *co)
{
	return co->kind == FV_ROUND_STATS || !co->have_model ? 0 : co->model.version;
}

static void publish_model(struct coord *co)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if (!co->have_model)
		return;
	r = fv_global_encode(&co->model, &buf, &len);
	if (r == 0 && co->signing && (r = fv_msg_sign(FV_MSG_GLOBAL, &buf, &len, &co->key)) < 0)
		free(buf);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot encode model version %" PRIu64 ": %s",
		       co->model.version, fv_strerror(r));
		return;
	}
	publish(co, co->t_model, buf, len, 1, true);
	co->model_bytes = len;
	free(buf);
}

static void publish_announce(struct coord *co)
{
	struct fv_announce a;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	memset(&a, 0, sizeof(a));
	fill_hdr(co, &a.h, co->round, base_version(co));
	a.kind = co->kind;
	a.hp.epochs = (uint32_t)co->cfg->epochs;
	a.hp.batch = (uint32_t)co->cfg->batch;
	a.hp.lr = (float)co->cfg->lr;
	a.hp.seed = (uint64_t)co->cfg->seed ^ co->round;
	a.hp.min_windows = (uint32_t)co->cfg->min_samples;
	a.hp.optim = (enum fv_optim)co->cfg->optimizer;
	a.hp.momentum = (float)co->cfg->momentum;
	a.hp.weight_decay = (float)co->cfg->weight_decay;
	a.hp.prox_mu = (float)co->cfg->prox_mu;
	a.dp_epsilon = co->have_model ? co->model.dp_epsilon : 0.0f;
	a.deadline_ms = co->deadline_wall;
	a.epoch = co->epoch;
	a.n_selected = co->n_sel;
	a.selected = co->sel; /* borrowed: not cleared below */
	a.comp = co->cfg->comp;
	r = fv_announce_encode(&a, &buf, &len);
	if (r == 0 && co->signing && (r = fv_msg_sign(FV_MSG_ANNOUNCE, &buf, &len, &co->key)) < 0)
		free(buf);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot encode the announcement of round %" PRIu64 ": %s",
		       co->round, fv_strerror(r));
		return;
	}
	publish(co, co->t_round, buf, len, 1, true);
	free(buf);
}

/* An empty retained payload deletes the retained announcement: no round is
 * open (waiting for agents, or finished). */
static void clear_announce(struct coord *co)
{
	publish(co, co->t_round, "", 0, 1, true);
}

/* ---- crash points (tests only) ----
 * FV_TEST_CRASH=POINT@ROUND makes the coordinator SIGKILL itself at one
 * point of round ROUND, so that integration tests can kill it exactly there
 * (tests/integration/test_crash.sh): "announced" (0 updates in), "acceptedN"
 * (after the Nth accepted update), "aggregated" (the new model computed in
 * memory, nothing written), "writing" (half of the new state file written,
 * as a power cut would leave it), "persisted" (state renamed into place,
 * model not yet published). Not a configuration key: never set it outside
 * tests. */
static bool crash_at(const char *point, uint64_t round)
{
	const char *want = getenv("FV_TEST_CRASH");
	char here[64];

	if (!want)
		return false;
	snprintf(here, sizeof(here), "%s@%" PRIu64, point, round);
	return strcmp(want, here) == 0;
}

static void crash_now(const char *point, uint64_t round)
{
	fv_log(FV_LOG_WARNING, "FV_TEST_CRASH: killing myself at %s@%" PRIu64, point, round);
	raise(SIGKILL);
}

/* "writing": what fv_file_write_atomic() leaves when the power goes in its
 * write(): the first half of buf in <path>.new, the old file untouched. */
static void crash_mid_write(const char *path, const uint8_t *buf, size_t len, uint64_t round)
{
	char tmp[640];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, buf, len / 2) < 0)
			fv_log(FV_LOG_WARNING, "FV_TEST_CRASH: %s: %s", tmp, strerror(errno));
		fsync(fd);
		close(fd);
	}
	crash_now("writing", round);
}

/* ---- state file ---- */

static int persist(struct coord *co)
{
	struct fv_coord_state st;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	memset(&st, 0, sizeof(st));
	st.round = co->round;
	st.kind = co->kind;
	st.epoch = co->epoch;
	st.have_model = co->have_model;
	if (co->have_model)
		st.model = co->model; /* shallow: encode only reads it */
	if (co->agg) {
		st.have_agg = true;
		fv_agg_state_view(co->agg, &st.agg); /* borrowed too */
	}
	r = fv_state_encode(&st, &buf, &len);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot encode the coordinator state: %s", fv_strerror(r));
		return r;
	}
	if (st.round > 0 && crash_at("writing", st.round - 1))
		crash_mid_write(co->state_path, buf, len, st.round - 1);
	r = fv_mkdir_p(co->cfg->state_dir, 0750);
	if (r == 0)
		r = fv_file_write_atomic(co->state_path, buf, len);
	free(buf);
	/* A full disk fails every write until space is freed: said once, and
	 * once more when a write succeeds again. The old file stays intact
	 * (writes go to .new first). */
	if (r < 0 && co->persist_failures++ == 0)
		fv_log(FV_LOG_ERR, "cannot write %s: %s (the last good state is kept; the fleet "
		       "goes on; further failures not reported until a write succeeds)",
		       co->state_path, fv_strerror(r));
	else if (r < 0)
		fv_log(FV_LOG_DEBUG, "cannot write %s: %s (%" PRIu64 " failures in a row)",
		       co->state_path, fv_strerror(r), co->persist_failures);
	if (r == 0 && co->persist_failures) {
		fv_log(FV_LOG_NOTICE, "%s written again after %" PRIu64 " failed writes",
		       co->state_path, co->persist_failures);
		co->persist_failures = 0;
	}
	return r;
}

/* A fresh aggregator (and its output scratch) for n_params parameters,
 * replacing the old one only on success. 0 or -errno, logged. */
static int make_agg(struct coord *co, size_t n_params)
{
	struct fv_agg *a = fv_agg_new(&co->cfg->agg, n_params, FV_MAX_SELECTED);
	float *p = malloc(n_params * sizeof(float));
	int r = -errno;

	if (!a || !p) {
		if (!a)
			fv_log(FV_LOG_ERR, "cannot create the %s aggregator: %s",
			       fv_agg_algo_name(co->cfg->agg.algo), fv_strerror(r));
		else
			fv_log(FV_LOG_ERR, "out of memory for the aggregator");
		fv_agg_free(a);
		free(p);
		return a ? -ENOMEM : r;
	}
	fv_agg_free(co->agg);
	free(co->new_params);
	co->agg = a;
	co->new_params = p;
	return 0;
}

/* A new epoch for a coordinator that starts over: its wall clock in ms,
 * and more than the epoch of an old state file (--reset keeps the file
 * until the first close), so that agents order our models after the old
 * ones even when the clock is behind. */
static uint64_t new_epoch(const struct coord *co)
{
	uint64_t e = (uint64_t)FV_MAX(fv_now_wall_ms(), (int64_t)1);
	struct fv_coord_state st;
	void *buf = NULL;
	size_t len = 0;

	if (fv_file_read(co->state_path, STATE_MAX_BYTES, &buf, &len) == 0) {
		memset(&st, 0, sizeof(st));
		if (fv_state_decode(buf, len, &st) == 0) {
			if (st.epoch >= e)
				e = st.epoch + 1;
			fv_state_clear(&st);
		}
		free(buf);
	}
	return e;
}

/* Load the state file into co. 1 when loaded, 0 when there is none, or
 * -errno with the reason logged. */
static int load_state(struct coord *co)
{
	const struct coord_config *cfg = co->cfg;
	struct fv_coord_state st;
	void *buf = NULL;
	size_t len = 0;
	int r;

	r = fv_file_read(co->state_path, STATE_MAX_BYTES, &buf, &len);
	if (r == -ENOENT) {
		fv_log(FV_LOG_INFO, "no state file %s: starting with the statistics round",
		       co->state_path);
		return 0;
	}
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot read state file %s: %s", co->state_path,
		       fv_strerror(r));
		return r;
	}
	memset(&st, 0, sizeof(st));
	r = fv_state_decode(buf, len, &st);
	free(buf);
	if (r < 0) {
		fv_log(FV_LOG_ERR,
		       "state file %s is corrupt: %s; refusing to start (move it away, or "
		       "run with --reset to start over from the statistics round)",
		       co->state_path, fv_strerror(r));
		return r;
	}
	r = -EINVAL;
	if (st.kind != FV_ROUND_STATS && st.kind != FV_ROUND_TRAIN) {
		fv_log(FV_LOG_ERR, "state file %s: unknown round kind %d", co->state_path,
		       (int)st.kind);
		goto fail;
	}
	if (st.kind == FV_ROUND_TRAIN && !st.have_model) {
		fv_log(FV_LOG_ERR, "state file %s: training round %" PRIu64 " without a model",
		       co->state_path, st.round);
		goto fail;
	}
	if (st.have_model) {
		const struct fv_global *m = &st.model;

		if (strcmp(m->h.fleet, cfg->fleet) != 0) {
			fv_log(FV_LOG_ERR,
			       "state file %s belongs to fleet '%s' but coordinator.fleet = '%s'",
			       co->state_path, m->h.fleet, cfg->fleet);
			goto fail;
		}
		if (m->window != (uint32_t)cfg->window) {
			fv_log(FV_LOG_ERR,
			       "state file %s: the model has window = %u but [model] window = %lld "
			       "(restore the config, or --reset to train a new model)",
			       co->state_path, m->window, cfg->window);
			goto fail;
		}
		if (m->n_channels != (uint32_t)cfg->channels) {
			fv_log(FV_LOG_ERR,
			       "state file %s: the model has channels = %u but [model] channels = "
			       "%lld (restore the config, or --reset to train a new model)",
			       co->state_path, m->n_channels, cfg->channels);
			goto fail;
		}
		if (m->features != (enum fv_feat)cfg->features) {
			fv_log(FV_LOG_ERR,
			       "state file %s: the model has features = %s but [model] features = %s "
			       "(restore the config, or --reset to train a new model)",
			       co->state_path, fv_feat_name(m->features),
			       fv_feat_name((enum fv_feat)cfg->features));
			goto fail;
		}
		if (memcmp(&m->spec, &cfg->spec, sizeof(m->spec)) != 0)
			fv_log(FV_LOG_WARNING,
			       "the persisted model's layers differ from [model] (preset, hidden, "
			       "activation, dropout, noise); "
			       "keeping the persisted model (--reset to build a new one)");
		co->model = st.model;
		memset(&st.model, 0, sizeof(st.model)); /* ownership moved */
		co->have_model = true;
	}
	if (co->have_model) {
		r = make_agg(co, co->model.n_params);
		if (r < 0)
			goto fail;
		if (st.have_agg) {
			r = fv_agg_set_state(co->agg, &st.agg);
			if (r < 0) {
				fv_log(FV_LOG_ERR,
				       "state file %s: aggregator state unusable (%s); refusing to "
				       "start, since the privacy spent would be lost (--reset to "
				       "start over)",
				       co->state_path, fv_strerror(r));
				goto fail;
			}
			if (r == 1)
				fv_log(FV_LOG_NOTICE,
				       "state file %s: server-optimizer state of '%s' dropped: "
				       "aggregation.algorithm is now '%s'",
				       co->state_path,
				       fv_agg_algo_name((enum fv_agg_algo)st.agg.algo),
				       fv_agg_algo_name(cfg->agg.algo));
		}
	}
	co->round = st.round;
	co->kind = st.kind;
	/* Files from before epochs: 0, like the models agents got from them. */
	co->epoch = st.epoch;
	fv_state_clear(&st);
	fv_log(FV_LOG_NOTICE, "resuming %s round %" PRIu64 " (model version %" PRIu64 ") from %s",
	       co->kind == FV_ROUND_STATS ? "statistics" : "training", co->round,
	       co->have_model ? co->model.version : 0, co->state_path);
	return 1;
fail:
	fv_state_clear(&st);
	return r;
}

/* ---- live agents ---- */

static void agent_set(struct coord *co, const char *name, bool online, int64_t now)
{
	uint32_t lo = 0, hi = co->n_live;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(co->live[mid], name);

		if (c == 0) {
			lo = mid;
			break;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < co->n_live && strcmp(co->live[lo], name) == 0) {
		if (online)
			return;
		memmove(co->live[lo], co->live[lo + 1],
			(size_t)(co->n_live - lo - 1) * FV_NAME_MAX);
		co->n_live--;
		fv_log(FV_LOG_INFO, "agent %s offline (%u live)", name, co->n_live);
		return;
	}
	if (!online)
		return;
	if (co->n_live >= COORD_MAX_AGENTS) {
		uint64_t sup = 0;

		if (fv_ratelimit_ok(&co->rl, &sup))
			fv_log(FV_LOG_WARNING, "agent %s ignored: already %u live agents (max)",
			       name, co->n_live);
		return;
	}
	memmove(co->live[lo + 1], co->live[lo], (size_t)(co->n_live - lo) * FV_NAME_MAX);
	fv_strlcpy(co->live[lo], name, FV_NAME_MAX);
	co->n_live++;
	/* After a (re)connect the broker replays every retained birth: those
	 * agents were there before, not newcomers to an open round. */
	part_online(&co->part, name, now < co->settle_until ? INT64_MIN : now);
	if (co->phase == COORD_COLLECT)
		fv_log(FV_LOG_INFO, "agent %s online (%u live); selectable from round %" PRIu64,
		       name, co->n_live, co->round + 1);
	else
		fv_log(FV_LOG_INFO, "agent %s online (%u live)", name, co->n_live);
}

/* Retained JSON birth {"state":"online",...}; the LWT or a clean exit says
 * {"state":"offline"}; an empty retained payload means the agent is gone.
 * Anything unparseable counts as not live. */
static bool state_is_online(const void *payload, size_t len)
{
	const cJSON *st;
	cJSON *o;
	bool on;

	if (len == 0 || len > AGENT_STATE_MAX)
		return false;
	o = cJSON_ParseWithLength(payload, len);
	if (!o)
		return false;
	st = cJSON_GetObjectItemCaseSensitive(o, "state");
	on = cJSON_IsString(st) && strcmp(st->valuestring, "online") == 0;
	cJSON_Delete(o);
	return on;
}

/* ---- rounds ---- */

static void clear_updates(struct coord *co)
{
	for (uint32_t i = 0; i < co->n_upd; i++)
		fv_update_clear(&co->upd[i]);
	co->n_upd = 0;
}

static const char *kind_name(enum fv_round_kind k)
{
	return k == FV_ROUND_STATS ? "stats" : "train";
}

static int cmp_sel(const void *a, const void *b, void *user)
{
	const struct coord *co = user;

	return strcmp(co->sel[*(const uint32_t *)a], co->sel[*(const uint32_t *)b]);
}

/* sel's position of agent, or -1 when it is not selected. */
static int sel_find(const struct coord *co, const char *agent)
{
	uint32_t lo = 0, hi = co->n_sel;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(co->sel[co->sel_ord[mid]], agent);

		if (c == 0)
			return (int)co->sel_ord[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* After a selection: sel_ord sorted, got[] from the accepted updates. */
static void index_selection(struct coord *co)
{
	for (uint32_t i = 0; i < co->n_sel; i++)
		co->sel_ord[i] = i;
	qsort_r(co->sel_ord, co->n_sel, sizeof(*co->sel_ord), cmp_sel, co);
	memset(co->got, 0, co->n_sel);
	for (uint32_t i = 0; i < co->n_upd; i++) {
		int k = sel_find(co, co->upd[i].h.sender);

		if (k >= 0)
			co->got[k] = 1;
	}
}

/* Select (keeping agents that already answered) and announce. -ENODATA
 * when nobody could be selected (nothing announced), -ENOMEM. */
static int select_and_announce(struct coord *co, int64_t now)
{
	char (*keep)[FV_NAME_MAX] = NULL;
	char list[256];
	size_t off = 0;
	int n;

	if (co->n_upd) {
		keep = malloc((size_t)co->n_upd * FV_NAME_MAX);
		if (!keep)
			return -ENOMEM;
		for (uint32_t i = 0; i < co->n_upd; i++)
			memcpy(keep[i], co->upd[i].h.sender, FV_NAME_MAX);
	}
	/* Stragglers of recent rounds are demoted; an extension does not add
	 * agents that came online after the round was first announced (they
	 * are selected from the next round on). */
	co->excluded = part_prio(&co->part, (const char (*)[FV_NAME_MAX])co->live, co->n_live,
				 co->round, (uint32_t)co->cfg->exclude_missed, co->extensions > 0,
				 co->start_mono, co->prio);
	n = round_select((const char (*)[FV_NAME_MAX])co->live, co->n_live, co->prio,
			 (const char (*)[FV_NAME_MAX])keep, co->n_upd,
			 (uint32_t)co->cfg->min_agents, co->cfg->fraction,
			 (uint64_t)co->cfg->seed, co->round, co->sel);
	free(keep);
	if (n < 0)
		return n;
	/* An empty list would mean "every live agent" on the wire. */
	if (n == 0)
		return -ENODATA;
	co->n_sel = (uint32_t)n;
	index_selection(co);
	/* The DP accountant's sampling rate: the largest share of live agents
	 * any announcement of this round selected. */
	co->sample_rate = FV_MAX(co->sample_rate, co->n_live ? FV_MIN(1.0, (double)n / co->n_live)
							     : 1.0);
	if (co->cap_upd < co->n_sel) {
		struct fv_update *u = realloc(co->upd, sizeof(*u) * co->n_sel);

		if (!u)
			return -ENOMEM;
		co->upd = u;
		co->cap_upd = co->n_sel;
	}
	co->quorum_n = round_quorum(co->n_sel, co->cfg->quorum);
	/* The deadline is set at the first announcement and reused for each
	 * extension. */
	if (co->extensions == 0)
		co->deadline_len = part_deadline(&co->part, co->cfg->deadline_k,
						 co->cfg->deadline_min_ms, co->cfg->deadline_ms);
	co->deadline_mono = now + co->deadline_len;
	co->deadline_wall = fv_now_wall_ms() + co->deadline_len;
	co->phase = COORD_COLLECT;
	publish_announce(co);
	if (crash_at("announced", co->round))
		crash_now("announced", co->round);

	list[0] = '\0';
	for (uint32_t i = 0; i < co->n_sel && off < sizeof(list) - 1; i++) {
		int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? "," : "",
				 co->sel[i]);

		if (w < 0 || (size_t)w >= sizeof(list) - off) {
			snprintf(list + (sizeof(list) > 4 ? sizeof(list) - 4 : 0), 4, "...");
			break;
		}
		off += (size_t)w;
	}
	fv_log(FV_LOG_INFO,
	       "round %" PRIu64 " (%s, base version %" PRIu64 ") announced: %u of %u live "
	       "agents selected [%s], %u left out, quorum %u, deadline in %" PRId64 " ms",
	       co->round, kind_name(co->kind), base_version(co), co->n_sel, co->n_live, list,
	       co->excluded, co->quorum_n, co->deadline_len);
	return 0;
}

/* Training rounds done (round.rounds) counts rounds that produced a model,
 * not round numbers: an abandoned round uses a number but trains nothing.
 * Version 1 comes from the statistics round; each training close adds 1. */
static bool rounds_done(const struct coord *co)
{
	uint64_t trained = co->have_model && co->model.version > 0 ? co->model.version - 1 : 0;

	return co->kind == FV_ROUND_TRAIN && co->cfg->rounds > 0 &&
	       trained >= (uint64_t)co->cfg->rounds;
}

static void finish(struct coord *co)
{
	co->phase = COORD_FINISHED;
	fv_log(FV_LOG_NOTICE, "training finished after %lld rounds", co->cfg->rounds);
	clear_announce(co);
}

/* Start co->round from selection (a fresh round, or a restart). */
static void start_round(struct coord *co, int64_t now)
{
	uint32_t need;
	int r;

	if (rounds_done(co)) {
		finish(co);
		return;
	}
	clear_updates(co);
	co->bytes_in = 0;
	co->n_sel = 0;
	co->extensions = 0;
	co->sample_rate = 0.0;
	/* The statistics round waits for min_agents; later rounds run with
	 * whoever is live (the selection is capped at the live count). */
	need = co->kind == FV_ROUND_STATS ? (uint32_t)co->cfg->min_agents : 1;
	if (!co->connected || now < co->settle_until) {
		co->phase = COORD_WAIT_AGENTS;
		return;
	}
	if (co->n_live < need) {
		if (!co->wait_logged)
			fv_log(FV_LOG_NOTICE,
			       "round %" PRIu64 ": waiting for %u live agent(s), %u live",
			       co->round, need, co->n_live);
		co->wait_logged = true;
		if (co->phase != COORD_WAIT_AGENTS)
			clear_announce(co);
		co->phase = COORD_WAIT_AGENTS;
		return;
	}
	co->wait_logged = false;
	co->start_mono = now;
	r = select_and_announce(co, now);
	if (r < 0) {
		/* Only -ENOMEM gets here; try again on the next tick. */
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": selection failed: %s", co->round,
		       fv_strerror(r));
		co->phase = COORD_PAUSE;
		co->pause_until = now + 1000;
	}
}

/* Agent name, then round: a late update and an on-time one of the same
 * agent keep one order whatever their arrival. */
static int cmp_update(const void *a, const void *b)
{
	const struct fv_update *x = a, *y = b;
	int c = strcmp(x->h.sender, y->h.sender);

	if (c)
		return c;
	return x->h.round < y->h.round ? -1 : x->h.round > y->h.round;
}

/* Statistics round: merged per-channel stats -> normalisation, plus the
 * initial model (version 1, no threshold yet). */
static int close_stats(struct coord *co)
{
	const struct coord_config *cfg = co->cfg;
	uint32_t C = (uint32_t)cfg->channels;
	struct fv_chstats *merged;
	struct fv_global g;
	struct fv_model *m = NULL;
	uint32_t bad = 0;
	int r = -ENOMEM;

	memset(&g, 0, sizeof(g));
	merged = calloc(C, sizeof(*merged));
	g.mean = calloc(C, sizeof(float));
	g.std = calloc(C, sizeof(float));
	if (!merged || !g.mean || !g.std)
		goto fail;
	for (uint32_t c = 0; c < C; c++)
		fv_chstats_init(&merged[c]);
	for (uint32_t i = 0; i < co->n_upd; i++)
		for (uint32_t c = 0; c < C; c++)
			fv_chstats_merge(&merged[c], &co->upd[i].stats[c]);
	r = fv_fleet_norm(merged, C, g.mean, g.std, &bad);
	if (r < 0) {
		fv_log(FV_LOG_WARNING, "statistics round: channel %u: %s (no agent reported readings)",
		       bad, fv_strerror(r));
		goto fail;
	}
	m = fv_model_new_scorer(&cfg->spec, 1);
	if (!m) {
		r = -ENOMEM;
		goto fail;
	}
	fv_model_init(m, (uint64_t)cfg->seed);
	g.n_params = fv_model_nparams(m);
	g.params = malloc(sizeof(float) * g.n_params);
	if (!g.params) {
		r = -ENOMEM;
		goto fail;
	}
	memcpy(g.params, fv_model_params(m), sizeof(float) * g.n_params);
	fill_hdr(co, &g.h, co->round, 0);
	g.version = 1;
	g.epoch = co->epoch;
	g.spec = cfg->spec;
	g.window = (uint32_t)cfg->window;
	g.stride = (uint32_t)cfg->stride;
	g.n_channels = C;
	g.threshold = 0.0f;
	g.percentile = (float)cfg->percentile;
	g.loss = 0.0f;
	g.n_agents = co->n_upd;
	fv_strlcpy(g.aggregation, fv_agg_algo_name(cfg->agg.algo), sizeof(g.aggregation));
	g.dp_delta = cfg->agg.dp ? cfg->agg.dp_delta : 0.0;
	r = make_agg(co, g.n_params);
	if (r < 0)
		goto fail;
	g.features = (enum fv_feat)cfg->features;
	g.calibrate = cfg->calibrate;
	g.smooth = (float)cfg->smooth;
	g.rule = cfg->rule;

	fv_global_clear(&co->model);
	co->model = g;
	co->have_model = true;
	fv_model_free(m);
	free(merged);
	return 0;
fail:
	fv_model_free(m);
	fv_global_clear(&g);
	free(merged);
	return r;
}

/* Names of the updates the rule left out (Krum), comma-separated into buf. */
static uint32_t excluded_list(const struct coord *co, const bool *used, char *buf, size_t len)
{
	size_t off = 0;
	uint32_t n = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < co->n_upd; i++) {
		if (used[i])
			continue;
		if (off < len) {
			int w = snprintf(buf + off, len - off, "%s%s", n ? "," : "",
					 co->upd[i].h.sender);

			off = w < 0 ? len : off + (size_t)w;
			if (off >= len && len > 4)
				snprintf(buf + len - 4, 4, "...");
		}
		n++;
	}
	return n;
}

/* Training round: the configured aggregation of the deltas (fl.h), merged
 * histograms -> threshold. */
static int close_train(struct coord *co)
{
	const struct coord_config *cfg = co->cfg;
	struct fv_global *g = &co->model;
	struct fv_agg_update *up = NULL;
	struct fv_agg_result res;
	bool *used = NULL;
	double loss = 0.0, wsum = 0.0;
	uint32_t k = co->n_upd;
	char excl[256];
	float *old;
	int r = -ENOMEM;

	up = malloc(sizeof(*up) * k);
	used = malloc(sizeof(*used) * k);
	if (!up || !used)
		goto out;
	for (uint32_t i = 0; i < k; i++) {
		const struct fv_update *u = &co->upd[i];

		up[i].name = u->h.sender;
		up[i].delta = u->delta;
		up[i].n_samples = FV_MIN(u->n_samples, WEIGHT_MAX);
		up[i].have_norm = u->have_norm;
		up[i].norm = u->norm;
		loss += (double)up[i].n_samples * u->loss;
		wsum += (double)up[i].n_samples;
	}
	r = fv_agg_round(co->agg, g->params, up, k, co->sample_rate, co->round, co->new_params,
			 used, &res);
	if (r < 0) {
		fv_log(FV_LOG_WARNING, "round %" PRIu64 ": aggregation (%s) failed: %s%s",
		       co->round, fv_agg_algo_name(cfg->agg.algo), fv_strerror(r),
		       r == -ERANGE ? " (a non-finite result); discarding the round" : "");
		goto out;
	}
	/* The scoring rules follow the config (a restart may have changed
	 * them); the merged histograms give the threshold and the fleet's
	 * per-column errors. */
	g->calibrate = cfg->calibrate;
	g->smooth = (float)cfg->smooth;
	r = fv_detect_close_round(g, co->upd, k, &cfg->rule);
	if (r < 0)
		goto out;
	/* The new parameters replace the old; the old array becomes the
	 * scratch of the next round (no allocation per round). */
	old = g->params;
	g->params = co->new_params;
	co->new_params = old;
	co->agg_res = res;
	co->n_excluded = excluded_list(co, used, excl, sizeof(excl));
	if (co->n_excluded)
		fv_log(FV_LOG_INFO, "round %" PRIu64 ": %s left out %u of %u updates: %s",
		       co->round, fv_agg_algo_name(cfg->agg.algo), co->n_excluded, k, excl);
	if (!res.robust_ok)
		fv_log(FV_LOG_WARNING,
		       "round %" PRIu64 ": %s got %u updates, fewer than its assumption needs "
		       "(%s); aggregated anyway, without the robustness guarantee",
		       co->round, fv_agg_algo_name(cfg->agg.algo), k,
		       cfg->agg.algo == FV_AGG_MEDIAN	     ? "at least 3"
		       : cfg->agg.algo == FV_AGG_TRIMMED_MEAN ? "trim_beta * updates >= 1"
							      : "2 * krum_f + 3");
	g->percentile = (float)cfg->percentile;
	g->loss = wsum > 0 ? (float)(loss / wsum) : 0.0f;
	fill_hdr(co, &g->h, co->round, g->version);
	g->version++;
	g->n_agents = k;
	fv_strlcpy(g->aggregation, fv_agg_algo_name(cfg->agg.algo), sizeof(g->aggregation));
	/* Privacy spent stays spent, also once dp is switched off. */
	if (res.dp_epsilon > 0.0) {
		g->dp_epsilon = (float)FV_MIN(res.dp_epsilon, (double)FLT_MAX);
		g->dp_delta = cfg->agg.dp ? cfg->agg.dp_delta : g->dp_delta;
	}
	r = 0;
out:
	free(up);
	free(used);
	return r;
}

/* A float as the shortest double of its 6 significant digits, so JSON shows
 * 0.314212 rather than 0.31421160697937012. */
static double json_float(float x)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%.6g", (double)x);
	return strtod(buf, NULL);
}

static void publish_metrics(struct coord *co, uint64_t round, enum fv_round_kind kind,
			    int64_t duration, const char *result)
{
	cJSON *o = cJSON_CreateObject(), *rej;
	struct fv_proc_usage pu;

	if (!o)
		return;
	cJSON_AddStringToObject(o, "fleet", co->cfg->fleet);
	cJSON_AddNumberToObject(o, "round", (double)round);
	cJSON_AddStringToObject(o, "kind", kind_name(kind));
	cJSON_AddNumberToObject(o, "version", (double)co->model.version);
	cJSON_AddNumberToObject(o, "agents", co->n_upd);
	cJSON_AddNumberToObject(o, "selected", co->n_sel);
	cJSON_AddNumberToObject(o, "loss", json_float(co->model.loss));
	cJSON_AddNumberToObject(o, "threshold", json_float(co->model.threshold));
	if (kind == FV_ROUND_TRAIN) {
		const struct fv_agg_result *res = &co->agg_res;
		cJSON *ag = cJSON_AddObjectToObject(o, "aggregation"), *dp;

		if (ag) {
			cJSON_AddStringToObject(ag, "algorithm",
						fv_agg_algo_name(co->cfg->agg.algo));
			cJSON_AddNumberToObject(ag, "used", res->n_used);
			cJSON_AddNumberToObject(ag, "excluded", co->n_excluded);
			cJSON_AddNumberToObject(ag, "trimmed", res->n_trimmed);
			cJSON_AddNumberToObject(ag, "clipped", res->n_clipped);
			cJSON_AddNumberToObject(ag, "capped", res->n_capped);
			cJSON_AddBoolToObject(ag, "robust_ok", res->robust_ok);
			cJSON_AddNumberToObject(ag, "step_norm", json_float((float)res->step_norm));
			cJSON_AddNumberToObject(ag, "steps", (double)res->steps);
		}
		if (co->cfg->agg.dp || co->model.dp_epsilon > 0.0f) {
			dp = cJSON_AddObjectToObject(o, "dp");
			if (dp) {
				cJSON_AddBoolToObject(dp, "enabled", co->cfg->agg.dp);
				cJSON_AddNumberToObject(dp, "epsilon",
							json_float(co->model.dp_epsilon));
				cJSON_AddNumberToObject(dp, "delta", co->model.dp_delta);
				cJSON_AddNumberToObject(dp, "order", res->dp_order);
				cJSON_AddNumberToObject(dp, "noise", co->cfg->agg.dp_noise);
				cJSON_AddNumberToObject(dp, "clip_norm", co->cfg->agg.clip_norm);
				cJSON_AddNumberToObject(dp, "sample_rate",
							json_float((float)co->sample_rate));
			}
		}
	}
	rej = cJSON_AddObjectToObject(o, "rejected");
	for (int i = 0; rej && i < FV_REJ__MAX; i++)
		cJSON_AddNumberToObject(rej, fv_reject_name((enum fv_reject)i),
					(double)co->rejected[i]);
	cJSON_AddNumberToObject(o, "duration_ms", (double)duration);
	fv_proc_usage(&pu);
	cJSON_AddNumberToObject(o, "rss_bytes", (double)pu.rss_bytes);
	cJSON_AddNumberToObject(o, "cpu_seconds", (double)(int64_t)(pu.cpu_seconds * 1000) / 1000);
	/* Bandwidth: accepted update payloads of the round, and the model
	 * published after it. */
	cJSON_AddStringToObject(o, "encoding",
				kind == FV_ROUND_STATS ? "none" : fv_enc_name(co->cfg->comp.enc));
	cJSON_AddNumberToObject(o, "update_bytes", (double)co->bytes_in);
	cJSON_AddNumberToObject(o, "model_bytes", (double)co->model_bytes);
	/* Participation: the round's outcome, deadline and quorum, who did not
	 * answer in time, late updates aggregated now or dropped since the
	 * last close, and messages our own MQTT queue had to drop. */
	cJSON_AddStringToObject(o, "result", result);
	cJSON_AddNumberToObject(o, "deadline_ms", (double)co->deadline_len);
	cJSON_AddNumberToObject(o, "quorum", co->quorum_n);
	cJSON_AddNumberToObject(o, "left_out", co->excluded);
	cJSON_AddNumberToObject(o, "missed", co->missed);
	cJSON_AddNumberToObject(o, "late_applied", co->late_applied);
	cJSON_AddNumberToObject(o, "late_dropped", (double)co->late_dropped);
	if (co->mqtt) {
		struct fv_mqtt_stats ms;

		fv_mqtt_get_stats(co->mqtt, &ms);
		cJSON_AddNumberToObject(o, "mqtt_dropped", (double)(ms.dropped_full + ms.dropped_big));
	}
	publish_json(co, co->t_metrics, o, 0, false);
	cJSON_Delete(o);
}

/* The selected agents that did not answer round `r` by now: remembered
 * (exclusion, late updates), counted in co->missed and logged. Call before
 * the close changes the model version. */
static void note_missing(struct coord *co, uint64_t r, enum fv_round_kind kind)
{
	char list[256];
	size_t off = 0;
	int n;

	n = part_missed(&co->part, r, base_version(co), kind, co->start_mono,
			(const char (*)[FV_NAME_MAX])co->sel, co->n_sel, co->upd, co->n_upd);
	if (n < 0) {
		fv_log(FV_LOG_ERR, "round %" PRIu64 ": out of memory noting missing agents", r);
		n = 0;
	}
	co->missed = (uint32_t)n;
	co->missed_total += (uint32_t)n;
	if (n == 0)
		return;
	list[0] = '\0';
	for (uint32_t i = 0; i < co->n_sel && off < sizeof(list) - 8; i++) {
		int w;

		if (co->got[i])
			continue;
		w = snprintf(list + off, sizeof(list) - off, "%s%s", off ? "," : "", co->sel[i]);
		if (w < 0 || (size_t)w >= sizeof(list) - off) {
			snprintf(list + sizeof(list) - 4, 4, "...");
			break;
		}
		off += (size_t)w;
	}
	fv_log(FV_LOG_NOTICE,
	       "round %" PRIu64 ": no update from %d of %u selected agents in time [%s]%s", r, n,
	       co->n_sel, list,
	       co->cfg->exclude_missed ? "; they sit out the next rounds (round.exclude_missed)"
				       : "");
}

static void close_round(struct coord *co, int64_t now)
{
	uint64_t closed = co->round;
	enum fv_round_kind kind = co->kind;
	int r;

	note_missing(co, closed, kind);
	co->late_applied = 0;
	if (kind == FV_ROUND_TRAIN && co->part.n_late) {
		uint32_t applied = 0, dropped = 0;

		if (part_release(&co->part, co->model.version, (uint32_t)co->cfg->staleness_max,
				 co->cfg->staleness_exponent, &co->upd, &co->n_upd, &co->cap_upd,
				 &applied, &dropped) < 0)
			fv_log(FV_LOG_ERR, "round %" PRIu64 ": out of memory for late updates; "
			       "they wait for the next close", closed);
		co->late_applied = applied;
		co->late_dropped += dropped;
		co->late_applied_total += applied;
		co->late_dropped_total += dropped;
	}
	qsort(co->upd, co->n_upd, sizeof(*co->upd), cmp_update);
	r = kind == FV_ROUND_STATS ? close_stats(co) : close_train(co);
	if (r < 0) {
		fv_log(FV_LOG_WARNING, "round %" PRIu64 " could not be closed (%s); restarting it",
		       closed, fv_strerror(r));
		start_round(co, now);
		return;
	}
	co->round = closed + 1;
	co->kind = FV_ROUND_TRAIN;
	co->rounds_closed++;
	/* An fp16 model is rounded here, so that the coordinator aggregates on
	 * exactly the values the agents receive. */
	if (co->cfg->comp_model == 1) {
		fv_fp16_round(co->model.params, co->model.n_params);
		co->model.params_enc = FV_ENC_FP16;
	} else {
		co->model.params_enc = FV_ENC_FP32;
	}
	/* Persist first: once agents see version V, a restart must not go
	 * back to V-1. A failed write is logged and the fleet keeps going. */
	if (crash_at("aggregated", closed))
		crash_now("aggregated", closed);
	persist(co);
	if (crash_at("persisted", closed))
		crash_now("persisted", closed);
	publish_model(co);
	publish_metrics(co, closed, kind, now - co->start_mono, "closed");
	/* Late updates for this round arriving from now on count for the next
	 * one's metrics. */
	memset(co->rejected, 0, sizeof(co->rejected));
	co->late_dropped = 0;
	fv_log(FV_LOG_NOTICE,
	       "round %" PRIu64 " closed: agents=%u/%u%s loss=%.4f threshold=%.4g version=%" PRIu64,
	       closed, co->n_upd, co->n_sel, co->late_applied ? " (with late updates)" : "",
	       (double)co->model.loss, (double)co->model.threshold, co->model.version);
	clear_updates(co);
	co->bytes_in = 0;
	if (rounds_done(co)) {
		finish(co);
		return;
	}
	co->phase = COORD_PAUSE;
	co->pause_until = now + co->cfg->interval_ms;
}

/* No quorum after every extension (round.no_quorum = abandon), or no
 * update at all: give the round up. Its updates are discarded; a training
 * round's number is used up (the next one runs on the same model), the
 * statistics round starts again. Never waits forever. */
static void abandon_round(struct coord *co, int64_t now)
{
	uint64_t r = co->round;
	enum fv_round_kind kind = co->kind;

	note_missing(co, r, kind);
	co->abandoned++;
	co->late_applied = 0;
	fv_log(FV_LOG_WARNING,
	       "round %" PRIu64 " abandoned: %u of %u selected agents answered (quorum %u) after "
	       "%u extensions; %s",
	       r, co->n_upd, co->n_sel, co->quorum_n, co->extensions,
	       kind == FV_ROUND_STATS ? "the statistics round starts again"
				      : "the next round runs on the same model");
	publish_metrics(co, r, kind, now - co->start_mono, "abandoned");
	memset(co->rejected, 0, sizeof(co->rejected));
	co->late_dropped = 0;
	clear_updates(co);
	co->bytes_in = 0;
	if (kind == FV_ROUND_TRAIN) {
		co->round = r + 1;
		persist(co);
	}
	co->phase = COORD_PAUSE;
	co->pause_until = now + co->cfg->interval_ms;
}

/* ---- updates ---- */

static void reject(struct coord *co, enum fv_reject why, const char *agent, uint64_t round,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reject(struct coord *co, enum fv_reject why, const char *agent, uint64_t round,
		   const char *fmt, ...)
{
	char detail[256];
	uint64_t sup = 0;
	va_list ap;

	co->rejected[why]++;
	co->rejected_total[why]++;
	if (!fv_log_enabled(FV_LOG_WARNING) || !fv_ratelimit_ok(&co->rl, &sup))
		return;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (sup)
		fv_log(FV_LOG_WARNING,
		       "update from %s for round %" PRIu64 " rejected: %s (%" PRIu64
		       " earlier rejections not logged)",
		       agent, round, detail, sup);
	else
		fv_log(FV_LOG_WARNING, "update from %s for round %" PRIu64 " rejected: %s", agent,
		       round, detail);
}

/* With sign.agent_keys: the update must be signed by the key(s) in
 * <dir>/<agent>.pub (read for every update, so keys can be added and
 * rotated without a restart; agent names cannot hold a '/'). True when it
 * is; otherwise the rejection is counted and logged. */
static bool update_signed(struct coord *co, uint64_t round, const char *agent,
			  const void *payload, size_t len)
{
	struct fv_verify_keys keys;
	char path[1024], err[1200];
	int r;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s.pub", co->cfg->sign_agent_keys, agent) >=
	    sizeof(path)) {
		reject(co, FV_REJ_SIGNATURE, agent, round, "key path too long");
		return false;
	}
	r = fv_verify_keys_load(path, &keys, err, sizeof(err));
	if (r < 0) {
		reject(co, FV_REJ_SIGNATURE, agent, round, "no usable public key: %s", err);
		return false;
	}
	r = fv_msg_verify(FV_MSG_UPDATE, payload, len, &keys);
	if (r == -ENOKEY || r == -EKEYREJECTED)
		reject(co, FV_REJ_SIGNATURE, agent, round, "%s (sign.agent_keys requires a "
		       "signature by %s)", r == -ENOKEY ? "not signed" : "bad signature", path);
	else if (r < 0)
		reject(co, fv_reject_from_errno(r), agent, round, "signature record: %s (%zu bytes)",
		       fv_strerror(r), len);
	return r == 0;
}

/* Verify (with keys: unauthenticated bytes never reach the protobuf
 * unpacker), decode, and check the sender against the topic. 0 with *u
 * filled (the caller clears it), or -1 when rejected (counted and logged,
 * what prefixes the reason; nothing to clear). */
static int open_update(struct coord *co, uint64_t round, const char *agent, const void *payload,
		       size_t len, const char *what, struct fv_update *u)
{
	int r;

	if (co->cfg->sign_agent_keys[0] && !update_signed(co, round, agent, payload, len))
		return -1;
	memset(u, 0, sizeof(*u));
	r = fv_update_decode(payload, len, co->cfg->fleet, u);
	if (r < 0) {
		reject(co, fv_reject_from_errno(r), agent, round, "%s%s (%zu bytes)", what,
		       fv_strerror(r), len);
		return -1;
	}
	if (strcmp(u->h.sender, agent) != 0) {
		reject(co, FV_REJ_OTHER, agent, round, "sender '%s' does not match the topic",
		       u->h.sender);
		fv_update_clear(u);
		return -1;
	}
	return 0;
}

/* An update for a round that is no longer open. Only a selected agent that
 * had not answered that round (one of the last PART_HIST closed rounds)
 * sends a late update; anything else is stale and not even decoded. Late
 * updates are validated like on-time ones, then dropped or held for the
 * next aggregation (round.late), and counted either way. */
static void handle_late(struct coord *co, uint64_t round, const char *agent,
			const void *payload, size_t len, int64_t now)
{
	struct part_hist *h = part_owed(&co->part, round, agent);
	size_t n_params = co->have_model ? co->model.n_params : 0;
	const char *why = NULL;
	struct fv_update u;
	uint64_t tau;
	int r;

	if (!h) {
		reject(co, FV_REJ_STALE, agent, round, "stale (current round %" PRIu64 "%s)",
		       co->round, co->phase == COORD_COLLECT ? "" : ", not collecting");
		return;
	}
	if (open_update(co, round, agent, payload, len, "late, ", &u) < 0)
		return;
	r = fv_update_check(&u, h->kind, h->round, h->base, n_params,
			    (uint32_t)co->cfg->channels);
	if (r == 0 && h->kind == FV_ROUND_TRAIN && u.n_samples == 0)
		r = -EINVAL;
	if (r < 0) {
		reject(co, r == -EINVAL ? FV_REJ_OTHER : fv_reject_from_errno(r), agent, round,
		       "late and %s", r == -EINVAL ? "trained on 0 samples" : fv_strerror(r));
		goto drop;
	}
	part_paid(h, agent);
	part_response(&co->part, now - h->start_mono);
	/* Every update message ends counted exactly once: accepted, one
	 * rejection reason, or here (held or dropped below). */
	co->late_valid_total++;
	tau = co->have_model && co->model.version > u.h.base_version
		      ? co->model.version - u.h.base_version
		      : 0;
	if (co->cfg->late == 0)
		why = "round.late = drop";
	else if (h->kind == FV_ROUND_STATS)
		why = "a statistics update";
	else if (co->cfg->agg.dp)
		/* Its agent was not sampled for the aggregate it would join:
		 * the privacy accounting would not hold. */
		why = "differential privacy is on";
	else if (co->phase == COORD_FINISHED)
		why = "training finished";
	else if (tau > (uint64_t)co->cfg->staleness_max)
		why = "more than round.staleness_max versions behind";
	else if (part_hold(&co->part, &u) < 0)
		why = "too many held";
	if (why) {
		co->late_dropped++;
		co->late_dropped_total++;
		fv_log(FV_LOG_INFO,
		       "late update from %s for round %" PRIu64 " (%" PRIu64 " versions behind) "
		       "dropped: %s",
		       agent, round, tau, why);
		goto drop;
	}
	fv_log(FV_LOG_INFO,
	       "late update from %s for round %" PRIu64 " held for the next aggregation: %" PRIu64
	       " versions behind, weight x%.3g",
	       agent, round, tau, round_staleness_weight(tau, co->cfg->staleness_exponent));
	return;
drop:
	fv_update_clear(&u);
}

static void handle_update(struct coord *co, uint64_t round, const char *agent,
			  const void *payload, size_t len, int64_t now)
{
	struct fv_update u;
	size_t n_params = co->have_model ? co->model.n_params : 0;
	int r, slot;

	/* Cheapest check first: an update for another round is not decoded
	 * unless it is a late one we wait for. */
	if (co->phase != COORD_COLLECT || round != co->round) {
		handle_late(co, round, agent, payload, len, now);
		return;
	}
	if (open_update(co, round, agent, payload, len, "", &u) < 0)
		return;
	slot = sel_find(co, agent);
	if (slot < 0) {
		reject(co, FV_REJ_UNSELECTED, agent, round, "not selected");
		goto drop;
	}
	if (co->got[slot]) {
		reject(co, FV_REJ_DUPLICATE, agent, round, "duplicate");
		goto drop;
	}
	r = fv_update_check(&u, co->kind, co->round, base_version(co), n_params,
			    (uint32_t)co->cfg->channels);
	if (r < 0) {
		if (r == -ESTALE)
			reject(co, FV_REJ_STALE, agent, round,
			       "stale (round %" PRIu64 " base version %" PRIu64
			       ", expected round %" PRIu64 " base version %" PRIu64 ")",
			       u.h.round, u.h.base_version, co->round, base_version(co));
		else if (r == -EDOM && u.kind != co->kind)
			reject(co, FV_REJ_SHAPE, agent, round, "wrong kind (%s update in a %s round)",
			       kind_name(u.kind), kind_name(co->kind));
		else if (r == -EDOM && co->kind == FV_ROUND_TRAIN)
			reject(co, FV_REJ_SHAPE, agent, round,
			       "wrong shape (%zu weights, model has %zu)", u.n_params, n_params);
		else if (r == -EDOM)
			reject(co, FV_REJ_SHAPE, agent, round,
			       "wrong shape (%u channels, model has %lld)", u.n_channels,
			       co->cfg->channels);
		else
			reject(co, fv_reject_from_errno(r), agent, round, "%s", fv_strerror(r));
		goto drop;
	}
	if (co->kind == FV_ROUND_TRAIN && u.n_samples == 0) {
		reject(co, FV_REJ_OTHER, agent, round, "trained on 0 samples");
		goto drop;
	}
	if (co->kind == FV_ROUND_TRAIN && u.n_col_err && co->have_model &&
	    u.n_col_err != fv_global_columns(&co->model)) {
		reject(co, FV_REJ_SHAPE, agent, round,
		       "wrong shape (%u column errors, model has %u columns)", u.n_col_err,
		       fv_global_columns(&co->model));
		goto drop;
	}
	if (co->n_upd >= co->cap_upd) { /* cannot happen: selected and unique */
		reject(co, FV_REJ_OTHER, agent, round, "update table full");
		goto drop;
	}
	/* Its norm now, while the bytes are warm in the cache and the round
	 * is waiting for others: the close reads every delta once less. */
	if (co->kind == FV_ROUND_TRAIN && u.delta) {
		u.norm = fv_agg_norm(u.delta, u.n_params);
		u.have_norm = true;
	}
	co->upd[co->n_upd++] = u;
	co->got[slot] = 1;
	co->accepted_total++;
	co->bytes_in += len;
	part_response(&co->part, now - co->start_mono);
	fv_log(FV_LOG_INFO,
	       "update from %s for round %" PRIu64 " accepted: %" PRIu64 " samples, loss %.4g "
	       "(%u/%u)",
	       agent, round, u.n_samples, (double)u.loss, co->n_upd, co->n_sel);
	{
		char point[32];

		snprintf(point, sizeof(point), "accepted%u", co->n_upd);
		if (crash_at(point, round))
			crash_now(point, round);
	}
	coord_tick(co, now, 0);
	return;
drop:
	fv_update_clear(&u);
}

/* ---- public ---- */

struct coord *coord_new(const struct coord_config *cfg, struct fv_mqtt *mqtt, bool reset)
{
	struct coord *co = calloc(1, sizeof(*co));
	const char *fleet = cfg->fleet;

	if (!co)
		return NULL;
	co->cfg = cfg;
	co->mqtt = mqtt;
	co->rl = (struct fv_ratelimit)FV_RATELIMIT_INIT(10000, 10);
	co->kind = FV_ROUND_STATS;
	co->phase = COORD_WAIT_AGENTS;
	co->live = calloc(COORD_MAX_AGENTS, FV_NAME_MAX);
	co->sel = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	co->sel_ord = calloc(FV_MAX_SELECTED, sizeof(*co->sel_ord));
	co->got = calloc(FV_MAX_SELECTED, 1);
	co->prio = calloc(COORD_MAX_AGENTS, 1);
	if (!co->live || !co->sel || !co->sel_ord || !co->got || !co->prio || part_init(&co->part, COORD_MAX_AGENTS) < 0) {
		fv_log(FV_LOG_ERR, "out of memory");
		goto fail;
	}
	if (!fv_topic_round(co->t_round, fleet) || !fv_topic_model(co->t_model, fleet) ||
	    !fv_topic_coord(co->t_state, fleet, "state") ||
	    !fv_topic_coord(co->t_metrics, fleet, "metrics")) {
		fv_log(FV_LOG_ERR, "fleet name '%s' makes topics too long", fleet);
		goto fail;
	}
	if ((size_t)snprintf(co->state_path, sizeof(co->state_path), "%s/%s", cfg->state_dir,
			     STATE_FILE) >= sizeof(co->state_path)) {
		fv_log(FV_LOG_ERR, "state_dir '%s' is too long", cfg->state_dir);
		goto fail;
	}
	if (cfg->sign_key_file[0]) {
		char err[600];

		if (fv_sign_key_load(cfg->sign_key_file, &co->key, err, sizeof(err)) < 0) {
			fv_log(FV_LOG_ERR, "sign.key_file: %s", err);
			goto fail;
		}
		co->signing = true;
		char pub[FV_SIGN_PUB_TEXT];

		fv_sign_pub_text(co->key.pk, pub);
		fv_log(FV_LOG_NOTICE, "signing models and announcements with %s", pub);
	} else {
		fv_log(FV_LOG_NOTICE, "sign.key_file is not set: models and announcements are "
		       "published unsigned (docs/security.md)");
	}
	if (reset) {
		fv_log(FV_LOG_NOTICE, "--reset: ignoring %s; starting with the statistics round",
		       co->state_path);
		co->epoch = new_epoch(co);
	} else {
		int r = load_state(co);

		if (r < 0)
			goto fail;
		if (r == 0)
			co->epoch = new_epoch(co);
	}
	return co;
fail:
	coord_free(co);
	return NULL;
}

void coord_free(struct coord *co)
{
	if (!co)
		return;
	clear_updates(co);
	free(co->upd);
	fv_global_clear(&co->model);
	fv_agg_free(co->agg);
	free(co->new_params);
	fv_sign_key_wipe(&co->key);
	free(co->live);
	free(co->sel);
	free(co->sel_ord);
	free(co->got);
	free(co->prio);
	part_free(&co->part);
	free(co);
}

int coord_filters(const struct coord *co, char *ret_states, char *ret_updates)
{
	int n;

	/* fv_topic_agent() validates the agent name, so the "+" wildcard
	 * filter is built here from the same root. */
	n = snprintf(ret_states, FV_TOPIC_MAX, "fedvigil/v1/%s/agent/+/state", co->cfg->fleet);
	if (n < 0 || n >= FV_TOPIC_MAX)
		return -EINVAL;
	if (!fv_topic_updates_filter(ret_updates, co->cfg->fleet))
		return -EINVAL;
	return 0;
}

void coord_get_info(const struct coord *co, struct coord_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->phase = co->phase;
	ret->round = co->round;
	ret->kind = co->kind;
	ret->n_live = co->n_live;
	ret->n_selected = co->phase == COORD_COLLECT ? co->n_sel : 0;
	ret->n_answered = co->n_upd;
	ret->extensions = co->extensions;
	memcpy(ret->rejected, co->rejected, sizeof(ret->rejected));
	ret->model = co->have_model ? &co->model : NULL;
	ret->epoch = co->epoch;
	ret->signing = co->signing;
	ret->rounds_closed = co->rounds_closed;
	ret->accepted_total = co->accepted_total;
	memcpy(ret->rejected_total, co->rejected_total, sizeof(ret->rejected_total));
	ret->update_bytes_total = co->update_bytes_total;
	ret->late_valid_total = co->late_valid_total;
	ret->deadline_ms = co->deadline_len;
	ret->excluded = co->excluded;
	ret->late_held = co->part.n_late;
	ret->late_dropped = co->late_dropped;
	ret->missed = co->missed;
	ret->late_applied = co->late_applied;
	ret->abandoned = co->abandoned;
	ret->missed_total = co->missed_total;
	ret->late_applied_total = co->late_applied_total;
	ret->late_dropped_total = co->late_dropped_total;
}

const char *coord_will_topic(const struct coord *co)
{
	return co->t_state;
}

void coord_on_connected(struct coord *co)
{
	/* The broker replays every retained agent state after the
	 * subscriptions are renewed; rebuild the live set from them (an agent
	 * whose state was deleted meanwhile would otherwise stay live). */
	co->n_live = 0;
	co->connected = true;
	co->settle_until = fv_now_mono_ms() + SETTLE_MS;
	publish_birth(co);
	if (co->have_model)
		publish_model(co);
	else
		/* A fresh start (or --reset): remove a model retained by an
		 * earlier deployment, so agents do not use a model this
		 * coordinator does not know about. */
		publish(co, co->t_model, "", 0, 1, true);
	if (co->phase == COORD_COLLECT)
		publish_announce(co);
	else
		clear_announce(co);
}

void coord_on_message(struct coord *co, const char *topic, const void *payload, size_t len)
{
	coord_on_message_at(co, topic, payload, len, fv_now_mono_ms());
}

void coord_on_message_at(struct coord *co, const char *topic, const void *payload, size_t len,
			 int64_t now)
{
	char agent[FV_NAME_MAX];
	uint64_t round;

	if (fv_topic_parse_agent_state(topic, co->cfg->fleet, agent) == 0) {
		agent_set(co, agent, state_is_online(payload, len), now);
		return;
	}
	if (fv_topic_parse_update(topic, co->cfg->fleet, &round, agent) == 0) {
		co->update_bytes_total += len;
		handle_update(co, round, agent, payload, len, now);
		return;
	}
	fv_log(FV_LOG_DEBUG, "ignoring message on %s (%zu bytes)", topic, len);
}

int coord_tick(struct coord *co, int64_t now, int max_ms)
{
	struct round_status s;
	int64_t wait = max_ms;
	int r;

	switch (co->phase) {
	case COORD_WAIT_AGENTS:
		start_round(co, now);
		break;
	case COORD_PAUSE:
		if (now >= co->pause_until)
			start_round(co, now);
		else
			wait = co->pause_until - now;
		break;
	case COORD_COLLECT:
		memset(&s, 0, sizeof(s));
		s.n_selected = co->n_sel;
		s.n_answered = co->n_upd;
		s.quorum_n = co->quorum_n;
		s.extensions = co->extensions;
		s.max_extensions = (uint32_t)co->cfg->max_extensions;
		s.abandon = co->cfg->no_quorum == 1;
		s.now_ms = now;
		s.deadline_ms = co->deadline_mono;
		switch (round_decide(&s)) {
		case ROUND_WAIT:
			wait = co->deadline_mono - now;
			break;
		case ROUND_CLOSE:
			close_round(co, now);
			break;
		case ROUND_EXTEND:
			co->extensions++;
			fv_log(FV_LOG_NOTICE,
			       "round %" PRIu64 ": %u of %u updates at the deadline (quorum %u); "
			       "extending by %" PRId64 " ms (%u/%lld)",
			       co->round, co->n_upd, co->n_sel, co->quorum_n, co->deadline_len,
			       co->extensions, co->cfg->max_extensions);
			r = select_and_announce(co, now);
			if (r == -ENODATA) /* nobody left: wait for agents */
				start_round(co, now);
			else if (r < 0)
				co->deadline_mono = now + co->deadline_len;
			break;
		case ROUND_ABANDON:
			abandon_round(co, now);
			break;
		}
		break;
	case COORD_FINISHED:
		break;
	}
	if (wait < 0)
		wait = 0;
	return (int)FV_MIN(wait, (int64_t)max_ms);
}
