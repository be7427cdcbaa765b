/* fedvigil logging: leveled lines on stderr, journald-aware. */
#include "fedvigil/util.h"

#include <ctype.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static enum fv_log_level log_max = FV_LOG_INFO;
static char log_tag[32] = "fedvigil";
static int log_journal = -1; /* -1 unknown, 0 plain, 1 journald */

static const char *const level_names[] = {
	[FV_LOG_ERR] = "err",	    [FV_LOG_WARNING] = "warning", [FV_LOG_NOTICE] = "notice",
	[FV_LOG_INFO] = "info",	    [FV_LOG_DEBUG] = "debug",
};

/* systemd sets JOURNAL_STREAM to "dev:ino" of the stream stderr is
 * connected to; only then are <N> prefixes understood. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

void fv_log_setup(enum fv_log_level max, const char *tag)
{
	log_max = max;
	/* Decided here, on the main thread, before Paho's thread can log. */
	log_journal = stderr_is_journal();
	if (tag)
		fv_strlcpy(log_tag, tag, sizeof(log_tag));
}

int fv_log_level_parse(const char *s, enum fv_log_level *ret_level)
{
	for (int i = FV_LOG_ERR; i <= FV_LOG_DEBUG; i++)
		if (strcmp(s, level_names[i]) == 0) {
			*ret_level = (enum fv_log_level)i;
			return 0;
		}
	if (strcmp(s, "error") == 0 || strcmp(s, "warn") == 0) {
		*ret_level = s[0] == 'e' ? FV_LOG_ERR : FV_LOG_WARNING;
		return 0;
	}
	return -EINVAL;
}

const char *fv_log_level_name(enum fv_log_level level)
{
	if (level < FV_LOG_ERR || level > FV_LOG_DEBUG)
		return "?";
	return level_names[level];
}

bool fv_log_enabled(enum fv_log_level level)
{
	return level <= log_max;
}

void fv_log(enum fv_log_level level, const char *fmt, ...)
{
	char line[2048];
	int n = 0;
	va_list ap;

	if (!fv_log_enabled(level))
		return;
	if (log_journal < 0)
		log_journal = stderr_is_journal();
	if (log_journal) {
		n = snprintf(line, sizeof(line), "<%d>", (int)level);
	} else {
		char ts[40];

		n = snprintf(line, sizeof(line), "%s %s[%s] ", fv_iso8601(fv_now_wall_ms(), ts, sizeof(ts)),
			     log_tag, fv_log_level_name(level));
	}
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so lines from Paho's thread do not interleave. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

const char *fv_log_err_prefix(void)
{
	if (log_journal < 0)
		log_journal = stderr_is_journal();
	return log_journal ? "<3>" : "";
}

void fv_log_usagev(const char *prog, const char *fmt, va_list ap)
{
	const char *pre = fv_log_err_prefix();

	fprintf(stderr, "%s%s: ", pre, prog);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n%sTry '%s --help'.\n", pre, prog);
}

void fv_log_usage(const char *prog, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fv_log_usagev(prog, fmt, ap);
	va_end(ap);
}

void fv_log_bad_option(const char *prog, char *const argv[])
{
	/* getopt sets optopt to a refused short option's letter, or to a long
	 * option's value when its argument is missing (then argv says which). */
	if (optopt > 0 && optopt < 128 && isgraph(optopt))
		fv_log_usage(prog, "option '-%c' is unknown or needs a value", optopt);
	else
		fv_log_usage(prog, "option '%s' is unknown or needs a value", argv[optind - 1]);
}

bool fv_ratelimit_ok(struct fv_ratelimit *rl, uint64_t *ret_suppressed)
{
	int64_t now = fv_now_mono_ms();

	if (rl->begin_ms == 0 || now - rl->begin_ms >= rl->interval_ms) {
		rl->begin_ms = now;
		rl->printed = 0;
	}
	if (rl->printed < rl->burst) {
		rl->printed++;
		if (ret_suppressed)
			*ret_suppressed = rl->suppressed;
		rl->suppressed = 0;
		return true;
	}
	rl->suppressed++;
	return false;
}
