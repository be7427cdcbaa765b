/* Fixed-capacity ring of fixed-size float items: the local training set.
 * All memory is taken at creation; a push overwrites the oldest item when
 * full, so a long-running agent stays flat. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/ingest.h"
#include "fedvigil/util.h"

struct fv_ring {
	size_t dim;  /* floats per item */
	size_t cap;  /* items */
	size_t head; /* slot of the next push */
	size_t len;  /* items stored, <= cap */
	float *v;    /* (cap, dim) */
};

struct fv_ring *fv_ring_new(size_t dim, size_t cap)
{
	struct fv_ring *r;

	if (dim == 0 || cap == 0 || cap > SIZE_MAX / sizeof(float) / dim) {
		errno = EINVAL;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->dim = dim;
	r->cap = cap;
	r->v = calloc(dim * cap, sizeof(float));
	if (!r->v) {
		free(r);
		return NULL;
	}
	return r;
}

void fv_ring_free(struct fv_ring *r)
{
	if (!r)
		return;
	free(r->v);
	free(r);
}

void fv_ring_push(struct fv_ring *r, const float *item)
{
	memcpy(r->v + r->head * r->dim, item, r->dim * sizeof(float));
	r->head = (r->head + 1) % r->cap;
	if (r->len < r->cap)
		r->len++;
}

size_t fv_ring_len(const struct fv_ring *r)
{
	return r->len;
}

size_t fv_ring_dim(const struct fv_ring *r)
{
	return r->dim;
}

/* NULL when i >= len. */
const float *fv_ring_get(const struct fv_ring *r, size_t i)
{
	size_t first = (r->head + r->cap - r->len) % r->cap;

	if (i >= r->len)
		return NULL;
	return r->v + ((first + i) % r->cap) * r->dim;
}

void fv_ring_copy(const struct fv_ring *r, float *ret)
{
	size_t first = (r->head + r->cap - r->len) % r->cap;
	size_t n1 = FV_MIN(r->len, r->cap - first);

	memcpy(ret, r->v + first * r->dim, n1 * r->dim * sizeof(float));
	memcpy(ret + n1 * r->dim, r->v, (r->len - n1) * r->dim * sizeof(float));
}

void fv_ring_clear(struct fv_ring *r)
{
	r->head = 0;
	r->len = 0;
}
