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
/* Print "PROG: <message>\nTry 'PROG --help'." to stderr (fv_log_usage():
 * at journald's err priority under systemd); returns 2 (the usage exit
 * code). */
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
/* --broker / --prefix values: *ret = s and 0 when valid, else the usage
 * error printed and 2 returned (the usage exit code). */
int fv_cli_opt_broker(const char *s, const char **ret);
int fv_cli_opt_prefix(const char *s, const char **ret);

/* ---- broker authentication and TLS, shared by the tools that connect ----
 * Add FV_CLI_MQTT_LONGOPTS to the getopt_long table, FV_CLI_MQTT_HELP to
 * the usage text, try fv_cli_mqtt_option() in the `default:` branch, and
 * call fv_cli_mqtt_apply() before fv_mqtt_new(). No password on the
 * command line (ps shows it to every user): only a password file. */
enum {
	FV_CLI_OPT_USERNAME = 0x4000,
	FV_CLI_OPT_PASSWORD_FILE,
	FV_CLI_OPT_CAFILE,
	FV_CLI_OPT_CERT,
	FV_CLI_OPT_KEY,
	FV_CLI_OPT_INSECURE,
};
#define FV_CLI_MQTT_LONGOPTS                                                        \
	{ "username", required_argument, NULL, FV_CLI_OPT_USERNAME },                \
	{ "password-file", required_argument, NULL, FV_CLI_OPT_PASSWORD_FILE },      \
	{ "cafile", required_argument, NULL, FV_CLI_OPT_CAFILE },                    \
	{ "cert", required_argument, NULL, FV_CLI_OPT_CERT },                        \
	{ "key", required_argument, NULL, FV_CLI_OPT_KEY },                          \
	{ "insecure", no_argument, NULL, FV_CLI_OPT_INSECURE }
#define FV_CLI_MQTT_HELP                                                                    \
	"      --username NAME      broker user name\n"                                        \
	"      --password-file F    broker password: first line of F (mode 0600)\n"           \
	"      --cafile F           TLS (ssl:// broker): CA certificates, PEM (default:\n"    \
	"                           the system's store)\n"                                    \
	"      --cert F, --key F    TLS client certificate and its private key (0600)\n"     \
	"      --insecure           TLS without verifying the broker (tests only)\n"

/* The options above, as given. */
struct fv_cli_mqtt {
	const char *username;      /* NULL = none */
	const char *password_file; /* NULL = no password */
	struct fv_mqtt_tls tls;    /* [tls] equivalent */
	char password[256];        /* read by fv_cli_mqtt_apply() */
};
/* Initialise m (verify on, nothing else set). */
void fv_cli_mqtt_init(struct fv_cli_mqtt *m);
/* Take option opt (a getopt_long value) with argument arg: 1 when it was
 * one of ours, 0 when not, 2 after printing a usage error. */
int fv_cli_mqtt_option(struct fv_cli_mqtt *m, int opt, const char *arg);
/* Check the options against the broker URI, read the password file and
 * point o's fields at m's (m must outlive the client). 0, or 2 after
 * printing the reason. */
int fv_cli_mqtt_apply(struct fv_cli_mqtt *m, const char *broker, struct fv_mqtt_opts *o);

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
/* The same for len bytes of binary payload (Sparkplug B). */
int fv_cli_publish_bin(struct fv_mqtt *c, const char *broker, const char *topic, const void *payload,
		       size_t len, int qos, volatile sig_atomic_t *stop);
/* Sleep until ns nanoseconds after t0 (CLOCK_MONOTONIC, absolute), or until
 * *stop is set. */
void fv_cli_sleep_until(const struct timespec *t0, int64_t ns, volatile sig_atomic_t *stop);

#endif
