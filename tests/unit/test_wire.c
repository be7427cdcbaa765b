/* Unit tests for lib/wire: message round trips, every rejection with its
 * code, fv_update_check, the state file, topics, and a seeded mutation loop
 * over valid encodings (run it under ASan+UBSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/nn.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"
#include "fedvigil.pb-c.h"
#include "wire/wire-int.h"

#define FLEET "plant-1"
#define AGENT "pump.3"
#define WIN 2
#define CH 4

/* ---- fixtures ---- */

static void fill_hdr(struct fv_hdr *h, const char *sender)
{
	memset(h, 0, sizeof(*h));
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, FLEET, sizeof(h->fleet));
	fv_strlcpy(h->sender, sender, sizeof(h->sender));
	h->round = 12;
	h->base_version = 7;
	h->ts_ms = 1767225600123LL;
}

/* TRAIN update with P params, or STATS update with CH channels. Arrays are
 * malloc'd: free with fv_update_clear(). */
static void make_update(struct fv_update *u, enum fv_round_kind kind, size_t P)
{
	memset(u, 0, sizeof(*u));
	fill_hdr(&u->h, AGENT);
	u->kind = kind;
	u->n_samples = 1234;
	u->loss = 0.0625f;
	fv_hist_init(&u->hist);
	for (int i = 0; i < 50; i++)
		assert_int_equal(fv_hist_add(&u->hist, 0.001 * (i + 1) * (i + 1)), 0);
	assert_int_equal(fv_hist_add(&u->hist, 0.0), 0);
	assert_int_equal(fv_hist_add(&u->hist, 5e6), 0);
	if (kind == FV_ROUND_TRAIN) {
		u->n_params = P;
		u->delta = malloc(P * sizeof(float));
		assert_non_null(u->delta);
		for (size_t i = 0; i < P; i++)
			u->delta[i] = (float)((double)i * 0.01 - 0.3);
	} else {
		u->n_channels = CH;
		u->stats = calloc(CH, sizeof(*u->stats));
		assert_non_null(u->stats);
		for (uint32_t c = 0; c < CH; c++) {
			fv_chstats_init(&u->stats[c]);
			for (int k = 0; k < 10; k++)
				fv_chstats_add(&u->stats[c], c * 10.0 + k * 0.5);
		}
		fv_chstats_init(&u->stats[CH - 1]); /* an empty channel: +-inf */
	}
}

/* 8-4-2-4-8 autoencoder over W=2 x C=4. */
static void make_global(struct fv_global *g)
{
	static const uint32_t hidden[] = { 4, 2, 4 };

	memset(g, 0, sizeof(*g));
	fill_hdr(&g->h, "coord");
	g->version = 8;
	assert_int_equal(fv_model_spec_autoencoder(WIN * CH, hidden, 3, FV_ACT_TANH,
						   FV_ACT_LINEAR, &g->spec), 0);
	g->window = WIN;
	g->stride = 1;
	g->n_channels = CH;
	g->mean = malloc(CH * sizeof(float));
	g->std = malloc(CH * sizeof(float));
	assert_non_null(g->mean);
	assert_non_null(g->std);
	for (uint32_t c = 0; c < CH; c++) {
		g->mean[c] = 10.0f * (float)c - 3.5f;
		g->std[c] = 0.5f + (float)c;
	}
	g->n_params = fv_model_spec_nparams(&g->spec);
	g->params = malloc(g->n_params * sizeof(float));
	assert_non_null(g->params);
	for (size_t i = 0; i < g->n_params; i++)
		g->params[i] = (float)sin((double)i) * 0.25f;
	g->threshold = 0.042f;
	g->percentile = 99.5f;
	g->loss = 0.0125f;
	g->n_agents = 3;
	g->dp_epsilon = 1.75f;
	g->dp_delta = 1e-5;
	snprintf(g->aggregation, sizeof(g->aggregation), "trimmed_mean");
}

static void make_announce(struct fv_announce *a, uint32_t n_sel)
{
	memset(a, 0, sizeof(*a));
	fill_hdr(&a->h, "coord");
	a->kind = FV_ROUND_TRAIN;
	a->hp.epochs = 3;
	a->hp.batch = 32;
	a->hp.lr = 0.001f;
	a->hp.seed = 0xfeedface12345678ull;
	a->hp.min_windows = 100;
	a->hp.optim = FV_OPTIM_MOMENTUM;
	a->hp.momentum = 0.85f;
	a->hp.weight_decay = 1e-4f;
	a->hp.prox_mu = 0.01f;
	a->dp_epsilon = 0.5f;
	a->deadline_ms = 1767225660000LL;
	a->n_selected = n_sel;
	if (n_sel) {
		a->selected = calloc(n_sel, sizeof(*a->selected));
		assert_non_null(a->selected);
		for (uint32_t i = 0; i < n_sel; i++)
			snprintf(a->selected[i], FV_NAME_MAX, "agent-%u", i);
	}
}

static void assert_hdr_equal(const struct fv_hdr *a, const struct fv_hdr *b)
{
	assert_int_equal(a->schema, b->schema);
	assert_string_equal(a->fleet, b->fleet);
	assert_string_equal(a->sender, b->sender);
	assert_true(a->round == b->round);
	assert_true(a->base_version == b->base_version);
	assert_true(a->ts_ms == b->ts_ms);
}

static void assert_global_equal(const struct fv_global *a, const struct fv_global *b)
{
	assert_hdr_equal(&a->h, &b->h);
	assert_true(a->version == b->version);
	assert_memory_equal(&a->spec, &b->spec, sizeof(a->spec));
	assert_int_equal(a->window, b->window);
	assert_int_equal(a->stride, b->stride);
	assert_int_equal(a->n_channels, b->n_channels);
	assert_memory_equal(a->mean, b->mean, a->n_channels * sizeof(float));
	assert_memory_equal(a->std, b->std, a->n_channels * sizeof(float));
	assert_int_equal(a->n_params, b->n_params);
	assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
	assert_true(a->threshold == b->threshold);
	assert_true(a->percentile == b->percentile);
	assert_true(a->loss == b->loss);
	assert_int_equal(a->n_agents, b->n_agents);
	assert_true(a->dp_epsilon == b->dp_epsilon);
	assert_true(a->dp_delta == b->dp_delta);
	assert_string_equal(a->aggregation, b->aggregation);
}

/* ---- protobuf-level tampering: decode our encoding with protobuf-c,
 * change a field, pack again. ---- */

static void *pb_of(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
	void *m = protobuf_c_message_unpack(d, NULL, len, buf);

	assert_non_null(m);
	return m;
}

static void repack(const void *m, uint8_t **ret_buf, size_t *ret_len)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	*ret_buf = malloc(n + 1);
	assert_non_null(*ret_buf);
	assert_int_equal(protobuf_c_message_pack(m, *ret_buf), n);
	*ret_len = n;
}

/* Decode as an update and expect err; *ret must stay untouched. */
static void expect_update(const uint8_t *buf, size_t len, const char *fleet, int err)
{
	struct fv_update u, sentinel;

	memset(&sentinel, 0xa5, sizeof(sentinel));
	u = sentinel;
	assert_int_equal(fv_update_decode(buf, len, fleet, &u), err);
	if (err < 0)
		assert_memory_equal(&u, &sentinel, sizeof(u));
	else
		fv_update_clear(&u);
}

static void expect_global(const uint8_t *buf, size_t len, const char *fleet, int err)
{
	struct fv_global g, sentinel;

	memset(&sentinel, 0x5a, sizeof(sentinel));
	g = sentinel;
	assert_int_equal(fv_global_decode(buf, len, fleet, &g), err);
	if (err < 0)
		assert_memory_equal(&g, &sentinel, sizeof(g));
	else
		fv_global_clear(&g);
}

static void expect_announce(const uint8_t *buf, size_t len, const char *fleet, int err)
{
	struct fv_announce a, sentinel;

	memset(&sentinel, 0x3c, sizeof(sentinel));
	a = sentinel;
	assert_int_equal(fv_announce_decode(buf, len, fleet, &a), err);
	if (err < 0)
		assert_memory_equal(&a, &sentinel, sizeof(a));
	else
		fv_announce_clear(&a);
}

/* ---- round trips ---- */

static void test_update_roundtrip(void **state)
{
	enum fv_round_kind kinds[] = { FV_ROUND_TRAIN, FV_ROUND_STATS };

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		struct fv_update u, d;
		uint8_t *buf;
		size_t len;

		make_update(&u, kinds[k], 97);
		assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
		memset(&d, 0, sizeof(d));
		assert_int_equal(fv_update_decode(buf, len, FLEET, &d), 0);
		assert_hdr_equal(&d.h, &u.h);
		assert_int_equal(d.kind, u.kind);
		assert_true(d.n_samples == u.n_samples);
		assert_true(d.loss == u.loss);
		assert_int_equal(d.n_params, u.n_params);
		if (u.n_params)
			assert_memory_equal(d.delta, u.delta, u.n_params * sizeof(float));
		else
			assert_null(d.delta);
		assert_memory_equal(&d.hist, &u.hist, sizeof(u.hist));
		assert_int_equal(d.n_channels, u.n_channels);
		for (uint32_t c = 0; c < u.n_channels; c++) {
			assert_true(d.stats[c].count == u.stats[c].count);
			assert_true(d.stats[c].sum == u.stats[c].sum);
			assert_true(d.stats[c].sumsq == u.stats[c].sumsq);
			assert_true(d.stats[c].min == u.stats[c].min);
			assert_true(d.stats[c].max == u.stats[c].max);
		}
		/* NULL expect_fleet: any fleet. */
		expect_update(buf, len, NULL, 0);
		free(buf);
		fv_update_clear(&d);
		fv_update_clear(&u);
		assert_null(u.delta);
	}
}

static void test_global_roundtrip(void **state)
{
	struct fv_global g, d, c;
	uint8_t *buf;
	size_t len;

	(void)state;
	make_global(&g);
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_global_decode(buf, len, FLEET, &d), 0);
	assert_global_equal(&d, &g);
	/* Deep copy: equal, and independent of the original. */
	assert_int_equal(fv_global_copy(&d, &c), 0);
	assert_ptr_not_equal(c.params, d.params);
	fv_global_clear(&d);
	assert_global_equal(&c, &g);
	fv_global_clear(&c);
	fv_global_clear(&g);
	fv_global_clear(NULL);
	free(buf);
}

/* Dropout, noise and the kind travel in ModelSpec (fields 20..22). */
static void test_global_regularized_roundtrip(void **state)
{
	struct fv_global g, d;
	uint8_t *buf;
	size_t len;

	(void)state;
	make_global(&g);
	assert_int_equal(fv_model_spec_regularize(&g.spec, 0.2f, 0.1f), 0);
	g.spec.dropout[1] = 0.5f; /* per layer */
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_global_decode(buf, len, FLEET, &d), 0);
	assert_global_equal(&d, &g);
	assert_true(d.spec.dropout[0] == 0.2f && d.spec.dropout[1] == 0.5f);
	assert_true(d.spec.dropout[3] == 0.0f && d.spec.noise == 0.1f);
	assert_int_equal(d.spec.kind, FV_MODEL_DENSE);
	fv_global_clear(&d);
	free(buf);
	fv_global_clear(&g);
}

/* Detection fields (45-48): features, the fleet's scores and column
 * errors, the score rule. Absent in an older model: the defaults. */
static void test_global_detection_roundtrip(void **state)
{
	static const uint32_t hidden[] = { 4 };
	Fedvigil__V1__GlobalModel *m;
	struct fv_global g, d;
	uint8_t *buf, *b2;
	size_t len, l2;

	(void)state;
	make_global(&g);
	g.features = FV_FEAT_BOTH;
	assert_int_equal(fv_model_spec_autoencoder(WIN * 2 * CH, hidden, 1, FV_ACT_TANH,
						   FV_ACT_LINEAR, &g.spec), 0);
	free(g.params);
	g.n_params = fv_model_spec_nparams(&g.spec);
	g.params = calloc(g.n_params, sizeof(float));
	assert_non_null(g.params);
	g.calibrate = true;
	g.smooth = 0.25f;
	g.rule = (struct fv_thr_rule){ .method = FV_THR_POT, .q = 0.99f, .k = 2.5f, .margin = 1.5f };
	fv_hist_init(&g.scores);
	for (int i = 0; i < 30; i++)
		fv_hist_add(&g.scores, 0.1 * (i + 1));
	g.n_col_err = 2 * CH;
	g.col_err = malloc(g.n_col_err * sizeof(float));
	assert_non_null(g.col_err);
	for (uint32_t c = 0; c < g.n_col_err; c++)
		g.col_err[c] = 0.5f + (float)c;
	assert_int_equal(fv_global_columns(&g), 2 * CH);
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_global_decode(buf, len, FLEET, &d), 0);
	assert_global_equal(&d, &g);
	assert_int_equal(d.features, FV_FEAT_BOTH);
	assert_true(d.calibrate && d.smooth == 0.25f);
	assert_int_equal(d.rule.method, FV_THR_POT);
	assert_true(d.rule.q == 0.99f && d.rule.k == 2.5f && d.rule.margin == 1.5f);
	assert_memory_equal(&d.scores, &g.scores, sizeof(g.scores));
	assert_int_equal(d.n_col_err, 2 * CH);
	assert_memory_equal(d.col_err, g.col_err, g.n_col_err * sizeof(float));
	fv_global_clear(&d);

	/* Tampering: an unknown features value, a width that does not match
	 * them, column errors of another length or not finite, a bad rule. */
	m = pb_of(&fedvigil__v1__global_model__descriptor, buf, len);
	m->features = FV_FEAT__MAX;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->features = FV_FEAT_VALUES; /* input 2*W*C but values want W*C */
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->features = FV_FEAT_BOTH;
	m->n_col_err = CH;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->n_col_err = 2 * CH;
	m->col_err[1] = NAN;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->col_err[1] = -1.0f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->col_err[1] = 1.0f;
	m->score_rule->method = FV_THR__MAX;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->score_rule->method = FV_THR_PERCENTILE;
	m->score_rule->q = 1.0f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->score_rule->q = 0.9f;
	m->score_rule->smooth = 1.5f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->score_rule->smooth = 0.5f;
	m->scores->count++;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->scores->count--;
	/* No rule, no scores: what models from before these fields mean. */
	Fedvigil__V1__ScoreRule *rule = m->score_rule;
	Fedvigil__V1__Histogram *scores = m->scores;

	m->score_rule = NULL;
	m->scores = NULL;
	repack(m, &b2, &l2);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_global_decode(b2, l2, FLEET, &d), 0);
	assert_false(d.calibrate);
	assert_true(d.smooth == 1.0f);
	assert_int_equal(d.rule.method, FV_THR_PERCENTILE);
	assert_true(fabs(d.rule.q - 0.995) < 1e-6 && d.rule.margin == 1.0);
	assert_int_equal(d.scores.count, 0);
	fv_global_clear(&d);
	free(b2);
	m->score_rule = rule;
	m->scores = scores;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	fv_global_clear(&g);
}

/* ModelUpdate.col_err (45): one double per column, finite, >= 0. */
static void test_update_col_err(void **state)
{
	Fedvigil__V1__ModelUpdate *m;
	struct fv_update u, d;
	uint8_t *buf, *b2;
	size_t len, l2;

	(void)state;
	make_update(&u, FV_ROUND_TRAIN, 24);
	u.n_col_err = CH;
	u.col_err = malloc(CH * sizeof(double));
	assert_non_null(u.col_err);
	for (uint32_t c = 0; c < CH; c++)
		u.col_err[c] = 100.0 / (c + 1);
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_update_decode(buf, len, FLEET, &d), 0);
	assert_int_equal(d.n_col_err, CH);
	assert_memory_equal(d.col_err, u.col_err, CH * sizeof(double));
	fv_update_clear(&d);
	m = pb_of(&fedvigil__v1__model_update__descriptor, buf, len);
	m->col_err[0] = INFINITY;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->col_err[0] = -0.5;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -ERANGE);
	free(b2);
	{
		double *more = calloc(FV_MAX_COLUMNS + 1, sizeof(double));
		double *orig = m->col_err;
		size_t n = m->n_col_err;

		assert_non_null(more);
		m->col_err = more;
		m->n_col_err = FV_MAX_COLUMNS + 1;
		repack(m, &b2, &l2);
		expect_update(b2, l2, FLEET, -EDOM);
		free(b2);
		m->col_err = orig;
		m->n_col_err = n;
		free(more);
	}
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	fv_update_clear(&u);
}

/* A temporal (conv1d) model: window 8 x CH channels, spec fields 30-33. */
static void make_global_conv1d(struct fv_global *g)
{
	static const uint32_t filters[] = { 3 };

	make_global(g);
	assert_int_equal(fv_model_spec_conv1d(8, CH, filters, 1, 3, 2, FV_ACT_RELU, FV_ACT_LINEAR,
					      &g->spec),
			 0);
	g->window = 8;
	g->n_params = fv_model_spec_nparams(&g->spec);
	free(g->params);
	g->params = malloc(g->n_params * sizeof(float));
	assert_non_null(g->params);
	for (size_t i = 0; i < g->n_params; i++)
		g->params[i] = (float)cos((double)i) * 0.25f;
}

static void test_global_conv1d(void **state)
{
	Fedvigil__V1__GlobalModel *m;
	struct fv_global g, d;
	uint8_t *buf, *b2;
	size_t len, l2;

	(void)state;
	make_global_conv1d(&g);
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_global_decode(buf, len, FLEET, &d), 0);
	assert_global_equal(&d, &g);
	assert_int_equal(d.spec.kind, FV_MODEL_CONV1D);
	assert_int_equal(d.spec.window, 8);
	assert_int_equal(d.spec.kernel[2], 3);
	assert_int_equal(d.spec.conv[1], FV_CONV_UP);
	fv_global_clear(&d);

	/* The encoder refuses a model whose window disagrees with its spec. */
	g.window = 4;
	assert_int_equal(fv_global_encode(&g, &b2, &l2), -EINVAL);
	g.window = 8;

	m = pb_of(&fedvigil__v1__global_model__descriptor, buf, len);
#define TAMPER(stmt, undo, err)                      \
	do {                                         \
		stmt;                                \
		repack(m, &b2, &l2);                 \
		expect_global(b2, l2, FLEET, err);   \
		free(b2);                            \
		undo;                                \
	} while (0)
	/* The spec's window is the message's window, its channels the channels. */
	TAMPER(m->spec->window = 16, m->spec->window = 8, -EDOM);
	TAMPER(m->window = 16, m->window = 8, -EDOM);
	TAMPER(m->spec->window = 0, m->spec->window = 8, -EDOM);
	TAMPER((m->spec->sizes[0] = m->spec->sizes[3] = CH + 1), (m->spec->sizes[0] =
		m->spec->sizes[3] = CH), -EDOM);
	/* One entry per layer in each of conv, kernel, stride. */
	TAMPER(m->spec->n_kernel--, m->spec->n_kernel++, -EDOM);
	TAMPER(m->spec->n_stride = 0, m->spec->n_stride = 3, -EDOM);
	TAMPER(m->spec->n_conv = 0, m->spec->n_conv = 3, -EDOM);
	/* Bad layer values. */
	TAMPER(m->spec->kernel[0] = 4, m->spec->kernel[0] = 3, -EDOM);
	TAMPER(m->spec->kernel[0] = 259, m->spec->kernel[0] = 3, -EDOM); /* 3 mod 256 */
	TAMPER(m->spec->stride[1] = 0, m->spec->stride[1] = 2, -EDOM);
	TAMPER(m->spec->conv[1] = 2, m->spec->conv[1] = 1, -EDOM);
	TAMPER(m->spec->conv[1] = 0, m->spec->conv[1] = 1, -EDOM); /* 8 -> 4 -> 2 -> 2 */
	/* conv1d fields in a dense spec, and an unknown kind. */
	TAMPER(m->spec->kind = FV_MODEL_DENSE, m->spec->kind = FV_MODEL_CONV1D, -EDOM);
	TAMPER(m->spec->kind = 2, m->spec->kind = FV_MODEL_CONV1D, -EDOM);
#undef TAMPER
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, 0); /* everything restored */
	free(b2);
	protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
	free(buf);
	fv_global_clear(&g);

	/* With features = both the model sees 2 * CH columns per step. */
	make_global_conv1d(&g);
	g.features = FV_FEAT_BOTH;
	assert_int_equal(fv_global_encode(&g, &buf, &len), -EINVAL); /* sizes[0] is CH */
	{
		static const uint32_t filters[] = { 3 };

		assert_int_equal(fv_model_spec_conv1d(8, 2 * CH, filters, 1, 3, 2, FV_ACT_RELU,
						      FV_ACT_LINEAR, &g.spec),
				 0);
	}
	g.n_params = fv_model_spec_nparams(&g.spec);
	free(g.params);
	g.params = calloc(g.n_params, sizeof(float));
	assert_non_null(g.params);
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_global_decode(buf, len, FLEET, &d), 0);
	assert_global_equal(&d, &g);
	fv_global_clear(&d);
	m = pb_of(&fedvigil__v1__global_model__descriptor, buf, len);
	m->features = FV_FEAT_VALUES; /* CH columns, but the spec takes 2 * CH */
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
	free(buf);
	fv_global_clear(&g);

	/* A dense model carrying conv1d fields is refused too. */
	make_global(&g);
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	m = pb_of(&fedvigil__v1__global_model__descriptor, buf, len);
	m->spec->window = WIN;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
	free(buf);
	fv_global_clear(&g);
}

static void test_announce_roundtrip(void **state)
{
	uint32_t counts[] = { 0, 3, FV_MAX_SELECTED };

	(void)state;
	for (size_t k = 0; k < FV_ARRAY_SIZE(counts); k++) {
		struct fv_announce a, d;
		uint8_t *buf;
		size_t len;

		make_announce(&a, counts[k]);
		if (k == 0)
			a.kind = FV_ROUND_STATS;
		assert_int_equal(fv_announce_encode(&a, &buf, &len), 0);
		memset(&d, 0, sizeof(d));
		assert_int_equal(fv_announce_decode(buf, len, FLEET, &d), 0);
		assert_hdr_equal(&d.h, &a.h);
		assert_int_equal(d.kind, a.kind);
		assert_int_equal(d.hp.epochs, a.hp.epochs);
		assert_int_equal(d.hp.batch, a.hp.batch);
		assert_true(d.hp.lr == a.hp.lr);
		assert_true(d.hp.seed == a.hp.seed);
		assert_int_equal(d.hp.min_windows, a.hp.min_windows);
		assert_int_equal(d.hp.optim, a.hp.optim);
		assert_true(d.hp.momentum == a.hp.momentum);
		assert_true(d.hp.weight_decay == a.hp.weight_decay);
		assert_true(d.hp.prox_mu == a.hp.prox_mu);
		assert_true(d.dp_epsilon == a.dp_epsilon);
		assert_true(d.deadline_ms == a.deadline_ms);
		assert_int_equal(d.n_selected, a.n_selected);
		for (uint32_t i = 0; i < a.n_selected; i++)
			assert_string_equal(d.selected[i], a.selected[i]);
		free(buf);
		fv_announce_clear(&d);
		fv_announce_clear(&a);
	}
}

/* ---- rejections ---- */

static void test_reject_bytes(void **state)
{
	struct fv_update u;
	struct fv_rng rng;
	uint8_t *buf, *big, junk[256];
	size_t len;

	(void)state;
	make_update(&u, FV_ROUND_TRAIN, 97);
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	/* Cut inside the last field, inside the delta, inside the header. */
	expect_update(buf, len - 1, FLEET, -EBADMSG);
	expect_update(buf, len / 2, FLEET, -EBADMSG);
	expect_update(buf, 5, FLEET, -EBADMSG);
	/* Empty: no header. */
	expect_update(buf, 0, FLEET, -EBADMSG);
	/* Oversized: refused before a byte is read. */
	big = calloc(1, FV_MAX_MSG_BYTES + 1);
	assert_non_null(big);
	memcpy(big, buf, len);
	expect_update(big, FV_MAX_MSG_BYTES + 1, FLEET, -E2BIG);
	expect_global(big, FV_MAX_MSG_BYTES + 1, FLEET, -E2BIG);
	expect_announce(big, FV_MAX_MSG_BYTES + 1, FLEET, -E2BIG);
	free(big);
	/* Garbage: an over-long varint tag, a group, then random bytes. */
	memset(junk, 0xff, sizeof(junk));
	expect_update(junk, sizeof(junk), FLEET, -EBADMSG);
	expect_global(junk, sizeof(junk), FLEET, -EBADMSG);
	expect_announce(junk, sizeof(junk), FLEET, -EBADMSG);
	junk[0] = (1 << 3) | 3; /* start group */
	expect_update(junk, 1, FLEET, -EBADMSG);
	fv_rng_seed(&rng, 7);
	for (int k = 0; k < 200; k++) {
		struct fv_update d;

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)fv_rng_u64(&rng);
		memset(&d, 0, sizeof(d));
		assert_true(fv_update_decode(junk, 1 + fv_rng_below(&rng, sizeof(junk)), FLEET,
					     &d) < 0);
	}
	/* Wrong fleet. */
	expect_update(buf, len, "plant-2", -EXDEV);
	free(buf);
	fv_update_clear(&u);
}

/* buf (len) with its one-byte varint at pos padded to 1 + extra bytes
 * (0x80 continuations, a final 0x00) into pad; returns the new length. */
static size_t pad_varint(const uint8_t *buf, size_t len, size_t pos, size_t extra, uint8_t *pad)
{
	size_t n = pos;

	memcpy(pad, buf, pos);
	pad[n++] = (uint8_t)(buf[pos] | (extra ? 0x80 : 0));
	for (size_t i = 0; i < extra; i++)
		pad[n++] = i + 1 < extra ? 0x80 : 0x00;
	memcpy(pad + n, buf + pos + 1, len - pos - 1);
	return n + len - pos - 1;
}

/* Padded (non-canonical) varints: protobuf-c 1.4.1 reads a key and a
 * length prefix in at most 5 bytes, so 5 decode and 6 are refused by the
 * scan, before the unpacker sees them (a 6-byte key once passed our scan
 * and took protobuf-c's error path: fuzz_wire found it). */
static void test_padded_varints(void **state)
{
	struct fv_announce a;
	uint8_t *buf, *pad;
	size_t len;

	(void)state;
	make_announce(&a, 3);
	assert_int_equal(fv_announce_encode(&a, &buf, &len), 0);
	assert_int_equal(buf[0], (1 << 3) | 2); /* the header, LEN */
	assert_true(buf[1] < 0x80);		 /* a one-byte length */
	pad = malloc(len + 16);
	assert_non_null(pad);
	for (size_t extra = 0; extra <= 5; extra++) {
		/* pos 0: the header's key; pos 1: its length. */
		for (size_t pos = 0; pos <= 1; pos++) {
			size_t n = pad_varint(buf, len, pos, extra, pad);
			int want = extra <= 4 ? 0 : -EBADMSG;

			assert_int_equal(n, len + extra);
			assert_int_equal(pb_scan(pad, n, &pb_rules_announce), want);
			expect_announce(pad, n, FLEET, want);
		}
	}
	free(pad);
	free(buf);
	fv_announce_clear(&a);
}

static void test_reject_update_fields(void **state)
{
	Fedvigil__V1__ModelUpdate *m;
	struct fv_update u;
	uint8_t *buf, *b2;
	size_t len, l2;
	char *saved;

	(void)state;
	make_update(&u, FV_ROUND_TRAIN, 97);
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	m = pb_of(&fedvigil__v1__model_update__descriptor, buf, len);

	/* Wrong schema version. */
	m->header->schema_version = 2;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EPROTO);
	free(b2);
	m->header->schema_version = FV_SCHEMA_VERSION;

	/* Invalid sender names: empty, a topic separator, a wildcard. */
	saved = m->header->sender;
	m->header->sender = (char *)"";
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EBADMSG);
	free(b2);
	m->header->sender = (char *)"pump/3";
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EBADMSG);
	free(b2);
	m->header->sender = (char *)"+";
	repack(m, &b2, &l2);
	expect_update(b2, l2, NULL, -EBADMSG);
	free(b2);
	m->header->sender = saved;

	/* Odd delta length. */
	m->delta.len = 4 * 97 - 1;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EDOM);
	free(b2);
	m->delta.len = 4 * 97;

	/* NaN and Inf in the delta. */
	{
		uint8_t orig[4];
		float nan = NAN, inf = -INFINITY;

		memcpy(orig, m->delta.data + 40, 4);
		memcpy(m->delta.data + 40, &nan, 4); /* tests run on LE hosts */
		repack(m, &b2, &l2);
		expect_update(b2, l2, FLEET, -ERANGE);
		free(b2);
		memcpy(m->delta.data + 40, &inf, 4);
		repack(m, &b2, &l2);
		expect_update(b2, l2, FLEET, -ERANGE);
		free(b2);
		memcpy(m->delta.data + 40, orig, 4);
	}

	/* NaN loss. */
	m->loss = NAN;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->loss = 0.5f;

	/* Histogram: one bin short, one too many, count that does not add
	 * up, NaN sum. */
	m->histogram->n_bins = FV_HIST_BINS - 1;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EDOM);
	free(b2);
	{
		uint64_t *bins = m->histogram->bins, more[FV_HIST_BINS + 1] = { 0 };

		memcpy(more, bins, FV_HIST_BINS * sizeof(uint64_t));
		m->histogram->bins = more;
		m->histogram->n_bins = FV_HIST_BINS + 1;
		repack(m, &b2, &l2);
		expect_update(b2, l2, FLEET, -EDOM);
		free(b2);
		m->histogram->bins = bins;
		m->histogram->n_bins = FV_HIST_BINS;
	}
	m->histogram->count++;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EDOM);
	free(b2);
	m->histogram->count--;
	m->histogram->sum = NAN;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->histogram->sum = 1.0;

	/* A delta encoding this version does not know (test_wire_compress.c
	 * covers the known ones). */
	m->encoding = FV_ENC__MAX;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EPROTO);
	free(b2);
	m->encoding = 0;

	/* Unknown kind. */
	m->kind = 0;
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, -EBADMSG);
	free(b2);
	m->kind = FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_TRAIN;

	/* Still valid after all the restores. */
	repack(m, &b2, &l2);
	expect_update(b2, l2, FLEET, 0);
	free(b2);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	fv_update_clear(&u);
}

static void test_reject_stats(void **state)
{
	Fedvigil__V1__ModelUpdate m = FEDVIGIL__V1__MODEL_UPDATE__INIT;
	Fedvigil__V1__Header h = FEDVIGIL__V1__HEADER__INIT;
	Fedvigil__V1__ChannelStats cs = FEDVIGIL__V1__CHANNEL_STATS__INIT;
	Fedvigil__V1__ChannelStats *many[FV_MAX_CHANNELS + 1];
	uint8_t *b;
	size_t l;

	(void)state;
	h.schema_version = FV_SCHEMA_VERSION;
	h.fleet = (char *)FLEET;
	h.sender = (char *)AGENT;
	m.header = &h;
	m.kind = FEDVIGIL__V1__ROUND_KIND__ROUND_KIND_STATS;
	cs.count = 3;
	cs.sum = 3;
	cs.sumsq = 5;
	cs.min = 0.5;
	cs.max = 1.5;
	for (size_t i = 0; i <= FV_MAX_CHANNELS; i++)
		many[i] = &cs;
	m.stats = many;
	/* No histogram at all is an empty one. */
	m.n_stats = FV_MAX_CHANNELS;
	repack(&m, &b, &l);
	expect_update(b, l, FLEET, 0);
	free(b);
	m.n_stats = FV_MAX_CHANNELS + 1;
	repack(&m, &b, &l);
	expect_update(b, l, FLEET, -EDOM);
	free(b);
	m.n_stats = 2;
	cs.min = 2.0; /* min > max */
	repack(&m, &b, &l);
	expect_update(b, l, FLEET, -ERANGE);
	free(b);
	cs.min = NAN;
	repack(&m, &b, &l);
	expect_update(b, l, FLEET, -ERANGE);
	free(b);
	cs.min = 0.5;
	cs.sumsq = INFINITY;
	repack(&m, &b, &l);
	expect_update(b, l, FLEET, -ERANGE);
	free(b);
}

static void test_reject_global_fields(void **state)
{
	Fedvigil__V1__GlobalModel *m;
	struct fv_global g;
	uint8_t *buf, *b2;
	size_t len, l2;

	(void)state;
	make_global(&g);
	assert_int_equal(fv_global_encode(&g, &buf, &len), 0);
	m = pb_of(&fedvigil__v1__global_model__descriptor, buf, len);

	m->header->schema_version = 0;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EPROTO);
	free(b2);
	m->header->schema_version = FV_SCHEMA_VERSION;
	expect_global(buf, len, "other", -EXDEV);

	/* DP fields: epsilon finite and >= 0, delta in [0, 1), a valid name. */
	m->dp_epsilon = -1.0f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->dp_epsilon = INFINITY;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->dp_epsilon = 1.0f;
	m->dp_delta = 1.0;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->dp_delta = 1e-5;
	{
		char *saved_agg = m->aggregation;

		m->aggregation = (char *)"fed avg";
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -EBADMSG);
		free(b2);
		m->aggregation = saved_agg;
	}

	/* Params count does not match the spec: one float short, one more. */
	m->params.len -= 4;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->params.len += 4;
	{
		uint8_t *p = m->params.data, *more = calloc(1, m->params.len + 4);

		assert_non_null(more);
		memcpy(more, p, m->params.len);
		m->params.data = more;
		m->params.len += 4;
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -EDOM);
		free(b2);
		m->params.len -= 4;
		m->params.data = p;
		free(more);
	}

	/* NaN in params, mean; std <= 0; NaN threshold; percentile > 100. */
	{
		uint8_t orig[4];
		float nan = NAN;

		memcpy(orig, m->params.data + 8, 4);
		memcpy(m->params.data + 8, &nan, 4);
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -ERANGE);
		free(b2);
		memcpy(m->params.data + 8, orig, 4);
	}
	m->mean[1] = INFINITY;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->mean[1] = 0.0f;
	m->std[2] = 0.0f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->std[2] = 1.0f;
	m->threshold = NAN;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->threshold = 0.1f;
	m->percentile = 101.0f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->percentile = 99.0f;

	/* Shapes: mean count, window * channels != input width, bad spec. */
	m->n_mean = CH - 1;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->n_mean = CH;
	m->window = WIN + 1;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->window = WIN;
	m->spec->acts[0] = 9; /* no such activation */
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->spec->acts[0] = FV_ACT_TANH;
	m->spec->n_acts--; /* acts do not match sizes */
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->spec->n_acts++;
	m->spec->sizes[4] = WIN * CH + 1; /* output != input */
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->spec->sizes[4] = WIN * CH;
	/* Regularisation and kind: dropout per layer or not at all, in range,
	 * never on the output; finite noise in range; a known kind. */
	{
		float drop[4] = { 0.2f, 0.2f, 0.2f, 0.0f };

		m->spec->dropout = drop;
		m->spec->n_dropout = 4;
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, 0);
		free(b2);
		m->spec->n_dropout = 3; /* not one per layer */
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -EDOM);
		free(b2);
		m->spec->n_dropout = 4;
		drop[3] = 0.1f; /* the output layer */
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -EDOM);
		free(b2);
		drop[3] = 0.0f;
		drop[1] = 0.95f; /* above FV_NN_MAX_DROPOUT */
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -EDOM);
		free(b2);
		drop[1] = NAN;
		repack(m, &b2, &l2);
		expect_global(b2, l2, FLEET, -ERANGE);
		free(b2);
		m->spec->dropout = NULL;
		m->spec->n_dropout = 0;
	}
	m->spec->noise = -0.5f;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->spec->noise = INFINITY;
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->spec->noise = 0.0f;
	m->spec->kind = 77; /* no such model family */
	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, -EDOM);
	free(b2);
	m->spec->kind = FV_MODEL_DENSE;

	repack(m, &b2, &l2);
	expect_global(b2, l2, FLEET, 0);
	free(b2);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	fv_global_clear(&g);
}

static void test_reject_announce_fields(void **state)
{
	Fedvigil__V1__RoundAnnounce *m;
	struct fv_announce a;
	uint8_t *buf, *b2;
	size_t len, l2;
	char **names, **saved;
	size_t n_saved;

	(void)state;
	make_announce(&a, 3);
	assert_int_equal(fv_announce_encode(&a, &buf, &len), 0);
	m = pb_of(&fedvigil__v1__round_announce__descriptor, buf, len);

	/* FedProx mu and DP epsilon: finite, >= 0. */
	m->hparams->prox_mu = -0.5f;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->hparams->prox_mu = NAN;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->hparams->prox_mu = 0.01f;
	m->dp_epsilon = -1.0f;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->dp_epsilon = 0.5f;

	/* One name too many (the encoder refuses to write it). */
	names = calloc(FV_MAX_SELECTED + 1, sizeof(*names));
	assert_non_null(names);
	for (size_t i = 0; i <= FV_MAX_SELECTED; i++)
		names[i] = (char *)"a";
	saved = m->selected;
	n_saved = m->n_selected;
	m->selected = names;
	m->n_selected = FV_MAX_SELECTED + 1;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -EDOM);
	free(b2);
	/* An invalid selected name. */
	m->n_selected = 2;
	names[1] = (char *)"a#b";
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -EBADMSG);
	free(b2);
	m->selected = saved;
	m->n_selected = n_saved;
	free(names);

	m->hparams->lr = NAN;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->hparams->lr = 0.01f;
	/* Optimiser fields: a known optimiser, momentum in [0, 1), finite
	 * non-negative weight decay. */
	m->hparams->optimizer = (Fedvigil__V1__Optimizer)3;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -EBADMSG);
	free(b2);
	m->hparams->optimizer = FEDVIGIL__V1__OPTIMIZER__OPTIMIZER_SGD;
	m->hparams->momentum = 1.0f;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->hparams->momentum = 0.5f;
	m->hparams->weight_decay = -1e-3f;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->hparams->weight_decay = NAN;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -ERANGE);
	free(b2);
	m->hparams->weight_decay = 0.0f;
	m->header->schema_version = 99;
	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, -EPROTO);
	free(b2);
	m->header->schema_version = FV_SCHEMA_VERSION;
	expect_announce(buf, len, "elsewhere", -EXDEV);

	repack(m, &b2, &l2);
	expect_announce(b2, l2, FLEET, 0);
	free(b2);
	protobuf_c_message_free_unpacked(&m->base, NULL);

	/* Encoders refuse what decoders would reject. */
	fv_announce_clear(&a);
	make_announce(&a, FV_MAX_SELECTED + 1);
	assert_int_equal(fv_announce_encode(&a, &b2, &l2), -EINVAL);
	fv_announce_clear(&a);
	make_announce(&a, 1);
	fv_strlcpy(a.h.sender, "no spaces", FV_NAME_MAX);
	assert_int_equal(fv_announce_encode(&a, &b2, &l2), -EINVAL);
	fv_announce_clear(&a);
	free(buf);
}

/* Unknown fields are skipped (a newer peer may add some), but only a few;
 * a singular field may not repeat. */
static void test_unknown_fields(void **state)
{
	struct fv_update u;
	uint8_t *buf, *b2;
	size_t len;

	(void)state;
	make_update(&u, FV_ROUND_TRAIN, 10);
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	b2 = malloc(len + 3 * 100);
	assert_non_null(b2);
	memcpy(b2, buf, len);
	/* Field 1000 (a varint), unknown to every message: a two-byte tag
	 * ((1000 << 3) | 0 = 0x1f40) and the value 1. (Field 15, used here
	 * before, is the signature now.) */
	for (int i = 0; i < 100; i++) {
		b2[len + 3 * i] = 0xc0;
		b2[len + 3 * i + 1] = 0x3e;
		b2[len + 3 * i + 2] = 1;
	}
	expect_update(b2, len + 3, FLEET, 0);
	expect_update(b2, len + 3 * 16, FLEET, 0);
	expect_update(b2, len + 3 * 17, FLEET, -EBADMSG);
	/* n_samples twice. */
	b2[len] = (3 << 3) | 0;
	b2[len + 1] = 1;
	expect_update(b2, len + 2, FLEET, -EBADMSG);
	/* A known field with the wrong wire type (loss as a varint). */
	b2[len] = (4 << 3) | 0;
	expect_update(b2, len + 2, FLEET, -EBADMSG);
	free(b2);
	free(buf);
	fv_update_clear(&u);
}

static void test_update_check(void **state)
{
	struct fv_update u;

	(void)state;
	make_update(&u, FV_ROUND_TRAIN, 97);
	assert_int_equal(fv_update_check(&u, FV_ROUND_TRAIN, 12, 7, 97, 0), 0);
	assert_int_equal(fv_update_check(&u, FV_ROUND_TRAIN, 13, 7, 97, 0), -ESTALE);
	assert_int_equal(fv_update_check(&u, FV_ROUND_TRAIN, 11, 7, 97, 0), -ESTALE);
	assert_int_equal(fv_update_check(&u, FV_ROUND_TRAIN, 12, 8, 97, 0), -ESTALE);
	assert_int_equal(fv_update_check(&u, FV_ROUND_TRAIN, 12, 7, 98, 0), -EDOM);
	assert_int_equal(fv_update_check(&u, FV_ROUND_STATS, 12, 7, 0, CH), -EDOM);
	fv_update_clear(&u);
	make_update(&u, FV_ROUND_STATS, 0);
	assert_int_equal(fv_update_check(&u, FV_ROUND_STATS, 12, 7, 0, CH), 0);
	assert_int_equal(fv_update_check(&u, FV_ROUND_STATS, 12, 7, 0, CH + 1), -EDOM);
	assert_int_equal(fv_update_check(&u, FV_ROUND_TRAIN, 12, 7, 0, 0), -EDOM);
	fv_update_clear(&u);
}

static void test_reject_names(void **state)
{
	(void)state;
	assert_int_equal(fv_reject_from_errno(-E2BIG), FV_REJ_TOO_BIG);
	assert_int_equal(fv_reject_from_errno(-EBADMSG), FV_REJ_MALFORMED);
	assert_int_equal(fv_reject_from_errno(-EPROTO), FV_REJ_SCHEMA);
	assert_int_equal(fv_reject_from_errno(-EXDEV), FV_REJ_FLEET);
	assert_int_equal(fv_reject_from_errno(-ESTALE), FV_REJ_STALE);
	assert_int_equal(fv_reject_from_errno(-EDOM), FV_REJ_SHAPE);
	assert_int_equal(fv_reject_from_errno(-ERANGE), FV_REJ_NONFINITE);
	assert_int_equal(fv_reject_from_errno(-EALREADY), FV_REJ_DUPLICATE);
	assert_int_equal(fv_reject_from_errno(-EPERM), FV_REJ_UNSELECTED);
	assert_int_equal(fv_reject_from_errno(-ENOMEM), FV_REJ_OTHER);
	assert_string_equal(fv_reject_name(FV_REJ_TOO_BIG), "too_big");
	assert_string_equal(fv_reject_name(FV_REJ_MALFORMED), "malformed");
	assert_string_equal(fv_reject_name(FV_REJ_SCHEMA), "schema");
	assert_string_equal(fv_reject_name(FV_REJ_FLEET), "fleet");
	assert_string_equal(fv_reject_name(FV_REJ_STALE), "stale");
	assert_string_equal(fv_reject_name(FV_REJ_SHAPE), "shape");
	assert_string_equal(fv_reject_name(FV_REJ_NONFINITE), "nonfinite");
	assert_string_equal(fv_reject_name(FV_REJ_DUPLICATE), "duplicate");
	assert_string_equal(fv_reject_name(FV_REJ_UNSELECTED), "unselected");
	assert_string_equal(fv_reject_name(FV_REJ_OTHER), "other");
	assert_string_equal(fv_reject_name(FV_REJ__MAX), "other");
}

/* ---- state file ---- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void expect_state(const uint8_t *buf, size_t len, int err)
{
	struct fv_coord_state s, sentinel;

	memset(&sentinel, 0x77, sizeof(sentinel));
	s = sentinel;
	assert_int_equal(fv_state_decode(buf, len, &s), err);
	if (err < 0)
		assert_memory_equal(&s, &sentinel, sizeof(s));
	else
		fv_state_clear(&s);
}

static void test_state_roundtrip(void **state)
{
	struct fv_coord_state s, d;
	uint8_t *buf;
	size_t len;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.round = 42;
	s.kind = FV_ROUND_TRAIN;
	s.have_model = true;
	make_global(&s.model);
	assert_int_equal(fv_state_encode(&s, &buf, &len), 0);
	assert_memory_equal(buf, "FVST", 4);
	assert_int_equal(buf[4], 1);
	assert_int_equal(len, 16 + (buf[8] | buf[9] << 8 | buf[10] << 16 | (size_t)buf[11] << 24));
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_state_decode(buf, len, &d), 0);
	assert_true(d.round == 42);
	assert_int_equal(d.kind, FV_ROUND_TRAIN);
	assert_true(d.have_model);
	assert_global_equal(&d.model, &s.model);
	assert_false(d.have_agg);
	fv_state_clear(&d);
	free(buf);

	/* With aggregator state: FedAdam moments and the privacy spent. */
	size_t P = s.model.n_params;
	float *m = malloc(P * sizeof(float)), *v = malloc(P * sizeof(float));
	double rdp[FV_DP_N_ORDERS];

	assert_non_null(m);
	assert_non_null(v);
	for (size_t j = 0; j < P; j++) {
		m[j] = (float)cos((double)j) * 1e-3f;
		v[j] = (float)j * 1e-7f;
	}
	for (int o = 0; o < FV_DP_N_ORDERS; o++)
		rdp[o] = 0.01 * o;
	s.have_agg = true;
	s.agg = (struct fv_agg_state){ .algo = FV_AGG_FEDADAM, .steps = 41, .n_params = P,
				       .m = m, .v = v, .n_orders = FV_DP_N_ORDERS,
				       .orders = (double *)(uintptr_t)fv_dp_orders, .rdp = rdp,
				       .dp_rounds = 40 };
	assert_int_equal(fv_state_encode(&s, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_state_decode(buf, len, &d), 0);
	assert_true(d.have_agg);
	assert_int_equal(d.agg.algo, FV_AGG_FEDADAM);
	assert_true(d.agg.steps == 41 && d.agg.dp_rounds == 40);
	assert_int_equal(d.agg.n_params, P);
	assert_memory_equal(d.agg.m, m, P * sizeof(float));
	assert_memory_equal(d.agg.v, v, P * sizeof(float));
	assert_int_equal(d.agg.n_orders, FV_DP_N_ORDERS);
	assert_memory_equal(d.agg.orders, fv_dp_orders, sizeof(fv_dp_orders));
	assert_memory_equal(d.agg.rdp, rdp, sizeof(rdp));
	fv_state_clear(&d);
	free(buf);

	/* Moments that do not match the model's size are a shape error. */
	s.agg.n_params = P - 1;
	assert_int_equal(fv_state_encode(&s, &buf, &len), 0);
	expect_state(buf, len, -EDOM);
	free(buf);
	/* FedAvgM: momentum only, no v. */
	s.agg = (struct fv_agg_state){ .algo = FV_AGG_FEDAVGM, .steps = 3, .n_params = P, .m = m };
	assert_int_equal(fv_state_encode(&s, &buf, &len), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(fv_state_decode(buf, len, &d), 0);
	assert_int_equal(d.agg.algo, FV_AGG_FEDAVGM);
	assert_null(d.agg.v);
	assert_int_equal(d.agg.n_orders, 0);
	fv_state_clear(&d);
	free(buf);
	s.have_agg = false;
	memset(&s.agg, 0, sizeof(s.agg));
	free(m);
	free(v);
	fv_state_clear(&s);

	/* No model yet (statistics round 0). */
	memset(&s, 0, sizeof(s));
	s.kind = FV_ROUND_STATS;
	assert_int_equal(fv_state_encode(&s, &buf, &len), 0);
	memset(&d, 0x11, sizeof(d));
	assert_int_equal(fv_state_decode(buf, len, &d), 0);
	assert_true(d.round == 0);
	assert_int_equal(d.kind, FV_ROUND_STATS);
	assert_false(d.have_model);
	assert_null(d.model.params);
	fv_state_clear(&d);
	free(buf);
}

static void test_state_corrupt(void **state)
{
	struct fv_coord_state s;
	uint8_t *buf, *bad;
	size_t len;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.round = 9;
	s.kind = FV_ROUND_TRAIN;
	s.have_model = true;
	make_global(&s.model);
	assert_int_equal(fv_state_encode(&s, &buf, &len), 0);
	bad = malloc(len);
	assert_non_null(bad);

	/* Every single flipped payload byte is caught by the CRC. */
	for (size_t i = 16; i < len; i++) {
		memcpy(bad, buf, len);
		bad[i] ^= 0x40;
		expect_state(bad, len, -EBADMSG);
	}
	/* Flipped CRC byte. */
	memcpy(bad, buf, len);
	bad[13] ^= 1;
	expect_state(bad, len, -EBADMSG);
	/* Truncated: in the header, and in the payload. */
	expect_state(buf, 0, -EBADMSG);
	expect_state(buf, 15, -EBADMSG);
	expect_state(buf, 16, -EBADMSG);
	expect_state(buf, len - 1, -EBADMSG);
	/* Bad magic. */
	memcpy(bad, buf, len);
	bad[0] = 'X';
	expect_state(bad, len, -EBADMSG);
	/* A future format version. */
	memcpy(bad, buf, len);
	put32(bad + 4, 2);
	expect_state(bad, len, -EPROTO);
	/* Length field disagrees with the file. */
	memcpy(bad, buf, len);
	put32(bad + 8, (uint32_t)(len - 16 + 1));
	expect_state(bad, len, -EBADMSG);
	/* A valid CRC over a payload that is not a valid state: a model
	 * with a NaN parameter (re-checksummed, as a buggy writer would). */
	{
		Fedvigil__V1__CoordState *m = pb_of(&fedvigil__v1__coord_state__descriptor,
						    buf + 16, len - 16);
		uint8_t *p;
		size_t n;
		float nan = NAN;

		memcpy(m->model->params.data, &nan, 4);
		n = protobuf_c_message_get_packed_size(&m->base);
		p = malloc(16 + n);
		assert_non_null(p);
		memcpy(p, buf, 16);
		assert_int_equal(protobuf_c_message_pack(&m->base, p + 16), n);
		put32(p + 8, (uint32_t)n);
		put32(p + 12, fv_crc32(0, p + 16, n));
		expect_state(p, 16 + n, -ERANGE);
		/* have_model without a model. */
		Fedvigil__V1__GlobalModel *model = m->model;

		m->model = NULL;
		n = protobuf_c_message_get_packed_size(&m->base);
		assert_int_equal(protobuf_c_message_pack(&m->base, p + 16), n);
		put32(p + 8, (uint32_t)n);
		put32(p + 12, fv_crc32(0, p + 16, n));
		expect_state(p, 16 + n, -EBADMSG);
		free(p);
		m->model = model;
		protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	free(bad);
	free(buf);
	fv_state_clear(&s);
}

/* ---- topics ---- */

static void test_topics(void **state)
{
	char t[FV_TOPIC_MAX], agent[FV_NAME_MAX], longname[80];
	uint64_t round;

	(void)state;
	assert_string_equal(fv_topic_round(t, FLEET), "fedvigil/v1/plant-1/round");
	assert_string_equal(fv_topic_model(t, FLEET), "fedvigil/v1/plant-1/model");
	assert_string_equal(fv_topic_updates_filter(t, FLEET),
			    "fedvigil/v1/plant-1/round/+/update/+");
	assert_string_equal(fv_topic_agent(t, FLEET, AGENT, "state"),
			    "fedvigil/v1/plant-1/agent/pump.3/state");
	assert_string_equal(fv_topic_agent(t, FLEET, AGENT, "alert"),
			    "fedvigil/v1/plant-1/agent/pump.3/alert");
	assert_string_equal(fv_topic_coord(t, FLEET, "metrics"),
			    "fedvigil/v1/plant-1/coord/metrics");
	assert_string_equal(fv_topic_update(t, FLEET, UINT64_MAX, AGENT),
			    "fedvigil/v1/plant-1/round/18446744073709551615/update/pump.3");

	/* Round trips. */
	for (uint64_t r = 0; r < 2000000; r = r * 3 + 1) {
		assert_non_null(fv_topic_update(t, FLEET, r, AGENT));
		assert_int_equal(fv_topic_parse_update(t, FLEET, &round, agent), 0);
		assert_true(round == r);
		assert_string_equal(agent, AGENT);
	}
	assert_int_equal(fv_topic_parse_update(t, FLEET, &round, agent), 0);
	assert_non_null(fv_topic_update(t, FLEET, UINT64_MAX, AGENT));
	assert_int_equal(fv_topic_parse_update(t, FLEET, &round, agent), 0);
	assert_true(round == UINT64_MAX);
	assert_non_null(fv_topic_agent(t, FLEET, "a_b-c.9", "state"));
	assert_int_equal(fv_topic_parse_agent_state(t, FLEET, agent), 0);
	assert_string_equal(agent, "a_b-c.9");

	/* Builders refuse invalid names. */
	memset(longname, 'x', 64);
	longname[64] = '\0';
	assert_null(fv_topic_round(t, "a/b"));
	assert_null(fv_topic_round(t, ""));
	assert_null(fv_topic_round(t, longname));
	assert_null(fv_topic_update(t, FLEET, 1, "+"));
	assert_null(fv_topic_agent(t, FLEET, "#", "state"));
	assert_null(fv_topic_agent(t, FLEET, AGENT, "a/b"));
	assert_null(fv_topic_coord(t, "x y", "state"));

	/* Parsers reject everything but the canonical form. */
	static const char *bad_updates[] = {
		"fedvigil/v1/plant-2/round/5/update/pump.3",     /* other fleet */
		"fedvigil/v1/plant-1x/round/5/update/pump.3",    /* fleet prefix */
		"fedvigil/v2/plant-1/round/5/update/pump.3",     /* other version */
		"fedvigil/v1/plant-1/round/5/update/pump.3/x",   /* extra level */
		"fedvigil/v1/plant-1/round/5/update/",           /* empty agent */
		"fedvigil/v1/plant-1/round/5/update",            /* no agent */
		"fedvigil/v1/plant-1/round//update/pump.3",      /* empty round */
		"fedvigil/v1/plant-1/round/5a/update/pump.3",    /* non-numeric */
		"fedvigil/v1/plant-1/round/-5/update/pump.3",    /* sign */
		"fedvigil/v1/plant-1/round/+5/update/pump.3",
		"fedvigil/v1/plant-1/round/05/update/pump.3",    /* leading zero */
		"fedvigil/v1/plant-1/round/18446744073709551616/update/pump.3", /* overflow */
		"fedvigil/v1/plant-1/round/5/updates/pump.3",
		"fedvigil/v1/plant-1/round/5/update/pu mp",      /* invalid name */
		"fedvigil/v1/plant-1/round/5/update/+",
		"fedvigil/v1/plant-1/round",
		"fedvigil/v1/plant-1/model",
		"",
	};
	for (size_t i = 0; i < FV_ARRAY_SIZE(bad_updates); i++) {
		round = 77;
		assert_int_equal(fv_topic_parse_update(bad_updates[i], FLEET, &round, agent),
				 -EINVAL);
		assert_true(round == 77);
	}
	static const char *bad_states[] = {
		"fedvigil/v1/plant-2/agent/pump.3/state",
		"fedvigil/v1/plant-1/agent/pump.3/alert",
		"fedvigil/v1/plant-1/agent/pump.3/state/x",
		"fedvigil/v1/plant-1/agent//state",
		"fedvigil/v1/plant-1/agent/+/state",
		"fedvigil/v1/plant-1/agent/pump.3",
		"fedvigil/v1/plant-1/coord/state",
	};
	for (size_t i = 0; i < FV_ARRAY_SIZE(bad_states); i++)
		assert_int_equal(fv_topic_parse_agent_state(bad_states[i], FLEET, agent), -EINVAL);
	/* An agent name of 64 characters is one too long. */
	snprintf(t, sizeof(t), "fedvigil/v1/plant-1/agent/%s/state", longname);
	assert_int_equal(fv_topic_parse_agent_state(t, FLEET, agent), -EINVAL);
	/* A fleet that is not a valid name never matches. */
	assert_int_equal(fv_topic_parse_agent_state("fedvigil/v1/+/agent/a/state", "+", agent),
			 -EINVAL);
}

/* ---- mutation fuzzing ---- */

/* One random mutation of src into dst (capacity cap); returns the length. */
static size_t mutate(struct fv_rng *rng, const uint8_t *src, size_t len, uint8_t *dst,
		     size_t cap)
{
	size_t n = len, pos;
	int ops = 1 + (int)fv_rng_below(rng, 4);

	memcpy(dst, src, len);
	for (int k = 0; k < ops && n > 0; k++) {
		pos = fv_rng_below(rng, n);
		switch (fv_rng_below(rng, 6)) {
		case 0: /* flip a bit */
			dst[pos] ^= (uint8_t)(1u << fv_rng_below(rng, 8));
			break;
		case 1: /* random byte */
			dst[pos] = (uint8_t)fv_rng_u64(rng);
			break;
		case 2: /* truncate */
			n = pos;
			break;
		case 3: /* interesting byte: varint continuation, max, zero */
			dst[pos] = (uint8_t[]){ 0x80, 0xff, 0x00, 0x7f, 0x01 }[fv_rng_below(rng, 5)];
			break;
		case 4: { /* insert random bytes */
			size_t m = 1 + fv_rng_below(rng, 8);

			if (n + m > cap)
				break;
			memmove(dst + pos + m, dst + pos, n - pos);
			for (size_t i = 0; i < m; i++)
				dst[pos + i] = (uint8_t)fv_rng_u64(rng);
			n += m;
			break;
		}
		default: { /* delete a span */
			size_t m = 1 + fv_rng_below(rng, FV_MIN(n - pos, 16));

			memmove(dst + pos, dst + pos + m, n - pos - m);
			n -= m;
			break;
		}
		}
	}
	return n;
}

/* Whatever decodes must satisfy every invariant the decoder promises. */
static void check_decoded_global(const struct fv_global *g)
{
	assert_int_equal(fv_model_spec_validate(&g->spec), 0);
	assert_int_equal(g->n_params, fv_model_spec_nparams(&g->spec));
	assert_int_equal(g->spec.sizes[0], g->window * g->n_channels);
	assert_true(g->n_channels >= 1 && g->n_channels <= FV_MAX_CHANNELS);
	for (size_t i = 0; i < g->n_params; i++)
		assert_true(isfinite(g->params[i]));
	for (uint32_t c = 0; c < g->n_channels; c++)
		assert_true(isfinite(g->mean[c]) && isfinite(g->std[c]) && g->std[c] > 0);
	assert_true(fv_name_valid(g->h.fleet) && fv_name_valid(g->h.sender));
}

static void check_decoded_update(const struct fv_update *u)
{
	uint64_t total = u->hist.under + u->hist.over;

	for (uint32_t i = 0; i < FV_HIST_BINS; i++)
		total += u->hist.bins[i];
	assert_true(total == u->hist.count);
	for (size_t i = 0; i < u->n_params; i++)
		assert_true(isfinite(u->delta[i]));
	assert_true(u->n_channels <= FV_MAX_CHANNELS);
	assert_true(u->kind == FV_ROUND_STATS || u->kind == FV_ROUND_TRAIN);
	assert_true(fv_name_valid(u->h.fleet) && fv_name_valid(u->h.sender));
}

static void test_fuzz_mutations(void **state)
{
	struct fv_update u;
	struct fv_global g;
	struct fv_announce a;
	uint8_t *src[4], *dst;
	size_t len[4], cap;
	struct fv_rng rng;
	unsigned ok[4] = { 0 }, bad[4] = { 0 };

	(void)state;
	make_update(&u, FV_ROUND_TRAIN, 60);
	assert_int_equal(fv_update_encode(&u, &src[0], &len[0]), 0);
	fv_update_clear(&u);
	make_update(&u, FV_ROUND_STATS, 0);
	assert_int_equal(fv_update_encode(&u, &src[1], &len[1]), 0);
	fv_update_clear(&u);
	make_global(&g);
	assert_int_equal(fv_global_encode(&g, &src[2], &len[2]), 0);
	fv_global_clear(&g);
	make_announce(&a, 5);
	assert_int_equal(fv_announce_encode(&a, &src[3], &len[3]), 0);
	fv_announce_clear(&a);
	cap = FV_MAX(FV_MAX(len[0], len[1]), FV_MAX(len[2], len[3])) + 64;
	dst = malloc(cap);
	assert_non_null(dst);

	fv_rng_seed(&rng, 0x5eed);
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < 2000; i++) {
			/* Decode from an exact-size heap copy so that ASan sees
			 * any read past the end. */
			size_t n = mutate(&rng, src[k], len[k], dst, cap);
			uint8_t *p = malloc(n ? n : 1);
			int r;

			assert_non_null(p);
			memcpy(p, dst, n);
			if (k < 2) {
				memset(&u, 0, sizeof(u));
				r = fv_update_decode(p, n, NULL, &u);
				if (r == 0)
					check_decoded_update(&u);
				fv_update_clear(&u);
			} else if (k == 2) {
				memset(&g, 0, sizeof(g));
				r = fv_global_decode(p, n, NULL, &g);
				if (r == 0)
					check_decoded_global(&g);
				fv_global_clear(&g);
			} else {
				memset(&a, 0, sizeof(a));
				r = fv_announce_decode(p, n, NULL, &a);
				if (r == 0)
					for (uint32_t s = 0; s < a.n_selected; s++)
						assert_true(fv_name_valid(a.selected[s]));
				fv_announce_clear(&a);
			}
			assert_true(r == 0 || (r < 0 && r > -4096));
			if (r == 0)
				ok[k]++;
			else
				bad[k]++;
			free(p);
		}
		/* The mutations must exercise both paths. */
		assert_true(ok[k] > 0);
		assert_true(bad[k] > 0);
		free(src[k]);
	}
	free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_roundtrip),
		cmocka_unit_test(test_global_roundtrip),
		cmocka_unit_test(test_global_regularized_roundtrip),
		cmocka_unit_test(test_global_conv1d),
		cmocka_unit_test(test_global_detection_roundtrip),
		cmocka_unit_test(test_update_col_err),
		cmocka_unit_test(test_announce_roundtrip),
		cmocka_unit_test(test_reject_bytes),
		cmocka_unit_test(test_padded_varints),
		cmocka_unit_test(test_reject_update_fields),
		cmocka_unit_test(test_reject_stats),
		cmocka_unit_test(test_reject_global_fields),
		cmocka_unit_test(test_reject_announce_fields),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_update_check),
		cmocka_unit_test(test_reject_names),
		cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_state_corrupt),
		cmocka_unit_test(test_topics),
		cmocka_unit_test(test_fuzz_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
