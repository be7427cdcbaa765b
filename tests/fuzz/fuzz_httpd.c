/* Fuzz target for the metrics page's HTTP responder (lib/svc/httpd.c), the
 * one parser of network bytes outside MQTT: the input is what a client
 * sends on one connection. The responder listens once on a loopback port
 * picked by the kernel; per input the target connects, sends the bytes
 * (the responder reads at most FV_HTTPD_REQ_MAX - 1 of a request head),
 * shuts its writing side, and runs the responder until it closes the
 * connection. What must hold: the responder never crashes or over-reads
 * (ASan), every answer starts with an HTTP/1.1 status line of a known
 * code, and a request that starts with a complete GET /metrics head is
 * answered 200 with the page.
 *
 * Linked with replay_main.c it replays the corpus (ctest). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fedvigil/svc.h"
#include "fedvigil/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PAGE_MARK "fuzz_page_marker 1"

static struct fv_httpd *srv;

static void render(struct fv_prom *p, void *userdata)
{
	(void)userdata;
	fv_prom_metric(p, "fuzz_page_marker", "gauge", "present on every page", 1.0);
}

/* One poll round of the responder, 0 ms timeout. */
static void serve(void)
{
	struct pollfd pfd[FV_HTTPD_POLLFDS];
	int n = fv_httpd_pollfds(srv, pfd, FV_HTTPD_POLLFDS);

	if (poll(pfd, (nfds_t)n, 1) > 0)
		fv_httpd_handle(srv, pfd, n, fv_now_mono_ms());
}

/* Connect to the responder. libFuzzer's timeout timer (SIGALRM every
 * timeout/2 + 1 s, without SA_RESTART) interrupts a blocking connect() on
 * a loaded machine, where the loopback handshake waits for softirq time;
 * so the connect is non-blocking and waited for with poll(), which is
 * retried on EINTR. */
static int dial(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(fv_httpd_port(srv)) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err = 0;
	socklen_t el = sizeof(err);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (fd < 0) {
		fprintf(stderr, "fuzz_httpd: socket: %s\n", strerror(errno));
		abort();
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS && errno != EINTR)
			err = errno;
		while (!err) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int r = poll(&p, 1, 100);

			if (r < 0 && errno != EINTR)
				err = errno;
			if (r > 0) {
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
					err = errno;
				break;
			}
			serve(); /* a full accept queue drains here */
		}
	}
	if (err) {
		fprintf(stderr, "fuzz_httpd: loopback connect: %s\n", strerror(err));
		abort(); /* the loopback itself failed: nothing to fuzz */
	}
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char reply[1 << 16];
	size_t got = 0, sent = 0;
	char err[256];
	int fd;

	if (!srv) {
		srv = fv_httpd_new("127.0.0.1:0", render, NULL, err, sizeof(err));
		if (!srv) {
			fprintf(stderr, "fuzz_httpd: %s\n", err);
			abort();
		}
	}
	if (size > 3 * FV_HTTPD_REQ_MAX)
		size = 3 * FV_HTTPD_REQ_MAX; /* the responder stops reading at its limit */
	fd = dial();
	/* Accept, then feed the bytes while serving (the socket buffers hold
	 * them all: they are small). */
	for (int tries = 0; sent < size && tries < 2000; tries++) {
		ssize_t w = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			serve();
			continue;
		}
		if (w < 0)
			break; /* the responder answered and closed early */
		sent += (size_t)w;
		serve();
	}
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < 2000; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		serve();
		if (poll(&p, 1, 0) <= 0)
			continue;
		r = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			break; /* closed by the responder */
		got += (size_t)r;
		if (got == sizeof(reply) - 1)
			break;
	}
	reply[got] = '\0';
	close(fd);
	for (int i = 0; i < 3; i++)
		serve(); /* let it notice the close */
	if (got) {
		int code = 0;

		if (sscanf(reply, "HTTP/1.1 %d ", &code) != 1 ||
		    (code != 200 && code != 400 && code != 404 && code != 405 && code != 431)) {
			fprintf(stderr, "fuzz_httpd: bad answer: %.80s\n", reply);
			abort();
		}
		/* A complete GET /metrics head gets the page. */
		static const char get[] = "GET /metrics HTTP/1.1\r\n\r\n";

		if (size >= sizeof(get) - 1 && memcmp(data, get, sizeof(get) - 1) == 0 &&
		    !memchr(data, '\0', size < FV_HTTPD_REQ_MAX - 1 ? size : FV_HTTPD_REQ_MAX - 1) &&
		    (code != 200 || !strstr(reply, PAGE_MARK))) {
			fprintf(stderr, "fuzz_httpd: GET /metrics answered %d\n", code);
			abort();
		}
	}
	return 0;
}
