/* fv-bench: the C side of bench/run (docs/bench.md).
 *
 *   fv-bench data    --width W --n N --seed S --out FILE
 *       the synthetic workload: N rows of W float32 (little-endian), read by
 *       this program and by bench/torch_ref.py alike
 *   fv-bench speed   --preset P --data FILE [--epochs 3] [--batch 32]
 *       train (Adam, lr 1e-3) and then score every row one by one; prints
 *       one JSON line with times, loss, FLOP counts and GFLOP/s
 *   fv-bench rss     --preset P [--windows N] [--epochs 3] [--batch 32]
 *       what the agent does in a training round (windows in memory, scorer,
 *       histogram of base scores, trainer), in a process of its own; prints
 *       its peak RSS (VmHWM)
 *   fv-bench quality --preset P [--samples N]
 *       detection quality on the plant simulator's data (tools/sim/plant.c):
 *       train on the normal part, score the faulty part, ROC-AUC and F1
 *
 * Kernel variant: FV_NN_KERNELS=generic|avx2|avx512 (default: the widest
 * this CPU runs). Output is JSON, one object per line. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedvigil/fl.h"
#include "fedvigil/nn.h"
#include "fedvigil/util.h"
#include "nn/kernels.h"
#include "plant.h"

struct opts {
	const char *preset, *data, *out;
	uint32_t width, epochs, batch;
	size_t n, windows, samples;
	uint64_t seed;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU time of this process: on a shared, loaded machine closer to what
 * the work costs than the wall clock (bench/run reports both). */
static double cpu_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *msg)
{
	fprintf(stderr, "fv-bench: %s\n", msg);
	exit(2);
}

/* The temporal preset on 32 steps of 4 channels: rows of 128 floats, the
 * width of dae128 and sae (time-major, as the agent lays a window out). */
#define CONV1D_STEPS 32
#define CONV1D_CHANNELS 4

static int preset_spec(const char *name, uint32_t input, struct fv_model_spec *s)
{
	enum fv_preset p;

	if (fv_preset_parse(name, &p) < 0 || p == FV_PRESET_CUSTOM)
		die("--preset must be ae8, ae20, dae128, sae or conv1d");
	if (p == FV_PRESET_CONV1D)
		return fv_model_spec_preset_wc(p, CONV1D_STEPS, CONV1D_CHANNELS, s);
	if (!input)
		input = fv_preset_nominal_input(p);
	return fv_model_spec_preset(p, input, s);
}

/* Floats in one row (window) of the model's input. */
static uint32_t row_width(const struct fv_model_spec *s)
{
	return s->kind == FV_MODEL_CONV1D ? s->window * s->sizes[0] : s->sizes[0];
}

/* The synthetic workload: a smooth function of three latent variables plus
 * a little noise, in (0.05, 0.95) so that every preset (sigmoid output too)
 * can fit it. */
static float *make_data(uint32_t W, size_t N, uint64_t seed)
{
	float *x = malloc(sizeof(float) * N * W);
	double *fa = malloc(sizeof(double) * W * 3), *ph = malloc(sizeof(double) * W);
	struct fv_rng r;

	if (!x || !fa || !ph)
		die("out of memory");
	fv_rng_seed(&r, seed);
	for (uint32_t j = 0; j < W; j++) {
		for (int k = 0; k < 3; k++)
			fa[j * 3 + k] = 4.0 * fv_rng_uniform(&r) - 2.0;
		ph[j] = 6.283185307179586 * fv_rng_uniform(&r);
	}
	for (size_t i = 0; i < N; i++) {
		double z[3] = { fv_rng_uniform(&r), fv_rng_uniform(&r), fv_rng_uniform(&r) };

		for (uint32_t j = 0; j < W; j++) {
			double v = sin(fa[j * 3] * z[0] + fa[j * 3 + 1] * z[1] + fa[j * 3 + 2] * z[2] +
				       ph[j]);

			x[i * W + j] = (float)(0.5 + 0.4 * v + 0.02 * (fv_rng_uniform(&r) - 0.5));
		}
	}
	free(fa);
	free(ph);
	return x;
}

static float *read_data(const char *path, uint32_t W, size_t *ret_n)
{
	FILE *f = fopen(path, "rb");
	long len;
	float *x;

	if (!f)
		die("cannot open --data");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	if (len <= 0 || len % (long)(4 * W))
		die("--data size is not a multiple of the preset's row");
	x = malloc((size_t)len);
	if (!x || fread(x, 1, (size_t)len, f) != (size_t)len)
		die("cannot read --data");
	fclose(f);
	*ret_n = (size_t)len / (4 * W);
	return x;
}

/* FLOPs of one sample's training step: forward 2 in out per layer, dW
 * 2 in out, dX 2 in out except for the first layer. */
static double train_flops_per_sample(const struct fv_model_spec *s)
{
	double f = 0;
	uint32_t L = s->window;

	for (uint32_t l = 0; l < s->n_layers; l++) {
		double mac = (double)s->sizes[l] * s->sizes[l + 1];

		if (s->kind == FV_MODEL_CONV1D) {
			/* every tap of every step the kernel visits (edges included:
			 * an upper bound of the multiply-adds done) */
			uint32_t up = s->conv[l] == FV_CONV_UP;
			uint32_t Lo = up ? L * s->stride[l] : (L + s->stride[l] - 1) / s->stride[l];

			mac *= (double)s->kernel[l] * (up ? L : Lo);
			L = Lo;
		}
		f += (l ? 6.0 : 4.0) * mac;
	}
	return f;
}

/* The GEMMs of one training step at batch B, replayed alone until at least
 * 0.2 s have passed: the kernels' own GFLOP/s on this model's shapes. */
static double gemm_gflops(const struct fv_model_spec *s, uint32_t B)
{
	const struct fv_nn_kernels *k = fv_nn_kernels();
	uint32_t maxw = 0;
	float *a, *b, *c;
	double flops = 0, t0, t;
	long reps = 0;

	if (s->kind != FV_MODEL_DENSE)
		return 0.0; /* conv1d runs its own kernels (lib/nn/conv1d_kernels.c) */
	for (uint32_t l = 0; l <= s->n_layers; l++)
		maxw = FV_MAX(maxw, s->sizes[l]);
	a = calloc((size_t)B * maxw + (size_t)maxw * maxw, sizeof(float));
	b = calloc((size_t)maxw * maxw + (size_t)B * maxw, sizeof(float));
	c = calloc((size_t)maxw * maxw + (size_t)B * maxw, sizeof(float));
	if (!a || !b || !c)
		die("out of memory");
	for (size_t i = 0; i < (size_t)B * maxw; i++)
		a[i] = b[i] = 0.001f * (float)(i % 97);
	t0 = cpu_s();
	do {
		for (uint32_t l = 0; l < s->n_layers; l++) {
			uint32_t in = s->sizes[l], out = s->sizes[l + 1];

			k->gemm(c, a, in, 1, b, out, NULL, B, out, in);      /* forward */
			k->gemm(c, a, 1, out, b, in, NULL, out, in, B);      /* dW */
			flops += 4.0 * B * in * out;
			if (l) {
				k->gemm(c, a, out, 1, b, in, NULL, B, in, out); /* dX */
				flops += 2.0 * B * in * out;
			}
		}
		reps++;
		t = cpu_s() - t0;
	} while (t < 0.2 || reps < 10);
	free(a);
	free(b);
	free(c);
	return flops / t / 1e9;
}

static int cmd_data(const struct opts *o)
{
	float *x;
	FILE *f;

	if (!o->width || !o->n || !o->out)
		die("data needs --width, --n and --out");
	x = make_data(o->width, o->n, o->seed);
	f = fopen(o->out, "wb");
	if (!f || fwrite(x, sizeof(float) * o->width, o->n, f) != o->n || fclose(f) != 0)
		die("cannot write --out");
	free(x);
	return 0;
}

static int cmd_speed(const struct opts *o)
{
	struct fv_model_spec s;
	struct fv_train_opts to = FV_TRAIN_DEFAULTS;
	struct fv_model *m, *sc;
	struct fv_model_mem mt, ms;
	size_t N;
	float *x, loss;
	double t0, c0, t_train, t_score, c_train, c_score, sum = 0, flops;
	uint32_t W;
	char shape[128];

	if (preset_spec(o->preset, 0, &s) < 0)
		die("bad preset");
	W = row_width(&s);
	x = o->data ? read_data(o->data, W, &N) : make_data(W, N = o->n ? o->n : 65536, o->seed);
	m = fv_model_new(&s, o->batch);
	sc = fv_model_new_scorer(&s, 1);
	if (!m || !sc)
		die("out of memory");
	fv_model_init(m, 1);
	t0 = now_s();
	c0 = cpu_s();
	if (fv_model_train(m, x, N, o->epochs, o->batch, &to, 2, &loss) < 0)
		die("training failed");
	t_train = now_s() - t0;
	c_train = cpu_s() - c0;
	fv_model_set_params(sc, fv_model_params(m), fv_model_nparams(m));
	t0 = now_s();
	c0 = cpu_s();
	for (size_t i = 0; i < N; i++)
		sum += fv_model_score(sc, x + i * W, NULL);
	t_score = now_s() - t0;
	c_score = cpu_s() - c0;
	flops = train_flops_per_sample(&s) * (double)N * o->epochs;
	fv_model_spec_mem(&s, o->batch, true, &mt);
	fv_model_spec_mem(&s, 1, false, &ms);
	fv_model_spec_format(&s, shape, sizeof(shape));
	printf("{\"preset\":\"%s\",\"layers\":\"%s\",\"kernels\":\"%s\",\"n\":%zu,\"epochs\":%u,"
	       "\"batch\":%u,\"params\":%zu,\"trainer_bytes\":%zu,\"scorer_bytes\":%zu,"
	       "\"train_s\":%.6f,\"score_s\":%.6f,\"train_cpu_s\":%.6f,\"score_cpu_s\":%.6f,"
	       "\"loss\":%.6g,\"mean_score\":%.6g,"
	       "\"train_gflop\":%.4f,\"train_gflops\":%.3f,\"gemm_gflops\":%.3f}\n",
	       o->preset, shape, fv_nn_kernels()->name, N, o->epochs, o->batch,
	       fv_model_nparams(m), mt.total, ms.total, t_train, t_score, c_train, c_score,
	       (double)loss, sum / (double)N, flops / 1e9, flops / c_train / 1e9,
	       gemm_gflops(&s, o->batch));
	fv_model_free(m);
	fv_model_free(sc);
	free(x);
	return 0;
}

static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* An agent's training round, as agent/agent.c does it: the windows of its
 * buffer copied out (N x in floats), a scorer kept for detection scoring
 * each window into the histogram, a trainer built for the round, trained,
 * the delta computed, everything freed. */
static int cmd_rss(const struct opts *o)
{
	struct fv_model_spec s;
	struct fv_train_opts to = FV_TRAIN_DEFAULTS;
	struct fv_model *m, *sc;
	struct fv_hist h;
	size_t N = o->windows ? o->windows : 4096, P;
	float *x, *delta, loss;
	long before = vm_hwm_kb(), after;
	uint32_t W;

	if (preset_spec(o->preset, 0, &s) < 0)
		die("bad preset");
	W = row_width(&s);
	x = make_data(W, N, o->seed);
	sc = fv_model_new_scorer(&s, 1);
	m = fv_model_new(&s, o->batch);
	if (!sc || !m)
		die("out of memory");
	fv_model_init(m, 1);
	P = fv_model_nparams(m);
	fv_model_set_params(sc, fv_model_params(m), P);
	fv_hist_init(&h);
	for (size_t i = 0; i < N; i++)
		fv_hist_add(&h, fv_model_score(sc, x + i * W, NULL));
	if (fv_model_train(m, x, N, o->epochs, o->batch, &to, 2, &loss) < 0)
		die("training failed");
	delta = malloc(sizeof(float) * P);
	if (!delta)
		die("out of memory");
	for (size_t i = 0; i < P; i++)
		delta[i] = fv_model_params(m)[i] - fv_model_params(sc)[i];
	after = vm_hwm_kb();
	printf("{\"preset\":\"%s\",\"windows\":%zu,\"window_bytes\":%zu,\"hwm_start_kb\":%ld,"
	       "\"hwm_kb\":%ld,\"loss\":%.6g}\n",
	       o->preset, N, N * W * sizeof(float), before, after, (double)loss);
	free(delta);
	free(x);
	fv_model_free(m);
	fv_model_free(sc);
	return 0;
}

/* ---- detection quality on simulator data ---- */

static int cmp_score(const void *a, const void *b)
{
	const double *x = a, *y = b;

	return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Unnormalised ROC-AUC of (score, label) pairs: the number of (positive,
 * negative) pairs the positive outscores, ties counted half. */
static double auc_pairs(double *sl, size_t n)
{
	double auc = 0, neg_below = 0;

	qsort(sl, n, 2 * sizeof(double), cmp_score);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		double pos_run = 0, neg_run = 0;

		for (; j < n && sl[2 * j] == sl[2 * i]; j++) {
			if (sl[2 * j + 1] > 0)
				pos_run++;
			else
				neg_run++;
		}
		auc += pos_run * neg_below + 0.5 * pos_run * neg_run;
		neg_below += neg_run;
		i = j;
	}
	return auc;
}

static int cmd_quality(const struct opts *o)
{
	struct sim_config cfg = { 0 };
	struct sim_plant *plant;
	struct fv_model_spec s;
	struct fv_train_opts to = FV_TRAIN_DEFAULTS;
	struct fv_model *m;
	char err[256];
	enum { C = SIM_N_CHANNELS, MACHINES = 3 };
	int64_t n = (int64_t)(o->samples ? o->samples : 20000), n_normal = n / 2;
	enum fv_preset p;
	uint32_t Wv, D;
	double mean[C] = { 0 }, sd[C] = { 0 };
	double *v, *sl;
	uint8_t *bad;
	float *train, *win, loss;
	size_t n_train = 0, n_test = 0, tp = 0, fpos = 0, fneg = 0;
	struct fv_hist h;
	double thr;
	const struct sim_fault *faults;
	size_t n_faults;

	if (fv_preset_parse(o->preset, &p) < 0 || p == FV_PRESET_CUSTOM)
		die("--preset must be ae8, ae20, dae128, sae or conv1d");
	/* Windows of Wv vectors of the 5 channels, Wv * 5 as near the preset's
	 * input as whole vectors allow (ae8: 2 x 5 = 10, ae20: 4 x 5, the
	 * 128-wide ones: 26 x 5 = 130); conv1d: 32 x 5, time-major. */
	Wv = p == FV_PRESET_CONV1D ? CONV1D_STEPS : (fv_preset_nominal_input(p) + C / 2) / C;
	D = Wv * C;
	if ((p == FV_PRESET_CONV1D ? fv_model_spec_preset_wc(p, Wv, C, &s)
				   : fv_model_spec_preset(p, D, &s)) < 0)
		die("bad preset");
	cfg.machines = MACHINES;
	cfg.period_ms = 1000;
	cfg.n_samples = n;
	cfg.normal_samples = n_normal;
	cfg.faults = 6;
	cfg.fault_mask = (1u << SIM_N_FAULT_TYPES) - 1;
	cfg.seed = o->seed;
	plant = sim_plant_new(&cfg, err, sizeof(err));
	if (!plant)
		die(err);
	v = malloc(sizeof(double) * (size_t)n * C * MACHINES);
	bad = calloc((size_t)n * MACHINES, 1);
	if (!v || !bad)
		die("out of memory");
	for (int mc = 0; mc < MACHINES; mc++)
		for (int64_t k = 0; k < n; k++) {
			const struct sim_fault *on;

			sim_plant_step(plant, mc, k, v + ((size_t)mc * n + k) * C, &on);
		}
	faults = sim_plant_faults(plant, &n_faults);
	for (size_t i = 0; i < n_faults; i++)
		for (int64_t k = faults[i].start; k < faults[i].end && k < n; k++)
			bad[(size_t)faults[i].machine * n + k] = 1;
	/* Normalisation from the normal part of every machine (the fleet's
	 * statistics round). */
	for (int mc = 0; mc < MACHINES; mc++)
		for (int64_t k = 0; k < n_normal; k++)
			for (int c = 0; c < C; c++)
				mean[c] += v[((size_t)mc * n + k) * C + c];
	for (int c = 0; c < C; c++)
		mean[c] /= (double)(MACHINES * n_normal);
	for (int mc = 0; mc < MACHINES; mc++)
		for (int64_t k = 0; k < n_normal; k++)
			for (int c = 0; c < C; c++) {
				double d = v[((size_t)mc * n + k) * C + c] - mean[c];

				sd[c] += d * d;
			}
	for (int c = 0; c < C; c++)
		sd[c] = fmax(sqrt(sd[c] / (double)(MACHINES * n_normal)), 1e-3);

	size_t max_w = (size_t)MACHINES * (size_t)n;

	train = malloc(sizeof(float) * max_w * D);
	sl = malloc(sizeof(double) * 2 * max_w);
	win = malloc(sizeof(float) * D);
	if (!train || !sl || !win)
		die("out of memory");
	for (int mc = 0; mc < MACHINES; mc++)
		for (int64_t k = Wv - 1; k < n_normal; k++) {
			for (uint32_t w = 0; w < Wv; w++)
				for (int c = 0; c < C; c++)
					train[n_train * D + w * C + c] =
						(float)((v[((size_t)mc * n + k + 1 - Wv + w) * C + c] -
							 mean[c]) / sd[c]);
			n_train++;
		}
	m = fv_model_new(&s, 32);
	if (!m)
		die("out of memory");
	fv_model_init(m, 1);
	if (fv_model_train(m, train, n_train, 10, 32, &to, 3, &loss) < 0)
		die("training failed");
	/* Threshold: the 99.5th percentile of the training windows' scores. */
	fv_hist_init(&h);
	for (size_t i = 0; i < n_train; i++)
		fv_hist_add(&h, fv_model_score(m, train + i * D, NULL));
	fv_hist_quantile(&h, 0.995, &thr);
	for (int mc = 0; mc < MACHINES; mc++)
		for (int64_t k = n_normal + Wv - 1; k < n; k++) {
			int label = 0;
			double sc;

			for (uint32_t w = 0; w < Wv; w++) {
				int64_t kk = k + 1 - Wv + w;

				label |= bad[(size_t)mc * n + kk];
				for (int c = 0; c < C; c++)
					win[w * C + c] =
						(float)((v[((size_t)mc * n + kk) * C + c] - mean[c]) / sd[c]);
			}
			sc = fv_model_score(m, win, NULL);
			sl[2 * n_test] = sc;
			sl[2 * n_test + 1] = label;
			n_test++;
			if (sc > thr && label)
				tp++;
			else if (sc > thr)
				fpos++;
			else if (label)
				fneg++;
		}

	size_t npos = tp + fneg, nneg = n_test - npos;
	double auc = npos && nneg ? auc_pairs(sl, n_test) / ((double)npos * (double)nneg) : 0.0;
	double prec = tp + fpos ? (double)tp / (double)(tp + fpos) : 0;
	double rec = npos ? (double)tp / (double)npos : 0;
	char shape[128];

	fv_model_spec_format(&s, shape, sizeof(shape));
	printf("{\"preset\":\"%s\",\"layers\":\"%s\",\"train_windows\":%zu,\"test_windows\":%zu,"
	       "\"anomalous\":%zu,\"loss\":%.5g,\"threshold\":%.5g,\"roc_auc\":%.4f,"
	       "\"precision\":%.4f,\"recall\":%.4f,\"f1\":%.4f}\n",
	       o->preset, shape, n_train, n_test, npos, (double)loss, thr, auc, prec, rec,
	       prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0.0);
	fv_model_free(m);
	sim_plant_free(plant);
	free(v);
	free(bad);
	free(train);
	free(sl);
	free(win);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .epochs = 3, .batch = 32, .seed = 1 };

	if (argc < 2)
		die("usage: fv-bench data|speed|rss|quality [options] (see bench/fv_bench.c)");
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			die("every option takes a value");
		if (!strcmp(k, "--preset"))
			o.preset = v;
		else if (!strcmp(k, "--data"))
			o.data = v;
		else if (!strcmp(k, "--out"))
			o.out = v;
		else if (!strcmp(k, "--width"))
			o.width = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(k, "--n"))
			o.n = strtoul(v, NULL, 10);
		else if (!strcmp(k, "--windows"))
			o.windows = strtoul(v, NULL, 10);
		else if (!strcmp(k, "--samples"))
			o.samples = strtoul(v, NULL, 10);
		else if (!strcmp(k, "--epochs"))
			o.epochs = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(k, "--batch"))
			o.batch = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(k, "--seed"))
			o.seed = strtoull(v, NULL, 10);
		else
			die("unknown option");
		i++;
	}
	if (o.batch == 0 || o.batch > 4096)
		die("--batch must be 1..4096");
	if (!strcmp(argv[1], "data"))
		return cmd_data(&o);
	if (!o.preset)
		die("--preset is required");
	if (!strcmp(argv[1], "speed"))
		return cmd_speed(&o);
	if (!strcmp(argv[1], "rss"))
		return cmd_rss(&o);
	if (!strcmp(argv[1], "quality"))
		return cmd_quality(&o);
	die("unknown command");
	return 2;
}
