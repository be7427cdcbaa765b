/* fedvigil datasets: a CSV reader for what real exports contain, and the
 * dataset manifest of fedvigil-eval (docs/tools.md) with its loader.
 *
 * A manifest names the entities (machines) of a dataset, each with its CSV
 * file(s), which columns are the timestamp, the features and the label, and
 * which rows train and which test. The loader turns it into one timeline of
 * rows per entity, in time order, with every cell a float (NAN = empty). */
#ifndef FEDVIGIL_DATA_H
#define FEDVIGIL_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_CSV_MAX_FIELDS 4096      /* fields per record */
#define FV_CSV_MAX_FIELD (64 << 10) /* bytes per field */

/* ---- CSV reader ----
 * RFC 4180 and what spreadsheets and historians write: LF, CRLF or a lone
 * CR ends a line (mixed in one file is fine); a UTF-8 byte order mark is
 * skipped; fields may be quoted ("a ""b"", c" holds a quote, a delimiter or
 * a line break); blanks around a field are trimmed (inside quotes they
 * stay); blank lines are skipped. */
struct fv_csv;

/* Open path. delim: ',', ';', '\t', '|' or 0 to detect it from the first
 * line (the most frequent of , ; tab outside quotes; ',' when none). NULL on
 * failure with the reason in err. Free with fv_csv_close(). */
struct fv_csv *fv_csv_open(const char *path, char delim, char *err, size_t errlen);
void fv_csv_close(struct fv_csv *c);
/* The delimiter in use (after detection). */
char fv_csv_delim(const struct fv_csv *c);
/* Next record: *ret_fields gets the field count's strings, borrowed until
 * the next call; *ret_line the line the record starts on (1-based). Returns
 * the field count, 0 at the end, or -EBADMSG / -E2BIG / -EIO with err as
 * "path:line: reason" (unterminated quote, text after a closing quote,
 * field or record too large). */
int fv_csv_next(struct fv_csv *c, char ***ret_fields, int *ret_line, char *err, size_t errlen);

/* A cell as a number. decimal is '.' or ',' (then "1,5" is 1.5). Returns 0,
 * -ENODATA for an empty cell or a missing-value token (nan, NA, N/A, null,
 * none; any case), -ERANGE for inf or a value beyond double, -EBADMSG for
 * anything else. */
int fv_csv_number(const char *s, char decimal, double *ret);

/* ---- manifest ---- */
#define FV_DS_MAX_ENTITIES 4096
#define FV_DS_MAX_FILES 16   /* CSV files per entity */
#define FV_DS_PATH_MAX 4096

enum fv_ds_role {
	FV_DS_TRAIN = 1, /* the row trains the model */
	FV_DS_TEST = 2,  /* the row is scored */
};

enum fv_ds_tsfmt {
	FV_DS_TS_ISO8601 = 0, /* "2014-02-19 15:25:00", optional T, .fff, Z */
	FV_DS_TS_SECONDS,     /* Unix seconds (may have a fraction) */
	FV_DS_TS_MILLIS,      /* Unix milliseconds */
};

/* How an entity's files are read; [dataset] gives defaults, an entity's
 * section may override each key. Column references are names from the
 * header, or 1-based column numbers. */
struct fv_ds_format {
	char delim;               /* 0 = detect */
	int header;               /* 1 yes, 0 no, -1 auto */
	char decimal;             /* '.' or ',' */
	char timestamp[256];      /* column, "" = rows are period_ms apart */
	enum fv_ds_tsfmt ts_format;
	char features[4096];      /* list: names, numbers, ranges "2-20"; "" = all others */
	char label[256];          /* label column, "" = none */
	char label_windows[FV_DS_PATH_MAX]; /* NAB-style JSON of anomaly windows, "" = none */
	char label_key[1024];     /* its key (NAB: "realKnownCause/<file>.csv") */
};

struct fv_ds_file {
	char path[FV_DS_PATH_MAX]; /* resolved path */
	uint8_t role;              /* enum fv_ds_role bits; 0 = by row range */
};

struct fv_ds_entity_spec {
	char name[64];                           /* entity (agent) name */
	int line;                                /* manifest line of its section */
	struct fv_ds_format fmt;
	uint32_t n_files;
	struct fv_ds_file files[FV_DS_MAX_FILES]; /* in time order */
	char train_rows[64];                     /* range for role 0 files */
	char test_rows[64];
	uint32_t n_labels;
	char labels[FV_DS_MAX_FILES][FV_DS_PATH_MAX]; /* label files for the test rows */
};

/* One "section.key = value" of the manifest's [set] section. */
struct fv_ds_set {
	char key[128];
	char value[512];
	int line;
};

struct fv_manifest {
	char path[FV_DS_PATH_MAX];  /* the manifest file */
	char name[64];              /* [dataset] name (default: file name) */
	char root[FV_DS_PATH_MAX];  /* data paths are relative to this */
	int64_t period_ms;          /* row spacing when there is no timestamp; 0 = unset */
	uint32_t n_entities;
	struct fv_ds_entity_spec *ent; /* n_entities, manifest order */
	uint32_t n_sets;
	struct fv_ds_set *sets;     /* [set] overrides, manifest order */
};

/* Parse a manifest. root_override (may be NULL) replaces [dataset] root;
 * a relative root is relative to the manifest's folder (the override: to
 * the working directory); relative data paths are relative to the root.
 * Errors name the file and line ("asd.ini:12: [entity.omi-1] features =
 * '1-x': ..."). 0 or -errno. Free with fv_manifest_free(). */
int fv_manifest_load(const char *path, const char *root_override, struct fv_manifest **ret,
		     char *err, size_t errlen);
void fv_manifest_free(struct fv_manifest *m);

/* ---- loaded data ---- */
struct fv_ds_entity {
	char name[64];
	size_t n;           /* rows of the timeline */
	float *x;           /* (n, C) feature values; NAN = empty cell */
	int64_t *ts;        /* (n) ms since the epoch, in file order */
	uint8_t *role;      /* (n) enum fv_ds_role bits */
	int8_t *label;      /* (n) 1 anomalous, 0 normal, -1 unknown */
	size_t n_train;     /* rows with FV_DS_TRAIN */
	size_t n_test;      /* rows with FV_DS_TEST */
	uint64_t n_empty;   /* empty or missing-value cells among the features */
	size_t n_backward;  /* rows stamped earlier than the row before them */
	char backward_at[FV_DS_PATH_MAX + 16]; /* "file:line" of the first of those */
};

struct fv_dataset {
	char name[64];
	uint32_t C;                  /* features per row (same for every entity) */
	char (*channels)[64];        /* (C) channel names, from the first entity */
	bool have_ts;                /* timestamps come from a column */
	int64_t period_ms;           /* manifest period_ms (0 = unset) */
	uint32_t n_entities;
	struct fv_ds_entity *ent;    /* manifest order */
};

/* Rows without a timestamp column are stamped start + i * period_ms. */
#define FV_DS_DEFAULT_START_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

/* Read every entity's files. period_ms stamps rows when there is no
 * timestamp column (the manifest's period_ms if set, else the caller's).
 * Errors name file and line. 0 or -errno; free with fv_dataset_free(). */
int fv_dataset_load(const struct fv_manifest *m, int64_t period_ms, struct fv_dataset **ret,
		    char *err, size_t errlen);
void fv_dataset_free(struct fv_dataset *d);

/* Parse a row range "A-B" against a file of n rows into [*ret_lo, *ret_hi)
 * (0-based). A and B are 1-based row numbers (inclusive) or percentages
 * "15%" (the boundary round(n * p / 100)); either may be left out ("-100",
 * "15%-"). -EINVAL if malformed or out of order. */
int fv_ds_range_parse(const char *s, size_t n, size_t *ret_lo, size_t *ret_hi);

#endif
