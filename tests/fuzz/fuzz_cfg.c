/* Fuzz target for the INI configuration loader (fv_cfg_load, fv_cfg_set):
 * the input is written to a temporary file and loaded over a table with a
 * key of every type and dynamic [channel.X] sections; an input with '='
 * is also tried as a "section.key=value" override.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=c11 \
 *     -Iinclude tests/fuzz/fuzz_cfg.c lib/util/[a-z]*.c -linih -lm -o fuzz_cfg
 * Linked with replay_main.c it replays the corpus (ctest). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedvigil/cfg.h"
#include "fedvigil/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct conf {
	char name[16];
	long long count;
	double ratio;
	bool on;
	int mode;
	unsigned channels;
};

static const char *const modes[] = { "wall", "data", NULL };

#define K(sec, key, type, def, lo, hi, ch, field, help)                                          \
	{ sec, key, type, def, lo, hi, ch, offsetof(struct conf, field),                          \
	  sizeof(((struct conf *)0)->field), help }
static const struct fv_cfg_key keys[] = {
	K("a", "name", FV_CFG_STR, "x", 0, 0, NULL, name, "a string"),
	K("a", "count", FV_CFG_INT, "3", -5, 1000000, NULL, count, "an integer"),
	K("b", "ratio", FV_CFG_DOUBLE, "0.5", 0, 1, NULL, ratio, "a double"),
	K("b", "on", FV_CFG_BOOL, "no", 0, 0, NULL, on, "a bool"),
	K("b", "mode", FV_CFG_ENUM, "wall", 0, 0, modes, mode, "an enum"),
};

static int extra(void *userdata, const char *section, const char *name, const char *value,
		 const char **ret_why)
{
	struct conf *c = userdata;

	(void)name;
	(void)value;
	if (strncmp(section, "channel.", 8) != 0) {
		*ret_why = "unknown section";
		return -22;
	}
	c->channels++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/fvfuzzcfgXXXXXX", err[512], dotted[64];
	struct conf c;
	const char *eq;
	int fd;

	if (fv_cfg_defaults(keys, FV_ARRAY_SIZE(keys), &c, err, sizeof(err)) < 0)
		abort();
	fd = mkstemp(path);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		unlink(path);
		return 0;
	}
	close(fd);
	err[0] = '\0';
	if (fv_cfg_load(keys, FV_ARRAY_SIZE(keys), &c, path, extra, &c, err, sizeof(err)) < 0 &&
	    !err[0])
		abort(); /* every failure must say why */
	unlink(path);
	/* The loaded values respect their bounds. */
	if (c.count < -5 || c.count > 1000000 || c.ratio < 0 || c.ratio > 1 || c.mode < 0 ||
	    c.mode > 1 || memchr(c.name, '\0', sizeof(c.name)) == NULL)
		abort();

	eq = memchr(data, '=', size);
	if (eq && (size_t)(eq - (const char *)data) < sizeof(dotted)) {
		size_t k = (size_t)(eq - (const char *)data);
		char *val = malloc(size - k);

		if (!val)
			return 0;
		memcpy(dotted, data, k);
		dotted[k] = '\0';
		memcpy(val, eq + 1, size - k - 1);
		val[size - k - 1] = '\0';
		fv_cfg_set(keys, FV_ARRAY_SIZE(keys), &c, dotted, val, err, sizeof(err));
		free(val);
	}
	return 0;
}
