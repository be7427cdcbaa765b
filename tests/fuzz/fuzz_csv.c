/* Fuzz target for fedvigil-eval's data reader (lib/data): the input is
 * written to a temporary file and read as a CSV (delimiter detected, then
 * forced to ';'), every field through fv_csv_number, and then loaded as a
 * dataset through two manifests: one file split by row percentages with a
 * label column, and train/test/label files with a header, an ISO-8601
 * timestamp column and features by range. Every failure must say why, and
 * a loaded dataset must be consistent (roles, labels, counts).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=c11 \
 *     -Iinclude tests/fuzz/fuzz_csv.c lib/data/[a-z]*.c lib/util/[a-z]*.c \
 *     -linih -lcjson -lm -o fuzz_csv
 * Linked with replay_main.c it replays the corpus (ctest). */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedvigil/data.h"
#include "fedvigil/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read every record; fields are NUL-terminated strings. */
static void read_all(const char *path, char delim)
{
	char err[512], **fld;
	struct fv_csv *c;
	int n, line, last = 0;

	err[0] = '\0';
	c = fv_csv_open(path, delim, err, sizeof(err));
	if (!c) {
		if (!err[0])
			abort();
		return;
	}
	if (delim && fv_csv_delim(c) != delim)
		abort();
	while ((n = fv_csv_next(c, &fld, &line, err, sizeof(err))) > 0) {
		if (n > FV_CSV_MAX_FIELDS || line < last)
			abort();
		last = line;
		for (int i = 0; i < n; i++) {
			double v;

			if (strlen(fld[i]) > FV_CSV_MAX_FIELD)
				abort();
			if (fv_csv_number(fld[i], i % 2 ? ',' : '.', &v) == 0 && !isfinite(v))
				abort();
		}
	}
	if (n < 0 && !err[0])
		abort();
	fv_csv_close(c);
}

static void load(const char *dir, const char *manifest)
{
	char path[300], err[1024];
	struct fv_manifest *m = NULL;
	struct fv_dataset *d = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/m.ini", dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs(manifest, f);
	fclose(f);
	if (fv_manifest_load(path, NULL, &m, err, sizeof(err)) < 0)
		abort(); /* the manifests are valid */
	err[0] = '\0';
	if (fv_dataset_load(m, 1000, &d, err, sizeof(err)) < 0) {
		if (!err[0] || d)
			abort();
	} else {
		const struct fv_ds_entity *e = &d->ent[0];
		size_t tr = 0, te = 0;

		if (d->C == 0 || e->n_train == 0 || e->n_test == 0)
			abort();
		for (size_t i = 0; i < e->n; i++) {
			tr += (e->role[i] & FV_DS_TRAIN) != 0;
			te += (e->role[i] & FV_DS_TEST) != 0;
			if ((e->role[i] & FV_DS_TEST) && e->label[i] != 0 && e->label[i] != 1)
				abort();
			for (uint32_t c = 0; c < d->C; c++)
				if (isinf(e->x[i * d->C + c]))
					abort();
		}
		if (tr != e->n_train || te != e->n_test)
			abort();
	}
	fv_dataset_free(d);
	fv_manifest_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/tmp/fvfuzzcsvXXXXXX", path[300];
	FILE *f;

	if (!mkdtemp(dir))
		return 0;
	snprintf(path, sizeof(path), "%s/in.csv", dir);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, size, f) != size) {
		if (f)
			fclose(f);
		goto out;
	}
	fclose(f);
	read_all(path, 0);
	read_all(path, ';');
	load(dir, "[entity.a]\nfile = in.csv\ntrain_rows = 0%-50%\ntest_rows = 50%-100%\n"
		  "label = 1\n");
	load(dir, "[dataset]\nheader = yes\ntimestamp = 1\nfeatures = 2-3\n"
		  "[entity.a]\ntrain = in.csv\ntest = in.csv\nlabels = in.csv\n");
	unlink(path);
	snprintf(path, sizeof(path), "%s/m.ini", dir);
	unlink(path);
out:
	rmdir(dir);
	return 0;
}
