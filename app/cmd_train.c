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
 * not a padded one.  Evaluation pads instead (forward only, samples are independent). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anx/data.h"
#include "anx/net.h"
#include "anx/safetensors.h"
#include "cli.h"
#include "train_pictures.h"

#define CMD "train"
#define DEFAULT_LR 1e-4f /* what learns here; the tutorial's 1e-3 is documented in docs/data.md */

typedef struct train_opts {
    const char *data, *backend, *metrics, *checkpoint, *resume, *grid, *filters;
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
} trainer;

/* The available backend with the highest train_rank (registry order breaks ties), else the reference. */
static const anx_backend *default_backend(void)
{
    const anx_backend *best = NULL;
    for (const anx_backend *const *b = anx_backends(); *b; b++) {
        if ((*b)->unavailable && (*b)->unavailable()) continue;
        if (!best || (*b)->train_rank > best->train_rank) best = *b;
    }
    return best ? best : anx_backend_reference();
}

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
    if (count < t->o.batch) {
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

static int nonfinite(trainer *t, int count, int epoch, int batch)
{
    anx_net *net = count < t->o.batch ? t->tail : t->net;
    int layer;
    if (anx_net_first_nonfinite(net, &layer)) return cli_error(CMD, "%s", anx_net_error(net));
    const anx_model *m = anx_net_model(net);
    fprintf(stderr, "anx train: non-finite loss at epoch %d batch %d (step %lld): first non-finite output in %s; "
                    "try a smaller --lr (now %g)\n",
            epoch + 1, batch, (long long)anx_net_step_count(net),
            layer >= 0 && layer < ANX_NUM_LAYERS ? m->layers[layer].name : "CrossEntropyLoss", t->o.lr);
    return ANX_EXIT_FAIL;
}

/* 0; 2 with err when an image cannot be read; 3 with err when the network cannot run. */
static int evaluate(trainer *t, double *acc, char *err, size_t errlen)
{
    const int nc = t->train.n_classes, b = t->o.batch;
    const size_t per = (size_t)3 * t->o.size * t->o.size;
    int count, rc, right = 0, seen = 0;
    if (anx_loader_start_epoch(t->vl, 0, err, errlen)) return 2;
    while ((rc = anx_loader_next(t->vl, t->x, t->y, &count, err, errlen)) == 1) {
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
    *acc = seen ? (double)right / seen : 0;
    return 0;
}

static int append_metrics(const trainer *t, int epoch, double loss, double acc, double vacc, double ips, double secs)
{
    FILE *f = fopen(t->o.metrics, "a");
    if (!f) return cli_error(CMD, "%s: cannot open for appending: %s", t->o.metrics, strerror(errno));
    fprintf(f,
            "{\"epoch\": %d, \"train_loss\": %.6f, \"train_acc\": %.6f, \"val_acc\": %.6f, \"images_per_s\": %.3f, "
            "\"step\": %lld, \"seconds\": %.3f, \"lr\": %g, \"batch\": %d, \"backend\": \"%s\"}\n",
            epoch, loss, acc, vacc, ips, (long long)anx_net_step_count(t->net), secs, t->o.lr, t->o.batch,
            anx_net_backend(t->net)->name);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return cli_error(CMD, "%s: write failed: %s", t->o.metrics, strerror(errno));
    return 0;
}

static int train_loop(trainer *t)
{
    char err[768];
    const int tty = isatty(fileno(stderr));
    const int nbatches = (t->train.n + t->o.batch - 1) / t->o.batch;
    const char *ckpt = t->o.checkpoint ? t->o.checkpoint : t->o.resume;
    int grid_n = 0, grid_max = t->o.grid ? (t->o.batch < 8 ? 8 : t->o.batch) : 0;
    float *grid_x = grid_max ? malloc(sizeof(float) * 3 * (size_t)t->o.size * t->o.size * grid_max) : NULL;
    int64_t grid_y[64];
    if (grid_max > 64) grid_max = 64;
    for (int epoch = t->epoch0; epoch < t->o.epochs; epoch++) {
        double t0 = cli_now(), loss_sum = 0;
        int seen = 0, right = 0, count, rc, batch = 0;
        if (anx_loader_start_epoch(t->tl, epoch, err, sizeof err)) return cli_error(CMD, "%s", err);
        while ((rc = anx_loader_next(t->tl, t->x, t->y, &count, err, sizeof err)) == 1) {
            if (grid_x && grid_n < grid_max) { /* the first images the model sees, for --grid */
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
            int correct;
            float loss;
            if (step(t, count, &loss, &correct, err, sizeof err)) {
                free(grid_x);
                return cli_error(CMD, "batch of %d: %s", count, err);
            }
            batch++;
            if (!isfinite(loss)) {
                if (tty) fputc('\n', stderr);
                free(grid_x);
                return nonfinite(t, count, epoch, batch);
            }
            loss_sum += (double)loss * count;
            seen += count;
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
        if ((rc = evaluate(t, &vacc, err, sizeof err))) {
            free(grid_x);
            return rc == 3 ? cli_error(CMD, "%s", err) : cli_error(CMD, "%s (use --skip-bad to skip unreadable images)", err);
        }
        const double loss = seen ? loss_sum / seen : 0, acc = seen ? (double)right / seen : 0;
        printf("epoch %d/%d: train loss %.4f acc %.3f | val acc %.3f | %.2f img/s, %.1f s (loader wait %.1f s)",
               epoch + 1, t->o.epochs, loss, acc, vacc, ips, secs, anx_loader_wait_seconds(t->tl));
        if (anx_loader_bad_count(t->tl) + anx_loader_bad_count(t->vl))
            printf(" | %d bad images skipped", anx_loader_bad_count(t->tl) + anx_loader_bad_count(t->vl));
        printf("\n");
        fflush(stdout);
        if (t->o.metrics && append_metrics(t, epoch + 1, loss, acc, vacc, ips, secs)) {
            free(grid_x);
            return ANX_EXIT_USAGE;
        }
        if (ckpt && save_checkpoint(t, ckpt, epoch + 1, err, sizeof err)) {
            free(grid_x);
            return cli_error(CMD, "%s", err);
        }
    }
    free(grid_x);
    if (t->o.filters) {
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

static int setup(trainer *t)
{
    char err[768], dir[4096];
    const train_opts *o = &t->o;
    const anx_backend *be = default_backend();
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
    anx_model_config cfg = {3, t->train.n_classes, o->batch, o->size};
    if (check_memory(&cfg, t->train.n % o->batch)) return ANX_EXIT_USAGE;
    t->net = anx_net_create(be, &cfg, o->threads, err, sizeof err);
    if (!t->net) return cli_error(CMD, "backend %s: %s", be->name, err);
    const anx_model *m = anx_net_model(t->net);
    t->x = malloc(sizeof(float) * 3 * (size_t)o->size * o->size * o->batch);
    t->y = malloc(sizeof(int64_t) * o->batch);
    t->logits = malloc(sizeof(float) * (size_t)o->batch * t->train.n_classes);
    t->scratch = malloc(sizeof(float) * max_param_count(m));
    if (!t->x || !t->y || !t->logits || !t->scratch) return cli_error(CMD, "out of memory");
    if (anx_net_init_params(t->net, (uint64_t)o->seed)) return cli_error(CMD, "%s", anx_net_error(t->net));
    if (o->resume && load_checkpoint(t, o->resume, err, sizeof err)) return cli_error(CMD, "--resume %s", err);
    anx_net_set_dropout_seed(t->net, (uint64_t)t->o.seed);
    anx_loader_config lc = {o->batch, 1, (uint64_t)t->o.seed, o->size, o->antialias, o->skip_bad};
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
    };
    int rc = cli_parse(CMD,
                       "anx train --data DIR [--backend B] [--epochs 10 --batch 2 --lr 1e-4 --threads T --seed S]\n"
                       "                 [--metrics OUT.jsonl] [--checkpoint FILE] [--resume FILE] [--skip-bad]\n"
                       "                 [--antialias] [--grid PNG] [--filters PNG]",
                       argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, NULL);
    if (rc) return rc == 1 ? ANX_EXIT_OK : rc;
    if (!o->data) return cli_error(CMD, "--data DIR is required");
    if (!(o->lr > 0)) return cli_error(CMD, "--lr must be positive, got %g", o->lr);
    rc = setup(&t);
    if (rc == 0) {
        if (t.epoch0 >= o->epochs)
            printf("nothing to do: %s is already at epoch %d of %d\n", o->resume, t.epoch0, o->epochs);
        else
            rc = train_loop(&t);
    }
    trainer_free(&t);
    return rc;
}

const anx_command anx_command_train = {"train", "train on an ImageFolder of PNGs (the tutorial's loop)", run};
