/* test_backend_nonfinite — a NaN planted in one parameter reaches the loss on every backend, and
 * anx_net_first_nonfinite names the same layer as on ref.
 *
 * PyTorch propagates a NaN weight: the conv or linear output channel it feeds is NaN, relu
 * keeps NaN, max-pooling lets a NaN win, dropout's NaN * 0 is NaN, so the loss is NaN.  A backend
 * whose ReLU maps NaN to 0 (oneDNN 2.6's eltwise relu does) would train on silently.  The plant
 * goes through the API (anx_net_set_state): the CLI refuses NaN weights.
 * Alexnet(3, 10) at batch 1, train mode (dropout on); each plant is undone before the next.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "testutil.h"

#define PLANTS 5
/* Parameter and element: the first layer, a middle conv (its ReLU and pool follow), a bias, the
 * first Linear (dropout follows), the last layer. */
static const struct { const char *param; size_t index; } g_plants[PLANTS] = {
    {"conv.0.weight", 17}, {"conv.3.weight", 1234}, {"conv.10.bias", 5}, {"fc.0.weight", 777777}, {"fc.6.bias", 3},
};

/* want[p] = ref's first non-finite layer for plant p (-2: not known yet). */
static int g_want[PLANTS] = {-2, -2, -2, -2, -2};

static int forward(anx_net *net, const char *be, const char *what, float *loss, int *layer)
{
    if (anx_net_forward(net, 1, loss) != 0) {
        TU_CHECKF(0, "%s on %s: forward failed: %s", what, be, anx_net_error(net));
        return -1;
    }
    if (anx_net_first_nonfinite(net, layer) != 0) {
        TU_CHECKF(0, "%s on %s: first_nonfinite failed: %s", what, be, anx_net_error(net));
        return -1;
    }
    return 0;
}

static void check_backend(const anx_backend *be)
{
    const char *why = be->unavailable ? be->unavailable() : NULL;
    if (why) {
        printf("%s: skipped: %s\n", be->name, why);
        return;
    }
    const anx_model_config cfg = {3, 10, 1, 227};
    char err[256];
    anx_net *net = anx_net_create(be, &cfg, 2, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create(%s): %s", be->name, err);
    if (!net) return;
    const anx_model *m = anx_net_model(net);
    TU_CHECK(anx_net_init_params(net, 1) == 0);
    const size_t nin = anx_desc_plain_count(&m->layers[0], ANX_SRC);
    float *x = malloc(nin * sizeof *x);
    int64_t target[1];
    anx_rng_fill_u01(x, nin, anx_rng_key(2, "input", 0));
    anx_rng_fill_targets(target, 1, anx_rng_key(2, "target", 0), cfg.n_class);
    TU_CHECK(anx_net_set_input(net, x, target) == 0);
    free(x);

    float loss;
    int layer;
    if (forward(net, be->name, "no plant", &loss, &layer) == 0)
        TU_CHECKF(isfinite(loss) && layer == -1, "%s without a plant: loss %g, first non-finite layer %d", be->name,
                  loss, layer);
    for (int p = 0; p < PLANTS; p++) {
        const int pi = anx_model_find_param(m, g_plants[p].param);
        TU_CHECKF(pi >= 0 && g_plants[p].index < m->params[pi].count, "plant %s[%zu] not in the model",
                  g_plants[p].param, g_plants[p].index);
        if (pi < 0 || g_plants[p].index >= m->params[pi].count) continue;
        float *w = malloc(m->params[pi].count * sizeof *w);
        anx_net_get_state(net, ANX_PARAM, pi, w);
        const float saved = w[g_plants[p].index];
        w[g_plants[p].index] = NAN;
        anx_net_set_state(net, ANX_PARAM, pi, w);
        char what[64];
        snprintf(what, sizeof what, "NaN in %s[%zu]", g_plants[p].param, g_plants[p].index);
        if (forward(net, be->name, what, &loss, &layer) == 0) {
            const int fed = m->params[pi].layer; /* the layer that reads the parameter */
            printf("%s: %s: loss %g, first non-finite %s\n", be->name, what, loss,
                   layer >= 0 && layer < ANX_NUM_LAYERS ? m->layers[layer].name : layer == ANX_NUM_LAYERS ? "loss" : "none");
            TU_CHECKF(!isfinite(loss), "%s: %s: the loss is finite (%g)", be->name, what, loss);
            TU_CHECKF(layer == fed, "%s: %s: first non-finite layer %d, the parameter feeds %s (%d)", be->name, what,
                      layer, m->layers[fed].name, fed);
            if (g_want[p] == -2) g_want[p] = layer; /* the reference runs first */
            TU_CHECKF(layer == g_want[p], "%s: %s: first non-finite layer %d, the reference says %d", be->name, what, layer,
                      g_want[p]);
        }
        w[g_plants[p].index] = saved;
        anx_net_set_state(net, ANX_PARAM, pi, w);
        free(w);
    }
    if (forward(net, be->name, "plants undone", &loss, &layer) == 0)
        TU_CHECKF(isfinite(loss) && layer == -1, "%s after the plants were undone: loss %g, layer %d", be->name, loss,
                  layer);
    anx_net_destroy(net);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: test_backend_nonfinite\n"
               "  Plants a NaN in one parameter at a time (through anx_net_set_state) and checks on every\n"
               "  backend of the build that the loss is non-finite and that anx_net_first_nonfinite names\n"
               "  the layer that reads the parameter, as on the reference.  Backends that cannot run here are skipped.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "test_backend_nonfinite: unknown argument: %s (see --help)\n", argv[1]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* the reference first: the others are held to its answers */
    const anx_backend *ref = anx_backend_reference();
    check_backend(ref);
    for (const anx_backend *const *b = anx_backends(); *b; b++)
        if (*b != ref) check_backend(*b);
    return tu_finish("test_backend_nonfinite");
}
