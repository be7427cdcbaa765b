/* The coordinator's state file: a 16-byte header, then a CoordState.
 *
 *   0  "FVST"
 *   4  u32 LE format version (STATE_VERSION)
 *   8  u32 LE payload length
 *  12  u32 LE CRC-32 of the payload
 *  16  payload: protobuf fedvigil.v1.CoordState
 *
 * The CRC catches torn or bit-rotted files that protobuf would happily
 * parse into something else; the payload is still bounds-scanned before
 * unpacking like any message from the network. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "fedvigil/wire.h"
#include "wire/wire-int.h"

#define STATE_MAGIC "FVST"
#define STATE_VERSION 1u
#define STATE_HDR 16

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* n floats as LE bytes: the array itself on LE hosts, else a copy in
 * *ret_tmp (freed by the caller). NULL when out of memory. */
static uint8_t *le_bytes(const float *src, size_t n, uint8_t **ret_tmp)
{
	uint8_t *le;

	*ret_tmp = NULL;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (uint8_t *)(uintptr_t)src;
#endif
	le = malloc(n * 4 + 1);
	if (!le)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t v;

		memcpy(&v, &src[i], 4);
		put_u32(le + 4 * i, v);
	}
	*ret_tmp = le;
	return le;
}

/* LE bytes -> malloc'd floats (n = len / 4); NULL when out of memory. */
static float *le_floats(const uint8_t *src, size_t n)
{
	float *f = malloc(n * sizeof(float) + 1);

	if (!f)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t v = get_u32(src + 4 * i);

		memcpy(&f[i], &v, 4);
	}
	return f;
}

static int agg_from_pb(const Fedvigil__V1__AggState *pa, size_t n_params,
		       struct fv_agg_state *ret)
{
	struct fv_agg_state a;
	enum fv_agg_algo algo;

	memset(&a, 0, sizeof(a));
	a.algo = FV_AGG__MAX;
	if (pa->algorithm && fv_agg_algo_parse(pa->algorithm, &algo) == 0)
		a.algo = (uint32_t)algo;
	a.steps = pa->steps;
	a.dp_rounds = pa->dp_rounds;
	/* Moments belong to the model: same length or none. */
	if ((pa->m.len && pa->m.len != n_params * 4) || (pa->v.len && pa->v.len != n_params * 4) ||
	    (pa->v.len && !pa->m.len) || pa->n_orders != pa->n_rdp ||
	    pa->n_orders > FV_DP_N_ORDERS)
		return -EDOM;
	if (pa->m.len) {
		a.n_params = n_params;
		a.m = le_floats(pa->m.data, n_params);
		if (!a.m)
			goto nomem;
	}
	if (pa->v.len) {
		a.v = le_floats(pa->v.data, n_params);
		if (!a.v)
			goto nomem;
	}
	if (pa->n_orders) {
		a.n_orders = (uint32_t)pa->n_orders;
		a.orders = malloc(a.n_orders * sizeof(double));
		a.rdp = malloc(a.n_orders * sizeof(double));
		if (!a.orders || !a.rdp)
			goto nomem;
		memcpy(a.orders, pa->orders, a.n_orders * sizeof(double));
		memcpy(a.rdp, pa->rdp, a.n_orders * sizeof(double));
	}
	*ret = a;
	return 0;
nomem:
	fv_agg_state_clear(&a);
	return -ENOMEM;
}

int fv_state_encode(const struct fv_coord_state *s, uint8_t **ret_buf, size_t *ret_len)
{
	Fedvigil__V1__CoordState m;
	Fedvigil__V1__AggState pa;
	struct pb_global pg;
	uint8_t *buf, *tmp_m = NULL, *tmp_v = NULL;
	size_t n;
	int r;

	memset(&pg, 0, sizeof(pg));
	if (!s || !ret_buf || !ret_len ||
	    (s->kind != FV_ROUND_STATS && s->kind != FV_ROUND_TRAIN))
		return -EINVAL;
	fedvigil__v1__coord_state__init(&m);
	m.round = s->round;
	m.epoch = s->epoch;
	m.kind = s->kind == FV_ROUND_STATS ? FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_STATS
					   : FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_TRAIN;
	m.have_model = s->have_model;
	if (s->have_model) {
		r = wire_global_fill(&pg, &s->model);
		if (r < 0)
			goto out;
		m.model = &pg.m;
	}
	if (s->have_agg) {
		const struct fv_agg_state *a = &s->agg;

		r = -EINVAL;
		if ((a->n_params && !a->m) || a->n_params > FV_NN_MAX_PARAMS ||
		    a->n_orders > FV_DP_N_ORDERS || (a->n_orders && (!a->orders || !a->rdp)))
			goto out;
		fedvigil__v1__agg_state__init(&pa);
		pa.algorithm = (char *)(uintptr_t)fv_agg_algo_name((enum fv_agg_algo)a->algo);
		pa.steps = a->steps;
		pa.dp_rounds = a->dp_rounds;
		r = -ENOMEM;
		if (a->n_params) {
			pa.m.data = le_bytes(a->m, a->n_params, &tmp_m);
			pa.m.len = a->n_params * 4;
			if (!pa.m.data)
				goto out;
			if (a->v) {
				pa.v.data = le_bytes(a->v, a->n_params, &tmp_v);
				pa.v.len = a->n_params * 4;
				if (!pa.v.data)
					goto out;
			}
		}
		pa.n_orders = pa.n_rdp = a->n_orders;
		pa.orders = a->orders;
		pa.rdp = a->rdp;
		m.agg = &pa;
	}
	n = fedvigil__v1__coord_state__get_packed_size(&m);
	r = -E2BIG;
	if (n > FV_MAX_STATE_BYTES)
		goto out;
	r = -ENOMEM;
	buf = malloc(STATE_HDR + n);
	if (!buf)
		goto out;
	r = -EIO;
	if (fedvigil__v1__coord_state__pack(&m, buf + STATE_HDR) != n) {
		free(buf);
		goto out;
	}
	memcpy(buf, STATE_MAGIC, 4);
	put_u32(buf + 4, STATE_VERSION);
	put_u32(buf + 8, (uint32_t)n);
	put_u32(buf + 12, fv_crc32(0, buf + STATE_HDR, n));
	*ret_buf = buf;
	*ret_len = STATE_HDR + n;
	r = 0;
out:
	wire_global_done(&pg);
	free(tmp_m);
	free(tmp_v);
	return r;
}

int fv_state_decode(const void *buf, size_t len, struct fv_coord_state *ret)
{
	const uint8_t *p = buf;
	Fedvigil__V1__CoordState *m;
	struct fv_coord_state s;
	uint32_t n;
	int r;

	if (!ret || (!buf && len))
		return -EINVAL;
	if (len < STATE_HDR || memcmp(p, STATE_MAGIC, 4) != 0)
		return -EBADMSG;
	if (get_u32(p + 4) != STATE_VERSION)
		return -EPROTO;
	n = get_u32(p + 8);
	if (n != len - STATE_HDR)
		return -EBADMSG; /* truncated, or trailing bytes */
	if (n > FV_MAX_STATE_BYTES)
		return -E2BIG;
	if (fv_crc32(0, p + STATE_HDR, n) != get_u32(p + 12))
		return -EBADMSG;
	r = pb_scan(p + STATE_HDR, n, &pb_rules_state);
	if (r < 0)
		return r;
	m = fedvigil__v1__coord_state__unpack(NULL, n, n ? p + STATE_HDR : (const uint8_t *)"");
	if (!m)
		return -EBADMSG;
	memset(&s, 0, sizeof(s));
	r = -EBADMSG;
	if (m->kind != FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_STATS &&
	    m->kind != FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_TRAIN)
		goto out;
	s.round = m->round;
	s.epoch = m->epoch;
	s.kind = (enum fv_round_kind)m->kind;
	s.have_model = m->have_model;
	if (s.have_model) {
		if (!m->model)
			goto out;
		/* The fleet is the caller's to compare: it logs which one. */
		r = wire_global_from_pb(m->model, NULL, &s.model);
		if (r < 0)
			goto out;
	}
	if (m->agg) {
		r = agg_from_pb(m->agg, s.have_model ? s.model.n_params : 0, &s.agg);
		if (r < 0) {
			fv_global_clear(&s.model);
			goto out;
		}
		s.have_agg = true;
	}
	*ret = s;
	r = 0;
out:
	fedvigil__v1__coord_state__free_unpacked(m, NULL);
	return r;
}

void fv_state_clear(struct fv_coord_state *s)
{
	if (!s)
		return;
	fv_global_clear(&s->model);
	fv_agg_state_clear(&s->agg);
	memset(s, 0, sizeof(*s));
}
