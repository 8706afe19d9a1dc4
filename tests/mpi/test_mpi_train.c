/* mpirun -np N anx train (argv[1] is the anx binary): the trainer's data parallelism.
 *  1. sharding, masks, the short last batch and validation equal one process: on 5 pictures at
 *     --batch 4 (batches 4 and 1; at np 2 the second gives rank 1 nothing, so it exchanges zeros)
 *     with --lr 1e-30, Adam moves no parameter (p - 1e-30 == p in float for every |p| > 1e-22,
 *     and the seed draws no zero: checked), so every batch is a pure forward/backward of the initial model.  On ref each sample is
 *     computed alone, so the epoch's train accuracy and val accuracy must be equal exactly and
 *     the train loss within the rounding of its sums (mean of <= 4 losses per rank, then sums of
 *     <= 5 in double: |d| <= (2 gamma_4 + 3u) * loss).  A rank reading the wrong slice, or
 *     drawing masks at the wrong positions, changes the loss by far more (~1e-3).
 *     The Adam moments in the two runs' checkpoints check the gradients themselves, and with them
 *     the weighting of the short last batch, within a derived bound (see check_adam_state).
 *  2. --resume with another N: the np 2 checkpoint continues under one process to epoch 2.
 *  3. a rank that fails alone (an unreadable picture in rank 1's slice) ends every rank within
 *     the timeout, exit non-zero, one line from anx naming rank 1 and the file, no checkpoint.
 *  4. --batch 3 at np 2 is refused with one line, exit 2.
 *  5. (argument "uneven", the sweep tier's test_mpi_train_more) the uneven world: a short batch
 *     of 4 split 2 + 1 + 1 over 3 ranks, its Adam state against one process (check_uneven).
 * argv[2] lists the parts: equal (1, 2), failure (3, 4), uneven (5); default equal,failure.
 * Skipped (77) without mpirun or in a build without MPI. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "anx/backend.h"
#include "anx/data.h"
#include "anx/dist.h"
#include "anx/safetensors.h"
#include "mpi_bound.h"
#include "mpi_test.h"
#include "testutil.h"

static const char *anx;
static char dir[256];
static const double U = MPI_U;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const char *prefix, const char *args, char *out, size_t cap)
{
    char cmd[2048], path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s' 2>&1", prefix, anx, args, path);
    printf("$ %s anx %s\n", prefix, args);
    fflush(stdout);
    int st = system(cmd);
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n = fread(out, 1, cap - 1, f);
        out[n] = 0;
        fclose(f);
    }
    printf("%s", out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static cJSON *metrics_epoch(const char *path, int epoch)
{
    FILE *f = fopen(path, "rb");
    char line[4096];
    cJSON *found = NULL;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line), *e = cJSON_GetObjectItem(o, "epoch");
        if (cJSON_IsNumber(e) && e->valueint == epoch) {
            cJSON_Delete(found);
            found = o;
        } else {
            cJSON_Delete(o);
        }
    }
    if (f) fclose(f);
    return found;
}

static double num(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItem(o, k);
    TU_CHECKF(cJSON_IsNumber(v), "metrics: no number %s", k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}


/* ---- the Adam state after epoch 1: the short last batch's weighting, with real gradients ----
 * The metrics agree whatever the gradients' weights; the Adam moments do not.  Epoch 1 is two
 * steps at parameters that --lr 1e-30 leaves put (checked below): the full batch (np 2: 2 + 2,
 * weights 1/2) and the last, short one (np 2: 1 + 0, weights 1 and 0: rank 0 computes what one
 * process computes, on a net of 1, and rank 1 adds zeros).  So the np 2 run's step-2 gradient g2
 * must be the one process's bit for bit, and its step-1 gradient is within mpi_bound.h's
 * split-sum bound d of g1 (K = 4 OH OW, N = 2: the weights 1/2 scale every rank's terms exactly).
 * ref's Adam (ref/adam.inc) computes, RN a rounding to float (|RN(x) - x| <= u |x|), fma one:
 *   m1 = RN(c1 g1)   v1 = RN(RN(c2 g1) g1)   m2 = RN(c1 g2 + RN(b1 m1))   v2 = RN(RN(c2 g2) g2 + RN(b2 v1))
 * (c1 = 1 - b1, c2 = 1 - b2), so with g2 the same in both runs:
 *   |m2' - m2| <= (1 + u) Da + 2u |m2| / (1 - u),   Da = b1 Dm1 + u b1 (2 |m1| + Dm1),
 *                                                   Dm1 = c1 d + u c1 (2 |g1| + d);
 *   |v2' - v2| <= (1 + u) Dv + 2u v2 / (1 - u),     Dv = b2 Dv1 + u b2 (2 v1 + Dv1),
 *                                                   Dv1 = c2 d (2 |g1| + d) + 3u c2 ((|g1| + d)^2 + g1^2),
 * each plus 16 MPI_ETA for roundings into the subnormal range (v ~ g^2 gets there).
 * A short-batch weight other than count_r/count scales g2 (an unweighted 1/N average halves it,
 * count_r/batch quarters it) and moves m2 by c1 |g2| / 2 or more: far above the bound.
 * g1, g2, m1, v1 and M are not in the checkpoints: the one-process run is replayed here on ref
 * with anx train's own calls (its loader, init and dropout seed, the full batch on a net of 4,
 * the last image on a net of 1 holding the same state), and the replay must end bit for bit in
 * the one-process checkpoint, or the bounds would not be that run's. */
/* SEED: no initial parameter is 0 (each is with probability 2^-24: ~3.5 expected in 58M, so
 * ~97% of seeds have one), which --lr 1e-30 would move to ~1e-30, by amounts that differ between
 * the runs; checked below on the checkpoint. */
enum { FULL = 4, SEED = 151 };
static const float TINY_LR = 1e-30f;

static float round_up(double x)
{
    const float f = (float)x;
    return (double)f >= x ? f : nextafterf(f, INFINITY);
}

/* Tensor name of checkpoint f as n floats (malloc'd), or NULL (a failure). */
static float *ck_f32(const anx_st_file *f, const char *name, size_t n)
{
    char err[512];
    float *v = malloc(n * sizeof(float));
    TU_CHECKF(v, "out of memory for %s", name);
    if (v && anx_st_get_f32(f, name, v, n, NULL, -1, err, sizeof err)) {
        TU_CHECKF(0, "%s", err);
        free(v);
        return NULL;
    }
    return v;
}

typedef struct replay {
    int batch, first, ranks, steps; /* --batch, images in its first batch, ranks of the run compared, steps (1 or 2) */
    anx_net *net;                                  /* the net of the step that ran last */
    float *da[ANX_NUM_PARAMS], *dv[ANX_NUM_PARAMS]; /* step 1's Da and Dv (Dm1 and Dv1 if 1 step), rounded up */
    double worst[2];                               /* max |np 2 - one| / bound of m and v */
} replay;

/* Da and Dv of parameter q (Dm1 and Dv1 when step 1 is the last), whose gradient elements have
 * magnitudes M over K terms; the net holds step 1's gradient g1 and, after its Adam, m1 and v1. */
static void step1_bounds(replay *r, int q, const float *M, double K)
{
    const double b1 = 0.9f, c1 = (float)(1.0 - 0.9), b2 = 0.999f, c2 = (float)(1.0 - 0.999);
    const size_t n = anx_net_model(r->net)->params[q].count;
    float *g1 = malloc(n * sizeof(float)), *m1 = malloc(n * sizeof(float)), *v1 = malloc(n * sizeof(float));
    r->da[q] = malloc(n * sizeof(float)), r->dv[q] = malloc(n * sizeof(float));
    TU_CHECKF(g1 && m1 && v1 && r->da[q] && r->dv[q], "out of memory for the bounds of parameter %d", q);
    if (g1 && m1 && v1 && r->da[q] && r->dv[q]) {
        anx_net_get_state(r->net, ANX_GRAD, q, g1);
        anx_net_get_state(r->net, ANX_EXP_AVG, q, m1);
        anx_net_get_state(r->net, ANX_EXP_AVG_SQ, q, v1);
        for (size_t i = 0; i < n; i++) {
            const double a = fabs(g1[i]), d = mpi_grad_bound(g1[i], M[i], K, r->ranks);
            const double dm1 = c1 * d + U * c1 * (2 * a + d);
            const double dv1 = c2 * d * (2 * a + d) + 3 * U * c2 * ((a + d) * (a + d) + a * a);
            r->da[q][i] = round_up(r->steps == 1 ? dm1 : b1 * dm1 + U * b1 * (2 * fabs(m1[i]) + dm1));
            r->dv[q][i] = round_up(r->steps == 1 ? dv1 : b2 * dv1 + U * b2 * (2 * (double)v1[i] + dv1));
        }
    }
    free(g1), free(m1), free(v1);
}

/* M of layer's weight (mw) and bias (mb) gradients in the last backward of r->net (input x). */
static void layer_magnitudes(replay *r, const float *x, int layer, float *mw, float *mb)
{
    const anx_layer_desc *l = &anx_net_model(r->net)->layers[layer];
    const size_t ns = anx_desc_plain_count(l, ANX_SRC), nd = anx_desc_plain_count(l, ANX_DST);
    float *src = malloc(ns * sizeof(float)), *dd = malloc(nd * sizeof(float));
    TU_CHECKF(src && dd, "out of memory for %s's magnitudes", l->name);
    if (src && dd) {
        if (layer == 0) memcpy(src, x, ns * sizeof(float));
        else anx_net_get_activation(r->net, layer - 1, 0, src);
        anx_net_get_activation(r->net, layer, 1, dd);
        mpi_magnitudes(l, src, ns, dd, nd, mw, mb);
    }
    free(src), free(dd);
}

/* forward, backward and Adam of r->net on its input; 0, or -1 (a failure). */
static int replay_step(replay *r)
{
    float loss;
    const int rc = anx_net_forward(r->net, 1, &loss) || anx_net_backward(r->net);
    TU_CHECKF(!rc, "replay: %s", anx_net_error(r->net));
    if (!rc) anx_net_adam(r->net, TINY_LR);
    return rc ? -1 : 0;
}

/* Step 2's net of 1 in place of r->net, holding its parameters, moments and step count. */
static int replay_tail(replay *r)
{
    const anx_model *m = anx_net_model(r->net);
    anx_model_config cfg = m->cfg;
    char err[512];
    cfg.batch = 1;
    anx_net *tail = anx_net_create(anx_backend_reference(), &cfg, 1, err, sizeof err);
    size_t most = 0;
    for (int q = 0; q < ANX_NUM_PARAMS; q++) most = m->params[q].count > most ? m->params[q].count : most;
    float *scratch = malloc(most * sizeof(float));
    TU_CHECKF(tail && scratch, "replay: the net of 1: %s", tail ? "out of memory" : err);
    if (!tail || !scratch) {
        anx_net_destroy(tail), free(scratch);
        return -1;
    }
    static const anx_state kept[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    for (int s = 0; s < 3; s++)
        for (int q = 0; q < ANX_NUM_PARAMS; q++) {
            anx_net_get_state(r->net, kept[s], q, scratch);
            anx_net_set_state(tail, kept[s], q, scratch);
        }
    anx_net_set_step_count(tail, anx_net_step_count(r->net));
    anx_net_set_dropout_seed(tail, SEED);
    anx_net_destroy(r->net);
    r->net = tail;
    free(scratch);
    return 0;
}

/* anx train alone on data's pictures at --batch r->batch, replayed: step 1 on a net of r->first
 * (then each parameter's Da, Dv), step 2 (if r->steps is 2) on a net of 1.  0 / -1. */
static int replay_run(replay *r, const char *data)
{
    char err[512] = "", path[2200];
    anx_dataset d;
    snprintf(path, sizeof path, "%s/train", data);
    if (anx_dataset_open(&d, path, err, sizeof err)) {
        TU_CHECKF(0, "replay: %s", err);
        return -1;
    }
    const anx_loader_config lc = {r->batch, 1, SEED, 227, 0, 0, 1, 0}; /* anx train's, alone */
    anx_loader *ld = anx_loader_create(&d, &lc, err, sizeof err);
    float *x = malloc((size_t)r->batch * 3 * 227 * 227 * sizeof(float)), *mw = NULL;
    int64_t y[8];
    int count = 0, rc = -1;
    const anx_model_config cfg = {3, d.n_classes, r->first, 227}; /* alone, a short batch's net */
    r->net = ld && x ? anx_net_create(anx_backend_reference(), &cfg, 1, err, sizeof err) : NULL;
    if (!r->net || anx_net_init_params(r->net, SEED) || anx_loader_start_epoch(ld, 0, err, sizeof err) ||
        anx_loader_next(ld, x, y, &count, err, sizeof err) != 1 || count != r->first) {
        TU_CHECKF(0, "replay: the full batch: %s (%d images)", err[0] || !r->net ? err : anx_net_error(r->net), count);
        goto done;
    }
    anx_net_set_dropout_seed(r->net, SEED);
    anx_net_set_input(r->net, x, y);
    if (replay_step(r)) goto done;
    const anx_model *m = anx_net_model(r->net);
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2) { /* weight p and bias p + 1 of one layer */
        const int layer = m->params[p].layer;
        mw = malloc((m->params[p].count + m->params[p + 1].count) * sizeof(float));
        TU_CHECKF(mw, "out of memory for %s's magnitudes", m->layers[layer].name);
        if (!mw) goto done;
        layer_magnitudes(r, x, layer, mw, mw + m->params[p].count);
        step1_bounds(r, p, mw, mpi_terms(&m->layers[layer], r->first));
        step1_bounds(r, p + 1, mw + m->params[p].count, mpi_terms(&m->layers[layer], r->first));
        free(mw), mw = NULL;
    }
    if (r->steps == 1) {
        rc = 0;
        goto done;
    }
    if (replay_tail(r) || anx_loader_next(ld, x, y, &count, err, sizeof err) != 1 || count != 1) {
        TU_CHECKF(0, "replay: the last batch: %s (%d images, want 1)", err, count);
        goto done;
    }
    anx_net_set_input(r->net, x, y);
    if (replay_step(r)) goto done;
    rc = 0;
done:
    free(mw), free(x);
    anx_loader_destroy(ld);
    anx_dataset_free(&d);
    return rc;
}

/* Parameter q of the np N checkpoint two against the one-process checkpoint one and the replay. */
static void check_param(const anx_st_file *one, const anx_st_file *two, replay *r, int q)
{
    static const char *const prefix[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
    static const anx_state st[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    const anx_param_info *pi = &anx_net_model(r->net)->params[q];
    const size_t n = pi->count;
    char name[96];
    float *mine = malloc(n * sizeof(float));
    double *want = malloc(n * sizeof(double)), *bound = malloc(n * sizeof(double));
    TU_CHECKF(mine && want && bound, "out of memory for %s", pi->name);
    for (int s = 0; s < 3 && mine && want && bound; s++) {
        snprintf(name, sizeof name, "%s%s", prefix[s], pi->name);
        float *a = ck_f32(one, name, n), *b = ck_f32(two, name, n);
        if (a && b) {
            anx_net_get_state(r->net, st[s], q, mine);
            snprintf(name, sizeof name, "%s%s (the replay against anx train alone)", prefix[s], pi->name);
            tu_expect_bitwise(mine, a, n, name);
            if (s == 0) {
                size_t tiny = 0;
                for (size_t i = 0; i < n; i++) tiny += !(fabsf(a[i]) >= 0x1p-60f);
                TU_CHECKF(tiny == 0, "%s: %zu elements below 2^-60 (init from seed %d has zeros): --lr 1e-30 moves them",
                          pi->name, tiny, SEED);
                snprintf(name, sizeof name, "%s (np %d against one process)", pi->name, r->ranks);
                tu_expect_bitwise(b, a, n, name);
            } else {
                const float *D = s == 1 ? r->da[q] : r->dv[q];
                for (size_t i = 0; i < n; i++) /* one step: D is m1's and v1's bound itself */
                    want[i] = a[i], bound[i] = (r->steps == 1 ? D[i] : (1 + U) * D[i] + 2 * U * fabs(want[i]) / (1 - U)) +
                                               16 * MPI_ETA;
                snprintf(name, sizeof name, "%s%s (np %d against one process)", prefix[s], pi->name, r->ranks);
                tu_expect_within(b, want, bound, n, name);
                for (size_t i = 0; i < n; i++) /* how close to its bound the closest element came */
                    if (bound[i] > 0 && fabs(b[i] - want[i]) / bound[i] > r->worst[s - 1])
                        r->worst[s - 1] = fabs(b[i] - want[i]) / bound[i];
            }
        }
        free(a), free(b);
    }
    free(mine), free(want), free(bound);
}

/* The Adam state of the np N checkpoint ftwo against the one-process one fone (see above); r
 * says the run (batch, first, ranks, steps). */
static void check_adam_state(const char *data, const char *fone, const char *ftwo, replay r)
{
    anx_st_file one, two;
    char err[512];
    if (anx_st_read(&one, fone, err, sizeof err)) {
        TU_CHECKF(0, "%s", err);
        return;
    }
    if (anx_st_read(&two, ftwo, err, sizeof err)) {
        TU_CHECKF(0, "%s", err);
        anx_st_free(&one);
        return;
    }
    const double t0 = now();
    const clock_t c0 = clock();
    if (replay_run(&r, data) == 0)
        for (int q = 0; q < ANX_NUM_PARAMS; q++) check_param(&one, &two, &r, q);
    printf("Adam state at np %d against one process: worst |difference| / bound %.3g (exp_avg), %.3g (exp_avg_sq); "
           "replayed and compared in %.1f s (%.1f s CPU)\n",
           r.ranks, r.worst[0], r.worst[1], now() - t0, (double)(clock() - c0) / CLOCKS_PER_SEC);
    for (int q = 0; q < ANX_NUM_PARAMS; q++) free(r.da[q]), free(r.dv[q]);
    anx_net_destroy(r.net);
    anx_st_free(&one);
    anx_st_free(&two);
}

static const char *MPI2 = "timeout 600 mpirun -np 2 --mca btl self,vader";

static void check_equal_and_resume(void)
{
    char args[2048], out[65536], m1[300], m2[300], ck[300], ck1[300];
    snprintf(args, sizeof args, "flowers --out %s/five --per-class 1 --val 1 --seed 5", dir);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    snprintf(m1, sizeof m1, "%s/one.jsonl", dir);
    snprintf(m2, sizeof m2, "%s/two.jsonl", dir);
    snprintf(ck, sizeof ck, "%s/two.safetensors", dir);
    snprintf(ck1, sizeof ck1, "%s/one.safetensors", dir);
    char common[96]; /* what the replay in check_adam_state repeats */
    snprintf(common, sizeof common, "--batch %d --seed %d --lr %g --threads 1", FULL, SEED, (double)TINY_LR);
    snprintf(args, sizeof args, "train --data %s/five --backend %s %s --epochs 1 --metrics %s --checkpoint %s", dir,
             TU_REF, common, m1, ck1);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "train --data %s/five --backend %s %s --epochs 1 --metrics %s --checkpoint %s", dir,
             TU_REF, common, m2, ck);
    TU_CHECK(run(MPI2, args, out, sizeof out) == 0);
    TU_CHECKF(strstr(out, "2 ranks, allreduce overlapped"), "the epoch line does not report the exchange");
    cJSON *a = metrics_epoch(m1, 1), *b = metrics_epoch(m2, 1);
    TU_CHECKF(a && b, "metrics of epoch 1 missing");
    if (a && b) {
        const double l1 = num(a, "train_loss"), l2 = num(b, "train_loss"), bound = (2 * 4 * U / (1 - 4 * U) + 3 * U) * l1;
        /* the metrics print 6 decimals: their rounding (5e-7) is part of what two runs may differ by */
        TU_CHECKF(fabs(l1 - l2) <= bound + 1e-6, "train loss %.6f at np 2, %.6f alone (bound %.2g)", l2, l1, bound + 1e-6);
        TU_CHECKF(num(a, "train_acc") == num(b, "train_acc"), "train acc differs");
        TU_CHECKF(num(a, "val_acc") == num(b, "val_acc"), "val acc differs");
        TU_CHECKF(num(a, "step") == 2 && num(b, "step") == 2, "steps %g and %g, want 2", num(a, "step"), num(b, "step"));
        TU_CHECKF(num(b, "ranks") == 2 && num(a, "ranks") == 1, "ranks in the metrics");
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    snprintf(args, sizeof args, "%s/five", dir);
    check_adam_state(args, ck1, ck, (replay){.batch = FULL, .first = FULL, .ranks = 2, .steps = 2});
    /* the np 2 checkpoint, continued by one process */
    /* on the default backend: the checkpoint is the model's, not the backend's (and ref is slow) */
    snprintf(args, sizeof args, "train --data %s/five %s --epochs 2 --resume %s --metrics %s", dir, common, ck, m2);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    cJSON *c = metrics_epoch(m2, 2);
    TU_CHECKF(c && num(c, "step") == 4 && num(c, "ranks") == 1, "epoch 2 after --resume at np 1 missing or wrong");
    cJSON_Delete(c);
}

/* The uneven world (sweep tier): 4 pictures of 4 classes at --batch 6, np 3 (--oversubscribe).
 * The epoch is one short batch, 4 = 2 + 1 + 1, weights 1/2, 1/4, 1/4 (exact: every rank's terms
 * are the one process's), on nets of 2, 1 and 1 beside the one process's net of 4, masks at
 * offsets 0, 2, 3.  One step: the moments are m1 and v1, within Dm1 and Dv1 of above (N = 3). */
static void check_uneven(void)
{
    char args[4096], out[65536], ck1[300], ck3[300];
    snprintf(args, sizeof args, "flowers --out %s/four --per-class 1 --val 1 --seed 5", dir);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "rm -r '%s/four/train/tulips' '%s/four/val/tulips'", dir, dir); /* 4 classes */
    TU_CHECK(system(args) == 0);
    snprintf(ck1, sizeof ck1, "%s/four1.safetensors", dir);
    snprintf(ck3, sizeof ck3, "%s/four3.safetensors", dir);
    char common[512];
    snprintf(common, sizeof common, "--data %s/four --backend %s --batch 6 --seed %d --lr %g --threads 1 --epochs 1",
             dir, TU_REF, SEED, (double)TINY_LR);
    snprintf(args, sizeof args, "train %s --checkpoint %s", common, ck1);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "train %s --checkpoint %s", common, ck3);
    const int rc = run("timeout 600 mpirun -np 3 --oversubscribe --bind-to none --mca btl self,vader", args, out,
                       sizeof out);
    TU_CHECKF(rc == 0, "mpirun -np 3 exited %d", rc);
    snprintf(args, sizeof args, "%s/four", dir);
    if (rc == 0) check_adam_state(args, ck1, ck3, (replay){.batch = 6, .first = 4, .ranks = 3, .steps = 1});
}

static void check_failure(void)
{
    char args[2048], out[65536], ck[300], train[300], err[256];
    snprintf(args, sizeof args, "flowers --out %s/bad --per-class 2 --val 1 --seed 6", dir);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    /* rank 1's first picture: position 2 of epoch 0's order (batch 4 split 2 + 2) */
    anx_dataset d;
    snprintf(train, sizeof train, "%s/bad/train", dir);
    if (anx_dataset_open(&d, train, err, sizeof err)) {
        TU_CHECKF(0, "%s", err);
        return;
    }
    int order[64];
    anx_loader_order(order, d.n, 1, 3, 0);
    char victim[1024];
    snprintf(victim, sizeof victim, "%s", d.paths[order[2]]);
    anx_dataset_free(&d);
    FILE *f = fopen(victim, "wb");
    if (f) fputs("\x89PNG truncated", f), fclose(f);
    snprintf(ck, sizeof ck, "%s/bad.safetensors", dir);
    snprintf(args, sizeof args, "train --data %s/bad --batch 4 --seed 3 --threads 1 --epochs 2 --checkpoint %s", dir, ck);
    double t0 = now();
    int rc = run("timeout 120 mpirun -np 2 --mca btl self,vader", args, out, sizeof out);
    double secs = now() - t0;
    TU_CHECKF(rc != 0 && rc != 124, "mpirun exited %d (124: not ended by the failing rank within 120 s)", rc);
    printf("all ranks ended %.1f s after the start\n", secs);
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "anx train:")); p++) lines++;
    TU_CHECKF(lines == 1, "%d lines from anx train, want the failing rank's one", lines);
    TU_CHECKF(strstr(out, "anx train: rank 1 of 2:") && strstr(out, victim), "the line names neither rank 1 nor %s",
              victim);
    struct stat st;
    TU_CHECKF(stat(ck, &st) != 0, "a checkpoint %s was written", ck);
    /* nothing of a temporary checkpoint either */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'bad.safetensors'", dir);
    TU_CHECKF(system(cmd) != 0, "a partial checkpoint was left in %s", dir);
    /* an indivisible global batch */
    snprintf(args, sizeof args, "train --data %s/bad --batch 3 --epochs 1", dir);
    rc = run(MPI2, args, out, sizeof out);
    TU_CHECKF(rc == 2 && strstr(out, "--batch 3 does not divide by the 2 ranks"), "--batch 3 at np 2: exit %d", rc);
}

/* part is in the list (argv[2], default equal,failure; ANX_TEST_MPI_ONLY=part runs that one only,
 * even a slow one under the sanitizers) and may run here. */
static int wanted(const char *list, const char *only, const char *part, int slow)
{
    if (only) return !strcmp(only, part);
    if (!strstr(list, part)) return 0;
    if (slow && tu_sanitized())
        printf("%s: skipped under the sanitizers (ref trains ~8x slower; the release build runs it, "
               "ANX_TEST_MPI_ONLY=%s here)\n", part, part);
    return !(slow && tu_sanitized());
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_mpi_train path/to/anx [equal,failure,uneven]\n");
        return 2;
    }
    anx = argv[1];
    const char *list = argc > 2 ? argv[2] : "equal,failure", *only = getenv("ANX_TEST_MPI_ONLY");
    const int skip = mpi_test_prepare("test_mpi_train", dir, sizeof dir);
    if (skip) return skip;
    int ran = 0;
    if (wanted(list, only, "equal", 1)) check_equal_and_resume(), ran++;
    if (wanted(list, only, "uneven", 1)) check_uneven(), ran++;
    if (wanted(list, only, "failure", 0)) check_failure(), ran++;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (tu_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    if (!ran) {
        printf("test_mpi_train: skipped: no part of '%s' runs here\n", only ? only : list);
        return 77;
    }
    return tu_finish("test_mpi_train");
}
