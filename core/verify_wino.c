/* The rounding-error bound of a Winograd convolution (part of the comparison module: called by
 * verify_judge.c for the rows whose backend reports transform_algorithm "Winograd F(4x4,3x3)").
 *
 * oneDNN 2.6's jit_wino_4x3 computes each 4x4 output tile of a 3x3 stride-1 convolution as
 *
 *     Y = A^T [ sum_k (G g_k G^T) (.) (B^T d_k B) ] A        (F(4x4,3x3), tiles of alpha = 6)
 *
 * with the Toom-Cook matrices of the points 0, +-5/8, +-3/2 and infinity (its constants: 0.625,
 * 1.5, 0.390625 = 0.625^2, 2.25, 0.87890625 = (0.625 1.5)^2, 2.640625 = 0.625^2 + 1.5^2, and the
 * non-dyadic 1/N_j of G such as 0.688403361344538).  bwd_data is the same on diff_dst with the
 * filter rotated by 180 degrees; bwd_weights is F(3x3,4x4): the 3x3 weight gradient of each tile
 * pair from a 4x4 diff_dst tile (G: 6x4) and a 6x6 src tile, summed over images and tiles.
 *
 * Each stage is a sum of products evaluated in float32, so (Higham, "Accuracy and Stability of
 * Numerical Algorithms", 2nd ed., 3.5, componentwise |fl(AB) - AB| <= gamma_n |A||B|; the same
 * first-order analysis as Barabasz, Anderson, Soodhalter, Gregg, ACM TOMS 46(4) 2020, kept
 * componentwise instead of in norms) an error made in one stage is carried by the later ones
 * through their |matrices|, and every stage's error is bounded by its own gamma times
 *
 *     W = |A^T| [ sum_k (|G||g_k||G^T|) (.) (|B^T||d_k||B|) ] |A|    (+ |bias| in fwd),
 *
 * so per output element  |fl(Y) - Y| <= (prod_s (1 + gamma(n_s)) - 1) W  with n_s the roundings
 * along one path of stage s: input transform 2 alpha = 12 (two 1-D passes of at most alpha terms),
 * filter transform 2 (r + 1) (two passes of r terms, plus the rounding of G's non-dyadic
 * constants to float32), the channel sum K (ic fwd, oc bwd_data, n * tiles bwd_weights: any
 * order), output transform 2 alpha (+1 for the bias in fwd).  gamma(n) = min(n u / (1 - n u),
 * gamma~(n)): the deterministic bound for the short transforms, the probabilistic one of
 * v_gamma (same lambda, same assumption as every other bound of the gate) for the long sum.
 * Assumptions: the tiles start at output (0, 0) (oneDNN's itiles x jtiles grid, zero padding
 * outside the input) and each transform row is evaluated as a sum of its non-zero terms without
 * cancelling factorisation (oneDNN's shared sub-expressions such as 0.625 (d3 - 2.25 d1) +
 * (d4 - 2.25 d2) keep |B^T||d| as their magnitude).  W is computed here in double from |inputs|.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/verify_internal.h"

#define WA 6 /* alpha = m + r - 1 for both F(4,3) and F(3,4) */

/* oneDNN 2.6 jit_wino_4x3's finite interpolation points (the sixth is infinity). */
static const double wino_pts[WA - 1] = {0, 0.625, -0.625, 1.5, -1.5};

void v_wino_matrices(int m, int r, double *at, double *g, double *bt)
{
    memset(at, 0, sizeof *at * m * WA), memset(g, 0, sizeof *g * WA * r), memset(bt, 0, sizeof *bt * WA * WA);
    for (int j = 0; j < WA; j++) {
        double c[WA + 1] = {1}, nj = 1; /* coefficients of prod_{l != j} (x - p_l), lowest first */
        int deg = 0;
        for (int l = 0; l < WA - 1; l++) {
            if (l == j) continue;
            for (int e = ++deg; e > 0; e--) c[e] = c[e - 1] - wino_pts[l] * c[e];
            c[0] *= -wino_pts[l];
            if (j < WA - 1) nj *= wino_pts[j] - wino_pts[l];
        }
        for (int e = 0; e <= deg; e++) bt[j * WA + e] = c[e];
        for (int i = 0; i < m; i++) at[i * WA + j] = j < WA - 1 ? pow(wino_pts[j], i) : i == m - 1;
        for (int k = 0; k < r; k++) g[j * r + k] = j < WA - 1 ? pow(wino_pts[j], k) / nj : k == r - 1;
    }
}

/* min of the deterministic and the probabilistic accumulation bound of n roundings */
static double wino_gamma(double n)
{
    double d = n * V_U / (1 - n * V_U), p = v_gamma(n);
    return d < p ? d : p;
}

double v_wino_eps(const anx_layer_desc *l, anx_dir dir)
{
    double k = dir == ANX_FWD ? l->ic : dir == ANX_BWD_DATA ? l->oc : (double)l->n * ((l->oh + 3) / 4) * ((l->ow + 3) / 4);
    double nf = dir == ANX_BWD_WEIGHTS ? 2 * (4 + 1) : 2 * (3 + 1), no = 2 * WA + (dir == ANX_FWD);
    return (1 + wino_gamma(2 * WA)) * (1 + wino_gamma(nf)) * (1 + wino_gamma(k)) * (1 + wino_gamma(no)) - 1;
}

int v_wino_applies(const char *algo, const anx_layer_desc *l, anx_dir dir)
{
    (void)dir;
    return algo && strcmp(algo, V_WINO_F43) == 0 && l->op == ANX_OP_CONV2D && l->kh == 3 && l->kw == 3 &&
           l->stride == 1;
}

/* t[a x c] = x[a x b] y[b x c] (all non-negative here) */
static void mm(double *t, const double *x, const double *y, int a, int b, int c)
{
    for (int i = 0; i < a; i++)
        for (int j = 0; j < c; j++) {
            double s = 0;
            for (int q = 0; q < b; q++) s += x[i * b + q] * y[q * c + j];
            t[i * c + j] = s;
        }
}

/* t[a x a] = x[a x b] y[b x b] x^T */
static void sandwich(double *t, const double *x, const double *y, int a, int b)
{
    double xt[WA * WA], tmp[WA * WA];
    for (int i = 0; i < a; i++)
        for (int q = 0; q < b; q++) xt[q * a + i] = x[i * b + q];
    mm(tmp, x, y, a, b, b);
    mm(t, tmp, xt, a, b, a);
}

static void absm(double *x, int n)
{
    for (int i = 0; i < n; i++) x[i] = fabs(x[i]);
}

/* |B^T| |d| |B| of the 6x6 tile of plane x[h x w] at (y0, x0), zero outside */
static void tile_in(double *v, const float *x, int h, int w, int y0, int x0, const double *bt)
{
    double d[WA * WA];
    for (int i = 0; i < WA; i++)
        for (int j = 0; j < WA; j++) {
            int y = y0 + i, xx = x0 + j;
            d[i * WA + j] = y >= 0 && y < h && xx >= 0 && xx < w ? fabs(x[(size_t)y * w + xx]) : 0;
        }
    sandwich(v, bt, d, WA, WA);
}

/* Convolution as a correlation: out[n][M][oh][ow] = sum_K sum_ij g(M, K, i, j) in[n][K][y+i-pad][x+j-pad]. */
typedef struct wino_corr {
    int n, M, K, ih, iw, oh, ow, pad, rot; /* rot: g(M,K,i,j) = W[K][M][2-i][2-j] (bwd_data), else W[M][K][i][j] */
} wino_corr;

/* W of each output of a 3x3 correlation (fwd, bwd_data) into out (float, [n][M][oh][ow]) */
static void wino_corr_mag(float *out, const wino_corr *c, const float *in, const float *w, const float *bias, int threads)
{
    double at[4 * WA], g[WA * 3], bt[WA * WA];
    v_wino_matrices(4, 3, at, g, bt), absm(at, 4 * WA), absm(g, WA * 3), absm(bt, WA * WA);
    int th = (c->oh + 3) / 4, tw = (c->ow + 3) / 4, nt = th * tw;
    float *ug = v_alloc((size_t)c->M * c->K * WA * WA), *vd = v_alloc((size_t)c->n * nt * c->K * WA * WA);
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (long mk = 0; mk < (long)c->M * c->K; mk++) {
        int m = (int)(mk / c->K), k = (int)(mk % c->K);
        double f[9], u[WA * WA];
        for (int i = 0; i < 9; i++)
            f[i] = fabs(c->rot ? w[((size_t)k * c->M + m) * 9 + 8 - i] : w[((size_t)m * c->K + k) * 9 + i]);
        sandwich(u, g, f, WA, 3);
        for (int e = 0; e < WA * WA; e++) ug[(size_t)mk * WA * WA + e] = (float)u[e];
    }
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (long nk = 0; nk < (long)c->n * c->K; nk++) {
        int s = (int)(nk / c->K), k = (int)(nk % c->K);
        const float *plane = in + ((size_t)s * c->K + k) * c->ih * c->iw;
        for (int t = 0; t < nt; t++) {
            double v[WA * WA];
            tile_in(v, plane, c->ih, c->iw, 4 * (t / tw) - c->pad, 4 * (t % tw) - c->pad, bt);
            for (int e = 0; e < WA * WA; e++) vd[(((size_t)s * nt + t) * c->K + k) * WA * WA + e] = (float)v[e];
        }
    }
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (long nm = 0; nm < (long)c->n * c->M; nm++) {
        int s = (int)(nm / c->M), m = (int)(nm % c->M);
        for (int t = 0; t < nt; t++) {
            double p[WA * WA] = {0}, y[16];
            const float *v = vd + ((size_t)s * nt + t) * c->K * WA * WA, *u = ug + (size_t)m * c->K * WA * WA;
            for (int k = 0; k < c->K; k++)
                for (int e = 0; e < WA * WA; e++) p[e] += (double)u[k * WA * WA + e] * v[k * WA * WA + e];
            sandwich(y, at, p, 4, WA);
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    int oy = 4 * (t / tw) + i, ox = 4 * (t % tw) + j;
                    if (oy < c->oh && ox < c->ow)
                        out[(((size_t)s * c->M + m) * c->oh + oy) * c->ow + ox] = (float)(y[i * 4 + j] + (bias ? fabs(bias[m]) : 0));
                }
        }
    }
    free(ug), free(vd);
}

/* W of each weight-gradient element (F(3x3,4x4)) into out (float, OIHW) */
static void wino_bwdw_mag(float *out, const anx_layer_desc *l, const float *x, const float *dy, int threads)
{
    double at[3 * WA], g[WA * 4], bt[WA * WA];
    v_wino_matrices(3, 4, at, g, bt), absm(at, 3 * WA), absm(g, WA * 4), absm(bt, WA * WA);
    int th = (l->oh + 3) / 4, tw = (l->ow + 3) / 4, nt = l->n * th * tw;
    float *ud = v_alloc((size_t)l->oc * nt * WA * WA), *vx = v_alloc((size_t)l->ic * nt * WA * WA);
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (int o = 0; o < l->oc; o++)
        for (int t = 0; t < nt; t++) {
            int s = t / (th * tw), ty = t % (th * tw) / tw, tx = t % tw;
            const float *plane = dy + ((size_t)s * l->oc + o) * l->oh * l->ow;
            double d[16], u[WA * WA];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    int y = 4 * ty + i, xx = 4 * tx + j;
                    d[i * 4 + j] = y < l->oh && xx < l->ow ? fabs(plane[(size_t)y * l->ow + xx]) : 0;
                }
            sandwich(u, g, d, WA, 4);
            for (int e = 0; e < WA * WA; e++) ud[((size_t)o * nt + t) * WA * WA + e] = (float)u[e];
        }
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (int c = 0; c < l->ic; c++)
        for (int t = 0; t < nt; t++) {
            int s = t / (th * tw), ty = t % (th * tw) / tw, tx = t % tw;
            double v[WA * WA];
            tile_in(v, x + ((size_t)s * l->ic + c) * l->ih * l->iw, l->ih, l->iw, 4 * ty - l->pad, 4 * tx - l->pad, bt);
            for (int e = 0; e < WA * WA; e++) vx[((size_t)c * nt + t) * WA * WA + e] = (float)v[e];
        }
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (long oc = 0; oc < (long)l->oc * l->ic; oc++) {
        int o = (int)(oc / l->ic), c = (int)(oc % l->ic);
        double p[WA * WA] = {0}, y[9];
        const float *u = ud + (size_t)o * nt * WA * WA, *v = vx + (size_t)c * nt * WA * WA;
        for (int t = 0; t < nt; t++)
            for (int e = 0; e < WA * WA; e++) p[e] += (double)u[t * WA * WA + e] * v[t * WA * WA + e];
        sandwich(y, at, p, 3, WA);
        for (int e = 0; e < 9; e++) out[(size_t)oc * 9 + e] = (float)y[e];
    }
    free(ud), free(vx);
}

double v_wino_magnitudes(const anx_layer_desc *l, anx_dir dir, const v_in *in, float **M, int threads)
{
    if (dir == ANX_BWD_WEIGHTS) {
        *M = v_alloc(anx_desc_plain_count(l, ANX_WEIGHTS));
        wino_bwdw_mag(*M, l, in->src, in->diff_dst, threads);
    } else {
        int fwd = dir == ANX_FWD;
        wino_corr c = {l->n, fwd ? l->oc : l->ic, fwd ? l->ic : l->oc, fwd ? l->ih : l->oh, fwd ? l->iw : l->ow,
                       fwd ? l->oh : l->ih, fwd ? l->ow : l->iw, fwd ? l->pad : l->kh - 1 - l->pad, !fwd};
        *M = v_alloc(anx_desc_plain_count(l, fwd ? ANX_DST : ANX_SRC));
        wino_corr_mag(*M, &c, fwd ? in->src : in->diff_dst, in->weights, fwd ? in->bias : NULL, threads);
    }
    return v_wino_eps(l, dir);
}

void v_impl_mark(anx_verify_row *r, const char *impl, const char *algo, const anx_layer_desc *l, anx_dir dir)
{
    if (v_wino_applies(algo, l, dir)) snprintf(r->impl, sizeof r->impl, "%s; bound %s", impl, algo);
    else snprintf(r->impl, sizeof r->impl, "%s", impl);
}
