/* An agent's training update, compressed as the round asks, with error
 * feedback: what fedvigil-agent (compress_and_send()) and fedvigil-swarm
 * encode (test_encode_comp checks it against the by-hand sequence). */
#include <errno.h>
#include <stdlib.h>

#include "fedvigil/wire.h"

int fv_update_encode_comp(struct fv_update *u, const struct fv_compress *c,
			  const struct fv_model_spec *spec, struct fv_ef *ef, uint8_t **ret_buf,
			  size_t *ret_len)
{
	size_t P = u->n_params;
	float *delta = u->delta, *v = NULL, *sent = NULL;
	int r;

	u->enc = c->enc;
	u->topk = c->topk;
	/* One int8 scale, and one top-k share, per layer's W and b. */
	u->n_seg = 0;
	if (c->enc != FV_ENC_FP32 && c->enc != FV_ENC_FP16)
		u->n_seg = fv_compress_segments(spec, u->seg, FV_WIRE_MAX_SEG);
	if (!c->error_feedback || !ef) {
		/* A residual from earlier rounds is meaningless without it. */
		fv_ef_free(ef);
		return fv_update_encode(u, ret_buf, ret_len);
	}
	if (ef->n != P || !ef->resid) {
		fv_ef_free(ef);
		if (fv_ef_init(ef, P) < 0)
			return -ENOMEM;
	}
	v = malloc(P * sizeof(float));
	sent = malloc(P * sizeof(float));
	if (!v || !sent) {
		r = -ENOMEM;
		goto out;
	}
	fv_ef_add(ef, delta, v);
	u->delta = v;
	r = fv_update_encode_sent(u, sent, ret_buf, ret_len);
	u->delta = delta;
	if (r == 0)
		fv_ef_commit(ef, v, sent);
out:
	free(v);
	free(sent);
	return r;
}
