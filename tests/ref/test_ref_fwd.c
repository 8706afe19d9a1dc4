/* test_ref_fwd: tiny cases of every ref kernel worked out by hand (the arithmetic is in the
 * comments), plus PyTorch's tie and NaN rules for ReLU and MaxPool2d and the loss's stability. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref/ref.h"
#include "testutil.h"

/* A NaN-prefilled, guarded copy of vals. */
static float *buf_of(const float *vals, size_t n, const char *what)
{
    float *p = tu_alloc(n, what);
    memcpy(p, vals, n * sizeof *p);
    return p;
}

static const float img3x3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* 1x1x3x3: rows 1 2 3 / 4 5 6 / 7 8 9 */

static void test_conv_hand(void)
{
    /* 2x2 kernel [[1,2],[3,4]], bias 0.5, stride 1, pad 0 on img3x3 -> 2x2:
       (0,0): 1*1 + 2*2 + 3*4 + 4*5 = 37   (0,1): 1*2 + 2*3 + 3*5 + 4*6 = 47
       (1,0): 1*4 + 2*5 + 3*7 + 4*8 = 67   (1,1): 1*5 + 2*6 + 3*8 + 4*9 = 77, each + 0.5 */
    const float w[4] = {1, 2, 3, 4}, b[1] = {0.5f}, want[4] = {37.5f, 47.5f, 67.5f, 77.5f};
    float *src = buf_of(img3x3, 9, "src"), *dst = tu_alloc(4, "dst");
    anx_f32_conv2d_fwd__ref(dst, src, w, b, 1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 0);
    tu_expect_bitwise(dst, want, 4, "conv2d fwd 2x2 s1 p0");

    /* bwd_data with diff_dst = ones(2x2): each input gets the kernel taps that cover it:
       corners 1 | 2 | 4 on the diagonal ends... row by row:
       (0,0) w00 = 1; (0,1) w01 + w00 = 3; (0,2) w01 = 2
       (1,0) w10 + w00 = 4; (1,1) all four = 10; (1,2) w11 + w01 = 6
       (2,0) w10 = 3; (2,1) w11 + w10 = 7; (2,2) w11 = 4 */
    const float ones[4] = {1, 1, 1, 1}, want_ds[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
    float *ds = tu_alloc(9, "diff_src");
    anx_f32_conv2d_bwd_data__ref(ds, ones, w, 1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 0);
    tu_expect_bitwise(ds, want_ds, 9, "conv2d bwd_data 2x2 s1 p0");

    /* bwd_weights with diff_dst = ones: dw[ky][kx] = sum of the 2x2 input block at (ky, kx):
       (0,0) 1+2+4+5 = 12; (0,1) 2+3+5+6 = 16; (1,0) 4+5+7+8 = 24; (1,1) 5+6+8+9 = 28; db = 4 */
    const float want_dw[4] = {12, 16, 24, 28}, want_db[1] = {4};
    float *dw = tu_alloc(4, "diff_w"), *db = tu_alloc(1, "diff_b");
    anx_f32_conv2d_bwd_weights__ref(dw, db, src, ones, 1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 0);
    tu_expect_bitwise(dw, want_dw, 4, "conv2d bwd_weights 2x2 s1 p0");
    tu_expect_bitwise(db, want_db, 1, "conv2d bwd_bias 2x2 s1 p0");

    /* 3x3 kernel of ones, no bias, stride 2, pad 1 -> (3 - 3 + 2)/2 + 1 = 2x2 outputs whose
       windows cover input rows/cols {-1,0,1} and {1,2,3}; only the in-range taps count:
       (0,0) rows 0-1, cols 0-1: 1+2+4+5 = 12; (0,1) rows 0-1, cols 1-2: 2+3+5+6 = 16
       (1,0) rows 1-2, cols 0-1: 4+5+7+8 = 24; (1,1) rows 1-2, cols 1-2: 5+6+8+9 = 28 */
    const float w9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, want_p[4] = {12, 16, 24, 28};
    anx_f32_conv2d_fwd__ref(dst, src, w9, NULL, 1, 1, 3, 3, 1, 2, 2, 3, 3, 2, 1);
    tu_expect_bitwise(dst, want_p, 4, "conv2d fwd 3x3 s2 p1");
    /* and back: input (r, c) is seen by the outputs whose windows hold it: the centre row/col 1
       by both, rows/cols 0 and 2 by one each -> counts 1 2 1 / 2 4 2 / 1 2 1 */
    const float want_dsp[9] = {1, 2, 1, 2, 4, 2, 1, 2, 1};
    anx_f32_conv2d_bwd_data__ref(ds, ones, w9, 1, 1, 3, 3, 1, 2, 2, 3, 3, 2, 1);
    tu_expect_bitwise(ds, want_dsp, 9, "conv2d bwd_data 3x3 s2 p1");
    tu_free(src), tu_free(dst), tu_free(ds), tu_free(dw), tu_free(db);
}

static void test_linear_hand(void)
{
    /* x = [1, 2, 3], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1]:
       y0 = 1 - 3 + 0.5 = -1.5; y1 = 2 + 2 - 1 = 3 */
    const float x[3] = {1, 2, 3}, w[6] = {1, 0, -1, 2, 1, 0}, b[2] = {0.5f, -1}, want[2] = {-1.5f, 3};
    float *y = tu_alloc(2, "dst");
    anx_f32_linear_fwd__ref(y, x, w, b, 1, 3, 2);
    tu_expect_bitwise(y, want, 2, "linear fwd");
    /* g = [1, -2]: dx = 1*[1,0,-1] - 2*[2,1,0] = [-3, -2, -1]; dW = g^T x = [[1,2,3],[-2,-4,-6]]; db = g */
    const float g[2] = {1, -2}, want_dx[3] = {-3, -2, -1}, want_dw[6] = {1, 2, 3, -2, -4, -6};
    float *dx = tu_alloc(3, "diff_src"), *dw = tu_alloc(6, "diff_w"), *db = tu_alloc(2, "diff_b");
    anx_f32_linear_bwd_data__ref(dx, g, w, 1, 3, 2);
    anx_f32_linear_bwd_weights__ref(dw, db, x, g, 1, 3, 2);
    tu_expect_bitwise(dx, want_dx, 3, "linear bwd_data");
    tu_expect_bitwise(dw, want_dw, 6, "linear bwd_weights");
    tu_expect_bitwise(db, g, 2, "linear bwd_bias");
    /* batch of 2 sums over the batch: x2 = [0, 1, 0], g2 = [3, 0]: dW += [[0,3,0],[0,0,0]] */
    const float x2[6] = {1, 2, 3, 0, 1, 0}, g2[4] = {1, -2, 3, 0};
    const float want_dw2[6] = {1, 5, 3, -2, -4, -6}, want_db2[2] = {4, -2};
    anx_f32_linear_bwd_weights__ref(dw, db, x2, g2, 2, 3, 2);
    tu_expect_bitwise(dw, want_dw2, 6, "linear bwd_weights batch 2");
    tu_expect_bitwise(db, want_db2, 2, "linear bwd_bias batch 2");
    tu_free(y), tu_free(dx), tu_free(dw), tu_free(db);
}

static void test_relu_rules(void)
{
    /* torch.relu (as torch 1.13 prints it): negatives -> +0; -0, +0 and NaN pass unchanged */
    const float x[5] = {-1.0f, -0.0f, 2.0f, NAN, 0.0f}, want[5] = {0, -0.0f, 2.0f, NAN, 0};
    float *y = tu_alloc(5, "dst");
    anx_f32_relu_fwd__ref(y, x, 5);
    tu_expect_bitwise(y, want, 5, "relu fwd");
    /* threshold_backward(g, y, 0): g where y > 0 (or y is NaN), else 0 */
    const float g[5] = {10, 20, 30, 40, 50}, want_g[5] = {0, 0, 30, 40, 0};
    float *dx = tu_alloc(5, "diff_src");
    anx_f32_relu_bwd_data__ref(dx, g, y, 5);
    tu_expect_bitwise(dx, want_g, 5, "relu bwd");
    tu_free(y), tu_free(dx);
}

static void test_maxpool_rules(void)
{
    /* MaxPool2d(3, 2) on 5x5 -> 2x2, windows at rows/cols {0-2, 2-4}.
         row0:  1  9  9  0  0      window (0,0): max 9 twice, at (0,1) and (0,2): the first wins
         row1:  0  0  0  0  0      window (0,1): 9 at (0,2) is its first maximum (shared element)
         row2:  0  0  5  0  0      window (1,0): max 5 at (2,2)
         row3:  0  0  0 NaN 0      window (1,1): NaNs at (3,3) and (4,4): the last NaN in
         row4: -1 -1  0  0 NaN       row-major order, (4,4), wins and the output is NaN
       diff_dst [[1, 2], [4, 8]]: (0,1) gets 1; (0,2) gets 2; (2,2) gets 4; (4,4) gets 8. */
    const float x[25] = {1, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, NAN, 0, -1, -1, 0, 0, NAN};
    const float want[4] = {9, 9, 5, NAN};
    float *src = buf_of(x, 25, "src"), *y = tu_alloc(4, "dst"), *dx = tu_alloc(25, "diff_src");
    anx_f32_maxpool_fwd__ref(y, src, 1, 1, 5, 5, 2, 2, 3, 3, 2);
    tu_expect_bitwise(y, want, 4, "maxpool fwd ties and NaN");
    const float g[4] = {1, 2, 4, 8};
    float want_dx[25] = {0};
    want_dx[1] = 1, want_dx[2] = 2, want_dx[12] = 4, want_dx[24] = 8;
    anx_f32_maxpool_bwd_data__ref(dx, g, src, 1, 1, 5, 5, 2, 2, 3, 3, 2);
    tu_expect_bitwise(dx, want_dx, 25, "maxpool bwd ties and NaN");

    /* all -inf: output -inf, the gradient goes to the window's first element */
    const float ninf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, want1[1] = {-INFINITY};
    const float g1[1] = {3}, want_dx1[4] = {3, 0, 0, 0};
    float *s1 = buf_of(ninf, 4, "src -inf"), *y1 = tu_alloc(1, "dst -inf"), *dx1 = tu_alloc(4, "diff_src -inf");
    anx_f32_maxpool_fwd__ref(y1, s1, 1, 1, 2, 2, 1, 1, 2, 2, 2);
    anx_f32_maxpool_bwd_data__ref(dx1, g1, s1, 1, 1, 2, 2, 1, 1, 2, 2, 2);
    tu_expect_bitwise(y1, want1, 1, "maxpool fwd all -inf");
    tu_expect_bitwise(dx1, want_dx1, 4, "maxpool bwd all -inf");
    tu_free(src), tu_free(y), tu_free(dx), tu_free(s1), tu_free(y1), tu_free(dx1);
}

static void test_dropout_hand(void)
{
    /* -2 * 0 is -0 in IEEE arithmetic, and in PyTorch */
    const float x[4] = {1, -2, 3, -4}, m[4] = {2, 0, 2, 0}, want[4] = {2, -0.0f, 6, -0.0f};
    float *y = tu_alloc(4, "dst"), *dx = tu_alloc(4, "diff_src");
    anx_f32_dropout_fwd__ref(y, x, m, 4);
    tu_expect_bitwise(y, want, 4, "dropout fwd");
    anx_f32_dropout_bwd_data__ref(dx, x, m, 4); /* diff_dst = x: the same products */
    tu_expect_bitwise(dx, want, 4, "dropout bwd");
    tu_free(y), tu_free(dx);
}

static void test_loss_hand(void)
{
    /* row 0: logits [0, 0, 0], target 1 -> log 3 = 1.0986122886681098
       row 1: logits [1, 2, 3], target 2 -> log(e + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)
              = log(1.5032147244080551) = 0.40760596444437566
       mean = 0.75310912655624273 */
    const float x[6] = {0, 0, 0, 1, 2, 3};
    const int64_t t[2] = {1, 2};
    float loss = anx_f32_loss_fwd__ref(x, t, 2, 3);
    TU_CHECKF(loss == (float)0.75310912655624273, "loss fwd: got %.9g want %.9g", loss, (float)0.75310912655624273);
    /* softmax row 0 = 1/3 each; row 1 = [e^-2, e^-1, 1] / 1.5032147244080551
       = [0.090030573170380462, 0.24472847105479764, 0.66524095577481771]; minus onehot, / n = 2 */
    const float want[6] = {(float)(1.0 / 3 / 2), (float)((1.0 / 3 - 1) / 2), (float)(1.0 / 3 / 2),
                           (float)(0.090030573170380462 / 2), (float)(0.24472847105479764 / 2),
                           (float)((0.66524095577481771 - 1) / 2)};
    float *dx = tu_alloc(6, "diff_src");
    anx_f32_loss_bwd_data__ref(dx, x, t, 2, 3);
    /* the decimal constants above are correct to 17 digits; the kernel rounds a double once */
    tu_expect_close(dx, want, 6, 0.0, 0x1p-23, "loss bwd");

    /* stability: logits [1000, 0]: target 0 -> log(1 + e^-1000) = 0; target 1 -> 1000 */
    const float big[2] = {1000, 0};
    const int64_t t0[1] = {0}, t1[1] = {1};
    TU_CHECKF(anx_f32_loss_fwd__ref(big, t0, 1, 2) == 0.0f, "loss of a 1000-margin hit is not 0");
    TU_CHECKF(anx_f32_loss_fwd__ref(big, t1, 1, 2) == 1000.0f, "loss of a 1000-margin miss is not 1000");
    float *db = tu_alloc(2, "diff_src big");
    anx_f32_loss_bwd_data__ref(db, big, t1, 1, 2);
    const float want_b[2] = {1, -1};
    tu_expect_bitwise(db, want_b, 2, "loss bwd, 1000 margin");

    /* a target out of range is never read through: NaN loss, NaN gradient row */
    int64_t *bad = malloc(sizeof *bad);
    *bad = 3;
    TU_CHECK(isnan(anx_f32_loss_fwd__ref(x, bad, 1, 3)));
    anx_f32_loss_bwd_data__ref(dx, x, bad, 1, 3);
    TU_CHECK(isnan(dx[0]) && isnan(dx[1]) && isnan(dx[2]));
    *bad = -1;
    TU_CHECK(isnan(anx_f32_loss_fwd__ref(x, bad, 1, 3)));
    free(bad);
    tu_free(dx), tu_free(db);
}

int main(void)
{
    test_conv_hand();
    test_linear_hand();
    test_relu_rules();
    test_maxpool_rules();
    test_dropout_hand();
    test_loss_hand();
    return tu_finish("test_ref_fwd");
}
