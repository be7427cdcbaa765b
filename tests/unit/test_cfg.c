/* Unit tests for lib/util/cfg.c: the key table, INI loading, overrides,
 * help and dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedvigil/cfg.h"
#include "fedvigil/util.h"

struct tcfg {
	char name[8];     /* STR, max 7 */
	long long count;  /* INT 1..1000 */
	int small;        /* INT in an int field, -10..10 */
	double ratio;     /* DOUBLE 0.001..1 */
	bool verbose;     /* BOOL */
	int level;        /* ENUM */
	char path[32];    /* STR, in another section */
	int enabled;      /* BOOL in an int field */
};

static const char *const levels[] = { "err", "warning", "info", "debug", NULL };

#define F(f) offsetof(struct tcfg, f), sizeof(((struct tcfg *)0)->f)
static const struct fv_cfg_key keys[] = {
	{ "main", "name", FV_CFG_STR, "abc", 0, 0, NULL, F(name), "a short name" },
	{ "main", "count", FV_CFG_INT, "10", 1, 1000, NULL, F(count), "how many" },
	{ "main", "small", FV_CFG_INT, "-5", -10, 10, NULL, F(small), "a small int" },
	{ "main", "ratio", FV_CFG_DOUBLE, "0.5", 0.001, 1, NULL, F(ratio), "a share" },
	{ "main", "verbose", FV_CFG_BOOL, "false", 0, 0, NULL, F(verbose), "talk more" },
	{ "main", "level", FV_CFG_ENUM, "info", 0, 0, levels, F(level), "log level" },
	{ "io", "path", FV_CFG_STR, "/tmp/x", 0, 0, NULL, F(path), "where things go" },
	{ "io", "enabled", FV_CFG_BOOL, "yes", 0, 0, NULL, F(enabled), "switch" },
};
#define NK FV_ARRAY_SIZE(keys)

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/fvcfgXXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Write text to <tmpdir>/<name>; the path goes to path (256 bytes). */
static void write_file(const char *name, const char *text, char *path)
{
	FILE *f;

	snprintf(path, 256, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void defaults(struct tcfg *c)
{
	char err[256] = "";

	memset(c, 0, sizeof(*c));
	assert_int_equal(fv_cfg_defaults(keys, NK, c, err, sizeof(err)), 0);
}

static void test_defaults(void **state)
{
	struct tcfg c;

	(void)state;
	defaults(&c);
	assert_string_equal(c.name, "abc");
	assert_true(c.count == 10);
	assert_int_equal(c.small, -5);
	assert_true(c.ratio == 0.5);
	assert_false(c.verbose);
	assert_int_equal(c.level, 2);
	assert_string_equal(c.path, "/tmp/x");
	assert_int_equal(c.enabled, 1);
}

static void test_bad_table(void **state)
{
	struct fv_cfg_key bad[] = {
		{ "main", "count", FV_CFG_INT, "5000", 1, 1000, NULL, F(count), "" },
	};
	struct fv_cfg_key badsize[] = {
		{ "main", "count", FV_CFG_DOUBLE, "1", 0, 10, NULL, F(small), "" },
	};
	struct tcfg c;
	char err[256] = "";

	(void)state;
	assert_int_equal(fv_cfg_defaults(bad, 1, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "main.count"));
	assert_non_null(strstr(err, "1..1000"));
	err[0] = '\0';
	assert_int_equal(fv_cfg_defaults(badsize, 1, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "main.count"));
}

static void test_load_valid(void **state)
{
	struct tcfg c;
	char path[256], err[256] = "";

	(void)state;
	defaults(&c);
	write_file("good.ini",
		   "# a comment\n"
		   "; another\n"
		   "\n"
		   "[main]\n"
		   "name = pump-7\n"
		   "count = 20\n"
		   "count = 42   ; inline comment, and the last value wins\n"
		   "small=-10\n"
		   "ratio = 1e-2\n"
		   "verbose = On\n"
		   "level = DEBUG\n"
		   "[io]\n"
		   "enabled = 0\n",
		   path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.name, "pump-7");
	assert_true(c.count == 42);
	assert_int_equal(c.small, -10);
	assert_true(c.ratio == 0.01);
	assert_true(c.verbose);
	assert_int_equal(c.level, 3);
	assert_string_equal(c.path, "/tmp/x"); /* untouched default */
	assert_int_equal(c.enabled, 0);
}

struct badcase {
	const char *line;  /* line 3 of a file that starts "[main]\n# x\n" */
	const char *key;   /* expected in the message */
	const char *range; /* expected in the message */
};

static void test_load_bad_values(void **state)
{
	static const struct badcase cases[] = {
		{ "count = abc", "main.count = 'abc'", "not an integer (range 1..1000)" },
		{ "count = 1001", "main.count = '1001'", "out of range (1..1000)" },
		{ "count = 0", "main.count", "1..1000" },
		{ "count = 12abc", "main.count", "not an integer" },
		{ "count = 99999999999999999999", "main.count", "1..1000" },
		{ "count = 1.5", "main.count", "not an integer" },
		{ "count =", "main.count = ''", "not an integer" },
		{ "small = 11", "main.small", "out of range (-10..10)" },
		{ "ratio = 2", "main.ratio = '2'", "out of range (0.001..1)" },
		{ "ratio = nan", "main.ratio", "not a number (range 0.001..1)" },
		{ "ratio = 0x1p-3", "main.ratio", "not a number" },
		{ "verbose = maybe", "main.verbose = 'maybe'", "true|false|yes|no|on|off|1|0" },
		{ "level = loud", "main.level = 'loud'", "not one of err|warning|info|debug" },
		{ "name = toolongname", "main.name", "max 7" },
	};
	char path[256], text[256], err[512];

	(void)state;
	for (size_t i = 0; i < FV_ARRAY_SIZE(cases); i++) {
		struct tcfg c;
		int r;

		defaults(&c);
		snprintf(text, sizeof(text), "[main]\n# x\n%s\ncount = 7\n", cases[i].line);
		write_file("bad.ini", text, path);
		err[0] = '\0';
		r = fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err));
		if (r != -EINVAL)
			fail_msg("'%s': got %d", cases[i].line, r);
		if (!strstr(err, "bad.ini:3: ") || !strstr(err, cases[i].key) ||
		    !strstr(err, cases[i].range))
			fail_msg("'%s': message '%s' lacks file:line, '%s' or '%s'", cases[i].line,
				 err, cases[i].key, cases[i].range);
		/* Parsing stopped at the bad line. */
		assert_true(c.count != 7);
	}
}

static void test_load_structure_errors(void **state)
{
	struct tcfg c;
	char path[256], err[512];
	char longline[400];

	(void)state;
	defaults(&c);
	write_file("unknown.ini", "[main]\ncount = 5\n\nfoo = 1\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown.ini:4: unknown key 'foo' in section [main]"));

	write_file("section.ini", "[main]\n[nope]\na = 1\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "section.ini:3: unknown section [nope]"));

	write_file("nosection.ini", "count = 5\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "nosection.ini:1:"));
	assert_non_null(strstr(err, "count"));

	/* A line without '=' is a syntax error at its line, even when a later
	 * line has a bad value. */
	write_file("syntax.ini", "[main]\ncount 5\ncount = abc\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "syntax.ini:2: syntax error"));

	/* libinih would split a long line silently; we refuse it. */
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "[io]\npath = ", 12);
	strcpy(longline + 300, "\n");
	write_file("long.ini", longline, path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "long.ini:2: line too long"));

	/* ... and a section name it would truncate. */
	write_file("longsec.ini",
		   "[main]\n[channel.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longsec.ini:2: section name too long"));

	/* Missing file: -ENOENT, the path in the message. */
	snprintf(path, sizeof(path), "%s/missing.ini", tmpdir);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	/* A directory is not a config file. */
	assert_true(fv_cfg_load(keys, NK, &c, tmpdir, NULL, NULL, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, tmpdir));
}

struct extra_seen {
	int calls;
	char last[128];
};

static int extra(void *userdata, const char *section, const char *name, const char *value,
		 const char **ret_why)
{
	struct extra_seen *s = userdata;

	s->calls++;
	if (strncmp(section, "channel.", 8) != 0) {
		*ret_why = "not a channel section";
		return -EINVAL;
	}
	if (strcmp(name, "topic") != 0) {
		*ret_why = "channels only have a topic";
		return -EINVAL;
	}
	snprintf(s->last, sizeof(s->last), "%s/%s=%s", section, name, value);
	return 0;
}

static void test_extra(void **state)
{
	struct extra_seen seen = { 0 };
	struct tcfg c;
	char path[256], err[512];

	(void)state;
	defaults(&c);
	write_file("extra.ini",
		   "[main]\ncount = 3\n[channel.temp]\ntopic = plant/t\n[io]\npath = /p\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, extra, &seen, err, sizeof(err)), 0);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.last, "channel.temp/topic=plant/t");
	assert_true(c.count == 3);
	assert_string_equal(c.path, "/p");

	/* Rejected: file:line and the callback's reason. */
	write_file("extra2.ini", "[channel.temp]\ntopic = a\ncolour = red\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, extra, &seen, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "extra2.ini:3:"));
	assert_non_null(strstr(err, "colour"));
	assert_non_null(strstr(err, "channels only have a topic"));

	/* Unknown keys in table sections never go to the callback. */
	seen.calls = 0;
	write_file("extra3.ini", "[main]\ntopic = a\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, extra, &seen, err, sizeof(err)), -EINVAL);
	assert_int_equal(seen.calls, 0);
	assert_non_null(strstr(err, "extra3.ini:2: unknown key 'topic' in section [main]"));
}

static void test_set(void **state)
{
	struct tcfg c, before;
	char err[512];

	(void)state;
	defaults(&c);
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.count", "42", err, sizeof(err)), 0);
	assert_true(c.count == 42);
	assert_int_equal(fv_cfg_set(keys, NK, &c, "io.enabled", "off", err, sizeof(err)), 0);
	assert_int_equal(c.enabled, 0);
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.level", "err", err, sizeof(err)), 0);
	assert_int_equal(c.level, 0);
	assert_int_equal(fv_cfg_set(keys, NK, &c, "io.path", "", err, sizeof(err)), 0);
	assert_string_equal(c.path, "");

	/* Failures leave the object untouched. */
	memcpy(&before, &c, sizeof(c));
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.count", "x", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "command line: main.count = 'x': not an integer (range 1..1000)"));
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.count", " 5", err, sizeof(err)), -EINVAL);
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.name", "12345678", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "max 7"));
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.nokey", "1", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "main.nokey"));
	assert_int_equal(fv_cfg_set(keys, NK, &c, "count", "1", err, sizeof(err)), -EINVAL);
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.", "1", err, sizeof(err)), -EINVAL);
	assert_int_equal(fv_cfg_set(keys, NK, &c, ".count", "1", err, sizeof(err)), -EINVAL);
	assert_memory_equal(&c, &before, sizeof(c));
}

/* Environment overrides: names, precedence over the file, validation with
 * the variable named, unknown variables reported. */
static void test_env(void **state)
{
	struct tcfg c, before;
	char err[512], path[256], name[64];
	const char *unknown[4];
	char *env[] = { "HOME=/root",
			"FV_MAIN_COUNT=7",            /* another prefix: not ours */
			"FEDVIGIL_MAIN_COUNT=42",
			"FEDVIGIL_MAIN_LEVEL=debug",
			"FEDVIGIL_IO_PATH=",          /* empty: sets an empty string */
			"FEDVIGIL_MAIN_COUNT=99",     /* a duplicate: the first wins */
			"FEDVIGIL_MAIN_CONT=1",       /* a typo */
			"FEDVIGIL_OTHER",             /* no '=': not a variable */
			NULL };
	char *bad_int[] = { "FEDVIGIL_MAIN_COUNT=12x", NULL };
	char *bad_str[] = { "FEDVIGIL_MAIN_NAME=secret-too-long", NULL };

	(void)state;
	assert_int_equal(fv_cfg_env_name(&keys[1], "FEDVIGIL_", name, sizeof(name)), 0);
	assert_string_equal(name, "FEDVIGIL_MAIN_COUNT");
	assert_int_equal(fv_cfg_env_name(&keys[6], "X_", name, sizeof(name)), 0);
	assert_string_equal(name, "X_IO_PATH");
	assert_int_equal(fv_cfg_env_name(&keys[1], "FEDVIGIL_", name, 10), -E2BIG);

	/* The file sets count = 5; the environment wins over it. */
	defaults(&c);
	write_file("env.ini", "[main]\ncount = 5\nsmall = 3\n", path);
	assert_int_equal(fv_cfg_load(keys, NK, &c, path, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(fv_cfg_env(keys, NK, &c, "FEDVIGIL_", env, err, sizeof(err)), 3);
	assert_true(c.count == 42);
	assert_int_equal(c.level, 3);
	assert_string_equal(c.path, "");
	assert_int_equal(c.small, 3); /* not in the environment: the file's */
	/* ... and the command line wins over the environment. */
	assert_int_equal(fv_cfg_set(keys, NK, &c, "main.count", "8", err, sizeof(err)), 0);
	assert_true(c.count == 8);

	/* A bad value names the variable, the key and the range. */
	memcpy(&before, &c, sizeof(c));
	assert_int_equal(fv_cfg_env(keys, NK, &c, "FEDVIGIL_", bad_int, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "environment FEDVIGIL_MAIN_COUNT: main.count = '12x': not an "
				 "integer (range 1..1000)");
	assert_int_equal(fv_cfg_env(keys, NK, &c, "FEDVIGIL_", bad_str, err, sizeof(err)),
			 -EINVAL);
	assert_null(strstr(err, "secret")); /* strings are not echoed */
	assert_non_null(strstr(err, "FEDVIGIL_MAIN_NAME"));
	assert_memory_equal(&c, &before, sizeof(c));

	/* Nothing set: nothing changes. */
	assert_int_equal(fv_cfg_env(keys, NK, &c, "FEDVIGIL_", NULL, err, sizeof(err)), 0);
	assert_memory_equal(&c, &before, sizeof(c));

	/* Unknown: the typo only (the duplicate and other prefixes are not). */
	assert_int_equal(fv_cfg_env_unknown(keys, NK, "FEDVIGIL_", env, unknown, 4), 1);
	assert_string_equal(unknown[0], "FEDVIGIL_MAIN_CONT=1");
	assert_int_equal(fv_cfg_env_unknown(keys, NK, "FEDVIGIL_", env, unknown, 0), 1);
}

static void test_dump_round_trip(void **state)
{
	struct tcfg c, d;
	char path[256], err[512];
	FILE *f;

	(void)state;
	defaults(&c);
	/* Non-default values, including a double that needs 17 digits. */
	strcpy(c.name, "x y");
	c.count = 999;
	c.small = -1;
	c.ratio = 0.1 + 0.2;
	c.verbose = true;
	c.level = 1;
	strcpy(c.path, "/var/lib/fv;x");
	c.enabled = 0;
	snprintf(path, sizeof(path), "%s/dump.ini", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fv_cfg_dump(keys, NK, &c, f);
	assert_int_equal(fclose(f), 0);

	defaults(&d);
	assert_int_equal(fv_cfg_load(keys, NK, &d, path, NULL, NULL, err, sizeof(err)), 0);
	assert_string_equal(d.name, c.name);
	assert_true(d.count == c.count);
	assert_int_equal(d.small, c.small);
	assert_true(d.ratio == c.ratio);
	assert_true(d.verbose == c.verbose);
	assert_int_equal(d.level, c.level);
	assert_string_equal(d.path, c.path);
	assert_int_equal(d.enabled, c.enabled);
	assert_memory_equal(&c, &d, sizeof(c));
}

static void test_help(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	fv_cfg_print_help(keys, NK, f);
	assert_int_equal(fclose(f), 0);
	for (size_t i = 0; i < NK; i++) {
		char name[64];

		snprintf(name, sizeof(name), "%s.%s", keys[i].section, keys[i].name);
		if (!strstr(buf, name) || !strstr(buf, keys[i].help))
			fail_msg("help lacks %s or its text:\n%s", name, buf);
	}
	assert_non_null(strstr(buf, "1..1000"));
	assert_non_null(strstr(buf, "err|warning|info|debug"));
	assert_non_null(strstr(buf, "max 7"));
	free(buf);
}

/* ---- reload (fv_cfg_apply_live) and the man page ---- */

struct change_log {
	char text[512];
	int n;
};

static void record_change(const struct fv_cfg_key *k, const char *old_value, const char *new_value,
			  bool applied, void *userdata)
{
	struct change_log *cl = userdata;
	size_t used = strlen(cl->text);

	snprintf(cl->text + used, sizeof(cl->text) - used, "%s.%s:%s>%s:%s;", k->section, k->name,
		 old_value, new_value, applied ? "live" : "restart");
	cl->n++;
}

static void test_apply_live(void **state)
{
	static const char *const live[] = { "main.count", "io.*", NULL };
	struct tcfg cur, next;
	struct change_log cl = { "", 0 };
	char err[256];
	int n;

	(void)state;
	assert_int_equal(fv_cfg_defaults(keys, NK, &cur, err, sizeof(err)), 0);
	assert_int_equal(fv_cfg_defaults(keys, NK, &next, err, sizeof(err)), 0);
	/* Nothing differs: nothing reported. */
	assert_int_equal(fv_cfg_apply_live(keys, NK, &cur, &next, live, record_change, &cl), 0);
	assert_int_equal(cl.n, 0);
	assert_int_equal(fv_cfg_set(keys, NK, &next, "main.count", "42", err, sizeof(err)), 0);
	assert_int_equal(fv_cfg_set(keys, NK, &next, "main.name", "xyz", err, sizeof(err)), 0);
	assert_int_equal(fv_cfg_set(keys, NK, &next, "io.path", "/var/y", err, sizeof(err)), 0);
	assert_int_equal(fv_cfg_set(keys, NK, &next, "main.level", "debug", err, sizeof(err)), 0);
	n = fv_cfg_apply_live(keys, NK, &cur, &next, live, record_change, &cl);
	assert_int_equal(n, 4);
	assert_string_equal(cl.text, "main.name:abc>xyz:restart;main.count:10>42:live;"
				     "main.level:info>debug:restart;io.path:/tmp/x>/var/y:live;");
	/* Live keys copied, the others kept. */
	assert_int_equal(cur.count, 42);
	assert_string_equal(cur.path, "/var/y");
	assert_string_equal(cur.name, "abc");
	assert_int_equal(cur.level, 2);
	/* The matcher: exact names and section wildcards only. */
	assert_true(fv_cfg_key_live(&keys[1], live));
	assert_false(fv_cfg_key_live(&keys[0], live));
	assert_true(fv_cfg_key_live(&keys[6], live));
	assert_false(fv_cfg_key_live(&keys[1], NULL));
}

static void test_man(void **state)
{
	static const char *const live[] = { "main.ratio", NULL };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	fv_cfg_print_man(keys, NK, live, f);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(buf, ".SS [main]\n"));
	assert_non_null(strstr(buf, ".SS [io]\n"));
	assert_non_null(strstr(buf, ".TP\n.B main.count\nhow many (integer 1..1000, default 10)\n"));
	assert_non_null(strstr(buf, ".B main.ratio\na share (number 0.001..1, default 0.5; applied on SIGHUP)\n"));
	/* Hyphens and backslashes escaped for roff. */
	assert_non_null(strstr(buf, "default \\-5"));
	assert_null(strstr(buf, "[main]\n.SS [main]"));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_table),
		cmocka_unit_test(test_load_valid),
		cmocka_unit_test(test_load_bad_values),
		cmocka_unit_test(test_load_structure_errors),
		cmocka_unit_test(test_extra),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_dump_round_trip),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_apply_live),
		cmocka_unit_test(test_man),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
