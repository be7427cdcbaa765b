/* fedvigil configuration: INI files (libinih) described by one key table.
 *
 * Every key is declared once: section, name, type, default, bounds, help and
 * where it lives in the program's config struct. The same table loads and
 * validates files, applies command-line overrides, prints --help and dumps
 * the effective configuration. */
#ifndef FEDVIGIL_CFG_H
#define FEDVIGIL_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum fv_cfg_type {
	FV_CFG_STR,    /* char[size] */
	FV_CFG_INT,    /* long long, bounded by [min, max] */
	FV_CFG_DOUBLE, /* double, bounded by [min, max] */
	FV_CFG_BOOL,   /* bool: true/false/yes/no/on/off/1/0 */
	FV_CFG_ENUM,   /* int: index into choices */
};

/* Key flags. */
#define FV_CFG_SECRET (1u << 0) /* a password: never printed by fv_cfg_dump */

struct fv_cfg_key {
	const char *section;       /* INI section, e.g. "round" */
	const char *name;          /* key, e.g. "deadline_ms" */
	enum fv_cfg_type type;
	const char *def;           /* default, as text */
	double min, max;           /* bounds for INT and DOUBLE */
	const char *const *choices; /* NULL-terminated names for ENUM */
	size_t offset;             /* offsetof(struct ..., field) */
	size_t size;               /* sizeof the field (STR: buffer size) */
	const char *help;          /* one line */
	unsigned flags;            /* FV_CFG_* flags above */
};

/* Sections not in the table (e.g. "channel.temp") go to this callback;
 * return 0 to accept, or -errno and set *ret_why (static text). */
typedef int (*fv_cfg_extra_fn)(void *userdata, const char *section, const char *name,
			       const char *value, const char **ret_why);

/* Fill obj with every key's default. 0, or -EINVAL if a default is invalid
 * (a programmer error: err says which). */
int fv_cfg_defaults(const struct fv_cfg_key *tab, size_t n, void *obj, char *err,
		    size_t errlen);
/* Load path over obj. Errors name the file, line, key and accepted range,
 * e.g. "agent.ini:12: round.deadline_ms = 'abc': not an integer (1..3600000)".
 * Unknown sections/keys are errors unless `extra` accepts them. 0 or -errno
 * (-ENOENT, -EINVAL). */
int fv_cfg_load(const struct fv_cfg_key *tab, size_t n, void *obj, const char *path,
		fv_cfg_extra_fn extra, void *userdata, char *err, size_t errlen);
/* Set one key, "section.name" = value (command-line overrides, --set).
 * Same validation and error wording (with "command line" for the place). */
int fv_cfg_set(const struct fv_cfg_key *tab, size_t n, void *obj, const char *dotted,
	       const char *value, char *err, size_t errlen);
/* ---- environment overrides (containers) ---- */

/* Every key can also be set by an environment variable named prefix +
 * SECTION + "_" + NAME in upper case, other characters than letters and
 * digits as '_': with prefix "FEDVIGIL_", agent.broker is
 * FEDVIGIL_AGENT_BROKER and round.deadline_ms FEDVIGIL_ROUND_DEADLINE_MS.
 * (Unique as long as no section name has a '_'.) Writes the name into buf;
 * 0, or -E2BIG when it does not fit. */
int fv_cfg_env_name(const struct fv_cfg_key *k, const char *prefix, char *buf, size_t len);
/* Apply the variables of envp ("NAME=value" strings, NULL-terminated, e.g.
 * environ) that name a key of tab, in table order; an empty value sets an
 * empty value. Precedence is the caller's: defaults < file < environment <
 * command line. Same validation as fv_cfg_set; errors read
 * "environment FEDVIGIL_ROUND_DEADLINE_MS: round.deadline_ms = 'x': not an
 * integer (range 100..86400000)". Returns the number of keys set, or
 * -EINVAL (keys before the bad one stay applied). */
int fv_cfg_env(const struct fv_cfg_key *tab, size_t n, void *obj, const char *prefix,
	       char *const *envp, char *err, size_t errlen);
/* Variables of envp that start with prefix but name no key of tab (a typo,
 * or another program's key): up to max of them into ret (pointers to the
 * "NAME=value" strings of envp). Returns how many there are in all. */
size_t fv_cfg_env_unknown(const struct fv_cfg_key *tab, size_t n, const char *prefix,
			  char *const *envp, const char **ret, size_t max);

/* Print two lines per key: "  section.name  (type range, default X)" and
 * the help text indented below it. */
void fv_cfg_print_help(const struct fv_cfg_key *tab, size_t n, FILE *out);
/* Print the keys as man-page roff: a .SS per section, a .TP per key with
 * its help, type, range and default, and whether a SIGHUP applies it
 * (listed in live, see fv_cfg_key_live(); may be NULL). */
void fv_cfg_print_man(const struct fv_cfg_key *tab, size_t n, const char *const *live, FILE *out);
/* Print the effective configuration as an INI file. A non-empty
 * FV_CFG_SECRET value is replaced by a comment line saying that it is set. */
void fv_cfg_dump(const struct fv_cfg_key *tab, size_t n, const void *obj, FILE *out);

/* ---- reload (SIGHUP) ---- */

/* True when k is listed in live: entries "section.name" or "section.*"
 * (NULL-terminated). */
bool fv_cfg_key_live(const struct fv_cfg_key *k, const char *const *live);
/* A key whose value differs between the running and the reloaded config:
 * old and new as they would be written in a file; applied tells whether
 * it was copied (a live key) or needs a restart. */
typedef void (*fv_cfg_change_fn)(const struct fv_cfg_key *k, const char *old_value,
				 const char *new_value, bool applied, void *userdata);
/* Compare every key of cur and next; copy the differing ones listed in live
 * from next into cur, leave the others. fn (may be NULL) is told of every
 * difference. Returns the number of differing keys. */
int fv_cfg_apply_live(const struct fv_cfg_key *tab, size_t n, void *cur, const void *next,
		      const char *const *live, fv_cfg_change_fn fn, void *userdata);

#endif
