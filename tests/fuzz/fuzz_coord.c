/* Fuzz target for the coordinator's whole inbound path: topic parsing,
 * signature-free update validation (decode, fleet, round, base version,
 * kind, shape, duplicates, selection, late updates) and the round machine
 * behind it, on a virtual clock (tests/fuzz/coordfix.h: agents a, b, c and
 * an unselected x). The input is a program of operations:
 *
 *   0 A R L L bytes...   update payload as is, from agent A, for a round
 *                        near the open one (R), L bytes (little-endian)
 *   1 A F S V...         a valid update made here for the open round (or,
 *                        per F, the one before) from agent A: F picks the
 *                        encoding (6), a kind or base version mix-up, and a
 *                        bit flip at S; V (16 bytes) the values
 *   2 T                  advance the clock by T * 20 ms, run the timers
 *   3 A K                agent A's retained state: online, offline, junk
 *   4 N topic... M payload...  any topic
 *   5                    the last update payload again (a replay)
 *
 * Invariants: every message on an update topic ends counted exactly once
 * (accepted, one rejection reason, or a valid late update held or
 * dropped); other topics count nothing; the model stays finite. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordfix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const agents[] = { "a", "b", "c", "x" };

struct prog {
	const uint8_t *p, *end;
};

static unsigned byte(struct prog *g)
{
	return g->p < g->end ? *g->p++ : 0;
}

static uint64_t outcomes(const struct coord *co)
{
	struct coord_info in;
	uint64_t n;

	coord_get_info(co, &in);
	n = in.accepted_total + in.late_valid_total;
	for (int i = 0; i < FV_REJ__MAX; i++)
		n += in.rejected_total[i];
	return n;
}

static void check_model(const struct coord *co)
{
	struct coord_info in;

	coord_get_info(co, &in);
	if (!in.model)
		return;
	for (size_t i = 0; i < in.model->n_params; i++)
		if (!isfinite(in.model->params[i]))
			abort();
	if (!isfinite(in.model->threshold) || in.model->threshold < 0.0f)
		abort();
}

/* Deliver one message and check that it was counted as it must be. */
static void deliver(struct coord *co, const char *topic, const void *payload, size_t len,
		    int64_t now)
{
	char agent[FV_NAME_MAX];
	uint64_t round, before = outcomes(co);
	bool update = fv_topic_parse_update(topic, FZ_FLEET, &round, agent) == 0;

	coord_on_message_at(co, topic, payload, len, now);
	if (outcomes(co) - before != (update ? 1u : 0u)) {
		fprintf(stderr, "message on %s (%zu bytes) counted %llu times\n", topic, len,
			(unsigned long long)(outcomes(co) - before));
		abort();
	}
	check_model(co);
}

/* A valid update of the open round from agent (or not quite, per f). */
static int make_update(const struct coord *co, const char *agent, unsigned f, const float *v,
		       uint8_t **ret_buf, size_t *ret_len)
{
	struct coord_info in;
	struct fv_update u;
	float d[64];
	int r;

	coord_get_info(co, &in);
	memset(&u, 0, sizeof(u));
	u.h.schema = FV_SCHEMA_VERSION;
	fv_strlcpy(u.h.fleet, FZ_FLEET, sizeof(u.h.fleet));
	fv_strlcpy(u.h.sender, agent, sizeof(u.h.sender));
	u.h.round = in.round;
	u.h.base_version = in.kind == FV_ROUND_TRAIN && in.model ? in.model->version : 0;
	if ((f & 0x10) && u.h.round > 1 && u.h.base_version > 1) {
		u.h.round--; /* a late update for the round before */
		u.h.base_version--;
	}
	if (f & 0x40)
		u.h.base_version ^= 1;
	u.kind = (f & 0x80) ? (in.kind == FV_ROUND_STATS ? FV_ROUND_TRAIN : FV_ROUND_STATS)
			    : in.kind;
	u.n_samples = 1 + (f >> 3 & 7) * 50;
	u.loss = 0.5f;
	fv_hist_init(&u.hist);
	fv_hist_add(&u.hist, 0.01 * (1 + (f & 7)));
	struct fv_chstats st[2];

	if (u.kind == FV_ROUND_STATS) {
		for (int c = 0; c < 2; c++) {
			fv_chstats_init(&st[c]);
			fv_chstats_add(&st[c], v[c]);
			fv_chstats_add(&st[c], v[c + 2]);
		}
		u.n_channels = 2;
		u.stats = st;
	} else {
		size_t n = in.model ? in.model->n_params : 4;

		if (n > FV_ARRAY_SIZE(d))
			return -1;
		for (size_t i = 0; i < n; i++)
			d[i] = v[i % 4] * (float)(i + 1);
		u.n_params = n;
		u.delta = d;
		u.enc = (enum fv_enc)(f % FV_ENC__MAX);
		u.topk = 0.5f;
	}
	r = fv_update_encode(&u, ret_buf, ret_len);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prog g = { data, data + size };
	char topic[FV_TOPIC_MAX + 64];
	uint8_t *last = NULL;
	size_t last_len = 0;
	char last_topic[FV_TOPIC_MAX] = "";
	struct coord *co = coord_new(fz_config(), NULL, true);
	int64_t t;

	if (!co)
		abort();
	coord_on_connected(co);
	t = fv_now_mono_ms() + 1000; /* past the settle time */
	for (int i = 0; i < 3; i++) {
		fv_topic_agent(topic, FZ_FLEET, agents[i], "state");
		deliver(co, topic, "{\"state\":\"online\"}", 18, t - 1000);
	}
	coord_tick(co, t, 100);
	for (unsigned ops = 0; g.p < g.end && ops < 256; ops++) {
		unsigned op = byte(&g) % 6, a = byte(&g) % 4;
		struct coord_info in;

		coord_get_info(co, &in);
		switch (op) {
		case 0: {
			unsigned r = byte(&g), len = byte(&g);

			len |= byte(&g) << 8;
			if (len > (size_t)(g.end - g.p))
				len = (unsigned)(g.end - g.p);
			uint64_t round = r >= 0xf0 ? (uint64_t)r << 20 : in.round + (r % 3) - 1;

			if (in.round == 0 && r % 3 == 0)
				round = 0;
			fv_topic_update(topic, FZ_FLEET, round, agents[a]);
			deliver(co, topic, g.p, len, t);
			free(last);
			last = malloc(len ? len : 1);
			if (last)
				memcpy(last, g.p, len);
			last_len = len;
			fv_strlcpy(last_topic, topic, sizeof(last_topic));
			g.p += len;
			break;
		}
		case 1: {
			unsigned f = byte(&g), s = byte(&g);
			float v[4];
			uint8_t raw[16];
			uint8_t *buf = NULL;
			size_t len = 0;

			for (int i = 0; i < 16; i++)
				raw[i] = (uint8_t)byte(&g);
			memcpy(v, raw, sizeof(v));
			if (make_update(co, agents[a], f, v, &buf, &len) < 0)
				break; /* e.g. a non-finite delta: the encoder refuses */
			if ((f & 0x20) && len)
				buf[s % len] ^= (uint8_t)(1u << (s % 8));
			fv_topic_update(topic, FZ_FLEET,
					(f & 0x10) && in.round > 1 && in.model && in.model->version > 1
						? in.round - 1
						: in.round,
					agents[a]);
			deliver(co, topic, buf, len, t);
			free(last);
			last = buf;
			last_len = len;
			fv_strlcpy(last_topic, topic, sizeof(last_topic));
			break;
		}
		case 2:
			t += (int64_t)byte(&g) * 20;
			coord_tick(co, t, 1000);
			check_model(co);
			break;
		case 3: {
			static const char *const st[] = { "{\"state\":\"online\"}",
							  "{\"state\":\"offline\"}", "", "{\"state\":" };
			const char *p = st[byte(&g) % 4];

			fv_topic_agent(topic, FZ_FLEET, agents[a], "state");
			deliver(co, topic, p, strlen(p), t);
			break;
		}
		case 4: {
			unsigned n = byte(&g) % FV_TOPIC_MAX, m;

			if (n > (size_t)(g.end - g.p))
				n = (unsigned)(g.end - g.p);
			memcpy(topic, g.p, n);
			topic[n] = '\0';
			g.p += n;
			m = byte(&g);
			if (m > (size_t)(g.end - g.p))
				m = (unsigned)(g.end - g.p);
			deliver(co, topic, g.p, m, t);
			g.p += m;
			break;
		}
		default:
			if (last_topic[0])
				deliver(co, last_topic, last, last_len, t);
			break;
		}
	}
	free(last);
	coord_free(co);
	return 0;
}
