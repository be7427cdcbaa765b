/* fedvigil-coordinator: the Prometheus page served on metrics.listen. */
#include <stdio.h>

#include "coord.h"
#include "fedvigil/mqtt.h"
#include "fedvigil/svc.h"
#include "fedvigil/version.h"

static const char *phase_name(enum coord_phase p)
{
	switch (p) {
	case COORD_WAIT_AGENTS: return "wait_agents";
	case COORD_COLLECT: return "collect";
	case COORD_PAUSE: return "pause";
	case COORD_FINISHED: return "finished";
	}
	return "unknown";
}

void coord_render_prom(struct fv_prom *p, void *userdata)
{
	const struct coord_prom *cp = userdata;
	struct coord_info in;
	struct fv_mqtt_stats ms;
	char labels[256], fleet[FV_NAME_MAX * 2], id[FV_NAME_MAX * 2];
	static const enum coord_phase phases[] = { COORD_WAIT_AGENTS, COORD_COLLECT, COORD_PAUSE,
						   COORD_FINISHED };

	coord_get_info(cp->co, &in);
	snprintf(labels, sizeof(labels), "version=\"%s\",fleet=\"%s\",id=\"%s\"", FV_VERSION,
		 fv_prom_label_escape(cp->cfg->fleet, fleet, sizeof(fleet)),
		 fv_prom_label_escape(cp->cfg->id, id, sizeof(id)));
	fv_prom_family(p, "fedvigil_coordinator_info", "gauge",
		       "Constant 1, labelled with the version, fleet and id.");
	fv_prom_sample(p, "fedvigil_coordinator_info", labels, 1);
	fv_prom_metric(p, "fedvigil_coordinator_round", "gauge",
		       "Round being run (the next to close); 0 is the statistics round.",
		       (double)in.round);
	fv_prom_family(p, "fedvigil_coordinator_phase", "gauge",
		       "1 for the phase the round machine is in.");
	for (size_t i = 0; i < FV_ARRAY_SIZE(phases); i++) {
		snprintf(labels, sizeof(labels), "phase=\"%s\"", phase_name(phases[i]));
		fv_prom_sample(p, "fedvigil_coordinator_phase", labels, in.phase == phases[i]);
	}
	fv_prom_metric(p, "fedvigil_coordinator_rounds_closed_total", "counter",
		       "Rounds closed since start.", (double)in.rounds_closed);
	fv_prom_metric(p, "fedvigil_coordinator_live_agents", "gauge",
		       "Agents whose retained state is online.", in.n_live);
	fv_prom_metric(p, "fedvigil_coordinator_selected_agents", "gauge",
		       "Agents selected for the open round (0 when none is open).", in.n_selected);
	fv_prom_metric(p, "fedvigil_coordinator_round_updates", "gauge",
		       "Updates accepted in the open round.", in.n_answered);
	fv_prom_metric(p, "fedvigil_coordinator_updates_accepted_total", "counter",
		       "Model updates accepted since start.", (double)in.accepted_total);
	fv_prom_family(p, "fedvigil_coordinator_updates_rejected_total", "counter",
		       "Model updates rejected since start, by reason.");
	for (int i = 0; i < FV_REJ__MAX; i++) {
		snprintf(labels, sizeof(labels), "reason=\"%s\"", fv_reject_name((enum fv_reject)i));
		fv_prom_sample(p, "fedvigil_coordinator_updates_rejected_total", labels,
			       (double)in.rejected_total[i]);
	}
	fv_prom_metric(p, "fedvigil_coordinator_round_deadline_ms", "gauge",
		       "Deadline of the open round in ms (adaptive with round.deadline_k).",
		       (double)in.deadline_ms);
	fv_prom_metric(p, "fedvigil_coordinator_missed_total", "counter",
		       "Selected agents without an update when their round closed, since start.",
		       (double)in.missed_total);
	fv_prom_metric(p, "fedvigil_coordinator_late_applied_total", "counter",
		       "Late updates aggregated with a staleness weight, since start.",
		       (double)in.late_applied_total);
	fv_prom_metric(p, "fedvigil_coordinator_late_dropped_total", "counter",
		       "Late updates dropped, since start.", (double)in.late_dropped_total);
	fv_prom_metric(p, "fedvigil_coordinator_rounds_abandoned_total", "counter",
		       "Rounds abandoned without quorum, since start.", (double)in.abandoned);
	fv_prom_metric(p, "fedvigil_coordinator_update_received_bytes_total", "counter",
		       "Payload bytes of update messages received.", (double)in.update_bytes_total);
	fv_prom_metric(p, "fedvigil_coordinator_model_version", "gauge",
		       "Version of the current global model (0 before the first).",
		       in.model ? (double)in.model->version : 0);
	fv_prom_metric(p, "fedvigil_coordinator_loss", "gauge",
		       "Weighted mean training loss of the last round.",
		       in.model ? (double)in.model->loss : 0);
	fv_prom_metric(p, "fedvigil_coordinator_threshold", "gauge",
		       "Alert threshold of the current global model (0 = none yet).",
		       in.model ? (double)in.model->threshold : 0);
	fv_mqtt_get_stats(cp->mqtt, &ms);
	fv_prom_mqtt(p, &ms, fv_mqtt_connected(cp->mqtt));
	fv_prom_metric(p, "fedvigil_watchdog_pings_total", "counter",
		       "WATCHDOG=1 notifications sent to the service manager.",
		       (double)cp->sd->wd_sent);
	fv_prom_process(p);
}
