/* test_wino_bound — the gate's derived Winograd bound (core/verify_wino.c) is the bound of the
 * algorithm oneDNN runs, holds for it, and is not vacuous.  No oneDNN needed: the algorithm is
 * simulated here in float32 from the same matrices.
 *
 *   1. v_wino_matrices(4,3) and (3,4) are Winograd matrices: A^T[(G g G^T) (.) (B^T d B)]A in
 *      double equals the direct correlation (6x6 tile, 3x3 filter; 6x6 tile, 4x4 "filter").
 *   2. They are oneDNN 2.6 jit_wino_4x3's: every constant of its transforms (G_I, G_W, G_O and
 *      the bwd_weights G_W of src/cpu/x64/jit_avx512_core_f32_wino_conv_4x3.cpp) is one of their
 *      entries (to float32), and each entry is one of those constants, 0, 1 or a product of them.
 *   3. fwd, bwd_data, bwd_weights of a 3x3 stride-1 pad-1 conv computed by a float32 Winograd
 *      (these matrices rounded to float, every sum in float) against the exact double answer:
 *      every element within eps W (v_wino_magnitudes), and the worst error / bound printed.
 *   4. The same float32 Winograd with one output-transform constant off by 1e-2 relative (0.625
 *      -> 0.63125) is beyond the bound on some element: the bound catches a wrong transform (off
 *      by 1e-3 it is caught in 5 of the 6 cases; the 256-channel fwd keeps it within: 0.82).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"
#include "testutil.h"

#define WA 6
#define PLANT 1e-2 /* relative change of A^T's 0.625 in the planted Winograd (1e-3 is within the bound of the 256-channel fwd: 0.82) */

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

/* 1. the matrices compute a correlation of m outputs from a WA tile and an r filter, in 2-D */
static void check_identity(int m, int r)
{
    double at[4 * WA], g[WA * 4], bt[WA * WA], d[WA * WA], f[16], u[WA * WA], v[WA * WA], err = 0;
    uint64_t s = 7;
    v_wino_matrices(m, r, at, g, bt);
    for (int i = 0; i < WA * WA; i++) d[i] = urand(&s);
    for (int i = 0; i < r * r; i++) f[i] = urand(&s);
    for (int a = 0; a < WA; a++) /* u = G f G^T, v = B^T d B */
        for (int b = 0; b < WA; b++) {
            u[a * WA + b] = v[a * WA + b] = 0;
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++) u[a * WA + b] += g[a * r + i] * f[i * r + j] * g[b * r + j];
            for (int i = 0; i < WA; i++)
                for (int j = 0; j < WA; j++) v[a * WA + b] += bt[a * WA + i] * d[i * WA + j] * bt[b * WA + j];
        }
    for (int y = 0; y < m; y++)
        for (int x = 0; x < m; x++) {
            double w = 0, want = 0;
            for (int a = 0; a < WA; a++)
                for (int b = 0; b < WA; b++) w += at[y * WA + a] * u[a * WA + b] * v[a * WA + b] * at[x * WA + b];
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++) want += f[i * r + j] * d[(y + i) * WA + x + j];
            err = fmax(err, fabs(w - want));
        }
    TU_CHECKF(err < 1e-12, "F(%dx%d,%dx%d): Winograd of the matrices differs from the correlation by %.3g", m, m, r, r, err);
}

/* 2. oneDNN's constants are the matrices' entries (float32), and no entry is foreign to them */
static int has(const double *x, int n, double c)
{
    for (int i = 0; i < n; i++)
        if ((float)fabs(x[i]) == (float)c) return 1;
    return 0;
}

static void check_onednn_constants(void)
{
    static const double gi[] = {2.25, 0.390625, 0.87890625, 2.640625, 0.625, 1.5};
    static const double gw[] = {0.26890756302521, 0.688403361344538, 0.119514472455649, 0.430252100840336,
                                0.179271708683473, 1.13777777777778};
    static const double gww[] = {0.168067226890756, 0.403361344537815};
    static const double go[] = {0.625, 1.5, 0.390625, 2.25, 0.244140625, 3.375};
    double at[4 * WA], g[WA * 4], bt[WA * WA], at3[3 * WA], g4[WA * 4], bt3[WA * WA];
    v_wino_matrices(4, 3, at, g, bt), v_wino_matrices(3, 4, at3, g4, bt3);
    for (size_t i = 0; i < sizeof gw / sizeof *gw; i++) TU_CHECKF(has(g, WA * 3, gw[i]), "G lacks oneDNN's %.15g", gw[i]);
    for (size_t i = 0; i < sizeof gww / sizeof *gww; i++) TU_CHECKF(has(g4, WA * 4, gww[i]), "G(3,4) lacks oneDNN's %.15g", gww[i]);
    for (size_t i = 0; i < sizeof go / sizeof *go; i++) TU_CHECKF(has(at, 4 * WA, go[i]), "A^T lacks oneDNN's %g", go[i]);
    for (size_t i = 0; i < 4; i++) TU_CHECKF(has(at3, 3 * WA, go[i]), "A^T(3,4) lacks oneDNN's %g", go[i]);
    /* B^T's entries are 0, 1, oneDNN's input constants, or products of two of them (its shared
       sub-expressions: 1.40625 = 0.625 * 2.25, 0.5859375 = 1.5 * 0.390625) */
    for (int i = 0; i < WA * WA; i++) {
        double b = fabs(bt[i]);
        int ok = b == 0 || b == 1 || has(gi, 6, b);
        for (int p = 0; p < 6 && !ok; p++)
            for (int q = 0; q < 6 && !ok; q++) ok = gi[p] * gi[q] == b;
        TU_CHECKF(ok, "B^T entry %g is not one of oneDNN's input-transform constants", b);
        TU_CHECKF(bt[i] == bt3[i], "B^T differs between F(4,3) and F(3,4)");
    }
}

/* float32 copies of the matrices, A^T's 0.625 scaled by (1 + bump) */
static void fmats(int m, int r, float *at, float *g, float *bt, double bump)
{
    double dat[4 * WA], dg[WA * 4], dbt[WA * WA];
    v_wino_matrices(m, r, dat, dg, dbt);
    for (int i = 0; i < m * WA; i++) at[i] = (float)(fabs(dat[i]) == 0.625 ? dat[i] * (1 + bump) : dat[i]);
    for (int i = 0; i < WA * r; i++) g[i] = (float)dg[i];
    for (int i = 0; i < WA * WA; i++) bt[i] = (float)dbt[i];
}

/* t[a x a] = x[a x b] y[b x b] x^T, in float */
static void fsand(float *t, const float *x, const float *y, int a, int b)
{
    float tmp[WA * WA];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < b; j++) {
            float s = 0;
            for (int q = 0; q < b; q++) s += x[i * b + q] * y[q * b + j];
            tmp[i * b + j] = s;
        }
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++) {
            float s = 0;
            for (int q = 0; q < b; q++) s += tmp[i * b + q] * x[j * b + q];
            t[i * a + j] = s;
        }
}

static float at_(const float *x, int n, int c, int h, int w, int C, int H, int W)
{
    (void)n;
    return h >= 0 && h < H && w >= 0 && w < W ? x[(((size_t)n * C + c) * H + h) * W + w] : 0.0f;
}

/* fwd of a 3x3 pad-p stride-1 conv by float32 Winograd F(4x4,3x3): y[N][O][H][W] */
static void wino_fwd(float *y, const float *x, const float *w, const float *bias, int N, int C, int O, int H, int W,
                     int p, double bump)
{
    float at[4 * WA], g[WA * 3], bt[WA * WA];
    fmats(4, 3, at, g, bt, bump);
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int t = 0; t < th * tw; t++) {
                float acc[WA * WA] = {0}, out[16];
                for (int c = 0; c < C; c++) {
                    float d[WA * WA], u[WA * WA], v[WA * WA];
                    for (int i = 0; i < WA; i++)
                        for (int j = 0; j < WA; j++) d[i * WA + j] = at_(x, n, c, 4 * (t / tw) + i - p, 4 * (t % tw) + j - p, C, H, W);
                    fsand(u, g, w + ((size_t)o * C + c) * 9, WA, 3);
                    fsand(v, bt, d, WA, WA);
                    for (int e = 0; e < WA * WA; e++) acc[e] += u[e] * v[e];
                }
                fsand(out, at, acc, 4, WA);
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        int yy = 4 * (t / tw) + i, xx = 4 * (t % tw) + j;
                        if (yy < H && xx < W) y[(((size_t)n * O + o) * H + yy) * W + xx] = out[i * 4 + j] + (bias ? bias[o] : 0.0f);
                    }
            }
}

/* bwd_weights by float32 Winograd F(3x3,4x4): dw[O][C][3][3] */
static void wino_bwdw(float *dw, const float *x, const float *dy, int N, int C, int O, int H, int W, int p, double bump)
{
    float at[3 * WA], g[WA * 4], bt[WA * WA];
    fmats(3, 4, at, g, bt, bump);
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++) {
            float acc[WA * WA] = {0}, out[9];
            for (int n = 0; n < N; n++)
                for (int t = 0; t < th * tw; t++) {
                    float d[WA * WA], f[16], u[WA * WA], v[WA * WA];
                    for (int i = 0; i < WA; i++)
                        for (int j = 0; j < WA; j++) d[i * WA + j] = at_(x, n, c, 4 * (t / tw) + i - p, 4 * (t % tw) + j - p, C, H, W);
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) f[i * 4 + j] = at_(dy, n, o, 4 * (t / tw) + i, 4 * (t % tw) + j, O, H, W);
                    fsand(u, g, f, WA, 4);
                    fsand(v, bt, d, WA, WA);
                    for (int e = 0; e < WA * WA; e++) acc[e] += u[e] * v[e];
                }
            fsand(out, at, acc, 3, WA);
            memcpy(dw + ((size_t)o * C + c) * 9, out, sizeof out);
        }
}

/* exact (double) conv fwd and bwd_weights of the same problem */
static void exact_fwd(double *y, const float *x, const float *w, const float *bias, int N, int C, int O, int H, int W, int p)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++) {
                    double s = bias ? bias[o] : 0;
                    for (int c = 0; c < C; c++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++)
                                s += (double)w[((size_t)o * C + c) * 9 + i * 3 + j] * at_(x, n, c, yy + i - p, xx + j - p, C, H, W);
                    y[(((size_t)n * O + o) * H + yy) * W + xx] = s;
                }
}

static void exact_bwdw(double *dw, const float *x, const float *dy, int N, int C, int O, int H, int W, int p)
{
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double s = 0;
                    for (int n = 0; n < N; n++)
                        for (int yy = 0; yy < H; yy++)
                            for (int xx = 0; xx < W; xx++)
                                s += (double)dy[(((size_t)n * O + o) * H + yy) * W + xx] * at_(x, n, c, yy + i - p, xx + j - p, C, H, W);
                    dw[((size_t)o * C + c) * 9 + i * 3 + j] = s;
                }
}

/* max over elements of |got - want| / (eps M + u|want|); the count beyond 1 into *beyond */
static double worst(const float *got, const double *want, const float *M, double eps, size_t n, size_t *beyond)
{
    double r = 0;
    *beyond = 0;
    for (size_t i = 0; i < n; i++) {
        double b = eps * M[i] + V_U * fabs(want[i]), e = fabs(got[i] - want[i]) / b;
        if (!(e <= 1)) (*beyond)++;
        r = fmax(r, e);
    }
    return r;
}

static void fill(float *x, size_t n, uint64_t seed, int relu)
{
    for (size_t i = 0; i < n; i++) {
        double v = urand(&seed);
        x[i] = (float)(relu ? fmax(v, 0) : v);
    }
}

/* 3. and 4. on one conv: N images, C -> O channels, H x W, pad 1 */
static void check_conv(int N, int C, int O, int H, int W)
{
    anx_layer_desc l = {.op = ANX_OP_CONV2D, .n = N, .ic = C, .ih = H, .iw = W, .oc = O, .oh = H, .ow = W, .kh = 3,
                        .kw = 3, .stride = 1, .pad = 1};
    snprintf(l.name, sizeof l.name, "conv");
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * O * H * W, nw = (size_t)O * C * 9;
    float *x = v_alloc(nx), *w = v_alloc(nw), *b = v_alloc(O), *dy = v_alloc(ny), *y = v_alloc(ny), *dx = v_alloc(nx),
          *dw = v_alloc(nw), *wr = v_alloc(nw), *M;
    double *ye = malloc(ny * sizeof *ye), *dxe = malloc(nx * sizeof *dxe), *dwe = malloc(nw * sizeof *dwe);
    fill(x, nx, 1, 1), fill(w, nw, 2, 0), fill(b, O, 3, 0), fill(dy, ny, 4, 0);
    for (size_t i = 0; i < nw; i++) w[i] *= 0.05f;
    /* bwd_data is the fwd of diff_dst with W^T rotated (pad 3 - 1 - 1 = 1) */
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) wr[((size_t)c * O + o) * 9 + 8 - k] = w[((size_t)o * C + c) * 9 + k];
    v_in in = {.src = x, .weights = w, .bias = b, .diff_dst = dy, .algo = V_WINO_F43};
    TU_CHECK(v_wino_applies(V_WINO_F43, &l, ANX_FWD) && !v_wino_applies(NULL, &l, ANX_FWD) && !v_wino_applies("x", &l, ANX_FWD));
    exact_fwd(ye, x, w, b, N, C, O, H, W, 1), exact_fwd(dxe, dy, wr, NULL, N, O, C, H, W, 1);
    exact_bwdw(dwe, x, dy, N, C, O, H, W, 1);
    const char *dn[3] = {"fwd", "bwd_data", "bwd_weights"};
    anx_dir dirs[3] = {ANX_FWD, ANX_BWD_DATA, ANX_BWD_WEIGHTS};
    for (int k = 0; k < 3; k++) {
        double eps = v_wino_magnitudes(&l, dirs[k], &in, &M, 2), r[2];
        size_t n = k == 0 ? ny : k == 1 ? nx : nw, beyond[2];
        const double *want = k == 0 ? ye : k == 1 ? dxe : dwe;
        float *got = k == 0 ? y : k == 1 ? dx : dw;
        for (int planted = 0; planted < 2; planted++) {
            double bump = planted ? PLANT : 0;
            if (k == 0) wino_fwd(y, x, w, b, N, C, O, H, W, 1, bump);
            if (k == 1) wino_fwd(dx, dy, wr, NULL, N, O, C, H, W, 1, bump);
            if (k == 2) wino_bwdw(dw, x, dy, N, C, O, H, W, 1, bump);
            r[planted] = worst(got, want, M, eps, n, &beyond[planted]);
        }
        printf("test_wino_bound: %s C=%d O=%d %dx%d: eps %.3g (%.0f u), float32 Winograd worst error/bound %.3g; with 0.625 off by %g: %.3g (%zu of %zu beyond)\n",
               dn[k], C, O, H, W, eps, eps / V_U, r[0], PLANT, r[1], beyond[1], n);
        TU_CHECKF(beyond[0] == 0, "%s: float32 Winograd beyond the derived bound on %zu of %zu elements (worst %.3g)", dn[k], beyond[0], n, r[0]);
        TU_CHECKF(beyond[1] > 0, "%s: a transform constant off by %g is within the bound (worst %.3g): vacuous", dn[k], PLANT, r[1]);
        free(M);
    }
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(wr), free(ye), free(dxe), free(dwe);
}

int main(void)
{
    check_identity(4, 3);
    check_identity(3, 4);
    check_onednn_constants();
    check_conv(1, 32, 4, 6, 7);     /* partial tiles */
    check_conv(2, 256, 8, 13, 13); /* conv3's channels, conv3-5's 13x13 */
    return tu_finish("test_wino_bound");
}
