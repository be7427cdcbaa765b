/* fedvigil utilities: errors, logging, clocks, RNG, CRC, files.
 * Everything else in libfedvigil depends on this header and on nothing
 * else of ours. */
#ifndef FEDVIGIL_UTIL_H
#define FEDVIGIL_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FV_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Error codes beyond the plain errno meanings we rely on:
 *   -EBADMSG  malformed payload       -EPROTO   wrong schema version
 *   -E2BIG    too large               -ERANGE   NaN/Inf or out of range
 *   -ESTALE   old round / version     -EXDEV    foreign fleet
 *   -EDOM     wrong shape (sizes do not match the model)
 *   -EALREADY duplicate               -EPERM    sender not selected
 *   -ENOKEY   unsigned (a key is configured) -EKEYREJECTED bad signature
 * fv_strerror() gives our wording for these and strerror() for the rest. */
const char *fv_strerror(int err);

/* ---- logging ---- */
enum fv_log_level {
	FV_LOG_ERR = 3, /* syslog priorities, so journald maps them */
	FV_LOG_WARNING = 4,
	FV_LOG_NOTICE = 5,
	FV_LOG_INFO = 6,
	FV_LOG_DEBUG = 7,
};

/* Set the maximum level printed (default FV_LOG_INFO) and the program tag. */
void fv_log_setup(enum fv_log_level max, const char *tag);
/* Parse "err|warning|notice|info|debug"; -EINVAL on anything else. */
int fv_log_level_parse(const char *s, enum fv_log_level *ret_level);
const char *fv_log_level_name(enum fv_log_level level);
/* True when messages at this level would be printed. */
bool fv_log_enabled(enum fv_log_level level);
/* Log one line to stderr: "<N>msg" when stderr is journald's (JOURNAL_STREAM),
 * "2026-11-23T10:00:00.123Z tag[level] msg" otherwise. Checks the level
 * before formatting. Thread-safe (one write() per line). */
void fv_log(enum fv_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "<3>" when stderr is journald's, "" otherwise: for the messages a daemon
 * prints itself before logging is set up (a bad configuration), so that
 * the journal still files them as errors. */
const char *fv_log_err_prefix(void);
/* A daemon's command-line usage error on stderr, both lines at journald's
 * err priority under systemd: "PROG: MESSAGE" and "Try 'PROG --help'.". */
void fv_log_usage(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a va_list (fv_cli_usage_error() of the tools). */
void fv_log_usagev(const char *prog, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* The same for the option getopt_long() just refused (opterr = 0, '?'). */
void fv_log_bad_option(const char *prog, char *const argv[]);

/* Rate-limited logging state: at most `burst` lines per `interval_ms`;
 * suppressed lines are counted and reported with the next printed one. */
struct fv_ratelimit {
	int64_t interval_ms; /* window length */
	uint32_t burst;      /* lines allowed per window */
	int64_t begin_ms;    /* start of the current window */
	uint32_t printed;    /* lines printed in this window */
	uint64_t suppressed; /* lines dropped since the last printed one */
};
#define FV_RATELIMIT_INIT(ms, n) { .interval_ms = (ms), .burst = (n) }
/* Returns true when the caller may log now; *ret_suppressed gets how many
 * lines were dropped since the last allowed one (and resets it). */
bool fv_ratelimit_ok(struct fv_ratelimit *rl, uint64_t *ret_suppressed);

/* ---- clocks ---- */
/* Monotonic milliseconds (timers, deadlines). */
int64_t fv_now_mono_ms(void);
/* Wall-clock milliseconds since the epoch (timestamps in messages). */
int64_t fv_now_wall_ms(void);
/* Format ms since epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ"; buf >= 32 bytes. */
char *fv_iso8601(int64_t ms, char *buf, size_t len);
/* Parse ISO-8601 UTC ("2026-01-02T03:04:05Z", optional .fff, optional
 * 'T' or ' ' separator, optional Z/+00:00) into ms since epoch. */
int fv_iso8601_parse(const char *s, int64_t *ret_ms);

/* ---- deterministic RNG (xoshiro256**, seeded with splitmix64) ---- */
struct fv_rng {
	uint64_t s[4]; /* state */
};
void fv_rng_seed(struct fv_rng *r, uint64_t seed);
uint64_t fv_rng_u64(struct fv_rng *r);
/* Uniform in [0, 1). */
double fv_rng_uniform(struct fv_rng *r);
/* Standard normal (Box-Muller). */
double fv_rng_normal(struct fv_rng *r);
/* Uniform integer in [0, n). n > 0. */
uint64_t fv_rng_below(struct fv_rng *r, uint64_t n);

/* ---- checksums ---- */
/* CRC-32 (IEEE 802.3, as zlib). Pass crc = 0 to start. */
uint32_t fv_crc32(uint32_t crc, const void *buf, size_t len);

/* ---- files ---- */
/* Atomically replace `path` with `len` bytes: write "<path>.new", fsync,
 * rename over path, fsync the directory. On failure the old file is left
 * intact and "<path>.new" removed. Returns 0 or -errno. */
int fv_file_write_atomic(const char *path, const void *buf, size_t len);
/* mkdir -p: create dir and any missing parents with mode (existing ones
 * are fine). 0, -ENAMETOOLONG (4095 bytes at most) or -errno of mkdir(2). */
int fv_mkdir_p(const char *dir, unsigned mode);
/* Read a whole file of at most max_len bytes. *ret_buf is malloc'd and owned
 * by the caller. -E2BIG if larger, -errno on I/O errors. */
int fv_file_read(const char *path, size_t max_len, void **ret_buf, size_t *ret_len);

/* ---- secrets (secret.c) ---- */
/* Check that path is a regular file that neither group nor others may
 * read or write (a private key, a password file); `what` names it in the
 * message. 0; -EPERM with "<what> <path> is readable by group or others
 * (mode 0644); chmod 600 it" in err; or -errno ("cannot open") when it
 * cannot be examined. */
int fv_file_check_private(const char *path, const char *what, char *err, size_t errlen);
/* Read a secret from a private file (checked as above, on the open file):
 * at most max_len bytes, malloc'd into *ret_buf (NUL-terminated, owned by
 * the caller: wipe with fv_secret_free). 0 or -errno with err. */
int fv_secret_read(const char *path, const char *what, size_t max_len, char **ret_buf,
		   size_t *ret_len, char *err, size_t errlen);
/* Read a one-line secret (a password file of at most 4 KiB: the first
 * line, without its line end) into buf. -E2BIG when longer than size - 1, -ENODATA when
 * empty, or as fv_secret_read(). buf is untouched on failure. */
int fv_secret_read_line(const char *path, const char *what, char *buf, size_t size, char *err,
			size_t errlen);
/* Zero len bytes of buf and free it. NULL-safe. */
void fv_secret_free(void *buf, size_t len);

/* ---- strings ---- */
/* strlcpy semantics: always NUL-terminates; returns -E2BIG if truncated. */
int fv_strlcpy(char *dst, const char *src, size_t size);
/* True if s is a valid MQTT topic level / identifier for fleet and agent
 * names: 1..63 chars of [A-Za-z0-9_.-]. */
bool fv_name_valid(const char *s);

#endif
