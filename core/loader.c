/* DataLoader: batches of decoded, resized images in (seed, epoch)-determined order.
 *
 * One background thread decodes ahead into a ring of ANX_LOADER_SLOTS batches, so while the
 * training step runs on batch k, batches k+1 and k+2 are being decoded; the consumer waits only
 * when decoding is slower than the step.  The ring is handed over under one mutex with two
 * condition variables (slot filled, slot freed). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/data.h"
#include "anx/rng.h"

#define ANX_LOADER_SLOTS 2

typedef struct slot {
    float *x;      /* [batch, 3, size, size] */
    int64_t *y;    /* [batch] */
    int count;
    int status;    /* 1 batch, 0 end of epoch, 2 error */
    char err[512];
} slot;

struct anx_loader {
    const anx_dataset *d;
    anx_loader_config cfg;
    int *order;                  /* [n] this epoch */
    slot slots[ANX_LOADER_SLOTS];
    int head, filled;            /* consumer reads slots[head]; filled = ready slots */
    int stop, running, done;     /* done: producer published its last slot */
    int bad;                     /* files skipped (skip_bad) */
    double wait_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t ready, freed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void anx_loader_order(int *order, int n, int shuffle, uint64_t seed, int epoch)
{
    for (int i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    const uint64_t key = anx_rng_key(seed, "shuffle", (uint64_t)epoch);
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(anx_rng_bits(key, (uint64_t)i) % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j], order[j] = t;
    }
}

anx_loader *anx_loader_create(const anx_dataset *d, const anx_loader_config *cfg, char *err, size_t errlen)
{
    if (cfg->batch < 1 || cfg->size < 1 || d->n < 1) {
        snprintf(err, errlen, "%s: loader needs batch >= 1, size >= 1 and images (batch %d, size %d, %d images)",
                 d->root ? d->root : "dataset", cfg->batch, cfg->size, d->n);
        return NULL;
    }
    anx_loader *l = calloc(1, sizeof *l);
    if (!l) goto oom;
    l->d = d;
    l->cfg = *cfg;
    l->order = malloc(sizeof(int) * d->n);
    if (!l->order) goto oom;
    const size_t per = (size_t)3 * cfg->size * cfg->size;
    for (int s = 0; s < ANX_LOADER_SLOTS; s++) {
        l->slots[s].x = malloc(sizeof(float) * per * cfg->batch);
        l->slots[s].y = malloc(sizeof(int64_t) * cfg->batch);
        if (!l->slots[s].x || !l->slots[s].y) goto oom;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->ready, NULL);
    pthread_cond_init(&l->freed, NULL);
    return l;
oom:
    snprintf(err, errlen, "%s: out of memory for the loader", d->root ? d->root : "dataset");
    if (l) {
        for (int s = 0; s < ANX_LOADER_SLOTS; s++) free(l->slots[s].x), free(l->slots[s].y);
        free(l->order);
        free(l);
    }
    return NULL;
}

/* Producer: waits for a free slot; returns its index, or -1 when asked to stop. */
static int acquire_slot(anx_loader *l)
{
    pthread_mutex_lock(&l->mu);
    while (!l->stop && l->filled == ANX_LOADER_SLOTS) pthread_cond_wait(&l->freed, &l->mu);
    int s = l->stop ? -1 : (l->head + l->filled) % ANX_LOADER_SLOTS;
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void publish_slot(anx_loader *l, int last)
{
    pthread_mutex_lock(&l->mu);
    l->filled++;
    if (last) l->done = 1;
    pthread_cond_signal(&l->ready);
    pthread_mutex_unlock(&l->mu);
}

void anx_shard(int count, int rank, int ranks, int *first, int *mine)
{
    const int q = count / ranks, r = count % ranks;
    *mine = q + (rank < r);
    *first = rank * q + (rank < r ? rank : r);
}

static void *producer(void *arg)
{
    anx_loader *l = arg;
    const anx_dataset *d = l->d;
    const size_t per = (size_t)3 * l->cfg.size * l->cfg.size;
    const int sharded = l->cfg.ranks > 1;
    int next = 0, end = d->n, global = 0; /* sharded: this rank's slice order[next..end) of global batch */
    for (;;) {
        int s = acquire_slot(l);
        if (s < 0) return NULL;
        slot *b = &l->slots[s];
        b->count = 0;
        b->status = 1;
        if (sharded) {
            const int start = global * l->cfg.batch;
            const int count = d->n - start < l->cfg.batch ? d->n - start : l->cfg.batch;
            int first = 0, mine = 0;
            if (count > 0) anx_shard(count, l->cfg.rank, l->cfg.ranks, &first, &mine);
            next = start + first, end = next + mine;
            if (count <= 0) { /* past the last global batch: the end marker */
                b->status = 0;
                publish_slot(l, 1);
                return NULL;
            }
            global++;
        }
        while (b->count < l->cfg.batch && next < end) {
            int i = l->order[next++];
            if (anx_image_load(b->x + per * b->count, d->paths[i], l->cfg.size, l->cfg.antialias, b->err,
                               sizeof b->err) != 0) {
                if (l->cfg.skip_bad) {
                    pthread_mutex_lock(&l->mu);
                    l->bad++;
                    pthread_mutex_unlock(&l->mu);
                    fprintf(stderr, "anx: skipping bad image: %s\n", b->err);
                    continue;
                }
                b->status = 2;
                publish_slot(l, 1);
                return NULL;
            }
            b->y[b->count++] = d->labels[i];
        }
        if (b->count == 0 && !sharded) { /* nothing left: the end marker */
            b->status = 0;
            publish_slot(l, 1);
            return NULL;
        }
        publish_slot(l, 0);
    }
}

static void stop_thread(anx_loader *l)
{
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->freed);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

int anx_loader_start_epoch(anx_loader *l, int epoch, char *err, size_t errlen)
{
    stop_thread(l);
    anx_loader_order(l->order, l->d->n, l->cfg.shuffle, l->cfg.seed, epoch);
    l->head = l->filled = l->stop = l->done = 0;
    int rc = pthread_create(&l->thread, NULL, producer, l);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot start the decoding thread: %s", l->d->root, strerror(rc));
        return 2;
    }
    l->running = 1;
    return 0;
}

int anx_loader_next(anx_loader *l, float *x, int64_t *y, int *count, char *err, size_t errlen)
{
    if (!l->running) {
        snprintf(err, errlen, "%s: loader used before anx_loader_start_epoch", l->d->root);
        return 2;
    }
    const size_t per = (size_t)3 * l->cfg.size * l->cfg.size;
    double t0 = now_s();
    pthread_mutex_lock(&l->mu);
    while (l->filled == 0) pthread_cond_wait(&l->ready, &l->mu);
    pthread_mutex_unlock(&l->mu);
    l->wait_s += now_s() - t0;
    slot *b = &l->slots[l->head];
    int status = b->status;
    *count = 0;
    if (status == 1) {
        memcpy(x, b->x, sizeof(float) * per * b->count);
        memcpy(y, b->y, sizeof(int64_t) * b->count);
        *count = b->count;
    } else if (status == 2) {
        snprintf(err, errlen, "%s", b->err);
    }
    if (status != 1) return status; /* end marker and error stay in place: later calls repeat them */
    pthread_mutex_lock(&l->mu);
    l->head = (l->head + 1) % ANX_LOADER_SLOTS;
    l->filled--;
    pthread_cond_signal(&l->freed);
    pthread_mutex_unlock(&l->mu);
    return 1;
}

int anx_loader_bad_count(const anx_loader *l)
{
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    int n = l->bad;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return n;
}

double anx_loader_wait_seconds(const anx_loader *l) { return l->wait_s; }

void anx_loader_destroy(anx_loader *l)
{
    if (!l) return;
    stop_thread(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->freed);
    for (int s = 0; s < ANX_LOADER_SLOTS; s++) free(l->slots[s].x), free(l->slots[s].y);
    free(l->order);
    free(l);
}
