/* Closing a statistics round: the fleet's normalisation from the merged
 * per-channel statistics. The coordinator and fedvigil-eval both call it. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "fedvigil/fleet.h"
#include "fedvigil/util.h"

int fv_fleet_norm(const struct fv_chstats *merged, uint32_t C, float *ret_mean, float *ret_std,
		  uint32_t *ret_bad)
{
	for (uint32_t c = 0; c < C; c++)
		if (merged[c].count == 0) {
			if (ret_bad)
				*ret_bad = c;
			return -ENODATA;
		}
	for (uint32_t c = 0; c < C; c++) {
		double mean = merged[c].sum / (double)merged[c].count;
		double min_std = 1e-3 * FV_MAX(1.0, fabs(mean));
		int r = fv_norm_from_stats(&merged[c], 1, min_std, &ret_mean[c], &ret_std[c]);

		if (r < 0)
			return r;
	}
	return 0;
}
