/* fedvigil-score, event mode: alert episodes against injected faults. */
#include "score.h"

#include "fedvigil/util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A fault from the truth file. */
struct fault {
	char machine[64];  /* machine name */
	char kind[32];     /* fault type */
	int64_t start_ms;  /* first faulty sample */
	int64_t end_ms;    /* last faulty sample */
	bool detected;     /* overlapped by at least one episode */
};

/* An alert episode: raised .. cleared (or the end of the log). */
struct episode {
	char machine[64];  /* agent id = machine name */
	int64_t start_ms;  /* "start" of the raised alert */
	int64_t end_ms;    /* "end" of the cleared alert (or the log's end) */
	bool open;         /* not cleared yet */
	bool tp;           /* overlaps a fault of the same machine */
};

struct vec {
	void *v;    /* elements */
	size_t n;   /* used */
	size_t cap; /* allocated */
};

static void *vec_push(struct vec *a, size_t size)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		void *p = realloc(a->v, cap * size);

		if (!p)
			return NULL;
		a->v = p;
		a->cap = cap;
	}
	memset((char *)a->v + a->n * size, 0, size);
	return (char *)a->v + a->n++ * size;
}

int score_split(char *line, char **cells, int max)
{
	int n = 0;
	char *p = line;

	for (;;) {
		char *d = strchr(p, ',');
		char *s = p;
		size_t len;

		if (d)
			*d = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		len = strlen(s);
		while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			s[--len] = '\0';
		if (n < max)
			cells[n] = s;
		n++;
		if (!d)
			return n;
		p = d + 1;
	}
}

bool score_chomp(char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)line[i]))
			return true;
	return false;
}

static int col_index(char **cells, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(cells[i], name) == 0)
			return i;
	return -1;
}

static bool parse_ms(const char *s, int64_t *ret)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return false;
	*ret = v;
	return true;
}

static int read_truth(const char *path, struct vec *faults)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *cells[16];
	size_t cap = 0;
	int64_t line_no = 0;
	int c_machine = -1, c_fault = -1, c_sms = -1, c_ems = -1, c_s = -1, c_e = -1, rc = 0;

	if (!f) {
		int e = errno;

		fv_log(FV_LOG_ERR, "cannot open truth file %s: %s", path, strerror(e));
		return -e;
	}
	while (getline(&line, &cap, f) >= 0) {
		int n;

		line_no++;
		if (!score_chomp(line))
			continue;
		n = score_split(line, cells, 16);
		n = FV_MIN(n, 16);
		if (c_machine < 0) { /* header */
			c_machine = col_index(cells, n, "machine");
			c_fault = col_index(cells, n, "fault");
			c_sms = col_index(cells, n, "start_ms");
			c_ems = col_index(cells, n, "end_ms");
			c_s = col_index(cells, n, "start");
			c_e = col_index(cells, n, "end");
			if (c_machine < 0 || !((c_sms >= 0 && c_ems >= 0) || (c_s >= 0 && c_e >= 0))) {
				fv_log(FV_LOG_ERR, "%s:%" PRId64 ": header must name the columns machine "
				       "and start_ms,end_ms (or start,end)", path, line_no);
				rc = -EBADMSG;
				break;
			}
			continue;
		}
		struct fault *ft = vec_push(faults, sizeof(*ft));

		if (!ft) {
			rc = -ENOMEM;
			break;
		}
		bool ok = c_machine < n && *cells[c_machine];

		if (ok)
			fv_strlcpy(ft->machine, cells[c_machine], sizeof(ft->machine));
		fv_strlcpy(ft->kind, c_fault >= 0 && c_fault < n ? cells[c_fault] : "?",
			   sizeof(ft->kind));
		if (ok && c_sms >= 0 && c_ems >= 0 && c_sms < n && c_ems < n &&
		    parse_ms(cells[c_sms], &ft->start_ms) && parse_ms(cells[c_ems], &ft->end_ms)) {
			/* ms columns win */
		} else if (!(ok && c_s >= 0 && c_e >= 0 && c_s < n && c_e < n &&
			     fv_iso8601_parse(cells[c_s], &ft->start_ms) == 0 &&
			     fv_iso8601_parse(cells[c_e], &ft->end_ms) == 0)) {
			fv_log(FV_LOG_ERR, "%s:%" PRId64 ": cannot read machine and start/end", path,
			       line_no);
			rc = -EBADMSG;
			break;
		}
		if (ft->end_ms < ft->start_ms) {
			fv_log(FV_LOG_ERR, "%s:%" PRId64 ": end before start", path, line_no);
			rc = -EBADMSG;
			break;
		}
	}
	if (!rc && c_machine < 0) {
		fv_log(FV_LOG_ERR, "%s: empty truth file (not even a header)", path);
		rc = -EBADMSG;
	}
	free(line);
	fclose(f);
	return rc;
}

/* A time field: ISO-8601 string or a number of ms. */
static bool json_time(const cJSON *o, const char *key, int64_t *ret)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsString(j))
		return fv_iso8601_parse(j->valuestring, ret) == 0;
	if (cJSON_IsNumber(j)) {
		*ret = (int64_t)j->valuedouble;
		return true;
	}
	return false;
}

/* Agent id from ".../agent/<agent>/alert". */
static bool topic_agent(const char *topic, char *buf, size_t len)
{
	const char *p = strstr(topic, "/agent/");
	const char *e;

	if (!p)
		return false;
	p += 7;
	e = strchr(p, '/');
	if (!e || (size_t)(e - p) >= len || e == p)
		return false;
	memcpy(buf, p, (size_t)(e - p));
	buf[e - p] = '\0';
	return true;
}

static struct episode *find_open(struct vec *eps, const char *machine)
{
	struct episode *e = eps->v;

	for (size_t i = eps->n; i-- > 0;)
		if (e[i].open && strcmp(e[i].machine, machine) == 0)
			return &e[i];
	return NULL;
}

static int read_alerts(const char *path, struct vec *eps)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	int64_t line_no = 0, log_end = INT64_MIN;
	uint64_t malformed = 0, orphans = 0;
	int rc = 0;

	if (!f) {
		int e = errno;

		fv_log(FV_LOG_ERR, "cannot open alert log %s: %s", path, strerror(e));
		return -e;
	}
	while (getline(&line, &cap, f) >= 0) {
		char machine[64] = "", *json = line;
		const cJSON *state, *agent;
		cJSON *o;
		int64_t s, e;

		line_no++;
		if (!score_chomp(line))
			continue;
		if (*line != '{') { /* "<topic> <json>" */
			char *sp = strchr(line, ' ');

			if (!sp) {
				malformed++;
				fv_log(FV_LOG_WARNING, "%s:%" PRId64 ": no JSON after the topic; skipped",
				       path, line_no);
				continue;
			}
			*sp = '\0';
			json = sp + 1;
			topic_agent(line, machine, sizeof(machine));
		}
		o = cJSON_Parse(json);
		state = cJSON_GetObjectItemCaseSensitive(o, "state");
		agent = cJSON_GetObjectItemCaseSensitive(o, "agent");
		if (cJSON_IsString(agent) && fv_name_valid(agent->valuestring))
			fv_strlcpy(machine, agent->valuestring, sizeof(machine));
		if (!o || !cJSON_IsString(state) || !*machine || !json_time(o, "start", &s)) {
			malformed++;
			fv_log(FV_LOG_WARNING, "%s:%" PRId64 ": not an alert (need agent, state, start); "
			       "skipped", path, line_no);
			cJSON_Delete(o);
			continue;
		}
		if (!json_time(o, "end", &e) || e < s)
			e = s;
		log_end = FV_MAX(log_end, e);

		struct episode *ep = find_open(eps, machine);

		if (strcmp(state->valuestring, "raised") == 0) {
			if (ep) { /* repeated raise (QoS 1 redelivery, update) */
				ep->end_ms = FV_MAX(ep->end_ms, e);
			} else if ((ep = vec_push(eps, sizeof(*ep)))) {
				fv_strlcpy(ep->machine, machine, sizeof(ep->machine));
				ep->start_ms = s;
				ep->end_ms = e;
				ep->open = true;
			}
		} else if (strcmp(state->valuestring, "cleared") == 0) {
			if (ep) {
				ep->end_ms = FV_MAX(ep->end_ms, e);
				ep->open = false;
			} else if ((ep = vec_push(eps, sizeof(*ep)))) {
				/* The raise was before the log started: the cleared
				 * message still carries the episode's span. */
				orphans++;
				fv_strlcpy(ep->machine, machine, sizeof(ep->machine));
				ep->start_ms = s;
				ep->end_ms = e;
			}
		} else {
			malformed++;
			fv_log(FV_LOG_WARNING, "%s:%" PRId64 ": unknown state '%.20s'; skipped", path,
			       line_no, state->valuestring);
		}
		cJSON_Delete(o);
		if (!ep) {
			rc = -ENOMEM;
			break;
		}
	}
	/* Episodes still open last until the latest time the log mentions. */
	for (size_t i = 0; i < eps->n; i++) {
		struct episode *ep = &((struct episode *)eps->v)[i];

		if (ep->open)
			ep->end_ms = FV_MAX(ep->end_ms, log_end);
	}
	if (malformed)
		fv_log(FV_LOG_WARNING, "%s: %" PRIu64 " lines skipped", path, malformed);
	if (orphans)
		fv_log(FV_LOG_NOTICE, "%s: %" PRIu64 " cleared alerts without a raise counted as "
		       "episodes", path, orphans);
	free(line);
	fclose(f);
	return rc;
}

static double ratio(size_t a, size_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

int score_events(const struct score_events_opts *o, FILE *out)
{
	struct vec faults = { 0 }, eps = { 0 }, names = { 0 };
	struct fault *ft;
	struct episode *ep;
	size_t tp = 0, detected = 0;
	int rc = 0;

	if (read_truth(o->truth, &faults) < 0 || read_alerts(o->alerts, &eps) < 0) {
		rc = 1;
		goto out;
	}
	ft = faults.v;
	ep = eps.v;
	for (size_t i = 0; i < eps.n; i++) {
		for (size_t j = 0; j < faults.n; j++) {
			if (strcmp(ep[i].machine, ft[j].machine) != 0)
				continue;
			if (ep[i].start_ms <= ft[j].end_ms + o->slack_ms &&
			    ep[i].end_ms >= ft[j].start_ms) {
				ep[i].tp = true;
				ft[j].detected = true;
			}
		}
		tp += ep[i].tp;
	}
	for (size_t j = 0; j < faults.n; j++)
		detected += ft[j].detected;

	/* Machines in order of first appearance: truth first, then alerts. */
	for (size_t i = 0; i < faults.n + eps.n; i++) {
		const char *m = i < faults.n ? ft[i].machine : ep[i - faults.n].machine;
		const char **nm = names.v;
		bool seen = false;

		for (size_t j = 0; j < names.n; j++)
			seen |= strcmp(nm[j], m) == 0;
		if (!seen) {
			const char **slot = vec_push(&names, sizeof(char *));

			if (!slot) {
				rc = 1;
				goto out;
			}
			*slot = m;
		}
	}
	fprintf(out, "%-20s %7s %9s %9s %5s\n", "machine", "faults", "detected", "episodes", "tp");
	for (size_t k = 0; k < names.n; k++) {
		const char *m = ((const char **)names.v)[k];
		size_t nf = 0, nd = 0, ne = 0, nt = 0;

		for (size_t j = 0; j < faults.n; j++) {
			if (strcmp(ft[j].machine, m) == 0) {
				nf++;
				nd += ft[j].detected;
			}
		}
		for (size_t i = 0; i < eps.n; i++) {
			if (strcmp(ep[i].machine, m) == 0) {
				ne++;
				nt += ep[i].tp;
			}
		}
		fprintf(out, "%-20s %7zu %9zu %9zu %5zu\n", m, nf, nd, ne, nt);
	}
	for (size_t j = 0; j < faults.n; j++) {
		char a[40];

		if (!ft[j].detected)
			fprintf(out, "missed: %s %s at %s\n", ft[j].machine, ft[j].kind,
				fv_iso8601(ft[j].start_ms, a, sizeof(a)));
	}
	fprintf(out, "alerts=%zu tp=%zu faults=%zu detected=%zu precision=%.3f recall=%.3f\n", eps.n,
		tp, faults.n, detected, ratio(tp, eps.n), ratio(detected, faults.n));
out:
	free(faults.v);
	free(eps.v);
	free(names.v);
	return rc;
}
