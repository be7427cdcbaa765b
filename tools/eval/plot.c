/* Plots of a run, rendered by gnuplot from the CSV files of the report:
 * loss per round, score over time per entity (threshold, true anomaly
 * spans, alerts), ROC curves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval.h"

static void terminal(FILE *f, const char *ext)
{
	if (strcmp(ext, "svg") == 0)
		fprintf(f, "set terminal svg size 1100,420 dynamic font \"sans,10\"\n");
	else
		fprintf(f, "set terminal pngcairo size 1100,420 font \"sans,10\"\n");
}

static void script(FILE *f, const struct ev_ctx *cx, const char *ext)
{
	const struct fv_dataset *ds = cx->ds;
	const char *mode = ev_mode_name(cx->o.mode);

	terminal(f, ext);
	fprintf(f, "set datafile separator \",\"\nset key outside right top\nset grid\n");

	/* Loss per round: one line per fleet (local mode: per entity). */
	fprintf(f, "set output \"loss.%s\"\n", ext);
	fprintf(f, "set title \"%s, %s: training loss per round (weighted mean over agents)\"\n",
		ds->name, mode);
	fprintf(f, "set xlabel \"round\"\nset ylabel \"loss (MSE)\"\nset logscale y\n");
	if (cx->o.mode == EV_LOCAL) {
		fprintf(f, "plot for [e in \"");
		for (uint32_t i = 0; i < ds->n_entities; i++)
			fprintf(f, "%s%s", i ? " " : "", ds->ent[i].name);
		fprintf(f, "\"] \"rounds.csv\" skip 1 using 2:(strcol(1) eq e && $2 > 0 ? $3 : NaN) "
			   "with linespoints title e\n");
	} else {
		fprintf(f, "plot \"rounds.csv\" skip 1 using 2:($2 > 0 ? $3 : NaN) with linespoints "
			   "lw 2 title \"%s\"\n",
			mode);
	}

	/* Score over time per entity. */
	for (uint32_t i = 0; i < ds->n_entities; i++) {
		const char *e = ds->ent[i].name;

		fprintf(f, "set output \"score-%s.%s\"\n", e, ext);
		fprintf(f, "set title \"%s (%s): window score per test row; shaded: true anomalies, "
			   "red bars: alert raised\"\n",
			e, mode);
		fprintf(f, "set xlabel \"test row\"\nset ylabel \"score\"\nset logscale y\n"
			   "set y2range [0:1]\nunset y2tics\nset style fill solid 0.3 noborder\n"
			   "set boxwidth 1\n");
		fprintf(f,
			"plot \"points.csv\" skip 1 using 2:(strcol(1) eq \"%s\" && $6 == 1 ? 1 : NaN) "
			"axes x1y2 with boxes lc rgb \"#ffb0b0\" title \"anomaly (label)\", \\\n"
			"  \"\" skip 1 using 2:(strcol(1) eq \"%s\" && $5 == 1 ? 0.04 : NaN) axes x1y2 "
			"with boxes lc rgb \"#d00000\" title \"alert\", \\\n"
			"  \"\" skip 1 using 2:(strcol(1) eq \"%s\" ? $3 : NaN) with lines lc rgb "
			"\"#2050b0\" title \"score\", \\\n"
			"  \"\" skip 1 using 2:(strcol(1) eq \"%s\" ? $4 : NaN) with lines lc rgb "
			"\"black\" dt 2 title \"threshold\"\n",
			e, e, e, e);
	}

	/* ROC: pooled and per entity. */
	fprintf(f, "set output \"roc.%s\"\nunset logscale\nunset y2range\nset size ratio -1\n", ext);
	fprintf(f, "set title \"%s, %s: ROC of the window score (pooled and per entity)\"\n",
		ds->name, mode);
	fprintf(f, "set xlabel \"false-positive rate\"\nset ylabel \"true-positive rate\"\n"
		   "set xrange [0:1]\nset yrange [0:1]\n");
	fprintf(f, "plot \"roc.csv\" index 0 using 1:2 with lines lw 3 lc rgb \"black\" title "
		   "\"pooled\"");
	for (uint32_t i = 0; i < ds->n_entities; i++)
		fprintf(f, ", \\\n  \"\" index %u using 1:2 with lines lw 1 title \"%s\"", i + 1,
			ds->ent[i].name);
	fprintf(f, ", \\\n  x with lines dt 3 lc rgb \"gray\" title \"chance\"\n");
	fprintf(f, "set size noratio\nset autoscale\n");
}

static int render(const struct ev_ctx *cx, const char *ext)
{
	char path[4200];
	FILE *f;
	pid_t pid;
	int st;

	snprintf(path, sizeof(path), "%s/plots-%s.gp", cx->o.out, ext);
	f = fopen(path, "w");
	if (!f) {
		fv_log(FV_LOG_WARNING, "%s: cannot write: %s; no plots", path, strerror(errno));
		return -EIO;
	}
	script(f, cx, ext);
	if (fclose(f) != 0)
		return -EIO;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (chdir(cx->o.out) < 0)
			_exit(126);
		snprintf(path, sizeof(path), "plots-%s.gp", ext);
		execlp("gnuplot", "gnuplot", path, (char *)NULL);
		_exit(errno == ENOENT ? 127 : 126);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
		fv_log(FV_LOG_WARNING, "gnuplot not found: no plots (apt-get install gnuplot-nox; "
				       "the data is in %s/*.csv)",
		       cx->o.out);
		return -ENOENT;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fv_log(FV_LOG_WARNING, "gnuplot failed on %s/plots-%s.gp", cx->o.out, ext);
		return -EIO;
	}
	return 0;
}

int ev_plot(const struct ev_ctx *cx, const struct ev_result *r)
{
	int rc = 0;

	(void)r;
	if (cx->o.plots == EV_PLOTS_PNG || cx->o.plots == EV_PLOTS_BOTH)
		rc = render(cx, "png");
	if (rc != -ENOENT && (cx->o.plots == EV_PLOTS_SVG || cx->o.plots == EV_PLOTS_BOTH))
		rc = render(cx, "svg");
	return rc;
}
