/* Messages of proto/fedvigil.proto <-> the structs of fedvigil/wire.h.
 *
 * Decoding order, cheapest first: size (-E2BIG), a bounds scan of the raw
 * bytes (scan.c), protobuf-c unpack (-EBADMSG), header (schema -EPROTO,
 * names -EBADMSG, fleet -EXDEV), shapes (-EDOM), numbers (-ERANGE). Results
 * are built in a local struct and copied to *ret only at the end, so *ret
 * is untouched on failure. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "fedvigil/wire.h"
#include "wire/wire-int.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#else
#define HOST_LE 0
#endif

/* ---- little-endian float32 arrays ---- */

/* The bytes of n floats, little-endian. On little-endian hosts this is the
 * array itself (*ret_tmp = NULL); otherwise a converted copy in *ret_tmp,
 * which the caller frees. NULL only when out of memory. */
static uint8_t *floats_le(const float *src, size_t n, uint8_t **ret_tmp)
{
	*ret_tmp = NULL;
	if (n == 0)
		return NULL;
	if (HOST_LE)
		return (uint8_t *)(uintptr_t)src; /* protobuf-c only reads it */
	uint8_t *le = malloc(n * 4);

	if (!le)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t v;

		memcpy(&v, &src[i], 4);
		le[4 * i] = (uint8_t)v;
		le[4 * i + 1] = (uint8_t)(v >> 8);
		le[4 * i + 2] = (uint8_t)(v >> 16);
		le[4 * i + 3] = (uint8_t)(v >> 24);
	}
	*ret_tmp = le;
	return le;
}

/* bytes (len % 4 == 0) -> malloc'd float array in *ret, every value finite.
 * -ERANGE on NaN/Inf, -ENOMEM. len == 0 gives *ret = NULL. */
static int floats_from_le(const uint8_t *src, size_t len, float **ret)
{
	size_t n = len / 4;
	float *f;

	*ret = NULL;
	if (n == 0)
		return 0;
	f = malloc(n * sizeof(float));
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint32_t v = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
			     (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;

		memcpy(&f[i], &v, 4);
		if (!isfinite(f[i])) {
			free(f);
			return -ERANGE;
		}
	}
	*ret = f;
	return 0;
}

static bool all_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return false;
	return true;
}

/* ---- header and kind ---- */

static int hdr_fill(Fedvigil__V1__Header *ph, const struct fv_hdr *h)
{
	if (!fv_name_valid(h->fleet) || !fv_name_valid(h->sender))
		return -EINVAL;
	fedvigil__v1__header__init(ph);
	ph->schema_version = FV_SCHEMA_VERSION;
	ph->fleet = (char *)(uintptr_t)h->fleet;
	ph->sender = (char *)(uintptr_t)h->sender;
	ph->round = h->round;
	ph->base_version = h->base_version;
	ph->ts_ms = h->ts_ms;
	return 0;
}

static int hdr_from_pb(const Fedvigil__V1__Header *ph, const char *expect_fleet,
		       struct fv_hdr *ret)
{
	if (!ph)
		return -EBADMSG;
	if (ph->schema_version != FV_SCHEMA_VERSION)
		return -EPROTO;
	if (!fv_name_valid(ph->fleet) || !fv_name_valid(ph->sender))
		return -EBADMSG;
	if (expect_fleet && strcmp(ph->fleet, expect_fleet) != 0)
		return -EXDEV;
	memset(ret, 0, sizeof(*ret));
	ret->schema = ph->schema_version;
	fv_strlcpy(ret->fleet, ph->fleet, sizeof(ret->fleet));
	fv_strlcpy(ret->sender, ph->sender, sizeof(ret->sender));
	ret->round = ph->round;
	ret->base_version = ph->base_version;
	ret->ts_ms = ph->ts_ms;
	return 0;
}

static bool kind_valid(int kind)
{
	return kind == FV_ROUND_STATS || kind == FV_ROUND_TRAIN;
}

/* The proto enum uses the same numbers as enum fv_round_kind. */
static Fedvigil__V1__RoundKind kind_to_pb(enum fv_round_kind k)
{
	return k == FV_ROUND_STATS ? FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_STATS
				   : FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_TRAIN;
}

/* Serialise m into a malloc'd buffer. */
static int pack(const ProtobufCMessage *m, uint8_t **ret_buf, size_t *ret_len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;

	if (n > FV_MAX_MSG_BYTES)
		return -E2BIG;
	/* malloc(0) may return NULL: an all-default message is 0 bytes. */
	buf = malloc(n ? n : 1);
	if (!buf)
		return -ENOMEM;
	if (protobuf_c_message_pack(m, buf) != n) {
		free(buf);
		return -EIO;
	}
	*ret_buf = buf;
	*ret_len = n;
	return 0;
}

/* Size bound, scan, unpack. */
static int unpack(const ProtobufCMessageDescriptor *d, const struct pb_rules *rules,
		  const void *buf, size_t len, ProtobufCMessage **ret)
{
	ProtobufCMessage *m;
	int r;

	if (len > FV_MAX_MSG_BYTES)
		return -E2BIG;
	if (!buf && len)
		return -EINVAL;
	r = pb_scan(buf, len, rules);
	if (r < 0)
		return r;
	m = protobuf_c_message_unpack(d, NULL, len, len ? buf : (const uint8_t *)"");
	if (!m)
		return -EBADMSG;
	*ret = m;
	return 0;
}

/* ---- reject reasons ---- */

enum fv_reject fv_reject_from_errno(int err)
{
	switch (err < 0 ? -err : err) {
	case E2BIG:
		return FV_REJ_TOO_BIG;
	case EBADMSG:
		return FV_REJ_MALFORMED;
	case EPROTO:
		return FV_REJ_SCHEMA;
	case EXDEV:
		return FV_REJ_FLEET;
	case ESTALE:
		return FV_REJ_STALE;
	case EDOM:
		return FV_REJ_SHAPE;
	case ERANGE:
		return FV_REJ_NONFINITE;
	case EALREADY:
		return FV_REJ_DUPLICATE;
	case EPERM:
		return FV_REJ_UNSELECTED;
	case EILSEQ:
		return FV_REJ_COMPRESSION;
	case ENOKEY:
	case EKEYREJECTED:
		return FV_REJ_SIGNATURE;
	default:
		return FV_REJ_OTHER;
	}
}

const char *fv_reject_name(enum fv_reject r)
{
	static const char *const names[FV_REJ__MAX] = {
		[FV_REJ_TOO_BIG] = "too_big",       [FV_REJ_MALFORMED] = "malformed",
		[FV_REJ_SCHEMA] = "schema",         [FV_REJ_FLEET] = "fleet",
		[FV_REJ_STALE] = "stale",           [FV_REJ_SHAPE] = "shape",
		[FV_REJ_NONFINITE] = "nonfinite",   [FV_REJ_DUPLICATE] = "duplicate",
		[FV_REJ_UNSELECTED] = "unselected", [FV_REJ_COMPRESSION] = "compression",
		[FV_REJ_OTHER] = "other",           [FV_REJ_SIGNATURE] = "signature",
	};

	if ((unsigned)r >= FV_REJ__MAX)
		return "other";
	return names[r];
}

/* ---- RoundAnnounce ---- */

int fv_announce_encode(const struct fv_announce *a, uint8_t **ret_buf, size_t *ret_len)
{
	Fedvigil__V1__RoundAnnounce m;
	Fedvigil__V1__Header h;
	Fedvigil__V1__HyperParams hp;
	Fedvigil__V1__Compression comp;
	char **names = NULL;
	int r;

	if (!a || !ret_buf || !ret_len || !kind_valid(a->kind) ||
	    a->n_selected > FV_MAX_SELECTED || (a->n_selected && !a->selected) ||
	    (unsigned)a->comp.enc >= FV_ENC__MAX ||
	    (fv_enc_sparse(a->comp.enc) && !(a->comp.topk > 0.0f && a->comp.topk <= 1.0f)))
		return -EINVAL;
	r = hdr_fill(&h, &a->h);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < a->n_selected; i++)
		if (!fv_name_valid(a->selected[i]))
			return -EINVAL;
	if (a->n_selected) {
		names = malloc(a->n_selected * sizeof(*names));
		if (!names)
			return -ENOMEM;
		for (uint32_t i = 0; i < a->n_selected; i++)
			names[i] = (char *)(uintptr_t)a->selected[i];
	}
	fedvigil__v1__hyper_params__init(&hp);
	hp.epochs = a->hp.epochs;
	hp.batch = a->hp.batch;
	hp.lr = a->hp.lr;
	hp.seed = a->hp.seed;
	hp.min_windows = a->hp.min_windows;
	hp.optimizer = (Fedvigil__V1__Optimizer)a->hp.optim;
	hp.momentum = a->hp.momentum;
	hp.weight_decay = a->hp.weight_decay;
	hp.prox_mu = a->hp.prox_mu;
	fedvigil__v1__round_announce__init(&m);
	m.header = &h;
	m.kind = kind_to_pb(a->kind);
	m.hparams = &hp;
	m.deadline_ms = a->deadline_ms;
	m.epoch = a->epoch;
	m.n_selected = a->n_selected;
	m.selected = names;
	/* fp32 without error feedback is what an absent field means. */
	if (a->comp.enc != FV_ENC_FP32 || a->comp.error_feedback) {
		fedvigil__v1__compression__init(&comp);
		comp.encoding = (Fedvigil__V1__DeltaEncoding)a->comp.enc;
		comp.topk = fv_enc_sparse(a->comp.enc) ? a->comp.topk : 0.0f;
		comp.error_feedback = a->comp.error_feedback;
		m.compression = &comp;
	}
	m.dp_epsilon = a->dp_epsilon;
	r = pack(&m.base, ret_buf, ret_len);
	free(names);
	return r;
}

int fv_announce_decode(const void *buf, size_t len, const char *expect_fleet,
		       struct fv_announce *ret)
{
	Fedvigil__V1__RoundAnnounce *m = NULL;
	struct fv_announce a;
	ProtobufCMessage *pm;
	int r;

	if (!ret)
		return -EINVAL;
	r = unpack(&fedvigil__v1__round_announce__descriptor, &pb_rules_announce, buf, len, &pm);
	if (r < 0)
		return r;
	m = (void *)pm;
	memset(&a, 0, sizeof(a));
	r = hdr_from_pb(m->header, expect_fleet, &a.h);
	if (r < 0)
		goto out;
	r = -EBADMSG;
	if (!kind_valid(m->kind))
		goto out;
	a.kind = (enum fv_round_kind)m->kind;
	if (m->hparams) {
		r = -ERANGE;
		if (!isfinite(m->hparams->lr) || m->hparams->lr < 0.0f ||
		    !isfinite(m->hparams->prox_mu) || m->hparams->prox_mu < 0.0f)
			goto out;
		if (!(m->hparams->momentum >= 0.0f && m->hparams->momentum < 1.0f) ||
		    !(m->hparams->weight_decay >= 0.0f && m->hparams->weight_decay < INFINITY))
			goto out;
		r = -EBADMSG;
		if ((unsigned)m->hparams->optimizer > FV_OPTIM_MOMENTUM)
			goto out;
		a.hp.optim = (enum fv_optim)m->hparams->optimizer;
		a.hp.momentum = m->hparams->momentum;
		a.hp.weight_decay = m->hparams->weight_decay;
		a.hp.epochs = m->hparams->epochs;
		a.hp.batch = m->hparams->batch;
		a.hp.lr = m->hparams->lr;
		a.hp.seed = m->hparams->seed;
		a.hp.min_windows = m->hparams->min_windows;
		a.hp.prox_mu = m->hparams->prox_mu;
	}
	r = -ERANGE;
	if (!isfinite(m->dp_epsilon) || m->dp_epsilon < 0.0f)
		goto out;
	a.dp_epsilon = m->dp_epsilon;
	a.deadline_ms = m->deadline_ms;
	a.epoch = m->epoch;
	if (m->compression) {
		const Fedvigil__V1__Compression *c = m->compression;

		r = -EPROTO; /* an encoding this version does not know */
		if ((unsigned)c->encoding >= FV_ENC__MAX)
			goto out;
		r = -ERANGE;
		if (fv_enc_sparse((enum fv_enc)c->encoding) && !(c->topk > 0.0f && c->topk <= 1.0f))
			goto out;
		a.comp.enc = (enum fv_enc)c->encoding;
		a.comp.topk = fv_enc_sparse(a.comp.enc) ? c->topk : 0.0f;
		a.comp.error_feedback = c->error_feedback;
	}
	r = -EDOM;
	if (m->n_selected > FV_MAX_SELECTED)
		goto out;
	r = -EBADMSG;
	for (size_t i = 0; i < m->n_selected; i++)
		if (!fv_name_valid(m->selected[i]))
			goto out;
	if (m->n_selected) {
		r = -ENOMEM;
		a.selected = calloc(m->n_selected, sizeof(*a.selected));
		if (!a.selected)
			goto out;
		for (size_t i = 0; i < m->n_selected; i++)
			fv_strlcpy(a.selected[i], m->selected[i], FV_NAME_MAX);
		a.n_selected = (uint32_t)m->n_selected;
	}
	*ret = a;
	r = 0;
out:
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

void fv_announce_clear(struct fv_announce *a)
{
	if (!a)
		return;
	free(a->selected);
	memset(a, 0, sizeof(*a));
}

/* ---- ModelUpdate ---- */

/* Borrowing h's bins. */
static void hist_to_pb(Fedvigil__V1__Histogram *ph, const struct fv_hist *h)
{
	fedvigil__v1__histogram__init(ph);
	ph->n_bins = FV_HIST_BINS;
	ph->bins = (uint64_t *)(uintptr_t)h->bins;
	ph->under = h->under;
	ph->over = h->over;
	ph->count = h->count;
	ph->sum = h->sum;
	ph->sumsq = h->sumsq;
}

int fv_update_encode_sent(const struct fv_update *u, float *ret_sent, uint8_t **ret_buf,
			  size_t *ret_len)
{
	Fedvigil__V1__ModelUpdate m;
	Fedvigil__V1__Header h;
	Fedvigil__V1__Histogram hist;
	Fedvigil__V1__ChannelStats *cs = NULL, **csp = NULL;
	struct wire_packed pk;
	int r;

	if (!u || !ret_buf || !ret_len || !kind_valid(u->kind) ||
	    u->n_params > FV_NN_MAX_PARAMS || (u->n_params && !u->delta) ||
	    u->n_channels > FV_MAX_CHANNELS || (u->n_channels && !u->stats) ||
	    (unsigned)u->enc >= FV_ENC__MAX || u->n_col_err > FV_MAX_COLUMNS ||
	    (u->n_col_err && !u->col_err))
		return -EINVAL;
	r = hdr_fill(&h, &u->h);
	if (r < 0)
		return r;
	memset(&pk, 0, sizeof(pk));
	r = wire_pack_delta(u->delta, u->n_params, u->enc, u->topk, u->n_seg, u->seg, ret_sent,
			    &pk);
	if (r < 0)
		return r;
	fedvigil__v1__model_update__init(&m);
	m.header = &h;
	m.kind = kind_to_pb(u->kind);
	m.n_samples = u->n_samples;
	m.loss = u->loss;
	/* An empty delta (STATS) carries no encoding. */
	m.encoding = (Fedvigil__V1__DeltaEncoding)(u->n_params ? u->enc : FV_ENC_FP32);
	m.delta.data = pk.values;
	m.delta.len = pk.values_len;
	if (pk.indices) {
		m.indices.data = pk.indices;
		m.indices.len = pk.indices_len;
	}
	if (pk.bitmap) {
		m.index_bitmap.data = pk.bitmap;
		m.index_bitmap.len = pk.bitmap_len;
	}
	if (u->n_params && fv_enc_sparse(u->enc))
		m.n_params = (uint32_t)u->n_params;
	if (pk.n_seg) {
		m.n_scales = pk.n_seg;
		m.scales = pk.scales;
		/* One segment over everything is what absent segments mean. */
		if (u->n_seg) {
			m.n_segments = pk.n_seg;
			m.segments = pk.seg;
		}
	}
	hist_to_pb(&hist, &u->hist);
	m.histogram = &hist;
	m.n_col_err = u->n_col_err;
	m.col_err = u->col_err;
	if (u->n_channels) {
		r = -ENOMEM;
		cs = calloc(u->n_channels, sizeof(*cs));
		csp = calloc(u->n_channels, sizeof(*csp));
		if (!cs || !csp)
			goto out;
		for (uint32_t i = 0; i < u->n_channels; i++) {
			fedvigil__v1__channel_stats__init(&cs[i]);
			cs[i].count = u->stats[i].count;
			cs[i].sum = u->stats[i].sum;
			cs[i].sumsq = u->stats[i].sumsq;
			cs[i].min = u->stats[i].min;
			cs[i].max = u->stats[i].max;
			csp[i] = &cs[i];
		}
		m.n_stats = u->n_channels;
		m.stats = csp;
	}
	r = pack(&m.base, ret_buf, ret_len);
out:
	free(cs);
	free(csp);
	wire_packed_free(&pk);
	return r;
}

int fv_update_encode(const struct fv_update *u, uint8_t **ret_buf, size_t *ret_len)
{
	return fv_update_encode_sent(u, NULL, ret_buf, ret_len);
}

static int hist_from_pb(const Fedvigil__V1__Histogram *ph, struct fv_hist *ret)
{
	uint64_t total;

	fv_hist_init(ret);
	if (!ph)
		return 0; /* an absent histogram is an empty one */
	if (ph->n_bins != FV_HIST_BINS)
		return -EDOM;
	total = ph->under;
	if (__builtin_add_overflow(total, ph->over, &total))
		return -EDOM;
	for (size_t i = 0; i < FV_HIST_BINS; i++)
		if (__builtin_add_overflow(total, ph->bins[i], &total))
			return -EDOM;
	if (total != ph->count)
		return -EDOM;
	if (!isfinite(ph->sum) || !isfinite(ph->sumsq) || ph->sum < 0.0 || ph->sumsq < 0.0)
		return -ERANGE;
	memcpy(ret->bins, ph->bins, sizeof(ret->bins));
	ret->under = ph->under;
	ret->over = ph->over;
	ret->count = ph->count;
	ret->sum = ph->sum;
	ret->sumsq = ph->sumsq;
	return 0;
}

/* count == 0: min/max are the +inf/-inf of an empty fv_chstats (or 0 from a
 * peer that left them unset); otherwise everything finite, min <= max. */
static int chstats_check(const Fedvigil__V1__ChannelStats *s)
{
	if (!isfinite(s->sum) || !isfinite(s->sumsq) || s->sumsq < 0.0 || isnan(s->min) ||
	    isnan(s->max))
		return -ERANGE;
	if (s->count > 0 && (!isfinite(s->min) || !isfinite(s->max) || s->min > s->max))
		return -ERANGE;
	return 0;
}

int fv_update_decode(const void *buf, size_t len, const char *expect_fleet,
		     struct fv_update *ret)
{
	Fedvigil__V1__ModelUpdate *m = NULL;
	struct fv_update u;
	ProtobufCMessage *pm;
	int r;

	if (!ret)
		return -EINVAL;
	r = unpack(&fedvigil__v1__model_update__descriptor, &pb_rules_update, buf, len, &pm);
	if (r < 0)
		return r;
	m = (void *)pm;
	memset(&u, 0, sizeof(u));
	r = hdr_from_pb(m->header, expect_fleet, &u.h);
	if (r < 0)
		goto out;
	r = -EBADMSG;
	if (!kind_valid(m->kind))
		goto out;
	u.kind = (enum fv_round_kind)m->kind;
	r = -EPROTO; /* an encoding this version does not know */
	if ((unsigned)m->encoding >= FV_ENC__MAX)
		goto out;
	u.enc = (enum fv_enc)m->encoding;
	r = -EDOM;
	if (m->n_stats > FV_MAX_CHANNELS || m->n_col_err > FV_MAX_COLUMNS)
		goto out;
	r = -ERANGE;
	for (size_t i = 0; i < m->n_col_err; i++)
		if (!isfinite(m->col_err[i]) || m->col_err[i] < 0.0)
			goto out;
	r = hist_from_pb(m->histogram, &u.hist);
	if (r < 0)
		goto out;
	r = -ERANGE;
	if (!isfinite(m->loss))
		goto out;
	u.loss = m->loss;
	u.n_samples = m->n_samples;
	for (size_t i = 0; i < m->n_stats; i++) {
		r = chstats_check(m->stats[i]);
		if (r < 0)
			goto out;
	}
	if (m->n_col_err) {
		r = -ENOMEM;
		u.col_err = malloc(m->n_col_err * sizeof(double));
		if (!u.col_err)
			goto out;
		memcpy(u.col_err, m->col_err, m->n_col_err * sizeof(double));
		u.n_col_err = (uint32_t)m->n_col_err;
	}
	{
		struct wire_side side = {
			.enc = u.enc,
			.values = m->delta.data,
			.values_len = m->delta.len,
			.indices = m->indices.data,
			.indices_len = m->indices.len,
			.bitmap = m->index_bitmap.data,
			.bitmap_len = m->index_bitmap.len,
			.scales = m->scales,
			.n_scales = m->n_scales,
			.segments = m->segments,
			.n_segments = m->n_segments,
			.n_params = m->n_params,
		};

		r = wire_unpack_delta(&side, &u.delta, &u.n_params, &u.nnz, &u.n_seg, u.seg);
		if (r < 0) {
			free(u.col_err);
			goto out;
		}
	}
	if (m->n_stats) {
		r = -ENOMEM;
		u.stats = calloc(m->n_stats, sizeof(*u.stats));
		if (!u.stats) {
			free(u.delta);
			free(u.col_err);
			goto out;
		}
		for (size_t i = 0; i < m->n_stats; i++) {
			u.stats[i].count = m->stats[i]->count;
			u.stats[i].sum = m->stats[i]->sum;
			u.stats[i].sumsq = m->stats[i]->sumsq;
			u.stats[i].min = m->stats[i]->min;
			u.stats[i].max = m->stats[i]->max;
		}
		u.n_channels = (uint32_t)m->n_stats;
	}
	*ret = u;
	r = 0;
out:
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

void fv_update_clear(struct fv_update *u)
{
	if (!u)
		return;
	free(u->delta);
	free(u->stats);
	free(u->col_err);
	memset(u, 0, sizeof(*u));
}

int fv_update_check(const struct fv_update *u, enum fv_round_kind expect_kind,
		    uint64_t expect_round, uint64_t expect_base, size_t expect_params,
		    uint32_t expect_channels)
{
	if (!u)
		return -EINVAL;
	if (u->h.round != expect_round || u->h.base_version != expect_base)
		return -ESTALE;
	if (u->kind != expect_kind)
		return -EDOM;
	/* An update carries the payload of its kind and nothing else. */
	if (expect_kind == FV_ROUND_TRAIN && (u->n_params != expect_params || u->n_channels))
		return -EDOM;
	if (expect_kind == FV_ROUND_STATS && (u->n_channels != expect_channels || u->n_params))
		return -EDOM;
	return 0;
}

/* ---- GlobalModel ---- */

uint32_t fv_global_columns(const struct fv_global *g)
{
	return fv_feat_columns(g->features, g->n_channels);
}

int wire_global_fill(struct pb_global *pg, const struct fv_global *g)
{
	const struct fv_model_spec *s = &g->spec;
	int r;

	memset(pg, 0, sizeof(*pg));
	if (fv_model_spec_validate(s) < 0 || g->n_params != fv_model_spec_nparams(s) ||
	    !g->params || g->n_channels == 0 || g->n_channels > FV_MAX_CHANNELS || !g->mean ||
	    !g->std || (g->params_enc != FV_ENC_FP32 && g->params_enc != FV_ENC_FP16) ||
	    memchr(g->aggregation, '\0', sizeof(g->aggregation)) == NULL ||
	    (g->aggregation[0] && !fv_name_valid(g->aggregation)) ||
	    (unsigned)g->features >= FV_FEAT__MAX ||
	    (g->n_col_err && (g->n_col_err != fv_global_columns(g) || !g->col_err)) ||
	    (g->rule.margin != 0.0 && fv_thr_rule_check(&g->rule) < 0) ||
	    !(g->smooth >= 0.0f && g->smooth <= 1.0f))
		return -EINVAL;
	if (s->kind == FV_MODEL_CONV1D &&
	    (s->window != g->window || s->sizes[0] != fv_global_columns(g)))
		return -EINVAL;
	r = hdr_fill(&pg->h, &g->h);
	if (r < 0)
		return r;
	fedvigil__v1__model_spec__init(&pg->spec);
	for (uint32_t l = 0; l <= s->n_layers; l++)
		pg->sizes[l] = s->sizes[l];
	for (uint32_t l = 0; l < s->n_layers; l++)
		pg->acts[l] = s->acts[l];
	pg->spec.n_sizes = s->n_layers + 1;
	pg->spec.sizes = pg->sizes;
	pg->spec.n_acts = s->n_layers;
	pg->spec.acts = pg->acts;
	for (uint32_t l = 0; l < s->n_layers; l++) {
		pg->dropout[l] = s->dropout[l];
		if (s->dropout[l] != 0.0f)
			pg->spec.n_dropout = s->n_layers; /* sent only when used */
	}
	pg->spec.dropout = pg->dropout;
	pg->spec.noise = s->noise;
	pg->spec.kind = s->kind;
	if (s->kind == FV_MODEL_CONV1D) {
		for (uint32_t l = 0; l < s->n_layers; l++) {
			pg->conv[l] = s->conv[l];
			pg->kernel[l] = s->kernel[l];
			pg->stride[l] = s->stride[l];
		}
		pg->spec.window = s->window;
		pg->spec.n_conv = pg->spec.n_kernel = pg->spec.n_stride = s->n_layers;
		pg->spec.conv = pg->conv;
		pg->spec.kernel = pg->kernel;
		pg->spec.stride = pg->stride;
	}

	Fedvigil__V1__GlobalModel *m = &pg->m;

	fedvigil__v1__global_model__init(m);
	m->header = &pg->h;
	m->version = g->version;
	m->epoch = g->epoch;
	m->spec = &pg->spec;
	m->window = g->window;
	m->stride = g->stride;
	m->n_channels = g->n_channels;
	m->n_mean = g->n_channels;
	m->mean = g->mean;
	m->n_std = g->n_channels;
	m->std = g->std;
	if (g->params_enc == FV_ENC_FP16) {
		pg->le = malloc(g->n_params * 2);
		if (!pg->le)
			return -ENOMEM;
		for (size_t i = 0; i < g->n_params; i++) {
			uint16_t hv = wire_f2h(g->params[i]);

			pg->le[2 * i] = (uint8_t)hv;
			pg->le[2 * i + 1] = (uint8_t)(hv >> 8);
		}
		m->params.data = pg->le;
		m->params.len = g->n_params * 2;
		m->params_encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP16;
	} else {
		m->params.data = floats_le(g->params, g->n_params, &pg->le);
		if (!m->params.data)
			return -ENOMEM;
		m->params.len = g->n_params * 4;
	}
	m->threshold = g->threshold;
	m->percentile = g->percentile;
	m->loss = g->loss;
	m->n_agents = g->n_agents;
	m->dp_epsilon = g->dp_epsilon;
	m->dp_delta = g->dp_delta;
	/* protobuf-c packs "" as absent; it only reads the string. */
	m->aggregation = (char *)(uintptr_t)g->aggregation;
	if (g->scores.count > 0) {
		hist_to_pb(&pg->scores, &g->scores);
		m->scores = &pg->scores;
	}
	m->n_col_err = g->n_col_err;
	m->col_err = g->col_err;
	/* A rule with margin 0 is unset (a struct filled by older code): the
	 * message then carries none and decoders take the defaults. */
	if (g->rule.margin != 0.0 || g->calibrate || (g->smooth > 0.0f && g->smooth < 1.0f)) {
		fedvigil__v1__score_rule__init(&pg->rule);
		pg->rule.calibrate = g->calibrate;
		pg->rule.smooth = g->smooth;
		pg->rule.method = (uint32_t)g->rule.method;
		pg->rule.q = (float)g->rule.q;
		pg->rule.k = (float)g->rule.k;
		pg->rule.margin = (float)g->rule.margin;
		m->score_rule = &pg->rule;
	}
	m->features = (uint32_t)g->features;
	return 0;
}

void wire_global_done(struct pb_global *pg)
{
	free(pg->le);
	pg->le = NULL;
}

/* The ScoreRule into g; an absent one gives the behaviour of models from
 * before it existed: no calibration or smoothing, the percentile rule at the
 * model's percentile. -EDOM for an unknown method, -ERANGE for values out of
 * range. */
static int rule_from_pb(const Fedvigil__V1__ScoreRule *pr, float percentile, struct fv_global *g)
{
	g->calibrate = false;
	g->smooth = 1.0f;
	g->rule = (struct fv_thr_rule){ .method = FV_THR_PERCENTILE, .q = 0.995, .k = 3.0,
					.margin = 1.0 };
	if (percentile > 0.0f && percentile < 100.0f)
		g->rule.q = percentile / 100.0;
	if (!pr)
		return 0;
	if (pr->method >= FV_THR__MAX)
		return -EDOM;
	if (!isfinite(pr->smooth) || pr->smooth < 0.0f || pr->smooth > 1.0f)
		return -ERANGE;
	g->calibrate = pr->calibrate;
	g->smooth = pr->smooth > 0.0f ? pr->smooth : 1.0f;
	g->rule = (struct fv_thr_rule){ .method = (enum fv_thr_method)pr->method,
					.q = pr->q,
					.k = pr->k,
					.margin = pr->margin };
	if (!isfinite(pr->q) || !isfinite(pr->k) || !isfinite(pr->margin) ||
	    fv_thr_rule_check(&g->rule) < 0)
		return -ERANGE;
	return 0;
}

int wire_global_from_pb(const Fedvigil__V1__GlobalModel *m, const char *expect_fleet,
			struct fv_global *ret)
{
	const Fedvigil__V1__ModelSpec *ps = m->spec;
	struct fv_global g;
	size_t np, width;
	int r;

	memset(&g, 0, sizeof(g));
	r = hdr_from_pb(m->header, expect_fleet, &g.h);
	if (r < 0)
		return r;
	if (!ps || ps->n_sizes < 2 || ps->n_sizes > FV_NN_MAX_LAYERS + 1 ||
	    ps->n_acts != ps->n_sizes - 1 || (ps->n_dropout && ps->n_dropout != ps->n_acts))
		return -EDOM;
	if (!all_finite(ps->dropout, ps->n_dropout) || !isfinite(ps->noise))
		return -ERANGE;
	g.spec.kind = ps->kind;
	g.spec.noise = ps->noise;
	for (size_t l = 0; l < ps->n_dropout; l++)
		g.spec.dropout[l] = ps->dropout[l];
	g.spec.n_layers = (uint32_t)ps->n_acts;
	for (size_t l = 0; l < ps->n_sizes; l++)
		g.spec.sizes[l] = ps->sizes[l];
	for (size_t l = 0; l < ps->n_acts; l++) {
		if (ps->acts[l] > UINT8_MAX)
			return -EDOM;
		g.spec.acts[l] = (uint8_t)ps->acts[l];
	}
	/* conv1d: one entry per layer in each of conv, kernel, stride; a dense
	 * spec has none of them (the spec's validation checks the rest). */
	if (ps->kind == FV_MODEL_CONV1D ? ps->n_conv != ps->n_acts || ps->n_kernel != ps->n_acts ||
						  ps->n_stride != ps->n_acts
					: ps->window || ps->n_conv || ps->n_kernel || ps->n_stride)
		return -EDOM;
	g.spec.window = ps->window;
	for (size_t l = 0; l < ps->n_conv; l++) {
		if (ps->conv[l] > UINT8_MAX || ps->kernel[l] > UINT8_MAX || ps->stride[l] > UINT8_MAX)
			return -EDOM;
		g.spec.conv[l] = (uint8_t)ps->conv[l];
		g.spec.kernel[l] = (uint8_t)ps->kernel[l];
		g.spec.stride[l] = (uint8_t)ps->stride[l];
	}
	if (fv_model_spec_validate(&g.spec) < 0)
		return -EDOM;
	np = fv_model_spec_nparams(&g.spec);
	if (m->params_encoding != FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP32 &&
	    m->params_encoding != FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP16)
		return -EPROTO;
	width = m->params_encoding == FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP16 ? 2 : 4;
	if (m->features >= FV_FEAT__MAX)
		return -EDOM;
	g.features = (enum fv_feat)m->features;
	if (m->window == 0 || m->stride == 0 || m->n_channels == 0 ||
	    m->n_channels > FV_MAX_CHANNELS ||
	    (g.spec.kind == FV_MODEL_CONV1D
		     ? g.spec.window != m->window ||
			       g.spec.sizes[0] != fv_feat_columns(g.features, m->n_channels)
		     : (uint64_t)m->window * fv_feat_columns(g.features, m->n_channels) !=
			       g.spec.sizes[0]) ||
	    (m->n_col_err && m->n_col_err != fv_feat_columns(g.features, m->n_channels)) ||
	    m->n_mean != m->n_channels || m->n_std != m->n_channels ||
	    m->params.len % width != 0 || m->params.len / width != np)
		return -EDOM;
	if (!all_finite(m->mean, m->n_mean) || !all_finite(m->std, m->n_std) ||
	    !isfinite(m->threshold) || m->threshold < 0.0f || !isfinite(m->percentile) ||
	    m->percentile < 0.0f || m->percentile > 100.0f || !isfinite(m->loss) ||
	    !isfinite(m->dp_epsilon) || m->dp_epsilon < 0.0f || !(m->dp_delta >= 0.0) ||
	    !(m->dp_delta < 1.0))
		return -ERANGE;
	if (m->aggregation && m->aggregation[0] &&
	    (strlen(m->aggregation) >= sizeof(g.aggregation) || !fv_name_valid(m->aggregation)))
		return -EBADMSG;
	for (size_t c = 0; c < m->n_std; c++)
		if (!(m->std[c] > 0.0f))
			return -ERANGE;
	for (size_t c = 0; c < m->n_col_err; c++)
		if (!isfinite(m->col_err[c]) || m->col_err[c] < 0.0f)
			return -ERANGE;
	r = hist_from_pb(m->scores, &g.scores);
	if (r < 0)
		return r;
	r = rule_from_pb(m->score_rule, m->percentile, &g);
	if (r < 0)
		return r;
	g.version = m->version;
	g.epoch = m->epoch;
	g.window = m->window;
	g.stride = m->stride;
	g.n_channels = m->n_channels;
	g.threshold = m->threshold;
	g.percentile = m->percentile;
	g.loss = m->loss;
	g.n_agents = m->n_agents;
	g.dp_epsilon = m->dp_epsilon;
	g.dp_delta = m->dp_delta;
	if (m->aggregation)
		fv_strlcpy(g.aggregation, m->aggregation, sizeof(g.aggregation));
	if (width == 2) {
		g.params = malloc(np * sizeof(float));
		if (!g.params)
			return -ENOMEM;
		for (size_t i = 0; i < np; i++) {
			g.params[i] = wire_h2f((uint16_t)(m->params.data[2 * i] |
							  m->params.data[2 * i + 1] << 8));
			if (!isfinite(g.params[i])) {
				free(g.params);
				return -ERANGE;
			}
		}
		g.params_enc = FV_ENC_FP16;
	} else {
		r = floats_from_le(m->params.data, m->params.len, &g.params);
		if (r < 0)
			return r;
	}
	g.n_params = np;
	g.mean = malloc(g.n_channels * sizeof(float));
	g.std = malloc(g.n_channels * sizeof(float));
	if (!g.mean || !g.std) {
		fv_global_clear(&g);
		return -ENOMEM;
	}
	memcpy(g.mean, m->mean, g.n_channels * sizeof(float));
	memcpy(g.std, m->std, g.n_channels * sizeof(float));
	if (m->n_col_err) {
		g.col_err = malloc(m->n_col_err * sizeof(float));
		if (!g.col_err) {
			fv_global_clear(&g);
			return -ENOMEM;
		}
		memcpy(g.col_err, m->col_err, m->n_col_err * sizeof(float));
		g.n_col_err = (uint32_t)m->n_col_err;
	}
	*ret = g;
	return 0;
}

int fv_global_encode(const struct fv_global *g, uint8_t **ret_buf, size_t *ret_len)
{
	struct pb_global pg;
	int r;

	if (!g || !ret_buf || !ret_len)
		return -EINVAL;
	r = wire_global_fill(&pg, g);
	if (r == 0)
		r = pack(&pg.m.base, ret_buf, ret_len);
	wire_global_done(&pg);
	return r;
}

int fv_global_decode(const void *buf, size_t len, const char *expect_fleet,
		     struct fv_global *ret)
{
	Fedvigil__V1__GlobalModel *m = NULL;
	ProtobufCMessage *pm;
	int r;

	if (!ret)
		return -EINVAL;
	r = unpack(&fedvigil__v1__global_model__descriptor, &pb_rules_global, buf, len, &pm);
	if (r < 0)
		return r;
	m = (void *)pm;
	r = wire_global_from_pb(m, expect_fleet, ret);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return r;
}

void fv_global_clear(struct fv_global *g)
{
	if (!g)
		return;
	free(g->mean);
	free(g->std);
	free(g->params);
	free(g->col_err);
	memset(g, 0, sizeof(*g));
}

static float *dup_floats(const float *src, size_t n, bool *ok)
{
	float *d;

	if (n == 0 || !src)
		return NULL;
	d = malloc(n * sizeof(float));
	if (!d) {
		*ok = false;
		return NULL;
	}
	memcpy(d, src, n * sizeof(float));
	return d;
}

int fv_global_copy(const struct fv_global *src, struct fv_global *ret)
{
	struct fv_global g;
	bool ok = true;

	if (!src || !ret)
		return -EINVAL;
	g = *src;
	g.mean = dup_floats(src->mean, src->n_channels, &ok);
	g.std = dup_floats(src->std, src->n_channels, &ok);
	g.params = dup_floats(src->params, src->n_params, &ok);
	g.col_err = dup_floats(src->col_err, src->n_col_err, &ok);
	if (!ok) {
		fv_global_clear(&g);
		return -ENOMEM;
	}
	*ret = g;
	return 0;
}
