/* test_cblas_workspace — the price of im2col, allocated once per net and reported (#18 item 1).
 *
 * 1. Per layer of Alexnet(3, 5) at batch 1 and 2 with 2 threads: cblas's ctx holds nothing
 *    (workspace_bytes 0), and its scratch_bytes is derived here from the shape alone: a Conv2d
 *    needs ic*kh*kw * oh*ow floats per image computed at once, min(threads, batch) of them (one
 *    when the impl name says "1 thread"); every other layer needs none.
 * 2. `anx step --backend cblas --batch 2 --threads 2` prints one scratch line for the net with
 *    the maximum of those needs in bytes and the layer that has it, and a workspace of 0.
 * 3. Two nets alive at once, run at the same time on two threads: every exec of one net gets
 *    the same scratch of exactly the net's bytes (one allocation per net, not one per layer),
 *    the two nets get different ones, and each net's loss and gradients have the bits of the
 *    same net run alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "spawn.h"
#include "testutil.h"

#define THREADS 2
#define GRAD_P 8 /* conv.8.weight: a gradient that passes every Conv2d's bwd_data on its way */

/* Bytes of scratch layer l needs, from the shape: im2col [ic*kh*kw][oh*ow] per image at once. */
static size_t want_scratch(const anx_backend *be, void *ctx, const anx_layer_desc *l, int threads)
{
    if (l->op != ANX_OP_CONV2D) return 0;
    const int serial = strstr(be->impl_name(ctx, l, ANX_FWD), " 1 thread") != NULL;
    const int slices = serial ? 1 : l->n < threads ? l->n : threads;
    return (size_t)l->ic * l->kh * l->kw * l->oh * l->ow * sizeof(float) * (size_t)slices;
}

/* Check 1 at one batch; returns the net's want (the largest need) and its layer in *at. */
static size_t check_layers(const anx_backend *be, int batch, int *at)
{
    anx_model m;
    char err[256];
    const anx_model_config cfg = {3, 5, batch, 227};
    TU_CHECKF(anx_model_init(&m, &cfg, err, sizeof err) == 0, "model: %s", err);
    size_t max = 0;
    *at = -1;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m.layers[i];
        void *ctx = tu_layer_create(be, l, THREADS);
        const size_t want = want_scratch(be, ctx, l, THREADS), got = be->scratch_bytes(ctx, l);
        TU_CHECKF(got == want, "batch %d %s: scratch_bytes %zu, want %zu (its im2col matrices)", batch, l->name, got,
                  want);
        TU_CHECKF(be->workspace_bytes(ctx, l) == 0, "batch %d %s: the ctx holds %zu bytes, want 0 (scratch is the net's)",
                  batch, l->name, be->workspace_bytes(ctx, l));
        if (want > max) max = want, *at = i;
        if (ctx) be->layer_destroy(ctx);
    }
    printf("batch %d: the net's scratch should be %zu bytes, %s's need\n", batch, max, *at >= 0 ? m.layers[*at].name : "none");
    return max;
}

/* ---- check 3: a cblas table whose exec records the scratch each call of this thread's net got ---- */

static const anx_backend *g_inner;
static _Thread_local void *t_scratch;      /* the first scratch this thread's net passed */
static _Thread_local size_t t_bytes;
static _Thread_local int t_calls, t_other; /* execs, and execs given another pointer or size */

static anx_status record(void *ctx, const anx_layer_desc *l, const anx_args *a, anx_dir dir)
{
    if (!t_calls++) t_scratch = a->scratch, t_bytes = a->scratch_bytes;
    else t_other += a->scratch != t_scratch || a->scratch_bytes != t_bytes;
    return g_inner->exec[l->op][dir](ctx, l, a);
}
static anx_status rec_fwd(void *ctx, const anx_layer_desc *l, const anx_args *a) { return record(ctx, l, a, ANX_FWD); }
static anx_status rec_bwd_data(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return record(ctx, l, a, ANX_BWD_DATA);
}
static anx_status rec_bwd_weights(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    return record(ctx, l, a, ANX_BWD_WEIGHTS);
}

typedef struct run {
    anx_net *net;
    int rc;
    float loss;
    float *grad; /* [params[GRAD_P].count] */
    void *scratch;
    size_t bytes;
    int calls, other;
} run;

/* forward(train) + backward of one net on its own thread's records */
static void *run_net(void *arg)
{
    run *r = arg;
    t_calls = t_other = 0;
    r->rc = anx_net_forward(r->net, 1, &r->loss) || anx_net_backward(r->net);
    if (!r->rc) anx_net_get_state(r->net, ANX_GRAD, GRAD_P, r->grad);
    r->scratch = t_scratch, r->bytes = t_bytes, r->calls = t_calls, r->other = t_other;
    return NULL;
}

static anx_net *make_net(const anx_backend *be, const float *x, const int64_t *y)
{
    char err[256];
    const anx_model_config cfg = {3, 5, 1, 227};
    anx_net *net = anx_net_create(be, &cfg, THREADS, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create(cblas): %s", err);
    if (!net) return NULL;
    TU_CHECK(anx_net_init_params(net, 18) == 0);
    TU_CHECK(anx_net_set_input(net, x, y) == 0);
    return net;
}

static void check_two_nets(const anx_backend *be, size_t want, const char *want_layer)
{
    anx_backend wrap = *be; /* the same backend, its execs recorded */
    g_inner = be;
    anx_exec_fn rec[ANX_DIR_COUNT] = {rec_fwd, rec_bwd_data, rec_bwd_weights};
    for (int op = 0; op < ANX_OP_COUNT; op++)
        for (int d = 0; d < ANX_DIR_COUNT; d++) wrap.exec[op][d] = be->exec[op][d] ? rec[d] : NULL;
    const size_t nx = 3 * 227 * 227;
    float *x = malloc(nx * sizeof *x);
    tu_fill_uniform(x, nx, 18, -1.0f, 1.0f);
    const int64_t y[1] = {3};
    anx_net *a = make_net(&wrap, x, y), *b = make_net(&wrap, x, y);
    if (!a || !b) goto done;
    int layer;
    TU_CHECKF(anx_net_scratch_bytes(a, &layer) == (long long)want, "anx_net_scratch_bytes %lld, want %zu",
              anx_net_scratch_bytes(a, NULL), want);
    TU_CHECKF(layer >= 0 && strcmp(anx_net_model(a)->layers[layer].name, want_layer) == 0,
              "the scratch is sized by layer %d, want %s", layer, want_layer);
    const size_t ng = anx_net_model(a)->params[GRAD_P].count;
    run alone = {.net = a, .grad = malloc(ng * sizeof(float))};
    run_net(&alone); /* a alone, on this thread */
    run two[2] = {{.net = a, .grad = malloc(ng * sizeof(float))}, {.net = b, .grad = malloc(ng * sizeof(float))}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) TU_CHECK(pthread_create(&th[k], NULL, run_net, &two[k]) == 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        const run *r = k ? &two[1] : &two[0];
        const char *which = k ? "net b" : "net a";
        TU_CHECKF(r->rc == 0, "%s: %s", which, anx_net_error(r->net));
        TU_CHECKF(r->calls > 0 && r->other == 0 && r->scratch && r->bytes == want,
                  "%s: %d of %d execs got another scratch than the first (%p, %zu bytes; want one of %zu bytes)", which,
                  r->other, r->calls, r->scratch, r->bytes, want);
        TU_CHECKF(r->loss == alone.loss && memcmp(r->grad, alone.grad, ng * sizeof(float)) == 0,
                  "%s, run beside the other: loss %.9g and grad of %s differ from the net run alone (loss %.9g)", which,
                  (double)r->loss, anx_net_model(a)->params[GRAD_P].name, (double)alone.loss);
    }
    TU_CHECKF(two[0].scratch != two[1].scratch, "two nets alive at once share one scratch %p", two[0].scratch);
    printf("two nets at once: %d and %d execs, scratch %p (%zu bytes) and %p (%zu bytes), want %zu each\n", two[0].calls,
           two[1].calls, two[0].scratch, two[0].bytes, two[1].scratch, two[1].bytes, want);
    free(alone.grad), free(two[0].grad), free(two[1].grad);
done:
    anx_net_destroy(a), anx_net_destroy(b);
    free(x);
}

int main(void)
{
    const anx_backend *be = anx_backend_find("cblas");
    const char *why = !be ? "not in this build" : be->unavailable ? be->unavailable() : NULL;
    if (why) {
        printf("test_cblas_workspace: skipped: %s\n", why);
        return 77;
    }
    TU_CHECK(be->workspace_bytes != NULL && be->scratch_bytes != NULL);
    if (!be->workspace_bytes || !be->scratch_bytes) return tu_finish("test_cblas_workspace");
    int at1, at2;
    const size_t want1 = check_layers(be, 1, &at1), want2 = check_layers(be, 2, &at2);

    anx_model m;
    char err[256];
    TU_CHECK(anx_model_init(&m, &(anx_model_config){3, 5, 2, 227}, err, sizeof err) == 0);
    char want_line[512];
    snprintf(want_line, sizeof want_line,
             "workspace: cblas holds 0.00 MiB beside the tensors\n"
             "scratch: cblas shares one buffer of %zu bytes (%.2f MiB) among the net's layers, sized by %s's need\n",
             want2, (double)want2 / (1024.0 * 1024.0), at2 >= 0 ? m.layers[at2].name : "?");
    const char *args[] = {"step", "--backend", "cblas", "--batch", "2", "--classes", "5", "--threads", "2", NULL};
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, args);
    TU_CHECKF(r.status == 0 && strstr(r.out, want_line), "anx step --backend cblas: exit %d, want the lines\n%sgot:\n%s%s",
              r.status, want_line, r.out, r.err);
    printf("%s", want_line);
    tu_run_free(&r);

    TU_CHECK(anx_model_init(&m, &(anx_model_config){3, 5, 1, 227}, err, sizeof err) == 0);
    check_two_nets(be, want1, at1 >= 0 ? m.layers[at1].name : "?");
    return tu_finish("test_cblas_workspace");
}
