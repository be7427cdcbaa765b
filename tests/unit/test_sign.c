/* Unit tests for signed messages and key files (lib/wire/sign.c), and the
 * epoch field of the wire format.
 *
 * Golden values (public key of a fixed seed, signature of a fixed message)
 * come from tests/unit/golden/sign_golden.py, which computes them with the
 * Python `cryptography` package, independently of libsodium and our
 * framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fedvigil/sign.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

/* tests/unit/golden/sign_golden.py */
static const uint8_t golden_pub[32] = {
	0x79, 0xb5, 0x56, 0x2e, 0x8f, 0xe6, 0x54, 0xf9, 0x40, 0x78, 0xb1, 0x12,
	0xe8, 0xa9, 0x8b, 0xa7, 0x90, 0x1f, 0x85, 0x3a, 0xe6, 0x95, 0xbe, 0xd7,
	0xe0, 0xe3, 0x91, 0x0b, 0xad, 0x04, 0x96, 0x64,
};
static const uint8_t golden_msg[5] = {
	0x10, 0x02, 0x20, 0xe8, 0x07,
};
static const uint8_t golden_sig[64] = {
	0x89, 0x99, 0x5f, 0x99, 0x77, 0x6c, 0x15, 0x00, 0x42, 0xf7, 0xb9, 0x30,
	0x13, 0x7a, 0x3d, 0x6b, 0x2b, 0xda, 0xd5, 0xa2, 0xca, 0x89, 0xfc, 0x38,
	0x4d, 0x86, 0x36, 0x90, 0x5c, 0xff, 0x6c, 0xc4, 0x43, 0xda, 0x37, 0xa8,
	0xdd, 0x71, 0xaf, 0xef, 0xec, 0x02, 0xee, 0x17, 0xe7, 0x75, 0x3d, 0xe9,
	0x47, 0xa0, 0xbf, 0xa8, 0xee, 0xab, 0x0a, 0x76, 0x39, 0xcf, 0x0c, 0xe2,
	0xc8, 0x4c, 0xd6, 0x0f,
};

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/fv-test-sign.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *path(const char *name)
{
	static char p[4][128];
	static int next;
	char *r = p[next++ % 4];

	snprintf(r, sizeof(p[0]), "%s/%s", dir, name);
	return r;
}

static void write_text(const char *p, const char *text, mode_t mode)
{
	FILE *f = fopen(p, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(p, mode), 0);
}

static void golden_key(struct fv_sign_key *k)
{
	uint8_t seed[32];

	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(i + 1);
	assert_int_equal(fv_sign_key_from_seed(seed, k), 0);
}

static struct fv_verify_keys keys_of(const struct fv_sign_key *k)
{
	struct fv_verify_keys v = { .n = 1 };

	memcpy(v.pk[0], k->pk, 32);
	return v;
}

static uint8_t *dup_bytes(const void *src, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);

	assert_non_null(d);
	memcpy(d, src, n);
	return d;
}

/* A GlobalModel of W=2 x C=2, 4-2-4, encoded into a malloc'd buffer. */
static void encode_global(uint64_t epoch, uint64_t version, uint8_t **ret, size_t *ret_len)
{
	static const uint32_t hidden[] = { 2 };
	struct fv_global g;

	memset(&g, 0, sizeof(g));
	g.h.schema = FV_SCHEMA_VERSION;
	strcpy(g.h.fleet, "f");
	strcpy(g.h.sender, "coordinator");
	g.h.round = 3;
	g.version = version;
	g.epoch = epoch;
	assert_int_equal(fv_model_spec_autoencoder(4, hidden, 1, FV_ACT_TANH, FV_ACT_LINEAR,
						   &g.spec), 0);
	g.window = 2;
	g.stride = 1;
	g.n_channels = 2;
	float mean[2] = { 1, 2 }, sd[2] = { 1, 3 };

	g.mean = mean;
	g.std = sd;
	g.n_params = fv_model_spec_nparams(&g.spec);
	g.params = calloc(g.n_params, sizeof(float));
	assert_non_null(g.params);
	for (size_t i = 0; i < g.n_params; i++)
		g.params[i] = (float)i * 0.125f;
	g.threshold = 0.5f;
	g.percentile = 99;
	assert_int_equal(fv_global_encode(&g, ret, ret_len), 0);
	free(g.params);
}

/* ---- tests ---- */

/* Our framing and libsodium agree with an independent implementation. */
static void test_golden(void **state)
{
	struct fv_sign_key k;
	struct fv_verify_keys v = { .n = 1 };
	uint8_t *buf = dup_bytes(golden_msg, sizeof(golden_msg));
	size_t len = sizeof(golden_msg);

	(void)state;
	golden_key(&k);
	assert_memory_equal(k.pk, golden_pub, 32);
	assert_int_equal(fv_msg_sign(FV_MSG_ANNOUNCE, &buf, &len, &k), 0);
	assert_int_equal(len, sizeof(golden_msg) + FV_SIGN_RECORD);
	assert_memory_equal(buf, golden_msg, sizeof(golden_msg));
	assert_int_equal(buf[5], 0x7a); /* field 15, length-delimited */
	assert_int_equal(buf[6], 64);
	assert_memory_equal(buf + 7, golden_sig, 64);
	memcpy(v.pk[0], golden_pub, 32);
	assert_int_equal(fv_msg_verify(FV_MSG_ANNOUNCE, buf, len, &v), 0);
	/* The context binds the message type. */
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, len, &v), -EKEYREJECTED);
	assert_int_equal(fv_msg_verify(FV_MSG_UPDATE, buf, len, &v), -EKEYREJECTED);
	free(buf);
	fv_sign_key_wipe(&k);
}

/* Every single-bit change of a signed model fails verification. */
static void test_tamper(void **state)
{
	struct fv_sign_key k;
	struct fv_verify_keys v;
	uint8_t *buf;
	size_t len;
	unsigned bad_sig = 0, bad_frame = 0;

	(void)state;
	assert_int_equal(fv_sign_keygen(&k), 0);
	v = keys_of(&k);
	encode_global(5, 9, &buf, &len);
	assert_false(fv_msg_is_signed(buf, len));
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, len, &v), -ENOKEY);
	assert_int_equal(fv_msg_sign(FV_MSG_GLOBAL, &buf, &len, &k), 0);
	assert_true(fv_msg_is_signed(buf, len));
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, len, &v), 0);
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 8; b += 3) {
			int r;

			buf[i] ^= (uint8_t)(1u << b);
			r = fv_msg_verify(FV_MSG_GLOBAL, buf, len, &v);
			buf[i] ^= (uint8_t)(1u << b);
			if (r == 0)
				fail_msg("bit %d of byte %zu flipped and the signature still verifies", b,
					 i);
			assert_true(r == -EKEYREJECTED || r == -EBADMSG || r == -ENOKEY);
			if (r == -EKEYREJECTED)
				bad_sig++;
			else
				bad_frame++;
		}
	}
	print_message("%zu bytes x 3 bits: %u bad signature, %u bad framing\n", len, bad_sig,
		      bad_frame);
	assert_true(bad_sig > len); /* most changes reach the signature check */
	/* Truncated anywhere: never valid. */
	for (size_t n = 0; n < len; n++)
		assert_int_not_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, n, &v), 0);
	free(buf);
	fv_sign_key_wipe(&k);
}

static void test_keys_and_framing(void **state)
{
	struct fv_sign_key k, other;
	struct fv_verify_keys v, both = { .n = 2 };
	uint8_t *buf, *moved;
	size_t len;

	(void)state;
	assert_int_equal(fv_sign_keygen(&k), 0);
	assert_int_equal(fv_sign_keygen(&other), 0);
	assert_memory_not_equal(k.pk, other.pk, 32);
	v = keys_of(&other);
	encode_global(1, 2, &buf, &len);
	assert_int_equal(fv_msg_sign(FV_MSG_GLOBAL, &buf, &len, &k), 0);
	/* Another key: rejected; a list holding the right key second: ok. */
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, len, &v), -EKEYREJECTED);
	memcpy(both.pk[0], other.pk, 32);
	memcpy(both.pk[1], k.pk, 32);
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, len, &both), 0);
	v = keys_of(&k);
	/* Signing twice is refused and leaves the buffer alone. */
	size_t before = len;

	assert_int_equal(fv_msg_sign(FV_MSG_GLOBAL, &buf, &len, &k), -EALREADY);
	assert_int_equal(len, before);
	/* The record may sit anywhere: moved to the front, still valid. */
	moved = malloc(len);
	assert_non_null(moved);
	memcpy(moved, buf + len - FV_SIGN_RECORD, FV_SIGN_RECORD);
	memcpy(moved + FV_SIGN_RECORD, buf, len - FV_SIGN_RECORD);
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, moved, len, &v), 0);
	/* Two signature records: malformed, even if both are valid. */
	uint8_t *two = malloc(len + FV_SIGN_RECORD);

	assert_non_null(two);
	memcpy(two, buf, len);
	memcpy(two + len, buf + len - FV_SIGN_RECORD, FV_SIGN_RECORD);
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, two, len + FV_SIGN_RECORD, &v), -EBADMSG);
	/* A signature of the wrong size, or as a varint: malformed. */
	uint8_t short_sig[] = { 0x10, 0x02, 0x7a, 0x03, 1, 2, 3 };
	uint8_t varint_sig[] = { 0x10, 0x02, 0x78, 0x01 };

	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, short_sig, sizeof(short_sig), &v), -EBADMSG);
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, varint_sig, sizeof(varint_sig), &v),
			 -EBADMSG);
	/* Broken framing is malformed; no keys verify nothing; too big. */
	uint8_t broken[] = { 0x12, 0x7f, 0x00 };

	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, broken, sizeof(broken), &v), -EBADMSG);
	assert_int_equal(fv_msg_sign(FV_MSG_GLOBAL, &(uint8_t *){ broken }, &(size_t){ 3 }, &k),
			 -EBADMSG);
	struct fv_verify_keys none = { .n = 0 };

	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, len, &none), -EKEYREJECTED);
	assert_int_equal(fv_msg_verify(FV_MSG_GLOBAL, buf, (size_t)FV_MAX_MSG_BYTES + 1, &v),
			 -E2BIG);
	/* The empty message signs and verifies too. */
	uint8_t *empty = NULL;
	size_t elen = 0;

	assert_int_equal(fv_msg_sign(FV_MSG_ANNOUNCE, &empty, &elen, &k), 0);
	assert_int_equal(elen, FV_SIGN_RECORD);
	assert_int_equal(fv_msg_verify(FV_MSG_ANNOUNCE, empty, elen, &v), 0);
	free(empty);
	free(two);
	free(moved);
	free(buf);
	fv_sign_key_wipe(&k);
	fv_sign_key_wipe(&other);
}

/* Signed messages decode as before; the epoch round-trips. */
static void test_decode_signed(void **state)
{
	struct fv_sign_key k;
	struct fv_global g;
	struct fv_announce a, b;
	struct fv_coord_state st, st2;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(fv_sign_keygen(&k), 0);
	encode_global(1767225600000ull, 42, &buf, &len);
	assert_int_equal(fv_msg_sign(FV_MSG_GLOBAL, &buf, &len, &k), 0);
	assert_int_equal(fv_global_decode(buf, len, "f", &g), 0);
	assert_int_equal(g.epoch, 1767225600000ull);
	assert_int_equal(g.version, 42);
	/* The state file keeps the epoch of the coordinator and its model. */
	memset(&st, 0, sizeof(st));
	st.round = 43;
	st.kind = FV_ROUND_TRAIN;
	st.epoch = 1767225600000ull;
	st.have_model = true;
	st.model = g;
	free(buf);
	assert_int_equal(fv_state_encode(&st, &buf, &len), 0);
	assert_int_equal(fv_state_decode(buf, len, &st2), 0);
	assert_int_equal(st2.epoch, 1767225600000ull);
	assert_int_equal(st2.model.epoch, 1767225600000ull);
	fv_state_clear(&st2);
	fv_global_clear(&g);
	free(buf);

	memset(&a, 0, sizeof(a));
	a.h.schema = FV_SCHEMA_VERSION;
	strcpy(a.h.fleet, "f");
	strcpy(a.h.sender, "coordinator");
	a.h.round = 7;
	a.kind = FV_ROUND_TRAIN;
	a.epoch = 99;
	assert_int_equal(fv_announce_encode(&a, &buf, &len), 0);
	assert_int_equal(fv_msg_sign(FV_MSG_ANNOUNCE, &buf, &len, &k), 0);
	assert_int_equal(fv_announce_decode(buf, len, "f", &b), 0);
	assert_int_equal(b.epoch, 99);
	assert_int_equal(b.h.round, 7);
	fv_announce_clear(&b);
	/* A second signature record is malformed for the decoder as well. */
	uint8_t *two = malloc(len + FV_SIGN_RECORD);

	assert_non_null(two);
	memcpy(two, buf, len);
	memcpy(two + len, buf + len - FV_SIGN_RECORD, FV_SIGN_RECORD);
	assert_int_equal(fv_announce_decode(two, len + FV_SIGN_RECORD, "f", &b), -EBADMSG);
	free(two);
	free(buf);
	fv_sign_key_wipe(&k);
}

static void test_key_files(void **state)
{
	struct fv_sign_key k, loaded;
	struct fv_verify_keys v;
	char err[700], pub[FV_SIGN_PUB_TEXT], text[1024];
	struct stat st;
	FILE *f;

	(void)state;
	assert_int_equal(fv_sign_keygen(&k), 0);
	assert_int_equal(fv_sign_key_save(path("c.key"), path("c.pub"), &k, "coordinator of f",
					  false, err, sizeof(err)), 0);
	assert_int_equal(stat(path("c.key"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(path("c.pub"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(fv_sign_key_load(path("c.key"), &loaded, err, sizeof(err)), 0);
	assert_memory_equal(loaded.pk, k.pk, 32);
	assert_memory_equal(loaded.sk, k.sk, 64);
	assert_int_equal(fv_verify_keys_load(path("c.pub"), &v, err, sizeof(err)), 0);
	assert_int_equal(v.n, 1);
	assert_memory_equal(v.pk[0], k.pk, 32);
	/* Existing files are kept unless asked. */
	assert_int_equal(fv_sign_key_save(path("c.key"), path("c.pub"), &k, NULL, false, err,
					  sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "c.key"));

	/* A loose private key is refused, naming the file and mode. */
	assert_int_equal(chmod(path("c.key"), 0640), 0);
	assert_int_equal(fv_sign_key_load(path("c.key"), &loaded, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "(mode 0640)"));
	/* --force resets the mode of an existing file. */
	assert_int_equal(fv_sign_key_save(path("c.key"), path("c.pub"), &k, NULL, true, err,
					  sizeof(err)), 0);
	assert_int_equal(stat(path("c.key"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* A public file with two keys (rotation), comments and blanks. */
	struct fv_sign_key k2;

	assert_int_equal(fv_sign_keygen(&k2), 0);
	fv_sign_pub_text(k.pk, pub);
	snprintf(text, sizeof(text), "# old\n%s old key\n\n", pub);
	fv_sign_pub_text(k2.pk, pub);
	snprintf(text + strlen(text), sizeof(text) - strlen(text), "  %s  \n# end\n", pub);
	write_text(path("two.pub"), text, 0644);
	assert_int_equal(fv_verify_keys_load(path("two.pub"), &v, err, sizeof(err)), 0);
	assert_int_equal(v.n, 2);
	assert_memory_equal(v.pk[1], k2.pk, 32);

	/* Errors name the file and line; the key is never echoed. */
	write_text(path("bad.pub"), "# c\nfedvigil-ed25519 notbase64!\n", 0644);
	assert_int_equal(fv_verify_keys_load(path("bad.pub"), &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad.pub:2"));
	write_text(path("short.pub"), "fedvigil-ed25519 AAAA\n", 0644);
	assert_int_equal(fv_verify_keys_load(path("short.pub"), &v, err, sizeof(err)), -EINVAL);
	write_text(path("empty.pub"), "# nothing\n", 0644);
	assert_int_equal(fv_verify_keys_load(path("empty.pub"), &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no key"));
	assert_int_equal(fv_verify_keys_load(path("c.key"), &v, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "private key"));
	f = fopen(path("c.key"), "r");
	assert_non_null(f);
	assert_non_null(fgets(text, sizeof(text), f)); /* comment */
	assert_non_null(fgets(text, sizeof(text), f)); /* the key line */
	fclose(f);
	text[strcspn(text, "\n")] = '\0';
	assert_null(strstr(err, text + strlen("fedvigil-ed25519-secret ")));
	write_text(path("pub-as-key.key"), pub, 0600);
	assert_int_equal(fv_sign_key_load(path("pub-as-key.key"), &loaded, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "fedvigil-keygen"));
	assert_int_equal(fv_verify_keys_load(path("missing.pub"), &v, err, sizeof(err)), -ENOENT);

	/* Nine keys are too many. */
	text[0] = '\0';
	for (int i = 0; i < FV_SIGN_MAX_KEYS + 1; i++) {
		fv_sign_pub_text(k.pk, pub);
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", pub);
	}
	write_text(path("nine.pub"), text, 0644);
	assert_int_equal(fv_verify_keys_load(path("nine.pub"), &v, err, sizeof(err)), -E2BIG);
	fv_sign_key_wipe(&k);
	fv_sign_key_wipe(&k2);
	fv_sign_key_wipe(&loaded);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_keys_and_framing),
		cmocka_unit_test(test_decode_signed),
		cmocka_unit_test(test_key_files),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
