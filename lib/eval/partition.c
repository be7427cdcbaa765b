/* Re-partitions of pooled training data over K clients: IID, and
 * Dirichlet-alpha non-IID with the source entity as the class. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "fedvigil/eval.h"
#include "fedvigil/util.h"

static void shuffle(size_t *v, size_t n, struct fv_rng *rng)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)fv_rng_below(rng, i);
		size_t t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

int fv_partition_iid(uint32_t *ret_client, size_t n, uint32_t K, uint64_t seed)
{
	struct fv_rng rng;
	size_t *idx;

	if (K == 0)
		return -EINVAL;
	idx = malloc((n ? n : 1) * sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	fv_rng_seed(&rng, seed);
	shuffle(idx, n, &rng);
	for (size_t i = 0; i < n; i++)
		ret_client[idx[i]] = (uint32_t)(i % K);
	free(idx);
	return 0;
}

/* Gamma(a, 1) by Marsaglia and Tsang (2000); a < 1 via the boost
 * Gamma(a) = Gamma(a + 1) * U^(1/a). */
static double gamma_draw(struct fv_rng *rng, double a)
{
	double boost = 1.0, d, c;

	if (a < 1.0) {
		double u = fv_rng_uniform(rng);

		boost = pow(u > 0.0 ? u : 1e-300, 1.0 / a);
		a += 1.0;
	}
	d = a - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		double x = fv_rng_normal(rng), v = 1.0 + c * x, u;

		if (v <= 0.0)
			continue;
		v = v * v * v;
		u = fv_rng_uniform(rng);
		if (u < 1.0 - 0.0331 * x * x * x * x ||
		    log(u > 0.0 ? u : 1e-300) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return boost * d * v;
	}
}

int fv_partition_dirichlet(uint32_t *ret_client, const uint32_t *src, size_t n, uint32_t S,
			   uint32_t K, double alpha, uint64_t seed)
{
	struct fv_rng rng;
	size_t *idx = NULL, *count = NULL;
	double *q = NULL, *rem = NULL;
	int r = -ENOMEM;

	if (K == 0 || S == 0 || !(alpha > 0.0) || !isfinite(alpha))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (src[i] >= S)
			return -EINVAL;
	idx = malloc((n ? n : 1) * sizeof(*idx));
	count = malloc(K * sizeof(*count));
	q = malloc(K * sizeof(*q));
	rem = malloc(K * sizeof(*rem));
	if (!idx || !count || !q || !rem)
		goto out;
	fv_rng_seed(&rng, seed);
	for (uint32_t s = 0; s < S; s++) {
		size_t m = 0, given = 0, pos = 0;
		double sum = 0.0;

		for (size_t i = 0; i < n; i++)
			if (src[i] == s)
				idx[m++] = i;
		for (uint32_t k = 0; k < K; k++) {
			q[k] = gamma_draw(&rng, alpha);
			sum += q[k];
		}
		/* Counts by largest remainder: floor(m q_k), then one more to
		 * the clients with the largest fractional parts. */
		for (uint32_t k = 0; k < K; k++) {
			double want = sum > 0.0 ? (double)m * q[k] / sum : (double)m / K;

			count[k] = (size_t)floor(want);
			rem[k] = want - (double)count[k];
			given += count[k];
		}
		while (given < m) {
			uint32_t best = 0;

			for (uint32_t k = 1; k < K; k++)
				if (rem[k] > rem[best])
					best = k;
			count[best]++;
			rem[best] = -1.0;
			given++;
		}
		shuffle(idx, m, &rng);
		for (uint32_t k = 0; k < K; k++)
			for (size_t j = 0; j < count[k]; j++)
				ret_client[idx[pos++]] = k;
	}
	r = 0;
out:
	free(idx);
	free(count);
	free(q);
	free(rem);
	return r;
}
