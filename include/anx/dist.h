/* anx/dist.h — data parallelism over MPI (docs/mpi.md).
 *
 * A world of ranks, each running the same command on its slice of every global batch.  Without
 * mpirun (or in a build without MPI) the world is one process and every call below is a no-op
 * that succeeds, so the commands run exactly as they do alone.  MPI is initialised only when the
 * process was started by mpirun (Open MPI's OMPI_COMM_WORLD_SIZE, or PMI_SIZE / PMIX_RANK).
 *
 * Functions return 0, or -1 with a one-line reason in err.  Nothing here exits; anx_dist_abort,
 * which only the app calls, brings every rank down through MPI.
 */
#ifndef ANX_DIST_H
#define ANX_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "anx/net.h"

int anx_dist_init(char *err, size_t errlen);
void anx_dist_finalize(void);
int anx_dist_built(void);  /* 1 when this build has MPI */
int anx_dist_up(void);     /* 1 when MPI was initialised: started by mpirun (even -np 1) */
int anx_dist_rank(void);   /* 0 alone */
int anx_dist_size(void);   /* 1 alone */
/* Under mpirun, ends every rank with MPI_Abort(code) (Open MPI does not return from it); prints
 * nothing, the caller printed its one line.  Alone: returns, and the caller exits as usual. */
void anx_dist_abort(int code);

/* Rank 0's buffer to every rank. */
int anx_dist_bcast(void *buf, size_t bytes, char *err, size_t errlen);
/* In-place sums over the ranks (counts, loss sums, accuracy). */
int anx_dist_sum_f64(double *v, int n, char *err, size_t errlen);
/* In-place sum of n floats over the ranks, one blocking MPI_Allreduce (anx-bench's message). */
int anx_dist_sum_f32(float *v, size_t n, char *err, size_t errlen);
/* Returns when every rank has called it (anx-bench starts its timed loops together). */
int anx_dist_barrier(char *err, size_t errlen);
/* *same = 1 when every rank passed the same v (parameter checksums). */
int anx_dist_same_u64(uint64_t v, int *same, char *err, size_t errlen);
/* Gathers each rank's count floats (rank order) into all of rank 0's out (total floats); other
 * ranks pass out = NULL. */
int anx_dist_gather_f32(float *out, const float *mine, size_t count, char *err, size_t errlen);

/* The gradient exchange of one training step.  begin() installs a backward hook on net: each
 * layer's gradient bucket is scaled by weight (this rank's samples / the global batch's) and an
 * allreduce (sum) of it is started as soon as its bwd_weights is done (overlap = 1), or all of
 * them after the backward pass (overlap = 0); the ones in flight are progressed between layers.
 * end() waits for all of them and removes the hook: then every rank holds the global batch's
 * mean gradient and Adam can run.  A rank with no sample in the batch calls zero() instead of
 * the forward/backward: its buckets are zero, exchanged in the same order.
 * plain = 1 when the ranks' nets may differ in batch (a short batch split unevenly, or the nets
 * of a short batch beside a rank with none): a backend may lay a layer's weights out by batch
 * (oneDNN picks its blocked format per primitive), so each bucket is exported to the plain layout
 * for the exchange (and imported back), at the cost of a copy; 0 when every rank's net is the same. */
typedef struct anx_dist_stats {
    double exposed_s;  /* time end() waited: the exchange not hidden behind the backward pass */
    double total_s;    /* from the first allreduce started to the last one finished */
    double bytes;      /* gradient bytes exchanged per rank */
} anx_dist_stats;
int anx_dist_grads_begin(anx_net *net, double weight, int overlap, int plain);
int anx_dist_grads_zero(anx_net *net);
int anx_dist_grads_end(anx_net *net, anx_dist_stats *st, char *err, size_t errlen);

/* FNV-1a over every parameter and both Adam moments (plain layout): equal on every rank that
 * holds the same state. */
uint64_t anx_dist_state_checksum(const anx_net *net);

#endif
