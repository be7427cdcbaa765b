/* fedvigil-sim as a Sparkplug B edge node (--sparkplug): one edge node
 * whose devices are the simulated machines. */
#ifndef FEDVIGIL_SIM_SPB_H
#define FEDVIGIL_SIM_SPB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fedvigil/mqtt.h"
#include "fedvigil/sparkplug.h"

struct sim_spb {
	const char *group;  /* Sparkplug group id (the --prefix) */
	const char *node;   /* edge node id */
	const char *broker; /* for messages */
	int qos;            /* publish QoS */
	uint64_t seq;       /* next seq, 0..255 */
	uint64_t bdseq;     /* birth/death sequence of this session */
};

/* The NDEATH LWT: its topic into topic (FV_SPB_TOPIC_MAX) and payload
 * (malloc'd). 0 or -errno. */
int sim_spb_death(const struct sim_spb *s, char *topic, uint8_t **ret_buf, size_t *ret_len);
/* Publish NBIRTH (bdSeq, Node Control/Rebirth). 0 or -errno (-EINTR on stop). */
int sim_spb_nbirth(struct sim_spb *s, struct fv_mqtt *mq, int64_t ts, volatile sig_atomic_t *stop);
/* One sample of machine `device`: DBIRTH (names, aliases, datatypes, the
 * values) when birth, else DDATA with the values by alias. Alias of channel
 * c of machine m: m * n + c + 1. */
int sim_spb_sample(struct sim_spb *s, struct fv_mqtt *mq, const char *device, int m, bool birth,
		   int64_t ts, const double *v, int n, const char *const *names,
		   volatile sig_atomic_t *stop);
/* Publish NDEATH before a clean disconnect. */
int sim_spb_ndeath(struct sim_spb *s, struct fv_mqtt *mq, volatile sig_atomic_t *stop);

#endif
