/* Shared by the fedvigil tools (sim, replay, score): command-line parsing
 * with uniform error messages, and a paced MQTT publisher. Not part of
 * libfedvigil: only the tools need it. */
#ifndef FEDVIGIL_TOOLS_CLI_H
#define FEDVIGIL_TOOLS_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "fedvigil/mqtt.h"

#define FV_CLI_PENDING_MAX 5000 /* unacknowledged publishes before we wait */

/* The program name used in messages; call first. */
void fv_cli_init(const char *prog);
/* Print "PROG: <message>\nTry 'PROG --help'." to stderr; returns 2 (the
 * usage exit code). */
int fv_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse flag's integer value s in [min, max]; prints the usage error and
 * returns -EINVAL (not a number) or -ERANGE; *ret untouched on failure. */
int fv_cli_parse_int(const char *flag, const char *s, long long min, long long max,
		     long long *ret);
/* Same for a finite floating-point value. */
int fv_cli_parse_num(const char *flag, const char *s, double min, double max, double *ret);
/* A broker URI: known scheme and a host (the MQTT client checks the rest). */
bool fv_cli_broker_valid(const char *s);
/* A topic prefix: non-empty, < 200 chars, no wildcards, no trailing '/'. */
bool fv_cli_prefix_valid(const char *s);

/* Take and discard pending client events (the client logs them itself). */
void fv_cli_drain(struct fv_mqtt *c);
void fv_cli_sleep_ms(int ms);
/* Wait until connected; false on timeout or when *stop becomes nonzero. */
bool fv_cli_wait_connected(struct fv_mqtt *c, double timeout_s, volatile sig_atomic_t *stop);
/* Publish with back-pressure: wait while more than FV_CLI_PENDING_MAX are
 * in flight or the client's offline buffer is full. 0, -EINTR when *stop is
 * set, or the client's error after repeated refusals. */
int fv_cli_publish(struct fv_mqtt *c, const char *broker, const char *topic, const char *payload,
		   int qos, volatile sig_atomic_t *stop);
/* Sleep until ns nanoseconds after t0 (CLOCK_MONOTONIC, absolute), or until
 * *stop is set. */
void fv_cli_sleep_until(const struct timespec *t0, int64_t ns, volatile sig_atomic_t *stop);

#endif
