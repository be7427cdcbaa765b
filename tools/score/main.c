/* fedvigil-score: score detections against ground truth (docs/tools.md).
 * The last line of the output is machine-readable key=value pairs. */
#include "score.h"

#include "cli.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAIRS 1024

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " --truth TRUTH.csv --alerts ALERTS.log [--slack-ms MS]\n"
		"       " PROG " --points SCORES.csv:LABELS.csv [--points ...] --start ISO\n"
		"                      --period-ms MS [--row-offset N] [--column alert|above]\n"
		"\n"
		"Event mode: alert episodes (a raised alert and its cleared, from\n"
		"mosquitto_sub -v -t 'fedvigil/v1/+/agent/+/alert') against the faults of\n"
		"fedvigil-sim --truth. An episode is a true positive when it overlaps a\n"
		"fault of the same machine, extended by the slack after its end.\n"
		"  -t, --truth FILE       truth CSV (machine,fault,channel,start_ms,end_ms,...)\n"
		"  -a, --alerts FILE      alert log, one \"<topic> <json>\" per line\n"
		"      --slack-ms MS      grace after a fault's end (default 60000)\n"
		"\n"
		"Point mode: an agent's score log against per-row labels, pooled over pairs.\n"
		"  -P, --points S:L       score log S (ts_ms,score,threshold,above,alert,...)\n"
		"                         and labels L (one 0/1 per line); repeatable. The\n"
		"                         last ':' separates the two paths\n"
		"      --start ISO        timestamp of label row 0 (required)\n"
		"      --period-ms MS     time between label rows (required)\n"
		"      --row-offset N     label row i is data row N+i (default 0)\n"
		"      --column C         prediction column: alert (default) or above\n"
		"\n"
		"  -h, --help             show this help\n"
		"  -V, --version          show the version\n"
		"Last line: alerts=.. tp=.. faults=.. detected=.. precision=.. recall=..\n"
		"       or: points=.. precision=.. recall=.. f1=.. fpr=..\n"
		"Ratios with a zero denominator are printed as 0.000.\n"
		"Exit: 0 ok, 1 unreadable or malformed input, 2 usage.\n");
}

enum { OPT_SLACK = 256, OPT_START, OPT_PERIOD, OPT_OFFSET, OPT_COLUMN };

int main(int argc, char **argv)
{
	fv_cli_init(PROG);
	static const struct option longopts[] = {
		{ "truth", required_argument, NULL, 't' },
		{ "alerts", required_argument, NULL, 'a' },
		{ "slack-ms", required_argument, NULL, OPT_SLACK },
		{ "points", required_argument, NULL, 'P' },
		{ "start", required_argument, NULL, OPT_START },
		{ "period-ms", required_argument, NULL, OPT_PERIOD },
		{ "row-offset", required_argument, NULL, OPT_OFFSET },
		{ "column", required_argument, NULL, OPT_COLUMN },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	static struct score_pair pairs[MAX_PAIRS];
	struct score_events_opts ev = { .slack_ms = 60000 };
	struct score_points_opts pt = { .pairs = pairs, .column = "alert" };
	bool have_start = false, have_period = false, have_slack = false;
	long long v;
	int c;

	fv_log_setup(FV_LOG_INFO, "score");
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":t:a:P:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			ev.truth = optarg;
			break;
		case 'a':
			ev.alerts = optarg;
			break;
		case OPT_SLACK:
			if (fv_cli_parse_int("--slack-ms", optarg, 0, 86400000LL * 366, &v) < 0)
				return 2;
			ev.slack_ms = v;
			have_slack = true;
			break;
		case 'P': {
			char *colon = strrchr(optarg, ':');

			if (!colon || colon == optarg || !colon[1])
				return fv_cli_usage_error("--points: '%s' is not SCORES.csv:LABELS.csv", optarg);
			if (pt.n_pairs == MAX_PAIRS)
				return fv_cli_usage_error("--points: at most %d pairs", MAX_PAIRS);
			*colon = '\0';
			pairs[pt.n_pairs].scores = optarg;
			pairs[pt.n_pairs].labels = colon + 1;
			pt.n_pairs++;
			break;
		}
		case OPT_START:
			if (fv_iso8601_parse(optarg, &pt.start_ms) < 0)
				return fv_cli_usage_error("--start: '%s' is not an ISO-8601 UTC time "
						   "(like 2026-01-01T00:00:00Z)", optarg);
			have_start = true;
			break;
		case OPT_PERIOD:
			if (fv_cli_parse_int("--period-ms", optarg, 1, 86400000LL * 366, &v) < 0)
				return 2;
			pt.period_ms = v;
			have_period = true;
			break;
		case OPT_OFFSET:
			if (fv_cli_parse_int("--row-offset", optarg, 0, 1000000000LL, &v) < 0)
				return 2;
			pt.row_offset = v;
			break;
		case OPT_COLUMN:
			if (strcmp(optarg, "alert") != 0 && strcmp(optarg, "above") != 0)
				return fv_cli_usage_error("--column: '%s' is not alert or above", optarg);
			pt.column = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf(PROG " " FV_VERSION "\n");
			return 0;
		case ':':
			return fv_cli_usage_error("%s needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return fv_cli_usage_error("unknown option '-%c'", optopt);
			return fv_cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fv_cli_usage_error("unexpected argument '%s'", argv[optind]);

	if (pt.n_pairs > 0) {
		if (ev.truth || ev.alerts || have_slack)
			return fv_cli_usage_error("--points cannot be combined with --truth/--alerts/--slack-ms");
		if (!have_start)
			return fv_cli_usage_error("--start is required with --points");
		if (!have_period)
			return fv_cli_usage_error("--period-ms is required with --points");
		return score_points(&pt, stdout);
	}
	if (!ev.truth && !ev.alerts)
		return fv_cli_usage_error("give --truth and --alerts (event mode) or --points (point mode)");
	if (!ev.truth)
		return fv_cli_usage_error("--truth is required with --alerts");
	if (!ev.alerts)
		return fv_cli_usage_error("--alerts is required with --truth");
	if (have_start || have_period || pt.row_offset || strcmp(pt.column, "alert") != 0)
		return fv_cli_usage_error("--start/--period-ms/--row-offset/--column belong to --points mode");
	return score_events(&ev, stdout);
}
