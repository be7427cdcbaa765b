/* Fuzz target for the daemons' own configuration loaders: the real key
 * tables of agent/config.c and coordinator/config.c, with their cross-field
 * checks. The first byte picks the daemon (even: agent, odd: coordinator),
 * the rest is the INI file. Every failure must say why; what loads and
 * passes the checks must hold what the daemons rely on.
 *
 * tests/CMakeLists.txt links agent/config.c and coordinator/config.c; with
 * replay_main.c it replays tests/fuzz/corpus/daemoncfg/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "coord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void agent(const char *path)
{
	static struct agent_config c;
	char err[1024] = "";

	if (agent_config_load(&c, path, err, sizeof(err)) < 0 ||
	    agent_config_check(&c, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	if (!fv_name_valid(c.id) || !fv_name_valid(c.fleet) || c.n_channels > FV_MAX_CHANNELS ||
	    c.period_ms <= 0)
		abort();
	for (uint32_t i = 0; i < c.n_channels; i++)
		if (!memchr(c.channels[i].topic, '\0', sizeof(c.channels[i].topic)) ||
		    !c.channels[i].topic[0])
			abort();
}

static void coordinator(const char *path)
{
	static struct coord_config c;
	char err[1024] = "";

	if (coord_config_defaults(&c, err, sizeof(err)) < 0)
		abort();
	if (fv_cfg_load(coord_cfg_keys, coord_cfg_nkeys, &c, path, NULL, NULL, err, sizeof(err)) <
		    0 ||
	    coord_config_finish(&c, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	if (!fv_name_valid(c.fleet) || !fv_name_valid(c.id) || fv_model_spec_validate(&c.spec) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/fvfuzzdcfgXXXXXX";
	int fd;

	if (size < 1)
		return 0;
	fd = mkstemp(path);
	if (fd < 0)
		return 0;
	if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
		close(fd);
		unlink(path);
		return 0;
	}
	close(fd);
	if (data[0] & 1)
		coordinator(path);
	else
		agent(path);
	unlink(path);
	return 0;
}
