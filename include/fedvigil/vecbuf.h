/* fedvigil vector buffer: an agent's recent complete vectors, its local
 * training set, and how training windows are cut from it.
 *
 * The agent daemon and fedvigil-eval both keep their training data in one,
 * so an offline experiment trains on exactly the windows a running agent
 * would. A vector is "bad" when it belonged to a window that scored above
 * the threshold or fell inside an alert: bad vectors never train. */
#ifndef FEDVIGIL_VECBUF_H
#define FEDVIGIL_VECBUF_H

#include <stddef.h>
#include <stdint.h>

struct fv_vecbuf {
	uint32_t C;   /* channels */
	size_t cap;   /* vectors */
	size_t head;  /* next slot */
	size_t len;   /* stored vectors */
	float *v;     /* (cap, C) */
	int64_t *ts;  /* (cap) tick times */
	uint8_t *bad; /* (cap) */
};

/* 0 or -ENOMEM (b is then safe to free). */
int fv_vecbuf_init(struct fv_vecbuf *b, uint32_t C, size_t cap);
void fv_vecbuf_free(struct fv_vecbuf *b);
/* Append one vector (C floats) of tick ts; the oldest goes when full. */
void fv_vecbuf_push(struct fv_vecbuf *b, const float *v, int64_t ts);
/* Slot of the i-th stored vector, 0 = oldest. */
size_t fv_vecbuf_slot(const struct fv_vecbuf *b, size_t i);
/* Mark the newest n vectors as not for training. */
void fv_vecbuf_mark_recent(struct fv_vecbuf *b, size_t n);

/* The training windows of W vectors at stride S: runs of good vectors whose
 * ticks are period apart, a window at every S-th vector of a run from its
 * W-th on. ret_end (n): buffer index (0 = oldest) of each window's last
 * vector; ret_cont (n): the window follows the previous one in the same
 * run; ret_first (n, may be NULL): the first window of its run. Arrays are
 * malloc'd (room for len / S + 1). 0 or -ENOMEM. */
int fv_vecbuf_windows(const struct fv_vecbuf *b, uint32_t W, uint32_t S, int64_t period,
		      size_t **ret_end, uint8_t **ret_cont, uint8_t **ret_first, size_t *ret_n);
/* Copy the window of W vectors ending at buffer index end to dst (W, C). */
void fv_vecbuf_window(const struct fv_vecbuf *b, size_t end, uint32_t W, float *dst);

#endif
