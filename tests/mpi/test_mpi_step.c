/* mpirun -np N anx step == anx step (argv[1] is the anx binary, argv[2] the runs: "2:shm,3:tcp").
 *
 * One training step of Alexnet(3, 5) on the ref backend at a global batch of B = 4, once in one
 * process and once per run under mpirun -np N, each dumped (the MPI run's dump is rank 0's
 * gather of the global step).  N = 2 splits the batch 2 + 2; N = 3, the uneven world, 2 + 1 + 1
 * (anx_shard, as anx train splits an epoch's short last batch), so the ranks' gradients are
 * weighted 1/2, 1/4, 1/4: an unweighted average fails.  Then, tensor by tensor over the dump:
 *   exact   input, target, both dropout masks, out.* of every layer and grad_out.* of every layer:
 *           ref computes each sample alone, so the ranks' slices must be the one process's rows
 *           bit for bit (grad_out is scaled by local/B, 1/2 or 1/4, a power of two: exact, and
 *           the backward pass is linear in it, so every rank's terms are the one process's terms
 *           times local/B, exactly);
 *   bounded the parameter gradients, the loss, Adam's moments and the parameters after Adam.  The
 *           sums over the batch are split: mpi_bound.h derives |g_mpi - g_one| <= 2 gamma_K M +
 *           the allreduce's adds, M = sum |t| over the element's K terms, from ref's own
 *           bwd_weights run on |input| and |grad_out| of the one-process
 *           dump.  Adam at t = 1 maps g to m = 0.1 g, v = 0.001 g^2 and p -= lr g / (|g| + eps)
 *           (bias corrections cancel), monotone in g: the parameters' bound is that map's spread
 *           over [g - d, g + d] plus Adam's own float roundings (a few u of lr and of |p|).
 * Once over shared memory (btl self,vader) and once over TCP on the loopback address, as ranks
 * on two hosts talk.  Skipped (77) without mpirun or in a build without MPI. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anx/backend.h"
#include "anx/dist.h"
#include "anx/model.h"
#include "anx/safetensors.h"
#include "mpi_bound.h"
#include "mpi_test.h"
#include "testutil.h"

static const char *anx;
static char dir[256];
static const double U = MPI_U;

static int run(const char *prefix, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s/out.txt' 2>&1", prefix, anx, args, dir);
    printf("$ %s anx %s\n", prefix, args);
    fflush(stdout);
    int st = system(cmd);
    snprintf(cmd, sizeof cmd, "cat '%s/out.txt'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot show the output\n");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A copy of tensor name as doubles, or NULL (a failure). */
static double *get(const anx_st_file *f, const char *name, size_t *n)
{
    const anx_st_tensor *t = anx_st_find(f, name);
    TU_CHECKF(t && t->dtype == ANX_DTYPE_F32, "%s: no F32 tensor %s", f->path, name);
    if (!t || t->dtype != ANX_DTYPE_F32) return NULL;
    double *d = malloc(t->count * sizeof(double));
    for (size_t i = 0; i < t->count; i++) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        d[i] = v;
    }
    *n = t->count;
    return d;
}

static int ranks; /* of the run compared */

static void expect_bitwise(const anx_st_file *one, const anx_st_file *two, const char *name)
{
    const anx_st_tensor *a = anx_st_find(one, name), *b = anx_st_find(two, name);
    TU_CHECKF(a && b && a->count == b->count && a->dtype == b->dtype, "%s: missing or of another shape", name);
    if (!a || !b || a->count != b->count || a->dtype != b->dtype) return;
    size_t bytes = a->count * (a->dtype == ANX_DTYPE_I64 ? 8 : 4), first = bytes;
    for (size_t i = 0; i < bytes && first == bytes; i++)
        if (((const unsigned char *)a->data)[i] != ((const unsigned char *)b->data)[i]) first = i;
    TU_CHECKF(first == bytes, "%s differs between one process and %d ranks (first at element %zu)", name, ranks,
              first / (a->dtype == ANX_DTYPE_I64 ? 8 : 4));
}

/* rank states: "ranks: all N hold the same parameters" is printed after anx step compared the
 * ranks' state checksums after the step; a rank whose parameters or moments differ by one bit
 * fails it (exit 1).
 * Once over shared memory (btl self,vader) and once over TCP on the loopback address, as ranks
 * on two hosts talk: the release build runs N = 2 over shared memory and N = 3 over TCP
 * (test_mpi_step, label slow), the sweep tier the other two (test_mpi_step_more). */

/* M = sum |t| per gradient element of a layer's weight and bias, from the one-process dump */
static void magnitudes(const anx_model *m, int layer, const anx_st_file *one, float *mw, float *mb)
{
    const anx_layer_desc *l = &m->layers[layer];
    char name[64];
    size_t ns = 0, nd = 0;
    if (layer == 0) snprintf(name, sizeof name, "input");
    else snprintf(name, sizeof name, "out.%s", m->layers[layer - 1].name);
    double *src = get(one, name, &ns);
    snprintf(name, sizeof name, "grad_out.%s", l->name);
    double *dd = get(one, name, &nd);
    float *s = malloc(ns * sizeof(float)), *d = malloc(nd * sizeof(float));
    for (size_t i = 0; src && i < ns; i++) s[i] = (float)src[i];
    for (size_t i = 0; dd && i < nd; i++) d[i] = (float)dd[i];
    if (src && dd) mpi_magnitudes(l, s, ns, d, nd, mw, mb);
    free(src), free(dd), free(s), free(d);
}

/* grad, both moments and the parameter after Adam of parameter p; M its magnitudes; N ranks */
static void expect_param(const anx_st_file *one, const anx_st_file *two, const anx_model *m, int p, const float *M,
                         int batch, int N)
{
    const float lr = 1e-3f; /* anx step's default */
    const anx_param_info *pi = &m->params[p];
    const anx_layer_desc *l = &m->layers[pi->layer];
    const double K = mpi_terms(l, batch);
    char name[96];
    size_t n = 0, k;
    snprintf(name, sizeof name, "grad.%s", pi->name);
    double *g1 = get(one, name, &n), *g2 = get(two, name, &k);
    snprintf(name, sizeof name, "adam.exp_avg.%s", pi->name);
    double *m1 = get(one, name, &k), *m2 = get(two, name, &k);
    snprintf(name, sizeof name, "adam.exp_avg_sq.%s", pi->name);
    double *v1 = get(one, name, &k), *v2 = get(two, name, &k);
    double *p1 = get(one, pi->name, &k), *p2 = get(two, pi->name, &k);
    double *bg = malloc(n * sizeof(double)), *bm = malloc(n * sizeof(double)), *bv = malloc(n * sizeof(double)),
           *bp = malloc(n * sizeof(double));
    float *f = malloc(n * sizeof(float));
    if (g1 && g2 && m1 && m2 && v1 && v2 && p1 && p2) {
        for (size_t i = 0; i < n; i++) {
            const double g = g1[i], d = mpi_grad_bound(g, M[i], K, N);
            bg[i] = d;
            bm[i] = 0.1 * d * (1 + 2 * U) + 2 * U * fabs(m1[i]);
            bv[i] = 0.001 * (2 * fabs(g) + d) * d * (1 + 4 * U) + 4 * U * fabs(v1[i]);
            /* lr * g / (|g| + eps) over [g - d, g + d] (monotone), plus Adam's roundings */
            const double eps = 1e-8, hi = (g + d) / (fabs(g + d) + eps), lo = (g - d) / (fabs(g - d) + eps);
            bp[i] = lr * (hi - lo) + 16 * U * lr + 2 * U * fabs(p1[i]);
        }
        snprintf(name, sizeof name, "grad.%s", pi->name);
        for (size_t i = 0; i < n; i++) f[i] = (float)g2[i];
        tu_expect_within(f, g1, bg, n, name);
        snprintf(name, sizeof name, "adam.exp_avg.%s", pi->name);
        for (size_t i = 0; i < n; i++) f[i] = (float)m2[i];
        tu_expect_within(f, m1, bm, n, name);
        snprintf(name, sizeof name, "adam.exp_avg_sq.%s", pi->name);
        for (size_t i = 0; i < n; i++) f[i] = (float)v2[i];
        tu_expect_within(f, v1, bv, n, name);
        for (size_t i = 0; i < n; i++) f[i] = (float)p2[i];
        tu_expect_within(f, p1, bp, n, pi->name);
    }
    free(bg), free(bm), free(bv), free(bp), free(f);
    free(g1), free(g2), free(m1), free(m2), free(v1), free(v2), free(p1), free(p2);
}

static void compare(const char *fone, const char *ftwo, int batch)
{
    anx_st_file one, two;
    char err[512], name[96];
    if (anx_st_read(&one, fone, err, sizeof err) || anx_st_read(&two, ftwo, err, sizeof err)) {
        TU_CHECKF(0, "%s", err);
        return;
    }
    anx_model m;
    anx_model_config cfg = {3, 5, batch, 227};
    TU_CHECK(anx_model_init(&m, &cfg, err, sizeof err) == 0);
    expect_bitwise(&one, &two, "input");
    expect_bitwise(&one, &two, "target");
    expect_bitwise(&one, &two, "mask.Dropout-16");
    expect_bitwise(&one, &two, "mask.Dropout-19");
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        snprintf(name, sizeof name, "out.%s", m.layers[i].name);
        expect_bitwise(&one, &two, name);
        snprintf(name, sizeof name, "grad_out.%s", m.layers[i].name);
        expect_bitwise(&one, &two, name);
    }
    size_t n1, n2;
    double *l1 = get(&one, "loss", &n1), *l2 = get(&two, "loss", &n2);
    if (l1 && l2) { /* per-sample losses >= 0: M = B * loss; the ranks' means, times local, add in double */
        double bound = (2 * mpi_gamma(batch) + 3 * U) * fabs(l1[0]);
        tu_expect_within((float[]){(float)l2[0]}, l1, &bound, 1, "loss");
    }
    free(l1), free(l2);
    for (int p = 0; p < ANX_NUM_PARAMS; p += 2) { /* weight p and bias p + 1 of one layer */
        float *mw = malloc(m.params[p].count * sizeof(float)), *mb = malloc(m.params[p + 1].count * sizeof(float));
        magnitudes(&m, m.params[p].layer, &one, mw, mb);
        expect_param(&one, &two, &m, p, mw, batch, ranks);
        expect_param(&one, &two, &m, p + 1, mb, batch, ranks);
        free(mw), free(mb);
    }
    anx_st_free(&one);
    anx_st_free(&two);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_mpi_step path/to/anx N:shm|tcp[,N:shm|tcp..]\n");
        return 2;
    }
    anx = argv[1];
    const int skip = mpi_test_prepare("test_mpi_step", dir, sizeof dir);
    if (skip) return skip;
    const int batch = 4;
    char args[1024], one[400], two[400];
    if (tu_sanitized()) {
        /* ref runs ~8x slower there (a comparison took 7 minutes): the sanitizers see the MPI path
         * (init, exchange, gathers, dump, finalize) on the fastest backend; the release build compares */
        const anx_backend *pick = anx_backend_fastest();
        snprintf(two, sizeof two, "%s/two.safetensors", dir);
        snprintf(args, sizeof args, "step --backend %s --classes 5 --batch 2 --threads 1 --dump %s", pick->name, two);
        TU_CHECK(run("timeout 600 mpirun -np 2 --mca btl self,vader", args) == 0);
        printf("comparison with one process: skipped under the sanitizers (the release build runs it)\n");
        return tu_finish("test_mpi_step");
    }
    snprintf(one, sizeof one, "%s/one.safetensors", dir);
    snprintf(args, sizeof args, "step --backend %s --classes 5 --batch %d --threads 1 --seed 7 --dump %s", TU_REF,
             batch, one);
    TU_CHECK(run("", args) == 0);
    for (const char *r = argv[2]; *r; r += strcspn(r, ","), r += *r == ',') {
        char transport[8] = "";
        if (sscanf(r, "%d:%7[a-z]", &ranks, transport) != 2 || ranks < 2 || ranks > batch ||
            (strcmp(transport, "shm") && strcmp(transport, "tcp"))) {
            fprintf(stderr, "test_mpi_step: bad run '%s' (want N:shm or N:tcp, 2 <= N <= %d)\n", r, batch);
            return 2;
        }
        const int tcp = !strcmp(transport, "tcp");
        char prefix[300];
        /* more ranks than the machine's cores need --oversubscribe */
        snprintf(prefix, sizeof prefix, "timeout 600 mpirun -np %d --oversubscribe --bind-to none %s", ranks,
                 tcp ? "--mca btl tcp,self --mca btl_tcp_if_include lo" : "--mca btl self,vader");
        printf("== %d ranks over %s\n", ranks, tcp ? "TCP on loopback" : "shared memory");
        snprintf(two, sizeof two, "%s/np%d%s.safetensors", dir, ranks, transport);
        snprintf(args, sizeof args, "step --backend %s --classes 5 --batch %d --threads 1 --seed 7 --dump %s", TU_REF,
                 batch, two);
        int rc = run(prefix, args);
        TU_CHECKF(rc == 0, "mpirun exited %d", rc);
        static char text[65536];
        char agree[80], path[300];
        text[0] = 0;
        snprintf(agree, sizeof agree, "ranks: all %d hold the same parameters and Adam state", ranks);
        snprintf(path, sizeof path, "%s/out.txt", dir);
        FILE *f = fopen(path, "rb");
        if (f) text[fread(text, 1, sizeof text - 1, f)] = 0, fclose(f);
        TU_CHECKF(strstr(text, agree), "anx step did not report that the %d ranks' states agree", ranks);
        if (rc == 0) compare(one, two, batch);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (tu_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_mpi_step");
}
