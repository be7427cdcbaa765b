/* fedvigil-replay: publish the rows of CSV datasets to MQTT as sensor
 * readings, one machine per file, interleaved row by row (docs/tools.md). */
#include "cli.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "fedvigil-replay"
#define MAX_MACHINES 256
#define MAX_COLUMNS 4096

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

enum header_mode { HEADER_AUTO, HEADER_YES, HEADER_NO };

/* One machine: a CSV file being replayed. */
struct source {
	const char *name;        /* machine name (topic level) */
	const char *path;        /* CSV path */
	FILE *f;                 /* open file, NULL at EOF */
	char **channels;         /* ncols channel names, malloc'd */
	int ncols;               /* columns (channels) */
	char *pending;           /* first data line read while sniffing a header */
	int64_t line_no;         /* physical line number of the last line read */
	int64_t rows;            /* data rows published */
	uint64_t messages;       /* readings published */
	uint64_t bad_cells;      /* non-numeric cells skipped */
	uint64_t empty_cells;    /* empty cells skipped */
	uint64_t extra_cells;    /* cells beyond the last column, ignored */
};

/* Command-line options. */
struct opts {
	const char *broker;       /* MQTT URI */
	struct fv_cli_mqtt mqtt;  /* authentication and TLS */
	const char *prefix;       /* topic prefix */
	enum header_mode header;  /* header line handling */
	char delim;               /* field delimiter */
	int64_t period_ms;        /* time between rows */
	int64_t start_ms;         /* timestamp of row 0 */
	int64_t row_offset;       /* first row's index for timestamps */
	double rate;              /* rows per second per machine, 0 = max */
	int qos;                  /* publish QoS */
	bool quiet;               /* no per-machine summary */
	double connect_timeout_s; /* give up if the broker is not reachable */
	struct source src[MAX_MACHINES]; /* --machine arguments */
	int n_src;                /* entries in src */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " --broker URI --machine NAME=FILE.csv [--machine ...] [options]\n"
		"Publish CSV rows as sensor readings: row i of NAME's file goes to\n"
		"<prefix>/NAME/<channel> as {\"ts\":start+(row-offset+i)*period,\"value\":x}.\n"
		"\n"
		"  -b, --broker URI         MQTT broker, e.g. tcp://127.0.0.1:1883 (required)\n"
		"  -p, --prefix P           topic prefix (default plant)\n"
		"  -m, --machine NAME=FILE  a machine and its CSV file (repeatable, required)\n"
		"      --header MODE        auto, yes or no: is the first line channel names?\n"
		"                           (default auto: yes if it has a non-numeric cell);\n"
		"                           without a header channels are c1..cN\n"
		"      --delimiter C        field delimiter, one character or 'tab' (default ,)\n"
		"      --period-ms MS       time between rows (default 300000)\n"
		"      --start ISO          timestamp of row 0 (default 2026-01-01T00:00:00Z)\n"
		"      --row-offset N       index of the first row for timestamps (default 0)\n"
		"      --rate R             rows per second per machine, 0 = as fast as\n"
		"                           possible (default 1000)\n"
		"      --qos N              publish QoS 0, 1 or 2 (default 1)\n"
		"      --connect-timeout S  give up when the broker is unreachable (default 10)\n"
		"  -q, --quiet              no per-machine summary\n"
		FV_CLI_MQTT_HELP
		"  -h, --help               show this help\n"
		"  -V, --version            show the version\n"
		"\n"
		"Empty cells are skipped; non-numeric cells are skipped and counted.\n"
		"Exit: 0 ok, 1 error, 2 usage.\n");
}

/* ---- CSV ---- */

/* Trim blanks and one pair of surrounding double quotes, in place. */
static char *trim_cell(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s[n - 1] = '\0';
		s++;
	}
	return s;
}

/* Split line in place at delim into at most max cells; returns the count
 * (may exceed max: the extra cells are counted but not stored). */
static int split(char *line, char delim, char **cells, int max)
{
	int n = 0;
	char *p = line;

	for (;;) {
		char *d = strchr(p, delim);

		if (d)
			*d = '\0';
		if (n < max)
			cells[n] = trim_cell(p);
		n++;
		if (!d)
			return n;
		p = d + 1;
	}
}

/* A JSON-safe number: strtod accepts "nan", "inf", hex and "1." too, so
 * parse and re-print rather than copy the text. */
static bool parse_cell(const char *s, double *ret)
{
	char *end;
	double v;

	if (!*s)
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || !isfinite(v) || errno == ERANGE)
		return false;
	*ret = v;
	return true;
}

/* Shortest of %.15g/%.17g that reads back as the same double. */
static void format_value(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, len, "%.17g", v);
}

/* Next non-blank line without its CR/LF, or NULL at EOF (buffer reused). */
static char *read_line(struct source *s, char **buf, size_t *cap)
{
	ssize_t n;

	while ((n = getline(buf, cap, s->f)) >= 0) {
		s->line_no++;
		while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r'))
			(*buf)[--n] = '\0';
		for (ssize_t i = 0; i < n; i++)
			if (!isspace((unsigned char)(*buf)[i]))
				return *buf;
	}
	return NULL;
}

/* Replace characters that cannot appear in a topic level. */
static char *channel_name(const char *raw, int col)
{
	char buf[64];
	size_t n = 0;

	for (const char *p = raw; *p && n < sizeof(buf) - 1; p++) {
		unsigned char c = (unsigned char)*p;

		buf[n++] = (char)(isalnum(c) || c == '_' || c == '.' || c == '-' ? c : '_');
	}
	buf[n] = '\0';
	if (n == 0)
		snprintf(buf, sizeof(buf), "c%d", col + 1);
	return strdup(buf);
}

/* Open a source and work out its channels. Returns 0 or -errno (logged). */
static int source_open(struct source *s, const struct opts *o)
{
	char *line = NULL, *cells[MAX_COLUMNS];
	size_t cap = 0;
	int n, r = 0;
	bool header;

	s->f = fopen(s->path, "r");
	if (!s->f) {
		r = -errno;
		fv_log(FV_LOG_ERR, "cannot open %s (machine %s): %s", s->path, s->name, fv_strerror(r));
		return r;
	}
	if (!read_line(s, &line, &cap)) {
		fv_log(FV_LOG_WARNING, "%s (machine %s) has no rows", s->path, s->name);
		fclose(s->f);
		s->f = NULL;
		free(line);
		return 0;
	}
	s->pending = strdup(line);
	n = split(line, o->delim, cells, MAX_COLUMNS);
	if (n > MAX_COLUMNS) {
		fv_log(FV_LOG_ERR, "%s: %d columns, at most %d supported", s->path, n, MAX_COLUMNS);
		free(line);
		return -E2BIG;
	}
	header = o->header == HEADER_YES;
	if (o->header == HEADER_AUTO) {
		for (int i = 0; i < n; i++) {
			double v;

			if (*cells[i] && !parse_cell(cells[i], &v))
				header = true;
		}
	}
	s->ncols = n;
	s->channels = calloc((size_t)n, sizeof(char *));
	if (!s->channels || !s->pending) {
		free(line);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		char tmp[16];

		snprintf(tmp, sizeof(tmp), "c%d", i + 1);
		s->channels[i] = channel_name(header ? cells[i] : tmp, i);
		if (!s->channels[i]) {
			free(line);
			return -ENOMEM;
		}
		/* Two columns must not publish to the same topic. */
		for (int j = 0; j < i; j++) {
			if (strcmp(s->channels[i], s->channels[j]) == 0) {
				snprintf(tmp, sizeof(tmp), "c%d", i + 1);
				free(s->channels[i]);
				s->channels[i] = strdup(tmp);
				fv_log(FV_LOG_WARNING, "%s: column %d repeats the name '%s'; using '%s'",
				       s->path, i + 1, s->channels[j], tmp);
				if (!s->channels[i]) {
					free(line);
					return -ENOMEM;
				}
				break;
			}
		}
	}
	if (header) {
		free(s->pending);
		s->pending = NULL;
	}
	free(line);
	return 0;
}

static void source_close(struct source *s)
{
	if (s->f)
		fclose(s->f);
	s->f = NULL;
	for (int i = 0; i < s->ncols && s->channels; i++)
		free(s->channels[i]);
	free(s->channels);
	free(s->pending);
}

/* Copy s for a log line: at most len - 1 bytes, non-printables as '?'. */
static void printable(char *buf, size_t len, const char *s)
{
	size_t n = 0;

	for (; *s && n < len - 1; s++)
		buf[n++] = isprint((unsigned char)*s) ? *s : '?';
	buf[n] = '\0';
}

/* Publish one data line of s (already split off the file). 0 or -errno. */
static int publish_row(struct fv_mqtt *mq, const struct opts *o, struct source *s, char *line)
{
	static struct fv_ratelimit rl = FV_RATELIMIT_INIT(5000, 5);
	char *cells[MAX_COLUMNS], topic[512], payload[96], num[40];
	int64_t ts = o->start_ms + (o->row_offset + s->rows) * o->period_ms;
	int n = split(line, o->delim, cells, MAX_COLUMNS);

	if (n > s->ncols) {
		s->extra_cells += (uint64_t)(n - s->ncols);
		n = s->ncols;
	}
	for (int i = 0; i < n; i++) {
		double v;
		int r;

		if (!*cells[i]) {
			s->empty_cells++;
			continue;
		}
		if (!parse_cell(cells[i], &v)) {
			uint64_t sup = 0;
			char shown[41];

			s->bad_cells++;
			if (!fv_ratelimit_ok(&rl, &sup))
				continue;
			printable(shown, sizeof(shown), cells[i]);
			if (sup)
				fv_log(FV_LOG_WARNING, "%s:%" PRId64 ": column %d (%s): '%s' is not a "
				       "number; skipped (and %" PRIu64 " more since the last report)",
				       s->path, s->line_no, i + 1, s->channels[i], shown, sup);
			else
				fv_log(FV_LOG_WARNING, "%s:%" PRId64 ": column %d (%s): '%s' is not a "
				       "number; skipped", s->path, s->line_no, i + 1, s->channels[i], shown);
			continue;
		}
		format_value(num, sizeof(num), v);
		snprintf(topic, sizeof(topic), "%s/%s/%s", o->prefix, s->name, s->channels[i]);
		snprintf(payload, sizeof(payload), "{\"ts\":%" PRId64 ",\"value\":%s}", ts, num);
		r = fv_cli_publish(mq, o->broker, topic, payload, o->qos, &stop_signal);
		if (r < 0)
			return r;
		s->messages++;
	}
	s->rows++;
	return 0;
}

enum {
	OPT_HEADER = 256,
	OPT_DELIM,
	OPT_PERIOD,
	OPT_START,
	OPT_OFFSET,
	OPT_RATE,
	OPT_QOS,
	OPT_CONNECT_TIMEOUT,
};

/* Returns 0, 2 on a usage error, -1 after --help/--version. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "broker", required_argument, NULL, 'b' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "machine", required_argument, NULL, 'm' },
		{ "header", required_argument, NULL, OPT_HEADER },
		{ "delimiter", required_argument, NULL, OPT_DELIM },
		{ "period-ms", required_argument, NULL, OPT_PERIOD },
		{ "start", required_argument, NULL, OPT_START },
		{ "row-offset", required_argument, NULL, OPT_OFFSET },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "qos", required_argument, NULL, OPT_QOS },
		{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
		{ "quiet", no_argument, NULL, 'q' },
		FV_CLI_MQTT_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	long long v;
	int c, r;

	fv_cli_mqtt_init(&o->mqtt);

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":b:p:m:qhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (fv_cli_opt_broker(optarg, &o->broker))
				return 2;
			break;
		case 'p':
			if (fv_cli_opt_prefix(optarg, &o->prefix))
				return 2;
			break;
		case 'm': {
			char *eq = strchr(optarg, '=');
			struct source *s;

			if (!eq || eq == optarg || !eq[1])
				return fv_cli_usage_error("--machine: '%s' is not NAME=FILE.csv", optarg);
			*eq = '\0';
			if (!fv_name_valid(optarg))
				return fv_cli_usage_error("--machine: '%s' is not a valid machine name "
						   "(1-63 of A-Z a-z 0-9 _ . -)", optarg);
			if (o->n_src == MAX_MACHINES)
				return fv_cli_usage_error("--machine: at most %d machines", MAX_MACHINES);
			for (int i = 0; i < o->n_src; i++)
				if (strcmp(o->src[i].name, optarg) == 0)
					return fv_cli_usage_error("--machine: '%s' given twice", optarg);
			s = &o->src[o->n_src++];
			s->name = optarg;
			s->path = eq + 1;
			break;
		}
		case OPT_HEADER:
			if (strcmp(optarg, "auto") == 0)
				o->header = HEADER_AUTO;
			else if (strcmp(optarg, "yes") == 0)
				o->header = HEADER_YES;
			else if (strcmp(optarg, "no") == 0)
				o->header = HEADER_NO;
			else
				return fv_cli_usage_error("--header: '%s' is not auto, yes or no", optarg);
			break;
		case OPT_DELIM:
			if (strcmp(optarg, "tab") == 0 || strcmp(optarg, "\\t") == 0)
				o->delim = '\t';
			else if (strlen(optarg) == 1 && optarg[0] != '"' && optarg[0] != '\n' &&
				 optarg[0] != '\r')
				o->delim = optarg[0];
			else
				return fv_cli_usage_error("--delimiter: '%s' is not one character (or 'tab')",
						   optarg);
			break;
		case OPT_PERIOD:
			if (fv_cli_parse_int("--period-ms", optarg, 1, 86400000LL * 366, &v) < 0)
				return 2;
			o->period_ms = v;
			break;
		case OPT_START:
			if (fv_iso8601_parse(optarg, &o->start_ms) < 0)
				return fv_cli_usage_error("--start: '%s' is not an ISO-8601 UTC time "
						   "(like 2026-01-01T00:00:00Z)", optarg);
			break;
		case OPT_OFFSET:
			if (fv_cli_parse_int("--row-offset", optarg, 0, 1000000000LL, &v) < 0)
				return 2;
			o->row_offset = v;
			break;
		case OPT_RATE:
			if (fv_cli_parse_num("--rate", optarg, 0, 1e9, &o->rate) < 0)
				return 2;
			break;
		case OPT_QOS:
			if (fv_cli_parse_int("--qos", optarg, 0, 2, &v) < 0)
				return 2;
			o->qos = (int)v;
			break;
		case OPT_CONNECT_TIMEOUT:
			if (fv_cli_parse_num("--connect-timeout", optarg, 0.1, 86400, &o->connect_timeout_s) < 0)
				return 2;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf(PROG " " FV_VERSION "\n");
			return -1;
		case ':':
			return fv_cli_usage_error("%s needs a value", argv[optind - 1]);
		default:
			r = fv_cli_mqtt_option(&o->mqtt, c, optarg);
			if (r == 1)
				break;
			if (r == 2)
				return 2;
			if (optopt)
				return fv_cli_usage_error("unknown option '-%c'", optopt);
			return fv_cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fv_cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!o->broker)
		return fv_cli_usage_error("--broker is required (e.g. --broker tcp://127.0.0.1:1883)");
	if (o->n_src == 0)
		return fv_cli_usage_error("--machine NAME=FILE.csv is required (at least one)");
	return 0;
}

int main(int argc, char **argv)
{
	fv_cli_init(PROG);
	static struct opts o = {
		.prefix = "plant",
		.header = HEADER_AUTO,
		.delim = ',',
		.period_ms = 300000,
		.start_ms = 1767225600000LL, /* 2026-01-01T00:00:00Z */
		.rate = 1000,
		.qos = 1,
		.connect_timeout_s = 10,
	};
	struct fv_mqtt *mq = NULL;
	struct fv_mqtt_opts mo = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	struct timespec t0;
	char client_id[64], *line = NULL;
	size_t cap = 0;
	uint64_t rows = 0, messages = 0, bad = 0;
	int rc = 0, r;

	fv_log_setup(FV_LOG_INFO, "replay");
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = parse_args(argc, argv, &o);
	if (r)
		return r < 0 ? 0 : r;
	if (o.quiet)
		fv_log_setup(FV_LOG_WARNING, "replay");
	for (int i = 0; i < o.n_src; i++) {
		if (source_open(&o.src[i], &o) < 0) {
			rc = 1;
			goto out;
		}
	}

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	snprintf(client_id, sizeof(client_id), "fedvigil-replay-%ld", (long)getpid());
	mo.uri = o.broker;
	mo.client_id = client_id;
	mo.offline_buffer = 10000;
	r = fv_cli_mqtt_apply(&o.mqtt, o.broker, &mo);
	if (r) {
		rc = r;
		goto out;
	}
	mq = fv_mqtt_new(&mo);
	if (!mq) {
		rc = 1;
		goto out;
	}
	r = fv_mqtt_start(mq);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot use broker %s: %s", o.broker, fv_strerror(r));
		rc = r == -EINVAL ? 2 : 1;
		goto out;
	}
	if (!fv_cli_wait_connected(mq, o.connect_timeout_s, &stop_signal)) {
		if (!stop_signal) {
			fv_log(FV_LOG_ERR, "cannot connect to broker %s within %g s", o.broker,
			       o.connect_timeout_s);
			rc = 1;
		}
		goto out;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int64_t i = 0; !stop_signal && rc == 0; i++) {
		bool any = false;

		if (o.rate > 0)
			fv_cli_sleep_until(&t0, (int64_t)((double)i * 1e9 / o.rate), &stop_signal);
		for (int m = 0; m < o.n_src && !stop_signal; m++) {
			struct source *s = &o.src[m];
			char *row;

			if (s->pending) {
				row = s->pending; /* first line, not a header */
			} else if (s->f && (row = read_line(s, &line, &cap))) {
				/* next line */
			} else {
				if (s->f && ferror(s->f)) {
					fv_log(FV_LOG_ERR, "reading %s: %s", s->path, strerror(errno));
					rc = 1;
				}
				if (s->f)
					fclose(s->f);
				s->f = NULL;
				continue;
			}
			any = true;
			r = publish_row(mq, &o, s, row);
			if (row == s->pending) {
				free(s->pending);
				s->pending = NULL;
			}
			if (r < 0 && r != -EINTR)
				rc = 1;
			if (r < 0)
				break;
		}
		if (!any)
			break;
	}
	if (stop_signal)
		fv_log(FV_LOG_NOTICE, "stopped by signal %d", (int)stop_signal);

	{
		int64_t deadline = fv_now_mono_ms() + (stop_signal ? 2000 : 30000);

		while (fv_mqtt_pending(mq) > 0 && fv_now_mono_ms() < deadline) {
			fv_cli_drain(mq);
			fv_cli_sleep_ms(10);
		}
		int unacked = fv_mqtt_pending(mq);

		fv_mqtt_disconnect(mq, 5000);
		if (unacked > 0 && fv_mqtt_pending(mq) > 0) {
			fv_log(FV_LOG_ERR, "%d messages were not acknowledged by %s",
			       fv_mqtt_pending(mq), o.broker);
			rc = 1;
		}
	}
	for (int m = 0; m < o.n_src; m++) {
		struct source *s = &o.src[m];

		rows += (uint64_t)s->rows;
		messages += s->messages;
		bad += s->bad_cells;
		if (!o.quiet)
			printf("replay: %s rows=%" PRId64 " messages=%" PRIu64 " channels=%d "
			       "empty=%" PRIu64 " non-numeric=%" PRIu64 " extra=%" PRIu64 "\n",
			       s->name, s->rows, s->messages, s->ncols, s->empty_cells,
			       s->bad_cells, s->extra_cells);
	}
	if (bad)
		fv_log(FV_LOG_WARNING, "%" PRIu64 " non-numeric cells were skipped", bad);
	printf("replay: done rows=%" PRIu64 " messages=%" PRIu64 "\n", rows, messages);
out:
	fv_mqtt_free(mq, 1000);
	for (int i = 0; i < o.n_src; i++)
		source_close(&o.src[i]);
	free(line);
	return rc;
}
