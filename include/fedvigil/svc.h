/* fedvigil service integration: what a daemon needs to run well under a
 * service manager and beside a monitoring stack.
 *
 * - systemd's notify protocol (READY=1, STATUS=, RELOADING=1, STOPPING=1)
 *   and its watchdog (WATCHDOG=1), through libsystemd's sd_notify() when
 *   the build has it and our own datagram sender otherwise;
 * - Prometheus text-format metrics served by a tiny, bounded HTTP responder
 *   that runs on the daemon's main loop (no thread);
 * - the process's own resource usage (RSS, CPU time).
 *
 * Everything here is called from the daemon's main thread. */
#ifndef FEDVIGIL_SVC_H
#define FEDVIGIL_SVC_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- notify protocol and watchdog ---- */

/* Notification state of one daemon. */
struct fv_sd {
	bool active;           /* NOTIFY_SOCKET is set: messages are sent */
	bool ready;            /* READY=1 sent */
	bool reloading;        /* RELOADING=1 sent, READY=1 not yet again */
	int64_t wd_period_ms;  /* WATCHDOG=1 every this long; 0 = no watchdog */
	int64_t wd_next_ms;    /* monotonic time the next ping is due */
	int64_t status_next_ms; /* earliest monotonic time of the next STATUS= */
	uint64_t wd_sent;      /* pings sent (metrics, tests) */
	char status[256];      /* last STATUS= text sent */
};

/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment
 * (the watchdog is ours only when WATCHDOG_PID is unset or our PID). The
 * variables are left in place: nothing we start inherits them. */
void fv_sd_init(struct fv_sd *sd);
/* Send one notification ("READY=1\nSTATUS=..."), whatever the state. 1
 * when sent, 0 when there is no NOTIFY_SOCKET, -errno on failure. */
int fv_sd_notify(const struct fv_sd *sd, const char *msg);
/* READY=1 with a STATUS= line (status may be NULL). */
void fv_sd_ready(struct fv_sd *sd, const char *status);
/* RELOADING=1: the configuration is being re-read. Sent only once ready (a
 * reload during start-up is silent), and then fv_sd_reloaded() sends
 * READY=1 again. */
void fv_sd_reloading(struct fv_sd *sd);
void fv_sd_reloaded(struct fv_sd *sd, const char *status);
/* STOPPING=1 with a STATUS= line. */
void fv_sd_stopping(struct fv_sd *sd, const char *status);
/* STATUS=<printf text>, sent only when it changed and at most once per
 * second (the last change is sent once the second has passed, by a later
 * call). */
void fv_sd_status(struct fv_sd *sd, int64_t now_ms, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Call once per main-loop iteration: sends WATCHDOG=1 when a ping is due.
 * Pings therefore stop as soon as the loop stops going round (stuck in a
 * computation, deadlocked, stopped), which is what the watchdog is for.
 * Returns the milliseconds until the next ping is due (INT32_MAX without a
 * watchdog), for the loop's poll timeout. */
int fv_sd_watchdog(struct fv_sd *sd, int64_t now_ms);

/* ---- Prometheus text exposition ---- */

/* A growing text buffer for one scrape (bounded: appends beyond max_len are
 * dropped and flagged). */
struct fv_prom {
	char *buf;       /* NUL-terminated text, owned */
	size_t len;      /* bytes used */
	size_t cap;      /* bytes allocated */
	size_t max_len;  /* hard bound */
	bool truncated;  /* something did not fit (or out of memory) */
};

/* Start an empty exposition of at most max_len bytes. */
void fv_prom_init(struct fv_prom *p, size_t max_len);
void fv_prom_free(struct fv_prom *p);
/* "# HELP name help\n# TYPE name type\n": once per metric family, before
 * its samples. type is "counter" or "gauge". */
void fv_prom_family(struct fv_prom *p, const char *name, const char *type, const char *help);
/* One sample: name{labels} value. labels is "" or 'key="value",...'
 * (the caller escapes values with fv_prom_label_escape()). */
void fv_prom_sample(struct fv_prom *p, const char *name, const char *labels, double value);
/* Family + one unlabelled sample, the common case. */
void fv_prom_metric(struct fv_prom *p, const char *name, const char *type, const char *help,
		    double value);
/* Escape a label value (backslash, double quote, newline) into buf; the
 * result is truncated to fit. Returns buf. */
char *fv_prom_label_escape(const char *s, char *buf, size_t len);
/* Append the process_* families every exporter has: resident memory,
 * CPU seconds, start time, open file descriptors. */
void fv_prom_process(struct fv_prom *p);

struct fv_mqtt_stats;
/* Append the fedvigil_mqtt_* families from a client's counters. */
void fv_prom_mqtt(struct fv_prom *p, const struct fv_mqtt_stats *st, bool connected);

/* ---- the process's own resource usage ---- */

struct fv_proc_usage {
	uint64_t rss_bytes;    /* resident set size */
	double cpu_seconds;    /* user + system CPU time */
	double start_time_s;   /* process start, seconds since the epoch */
	uint32_t open_fds;     /* entries in /proc/self/fd */
};

/* Fill *ret from /proc/self and getrusage(); fields that cannot be read
 * are 0. */
void fv_proc_usage(struct fv_proc_usage *ret);

/* ---- tiny HTTP responder for /metrics ---- */

#define FV_HTTPD_MAX_CLIENTS 8      /* connections served at once */
#define FV_HTTPD_REQ_MAX 2048       /* request head bytes read at most */
#define FV_HTTPD_TIMEOUT_MS 5000    /* a client slower than this is dropped */
#define FV_HTTPD_POLLFDS (1 + FV_HTTPD_MAX_CLIENTS)

struct fv_httpd;

/* Renders the metrics page into p (called once per GET /metrics). */
typedef void (*fv_httpd_render_fn)(struct fv_prom *p, void *userdata);

/* Parse "PORT", "HOST:PORT" or "[V6]:PORT" (numeric addresses only) into
 * ret_host (NUL-terminated, "127.0.0.1" when omitted) and *ret_port.
 * 0 or -EINVAL. */
int fv_httpd_parse_listen(const char *s, char *ret_host, size_t hostlen, uint16_t *ret_port);
/* A config value for it (key names it in the message): 0, or -EINVAL with
 * "KEY = 'S': not PORT, IPV4:PORT or [IPV6]:PORT ..." in err. */
int fv_httpd_check_listen(const char *key, const char *s, char *err, size_t errlen);
/* Listen on addr ("127.0.0.1:9108", see fv_httpd_parse_listen; port 0 picks
 * a free one). NULL on failure with the reason in err. Caller owns it. */
struct fv_httpd *fv_httpd_new(const char *addr, fv_httpd_render_fn render, void *userdata,
			      char *err, size_t errlen);
void fv_httpd_free(struct fv_httpd *h);
/* The port actually bound, and "HOST:PORT" of the socket. */
uint16_t fv_httpd_port(const struct fv_httpd *h);
const char *fv_httpd_addr(const struct fv_httpd *h);
/* Fill up to max pollfds (listen socket and clients) for the main loop's
 * poll(); returns how many. */
int fv_httpd_pollfds(const struct fv_httpd *h, struct pollfd *ret, int max);
/* After poll(): accept, read requests, write responses, drop slow or
 * finished clients. pfd/n as filled by fv_httpd_pollfds (revents set).
 * Never blocks. */
void fv_httpd_handle(struct fv_httpd *h, const struct pollfd *pfd, int n, int64_t now_ms);

/* Counters of the responder (for its own metrics and tests). */
struct fv_httpd_stats {
	uint64_t requests;     /* complete requests answered */
	uint64_t bad_requests; /* 4xx answers */
	uint64_t dropped;      /* connections dropped: full, too slow, errors */
};
void fv_httpd_get_stats(const struct fv_httpd *h, struct fv_httpd_stats *ret);

#endif
