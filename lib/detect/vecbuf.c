/* The agent's vector buffer (include/fedvigil/vecbuf.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/vecbuf.h"

int fv_vecbuf_init(struct fv_vecbuf *b, uint32_t C, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->C = C;
	b->cap = cap;
	b->v = calloc(cap * C, sizeof(float));
	b->ts = calloc(cap, sizeof(int64_t));
	b->bad = calloc(cap, 1);
	return b->v && b->ts && b->bad ? 0 : -ENOMEM;
}

void fv_vecbuf_free(struct fv_vecbuf *b)
{
	free(b->v);
	free(b->ts);
	free(b->bad);
	memset(b, 0, sizeof(*b));
}

void fv_vecbuf_push(struct fv_vecbuf *b, const float *v, int64_t ts)
{
	memcpy(b->v + b->head * b->C, v, b->C * sizeof(float));
	b->ts[b->head] = ts;
	b->bad[b->head] = 0;
	b->head = (b->head + 1) % b->cap;
	if (b->len < b->cap)
		b->len++;
}

size_t fv_vecbuf_slot(const struct fv_vecbuf *b, size_t i)
{
	return (b->head + b->cap - b->len + i) % b->cap;
}

void fv_vecbuf_mark_recent(struct fv_vecbuf *b, size_t n)
{
	for (size_t i = 0; i < n && i < b->len; i++)
		b->bad[fv_vecbuf_slot(b, b->len - 1 - i)] = 1;
}

int fv_vecbuf_windows(const struct fv_vecbuf *b, uint32_t W, uint32_t S, int64_t period,
		      size_t **ret_end, uint8_t **ret_cont, uint8_t **ret_first, size_t *ret_n)
{
	size_t max = b->len / S + 1, n = 0, run = 0;
	size_t *end = malloc(max * sizeof(size_t));
	uint8_t *cont = calloc(max, 1), *first = ret_first ? calloc(max, 1) : NULL;
	bool same_run = false;

	if (!end || !cont || (ret_first && !first)) {
		free(end);
		free(cont);
		free(first);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->len; i++) {
		size_t s = fv_vecbuf_slot(b, i);

		if (b->bad[s] || (run > 0 && b->ts[s] - b->ts[fv_vecbuf_slot(b, i - 1)] != period)) {
			run = 0;
			same_run = false;
		}
		if (b->bad[s])
			continue;
		run++;
		if (run >= W && (run - W) % S == 0 && n < max) {
			end[n] = i;
			cont[n] = same_run;
			if (first)
				first[n] = run == W;
			same_run = true;
			n++;
		}
	}
	*ret_end = end;
	*ret_cont = cont;
	if (ret_first)
		*ret_first = first;
	*ret_n = n;
	return 0;
}

void fv_vecbuf_window(const struct fv_vecbuf *b, size_t end, uint32_t W, float *dst)
{
	for (uint32_t w = 0; w < W; w++)
		memcpy(dst + (size_t)w * b->C, b->v + fv_vecbuf_slot(b, end + 1 - W + w) * b->C,
		       b->C * sizeof(float));
}
