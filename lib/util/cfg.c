/* Configuration: INI files read with libinih, described by one key table.
 *
 * libinih (Debian's build) neither passes line numbers to the handler
 * (INI_HANDLER_LINENO is 0) nor reports lines longer than INI_MAX_LINE or
 * section names longer than its internal 50-byte buffer: it silently splits
 * or truncates them. So we feed it through ini_parse_stream with our own
 * reader, which counts lines (the handler runs while its line is current)
 * and turns those two cases into errors instead of wrong values.
 *
 * Values are parsed into a scratch buffer and copied into the object only
 * when valid, so a failed fv_cfg_set leaves the object untouched. A failed
 * fv_cfg_load may leave the keys before the bad line applied. */
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "fedvigil/cfg.h"
#include "fedvigil/util.h"

/* libinih's fixed buffers (ini.c: MAX_SECTION; ini.h: INI_MAX_LINE). */
#define INIH_MAX_SECTION 50

/* Largest field a key may describe; STR buffers included. */
#define MAX_FIELD 4096

/* ---- values ---- */

static const char *type_name(enum fv_cfg_type t)
{
	switch (t) {
	case FV_CFG_STR:
		return "string";
	case FV_CFG_INT:
		return "integer";
	case FV_CFG_DOUBLE:
		return "number";
	case FV_CFG_BOOL:
		return "bool";
	case FV_CFG_ENUM:
		return "enum";
	}
	return "?";
}

/* "err|warning|info" into buf. */
static void choices_text(const struct fv_cfg_key *k, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; k->choices && k->choices[i]; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? "|" : "", k->choices[i]);

		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
}

/* A double bound as text: integers exactly ("86400000", "9007199254740991"),
 * others with %g. */
static void bound_text(const struct fv_cfg_key *k, double v, char *buf, size_t len)
{
	if (k->type == FV_CFG_INT || (v == floor(v) && fabs(v) < 1e15))
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%g", v);
}

static void range_text(const struct fv_cfg_key *k, char *buf, size_t len)
{
	char lo[40], hi[40];

	bound_text(k, k->min, lo, sizeof(lo));
	bound_text(k, k->max, hi, sizeof(hi));
	snprintf(buf, len, "%s..%s", lo, hi);
}

static bool field_size_ok(const struct fv_cfg_key *k)
{
	switch (k->type) {
	case FV_CFG_STR:
		return k->size > 0 && k->size <= MAX_FIELD;
	case FV_CFG_INT:
		return k->size == sizeof(long long) || k->size == sizeof(int);
	case FV_CFG_DOUBLE:
		return k->size == sizeof(double);
	case FV_CFG_BOOL:
		return k->size == sizeof(bool) || k->size == sizeof(int);
	case FV_CFG_ENUM:
		return k->size == sizeof(int);
	}
	return false;
}

/* Parse `value` for key k into buf (k->size bytes, the field's image).
 * On failure write the reason (no place, no key) into why. -EINVAL. */
static int parse_value(const struct fv_cfg_key *k, const char *value, unsigned char *buf,
		       char *why, size_t whylen)
{
	char range[96];
	char *end;

	switch (k->type) {
	case FV_CFG_STR: {
		size_t n = strlen(value);

		if (n >= k->size) {
			snprintf(why, whylen, "too long: %zu characters (max %zu)", n, k->size - 1);
			return -EINVAL;
		}
		memset(buf, 0, k->size);
		memcpy(buf, value, n);
		return 0;
	}
	case FV_CFG_INT: {
		long long v;

		range_text(k, range, sizeof(range));
		errno = 0;
		v = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || isspace((unsigned char)value[0])) {
			snprintf(why, whylen, "not an integer (range %s)", range);
			return -EINVAL;
		}
		if (errno == ERANGE || (double)v < k->min || (double)v > k->max) {
			snprintf(why, whylen, "out of range (%s)", range);
			return -EINVAL;
		}
		if (k->size == sizeof(int)) {
			int iv = (int)v;

			if ((long long)iv != v) {
				snprintf(why, whylen, "out of range (%s)", range);
				return -EINVAL;
			}
			memcpy(buf, &iv, sizeof(iv));
		} else {
			memcpy(buf, &v, sizeof(v));
		}
		return 0;
	}
	case FV_CFG_DOUBLE: {
		double v;

		range_text(k, range, sizeof(range));
		v = strtod(value, &end);
		/* No hex floats, no "nan"/"inf", no leading blanks. */
		if (end == value || *end != '\0' || isspace((unsigned char)value[0]) ||
		    strpbrk(value, "xX") || !isfinite(v)) {
			snprintf(why, whylen, "not a number (range %s)", range);
			return -EINVAL;
		}
		if (v < k->min || v > k->max) {
			snprintf(why, whylen, "out of range (%s)", range);
			return -EINVAL;
		}
		memcpy(buf, &v, sizeof(v));
		return 0;
	}
	case FV_CFG_BOOL: {
		static const char *const yes[] = { "true", "yes", "on", "1" };
		static const char *const no[] = { "false", "no", "off", "0" };
		int v = -1;

		for (size_t i = 0; i < FV_ARRAY_SIZE(yes); i++) {
			if (strcasecmp(value, yes[i]) == 0)
				v = 1;
			if (strcasecmp(value, no[i]) == 0)
				v = 0;
		}
		if (v < 0) {
			snprintf(why, whylen, "not a boolean (true|false|yes|no|on|off|1|0)");
			return -EINVAL;
		}
		if (k->size == sizeof(bool)) {
			bool b = v;

			memcpy(buf, &b, sizeof(b));
		} else {
			memcpy(buf, &v, sizeof(v));
		}
		return 0;
	}
	case FV_CFG_ENUM:
		for (int i = 0; k->choices && k->choices[i]; i++)
			if (strcasecmp(value, k->choices[i]) == 0) {
				memcpy(buf, &i, sizeof(i));
				return 0;
			}
		choices_text(k, range, sizeof(range));
		snprintf(why, whylen, "not one of %s", range);
		return -EINVAL;
	}
	snprintf(why, whylen, "unknown key type %d", (int)k->type);
	return -EINVAL;
}

/* Validate and store one value; on failure err gets
 * "<place>: section.name = 'value': why" (strings: no value echoed, it may
 * be a password). */
static int apply(const struct fv_cfg_key *k, void *obj, const char *value, const char *place,
		 char *err, size_t errlen)
{
	unsigned char buf[MAX_FIELD];
	char why[256];
	int r;

	if (!field_size_ok(k)) {
		snprintf(err, errlen, "%s: %s.%s: field size %zu does not fit type %s", place,
			 k->section, k->name, k->size, type_name(k->type));
		return -EINVAL;
	}
	r = parse_value(k, value, buf, why, sizeof(why));
	if (r < 0) {
		if (k->type == FV_CFG_STR)
			snprintf(err, errlen, "%s: %s.%s: %s", place, k->section, k->name, why);
		else
			snprintf(err, errlen, "%s: %s.%s = '%s': %s", place, k->section, k->name,
				 value, why);
		return r;
	}
	memcpy((char *)obj + k->offset, buf, k->size);
	return 0;
}

static const struct fv_cfg_key *find_key(const struct fv_cfg_key *tab, size_t n,
					 const char *section, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tab[i].section, section) == 0 && strcmp(tab[i].name, name) == 0)
			return &tab[i];
	return NULL;
}

static bool has_section(const struct fv_cfg_key *tab, size_t n, const char *section)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tab[i].section, section) == 0)
			return true;
	return false;
}

int fv_cfg_defaults(const struct fv_cfg_key *tab, size_t n, void *obj, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const struct fv_cfg_key *k = &tab[i];
		int r;

		if (!k->section || !k->name || !k->def || !k->section[0] || !k->name[0] ||
		    (k->type == FV_CFG_ENUM && !k->choices) ||
		    ((k->type == FV_CFG_INT || k->type == FV_CFG_DOUBLE) && !(k->min <= k->max))) {
			snprintf(err, errlen, "key table entry %zu (%s.%s) is malformed", i,
				 k->section ? k->section : "?", k->name ? k->name : "?");
			return -EINVAL;
		}
		r = apply(k, obj, k->def, "default", err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- loading ---- */

struct load {
	const struct fv_cfg_key *tab;
	size_t n;
	void *obj;
	const char *path;
	fv_cfg_extra_fn extra;
	void *userdata;
	FILE *f;
	char *line;    /* getline buffer */
	size_t cap;    /* its size */
	int lineno;    /* line being parsed */
	int r;         /* first error, 0 = none */
	int err_line;  /* its line */
	char *err;
	size_t errlen;
};

static void fail(struct load *l, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct load *l, int r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (l->r < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(l->err, l->errlen, "%s:%d: %s", l->path, l->lineno, msg);
	l->r = r;
	l->err_line = l->lineno;
}

/* fgets-like reader for ini_parse_stream: one whole line per call, or NULL
 * at the end, after a read error or after the first error (which stops the
 * parse). */
static char *reader(char *str, int num, void *stream)
{
	struct load *l = stream;
	const char *p;
	ssize_t len;

	if (l->r < 0)
		return NULL;
	errno = 0;
	len = getline(&l->line, &l->cap, l->f);
	if (len < 0)
		return NULL;
	l->lineno++;
	while (len > 0 && (l->line[len - 1] == '\n' || l->line[len - 1] == '\r'))
		l->line[--len] = '\0';
	if (len >= num) {
		fail(l, -EINVAL, "line too long (%zd characters, max %d)", len, num - 1);
		return NULL;
	}
	p = l->line;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '[') {
		const char *close = strchr(p, ']');

		if (close && close - p - 1 >= INIH_MAX_SECTION) {
			fail(l, -EINVAL, "section name too long (max %d characters)",
			     INIH_MAX_SECTION - 1);
			return NULL;
		}
	}
	memcpy(str, l->line, (size_t)len + 1);
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct load *l = user;
	const struct fv_cfg_key *k;
	char place[300];
	int r;

	if (l->r < 0)
		return 0;
	if (!section[0]) {
		fail(l, -EINVAL, "key '%s' before any [section]", name);
		return 0;
	}
	k = find_key(l->tab, l->n, section, name);
	if (k) {
		snprintf(place, sizeof(place), "%s:%d", l->path, l->lineno);
		r = apply(k, l->obj, value, place, l->err, l->errlen);
		if (r < 0) {
			l->r = r;
			l->err_line = l->lineno;
			return 0;
		}
		return 1;
	}
	if (has_section(l->tab, l->n, section)) {
		fail(l, -EINVAL, "unknown key '%s' in section [%s]", name, section);
		return 0;
	}
	if (!l->extra) {
		fail(l, -EINVAL, "unknown section [%s]", section);
		return 0;
	}
	{
		const char *why = NULL;

		r = l->extra(l->userdata, section, name, value, &why);
		if (r < 0) {
			fail(l, r, "[%s] %s = '%s': %s", section, name, value,
			     why ? why : fv_strerror(r));
			return 0;
		}
	}
	return 1;
}

int fv_cfg_load(const struct fv_cfg_key *tab, size_t n, void *obj, const char *path,
		fv_cfg_extra_fn extra, void *userdata, char *err, size_t errlen)
{
	struct load l = { .tab = tab, .n = n, .obj = obj, .path = path, .extra = extra,
			  .userdata = userdata, .err = err, .errlen = errlen };
	int syntax, r;

	if (!tab || !obj || !path) {
		snprintf(err, errlen, "no configuration file given");
		return -EINVAL;
	}
	l.f = fopen(path, "re");
	if (!l.f) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-r));
		return r;
	}
	syntax = ini_parse_stream(reader, &l, handler, &l);
	if (ferror(l.f) && l.r == 0) {
		r = errno ? -errno : -EIO;
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
		l.r = r;
	} else if (syntax > 0 && (l.r == 0 || syntax < l.err_line)) {
		/* libinih keeps going after a malformed line and reports the
		 * first one; ours may be a later line. Report the earliest. */
		snprintf(err, errlen,
			 "%s:%d: syntax error: expected '[section]', 'name = value' or a comment",
			 path, syntax);
		l.r = -EINVAL;
	} else if (syntax < 0 && l.r == 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		l.r = -ENOMEM;
	}
	free(l.line);
	fclose(l.f);
	return l.r;
}

int fv_cfg_set(const struct fv_cfg_key *tab, size_t n, void *obj, const char *dotted,
	       const char *value, char *err, size_t errlen)
{
	char section[128];
	const char *dot;
	const struct fv_cfg_key *k;

	if (!tab || !obj || !dotted || !value) {
		snprintf(err, errlen, "command line: missing key or value");
		return -EINVAL;
	}
	/* The last dot splits: section names may contain dots. */
	dot = strrchr(dotted, '.');
	if (!dot || dot == dotted || !dot[1] || (size_t)(dot - dotted) >= sizeof(section)) {
		snprintf(err, errlen, "command line: '%s': expected section.name", dotted);
		return -EINVAL;
	}
	memcpy(section, dotted, (size_t)(dot - dotted));
	section[dot - dotted] = '\0';
	k = find_key(tab, n, section, dot + 1);
	if (!k) {
		snprintf(err, errlen, "command line: unknown key '%s'", dotted);
		return -EINVAL;
	}
	return apply(k, obj, value, "command line", err, errlen);
}

/* ---- environment ---- */

int fv_cfg_env_name(const struct fv_cfg_key *k, const char *prefix, char *buf, size_t len)
{
	int w = snprintf(buf, len, "%s%s_%s", prefix, k->section, k->name);

	if (w < 0 || (size_t)w >= len)
		return -E2BIG;
	for (char *p = buf + strlen(prefix); *p; p++)
		*p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
	return 0;
}

/* The value of variable name in envp (the first one, as getenv does), or
 * NULL. */
static const char *env_value(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; envp && envp[i]; i++)
		if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
			return envp[i] + len + 1;
	return NULL;
}

int fv_cfg_env(const struct fv_cfg_key *tab, size_t n, void *obj, const char *prefix,
	       char *const *envp, char *err, size_t errlen)
{
	int count = 0;

	for (size_t i = 0; i < n; i++) {
		char name[192], place[224];
		const char *v;
		int r;

		if (fv_cfg_env_name(&tab[i], prefix, name, sizeof(name)) < 0)
			continue; /* too long to be set from the environment */
		v = env_value(envp, name);
		if (!v)
			continue;
		snprintf(place, sizeof(place), "environment %s", name);
		r = apply(&tab[i], obj, v, place, err, errlen);
		if (r < 0)
			return r;
		count++;
	}
	return count;
}

size_t fv_cfg_env_unknown(const struct fv_cfg_key *tab, size_t n, const char *prefix,
			  char *const *envp, const char **ret, size_t max)
{
	size_t plen = strlen(prefix), found = 0;

	for (size_t i = 0; envp && envp[i]; i++) {
		const char *eq = strchr(envp[i], '=');
		bool known = false;

		if (strncmp(envp[i], prefix, plen) != 0 || !eq)
			continue;
		for (size_t j = 0; j < n && !known; j++) {
			char name[192];

			known = fv_cfg_env_name(&tab[j], prefix, name, sizeof(name)) == 0 &&
				strlen(name) == (size_t)(eq - envp[i]) &&
				strncmp(envp[i], name, (size_t)(eq - envp[i])) == 0;
		}
		if (known)
			continue;
		if (found < max)
			ret[found] = envp[i];
		found++;
	}
	return found;
}

/* ---- output ---- */

static bool key_listed(const struct fv_cfg_key *k, const char *const *live);

/* The value of k in obj as it would be written in a file. */
static void value_text(const struct fv_cfg_key *k, const void *obj, char *buf, size_t len)
{
	const char *p = (const char *)obj + k->offset;

	switch (k->type) {
	case FV_CFG_STR:
		snprintf(buf, len, "%.*s", (int)strnlen(p, k->size), p);
		return;
	case FV_CFG_INT:
		if (k->size == sizeof(int)) {
			int v;

			memcpy(&v, p, sizeof(v));
			snprintf(buf, len, "%d", v);
		} else {
			long long v;

			memcpy(&v, p, sizeof(v));
			snprintf(buf, len, "%lld", v);
		}
		return;
	case FV_CFG_DOUBLE: {
		double v;

		memcpy(&v, p, sizeof(v));
		/* Shortest text that reads back to the same double. */
		snprintf(buf, len, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, len, "%.17g", v);
		return;
	}
	case FV_CFG_BOOL: {
		bool b;

		if (k->size == sizeof(bool)) {
			memcpy(&b, p, sizeof(b));
		} else {
			int v;

			memcpy(&v, p, sizeof(v));
			b = v != 0;
		}
		snprintf(buf, len, "%s", b ? "true" : "false");
		return;
	}
	case FV_CFG_ENUM: {
		int v;
		size_t nch = 0;

		memcpy(&v, p, sizeof(v));
		while (k->choices && k->choices[nch])
			nch++;
		if (v >= 0 && (size_t)v < nch)
			snprintf(buf, len, "%s", k->choices[v]);
		else
			snprintf(buf, len, "%d", v);
		return;
	}
	}
	snprintf(buf, len, "?");
}

/* "(type range, default X)" of a key, as --help and the man page show it. */
static void what_text(const struct fv_cfg_key *k, char *what, size_t len)
{
	switch (k->type) {
	case FV_CFG_STR:
		snprintf(what, len, "string, max %zu chars, default \"%s\"", k->size ? k->size - 1 : 0,
			 k->def);
		break;
	case FV_CFG_INT:
	case FV_CFG_DOUBLE: {
		char range[96];

		range_text(k, range, sizeof(range));
		snprintf(what, len, "%s %s, default %s", type_name(k->type), range, k->def);
		break;
	}
	case FV_CFG_BOOL:
		snprintf(what, len, "bool, default %s", k->def);
		break;
	case FV_CFG_ENUM: {
		char ch[200];

		choices_text(k, ch, sizeof(ch));
		snprintf(what, len, "%s, default %s", ch, k->def);
		break;
	}
	default:
		snprintf(what, len, "?");
	}
}

void fv_cfg_print_help(const struct fv_cfg_key *tab, size_t n, FILE *out)
{
	for (size_t i = 0; i < n; i++) {
		const struct fv_cfg_key *k = &tab[i];
		char what[300], name[160];

		what_text(k, what, sizeof(what));
		snprintf(name, sizeof(name), "%s.%s", k->section, k->name);
		fprintf(out, "  %-28s (%s)\n  %-28s %s\n", name, what, "", k->help ? k->help : "");
	}
}

/* Text for roff: backslashes doubled as \e, a leading '.' or '\'' guarded. */
static void roff_text(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-')
			fputs("\\-", out);
		else
			fputc(*s, out);
	}
}

void fv_cfg_print_man(const struct fv_cfg_key *tab, size_t n, const char *const *live, FILE *out)
{
	for (size_t i = 0; i < n; i++) {
		const struct fv_cfg_key *k = &tab[i];
		char what[300];
		bool first = true;

		for (size_t j = 0; j < i && first; j++)
			first = strcmp(tab[j].section, k->section) != 0;
		if (first) {
			fputs(".SS [", out);
			roff_text(out, k->section);
			fputs("]\n", out);
		}
		what_text(k, what, sizeof(what));
		fputs(".TP\n.B ", out);
		roff_text(out, k->section);
		fputc('.', out);
		roff_text(out, k->name);
		fputc('\n', out);
		roff_text(out, k->help ? k->help : "");
		fputs(" (", out);
		roff_text(out, what);
		fputs(key_listed(k, live) ? "; applied on SIGHUP)\n" : ")\n", out);
	}
}

/* Sections in the order they first appear in the table; each section's keys
 * together. Values are written raw: libinih has no quoting, so a string with
 * leading/trailing blanks or a " ;" would not read back the same. */
void fv_cfg_dump(const struct fv_cfg_key *tab, size_t n, const void *obj, FILE *out)
{
	char val[MAX_FIELD + 64];

	fprintf(out, "# effective configuration\n");
	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(tab[j].section, tab[i].section) == 0;
		if (seen)
			continue;
		fprintf(out, "\n[%s]\n", tab[i].section);
		for (size_t j = i; j < n; j++) {
			if (strcmp(tab[j].section, tab[i].section) != 0)
				continue;
			value_text(&tab[j], obj, val, sizeof(val));
			/* Secrets never reach the output, not even their length;
			 * as a comment the dump still reads back as a file. */
			if ((tab[j].flags & FV_CFG_SECRET) && val[0]) {
				explicit_bzero(val, sizeof(val));
				fprintf(out, "; %s = (set, not shown)\n", tab[j].name);
				continue;
			}
			fprintf(out, "%s = %s\n", tab[j].name, val);
		}
	}
}

/* ---- reload ---- */

/* "section.name" matches a live-list entry "section.name" or "section.*". */
static bool key_listed(const struct fv_cfg_key *k, const char *const *live)
{
	size_t sl = strlen(k->section);

	for (size_t i = 0; live && live[i]; i++) {
		const char *e = live[i];

		if (strncmp(e, k->section, sl) != 0 || e[sl] != '.')
			continue;
		if (strcmp(e + sl + 1, "*") == 0 || strcmp(e + sl + 1, k->name) == 0)
			return true;
	}
	return false;
}

bool fv_cfg_key_live(const struct fv_cfg_key *k, const char *const *live)
{
	return key_listed(k, live);
}

int fv_cfg_apply_live(const struct fv_cfg_key *tab, size_t n, void *cur, const void *next,
		      const char *const *live, fv_cfg_change_fn fn, void *userdata)
{
	char old_text[MAX_FIELD + 64], new_text[MAX_FIELD + 64];
	int changed = 0;

	for (size_t i = 0; i < n; i++) {
		const struct fv_cfg_key *k = &tab[i];
		char *c = (char *)cur + k->offset;
		const char *x = (const char *)next + k->offset;
		bool same = k->type == FV_CFG_STR ? strncmp(c, x, k->size) == 0
						  : memcmp(c, x, k->size) == 0;
		bool is_live;

		if (same)
			continue;
		is_live = key_listed(k, live);
		value_text(k, cur, old_text, sizeof(old_text));
		value_text(k, next, new_text, sizeof(new_text));
		if (is_live)
			memcpy(c, x, k->size);
		if (fn)
			fn(k, old_text, new_text, is_live, userdata);
		changed++;
	}
	return changed;
}
