/* test_cblas_library — facts of the cblas backend that the shared harness cannot know:
 *  - its impl names say the BLAS library really mapped into this process, as the loader's own
 *    record (/proc/self/maps) shows it: Debian's <variant>/libblas.so.3 (openblas-pthread,
 *    blis-openmp, blas = netlib), OpenBLAS as openblas-<version>-<threading>;
 *  - the library runs serial once a layer is made (the threads are anx's: OpenBLAS's
 *    openblas_get_num_threads() is 1, BLIS got BLIS_NUM_THREADS=1 before its first call);
 *  - each Conv2d's im2col buffers, reported in its impl name, are ic*kh*kw*oh*ow floats per
 *    thread, counted here from the model's shapes; one thread (and " 1 thread" said) on a
 *    library other than OpenBLAS, whose concurrent calls are not known to be safe.
 * Run once as is and once with LD_LIBRARY_PATH at BLIS (tests/cblas/CMakeLists.txt).
 */
#define _GNU_SOURCE /* RTLD_NOLOAD */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "testutil.h"

/* The directory holding the libblas.so* this process mapped ("openblas-pthread"), or "". */
static void mapped_blas(char *variant, size_t cap)
{
    variant[0] = '\0';
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *path = strchr(line, '/');
        if (!path || !strstr(path, "/libblas.so")) continue;
        path[strcspn(path, "\n")] = '\0';
        *strrchr(path, '/') = '\0';
        snprintf(variant, cap, "%s", strrchr(path, '/') + 1);
        break;
    }
    fclose(f);
}

static void check_library(const char *impl, const char *variant)
{
    char want[128];
    if (strncmp(variant, "openblas-", 9) == 0) {
        /* openblas-<version>-<threading of the variant> */
        const char *thr = variant + 9;
        int maj = -1, min = -1, pat = -1;
        TU_CHECKF(sscanf(impl, "cblas:openblas-%d.%d.%d-", &maj, &min, &pat) == 3, "no version in '%s'", impl);
        snprintf(want, sizeof want, "-%.100s ", thr);
        TU_CHECKF(strstr(impl, want) != NULL, "'%s' does not say the %s threading of the mapped %s", impl, thr,
                  variant);
    } else {
        snprintf(want, sizeof want, "cblas:%.100s ", variant);
        TU_CHECKF(strncmp(impl, want, strlen(want)) == 0, "'%s' does not name the mapped %s", impl, variant);
    }
}

/* The BLAS the backend loaded (dlopen at its first layer_create, RTLD_LOCAL: not in the global
 * scope, so asked through a handle of the same file), or NULL before that. */
static void *blas(void)
{
    static void *h; /* one reference, kept: the backend never unloads it either */
    if (!h) h = dlopen("libblas.so.3", RTLD_NOW | RTLD_NOLOAD);
    return h;
}

static void check_serial(void)
{
    void *h = blas();
    int (*get_threads)(void) = h ? (int (*)(void))dlsym(h, "openblas_get_num_threads") : NULL;
    if (get_threads) {
        TU_CHECKF(get_threads() == 1, "OpenBLAS runs %d threads, not 1", get_threads());
    } else if (getenv("BLIS_NUM_THREADS")) {
        TU_CHECKF(strcmp(getenv("BLIS_NUM_THREADS"), "1") == 0, "BLIS_NUM_THREADS=%s, not 1", getenv("BLIS_NUM_THREADS"));
    }
}

int main(void)
{
    const anx_backend *be = anx_backend_find("cblas");
    const char *why = !be ? "not in this build" : be->unavailable ? be->unavailable() : NULL;
    if (why) {
        printf("test_cblas_library: skipped: %s\n", why);
        return 77;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 5, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    void *first = NULL; /* the BLAS is loaded by the first layer_create (test_cblas_lazy) */
    TU_CHECKF(anx_backend_layer_create(be, &first, &m.layers[0], 1) == NULL, "Conv2d-1: layer_create");
    be->layer_destroy(first);
    char variant[256];
    mapped_blas(variant, sizeof variant);
    TU_CHECKF(variant[0] != '\0', "no libblas.so mapped in /proc/self/maps");
    printf("mapped BLAS: %s\n", variant);
    int convs = 0, linears = 0;
    for (int threads = 1; threads <= 2; threads++)
        for (int i = 0; i < ANX_NUM_LAYERS; i++) {
            const anx_layer_desc *l = &m.layers[i];
            if (l->op != ANX_OP_CONV2D && l->op != ANX_OP_LINEAR) continue;
            void *ctx = NULL;
            TU_CHECKF(anx_backend_layer_create(be, &ctx, l, threads) == NULL, "%s: layer_create", l->name);
            check_serial();
            const char *impl = be->impl_name(ctx, l, ANX_FWD);
            printf("%-10s %d threads: %s\n", l->name, threads, impl);
            check_library(impl, variant);
            if (l->op == ANX_OP_CONV2D) {
                const int openblas = blas() && dlsym(blas(), "openblas_get_config") != NULL;
                const double bytes = 4.0 * l->ic * l->kh * l->kw * l->oh * l->ow * (openblas ? threads : 1);
                TU_CHECKF(openblas || threads == 1 || strstr(impl, " 1 thread"), "%s: '%s' hides its 1 thread", l->name,
                          impl);
                char want[64];
                snprintf(want, sizeof want, " im2col %.2f MiB", bytes / (1024.0 * 1024.0));
                TU_CHECKF(strstr(impl, want) != NULL, "%s: '%s' lacks '%s'", l->name, impl, want);
                convs++;
            } else {
                TU_CHECKF(strstr(impl, "im2col") == NULL, "%s: a Linear has no im2col buffer: '%s'", l->name, impl);
                linears++;
            }
            be->layer_destroy(ctx);
        }
    TU_CHECK(convs == 10 && linears == 6);
    return tu_finish("test_cblas_library");
}
