/* fedvigil-swarm: many MQTT 3.1.1 connections on one epoll thread (mux.h).
 *
 * Each connection goes IDLE -> TCP (non-blocking connect) -> CONNACK (our
 * CONNECT sent) -> UP, and back to IDLE with a reconnect time when it
 * drops. Level-triggered epoll; EPOLLOUT is armed only while a send buffer
 * holds bytes. Timers (pacing of new connections, keepalive, reconnects)
 * run at most every TIMER_MS from mux_poll(). */
#include "mux.h"

#include "fedvigil/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SUBS 8
#define TIMER_MS 50
#define KEEP_BUF (16u << 10)           /* buffers above this shrink when drained */
#define READ_CHUNK (64u << 10)         /* read() size */
#define READ_PER_EVENT (1u << 20)      /* fairness: bytes read per event */
#define MQTT_MAX_REMAINING 268435455u  /* 4-byte remaining length */
#define CONNACK_TIMEOUT_MS 10000

enum cstate {
	C_IDLE = 0, /* not connected; (re)connect at retry_at */
	C_TCP,      /* non-blocking connect() in progress */
	C_CONNACK,  /* CONNECT sent, waiting for CONNACK */
	C_UP,       /* connected */
	C_DONE,     /* disconnected on purpose: never again */
};

struct mux_conn {
	struct mux *mx;
	struct mux_conn_opts o;       /* copied; strings borrowed */
	void *user;                   /* mux_add()'s conn_user */
	uint32_t idx;                 /* position in mx->conns */
	int fd;                       /* -1 when not connected */
	enum cstate st;
	uint8_t *rx;                  /* receive buffer */
	size_t rx_len, rx_cap;
	uint8_t *tx;                  /* send buffer: bytes [tx_off, tx_len) pending */
	size_t tx_off, tx_len, tx_cap;
	bool out_armed;               /* EPOLLOUT registered */
	uint16_t next_pid;            /* last packet id used */
	uint32_t unacked;             /* QoS 1 publishes waiting for PUBACK */
	int64_t last_tx;              /* monotonic ms of the last send */
	int64_t since;                /* when the current state began */
	int64_t retry_at;             /* C_IDLE: next attempt */
	int backoff_ms;               /* next reconnect delay */
	bool ping_out;                /* PINGREQ sent, no answer yet */
	int dead;                     /* a send failed (-errno): dropped at the
				       * next safe point, not inside a callback */
	const char *subs[MAX_SUBS];   /* registered filters (borrowed) */
	int sub_qos[MAX_SUBS];
	uint32_t n_subs;
};

struct mux {
	struct mux_opts o;
	struct mux_callbacks cb;
	void *user;
	int ep;                       /* epoll fd */
	struct sockaddr_storage addr; /* broker address */
	socklen_t addr_len;
	struct mux_conn **conns;      /* every connection, n_conns */
	uint32_t n_conns, cap_conns;
	uint32_t n_setup;             /* connections in C_TCP or C_CONNACK */
	uint32_t scan_from;           /* round robin start of the pacing scan */
	int64_t next_timer;           /* timers run again at */
	struct mux_stats st;
};

/* ---- buffers and encoding ---- */

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;
	uint8_t *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

static void shrink(uint8_t **buf, size_t *cap)
{
	if (*cap > KEEP_BUF) {
		free(*buf);
		*buf = NULL;
		*cap = 0;
	}
}

/* MQTT's variable-length "remaining length"; returns the bytes written. */
static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;

	do {
		uint8_t b = v % 128;

		v /= 128;
		p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v);
	return n;
}

static uint8_t *put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *put_str(uint8_t *p, const void *s, size_t n)
{
	p = put_u16(p, n);
	memcpy(p, s, n);
	return p + n;
}

/* ---- connection life ---- */

static void set_events(struct mux_conn *c, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };

	if (c->fd < 0 || c->out_armed == out)
		return;
	if (epoll_ctl(c->mx->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = out;
}

static void drop(struct mux_conn *c, int err)
{
	struct mux *mx = c->mx;
	enum cstate was = c->st;

	if (c->fd >= 0) {
		epoll_ctl(mx->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	if (was == C_TCP || was == C_CONNACK)
		mx->n_setup--;
	c->rx_len = 0;
	c->tx_off = c->tx_len = 0;
	shrink(&c->rx, &c->rx_cap);
	shrink(&c->tx, &c->tx_cap);
	c->out_armed = false;
	c->ping_out = false;
	c->dead = 0;
	mx->st.unacked_lost += c->unacked;
	c->unacked = 0;
	if (was == C_DONE)
		return;
	c->st = C_IDLE;
	c->retry_at = fv_now_mono_ms() + c->backoff_ms;
	c->backoff_ms = FV_MIN(c->backoff_ms * 2, mx->o.retry_max_ms);
	if (was == C_UP) {
		mx->st.lost++;
		mx->st.up--;
		if (mx->cb.on_lost)
			mx->cb.on_lost(c, err, mx->user);
	} else {
		mx->st.failed++;
	}
}

/* Write what the send buffer holds; 0, or -errno (the caller drops). */
static int flush(struct mux_conn *c)
{
	while (c->tx_off < c->tx_len) {
		ssize_t w = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->tx_off += (size_t)w;
		c->last_tx = fv_now_mono_ms();
	}
	if (c->tx_off == c->tx_len) {
		c->tx_off = c->tx_len = 0;
		shrink(&c->tx, &c->tx_cap);
		set_events(c, false);
	} else {
		set_events(c, true);
	}
	return 0;
}

/* Append a packet (header byte, remaining length, then the parts) and try
 * to send. -ENOBUFS over max_tx, -ENOMEM. */
static int queue_packet(struct mux_conn *c, uint8_t type, const uint8_t *var, size_t var_len,
			const void *payload, size_t len)
{
	size_t rem = var_len + len, need;
	uint8_t *p;
	int r;

	if (c->tx_off > 0 && c->tx_off == c->tx_len)
		c->tx_off = c->tx_len = 0;
	need = c->tx_len + 5 + rem;
	if (need - c->tx_off > c->mx->o.max_tx)
		return -ENOBUFS;
	/* Move pending bytes to the front before growing. */
	if (c->tx_off > 0 && need > c->tx_cap) {
		memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
		c->tx_len -= c->tx_off;
		c->tx_off = 0;
		need = c->tx_len + 5 + rem;
	}
	if ((r = reserve(&c->tx, &c->tx_cap, need)) < 0)
		return r;
	p = c->tx + c->tx_len;
	*p++ = type;
	p += put_varint(p, rem);
	if (var_len)
		memcpy(p, var, var_len);
	p += var_len;
	if (len)
		memcpy(p, payload, len);
	p += len;
	c->tx_len = (size_t)(p - c->tx);
	return c->fd >= 0 && c->st != C_TCP ? flush(c) : 0;
}

static int send_subscribe(struct mux_conn *c, const char *filter, int qos)
{
	uint8_t var[2 + 2 + 65535 + 1], *p = var;
	size_t n = strlen(filter);

	if (++c->next_pid == 0)
		c->next_pid = 1;
	p = put_u16(p, c->next_pid);
	p = put_str(p, filter, n);
	*p++ = (uint8_t)qos;
	return queue_packet(c, 0x82, var, (size_t)(p - var), NULL, 0);
}

static int send_connect(struct mux_conn *c)
{
	const struct mux_conn_opts *o = &c->o;
	size_t idn = strlen(o->client_id), wt = o->will_topic ? strlen(o->will_topic) : 0;
	size_t un = o->username ? strlen(o->username) : 0, pw = o->password ? strlen(o->password) : 0;
	size_t len = 10 + 2 + idn + (o->will_topic ? 4 + wt + o->will_len : 0) +
		     (o->username ? 2 + un : 0) + (o->password ? 2 + pw : 0);
	uint8_t *var = malloc(len), *p = var, flags = 0x02; /* clean session */
	int r;

	if (!var)
		return -ENOMEM;
	p = put_str(p, "MQTT", 4);
	*p++ = 4; /* protocol level 3.1.1 */
	if (o->will_topic)
		flags |= (uint8_t)(0x04 | (o->will_qos << 3) | (o->will_retain ? 0x20 : 0));
	if (o->username)
		flags |= 0x80;
	if (o->password)
		flags |= 0x40;
	*p++ = flags;
	p = put_u16(p, (size_t)(o->keepalive_s > 0 ? o->keepalive_s : 60));
	p = put_str(p, o->client_id, idn);
	if (o->will_topic) {
		p = put_str(p, o->will_topic, wt);
		p = put_str(p, o->will_payload, o->will_len);
	}
	if (o->username)
		p = put_str(p, o->username, un);
	if (o->password)
		p = put_str(p, o->password, pw);
	r = queue_packet(c, 0x10, var, (size_t)(p - var), NULL, 0);
	free(var);
	return r;
}

static void start_connect(struct mux_conn *c, int64_t now)
{
	struct mux *mx = c->mx;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	int fd = socket(mx->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	c->since = now;
	if (fd < 0) {
		c->retry_at = now + c->backoff_ms;
		mx->st.failed++;
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->st = C_TCP;
	mx->n_setup++;
	if (epoll_ctl(mx->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		drop(c, -errno);
		return;
	}
	c->out_armed = true;
	if (connect(fd, (const struct sockaddr *)&mx->addr, mx->addr_len) < 0 &&
	    errno != EINPROGRESS)
		drop(c, -errno);
}

/* The TCP connect finished (EPOLLOUT in C_TCP): send CONNECT. */
static void tcp_done(struct mux_conn *c)
{
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		drop(c, -err);
		return;
	}
	c->st = C_CONNACK;
	c->since = fv_now_mono_ms();
	/* Anything queued before the connect (nothing, normally) follows
	 * CONNECT: a clean session starts empty. */
	c->tx_off = c->tx_len = 0;
	if (send_connect(c) < 0 || flush(c) < 0)
		drop(c, -EIO);
}

/* ---- inbound packets ---- */

static int on_publish(struct mux_conn *c, uint8_t hdr, const uint8_t *p, size_t n)
{
	struct mux *mx = c->mx;
	int qos = (hdr >> 1) & 3;
	char small[512], *topic = small;
	uint16_t pid = 0;
	size_t tl, off;

	if (n < 2 || qos > 1)
		return -EPROTO;
	tl = (size_t)p[0] << 8 | p[1];
	off = 2 + tl + (qos ? 2 : 0);
	if (off > n || tl == 0 || memchr(p + 2, '\0', tl))
		return -EPROTO;
	if (qos)
		pid = (uint16_t)(p[2 + tl] << 8 | p[3 + tl]);
	if (tl >= sizeof(small) && !(topic = malloc(tl + 1)))
		return -ENOMEM;
	memcpy(topic, p + 2, tl);
	topic[tl] = '\0';
	mx->st.msgs_in++;
	mx->st.bytes_in += n - off;
	if (mx->cb.on_message)
		mx->cb.on_message(c, topic, p + off, n - off, hdr & 1, mx->user);
	if (topic != small)
		free(topic);
	if (qos == 1) {
		uint8_t ack[2] = { (uint8_t)(pid >> 8), (uint8_t)pid };

		return queue_packet(c, 0x40, ack, 2, NULL, 0);
	}
	return 0;
}

static int on_packet(struct mux_conn *c, uint8_t hdr, const uint8_t *p, size_t n)
{
	struct mux *mx = c->mx;
	uint8_t type = hdr >> 4;

	if (c->st == C_CONNACK) {
		if (type != 2 || n != 2)
			return -EPROTO;
		if (p[1] != 0)
			return -ECONNREFUSED;
		c->st = C_UP;
		mx->n_setup--;
		mx->st.connects++;
		mx->st.up++;
		c->backoff_ms = mx->o.retry_min_ms;
		for (uint32_t i = 0; i < c->n_subs; i++)
			if (send_subscribe(c, c->subs[i], c->sub_qos[i]) < 0)
				return -EIO;
		if (mx->cb.on_connected)
			mx->cb.on_connected(c, mx->user);
		return 0;
	}
	switch (type) {
	case 3: /* PUBLISH */
		return on_publish(c, hdr, p, n);
	case 4: /* PUBACK */
		if (n != 2)
			return -EPROTO;
		if (c->unacked)
			c->unacked--;
		mx->st.acks++;
		if (mx->cb.on_puback)
			mx->cb.on_puback(c, (uint16_t)(p[0] << 8 | p[1]), mx->user);
		return 0;
	case 9:  /* SUBACK */
	case 11: /* UNSUBACK */
		return 0;
	case 13: /* PINGRESP */
		c->ping_out = false;
		return 0;
	default:
		return -EPROTO;
	}
}

/* Parse every complete packet in rx. 0 or -errno. */
static int parse(struct mux_conn *c)
{
	size_t off = 0;
	int r = 0;

	while (c->rx_len - off >= 2 && c->fd >= 0 && !c->dead) {
		size_t rem = 0, mul = 1, i = 1;

		for (;; i++) {
			if (off + i >= c->rx_len)
				goto partial;
			rem += (size_t)(c->rx[off + i] & 0x7f) * mul;
			if (!(c->rx[off + i] & 0x80))
				break;
			mul *= 128;
			if (i == 4)
				return -EPROTO;
		}
		if (rem > c->mx->o.max_packet)
			return -E2BIG;
		if (c->rx_len - off < i + 1 + rem) {
			/* Make room for the whole packet at once. */
			if ((r = reserve(&c->rx, &c->rx_cap, (c->rx_len - off) + i + 1 + rem)) < 0)
				return r;
			goto partial;
		}
		r = on_packet(c, c->rx[off], c->rx + off + i + 1, rem);
		if (r < 0)
			return r;
		off += i + 1 + rem;
	}
partial:
	if (off) {
		memmove(c->rx, c->rx + off, c->rx_len - off);
		c->rx_len -= off;
	}
	if (c->rx_len == 0)
		shrink(&c->rx, &c->rx_cap);
	return 0;
}

static void on_readable(struct mux_conn *c)
{
	size_t total = 0;
	int r;

	while (total < READ_PER_EVENT && c->fd >= 0 && !c->dead) {
		ssize_t n;

		if (c->rx_cap - c->rx_len < READ_CHUNK / 4 &&
		    reserve(&c->rx, &c->rx_cap, c->rx_len + READ_CHUNK) < 0) {
			drop(c, -ENOMEM);
			return;
		}
		n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
		if (n == 0) {
			drop(c, -ECONNRESET);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			drop(c, -errno);
			return;
		}
		c->rx_len += (size_t)n;
		total += (size_t)n;
		r = parse(c);
		if (r < 0) {
			drop(c, r);
			return;
		}
	}
}

/* ---- timers ---- */

static void run_timers(struct mux *mx, int64_t now)
{
	uint32_t n = mx->n_conns;

	if (now < mx->next_timer)
		return;
	mx->next_timer = now + TIMER_MS;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (mx->scan_from + k) % n;
		struct mux_conn *c = mx->conns[i];
		int ka = c->o.keepalive_s > 0 ? c->o.keepalive_s : 60;

		if (c->dead && c->fd >= 0)
			drop(c, c->dead);
		switch (c->st) {
		case C_IDLE:
			if (now >= c->retry_at && mx->n_setup < mx->o.max_connecting) {
				start_connect(c, now);
				mx->scan_from = i + 1;
			}
			break;
		case C_TCP:
		case C_CONNACK:
			if (now - c->since > CONNACK_TIMEOUT_MS)
				drop(c, -ETIMEDOUT);
			break;
		case C_UP:
			if (now - c->last_tx >= (int64_t)ka * 1000 / 2 && !c->ping_out) {
				if (queue_packet(c, 0xC0, NULL, 0, NULL, 0) < 0)
					drop(c, -EIO);
				else
					c->ping_out = true;
			} else if (c->ping_out && now - c->last_tx >= (int64_t)ka * 1000) {
				drop(c, -ETIMEDOUT);
			}
			break;
		case C_DONE:
			break;
		}
	}
}

/* ---- public ---- */

struct mux *mux_new(const struct mux_opts *o, const struct mux_callbacks *cb, void *user)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char port[16];
	struct mux *mx;

	if (!o || !o->host || o->port <= 0 || o->port > 65535) {
		errno = EINVAL;
		return NULL;
	}
	snprintf(port, sizeof(port), "%d", o->port);
	if (getaddrinfo(o->host, port, &hints, &ai) != 0 || !ai) {
		errno = EINVAL;
		return NULL;
	}
	mx = calloc(1, sizeof(*mx));
	if (!mx) {
		freeaddrinfo(ai);
		return NULL;
	}
	memcpy(&mx->addr, ai->ai_addr, ai->ai_addrlen);
	mx->addr_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	mx->o = *o;
	if (!mx->o.max_connecting)
		mx->o.max_connecting = 64;
	if (!mx->o.max_packet)
		mx->o.max_packet = (size_t)32 << 20;
	if (!mx->o.max_tx)
		mx->o.max_tx = (size_t)64 << 20;
	if (mx->o.retry_min_ms <= 0)
		mx->o.retry_min_ms = 500;
	if (mx->o.retry_max_ms <= 0)
		mx->o.retry_max_ms = 30000;
	if (cb)
		mx->cb = *cb;
	mx->user = user;
	mx->ep = epoll_create1(EPOLL_CLOEXEC);
	if (mx->ep < 0) {
		free(mx);
		return NULL;
	}
	return mx;
}

void mux_free(struct mux *mx)
{
	if (!mx)
		return;
	for (uint32_t i = 0; i < mx->n_conns; i++) {
		struct mux_conn *c = mx->conns[i];

		if (c->fd >= 0)
			close(c->fd);
		free(c->rx);
		free(c->tx);
		free(c);
	}
	free(mx->conns);
	close(mx->ep);
	free(mx);
}

struct mux_conn *mux_add(struct mux *mx, const struct mux_conn_opts *o, void *conn_user)
{
	struct mux_conn *c;

	if (!o || !o->client_id || o->will_qos < 0 || o->will_qos > 1 ||
	    (o->password && !o->username)) {
		errno = EINVAL;
		return NULL;
	}
	if (mx->n_conns == mx->cap_conns) {
		uint32_t cap = mx->cap_conns ? mx->cap_conns * 2 : 64;
		struct mux_conn **p = realloc(mx->conns, cap * sizeof(*p));

		if (!p)
			return NULL;
		mx->conns = p;
		mx->cap_conns = cap;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->mx = mx;
	c->o = *o;
	c->user = conn_user;
	c->fd = -1;
	c->st = C_IDLE;
	c->backoff_ms = mx->o.retry_min_ms;
	c->idx = mx->n_conns;
	mx->conns[mx->n_conns++] = c;
	mx->next_timer = 0; /* pace it in at the next poll */
	return c;
}

void *mux_conn_user(const struct mux_conn *c)
{
	return c->user;
}

bool mux_conn_up(const struct mux_conn *c)
{
	return c->st == C_UP;
}

uint32_t mux_conn_unacked(const struct mux_conn *c)
{
	return c->unacked;
}

size_t mux_conn_tx_pending(const struct mux_conn *c)
{
	return c->tx_len - c->tx_off;
}

int mux_subscribe(struct mux_conn *c, const char *filter, int qos)
{
	uint32_t i;

	if (qos < 0 || qos > 1 || !filter || !*filter || strlen(filter) > 65535)
		return -EINVAL;
	for (i = 0; i < c->n_subs; i++)
		if (strcmp(c->subs[i], filter) == 0)
			break;
	if (i == c->n_subs) {
		if (c->n_subs == MAX_SUBS)
			return -E2BIG;
		c->subs[c->n_subs] = filter;
		c->sub_qos[c->n_subs++] = qos;
	}
	c->sub_qos[i] = qos;
	if (c->st != C_UP || c->dead)
		return 0;
	if (send_subscribe(c, filter, qos) < 0)
		c->dead = -EIO; /* resubscribed after the reconnect */
	return 0;
}

int mux_publish(struct mux_conn *c, const char *topic, const void *payload, size_t len,
		int qos, bool retain)
{
	size_t tl = topic ? strlen(topic) : 0;
	uint8_t var[2 + 65535 + 2], *p = var;
	uint16_t pid = 0;
	int r;

	if (!tl || tl > 65535 || strpbrk(topic, "+#") || qos < 0 || qos > 1 || (len && !payload))
		return -EINVAL;
	if (2 + tl + 2 + len > MQTT_MAX_REMAINING)
		return -E2BIG;
	if (c->st != C_UP || c->dead)
		return -ENOTCONN;
	p = put_str(p, topic, tl);
	if (qos) {
		if (++c->next_pid == 0)
			c->next_pid = 1;
		pid = c->next_pid;
		p = put_u16(p, pid);
	}
	r = queue_packet(c, (uint8_t)(0x30 | (qos << 1) | (retain ? 1 : 0)), var,
			 (size_t)(p - var), payload, len);
	if (r == -ENOBUFS || r == -ENOMEM)
		return -ENOBUFS;
	if (r < 0) {
		c->dead = r; /* the bytes are queued; the connection is broken */
		return -ENOTCONN;
	}
	c->mx->st.msgs_out++;
	c->mx->st.bytes_out += len;
	if (qos)
		c->unacked++;
	return pid;
}

int mux_poll(struct mux *mx, int timeout_ms)
{
	struct epoll_event ev[256];
	int64_t now = fv_now_mono_ms();
	int n, handled = 0;

	run_timers(mx, now);
	if (timeout_ms > TIMER_MS)
		timeout_ms = TIMER_MS;
	n = epoll_wait(mx->ep, ev, (int)FV_ARRAY_SIZE(ev), timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		struct mux_conn *c = ev[i].data.ptr;

		if (c->fd < 0)
			continue; /* dropped by an earlier event of this batch */
		if (c->st == C_TCP) {
			if (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				tcp_done(c);
			handled++;
			continue;
		}
		if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			on_readable(c);
		if (c->fd >= 0 && !c->dead && (ev[i].events & EPOLLOUT) && flush(c) < 0)
			drop(c, -EIO);
		if (c->fd >= 0 && c->dead)
			drop(c, c->dead);
		handled++;
	}
	run_timers(mx, fv_now_mono_ms());
	return handled;
}

int mux_disconnect_all(struct mux *mx, int timeout_ms)
{
	int64_t end = fv_now_mono_ms() + timeout_ms;
	int left;

	for (uint32_t i = 0; i < mx->n_conns; i++) {
		struct mux_conn *c = mx->conns[i];

		if (c->st == C_UP)
			queue_packet(c, 0xE0, NULL, 0, NULL, 0);
		else if (c->fd >= 0)
			drop(c, 0);
		if (c->st == C_UP)
			mx->st.up--;
		c->st = C_DONE;
	}
	do {
		left = 0;
		for (uint32_t i = 0; i < mx->n_conns; i++)
			left += mx->conns[i]->fd >= 0 && mux_conn_tx_pending(mx->conns[i]) > 0;
		if (left == 0)
			break;
		mux_poll(mx, 10);
	} while (fv_now_mono_ms() < end);
	for (uint32_t i = 0; i < mx->n_conns; i++)
		if (mx->conns[i]->fd >= 0) {
			shutdown(mx->conns[i]->fd, SHUT_WR);
			drop(mx->conns[i], 0);
		}
	return left;
}

void mux_get_stats(const struct mux *mx, struct mux_stats *ret)
{
	*ret = mx->st;
}
