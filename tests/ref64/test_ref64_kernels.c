/* test_ref64_kernels: every ref64 kernel equals, bit for bit, a plain float64 loop that sums in
 * the order ref/ref.h documents (the obvious nested loops, written here independently of the
 * templates), on random full-precision doubles where any other order or any float32 rounding
 * changes the bits.  Shapes reach every path of the templates: conv stride 1 (the padded
 * "flat" versions, with several 16-column chunks), stride 4 and 2 (the row versions), Linear
 * across its 128-wide k chunks and 8-wide output blocks, overlapping pool windows, the loss,
 * Adam at t = 1 and 3.  Also anx_ref64_exec against the kernels and its refusals.
 * Exact zeros may differ in sign only (the flat versions add w * 0): compared with ==. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "anx/ref64.h"
#include "anx/rng.h"
#include "testutil.h"

static double *dbuf(size_t n, uint64_t seed, double lo, double hi)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    uint64_t key = anx_rng_key(seed, "test_ref64", 0);
    /* 53 random bits per value (u01 has only 24): any other order of a sum changes the bits */
    for (size_t i = 0; i < n; i++) {
        double u = (double)(anx_rng_bits(key, i) >> 11) * 0x1p-53;
        p[i] = lo + (hi - lo) * u;
    }
    return p;
}

static double *zbuf(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = NAN; /* every element must be written */
    return p;
}

/* One check: got == want everywhere (so +0 == -0, NaN fails). */
static void expect_equal(const double *got, const double *want, size_t n, const char *what)
{
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (!(got[i] == want[i]) && bad++ == 0) first = i;
    TU_CHECKF(bad == 0, "%s: %zu of %zu elements differ, first [%zu] got %.17g want %.17g", what, bad, n, first,
              bad ? got[first] : 0.0, bad ? want[first] : 0.0);
}

/* ---- the documented orders, as plain loops ---- */

static void conv_fwd_plain(double *dst, const double *src, const double *w, const double *b, int n, int ic, int ih,
                           int iw, int oc, int oh, int ow, int k, int s, int pad)
{
    for (int bi = 0; bi < n; bi++)
        for (int o = 0; o < oc; o++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double acc = b[o];
                    for (int c = 0; c < ic; c++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
                                acc += w[(((size_t)o * ic + c) * k + ky) * k + kx] *
                                       src[(((size_t)bi * ic + c) * ih + iy) * iw + ix];
                            }
                    dst[(((size_t)bi * oc + o) * oh + oy) * ow + ox] = acc;
                }
}

static void conv_bwd_data_plain(double *ds, const double *dd, const double *w, int n, int ic, int ih, int iw, int oc,
                                int oh, int ow, int k, int s, int pad)
{
    for (int bi = 0; bi < n; bi++)
        for (int c = 0; c < ic; c++)
            for (int iy = 0; iy < ih; iy++)
                for (int ix = 0; ix < iw; ix++) {
                    double acc = 0;
                    for (int o = 0; o < oc; o++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int ty = iy + pad - ky, tx = ix + pad - kx;
                                if (ty < 0 || tx < 0 || ty % s || tx % s || ty / s >= oh || tx / s >= ow) continue;
                                acc += w[(((size_t)o * ic + c) * k + ky) * k + kx] *
                                       dd[(((size_t)bi * oc + o) * oh + ty / s) * ow + tx / s];
                            }
                    ds[(((size_t)bi * ic + c) * ih + iy) * iw + ix] = acc;
                }
}

/* dw: per output column ox the sum over (n, oy), then those sums over ox ascending */
static void conv_bwd_weights_plain(double *dw, double *db, const double *src, const double *dd, int n, int ic, int ih,
                                   int iw, int oc, int oh, int ow, int k, int s, int pad)
{
    for (int o = 0; o < oc; o++) {
        for (int c = 0; c < ic; c++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    double sum = 0;
                    for (int ox = 0; ox < ow; ox++) {
                        int ix = ox * s - pad + kx;
                        if (ix < 0 || ix >= iw) continue;
                        double col = 0;
                        for (int bi = 0; bi < n; bi++)
                            for (int oy = 0; oy < oh; oy++) {
                                int iy = oy * s - pad + ky;
                                if (iy < 0 || iy >= ih) continue;
                                col += dd[(((size_t)bi * oc + o) * oh + oy) * ow + ox] *
                                       src[(((size_t)bi * ic + c) * ih + iy) * iw + ix];
                            }
                        sum += col;
                    }
                    dw[(((size_t)o * ic + c) * k + ky) * k + kx] = sum;
                }
        double sb = 0;
        for (int bi = 0; bi < n; bi++)
            for (size_t i = 0; i < (size_t)oh * ow; i++) sb += dd[((size_t)bi * oc + o) * oh * ow + i];
        db[o] = sb;
    }
}

static void test_conv(int n, int ic, int hw, int oc, int k, int s, int pad, uint64_t seed)
{
    int oh = (hw + 2 * pad - k) / s + 1;
    size_t ns = (size_t)n * ic * hw * hw, nd = (size_t)n * oc * oh * oh, nw = (size_t)oc * ic * k * k;
    double *src = dbuf(ns, seed, -1, 1), *w = dbuf(nw, seed + 1, -1, 1), *b = dbuf(oc, seed + 2, -1, 1);
    double *dd = dbuf(nd, seed + 3, -1, 1);
    double *got = zbuf(nd > ns ? (nd > nw ? nd : nw) : (ns > nw ? ns : nw)), *want = zbuf(nd > ns ? (nd > nw ? nd : nw) : (ns > nw ? ns : nw));
    double *gb = zbuf(oc), *wb = zbuf(oc);
    char what[96];
    snprintf(what, sizeof what, "conv2d fwd n%d ic%d %dx%d oc%d k%d s%d p%d", n, ic, hw, hw, oc, k, s, pad);
    anx_f64_conv2d_fwd__ref64(got, src, w, b, n, ic, hw, hw, oc, oh, oh, k, k, s, pad);
    conv_fwd_plain(want, src, w, b, n, ic, hw, hw, oc, oh, oh, k, s, pad);
    expect_equal(got, want, nd, what);
    snprintf(what, sizeof what, "conv2d bwd_data n%d ic%d %dx%d oc%d k%d s%d p%d", n, ic, hw, hw, oc, k, s, pad);
    anx_f64_conv2d_bwd_data__ref64(got, dd, w, n, ic, hw, hw, oc, oh, oh, k, k, s, pad);
    conv_bwd_data_plain(want, dd, w, n, ic, hw, hw, oc, oh, oh, k, s, pad);
    expect_equal(got, want, ns, what);
    snprintf(what, sizeof what, "conv2d bwd_weights n%d ic%d %dx%d oc%d k%d s%d p%d", n, ic, hw, hw, oc, k, s, pad);
    anx_f64_conv2d_bwd_weights__ref64(got, gb, src, dd, n, ic, hw, hw, oc, oh, oh, k, k, s, pad);
    conv_bwd_weights_plain(want, wb, src, dd, n, ic, hw, hw, oc, oh, oh, k, s, pad);
    expect_equal(got, want, nw, what);
    expect_equal(gb, wb, (size_t)oc, "conv2d bwd_weights bias");
    free(src), free(w), free(b), free(dd), free(got), free(want), free(gb), free(wb);
}

static void test_linear(int n, int k, int oc, uint64_t seed)
{
    double *x = dbuf((size_t)n * k, seed, -1, 1), *w = dbuf((size_t)oc * k, seed + 1, -1, 1);
    double *b = dbuf(oc, seed + 2, -1, 1), *dy = dbuf((size_t)n * oc, seed + 3, -1, 1);
    size_t big = (size_t)oc * k > (size_t)n * k ? (size_t)oc * k : (size_t)n * k;
    double *got = zbuf(big), *want = zbuf(big), *gb = zbuf(oc), *wb = zbuf(oc);
    for (int bi = 0; bi < n; bi++)
        for (int o = 0; o < oc; o++) {
            double acc = b[o];
            for (int i = 0; i < k; i++) acc += w[(size_t)o * k + i] * x[(size_t)bi * k + i];
            want[(size_t)bi * oc + o] = acc;
        }
    anx_f64_linear_fwd__ref64(got, x, w, b, n, k, oc);
    expect_equal(got, want, (size_t)n * oc, "linear fwd");
    for (int bi = 0; bi < n; bi++)
        for (int i = 0; i < k; i++) {
            double acc = 0;
            for (int o = 0; o < oc; o++) acc += dy[(size_t)bi * oc + o] * w[(size_t)o * k + i];
            want[(size_t)bi * k + i] = acc;
        }
    anx_f64_linear_bwd_data__ref64(got, dy, w, n, k, oc);
    expect_equal(got, want, (size_t)n * k, "linear bwd_data");
    for (int o = 0; o < oc; o++) {
        for (int i = 0; i < k; i++) {
            double acc = 0;
            for (int bi = 0; bi < n; bi++) acc += dy[(size_t)bi * oc + o] * x[(size_t)bi * k + i];
            want[(size_t)o * k + i] = acc;
        }
        double sb = 0;
        for (int bi = 0; bi < n; bi++) sb += dy[(size_t)bi * oc + o];
        wb[o] = sb;
    }
    anx_f64_linear_bwd_weights__ref64(got, gb, x, dy, n, k, oc);
    expect_equal(got, want, (size_t)oc * k, "linear bwd_weights");
    expect_equal(gb, wb, (size_t)oc, "linear bwd_weights bias");
    free(x), free(w), free(b), free(dy), free(got), free(want), free(gb), free(wb);
}

static void test_elementwise(void)
{
    enum { N = 2, C = 3, H = 13, O = 6, CNT = N * C * H * H };
    double *x = dbuf(CNT, 41, -1, 1), *dy = dbuf(CNT, 42, -1, 1), *mask = dbuf(CNT, 43, 0, 1);
    double *got = zbuf(CNT), *want = zbuf(CNT), *y = zbuf(CNT);
    for (size_t i = 0; i < CNT; i++) mask[i] = mask[i] < 0.5 ? 0.0 : 2.0;
    anx_f64_relu_fwd__ref64(got, x, CNT);
    for (size_t i = 0; i < CNT; i++) want[i] = x[i] < 0 ? 0.0 : x[i];
    expect_equal(got, want, CNT, "relu fwd");
    memcpy(y, got, sizeof(double) * CNT);
    anx_f64_relu_bwd_data__ref64(got, dy, y, CNT);
    for (size_t i = 0; i < CNT; i++) want[i] = y[i] <= 0 ? 0.0 : dy[i];
    expect_equal(got, want, CNT, "relu bwd_data");
    anx_f64_dropout_fwd__ref64(got, x, mask, CNT);
    for (size_t i = 0; i < CNT; i++) want[i] = x[i] * mask[i];
    expect_equal(got, want, CNT, "dropout fwd");
    anx_f64_dropout_bwd_data__ref64(got, dy, mask, CNT);
    for (size_t i = 0; i < CNT; i++) want[i] = dy[i] * mask[i];
    expect_equal(got, want, CNT, "dropout bwd_data");
    /* 3x3 stride 2 on 13x13: 6x6 overlapping windows; first maximum wins */
    anx_f64_maxpool_fwd__ref64(got, x, N, C, H, H, O, O, 3, 3, 2);
    memset(want, 0, sizeof(double) * CNT);
    double *dsw = zbuf(CNT);
    for (size_t i = 0; i < CNT; i++) dsw[i] = 0;
    for (int p = 0; p < N * C; p++)
        for (int oy = 0; oy < O; oy++)
            for (int ox = 0; ox < O; ox++) {
                size_t bi = (size_t)p * H * H + (size_t)oy * 2 * H + ox * 2;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        size_t i = (size_t)p * H * H + (size_t)(oy * 2 + ky) * H + ox * 2 + kx;
                        if (x[i] > x[bi]) bi = i;
                    }
                want[((size_t)p * O + oy) * O + ox] = x[bi];
                dsw[bi] += dy[((size_t)p * O + oy) * O + ox];
            }
    expect_equal(got, want, (size_t)N * C * O * O, "maxpool fwd");
    anx_f64_maxpool_bwd_data__ref64(got, dy, x, N, C, H, H, O, O, 3, 3, 2);
    expect_equal(got, dsw, CNT, "maxpool bwd_data");
    free(x), free(dy), free(mask), free(got), free(want), free(y), free(dsw);
}

static void test_loss(void)
{
    enum { N = 3, C = 7 };
    double *z = dbuf(N * C, 51, -4, 4), *got = zbuf(N * C), want[N * C];
    const int64_t t[N] = {0, 6, 3};
    double total = 0;
    for (int bi = 0; bi < N; bi++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < C; j++) m = z[bi * C + j] > m ? z[bi * C + j] : m;
        for (int j = 0; j < C; j++) s += exp(z[bi * C + j] - m);
        total += m + log(s) - z[bi * C + t[bi]];
        for (int j = 0; j < C; j++) want[bi * C + j] = (exp(z[bi * C + j] - m) / s - (j == t[bi])) / N;
    }
    double loss = anx_f64_loss_fwd__ref64(z, t, N, C);
    TU_CHECKF(loss == total / N, "loss fwd %.17g, want %.17g", loss, total / N);
    anx_f64_loss_bwd_data__ref64(got, z, t, N, C);
    expect_equal(got, want, N * C, "loss bwd_data");
    free(z), free(got);
}

/* PyTorch's float64 Adam: every scalar a double, the two fmas, at t = 1 and 3 */
static void test_adam(void)
{
    enum { N = 1003 };
    const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double *p = dbuf(N, 61, -1, 1), *g = dbuf(N, 62, -1e-2, 1e-2), *m = dbuf(N, 63, -1e-3, 1e-3);
    double *v = dbuf(N, 64, 0, 1e-5), *pw = zbuf(N), *mw = zbuf(N), *vw = zbuf(N);
    for (int64_t t = 1; t <= 3; t += 2) {
        double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
        for (size_t i = 0; i < N; i++) {
            mw[i] = fma(g[i], 1 - b1, m[i] * b1);
            vw[i] = fma((1 - b2) * g[i], g[i], v[i] * b2);
            pw[i] = p[i] + (-(lr / bc1) * mw[i]) / (sqrt(vw[i]) / sqrt(bc2) + eps);
        }
        anx_f64_adam__ref64(p, g, m, v, N, lr, b1, b2, eps, t);
        expect_equal(p, pw, N, t == 1 ? "adam param t=1" : "adam param t=3");
        expect_equal(m, mw, N, "adam exp_avg");
        expect_equal(v, vw, N, "adam exp_avg_sq");
    }
    free(p), free(g), free(m), free(v), free(pw), free(mw), free(vw);
}

/* anx_ref64_exec routes a descriptor to the kernels (a conv, a Linear viewing NCHW flat, the loss). */
static void test_exec(void)
{
    anx_layer_desc conv = {.op = ANX_OP_CONV2D, .n = 2, .ic = 3, .ih = 9, .iw = 9, .oc = 4, .oh = 9, .ow = 9,
                           .kh = 3, .kw = 3, .stride = 1, .pad = 1};
    size_t ns = 2 * 3 * 81, nd = 2 * 4 * 81, nw = 4 * 3 * 9;
    double *x = dbuf(ns, 71, -1, 1), *w = dbuf(nw, 72, -1, 1), *b = dbuf(4, 73, -1, 1);
    double *got = zbuf(nd), *want = zbuf(nd);
    anx_args64 a = {.src = x, .dst = got, .weights = w, .bias = b};
    TU_CHECK(anx_ref64_exec(&conv, ANX_FWD, &a, 2) == 0);
    anx_f64_conv2d_fwd__ref64(want, x, w, b, 2, 3, 9, 9, 4, 9, 9, 3, 3, 1, 1);
    expect_equal(got, want, nd, "exec conv2d fwd");
    anx_layer_desc lin = {.op = ANX_OP_LINEAR, .n = 2, .ic = 3, .ih = 9, .iw = 9, .oc = 5, .oh = 1, .ow = 1,
                          .kh = 9, .kw = 9};
    double *lw = dbuf(5 * ns / 2, 74, -1, 1), *lb = dbuf(5, 75, -1, 1);
    a = (anx_args64){.src = x, .dst = got, .weights = lw, .bias = lb};
    TU_CHECK(anx_ref64_exec(&lin, ANX_FWD, &a, 0) == 0);
    anx_f64_linear_fwd__ref64(want, x, lw, lb, 2, 243, 5);
    expect_equal(got, want, 10, "exec linear fwd (NCHW viewed flat)");
    anx_layer_desc loss = {.op = ANX_OP_LOSS, .n = 2, .ic = 5, .ih = 1, .iw = 1, .oc = 1, .oh = 1, .ow = 1};
    const int64_t t[2] = {1, 4};
    double l = NAN;
    a = (anx_args64){.src = want, .target = t, .loss = &l};
    TU_CHECK(anx_ref64_exec(&loss, ANX_FWD, &a, 0) == 0);
    TU_CHECK(l == anx_f64_loss_fwd__ref64(want, t, 2, 5));
    anx_layer_desc relu = {.op = ANX_OP_RELU, .n = 1, .ic = 1, .ih = 1, .iw = 1, .oc = 1, .oh = 1, .ow = 1};
    TU_CHECKF(anx_ref64_exec(&relu, ANX_BWD_WEIGHTS, &a, 0) == -1, "relu bwd_weights is refused");
    free(x), free(w), free(b), free(got), free(want), free(lw), free(lb);
}

int main(void)
{
    test_conv(2, 3, 20, 5, 3, 1, 1, 1);  /* flat s1 paths; ow 20: two 16-column chunks */
    test_conv(2, 2, 15, 3, 5, 1, 2, 11); /* conv2's kernel: the 4-tap group and a 1-tap tail */
    test_conv(2, 3, 31, 4, 11, 4, 0, 21); /* conv1's kernel and stride: the row versions */
    test_conv(1, 2, 12, 3, 3, 2, 1, 31);  /* stride 2 with padding */
    test_linear(3, 300, 11, 81);          /* k over 3 chunks of 128, oc over 2 blocks of 8 */
    test_elementwise();
    test_loss();
    test_adam();
    test_exec();
    return tu_finish("test_ref64_kernels");
}
