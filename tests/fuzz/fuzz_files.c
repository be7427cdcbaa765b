/* Fuzz target for the small files and strings the daemons read besides
 * messages: the first byte of an input picks the parser, the rest is the
 * content.
 *
 *   0 the agent's sign.version_file (agent/seen.c): what parses must format
 *     back to a line that parses to the same numbers
 *   1 a public key file (fv_verify_keys_load: sign.model_key, agent keys)
 *   2 a private key file, mode 0600 (fv_sign_key_load)
 *   3 a password file, mode 0600 (fv_secret_read_line)
 *   4 a topic delivered by the broker (fv_topic_parse_update and
 *     fv_topic_parse_agent_state, as the coordinator runs them on every
 *     message): a parsed agent name must be valid and the topic built from
 *     it must be the input again
 *
 * Files are written to a private temporary directory. Built like the other
 * targets (tests/CMakeLists.txt links agent/seen.c); with replay_main.c it
 * replays tests/fuzz/corpus/files/. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "fedvigil/sign.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void cleanup(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/f", dir);
	unlink(path);
	rmdir(dir);
}

static const char *scratch(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/dev/shm/fvfuzzfiles.XXXXXX");
		if (!mkdtemp(dir)) {
			snprintf(dir, sizeof(dir), "/tmp/fvfuzzfiles.XXXXXX");
			if (!mkdtemp(dir))
				abort();
		}
		atexit(cleanup);
	}
	return dir;
}

/* Write p (n bytes) to <scratch>/f with the given mode; the path into buf. */
static int put(const uint8_t *p, size_t n, mode_t mode, char *buf, size_t len)
{
	FILE *f;

	snprintf(buf, len, "%s/f", scratch());
	unlink(buf);
	f = fopen(buf, "wb");
	if (!f)
		return -1;
	if (fwrite(p, 1, n, f) != n) {
		fclose(f);
		return -1;
	}
	fclose(f);
	return chmod(buf, mode);
}

static void version_file(const uint8_t *p, size_t n)
{
	uint64_t e = 7, v = 7, e2, v2;
	char line[160];
	int len;

	if (agent_seen_parse((const char *)p, n, &e, &v) < 0) {
		if (e != 7 || v != 7)
			abort(); /* untouched on failure */
		return;
	}
	len = agent_seen_format(line, sizeof(line), e, v);
	if (len < 0 || agent_seen_parse(line, (size_t)len, &e2, &v2) < 0 || e2 != e || v2 != v)
		abort();
}

static void topics(const uint8_t *p, size_t n)
{
	char *topic = malloc(n + 1), agent[FV_NAME_MAX], again[FV_TOPIC_MAX];
	uint64_t round;

	if (!topic)
		return;
	memcpy(topic, p, n);
	topic[n] = '\0';
	if (fv_topic_parse_update(topic, "fz", &round, agent) == 0) {
		if (!fv_name_valid(agent) || !fv_topic_update(again, "fz", round, agent) ||
		    strcmp(again, topic) != 0)
			abort();
	}
	if (fv_topic_parse_agent_state(topic, "fz", agent) == 0) {
		if (!fv_name_valid(agent) || !fv_topic_agent(again, "fz", agent, "state") ||
		    strcmp(again, topic) != 0)
			abort();
	}
	free(topic);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128], err[1024], pw[128];
	struct fv_verify_keys keys;
	struct fv_sign_key key;

	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	err[0] = '\0';
	switch (data[0] % 5) {
	case 0:
		version_file(p, n);
		break;
	case 1:
		if (put(p, n, 0644, path, sizeof(path)) == 0 &&
		    fv_verify_keys_load(path, &keys, err, sizeof(err)) == 0 &&
		    (keys.n < 1 || keys.n > FV_SIGN_MAX_KEYS))
			abort();
		break;
	case 2:
		if (put(p, n, 0600, path, sizeof(path)) == 0 &&
		    fv_sign_key_load(path, &key, err, sizeof(err)) == 0)
			fv_sign_key_wipe(&key);
		break;
	case 3:
		if (put(p, n, 0600, path, sizeof(path)) == 0 &&
		    fv_secret_read_line(path, "password file", pw, sizeof(pw), err, sizeof(err)) ==
			    0 &&
		    (memchr(pw, '\0', sizeof(pw)) == NULL || strchr(pw, '\n')))
			abort();
		break;
	default:
		topics(p, n);
		break;
	}
	return 0;
}
