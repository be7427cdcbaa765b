/* fedvigil-agent: configuration and state of one agent daemon. */
#ifndef FEDVIGIL_AGENT_H
#define FEDVIGIL_AGENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "fedvigil/cfg.h"
#include "fedvigil/detect.h"
#include "fedvigil/fl.h"
#include "fedvigil/fleet.h"
#include "fedvigil/ingest.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/nn.h"
#include "fedvigil/scorer.h"
#include "fedvigil/sparkplug.h"
#include "fedvigil/util.h"
#include "fedvigil/wire.h"

enum agent_clock {
	AGENT_CLOCK_WALL = 0, /* sample on the agent's own clock */
	AGENT_CLOCK_DATA = 1, /* sample on the payloads' timestamps */
};

/* One model channel fed by one sensor topic. */
struct agent_channel {
	char name[FV_NAME_MAX];     /* channel name, used in alerts */
	char topic[FV_TOPIC_MAX];   /* MQTT topic (no wildcards) */
	struct fv_payload_spec fmt; /* how to read its payloads */
	bool fmt_set;               /* format given in the section */
	/* Sparkplug B instead of a topic of its own (metric set) */
	char sp_metric[FV_SPB_NAME_MAX]; /* metric name in the edge node's births/data */
	char sp_device[FV_SPB_ID_MAX];   /* its device; "" = sparkplug.device */
	bool sp_device_set;         /* device given in the section */
};

struct agent_config {
	/* [agent] */
	char id[FV_NAME_MAX];       /* agent id, unique in the fleet */
	char fleet[FV_NAME_MAX];    /* fleet name */
	char broker[256];           /* broker URI */
	char username[64];          /* broker user, "" = none */
	char password[128];         /* broker password, "" = none */
	char password_file[512];    /* file holding the password, "" = none */
	long long keepalive_s;      /* MQTT keepalive: a silent link is dead after 1.5x */
	int log_level;              /* index into log level names */
	long long max_model_kb;     /* refuse models needing more memory */
	long long max_batch;        /* largest local mini-batch */
	char score_log[512];        /* CSV of every window's score, "" = off */
	long long metrics_interval_ms; /* period of agent/<id>/metrics */
	/* [ingest] */
	int clock;                  /* enum agent_clock */
	long long period_ms;        /* sampling period */
	long long max_age_ms;       /* older readings make a vector incomplete */
	long long buffer;           /* vectors kept for local training */
	int format;                 /* default payload format (enum) */
	char value_path[64];        /* default JSON value path */
	char ts_path[64];           /* default JSON timestamp path */
	/* [detect] */
	long long k;                /* raise when k of the last n windows ... */
	long long n;                /* ... are above the threshold */
	double clear_ratio;         /* calm below threshold * clear_ratio */
	long long clear_n;          /* calm windows in a row to clear */
	long long top_channels;     /* channels named in an alert */
	int thr_mode;               /* enum fv_thr_mode: global|local|adaptive */
	double prior_windows;       /* local/adaptive: weight of the fleet's scores */
	double halflife;            /* adaptive: half-life of own calm scores (windows) */
	double calib_prior;         /* calibration: windows the fleet's errors count as */
	/* [tls] */
	struct fv_mqtt_tls tls;     /* CA, client certificate, verification */
	/* [sign] */
	char sign_model_key[512];   /* coordinator's public key(s); "" = models unverified */
	char sign_key_file[512];    /* this agent's private key; "" = updates unsigned */
	char sign_version_file[512]; /* highest model accepted, kept across restarts */
	/* [metrics] */
	char metrics_listen[64];    /* Prometheus address "127.0.0.1:9109", "" = off */
	/* [sparkplug] */
	char sp_group[FV_SPB_ID_MAX];  /* group id of the edge node feeding the channels */
	char sp_node[FV_SPB_ID_MAX];   /* its edge node id */
	char sp_device[FV_SPB_ID_MAX]; /* default device of the channels, "" = node metrics */
	bool sp_rebirth;            /* ask for a rebirth when aliases are unknown */
	bool sp_presence;           /* be a Sparkplug edge node too (presence.c) */
	char sp_presence_group[FV_SPB_ID_MAX]; /* its group; "" = sp_group or "fedvigil" */
	/* [channel.NAME] sections */
	uint32_t n_channels;
	struct agent_channel channels[FV_MAX_CHANNELS];
};

extern const struct fv_cfg_key agent_cfg_keys[];
extern const size_t agent_cfg_nkeys;
/* Keys applied live on SIGHUP ("section.name" or "section.*", NULL-ended);
 * the others, and the [channel.NAME] sections, need a restart. */
extern const char *const agent_live_keys[];

/* Load defaults, then the file (if path != NULL). 0 or -errno with err. */
int agent_config_load(struct agent_config *c, const char *path, char *err, size_t errlen);
/* Cross-field validation after all overrides. */
int agent_config_check(struct agent_config *c, char *err, size_t errlen);
/* A SECTION.KEY=VALUE override from the command line. */
struct agent_config_set {
	const char *key, *val;
};
/* defaults < file (path may be NULL) < environment variables
 * env_prefix<SECTION>_<KEY> (env NULL: none) < sets, in order, then the
 * cross-field checks (errors name the file). 0 or -errno with err. */
int agent_config_load_all(struct agent_config *c, const char *path, const char *env_prefix,
			  char *const *env, const struct agent_config_set *sets, size_t nsets,
			  char *err, size_t errlen);

struct agent;

/* Build an agent from a checked config; NULL on failure (logged). */
struct agent *agent_new(const struct agent_config *c);
void agent_free(struct agent *a);
/* How main.c steers the loop: signal flags and a configuration loader. */
struct agent_ctl {
	volatile sig_atomic_t *stop;   /* nonzero: stop (SIGTERM, SIGINT) */
	volatile sig_atomic_t *reload; /* nonzero: reload (SIGHUP); the loop clears it */
	/* Build the configuration again (file + the same command line) into
	 * ret; 0, or -errno with the reason in err. */
	int (*load)(struct agent_config *ret, char *err, size_t errlen);
};
/* Run the main loop until *ctl->stop becomes nonzero. Returns the exit
 * status. Feeds systemd's watchdog once per iteration and sends READY=1
 * once connected and synced (fedvigil/svc.h). */
int agent_run(struct agent *a, const struct agent_ctl *ctl);
/* The agent as a Sparkplug B edge node (presence.c): NBIRTH/NDATA/NDEATH
 * on a connection of its own. */
struct agent_presence;
struct agent_presence_values {
	double score;           /* last window's score */
	double threshold;       /* threshold in force (0 = none) */
	bool alert;             /* an alert is raised */
	bool connected;         /* the main connection is up */
	uint64_t alerts;        /* alerts raised since start */
	uint64_t model_version; /* model in use (0 = none) */
	uint64_t round;         /* last announced round */
};
/* NULL on failure (logged). c is borrowed and must outlive the result. */
struct agent_presence *agent_presence_new(const struct agent_config *c);
void agent_presence_free(struct agent_presence *p);
int agent_presence_start(struct agent_presence *p);
/* Poll it for POLLIN with the main loop. */
int agent_presence_fd(const struct agent_presence *p);
/* Each loop iteration: births on (re)connect and rebirth requests, NDATA
 * of what changed, at most every metrics interval (an alert at once). */
void agent_presence_update(struct agent_presence *p, const struct agent_presence_values *v,
			   int64_t now_ms);
/* NDEATH, then disconnect. */
void agent_presence_stop(struct agent_presence *p);
/* NBIRTHs sent so far. */
uint64_t agent_presence_births(const struct agent_presence *p);

/* Apply a reloaded, checked configuration: live keys take effect, changes
 * to the others are logged as needing a restart, the score log is
 * reopened (log rotation). Returns the number of keys changed. */
int agent_reload(struct agent *a, const struct agent_config *next);

/* sign.version_file (seen.c). Format the line for (epoch, version) into
 * buf: its length, or -ENOBUFS. */
int agent_seen_format(char *buf, size_t len, uint64_t epoch, uint64_t version);
/* Parse the file's text (len bytes, need not be NUL-terminated): 0 with
 * *ret_epoch and *ret_version set, or -EBADMSG (they are untouched). */
int agent_seen_parse(const char *text, size_t len, uint64_t *ret_epoch, uint64_t *ret_version);
/* Test tooling only (tools/adversary: a compromised agent). fn is called
 * with each training update just before it is compressed and sent, and may
 * rewrite it in place: u->delta (u->n_params floats, writable),
 * u->n_samples, u->loss, u->hist. NULL removes the hook. */
typedef void (*agent_update_hook)(void *ctx, struct fv_update *u);
void agent_set_update_hook(struct agent *a, agent_update_hook fn, void *ctx);

#endif
