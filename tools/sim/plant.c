/* fedvigil-sim: the plant model.
 *
 * Each machine has an operating load in [0.3, 1] that changes in steps or
 * ramps at log-uniform intervals (3 .. 45 min of simulated time), nudged
 * by a daily demand cycle, plus a little fast process noise. The five
 * channels are coupled through the load:
 *   flow        Q = Qn * (q0 + (1 - q0) * L)
 *   pressure    P = P0 + P1 * (Q / Qn)^2            (pump/system curve)
 *   current     I = I0 + I1 * L
 *   temperature T -> ambient + Tb + Ts * L           (first-order lag)
 *   vibration   V = V0 + V1 * L + 1/f-ish wander     (three OU processes)
 * Sensor noise is added last. Every fault is scaled by sigma_c, the
 * standard deviation of channel c over the normal load range, so effects
 * are the same "size" for every machine type after normalisation.
 */
#include "plant.h"

#include "fedvigil/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_MIN 0.3
#define LOAD_MAX 1.0

static const char *const channel_names[SIM_N_CHANNELS] = {
	"vibration", "temperature", "pressure", "flow", "current",
};

static const char *const fault_names[SIM_N_FAULT_TYPES] = {
	"bearing_wear", "leak", "cavitation", "drift", "stuck", "spike",
};

enum machine_type { MT_PUMP, MT_COMPRESSOR, MT_MOTOR, MT_N };

static const char *const type_names[MT_N] = { "pump", "compressor", "motor" };

/* Nominal parameters per machine type (see the top comment). */
struct type_params {
	double v0, v1;   /* vibration base and load slope, mm/s */
	double tb, ts;   /* temperature rise over ambient: base and load, degC */
	double p0, p1;   /* pressure base and flow-squared term, bar */
	double qn, q0;   /* nominal flow m^3/h, fraction at zero load */
	double i0, i1;   /* current base and load slope, A */
	double tau_t;    /* thermal time constant, s */
};

/* The types differ in base levels and slopes by tens of per cent, not by
 * orders of magnitude: one fleet model with fleet-wide normalisation must
 * still see a fault of a few per-machine sigmas on every machine. */
static const struct type_params type_params[MT_N] = {
	[MT_PUMP] = { 1.2, 2.4, 14, 24, 1.2, 4.0, 120, 0.10, 8, 30, 60 },
	[MT_COMPRESSOR] = { 1.35, 2.5, 15.5, 25, 1.3, 4.1, 128, 0.08, 9.5, 31, 90 },
	[MT_MOTOR] = { 1.1, 2.3, 13, 24.5, 1.1, 3.9, 112, 0.12, 7.5, 29, 75 },
};

/* Sensor noise as a fraction of the channel's normal standard deviation. */
static const double noise_rel[SIM_N_CHANNELS] = { 0.15, 0.06, 0.12, 0.10, 0.08 };

struct machine {
	char name[32];              /* "pump-1" */
	struct type_params tp;      /* this machine's (perturbed) parameters */
	struct fv_rng rng;          /* signal RNG, seeded per machine */
	double sigma[SIM_N_CHANNELS]; /* normal std per channel (fault scale) */
	double noise[SIM_N_CHANNELS]; /* sensor noise std */

	double load_from;           /* load at the start of the current ramp */
	double load_target;         /* load at the end of it */
	int64_t ramp_start;         /* sample where the ramp began */
	int64_t ramp_end;           /* sample where it reaches the target */
	int64_t next_change;        /* sample of the next natural load change */
	double ou_load;             /* fast process noise on the load */
	double wander[3];           /* vibration wander, three time scales */
	double temp;                /* lagged temperature state */
	double last[SIM_N_CHANNELS]; /* last published values */
	double stuck_value;         /* value a stuck sensor repeats */
	double drift_sign;          /* +1 or -1 for the active drift */

	size_t fault_first;         /* index of its first fault in the schedule */
	size_t fault_count;         /* number of its faults */
	size_t fault_cur;           /* next/active fault (relative index) */
};

struct sim_plant {
	struct sim_config cfg;      /* copy of the configuration */
	double dt;                  /* seconds per sample */
	struct machine *m;          /* cfg.machines entries */
	struct sim_fault *faults;   /* schedule sorted by machine, start */
	size_t n_faults;            /* entries in faults */
};

const char *sim_channel_name(int ch)
{
	return ch >= 0 && ch < SIM_N_CHANNELS ? channel_names[ch] : "*";
}

const char *sim_fault_name(enum sim_fault_type t)
{
	return (unsigned)t < SIM_N_FAULT_TYPES ? fault_names[t] : "?";
}

int sim_fault_mask_parse(const char *s, uint32_t *ret_mask, char *bad, size_t badlen)
{
	uint32_t mask = 0;
	const char *p = s;

	if (strcmp(s, "all") == 0) {
		*ret_mask = (1u << SIM_N_FAULT_TYPES) - 1;
		return 0;
	}
	while (*p) {
		size_t n = strcspn(p, ",");
		int found = -1;

		for (int i = 0; i < SIM_N_FAULT_TYPES; i++)
			if (strlen(fault_names[i]) == n && strncmp(p, fault_names[i], n) == 0)
				found = i;
		if (found < 0) {
			snprintf(bad, badlen, "%.*s", (int)FV_MIN(n, 64), p);
			return -EINVAL;
		}
		mask |= 1u << found;
		p += n;
		if (*p == ',')
			p++;
	}
	if (!mask) {
		snprintf(bad, badlen, "%s", s);
		return -EINVAL;
	}
	*ret_mask = mask;
	return 0;
}

/* ---- signal model ---- */

/* Noise-free steady-state channel values at load L (ambient excluded). */
static void steady(const struct type_params *tp, double L, double *v)
{
	double q = tp->q0 + (1 - tp->q0) * L;

	v[SIM_CH_VIBRATION] = tp->v0 + tp->v1 * L;
	v[SIM_CH_TEMPERATURE] = tp->tb + tp->ts * L;
	v[SIM_CH_PRESSURE] = tp->p0 + tp->p1 * q * q;
	v[SIM_CH_FLOW] = tp->qn * q;
	v[SIM_CH_CURRENT] = tp->i0 + tp->i1 * L;
}

/* Standard deviation of each channel with the load uniform on its range. */
static void channel_sigma(const struct type_params *tp, double *sigma)
{
	double s1[SIM_N_CHANNELS] = { 0 }, s2[SIM_N_CHANNELS] = { 0 };
	const int n = 71;

	for (int i = 0; i < n; i++) {
		double v[SIM_N_CHANNELS];

		steady(tp, LOAD_MIN + (LOAD_MAX - LOAD_MIN) * i / (n - 1), v);
		for (int c = 0; c < SIM_N_CHANNELS; c++) {
			s1[c] += v[c];
			s2[c] += v[c] * v[c];
		}
	}
	for (int c = 0; c < SIM_N_CHANNELS; c++) {
		double mean = s1[c] / n;

		sigma[c] = sqrt(fmax(s2[c] / n - mean * mean, 1e-12));
	}
}

/* One step of an Ornstein-Uhlenbeck process with stationary std `sd`. */
static double ou_step(struct fv_rng *r, double x, double dt, double tau, double sd)
{
	double a = exp(-dt / tau);

	return x * a + sd * sqrt(1 - a * a) * fv_rng_normal(r);
}

static double clamp(double x, double lo, double hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

/* Hour of the (simulated) day of sample k, 0..24. */
static double hour_of_day(const struct sim_plant *p, int64_t k)
{
	int64_t ms = p->cfg.start_ms + k * p->cfg.period_ms;
	int64_t day = 86400000;

	return (double)(((ms % day) + day) % day) / 3600000.0;
}

static int64_t secs_to_samples(const struct sim_plant *p, double s)
{
	int64_t n = (int64_t)llround(s * 1000.0 / (double)p->cfg.period_ms);

	return n < 1 ? 1 : n;
}

/* Plan the next natural load change of machine m at sample k. Levels
 * alternate between the lower and the upper half of the range so that even
 * a short normal phase shows the machine at several operating points. */
static void load_change(struct sim_plant *p, struct machine *m, int64_t k, double cur)
{
	const double mid = (LOAD_MIN + LOAD_MAX) / 2;
	double hour = hour_of_day(p, k);
	double demand = 0.05 * sin(2 * M_PI * (hour - 8) / 24);
	double u = fv_rng_uniform(&m->rng);
	double target = cur < mid ? mid + (LOAD_MAX - mid) * u : LOAD_MIN + (mid - LOAD_MIN) * u;
	/* Log-uniform interval between 3 and 45 minutes. */
	double interval = exp(log(180.0) + fv_rng_uniform(&m->rng) * (log(2700.0) - log(180.0)));

	m->load_from = cur;
	m->load_target = clamp(target + demand, LOAD_MIN, LOAD_MAX);
	m->ramp_start = k;
	/* Half are quick steps (15-45 s, as a valve or setpoint change), half
	 * slow ramps (1-5 min). */
	if (fv_rng_uniform(&m->rng) < 0.5)
		m->ramp_end = k + secs_to_samples(p, 15 + 30 * fv_rng_uniform(&m->rng));
	else
		m->ramp_end = k + secs_to_samples(p, 60 + 240 * fv_rng_uniform(&m->rng));
	m->next_change = k + secs_to_samples(p, interval);
}

static double load_at(const struct machine *m, int64_t k)
{
	if (k >= m->ramp_end || m->ramp_end == m->ramp_start)
		return m->load_target;
	return m->load_from + (m->load_target - m->load_from) * (double)(k - m->ramp_start) /
				      (double)(m->ramp_end - m->ramp_start);
}

/* ---- fault schedule ---- */

static int plan_faults(struct sim_plant *p, char *err, size_t errlen)
{
	const struct sim_config *c = &p->cfg;
	int64_t avail = c->n_samples - c->normal_samples;
	int64_t len_min = FV_MAX((int64_t)30, (int64_t)ceil(0.03 * (double)c->n_samples));
	int64_t len_max = FV_MAX(len_min, (int64_t)floor(0.08 * (double)c->n_samples));
	int64_t gap_min = FV_MAX((int64_t)60, (int64_t)ceil(0.02 * (double)c->n_samples));
	int allowed[SIM_N_FAULT_TYPES], n_allowed = 0;
	int deck[SIM_N_FAULT_TYPES], deck_left = 0;
	struct fv_rng rng;

	if (c->faults == 0)
		return 0;
	for (int t = 0; t < SIM_N_FAULT_TYPES; t++)
		if (c->fault_mask & (1u << t))
			allowed[n_allowed++] = t;
	if ((int64_t)c->faults * (len_min + gap_min) > avail) {
		snprintf(err, errlen,
			 "%d faults per machine do not fit: each needs at least %lld samples "
			 "(%lld fault + %lld gap) but only %lld samples follow the normal phase; "
			 "lower --faults or --normal, or raise --duration",
			 c->faults, (long long)(len_min + gap_min), (long long)len_min,
			 (long long)gap_min, (long long)FV_MAX(avail, (int64_t)0));
		return -EINVAL;
	}
	p->faults = calloc((size_t)c->machines * (size_t)c->faults, sizeof(*p->faults));
	if (!p->faults) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fv_rng_seed(&rng, c->seed ^ 0x5eedfa0175ULL);
	for (int mi = 0; mi < c->machines; mi++) {
		struct machine *m = &p->m[mi];
		int64_t len[64], total = 0;
		double w[65], wsum = 0;
		int nf = c->faults;
		int64_t slack, pos;

		/* Lengths 3-8 % of the run; shrink to the minimum if they do not fit. */
		for (int i = 0; i < nf; i++) {
			len[i] = len_min + (int64_t)fv_rng_below(&rng, (uint64_t)(len_max - len_min + 1));
			total += len[i] + gap_min;
		}
		if (total > avail) {
			total = 0;
			for (int i = 0; i < nf; i++) {
				len[i] = len_min;
				total += len_min + gap_min;
			}
		}
		/* Spread the slack over the nf + 1 gaps at random. */
		slack = avail - total;
		for (int i = 0; i <= nf; i++) {
			w[i] = -log(1 - fv_rng_uniform(&rng));
			wsum += w[i];
		}
		pos = c->normal_samples;
		m->fault_first = p->n_faults;
		m->fault_count = (size_t)nf;
		for (int i = 0; i < nf; i++) {
			struct sim_fault *f = &p->faults[p->n_faults++];

			pos += gap_min + (int64_t)floor((double)slack * w[i] / wsum);
			if (deck_left == 0) { /* reshuffle: every allowed type shows up */
				memcpy(deck, allowed, sizeof(int) * (size_t)n_allowed);
				deck_left = n_allowed;
			}
			int pick = (int)fv_rng_below(&rng, (uint64_t)deck_left);

			f->type = (enum sim_fault_type)deck[pick];
			deck[pick] = deck[--deck_left];
			f->machine = mi;
			f->start = pos;
			f->end = pos + len[i];
			switch (f->type) {
			case SIM_FAULT_DRIFT:
			case SIM_FAULT_SPIKE:
				f->channel = (int)fv_rng_below(&rng, SIM_N_CHANNELS);
				break;
			case SIM_FAULT_STUCK: {
				/* A stuck temperature hides behind the thermal lag for
				 * the whole fault: pick one of the fast channels. */
				static const int fast[] = { SIM_CH_VIBRATION, SIM_CH_PRESSURE,
							    SIM_CH_FLOW, SIM_CH_CURRENT };
				f->channel = fast[fv_rng_below(&rng, FV_ARRAY_SIZE(fast))];
				break;
			}
			default:
				f->channel = -1;
			}
			pos = f->end;
		}
	}
	return 0;
}

/* ---- public ---- */

struct sim_plant *sim_plant_new(const struct sim_config *cfg, char *err, size_t errlen)
{
	struct sim_plant *p;

	if (cfg->machines < 1 || cfg->period_ms < 1 || cfg->n_samples < 1 || cfg->faults < 0 ||
	    cfg->faults > 64 || cfg->normal_samples < 0 || !(cfg->fault_mask || !cfg->faults)) {
		snprintf(err, errlen, "invalid simulator configuration");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->m = calloc((size_t)cfg->machines, sizeof(*p->m)))) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->cfg = *cfg;
	p->dt = (double)cfg->period_ms / 1000.0;
	for (int i = 0; i < cfg->machines; i++) {
		struct machine *m = &p->m[i];
		enum machine_type t = (enum machine_type)(i % MT_N);
		double *tp[] = { &m->tp.v0, &m->tp.v1, &m->tp.tb, &m->tp.ts, &m->tp.p0,
				 &m->tp.p1, &m->tp.qn, &m->tp.i0, &m->tp.i1 };

		snprintf(m->name, sizeof(m->name), "%s-%d", type_names[t], i + 1);
		fv_rng_seed(&m->rng, cfg->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i + 1);
		m->tp = type_params[t];
		/* Same type, slightly different machines: +-5 % per parameter. */
		for (size_t j = 0; j < FV_ARRAY_SIZE(tp); j++)
			*tp[j] *= 1 + 0.03 * clamp(fv_rng_normal(&m->rng), -2, 2);
		channel_sigma(&m->tp, m->sigma);
		for (int c = 0; c < SIM_N_CHANNELS; c++)
			m->noise[c] = noise_rel[c] * m->sigma[c];
		/* Start settled at a random level, part-way into its interval. */
		load_change(p, m, 0, fv_rng_uniform(&m->rng) < 0.5 ? LOAD_MIN : LOAD_MAX);
		m->ramp_end = 0;
		m->next_change = (int64_t)((double)m->next_change * fv_rng_uniform(&m->rng));
		m->temp = NAN;
	}
	if (plan_faults(p, err, errlen) < 0) {
		sim_plant_free(p);
		return NULL;
	}
	return p;
}

void sim_plant_free(struct sim_plant *p)
{
	if (!p)
		return;
	free(p->faults);
	free(p->m);
	free(p);
}

const char *sim_plant_machine_name(const struct sim_plant *p, int m)
{
	return p->m[m].name;
}

const struct sim_fault *sim_plant_faults(const struct sim_plant *p, size_t *ret_n)
{
	*ret_n = p->n_faults;
	return p->faults;
}

/* Force a large load move at the onset of a stuck-sensor fault: a sensor
 * stuck at a steady operating point is indistinguishable from a healthy one,
 * in the plant as for any detector; operators notice when the process moves. */
static void force_load_move(struct sim_plant *p, struct machine *m, const struct sim_fault *f,
			    double cur)
{
	double u = fv_rng_uniform(&m->rng);

	m->load_from = cur;
	/* To the far end of the range: a move of at least 0.3. */
	m->load_target = cur < 0.65 ? 0.95 + 0.05 * u : 0.3 + 0.05 * u;
	m->ramp_start = f->start;
	m->ramp_end = f->start + FV_MAX((int64_t)1, (f->end - f->start) / 10);
	m->next_change = f->end + secs_to_samples(p, 60);
}

void sim_plant_step(struct sim_plant *p, int mi, int64_t k, double *ret_values,
		    const struct sim_fault **ret_onset)
{
	struct machine *m = &p->m[mi];
	const struct sim_fault *f = NULL;
	double dt = p->dt, L, amb, v[SIM_N_CHANNELS], sig[SIM_N_CHANNELS];

	*ret_onset = NULL;
	/* Which fault (if any) is active at k. */
	while (m->fault_cur < m->fault_count && p->faults[m->fault_first + m->fault_cur].end <= k)
		m->fault_cur++;
	if (m->fault_cur < m->fault_count) {
		f = &p->faults[m->fault_first + m->fault_cur];
		if (k < f->start)
			f = NULL;
	}
	if (f && k == f->start) {
		*ret_onset = f;
		m->drift_sign = fv_rng_uniform(&m->rng) < 0.5 ? -1 : 1;
		if (f->type == SIM_FAULT_STUCK) {
			m->stuck_value = k > 0 ? m->last[f->channel] : NAN;
			force_load_move(p, m, f, load_at(m, k));
		}
	}

	/* Load process. */
	if (k >= m->next_change)
		load_change(p, m, k, load_at(m, k));
	m->ou_load = ou_step(&m->rng, m->ou_load, dt, 20, 0.01);
	L = clamp(load_at(m, k) + m->ou_load, 0.2, 1.1);

	/* Physics. */
	amb = 18 + 6 * sin(2 * M_PI * (hour_of_day(p, k) - 9) / 24);
	steady(&m->tp, L, v);
	if (isnan(m->temp))
		m->temp = amb + v[SIM_CH_TEMPERATURE];
	m->temp += (amb + v[SIM_CH_TEMPERATURE] - m->temp) * (1 - exp(-dt / m->tp.tau_t));
	v[SIM_CH_TEMPERATURE] = m->temp;
	m->wander[0] = ou_step(&m->rng, m->wander[0], dt, 30, 0.01 * m->tp.v1);
	m->wander[1] = ou_step(&m->rng, m->wander[1], dt, 300, 0.01 * m->tp.v1);
	m->wander[2] = ou_step(&m->rng, m->wander[2], dt, 3000, 0.01 * m->tp.v1);
	v[SIM_CH_VIBRATION] += m->wander[0] + m->wander[1] + m->wander[2];

	memcpy(sig, m->sigma, sizeof(sig));
	double prog = 0, ramp = 1;

	if (f) {
		double len = (double)(f->end - f->start);

		prog = (double)(k - f->start) / len;
		ramp = clamp((double)(k - f->start + 1) / fmax(1, 0.05 * len), 0, 1);
	}

	/* Process faults change the physics. */
	if (f && f->type == SIM_FAULT_BEARING_WEAR) {
		v[SIM_CH_VIBRATION] += sig[0] * (2.5 + 4.5 * prog) + 0.5 * sig[0] * fv_rng_normal(&m->rng);
		v[SIM_CH_TEMPERATURE] += sig[1] * (1.0 + 2.5 * prog);
	} else if (f && f->type == SIM_FAULT_LEAK) {
		v[SIM_CH_PRESSURE] -= ramp * 3.5 * sig[SIM_CH_PRESSURE];
		v[SIM_CH_FLOW] += ramp * 2.5 * sig[SIM_CH_FLOW];
		v[SIM_CH_CURRENT] -= ramp * 1.0 * sig[SIM_CH_CURRENT];
	} else if (f && f->type == SIM_FAULT_CAVITATION) {
		v[SIM_CH_PRESSURE] += ramp * sig[SIM_CH_PRESSURE] * (-1.5 + 2.0 * fv_rng_normal(&m->rng));
		v[SIM_CH_FLOW] -= ramp * 3.0 * sig[SIM_CH_FLOW];
		v[SIM_CH_VIBRATION] += ramp * sig[0];
		if (fv_rng_uniform(&m->rng) < 0.3)
			v[SIM_CH_VIBRATION] += sig[0] * (2 + 5 * fabs(fv_rng_normal(&m->rng)));
	}
	/* Physical quantities stay physical. */
	v[SIM_CH_VIBRATION] = fmax(v[SIM_CH_VIBRATION], 0.05);
	v[SIM_CH_PRESSURE] = fmax(v[SIM_CH_PRESSURE], 0.0);
	v[SIM_CH_FLOW] = fmax(v[SIM_CH_FLOW], 0.0);
	v[SIM_CH_CURRENT] = fmax(v[SIM_CH_CURRENT], 0.0);

	/* Sensors. */
	for (int c = 0; c < SIM_N_CHANNELS; c++)
		v[c] += m->noise[c] * fv_rng_normal(&m->rng);
	v[SIM_CH_VIBRATION] = fmax(v[SIM_CH_VIBRATION], 0.01);

	/* Sensor faults change only the reading. */
	if (f && f->type == SIM_FAULT_DRIFT) {
		v[f->channel] += m->drift_sign * sig[f->channel] * (1.0 + 6.0 * prog);
	} else if (f && f->type == SIM_FAULT_STUCK) {
		if (isnan(m->stuck_value))
			m->stuck_value = v[f->channel];
		v[f->channel] = m->stuck_value;
	} else if (f && f->type == SIM_FAULT_SPIKE) {
		if (fv_rng_uniform(&m->rng) < 0.2) {
			double s = fv_rng_uniform(&m->rng) < 0.5 ? -1 : 1;

			v[f->channel] += s * sig[f->channel] * (4 + 4 * fv_rng_uniform(&m->rng));
		}
	}

	/* Round to what goes on the wire (~5 significant digits) so a stuck
	 * sensor repeats exactly the value it published. */
	for (int c = 0; c < SIM_N_CHANNELS; c++) {
		char buf[32];

		snprintf(buf, sizeof(buf), "%.5g", v[c]);
		v[c] = strtod(buf, NULL);
	}
	memcpy(m->last, v, sizeof(v));
	memcpy(ret_values, v, sizeof(v));
}

char *sim_plant_truth_csv(const struct sim_plant *p, int64_t limit)
{
	size_t cap = 128 + p->n_faults * 192, len = 0;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	len += (size_t)snprintf(s, cap, "machine,fault,channel,start_ms,end_ms,start,end\n");
	for (size_t i = 0; i < p->n_faults; i++) {
		const struct sim_fault *f = &p->faults[i];
		int64_t end = FV_MIN(f->end, limit);
		int64_t t0 = p->cfg.start_ms + f->start * p->cfg.period_ms;
		int64_t t1 = p->cfg.start_ms + (end - 1) * p->cfg.period_ms;
		char a[40], b[40];

		if (f->start >= limit)
			continue;
		len += (size_t)snprintf(s + len, cap - len, "%s,%s,%s,%lld,%lld,%s,%s\n",
					p->m[f->machine].name, fault_names[f->type],
					sim_channel_name(f->channel), (long long)t0, (long long)t1,
					fv_iso8601(t0, a, sizeof(a)), fv_iso8601(t1, b, sizeof(b)));
	}
	return s;
}
