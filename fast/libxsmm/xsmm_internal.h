/* xsmm_internal.h — shared pieces of the libxsmm backend (internal to fast/libxsmm and its tests).
 *
 * Layouts: a pure function of (descriptor, slot), LIBXSMM's own, with no padding elements:
 *   activation [n,c,h,w], h*w > 1:  [n][c/B][h][w][B]   what LIBXSMM's convolution and pooling take
 *                                   (LIBXSMM_DNN_TENSOR_FORMAT_LIBXSMM, no physical rim padding);
 *   activation [n,c,1,1]:           [c/B][n][B]         LIBXSMM's fully-connected NCPACKED with the
 *                                   whole batch in one block (bn = n);
 *   conv weights [oc,ic,kh,kw]:     [oc/Bo][ic/Bi][kh][kw][Bi][Bo]  (LIBXSMM format)
 *   linear weights [oc, ic*ih*iw]:  [oc/Bo][in/Bi][Bi][Bo]          (CKPACKED)
 *   bias [oc]:                      plain.
 * B = anx_xsmm_blk(c) is LIBXSMM's own rule (libxsmm_dnn_get_feature_map_blocks): c itself when
 * c < 32 (64 on an AVX-512-core target), else the largest power of two up to that dividing c.  It
 * depends only on c and the JIT target, so consecutive layers (same c) agree without asking each
 * other; each layer checks at layer_create that LIBXSMM picked exactly that block.
 *
 * Conversions between LIBXSMM's two activation layouts are counted: Linear-14 reads Pool-13's
 * [n][256/B][6][6][B] and LIBXSMM's fully-connected layer wants [9216/B'][n][B'] in PyTorch's
 * flatten order, so its fwd and bwd_weights convert src and its bwd_data converts diff_src back.
 */
#ifndef ANX_XSMM_INTERNAL_H
#define ANX_XSMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <libxsmm.h>

#include "anx/backend.h"

/* The JIT target LIBXSMM runs ("cpx", "skx", "hsw"; LIBXSMM_TARGET chooses it), its version. */
const char *anx_xsmm_target(void);
const char *anx_xsmm_version(void);
/* LIBXSMM's channel block for c channels on this target. */
int anx_xsmm_blk(int c);

/* Offsets of (n, c, y, x) in the activation layouts above. */
size_t anx_xsmm_act4_off(int C, int H, int W, int n, int c, int y, int x);
size_t anx_xsmm_act2_off(int N, int C, int n, int c);

/* Counted conversions.  IMPORT / EXPORT: plain <-> LIBXSMM layout at the edges; EXEC: inside an
 * exec, between two LIBXSMM layouts (Linear-14's flatten, a loss over more than one block). */
typedef enum anx_xsmm_conv_kind {
    ANX_XSMM_CONVERT_IMPORT,
    ANX_XSMM_CONVERT_EXPORT,
    ANX_XSMM_CONVERT_EXEC,
    ANX_XSMM_CONVERT_KIND_COUNT
} anx_xsmm_conv_kind;
uint64_t anx_libxsmm_conversion_count(anx_xsmm_conv_kind kind);
void anx_xsmm_conversion_counted(anx_xsmm_conv_kind kind);

/* Max pooling's NaN scan, skipped where it would only repeat a count the backend just made.
 * LIBXSMM's pooling drops NaN where PyTorch lets it win, so a pool fwd must know whether its src
 * holds one.  In the step, src is the ReLU's dst, and the ReLU counts the NaNs it writes in the
 * pass that writes them (anx_f32_relu_fwd_nans__shared), so it leaves a note "these count floats
 * at p hold no NaN".  The note lives on the calling thread for exactly one exec: the next exec of
 * any kind, an import or an Adam update forgets it, and only a pool fwd whose src is that p and
 * that size takes it (once) instead of scanning.  The caveat, like the pooling mask's: a caller
 * that rewrites the ReLU's dst in place, outside the backend, between the ReLU and the pool. */
void anx_xsmm_nan_free_note(const float *p, size_t count);
int anx_xsmm_nan_free_take(const float *p, size_t count); /* was p noted just before?  Forgets. */
void anx_xsmm_nan_free_forget(void);
/* How many pool fwds scanned their src for NaN (a step's three pools take the ReLU's note). */
uint64_t anx_libxsmm_nan_scans(void);
void anx_xsmm_nan_scan_counted(void);

/* "<layer>: LIBXSMM <call>: <libxsmm_dnn_get_error(e)>" in a thread-local buffer. */
anx_status anx_xsmm_status(const anx_layer_desc *l, const char *call, libxsmm_dnn_err_t e);
/* Errors only: LIBXSMM's warnings (>= 90000 and < 100000) are not failures. */
int anx_xsmm_failed(libxsmm_dnn_err_t e);

/* The per-layer context of conv2d, linear and maxpool: one LIBXSMM handle made once (at
 * layer_create, with the net's thread count), its tensors bound once and pointed at the caller's
 * buffers on every exec, its scratch. */
enum { XS_IN, XS_OUT, XS_FILTER, XS_DIN, XS_DOUT, XS_DFILTER, XS_MASK, XS_TENSORS };
typedef struct xs_ctx {
    anx_op op;
    int threads;
    int probe; /* supports(): stop after LIBXSMM made (or refused) the handle */
    anx_layer_desc l;
    libxsmm_dnn_layer *conv;
    libxsmm_dnn_fullyconnected *fc;
    libxsmm_dnn_pooling *pool;
    libxsmm_dnn_tensor *t[XS_TENSORS];
    void *scratch;
    size_t ws_bytes;        /* scratch, mask, flattened copies: the backend's workspace_bytes */
    int32_t *mask;          /* pooling: the winners of the last fwd */
    float *pool_dst;        /* pooling: a dst for recomputing the mask (bwd called alone) */
    const float *mask_src;  /* pooling: the src the mask belongs to */
    float *flat, *dflat;    /* linear on a 4-D src: src and diff_src in the fully-connected layout */
    char impl[ANX_DIR_COUNT][112];
} xs_ctx;

/* Makes the handle for l (threads: the team every exec runs), or returns why not. */
anx_status anx_xsmm_conv2d_create(xs_ctx *c);
anx_status anx_xsmm_linear_create(xs_ctx *c);
anx_status anx_xsmm_maxpool_create(xs_ctx *c);
void anx_xsmm_ctx_destroy(xs_ctx *c);

/* One exec: LIBXSMM's execute_st for kind on every thread of one OpenMP region of c->threads
 * threads; before (if any) runs on every thread first, after (if any) last, each followed/preceded
 * by a barrier.  Both split their work by (tid, nthr). */
typedef struct xs_job xs_job;
struct xs_job {
    xs_ctx *c;
    libxsmm_dnn_compute_kind kind;
    const anx_args *a;
    void (*before)(const xs_job *j, int tid, int nthr);
    void (*after)(const xs_job *j, int tid, int nthr);
};
anx_status anx_xsmm_run(const xs_job *j, const char *what);
/* Points tensor t of c at p. */
void anx_xsmm_point(xs_ctx *c, int t, const void *p);
/* [begin, end) of count items for thread tid of nthr. */
void anx_xsmm_split(size_t count, int tid, int nthr, size_t *begin, size_t *end);

/* The exec functions of the table. */
anx_status anx_xsmm_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_linear_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_linear_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_linear_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_maxpool_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_maxpool_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a);
/* The same calls bare (the backend's library_exec): LIBXSMM's execute_st in the OpenMP region and
 * nothing else of anx's (bias, Linear-14's flatten, pooling's NaN rule and checks). */
anx_status anx_xsmm_conv2d_fwd_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_conv2d_bwd_data_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_conv2d_bwd_weights_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_linear_fwd_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_linear_bwd_data_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_linear_bwd_weights_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_maxpool_fwd_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);
anx_status anx_xsmm_maxpool_bwd_data_bare(void *ctx, const anx_layer_desc *l, const anx_args *a);

#endif
