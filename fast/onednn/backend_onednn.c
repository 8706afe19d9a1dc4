/* anx_backend_onednn: oneDNN 2.6 primitives with direct convolutions.  Everything but the
 * algorithm is shared with the onednn-wino variant (onednn.c, ANX_ONEDNN_SHARED_SLOTS). */
#include "anx/ops_shared.h"
#include "onednn_internal.h"

static anx_status onednn_layer_create(void **ctx, const anx_layer_desc *l, int threads)
{
    return anx_onednn_layer_create(ctx, l, threads, ANX_ONEDNN_DIRECT);
}

const anx_backend anx_backend_onednn = {
    .name = "onednn",
    .unavailable = anx_onednn_unavailable,
    .layer_create = onednn_layer_create,
    ANX_ONEDNN_SHARED_SLOTS,
    .peak_isa = ANX_PEAK_BEST, /* oneDNN dispatches to the best ISA of the CPU */
    .train_rank = 3,           /* the fastest step measured here (docs/bench.md) */
};
