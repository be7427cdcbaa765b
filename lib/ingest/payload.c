/* Sensor payloads: a bare number or a JSON object with configurable paths.
 *
 * Everything here reads bytes a remote peer controls: the length is checked
 * first, nothing is read past buf+len (MQTT payloads are not NUL-terminated),
 * and NaN/Inf never come out. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fedvigil/ingest.h"
#include "fedvigil/util.h"

/* Timestamps beyond 9999-12-31T23:59:59.999Z are nonsense (and would
 * overflow nothing, but a sensor sending them is broken). */
#define TS_MAX_MS 253402300799999.0

int fv_payload_format_parse(const char *s, enum fv_payload_format *ret)
{
	if (!s || !ret)
		return -EINVAL;
	if (strcmp(s, "number") == 0)
		*ret = FV_FMT_NUMBER;
	else if (strcmp(s, "json") == 0)
		*ret = FV_FMT_JSON;
	else
		return -EINVAL;
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* A value the model can hold: finite, and finite once it becomes a float in
 * the aligned vector (1e300 would turn into Inf there). */
static int check_value(double v)
{
	if (!isfinite(v) || fabs(v) > FLT_MAX)
		return -ERANGE;
	return 0;
}

/* "21.5", surrounded by optional ASCII whitespace. strtod works in the "C"
 * locale here (the daemons never call setlocale), so '.' is the decimal
 * point. Hex floats ("0x1p3") are rejected: no sensor sends them and they
 * make garbage look numeric. strtod's "nan"/"inf" spellings come out as
 * -ERANGE, like any other non-finite value. */
static int parse_number(const char *buf, size_t len, double *ret_value)
{
	char tmp[FV_MAX_SENSOR_PAYLOAD + 1];
	size_t b = 0, e = len;
	char *end;
	double v;
	int r;

	while (b < e && is_space(buf[b]))
		b++;
	while (e > b && is_space(buf[e - 1]))
		e--;
	if (b == e)
		return -EBADMSG;
	memcpy(tmp, buf + b, e - b);
	tmp[e - b] = '\0';
	/* An embedded NUL would end strtod early; the end check below catches
	 * it, as it catches "1.0x". */
	if (strpbrk(tmp, "xX"))
		return -EBADMSG;
	errno = 0;
	v = strtod(tmp, &end);
	if (end == tmp || end != tmp + (e - b))
		return -EBADMSG;
	/* errno == ERANGE on underflow gives 0 or a denormal: fine. Overflow
	 * gives HUGE_VAL, caught by check_value. */
	r = check_value(v);
	if (r < 0)
		return r;
	*ret_value = v;
	return 0;
}

/* The member part of a path ("a.b" of "$.a.b"), or NULL when the path is
 * malformed: "$" alone gives "", segments must be non-empty and shorter
 * than 64 bytes. */
static const char *path_members(const char *path)
{
	const char *p = path, *q;

	if (p[0] == '$') {
		p++;
		if (*p == '\0')
			return p;
		if (*p != '.')
			return NULL;
		p++;
	}
	for (q = p;;) {
		const char *dot = strchr(q, '.');
		size_t n = dot ? (size_t)(dot - q) : strlen(q);

		if (n == 0 || n >= 64)
			return NULL;
		if (!dot)
			return p;
		q = dot + 1;
	}
}

/* Follow "$.a.b", "a.b" or "$" from the root: object members only, no
 * array indices. NULL when a member is missing; *ret_bad_path when the path
 * itself is malformed (checked before anything is looked up). */
static const cJSON *json_path(const cJSON *root, const char *path, bool *ret_bad_path)
{
	const char *p = path_members(path);
	char seg[64];

	*ret_bad_path = p == NULL;
	if (!p)
		return NULL;
	if (*p == '\0')
		return root;
	while (root) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		memcpy(seg, p, n);
		seg[n] = '\0';
		if (!cJSON_IsObject(root))
			return NULL;
		root = cJSON_GetObjectItemCaseSensitive(root, seg);
		if (!dot)
			return root;
		p = dot + 1;
	}
	return NULL;
}

static int json_value(const cJSON *item, double *ret_value)
{
	double v;
	int r;

	/* true/false map to 1/0: digital inputs (pump on, valve open) are
	 * often published as JSON booleans and make useful channels. */
	if (cJSON_IsBool(item))
		v = cJSON_IsTrue(item) ? 1.0 : 0.0;
	else if (cJSON_IsNumber(item))
		v = item->valuedouble;
	else
		return -EBADMSG; /* strings, null, objects, arrays */
	r = check_value(v);
	if (r < 0)
		return r;
	*ret_value = v;
	return 0;
}

/* A number is ms since the epoch (never seconds: guessing the unit from the
 * magnitude goes wrong silently), a string is ISO-8601 UTC. */
static int json_ts(const cJSON *item, int64_t *ret_ts)
{
	if (cJSON_IsNumber(item)) {
		double v = item->valuedouble;

		if (!isfinite(v))
			return -ERANGE;
		if (v < 0 || v > TS_MAX_MS)
			return -ERANGE;
		*ret_ts = (int64_t)llround(v);
		return 0;
	}
	if (cJSON_IsString(item)) {
		int64_t ms;

		if (fv_iso8601_parse(item->valuestring, &ms) < 0)
			return -EBADMSG;
		if (ms < 0 || (double)ms > TS_MAX_MS)
			return -ERANGE;
		*ret_ts = ms;
		return 0;
	}
	return -EBADMSG;
}

static int parse_json(const struct fv_payload_spec *spec, const char *buf, size_t len,
		      double *ret_value, int64_t *ret_ts)
{
	const char *end = NULL;
	const cJSON *item;
	cJSON *root;
	double v = 0;
	int64_t ts = -1;
	bool bad_path;
	int r;

	if (len == 0)
		return -EBADMSG;
	root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (!root)
		return -EBADMSG;
	/* ParseWithLength accepts trailing bytes; we don't ("{} junk"). */
	for (const char *p = end; p && p < buf + len; p++)
		if (!is_space(*p)) {
			r = -EBADMSG;
			goto out;
		}
	item = json_path(root, spec->value_path, &bad_path);
	if (bad_path) {
		r = -EINVAL;
		goto out;
	}
	if (!item) {
		r = -EBADMSG;
		goto out;
	}
	r = json_value(item, &v);
	if (r < 0)
		goto out;
	if (spec->ts_path[0]) {
		item = json_path(root, spec->ts_path, &bad_path);
		if (bad_path) {
			r = -EINVAL;
			goto out;
		}
		/* An absent (or null) timestamp is "none": the caller decides
		 * whether it can live without one. A present, malformed one is
		 * an error. */
		if (item && !cJSON_IsNull(item)) {
			r = json_ts(item, &ts);
			if (r < 0)
				goto out;
		}
	}
	*ret_value = v;
	*ret_ts = ts;
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

int fv_payload_parse(const struct fv_payload_spec *spec, const void *buf, size_t len,
		     double *ret_value, int64_t *ret_ts_ms)
{
	double v;
	int64_t ts = -1;
	int r;

	if (!spec || (!buf && len) || !ret_value || !ret_ts_ms)
		return -EINVAL;
	if (len > FV_MAX_SENSOR_PAYLOAD)
		return -E2BIG;
	if (!buf)
		buf = "";
	switch (spec->format) {
	case FV_FMT_NUMBER:
		r = parse_number(buf, len, &v);
		break;
	case FV_FMT_JSON:
		if (memchr(spec->value_path, '\0', sizeof(spec->value_path)) == NULL ||
		    memchr(spec->ts_path, '\0', sizeof(spec->ts_path)) == NULL)
			return -EINVAL;
		r = parse_json(spec, buf, len, &v, &ts);
		break;
	default:
		return -EINVAL;
	}
	if (r < 0)
		return r;
	*ret_value = v;
	*ret_ts_ms = ts;
	return 0;
}
