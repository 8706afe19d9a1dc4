/* Helpers every anx-bench family uses: aligned buffers, the one-fixture cache, selection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
