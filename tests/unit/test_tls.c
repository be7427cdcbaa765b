/* Unit tests for TLS in lib/mqtt against a real Mosquitto broker.
 *
 * The test makes a throw-away PKI with openssl (tests/tls/mkcerts.sh) in a
 * temporary directory and starts `mosquitto` with three TLS listeners:
 *
 *   plain  server.crt, no client certificate needed
 *   mutual server.crt, client certificate required (use_identity_as_username)
 *   wrong  badhost.crt: a certificate of the test CA for another host name
 *
 * Negative cases are started together and then observed for a while: a
 * client that should be refused must still be disconnected after the
 * positive control (started at the same time) has long connected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fedvigil/mqtt.h"
#include "fedvigil/util.h"

/* Positive connects may take a TLS handshake plus a retry under emulation
 * (qemu-user on a loaded machine); they return as soon as they succeed. */

/* How long a refused client is watched after the control connected. */
#define REFUSE_WATCH_MS 1500

static struct {
	char bin[256];   /* mosquitto executable */
	char dir[64];    /* temporary directory: PKI, config, log */
	int port_plain;  /* TLS, server authentication only */
	int port_mutual; /* TLS, client certificate required */
	int port_wrong;  /* TLS with a certificate for another host */
	pid_t pid;       /* broker, 0 when not running */
} B;

static bool find_mosquitto(void)
{
	static const char *const dirs[] = { "/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin" };

	for (size_t i = 0; i < FV_ARRAY_SIZE(dirs); i++) {
		snprintf(B.bin, sizeof(B.bin), "%s/mosquitto", dirs[i]);
		if (access(B.bin, X_OK) == 0)
			return true;
	}
	return false;
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		close(fd);
		return -1;
	}
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool port_open(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *path(const char *name)
{
	static char buf[8][160];
	static int next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", B.dir, name);
	return p;
}

static const char *uri(int port)
{
	static char buf[4][64];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "ssl://127.0.0.1:%d", port);
	return p;
}

static int broker_start(void)
{
	struct passwd *pw = getpwuid(geteuid());
	char conf[160];
	FILE *f;
	pid_t pid;

	snprintf(conf, sizeof(conf), "%s", path("mosquitto.conf"));
	f = fopen(conf, "w");
	if (!f)
		return -1;
	/* Run as root, mosquitto drops to user "mosquitto", which cannot read
	 * our 0700 directory; `user` keeps the current one. */
	fprintf(f, "user %s\npersistence false\nlog_dest file %s\nallow_anonymous true\n",
		pw ? pw->pw_name : "mosquitto", path("mosquitto.log"));
	fprintf(f, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n", B.port_plain,
		path("ca.crt"), path("server.crt"), path("server.key"));
	fprintf(f, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
		"require_certificate true\nuse_identity_as_username true\n",
		B.port_mutual, path("ca.crt"), path("server.crt"), path("server.key"));
	fprintf(f, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n", B.port_wrong,
		path("ca.crt"), path("badhost.crt"), path("badhost.key"));
	fclose(f);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
			dup2(devnull, STDOUT_FILENO);
			dup2(devnull, STDERR_FILENO);
		}
		execl(B.bin, "mosquitto", "-c", conf, (char *)NULL);
		_exit(127);
	}
	B.pid = pid;
	for (int i = 0; i < 200; i++) {
		int st;

		if (port_open(B.port_plain) && port_open(B.port_mutual) && port_open(B.port_wrong))
			return 0;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			B.pid = 0;
			fprintf(stderr, "test_tls: mosquitto exited at start (status %d); see %s\n",
				st, path("mosquitto.log"));
			return -1;
		}
		sleep_ms(50);
	}
	fprintf(stderr, "test_tls: mosquitto did not listen within 10 s\n");
	return -1;
}

static int group_setup(void **state)
{
	const char *src = getenv("FV_SOURCE_DIR");
	char cmd[512];

	(void)state;
	if (!find_mosquitto()) {
		fprintf(stderr, "test_tls: the mosquitto broker is not installed\n");
		return -1;
	}
	strcpy(B.dir, "/tmp/fv-test-tls.XXXXXX");
	if (!mkdtemp(B.dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "bash %s/tests/tls/mkcerts.sh %s pump-1", src ? src : ".",
		 B.dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_tls: '%s' failed (openssl installed? FV_SOURCE_DIR set?)\n",
			cmd);
		return -1;
	}
	B.port_plain = free_port();
	B.port_mutual = free_port();
	B.port_wrong = free_port();
	if (B.port_plain < 0 || B.port_mutual < 0 || B.port_wrong < 0)
		return -1;
	return broker_start();
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (B.pid > 0) {
		kill(B.pid, SIGTERM);
		waitpid(B.pid, NULL, 0);
	}
	if (!getenv("FV_KEEP") && strncmp(B.dir, "/tmp/fv-test-tls.", 17) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", B.dir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_tls: could not remove %s\n", B.dir);
	}
	return 0;
}

/* ---- helpers ---- */

static struct fv_mqtt *start(struct fv_mqtt_opts *o)
{
	struct fv_mqtt *c = fv_mqtt_new(o);

	assert_non_null(c);
	assert_int_equal(fv_mqtt_start(c), 0);
	return c;
}

static void drain(struct fv_mqtt *c)
{
	struct fv_mqtt_msg m;
	enum fv_mqtt_event ev;

	while ((ev = fv_mqtt_next(c, &m)) != FV_MQTT_EV_NONE)
		if (ev == FV_MQTT_EV_MESSAGE)
			fv_mqtt_msg_clear(&m);
}

static bool wait_connected(struct fv_mqtt *c, int ms)
{
	int64_t end = fv_now_mono_ms() + ms;

	while (fv_now_mono_ms() < end) {
		drain(c);
		if (fv_mqtt_connected(c))
			return true;
		sleep_ms(20);
	}
	return fv_mqtt_connected(c);
}

/* A message published by c comes back to it over the TLS session. */
static void roundtrip(struct fv_mqtt *c, const char *topic)
{
	struct fv_mqtt_msg m;
	int64_t end;

	assert_int_equal(fv_mqtt_subscribe(c, topic, 1), 0);
	sleep_ms(200); /* the SUBSCRIBE reaches the broker first */
	assert_int_equal(fv_mqtt_publish(c, topic, "over tls", 8, 1, false), 0);
	end = fv_now_mono_ms() + 5000;
	while (fv_now_mono_ms() < end) {
		enum fv_mqtt_event ev = fv_mqtt_next(c, &m);

		if (ev == FV_MQTT_EV_MESSAGE) {
			assert_string_equal(m.topic, topic);
			assert_int_equal(m.len, 8);
			assert_memory_equal(m.payload, "over tls", 8);
			fv_mqtt_msg_clear(&m);
			return;
		}
		if (ev == FV_MQTT_EV_NONE)
			sleep_ms(20);
	}
	fail_msg("message on %s did not come back", topic);
}

/* ---- tests ---- */

/* Server authentication with our CA; a message makes the round trip. */
static void test_server_auth(void **state)
{
	struct fv_mqtt_opts o = { 0 };
	struct fv_mqtt *c;

	(void)state;
	o.uri = uri(B.port_plain);
	o.client_id = "tls-server-auth";
	o.ca_file = path("ca.crt");
	c = start(&o);
	assert_true(wait_connected(c, 30000));
	roundtrip(c, "fvtest/tls/server");
	fv_mqtt_free(c, 2000);
}

/* Mutual TLS: a client certificate of our CA is accepted; the broker
 * takes its CN as the user name. */
static void test_client_cert(void **state)
{
	struct fv_mqtt_opts o = { 0 };
	struct fv_mqtt *c;

	(void)state;
	o.uri = uri(B.port_mutual);
	o.client_id = "tls-client-cert";
	o.ca_file = path("ca.crt");
	o.cert_file = path("pump-1.crt");
	o.key_file = path("pump-1.key");
	c = start(&o);
	assert_true(wait_connected(c, 30000));
	roundtrip(c, "fvtest/tls/mutual");
	fv_mqtt_free(c, 2000);
}

/* Every one of these must stay disconnected: unknown CA (system store
 * only), a certificate for another host name, no client certificate, a
 * client certificate from a CA the broker does not trust, and plain MQTT
 * to a TLS port. A verified client started at the same time connects. */
static void test_refused(void **state)
{
	struct fv_mqtt_opts ok = { 0 }, bad[5];
	struct fv_mqtt *good, *c[5];
	char tcp[64];

	(void)state;
	memset(bad, 0, sizeof(bad));
	for (int i = 0; i < 5; i++)
		bad[i].ca_file = path("ca.crt");
	bad[0].uri = uri(B.port_plain); /* system store only: our CA unknown */
	bad[0].ca_file = NULL;
	bad[0].client_id = "tls-no-ca";
	bad[1].uri = uri(B.port_wrong); /* host name 127.0.0.1 not in cert */
	bad[1].client_id = "tls-wrong-host";
	bad[2].uri = uri(B.port_mutual); /* no client certificate */
	bad[2].client_id = "tls-no-cert";
	bad[3].uri = uri(B.port_mutual); /* untrusted client certificate */
	bad[3].client_id = "tls-rogue";
	bad[3].cert_file = path("rogue.crt");
	bad[3].key_file = path("rogue.key");
	snprintf(tcp, sizeof(tcp), "tcp://127.0.0.1:%d", B.port_plain);
	bad[4].uri = tcp; /* plain MQTT to a TLS listener */
	bad[4].ca_file = NULL;
	bad[4].client_id = "tls-plain";
	for (int i = 0; i < 5; i++)
		c[i] = start(&bad[i]);
	ok.uri = uri(B.port_mutual);
	ok.client_id = "tls-control";
	ok.ca_file = path("ca.crt");
	ok.cert_file = path("pump-1.crt");
	ok.key_file = path("pump-1.key");
	good = start(&ok);
	assert_true(wait_connected(good, 30000));
	sleep_ms(REFUSE_WATCH_MS);
	for (int i = 0; i < 5; i++) {
		drain(c[i]);
		if (fv_mqtt_connected(c[i]))
			fail_msg("client %s connected but should have been refused", bad[i].client_id);
	}
	for (int i = 0; i < 5; i++)
		fv_mqtt_free(c[i], 0);
	fv_mqtt_free(good, 1000);
}

/* insecure = true encrypts without checking the broker: it connects to
 * the wrong-host listener without our CA (and says so in the log). */
static void test_insecure(void **state)
{
	struct fv_mqtt_opts o = { 0 };
	struct fv_mqtt *c;

	(void)state;
	o.uri = uri(B.port_wrong);
	o.client_id = "tls-insecure";
	o.insecure = true;
	c = start(&o);
	assert_true(wait_connected(c, 30000));
	fv_mqtt_free(c, 1000);
}

/* Bad TLS setups are refused before any connection. */
static void test_bad_tls_options(void **state)
{
	struct fv_mqtt_opts o = { 0 };
	char key[160], cmd[400];

	(void)state;
	/* A TLS option with a plain URI: never silently without TLS. */
	o.uri = "tcp://127.0.0.1:1";
	o.ca_file = path("ca.crt");
	assert_null(fv_mqtt_new(&o));
	o.ca_file = NULL;
	o.insecure = true;
	assert_null(fv_mqtt_new(&o));

	/* A key file readable by group or others is refused; 0600 is not. */
	snprintf(key, sizeof(key), "%s", path("loose.key"));
	snprintf(cmd, sizeof(cmd), "cp %s %s && chmod 640 %s", path("pump-1.key"), key, key);
	assert_int_equal(system(cmd), 0);
	memset(&o, 0, sizeof(o));
	o.uri = uri(B.port_mutual);
	o.cert_file = path("pump-1.crt");
	o.key_file = key;
	assert_null(fv_mqtt_new(&o));
	assert_int_equal(chmod(key, 0604), 0);
	assert_null(fv_mqtt_new(&o));
	assert_int_equal(chmod(key, 0600), 0);
	struct fv_mqtt *c = fv_mqtt_new(&o);

	assert_non_null(c);
	fv_mqtt_free(c, 0);

	/* A key without a certificate; a missing key file. */
	o.cert_file = NULL;
	assert_null(fv_mqtt_new(&o));
	o.cert_file = path("pump-1.crt");
	o.key_file = path("missing.key");
	assert_null(fv_mqtt_new(&o));

	assert_true(fv_mqtt_uri_is_tls("ssl://h:1"));
	assert_true(fv_mqtt_uri_is_tls("mqtts://h:1"));
	assert_true(fv_mqtt_uri_is_tls("wss://h:1"));
	assert_false(fv_mqtt_uri_is_tls("tcp://h:1"));
	assert_false(fv_mqtt_uri_is_tls("ws://h:1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_auth),
		cmocka_unit_test(test_client_cert),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_insecure),
		cmocka_unit_test(test_bad_tls_options),
	};

	signal(SIGPIPE, SIG_IGN);
	fv_log_setup(FV_LOG_WARNING, "test_tls");
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
