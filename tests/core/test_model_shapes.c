/* Shape inference N = floor((W - F + 2P) / S) + 1 through Alexnet, and the refusals. */
#include <string.h>

#include "anx/model.h"
#include "testutil.h"

static void expect_layer(const anx_model *m, const char *name, int c, int h, int w)
{
    int i = anx_model_find_layer(m, name);
    TU_CHECKF(i >= 0, "layer %s exists", name);
    if (i < 0) return;
    const anx_layer_desc *l = &m->layers[i];
    TU_CHECKF(l->oc == c && l->oh == h && l->ow == w, "%s: %dx%dx%d, want %dx%dx%d", name, l->oc,
              l->oh, l->ow, c, h, w);
}

static void test_tutorial_shapes(void)
{
    anx_model m;
    char err[256];
    anx_model_config cfg = {3, 1000, 1, 227};
    TU_CHECK(anx_model_init(&m, &cfg, err, sizeof err) == 0);
    /* the torchsummary table of the tutorial (../shared/seeds) */
    expect_layer(&m, "Conv2d-1", 96, 55, 55);
    expect_layer(&m, "MaxPool2d-3", 96, 27, 27);
    expect_layer(&m, "Conv2d-4", 256, 27, 27);
    expect_layer(&m, "MaxPool2d-6", 256, 13, 13);
    expect_layer(&m, "Conv2d-9", 384, 13, 13);
    expect_layer(&m, "MaxPool2d-13", 256, 6, 6);
    expect_layer(&m, "Linear-14", 4096, 1, 1);
    expect_layer(&m, "Dropout-19", 4096, 1, 1);
    expect_layer(&m, "Linear-20", 1000, 1, 1);
    TU_CHECK(anx_model_param_count(&m) == 62378344u);
    TU_CHECK(strcmp(m.params[0].name, "conv.0.weight") == 0 && m.params[0].count == 34848u);
    TU_CHECK(strcmp(m.params[15].name, "fc.6.bias") == 0 && m.params[15].count == 1000u);
    int p = anx_model_find_param(&m, "fc.0.weight");
    TU_CHECK(p >= 0 && m.params[p].fan_in == 9216 && m.params[p].shape[0] == 4096 &&
             m.params[p].shape[1] == 9216 && m.params[p].ndim == 2);
    TU_CHECK(m.loss.op == ANX_OP_LOSS && m.loss.ic == 1000 && m.loss.n == 1);
}

static void test_sizes_that_fit(void)
{
    /* pool3 gives 6 when pool2 gives 13 or 14, i.e. pool1 27..30, conv1 55..62, input 227..258
       (DESIGN.md says 227..230; floor division makes the whole range 227..258 fit) */
    for (int hw = 227; hw <= 258; hw++) {
        anx_model m;
        char err[256];
        anx_model_config cfg = {1, 10, 3, hw};
        TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "input %d refused: %s", hw, err);
    }
}

static void test_refusals(void)
{
    struct { int hw; const char *must_name; } bad[] = {
        {226, "Linear-14"}, /* conv1 -> 54 -> pool 26 -> 26 -> pool 12 -> 12 -> pool 5: 256x5x5 */
        {259, "Linear-14"}, /* conv1 63 -> pool 31 -> pool 15 -> pool 7: 256x7x7 */
        {10, "Conv2d-1"},   /* smaller than the 11x11 window */
        {40, "MaxPool2d-13"}, /* conv1 8 -> pool 3 -> pool 1 -> pool13's 3x3 window does not fit */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        anx_model m;
        char err[256] = "";
        anx_model_config cfg = {3, 5, 2, bad[i].hw};
        int rc = anx_model_init(&m, &cfg, err, sizeof err);
        TU_CHECKF(rc != 0, "input %d must be refused", bad[i].hw);
        TU_CHECKF(strstr(err, bad[i].must_name) != NULL, "error for %d names %s: '%s'", bad[i].hw,
                  bad[i].must_name, err);
    }
    anx_model m;
    char err[256] = "";
    anx_model_config zero = {3, 0, 2, 227};
    TU_CHECK(anx_model_init(&m, &zero, err, sizeof err) != 0 && strstr(err, "classes") != NULL);
}

/* anx_desc_flops_unpadded against counts worked out by hand for each axis: at 27 outputs with
 * k5 p2 the taps inside are 3 + 4 + 23 * 5 + 4 + 3 = 129; at 13 with k3 p1, 2 + 11 * 3 + 2 = 37;
 * conv1 (pad 0) and the other layers keep anx_desc_flops. */
static void test_unpadded_flops(void)
{
    anx_model m;
    char err[256];
    anx_model_config cfg = {3, 5, 2, 227};
    TU_CHECK(anx_model_init(&m, &cfg, err, sizeof err) == 0);
    const anx_layer_desc *c1 = &m.layers[anx_model_find_layer(&m, "Conv2d-1")];
    const anx_layer_desc *c2 = &m.layers[anx_model_find_layer(&m, "Conv2d-4")];
    const anx_layer_desc *c4 = &m.layers[anx_model_find_layer(&m, "Conv2d-9")];
    const anx_layer_desc *fc = &m.layers[anx_model_find_layer(&m, "Linear-14")];
    TU_CHECK(anx_desc_flops_unpadded(c1, ANX_FWD) == anx_desc_flops(c1, ANX_FWD));
    TU_CHECK(anx_desc_flops_unpadded(c2, ANX_BWD_DATA) == 2.0 * 2 * 256 * 96 * 129 * 129);
    TU_CHECK(anx_desc_flops_unpadded(c4, ANX_FWD) == 2.0 * 2 * 384 * 384 * 37 * 37);
    TU_CHECK(anx_desc_flops_unpadded(fc, ANX_BWD_WEIGHTS) == anx_desc_flops(fc, ANX_BWD_WEIGHTS));
}

int main(void)
{
    test_unpadded_flops();
    test_tutorial_shapes();
    test_sizes_that_fit();
    test_refusals();
    return tu_finish("test_model_shapes");
}
