/* fast/cblas/conv2d.c — Conv2d as im2col + sgemm, one image at a time (plain NCHW / OIHW).
 *
 * With K = ic*kh*kw and P = oh*ow, one image is
 *   fwd:         dst [oc, P] = w [oc, K] . col [K, P] + b           (col = im2col(src))
 *   bwd_data:    col [K, P]  = w^T [K, oc] . diff_dst [oc, P];  diff_src = col2im(col)
 *   bwd_weights: diff_w [oc, K] += diff_dst [oc, P] . col^T [P, K]   (col = im2col(src), summed over images)
 * The im2col/col2im loops are split over rows / input channels, each output written by one
 * thread in a fixed order, so only the BLAS decides whether the bits depend on the thread count.
 */
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "fast/cblas/cblas_internal.h"

static int team(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

/* col [ic*kh*kw, oh*ow] from one image src [ic, ih, iw]; taps in the padding are 0 */
static void im2col(float *col, const float *src, int ic, int ih, int iw, int oh, int ow, int kh, int kw, int stride,
                   int pad, int threads)
{
    const int rows = ic * kh * kw;
#pragma omp parallel for schedule(static) num_threads(team(threads))
    for (int r = 0; r < rows; r++) {
        const int c = r / (kh * kw), ky = r / kw % kh, kx = r % kw;
        const float *plane = src + (size_t)c * ih * iw;
        float *out = col + (size_t)r * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            const int iy = oy * stride - pad + ky;
            float *o = out + (size_t)oy * ow;
            if (iy < 0 || iy >= ih) {
                memset(o, 0, (size_t)ow * sizeof *o);
                continue;
            }
            for (int ox = 0; ox < ow; ox++) {
                const int ix = ox * stride - pad + kx;
                o[ox] = ix >= 0 && ix < iw ? plane[(size_t)iy * iw + ix] : 0.0f;
            }
        }
    }
}

/* diff_src [ic, ih, iw] = the sum of col's taps onto each input pixel, (ky, kx) ascending; one
 * thread per input channel */
static void col2im(float *diff_src, const float *col, int ic, int ih, int iw, int oh, int ow, int kh, int kw,
                   int stride, int pad, int threads)
{
#pragma omp parallel for schedule(static) num_threads(team(threads))
    for (int c = 0; c < ic; c++) {
        float *plane = diff_src + (size_t)c * ih * iw;
        memset(plane, 0, (size_t)ih * iw * sizeof *plane);
        for (int ky = 0; ky < kh; ky++)
            for (int kx = 0; kx < kw; kx++) {
                const float *in = col + ((size_t)(c * kh + ky) * kw + kx) * oh * ow;
                for (int oy = 0; oy < oh; oy++) {
                    const int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= ih) continue;
                    for (int ox = 0; ox < ow; ox++) {
                        const int ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < iw) plane[(size_t)iy * iw + ix] += in[(size_t)oy * ow + ox];
                    }
                }
            }
    }
}

size_t cb_col_floats(const anx_layer_desc *l) { return (size_t)l->ic * l->kh * l->kw * l->oh * l->ow; }

int cb_col_slices(int n, int threads) { return n < 1 ? 1 : n < team(threads) ? n : team(threads); }

/* Output rows of diff_w per serial sgemm in bwd_weights: a constant, so the tiles (and the
 * bits) do not depend on the thread count. */
enum { CB_BWW_ROWS = 16 };

/* fwd and bwd_data: one image per thread, each with its own col (col + thread * K P); at most
 * n threads, so the thread numbers stay below cb_col_slices(n, threads) */
void anx_f32_conv2d_fwd__cblas_im2col(float *dst, const float *src, const float *w, const float *b, float *col,
                                      int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                      int stride, int pad, int threads)
{
    const int K = ic * kh * kw, P = oh * ow;
    if (P == 0) return; /* an empty output: nothing to write (and no valid leading dimension) */
#pragma omp parallel for schedule(static) num_threads(cb_col_slices(n, threads))
    for (int i = 0; i < n; i++) {
        float *d = dst + (size_t)i * oc * P, *c = col + (size_t)omp_get_thread_num() * K * P;
        im2col(c, src + (size_t)i * ic * ih * iw, ic, ih, iw, oh, ow, kh, kw, stride, pad, 1);
        for (int o = 0; o < oc; o++)
            for (int p = 0; p < P; p++) d[(size_t)o * P + p] = b[o];
        cb_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, oc, P, K, 1.0f, w, K, c, P, 1.0f, d, P);
    }
}

void anx_f32_conv2d_bwd_data__cblas_col2im(float *diff_src, const float *diff_dst, const float *w, float *col,
                                           int n, int ic, int ih, int iw, int oc, int oh, int ow, int kh, int kw,
                                           int stride, int pad, int threads)
{
    const int K = ic * kh * kw, P = oh * ow;
    if (P == 0) { /* no output pixel reads the input: its gradient is 0 */
        memset(diff_src, 0, (size_t)n * ic * ih * iw * sizeof *diff_src);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(cb_col_slices(n, threads))
    for (int i = 0; i < n; i++) {
        float *c = col + (size_t)omp_get_thread_num() * K * P;
        cb_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, oc, 1.0f, w, K, diff_dst + (size_t)i * oc * P, P,
                    0.0f, c, P);
        col2im(diff_src + (size_t)i * ic * ih * iw, c, ic, ih, iw, oh, ow, kh, kw, stride, pad, 1);
    }
}

/* diff_b [oc]: the row sums of diff_dst over (n, oy, ox) in that order, as ref adds them */
static void bias_sums(float *diff_b, const float *diff_dst, int n, int oc, int P, int threads)
{
#pragma omp parallel for schedule(static) num_threads(team(threads))
    for (int o = 0; o < oc; o++) {
        float s = 0.0f;
        for (int i = 0; i < n; i++) {
            const float *row = diff_dst + ((size_t)i * oc + o) * P;
            for (int p = 0; p < P; p++) s += row[p];
        }
        diff_b[o] = s;
    }
}

/* Images one after the other (each adds its GEMM to diff_w: a fixed order), the GEMM of one
 * image split into tiles of CB_BWW_ROWS output channels over the threads; uses the first col. */
void anx_f32_conv2d_bwd_weights__cblas_im2col(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                              float *col, int n, int ic, int ih, int iw, int oc, int oh, int ow,
                                              int kh, int kw, int stride, int pad, int threads)
{
    const int K = ic * kh * kw, P = oh * ow, tiles = (oc + CB_BWW_ROWS - 1) / CB_BWW_ROWS;
    if (n == 0 || P == 0) memset(diff_w, 0, (size_t)oc * K * sizeof *diff_w);
    for (int i = 0; i < n && P > 0; i++) {
        im2col(col, src + (size_t)i * ic * ih * iw, ic, ih, iw, oh, ow, kh, kw, stride, pad, threads);
        const float *dd = diff_dst + (size_t)i * oc * P;
#pragma omp parallel for schedule(static) num_threads(team(threads))
        for (int t = 0; t < tiles; t++) {
            const int o0 = t * CB_BWW_ROWS, m = oc - o0 < CB_BWW_ROWS ? oc - o0 : CB_BWW_ROWS;
            cb_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, K, P, 1.0f, dd + (size_t)o0 * P, P, col, P,
                        i ? 1.0f : 0.0f, diff_w + (size_t)o0 * K, K);
        }
    }
    bias_sums(diff_b, diff_dst, n, oc, P, threads);
}
