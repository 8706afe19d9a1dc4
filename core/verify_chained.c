/* anx verify, chained mode: the whole training step on one backend from the seed (init, input,
 * targets, dropout masks), each layer fed what the backend's previous layer made, as in
 * training.  Every layer and direction of every step is judged against ref64 fed the same
 * inputs as that backend's layer (verify_judge.c), so a bound covers one layer's rounding, not
 * the whole history: every element of every out.*, grad_out.*, grad.*, the loss, and of the
 * parameters and both Adam moments after every update (ref64's Adam from the backend's state
 * before it).  A wrong kernel fails at the layer it computes, whatever came before.
 * Where the golden file stores a row's tensor, the backend's drift from it is kept beside the
 * rows as information (verify_drift.c).
 * Keys: the one-step files use the golden keys; with several steps every per-step row is
 * "step<t>.<key>", and the state after the last update keeps the plain key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/net.h"
#include "core/verify_internal.h"

typedef struct chain {
    anx_verify_report *rep;
    vgold *g;
    const anx_backend *be;
    const anx_verify_opts *o;
    anx_net *net;
} chain;

static int wanted(const chain *c, const char *layer)
{
    return !c->o->layer || strcmp(c->o->layer, layer) == 0;
}

/* Golden-style key of step t: the plain key with one step, "step<t>.<key>" with several. */
static void step_key(char *dst, size_t cap, const vgold *g, int t, const char *key)
{
    if (g->steps == 1)
        snprintf(dst, cap, "%s", key);
    else
        snprintf(dst, cap, "step%d.%s", t, key);
}

/* What the net holds after one step's forward and backward, plain. */
typedef struct stepbuf {
    float *W[ANX_NUM_PARAMS], *grad[ANX_NUM_PARAMS];
    float *act[ANX_NUM_LAYERS], *gact[ANX_NUM_LAYERS], *mask[ANX_NUM_LAYERS];
    float loss;
} stepbuf;

static void stepbuf_free(stepbuf *s)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p++) free(s->W[p]), free(s->grad[p]);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) free(s->act[i]), free(s->gact[i]), free(s->mask[i]);
}

static void step_fetch(chain *c, stepbuf *s)
{
    const anx_model *m = &c->g->m;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        size_t nd = anx_desc_plain_count(l, ANX_DST);
        s->act[i] = v_alloc(nd), s->gact[i] = v_alloc(nd);
        anx_net_get_activation(c->net, i, 0, s->act[i]);
        anx_net_get_activation(c->net, i, 1, s->gact[i]);
        if (l->op != ANX_OP_DROPOUT) continue;
        s->mask[i] = v_alloc(nd);
        anx_net_get_mask(c->net, i, s->mask[i]);
    }
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        s->grad[p] = v_alloc(m->params[p].count);
        anx_net_get_state(c->net, ANX_GRAD, p, s->grad[p]);
    }
}

/* The mask core drew for step t is the golden's (both come from the seed): bit for bit. */
static void check_mask(chain *c, int t, int i, const float *mask)
{
    const anx_layer_desc *l = &c->g->m.layers[i];
    size_t nd = anx_desc_plain_count(l, ANX_DST);
    char key[96], k2[64];
    snprintf(k2, sizeof k2, "mask.%s", l->name);
    step_key(key, sizeof key, c->g, t, k2);
    anx_verify_row *r = v_row(c->rep, c->g, c->be->name, "chained", l->name, "fwd", key);
    float *want = v_alloc(nd);
    double *zero = calloc(nd, sizeof *zero);
    if (!zero) v_oom("a mask bound", nd * sizeof *zero);
    v_mask(c->g, l->name, t, want, nd);
    int64_t shape[4];
    int ndim = v_slot_shape(l, ANX_DST, shape);
    anx_verify_compare(r, mask, want, zero, nd, NULL, shape, ndim);
    free(want), free(zero);
}

/* Rows of (layer l, dir) at step t named by keys, judged on the backend's inputs in and outputs got. */
static void judge(chain *c, int t, const anx_layer_desc *l, anx_dir dir, const char *const *keys, int nrow,
                  const v_in *in, const float *const *got)
{
    anx_verify_row *r[2];
    char key[128], impl[64], algo[64] = "";
    v_copy_str(impl, sizeof impl, v_impl_of(c->be, NULL, l, dir));
    /* The net's ctx is not reachable from here: a fresh ctx of the same layer makes the same
       choice of algorithm (Winograd or direct), which selects the bound (verify_wino.c). */
    void *ctx = NULL;
    if (c->be->transform_algorithm && l->op == ANX_OP_CONV2D && !anx_backend_layer_create(c->be, &ctx, l, c->o->threads) && ctx) {
        v_copy_str(algo, sizeof algo, c->be->transform_algorithm(ctx, l, dir));
        v_copy_str(impl, sizeof impl, v_impl_of(c->be, ctx, l, dir));
    }
    if (ctx) c->be->layer_destroy(ctx);
    v_in win = *in;
    win.algo = algo[0] ? algo : NULL;
    v_reserve(c->rep, nrow); /* both pointers stay valid */
    for (int k = 0; k < nrow; k++) {
        step_key(key, sizeof key, c->g, t, keys[k]);
        r[k] = v_row(c->rep, c->g, c->be->name, "chained", l->name, anx_dir_name(dir), key);
        v_impl_mark(r[k], impl, k ? NULL : win.algo, l, dir);
    }
    v_judge_exec(r, l, dir, &win, got, c->o->threads, NULL); /* inputs are the backend's own */
    for (int k = 0; k < nrow; k++) {
        step_key(key, sizeof key, c->g, t, keys[k]);
        v_drift(c->rep, c->g, c->be->name, t, key, got[k]);
    }
}

/* The inputs of layer i as the backend's layer had them in this step (dir: which of them). */
static v_in layer_inputs(const chain *c, const stepbuf *s, int i, anx_dir dir)
{
    const anx_model *m = &c->g->m;
    v_in in;
    memset(&in, 0, sizeof in);
    in.src = i ? s->act[i - 1] : c->g->input;
    int p = v_param_of(m, i);
    if (p >= 0 && dir != ANX_BWD_WEIGHTS) in.weights = s->W[p], in.bias = s->W[p + 1];
    in.mask = s->mask[i];
    if (dir != ANX_FWD) in.diff_dst = s->gact[i], in.dst = dir == ANX_BWD_DATA ? s->act[i] : NULL;
    return in;
}

static void step_forward(chain *c, int t, const stepbuf *s)
{
    const anx_model *m = &c->g->m;
    char key[96];
    const char *keys[1] = {key};
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        if (s->mask[i] && wanted(c, l->name)) check_mask(c, t, i, s->mask[i]);
        if (!wanted(c, l->name)) continue;
        snprintf(key, sizeof key, "out.%s", l->name);
        v_in in = layer_inputs(c, s, i, ANX_FWD);
        const float *got[2] = {s->act[i], NULL};
        judge(c, t, l, ANX_FWD, keys, 1, &in, got);
    }
    if (!wanted(c, m->loss.name)) return;
    v_in in;
    memset(&in, 0, sizeof in);
    in.src = s->act[ANX_NUM_LAYERS - 1], in.target = c->g->target;
    const char *lk[1] = {"loss"}, *gk[1] = {"grad_out.Linear-20"};
    const float *got[2] = {&s->loss, NULL}, *dgot[2] = {s->gact[ANX_NUM_LAYERS - 1], NULL};
    snprintf(key, sizeof key, "grad_out.%s", m->layers[ANX_NUM_LAYERS - 1].name);
    gk[0] = key;
    judge(c, t, &m->loss, ANX_FWD, lk, 1, &in, got);
    judge(c, t, &m->loss, ANX_BWD_DATA, gk, 1, &in, dgot);
}

static void step_backward(chain *c, int t, const stepbuf *s)
{
    const anx_model *m = &c->g->m;
    char key[2][96];
    const char *keys[2] = {key[0], key[1]};
    for (int i = ANX_NUM_LAYERS - 1; i >= 0; i--) {
        const anx_layer_desc *l = &m->layers[i];
        if (!wanted(c, l->name)) continue;
        if (i > 0) {
            snprintf(key[0], sizeof key[0], "grad_out.%s", m->layers[i - 1].name);
            v_in in = layer_inputs(c, s, i, ANX_BWD_DATA);
            const float *got[2] = {s->gact[i - 1], NULL};
            judge(c, t, l, ANX_BWD_DATA, keys, 1, &in, got);
        }
        int p = v_param_of(m, i);
        if (p < 0) continue;
        for (int k = 0; k < 2; k++) snprintf(key[k], sizeof key[k], "grad.%s", m->params[p + k].name);
        v_in in = layer_inputs(c, s, i, ANX_BWD_WEIGHTS);
        const float *got[2] = {s->grad[p], s->grad[p + 1]};
        judge(c, t, l, ANX_BWD_WEIGHTS, keys, 2, &in, got);
    }
}

/* The update of step t: every parameter and both moments against ref64's Adam from the state
 * before it (the backend's own), then the step is done. */
static void step_adam(chain *c, int t, const stepbuf *s)
{
    const anx_model *m = &c->g->m;
    static const anx_state which[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    static const char *const pre[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
    float *before[ANX_NUM_PARAMS][2];
    for (int p = 0; p < ANX_NUM_PARAMS; p++)
        for (int k = 0; k < 2; k++) {
            before[p][k] = v_alloc(m->params[p].count);
            anx_net_get_state(c->net, which[k + 1], p, before[p][k]);
        }
    anx_net_adam(c->net, (float)c->g->hp.lr);
    for (int p = 0; p < ANX_NUM_PARAMS && wanted(c, "Adam"); p++) {
        const anx_param_info *pi = &m->params[p];
        anx_verify_row *r[3];
        float *after[3];
        char key[128];
        v_reserve(c->rep, 3); /* the three pointers stay valid */
        for (int k = 0; k < 3; k++) {
            after[k] = v_alloc(pi->count);
            anx_net_get_state(c->net, which[k], p, after[k]);
            if (t < c->g->steps) snprintf(key, sizeof key, "step%d.%s%s", t, pre[k], pi->name);
            else snprintf(key, sizeof key, "%s%s", pre[k], pi->name);
            r[k] = v_row(c->rep, c->g, c->be->name, "chained", "Adam", "update", key);
            snprintf(r[k]->impl, sizeof r[k]->impl, "adam t=%d", t);
        }
        int64_t shape[4];
        int ndim = v_slot_shape(&m->layers[pi->layer], pi->slot, shape);
        v_judge_adam(r, s->W[p], s->grad[p], before[p][0], before[p][1], (const float *const *)after, pi->count, &c->g->hp,
                     t, shape, ndim);
        for (int k = 0; k < 3; k++) {
            if (t < c->g->steps) snprintf(key, sizeof key, "step%d.%s%s", t, pre[k], pi->name);
            else snprintf(key, sizeof key, "%s%s", pre[k], pi->name);
            v_drift(c->rep, c->g, c->be->name, t, key, after[k]);
            free(after[k]);
        }
    }
    for (int p = 0; p < ANX_NUM_PARAMS; p++) free(before[p][0]), free(before[p][1]);
}

/* One training step t on the net, every layer judged.  0, or -1 when the net could not run the
 * step (anx_net_error says why). */
static int chain_step(chain *c, int t)
{
    const anx_model *m = &c->g->m;
    stepbuf s;
    memset(&s, 0, sizeof s);
    for (int p = 0; p < ANX_NUM_PARAMS; p++) { /* the parameters this step uses */
        s.W[p] = v_alloc(m->params[p].count);
        anx_net_get_state(c->net, ANX_PARAM, p, s.W[p]);
    }
    if (anx_net_forward(c->net, 1, &s.loss) || anx_net_backward(c->net)) {
        stepbuf_free(&s);
        return -1;
    }
    step_fetch(c, &s);
    step_forward(c, t, &s);
    step_backward(c, t, &s);
    step_adam(c, t, &s);
    stepbuf_free(&s);
    return 0;
}

void v_chained(anx_verify_report *rep, vgold *g, const anx_backend *be, const anx_verify_opts *o)
{
    const anx_model *m = &g->m;
    char err[256];
    anx_net *net = anx_net_create(be, &m->cfg, o->threads, err, sizeof err);
    if (!net) return v_skip(v_row(rep, g, be->name, "chained", "-", "-", "-"), "%s", err);
    if (o->log) fprintf(o->log, "verify %s chained %s\n", be->name, g->base);
    chain c = {rep, g, be, o, net};
    if (anx_net_init_params(net, g->seed)) {
        v_fail_status(v_row(rep, g, be->name, "chained", "-", "-", "-"), anx_net_error(net));
        anx_net_destroy(net);
        return;
    }
    anx_net_set_dropout_seed(net, g->seed);
    anx_net_set_input(net, g->input, g->target);
    anx_net_set_masks(net, NULL, NULL); /* back to drawn masks: frees, cannot fail */
    /* core's init is what the golden started from */
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        if (!wanted(&c, m->layers[pi->layer].name)) continue;
        float *w = v_alloc(pi->count);
        anx_net_get_state(net, ANX_PARAM, p, w);
        char key[96], mk[96], got[24];
        snprintf(key, sizeof key, "init.%s", pi->name);
        snprintf(mk, sizeof mk, "init_fnv1a64.%s", pi->name);
        anx_verify_row *r = v_row(rep, g, be->name, "chained", m->layers[pi->layer].name, "-", key);
        const char *want = anx_st_meta(&g->f, mk);
        snprintf(got, sizeof got, "%016llx", (unsigned long long)v_fnv1a64(w, pi->count * sizeof(float)));
        r->count = pi->count;
        r->verdict = want && !strcmp(want, got) ? ANX_PASSED : ANX_FAILED;
        if (r->verdict == ANX_FAILED)
            snprintf(r->reason, sizeof r->reason, "anx_net_init_params gives fnv1a64 %s, golden %s", got, want ? want : "-");
        free(w);
    }
    for (int t = 1; t <= g->steps; t++) {
        if (o->log && g->steps > 1) fprintf(o->log, "verify %s chained %s step %d\n", be->name, g->base, t);
        if (chain_step(&c, t)) {
            char what[16];
            snprintf(what, sizeof what, "step %d", t);
            v_fail_status(v_row(rep, g, be->name, "chained", "-", what, "-"), anx_net_error(net));
            break;
        }
    }
    anx_net_destroy(net);
}
