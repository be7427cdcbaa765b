/* A tiny HTTP/1.x responder for Prometheus scrapes, run on the daemon's
 * main loop: non-blocking sockets, at most FV_HTTPD_MAX_CLIENTS at once,
 * request heads of at most FV_HTTPD_REQ_MAX bytes, FV_HTTPD_TIMEOUT_MS per
 * connection, one request per connection (Connection: close). It answers
 * GET/HEAD /metrics and nothing else; it never blocks and never reads a
 * request body. Every byte here comes from a peer: parse it as such. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fedvigil/svc.h"
#include "fedvigil/util.h"

/* A scrape page is a few KiB; this bounds a runaway renderer. */
#define PAGE_MAX (1u << 20)

struct client {
	int fd;                       /* -1 = free slot */
	int64_t deadline;             /* monotonic ms: dropped after this */
	char req[FV_HTTPD_REQ_MAX];   /* request head read so far */
	size_t rlen;
	char *out;                    /* response being written (owned) */
	size_t olen, opos;
};

struct fv_httpd {
	int lfd;                      /* listening socket */
	uint16_t port;                /* bound port */
	char addr[80];                /* "HOST:PORT" bound */
	fv_httpd_render_fn render;
	void *userdata;
	struct client c[FV_HTTPD_MAX_CLIENTS];
	struct fv_httpd_stats st;
};

int fv_httpd_parse_listen(const char *s, char *ret_host, size_t hostlen, uint16_t *ret_port)
{
	char host[64] = "127.0.0.1";
	const char *ps = s;
	unsigned char tmp[sizeof(struct in6_addr)];
	unsigned long port;
	char *end;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		if (inet_pton(AF_INET6, host, tmp) != 1)
			return -EINVAL;
		ps = rb + 2;
	} else if (strchr(s, ':')) {
		const char *colon = strrchr(s, ':');

		if ((size_t)(colon - s) >= sizeof(host) || colon == s)
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		if (inet_pton(AF_INET, host, tmp) != 1)
			return -EINVAL;
		ps = colon + 1;
	}
	if (*ps < '0' || *ps > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(ps, &end, 10);
	if (errno || *end || port > 65535)
		return -EINVAL;
	if (fv_strlcpy(ret_host, host, hostlen) < 0)
		return -EINVAL;
	*ret_port = (uint16_t)port;
	return 0;
}

int fv_httpd_check_listen(const char *key, const char *s, char *err, size_t errlen)
{
	char host[64];
	uint16_t port;

	if (fv_httpd_parse_listen(s, host, sizeof(host), &port) == 0)
		return 0;
	snprintf(err, errlen, "%s = '%s': not PORT, IPV4:PORT or [IPV6]:PORT (numeric addresses)",
		 key, s);
	return -EINVAL;
}

struct fv_httpd *fv_httpd_new(const char *addr, fv_httpd_render_fn render, void *userdata,
			      char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char host[64];
	uint16_t port;
	struct fv_httpd *h;
	int one = 1;

	if (fv_httpd_parse_listen(addr, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "'%s' is not PORT, IPV4:PORT or [IPV6]:PORT", addr ? addr : "");
		return NULL;
	}
	memset(&ss, 0, sizeof(ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		inet_pton(AF_INET6, host, &s6->sin6_addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		inet_pton(AF_INET, host, &s4->sin_addr);
		sl = sizeof(*s4);
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int i = 0; i < FV_HTTPD_MAX_CLIENTS; i++)
		h->c[i].fd = -1;
	h->render = render;
	h->userdata = userdata;
	h->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd < 0 || setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(h->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(h->lfd, 16) < 0) {
		snprintf(err, errlen, "cannot listen on %s port %u: %s", host, port, strerror(errno));
		fv_httpd_free(h);
		return NULL;
	}
	sl = sizeof(ss);
	if (getsockname(h->lfd, (struct sockaddr *)&ss, &sl) == 0)
		h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(h->addr, sizeof(h->addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, h->port);
	return h;
}

static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	c->fd = -1;
	c->out = NULL;
	c->rlen = c->olen = c->opos = 0;
}

void fv_httpd_free(struct fv_httpd *h)
{
	if (!h)
		return;
	for (int i = 0; i < FV_HTTPD_MAX_CLIENTS; i++)
		client_close(&h->c[i]);
	if (h->lfd >= 0)
		close(h->lfd);
	free(h);
}

uint16_t fv_httpd_port(const struct fv_httpd *h)
{
	return h->port;
}

const char *fv_httpd_addr(const struct fv_httpd *h)
{
	return h->addr;
}

void fv_httpd_get_stats(const struct fv_httpd *h, struct fv_httpd_stats *ret)
{
	*ret = h->st;
}

int fv_httpd_pollfds(const struct fv_httpd *h, struct pollfd *ret, int max)
{
	int n = 0;

	if (max < 1)
		return 0;
	ret[n++] = (struct pollfd){ .fd = h->lfd, .events = POLLIN };
	for (int i = 0; i < FV_HTTPD_MAX_CLIENTS && n < max; i++)
		if (h->c[i].fd >= 0)
			ret[n++] = (struct pollfd){ .fd = h->c[i].fd,
						    .events = h->c[i].out ? POLLOUT : POLLIN };
	return n;
}

/* Set c's response: status line, headers, and body (NULL for HEAD). */
static void respond(struct fv_httpd *h, struct client *c, int code, const char *reason,
		    const char *ctype, const char *body, size_t blen, bool head)
{
	char hdr[256];
	int hn;

	hn = snprintf(hdr, sizeof(hdr),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
		      "Connection: close\r\n\r\n",
		      code, reason, ctype, blen, code == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (hn < 0 || (size_t)hn >= sizeof(hdr))
		hn = 0;
	c->olen = (size_t)hn + (head ? 0 : blen);
	c->out = malloc(c->olen ? c->olen : 1);
	if (!c->out) {
		client_close(c);
		h->st.dropped++;
		return;
	}
	memcpy(c->out, hdr, (size_t)hn);
	if (!head && blen)
		memcpy(c->out + hn, body, blen);
	c->opos = 0;
	if (code >= 400)
		h->st.bad_requests++;
	h->st.requests++;
}

static void respond_text(struct fv_httpd *h, struct client *c, int code, const char *reason,
			 const char *text, bool head)
{
	respond(h, c, code, reason, "text/plain; charset=utf-8", text, strlen(text), head);
}

/* A complete request head is in c->req (NUL-terminated): answer it. */
static void answer(struct fv_httpd *h, struct client *c)
{
	char method[8], target[256], version[16];
	bool head;

	/* "METHOD SP TARGET SP HTTP/1.x CRLF"; anything else is a 400. */
	if (sscanf(c->req, "%7[A-Z] %255[^ \r\n] %15[^\r\n]", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		respond_text(h, c, 400, "Bad Request", "bad request\n", false);
		return;
	}
	head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		respond_text(h, c, 405, "Method Not Allowed", "only GET and HEAD\n", false);
		return;
	}
	target[strcspn(target, "?")] = '\0';
	if (strcmp(target, "/metrics") != 0) {
		respond_text(h, c, 404, "Not Found", "not found: metrics are at /metrics\n", head);
		return;
	}
	struct fv_prom p;

	fv_prom_init(&p, PAGE_MAX);
	h->render(&p, h->userdata);
	if (p.truncated)
		fv_log(FV_LOG_WARNING, "metrics page truncated at %zu bytes", p.len);
	respond(h, c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", p.buf ? p.buf : "",
		p.len, head);
	fv_prom_free(&p);
}

static void on_readable(struct fv_httpd *h, struct client *c)
{
	for (;;) {
		size_t room = sizeof(c->req) - 1 - c->rlen;
		ssize_t n;

		if (room == 0) {
			respond_text(h, c, 431, "Request Header Fields Too Large",
				     "request head too large\n", false);
			return;
		}
		n = recv(c->fd, c->req + c->rlen, room, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			client_close(c); /* closed before a full request */
			h->st.dropped++;
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* EAGAIN: wait for more */
		}
		c->rlen += (size_t)n;
		c->req[c->rlen] = '\0';
		if (memchr(c->req, '\0', c->rlen)) {
			respond_text(h, c, 400, "Bad Request", "bad request\n", false);
			return;
		}
		if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
			answer(h, c);
			return;
		}
	}
}

static void on_writable(struct fv_httpd *h, struct client *c)
{
	while (c->opos < c->olen) {
		ssize_t n = send(c->fd, c->out + c->opos, c->olen - c->opos, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			client_close(c);
			h->st.dropped++;
			return;
		}
		c->opos += (size_t)n;
	}
	shutdown(c->fd, SHUT_WR);
	client_close(c);
}

static void accept_all(struct fv_httpd *h, int64_t now)
{
	for (;;) {
		int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c = NULL;

		if (fd < 0)
			return; /* EAGAIN, or an error to retry at the next poll */
		for (int i = 0; i < FV_HTTPD_MAX_CLIENTS && !c; i++)
			if (h->c[i].fd < 0)
				c = &h->c[i];
		if (!c) {
			close(fd); /* full: the scraper retries */
			h->st.dropped++;
			continue;
		}
		c->fd = fd;
		c->rlen = 0;
		c->deadline = now + FV_HTTPD_TIMEOUT_MS;
	}
}

void fv_httpd_handle(struct fv_httpd *h, const struct pollfd *pfd, int n, int64_t now_ms)
{
	for (int i = 0; i < n; i++) {
		if (!pfd[i].revents)
			continue;
		if (pfd[i].fd == h->lfd) {
			accept_all(h, now_ms);
			continue;
		}
		for (int j = 0; j < FV_HTTPD_MAX_CLIENTS; j++) {
			struct client *c = &h->c[j];

			if (c->fd != pfd[i].fd)
				continue;
			if (!c->out && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				on_readable(h, c);
			if (c->fd >= 0 && c->out)
				on_writable(h, c);
			break;
		}
	}
	for (int j = 0; j < FV_HTTPD_MAX_CLIENTS; j++)
		if (h->c[j].fd >= 0 && now_ms > h->c[j].deadline) {
			client_close(&h->c[j]);
			h->st.dropped++;
		}
}
