/* Unit tests for secrets on disk (lib/util/secret.c) and for keeping them
 * out of --dump-config (FV_CFG_SECRET in lib/util/cfg.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fedvigil/cfg.h"
#include "fedvigil/util.h"

static char dir[64];

static const char *file(const char *name, const char *content, mode_t mode)
{
	static char path[4][128];
	static int next;
	char *p = path[next++ % 4];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	assert_int_equal(chmod(p, mode), 0);
	return p;
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/fv-test-secret.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_check_private(void **state)
{
	char err[512];
	const char *p;

	(void)state;
	p = file("k0600", "x", 0600);
	assert_int_equal(fv_file_check_private(p, "key", err, sizeof(err)), 0);
	p = file("k0400", "x", 0400);
	assert_int_equal(fv_file_check_private(p, "key", err, sizeof(err)), 0);

	/* Any group or other bit is refused, with the mode and the fix. */
	static const mode_t loose[] = { 0640, 0604, 0660, 0602, 0610, 0644 };
	for (size_t i = 0; i < FV_ARRAY_SIZE(loose); i++) {
		char want[32];

		p = file("loose", "x", loose[i]);
		err[0] = '\0';
		assert_int_equal(fv_file_check_private(p, "TLS key", err, sizeof(err)), -EPERM);
		snprintf(want, sizeof(want), "(mode %04o)", (unsigned)loose[i]);
		assert_non_null(strstr(err, want));
		assert_non_null(strstr(err, "TLS key"));
		assert_non_null(strstr(err, "chmod 600"));
	}
	assert_int_equal(fv_file_check_private("/nonexistent/key", "key", err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/key"));
	assert_int_equal(fv_file_check_private(dir, "key", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
}

static void test_read_line(void **state)
{
	char buf[16], err[512];
	const char *p;

	(void)state;
	p = file("pw1", "s3cret\nsecond line\n", 0600);
	assert_int_equal(fv_secret_read_line(p, "password file", buf, sizeof(buf), err,
					     sizeof(err)), 0);
	assert_string_equal(buf, "s3cret");
	p = file("pw2", "crlf\r\n", 0600);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)), 0);
	assert_string_equal(buf, "crlf");
	p = file("pw3", "no-newline", 0600);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)), 0);
	assert_string_equal(buf, "no-newline");
	p = file("pw4", "123456789012345", 0600); /* exactly size - 1 */
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)), 0);
	assert_string_equal(buf, "123456789012345");

	/* Failures leave buf alone and never echo the secret. */
	strcpy(buf, "untouched");
	p = file("pw5", "1234567890123456\n", 0600);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)), -E2BIG);
	assert_null(strstr(err, "1234567890123456"));
	assert_string_equal(buf, "untouched");
	p = file("pw6", "\nafter an empty line\n", 0600);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)),
			 -ENODATA);
	p = file("pw7", "", 0600);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)),
			 -ENODATA);
	p = file("pw8", "readable\n", 0644);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)), -EPERM);
	assert_null(strstr(err, "readable\n"));
	assert_string_equal(buf, "untouched");
	/* A large file is refused before it is read. */
	char big[5000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	p = file("pw9", big, 0600);
	assert_int_equal(fv_secret_read_line(p, "pw", buf, sizeof(buf), err, sizeof(err)), -E2BIG);
}

struct conf {
	char user[32];
	char password[32];
	char other[32];
};

static const struct fv_cfg_key keys[] = {
	{ "s", "user", FV_CFG_STR, "bob", 0, 0, NULL, offsetof(struct conf, user),
	  sizeof(((struct conf *)0)->user), "user" },
	{ "s", "password", FV_CFG_STR, "", 0, 0, NULL, offsetof(struct conf, password),
	  sizeof(((struct conf *)0)->password), "password", FV_CFG_SECRET },
	{ "s", "other", FV_CFG_STR, "", 0, 0, NULL, offsetof(struct conf, other),
	  sizeof(((struct conf *)0)->other), "a plain string" },
};

/* The dump of c into a malloc'd string. */
static char *dump(const struct conf *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	fv_cfg_dump(keys, FV_ARRAY_SIZE(keys), c, f);
	fclose(f);
	return text;
}

static void test_dump_masks_secrets(void **state)
{
	struct conf c;
	char err[256], *text;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(fv_cfg_defaults(keys, FV_ARRAY_SIZE(keys), &c, err, sizeof(err)), 0);
	text = dump(&c);
	assert_non_null(strstr(text, "\npassword = \n")); /* empty: shown as empty */
	free(text);

	assert_int_equal(fv_cfg_set(keys, FV_ARRAY_SIZE(keys), &c, "s.password", "hunter2-xyz", err,
				    sizeof(err)), 0);
	assert_int_equal(fv_cfg_set(keys, FV_ARRAY_SIZE(keys), &c, "s.other", "visible", err,
				    sizeof(err)), 0);
	text = dump(&c);
	assert_null(strstr(text, "hunter2"));
	assert_non_null(strstr(text, "\n; password = (set, not shown)\n"));
	assert_non_null(strstr(text, "\nother = visible\n"));
	assert_non_null(strstr(text, "\nuser = bob\n"));
	free(text);

	/* An over-long secret is refused without echoing it. */
	assert_int_equal(fv_cfg_set(keys, FV_ARRAY_SIZE(keys), &c, "s.password",
				    "a-very-long-secret-value-longer-than-31", err, sizeof(err)),
			 -EINVAL);
	assert_null(strstr(err, "a-very-long-secret"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_private),
		cmocka_unit_test(test_read_line),
		cmocka_unit_test(test_dump_masks_secrets),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
