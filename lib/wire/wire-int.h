/* Private to lib/wire: the pre-unpack scanner and the GlobalModel
 * conversions shared by the message codec and the state file. */
#ifndef FEDVIGIL_WIRE_INT_H
#define FEDVIGIL_WIRE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "fedvigil/wire.h"
#include "fedvigil.pb-c.h"

/* Wire types accepted by a rule (bit 1 << wire type). */
#define PB_VARINT (1u << 0)
#define PB_FIXED64 (1u << 1)
#define PB_LEN (1u << 2)
#define PB_FIXED32 (1u << 5)

/* Rule flags. */
#define PB_F_STRING (1u << 0) /* LEN payload is text: no NUL bytes */

struct pb_rules;

/* Bounds of one field of a message, over all its occurrences. */
struct pb_rule {
	uint32_t field;             /* field number */
	uint8_t wire_types;         /* PB_* mask of accepted wire types */
	uint8_t flags;              /* PB_F_* */
	uint32_t max_count;         /* occurrences (packed chunks or elements) */
	size_t max_bytes;           /* payload bytes summed over occurrences */
	int err;                    /* returned when a bound is exceeded (0: -EBADMSG) */
	const struct pb_rules *sub; /* rules of an embedded message, or NULL */
};

/* Rules of one message type. */
struct pb_rules {
	const struct pb_rule *rule; /* known fields */
	size_t n_rules;             /* entries in rule (at most PB_MAX_RULES) */
	uint32_t max_unknown;       /* unknown fields tolerated at this level */
};
#define PB_MAX_RULES 24

/* Rules of the top-level messages (scan.c). */
extern const struct pb_rules pb_rules_announce;
extern const struct pb_rules pb_rules_update;
extern const struct pb_rules pb_rules_global;
extern const struct pb_rules pb_rules_state;

/* Walk the protobuf encoding in buf without allocating and check it against
 * rules (recursively for embedded messages): well-formed tags, varints and
 * lengths, accepted wire types, no groups, bounded occurrences and bytes per
 * field, bounded unknown fields. Bounds everything protobuf_c's unpacker
 * would allocate before it runs. 0, -EBADMSG, or a rule's err. */
int pb_scan(const uint8_t *buf, size_t len, const struct pb_rules *rules);

/* Memory a packed GlobalModel borrows while it is being serialised. */
struct pb_global {
	Fedvigil__V1__GlobalModel m;                /* the message */
	Fedvigil__V1__Header h;                     /* m.header */
	Fedvigil__V1__ModelSpec spec;               /* m.spec */
	uint32_t sizes[FV_NN_MAX_LAYERS + 1];       /* spec.sizes */
	uint32_t acts[FV_NN_MAX_LAYERS];            /* spec.acts */
	float dropout[FV_NN_MAX_LAYERS];            /* spec.dropout */
	uint32_t conv[FV_NN_MAX_LAYERS];            /* spec.conv (conv1d) */
	uint32_t kernel[FV_NN_MAX_LAYERS];          /* spec.kernel (conv1d) */
	uint32_t stride[FV_NN_MAX_LAYERS];          /* spec.stride (conv1d) */
	uint8_t *le;                                /* big-endian hosts: LE params */
	Fedvigil__V1__Histogram scores;             /* m.scores */
	Fedvigil__V1__ScoreRule rule;               /* m.score_rule */
};

/* Fill pg from g (borrowing g's arrays). 0, -EINVAL or -ENOMEM; release
 * with wire_global_done() after packing. */
int wire_global_fill(struct pb_global *pg, const struct fv_global *g);
void wire_global_done(struct pb_global *pg);
/* Validate an unpacked GlobalModel and copy it into *ret (owned arrays).
 * expect_fleet may be NULL. 0 or a negative errno as fv_global_decode(). */
int wire_global_from_pb(const Fedvigil__V1__GlobalModel *m, const char *expect_fleet,
			struct fv_global *ret);

/* ---- compression (compress.c) ---- */

/* binary16 <-> float: round to nearest even, saturating at +-65504. */
uint16_t wire_f2h(float f);
float wire_h2f(uint16_t h);

/* A delta compressed for the wire; values and indices are owned. */
struct wire_packed {
	enum fv_enc enc;               /* its encoding */
	size_t n;                      /* dense length */
	size_t nnz;                    /* values sent (n for dense encodings) */
	uint8_t *values;               /* nnz values, little-endian */
	size_t values_len;             /* bytes */
	uint8_t *indices;              /* TOPK_*: varint gaps, or NULL */
	size_t indices_len;            /* bytes */
	uint8_t *bitmap;               /* TOPK_*: one bit per parameter instead,
					* when that is smaller; or NULL */
	size_t bitmap_len;             /* bytes: (n + 7) / 8 */
	uint32_t n_seg;                /* INT8: scale segments (>= 1), else 0 */
	uint32_t seg[FV_WIRE_MAX_SEG]; /* their lengths */
	float scales[FV_WIRE_MAX_SEG]; /* their scales */
};

/* Compress x (n) as enc (topk for TOPK_*; segments: INT8 scales, and the
 * units TOPK_* select in; n_seg == 0 is one segment). ret_sent (n, may be NULL) gets the dense reconstruction
 * the decoder will produce. 0, -EINVAL, -ERANGE (x not finite), -ENOMEM. */
int wire_pack_delta(const float *x, size_t n, enum fv_enc enc, float topk, uint32_t n_seg,
		    const uint32_t *seg, float *ret_sent, struct wire_packed *ret);
void wire_packed_free(struct wire_packed *p);

/* What a ModelUpdate carries about its delta, borrowed from the unpacked
 * message. */
struct wire_side {
	enum fv_enc enc;          /* encoding field (may be unknown) */
	const uint8_t *values;    /* delta bytes */
	size_t values_len;
	const uint8_t *indices;   /* indices bytes */
	size_t indices_len;
	const uint8_t *bitmap;    /* index_bitmap bytes */
	size_t bitmap_len;
	const float *scales;      /* scales */
	size_t n_scales;
	const uint32_t *segments; /* segment lengths */
	size_t n_segments;
	uint64_t n_params;        /* n_params field (0 = absent) */
};

/* Validate and rebuild the dense delta: *ret_delta (malloc'd, NULL when
 * empty), its length, the values that were sent, and the segments (into
 * ret_seg, FV_WIRE_MAX_SEG) when INT8 carried any. 0, -EPROTO (unknown
 * encoding), -EDOM (sizes), -EILSEQ (side data), -ERANGE, -ENOMEM. */
int wire_unpack_delta(const struct wire_side *in, float **ret_delta, size_t *ret_n,
		      size_t *ret_nnz, uint32_t *ret_n_seg, uint32_t *ret_seg);

#endif
