/* anx_backend_onednn_wino: the onednn backend with oneDNN's Winograd convolutions
 * (dnnl_convolution_winograd, F(4x4, 3x3): impl jit_wino_4x3) for the forward and backward-data
 * passes where oneDNN 2.6 has one (3x3 stride-1 convolutions: Conv2d-7, -9, -11), and direct
 * convolutions elsewhere (their impl names say jit:..., as in onednn): in bwd_weights too, unless
 * asked for (onednn_wino_layer_create).  Everything but the
 * algorithm is onednn's (onednn.c, ANX_ONEDNN_SHARED_SLOTS): same layouts, same ops.
 *
 * oneDNN 2.6 has f32 Winograd on AVX-512 only.  Without it the variant would be onednn under
 * another name, so the whole backend is unavailable (SKIPPED with the reason) instead.  oneDNN is
 * asked, not the CPU: ONEDNN_MAX_CPU_ISA=AVX2 makes it a CPU without AVX-512 (tests/onednn_wino).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/ops_shared.h"
#include "onednn_internal.h"

static char g_why[200];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* oneDNN's name of its effective ISA (what ONEDNN_MAX_CPU_ISA spells). */
static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "SSE41";
    case dnnl_cpu_isa_avx: return "AVX";
    case dnnl_cpu_isa_avx2: return "AVX2";
    case dnnl_cpu_isa_avx2_vnni: return "AVX2_VNNI";
    case dnnl_cpu_isa_avx512_mic: return "AVX512_MIC";
    case dnnl_cpu_isa_avx512_mic_4ops: return "AVX512_MIC_4OPS";
    case dnnl_cpu_isa_avx512_core: return "AVX512_CORE";
    case dnnl_cpu_isa_avx512_core_vnni: return "AVX512_CORE_VNNI";
    case dnnl_cpu_isa_avx512_core_bf16: return "AVX512_CORE_BF16";
    case dnnl_cpu_isa_avx512_core_amx: return "AVX512_CORE_AMX";
    default: return "an ISA this build does not name";
    }
}

/* Does oneDNN have a Winograd forward for a layer shaped like Conv2d-7 (256 -> 384, 13x13, 3x3, pad 1)? */
static void probe_once(void)
{
    const char *no_engine = anx_onednn_unavailable();
    if (no_engine) {
        snprintf(g_why, sizeof g_why, "%s", no_engine);
        return;
    }
    dnnl_dims_t sd = {1, 256, 13, 13}, wd = {384, 256, 3, 3}, dd = {1, 384, 13, 13}, st = {1, 1}, pad = {1, 1};
    dnnl_memory_desc_t s, w, d;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_tag(&s, 4, sd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&d, 4, dd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
             dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_winograd, &s, &w, NULL,
                                                &d, st, pad, pad) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &cd, NULL, anx_onednn_engine(), NULL) == dnnl_success;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (!ok)
        snprintf(g_why, sizeof g_why,
                 "oneDNN %d.%d has no f32 Winograd convolution on this CPU: it needs AVX-512 "
                 "(oneDNN's effective ISA here: %s)",
                 dnnl_version()->major, dnnl_version()->minor, isa_name(dnnl_get_effective_cpu_isa()));
}

static const char *onednn_wino_unavailable(void)
{
    pthread_once(&g_once, probe_once);
    return g_why[0] ? g_why : NULL;
}

/* Winograd in every direction where oneDNN has it (fwd, bwd_data, bwd_weights of the 3x3 stride-1
 * convolutions): each passes the golden gate's derived Winograd bound on the three golden files
 * (docs/verify.md, "Winograd").  ANX_ONEDNN_WINO_BWD_WEIGHTS=0 keeps bwd_weights direct, to compare
 * or time the two. */
static anx_status onednn_wino_layer_create(void **ctx, const anx_layer_desc *l, int threads)
{
    const char *bww = getenv("ANX_ONEDNN_WINO_BWD_WEIGHTS");
    const anx_onednn_algo algo = bww && strcmp(bww, "0") == 0 ? ANX_ONEDNN_WINOGRAD : ANX_ONEDNN_WINOGRAD_ALL;
    return anx_onednn_layer_create(ctx, l, threads, algo);
}

const anx_backend anx_backend_onednn_wino = {
    .name = "onednn-wino",
    .unavailable = onednn_wino_unavailable,
    .layer_create = onednn_wino_layer_create,
    ANX_ONEDNN_SHARED_SLOTS,
    .peak_isa = ANX_PEAK_AVX512, /* it runs only where oneDNN has AVX-512 */
    .train_rank = 0,             /* less accurate than direct (docs/verify.md): never anx train's default */
};
