/* The dataset manifest of fedvigil-eval: an INI file (read with the same
 * loader as the daemons' configs, so errors carry file and line) naming
 * each entity's files, columns and train/test split. See docs/tools.md. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fedvigil/cfg.h"
#include "fedvigil/data.h"
#include "fedvigil/util.h"

#define MAX_FMT_KEYS 32 /* format keys given in one entity section */

struct raw_kv {
	char key[32];
	char value[FV_DS_PATH_MAX];
};

struct parse {
	struct fv_manifest *m;
	struct fv_ds_format ds_fmt;         /* [dataset] format */
	char root[FV_DS_PATH_MAX];          /* [dataset] root as written */
	struct raw_kv (*fmt_kv)[MAX_FMT_KEYS]; /* per entity: its format keys */
	uint32_t *n_fmt_kv;
	uint32_t cap;
};

static const char *const fmt_keys[] = { "delimiter", "header", "decimal", "timestamp",
					"timestamp_format", "features", "label", "label_windows",
					"label_key", NULL };

static bool is_fmt_key(const char *name)
{
	for (int i = 0; fmt_keys[i]; i++)
		if (strcmp(name, fmt_keys[i]) == 0)
			return true;
	return false;
}

static int set_str(char *dst, size_t size, const char *v, const char **why)
{
	if (fv_strlcpy(dst, v, size) < 0) {
		*why = "value too long";
		return -E2BIG;
	}
	return 0;
}

/* One format key into f. */
static int apply_fmt(struct fv_ds_format *f, const char *name, const char *v, const char **why)
{
	if (strcmp(name, "delimiter") == 0) {
		if (strcasecmp(v, "auto") == 0)
			f->delim = 0;
		else if (strcmp(v, ",") == 0 || strcasecmp(v, "comma") == 0)
			f->delim = ',';
		else if (strcmp(v, ";") == 0 || strcasecmp(v, "semicolon") == 0)
			f->delim = ';';
		else if (strcmp(v, "\\t") == 0 || strcmp(v, "\t") == 0 || strcasecmp(v, "tab") == 0)
			f->delim = '\t';
		else if (strcmp(v, "|") == 0 || strcasecmp(v, "pipe") == 0)
			f->delim = '|';
		else {
			*why = "expected auto, comma, semicolon, tab or pipe (a ';' after a blank "
			       "starts a comment: write semicolon)";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(name, "header") == 0) {
		if (strcasecmp(v, "auto") == 0)
			f->header = -1;
		else if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
			f->header = 1;
		else if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
			f->header = 0;
		else {
			*why = "expected yes, no or auto";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(name, "decimal") == 0) {
		if (strcmp(v, ".") == 0 || strcasecmp(v, "point") == 0)
			f->decimal = '.';
		else if (strcmp(v, ",") == 0 || strcasecmp(v, "comma") == 0)
			f->decimal = ',';
		else {
			*why = "expected point (.) or comma (,)";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(name, "timestamp_format") == 0) {
		if (strcasecmp(v, "iso8601") == 0)
			f->ts_format = FV_DS_TS_ISO8601;
		else if (strcasecmp(v, "s") == 0 || strcasecmp(v, "seconds") == 0)
			f->ts_format = FV_DS_TS_SECONDS;
		else if (strcasecmp(v, "ms") == 0 || strcasecmp(v, "milliseconds") == 0)
			f->ts_format = FV_DS_TS_MILLIS;
		else {
			*why = "expected iso8601, seconds or ms";
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(name, "timestamp") == 0)
		return set_str(f->timestamp, sizeof(f->timestamp), v, why);
	if (strcmp(name, "features") == 0)
		return set_str(f->features, sizeof(f->features), v, why);
	if (strcmp(name, "label") == 0)
		return set_str(f->label, sizeof(f->label), v, why);
	if (strcmp(name, "label_windows") == 0)
		return set_str(f->label_windows, sizeof(f->label_windows), v, why);
	if (strcmp(name, "label_key") == 0)
		return set_str(f->label_key, sizeof(f->label_key), v, why);
	*why = "unknown key";
	return -EINVAL;
}

static struct fv_ds_entity_spec *entity(struct parse *p, const char *name, const char **why)
{
	struct fv_manifest *m = p->m;

	for (uint32_t i = 0; i < m->n_entities; i++)
		if (strcmp(m->ent[i].name, name) == 0)
			return &m->ent[i];
	if (!fv_name_valid(name)) {
		*why = "entity name must be 1-63 characters of [A-Za-z0-9_.-]";
		return NULL;
	}
	if (m->n_entities >= FV_DS_MAX_ENTITIES) {
		*why = "too many entities";
		return NULL;
	}
	if (m->n_entities == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 16;
		struct fv_ds_entity_spec *e = realloc(m->ent, cap * sizeof(*e));
		struct raw_kv (*kv)[MAX_FMT_KEYS];
		uint32_t *nk;

		if (!e) {
			*why = "out of memory";
			return NULL;
		}
		m->ent = e;
		kv = realloc(p->fmt_kv, cap * sizeof(*kv));
		if (!kv) {
			*why = "out of memory";
			return NULL;
		}
		p->fmt_kv = kv;
		nk = realloc(p->n_fmt_kv, cap * sizeof(*nk));
		if (!nk) {
			*why = "out of memory";
			return NULL;
		}
		p->n_fmt_kv = nk;
		p->cap = cap;
	}
	memset(&m->ent[m->n_entities], 0, sizeof(m->ent[0]));
	fv_strlcpy(m->ent[m->n_entities].name, name, sizeof(m->ent[0].name));
	p->n_fmt_kv[m->n_entities] = 0;
	return &m->ent[m->n_entities++];
}

static int add_file(struct fv_ds_entity_spec *e, const char *path, uint8_t role, const char **why)
{
	if (!*path) {
		*why = "empty path";
		return -EINVAL;
	}
	if (e->n_files >= FV_DS_MAX_FILES) {
		*why = "too many files for one entity (16)";
		return -E2BIG;
	}
	if (fv_strlcpy(e->files[e->n_files].path, path, FV_DS_PATH_MAX) < 0) {
		*why = "path too long";
		return -E2BIG;
	}
	e->files[e->n_files++].role = role;
	return 0;
}

static int on_key(void *userdata, const char *section, const char *name, const char *value,
		  const char **why)
{
	struct parse *p = userdata;
	struct fv_manifest *m = p->m;

	if (strcmp(section, "dataset") == 0) {
		if (strcmp(name, "name") == 0)
			return set_str(m->name, sizeof(m->name), value, why);
		if (strcmp(name, "root") == 0)
			return set_str(p->root, sizeof(p->root), value, why);
		if (strcmp(name, "period_ms") == 0) {
			char *end;
			long long v = strtoll(value, &end, 10);

			if (end == value || *end || v < 1 || v > 86400000LL * 365) {
				*why = "expected milliseconds between rows (1..31536000000)";
				return -EINVAL;
			}
			m->period_ms = v;
			return 0;
		}
		if (is_fmt_key(name))
			return apply_fmt(&p->ds_fmt, name, value, why);
		*why = "unknown key in [dataset] (name, root, period_ms, delimiter, header, "
		       "decimal, timestamp, timestamp_format, features, label, label_windows, "
		       "label_key)";
		return -EINVAL;
	}
	if (strcmp(section, "set") == 0) {
		struct fv_ds_set *s;

		if (!strchr(name, '.')) {
			*why = "expected section.key = value (an agent or coordinator key)";
			return -EINVAL;
		}
		s = realloc(m->sets, (m->n_sets + 1) * sizeof(*s));
		if (!s) {
			*why = "out of memory";
			return -ENOMEM;
		}
		m->sets = s;
		s = &m->sets[m->n_sets];
		if (fv_strlcpy(s->key, name, sizeof(s->key)) < 0 ||
		    fv_strlcpy(s->value, value, sizeof(s->value)) < 0) {
			*why = "key or value too long";
			return -E2BIG;
		}
		s->line = 0;
		m->n_sets++;
		return 0;
	}
	if (strncmp(section, "entity.", 7) == 0) {
		struct fv_ds_entity_spec *e = entity(p, section + 7, why);
		uint32_t idx;

		if (!e)
			return -EINVAL;
		idx = (uint32_t)(e - m->ent);
		if (strcmp(name, "train") == 0)
			return add_file(e, value, FV_DS_TRAIN, why);
		if (strcmp(name, "test") == 0)
			return add_file(e, value, FV_DS_TEST, why);
		if (strcmp(name, "file") == 0)
			return add_file(e, value, 0, why);
		if (strcmp(name, "train_rows") == 0)
			return set_str(e->train_rows, sizeof(e->train_rows), value, why);
		if (strcmp(name, "test_rows") == 0)
			return set_str(e->test_rows, sizeof(e->test_rows), value, why);
		if (strcmp(name, "labels") == 0) {
			if (e->n_labels >= FV_DS_MAX_FILES) {
				*why = "too many label files (16)";
				return -E2BIG;
			}
			return set_str(e->labels[e->n_labels++], FV_DS_PATH_MAX, value, why);
		}
		if (is_fmt_key(name)) {
			struct fv_ds_format scratch = p->ds_fmt;
			struct raw_kv *kv;
			int r = apply_fmt(&scratch, name, value, why); /* validate now */

			if (r < 0)
				return r;
			if (p->n_fmt_kv[idx] >= MAX_FMT_KEYS) {
				*why = "too many format keys in one section";
				return -E2BIG;
			}
			kv = &p->fmt_kv[idx][p->n_fmt_kv[idx]++];
			fv_strlcpy(kv->key, name, sizeof(kv->key));
			return set_str(kv->value, sizeof(kv->value), value, why);
		}
		*why = "unknown key in an [entity.NAME] section (train, test, file, train_rows, "
		       "test_rows, labels, or a format key of [dataset])";
		return -EINVAL;
	}
	*why = "unknown section (dataset, set, entity.NAME)";
	return -EINVAL;
}

/* dir + "/" + path unless path is absolute (or dir empty). */
static int join(char *ret, size_t size, const char *dir, const char *path)
{
	int n;

	if (path[0] == '/' || !dir[0])
		n = snprintf(ret, size, "%s", path);
	else
		n = snprintf(ret, size, "%s/%s", dir, path);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static void default_fmt(struct fv_ds_format *f)
{
	memset(f, 0, sizeof(*f));
	f->delim = 0;
	f->header = -1;
	f->decimal = '.';
	f->ts_format = FV_DS_TS_ISO8601;
}

int fv_manifest_load(const char *path, const char *root_override, struct fv_manifest **ret,
		     char *err, size_t errlen)
{
	static const struct fv_cfg_key none[1];
	struct parse p;
	struct fv_manifest *m = calloc(1, sizeof(*m));
	char dir[FV_DS_PATH_MAX], tmp[FV_DS_PATH_MAX], root[FV_DS_PATH_MAX];
	const char *why = NULL;
	int r;

	memset(&p, 0, sizeof(p));
	if (!m) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	p.m = m;
	default_fmt(&p.ds_fmt);
	fv_strlcpy(m->path, path, sizeof(m->path));
	r = fv_cfg_load(none, 0, m, path, on_key, &p, err, errlen);
	if (r < 0)
		goto fail;

	if (!m->name[0]) { /* the file name without .ini */
		char *dot;

		fv_strlcpy(tmp, path, sizeof(tmp));
		fv_strlcpy(m->name, basename(tmp), sizeof(m->name));
		dot = strrchr(m->name, '.');
		if (dot && dot != m->name)
			*dot = '\0';
	}
	fv_strlcpy(tmp, path, sizeof(tmp));
	fv_strlcpy(dir, dirname(tmp), sizeof(dir));
	if (root_override && root_override[0])
		r = fv_strlcpy(root, root_override, sizeof(root));
	else if (p.root[0])
		r = join(root, sizeof(root), dir, p.root);
	else
		r = fv_strlcpy(root, dir, sizeof(root));
	if (r < 0) {
		snprintf(err, errlen, "%s: [dataset] root: path too long", path);
		r = -ENAMETOOLONG;
		goto fail;
	}
	fv_strlcpy(m->root, root, sizeof(m->root));
	if (m->n_entities == 0) {
		snprintf(err, errlen, "%s: no [entity.NAME] sections: nothing to evaluate", path);
		r = -EINVAL;
		goto fail;
	}
	for (uint32_t i = 0; i < m->n_entities; i++) {
		struct fv_ds_entity_spec *e = &m->ent[i];
		bool by_range = false, by_file = false;

		e->fmt = p.ds_fmt;
		for (uint32_t k = 0; k < p.n_fmt_kv[i]; k++)
			apply_fmt(&e->fmt, p.fmt_kv[i][k].key, p.fmt_kv[i][k].value, &why);
		if (e->n_files == 0) {
			snprintf(err, errlen,
				 "%s: [entity.%s] has no data: give train = FILE and test = FILE, or "
				 "file = FILE with train_rows and test_rows",
				 path, e->name);
			r = -EINVAL;
			goto fail;
		}
		for (uint32_t f = 0; f < e->n_files; f++) {
			if (e->files[f].role == 0)
				by_range = true;
			else
				by_file = true;
			r = join(tmp, sizeof(tmp), m->root, e->files[f].path);
			if (r < 0 || fv_strlcpy(e->files[f].path, tmp, FV_DS_PATH_MAX) < 0) {
				snprintf(err, errlen, "%s: [entity.%s]: path too long", path, e->name);
				r = -ENAMETOOLONG;
				goto fail;
			}
		}
		if (by_range && (!e->train_rows[0] || !e->test_rows[0])) {
			snprintf(err, errlen,
				 "%s: [entity.%s] file = ... needs train_rows and test_rows (e.g. "
				 "train_rows = 0%%-15%%, test_rows = 15%%-100%%)",
				 path, e->name);
			r = -EINVAL;
			goto fail;
		}
		if (!by_range && (e->train_rows[0] || e->test_rows[0])) {
			snprintf(err, errlen,
				 "%s: [entity.%s] train_rows/test_rows apply to file = ..., not to "
				 "train = / test = files",
				 path, e->name);
			r = -EINVAL;
			goto fail;
		}
		(void)by_file;
		for (uint32_t l = 0; l < e->n_labels; l++) {
			r = join(tmp, sizeof(tmp), m->root, e->labels[l]);
			if (r < 0 || fv_strlcpy(e->labels[l], tmp, FV_DS_PATH_MAX) < 0) {
				snprintf(err, errlen, "%s: [entity.%s]: path too long", path, e->name);
				r = -ENAMETOOLONG;
				goto fail;
			}
		}
		if (e->fmt.label_windows[0]) {
			r = join(tmp, sizeof(tmp), m->root, e->fmt.label_windows);
			if (r < 0 || fv_strlcpy(e->fmt.label_windows, tmp, FV_DS_PATH_MAX) < 0) {
				snprintf(err, errlen, "%s: [entity.%s]: path too long", path, e->name);
				r = -ENAMETOOLONG;
				goto fail;
			}
			if (!e->fmt.label_key[0]) {
				snprintf(err, errlen, "%s: [entity.%s] label_windows needs label_key",
					 path, e->name);
				r = -EINVAL;
				goto fail;
			}
		}
		if (!e->n_labels && !e->fmt.label[0] && !e->fmt.label_windows[0]) {
			snprintf(err, errlen,
				 "%s: [entity.%s] has no labels: give labels = FILE, label = COLUMN or "
				 "label_windows = FILE.json",
				 path, e->name);
			r = -EINVAL;
			goto fail;
		}
	}
	free(p.fmt_kv);
	free(p.n_fmt_kv);
	*ret = m;
	return 0;
fail:
	free(p.fmt_kv);
	free(p.n_fmt_kv);
	fv_manifest_free(m);
	return r;
}

void fv_manifest_free(struct fv_manifest *m)
{
	if (!m)
		return;
	free(m->ent);
	free(m->sets);
	free(m);
}
