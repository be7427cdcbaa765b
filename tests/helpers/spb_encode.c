/* fv-spb-encode: a Sparkplug B payload from the command line, for tests
 * that play an edge node with mosquitto_pub -f. Writes the encoded payload
 * to stdout.
 *
 *   fv-spb-encode [-s SEQ] [-t TS_MS] METRIC...
 *
 * METRIC is [NAME][#ALIAS][:TYPE]=VALUE, TYPE one of d (Double, the
 * default), f (Float), i (Int32), b (Boolean); at least a name or an alias.
 * Every metric carries its datatype and the payload's timestamp. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedvigil/sparkplug.h"
#include "fedvigil/util.h"

#define MAX_METRICS 64

static int usage(void) {
  fprintf(stderr, "usage: fv-spb-encode [-s SEQ] [-t TS_MS] "
                  "[NAME][#ALIAS][:d|f|i|b]=VALUE...\n");
  return 2;
}

/* Parse one METRIC argument into m; its name (if any) is left in arg. */
static int parse_metric(char *arg, int64_t ts, struct fv_spb_metric *m) {
  char *eq = strrchr(arg, '='), *hash, *colon, *end;
  char type = 'd';
  double v;

  if (!eq)
    return -EINVAL;
  *eq = '\0';
  v = strtod(eq + 1, &end);
  if (end == eq + 1 || *end)
    return -EINVAL;
  colon = strrchr(arg, ':');
  if (colon) {
    if (strlen(colon + 1) != 1 || !strchr("dfib", colon[1]))
      return -EINVAL;
    type = colon[1];
    *colon = '\0';
  }
  *m = (struct fv_spb_metric){.ts_ms = ts};
  hash = strrchr(arg, '#');
  if (hash) {
    unsigned long long a = strtoull(hash + 1, &end, 10);

    if (end == hash + 1 || *end)
      return -EINVAL;
    m->has_alias = true;
    m->alias = a;
    *hash = '\0';
  }
  m->name = arg[0] ? arg : NULL;
  if (!m->name && !m->has_alias)
    return -EINVAL;
  switch (type) {
  case 'f':
    m->datatype = FV_SPB_FLOAT;
    m->kind = FV_SPB_V_FLOAT;
    m->d = v;
    break;
  case 'i':
    m->datatype = FV_SPB_INT32;
    m->kind = FV_SPB_V_INT;
    m->u = (uint32_t)(int32_t)v;
    break;
  case 'b':
    m->datatype = FV_SPB_BOOLEAN;
    m->kind = FV_SPB_V_BOOL;
    m->u = v != 0;
    break;
  default:
    m->datatype = FV_SPB_DOUBLE;
    m->kind = FV_SPB_V_DOUBLE;
    m->d = v;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct fv_spb_metric m[MAX_METRICS];
  struct fv_spb_payload p = {.ts_ms = fv_now_wall_ms(), .metrics = m};
  uint8_t *buf;
  size_t len;
  int opt, r;

  while ((opt = getopt(argc, argv, "s:t:")) != -1) {
    if (opt == 's') {
      p.has_seq = true;
      p.seq = strtoull(optarg, NULL, 10);
    } else if (opt == 't') {
      p.ts_ms = strtoll(optarg, NULL, 10);
    } else {
      return usage();
    }
  }
  if (optind >= argc || argc - optind > MAX_METRICS)
    return usage();
  for (int i = optind; i < argc; i++) {
    if (parse_metric(argv[i], p.ts_ms, &m[p.n_metrics]) < 0) {
      fprintf(stderr, "fv-spb-encode: bad metric '%s'\n", argv[i]);
      return usage();
    }
    p.n_metrics++;
  }
  r = fv_spb_encode(&p, &buf, &len);
  if (r < 0) {
    fprintf(stderr, "fv-spb-encode: %s\n", fv_strerror(r));
    return 1;
  }
  r = fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
  free(buf);
  return r;
}
