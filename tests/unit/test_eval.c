/* Unit tests for lib/eval: confusion counts and rates, ROC-AUC and average
 * precision against hand-computed values (with ties and missing scores),
 * the ROC curve, point adjustment, and the IID and Dirichlet partitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/eval.h"
#include "fedvigil/util.h"

#define assert_near(a, b, tol) near_impl((a), (b), (tol), __FILE__, __LINE__)

static void near_impl(double a, double b, double tol, const char *file, int line)
{
	if (!(fabs(a - b) <= tol))
		fail_msg("%s:%d: %.17g != %.17g (tolerance %.3g)", file, line, a, b, tol);
}

/* pred 1 1 0 0 1 1 / label 1 0 1 0 -1 1: tp 2, fp 1, fn 1, tn 1 (the
 * unknown label is skipped). precision 2/3, recall 2/3, F1 2/3, FPR 1/2. */
static void test_confusion(void **state)
{
	const uint8_t pred[] = { 1, 1, 0, 0, 1, 1 };
	const int8_t label[] = { 1, 0, 1, 0, -1, 1 };
	struct fv_confusion c, sum = { 0 };
	struct fv_rates r;

	(void)state;
	fv_confusion_count(&c, pred, label, 6);
	assert_int_equal(c.tp, 2);
	assert_int_equal(c.fp, 1);
	assert_int_equal(c.fn, 1);
	assert_int_equal(c.tn, 1);
	fv_rates_from(&c, &r);
	assert_near(r.precision, 2.0 / 3, 1e-12);
	assert_near(r.recall, 2.0 / 3, 1e-12);
	assert_near(r.f1, 2.0 / 3, 1e-12);
	assert_near(r.fpr, 0.5, 1e-12);
	fv_confusion_add(&sum, &c);
	fv_confusion_add(&sum, &c);
	assert_int_equal(sum.tp, 4);
	assert_int_equal(sum.tn, 2);

	/* precision 1, recall 1/4: F1 = 2 * 0.25 / 1.25 = 0.4 */
	c = (struct fv_confusion){ .tp = 1, .fp = 0, .fn = 3, .tn = 10 };
	fv_rates_from(&c, &r);
	assert_near(r.f1, 0.4, 1e-12);
	assert_near(r.fpr, 0.0, 0);

	/* Zero denominators read as 0, never NaN. */
	c = (struct fv_confusion){ 0 };
	fv_rates_from(&c, &r);
	assert_near(r.precision, 0, 0);
	assert_near(r.recall, 0, 0);
	assert_near(r.f1, 0, 0);
	assert_near(r.fpr, 0, 0);
}

/* scores 0.1 0.4 0.35 0.8, labels 0 0 1 1: of the 4 (pos, neg) pairs,
 * 0.35 beats 0.1 only and 0.8 beats both: AUC = 3/4. Average precision:
 * thresholds 0.8 (tp 1, fp 0: recall .5, precision 1), 0.4 (recall .5),
 * 0.35 (tp 2 fp 1: recall 1, precision 2/3) -> .5 * 1 + .5 * 2/3 = 5/6. */
static void test_auc_hand(void **state)
{
	const double s[] = { 0.1, 0.4, 0.35, 0.8 };
	const int8_t y[] = { 0, 0, 1, 1 };
	double auc, ap;

	(void)state;
	assert_int_equal(fv_roc_auc(s, y, 4, &auc), 0);
	assert_near(auc, 0.75, 1e-12);
	assert_int_equal(fv_pr_auc(s, y, 4, &ap), 0);
	assert_near(ap, 5.0 / 6, 1e-12);
}

/* Ties: scores 1 1 0 0, labels 1 0 1 0. Pairs: (p@1, n@1) tie = 1/2,
 * (p@1, n@0) = 1, (p@0, n@1) = 0, (p@0, n@0) tie = 1/2 -> 2/4 = 0.5.
 * AP: threshold 1 -> recall .5 precision .5; threshold 0 -> recall 1
 * precision .5: 0.25 + 0.25 = 0.5 (a tie group is one step). */
static void test_auc_ties(void **state)
{
	const double s[] = { 1, 1, 0, 0 };
	const int8_t y[] = { 1, 0, 1, 0 };
	const double s2[] = { 3, 2, 2, 2, 1 };
	const int8_t y2[] = { 1, 1, 0, 0, 0 };
	double auc, ap;

	(void)state;
	assert_int_equal(fv_roc_auc(s, y, 4, &auc), 0);
	assert_near(auc, 0.5, 1e-12);
	assert_int_equal(fv_pr_auc(s, y, 4, &ap), 0);
	assert_near(ap, 0.5, 1e-12);
	/* 3 beats all 3 negatives (3); 2 ties two negatives at 2 (1) and
	 * beats the one at 1 (1): 5 / 6. AP: recall .5 at precision 1, then
	 * the tie group 2: tp 2 fp 2 -> recall 1, precision .5: .5 + .25. */
	assert_int_equal(fv_roc_auc(s2, y2, 5, &auc), 0);
	assert_near(auc, 5.0 / 6, 1e-12);
	assert_int_equal(fv_pr_auc(s2, y2, 5, &ap), 0);
	assert_near(ap, 0.75, 1e-12);
}

/* NAN (no verdict) ranks below every score; unknown labels are skipped;
 * one class only is -ENODATA. */
static void test_auc_edges(void **state)
{
	const double s[] = { NAN, 0.5, 0.2, NAN, 9.0 };
	const int8_t y[] = { 1, 0, 1, 0, -1 };
	const int8_t only0[] = { 0, 0, 0, 0, 0 };
	double auc, ap;

	(void)state;
	/* positives: NAN (ties the NAN negative: 1/2), 0.2 (beats the NAN
	 * negative: 1) -> 1.5 / 4 */
	assert_int_equal(fv_roc_auc(s, y, 5, &auc), 0);
	assert_near(auc, 0.375, 1e-12);
	/* order 0.5(n) 0.2(p) NAN(p, n): recall .5 at 1/2, then 1 at 2/4 */
	assert_int_equal(fv_pr_auc(s, y, 5, &ap), 0);
	assert_near(ap, 0.5, 1e-12);
	assert_int_equal(fv_roc_auc(s, only0, 5, &auc), -ENODATA);
	assert_int_equal(fv_pr_auc(s, only0, 5, &ap), -ENODATA);
	assert_int_equal(fv_roc_auc(s, y, 0, &auc), -ENODATA);
}

/* The AUC agrees with the trapezoid area under fv_roc_curve on random
 * data with many ties. */
static void test_roc_curve(void **state)
{
	const double s[] = { 0.1, 0.4, 0.35, 0.8 };
	const int8_t y[] = { 0, 0, 1, 1 };
	const double ef[] = { 0, 0, 0.5, 0.5, 1 }, et[] = { 0, 0.5, 0.5, 1, 1 };
	double f[1000], t[1000], auc, area = 0;
	double *rs = malloc(5000 * sizeof(double));
	int8_t *ry = malloc(5000);
	struct fv_rng rng;
	size_t m;

	(void)state;
	assert_int_equal(fv_roc_curve(s, y, 4, 10, f, t, &m), 0);
	assert_int_equal(m, 5);
	for (size_t i = 0; i < m; i++) {
		assert_near(f[i], ef[i], 1e-12);
		assert_near(t[i], et[i], 1e-12);
	}
	fv_rng_seed(&rng, 3);
	for (int i = 0; i < 5000; i++) {
		ry[i] = fv_rng_uniform(&rng) < 0.2;
		rs[i] = (double)fv_rng_below(&rng, 50) + (ry[i] ? 10.0 : 0.0);
	}
	assert_int_equal(fv_roc_auc(rs, ry, 5000, &auc), 0);
	assert_int_equal(fv_roc_curve(rs, ry, 5000, 1000, f, t, &m), 0);
	assert_true(m <= 1000);
	assert_near(f[0], 0, 0);
	assert_near(t[m - 1], 1, 0);
	for (size_t i = 1; i < m; i++) {
		assert_true(f[i] >= f[i - 1] && t[i] >= t[i - 1]);
		area += (f[i] - f[i - 1]) * (t[i] + t[i - 1]) / 2;
	}
	assert_near(area, auc, 1e-12); /* 61 groups: no thinning */
	assert_true(auc > 0.6 && auc < 0.8);
	/* Thinned to 3 points: ends kept. */
	assert_int_equal(fv_roc_curve(rs, ry, 5000, 3, f, t, &m), 0);
	assert_int_equal(m, 3);
	assert_near(f[0] + t[0], 0, 0);
	assert_near(f[2] + t[2], 2, 0);
	assert_int_equal(fv_roc_curve(rs, ry, 5000, 1, f, t, &m), -EINVAL);
	free(rs);
	free(ry);
}

static void test_point_adjust(void **state)
{
	const int8_t label[] = { 0, 1, 1, 1, 0, 1, 1, 0, 1 };
	const uint8_t pred[] = { 1, 0, 1, 0, 0, 0, 0, 1, 0 };
	const uint8_t want[] = { 1, 1, 1, 1, 0, 0, 0, 1, 0 };
	uint8_t out[9];

	(void)state;
	fv_point_adjust(out, pred, label, 9);
	assert_memory_equal(out, want, 9);
	memcpy(out, pred, 9); /* in place */
	fv_point_adjust(out, out, label, 9);
	assert_memory_equal(out, want, 9);
}

static void test_iid(void **state)
{
	uint32_t a[1003], b[1003], size[7] = { 0 };
	bool differ = false;

	(void)state;
	assert_int_equal(fv_partition_iid(a, 1003, 7, 42), 0);
	assert_int_equal(fv_partition_iid(b, 1003, 7, 42), 0);
	assert_memory_equal(a, b, sizeof(a));
	for (int i = 0; i < 1003; i++) {
		assert_true(a[i] < 7);
		size[a[i]]++;
	}
	for (int k = 0; k < 7; k++)
		assert_true(size[k] == 143 || size[k] == 144); /* 1003 = 7 * 143 + 2 */
	assert_int_equal(fv_partition_iid(b, 1003, 7, 43), 0);
	for (int i = 0; i < 1003; i++)
		differ = differ || a[i] != b[i];
	assert_true(differ);
	assert_int_equal(fv_partition_iid(a, 10, 0, 1), -EINVAL);
}

/* Sources of sizes 300, 500, 1200 over 6 clients. */
static void dirichlet_counts(double alpha, uint64_t seed, uint32_t *who,
			     uint32_t count[3][6])
{
	static uint32_t src[2000];

	for (int i = 0; i < 2000; i++)
		src[i] = i < 300 ? 0 : i < 800 ? 1 : 2;
	assert_int_equal(fv_partition_dirichlet(who, src, 2000, 3, 6, alpha, seed), 0);
	memset(count, 0, sizeof(uint32_t) * 18);
	for (int i = 0; i < 2000; i++) {
		assert_true(who[i] < 6);
		count[src[i]][who[i]]++;
	}
}

static void test_dirichlet(void **state)
{
	static uint32_t a[2000], b[2000];
	uint32_t ca[3][6], cb[3][6];
	const uint32_t n_s[3] = { 300, 500, 1200 };
	int concentrated = 0;

	(void)state;
	/* Seeded: the same seed, the same partition; sizes sum per source. */
	dirichlet_counts(0.5, 7, a, ca);
	dirichlet_counts(0.5, 7, b, cb);
	assert_memory_equal(a, b, sizeof(a));
	for (int s = 0; s < 3; s++) {
		uint32_t sum = 0;

		for (int k = 0; k < 6; k++)
			sum += ca[s][k];
		assert_int_equal(sum, n_s[s]);
	}
	/* alpha -> infinity: every client an even share of every source
	 * (within one item of n_s / 6 after rounding, plus the draw's spread,
	 * which at alpha = 1e7 is ~1e-4 of the share). */
	dirichlet_counts(1e7, 9, a, ca);
	for (int s = 0; s < 3; s++)
		for (int k = 0; k < 6; k++)
			assert_true(fabs((double)ca[s][k] - n_s[s] / 6.0) <= 1.5);
	/* Tiny alpha: each source lands (almost) on one client. */
	for (uint64_t seed = 1; seed <= 10; seed++) {
		dirichlet_counts(0.01, seed, a, ca);
		for (int s = 0; s < 3; s++) {
			uint32_t mx = 0;

			for (int k = 0; k < 6; k++)
				mx = FV_MAX(mx, ca[s][k]);
			concentrated += mx >= 0.9 * n_s[s];
		}
	}
	assert_true(concentrated >= 27); /* of 30 */
	assert_int_equal(fv_partition_dirichlet(a, (uint32_t[]){ 0, 3 }, 2, 3, 2, 1.0, 1), -EINVAL);
	assert_int_equal(fv_partition_dirichlet(a, (uint32_t[]){ 0, 1 }, 2, 3, 2, 0.0, 1), -EINVAL);
	assert_int_equal(fv_partition_dirichlet(a, (uint32_t[]){ 0, 1 }, 2, 3, 0, 1.0, 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_confusion),  cmocka_unit_test(test_auc_hand),
		cmocka_unit_test(test_auc_ties),   cmocka_unit_test(test_auc_edges),
		cmocka_unit_test(test_roc_curve),  cmocka_unit_test(test_point_adjust),
		cmocka_unit_test(test_iid),        cmocka_unit_test(test_dirichlet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
