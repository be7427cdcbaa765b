/* Loading a manifest's data: every entity's files read into one timeline
 * of rows (features, timestamp, role, label), with errors that name the
 * file, line and column. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fedvigil/data.h"
#include "fedvigil/util.h"

#define LABEL_FILE_MAX (64u << 20)

/* Rows of one file as read, before they join the timeline. */
struct rows {
	size_t n, cap;
	float *x;       /* (n, C) */
	int64_t *ts;    /* (n), INT64_MIN = none */
	int8_t *label;  /* (n), -1 = none */
	int *line;      /* (n) source line */
	uint64_t empty; /* empty feature cells */
};

struct cols {
	int ts;        /* column index or -1 */
	int label;     /* column index or -1 */
	uint32_t C;    /* features */
	int *feat;     /* (C) column indices */
	int max_col;   /* largest index needed */
};

static void rows_free(struct rows *r)
{
	free(r->x);
	free(r->ts);
	free(r->label);
	free(r->line);
	memset(r, 0, sizeof(*r));
}

static int rows_grow(struct rows *r, uint32_t C)
{
	size_t cap = r->cap ? r->cap * 2 : 1024;
	float *x = realloc(r->x, cap * C * sizeof(float));
	int64_t *ts;
	int8_t *lab;
	int *line;

	if (!x)
		return -ENOMEM;
	r->x = x;
	ts = realloc(r->ts, cap * sizeof(*ts));
	if (!ts)
		return -ENOMEM;
	r->ts = ts;
	lab = realloc(r->label, cap);
	if (!lab)
		return -ENOMEM;
	r->label = lab;
	line = realloc(r->line, cap * sizeof(*line));
	if (!line)
		return -ENOMEM;
	r->line = line;
	r->cap = cap;
	return 0;
}

/* Channel names: [A-Za-z0-9_.-], others become '_'. */
static void sanitize(char *dst, size_t size, const char *src, int col)
{
	size_t j = 0;

	for (size_t i = 0; src[i] && j + 1 < size; i++) {
		char ch = src[i];

		dst[j++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
					   (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
					   ch == '-'
				   ? ch
				   : '_';
	}
	dst[j] = '\0';
	if (!j)
		snprintf(dst, size, "c%d", col + 1);
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* A column reference: a header name, else a 1-based number. -1 if none. */
static int find_col(const char *ref, char **hdr, int n_hdr)
{
	for (int i = 0; hdr && i < n_hdr; i++)
		if (strcmp(hdr[i], ref) == 0)
			return i;
	if (all_digits(ref) && strlen(ref) < 6) {
		int c = atoi(ref);

		return c >= 1 && c <= FV_CSV_MAX_FIELDS ? c - 1 : -1;
	}
	return -1;
}

/* Split a feature list at commas outside double quotes; items trimmed,
 * quotes removed. Calls fn for each; stops at its first error. */
static int split_list(const char *s, int (*fn)(void *, const char *), void *ud)
{
	char item[1024];
	size_t j = 0;
	bool q = false;

	for (const char *p = s;; p++) {
		if (*p == '"') {
			q = !q;
			continue;
		}
		if (*p == '\0' || (*p == ',' && !q)) {
			size_t a = 0;
			int r;

			item[j] = '\0';
			while (item[a] == ' ' || item[a] == '\t')
				a++;
			while (j > a && (item[j - 1] == ' ' || item[j - 1] == '\t'))
				item[--j] = '\0';
			if (item[a] && (r = fn(ud, item + a)) < 0)
				return r;
			j = 0;
			if (*p == '\0')
				break;
			continue;
		}
		if (j + 1 >= sizeof(item))
			return -E2BIG;
		item[j++] = *p;
	}
	return 0;
}

struct featctx {
	struct cols *c;
	char **hdr;
	int n_hdr;
	char *err;
	size_t errlen;
	const char *where;
};

static int add_feat(struct cols *c, int col)
{
	int *f;

	if (c->C >= 4096)
		return -E2BIG;
	f = realloc(c->feat, (c->C + 1) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	c->feat = f;
	c->feat[c->C++] = col;
	if (col > c->max_col)
		c->max_col = col;
	return 0;
}

static int feat_item(void *ud, const char *item)
{
	struct featctx *fc = ud;
	int col = find_col(item, fc->hdr, fc->n_hdr);
	const char *dash;

	if (col >= 0)
		return add_feat(fc->c, col);
	dash = strchr(item, '-');
	if (dash && dash != item) {
		char a[16], b[16];
		size_t la = (size_t)(dash - item);

		if (la < sizeof(a) && strlen(dash + 1) < sizeof(b)) {
			memcpy(a, item, la);
			a[la] = '\0';
			strcpy(b, dash + 1);
			if (all_digits(a) && all_digits(b)) {
				int lo = atoi(a), hi = atoi(b);

				if (lo >= 1 && hi >= lo && hi <= FV_CSV_MAX_FIELDS) {
					for (int k = lo; k <= hi; k++) {
						int r = add_feat(fc->c, k - 1);

						if (r < 0)
							return r;
					}
					return 0;
				}
			}
		}
	}
	snprintf(fc->err, fc->errlen, "%s: features: no column '%s' (a header name, a 1-based "
		 "column number or a range like 2-20)", fc->where, item);
	return -EINVAL;
}

/* Work out the columns from the first record of a file. */
static int resolve_cols(const struct fv_ds_format *f, char **hdr, int n_hdr, bool have_hdr,
			const char *where, struct cols *c, char *err, size_t errlen)
{
	char **names = have_hdr ? hdr : NULL;
	int n = have_hdr ? n_hdr : 0;

	memset(c, 0, sizeof(*c));
	c->ts = c->label = -1;
	c->max_col = -1;
	if (f->timestamp[0]) {
		c->ts = find_col(f->timestamp, names, n);
		if (c->ts < 0) {
			snprintf(err, errlen, "%s: timestamp = '%s': no such column", where,
				 f->timestamp);
			return -EINVAL;
		}
		c->max_col = c->ts;
	}
	if (f->label[0]) {
		c->label = find_col(f->label, names, n);
		if (c->label < 0) {
			snprintf(err, errlen, "%s: label = '%s': no such column", where, f->label);
			return -EINVAL;
		}
		c->max_col = FV_MAX(c->max_col, c->label);
	}
	if (f->features[0]) {
		struct featctx fc = { c, names, n, err, errlen, where };
		int r = split_list(f->features, feat_item, &fc);

		if (r == -E2BIG || r == -ENOMEM)
			snprintf(err, errlen, "%s: features: %s", where, fv_strerror(r));
		if (r < 0)
			return r;
	} else {
		for (int i = 0; i < n_hdr; i++)
			if (i != c->ts && i != c->label && add_feat(c, i) < 0)
				return -ENOMEM;
	}
	if (c->C == 0) {
		snprintf(err, errlen, "%s: no feature columns", where);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < c->C; i++)
		if (c->feat[i] == c->ts || c->feat[i] == c->label) {
			snprintf(err, errlen, "%s: column %d is both a feature and the %s", where,
				 c->feat[i] + 1, c->feat[i] == c->ts ? "timestamp" : "label");
			return -EINVAL;
		}
	return 0;
}

static int parse_ts(const char *s, enum fv_ds_tsfmt fmt, int64_t *ret)
{
	double v;

	if (fmt == FV_DS_TS_ISO8601)
		return fv_iso8601_parse(s, ret) < 0 ? -EBADMSG : 0;
	if (fv_csv_number(s, '.', &v) < 0)
		return -EBADMSG;
	if (fmt == FV_DS_TS_SECONDS)
		v *= 1000.0;
	if (!(v > -4e15 && v < 4e15)) /* within +-100000 years */
		return -ERANGE;
	*ret = (int64_t)llround(v);
	return 0;
}

/* Read one file: sets *io_C and *io_names from its columns when not yet set
 * (the first file), else checks the feature count matches. */
static int read_file(const char *path, const struct fv_ds_format *f, uint32_t *io_C,
		     char (**io_names)[64], struct rows *out, char *err, size_t errlen)
{
	struct fv_csv *csv;
	struct cols c;
	char **fld;
	int n, line, r = 0, n_first = 0, line_first = 0;
	bool first = true, have_hdr = false;
	char where[FV_DS_PATH_MAX + 32];

	memset(&c, 0, sizeof(c));
	memset(out, 0, sizeof(*out));
	csv = fv_csv_open(path, f->delim, err, errlen);
	if (!csv)
		return errno ? -errno : -EIO;
	while ((n = fv_csv_next(csv, &fld, &line, err, errlen)) > 0) {
		if (first) {
			first = false;
			n_first = n;
			line_first = line;
			have_hdr = f->header == 1;
			if (f->header < 0) {
				/* A header when some cell is neither a number, nor empty,
				 * nor a timestamp. */
				for (int i = 0; i < n && !have_hdr; i++) {
					double v;
					int64_t t;

					have_hdr = fv_csv_number(fld[i], f->decimal, &v) == -EBADMSG &&
						   fv_iso8601_parse(fld[i], &t) < 0;
				}
			}
			snprintf(where, sizeof(where), "%s:%d", path, line);
			r = resolve_cols(f, fld, n, have_hdr, where, &c, err, errlen);
			if (r < 0)
				goto out;
			if (!*io_names) {
				*io_names = calloc(c.C, sizeof(**io_names));
				if (!*io_names) {
					r = -ENOMEM;
					goto out;
				}
				for (uint32_t i = 0; i < c.C; i++) {
					int col = c.feat[i];

					if (have_hdr && col < n)
						sanitize((*io_names)[i], 64, fld[col], col);
					else
						snprintf((*io_names)[i], 64, "c%d", col + 1);
				}
				*io_C = c.C;
			} else if (c.C != *io_C) {
				snprintf(err, errlen, "%s: %u feature columns, but the first file has %u",
					 where, c.C, *io_C);
				r = -EINVAL;
				goto out;
			}
			if (have_hdr)
				continue;
		}
		/* A row that is longer or shorter than the first one is
		 * malformed (a delimiter in an unquoted field, a cut-off line):
		 * its columns would not mean what the header says. */
		if (n <= c.max_col) {
			snprintf(err, errlen, "%s:%d: %d fields, column %d is needed", path, line, n,
				 c.max_col + 1);
			r = -EBADMSG;
			goto out;
		}
		if (n != n_first) {
			snprintf(err, errlen,
				 "%s:%d: %d fields, but line %d has %d (a delimiter inside an "
				 "unquoted field? quote it)",
				 path, line, n, line_first, n_first);
			r = -EBADMSG;
			goto out;
		}
		if (out->n == out->cap && (r = rows_grow(out, c.C)) < 0)
			goto out;
		float *x = out->x + out->n * c.C;

		for (uint32_t i = 0; i < c.C; i++) {
			int col = c.feat[i];
			double v;

			r = fv_csv_number(fld[col], f->decimal, &v);
			if (r == -ENODATA) {
				x[i] = NAN;
				out->empty++;
			} else if (r < 0 || fabs(v) > 3.4e38) {
				snprintf(err, errlen, "%s:%d: column %d: '%.40s' is not a number%s", path,
					 line, col + 1, fld[col],
					 f->decimal == '.' && strchr(fld[col], ',')
						 ? " (decimal comma? set decimal = comma)"
						 : "");
				r = -EBADMSG;
				goto out;
			} else {
				x[i] = (float)v;
			}
		}
		out->ts[out->n] = INT64_MIN;
		if (c.ts >= 0 && (r = parse_ts(fld[c.ts], f->ts_format, &out->ts[out->n])) < 0) {
			snprintf(err, errlen, "%s:%d: column %d: '%.40s' is not a timestamp (%s)", path,
				 line, c.ts + 1, fld[c.ts],
				 f->ts_format == FV_DS_TS_ISO8601 ? "ISO-8601 expected, e.g. "
								    "2026-01-02 03:04:05"
				 : f->ts_format == FV_DS_TS_SECONDS ? "Unix seconds expected"
								    : "Unix milliseconds expected");
			r = -EBADMSG;
			goto out;
		}
		out->label[out->n] = -1;
		if (c.label >= 0) {
			double v;
			int lr = fv_csv_number(fld[c.label], '.', &v);

			if (lr == 0)
				out->label[out->n] = v != 0.0;
			else if (lr != -ENODATA) {
				snprintf(err, errlen, "%s:%d: column %d: label '%.40s' is not a number", path,
					 line, c.label + 1, fld[c.label]);
				r = -EBADMSG;
				goto out;
			}
		}
		out->line[out->n] = line;
		out->n++;
	}
	if (n < 0) {
		r = n;
		goto out;
	}
	if (first) {
		snprintf(err, errlen, "%s: empty file", path);
		r = -ENODATA;
		goto out;
	}
	r = 0;
out:
	fv_csv_close(csv);
	free(c.feat);
	if (r < 0)
		rows_free(out);
	return r;
}

/* Label files: one value per line (a non-numeric first line is a header). */
static int read_labels(const char *path, int8_t **io, size_t *io_n, char *err, size_t errlen)
{
	struct fv_csv *csv = fv_csv_open(path, ',', err, errlen);
	char **fld;
	int n, line;
	bool first = true;

	if (!csv)
		return -EIO;
	while ((n = fv_csv_next(csv, &fld, &line, err, errlen)) > 0) {
		double v;
		int r = fv_csv_number(fld[0], '.', &v);
		int8_t *p;

		if (r < 0 && first) {
			first = false;
			continue;
		}
		first = false;
		if (r < 0) {
			snprintf(err, errlen, "%s:%d: label '%.40s' is not a number", path, line, fld[0]);
			fv_csv_close(csv);
			return -EBADMSG;
		}
		if (*io_n % 4096 == 0) {
			p = realloc(*io, *io_n + 4096);
			if (!p) {
				fv_csv_close(csv);
				return -ENOMEM;
			}
			*io = p;
		}
		(*io)[(*io_n)++] = v != 0.0;
	}
	fv_csv_close(csv);
	return n < 0 ? n : 0;
}

/* NAB combined_windows.json: { "<key>": [["start", "end"], ...], ... }. */
static int apply_windows(struct fv_ds_entity *e, const struct fv_ds_format *f, char *err,
			 size_t errlen)
{
	void *buf = NULL;
	size_t len = 0;
	cJSON *root = NULL, *list, *w;
	int r = fv_file_read(f->label_windows, LABEL_FILE_MAX, &buf, &len);

	if (r < 0) {
		snprintf(err, errlen, "%s: cannot read: %s", f->label_windows, fv_strerror(r));
		return r;
	}
	root = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!root) {
		snprintf(err, errlen, "%s: not valid JSON", f->label_windows);
		return -EBADMSG;
	}
	list = cJSON_GetObjectItemCaseSensitive(root, f->label_key);
	if (!cJSON_IsArray(list)) {
		snprintf(err, errlen, "%s: no list of windows under the key '%s'", f->label_windows,
			 f->label_key);
		r = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < e->n; i++)
		e->label[i] = 0;
	cJSON_ArrayForEach(w, list)
	{
		cJSON *a = cJSON_GetArrayItem(w, 0), *b = cJSON_GetArrayItem(w, 1);
		int64_t t0, t1;

		if (!cJSON_IsString(a) || !cJSON_IsString(b) ||
		    fv_iso8601_parse(a->valuestring, &t0) < 0 ||
		    fv_iso8601_parse(b->valuestring, &t1) < 0) {
			snprintf(err, errlen, "%s: '%s': a window is not [\"start\", \"end\"] ISO-8601",
				 f->label_windows, f->label_key);
			r = -EBADMSG;
			goto out;
		}
		for (size_t i = 0; i < e->n; i++)
			if (e->ts[i] >= t0 && e->ts[i] <= t1)
				e->label[i] = 1;
	}
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

static int append(struct fv_ds_entity *e, uint32_t C, const struct rows *rw, size_t lo,
		  size_t hi, uint8_t role_all, size_t tr_lo, size_t tr_hi, size_t te_lo,
		  size_t te_hi)
{
	size_t n = e->n + rw->n;
	float *x = realloc(e->x, (n ? n : 1) * C * sizeof(float));
	int64_t *ts;
	uint8_t *role;
	int8_t *lab;

	(void)lo;
	(void)hi;
	if (!x)
		return -ENOMEM;
	e->x = x;
	if (!(ts = realloc(e->ts, (n ? n : 1) * sizeof(*ts))))
		return -ENOMEM;
	e->ts = ts;
	if (!(role = realloc(e->role, n ? n : 1)))
		return -ENOMEM;
	e->role = role;
	if (!(lab = realloc(e->label, n ? n : 1)))
		return -ENOMEM;
	e->label = lab;
	if (rw->n) /* a file with a header only has no rows (rw->x is NULL) */
		memcpy(e->x + e->n * C, rw->x, rw->n * C * sizeof(float));
	for (size_t i = 0; i < rw->n; i++) {
		uint8_t ro = role_all;

		if (!role_all)
			ro = (uint8_t)((i >= tr_lo && i < tr_hi ? FV_DS_TRAIN : 0) |
				       (i >= te_lo && i < te_hi ? FV_DS_TEST : 0));
		e->ts[e->n + i] = rw->ts[i];
		e->role[e->n + i] = ro;
		e->label[e->n + i] = rw->label[i];
		e->n_train += (ro & FV_DS_TRAIN) != 0;
		e->n_test += (ro & FV_DS_TEST) != 0;
	}
	e->n = n;
	e->n_empty += rw->empty;
	return 0;
}

int fv_ds_range_parse(const char *s, size_t n, size_t *ret_lo, size_t *ret_hi)
{
	const char *dash = strchr(s, '-');
	size_t b[2] = { 0, n };
	const char *part[2];
	size_t plen[2];

	if (!dash)
		return -EINVAL;
	part[0] = s;
	plen[0] = (size_t)(dash - s);
	part[1] = dash + 1;
	plen[1] = strlen(dash + 1);
	for (int k = 0; k < 2; k++) {
		char buf[32];
		char *end;
		size_t len = plen[k];

		while (len && part[k][0] == ' ') {
			part[k]++;
			len--;
		}
		while (len && part[k][len - 1] == ' ')
			len--;
		if (len == 0)
			continue; /* open end */
		if (len >= sizeof(buf))
			return -EINVAL;
		memcpy(buf, part[k], len);
		buf[len] = '\0';
		if (buf[len - 1] == '%') {
			double p;

			buf[len - 1] = '\0';
			p = strtod(buf, &end);
			if (end == buf || *end || !(p >= 0.0 && p <= 100.0))
				return -EINVAL;
			b[k] = (size_t)llround((double)n * p / 100.0);
		} else {
			unsigned long long v;

			if (!all_digits(buf))
				return -EINVAL;
			v = strtoull(buf, &end, 10);
			if (v < 1 && k == 0)
				return -EINVAL; /* rows are 1-based */
			b[k] = k == 0 ? (size_t)v - 1 : (size_t)v;
		}
	}
	if (b[1] > n)
		b[1] = n;
	if (b[0] > b[1])
		return -EINVAL;
	*ret_lo = b[0];
	*ret_hi = b[1];
	return 0;
}

static void entity_free(struct fv_ds_entity *e)
{
	free(e->x);
	free(e->ts);
	free(e->role);
	free(e->label);
}

static int load_entity(const struct fv_manifest *m, const struct fv_ds_entity_spec *s,
		       struct fv_dataset *d, struct fv_ds_entity *e, int64_t period_ms, char *err,
		       size_t errlen)
{
	int8_t *labels = NULL;
	size_t n_labels = 0;
	int r = 0;

	fv_strlcpy(e->name, s->name, sizeof(e->name));
	for (uint32_t f = 0; f < s->n_files; f++) {
		struct rows rw;
		size_t tr_lo = 0, tr_hi = 0, te_lo = 0, te_hi = 0;
		size_t before = e->n;

		r = read_file(s->files[f].path, &s->fmt, &d->C, &d->channels, &rw, err, errlen);
		if (r < 0)
			return r;
		if (s->files[f].role == 0) {
			if (fv_ds_range_parse(s->train_rows, rw.n, &tr_lo, &tr_hi) < 0 ||
			    fv_ds_range_parse(s->test_rows, rw.n, &te_lo, &te_hi) < 0) {
				snprintf(err, errlen,
					 "%s: [entity.%s] train_rows = '%s', test_rows = '%s': expected "
					 "ranges like 1-3404 or 15%%-100%% (1-based rows, %zu in %s)",
					 m->path, s->name, s->train_rows, s->test_rows, rw.n,
					 s->files[f].path);
				rows_free(&rw);
				return -EINVAL;
			}
		}
		r = append(e, d->C, &rw, 0, rw.n, s->files[f].role, tr_lo, tr_hi, te_lo, te_hi);
		/* A label column with an empty cell on a test row: name the
		 * file and line (label files and windows are checked below). */
		if (r == 0 && s->fmt.label[0] && !s->n_labels && !s->fmt.label_windows[0])
			for (size_t i = 0; i < rw.n; i++)
				if ((e->role[before + i] & FV_DS_TEST) && e->label[before + i] < 0) {
					snprintf(err, errlen,
						 "%s:%d: test row without a label (column '%s' is "
						 "empty)",
						 s->files[f].path, rw.line[i], s->fmt.label);
					r = -EINVAL;
					break;
				}
		/* Rows stamped earlier than the one before (a clock stepped back)
		 * are kept: the agent takes them as they come (the last reading
		 * wins, no tick of their own). Counted for the report. */
		if (r == 0 && s->fmt.timestamp[0])
			for (size_t i = 0; i < rw.n; i++) {
				size_t k = before + i;

				if (k > 0 && e->ts[k] < e->ts[k - 1] && e->n_backward++ == 0)
					snprintf(e->backward_at, sizeof(e->backward_at), "%s:%d",
						 s->files[f].path, rw.line[i]);
			}
		rows_free(&rw);
		if (r < 0) {
			if (r == -ENOMEM)
				snprintf(err, errlen, "%s: out of memory", s->files[f].path);
			return r;
		}
	}
	if (!s->fmt.timestamp[0])
		for (size_t i = 0; i < e->n; i++)
			e->ts[i] = FV_DS_DEFAULT_START_MS + (int64_t)i * period_ms;
	if (s->n_labels) {
		size_t k = 0;

		for (uint32_t l = 0; l < s->n_labels; l++) {
			r = read_labels(s->labels[l], &labels, &n_labels, err, errlen);
			if (r < 0)
				goto out;
		}
		if (n_labels != e->n_test) {
			snprintf(err, errlen,
				 "[entity.%s]: %zu labels in the label file(s), but %zu test rows",
				 s->name, n_labels, e->n_test);
			r = -EINVAL;
			goto out;
		}
		for (size_t i = 0; i < e->n; i++)
			if (e->role[i] & FV_DS_TEST)
				e->label[i] = labels[k++];
	} else if (s->fmt.label_windows[0]) {
		if (!s->fmt.timestamp[0]) {
			snprintf(err, errlen, "[entity.%s]: label_windows needs a timestamp column",
				 s->name);
			r = -EINVAL;
			goto out;
		}
		r = apply_windows(e, &s->fmt, err, errlen);
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; i < e->n; i++)
		if ((e->role[i] & FV_DS_TEST) && e->label[i] < 0) {
			snprintf(err, errlen, "[entity.%s]: test row %zu has no label", s->name, i + 1);
			r = -EINVAL;
			goto out;
		}
	if (e->n_train == 0 || e->n_test == 0) {
		snprintf(err, errlen, "[entity.%s]: %zu training and %zu test rows: both are needed",
			 s->name, e->n_train, e->n_test);
		r = -EINVAL;
		goto out;
	}
out:
	free(labels);
	return r;
}

int fv_dataset_load(const struct fv_manifest *m, int64_t period_ms, struct fv_dataset **ret,
		    char *err, size_t errlen)
{
	struct fv_dataset *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	fv_strlcpy(d->name, m->name, sizeof(d->name));
	d->period_ms = m->period_ms;
	if (m->period_ms > 0)
		period_ms = m->period_ms;
	if (period_ms <= 0) {
		snprintf(err, errlen, "no period: set [dataset] period_ms");
		free(d);
		return -EINVAL;
	}
	d->ent = calloc(m->n_entities, sizeof(*d->ent));
	if (!d->ent) {
		free(d);
		return -ENOMEM;
	}
	d->n_entities = m->n_entities;
	d->have_ts = m->ent[0].fmt.timestamp[0] != '\0';
	for (uint32_t i = 0; i < m->n_entities; i++) {
		if ((m->ent[i].fmt.timestamp[0] != '\0') != d->have_ts) {
			snprintf(err, errlen,
				 "%s: [entity.%s]: a timestamp column for some entities but not for "
				 "others",
				 m->path, m->ent[i].name);
			r = -EINVAL;
			goto fail;
		}
		r = load_entity(m, &m->ent[i], d, &d->ent[i], period_ms, err, errlen);
		if (r < 0)
			goto fail;
	}
	*ret = d;
	return 0;
fail:
	fv_dataset_free(d);
	return r;
}

void fv_dataset_free(struct fv_dataset *d)
{
	if (!d)
		return;
	for (uint32_t i = 0; i < d->n_entities; i++)
		entity_free(&d->ent[i]);
	free(d->ent);
	free(d->channels);
	free(d);
}
