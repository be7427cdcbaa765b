/* Pure decisions of the round machine (see round.h). */
#include "round.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"

uint32_t round_target(uint32_t n_live, uint32_t min_agents, double fraction)
{
	double want;
	uint32_t n;

	if (!(fraction > 0.0))
		fraction = 0.0;
	if (fraction > 1.0)
		fraction = 1.0;
	/* The epsilon keeps 0.6 * 5 = 3.0000000000000004 from becoming 4. */
	want = ceil(fraction * (double)n_live - 1e-9);
	n = want < 0.0 ? 0 : (uint32_t)want;
	n = FV_MAX(n, min_agents);
	n = FV_MIN(n, n_live);
	return FV_MIN(n, (uint32_t)FV_MAX_SELECTED);
}

uint32_t round_quorum(uint32_t n_selected, double quorum)
{
	double want;
	uint32_t n;

	if (!(quorum > 0.0))
		quorum = 0.0;
	if (quorum > 1.0)
		quorum = 1.0;
	want = ceil(quorum * (double)n_selected - 1e-9);
	n = want < 1.0 ? 1 : (uint32_t)want;
	if (n_selected > 0 && n > n_selected)
		n = n_selected;
	return n;
}

uint64_t round_seed(uint64_t seed, uint64_t round)
{
	/* Distinct, well-mixed seeds per round; fv_rng_seed runs splitmix64
	 * over it again. */
	return seed ^ (0x9E3779B97F4A7C15ull * (round + 1));
}

int round_find_sorted(const char (*names)[FV_NAME_MAX], uint32_t n, const char *name)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(names[mid], name);

		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int round_find(const char (*names)[FV_NAME_MAX], uint32_t n, const char *name)
{
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

int round_select(const char (*live)[FV_NAME_MAX], uint32_t n_live, const uint8_t *prio,
		 const char (*keep)[FV_NAME_MAX], uint32_t n_keep, uint32_t min_agents,
		 double fraction, uint64_t seed, uint64_t round,
		 char (*ret_sel)[FV_NAME_MAX])
{
	uint32_t target, n = 0, *order;
	char (*ks)[FV_NAME_MAX] = NULL;
	uint8_t *taken = NULL;
	struct fv_rng rng;

	if (n_keep > FV_MAX_SELECTED)
		return -E2BIG;
	order = malloc(sizeof(*order) * (n_live ? n_live : 1));
	/* keep, sorted: membership by binary search (an extension keeps
	 * up to FV_MAX_SELECTED names; a linear search per live agent made
	 * re-selection quadratic). taken[i]: ks[i] is in ret_sel already. */
	ks = malloc((size_t)(n_keep ? n_keep : 1) * FV_NAME_MAX);
	taken = calloc(n_keep ? n_keep : 1, 1);
	if (!order || !ks || !taken) {
		free(order);
		free(ks);
		free(taken);
		return -ENOMEM;
	}
	if (n_keep)
		memcpy(ks, keep, (size_t)n_keep * FV_NAME_MAX);
	qsort(ks, n_keep, FV_NAME_MAX, cmp_name);
	for (uint32_t i = 0; i < n_live; i++)
		order[i] = i;
	/* Fisher-Yates over the sorted list: the same live set, seed and round
	 * always give the same selection, whatever order births arrived in. */
	fv_rng_seed(&rng, round_seed(seed, round));
	for (uint32_t i = n_live; i > 1; i--) {
		uint32_t j = (uint32_t)fv_rng_below(&rng, i);
		uint32_t t = order[i - 1];

		order[i - 1] = order[j];
		order[j] = t;
	}

	/* keep first, in its order, each name once */
	for (uint32_t i = 0; i < n_keep; i++) {
		int k = round_find_sorted((const char (*)[FV_NAME_MAX])ks, n_keep, keep[i]);

		/* duplicates sit next to each other in ks: the first unset one */
		while (k > 0 && strcmp(ks[k - 1], keep[i]) == 0)
			k--;
		if (taken[k])
			continue;
		for (uint32_t j = (uint32_t)k; j < n_keep && strcmp(ks[j], keep[i]) == 0; j++)
			taken[j] = 1;
		memcpy(ret_sel[n++], keep[i], FV_NAME_MAX);
	}
	target = round_target(n_live, min_agents, fraction);
	for (uint32_t i = 0; i < n_live && n < target; i++) {
		const char *name = live[order[i]];

		if ((!prio || prio[order[i]] == ROUND_ELIGIBLE) &&
		    round_find_sorted((const char (*)[FV_NAME_MAX])ks, n_keep, name) < 0)
			memcpy(ret_sel[n++], name, FV_NAME_MAX);
	}
	/* Agents that missed recent deadlines fill in only what min_agents
	 * demands. */
	for (uint32_t i = 0; prio && i < n_live && n < FV_MIN(min_agents, target); i++) {
		const char *name = live[order[i]];

		if (prio[order[i]] == ROUND_DEMOTED &&
		    round_find_sorted((const char (*)[FV_NAME_MAX])ks, n_keep, name) < 0)
			memcpy(ret_sel[n++], name, FV_NAME_MAX);
	}
	free(order);
	free(ks);
	free(taken);
	return (int)n;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int64_t round_deadline(int64_t *resp, uint32_t n, double k, int64_t min_ms, int64_t max_ms)
{
	double want;
	int64_t p90;

	if (!(k > 0.0) || n == 0)
		return max_ms;
	qsort(resp, n, sizeof(*resp), cmp_i64);
	/* nearest rank: the smallest value with at least 90% at or below it */
	p90 = resp[(uint32_t)ceil(0.9 * (double)n - 1e-9) - 1];
	want = ceil(k * (double)FV_MAX(p90, (int64_t)0));
	if (want > (double)max_ms)
		return max_ms;
	return FV_MAX((int64_t)want, min_ms);
}

double round_staleness_weight(uint64_t tau, double a)
{
	return pow(1.0 + (double)tau, -a);
}

enum round_action round_decide(const struct round_status *s)
{
	if (s->n_selected > 0 && s->n_answered >= s->n_selected)
		return ROUND_CLOSE;
	if (s->now_ms < s->deadline_ms)
		return ROUND_WAIT;
	if (s->n_answered >= s->quorum_n && s->n_answered > 0)
		return ROUND_CLOSE;
	if (s->extensions < s->max_extensions)
		return ROUND_EXTEND;
	if (s->n_answered >= 1 && !s->abandon)
		return ROUND_CLOSE;
	return ROUND_ABANDON;
}
