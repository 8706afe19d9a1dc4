/* Linear forward, backward-data and backward-weights: src [n, k] is the NCHW input viewed flat
 * (Linear-14's [n, 256, 6, 6] is k = 9216), weights [oc, k] row-major as PyTorch stores them.
 * The weights are the big operand (Linear-14's are 151 MB): every kernel reads them once, in
 * row order, and reuses each element for every image of the batch. */
#include "ref/ref.h"

/* fwd: OB outputs per task, advanced together over k in chunks of KC: the [OB, KC] weight chunk is
 * transposed into a small buffer so the OB running sums of one image sit side by side and one
 * vector multiply-add advances them all.  Each sum still runs left to right over k from the bias
 * (a dot product must not be split into partial sums: that would reassociate it). */
enum { OB = 8, KC = 128 };

/* acc[j] += sum over i < cnt of wt[i][j] * x[i], one i after the other, for j < OB */
static void dot8_chunk(float acc[OB], const float (*wt)[OB], const float *x, int cnt)
{
    float a[OB];
    for (int j = 0; j < OB; j++) a[j] = acc[j];
    for (int i = 0; i < cnt; i++) {
        const float xv = x[i];
        for (int j = 0; j < OB; j++) a[j] += wt[i][j] * xv;
    }
    for (int j = 0; j < OB; j++) acc[j] = a[j];
}

void anx_f32_linear_fwd__ref(float *dst, const float *src, const float *w, const float *b, int n, int k,
                             int oc)
{
    /* dst [n, oc], src [n, k], w [oc, k], b [oc] or NULL.
       dst[n, o] = ((b[o] + w[o,0] src[n,0]) + w[o,1] src[n,1]) + ...
       The running sums live in dst itself between chunks (written once per chunk, exact). */
    int blocks = (oc + OB - 1) / OB;
#pragma omp parallel for schedule(static)
    for (int ob = 0; ob < blocks; ob++) {
        int o0 = ob * OB, ocnt = oc - o0 < OB ? oc - o0 : OB;
        float wt[KC][OB]; /* transposed chunk: wt[i][j] = w[o0 + j, k0 + i]; rows j >= ocnt are 0 */
        for (int bi = 0; bi < n; bi++)
            for (int j = 0; j < ocnt; j++) dst[(size_t)bi * oc + o0 + j] = b ? b[o0 + j] : 0.0f;
        for (int k0 = 0; k0 < k; k0 += KC) {
            int cnt = k - k0 < KC ? k - k0 : KC;
            for (int j = 0; j < OB; j++)
                for (int i = 0; i < cnt; i++) wt[i][j] = j < ocnt ? w[(size_t)(o0 + j) * k + k0 + i] : 0.0f;
            for (int bi = 0; bi < n; bi++) {
                float acc[OB] = {0};
                float *d = dst + (size_t)bi * oc + o0; /* [ocnt] */
                for (int j = 0; j < ocnt; j++) acc[j] = d[j];
                dot8_chunk(acc, (const float (*)[OB])wt, src + (size_t)bi * k + k0, cnt);
                for (int j = 0; j < ocnt; j++) d[j] = acc[j];
            }
        }
    }
}

/* bwd_data: columns of diff_src per task; each task reads its column range of every weight row
 * (KB floats = 8 KB contiguous per row) and keeps the [n, KB] block of diff_src in cache. */
enum { KB = 2048 };

void anx_f32_linear_bwd_data__ref(float *diff_src, const float *diff_dst, const float *w, int n, int k,
                                  int oc)
{
    /* diff_src [n, k], diff_dst [n, oc], w [oc, k]: diff_src[n, i] = sum over o ascending of
       diff_dst[n, o] * w[o, i] */
    int blocks = (k + KB - 1) / KB;
#pragma omp parallel for schedule(static)
    for (int kb = 0; kb < blocks; kb++) {
        int k0 = kb * KB, cnt = k - k0 < KB ? k - k0 : KB;
        for (int bi = 0; bi < n; bi++) {
            float *ds = diff_src + (size_t)bi * k + k0; /* [cnt] */
            for (int i = 0; i < cnt; i++) ds[i] = 0.0f;
        }
        for (int o = 0; o < oc; o++) {
            const float *restrict wr = w + (size_t)o * k + k0; /* [cnt] */
            for (int bi = 0; bi < n; bi++) {
                float g = diff_dst[(size_t)bi * oc + o];
                float *restrict ds = diff_src + (size_t)bi * k + k0;
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
