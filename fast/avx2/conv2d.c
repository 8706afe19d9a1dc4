/* Conv2d forward, backward-data and backward-weights with AVX2+FMA register-blocked microkernels.
 *
 * Activations are nChw8c (or plain NCHW for conv1's 1..4-channel input), weights OIhw{cbi}i8o
 * (see avx2.h).  Each kernel first copies src into a zero-padded workspace so the microkernels
 * never test borders; in that padded row the pair (kx, ci) is one contiguous index f = kx*cbi+ci,
 * exactly as in the weights, so one loop serves the 3-channel conv1 and the 8-blocked others.
 *
 *  fwd          6 output pixels (consecutive in row-major order, may wrap rows) x 16 output
 *               channels: 12 accumulators, 2 weight vectors and 1 broadcast per (icb, ky, f).
 *  bwd_data     stride 1 (conv2..5): a forward conv of diff_dst with the flipped, IO-swapped
 *               weights and pad k-1-p, through the same 6x16 kernel.  Other strides (conv1,
 *               verification only): a gather over the (oy, ox, oc) that tap each input element.
 *  bwd_weights  16 output channels x 4 taps of f, accumulated over every pixel of an image,
 *               image after image; each thread owns whole output-channel pairs.
 */
#include <stdlib.h>
#include <string.h>

#include "fast/avx2/avx2.h"

enum { RW = 6 }; /* output pixels per fwd tile */

static float *ax_alloc_floats(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0) abort();
    return p;
}

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

/* ---- forward ---------------------------------------------------------------------------- */

/* out [nb][RW][8] (block stride out_bs) = bias + sum over (icb, ky, f) of in[r][icb, ky, f] * w.
 * in[r]: the padded-src address of pixel r's window corner; w [nb][icb][ky][f][8] (stride w_bs).
 * nb (1, 2) and nvalid (1..RW, the pixels computed) are compile-time constants at every call. */
AX_INLINE void conv_fwd_tile(const int nb, float *out, size_t out_bs, const int nvalid,
                             const float *const in[RW], const float *w, size_t w_bs, const float *bias,
                             int nicb, size_t icb_stride, int kh, size_t row_stride, int f)
{
    /* named accumulators c<r><j> (pixel r, block j): GCC keeps an array that is indexed under
       conditions in memory and stores it after every FMA */
    const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 b1 = bias && nb > 1 ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    __m256 c00 = b0, c10 = b0, c20 = b0, c30 = b0, c40 = b0, c50 = b0;
    __m256 c01 = b1, c11 = b1, c21 = b1, c31 = b1, c41 = b1, c51 = b1;
    for (int icb = 0; icb < nicb; icb++) {
        for (int ky = 0; ky < kh; ky++) {
            const size_t off = icb * icb_stride + ky * row_stride;
            const float *p0 = in[0] + off, *p1 = in[1] + off, *p2 = in[2] + off;
            const float *p3 = in[3] + off, *p4 = in[4] + off, *p5 = in[5] + off;
            for (int t = 0; t < f; t++, w += 8) {
                const __m256 w0 = _mm256_loadu_ps(w);
                const __m256 w1 = nb > 1 ? _mm256_loadu_ps(w + w_bs) : w0;
                __m256 b;
#define AX_FMA_PIXEL(r)                                                            \
    if (nvalid > r) {                                                              \
        b = _mm256_broadcast_ss(p##r + t);                                         \
        c##r##0 = _mm256_fmadd_ps(b, w0, c##r##0);                                 \
        if (nb > 1) c##r##1 = _mm256_fmadd_ps(b, w1, c##r##1);                     \
    }
                AX_FMA_PIXEL(0)
                AX_FMA_PIXEL(1)
                AX_FMA_PIXEL(2)
                AX_FMA_PIXEL(3)
                AX_FMA_PIXEL(4)
                AX_FMA_PIXEL(5)
#undef AX_FMA_PIXEL
            }
        }
    }
#define AX_STORE(r)                                                                \
    if (nvalid > r) {                                                              \
        _mm256_storeu_ps(out + 8 * r, c##r##0);                                    \
        if (nb > 1) _mm256_storeu_ps(out + out_bs + 8 * r, c##r##1);               \
    }
    AX_STORE(0) AX_STORE(1) AX_STORE(2) AX_STORE(3) AX_STORE(4) AX_STORE(5)
#undef AX_STORE
}

/* The 12 (nb, nvalid) specialisations: a row tail computes only its valid pixels. */
static void conv_fwd_tile_any(int nb, float *out, size_t out_bs, int nvalid, const float *const in[RW],
                              const float *w, size_t w_bs, const float *bias, int nicb, size_t icb_stride,
                              int kh, size_t row_stride, int f)
{
#define AX_CASE(NB, NV)                                                                          \
    if (nb == NB && nvalid == NV) {                                                              \
        conv_fwd_tile(NB, out, out_bs, NV, in, w, w_bs, bias, nicb, icb_stride, kh, row_stride, f); \
        return;                                                                                  \
    }
    AX_CASE(2, 6) AX_CASE(2, 5) AX_CASE(2, 4) AX_CASE(2, 3) AX_CASE(2, 2) AX_CASE(2, 1)
    AX_CASE(1, 6) AX_CASE(1, 5) AX_CASE(1, 4) AX_CASE(1, 3) AX_CASE(1, 2) AX_CASE(1, 1)
#undef AX_CASE
}

void anx_f32_conv2d_fwd__avx2_6x16(float *dst, const float *src, const float *w, const float *b,
                                   const ax_conv *cv, int threads)
{
    /* dst [n][oc/8][oh][ow][8], src [n][ic/cbi][ih][iw][cbi], w [oc/8][ic/cbi][kh][kw][cbi][8], b [oc] */
    const int cbi = ax_cb(cv->ic), hp = cv->ih + 2 * cv->pad, wp = cv->iw + 2 * cv->pad;
    const int nicb = cv->ic / cbi, nocb = cv->oc / 8, npair = (nocb + 1) / 2, f = cv->kw * cbi;
    const size_t img_in = (size_t)cv->ic * hp * wp, plane = (size_t)cv->oh * cv->ow;
    const size_t img_out = (size_t)cv->oc * plane, w_bs = (size_t)cv->ic * cv->kh * cv->kw * 8;
    const size_t icb_stride = (size_t)hp * wp * cbi, row_stride = (size_t)wp * cbi;
    float *padded = NULL;
    if (cv->pad) {
        padded = ax_alloc_floats((size_t)cv->n * img_in);
        pad_act(padded, src, cv->n, cv->ic, cv->ih, cv->iw, cv->pad, threads);
        src = padded;
    }
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int n = 0; n < cv->n; n++) {
        for (int pr = 0; pr < npair; pr++) {
            const int ocb = 2 * pr, nb = nocb - ocb >= 2 ? 2 : 1;
            const float *wb = w + ocb * w_bs, *bias = b ? b + ocb * 8 : NULL;
            const float *img = src + n * img_in;
            float *out = dst + n * img_out + ocb * plane * 8;
            for (size_t p = 0; p < plane; p += RW) {
                const int nvalid = plane - p >= RW ? RW : (int)(plane - p);
                const float *in[RW];
                for (int r = 0; r < RW; r++) {
                    const size_t q = p + (r < nvalid ? r : 0);
                    const size_t oy = q / cv->ow, ox = q % cv->ow;
                    in[r] = img + (oy * cv->stride * wp + ox * cv->stride) * cbi;
                }
                conv_fwd_tile_any(nb, out + p * 8, plane * 8, nvalid, in, wb, w_bs, bias, nicb,
                                  icb_stride, cv->kh, row_stride, f);
            }
        }
    }
    free(padded);
}

/* ---- backward data ---------------------------------------------------------------------- */

void anx_f32_conv2d_bwd_data__avx2_6x16(float *diff_src, const float *diff_dst, const float *w,
                                        const ax_conv *cv, int threads)
{
    /* stride 1, ic % 8 == 0, kh == kw.  diff_src [n][ic/8][ih][iw][8], diff_dst [n][oc/8][oh][ow][8],
     * w [oc/8][ic/8][k][k][8i][8o] -> wt [ic/8][oc/8][k][k][8o][8i], flipped in (ky, kx). */
    const int k = cv->kh, nicb = cv->ic / 8, nocb = cv->oc / 8;
    float *wt = ax_alloc_floats((size_t)cv->oc * cv->ic * k * k);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int I = 0; I < nicb; I++) {
        for (int O = 0; O < nocb; O++) {
            for (int ky = 0; ky < k; ky++) {
                for (int kx = 0; kx < k; kx++) {
                    const float *s = w + ((((size_t)O * nicb + I) * k + (k - 1 - ky)) * k + (k - 1 - kx)) * 64;
                    float *d = wt + ((((size_t)I * nocb + O) * k + ky) * k + kx) * 64;
                    for (int ci = 0; ci < 8; ci++)
                        for (int co = 0; co < 8; co++) d[co * 8 + ci] = s[ci * 8 + co];
                }
            }
        }
    }
    const ax_conv t = {cv->n, cv->oc, cv->oh, cv->ow, cv->ic, cv->ih, cv->iw, k, k, 1, k - 1 - cv->pad};
    anx_f32_conv2d_fwd__avx2_6x16(diff_src, diff_dst, wt, NULL, &t, threads);
    free(wt);
}

void anx_f32_conv2d_bwd_data__avx2_gather(float *diff_src, const float *diff_dst, const float *w,
                                          const ax_conv *cv, int threads)
{
    /* any stride, any src layout.  diff_src [n, ic, ih, iw] (nChw{cbi}c), diff_dst [n][oc/8][oh][ow][8],
     * w OIhw{cbi}i8o -> wg [ic][kh][kw][oc] so the oc sum runs over 8-lane vectors. */
    const int cbi = ax_cb(cv->ic), nicb = cv->ic / cbi, nocb = cv->oc / 8, s = cv->stride;
    const size_t plane = (size_t)cv->oh * cv->ow, img_out = (size_t)cv->oc * plane;
    float *wg = ax_alloc_floats((size_t)cv->oc * cv->ic * cv->kh * cv->kw);
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
}

/* ---- backward weights ------------------------------------------------------------------- */

/* dw [nb][nt][8] (block stride w_bs) += sum over the oh x ow pixels of d[j][pixel] * s[pixel][t].
 * d: diff_dst of the image at ocb (block stride d_bs, [oh][ow][8]); s: padded-src address of
 * pixel (0, 0)'s tap f; sx, sy: its steps per output column and per output row. */
AX_INLINE void conv_bww_tile(const int nb, const int nt, float *dw, size_t w_bs, const float *d,
                             size_t d_bs, const float *s, size_t sx, size_t sy, int oh, int ow)
{
    /* named accumulators (not an array): GCC keeps an array that is indexed under conditions in
       memory and stores it after every FMA */
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    float *w1 = dw + w_bs;
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
    for (int y = 0; y < oh; y++) {
        const float *dr = d + (size_t)y * ow * 8, *sp = s + y * sy;
        for (int x = 0; x < ow; x++, dr += 8, sp += sx) {
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
static void conv_bww_tile_any(int nb, int nt, float *dw, size_t w_bs, const float *d, size_t d_bs,
                              const float *s, size_t sx, size_t sy, int oh, int ow)
{
#define AX_CASE(NB, NT) \
    if (nb == NB && nt == NT) {                                                          \
        conv_bww_tile(NB, NT, dw, w_bs, d, d_bs, s, sx, sy, oh, ow);                        \
        return;                                                                             \
    }
    AX_CASE(2, 4) AX_CASE(2, 3) AX_CASE(2, 2) AX_CASE(2, 1)
    AX_CASE(1, 4) AX_CASE(1, 3) AX_CASE(1, 2) AX_CASE(1, 1)
#undef AX_CASE
}

void anx_f32_conv2d_bwd_weights__avx2_16x4(float *diff_w, float *diff_b, const float *src,
                                           const float *diff_dst, const ax_conv *cv, int threads)
{
    /* diff_w [oc/8][ic/cbi][kh][kw][cbi][8], diff_b [oc], src [n][ic/cbi][ih][iw][cbi],
     * diff_dst [n][oc/8][oh][ow][8].  Every element sums over (n, oy, ox) in that order. */
    const int cbi = ax_cb(cv->ic), hp = cv->ih + 2 * cv->pad, wp = cv->iw + 2 * cv->pad;
    const int nicb = cv->ic / cbi, nocb = cv->oc / 8, npair = (nocb + 1) / 2, f = cv->kw * cbi;
    const size_t img_in = (size_t)cv->ic * hp * wp, plane = (size_t)cv->oh * cv->ow;
    const size_t img_out = (size_t)cv->oc * plane, w_bs = (size_t)cv->ic * cv->kh * cv->kw * 8;
    const size_t icb_stride = (size_t)hp * wp * cbi, row_stride = (size_t)wp * cbi;
    float *padded = NULL;
    if (cv->pad) {
        padded = ax_alloc_floats((size_t)cv->n * img_in);
        pad_act(padded, src, cv->n, cv->ic, cv->ih, cv->iw, cv->pad, threads);
        src = padded;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int pr = 0; pr < npair; pr++) {
        const int ocb = 2 * pr, nb = nocb - ocb >= 2 ? 2 : 1;
        float *dw = diff_w + ocb * w_bs;
        memset(dw, 0, nb * w_bs * sizeof *dw);
        for (int j = 0; j < nb; j++) {
            __m256 acc = _mm256_setzero_ps();
            for (int n = 0; n < cv->n; n++) {
                const float *d = diff_dst + n * img_out + (ocb + j) * plane * 8;
                for (size_t p = 0; p < plane; p++) acc = _mm256_add_ps(acc, _mm256_loadu_ps(d + 8 * p));
            }
            if (diff_b) _mm256_storeu_ps(diff_b + (ocb + j) * 8, acc);
        }
        for (int n = 0; n < cv->n; n++) {
            const float *d = diff_dst + n * img_out + ocb * plane * 8;
            for (int icb = 0; icb < nicb; icb++) {
                for (int ky = 0; ky < cv->kh; ky++) {
                    const float *s = src + n * img_in + icb * icb_stride + ky * row_stride;
                    float *w = dw + ((size_t)icb * cv->kh + ky) * f * 8;
                    for (int t = 0; t < f; t += 4)
                        conv_bww_tile_any(nb, f - t >= 4 ? 4 : f - t, w + 8 * t, w_bs, d, plane * 8,
                                          s + t, (size_t)cv->stride * cbi, cv->stride * row_stride,
                                          cv->oh, cv->ow);
                }
            }
        }
    }
    free(padded);
}

/* ---- exec-table entries ----------------------------------------------------------------- */

static ax_conv conv_of(const anx_layer_desc *l)
{
    const ax_conv cv = {l->n, l->ic, l->ih, l->iw, l->oc, l->oh, l->ow, l->kh, l->kw, l->stride, l->pad};
    return cv;
}

/* bwd_data through the 6x16 forward kernel needs stride 1, a square kernel and blocked diff_src. */
static int bwd_data_is_fwd(const anx_layer_desc *l)
{
    return l->stride == 1 && l->kh == l->kw && l->ic % 8 == 0 && l->pad <= l->kh - 1;
}

void ax_conv2d_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const ax_conv cv = conv_of(l);
    anx_f32_conv2d_fwd__avx2_6x16(a->dst, a->src, a->weights, a->bias, &cv, ax_threads(ctx));
}

void ax_conv2d_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const ax_conv cv = conv_of(l);
    if (bwd_data_is_fwd(l))
        anx_f32_conv2d_bwd_data__avx2_6x16(a->diff_src, a->diff_dst, a->weights, &cv, ax_threads(ctx));
    else
        anx_f32_conv2d_bwd_data__avx2_gather(a->diff_src, a->diff_dst, a->weights, &cv, ax_threads(ctx));
}

void ax_conv2d_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    const ax_conv cv = conv_of(l);
    anx_f32_conv2d_bwd_weights__avx2_16x4(a->diff_weights, a->diff_bias, a->src, a->diff_dst, &cv,
                                          ax_threads(ctx));
}

const char *ax_conv2d_impl(const anx_layer_desc *l, anx_dir dir)
{
    switch (dir) {
    case ANX_FWD: return "anx_f32_conv2d_fwd__avx2_6x16";
    case ANX_BWD_DATA:
        return bwd_data_is_fwd(l) ? "anx_f32_conv2d_bwd_data__avx2_6x16" : "anx_f32_conv2d_bwd_data__avx2_gather";
    default: return "anx_f32_conv2d_bwd_weights__avx2_16x4";
    }
}
