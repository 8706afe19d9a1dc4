/* The step driver: Alexnet on one backend.  See anx/net.h.
 *
 * Buffers (all in the backend's layout, sizes from backend->tensor_floats):
 *   act[0]            input              [n, in_dim, hw, hw]
 *   act[i+1]          output of layer i  (i = 0..19); act[20] are the logits [n, n_class]
 *   grad[i+1]         dLoss/d act[i+1];  grad[0] is never computed (nobody needs d input)
 *   mask[i]           Dropout layer i's mask, DST layout; ones[i] the eval-mode mask
 *   state[s]          one contiguous region per anx_state; parameter p at state[s] + poff[p]
 *   scratch           the backend's anx_args.scratch, one for all layers (they run one at a
 *                     time and keep nothing in it): the largest layer's scratch_bytes
 */
#include "anx/net.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/rng.h"

#define NL ANX_NUM_LAYERS
#define ALIGN_FLOATS 16 /* 64-byte alignment of every view */

struct anx_net {
    const anx_backend *be;
    anx_model m;
    int threads;
    void *ctx[NL + 1]; /* per layer, [NL] = loss */
    void *scratch;     /* anx_args.scratch of every call, scratch_bytes long */
    size_t scratch_bytes;
    int scratch_layer; /* the layer whose need sized it, -1 when none needs any */

    float *param_block;               /* the one allocation for the 4 parameter regions */
    size_t region_floats;             /* floats per region */
    float *state[ANX_STATE_COUNT];    /* region bases */
    size_t poff[ANX_NUM_PARAMS];      /* offset of parameter p in each region */

    float *act[NL + 1], *grad[NL + 1];
    float *mask[NL], *ones[NL];
    float *plain_mask[NL];            /* masks given by the caller (plain), NULL when drawn */
    int64_t *target;                  /* [n] */
    float loss;
    int64_t step;                     /* Adam's t */
    uint64_t dropout_seed;
    int64_t dropout_first;            /* the first sample's position in the global batch */
    anx_net_bwd_hook hook;            /* anx_net_set_bwd_hook */
    void *hook_ctx;

    double seconds[NL + 1][ANX_DIR_COUNT], adam_seconds;
    int bare;                         /* anx_net_set_bare: library_exec where there is one */
    unsigned char execd[NL + 1][ANX_DIR_COUNT]; /* (layer, dir) has run its exec once */
    char err[256];                    /* anx_net_error: why the last call that failed did */
};

const char *anx_net_error(const anx_net *net) { return net->err; }

/* Records a failure for anx_net_error and returns -1. */
static int fail(anx_net *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(anx_net *net, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(net->err, sizeof net->err, fmt, ap);
    va_end(ap);
    return -1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t round_up(size_t x) { return (x + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static float *alloc_floats(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, round_up(n ? n : 1) * sizeof(float))) return NULL;
    memset(p, 0, round_up(n ? n : 1) * sizeof(float));
    return p;
}

static const anx_layer_desc *desc_of(const anx_net *net, int layer)
{
    return layer == NL ? &net->m.loss : &net->m.layers[layer];
}

static size_t floats(const anx_net *net, int layer, anx_slot slot)
{
    return net->be->tensor_floats(desc_of(net, layer), slot);
}

/* Whether the training step runs (layer, dir). */
static int step_runs(const anx_net *net, int layer, anx_dir dir)
{
    if (dir == ANX_BWD_WEIGHTS && !anx_desc_has_weights(desc_of(net, layer))) return 0;
    return !(dir == ANX_BWD_DATA && layer == 0); /* no gradient w.r.t. the input */
}

/* Every (layer, direction) the training step runs must be accepted by the backend. */
static const char *check_declines(const anx_net *net, char *why, size_t cap)
{
    for (int i = 0; i <= NL; i++) {
        const anx_layer_desc *l = desc_of(net, i);
        for (int d = 0; d < ANX_DIR_COUNT; d++) {
            if (!step_runs(net, i, (anx_dir)d)) continue;
            const char *r = anx_backend_declines(net->be, l, (anx_dir)d);
            if (r) {
                snprintf(why, cap, "backend %s declines %s %s: %s", net->be->name, l->name,
                         anx_dir_name((anx_dir)d), r);
                return why;
            }
        }
    }
    if (!net->be->adam) {
        snprintf(why, cap, "backend %s has no Adam", net->be->name);
        return why;
    }
    return NULL;
}

/* The layout contract of backend.h: layer i+1 reads what layer i wrote. */
static const char *check_chain(const anx_net *net, char *why, size_t cap)
{
    for (int i = 0; i < NL; i++) {
        size_t out = floats(net, i, ANX_DST), in = floats(net, i + 1, ANX_SRC);
        if (out != in) {
            snprintf(why, cap, "backend %s: %s writes %zu floats but %s reads %zu", net->be->name,
                     desc_of(net, i)->name, out, desc_of(net, i + 1)->name, in);
            return why;
        }
    }
    return NULL;
}

static int alloc_params(anx_net *net)
{
    size_t total = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &net->m.params[p];
        net->poff[p] = total;
        total += round_up(floats(net, pi->layer, pi->slot));
    }
    net->region_floats = total;
    net->param_block = alloc_floats(total * ANX_STATE_COUNT);
    if (!net->param_block) return -1;
    for (int s = 0; s < ANX_STATE_COUNT; s++) net->state[s] = net->param_block + (size_t)s * total;
    return 0;
}

static int alloc_activations(anx_net *net)
{
    net->act[0] = alloc_floats(floats(net, 0, ANX_SRC));
    if (!net->act[0]) return -1;
    for (int i = 0; i < NL; i++) {
        size_t n = floats(net, i, ANX_DST);
        net->act[i + 1] = alloc_floats(n);
        net->grad[i + 1] = alloc_floats(n);
        if (!net->act[i + 1] || !net->grad[i + 1]) return -1;
        if (net->m.layers[i].op != ANX_OP_DROPOUT) continue;
        size_t plain = anx_desc_plain_count(&net->m.layers[i], ANX_DST);
        float *one = alloc_floats(plain);
        net->mask[i] = alloc_floats(n);
        net->ones[i] = alloc_floats(n);
        if (!one || !net->mask[i] || !net->ones[i]) {
            free(one);
            return -1;
        }
        for (size_t k = 0; k < plain; k++) one[k] = 1.0f;
        net->be->tensor_import(&net->m.layers[i], ANX_DST, net->ones[i], one);
        free(one);
    }
    net->target = calloc((size_t)net->m.cfg.batch, sizeof(int64_t));
    return net->target ? 0 : -1;
}

/* One scratch for the whole net, at the largest need of its layers' ctxs: the layers run one
 * at a time and keep nothing in it (backend.h), so a buffer per layer would only cost memory. */
static int alloc_scratch(anx_net *net)
{
    net->scratch_layer = -1;
    if (!net->be->scratch_bytes) return 0;
    for (int i = 0; i <= NL; i++) {
        const size_t b = net->be->scratch_bytes(net->ctx[i], desc_of(net, i));
        if (b > net->scratch_bytes) net->scratch_bytes = b, net->scratch_layer = i;
    }
    if (!net->scratch_bytes) return 0;
    net->scratch = alloc_floats((net->scratch_bytes + sizeof(float) - 1) / sizeof(float));
    return net->scratch ? 0 : -1;
}

anx_net *anx_net_create(const anx_backend *be, const anx_model_config *cfg, int threads, char *err,
                        size_t errlen)
{
    anx_net *net = calloc(1, sizeof *net);
    if (!net) {
        snprintf(err, errlen, "out of memory for the network");
        return NULL;
    }
    net->be = be;
    net->threads = threads > 0 ? threads : omp_get_max_threads();
    net->dropout_seed = 1;
    if (anx_model_init(&net->m, cfg, err, errlen)) goto fail;
    char why[256];
    if (check_declines(net, why, sizeof why) || check_chain(net, why, sizeof why)) {
        snprintf(err, errlen, "%s", why);
        goto fail;
    }
    omp_set_num_threads(net->threads);
    if (alloc_params(net) || alloc_activations(net)) {
        snprintf(err, errlen, "out of memory for Alexnet(%d, %d) at batch %d on backend %s",
                 cfg->in_dim, cfg->n_class, cfg->batch, be->name);
        goto fail;
    }
    for (int i = 0; i <= NL; i++) {
        const char *st = anx_backend_layer_create(be, &net->ctx[i], desc_of(net, i), net->threads);
        if (st) {
            snprintf(err, errlen, "%s on backend %s: %s", desc_of(net, i)->name, be->name, st);
            goto fail;
        }
    }
    if (alloc_scratch(net)) {
        snprintf(err, errlen, "backend %s: out of memory for the net's scratch (%.1f MiB, the need of %s)", be->name,
                 (double)net->scratch_bytes / (1024.0 * 1024.0), desc_of(net, net->scratch_layer)->name);
        goto fail;
    }
    return net;
fail:
    anx_net_destroy(net);
    return NULL;
}

void anx_net_destroy(anx_net *net)
{
    if (!net) return;
    for (int i = 0; i <= NL; i++)
        if (net->ctx[i] && net->be->layer_destroy) net->be->layer_destroy(net->ctx[i]);
    for (int i = 0; i <= NL; i++) {
        free(net->act[i]);
        free(net->grad[i]);
    }
    for (int i = 0; i < NL; i++) {
        free(net->mask[i]);
        free(net->ones[i]);
        free(net->plain_mask[i]);
    }
    free(net->param_block);
    free(net->target);
    free(net->scratch);
    free(net);
}

const anx_model *anx_net_model(const anx_net *net) { return &net->m; }
const anx_backend *anx_net_backend(const anx_net *net) { return net->be; }

static float *param_view(const anx_net *net, anx_state s, int p) { return net->state[s] + net->poff[p]; }

int anx_net_init_params(anx_net *net, uint64_t seed)
{
    memset(net->param_block, 0, net->region_floats * ANX_STATE_COUNT * sizeof(float));
    size_t max = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++)
        if (net->m.params[p].count > max) max = net->m.params[p].count;
    float *plain = alloc_floats(max);
    if (!plain) return fail(net, "out of memory initialising parameters");
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &net->m.params[p];
        /* PyTorch's default: kaiming_uniform(a=sqrt(5)) for weights and the bias rule both
           give U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
        anx_rng_fill_uniform(plain, pi->count, anx_rng_key(seed, pi->name, 0),
                             1.0 / sqrt((double)pi->fan_in));
        anx_net_set_state(net, ANX_PARAM, p, plain);
    }
    free(plain);
    net->step = 0;
    return 0;
}

void anx_net_set_state(anx_net *net, anx_state s, int p, const float *plain)
{
    const anx_param_info *pi = &net->m.params[p];
    net->be->tensor_import(&net->m.layers[pi->layer], pi->slot, param_view(net, s, p), plain);
}

void anx_net_get_state(const anx_net *net, anx_state s, int p, float *plain)
{
    const anx_param_info *pi = &net->m.params[p];
    net->be->tensor_export(&net->m.layers[pi->layer], pi->slot, plain, param_view(net, s, p));
}

int64_t anx_net_step_count(const anx_net *net) { return net->step; }
void anx_net_set_step_count(anx_net *net, int64_t t) { net->step = t; }

int anx_net_set_input(anx_net *net, const float *input, const int64_t *target)
{
    for (int i = 0; i < net->m.cfg.batch; i++)
        if (target[i] < 0 || target[i] >= net->m.cfg.n_class) return -1;
    memcpy(net->target, target, (size_t)net->m.cfg.batch * sizeof(int64_t));
    net->be->tensor_import(&net->m.layers[0], ANX_SRC, net->act[0], input);
    return 0;
}

int anx_net_set_masks(anx_net *net, const float *mask16, const float *mask19)
{
    const float *given[2] = {mask16, mask19};
    int k = 0;
    for (int i = 0; i < NL; i++) {
        if (net->m.layers[i].op != ANX_OP_DROPOUT) continue;
        free(net->plain_mask[i]);
        net->plain_mask[i] = NULL;
        const float *src = given[k++];
        if (!src) continue;
        size_t n = anx_desc_plain_count(&net->m.layers[i], ANX_DST);
        net->plain_mask[i] = alloc_floats(n);
        if (!net->plain_mask[i]) return fail(net, "out of memory for the dropout mask of %s", net->m.layers[i].name);
        memcpy(net->plain_mask[i], src, n * sizeof(float));
    }
    return 0;
}

void anx_net_set_dropout_seed(anx_net *net, uint64_t seed) { net->dropout_seed = seed; }
void anx_net_set_dropout_offset(anx_net *net, int64_t first) { net->dropout_first = first; }

void anx_net_set_bwd_hook(anx_net *net, anx_net_bwd_hook hook, void *ctx)
{
    net->hook = hook;
    net->hook_ctx = ctx;
}

float *anx_net_grad_bucket(anx_net *net, int layer, size_t *count)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2) /* weight p and bias p + 1 are allocated back to back */
        if (net->m.params[p].layer == layer) {
            size_t end = p + 2 < ANX_NUM_PARAMS ? net->poff[p + 2] : net->region_floats;
            *count = end - net->poff[p];
            return param_view(net, ANX_GRAD, p);
        }
    *count = 0;
    return NULL;
}

/* The masks of the forward pass that belongs to update t = step + 1. */
static int prepare_masks(anx_net *net)
{
    for (int i = 0; i < NL; i++) {
        const anx_layer_desc *l = &net->m.layers[i];
        if (l->op != ANX_OP_DROPOUT) continue;
        if (net->plain_mask[i]) {
            net->be->tensor_import(l, ANX_DST, net->mask[i], net->plain_mask[i]);
            continue;
        }
        size_t n = anx_desc_plain_count(l, ANX_DST);
        float *plain = alloc_floats(n);
        if (!plain) return fail(net, "out of memory for the dropout mask of %s", l->name);
        anx_rng_fill_dropout_from(plain, n, anx_rng_key(net->dropout_seed, l->name, (uint64_t)net->step + 1),
                                  l->p, (uint64_t)net->dropout_first * (n / (size_t)net->m.cfg.batch));
        net->be->tensor_import(l, ANX_DST, net->mask[i], plain);
        free(plain);
    }
    return 0;
}

int anx_net_set_bare(anx_net *net, int on)
{
    net->bare = on != 0;
    int n = 0;
    for (int i = 0; i <= NL; i++)
        for (int d = 0; d < ANX_DIR_COUNT; d++)
            n += step_runs(net, i, (anx_dir)d) && net->be->library_exec[desc_of(net, i)->op][d];
    return n;
}

/* The call of (layer, dir): exec, or in bare mode the library's call alone once the exec has
 * run there (library_exec reads what its exec left, e.g. a flattened copy in the ctx). */
static anx_exec_fn exec_of(const anx_net *net, int layer, anx_dir dir)
{
    const anx_op op = desc_of(net, layer)->op;
    if (net->bare && net->execd[layer][dir] && net->be->library_exec[op][dir]) return net->be->library_exec[op][dir];
    return net->be->exec[op][dir];
}

/* One exec (or its bare call), with the net's scratch; a failure is recorded as
 * "<layer> <dir> on <backend>: <status>" ("... on <backend> (bare call): ..." for a bare one). */
static int run(anx_net *net, int layer, anx_dir dir, const anx_args *args)
{
    const anx_layer_desc *l = desc_of(net, layer);
    anx_args a = *args;
    a.scratch = net->scratch;
    a.scratch_bytes = net->scratch_bytes;
    const anx_exec_fn fn = exec_of(net, layer, dir);
    double t0 = now();
    anx_status st = fn(net->ctx[layer], l, &a);
    net->seconds[layer][dir] = now() - t0;
    const int bare = fn != net->be->exec[l->op][dir];
    if (!st && !bare) net->execd[layer][dir] = 1;
    if (!st) return 0;
    return fail(net, "%s %s on %s%s: %s", l->name, anx_dir_name(dir), net->be->name, bare ? " (bare call)" : "", st);
}

static anx_args layer_args(anx_net *net, int i)
{
    anx_args a = {0};
    a.src = net->act[i];
    a.dst = net->act[i + 1];
    a.diff_src = i > 0 ? net->grad[i] : NULL;
    a.diff_dst = net->grad[i + 1];
    int p = -1;
    for (int k = 0; k < ANX_NUM_PARAMS; k += 2)
        if (net->m.params[k].layer == i) p = k;
    if (p >= 0) {
        a.weights = param_view(net, ANX_PARAM, p);
        a.bias = param_view(net, ANX_PARAM, p + 1);
        a.diff_weights = param_view(net, ANX_GRAD, p);
        a.diff_bias = param_view(net, ANX_GRAD, p + 1);
    }
    return a;
}

int anx_net_forward(anx_net *net, int train, float *loss)
{
    if (train && prepare_masks(net)) return -1;
    for (int i = 0; i < NL; i++) {
        anx_args a = layer_args(net, i);
        if (net->m.layers[i].op == ANX_OP_DROPOUT) a.mask = train ? net->mask[i] : net->ones[i];
        if (run(net, i, ANX_FWD, &a)) return -1;
    }
    anx_args a = {0};
    a.src = net->act[NL];
    a.target = net->target;
    a.loss = &net->loss;
    if (run(net, NL, ANX_FWD, &a)) return -1;
    *loss = net->loss;
    return 0;
}

int anx_net_backward(anx_net *net)
{
    anx_args a = {0};
    a.src = net->act[NL];
    a.target = net->target;
    a.diff_src = net->grad[NL];
    if (run(net, NL, ANX_BWD_DATA, &a)) return -1;
    for (int i = NL - 1; i >= 0; i--) {
        anx_args b = layer_args(net, i);
        if (net->m.layers[i].op == ANX_OP_DROPOUT) b.mask = net->mask[i];
        if (anx_desc_has_weights(&net->m.layers[i])) {
            if (run(net, i, ANX_BWD_WEIGHTS, &b)) return -1;
            if (net->hook) net->hook(net->hook_ctx, net, i);
        }
        if (i > 0 && run(net, i, ANX_BWD_DATA, &b)) return -1;
        if (net->hook) net->hook(net->hook_ctx, net, -1);
    }
    return 0;
}

void anx_net_adam(anx_net *net, float lr)
{
    anx_adam_hparams hp = {lr, 0.9f, 0.999f, 1e-8f, net->step + 1};
    double t0 = now();
    net->be->adam(net->state[ANX_PARAM], net->state[ANX_GRAD], net->state[ANX_EXP_AVG],
                  net->state[ANX_EXP_AVG_SQ], net->region_floats, &hp, net->threads);
    net->adam_seconds = now() - t0;
    net->step++;
}

int anx_net_train_step(anx_net *net, float lr, float *loss)
{
    if (anx_net_forward(net, 1, loss) || anx_net_backward(net)) return -1;
    anx_net_adam(net, lr);
    return 0;
}

void anx_net_get_activation(const anx_net *net, int layer, int grad, float *plain)
{
    const float *src = grad ? net->grad[layer + 1] : net->act[layer + 1];
    net->be->tensor_export(&net->m.layers[layer], ANX_DST, plain, src);
}

void anx_net_get_mask(const anx_net *net, int layer, float *plain)
{
    net->be->tensor_export(&net->m.layers[layer], ANX_DST, plain, net->mask[layer]);
}

double anx_net_layer_seconds(const anx_net *net, int layer, anx_dir dir) { return net->seconds[layer][dir]; }
double anx_net_adam_seconds(const anx_net *net) { return net->adam_seconds; }

long long anx_net_scratch_bytes(const anx_net *net, int *layer)
{
    if (layer) *layer = net->scratch_layer;
    return net->be->scratch_bytes ? (long long)net->scratch_bytes : -1;
}

long long anx_net_workspace_bytes(const anx_net *net, int layer)
{
    if (!net->be->workspace_bytes) return -1;
    return (long long)net->be->workspace_bytes(net->ctx[layer], desc_of(net, layer));
}

int anx_net_first_nonfinite(anx_net *net, int *layer)
{
    size_t max = 0;
    for (int i = 0; i < NL; i++) {
        size_t n = anx_desc_plain_count(&net->m.layers[i], ANX_DST);
        if (n > max) max = n;
    }
    float *plain = alloc_floats(max);
    if (!plain) return fail(net, "out of memory for the finiteness check");
    int bad = -1;
    for (int i = 0; i < NL && bad < 0; i++) {
        anx_net_get_activation(net, i, 0, plain);
        size_t n = anx_desc_plain_count(&net->m.layers[i], ANX_DST);
        for (size_t k = 0; k < n; k++)
            if (!isfinite(plain[k])) {
                bad = i;
                break;
            }
    }
    free(plain);
    if (bad < 0 && !isfinite(net->loss)) bad = NL;
    *layer = bad;
    return 0;
}
