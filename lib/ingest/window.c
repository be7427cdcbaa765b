/* Windows of W aligned vectors, one every S vectors. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/ingest.h"
#include "fedvigil/util.h"

/* Bound on W*C floats per window (4 MiB), far above any model we run. */
#define MAX_WINDOW_FLOATS (1u << 20)

struct fv_window {
	uint32_t C, W, S; /* channels, vectors per window, stride */
	uint32_t head;    /* slot of the next vector */
	uint64_t n;       /* vectors pushed since the last reset */
	float *v;         /* (W, C) ring of the last W vectors */
	int64_t *ts;      /* (W) their times */
};

struct fv_window *fv_window_new(uint32_t C, uint32_t W, uint32_t S)
{
	struct fv_window *w;

	if (C == 0 || W == 0 || S == 0 || C > FV_MAX_CHANNELS ||
	    (uint64_t)C * W > MAX_WINDOW_FLOATS) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->C = C;
	w->W = W;
	w->S = S;
	w->v = calloc((size_t)C * W, sizeof(float));
	w->ts = calloc(W, sizeof(int64_t));
	if (!w->v || !w->ts) {
		fv_window_free(w);
		return NULL;
	}
	return w;
}

void fv_window_free(struct fv_window *w)
{
	if (!w)
		return;
	free(w->v);
	free(w->ts);
	free(w);
}

/* The first window is out after W vectors, then one every S vectors: vector
 * number n (1-based) closes a window when n >= W and (n - W) % S == 0. */
int fv_window_push(struct fv_window *w, const float *vec, int64_t ts_ms, float *ret_win,
		   int64_t *ret_start_ms)
{
	size_t row = w->C * sizeof(float);
	uint32_t oldest;

	memcpy(w->v + (size_t)w->head * w->C, vec, row);
	w->ts[w->head] = ts_ms;
	w->head = (w->head + 1) % w->W;
	w->n++;
	if (w->n < w->W || (w->n - w->W) % w->S != 0)
		return 0;
	/* Full ring: head is now the oldest slot. Copy in two pieces. */
	oldest = w->head;
	memcpy(ret_win, w->v + (size_t)oldest * w->C, (size_t)(w->W - oldest) * row);
	memcpy(ret_win + (size_t)(w->W - oldest) * w->C, w->v, (size_t)oldest * row);
	*ret_start_ms = w->ts[oldest];
	return 1;
}

void fv_window_reset(struct fv_window *w)
{
	if (!w)
		return;
	w->head = 0;
	w->n = 0;
}

/* A channel whose std is zero, negative or not finite (a constant signal
 * in the statistics round) is only centred: dividing would make Inf. */
void fv_window_normalize(float *win, uint32_t W, uint32_t C, const float *mean,
			 const float *std)
{
	for (uint32_t c = 0; c < C; c++) {
		float s = std[c];
		float inv = (isfinite(s) && s > 1e-12f) ? 1.0f / s : 1.0f;

		for (uint32_t t = 0; t < W; t++) {
			float *x = &win[(size_t)t * C + c];

			*x = (*x - mean[c]) * inv;
		}
	}
}
