/* CSV reader for real exports: a small state machine over a buffered
 * stream, one record at a time (files of any length, memory bounded by the
 * largest record). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fedvigil/data.h"
#include "fedvigil/util.h"

#define CHUNK (64 << 10)

struct fv_csv {
	FILE *f;
	char path[FV_DS_PATH_MAX];
	char delim;
	unsigned char buf[CHUNK]; /* read buffer */
	size_t pos, len;
	int pushback;            /* a character read ahead, or -1 */
	int line;                /* current line (1-based) */
	char *text;              /* field bytes of the record, NUL-separated */
	size_t text_len, text_cap;
	size_t *starts;          /* offsets of the fields in text */
	char **fields;           /* pointers handed out */
	size_t cap_fields;
};

static int fill(struct fv_csv *c)
{
	c->len = fread(c->buf, 1, sizeof(c->buf), c->f);
	c->pos = 0;
	return c->len > 0 ? 0 : -1;
}

/* Next byte, or -1 at the end (-2 on a read error). */
static int get(struct fv_csv *c)
{
	int ch;

	if (c->pushback >= 0) {
		ch = c->pushback;
		c->pushback = -1;
		return ch;
	}
	if (c->pos >= c->len && fill(c) < 0)
		return ferror(c->f) ? -2 : -1;
	return c->buf[c->pos++];
}

/* Count candidate delimiters on the first line (in the buffer as read). */
static char detect(const struct fv_csv *c)
{
	size_t n_comma = 0, n_semi = 0, n_tab = 0;
	bool quoted = false;

	for (size_t i = c->pos; i < c->len; i++) {
		unsigned char ch = c->buf[i];

		if (ch == '"')
			quoted = !quoted;
		else if (!quoted && (ch == '\n' || ch == '\r'))
			break;
		else if (!quoted && ch == ',')
			n_comma++;
		else if (!quoted && ch == ';')
			n_semi++;
		else if (!quoted && ch == '\t')
			n_tab++;
	}
	if (n_semi > n_comma && n_semi >= n_tab)
		return ';';
	if (n_tab > n_comma && n_tab > n_semi)
		return '\t';
	return ',';
}

struct fv_csv *fv_csv_open(const char *path, char delim, char *err, size_t errlen)
{
	struct fv_csv *c;

	if (delim && delim != ',' && delim != ';' && delim != '\t' && delim != '|') {
		snprintf(err, errlen, "%s: unsupported delimiter '%c' (, ; tab |)", path, delim);
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	fv_strlcpy(c->path, path, sizeof(c->path));
	c->pushback = -1;
	c->line = 1;
	c->f = fopen(path, "re");
	if (!c->f) {
		int e = errno;

		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		free(c);
		errno = e;
		return NULL;
	}
	fill(c);
	if (c->len >= 3 && memcmp(c->buf, "\xEF\xBB\xBF", 3) == 0)
		c->pos = 3; /* UTF-8 byte order mark */
	c->delim = delim ? delim : detect(c);
	return c;
}

void fv_csv_close(struct fv_csv *c)
{
	if (!c)
		return;
	if (c->f)
		fclose(c->f);
	free(c->text);
	free(c->starts);
	free(c->fields);
	free(c);
}

char fv_csv_delim(const struct fv_csv *c)
{
	return c->delim;
}

static int put(struct fv_csv *c, char ch)
{
	if (c->text_len + 1 >= c->text_cap) {
		size_t cap = c->text_cap ? c->text_cap * 2 : 4096;
		char *t;

		if (cap > (size_t)FV_CSV_MAX_FIELDS * 64 + FV_CSV_MAX_FIELD)
			return -E2BIG;
		t = realloc(c->text, cap);
		if (!t)
			return -ENOMEM;
		c->text = t;
		c->text_cap = cap;
	}
	c->text[c->text_len++] = ch;
	return 0;
}

/* End the current field: trim trailing blanks of an unquoted one (keep
 * `keep` bytes that came from inside quotes), NUL-terminate, record it. */
static int end_field(struct fv_csv *c, size_t n_fields, size_t keep)
{
	size_t start = c->starts[n_fields];
	int r;

	while (c->text_len > start + keep &&
	       (c->text[c->text_len - 1] == ' ' ||
		(c->text[c->text_len - 1] == '\t' && c->delim != '\t')))
		c->text_len--;
	if (c->text_len - start > FV_CSV_MAX_FIELD)
		return -E2BIG;
	r = put(c, '\0');
	return r;
}

static int begin_field(struct fv_csv *c, size_t n_fields)
{
	if (n_fields >= FV_CSV_MAX_FIELDS)
		return -E2BIG;
	if (n_fields >= c->cap_fields) {
		size_t cap = c->cap_fields ? c->cap_fields * 2 : 64;
		size_t *s = realloc(c->starts, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		c->starts = s;
		char **f = realloc(c->fields, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		c->fields = f;
		c->cap_fields = cap;
	}
	c->starts[n_fields] = c->text_len;
	return 0;
}

static bool blank(const struct fv_csv *c, int ch)
{
	return ch == ' ' || (ch == '\t' && c->delim != '\t');
}

/* The character after '\r': a following '\n' belongs to the same line end. */
static void eat_lf(struct fv_csv *c)
{
	int ch = get(c);

	if (ch != '\n' && ch >= 0)
		c->pushback = ch;
}

int fv_csv_next(struct fv_csv *c, char ***ret_fields, int *ret_line, char *err, size_t errlen)
{
	enum { START, UNQUOTED, QUOTED, QUOTE, AFTER } st;
	size_t n;
	size_t quoted_len = 0; /* bytes of the current field that came from quotes */
	bool any_quote;
	int ch, r = 0, rec_line;

again:
	n = 0;
	c->text_len = 0;
	any_quote = false;
	st = START;
	rec_line = c->line;
	if ((r = begin_field(c, 0)) < 0)
		goto fail;
	for (;;) {
		ch = get(c);
		if (ch == -2) {
			snprintf(err, errlen, "%s:%d: read error: %s", c->path, c->line,
				 strerror(errno));
			return -EIO;
		}
		if (st == QUOTED) {
			if (ch == -1) {
				snprintf(err, errlen, "%s:%d: unterminated quoted field (opened on line %d)",
					 c->path, c->line, rec_line);
				return -EBADMSG;
			}
			if (ch == '"') {
				st = QUOTE;
				continue;
			}
			if (ch == '\r' || ch == '\n') {
				if (ch == '\r')
					eat_lf(c);
				c->line++;
				ch = '\n'; /* a line break inside quotes reads as LF */
			}
			if ((r = put(c, (char)ch)) < 0)
				goto fail;
			quoted_len++;
			continue;
		}
		if (st == QUOTE && ch == '"') { /* "" inside quotes */
			if ((r = put(c, '"')) < 0)
				goto fail;
			quoted_len++;
			st = QUOTED;
			continue;
		}
		if (ch == -1 || ch == '\n' || ch == '\r' || ch == c->delim) {
			if ((r = end_field(c, n, st == QUOTE || st == AFTER ? quoted_len : 0)) < 0)
				goto fail;
			n++;
			if (ch == c->delim) {
				if ((r = begin_field(c, n)) < 0)
					goto fail;
				st = START;
				quoted_len = 0;
				continue;
			}
			if (ch == '\r')
				eat_lf(c);
			if (ch != -1)
				c->line++;
			break;
		}
		switch (st) {
		case START:
			if (blank(c, ch))
				continue;
			if (ch == '"') {
				st = QUOTED;
				any_quote = true;
				quoted_len = 0;
				continue;
			}
			st = UNQUOTED;
			/* fall through */
		case UNQUOTED:
			if ((r = put(c, (char)ch)) < 0)
				goto fail;
			continue;
		case QUOTE:
		case AFTER:
			if (blank(c, ch)) {
				st = AFTER;
				continue;
			}
			snprintf(err, errlen,
				 "%s:%d: field %zu: text after a closing quote (write \"\" for a quote "
				 "inside a quoted field)",
				 c->path, c->line, n + 1);
			return -EBADMSG;
		case QUOTED:
			break; /* handled above */
		}
	}
	/* End of file right after the last line end, or a blank line. */
	if (n == 1 && !any_quote && c->text[c->starts[0]] == '\0') {
		if (ch == -1)
			return 0;
		goto again;
	}
	for (size_t i = 0; i < n; i++)
		c->fields[i] = c->text + c->starts[i];
	*ret_fields = c->fields;
	*ret_line = rec_line;
	return (int)n;
fail:
	if (r == -E2BIG)
		snprintf(err, errlen, "%s:%d: record too large (at most %d fields of %d bytes)",
			 c->path, rec_line, FV_CSV_MAX_FIELDS, FV_CSV_MAX_FIELD);
	else
		snprintf(err, errlen, "%s:%d: %s", c->path, rec_line, fv_strerror(r));
	return r;
}

int fv_csv_number(const char *s, char decimal, double *ret)
{
	static const char *const missing[] = { "nan", "-nan", "na", "n/a", "null", "none", NULL };
	char buf[128], *end;
	size_t len = strlen(s);
	double v;

	if (len == 0)
		return -ENODATA;
	for (int i = 0; missing[i]; i++)
		if (strcasecmp(s, missing[i]) == 0)
			return -ENODATA;
	if (len >= sizeof(buf))
		return -EBADMSG;
	memcpy(buf, s, len + 1);
	if (decimal == ',') {
		char *comma = strchr(buf, ',');

		if (comma && strchr(buf, '.'))
			return -EBADMSG; /* "1.234,5": thousands separators are not guessed */
		if (comma)
			*comma = '.';
	}
	/* strtod takes hex, "inf" and "nan(...)": only plain decimals here. */
	for (const char *p = buf; *p; p++)
		if (!strchr("0123456789+-.eE", *p))
			return strncasecmp(buf, "inf", 3) == 0 || strncasecmp(buf + 1, "inf", 3) == 0
				       ? -ERANGE
				       : -EBADMSG;
	errno = 0;
	v = strtod(buf, &end);
	if (end == buf || *end != '\0')
		return -EBADMSG;
	if (errno == ERANGE && fabs(v) > 1.0)
		return -ERANGE;
	if (!isfinite(v))
		return -ERANGE;
	*ret = v;
	return 0;
}
