/* fedvigil rounds as library code: the fleet normalisation that closes a
 * statistics round, and an agent's local training for a training round.
 *
 * coordinator/coord.c and agent/agent.c call these, and tools/eval runs
 * the same functions in-process (with fv_agg_round and the scorer's
 * fv_detect_close_round, which close a training round), so an offline
 * experiment normalises, trains and aggregates as the fleet does. */
#ifndef FEDVIGIL_FLEET_H
#define FEDVIGIL_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/fl.h"
#include "fedvigil/nn.h"
#include "fedvigil/threshold.h"

/* ---- coordinator: the statistics round ---- */

/* Fleet normalisation from the merged statistics of a statistics round:
 * per-channel mean and std, the std floored at 1e-3 * max(1, |mean|) (a
 * constant channel of 1000 bar must not turn 0.01 bar of noise into a
 * 10-sigma event). -ENODATA if some channel has no readings; its index goes
 * to *ret_bad (may be NULL) and nothing is written. */
int fv_fleet_norm(const struct fv_chstats *merged, uint32_t C, float *ret_mean, float *ret_std,
		  uint32_t *ret_bad);

/* ---- agent: local training for a round ---- */
#define FV_LOCAL_MAX_EPOCHS 1000 /* bound on the work one announcement can ask for */

struct fv_local_opts {
	uint32_t epochs;           /* local epochs (capped at FV_LOCAL_MAX_EPOCHS) */
	uint32_t batch;            /* mini-batch (0 counts as 1; the caller caps it) */
	struct fv_train_opts train; /* optimiser, learning rate, momentum, L2, FedProx mu
				     * (prox_base is set to the base model here) */
	uint64_t seed;             /* shuffling, dropout and noise seed */
};

/* The training part of an agent's round: train a copy of the base model
 * (fresh optimiser state; with FedProx pulled towards the base) on its
 * prepared windows x (N, the model's input) and write ret_delta (P) =
 * trained - base and *ret_loss (last epoch). base: P parameters of spec.
 * -EINVAL (N == 0, bad sizes or options), -EDOM (P does not match spec),
 * -ERANGE (non-finite input or loss), -ENOMEM. */
int fv_local_train(const struct fv_model_spec *spec, const float *base, size_t P,
		   const float *x, size_t N, const struct fv_local_opts *o, float *ret_delta,
		   float *ret_loss);
/* The same over rows produced on demand (fv_model_train_rows()): the
 * agent builds each window from its ring buffer instead of copying them
 * all out. Same results as fv_local_train() on the same rows. */
int fv_local_train_rows(const struct fv_model_spec *spec, const float *base, size_t P,
			fv_model_row_fn row, void *ctx, size_t N, const struct fv_local_opts *o,
			float *ret_delta, float *ret_loss);

#endif
