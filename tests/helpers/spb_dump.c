/* fv-spb-dump: Sparkplug B payloads as text, for tests. Reads lines
 * "<topic> <payload in hex>" (mosquitto_sub -F '%t %x') from stdin and
 * prints one line per message:
 *   <topic> seq=<seq|-> <name or #alias>=<value|null|?> ...
 * or "<topic> undecodable: <reason>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedvigil/sparkplug.h"
#include "fedvigil/util.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int main(void)
{
	static char line[2 * FV_SPB_MAX_PAYLOAD + 512];
	static uint8_t buf[FV_SPB_MAX_PAYLOAD];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		char *sp = strchr(line, ' '), *hex;
		size_t n = 0;
		struct fv_spb_payload p;
		int r;

		line[strcspn(line, "\r\n")] = '\0';
		hex = sp ? sp + 1 : line + strlen(line);
		if (sp)
			*sp = '\0';
		for (; hex[0] && hex[1] && n < sizeof(buf); hex += 2) {
			int hi = hexval(hex[0]), lo = hexval(hex[1]);

			if (hi < 0 || lo < 0)
				break;
			buf[n++] = (uint8_t)(hi << 4 | lo);
		}
		r = fv_spb_decode(buf, n, &p);
		if (r < 0) {
			printf("%s undecodable: %s\n", line, fv_strerror(r));
			continue;
		}
		printf("%s seq=", line);
		if (p.has_seq)
			printf("%llu", (unsigned long long)p.seq);
		else
			printf("-");
		for (uint32_t i = 0; i < p.n_metrics; i++) {
			const struct fv_spb_metric *m = &p.metrics[i];
			double v;

			if (m->name)
				printf(" %s", m->name);
			else
				printf(" #%llu", (unsigned long long)m->alias);
			if (m->name && m->has_alias)
				printf("#%llu", (unsigned long long)m->alias);
			if (fv_spb_metric_number(m, 0, &v) == 0)
				printf("=%.6g", v);
			else
				printf(m->is_null ? "=null" : "=?");
		}
		printf("\n");
		fv_spb_payload_clear(&p);
	}
	return 0;
}
