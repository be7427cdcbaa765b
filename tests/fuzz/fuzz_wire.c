/* Fuzz target for the wire decoders (lib/wire): the first byte of an input
 * picks the decoder, the rest is the message.
 *
 *   0 ModelUpdate   1 GlobalModel   2 RoundAnnounce   3 state file
 *
 * Built with -fsanitize=fuzzer (clang) it is a libFuzzer target:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFV_LIBFUZZER ...
 *   ./fuzz_wire tests/fuzz/corpus/wire
 * Linked with replay_main.c instead it is a plain program that replays the
 * files (or directories of files) given as arguments, for ctest. Every crash
 * found becomes a file in tests/fuzz/corpus/wire/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "fedvigil/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	switch (data[0] & 3) {
	case 0: {
		struct fv_update u;

		if (fv_update_decode(p, n, NULL, &u) == 0) {
			(void)fv_update_check(&u, u.kind, u.h.round, u.h.base_version,
					      u.n_params, u.n_channels);
			fv_update_clear(&u);
		}
		break;
	}
	case 1: {
		struct fv_global g, c;

		if (fv_global_decode(p, n, NULL, &g) == 0) {
			uint8_t *buf;
			size_t len;

			/* What decodes must encode again. */
			if (fv_global_encode(&g, &buf, &len) != 0)
				abort();
			free(buf);
			if (fv_global_copy(&g, &c) == 0)
				fv_global_clear(&c);
			fv_global_clear(&g);
		}
		break;
	}
	case 2: {
		struct fv_announce a;

		if (fv_announce_decode(p, n, NULL, &a) == 0)
			fv_announce_clear(&a);
		break;
	}
	default: {
		struct fv_coord_state s;

		if (fv_state_decode(p, n, &s) == 0)
			fv_state_clear(&s);
		break;
	}
	}
	return 0;
}
