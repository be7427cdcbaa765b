/* sign.version_file: the highest (epoch, version) of a global model the
 * agent accepted, kept across restarts for rollback protection. One line:
 *
 *   FVSEEN <format> <epoch> <version> <crc32 of the text before it, hex>
 *
 * Parsing is separate from agent.c so that the fuzz target
 * (tests/fuzz/fuzz_files.c) runs the very code the agent reads it with. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

#define SEEN_MAGIC "FVSEEN"
#define SEEN_FORMAT 1

/* The text of the line without its checksum. */
static int seen_text(char *buf, size_t len, uint64_t epoch, uint64_t version)
{
	return snprintf(buf, len, SEEN_MAGIC " %d %" PRIu64 " %" PRIu64, SEEN_FORMAT, epoch,
			version);
}

int agent_seen_format(char *buf, size_t len, uint64_t epoch, uint64_t version)
{
	int n = seen_text(buf, len, epoch, version);

	if (n < 0 || (size_t)n >= len)
		return -ENOBUFS;
	n += snprintf(buf + n, len - (size_t)n, " %08x\n", fv_crc32(0, buf, (size_t)n));
	if ((size_t)n >= len)
		return -ENOBUFS;
	return n;
}

int agent_seen_parse(const char *text, size_t len, uint64_t *ret_epoch, uint64_t *ret_version)
{
	char line[128], check[128];
	unsigned long long e, v;
	unsigned crc;
	int fmt, n = 0;

	/* One short line; a NUL inside or anything after it is corruption. */
	if (len == 0 || len >= sizeof(line) || memchr(text, '\0', len))
		return -EBADMSG;
	memcpy(line, text, len);
	line[len] = '\0';
	/* Digits only: sscanf's %llu would take "-1" as 2^64 - 1. */
	for (size_t i = 0; i < len; i++)
		if (line[i] == '-' || line[i] == '+')
			return -EBADMSG;
	if (sscanf(line, SEEN_MAGIC " %d %llu %llu %x%n", &fmt, &e, &v, &crc, &n) != 4 ||
	    fmt != SEEN_FORMAT || (line[n] != '\0' && strcmp(line + n, "\n") != 0))
		return -EBADMSG;
	seen_text(check, sizeof(check), e, v);
	if (fv_crc32(0, check, strlen(check)) != crc)
		return -EBADMSG;
	*ret_epoch = e;
	*ret_version = v;
	return 0;
}
