/* Unit tests for lib/wire/sparkplug.c: Sparkplug B payloads (round trips,
 * datatypes, bounds, malformed bytes), topics, and the map of an edge
 * node's births and data onto channels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/sparkplug.h"
#include "fedvigil/util.h"

#define D(name_, alias_, v) \
	{ .name = (name_), .has_alias = (alias_) != 0, .alias = (alias_), .ts_ms = -1, \
	  .datatype = FV_SPB_DOUBLE, .kind = FV_SPB_V_DOUBLE, .d = (v) }

static uint8_t *enc(struct fv_spb_metric *m, uint32_t n, int64_t ts, int64_t seq, size_t *ret_len)
{
	struct fv_spb_payload p = { .ts_ms = ts, .has_seq = seq >= 0, .seq = (uint64_t)(seq >= 0 ? seq : 0),
				    .n_metrics = n, .metrics = m };
	uint8_t *buf = NULL;

	assert_int_equal(fv_spb_encode(&p, &buf, ret_len), 0);
	return buf;
}

static void test_round_trip(void **state)
{
	struct fv_spb_metric m[] = {
		D("Pump/Temperature", 7, 21.5),
		{ .name = "Count", .ts_ms = 1767225600123, .datatype = FV_SPB_INT32, .kind = FV_SPB_V_INT,
		  .u = (uint32_t)-5 },
		{ .alias = 9, .has_alias = true, .ts_ms = -1, .kind = FV_SPB_V_BOOL, .u = 1 },
		{ .name = "Gone", .ts_ms = -1, .datatype = FV_SPB_FLOAT, .is_null = true },
		{ .name = "Big", .ts_ms = -1, .datatype = FV_SPB_INT64, .kind = FV_SPB_V_LONG,
		  .u = (uint64_t)-1234567890123LL },
	};
	struct fv_spb_payload p;
	size_t len;
	uint8_t *buf = enc(m, 5, 1767225600000, 17, &len);
	double v;

	(void)state;
	assert_int_equal(fv_spb_decode(buf, len, &p), 0);
	assert_int_equal(p.n_metrics, 5);
	assert_int_equal(p.ts_ms, 1767225600000);
	assert_true(p.has_seq);
	assert_int_equal(p.seq, 17);
	assert_string_equal(p.metrics[0].name, "Pump/Temperature");
	assert_true(p.metrics[0].has_alias);
	assert_int_equal(p.metrics[0].alias, 7);
	assert_int_equal(p.metrics[0].ts_ms, -1);
	assert_int_equal(fv_spb_metric_number(&p.metrics[0], 0, &v), 0);
	assert_true(v == 21.5);
	assert_int_equal(p.metrics[1].ts_ms, 1767225600123);
	assert_int_equal(fv_spb_metric_number(&p.metrics[1], 0, &v), 0);
	assert_true(v == -5); /* Int32 in int_value: two's complement */
	assert_null(p.metrics[2].name);
	assert_int_equal(fv_spb_metric_number(&p.metrics[2], 0, &v), 0);
	assert_true(v == 1);
	assert_true(p.metrics[3].is_null);
	assert_int_equal(fv_spb_metric_number(&p.metrics[3], 0, &v), -ENODATA);
	assert_int_equal(fv_spb_metric_number(&p.metrics[4], 0, &v), 0);
	assert_true(v == -1234567890123.0);
	fv_spb_payload_clear(&p);
	free(buf);
}

static void test_numbers(void **state)
{
	struct fv_spb_metric m = { .kind = FV_SPB_V_INT, .u = 0xFFu };
	double v = 42;

	(void)state;
	/* The datatype decides what the bits mean; the birth's is the hint. */
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_INT8, &v), 0);
	assert_true(v == -1);
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_UINT8, &v), 0);
	assert_true(v == 255);
	m.u = 0xFFFFFFFFu; /* an Int8 -1 sign-extended, as some nodes send it */
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_INT8, &v), 0);
	assert_true(v == -1);
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_INT16, &v), 0);
	assert_true(v == -1);
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_UINT32, &v), 0);
	assert_true(v == 4294967295.0);
	assert_int_equal(fv_spb_metric_number(&m, 0, &v), 0); /* no datatype: unsigned */
	assert_true(v == 4294967295.0);
	m.datatype = FV_SPB_INT16; /* the metric's own datatype wins over the hint */
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_UINT32, &v), 0);
	assert_true(v == -1);
	m.datatype = FV_SPB_DATETIME;
	v = 42;
	assert_int_equal(fv_spb_metric_number(&m, 0, &v), -EDOM);
	assert_true(v == 42); /* untouched on failure */
	m = (struct fv_spb_metric){ .kind = FV_SPB_V_DOUBLE, .d = NAN };
	assert_int_equal(fv_spb_metric_number(&m, 0, &v), -ERANGE);
	m.d = INFINITY;
	assert_int_equal(fv_spb_metric_number(&m, 0, &v), -ERANGE);
	m.d = 1e300; /* finite, but not as the float the vector holds */
	assert_int_equal(fv_spb_metric_number(&m, 0, &v), -ERANGE);
	m = (struct fv_spb_metric){ .kind = FV_SPB_V_OTHER, .datatype = FV_SPB_STRING };
	assert_int_equal(fv_spb_metric_number(&m, 0, &v), -EDOM);
	m = (struct fv_spb_metric){ .kind = FV_SPB_V_NONE };
	assert_int_equal(fv_spb_metric_number(&m, FV_SPB_DOUBLE, &v), -ENODATA);
	assert_true(v == 42);
}

/* Hand-made encodings: other fields of the specification, string values,
 * nested messages we skip, and malformed bytes. */
static void test_wire(void **state)
{
	/* Metric { name "s", datatype 12, string_value "hi", properties {..} } */
	static const uint8_t str_metric[] = { 0x12, 0x0d, 0x0a, 0x01, 's', 0x20, 0x0c, 0x7a, 0x02,
					      'h', 'i', 0x4a, 0x02, 0x08, 0x01 };
	static const uint8_t truncated[] = { 0x12, 0x09, 0x0a, 0x01, 's' };
	static const uint8_t bad_wiretype[] = { 0x15, 0x00, 0x00, 0x00, 0x00 }; /* metrics as fixed32 */
	static const uint8_t name_nul[] = { 0x12, 0x04, 0x0a, 0x02, 'a', 0x00 };
	static const uint8_t group[] = { 0x13, 0x14 }; /* start/end group */
	/* Payload extension fields (6 and up) are skipped. */
	static const uint8_t ext[] = { 0x08, 0x05, 0x30, 0x01, 0x3a, 0x01, 'x' };
	struct fv_spb_payload p = { .n_metrics = 99 };
	double v;

	(void)state;
	assert_int_equal(fv_spb_decode(str_metric, sizeof(str_metric), &p), 0);
	assert_int_equal(p.n_metrics, 1);
	assert_int_equal(p.metrics[0].kind, FV_SPB_V_OTHER);
	assert_int_equal(fv_spb_metric_number(&p.metrics[0], 0, &v), -EDOM);
	fv_spb_payload_clear(&p);
	p.n_metrics = 99;
	assert_int_equal(fv_spb_decode(truncated, sizeof(truncated), &p), -EBADMSG);
	assert_int_equal(fv_spb_decode(bad_wiretype, sizeof(bad_wiretype), &p), -EBADMSG);
	assert_int_equal(fv_spb_decode(name_nul, sizeof(name_nul), &p), -EBADMSG);
	assert_int_equal(fv_spb_decode(group, sizeof(group), &p), -EBADMSG);
	assert_int_equal(p.n_metrics, 99); /* untouched on failure */
	assert_int_equal(fv_spb_decode(ext, sizeof(ext), &p), 0);
	assert_int_equal(p.ts_ms, 5);
	assert_int_equal(p.n_metrics, 0);
	fv_spb_payload_clear(&p);
	/* The empty payload is valid (no metrics). */
	assert_int_equal(fv_spb_decode("", 0, &p), 0);
	assert_int_equal(p.ts_ms, -1);
	fv_spb_payload_clear(&p);
}

static void test_bounds(void **state)
{
	uint32_t n = FV_SPB_MAX_METRICS + 1;
	struct fv_spb_metric *m = calloc(n, sizeof(*m));
	struct fv_spb_payload p = { .ts_ms = -1, .n_metrics = n, .metrics = m }, q;
	uint8_t *buf, *big;
	size_t len;
	char name[FV_SPB_NAME_MAX + 1];

	(void)state;
	for (uint32_t i = 0; i < n; i++)
		m[i] = (struct fv_spb_metric){ .has_alias = true, .alias = i, .ts_ms = -1,
					       .kind = FV_SPB_V_DOUBLE, .d = i };
	assert_int_equal(fv_spb_encode(&p, &buf, &len), -E2BIG);
	/* Encoded by hand past the limit: the decoder refuses it too. */
	p.n_metrics = FV_SPB_MAX_METRICS;
	assert_int_equal(fv_spb_encode(&p, &buf, &len), 0);
	big = malloc(len + 16);
	memcpy(big, buf, len);
	memcpy(big + len, "\x12\x02\x10\x01", 4); /* one more metric */
	assert_int_equal(fv_spb_decode(buf, len, &q), 0);
	assert_int_equal(q.n_metrics, FV_SPB_MAX_METRICS);
	fv_spb_payload_clear(&q);
	assert_int_equal(fv_spb_decode(big, len + 4, &q), -E2BIG);
	assert_int_equal(fv_spb_decode(big, FV_SPB_MAX_PAYLOAD + 1, &q), -E2BIG);
	free(buf);
	free(big);
	/* Names are bounded. */
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	m[0] = (struct fv_spb_metric){ .name = name, .ts_ms = -1, .kind = FV_SPB_V_DOUBLE };
	p.n_metrics = 1;
	assert_int_equal(fv_spb_encode(&p, &buf, &len), -EINVAL);
	free(m);
}

static void test_topics(void **state)
{
	struct fv_spb_topic t;
	char buf[FV_SPB_TOPIC_MAX];

	(void)state;
	assert_int_equal(fv_spb_topic_parse("spBv1.0/Plant1/DDATA/Edge7/Pump1", &t), 0);
	assert_int_equal(t.type, FV_SPB_DDATA);
	assert_string_equal(t.group, "Plant1");
	assert_string_equal(t.node, "Edge7");
	assert_string_equal(t.device, "Pump1");
	assert_int_equal(fv_spb_topic_parse("spBv1.0/Plant1/NBIRTH/Edge7", &t), 0);
	assert_int_equal(t.type, FV_SPB_NBIRTH);
	assert_string_equal(t.device, "");
	assert_int_equal(fv_spb_topic_parse("spBv1.0/STATE/scada-1", &t), 0);
	assert_int_equal(t.type, FV_SPB_STATE);
	static const char *const bad[] = {
		"spBv1.0/Plant1/NDATA/Edge7/Pump1", /* device on a node message */
		"spBv1.0/Plant1/DDATA/Edge7",       /* no device on a device message */
		"spBv1.0/Plant1/XDATA/Edge7",       "spBv1.0/Plant1/NDATA",
		"spBv1.0//NDATA/Edge7",             "spBv1.0/Plant1/NDATA/Edge7/",
		"spAv1.0/Plant1/NDATA/Edge7",       "spBv1.0/Plant1/DDATA/Edge7/a/b",
		"spBv1.0/Plant1/NDATA/+",           "plant/pump-1/temperature",
	};
	for (size_t i = 0; i < FV_ARRAY_SIZE(bad); i++)
		if (fv_spb_topic_parse(bad[i], &t) != -EINVAL)
			fail_msg("'%s' parsed", bad[i]);
	assert_true(fv_spb_topic(buf, sizeof(buf), FV_SPB_NCMD, "G", "N", "ignored"));
	assert_string_equal(buf, "spBv1.0/G/NCMD/N");
	assert_true(fv_spb_topic(buf, sizeof(buf), FV_SPB_DBIRTH, "G", "N", "D"));
	assert_string_equal(buf, "spBv1.0/G/DBIRTH/N/D");
	assert_false(fv_spb_topic(buf, sizeof(buf), FV_SPB_DDATA, "G", "N", ""));
	assert_false(fv_spb_topic(buf, sizeof(buf), FV_SPB_NDATA, "G/x", "N", ""));
	assert_false(fv_spb_topic(buf, 10, FV_SPB_NDATA, "G", "N", ""));
}

/* ---- the map ---- */

struct got {
	int n;
	uint32_t ch[16];
	double v[16];
	int64_t ts[16];
};

static void collect(uint32_t ch, double v, int64_t ts, void *userdata)
{
	struct got *g = userdata;

	assert_true(g->n < 16);
	g->ch[g->n] = ch;
	g->v[g->n] = v;
	g->ts[g->n] = ts;
	g->n++;
}

static int feed(struct fv_spb_map *m, const char *topic, struct fv_spb_metric *x, uint32_t n,
		int64_t seq, struct got *g)
{
	size_t len;
	uint8_t *buf = enc(x, n, 1000, seq, &len);
	int r;

	memset(g, 0, sizeof(*g));
	r = fv_spb_map_message(m, topic, buf, len, collect, g);
	free(buf);
	return r;
}

static void test_map(void **state)
{
	struct fv_spb_map *m = fv_spb_map_new("Plant1", "Edge7", 3);
	struct fv_spb_stats st;
	struct got g;

	(void)state;
	assert_non_null(m);
	assert_int_equal(fv_spb_map_add(m, 0, "Pump1", "Temperature"), 0);
	assert_int_equal(fv_spb_map_add(m, 1, "Pump1", "Flow"), 0);
	assert_int_equal(fv_spb_map_add(m, 2, "", "Supply/Voltage"), 0);
	assert_int_equal(fv_spb_map_add(m, 2, "Pump1", "Flow"), -EEXIST);
	assert_int_equal(fv_spb_map_add(m, 3, "", "x"), -EINVAL);
	assert_int_equal(fv_spb_map_add(m, 0, "a/b", "x"), -EINVAL);

	/* Data by alias before any birth: nothing can be mapped; a rebirth
	 * would help. */
	struct fv_spb_metric d1[] = { D(NULL, 11, 20.0), D(NULL, 12, 3.5) };

	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d1, 2, 5, &g), 0);
	assert_true(fv_spb_map_wants_rebirth(m));
	fv_spb_map_get_stats(m, &st);
	assert_int_equal(st.unknown_alias, 2);
	/* Aliases of a device no channel reads are not ours, not unknown. */
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump9", d1, 2, 6, &g), 0);
	fv_spb_map_get_stats(m, &st);
	assert_int_equal(st.unknown_alias, 2);
	assert_int_equal(st.unmapped, 2);

	/* NBIRTH (node metric with alias 1), then DBIRTH of Pump1. */
	struct fv_spb_metric nb[] = { D("bdSeq", 0, 0), D("Supply/Voltage", 1, 230.0) };
	struct fv_spb_metric db[] = { D("Temperature", 11, 19.0), D("Flow", 12, 3.0),
				      D("Speed", 13, 1500) };

	assert_int_equal(feed(m, "spBv1.0/Plant1/NBIRTH/Edge7", nb, 2, 0, &g), 1);
	assert_false(fv_spb_map_wants_rebirth(m));
	assert_int_equal(g.ch[0], 2);
	assert_true(g.v[0] == 230.0);
	assert_int_equal(g.ts[0], 1000); /* the payload's timestamp */
	assert_int_equal(feed(m, "spBv1.0/Plant1/DBIRTH/Edge7/Pump1", db, 3, 1, &g), 2);
	/* Data by alias now resolves; a metric's own timestamp wins. */
	d1[0].ts_ms = 1500;
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d1, 2, 2, &g), 2);
	assert_int_equal(g.ch[0], 0);
	assert_true(g.v[0] == 20.0);
	assert_int_equal(g.ts[0], 1500);
	assert_int_equal(g.ch[1], 1);
	assert_int_equal(g.ts[1], 1000);
	/* By name too; an unmapped metric (Speed) is skipped, not an error. */
	struct fv_spb_metric d2[] = { D("Flow", 0, 4.0), D(NULL, 13, 1600), D("Other", 0, 1) };

	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d2, 3, 3, &g), 1);
	assert_int_equal(g.ch[0], 1);
	assert_true(g.v[0] == 4.0);
	/* The node's own metric by alias on NDATA; device aliases do not
	 * leak into the node's scope. */
	struct fv_spb_metric n1[] = { D(NULL, 1, 231.0), D(NULL, 11, 5) };

	assert_int_equal(feed(m, "spBv1.0/Plant1/NDATA/Edge7", n1, 2, 4, &g), 1);
	assert_int_equal(g.ch[0], 2);
	/* A null, a string and a NaN are counted, not delivered. */
	struct fv_spb_metric d3[] = { { .name = "Flow", .ts_ms = -1, .is_null = true },
				      { .name = "Temperature", .ts_ms = -1, .kind = FV_SPB_V_DOUBLE,
					.d = NAN } };

	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d3, 2, 5, &g), 0);
	fv_spb_map_get_stats(m, &st);
	assert_int_equal(st.not_numeric, 2);
	/* Sequence numbers: 6 is skipped. */
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d1, 2, 7, &g), 2);
	fv_spb_map_get_stats(m, &st);
	assert_int_equal(st.seq_gaps, 1);
	/* Other nodes, other groups, commands: not ours. */
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge8/Pump1", d1, 2, 8, &g), -ENOENT);
	assert_int_equal(feed(m, "spBv1.0/Plant2/DDATA/Edge7/Pump1", d1, 2, 8, &g), -ENOENT);
	assert_int_equal(feed(m, "spBv1.0/Plant1/NCMD/Edge7", d1, 2, 8, &g), -ENOENT);
	assert_int_equal(feed(m, "plant/x", d1, 2, 8, &g), -EINVAL);
	assert_int_equal(fv_spb_map_message(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", "\x12\x09", 2,
					    collect, &g),
			 -EBADMSG);
	fv_spb_map_get_stats(m, &st);
	assert_int_equal(st.decode_errors, 1);
	/* DDEATH forgets the device's aliases (names still work). */
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDEATH/Edge7/Pump1", NULL, 0, 8, &g), 0);
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d1, 2, 9, &g), 0);
	assert_true(fv_spb_map_wants_rebirth(m));
	assert_int_equal(feed(m, "spBv1.0/Plant1/DDATA/Edge7/Pump1", d2, 1, 10, &g), 1);
	fv_spb_map_get_stats(m, &st);
	assert_int_equal(st.births, 2);
	assert_int_equal(st.deaths, 1);
	char a[FV_SPB_TOPIC_MAX], b[FV_SPB_TOPIC_MAX];

	assert_int_equal(fv_spb_map_filters(m, a, b), 0);
	assert_string_equal(a, "spBv1.0/Plant1/+/Edge7");
	assert_string_equal(b, "spBv1.0/Plant1/+/Edge7/+");
	fv_spb_map_free(m);
	assert_null(fv_spb_map_new("a/b", "n", 1));
}

static void test_rebirth_request(void **state)
{
	struct fv_spb_payload p;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(fv_spb_rebirth_request(1767225600000, &buf, &len), 0);
	assert_int_equal(fv_spb_decode(buf, len, &p), 0);
	assert_int_equal(p.n_metrics, 1);
	assert_string_equal(p.metrics[0].name, "Node Control/Rebirth");
	assert_int_equal(p.metrics[0].datatype, FV_SPB_BOOLEAN);
	assert_int_equal(p.metrics[0].kind, FV_SPB_V_BOOL);
	assert_int_equal(p.metrics[0].u, 1);
	fv_spb_payload_clear(&p);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_wire),         cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_topics),       cmocka_unit_test(test_map),
		cmocka_unit_test(test_rebirth_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
