/* fedvigil-agent configuration: the key table and [channel.NAME] sections. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "fedvigil/svc.h"

static const char *const log_levels[] = { "err", "warning", "notice", "info", "debug", NULL };
static const char *const clocks[] = { "wall", "data", NULL };
static const char *const formats[] = { "number", "json", NULL };
/* Order matches enum fv_thr_mode. */
static const char *const thr_modes[] = { "global", "local", "adaptive", NULL };

#define K(sec, key, type, def, lo, hi, ch, field, help)                                          \
	{ sec, key, type, def, lo, hi, ch, offsetof(struct agent_config, field),                 \
	  sizeof(((struct agent_config *)0)->field), help }

/* A key whose value is a secret: --dump-config does not print it. */
#define KS(sec, key, field, help)                                                                \
	{ sec, key, FV_CFG_STR, "", 0, 0, NULL, offsetof(struct agent_config, field),             \
	  sizeof(((struct agent_config *)0)->field), help, FV_CFG_SECRET }

const struct fv_cfg_key agent_cfg_keys[] = {
	K("agent", "id", FV_CFG_STR, "agent-1", 0, 0, NULL, id,
	  "agent id, unique in the fleet ([A-Za-z0-9_.-], 1-63 chars)"),
	K("agent", "fleet", FV_CFG_STR, "default", 0, 0, NULL, fleet, "fleet name"),
	K("agent", "broker", FV_CFG_STR, "tcp://127.0.0.1:1883", 0, 0, NULL, broker,
	  "MQTT broker URI"),
	K("agent", "username", FV_CFG_STR, "", 0, 0, NULL, username, "broker user name"),
	KS("agent", "password", password,
	   "broker password (prefer password_file: this file is then a secret too)"),
	K("agent", "password_file", FV_CFG_STR, "", 0, 0, NULL, password_file,
	  "file holding the broker password (first line; mode 0600); instead of password"),
	K("agent", "keepalive_s", FV_CFG_INT, "30", 2, 3600, NULL, keepalive_s,
	  "MQTT keepalive: a link silent for 1.5x this is declared dead (both ends), the "
	  "broker publishes our will, and we reconnect"),
	K("agent", "log_level", FV_CFG_ENUM, "info", 0, 0, log_levels, log_level,
	  "err|warning|notice|info|debug"),
	K("agent", "max_model_kb", FV_CFG_INT, "65536", 16, 4194304, NULL, max_model_kb,
	  "refuse a global model whose scorer plus trainer (at max_batch) need more "
	  "memory than this (KiB)"),
	K("agent", "max_batch", FV_CFG_INT, "256", 1, 4096, NULL, max_batch,
	  "largest local mini-batch: a round asking for more trains with this"),
	K("agent", "score_log", FV_CFG_STR, "", 0, 0, NULL, score_log,
	  "append every window's score to this CSV file (empty = off)"),
	K("agent", "metrics_interval_ms", FV_CFG_INT, "10000", 100, 3600000, NULL,
	  metrics_interval_ms, "how often to publish agent/<id>/metrics"),
	K("ingest", "clock", FV_CFG_ENUM, "wall", 0, 0, clocks, clock,
	  "wall: sample on the agent's clock; data: on the payloads' timestamps"),
	K("ingest", "period_ms", FV_CFG_INT, "1000", 1, 86400000, NULL, period_ms,
	  "sampling period of the aligned vectors"),
	K("ingest", "max_age_ms", FV_CFG_INT, "5000", 1, 864000000, NULL, max_age_ms,
	  "a channel not updated for this long makes a vector incomplete"),
	K("ingest", "buffer", FV_CFG_INT, "4096", 16, 1048576, NULL, buffer,
	  "vectors kept for local training (the ring buffer)"),
	K("ingest", "format", FV_CFG_ENUM, "json", 0, 0, formats, format,
	  "default payload format of the channels: number|json"),
	K("ingest", "value_path", FV_CFG_STR, "$.value", 0, 0, NULL, value_path,
	  "default JSON path of the value"),
	K("ingest", "ts_path", FV_CFG_STR, "$.ts", 0, 0, NULL, ts_path,
	  "default JSON path of the timestamp (ms since epoch or ISO-8601); empty = none"),
	K("detect", "k", FV_CFG_INT, "3", 1, FV_DETECT_MAX_N, NULL, k,
	  "raise an alert when k of the last n windows are above the threshold"),
	K("detect", "n", FV_CFG_INT, "5", 1, FV_DETECT_MAX_N, NULL, n, "see k"),
	K("detect", "clear_ratio", FV_CFG_DOUBLE, "0.8", 0.01, 1.0, NULL, clear_ratio,
	  "a window is calm below threshold * clear_ratio"),
	K("detect", "clear_n", FV_CFG_INT, "5", 1, 100000, NULL, clear_n,
	  "calm windows in a row that clear an alert"),
	K("detect", "top_channels", FV_CFG_INT, "3", 1, FV_MAX_CHANNELS, NULL, top_channels,
	  "channels named in an alert, by share of the error"),
	K("detect", "threshold", FV_CFG_ENUM, "adaptive", 0, 0, thr_modes, thr_mode,
	  "global: the fleet's threshold; local: the fleet's rule on the fleet's and this "
	  "machine's normal scores; adaptive: the fleet's, scaled by how far this machine's "
	  "scores moved since its calibration"),
	K("detect", "prior_windows", FV_CFG_DOUBLE, "2000", 0, 1e9, NULL, prior_windows,
	  "local: the fleet's normal scores count as this many windows; adaptive: the local "
	  "distribution does, against the recent scores"),
	K("detect", "halflife", FV_CFG_DOUBLE, "2000", 1, 1e9, NULL, halflife,
	  "adaptive: half-life, in windows, of the scores it follows"),
	K("detect", "calib_prior", FV_CFG_DOUBLE, "100", 0, 1e9, NULL, calib_prior,
	  "calibration: the fleet's per-column normal errors count as this many windows"),
	FV_MQTT_TLS_KEYS(struct agent_config, tls),
	K("sign", "model_key", FV_CFG_STR, "", 0, 0, NULL, sign_model_key,
	  "the coordinator's public key file (fedvigil-keygen; up to 8 keys): models and "
	  "announcements must be signed by one of them; empty: not verified"),
	K("sign", "key_file", FV_CFG_STR, "", 0, 0, NULL, sign_key_file,
	  "this agent's private key (mode 0600): signs its updates; empty: unsigned"),
	K("sign", "version_file", FV_CFG_STR, "", 0, 0, NULL, sign_version_file,
	  "keeps the highest model (epoch, version) accepted, so that an older one is "
	  "refused after a restart too; empty: in memory only"),
	K("metrics", "listen", FV_CFG_STR, "", 0, 0, NULL, metrics_listen,
	  "serve Prometheus metrics at http://ADDR/metrics: PORT, IPV4:PORT or [IPV6]:PORT "
	  "(PORT alone = 127.0.0.1; empty = off)"),
	K("sparkplug", "group", FV_CFG_STR, "", 0, 0, NULL, sp_group,
	  "Sparkplug B group id of the edge node that feeds the metric = channels"),
	K("sparkplug", "node", FV_CFG_STR, "", 0, 0, NULL, sp_node,
	  "its edge node id (topics spBv1.0/<group>/NBIRTH|NDATA|DBIRTH|DDATA/<node>[/<device>])"),
	K("sparkplug", "device", FV_CFG_STR, "", 0, 0, NULL, sp_device,
	  "default device id of the metric = channels (empty: the node's own metrics)"),
	K("sparkplug", "request_rebirth", FV_CFG_BOOL, "false", 0, 0, NULL, sp_rebirth,
	  "publish NCMD Node Control/Rebirth when data uses aliases no birth was seen for "
	  "(at most every 30 s)"),
	K("sparkplug", "presence", FV_CFG_BOOL, "false", 0, 0, NULL, sp_presence,
	  "also be a Sparkplug B edge node named agent.id: NBIRTH/NDATA (score, threshold, "
	  "alert, model version) and NDEATH as the will, on a second connection"),
	K("sparkplug", "presence_group", FV_CFG_STR, "", 0, 0, NULL, sp_presence_group,
	  "group id of that edge node (empty: sparkplug.group, or fedvigil)"),
};

const char *const agent_live_keys[] = {
	"agent.log_level", "agent.metrics_interval_ms", "agent.max_model_kb", "agent.score_log",
	"detect.*", NULL,
};
const size_t agent_cfg_nkeys = FV_ARRAY_SIZE(agent_cfg_keys);

/* [channel.NAME] sections: topic = ..., and optionally format, value_path,
 * ts_path overriding the [ingest] defaults. */
static int channel_key(void *userdata, const char *section, const char *name, const char *value,
		       const char **ret_why)
{
	struct agent_config *c = userdata;
	struct agent_channel *ch = NULL;
	const char *cname;

	if (strncmp(section, "channel.", 8) != 0) {
		*ret_why = "unknown section";
		return -EINVAL;
	}
	cname = section + 8;
	if (!fv_name_valid(cname)) {
		*ret_why = "channel name must be 1-63 chars of [A-Za-z0-9_.-]";
		return -EINVAL;
	}
	for (uint32_t i = 0; i < c->n_channels; i++)
		if (strcmp(c->channels[i].name, cname) == 0)
			ch = &c->channels[i];
	if (!ch) {
		if (c->n_channels >= FV_MAX_CHANNELS) {
			*ret_why = "too many channels (max 256)";
			return -E2BIG;
		}
		ch = &c->channels[c->n_channels++];
		memset(ch, 0, sizeof(*ch));
		fv_strlcpy(ch->name, cname, sizeof(ch->name));
	}
	if (strcmp(name, "topic") == 0) {
		if (!*value || strpbrk(value, "+#")) {
			*ret_why = "topic must be non-empty and without wildcards";
			return -EINVAL;
		}
		if (fv_strlcpy(ch->topic, value, sizeof(ch->topic)) < 0) {
			*ret_why = "topic too long (max 255)";
			return -E2BIG;
		}
	} else if (strcmp(name, "format") == 0) {
		if (fv_payload_format_parse(value, &ch->fmt.format) < 0) {
			*ret_why = "format must be number or json";
			return -EINVAL;
		}
		ch->fmt_set = true;
	} else if (strcmp(name, "value_path") == 0) {
		if (fv_strlcpy(ch->fmt.value_path, value, sizeof(ch->fmt.value_path)) < 0) {
			*ret_why = "value_path too long (max 63)";
			return -E2BIG;
		}
	} else if (strcmp(name, "metric") == 0) {
		if (!*value || fv_strlcpy(ch->sp_metric, value, sizeof(ch->sp_metric)) < 0) {
			*ret_why = "metric must be a Sparkplug metric name of 1-255 chars";
			return -EINVAL;
		}
	} else if (strcmp(name, "device") == 0) {
		if (*value && !fv_spb_id_valid(value)) {
			*ret_why = "device must be a Sparkplug device id (1-63 chars, no / + #)";
			return -EINVAL;
		}
		fv_strlcpy(ch->sp_device, value, sizeof(ch->sp_device));
		ch->sp_device_set = true;
	} else if (strcmp(name, "ts_path") == 0) {
		if (fv_strlcpy(ch->fmt.ts_path, value, sizeof(ch->fmt.ts_path)) < 0) {
			*ret_why = "ts_path too long (max 63)";
			return -E2BIG;
		}
	} else {
		*ret_why = "unknown key in a [channel.NAME] section (topic, format, value_path, ts_path; "
			   "or metric, device for Sparkplug B)";
		return -EINVAL;
	}
	return 0;
}

int agent_config_load(struct agent_config *c, const char *path, char *err, size_t errlen)
{
	int r;

	memset(c, 0, sizeof(*c));
	r = fv_cfg_defaults(agent_cfg_keys, agent_cfg_nkeys, c, err, errlen);
	if (r < 0 || !path)
		return r;
	return fv_cfg_load(agent_cfg_keys, agent_cfg_nkeys, c, path, channel_key, c, err, errlen);
}

int agent_config_check(struct agent_config *c, char *err, size_t errlen)
{
	int r;

	r = fv_mqtt_tls_check(&c->tls, c->broker, "agent.broker", err, errlen);
	if (r < 0)
		return r;
	if (c->password_file[0]) {
		if (c->password[0]) {
			snprintf(err, errlen, "agent.password and agent.password_file are both set");
			return -EINVAL;
		}
		r = fv_secret_read_line(c->password_file, "agent.password_file", c->password,
					sizeof(c->password), err, errlen);
		if (r < 0)
			return r;
	}
	if (c->sign_key_file[0]) {
		r = fv_file_check_private(c->sign_key_file, "sign.key_file", err, errlen);
		if (r < 0)
			return r;
	}
	if (!fv_name_valid(c->id)) {
		snprintf(err, errlen, "agent.id = '%s': must be 1-63 chars of [A-Za-z0-9_.-]", c->id);
		return -EINVAL;
	}
	if (!fv_name_valid(c->fleet)) {
		snprintf(err, errlen, "agent.fleet = '%s': must be 1-63 chars of [A-Za-z0-9_.-]",
			 c->fleet);
		return -EINVAL;
	}
	if (c->metrics_listen[0] &&
	    fv_httpd_check_listen("metrics.listen", c->metrics_listen, err, errlen) < 0)
		return -EINVAL;
	if (c->k > c->n) {
		snprintf(err, errlen, "detect.k = %lld is larger than detect.n = %lld", c->k, c->n);
		return -EINVAL;
	}
	if (c->n_channels == 0) {
		snprintf(err, errlen,
			 "no channels: add [channel.NAME] sections with topic = ... to the config");
		return -EINVAL;
	}
	bool sparkplug = false;

	for (uint32_t i = 0; i < c->n_channels; i++) {
		struct agent_channel *ch = &c->channels[i];

		if (ch->sp_metric[0]) {
			/* Sparkplug B: the edge node's births and data, no topic. */
			if (ch->topic[0] || ch->fmt_set) {
				snprintf(err, errlen,
					 "[channel.%s]: metric (Sparkplug B) and topic/format exclude "
					 "each other",
					 ch->name);
				return -EINVAL;
			}
			if (!ch->sp_device_set)
				fv_strlcpy(ch->sp_device, c->sp_device, sizeof(ch->sp_device));
			for (uint32_t j = 0; j < i; j++)
				if (strcmp(c->channels[j].sp_metric, ch->sp_metric) == 0 &&
				    strcmp(c->channels[j].sp_device, ch->sp_device) == 0) {
					snprintf(err, errlen,
						 "[channel.%s] and [channel.%s] read the same Sparkplug "
						 "metric '%s'",
						 c->channels[j].name, ch->name, ch->sp_metric);
					return -EINVAL;
				}
			sparkplug = true;
			continue;
		}
		if (ch->sp_device_set) {
			snprintf(err, errlen, "[channel.%s]: device without metric", ch->name);
			return -EINVAL;
		}
		if (!ch->topic[0]) {
			snprintf(err, errlen, "[channel.%s] has no topic (or metric, for Sparkplug B)",
				 ch->name);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++)
			if (strcmp(c->channels[j].topic, ch->topic) == 0) {
				snprintf(err, errlen, "[channel.%s] and [channel.%s] use the same topic %s",
					 c->channels[j].name, ch->name, ch->topic);
				return -EINVAL;
			}
		if (!ch->fmt_set)
			ch->fmt.format = (enum fv_payload_format)c->format;
		if (!ch->fmt.value_path[0])
			fv_strlcpy(ch->fmt.value_path, c->value_path, sizeof(ch->fmt.value_path));
		if (!ch->fmt.ts_path[0])
			fv_strlcpy(ch->fmt.ts_path, c->ts_path, sizeof(ch->fmt.ts_path));
	}
	if (sparkplug && (!fv_spb_id_valid(c->sp_group) || !fv_spb_id_valid(c->sp_node))) {
		snprintf(err, errlen,
			 "Sparkplug B channels need sparkplug.group and sparkplug.node (1-63 chars, "
			 "no / + #): have '%s' and '%s'",
			 c->sp_group, c->sp_node);
		return -EINVAL;
	}
	if (c->sp_presence_group[0] && !fv_spb_id_valid(c->sp_presence_group)) {
		snprintf(err, errlen, "sparkplug.presence_group = '%s': 1-63 chars, no / + #",
			 c->sp_presence_group);
		return -EINVAL;
	}
	if (c->sp_device[0] && !fv_spb_id_valid(c->sp_device)) {
		snprintf(err, errlen, "sparkplug.device = '%s': 1-63 chars, no / + #", c->sp_device);
		return -EINVAL;
	}
	if (c->clock == AGENT_CLOCK_DATA) {
		/* Sparkplug metrics carry their timestamps. */
		for (uint32_t i = 0; i < c->n_channels; i++)
			if (!c->channels[i].sp_metric[0] &&
			    (c->channels[i].fmt.format != FV_FMT_JSON || !c->channels[i].fmt.ts_path[0])) {
				snprintf(err, errlen,
					 "ingest.clock = data needs timestamps: [channel.%s] must be json "
					 "with a ts_path",
					 c->channels[i].name);
				return -EINVAL;
			}
	}
	return 0;
}

int agent_config_load_all(struct agent_config *c, const char *path, const char *env_prefix,
			  char *const *env, const struct agent_config_set *sets, size_t nsets,
			  char *err, size_t errlen)
{
	char why[512];
	int r;

	r = agent_config_load(c, path, err, errlen);
	if (r < 0)
		return r;
	if (env) {
		r = fv_cfg_env(agent_cfg_keys, agent_cfg_nkeys, c, env_prefix, env, err, errlen);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < nsets; i++) {
		r = fv_cfg_set(agent_cfg_keys, agent_cfg_nkeys, c, sets[i].key, sets[i].val, err,
			       errlen);
		if (r < 0)
			return r;
	}
	r = agent_config_check(c, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "%s%s%s", path ? path : "", path ? ": " : "", why);
		return r;
	}
	return 0;
}
