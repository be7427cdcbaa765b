/* fedvigil-sim as a Sparkplug B edge node: NBIRTH, a DBIRTH per machine
 * with its first sample, then DDATA by alias, NDEATH at the end and as the
 * LWT (Sparkplug 3.0: births name every metric with an alias and datatype,
 * data messages may carry only the aliases; seq counts 0..255 over all of
 * the node's messages). */
#include "spb.h"

#include <errno.h>
#include <stdlib.h>

#include "cli.h"
#include "fedvigil/util.h"

#define MAX_METRICS 16

static int publish(struct sim_spb *s, struct fv_mqtt *mq, const char *topic,
		   struct fv_spb_payload *p, volatile sig_atomic_t *stop)
{
	uint8_t *buf;
	size_t len;
	int r = fv_spb_encode(p, &buf, &len);

	if (r < 0)
		return r;
	r = fv_cli_publish_bin(mq, s->broker, topic, buf, len, s->qos, stop);
	free(buf);
	return r;
}

int sim_spb_death(const struct sim_spb *s, char *topic, uint8_t **ret_buf, size_t *ret_len)
{
	struct fv_spb_metric m = { .name = "bdSeq", .ts_ms = -1, .datatype = FV_SPB_UINT64,
				   .kind = FV_SPB_V_LONG, .u = s->bdseq };
	struct fv_spb_payload p = { .ts_ms = fv_now_wall_ms(), .n_metrics = 1, .metrics = &m };

	if (!fv_spb_topic(topic, FV_SPB_TOPIC_MAX, FV_SPB_NDEATH, s->group, s->node, ""))
		return -EINVAL;
	return fv_spb_encode(&p, ret_buf, ret_len);
}

int sim_spb_nbirth(struct sim_spb *s, struct fv_mqtt *mq, int64_t ts, volatile sig_atomic_t *stop)
{
	char topic[FV_SPB_TOPIC_MAX];
	struct fv_spb_metric m[] = {
		{ .name = "bdSeq", .ts_ms = ts, .datatype = FV_SPB_UINT64, .kind = FV_SPB_V_LONG,
		  .u = s->bdseq },
		{ .name = "Node Control/Rebirth", .ts_ms = ts, .datatype = FV_SPB_BOOLEAN,
		  .kind = FV_SPB_V_BOOL, .u = 0 },
	};
	struct fv_spb_payload p = { .ts_ms = ts, .has_seq = true, .seq = 0, .n_metrics = 2,
				    .metrics = m };

	if (!fv_spb_topic(topic, sizeof(topic), FV_SPB_NBIRTH, s->group, s->node, ""))
		return -EINVAL;
	s->seq = 1;
	return publish(s, mq, topic, &p, stop);
}

int sim_spb_sample(struct sim_spb *s, struct fv_mqtt *mq, const char *device, int mi, bool birth,
		   int64_t ts, const double *v, int n, const char *const *names,
		   volatile sig_atomic_t *stop)
{
	char topic[FV_SPB_TOPIC_MAX];
	struct fv_spb_metric m[MAX_METRICS];
	struct fv_spb_payload p = { .ts_ms = ts, .has_seq = true, .seq = s->seq,
				    .n_metrics = (uint32_t)n, .metrics = m };

	if (n > MAX_METRICS ||
	    !fv_spb_topic(topic, sizeof(topic), birth ? FV_SPB_DBIRTH : FV_SPB_DDATA, s->group,
			  s->node, device))
		return -EINVAL;
	for (int c = 0; c < n; c++)
		m[c] = (struct fv_spb_metric){
			.name = birth ? names[c] : NULL, .has_alias = true,
			.alias = (uint64_t)mi * (uint64_t)n + (uint64_t)c + 1, .ts_ms = ts,
			.datatype = birth ? FV_SPB_DOUBLE : 0, .kind = FV_SPB_V_DOUBLE, .d = v[c],
		};
	s->seq = (s->seq + 1) % 256;
	return publish(s, mq, topic, &p, stop);
}

int sim_spb_ndeath(struct sim_spb *s, struct fv_mqtt *mq, volatile sig_atomic_t *stop)
{
	char topic[FV_SPB_TOPIC_MAX];
	uint8_t *buf;
	size_t len;
	int r = sim_spb_death(s, topic, &buf, &len);

	if (r < 0)
		return r;
	r = fv_cli_publish_bin(mq, s->broker, topic, buf, len, s->qos, stop);
	free(buf);
	return r;
}
