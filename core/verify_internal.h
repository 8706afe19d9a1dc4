/* verify_internal.h — what the parts of `anx verify` share (core/verify*.c); not public. */
#ifndef ANX_VERIFY_INTERNAL_H
#define ANX_VERIFY_INTERNAL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/safetensors.h"
#include "anx/verify.h"

/* Unit roundoff of float32: every rounding to float32 errs by at most V_U relative. */
#define V_U (1.0 / 16777216.0)
/* lambda of the probabilistic bounds (v_gamma in verify_compare.c says why 8) */
#define V_LAMBDA 8.0
/* A bound is derived in double and stored as float: (1 + V_BOUND_SLACK) keeps that last
 * rounding (6e-8 relative) from ever tightening it. */
#define V_BOUND_SLACK 1e-6

/* Adam's hyperparameters as PyTorch holds them (Python floats, i.e. doubles). */
typedef struct v_adam_hp {
    double lr, beta1, beta2, eps;
} v_adam_hp;

/* One golden file, loaded, with every tensor a check may feed to a kernel made whole when it
 * can be: stored whole, regenerated from the seed, or reconstructed exactly. */
typedef struct vgold {
    char path[512], base[64];
    anx_st_file f;
    anx_model m;
    uint64_t seed;
    int steps;
    v_adam_hp hp;
    float *init[ANX_NUM_PARAMS];      /* regenerated init, plain */
    float *input;                     /* [n, in_dim, hw, hw] regenerated */
    int64_t *target;                  /* [n] */
    float *out[ANX_NUM_LAYERS];       /* whole plain forward outputs, or NULL */
    float *gout[ANX_NUM_LAYERS];      /* whole plain output gradients, or NULL */
    const char *out_from[ANX_NUM_LAYERS], *gout_from[ANX_NUM_LAYERS]; /* "stored", "relu(out.X)", ... */
} vgold;

/* A golden tensor: whole (idx == NULL, n == total) or its stored sample. */
typedef struct vwant {
    char key[80];
    size_t n, total;
    float *val;     /* [n] */
    int64_t *idx;   /* [n] flat indices, or NULL */
    int ndim;
    int64_t shape[4];
} vwant;

/* verify_compare.c: the comparison module (rows, bounds, verdicts); calls nothing above it. */
/* Memory ran out inside a check: v_oom jumps to the innermost v_guarded on this thread, which
 * returns -1 with err "out of memory for <what> (<MiB> MiB)".  Every entry point that allocates
 * runs its work under v_guarded (anx_verify_golden, vgold_load, vref64_run, vref64_anchor), so a
 * caller of any of them gets a status, never a jump; the buffers of the work in flight are left
 * to the process.  v_oom with no guard (an internal function called directly) prints the message
 * and aborts: there is no jump target that can be unset.  v_oom_again passes the last message
 * on to the guard outside (a nested entry point that failed). */
_Noreturn void v_oom(const char *what, size_t bytes);
_Noreturn void v_oom_again(void);
int v_guarded(void (*fn)(void *), void *arg, char *err, size_t errlen);
void v_copy_str(char *dst, size_t cap, const char *src);
int v_param_of(const anx_model *m, int layer); /* index of layer's weight in m->params, or -1 */
const char *v_impl_of(const anx_backend *be, void *ctx, const anx_layer_desc *l, anx_dir d); /* "" if none */
void v_ref_run(const anx_layer_desc *l, anx_dir dir, const anx_args *a, int threads); /* the reference kernel */
void v_reserve(anx_verify_report *rep, int n); /* room for n more rows without moving them */
anx_verify_row *v_row(anx_verify_report *rep, const vgold *g, const char *backend, const char *mode,
                      const char *layer, const char *dir, const char *tensor);
void v_skip(anx_verify_row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The row FAILED with reason st: the backend could not run the check (its exec returned st). */
void v_fail_status(anx_verify_row *r, anx_status st);
double v_gamma(double k); /* the probabilistic accumulation bound; see verify_compare.c */
/* Products summed into one input gradient by bwd_data: oc for a Linear; for a conv, oc times
 * the taps of a kernel row/column that can land on one input, ceil(k / stride) each. */
double v_bwd_data_k(const anx_layer_desc *l);
/* compare got (whole plain) with want (whole or sampled), bound (whole, per element) */
void v_compare_want(anx_verify_row *r, const float *got, const vwant *w, const float *bound);
/* Buffers in a backend's layout (zeroed, 64-byte aligned; v_alloc is verify_golden.c's). */
float *v_be_import(const anx_backend *be, const anx_layer_desc *l, anx_slot s, const float *plain);
float *v_be_buf(const anx_backend *be, const anx_layer_desc *l, anx_slot s);

/* verify_judge.c (comparison module): one backend call against ref64 fed the same inputs. */
/* The plain float32 inputs a backend's (layer, direction) was given (NULL: not an input). */
typedef struct v_in {
    const float *src, *dst, *weights, *bias, *diff_dst, *mask;
    const int64_t *target;
    const char *algo; /* the backend's transform_algorithm of the call, NULL: sums of products */
} v_in;
/* Rows r[0] (and r[1], the bias gradient of bwd_weights) for the backend's plain outputs got[0]
 * (dst, diff_src, diff_weights, or the loss) and got[1] (diff_bias): every element against ref64
 * on in, with the bound of the backend's own rounding (verify_judge.c). */
/* cache: reuse ref64's answer and the magnitudes for the same inputs (isolated mode), or NULL. */
void v_judge_exec(anx_verify_row *const *r, const anx_layer_desc *l, anx_dir dir, const v_in *in,
                  const float *const *got, int threads, anx_verify_cache *cache);
/* Rows r[0..2] (param, exp_avg, exp_avg_sq) for the backend's Adam results got[0..2] from the
 * state p0, m0, v0 and gradient g (n elements, plain), against ref64's Adam with the same hp. */
void v_judge_adam(anx_verify_row *const *r, const float *p0, const float *g, const float *m0, const float *v0,
                  const float *const *got, size_t n, const v_adam_hp *hp, int64_t t, const int64_t *shape, int ndim);

/* verify_wino.c (comparison module): the bound of a Winograd F(4x4,3x3) call (oneDNN's jit_wino_4x3) */
#define V_WINO_F43 "Winograd F(4x4,3x3)"
/* 1 when algo is one verify_wino.c bounds for (l, dir): a 3x3 stride-1 Conv2d */
int v_wino_applies(const char *algo, const anx_layer_desc *l, anx_dir dir);
/* W of each element of (l, dir)'s output slot (dst, diff_src, diff_weights) into *M (v_alloc), and
 * the factor eps of the bound eps W (+ u|want|); see verify_wino.c for the derivation. */
double v_wino_magnitudes(const anx_layer_desc *l, anx_dir dir, const v_in *in, float **M, int threads);
double v_wino_eps(const anx_layer_desc *l, anx_dir dir);
/* oneDNN 2.6's F(m,r) matrices (signed): at [m x 6], g [6 x r], bt [6 x 6], row-major */
void v_wino_matrices(int m, int r, double *at, double *g, double *bt);
/* r's impl text marked with the bound it was judged by: "<impl>; bound Winograd F(4x4,3x3)" */
void v_impl_mark(anx_verify_row *r, const char *impl, const char *algo, const anx_layer_desc *l, anx_dir dir);

/* verify_golden.c */
/* Golden format (data/golden/README.md): digest.<key> of every float tensor, over its float64
 * values: count, sum, sum of squares, max |x|, then VDIGEST_PROJ sums of s_j(i) x_i with the
 * fixed signs s_j(i) = bit 63 - j of anx_rng_bits(anx_rng_key(0, "digest.sign", 0), i) ? -1 : +1. */
#define VGOLD_FORMAT "anx-golden-2"
enum { VDIGEST_COUNT, VDIGEST_SUM, VDIGEST_SUMSQ, VDIGEST_MAXABS, VDIGEST_PROJ0, VDIGEST_PROJ = 4,
       VDIGEST_N = VDIGEST_PROJ0 + VDIGEST_PROJ };
/* A digest computed here: each sum compensated (Neumaier), so within 2u|S| + 4 n u^2 sum|terms|
 * of its exact value (u = 2^-53); x*x rounded to double first, as the generator does.  sumabs
 * (may be NULL) gets sum |x|, for tolerances.  x is double (ref64) or float (x32, x NULL). */
void vdigest_of(double d[VDIGEST_N], double *sumabs, const double *x, const float *x32, size_t n);
/* digest.<key> of the golden file into d: 0, or -1 when it has none of the right shape. */
int vgold_digest(const vgold *g, const char *key, double d[VDIGEST_N]);
/* Tolerances of got (vdigest_of over sum |x| = sumabs) against the generator's digest when the
 * values differ from the generator's by e_i per element: esum = sum e_i, emax = max e_i, esq >=
 * sum |x_i^2 - y_i^2|; the rounding of both digests is added.  vdigest_check: 0 when every
 * entry is within, else -1 with why naming the first that is not. */
void vdigest_tol(double tol[VDIGEST_N], const double got[VDIGEST_N], double sumabs, double esum, double emax,
                 double esq);
int vdigest_check(const double got[VDIGEST_N], const double want[VDIGEST_N], const double tol[VDIGEST_N],
                  char *why, size_t whylen);
int vgold_load(vgold *g, const char *path, char *err, size_t errlen);
void vgold_free(vgold *g);
/* 0, or -1 when the file has neither key nor its digest/sample */
int vgold_want(const vgold *g, const char *key, vwant *w);
void vwant_free(vwant *w);
void vgold_self_checks(anx_verify_report *rep, vgold *g);
/* Shape of a plain tensor of layer l in slot s (ANX_DST for out/grad_out). */
int v_slot_shape(const anx_layer_desc *l, anx_slot s, int64_t *shape);
uint64_t v_fnv1a64(const void *data, size_t n);
/* plain [n] of golden key kmask regenerated: step t's mask of dropout layer `name` */
void v_mask(const vgold *g, const char *name, int64_t t, float *dst, size_t n);

/* verify_ref64.c: the float64 reference run (anx/ref64.h) of a golden file, and its anchor to
 * PyTorch's float64 golden data. */
/* One tensor of the run, whole and plain (NCHW / OIHW / [oc]), under its golden key. */
typedef struct vref64_tensor {
    char key[80];
    double *val;         /* [count] */
    size_t count;
    int ndim;
    int64_t shape[4];
    /* what made it, for rows: "Conv2d-4" "fwd", "Adam" "update", ...  Copies, not pointers into
       the golden file's model: a cached run outlives the vgold it was made from. */
    char layer[24], dir[16];
    /* Derived bound of |ref64 - PyTorch float64| (both against the exact value, docs/verify.md):
       diff_max for every element; diff_sum = sum over elements of each one's bound (<= count *
       diff_max; smaller for Adam's outputs, whose bounds vary per element). */
    double diff_max, diff_sum;
} vref64_tensor;

typedef struct vref64 {
    vref64_tensor *t;
    int count, cap;
    int steps;
    double seconds;      /* wall time of vref64_run */
    int ambiguous;       /* ReLU gates / pool winners within the bound (widened, see the code) */
    int settled;         /* of those, pool windows routed as the golden's data show it did (settle_windows) */
    int settled_moved;   /* of those, windows the golden routed to another tap than ours */
} vref64;

/* Runs the golden run of g in float64 from its seed: core's float32 init widened to double, the
 * regenerated input, targets and dropout masks, every step of the file (t = 1..g->steps, Adam with
 * the file's hyperparameters), keeping every tensor the golden file has a key (or a digest) for:
 * out.*, grad_out.*, loss, grad.*, the parameters, adam.exp_avg.*, adam.exp_avg_sq.* (three-step
 * file: step<t>.loss, step<t>.grad.*, and the state after the last step).  threads: OpenMP team
 * (<= 0: the default).  0, or -1 with err "out of memory for ..." (r is then empty). */
int vref64_run(vref64 *r, const vgold *g, int threads, char *err, size_t errlen);
/* Test hook (tests/ref64/test_ref64_flip.c), 0 in anx: when 1, vref64_run routes the dy of every
 * ambiguous pool window to its runner-up instead of its winner, which is what the golden may have
 * done; the bounds of the ordinary run must cover the difference. */
extern int vref64_flip_windows;
/* Test hook: how vref64_run settles a pool's ambiguous windows from the golden's data (the code's
 * comment at settle_windows says how).  ON in anx; OFF gives every ambiguous window its E
 * (tests/ref64/test_ref64_flip.c proves those bounds); WRONG routes the windows that the golden's
 * data settle one way the data rule out, without E, so the anchor must fail
 * (tests/ref64/test_ref64_flip.c: settling proves something only if a wrong routing is caught). */
enum { VREF64_SETTLE_OFF, VREF64_SETTLE_ON, VREF64_SETTLE_WRONG };
extern int vref64_settle;
void vref64_free(vref64 *r);
/* The run's tensor under golden key, whole and plain, with *count; NULL when it kept none. */
const double *vref64_find(const vref64 *r, const char *key, size_t *count);
const vref64_tensor *vref64_get(const vref64 *r, const char *key);
/* Rows (backend "ref64", mode "golden"), one per kept tensor (of layer): every stored element (whole, or
 * the sample) and the float64 digest against ref64, with the derived float64 tolerances. */
int vref64_anchor(anx_verify_report *rep, const vref64 *r, const vgold *g, const char *layer, char *err,
                  size_t errlen); /* layer: only the tensors it made (NULL: all).  0 or -1 (OOM) */

/* verify_drift.c: the drift of a chained tensor got (whole, plain) of backend at step t from the
 * golden tensor key, appended to rep->drift when the golden file stores key (whole or sampled). */
void v_drift(anx_verify_report *rep, const vgold *g, const char *backend, int step, const char *key, const float *got);

/* verify_cache.c: anx_verify_opts.cache (what it may reuse, and why a hit is exact: there). */
/* ref64's replay of g's run when the cache holds it, else NULL (c may be NULL) */
const vref64 *v_cache_run(anx_verify_cache *c, const vgold *g);
/* The cache takes r's tensors (r is left empty) as g's run, replacing the one it held; returns it. */
const vref64 *v_cache_keep_run(anx_verify_cache *c, const vgold *g, vref64 *r);
uint64_t v_answer_key(const anx_layer_desc *l, anx_dir dir, const v_in *in);
/* 1 with the cached answer (want[0..1], M[0..1], c: owned by the cache), or 0 */
int v_cache_answer(const anx_verify_cache *c, uint64_t key, double **want, float **M, double *cm);
/* 0: the cache owns want and M now; -1 (no memory for the list): the caller still does */
int v_cache_keep_answer(anx_verify_cache *c, uint64_t key, double *const *want, float *const *M, double cm);

/* verify_isolated.c / verify_chained.c: the two modes, on top of the modules above */
/* r64: ref64's replay of the golden run (whole gradients for Adam), or NULL */
void v_isolated(anx_verify_report *rep, vgold *g, const vref64 *r64, const anx_backend *be, const anx_verify_opts *o);
void v_chained(anx_verify_report *rep, vgold *g, const anx_backend *be, const anx_verify_opts *o);

/* Plain float helpers (verify_golden.c). */
float *v_alloc(size_t n);
void v_abs(float *dst, const float *src, size_t n);

/* Adam over n elements with error bounds (verify_compare.c).  In: the backend's values before
 * the update (p, m, v) with their bounds against the exact float64 trajectory (dp, dm, dv), the
 * gradient g and its bound dg.  Out: bounds of the updated p, m, v (whose values the backend gave).
 * hp_be: what the backend was told (float32 hyperparameters, as doubles). */
void v_adam_bounds(double *dp, double *dm, double *dv, const float *p0, const float *g, const float *m0,
                   const float *v0, const double *dp0, const double *dg, const double *dm0,
                   const double *dv0, size_t n, int64_t t, const v_adam_hp *gold, const v_adam_hp *hp_be);

#endif
