/* fedvigil-sim: a plant of machines that publish sensor readings over MQTT,
 * with labelled faults injected at seeded random times (see docs/tools.md). */
#include "plant.h"
#include "spb.h"

#include "cli.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/svc.h"
#include "fedvigil/util.h"
#include "fedvigil/version.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "fedvigil-sim"

static volatile sig_atomic_t stop_signal, resume_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void on_resume(int sig)
{
	(void)sig;
	resume_signal = 1;
}

/* Command-line options, defaults as documented. */
struct opts {
	const char *broker;       /* MQTT URI */
	struct fv_cli_mqtt mqtt;  /* authentication and TLS */
	const char *prefix;       /* topic prefix */
	int machines;             /* number of machines */
	int64_t period_ms;        /* simulated time per sample */
	double speed;             /* simulated seconds per real second, 0 = max */
	double duration_s;        /* simulated run length */
	double normal_s;          /* leading fault-free time */
	double pause_s;           /* pause after this simulated time until SIGUSR1, 0 = never */
	int faults;               /* faults per machine */
	uint64_t seed;            /* RNG seed */
	const char *truth;        /* truth CSV path or NULL */
	int64_t start_ms;         /* simulated time of the first sample */
	int qos;                  /* publish QoS */
	uint32_t fault_mask;      /* allowed fault types */
	bool quiet;               /* no per-fault lines */
	double connect_timeout_s; /* give up if the broker is not reachable */
	const char *metrics_listen; /* Prometheus page address, NULL = off */
	const char *spb_node;     /* --sparkplug: edge node id, NULL = plain JSON topics */
};

/* What the Prometheus page shows (render_prom). */
struct progress {
	struct fv_mqtt *mq;       /* the client, for its counters */
	uint64_t samples;         /* machine samples simulated */
	uint64_t messages;        /* readings published */
	uint64_t faults;          /* fault onsets so far */
	int64_t k, n;             /* sample index, samples per machine */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " --broker URI [options]\n"
		"Simulate a plant of machines publishing sensor readings over MQTT,\n"
		"with labelled faults injected at seeded random times.\n"
		"\n"
		"  -b, --broker URI         MQTT broker, e.g. tcp://127.0.0.1:1883 (required)\n"
		"  -p, --prefix P           topic prefix (default plant): P/<machine>/<channel>\n"
		"  -m, --machines N         number of machines, 1..10000 (default 3)\n"
		"      --period-ms MS       simulated time between samples (default 1000)\n"
		"      --speed X            simulated seconds per real second, 0 = as fast as\n"
		"                           possible (default 50)\n"
		"  -d, --duration S         simulated seconds to run (default 3600)\n"
		"      --normal S           leading fault-free seconds (default 1800)\n"
		"  -f, --faults N           faults per machine after the normal phase (default 2)\n"
		"      --fault-types LIST   all, or a comma list of: bearing_wear, leak,\n"
		"                           cavitation, drift, stuck, spike (default all)\n"
		"  -s, --seed N             RNG seed (default 1)\n"
		"  -t, --truth FILE         write the injected faults as CSV to FILE\n"
		"      --pause-at S         after S simulated seconds, wait (publishing\n"
		"                           nothing) until SIGUSR1, then go on\n"
		"      --start ISO          simulated time of the first sample\n"
		"                           (default 2026-01-01T00:00:00Z)\n"
		"      --qos N              publish QoS 0, 1 or 2 (default 1)\n"
		"      --connect-timeout S  give up when the broker is unreachable (default 10)\n"
		"  -q, --quiet              do not print a line per fault onset\n"
		"      --metrics-listen A   serve Prometheus metrics at http://A/metrics\n"
		"                           (A = [HOST:]PORT, host default 127.0.0.1; for\n"
		"                           fedvigil-health and container health checks)\n"
		"      --sparkplug[=NODE]   publish as a Sparkplug B edge node NODE (default\n"
		"                           fedvigil-sim) of group P: NBIRTH, a DBIRTH per\n"
		"                           machine (device = machine, metric = channel, with\n"
		"                           aliases), then DDATA by alias; NDEATH at the end\n"
		"                           and as the will\n"
		FV_CLI_MQTT_HELP
		"  -h, --help               show this help\n"
		"  -V, --version            show the version\n"
		"\n"
		"Channels: vibration temperature pressure flow current. Payload:\n"
		"{\"ts\":<ms since epoch>,\"value\":<number>} (or Sparkplug B, see above).\n"
		"Exit: 0 ok, 1 error, 2 usage.\n");
}

enum {
	OPT_PERIOD = 256,
	OPT_SPEED,
	OPT_NORMAL,
	OPT_START,
	OPT_QOS,
	OPT_TYPES,
	OPT_CONNECT_TIMEOUT,
	OPT_METRICS,
	OPT_SPARKPLUG,
	OPT_PAUSE,
};

/* Returns 0, or an exit code (2 usage, -1 = exit 0 after --help/--version). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "broker", required_argument, NULL, 'b' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "machines", required_argument, NULL, 'm' },
		{ "period-ms", required_argument, NULL, OPT_PERIOD },
		{ "speed", required_argument, NULL, OPT_SPEED },
		{ "duration", required_argument, NULL, 'd' },
		{ "normal", required_argument, NULL, OPT_NORMAL },
		{ "faults", required_argument, NULL, 'f' },
		{ "fault-types", required_argument, NULL, OPT_TYPES },
		{ "seed", required_argument, NULL, 's' },
		{ "truth", required_argument, NULL, 't' },
		{ "start", required_argument, NULL, OPT_START },
		{ "qos", required_argument, NULL, OPT_QOS },
		{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
		{ "quiet", no_argument, NULL, 'q' },
		{ "metrics-listen", required_argument, NULL, OPT_METRICS },
		{ "sparkplug", optional_argument, NULL, OPT_SPARKPLUG },
		{ "pause-at", required_argument, NULL, OPT_PAUSE },
		FV_CLI_MQTT_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	long long v;
	int c, r;

	fv_cli_mqtt_init(&o->mqtt);

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":b:p:m:d:f:s:t:qhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (fv_cli_opt_broker(optarg, &o->broker))
				return 2;
			break;
		case 'p':
			if (fv_cli_opt_prefix(optarg, &o->prefix))
				return 2;
			break;
		case 'm':
			if (fv_cli_parse_int("--machines", optarg, 1, 10000, &v) < 0)
				return 2;
			o->machines = (int)v;
			break;
		case OPT_PERIOD:
			if (fv_cli_parse_int("--period-ms", optarg, 1, 86400000, &v) < 0)
				return 2;
			o->period_ms = v;
			break;
		case OPT_SPEED:
			if (fv_cli_parse_num("--speed", optarg, 0, 1e9, &o->speed) < 0)
				return 2;
			break;
		case 'd':
			if (fv_cli_parse_num("--duration", optarg, 0, 1e10, &o->duration_s) < 0)
				return 2;
			break;
		case OPT_NORMAL:
			if (fv_cli_parse_num("--normal", optarg, 0, 1e10, &o->normal_s) < 0)
				return 2;
			break;
		case OPT_PAUSE:
			if (fv_cli_parse_num("--pause-at", optarg, 0, 1e10, &o->pause_s) < 0)
				return 2;
			break;
		case 'f':
			if (fv_cli_parse_int("--faults", optarg, 0, 64, &v) < 0)
				return 2;
			o->faults = (int)v;
			break;
		case OPT_TYPES: {
			char bad[80];

			if (sim_fault_mask_parse(optarg, &o->fault_mask, bad, sizeof(bad)) < 0)
				return fv_cli_usage_error("--fault-types: unknown fault type '%s' (use all or "
						   "bearing_wear,leak,cavitation,drift,stuck,spike)",
						   bad);
			break;
		}
		case 's': {
			char *end;

			errno = 0;
			o->seed = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || *optarg == '-')
				return fv_cli_usage_error("--seed: '%s' is not an unsigned integer", optarg);
			break;
		}
		case 't':
			o->truth = optarg;
			break;
		case OPT_START:
			if (fv_iso8601_parse(optarg, &o->start_ms) < 0)
				return fv_cli_usage_error("--start: '%s' is not an ISO-8601 UTC time "
						   "(like 2026-01-01T00:00:00Z)", optarg);
			break;
		case OPT_QOS:
			if (fv_cli_parse_int("--qos", optarg, 0, 2, &v) < 0)
				return 2;
			o->qos = (int)v;
			break;
		case OPT_CONNECT_TIMEOUT:
			if (fv_cli_parse_num("--connect-timeout", optarg, 0.1, 86400, &o->connect_timeout_s) < 0)
				return 2;
			break;
		case 'q':
			o->quiet = true;
			break;
		case OPT_METRICS: {
			char host[64];
			uint16_t port;

			if (fv_httpd_parse_listen(optarg, host, sizeof(host), &port) < 0)
				return fv_cli_usage_error("--metrics-listen: '%s' is not [HOST:]PORT with "
						   "a numeric host", optarg);
			o->metrics_listen = optarg;
			break;
		}
		case OPT_SPARKPLUG:
			o->spb_node = optarg ? optarg : "fedvigil-sim";
			if (!fv_spb_id_valid(o->spb_node))
				return fv_cli_usage_error("--sparkplug: '%s' is not a Sparkplug node id "
						   "(1-63 chars, no / + #)", o->spb_node);
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf(PROG " " FV_VERSION "\n");
			return -1;
		case ':':
			return fv_cli_usage_error("%s needs a value", argv[optind - 1]);
		default:
			r = fv_cli_mqtt_option(&o->mqtt, c, optarg);
			if (r == 1)
				break;
			if (r == 2)
				return 2;
			if (optopt)
				return fv_cli_usage_error("unknown option '-%c'", optopt);
			return fv_cli_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fv_cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (o->spb_node && !fv_spb_id_valid(o->prefix))
		return fv_cli_usage_error("--sparkplug: the prefix '%s' is the Sparkplug group id and "
				   "must be one topic level (no /)", o->prefix);
	if (!o->broker)
		return fv_cli_usage_error("--broker is required (e.g. --broker tcp://127.0.0.1:1883)");
	if (o->duration_s * 1000 < (double)o->period_ms)
		return fv_cli_usage_error("--duration: %g s is shorter than one sample (--period-ms %lld)",
				   o->duration_s, (long long)o->period_ms);
	if (o->pause_s >= o->duration_s)
		return fv_cli_usage_error("--pause-at: %g s is not inside --duration %g s",
				   o->pause_s, o->duration_s);
	if (o->faults > 0 && o->normal_s >= o->duration_s)
		return fv_cli_usage_error("--normal: %g s leaves no time for faults in --duration %g s "
				   "(use --faults 0 for a fault-free run)", o->normal_s, o->duration_s);
	return 0;
}

static void render_prom(struct fv_prom *p, void *userdata)
{
	const struct progress *g = userdata;
	struct fv_mqtt_stats st;

	fv_prom_metric(p, "fedvigil_sim_samples_total", "counter",
		       "Machine samples simulated (one per machine and period).",
		       (double)g->samples);
	fv_prom_metric(p, "fedvigil_sim_readings_published_total", "counter",
		       "Sensor readings published.", (double)g->messages);
	fv_prom_metric(p, "fedvigil_sim_faults_started_total", "counter",
		       "Injected faults that have begun.", (double)g->faults);
	fv_prom_metric(p, "fedvigil_sim_progress_ratio", "gauge",
		       "Share of the simulated duration done.",
		       g->n > 0 ? (double)g->k / (double)g->n : 0);
	fv_mqtt_get_stats(g->mq, &st);
	fv_prom_mqtt(p, &st, fv_mqtt_connected(g->mq));
	fv_prom_process(p);
}

/* Sleep until ns after t0 like fv_cli_sleep_until, answering scrapes of
 * the metrics page meanwhile (httpd may be NULL). */
static void wait_until(const struct timespec *t0, int64_t ns, struct fv_httpd *httpd)
{
	struct pollfd pfd[FV_HTTPD_POLLFDS];
	struct timespec now;

	if (!httpd) {
		fv_cli_sleep_until(t0, ns, &stop_signal);
		return;
	}
	while (!stop_signal) {
		int64_t left_ns, n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left_ns = ns - ((int64_t)(now.tv_sec - t0->tv_sec) * 1000000000LL +
				(now.tv_nsec - t0->tv_nsec));
		if (left_ns <= 0)
			return;
		n = fv_httpd_pollfds(httpd, pfd, FV_HTTPD_POLLFDS);
		if (poll(pfd, (nfds_t)n, (int)FV_MIN(left_ns / 1000000 + 1, 100)) > 0)
			fv_httpd_handle(httpd, pfd, (int)n, fv_now_mono_ms());
	}
}

static int write_truth(const struct sim_plant *p, const char *path, int64_t limit)
{
	char *csv = sim_plant_truth_csv(p, limit);
	int r;

	if (!csv) {
		fv_log(FV_LOG_ERR, "truth file %s: out of memory", path);
		return -ENOMEM;
	}
	r = fv_file_write_atomic(path, csv, strlen(csv));
	if (r < 0)
		fv_log(FV_LOG_ERR, "cannot write truth file %s: %s", path, fv_strerror(r));
	free(csv);
	return r;
}

/* --pause-at: wait until the broker has acknowledged everything sent so
 * far, say so on stdout (tests wait for the line), then publish nothing
 * until SIGUSR1 (or a stop signal). */
static void pause_here(struct fv_mqtt *mq, int64_t k, int64_t ts, struct fv_httpd *httpd)
{
	char when[40];

	while (fv_mqtt_pending(mq) > 0 && !stop_signal) {
		fv_cli_drain(mq);
		fv_cli_sleep_ms(10);
	}
	printf("sim: paused at %s after %lld samples per machine (SIGUSR1 resumes)\n",
	       fv_iso8601(ts, when, sizeof(when)), (long long)k);
	while (!resume_signal && !stop_signal) {
		struct timespec t;

		fv_cli_drain(mq);
		clock_gettime(CLOCK_MONOTONIC, &t);
		wait_until(&t, 20 * 1000000LL, httpd);
	}
	if (!stop_signal)
		printf("sim: resumed\n");
}

int main(int argc, char **argv)
{
	fv_cli_init(PROG);
	struct opts o = {
		.prefix = "plant",
		.machines = 3,
		.period_ms = 1000,
		.speed = 50,
		.duration_s = 3600,
		.normal_s = 1800,
		.faults = 2,
		.seed = 1,
		.start_ms = 1767225600000LL, /* 2026-01-01T00:00:00Z */
		.qos = 1,
		.fault_mask = (1u << SIM_N_FAULT_TYPES) - 1,
		.connect_timeout_s = 10,
	};
	struct sim_config cfg;
	struct sim_plant *plant = NULL;
	struct fv_mqtt *mq = NULL;
	struct fv_mqtt_opts mo = { 0 };
	struct fv_httpd *httpd = NULL;
	struct progress prog = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	struct timespec t0;
	char err[256], client_id[64], topic[512], payload[96], when[40], until[40];
	char will_topic[FV_SPB_TOPIC_MAX];
	struct sim_spb spb;
	uint8_t *will = NULL;
	size_t will_len = 0;
	uint64_t messages = 0, samples = 0;
	int64_t k = 0, k_rel, t0_k = 0, pause_k;
	int rc = 0, r;

	fv_log_setup(FV_LOG_INFO, "sim");
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = parse_args(argc, argv, &o);
	if (r)
		return r < 0 ? 0 : r;
	if (o.quiet)
		fv_log_setup(FV_LOG_WARNING, "sim");
	pause_k = (int64_t)ceil(o.pause_s * 1000 / (double)o.period_ms);

	cfg = (struct sim_config){
		.machines = o.machines,
		.period_ms = o.period_ms,
		.n_samples = (int64_t)floor(o.duration_s * 1000 / (double)o.period_ms),
		.normal_samples = (int64_t)ceil(o.normal_s * 1000 / (double)o.period_ms),
		.faults = o.faults,
		.fault_mask = o.fault_mask,
		.seed = o.seed,
		.start_ms = o.start_ms,
	};
	plant = sim_plant_new(&cfg, err, sizeof(err));
	if (!plant)
		return fv_cli_usage_error("%s", err);
	if (o.truth && write_truth(plant, o.truth, INT64_MAX) < 0) {
		rc = 1;
		goto out;
	}

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_resume;
	sigaction(SIGUSR1, &sa, NULL);

	snprintf(client_id, sizeof(client_id), "fedvigil-sim-%ld", (long)getpid());
	mo.uri = o.broker;
	mo.client_id = client_id;
	mo.offline_buffer = 10000;
	spb = (struct sim_spb){ .group = o.prefix, .node = o.spb_node, .broker = o.broker,
				.qos = o.qos, .bdseq = 0 };
	if (o.spb_node) {
		r = sim_spb_death(&spb, will_topic, &will, &will_len);
		if (r < 0) {
			fv_log(FV_LOG_ERR, "--sparkplug: cannot build the NDEATH will: %s", fv_strerror(r));
			rc = 1;
			goto out;
		}
		mo.will_topic = will_topic;
		mo.will_payload = will;
		mo.will_len = will_len;
		mo.will_qos = 1; /* Sparkplug 3.0: NDEATH with QoS 1, not retained */
	}
	r = fv_cli_mqtt_apply(&o.mqtt, o.broker, &mo);
	if (r) {
		rc = r;
		goto out;
	}
	mq = fv_mqtt_new(&mo);
	if (!mq) {
		rc = 1; /* reason logged by the client */
		goto out;
	}
	prog.mq = mq;
	prog.n = cfg.n_samples;
	if (o.metrics_listen) {
		httpd = fv_httpd_new(o.metrics_listen, render_prom, &prog, err, sizeof(err));
		if (!httpd) {
			fv_log(FV_LOG_ERR, "--metrics-listen %s: %s", o.metrics_listen, err);
			rc = 1;
			goto out;
		}
	}
	r = fv_mqtt_start(mq);
	if (r < 0) {
		fv_log(FV_LOG_ERR, "cannot use broker %s: %s", o.broker, fv_strerror(r));
		rc = r == -EINVAL ? 2 : 1;
		goto out;
	}
	if (!fv_cli_wait_connected(mq, o.connect_timeout_s, &stop_signal)) {
		if (!stop_signal) {
			fv_log(FV_LOG_ERR, "cannot connect to broker %s within %g s", o.broker,
			       o.connect_timeout_s);
			rc = 1;
		}
		goto out;
	}
	if (!o.quiet)
		fv_log(FV_LOG_INFO, "%d machines, %lld samples each every %lld ms (%lld normal), "
		       "%d faults each, speed %g", o.machines, (long long)cfg.n_samples,
		       (long long)o.period_ms, (long long)cfg.normal_samples, o.faults, o.speed);

	if (o.spb_node && sim_spb_nbirth(&spb, mq, o.start_ms, &stop_signal) < 0) {
		rc = stop_signal ? 0 : 1;
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (k = 0; k < cfg.n_samples && !stop_signal; k++) {
		int64_t ts = o.start_ms + k * o.period_ms;

		if (o.pause_s > 0 && k == pause_k) {
			pause_here(mq, k, ts, httpd);
			/* Pace the rest as if the pause had not happened. */
			clock_gettime(CLOCK_MONOTONIC, &t0);
			t0_k = k;
		}
		k_rel = k - t0_k;
		if (o.speed > 0)
			wait_until(&t0, (int64_t)((double)k_rel * (double)o.period_ms * 1e6 / o.speed),
				   httpd);
		prog.k = k;
		if (stop_signal)
			break;
		for (int m = 0; m < o.machines && rc == 0 && !stop_signal; m++) {
			const struct sim_fault *onset;
			double v[SIM_N_CHANNELS];
			const char *name = sim_plant_machine_name(plant, m);

			sim_plant_step(plant, m, k, v, &onset);
			samples++;
			prog.samples = samples;
			prog.faults += onset != NULL;
			if (onset && !o.quiet)
				printf("sim: fault %s on %s at %s (until %s, channel %s)\n",
				       sim_fault_name(onset->type), name,
				       fv_iso8601(ts, when, sizeof(when)),
				       fv_iso8601(o.start_ms + (onset->end - 1) * o.period_ms, until,
						  sizeof(until)),
				       sim_channel_name(onset->channel));
			if (o.spb_node) {
				const char *names[SIM_N_CHANNELS];

				for (int c = 0; c < SIM_N_CHANNELS; c++)
					names[c] = sim_channel_name(c);
				r = sim_spb_sample(&spb, mq, name, m, k == 0, ts, v, SIM_N_CHANNELS, names,
						   &stop_signal);
				if (r < 0 && r != -EINTR)
					rc = 1;
				if (r == 0)
					prog.messages = ++messages;
				continue;
			}
			for (int c = 0; c < SIM_N_CHANNELS; c++) {
				snprintf(topic, sizeof(topic), "%s/%s/%s", o.prefix, name,
					 sim_channel_name(c));
				snprintf(payload, sizeof(payload), "{\"ts\":%" PRId64 ",\"value\":%.5g}",
					 ts, v[c]);
				r = fv_cli_publish(mq, o.broker, topic, payload, o.qos, &stop_signal);
				if (r == -EINTR)
					break;
				if (r < 0) {
					rc = 1;
					break;
				}
				messages++;
				prog.messages = messages;
			}
		}
		if (rc)
			break;
	}

	if (stop_signal) {
		fv_log(FV_LOG_NOTICE, "stopped by signal %d after %lld of %lld samples",
		       (int)stop_signal, (long long)k, (long long)cfg.n_samples);
		if (o.truth && write_truth(plant, o.truth, k) < 0)
			rc = 1;
	}
	if (o.spb_node && rc == 0 && sim_spb_ndeath(&spb, mq, &stop_signal) == 0)
		messages++;
	/* Wait for the broker to acknowledge what is in flight. */
	{
		int64_t deadline = fv_now_mono_ms() + (stop_signal ? 2000 : 30000);

		while (fv_mqtt_pending(mq) > 0 && fv_now_mono_ms() < deadline) {
			fv_cli_drain(mq);
			fv_cli_sleep_ms(10);
		}
		int unacked = fv_mqtt_pending(mq);

		fv_mqtt_disconnect(mq, 5000);
		if (unacked > 0 && fv_mqtt_pending(mq) > 0) {
			fv_log(FV_LOG_ERR, "%d messages were not acknowledged by %s",
			       fv_mqtt_pending(mq), o.broker);
			rc = 1;
		}
	}
	printf("sim: done samples=%" PRIu64 " messages=%" PRIu64 "\n", samples, messages);
out:
	fv_httpd_free(httpd);
	fv_mqtt_free(mq, 1000);
	free(will);
	sim_plant_free(plant);
	return rc;
}
