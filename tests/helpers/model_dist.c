/* fv-model-dist MODEL [REFERENCE]: read a GlobalModel payload (the bytes of
 * a retained `model` message, e.g. from mosquitto_sub -N -C 1) and print
 * `version=V params=N norm=|x|`, and with a REFERENCE model of the same
 * shape also `dist=|x - ref|` (L2, in double). For the Byzantine tests:
 * how far an attacked fleet's final model is from the clean fleet's.
 * Exit 0, 1 on an unreadable or invalid file, 2 on a shape mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fedvigil/util.h"
#include "fedvigil/wire.h"

static int load(const char *path, struct fv_global *g)
{
	void *buf = NULL;
	size_t len = 0;
	int r;

	r = fv_file_read(path, FV_MAX_MSG_BYTES, &buf, &len);
	if (r < 0) {
		fprintf(stderr, "fv-model-dist: %s: %s\n", path, fv_strerror(r));
		return -1;
	}
	r = fv_global_decode(buf, len, NULL, g);
	free(buf);
	if (r < 0) {
		fprintf(stderr, "fv-model-dist: %s: not a GlobalModel: %s\n", path, fv_strerror(r));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct fv_global a = { 0 }, b = { 0 };
	double norm = 0.0, dist = 0.0;
	int rc = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: fv-model-dist MODEL [REFERENCE]\n");
		return 2;
	}
	if (load(argv[1], &a) < 0 || (argc == 3 && load(argv[2], &b) < 0)) {
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < a.n_params; i++)
		norm += (double)a.params[i] * (double)a.params[i];
	printf("version=%llu params=%zu norm=%.6g", (unsigned long long)a.version, a.n_params,
	       sqrt(norm));
	if (argc == 3) {
		if (b.n_params != a.n_params) {
			printf("\n");
			fprintf(stderr, "fv-model-dist: %zu parameters vs %zu in the reference\n",
				a.n_params, b.n_params);
			rc = 2;
			goto out;
		}
		for (size_t i = 0; i < a.n_params; i++) {
			double e = (double)a.params[i] - (double)b.params[i];

			dist += e * e;
		}
		printf(" dist=%.6g", sqrt(dist));
	}
	printf("\n");
out:
	fv_global_clear(&a);
	fv_global_clear(&b);
	return rc;
}
