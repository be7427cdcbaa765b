/* fedvigil MQTT client over the Paho asynchronous C client, in its TLS
 * build (paho-mqtt3as: the same API, plus ssl://, mqtts:// and wss://).
 *
 * Threads: Paho runs its own send and receive threads and calls us back on
 * them (message arrived, connected, connection lost, per-command success
 * and failure). Those callbacks only copy data into this object under
 * `lock` and wake the owner through an eventfd; the owner drains with
 * fv_mqtt_next() on its own thread.
 *
 * Lock order: Paho may hold its own mutex while it calls us, so we never
 * call into Paho while holding `lock` (Paho -> ours, never the reverse).
 *
 * The eventfd is a level signal: it is written when the pending set goes
 * from empty to non-empty and read (reset to zero) when it goes back to
 * empty, both under `lock`, so it is readable exactly while fv_mqtt_next()
 * has something to return.
 *
 * Reconnects: Paho 1.3.12 retries by itself with automaticReconnect, also
 * when the very first connect fails (MQTTAsync_connect sets
 * shouldBeConnected, and every failed attempt goes through
 * MQTTAsync_startConnectRetry, doubling the interval from minRetryInterval
 * up to maxRetryInterval, with jitter). Paho checks its retry timers about
 * every 3 s, so the effective minimum interval is ~3 s.
 *
 * Order: fv_mqtt_next() returns queued connection events before queued
 * messages (each kind in arrival order), as the header promises.
 *
 * Large publishes (>= large_payload bytes) are serialised here: Paho's
 * async client stalls about a second per publish queued behind a large
 * packet still being written (paho.mqtt.c issue 1404; 20 x 1 MiB QoS 1
 * took 3 s queued together and 56 ms one after the other on loopback).
 * fv_mqtt_publish() sends a large payload at once only when no other large
 * publish is in flight; otherwise a copy waits in `outbox` and the
 * completion callback of the one in flight (on Paho's thread, without our
 * lock held) hands the next one to Paho. MQTTAsync_send() takes only
 * Paho's command mutex, not the one held around callbacks, so calling it
 * there is safe (Paho's own samples publish from callbacks).
 *
 * Known Paho 1.3.12 behaviour: with cleansession=1, QoS 1/2 publishes in
 * flight when the connection drops are failed there and then (not resent);
 * publishes still buffered, never sent, are kept and sent later. On
 * MQTTAsync_destroy() the copies of never-sent buffered publishes leak
 * (LeakSanitizer reports them at exit).
 *
 * TLS: Paho verifies the broker's chain against ca_file / ca_path (or the
 * system store) when enableServerCertAuth is set, and its host name (or IP
 * address) against the certificate when `verify` is set; we set both unless
 * the owner asked for `insecure`. OpenSSL's reasons for a failed handshake
 * reach us through ssl_error_cb and are logged (rate-limited: Paho retries
 * every few seconds). */
#include "fedvigil/mqtt.h"
#include "fedvigil/util.h"

#include <MQTTAsync.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEF_KEEPALIVE_S 30
#define DEF_RETRY_MIN_S 1
#define DEF_RETRY_MAX_S 30
#define DEF_QUEUE_MAX 4096u
#define DEF_MAX_PAYLOAD ((size_t)32 << 20)
#define DEF_OFFLINE_BUFFER 1000
#define DEF_LARGE_PAYLOAD ((size_t)32 << 10)
#define QUEUE_MAX_LIMIT (1u << 20)       /* sanity bound on queue_max */
#define PAYLOAD_LIMIT ((size_t)268435455) /* MQTT's largest packet */
#define TOPIC_LIMIT 65535                 /* MQTT string length */
#define EV_RING 32                        /* connection events kept */
#define CONNECT_TIMEOUT_S 10

/* A registered subscription; the list only grows and is freed with the
 * client, so filter strings handed to Paho's thread stay valid. */
struct sub {
	struct sub *next; /* next registered filter */
	char *filter;     /* topic filter, malloc'd */
	int qos;          /* requested QoS */
};

/* A large publish waiting for the one in flight (owned copies). */
struct outmsg {
	struct outmsg *next; /* next in publish order */
	char *topic;         /* malloc'd */
	void *payload;       /* malloc'd, len bytes (at least 1) */
	size_t len;          /* payload bytes */
	int qos;             /* QoS */
	bool retain;         /* retained flag */
};

enum life {
	LIFE_NEW = 0, /* created, fv_mqtt_start() not called */
	LIFE_RUNNING, /* connecting or connected, reconnecting on loss */
	LIFE_STOPPED, /* fv_mqtt_disconnect() called */
};

struct fv_mqtt {
	MQTTAsync h;            /* Paho handle */
	char *uri;              /* broker URI, owned */
	char *client_id;        /* owned */
	char *username;         /* owned; NULL = none */
	char *password;         /* owned; NULL = none */
	char *will_topic;       /* owned; NULL = no LWT */
	void *will_payload;     /* owned */
	size_t will_len;        /* LWT payload length */
	int will_qos;           /* LWT QoS */
	bool will_retain;       /* LWT retained flag */
	int keepalive_s;        /* MQTT keepalive */
	int retry_min_s;        /* reconnect backoff start */
	int retry_max_s;        /* reconnect backoff cap */
	uint32_t queue_max;     /* inbound message queue bound */
	size_t max_payload;     /* inbound payload bound */
	int offline_buffer;     /* Paho's maxBufferedMessages */
	bool tls;               /* URI scheme is ssl://, mqtts:// or wss:// */
	bool insecure;          /* TLS without verifying the broker */
	char *ca_file;          /* owned; NULL = system store */
	char *ca_path;          /* owned; NULL = none */
	char *cert_file;        /* owned; NULL = no client certificate */
	char *key_file;         /* owned; NULL = key in cert_file (or none) */
	size_t large;           /* large_payload: serialised from this size */
	int efd;                /* eventfd: readable while events pending */
	enum life life;         /* owner's view of the life cycle */

	pthread_mutex_t lock;   /* guards everything below */
	pthread_cond_t cond;    /* pending / disconnect changes */
	struct fv_mqtt_msg *ring; /* inbound messages, queue_max slots */
	uint32_t head;          /* oldest message in ring */
	uint32_t count;         /* messages in ring */
	enum fv_mqtt_event evs[EV_RING]; /* connection events, oldest first */
	uint32_t ev_head;       /* oldest event */
	uint32_t ev_count;      /* events in evs */
	struct sub *subs;       /* registered filters, in order */
	struct sub *subs_tail;  /* last of subs, for appending */
	uint32_t n_subs;        /* length of subs */
	bool connected;         /* between connected and lost callbacks */
	bool ever_connected;    /* a connect succeeded once */
	bool disc_done;         /* Paho finished our disconnect */
	int pending;            /* publishes not yet completed by Paho */
	uint64_t received;      /* messages queued */
	uint64_t dropped_full;  /* dropped: queue full (or out of memory) */
	uint64_t dropped_big;   /* dropped: over max_payload */
	uint64_t reconnects;    /* connects after the first */
	uint64_t events_dropped; /* oldest connection events overwritten */
	struct fv_ratelimit rl_tls; /* bounds OpenSSL error lines */
	bool large_busy;        /* a large publish is in Paho's hands */
	bool closing;           /* disconnect/free began: send nothing more */
	struct outmsg *out_head; /* large publishes waiting, oldest first */
	struct outmsg *out_tail; /* newest */
	uint32_t out_count;     /* length of the outbox */
	uint32_t out_peak;      /* largest out_count seen */
	uint64_t out_queued;    /* publishes that went through the outbox */
	uint64_t out_sent;      /* outbox publishes accepted by Paho */
	uint64_t out_bytes;     /* their payload bytes */
	uint64_t out_failed;    /* outbox publishes Paho refused or dropped */

	/* Owner's thread only (fv_mqtt_publish). */
	uint64_t published;     /* publishes accepted by Paho */
	uint64_t publish_failed; /* publishes refused */
	uint64_t bytes_out;     /* payload bytes accepted */
};

/* ---- helpers ---- */

/* Getters take a const client but must lock; the lock is the only thing
 * they change, so casting the const away is safe. */
static struct fv_mqtt *unconst(const struct fv_mqtt *c)
{
	return (struct fv_mqtt *)c;
}

static char *dup_or_null(const char *s, bool *ret_fail)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*ret_fail = true;
	return d;
}

/* Caller holds lock. */
static bool nothing_pending(const struct fv_mqtt *c)
{
	return c->count == 0 && c->ev_count == 0;
}

/* The pending set went from empty to non-empty. Caller holds lock. */
static void wake(struct fv_mqtt *c)
{
	uint64_t one = 1;

	/* Cannot overflow: we write once per empty -> non-empty transition
	 * and read the counter back to zero on the way back. */
	if (write(c->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN is impossible (see above); nothing useful to do. */
	}
}

/* The pending set became empty. Caller holds lock. */
static void unwake(struct fv_mqtt *c)
{
	uint64_t v;

	if (read(c->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already zero. */
	}
}

/* Queue a connection event; keeps the newest EV_RING. Caller holds lock. */
static void push_event(struct fv_mqtt *c, enum fv_mqtt_event ev)
{
	bool was_empty = nothing_pending(c);

	if (c->ev_count == EV_RING) {
		c->ev_head = (c->ev_head + 1) % EV_RING;
		c->ev_count--;
		c->events_dropped++;
	}
	c->evs[(c->ev_head + c->ev_count) % EV_RING] = ev;
	c->ev_count++;
	if (was_empty)
		wake(c);
}

static int64_t mono_ms(void)
{
	return fv_now_mono_ms();
}

/* Wait on cond until `deadline_ms` (monotonic); false on timeout. The
 * condition variable uses CLOCK_MONOTONIC. Caller holds lock. */
static bool wait_until(struct fv_mqtt *c, int64_t deadline_ms)
{
	struct timespec ts;
	int64_t left = deadline_ms - mono_ms();

	if (left <= 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_cond_timedwait(&c->cond, &c->lock, &ts) == 0;
}

/* A topic name we may publish to: non-empty, no wildcards, not too long. */
static bool topic_valid(const char *t)
{
	size_t n;

	if (!t)
		return false;
	n = strlen(t);
	return n > 0 && n <= TOPIC_LIMIT && !strpbrk(t, "+#");
}

/* A subscription filter: '+' fills a whole level, '#' is a whole last
 * level. The broker drops clients that send anything else. */
static bool filter_valid(const char *f)
{
	size_t n;

	if (!f)
		return false;
	n = strlen(f);
	if (n == 0 || n > TOPIC_LIMIT)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool starts = i == 0 || f[i - 1] == '/';
		bool ends = i + 1 == n || f[i + 1] == '/';

		if (f[i] == '+' && !(starts && ends))
			return false;
		if (f[i] == '#' && !(starts && i + 1 == n))
			return false;
	}
	return true;
}

bool fv_mqtt_uri_is_tls(const char *uri)
{
	return uri && (strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0 ||
		       strncmp(uri, "wss://", 6) == 0);
}

/* The host part of a URI is a loopback address (no eavesdropper on the
 * wire, so a plain-text password is not worth a warning). */
static bool uri_is_loopback(const char *uri)
{
	const char *h = strstr(uri, "://");

	if (!h)
		return false;
	h += 3;
	return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost", 9) == 0 ||
	       strncmp(h, "[::1]", 5) == 0;
}

static bool uri_valid(const char *uri)
{
	static const char *const schemes[] = { "tcp://", "mqtt://", "ssl://", "mqtts://",
					       "ws://", "wss://" };

	for (size_t i = 0; i < FV_ARRAY_SIZE(schemes); i++) {
		size_t n = strlen(schemes[i]);

		if (strncmp(uri, schemes[i], n) == 0)
			return uri[n] != '\0' && uri[n] != ':' && uri[n] != '/';
	}
	return false;
}

/* ---- Paho callbacks (Paho's threads) ---- */

/* OpenSSL's error queue, one line per call, during a failed handshake. */
static int on_ssl_error(const char *str, size_t len, void *ctx)
{
	struct fv_mqtt *c = ctx;
	uint64_t sup = 0;
	bool ok;

	pthread_mutex_lock(&c->lock);
	ok = fv_ratelimit_ok(&c->rl_tls, &sup);
	pthread_mutex_unlock(&c->lock);
	while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	if (ok)
		fv_log(FV_LOG_WARNING, "mqtt: TLS with %s: %.*s", c->uri, (int)FV_MIN(len, 400),
		       str);
	return 1;
}

static void on_sub_failure(void *ctx, MQTTAsync_failureData *d)
{
	struct fv_mqtt *c = ctx;

	fv_log(FV_LOG_WARNING, "mqtt: subscribe on %s failed: code %d", c->uri, d ? d->code : 0);
}

static void subscribe_now(struct fv_mqtt *c, const char *filter, int qos)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int rc;

	ro.onFailure = on_sub_failure;
	ro.context = c;
	rc = MQTTAsync_subscribe(c->h, filter, qos, &ro);
	if (rc != MQTTASYNC_SUCCESS)
		fv_log(FV_LOG_WARNING, "mqtt: cannot subscribe to %s: %s", filter,
		       MQTTAsync_strerror(rc));
}

/* The broker port of a URI: the one after the host, else the scheme's. */
static int uri_port(const char *uri)
{
	const char *h = strstr(uri, "://"), *colon;

	if (!h)
		return -1;
	h += 3;
	if (*h == '[') /* [v6]:port */
		h = strchr(h, ']') ? strchr(h, ']') : h;
	colon = strchr(h, ':');
	if (colon)
		return atoi(colon + 1);
	if (strncmp(uri, "ws://", 5) == 0)
		return 80;
	if (strncmp(uri, "wss://", 6) == 0)
		return 443;
	return fv_mqtt_uri_is_tls(uri) ? 8883 : 1883;
}

/* Paho does not disable Nagle's algorithm on its socket, and has no
 * option to. Then every publish right after a small packet of ours (the
 * PUBACK of the last update, of an announcement) waits for the broker's
 * delayed ACK: ~40 ms on Linux, measured per model publish (fedvigil-swarm
 * --raw --raw-sink paho, docs/federation.md "Scale"). Once connected, set
 * TCP_NODELAY on this process's connected TCP sockets to the broker's
 * port (the connection just made among them). Best effort. */
static void set_nodelay(const struct fv_mqtt *c)
{
	int port = uri_port(c->uri);
	DIR *d = port > 0 ? opendir("/proc/self/fd") : NULL;
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = atoi(e->d_name), type = 0, one = 1, pp;
		socklen_t tl = sizeof(type);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
		    getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
			continue;
		if (peer.ss_family == AF_INET)
			pp = ntohs(((struct sockaddr_in *)&peer)->sin_port);
		else if (peer.ss_family == AF_INET6)
			pp = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
		else
			continue;
		if (pp == port)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	closedir(d);
}

static void on_connected(void *ctx, char *cause)
{
	struct fv_mqtt *c = ctx;
	struct sub_snap {
		const char *filter;
		int qos;
	} *snap = NULL;
	uint32_t n = 0;
	bool again, oom = false;

	(void)cause;
	set_nodelay(c);
	pthread_mutex_lock(&c->lock);
	/* Setting `connected` and taking the snapshot in one critical
	 * section makes every filter subscribed exactly once: either it is in
	 * the snapshot, or fv_mqtt_subscribe() sees connected and sends it.
	 * Filter strings are immutable and live as long as the client. */
	c->connected = true;
	again = c->ever_connected;
	if (again)
		c->reconnects++;
	c->ever_connected = true;
	if (c->n_subs) {
		snap = calloc(c->n_subs, sizeof(*snap));
		oom = !snap;
		for (struct sub *s = c->subs; snap && s; s = s->next) {
			snap[n].filter = s->filter;
			snap[n].qos = s->qos;
			n++;
		}
	}
	pthread_mutex_unlock(&c->lock);

	fv_log(FV_LOG_NOTICE, "mqtt: %s %s", again ? "reconnected to" : "connected to", c->uri);
	if (oom)
		fv_log(FV_LOG_WARNING, "mqtt: out of memory renewing subscriptions");
	for (uint32_t i = 0; i < n; i++)
		subscribe_now(c, snap[i].filter, snap[i].qos);
	free(snap);

	pthread_mutex_lock(&c->lock);
	push_event(c, FV_MQTT_EV_CONNECTED);
	pthread_mutex_unlock(&c->lock);
}

static void on_connection_lost(void *ctx, char *cause)
{
	struct fv_mqtt *c = ctx;

	pthread_mutex_lock(&c->lock);
	c->connected = false;
	push_event(c, FV_MQTT_EV_LOST);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	fv_log(FV_LOG_WARNING, "mqtt: lost connection to %s%s%s; reconnecting", c->uri,
	       cause ? ": " : "", cause ? cause : "");
}

/* Paho calls one of these two at most once, for the first connect
 * attempt, and then clears both; later attempts are silent retries
 * (connects are reported by on_connected, losses by on_connection_lost). */
static void on_connect_ok(void *ctx, MQTTAsync_successData *d)
{
	(void)ctx;
	(void)d;
}

static void on_connect_failure(void *ctx, MQTTAsync_failureData *d)
{
	struct fv_mqtt *c = ctx;

	fv_log(FV_LOG_WARNING, "mqtt: cannot connect to %s (%s%s%d); retrying every %d..%d s",
	       c->uri, d && d->message ? d->message : "", d && d->message ? ", code " : "code ",
	       d ? d->code : 0, c->retry_min_s, c->retry_max_s);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct fv_mqtt *c = ctx;
	size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
	size_t plen = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	struct fv_mqtt_msg msg = { 0 };
	bool full, was_empty;

	if (plen > c->max_payload) {
		pthread_mutex_lock(&c->lock);
		c->dropped_big++;
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	full = c->count >= c->queue_max;
	if (full)
		c->dropped_full++;
	pthread_mutex_unlock(&c->lock);
	if (full)
		goto out;

	/* Copy outside the lock; the owner only ever shrinks the queue. */
	msg.topic = malloc(tlen + 1);
	msg.payload = malloc(plen + 1);
	if (!msg.topic || !msg.payload) {
		fv_mqtt_msg_clear(&msg);
		pthread_mutex_lock(&c->lock);
		c->dropped_full++; /* out of memory counts as a full queue */
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	memcpy(msg.topic, topic, tlen);
	msg.topic[tlen] = '\0';
	if (plen)
		memcpy(msg.payload, m->payload, plen);
	((char *)msg.payload)[plen] = '\0';
	msg.len = plen;
	msg.qos = m->qos;
	msg.retained = m->retained != 0;

	pthread_mutex_lock(&c->lock);
	if (c->count >= c->queue_max) {
		c->dropped_full++;
		pthread_mutex_unlock(&c->lock);
		fv_mqtt_msg_clear(&msg);
		goto out;
	}
	was_empty = nothing_pending(c);
	c->ring[(c->head + c->count) % c->queue_max] = msg;
	c->count++;
	c->received++;
	if (was_empty)
		wake(c);
	pthread_mutex_unlock(&c->lock);
out:
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* A publish completed (success or failure): one fewer pending. */
static void publish_done(struct fv_mqtt *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->pending > 0)
		c->pending--;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_publish_ok(void *ctx, MQTTAsync_successData *d)
{
	(void)d;
	publish_done(ctx);
}

static void on_publish_failed(void *ctx, MQTTAsync_failureData *d)
{
	(void)d;
	publish_done(ctx);
}

static void outmsg_free(struct outmsg *o)
{
	if (!o)
		return;
	free(o->topic);
	free(o->payload);
	free(o);
}

static void on_large_ok(void *ctx, MQTTAsync_successData *d);
static void on_large_failed(void *ctx, MQTTAsync_failureData *d);

/* Hand one large publish to Paho with the large-payload callbacks. */
static int send_large(struct fv_mqtt *c, const char *topic, const void *payload, size_t len,
		      int qos, bool retain)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;

	ro.onSuccess = on_large_ok;
	ro.onFailure = on_large_failed;
	ro.context = c;
	return MQTTAsync_send(c->h, topic, (int)len, len ? payload : "", qos, retain, &ro);
}

/* The large publish in flight completed (either way): send the next one
 * waiting, if any. Runs on Paho's thread; our lock is never held while
 * Paho is called. */
static void large_done(struct fv_mqtt *c)
{
	struct outmsg *o;

	pthread_mutex_lock(&c->lock);
	if (c->pending > 0)
		c->pending--;
	for (;;) {
		o = c->closing ? NULL : c->out_head;
		if (!o) {
			c->large_busy = false;
			break;
		}
		c->out_head = o->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->out_count--;
		pthread_mutex_unlock(&c->lock);
		int rc = send_large(c, o->topic, o->payload, o->len, o->qos, o->retain);

		pthread_mutex_lock(&c->lock);
		if (rc == MQTTASYNC_SUCCESS) {
			c->out_sent++;
			c->out_bytes += o->len;
			outmsg_free(o);
			break; /* its completion sends the next */
		}
		c->out_failed++;
		if (c->pending > 0)
			c->pending--;
		outmsg_free(o);
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_large_ok(void *ctx, MQTTAsync_successData *d)
{
	(void)d;
	large_done(ctx);
}

static void on_large_failed(void *ctx, MQTTAsync_failureData *d)
{
	(void)d;
	large_done(ctx);
}

/* Drop every waiting large publish (closing). Caller holds lock. */
static void outbox_clear(struct fv_mqtt *c)
{
	struct outmsg *o, *next;

	for (o = c->out_head; o; o = next) {
		next = o->next;
		c->out_failed++;
		if (c->pending > 0)
			c->pending--;
		outmsg_free(o);
	}
	c->out_head = c->out_tail = NULL;
	c->out_count = 0;
}

static void on_disconnect_ok(void *ctx, MQTTAsync_successData *d)
{
	struct fv_mqtt *c = ctx;

	(void)d;
	pthread_mutex_lock(&c->lock);
	c->disc_done = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_disconnect_failed(void *ctx, MQTTAsync_failureData *d)
{
	(void)d;
	on_disconnect_ok(ctx, NULL);
}

/* ---- public API ---- */

void fv_mqtt_msg_clear(struct fv_mqtt_msg *m)
{
	if (!m)
		return;
	free(m->topic);
	free(m->payload);
	memset(m, 0, sizeof(*m));
}

static bool given(const char *s)
{
	return s && s[0];
}

/* TLS options: only with a TLS URI; a private key must be private. */
static int setup_tls(struct fv_mqtt *c, const struct fv_mqtt_opts *o)
{
	bool oom = false;
	char err[512];

	c->tls = fv_mqtt_uri_is_tls(o->uri);
	if (!c->tls) {
		if (given(o->ca_file) || given(o->ca_path) || given(o->cert_file) ||
		    given(o->key_file) || o->insecure) {
			fv_log(FV_LOG_ERR, "mqtt: TLS options are set but the broker URI %s is not "
			       "ssl://, mqtts:// or wss://; refusing to connect without TLS", o->uri);
			return -EINVAL;
		}
		if (given(o->password) && !uri_is_loopback(o->uri))
			fv_log(FV_LOG_WARNING, "mqtt: the password for %s is sent unencrypted "
			       "(use ssl:// with TLS)", o->uri);
		return 0;
	}
	if (given(o->key_file) && !given(o->cert_file)) {
		fv_log(FV_LOG_ERR, "mqtt: a TLS key file without a certificate file");
		return -EINVAL;
	}
	/* Without key_file, Paho reads the key from cert_file. */
	if (given(o->key_file) || given(o->cert_file)) {
		const char *key = given(o->key_file) ? o->key_file : o->cert_file;

		if (fv_file_check_private(key, "TLS private key", err, sizeof(err)) < 0) {
			fv_log(FV_LOG_ERR, "mqtt: %s", err);
			return -EPERM;
		}
	}
	c->insecure = o->insecure;
	if (c->insecure)
		fv_log(FV_LOG_WARNING, "mqtt: TLS to %s without verifying the broker's certificate "
		       "(anyone on the path can impersonate it)", o->uri);
	c->ca_file = given(o->ca_file) ? dup_or_null(o->ca_file, &oom) : NULL;
	c->ca_path = given(o->ca_path) ? dup_or_null(o->ca_path, &oom) : NULL;
	c->cert_file = given(o->cert_file) ? dup_or_null(o->cert_file, &oom) : NULL;
	c->key_file = given(o->key_file) ? dup_or_null(o->key_file, &oom) : NULL;
	return oom ? -ENOMEM : 0;
}

/* Copy and check the options into c; -EINVAL / -ENOMEM with a logged
 * reason. */
static int setup_opts(struct fv_mqtt *c, const struct fv_mqtt_opts *o)
{
	bool oom = false;
	char gen_id[64];

	if (!o->uri || !uri_valid(o->uri)) {
		fv_log(FV_LOG_ERR, "mqtt: broker URI '%s' is not tcp://, mqtt://, ssl://, mqtts://, "
		       "ws:// or wss:// followed by host[:port]", o->uri ? o->uri : "(null)");
		return -EINVAL;
	}
	if (o->keepalive_s < 0 || o->retry_min_s < 0 || o->retry_max_s < 0 ||
	    o->offline_buffer < 0) {
		fv_log(FV_LOG_ERR, "mqtt: negative keepalive, retry interval or offline buffer");
		return -EINVAL;
	}
	c->keepalive_s = o->keepalive_s ? o->keepalive_s : DEF_KEEPALIVE_S;
	c->retry_min_s = o->retry_min_s ? o->retry_min_s : DEF_RETRY_MIN_S;
	c->retry_max_s = o->retry_max_s ? o->retry_max_s : DEF_RETRY_MAX_S;
	if (c->retry_max_s < c->retry_min_s) {
		fv_log(FV_LOG_ERR, "mqtt: retry_max_s %d is below retry_min_s %d", c->retry_max_s,
		       c->retry_min_s);
		return -EINVAL;
	}
	c->queue_max = o->queue_max ? o->queue_max : DEF_QUEUE_MAX;
	if (c->queue_max > QUEUE_MAX_LIMIT) {
		fv_log(FV_LOG_ERR, "mqtt: queue_max %u is over %u", c->queue_max, QUEUE_MAX_LIMIT);
		return -EINVAL;
	}
	c->max_payload = o->max_payload ? o->max_payload : DEF_MAX_PAYLOAD;
	if (c->max_payload > PAYLOAD_LIMIT)
		c->max_payload = PAYLOAD_LIMIT;
	c->offline_buffer = o->offline_buffer ? o->offline_buffer : DEF_OFFLINE_BUFFER;
	c->large = o->large_payload ? o->large_payload : DEF_LARGE_PAYLOAD;
	if (o->will_topic) {
		if (!topic_valid(o->will_topic) || o->will_qos < 0 || o->will_qos > 2 ||
		    (o->will_len && !o->will_payload) || o->will_len > PAYLOAD_LIMIT) {
			fv_log(FV_LOG_ERR, "mqtt: bad last-will: topic '%s', qos %d, %zu bytes",
			       o->will_topic, o->will_qos, o->will_len);
			return -EINVAL;
		}
		c->will_qos = o->will_qos;
		c->will_retain = o->will_retain;
		c->will_len = o->will_len;
		/* One byte more, so a zero-length will still has a buffer. */
		c->will_payload = malloc(o->will_len + 1);
		if (!c->will_payload)
			return -ENOMEM;
		if (o->will_len)
			memcpy(c->will_payload, o->will_payload, o->will_len);
	}
	if (!o->client_id || !o->client_id[0]) {
		snprintf(gen_id, sizeof(gen_id), "fedvigil-%ld-%lld", (long)getpid(),
			 (long long)(fv_now_wall_ms() % 1000000));
	}
	c->uri = dup_or_null(o->uri, &oom);
	c->client_id = dup_or_null(o->client_id && o->client_id[0] ? o->client_id : gen_id, &oom);
	c->username = dup_or_null(o->username, &oom);
	c->password = dup_or_null(o->password, &oom);
	c->will_topic = dup_or_null(o->will_topic, &oom);
	if (oom)
		return -ENOMEM;
	return setup_tls(c, o);
}

/* Paho's TLS build initialises OpenSSL in its first MQTTAsync_create(),
 * loading every cipher, digest and error string: ~2.5 MB of libcrypto
 * resident in a daemon that may never open a TLS connection. OpenSSL 1.1
 * and later initialise themselves on first use (SSL_CTX_new() at a TLS
 * connect), so we tell Paho to leave it alone. */
static void mqtt_global_init(void)
{
	MQTTAsync_init_options io = MQTTAsync_init_options_initializer;

	io.do_openssl_init = 0;
	MQTTAsync_global_init(&io);
	/* Debian builds Paho without HIGH_PERFORMANCE: by default it formats a
	 * trace line (vsnprintf under a global mutex) into an in-memory ring
	 * at every function entry and exit and every protocol event, whether
	 * anyone reads the ring or not. We never do (errors reach us through
	 * the callbacks' return codes), so keep only its errors. */
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
}

struct fv_mqtt *fv_mqtt_new(const struct fv_mqtt_opts *o)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
	pthread_condattr_t ca;
	struct fv_mqtt *c;
	int r;

	if (!o) {
		fv_log(FV_LOG_ERR, "mqtt: no options");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto oom;
	c->efd = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->rl_tls = (struct fv_ratelimit)FV_RATELIMIT_INIT(60000, 10);
	r = setup_opts(c, o);
	if (r == -ENOMEM)
		goto oom;
	if (r < 0)
		goto fail;
	c->ring = calloc(c->queue_max, sizeof(*c->ring));
	if (!c->ring)
		goto oom;
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		fv_log(FV_LOG_ERR, "mqtt: eventfd: %s", strerror(errno));
		goto fail;
	}

	pthread_once(&once, mqtt_global_init);
	co.sendWhileDisconnected = 1;
	co.maxBufferedMessages = c->offline_buffer;
	co.MQTTVersion = MQTTVERSION_3_1_1;
	/* Publishes made before the first connect are buffered too. */
	co.allowDisconnectedSendAtAnyTime = 1;
	co.deleteOldestMessages = 0;
	co.restoreMessages = 0;
	co.persistQoS0 = 0;
	r = MQTTAsync_createWithOptions(&c->h, c->uri, c->client_id, MQTTCLIENT_PERSISTENCE_NONE,
					NULL, &co);
	if (r != MQTTASYNC_SUCCESS) {
		c->h = NULL;
		fv_log(FV_LOG_ERR, "mqtt: cannot create a client for %s: %s%s", c->uri,
		       MQTTAsync_strerror(r),
		       r == MQTTASYNC_BAD_PROTOCOL ? " (unknown scheme, or Paho without TLS)" : "");
		goto fail;
	}
	r = MQTTAsync_setCallbacks(c->h, c, on_connection_lost, on_message, NULL);
	if (r == MQTTASYNC_SUCCESS)
		r = MQTTAsync_setConnected(c->h, c, on_connected);
	if (r != MQTTASYNC_SUCCESS) {
		fv_log(FV_LOG_ERR, "mqtt: cannot set callbacks: %s", MQTTAsync_strerror(r));
		goto fail;
	}
	return c;
oom:
	fv_log(FV_LOG_ERR, "mqtt: out of memory");
fail:
	fv_mqtt_free(c, 0);
	return NULL;
}

void fv_mqtt_free(struct fv_mqtt *c, int timeout_ms)
{
	struct sub *s, *next;

	if (!c)
		return;
	if (c->life == LIFE_RUNNING)
		fv_mqtt_disconnect(c, timeout_ms);
	pthread_mutex_lock(&c->lock);
	c->closing = true;
	outbox_clear(c);
	pthread_mutex_unlock(&c->lock);
	/* May call our failure callbacks for commands still queued; the
	 * object is intact until it returns, and `closing` keeps them from
	 * sending anything more. */
	if (c->h)
		MQTTAsync_destroy(&c->h);
	if (c->ring) {
		for (uint32_t i = 0; i < c->count; i++)
			fv_mqtt_msg_clear(&c->ring[(c->head + i) % c->queue_max]);
		free(c->ring);
	}
	for (s = c->subs; s; s = next) {
		next = s->next;
		free(s->filter);
		free(s);
	}
	if (c->efd >= 0)
		close(c->efd);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->uri);
	free(c->client_id);
	free(c->username);
	if (c->password) {
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->will_topic);
	free(c->will_payload);
	free(c->ca_file);
	free(c->ca_path);
	free(c->cert_file);
	free(c->key_file);
	free(c);
}

int fv_mqtt_start(struct fv_mqtt *c)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_willOptions wo = MQTTAsync_willOptions_initializer;
	MQTTAsync_SSLOptions so = MQTTAsync_SSLOptions_initializer;
	int rc;

	if (!c)
		return -EINVAL;
	if (c->life != LIFE_NEW)
		return -EALREADY;
	co.keepAliveInterval = c->keepalive_s;
	co.cleansession = 1;
	co.connectTimeout = CONNECT_TIMEOUT_S;
	co.MQTTVersion = MQTTVERSION_3_1_1;
	co.automaticReconnect = 1;
	co.minRetryInterval = c->retry_min_s;
	co.maxRetryInterval = c->retry_max_s;
	co.username = c->username;
	co.password = c->password;
	co.onSuccess = on_connect_ok;
	co.onFailure = on_connect_failure;
	co.context = c;
	if (c->will_topic) {
		wo.struct_version = 1;
		wo.topicName = c->will_topic;
		wo.message = NULL;
		wo.payload.data = c->will_payload;
		wo.payload.len = (int)c->will_len;
		wo.qos = c->will_qos;
		wo.retained = c->will_retain;
		co.will = &wo;
	}
	if (c->tls) {
		/* Paho copies these at connect (and keeps them for reconnects). */
		so.trustStore = c->ca_file;
		so.CApath = c->ca_path;
		so.keyStore = c->cert_file;
		so.privateKey = c->key_file;
		so.enableServerCertAuth = !c->insecure;
		so.verify = !c->insecure;
		/* Paho 1.3.12 ignores sslVersion with OpenSSL >= 1.1 (TLS_client_method);
		 * Debian's OpenSSL configuration sets the floor at TLS 1.2. */
		so.sslVersion = MQTT_SSL_VERSION_DEFAULT;
		so.ssl_error_cb = on_ssl_error;
		so.ssl_error_context = c;
		co.ssl = &so;
	}
	rc = MQTTAsync_connect(c->h, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		fv_log(FV_LOG_ERR, "mqtt: cannot start connecting to %s: %s", c->uri,
		       MQTTAsync_strerror(rc));
		return rc == MQTTASYNC_BAD_PROTOCOL || rc == MQTTASYNC_BAD_STRUCTURE ||
		       rc == MQTTASYNC_BAD_UTF8_STRING ? -EINVAL : -EIO;
	}
	c->life = LIFE_RUNNING;
	return 0;
}

int fv_mqtt_subscribe(struct fv_mqtt *c, const char *filter, int qos)
{
	struct sub *s, *found = NULL;
	bool now;

	if (!c || !filter_valid(filter) || qos < 0 || qos > 2)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	for (s = c->subs; s; s = s->next)
		if (strcmp(s->filter, filter) == 0) {
			found = s;
			break;
		}
	if (found) {
		found->qos = qos;
	} else {
		s = calloc(1, sizeof(*s));
		if (s)
			s->filter = strdup(filter);
		if (!s || !s->filter) {
			pthread_mutex_unlock(&c->lock);
			free(s);
			return -ENOMEM;
		}
		s->qos = qos;
		if (c->subs_tail)
			c->subs_tail->next = s;
		else
			c->subs = s;
		c->subs_tail = s;
		c->n_subs++;
	}
	now = c->connected && c->life == LIFE_RUNNING;
	pthread_mutex_unlock(&c->lock);
	if (now)
		subscribe_now(c, filter, qos);
	return 0;
}

static int rc_to_errno(int rc, bool conn)
{
	switch (rc) {
	case MQTTASYNC_MAX_BUFFERED_MESSAGES:
		return conn ? -ENOBUFS : -ENOTCONN;
	case MQTTASYNC_DISCONNECTED:
		return -ENOTCONN;
	case MQTTASYNC_BAD_UTF8_STRING:
	case MQTTASYNC_BAD_QOS:
	case MQTTASYNC_NULL_PARAMETER:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* A payload of c->large bytes or more: to Paho now if no other large one
 * is in flight, else into the outbox (copied). */
static int publish_large(struct fv_mqtt *c, const char *topic, const void *payload, size_t len,
			 int qos, bool retain)
{
	struct outmsg *o = NULL;
	bool conn, now;
	int rc;

	pthread_mutex_lock(&c->lock);
	now = !c->large_busy && !c->out_head;
	conn = c->connected;
	if (now) {
		c->large_busy = true;
		c->pending++;
	} else if (c->out_count >= (uint32_t)c->offline_buffer) {
		pthread_mutex_unlock(&c->lock);
		c->publish_failed++;
		return conn ? -ENOBUFS : -ENOTCONN;
	}
	pthread_mutex_unlock(&c->lock);

	if (now) {
		rc = send_large(c, topic, payload, len, qos, retain);
		if (rc == MQTTASYNC_SUCCESS) {
			c->published++;
			c->bytes_out += len;
			return 0;
		}
		/* Only this thread adds to the outbox, and it was empty. */
		pthread_mutex_lock(&c->lock);
		c->pending--;
		c->large_busy = false;
		conn = c->connected;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		c->publish_failed++;
		return rc_to_errno(rc, conn);
	}

	/* Copy outside the lock; the callback may meanwhile have finished
	 * the one in flight, so look again before queueing. */
	o = calloc(1, sizeof(*o));
	if (o) {
		o->topic = strdup(topic);
		o->payload = malloc(len ? len : 1);
	}
	if (!o || !o->topic || !o->payload) {
		outmsg_free(o);
		c->publish_failed++;
		return -ENOMEM;
	}
	if (len)
		memcpy(o->payload, payload, len);
	o->len = len;
	o->qos = qos;
	o->retain = retain;
	pthread_mutex_lock(&c->lock);
	if (!c->large_busy && !c->out_head) {
		c->large_busy = true;
		c->pending++;
		pthread_mutex_unlock(&c->lock);
		rc = send_large(c, o->topic, o->payload, len, qos, retain);
		outmsg_free(o);
		if (rc == MQTTASYNC_SUCCESS) {
			c->published++;
			c->bytes_out += len;
			return 0;
		}
		pthread_mutex_lock(&c->lock);
		c->pending--;
		c->large_busy = false;
		conn = c->connected;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		c->publish_failed++;
		return rc_to_errno(rc, conn);
	}
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_count++;
	c->out_peak = FV_MAX(c->out_peak, c->out_count);
	c->out_queued++;
	c->pending++;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int fv_mqtt_publish(struct fv_mqtt *c, const char *topic, const void *payload, size_t len,
		    int qos, bool retain)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	bool conn;
	int rc;

	if (!c || !topic_valid(topic) || qos < 0 || qos > 2 || (len && !payload))
		return -EINVAL;
	if (len > PAYLOAD_LIMIT || len > INT_MAX)
		return -E2BIG;
	if (c->life == LIFE_STOPPED) {
		c->publish_failed++;
		return -ENOTCONN;
	}
	if (len >= c->large)
		return publish_large(c, topic, payload, len, qos, retain);
	ro.onSuccess = on_publish_ok;
	ro.onFailure = on_publish_failed;
	ro.context = c;
	/* Count it before Paho can complete it on its thread. */
	pthread_mutex_lock(&c->lock);
	c->pending++;
	pthread_mutex_unlock(&c->lock);
	rc = MQTTAsync_send(c->h, topic, (int)len, len ? payload : "", qos, retain, &ro);
	if (rc == MQTTASYNC_SUCCESS) {
		c->published++;
		c->bytes_out += len;
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	c->pending--;
	conn = c->connected;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	c->publish_failed++;
	return rc_to_errno(rc, conn);
}

bool fv_mqtt_connected(const struct fv_mqtt *c)
{
	struct fv_mqtt *m = unconst(c);
	bool r;

	if (!c)
		return false;
	pthread_mutex_lock(&m->lock);
	r = m->connected;
	pthread_mutex_unlock(&m->lock);
	return r;
}

int fv_mqtt_pending(const struct fv_mqtt *c)
{
	struct fv_mqtt *m = unconst(c);
	int r;

	if (!c)
		return 0;
	pthread_mutex_lock(&m->lock);
	r = m->pending;
	pthread_mutex_unlock(&m->lock);
	return r;
}

int fv_mqtt_fd(const struct fv_mqtt *c)
{
	return c ? c->efd : -EINVAL;
}

enum fv_mqtt_event fv_mqtt_next(struct fv_mqtt *c, struct fv_mqtt_msg *ret_msg)
{
	enum fv_mqtt_event ev = FV_MQTT_EV_NONE;

	if (!c)
		return FV_MQTT_EV_NONE;
	pthread_mutex_lock(&c->lock);
	if (c->ev_count) {
		ev = c->evs[c->ev_head];
		c->ev_head = (c->ev_head + 1) % EV_RING;
		c->ev_count--;
	} else if (c->count && ret_msg) {
		ev = FV_MQTT_EV_MESSAGE;
		*ret_msg = c->ring[c->head];
		memset(&c->ring[c->head], 0, sizeof(c->ring[c->head]));
		c->head = (c->head + 1) % c->queue_max;
		c->count--;
		/* Restart at slot 0 when empty: only as many slots as the
		 * deepest backlog are ever touched (the agent's 65536-slot
		 * queue is 2 MB of address space, not of memory). */
		if (c->count == 0)
			c->head = 0;
	}
	if (ev != FV_MQTT_EV_NONE && nothing_pending(c))
		unwake(c);
	pthread_mutex_unlock(&c->lock);
	return ev;
}

void fv_mqtt_get_stats(const struct fv_mqtt *c, struct fv_mqtt_stats *ret)
{
	struct fv_mqtt *m = unconst(c);
	struct fv_mqtt_stats s = { 0 };

	if (!c || !ret)
		return;
	pthread_mutex_lock(&m->lock);
	s.received = m->received;
	s.dropped_full = m->dropped_full;
	s.dropped_big = m->dropped_big;
	s.reconnects = m->reconnects;
	s.large_queued = m->out_queued;
	s.large_waiting = m->out_count;
	s.large_peak = m->out_peak;
	s.published = m->published + m->out_sent;
	s.publish_failed = m->publish_failed + m->out_failed;
	s.bytes_out = m->bytes_out + m->out_bytes;
	pthread_mutex_unlock(&m->lock);
	*ret = s;
}

int fv_mqtt_disconnect(struct fv_mqtt *c, int timeout_ms)
{
	MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer;
	int64_t deadline;
	int rc, ret = 0;

	if (!c)
		return -EINVAL;
	if (c->life != LIFE_RUNNING) {
		c->life = LIFE_STOPPED;
		return -ENOTCONN;
	}
	c->life = LIFE_STOPPED;
	if (timeout_ms < 0)
		timeout_ms = 0;
	deadline = mono_ms() + timeout_ms;

	/* While connected, let in-flight publishes complete first. */
	pthread_mutex_lock(&c->lock);
	while (c->connected && c->pending > 0)
		if (!wait_until(c, deadline) && mono_ms() >= deadline)
			break;
	if (c->connected && c->pending > 0)
		ret = -ETIMEDOUT;
	c->disc_done = false;
	/* Nothing more goes to Paho: waiting large publishes are dropped
	 * (counted as failed). */
	c->closing = true;
	outbox_clear(c);
	pthread_mutex_unlock(&c->lock);

	dopt.timeout = (int)FV_MAX(deadline - mono_ms(), (int64_t)0);
	dopt.onSuccess = on_disconnect_ok;
	dopt.onFailure = on_disconnect_failed;
	dopt.context = c;
	/* Also stops Paho's reconnect attempts when we are not connected. */
	rc = MQTTAsync_disconnect(c->h, &dopt);
	if (rc == MQTTASYNC_SUCCESS) {
		/* Paho bounds its own wait by dopt.timeout; allow it a little
		 * more for its 100 ms polling. */
		int64_t d2 = mono_ms() + dopt.timeout + 1000;

		pthread_mutex_lock(&c->lock);
		while (!c->disc_done)
			if (!wait_until(c, d2) && mono_ms() >= d2)
				break;
		if (!c->disc_done)
			ret = -ETIMEDOUT;
		pthread_mutex_unlock(&c->lock);
		fv_log(FV_LOG_NOTICE, "mqtt: disconnected from %s", c->uri);
	} else if (rc == MQTTASYNC_DISCONNECTED) {
		ret = ret ? ret : -ENOTCONN;
	} else {
		ret = -EIO;
	}
	pthread_mutex_lock(&c->lock);
	c->connected = false;
	pthread_mutex_unlock(&c->lock);
	return ret;
}
