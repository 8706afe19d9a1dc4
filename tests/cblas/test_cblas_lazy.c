/* test_cblas_lazy — the BLAS is not in an anx process until the cblas backend is used: linked, an
 * OpenBLAS started its thread pool in every anx process (anx step --backend onednn included).
 * Checked in this process's /proc/self/maps: no BLAS mapped at start, nor after every backend of
 * the registry was asked unavailable() (what anx verify --backend all and anx train do); mapped,
 * with its threads, after cblas's first layer_create, which runs a Conv2d exactly as before.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "testutil.h"

/* The first mapped file whose name says BLAS (libblas.so.3, libopenblas, libblis), or "". */
static const char *blas_mapping(char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *p = strchr(line, '/');
        if (p && (strstr(p, "/libblas.so") || strstr(p, "libopenblas") || strstr(p, "libblis"))) {
            snprintf(buf, cap, "%s", p);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
    return buf;
}

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

int main(void)
{
    char map[512];
    TU_CHECKF(blas_mapping(map, sizeof map)[0] == '\0', "a BLAS is mapped at program start: %s", map);
    const int t0 = thread_count();
    const anx_backend *be = anx_backend_find("cblas");
    for (const anx_backend *const *b = anx_backends(); *b; b++)
        if ((*b)->unavailable) (*b)->unavailable();
    TU_CHECKF(blas_mapping(map, sizeof map)[0] == '\0', "a BLAS is mapped after asking every backend unavailable(): %s",
              map);
    printf("threads at start %d, after every unavailable() %d, BLAS mapped: no\n", t0, thread_count());
    const char *why = !be ? "not in this build" : be->unavailable ? be->unavailable() : NULL;
    if (why) {
        printf("test_cblas_lazy: the rest skipped: %s\n", why);
        return tu_finish("test_cblas_lazy") ? 1 : 77;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 5, 1, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    void *ctx = tu_layer_create(be, &m.layers[6], 1); /* Conv2d-7 */
    TU_CHECKF(ctx && blas_mapping(map, sizeof map)[0], "no BLAS mapped after cblas's layer_create (ctx %p)", ctx);
    printf("after cblas layer_create: threads %d, BLAS mapped: %s\n", thread_count(), map);
    if (ctx) {
        const anx_layer_desc *l = &m.layers[6];
        float *src = tu_alloc(be->tensor_floats(l, ANX_SRC), "src"), *w = tu_alloc(be->tensor_floats(l, ANX_WEIGHTS), "w");
        float *b = tu_alloc(be->tensor_floats(l, ANX_BIAS), "b"), *dst = tu_alloc(be->tensor_floats(l, ANX_DST), "dst");
        tu_fill_int(src, tu_count(src), 1, -2, 2, 1.0), tu_fill_int(w, tu_count(w), 2, -2, 2, 1.0);
        tu_fill_int(b, tu_count(b), 3, -2, 2, 1.0);
        anx_args a = {.src = src, .weights = w, .bias = b, .dst = dst};
        TU_CHECK(tu_exec(be, ctx, l, ANX_FWD, &a) == 0);
        size_t nan = 0;
        for (size_t i = 0; i < tu_count(dst); i++) nan += dst[i] != dst[i];
        TU_CHECKF(nan == 0, "Conv2d-7 fwd through the loaded sgemm left %zu of %zu outputs unwritten", nan, tu_count(dst));
        tu_free(src), tu_free(w), tu_free(b), tu_free(dst);
        be->layer_destroy(ctx);
    }
    return tu_finish("test_cblas_lazy");
}
