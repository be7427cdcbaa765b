/* Unit tests of the coordinator's round logic: the pure decisions of
 * coordinator/round.c (selection size, quorum, deterministic seeded
 * selection, close decisions) and the round machine of coordinator/coord.c
 * driven without a broker (statistics round, FedAvg round, rejections,
 * deadline extension, finish, state file resume/refusal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <unistd.h>

#include "coord.h"
#include "fedvigil/fl.h"
#include "fedvigil/wire.h"
#include "part.h"
#include "round.h"

static char (*names(uint32_t n, const char *prefix))[FV_NAME_MAX]
{
	char (*v)[FV_NAME_MAX] = calloc(n ? n : 1, FV_NAME_MAX);

	assert_non_null(v);
	/* zero-padded, so the array is sorted by strcmp */
	for (uint32_t i = 0; i < n; i++)
		snprintf(v[i], FV_NAME_MAX, "%s%05u", prefix, i);
	return v;
}

static void test_target(void **state)
{
	(void)state;
	assert_int_equal(round_target(0, 1, 1.0), 0);
	assert_int_equal(round_target(10, 1, 1.0), 10);
	assert_int_equal(round_target(10, 1, 0.3), 3);
	assert_int_equal(round_target(10, 1, 0.25), 3);  /* ceil(2.5) */
	assert_int_equal(round_target(5, 1, 0.6), 3);    /* 0.6*5 is 3.0000000000000004 */
	assert_int_equal(round_target(10, 4, 0.1), 4);   /* min_agents wins */
	assert_int_equal(round_target(3, 5, 1.0), 3);    /* capped at live */
	assert_int_equal(round_target(10000, 1, 1.0), FV_MAX_SELECTED);
}

static void test_quorum(void **state)
{
	(void)state;
	assert_int_equal(round_quorum(5, 1.0), 5);
	assert_int_equal(round_quorum(5, 0.6), 3);
	assert_int_equal(round_quorum(3, 0.5), 2);
	assert_int_equal(round_quorum(10, 0.001), 1);
	assert_int_equal(round_quorum(0, 1.0), 1);
	assert_int_equal(round_quorum(7, 0.7), 5); /* ceil(4.9) */
}

static void test_find(void **state)
{
	char (*v)[FV_NAME_MAX] = names(9, "a");

	(void)state;
	for (uint32_t i = 0; i < 9; i++) {
		assert_int_equal(round_find_sorted((const char (*)[FV_NAME_MAX])v, 9, v[i]), i);
		assert_int_equal(round_find((const char (*)[FV_NAME_MAX])v, 9, v[i]), i);
	}
	assert_int_equal(round_find_sorted((const char (*)[FV_NAME_MAX])v, 9, "b"), -1);
	assert_int_equal(round_find_sorted((const char (*)[FV_NAME_MAX])v, 0, v[0]), -1);
	assert_int_equal(round_find((const char (*)[FV_NAME_MAX])v, 9, ""), -1);
	free(v);
}

static void test_select_all_and_unique(void **state)
{
	char (*live)[FV_NAME_MAX] = names(20, "pump-");
	char (*sel)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	int n;

	(void)state;
	assert_non_null(sel);
	n = round_select((const char (*)[FV_NAME_MAX])live, 20, NULL, NULL, 0, 1, 1.0, 1, 0, sel);
	assert_int_equal(n, 20);
	/* every live agent exactly once */
	for (int i = 0; i < 20; i++) {
		assert_int_not_equal(round_find((const char (*)[FV_NAME_MAX])sel, 20, live[i]), -1);
		for (int j = i + 1; j < 20; j++)
			assert_string_not_equal(sel[i], sel[j]);
	}
	/* nothing live, nothing kept: empty */
	n = round_select((const char (*)[FV_NAME_MAX])live, 0, NULL, NULL, 0, 1, 1.0, 1, 0, sel);
	assert_int_equal(n, 0);
	free(live);
	free(sel);
}

static void test_select_deterministic(void **state)
{
	char (*live)[FV_NAME_MAX] = names(10, "a");
	char (*s1)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	char (*s2)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	int n1, n2, differ = 0;

	(void)state;
	assert_non_null(s1);
	assert_non_null(s2);
	n1 = round_select((const char (*)[FV_NAME_MAX])live, 10, NULL, NULL, 0, 1, 0.3, 42, 7, s1);
	n2 = round_select((const char (*)[FV_NAME_MAX])live, 10, NULL, NULL, 0, 1, 0.3, 42, 7, s2);
	assert_int_equal(n1, 3);
	assert_int_equal(n2, 3);
	assert_memory_equal(s1, s2, 3 * FV_NAME_MAX);
	/* another round (or seed) gives another selection at least sometimes */
	for (uint64_t r = 8; r < 28; r++) {
		n2 = round_select((const char (*)[FV_NAME_MAX])live, 10, NULL, NULL, 0, 1, 0.3, 42, r,
				  s2);
		assert_int_equal(n2, 3);
		if (memcmp(s1, s2, 3 * FV_NAME_MAX) != 0)
			differ++;
	}
	assert_true(differ >= 10);
	free(live);
	free(s1);
	free(s2);
}

static void test_select_fair(void **state)
{
	char (*live)[FV_NAME_MAX] = names(4, "a");
	char (*sel)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	unsigned hits[4] = { 0 };

	(void)state;
	assert_non_null(sel);
	for (uint64_t r = 0; r < 4000; r++) {
		int n = round_select((const char (*)[FV_NAME_MAX])live, 4, NULL, NULL, 0, 1, 0.25, 3, r,
				     sel);

		assert_int_equal(n, 1);
		hits[round_find_sorted((const char (*)[FV_NAME_MAX])live, 4, sel[0])]++;
	}
	for (int i = 0; i < 4; i++) {
		assert_true(hits[i] > 850);
		assert_true(hits[i] < 1150);
	}
	free(live);
	free(sel);
}

static void test_select_keep(void **state)
{
	char (*live)[FV_NAME_MAX] = names(6, "a");
	char keep[2][FV_NAME_MAX] = { "zz-gone", "" };
	char (*sel)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	int n;

	(void)state;
	assert_non_null(sel);
	memcpy(keep[1], live[4], FV_NAME_MAX);
	/* target 3 of 6 live; two kept (one no longer live) come first */
	n = round_select((const char (*)[FV_NAME_MAX])live, 6, NULL, (const char (*)[FV_NAME_MAX])keep,
			 2, 1, 0.5, 1, 5, sel);
	assert_int_equal(n, 3);
	assert_string_equal(sel[0], "zz-gone");
	assert_string_equal(sel[1], live[4]);
	assert_string_not_equal(sel[2], live[4]);
	assert_int_not_equal(round_find_sorted((const char (*)[FV_NAME_MAX])live, 6, sel[2]), -1);
	/* more kept than the target: all kept, no more */
	n = round_select((const char (*)[FV_NAME_MAX])live, 6, NULL, (const char (*)[FV_NAME_MAX])keep,
			 2, 1, 0.1, 1, 5, sel);
	assert_int_equal(n, 2);
	/* keep with nothing live */
	n = round_select((const char (*)[FV_NAME_MAX])live, 0, NULL, (const char (*)[FV_NAME_MAX])keep,
			 2, 1, 1.0, 1, 5, sel);
	assert_int_equal(n, 2);
	free(live);
	free(sel);
}

/* An extension keeps thousands of answered agents (re-selection looks them
 * up by binary search): each kept name once, first, in the order given,
 * and the live agents added are neither kept ones nor repeated. */
static void test_select_keep_large(void **state)
{
	const uint32_t n_live = 3000, n_keep = 2300;
	char (*live)[FV_NAME_MAX] = names(n_live, "a");
	char (*keep)[FV_NAME_MAX] = calloc(n_keep, FV_NAME_MAX);
	char (*sel)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	char (*sorted)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	uint32_t uniq = 0;
	int n;

	(void)state;
	assert_non_null(keep);
	assert_non_null(sel);
	assert_non_null(sorted);
	/* 2000 live agents in a shuffled order, 200 repeats, 100 gone */
	for (uint32_t i = 0; i < 2000; i++)
		memcpy(keep[i], live[(i * 7919u) % n_live], FV_NAME_MAX);
	for (uint32_t i = 0; i < 200; i++)
		memcpy(keep[2000 + i], keep[i * 3], FV_NAME_MAX);
	for (uint32_t i = 0; i < 100; i++)
		snprintf(keep[2200 + i], FV_NAME_MAX, "zz-gone-%03u", i);
	n = round_select((const char (*)[FV_NAME_MAX])live, n_live, NULL,
			 (const char (*)[FV_NAME_MAX])keep, n_keep, 1, 0.9, 1, 7, sel);
	assert_int_equal(n, 2700); /* ceil(0.9 * 3000) */
	for (uint32_t i = 0; i < n_keep; i++)
		if (round_find((const char (*)[FV_NAME_MAX])keep, i, keep[i]) < 0)
			assert_string_equal(sel[uniq++], keep[i]);
	assert_int_equal(uniq, 2100);
	for (uint32_t i = uniq; i < (uint32_t)n; i++) {
		assert_int_not_equal(round_find_sorted((const char (*)[FV_NAME_MAX])live, n_live, sel[i]),
				     -1);
		assert_int_equal(round_find((const char (*)[FV_NAME_MAX])keep, n_keep, sel[i]), -1);
	}
	memcpy(sorted, sel, (size_t)n * FV_NAME_MAX);
	qsort(sorted, (size_t)n, FV_NAME_MAX, (int (*)(const void *, const void *))strcmp);
	for (int i = 1; i < n; i++)
		assert_string_not_equal(sorted[i - 1], sorted[i]);
	free(live);
	free(keep);
	free(sel);
	free(sorted);
}

static void test_decide(void **state)
{
	struct round_status s = {
		.n_selected = 4, .n_answered = 0, .quorum_n = 3, .extensions = 0,
		.max_extensions = 2, .now_ms = 1000, .deadline_ms = 2000,
	};

	(void)state;
	assert_int_equal(round_decide(&s), ROUND_WAIT);
	s.n_answered = 3;
	assert_int_equal(round_decide(&s), ROUND_WAIT); /* quorum, but not all */
	s.n_answered = 4;
	assert_int_equal(round_decide(&s), ROUND_CLOSE); /* all answered early */
	s.n_answered = 3;
	s.now_ms = 2000;
	assert_int_equal(round_decide(&s), ROUND_CLOSE); /* quorum at deadline */
	s.n_answered = 2;
	assert_int_equal(round_decide(&s), ROUND_EXTEND);
	s.extensions = 2;
	assert_int_equal(round_decide(&s), ROUND_CLOSE); /* out of extensions, >= 1 */
	s.n_answered = 0;
	assert_int_equal(round_decide(&s), ROUND_ABANDON);
	s.extensions = 1;
	assert_int_equal(round_decide(&s), ROUND_EXTEND);
	/* an empty selection never "all answered" */
	s.n_selected = 0;
	s.now_ms = 0;
	assert_int_equal(round_decide(&s), ROUND_WAIT);
}

static void test_decide_abandon(void **state)
{
	struct round_status s = {
		.n_selected = 4, .n_answered = 1, .quorum_n = 3, .extensions = 2,
		.max_extensions = 2, .now_ms = 2000, .deadline_ms = 2000, .abandon = true,
	};

	(void)state;
	assert_int_equal(round_decide(&s), ROUND_ABANDON); /* short of quorum: give up */
	s.abandon = false;
	assert_int_equal(round_decide(&s), ROUND_CLOSE); /* ... or close with one */
	s.abandon = true;
	s.n_answered = 3;
	assert_int_equal(round_decide(&s), ROUND_CLOSE); /* quorum is quorum */
	s.n_answered = 1;
	s.extensions = 1;
	assert_int_equal(round_decide(&s), ROUND_EXTEND); /* extensions first */
	s.now_ms = 1999;
	assert_int_equal(round_decide(&s), ROUND_WAIT);
}

static void test_deadline(void **state)
{
	int64_t r[20];

	(void)state;
	assert_int_equal(round_deadline(r, 0, 3.0, 1000, 30000), 30000); /* nothing seen */
	for (int i = 0; i < 20; i++)
		r[i] = (19 - i) * 100; /* 0..1900 ms, any order */
	assert_int_equal(round_deadline(r, 20, 0.0, 1000, 30000), 30000); /* fixed */
	/* p90 by nearest rank of 20 values: the 18th smallest, 1700 ms */
	assert_int_equal(round_deadline(r, 20, 3.0, 1000, 30000), 5100);
	assert_int_equal(round_deadline(r, 20, 0.5, 1000, 30000), 1000); /* floor */
	assert_int_equal(round_deadline(r, 20, 30.0, 1000, 30000), 30000); /* ceiling */
	r[0] = 10;
	assert_int_equal(round_deadline(r, 1, 2.5, 10, 100), 25);
	r[0] = -5; /* a clock that went backwards counts as 0 */
	assert_int_equal(round_deadline(r, 1, 2.0, 100, 1000), 100);
}

static void test_staleness(void **state)
{
	(void)state;
	assert_true(round_staleness_weight(0, 0.5) == 1.0);
	assert_float_equal(round_staleness_weight(1, 0.5), 1.0 / sqrt(2.0), 1e-12);
	assert_float_equal(round_staleness_weight(3, 1.0), 0.25, 1e-12);
	assert_true(round_staleness_weight(5, 0.0) == 1.0);
}

static void test_select_prio(void **state)
{
	char (*live)[FV_NAME_MAX] = names(6, "a");
	char (*sel)[FV_NAME_MAX] = calloc(FV_MAX_SELECTED, FV_NAME_MAX);
	uint8_t prio[6] = { ROUND_ELIGIBLE, ROUND_DEMOTED, ROUND_ELIGIBLE,
			    ROUND_BARRED, ROUND_DEMOTED, ROUND_ELIGIBLE };
	int n;

	(void)state;
	assert_non_null(sel);
	/* fraction 1: every eligible one, no demoted or barred one */
	n = round_select((const char (*)[FV_NAME_MAX])live, 6, prio, NULL, 0, 1, 1.0, 1, 3, sel);
	assert_int_equal(n, 3);
	for (int i = 0; i < n; i++) {
		int j = round_find_sorted((const char (*)[FV_NAME_MAX])live, 6, sel[i]);

		assert_int_equal(prio[j], ROUND_ELIGIBLE);
	}
	/* min_agents 5: demoted ones fill in, the barred one never */
	n = round_select((const char (*)[FV_NAME_MAX])live, 6, prio, NULL, 0, 5, 1.0, 1, 3, sel);
	assert_int_equal(n, 5);
	assert_int_equal(round_find((const char (*)[FV_NAME_MAX])sel, 5, live[3]), -1);
	n = round_select((const char (*)[FV_NAME_MAX])live, 6, prio, NULL, 0, 6, 1.0, 1, 3, sel);
	assert_int_equal(n, 5);
	/* fraction 0.2 of 6 -> 2: eligible ones only */
	n = round_select((const char (*)[FV_NAME_MAX])live, 6, prio, NULL, 0, 1, 0.2, 1, 3, sel);
	assert_int_equal(n, 2);
	for (int i = 0; i < n; i++)
		assert_int_equal(prio[round_find_sorted((const char (*)[FV_NAME_MAX])live, 6,
							sel[i])], ROUND_ELIGIBLE);
	free(live);
	free(sel);
}

static void test_part(void **state)
{
	struct part p;
	char (*sel)[FV_NAME_MAX] = names(3, "s");
	uint8_t prio[3];
	struct fv_update got[1], *upd = NULL, late;
	uint32_t n_upd = 0, cap = 0, applied, dropped;
	struct part_hist *h;

	(void)state;
	assert_int_equal(part_init(&p, 4), 0);
	memset(got, 0, sizeof(got));
	memcpy(got[0].h.sender, sel[0], FV_NAME_MAX);
	part_online(&p, sel[0], 100);
	part_online(&p, sel[1], 100);
	part_online(&p, sel[2], 500);
	/* round 7: s00000 answered, the other two missed */
	assert_int_equal(part_missed(&p, 7, 6, FV_ROUND_TRAIN, 200,
				     (const char (*)[FV_NAME_MAX])sel, 3, got, 1), 2);
	assert_null(part_owed(&p, 7, sel[0]));
	h = part_owed(&p, 7, sel[1]);
	assert_non_null(h);
	assert_true(h->base == 6 && h->start_mono == 200);
	assert_null(part_owed(&p, 6, sel[1]));
	part_paid(h, sel[1]);
	assert_null(part_owed(&p, 7, sel[1])); /* a second copy is not late, it is stale */
	assert_non_null(part_owed(&p, 7, sel[2]));
	/* excluded for exclude rounds after the miss */
	assert_int_equal(part_prio(&p, (const char (*)[FV_NAME_MAX])sel, 3, 8, 2, false, 0, prio),
			 2);
	assert_int_equal(prio[0], ROUND_ELIGIBLE);
	assert_int_equal(prio[1], ROUND_DEMOTED);
	assert_int_equal(part_prio(&p, (const char (*)[FV_NAME_MAX])sel, 3, 10, 2, false, 0, prio),
			 0);
	assert_int_equal(part_prio(&p, (const char (*)[FV_NAME_MAX])sel, 3, 8, 0, false, 0, prio),
			 0);
	/* an extension of a round announced at 300 bars s00002 (online at 500) */
	assert_int_equal(part_prio(&p, (const char (*)[FV_NAME_MAX])sel, 3, 20, 2, true, 300, prio),
			 1);
	assert_int_equal(prio[2], ROUND_BARRED);
	/* held late updates: weight by staleness, drop when too stale */
	for (int i = 0; i < 2; i++) {
		memset(&late, 0, sizeof(late));
		memcpy(late.h.sender, sel[1 + i], FV_NAME_MAX);
		late.h.base_version = i == 0 ? 6 : 3;
		late.n_samples = 100;
		late.n_params = 1;
		late.delta = calloc(1, sizeof(float));
		assert_non_null(late.delta);
		assert_int_equal(part_hold(&p, &late), 0);
		assert_null(late.delta); /* moved */
	}
	assert_int_equal(part_release(&p, 7, 2, 1.0, &upd, &n_upd, &cap, &applied, &dropped), 0);
	assert_int_equal(applied, 1);
	assert_int_equal(dropped, 1); /* 4 versions behind > staleness_max 2 */
	assert_int_equal(n_upd, 1);
	assert_int_equal(upd[0].n_samples, 50); /* 100 * (1 + 1)^-1 */
	assert_int_equal(p.n_late, 0);
	fv_update_clear(&upd[0]);
	/* one update per agent: a newer late one or an on-time one wins */
	n_upd = 0;
	for (int i = 0; i < 3; i++) {
		memset(&late, 0, sizeof(late));
		memcpy(late.h.sender, sel[i < 2 ? 1 : 2], FV_NAME_MAX);
		late.h.round = 5 + (uint64_t)i;
		late.h.base_version = 6;
		late.n_samples = 10;
		assert_int_equal(part_hold(&p, &late), 0);
	}
	memset(&upd[0], 0, sizeof(upd[0]));
	memcpy(upd[0].h.sender, sel[2], FV_NAME_MAX); /* s00002 is on time */
	n_upd = 1;
	assert_int_equal(part_release(&p, 6, 2, 1.0, &upd, &n_upd, &cap, &applied, &dropped), 0);
	assert_int_equal(applied, 1);
	assert_int_equal(dropped, 2);
	assert_int_equal(n_upd, 2);
	assert_string_equal(upd[1].h.sender, sel[1]);
	assert_int_equal(upd[1].h.round, 6); /* the newer of s00001's two */
	assert_int_equal(upd[1].n_samples, 10); /* tau 0 */
	free(upd);
	/* the oldest of PART_HIST rounds is forgotten */
	for (uint64_t r = 8; r < 8 + PART_HIST; r++)
		assert_int_equal(part_missed(&p, r, r, FV_ROUND_TRAIN, 0,
					     (const char (*)[FV_NAME_MAX])sel, 3, got, 0), 3);
	assert_null(part_owed(&p, 7, sel[2]));
	assert_non_null(part_owed(&p, 8, sel[2]));
	/* the record table is bounded: a fifth agent is not tracked */
	part_online(&p, "x1", 0);
	part_online(&p, "x2", 0);
	assert_int_equal(p.n_rec, 4);
	part_free(&p);
	free(sel);
}

/* ---- the round machine (coord.c), no broker ---- */

#define FLEET "utest"

struct fixture {
	char dir[64];             /* state_dir (mkdtemp) */
	char path[128];           /* its coordinator.state */
	struct coord_config cfg;
	struct coord *co;
	int64_t t;                /* virtual monotonic clock, ahead of the real one */
};

static void fixture_config(struct fixture *f)
{
	char err[256];

	assert_int_equal(coord_config_defaults(&f->cfg, err, sizeof(err)), 0);
	fv_strlcpy(f->cfg.fleet, FLEET, sizeof(f->cfg.fleet));
	fv_strlcpy(f->cfg.state_dir, f->dir, sizeof(f->cfg.state_dir));
	fv_strlcpy(f->cfg.hidden, "3", sizeof(f->cfg.hidden));
	f->cfg.window = 2;
	f->cfg.channels = 2;
	f->cfg.min_agents = 2;
	f->cfg.rounds = 2;
	f->cfg.deadline_ms = 1000;
	f->cfg.interval_ms = 100;
	f->cfg.max_extensions = 1;
	f->cfg.percentile = 99.5;
	f->cfg.margin = 1.0;
	assert_int_equal(coord_config_finish(&f->cfg, err, sizeof(err)), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fv_log_setup(FV_LOG_ERR, "test_coord_round");
	snprintf(f->dir, sizeof(f->dir), "/tmp/fvcoordXXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/coordinator.state", f->dir);
	fixture_config(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	coord_free(f->co);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void birth(struct coord *co, const char *agent, const char *payload)
{
	char topic[FV_TOPIC_MAX];

	assert_non_null(fv_topic_agent(topic, FLEET, agent, "state"));
	coord_on_message(co, topic, payload, strlen(payload));
}

static void hdr(struct fv_hdr *h, const char *agent, uint64_t round, uint64_t base)
{
	h->schema = FV_SCHEMA_VERSION;
	fv_strlcpy(h->fleet, FLEET, sizeof(h->fleet));
	fv_strlcpy(h->sender, agent, sizeof(h->sender));
	h->round = round;
	h->base_version = base;
	h->ts_ms = fv_now_wall_ms();
}

/* Encode u and deliver it on round/<R>/update/<topic_agent>. */
static void deliver(struct coord *co, uint64_t R, const char *topic_agent,
		    const struct fv_update *u)
{
	char topic[FV_TOPIC_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(fv_update_encode(u, &buf, &len), 0);
	assert_non_null(fv_topic_update(topic, FLEET, R, topic_agent));
	coord_on_message(co, topic, buf, len);
	free(buf);
}

/* The same at virtual time now. */
static void deliver_at(struct coord *co, uint64_t R, const struct fv_update *u, int64_t now)
{
	char topic[FV_TOPIC_MAX];
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(fv_update_encode(u, &buf, &len), 0);
	assert_non_null(fv_topic_update(topic, FLEET, R, u->h.sender));
	coord_on_message_at(co, topic, buf, len, now);
	free(buf);
}

/* A training update at virtual time now: every delta element = d. */
static void train_at(struct coord *co, const char *agent, uint64_t R, uint64_t base, size_t n,
		     float d, uint64_t samples, int64_t now)
{
	struct fv_update u;

	memset(&u, 0, sizeof(u));
	hdr(&u.h, agent, R, base);
	u.kind = FV_ROUND_TRAIN;
	u.n_samples = samples;
	u.loss = 1.0f;
	u.n_params = n;
	u.delta = malloc(sizeof(float) * n);
	assert_non_null(u.delta);
	for (size_t i = 0; i < n; i++)
		u.delta[i] = d;
	fv_hist_init(&u.hist);
	assert_int_equal(fv_hist_add(&u.hist, 0.5), 0);
	deliver_at(co, R, &u, now);
	fv_update_clear(&u);
}

static void birth_at(struct coord *co, const char *agent, int64_t now)
{
	char topic[FV_TOPIC_MAX];
	const char *payload = "{\"state\":\"online\"}";

	assert_non_null(fv_topic_agent(topic, FLEET, agent, "state"));
	coord_on_message_at(co, topic, payload, strlen(payload), now);
}

/* A statistics update: channel c gets readings base+c and base+c+2. */
static void send_stats(struct coord *co, const char *agent, uint32_t C, double base)
{
	struct fv_update u;

	memset(&u, 0, sizeof(u));
	hdr(&u.h, agent, 0, 0);
	u.kind = FV_ROUND_STATS;
	u.n_samples = 2;
	fv_hist_init(&u.hist);
	u.n_channels = C;
	u.stats = calloc(C, sizeof(*u.stats));
	assert_non_null(u.stats);
	for (uint32_t c = 0; c < C; c++) {
		fv_chstats_init(&u.stats[c]);
		fv_chstats_add(&u.stats[c], base + c);
		fv_chstats_add(&u.stats[c], base + c + 2);
	}
	deliver(co, 0, agent, &u);
	fv_update_clear(&u);
}

/* The same at virtual time now (tests of thousands of agents run long
 * under ASan: real time would pass the round's deadline). */
static void stats_at(struct coord *co, const char *agent, uint32_t C, double base, int64_t now)
{
	struct fv_update u;

	memset(&u, 0, sizeof(u));
	hdr(&u.h, agent, 0, 0);
	u.kind = FV_ROUND_STATS;
	u.n_samples = 2;
	fv_hist_init(&u.hist);
	u.n_channels = C;
	u.stats = calloc(C, sizeof(*u.stats));
	assert_non_null(u.stats);
	for (uint32_t c = 0; c < C; c++) {
		fv_chstats_init(&u.stats[c]);
		fv_chstats_add(&u.stats[c], base + c);
		fv_chstats_add(&u.stats[c], base + c + 2);
	}
	deliver_at(co, 0, &u, now);
	fv_update_clear(&u);
}

/* A training update: every delta element = d; 100 scores of `score`. */
static void send_train(struct coord *co, const char *agent, uint64_t R, uint64_t base,
		       size_t n, float d, uint64_t samples, float loss, double score)
{
	struct fv_update u;

	memset(&u, 0, sizeof(u));
	hdr(&u.h, agent, R, base);
	u.kind = FV_ROUND_TRAIN;
	u.n_samples = samples;
	u.loss = loss;
	u.n_params = n;
	u.delta = malloc(sizeof(float) * (n ? n : 1));
	assert_non_null(u.delta);
	for (size_t i = 0; i < n; i++)
		u.delta[i] = d;
	fv_hist_init(&u.hist);
	for (int i = 0; i < 100; i++)
		assert_int_equal(fv_hist_add(&u.hist, score), 0);
	deliver(co, R, agent, &u);
	fv_update_clear(&u);
}

static struct coord_info info(const struct coord *co)
{
	struct coord_info i;

	coord_get_info(co, &i);
	return i;
}

static void test_machine(void **state)
{
	struct fixture *f = *state;
	struct coord_info in;
	float *p1;
	size_t n;

	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	in = info(f->co);
	assert_int_equal(in.round, 0);
	assert_int_equal(in.kind, FV_ROUND_STATS);
	assert_null(in.model);

	coord_on_connected(f->co);
	f->t = fv_now_mono_ms() + 1000; /* past the settle time */
	birth(f->co, "b-agent", "{\"state\":\"online\",\"id\":\"b-agent\"}");
	birth(f->co, "c-agent", "{\"state\":\"offline\"}");
	birth(f->co, "d-agent", "garbage");
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.n_live, 1);
	assert_int_equal(in.phase, COORD_WAIT_AGENTS); /* min_agents = 2 */
	birth(f->co, "a-agent", "{\"state\":\"online\"}");
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.n_selected, 2);

	/* rejections, each counted under its reason */
	send_stats(f->co, "a-agent", 3, 0.0); /* 3 channels, model has 2 */
	assert_int_equal(info(f->co).rejected[FV_REJ_SHAPE], 1);
	send_stats(f->co, "x-agent", 2, 0.0); /* not selected */
	assert_int_equal(info(f->co).rejected[FV_REJ_UNSELECTED], 1);
	coord_on_message(f->co, "fedvigil/v1/" FLEET "/round/0/update/a-agent", "junk", 4);
	assert_int_equal(info(f->co).rejected[FV_REJ_MALFORMED], 1);
	coord_on_message(f->co, "fedvigil/v1/" FLEET "/round/9/update/a-agent", "junk", 4);
	assert_int_equal(info(f->co).rejected[FV_REJ_STALE], 1);
	assert_int_equal(info(f->co).n_answered, 0);

	send_stats(f->co, "a-agent", 2, 0.0);
	assert_int_equal(info(f->co).n_answered, 1);
	send_stats(f->co, "a-agent", 2, 0.0);
	assert_int_equal(info(f->co).rejected[FV_REJ_DUPLICATE], 1);
	assert_int_equal(info(f->co).n_answered, 1);

	/* the last selected agent closes the statistics round at once */
	send_stats(f->co, "b-agent", 2, 10.0);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_PAUSE);
	assert_int_equal(in.round, 1);
	assert_int_equal(in.kind, FV_ROUND_TRAIN);
	assert_non_null(in.model);
	assert_int_equal(in.model->version, 1);
	assert_int_equal(in.model->n_agents, 2);
	assert_true(in.model->threshold == 0.0f);
	assert_int_equal(in.model->n_channels, 2);
	assert_int_equal(in.model->window, 2);
	/* channel 0: 0, 2, 10, 12 -> mean 6, std sqrt(26); channel 1: +1 */
	assert_float_equal(in.model->mean[0], 6.0, 1e-5);
	assert_float_equal(in.model->mean[1], 7.0, 1e-5);
	assert_float_equal(in.model->std[0], sqrt(26.0), 1e-4);
	assert_float_equal(in.model->std[1], sqrt(26.0), 1e-4);
	n = in.model->n_params;
	assert_int_equal(n, 4 * 3 + 3 + 3 * 4 + 4);
	assert_int_equal(access(f->path, R_OK), 0); /* persisted */
	p1 = malloc(sizeof(float) * n);
	assert_non_null(p1);
	memcpy(p1, in.model->params, sizeof(float) * n);

	/* round 1: FedAvg weighted by samples, threshold from the histograms */
	f->t += 1000;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.round, 1);
	send_train(f->co, "a-agent", 1, 1, n - 1, 1.0f, 100, 1.0f, 0.5); /* wrong shape */
	assert_int_equal(info(f->co).rejected[FV_REJ_SHAPE], 1);
	send_train(f->co, "a-agent", 1, 0, n, 1.0f, 100, 1.0f, 0.5); /* old base version */
	assert_int_equal(info(f->co).rejected[FV_REJ_STALE], 1);
	send_train(f->co, "a-agent", 1, 1, n, 1.0f, 0, 1.0f, 0.5); /* no samples */
	assert_int_equal(info(f->co).rejected[FV_REJ_OTHER], 1);
	send_train(f->co, "b-agent", 1, 1, n, 3.0f, 300, 2.0f, 1.0);
	send_train(f->co, "a-agent", 1, 1, n, 1.0f, 100, 1.0f, 0.5);
	in = info(f->co);
	assert_int_equal(in.round, 2);
	assert_int_equal(in.model->version, 2);
	assert_int_equal(in.model->n_agents, 2);
	for (size_t i = 0; i < n; i++)
		assert_float_equal(in.model->params[i], p1[i] + 2.5f, 1e-5);
	assert_float_equal(in.model->loss, 1.75, 1e-6);
	/* 99.5th percentile of {100 x 0.5, 100 x 1.0}: inside 1.0's bin,
	 * [1, 10^0.05) with 20 bins per decade */
	assert_true(in.model->threshold >= 1.0f && in.model->threshold < 1.1221f);
	assert_true(in.model->percentile == 99.5f);

	/* round 2: one of two answers; the deadline extends once, then the
	 * round closes with what it has; rounds = 2 -> finished */
	f->t += 1000;
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	send_train(f->co, "a-agent", 2, 2, n, 1.0f, 10, 0.5f, 0.5);
	f->t += 1000;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.extensions, 1);
	assert_int_equal(in.n_selected, 2);
	assert_int_equal(in.n_answered, 1);
	f->t += 999;
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	f->t += 1;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_FINISHED);
	assert_int_equal(in.model->version, 3);
	assert_int_equal(in.model->n_agents, 1);
	assert_int_equal(in.round, 3);
	for (size_t i = 0; i < n; i++)
		assert_float_equal(in.model->params[i], p1[i] + 3.5f, 1e-5);
	memcpy(p1, in.model->params, sizeof(float) * n);

	/* resume: same round, same model; still finished */
	coord_free(f->co);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	in = info(f->co);
	assert_int_equal(in.round, 3);
	assert_int_equal(in.kind, FV_ROUND_TRAIN);
	assert_non_null(in.model);
	assert_int_equal(in.model->version, 3);
	assert_memory_equal(in.model->params, p1, sizeof(float) * n);
	coord_on_connected(f->co);
	coord_tick(f->co, f->t + 1000, 200);
	assert_int_equal(info(f->co).phase, COORD_FINISHED);
	/* more rounds allowed: it continues with round 3 on version 3 */
	f->cfg.rounds = 0;
	birth(f->co, "a-agent", "{\"state\":\"online\"}");
	coord_tick(f->co, f->t + 2000, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_FINISHED); /* finished stays finished */
	coord_free(f->co);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_on_connected(f->co);
	birth(f->co, "a-agent", "{\"state\":\"online\"}");
	coord_tick(f->co, f->t + 3000, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.round, 3);
	assert_int_equal(in.n_selected, 1);
	free(p1);
}

/* ---- participation: stragglers, late updates, joins, abandoned rounds,
 * adaptive deadlines (virtual clock, coord_on_message_at) ---- */

/* Start the coordinator, bring `n` agents online and close the statistics
 * round; leaves it in round 1's announcement at f->t. Returns n_params. */
static size_t to_round1(struct fixture *f, const char *const *agents, uint32_t n)
{
	struct coord_info in;

	assert_int_equal(coord_config_finish(&f->cfg, (char[256]){ 0 }, 256), 0);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_on_connected(f->co);
	f->t = fv_now_mono_ms() + 1000;
	for (uint32_t i = 0; i < n; i++)
		birth_at(f->co, agents[i], f->t - 1000);
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	for (uint32_t i = 0; i < n; i++)
		send_stats(f->co, agents[i], 2, 0.0);
	in = info(f->co);
	assert_int_equal(in.round, 1);
	assert_int_equal(in.phase, COORD_PAUSE);
	f->t += 200;
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	return in.model->n_params;
}

static void test_straggler_dropped(void **state)
{
	static const char *const ag[] = { "a", "b", "c" };
	struct fixture *f = *state;
	struct coord_info in;
	size_t n;

	f->cfg.min_agents = 2;
	f->cfg.quorum = 0.6; /* 2 of 3 */
	f->cfg.rounds = 0;
	f->cfg.exclude_missed = 2;
	f->cfg.late = 0; /* drop */
	n = to_round1(f, ag, 3);
	assert_int_equal(info(f->co).n_selected, 3);
	train_at(f->co, "a", 1, 1, n, 1.0f, 100, f->t + 100);
	train_at(f->co, "b", 1, 1, n, 1.0f, 100, f->t + 120);
	coord_tick(f->co, f->t + 999, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	coord_tick(f->co, f->t + 1000, 200); /* quorum at the deadline: close */
	in = info(f->co);
	assert_int_equal(in.phase, COORD_PAUSE);
	assert_int_equal(in.model->version, 2);
	assert_int_equal(in.missed, 1);
	/* c's update comes late: recognised, counted, dropped */
	train_at(f->co, "c", 1, 1, n, 5.0f, 100, f->t + 1500);
	in = info(f->co);
	assert_int_equal(in.late_dropped, 1);
	assert_int_equal(in.late_held, 0);
	assert_int_equal(in.rejected[FV_REJ_STALE], 0);
	/* a second copy is stale, and so is an update from one who answered */
	train_at(f->co, "c", 1, 1, n, 5.0f, 100, f->t + 1600);
	train_at(f->co, "a", 1, 1, n, 5.0f, 100, f->t + 1600);
	assert_int_equal(info(f->co).rejected[FV_REJ_STALE], 2);
	/* round 2 leaves c out (it missed round 1), round 4 takes it back */
	f->t += 1100 + 100;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.round, 2);
	assert_int_equal(in.n_selected, 2);
	assert_int_equal(in.excluded, 1);
	train_at(f->co, "a", 2, 2, n, 0.0f, 100, f->t + 10);
	train_at(f->co, "b", 2, 2, n, 0.0f, 100, f->t + 10);
	assert_int_equal(info(f->co).round, 3);
	f->t += 200;
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).n_selected, 2); /* round 3: 3 - 1 <= 2 */
	train_at(f->co, "a", 3, 3, n, 0.0f, 100, f->t + 10);
	train_at(f->co, "b", 3, 3, n, 0.0f, 100, f->t + 10);
	f->t += 200;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.round, 4);
	assert_int_equal(in.n_selected, 3);
	assert_int_equal(in.excluded, 0);
}

static void test_straggler_stale(void **state)
{
	static const char *const ag[] = { "a", "b", "c" };
	struct fixture *f = *state;
	struct coord_info in;
	float *p1;
	size_t n;

	f->cfg.min_agents = 2;
	f->cfg.quorum = 0.6;
	f->cfg.rounds = 0;
	f->cfg.late = 1; /* stale */
	f->cfg.staleness_exponent = 1.0;
	n = to_round1(f, ag, 3);
	train_at(f->co, "a", 1, 1, n, 1.0f, 100, f->t + 100);
	train_at(f->co, "b", 1, 1, n, 1.0f, 100, f->t + 100);
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.model->version, 2);
	p1 = malloc(n * sizeof(float));
	assert_non_null(p1);
	memcpy(p1, in.model->params, n * sizeof(float));
	/* late, one version behind: held with weight 100 * 2^-1 = 50 */
	train_at(f->co, "c", 1, 1, n, 3.5f, 100, f->t + 1500);
	in = info(f->co);
	assert_int_equal(in.late_held, 1);
	assert_int_equal(in.late_dropped, 0);
	f->t += 1200;
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).n_selected, 3); /* exclude_missed = 0 */
	/* round 2 closes at its deadline without c again, with c's late one */
	train_at(f->co, "a", 2, 2, n, 0.0f, 100, f->t + 10);
	train_at(f->co, "b", 2, 2, n, 0.0f, 100, f->t + 10);
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.round, 3);
	assert_int_equal(in.late_applied, 1);
	assert_int_equal(in.late_held, 0);
	assert_int_equal(in.model->n_agents, 3);
	/* (100 * 0 + 100 * 0 + 50 * 3.5) / 250 = 0.7 */
	for (size_t i = 0; i < n; i++)
		assert_float_equal(in.model->params[i], p1[i] + 0.7f, 1e-5);
	memcpy(p1, in.model->params, n * sizeof(float));
	/* c's late update for round 2 gives way to its on-time one for round 3
	 * (one update per agent per aggregate) */
	train_at(f->co, "c", 2, 2, n, 9.0f, 100, f->t + 1100);
	assert_int_equal(info(f->co).late_held, 1);
	f->t += 1200;
	coord_tick(f->co, f->t, 200);
	train_at(f->co, "a", 3, 3, n, 0.0f, 100, f->t + 10);
	train_at(f->co, "b", 3, 3, n, 0.0f, 100, f->t + 10);
	train_at(f->co, "c", 3, 3, n, 0.0f, 100, f->t + 10);
	in = info(f->co);
	assert_int_equal(in.round, 4);
	assert_int_equal(in.late_applied, 0);
	assert_int_equal(in.model->n_agents, 3);
	for (size_t i = 0; i < n; i++)
		assert_float_equal(in.model->params[i], p1[i], 1e-6);
	free(p1);
}

static void test_join_and_deadline(void **state)
{
	static const char *const ag[] = { "a", "b" };
	struct fixture *f = *state;
	struct coord_info in;
	size_t n;

	f->cfg.min_agents = 2;
	f->cfg.rounds = 0;
	f->cfg.deadline_k = 2.0;
	f->cfg.deadline_min_ms = 200;
	f->cfg.deadline_ms = 1000;
	f->cfg.max_extensions = 2;
	n = to_round1(f, ag, 2);
	/* nothing observed yet: the upper bound (the statistics round's
	 * answers came at real time, before the virtual start: 0 ms) */
	in = info(f->co);
	assert_true(in.deadline_ms == 200 || in.deadline_ms == 1000);
	train_at(f->co, "a", 1, 1, n, 0.0f, 10, f->t + 100);
	train_at(f->co, "b", 1, 1, n, 0.0f, 10, f->t + 150);
	assert_int_equal(info(f->co).round, 2);
	f->t += 1000;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	/* p90 of {0, 0, 100, 150} = 150: 2 x 150 = 300 */
	assert_int_equal(in.deadline_ms, 300);
	/* d comes online while round 2 is open: not added by its extension */
	train_at(f->co, "a", 2, 2, n, 0.0f, 10, f->t + 50);
	birth_at(f->co, "d", f->t + 60);
	assert_int_equal(info(f->co).n_live, 3);
	coord_tick(f->co, f->t + 300, 200);
	in = info(f->co);
	assert_int_equal(in.extensions, 1);
	assert_int_equal(in.n_selected, 2);
	assert_int_equal(in.excluded, 1);
	train_at(f->co, "d", 2, 2, n, 0.0f, 10, f->t + 310); /* not selected */
	assert_int_equal(info(f->co).rejected[FV_REJ_UNSELECTED], 1);
	train_at(f->co, "b", 2, 2, n, 0.0f, 10, f->t + 400);
	assert_int_equal(info(f->co).round, 3);
	/* ... and selected from the next round on */
	f->t += 1000;
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.n_selected, 3);
	assert_int_equal(in.excluded, 0);
	train_at(f->co, "d", 3, 3, n, 0.0f, 10, f->t + 10);
	assert_int_equal(info(f->co).n_answered, 1);
}

/* A full selection (FV_MAX_SELECTED agents) through the round machine:
 * every update accepted once, repeats and outsiders refused under their
 * reasons, the one agent that stays silent named as missed after the
 * extension (which keeps the 4095 that answered), and the close aggregates
 * all of them. The bookkeeping is by binary search and per-slot flags; this
 * checks it counts exactly what the linear scans did. */
static void test_many_agents(void **state)
{
	const uint32_t N = FV_MAX_SELECTED;
	char (*ag)[FV_NAME_MAX] = names(N, "agent-");
	struct fixture *f = *state;
	struct coord_info in;

	assert_non_null(ag);
	f->cfg.min_agents = N;
	f->cfg.quorum = 0.5;
	f->cfg.max_extensions = 1;
	f->cfg.rounds = 1;
	assert_int_equal(coord_config_finish(&f->cfg, (char[256]){ 0 }, 256), 0);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_on_connected(f->co);
	f->t = fv_now_mono_ms() + 1000;
	for (uint32_t i = 0; i < N; i++)
		birth_at(f->co, ag[i], f->t - 1000);
	coord_tick(f->co, f->t, 200);
	in = info(f->co);
	assert_int_equal(in.n_live, N);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.n_selected, N);
	/* backwards, so arrival order is not name order */
	for (uint32_t i = N; i-- > 0;)
		if (i != 777)
			stats_at(f->co, ag[i], 2, (double)(i % 10), f->t + 1);
	for (uint32_t i = 0; i < 50; i++)
		stats_at(f->co, ag[i * 3], 2, 0.0, f->t + 1);
	stats_at(f->co, "zz-outsider", 2, 0.0, f->t + 1);
	in = info(f->co);
	assert_int_equal(in.n_answered, N - 1);
	assert_int_equal(in.rejected[FV_REJ_DUPLICATE], 50);
	assert_int_equal(in.rejected[FV_REJ_UNSELECTED], 1);
	/* quorum reached, but the deadline passes first with one missing:
	 * quorum met -> close, agent-00777 named as missed */
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_PAUSE);
	assert_int_equal(in.missed, 1);
	assert_int_equal(in.model->n_agents, N - 1);
	assert_int_equal(in.round, 1);
	free(ag);
}

/* The same with an extension: quorum 1.0 is not met at the deadline, the
 * re-selection keeps every agent that answered (and the silent one, still
 * live), and its update after the extension closes the round. */
static void test_many_agents_extension(void **state)
{
	const uint32_t N = FV_MAX_SELECTED;
	char (*ag)[FV_NAME_MAX] = names(N, "agent-");
	struct fixture *f = *state;
	struct coord_info in;

	assert_non_null(ag);
	f->cfg.min_agents = N;
	f->cfg.quorum = 1.0;
	f->cfg.max_extensions = 1;
	f->cfg.rounds = 1;
	assert_int_equal(coord_config_finish(&f->cfg, (char[256]){ 0 }, 256), 0);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_on_connected(f->co);
	f->t = fv_now_mono_ms() + 1000;
	for (uint32_t i = 0; i < N; i++)
		birth_at(f->co, ag[i], f->t - 1000);
	coord_tick(f->co, f->t, 200);
	for (uint32_t i = 0; i < N; i++)
		if (i != 4000)
			stats_at(f->co, ag[i], 2, 1.0, f->t + 1);
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.extensions, 1);
	assert_int_equal(in.n_selected, N);
	assert_int_equal(in.n_answered, N - 1);
	/* answered agents stay answered after the re-selection */
	stats_at(f->co, ag[5], 2, 1.0, f->t + 1001);
	assert_int_equal(info(f->co).rejected[FV_REJ_DUPLICATE], 1);
	stats_at(f->co, ag[4000], 2, 1.0, f->t + 1001);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_PAUSE);
	assert_int_equal(in.missed, 0);
	assert_int_equal(in.model->n_agents, N);
	free(ag);
}

static void test_abandon(void **state)
{
	static const char *const ag[] = { "a", "b" };
	struct fixture *f = *state;
	struct coord_info in;
	size_t n;

	f->cfg.min_agents = 2;
	f->cfg.rounds = 0;
	f->cfg.no_quorum = 1; /* abandon */
	f->cfg.max_extensions = 1;
	n = to_round1(f, ag, 2);
	train_at(f->co, "a", 1, 1, n, 1.0f, 10, f->t + 10); /* 1 of 2, quorum 2 */
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.extensions, 1);
	coord_tick(f->co, f->t + 2000, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_PAUSE);
	assert_int_equal(in.abandoned, 1);
	assert_int_equal(in.missed, 1);
	assert_int_equal(in.round, 2);          /* moved on ... */
	assert_int_equal(in.model->version, 1); /* ... on the same model */
	/* the abandoned round's number is persisted */
	coord_free(f->co);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	assert_int_equal(info(f->co).round, 2);
	coord_on_connected(f->co);
	f->t += 3000;
	birth_at(f->co, "a", f->t - 900);
	birth_at(f->co, "b", f->t - 900);
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	train_at(f->co, "a", 2, 1, n, 1.0f, 10, f->t + 10);
	train_at(f->co, "b", 2, 1, n, 1.0f, 10, f->t + 10);
	in = info(f->co);
	assert_int_equal(in.round, 3);
	assert_int_equal(in.model->version, 2);
	/* a round without any update is abandoned under no_quorum = close too */
	f->cfg.no_quorum = 0;
	f->cfg.max_extensions = 0;
	f->t += 1000;
	coord_tick(f->co, f->t, 200);
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.abandoned, 1); /* counted since this coordinator started */
	assert_int_equal(in.round, 4);
	assert_int_equal(in.model->version, 2);
}

static void test_abandon_stats(void **state)
{
	struct fixture *f = *state;
	struct coord_info in;

	f->cfg.no_quorum = 1;
	f->cfg.max_extensions = 0;
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_on_connected(f->co);
	f->t = fv_now_mono_ms() + 1000;
	birth_at(f->co, "a", f->t - 900);
	birth_at(f->co, "b", f->t - 900);
	coord_tick(f->co, f->t, 200);
	assert_int_equal(info(f->co).phase, COORD_COLLECT);
	send_stats(f->co, "a", 2, 0.0);
	coord_tick(f->co, f->t + 1000, 200);
	in = info(f->co);
	assert_int_equal(in.abandoned, 1);
	assert_int_equal(in.round, 0); /* the statistics round runs again */
	assert_int_equal(in.kind, FV_ROUND_STATS);
	assert_null(in.model);
	coord_tick(f->co, f->t + 1200, 200);
	in = info(f->co);
	assert_int_equal(in.phase, COORD_COLLECT);
	assert_int_equal(in.n_answered, 0);
	/* a's statistics for the abandoned try are stale now, not late */
	send_stats(f->co, "a", 2, 0.0);
	send_stats(f->co, "b", 2, 1.0);
	assert_int_equal(info(f->co).round, 1);
}

static void test_fp16_model(void **state)
{
	static const char *const ag[] = { "a", "b" };
	struct fixture *f = *state;
	struct coord_info in;
	float *p;
	size_t n;

	f->cfg.comp_model = 1;
	f->cfg.comp_encoding = 2;
	f->cfg.comp_topk = 0.25;
	n = to_round1(f, ag, 2);
	in = info(f->co);
	assert_int_equal(f->cfg.comp.enc, FV_ENC_TOPK_INT8);
	assert_true(f->cfg.comp.topk == 0.25f);
	assert_true(f->cfg.comp.error_feedback);
	assert_int_equal(in.model->params_enc, FV_ENC_FP16);
	p = malloc(n * sizeof(float));
	assert_non_null(p);
	memcpy(p, in.model->params, n * sizeof(float));
	fv_fp16_round(p, n);
	assert_memory_equal(p, in.model->params, n * sizeof(float)); /* already binary16 */
	train_at(f->co, "a", 1, 1, n, 0.001f, 10, f->t + 10);
	train_at(f->co, "b", 1, 1, n, 0.002f, 10, f->t + 10);
	in = info(f->co);
	assert_int_equal(in.model->version, 2);
	memcpy(p, in.model->params, n * sizeof(float));
	fv_fp16_round(p, n);
	assert_memory_equal(p, in.model->params, n * sizeof(float));
	/* the state file keeps exactly these values */
	coord_free(f->co);
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	in = info(f->co);
	assert_int_equal(in.model->params_enc, FV_ENC_FP16);
	assert_memory_equal(p, in.model->params, n * sizeof(float));
	free(p);
}

static void test_config_participation(void **state)
{
	struct coord_config c;
	char err[256];

	(void)state;
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.comp.enc, FV_ENC_FP32);
	assert_int_equal(c.no_quorum, 0);
	assert_int_equal(c.late, 0);
	assert_true(c.deadline_k == 0.0);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "compression.encoding",
				    "fp16", err, sizeof(err)), 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.comp.enc, FV_ENC_FP16);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "compression.topk",
				    "0.1", err, sizeof(err)), 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.comp.enc, FV_ENC_TOPK_FP16);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "compression.encoding",
				    "int4", err, sizeof(err)), -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "compression.topk",
				    "1.5", err, sizeof(err)), -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "round.late", "stale",
				    err, sizeof(err)), 0);
	assert_int_equal(c.late, 1);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "round.no_quorum",
				    "abandon", err, sizeof(err)), 0);
	assert_int_equal(c.no_quorum, 1);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "round.staleness_max",
				    "9", err, sizeof(err)), -EINVAL);
	/* an adaptive deadline whose floor is above its ceiling */
	c.deadline_k = 3.0;
	c.deadline_min_ms = 5000;
	c.deadline_ms = 1000;
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "deadline_min_ms"));
	c.deadline_k = 0.0; /* fixed deadline: the floor does not matter */
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
}

static void test_state_refused(void **state)
{
	struct fixture *f = *state;
	struct coord_config other;
	char err[256];
	FILE *fp;

	/* a fresh run: close the statistics round to get a state file */
	f->cfg.min_agents = 1;
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_on_connected(f->co);
	birth(f->co, "a-agent", "{\"state\":\"online\"}");
	coord_tick(f->co, fv_now_mono_ms() + 1000, 200);
	send_stats(f->co, "a-agent", 2, 0.0);
	assert_int_equal(info(f->co).round, 1);
	coord_free(f->co);
	f->co = NULL;

	/* a config that does not fit the persisted model is refused */
	other = f->cfg;
	other.channels = 3;
	assert_int_equal(coord_config_finish(&other, err, sizeof(err)), 0);
	assert_null(coord_new(&other, NULL, false));
	other = f->cfg;
	other.window = 4;
	assert_int_equal(coord_config_finish(&other, err, sizeof(err)), 0);
	assert_null(coord_new(&other, NULL, false));
	f->co = coord_new(&f->cfg, NULL, false);
	assert_non_null(f->co);
	coord_free(f->co);
	f->co = NULL;

	/* a corrupt file is refused, unless reset */
	fp = fopen(f->path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 20, SEEK_SET), 0);
	fputc('X', fp);
	fclose(fp);
	assert_null(coord_new(&f->cfg, NULL, false));
	f->co = coord_new(&f->cfg, NULL, true);
	assert_non_null(f->co);
	assert_int_equal(info(f->co).round, 0);
	assert_null(info(f->co).model);
}

/* Run coordinator co (fresh or resumed) through training rounds up to and
 * including `last`: two agents, deltas that differ per round and agent. */
static void run_train_rounds(struct coord *co, int64_t *t, uint64_t last)
{
	for (;;) {
		struct coord_info in;

		*t += 1000;
		coord_tick(co, *t, 200);
		in = info(co);
		if (in.phase != COORD_COLLECT || in.round > last)
			return;
		assert_int_equal(in.kind, FV_ROUND_TRAIN);
		send_train(co, "a-agent", in.round, in.model->version, in.model->n_params,
			   0.01f * (float)in.round, 100, 1.0f, 0.5);
		send_train(co, "b-agent", in.round, in.model->version, in.model->n_params,
			   -0.03f / (float)in.round, 300, 1.0f, 0.5);
		assert_int_equal(info(co).round, in.round + 1);
	}
}

static struct coord *start_fleet(const struct coord_config *cfg, int64_t *t)
{
	struct coord *co = coord_new(cfg, NULL, false);

	assert_non_null(co);
	coord_on_connected(co);
	birth(co, "a-agent", "{\"state\":\"online\"}");
	birth(co, "b-agent", "{\"state\":\"online\"}");
	*t = fv_now_mono_ms() + 1000;
	coord_tick(co, *t, 200);
	if (info(co).round == 0) {
		send_stats(co, "a-agent", 2, 0.0);
		send_stats(co, "b-agent", 2, 10.0);
	}
	return co;
}

/* FedAdam with DP: a coordinator stopped after round 2 and restarted from
 * its state file ends round 4 with the same bits (params, moments, epsilon)
 * as one that ran through. */
static void test_resume_optimizer_state(void **state)
{
	struct fixture *f = *state;
	struct coord_config cfg = f->cfg;
	char dir2[64], path2[128], err[256];
	struct coord *ref, *co;
	struct coord_info a, b;
	int64_t t;
	float eps2;

	snprintf(dir2, sizeof(dir2), "/tmp/fvcoordXXXXXX");
	assert_non_null(mkdtemp(dir2));
	snprintf(path2, sizeof(path2), "%s/coordinator.state", dir2);
	cfg.rounds = 4;
	cfg.algorithm = FV_AGG_FEDADAM;
	cfg.dp = true;
	cfg.clip_norm = 0.05;
	cfg.dp_noise = 1.0;
	cfg.dp_seed = 77;
	assert_int_equal(coord_config_finish(&cfg, err, sizeof(err)), 0);

	/* straight through, in dir2 */
	struct coord_config cref = cfg;

	fv_strlcpy(cref.state_dir, dir2, sizeof(cref.state_dir));
	ref = start_fleet(&cref, &t);
	run_train_rounds(ref, &t, 4);
	a = info(ref);
	assert_int_equal(a.model->version, 5);
	assert_string_equal(a.model->aggregation, "fedadam");
	assert_true(a.model->dp_epsilon > 0.0f);
	assert_true(a.model->dp_delta == 1e-5);

	/* two rounds, a restart, two more */
	co = start_fleet(&cfg, &t);
	run_train_rounds(co, &t, 2);
	eps2 = info(co).model->dp_epsilon;
	assert_true(eps2 > 0.0f && eps2 < a.model->dp_epsilon);
	coord_free(co);
	co = start_fleet(&cfg, &t);
	b = info(co);
	assert_int_equal(b.round, 3);
	assert_true(b.model->dp_epsilon == eps2);
	run_train_rounds(co, &t, 4);
	b = info(co);
	assert_int_equal(b.model->version, 5);
	assert_memory_equal(b.model->params, a.model->params, a.model->n_params * sizeof(float));
	assert_true(b.model->dp_epsilon == a.model->dp_epsilon);
	coord_free(co);

	coord_free(ref);
	unlink(path2);
	rmdir(dir2);
}

static void test_config(void **state)
{
	struct coord_config c;
	char err[256];

	(void)state;
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_string_equal(c.fleet, "default");
	assert_int_equal(c.window, 10);
	assert_int_equal(c.channels, 5);
	assert_int_equal(c.deadline_ms, 30000);
	assert_true(c.percentile == 99.0);
	assert_true(c.calibrate);
	assert_int_equal(c.level, FV_LOG_INFO);
	assert_int_equal(c.activation, FV_ACT_TANH);
	assert_int_equal(c.spec.sizes[0], 50);
	assert_int_equal(c.spec.n_layers, 4);
	assert_int_equal(c.spec.sizes[4], 50);
	fv_strlcpy(c.fleet, "a/b", sizeof(c.fleet));
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "fleet"));
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	fv_strlcpy(c.hidden, "32,x", sizeof(c.hidden));
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	c.window = 1024;
	c.channels = 256;
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "round.quorum", "1.5",
				    err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "round.quorum", "0.5",
				    err, sizeof(err)),
			 0);
	assert_true(c.quorum == 0.5);
	/* [threshold] becomes a rule; the method is a name */
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.rule.method, FV_THR_PERCENTILE);
	assert_true(fabs(c.rule.q - 0.99) < 1e-15 && c.rule.margin == 1.0);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "threshold.method", "spot",
				    err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "threshold.method", "pot",
				    err, sizeof(err)),
			 0);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "threshold.k", "2.5", err,
				    sizeof(err)),
			 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.rule.method, FV_THR_POT);
	assert_true(c.rule.k == 2.5);
}

/* [model] preset and its overrides, [round] optimiser keys. */
static void test_config_preset(void **state)
{
	struct coord_config c;
	char err[256];

	(void)state;
#define SET(k, v) \
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, k, v, err, sizeof(err)), 0)
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	SET("model.preset", "dae128");
	SET("model.window", "16");
	SET("model.channels", "8");
	SET("model.hidden", "7,x"); /* ignored with a preset */
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.spec.n_layers, 2);
	assert_int_equal(c.spec.sizes[0], 128);
	assert_int_equal(c.spec.sizes[1], 16);
	assert_int_equal(c.spec.acts[0], FV_ACT_TANH);
	assert_true(c.spec.dropout[0] == 0.2f && c.spec.noise == 0.1f);
	assert_int_equal(c.preset_nominal, 128);
	/* Overrides of the preset's regularisation. */
	SET("model.dropout", "0");
	SET("model.noise", "0.3");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_true(c.spec.dropout[0] == 0.0f && c.spec.noise == 0.3f);
	/* A preset on another width keeps its hidden layers. */
	SET("model.preset", "sae");
	SET("model.window", "10");
	SET("model.channels", "5");
	SET("model.dropout", "-1");
	SET("model.noise", "-1");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.spec.n_layers, 6);
	assert_int_equal(c.spec.sizes[0], 50);
	assert_int_equal(c.spec.sizes[3], 16);
	assert_true(c.spec.noise == 0.0f);
	/* Optimiser keys. */
	SET("round.optimizer", "momentum");
	SET("round.momentum", "0.5");
	SET("round.weight_decay", "0.001");
	assert_int_equal(c.optimizer, FV_OPTIM_MOMENTUM);
	assert_true(c.momentum == 0.5 && c.weight_decay == 0.001);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "round.optimizer", "lbfgs",
				    err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "model.preset", "ae9", err,
				    sizeof(err)),
			 -EINVAL);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "model.dropout", "0.95",
				    err, sizeof(err)),
			 -EINVAL);
#undef SET

	/* [aggregation]: defaults, and checks that span keys */
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.agg.algo, FV_AGG_FEDAVG);
	assert_false(c.agg.dp);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "aggregation.algorithm",
				    "fedprox", err, sizeof(err)),
			 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[aggregation]"));
	assert_non_null(strstr(err, "prox_mu"));
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "aggregation.prox_mu",
				    "0.01", err, sizeof(err)),
			 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.agg.algo, FV_AGG_FEDPROX);
	assert_true(c.agg.prox_mu == 0.01);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "aggregation.algorithm",
				    "krum", err, sizeof(err)),
			 0);
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "aggregation.dp", "on",
				    err, sizeof(err)),
			 0);
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "dp with krum"));
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "aggregation.algorithm",
				    "fedsgd", err, sizeof(err)),
			 -EINVAL);
}

/* [model] preset = conv1d and its conv_* keys; the errors name the rule. */
static void test_config_conv1d(void **state)
{
	struct coord_config c;
	char err[256];

	(void)state;
#define SET(k, v) \
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, k, v, err, sizeof(err)), 0)
	assert_int_equal(coord_config_defaults(&c, err, sizeof(err)), 0);
	SET("model.preset", "conv1d");
	SET("model.window", "32");
	SET("model.channels", "5");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.spec.kind, FV_MODEL_CONV1D);
	assert_int_equal(c.spec.window, 32);
	assert_int_equal(c.spec.n_layers, 5);
	assert_int_equal(c.spec.sizes[0], 5);
	assert_int_equal(c.spec.sizes[1], 32);
	assert_int_equal(c.spec.sizes[2], 16);
	assert_int_equal(c.spec.kernel[0], 7);
	assert_int_equal(c.spec.stride[1], 2);
	assert_int_equal(c.spec.stride[4], 1);
	assert_int_equal(c.preset_nominal, 0);
	/* Its channels are the feature columns: values and differences. */
	SET("model.features", "both");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.spec.sizes[0], 10);
	assert_int_equal(c.spec.sizes[5], 10);
	SET("model.features", "values");
	/* Other shapes, and noise (no dropout in this kind). */
	SET("model.conv_filters", "8, 8, 4");
	SET("model.conv_kernel", "3");
	SET("model.conv_stride", "3");
	SET("model.window", "54");
	SET("model.noise", "0.2");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.spec.n_layers, 7);
	assert_int_equal(c.spec.kernel[6], 3);
	assert_true(c.spec.noise == 0.2f);
	/* A window that does not divide. */
	SET("model.window", "50");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a multiple of conv_stride^3 = 27"));
	SET("model.window", "54");
	SET("model.conv_kernel", "4");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "must be odd"));
	SET("model.conv_kernel", "3");
	SET("model.dropout", "0.2");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no dropout"));
	SET("model.dropout", "-1");
	SET("model.conv_filters", "8,x");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "conv_filters"));
	SET("model.conv_filters", "1,1,1,1,1,1,1,1"); /* 8 levels: 17 layers */
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	SET("model.conv_filters", "1025");
	SET("model.window", "3");
	assert_int_equal(coord_config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "filters <= 1024"));
	assert_int_equal(fv_cfg_set(coord_cfg_keys, coord_cfg_nkeys, &c, "model.conv_stride", "9",
				    err, sizeof(err)),
			 -EINVAL);
#undef SET
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_quorum),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_select_all_and_unique),
		cmocka_unit_test(test_select_deterministic),
		cmocka_unit_test(test_select_fair),
		cmocka_unit_test(test_select_keep),
		cmocka_unit_test(test_select_keep_large),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_decide_abandon),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_staleness),
		cmocka_unit_test(test_select_prio),
		cmocka_unit_test(test_part),
		cmocka_unit_test(test_config_participation),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_preset),
		cmocka_unit_test_setup_teardown(test_resume_optimizer_state, setup, teardown),
		cmocka_unit_test(test_config_conv1d),
		cmocka_unit_test_setup_teardown(test_machine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_straggler_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_straggler_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_join_and_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abandon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_agents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_agents_extension, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abandon_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fp16_model, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
