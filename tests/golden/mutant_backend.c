/* mutant_backend.c — see mutant_backend.h.  The wrappers run the inner backend's exec, then
 * change its output through the inner backend's own tensor_export / tensor_import, so the change
 * is exactly one plain element whatever the layout (padding stays 0). */
#include "mutant_backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/rng.h"

/* core/net.c keeps every parameter view at a multiple of 16 floats (64 bytes) in its flat state
 * regions; the mutant recomputes the offsets and refuses (hit.why) when they do not add up to
 * the flat Adam call it sees, so a change there fails the test loudly, never silently. */
#define NET_ALIGN_FLOATS 16
#define MUTANT_EPS 1e-7f /* Adam eps planted instead of PyTorch's 1e-8 */

static const anx_backend *g_inner;
static anx_model g_model;
static mutant_spec g_spec;
static mutant_hit g_hit;
static char g_name[32];
static int g_exec_calls;                     /* calls of the spec's (layer, dir) so far */
static int g_adam_calls[64];                 /* per step t: per-parameter Adam calls so far */

const mutant_hit *mutant_hits(void) { return &g_hit; }

/* The element to change in x[n]: drawn from the seed, then the next non-zero one (many
 * gradients are mostly zeros, and a zero moved by 1e-3 max|x| is a different bug).  -1: all 0. */
static int64_t pick(const float *x, size_t n, uint64_t sub)
{
    if (!n) return -1;
    size_t start = (size_t)(anx_rng_bits(anx_rng_key(g_spec.seed, g_spec.layer, sub), 0) % n);
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (x[i] != 0 && isfinite(x[i])) return (int64_t)i;
    }
    return -1;
}

/* Moves one element of plain x[n] (MUTANT_ELEM) or flips its sign (MUTANT_BIAS_SIGN). */
static void plant(float *x, size_t n, uint64_t sub)
{
    int64_t i = pick(x, n, sub);
    if (i < 0) {
        snprintf(g_hit.why, sizeof g_hit.why, "%s: every element is 0, nothing to change", g_spec.layer);
        return;
    }
    double maxabs = 0;
    for (size_t k = 0; k < n; k++) maxabs = fmax(maxabs, fabs(x[k]));
    g_hit.before = x[i];
    if (g_spec.kind == MUTANT_BIAS_SIGN) x[i] = -x[i];
    else {
        double rel = g_spec.rel > 0 ? g_spec.rel : MUTANT_REL;
        x[i] += (float)(x[i] > 0 ? rel * maxabs : -rel * maxabs);
    }
    g_hit.after = x[i];
    g_hit.index = i;
    g_hit.calls++;
}

/* Plants into a tensor of slot s held in the inner backend's layout. */
static void plant_in_layout(const anx_layer_desc *l, anx_slot s, float *buf, uint64_t sub)
{
    size_t n = anx_desc_plain_count(l, s);
    float *plain = malloc(n * sizeof *plain);
    if (!plain) {
        snprintf(g_hit.why, sizeof g_hit.why, "out of memory for the mutant's copy of %s", l->name);
        return;
    }
    g_inner->tensor_export(l, s, plain, buf);
    plant(plain, n, sub);
    g_inner->tensor_import(l, s, buf, plain);
    free(plain);
}

/* A copy of the mask in the inner layout with sample s's mask moved to sample s + 1 (mod n). */
static float *shifted_mask(const anx_layer_desc *l, const float *mask)
{
    size_t n = anx_desc_plain_count(l, ANX_DST), per = n / (size_t)l->n;
    float *plain = malloc(n * sizeof *plain), *moved = malloc(n * sizeof *moved);
    float *out = calloc(g_inner->tensor_floats(l, ANX_DST) + 16, sizeof *out);
    if (!plain || !moved || !out) {
        free(plain), free(moved), free(out);
        return NULL;
    }
    g_inner->tensor_export(l, ANX_DST, plain, mask);
    for (size_t i = 0; i < n; i++) moved[(i + per) % n] = plain[i];
    g_inner->tensor_import(l, ANX_DST, out, moved);
    free(plain), free(moved);
    g_hit.calls++;
    return out;
}

static int targets(const anx_layer_desc *l, anx_dir dir)
{
    return g_spec.kind != MUTANT_ADAM_EPS && !strcmp(l->name, g_spec.layer) &&
           (g_spec.kind == MUTANT_DROPOUT_SHIFT || g_spec.dir == dir);
}

static anx_status run(void *ctx, const anx_layer_desc *l, const anx_args *a, anx_dir dir)
{
    if (!targets(l, dir)) return g_inner->exec[l->op][dir](ctx, l, a);
    if (g_spec.kind == MUTANT_DROPOUT_SHIFT) {
        anx_args b = *a;
        float *mask = shifted_mask(l, a->mask);
        if (!mask) return "out of memory for the mutant's mask";
        b.mask = mask;
        anx_status st = g_inner->exec[l->op][dir](ctx, l, &b);
        free(mask);
        return st;
    }
    anx_status st = g_inner->exec[l->op][dir](ctx, l, a);
    if (st) return st;
    g_exec_calls++;
    if (g_spec.step && g_exec_calls != g_spec.step) return NULL;
    if (l->op == ANX_OP_LOSS && dir == ANX_FWD) {
        plant(a->loss, 1, 0);
        return NULL;
    }
    float *out = dir == ANX_FWD ? a->dst : dir == ANX_BWD_DATA ? a->diff_src
                 : g_spec.slot == ANX_BIAS ? a->diff_bias : a->diff_weights;
    plant_in_layout(l, g_spec.slot, out, (uint64_t)dir * 8 + (uint64_t)g_spec.slot);
    return NULL;
}

static anx_status run_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a) { return run(ctx, l, a, ANX_FWD); }
static anx_status run_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return run(ctx, l, a, ANX_BWD_DATA);
}
static anx_status run_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return run(ctx, l, a, ANX_BWD_WEIGHTS);
}

/* Offset of parameter p in the net's flat state regions, and their total (see NET_ALIGN_FLOATS). */
static size_t param_offset(int p, size_t *total)
{
    size_t off = 0, at = 0;
    for (int q = 0; q < ANX_NUM_PARAMS; q++) {
        const anx_param_info *pi = &g_model.params[q];
        if (q == p) at = off;
        size_t f = g_inner->tensor_floats(&g_model.layers[pi->layer], pi->slot);
        off += (f + NET_ALIGN_FLOATS - 1) / NET_ALIGN_FLOATS * NET_ALIGN_FLOATS;
    }
    *total = off;
    return at;
}

static void adam(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t n,
                 const anx_adam_hparams *hp, int threads)
{
    anx_adam_hparams h = *hp;
    if (g_spec.kind == MUTANT_ADAM_EPS) {
        h.eps = MUTANT_EPS;
        g_hit.calls++;
    }
    g_inner->adam(param, grad, exp_avg, exp_avg_sq, n, &h, threads);
    if (g_spec.kind != MUTANT_ELEM || strcmp(g_spec.layer, "Adam") || hp->step != g_spec.step) return;
    float *state[3] = {param, exp_avg, exp_avg_sq};
    const anx_param_info *pi = &g_model.params[g_spec.param];
    size_t total, off = param_offset(g_spec.param, &total);
    uint64_t sub = 100 + (uint64_t)g_spec.param * 4 + (uint64_t)g_spec.state;
    if (n == total) { /* the net's one call over every parameter (chained mode) */
        plant_in_layout(&g_model.layers[pi->layer], pi->slot, state[g_spec.state] + off, sub);
        return;
    }
    /* one parameter per call, in state_dict order per step (isolated mode, plain, maybe a sample) */
    int k = hp->step >= 0 && hp->step < 64 ? g_adam_calls[hp->step]++ : -1;
    if (k == g_spec.param) plant(state[g_spec.state], n, sub);
}

void mutant_make(anx_backend *out, const anx_backend *inner, const anx_model *m, const mutant_spec *spec)
{
    g_inner = inner, g_model = *m, g_spec = *spec, g_exec_calls = 0;
    memset(&g_hit, 0, sizeof g_hit);
    memset(g_adam_calls, 0, sizeof g_adam_calls);
    *out = *inner;
    snprintf(g_name, sizeof g_name, "mut-%s", inner->name);
    out->name = g_name;
    out->is_reference = 0;
    anx_exec_fn wrap[ANX_DIR_COUNT] = {run_fwd, run_bwd_data, run_bwd_weights};
    for (int op = 0; op < ANX_OP_COUNT; op++)
        for (int d = 0; d < ANX_DIR_COUNT; d++) out->exec[op][d] = inner->exec[op][d] ? wrap[d] : NULL;
    out->adam = inner->adam ? adam : NULL;
}
