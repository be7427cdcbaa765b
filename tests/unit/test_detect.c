/* Unit tests for lib/detect: debounce, hysteresis, attribution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>

#include "fedvigil/detect.h"

static void test_debounce(void **state)
{
	struct fv_detect_opts o = { .k = 2, .n = 3, .clear_ratio = 0.5f, .clear_n = 2 };
	struct fv_detector d;

	(void)state;
	assert_int_equal(fv_detect_init(&d, &o), 0);
	/* No threshold yet: nothing, whatever the score. */
	assert_int_equal(fv_detect_push(&d, 100.f, 0.f, 0, 10), FV_DETECT_NONE);
	/* One spike alone does not raise (k = 2 of n = 3). */
	assert_int_equal(fv_detect_push(&d, 2.f, 1.f, 10, 20), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.1f, 1.f, 20, 30), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.1f, 1.f, 30, 40), FV_DETECT_NONE);
	/* Two of the last three above: raised, starting at the first of them. */
	assert_int_equal(fv_detect_push(&d, 3.f, 1.f, 40, 50), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.2f, 1.f, 50, 60), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 5.f, 1.f, 60, 70), FV_DETECT_RAISED);
	assert_true(d.raised);
	assert_int_equal(d.alert_start_ms, 40);
	/* Hysteresis: 0.8 is below the threshold but not calm (< 0.5). */
	assert_int_equal(fv_detect_push(&d, 0.8f, 1.f, 70, 80), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.8f, 1.f, 80, 90), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.4f, 1.f, 90, 100), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 9.f, 1.f, 100, 110), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.4f, 1.f, 110, 120), FV_DETECT_NONE);
	assert_int_equal(fv_detect_push(&d, 0.3f, 1.f, 120, 130), FV_DETECT_CLEARED);
	assert_false(d.raised);
	assert_int_equal(d.alert_end_ms, 110);
	assert_true(fabsf(d.max_score - 9.f) < 1e-6f);
	/* History was cleared: a single spike does not re-raise. */
	assert_int_equal(fv_detect_push(&d, 5.f, 1.f, 130, 140), FV_DETECT_NONE);
}

static void test_bad_opts(void **state)
{
	struct fv_detector d;
	struct fv_detect_opts o = { .k = 4, .n = 3, .clear_ratio = 0.5f, .clear_n = 1 };

	(void)state;
	assert_int_equal(fv_detect_init(&d, &o), -EINVAL);
	o.k = 1;
	o.n = FV_DETECT_MAX_N + 1;
	assert_int_equal(fv_detect_init(&d, &o), -EINVAL);
	o.n = 3;
	o.clear_ratio = 0;
	assert_int_equal(fv_detect_init(&d, &o), -EINVAL);
}

static void test_attribution(void **state)
{
	/* W = 2 rows, C = 3 channels: column sums 1, 6, 3 of total 10. */
	const float sq[6] = { 0.5f, 2.f, 1.f, 0.5f, 4.f, 2.f };
	float share[3];
	uint32_t idx[3];

	(void)state;
	fv_detect_channel_share(share, sq, 2, 3);
	assert_true(fabsf(share[0] - 0.1f) < 1e-6f);
	assert_true(fabsf(share[1] - 0.6f) < 1e-6f);
	assert_true(fabsf(share[2] - 0.3f) < 1e-6f);
	assert_int_equal(fv_detect_top(idx, share, 3, 2), 2);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 2);
	assert_int_equal(fv_detect_top(idx, share, 3, 5), 3);
	assert_int_equal(idx[2], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_debounce),
		cmocka_unit_test(test_bad_opts),
		cmocka_unit_test(test_attribution),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
