/* Update compression: binary16, int8 with per-segment scales, top-k
 * sparsification (indices as varint gaps), and the agent's error feedback.
 *
 * The encoder and the decoder rebuild a dense delta with the same
 * expressions (h2f(), (float)q * scale), so the reconstruction the encoder
 * returns is bit for bit what the coordinator decodes: error feedback then
 * carries exactly what was lost.
 *
 * Everything the decoder reads comes from a peer: counts, indices, scales
 * and segment lengths are checked before they are used, and every value is
 * checked after it is rebuilt. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "wire/wire-int.h"

/* ---- binary16 ---- */

/* Round-to-nearest-even float -> binary16 for finite x; magnitudes beyond
 * the largest half (65504) saturate instead of becoming infinite. */
uint16_t wire_f2h(float f)
{
	uint32_t x, sign;
	uint16_t o;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000u;
	x &= 0x7fffffffu;
	if (x >= 0x47800000u) /* >= 65536 (or Inf/NaN: callers pass finite) */
		return (uint16_t)(sign | 0x7bffu);
	if (x < 0x38800000u) {
		/* Below the smallest normal half (2^-14): the result is a
		 * subnormal half, |f| / 2^-24 rounded to an integer. Adding
		 * 0.5 (2^-1) lines the half's mantissa up with the float's
		 * low bits, and the FPU rounds to nearest even. */
		float v, magic = 0.5f;
		uint32_t m;

		memcpy(&v, &x, 4);
		v += magic;
		memcpy(&m, &v, 4);
		o = (uint16_t)(m - 0x3f000000u);
	} else {
		uint32_t odd = (x >> 13) & 1u;

		/* Rebias the exponent (127 -> 15) and round the 13 dropped
		 * mantissa bits to nearest even. */
		x += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
		o = (uint16_t)(x >> 13);
		if (o >= 0x7c00u)
			o = 0x7bffu; /* 65504..65520 rounded up to infinity */
	}
	return (uint16_t)(o | sign);
}

/* binary16 -> float (exact). Inf/NaN halves come back as Inf/NaN. */
float wire_h2f(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
	float f;

	if (e == 0) {
		f = ldexpf((float)m, -24); /* zero or subnormal */
		return sign ? -f : f;
	}
	if (e == 31)
		bits = sign | 0x7f800000u | (m << 13);
	else
		bits = sign | ((e + 112u) << 23) | (m << 13);
	memcpy(&f, &bits, 4);
	return f;
}

void fv_fp16_round(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = wire_h2f(wire_f2h(x[i]));
}

/* ---- names ---- */

const char *fv_enc_name(enum fv_enc e)
{
	static const char *const names[FV_ENC__MAX] = {
		[FV_ENC_FP32] = "fp32",           [FV_ENC_FP16] = "fp16",
		[FV_ENC_INT8] = "int8",           [FV_ENC_TOPK_FP32] = "topk-fp32",
		[FV_ENC_TOPK_FP16] = "topk-fp16", [FV_ENC_TOPK_INT8] = "topk-int8",
	};

	return (unsigned)e < FV_ENC__MAX ? names[e] : "unknown";
}

bool fv_enc_sparse(enum fv_enc e)
{
	return e == FV_ENC_TOPK_FP32 || e == FV_ENC_TOPK_FP16 || e == FV_ENC_TOPK_INT8;
}

static bool enc_int8(enum fv_enc e)
{
	return e == FV_ENC_INT8 || e == FV_ENC_TOPK_INT8;
}

/* Bytes per value on the wire. */
static size_t enc_width(enum fv_enc e)
{
	switch (e) {
	case FV_ENC_FP16:
	case FV_ENC_TOPK_FP16:
		return 2;
	case FV_ENC_INT8:
	case FV_ENC_TOPK_INT8:
		return 1;
	default:
		return 4;
	}
}

uint32_t fv_compress_segments(const struct fv_model_spec *spec, uint32_t *ret_seg, uint32_t max)
{
	uint64_t total = 0;
	uint32_t n = 0;

	/* Only the dense layout is known here; other kinds get one scale. */
	if (!spec || spec->kind != FV_MODEL_DENSE || fv_model_spec_validate(spec) < 0 ||
	    2 * spec->n_layers > max)
		return 0;
	for (uint32_t l = 0; l < spec->n_layers; l++) {
		uint32_t in = spec->sizes[l], out = spec->sizes[l + 1];

		ret_seg[n++] = in * out; /* W: bounded by FV_NN_MAX_PARAMS */
		ret_seg[n++] = out;      /* b */
		total += (uint64_t)in * out + out;
	}
	return total == fv_model_spec_nparams(spec) ? n : 0;
}

/* ---- top-k ---- */

static void swapf(float *a, float *b)
{
	float t = *a;

	*a = *b;
	*b = t;
}

static float median3(float a, float b, float c)
{
	if (a > b)
		swapf(&a, &b);
	if (b > c)
		swapf(&b, &c);
	if (a > b)
		swapf(&a, &b);
	return b;
}

/* The value that would sit at index pos (0-based) if a (n > pos) were
 * sorted ascending. Reorders a. Quickselect with a three-way partition, so
 * runs of equal values (zeros of a sparse delta) cost one pass. */
static float select_nth(float *a, size_t n, size_t pos)
{
	size_t lo = 0, hi = n;

	while (hi - lo > 1) {
		float p = median3(a[lo], a[lo + (hi - lo) / 2], a[hi - 1]);
		size_t lt = lo, i = lo, gt = hi;

		/* [lo, lt) < p, [lt, i) == p, [gt, hi) > p */
		while (i < gt) {
			if (a[i] < p)
				swapf(&a[lt++], &a[i++]);
			else if (a[i] > p)
				swapf(&a[i], &a[--gt]);
			else
				i++;
		}
		if (pos < lt)
			hi = lt;
		else if (pos >= gt)
			lo = gt;
		else
			return p;
	}
	return a[lo];
}

/* Indices (ascending) of the k largest |x| of n; equal magnitudes at the
 * cut are taken from the lowest index on; exact zeros are never taken, so
 * fewer than k may come back. Returns the count or -ENOMEM. */
static long topk_select(const float *x, size_t n, size_t k, uint32_t *ret_idx)
{
	float *mag, thr;
	size_t above = 0, ties, m = 0;

	if (k == 0 || n == 0)
		return 0;
	if (k > n)
		k = n;
	mag = malloc(n * sizeof(float));
	if (!mag)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		mag[i] = fabsf(x[i]);
	thr = select_nth(mag, n, n - k);
	free(mag);
	for (size_t i = 0; i < n; i++)
		if (fabsf(x[i]) > thr)
			above++;
	ties = thr > 0.0f ? k - above : 0;
	for (size_t i = 0; i < n; i++) {
		float a = fabsf(x[i]);

		if (a > thr || (a == thr && ties > 0 && a > 0.0f)) {
			if (a == thr)
				ties--;
			ret_idx[m++] = (uint32_t)i;
		}
	}
	return (long)m;
}

/* Entries top-k keeps of len: max(1, round(topk * len)), at most len.
 * Rounded, not ceil'ed: 0.1f is 0.10000000149, and 5000 of it keep 500. */
static size_t topk_count(float topk, size_t len)
{
	double want = floor((double)topk * (double)len + 0.5);

	return want < 1.0 ? 1 : FV_MIN((size_t)want, len);
}

/* ---- varints ---- */

static size_t varint_len(uint32_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static size_t put_varint(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A varint of at most 32 bits at *p (< end); advances *p. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint32_t *ret)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 5; i++) {
		if (*p >= end)
			return -EILSEQ;
		uint8_t b = *(*p)++;

		if (i == 4 && b > 0x0f)
			return -EILSEQ; /* more than 32 bits */
		v |= (uint32_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return -EILSEQ;
}

/* ---- encoding ---- */

void wire_packed_free(struct wire_packed *p)
{
	if (!p)
		return;
	free(p->values);
	free(p->indices);
	free(p->bitmap);
	memset(p, 0, sizeof(*p));
}

/* n little-endian binary32 values -> ret; -ERANGE if one is NaN or Inf
 * (ret is written either way). The same results as value_at(). */
static int unpack_fp32(const uint8_t *v, size_t n, float *ret)
{
	uint32_t bad = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(ret, v, n * sizeof(float));
#else
	for (size_t i = 0; i < n; i++) {
		uint32_t x = (uint32_t)v[4 * i] | (uint32_t)v[4 * i + 1] << 8 |
			     (uint32_t)v[4 * i + 2] << 16 | (uint32_t)v[4 * i + 3] << 24;

		memcpy(&ret[i], &x, 4);
	}
#endif
	/* All exponent bits set: Inf or NaN. One pass without branches. */
	for (size_t i = 0; i < n; i++) {
		uint32_t x;

		memcpy(&x, &ret[i], 4);
		bad |= (x & 0x7f800000u) == 0x7f800000u;
	}
	return bad ? -ERANGE : 0;
}

/* Value i of the packed vector as the decoder rebuilds it. */
static float value_at(const struct wire_packed *p, size_t i, uint32_t s)
{
	switch (p->enc) {
	case FV_ENC_FP16:
	case FV_ENC_TOPK_FP16:
		return wire_h2f((uint16_t)(p->values[2 * i] | p->values[2 * i + 1] << 8));
	case FV_ENC_INT8:
	case FV_ENC_TOPK_INT8:
		return (float)(int8_t)p->values[i] * p->scales[s];
	default: {
		uint32_t v = (uint32_t)p->values[4 * i] | (uint32_t)p->values[4 * i + 1] << 8 |
			     (uint32_t)p->values[4 * i + 2] << 16 |
			     (uint32_t)p->values[4 * i + 3] << 24;
		float f;

		memcpy(&f, &v, 4);
		return f;
	}
	}
}

static void put_value(struct wire_packed *p, size_t i, float x, uint32_t s)
{
	switch (p->enc) {
	case FV_ENC_FP16:
	case FV_ENC_TOPK_FP16: {
		uint16_t h = wire_f2h(x);

		p->values[2 * i] = (uint8_t)h;
		p->values[2 * i + 1] = (uint8_t)(h >> 8);
		break;
	}
	case FV_ENC_INT8:
	case FV_ENC_TOPK_INT8: {
		float sc = p->scales[s];
		long q = sc > 0.0f ? lrintf(x / sc) : 0;

		q = q > 127 ? 127 : q < -127 ? -127 : q;
		p->values[i] = (uint8_t)(int8_t)q;
		break;
	}
	default: {
		uint32_t v;

		memcpy(&v, &x, 4);
		p->values[4 * i] = (uint8_t)v;
		p->values[4 * i + 1] = (uint8_t)(v >> 8);
		p->values[4 * i + 2] = (uint8_t)(v >> 16);
		p->values[4 * i + 3] = (uint8_t)(v >> 24);
		break;
	}
	}
}

int wire_pack_delta(const float *x, size_t n, enum fv_enc enc, float topk, uint32_t n_seg,
		    const uint32_t *seg, float *ret_sent, struct wire_packed *ret)
{
	struct wire_packed p;
	uint32_t *idx = NULL;
	size_t nnz = n, end, s_end;
	uint32_t s;
	int r = -ENOMEM;

	if ((unsigned)enc >= FV_ENC__MAX || n > FV_NN_MAX_PARAMS || (n && !x) ||
	    n_seg > FV_WIRE_MAX_SEG || (n_seg && !seg))
		return -EINVAL;
	if (fv_enc_sparse(enc) && !(topk > 0.0f && topk <= 1.0f))
		return -EINVAL;
	memset(&p, 0, sizeof(p));
	p.enc = enc;
	p.n = n;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return -ERANGE;
	{
		uint64_t sum = 0;

		for (uint32_t i = 0; i < n_seg; i++) {
			if (seg[i] == 0)
				return -EINVAL;
			sum += seg[i];
		}
		if (n_seg && sum != n)
			return -EINVAL;
	}
	if (enc_int8(enc)) {
		p.n_seg = n_seg ? n_seg : 1;
		if (n_seg)
			memcpy(p.seg, seg, n_seg * sizeof(*seg));
		else
			p.seg[0] = (uint32_t)n;
	}
	if (n == 0) {
		/* Nothing to send: no side data either. */
		p.n_seg = 0;
		*ret = p;
		return 0;
	}
	if (fv_enc_sparse(enc)) {
		size_t gaps = 0, off = 0;
		long m;

		idx = malloc(n * sizeof(*idx));
		if (!idx)
			goto fail;
		/* With segments, each one (a layer's W, its b) keeps its own
		 * share, so that no tensor starves: a global cut would hardly
		 * ever pick a bias. */
		nnz = 0;
		for (uint32_t t = 0; t < (n_seg ? n_seg : 1); t++) {
			size_t len = n_seg ? seg[t] : n;

			m = topk_select(x + off, len, topk_count(topk, len), idx + nnz);
			if (m < 0)
				goto fail;
			for (long j = 0; j < m; j++)
				idx[nnz + (size_t)j] += (uint32_t)off;
			nnz += (size_t)m;
			off += len;
		}
		for (size_t i = 0; i < nnz; i++)
			gaps += varint_len(i ? idx[i] - idx[i - 1] : idx[0]);
		if (gaps > (n + 7) / 8) {
			/* Dense enough that one bit per parameter is smaller. */
			p.bitmap_len = (n + 7) / 8;
			p.bitmap = calloc(p.bitmap_len, 1);
			if (!p.bitmap)
				goto fail;
			for (size_t i = 0; i < nnz; i++)
				p.bitmap[idx[i] / 8] |= (uint8_t)(1u << (idx[i] % 8));
		} else {
			p.indices = malloc(gaps + 1);
			if (!p.indices)
				goto fail;
			for (size_t i = 0; i < nnz; i++)
				p.indices_len += put_varint(p.indices + p.indices_len,
							    i ? idx[i] - idx[i - 1] : idx[0]);
		}
	}
	p.nnz = nnz;
	p.values_len = nnz * enc_width(enc);
	p.values = malloc(p.values_len + 1);
	if (!p.values)
		goto fail;
	if (enc_int8(enc)) {
		/* Scale per segment: its largest |value| maps to 127. */
		float maxabs[FV_WIRE_MAX_SEG] = { 0 };

		s = 0;
		s_end = p.seg[0];
		for (size_t j = 0; j < nnz; j++) {
			size_t i = idx ? idx[j] : j;

			while (i >= s_end)
				s_end += p.seg[++s];
			maxabs[s] = FV_MAX(maxabs[s], fabsf(x[i]));
		}
		for (s = 0; s < p.n_seg; s++)
			p.scales[s] = maxabs[s] / 127.0f;
	}
	if (ret_sent)
		memset(ret_sent, 0, n * sizeof(float));
	s = 0;
	end = p.n_seg ? p.seg[0] : n;
	for (size_t j = 0; j < nnz; j++) {
		size_t i = idx ? idx[j] : j;

		while (p.n_seg && i >= end)
			end += p.seg[++s];
		put_value(&p, j, x[i], s);
		if (ret_sent)
			ret_sent[i] = value_at(&p, j, s);
	}
	free(idx);
	*ret = p;
	return 0;
fail:
	free(idx);
	wire_packed_free(&p);
	return r;
}

/* ---- decoding ---- */

int wire_unpack_delta(const struct wire_side *in, float **ret_delta, size_t *ret_n,
		      size_t *ret_nnz, uint32_t *ret_n_seg, uint32_t *ret_seg)
{
	enum fv_enc enc = in->enc;
	size_t width, nnz, n;
	struct wire_packed p;
	uint32_t *idx = NULL, n_seg = 0;
	float *d = NULL;
	int r;

	if ((unsigned)enc >= FV_ENC__MAX)
		return -EPROTO;
	width = enc_width(enc);
	if (in->values_len % width != 0)
		return -EDOM;
	nnz = in->values_len / width;
	/* Side data of another encoding is an error, not ignored. */
	if (!fv_enc_sparse(enc) && (in->indices_len || in->bitmap_len))
		return -EILSEQ;
	if (in->indices_len && in->bitmap_len)
		return -EILSEQ; /* one index form or the other */
	if (!enc_int8(enc) && (in->n_scales || in->n_segments))
		return -EILSEQ;
	if (fv_enc_sparse(enc)) {
		if (in->n_params > FV_NN_MAX_PARAMS)
			return -EDOM;
		if (in->n_params == 0 || nnz > in->n_params)
			return -EILSEQ;
		n = in->n_params;
	} else {
		if (nnz > FV_NN_MAX_PARAMS)
			return -EDOM;
		if (in->n_params && in->n_params != nnz)
			return -EILSEQ;
		n = nnz;
	}
	if (n == 0) {
		if (in->n_scales || in->n_segments)
			return -EILSEQ;
		*ret_delta = NULL;
		*ret_n = 0;
		*ret_nnz = 0;
		*ret_n_seg = 0;
		return 0;
	}
	memset(&p, 0, sizeof(p));
	p.enc = enc;
	p.n = n;
	p.nnz = nnz;
	p.values = (uint8_t *)(uintptr_t)in->values; /* only read below */
	if (enc_int8(enc)) {
		uint64_t sum = 0;

		if (in->n_segments > FV_WIRE_MAX_SEG)
			return -EILSEQ;
		n_seg = in->n_segments ? (uint32_t)in->n_segments : 1;
		if (in->n_scales != n_seg)
			return -EILSEQ;
		for (uint32_t s = 0; s < in->n_segments; s++) {
			if (in->segments[s] == 0)
				return -EILSEQ;
			sum += in->segments[s];
			p.seg[s] = in->segments[s];
		}
		if (in->n_segments && sum != n)
			return -EILSEQ;
		if (!in->n_segments)
			p.seg[0] = (uint32_t)n;
		for (uint32_t s = 0; s < n_seg; s++) {
			if (!isfinite(in->scales[s]) || !(in->scales[s] >= 0.0f))
				return -EILSEQ;
			p.scales[s] = in->scales[s];
		}
		p.n_seg = n_seg;
		for (size_t j = 0; j < nnz; j++)
			if (in->values[j] == 0x80) /* -128: outside the symmetric range */
				return -EILSEQ;
	}
	if (fv_enc_sparse(enc) && in->bitmap_len) {
		size_t j = 0;

		/* One bit per parameter, LSB first; none set beyond n. */
		if (in->bitmap_len != (n + 7) / 8)
			return -EILSEQ;
		if (n % 8 && (in->bitmap[in->bitmap_len - 1] >> (n % 8)))
			return -EILSEQ;
		idx = malloc((nnz ? nnz : 1) * sizeof(*idx));
		if (!idx)
			return -ENOMEM;
		r = -EILSEQ;
		for (size_t b = 0; b < in->bitmap_len; b++) {
			uint8_t v = in->bitmap[b];

			for (unsigned bit = 0; v && bit < 8; bit++, v >>= 1) {
				if (!(v & 1))
					continue;
				if (j == nnz)
					goto fail; /* more bits than values */
				idx[j++] = (uint32_t)(b * 8 + bit);
			}
		}
		if (j != nnz)
			goto fail; /* fewer bits than values */
	} else if (fv_enc_sparse(enc)) {
		/* No indices field: NULL, and NULL + 0 is undefined in C. */
		const uint8_t *q = in->indices, *end = q ? q + in->indices_len : q;
		uint64_t at = 0;

		idx = malloc((nnz ? nnz : 1) * sizeof(*idx));
		if (!idx)
			return -ENOMEM;
		r = -EILSEQ;
		for (size_t j = 0; j < nnz; j++) {
			uint32_t g;

			if (get_varint(&q, end, &g) < 0)
				goto fail;
			if (j > 0 && g == 0)
				goto fail; /* repeated index */
			at = j ? at + g : g;
			if (at >= n)
				goto fail;
			idx[j] = (uint32_t)at;
		}
		if (q != end)
			goto fail; /* more indices than values */
	}
	r = -ENOMEM;
	/* Dense encodings write every element; only sparse ones need zeros. */
	d = idx ? calloc(n, sizeof(float)) : malloc(n * sizeof(float));
	if (!d)
		goto fail;
	if (enc == FV_ENC_FP32) {
		/* The common case in bulk (a coordinator decodes thousands of
		 * these per round): the bytes are the floats, little-endian. */
		r = -ERANGE;
		if (unpack_fp32(p.values, n, d) < 0)
			goto fail;
	} else {
		uint32_t s = 0;
		size_t end_s = p.n_seg ? p.seg[0] : n;

		r = -ERANGE;
		for (size_t j = 0; j < nnz; j++) {
			size_t i = idx ? idx[j] : j;

			while (p.n_seg && i >= end_s)
				end_s += p.seg[++s];
			d[i] = value_at(&p, j, s);
			if (!isfinite(d[i]))
				goto fail;
		}
	}
	free(idx);
	*ret_delta = d;
	*ret_n = n;
	*ret_nnz = nnz;
	*ret_n_seg = enc_int8(enc) ? (uint32_t)in->n_segments : 0;
	if (*ret_n_seg)
		memcpy(ret_seg, p.seg, *ret_n_seg * sizeof(*ret_seg));
	return 0;
fail:
	free(idx);
	free(d);
	return r;
}

/* ---- error feedback ---- */

int fv_ef_init(struct fv_ef *ef, size_t n)
{
	ef->n = n;
	ef->resid = calloc(n ? n : 1, sizeof(float));
	return ef->resid ? 0 : -ENOMEM;
}

void fv_ef_free(struct fv_ef *ef)
{
	if (!ef)
		return;
	free(ef->resid);
	ef->resid = NULL;
	ef->n = 0;
}

void fv_ef_reset(struct fv_ef *ef)
{
	if (ef->resid)
		memset(ef->resid, 0, ef->n * sizeof(float));
}

void fv_ef_add(const struct fv_ef *ef, const float *delta, float *ret_v)
{
	for (size_t i = 0; i < ef->n; i++)
		ret_v[i] = delta[i] + ef->resid[i];
}

void fv_ef_commit(struct fv_ef *ef, const float *v, const float *sent)
{
	for (size_t i = 0; i < ef->n; i++)
		ef->resid[i] = v[i] - sent[i];
}
