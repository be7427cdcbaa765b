/* fedvigil-score, point mode: per-row predictions against per-row labels. */
#include "score.h"

#include "fedvigil/util.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Confusion counts. */
struct confusion {
	uint64_t tp, fp, fn, tn; /* true/false positives/negatives */
};

/* Read one label per line into *ret_labels (malloc'd, caller frees). A
 * first line that is not a number is taken as a header. */
static int read_labels(const char *path, uint8_t **ret_labels, size_t *ret_n)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, n = 0, alloc = 0;
	uint8_t *lab = NULL;
	int64_t line_no = 0;
	int rc = 0;

	if (!f) {
		int e = errno;

		fv_log(FV_LOG_ERR, "cannot open labels %s: %s", path, strerror(e));
		return -e;
	}
	while (getline(&line, &cap, f) >= 0) {
		char *cells[2], *end;
		double v;

		line_no++;
		if (!score_chomp(line))
			continue;
		score_split(line, cells, 1);
		errno = 0;
		v = strtod(cells[0], &end);
		if (end == cells[0] || *end || !isfinite(v)) {
			if (n == 0 && line_no == 1)
				continue; /* header */
			fv_log(FV_LOG_ERR, "%s:%" PRId64 ": label '%.20s' is not a number", path,
			       line_no, cells[0]);
			rc = -EBADMSG;
			break;
		}
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 1024;
			uint8_t *p = realloc(lab, na);

			if (!p) {
				rc = -ENOMEM;
				break;
			}
			lab = p;
			alloc = na;
		}
		lab[n++] = v != 0;
	}
	free(line);
	fclose(f);
	if (rc < 0) {
		free(lab);
		return rc;
	}
	*ret_labels = lab;
	*ret_n = n;
	return 0;
}

/* Mark pred[i] for every score line whose `column` is set. */
static int read_scores(const char *path, const struct score_points_opts *o, uint8_t *pred,
		       size_t n, uint64_t *ret_lines, uint64_t *ret_outside)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *cells[32];
	size_t cap = 0;
	int64_t line_no = 0;
	int c_ts = -1, c_val = -1, rc = 0;
	uint64_t lines = 0, outside = 0;

	if (!f) {
		int e = errno;

		fv_log(FV_LOG_ERR, "cannot open score log %s: %s", path, strerror(e));
		return -e;
	}
	while (getline(&line, &cap, f) >= 0) {
		int nc;

		line_no++;
		if (!score_chomp(line))
			continue;
		nc = score_split(line, cells, 32);
		nc = FV_MIN(nc, 32);
		if (c_ts < 0) {
			for (int i = 0; i < nc; i++) {
				if (strcmp(cells[i], "ts_ms") == 0)
					c_ts = i;
				if (strcmp(cells[i], o->column) == 0)
					c_val = i;
			}
			if (c_ts < 0 || c_val < 0) {
				fv_log(FV_LOG_ERR, "%s:%" PRId64 ": header must name the columns ts_ms "
				       "and %s (ts_ms,score,threshold,above,alert,model_version)", path,
				       line_no, o->column);
				rc = -EBADMSG;
				break;
			}
			continue;
		}
		char *end;
		long long ts;
		double v;

		if (c_ts >= nc || c_val >= nc) {
			fv_log(FV_LOG_ERR, "%s:%" PRId64 ": %d columns, header has more", path, line_no,
			       nc);
			rc = -EBADMSG;
			break;
		}
		errno = 0;
		ts = strtoll(cells[c_ts], &end, 10);
		if (errno || end == cells[c_ts] || *end) {
			fv_log(FV_LOG_ERR, "%s:%" PRId64 ": ts_ms '%.24s' is not an integer", path,
			       line_no, cells[c_ts]);
			rc = -EBADMSG;
			break;
		}
		v = strtod(cells[c_val], &end);
		if (end == cells[c_val] || *end || !isfinite(v)) {
			fv_log(FV_LOG_ERR, "%s:%" PRId64 ": %s '%.24s' is not a number", path, line_no,
			       o->column, cells[c_val]);
			rc = -EBADMSG;
			break;
		}
		lines++;
		/* Nearest label row: agents sample on their own clock. */
		double rel = (double)(ts - o->start_ms) / (double)o->period_ms;
		int64_t idx = (int64_t)llround(rel) - o->row_offset;

		if (idx < 0 || (uint64_t)idx >= n) {
			outside++;
			continue;
		}
		if (v != 0)
			pred[idx] = 1;
	}
	if (!rc && c_ts < 0) {
		fv_log(FV_LOG_ERR, "%s: empty score log (not even a header)", path);
		rc = -EBADMSG;
	}
	free(line);
	fclose(f);
	*ret_lines = lines;
	*ret_outside = outside;
	return rc;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

static void print_confusion(FILE *out, const char *what, const struct confusion *c)
{
	double p = ratio(c->tp, c->tp + c->fp), r = ratio(c->tp, c->tp + c->fn);
	double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0.0;

	fprintf(out, "%s: tp=%" PRIu64 " fp=%" PRIu64 " fn=%" PRIu64 " tn=%" PRIu64
		" precision=%.3f recall=%.3f f1=%.3f fpr=%.3f\n", what, c->tp, c->fp, c->fn, c->tn, p,
		r, f1, ratio(c->fp, c->fp + c->tn));
}

int score_points(const struct score_points_opts *o, FILE *out)
{
	struct confusion all = { 0 };
	uint64_t points = 0;

	for (int k = 0; k < o->n_pairs; k++) {
		const struct score_pair *pr = &o->pairs[k];
		struct confusion c = { 0 };
		uint8_t *lab = NULL, *pred;
		uint64_t lines = 0, outside = 0;
		size_t n = 0;
		char what[1100];

		if (read_labels(pr->labels, &lab, &n) < 0)
			return 1;
		pred = calloc(n ? n : 1, 1);
		if (!pred || read_scores(pr->scores, o, pred, n, &lines, &outside) < 0) {
			free(lab);
			free(pred);
			return 1;
		}
		if (outside)
			fv_log(FV_LOG_WARNING, "%s: %" PRIu64 " of %" PRIu64 " score lines fall outside "
			       "the %zu label rows (check --start, --period-ms, --row-offset)",
			       pr->scores, outside, lines, n);
		for (size_t i = 0; i < n; i++) {
			if (lab[i] && pred[i])
				c.tp++;
			else if (pred[i])
				c.fp++;
			else if (lab[i])
				c.fn++;
			else
				c.tn++;
		}
		snprintf(what, sizeof(what), "pair %d %s:%s rows=%zu scored=%" PRIu64, k + 1,
			 pr->scores, pr->labels, n, lines - outside);
		print_confusion(out, what, &c);
		all.tp += c.tp;
		all.fp += c.fp;
		all.fn += c.fn;
		all.tn += c.tn;
		points += n;
		free(lab);
		free(pred);
	}
	print_confusion(out, "pooled", &all);
	double p = ratio(all.tp, all.tp + all.fp), r = ratio(all.tp, all.tp + all.fn);

	fprintf(out, "points=%" PRIu64 " precision=%.3f recall=%.3f f1=%.3f fpr=%.3f\n", points, p, r,
		p + r > 0 ? 2 * p * r / (p + r) : 0.0, ratio(all.fp, all.fp + all.tn));
	return 0;
}
