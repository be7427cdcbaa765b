/* Fuzz target for the wire decoders (lib/wire): the first byte of an input
 * picks the decoder, the rest is the message.
 *
 *   0 ModelUpdate   1 GlobalModel   2 RoundAnnounce   3 state file
 *   4 GlobalModel, 5 RoundAnnounce, 6 ModelUpdate: signature verification
 *     against the fuzz key (seed bytes 100..131), then, if valid, decoding
 *     (the agents' and coordinator's path with sign.* configured)
 *   7 sign with the fuzz key, then verify: must pass; with any one byte
 *     of the signature changed: must fail
 *   8 ModelUpdate   9 GlobalModel   10 RoundAnnounce   11 CoordState: the
 *     bounds scan (lib/wire/scan.c) alone, then protobuf-c's unpacker on
 *     what it accepts, which must succeed: scanned bytes never take
 *     protobuf-c 1.4.1's error paths (scan.c says why that matters)
 *   12-15 as 0-3
 *
 * Built with -fsanitize=fuzzer (clang) it is a libFuzzer target:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFV_LIBFUZZER ...
 *   ./fuzz_wire tests/fuzz/corpus/wire
 * Linked with replay_main.c instead it is a plain program that replays the
 * files (or directories of files) given as arguments, for ctest. Every crash
 * found becomes a file in tests/fuzz/corpus/wire/. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/sign.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"
#include "wire/wire-int.h"

static struct fv_verify_keys fuzz_keys;
static struct fv_sign_key fuzz_key;

static void fuzz_key_init(void)
{
	static bool done;
	uint8_t seed[32];

	if (done)
		return;
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(100 + i);
	if (fv_sign_key_from_seed(seed, &fuzz_key) < 0)
		abort();
	fuzz_keys.n = 1;
	memcpy(fuzz_keys.pk[0], fuzz_key.pk, sizeof(fuzz_key.pk));
	done = true;
}

/* Verify, and decode what verifies (as the daemons do). */
static void verified(enum fv_msg_kind kind, const uint8_t *p, size_t n)
{
	int r = fv_msg_verify(kind, p, n, &fuzz_keys);

	if (r != 0 && r != -ENOKEY && r != -EKEYREJECTED && r != -EBADMSG && r != -E2BIG)
		abort();
	if (r != 0)
		return;
	if (kind == FV_MSG_GLOBAL) {
		struct fv_global g;

		if (fv_global_decode(p, n, NULL, &g) == 0)
			fv_global_clear(&g);
	} else if (kind == FV_MSG_ANNOUNCE) {
		struct fv_announce a;

		if (fv_announce_decode(p, n, NULL, &a) == 0)
			fv_announce_clear(&a);
	} else {
		struct fv_update u;

		if (fv_update_decode(p, n, NULL, &u) == 0)
			fv_update_clear(&u);
	}
}

/* Signing what frames well must verify; a changed signature must not. */
static void sign_roundtrip(const uint8_t *p, size_t n)
{
	uint8_t *buf = malloc(n ? n : 1);
	size_t len = n;

	if (!buf)
		return;
	memcpy(buf, p, n);
	if (fv_msg_sign(FV_MSG_GLOBAL, &buf, &len, &fuzz_key) == 0) {
		if (fv_msg_verify(FV_MSG_GLOBAL, buf, len, &fuzz_keys) != 0)
			abort();
		buf[len - 1 - (n % FV_SIGN_BYTES)] ^= 0x01;
		if (fv_msg_verify(FV_MSG_GLOBAL, buf, len, &fuzz_keys) == 0)
			abort();
	}
	free(buf);
}

/* Scan, then unpack what the scan accepts: that must not fail. */
static void scan_unpack(unsigned which, const uint8_t *p, size_t n)
{
	static const ProtobufCMessageDescriptor *const desc[] = {
		&fedvigil__v1__model_update__descriptor,
		&fedvigil__v1__global_model__descriptor,
		&fedvigil__v1__round_announce__descriptor,
		&fedvigil__v1__coord_state__descriptor,
	};
	const struct pb_rules *rules[] = { &pb_rules_update, &pb_rules_global,
					   &pb_rules_announce, &pb_rules_state };
	ProtobufCMessage *m;

	if (pb_scan(p, n, rules[which]) < 0)
		return;
	m = protobuf_c_message_unpack(desc[which], NULL, n, n ? p : (const uint8_t *)"");
	if (!m) {
		fprintf(stderr, "%s: %zu bytes pass the scan but do not unpack\n",
			desc[which]->name, n);
		abort();
	}
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	fuzz_key_init();
	if ((data[0] & 15) >= 8 && (data[0] & 15) < 12) {
		scan_unpack(data[0] & 3, p, n);
		return 0;
	}
	switch (data[0] & 7) {
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
	case 3: {
		struct fv_coord_state s;

		if (fv_state_decode(p, n, &s) == 0)
			fv_state_clear(&s);
		break;
	}
	case 4:
		verified(FV_MSG_GLOBAL, p, n);
		break;
	case 5:
		verified(FV_MSG_ANNOUNCE, p, n);
		break;
	case 6:
		verified(FV_MSG_UPDATE, p, n);
		break;
	default:
		sign_roundtrip(p, n);
		break;
	}
	return 0;
}
