/* Alignment: the last value of each channel, sampled on a fixed clock.
 *
 * Ticks lie on multiples of period_ms; the first one is the first multiple at
 * or after the first observation. A tick's vector is complete when every
 * channel has a reading no older than max_age_ms at the tick. A reading newer
 * than the tick also counts: with the data clock the caller samples every
 * due tick before observing the reading that made it due (fv_align_due), so
 * that cannot happen there; with the wall clock it only happens when the
 * timer fires a little late, and the freshest value is then the right one. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "fedvigil/ingest.h"
#include "fedvigil/util.h"

/* Bound on period and max_age (2^50 ms, ~35000 years), and timestamps are
 * kept within +-2^62, so that tick arithmetic never overflows. */
#define MAX_SPAN_MS ((int64_t)1 << 50)

struct fv_align {
	uint32_t C;         /* channels */
	int64_t period;     /* ms between ticks */
	int64_t max_age;    /* ms a reading stays fresh */
	int64_t next_tick;  /* INT64_MIN before the first observation */
	uint32_t jump_left; /* samples left before a pending jump, 0 = none;
			     * the last of them reports -ENODATA */
	int64_t jump_to;    /* next_tick after that jump */
	double *val;        /* (C) last value */
	int64_t *ts;        /* (C) its time */
	bool *have;         /* (C) any reading yet */
};

/* floor(x / d) * d for d > 0, also for negative x. */
static int64_t floor_to(int64_t x, int64_t d)
{
	int64_t q = x / d;

	if (x % d != 0 && x < 0)
		q--;
	return q * d;
}

static int64_t ceil_to(int64_t x, int64_t d)
{
	int64_t f = floor_to(x, d);

	return f == x ? x : f + d;
}

struct fv_align *fv_align_new(uint32_t C, int64_t period_ms, int64_t max_age_ms)
{
	struct fv_align *a;

	if (C == 0 || C > FV_MAX_CHANNELS || period_ms <= 0 || max_age_ms <= 0 ||
	    period_ms > MAX_SPAN_MS || max_age_ms > MAX_SPAN_MS) {
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->C = C;
	a->period = period_ms;
	a->max_age = max_age_ms;
	a->next_tick = INT64_MIN;
	a->val = calloc(C, sizeof(*a->val));
	a->ts = calloc(C, sizeof(*a->ts));
	a->have = calloc(C, sizeof(*a->have));
	if (!a->val || !a->ts || !a->have) {
		fv_align_free(a);
		return NULL;
	}
	return a;
}

void fv_align_free(struct fv_align *a)
{
	if (!a)
		return;
	free(a->val);
	free(a->ts);
	free(a->have);
	free(a);
}

/* The last reading received wins, even if its timestamp is older than the
 * one it replaces: a sensor whose clock stepped back would otherwise be
 * ignored until its clock caught up. Staleness is judged at the tick. */
int fv_align_observe(struct fv_align *a, uint32_t ch, double value, int64_t ts_ms)
{
	if (!a || ch >= a->C)
		return -EINVAL;
	if (!isfinite(value) || fabs(value) > FLT_MAX)
		return -ERANGE;
	if (ts_ms < INT64_MIN / 2 || ts_ms > INT64_MAX / 2)
		return -ERANGE;
	if (a->next_tick == INT64_MIN)
		a->next_tick = ceil_to(ts_ms, a->period);
	a->val[ch] = value;
	a->ts[ch] = ts_ms;
	a->have[ch] = true;
	return 0;
}

int64_t fv_align_next_tick(const struct fv_align *a)
{
	return a ? a->next_tick : INT64_MIN;
}

static bool complete_at(const struct fv_align *a, int64_t tick)
{
	for (uint32_t c = 0; c < a->C; c++)
		if (!a->have[c] || a->ts[c] < tick - a->max_age)
			return false;
	return true;
}

int fv_align_sample(struct fv_align *a, float *ret_vec, int64_t *ret_tick_ms)
{
	int64_t tick;
	bool ok;

	if (!a || !ret_vec || !ret_tick_ms)
		return -EINVAL;
	if (a->next_tick == INT64_MIN)
		return -EAGAIN;
	tick = a->next_tick;
	ok = complete_at(a, tick);
	a->next_tick += a->period;
	if (a->jump_left && --a->jump_left == 0) {
		/* The gap marker (see fv_align_due). */
		a->next_tick = a->jump_to;
		ok = false;
	}
	*ret_tick_ms = tick;
	if (!ok)
		return -ENODATA;
	for (uint32_t c = 0; c < a->C; c++)
		ret_vec[c] = (float)a->val[c];
	return 0;
}

/* The ticks due before ts_ms come in two parts: the first ones, still
 * within max_age of the oldest channel's last reading, may be complete; all
 * after those surely are not (nothing newer has been observed: the caller
 * samples before observing). When more than one tick is surely incomplete
 * (a gap), they are skipped instead of sampled one by one: the maybe-complete
 * ticks plus one more are due, and after the caller has sampled them the
 * clock jumps to the first tick at or after ts_ms. That last sampled tick
 * always reports -ENODATA: it marks the gap, so a caller that resets its
 * windows on incomplete vectors never builds a window across it. The same
 * happens when more than `max` ticks are due. Without a gap every tick
 * before ts_ms is due. */
uint32_t fv_align_due(struct fv_align *a, int64_t ts_ms, uint32_t max, uint64_t *ret_skipped)
{
	int64_t last, oldest = INT64_MAX, next, n_total, n_maybe, due;

	if (ret_skipped)
		*ret_skipped = 0;
	if (!a || max == 0 || a->next_tick == INT64_MIN || ts_ms <= a->next_tick ||
	    ts_ms > INT64_MAX / 2)
		return 0;
	/* A jump still pending from an earlier call (the caller sampled fewer
	 * ticks than were due): take it now. */
	if (a->jump_left) {
		a->next_tick = a->jump_to;
		a->jump_left = 0;
		if (ts_ms <= a->next_tick)
			return 0;
	}
	next = ceil_to(ts_ms, a->period); /* first tick >= ts_ms */
	n_total = (next - a->next_tick) / a->period;
	for (uint32_t c = 0; c < a->C; c++) {
		if (!a->have[c]) {
			oldest = INT64_MIN;
			break;
		}
		oldest = FV_MIN(oldest, a->ts[c]);
	}
	/* The last tick that could be complete. */
	last = oldest == INT64_MIN ? INT64_MIN : floor_to(oldest + a->max_age, a->period);
	n_maybe = last < a->next_tick ? 0 : FV_MIN((last - a->next_tick) / a->period + 1, n_total);
	if (n_total - n_maybe <= 1 && n_total <= (int64_t)max)
		return (uint32_t)n_total;
	due = FV_MIN(n_maybe, (int64_t)max - 1) + 1;
	if (ret_skipped)
		*ret_skipped = (uint64_t)(n_total - due);
	a->jump_left = (uint32_t)due;
	a->jump_to = next;
	return (uint32_t)due;
}
