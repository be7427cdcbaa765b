/* fedvigil-swarm: many MQTT 3.1.1 connections on one thread (epoll).
 *
 * Only what the swarm needs: plain TCP, clean sessions, CONNECT with a
 * will and optional user name/password, SUBSCRIBE, PUBLISH at QoS 0/1 in
 * both directions (inbound QoS 1 acknowledged at once), PINGREQ for the
 * keepalive, reconnect with backoff. No TLS, no QoS 2, no persistence:
 * QoS 1 publishes still unacknowledged when a connection drops are lost
 * (counted), as with a clean session in any client.
 *
 * Why not Paho: the swarm must load the broker and the coordinator, not
 * itself. Paho's async clients go through its global locks and command
 * queues on every call, and a client stalls about a second per queued
 * message while its socket is busy (paho.mqtt.c issue 1404), which a
 * burst of 1,000 large updates from one process hits at once. Here a
 * connection is a socket and two buffers on one epoll loop.
 *
 * Bounds: at most max_connecting connections are being set up at once
 * (the broker's listen backlog); a connection's receive buffer grows to the
 * packet being read (max_packet at most, else the connection is closed as
 * broken) and its send buffer to max_tx bytes (publish: -ENOBUFS); both
 * shrink back to a few KiB once drained, so 1,000 idle connections hold a
 * few MiB.
 *
 * Callbacks run inside mux_poll(); they may publish and subscribe on any
 * connection but must not free one. */
#ifndef FEDVIGIL_SWARM_MUX_H
#define FEDVIGIL_SWARM_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mux;
struct mux_conn;

/* Per connection; the strings and the will payload are borrowed and must
 * outlive the connection. */
struct mux_conn_opts {
	const char *client_id;    /* unique per broker */
	const char *username;     /* NULL = none */
	const char *password;     /* NULL = none (needs username) */
	const char *will_topic;   /* NULL = no will */
	const void *will_payload; /* will message */
	size_t will_len;
	int will_qos;             /* 0 or 1 */
	bool will_retain;
	int keepalive_s;          /* 0 = 60 */
};

struct mux_callbacks {
	/* The broker accepted the connection (also after a reconnect):
	 * subscriptions are renewed by the mux; births go out now. */
	void (*on_connected)(struct mux_conn *c, void *user);
	/* The connection dropped (err: -errno, -EPROTO for a broken peer,
	 * -ECONNREFUSED for a CONNACK refusal); a reconnect is scheduled. */
	void (*on_lost)(struct mux_conn *c, int err, void *user);
	/* One inbound PUBLISH; topic is NUL-terminated, both are valid only
	 * during the call. */
	void (*on_message)(struct mux_conn *c, const char *topic, const uint8_t *payload,
			   size_t len, bool retained, void *user);
	/* A QoS 1 publish of ours was acknowledged. */
	void (*on_puback)(struct mux_conn *c, uint16_t pid, void *user);
};

struct mux_opts {
	const char *host;         /* broker address (numeric or a name) */
	int port;                 /* broker port */
	uint32_t max_connecting;  /* connections set up at once (0 = 64) */
	size_t max_packet;        /* largest inbound packet (0 = 32 MiB) */
	size_t max_tx;            /* send buffer per connection (0 = 64 MiB) */
	int retry_min_ms;         /* reconnect backoff start (0 = 500) */
	int retry_max_ms;         /* reconnect backoff cap (0 = 30000) */
};

/* Counters of all connections. */
struct mux_stats {
	uint64_t connects;        /* CONNACKs accepted */
	uint64_t lost;            /* connections lost after CONNACK */
	uint64_t failed;          /* connection attempts that failed before it */
	uint64_t msgs_in, bytes_in;   /* PUBLISH packets received, payload bytes */
	uint64_t msgs_out, bytes_out; /* PUBLISH packets queued, payload bytes */
	uint64_t acks;            /* PUBACKs received */
	uint64_t unacked_lost;    /* QoS 1 publishes in flight when a connection dropped */
	uint32_t up;              /* connections up now */
};

/* NULL with errno set (EINVAL: bad options or unknown host). The callbacks
 * struct is copied; user is passed to every callback. */
struct mux *mux_new(const struct mux_opts *o, const struct mux_callbacks *cb, void *user);
/* Close every connection (no DISCONNECT: use mux_disconnect_all first for a
 * clean exit) and free. NULL-safe. */
void mux_free(struct mux *mx);

/* Add a connection (set up from the next mux_poll on, paced). o is copied,
 * its strings borrowed. conn_user is returned by mux_conn_user(). NULL on
 * ENOMEM. */
struct mux_conn *mux_add(struct mux *mx, const struct mux_conn_opts *o, void *conn_user);
void *mux_conn_user(const struct mux_conn *c);
bool mux_conn_up(const struct mux_conn *c);
/* QoS 1 publishes of c not yet acknowledged. */
uint32_t mux_conn_unacked(const struct mux_conn *c);
/* Bytes waiting in c's send buffer. */
size_t mux_conn_tx_pending(const struct mux_conn *c);

/* Register a subscription (filter borrowed, must outlive c): sent now when
 * up, and again after every connect. -EINVAL for a bad QoS, -E2BIG beyond
 * 8 filters per connection. Subscribing to a filter again sends it again
 * (the broker then replays its retained messages). */
int mux_subscribe(struct mux_conn *c, const char *filter, int qos);
/* Queue a PUBLISH (payload copied). Returns the packet id (> 0) for QoS 1,
 * 0 for QoS 0; -ENOTCONN when c is not up, -ENOBUFS when its send buffer
 * is full, -EINVAL for a bad topic or QoS, -E2BIG beyond MQTT's limit. */
int mux_publish(struct mux_conn *c, const char *topic, const void *payload, size_t len,
		int qos, bool retain);

/* Wait up to timeout_ms for I/O and handle it (and the timers: pacing,
 * keepalive, reconnects). Returns the number of events handled, or
 * -errno from epoll_wait (EINTR is returned as 0). */
int mux_poll(struct mux *mx, int timeout_ms);
/* Send DISCONNECT on every connection that is up, stop reconnecting, and
 * flush for up to timeout_ms. Returns the connections still unflushed. */
int mux_disconnect_all(struct mux *mx, int timeout_ms);
void mux_get_stats(const struct mux *mx, struct mux_stats *ret);

#endif
