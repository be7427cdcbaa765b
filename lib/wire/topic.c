/* Topic names of ARCHITECTURE.md's table, rooted at fedvigil/v1/<fleet>/.
 *
 * Builders refuse names that are not valid topic levels (fv_name_valid()),
 * so a configured name can never smuggle in '/', '+' or '#'. Parsers accept
 * exactly the canonical form the builders produce and nothing else. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fedvigil/util.h"
#include "fedvigil/wire.h"

#define ROOT "fedvigil/v1/"

/* printf into buf (FV_TOPIC_MAX); NULL when it does not fit. */
static char *fmt(char *buf, const char *f, ...) __attribute__((format(printf, 2, 3)));
static char *fmt(char *buf, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, FV_TOPIC_MAX, f, ap);
	va_end(ap);
	if (n < 0 || n >= FV_TOPIC_MAX)
		return NULL;
	return buf;
}

char *fv_topic_round(char *buf, const char *fleet)
{
	if (!buf || !fv_name_valid(fleet))
		return NULL;
	return fmt(buf, ROOT "%s/round", fleet);
}

char *fv_topic_update(char *buf, const char *fleet, uint64_t round, const char *agent)
{
	if (!buf || !fv_name_valid(fleet) || !fv_name_valid(agent))
		return NULL;
	return fmt(buf, ROOT "%s/round/%" PRIu64 "/update/%s", fleet, round, agent);
}

char *fv_topic_updates_filter(char *buf, const char *fleet)
{
	if (!buf || !fv_name_valid(fleet))
		return NULL;
	return fmt(buf, ROOT "%s/round/+/update/+", fleet);
}

char *fv_topic_model(char *buf, const char *fleet)
{
	if (!buf || !fv_name_valid(fleet))
		return NULL;
	return fmt(buf, ROOT "%s/model", fleet);
}

char *fv_topic_agent(char *buf, const char *fleet, const char *agent, const char *leaf)
{
	if (!buf || !fv_name_valid(fleet) || !fv_name_valid(agent) || !fv_name_valid(leaf))
		return NULL;
	return fmt(buf, ROOT "%s/agent/%s/%s", fleet, agent, leaf);
}

char *fv_topic_coord(char *buf, const char *fleet, const char *leaf)
{
	if (!buf || !fv_name_valid(fleet) || !fv_name_valid(leaf))
		return NULL;
	return fmt(buf, ROOT "%s/coord/%s", fleet, leaf);
}

/* If topic starts with "fedvigil/v1/<fleet>/<kw>/", the rest; else NULL. */
static const char *after(const char *topic, const char *fleet, const char *kw)
{
	size_t n;

	if (!topic || !fv_name_valid(fleet) || strncmp(topic, ROOT, strlen(ROOT)) != 0)
		return NULL;
	topic += strlen(ROOT);
	n = strlen(fleet);
	if (strncmp(topic, fleet, n) != 0 || topic[n] != '/')
		return NULL;
	topic += n + 1;
	n = strlen(kw);
	if (strncmp(topic, kw, n) != 0 || topic[n] != '/')
		return NULL;
	return topic + n + 1;
}

/* One topic level [s, next '/' or end) as a valid name into ret; *ret_end
 * points after it. -EINVAL if it is not a valid name. */
static int level(const char *s, char ret[FV_NAME_MAX], const char **ret_end)
{
	size_t n = strcspn(s, "/");

	if (n == 0 || n >= FV_NAME_MAX)
		return -EINVAL;
	memcpy(ret, s, n);
	ret[n] = '\0';
	if (!fv_name_valid(ret))
		return -EINVAL;
	*ret_end = s + n;
	return 0;
}

int fv_topic_parse_update(const char *topic, const char *fleet, uint64_t *ret_round,
			  char ret_agent[FV_NAME_MAX])
{
	const char *p = after(topic, fleet, "round");
	char agent[FV_NAME_MAX];
	uint64_t round = 0;

	if (!p || !ret_round || !ret_agent)
		return -EINVAL;
	/* Decimal, no sign, no leading zero (one spelling per round). */
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '/'))
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (round > (UINT64_MAX - d) / 10)
			return -EINVAL;
		round = round * 10 + d;
	}
	if (strncmp(p, "/update/", 8) != 0)
		return -EINVAL;
	if (level(p + 8, agent, &p) < 0 || *p != '\0')
		return -EINVAL;
	*ret_round = round;
	memcpy(ret_agent, agent, FV_NAME_MAX);
	return 0;
}

int fv_topic_parse_agent_state(const char *topic, const char *fleet,
			       char ret_agent[FV_NAME_MAX])
{
	const char *p = after(topic, fleet, "agent");
	char agent[FV_NAME_MAX];

	if (!p || !ret_agent)
		return -EINVAL;
	if (level(p, agent, &p) < 0 || strcmp(p, "/state") != 0)
		return -EINVAL;
	memcpy(ret_agent, agent, FV_NAME_MAX);
	return 0;
}
