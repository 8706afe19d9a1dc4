/* test_cblas_workspace — the price of im2col, reported: cblas's workspace_bytes of every layer of
 * Alexnet(3, 5) at batch 2 with 2 threads is its im2col buffers exactly, ic*kh*kw * oh*ow floats
 * per slice, one slice per thread that runs GEMMs (1 when the impl name says "1 thread"), and 0
 * for every other layer; `anx step` prints the same bytes per layer and their total on its
 * "workspace:" line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "spawn.h"
#include "testutil.h"

#define THREADS 2

int main(void)
{
    const anx_backend *be = anx_backend_find("cblas");
    const char *why = !be ? "not in this build" : be->unavailable ? be->unavailable() : NULL;
    if (why) {
        printf("test_cblas_workspace: skipped: %s\n", why);
        return 77;
    }
    TU_CHECK(be->workspace_bytes != NULL);
    if (!be->workspace_bytes) return tu_finish("test_cblas_workspace");
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 5, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    char want_line[2048];
    double total = 0;
    size_t k = 0;
    char parts[1800] = "";
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        void *ctx = tu_layer_create(be, l, THREADS);
        const size_t got = be->workspace_bytes(ctx, l);
        size_t want = 0;
        if (l->op == ANX_OP_CONV2D) {
            const int slices = strstr(be->impl_name(ctx, l, ANX_FWD), " 1 thread") ? 1 : THREADS;
            want = (size_t)l->ic * l->kh * l->kw * l->oh * l->ow * sizeof(float) * (size_t)slices;
            k += (size_t)snprintf(parts + k, sizeof parts - k, "%s %s %.2f MiB", k ? "," : ":", l->name,
                                  (double)want / (1024.0 * 1024.0));
        }
        total += (double)want;
        TU_CHECKF(got == want, "%s: workspace_bytes %zu, want %zu (its im2col buffers)", l->name, got, want);
        if (ctx) be->layer_destroy(ctx);
    }
    snprintf(want_line, sizeof want_line, "workspace: cblas holds %.2f MiB beside the tensors%s\n",
             total / (1024.0 * 1024.0), parts);
    const char *args[] = {"step", "--backend", "cblas", "--batch", "2", "--classes", "5", "--threads", "2", NULL};
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, args);
    TU_CHECKF(r.status == 0 && strstr(r.out, want_line), "anx step --backend cblas: exit %d, want the line\n%sgot:\n%s%s",
              r.status, want_line, r.out, r.err);
    printf("%s", want_line);
    tu_run_free(&r);
    return tu_finish("test_cblas_workspace");
}
