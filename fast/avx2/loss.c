/* CrossEntropyLoss (log-softmax + NLL, mean over the batch) on plain logits [n, c].
 * [n, 1000] is 0.01% of a step's work, so this stays scalar and computes in double with the
 * max subtracted, the ref's formula, rather than trading accuracy for a vector exp. */
#include <math.h>

#include "fast/avx2/avx2.h"

/* max (a NaN wins) and sum_j exp(x[j] - max) of one row */
static void row_terms(const float *x, int c, double *max, double *sum)
{
    double m = -INFINITY;
    for (int j = 0; j < c; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    double s = 0.0;
    for (int j = 0; j < c; j++) s += exp((double)x[j] - m);
    *max = m, *sum = s;
}

float anx_f32_loss_fwd__avx2(const float *logits, const int64_t *target, int n, int c)
{
    /* logits [n, c], target [n]; a target outside [0, c) makes the loss NaN, never an out-of-row read */
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * c; /* [c] */
        if (target[i] < 0 || target[i] >= c) {
            total = NAN;
            continue;
        }
        double m, s;
        row_terms(x, c, &m, &s);
        total += m + log(s) - (double)x[target[i]];
    }
    return (float)(total / n);
}

void anx_f32_loss_bwd_data__avx2(float *diff_src, const float *logits, const int64_t *target, int n, int c)
{
    /* diff_src, logits [n, c]: (softmax - onehot) / n; rows with a bad target are NaN */
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * c; /* [c] */
        float *d = diff_src + (size_t)i * c;     /* [c] */
        const int64_t t = target[i];
        if (t < 0 || t >= c) {
            for (int j = 0; j < c; j++) d[j] = NAN;
            continue;
        }
        double m, s;
        row_terms(x, c, &m, &s);
        for (int j = 0; j < c; j++) d[j] = (float)((exp((double)x[j] - m) / s - (j == t ? 1.0 : 0.0)) / n);
    }
}

anx_status ax_loss_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    *a->loss = anx_f32_loss_fwd__avx2(a->src, a->target, l->n, l->ic * l->ih * l->iw);
    return NULL;
}

anx_status ax_loss_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx;
    anx_f32_loss_bwd_data__avx2(a->diff_src, a->src, a->target, l->n, l->ic * l->ih * l->iw);
    return NULL;
}
