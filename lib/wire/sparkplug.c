/* Sparkplug B payloads and topics (proto/sparkplug_b.proto), and the map of
 * an edge node's metrics onto an agent's channels.
 *
 * Every byte here comes from a device on the plant network: the size is
 * checked first, then pb_scan() walks the encoding against the bounds
 * below without allocating, and only then does protobuf-c unpack it. The
 * results are copied into our structs (names into one buffer) and the
 * protobuf-c message freed. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/sparkplug.h"
#include "fedvigil/util.h"
#include "sparkplug_b.pb-c.h"
#include "wire/wire-int.h"

/* Opaque nested messages and strings a metric may carry: generous, but
 * bounded (the payload as a whole is at most FV_SPB_MAX_PAYLOAD). */
#define BLOB_MAX FV_SPB_MAX_PAYLOAD
#define UUID_MAX 256

#define ONE(f, wt) { .field = (f), .wire_types = (wt), .max_count = 1, .max_bytes = 10 }
#define ONE_LEN(f, max, fl) { .field = (f), .wire_types = PB_LEN, .flags = (fl), .max_count = 1, \
			      .max_bytes = (max) }

static const struct pb_rule metric_rule[] = {
	ONE_LEN(1, FV_SPB_NAME_MAX - 1, PB_F_STRING),
	ONE(2, PB_VARINT),
	ONE(3, PB_VARINT),
	ONE(4, PB_VARINT),
	ONE(5, PB_VARINT),
	ONE(6, PB_VARINT),
	ONE(7, PB_VARINT),
	ONE_LEN(8, BLOB_MAX, 0),
	ONE_LEN(9, BLOB_MAX, 0),
	ONE(10, PB_VARINT),
	ONE(11, PB_VARINT),
	ONE(12, PB_FIXED32),
	ONE(13, PB_FIXED64),
	ONE(14, PB_VARINT),
	ONE_LEN(15, BLOB_MAX, PB_F_STRING),
	ONE_LEN(16, BLOB_MAX, 0),
	ONE_LEN(17, BLOB_MAX, 0),
	ONE_LEN(18, BLOB_MAX, 0),
	ONE_LEN(19, BLOB_MAX, 0),
};
static const struct pb_rules metric_rules = { metric_rule, FV_ARRAY_SIZE(metric_rule), 8 };

static const struct pb_rule payload_rule[] = {
	ONE(1, PB_VARINT),
	{ .field = 2, .wire_types = PB_LEN, .max_count = FV_SPB_MAX_METRICS,
	  .max_bytes = FV_SPB_MAX_PAYLOAD, .err = -E2BIG, .sub = &metric_rules },
	ONE(3, PB_VARINT),
	ONE_LEN(4, UUID_MAX, PB_F_STRING),
	ONE_LEN(5, BLOB_MAX, 0),
};
/* Extensions (fields 6 and up) are allowed, a few. */
static const struct pb_rules payload_rules = { payload_rule, FV_ARRAY_SIZE(payload_rule), 16 };

/* ---- payloads ---- */

void fv_spb_payload_clear(struct fv_spb_payload *p)
{
	if (!p)
		return;
	free(p->metrics);
	free(p->names);
	memset(p, 0, sizeof(*p));
}

static void metric_from_pb(const Fedvigil__Spb__Payload__Metric *pm, struct fv_spb_metric *m)
{
	memset(m, 0, sizeof(*m));
	m->has_alias = pm->has_alias;
	m->alias = pm->alias;
	/* A timestamp beyond int64 is nonsense; treat it as absent. */
	m->ts_ms = pm->has_timestamp && pm->timestamp <= INT64_MAX ? (int64_t)pm->timestamp : -1;
	m->datatype = pm->has_datatype ? pm->datatype : 0;
	m->is_null = pm->has_is_null && pm->is_null;
	switch (pm->value_case) {
	case FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_INT_VALUE:
		m->kind = FV_SPB_V_INT;
		m->u = pm->int_value;
		break;
	case FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_LONG_VALUE:
		m->kind = FV_SPB_V_LONG;
		m->u = pm->long_value;
		break;
	case FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_FLOAT_VALUE:
		m->kind = FV_SPB_V_FLOAT;
		m->d = pm->float_value;
		break;
	case FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_DOUBLE_VALUE:
		m->kind = FV_SPB_V_DOUBLE;
		m->d = pm->double_value;
		break;
	case FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE:
		m->kind = FV_SPB_V_BOOL;
		m->u = pm->boolean_value ? 1 : 0;
		break;
	case FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE__NOT_SET:
		m->kind = FV_SPB_V_NONE;
		break;
	default:
		m->kind = FV_SPB_V_OTHER;
		break;
	}
}

int fv_spb_decode(const void *buf, size_t len, struct fv_spb_payload *ret)
{
	Fedvigil__Spb__Payload *pb;
	struct fv_spb_payload p;
	size_t names_len = 0, off = 0;
	int r;

	if (len > FV_SPB_MAX_PAYLOAD)
		return -E2BIG;
	r = pb_scan(buf, len, &payload_rules);
	if (r < 0)
		return r;
	pb = fedvigil__spb__payload__unpack(NULL, len, buf);
	if (!pb)
		return -EBADMSG;
	memset(&p, 0, sizeof(p));
	p.ts_ms = pb->has_timestamp && pb->timestamp <= INT64_MAX ? (int64_t)pb->timestamp : -1;
	p.has_seq = pb->has_seq;
	p.seq = pb->seq;
	for (size_t i = 0; i < pb->n_metrics; i++)
		if (pb->metrics[i]->name)
			names_len += strlen(pb->metrics[i]->name) + 1;
	if (pb->n_metrics) {
		p.metrics = calloc(pb->n_metrics, sizeof(*p.metrics));
		p.names = malloc(names_len ? names_len : 1);
		if (!p.metrics || !p.names) {
			r = -ENOMEM;
			goto fail;
		}
	}
	p.n_metrics = (uint32_t)pb->n_metrics;
	for (size_t i = 0; i < pb->n_metrics; i++) {
		const Fedvigil__Spb__Payload__Metric *pm = pb->metrics[i];

		metric_from_pb(pm, &p.metrics[i]);
		if (pm->name) {
			size_t n = strlen(pm->name) + 1;

			memcpy(p.names + off, pm->name, n);
			p.metrics[i].name = p.names + off;
			off += n;
		}
	}
	fedvigil__spb__payload__free_unpacked(pb, NULL);
	*ret = p;
	return 0;
fail:
	fedvigil__spb__payload__free_unpacked(pb, NULL);
	fv_spb_payload_clear(&p);
	return r;
}

static int checked(double v, double *ret)
{
	if (!isfinite(v) || fabs(v) > FLT_MAX)
		return -ERANGE;
	*ret = v;
	return 0;
}

int fv_spb_metric_number(const struct fv_spb_metric *m, uint32_t hint, double *ret)
{
	uint32_t dt = m->datatype ? m->datatype : hint;
	uint64_t u = m->u;

	if (m->is_null || m->kind == FV_SPB_V_NONE)
		return -ENODATA;
	if (m->kind == FV_SPB_V_OTHER)
		return -EDOM;
	if (m->kind == FV_SPB_V_FLOAT || m->kind == FV_SPB_V_DOUBLE)
		return checked(m->d, ret);
	if (m->kind == FV_SPB_V_BOOL)
		return checked((double)(u != 0), ret);
	/* An integer field; its meaning comes from the datatype. */
	switch (dt) {
	case FV_SPB_INT8: return checked((double)(int8_t)(uint8_t)u, ret);
	case FV_SPB_INT16: return checked((double)(int16_t)(uint16_t)u, ret);
	case FV_SPB_INT32: return checked((double)(int32_t)(uint32_t)u, ret);
	case FV_SPB_INT64: return checked((double)(int64_t)u, ret);
	case FV_SPB_UINT8: return checked((double)(uint8_t)u, ret);
	case FV_SPB_UINT16: return checked((double)(uint16_t)u, ret);
	case FV_SPB_UINT32: return checked((double)(uint32_t)u, ret);
	case FV_SPB_UINT64: return checked((double)u, ret);
	case FV_SPB_BOOLEAN: return checked((double)(u != 0), ret);
	case FV_SPB_UNKNOWN: return checked((double)u, ret);
	default: return -EDOM; /* DateTime, String, ... in an integer field */
	}
}

int fv_spb_encode(const struct fv_spb_payload *p, uint8_t **ret_buf, size_t *ret_len)
{
	Fedvigil__Spb__Payload pb = FEDVIGIL__SPB__PAYLOAD__INIT;
	Fedvigil__Spb__Payload__Metric *pm = NULL, **pp = NULL;
	uint8_t *buf = NULL;
	size_t len;
	int r = 0;

	if (p->n_metrics > FV_SPB_MAX_METRICS)
		return -E2BIG;
	if (p->n_metrics) {
		pm = calloc(p->n_metrics, sizeof(*pm));
		pp = calloc(p->n_metrics, sizeof(*pp));
		if (!pm || !pp) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (uint32_t i = 0; i < p->n_metrics; i++) {
		const struct fv_spb_metric *m = &p->metrics[i];
		Fedvigil__Spb__Payload__Metric *x = &pm[i];

		fedvigil__spb__payload__metric__init(x);
		if (m->name) {
			if (strlen(m->name) >= FV_SPB_NAME_MAX) {
				r = -EINVAL;
				goto out;
			}
			x->name = (char *)(uintptr_t)m->name; /* protobuf-c only reads it */
		}
		x->has_alias = m->has_alias;
		x->alias = m->alias;
		x->has_timestamp = m->ts_ms >= 0;
		x->timestamp = (uint64_t)(m->ts_ms >= 0 ? m->ts_ms : 0);
		x->has_datatype = m->datatype != 0;
		x->datatype = m->datatype;
		x->has_is_null = m->is_null;
		x->is_null = m->is_null;
		switch (m->is_null ? FV_SPB_V_NONE : m->kind) {
		case FV_SPB_V_NONE:
			break;
		case FV_SPB_V_INT:
			x->value_case = FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_INT_VALUE;
			x->int_value = (uint32_t)m->u;
			break;
		case FV_SPB_V_LONG:
			x->value_case = FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_LONG_VALUE;
			x->long_value = m->u;
			break;
		case FV_SPB_V_FLOAT:
			x->value_case = FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_FLOAT_VALUE;
			x->float_value = (float)m->d;
			break;
		case FV_SPB_V_DOUBLE:
			x->value_case = FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_DOUBLE_VALUE;
			x->double_value = m->d;
			break;
		case FV_SPB_V_BOOL:
			x->value_case = FEDVIGIL__SPB__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE;
			x->boolean_value = m->u != 0;
			break;
		default:
			r = -EINVAL;
			goto out;
		}
		pp[i] = x;
	}
	pb.has_timestamp = p->ts_ms >= 0;
	pb.timestamp = (uint64_t)(p->ts_ms >= 0 ? p->ts_ms : 0);
	pb.has_seq = p->has_seq;
	pb.seq = p->seq;
	pb.n_metrics = p->n_metrics;
	pb.metrics = pp;
	len = fedvigil__spb__payload__get_packed_size(&pb);
	if (len > FV_SPB_MAX_PAYLOAD) {
		r = -E2BIG;
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	fedvigil__spb__payload__pack(&pb, buf);
	*ret_buf = buf;
	*ret_len = len;
out:
	free(pm);
	free(pp);
	return r;
}

int fv_spb_rebirth_request(int64_t now_ms, uint8_t **ret_buf, size_t *ret_len)
{
	struct fv_spb_metric m = { .name = "Node Control/Rebirth", .ts_ms = now_ms,
				   .datatype = FV_SPB_BOOLEAN, .kind = FV_SPB_V_BOOL, .u = 1 };
	struct fv_spb_payload p = { .ts_ms = now_ms, .n_metrics = 1, .metrics = &m };

	return fv_spb_encode(&p, ret_buf, ret_len);
}

/* ---- topics ---- */

static const char *const type_names[] = {
	[FV_SPB_NBIRTH] = "NBIRTH", [FV_SPB_NDEATH] = "NDEATH", [FV_SPB_DBIRTH] = "DBIRTH",
	[FV_SPB_DDEATH] = "DDEATH", [FV_SPB_NDATA] = "NDATA",	[FV_SPB_DDATA] = "DDATA",
	[FV_SPB_NCMD] = "NCMD",	    [FV_SPB_DCMD] = "DCMD",	[FV_SPB_STATE] = "STATE",
};

bool fv_spb_id_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < FV_SPB_ID_MAX && !strpbrk(s, "/+#");
}

static bool is_device_type(enum fv_spb_msg_type t)
{
	return t == FV_SPB_DBIRTH || t == FV_SPB_DDEATH || t == FV_SPB_DDATA || t == FV_SPB_DCMD;
}

/* Copy topic level [s, e) into dst (FV_SPB_ID_MAX). */
static int level(const char *s, const char *e, char *dst)
{
	size_t n = (size_t)(e - s);

	if (n == 0 || n >= FV_SPB_ID_MAX || memchr(s, '+', n) || memchr(s, '#', n))
		return -EINVAL;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

int fv_spb_topic_parse(const char *topic, struct fv_spb_topic *ret)
{
	static const size_t ns = sizeof(FV_SPB_NAMESPACE) - 1;
	const char *lv[6];
	struct fv_spb_topic t;
	int n = 0;

	if (strncmp(topic, FV_SPB_NAMESPACE "/", ns + 1) != 0)
		return -EINVAL;
	lv[n++] = topic + ns + 1;
	for (const char *p = lv[0]; *p; p++)
		if (*p == '/') {
			if (n >= 5)
				return -EINVAL;
			lv[n++] = p + 1;
		}
	lv[n] = topic + strlen(topic) + 1; /* one past the end, as if a '/' followed */
	memset(&t, 0, sizeof(t));
	if (n == 2 && strncmp(lv[0], "STATE/", 6) == 0) {
		t.type = FV_SPB_STATE;
		if (level(lv[1], lv[2] - 1, t.node) < 0)
			return -EINVAL;
		*ret = t;
		return 0;
	}
	if (n < 3 || n > 4 || level(lv[0], lv[1] - 1, t.group) < 0)
		return -EINVAL;
	size_t tl = (size_t)(lv[2] - 1 - lv[1]);
	bool found = false;

	for (size_t i = 0; i < FV_ARRAY_SIZE(type_names) && !found; i++)
		if (i != FV_SPB_STATE && strlen(type_names[i]) == tl &&
		    strncmp(lv[1], type_names[i], tl) == 0) {
			t.type = (enum fv_spb_msg_type)i;
			found = true;
		}
	if (!found || level(lv[2], lv[3] - 1, t.node) < 0)
		return -EINVAL;
	if (is_device_type(t.type) != (n == 4))
		return -EINVAL;
	if (n == 4 && level(lv[3], lv[4] - 1, t.device) < 0)
		return -EINVAL;
	*ret = t;
	return 0;
}

bool fv_spb_topic(char *buf, size_t len, enum fv_spb_msg_type type, const char *group,
		  const char *node, const char *device)
{
	int n;

	if (type == FV_SPB_STATE || (unsigned)type >= FV_ARRAY_SIZE(type_names) ||
	    !fv_spb_id_valid(group) || !fv_spb_id_valid(node) ||
	    (is_device_type(type) && !fv_spb_id_valid(device)))
		return false;
	if (is_device_type(type))
		n = snprintf(buf, len, FV_SPB_NAMESPACE "/%s/%s/%s/%s", group, type_names[type], node,
			     device);
	else
		n = snprintf(buf, len, FV_SPB_NAMESPACE "/%s/%s/%s", group, type_names[type], node);
	return n > 0 && (size_t)n < len;
}

/* ---- the map ---- */

/* What one channel reads, and what the births taught about it. */
struct chan {
	bool used;
	char device[FV_SPB_ID_MAX];   /* "" = node-level metric */
	char metric[FV_SPB_NAME_MAX];
	bool has_alias;               /* learnt from the last birth of its scope */
	uint64_t alias;
	uint32_t datatype;            /* from the birth, 0 = unknown */
};

struct fv_spb_map {
	char group[FV_SPB_ID_MAX];
	char node[FV_SPB_ID_MAX];
	uint32_t C;
	struct chan *ch;              /* C */
	bool have_seq;
	uint64_t last_seq;
	bool wants_rebirth;
	struct fv_spb_stats st;
};

struct fv_spb_map *fv_spb_map_new(const char *group, const char *node, uint32_t C)
{
	struct fv_spb_map *m;

	if (!fv_spb_id_valid(group) || !fv_spb_id_valid(node) || C == 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->ch = calloc(C, sizeof(*m->ch));
	if (!m->ch) {
		free(m);
		return NULL;
	}
	fv_strlcpy(m->group, group, sizeof(m->group));
	fv_strlcpy(m->node, node, sizeof(m->node));
	m->C = C;
	return m;
}

void fv_spb_map_free(struct fv_spb_map *m)
{
	if (!m)
		return;
	free(m->ch);
	free(m);
}

int fv_spb_map_add(struct fv_spb_map *m, uint32_t ch, const char *device, const char *metric)
{
	if (ch >= m->C || !metric || !*metric || strlen(metric) >= FV_SPB_NAME_MAX ||
	    (device[0] && !fv_spb_id_valid(device)))
		return -EINVAL;
	for (uint32_t i = 0; i < m->C; i++)
		if (i != ch && m->ch[i].used && strcmp(m->ch[i].device, device) == 0 &&
		    strcmp(m->ch[i].metric, metric) == 0)
			return -EEXIST;
	m->ch[ch].used = true;
	fv_strlcpy(m->ch[ch].device, device, sizeof(m->ch[ch].device));
	fv_strlcpy(m->ch[ch].metric, metric, sizeof(m->ch[ch].metric));
	m->ch[ch].has_alias = false;
	return 0;
}

bool fv_spb_map_wants_rebirth(const struct fv_spb_map *m)
{
	return m->wants_rebirth;
}

void fv_spb_map_get_stats(const struct fv_spb_map *m, struct fv_spb_stats *ret)
{
	*ret = m->st;
}

int fv_spb_map_filters(const struct fv_spb_map *m, char *ret_node, char *ret_devices)
{
	int a = snprintf(ret_node, FV_SPB_TOPIC_MAX, FV_SPB_NAMESPACE "/%s/+/%s", m->group, m->node);
	int b = snprintf(ret_devices, FV_SPB_TOPIC_MAX, FV_SPB_NAMESPACE "/%s/+/%s/+", m->group,
			 m->node);

	return a > 0 && a < FV_SPB_TOPIC_MAX && b > 0 && b < FV_SPB_TOPIC_MAX ? 0 : -EINVAL;
}

/* Forget the aliases of a scope: all (NBIRTH, NDEATH) or one device. */
static void forget(struct fv_spb_map *m, const char *device, bool all)
{
	for (uint32_t i = 0; i < m->C; i++)
		if (all || strcmp(m->ch[i].device, device) == 0) {
			m->ch[i].has_alias = false;
			m->ch[i].datatype = 0;
		}
}

/* The channel of a metric of scope `device`, or -1. */
static int lookup(struct fv_spb_map *m, const char *device, const struct fv_spb_metric *x)
{
	for (uint32_t i = 0; i < m->C; i++) {
		const struct chan *c = &m->ch[i];

		if (!c->used || strcmp(c->device, device) != 0)
			continue;
		if (x->name ? strcmp(c->metric, x->name) == 0
			    : x->has_alias && c->has_alias && c->alias == x->alias)
			return (int)i;
	}
	return -1;
}

static void learn(struct fv_spb_map *m, const char *device, const struct fv_spb_payload *p)
{
	for (uint32_t k = 0; k < p->n_metrics; k++) {
		const struct fv_spb_metric *x = &p->metrics[k];
		int i;

		if (!x->name)
			continue; /* a birth metric must have its name */
		i = lookup(m, device, x);
		if (i < 0)
			continue;
		m->ch[i].has_alias = x->has_alias;
		m->ch[i].alias = x->alias;
		m->ch[i].datatype = x->datatype;
	}
}

static void deliver(struct fv_spb_map *m, const char *device, const struct fv_spb_payload *p,
		    fv_spb_value_fn fn, void *userdata, int *delivered)
{
	for (uint32_t k = 0; k < p->n_metrics; k++) {
		const struct fv_spb_metric *x = &p->metrics[k];
		int i = lookup(m, device, x);
		double v;

		if (i < 0) {
			if (!x->name && x->has_alias) {
				/* An alias in a scope some channel reads, while no
				 * birth of that scope gave any of them an alias: we
				 * missed the birth. Count it and ask for one. (Scopes
				 * no channel reads are just not ours.) */
				bool used = false, known = false;

				for (uint32_t j = 0; j < m->C; j++)
					if (m->ch[j].used && strcmp(m->ch[j].device, device) == 0) {
						used = true;
						known = known || m->ch[j].has_alias;
					}
				if (used && !known) {
					m->st.unknown_alias++;
					m->wants_rebirth = true;
					continue;
				}
			}
			m->st.unmapped++;
			continue;
		}
		if (fv_spb_metric_number(x, m->ch[i].datatype, &v) < 0) {
			m->st.not_numeric++;
			continue;
		}
		fn((uint32_t)i, v, x->ts_ms >= 0 ? x->ts_ms : p->ts_ms, userdata);
		m->st.values++;
		(*delivered)++;
	}
}

int fv_spb_map_message(struct fv_spb_map *m, const char *topic, const void *payload, size_t len,
		       fv_spb_value_fn fn, void *userdata)
{
	struct fv_spb_topic t;
	struct fv_spb_payload p;
	int r, delivered = 0;

	if (fv_spb_topic_parse(topic, &t) < 0)
		return -EINVAL;
	if (t.type == FV_SPB_STATE || t.type == FV_SPB_NCMD || t.type == FV_SPB_DCMD ||
	    strcmp(t.group, m->group) != 0 || strcmp(t.node, m->node) != 0)
		return -ENOENT;
	m->st.messages++;
	r = fv_spb_decode(payload, len, &p);
	if (r < 0) {
		m->st.decode_errors++;
		return r;
	}
	/* Every message of the node but NDEATH carries the next seq (mod 256);
	 * NBIRTH starts the count again. */
	if (t.type != FV_SPB_NDEATH && p.has_seq) {
		if (t.type != FV_SPB_NBIRTH && m->have_seq && p.seq != (m->last_seq + 1) % 256)
			m->st.seq_gaps++;
		m->have_seq = true;
		m->last_seq = p.seq;
	}
	switch (t.type) {
	case FV_SPB_NBIRTH:
		forget(m, "", true);
		m->wants_rebirth = false;
		learn(m, "", &p);
		m->st.births++;
		deliver(m, "", &p, fn, userdata, &delivered);
		break;
	case FV_SPB_DBIRTH:
		forget(m, t.device, false);
		learn(m, t.device, &p);
		m->st.births++;
		deliver(m, t.device, &p, fn, userdata, &delivered);
		break;
	case FV_SPB_NDEATH:
		forget(m, "", true);
		m->have_seq = false;
		m->st.deaths++;
		break;
	case FV_SPB_DDEATH:
		forget(m, t.device, false);
		m->st.deaths++;
		break;
	case FV_SPB_NDATA:
		deliver(m, "", &p, fn, userdata, &delivered);
		break;
	case FV_SPB_DDATA:
		deliver(m, t.device, &p, fn, userdata, &delivered);
		break;
	default:
		break;
	}
	fv_spb_payload_clear(&p);
	return delivered;
}
