/* Unit tests for lib/svc: the notify protocol over a real datagram socket,
 * the Prometheus text format, and the HTTP responder over real TCP
 * connections on loopback (driven by hand: poll, handle, read). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fedvigil/svc.h"
#include "fedvigil/util.h"

/* ---- notify ---- */

static char sock_path[108];

/* A bound datagram socket at sock_path, NOTIFY_SOCKET pointing at it. */
static int notify_listener(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(sock_path, sizeof(sock_path), "/tmp/fvsvc-%d.sock", (int)getpid());
	unlink(sock_path);
	strcpy(sa.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	return fd;
}

/* Next datagram, or "" when none is waiting. */
static const char *next_msg(int fd)
{
	static char buf[1024];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void test_notify(void **state)
{
	struct fv_sd sd;
	int fd = notify_listener();
	int64_t t;

	(void)state;
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	fv_sd_init(&sd);
	assert_true(sd.active);
	assert_int_equal(sd.wd_period_ms, 0);
	assert_int_equal(fv_sd_watchdog(&sd, fv_now_mono_ms()), INT32_MAX);
	/* A reload before READY=1 is silent. */
	fv_sd_reloading(&sd);
	fv_sd_reloaded(&sd, "x");
	assert_string_equal(next_msg(fd), "");
	fv_sd_ready(&sd, "connected");
	assert_string_equal(next_msg(fd), "READY=1\nSTATUS=connected");
	fv_sd_reloading(&sd);
	assert_string_equal(next_msg(fd), "RELOADING=1\nSTATUS=reloading the configuration");
	fv_sd_reloaded(&sd, "reloaded");
	assert_string_equal(next_msg(fd), "READY=1\nSTATUS=reloaded");
	/* STATUS=: at most one per second, only changes, the latest wins. */
	t = fv_now_mono_ms();
	fv_sd_status(&sd, t, "round %d", 1);
	assert_string_equal(next_msg(fd), ""); /* within a second of READY=1 */
	fv_sd_status(&sd, t + 1001, "round %d", 1);
	assert_string_equal(next_msg(fd), "STATUS=round 1");
	fv_sd_status(&sd, t + 1500, "round %d", 2);
	assert_string_equal(next_msg(fd), "");
	fv_sd_status(&sd, t + 2100, "round %d", 1);
	assert_string_equal(next_msg(fd), ""); /* unchanged */
	fv_sd_status(&sd, t + 2200, "round %d", 3);
	assert_string_equal(next_msg(fd), "STATUS=round 3");
	fv_sd_stopping(&sd, "bye");
	assert_string_equal(next_msg(fd), "STOPPING=1\nSTATUS=bye");
	close(fd);
	unlink(sock_path);
	unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog(void **state)
{
	struct fv_sd sd;
	char pid[32];
	int fd = notify_listener();
	int64_t t;

	(void)state;
	setenv("WATCHDOG_USEC", "200000", 1);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	fv_sd_init(&sd);
	assert_int_equal(sd.wd_period_ms, 100); /* half the period */
	t = fv_now_mono_ms();
	assert_int_equal(fv_sd_watchdog(&sd, t), 100);
	assert_string_equal(next_msg(fd), "WATCHDOG=1");
	/* Not again before the period... */
	assert_int_equal(fv_sd_watchdog(&sd, t + 40), 60);
	assert_string_equal(next_msg(fd), "");
	/* ...and once when it is due, however late the loop comes round. */
	fv_sd_watchdog(&sd, t + 5000);
	assert_string_equal(next_msg(fd), "WATCHDOG=1");
	assert_string_equal(next_msg(fd), "");
	assert_int_equal(sd.wd_sent, 2);
	/* Another process's watchdog is not ours. */
	setenv("WATCHDOG_PID", "1", 1);
	fv_sd_init(&sd);
	assert_int_equal(sd.wd_period_ms, 0);
	/* No socket: nothing is sent, nothing fails. */
	unsetenv("NOTIFY_SOCKET");
	fv_sd_init(&sd);
	assert_false(sd.active);
	assert_int_equal(fv_sd_notify(&sd, "READY=1"), 0);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	close(fd);
	unlink(sock_path);
}

/* ---- Prometheus text ---- */

static void test_prom(void **state)
{
	struct fv_prom p;
	char esc[32];

	(void)state;
	fv_prom_init(&p, 4096);
	fv_prom_metric(&p, "x_total", "counter", "Things.", 3);
	fv_prom_family(&p, "y", "gauge", "Y.");
	fv_prom_sample(&p, "y", "reason=\"a\"", 0.25);
	fv_prom_sample(&p, "y", "", NAN);
	fv_prom_sample(&p, "y", NULL, -INFINITY);
	fv_prom_sample(&p, "y", "", 1e20);
	assert_false(p.truncated);
	assert_string_equal(p.buf, "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"
				   "# HELP y Y.\n# TYPE y gauge\ny{reason=\"a\"} 0.25\ny NaN\ny -Inf\n"
				   "y 1e+20\n");
	assert_int_equal(p.len, strlen(p.buf));
	fv_prom_free(&p);
	assert_string_equal(fv_prom_label_escape("a\"b\\c\nd", esc, sizeof(esc)), "a\\\"b\\\\c\\nd");
	assert_string_equal(fv_prom_label_escape("abcdef", esc, 4), "abc");
	/* The bound holds: appends beyond it are dropped and flagged. */
	fv_prom_init(&p, 100);
	for (int i = 0; i < 50; i++)
		fv_prom_metric(&p, "some_long_metric_name", "gauge", "Help text.", i);
	assert_true(p.truncated);
	assert_true(p.len < 100);
	assert_int_equal(strlen(p.buf), p.len);
	fv_prom_free(&p);
	/* process_* from /proc: plausible values. */
	fv_prom_init(&p, 8192);
	fv_prom_process(&p);
	assert_non_null(strstr(p.buf, "process_resident_memory_bytes "));
	fv_prom_free(&p);
	struct fv_proc_usage u;

	fv_proc_usage(&u);
	assert_true(u.rss_bytes > 100000);
	assert_true(u.open_fds >= 3);
	assert_true(fabs(u.start_time_s - (double)fv_now_wall_ms() / 1000) < 3600);
}

/* ---- HTTP responder ---- */

static void render(struct fv_prom *p, void *userdata)
{
	int *calls = userdata;

	(*calls)++;
	fv_prom_metric(p, "test_scrapes_total", "counter", "Scrapes.", *calls);
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Run the responder's side for a moment. */
static void serve(struct fv_httpd *h, int64_t now, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		struct pollfd pfd[FV_HTTPD_POLLFDS];
		int n = fv_httpd_pollfds(h, pfd, FV_HTTPD_POLLFDS);

		poll(pfd, (nfds_t)n, 20);
		fv_httpd_handle(h, pfd, n, now);
	}
}

/* Send req (len bytes, or strlen when 0) on a new connection, serve, and
 * return the whole response. */
static char *exchange(struct fv_httpd *h, const char *req, size_t len)
{
	static char buf[8192];
	size_t got = 0;
	int fd = connect_to(fv_httpd_port(h));

	if (len == 0)
		len = strlen(req);
	assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	serve(h, fv_now_mono_ms(), 10);
	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	return buf;
}

static void test_httpd(void **state)
{
	char err[256], big[3000];
	int calls = 0;
	struct fv_httpd *h;
	const char *r;
	struct fv_httpd_stats st;

	(void)state;
	assert_null(fv_httpd_new("localhost:80", render, &calls, err, sizeof(err)));
	assert_non_null(strstr(err, "localhost:80"));
	h = fv_httpd_new("127.0.0.1:0", render, &calls, err, sizeof(err));
	assert_non_null(h);
	assert_true(fv_httpd_port(h) > 0);

	r = exchange(h, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0);
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	assert_non_null(strstr(r, "Connection: close\r\n"));
	assert_non_null(strstr(r, "\r\n\r\n# HELP test_scrapes_total Scrapes."));
	assert_non_null(strstr(r, "test_scrapes_total 1\n"));
	/* Query strings are ignored; bare-LF clients are served too. */
	r = exchange(h, "GET /metrics?x=1 HTTP/1.0\n\n", 0);
	assert_non_null(strstr(r, "test_scrapes_total 2\n"));
	r = exchange(h, "HEAD /metrics HTTP/1.1\r\n\r\n", 0);
	assert_non_null(strstr(r, "200 OK"));
	assert_null(strstr(r, "test_scrapes_total"));
	r = exchange(h, "GET / HTTP/1.1\r\n\r\n", 0);
	assert_non_null(strstr(r, "HTTP/1.1 404 "));
	r = exchange(h, "POST /metrics HTTP/1.1\r\n\r\n", 0);
	assert_non_null(strstr(r, "HTTP/1.1 405 "));
	assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
	r = exchange(h, "garbage\r\n\r\n", 0);
	assert_non_null(strstr(r, "HTTP/1.1 400 "));
	r = exchange(h, "GET /metrics\0 HTTP/1.1\r\n\r\n", 26);
	assert_non_null(strstr(r, "HTTP/1.1 400 "));
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	r = exchange(h, big, sizeof(big));
	assert_non_null(strstr(r, "HTTP/1.1 431 "));
	assert_int_equal(calls, 3); /* only the three GET/HEAD /metrics rendered */

	/* Slots: the ninth idle client is turned away; idle ones time out. */
	int idle[FV_HTTPD_MAX_CLIENTS + 1];

	for (int i = 0; i <= FV_HTTPD_MAX_CLIENTS; i++)
		idle[i] = connect_to(fv_httpd_port(h));
	serve(h, fv_now_mono_ms(), 5);
	fv_httpd_get_stats(h, &st);
	uint64_t dropped = st.dropped;
	char c;

	assert_int_equal(recv(idle[FV_HTTPD_MAX_CLIENTS], &c, 1, 0), 0); /* closed by the server */
	serve(h, fv_now_mono_ms() + FV_HTTPD_TIMEOUT_MS + 1, 1);
	fv_httpd_get_stats(h, &st);
	assert_int_equal(st.dropped, dropped + FV_HTTPD_MAX_CLIENTS);
	for (int i = 0; i <= FV_HTTPD_MAX_CLIENTS; i++)
		close(idle[i]);
	r = exchange(h, "GET /metrics HTTP/1.1\r\n\r\n", 0);
	if (!strstr(r, "200 OK"))
		fail_msg("after the idle clients: '%s'", r);
	fv_httpd_get_stats(h, &st);
	assert_true(st.requests >= 9);
	assert_true(st.bad_requests >= 5);
	fv_httpd_free(h);
}

static void test_parse_listen(void **state)
{
	char host[64];
	uint16_t port;

	(void)state;
	assert_int_equal(fv_httpd_parse_listen("9108", host, sizeof(host), &port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 9108);
	assert_int_equal(fv_httpd_parse_listen("0.0.0.0:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 80);
	assert_int_equal(fv_httpd_parse_listen("[::1]:9", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9);
	static const char *const bad[] = { "", "x", "65536", "-1", "1.2.3:4", "host:1",
					   "[::1]9", "[nope]:1", ":80", "80x", "127.0.0.1:" };
	for (size_t i = 0; i < FV_ARRAY_SIZE(bad); i++)
		if (fv_httpd_parse_listen(bad[i], host, sizeof(host), &port) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	/* The config check names the key and the value. */
	char err[200] = "";

	assert_int_equal(fv_httpd_check_listen("metrics.listen", "[::1]:9", err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(fv_httpd_check_listen("metrics.listen", "host:1", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "metrics.listen = 'host:1': not PORT, IPV4:PORT"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_watchdog),
		cmocka_unit_test(test_prom),
		cmocka_unit_test(test_httpd),
		cmocka_unit_test(test_parse_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
