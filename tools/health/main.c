/* fedvigil-health: is a fedvigil program healthy? For container
 * HEALTHCHECKs and monitoring scripts.
 *
 * It scrapes the program's Prometheus page (metrics.listen of the daemons,
 * --metrics-listen of fedvigil-sim). That page is served by the program's
 * main loop itself (no thread, lib/svc/httpd.c), so an answer in time
 * means the loop is going round; the page's fedvigil_mqtt_connected gauge
 * says whether the broker connection is up. Healthy = both. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "fedvigil/svc.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#define PROG "fedvigil-health"
/* Largest page read; the daemons' pages are a few KiB. */
#define PAGE_MAX (1 << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [-t SECONDS] [[HOST:]PORT]\n"
		"Check that a fedvigil program is healthy: its Prometheus page at\n"
		"http://HOST:PORT/metrics (HOST default 127.0.0.1; the daemons'\n"
		"metrics.listen, fedvigil-sim's --metrics-listen) answers 200 within the\n"
		"timeout, which means its main loop is running, and reports\n"
		"fedvigil_mqtt_connected 1. Without an address: $FEDVIGIL_METRICS_LISTEN,\n"
		"the daemons' metrics.listen from the environment (the container images\n"
		"set it).\n"
		"\n"
		"  -t, --timeout S   give up after S seconds (default 5)\n"
		"  -q, --quiet       print nothing when healthy\n"
		"  -h, --help        show this help\n"
		"  -V, --version     show the version\n"
		"Exit: 0 healthy, 1 not healthy (the reason on stdout), 2 usage.\n");
}

/* Connect to host:port within the deadline (monotonic ms). fd or -errno. */
static int dial(const char *host, uint16_t port, int64_t deadline)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char ports[8];
	int fd, r, err = 0;
	socklen_t len = sizeof(err);

	snprintf(ports, sizeof(ports), "%u", port);
	if (getaddrinfo(host, ports, &hints, &ai) != 0 || !ai)
		return -EINVAL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		freeaddrinfo(ai);
		return r;
	}
	r = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (r < 0 && errno != EINPROGRESS) {
		r = -errno;
		close(fd);
		return r;
	}
	if (r < 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int64_t left = deadline - fv_now_mono_ms();

		if (left <= 0 || poll(&p, 1, (int)left) != 1) {
			close(fd);
			return -ETIMEDOUT;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			close(fd);
			return err ? -err : -EIO;
		}
	}
	return fd;
}

/* GET /metrics over fd; the whole response into buf (NUL-terminated).
 * Bytes read, or -errno (-ETIMEDOUT, -E2BIG). */
static ssize_t fetch(int fd, const char *host, char *buf, size_t cap, int64_t deadline)
{
	char req[160];
	size_t used = 0, sent = 0;
	int n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", host);

	while (sent < (size_t)n) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int64_t left = deadline - fv_now_mono_ms();
		ssize_t w;

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return -ETIMEDOUT;
		w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (w > 0)
			sent += (size_t)w;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - fv_now_mono_ms();
		ssize_t got;

		if (used + 1 >= cap)
			return -E2BIG;
		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return -ETIMEDOUT;
		got = recv(fd, buf + used, cap - 1 - used, 0);
		if (got == 0)
			break; /* the responder closes after one response */
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		used += (size_t)got;
	}
	buf[used] = '\0';
	return (ssize_t)used;
}

/* The value of the first unlabelled sample `name` in a text exposition,
 * or -1 when it is missing. */
static double sample(const char *body, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, name, len) == 0 && p[len] == ' ')
			return strtod(p + len + 1, NULL);
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	double timeout_s = 5;
	bool quiet = false;
	char host[64];
	uint16_t port;
	int64_t deadline;
	char *page;
	const char *body, *addr;
	ssize_t len;
	int c, fd, status = 0;
	double connected;

	fv_cli_init(PROG);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":t:qhV", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (fv_cli_parse_num("--timeout", optarg, 0.1, 3600, &timeout_s) < 0)
				return 2;
			break;
		case 'q':
			quiet = true;
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
			return fv_cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc - 1)
		return fv_cli_usage_error("expected one address, [HOST:]PORT (e.g. 9109)");
	addr = optind < argc ? argv[optind] : getenv("FEDVIGIL_METRICS_LISTEN");
	if (!addr || !*addr)
		return fv_cli_usage_error("no address: give [HOST:]PORT or set "
					  "FEDVIGIL_METRICS_LISTEN");
	if (fv_httpd_parse_listen(addr, host, sizeof(host), &port) < 0 || port == 0)
		return fv_cli_usage_error("'%s' is not [HOST:]PORT with a numeric host and a "
					  "port 1..65535", addr);

	deadline = fv_now_mono_ms() + (int64_t)(timeout_s * 1000);
	fd = dial(host, port, deadline);
	if (fd < 0) {
		printf("unhealthy: cannot connect to %s:%u: %s\n", host, port, fv_strerror(fd));
		return 1;
	}
	page = malloc(PAGE_MAX);
	if (!page) {
		close(fd);
		printf("unhealthy: out of memory\n");
		return 1;
	}
	len = fetch(fd, host, page, PAGE_MAX, deadline);
	close(fd);
	if (len < 0) {
		printf("unhealthy: http://%s:%u/metrics: %s\n", host, port,
		       len == -ETIMEDOUT ? "no answer in time (main loop stuck?)"
					 : fv_strerror((int)len));
		free(page);
		return 1;
	}
	if (sscanf(page, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
		printf("unhealthy: http://%s:%u/metrics answered %.40s\n", host, port,
		       status ? strtok(page, "\r\n") : "something that is not HTTP");
		free(page);
		return 1;
	}
	body = strstr(page, "\r\n\r\n");
	connected = body ? sample(body + 4, "fedvigil_mqtt_connected") : -1;
	if (connected < 0) {
		printf("unhealthy: http://%s:%u/metrics has no fedvigil_mqtt_connected\n", host,
		       port);
		free(page);
		return 1;
	}
	if (connected != 1) {
		printf("unhealthy: not connected to the MQTT broker "
		       "(fedvigil_mqtt_connected %g)\n",
		       connected);
		free(page);
		return 1;
	}
	if (!quiet)
		printf("healthy: main loop answering on %s:%u, MQTT connected\n", host, port);
	free(page);
	return 0;
}
