/* fedvigil-sim: the plant model (machines, signals, fault schedule).
 * No MQTT and no printing here: main.c drives it sample by sample. */
#ifndef FEDVIGIL_SIM_PLANT_H
#define FEDVIGIL_SIM_PLANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Channels every machine publishes, in this order. */
enum sim_channel {
	SIM_CH_VIBRATION = 0, /* mm/s RMS */
	SIM_CH_TEMPERATURE,   /* deg C */
	SIM_CH_PRESSURE,      /* bar */
	SIM_CH_FLOW,          /* m^3/h */
	SIM_CH_CURRENT,       /* A */
	SIM_N_CHANNELS,
};

enum sim_fault_type {
	SIM_FAULT_BEARING_WEAR = 0,
	SIM_FAULT_LEAK,
	SIM_FAULT_CAVITATION,
	SIM_FAULT_DRIFT,
	SIM_FAULT_STUCK,
	SIM_FAULT_SPIKE,
	SIM_N_FAULT_TYPES,
};

/* What to simulate; filled from the command line. */
struct sim_config {
	int machines;          /* number of machines, >= 1 */
	int64_t period_ms;     /* simulated time between samples */
	int64_t n_samples;     /* samples per machine */
	int64_t normal_samples; /* leading fault-free samples */
	int faults;            /* faults per machine */
	uint32_t fault_mask;   /* bit i set: enum sim_fault_type i allowed */
	uint64_t seed;         /* everything is a function of this */
	int64_t start_ms;      /* simulated wall time of sample 0 */
};

/* One injected fault: samples [start, end) of one machine. */
struct sim_fault {
	int machine;              /* index into the plant's machines */
	enum sim_fault_type type; /* what happens */
	int channel;              /* affected sensor, -1 for several ("*") */
	int64_t start;            /* first faulty sample index */
	int64_t end;              /* one past the last faulty sample */
};

struct sim_plant;

/* Channel and fault-type names ("vibration", "bearing_wear"). */
const char *sim_channel_name(int ch);
const char *sim_fault_name(enum sim_fault_type t);
/* Parse "all" or a comma list of fault names into a mask; -EINVAL with the
 * offending name copied into bad (size badlen) otherwise. */
int sim_fault_mask_parse(const char *s, uint32_t *ret_mask, char *bad, size_t badlen);

/* Build the plant and its fault schedule. On failure returns NULL and
 * writes the reason into err (e.g. the faults do not fit). Caller owns the
 * plant; free with sim_plant_free(). */
struct sim_plant *sim_plant_new(const struct sim_config *cfg, char *err, size_t errlen);
void sim_plant_free(struct sim_plant *p);

/* Machine name ("pump-1", "compressor-2", ...). */
const char *sim_plant_machine_name(const struct sim_plant *p, int m);
/* The schedule, sorted by machine then start. */
const struct sim_fault *sim_plant_faults(const struct sim_plant *p, size_t *ret_n);

/* Produce sample k of machine m into ret_values[SIM_N_CHANNELS]. Must be
 * called for k = 0, 1, 2, ... in order for each machine (the model has
 * state). If a fault starts at this sample, *ret_onset points to it,
 * else NULL. */
void sim_plant_step(struct sim_plant *p, int m, int64_t k, double *ret_values,
		    const struct sim_fault **ret_onset);

/* Render the truth CSV for faults starting before sample limit (ends
 * clipped to limit; pass INT64_MAX for all). Returns a malloc'd string. */
char *sim_plant_truth_csv(const struct sim_plant *p, int64_t limit);

#endif
