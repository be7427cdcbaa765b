/* fedvigil evaluation: detection metrics and data partitions for offline
 * experiments (tools/eval). */
#ifndef FEDVIGIL_EVAL_H
#define FEDVIGIL_EVAL_H

#include <stddef.h>
#include <stdint.h>

/* ---- point metrics ---- */
struct fv_confusion {
	uint64_t tp; /* predicted 1, label 1 */
	uint64_t fp; /* predicted 1, label 0 */
	uint64_t fn; /* predicted 0, label 1 */
	uint64_t tn; /* predicted 0, label 0 */
};

struct fv_rates {
	double precision; /* tp / (tp + fp); 0 when nothing was flagged */
	double recall;    /* tp / (tp + fn); 0 when there are no anomalies */
	double f1;        /* 2 p r / (p + r); 0 when p + r == 0 */
	double fpr;       /* fp / (fp + tn); 0 when there are no normal points */
};

/* Count n points; points whose label is negative (unknown) are skipped. */
void fv_confusion_count(struct fv_confusion *ret, const uint8_t *pred, const int8_t *label,
			size_t n);
void fv_confusion_add(struct fv_confusion *dst, const struct fv_confusion *src);
void fv_rates_from(const struct fv_confusion *c, struct fv_rates *ret);

/* ROC-AUC of scores against labels (Mann-Whitney U: the probability that a
 * random anomalous point scores above a random normal one, ties counting
 * one half). NAN scores (no verdict) rank below every score and tie with
 * each other. Points with a negative label are skipped. -ENODATA when one
 * class is empty, -ENOMEM. */
int fv_roc_auc(const double *score, const int8_t *label, size_t n, double *ret_auc);
/* PR-AUC as average precision (sklearn's definition): sum over distinct
 * score thresholds, highest first, of (recall step) * precision; tied
 * scores are one threshold. NAN scores as above. -ENODATA without
 * anomalies, -ENOMEM. */
int fv_pr_auc(const double *score, const int8_t *label, size_t n, double *ret_ap);
/* ROC curve: (fpr, tpr) after each distinct threshold, from (0, 0) to
 * (1, 1), thinned to at most max_points (>= 2) evenly spaced points.
 * ret_fpr/ret_tpr need max_points entries; *ret_n gets the count. */
int fv_roc_curve(const double *score, const int8_t *label, size_t n, size_t max_points,
		 double *ret_fpr, double *ret_tpr, size_t *ret_n);
/* Point adjustment (as in much of the literature, and only ever reported
 * labelled as such): every point of a contiguous anomalous segment counts as
 * detected when any point of it was predicted. ret_pred may equal pred. */
void fv_point_adjust(uint8_t *ret_pred, const uint8_t *pred, const int8_t *label, size_t n);

/* ---- partitions of training data over K clients ---- */
/* IID: a seeded shuffle dealt round-robin, so client sizes differ by at
 * most one. ret_client (n) gets each item's client. -EINVAL if K == 0. */
int fv_partition_iid(uint32_t *ret_client, size_t n, uint32_t K, uint64_t seed);
/* Dirichlet-alpha over sources (Hsu et al. 2019, with the item's source
 * entity as its class): for each source, proportions q ~ Dir(alpha) over
 * the K clients, and its items (shuffled) are split in those proportions
 * (largest remainder, so counts sum exactly). Small alpha: each source on
 * few clients; alpha -> infinity: every client an even share of every
 * source (IID). src (n) in [0, S). -EINVAL on bad arguments, -ENOMEM. */
int fv_partition_dirichlet(uint32_t *ret_client, const uint32_t *src, size_t n, uint32_t S,
			   uint32_t K, double alpha, uint64_t seed);

#endif
