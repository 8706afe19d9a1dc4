/* Conv2d forward, backward-data and backward-weights: plain NCHW / OIHW loops.
 *
 * The innermost loop always runs along one output or input row, so for stride 1 it is a
 * contiguous axpy that the compiler vectorises without reordering any sum.  Out-of-range taps
 * (zero padding) are never visited: tap_range() clips the row range of each kernel offset.
 */
#include <string.h>

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

void anx_f32_conv2d_fwd__ref(float *dst, const float *src, const float *w, const float *b, int n, int ic,
                             int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride, int pad)
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

void anx_f32_conv2d_bwd_data__ref(float *diff_src, const float *diff_dst, const float *w, int n, int ic,
                                  int ih, int iw, int oc, int oh, int ow, int kh, int kw, int stride,
                                  int pad)
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

/* Columns per stack chunk of partial sums in bwd_weights (bounds the stack, not the order). */
enum { COLS = 64 };

void anx_f32_conv2d_bwd_weights__ref(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                     int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                     int stride, int pad)
{
    /* diff_w [oc, ic, kh, kw], diff_b [oc] or NULL, src [n, ic, ih, iw], diff_dst [n, oc, oh, ow] */
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
    if (!diff_b) return;
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
