/* Prometheus text exposition format 0.0.4, and the process's own usage. */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "fedvigil/mqtt.h"
#include "fedvigil/svc.h"
#include "fedvigil/util.h"

void fv_prom_init(struct fv_prom *p, size_t max_len)
{
	memset(p, 0, sizeof(*p));
	p->max_len = max_len;
}

void fv_prom_free(struct fv_prom *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

static void append(struct fv_prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(struct fv_prom *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->truncated)
		return;
	for (;;) {
		size_t room = p->cap - p->len;

		va_start(ap, fmt);
		n = vsnprintf(p->buf ? p->buf + p->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			p->truncated = true;
			return;
		}
		if ((size_t)n < room) {
			p->len += (size_t)n;
			return;
		}
		/* Grow to fit, within the bound (+1 for the NUL). */
		size_t want = FV_MAX(p->cap * 2, p->len + (size_t)n + 1);

		if (p->len + (size_t)n + 1 > p->max_len) {
			if (p->buf)
				p->buf[p->len] = '\0';
			p->truncated = true;
			return;
		}
		want = FV_MIN(FV_MAX(want, (size_t)1024), p->max_len);
		char *nb = realloc(p->buf, want);

		if (!nb) {
			p->truncated = true;
			return;
		}
		p->buf = nb;
		p->cap = want;
	}
}

void fv_prom_family(struct fv_prom *p, const char *name, const char *type, const char *help)
{
	append(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void fv_prom_sample(struct fv_prom *p, const char *name, const char *labels, double value)
{
	const char *lb = labels && *labels ? "{" : "", *rb = labels && *labels ? "}" : "";

	if (isnan(value))
		append(p, "%s%s%s%s NaN\n", name, lb, labels ? labels : "", rb);
	else if (isinf(value))
		append(p, "%s%s%s%s %sInf\n", name, lb, labels ? labels : "", rb,
		       value > 0 ? "+" : "-");
	else if (value == floor(value) && fabs(value) < 1e15)
		append(p, "%s%s%s%s %.0f\n", name, lb, labels ? labels : "", rb, value);
	else
		append(p, "%s%s%s%s %.9g\n", name, lb, labels ? labels : "", rb, value);
}

void fv_prom_metric(struct fv_prom *p, const char *name, const char *type, const char *help,
		    double value)
{
	fv_prom_family(p, name, type, help);
	fv_prom_sample(p, name, "", value);
}

char *fv_prom_label_escape(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	if (len == 0)
		return buf;
	for (; *s && o + 1 < len; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;

		if (esc) {
			if (o + 2 >= len)
				break;
			buf[o++] = esc[0];
			buf[o++] = esc[1];
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
	return buf;
}

void fv_proc_usage(struct fv_proc_usage *ret)
{
	struct rusage ru;
	FILE *f;
	DIR *d;

	memset(ret, 0, sizeof(*ret));
	f = fopen("/proc/self/statm", "re");
	if (f) {
		unsigned long long size, resident;

		if (fscanf(f, "%llu %llu", &size, &resident) == 2)
			ret->rss_bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		ret->cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	/* Field 22 of /proc/self/stat is the start time in clock ticks since
	 * boot; with CLOCK_BOOTTIME (time since boot, now) it gives the start
	 * on the wall clock without /proc/stat, which ProcSubset=pid hides.
	 * The command (field 2) may hold spaces and parentheses: parse after
	 * its last ')'. */
	f = fopen("/proc/self/stat", "re");
	if (f) {
		char line[1024], *save = NULL;
		unsigned long long start = 0;
		struct timespec boot;

		if (fgets(line, sizeof(line), f)) {
			char *p = strrchr(line, ')');
			int field = 2;

			for (char *t = p ? strtok_r(p + 1, " ", &save) : NULL; t;
			     t = strtok_r(NULL, " ", &save))
				if (++field == 22) {
					start = strtoull(t, NULL, 10);
					break;
				}
		}
		fclose(f);
		if (start && clock_gettime(CLOCK_BOOTTIME, &boot) == 0) {
			double up = (double)boot.tv_sec + (double)boot.tv_nsec / 1e9;
			double age = up - (double)start / (double)sysconf(_SC_CLK_TCK);

			ret->start_time_s = (double)fv_now_wall_ms() / 1000.0 - age;
		}
	}
	d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *e;

		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				ret->open_fds++;
		closedir(d);
		if (ret->open_fds)
			ret->open_fds--; /* the directory stream itself */
	}
}

void fv_prom_process(struct fv_prom *p)
{
	struct fv_proc_usage u;

	fv_proc_usage(&u);
	fv_prom_metric(p, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
		       (double)u.rss_bytes);
	fv_prom_metric(p, "process_cpu_seconds_total", "counter",
		       "Total user and system CPU time spent in seconds.", u.cpu_seconds);
	fv_prom_metric(p, "process_start_time_seconds", "gauge",
		       "Start time of the process since unix epoch in seconds.", u.start_time_s);
	fv_prom_metric(p, "process_open_fds", "gauge", "Number of open file descriptors.",
		       (double)u.open_fds);
}

void fv_prom_mqtt(struct fv_prom *p, const struct fv_mqtt_stats *st, bool connected)
{
	fv_prom_metric(p, "fedvigil_mqtt_connected", "gauge",
		       "1 while connected to the MQTT broker.", connected ? 1 : 0);
	fv_prom_metric(p, "fedvigil_mqtt_messages_received_total", "counter",
		       "MQTT messages received and queued for the main loop.",
		       (double)st->received);
	fv_prom_family(p, "fedvigil_mqtt_messages_dropped_total", "counter",
		       "MQTT messages dropped on arrival, by reason.");
	fv_prom_sample(p, "fedvigil_mqtt_messages_dropped_total", "reason=\"queue_full\"",
		       (double)st->dropped_full);
	fv_prom_sample(p, "fedvigil_mqtt_messages_dropped_total", "reason=\"too_big\"",
		       (double)st->dropped_big);
	fv_prom_metric(p, "fedvigil_mqtt_messages_published_total", "counter",
		       "MQTT publishes accepted by the client library.", (double)st->published);
	fv_prom_metric(p, "fedvigil_mqtt_publish_failures_total", "counter",
		       "MQTT publishes the client library refused.", (double)st->publish_failed);
	fv_prom_metric(p, "fedvigil_mqtt_sent_bytes_total", "counter",
		       "Payload bytes of accepted MQTT publishes.", (double)st->bytes_out);
	fv_prom_metric(p, "fedvigil_mqtt_reconnects_total", "counter",
		       "Successful reconnects to the broker after the first connect.",
		       (double)st->reconnects);
}
