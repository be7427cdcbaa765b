/* fedvigil-swarm: N simulated agents in one process (swarm.c), and the raw
 * transport measurement the scale benchmark compares rounds with (raw.c). */
#ifndef FEDVIGIL_SWARM_H
#define FEDVIGIL_SWARM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fedvigil/wire.h"
#include "mux.h"

/* --raw: what to send and how often. */
struct raw_opts {
	const char *host;       /* broker */
	int port;
	const char *username;   /* NULL = none */
	const char *password;   /* NULL = none */
	const char *root;       /* topic root, e.g. "fedvigil/v1/<fleet>" */
	const char *id_prefix;  /* client ids are <prefix>raw-<i>, <prefix>raw-sink */
	uint32_t n;             /* sending connections */
	size_t update_bytes;    /* payload of each "update" */
	size_t model_bytes;     /* payload of the "model" fanned out */
	uint32_t reps;          /* repetitions of each */
	int64_t timeout_ms;     /* for each step */
	bool paho_sink;         /* the subscriber is a Paho client (fv_mqtt, as
				 * in the coordinator) instead of ours */
	const char *uri;        /* its broker URI */
};

/* The swarm's options (main.c fills them from the command line). */
struct swarm_opts {
	const char *host;        /* broker */
	int port;
	const char *username;    /* NULL = none */
	const char *password;    /* NULL = none */
	const char *fleet;       /* fleet name */
	const char *id_prefix;   /* agent ids: <prefix><machine name> */
	uint32_t n;              /* agents */
	uint64_t seed;           /* plant seed */
	uint32_t buffer;         /* vectors kept per agent (its training set) */
	uint32_t fresh;          /* new vectors per agent before each training */
	int64_t period_ms;       /* simulated sampling period */
	uint32_t max_batch;      /* largest local mini-batch */
	uint32_t max_connecting; /* connections set up at once */
	bool burst;              /* hold updates until every selected agent has one */
	int64_t burst_wait_ms;   /* ... but at most this long after the announcement */
	uint32_t rounds;         /* stop after this many training rounds (0 = never) */
	int64_t idle_timeout_ms; /* exit 1 when nothing arrives this long (0 = never) */
};

/* Run until *stop, or o->rounds training rounds were reported (a JSON line
 * per round to out). 0 when done, 1 on failure (logged). */
int swarm_run(const struct swarm_opts *o, FILE *out, volatile sig_atomic_t *stop);

/* Run the measurement; one JSON line to out. 0, or 1 (logged). */
int swarm_raw_run(const struct raw_opts *o, FILE *out, volatile sig_atomic_t *stop);

#endif
