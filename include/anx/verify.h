/* anx/verify.h — the golden gate: every layer, tensor and backend against PyTorch float64 data.
 *
 * Two modes (docs/verify.md):
 *   isolated  each (layer, direction) gets the golden inputs, its outputs are compared;
 *   chained   the whole training step from the seed's init and input, compared layer by layer
 *             with a bound propagated through the depth.
 * Every compared tensor becomes one row: max abs error, max relative error, NMSE, the fraction
 * of exact zeros and a verdict.  Per-element bounds come from error analysis (core/verify.c
 * writes the formulas beside the code); a row FAILS when any element exceeds its bound.
 */
#ifndef ANX_VERIFY_H
#define ANX_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum anx_verdict { ANX_PASSED, ANX_FAILED, ANX_MISTRUSTED, ANX_SKIPPED } anx_verdict;

const char *anx_verdict_name(anx_verdict v); /* "PASSED", "FAILED", "MISTRUSTED", "SKIPPED" */

#define ANX_VERIFY_WORST 5

typedef struct anx_verify_elem {
    int64_t index;      /* flat index in the plain tensor */
    int64_t nchw[4];    /* the same as a multi-index of the tensor's shape (ndim entries) */
    double got, want, bound;
} anx_verify_elem;

typedef struct anx_verify_row {
    char golden[64];    /* file name of the golden data (no directory) */
    char backend[16];   /* "ref", "avx2", "onednn"; "golden" for checks of the golden data itself */
    char mode[12];      /* "isolated", "chained", "golden" */
    char layer[24];     /* "Conv2d-4", "CrossEntropyLoss", "Adam", "-" */
    char dir[16];       /* "fwd", "bwd_data", "bwd_weights", "update", "-" */
    char tensor[64];    /* golden key compared: "out.Conv2d-4", "grad.conv.3.weight", ... */
    char impl[64];      /* the backend's impl_name, "" when it has none */
    int ndim;
    int64_t shape[4];
    size_t count;       /* elements compared (all, or the stored sample) */
    double max_abs, max_rel, nmse, zeros; /* zeros: fraction of exact zeros in the result */
    double bound_rel;   /* largest per-element bound / max |want|: a change of one element by
                           more than this fraction of the tensor's largest value is caught */
    anx_verdict verdict;
    char reason[160];   /* SKIPPED / MISTRUSTED / FAILED: why */
    int nworst;
    anx_verify_elem worst[ANX_VERIFY_WORST]; /* largest err/bound first */
} anx_verify_row;

typedef struct anx_verify_golden_info {
    char path[512];
    uint64_t seed;
    int in_dim, n_class, batch, input_hw, steps;
} anx_verify_golden_info;

typedef struct anx_verify_report {
    anx_verify_row *rows;
    int count, cap;
    anx_verify_golden_info *goldens;
    int ngoldens;
} anx_verify_report;

typedef struct anx_verify_opts {
    const char *backend; /* "all" or a backend name */
    const char *layer;   /* only this layer ("Conv2d-4", "CrossEntropyLoss", "Adam"), or NULL */
    const char *mode;    /* "all", "isolated" or "chained" */
    int threads;         /* kernels' threads; <= 0: OpenMP's default */
    FILE *log;           /* progress lines ("verify ref isolated Conv2d-4 ..."), or NULL */
} anx_verify_opts;

/* Runs every check of one golden file and appends rows.  0, or 2 with err naming the file
 * (missing, corrupt, not golden data) or the unknown backend / layer. */
int anx_verify_golden(anx_verify_report *rep, const char *path, const anx_verify_opts *o, char *err,
                      size_t errlen);
void anx_verify_report_free(anx_verify_report *rep);
int anx_verify_failed(const anx_verify_report *rep); /* number of FAILED rows */

/* The table (and, per FAILED row, its worst elements and a command that reproduces it). */
void anx_verify_print(const anx_verify_report *rep, FILE *out);
/* The whole report as JSON (docs/verify.md), written atomically.  0, or 2 with err. */
int anx_verify_write_json(const anx_verify_report *rep, const char *path, char *err, size_t errlen);

/* The comparison behind every row: got vs want at n elements, element i allowed bound[i]
 * (index: flat positions of the elements in the tensor of shape[ndim], NULL = 0..n-1).
 * Fills the statistics, the verdict and the worst elements of row.  NaN or Inf in got fails. */
void anx_verify_compare(anx_verify_row *row, const float *got, const float *want, const double *bound,
                        size_t n, const int64_t *index, const int64_t *shape, int ndim);

#endif
