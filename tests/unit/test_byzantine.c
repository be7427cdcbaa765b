/* Byzantine agents against the aggregators of lib/fl (fl.h), in process on
 * synthetic deltas: 10 updates, 8 honest (a common direction mu, |mu| = 1,
 * plus per-agent noise), 2 hostile ones that send well-formed (finite)
 * but malicious updates:
 *
 *   scale    50 x their honest delta
 *   flip     -10 x their honest delta (sign-flipped and boosted)
 *   random   Gaussian of norm 100
 *   inflate  -1 x their honest delta (a normal norm), claiming 2^40 windows
 *   huge     1e30 in every coordinate (finite, norm ~1.6e31)
 *
 * Robust rules (median, trimmed mean, Krum, multi-Krum, FedAvg with
 * clipping) must stay within a bound of the honest agents' weighted mean;
 * plain FedAvg (claims trusted, no clipping) must not. Then the defences
 * of fl.h that make FedAvg itself bounded: sample_cap against inflated
 * claims and clip_ratio against huge updates, each with the case that fails
 * without it. docs/reliability.md ("Hostile clients") has the numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/fl.h"
#include "fedvigil/util.h"

#define K 10    /* updates per round */
#define F 2     /* hostile ones among them */
#define N 256   /* parameters */
#define NOISE 0.02 /* per-coordinate std of the honest agents' deviation from mu */

enum attack { ATK_SCALE, ATK_FLIP, ATK_RANDOM, ATK_INFLATE, ATK_HUGE, ATK__MAX };
static const char *const attack_names[ATK__MAX] = { "scale x50", "flip x-10", "random |100|",
						    "inflate 2^40", "huge 1e30" };
/* The hostile agents sit inside the name order, not at its ends. */
static const int hostile[F] = { 3, 7 };

struct round_data {
	char names[K][16];
	float delta[K][N];
	uint64_t n[K];
	double honest[N]; /* the honest agents' sample-weighted mean */
	double mu_norm;   /* |honest| */
};

static bool is_hostile(int i)
{
	for (int j = 0; j < F; j++)
		if (hostile[j] == i)
			return true;
	return false;
}

static void make_round(struct round_data *d, enum attack atk, uint64_t seed)
{
	struct fv_rng rng;
	double mu[N], nrm = 0.0, wsum = 0.0;

	memset(d, 0, sizeof(*d));
	fv_rng_seed(&rng, seed);
	for (int j = 0; j < N; j++) {
		mu[j] = fv_rng_normal(&rng);
		nrm += mu[j] * mu[j];
	}
	for (int j = 0; j < N; j++)
		mu[j] /= sqrt(nrm);
	for (int i = 0; i < K; i++) {
		snprintf(d->names[i], sizeof(d->names[i]), "agent-%02d", i);
		d->n[i] = 900 + 40 * (uint64_t)i; /* honest claims differ a little */
		for (int j = 0; j < N; j++)
			d->delta[i][j] = (float)(mu[j] + NOISE * fv_rng_normal(&rng));
	}
	for (int i = 0; i < K; i++) {
		if (is_hostile(i))
			continue;
		for (int j = 0; j < N; j++)
			d->honest[j] += (double)d->n[i] * (double)d->delta[i][j];
		wsum += (double)d->n[i];
	}
	nrm = 0.0;
	for (int j = 0; j < N; j++) {
		d->honest[j] /= wsum;
		nrm += d->honest[j] * d->honest[j];
	}
	d->mu_norm = sqrt(nrm);
	for (int h = 0; h < F; h++) {
		float *x = d->delta[hostile[h]];
		double s = 0.0;

		switch (atk) {
		case ATK_SCALE:
			for (int j = 0; j < N; j++)
				x[j] *= 50.0f;
			break;
		case ATK_FLIP:
			for (int j = 0; j < N; j++)
				x[j] *= -10.0f;
			break;
		case ATK_RANDOM:
			for (int j = 0; j < N; j++) {
				x[j] = (float)fv_rng_normal(&rng);
				s += (double)x[j] * x[j];
			}
			for (int j = 0; j < N; j++)
				x[j] = (float)(x[j] * 100.0 / sqrt(s));
			break;
		case ATK_INFLATE:
			for (int j = 0; j < N; j++)
				x[j] = -x[j];
			d->n[hostile[h]] = 1ull << 40;
			break;
		case ATK_HUGE:
			for (int j = 0; j < N; j++)
				x[j] = 1e30f;
			break;
		default:
			break;
		}
	}
}

/* One round of cfg on d from zero parameters: the step's distance to the
 * honest mean (infinite when the aggregator refused the round), with the
 * result in *ret (may be NULL). */
static double run(const struct fv_agg_config *cfg, const struct round_data *d,
		  struct fv_agg_result *ret)
{
	struct fv_agg *a = fv_agg_new(cfg, N, K);
	struct fv_agg_update up[K];
	struct fv_agg_result res;
	float params[N] = { 0 }, out[N];
	double dist = 0.0;
	int r;

	assert_non_null(a);
	for (int i = 0; i < K; i++)
		up[i] = (struct fv_agg_update){ d->names[i], d->delta[i], d->n[i] };
	r = fv_agg_round(a, params, up, K, 1.0, 1, out, NULL, &res);
	fv_agg_free(a);
	if (r < 0)
		return INFINITY;
	for (int j = 0; j < N; j++) {
		double e = (double)out[j] - d->honest[j];

		dist += e * e;
	}
	if (ret)
		*ret = res;
	return sqrt(dist);
}

/* A rule as published: no relative clipping, every claim trusted. */
static struct fv_agg_config plain(enum fv_agg_algo algo)
{
	struct fv_agg_config c = FV_AGG_CONFIG_DEFAULTS;

	c.algo = algo;
	c.clip_ratio = 0.0;
	c.sample_cap = 0.0;
	c.krum_f = F;
	c.trim_beta = 0.2; /* t = 2 of 10 per side */
	return c;
}

/* Every robust rule under every attack stays within 0.5 |mu| of the honest
 * mean (the honest noise alone puts Krum's single pick ~0.3 away); FedAvg
 * with clip_norm C within its bound F/K (C + |h|), the most that F clipped
 * updates can move a mean of K; plain FedAvg is further than 1.5 |mu| under
 * every attack. */
static void test_rules_under_attack(void **state)
{
	static const enum fv_agg_algo robust[] = { FV_AGG_MEDIAN, FV_AGG_TRIMMED_MEAN,
						   FV_AGG_KRUM, FV_AGG_MULTI_KRUM };
	(void)state;
	for (int atk = 0; atk < ATK__MAX; atk++) {
		struct round_data d;
		struct fv_agg_config c;
		struct fv_agg_result res;
		double dist, clip_bound, C = 1.5;

		make_round(&d, (enum attack)atk, 100 + (uint64_t)atk);
		c = plain(FV_AGG_FEDAVG);
		dist = run(&c, &d, NULL);
		print_message("%-13s fedavg %9.3g", attack_names[atk], dist);
		if (!(dist > 1.5 * d.mu_norm))
			fail_msg("%s: plain fedavg is only %.3g from the honest mean", attack_names[atk],
				 dist);
		for (size_t r = 0; r < FV_ARRAY_SIZE(robust); r++) {
			bool used[K];
			struct fv_agg *a;

			c = plain(robust[r]);
			dist = run(&c, &d, &res);
			print_message("  %s %.3f", fv_agg_algo_name(robust[r]), dist);
			if (!(dist <= 0.5 * d.mu_norm))
				fail_msg("%s: %s is %.3g from the honest mean (bound %.3g)",
					 attack_names[atk], fv_agg_algo_name(robust[r]), dist,
					 0.5 * d.mu_norm);
			assert_true(res.robust_ok);
			if (robust[r] != FV_AGG_KRUM && robust[r] != FV_AGG_MULTI_KRUM)
				continue;
			/* Krum and multi-Krum leave both hostile updates out. */
			struct fv_agg_update up[K];
			float p[N] = { 0 }, out[N];

			for (int i = 0; i < K; i++)
				up[i] = (struct fv_agg_update){ d.names[i], d.delta[i], d.n[i] };
			a = fv_agg_new(&c, N, K);
			assert_non_null(a);
			assert_int_equal(fv_agg_round(a, p, up, K, 1.0, 1, out, used, NULL), 0);
			for (int h = 0; h < F; h++)
				assert_false(used[hostile[h]]);
			fv_agg_free(a);
		}
		/* FedAvg + clip_norm: every hostile update counts at most C; with
		 * trusted claims the inflated one still takes the mean over (next
		 * test), so here the claims are capped at the median. */
		c = plain(FV_AGG_FEDAVG);
		c.clip_norm = C;
		c.sample_cap = 1.0;
		dist = run(&c, &d, &res);
		clip_bound = (double)F / K * (C + 1.1 * d.mu_norm) * 1.1; /* weights differ a little */
		print_message("  fedavg+clip %.3f (bound %.3f)\n", dist, clip_bound);
		if (!(dist <= clip_bound))
			fail_msg("%s: fedavg + clip_norm %.1f is %.3g from the honest mean (bound %.3g)",
				 attack_names[atk], C, dist, clip_bound);
		assert_int_equal(res.n_clipped, atk == ATK_INFLATE ? 0 : F);
	}
}

/* Inflated claims: with every claim trusted, two liars take the weighted
 * mean over even with clip_norm (their clipped updates carry all the
 * weight); sample_cap bounds their share of the weight to
 * F r / (F r + K - F) with r = sample_cap, so cap 1 leaves them no more
 * than an honest agent. Fails without sample_cap. */
static void test_inflated_claims(void **state)
{
	struct round_data d;
	struct fv_agg_config c;
	struct fv_agg_result res;
	double d_trust, d_cap1, d_cap10, d_median;

	(void)state;
	make_round(&d, ATK_INFLATE, 7);
	c = plain(FV_AGG_FEDAVG);
	c.clip_norm = 1.5;
	d_trust = run(&c, &d, &res);
	assert_int_equal(res.n_capped, 0);
	/* the liars' -mu: about 2 |mu| from the honest mean */
	assert_true(d_trust > 1.9 * d.mu_norm);
	c.sample_cap = 1.0;
	d_cap1 = run(&c, &d, &res);
	/* the liars, and the 3 honest claims above the median (1120) */
	assert_int_equal(res.n_capped, F + 3);
	/* as if the liars had claimed the median: (K-2F)/K of mu remains */
	assert_true(d_cap1 < 0.5 * d.mu_norm);
	c.sample_cap = 10.0; /* the default */
	d_cap10 = run(&c, &d, &res);
	assert_int_equal(res.n_capped, F);
	/* their share of the weight is at most 2*10 / (2*10 + 8): the distance
	 * at most that share of the 2 |mu| between -mu and mu (plus noise) */
	assert_true(d_cap10 < (20.0 / 28.0) * 2.05 * d.mu_norm);
	assert_true(d_cap10 < d_trust);
	/* the robust rules ignore claims altogether */
	c = plain(FV_AGG_MEDIAN);
	d_median = run(&c, &d, NULL);
	assert_true(d_median < 0.2 * d.mu_norm);
	print_message("inflate: trusted %.3f, sample_cap 1 %.3f, sample_cap 10 %.3f, median %.3f\n",
		      d_trust, d_cap1, d_cap10, d_median);
}

/* A huge but finite update passes validation and, through plain FedAvg,
 * moves the model by ~1e30 (agents then train from overflowing weights);
 * clip_ratio scales it to r times the median norm. Fails without
 * clip_ratio. */
static void test_huge_update(void **state)
{
	struct round_data d;
	struct fv_agg_config c;
	struct fv_agg_result res;
	double dist;

	(void)state;
	make_round(&d, ATK_HUGE, 9);
	c = plain(FV_AGG_FEDAVG);
	dist = run(&c, &d, &res);
	/* either refused as non-finite (the round is lost, and will be again)
	 * or accepted with a step of ~1e29: no progress either way */
	assert_true(dist > 1e20);
	c.clip_ratio = 10.0; /* the default */
	dist = run(&c, &d, &res);
	assert_int_equal(res.n_clipped, F);
	/* each at most 10 |h|, weight ~1/10 each */
	assert_true(dist < 2.0 * 10.0 * 1.1 * d.mu_norm * 0.12 + 0.1);
	assert_true(res.step_norm < 4.0 * d.mu_norm);
	print_message("huge: clip_ratio 10 -> %.3f from the honest mean, step %.3f\n", dist,
		      res.step_norm);
	c.clip_ratio = 1.5;
	dist = run(&c, &d, &res);
	assert_true(dist < 0.5 * d.mu_norm);
}

/* The defences leave an honest round alone (no update 10x the median, no
 * claim 10x the median: the same bits as without them), are ignored by the
 * unweighted rules (caps) and under DP (clip_ratio), and are checked. */
static void test_defaults_honest(void **state)
{
	struct fv_agg_config with = FV_AGG_CONFIG_DEFAULTS, without = plain(FV_AGG_FEDAVG);
	struct fv_agg *a, *b;
	struct fv_agg_update up[K];
	struct fv_agg_result res;
	float p[N] = { 0 }, o1[N], o2[N];
	struct round_data d;
	char err[256];

	(void)state;
	make_round(&d, ATK__MAX, 11); /* ATK__MAX: nobody attacks */
	for (int i = 0; i < K; i++)
		up[i] = (struct fv_agg_update){ d.names[i], d.delta[i], d.n[i] };
	without.krum_f = with.krum_f;
	without.trim_beta = with.trim_beta;
	a = fv_agg_new(&with, N, K);
	b = fv_agg_new(&without, N, K);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(fv_agg_round(a, p, up, K, 1.0, 1, o1, NULL, &res), 0);
	assert_int_equal(res.n_clipped, 0);
	assert_int_equal(res.n_capped, 0);
	assert_int_equal(fv_agg_round(b, p, up, K, 1.0, 1, o2, NULL, NULL), 0);
	assert_memory_equal(o1, o2, sizeof(o1));
	fv_agg_free(a);
	fv_agg_free(b);

	with.clip_ratio = 0.5;
	assert_int_equal(fv_agg_config_check(&with, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "clip_ratio"));
	with.clip_ratio = 10.0;
	with.sample_cap = 0.9;
	assert_int_equal(fv_agg_config_check(&with, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sample_cap"));
	with.sample_cap = 1.0;
	assert_int_equal(fv_agg_config_check(&with, err, sizeof(err)), 0);

	/* median: claims are not weights, nothing is capped */
	make_round(&d, ATK_INFLATE, 12);
	with = (struct fv_agg_config)FV_AGG_CONFIG_DEFAULTS;
	with.algo = FV_AGG_MEDIAN;
	(void)run(&with, &d, &res);
	assert_int_equal(res.n_capped, 0);
	/* DP: the sensitivity is clip_norm alone; clip_ratio would make it
	 * depend on the other agents' updates */
	make_round(&d, ATK_SCALE, 13);
	with = (struct fv_agg_config)FV_AGG_CONFIG_DEFAULTS;
	with.dp = true;
	with.clip_norm = 1000.0;
	with.dp_noise = 0.01;
	with.dp_seed = 5;
	(void)run(&with, &d, &res);
	assert_int_equal(res.n_clipped, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_under_attack),
		cmocka_unit_test(test_inflated_claims),
		cmocka_unit_test(test_huge_update),
		cmocka_unit_test(test_defaults_honest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
