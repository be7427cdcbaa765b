/* Fuzz target for Sparkplug B input (lib/wire/sparkplug.c): the first byte
 * picks the message type and scope of the topic, the rest is the payload,
 * which goes through fv_spb_decode() and a channel map that has seen a
 * birth, as in a running agent. Invariants: every value delivered is
 * finite and for a channel that exists; a decoded payload's metrics are
 * consistent.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=c11 \
 *     -Iinclude -Ilib -Ibuild/proto tests/fuzz/fuzz_sparkplug.c lib/wire/sparkplug.c \
 *     lib/wire/scan.c build/proto/sparkplug_b.pb-c.c lib/util/[a-z]*.c \
 *     -lprotobuf-c -lcjson -linih -lm -o fuzz_sparkplug && ./fuzz_sparkplug tests/fuzz/corpus/sparkplug
 * Linked with replay_main.c it replays the corpus (ctest). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/sparkplug.h"
#include "fedvigil/util.h"

#define C 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_value(uint32_t ch, double v, int64_t ts, void *userdata)
{
	(void)userdata;
	if (ch >= C || !isfinite(v) || ts < -1)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const topics[] = {
		"spBv1.0/G/NBIRTH/N", "spBv1.0/G/DBIRTH/N/D", "spBv1.0/G/NDATA/N",
		"spBv1.0/G/DDATA/N/D", "spBv1.0/G/DDEATH/N/D", "spBv1.0/G/NDEATH/N",
		"spBv1.0/G/DDATA/N/E", "spBv1.0/G/NCMD/N",
	};
	/* A birth the map has seen before the fuzzed message: aliases 1..4. */
	static const uint8_t birth[] = {
		0x12, 0x0c, 0x0a, 0x01, 'a', 0x10, 0x01, 0x20, 0x0a, 0x69, 0, 0, 0, 0,
		0x12, 0x0c, 0x0a, 0x01, 'b', 0x10, 0x02, 0x20, 0x03, 0x50, 0xff, 0xff, 0x03, 0x00,
	};
	struct fv_spb_payload p;
	struct fv_spb_map *m;
	uint8_t *buf;

	if (size < 1)
		return 0;
	buf = malloc(size - 1 ? size - 1 : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1);
	if (fv_spb_decode(buf, size - 1, &p) == 0) {
		if (p.n_metrics > FV_SPB_MAX_METRICS || (p.n_metrics && !p.metrics))
			abort();
		for (uint32_t i = 0; i < p.n_metrics; i++) {
			double v;

			if (p.metrics[i].name && strlen(p.metrics[i].name) >= FV_SPB_NAME_MAX)
				abort();
			if (fv_spb_metric_number(&p.metrics[i], data[0] >> 4, &v) == 0 && !isfinite(v))
				abort();
		}
		fv_spb_payload_clear(&p);
	}
	m = fv_spb_map_new("G", "N", C);
	if (m) {
		fv_spb_map_add(m, 0, "D", "a");
		fv_spb_map_add(m, 1, "D", "b");
		fv_spb_map_add(m, 2, "", "a");
		fv_spb_map_add(m, 3, "E", "c");
		fv_spb_map_message(m, "spBv1.0/G/DBIRTH/N/D", birth, sizeof(birth), on_value, NULL);
		fv_spb_map_message(m, topics[data[0] & 7], buf, size - 1, on_value, NULL);
		fv_spb_map_free(m);
	}
	free(buf);
	return 0;
}
