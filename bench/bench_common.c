/* Helpers every anx-bench family uses: aligned buffers, the one-fixture cache, selection. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/rng.h"
#include "bench.h"

float *anx_bench_alloc_floats(size_t n)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    return aligned_alloc(64, bytes);
}

int anx_bench_all_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static void (*g_cache_owner)(void);

void anx_bench_cache_claim(void (*release)(void))
{
    if (g_cache_owner && g_cache_owner != release) g_cache_owner();
    g_cache_owner = release;
}

void anx_bench_cache_release_all(void)
{
    if (g_cache_owner) g_cache_owner();
    g_cache_owner = NULL;
}

/* cfg->backends is a comma list ("avx2,onednn"); NULL or "" selects every compiled backend. */
int anx_bench_backend_selected(const anx_bench_config *cfg, const anx_backend *be)
{
    if (!cfg->backends || !cfg->backends[0]) return 1;
    size_t len = strlen(be->name);
    for (const char *p = cfg->backends; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, be->name, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

anx_model_config anx_bench_model_config(int batch)
{
    return (anx_model_config){.in_dim = 3, .n_class = 1000, .batch = batch, .input_hw = 227};
}

anx_net *anx_bench_net_create(const anx_backend *be, int batch, int threads, uint64_t stream, char *broken,
                              size_t len)
{
    anx_model_config mc = anx_bench_model_config(batch);
    char err[200];
    anx_net *net = anx_net_create(be, &mc, threads, err, sizeof err);
    if (!net) {
        snprintf(broken, len, "failed: %s", err);
        return NULL;
    }
    size_t n_in = (size_t)batch * mc.in_dim * mc.input_hw * mc.input_hw;
    float *input = malloc(n_in * sizeof *input);
    int64_t *target = malloc((size_t)batch * sizeof *target);
    int ok = input && target;
    if (!ok) {
        snprintf(broken, len, "failed: out of memory for the input batch");
    } else {
        anx_rng_fill_u01(input, n_in, anx_rng_key(1, "input", stream));
        anx_rng_fill_targets(target, (size_t)batch, anx_rng_key(1, "target", stream), mc.n_class);
        anx_net_set_dropout_seed(net, 1);
        anx_net_set_input(net, input, target);
        ok = anx_net_init_params(net, 1) == 0;
        if (!ok) snprintf(broken, len, "failed: %s", anx_net_error(net));
    }
    free(input);
    free(target);
    if (!ok) anx_net_destroy(net);
    return ok ? net : NULL;
}
