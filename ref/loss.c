/* CrossEntropyLoss (log-softmax + NLL, mean over the batch), computed in double from float logits. */
#include <math.h>

#include "ref/ref.h"

/* max_j x[j] and sum_j exp(x[j] - max) of one row; the max keeps exp() from overflowing. */
static void row_softmax_terms(const float *x, int c, double *max, double *sum)
{
    double m = -INFINITY;
    for (int j = 0; j < c; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    double s = 0.0;
    for (int j = 0; j < c; j++) s += exp((double)x[j] - m);
    *max = m, *sum = s;
}

float anx_f32_loss_fwd__ref(const float *logits, const int64_t *target, int n, int c)
{
    /* logits [n, c], target [n] */
    double total = 0.0;
    for (int bi = 0; bi < n; bi++) {
        const float *x = logits + (size_t)bi * c; /* [c] */
        int64_t t = target[bi];
        if (t < 0 || t >= c) {
            total = NAN; /* refused by the net; never read outside the row */
            continue;
        }
        double m, s;
        row_softmax_terms(x, c, &m, &s);
        total += m + log(s) - (double)x[t]; /* -log_softmax(x)[t] */
    }
    return (float)(total / n);
}

void anx_f32_loss_bwd_data__ref(float *diff_src, const float *logits, const int64_t *target, int n, int c)
{
    /* diff_src, logits [n, c], target [n]: d mean(loss) / d logits = (softmax - onehot) / n */
    for (int bi = 0; bi < n; bi++) {
        const float *x = logits + (size_t)bi * c; /* [c] */
        float *d = diff_src + (size_t)bi * c;     /* [c] */
        int64_t t = target[bi];
        if (t < 0 || t >= c) {
            for (int j = 0; j < c; j++) d[j] = NAN;
            continue;
        }
        double m, s;
        row_softmax_terms(x, c, &m, &s);
        for (int j = 0; j < c; j++) {
            double p = exp((double)x[j] - m) / s;
            d[j] = (float)((p - (j == t ? 1.0 : 0.0)) / n);
        }
    }
}
