/* Ed25519 signatures over protobuf messages (field 15) and key files; see
 * fedvigil/sign.h and the "Signatures" comment of proto/fedvigil.proto.
 *
 * The framing walk here only finds the top-level field-15 record: it
 * checks tags, varints and lengths, nothing else. Everything beyond the
 * signature is left to the decoders, which run after a successful
 * verification (so unauthenticated bytes never reach protobuf-c when a key
 * is configured). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fedvigil/sign.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

#define SIG_FIELD 15
#define SIG_TAG ((SIG_FIELD << 3) | 2) /* 0x7a: field 15, length-delimited */
#define SECRET_PREFIX "fedvigil-ed25519-secret"
#define PUBLIC_PREFIX "fedvigil-ed25519"
#define KEYFILE_MAX 65536

static int sodium_ready(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

/* "fedvigil/v1/<MessageName>" plus its NUL: what a signature is for. */
static const char *context(enum fv_msg_kind kind, size_t *ret_len)
{
	const char *c;

	switch (kind) {
	case FV_MSG_ANNOUNCE:
		c = "fedvigil/v1/RoundAnnounce";
		break;
	case FV_MSG_UPDATE:
		c = "fedvigil/v1/ModelUpdate";
		break;
	case FV_MSG_GLOBAL:
		c = "fedvigil/v1/GlobalModel";
		break;
	default:
		return NULL;
	}
	*ret_len = strlen(c) + 1;
	return c;
}

/* ---- framing ---- */

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 10; i++) {
		if (*p >= end)
			return -EBADMSG;
		uint8_t b = *(*p)++;

		if (i == 9 && b > 1)
			return -EBADMSG;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return -EBADMSG;
}

/* Where the signature record is. */
struct sig_pos {
	unsigned count;      /* field-15 records seen */
	size_t start, end;   /* the (first) record: [start, end) of the buffer */
	size_t sig;          /* offset of its payload */
	uint64_t sig_len;    /* payload length */
	unsigned wire_type;  /* its wire type */
};

/* Walk the top-level fields of buf. 0 or -EBADMSG. */
static int find_signature(const uint8_t *buf, size_t len, struct sig_pos *ret)
{
	const uint8_t *p = buf, *end = buf + len;
	struct sig_pos s = { 0 };
	int r;

	while (p < end) {
		const uint8_t *rec = p;
		uint64_t key, v;

		r = varint(&p, end, &key);
		if (r < 0)
			return r;
		uint64_t field = key >> 3;
		unsigned wt = key & 7;

		if (field == 0 || field > 0x1fffffff)
			return -EBADMSG;
		const uint8_t *payload = p;

		switch (wt) {
		case 0:
			r = varint(&p, end, &v);
			if (r < 0)
				return r;
			break;
		case 1:
			if (end - p < 8)
				return -EBADMSG;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -EBADMSG;
			p += 4;
			break;
		case 2:
			r = varint(&p, end, &v);
			if (r < 0)
				return r;
			if (v > (uint64_t)(end - p))
				return -EBADMSG;
			payload = p;
			p += v;
			break;
		default:
			return -EBADMSG; /* groups and undefined wire types */
		}
		if (field == SIG_FIELD) {
			if (s.count++ == 0) {
				s.start = (size_t)(rec - buf);
				s.end = (size_t)(p - buf);
				s.sig = (size_t)(payload - buf);
				s.sig_len = wt == 2 ? v : 0;
				s.wire_type = wt;
			}
		}
	}
	*ret = s;
	return 0;
}

bool fv_msg_is_signed(const void *buf, size_t len)
{
	struct sig_pos s;

	if (!buf || len > FV_MAX_MSG_BYTES || find_signature(buf, len, &s) < 0)
		return false;
	return s.count > 0;
}

/* ctx || head || tail in one malloc'd buffer. */
static uint8_t *join(const char *ctx, size_t ctx_len, const uint8_t *head, size_t head_len,
		     const uint8_t *tail, size_t tail_len, size_t *ret_len)
{
	uint8_t *m = malloc(ctx_len + head_len + tail_len + 1);

	if (!m)
		return NULL;
	memcpy(m, ctx, ctx_len);
	if (head_len)
		memcpy(m + ctx_len, head, head_len);
	if (tail_len)
		memcpy(m + ctx_len + head_len, tail, tail_len);
	*ret_len = ctx_len + head_len + tail_len;
	return m;
}

int fv_msg_sign(enum fv_msg_kind kind, uint8_t **buf, size_t *len, const struct fv_sign_key *k)
{
	uint8_t sig[FV_SIGN_BYTES], *m, *grown;
	struct sig_pos s;
	size_t ctx_len = 0, mlen;
	const char *ctx = context(kind, &ctx_len);
	int r;

	if (!ctx || !buf || !len || !k || (!*buf && *len))
		return -EINVAL;
	if (*len > FV_MAX_MSG_BYTES - FV_SIGN_RECORD)
		return -E2BIG;
	r = sodium_ready();
	if (r < 0)
		return r;
	r = find_signature(*buf, *len, &s);
	if (r < 0)
		return r;
	if (s.count)
		return -EALREADY;
	m = join(ctx, ctx_len, *buf, *len, NULL, 0, &mlen);
	if (!m)
		return -ENOMEM;
	crypto_sign_detached(sig, NULL, m, mlen, k->sk);
	free(m);
	grown = realloc(*buf, *len + FV_SIGN_RECORD);
	if (!grown)
		return -ENOMEM;
	grown[*len] = SIG_TAG;
	grown[*len + 1] = FV_SIGN_BYTES;
	memcpy(grown + *len + 2, sig, FV_SIGN_BYTES);
	*buf = grown;
	*len += FV_SIGN_RECORD;
	return 0;
}

int fv_msg_verify(enum fv_msg_kind kind, const void *vbuf, size_t len,
		  const struct fv_verify_keys *keys)
{
	const uint8_t *buf = vbuf;
	struct sig_pos s;
	size_t ctx_len = 0, mlen;
	const char *ctx = context(kind, &ctx_len);
	uint8_t *m;
	int r;

	if (!ctx || !keys || (!buf && len))
		return -EINVAL;
	if (len > FV_MAX_MSG_BYTES)
		return -E2BIG;
	r = sodium_ready();
	if (r < 0)
		return r;
	r = find_signature(buf, len, &s);
	if (r < 0)
		return r;
	if (s.count == 0)
		return -ENOKEY;
	if (s.count > 1 || s.wire_type != 2 || s.sig_len != FV_SIGN_BYTES)
		return -EBADMSG;
	m = join(ctx, ctx_len, buf, s.start, buf + s.end, len - s.end, &mlen);
	if (!m)
		return -ENOMEM;
	r = -EKEYREJECTED;
	for (uint32_t i = 0; i < keys->n && i < FV_SIGN_MAX_KEYS; i++)
		if (crypto_sign_verify_detached(buf + s.sig, m, mlen, keys->pk[i]) == 0) {
			r = 0;
			break;
		}
	free(m);
	return r;
}

/* ---- keys ---- */

int fv_sign_keygen(struct fv_sign_key *ret)
{
	if (sodium_ready() < 0)
		return -EIO;
	crypto_sign_keypair(ret->pk, ret->sk);
	return 0;
}

int fv_sign_key_from_seed(const uint8_t seed[32], struct fv_sign_key *ret)
{
	if (sodium_ready() < 0)
		return -EIO;
	crypto_sign_seed_keypair(ret->pk, ret->sk, seed);
	return 0;
}

void fv_sign_key_wipe(struct fv_sign_key *k)
{
	if (k)
		sodium_memzero(k, sizeof(*k));
}

void fv_sign_pub_text(const uint8_t pk[FV_SIGN_PUB_BYTES], char buf[FV_SIGN_PUB_TEXT])
{
	char b64[sodium_base64_ENCODED_LEN(FV_SIGN_PUB_BYTES, sodium_base64_VARIANT_ORIGINAL)];

	sodium_bin2base64(b64, sizeof(b64), pk, FV_SIGN_PUB_BYTES, sodium_base64_VARIANT_ORIGINAL);
	snprintf(buf, FV_SIGN_PUB_TEXT, PUBLIC_PREFIX " %s", b64);
}

/* Next line of text (NUL-terminated in place): skips blank and '#' lines.
 * Returns the line with its blanks trimmed, or NULL at the end; *lineno
 * counts lines. */
static char *next_line(char **cursor, int *lineno)
{
	while (**cursor) {
		char *line = *cursor, *nl = strchr(line, '\n'), *e;

		*cursor = nl ? nl + 1 : line + strlen(line);
		if (nl)
			*nl = '\0';
		(*lineno)++;
		while (*line == ' ' || *line == '\t')
			line++;
		e = line + strlen(line);
		while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = '\0';
		if (*line && *line != '#')
			return line;
	}
	return NULL;
}

/* "<prefix> <base64 of 32 bytes>[ comment]" -> out. 0 or -EINVAL. */
static int parse_key_line(const char *line, const char *prefix, uint8_t out[32])
{
	size_t n = strlen(prefix), b64_len, bin_len = 0;
	const char *b64, *end;

	if (strncmp(line, prefix, n) != 0 || (line[n] != ' ' && line[n] != '\t'))
		return -EINVAL;
	b64 = line + n;
	while (*b64 == ' ' || *b64 == '\t')
		b64++;
	end = b64;
	while (*end && *end != ' ' && *end != '\t')
		end++;
	b64_len = (size_t)(end - b64);
	if (sodium_base642bin(out, 32, b64, b64_len, NULL, &bin_len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != 32)
		return -EINVAL;
	return 0;
}

int fv_sign_key_load(const char *path, struct fv_sign_key *ret, char *err, size_t errlen)
{
	struct fv_sign_key k;
	uint8_t seed[32];
	char *text = NULL, *cursor, *line;
	size_t len = 0;
	int lineno = 0, r;

	r = sodium_ready();
	if (r < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return r;
	}
	r = fv_secret_read(path, "private key", KEYFILE_MAX, &text, &len, err, errlen);
	if (r < 0)
		return r;
	cursor = text;
	line = next_line(&cursor, &lineno);
	if (!line) {
		snprintf(err, errlen, "private key %s holds no key", path);
		r = -EINVAL;
		goto out;
	}
	if (parse_key_line(line, SECRET_PREFIX, seed) < 0) {
		/* Not echoed: it may be the key itself. */
		snprintf(err, errlen,
			 "private key %s:%d: not a fedvigil private key (expected '" SECRET_PREFIX
			 " <base64>'; make one with fedvigil-keygen)",
			 path, lineno);
		r = -EINVAL;
		goto out;
	}
	if (next_line(&cursor, &lineno)) {
		snprintf(err, errlen, "private key %s:%d: more than one key", path, lineno);
		r = -EINVAL;
		goto out;
	}
	crypto_sign_seed_keypair(k.pk, k.sk, seed);
	*ret = k;
	r = 0;
out:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(&k, sizeof(k));
	fv_secret_free(text, KEYFILE_MAX + 1);
	return r;
}

int fv_verify_keys_load(const char *path, struct fv_verify_keys *ret, char *err, size_t errlen)
{
	struct fv_verify_keys keys = { 0 };
	void *data = NULL;
	char *cursor, *line;
	size_t len = 0;
	int lineno = 0, r;

	r = fv_file_read(path, KEYFILE_MAX, &data, &len);
	if (r < 0) {
		snprintf(err, errlen, "public key file %s: %s", path,
			 r == -E2BIG ? "too large" : fv_strerror(r));
		return r;
	}
	cursor = data;
	if (memchr(data, '\0', len)) {
		snprintf(err, errlen, "public key file %s is not text", path);
		r = -EINVAL;
		goto out;
	}
	while ((line = next_line(&cursor, &lineno))) {
		if (strncmp(line, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0) {
			snprintf(err, errlen,
				 "%s:%d: this is a private key; give the .pub file (and keep this "
				 "one secret)",
				 path, lineno);
			r = -EINVAL;
			goto out;
		}
		if (keys.n == FV_SIGN_MAX_KEYS) {
			snprintf(err, errlen, "%s:%d: more than %d public keys", path, lineno,
				 FV_SIGN_MAX_KEYS);
			r = -E2BIG;
			goto out;
		}
		if (parse_key_line(line, PUBLIC_PREFIX, keys.pk[keys.n]) < 0) {
			snprintf(err, errlen,
				 "%s:%d: not a public key (expected '" PUBLIC_PREFIX
				 " <base64 of 32 bytes> [comment]')",
				 path, lineno);
			r = -EINVAL;
			goto out;
		}
		keys.n++;
	}
	if (keys.n == 0) {
		snprintf(err, errlen, "public key file %s holds no key", path);
		r = -EINVAL;
		goto out;
	}
	*ret = keys;
	r = 0;
out:
	free(data);
	return r;
}

/* Write text to path with mode, replacing it only when overwrite. */
static int write_file(const char *path, const char *text, mode_t mode, bool overwrite,
		      char *err, size_t errlen)
{
	size_t len = strlen(text), off = 0;
	int fd, r = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL),
		  mode);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s%s", path, strerror(-r),
			 r == -EEXIST ? " (keeping it; remove it first, or --force)" : "");
		return r;
	}
	/* An existing file keeps its mode through O_TRUNC: set ours. */
	if (fchmod(fd, mode) < 0)
		r = -errno;
	while (r == 0 && off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		else
			off += (size_t)n;
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0)
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-r));
	return r;
}

int fv_sign_key_save(const char *path, const char *pub_path, const struct fv_sign_key *k,
		     const char *comment, bool overwrite, char *err, size_t errlen)
{
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	char text[256], pub[FV_SIGN_PUB_TEXT], pubtext[512];
	int r;

	if (comment && strpbrk(comment, "\r\n")) {
		snprintf(err, errlen, "the key comment may not contain line breaks");
		return -EINVAL;
	}
	if (sodium_ready() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return -EIO;
	}
	/* The first 32 bytes of a libsodium secret key are its seed. */
	sodium_bin2base64(b64, sizeof(b64), k->sk, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(text, sizeof(text),
		 "# fedvigil Ed25519 private key%s%s: keep it secret (mode 0600)\n" SECRET_PREFIX
		 " %s\n",
		 comment ? " of " : "", comment ? comment : "", b64);
	r = write_file(path, text, 0600, overwrite, err, errlen);
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(text, sizeof(text));
	if (r < 0)
		return r;
	fv_sign_pub_text(k->pk, pub);
	snprintf(pubtext, sizeof(pubtext), "# fedvigil Ed25519 public key%s%s\n%s%s%s\n",
		 comment ? " of " : "", comment ? comment : "", pub, comment ? " " : "",
		 comment ? comment : "");
	r = write_file(pub_path, pubtext, 0644, overwrite, err, errlen);
	if (r < 0)
		unlink(path); /* no private key without its public half */
	return r;
}
