/* Participation bookkeeping of the round machine (see part.h). */
#include "part.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"
#include "round.h"

/* Weights of late updates stay within what the aggregation caps anyway. */
#define LATE_WEIGHT_MAX (1ull << 40)

int part_init(struct part *p, uint32_t max_agents)
{
	memset(p, 0, sizeof(*p));
	p->max_rec = max_agents;
	p->rec = calloc(max_agents ? max_agents : 1, sizeof(*p->rec));
	return p->rec ? 0 : -ENOMEM;
}

void part_free(struct part *p)
{
	if (!p)
		return;
	free(p->rec);
	for (uint32_t i = 0; i < PART_HIST; i++)
		free(p->hist[i].names);
	part_drop_late(p);
	free(p->late);
	memset(p, 0, sizeof(*p));
}

/* Index of name in the sorted records, or where it would go (*ret_found
 * false). */
static uint32_t rec_pos(const struct part *p, const char *name, bool *ret_found)
{
	uint32_t lo = 0, hi = p->n_rec;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->rec[mid].name, name);

		if (c == 0) {
			*ret_found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = false;
	return lo;
}

static struct part_rec *rec_get(struct part *p, const char *name, bool create)
{
	bool found;
	uint32_t i = rec_pos(p, name, &found);

	if (found)
		return &p->rec[i];
	if (!create || p->n_rec >= p->max_rec)
		return NULL;
	memmove(&p->rec[i + 1], &p->rec[i], (size_t)(p->n_rec - i) * sizeof(*p->rec));
	memset(&p->rec[i], 0, sizeof(p->rec[i]));
	fv_strlcpy(p->rec[i].name, name, FV_NAME_MAX);
	p->n_rec++;
	return &p->rec[i];
}

void part_online(struct part *p, const char *name, int64_t now)
{
	struct part_rec *r = rec_get(p, name, true);

	if (r)
		r->online_mono = now;
}

uint32_t part_prio(const struct part *p, const char (*live)[FV_NAME_MAX], uint32_t n,
		   uint64_t round, uint32_t exclude, bool reselect, int64_t start_mono,
		   uint8_t *ret_prio)
{
	uint32_t others = 0;

	for (uint32_t i = 0; i < n; i++) {
		bool found;
		uint32_t j = rec_pos(p, live[i], &found);
		const struct part_rec *r = found ? &p->rec[j] : NULL;

		ret_prio[i] = ROUND_ELIGIBLE;
		if (r && reselect && r->online_mono > start_mono)
			ret_prio[i] = ROUND_BARRED;
		else if (r && exclude && r->missed && r->miss_round < round &&
			 round - r->miss_round <= exclude)
			ret_prio[i] = ROUND_DEMOTED;
		if (ret_prio[i] != ROUND_ELIGIBLE)
			others++;
	}
	return others;
}

void part_response(struct part *p, int64_t ms)
{
	p->resp[p->resp_next] = ms < 0 ? 0 : ms;
	p->resp_next = (p->resp_next + 1) % PART_RESP_WINDOW;
	if (p->n_resp < PART_RESP_WINDOW)
		p->n_resp++;
}

int64_t part_deadline(const struct part *p, double k, int64_t min_ms, int64_t max_ms)
{
	int64_t tmp[PART_RESP_WINDOW];

	memcpy(tmp, p->resp, p->n_resp * sizeof(*tmp));
	return round_deadline(tmp, p->n_resp, k, min_ms, max_ms);
}

static int cmp_pname(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The senders of upd, sorted: n pointers into upd (malloc'd; NULL when out
 * of memory). Lookups by binary search keep a close of thousands of
 * selected agents O(n log n) rather than O(n^2). */
static const char **senders(const struct fv_update *upd, uint32_t n)
{
	const char **s = malloc(sizeof(*s) * (n ? n : 1));

	if (!s)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		s[i] = upd[i].h.sender;
	qsort(s, n, sizeof(*s), cmp_pname);
	return s;
}

static bool answered(const char **snd, uint32_t n, const char *name)
{
	return n && bsearch(&name, snd, n, sizeof(*snd), cmp_pname) != NULL;
}

int part_missed(struct part *p, uint64_t round, uint64_t base, enum fv_round_kind kind,
		int64_t start_mono, const char (*sel)[FV_NAME_MAX], uint32_t n_sel,
		const struct fv_update *upd, uint32_t n_upd)
{
	struct part_hist *h = &p->hist[p->hist_next];
	char (*names)[FV_NAME_MAX] = NULL;
	const char **snd = senders(upd, n_upd);
	uint32_t n = 0;

	if (!snd)
		return -ENOMEM;
	for (uint32_t i = 0; i < n_sel; i++) {
		struct part_rec *r;

		if (answered(snd, n_upd, sel[i]))
			continue;
		n++;
		r = rec_get(p, sel[i], true);
		if (r) {
			r->missed = true;
			r->miss_round = round;
		}
	}
	/* The oldest kept round is forgotten: its stragglers are too late. */
	free(h->names);
	memset(h, 0, sizeof(*h));
	p->hist_next = (p->hist_next + 1) % PART_HIST;
	if (n == 0) {
		free(snd);
		return 0;
	}
	names = malloc((size_t)n * FV_NAME_MAX);
	if (!names) {
		free(snd);
		return -ENOMEM;
	}
	h->n = 0;
	for (uint32_t i = 0; i < n_sel; i++)
		if (!answered(snd, n_upd, sel[i]))
			memcpy(names[h->n++], sel[i], FV_NAME_MAX);
	free(snd);
	h->names = names;
	h->round = round;
	h->base = base;
	h->kind = kind;
	h->start_mono = start_mono;
	return (int)n;
}

struct part_hist *part_owed(struct part *p, uint64_t round, const char *agent)
{
	for (uint32_t i = 0; i < PART_HIST; i++) {
		struct part_hist *h = &p->hist[i];

		if (h->names && h->round == round &&
		    round_find((const char (*)[FV_NAME_MAX])h->names, h->n, agent) >= 0)
			return h;
	}
	return NULL;
}

void part_paid(struct part_hist *h, const char *agent)
{
	int i = round_find((const char (*)[FV_NAME_MAX])h->names, h->n, agent);

	if (i < 0)
		return;
	/* Order does not matter here: lookups are linear. */
	memcpy(h->names[i], h->names[h->n - 1], FV_NAME_MAX);
	h->n--;
}

int part_hold(struct part *p, struct fv_update *u)
{
	if (p->n_late >= FV_MAX_SELECTED)
		return -E2BIG;
	if (p->n_late == p->cap_late) {
		uint32_t cap = p->cap_late ? 2 * p->cap_late : 4;
		struct fv_update *l = realloc(p->late, sizeof(*l) * FV_MIN(cap, FV_MAX_SELECTED));

		if (!l)
			return -ENOMEM;
		p->late = l;
		p->cap_late = FV_MIN(cap, FV_MAX_SELECTED);
	}
	p->late[p->n_late++] = *u;
	memset(u, 0, sizeof(*u));
	return 0;
}

/* Whether the held update i gives way: its agent has an on-time update in
 * upd (n), or a late one for a newer round is held too. One update per
 * agent enters an aggregate (robust rules count agents). */
static bool superseded(const struct part *p, uint32_t i, const struct fv_update *upd, uint32_t n)
{
	const struct fv_update *u = &p->late[i];

	for (uint32_t j = 0; j < n; j++)
		if (strcmp(upd[j].h.sender, u->h.sender) == 0)
			return true;
	for (uint32_t j = 0; j < p->n_late; j++)
		if (j != i && strcmp(p->late[j].h.sender, u->h.sender) == 0 &&
		    (p->late[j].h.round > u->h.round || (p->late[j].h.round == u->h.round && j > i)))
			return true;
	return false;
}

int part_release(struct part *p, uint64_t version, uint32_t staleness_max, double exponent,
		 struct fv_update **upd, uint32_t *n_upd, uint32_t *cap, uint32_t *ret_applied,
		 uint32_t *ret_dropped)
{
	uint32_t applied = 0, dropped = 0, n0 = *n_upd;
	bool *gone;

	*ret_applied = *ret_dropped = 0;
	if (p->n_late == 0)
		return 0;
	gone = calloc(p->n_late, sizeof(*gone));
	if (!gone)
		return -ENOMEM;
	if (*cap < *n_upd + p->n_late) {
		struct fv_update *u = realloc(*upd, sizeof(*u) * (*n_upd + p->n_late));

		if (!u) {
			free(gone);
			return -ENOMEM;
		}
		*upd = u;
		*cap = *n_upd + p->n_late;
	}
	/* Decide first, move after: superseded() looks at the whole list. */
	for (uint32_t i = 0; i < p->n_late; i++) {
		const struct fv_update *u = &p->late[i];
		uint64_t tau = version > u->h.base_version ? version - u->h.base_version : 0;

		gone[i] = tau > staleness_max || superseded(p, i, *upd, n0);
	}
	for (uint32_t i = 0; i < p->n_late; i++) {
		struct fv_update *u = &p->late[i];
		uint64_t tau = version > u->h.base_version ? version - u->h.base_version : 0;
		double w;

		if (gone[i]) {
			fv_update_clear(u);
			dropped++;
			continue;
		}
		w = round_staleness_weight(tau, exponent) * (double)FV_MIN(u->n_samples,
									   LATE_WEIGHT_MAX);
		u->n_samples = w < 1.0 ? 1 : (uint64_t)llround(w);
		(*upd)[(*n_upd)++] = *u;
		applied++;
	}
	free(gone);
	p->n_late = 0;
	*ret_applied = applied;
	*ret_dropped = dropped;
	return 0;
}

uint32_t part_drop_late(struct part *p)
{
	uint32_t n = p->n_late;

	for (uint32_t i = 0; i < p->n_late; i++)
		fv_update_clear(&p->late[i]);
	p->n_late = 0;
	return n;
}
