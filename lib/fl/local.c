/* One agent's local training for a round: a few epochs from the base
 * model, returned as a delta. The agent and fedvigil-eval both call this. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/fleet.h"
#include "fedvigil/util.h"

/* Over the array x (N, input) when x, else over row(ctx, i, dst). */
static int local_train(const struct fv_model_spec *spec, const float *base, size_t P,
		       const float *x, fv_model_row_fn row, void *ctx, size_t N,
		       const struct fv_local_opts *o, float *ret_delta, float *ret_loss)
{
	struct fv_train_opts train;
	struct fv_model *m;
	uint32_t batch, epochs;
	const float *p;
	float loss = 0.0f;
	int r;

	if (!spec || !base || (!x && !row) || N == 0 || !o || !ret_delta || !ret_loss)
		return -EINVAL;
	batch = o->batch < 1 ? 1 : o->batch;
	m = fv_model_new(spec, batch);
	if (!m)
		return errno == ENOMEM ? -ENOMEM : -EINVAL;
	r = fv_model_set_params(m, base, P);
	if (r < 0)
		goto out;
	fv_model_optim_reset(m);
	/* FedProx: the proximal term pulls towards the round's base model. */
	train = o->train;
	train.prox_base = train.prox_mu > 0.0f ? base : NULL;
	epochs = FV_MIN(o->epochs, FV_LOCAL_MAX_EPOCHS);
	r = x ? fv_model_train(m, x, N, epochs, batch, &train, o->seed, &loss)
	      : fv_model_train_rows(m, row, ctx, N, epochs, batch, &train, o->seed, &loss);
	if (r < 0)
		goto out;
	if (!isfinite(loss)) {
		r = -ERANGE;
		goto out;
	}
	p = fv_model_params(m);
	for (size_t i = 0; i < P; i++)
		ret_delta[i] = p[i] - base[i];
	*ret_loss = loss;
out:
	fv_model_free(m);
	return r;
}

int fv_local_train(const struct fv_model_spec *spec, const float *base, size_t P,
		   const float *x, size_t N, const struct fv_local_opts *o, float *ret_delta,
		   float *ret_loss)
{
	if (!x)
		return -EINVAL;
	return local_train(spec, base, P, x, NULL, NULL, N, o, ret_delta, ret_loss);
}

int fv_local_train_rows(const struct fv_model_spec *spec, const float *base, size_t P,
			fv_model_row_fn row, void *ctx, size_t N, const struct fv_local_opts *o,
			float *ret_delta, float *ret_loss)
{
	if (!row)
		return -EINVAL;
	return local_train(spec, base, P, NULL, row, ctx, N, o, ret_delta, ret_loss);
}
