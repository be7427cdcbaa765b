/* Unit tests for lib/data: the CSV reader on what real exports contain
 * (CRLF/LF/CR mixed, quotes, a BOM, blanks, ';' with decimal commas, empty
 * cells), its errors with file:line, the manifest parser and its errors,
 * and the dataset loader (columns by name and number, timestamps, label
 * files, label columns, NAB label windows, row ranges). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedvigil/data.h"
#include "fedvigil/util.h"

static char dir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/fv-test-data.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Write name in the test dir; returns its path (static buffer per call
 * site is not enough: a small ring). */
static const char *put(const char *name, const char *text)
{
	static char paths[8][512];
	static int next;
	char *p = paths[next++ % 8];
	FILE *f;

	snprintf(p, 512, "%s/%s", dir, name);
	f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	return p;
}

/* Read all records of a CSV into "a|b|c\n" lines for easy comparison. */
static int slurp(const char *path, char delim, char *out, size_t len, char *err, size_t errlen)
{
	struct fv_csv *c = fv_csv_open(path, delim, err, errlen);
	char **f;
	int n, line;
	size_t off = 0;

	if (!c)
		return -1;
	out[0] = '\0';
	while ((n = fv_csv_next(c, &f, &line, err, errlen)) > 0) {
		off += (size_t)snprintf(out + off, len - off, "%d:", line);
		for (int i = 0; i < n; i++)
			off += (size_t)snprintf(out + off, len - off, "%s%s", i ? "|" : "", f[i]);
		off += (size_t)snprintf(out + off, len - off, "\n");
	}
	fv_csv_close(c);
	return n;
}

static void test_csv_quirks(void **state)
{
	char out[2048], err[512];
	const char *p;

	(void)state;
	/* BOM, a header with spaces, CRLF then LF then a lone CR, a blank
	 * line, quoted fields holding the delimiter, a quote and a line break,
	 * blanks around fields, an empty last field. */
	p = put("q.csv", "\xEF\xBB\xBF"
			 "time stamp , \"Motor Temp (C)\",Pressure\r\n"
			 "1, 2.5 ,\"3,5\"\n"
			 "\n"
			 "2,\"say \"\"hi\"\"\",\"two\nlines\"\r"
			 "3,  \"  kept  \"  ,\n"
			 "4,,\r\n");
	assert_int_equal(slurp(p, 0, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "1:time stamp|Motor Temp (C)|Pressure\n"
				 "2:1|2.5|3,5\n"
				 "4:2|say \"hi\"|two\nlines\n"
				 "6:3|  kept  |\n"
				 "7:4||\n");
}

static void test_csv_semicolon(void **state)
{
	char out[1024], err[512];
	const char *p;
	struct fv_csv *c;
	double v;

	(void)state;
	p = put("s.csv", "a;b;c\n1,5;2;\"x;y\"\n");
	c = fv_csv_open(p, 0, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(fv_csv_delim(c), ';');
	fv_csv_close(c);
	assert_int_equal(slurp(p, 0, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "1:a|b|c\n2:1,5|2|x;y\n");
	assert_int_equal(fv_csv_number("1,5", ',', &v), 0);
	assert_true(v == 1.5);
	/* tab, and a forced delimiter that differs from the file's */
	p = put("t.tsv", "a\tb\n1\t2\n");
	assert_int_equal(slurp(p, 0, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "1:a|b\n2:1|2\n");
	assert_int_equal(slurp(p, ',', out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "1:a\tb\n2:1\t2\n");
}

static void test_csv_errors(void **state)
{
	char out[1024], err[512];
	const char *p;

	(void)state;
	p = put("e1.csv", "a,b\n1,\"open\n2,3\n");
	assert_int_equal(slurp(p, 0, out, sizeof(out), err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "e1.csv:"));
	assert_non_null(strstr(err, "unterminated quoted field (opened on line 2)"));
	p = put("e2.csv", "a,b\n1,2\n3,\"x\"y\n");
	assert_int_equal(slurp(p, 0, out, sizeof(out), err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "e2.csv:3: field 2: text after a closing quote"));
	assert_null(fv_csv_open("/nonexistent/x.csv", 0, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/x.csv: cannot open"));
	assert_null(fv_csv_open(p, 'x', err, sizeof(err)));
}

static void test_csv_number(void **state)
{
	double v = 0;

	(void)state;
	assert_int_equal(fv_csv_number("21.5", '.', &v), 0);
	assert_true(v == 21.5);
	assert_int_equal(fv_csv_number("-1e-3", '.', &v), 0);
	assert_true(v == -1e-3);
	assert_int_equal(fv_csv_number("", '.', &v), -ENODATA);
	assert_int_equal(fv_csv_number("NaN", '.', &v), -ENODATA);
	assert_int_equal(fv_csv_number("NA", '.', &v), -ENODATA);
	assert_int_equal(fv_csv_number("n/a", '.', &v), -ENODATA);
	assert_int_equal(fv_csv_number("null", '.', &v), -ENODATA);
	assert_int_equal(fv_csv_number("inf", '.', &v), -ERANGE);
	assert_int_equal(fv_csv_number("-Infinity", '.', &v), -ERANGE);
	assert_int_equal(fv_csv_number("1e999", '.', &v), -ERANGE);
	assert_int_equal(fv_csv_number("abc", '.', &v), -EBADMSG);
	assert_int_equal(fv_csv_number("0x10", '.', &v), -EBADMSG);
	assert_int_equal(fv_csv_number("1,5", '.', &v), -EBADMSG);
	assert_int_equal(fv_csv_number("1.234,5", ',', &v), -EBADMSG);
	assert_int_equal(fv_csv_number("12 3", '.', &v), -EBADMSG);
}

static void test_range(void **state)
{
	size_t lo, hi;

	(void)state;
	assert_int_equal(fv_ds_range_parse("1-3404", 22695, &lo, &hi), 0);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 3404);
	assert_int_equal(fv_ds_range_parse("0%-15%", 22695, &lo, &hi), 0);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 3404); /* round(3404.25) */
	assert_int_equal(fv_ds_range_parse("15%-", 22695, &lo, &hi), 0);
	assert_int_equal(lo, 3404);
	assert_int_equal(hi, 22695);
	assert_int_equal(fv_ds_range_parse("-10", 100, &lo, &hi), 0);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 10);
	assert_int_equal(fv_ds_range_parse("11-", 100, &lo, &hi), 0);
	assert_int_equal(lo, 10);
	assert_int_equal(hi, 100);
	assert_int_equal(fv_ds_range_parse("5-500", 100, &lo, &hi), 0); /* clipped */
	assert_int_equal(hi, 100);
	assert_int_equal(fv_ds_range_parse("0-5", 100, &lo, &hi), -EINVAL);
	assert_int_equal(fv_ds_range_parse("10-5", 100, &lo, &hi), -EINVAL);
	assert_int_equal(fv_ds_range_parse("5", 100, &lo, &hi), -EINVAL);
	assert_int_equal(fv_ds_range_parse("a-b", 100, &lo, &hi), -EINVAL);
	assert_int_equal(fv_ds_range_parse("0%-101%", 100, &lo, &hi), -EINVAL);
}

static void test_manifest(void **state)
{
	struct fv_manifest *m = NULL;
	char err[1024];
	const char *p;

	(void)state;
	p = put("m.ini", "# a user's own export\n"
			 "[dataset]\n"
			 "name = plant\n"
			 "root = data\n"
			 "delimiter = semicolon\n"
			 "decimal = comma\n"
			 "header = yes\n"
			 "features = \"Motor Temp (C)\", Pressure\n"
			 "period_ms = 60000\n"
			 "[set]\n"
			 "detect.k = 2\n"
			 "model.hidden = 8,2,8\n"
			 "[entity.pump-1]\n"
			 "train = pump1-jan.csv\n"
			 "train = pump1-feb.csv\n"
			 "test = /abs/pump1-mar.csv\n"
			 "labels = pump1-mar-labels.csv\n"
			 "[entity.pump-2]\n"
			 "delimiter = comma\n"
			 "file = pump2.csv\n"
			 "train_rows = 1-1000\n"
			 "test_rows = 1001-\n"
			 "label = fault\n");
	assert_int_equal(fv_manifest_load(p, NULL, &m, err, sizeof(err)), 0);
	assert_string_equal(m->name, "plant");
	assert_int_equal(m->period_ms, 60000);
	assert_int_equal(m->n_sets, 2);
	assert_string_equal(m->sets[1].key, "model.hidden");
	assert_string_equal(m->sets[1].value, "8,2,8");
	assert_int_equal(m->n_entities, 2);
	assert_string_equal(m->ent[0].name, "pump-1");
	assert_int_equal(m->ent[0].n_files, 3);
	assert_int_equal(m->ent[0].files[1].role, FV_DS_TRAIN);
	assert_int_equal(m->ent[0].files[2].role, FV_DS_TEST);
	assert_non_null(strstr(m->ent[0].files[0].path, "/data/pump1-jan.csv"));
	assert_string_equal(m->ent[0].files[2].path, "/abs/pump1-mar.csv");
	assert_int_equal(m->ent[0].fmt.delim, ';');
	assert_int_equal(m->ent[0].fmt.decimal, ',');
	assert_int_equal(m->ent[1].fmt.delim, ','); /* overridden */
	assert_int_equal(m->ent[1].fmt.decimal, ','); /* inherited */
	assert_int_equal(m->ent[1].files[0].role, 0);
	assert_string_equal(m->ent[1].train_rows, "1-1000");
	assert_string_equal(m->ent[1].fmt.label, "fault");
	fv_manifest_free(m);

	/* --root replaces [dataset] root */
	assert_int_equal(fv_manifest_load(p, "/elsewhere", &m, err, sizeof(err)), 0);
	assert_string_equal(m->ent[0].files[0].path, "/elsewhere/pump1-jan.csv");
	fv_manifest_free(m);
}

/* Each bad manifest gives an error naming the file and, where it is one
 * line's fault, the line. */
static void test_manifest_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "[dataset]\nname = x\n[entity.a]\ntrain = a.csv\nbogus = 1\n",
		  "bad.ini:5: [entity.a] bogus = '1': unknown key" },
		{ "[dataset]\ndelimiter = ;\n", "bad.ini:2: [dataset] delimiter = '': expected auto" },
		{ "[dataset]\nheader = maybe\n", "bad.ini:2: [dataset] header = 'maybe': expected yes" },
		{ "[datasets]\nname = x\n", "bad.ini:2: [datasets] name = 'x': unknown section" },
		{ "[entity.bad name]\ntrain = a\n", "bad.ini:2: [entity.bad name] train = 'a': entity "
						    "name must be" },
		{ "[set]\nk = 3\n", "bad.ini:2: [set] k = '3': expected section.key" },
		{ "[dataset]\nperiod_ms = -5\n", "bad.ini:2: [dataset] period_ms = '-5'" },
		{ "[dataset]\nname = x\n", "bad.ini: no [entity.NAME] sections" },
		{ "[entity.a]\nlabels = l.csv\n", "bad.ini: [entity.a] has no data" },
		{ "[entity.a]\ntrain = a.csv\ntest = b.csv\n", "bad.ini: [entity.a] has no labels" },
		{ "[entity.a]\nfile = a.csv\ntrain_rows = 1-5\nlabel = y\n",
		  "bad.ini: [entity.a] file = ... needs train_rows and test_rows" },
		{ "[entity.a]\ntrain = a.csv\ntest = b.csv\ntrain_rows = 1-5\nlabel = y\n",
		  "bad.ini: [entity.a] train_rows/test_rows apply to file" },
		{ "[entity.a]\ntrain = a.csv\ntest = b.csv\nlabel_windows = w.json\n",
		  "bad.ini: [entity.a] label_windows needs label_key" },
		{ "[dataset]\nthis is not ini\n", "bad.ini:2: syntax error" },
	};
	char err[1024];

	(void)state;
	for (size_t i = 0; i < FV_ARRAY_SIZE(cases); i++) {
		struct fv_manifest *m = NULL;
		const char *p = put("bad.ini", cases[i].text);

		err[0] = '\0';
		assert_true(fv_manifest_load(p, NULL, &m, err, sizeof(err)) < 0);
		assert_null(m);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].want);
	}
	assert_int_equal(fv_manifest_load("/nonexistent.ini", NULL, &(struct fv_manifest *){ NULL },
					  err, sizeof(err)),
			 -ENOENT);
}

static struct fv_dataset *load(const char *manifest, char *err, size_t errlen, int *ret)
{
	struct fv_manifest *m = NULL;
	struct fv_dataset *d = NULL;
	const char *p = put("d.ini", manifest);

	*ret = fv_manifest_load(p, NULL, &m, err, errlen);
	if (*ret == 0)
		*ret = fv_dataset_load(m, 1000, &d, err, errlen);
	fv_manifest_free(m);
	return d;
}

static void test_dataset_files(void **state)
{
	char err[1024];
	struct fv_dataset *d;
	int r;

	(void)state;
	/* ';' with decimal commas, a header with spaces, features by name
	 * (one quoted because of its comma), empty cells, CRLF and LF mixed
	 * across files, and a label file with a header. */
	put("tr.csv", "t;\"Temp, C\";Pres sure;Flow\r\n1;20,5;3;7\r\n2;;3,5;7\r\n");
	put("te.csv", "t;\"Temp, C\";Pres sure;Flow\n3;21;NA;8\n4;22;4;9\n5;23;4;9\n");
	put("lab.csv", "label\n0\n1\n0\n");
	d = load("[dataset]\ndelimiter = semicolon\ndecimal = comma\n"
		 "features = Flow, \"Temp, C\", Pres sure\n"
		 "[entity.m1]\ntrain = tr.csv\ntest = te.csv\nlabels = lab.csv\n",
		 err, sizeof(err), &r);
	if (r < 0)
		fail_msg("%s", err);
	assert_int_equal(d->C, 3);
	assert_string_equal(d->channels[0], "Flow");
	assert_string_equal(d->channels[1], "Temp__C");
	assert_string_equal(d->channels[2], "Pres_sure");
	assert_int_equal(d->ent[0].n, 5);
	assert_int_equal(d->ent[0].n_train, 2);
	assert_int_equal(d->ent[0].n_test, 3);
	assert_int_equal(d->ent[0].n_empty, 2);
	assert_true(d->ent[0].x[0] == 7.0f && d->ent[0].x[1] == 20.5f && d->ent[0].x[2] == 3.0f);
	assert_true(isnan(d->ent[0].x[4]));
	assert_true(d->ent[0].x[5] == 3.5f);
	assert_true(isnan(d->ent[0].x[8]));
	/* no timestamp column: rows are period_ms apart */
	assert_true(d->ent[0].ts[0] == FV_DS_DEFAULT_START_MS);
	assert_true(d->ent[0].ts[4] == FV_DS_DEFAULT_START_MS + 4000);
	assert_int_equal(d->ent[0].role[1], FV_DS_TRAIN);
	assert_int_equal(d->ent[0].role[2], FV_DS_TEST);
	assert_int_equal(d->ent[0].label[3], 1);
	assert_int_equal(d->ent[0].label[4], 0);
	fv_dataset_free(d);
}

static void test_dataset_columns(void **state)
{
	char err[1024];
	struct fv_dataset *d;
	int r;

	(void)state;
	/* One file split by row ranges, an ISO timestamp column, a label
	 * column, features by number and range, header auto-detected. */
	put("one.csv", "when,a,b,c,y\n"
		       "2026-01-01 00:00:00,1,2,3,0\n"
		       "2026-01-01 00:01:00,1,2,3,0\n"
		       "2026-01-01 00:02:00,1,2,3,1\n"
		       "2026-01-01T00:03:00Z,1,2,3,0\n");
	d = load("[dataset]\ntimestamp = when\nlabel = y\nfeatures = 2, 3-4\n"
		 "[entity.m]\nfile = one.csv\ntrain_rows = 1-2\ntest_rows = 50%-\n",
		 err, sizeof(err), &r);
	if (r < 0)
		fail_msg("%s", err);
	assert_int_equal(d->C, 3);
	assert_string_equal(d->channels[2], "c");
	assert_true(d->have_ts);
	assert_true(d->ent[0].ts[1] - d->ent[0].ts[0] == 60000);
	assert_true(d->ent[0].ts[3] - d->ent[0].ts[0] == 180000);
	assert_int_equal(d->ent[0].n_train, 2);
	assert_int_equal(d->ent[0].n_test, 2);
	assert_int_equal(d->ent[0].label[2], 1);
	fv_dataset_free(d);

	/* No header: all columns but the label are features, named c1.. */
	put("nh.csv", "1,2,0\n3,4,1\n");
	d = load("[dataset]\nheader = no\nlabel = 3\n[entity.m]\nfile = nh.csv\n"
		 "train_rows = 1-1\ntest_rows = 2-2\n",
		 err, sizeof(err), &r);
	if (r < 0)
		fail_msg("%s", err);
	assert_int_equal(d->C, 2);
	assert_string_equal(d->channels[1], "c2");
	fv_dataset_free(d);
}

static void test_dataset_windows(void **state)
{
	char err[1024];
	struct fv_dataset *d;
	int r;

	(void)state;
	/* NAB's combined_windows.json layout; one row goes back in time. */
	put("w.json", "{\"other.csv\": [], \"dir/m.csv\": [[\"2026-01-01 00:02:00.000000\", "
		      "\"2026-01-01 00:03:00.000000\"]]}");
	put("m.csv", "timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,2\n"
		     "2026-01-01 00:02:00,3\n2026-01-01 00:01:30,3\n2026-01-01 00:03:00,4\n"
		     "2026-01-01 00:04:00,5\n");
	d = load("[dataset]\ntimestamp = timestamp\nlabel_windows = w.json\nlabel_key = dir/m.csv\n"
		 "[entity.m]\nfile = m.csv\ntrain_rows = 1-2\ntest_rows = 3-\n",
		 err, sizeof(err), &r);
	if (r < 0)
		fail_msg("%s", err);
	assert_int_equal(d->ent[0].n_backward, 1);
	assert_non_null(strstr(d->ent[0].backward_at, "m.csv:5"));
	assert_int_equal(d->ent[0].label[1], 0);
	assert_int_equal(d->ent[0].label[2], 1);
	assert_int_equal(d->ent[0].label[3], 0); /* 00:01:30 */
	assert_int_equal(d->ent[0].label[4], 1); /* the end is inclusive */
	assert_int_equal(d->ent[0].label[5], 0);
	fv_dataset_free(d);
}

static void test_dataset_errors(void **state)
{
	static const struct {
		const char *manifest, *want;
	} cases[] = {
		{ "[entity.m]\ntrain = x1.csv\ntest = x2.csv\nlabels = xl.csv\n",
		  "x1.csv:3: column 2: 'abc' is not a number" },
		{ "[dataset]\ndelimiter = semicolon\n[entity.m]\ntrain = x3.csv\ntest = x2.csv\n"
		  "labels = xl.csv\n",
		  "x3.csv:2: column 1: '1,5' is not a number (decimal comma? set decimal = comma)" },
		{ "[entity.m]\ntrain = x2.csv\ntest = x2.csv\nlabels = xl2.csv\n",
		  "[entity.m]: 3 labels in the label file(s), but 2 test rows" },
		{ "[dataset]\nfeatures = a, nope\n[entity.m]\ntrain = x2.csv\ntest = x2.csv\n"
		  "labels = xl.csv\n",
		  "x2.csv:1: features: no column 'nope'" },
		{ "[entity.m]\ntrain = x2.csv\ntest = x4.csv\nlabels = xl.csv\n",
		  "x4.csv:1: 3 feature columns, but the first file has 2" },
		{ "[dataset]\ntimestamp = a\n[entity.m]\ntrain = x2.csv\ntest = x2.csv\nlabels = xl.csv\n",
		  "x2.csv:2: column 1: '1' is not a timestamp" },
		{ "[entity.m]\ntrain = x2.csv\ntest = x5.csv\nlabels = xl.csv\n",
		  "x5.csv:3: 1 fields, column 2 is needed" },
		{ "[entity.m]\ntrain = x2.csv\ntest = x6.csv\nlabels = xl.csv\n",
		  "x6.csv:3: 3 fields, but line 1 has 2 (a delimiter inside an unquoted field?" },
		{ "[dataset]\nfeatures = a, b\n[entity.m]\ntrain = x2.csv\ntest = x7.csv\n"
		  "labels = xl.csv\n",
		  "x7.csv:2: 2 fields, but line 1 has 3" },
		{ "[dataset]\nlabel = y\n[entity.m]\nfile = x8.csv\ntrain_rows = 1-1\n"
		  "test_rows = 2-\n",
		  "x8.csv:4: test row without a label (column 'y' is empty)" },
		{ "[entity.m]\ntrain = x9.csv\ntest = x2.csv\nlabels = xl.csv\n",
		  "[entity.m]: 0 training and 2 test rows: both are needed" },
		{ "[entity.m]\ntrain = x2.csv\ntest = missing.csv\nlabels = xl.csv\n",
		  "missing.csv: cannot open" },
		{ "[entity.m]\nfile = x2.csv\ntrain_rows = 1-2\ntest_rows = 9-x\nlabels = xl.csv\n",
		  "train_rows = '1-2', test_rows = '9-x': expected ranges" },
		{ "[dataset]\nlabel_windows = xw.json\nlabel_key = k\n[entity.m]\ntrain = x2.csv\n"
		  "test = x2.csv\n",
		  "[entity.m]: label_windows needs a timestamp column" },
	};
	char err[1024];

	(void)state;
	put("x1.csv", "a,b\n1,2\n3,abc\n");
	put("x2.csv", "a,b\n1,2\n3,4\n");
	put("x3.csv", "a;b\n1,5;2\n");
	put("x4.csv", "a,b,c\n1,2,3\n");
	put("x5.csv", "a,b\n1,2\n3\n");
	put("x6.csv", "a,b\r\n1,2\n3,4,5\r\n");        /* one field too many */
	put("x7.csv", "a,b,c\n1,2\n3,4,5\n");           /* one too few, beyond the features */
	put("x8.csv", "a,b,y\n1,2,0\n3,4,1\n5,6,\n"); /* an empty label cell */
	put("x9.csv", "a,b\n");                          /* a header, no rows */
	put("xl.csv", "0\n1\n");
	put("xl2.csv", "0\n1\n0\n");
	for (size_t i = 0; i < FV_ARRAY_SIZE(cases); i++) {
		int r;
		struct fv_dataset *d = load(cases[i].manifest, err, sizeof(err), &r);

		assert_null(d);
		assert_true(r < 0);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_quirks),     cmocka_unit_test(test_csv_semicolon),
		cmocka_unit_test(test_csv_errors),     cmocka_unit_test(test_csv_number),
		cmocka_unit_test(test_range),          cmocka_unit_test(test_manifest),
		cmocka_unit_test(test_manifest_errors), cmocka_unit_test(test_dataset_files),
		cmocka_unit_test(test_dataset_columns), cmocka_unit_test(test_dataset_windows),
		cmocka_unit_test(test_dataset_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
