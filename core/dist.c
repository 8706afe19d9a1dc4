/* Data parallelism over MPI (anx/dist.h, docs/mpi.md); without ANX_HAVE_MPI a world of one.
 *
 * The gradient exchange keeps one request per layer with weights.  In overlap mode the backward
 * hook starts MPI_Iallreduce on a layer's bucket as soon as its bwd_weights is done and calls
 * MPI_Testall after every layer: Open MPI progresses a non-blocking collective only inside MPI
 * calls, so without those tests the exchange would only move in the final wait. */
#include "anx/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef ANX_HAVE_MPI
#include <mpi.h>
#endif

#include "anx/model.h"

enum { MAX_REQ = ANX_NUM_LAYERS };

static struct {
    int up, rank, size;
    /* the exchange in progress */
    double weight, t_first, bytes;
    int overlap, n_started, n_buckets;
    int start_rc, start_layer; /* the first MPI_Iallreduce that failed (its request is NULL) */
    float *buf[MAX_REQ];
    size_t count[MAX_REQ];
    int layer[MAX_REQ];
    int plain, oom_layer;     /* buckets in the plain layout (buf malloc'd); a bucket that could not be */
    int param[MAX_REQ];       /* the bucket's weight (its bias follows) */
#ifdef ANX_HAVE_MPI
    MPI_Request req[MAX_REQ];
#endif
} g = {.size = 1, .weight = 1.0, .overlap = 1};

int anx_dist_rank(void) { return g.rank; }
int anx_dist_size(void) { return g.size; }

uint64_t anx_dist_state_checksum(const anx_net *net)
{
    const anx_model *m = anx_net_model(net);
    size_t max = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++) max = m->params[p].count > max ? m->params[p].count : max;
    float *plain = malloc(max * sizeof(float));
    uint64_t h = 0xCBF29CE484222325ull;
    if (!plain) return 0; /* every rank then disagrees with the ones that could: reported as a mismatch */
    static const anx_state st[3] = {ANX_PARAM, ANX_EXP_AVG, ANX_EXP_AVG_SQ};
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            anx_net_get_state(net, st[s], p, plain);
            const unsigned char *b = (const unsigned char *)plain;
            for (size_t i = 0; i < m->params[p].count * sizeof(float); i++) h = (h ^ b[i]) * 0x100000001B3ull;
        }
    free(plain);
    return h ^ (uint64_t)anx_net_step_count(net);
}

#ifdef ANX_HAVE_MPI

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Scales this rank's mean gradient of layer to its share of the global batch's mean. */
static void scale_bucket(float *b, size_t n, double w)
{
    if (w == 1.0) return;
    const float f = (float)w;
    for (size_t i = 0; i < n; i++) b[i] *= f;
}

static int mpi_fail(int rc, const char *what, char *err, size_t errlen)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    snprintf(err, errlen, "%s failed on rank %d: %s", what, g.rank, msg);
    return -1;
}

int anx_dist_built(void) { return 1; }
int anx_dist_up(void) { return g.up; }

int anx_dist_init(char *err, size_t errlen)
{
    if (g.up || !(getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE"))) return 0;
    int provided, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread", err, errlen);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN); /* failures come back as one line */
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    g.up = 1;
    return 0;
}

void anx_dist_finalize(void)
{
    if (g.up) MPI_Finalize();
    g.up = 0;
}

void anx_dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (g.up) MPI_Abort(MPI_COMM_WORLD, code);
}

int anx_dist_bcast(void *buf, size_t bytes, char *err, size_t errlen)
{
    if (g.size == 1) return 0;
    for (size_t at = 0; at < bytes;) { /* counts are int */
        int n = bytes - at > (1u << 30) ? (1 << 30) : (int)(bytes - at);
        int rc = MPI_Bcast((char *)buf + at, n, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast", err, errlen);
        at += (size_t)n;
    }
    return 0;
}

int anx_dist_sum_f64(double *v, int n, char *err, size_t errlen)
{
    if (g.size == 1) return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Allreduce", err, errlen);
}

int anx_dist_sum_f32(float *v, size_t n, char *err, size_t errlen)
{
    if (g.size == 1) return 0;
    if (n > (size_t)1 << 30) return snprintf(err, errlen, "anx_dist_sum_f32: %zu floats, more than 2^30", n), -1;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Allreduce", err, errlen);
}

int anx_dist_barrier(char *err, size_t errlen)
{
    if (g.size == 1) return 0;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Barrier", err, errlen);
}

int anx_dist_same_u64(uint64_t v, int *same, char *err, size_t errlen)
{
    *same = 1;
    if (g.size == 1) return 0;
    unsigned long long mn = v, mx = v;
    int rc = MPI_Allreduce(MPI_IN_PLACE, &mn, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce", err, errlen);
    *same = mn == mx;
    return 0;
}

int anx_dist_gather_f32(float *out, const float *mine, size_t count, char *err, size_t errlen)
{
    if (g.size == 1) {
        memcpy(out, mine, count * sizeof(float));
        return 0;
    }
    int n = (int)count, *counts = NULL, *displs = NULL;
    if (g.rank == 0) {
        counts = calloc((size_t)g.size, sizeof(int));
        displs = calloc((size_t)g.size, sizeof(int));
        if (!counts || !displs) {
            free(counts), free(displs);
            snprintf(err, errlen, "out of memory gathering on rank 0");
            return -1;
        }
    }
    int rc = MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS && g.rank == 0)
        for (int r = 1; r < g.size; r++) displs[r] = displs[r - 1] + counts[r - 1];
    if (rc == MPI_SUCCESS)
        rc = MPI_Gatherv(mine, n, MPI_FLOAT, out, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(counts);
    free(displs);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Gatherv", err, errlen);
}

/* A failed start (Open MPI out of memory for its schedule, say) leaves a null request, so the
 * others still complete; end() reports the first failure, not a confusing "invalid request". */
static void start(int k)
{
    if (g.n_started == 0) g.t_first = now();
    g.n_started++;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, g.buf[k], (int)g.count[k], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g.req[k]);
    if (rc != MPI_SUCCESS) {
        g.req[k] = MPI_REQUEST_NULL;
        if (g.start_rc == MPI_SUCCESS) g.start_rc = rc, g.start_layer = g.layer[k];
    }
}

/* Layer's weight and bias gradients exported to one plain buffer (malloc'd), or NULL. */
static float *plain_bucket(const anx_net *net, int layer, int *param, size_t *count)
{
    const anx_model *m = anx_net_model(net);
    int p = 0;
    while (p < ANX_NUM_PARAMS && m->params[p].layer != layer) p++;
    *param = p, *count = m->params[p].count + m->params[p + 1].count;
    float *b = malloc(*count * sizeof(float));
    if (b) {
        anx_net_get_state(net, ANX_GRAD, p, b);
        anx_net_get_state(net, ANX_GRAD, p + 1, b + m->params[p].count);
    }
    return b;
}

/* The backward hook: layer's gradients are final (>= 0), or a layer's backward ended (-1). */
static void hook(void *ctx, anx_net *net, int layer)
{
    (void)ctx;
    if (layer >= 0) {
        if (g.oom_layer >= 0) return; /* the exchange is off: end() reports it */
        int k = g.n_buckets;
        g.buf[k] = g.plain ? plain_bucket(net, layer, &g.param[k], &g.count[k])
                           : anx_net_grad_bucket(net, layer, &g.count[k]);
        if (!g.buf[k]) {
            g.oom_layer = layer;
            return;
        }
        g.n_buckets++;
        g.layer[k] = layer;
        g.bytes += (double)g.count[k] * sizeof(float);
        scale_bucket(g.buf[k], g.count[k], g.weight);
        if (g.overlap) start(k);
        return;
    }
    if (g.n_started) {
        int flag;
        MPI_Testall(g.n_started, g.req, &flag, MPI_STATUSES_IGNORE);
    }
}

int anx_dist_grads_begin(anx_net *net, double weight, int overlap, int plain)
{
    if (g.size == 1) return 0;
    g.weight = weight, g.overlap = overlap, g.n_started = 0, g.bytes = 0, g.plain = plain, g.oom_layer = -1;
    g.n_buckets = 0, g.start_rc = MPI_SUCCESS;
    anx_net_set_bwd_hook(net, hook, NULL);
    return 0;
}

int anx_dist_grads_zero(anx_net *net)
{
    for (int i = ANX_NUM_LAYERS - 1; i >= 0; i--) { /* the backward's order, as the other ranks */
        size_t n;
        float *b = anx_net_grad_bucket(net, i, &n);
        if (!b) continue;
        memset(b, 0, n * sizeof(float));
        hook(NULL, net, i);
    }
    return 0;
}

/* The plain buckets back into the net's layout (rc 0), and freed. */
static void plain_buckets_done(anx_net *net, int rc)
{
    const anx_model *m = anx_net_model(net);
    for (int k = 0; g.plain && k < g.n_buckets; k++) {
        const int p = g.param[k];
        if (rc == 0) {
            anx_net_set_state(net, ANX_GRAD, p, g.buf[k]);
            anx_net_set_state(net, ANX_GRAD, p + 1, g.buf[k] + m->params[p].count);
        }
        free(g.buf[k]);
    }
    g.n_buckets = 0, g.n_started = 0;
}

/* Why start() failed, one line; Open MPI 4.1 reports a failed allocation of the allreduce's
 * buffer (the bucket's size) as MPI_ERR_INTERN: say so when this rank cannot allocate that much. */
static int start_failed(const anx_net *net, char *err, size_t errlen)
{
    char what[96];
    snprintf(what, sizeof what, "MPI_Iallreduce of %s's gradients", anx_net_model(net)->layers[g.start_layer].name);
    mpi_fail(g.start_rc, what, err, errlen);
    size_t bytes = 0;
    for (int k = 0; k < g.n_buckets; k++)
        if (g.layer[k] == g.start_layer) bytes = g.count[k] * sizeof(float);
    void *probe = malloc(bytes);
    if (!probe) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (out of memory: this rank cannot allocate the %.0f MB buffer it needs)",
                 (double)bytes / 1e6);
    }
    free(probe);
    return -1;
}

int anx_dist_grads_end(anx_net *net, anx_dist_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    if (g.size == 1) return 0;
    anx_net_set_bwd_hook(net, NULL, NULL);
    double t0 = now();
    if (g.oom_layer >= 0) { /* the ranks' collectives no longer pair up: no wait, the caller aborts */
        snprintf(err, errlen, "out of memory for %s's gradients in the plain layout (rank %d)",
                 anx_net_model(net)->layers[g.oom_layer].name, g.rank);
        plain_buckets_done(net, -1);
        return -1;
    }
    if (!g.overlap)
        for (int k = 0; k < g.n_buckets; k++) start(k);
    if (g.start_rc != MPI_SUCCESS) {
        start_failed(net, err, errlen);
        plain_buckets_done(net, -1);
        return -1;
    }
    int rc = MPI_Waitall(g.n_started, g.req, MPI_STATUSES_IGNORE);
    double t1 = now();
    st->exposed_s = t1 - t0;
    st->total_s = g.n_started ? t1 - g.t_first : 0;
    st->bytes = g.bytes;
    plain_buckets_done(net, rc == MPI_SUCCESS ? 0 : -1);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Iallreduce of the gradients", err, errlen);
}

#else /* a world of one process */

int anx_dist_built(void) { return 0; }
int anx_dist_up(void) { return 0; }
int anx_dist_init(char *err, size_t errlen)
{
    /* under mpirun, N copies of a build without MPI would each train alone and write the same files */
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1) {
        snprintf(err, errlen, "started by mpirun with %s ranks, but this anx was built without MPI "
                              "(ANX_WITH_MPI: apt-get install libopenmpi-dev, then reconfigure)", n);
        return -1;
    }
    return 0;
}
void anx_dist_finalize(void) {}
void anx_dist_abort(int code) { (void)code; }
int anx_dist_bcast(void *buf, size_t bytes, char *err, size_t errlen)
{
    (void)buf, (void)bytes, (void)err, (void)errlen;
    return 0;
}
int anx_dist_sum_f64(double *v, int n, char *err, size_t errlen)
{
    (void)v, (void)n, (void)err, (void)errlen;
    return 0;
}
int anx_dist_sum_f32(float *v, size_t n, char *err, size_t errlen)
{
    (void)v, (void)n, (void)err, (void)errlen;
    return 0;
}
int anx_dist_barrier(char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return 0;
}
int anx_dist_same_u64(uint64_t v, int *same, char *err, size_t errlen)
{
    (void)v, (void)err, (void)errlen;
    *same = 1;
    return 0;
}
int anx_dist_gather_f32(float *out, const float *mine, size_t count, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    memcpy(out, mine, count * sizeof(float));
    return 0;
}
int anx_dist_grads_begin(anx_net *net, double weight, int overlap, int plain)
{
    (void)net, (void)weight, (void)overlap, (void)plain;
    return 0;
}
int anx_dist_grads_zero(anx_net *net)
{
    (void)net;
    return 0;
}
int anx_dist_grads_end(anx_net *net, anx_dist_stats *st, char *err, size_t errlen)
{
    (void)net, (void)err, (void)errlen;
    memset(st, 0, sizeof *st);
    return 0;
}

#endif
