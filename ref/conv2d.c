/* Conv2d forward, backward-data and backward-weights: plain NCHW / OIHW loops.
 *
 * Every output element is summed in the order ref/ref.h documents, by one thread.  Two versions:
 *  - rows (any stride): the innermost loop runs along one output or input row, a contiguous
 *    axpy for stride 1 that the compiler vectorises without reordering any sum.  Out-of-range
 *    taps (zero padding) are never visited: tap_range() clips the rows/columns of each offset.
 *  - stride 1 (AlexNet's conv2..conv5): on zero-padded copies every tap is in range, so whole
 *    planes become long flat axpys with several taps per pass.  The padding taps add w * 0 = +-0,
 *    which changes no value: results equal the rows version bit for bit up to the sign of an
 *    exact zero (checked on random data at the conv2/conv3 shapes).  Their scratch memory is
 *    allocated per call; when it is short they fall back to the rows version.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "ref/ref.h"

/* Outputs o in [*lo, *hi) whose tap i = o*stride - pad + k lies inside [0, in). */
static void tap_range(int *lo, int *hi, int out, int in, int k, int stride, int pad)
{
    int first = pad - k;          /* need o*stride >= pad - k */
    int last = in - 1 + pad - k;  /* need o*stride <= in - 1 + pad - k */
    int l = first > 0 ? (first + stride - 1) / stride : 0;
    int h = last < 0 ? 0 : last / stride + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* d[j] += w * s[j*stride] for j < cnt; stride 1 gets its own loop so it vectorises. */
static void axpy_gather(float *restrict d, float w, const float *restrict s, int cnt, int stride)
{
    if (stride == 1) {
        for (int j = 0; j < cnt; j++) d[j] += w * s[j];
    } else {
        for (int j = 0; j < cnt; j++) d[j] += w * s[(size_t)j * stride];
    }
}

/* d[j*stride] += w * s[j] for j < cnt. */
static void axpy_scatter(float *restrict d, float w, const float *restrict s, int cnt, int stride)
{
    if (stride == 1) {
        for (int j = 0; j < cnt; j++) d[j] += w * s[j];
    } else {
        for (int j = 0; j < cnt; j++) d[(size_t)j * stride] += w * s[j];
    }
}

/* Any stride: row by row, out-of-range taps clipped. */
static void conv2d_fwd_rows(float *dst, const float *src, const float *w, const float *b, int n, int ic, int ih,
                            int iw, int oc, int oh, int ow, int kh, int kw, int stride, int pad)
{
    /* dst [n, oc, oh, ow], src [n, ic, ih, iw], w [oc, ic, kh, kw], b [oc] or NULL */
    const size_t splane = (size_t)ih * iw, dplane = (size_t)oh * ow;
#pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < n; bi++) {
        for (int o = 0; o < oc; o++) {
            float *d = dst + ((size_t)bi * oc + o) * dplane; /* [oh, ow] */
            float bias = b ? b[o] : 0.0f;
            for (size_t i = 0; i < dplane; i++) d[i] = bias;
            for (int c = 0; c < ic; c++) {
                const float *s = src + ((size_t)bi * ic + c) * splane;      /* [ih, iw] */
                const float *wk = w + ((size_t)o * ic + c) * kh * kw;       /* [kh, kw] */
                for (int ky = 0; ky < kh; ky++) {
                    int ylo, yhi;
                    tap_range(&ylo, &yhi, oh, ih, ky, stride, pad);
                    for (int kx = 0; kx < kw; kx++) {
                        int xlo, xhi;
                        tap_range(&xlo, &xhi, ow, iw, kx, stride, pad);
                        float wv = wk[ky * kw + kx];
                        int ix0 = xlo * stride - pad + kx;
                        for (int oy = ylo; oy < yhi; oy++) {
                            int iy = oy * stride - pad + ky;
                            axpy_gather(d + (size_t)oy * ow + xlo, wv, s + (size_t)iy * iw + ix0, xhi - xlo,
                                        stride);
                        }
                    }
                }
            }
        }
    }
}

/* Any stride: row by row, out-of-range taps clipped. */
static void conv2d_bwd_data_rows(float *diff_src, const float *diff_dst, const float *w, int n, int ic, int ih,
                                 int iw, int oc, int oh, int ow, int kh, int kw, int stride, int pad)
{
    /* diff_src [n, ic, ih, iw], diff_dst [n, oc, oh, ow], w [oc, ic, kh, kw] */
    const size_t splane = (size_t)ih * iw, dplane = (size_t)oh * ow;
#pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < n; bi++) {
        for (int c = 0; c < ic; c++) {
            float *ds = diff_src + ((size_t)bi * ic + c) * splane; /* [ih, iw], owned by this thread */
            memset(ds, 0, splane * sizeof *ds);
            for (int o = 0; o < oc; o++) {
                const float *dd = diff_dst + ((size_t)bi * oc + o) * dplane; /* [oh, ow] */
                const float *wk = w + ((size_t)o * ic + c) * kh * kw;        /* [kh, kw] */
                for (int ky = 0; ky < kh; ky++) {
                    int ylo, yhi;
                    tap_range(&ylo, &yhi, oh, ih, ky, stride, pad);
                    for (int kx = 0; kx < kw; kx++) {
                        int xlo, xhi;
                        tap_range(&xlo, &xhi, ow, iw, kx, stride, pad);
                        float wv = wk[ky * kw + kx];
                        int ix0 = xlo * stride - pad + kx;
                        for (int oy = ylo; oy < yhi; oy++) {
                            int iy = oy * stride - pad + ky;
                            axpy_scatter(ds + (size_t)iy * iw + ix0, wv, dd + (size_t)oy * ow + xlo, xhi - xlo,
                                         stride);
                        }
                    }
                }
            }
        }
    }
}

/* ---- stride 1: whole planes as one flattened row ----
 * With the input zero-padded to ph x pw (ph = ih + 2 pad, pw = iw + 2 pad), output (oy, ox) at flat
 * index q = oy * pw + ox reads tap (ky, kx) at q + ky * pw + kx: one contiguous axpy of
 * len = (oh - 1) * pw + ow per tap instead of oh short rows.  The columns ox >= ow in between are
 * scratch and dropped.  Each output still sums bias, then (ic, ky, kx) in order; the padding taps
 * add w * 0 = +-0, which leaves every value unchanged (the rows version skips them), so the two
 * versions agree bit for bit up to the sign of an exact zero. */

/* dst [rows, cols] <- src [rows, cols] placed at (pad, pad) inside a zeroed [rows + 2 pad, cols + 2 pad] */
static void pad_plane(float *dst, const float *src, int rows, int cols, int pad)
{
    int pw = cols + 2 * pad;
    memset(dst, 0, (size_t)(rows + 2 * pad) * pw * sizeof *dst);
    for (int y = 0; y < rows; y++) memcpy(dst + (size_t)(y + pad) * pw + pad, src + (size_t)y * cols, cols * sizeof *dst);
}

static void axpy(float *restrict d, float w, const float *restrict s, size_t len)
{
    for (size_t q = 0; q < len; q++) d[q] += w * s[q];
}

/* d[q] += w[j] * s[q + j] for j = 0..cnt-1, added one after the other (the parentheses keep the
 * order: same bits as cnt separate axpys), d read and written once per group of up to 4 taps. */
static void axpy_taps(float *restrict d, const float *w, const float *restrict s, int cnt, size_t len)
{
    int j = 0;
    for (; j + 4 <= cnt; j += 4) {
        const float w0 = w[j], w1 = w[j + 1], w2 = w[j + 2], w3 = w[j + 3];
        const float *s0 = s + j;
        for (size_t q = 0; q < len; q++) d[q] = (((d[q] + w0 * s0[q]) + w1 * s0[q + 1]) + w2 * s0[q + 2]) + w3 * s0[q + 3];
    }
    if (cnt - j == 3) {
        const float w0 = w[j], w1 = w[j + 1], w2 = w[j + 2];
        const float *s0 = s + j;
        for (size_t q = 0; q < len; q++) d[q] = ((d[q] + w0 * s0[q]) + w1 * s0[q + 1]) + w2 * s0[q + 2];
        return;
    }
    for (; j < cnt; j++) axpy(d, w[j], s + j, len);
}

/* d[q] += w[j] * s[q - j] for j = 0..cnt-1, in j order (the gather form of the transpose). */
static void axpy_taps_rev(float *restrict d, const float *w, const float *restrict s, int cnt, size_t len)
{
    int j = 0;
    for (; j + 4 <= cnt; j += 4) {
        const float w0 = w[j], w1 = w[j + 1], w2 = w[j + 2], w3 = w[j + 3];
        const float *s0 = s - j, *s1 = s - j - 1, *s2 = s - j - 2, *s3 = s - j - 3;
        for (size_t q = 0; q < len; q++) d[q] = (((d[q] + w0 * s0[q]) + w1 * s1[q]) + w2 * s2[q]) + w3 * s3[q];
    }
    if (cnt - j == 3) {
        const float w0 = w[j], w1 = w[j + 1], w2 = w[j + 2];
        const float *s0 = s - j, *s1 = s - j - 1, *s2 = s - j - 2;
        for (size_t q = 0; q < len; q++) d[q] = ((d[q] + w0 * s0[q]) + w1 * s1[q]) + w2 * s2[q];
        return;
    }
    for (; j < cnt; j++) axpy(d, w[j], s - j, len);
}

/* Returns 0 when scratch memory is short (the caller falls back to the rows version). */
static int conv2d_fwd_flat_s1(float *dst, const float *src, const float *w, const float *b, int n, int ic, int ih,
                              int iw, int oc, int oh, int ow, int kh, int kw, int pad)
{
    const int ph = ih + 2 * pad, pw = iw + 2 * pad;
    const size_t pplane = (size_t)ph * pw, len = (size_t)(oh - 1) * pw + ow, dplane = (size_t)oh * ow;
    const int nthr = omp_get_max_threads();
    float *spad = malloc((size_t)n * ic * pplane * sizeof *spad); /* [n, ic, ph, pw] */
    float *acc_all = malloc((size_t)nthr * oh * pw * sizeof *acc_all); /* per thread [oh, pw] */
    if (!spad || !acc_all) {
        free(spad), free(acc_all);
        return 0;
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)n * ic; p++) pad_plane(spad + p * pplane, src + p * ih * iw, ih, iw, pad);
#pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < n; bi++) {
        for (int o = 0; o < oc; o++) {
            float *acc = acc_all + (size_t)omp_get_thread_num() * oh * pw; /* [oh, pw], flat */
            float bias = b ? b[o] : 0.0f;
            for (size_t q = 0; q < len; q++) acc[q] = bias;
            for (int c = 0; c < ic; c++) {
                const float *sp = spad + ((size_t)bi * ic + c) * pplane; /* [ph, pw] */
                const float *wk = w + ((size_t)o * ic + c) * kh * kw;   /* [kh, kw] */
                for (int ky = 0; ky < kh; ky++) axpy_taps(acc, wk + ky * kw, sp + (size_t)ky * pw, kw, len);
            }
            float *d = dst + ((size_t)bi * oc + o) * dplane; /* [oh, ow] */
            for (int oy = 0; oy < oh; oy++) memcpy(d + (size_t)oy * ow, acc + (size_t)oy * pw, ow * sizeof *d);
        }
    }
    free(spad), free(acc_all);
    return 1;
}

/* The transpose as a gather, so taps can be grouped as in the forward: diff_dst is zero-padded by
 * kh-1 rows and kw-1 columns on each side with row pitch pp = ow + 2 (kw-1) = pw + kw - 1; then
 * input (iy, ix), at padded (iy + pad, ix + pad), gets tap (ky, kx) from the padded diff_dst at
 * flat offset (kh-1-ky) * pp + (kw-1-kx) from its own flat index.  Each element sums
 * (oc, ky, kx) in that order, as the rows version (whose skipped taps are the zeros here). */
static int conv2d_bwd_data_flat_s1(float *diff_src, const float *diff_dst, const float *w, int n, int ic, int ih,
                                   int iw, int oc, int oh, int ow, int kh, int kw, int pad)
{
    const int pp = ow + 2 * (kw - 1), prow = oh + 2 * (kh - 1);
    const size_t dplane = (size_t)prow * pp, len = (size_t)(ih - 1) * pp + iw;
    const int nthr = omp_get_max_threads();
    float *ddp = malloc((size_t)n * oc * dplane * sizeof *ddp);        /* [n, oc, prow, pp] */
    float *acc_all = malloc((size_t)nthr * ih * pp * sizeof *acc_all); /* per thread [ih, pp] */
    if (!ddp || !acc_all) {
        free(ddp), free(acc_all);
        return 0;
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)n * oc; p++) {
        float *d = ddp + p * dplane;
        memset(d, 0, dplane * sizeof *d);
        for (int oy = 0; oy < oh; oy++)
            memcpy(d + (size_t)(oy + kh - 1) * pp + (kw - 1), diff_dst + (p * oh + oy) * ow, ow * sizeof *d);
    }
    /* input (iy, ix), flat iy * pp + ix in acc, gets tap (ky, kx) from diff_dst (iy + pad - ky, ix + pad - kx),
       stored at padded row iy + pad - ky + kh - 1, column ix + pad - kx + kw - 1: flat
       iy * pp + ix + base + (kh - 1 - ky) * pp + (kw - 1 - kx) */
    const size_t base = (size_t)pad * pp + pad;
#pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < n; bi++) {
        for (int c = 0; c < ic; c++) {
            float *acc = acc_all + (size_t)omp_get_thread_num() * ih * pp; /* [ih, pp], flat */
            memset(acc, 0, len * sizeof *acc);
            for (int o = 0; o < oc; o++) {
                const float *dd = ddp + ((size_t)bi * oc + o) * dplane; /* [prow, pp] */
                const float *wk = w + ((size_t)o * ic + c) * kh * kw;  /* [kh, kw] */
                for (int ky = 0; ky < kh; ky++)
                    axpy_taps_rev(acc, wk + ky * kw, dd + base + (size_t)(kh - 1 - ky) * pp + (kw - 1), kw, len);
            }
            float *ds = diff_src + ((size_t)bi * ic + c) * ih * iw; /* [ih, iw] */
            for (int iy = 0; iy < ih; iy++) memcpy(ds + (size_t)iy * iw, acc + (size_t)iy * pp, iw * sizeof *ds);
        }
    }
    free(ddp), free(acc_all);
    return 1;
}

void anx_f32_conv2d_fwd__ref(float *dst, const float *src, const float *w, const float *b, int n, int ic,
                             int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride, int pad)
{
    if (stride == 1 && oh > 0 && ow > 0 && conv2d_fwd_flat_s1(dst, src, w, b, n, ic, ih, iw, oc, oh, ow, kh, kw, pad))
        return;
    conv2d_fwd_rows(dst, src, w, b, n, ic, ih, iw, oc, oh, ow, kh, kw, stride, pad);
}

void anx_f32_conv2d_bwd_data__ref(float *diff_src, const float *diff_dst, const float *w, int n, int ic,
                                  int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride,
                                  int pad)
{
    if (stride == 1 && oh > 0 && ow > 0 &&
        conv2d_bwd_data_flat_s1(diff_src, diff_dst, w, n, ic, ih, iw, oc, oh, ow, kh, kw, pad))
        return;
    conv2d_bwd_data_rows(diff_src, diff_dst, w, n, ic, ih, iw, oc, oh, ow, kh, kw, stride, pad);
}

/* Columns per stack chunk of partial sums in bwd_weights (bounds the stack, not the order). */
enum { COLS = 64 };

/* Bias gradient: diff_b[o] = sum over (n, oy, ox) in that order. */
static void conv2d_bwd_bias(float *diff_b, const float *diff_dst, int n, int oc, int oh, int ow)
{
    const size_t dplane = (size_t)oh * ow;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < oc; o++) {
        float sum = 0.0f;
        for (int bi = 0; bi < n; bi++) {
            const float *dd = diff_dst + ((size_t)bi * oc + o) * dplane; /* [oh, ow] */
            for (size_t i = 0; i < dplane; i++) sum += dd[i];
        }
        diff_b[o] = sum;
    }
}

/* Stride 1: the same per-column order with the columns in register-sized chunks of LANES whose
 * partial sums stay in registers over all (n, oy): diff_dst re-laid with a pitch rounded up to
 * LANES (zero columns beyond ow) and the source zero-padded to [ph, that pitch + kw - 1], so every
 * tap is in range.  Padding taps and the extra columns add +-0: the values are the rows
 * version's bit for bit, up to the sign of an exact zero. */
enum { LANES = 16 };

static int conv2d_bwd_weights_flat_s1(float *diff_w, const float *src, const float *diff_dst, int n, int ic, int ih,
                                      int iw, int oc, int oh, int ow, int kh, int kw, int pad)
{
    const int q = (ow + LANES - 1) / LANES * LANES, ps = q + kw - 1, ph = ih + 2 * pad;
    const size_t splane = (size_t)ph * ps, dplane = (size_t)oh * q;
    float *spad = malloc((size_t)n * ic * splane * sizeof *spad); /* [n, ic, ph, ps] */
    float *ddq = malloc((size_t)n * oc * dplane * sizeof *ddq);   /* [n, oc, oh, q] */
    if (!spad || !ddq) {
        free(spad), free(ddq);
        return 0;
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)n * ic; p++) {
        float *sp = spad + p * splane;
        memset(sp, 0, splane * sizeof *sp);
        for (int y = 0; y < ih; y++)
            memcpy(sp + (size_t)(y + pad) * ps + pad, src + (p * ih + y) * iw, iw * sizeof *sp);
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)n * oc; p++) {
        float *d = ddq + p * dplane;
        memset(d, 0, dplane * sizeof *d);
        for (int oy = 0; oy < oh; oy++) memcpy(d + (size_t)oy * q, diff_dst + (p * oh + oy) * ow, ow * sizeof *d);
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int o = 0; o < oc; o++) {
        for (int c = 0; c < ic; c++) {
            float *dw = diff_w + ((size_t)o * ic + c) * kh * kw; /* [kh, kw] */
            for (int ky = 0; ky < kh; ky++) {
                for (int kx = 0; kx < kw; kx++) {
                    float sum = 0.0f;
                    for (int x0 = 0; x0 < q; x0 += LANES) {
                        float acc[LANES] = {0}; /* column x0 + j: its sum over (n, oy) */
                        for (int bi = 0; bi < n; bi++) {
                            const float *dd = ddq + ((size_t)bi * oc + o) * dplane + x0;                 /* [oh, q] */
                            const float *sp = spad + ((size_t)bi * ic + c) * splane + (size_t)ky * ps + x0 + kx; /* [ph, ps] */
                            for (int oy = 0; oy < oh; oy++)
                                for (int j = 0; j < LANES; j++) acc[j] += dd[(size_t)oy * q + j] * sp[(size_t)oy * ps + j];
                        }
                        for (int j = 0; j < LANES; j++) sum += acc[j];
                    }
                    dw[ky * kw + kx] = sum;
                }
            }
        }
    }
    free(spad), free(ddq);
    return 1;
}

void anx_f32_conv2d_bwd_weights__ref(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                     int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                     int stride, int pad)
{
    /* diff_w [oc, ic, kh, kw], diff_b [oc] or NULL, src [n, ic, ih, iw], diff_dst [n, oc, oh, ow] */
    if (diff_b) conv2d_bwd_bias(diff_b, diff_dst, n, oc, oh, ow);
    if (stride == 1 && oh > 0 && ow > 0 &&
        conv2d_bwd_weights_flat_s1(diff_w, src, diff_dst, n, ic, ih, iw, oc, oh, ow, kh, kw, pad))
        return;
    const size_t splane = (size_t)ih * iw, dplane = (size_t)oh * ow;
#pragma omp parallel for collapse(2) schedule(static)
    for (int o = 0; o < oc; o++) {
        for (int c = 0; c < ic; c++) {
            float *dw = diff_w + ((size_t)o * ic + c) * kh * kw; /* [kh, kw] */
            for (int ky = 0; ky < kh; ky++) {
                int ylo, yhi;
                tap_range(&ylo, &yhi, oh, ih, ky, stride, pad);
                for (int kx = 0; kx < kw; kx++) {
                    int xlo, xhi;
                    tap_range(&xlo, &xhi, ow, iw, kx, stride, pad);
                    float sum = 0.0f;
                    /* per output column ox: acc[ox] = sum over (n, oy); then sum over ox ascending */
                    for (int x0 = xlo; x0 < xhi; x0 += COLS) {
                        int cnt = xhi - x0 < COLS ? xhi - x0 : COLS;
                        float acc[COLS];
                        for (int j = 0; j < cnt; j++) acc[j] = 0.0f;
                        int ix0 = x0 * stride - pad + kx;
                        for (int bi = 0; bi < n; bi++) {
                            const float *dd = diff_dst + ((size_t)bi * oc + o) * dplane; /* [oh, ow] */
                            const float *s = src + ((size_t)bi * ic + c) * splane;      /* [ih, iw] */
                            for (int oy = ylo; oy < yhi; oy++) {
                                const float *ddrow = dd + (size_t)oy * ow + x0;
                                const float *srow = s + (size_t)(oy * stride - pad + ky) * iw + ix0;
                                if (stride == 1) {
                                    for (int j = 0; j < cnt; j++) acc[j] += ddrow[j] * srow[j];
                                } else {
                                    for (int j = 0; j < cnt; j++) acc[j] += ddrow[j] * srow[(size_t)j * stride];
                                }
                            }
                        }
                        for (int j = 0; j < cnt; j++) sum += acc[j];
                    }
                    dw[ky * kw + kx] = sum;
                }
            }
        }
    }
}
