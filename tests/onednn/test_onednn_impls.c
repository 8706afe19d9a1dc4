/* test_onednn_impls — a fact of the oneDNN backend that the shared harness (tests/backends) cannot
 * know: the implementation oneDNN picks for each layer of the full-size step (Alexnet(3, 1000),
 * batch 32, 2 threads) is never its reference fallback ("ref:any", 10-100x slower) for a direction
 * the step runs.  Printed as a table; the step never needs Conv2d-1's bwd_data.
 */
#include <stdio.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "testutil.h"

#define THREADS 2

int main(void)
{
    const anx_backend *be = anx_backend_find("onednn");
    const char *why = !be ? "not in this build" : be->unavailable ? be->unavailable() : NULL;
    if (why) {
        printf("test_onednn_impls: skipped: %s\n", why);
        return 77;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 1000, 32, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    printf("oneDNN implementations, Alexnet(3, 1000) batch 32, %d threads:\n", THREADS);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        void *ctx = NULL;
        anx_status st = anx_backend_layer_create(be, &ctx, l, THREADS);
        TU_CHECKF(st == NULL, "%s: layer_create: %s", l->name, st);
        if (st) continue;
        printf("  %-13s", l->name);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            if (!be->exec[l->op][d] || (d == ANX_BWD_WEIGHTS && !anx_desc_has_weights(l))) continue;
            const char *impl = be->impl_name ? be->impl_name(ctx, l, (anx_dir)d) : "?";
            printf("  %s %s", anx_dir_name((anx_dir)d), impl);
            const int runs = !(i == 0 && d == ANX_BWD_DATA); /* the step never needs d input */
            if (runs)
                TU_CHECKF(strncmp(impl, "ref", 3) != 0, "%s %s uses oneDNN's reference %s", l->name,
                          anx_dir_name((anx_dir)d), impl);
        }
        printf("\n");
        if (be->layer_destroy) be->layer_destroy(ctx);
    }
    return tu_finish("test_onednn_impls");
}
