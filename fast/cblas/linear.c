/* fast/cblas/linear.c — Linear layers as serial sgemms over fixed tiles of the output, the tiles
 * split over the threads: the tiles are constants, so the bits do not depend on the thread count. */
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "fast/cblas/cblas_internal.h"

/* Columns (fwd: of dst, bwd_data: of diff_src) and rows (bwd_weights: of diff_w) per tile. */
enum { CB_LIN_FWD_COLS = 256, CB_LIN_BWD_COLS = 512, CB_LIN_BWW_ROWS = 64 };

static int team(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }
static int tile_len(int total, int at, int tile) { return total - at < tile ? total - at : tile; }

/* dst [n, oc] = src [n, k] . w^T [k, oc] + b: dst starts as the bias rows, beta = 1 */
void anx_f32_linear_fwd__cblas_sgemm(float *dst, const float *src, const float *w, const float *b, int n, int k,
                                     int oc, int threads)
{
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * oc, b, (size_t)oc * sizeof *dst);
    const int tiles = (oc + CB_LIN_FWD_COLS - 1) / CB_LIN_FWD_COLS;
#pragma omp parallel for schedule(static) num_threads(team(threads))
    for (int t = 0; t < tiles; t++) {
        const int o0 = t * CB_LIN_FWD_COLS;
        cb_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, tile_len(oc, o0, CB_LIN_FWD_COLS), k, 1.0f, src, k,
                    w + (size_t)o0 * k, k, 1.0f, dst + o0, oc);
    }
}

/* diff_src [n, k] = diff_dst [n, oc] . w [oc, k] */
void anx_f32_linear_bwd_data__cblas_sgemm(float *diff_src, const float *diff_dst, const float *w, int n, int k,
                                          int oc, int threads)
{
    const int tiles = (k + CB_LIN_BWD_COLS - 1) / CB_LIN_BWD_COLS;
#pragma omp parallel for schedule(static) num_threads(team(threads))
    for (int t = 0; t < tiles; t++) {
        const int k0 = t * CB_LIN_BWD_COLS;
        cb_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, tile_len(k, k0, CB_LIN_BWD_COLS), oc, 1.0f,
                    diff_dst, oc, w + k0, k, 0.0f, diff_src + k0, k);
    }
}

/* diff_w [oc, k] = diff_dst^T [oc, n] . src [n, k]; diff_b [oc] = column sums of diff_dst in
 * row order (a plain loop: n terms, ref's order and bits) */
void anx_f32_linear_bwd_weights__cblas_sgemm(float *diff_w, float *diff_b, const float *src, const float *diff_dst,
                                             int n, int k, int oc, int threads)
{
    const int tiles = (oc + CB_LIN_BWW_ROWS - 1) / CB_LIN_BWW_ROWS;
#pragma omp parallel for schedule(static) num_threads(team(threads))
    for (int t = 0; t < tiles; t++) {
        const int o0 = t * CB_LIN_BWW_ROWS;
        cb_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, tile_len(oc, o0, CB_LIN_BWW_ROWS), k, n, 1.0f,
                    diff_dst + o0, oc, src, k, 0.0f, diff_w + (size_t)o0 * k, k);
    }
    for (int o = 0; o < oc; o++) {
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += diff_dst[(size_t)i * oc + o];
        diff_b[o] = s;
    }
}
