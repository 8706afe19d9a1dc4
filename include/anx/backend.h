/* anx/backend.h — the backend interface: a plain table of function pointers (the ggml /
 * oneDNN pattern).  Optional slots are NULL; supports() declines with a reason.
 *
 * Memory is always allocated by the caller (the step driver, a test or a benchmark) with the
 * sizes the backend asks for in tensor_floats(), each buffer 64-byte aligned (oneDNN's Winograd
 * stores with aligned AVX-512 instructions); the backend owns the layout of what is in it.
 * Plain PyTorch layout (NCHW activations, OIHW / [out,in] weights) is only seen at the edges,
 * through tensor_import / tensor_export.  Layout contract: for consecutive layers a and b of
 * one model, b's SRC layout is a's DST layout, so activations flow without conversions.
 */
#ifndef ANX_BACKEND_H
#define ANX_BACKEND_H

#include "anx/layer.h"

/* Buffers of one call.  Who reads and who writes, by direction:
 *  fwd:         reads src, weights, bias, mask (Dropout); writes dst (loss: writes *loss)
 *  bwd_data:    reads diff_dst, src, dst, weights, mask; writes diff_src
 *               (loss: reads src = logits and target, writes diff_src = dLoss/dlogits)
 *  bwd_weights: reads src, diff_dst; writes diff_weights, diff_bias (overwrites, no accumulation)
 */
typedef struct anx_args {
    float *src;             /* [n, ic, ih, iw]  SRC layout */
    float *dst;             /* [n, oc, oh, ow]  DST layout */
    float *weights;         /* [oc, ic, kh, kw] WEIGHTS layout */
    float *bias;            /* [oc]             BIAS layout */
    float *diff_src;        /* like src */
    float *diff_dst;        /* like dst */
    float *diff_weights;    /* like weights */
    float *diff_bias;       /* like bias */
    const float *mask;      /* Dropout: [n, oc] in DST layout, elements 0 or 1/(1-p) */
    const int64_t *target;  /* loss: [n] class indices in 0..oc_logits-1 */
    float *loss;            /* loss fwd: the scalar mean cross-entropy */
    /* Scratch of the call (oneDNN's user scratchpad pattern): scratch_bytes bytes, 64-byte
       aligned, at least the backend's scratch_bytes(ctx, l); undefined on entry and on return,
       so one buffer may serve every layer of a net (the step driver allocates one, at the
       largest layer's need), one call at a time: two nets, or two threads, need two.  NULL/0
       for a backend without that slot. */
    void *scratch;
    size_t scratch_bytes;
} anx_args;

typedef struct anx_adam_hparams {
    float lr, beta1, beta2, eps;
    int64_t step; /* t, 1-based, after incrementing for this update */
} anx_adam_hparams;

/* What a backend call that can fail returns: NULL when it did its work, else one line naming the
 * culprit ("out of memory for conv weights repacked by quad (2304.0 MiB)", "no oneDNN convolution
 * forward for its own weight format").  The text is static or thread-local (anx_status_oom),
 * valid until the same thread's next call into any backend: copy it to keep it.
 * The same convention as unavailable() and supports(): NULL means yes. */
typedef const char *anx_status;

/* Runs (layer, dir) on the buffers of a; a failed call leaves its outputs unspecified. */
typedef anx_status (*anx_exec_fn)(void *ctx, const anx_layer_desc *l, const anx_args *a);

/* The FMA ceiling a backend's peak% is judged against (anx-bench measures each one). */
typedef enum anx_peak_isa {
    ANX_PEAK_BEST = 0, /* the best vector ISA the CPU has: a library that dispatches by CPU, or plain C */
    ANX_PEAK_AVX2,     /* AVX2 + FMA, 8 lanes */
    ANX_PEAK_AVX512,   /* AVX-512F, 16 lanes */
} anx_peak_isa;

typedef struct anx_backend {
    /* The name on the command line, in bench names and in every log line; the registry
       (cmake/AnxBackend.cmake, one anx_backend() call per backend folder) is the only list of
       names: no shared code spells one. */
    const char *name;
    /* NULL when this backend can run on this machine, else why not ("CPU lacks AVX2 and FMA"). */
    const char *(*unavailable)(void);
    /* NULL when (layer, dir) is done by this backend, else the reason it declines.  Optional:
       when NULL the exec table decides (a NULL slot declines with "not implemented"). */
    const char *(*supports)(const anx_layer_desc *l, anx_dir dir);
    /* Per-layer state for one layer at one batch (primitives, workspaces) into *ctx; *ctx = NULL
       is a backend that keeps no state for l.  Returns NULL, or why it could not be made (out of
       memory, no primitive), with *ctx = NULL.  threads: how many threads its kernels may use.
       Optional (NULL: every exec gets ctx NULL).  Every exec gets the ctx made for its layer
       (anx_backend_layer_create); a backend that needs one refuses NULL with a status. */
    anx_status (*layer_create)(void **ctx, const anx_layer_desc *l, int threads);
    void (*layer_destroy)(void *ctx); /* NULL ctx is a no-op */
    /* Implementation name of (layer, dir) for logs, e.g. "anx_f32_conv2d_fwd__avx2_8x8" or
       oneDNN's "jit:avx512_core".  Optional. */
    const char *(*impl_name)(void *ctx, const anx_layer_desc *l, anx_dir dir);
    /* NULL when (layer, dir) in ctx computes each output as a sum of products of its inputs, so
       that the exact tier (integer data sums exactly in any order) and the gamma_K bounds of
       DESIGN section 5 are its error model; else the name of the algorithm whose transforms
       round on their own ("Winograd F(4x4,3x3)": even integer data comes out inexact).  The
       harness (tests/backends) holds such rows to a bound instead of to bits, and it and anx
       verify judge them by that algorithm's derived bound (core/verify_wino.c).  Optional. */
    const char *(*transform_algorithm)(void *ctx, const anx_layer_desc *l, anx_dir dir);
    /* Bytes the ctx of l holds beside the tensors, at the time of the call (oneDNN's
       scratchpads, reordered weights, pooling workspaces; not the calls' scratch): what the
       backend costs in memory beyond the network's tensors.  `anx step` prints it per layer.  Optional (NULL: not
       reported, which is not the same as 0). */
    size_t (*workspace_bytes)(void *ctx, const anx_layer_desc *l);
    /* Bytes of anx_args.scratch every exec of ctx needs (cblas: its im2col matrices); nothing
       in it is kept between calls, and it is not part of workspace_bytes.  An exec given less
       returns a status.  Optional (NULL: no scratch). */
    size_t (*scratch_bytes)(void *ctx, const anx_layer_desc *l);
    /* Floats needed by one tensor of this layer in this backend's layout (>= plain count).
       Padding elements must be imported as 0 and kept 0 by every exec (Adam runs over them). */
    size_t (*tensor_floats)(const anx_layer_desc *l, anx_slot slot);
    void (*tensor_import)(const anx_layer_desc *l, anx_slot slot, float *dst, const float *plain);
    void (*tensor_export)(const anx_layer_desc *l, anx_slot slot, float *plain, const float *src);
    /* exec[op][dir]: NULL when not done. */
    anx_exec_fn exec[ANX_OP_COUNT][ANX_DIR_COUNT];
    /* One pass of PyTorch-1.13 Adam over n parameters, in place; layout-agnostic. */
    void (*adam)(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                 const anx_adam_hparams *hp, int threads);

    /* ---- What shared code asks the entry instead of the name.  Zero is the default (a stub
       made for a backend that could not be built has only name and unavailable). ---- */
    anx_peak_isa peak_isa; /* the ceiling of its peak% in anx-bench */
    /* `anx train` without --backend takes the available backend with the highest train_rank
       (registry order breaks ties); 0: only when no ranked backend is available. */
    int train_rank;
    /* 1 for the backend the others are compared with (anx-bench's speedups, the layer tests,
       verify's reproduce line for rows of the golden data itself), with its own, smaller batch
       list in anx-bench.  Exactly one compiled backend has it; anx_backend_reference() finds it. */
    int is_reference;
    /* 1 when the rounding of its sums may depend on the thread count (oneDNN splits reductions
       over threads: conv bwd_weights, inner product).  The harness (tests/backends) then holds
       each thread count to the reference's error bound instead of to the others' bits; 0 (the
       default) promises the same bits for any thread count. */
    int bits_vary_with_threads;
    /* The library under the backend as it runs here, for the benchmark context
       (anx_backend_libraries): "LIBXSMM 1.17, JIT target cpx".  Optional (NULL: none to name). */
    const char *(*library)(void);
    /* The ISA its library runs here when that is chosen at run time (LIBXSMM_TARGET=hsw: AVX2
       code on an AVX-512 CPU): anx-bench judges its peak% against this instead of peak_isa.
       Optional (NULL: peak_isa). */
    anx_peak_isa (*peak_isa_here)(void);
    /* library_exec[op][dir]: the library's own call of exec[op][dir] alone (same ctx, same
       buffers, nothing of anx's around it: no bias, no layout conversion, no checks), for
       anx-bench's `<op>_<dir>/<tag>/<name>_bare` rows, which show what exec adds to the library,
       and for the step driver's timing-only bare mode (anx_net_set_bare: the same call timed at
       its place inside the step).  Run after one exec of the same call (its outputs may then be
       partly stale).  Optional. */
    anx_exec_fn library_exec[ANX_OP_COUNT][ANX_DIR_COUNT];
} anx_backend;

/* The implementation name of kernel fn for impl_name tables: its C symbol as a string, which only
 * compiles when fn is declared, so a table cannot name a kernel that does not exist (or drift
 * from a renamed one).  Kernel names say the direction as the table does: fwd, bwd_data, bwd_weights. */
#define ANX_IMPL_NAME(fn) (sizeof(&(fn)) ? #fn : #fn)

/* "out of memory for <what> (<MiB> MiB)" in this thread's buffer: the status of a workspace
 * of bytes that could not be allocated. */
anx_status anx_status_oom(const char *what, size_t bytes);
/* layer_create when the backend has one, else *ctx = NULL: the one way callers make a ctx. */
anx_status anx_backend_layer_create(const anx_backend *be, void **ctx, const anx_layer_desc *l, int threads);

/* For a caller that runs one layer's ctx alone (tests, anx-bench, verify; the step driver has
 * one scratch per net): a->scratch = a new 64-byte aligned buffer of the backend's
 * scratch_bytes(ctx, l), a->scratch_bytes its size (NULL and 0 when it needs none).  Release
 * it with free(a->scratch).  NULL, or the out-of-memory status. */
anx_status anx_backend_scratch_alloc(const anx_backend *be, void *ctx, const anx_layer_desc *l, anx_args *a);

/* The backends compiled into this build, ref first; NULL-terminated. */
const anx_backend *const *anx_backends(void);
/* By name, or NULL (not compiled in). */
const anx_backend *anx_backend_find(const char *name);
/* The entry with is_reference (the first, should a build have two), else the first entry. */
const anx_backend *anx_backend_reference(void);
/* What `anx train` runs without --backend: the available entry with the highest train_rank
 * (registry order breaks ties), else the reference. */
const anx_backend *anx_backend_fastest(void);
/* The compiled names in registry order joined by sep, the last pair by last
 * ("ref, avx2 or onednn" with ", " and " or "), into buf; returns buf. */
char *anx_backend_names(char *buf, size_t cap, const char *sep, const char *last);
/* NULL when be can do (l, dir) here, else the reason (unavailable(), supports(), or a NULL slot). */
const char *anx_backend_declines(const anx_backend *be, const anx_layer_desc *l, anx_dir dir);

/* Backends defined in ref/, fast/avx2/, fast/onednn/. */
extern const anx_backend anx_backend_ref;
extern const anx_backend anx_backend_avx2;
extern const anx_backend anx_backend_onednn;

#endif
