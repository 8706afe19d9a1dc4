/* anx verify, layer-isolated mode: each (layer, direction) of a backend gets the golden inputs
 * (float32 roundings of the float64 golden, init weights regenerated from the seed), and every
 * element of every output is judged against ref64 fed the same inputs (verify_judge.c: the
 * bound is the backend's own float32 rounding).  Adam: the regenerated init and the golden
 * gradient of every step (t = 1..steps), each step judged against ref64's Adam from the
 * backend's own state before it; a gradient the golden file keeps as a sample only comes whole
 * from ref64's replay of the golden run (vref64) when it ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"

/* At most this many Adam steps in a golden file (the three-step file has 3). */
#define V_MAX_STEPS 8

/* One (layer, direction) of the backend on plain inputs in: imported into its layout, run, its
 * outputs exported plain into out[0] (and out[1]: diff_bias).  NULL, or the backend's status,
 * copied into failed (its text lasts only until the next backend call). */
static void run_exec(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, const v_in *in, float **out,
                     float *loss, char *impl, size_t implcap, char *algo, size_t algocap, char *failed, size_t cap,
                     int threads)
{
    void *ctx;
    anx_status st = anx_backend_layer_create(be, &ctx, l, threads);
    anx_args a = {0};
    a.src = in->src ? v_be_import(be, l, ANX_SRC, in->src) : NULL;
    a.dst = in->dst ? v_be_import(be, l, ANX_DST, in->dst) : v_be_buf(be, l, ANX_DST);
    a.diff_dst = in->diff_dst ? v_be_import(be, l, ANX_DST, in->diff_dst) : NULL;
    if (in->weights) a.weights = v_be_import(be, l, ANX_WEIGHTS, in->weights), a.bias = v_be_import(be, l, ANX_BIAS, in->bias);
    if (in->mask) a.mask = v_be_import(be, l, ANX_DST, in->mask);
    a.target = in->target, a.loss = loss;
    if (dir == ANX_BWD_DATA) a.diff_src = v_be_buf(be, l, ANX_SRC);
    if (dir == ANX_BWD_WEIGHTS) a.diff_weights = v_be_buf(be, l, ANX_WEIGHTS), a.diff_bias = v_be_buf(be, l, ANX_BIAS);
    if (!st) st = anx_backend_scratch_alloc(be, ctx, l, &a);
    if (!st) st = be->exec[l->op][dir](ctx, l, &a);
    free(a.scratch);
    snprintf(failed, cap, "%s", st ? st : "");
    snprintf(impl, implcap, "%s", v_impl_of(be, ctx, l, dir));
    v_copy_str(algo, algocap, ctx && be->transform_algorithm ? be->transform_algorithm(ctx, l, dir) : NULL);
    anx_slot slot = dir == ANX_FWD ? ANX_DST : dir == ANX_BWD_DATA ? ANX_SRC : ANX_WEIGHTS;
    float *res = dir == ANX_FWD ? a.dst : dir == ANX_BWD_DATA ? a.diff_src : a.diff_weights;
    if (!(l->op == ANX_OP_LOSS && dir == ANX_FWD)) {
        out[0] = v_alloc(anx_desc_plain_count(l, slot));
        be->tensor_export(l, slot, out[0], res);
    }
    if (dir == ANX_BWD_WEIGHTS) {
        out[1] = v_alloc(anx_desc_plain_count(l, ANX_BIAS));
        be->tensor_export(l, ANX_BIAS, out[1], a.diff_bias);
    }
    free(a.src), free(a.dst), free(a.diff_dst), free(a.weights), free(a.bias), free((void *)a.mask);
    free(a.diff_src), free(a.diff_weights), free(a.diff_bias);
    if (ctx) be->layer_destroy(ctx);
}

/* The golden inputs of (layer i, dir), whole; NULL with why when one is stored as a sample only. */
static const char *iso_inputs(const vgold *g, int i, anx_dir dir, v_in *in, float **mask)
{
    const anx_model *m = &g->m;
    const anx_layer_desc *l = i < ANX_NUM_LAYERS ? &m->layers[i] : &m->loss;
    static _Thread_local char why[128];
    memset(in, 0, sizeof *in);
    *mask = NULL;
    int last = ANX_NUM_LAYERS - 1;
    in->src = i == 0 ? g->input : i < ANX_NUM_LAYERS ? g->out[i - 1] : g->out[last];
    if (!in->src) return snprintf(why, sizeof why, "golden input out.%s is stored as a sample only", m->layers[i < ANX_NUM_LAYERS ? i - 1 : last].name), why;
    if (l->op == ANX_OP_LOSS) return in->target = g->target, NULL;
    int p = v_param_of(m, i);
    if (p >= 0) in->weights = g->init[p], in->bias = g->init[p + 1];
    if (l->op == ANX_OP_DROPOUT) {
        *mask = v_alloc(anx_desc_plain_count(l, ANX_DST));
        v_mask(g, l->name, 1, *mask, anx_desc_plain_count(l, ANX_DST));
        in->mask = *mask;
    }
    if (dir == ANX_FWD) return NULL;
    in->diff_dst = g->gout[i];
    if (!in->diff_dst) return snprintf(why, sizeof why, "golden input grad_out.%s is stored as a sample only", l->name), why;
    in->dst = g->out[i];
    if (!in->dst) return snprintf(why, sizeof why, "golden input out.%s is stored as a sample only", l->name), why;
    return NULL;
}

/* The rows of (layer i, dir): i == ANX_NUM_LAYERS is the loss. */
static void iso_exec(anx_verify_report *rep, vgold *g, const anx_backend *be, int i, anx_dir dir,
                     const anx_verify_opts *o)
{
    const int threads = o->threads;
    const anx_model *m = &g->m;
    const anx_layer_desc *l = i < ANX_NUM_LAYERS ? &m->layers[i] : &m->loss;
    char key[2][96];
    int nrow = dir == ANX_BWD_WEIGHTS ? 2 : 1, p = v_param_of(m, i);
    if (dir == ANX_FWD) snprintf(key[0], sizeof key[0], l->op == ANX_OP_LOSS ? "loss" : "out.%s", l->name);
    if (dir == ANX_BWD_DATA) snprintf(key[0], sizeof key[0], "grad_out.%s", m->layers[(i < ANX_NUM_LAYERS ? i : ANX_NUM_LAYERS) - 1].name);
    for (int k = 0; dir == ANX_BWD_WEIGHTS && k < 2; k++) snprintf(key[k], sizeof key[k], "grad.%s", m->params[p + k].name);
    anx_verify_row *r[2];
    v_reserve(rep, nrow); /* both pointers stay valid */
    for (int k = 0; k < nrow; k++) r[k] = v_row(rep, g, be->name, "isolated", l->name, anx_dir_name(dir), key[k]);
    v_in in;
    float *mask, *out[2] = {NULL, NULL}, loss = 0;
    const char *why = anx_backend_declines(be, l, dir), *skip = why ? why : iso_inputs(g, i, dir, &in, &mask);
    if (skip) {
        for (int k = 0; k < nrow; k++) v_skip(r[k], "%s", skip);
        if (!why) free(mask);
        return;
    }
    char failed[160], impl[64], algo[64];
    run_exec(be, l, dir, &in, out, &loss, impl, sizeof impl, algo, sizeof algo, failed, sizeof failed, threads);
    const float *got[2] = {out[0] ? out[0] : &loss, out[1]};
    in.algo = algo[0] ? algo : NULL;
    v_judge_exec(r, l, dir, &in, got, threads, o->cache); /* golden inputs: the same for every backend */
    for (int k = 0; k < nrow; k++) {
        v_impl_mark(r[k], impl, k ? NULL : in.algo, l, dir);
        if (failed[0]) v_fail_status(r[k], failed);
    }
    free(out[0]), free(out[1]), free(mask);
}

/* ---- Adam ---------------------------------------------------------------------------------- */

/* The golden gradients of parameter p for t = 1..steps on one index set (whole, or the stored
 * sample when the file keeps only that); the count of steps, or -1 with why in r's reason. */
/* vgold_want, but whole from ref64's replay when the golden file keeps key as a sample only. */
static int grad_want(const vgold *g, const vref64 *r64, const char *key, const anx_param_info *pi, vwant *w)
{
    size_t count = 0;
    const double *x = r64 ? vref64_find(r64, key, &count) : NULL;
    if (!x || count != pi->count) return vgold_want(g, key, w);
    memset(w, 0, sizeof *w);
    snprintf(w->key, sizeof w->key, "%.79s", key);
    w->n = w->total = count;
    w->val = v_alloc(count);
    for (size_t i = 0; i < count; i++) w->val[i] = (float)x[i];
    w->ndim = v_slot_shape(&g->m.layers[pi->layer], pi->slot, w->shape);
    return 0;
}

static int adam_grads(const vgold *g, const vref64 *r64, const anx_param_info *pi, const anx_layer_desc *l, vwant *gw,
                      char *why, size_t cap)
{
    int ng = 0;
    for (int t = 1; t <= g->steps && t <= V_MAX_STEPS; t++, ng++) {
        char gk[96];
        if (g->steps == 1) snprintf(gk, sizeof gk, "grad.%s", pi->name);
        else snprintf(gk, sizeof gk, "step%d.grad.%s", t, pi->name);
        int bad = grad_want(g, r64, gk, pi, &gw[ng]);
        if (!bad && gw[ng].idx) gw[ng].ndim = v_slot_shape(l, pi->slot, gw[ng].shape);
        if (!bad && ng && (gw[ng].n != gw[0].n || (!gw[ng].idx) != (!gw[0].idx) ||
                           (gw[0].idx && memcmp(gw[0].idx, gw[ng].idx, gw[0].n * sizeof *gw[0].idx))))
            bad = 1, vwant_free(&gw[ng]);
        if (bad) {
            snprintf(why, cap, "golden gradient %s missing or not on the same elements", gk);
            for (int k = 0; k < ng; k++) vwant_free(&gw[k]);
            return -1;
        }
    }
    return ng;
}

/* Adam t = 1..steps from the regenerated init with the golden gradients; every step's result
 * judged against ref64's Adam from the backend's own state before it.  Rows "step<t>.<key>"
 * for the steps before the last, "<key>" for the last. */
static void iso_adam_param(anx_verify_report *rep, vgold *g, const vref64 *r64, const anx_backend *be, int p,
                           int threads)
{
    const anx_param_info *pi = &g->m.params[p];
    const anx_layer_desc *l = &g->m.layers[pi->layer];
    static const char *const pre[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
    vwant gw[V_MAX_STEPS];
    char why[160] = "backend has no Adam";
    int ng = be->adam ? adam_grads(g, r64, pi, l, gw, why, sizeof why) : -1;
    size_t n = ng > 0 ? gw[0].n : 0;
    float *st[3] = {v_alloc(n), v_alloc(n), v_alloc(n)}, *prev[3] = {v_alloc(n), v_alloc(n), v_alloc(n)};
    for (size_t i = 0; i < n; i++) st[0][i] = g->init[p][gw[0].idx ? (size_t)gw[0].idx[i] : i];
    anx_adam_hparams hp = {(float)g->hp.lr, (float)g->hp.beta1, (float)g->hp.beta2, (float)g->hp.eps, 1};
    for (int t = 1; t <= (ng > 0 ? ng : 1); t++) {
        anx_verify_row *r[3];
        char key[96];
        v_reserve(rep, 3); /* the three pointers stay valid */
        for (int k = 0; k < 3; k++) {
            if (t < ng) snprintf(key, sizeof key, "step%d.%s%s", t, pre[k], pi->name);
            else snprintf(key, sizeof key, "%s%s", pre[k], pi->name);
            r[k] = v_row(rep, g, be->name, "isolated", "Adam", "update", key);
            if (ng <= 0) v_skip(r[k], "%s", why);
        }
        if (ng <= 0) break;
        for (int k = 0; k < 3; k++) memcpy(prev[k], st[k], n * sizeof *st[k]);
        hp.step = t;
        be->adam(st[0], gw[t - 1].val, st[1], st[2], n, &hp, threads);
        v_judge_adam(r, prev[0], gw[t - 1].val, prev[1], prev[2], (const float *const *)st, n, &g->hp, t, gw[0].shape,
                     gw[0].ndim);
        for (int k = 0; k < 3; k++) {
            snprintf(r[k]->impl, sizeof r[k]->impl, "adam t=%d%s", t, gw[0].idx ? " (golden gradient sampled)" : "");
            if (gw[0].idx) /* the rows name the elements by their index in the whole tensor */
                for (int w = 0; w < r[k]->nworst; w++) r[k]->worst[w].index = gw[0].idx[r[k]->worst[w].index];
        }
    }
    for (int k = 0; k < 3; k++) free(st[k]), free(prev[k]);
    for (int k = 0; k < ng; k++) vwant_free(&gw[k]);
}

void v_isolated(anx_verify_report *rep, vgold *g, const vref64 *r64, const anx_backend *be, const anx_verify_opts *o)
{
    const anx_model *m = &g->m;
    const char *only = o->layer;
    if (g->steps == 1) {
        for (int i = 0; i < ANX_NUM_LAYERS; i++) {
            const anx_layer_desc *l = &m->layers[i];
            if (only && strcmp(only, l->name)) continue;
            if (o->log) fprintf(o->log, "verify %s isolated %s %s\n", be->name, g->base, l->name);
            iso_exec(rep, g, be, i, ANX_FWD, o);
            if (i > 0) iso_exec(rep, g, be, i, ANX_BWD_DATA, o);
            if (anx_desc_has_weights(l)) iso_exec(rep, g, be, i, ANX_BWD_WEIGHTS, o);
        }
        if (!only || !strcmp(only, "CrossEntropyLoss")) {
            iso_exec(rep, g, be, ANX_NUM_LAYERS, ANX_FWD, o);
            iso_exec(rep, g, be, ANX_NUM_LAYERS, ANX_BWD_DATA, o);
        }
    }
    if (!only || !strcmp(only, "Adam"))
        for (int p = 0; p < ANX_NUM_PARAMS; p++) iso_adam_param(rep, g, r64, be, p, o->threads);
}
