/* fedvigil-swarm --raw: the transport limit of a round, measured with the
 * same payload sizes and client count as the fleet and nothing else in
 * the way (bench/scale compares rounds against it):
 *   up    N connections publish one update-sized QoS 1 message each, all at
 *         once, to one subscriber (the coordinator's place): from the first
 *         publish to the last message received;
 *   down  that subscriber publishes one model-sized QoS 1 message, which
 *         the broker fans out to the N connections (the global model):
 *         from the publish to the last connection receiving it.
 * Each is repeated and reported as the median and the minimum. */
#include "swarm.h"

#include "fedvigil/mqtt.h"
#include "fedvigil/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct raw {
	const struct raw_opts *o;
	struct mux *mx;
	struct mux_conn **c;          /* N senders, then the sink */
	char (*ids)[48];              /* client ids */
	char t_down[FV_TOPIC_MAX], f_up[FV_TOPIC_MAX];
	uint32_t n_down;              /* connections that got the current down message */
	uint32_t n_up;                /* updates the sink got in this repetition */
	uint8_t *seen;                /* (N) got the current down message */
	uint32_t tag;                 /* current down message's first 4 bytes */
	struct fv_mqtt *paho;         /* --raw-sink paho: the sink, else NULL */
};

/* Count what the Paho sink has received. */
static void paho_drain(struct raw *r)
{
	struct fv_mqtt_msg m;
	enum fv_mqtt_event ev;

	while ((ev = fv_mqtt_next(r->paho, &m)) != FV_MQTT_EV_NONE) {
		if (ev != FV_MQTT_EV_MESSAGE)
			continue;
		if (strncmp(m.topic, r->f_up, strlen(r->f_up) - 1) == 0)
			r->n_up++;
		fv_mqtt_msg_clear(&m);
	}
}

static void raw_msg(struct mux_conn *c, const char *topic, const uint8_t *p, size_t len,
		    bool retained, void *user)
{
	struct raw *r = user;
	uintptr_t i = (uintptr_t)mux_conn_user(c);
	uint32_t tag;

	(void)retained;
	if (i == r->o->n) {
		if (strncmp(topic, r->f_up, strlen(r->f_up) - 1) == 0)
			r->n_up++;
		return;
	}
	if (len < 4 || strcmp(topic, r->t_down) != 0)
		return;
	memcpy(&tag, p, 4);
	if (tag == r->tag && !r->seen[i]) {
		r->seen[i] = 1;
		r->n_down++;
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Poll until *counter reaches want or timeout; the time taken, or -1. */
static int64_t wait_count(struct raw *r, const uint32_t *counter, uint32_t want, int64_t t0,
			  int64_t timeout_ms, volatile sig_atomic_t *stop)
{
	while (*counter < want) {
		if (*stop || fv_now_mono_ms() - t0 > timeout_ms)
			return -1;
		mux_poll(r->mx, r->paho ? 1 : 50);
		if (r->paho)
			paho_drain(r);
	}
	return fv_now_mono_ms() - t0;
}

/* One down repetition: a fresh tag, the sink publishes, every sender must
 * see it. */
static int64_t down_once(struct raw *r, size_t bytes, volatile sig_atomic_t *stop)
{
	uint8_t *pl = calloc(1, FV_MAX(bytes, (size_t)4));
	int64_t t0, t;

	if (!pl)
		return -1;
	r->tag++;
	memcpy(pl, &r->tag, 4);
	memset(r->seen, 0, r->o->n);
	r->n_down = 0;
	t0 = fv_now_mono_ms();
	if (r->paho ? fv_mqtt_publish(r->paho, r->t_down, pl, FV_MAX(bytes, (size_t)4), 1, false) < 0
		    : mux_publish(r->c[r->o->n], r->t_down, pl, FV_MAX(bytes, (size_t)4), 1, false) < 0) {
		free(pl);
		return -1;
	}
	free(pl);
	t = wait_count(r, &r->n_down, r->o->n, t0, r->o->timeout_ms, stop);
	return t;
}

static int64_t up_once(struct raw *r, size_t bytes, volatile sig_atomic_t *stop)
{
	uint8_t *pl = calloc(1, FV_MAX(bytes, (size_t)1));
	char topic[FV_TOPIC_MAX];
	int64_t t0, t;

	if (!pl)
		return -1;
	r->n_up = 0;
	t0 = fv_now_mono_ms();
	for (uint32_t i = 0; i < r->o->n; i++) {
		snprintf(topic, sizeof(topic), "%.*s%s", (int)strlen(r->f_up) - 1, r->f_up, r->ids[i]);
		if (mux_publish(r->c[i], topic, pl, bytes, 1, false) < 0) {
			fv_log(FV_LOG_WARNING, "raw: %s could not publish", r->ids[i]);
			free(pl);
			return -1;
		}
	}
	free(pl);
	t = wait_count(r, &r->n_up, r->o->n, t0, r->o->timeout_ms, stop);
	/* Let the acknowledgements drain before the next repetition. */
	for (int k = 0; k < 100; k++) {
		uint32_t un = 0;

		for (uint32_t i = 0; i < r->o->n; i++)
			un += mux_conn_unacked(r->c[i]);
		if (!un)
			break;
		mux_poll(r->mx, 10);
	}
	return t;
}

static void report(FILE *out, const char *name, int64_t *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_i64);
	fprintf(out, ",\"%s_ms\":[", name);
	for (uint32_t i = 0; i < n; i++)
		fprintf(out, "%s%" PRId64, i ? "," : "", v[i]);
	fprintf(out, "],\"%s_median_ms\":%" PRId64 ",\"%s_min_ms\":%" PRId64, name, v[n / 2], name,
		v[0]);
}

int swarm_raw_run(const struct raw_opts *o, FILE *out, volatile sig_atomic_t *stop)
{
	struct mux_callbacks cb = { .on_message = raw_msg };
	struct mux_opts mo = { .host = o->host, .port = o->port };
	struct raw r = { .o = o };
	int64_t *up = calloc(o->reps, sizeof(int64_t)), *down = calloc(o->reps, sizeof(int64_t));
	int64_t t0;
	int ret = 1;

	r.c = calloc(o->n + 1, sizeof(*r.c));
	r.ids = calloc(o->n + 1, sizeof(*r.ids));
	r.seen = calloc(o->n, 1);
	snprintf(r.t_down, sizeof(r.t_down), "%s/raw/down", o->root);
	snprintf(r.f_up, sizeof(r.f_up), "%s/raw/up/+", o->root);
	if (!up || !down || !r.c || !r.ids || !r.seen || !(r.mx = mux_new(&mo, &cb, &r))) {
		fv_log(FV_LOG_ERR, "raw: out of memory or bad broker address");
		goto out;
	}
	if (o->paho_sink) {
		struct fv_mqtt_opts po = { .uri = o->uri, .client_id = "fv-raw-sink-paho",
					   .username = o->username, .password = o->password,
					   .queue_max = 65536 };

		r.paho = fv_mqtt_new(&po);
		if (!r.paho || fv_mqtt_subscribe(r.paho, r.f_up, 1) < 0 || fv_mqtt_start(r.paho) < 0)
			goto out;
	}
	for (uint32_t i = 0; i < o->n + !o->paho_sink; i++) {
		struct mux_conn_opts co = { .username = o->username, .password = o->password };

		if (i < o->n)
			snprintf(r.ids[i], sizeof(r.ids[i]), "%sraw-%u", o->id_prefix, i);
		else
			snprintf(r.ids[i], sizeof(r.ids[i]), "%sraw-sink", o->id_prefix);
		co.client_id = r.ids[i];
		r.c[i] = mux_add(r.mx, &co, (void *)(uintptr_t)i);
		if (!r.c[i] || mux_subscribe(r.c[i], i < o->n ? r.t_down : r.f_up, 1) < 0)
			goto out;
	}
	t0 = fv_now_mono_ms();
	for (;;) {
		struct mux_stats st;

		mux_get_stats(r.mx, &st);
		if (r.paho)
			paho_drain(&r);
		if (st.up == o->n + !r.paho && (!r.paho || fv_mqtt_connected(r.paho)))
			break;
		if (*stop || fv_now_mono_ms() - t0 > o->timeout_ms) {
			fv_log(FV_LOG_ERR, "raw: %u of %u connections up after %" PRId64 " ms", st.up,
			       o->n + 1, fv_now_mono_ms() - t0);
			goto out;
		}
		mux_poll(r.mx, 50);
	}
	fv_log(FV_LOG_INFO, "raw: %u connections up in %" PRId64 " ms", o->n + 1,
	       fv_now_mono_ms() - t0);
	/* Subscriptions are in place once a small message reaches everyone. */
	if (down_once(&r, 4, stop) < 0) {
		fv_log(FV_LOG_ERR, "raw: the subscriptions did not come up");
		goto out;
	}
	for (uint32_t k = 0; k < o->reps; k++) {
		if ((down[k] = down_once(&r, o->model_bytes, stop)) < 0 ||
		    (up[k] = up_once(&r, o->update_bytes, stop)) < 0) {
			fv_log(FV_LOG_ERR, "raw: repetition %u timed out (down %u/%u, up %u/%u)", k,
			       r.n_down, o->n, r.n_up, o->n);
			goto out;
		}
	}
	fprintf(out, "{\"raw\":true,\"sink\":\"%s\",\"agents\":%u,\"update_bytes\":%zu,"
		"\"model_bytes\":%zu", r.paho ? "paho" : "mux", o->n, o->update_bytes, o->model_bytes);
	report(out, "up", up, o->reps);
	report(out, "down", down, o->reps);
	fprintf(out, "}\n");
	fflush(out);
	ret = 0;
out:
	if (r.mx)
		mux_disconnect_all(r.mx, 2000);
	fv_mqtt_free(r.paho, 1000);
	mux_free(r.mx);
	free(r.c);
	free(r.ids);
	free(r.seen);
	free(up);
	free(down);
	return ret;
}
