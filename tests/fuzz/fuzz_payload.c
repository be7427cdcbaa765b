/* Fuzz target for sensor payloads (fv_payload_parse): the first byte picks
 * the format and the JSON paths, the rest is the payload, copied into an
 * exact-size buffer without a NUL so over-reads are caught.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=c11 \
 *     -Iinclude tests/fuzz/fuzz_payload.c lib/ingest/[a-z]*.c lib/util/[a-z]*.c \
 *     -lcjson -linih -lm -o fuzz_payload && ./fuzz_payload tests/fuzz/corpus/payload
 * Linked with replay_main.c it replays the corpus (ctest). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/ingest.h"
#include "fedvigil/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const values[] = { "$.value", "$.a.b", "value", "$" };
	static const char *const stamps[] = { "$.ts", "" };
	struct fv_payload_spec spec = { 0 };
	double v = 12345;
	int64_t ts = 12345;
	uint8_t *buf;

	if (size < 1)
		return 0;
	spec.format = data[0] & 1 ? FV_FMT_JSON : FV_FMT_NUMBER;
	fv_strlcpy(spec.value_path, values[(data[0] >> 1) & 3], sizeof(spec.value_path));
	fv_strlcpy(spec.ts_path, stamps[(data[0] >> 3) & 1], sizeof(spec.ts_path));
	buf = malloc(size - 1 ? size - 1 : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1);
	if (fv_payload_parse(&spec, buf, size - 1, &v, &ts) == 0) {
		/* What the agent relies on: a finite value, a sane timestamp. */
		if (!isfinite(v) || ts < -1)
			abort();
	} else if (v != 12345 || ts != 12345) {
		abort(); /* out-parameters must stay untouched on failure */
	}
	free(buf);
	return 0;
}
