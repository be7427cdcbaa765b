/* The coordinator the fuzz targets fuzz_coord and fuzz_state run: a small
 * model (window 2, channels 2, hidden 3), fleet "fz", state in a private
 * temporary directory. Header-only, included by those two targets. */
#ifndef FEDVIGIL_FUZZ_COORDFIX_H
#define FEDVIGIL_FUZZ_COORDFIX_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"

#define FZ_FLEET "fz"

static char fz_dir[64];

/* At exit: remove the state directory and what the coordinator left in it. */
static void fz_cleanup(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/coordinator.state", fz_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/coordinator.state.new", fz_dir);
	unlink(path);
	rmdir(fz_dir);
}

/* The configuration (made once) and its state directory. */
static inline struct coord_config *fz_config(void)
{
	static struct coord_config cfg;
	char *dir = fz_dir;
	char err[512];

	if (dir[0])
		return &cfg;
	/* Quiet (every bad input would log); FV_FUZZ_LOG=1 to see why. */
	fv_log_setup(getenv("FV_FUZZ_LOG") ? FV_LOG_DEBUG : (enum fv_log_level)(FV_LOG_ERR - 1),
		     "fuzz");
	/* tmpfs when there is one: the coordinator fsyncs every state write */
	snprintf(fz_dir, sizeof(fz_dir), "/dev/shm/fvfuzzcoordXXXXXX");
	if (!mkdtemp(fz_dir)) {
		snprintf(fz_dir, sizeof(fz_dir), "/tmp/fvfuzzcoordXXXXXX");
		if (!mkdtemp(fz_dir))
			abort();
	}
	if (coord_config_defaults(&cfg, err, sizeof(err)) < 0)
		abort();
	atexit(fz_cleanup);
	fv_strlcpy(cfg.fleet, FZ_FLEET, sizeof(cfg.fleet));
	fv_strlcpy(cfg.state_dir, dir, sizeof(cfg.state_dir));
	fv_strlcpy(cfg.hidden, "3", sizeof(cfg.hidden));
	cfg.window = 2;
	cfg.channels = 2;
	cfg.min_agents = 2;
	cfg.rounds = 4;
	cfg.deadline_ms = 1000;
	cfg.interval_ms = 100;
	cfg.max_extensions = 1;
	cfg.late = 1; /* hold late updates: that path too */
	if (coord_config_finish(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz config: %s\n", err);
		abort();
	}
	return &cfg;
}

/* <state_dir>/coordinator.state into buf. */
static inline void fz_state_path(char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s/coordinator.state", fz_config()->state_dir) >= len)
		abort();
}

#endif
