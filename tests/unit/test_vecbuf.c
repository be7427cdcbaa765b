/* Unit tests for the agent's vector buffer (lib/detect/vecbuf.c): the ring,
 * bad vectors, and the training windows cut from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fedvigil/vecbuf.h"

#define C 2
#define PERIOD 1000

/* Vector k: (k, -k), tick k * PERIOD unless given. */
static void push(struct fv_vecbuf *b, int k, int64_t ts)
{
	float v[C] = { (float)k, (float)-k };

	fv_vecbuf_push(b, v, ts);
}

static void test_ring(void **state)
{
	struct fv_vecbuf b;

	(void)state;
	assert_int_equal(fv_vecbuf_init(&b, C, 4), 0);
	for (int k = 0; k < 6; k++)
		push(&b, k, (int64_t)k * PERIOD);
	/* Holds 2..5, oldest first. */
	assert_int_equal(b.len, 4);
	for (size_t i = 0; i < 4; i++) {
		size_t s = fv_vecbuf_slot(&b, i);

		assert_true(b.v[s * C] == (float)(2 + i));
		assert_true(b.v[s * C + 1] == -(float)(2 + i));
		assert_int_equal(b.ts[s], (int64_t)(2 + i) * PERIOD);
	}
	fv_vecbuf_mark_recent(&b, 2);
	assert_int_equal(b.bad[fv_vecbuf_slot(&b, 3)], 1);
	assert_int_equal(b.bad[fv_vecbuf_slot(&b, 2)], 1);
	assert_int_equal(b.bad[fv_vecbuf_slot(&b, 1)], 0);
	fv_vecbuf_mark_recent(&b, 100); /* more than stored: all */
	assert_int_equal(b.bad[fv_vecbuf_slot(&b, 0)], 1);
	/* A new vector is good again, in a reused slot. */
	push(&b, 6, 6 * PERIOD);
	assert_int_equal(b.bad[fv_vecbuf_slot(&b, 3)], 0);
	fv_vecbuf_free(&b);
	assert_null(b.v);
}

/* Vectors 0..19; 6 is bad, 12 comes a tick late (a gap before it). Windows
 * of W = 3 at stride S = 2 are cut from each run of good, consecutive
 * vectors, at its 3rd, 5th, ... vector:
 *   run 0..5   -> ends 2, 4
 *   run 7..11  -> ends 9, 11
 *   run 12..19 -> ends 14, 16, 18 */
static void test_windows(void **state)
{
	static const size_t want_end[] = { 2, 4, 9, 11, 14, 16, 18 };
	static const uint8_t want_cont[] = { 0, 1, 0, 1, 0, 1, 1 };
	static const uint8_t want_first[] = { 1, 0, 1, 0, 1, 0, 0 };
	struct fv_vecbuf b;
	size_t *end, n;
	uint8_t *cont, *first;
	float win[4 * C];

	(void)state;
	assert_int_equal(fv_vecbuf_init(&b, C, 32), 0);
	for (int k = 0; k < 20; k++) {
		push(&b, k, (int64_t)k * PERIOD + (k >= 12 ? 1 : 0));
		if (k == 6)
			fv_vecbuf_mark_recent(&b, 1);
	}
	assert_int_equal(fv_vecbuf_windows(&b, 3, 2, PERIOD, &end, &cont, &first, &n), 0);
	assert_int_equal(n, sizeof(want_end) / sizeof(want_end[0]));
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(end[i], want_end[i]);
		assert_int_equal(cont[i], want_cont[i]);
		assert_int_equal(first[i], want_first[i]);
	}
	/* The window ending at 9 is vectors 7, 8, 9 in order. */
	fv_vecbuf_window(&b, end[2], 3, win);
	for (int w = 0; w < 3; w++) {
		assert_true(win[w * C] == (float)(7 + w));
		assert_true(win[w * C + 1] == -(float)(7 + w));
	}
	free(end);
	free(cont);
	free(first);
	/* Without ret_first, and across the ring's wrap: 40 more vectors in a
	 * 32-slot buffer, one run, W = 4, S = 4 -> windows end at 3, 7, ..., 31. */
	for (int k = 20; k < 60; k++)
		push(&b, k, (int64_t)k * PERIOD + 1);
	assert_int_equal(fv_vecbuf_windows(&b, 4, 4, PERIOD, &end, &cont, NULL, &n), 0);
	assert_int_equal(n, 8);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(end[i], 4 * i + 3);
	fv_vecbuf_window(&b, end[7], 4, win);
	assert_true(win[0] == 56.0f && win[3 * C] == 59.0f);
	free(end);
	free(cont);
	fv_vecbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring),
		cmocka_unit_test(test_windows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
