/* fedvigil ingest: sensor payloads -> aligned vectors -> windows -> buffer. */
#ifndef FEDVIGIL_INGEST_H
#define FEDVIGIL_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FV_MAX_CHANNELS 256
#define FV_MAX_SENSOR_PAYLOAD 4096

/* ---- payload parsing ---- */
enum fv_payload_format {
	FV_FMT_NUMBER = 0, /* "21.5" (whitespace around allowed) */
	FV_FMT_JSON = 1,   /* {"value": 21.5, "ts": 1700000000000} */
};

struct fv_payload_spec {
	enum fv_payload_format format;
	char value_path[64]; /* JSON path of the value, "$.value" or "$.a.b" */
	char ts_path[64];    /* JSON path of the timestamp, "" = none; a number is
			      * ms since epoch, a string is ISO-8601 */
};

/* Parse "number|json"; -EINVAL otherwise. */
int fv_payload_format_parse(const char *s, enum fv_payload_format *ret);

/* Parse one sensor payload. *ret_ts_ms = -1 when the payload carries no
 * timestamp. Errors: -E2BIG (len > FV_MAX_SENSOR_PAYLOAD), -EBADMSG (not a
 * number / not JSON / path missing / wrong type), -ERANGE (NaN or Inf).
 * Never reads past buf+len (payloads are not NUL-terminated).
 * Details: a JSON value may be a number, or true/false (1/0); strings are
 * -EBADMSG. Values beyond float range are -ERANGE (they become Inf in the
 * vector). A ts_path absent from the payload (or null) gives -1; a numeric
 * timestamp is always ms (never guessed to be seconds), a string ISO-8601;
 * a negative or post-9999 one is -ERANGE. A malformed path in the spec is
 * -EINVAL. Paths: "$", "$.a.b" or "a.b" (object members only). */
int fv_payload_parse(const struct fv_payload_spec *spec, const void *buf, size_t len,
		     double *ret_value, int64_t *ret_ts_ms);

/* ---- alignment: last value per channel, sampled on a fixed clock ---- */
struct fv_align;

/* C channels sampled every period_ms; a channel whose last reading is older
 * than max_age_ms at a tick (or never arrived) makes that vector incomplete.
 * Caller owns the result. */
struct fv_align *fv_align_new(uint32_t C, int64_t period_ms, int64_t max_age_ms);
void fv_align_free(struct fv_align *a);

/* Record a reading of channel ch taken at ts_ms. -EINVAL if ch >= C. */
int fv_align_observe(struct fv_align *a, uint32_t ch, double value, int64_t ts_ms);

/* The next tick time due, or INT64_MIN before the first observation. Ticks
 * lie on multiples of period_ms. */
int64_t fv_align_next_tick(const struct fv_align *a);

/* Sample the vector for the next tick and advance the tick by one period.
 * ret_vec (C) gets the last values; returns 0 when complete, -ENODATA when
 * some channel is missing or stale (ret_vec then undefined). *ret_tick_ms
 * gets the tick's time. -EAGAIN before the first observation. */
int fv_align_sample(struct fv_align *a, float *ret_vec, int64_t *ret_tick_ms);

/* Data-clock helper: a reading stamped ts_ms has arrived; returns how many
 * ticks are now due (ticks strictly before ts_ms), capped at `max`. When the
 * gap is longer than max_age_ms the clock skips ahead (those ticks could
 * only be incomplete) and the skipped count goes to *ret_skipped.
 * Precisely: on a gap (more than one surely-incomplete tick) or above `max`,
 * the due ticks are those that may still be complete plus one, and the last
 * of them always samples as -ENODATA (a gap marker, so windows never span
 * the gap); after it the clock jumps to the first tick >= ts_ms. The
 * wall-clock mode uses the same call with now as ts_ms. */
uint32_t fv_align_due(struct fv_align *a, int64_t ts_ms, uint32_t max, uint64_t *ret_skipped);

/* ---- windows: W vectors, one every S vectors ---- */
struct fv_window;

struct fv_window *fv_window_new(uint32_t C, uint32_t W, uint32_t S);
void fv_window_free(struct fv_window *w);
/* Append a vector (C) taken at ts_ms. Returns 1 when a window is complete:
 * ret_win (W*C, oldest first, row = one vector) gets it and *ret_start_ms the
 * time of its first vector. Returns 0 otherwise. */
int fv_window_push(struct fv_window *w, const float *vec, int64_t ts_ms, float *ret_win,
		   int64_t *ret_start_ms);
/* Forget partial windows (after an incomplete vector). */
void fv_window_reset(struct fv_window *w);

/* In-place z-normalisation of a window (W rows of C channels). */
void fv_window_normalize(float *win, uint32_t W, uint32_t C, const float *mean,
			 const float *std);

/* ---- ring buffer of fixed-size items (the local training set) ---- */
struct fv_ring;

/* cap items of dim floats, allocated now. */
struct fv_ring *fv_ring_new(size_t dim, size_t cap);
void fv_ring_free(struct fv_ring *r);
/* Append, overwriting the oldest when full. */
void fv_ring_push(struct fv_ring *r, const float *item);
size_t fv_ring_len(const struct fv_ring *r);
size_t fv_ring_dim(const struct fv_ring *r);
/* i-th item, 0 = oldest; borrowed pointer valid until the next push. */
const float *fv_ring_get(const struct fv_ring *r, size_t i);
/* Copy all items, oldest first, into ret (len*dim floats). */
void fv_ring_copy(const struct fv_ring *r, float *ret);
void fv_ring_clear(struct fv_ring *r);

#endif
