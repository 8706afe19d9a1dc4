/* test_onednn_wino — the onednn-wino variant's own facts (its layers against ref are the shared
 * harness's, backend_layers_onednn-wino):
 *   1. Without AVX-512 (ONEDNN_MAX_CPU_ISA=AVX2 in a child anx, so this runs on any CPU) oneDNN 2.6
 *      has no Winograd: the whole backend is unavailable with that reason, `anx verify` lists it
 *      SKIPPED and exits 0, `anx step` refuses it with exit 2, and the direct onednn stays available.
 *   2. Where it runs (Alexnet(3, 5), batch 2, 2 threads): Conv2d-7/9/11 fwd, bwd_data and
 *      bwd_weights are oneDNN's jit_wino_4x3 and report the transform_algorithm; every other
 *      convolution is direct (jit:...) and reports none; ANX_ONEDNN_WINO_BWD_WEIGHTS=0 makes
 *      bwd_weights direct; onednn itself never runs Winograd.
 *   3. Every tensor has onednn's layout (same floats per slot): checkpoints and Adam are shared.
 *   4. A buffer off the 64-byte contract is refused with a status (oneDNN's Winograd crashed on
 *      one), not run.
 * Exit 77 after check 1 when this CPU has no Winograd (checks 2-4 cannot run).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "spawn.h"
#include "testutil.h"

#define THREADS 2
#define WINO "onednn-wino"

static void check_masked_isa(void)
{
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    const char *golden = ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_step1.safetensors";
    const char *va[] = {"verify", "--backend", WINO, "--golden", golden, "--layer", "Conv2d-7", "--quiet", NULL};
    tu_run v = tu_spawn(&(tu_spawn_opts){0}, va);
    TU_CHECKF(v.status == 0, "ONEDNN_MAX_CPU_ISA=AVX2 anx verify --backend %s: exit %d (want 0: skipped is not failed)\n%s%s",
              WINO, v.status, v.out, v.err);
    TU_CHECKF(strstr(v.out, "SKIPPED") && strstr(v.out, "no f32 Winograd") && strstr(v.out, "needs AVX-512") &&
                  strstr(v.out, "effective ISA here: AVX2") && !strstr(v.out, "PASSED     jit"),
              "ONEDNN_MAX_CPU_ISA=AVX2: verify should list %s SKIPPED for want of AVX-512, with oneDNN's ISA:\n%s",
              WINO, v.out);
    tu_run_free(&v);
    const char *sa[] = {"step", "--backend", WINO, NULL};
    tu_run s = tu_spawn(&(tu_spawn_opts){0}, sa);
    TU_CHECKF(s.status == 2 && strstr(s.err, "unavailable on this machine") && strstr(s.err, "AVX-512"),
              "ONEDNN_MAX_CPU_ISA=AVX2 anx step --backend %s: exit %d, stderr: %s", WINO, s.status, s.err);
    tu_run_free(&s);
    /* onednn itself does not depend on Winograd: still there (its --help lists no reason) */
    const char *da[] = {"verify", "--backend", "onednn", "--golden", golden, "--layer", "Conv2d-7", "--mode",
                        "isolated", "--quiet", NULL};
    tu_run d = tu_spawn(&(tu_spawn_opts){0}, da);
    TU_CHECKF(d.status == 0 && strstr(d.out, "jit:avx2") && !strstr(d.out, "SKIPPED    oneDNN"),
              "ONEDNN_MAX_CPU_ISA=AVX2: onednn should run Conv2d-7 with jit:avx2 and PASS, exit %d:\n%s%s", d.status,
              d.out, d.err);
    tu_run_free(&d);
    unsetenv("ONEDNN_MAX_CPU_ISA");
}

/* impl and transform_algorithm of (l, dir) on be, from a fresh ctx. */
static void impl_of(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, char *impl, size_t cap,
                    const char **algo)
{
    void *ctx = NULL;
    anx_status st = anx_backend_layer_create(be, &ctx, l, THREADS);
    TU_CHECKF(st == NULL, "%s %s: layer_create: %s", be->name, l->name, st);
    snprintf(impl, cap, "%s", st ? "?" : be->impl_name(ctx, l, dir));
    *algo = st ? NULL : be->transform_algorithm(ctx, l, dir);
    if (!st) be->layer_destroy(ctx);
}

static int is_3x3_s1(const anx_layer_desc *l) { return l->kh == 3 && l->kw == 3 && l->stride == 1; }

static void check_impls(const anx_backend *wino, const anx_backend *direct, const anx_model *m)
{
    printf("Alexnet(3, 5) batch 2, %d threads:\n", THREADS);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        if (l->op != ANX_OP_CONV2D) continue;
        printf("  %-10s", l->name);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            const anx_dir dir = (anx_dir)d;
            if (anx_backend_declines(wino, l, dir)) continue;
            char impl[96], dimpl[96];
            const char *algo, *dalgo;
            impl_of(wino, l, dir, impl, sizeof impl, &algo);
            impl_of(direct, l, dir, dimpl, sizeof dimpl, &dalgo);
            printf("  %s %s", anx_dir_name(dir), impl);
            const int want = is_3x3_s1(l);
            TU_CHECKF(want ? strncmp(impl, "jit_wino_4x3", 12) == 0 && algo : strncmp(impl, "jit:", 4) == 0 && !algo,
                      "%s %s %s: impl %s, transform_algorithm %s (want %s)", WINO, l->name, anx_dir_name(dir), impl,
                      algo ? algo : "none", want ? "jit_wino_4x3, Winograd" : "direct jit:..., none");
            TU_CHECKF(strncmp(dimpl, "jit:", 4) == 0 && !dalgo, "%s %s %s: impl %s, transform_algorithm %s (want direct)",
                      direct->name, l->name, anx_dir_name(dir), dimpl, dalgo ? dalgo : "none");
        }
        printf("\n");
    }
    /* direct bwd_weights when asked for by name (to compare) */
    const anx_layer_desc *c7 = &m->layers[6];
    char impl[96];
    const char *algo;
    setenv("ANX_ONEDNN_WINO_BWD_WEIGHTS", "0", 1);
    impl_of(wino, c7, ANX_BWD_WEIGHTS, impl, sizeof impl, &algo);
    unsetenv("ANX_ONEDNN_WINO_BWD_WEIGHTS");
    printf("  ANX_ONEDNN_WINO_BWD_WEIGHTS=0: %s bwd_weights %s\n", c7->name, impl);
    TU_CHECKF(strncmp(impl, "jit:", 4) == 0 && !algo, "ANX_ONEDNN_WINO_BWD_WEIGHTS=0: %s bwd_weights runs %s",
              c7->name, impl);
}

static void check_layouts(const anx_backend *wino, const anx_backend *direct, const anx_model *m)
{
    for (int i = 0; i < ANX_NUM_LAYERS; i++)
        for (int s = 0; s < ANX_SLOT_COUNT; s++) {
            const anx_layer_desc *l = &m->layers[i];
            TU_CHECKF(wino->tensor_floats(l, (anx_slot)s) == direct->tensor_floats(l, (anx_slot)s),
                      "%s slot %d: %zu floats on %s, %zu on %s", l->name, s, wino->tensor_floats(l, (anx_slot)s), WINO,
                      direct->tensor_floats(l, (anx_slot)s), direct->name);
        }
}

/* dst 16 bytes off a 64-byte boundary: a status naming the contract, and dst untouched. */
static void check_alignment(const anx_backend *wino, const anx_model *m)
{
    const anx_layer_desc *l = &m->layers[6]; /* Conv2d-7: Winograd fwd */
    void *ctx = tu_layer_create(wino, l, THREADS);
    if (!ctx) return;
    float *src = tu_alloc(wino->tensor_floats(l, ANX_SRC), "src"), *w = tu_alloc(wino->tensor_floats(l, ANX_WEIGHTS), "w");
    float *b = tu_alloc(wino->tensor_floats(l, ANX_BIAS), "b"), *dst = tu_alloc(wino->tensor_floats(l, ANX_DST) + 4, "dst");
    anx_args a = {.src = src, .weights = w, .bias = b, .dst = dst + 4};
    anx_status st = wino->exec[ANX_OP_CONV2D][ANX_FWD](ctx, l, &a);
    TU_CHECKF(st && strstr(st, "64-byte aligned"), "%s fwd on a dst 16 bytes off: status %s", l->name, st ? st : "none");
    size_t written = 0;
    for (size_t i = 0; i < wino->tensor_floats(l, ANX_DST); i++) written += !(dst[4 + i] != dst[4 + i]); /* NaN prefill */
    TU_CHECKF(written == 0, "%s fwd refused yet wrote %zu floats", l->name, written);
    printf("  a dst 16 bytes off 64: %s\n", st ? st : "(ran)");
    tu_free(src), tu_free(w), tu_free(b), tu_free(dst);
    wino->layer_destroy(ctx);
}

int main(void)
{
    const anx_backend *wino = anx_backend_find(WINO), *direct = anx_backend_find("onednn");
    TU_CHECK(wino && direct);
    if (!wino || !direct) return tu_finish("test_onednn_wino");
    check_masked_isa();
    const char *why = wino->unavailable ? wino->unavailable() : NULL;
    if (why) {
        printf("test_onednn_wino: checks 2-4 skipped: %s\n", why);
        return tu_finish("test_onednn_wino") ? 1 : 77;
    }
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 5, 2, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    check_impls(wino, direct, &m);
    check_layouts(wino, direct, &m);
    check_alignment(wino, &m);
    return tu_finish("test_onednn_wino");
}
