/* Participation bookkeeping of the coordinator's round machine: what it
 * remembers about agents across rounds (who missed a deadline, since when
 * an agent is online), recent response times for the adaptive deadline,
 * which agents still owe an update for rounds already closed, and the late
 * updates held for the next aggregation. No I/O and no clock of its own:
 * callers pass "now", so tests/unit/test_coord_round.c drives it directly.
 * Everything is bounded: COORD_MAX_AGENTS records, PART_RESP_WINDOW
 * response times, PART_HIST closed rounds, FV_MAX_SELECTED late updates. */
#ifndef FEDVIGIL_COORD_PART_H
#define FEDVIGIL_COORD_PART_H

#include <stdbool.h>
#include <stdint.h>

#include "fedvigil/wire.h"

#define PART_RESP_WINDOW 256 /* response times kept for the deadline */
#define PART_HIST 16         /* closed rounds whose missing agents are kept */

/* What is known about one agent (kept while it is offline too). */
struct part_rec {
	char name[FV_NAME_MAX]; /* agent id */
	bool missed;            /* missed a deadline (miss_round valid) */
	uint64_t miss_round;    /* the last round it missed */
	int64_t online_mono;    /* when it last came online (monotonic ms) */
};

/* A closed (or abandoned) round and the selected agents that had not
 * answered it: their updates, if they still come, are late. */
struct part_hist {
	uint64_t round;             /* round number; valid when names != NULL */
	uint64_t base;              /* its base model version */
	enum fv_round_kind kind;    /* its kind */
	int64_t start_mono;         /* its first announcement */
	uint32_t n;                 /* agents still owing an update */
	char (*names)[FV_NAME_MAX]; /* n names, owned */
};

struct part {
	struct part_rec *rec;            /* sorted by name, max_rec slots */
	uint32_t n_rec, max_rec;
	int64_t resp[PART_RESP_WINDOW];  /* response times (ms), a ring */
	uint32_t n_resp;                 /* valid entries */
	uint32_t resp_next;              /* next slot written */
	struct part_hist hist[PART_HIST]; /* a ring of closed rounds */
	uint32_t hist_next;              /* next slot written */
	struct fv_update *late;          /* late updates held (owned), cap_late */
	uint32_t n_late, cap_late;
};

/* 0 or -ENOMEM. */
int part_init(struct part *p, uint32_t max_agents);
void part_free(struct part *p);

/* Agent `name` came online at now (records it; silently untracked when the
 * table is full: such an agent is always eligible). */
void part_online(struct part *p, const char *name, int64_t now);
/* Priority of each of n live agents (sorted names) for a selection in
 * round `round`: DEMOTED if it missed a round within the last `exclude`
 * rounds (exclude 0: never), BARRED when `reselect` (an extension of a
 * round first announced at start_mono) and it came online after start_mono.
 * Fills ret_prio (n); returns the number not ELIGIBLE. */
uint32_t part_prio(const struct part *p, const char (*live)[FV_NAME_MAX], uint32_t n,
		   uint64_t round, uint32_t exclude, bool reselect, int64_t start_mono,
		   uint8_t *ret_prio);

/* One observed response time. */
void part_response(struct part *p, int64_t ms);
/* round_deadline() over the recorded response times. */
int64_t part_deadline(const struct part *p, double k, int64_t min_ms, int64_t max_ms);

/* Round `round` closed or was abandoned: the n_sel selected agents that are
 * not among the n_upd senders of upd missed it. Marks their records,
 * remembers them (replacing the oldest round kept) so that their updates
 * can be recognised as late, and returns how many there are (or -ENOMEM;
 * then some records may be left unmarked). O((n_sel + n_upd) log n_upd). */
int part_missed(struct part *p, uint64_t round, uint64_t base, enum fv_round_kind kind,
		int64_t start_mono, const char (*sel)[FV_NAME_MAX], uint32_t n_sel,
		const struct fv_update *upd, uint32_t n_upd);
/* The kept round `round` in which `agent` still owes an update, or NULL. */
struct part_hist *part_owed(struct part *p, uint64_t round, const char *agent);
/* agent's late update for h arrived: it owes nothing more there. */
void part_paid(struct part_hist *h, const char *agent);

/* Hold a late update for the next aggregation (ownership moves: *u is
 * zeroed). -E2BIG when FV_MAX_SELECTED are held already, -ENOMEM. */
int part_hold(struct part *p, struct fv_update *u);
/* Move the held updates into (*upd, *n_upd, *cap) for aggregating on model
 * `version`: an update tau = version - base versions behind gets its
 * n_samples scaled by round_staleness_weight(tau, exponent) (at least 1);
 * one more than staleness_max behind is freed, and so is one whose agent
 * has an update in *upd already or a held one for a newer round (one
 * update per agent per aggregate: robust rules count agents). *ret_applied
 * and *ret_dropped get the counts. 0 or -ENOMEM (then nothing moved). */
int part_release(struct part *p, uint64_t version, uint32_t staleness_max, double exponent,
		 struct fv_update **upd, uint32_t *n_upd, uint32_t *cap, uint32_t *ret_applied,
		 uint32_t *ret_dropped);
/* Free the held updates; returns how many there were. */
uint32_t part_drop_late(struct part *p);

#endif
