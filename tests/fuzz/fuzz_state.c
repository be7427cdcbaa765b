/* Fuzz target for the coordinator's state loader: the input becomes
 * <state_dir>/coordinator.state and coord_new() loads it exactly as the
 * daemon does at start (decode, then the checks against the configuration:
 * fleet, window, channels, features, aggregator state), tests/fuzz/coordfix.h.
 *
 * First byte: bit 0 clear, the rest is the file as is; bit 0 set, the rest
 * is the CoordState payload and the target puts a valid header (magic,
 * version, length, CRC-32) in front, so mutations get past the checksum to
 * the protobuf decoder and the checks behind it. What fv_state_decode()
 * accepts must encode again and decode to the same round, kind and epoch.
 *
 * tests/CMakeLists.txt links the coordinator's sources; with replay_main.c
 * it replays tests/fuzz/corpus/state/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordfix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void roundtrip(const uint8_t *file, size_t len)
{
	struct fv_coord_state s, t;
	uint8_t *buf;
	size_t n;

	if (fv_state_decode(file, len, &s) < 0)
		return;
	if (fv_state_encode(&s, &buf, &n) < 0)
		abort();
	if (fv_state_decode(buf, n, &t) < 0 || t.round != s.round || t.kind != s.kind ||
	    t.epoch != s.epoch || t.have_model != s.have_model ||
	    (s.have_model && (t.model.n_params != s.model.n_params ||
			      memcmp(t.model.params, s.model.params,
				     s.model.n_params * sizeof(float)) != 0)))
		abort();
	fv_state_clear(&t);
	fv_state_clear(&s);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct coord_config *cfg = fz_config();
	uint8_t *file;
	size_t len;
	char path[600];
	struct coord *co;
	FILE *f;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		len = size - 1 + 16;
		file = malloc(len);
		if (!file)
			return 0;
		memcpy(file, "FVST", 4);
		put_u32(file + 4, 1);
		put_u32(file + 8, (uint32_t)(size - 1));
		put_u32(file + 12, fv_crc32(0, data + 1, size - 1));
		memcpy(file + 16, data + 1, size - 1);
	} else {
		len = size - 1;
		file = malloc(len ? len : 1);
		if (!file)
			return 0;
		memcpy(file, data + 1, len);
	}
	roundtrip(file, len);
	fz_state_path(path, sizeof(path));
	f = fopen(path, "wb");
	if (!f || fwrite(file, 1, len, f) != len)
		abort();
	fclose(f);
	free(file);
	co = coord_new(cfg, NULL, false);
	if (co) {
		struct coord_info in;

		coord_get_info(co, &in);
		/* A loaded model fits the configured shape. */
		if (in.model && (in.model->n_channels != (uint32_t)cfg->channels ||
				 in.model->window != (uint32_t)cfg->window ||
				 in.model->n_params != fv_model_spec_nparams(&in.model->spec)))
			abort();
		coord_on_connected(co);
		coord_tick(co, fv_now_mono_ms() + 1000, 100);
		coord_free(co);
	}
	unlink(path);
	return 0;
}
