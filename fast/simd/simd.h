/* fast/simd/simd.h — what the shared kernels (fast/simd/<kernel>.inc) and the tables built from them
 * need besides the vector type: layouts, per-layer state, workspaces, the kernel names.
 *
 * One ISA file (fast/simd/isa_avx2.h, fast/simd/isa_avx512.h) defines the vector layer: the
 * vector type sv_f32 of SV_W float lanes and the operations on it, and the ISA's register tiles.
 * A backend folder instantiates the kernels by including an ISA file and then a kernel source,
 * e.g. fast/avx512/conv2d.c = isa_avx512.h + conv2d.inc, compiled with that ISA's flags.
 * Its table file (backend_<isa>.c) includes the ISA file with SV_PORTABLE defined: the names,
 * widths and tiles only, no intrinsics, so that file runs on any x86-64 CPU.
 *
 * Layouts (a pure function of the descriptor, the slot and SV_W; nothing is padded):
 *   activation [n, C, H, W]  nChw{W}c when C % SV_W == 0, else plain NCHW (= nChw1c); for
 *                            H = W = 1 both are plain [n, C], so the fc part of the net is plain.
 *   conv weights             OIhw{cbi}i{W}o by quads: [OC/(4W)][IC/cbi][KH][KW][cbi][nbq][W],
 *                            the output channels in quads of up to 4 blocks of W (nbq = 4, or
 *                            what is left in the last quad) interleaved per tap, which is the
 *                            stream the conv fwd tile reads (4 weight vectors per tap, no
 *                            per-call repacking); cbi the src block (W or 1), so (kx, ci) is one
 *                            contiguous index f = kx*cbi + ci in both the weights and a src row.
 *                            OC must be a multiple of SV_W.  sv_conv_w_off gives an element.
 *   linear weights           [OC][K] with K in the src activation's order
 *   bias                     [OC]
 *
 * Threading: every kernel splits independent outputs over OpenMP threads and accumulates each
 * output in one fixed order, so the bits never depend on the thread count.
 */
#ifndef ANX_SIMD_H
#define ANX_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "anx/backend.h"

#ifndef SV_ISA
#error "include an ISA file (fast/simd/isa_<isa>.h), which includes this header"
#endif

#define SV_INLINE static inline __attribute__((always_inline))

/* Names: SV_CAT pastes after expanding, SV_STR stringifies after expanding. */
#define SV_CAT_(a, b) a##b
#define SV_CAT(a, b) SV_CAT_(a, b)
#define SV_CAT3(a, b, c) SV_CAT(SV_CAT(a, b), c)
#define SV_STR_(a) #a
#define SV_STR(a) SV_STR_(a)
/* A kernel's XNNPACK-style name: SV_KERNEL(conv2d_fwd, SV_TILE_CONV) -> anx_f32_conv2d_fwd__avx512_3x64 */
#define SV_KERNEL(op, tile) SV_CAT(SV_CAT3(anx_f32_, op, __), SV_CAT3(SV_ISA, _, tile))
#define SV_KERNEL_NAME(op, tile) SV_STR(SV_KERNEL(op, tile))
/* Backend-internal symbols (exec entries, helpers shared between files): sv_<isa>_<name>. */
#define SV_SYM(name) SV_CAT(SV_CAT3(sv_, SV_ISA, _), name)

/* A 64-byte aligned workspace of bytes, or NULL when memory runs out: the kernel then frees
 * what it holds and returns anx_status_oom(<the workspace's name>, bytes), which the step driver
 * passes up to the CLI (one line naming the workspace, exit status 2). */
static inline void *sv_alloc_bytes(size_t bytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
}

/* Channel block of an activation with c channels: SV_W or 1 (plain). */
static inline int sv_cb(int c) { return c % SV_W == 0 ? SV_W : 1; }

/* Offset of element (n, c, y, x) of an activation [N, C, H, W] in nChw{cb}c. */
static inline size_t sv_act_off(int c_total, int h_total, int w_total, int n, int c, int y, int x)
{
    const int cb = sv_cb(c_total);
    return ((((size_t)n * (c_total / cb) + c / cb) * h_total + y) * w_total + x) * cb + c % cb;
}

/* Blocks of W output channels in the quad of block ob (4, or fewer in the last quad). */
static inline int sv_quad_blocks(int oc, int ob)
{
    const int left = oc / SV_W - ob / 4 * 4;
    return left < 4 ? left : 4;
}

/* Offset of conv weight (o, c, ky, kx) of an [oc][ic][kh][kw] conv in the quad layout above;
 * the next kx is sv_cb(ic) * sv_quad_blocks(oc, o / SV_W) * SV_W floats on. */
static inline size_t sv_conv_w_off(int oc, int ic, int kh, int kw, int o, int c, int ky, int kx)
{
    const int cbi = sv_cb(ic), ob = o / SV_W;
    const size_t w_bs = (size_t)ic * kh * kw * SV_W; /* floats of one output block */
    const size_t tap = (((size_t)(c / cbi) * kh + ky) * kw + kx) * cbi + c % cbi;
    return (size_t)(ob / 4 * 4) * w_bs + tap * sv_quad_blocks(oc, ob) * SV_W + (size_t)(ob % 4) * SV_W + o % SV_W;
}

/* Per-layer state: the thread count and, for MaxPool2d, the winners fwd found (maxpool.inc);
 * the kernels' other workspaces (e.g. bwd_data's transposed weights) are allocated per call. */
typedef struct sv_ctx {
    int threads;
    float *pool_win;           /* MaxPool2d: [n, c, oh, ow] winning tap of each window, or NULL */
    size_t pool_win_bytes;     /* its bytes, once allocated */
    const float *pool_win_src; /* the src pool_win was found in; NULL: none yet */
} sv_ctx;
int SV_SYM(threads)(const void *ctx);

/* A convolution as the kernels see it (bwd_data of a stride-1 conv is a fwd conv of diff_dst). */
typedef struct sv_conv {
    int n, ic, ih, iw, oc, oh, ow, kh, kw, stride, pad;
} sv_conv;

/* Kernels (conv2d.inc, linear.inc, maxpool.inc), named by ISA and tile; those with
 * a workspace return NULL or the status naming it. */
anx_status SV_KERNEL(conv2d_fwd, SV_TILE_CONV)(float *dst, const float *src, const float *w, const float *b,
                                        const sv_conv *cv, int threads);
anx_status SV_KERNEL(conv2d_bwd_data, SV_TILE_CONV)(float *diff_src, const float *diff_dst, const float *w,
                                             const sv_conv *cv, int threads);
anx_status SV_KERNEL(conv2d_bwd_data, gather)(float *diff_src, const float *diff_dst, const float *w,
                                        const sv_conv *cv, int threads);
anx_status SV_KERNEL(conv2d_bwd_weights, SV_TILE_BWW)(float *diff_w, float *diff_b, const float *src,
                                               const float *diff_dst, const sv_conv *cv, int threads);
void SV_KERNEL(linear_fwd, SV_TILE_LFWD)(float *dst, const float *src, const float *w, const float *b, int n,
                                        int k, int oc, int threads);
/* linear bwd_data at batches up to SV_LBWD_ROWS_MAX_N: SV_LBWD_ROWS weight rows a pass (linear.inc) */
#define SV_LBWD_ROWS 16
#define SV_TILE_LBWD SV_CAT(rows, SV_LBWD_ROWS)
void SV_KERNEL(linear_bwd_data, SV_TILE_LBWD)(float *diff_src, const float *diff_dst, const float *w, int n, int k,
                                             int oc, int threads);
void SV_KERNEL(linear_bwd_data, SV_TILE_GEMM)(float *diff_src, const float *diff_dst, const float *w, int n,
                                             int k, int oc, int threads);
anx_status SV_KERNEL(linear_bwd_weights, SV_TILE_GEMM)(float *diff_w, float *diff_b, const float *src,
                                                const float *diff_dst, int n, int k, int oc, int threads);
void SV_KERNEL(maxpool_fwd, SV_TILE_POOL)(float *dst, float *win, const float *src, const anx_layer_desc *l,
                                    int threads);
void SV_KERNEL(maxpool_bwd_data, SV_TILE_POOL)(float *diff_src, const float *diff_dst, const float *win,
                                         const anx_layer_desc *l, int threads);

/* exec-table entries, one per layer and direction (ReLU, dropout, the loss and Adam are the
 * shared ones of anx/ops_shared.h, wrapped in backend.inc). */
#define SV_EXEC_LIST(X)                                                                         \
    X(conv2d_fwd) X(conv2d_bwd_data) X(conv2d_bwd_weights) X(linear_fwd) X(linear_bwd_data)      \
    X(linear_bwd_weights) X(maxpool_fwd) X(maxpool_bwd_data)
#define SV_X_DECL(name) anx_status SV_SYM(name)(void *ctx, const anx_layer_desc *l, const anx_args *a);
SV_EXEC_LIST(SV_X_DECL)
#undef SV_X_DECL
const char *SV_SYM(conv2d_impl)(const anx_layer_desc *l, anx_dir dir);
const char *SV_SYM(linear_impl)(const anx_layer_desc *l, anx_dir dir);

#endif
