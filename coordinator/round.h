/* Pure decisions of the coordinator's round machine: which agents take part
 * in a round, how many answers make a quorum, and what to do when the
 * deadline passes. No I/O, no clocks of its own: the caller passes "now", so
 * tests/unit/test_coord_round.c can drive every branch. */
#ifndef FEDVIGIL_COORD_ROUND_H
#define FEDVIGIL_COORD_ROUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/wire.h"

/* What the round machine does next (round_decide()). */
enum round_action {
	ROUND_WAIT = 0, /* keep collecting */
	ROUND_CLOSE,    /* aggregate what we have */
	ROUND_EXTEND,   /* move the deadline, re-select, re-announce */
	ROUND_ABANDON,  /* give the round up (round.no_quorum, or no update) */
};

/* How a live agent may be selected (round_select()). */
enum round_prio {
	ROUND_ELIGIBLE = 0, /* selected as the shuffle falls */
	ROUND_DEMOTED = 1,  /* missed a recent deadline: only to reach min_agents */
	ROUND_BARRED = 2,   /* not in this round (joined while it was open) */
};

/* Inputs of round_decide(). */
struct round_status {
	uint32_t n_selected;     /* agents in the current announcement */
	uint32_t n_answered;     /* accepted updates */
	uint32_t quorum_n;       /* answers that allow closing at the deadline */
	uint32_t extensions;     /* deadline extensions used so far */
	uint32_t max_extensions; /* round.max_extensions */
	bool abandon;            /* round.no_quorum = abandon (else close) */
	int64_t now_ms;          /* monotonic now */
	int64_t deadline_ms;     /* monotonic deadline */
};

/* Number of agents to select from n_live live ones:
 * max(min_agents, ceil(fraction * n_live)), capped at n_live and at
 * FV_MAX_SELECTED. fraction in (0, 1]. */
uint32_t round_target(uint32_t n_live, uint32_t min_agents, double fraction);

/* Answers needed to close at the deadline: max(1, ceil(quorum * n_selected)),
 * capped at n_selected when n_selected > 0. quorum in (0, 1]. */
uint32_t round_quorum(uint32_t n_selected, double quorum);

/* Deterministic seed of round R's selection from the configured seed. */
uint64_t round_seed(uint64_t seed, uint64_t round);

/* Select agents for a round.
 * live: n_live names sorted ascending (strcmp), unique.
 * prio: n_live enum round_prio, one per live agent, or NULL (all eligible).
 * keep: n_keep names that must stay selected (agents that already answered
 *       an earlier announcement of the same round), any order; they come
 *       first in the result, whether or not they are still live.
 * The live agents not in keep are shuffled with an fv_rng seeded by
 * round_seed(seed, round) and the eligible ones taken in that order until
 * the result holds round_target(n_live, ...) names (or keep's size if
 * larger); if that leaves fewer than min_agents, demoted ones are taken
 * (same order) up to min_agents; barred ones never.
 * ret_sel must have room for FV_MAX_SELECTED names. Returns the count
 * (0 when nothing is live and keep is empty), or -E2BIG if n_keep exceeds
 * FV_MAX_SELECTED, -ENOMEM. */
int round_select(const char (*live)[FV_NAME_MAX], uint32_t n_live, const uint8_t *prio,
		 const char (*keep)[FV_NAME_MAX], uint32_t n_keep, uint32_t min_agents,
		 double fraction, uint64_t seed, uint64_t round,
		 char (*ret_sel)[FV_NAME_MAX]);

/* Deadline of a round from the response times (ms from announcement to
 * update) of recent rounds: clamp(ceil(k * p90), min_ms, max_ms), p90 by
 * nearest rank. max_ms when k <= 0 or no time is known yet. resp is
 * reordered. */
int64_t round_deadline(int64_t *resp, uint32_t n, double k, int64_t min_ms, int64_t max_ms);

/* Weight factor of an update tau model versions behind: (1 + tau)^-a. */
double round_staleness_weight(uint64_t tau, double a);

/* What to do now:
 *  - every selected agent answered                    -> CLOSE
 *  - before the deadline                              -> WAIT
 *  - at/after it with n_answered >= quorum_n          -> CLOSE
 *  - else while extensions < max_extensions           -> EXTEND
 *  - else with at least one answer and !abandon       -> CLOSE
 *  - else                                             -> ABANDON */
enum round_action round_decide(const struct round_status *s);

/* Index of name in a sorted array of n names, or -1. */
int round_find_sorted(const char (*names)[FV_NAME_MAX], uint32_t n, const char *name);
/* Index of name in an unsorted array of n names, or -1. */
int round_find(const char (*names)[FV_NAME_MAX], uint32_t n, const char *name);

#endif
