/* Point metrics of a detector: confusion counts, ROC-AUC, average
 * precision, the ROC curve, point adjustment. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "fedvigil/eval.h"
#include "fedvigil/util.h"

void fv_confusion_count(struct fv_confusion *ret, const uint8_t *pred, const int8_t *label,
			size_t n)
{
	struct fv_confusion c = { 0 };

	for (size_t i = 0; i < n; i++) {
		if (label[i] < 0)
			continue;
		if (pred[i])
			label[i] ? c.tp++ : c.fp++;
		else
			label[i] ? c.fn++ : c.tn++;
	}
	*ret = c;
}

void fv_confusion_add(struct fv_confusion *dst, const struct fv_confusion *src)
{
	dst->tp += src->tp;
	dst->fp += src->fp;
	dst->fn += src->fn;
	dst->tn += src->tn;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

void fv_rates_from(const struct fv_confusion *c, struct fv_rates *ret)
{
	ret->precision = ratio(c->tp, c->tp + c->fp);
	ret->recall = ratio(c->tp, c->tp + c->fn);
	ret->f1 = ret->precision + ret->recall > 0
			  ? 2.0 * ret->precision * ret->recall / (ret->precision + ret->recall)
			  : 0.0;
	ret->fpr = ratio(c->fp, c->fp + c->tn);
}

/* Scores with labels, sorted descending; NAN (no verdict) as -inf. */
struct item {
	double s;
	int8_t y;
};

static int cmp_desc(const void *a, const void *b)
{
	double x = ((const struct item *)a)->s, y = ((const struct item *)b)->s;

	return x < y ? 1 : x > y ? -1 : 0;
}

static struct item *sorted(const double *score, const int8_t *label, size_t n, size_t *ret_n,
			   uint64_t *ret_pos)
{
	struct item *v = malloc((n ? n : 1) * sizeof(*v));
	size_t k = 0;
	uint64_t pos = 0;

	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (label[i] < 0)
			continue;
		v[k].s = isnan(score[i]) ? -INFINITY : score[i];
		v[k].y = label[i] ? 1 : 0;
		pos += v[k].y;
		k++;
	}
	qsort(v, k, sizeof(*v), cmp_desc);
	*ret_n = k;
	*ret_pos = pos;
	return v;
}

int fv_roc_auc(const double *score, const int8_t *label, size_t n, double *ret_auc)
{
	size_t k;
	uint64_t P, N, neg_below;
	struct item *v = sorted(score, label, n, &k, &P);
	double u = 0.0;

	if (!v)
		return -ENOMEM;
	N = k - P;
	if (P == 0 || N == 0) {
		free(v);
		return -ENODATA;
	}
	/* Walk groups of tied scores from the lowest up: each positive beats
	 * the negatives below its group and ties half of those inside it. */
	neg_below = 0;
	for (size_t hi = k; hi > 0;) {
		size_t lo = hi;
		uint64_t gp = 0, gn = 0;

		while (lo > 0 && v[lo - 1].s == v[hi - 1].s)
			lo--;
		for (size_t i = lo; i < hi; i++)
			v[i].y ? gp++ : gn++;
		u += (double)gp * ((double)neg_below + 0.5 * (double)gn);
		neg_below += gn;
		hi = lo;
	}
	*ret_auc = u / ((double)P * (double)N);
	free(v);
	return 0;
}

int fv_pr_auc(const double *score, const int8_t *label, size_t n, double *ret_ap)
{
	size_t k;
	uint64_t P, tp = 0, fp = 0;
	struct item *v = sorted(score, label, n, &k, &P);
	double ap = 0.0, prev_recall = 0.0;

	if (!v)
		return -ENOMEM;
	if (P == 0) {
		free(v);
		return -ENODATA;
	}
	for (size_t lo = 0; lo < k;) {
		size_t hi = lo;

		while (hi < k && v[hi].s == v[lo].s)
			hi++;
		for (size_t i = lo; i < hi; i++)
			v[i].y ? tp++ : fp++;
		double recall = (double)tp / (double)P;

		ap += (recall - prev_recall) * ((double)tp / (double)(tp + fp));
		prev_recall = recall;
		lo = hi;
	}
	*ret_ap = ap;
	free(v);
	return 0;
}

int fv_roc_curve(const double *score, const int8_t *label, size_t n, size_t max_points,
		 double *ret_fpr, double *ret_tpr, size_t *ret_n)
{
	size_t k, m = 0, groups = 0, out = 0;
	uint64_t P, N, tp = 0, fp = 0;
	struct item *v;
	double *f, *t;

	if (max_points < 2)
		return -EINVAL;
	v = sorted(score, label, n, &k, &P);
	if (!v)
		return -ENOMEM;
	N = k - P;
	if (P == 0 || N == 0) {
		free(v);
		return -ENODATA;
	}
	for (size_t lo = 0; lo < k; groups++) {
		size_t hi = lo;

		while (hi < k && v[hi].s == v[lo].s)
			hi++;
		lo = hi;
	}
	f = malloc((groups + 1) * sizeof(*f));
	t = malloc((groups + 1) * sizeof(*t));
	if (!f || !t) {
		free(f);
		free(t);
		free(v);
		return -ENOMEM;
	}
	f[m] = 0.0;
	t[m++] = 0.0;
	for (size_t lo = 0; lo < k;) {
		size_t hi = lo;

		while (hi < k && v[hi].s == v[lo].s)
			hi++;
		for (size_t i = lo; i < hi; i++)
			v[i].y ? tp++ : fp++;
		f[m] = (double)fp / (double)N;
		t[m++] = (double)tp / (double)P;
		lo = hi;
	}
	/* m >= 2: (0, 0) and (1, 1). Keep the ends, thin the middle evenly. */
	for (size_t j = 0; j < max_points && j < m; j++) {
		size_t i = m <= max_points ? j : (size_t)llround((double)j * (double)(m - 1) /
								  (double)(max_points - 1));

		ret_fpr[out] = f[i];
		ret_tpr[out++] = t[i];
	}
	*ret_n = out;
	free(f);
	free(t);
	free(v);
	return 0;
}

void fv_point_adjust(uint8_t *ret_pred, const uint8_t *pred, const int8_t *label, size_t n)
{
	for (size_t lo = 0; lo < n;) {
		size_t hi = lo + 1;
		bool hit;

		if (label[lo] != 1) {
			ret_pred[lo] = pred[lo];
			lo++;
			continue;
		}
		while (hi < n && label[hi] == 1)
			hi++;
		hit = false;
		for (size_t i = lo; i < hi; i++)
			hit = hit || pred[i];
		for (size_t i = lo; i < hi; i++)
			ret_pred[i] = hit;
		lo = hi;
	}
}
