/* fedvigil-agent as a Sparkplug B edge node ([sparkplug] presence = true):
 * the agent's health and its detection state where SCADA hosts and
 * Sparkplug dashboards look, beside the JSON birth/death of agent/<id>/state.
 *
 * A second MQTT connection carries it, because Sparkplug's NDEATH must be
 * that connection's will (the first one's will is the JSON offline state).
 * On every connect: NBIRTH (seq 0) with all metrics, names, aliases and
 * datatypes; then NDATA by alias when a value changed (at most every
 * metrics_interval_ms, at once when an alert is raised or cleared); NDEATH
 * on a clean stop and as the will. An NCMD "Node Control/Rebirth" = true
 * brings a new NBIRTH. Departure from Sparkplug 3.0: bdSeq is the same for
 * every session of one process (the will is fixed when the client is made),
 * so a host pairs NDEATH with the NBIRTH of the same process, not session. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "fedvigil/sparkplug.h"

enum {
	M_BDSEQ = 0, M_REBIRTH, M_SCORE, M_THRESHOLD, M_ALERT, M_ALERTS, M_MODEL, M_ROUND,
	M_CONNECTED, M__N
};

static const struct {
	const char *name;
	uint32_t datatype;
} metric_def[M__N] = {
	[M_BDSEQ] = { "bdSeq", FV_SPB_UINT64 },
	[M_REBIRTH] = { "Node Control/Rebirth", FV_SPB_BOOLEAN },
	[M_SCORE] = { "fedvigil/score", FV_SPB_DOUBLE },
	[M_THRESHOLD] = { "fedvigil/threshold", FV_SPB_DOUBLE },
	[M_ALERT] = { "fedvigil/alert", FV_SPB_BOOLEAN },
	[M_ALERTS] = { "fedvigil/alerts_total", FV_SPB_UINT64 },
	[M_MODEL] = { "fedvigil/model_version", FV_SPB_UINT64 },
	[M_ROUND] = { "fedvigil/round", FV_SPB_UINT64 },
	[M_CONNECTED] = { "fedvigil/broker_connected", FV_SPB_BOOLEAN },
};

struct agent_presence {
	struct fv_mqtt *mq;
	char group[FV_SPB_ID_MAX], node[FV_SPB_ID_MAX];
	char t_ncmd[FV_SPB_TOPIC_MAX];
	uint8_t *will;
	size_t will_len;
	uint64_t bdseq;
	uint64_t seq;                 /* next seq */
	bool born;                    /* NBIRTH sent on this connection */
	struct agent_presence_values last; /* what the host knows */
	int64_t interval_ms, next_ms;
	uint64_t births;              /* NBIRTHs sent */
};

/* One metric of the set, with its value from v. */
static void fill(struct fv_spb_metric *m, int i, const struct agent_presence_values *v,
		 uint64_t bdseq, int64_t ts, bool birth)
{
	*m = (struct fv_spb_metric){ .name = birth ? metric_def[i].name : NULL, .has_alias = true,
				     .alias = (uint64_t)i + 1, .ts_ms = ts,
				     .datatype = birth ? metric_def[i].datatype : 0 };
	switch (i) {
	case M_BDSEQ: m->kind = FV_SPB_V_LONG; m->u = bdseq; break;
	case M_REBIRTH: m->kind = FV_SPB_V_BOOL; m->u = 0; break;
	case M_SCORE: m->kind = FV_SPB_V_DOUBLE; m->d = v->score; break;
	case M_THRESHOLD: m->kind = FV_SPB_V_DOUBLE; m->d = v->threshold; break;
	case M_ALERT: m->kind = FV_SPB_V_BOOL; m->u = v->alert; break;
	case M_ALERTS: m->kind = FV_SPB_V_LONG; m->u = v->alerts; break;
	case M_MODEL: m->kind = FV_SPB_V_LONG; m->u = v->model_version; break;
	case M_ROUND: m->kind = FV_SPB_V_LONG; m->u = v->round; break;
	case M_CONNECTED: m->kind = FV_SPB_V_BOOL; m->u = v->connected; break;
	}
}

static void send(struct agent_presence *p, enum fv_spb_msg_type type, struct fv_spb_metric *m,
		 uint32_t n, int64_t ts)
{
	struct fv_spb_payload pl = { .ts_ms = ts, .has_seq = true, .seq = p->seq, .n_metrics = n,
				     .metrics = m };
	char topic[FV_SPB_TOPIC_MAX];
	uint8_t *buf;
	size_t len;
	int r;

	if (!fv_spb_topic(topic, sizeof(topic), type, p->group, p->node, ""))
		return;
	r = fv_spb_encode(&pl, &buf, &len);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "Sparkplug presence: cannot encode: %s", fv_strerror(r));
		return;
	}
	if (fv_mqtt_publish(p->mq, topic, buf, len, 0, false) < 0)
		fv_log(FV_LOG_DEBUG, "Sparkplug presence: %s not queued", topic);
	free(buf);
	p->seq = (p->seq + 1) % 256;
}

static void birth(struct agent_presence *p, const struct agent_presence_values *v)
{
	struct fv_spb_metric m[M__N];
	int64_t ts = fv_now_wall_ms();

	for (int i = 0; i < M__N; i++)
		fill(&m[i], i, v, p->bdseq, ts, true);
	p->seq = 0;
	send(p, FV_SPB_NBIRTH, m, M__N, ts);
	p->last = *v;
	p->born = true;
	p->births++;
}

struct agent_presence *agent_presence_new(const struct agent_config *c)
{
	struct agent_presence *p = calloc(1, sizeof(*p));
	struct fv_spb_metric m;
	struct fv_spb_payload death = { .n_metrics = 1, .metrics = &m };
	struct fv_mqtt_opts o = { 0 };
	char will_topic[FV_SPB_TOPIC_MAX], client_id[200];
	const char *group = c->sp_presence_group[0] ? c->sp_presence_group
			    : c->sp_group[0]       ? c->sp_group
						   : "fedvigil";

	if (!p)
		return NULL;
	fv_strlcpy(p->group, group, sizeof(p->group));
	fv_strlcpy(p->node, c->id, sizeof(p->node));
	/* Distinct per process start, within Sparkplug's 0..255. */
	p->bdseq = (uint64_t)(fv_now_wall_ms() / 1000) % 256;
	p->interval_ms = c->metrics_interval_ms;
	death.ts_ms = -1;
	m = (struct fv_spb_metric){ .name = "bdSeq", .ts_ms = -1, .datatype = FV_SPB_UINT64,
				    .kind = FV_SPB_V_LONG, .u = p->bdseq };
	if (!fv_spb_topic(will_topic, sizeof(will_topic), FV_SPB_NDEATH, p->group, p->node, "") ||
	    !fv_spb_topic(p->t_ncmd, sizeof(p->t_ncmd), FV_SPB_NCMD, p->group, p->node, "") ||
	    fv_spb_encode(&death, &p->will, &p->will_len) < 0) {
		fv_log(FV_LOG_ERR, "Sparkplug presence: group '%s' / node '%s' make no valid topics",
		       p->group, p->node);
		goto fail;
	}
	snprintf(client_id, sizeof(client_id), "fedvigil-agent-%s-%s-spb", c->fleet, c->id);
	o.uri = c->broker;
	o.client_id = client_id;
	o.username = c->username[0] ? c->username : NULL;
	o.password = c->password[0] ? c->password : NULL;
	fv_mqtt_tls_apply(&c->tls, &o);
	o.will_topic = will_topic;
	o.will_payload = p->will;
	o.will_len = p->will_len;
	o.will_qos = 1; /* Sparkplug 3.0: NDEATH QoS 1, not retained */
	p->mq = fv_mqtt_new(&o);
	if (!p->mq || fv_mqtt_subscribe(p->mq, p->t_ncmd, 1) < 0)
		goto fail;
	return p;
fail:
	agent_presence_free(p);
	return NULL;
}

void agent_presence_free(struct agent_presence *p)
{
	if (!p)
		return;
	fv_mqtt_free(p->mq, 1000);
	free(p->will);
	free(p);
}

int agent_presence_start(struct agent_presence *p)
{
	return fv_mqtt_start(p->mq);
}

int agent_presence_fd(const struct agent_presence *p)
{
	return fv_mqtt_fd(p->mq);
}

uint64_t agent_presence_births(const struct agent_presence *p)
{
	return p->births;
}

/* Is this NCMD a rebirth request? */
static bool is_rebirth(const struct fv_mqtt_msg *msg)
{
	struct fv_spb_payload pl;
	bool yes = false;

	if (fv_spb_decode(msg->payload, msg->len, &pl) < 0)
		return false;
	for (uint32_t i = 0; i < pl.n_metrics; i++) {
		double v;

		if (pl.metrics[i].name && strcmp(pl.metrics[i].name, "Node Control/Rebirth") == 0 &&
		    fv_spb_metric_number(&pl.metrics[i], FV_SPB_BOOLEAN, &v) == 0 && v != 0)
			yes = true;
	}
	fv_spb_payload_clear(&pl);
	return yes;
}

void agent_presence_update(struct agent_presence *p, const struct agent_presence_values *v,
			   int64_t now)
{
	struct fv_spb_metric m[M__N];
	struct fv_mqtt_msg msg;
	enum fv_mqtt_event ev;
	uint32_t n = 0;
	int64_t ts;

	for (int i = 0; i < 64; i++) {
		memset(&msg, 0, sizeof(msg));
		ev = fv_mqtt_next(p->mq, &msg);
		if (ev == FV_MQTT_EV_NONE)
			break;
		if (ev == FV_MQTT_EV_CONNECTED) {
			birth(p, v);
		} else if (ev == FV_MQTT_EV_LOST) {
			p->born = false;
		} else if (ev == FV_MQTT_EV_MESSAGE) {
			if (strcmp(msg.topic, p->t_ncmd) == 0 && is_rebirth(&msg) &&
			    fv_mqtt_connected(p->mq)) {
				fv_log(FV_LOG_INFO, "Sparkplug presence: rebirth requested on %s",
				       p->t_ncmd);
				birth(p, v);
			}
			fv_mqtt_msg_clear(&msg);
		}
	}
	if (!p->born)
		return;
	/* An alert raised or cleared goes out at once, the rest on the
	 * metrics interval. */
	if (v->alert == p->last.alert && now < p->next_ms)
		return;
	p->next_ms = now + p->interval_ms;
	ts = fv_now_wall_ms();
	if (v->score != p->last.score)
		fill(&m[n++], M_SCORE, v, p->bdseq, ts, false);
	if (v->threshold != p->last.threshold)
		fill(&m[n++], M_THRESHOLD, v, p->bdseq, ts, false);
	if (v->alert != p->last.alert)
		fill(&m[n++], M_ALERT, v, p->bdseq, ts, false);
	if (v->alerts != p->last.alerts)
		fill(&m[n++], M_ALERTS, v, p->bdseq, ts, false);
	if (v->model_version != p->last.model_version)
		fill(&m[n++], M_MODEL, v, p->bdseq, ts, false);
	if (v->round != p->last.round)
		fill(&m[n++], M_ROUND, v, p->bdseq, ts, false);
	if (v->connected != p->last.connected)
		fill(&m[n++], M_CONNECTED, v, p->bdseq, ts, false);
	if (n == 0)
		return;
	send(p, FV_SPB_NDATA, m, n, ts);
	p->last = *v;
}

void agent_presence_stop(struct agent_presence *p)
{
	char topic[FV_SPB_TOPIC_MAX];

	/* A clean stop says so itself; the will is for the other cases. */
	if (fv_mqtt_connected(p->mq) &&
	    fv_spb_topic(topic, sizeof(topic), FV_SPB_NDEATH, p->group, p->node, ""))
		fv_mqtt_publish(p->mq, topic, p->will, p->will_len, 1, false);
	fv_mqtt_disconnect(p->mq, 2000);
}
