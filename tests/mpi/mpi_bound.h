/* mpi_bound.h: the derived bound on a parameter gradient summed over N ranks against one process,
 * shared by test_mpi_step (anx step) and test_mpi_train (anx train).
 *
 * One process adds all K terms t of a gradient element (K = B*OH*OW for a conv weight or bias,
 * B for a linear one); N ranks each add theirs and the allreduce adds the N partial sums P_r.
 * The terms are the same floats in both when every rank's share of the loss gradient is the one
 * process's times a power of two (the weights count_r/count are powers of two, and ref computes
 * each sample alone).  Each float sum of K terms is within gamma_K * M of the exact one, M =
 * sum |t| (Higham 3.1, gamma_K = K u / (1 - K u), u = 2^-24); the allreduce's N - 1 adds (in any
 * order) are within gamma_{N-1} sum |P_r| <= gamma_{N-1} (1 + gamma_K) M, and for N = 2 its one
 * add within u |P_0 + P_1| <= u (|g_one| + 2 gamma_K M), so
 *   |g_N - g_one| <= 2 gamma_K M + that.
 * M is ref's own bwd_weights run on |src| and |diff_dst| of the one process's step, a float sum
 * of non-negative terms, so at least (1 - gamma_K) of the exact M: the bound divides by that.
 * Underflow: a product rounded into the subnormal range errs by up to MPI_ETA = 2^-150 more (a
 * sum that lands there is exact), so each run's sum adds up to K MPI_ETA. */
#ifndef ANX_TESTS_MPI_BOUND_H
#define ANX_TESTS_MPI_BOUND_H

#include <math.h>
#include <stdlib.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "testutil.h"

static const double MPI_U = 1.0 / 16777216.0; /* float32 unit roundoff */
static const double MPI_ETA = 0x1p-150;         /* half the smallest subnormal float */

static inline double mpi_gamma(double k) { return k * MPI_U / (1 - k * MPI_U); }

/* |g_N - g_one| for one element: g = g_one, M its magnitude (as computed), K terms, N ranks */
static inline double mpi_grad_bound(double g, double M, double K, int N)
{
    const double gk = mpi_gamma(K), m = M / (1 - gk);
    const double add = N == 2 ? MPI_U * (fabs(g) + 2 * gk * m) : mpi_gamma(N - 1) * (1 + gk) * m;
    return 2 * gk * m + add + 2 * K * MPI_ETA;
}

/* Terms per gradient element of layer l at batch b: every sample and output position. */
static inline double mpi_terms(const anx_layer_desc *l, int batch) { return (double)batch * l->oh * l->ow; }

/* M per gradient element of layer l's weight (mw) and bias (mb): ref's bwd_weights on |src|
 * (ns floats, the layer's input) and |diff_dst| (nd floats, dLoss/d its output). */
static inline void mpi_magnitudes(const anx_layer_desc *l, const float *src, size_t ns, const float *dd, size_t nd,
                                  float *mw, float *mb)
{
    float *s = malloc(ns * sizeof(float)), *d = malloc(nd * sizeof(float));
    TU_CHECKF(s && d, "out of memory for %s's magnitudes", l->name);
    if (s && d) {
        for (size_t i = 0; i < ns; i++) s[i] = fabsf(src[i]);
        for (size_t i = 0; i < nd; i++) d[i] = fabsf(dd[i]);
        const anx_backend *ref = anx_backend_reference();
        void *ctx = tu_layer_create(ref, l, 1);
        anx_args a = {0};
        a.src = s, a.diff_dst = d, a.diff_weights = mw, a.diff_bias = mb;
        tu_exec(ref, ctx, l, ANX_BWD_WEIGHTS, &a);
        if (ctx && ref->layer_destroy) ref->layer_destroy(ctx);
    }
    free(s), free(d);
}

#endif
