/* What the model sees of a window: normalised values, their first
 * differences, or both. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "fedvigil/detect.h"

static const char *const feat_names[FV_FEAT__MAX] = { "values", "diff", "both" };

int fv_feat_parse(const char *s, enum fv_feat *ret)
{
	for (int i = 0; i < FV_FEAT__MAX; i++)
		if (strcmp(s, feat_names[i]) == 0) {
			*ret = (enum fv_feat)i;
			return 0;
		}
	return -EINVAL;
}

const char *fv_feat_name(enum fv_feat f)
{
	return (unsigned)f < FV_FEAT__MAX ? feat_names[f] : "?";
}

uint32_t fv_feat_columns(enum fv_feat f, uint32_t C)
{
	return f == FV_FEAT_BOTH ? 2 * C : C;
}

/* raw: (W, C) -> ret: (W, K) with K = C (values or diff) or 2C (both:
 * row w is [z_w, z_w - z_{w-1}]). z is computed as fv_window_normalize()
 * does (a std that is not positive and finite only centres). */
void fv_feat_prepare(float *ret, const float *raw, uint32_t W, uint32_t C, const float *mean,
		     const float *std, enum fv_feat f)
{
	uint32_t K = fv_feat_columns(f, C);

	for (uint32_t w = 0; w < W; w++) {
		const float *x = raw + (size_t)w * C;
		const float *xp = w ? raw + (size_t)(w - 1) * C : x;
		float *y = ret + (size_t)w * K;

		for (uint32_t c = 0; c < C; c++) {
			float s = std[c];
			float inv = (isfinite(s) && s > 1e-12f) ? 1.0f / s : 1.0f;
			float z = (x[c] - mean[c]) * inv;
			float zp = (xp[c] - mean[c]) * inv;

			switch (f) {
			case FV_FEAT_VALUES:
				y[c] = z;
				break;
			case FV_FEAT_DIFF:
				y[c] = z - zp;
				break;
			case FV_FEAT_BOTH:
				y[c] = z;
				y[C + c] = z - zp;
				break;
			}
		}
	}
}
