/* One agent's local training for a round: a few epochs from the base
 * model, returned as a delta. The agent and fedvigil-eval both call this. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/fleet.h"
#include "fedvigil/util.h"

int fv_local_train(const struct fv_model_spec *spec, const float *base, size_t P,
		   const float *x, size_t N, const struct fv_local_opts *o, float *ret_delta,
		   float *ret_loss)
{
	struct fv_train_opts train;
	struct fv_model *m;
	uint32_t batch;
	const float *p;
	float loss = 0.0f;
	int r;

	if (!spec || !base || !x || N == 0 || !o || !ret_delta || !ret_loss)
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
	r = fv_model_train(m, x, N, FV_MIN(o->epochs, FV_LOCAL_MAX_EPOCHS), batch, &train, o->seed,
			   &loss);
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
