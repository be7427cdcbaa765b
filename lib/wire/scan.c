/* A bounds-checking walk over protobuf bytes, run before protobuf-c unpacks
 * them.
 *
 * protobuf_c_message_unpack() allocates as it goes: a repeated field of
 * empty sub-messages costs ~40 bytes of heap per 2 bytes of input, a packed
 * uint64 field 8 bytes per byte, and protobuf-c 1.4.1 (Debian bookworm) has
 * unpack bugs fixed only in 1.5.x. So every message from a peer is walked
 * here first, without allocating, against a table of what each field may
 * hold; only bytes that fit our schema with bounded counts reach the
 * unpacker. The tables mirror proto/fedvigil.proto: keep them in step.
 *
 * What the walk guarantees, and why it matters with 1.4.1:
 * - Bytes it accepts unpack without error (tests/fuzz/fuzz_wire.c asserts
 *   it): well-formed tags, varints and lengths, only the wire types the
 *   schema has, no groups, packed fields of whole elements. protobuf-c's
 *   error paths (error_cleanup: protobuf_c_message_free_unpacked() on a
 *   half-built message) are where its memory-safety bugs lived: issue 690
 *   / pull request 703, fixed in 1.5.1, is a free of an uninitialised
 *   unknown_fields pointer there. With protoc-c's generated init (which
 *   sets unknown_fields = NULL before parsing, as ours has) 1.4.1 does not
 *   reach it; with scanned input the error path is not taken at all.
 * - A singular field occurs at most once (max_count 1), so protobuf-c's
 *   merge_messages() (two copies of one sub-message field) never runs.
 * - Unknown fields are few (max_unknown), so their table is small. */
#include <errno.h>
#include <string.h>

#include "fedvigil/util.h"
#include "wire/wire-int.h"

/* Embedded messages nest at most CoordState > GlobalModel > Header. */
#define MAX_DEPTH 4

/* Generous bounds for the small embedded messages: their largest valid
 * encoding is well below these (a Header is at most ~170 bytes). */
#define HDR_MAX 512
#define HPARAMS_MAX 128
#define HIST_MAX 4096   /* 240 varints of <= 10 bytes + 5 scalars */
#define CHSTATS_MAX 128 /* 1 varint + 4 doubles: <= 56 bytes */
#define SPEC_MAX 1024   /* 17 + 16 varints of <= 5 bytes, 16 floats, 2 scalars;
			 * conv1d: 1 scalar + 3 x 16 varints of <= 5 bytes */
#define PARAMS_MAX ((size_t)FV_NN_MAX_PARAMS * 4)
#define AGG_NAME_MAX 31 /* aggregation algorithm names ("trimmed_mean") */

#define ONE(f, wt) { .field = (f), .wire_types = (wt), .max_count = 1, .max_bytes = 10 }

static const struct pb_rule header_rule[] = {
	ONE(1, PB_VARINT),
	{ .field = 2, .wire_types = PB_LEN, .flags = PB_F_STRING, .max_count = 1,
	  .max_bytes = FV_NAME_MAX },
	{ .field = 3, .wire_types = PB_LEN, .flags = PB_F_STRING, .max_count = 1,
	  .max_bytes = FV_NAME_MAX },
	ONE(4, PB_VARINT),
	ONE(5, PB_VARINT),
	ONE(6, PB_VARINT),
};
static const struct pb_rules header_rules = { header_rule, FV_ARRAY_SIZE(header_rule), 8 };

static const struct pb_rule hparams_rule[] = {
	ONE(1, PB_VARINT), ONE(2, PB_VARINT), ONE(3, PB_FIXED32),
	ONE(4, PB_VARINT), ONE(5, PB_VARINT),
	ONE(20, PB_VARINT), ONE(21, PB_FIXED32), ONE(22, PB_FIXED32),
	ONE(50, PB_FIXED32),
};
static const struct pb_rules hparams_rules = { hparams_rule, FV_ARRAY_SIZE(hparams_rule), 8 };

static const struct pb_rule hist_rule[] = {
	{ .field = 1, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_HIST_BINS,
	  .max_bytes = FV_HIST_BINS * 10, .err = -EDOM },
	ONE(2, PB_VARINT), ONE(3, PB_VARINT), ONE(4, PB_VARINT),
	ONE(5, PB_FIXED64), ONE(6, PB_FIXED64),
};
static const struct pb_rules hist_rules = { hist_rule, FV_ARRAY_SIZE(hist_rule), 8 };

static const struct pb_rule chstats_rule[] = {
	ONE(1, PB_VARINT), ONE(2, PB_FIXED64), ONE(3, PB_FIXED64),
	ONE(4, PB_FIXED64), ONE(5, PB_FIXED64),
};
static const struct pb_rules chstats_rules = { chstats_rule, FV_ARRAY_SIZE(chstats_rule), 4 };

static const struct pb_rule rule_rule[] = {
	ONE(1, PB_VARINT), ONE(2, PB_FIXED32), ONE(3, PB_VARINT),
	ONE(4, PB_FIXED32), ONE(5, PB_FIXED32), ONE(6, PB_FIXED32),
};
static const struct pb_rules rule_rules = { rule_rule, FV_ARRAY_SIZE(rule_rule), 4 };
#define RULE_MAX 128 /* 2 varints + 4 floats: <= 42 bytes */

static const struct pb_rule spec_rule[] = {
	{ .field = 1, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_NN_MAX_LAYERS + 1,
	  .max_bytes = (FV_NN_MAX_LAYERS + 1) * 5, .err = -EDOM },
	{ .field = 2, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_NN_MAX_LAYERS,
	  .max_bytes = FV_NN_MAX_LAYERS * 5, .err = -EDOM },
	{ .field = 20, .wire_types = PB_LEN | PB_FIXED32, .max_count = FV_NN_MAX_LAYERS,
	  .max_bytes = FV_NN_MAX_LAYERS * 4, .err = -EDOM },
	ONE(21, PB_FIXED32),
	ONE(22, PB_VARINT),
	ONE(30, PB_VARINT),
	{ .field = 31, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_NN_MAX_LAYERS,
	  .max_bytes = FV_NN_MAX_LAYERS * 5, .err = -EDOM },
	{ .field = 32, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_NN_MAX_LAYERS,
	  .max_bytes = FV_NN_MAX_LAYERS * 5, .err = -EDOM },
	{ .field = 33, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_NN_MAX_LAYERS,
	  .max_bytes = FV_NN_MAX_LAYERS * 5, .err = -EDOM },
};
static const struct pb_rules spec_rules = { spec_rule, FV_ARRAY_SIZE(spec_rule), 4 };

static const struct pb_rule comp_rule[] = {
	ONE(1, PB_VARINT), ONE(2, PB_FIXED32), ONE(3, PB_VARINT),
};
static const struct pb_rules comp_rules = { comp_rule, FV_ARRAY_SIZE(comp_rule), 4 };

#define HEADER_RULE { .field = 1, .wire_types = PB_LEN, .max_count = 1, \
		      .max_bytes = HDR_MAX, .sub = &header_rules }
/* Field 15: one Ed25519 signature (sign.c checks it before decoding). */
#define SIGNATURE_RULE { .field = 15, .wire_types = PB_LEN, .max_count = 1, .max_bytes = 64 }

static const struct pb_rule announce_rule[] = {
	HEADER_RULE,
	ONE(2, PB_VARINT),
	{ .field = 3, .wire_types = PB_LEN, .max_count = 1, .max_bytes = HPARAMS_MAX,
	  .sub = &hparams_rules },
	ONE(4, PB_VARINT),
	/* Each name is checked by the decoder; here only their number and
	 * total size (so that an oversized list is a shape error). */
	{ .field = 5, .wire_types = PB_LEN, .flags = PB_F_STRING, .max_count = FV_MAX_SELECTED,
	  .max_bytes = (size_t)FV_MAX_SELECTED * FV_NAME_MAX, .err = -EDOM },
	{ .field = 60, .wire_types = PB_LEN, .max_count = 1, .max_bytes = 64,
	  .sub = &comp_rules },
	ONE(14, PB_FIXED32),
	SIGNATURE_RULE,
	ONE(80, PB_VARINT),
};
const struct pb_rules pb_rules_announce = { announce_rule, FV_ARRAY_SIZE(announce_rule), 16 };

static const struct pb_rule update_rule[] = {
	HEADER_RULE,
	ONE(2, PB_VARINT),
	ONE(3, PB_VARINT),
	ONE(4, PB_FIXED32),
	ONE(5, PB_VARINT),
	{ .field = 6, .wire_types = PB_LEN, .max_count = 1, .max_bytes = PARAMS_MAX,
	  .err = -EDOM },
	{ .field = 7, .wire_types = PB_LEN, .max_count = 1, .max_bytes = HIST_MAX,
	  .err = -EDOM, .sub = &hist_rules },
	{ .field = 8, .wire_types = PB_LEN, .max_count = FV_MAX_CHANNELS,
	  .max_bytes = (size_t)FV_MAX_CHANNELS * CHSTATS_MAX, .err = -EDOM,
	  .sub = &chstats_rules },
	/* Compression side data: at most one index (< 2^22: 4 varint bytes)
	 * per parameter, FV_WIRE_MAX_SEG scales and segment lengths. */
	{ .field = 9, .wire_types = PB_LEN, .max_count = 1, .max_bytes = PARAMS_MAX,
	  .err = -EILSEQ },
	{ .field = 10, .wire_types = PB_LEN | PB_FIXED32, .max_count = FV_WIRE_MAX_SEG,
	  .max_bytes = FV_WIRE_MAX_SEG * 4, .err = -EILSEQ },
	ONE(60, PB_VARINT),
	{ .field = 61, .wire_types = PB_LEN | PB_VARINT, .max_count = FV_WIRE_MAX_SEG,
	  .max_bytes = FV_WIRE_MAX_SEG * 5, .err = -EILSEQ },
	{ .field = 62, .wire_types = PB_LEN, .max_count = 1,
	  .max_bytes = (FV_NN_MAX_PARAMS + 7) / 8, .err = -EILSEQ },
	SIGNATURE_RULE,
	{ .field = 45, .wire_types = PB_LEN | PB_FIXED64, .max_count = FV_MAX_COLUMNS,
	  .max_bytes = (size_t)FV_MAX_COLUMNS * 8, .err = -EDOM },
};
const struct pb_rules pb_rules_update = { update_rule, FV_ARRAY_SIZE(update_rule), 16 };

static const struct pb_rule global_rule[] = {
	HEADER_RULE,
	ONE(2, PB_VARINT),
	{ .field = 3, .wire_types = PB_LEN, .max_count = 1, .max_bytes = SPEC_MAX,
	  .err = -EDOM, .sub = &spec_rules },
	ONE(4, PB_VARINT),
	ONE(5, PB_VARINT),
	ONE(6, PB_VARINT),
	{ .field = 7, .wire_types = PB_LEN | PB_FIXED32, .max_count = FV_MAX_CHANNELS,
	  .max_bytes = FV_MAX_CHANNELS * 4, .err = -EDOM },
	{ .field = 8, .wire_types = PB_LEN | PB_FIXED32, .max_count = FV_MAX_CHANNELS,
	  .max_bytes = FV_MAX_CHANNELS * 4, .err = -EDOM },
	{ .field = 9, .wire_types = PB_LEN, .max_count = 1, .max_bytes = PARAMS_MAX,
	  .err = -EDOM },
	ONE(10, PB_FIXED32),
	ONE(11, PB_FIXED32),
	ONE(12, PB_FIXED32),
	ONE(13, PB_VARINT),
	ONE(16, PB_VARINT),
	ONE(14, PB_FIXED32),
	{ .field = 50, .wire_types = PB_LEN, .flags = PB_F_STRING, .max_count = 1,
	  .max_bytes = AGG_NAME_MAX },
	ONE(51, PB_FIXED64),
	SIGNATURE_RULE,
	ONE(80, PB_VARINT),
	{ .field = 45, .wire_types = PB_LEN, .max_count = 1, .max_bytes = HIST_MAX,
	  .err = -EDOM, .sub = &hist_rules },
	{ .field = 46, .wire_types = PB_LEN | PB_FIXED32, .max_count = FV_MAX_COLUMNS,
	  .max_bytes = (size_t)FV_MAX_COLUMNS * 4, .err = -EDOM },
	{ .field = 47, .wire_types = PB_LEN, .max_count = 1, .max_bytes = RULE_MAX,
	  .sub = &rule_rules },
	ONE(48, PB_VARINT),
};
const struct pb_rules pb_rules_global = { global_rule, FV_ARRAY_SIZE(global_rule), 16 };

static const struct pb_rule agg_rule[] = {
	{ .field = 1, .wire_types = PB_LEN, .flags = PB_F_STRING, .max_count = 1,
	  .max_bytes = AGG_NAME_MAX },
	ONE(2, PB_VARINT),
	{ .field = 3, .wire_types = PB_LEN, .max_count = 1, .max_bytes = PARAMS_MAX,
	  .err = -EDOM },
	{ .field = 4, .wire_types = PB_LEN, .max_count = 1, .max_bytes = PARAMS_MAX,
	  .err = -EDOM },
	{ .field = 5, .wire_types = PB_LEN | PB_FIXED64, .max_count = FV_DP_N_ORDERS,
	  .max_bytes = FV_DP_N_ORDERS * 8, .err = -EDOM },
	{ .field = 6, .wire_types = PB_LEN | PB_FIXED64, .max_count = FV_DP_N_ORDERS,
	  .max_bytes = FV_DP_N_ORDERS * 8, .err = -EDOM },
	ONE(7, PB_VARINT),
};
static const struct pb_rules agg_rules = { agg_rule, FV_ARRAY_SIZE(agg_rule), 8 };

static const struct pb_rule state_rule[] = {
	ONE(1, PB_VARINT),
	ONE(2, PB_VARINT),
	ONE(3, PB_VARINT),
	{ .field = 4, .wire_types = PB_LEN, .max_count = 1, .max_bytes = FV_MAX_MSG_BYTES,
	  .sub = &pb_rules_global },
	{ .field = 50, .wire_types = PB_LEN, .max_count = 1, .max_bytes = 2 * PARAMS_MAX + 4096,
	  .sub = &agg_rules },
	ONE(80, PB_VARINT),
};
const struct pb_rules pb_rules_state = { state_rule, FV_ARRAY_SIZE(state_rule), 16 };

/* Read a varint of at most max bytes at *p (< end); advance *p. 0 or
 * -EBADMSG. */
static int varint_max(const uint8_t **p, const uint8_t *end, unsigned max, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < max; i++) {
		if (*p >= end)
			return -EBADMSG;
		uint8_t b = *(*p)++;

		if (i == 9 && b > 1)
			return -EBADMSG; /* more than 64 bits */
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return -EBADMSG;
}

/* A value varint: up to 10 bytes. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	return varint_max(p, end, 10, ret);
}

/* protobuf-c 1.4.1 reads a field key and a length prefix in at most 5
 * bytes (parse_tag_and_wiretype(), scan_length_prefixed_data()) and fails
 * the message on a longer one, even a padded non-canonical one ending in
 * 0x80 ... 0x00: so do we, or a 6-byte key would pass here and take the
 * unpacker's error path. */
#define KEY_LEN_MAX 5

static const struct pb_rule *find(const struct pb_rules *rules, uint64_t field, size_t *ret_i)
{
	for (size_t i = 0; i < rules->n_rules; i++) {
		if (rules->rule[i].field == field) {
			*ret_i = i;
			return &rules->rule[i];
		}
	}
	return NULL;
}

static int scan(const uint8_t *buf, size_t len, const struct pb_rules *rules, int depth)
{
	const uint8_t *p = buf, *end = buf + len;
	uint32_t count[PB_MAX_RULES] = { 0 };
	size_t bytes[PB_MAX_RULES] = { 0 };
	uint32_t unknown = 0;
	int r;

	if (depth > MAX_DEPTH || rules->n_rules > PB_MAX_RULES)
		return -EBADMSG;
	while (p < end) {
		uint64_t key, v;
		const uint8_t *start;
		size_t n, i = 0;

		r = varint_max(&p, end, KEY_LEN_MAX, &key);
		if (r < 0)
			return r;
		uint64_t field = key >> 3;
		unsigned wt = key & 7;

		if (field == 0 || field > 0x1fffffff)
			return -EBADMSG;
		start = p;
		switch (wt) {
		case 0:
			r = varint(&p, end, &v);
			if (r < 0)
				return r;
			n = (size_t)(p - start);
			break;
		case 1:
			if (end - p < 8)
				return -EBADMSG;
			p += 8;
			n = 8;
			break;
		case 5:
			if (end - p < 4)
				return -EBADMSG;
			p += 4;
			n = 4;
			break;
		case 2:
			r = varint_max(&p, end, KEY_LEN_MAX, &v);
			if (r < 0)
				return r;
			if (v > (uint64_t)(end - p))
				return -EBADMSG;
			start = p;
			n = (size_t)v;
			p += n;
			break;
		default:
			return -EBADMSG; /* groups (3, 4) and undefined types */
		}

		const struct pb_rule *rule = find(rules, field, &i);

		if (!rule) {
			if (++unknown > rules->max_unknown)
				return -EBADMSG;
			continue;
		}
		if (!(rule->wire_types & (1u << wt)))
			return -EBADMSG;
		if (++count[i] > rule->max_count || n > rule->max_bytes - bytes[i])
			return rule->err ? rule->err : -EBADMSG;
		bytes[i] += n;
		if (wt != 2)
			continue;
		/* A packed repeated field (LEN besides its scalar wire type):
		 * whole elements only, as protobuf-c's unpacker requires. */
		if ((rule->wire_types & PB_FIXED32) && n % 4)
			return -EBADMSG;
		if ((rule->wire_types & PB_FIXED64) && n % 8)
			return -EBADMSG;
		if (rule->wire_types & PB_VARINT) {
			const uint8_t *q = start, *qend = start + n;

			while (q < qend)
				if (varint(&q, qend, &v) < 0)
					return -EBADMSG;
		}
		if ((rule->flags & PB_F_STRING) && memchr(start, '\0', n))
			return -EBADMSG;
		if (rule->sub) {
			r = scan(start, n, rule->sub, depth + 1);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int pb_scan(const uint8_t *buf, size_t len, const struct pb_rules *rules)
{
	if (!buf && len)
		return -EBADMSG;
	if (!buf)
		return 0;
	return scan(buf, len, rules, 0);
}
