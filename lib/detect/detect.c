/* fedvigil detection: debouncing and attribution. */
#include "fedvigil/detect.h"

#include <errno.h>
#include <string.h>

int fv_detect_init(struct fv_detector *d, const struct fv_detect_opts *o)
{
	if (o->n < 1 || o->n > FV_DETECT_MAX_N || o->k < 1 || o->k > o->n || o->clear_n < 1 ||
	    !(o->clear_ratio > 0.0f && o->clear_ratio <= 1.0f))
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->o = *o;
	return 0;
}

void fv_detect_reset_history(struct fv_detector *d)
{
	d->pos = 0;
	d->filled = 0;
	d->calm = 0;
}

enum fv_detect_event fv_detect_push(struct fv_detector *d, float score, float threshold,
				    int64_t start_ms, int64_t end_ms)
{
	bool have = threshold > 0.0f;
	bool above = have && score > threshold;
	uint32_t count = 0, n = d->o.n;
	int64_t first = end_ms;

	d->above[d->pos] = above;
	d->start[d->pos] = start_ms;
	d->pos = (d->pos + 1) % n;
	if (d->filled < n)
		d->filled++;
	for (uint32_t i = 0; i < d->filled; i++)
		if (d->above[i]) {
			count++;
			if (d->start[i] < first)
				first = d->start[i];
		}

	if (!d->raised) {
		if (count >= d->o.k) {
			d->raised = true;
			d->alert_start_ms = first;
			d->alert_end_ms = end_ms;
			d->max_score = score;
			d->max_threshold = threshold;
			d->calm = 0;
			return FV_DETECT_RAISED;
		}
		return FV_DETECT_NONE;
	}
	if (above)
		d->alert_end_ms = end_ms;
	if (score > d->max_score) {
		d->max_score = score;
		d->max_threshold = threshold;
	}
	if (!have || score < threshold * d->o.clear_ratio)
		d->calm++;
	else
		d->calm = 0;
	if (d->calm >= d->o.clear_n) {
		d->raised = false;
		d->calm = 0;
		/* Start the next episode from a clean slate. */
		d->filled = 0;
		d->pos = 0;
		return FV_DETECT_CLEARED;
	}
	return FV_DETECT_NONE;
}

void fv_detect_channel_share(float *ret_share, const float *sqerr, uint32_t W, uint32_t C)
{
	double total = 0;

	for (uint32_t c = 0; c < C; c++) {
		double s = 0;

		for (uint32_t w = 0; w < W; w++)
			s += sqerr[(size_t)w * C + c];
		ret_share[c] = (float)s;
		total += s;
	}
	for (uint32_t c = 0; c < C; c++)
		ret_share[c] = total > 0 ? (float)(ret_share[c] / total) : 1.0f / (float)C;
}

uint32_t fv_detect_top(uint32_t *ret_idx, const float *v, uint32_t C, uint32_t k)
{
	uint32_t n = k < C ? k : C;

	/* Selection by repeated scans: C is small (channels of one machine). */
	for (uint32_t j = 0; j < n; j++) {
		int best = -1;

		for (uint32_t c = 0; c < C; c++) {
			bool used = false;

			for (uint32_t i = 0; i < j; i++)
				used |= ret_idx[i] == c;
			if (!used && (best < 0 || v[c] > v[best]))
				best = (int)c;
		}
		ret_idx[j] = (uint32_t)best;
	}
	return n;
}
