/* fedvigil MQTT client: a thin wrapper over the Paho *async* C client.
 *
 * Paho calls back on its own thread. Callbacks copy each message into a
 * bounded queue and wake the owner's main loop through an eventfd
 * (fv_mqtt_fd()); the owner drains with fv_mqtt_next() on its own thread, so
 * daemon state needs no locks. Reconnects happen automatically with
 * exponential backoff; subscriptions are renewed on every (re)connect; the
 * LWT is set at connect. */
#ifndef FEDVIGIL_MQTT_H
#define FEDVIGIL_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/cfg.h"

struct fv_mqtt_opts {
	const char *uri;          /* "tcp://127.0.0.1:1883" (also mqtt://, ssl://) */
	const char *client_id;    /* unique per broker */
	const char *username;     /* NULL = none */
	const char *password;     /* NULL = none */
	const char *will_topic;   /* NULL = no LWT */
	const void *will_payload; /* LWT payload */
	size_t will_len;
	int will_qos;
	bool will_retain;
	int keepalive_s;          /* default 30 when 0 */
	int retry_min_s;          /* reconnect backoff start, default 1 */
	int retry_max_s;          /* reconnect backoff cap, default 30 */
	uint32_t queue_max;       /* inbound queue bound, default 4096 */
	size_t max_payload;       /* inbound payloads larger are dropped+counted,
				   * default 32 MiB */
	int offline_buffer;       /* publishes buffered while disconnected,
				   * default 1000; also bounds the large-
				   * payload queue below */
	/* TLS: used with ssl://, mqtts:// and wss:// URIs, and an error
	 * (-EINVAL) with any other scheme, so that a TLS setup never
	 * silently falls back to plain TCP. */
	const char *ca_file;      /* PEM CA certificates to trust; NULL = the
				   * system's default store */
	const char *ca_path;      /* directory of hashed CA certificates, or NULL */
	const char *cert_file;    /* client certificate chain (PEM), or NULL */
	const char *key_file;     /* its private key (PEM), or NULL when it is in
				   * cert_file; must not be readable by group or
				   * others (-EPERM, logged) */
	bool insecure;            /* do not verify the broker's certificate and
				   * host name (encryption only; logged) */
	size_t large_payload;     /* publishes of at least this many bytes go
				   * to Paho one at a time, each after the
				   * previous one completed (Paho's async
				   * client stalls ~1 s per publish queued
				   * behind a busy socket: paho.mqtt.c issue
				   * 1404); default 32 KiB */
};

/* One inbound message; owned by the caller after fv_mqtt_next(). */
struct fv_mqtt_msg {
	char *topic;     /* NUL-terminated, malloc'd */
	void *payload;   /* malloc'd (NUL appended after len for convenience) */
	size_t len;
	int qos;
	bool retained;
};
void fv_mqtt_msg_clear(struct fv_mqtt_msg *m);

enum fv_mqtt_event {
	FV_MQTT_EV_NONE = 0,
	FV_MQTT_EV_CONNECTED,   /* (re)connected: publish births now */
	FV_MQTT_EV_LOST,        /* connection lost; reconnecting */
	FV_MQTT_EV_MESSAGE,     /* a message is ready in *ret_msg */
};

/* Counters, read from the owner's thread. */
struct fv_mqtt_stats {
	uint64_t received;       /* messages queued */
	uint64_t dropped_full;   /* dropped: inbound queue full */
	uint64_t dropped_big;    /* dropped: payload over max_payload */
	uint64_t published;      /* publishes accepted by Paho */
	uint64_t publish_failed; /* publishes Paho refused */
	uint64_t bytes_out;      /* payload bytes of accepted publishes */
	uint64_t reconnects;     /* successful connects after the first */
	uint64_t large_queued;   /* large publishes that waited for an earlier
				  * one (counted in published once sent) */
	uint32_t large_waiting;  /* large publishes waiting right now */
	uint32_t large_peak;     /* the most that ever waited at once */
};

struct fv_mqtt;

/* Create a client (no network yet). NULL on bad options (including a TLS
 * option with a non-TLS URI, or a private key readable by group/others) or
 * out of memory; the reason is logged. Caller owns it; free with
 * fv_mqtt_free(). */
struct fv_mqtt *fv_mqtt_new(const struct fv_mqtt_opts *o);
/* Stop (disconnecting within timeout_ms when connected) and free. NULL-safe. */
void fv_mqtt_free(struct fv_mqtt *c, int timeout_ms);

/* Start connecting; returns at once. Failure to reach the broker is not an
 * error: the client keeps retrying with backoff. -EINVAL on bad URI. */
int fv_mqtt_start(struct fv_mqtt *c);
/* Register a subscription (renewed at every connect; sent now if connected).
 * -EINVAL for a malformed filter ('+'/'#' not whole levels) or QoS. */
int fv_mqtt_subscribe(struct fv_mqtt *c, const char *filter, int qos);
/* Publish (payload copied; NULL allowed when len is 0). Buffered while
 * disconnected, also before the first connect. Payloads of large_payload
 * bytes or more are handed to Paho one at a time, in order, each when the
 * previous one completed (acknowledged at QoS 1); smaller ones go at once
 * and may overtake them. -ENOTCONN when disconnected and the offline
 * buffer is full, or after fv_mqtt_disconnect(); -ENOBUFS when connected
 * but the buffer (or the large-payload queue) is full (transient); -EINVAL
 * for a bad topic (empty, wildcards) or QoS; -E2BIG over 256 MiB; -EIO when
 * Paho refuses otherwise. */
int fv_mqtt_publish(struct fv_mqtt *c, const char *topic, const void *payload, size_t len,
		    int qos, bool retain);
bool fv_mqtt_connected(const struct fv_mqtt *c);
/* Publishes not yet acknowledged by the broker (including large ones
 * still waiting for their turn). */
int fv_mqtt_pending(const struct fv_mqtt *c);

/* Readable (poll POLLIN) while events or messages are pending. */
int fv_mqtt_fd(const struct fv_mqtt *c);
/* Take the next event. Connection events come first, in order; then
 * messages in arrival order. ret_msg is filled for FV_MQTT_EV_MESSAGE. */
enum fv_mqtt_event fv_mqtt_next(struct fv_mqtt *c, struct fv_mqtt_msg *ret_msg);
void fv_mqtt_get_stats(const struct fv_mqtt *c, struct fv_mqtt_stats *ret);
/* True for URIs that connect with TLS (ssl://, mqtts://, wss://). */
bool fv_mqtt_uri_is_tls(const char *uri);

/* Disconnect cleanly (no LWT), waiting up to timeout_ms for in-flight
 * publishes; stops reconnecting. 0, -ENOTCONN when not connected (returns
 * at once), -ETIMEDOUT when publishes were still unacknowledged. */
int fv_mqtt_disconnect(struct fv_mqtt *c, int timeout_ms);

/* ---- [tls] configuration of the daemons (tls.c) ---- */

/* The [tls] section: one definition for every program. */
struct fv_mqtt_tls {
	char ca_file[512];   /* CA certificates (PEM); "" = system store */
	char cert_file[512]; /* client certificate (PEM); "" = none */
	char key_file[512];  /* its private key (PEM, mode 0600); "" = in cert_file */
	bool verify;         /* verify the broker's certificate and host name */
};

/* The [tls] entries of a key table, for a config struct `type` whose
 * member `m` is a struct fv_mqtt_tls. */
#define FV_MQTT_TLS_KEY(name, type, m, f, ctype, def, help)                                   \
	{ "tls", name, ctype, def, 0, 0, NULL, offsetof(type, m.f), sizeof(((type *)0)->m.f), help }
#define FV_MQTT_TLS_KEYS(type, m)                                                             \
	FV_MQTT_TLS_KEY("ca_file", type, m, ca_file, FV_CFG_STR, "",                            \
			"CA certificates (PEM) that sign the broker's certificate; empty: the "  \
			"system's store (TLS needs an ssl:// broker URI)"),                      \
	FV_MQTT_TLS_KEY("cert_file", type, m, cert_file, FV_CFG_STR, "",                        \
			"client certificate (PEM) for brokers that authenticate by certificate " \
			"(empty: none)"),                                                          \
	FV_MQTT_TLS_KEY("key_file", type, m, key_file, FV_CFG_STR, "",                          \
			"private key (PEM) of cert_file, mode 0600 (empty: in cert_file)"),      \
	FV_MQTT_TLS_KEY("verify", type, m, verify, FV_CFG_BOOL, "true",                         \
			"verify the broker's certificate and host name (false: encryption only, " \
			"for tests)")

/* Cross-check [tls] with the broker URI: a TLS setting needs a TLS URI, a
 * key needs a certificate, and the private key must not be accessible by
 * group or others. broker_key names the URI's key in messages. 0, or
 * -EINVAL / -EPERM / -errno with the reason in err. */
int fv_mqtt_tls_check(const struct fv_mqtt_tls *t, const char *uri, const char *broker_key,
		      char *err, size_t errlen);
/* Point o's TLS fields at t's strings (borrowed: t must outlive
 * fv_mqtt_new()). */
void fv_mqtt_tls_apply(const struct fv_mqtt_tls *t, struct fv_mqtt_opts *o);

#endif
