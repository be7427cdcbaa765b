/* fv-wiretool: protobuf messages for integration tests (not installed).
 *
 *   fv-wiretool digest FILE
 *       FILE holds one GlobalModel as it travelled (unsigned). Prints one
 *       line of what the model is (version, round, agents, parameter count)
 *       and CRC-32s of its parameters, normalisation, column errors and the
 *       bits of its threshold and loss: two runs that print the same line
 *       published bit-identical models. The coordinator's epoch and the
 *       wall-clock timestamp are left out (they differ between runs).
 *
 *   fv-wiretool forge IN OUT [--fleet F] [--sender S] [--round R]
 *                    [--base V] [--drop N] [--nan] [--inf]
 *       IN holds one ModelUpdate (unsigned); OUT gets it re-encoded (fp32,
 *       dense) with the header fields given, N weights fewer (a wrong
 *       shape), or its first weight made NaN or +Inf (the encoder refuses
 *       non-finite weights, so the bytes are patched after encoding).
 *
 * Exit 0, 1 on a bad input file, 2 on usage errors. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "fedvigil/wire.h"

/* A weight no training produces: found in the encoded bytes and replaced. */
#define MARK 1.2345678e37f

static int usage(void)
{
	fprintf(stderr, "usage: fv-wiretool digest FILE\n"
			"       fv-wiretool forge IN OUT [--fleet F] [--sender S] [--round R] "
			"[--base V] [--drop N] [--nan] [--inf]\n");
	return 2;
}

static uint32_t crc_of(const void *p, size_t n)
{
	return n ? fv_crc32(0, p, n) : 0;
}

static uint32_t float_bits(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u;
}

static int digest(const char *path)
{
	struct fv_global g;
	void *buf = NULL;
	size_t len = 0;
	int r;

	r = fv_file_read(path, FV_MAX_MSG_BYTES, &buf, &len);
	if (r < 0) {
		fprintf(stderr, "fv-wiretool: %s: %s\n", path, fv_strerror(r));
		return 1;
	}
	memset(&g, 0, sizeof(g));
	r = fv_global_decode(buf, len, NULL, &g);
	free(buf);
	if (r < 0) {
		fprintf(stderr, "fv-wiretool: %s: not a GlobalModel: %s\n", path, fv_strerror(r));
		return 1;
	}
	printf("version=%" PRIu64 " round=%" PRIu64 " agents=%u params=%zu crc=%08x mean=%08x "
	       "std=%08x col_err=%08x threshold=%08x loss=%08x\n",
	       g.version, g.h.round, g.n_agents, g.n_params,
	       crc_of(g.params, g.n_params * sizeof(float)),
	       crc_of(g.mean, g.n_channels * sizeof(float)),
	       crc_of(g.std, g.n_channels * sizeof(float)),
	       crc_of(g.col_err, g.n_col_err * sizeof(float)), float_bits(g.threshold),
	       float_bits(g.loss));
	fv_global_clear(&g);
	return 0;
}

static int forge(int argc, char **argv)
{
	const char *in = argv[0], *out = argv[1];
	struct fv_update u;
	uint8_t *enc = NULL;
	size_t enc_len = 0, drop = 0;
	void *buf = NULL;
	size_t len = 0;
	float bad = 0.0f;
	bool patch = false;
	int r;

	r = fv_file_read(in, FV_MAX_MSG_BYTES, &buf, &len);
	if (r < 0) {
		fprintf(stderr, "fv-wiretool: %s: %s\n", in, fv_strerror(r));
		return 1;
	}
	memset(&u, 0, sizeof(u));
	r = fv_update_decode(buf, len, NULL, &u);
	free(buf);
	if (r < 0) {
		fprintf(stderr, "fv-wiretool: %s: not a ModelUpdate: %s\n", in, fv_strerror(r));
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--nan") == 0) {
			bad = NAN;
			patch = true;
		} else if (strcmp(argv[i], "--inf") == 0) {
			bad = INFINITY;
			patch = true;
		} else if (!v) {
			fv_update_clear(&u);
			return usage();
		} else if (strcmp(argv[i], "--fleet") == 0) {
			fv_strlcpy(u.h.fleet, v, sizeof(u.h.fleet));
			i++;
		} else if (strcmp(argv[i], "--sender") == 0) {
			fv_strlcpy(u.h.sender, v, sizeof(u.h.sender));
			i++;
		} else if (strcmp(argv[i], "--round") == 0) {
			u.h.round = strtoull(v, NULL, 10);
			i++;
		} else if (strcmp(argv[i], "--base") == 0) {
			u.h.base_version = strtoull(v, NULL, 10);
			i++;
		} else if (strcmp(argv[i], "--drop") == 0) {
			drop = strtoull(v, NULL, 10);
			i++;
		} else {
			fv_update_clear(&u);
			return usage();
		}
	}
	if ((drop && drop >= u.n_params) || (patch && u.n_params == 0)) {
		fprintf(stderr, "fv-wiretool: %s: %zu weights: nothing to drop or patch\n", in,
			u.n_params);
		fv_update_clear(&u);
		return 1;
	}
	u.n_params -= drop;
	u.enc = FV_ENC_FP32;
	u.topk = 0.0f;
	u.n_seg = 0;
	if (patch)
		u.delta[0] = MARK;
	r = fv_update_encode(&u, &enc, &enc_len);
	fv_update_clear(&u);
	if (r < 0) {
		fprintf(stderr, "fv-wiretool: cannot encode: %s\n", fv_strerror(r));
		return 1;
	}
	if (patch) {
		float mark = MARK;
		uint8_t *p = NULL;

		for (size_t i = 0; i + sizeof(mark) <= enc_len && !p; i++)
			if (memcmp(enc + i, &mark, sizeof(mark)) == 0)
				p = enc + i;
		if (!p) {
			fprintf(stderr, "fv-wiretool: marked weight not found in the encoding\n");
			free(enc);
			return 1;
		}
		memcpy(p, &bad, sizeof(bad));
	}
	r = fv_file_write_atomic(out, enc, enc_len);
	free(enc);
	if (r < 0) {
		fprintf(stderr, "fv-wiretool: %s: %s\n", out, fv_strerror(r));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "digest") == 0)
		return digest(argv[2]);
	if (argc >= 4 && strcmp(argv[1], "forge") == 0)
		return forge(argc - 2, argv + 2);
	return usage();
}
