/* Unit tests for lib/ingest: payload parsing, alignment, windows, ring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/ingest.h"
#include "fedvigil/util.h"

/* ---- payloads ---- */

struct pcase {
	const char *payload;
	int want;     /* 0 or -errno */
	double value; /* when want == 0 */
	int64_t ts;   /* when want == 0 */
};

/* Copy the payload into a heap buffer of exactly len bytes, so ASan flags
 * any read past the end (payloads are not NUL-terminated). */
static int parse_exact(const struct fv_payload_spec *spec, const char *s, size_t len,
		       double *v, int64_t *ts)
{
	char *buf = malloc(len ? len : 1);
	int r;

	assert_non_null(buf);
	memcpy(buf, s, len);
	r = fv_payload_parse(spec, buf, len, v, ts);
	free(buf);
	return r;
}

static void run_cases(const struct fv_payload_spec *spec, const struct pcase *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double v = -12345;
		int64_t ts = -12345;
		int r = parse_exact(spec, c[i].payload, strlen(c[i].payload), &v, &ts);

		if (r != c[i].want)
			fail_msg("payload '%s': got %d, want %d", c[i].payload, r, c[i].want);
		if (c[i].want == 0) {
			if (v != c[i].value)
				fail_msg("payload '%s': value %g, want %g", c[i].payload, v,
					 c[i].value);
			if (ts != c[i].ts)
				fail_msg("payload '%s': ts %lld, want %lld", c[i].payload,
					 (long long)ts, (long long)c[i].ts);
		} else {
			/* Out-parameters untouched on failure. */
			assert_true(v == -12345);
			assert_true(ts == -12345);
		}
	}
}

static void test_payload_number(void **state)
{
	struct fv_payload_spec spec = { .format = FV_FMT_NUMBER };
	static const struct pcase cases[] = {
		{ "21.5", 0, 21.5, -1 },
		{ " 3e2\n", 0, 300, -1 },
		{ "\t-0.25 \r\n", 0, -0.25, -1 },
		{ "7", 0, 7, -1 },
		{ "", -EBADMSG, 0, 0 },
		{ "   ", -EBADMSG, 0, 0 },
		{ "abc", -EBADMSG, 0, 0 },
		{ "1.0x", -EBADMSG, 0, 0 },
		{ "1 2", -EBADMSG, 0, 0 },
		{ "0x10", -EBADMSG, 0, 0 },
		{ "nan", -ERANGE, 0, 0 },
		{ "inf", -ERANGE, 0, 0 },
		{ "-Infinity", -ERANGE, 0, 0 },
		{ "1e999", -ERANGE, 0, 0 },
		{ "1e300", -ERANGE, 0, 0 }, /* finite double, Inf as a float */
	};
	double v;
	int64_t ts;
	char *big;

	(void)state;
	run_cases(&spec, cases, FV_ARRAY_SIZE(cases));

	/* Too large: 5000 bytes of digits would parse, but are refused first. */
	big = malloc(5000);
	assert_non_null(big);
	memset(big, '1', 5000);
	assert_int_equal(fv_payload_parse(&spec, big, 5000, &v, &ts), -E2BIG);
	/* Exactly at the cap is fine: 4095 spaces and a digit. */
	memset(big, ' ', FV_MAX_SENSOR_PAYLOAD);
	big[FV_MAX_SENSOR_PAYLOAD - 1] = '8';
	assert_int_equal(fv_payload_parse(&spec, big, FV_MAX_SENSOR_PAYLOAD, &v, &ts), 0);
	assert_true(v == 8);
	free(big);

	/* Not NUL-terminated: garbage right after len must not be read. */
	{
		const char buf[] = { '4', '2', '.', '5', '9', '9', 'x', 'y' };

		assert_int_equal(fv_payload_parse(&spec, buf, 4, &v, &ts), 0);
		assert_true(v == 42.5);
		assert_int_equal(fv_payload_parse(&spec, buf, 7, &v, &ts), -EBADMSG);
	}
	/* An embedded NUL is garbage, not an end. */
	assert_int_equal(fv_payload_parse(&spec, "12\0" "3", 4, &v, &ts), -EBADMSG);
	assert_int_equal(fv_payload_parse(&spec, NULL, 0, &v, &ts), -EBADMSG);
}

static void test_payload_json(void **state)
{
	struct fv_payload_spec spec = { .format = FV_FMT_JSON };
	static const struct pcase cases[] = {
		{ "{\"a\":{\"b\":21.5},\"t\":1767225600123}", 0, 21.5, 1767225600123LL },
		{ " {\"t\":\"2026-01-01T00:00:01.500Z\",\"a\":{\"b\":-3}} \n", 0, -3,
		  1767225601500LL },
		{ "{\"a\":{\"b\":1e2}}", 0, 100, -1 },           /* ts absent */
		{ "{\"a\":{\"b\":1},\"t\":null}", 0, 1, -1 },      /* ts null */
		{ "{\"a\":{\"b\":true},\"t\":5}", 0, 1, 5 },       /* bool = 1 */
		{ "{\"a\":{\"b\":false},\"t\":5.4}", 0, 0, 5 },    /* ms rounded */
		{ "{\"a\":{\"c\":1}}", -EBADMSG, 0, 0 },           /* missing path */
		{ "{\"a\":5}", -EBADMSG, 0, 0 },                   /* not an object */
		{ "{\"a\":{\"b\":\"21.5\"}}", -EBADMSG, 0, 0 },    /* string value */
		{ "{\"a\":{\"b\":null}}", -EBADMSG, 0, 0 },
		{ "{\"a\":{\"b\":[1]}}", -EBADMSG, 0, 0 },
		{ "{\"a\":{\"b\":1e999}}", -ERANGE, 0, 0 },
		{ "{\"a\":{\"b\":1},\"t\":\"yesterday\"}", -EBADMSG, 0, 0 },
		{ "{\"a\":{\"b\":1},\"t\":-5}", -ERANGE, 0, 0 },
		{ "{\"a\":{\"b\":1},\"t\":[1]}", -EBADMSG, 0, 0 },
		{ "{\"a\":{\"b\":1}", -EBADMSG, 0, 0 },            /* invalid JSON */
		{ "{\"a\":{\"b\":1}} junk", -EBADMSG, 0, 0 },      /* trailing bytes */
		{ "", -EBADMSG, 0, 0 },
		{ "21.5", -EBADMSG, 0, 0 },                        /* not an object */
	};
	double v;
	int64_t ts;

	(void)state;
	strcpy(spec.value_path, "$.a.b");
	strcpy(spec.ts_path, "$.t");
	run_cases(&spec, cases, FV_ARRAY_SIZE(cases));

	/* A bare path without "$." and no ts_path. */
	strcpy(spec.value_path, "value");
	spec.ts_path[0] = '\0';
	assert_int_equal(parse_exact(&spec, "{\"value\":2.5,\"ts\":9}", 20, &v, &ts), 0);
	assert_true(v == 2.5);
	assert_true(ts == -1);
	/* "$" is the root: a bare JSON number. */
	strcpy(spec.value_path, "$");
	assert_int_equal(parse_exact(&spec, "17", 2, &v, &ts), 0);
	assert_true(v == 17);
	/* A malformed path is a configuration error, not a bad message. */
	strcpy(spec.value_path, "$.a..b");
	assert_int_equal(parse_exact(&spec, "{}", 2, &v, &ts), -EINVAL);
	strcpy(spec.value_path, "$x");
	assert_int_equal(parse_exact(&spec, "{}", 2, &v, &ts), -EINVAL);

	/* Not NUL-terminated: the object ends at len, garbage follows. */
	strcpy(spec.value_path, "$.value");
	{
		const char buf[] = "{\"value\":3}{\"value\":4}";

		assert_int_equal(fv_payload_parse(&spec, buf, 11, &v, &ts), 0);
		assert_true(v == 3);
		/* Cut inside the number: "{\"value\":" must fail, not read on. */
		assert_int_equal(fv_payload_parse(&spec, buf, 9, &v, &ts), -EBADMSG);
	}
	/* Size cap applies to JSON too. */
	{
		char *big = malloc(5000);

		assert_non_null(big);
		memset(big, ' ', 5000);
		memcpy(big, "{\"value\":1}", 11);
		assert_int_equal(fv_payload_parse(&spec, big, 5000, &v, &ts), -E2BIG);
		free(big);
	}
}

static void test_payload_format_parse(void **state)
{
	enum fv_payload_format f = FV_FMT_JSON;

	(void)state;
	assert_int_equal(fv_payload_format_parse("number", &f), 0);
	assert_int_equal(f, FV_FMT_NUMBER);
	assert_int_equal(fv_payload_format_parse("json", &f), 0);
	assert_int_equal(f, FV_FMT_JSON);
	assert_int_equal(fv_payload_format_parse("csv", &f), -EINVAL);
	assert_int_equal(f, FV_FMT_JSON);
}

/* ---- alignment ---- */

#define MAXV 16

/* What the data-clock caller does: sample every due tick, then observe. */
struct feed {
	int n;               /* samples taken */
	int ok[MAXV];        /* their results */
	int64_t tick[MAXV];  /* their ticks */
	float vec[MAXV][2];  /* their vectors (when ok == 0) */
	uint64_t skipped;    /* total skipped */
};

static void feed(struct fv_align *a, struct feed *f, uint32_t ch, double v, int64_t ts)
{
	uint64_t sk = 0;
	uint32_t due = fv_align_due(a, ts, 1000, &sk);

	f->skipped += sk;
	for (uint32_t i = 0; i < due; i++) {
		assert_true(f->n < MAXV);
		f->ok[f->n] = fv_align_sample(a, f->vec[f->n], &f->tick[f->n]);
		f->n++;
	}
	assert_int_equal(fv_align_observe(a, ch, v, ts), 0);
}

static void test_align_rates(void **state)
{
	struct fv_align *a = fv_align_new(2, 1000, 1500);
	struct feed f = { 0 };
	float vec[2];
	int64_t tick;

	(void)state;
	assert_non_null(a);
	assert_true(fv_align_next_tick(a) == INT64_MIN);
	assert_int_equal(fv_align_sample(a, vec, &tick), -EAGAIN);
	assert_int_equal(fv_align_observe(a, 2, 1.0, 0), -EINVAL);
	assert_int_equal(fv_align_observe(a, 0, NAN, 0), -ERANGE);

	/* A every 500 ms, B every 1000 ms, both off the tick grid. */
	feed(a, &f, 0, 1, 100);
	assert_true(fv_align_next_tick(a) == 1000); /* ceil(100 / 1000) * 1000 */
	feed(a, &f, 1, 10, 300);
	feed(a, &f, 0, 2, 600);
	assert_int_equal(f.n, 0);
	feed(a, &f, 0, 3, 1100); /* tick 1000 is due: A=2 (600), B=10 (300) */
	assert_int_equal(f.n, 1);
	assert_int_equal(f.ok[0], 0);
	assert_true(f.tick[0] == 1000);
	assert_true(f.vec[0][0] == 2.0f && f.vec[0][1] == 10.0f);
	assert_true(fv_align_next_tick(a) == 2000);
	feed(a, &f, 1, 11, 1300);
	feed(a, &f, 0, 4, 1600);
	feed(a, &f, 0, 5, 2100); /* tick 2000: A=4, B=11 */
	assert_int_equal(f.n, 2);
	assert_int_equal(f.ok[1], 0);
	assert_true(f.tick[1] == 2000);
	assert_true(f.vec[1][0] == 4.0f && f.vec[1][1] == 11.0f);
	/* B goes quiet: at tick 3000 its 1300 reading is older than 1500 ms. */
	feed(a, &f, 0, 6, 2600);
	feed(a, &f, 0, 7, 3100);
	assert_int_equal(f.n, 3);
	assert_true(f.tick[2] == 3000);
	assert_int_equal(f.ok[2], -ENODATA);
	/* B is back: tick 4000 complete again. */
	feed(a, &f, 1, 12, 3200);
	feed(a, &f, 0, 8, 4050);
	assert_int_equal(f.n, 4);
	assert_int_equal(f.ok[3], 0);
	assert_true(f.vec[3][0] == 7.0f && f.vec[3][1] == 12.0f);
	assert_true(f.skipped == 0);
	fv_align_free(a);
}

static void test_align_missing_channel(void **state)
{
	struct fv_align *a = fv_align_new(2, 1000, 5000);
	struct feed f = { 0 };

	(void)state;
	/* Channel 1 never reports: every tick is incomplete. */
	feed(a, &f, 0, 1, 0);
	feed(a, &f, 0, 2, 500);
	feed(a, &f, 0, 3, 1500);
	assert_int_equal(f.n, 2);
	assert_int_equal(f.ok[0], -ENODATA);
	assert_int_equal(f.ok[1], -ENODATA);
	assert_true(f.tick[0] == 0 && f.tick[1] == 1000);
	fv_align_free(a);
}

static void test_align_gap(void **state)
{
	struct fv_align *a = fv_align_new(2, 1000, 1500);
	struct feed f = { 0 };

	(void)state;
	feed(a, &f, 0, 1, 0);
	feed(a, &f, 1, 10, 0);
	feed(a, &f, 0, 2, 500); /* tick 0 */
	feed(a, &f, 1, 20, 500);
	assert_int_equal(f.n, 1);
	assert_int_equal(f.ok[0], 0);
	assert_true(f.vec[0][0] == 1.0f && f.vec[0][1] == 10.0f);
	/* Nothing for 9.6 s. Ticks 1000..10000 are due: 1000 and 2000 may
	 * still be complete (readings at 500, max age 1500), 3000 marks the
	 * gap, 4000..10000 (7 ticks) are skipped. */
	feed(a, &f, 0, 3, 10100);
	assert_int_equal(f.n, 4);
	assert_true(f.tick[1] == 1000 && f.tick[2] == 2000 && f.tick[3] == 3000);
	assert_int_equal(f.ok[1], 0);
	assert_int_equal(f.ok[2], 0);
	assert_true(f.vec[2][0] == 2.0f && f.vec[2][1] == 20.0f);
	assert_int_equal(f.ok[3], -ENODATA);
	assert_true(f.skipped == 7);
	assert_true(fv_align_next_tick(a) == 11000);
	/* Data flows again: tick 11000 is complete. */
	feed(a, &f, 1, 30, 10200);
	feed(a, &f, 0, 4, 11200);
	assert_int_equal(f.n, 5);
	assert_true(f.tick[4] == 11000);
	assert_int_equal(f.ok[4], 0);
	assert_true(f.vec[4][0] == 3.0f && f.vec[4][1] == 30.0f);
	fv_align_free(a);
}

static void test_align_cap(void **state)
{
	struct fv_align *a = fv_align_new(1, 10, 1000000);
	uint64_t sk = 0;
	float vec[1];
	int64_t tick;
	uint32_t due;

	(void)state;
	assert_int_equal(fv_align_observe(a, 0, 5, 0), 0);
	/* 100 ticks (0..990) may all be complete, but max is 4: 3 vectors,
	 * a gap marker, 96 skipped. */
	due = fv_align_due(a, 1000, 4, &sk);
	assert_int_equal(due, 4);
	assert_true(sk == 96);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(fv_align_sample(a, vec, &tick), 0);
		assert_true(tick == i * 10);
		assert_true(vec[0] == 5.0f);
	}
	assert_int_equal(fv_align_sample(a, vec, &tick), -ENODATA);
	assert_true(fv_align_next_tick(a) == 1000);
	/* No gap, under the cap: every tick before ts. */
	due = fv_align_due(a, 1025, 100, &sk);
	assert_int_equal(due, 3);
	assert_true(sk == 0);
	fv_align_free(a);

	assert_null(fv_align_new(0, 10, 10));
	assert_null(fv_align_new(1, 0, 10));
	assert_null(fv_align_new(1, 10, 0));
	assert_null(fv_align_new(FV_MAX_CHANNELS + 1, 10, 10));
}

/* ---- windows ---- */

static void test_window(void **state)
{
	struct fv_window *w = fv_window_new(2, 3, 2);
	float win[6];
	int64_t start = -1;
	int emitted[8] = { 0 };

	(void)state;
	assert_non_null(w);
	/* Vector i = (i, 10 i) at time 100 i. Windows close at vectors 3, 5,
	 * 7: (1,2,3), (3,4,5), (5,6,7). */
	for (int i = 1; i <= 7; i++) {
		float v[2] = { (float)i, 10.0f * (float)i };

		emitted[i] = fv_window_push(w, v, 100 * i, win, &start);
		if (emitted[i]) {
			for (int r = 0; r < 3; r++) {
				assert_true(win[2 * r] == (float)(i - 2 + r));
				assert_true(win[2 * r + 1] == 10.0f * (float)(i - 2 + r));
			}
			assert_true(start == 100 * (i - 2));
		}
	}
	int want[8] = { 0, 0, 0, 1, 0, 1, 0, 1 };
	for (int i = 1; i <= 7; i++)
		assert_int_equal(emitted[i], want[i]);

	/* Reset drops the partial state: the next window needs 3 new vectors
	 * and holds none of the old ones. */
	fv_window_reset(w);
	for (int i = 20; i <= 21; i++) {
		float v[2] = { (float)i, 0 };

		assert_int_equal(fv_window_push(w, v, i, win, &start), 0);
	}
	{
		float v[2] = { 22, 0 };

		assert_int_equal(fv_window_push(w, v, 22, win, &start), 1);
		assert_true(win[0] == 20 && win[2] == 21 && win[4] == 22);
		assert_true(start == 20);
	}
	fv_window_free(w);

	/* Stride longer than the window: W=2, S=3 -> windows at 2, 5, 8. */
	w = fv_window_new(1, 2, 3);
	for (int i = 1; i <= 8; i++) {
		float v = (float)i;
		int r = fv_window_push(w, &v, i, win, &start);

		assert_int_equal(r, i == 2 || i == 5 || i == 8);
		if (r) {
			assert_true(win[0] == (float)(i - 1) && win[1] == (float)i);
		}
	}
	fv_window_free(w);
	assert_null(fv_window_new(0, 3, 1));
	assert_null(fv_window_new(1, 0, 1));
	assert_null(fv_window_new(1, 3, 0));
}

static void test_normalize(void **state)
{
	/* W=2 rows of C=3 channels; channel 2 has std 0: only centred. */
	float win[6] = { 1, 10, 5, 3, 30, 7 };
	const float mean[3] = { 2, 20, 6 };
	const float std[3] = { 1, 10, 0 };
	const float want[6] = { -1, -1, -1, 1, 1, 1 };

	(void)state;
	fv_window_normalize(win, 2, 3, mean, std);
	for (int i = 0; i < 6; i++)
		assert_float_equal(win[i], want[i], 1e-6);
}

/* ---- ring ---- */

static void test_ring(void **state)
{
	struct fv_ring *r = fv_ring_new(2, 3);
	float all[6];

	(void)state;
	assert_non_null(r);
	assert_int_equal(fv_ring_dim(r), 2);
	assert_int_equal(fv_ring_len(r), 0);
	assert_null(fv_ring_get(r, 0));
	for (int i = 1; i <= 2; i++) {
		float v[2] = { (float)i, -(float)i };

		fv_ring_push(r, v);
	}
	assert_int_equal(fv_ring_len(r), 2);
	fv_ring_copy(r, all);
	assert_true(all[0] == 1 && all[1] == -1 && all[2] == 2 && all[3] == -2);
	/* Push 3 more: 1 and 2 are overwritten, order is 3, 4, 5. */
	for (int i = 3; i <= 5; i++) {
		float v[2] = { (float)i, -(float)i };

		fv_ring_push(r, v);
	}
	assert_int_equal(fv_ring_len(r), 3);
	for (size_t i = 0; i < 3; i++) {
		const float *it = fv_ring_get(r, i);

		assert_non_null(it);
		assert_true(it[0] == (float)(3 + i) && it[1] == -(float)(3 + i));
	}
	assert_null(fv_ring_get(r, 3));
	fv_ring_copy(r, all);
	for (int i = 0; i < 3; i++)
		assert_true(all[2 * i] == (float)(3 + i) && all[2 * i + 1] == -(float)(3 + i));
	fv_ring_clear(r);
	assert_int_equal(fv_ring_len(r), 0);
	{
		float v[2] = { 9, 9 };

		fv_ring_push(r, v);
		assert_int_equal(fv_ring_len(r), 1);
		assert_true(fv_ring_get(r, 0)[0] == 9);
	}
	fv_ring_free(r);
	fv_ring_free(NULL);
	assert_null(fv_ring_new(0, 3));
	assert_null(fv_ring_new(2, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_number),
		cmocka_unit_test(test_payload_json),
		cmocka_unit_test(test_payload_format_parse),
		cmocka_unit_test(test_align_rates),
		cmocka_unit_test(test_align_missing_channel),
		cmocka_unit_test(test_align_gap),
		cmocka_unit_test(test_align_cap),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_ring),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
