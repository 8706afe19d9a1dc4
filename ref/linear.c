/* Linear forward, backward-data and backward-weights: src [n, k] is the NCHW input viewed flat
 * (Linear-14's [n, 256, 6, 6] is k = 9216), weights [oc, k] row-major as PyTorch stores them. */
#include "ref/ref.h"

void anx_f32_linear_fwd__ref(float *dst, const float *src, const float *w, const float *b, int n, int k,
                             int oc)
{
    /* dst [n, oc], src [n, k], w [oc, k], b [oc] or NULL.  A dot product: summed left to right from
       the bias (not vectorised: that would reassociate the sum; Linear is a small part of the step). */
#pragma omp parallel for collapse(2) schedule(static)
    for (int o = 0; o < oc; o++) {
        for (int bi = 0; bi < n; bi++) {
            const float *wr = w + (size_t)o * k, *x = src + (size_t)bi * k;
            float sum = b ? b[o] : 0.0f;
            for (int i = 0; i < k; i++) sum += wr[i] * x[i];
            dst[(size_t)bi * oc + o] = sum;
        }
    }
}

/* Columns of diff_src per task in bwd_data: a [n, KB] block stays in L1 while w streams by. */
enum { KB = 256 };

void anx_f32_linear_bwd_data__ref(float *diff_src, const float *diff_dst, const float *w, int n, int k,
                                  int oc)
{
    /* diff_src [n, k], diff_dst [n, oc], w [oc, k]: diff_src row += diff_dst[n, o] * w row, o ascending */
    int blocks = (k + KB - 1) / KB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < n; bi++) {
        for (int kb = 0; kb < blocks; kb++) {
            int k0 = kb * KB, cnt = k - k0 < KB ? k - k0 : KB;
            float *restrict ds = diff_src + (size_t)bi * k + k0; /* [cnt] */
            for (int i = 0; i < cnt; i++) ds[i] = 0.0f;
            for (int o = 0; o < oc; o++) {
                float g = diff_dst[(size_t)bi * oc + o];
                const float *restrict wr = w + (size_t)o * k + k0;
                for (int i = 0; i < cnt; i++) ds[i] += g * wr[i];
            }
        }
    }
}

void anx_f32_linear_bwd_weights__ref(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                     int n, int k, int oc)
{
    /* diff_w [oc, k], diff_b [oc] or NULL, src [n, k], diff_dst [n, oc]: sums over the batch, n ascending */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < oc; o++) {
        float *restrict dw = diff_w + (size_t)o * k; /* [k] */
        for (int i = 0; i < k; i++) dw[i] = 0.0f;
        for (int bi = 0; bi < n; bi++) {
            float g = diff_dst[(size_t)bi * oc + o];
            const float *restrict x = src + (size_t)bi * k;
            for (int i = 0; i < k; i++) dw[i] += g * x[i];
        }
        if (diff_b) {
            float sum = 0.0f;
            for (int bi = 0; bi < n; bi++) sum += diff_dst[(size_t)bi * oc + o];
            diff_b[o] = sum;
        }
    }
}
