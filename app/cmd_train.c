/* anx train: the tutorial's training loop on the flower ImageFolder.
 *
 *   for epoch: for (x, y) in train_loader: loss = CE(model(x), y); backward; Adam step
 *              then accuracy on val_loader in eval mode (no dropout)
 *
 * Everything random is a function of --seed: init (anx_net_init_params), the shuffle order of
 * each epoch (anx_loader_order(seed, epoch)) and the dropout masks (key(seed, layer, step)).
 * A checkpoint holds the parameters under their state_dict keys, both Adam moments, and the
 * epoch and step, so --resume continues bit for bit as if the run had never stopped.
 *
 * The net has a fixed batch size; when the training set does not divide by it (or --skip-bad
 * shortened a batch), the short batch runs on a second net of that size, with the parameters and Adam
 * state copied over and back, so it is a true smaller batch (PyTorch's drop_last=False) and
 * not a padded one.  Evaluation pads instead (forward only, samples are independent).
 *
 * Under mpirun (docs/mpi.md) every rank runs this loop on its slice of each global batch of
 * --batch images (anx_shard), with a net of batch/N: rank 0 initialises (or resumes) and
 * broadcasts the state, dropout masks are drawn at the slice's global positions, each layer's
 * gradient is allreduced as soon as its backward is done (anx/dist.h), weighted by the rank's
 * share of the batch, and only rank 0 prints, writes metrics and checkpoints. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anx/data.h"
#include "anx/dist.h"
#include "anx/net.h"
#include "anx/safetensors.h"
#include "cli.h"
#include "train_pictures.h"

#define CMD "train"
#define DEFAULT_LR 1e-4f /* what learns here; the tutorial's 1e-3 is documented in docs/data.md */

typedef struct train_opts {
    const char *data, *backend, *metrics, *checkpoint, *resume, *grid, *filters, *allreduce;
    int epochs, batch, threads, size, antialias, skip_bad;
    float lr;
    int64_t seed;
} train_opts;

typedef struct trainer {
    train_opts o;
    anx_dataset train, val;
    anx_loader *tl, *vl;
    anx_net *net, *tail; /* tail: the last partial batch, when the set does not divide */
    int tail_n;
    float *x, *logits, *scratch; /* [batch,3,s,s], [batch,n_class], [max param count] */
    int64_t *y;
    int epoch0; /* epochs already done (from --resume) */
    int ranks, rank, local;   /* the world (1 alone) and this rank's share of a full batch */
    int overlap;              /* --allreduce overlap (1) or after (0) */
    double comm_exposed, comm_total; /* summed over the epoch's steps */
} trainer;

static size_t max_param_count(const anx_model *m)
{
    size_t mx = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++) mx = m->params[p].count > mx ? m->params[p].count : mx;
    return mx;
}

/* Parameters, both moments and the step count from src to dst (the gradient is recomputed). */
static void copy_state(anx_net *dst, const anx_net *src, float *scratch)
{
    static const anx_state kept[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            anx_net_get_state(src, kept[s], p, scratch);
            anx_net_set_state(dst, kept[s], p, scratch);
        }
    anx_net_set_step_count(dst, anx_net_step_count(src));
}

/* ---- checkpoints ---- */

static int save_checkpoint(trainer *t, const char *path, int epochs_done, char *err, size_t errlen)
{
    const anx_model *m = anx_net_model(t->net);
    anx_st_writer *w = anx_st_writer_new();
    float *buf[3] = {NULL, NULL, NULL};
    int rc = 2;
    if (!w) goto oom;
    static const anx_state st[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    static const char *const prefix[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            const anx_param_info *pi = &m->params[p];
            float *v = malloc(sizeof(float) * pi->count);
            if (!v) goto oom;
            anx_net_get_state(t->net, st[s], p, v);
            char key[64];
            snprintf(key, sizeof key, "%s%s", prefix[s], pi->name);
            int bad = anx_st_writer_add(w, key, ANX_DTYPE_F32, pi->shape, pi->ndim, v);
            free(v);
            if (bad) goto oom;
        }
    const int64_t epoch = epochs_done, step = anx_net_step_count(t->net);
    if (anx_st_writer_add(w, "epoch", ANX_DTYPE_I64, NULL, 0, &epoch) ||
        anx_st_writer_add(w, "step", ANX_DTYPE_I64, NULL, 0, &step))
        goto oom;
    char num[64], *classes = NULL;
    size_t len = 1;
    for (int c = 0; c < t->train.n_classes; c++) len += strlen(t->train.classes[c]) + 1;
    classes = calloc(1, len);
    if (!classes) goto oom;
    for (int c = 0; c < t->train.n_classes; c++) {
        if (c) strcat(classes, ",");
        strcat(classes, t->train.classes[c]);
    }
    int bad = anx_st_writer_meta(w, "format", "anx-train-checkpoint-1") || anx_st_writer_meta(w, "classes", classes);
    free(classes);
    snprintf(num, sizeof num, "%lld", (long long)t->o.seed);
    bad = bad || anx_st_writer_meta(w, "seed", num);
    snprintf(num, sizeof num, "%d", t->o.batch);
    bad = bad || anx_st_writer_meta(w, "batch", num);
    snprintf(num, sizeof num, "%.9g", t->o.lr);
    bad = bad || anx_st_writer_meta(w, "lr", num);
    snprintf(num, sizeof num, "%d", t->o.size);
    bad = bad || anx_st_writer_meta(w, "input_size", num);
    bad = bad || anx_st_writer_meta(w, "backend", anx_net_backend(t->net)->name);
    if (bad) goto oom;
    rc = anx_st_writer_commit(w, path, err, errlen);
    anx_st_writer_free(w);
    return rc;
oom:
    snprintf(err, errlen, "%s: out of memory building the checkpoint", path);
    anx_st_writer_free(w);
    for (int i = 0; i < 3; i++) free(buf[i]);
    return rc;
}

static int load_checkpoint(trainer *t, const char *path, char *err, size_t errlen)
{
    anx_st_file f;
    if (anx_st_read(&f, path, err, errlen)) return 2;
    const anx_model *m = anx_net_model(t->net);
    int rc = 2;
    const char *fmt = anx_st_meta(&f, "format");
    if (!fmt || strcmp(fmt, "anx-train-checkpoint-1") != 0) {
        snprintf(err, errlen, "%s: not an anx train checkpoint (metadata format is %s)", path, fmt ? fmt : "missing");
        goto done;
    }
    const char *seed = anx_st_meta(&f, "seed");
    if (!seed) {
        snprintf(err, errlen, "%s: metadata has no seed", path);
        goto done;
    }
    t->o.seed = strtoll(seed, NULL, 10); /* the shuffle and dropout streams continue from it */
    const char *classes = anx_st_meta(&f, "classes");
    size_t at = 0;
    for (int c = 0; classes && c < t->train.n_classes; c++) { /* "daisy,dandelion,..." in label order */
        size_t n = strlen(t->train.classes[c]);
        if (strncmp(classes + at, t->train.classes[c], n) != 0 || (classes[at + n] != ',' && classes[at + n] != 0))
            classes = NULL;
        else
            at += n + (classes[at + n] == ',');
    }
    if (!classes || classes[at] != 0) {
        snprintf(err, errlen, "%s: its classes (%s) are not those of %s/train", path,
                 anx_st_meta(&f, "classes") ? anx_st_meta(&f, "classes") : "missing", t->o.data);
        goto done;
    }
    static const anx_state st[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    static const char *const prefix[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            const anx_param_info *pi = &m->params[p];
            char key[64];
            snprintf(key, sizeof key, "%s%s", prefix[s], pi->name);
            if (anx_st_get_f32(&f, key, t->scratch, pi->count, pi->shape, pi->ndim, err, errlen)) goto done;
            for (size_t i = 0; i < pi->count; i++) /* a NaN would silently poison the whole run */
                if (!isfinite(t->scratch[i]) || (st[s] == ANX_EXP_AVG_SQ && t->scratch[i] < 0)) {
                    snprintf(err, errlen, "%s: element %zu is %g, not %s (tensor %s)", path, i, t->scratch[i],
                             isfinite(t->scratch[i]) ? "a second moment (>= 0)" : "finite", key);
                    goto done;
                }
            anx_net_set_state(t->net, st[s], p, t->scratch);
        }
    int64_t epoch, step;
    if (anx_st_get_i64(&f, "epoch", &epoch, 1, err, errlen) || anx_st_get_i64(&f, "step", &step, 1, err, errlen))
        goto done;
    if (epoch < 0 || step < 0) {
        snprintf(err, errlen, "%s: tensor epoch %lld / step %lld is negative", path, (long long)epoch, (long long)step);
        goto done;
    }
    anx_net_set_step_count(t->net, step);
    t->epoch0 = (int)epoch;
    rc = 0;
done:
    anx_st_free(&f);
    return rc;
}

/* ---- the loop ---- */

static void progress(const trainer *t, int epoch, int done, int total, double loss, double ips, int tty)
{
    if (tty) {
        const int width = 30, fill = total ? done * width / total : width;
        fprintf(stderr, "\repoch %d/%d [", epoch + 1, t->o.epochs);
        for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %d/%d loss %.4f %.1f img/s ", done, total, loss, ips);
        fflush(stderr);
    } else if (done == total || done % (total / 10 > 0 ? total / 10 : 1) == 0) {
        printf("  epoch %d/%d batch %d/%d loss %.4f %.1f img/s\n", epoch + 1, t->o.epochs, done, total, loss, ips);
        fflush(stdout);
    }
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* The net for a batch of count < batch images: made on first need (the last batch of an epoch,
 * or any batch shortened by --skip-bad), remade when the count changes. 0, or 2 with err. */
static int tail_net(trainer *t, int count, char *err, size_t errlen)
{
    if (t->tail && t->tail_n == count) return 0;
    anx_net_destroy(t->tail);
    anx_model_config cfg = anx_net_model(t->net)->cfg;
    cfg.batch = count;
    t->tail = anx_net_create(anx_net_backend(t->net), &cfg, t->o.threads, err, errlen);
    t->tail_n = t->tail ? count : 0;
    if (t->tail) anx_net_set_dropout_seed(t->tail, (uint64_t)t->o.seed);
    return t->tail ? 0 : 2;
}

/* One training step on count images.  Sets *loss and *correct (from the forward pass's logits).
 * 0, or 2 with err when the net for a short batch cannot be made or cannot run the step. */
static int step(trainer *t, int count, float *loss, int *correct, char *err, size_t errlen)
{
    const int nc = t->train.n_classes;
    anx_net *net = t->net;
    if (count < t->local) {
        if (tail_net(t, count, err, errlen)) return 2;
        copy_state(t->tail, t->net, t->scratch);
        net = t->tail;
    }
    anx_net_set_input(net, t->x, t->y);
    if (anx_net_train_step(net, t->o.lr, loss)) {
        snprintf(err, errlen, "%s", anx_net_error(net));
        return 2;
    }
    anx_net_get_activation(net, ANX_NUM_LAYERS - 1, 0, t->logits);
    *correct = 0;
    for (int i = 0; i < count; i++) *correct += argmax(t->logits + (size_t)i * nc, nc) == t->y[i];
    if (net == t->tail && isfinite(*loss)) copy_state(t->net, t->tail, t->scratch);
    return 0;
}

/* The data-parallel step: this rank's count images at positions first.. of a global batch of
 * total images.  forward, backward with each layer's gradient allreduced as it is done (weighted
 * count/total), Adam.  A rank with no image exchanges zeros.  *loss is this rank's mean. */
static int step_dist(trainer *t, int count, int first, int total, float *loss, int *correct, char *err,
                     size_t errlen)
{
    const int nc = t->train.n_classes;
    anx_net *net = t->net;
    anx_dist_stats st;
    *loss = 0, *correct = 0;
    if (count == 0) {
        anx_dist_grads_begin(net, 0, t->overlap, total < t->o.batch);
        anx_dist_grads_zero(net);
    } else {
        if (count < t->local) {
            if (tail_net(t, count, err, errlen)) return 2;
            copy_state(t->tail, t->net, t->scratch);
            net = t->tail;
        }
        anx_net_set_dropout_offset(net, first);
        anx_net_set_input(net, t->x, t->y);
        if (anx_net_forward(net, 1, loss)) {
            snprintf(err, errlen, "%s", anx_net_error(net));
            return 2;
        }
        anx_dist_grads_begin(net, (double)count / total, t->overlap, total < t->o.batch);
        if (anx_net_backward(net)) {
            snprintf(err, errlen, "%s", anx_net_error(net));
            return 2;
        }
    }
    if (anx_dist_grads_end(net, &st, err, errlen)) return 2;
    t->comm_exposed += st.exposed_s;
    t->comm_total += st.total_s;
    anx_net_adam(net, t->o.lr);
    if (count == 0) return 0;
    anx_net_get_activation(net, ANX_NUM_LAYERS - 1, 0, t->logits);
    for (int i = 0; i < count; i++) *correct += argmax(t->logits + (size_t)i * nc, nc) == t->y[i];
    if (net == t->tail) copy_state(t->net, t->tail, t->scratch);
    return 0;
}

static int nonfinite(trainer *t, int count, int epoch, int batch)
{
    if (t->ranks > 1 && count == 0) return ANX_EXIT_FAIL; /* the ranks that ran this batch say where */
    anx_net *net = count > 0 && count < t->local ? t->tail : t->net;
    int layer;
    if (anx_net_first_nonfinite(net, &layer)) return cli_error(CMD, "%s", anx_net_error(net));
    const anx_model *m = anx_net_model(net);
    cli_error(CMD, "non-finite loss at epoch %d batch %d (step %lld): first non-finite output in %s; "
                   "try a smaller --lr (now %g)",
              epoch + 1, batch, (long long)anx_net_step_count(net),
              layer >= 0 && layer < ANX_NUM_LAYERS ? m->layers[layer].name : "CrossEntropyLoss", t->o.lr);
    return ANX_EXIT_FAIL; /* the line is cli_error's, the status not: the data, not the usage */
}

/* 0; 2 with err when an image cannot be read; 3 with err when the network cannot run. */
static int evaluate(trainer *t, double *acc, char *err, size_t errlen)
{
    const int nc = t->train.n_classes, b = t->local;
    const size_t per = (size_t)3 * t->o.size * t->o.size;
    int count, rc, right = 0, seen = 0;
    if (anx_loader_start_epoch(t->vl, 0, err, errlen)) return 2;
    while ((rc = anx_loader_next(t->vl, t->x, t->y, &count, err, errlen)) == 1) {
        if (count == 0) continue; /* this rank's slice of a short last batch is empty */
        for (int i = count; i < b; i++) { /* pad the last batch; its outputs are ignored */
            memset(t->x + per * i, 0, per * sizeof(float));
            t->y[i] = 0;
        }
        anx_net_set_input(t->net, t->x, t->y);
        float loss;
        if (anx_net_forward(t->net, 0, &loss)) {
            snprintf(err, errlen, "%s", anx_net_error(t->net));
            return 3; /* not the data's fault: no --skip-bad hint */
        }
        anx_net_get_activation(t->net, ANX_NUM_LAYERS - 1, 0, t->logits);
        for (int i = 0; i < count; i++) right += argmax(t->logits + (size_t)i * nc, nc) == t->y[i];
        seen += count;
    }
    if (rc == 2) return 2;
    double sums[2] = {right, seen}; /* each rank evaluated its slice of the validation set */
    if (anx_dist_sum_f64(sums, 2, err, errlen)) return 3;
    *acc = sums[1] > 0 ? sums[0] / sums[1] : 0;
    return 0;
}

static int append_metrics(const trainer *t, int epoch, double loss, double acc, double vacc, double ips, double secs)
{
    FILE *f = fopen(t->o.metrics, "a");
    if (!f) return cli_error(CMD, "%s: cannot open for appending: %s", t->o.metrics, strerror(errno));
    fprintf(f,
            "{\"epoch\": %d, \"train_loss\": %.6f, \"train_acc\": %.6f, \"val_acc\": %.6f, \"images_per_s\": %.3f, "
            "\"step\": %lld, \"seconds\": %.3f, \"lr\": %g, \"batch\": %d, \"backend\": \"%s\", \"ranks\": %d, "
            "\"allreduce_exposed_s\": %.6f, \"allreduce_s\": %.6f}\n",
            epoch, loss, acc, vacc, ips, (long long)anx_net_step_count(t->net), secs, t->o.lr, t->o.batch,
            anx_net_backend(t->net)->name, t->ranks, t->comm_exposed, t->comm_total);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return cli_error(CMD, "%s: write failed: %s", t->o.metrics, strerror(errno));
    return 0;
}

/* Training batch number batch (0-based) of this epoch, count images here.  Alone: step().  Under
 * mpirun: step_dist() on this rank's slice; *total, *loss and *correct are then the global
 * batch's (its size, its mean loss, its right answers).  0, or 2 with err. */
static int train_batch(trainer *t, int batch, int count, int *total, float *loss, int *correct, char *err,
                       size_t errlen)
{
    if (t->ranks == 1) return step(t, count, loss, correct, err, errlen);
    int nominal = t->train.n - batch * t->o.batch, first, mine;
    if (nominal > t->o.batch) nominal = t->o.batch;
    anx_shard(nominal, t->rank, t->ranks, &first, &mine); /* --skip-bad may have made count < mine */
    double n = count;
    if (anx_dist_sum_f64(&n, 1, err, errlen)) return 2;
    *total = (int)n;
    if (step_dist(t, count, first, *total, loss, correct, err, errlen)) return 2;
    double sums[2] = {(double)*loss * count, *correct};
    if (anx_dist_sum_f64(sums, 2, err, errlen)) return 2;
    *loss = (float)(sums[0] / n);
    *correct = (int)sums[1];
    return 0;
}

/* After an epoch: every rank must hold the same parameters and Adam state.  0, or 1 (rank 0 said why). */
static int check_ranks_agree(trainer *t, int epoch)
{
    char err[256];
    int same;
    if (t->ranks == 1) return 0;
    if (anx_dist_same_u64(anx_dist_state_checksum(t->net), &same, err, sizeof err)) return cli_error(CMD, "%s", err);
    if (same) return 0;
    if (t->rank == 0)
        fprintf(stderr, "anx train: the ranks' parameters differ after epoch %d (checksums of the state disagree)\n",
                epoch + 1);
    return ANX_EXIT_FAIL;
}

static int train_loop(trainer *t)
{
    char err[768];
    const int tty = isatty(fileno(stderr)) && t->rank == 0;
    const int nbatches = (t->train.n + t->o.batch - 1) / t->o.batch;
    const char *ckpt = t->o.checkpoint ? t->o.checkpoint : t->o.resume;
    int grid_n = 0, grid_max = t->o.grid ? (t->o.batch < 8 ? 8 : t->o.batch) : 0;
    float *grid_x = grid_max ? malloc(sizeof(float) * 3 * (size_t)t->o.size * t->o.size * grid_max) : NULL;
    int64_t grid_y[64];
    if (grid_max > 64) grid_max = 64;
    for (int epoch = t->epoch0; epoch < t->o.epochs; epoch++) {
        double t0 = cli_now(), loss_sum = 0;
        int seen = 0, right = 0, count, rc, batch = 0;
        t->comm_exposed = t->comm_total = 0;
        if (anx_loader_start_epoch(t->tl, epoch, err, sizeof err)) return cli_error(CMD, "%s", err);
        while ((rc = anx_loader_next(t->tl, t->x, t->y, &count, err, sizeof err)) == 1) {
            if (grid_x && grid_n < grid_max && t->rank == 0) { /* the first images the model sees, for --grid */
                int k = count < grid_max - grid_n ? count : grid_max - grid_n;
                memcpy(grid_x + (size_t)grid_n * 3 * t->o.size * t->o.size, t->x,
                       sizeof(float) * 3 * (size_t)t->o.size * t->o.size * k);
                memcpy(grid_y + grid_n, t->y, sizeof(int64_t) * k);
                grid_n += k;
                if (grid_n == grid_max || batch + 1 == nbatches) {
                    grid_max = grid_n; /* written once */
                    if (train_write_grid(t->o.grid, grid_x, grid_y, grid_n, t->o.size,
                                         (const char *const *)t->train.classes, err, sizeof err))
                        return cli_error(CMD, "%s", err);
                    printf("wrote %s (%d training images with their labels)\n", t->o.grid, grid_n);
                }
            }
            int correct, total = count;
            float loss;
            if (train_batch(t, batch, count, &total, &loss, &correct, err, sizeof err)) {
                free(grid_x);
                return cli_error(CMD, "batch of %d: %s", count, err);
            }
            batch++;
            if (!isfinite(loss)) {
                if (tty) fputc('\n', stderr);
                free(grid_x);
                return nonfinite(t, count, epoch, batch);
            }
            loss_sum += (double)loss * total;
            seen += total;
            right += correct;
            progress(t, epoch, batch, nbatches, loss_sum / seen, seen / (cli_now() - t0), tty);
        }
        if (tty) fputc('\n', stderr);
        if (rc == 2) {
            free(grid_x);
            return cli_error(CMD, "%s (use --skip-bad to skip unreadable images)", err);
        }
        const double secs = cli_now() - t0, ips = seen / secs;
        double vacc;
        if ((rc = check_ranks_agree(t, epoch))) {
            free(grid_x);
            return rc;
        }
        if ((rc = evaluate(t, &vacc, err, sizeof err))) {
            free(grid_x);
            return rc == 3 ? cli_error(CMD, "%s", err) : cli_error(CMD, "%s (use --skip-bad to skip unreadable images)", err);
        }
        const double loss = seen ? loss_sum / seen : 0, acc = seen ? (double)right / seen : 0;
        printf("epoch %d/%d: train loss %.4f acc %.3f | val acc %.3f | %.2f img/s, %.1f s (loader wait %.1f s)",
               epoch + 1, t->o.epochs, loss, acc, vacc, ips, secs, anx_loader_wait_seconds(t->tl));
        if (t->ranks > 1) {
            t->comm_exposed /= batch ? batch : 1, t->comm_total /= batch ? batch : 1; /* per step */
            printf(" | %d ranks, allreduce %s: %.1f ms/step exposed of %.1f", t->ranks, t->overlap ? "overlapped" : "after backward",
                   1e3 * t->comm_exposed, 1e3 * t->comm_total);
        }
        if (anx_loader_bad_count(t->tl) + anx_loader_bad_count(t->vl))
            printf(" | %d bad images skipped", anx_loader_bad_count(t->tl) + anx_loader_bad_count(t->vl));
        printf("\n");
        fflush(stdout);
        if (t->rank == 0 && t->o.metrics && append_metrics(t, epoch + 1, loss, acc, vacc, ips, secs)) {
            free(grid_x);
            return ANX_EXIT_USAGE;
        }
        if (t->rank == 0 && ckpt && save_checkpoint(t, ckpt, epoch + 1, err, sizeof err)) {
            free(grid_x);
            return cli_error(CMD, "%s", err);
        }
    }
    free(grid_x);
    if (t->o.filters && t->rank == 0) {
        const anx_model *m = anx_net_model(t->net);
        anx_net_get_state(t->net, ANX_PARAM, 0, t->scratch); /* conv.0.weight [96, in_dim, 11, 11] */
        if (train_write_filters(t->o.filters, t->scratch, (int)m->params[0].shape[0], (int)m->params[0].shape[1],
                                (int)m->params[0].shape[2], err, sizeof err))
            return cli_error(CMD, "%s", err);
        printf("wrote %s (the %lld conv1 filters)\n", t->o.filters, (long long)m->params[0].shape[0]);
    }
    if (ckpt) printf("checkpoint: %s (epoch %d, step %lld)\n", ckpt, t->o.epochs, (long long)anx_net_step_count(t->net));
    return ANX_EXIT_OK;
}

static void trainer_free(trainer *t)
{
    anx_loader_destroy(t->tl);
    anx_loader_destroy(t->vl);
    anx_net_destroy(t->net);
    anx_net_destroy(t->tail);
    anx_dataset_free(&t->train);
    anx_dataset_free(&t->val);
    free(t->x);
    free(t->y);
    free(t->logits);
    free(t->scratch);
}

/* Linux overcommits: a net larger than RAM may allocate and then be OOM-killed while first
 * written, so a batch that cannot fit (with the short-batch net when the set does not divide)
 * is refused up front. */
static int check_memory(const anx_model_config *cfg, int tail)
{
    const double ram = cli_ram_available();
    anx_model m;
    char err[256];
    if (ram <= 0 || anx_model_init(&m, cfg, err, sizeof err)) return 0; /* let create decide */
    double need = cli_net_bytes(&m, NULL);
    need += 2.0 * 4.0 * cfg->batch * 3.0 * cfg->input_hw * cfg->input_hw; /* loader slots */
    if (tail) {
        anx_model_config c2 = *cfg;
        c2.batch = tail;
        if (anx_model_init(&m, &c2, err, sizeof err) == 0) need += cli_net_bytes(&m, NULL);
    }
    if (need <= ram) return 0;
    cli_error(CMD, "--batch %d: out of memory: Alexnet(3, %d) at batch %d needs about %.1f GiB, more than the %.1f GiB of RAM available here",
              cfg->batch, cfg->n_class, cfg->batch, need / 1073741824.0, ram / 1073741824.0);
    return 1;
}

/* Rank 0's parameters, Adam state, step, epoch and seed (its init or its --resume) to every rank;
 * the backend must be the same everywhere, since gradients are exchanged in its layout. */
static int broadcast_state(trainer *t, char *err, size_t errlen)
{
    static const anx_state st[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    const anx_model *m = anx_net_model(t->net);
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            anx_net_get_state(t->net, st[s], p, t->scratch);
            if (anx_dist_bcast(t->scratch, m->params[p].count * sizeof(float), err, errlen)) return -1;
            anx_net_set_state(t->net, st[s], p, t->scratch);
        }
    int64_t v[3] = {anx_net_step_count(t->net), t->epoch0, t->o.seed};
    char be[64] = {0}, mine[64] = {0};
    snprintf(be, sizeof be, "%s", anx_net_backend(t->net)->name);
    memcpy(mine, be, sizeof be);
    if (anx_dist_bcast(v, sizeof v, err, errlen) || anx_dist_bcast(be, sizeof be, err, errlen)) return -1;
    if (strcmp(be, mine) != 0) {
        snprintf(err, errlen, "backend %s here but %s on rank 0: give every rank the same --backend", mine, be);
        return -1;
    }
    anx_net_set_step_count(t->net, v[0]);
    t->epoch0 = (int)v[1];
    t->o.seed = v[2];
    return 0;
}

static int setup(trainer *t)
{
    char err[768], dir[4096];
    const train_opts *o = &t->o;
    const anx_backend *be = anx_backend_fastest();
    int rc = o->backend ? cli_backend(CMD, o->backend, &be) : 0;
    if (rc) return rc;
    snprintf(dir, sizeof dir, "%s/train", o->data);
    if (anx_dataset_open(&t->train, dir, err, sizeof err)) return cli_error(CMD, "%s", err);
    snprintf(dir, sizeof dir, "%s/val", o->data);
    if (anx_dataset_open(&t->val, dir, err, sizeof err)) return cli_error(CMD, "%s", err);
    if (t->val.n_classes != t->train.n_classes)
        return cli_error(CMD, "%s/val: %d classes, but %s/train has %d", o->data, t->val.n_classes, o->data,
                         t->train.n_classes);
    for (int c = 0; c < t->train.n_classes; c++)
        if (strcmp(t->train.classes[c], t->val.classes[c]) != 0)
            return cli_error(CMD, "%s/val: class %d is '%s', but in train it is '%s'", o->data, c, t->val.classes[c],
                             t->train.classes[c]);
    if (t->train.n_classes < 2) return cli_error(CMD, "%s/train: needs at least 2 classes", o->data);
    anx_model_config cfg = {3, t->train.n_classes, t->local, o->size};
    if (check_memory(&cfg, t->ranks == 1 ? t->train.n % o->batch : 0)) return ANX_EXIT_USAGE;
    t->net = anx_net_create(be, &cfg, o->threads, err, sizeof err);
    if (!t->net) return cli_error(CMD, "backend %s: %s", be->name, err);
    const anx_model *m = anx_net_model(t->net);
    t->x = malloc(sizeof(float) * 3 * (size_t)o->size * o->size * o->batch);
    t->y = malloc(sizeof(int64_t) * o->batch);
    t->logits = malloc(sizeof(float) * (size_t)o->batch * t->train.n_classes);
    t->scratch = malloc(sizeof(float) * max_param_count(m));
    if (!t->x || !t->y || !t->logits || !t->scratch) return cli_error(CMD, "out of memory");
    if (anx_net_init_params(t->net, (uint64_t)o->seed)) return cli_error(CMD, "%s", anx_net_error(t->net));
    if (t->rank == 0 && o->resume && load_checkpoint(t, o->resume, err, sizeof err))
        return cli_error(CMD, "--resume %s", err);
    if (t->ranks > 1 && broadcast_state(t, err, sizeof err)) return cli_error(CMD, "%s", err);
    anx_net_set_dropout_seed(t->net, (uint64_t)t->o.seed);
    anx_loader_config lc = {o->batch, 1, (uint64_t)t->o.seed, o->size, o->antialias, o->skip_bad, t->ranks, t->rank};
    t->tl = anx_loader_create(&t->train, &lc, err, sizeof err);
    lc.shuffle = 0;
    t->vl = t->tl ? anx_loader_create(&t->val, &lc, err, sizeof err) : NULL;
    if (!t->vl) return cli_error(CMD, "%s", err);
    printf("train: %d images, val: %d images, %d classes (", t->train.n, t->val.n, t->train.n_classes);
    for (int c = 0; c < t->train.n_classes; c++) printf("%s%s", c ? " " : "", t->train.classes[c]);
    char threads[32];
    snprintf(threads, sizeof threads, o->threads ? "%d" : "all cores", o->threads);
    printf(")\nmodel: Alexnet(3, %d), input %dx%d (resize antialias %s), backend %s, threads %s\n",
           t->train.n_classes, o->size, o->size, o->antialias ? "on" : "off", be->name, threads);
    if (t->ranks > 1)
        printf("data parallel: %d ranks, %d images each per batch of %d, gradients allreduced %s\n", t->ranks,
               t->local, o->batch, t->overlap ? "layer by layer during the backward pass" : "after the backward pass");
    printf("Adam lr %g, batch %d%s, epochs %d, seed %lld (init, shuffle, dropout)", o->lr, o->batch,
           t->train.n % o->batch ? " (last batch of each epoch partial)" : "", o->epochs, (long long)t->o.seed);
    if (o->resume) printf(", resumed from %s after epoch %d (step %lld)", o->resume, t->epoch0,
                          (long long)anx_net_step_count(t->net));
    printf("\n");
    if (t->train.skipped_files + t->val.skipped_files)
        printf("(%d non-PNG files ignored)\n", t->train.skipped_files + t->val.skipped_files);
    fflush(stdout);
    return 0;
}

static int run(int argc, char **argv)
{
    trainer t;
    memset(&t, 0, sizeof t);
    train_opts *o = &t.o;
    o->epochs = 10, o->batch = 2, o->lr = DEFAULT_LR, o->seed = 1, o->size = 227;
    char backend_help[400];
    const cli_flag flags[] = {
        {"--data", CLI_STRING, &o->data, 0, -1, "dataset: DIR/train/<class>/*.png and DIR/val/<class>/*.png"},
        {"--backend", CLI_STRING, &o->backend, 0, -1,
         cli_backend_help(backend_help, sizeof backend_help, "", " (default: the fastest available)")},
        {"--epochs", CLI_INT, &o->epochs, 1, 100000, "epochs (default 10)"},
        {"--batch", CLI_INT, &o->batch, 1, 4096, "batch size (default 2)"},
        {"--lr", CLI_FLOAT, &o->lr, 0, -1, "Adam learning rate (default 1e-4; the tutorial's 1e-3 often does not learn)"},
        {"--threads", CLI_INT, &o->threads, 0, 1024, "threads (default 0: all cores)"},
        {"--seed", CLI_I64, &o->seed, 0, -1, "seed of init, shuffle and dropout (default 1)"},
        {"--metrics", CLI_STRING, &o->metrics, 0, -1, "append one JSON object per epoch to this file"},
        {"--checkpoint", CLI_STRING, &o->checkpoint, 0, -1, "write a checkpoint here after every epoch"},
        {"--resume", CLI_STRING, &o->resume, 0, -1, "continue from this checkpoint (its seed, epoch and step)"},
        {"--skip-bad", CLI_BOOL, &o->skip_bad, 0, -1, "skip and count unreadable images instead of stopping"},
        {"--antialias", CLI_BOOL, &o->antialias, 0, -1, "antialiased resize (torchvision >= 0.17 default)"},
        {"--size", CLI_INT, &o->size, 227, 230, "input size (default 227)"},
        {"--grid", CLI_STRING, &o->grid, 0, -1, "write a PNG of the first training images with their labels"},
        {"--filters", CLI_STRING, &o->filters, 0, -1, "write a PNG of the conv1 filters after training"},
        {"--allreduce", CLI_STRING, &o->allreduce, 0, -1,
         "under mpirun: overlap (default: each layer's gradients as its backward ends) or after (all after the backward)"},
    };
    int rc = cli_parse(CMD,
                       "anx train --data DIR [--backend B] [--epochs 10 --batch 2 --lr 1e-4 --threads T --seed S]\n"
                       "                 [--metrics OUT.jsonl] [--checkpoint FILE] [--resume FILE] [--skip-bad]\n"
                       "                 [--antialias] [--grid PNG] [--filters PNG] [--allreduce overlap|after]\n"
                       "mpirun -np N anx train ...   data-parallel: each rank takes batch/N of every batch (docs/mpi.md)",
                       argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, NULL);
    if (rc) return rc == 1 ? ANX_EXIT_OK : rc;
    if (!o->data) return cli_error(CMD, "--data DIR is required");
    if (!(o->lr > 0)) return cli_error(CMD, "--lr must be positive, got %g", o->lr);
    if (o->allreduce && strcmp(o->allreduce, "overlap") && strcmp(o->allreduce, "after"))
        return cli_error(CMD, "--allreduce %s: not overlap or after", o->allreduce);
    t.overlap = !o->allreduce || !strcmp(o->allreduce, "overlap");
    char err[256];
    if (anx_dist_init(err, sizeof err)) return cli_error(CMD, "%s", err);
    t.ranks = anx_dist_size(), t.rank = anx_dist_rank();
    if (o->batch % t.ranks) {
        rc = cli_error(CMD, "--batch %d does not divide by the %d ranks", o->batch, t.ranks);
        anx_dist_finalize();
        return rc;
    }
    t.local = o->batch / t.ranks;
    if (t.rank != 0 && !freopen("/dev/null", "w", stdout)) return cli_error(CMD, "cannot silence stdout");
    rc = setup(&t);
    if (rc == 0) {
        if (t.epoch0 >= o->epochs)
            printf("nothing to do: %s is already at epoch %d of %d\n", o->resume, t.epoch0, o->epochs);
        else
            rc = train_loop(&t);
    }
    trainer_free(&t);
    /* 0 and 1 (non-finite loss, ranks disagree) are reached by every rank together; any other
     * failure is this rank's alone while the others may wait in a collective: end them all. */
    if (t.ranks > 1 && rc != ANX_EXIT_OK && rc != ANX_EXIT_FAIL) anx_dist_abort(rc);
    anx_dist_finalize();
    return rc;
}

const anx_command anx_command_train = {"train", "train on an ImageFolder of PNGs (the tutorial's loop)", run};
