/* Reports of a run: metrics per entity and pooled, next to the trivial
 * baselines, as JSON, Markdown and CSV. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "eval.h"
#include "fedvigil/scorer.h"
#include "fedvigil/version.h"

#define ROC_POINTS 1000

/* All metrics of one set of points. */
struct metrics {
	size_t points, anomalies, unscored;
	struct fv_confusion cm, cm_above, cm_adj, cm_all, cm_none, cm_best;
	struct fv_rates r, r_above, r_adj, r_all, r_none, r_best;
	double roc_auc, pr_auc; /* NAN when undefined */
	double best_factor;     /* of cm_best; NAN when it flags nothing */
};

struct ratio {
	double r;     /* score / threshold in force */
	int8_t label;
};

static int cmp_ratio_desc(const void *a, const void *b)
{
	double x = ((const struct ratio *)a)->r, y = ((const struct ratio *)b)->r;

	return (x < y) - (x > y);
}

/* The best F1 over one factor f applied to every point's threshold in
 * force (flag score >= f * threshold, undebounced): an oracle that reads
 * the labels, to tell a threshold that falls in the wrong place from
 * scores that cannot separate at any threshold. Points without a score or
 * a threshold are never flagged; unlabelled points (label < 0) are
 * skipped. ret_factor: the smallest ratio flagged, NAN if none is. */
static void best_factor(const double *score, const float *thr, const int8_t *label, size_t n,
			struct fv_confusion *ret_cm, double *ret_factor)
{
	struct ratio *v = malloc((n ? n : 1) * sizeof(*v));
	uint64_t pos = 0, neg = 0, tp = 0, fp = 0;
	double best = 0.0;
	size_t k = 0;

	*ret_factor = NAN;
	memset(ret_cm, 0, sizeof(*ret_cm));
	for (size_t i = 0; i < n; i++) {
		if (label[i] < 0)
			continue;
		pos += label[i] == 1;
		neg += label[i] == 0;
		if (v && isfinite(score[i]) && thr[i] > 0.0f)
			v[k++] = (struct ratio){ score[i] / (double)thr[i], label[i] };
	}
	ret_cm->fn = pos;
	ret_cm->tn = neg;
	if (!v)
		return;
	qsort(v, k, sizeof(*v), cmp_ratio_desc);
	for (size_t i = 0; i < k; i++) {
		double f1;

		tp += v[i].label == 1;
		fp += v[i].label == 0;
		if (i + 1 < k && v[i + 1].r == v[i].r)
			continue; /* a cut between equal ratios is no cut */
		f1 = 2.0 * (double)tp / (double)(2 * tp + fp + (pos - tp));
		if (tp > 0 && f1 > best) {
			best = f1;
			*ret_factor = v[i].r;
			*ret_cm = (struct fv_confusion){ tp, fp, pos - tp, neg - fp };
		}
	}
	free(v);
}

static void compute(const double *score, const float *thr, const uint8_t *pred,
		    const uint8_t *above, const int8_t *label, size_t n, size_t unscored,
		    struct metrics *m)
{
	uint8_t *adj = malloc(n ? n : 1), *ones = malloc(n ? n : 1);

	memset(m, 0, sizeof(*m));
	m->points = n;
	m->unscored = unscored;
	for (size_t i = 0; i < n; i++)
		m->anomalies += label[i] == 1;
	fv_confusion_count(&m->cm, pred, label, n);
	fv_confusion_count(&m->cm_above, above, label, n);
	if (adj && ones) {
		fv_point_adjust(adj, pred, label, n);
		fv_confusion_count(&m->cm_adj, adj, label, n);
		memset(ones, 1, n);
		fv_confusion_count(&m->cm_all, ones, label, n);
		memset(ones, 0, n);
		fv_confusion_count(&m->cm_none, ones, label, n);
	}
	fv_rates_from(&m->cm, &m->r);
	fv_rates_from(&m->cm_above, &m->r_above);
	fv_rates_from(&m->cm_adj, &m->r_adj);
	fv_rates_from(&m->cm_all, &m->r_all);
	fv_rates_from(&m->cm_none, &m->r_none);
	best_factor(score, thr, label, n, &m->cm_best, &m->best_factor);
	fv_rates_from(&m->cm_best, &m->r_best);
	if (fv_roc_auc(score, label, n, &m->roc_auc) < 0)
		m->roc_auc = NAN;
	if (fv_pr_auc(score, label, n, &m->pr_auc) < 0)
		m->pr_auc = NAN;
	free(adj);
	free(ones);
}

/* A number with 6 significant digits (JSON stays readable). */
static double r6(double x)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%.6g", x);
	return strtod(buf, NULL);
}

static void add_num(cJSON *o, const char *k, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, k, r6(v));
	else
		cJSON_AddNullToObject(o, k);
}

static cJSON *rates_json(const struct fv_rates *r, const struct fv_confusion *c)
{
	cJSON *o = cJSON_CreateObject(), *cm;

	add_num(o, "f1", r->f1);
	add_num(o, "precision", r->precision);
	add_num(o, "recall", r->recall);
	add_num(o, "fpr", r->fpr);
	if (c) {
		cm = cJSON_AddObjectToObject(o, "confusion");
		cJSON_AddNumberToObject(cm, "tp", (double)c->tp);
		cJSON_AddNumberToObject(cm, "fp", (double)c->fp);
		cJSON_AddNumberToObject(cm, "fn", (double)c->fn);
		cJSON_AddNumberToObject(cm, "tn", (double)c->tn);
	}
	return o;
}

/* The fields of pooled and of each per_entity entry. */
static void metrics_json(cJSON *o, const struct metrics *m)
{
	cJSON *b;

	cJSON_AddNumberToObject(o, "points", (double)m->points);
	cJSON_AddNumberToObject(o, "anomalies", (double)m->anomalies);
	cJSON_AddNumberToObject(o, "unscored", (double)m->unscored);
	add_num(o, "f1", m->r.f1);
	add_num(o, "precision", m->r.precision);
	add_num(o, "recall", m->r.recall);
	add_num(o, "fpr", m->r.fpr);
	add_num(o, "roc_auc", m->roc_auc);
	add_num(o, "pr_auc", m->pr_auc);
	b = cJSON_AddObjectToObject(o, "confusion");
	cJSON_AddNumberToObject(b, "tp", (double)m->cm.tp);
	cJSON_AddNumberToObject(b, "fp", (double)m->cm.fp);
	cJSON_AddNumberToObject(b, "fn", (double)m->cm.fn);
	cJSON_AddNumberToObject(b, "tn", (double)m->cm.tn);
	cJSON_AddItemToObject(o, "undebounced", rates_json(&m->r_above, &m->cm_above));
	cJSON_AddItemToObject(o, "point_adjusted", rates_json(&m->r_adj, &m->cm_adj));
	b = rates_json(&m->r_best, &m->cm_best);
	add_num(b, "factor", m->best_factor);
	cJSON_AddItemToObject(o, "best_factor", b);
	b = cJSON_AddObjectToObject(o, "baselines");
	cJSON_AddItemToObject(b, "flag_everything", rates_json(&m->r_all, NULL));
	cJSON_AddItemToObject(b, "flag_nothing", rates_json(&m->r_none, NULL));
}

static char *path_in(const struct ev_ctx *cx, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", cx->o.out, name);
	return buf;
}

static void spec_text(const struct fv_model_spec *s, char *buf, size_t len)
{
	fv_model_spec_format(s, buf, len);
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fputs(text, f) >= 0;

	if (f && fclose(f) != 0)
		ok = false;
	if (!ok) {
		fv_log(FV_LOG_ERR, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	return 0;
}

static int write_points(const struct ev_ctx *cx, const struct ev_result *res)
{
	char path[4200];
	FILE *f = fopen(path_in(cx, "points.csv", path, sizeof(path)), "w");

	if (!f) {
		fv_log(FV_LOG_ERR, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	fprintf(f, "entity,row,score,threshold,predicted,label\n");
	for (uint32_t e = 0; e < cx->ds->n_entities; e++) {
		const struct ev_points *p = &res->pts[e];

		for (size_t i = 0; i < p->n; i++) {
			if (isnan(p->score[i]))
				fprintf(f, "%s,%zu,,%.6g,%d,%d\n", cx->ds->ent[e].name, i,
					(double)p->threshold[i], p->pred[i], p->label[i]);
			else
				fprintf(f, "%s,%zu,%.6g,%.6g,%d,%d\n", cx->ds->ent[e].name, i,
					p->score[i], (double)p->threshold[i], p->pred[i], p->label[i]);
		}
	}
	if (fclose(f) != 0) {
		fv_log(FV_LOG_ERR, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	return 0;
}

static int write_rounds(const struct ev_ctx *cx, const struct ev_result *res)
{
	char path[4200];
	FILE *f = fopen(path_in(cx, "rounds.csv", path, sizeof(path)), "w");

	if (!f) {
		fv_log(FV_LOG_ERR, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	fprintf(f, "fleet,round,loss,threshold,agents,bytes_up,bytes_down,ms\n");
	for (uint32_t i = 0; i < res->n_log; i++) {
		const struct ev_round *l = &res->log[i];

		fprintf(f, "%s,%u,%.6g,%.6g,%u,%" PRIu64 ",%" PRIu64 ",%" PRId64 "\n",
			l->fleet[0] ? l->fleet : "fleet", l->round, (double)l->loss,
			(double)l->threshold, l->agents, l->bytes_up, l->bytes_down, l->ms);
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

/* ROC curves: block 0 pooled, then one per entity (gnuplot `index`). */
static int write_roc(const struct ev_ctx *cx, const struct ev_result *res, const double *score,
		     const int8_t *label, size_t n)
{
	char path[4200];
	double *fpr = malloc(ROC_POINTS * sizeof(double)), *tpr = malloc(ROC_POINTS * sizeof(double));
	FILE *f = fopen(path_in(cx, "roc.csv", path, sizeof(path)), "w");
	size_t m = 0;

	if (!f || !fpr || !tpr) {
		if (f)
			fclose(f);
		free(fpr);
		free(tpr);
		fv_log(FV_LOG_ERR, "%s: cannot write", path);
		return -EIO;
	}
	fprintf(f, "# fpr,tpr: block 0 pooled, then one block per entity\n");
	for (uint32_t e = 0; e <= cx->ds->n_entities; e++) {
		const struct ev_points *p = e ? &res->pts[e - 1] : NULL;

		fprintf(f, "%s# %s\n", e ? "\n\n" : "", e ? cx->ds->ent[e - 1].name : "pooled");
		if (fv_roc_curve(p ? p->score : score, p ? p->label : label, p ? p->n : n, ROC_POINTS,
				 fpr, tpr, &m) < 0) {
			/* one class only: a diagonal keeps the block count */
			fprintf(f, "0,0\n1,1\n");
			continue;
		}
		for (size_t i = 0; i < m; i++)
			fprintf(f, "%.5g,%.5g\n", fpr[i], tpr[i]);
	}
	free(fpr);
	free(tpr);
	return fclose(f) == 0 ? 0 : -EIO;
}

static void md_row(FILE *f, const char *name, const struct fv_rates *r, double auc, double ap)
{
	char a[16] = "", b[16] = "";

	if (isfinite(auc))
		snprintf(a, sizeof(a), "%.3f", auc);
	if (isfinite(ap))
		snprintf(b, sizeof(b), "%.3f", ap);
	fprintf(f, "| %s | %.3f | %.3f | %.3f | %.4f | %s | %s |\n", name, r->f1, r->precision,
		r->recall, r->fpr, a, b);
}

static int write_md(const struct ev_ctx *cx, const struct ev_result *res,
		    const struct metrics *pooled, const struct metrics *ent, const char *layers)
{
	char path[4200];
	FILE *f = fopen(path_in(cx, "report.md", path, sizeof(path)), "w");
	const struct coord_config *cc = &cx->cc;
	const struct agent_config *ac = &cx->ac;

	if (!f) {
		fv_log(FV_LOG_ERR, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	fprintf(f, "# fedvigil-eval: %s, %s\n\n", cx->ds->name, ev_mode_name(cx->o.mode));
	fprintf(f,
		"Manifest `%s`; %u entities, %u channels; %zu test points, %zu anomalous "
		"(%.2f %%).  \n",
		cx->o.manifest, cx->ds->n_entities, cx->ds->C, pooled->points, pooled->anomalies,
		pooled->points ? 100.0 * (double)pooled->anomalies / (double)pooled->points : 0.0);
	fprintf(f,
		"Model %s (%s, output %s), %zu parameters, window %lld stride %lld; %u "
		"client(s), %u rounds of %lld epochs (batch %lld, lr %g)%s, aggregation %s%s.  \n",
		layers, fv_act_name((enum fv_act)cc->activation),
		fv_act_name((enum fv_act)cc->output_activation), res->n_params, cc->window,
		cc->stride, res->n_clients, res->rounds, cc->epochs, cc->batch, cc->lr,
		cx->o.mode == EV_LOCAL ? " per entity" : "", fv_agg_algo_name(cc->agg.algo),
		res->broker ? ", through the daemons (--broker)" : "");
	if (cx->o.mode == EV_DIRICHLET)
		fprintf(f, "Dirichlet alpha %g over the source entities.  \n", cx->o.alpha);
	fprintf(f,
		"Score: features %s, calibration %s, smoothing %.6g. Threshold: the fleet's %s "
		"(percentile %.6g, k %.6g) of the merged normal scores x %.6g, held by each agent as "
		"`%s`; alert when %lld of the last %lld windows are above it, cleared after %lld "
		"calm windows (below %.6g x threshold).\n\n",
		fv_feat_name((enum fv_feat)cc->features), cc->calibrate ? "on" : "off", cc->smooth,
		fv_thr_method_name(cc->rule.method), cc->percentile, cc->k, cc->margin,
		fv_thr_mode_name((enum fv_thr_mode)ac->thr_mode), ac->k, ac->n, ac->clear_n,
		ac->clear_ratio);
	fprintf(f, "Per point, pooled over all entities, **without point adjustment** unless the "
		   "row says so. `predicted` is the debounced alert state after the window "
		   "ending on the point (verdicts are causal).\n\n");
	fprintf(f, "| | F1 | precision | recall | FPR | ROC-AUC | PR-AUC |\n"
		   "|---|---|---|---|---|---|---|\n");
	md_row(f, "fedvigil (alert state)", &pooled->r, pooled->roc_auc, pooled->pr_auc);
	md_row(f, "score > threshold (undebounced)", &pooled->r_above, NAN, NAN);
	md_row(f, "point-adjusted alert state (labelled: inflates recall)", &pooled->r_adj, NAN, NAN);
	{
		char name[128];

		snprintf(name, sizeof(name),
			 "best factor on the threshold (oracle, labelled: score >= %.4g x threshold)",
			 pooled->best_factor);
		md_row(f, name, &pooled->r_best, NAN, NAN);
	}
	md_row(f, "flag everything (baseline)", &pooled->r_all, 0.5, NAN);
	md_row(f, "flag nothing (baseline)", &pooled->r_none, 0.5, NAN);
	fprintf(f, "\nPooled confusion: TP %" PRIu64 ", FP %" PRIu64 ", FN %" PRIu64 ", TN %" PRIu64
		   "; %zu points without a window of their own (predicted normal).\n\n",
		pooled->cm.tp, pooled->cm.fp, pooled->cm.fn, pooled->cm.tn, pooled->unscored);
	fprintf(f, "## Per entity\n\n"
		   "| entity | points | anomalies | F1 | precision | recall | FPR | ROC-AUC | "
		   "PR-AUC | TP / FP / FN / TN | threshold | flag-everything F1 (FPR 1) |\n"
		   "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (uint32_t e = 0; e < cx->ds->n_entities; e++) {
		const struct metrics *m = &ent[e];
		char a[16] = "-", b[16] = "-";

		if (isfinite(m->roc_auc))
			snprintf(a, sizeof(a), "%.3f", m->roc_auc);
		if (isfinite(m->pr_auc))
			snprintf(b, sizeof(b), "%.3f", m->pr_auc);
		fprintf(f,
			"| %s | %zu | %zu | %.3f | %.3f | %.3f | %.4f | %s | %s | %" PRIu64
			" / %" PRIu64 " / %" PRIu64 " / %" PRIu64 " | %.4g | %.3f |\n",
			cx->ds->ent[e].name, m->points, m->anomalies, m->r.f1, m->r.precision,
			m->r.recall, m->r.fpr, a, b, m->cm.tp, m->cm.fp, m->cm.fn, m->cm.tn,
			(double)res->pts[e].final_threshold, m->r_all.f1);
	}
	fprintf(f, "\n## Cost\n\n"
		   "| | |\n|---|---|\n");
	fprintf(f, "| wall time | %.1f s (load %.1f, train %.1f, score %.1f) |\n", res->total_s,
		res->load_s, res->train_s, res->score_s);
	fprintf(f, "| peak RSS | %.1f MB%s |\n", (double)res->peak_rss_kb / 1024.0,
		res->broker ? " (largest process)" : "");
	fprintf(f, "| network | %.2f MB up (updates), %.2f MB down (announcements, models) |\n",
		(double)res->bytes_up / 1e6, (double)res->bytes_down / 1e6);
	fprintf(f, "| training windows | %" PRIu64 " |\n", res->windows_train);
	fprintf(f, "\n## Rounds\n\n| fleet | round | loss | threshold | agents | bytes up | "
		   "bytes down | ms |\n|---|---|---|---|---|---|---|---|\n");
	for (uint32_t i = 0; i < res->n_log; i++) {
		const struct ev_round *l = &res->log[i];

		fprintf(f, "| %s | %u | %.5g | %.5g | %u | %" PRIu64 " | %" PRIu64 " | %" PRId64 " |\n",
			l->fleet[0] ? l->fleet : "fleet", l->round, (double)l->loss,
			(double)l->threshold, l->agents, l->bytes_up, l->bytes_down, l->ms);
	}
	fprintf(f, "\nOverrides:");
	for (uint32_t i = 0; i < cx->n_sets; i++)
		fprintf(f, " `%s=%s`", cx->sets[i].key, cx->sets[i].value);
	fprintf(f, "%s\n\nfedvigil-eval %s\n", cx->n_sets ? "" : " none", FV_VERSION);
	return fclose(f) == 0 ? 0 : -EIO;
}

int ev_report(const struct ev_ctx *cx, const struct ev_result *res)
{
	const struct fv_dataset *ds = cx->ds;
	const struct coord_config *cc = &cx->cc;
	struct metrics pooled, *ent = calloc(ds->n_entities, sizeof(*ent));
	size_t n = 0, at = 0, unscored = 0;
	double *score = NULL;
	float *thr = NULL;
	uint8_t *pred = NULL, *above = NULL;
	int8_t *label = NULL;
	cJSON *root = NULL, *o, *a;
	char layers[256], path[4200], *text = NULL;
	int r = -ENOMEM;

	for (uint32_t e = 0; e < ds->n_entities; e++) {
		n += res->pts[e].n;
		unscored += res->pts[e].unscored;
	}
	score = malloc((n ? n : 1) * sizeof(*score));
	thr = malloc((n ? n : 1) * sizeof(*thr));
	pred = malloc(n ? n : 1);
	above = malloc(n ? n : 1);
	label = malloc(n ? n : 1);
	if (!ent || !score || !thr || !pred || !above || !label)
		goto out;
	for (uint32_t e = 0; e < ds->n_entities; e++) {
		const struct ev_points *p = &res->pts[e];

		compute(p->score, p->threshold, p->pred, p->above, p->label, p->n, p->unscored,
			&ent[e]);
		memcpy(score + at, p->score, p->n * sizeof(*score));
		memcpy(thr + at, p->threshold, p->n * sizeof(*thr));
		memcpy(pred + at, p->pred, p->n);
		memcpy(above + at, p->above, p->n);
		memcpy(label + at, p->label, p->n);
		at += p->n;
	}
	compute(score, thr, pred, above, label, n, unscored, &pooled);
	spec_text(&res->spec, layers, sizeof(layers));

	root = cJSON_CreateObject();
	if (!root)
		goto out;
	cJSON_AddStringToObject(root, "tool", "fedvigil-eval");
	cJSON_AddStringToObject(root, "version", FV_VERSION);
	o = cJSON_AddObjectToObject(root, "dataset");
	cJSON_AddStringToObject(o, "name", ds->name);
	cJSON_AddStringToObject(o, "manifest", cx->o.manifest);
	cJSON_AddNumberToObject(o, "entities", ds->n_entities);
	cJSON_AddNumberToObject(o, "channels", ds->C);
	{
		size_t tr = 0, te = 0;
		uint64_t empty = 0;

		for (uint32_t e = 0; e < ds->n_entities; e++) {
			tr += ds->ent[e].n_train;
			te += ds->ent[e].n_test;
			empty += ds->ent[e].n_empty;
		}
		cJSON_AddNumberToObject(o, "train_rows", (double)tr);
		cJSON_AddNumberToObject(o, "test_rows", (double)te);
		cJSON_AddNumberToObject(o, "empty_cells", (double)empty);
	}
	cJSON_AddStringToObject(root, "mode", ev_mode_name(cx->o.mode));
	cJSON_AddBoolToObject(root, "broker", res->broker);
	cJSON_AddNumberToObject(root, "clients", res->n_clients);
	if (cx->o.mode == EV_DIRICHLET)
		cJSON_AddNumberToObject(root, "alpha", cx->o.alpha);
	cJSON_AddNumberToObject(root, "seed", (double)cc->seed);
	o = cJSON_AddObjectToObject(root, "model");
	cJSON_AddStringToObject(o, "layers", layers);
	cJSON_AddStringToObject(o, "activation", fv_act_name((enum fv_act)cc->activation));
	cJSON_AddStringToObject(o, "output_activation",
				fv_act_name((enum fv_act)cc->output_activation));
	cJSON_AddNumberToObject(o, "params", (double)res->n_params);
	cJSON_AddNumberToObject(o, "window", (double)cc->window);
	cJSON_AddNumberToObject(o, "stride", (double)cc->stride);
	cJSON_AddStringToObject(o, "features", fv_feat_name((enum fv_feat)cc->features));
	cJSON_AddStringToObject(root, "aggregation", fv_agg_algo_name(cc->agg.algo));
	o = cJSON_AddObjectToObject(root, "threshold");
	cJSON_AddStringToObject(o, "method", fv_thr_method_name(cc->rule.method));
	add_num(o, "percentile", cc->percentile);
	add_num(o, "k", cc->k);
	add_num(o, "margin", cc->margin);
	cJSON_AddBoolToObject(o, "calibrate", cc->calibrate);
	add_num(o, "smooth", cc->smooth);
	o = cJSON_AddObjectToObject(root, "detect");
	cJSON_AddStringToObject(o, "threshold", fv_thr_mode_name((enum fv_thr_mode)cx->ac.thr_mode));
	add_num(o, "prior_windows", cx->ac.prior_windows);
	add_num(o, "halflife", cx->ac.halflife);
	add_num(o, "calib_prior", cx->ac.calib_prior);
	cJSON_AddNumberToObject(o, "k", (double)cx->ac.k);
	cJSON_AddNumberToObject(o, "n", (double)cx->ac.n);
	add_num(o, "clear_ratio", cx->ac.clear_ratio);
	cJSON_AddNumberToObject(o, "clear_n", (double)cx->ac.clear_n);
	cJSON_AddNumberToObject(root, "rounds", res->rounds);
	cJSON_AddNumberToObject(root, "epochs", (double)cc->epochs);
	cJSON_AddNumberToObject(root, "training_windows", (double)res->windows_train);
	a = cJSON_AddArrayToObject(root, "round_log");
	for (uint32_t i = 0; i < res->n_log; i++) {
		const struct ev_round *l = &res->log[i];
		cJSON *x = cJSON_CreateObject();

		if (l->fleet[0])
			cJSON_AddStringToObject(x, "fleet", l->fleet);
		cJSON_AddNumberToObject(x, "round", l->round);
		add_num(x, "loss", l->loss);
		add_num(x, "threshold", l->threshold);
		cJSON_AddNumberToObject(x, "agents", l->agents);
		cJSON_AddNumberToObject(x, "bytes_up", (double)l->bytes_up);
		cJSON_AddNumberToObject(x, "bytes_down", (double)l->bytes_down);
		cJSON_AddNumberToObject(x, "ms", (double)l->ms);
		if (l->dp_epsilon > 0)
			add_num(x, "dp_epsilon", l->dp_epsilon);
		cJSON_AddItemToArray(a, x);
	}
	o = cJSON_AddObjectToObject(root, "wall_time_s");
	add_num(o, "total", res->total_s);
	add_num(o, "load", res->load_s);
	add_num(o, "train", res->train_s);
	add_num(o, "score", res->score_s);
	cJSON_AddNumberToObject(root, "peak_rss_kb", (double)res->peak_rss_kb);
	o = cJSON_AddObjectToObject(root, "bytes");
	cJSON_AddNumberToObject(o, "up", (double)res->bytes_up);
	cJSON_AddNumberToObject(o, "down", (double)res->bytes_down);
	cJSON_AddNumberToObject(o, "total", (double)(res->bytes_up + res->bytes_down));
	o = cJSON_AddObjectToObject(root, "pooled");
	metrics_json(o, &pooled);
	o = cJSON_AddObjectToObject(root, "per_entity");
	for (uint32_t e = 0; e < ds->n_entities; e++) {
		cJSON *x = cJSON_AddObjectToObject(o, ds->ent[e].name);

		metrics_json(x, &ent[e]);
		add_num(x, "threshold", res->pts[e].final_threshold);
		cJSON_AddNumberToObject(x, "model_version", (double)res->pts[e].model_version);
	}
	a = cJSON_AddArrayToObject(root, "overrides");
	for (uint32_t i = 0; i < cx->n_sets; i++) {
		char kv[700];

		snprintf(kv, sizeof(kv), "%s=%s", cx->sets[i].key, cx->sets[i].value);
		cJSON_AddItemToArray(a, cJSON_CreateString(kv));
	}
	text = cJSON_Print(root);
	if (!text)
		goto out;
	r = write_text(path_in(cx, "report.json", path, sizeof(path)), text);
	if (r == 0)
		r = write_md(cx, res, &pooled, ent, layers);
	if (r == 0)
		r = write_points(cx, res);
	if (r == 0)
		r = write_rounds(cx, res);
	if (r == 0)
		r = write_roc(cx, res, score, label, n);
	if (r == 0)
		printf("eval: mode=%s points=%zu anomalies=%zu f1=%.3f precision=%.3f recall=%.3f "
		       "fpr=%.4f roc_auc=%.3f pr_auc=%.3f flag_all_f1=%.3f flag_all_fpr=%.3f wall_s=%.1f "
		       "rss_mb=%.1f\n",
		       ev_mode_name(cx->o.mode), pooled.points, pooled.anomalies, pooled.r.f1,
		       pooled.r.precision, pooled.r.recall, pooled.r.fpr, pooled.roc_auc,
		       pooled.pr_auc, pooled.r_all.f1, pooled.r_all.fpr, res->total_s,
		       (double)res->peak_rss_kb / 1024.0);
out:
	if (r == -ENOMEM)
		fv_log(FV_LOG_ERR, "out of memory writing the report");
	cJSON_free(text);
	cJSON_Delete(root);
	free(ent);
	free(score);
	free(thr);
	free(pred);
	free(above);
	free(label);
	return r;
}
