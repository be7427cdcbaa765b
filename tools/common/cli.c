/* Shared command-line and publishing helpers of the fedvigil tools. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/util.h"

static const char *prog = "fedvigil";

void fv_cli_init(const char *name)
{
	prog = name;
}

int fv_cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fv_log_usagev(prog, fmt, ap);
	va_end(ap);
	return 2;
}

int fv_cli_parse_int(const char *flag, const char *s, long long min, long long max,
		     long long *ret)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end) {
		fv_cli_usage_error("%s: '%s' is not an integer", flag, s);
		return -EINVAL;
	}
	if (v < min || v > max) {
		fv_cli_usage_error("%s: %lld is out of range (%lld..%lld)", flag, v, min, max);
		return -ERANGE;
	}
	*ret = v;
	return 0;
}

int fv_cli_parse_num(const char *flag, const char *s, double min, double max, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v)) {
		fv_cli_usage_error("%s: '%s' is not a number", flag, s);
		return -EINVAL;
	}
	if (v < min || v > max) {
		fv_cli_usage_error("%s: %g is out of range (%g..%g)", flag, v, min, max);
		return -ERANGE;
	}
	*ret = v;
	return 0;
}

bool fv_cli_broker_valid(const char *s)
{
	static const char *const schemes[] = { "tcp://", "mqtt://", "ssl://", "mqtts://",
					       "ws://", "wss://" };

	for (size_t i = 0; i < FV_ARRAY_SIZE(schemes); i++)
		if (strncmp(s, schemes[i], strlen(schemes[i])) == 0 &&
		    s[strlen(schemes[i])] != '\0' && s[strlen(schemes[i])] != ':')
			return true;
	return false;
}

bool fv_cli_prefix_valid(const char *s)
{
	return *s && strlen(s) < 200 && !strpbrk(s, "+#") && s[strlen(s) - 1] != '/';
}

int fv_cli_opt_broker(const char *s, const char **ret)
{
	if (!fv_cli_broker_valid(s))
		return fv_cli_usage_error("--broker: '%s' is not a broker URI (like "
					  "tcp://127.0.0.1:1883; also mqtt, ssl, mqtts, ws, wss)",
					  s);
	*ret = s;
	return 0;
}

int fv_cli_opt_prefix(const char *s, const char **ret)
{
	if (!fv_cli_prefix_valid(s))
		return fv_cli_usage_error("--prefix: '%s' is not a valid topic prefix "
					  "(non-empty, no '+' or '#', no trailing '/')", s);
	*ret = s;
	return 0;
}

void fv_cli_mqtt_init(struct fv_cli_mqtt *m)
{
	memset(m, 0, sizeof(*m));
	m->tls.verify = true;
}

static int set_path(char *dst, size_t size, const char *flag, const char *arg)
{
	if (!arg[0] || fv_strlcpy(dst, arg, size) < 0)
		return fv_cli_usage_error("%s: '%s' is empty or too long (max %zu characters)", flag,
					  arg, size - 1);
	return 1;
}

int fv_cli_mqtt_option(struct fv_cli_mqtt *m, int opt, const char *arg)
{
	switch (opt) {
	case FV_CLI_OPT_USERNAME:
		m->username = arg;
		return 1;
	case FV_CLI_OPT_PASSWORD_FILE:
		m->password_file = arg;
		return 1;
	case FV_CLI_OPT_CAFILE:
		return set_path(m->tls.ca_file, sizeof(m->tls.ca_file), "--cafile", arg);
	case FV_CLI_OPT_CERT:
		return set_path(m->tls.cert_file, sizeof(m->tls.cert_file), "--cert", arg);
	case FV_CLI_OPT_KEY:
		return set_path(m->tls.key_file, sizeof(m->tls.key_file), "--key", arg);
	case FV_CLI_OPT_INSECURE:
		m->tls.verify = false;
		return 1;
	default:
		return 0;
	}
}

int fv_cli_mqtt_apply(struct fv_cli_mqtt *m, const char *broker, struct fv_mqtt_opts *o)
{
	char err[600];

	if (fv_mqtt_tls_check(&m->tls, broker, "--broker", err, sizeof(err)) < 0) {
		/* Name our flags rather than the daemons' keys. */
		fprintf(stderr, "%s: %s\n", prog, err);
		return 2;
	}
	if (m->password_file &&
	    fv_secret_read_line(m->password_file, "--password-file", m->password,
				sizeof(m->password), err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 2;
	}
	o->username = m->username;
	o->password = m->password[0] ? m->password : NULL;
	fv_mqtt_tls_apply(&m->tls, o);
	return 0;
}

void fv_cli_drain(struct fv_mqtt *c)
{
	struct fv_mqtt_msg msg;
	enum fv_mqtt_event ev;

	while ((ev = fv_mqtt_next(c, &msg)) != FV_MQTT_EV_NONE)
		if (ev == FV_MQTT_EV_MESSAGE)
			fv_mqtt_msg_clear(&msg);
}

void fv_cli_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

bool fv_cli_wait_connected(struct fv_mqtt *c, double timeout_s, volatile sig_atomic_t *stop)
{
	int64_t deadline = fv_now_mono_ms() + (int64_t)(timeout_s * 1000);

	while (!*stop && fv_now_mono_ms() < deadline) {
		struct pollfd pfd = { .fd = fv_mqtt_fd(c), .events = POLLIN };

		fv_cli_drain(c);
		if (fv_mqtt_connected(c))
			return true;
		poll(&pfd, pfd.fd >= 0 ? 1 : 0, 50);
	}
	return fv_mqtt_connected(c);
}

int fv_cli_publish(struct fv_mqtt *c, const char *broker, const char *topic, const char *payload,
		   int qos, volatile sig_atomic_t *stop)
{
	return fv_cli_publish_bin(c, broker, topic, payload, strlen(payload), qos, stop);
}

int fv_cli_publish_bin(struct fv_mqtt *c, const char *broker, const char *topic, const void *payload,
		       size_t len, int qos, volatile sig_atomic_t *stop)
{
	static struct fv_ratelimit rl = FV_RATELIMIT_INIT(10000, 1);
	int refused = 0;

	for (;;) {
		int r;

		if (*stop)
			return -EINTR;
		fv_cli_drain(c);
		if (fv_mqtt_pending(c) > FV_CLI_PENDING_MAX) {
			fv_cli_sleep_ms(2);
			continue;
		}
		r = fv_mqtt_publish(c, topic, payload, len, qos, false);
		if (r == 0)
			return 0;
		if (r == -ENOBUFS) { /* the client's buffer is full: let it drain */
			fv_cli_sleep_ms(5);
			continue;
		}
		if (r == -ENOTCONN) {
			if (fv_ratelimit_ok(&rl, NULL))
				fv_log(FV_LOG_WARNING, "broker %s unreachable and offline buffer full; "
				       "waiting", broker);
			fv_cli_sleep_ms(100);
			continue;
		}
		if (++refused > 100) {
			fv_log(FV_LOG_ERR, "publish to %s failed: %s", topic, fv_strerror(r));
			return r;
		}
		fv_cli_sleep_ms(20);
	}
}

void fv_cli_sleep_until(const struct timespec *t0, int64_t ns, volatile sig_atomic_t *stop)
{
	struct timespec ts = *t0;
	int64_t total = (int64_t)ts.tv_nsec + ns;

	ts.tv_sec += (time_t)(total / 1000000000LL);
	ts.tv_nsec = (long)(total % 1000000000LL);
	while (!*stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}
