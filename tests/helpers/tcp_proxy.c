/* fv-tcp-proxy: a small TCP proxy for the network fault tests
 * (tests/integration/test_netfaults.sh, docs/reliability.md).
 *
 *   fv-tcp-proxy [options] LISTEN_PORT TARGET_HOST TARGET_PORT
 *     --delay-ms N        hold every chunk N ms before passing it on, both
 *                         directions (latency; netem is not available)
 *     --cut-publish B     cut the connection in the middle of the next MQTT
 *                         PUBLISH packet of at least B bytes: pass on half
 *                         of it, then close both sides
 *     --cut-dir up|down   which direction --cut-publish watches: up =
 *                         client to broker (default), down = broker to client
 *     --cut-count N       how many such cuts, one per connection (default 1)
 *
 * Listens on 127.0.0.1. One line per event on stdout (accepted, closed,
 * cut: with the topic of the cut packet), flushed at once. SIGTERM/SIGINT
 * end it. The MQTT parsing is only what finding packet boundaries needs
 * (fixed header and remaining length); the proxy never alters a byte it
 * passes on. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 64
#define CHUNK 16384
#define MAX_QUEUED ((size_t)8 << 20) /* per direction: stop reading beyond */
#define TOPIC_KEEP 200

/* A chunk read from one side, due for the other at `due_ms`. */
struct chunk {
	struct chunk *next;
	int64_t due_ms;
	size_t len, off; /* bytes, bytes already written */
	bool last;       /* close the connection once this is written */
	unsigned char data[];
};

/* Where an MQTT byte stream is: a fixed header, or inside a packet. */
struct mqtt_pos {
	int state;        /* 0 type byte, 1 length bytes, 2 body */
	unsigned type;    /* packet type of the current packet */
	uint64_t len;     /* remaining length being read / of the packet */
	uint64_t mult;    /* varint multiplier */
	uint64_t left;    /* body bytes still to come */
	uint64_t total;   /* whole packet, header included */
	uint64_t hdr;     /* header bytes of the current packet */
	bool cut_this;    /* this packet is the one to cut */
	uint64_t cut_at;  /* body bytes to pass before the cut */
	size_t ntopic;    /* body bytes kept for the log (topic) */
	unsigned char body[TOPIC_KEEP];
};

/* One direction of a connection: read from `from`, queued for `to`. */
struct pipe_dir {
	int from, to;
	struct chunk *head, *tail;
	size_t queued;
	bool eof; /* `from` closed: shut `to` down for writing when drained */
	uint64_t bytes;
	struct mqtt_pos mp;
};

struct conn {
	bool used;
	unsigned id;
	struct pipe_dir d[2]; /* 0 up (client to target), 1 down */
	bool closing;         /* a cut: close after the last chunk */
};

static volatile sig_atomic_t stop;
static struct conn conns[MAX_CONN];
static long delay_ms;
static long cut_min = -1;
static int cut_dir;
static long cuts_left = 1;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	printf("proxy: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void conn_close(struct conn *c, const char *why)
{
	for (int i = 0; i < 2; i++) {
		struct chunk *k = c->d[i].head;

		while (k) {
			struct chunk *n = k->next;

			free(k);
			k = n;
		}
	}
	close(c->d[0].from);
	close(c->d[1].from);
	say("conn %u closed (%s): %llu bytes up, %llu down", c->id, why,
	    (unsigned long long)c->d[0].bytes, (unsigned long long)c->d[1].bytes);
	memset(c, 0, sizeof(*c));
}

/* The topic of the PUBLISH whose body starts are in mp->body, for the log. */
static void topic_of(const struct mqtt_pos *mp, char *out, size_t outlen)
{
	size_t tl;

	snprintf(out, outlen, "?");
	if (mp->ntopic < 2)
		return;
	tl = (size_t)mp->body[0] << 8 | mp->body[1];
	if (tl > mp->ntopic - 2)
		tl = mp->ntopic - 2;
	if (tl >= outlen)
		tl = outlen - 1;
	memcpy(out, mp->body + 2, tl);
	out[tl] = '\0';
}

/* Walk `len` bytes of the stream; returns how many of them may pass before
 * a cut (len when no cut falls inside them). */
static size_t mqtt_scan(struct conn *c, struct mqtt_pos *mp, const unsigned char *p, size_t len,
			bool watch)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char b = p[i];

		switch (mp->state) {
		case 0:
			mp->type = b >> 4;
			mp->len = 0;
			mp->mult = 1;
			mp->hdr = 1;
			mp->state = 1;
			break;
		case 1:
			mp->hdr++;
			mp->len += (uint64_t)(b & 0x7f) * mp->mult;
			mp->mult *= 128;
			if (b & 0x80)
				break;
			mp->left = mp->len;
			mp->total = mp->hdr + mp->len;
			mp->ntopic = 0;
			mp->cut_this = watch && mp->type == 3 && cut_min >= 0 && cuts_left > 0 &&
				       mp->total >= (uint64_t)cut_min;
			mp->cut_at = mp->len / 2;
			mp->state = mp->len ? 2 : 0;
			break;
		default:
			if (mp->ntopic < TOPIC_KEEP)
				mp->body[mp->ntopic++] = b;
			if (mp->cut_this && mp->len - mp->left == mp->cut_at) {
				char topic[TOPIC_KEEP];

				topic_of(mp, topic, sizeof(topic));
				cuts_left--;
				say("conn %u cut %s after %llu of %llu bytes of a PUBLISH to %s",
				    c->id, cut_dir == 0 ? "up" : "down",
				    (unsigned long long)(mp->hdr + mp->cut_at),
				    (unsigned long long)mp->total, topic);
				return i;
			}
			if (--mp->left == 0)
				mp->state = 0;
		}
	}
	return len;
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void do_read(struct conn *c, int dir)
{
	struct pipe_dir *d = &c->d[dir];
	unsigned char buf[CHUNK];
	ssize_t n = read(d->from, buf, sizeof(buf));
	size_t pass;
	struct chunk *k;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		d->eof = true;
		return;
	}
	pass = mqtt_scan(c, &d->mp, buf, (size_t)n, dir == cut_dir);
	k = malloc(sizeof(*k) + pass + 1);
	if (!k) {
		conn_close(c, "out of memory");
		return;
	}
	k->next = NULL;
	k->due_ms = now_ms() + delay_ms;
	k->len = pass;
	k->off = 0;
	k->last = pass < (size_t)n;
	memcpy(k->data, buf, pass);
	if (d->tail)
		d->tail->next = k;
	else
		d->head = k;
	d->tail = k;
	d->queued += pass;
	if (k->last)
		c->closing = true;
}

/* Write what is due; returns false when the connection was closed. */
static bool do_write(struct conn *c, int dir, int64_t now)
{
	struct pipe_dir *d = &c->d[dir];

	while (d->head && d->head->due_ms <= now) {
		struct chunk *k = d->head;
		ssize_t n = k->len > k->off ? write(d->to, k->data + k->off, k->len - k->off) : 0;

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return true;
			conn_close(c, "write failed");
			return false;
		}
		k->off += (size_t)n;
		d->bytes += (uint64_t)n;
		if (k->off < k->len)
			return true;
		d->head = k->next;
		if (!d->head)
			d->tail = NULL;
		d->queued -= k->len;
		if (k->last) {
			free(k);
			conn_close(c, "cut");
			return false;
		}
		free(k);
	}
	if (!d->head && d->eof) {
		/* Both sides gone, or one gone and the other drained: done. */
		conn_close(c, dir == 0 ? "client closed" : "target closed");
		return false;
	}
	return true;
}

static int connect_target(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: fv-tcp-proxy [--delay-ms N] [--cut-publish BYTES] [--cut-dir up|down]\n"
		   "                    [--cut-count N] LISTEN_PORT TARGET_HOST TARGET_PORT\n");
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct pollfd pfd[1 + 2 * MAX_CONN];
	int map[1 + 2 * MAX_CONN][2];
	unsigned next_id = 1;
	int lfd, one = 1, i;
	char *end;

	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		if (strcmp(argv[i], "--delay-ms") == 0)
			delay_ms = strtol(argv[i + 1], &end, 10);
		else if (strcmp(argv[i], "--cut-publish") == 0)
			cut_min = strtol(argv[i + 1], &end, 10);
		else if (strcmp(argv[i], "--cut-count") == 0)
			cuts_left = strtol(argv[i + 1], &end, 10);
		else if (strcmp(argv[i], "--cut-dir") == 0) {
			end = argv[i + 1] + strlen(argv[i + 1]);
			if (strcmp(argv[i + 1], "up") == 0)
				cut_dir = 0;
			else if (strcmp(argv[i + 1], "down") == 0)
				cut_dir = 1;
			else
				end = argv[i + 1];
		} else {
			usage(stderr);
			return 2;
		}
		if (*end || end == argv[i + 1] || delay_ms < 0 || cuts_left < 0) {
			fprintf(stderr, "fv-tcp-proxy: %s: bad value '%s'\n", argv[i], argv[i + 1]);
			return 2;
		}
	}
	if (argc - i != 3) {
		usage(stderr);
		return 2;
	}
	long lport = strtol(argv[i], &end, 10);

	if (*end || lport < 1 || lport > 65535) {
		fprintf(stderr, "fv-tcp-proxy: bad listen port '%s'\n", argv[i]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons((uint16_t)lport);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0) {
		fprintf(stderr, "fv-tcp-proxy: cannot listen on 127.0.0.1:%ld: %s\n", lport,
			strerror(errno));
		return 1;
	}
	say("listening on 127.0.0.1:%ld for %s:%s, delay %ld ms, cut %ld", lport, argv[i + 1],
	    argv[i + 2], delay_ms, cut_min);

	while (!stop) {
		int64_t now = now_ms(), wake = -1;
		int n = 0, r;

		pfd[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		map[n][0] = -1;
		n++;
		for (int c = 0; c < MAX_CONN; c++) {
			if (!conns[c].used)
				continue;
			for (int dir = 0; dir < 2; dir++) {
				struct pipe_dir *d = &conns[c].d[dir];
				short ev = 0;

				if (!d->eof && !conns[c].closing && d->queued < MAX_QUEUED)
					ev |= POLLIN;
				if (d->head && (wake < 0 || d->head->due_ms < wake))
					wake = d->head->due_ms;
				pfd[n] = (struct pollfd){ .fd = d->from, .events = ev };
				map[n][0] = c;
				map[n][1] = dir;
				n++;
			}
		}
		/* Writes are attempted every pass; a socket that cannot take
		 * more makes us poll again 5 ms later. */
		int timeout = wake < 0 ? 1000 : (int)(wake > now ? wake - now : 5);

		r = poll(pfd, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && (pfd[0].revents & POLLIN)) {
			int cfd = accept(lfd, NULL, NULL), tfd, slot = -1;

			for (int c = 0; c < MAX_CONN && cfd >= 0; c++)
				if (!conns[c].used) {
					slot = c;
					break;
				}
			if (cfd >= 0 && slot < 0) {
				close(cfd);
			} else if (cfd >= 0) {
				tfd = connect_target(argv[i + 1], argv[i + 2]);
				if (tfd < 0 || nonblock(cfd) < 0 || nonblock(tfd) < 0) {
					say("target %s:%s refused: closing the client", argv[i + 1],
					    argv[i + 2]);
					close(cfd);
					if (tfd >= 0)
						close(tfd);
				} else {
					struct conn *c = &conns[slot];

					memset(c, 0, sizeof(*c));
					c->used = true;
					c->id = next_id++;
					c->d[0].from = cfd;
					c->d[0].to = tfd;
					c->d[1].from = tfd;
					c->d[1].to = cfd;
					say("conn %u accepted", c->id);
				}
			}
		}
		for (int k = 1; k < n && r > 0; k++) {
			int c = map[k][0], dir = map[k][1];

			if (conns[c].used && (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				do_read(&conns[c], dir);
		}
		now = now_ms();
		for (int c = 0; c < MAX_CONN; c++)
			for (int dir = 0; dir < 2 && conns[c].used; dir++)
				if (!do_write(&conns[c], dir, now))
					break;
	}
	for (int c = 0; c < MAX_CONN; c++)
		if (conns[c].used)
			conn_close(&conns[c], "proxy stopped");
	close(lfd);
	return 0;
}
