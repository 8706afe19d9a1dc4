/* test_libxsmm_target — the JIT target LIBXSMM runs is shown where a libxsmm run is reported,
 * and anx-bench judges libxsmm's peak% against the ISA of that code, not the CPU's best:
 *  - `anx step --backend libxsmm` prints "library: libxsmm runs LIBXSMM <version>, JIT target <t>"
 *    with t this process's target (cpx on the session's VM), and "... JIT target hsw" under
 *    LIBXSMM_TARGET=hsw;
 *  - anx-bench (when built) under LIBXSMM_TARGET=hsw: the row linear_fwd/fc8/libxsmm/batch:2 is
 *    labelled "libxsmm:hsw ... peak:avx2" and its peak% is its FLOP/s over the AVX2 peak the run
 *    measured (anx_fma_peak_avx2_gflops in the context), within the context's rounding; without
 *    LIBXSMM_TARGET, over the peak of the ISA LIBXSMM's own target says (AVX-512 from "skx" on).
 * Needs a CPU with AVX2 (LIBXSMM_TARGET=hsw); else 77.
 */
#define _GNU_SOURCE /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "anx/backend.h"
#include "spawn.h"
#include "testutil.h"
#include "xsmm_internal.h"

extern const anx_backend anx_backend_libxsmm;

static void check_step(const char *target)
{
    char want[160];
    snprintf(want, sizeof want, "library: libxsmm runs LIBXSMM %s, JIT target %s\n", anx_xsmm_version(), target);
    const char *args[] = {"step", "--backend", "libxsmm", "--batch", "2", "--classes", "5", "--threads", "1", NULL};
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, args);
    TU_CHECKF(r.status == 0 && strstr(r.out, want), "LIBXSMM_TARGET=%s anx step --backend libxsmm: exit %d, want\n%sgot:\n%s%s",
              getenv("LIBXSMM_TARGET") ? getenv("LIBXSMM_TARGET") : "(unset)", r.status, want, r.out, r.err);
    tu_run_free(&r);
}

#ifdef ANX_BENCH_BINARY
static double ctx_number(const cJSON *ctx, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ctx, key);
    return cJSON_IsString(v) ? atof(v->valuestring) : NAN;
}

/* The fc8 forward row of one anx-bench run: label has "<target_prefix>" and "peak:<isa>", and its
 * peak% is FLOP/s over that ISA's measured peak. */
static void check_bench(const char *target, const char *isa)
{
    char path[] = "/tmp/anx_libxsmm_target_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECKF(fd >= 0, "mkstemp %s", path);
    if (fd < 0) return;
    close(fd);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s --backends=libxsmm --batches=2 --threads=1 --benchmark_filter='^linear_fwd/fc8/libxsmm/batch:2' "
             "--benchmark_min_time=0 --benchmark_out_format=json --benchmark_out=%s >/dev/null 2>&1",
             ANX_BENCH_BINARY, path);
    int rc = system(cmd);
    size_t n;
    char *json = tu_slurp(path, &n);
    unlink(path);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    TU_CHECKF(rc == 0 && root, "LIBXSMM_TARGET=%s %s: exit %d, JSON %s", target, cmd, rc, root ? "ok" : "unreadable");
    const cJSON *b = root ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "benchmarks"), 0) : NULL;
    const cJSON *label = b ? cJSON_GetObjectItemCaseSensitive(b, "label") : NULL;
    const cJSON *pct = b ? cJSON_GetObjectItemCaseSensitive(b, "peak%") : NULL;
    const cJSON *flops = b ? cJSON_GetObjectItemCaseSensitive(b, "FLOP/s") : NULL;
    char want_impl[32], want_peak[32], key[64];
    snprintf(want_impl, sizeof want_impl, "libxsmm:%s ", target);
    snprintf(want_peak, sizeof want_peak, " peak:%s ", isa);
    snprintf(key, sizeof key, "anx_fma_peak_%s_gflops", isa);
    const char *lab = cJSON_IsString(label) ? label->valuestring : "(none)";
    TU_CHECKF(strncmp(lab, want_impl, strlen(want_impl)) == 0 && strstr(lab, want_peak),
              "LIBXSMM_TARGET=%s: label \"%s\", want \"%s...%s...\"", target, lab, want_impl, want_peak);
    const double peak = root ? ctx_number(cJSON_GetObjectItemCaseSensitive(root, "context"), key) * 1e9 : NAN;
    const double got = cJSON_IsNumber(pct) && cJSON_IsNumber(flops) && pct->valuedouble > 0
                           ? flops->valuedouble / pct->valuedouble * 100.0
                           : NAN;
    /* the context prints the peak to 0.1 GFLOP/s: 0.5% covers it with room */
    TU_CHECKF(fabs(got - peak) <= 5e-3 * peak, "LIBXSMM_TARGET=%s: peak%% is judged against %.1f GFLOP/s, want %s's %.1f",
              target, got * 1e-9, isa, peak * 1e-9);
    cJSON_Delete(root);
    free(json);
}
#endif

int main(void)
{
    const char *why = anx_backend_libxsmm.unavailable ? anx_backend_libxsmm.unavailable() : NULL;
    if (why || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("test_libxsmm_target: skipped: %s\n", why ? why : "CPU lacks AVX2+FMA (LIBXSMM_TARGET=hsw)");
        return 77;
    }
    unsetenv("LIBXSMM_TARGET"); /* this process's target (read once) is the default one */
    const char *native = anx_xsmm_target();
    check_step(native);
#ifdef ANX_BENCH_BINARY
    const int wide = anx_backend_libxsmm.peak_isa_here && anx_backend_libxsmm.peak_isa_here() == ANX_PEAK_AVX512;
    check_bench(native, wide ? "avx512" : "avx2");
#endif
    setenv("LIBXSMM_TARGET", "hsw", 1);
    check_step("hsw");
#ifdef ANX_BENCH_BINARY
    check_bench("hsw", "avx2");
#endif
    return tu_finish("test_libxsmm_target");
}
