/* systemd's notify protocol and watchdog (sd_notify(3), sd_watchdog_enabled(3)).
 *
 * With libsystemd (FV_HAVE_SYSTEMD) the messages go through sd_notify();
 * without it, through a datagram of our own to $NOTIFY_SOCKET, which is all
 * the protocol is (a path, or an abstract name written with a leading '@').
 * Both builds behave the same. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef FV_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "fedvigil/svc.h"
#include "fedvigil/util.h"

/* STATUS= is rate-limited to one per second. */
#define STATUS_MIN_INTERVAL_MS 1000

#ifndef FV_HAVE_SYSTEMD
/* One datagram to $NOTIFY_SOCKET. 1 sent, 0 no socket, -errno. */
static int send_dgram(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n;
	socklen_t salen;
	int fd, r = 1;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL; /* vsock and others: not supported here */
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
		r = -errno;
	close(fd);
	return r;
}
#endif

/* Watchdog period in microseconds from the environment, 0 = none. */
static uint64_t watchdog_usec(void)
{
#ifdef FV_HAVE_SYSTEMD
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
#else
	const char *s = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
	unsigned long long usec, pid;
	char *end;

	if (!s)
		return 0;
	if (p) {
		errno = 0;
		pid = strtoull(p, &end, 10);
		if (errno || end == p || *end || pid != (unsigned long long)getpid())
			return 0;
	}
	errno = 0;
	usec = strtoull(s, &end, 10);
	if (errno || end == s || *end || usec == 0)
		return 0;
	return usec;
#endif
}

void fv_sd_init(struct fv_sd *sd)
{
	const char *ns = getenv("NOTIFY_SOCKET");
	uint64_t usec = watchdog_usec();

	memset(sd, 0, sizeof(*sd));
	sd->active = ns && *ns;
	/* Ping at half the period, as sd_watchdog_enabled(3) advises, and
	 * never more often than every 10 ms. */
	if (usec) {
		sd->wd_period_ms = (int64_t)(usec / 2000);
		if (sd->wd_period_ms < 10)
			sd->wd_period_ms = 10;
	}
	sd->wd_next_ms = fv_now_mono_ms();
}

int fv_sd_notify(const struct fv_sd *sd, const char *msg)
{
	if (!sd->active)
		return 0;
#ifdef FV_HAVE_SYSTEMD
	return sd_notify(0, msg);
#else
	return send_dgram(msg);
#endif
}

/* "<prefix>STATUS=<status>", or just prefix without a status. */
static void notify_with_status(struct fv_sd *sd, const char *prefix, const char *status)
{
	char msg[sizeof(sd->status) + 64];

	if (status) {
		snprintf(msg, sizeof(msg), "%sSTATUS=%s", prefix, status);
		fv_strlcpy(sd->status, status, sizeof(sd->status));
	} else {
		snprintf(msg, sizeof(msg), "%s", prefix);
	}
	fv_sd_notify(sd, msg);
}

void fv_sd_ready(struct fv_sd *sd, const char *status)
{
	notify_with_status(sd, "READY=1\n", status);
	sd->ready = true;
	sd->status_next_ms = fv_now_mono_ms() + STATUS_MIN_INTERVAL_MS;
}

void fv_sd_reloading(struct fv_sd *sd)
{
	if (!sd->ready)
		return;
	notify_with_status(sd, "RELOADING=1\n", "reloading the configuration");
	sd->reloading = true;
}

void fv_sd_reloaded(struct fv_sd *sd, const char *status)
{
	if (!sd->reloading)
		return;
	sd->reloading = false;
	fv_sd_ready(sd, status);
}

void fv_sd_stopping(struct fv_sd *sd, const char *status)
{
	notify_with_status(sd, "STOPPING=1\n", status);
}

void fv_sd_status(struct fv_sd *sd, int64_t now_ms, const char *fmt, ...)
{
	char text[sizeof(sd->status)];
	va_list ap;

	if (!sd->active || now_ms < sd->status_next_ms)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (strcmp(text, sd->status) == 0)
		return;
	notify_with_status(sd, "", text);
	sd->status_next_ms = now_ms + STATUS_MIN_INTERVAL_MS;
}

int fv_sd_watchdog(struct fv_sd *sd, int64_t now_ms)
{
	if (!sd->active || sd->wd_period_ms <= 0)
		return INT32_MAX;
	if (now_ms >= sd->wd_next_ms) {
		if (fv_sd_notify(sd, "WATCHDOG=1") > 0)
			sd->wd_sent++;
		sd->wd_next_ms = now_ms + sd->wd_period_ms;
	}
	return (int)FV_MIN(sd->wd_next_ms - now_ms, (int64_t)INT32_MAX);
}
