/* fedvigil-score: shared declarations of the two scoring modes. */
#ifndef FEDVIGIL_SCORE_H
#define FEDVIGIL_SCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROG "fedvigil-score"

/* Event mode options. */
struct score_events_opts {
	const char *truth;  /* truth CSV of fedvigil-sim */
	const char *alerts; /* mosquitto_sub -v log of alert messages */
	int64_t slack_ms;   /* a truth interval's end is extended by this */
};

/* One "SCORES.csv:LABELS.csv" pair. */
struct score_pair {
	const char *scores; /* agent score log */
	const char *labels; /* one 0/1 label per line */
};

/* Point mode options. */
struct score_points_opts {
	const struct score_pair *pairs; /* n_pairs entries */
	int n_pairs;                    /* number of pairs */
	int64_t start_ms;               /* timestamp of label row 0 ... */
	int64_t period_ms;              /* ... and between label rows */
	int64_t row_offset;             /* label row i has index row_offset + i */
	const char *column;             /* "alert" or "above" */
};

/* Run a mode, printing the report to out. 0 ok, 1 on unreadable or
 * malformed input (logged). */
int score_events(const struct score_events_opts *o, FILE *out);
int score_points(const struct score_points_opts *o, FILE *out);

/* Split line in place at ',' into at most max cells (trimmed); returns the
 * number of cells found (may exceed max). */
int score_split(char *line, char **cells, int max);
/* Strip a trailing CR/LF in place; true if anything but blanks remains. */
bool score_chomp(char *line);

#endif
