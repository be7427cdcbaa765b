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

int fv_state_encode(const struct fv_coord_state *s, uint8_t **ret_buf, size_t *ret_len)
{
	Fedvigil__V1__CoordState m;
	struct pb_global pg;
	uint8_t *buf;
	size_t n;
	int r;

	memset(&pg, 0, sizeof(pg));
	if (!s || !ret_buf || !ret_len ||
	    (s->kind != FV_ROUND_STATS && s->kind != FV_ROUND_TRAIN))
		return -EINVAL;
	fedvigil__v1__coord_state__init(&m);
	m.round = s->round;
	m.kind = s->kind == FV_ROUND_STATS ? FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_STATS
					   : FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_TRAIN;
	m.have_model = s->have_model;
	if (s->have_model) {
		r = wire_global_fill(&pg, &s->model);
		if (r < 0)
			goto out;
		m.model = &pg.m;
	}
	n = fedvigil__v1__coord_state__get_packed_size(&m);
	r = -E2BIG;
	if (n > FV_MAX_MSG_BYTES)
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
	if (n > FV_MAX_MSG_BYTES)
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
	memset(s, 0, sizeof(*s));
}
