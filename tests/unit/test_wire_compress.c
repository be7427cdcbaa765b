/* Unit tests for update compression in lib/wire (compress.c and its use in
 * codec.c): binary16 conversion, round trips of every encoding with their
 * error bounds, what the encoder says it sent == what the decoder rebuilds,
 * the error-feedback invariant, the announcement and GlobalModel fields,
 * and every malformed input a peer could send, each with its code. */
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

static float bits_f(uint32_t b)
{
	float f;

	memcpy(&f, &b, 4);
	return f;
}

static void fill_hdr(struct fv_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, FLEET, sizeof(h->fleet));
	fv_strlcpy(h->sender, "pump-1", sizeof(h->sender));
	h->round = 3;
	h->base_version = 3;
	h->ts_ms = 1767225600123LL;
}

/* A TRAIN update over x (borrowed: do not clear). */
static void make_update(struct fv_update *u, float *x, size_t n, enum fv_enc enc, float topk)
{
	memset(u, 0, sizeof(*u));
	fill_hdr(&u->h);
	u->kind = FV_ROUND_TRAIN;
	u->n_samples = 100;
	u->loss = 0.25f;
	fv_hist_init(&u->hist);
	u->n_params = n;
	u->delta = x;
	u->enc = enc;
	u->topk = topk;
}

/* Deterministic values of mixed magnitude, a few exact zeros. */
static void fill(float *x, size_t n, uint64_t seed)
{
	struct fv_rng rng;

	fv_rng_seed(&rng, seed);
	for (size_t i = 0; i < n; i++) {
		double u = fv_rng_uniform(&rng) * 2.0 - 1.0;

		x[i] = (float)(u * pow(10.0, -4.0 * fv_rng_uniform(&rng)));
		if (i % 37 == 5)
			x[i] = 0.0f;
	}
}

/* encode -> decode, checking ret_sent == decoded delta bit for bit. Returns
 * the decoded update (caller clears) and the encoded size. */
static size_t roundtrip(const struct fv_update *u, struct fv_update *ret)
{
	float *sent = malloc((u->n_params ? u->n_params : 1) * sizeof(float));
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_non_null(sent);
	assert_int_equal(fv_update_encode_sent(u, sent, &buf, &len), 0);
	assert_int_equal(fv_update_decode(buf, len, FLEET, ret), 0);
	assert_int_equal(ret->n_params, u->n_params);
	assert_int_equal(ret->enc, u->enc);
	assert_memory_equal(ret->delta, sent, u->n_params * sizeof(float));
	free(sent);
	free(buf);
	return len;
}

/* ---- binary16 ---- */

static void test_fp16(void **state)
{
	(void)state;
	assert_int_equal(wire_f2h(1.0f), 0x3c00);
	assert_int_equal(wire_f2h(-2.0f), 0xc000);
	assert_int_equal(wire_f2h(0.0f), 0x0000);
	assert_int_equal(wire_f2h(-0.0f), 0x8000);
	assert_int_equal(wire_f2h(65504.0f), 0x7bff);
	assert_int_equal(wire_f2h(65519.0f), 0x7bff); /* rounds down */
	assert_int_equal(wire_f2h(65520.0f), 0x7bff); /* would round to Inf: saturates */
	assert_int_equal(wire_f2h(1e9f), 0x7bff);
	assert_int_equal(wire_f2h(-1e9f), 0xfbff);
	assert_int_equal(wire_f2h(ldexpf(1.0f, -14)), 0x0400); /* smallest normal */
	assert_int_equal(wire_f2h(ldexpf(1.0f, -24)), 0x0001); /* smallest subnormal */
	assert_int_equal(wire_f2h(ldexpf(1.0f, -25)), 0x0000); /* tie -> even (0) */
	assert_int_equal(wire_f2h(ldexpf(3.0f, -25)), 0x0002); /* tie -> even (2) */
	assert_int_equal(wire_f2h(ldexpf(1.0f, -26)), 0x0000);
	/* ties between normal halves go to the even mantissa */
	assert_int_equal(wire_f2h(1.0f + ldexpf(1.0f, -11)), 0x3c00);
	assert_int_equal(wire_f2h(1.0f + ldexpf(3.0f, -11)), 0x3c02);
	assert_int_equal(wire_f2h(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01);
	/* every finite half survives half -> float -> half */
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00)
			continue;
		assert_int_equal(wire_f2h(wire_h2f((uint16_t)h)), h);
	}
	assert_true(isinf(wire_h2f(0x7c00)));
	assert_true(isnan(wire_h2f(0x7e00)));
	assert_true(wire_h2f(0x0001) == ldexpf(1.0f, -24));
	/* fv_fp16_round is idempotent and within half an ulp */
	{
		float x[3] = { 0.1f, -3.14159f, 1e-6f }, y[3];

		memcpy(y, x, sizeof(x));
		fv_fp16_round(y, 3);
		for (int i = 0; i < 3; i++) {
			float z = y[i];

			fv_fp16_round(&z, 1);
			assert_true(z == y[i]);
		}
		assert_true(fabsf(y[0] - x[0]) <= ldexpf(1.0f, -15));
		assert_true(fabsf(y[1] - x[1]) <= ldexpf(1.0f, -10));
		assert_true(fabsf(y[2] - x[2]) <= ldexpf(1.0f, -25));
	}
	(void)bits_f;
}

/* ---- round trips with error bounds ---- */

static void test_dense_roundtrips(void **state)
{
	const size_t n = 1000;
	float *x = malloc(n * sizeof(float));
	struct fv_update u, d;
	size_t len32, len16, len8;

	(void)state;
	assert_non_null(x);
	fill(x, n, 1);
	x[17] = 70000.0f; /* beyond binary16: saturates */

	make_update(&u, x, n, FV_ENC_FP32, 0);
	len32 = roundtrip(&u, &d);
	assert_memory_equal(d.delta, x, n * sizeof(float));
	assert_int_equal(d.nnz, n);
	fv_update_clear(&d);

	make_update(&u, x, n, FV_ENC_FP16, 0);
	len16 = roundtrip(&u, &d);
	for (size_t i = 0; i < n; i++) {
		float e = fabsf(d.delta[i] - x[i]);

		if (i == 17)
			assert_true(d.delta[i] == 65504.0f);
		else if (fabsf(x[i]) >= ldexpf(1.0f, -14))
			assert_true(e <= fabsf(x[i]) * ldexpf(1.0f, -11));
		else
			assert_true(e <= ldexpf(1.0f, -25)); /* subnormal spacing / 2 */
	}
	fv_update_clear(&d);

	/* int8 with one scale per segment: error <= scale / 2 */
	x[17] = 0.5f;
	{
		uint32_t seg[3] = { 600, 100, 300 };
		uint32_t off = 0;

		make_update(&u, x, n, FV_ENC_INT8, 0);
		u.n_seg = 3;
		memcpy(u.seg, seg, sizeof(seg));
		len8 = roundtrip(&u, &d);
		assert_int_equal(d.n_seg, 3);
		assert_memory_equal(d.seg, seg, sizeof(seg));
		for (uint32_t s = 0; s < 3; s++) {
			float maxabs = 0.0f, scale;

			for (uint32_t i = off; i < off + seg[s]; i++)
				maxabs = fmaxf(maxabs, fabsf(x[i]));
			scale = maxabs / 127.0f;
			for (uint32_t i = off; i < off + seg[s]; i++)
				assert_true(fabsf(d.delta[i] - x[i]) <= scale * 0.5f * 1.0001f);
			off += seg[s];
		}
		fv_update_clear(&d);
	}
	printf("bytes for %zu params: fp32 %zu, fp16 %zu, int8 %zu\n", n, len32, len16, len8);
	/* values plus header and an (empty, 240-bin) histogram */
	assert_true(len32 >= 4 * n && len32 < 4 * n + 400);
	assert_true(len16 >= 2 * n && len16 < 2 * n + 400);
	assert_true(len8 >= n && len8 < n + 400);

	/* int8 without segments: one scale over everything */
	make_update(&u, x, n, FV_ENC_INT8, 0);
	roundtrip(&u, &d);
	assert_int_equal(d.n_seg, 0);
	fv_update_clear(&d);
	free(x);
}

static void test_topk_roundtrips(void **state)
{
	const size_t n = 5000;
	float *x = malloc(n * sizeof(float));
	struct fv_update u, d;
	const enum fv_enc encs[] = { FV_ENC_TOPK_FP32, FV_ENC_TOPK_FP16, FV_ENC_TOPK_INT8 };

	(void)state;
	assert_non_null(x);
	fill(x, n, 2);
	for (size_t e = 0; e < FV_ARRAY_SIZE(encs); e++) {
		size_t len, kept = 0;
		float min_kept = INFINITY, max_dropped = 0.0f;

		make_update(&u, x, n, encs[e], 0.1f);
		if (encs[e] == FV_ENC_TOPK_INT8) {
			static const uint32_t seg[4] = { 2000, 500, 2000, 500 };

			u.n_seg = 4;
			memcpy(u.seg, seg, sizeof(seg));
		}
		len = roundtrip(&u, &d);
		assert_int_equal(d.nnz, 500); /* ceil(0.1 * 5000), no zeros among them */
		for (size_t i = 0; i < n; i++) {
			if (d.delta[i] != 0.0f) {
				kept++;
				min_kept = fminf(min_kept, fabsf(x[i]));
			}
		}
		/* the kept entries are the largest: nothing dropped is larger */
		for (size_t i = 0; i < n; i++)
			if (d.delta[i] == 0.0f)
				max_dropped = fmaxf(max_dropped, fabsf(x[i]));
		if (encs[e] == FV_ENC_TOPK_FP32) {
			assert_int_equal(kept, 500);
			assert_true(max_dropped <= min_kept);
			for (size_t i = 0; i < n; i++)
				assert_true(d.delta[i] == 0.0f || d.delta[i] == x[i]);
		}
		if (encs[e] == FV_ENC_TOPK_FP16)
			for (size_t i = 0; i < n; i++)
				assert_true(fabsf(d.delta[i] - (d.delta[i] != 0.0f ? x[i] : 0.0f)) <=
					    fabsf(x[i]) * ldexpf(1.0f, -11));
		if (encs[e] == FV_ENC_TOPK_INT8) {
			/* kept values within half a step of their segment's scale */
			uint32_t off = 0;

			assert_int_equal(u.n_seg, 4);
			for (uint32_t s = 0; s < u.n_seg; s++) {
				float maxabs = 0.0f;

				for (uint32_t i = off; i < off + u.seg[s]; i++)
					if (d.delta[i] != 0.0f)
						maxabs = fmaxf(maxabs, fabsf(x[i]));
				for (uint32_t i = off; i < off + u.seg[s]; i++)
					if (d.delta[i] != 0.0f)
						assert_true(fabsf(d.delta[i] - x[i]) <=
							    maxabs / 127.0f * 0.5f * 1.0001f);
				off += u.seg[s];
			}
		}
		printf("%s: %zu bytes for %zu params (%.1fx smaller than fp32)\n",
		       fv_enc_name(encs[e]), len, n, 4.0 * (double)n / (double)len);
		if (encs[e] == FV_ENC_TOPK_INT8)
			assert_true(len * 12 < 4 * n); /* 500 x (1 value + ~1.5 index bytes) */
		fv_update_clear(&d);
	}

	/* ties at the cut: the lowest indices; zeros never */
	{
		float y[10] = { 1, 2, 2, 0, 2, 3, 0, 0, 0, 0 };

		make_update(&u, y, 10, FV_ENC_TOPK_FP32, 0.3f);
		roundtrip(&u, &d);
		assert_int_equal(d.nnz, 3);
		assert_true(d.delta[5] == 3 && d.delta[1] == 2 && d.delta[2] == 2 &&
			    d.delta[4] == 0);
		fv_update_clear(&d);
		make_update(&u, y, 10, FV_ENC_TOPK_FP32, 1.0f);
		roundtrip(&u, &d);
		assert_int_equal(d.nnz, 5);
		assert_memory_equal(d.delta, y, sizeof(y));
		fv_update_clear(&d);
		memset(y, 0, sizeof(y));
		make_update(&u, y, 10, FV_ENC_TOPK_INT8, 0.5f);
		roundtrip(&u, &d);
		assert_int_equal(d.nnz, 0);
		fv_update_clear(&d);
		/* the smallest share still sends one value */
		y[7] = -1.0f;
		make_update(&u, y, 10, FV_ENC_TOPK_FP16, 1e-6f);
		roundtrip(&u, &d);
		assert_int_equal(d.nnz, 1);
		assert_true(d.delta[7] == -1.0f);
		fv_update_clear(&d);
	}
	free(x);
}

/* Per segment selection (each layer's W and b keeps its share) and the
 * bitmap form of the indices, chosen when it is the smaller one. */
static void test_topk_segments_bitmap(void **state)
{
	const size_t n = 1000;
	float *x = malloc(n * sizeof(float));
	uint32_t seg[2] = { 900, 100 };
	struct fv_update u, d;
	Fedvigil__V1__ModelUpdate *m;
	uint8_t *buf;
	size_t len, kept2 = 0;

	(void)state;
	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = i < 900 ? 1.0f + (float)(i % 13) : 0.001f * (float)(1 + i % 7);
	/* globally the second segment would get nothing; per segment 10 */
	make_update(&u, x, n, FV_ENC_TOPK_FP32, 0.1f);
	u.n_seg = 2;
	memcpy(u.seg, seg, sizeof(seg));
	len = roundtrip(&u, &d);
	assert_int_equal(d.nnz, 100);
	assert_int_equal(d.n_seg, 0); /* segments travel only with int8 */
	for (size_t i = 900; i < n; i++)
		kept2 += d.delta[i] != 0.0f;
	assert_int_equal(kept2, 10);
	fv_update_clear(&d);
	/* 10%: varint gaps (~1 byte each) beat a 125-byte bitmap */
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	m = (void *)protobuf_c_message_unpack(&fedvigil__v1__model_update__descriptor, NULL, len, buf);
	assert_non_null(m);
	assert_true(m->indices.len > 0 && m->indices.len < 125);
	assert_int_equal(m->index_bitmap.len, 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	/* 40%: the bitmap is smaller */
	make_update(&u, x, n, FV_ENC_TOPK_INT8, 0.4f);
	u.n_seg = 2;
	memcpy(u.seg, seg, sizeof(seg));
	len = roundtrip(&u, &d);
	assert_int_equal(d.nnz, 400);
	fv_update_clear(&d);
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	m = (void *)protobuf_c_message_unpack(&fedvigil__v1__model_update__descriptor, NULL, len, buf);
	assert_non_null(m);
	assert_int_equal(m->indices.len, 0);
	assert_int_equal(m->index_bitmap.len, 125);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	free(x);
}

static void test_encode_refuses(void **state)
{
	float x[4] = { 1, 2, 3, 4 };
	struct fv_update u;
	uint8_t *buf = NULL;
	size_t len;

	(void)state;
	make_update(&u, x, 4, FV_ENC_TOPK_FP32, 0.0f);
	assert_int_equal(fv_update_encode(&u, &buf, &len), -EINVAL); /* topk 0 */
	u.topk = 1.5f;
	assert_int_equal(fv_update_encode(&u, &buf, &len), -EINVAL);
	u.topk = NAN;
	assert_int_equal(fv_update_encode(&u, &buf, &len), -EINVAL);
	make_update(&u, x, 4, (enum fv_enc)FV_ENC__MAX, 0.0f);
	assert_int_equal(fv_update_encode(&u, &buf, &len), -EINVAL);
	make_update(&u, x, 4, FV_ENC_INT8, 0.0f);
	u.n_seg = 2;
	u.seg[0] = 1;
	u.seg[1] = 2; /* sums to 3, not 4 */
	assert_int_equal(fv_update_encode(&u, &buf, &len), -EINVAL);
	u.seg[1] = 3;
	assert_int_equal(fv_update_encode(&u, &buf, &len), 0);
	free(buf);
	x[2] = INFINITY;
	assert_int_equal(fv_update_encode(&u, &buf, &len), -ERANGE);
	/* segments of a model spec */
	{
		struct fv_model_spec sp;
		static const uint32_t hidden[] = { 8, 3, 8 };
		uint32_t seg[FV_WIRE_MAX_SEG], total = 0, n;

		assert_int_equal(fv_model_spec_autoencoder(20, hidden, 3, FV_ACT_TANH,
							   FV_ACT_LINEAR, &sp), 0);
		n = fv_compress_segments(&sp, seg, FV_WIRE_MAX_SEG);
		assert_int_equal(n, 8);
		assert_int_equal(seg[0], 8 * 20);
		assert_int_equal(seg[1], 8);
		for (uint32_t i = 0; i < n; i++)
			total += seg[i];
		assert_int_equal(total, fv_model_spec_nparams(&sp));
		assert_int_equal(fv_compress_segments(&sp, seg, 7), 0); /* no room */
	}
}

/* ---- error feedback ---- */

static void test_error_feedback(void **state)
{
	const size_t n = 2000;
	const enum fv_enc encs[] = { FV_ENC_TOPK_INT8, FV_ENC_TOPK_FP32, FV_ENC_INT8,
				     FV_ENC_FP16 };
	float *delta = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
	float *sent = malloc(n * sizeof(float));
	double *sum_true = calloc(n, sizeof(double)), *sum_sent = calloc(n, sizeof(double));
	struct fv_ef ef;

	(void)state;
	assert_non_null(delta);
	assert_non_null(v);
	assert_non_null(sent);
	assert_non_null(sum_true);
	assert_non_null(sum_sent);
	for (size_t e = 0; e < FV_ARRAY_SIZE(encs); e++) {
		double worst = 0.0, resid_norm = 0.0, drop_norm = 0.0;

		assert_int_equal(fv_ef_init(&ef, n), 0);
		memset(sum_true, 0, n * sizeof(double));
		memset(sum_sent, 0, n * sizeof(double));
		for (int round = 0; round < 30; round++) {
			struct fv_update u, d;
			uint8_t *buf;
			size_t len;

			fill(delta, n, 100 + (uint64_t)round);
			fv_ef_add(&ef, delta, v);
			make_update(&u, v, n, encs[e], 0.05f);
			assert_int_equal(fv_update_encode_sent(&u, sent, &buf, &len), 0);
			/* the coordinator decodes exactly what the agent accounted */
			assert_int_equal(fv_update_decode(buf, len, FLEET, &d), 0);
			assert_memory_equal(d.delta, sent, n * sizeof(float));
			fv_update_clear(&d);
			free(buf);
			fv_ef_commit(&ef, v, sent);
			for (size_t i = 0; i < n; i++) {
				sum_true[i] += delta[i];
				sum_sent[i] += sent[i];
			}
		}
		/* sum of sent + residual == sum of true deltas */
		for (size_t i = 0; i < n; i++) {
			double err = fabs(sum_sent[i] + ef.resid[i] - sum_true[i]);

			worst = fmax(worst, err / fmax(1.0, fabs(sum_true[i])));
			resid_norm += (double)ef.resid[i] * ef.resid[i];
		}
		assert_true(worst < 1e-5);
		/* without feedback the loss is the whole dropped mass; with it the
		 * residual stays bounded (here: well below 30 rounds' drops) */
		for (size_t i = 0; i < n; i++)
			drop_norm += sum_true[i] * sum_true[i];
		printf("%s: worst relative error %.2g, |resid| %.3g vs |sum| %.3g\n",
		       fv_enc_name(encs[e]), worst, sqrt(resid_norm), sqrt(drop_norm));
		assert_true(resid_norm < drop_norm);
		fv_ef_reset(&ef);
		for (size_t i = 0; i < n; i++)
			assert_true(ef.resid[i] == 0.0f);
		fv_ef_free(&ef);
	}
	free(delta);
	free(v);
	free(sent);
	free(sum_true);
	free(sum_sent);
}

/* ---- malformed input ---- */

static void *pb_of(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len)
{
	void *m = protobuf_c_message_unpack(desc, NULL, len, buf);

	assert_non_null(m);
	return m;
}

/* Pack m and expect fv_update_decode to fail with err, *ret untouched. */
static void expect_update(const Fedvigil__V1__ModelUpdate *m, int err)
{
	size_t n = protobuf_c_message_get_packed_size(&m->base);
	uint8_t *buf = malloc(n + 1);
	struct fv_update u, sentinel;

	assert_non_null(buf);
	assert_int_equal(protobuf_c_message_pack(&m->base, buf), n);
	memset(&sentinel, 0xa5, sizeof(sentinel));
	u = sentinel;
	assert_int_equal(fv_update_decode(buf, n, FLEET, &u), err);
	if (err < 0)
		assert_memory_equal(&u, &sentinel, sizeof(u));
	else
		fv_update_clear(&u);
	free(buf);
}

static Fedvigil__V1__ModelUpdate *encoded(float *x, size_t n, enum fv_enc enc, float topk,
					  uint32_t n_seg, const uint32_t *seg, uint8_t **ret_buf)
{
	struct fv_update u;
	size_t len;

	make_update(&u, x, n, enc, topk);
	u.n_seg = n_seg;
	if (n_seg)
		memcpy(u.seg, seg, n_seg * sizeof(*seg));
	assert_int_equal(fv_update_encode(&u, ret_buf, &len), 0);
	return pb_of(&fedvigil__v1__model_update__descriptor, *ret_buf, len);
}

static void test_reject_topk(void **state)
{
	float x[100];
	Fedvigil__V1__ModelUpdate *m;
	uint8_t *buf, *saved;
	size_t saved_len;
	uint8_t idx[16];

	(void)state;
	for (int i = 0; i < 100; i++)
		x[i] = (float)(i % 7) - 3.0f;
	m = encoded(x, 100, FV_ENC_TOPK_FP32, 0.04f, 0, NULL, &buf);
	assert_int_equal(m->delta.len, 4 * 4); /* 4 values */
	saved = m->indices.data;
	saved_len = m->indices.len;
	expect_update(m, 0);
	m->indices.data = idx;

	/* indices: out of range, repeated, too few, too many, truncated, over
	 * 32 bits */
	memcpy(idx, (uint8_t[]){ 0, 1, 1, 97 }, 4); /* 0,1,2,99: fine */
	m->indices.len = 4;
	expect_update(m, 0);
	memcpy(idx, (uint8_t[]){ 0, 1, 1, 98 }, 4); /* ... 100: out of range */
	expect_update(m, -EILSEQ);
	memcpy(idx, (uint8_t[]){ 100, 1, 1, 1 }, 4); /* first out of range */
	expect_update(m, -EILSEQ);
	memcpy(idx, (uint8_t[]){ 3, 0, 1, 1 }, 4); /* 3 twice */
	expect_update(m, -EILSEQ);
	m->indices.len = 3; /* three indices for four values */
	memcpy(idx, (uint8_t[]){ 3, 1, 1 }, 3);
	expect_update(m, -EILSEQ);
	m->indices.len = 5; /* five for four */
	memcpy(idx, (uint8_t[]){ 3, 1, 1, 1, 1 }, 5);
	expect_update(m, -EILSEQ);
	m->indices.len = 4; /* a varint cut short */
	memcpy(idx, (uint8_t[]){ 3, 1, 1, 0x81 }, 4);
	expect_update(m, -EILSEQ);
	m->indices.len = 8; /* a 33-bit gap */
	memcpy(idx, (uint8_t[]){ 3, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x1f }, 8);
	expect_update(m, -EILSEQ);
	m->indices.len = 0; /* no indices at all */
	expect_update(m, -EILSEQ);
	m->indices.data = saved;
	m->indices.len = saved_len;

	/* the dense length: missing, too large, smaller than the values */
	m->n_params = 0;
	expect_update(m, -EILSEQ);
	m->n_params = FV_NN_MAX_PARAMS + 1;
	expect_update(m, -EDOM);
	m->n_params = 3;
	expect_update(m, -EILSEQ);
	m->n_params = 100;
	expect_update(m, 0);

	/* scales or segments on a float encoding */
	{
		float sc = 1.0f;
		uint32_t sg = 100;

		m->n_scales = 1;
		m->scales = &sc;
		expect_update(m, -EILSEQ);
		m->n_scales = 0;
		m->scales = NULL;
		m->n_segments = 1;
		m->segments = &sg;
		expect_update(m, -EILSEQ);
		m->n_segments = 0;
		m->segments = NULL;
	}
	/* odd value bytes */
	m->delta.len = 15;
	expect_update(m, -EDOM);
	m->delta.len = 16;
	/* a value that is not finite */
	{
		float inf = INFINITY;
		uint8_t keep[4];

		memcpy(keep, m->delta.data, 4);
		memcpy(m->delta.data, &inf, 4);
		expect_update(m, -ERANGE);
		memcpy(m->delta.data, keep, 4);
	}
	/* unknown encoding */
	m->encoding = 6;
	expect_update(m, -EPROTO);
	m->encoding = 99;
	expect_update(m, -EPROTO);
	m->encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_TOPK_FP32;
	expect_update(m, 0);
	/* read as dense fp32, the indices are side data of another encoding */
	m->encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP32;
	m->n_params = 0;
	expect_update(m, -EILSEQ);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);

	/* a dense update whose n_params disagrees with its values */
	m = encoded(x, 100, FV_ENC_FP16, 0, 0, NULL, &buf);
	m->n_params = 100;
	expect_update(m, 0);
	m->n_params = 99;
	expect_update(m, -EILSEQ);
	m->n_params = 0;
	{
		uint8_t keep[2];

		memcpy(keep, m->delta.data + 10, 2);
		memcpy(m->delta.data + 10, (uint8_t[]){ 0x00, 0x7c }, 2); /* +Inf half */
		expect_update(m, -ERANGE);
		memcpy(m->delta.data + 10, (uint8_t[]){ 0x01, 0xfe }, 2); /* NaN half */
		expect_update(m, -ERANGE);
		memcpy(m->delta.data + 10, keep, 2);
	}
	expect_update(m, 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
}

static void test_reject_bitmap(void **state)
{
	float x[100];
	Fedvigil__V1__ModelUpdate *m;
	uint8_t *buf, keep[13], *saved;

	(void)state;
	for (int i = 0; i < 100; i++)
		x[i] = (float)(i % 9) + 1.0f;
	m = encoded(x, 100, FV_ENC_TOPK_FP16, 0.5f, 0, NULL, &buf);
	assert_int_equal(m->index_bitmap.len, 13);
	assert_int_equal(m->indices.len, 0);
	expect_update(m, 0);
	memcpy(keep, m->index_bitmap.data, 13);
	/* a bit beyond n_params */
	m->index_bitmap.data[12] |= 0x80;
	expect_update(m, -EILSEQ);
	memcpy(m->index_bitmap.data, keep, 13);
	/* one bit more, one bit fewer than values */
	for (int b = 0; b < 100; b++) {
		if (!(keep[b / 8] & (1u << (b % 8)))) {
			m->index_bitmap.data[b / 8] |= (uint8_t)(1u << (b % 8));
			break;
		}
	}
	expect_update(m, -EILSEQ);
	memcpy(m->index_bitmap.data, keep, 13);
	for (int b = 0; b < 100; b++) {
		if (keep[b / 8] & (1u << (b % 8))) {
			m->index_bitmap.data[b / 8] &= (uint8_t)~(1u << (b % 8));
			break;
		}
	}
	expect_update(m, -EILSEQ);
	memcpy(m->index_bitmap.data, keep, 13);
	/* the wrong length */
	m->index_bitmap.len = 12;
	expect_update(m, -EILSEQ);
	m->index_bitmap.len = 13;
	/* both index forms */
	m->indices.data = (uint8_t *)"\x01";
	m->indices.len = 1;
	expect_update(m, -EILSEQ);
	m->indices.data = NULL;
	m->indices.len = 0;
	/* a bitmap on a dense encoding */
	m->encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP16;
	saved = m->delta.data;
	m->n_params = 0;
	expect_update(m, -EILSEQ);
	m->delta.data = saved;
	m->encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_TOPK_FP16;
	m->n_params = 100;
	expect_update(m, 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
}

static void test_reject_int8(void **state)
{
	float x[100];
	uint32_t seg[2] = { 60, 40 }, bad_seg[FV_WIRE_MAX_SEG + 1];
	float scales[FV_WIRE_MAX_SEG + 1];
	Fedvigil__V1__ModelUpdate *m;
	uint8_t *buf;

	(void)state;
	for (int i = 0; i < 100; i++)
		x[i] = sinf((float)i);
	m = encoded(x, 100, FV_ENC_INT8, 0, 2, seg, &buf);
	assert_int_equal(m->n_scales, 2);
	assert_int_equal(m->n_segments, 2);
	expect_update(m, 0);

	/* scales: NaN, Inf, negative, one missing, one too many */
	{
		float keep = m->scales[1];

		m->scales[1] = NAN;
		expect_update(m, -EILSEQ);
		m->scales[1] = INFINITY;
		expect_update(m, -EILSEQ);
		m->scales[1] = -0.5f;
		expect_update(m, -EILSEQ);
		m->scales[1] = 0.0f; /* an all-zero segment */
		expect_update(m, 0);
		m->scales[1] = 3e38f; /* finite, but q * scale overflows */
		expect_update(m, -ERANGE);
		m->scales[1] = keep;
	}
	m->n_scales = 1;
	expect_update(m, -EILSEQ);
	{
		float *keep = m->scales;

		memcpy(scales, m->scales, 2 * sizeof(float));
		scales[2] = 1.0f;
		m->scales = scales;
		m->n_scales = 3;
		expect_update(m, -EILSEQ);
		m->scales = keep;
		m->n_scales = 2;
	}

	/* segments: not summing to the length, a zero length, too many */
	m->segments[1] = 39;
	expect_update(m, -EILSEQ);
	m->segments[0] = 0;
	m->segments[1] = 100;
	expect_update(m, -EILSEQ);
	m->segments[0] = 60;
	m->segments[1] = 40;
	expect_update(m, 0);
	for (uint32_t i = 0; i <= FV_WIRE_MAX_SEG; i++) {
		bad_seg[i] = i < FV_WIRE_MAX_SEG ? 1 : 100 - FV_WIRE_MAX_SEG;
		scales[i] = 0.01f;
	}
	{
		uint32_t *ks = m->segments;
		float *kf = m->scales;

		m->segments = bad_seg;
		m->n_segments = FV_WIRE_MAX_SEG + 1;
		m->scales = scales;
		m->n_scales = FV_WIRE_MAX_SEG + 1;
		expect_update(m, -EILSEQ);
		/* without segments, exactly one scale */
		m->segments = NULL;
		m->n_segments = 0;
		m->n_scales = 2;
		expect_update(m, -EILSEQ);
		m->n_scales = 1;
		expect_update(m, 0);
		m->segments = ks;
		m->n_segments = 2;
		m->scales = kf;
		m->n_scales = 2;
	}
	/* -128 is outside the symmetric range */
	{
		uint8_t keep = m->delta.data[7];

		m->delta.data[7] = 0x80;
		expect_update(m, -EILSEQ);
		m->delta.data[7] = 0x81; /* -127 */
		expect_update(m, 0);
		m->delta.data[7] = keep;
	}
	/* indices on a dense encoding */
	m->indices.data = (uint8_t *)"\x01";
	m->indices.len = 1;
	expect_update(m, -EILSEQ);
	m->indices.data = NULL;
	m->indices.len = 0;
	expect_update(m, 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);

	/* the same rules for top-k int8 */
	m = encoded(x, 100, FV_ENC_TOPK_INT8, 0.2f, 2, seg, &buf);
	expect_update(m, 0);
	m->scales[0] = NAN;
	expect_update(m, -EILSEQ);
	m->scales[0] = 0.1f;
	m->n_segments = 0;
	expect_update(m, -EILSEQ); /* two scales, one (implicit) segment */
	m->n_segments = 2;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);

	assert_int_equal(fv_reject_from_errno(-EILSEQ), FV_REJ_COMPRESSION);
	assert_string_equal(fv_reject_name(FV_REJ_COMPRESSION), "compression");
}

/* Raw bytes: oversized side-data fields are refused by the scanner before
 * protobuf-c allocates for them. */
static void test_reject_scan(void **state)
{
	uint8_t buf[2048];
	size_t n = 0;

	(void)state;
	/* field 10 (scales), packed, 65 floats */
	buf[n++] = (10 << 3) | 2;
	buf[n++] = (uint8_t)(0x80 | (260 & 0x7f));
	buf[n++] = (uint8_t)(260 >> 7);
	memset(buf + n, 0, 260);
	n += 260;
	{
		struct fv_update u;

		assert_int_equal(fv_update_decode(buf, n, NULL, &u), -EILSEQ);
	}
	/* field 61 (segments), 65 unpacked varints */
	n = 0;
	for (int i = 0; i < FV_WIRE_MAX_SEG + 1; i++) {
		buf[n++] = (uint8_t)(0x80 | ((61 << 3) & 0x7f));
		buf[n++] = (61 << 3) >> 7;
		buf[n++] = 1;
	}
	{
		struct fv_update u;

		assert_int_equal(fv_update_decode(buf, n, NULL, &u), -EILSEQ);
	}
}

/* ---- RoundAnnounce and GlobalModel ---- */

/* Dense fp32 is decoded in bulk (a coordinator decodes thousands per
 * round): bit-exact for every finite value, including -0, subnormals and
 * the extremes, and a NaN or Inf anywhere (here: the last value, after a
 * long run of good ones) is refused. */
static void test_fp32_bulk(void **state)
{
	const size_t n = 4099;
	float *x = malloc(n * sizeof(float));
	Fedvigil__V1__ModelUpdate *m;
	struct fv_update u, d;
	uint8_t *buf;

	(void)state;
	assert_non_null(x);
	fill(x, n, 7);
	x[1] = -0.0f;
	x[2] = bits_f(0x00000001);  /* smallest subnormal */
	x[3] = bits_f(0x807fffff);  /* largest negative subnormal */
	x[4] = 3.4028235e38f;
	x[5] = -3.4028235e38f;
	make_update(&u, x, n, FV_ENC_FP32, 0);
	roundtrip(&u, &d);
	assert_memory_equal(d.delta, x, n * sizeof(float));
	fv_update_clear(&d);

	m = encoded(x, n, FV_ENC_FP32, 0, 0, NULL, &buf);
	assert_int_equal(m->delta.len, 4 * n);
	expect_update(m, 0);
	{
		static const uint32_t bad[] = { 0x7f800000, 0xff800000, 0x7fc00000, 0xffffffff,
						0x7f800001 };

		for (size_t k = 0; k < FV_ARRAY_SIZE(bad); k++) {
			uint8_t keep[4];

			memcpy(keep, m->delta.data + 4 * (n - 1), 4);
			memcpy(m->delta.data + 4 * (n - 1), &bad[k], 4);
			expect_update(m, -ERANGE);
			memcpy(m->delta.data + 4 * (n - 1), keep, 4);
		}
	}
	expect_update(m, 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	free(buf);
	free(x);
}

/* fv_update_encode_comp(): what an agent sends for a round's compression.
 * With error feedback it equals add -> encode_sent -> commit done by hand
 * (so the residual keeps sum(sent) + resid == sum(true)), int8 gets one
 * scale per layer tensor from the spec, and a residual of another size is
 * started over; without feedback the residual is dropped. */
static void test_encode_comp(void **state)
{
	struct fv_model_spec spec;
	struct fv_compress c = { .enc = FV_ENC_TOPK_INT8, .topk = 0.1f, .error_feedback = true };
	struct fv_ef ef = { 0 }, ref;
	size_t n;
	float *delta, *v, *sent;

	(void)state;
	assert_int_equal(fv_model_spec_preset(FV_PRESET_AE20, 20, &spec), 0);
	n = fv_model_spec_nparams(&spec);
	delta = malloc(n * sizeof(float));
	v = malloc(n * sizeof(float));
	sent = malloc(n * sizeof(float));
	assert_non_null(delta);
	assert_non_null(v);
	assert_non_null(sent);
	assert_int_equal(fv_ef_init(&ref, n), 0);
	for (int round = 0; round < 5; round++) {
		struct fv_update u, d, r;
		uint8_t *buf, *rbuf;
		size_t len, rlen;

		fill(delta, n, 50 + (uint64_t)round);
		make_update(&u, delta, n, FV_ENC_FP32, 0);
		assert_int_equal(fv_update_encode_comp(&u, &c, &spec, &ef, &buf, &len), 0);
		assert_true(u.delta == delta); /* the true delta stays the caller's */
		assert_int_equal(u.enc, FV_ENC_TOPK_INT8);
		assert_int_equal(u.n_seg, 8); /* W and b of four layers */
		assert_int_equal(ef.n, n);
		/* the same by hand */
		fv_ef_add(&ref, delta, v);
		r = u;
		r.delta = v;
		assert_int_equal(fv_update_encode_sent(&r, sent, &rbuf, &rlen), 0);
		fv_ef_commit(&ref, v, sent);
		assert_int_equal(len, rlen);
		assert_memory_equal(buf, rbuf, len);
		assert_memory_equal(ef.resid, ref.resid, n * sizeof(float));
		assert_int_equal(fv_update_decode(buf, len, FLEET, &d), 0);
		assert_memory_equal(d.delta, sent, n * sizeof(float));
		fv_update_clear(&d);
		free(buf);
		free(rbuf);
	}
	/* a residual of another model's size starts over */
	fv_ef_free(&ef);
	assert_int_equal(fv_ef_init(&ef, 3), 0);
	{
		struct fv_update u;
		uint8_t *buf;
		size_t len;

		make_update(&u, delta, n, FV_ENC_FP32, 0);
		assert_int_equal(fv_update_encode_comp(&u, &c, &spec, &ef, &buf, &len), 0);
		assert_int_equal(ef.n, n);
		free(buf);
		/* without error feedback: plain fp16, no residual kept */
		c = (struct fv_compress){ .enc = FV_ENC_FP16 };
		make_update(&u, delta, n, FV_ENC_FP32, 0);
		assert_int_equal(fv_update_encode_comp(&u, &c, &spec, &ef, &buf, &len), 0);
		assert_int_equal(u.enc, FV_ENC_FP16);
		assert_int_equal(u.n_seg, 0);
		assert_int_equal(ef.n, 0);
		assert_null(ef.resid);
		free(buf);
		/* top-k with float values keeps its share per layer too, as the
		 * agent's compress_and_send() does */
		c = (struct fv_compress){ .enc = FV_ENC_TOPK_FP16, .topk = 0.1f };
		make_update(&u, delta, n, FV_ENC_FP32, 0);
		assert_int_equal(fv_update_encode_comp(&u, &c, &spec, &ef, &buf, &len), 0);
		assert_int_equal(u.n_seg, 8);
		free(buf);
	}
	fv_ef_free(&ref);
	free(delta);
	free(v);
	free(sent);
}

static void test_announce_compression(void **state)
{
	struct fv_announce a, d;
	uint8_t *buf;
	size_t len, len0;
	Fedvigil__V1__RoundAnnounce *m;

	(void)state;
	memset(&a, 0, sizeof(a));
	fill_hdr(&a.h);
	a.kind = FV_ROUND_TRAIN;
	assert_int_equal(fv_announce_encode(&a, &buf, &len0), 0);
	assert_int_equal(fv_announce_decode(buf, len0, FLEET, &d), 0);
	assert_int_equal(d.comp.enc, FV_ENC_FP32);
	assert_false(d.comp.error_feedback);
	fv_announce_clear(&d);
	free(buf);

	a.comp.enc = FV_ENC_TOPK_INT8;
	a.comp.topk = 0.05f;
	a.comp.error_feedback = true;
	assert_int_equal(fv_announce_encode(&a, &buf, &len), 0);
	assert_true(len > len0);
	assert_int_equal(fv_announce_decode(buf, len, FLEET, &d), 0);
	assert_int_equal(d.comp.enc, FV_ENC_TOPK_INT8);
	assert_true(d.comp.topk == 0.05f);
	assert_true(d.comp.error_feedback);
	fv_announce_clear(&d);

	m = pb_of(&fedvigil__v1__round_announce__descriptor, buf, len);
	free(buf);
	m->compression->topk = 0.0f;
	len = protobuf_c_message_get_packed_size(&m->base);
	buf = malloc(len);
	assert_non_null(buf);
	protobuf_c_message_pack(&m->base, buf);
	assert_int_equal(fv_announce_decode(buf, len, FLEET, &d), -ERANGE);
	free(buf);
	m->compression->topk = 0.5f;
	m->compression->encoding = 6;
	len = protobuf_c_message_get_packed_size(&m->base);
	buf = malloc(len);
	assert_non_null(buf);
	protobuf_c_message_pack(&m->base, buf);
	assert_int_equal(fv_announce_decode(buf, len, FLEET, &d), -EPROTO);
	free(buf);
	protobuf_c_message_free_unpacked(&m->base, NULL);

	a.comp.topk = 2.0f;
	assert_int_equal(fv_announce_encode(&a, &buf, &len), -EINVAL);
}

static void test_global_fp16(void **state)
{
	static const uint32_t hidden[] = { 4, 2, 4 };
	struct fv_global g, d;
	float mean[4] = { 0, 1, 2, 3 }, sd[4] = { 1, 1, 1, 1 };
	uint8_t *buf;
	size_t len32, len16;
	Fedvigil__V1__GlobalModel *m;

	(void)state;
	memset(&g, 0, sizeof(g));
	fill_hdr(&g.h);
	g.version = 4;
	assert_int_equal(fv_model_spec_autoencoder(8, hidden, 3, FV_ACT_TANH, FV_ACT_LINEAR,
						   &g.spec), 0);
	g.window = 2;
	g.stride = 1;
	g.n_channels = 4;
	g.mean = mean;
	g.std = sd;
	g.n_params = fv_model_spec_nparams(&g.spec);
	g.params = malloc(g.n_params * sizeof(float));
	assert_non_null(g.params);
	for (size_t i = 0; i < g.n_params; i++)
		g.params[i] = sinf((float)i) * 0.3f;
	assert_int_equal(fv_global_encode(&g, &buf, &len32), 0);
	free(buf);
	g.params_enc = FV_ENC_FP16;
	fv_fp16_round(g.params, g.n_params);
	assert_int_equal(fv_global_encode(&g, &buf, &len16), 0);
	/* two bytes less per value, plus the encoding field (2 bytes) */
	assert_true(len32 - len16 >= 2 * g.n_params - 4 && len32 - len16 <= 2 * g.n_params);
	assert_int_equal(fv_global_decode(buf, len16, FLEET, &d), 0);
	assert_int_equal(d.params_enc, FV_ENC_FP16);
	/* rounded first, so the receivers hold exactly the sender's values */
	assert_memory_equal(d.params, g.params, g.n_params * sizeof(float));
	fv_global_clear(&d);

	m = pb_of(&fedvigil__v1__global_model__descriptor, buf, len16);
	free(buf);
	m->params.len -= 2; /* one value short */
	len16 = protobuf_c_message_get_packed_size(&m->base);
	buf = malloc(len16);
	assert_non_null(buf);
	protobuf_c_message_pack(&m->base, buf);
	assert_int_equal(fv_global_decode(buf, len16, FLEET, &d), -EDOM);
	free(buf);
	m->params.len += 2;
	m->params_encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_INT8;
	len16 = protobuf_c_message_get_packed_size(&m->base);
	buf = malloc(len16);
	assert_non_null(buf);
	protobuf_c_message_pack(&m->base, buf);
	assert_int_equal(fv_global_decode(buf, len16, FLEET, &d), -EPROTO);
	free(buf);
	m->params_encoding = FEDVIGIL__V1__DELTA_ENCODING__DELTA_ENCODING_FP16;
	memcpy(m->params.data, (uint8_t[]){ 0x00, 0xfc }, 2); /* -Inf */
	len16 = protobuf_c_message_get_packed_size(&m->base);
	buf = malloc(len16);
	assert_non_null(buf);
	protobuf_c_message_pack(&m->base, buf);
	assert_int_equal(fv_global_decode(buf, len16, FLEET, &d), -ERANGE);
	free(buf);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	g.params_enc = FV_ENC_INT8;
	assert_int_equal(fv_global_encode(&g, &buf, &len16), -EINVAL);
	free(g.params);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fp16),
		cmocka_unit_test(test_dense_roundtrips),
		cmocka_unit_test(test_topk_roundtrips),
		cmocka_unit_test(test_topk_segments_bitmap),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_error_feedback),
		cmocka_unit_test(test_fp32_bulk),
		cmocka_unit_test(test_encode_comp),
		cmocka_unit_test(test_reject_topk),
		cmocka_unit_test(test_reject_bitmap),
		cmocka_unit_test(test_reject_int8),
		cmocka_unit_test(test_reject_scan),
		cmocka_unit_test(test_announce_compression),
		cmocka_unit_test(test_global_fp16),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
