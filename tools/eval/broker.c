/* fedvigil-eval --broker: the same experiment through the real daemons.
 *
 * One fedvigil-agent process per entity and a fedvigil-coordinator, with
 * configurations written from the effective settings (fv_cfg_dump), on the
 * broker given with --broker. Like scripts/demo --data: the training rows
 * are published first (JSON {"ts","value"} per cell, topic
 * fvev/<fleet>/<entity>/<channel>), the coordinator starts once every agent
 * has taken them, runs its rounds, then the remaining rows are published
 * and the agents' score logs give each test row's score and alert state.
 * Bytes are what the broker carried (update, model and announcement
 * payloads, the latter two times the agents that receive them). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "eval.h"
#include "fedvigil/mqtt.h"

#define SETTLE_MS 2000       /* counters unchanged this long: the agents are idle */
#define ROUND_TIMEOUT_MS 180000

static volatile sig_atomic_t never_stop;

struct proc {
	pid_t pid;
	long rss_kb;  /* after it exited */
};

struct agent_seen {
	uint64_t messages;     /* from its metrics */
	uint64_t vectors;
	uint64_t model_version;
	uint64_t dropped;
	int64_t changed_ms;    /* last time a counter moved */
	bool online;
};

struct bk {
	struct ev_ctx *cx;
	struct ev_result *res;
	char dir[4200];
	char fleet[FV_NAME_MAX];
	char bindir[4096];
	struct fv_mqtt *mon, *pub;
	struct agent_seen *seen;   /* (E) */
	uint64_t *published;       /* (E) sensor messages sent to each agent */
	uint32_t train_rounds;     /* coord metrics of kind train seen */
	struct proc *agents;       /* (E) */
	struct proc coord;
	uint64_t *up_by_round;     /* (rounds + 1) update bytes per round */
	uint64_t down_pending;     /* model/announcement bytes since the last close */
};

static int spawn(const char *bin, char *const argv[], const char *log, pid_t *ret)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv(bin, argv);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	*ret = pid;
	return 0;
}

/* SIGTERM, up to 10 s, then SIGKILL; keeps the process's peak RSS. */
static void stop(struct proc *p)
{
	struct rusage ru;
	int st;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		pid_t w = wait4(p->pid, &st, WNOHANG, &ru);

		if (w == p->pid) {
			p->rss_kb = ru.ru_maxrss;
			p->pid = 0;
			return;
		}
		fv_cli_sleep_ms(50);
	}
	kill(p->pid, SIGKILL);
	if (wait4(p->pid, &st, 0, &ru) == p->pid)
		p->rss_kb = ru.ru_maxrss;
	p->pid = 0;
}

static bool alive(struct proc *p)
{
	int st;

	if (p->pid <= 0)
		return false;
	if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
		p->pid = 0;
		return false;
	}
	return true;
}

static int entity_of(const struct bk *b, const char *name)
{
	for (uint32_t e = 0; e < b->cx->ds->n_entities; e++)
		if (strcmp(b->cx->ds->ent[e].name, name) == 0)
			return (int)e;
	return -1;
}

static uint64_t num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

/* Everything the monitor subscription brings: agents' states and metrics,
 * the coordinator's metrics, and the protocol traffic (counted). */
static void on_msg(struct bk *b, const struct fv_mqtt_msg *m)
{
	uint32_t E = b->cx->ds->n_entities;
	char prefix[FV_TOPIC_MAX];
	const char *t;
	int n = snprintf(prefix, sizeof(prefix), "fedvigil/v1/%s/", b->fleet);

	if (strncmp(m->topic, prefix, (size_t)n) != 0)
		return;
	t = m->topic + n;
	if (strncmp(t, "round/", 6) == 0 && strstr(t, "/update/")) {
		uint64_t r = strtoull(t + 6, NULL, 10);

		b->res->bytes_up += m->len;
		if (r <= b->res->rounds)
			b->up_by_round[r] += m->len;
		return;
	}
	/* A round's announcement(s) and the model it produced come before the
	 * coordinator's metrics of that round. */
	if (strcmp(t, "round") == 0 || strcmp(t, "model") == 0) {
		b->res->bytes_down += (uint64_t)m->len * E;
		b->down_pending += (uint64_t)m->len * E;
		return;
	}
	if (strcmp(t, "coord/metrics") == 0) {
		cJSON *o = cJSON_ParseWithLength(m->payload, m->len);
		const cJSON *kind = o ? cJSON_GetObjectItemCaseSensitive(o, "kind") : NULL;
		struct ev_round *l;

		if (o && cJSON_IsString(kind)) {
			l = realloc(b->res->log, (b->res->n_log + 1) * sizeof(*l));
			if (l) {
				b->res->log = l;
				l = &l[b->res->n_log++];
				memset(l, 0, sizeof(*l));
				l->round = (uint32_t)num(o, "round");
				l->agents = (uint32_t)num(o, "agents");
				l->ms = (int64_t)num(o, "duration_ms");
				l->loss = (float)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "loss"));
				l->threshold =
					(float)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "threshold"));
				if (l->round <= b->res->rounds)
					l->bytes_up = b->up_by_round[l->round];
				l->bytes_down = b->down_pending;
				b->down_pending = 0;
				if (strcmp(kind->valuestring, "train") == 0) {
					b->train_rounds++;
					ev_progress(b->cx, "round", b->train_rounds, b->res->rounds,
						    l->loss);
				}
			}
		}
		cJSON_Delete(o);
		return;
	}
	if (strncmp(t, "agent/", 6) == 0) {
		char name[FV_NAME_MAX];
		const char *slash = strchr(t + 6, '/');
		int e;

		if (!slash || (size_t)(slash - t - 6) >= sizeof(name))
			return;
		memcpy(name, t + 6, (size_t)(slash - t - 6));
		name[slash - t - 6] = '\0';
		e = entity_of(b, name);
		if (e < 0)
			return;
		if (strcmp(slash, "/state") == 0) {
			b->seen[e].online = m->len && memmem(m->payload, m->len, "\"online\"", 8);
		} else if (strcmp(slash, "/metrics") == 0) {
			cJSON *o = cJSON_ParseWithLength(m->payload, m->len);
			struct agent_seen *s = &b->seen[e];
			uint64_t msgs, vec;

			if (!o)
				return;
			msgs = num(o, "messages");
			vec = num(o, "vectors");
			if (msgs != s->messages || vec != s->vectors)
				s->changed_ms = fv_now_mono_ms();
			s->messages = msgs;
			s->vectors = vec;
			s->model_version = num(o, "model_version");
			s->dropped = num(o, "mqtt_dropped");
			cJSON_Delete(o);
		}
	}
}

static void pump(struct bk *b, int wait_ms)
{
	struct pollfd pfd = { .fd = fv_mqtt_fd(b->mon), .events = POLLIN };
	struct fv_mqtt_msg m;
	enum fv_mqtt_event ev;

	if (wait_ms > 0)
		poll(&pfd, 1, wait_ms);
	while ((ev = fv_mqtt_next(b->mon, &m)) != FV_MQTT_EV_NONE)
		if (ev == FV_MQTT_EV_MESSAGE) {
			on_msg(b, &m);
			fv_mqtt_msg_clear(&m);
		}
}

/* Wait until cond(b) holds, pumping the monitor; -ETIMEDOUT after ms. A
 * daemon that died is an error at once. */
static int wait_for(struct bk *b, bool (*cond)(struct bk *), int64_t ms, const char *what)
{
	int64_t deadline = fv_now_mono_ms() + ms;
	uint32_t E = b->cx->ds->n_entities;

	while (!cond(b)) {
		if (fv_now_mono_ms() > deadline) {
			fv_log(FV_LOG_ERR, "--broker: timed out after %" PRId64 " s waiting for %s (logs "
					   "in %s)",
			       ms / 1000, what, b->dir);
			return -ETIMEDOUT;
		}
		for (uint32_t e = 0; e < E; e++)
			if (b->agents[e].pid > 0 && !alive(&b->agents[e])) {
				fv_log(FV_LOG_ERR, "--broker: fedvigil-agent %s exited (see %s/%s.log)",
				       b->cx->ds->ent[e].name, b->dir, b->cx->ds->ent[e].name);
				return -ECHILD;
			}
		if (b->coord.pid > 0 && !alive(&b->coord)) {
			fv_log(FV_LOG_ERR, "--broker: fedvigil-coordinator exited (see %s/coordinator.log)",
			       b->dir);
			return -ECHILD;
		}
		pump(b, 100);
	}
	return 0;
}

static bool all_online(struct bk *b)
{
	for (uint32_t e = 0; e < b->cx->ds->n_entities; e++)
		if (!b->seen[e].online)
			return false;
	return true;
}

/* Every agent took every reading sent to it and has been idle a moment. */
static bool all_idle(struct bk *b)
{
	int64_t now = fv_now_mono_ms();

	for (uint32_t e = 0; e < b->cx->ds->n_entities; e++) {
		const struct agent_seen *s = &b->seen[e];

		if (s->messages < b->published[e] || now - s->changed_ms < SETTLE_MS)
			return false;
	}
	return true;
}

static bool rounds_done(struct bk *b)
{
	for (uint32_t e = 0; e < b->cx->ds->n_entities; e++)
		if (b->seen[e].model_version < (uint64_t)b->res->rounds + 1)
			return false;
	return b->train_rounds >= b->res->rounds;
}

static int write_configs(struct bk *b)
{
	struct ev_ctx *cx = b->cx;
	const struct fv_dataset *ds = cx->ds;
	struct coord_config cc = cx->cc;
	char path[4400];
	FILE *f;

	fv_strlcpy(cc.fleet, b->fleet, sizeof(cc.fleet));
	fv_strlcpy(cc.broker, cx->o.broker, sizeof(cc.broker));
	fv_strlcpy(cc.id, "coordinator", sizeof(cc.id));
	if ((size_t)snprintf(cc.state_dir, sizeof(cc.state_dir), "%s/state", b->dir) >=
	    sizeof(cc.state_dir))
		return -ENAMETOOLONG;
	cc.min_agents = ds->n_entities;
	cc.log_level = 3; /* info */
	snprintf(path, sizeof(path), "%s/coordinator.ini", b->dir);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fv_cfg_dump(coord_cfg_keys, coord_cfg_nkeys, &cc, f);
	if (fclose(f) != 0)
		return -EIO;
	for (uint32_t e = 0; e < ds->n_entities; e++) {
		struct agent_config ac = cx->ac;

		fv_strlcpy(ac.id, ds->ent[e].name, sizeof(ac.id));
		fv_strlcpy(ac.fleet, b->fleet, sizeof(ac.fleet));
		fv_strlcpy(ac.broker, cx->o.broker, sizeof(ac.broker));
		if ((size_t)snprintf(ac.score_log, sizeof(ac.score_log), "%s/%s.scores.csv", b->dir,
				     ds->ent[e].name) >= sizeof(ac.score_log))
			return -ENAMETOOLONG;
		unlink(ac.score_log);
		ac.clock = 1; /* data */
		ac.metrics_interval_ms = 500;
		ac.log_level = 3;
		snprintf(path, sizeof(path), "%s/%s.ini", b->dir, ds->ent[e].name);
		f = fopen(path, "w");
		if (!f)
			return -errno;
		fv_cfg_dump(agent_cfg_keys, agent_cfg_nkeys, &ac, f);
		for (uint32_t c = 0; c < ds->C; c++)
			fprintf(f, "\n[channel.%s]\ntopic = fvev/%s/%s/%s\nformat = json\n"
				   "value_path = $.value\nts_path = $.ts\n",
				ds->channels[c], b->fleet, ds->ent[e].name, ds->channels[c]);
		if (fclose(f) != 0)
			return -EIO;
	}
	return 0;
}

/* Publish rows [from[e], to[e]) of every entity that match mask (0: all),
 * interleaved row by row, at cx->o.rate rows per second per entity. With
 * flush, one more reading per channel one period after the last row: it
 * makes the agent sample the last row's tick. */
static int publish_rows(struct bk *b, const size_t *from, const size_t *to, uint8_t mask,
			bool flush)
{
	const struct fv_dataset *ds = b->cx->ds;
	uint32_t C = ds->C;
	size_t longest = 0;
	struct timespec t0;
	char topic[FV_TOPIC_MAX], payload[128];
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t e = 0; e < ds->n_entities; e++)
		longest = FV_MAX(longest, to[e] - from[e] + (flush ? 1 : 0));
	for (size_t i = 0; i < longest; i++) {
		for (uint32_t e = 0; e < ds->n_entities; e++) {
			const struct fv_ds_entity *en = &ds->ent[e];
			size_t row = from[e] + i;
			bool extra = flush && row == to[e];
			const float *x;
			int64_t ts;

			if (row > to[e] || (row == to[e] && !extra) || (extra && to[e] == 0))
				continue;
			if (!extra && mask && !(en->role[row] & mask))
				continue;
			x = en->x + (extra ? to[e] - 1 : row) * C;
			ts = extra ? en->ts[to[e] - 1] + b->cx->ac.period_ms : en->ts[row];
			for (uint32_t c = 0; c < C; c++) {
				if (isnan(x[c]))
					continue;
				snprintf(topic, sizeof(topic), "fvev/%s/%s/%s", b->fleet, en->name,
					 ds->channels[c]);
				snprintf(payload, sizeof(payload), "{\"ts\":%" PRId64 ",\"value\":%.9g}",
					 ts, (double)x[c]);
				r = fv_cli_publish(b->pub, b->cx->o.broker, topic, payload, 1,
						   &never_stop);
				if (r < 0) {
					fv_log(FV_LOG_ERR, "--broker: publishing to %s failed: %s", topic,
					       fv_strerror(r));
					return r;
				}
				b->published[e]++;
			}
		}
		if (i % 64 == 0)
			pump(b, 0);
		if (b->cx->o.rate > 0)
			fv_cli_sleep_until(&t0, (int64_t)((double)(i + 1) * 1e9 / b->cx->o.rate),
					   &never_stop);
	}
	return 0;
}

/* Score logs -> points: a line's tick maps to the latest row stamped at or
 * before it, as in-process. */
static int read_scores(struct bk *b, uint32_t e, struct ev_points *p)
{
	const struct fv_ds_entity *en = &b->cx->ds->ent[e];
	char path[4400], line[512];
	long *test_idx = malloc((en->n ? en->n : 1) * sizeof(long));
	FILE *f;
	size_t k = 0;

	memset(p, 0, sizeof(*p));
	p->n = en->n_test;
	p->score = malloc((p->n ? p->n : 1) * sizeof(double));
	p->threshold = calloc(p->n ? p->n : 1, sizeof(float));
	p->pred = calloc(p->n ? p->n : 1, 1);
	p->above = calloc(p->n ? p->n : 1, 1);
	p->label = malloc(p->n ? p->n : 1);
	if (!test_idx || !p->score || !p->threshold || !p->pred || !p->above || !p->label) {
		free(test_idx);
		return -ENOMEM;
	}
	for (size_t i = 0; i < en->n; i++) {
		test_idx[i] = en->role[i] & FV_DS_TEST ? (long)k++ : -1;
		if (test_idx[i] >= 0) {
			p->label[test_idx[i]] = en->label[i];
			p->score[test_idx[i]] = NAN;
		}
	}
	snprintf(path, sizeof(path), "%s/%s.scores.csv", b->dir, en->name);
	f = fopen(path, "r");
	if (!f) {
		fv_log(FV_LOG_ERR, "--broker: %s: %s", path, strerror(errno));
		free(test_idx);
		return -EIO;
	}
	while (fgets(line, sizeof(line), f)) {
		long long ts;
		double score, thr;
		int above, alert;
		unsigned long long ver;
		size_t lo = 0, hi = en->n;
		long t;

		if (sscanf(line, "%lld,%lf,%lf,%d,%d,%llu", &ts, &score, &thr, &above, &alert, &ver) !=
		    6)
			continue; /* the header */
		while (lo < hi) { /* first row stamped after ts */
			size_t mid = (lo + hi) / 2;

			if (en->ts[mid] <= ts)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == 0 || (t = test_idx[lo - 1]) < 0)
			continue;
		if (isnan(p->score[t]) || score > p->score[t])
			p->score[t] = score;
		p->threshold[t] = (float)thr;
		p->pred[t] |= alert != 0;
		p->above[t] |= above != 0;
		p->final_threshold = (float)thr;
		p->model_version = ver;
	}
	fclose(f);
	for (size_t t = 0; t < p->n; t++)
		p->unscored += isnan(p->score[t]);
	free(test_idx);
	return 0;
}

static int self_dir(char *buf, size_t len)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = '\0';
	return fv_strlcpy(buf, dirname(exe), len);
}

int ev_run_broker(struct ev_ctx *cx, struct ev_result *res)
{
	const struct fv_dataset *ds = cx->ds;
	uint32_t E = ds->n_entities;
	struct bk b;
	struct fv_mqtt_opts mo = { 0 };
	char id[128], filter[FV_TOPIC_MAX], bin[4400], cfg[4400], log[4400];
	size_t *from = calloc(E, sizeof(size_t)), *to = calloc(E, sizeof(size_t));
	int64_t t0 = fv_now_mono_ms(), t1;
	int r = -ENOMEM;

	memset(&b, 0, sizeof(b));
	b.cx = cx;
	b.res = res;
	res->broker = true;
	res->rounds = (uint32_t)cx->cc.rounds;
	res->n_clients = E;
	res->spec = cx->cc.spec;
	res->n_params = fv_model_spec_nparams(&cx->cc.spec);
	b.seen = calloc(E, sizeof(*b.seen));
	b.published = calloc(E, sizeof(*b.published));
	b.agents = calloc(E, sizeof(*b.agents));
	b.up_by_round = calloc(res->rounds + 1, sizeof(*b.up_by_round));
	res->pts = calloc(E, sizeof(*res->pts));
	if (!from || !to || !b.seen || !b.published || !b.agents || !b.up_by_round || !res->pts)
		goto out;
	snprintf(b.fleet, sizeof(b.fleet), "eval%ld", (long)getpid());
	snprintf(b.dir, sizeof(b.dir), "%s/broker", cx->o.out);
	if (mkdir(b.dir, 0755) < 0 && errno != EEXIST) {
		r = -errno;
		fv_log(FV_LOG_ERR, "%s: cannot create: %s", b.dir, strerror(-r));
		goto out;
	}
	if (cx->o.bindir)
		fv_strlcpy(b.bindir, cx->o.bindir, sizeof(b.bindir));
	else if ((r = self_dir(b.bindir, sizeof(b.bindir))) < 0)
		goto out;
	if ((r = write_configs(&b)) < 0) {
		fv_log(FV_LOG_ERR, "--broker: cannot write the daemons' configurations in %s: %s",
		       b.dir, fv_strerror(r));
		goto out;
	}

	/* Our two clients: a monitor (protocol traffic, states, metrics) and a
	 * publisher (sensor readings). The agents' [tls] settings apply. */
	mo.uri = cx->o.broker;
	mo.client_id = id;
	mo.queue_max = 1 << 20;
	mo.offline_buffer = 100000;
	fv_mqtt_tls_apply(&cx->ac.tls, &mo);
	snprintf(id, sizeof(id), "fedvigil-eval-mon-%ld", (long)getpid());
	b.mon = fv_mqtt_new(&mo);
	snprintf(id, sizeof(id), "fedvigil-eval-pub-%ld", (long)getpid());
	b.pub = fv_mqtt_new(&mo);
	snprintf(filter, sizeof(filter), "fedvigil/v1/%s/#", b.fleet);
	if (!b.mon || !b.pub || fv_mqtt_subscribe(b.mon, filter, 1) < 0 || fv_mqtt_start(b.mon) < 0 ||
	    fv_mqtt_start(b.pub) < 0) {
		r = -EINVAL;
		goto out;
	}
	if (!fv_cli_wait_connected(b.pub, 10, &never_stop)) {
		fv_log(FV_LOG_ERR, "--broker: cannot connect to %s", cx->o.broker);
		r = -ECONNREFUSED;
		goto out;
	}

	/* Agents, then the training rows. */
	for (uint32_t e = 0; e < E; e++) {
		char *argv[] = { "fedvigil-agent", "-c", cfg, NULL };

		snprintf(bin, sizeof(bin), "%s/fedvigil-agent", b.bindir);
		snprintf(cfg, sizeof(cfg), "%s/%s.ini", b.dir, ds->ent[e].name);
		snprintf(log, sizeof(log), "%s/%s.log", b.dir, ds->ent[e].name);
		if ((r = spawn(bin, argv, log, &b.agents[e].pid)) < 0)
			goto out;
	}
	if ((r = wait_for(&b, all_online, 30000, "the agents to come online")) < 0)
		goto out;
	for (uint32_t e = 0; e < E; e++) {
		const struct fv_ds_entity *en = &ds->ent[e];

		for (size_t i = 0; i < en->n; i++)
			if (en->role[i] & FV_DS_TRAIN)
				to[e] = i + 1;
	}
	if ((r = publish_rows(&b, from, to, FV_DS_TRAIN, false)) < 0 ||
	    (r = wait_for(&b, all_idle, 120000, "the agents to take the training rows")) < 0)
		goto out;
	res->load_s = (double)(fv_now_mono_ms() - t0) / 1000.0;

	/* The coordinator and its rounds. */
	t1 = fv_now_mono_ms();
	{
		char *argv[] = { "fedvigil-coordinator", "-c", cfg, "--reset", NULL };

		snprintf(bin, sizeof(bin), "%s/fedvigil-coordinator", b.bindir);
		snprintf(cfg, sizeof(cfg), "%s/coordinator.ini", b.dir);
		snprintf(log, sizeof(log), "%s/coordinator.log", b.dir);
		if ((r = spawn(bin, argv, log, &b.coord.pid)) < 0)
			goto out;
	}
	if ((r = wait_for(&b, rounds_done, ROUND_TIMEOUT_MS * (int64_t)(res->rounds + 1),
			  "the training rounds")) < 0)
		goto out;
	ev_progress_end(cx);
	res->train_s = (double)(fv_now_mono_ms() - t1) / 1000.0;

	/* The rest of every timeline, scored by the agents. */
	t1 = fv_now_mono_ms();
	for (uint32_t e = 0; e < E; e++) {
		from[e] = to[e];
		to[e] = ds->ent[e].n;
	}
	if ((r = publish_rows(&b, from, to, 0, true)) < 0 ||
	    (r = wait_for(&b, all_idle, 120000, "the agents to score the test rows")) < 0)
		goto out;
	res->score_s = (double)(fv_now_mono_ms() - t1) / 1000.0;
	for (uint32_t e = 0; e < E; e++)
		if (b.seen[e].dropped)
			fv_log(FV_LOG_WARNING,
			       "--broker: agent %s dropped %" PRIu64 " messages (inbound queue full): "
			       "lower --rate",
			       ds->ent[e].name, b.seen[e].dropped);
	stop(&b.coord);
	for (uint32_t e = 0; e < E; e++)
		stop(&b.agents[e]);
	res->peak_rss_kb = b.coord.rss_kb;
	for (uint32_t e = 0; e < E; e++) {
		res->peak_rss_kb = FV_MAX(res->peak_rss_kb, b.agents[e].rss_kb);
		if ((r = read_scores(&b, e, &res->pts[e])) < 0)
			goto out;
	}
	r = 0;
out:
	if (r == -ENOMEM)
		fv_log(FV_LOG_ERR, "out of memory");
	stop(&b.coord);
	for (uint32_t e = 0; b.agents && e < E; e++)
		stop(&b.agents[e]);
	if (b.pub)
		fv_mqtt_disconnect(b.pub, 2000);
	fv_mqtt_free(b.pub, 1000);
	fv_mqtt_free(b.mon, 1000);
	free(b.seen);
	free(b.published);
	free(b.agents);
	free(b.up_by_round);
	free(from);
	free(to);
	return r;
}
