/* Federated aggregation: sample-weighted FedAvg. */
#include <errno.h>
#include <math.h>

#include "fedvigil/fl.h"
#include "fedvigil/util.h"

#define BLOCK 256 /* doubles accumulated per pass over the k inputs */

int fv_agg_fedavg(float *ret_avg, const float *const *deltas, const uint64_t *weights,
		  uint32_t k, size_t n)
{
	double wsum = 0.0;

	if (k == 0 || !deltas || !weights || (n > 0 && !ret_avg))
		return -EINVAL;
	for (uint32_t i = 0; i < k; i++) {
		if (weights[i] > 0 && n > 0 && !deltas[i])
			return -EINVAL;
		wsum += (double)weights[i];
	}
	if (wsum == 0.0)
		return -EINVAL;
	/* Check every input before writing anything, so ret_avg is untouched on
	 * failure and one bad update cannot poison the average. */
	for (uint32_t i = 0; i < k; i++) {
		if (weights[i] == 0)
			continue;
		for (size_t j = 0; j < n; j++)
			if (!isfinite(deltas[i][j]))
				return -ERANGE;
	}

	/* Blocked so the k inputs are streamed once each, with a stack
	 * accumulator; every element is still summed in input order. */
	for (size_t j0 = 0; j0 < n; j0 += BLOCK) {
		size_t len = FV_MIN((size_t)BLOCK, n - j0);
		double acc[BLOCK];

		for (size_t j = 0; j < len; j++)
			acc[j] = 0.0;
		for (uint32_t i = 0; i < k; i++) {
			const float *d = deltas[i] + j0;
			double w = (double)weights[i];

			if (weights[i] == 0)
				continue;
			for (size_t j = 0; j < len; j++)
				acc[j] += w * (double)d[j];
		}
		for (size_t j = 0; j < len; j++)
			ret_avg[j0 + j] = (float)(acc[j] / wsum);
	}
	return 0;
}
