/* Conv2d forward, backward-data and backward-weights with AVX2+FMA register-blocked microkernels.
 *
 * Activations are nChw8c (or plain NCHW for conv1's 1..4-channel input), weights OIhw{cbi}i8o
 * (see avx2.h).  In a src row the pair (kx, ci) is one contiguous index f = kx*cbi+ci, exactly as
 * in the weights, so one loop serves the 3-channel conv1 and the 8-blocked others.
 *
 *  fwd          3 output pixels x 32 output channels: 12 accumulators, 3 broadcasts
 *               and 4 weight vectors per (icb, ky, f), the 4 weight blocks repacked into one
 *               stream; the pixels are 3 consecutive ones of a row or, for the 1-2 left at
 *               rows' ends, gathered from several rows (fwd_tiles).
 *               src is read in place: taps that would read the padding are skipped,
 *               as ref does, by kernel row (ky_range) and, in tiles at a row's ends, by f
 *               segment per pixel (edge_segments), so no padded copy is made.  Input channels
 *               are taken in chunks whose weights stay in L2 (fwd_icb_chunk); the tile's sums
 *               are kept in dst between chunks, in the same order, so the bits do not change.
 *  bwd_data     stride 1 (conv2..5): a forward conv of diff_dst with the flipped, IO-swapped
 *               weights and pad k-1-p, through the same 3x32 kernel.  Other strides (conv1,
 *               verification only): a gather over the (oy, ox, oc) that tap each input element.
 *  bwd_weights  16 output channels x 4 taps of f, accumulated over the rectangle of pixels
 *               whose tap reads src rather than padding (tap_range), image after image, src
 *               read in place; each thread owns whole output-channel pairs.
 */
#include <stdlib.h>
#include <string.h>

#include "fast/avx2/avx2.h"

/* dst [n][C/cb][h+2p][w+2p][cb]: the zero-padded copy of src [n][C/cb][h][w][cb]. */
static void pad_act(float *dst, const float *src, int n, int c, int h, int w, int pad, int threads)
{
    const int cb = ax_cb(c), ncb = c / cb, hp = h + 2 * pad, wp = w + 2 * pad;
    const size_t row = (size_t)w * cb, prow = (size_t)wp * cb;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long p = 0; p < (long)n * ncb; p++) {
        float *d = dst + (size_t)p * hp * prow;
        const float *s = src + (size_t)p * h * row;
        memset(d, 0, (size_t)pad * prow * sizeof *d);
        for (int y = 0; y < h; y++) {
            float *dr = d + (size_t)(y + pad) * prow;
            memset(dr, 0, (size_t)pad * cb * sizeof *d);
            memcpy(dr + (size_t)pad * cb, s + (size_t)y * row, row * sizeof *d);
            memset(dr + (size_t)pad * cb + row, 0, (size_t)pad * cb * sizeof *d);
        }
        memset(d + (size_t)(h + pad) * prow, 0, (size_t)pad * prow * sizeof *d);
    }
}

/* [*ky0, *ky1): the kernel rows that read an unpadded src row for output row oy; the others
 * only multiply the zero padding and are skipped. */
static void ky_range(int *ky0, int *ky1, int oy, const ax_conv *cv)
{
    const int lo = cv->pad - oy * cv->stride, hi = cv->ih + cv->pad - oy * cv->stride;
    *ky0 = lo > 0 ? lo : 0;
    *ky1 = hi < cv->kh ? hi : cv->kh;
}

/* ---- forward ---------------------------------------------------------------------------- */

/* One tile of up to 3 output pixels that share one kernel-row range (fwd_tiles): its geometry
 * is the same for every image, output-channel quad and input-channel chunk, so it is worked out
 * once per call.  src is read unpadded: a pixel's window corner may lie in the padding (off < 0
 * or past a row's end), but the taps that would read there are exactly the skipped ones, so
 * every read is in bounds. */
typedef struct fwd_tile {
    ptrdiff_t off[3]; /* src offset of pixel r's window corner (ky = kx = 0) within an image */
    size_t po[3];     /* index of pixel r in the output plane */
    int nvalid;       /* pixels computed (1..3) */
    int ky0, ky1;     /* kernel rows that read src rather than padding (ky_range) */
    int nseg;         /* -1: no pixel's window crosses the left or right padding (plain kernel); */
    int sg[16], sm[8]; /* else the f segments and their pixel masks (edge_segments) */
} fwd_tile;

/* What every tile of one (image, quad, input-channel chunk) pass shares. */
typedef struct fwd_pass {
    const float *w;    /* [icb][ky][f][nb][8]: the chunk's weights, nb blocks interleaved */
    const float *bias; /* [nb * 8], or NULL */
    size_t icb_stride, row_stride, out_bs;
    int nicb, kh, f;
    int resume;        /* accumulate onto out (chunks after the first) instead of the bias */
} fwd_pass;

/* The 3 pixels x 4 blocks of the 3x32 tile kernels below: named accumulators c<r><j> (pixel r,
 * block j; an array indexed under conditions would live in memory), started at the bias or,
 * when resuming, at out, and stored for the valid pixels and blocks only.  Expect nb, nvalid,
 * bias, resume, out and out_bs in scope. */
#define AX_TILE3_BIAS(j) (bias && nb > j ? _mm256_loadu_ps(bias + 8 * j) : _mm256_setzero_ps())
#define AX_TILE3_START(r, j) \
    (resume && nvalid > r && nb > j ? _mm256_loadu_ps(out + j * out_bs + 8 * tl->po[r]) : AX_TILE3_BIAS(j))
#define AX_TILE3_ACC_INIT                                                                   \
    const float *bias = ps->bias;                                                           \
    const int resume = ps->resume;                                                          \
    const size_t out_bs = ps->out_bs;                                                       \
    __m256 c00 = AX_TILE3_START(0, 0), c10 = AX_TILE3_START(1, 0), c20 = AX_TILE3_START(2, 0); \
    __m256 c01 = AX_TILE3_START(0, 1), c11 = AX_TILE3_START(1, 1), c21 = AX_TILE3_START(2, 1); \
    __m256 c02 = AX_TILE3_START(0, 2), c12 = AX_TILE3_START(1, 2), c22 = AX_TILE3_START(2, 2); \
    __m256 c03 = AX_TILE3_START(0, 3), c13 = AX_TILE3_START(1, 3), c23 = AX_TILE3_START(2, 3);
#define AX_TILE3_STORE1(r, j) \
    if (nvalid > r && nb > j) _mm256_storeu_ps(out + j * out_bs + 8 * tl->po[r], c##r##j);
#define AX_TILE3_STORE                                                                      \
    AX_TILE3_STORE1(0, 0) AX_TILE3_STORE1(1, 0) AX_TILE3_STORE1(2, 0)                        \
    AX_TILE3_STORE1(0, 1) AX_TILE3_STORE1(1, 1) AX_TILE3_STORE1(2, 1)                        \
    AX_TILE3_STORE1(0, 2) AX_TILE3_STORE1(1, 2) AX_TILE3_STORE1(2, 2)                        \
    AX_TILE3_STORE1(0, 3) AX_TILE3_STORE1(1, 3) AX_TILE3_STORE1(2, 3)

/* out [nb][3][8] (block stride out_bs) = start + sum over (icb, ky in [ky0, ky1), f) of
 * img[off[r] + icb, ky, f] * w[icb][ky][f][j].  nb (1..4) and nvalid (1..3) are compile-time
 * constants at every call, and so is the weight step per f, 8 * nb. */
AX_INLINE void conv_fwd_tile3(const int nb, const int nvalid, float *out, const float *img,
                              const fwd_tile *tl, const fwd_pass *ps)
{
    AX_TILE3_ACC_INIT
    const int f = ps->f;
    for (int icb = 0; icb < ps->nicb; icb++) {
        for (int ky = tl->ky0; ky < tl->ky1; ky++) {
            const ptrdiff_t off = icb * ps->icb_stride + ky * ps->row_stride;
            const float *w = ps->w + ((size_t)icb * ps->kh + ky) * f * 8 * nb;
            /* all f taps of a plain tile are inside src, so these three pointers are too */
            const float *p0 = img + (tl->off[0] + off), *p1 = img + (tl->off[1] + off), *p2 = img + (tl->off[2] + off);
            /* unrolled by the channel block: immediate offsets instead of a loop test per tap
             * (conv2 3.5% faster; 24 = whole rows of 3x3 taps is no faster than 8) */
#pragma GCC unroll 8
            for (int t = 0; t < f; t++, w += 8 * nb) {
                const __m256 b0 = _mm256_broadcast_ss(p0 + t);
                const __m256 b1 = nvalid > 1 ? _mm256_broadcast_ss(p1 + t) : b0;
                const __m256 b2 = nvalid > 2 ? _mm256_broadcast_ss(p2 + t) : b0;
#define AX_FMA_BLOCK(j)                                                            \
    if (nb > j) {                                                                  \
        const __m256 wv = _mm256_loadu_ps(w + 8 * j);                              \
        c0##j = _mm256_fmadd_ps(b0, wv, c0##j);                                    \
        if (nvalid > 1) c1##j = _mm256_fmadd_ps(b1, wv, c1##j);                    \
        if (nvalid > 2) c2##j = _mm256_fmadd_ps(b2, wv, c2##j);                    \
    }
                AX_FMA_BLOCK(0)
                AX_FMA_BLOCK(1)
                AX_FMA_BLOCK(2)
                AX_FMA_BLOCK(3)
#undef AX_FMA_BLOCK
            }
        }
    }
    AX_TILE3_STORE
}

/* Edge tiles: the f range of every (icb, ky) is cut into the tile's nseg segments
 * [sg[2s], sg[2s+1]) in each of which the pixels of mask sm[s] read unpadded src; the others
 * are skipped. */
AX_INLINE void conv_fwd_tile3e(const int nb, const int nvalid, float *out, const float *img,
                               const fwd_tile *tl, const fwd_pass *ps)
{
    AX_TILE3_ACC_INIT
    const int f = ps->f;
    for (int icb = 0; icb < ps->nicb; icb++) {
        for (int ky = tl->ky0; ky < tl->ky1; ky++) {
            /* offsets, not pointers: a window corner in the padding is outside src */
            const ptrdiff_t off = icb * ps->icb_stride + ky * ps->row_stride;
            const ptrdiff_t o0 = tl->off[0] + off, o1 = tl->off[1] + off, o2 = tl->off[2] + off;
            const float *wk = ps->w + ((size_t)icb * ps->kh + ky) * f * 8 * nb;
            for (int s = 0; s < tl->nseg; s++) {
                const int t1 = tl->sg[2 * s + 1];
#define AX_ON(M, r) (nvalid > r && ((M) >> r & 1))
#define AX_FMA_BLOCK(M, j)                                                         \
    if (nb > j) {                                                                  \
        const __m256 wv = _mm256_loadu_ps(w + 8 * j);                              \
        if (AX_ON(M, 0)) c0##j = _mm256_fmadd_ps(b0, wv, c0##j);                   \
        if (AX_ON(M, 1)) c1##j = _mm256_fmadd_ps(b1, wv, c1##j);                   \
        if (AX_ON(M, 2)) c2##j = _mm256_fmadd_ps(b2, wv, c2##j);                   \
    }
#define AX_SEG(M)                                                                  \
    case M:                                                                        \
        for (int t = tl->sg[2 * s]; t < t1; t++) {                                 \
            const float *w = wk + 8 * nb * t;                                      \
            const __m256 b0 = AX_ON(M, 0) ? _mm256_broadcast_ss(img + (o0 + t)) : _mm256_setzero_ps(); \
            const __m256 b1 = AX_ON(M, 1) ? _mm256_broadcast_ss(img + (o1 + t)) : _mm256_setzero_ps(); \
            const __m256 b2 = AX_ON(M, 2) ? _mm256_broadcast_ss(img + (o2 + t)) : _mm256_setzero_ps(); \
            AX_FMA_BLOCK(M, 0) AX_FMA_BLOCK(M, 1) AX_FMA_BLOCK(M, 2) AX_FMA_BLOCK(M, 3)      \
        }                                                                          \
        break;
                switch (tl->sm[s]) {
                    AX_SEG(1) AX_SEG(2) AX_SEG(3) AX_SEG(4) AX_SEG(5) AX_SEG(6) AX_SEG(7)
                default: break;
                }
#undef AX_SEG
#undef AX_FMA_BLOCK
#undef AX_ON
            }
        }
    }
    AX_TILE3_STORE
}

/* The 24 (edge or not, nb, nvalid) specialisations, so every accumulator lives in a register. */
static void conv_fwd_tile3_any(int nb, float *out, const float *img, const fwd_tile *tl, const fwd_pass *ps)
{
#define AX_CASE(NB, NV)                                                  \
    if (nb == NB && tl->nvalid == NV) {                                  \
        if (tl->nseg >= 0)                                               \
            conv_fwd_tile3e(NB, NV, out, img, tl, ps);                   \
        else                                                             \
            conv_fwd_tile3(NB, NV, out, img, tl, ps);                    \
        return;                                                          \
    }
    AX_CASE(4, 3) AX_CASE(4, 2) AX_CASE(4, 1) AX_CASE(3, 3) AX_CASE(3, 2) AX_CASE(3, 1)
    AX_CASE(2, 3) AX_CASE(2, 2) AX_CASE(2, 1) AX_CASE(1, 3) AX_CASE(1, 2) AX_CASE(1, 1)
#undef AX_CASE
}

/* The segments of a tile of nvalid pixels at columns ox[r]; returns nseg, or -1 when no pixel's
 * window crosses the padding (use the plain kernel). */
static int edge_segments(int *sg, int *sm, const int ox[3], int nvalid, const ax_conv *cv, int cbi)
{
    const int f = cv->kw * cbi;
    int lo[3], hi[3], cut[8], nc = 0, any = 0;
    cut[nc++] = 0, cut[nc++] = f;
    for (int r = 0; r < nvalid; r++) {
        const int a = cv->pad - ox[r] * cv->stride, b = cv->iw + cv->pad - ox[r] * cv->stride;
        lo[r] = (a > 0 ? a : 0) * cbi, hi[r] = (b < cv->kw ? b : cv->kw) * cbi;
        if (lo[r] > 0 || hi[r] < f) any = 1;
        cut[nc++] = lo[r], cut[nc++] = hi[r];
    }
    if (!any) return -1;
    for (int i = 1; i < nc; i++) /* insertion sort */
        for (int j = i; j > 0 && cut[j - 1] > cut[j]; j--) {
            const int x = cut[j];
            cut[j] = cut[j - 1], cut[j - 1] = x;
        }
    int nseg = 0;
    for (int i = 0; i + 1 < nc; i++) {
        if (cut[i] == cut[i + 1]) continue;
        int m = 0;
        for (int r = 0; r < nvalid; r++) m |= (lo[r] <= cut[i] && cut[i + 1] <= hi[r]) << r;
        if (!m) continue;
        if (nseg && sm[nseg - 1] == m && sg[2 * nseg - 1] == cut[i]) {
            sg[2 * nseg - 1] = cut[i + 1];
            continue;
        }
        sg[2 * nseg] = cut[i], sg[2 * nseg + 1] = cut[i + 1], sm[nseg] = m, nseg++;
    }
    return nseg;
}

/* The tile of the nvalid pixels (oy[r], ox[r]), which share one kernel-row range. */
static void fwd_tile_of(fwd_tile *tl, int nvalid, const int oy[3], const int ox[3], const ax_conv *cv, int cbi)
{
    int x[3];
    tl->nvalid = nvalid;
    for (int r = 0; r < 3; r++) {
        const int q = r < nvalid ? r : 0; /* the unused slots repeat pixel 0 */
        x[r] = ox[q];
        tl->po[r] = (size_t)oy[q] * cv->ow + ox[q];
        tl->off[r] = ((ptrdiff_t)(oy[q] * cv->stride - cv->pad) * cv->iw + (ox[q] * cv->stride - cv->pad)) * cbi;
    }
    ky_range(&tl->ky0, &tl->ky1, oy[0], cv);
    tl->nseg = edge_segments(tl->sg, tl->sm, x, nvalid, cv, cbi);
}

/* Cuts every output row into tiles of 3 consecutive pixels; the 1 or 2 pixels left at the end
 * of each row are gathered, row after row, into tiles of 3 whose pixels have the same kernel-row
 * range (rows away from the top and bottom padding).  No tile's pixel reads the top or bottom
 * padding, and the tails do not run as 1-pixel tiles (4 accumulators cannot cover the FMA
 * latency, and 4 weight vectors feed only 4 FMAs).  Returns the tile count. */
static int fwd_tiles(fwd_tile *tiles, const ax_conv *cv, int cbi)
{
    const int full = cv->ow / 3 * 3;
    int nt = 0, k = 0, ky0 = 0, ky1 = 0, ty[3], tx[3];
    for (int oy = 0; oy < cv->oh; oy++) {
        for (int ox = 0; ox < full; ox += 3) {
            const int y[3] = {oy, oy, oy}, x[3] = {ox, ox + 1, ox + 2};
            fwd_tile_of(&tiles[nt++], 3, y, x, cv, cbi);
        }
    }
    for (int oy = 0; oy < cv->oh; oy++) {
        int a, b;
        ky_range(&a, &b, oy, cv);
        for (int ox = full; ox < cv->ow; ox++) {
            if (k == 3 || (k && (a != ky0 || b != ky1))) fwd_tile_of(&tiles[nt++], k, ty, tx, cv, cbi), k = 0;
            if (k == 0) ky0 = a, ky1 = b;
            ty[k] = oy, tx[k] = ox, k++;
        }
    }
    if (k) fwd_tile_of(&tiles[nt++], k, ty, tx, cv, cbi);
    return nt;
}

/* Input-channel blocks per pass: a quad's weights for the whole input (up to 442 KB at conv4)
 * would be read from L2 once per tile and not stay there; a chunk of about 128 KB does while
 * every tile of the plane runs over it (measured: 64 KB and 256 KB are no faster, the whole
 * input up to 6% slower at conv4). */
static int fwd_icb_chunk(int nicb, int kh, int f)
{
    const size_t per_icb = (size_t)kh * f * 32 * sizeof(float);
    int chunk = (int)((128 << 10) / per_icb);
    if (chunk < 1) chunk = 1;
    if (chunk >= nicb) return nicb;
    const int npass = (nicb + chunk - 1) / chunk;
    return (nicb + npass - 1) / npass;
}

/* dst [n][oc/8][oh][ow][8] = conv of src [n][ic/cbi][ih][iw][cbi] with wq [quad][icb][ky][f][nb][8]
 * (the nb <= 4 blocks of each quad of output-channel blocks interleaved in one stream), plus b. */
static anx_status conv_fwd_3x32(float *dst, const float *src, const float *wq, const float *b, const ax_conv *cv,
                                int threads)
{
    const int cbi = ax_cb(cv->ic), nicb = cv->ic / cbi, nocb = cv->oc / 8, nquad = (nocb + 3) / 4;
    const int f = cv->kw * cbi, chunk = fwd_icb_chunk(nicb, cv->kh, f);
    const size_t img_in = (size_t)cv->ic * cv->ih * cv->iw, plane = (size_t)cv->oh * cv->ow;
    const size_t img_out = (size_t)cv->oc * plane, w_bs = (size_t)cv->ic * cv->kh * cv->kw * 8;
    const size_t tile_bytes = ((size_t)cv->ow / 3 + 2) * cv->oh * sizeof(fwd_tile);
    fwd_tile *tiles = ax_alloc_bytes(tile_bytes);
    if (!tiles) return anx_status_oom("conv tile table", tile_bytes);
    const int ntile = fwd_tiles(tiles, cv, cbi);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < cv->n; n++) {
        for (int qd = 0; qd < nquad; qd++) {
            const int ocb = 4 * qd, nb = nocb - ocb >= 4 ? 4 : nocb - ocb;
            float *out = dst + n * img_out + ocb * plane * 8;
            for (int c0 = 0; c0 < nicb; c0 += chunk) {
                const fwd_pass ps = {
                    .w = wq + ocb * w_bs + (size_t)c0 * cv->kh * f * 8 * nb,
                    .bias = b ? b + ocb * 8 : NULL,
                    .icb_stride = (size_t)cv->ih * cv->iw * cbi, .row_stride = (size_t)cv->iw * cbi,
                    .out_bs = plane * 8, .nicb = nicb - c0 < chunk ? nicb - c0 : chunk, .kh = cv->kh,
                    .f = f, .resume = c0 > 0,
                };
                const float *img = src + n * img_in + c0 * ps.icb_stride;
                for (int i = 0; i < ntile; i++) conv_fwd_tile3_any(nb, out, img, &tiles[i], &ps);
            }
        }
    }
    free(tiles);
    return NULL;
}

anx_status anx_f32_conv2d_fwd__avx2_3x32(float *dst, const float *src, const float *w, const float *b,
                                         const ax_conv *cv, int threads)
{
    /* dst [n][oc/8][oh][ow][8], src [n][ic/cbi][ih][iw][cbi], w [oc/8][ic/cbi][kh][kw][cbi][8], b [oc] */
    const int nocb = cv->oc / 8;
    const size_t w_bs = (size_t)cv->ic * cv->kh * cv->kw * 8;
    float *wq = ax_alloc_bytes((size_t)nocb * w_bs * sizeof *wq);
    if (!wq) return anx_status_oom("conv weights repacked by quad", (size_t)nocb * w_bs * sizeof *wq);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int ob = 0; ob < nocb; ob++) {
        const int q0 = ob / 4 * 4, nbq = nocb - q0 >= 4 ? 4 : nocb - q0, j = ob - q0;
        const float *s = w + (size_t)ob * w_bs;
        float *d = wq + (size_t)q0 * w_bs + 8 * j;
        for (size_t e = 0; e < w_bs / 8; e++) memcpy(d + e * 8 * nbq, s + e * 8, 8 * sizeof *d);
    }
    anx_status st = conv_fwd_3x32(dst, src, wq, b, cv, threads);
    free(wq);
    return st;
}

/* ---- backward data ---------------------------------------------------------------------- */

anx_status anx_f32_conv2d_bwd_data__avx2_3x32(float *diff_src, const float *diff_dst, const float *w,
                                              const ax_conv *cv, int threads)
{
    /* stride 1, ic % 8 == 0, kh == kw.  diff_src [n][ic/8][ih][iw][8], diff_dst [n][oc/8][oh][ow][8],
     * w [oc/8][ic/8][k][k][8i][8o].  The forward conv's weights for diff_dst -> diff_src are w
     * flipped in (ky, kx) with i and o swapped; they are written straight into its quad-interleaved
     * layout wq [ic/32][oc/8][k][k][8o][nb][8i] (one pass over w, no intermediate copy). */
    const int k = cv->kh, nicb = cv->ic / 8, nocb = cv->oc / 8, nquad = (nicb + 3) / 4;
    const size_t w_bs = (size_t)cv->oc * k * k * 8; /* one block of 8 diff_src channels */
    float *wq = ax_alloc_bytes((size_t)nicb * w_bs * sizeof *wq);
    if (!wq) return anx_status_oom("conv weights transposed for bwd_data", (size_t)nicb * w_bs * sizeof *wq);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int Q = 0; Q < nquad; Q++) {
        for (int O = 0; O < nocb; O++) {
            const int nb = nicb - 4 * Q >= 4 ? 4 : nicb - 4 * Q;
            for (int j = 0; j < nb; j++) {
                const int I = 4 * Q + j;
                for (int ky = 0; ky < k; ky++) {
                    for (int kx = 0; kx < k; kx++) {
                        const float *s = w + ((((size_t)O * nicb + I) * k + (k - 1 - ky)) * k + (k - 1 - kx)) * 64;
                        float *d = wq + 4 * (size_t)Q * w_bs + (((size_t)O * k + ky) * k + kx) * 8 * 8 * nb + 8 * j;
                        for (int co = 0; co < 8; co++)
                            for (int ci = 0; ci < 8; ci++) d[co * 8 * nb + ci] = s[ci * 8 + co];
                    }
                }
            }
        }
    }
    const ax_conv t = {cv->n, cv->oc, cv->oh, cv->ow, cv->ic, cv->ih, cv->iw, k, k, 1, k - 1 - cv->pad};
    anx_status st = conv_fwd_3x32(diff_src, diff_dst, wq, NULL, &t, threads);
    free(wq);
    return st;
}

anx_status anx_f32_conv2d_bwd_data__avx2_gather(float *diff_src, const float *diff_dst, const float *w,
                                                const ax_conv *cv, int threads)
{
    /* any stride, any src layout.  diff_src [n, ic, ih, iw] (nChw{cbi}c), diff_dst [n][oc/8][oh][ow][8],
     * w OIhw{cbi}i8o -> wg [ic][kh][kw][oc] so the oc sum runs over 8-lane vectors. */
    const int cbi = ax_cb(cv->ic), nicb = cv->ic / cbi, nocb = cv->oc / 8, s = cv->stride;
    const size_t plane = (size_t)cv->oh * cv->ow, img_out = (size_t)cv->oc * plane;
    const size_t wg_bytes = (size_t)cv->oc * cv->ic * cv->kh * cv->kw * sizeof(float);
    float *wg = ax_alloc_bytes(wg_bytes);
    if (!wg) return anx_status_oom("conv weights for the bwd_data gather", wg_bytes);
    for (int o = 0; o < cv->oc; o++)
        for (int c = 0; c < cv->ic; c++)
            for (int ky = 0; ky < cv->kh; ky++)
                for (int kx = 0; kx < cv->kw; kx++)
                    wg[(((size_t)c * cv->kh + ky) * cv->kw + kx) * cv->oc + o] =
                        w[((((size_t)(o / 8) * nicb + c / cbi) * cv->kh + ky) * cv->kw + kx) * cbi * 8 +
                          (c % cbi) * 8 + o % 8];
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < cv->n; n++) {
        for (int c = 0; c < cv->ic; c++) {
            const float *dd = diff_dst + n * img_out;
            for (int iy = 0; iy < cv->ih; iy++) {
                for (int ix = 0; ix < cv->iw; ix++) {
                    __m256 acc = _mm256_setzero_ps();
                    for (int ky = 0; ky < cv->kh; ky++) {
                        const int ty = iy + cv->pad - ky;
                        if (ty < 0 || ty % s || ty / s >= cv->oh) continue;
                        for (int kx = 0; kx < cv->kw; kx++) {
                            const int tx = ix + cv->pad - kx;
                            if (tx < 0 || tx % s || tx / s >= cv->ow) continue;
                            const float *wv = wg + (((size_t)c * cv->kh + ky) * cv->kw + kx) * cv->oc;
                            const float *d = dd + ((size_t)(ty / s) * cv->ow + tx / s) * 8;
                            for (int ob = 0; ob < nocb; ob++)
                                acc = _mm256_fmadd_ps(_mm256_loadu_ps(d + ob * plane * 8),
                                                      _mm256_loadu_ps(wv + ob * 8), acc);
                        }
                    }
                    diff_src[ax_act_off(cv->ic, cv->ih, cv->iw, n, c, iy, ix)] = ax_hsum(acc);
                }
            }
        }
    }
    free(wg);
    return NULL;
}

/* ---- backward weights ------------------------------------------------------------------- */

/* The output pixels whose tap (ky, kx) reads src rather than padding: a rectangle. */
typedef struct bww_rect {
    const float *d;     /* diff_dst at the rectangle's first pixel, block ocb; next block d_bs on */
    const float *s;     /* src of that pixel's tap f; per pixel column sx, per pixel row sy on */
    size_t d_bs, d_row, sx, sy;
    int ny, nx;         /* rectangle rows and columns */
} bww_rect;

/* dw [nb][nt][8] (block stride w_bs) += sum over the rectangle's pixels, rows then columns, of
 * d[j][pixel] * s[pixel][t]. */
AX_INLINE void conv_bww_tile(const int nb, const int nt, float *dw, size_t w_bs, const bww_rect *r)
{
    /* named accumulators (not an array): GCC keeps an array that is indexed under conditions in
       memory and stores it after every FMA */
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    float *w1 = dw + w_bs;
    const size_t d_bs = r->d_bs, sx = r->sx;
    a00 = _mm256_loadu_ps(dw);
    if (nt > 1) a01 = _mm256_loadu_ps(dw + 8);
    if (nt > 2) a02 = _mm256_loadu_ps(dw + 16);
    if (nt > 3) a03 = _mm256_loadu_ps(dw + 24);
    if (nb > 1) {
        a10 = _mm256_loadu_ps(w1);
        if (nt > 1) a11 = _mm256_loadu_ps(w1 + 8);
        if (nt > 2) a12 = _mm256_loadu_ps(w1 + 16);
        if (nt > 3) a13 = _mm256_loadu_ps(w1 + 24);
    }
    for (int y = 0; y < r->ny; y++) {
        const float *dr = r->d + y * r->d_row, *sp = r->s + y * r->sy;
        for (int x = 0; x < r->nx; x++, dr += 8, sp += sx) {
            const __m256 v0 = _mm256_loadu_ps(dr);
            const __m256 v1 = nb > 1 ? _mm256_loadu_ps(dr + d_bs) : v0;
            __m256 b = _mm256_broadcast_ss(sp);
            a00 = _mm256_fmadd_ps(v0, b, a00);
            if (nb > 1) a10 = _mm256_fmadd_ps(v1, b, a10);
            if (nt > 1) {
                b = _mm256_broadcast_ss(sp + 1);
                a01 = _mm256_fmadd_ps(v0, b, a01);
                if (nb > 1) a11 = _mm256_fmadd_ps(v1, b, a11);
            }
            if (nt > 2) {
                b = _mm256_broadcast_ss(sp + 2);
                a02 = _mm256_fmadd_ps(v0, b, a02);
                if (nb > 1) a12 = _mm256_fmadd_ps(v1, b, a12);
            }
            if (nt > 3) {
                b = _mm256_broadcast_ss(sp + 3);
                a03 = _mm256_fmadd_ps(v0, b, a03);
                if (nb > 1) a13 = _mm256_fmadd_ps(v1, b, a13);
            }
        }
    }
    _mm256_storeu_ps(dw, a00);
    if (nt > 1) _mm256_storeu_ps(dw + 8, a01);
    if (nt > 2) _mm256_storeu_ps(dw + 16, a02);
    if (nt > 3) _mm256_storeu_ps(dw + 24, a03);
    if (nb > 1) {
        _mm256_storeu_ps(w1, a10);
        if (nt > 1) _mm256_storeu_ps(w1 + 8, a11);
        if (nt > 2) _mm256_storeu_ps(w1 + 16, a12);
        if (nt > 3) _mm256_storeu_ps(w1 + 24, a13);
    }
}

/* The 8 (nb, nt) specialisations, so every accumulator lives in a register. */
static void conv_bww_tile_any(int nb, int nt, float *dw, size_t w_bs, const bww_rect *r)
{
#define AX_CASE(NB, NT)                                                  \
    if (nb == NB && nt == NT) {                                          \
        conv_bww_tile(NB, NT, dw, w_bs, r);                              \
        return;                                                          \
    }
    AX_CASE(2, 4) AX_CASE(2, 3) AX_CASE(2, 2) AX_CASE(2, 1)
    AX_CASE(1, 4) AX_CASE(1, 3) AX_CASE(1, 2) AX_CASE(1, 1)
#undef AX_CASE
}

/* [*o0, *o1): the outputs o < out whose tap k reads input o*stride - pad + k inside [0, in). */
static void tap_range(int *o0, int *o1, int k, int pad, int stride, int in, int out)
{
    const int lo = pad - k, hi = in - 1 + pad - k; /* o*stride in [lo, hi] */
    *o0 = lo > 0 ? (lo + stride - 1) / stride : 0;
    *o1 = hi < 0 ? 0 : hi / stride + 1 < out ? hi / stride + 1 : out;
}

/* One image's contribution to the weight gradients of output-channel blocks [ocb, ocb + nb). */
static void conv_bww_image(float *dw, int nb, const float *img, const float *d, const ax_conv *cv)
{
    const int cbi = ax_cb(cv->ic), nicb = cv->ic / cbi, f = cv->kw * cbi, S = cv->stride;
    const size_t plane = (size_t)cv->oh * cv->ow, w_bs = (size_t)cv->ic * cv->kh * cv->kw * 8;
    const size_t icb_stride = (size_t)cv->ih * cv->iw * cbi, row_stride = (size_t)cv->iw * cbi;
    for (int icb = 0; icb < nicb; icb++) {
        for (int ky = 0; ky < cv->kh; ky++) {
            int oy0, oy1;
            tap_range(&oy0, &oy1, ky, cv->pad, S, cv->ih, cv->oh);
            float *w = dw + ((size_t)icb * cv->kh + ky) * f * 8;
            for (int t = 0; t < f; t += 4) {
                const int kx = t / cbi; /* t..t+3 share it: cbi is 8, or pad is 0 (see caller) */
                int ox0, ox1;
                tap_range(&ox0, &ox1, kx, cv->pad, S, cv->iw, cv->ow);
                if (oy0 >= oy1 || ox0 >= ox1) continue;
                const bww_rect r = {
                    .d = d + ((size_t)oy0 * cv->ow + ox0) * 8, .d_bs = plane * 8, .d_row = (size_t)cv->ow * 8,
                    .s = img + icb * icb_stride + (size_t)(oy0 * S - cv->pad + ky) * row_stride +
                         (size_t)((ox0 * S - cv->pad + kx) * cbi + t % cbi),
                    .sx = (size_t)S * cbi, .sy = (size_t)S * row_stride, .ny = oy1 - oy0, .nx = ox1 - ox0,
                };
                conv_bww_tile_any(nb, f - t >= 4 ? 4 : f - t, w + 8 * t, w_bs, &r);
            }
        }
    }
}

anx_status anx_f32_conv2d_bwd_weights__avx2_16x4(float *diff_w, float *diff_b, const float *src,
                                                 const float *diff_dst, const ax_conv *cv, int threads)
{
    /* diff_w [oc/8][ic/cbi][kh][kw][cbi][8], diff_b [oc], src [n][ic/cbi][ih][iw][cbi],
     * diff_dst [n][oc/8][oh][ow][8].  Every element sums over (n, oy, ox) in that order, leaving
     * out the pixels whose tap reads padding (zero products, which cannot change a sum that
     * starts at +0: it never becomes -0). */
    const int nocb = cv->oc / 8, npair = (nocb + 1) / 2;
    const size_t plane = (size_t)cv->oh * cv->ow, img_out = (size_t)cv->oc * plane;
    const size_t w_bs = (size_t)cv->ic * cv->kh * cv->kw * 8;
    /* Plain src (cbi 1) with padding: four taps of f span several kx, so no one rectangle
     * serves them; such a conv (never in Alexnet, whose conv1 has pad 0) runs on a zero-padded
     * copy as a conv without padding. */
    ax_conv c = *cv;
    float *padded = NULL;
    if (ax_cb(cv->ic) == 1 && cv->pad) {
        c.ih += 2 * cv->pad, c.iw += 2 * cv->pad, c.pad = 0;
        const size_t padded_bytes = (size_t)c.n * c.ic * c.ih * c.iw * sizeof *padded;
        padded = ax_alloc_bytes(padded_bytes);
        if (!padded) return anx_status_oom("zero-padded conv src", padded_bytes);
        pad_act(padded, src, cv->n, cv->ic, cv->ih, cv->iw, cv->pad, threads);
        src = padded;
    }
    const size_t img_in = (size_t)c.ic * c.ih * c.iw;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int pr = 0; pr < npair; pr++) {
        const int ocb = 2 * pr, nb = nocb - ocb >= 2 ? 2 : 1;
        float *dw = diff_w + ocb * w_bs;
        memset(dw, 0, nb * w_bs * sizeof *dw);
        for (int j = 0; j < nb; j++) {
            __m256 acc = _mm256_setzero_ps();
            for (int n = 0; n < c.n; n++) {
                const float *d = diff_dst + n * img_out + (ocb + j) * plane * 8;
                for (size_t p = 0; p < plane; p++) acc = _mm256_add_ps(acc, _mm256_loadu_ps(d + 8 * p));
            }
            if (diff_b) _mm256_storeu_ps(diff_b + (ocb + j) * 8, acc);
        }
        for (int n = 0; n < c.n; n++)
            conv_bww_image(dw, nb, src + n * img_in, diff_dst + n * img_out + ocb * plane * 8, &c);
    }
    free(padded);
    return NULL;
}

/* ---- exec-table entries ----------------------------------------------------------------- */

static ax_conv conv_of(const anx_layer_desc *l)
{
    const ax_conv cv = {l->n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad};
    return cv;
}

/* bwd_data through the 3x32 forward kernel needs stride 1, a square kernel and blocked diff_src. */
static int bwd_data_is_fwd(const anx_layer_desc *l)
{
    return l->stride == 1 && l->kh == l->kw && l->ic % 8 == 0 && l->pad <= l->kh - 1;
}

anx_status ax_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const ax_conv cv = conv_of(l);
    return anx_f32_conv2d_fwd__avx2_3x32(a->dst, a->src, a->weights, a->bias, &cv, ax_threads(ctx));
}

anx_status ax_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const ax_conv cv = conv_of(l);
    if (bwd_data_is_fwd(l))
        return anx_f32_conv2d_bwd_data__avx2_3x32(a->diff_src, a->diff_dst, a->weights, &cv, ax_threads(ctx));
    return anx_f32_conv2d_bwd_data__avx2_gather(a->diff_src, a->diff_dst, a->weights, &cv, ax_threads(ctx));
}

anx_status ax_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const ax_conv cv = conv_of(l);
    return anx_f32_conv2d_bwd_weights__avx2_16x4(a->diff_weights, a->diff_bias, a->src, a->diff_dst, &cv,
                                                 ax_threads(ctx));
}

const char *ax_conv2d_impl(const anx_layer_desc *l, anx_dir dir)
{
    switch (dir) {
    case ANX_FWD: return ANX_IMPL_NAME(anx_f32_conv2d_fwd__avx2_3x32);
    case ANX_BWD_DATA:
        return bwd_data_is_fwd(l) ? ANX_IMPL_NAME(anx_f32_conv2d_bwd_data__avx2_3x32)
                                  : ANX_IMPL_NAME(anx_f32_conv2d_bwd_data__avx2_gather);
    default: return ANX_IMPL_NAME(anx_f32_conv2d_bwd_weights__avx2_16x4);
    }
}
