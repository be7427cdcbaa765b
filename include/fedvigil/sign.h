/* fedvigil message signatures: Ed25519 (libsodium) over protobuf messages,
 * as proto/fedvigil.proto describes ("Signatures"), and the key files.
 *
 * The coordinator signs every GlobalModel and RoundAnnounce; agents verify
 * them against the coordinator's public key(s) before anything is
 * unpacked. Agents may sign their ModelUpdates, verified by the coordinator
 * against per-agent public keys.
 *
 * Key files are text, one key per line, '#' comments allowed:
 *   private  "fedvigil-ed25519-secret <base64 of the 32-byte seed>", mode
 *            0600 (anything looser is refused)
 *   public   "fedvigil-ed25519 <base64 of the 32-byte key> [comment]"; a
 *            public file may list up to FV_SIGN_MAX_KEYS keys, any of which
 *            is trusted (key rotation). */
#ifndef FEDVIGIL_SIGN_H
#define FEDVIGIL_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_SIGN_PUB_BYTES 32   /* Ed25519 public key */
#define FV_SIGN_BYTES 64       /* Ed25519 signature */
#define FV_SIGN_MAX_KEYS 8     /* public keys trusted at once */
#define FV_SIGN_PUB_TEXT 80    /* "fedvigil-ed25519 <base64>" + NUL */
#define FV_SIGN_RECORD 66      /* bytes a signature adds to a message */

/* Which message a signature belongs to (its context string). */
enum fv_msg_kind {
	FV_MSG_ANNOUNCE = 1, /* RoundAnnounce */
	FV_MSG_UPDATE,       /* ModelUpdate */
	FV_MSG_GLOBAL,       /* GlobalModel */
};

/* A private key: secret, wipe with fv_sign_key_wipe(). */
struct fv_sign_key {
	uint8_t sk[64];                /* libsodium secret key (seed + public) */
	uint8_t pk[FV_SIGN_PUB_BYTES]; /* its public key */
};

/* Trusted public keys. */
struct fv_verify_keys {
	uint32_t n;                                      /* keys in pk */
	uint8_t pk[FV_SIGN_MAX_KEYS][FV_SIGN_PUB_BYTES]; /* any of them verifies */
};

/* A new random key pair. 0 or -EIO (libsodium failed to start). */
int fv_sign_keygen(struct fv_sign_key *ret);
/* The key pair of a 32-byte seed (tests, fuzzing). */
int fv_sign_key_from_seed(const uint8_t seed[32], struct fv_sign_key *ret);
void fv_sign_key_wipe(struct fv_sign_key *k);

/* Load a private key file; it must not be accessible by group or others
 * (-EPERM). 0 or -errno with the reason in err (which names the file and
 * line, never the key). *ret is untouched on failure. */
int fv_sign_key_load(const char *path, struct fv_sign_key *ret, char *err, size_t errlen);
/* Write k to path with mode 0600, and its public key to pub_path (mode
 * 0644) with the comment. Existing files are kept (-EEXIST) unless
 * overwrite. 0 or -errno with err. */
int fv_sign_key_save(const char *path, const char *pub_path, const struct fv_sign_key *k,
		     const char *comment, bool overwrite, char *err, size_t errlen);
/* Load the public keys of a file (1..FV_SIGN_MAX_KEYS lines). 0 or -errno
 * with err naming the file and line. */
int fv_verify_keys_load(const char *path, struct fv_verify_keys *ret, char *err, size_t errlen);
/* "fedvigil-ed25519 <base64>" of a public key, into buf. */
void fv_sign_pub_text(const uint8_t pk[FV_SIGN_PUB_BYTES], char buf[FV_SIGN_PUB_TEXT]);

/* Sign the encoded message *buf (*len bytes, no signature yet): appends
 * the field-15 record, growing *buf with realloc. 0, -EALREADY if it is
 * already signed, -EBADMSG if *buf is not a well-formed message, -ENOMEM.
 * On failure *buf and *len are unchanged. */
int fv_msg_sign(enum fv_msg_kind kind, uint8_t **buf, size_t *len, const struct fv_sign_key *k);
/* Verify a received message against keys before decoding it: 0 when it
 * carries exactly one signature (field 15) that one of the keys made over
 * the rest; -ENOKEY when it has none, -EKEYREJECTED when none of the keys
 * made it, -EBADMSG when the framing is malformed (also: two signatures, a
 * signature of the wrong size), -E2BIG over FV_MAX_MSG_BYTES, -ENOMEM. */
int fv_msg_verify(enum fv_msg_kind kind, const void *buf, size_t len,
		  const struct fv_verify_keys *keys);
/* True when the message has a field-15 record (whether valid or not). */
bool fv_msg_is_signed(const void *buf, size_t len);

#endif
