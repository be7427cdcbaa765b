/* fedvigil Sparkplug B: the payload (proto/sparkplug_b.proto), its topics,
 * and the mapping of an edge node's metrics onto an agent's channels.
 *
 * An existing Sparkplug edge node feeds an agent with no glue: the agent
 * subscribes to the node's topics, learns the alias of every metric it
 * wants from NBIRTH/DBIRTH, and takes the values of NDATA/DDATA, whether
 * they name their metrics or use the aliases. Decoding is bounded (size,
 * metrics, names) and checked before protobuf-c runs; protobuf-c types
 * never leave lib/wire. */
#ifndef FEDVIGIL_SPARKPLUG_H
#define FEDVIGIL_SPARKPLUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_SPB_NAMESPACE "spBv1.0"
#define FV_SPB_MAX_PAYLOAD (1u << 20)  /* larger payloads are -E2BIG */
#define FV_SPB_MAX_METRICS 4096        /* metrics in one payload */
#define FV_SPB_NAME_MAX 256            /* metric names, incl. NUL */
#define FV_SPB_ID_MAX 64               /* group, node and device ids, incl. NUL */

/* Metric datatypes (Sparkplug 3.0, 6.4.16), the ones we read or write. */
enum fv_spb_datatype {
	FV_SPB_UNKNOWN = 0,
	FV_SPB_INT8 = 1,
	FV_SPB_INT16 = 2,
	FV_SPB_INT32 = 3,
	FV_SPB_INT64 = 4,
	FV_SPB_UINT8 = 5,
	FV_SPB_UINT16 = 6,
	FV_SPB_UINT32 = 7,
	FV_SPB_UINT64 = 8,
	FV_SPB_FLOAT = 9,
	FV_SPB_DOUBLE = 10,
	FV_SPB_BOOLEAN = 11,
	FV_SPB_STRING = 12,
	FV_SPB_DATETIME = 13,
	FV_SPB_TEXT = 14,
};

/* Which value field of a metric was set. */
enum fv_spb_value_kind {
	FV_SPB_V_NONE = 0, /* no value (or is_null) */
	FV_SPB_V_INT,      /* int_value (uint32 on the wire) */
	FV_SPB_V_LONG,     /* long_value (uint64) */
	FV_SPB_V_FLOAT,
	FV_SPB_V_DOUBLE,
	FV_SPB_V_BOOL,
	FV_SPB_V_OTHER,    /* string, bytes, dataset, template, extension */
};

/* One metric, copied out of the message. */
struct fv_spb_metric {
	const char *name;       /* NULL when absent; points into the payload's names */
	bool has_alias;
	uint64_t alias;
	int64_t ts_ms;          /* -1 when absent */
	uint32_t datatype;      /* enum fv_spb_datatype; 0 when absent */
	bool is_null;
	enum fv_spb_value_kind kind;
	uint64_t u;             /* INT, LONG, BOOL: the raw bits */
	double d;               /* FLOAT, DOUBLE */
};

/* A decoded payload; owns its arrays (fv_spb_payload_clear). */
struct fv_spb_payload {
	int64_t ts_ms;                /* -1 when absent */
	bool has_seq;
	uint64_t seq;
	uint32_t n_metrics;
	struct fv_spb_metric *metrics; /* n_metrics, owned */
	char *names;                   /* the metric names, owned */
};

/* Decode a Sparkplug B payload. Errors: -E2BIG (over FV_SPB_MAX_PAYLOAD or
 * FV_SPB_MAX_METRICS), -EBADMSG (not a valid encoding of Payload, a name
 * longer than FV_SPB_NAME_MAX - 1 or with a NUL), -ENOMEM. *ret is
 * untouched on failure. */
int fv_spb_decode(const void *buf, size_t len, struct fv_spb_payload *ret);
void fv_spb_payload_clear(struct fv_spb_payload *p);

/* The number a metric holds, read as datatype (the metric's own when set,
 * else hint, e.g. from the birth; with neither, the value field decides:
 * int_value/long_value as unsigned). Signed types are two's complement of
 * their width. 0 or: -ENODATA (is_null, no value), -EDOM (not a number
 * type: string, bytes, dataset, datetime...), -ERANGE (NaN, Inf, beyond
 * float range). *ret untouched on failure. */
int fv_spb_metric_number(const struct fv_spb_metric *m, uint32_t hint, double *ret);

/* Encode a payload (metrics with a name and/or alias and a numeric or
 * boolean value: kind INT, LONG, FLOAT, DOUBLE or BOOL, or is_null). The
 * buffer is malloc'd and owned by the caller. 0, -EINVAL, -E2BIG, -ENOMEM. */
int fv_spb_encode(const struct fv_spb_payload *p, uint8_t **ret_buf, size_t *ret_len);

/* ---- topics ---- */

enum fv_spb_msg_type {
	FV_SPB_NBIRTH = 0, FV_SPB_NDEATH, FV_SPB_DBIRTH, FV_SPB_DDEATH,
	FV_SPB_NDATA, FV_SPB_DDATA, FV_SPB_NCMD, FV_SPB_DCMD, FV_SPB_STATE,
};

struct fv_spb_topic {
	enum fv_spb_msg_type type;
	char group[FV_SPB_ID_MAX];
	char node[FV_SPB_ID_MAX];
	char device[FV_SPB_ID_MAX]; /* "" for node-level messages */
};

/* Parse spBv1.0/<group>/<type>/<node>[/<device>] (device present exactly
 * for D* types) or spBv1.0/STATE/<host>. 0 or -EINVAL. */
int fv_spb_topic_parse(const char *topic, struct fv_spb_topic *ret);
/* Build a topic; device is ignored for N* types. false when too long or
 * an id is empty or holds '/', '+' or '#'. */
bool fv_spb_topic(char *buf, size_t len, enum fv_spb_msg_type type, const char *group,
		  const char *node, const char *device);
/* A group, node or device id: 1..63 chars, no '/', '+', '#'. */
bool fv_spb_id_valid(const char *s);

/* ---- the metrics of one edge node, mapped to channels ---- */

struct fv_spb_map;

/* Counters of a map. */
struct fv_spb_stats {
	uint64_t messages;        /* messages of our node handled */
	uint64_t births;          /* NBIRTH and DBIRTH */
	uint64_t deaths;          /* NDEATH and DDEATH */
	uint64_t values;          /* values delivered to channels */
	uint64_t decode_errors;   /* payloads that did not decode */
	uint64_t unknown_alias;   /* data metrics with an alias no birth named */
	uint64_t unmapped;        /* metrics of no channel (not an error) */
	uint64_t not_numeric;     /* mapped metrics without a usable number */
	uint64_t seq_gaps;        /* seq not one more than the last (mod 256) */
};

/* A value for channel ch, taken at ts_ms (-1: the message had no time). */
typedef void (*fv_spb_value_fn)(uint32_t ch, double value, int64_t ts_ms, void *userdata);

/* The metrics of edge node <node> of <group> that feed channels 0..C-1.
 * Caller owns the result. NULL on bad ids or -ENOMEM. */
struct fv_spb_map *fv_spb_map_new(const char *group, const char *node, uint32_t C);
void fv_spb_map_free(struct fv_spb_map *m);
/* Channel ch reads metric `metric` of device `device` ("" = the node's own
 * metrics). -EINVAL on a bad index, id or name, -EEXIST when another
 * channel reads the same metric. */
int fv_spb_map_add(struct fv_spb_map *m, uint32_t ch, const char *device, const char *metric);
/* Handle one message. A birth (re)learns the aliases and datatypes of its
 * scope (NBIRTH: the node and all its devices), a death forgets them; data
 * metrics resolve by name or alias and go to fn. Returns the number of
 * values delivered, -ENOENT for a topic of another group/node or type we do
 * not read (NCMD, DCMD, STATE), -EINVAL for a topic outside spBv1.0, or a
 * decode error (counted in decode_errors). */
int fv_spb_map_message(struct fv_spb_map *m, const char *topic, const void *payload, size_t len,
		       fv_spb_value_fn fn, void *userdata);
/* True when data arrived with aliases no birth explained since the last
 * birth of the node: a rebirth request (NCMD "Node Control/Rebirth") would
 * help. */
bool fv_spb_map_wants_rebirth(const struct fv_spb_map *m);
void fv_spb_map_get_stats(const struct fv_spb_map *m, struct fv_spb_stats *ret);
/* Subscription filters for the node: spBv1.0/<group>/+/<node> and
 * spBv1.0/<group>/+/<node>/+ (FV_SPB_TOPIC_MAX bytes each). */
#define FV_SPB_TOPIC_MAX 256
int fv_spb_map_filters(const struct fv_spb_map *m, char *ret_node, char *ret_devices);

/* An NCMD payload asking the node for a rebirth ("Node Control/Rebirth" =
 * true), malloc'd. 0 or -ENOMEM. */
int fv_spb_rebirth_request(int64_t now_ms, uint8_t **ret_buf, size_t *ret_len);

#endif
