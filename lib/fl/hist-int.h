/* Internal to lib/fl: the bucket layout shared by struct fv_hist and
 * struct fv_sdist (threshold.h). */
#ifndef FEDVIGIL_FL_HIST_INT_H
#define FEDVIGIL_FL_HIST_INT_H

/* Bucket of a finite, non-negative score: 0 below 10^LO (including 0),
 * 1 + i for bin i, FV_HIST_BINS + 1 at or above 10^HI. */
unsigned fv_hist_bucket(double score);
/* 10^(log10 position i, in bins), exact at integer decades. */
double fv_hist_pos(double i);

#endif
