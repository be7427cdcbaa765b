/* Unit tests for lib/util: time formatting, RNG, CRC-32, atomic files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fedvigil/util.h"

static void test_iso8601(void **state)
{
	char buf[40];
	int64_t ms;

	(void)state;
	/* 2026-01-01T00:00:00Z = 1767225600 s since the epoch (date -d ... +%s). */
	assert_int_equal(fv_iso8601_parse("2026-01-01T00:00:00Z", &ms), 0);
	assert_int_equal(ms, 1767225600000LL);
	assert_string_equal(fv_iso8601(ms + 1234, buf, sizeof(buf)), "2026-01-01T00:00:01.234Z");
	assert_int_equal(fv_iso8601_parse("2026-01-01 00:00:01.234", &ms), 0);
	assert_int_equal(ms, 1767225601234LL);
	assert_int_equal(fv_iso8601_parse("1970-01-01T00:00:00+00:00", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(fv_iso8601_parse("2024-02-29T12:30:00Z", &ms), 0);
	assert_string_equal(fv_iso8601(ms, buf, sizeof(buf)), "2024-02-29T12:30:00.000Z");
	assert_int_equal(fv_iso8601_parse("2026-13-01T00:00:00Z", &ms), -EINVAL);
	assert_int_equal(fv_iso8601_parse("2026-01-01T00:00:00Zjunk", &ms), -EINVAL);
	assert_int_equal(fv_iso8601_parse("yesterday", &ms), -EINVAL);
	assert_int_equal(fv_iso8601_parse("2026-01-01T00:00:00.Z", &ms), -EINVAL);
}

static void test_crc32(void **state)
{
	(void)state;
	/* The standard check value of CRC-32/IEEE. */
	assert_int_equal(fv_crc32(0, "123456789", 9), 0xCBF43926u);
	/* Incremental == one shot. */
	assert_int_equal(fv_crc32(fv_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
	assert_int_equal(fv_crc32(0, "", 0), 0);
}

static void test_rng(void **state)
{
	struct fv_rng a, b;
	double sum = 0, sumsq = 0;
	int n = 100000;

	(void)state;
	fv_rng_seed(&a, 42);
	fv_rng_seed(&b, 42);
	for (int i = 0; i < 100; i++)
		assert_true(fv_rng_u64(&a) == fv_rng_u64(&b));
	fv_rng_seed(&b, 43);
	assert_true(fv_rng_u64(&a) != fv_rng_u64(&b));
	for (int i = 0; i < n; i++) {
		double x = fv_rng_normal(&a);

		sum += x;
		sumsq += x * x;
	}
	assert_true(fabs(sum / n) < 0.02);
	assert_true(fabs(sumsq / n - 1.0) < 0.03);
	for (int i = 0; i < 1000; i++) {
		double u = fv_rng_uniform(&a);

		assert_true(u >= 0 && u < 1);
		assert_true(fv_rng_below(&a, 7) < 7);
	}
}

static void test_atomic_file(void **state)
{
	char dir[] = "/tmp/fvutilXXXXXX", path[256], tmp[300];
	void *buf;
	size_t len;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_int_equal(fv_file_write_atomic(path, "hello", 5), 0);
	assert_int_equal(fv_file_write_atomic(path, "world!", 6), 0);
	assert_int_equal(fv_file_read(path, 100, &buf, &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "world!", 6);
	free(buf);
	assert_int_equal(fv_file_read(path, 3, &buf, &len), -E2BIG);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	assert_int_equal(stat(tmp, &st), -1);
	/* A directory that does not exist: error, nothing written. */
	assert_int_equal(fv_file_write_atomic("/nonexistent-dir/x", "a", 1), -ENOENT);
	assert_int_equal(fv_file_read("/nonexistent-dir/x", 10, &buf, &len), -ENOENT);
	unlink(path);
	rmdir(dir);
}

static void test_mkdir_p(void **state)
{
	char dir[] = "/tmp/fvmkdirXXXXXX", path[256], file[256];
	struct stat st;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/c/", dir);
	assert_int_equal(fv_mkdir_p(path, 0750), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777 & ~0750, 0);
	assert_int_equal(fv_mkdir_p(path, 0750), 0); /* already there */
	/* A file in the way of a parent. */
	snprintf(file, sizeof(file), "%s/a/f", dir);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/a/f/g", dir);
	assert_int_equal(fv_mkdir_p(path, 0750), -ENOTDIR);
	{
		char *huge = malloc(5000);

		assert_non_null(huge);
		memset(huge, 'a', 4999);
		huge[4999] = '\0';
		assert_int_equal(fv_mkdir_p(huge, 0750), -ENAMETOOLONG);
		free(huge);
	}
	unlink(file);
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a/b", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a", dir);
	rmdir(path);
	rmdir(dir);
}

static void test_names(void **state)
{
	char small[4];

	(void)state;
	assert_true(fv_name_valid("pump-1"));
	assert_true(fv_name_valid("a.b_c"));
	assert_false(fv_name_valid(""));
	assert_false(fv_name_valid("a/b"));
	assert_false(fv_name_valid("a+b"));
	assert_false(fv_name_valid("a#"));
	assert_false(fv_name_valid("0123456789012345678901234567890123456789012345678901234567890123"));
	assert_int_equal(fv_strlcpy(small, "abc", sizeof(small)), 0);
	assert_int_equal(fv_strlcpy(small, "abcd", sizeof(small)), -E2BIG);
	assert_string_equal(small, "abc");
	assert_string_equal(fv_strerror(-EXDEV), "foreign fleet");
}

static void test_ratelimit(void **state)
{
	struct fv_ratelimit rl = FV_RATELIMIT_INIT(60000, 3);
	uint64_t sup = 99;
	int ok = 0;

	(void)state;
	for (int i = 0; i < 10; i++)
		ok += fv_ratelimit_ok(&rl, &sup);
	assert_int_equal(ok, 3);
	assert_int_equal(rl.suppressed, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iso8601),	   cmocka_unit_test(test_crc32),
		cmocka_unit_test(test_rng),	   cmocka_unit_test(test_atomic_file),
		cmocka_unit_test(test_mkdir_p),
		cmocka_unit_test(test_names),	   cmocka_unit_test(test_ratelimit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
