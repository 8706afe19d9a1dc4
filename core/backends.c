/* The registry of backends compiled into this build. */
#include <stdio.h>
#include <string.h>

#include "anx/backend.h"

const anx_backend *const *anx_backends(void)
{
    static const anx_backend *const list[] = {
        &anx_backend_ref,
#ifdef ANX_HAVE_AVX2
        &anx_backend_avx2,
#endif
#ifdef ANX_HAVE_ONEDNN
        &anx_backend_onednn,
#endif
        NULL,
    };
    return list;
}

const anx_backend *anx_backend_find(const char *name)
{
    for (const anx_backend *const *b = anx_backends(); *b; b++)
        if (strcmp((*b)->name, name) == 0) return *b;
    return NULL;
}

const char *anx_backend_declines(const anx_backend *be, const anx_layer_desc *l, anx_dir dir)
{
    const char *why = be->unavailable ? be->unavailable() : NULL;
    if (why) return why;
    if (!be->exec[l->op][dir]) return "not implemented by this backend";
    return be->supports ? be->supports(l, dir) : NULL;
}

anx_status anx_status_oom(const char *what, size_t bytes)
{
    static _Thread_local char line[160];
    snprintf(line, sizeof line, "out of memory for %s (%.1f MiB)", what, (double)bytes / 1048576.0);
    return line;
}

anx_status anx_backend_layer_create(const anx_backend *be, void **ctx, const anx_layer_desc *l, int threads)
{
    *ctx = NULL;
    if (!be->layer_create) return NULL;
    anx_status st = be->layer_create(ctx, l, threads);
    if (st) *ctx = NULL;
    return st;
}
