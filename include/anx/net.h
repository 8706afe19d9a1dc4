/* anx/net.h — the step driver: Alexnet on one backend, one batch size.
 *
 * One allocation holds parameters, gradients and both Adam moments, each a contiguous region
 * in the backend's layout (views per parameter into it), so Adam is one pass over 4 arrays.
 * Activations and their gradients stay in the backend's layout between layers; plain NCHW is
 * only seen through the set_/get_ functions.
 */
#ifndef ANX_NET_H
#define ANX_NET_H

#include <stddef.h>
#include <stdint.h>

#include "anx/backend.h"
#include "anx/model.h"

typedef struct anx_net anx_net;

typedef enum anx_state { ANX_PARAM, ANX_GRAD, ANX_EXP_AVG, ANX_EXP_AVG_SQ, ANX_STATE_COUNT } anx_state;

/* NULL with a one-line reason in err when the config is refused, the backend is unavailable
 * or declines a layer, or memory runs out. */
anx_net *anx_net_create(const anx_backend *be, const anx_model_config *cfg, int threads, char *err,
                        size_t errlen);
void anx_net_destroy(anx_net *net);
const anx_model *anx_net_model(const anx_net *net);
const anx_backend *anx_net_backend(const anx_net *net);

/* Functions that can fail return 0, or -1 with anx_net_error(net) one line naming the culprit:
 * the layer, direction and backend, and what failed there ("Conv2d-4 bwd_data on avx2: out of
 * memory for conv weights transposed for bwd_data (3.4 MiB)").  Nothing in this library exits. */
const char *anx_net_error(const anx_net *net);

/* PyTorch-default init from the RNG (anx/rng.h), Adam state zeroed, step counter 0.  0 / -1. */
int anx_net_init_params(anx_net *net, uint64_t seed);
/* Plain (PyTorch-layout) access to parameter p (index into anx_model.params). */
void anx_net_set_state(anx_net *net, anx_state s, int p, const float *plain);
void anx_net_get_state(const anx_net *net, anx_state s, int p, float *plain);
int64_t anx_net_step_count(const anx_net *net); /* Adam's t: number of updates done */
void anx_net_set_step_count(anx_net *net, int64_t t);

/* The batch: input [n, in_dim, hw, hw] NCHW and targets [n].  Returns 0, or -1 when a target is
 * outside 0..n_class-1 (nothing is changed then). */
int anx_net_set_input(anx_net *net, const float *input, const int64_t *target);
/* Dropout masks [n, 4096] plain for Dropout-16 and Dropout-19, used for every following step;
 * NULL, NULL goes back to drawing them from the seed: key(seed, "Dropout-16", step) where step
 * is the 1-based number of the update the forward pass belongs to.  0 / -1 (out of memory). */
int anx_net_set_masks(anx_net *net, const float *mask16, const float *mask19);
void anx_net_set_dropout_seed(anx_net *net, uint64_t seed);
/* Data parallelism (docs/mpi.md): this net's batch is samples first.. of a larger global batch, so
 * its drawn masks are elements (first + i) * 4096 + k of the global batch's stream (default 0). */
void anx_net_set_dropout_offset(anx_net *net, int64_t first);

/* Called by anx_net_backward with layer >= 0 as soon as that layer's parameter gradients are final
 * (after its bwd_weights), and with layer -1 after every other layer's backward: the gradient
 * exchange starts a layer's allreduce there and progresses the ones in flight.  NULL: none. */
typedef void (*anx_net_bwd_hook)(void *ctx, anx_net *net, int layer);
void anx_net_set_bwd_hook(anx_net *net, anx_net_bwd_hook hook, void *ctx);
/* The gradients of layer's weight and bias: one contiguous run of *count floats in the backend's
 * layout (padding included, which every backend keeps 0).  NULL when the layer has none. */
float *anx_net_grad_bucket(anx_net *net, int layer, size_t *count);

/* forward (train: dropout on; eval: identity) and the loss: *loss = the mean loss.  0 / -1. */
int anx_net_forward(anx_net *net, int train, float *loss);
/* backward from the loss of the last forward: every grad_out and parameter gradient.  0 / -1. */
int anx_net_backward(anx_net *net);
/* one Adam update (t += 1) with betas 0.9/0.999, eps 1e-8 (over memory the net holds: cannot fail) */
void anx_net_adam(anx_net *net, float lr);
/* forward(train) + backward + adam: *loss = the forward's loss.  0 / -1 (then no update was made). */
int anx_net_train_step(anx_net *net, float lr, float *loss);

/* Plain NCHW copies of a layer's forward output (grad = 0) or dLoss/d output (grad = 1). */
void anx_net_get_activation(const anx_net *net, int layer, int grad, float *plain);
/* The dropout mask in use for layer (a Dropout layer index), plain [n, 4096]. */
void anx_net_get_mask(const anx_net *net, int layer, float *plain);

/* TIMING ONLY -- a bare net does not train.  on = 1: every (layer, direction) for which the
 * backend has a library_exec (anx/backend.h: the library's own call alone, without anx's bias
 * pass, flatten, layout conversions, NaN rule or checks) runs that instead of exec, so that
 * anx_net_layer_seconds times the bare library call at its place inside the step, with caches as
 * the layer before left them (a bare call repeated alone in a loop finds them warm).  The other
 * (layer, direction)s, and each one's first call after anx_net_create, run exec as always:
 * library_exec's contract is to run after one exec of the same call (whose copies it reads).
 * What a bare step leaves in activations, gradients, parameters and the loss is NOT a training
 * step's result and may be non-finite: the driver never judges the loss, so a bare step still
 * runs and times every layer and returns 0 (only a call's status, a real failure, stops it).
 * on = 0 (the default) is the normal step; switching back does not repair the state.  Returns how
 * many of the step's (layer, direction)s have a library_exec here (0: bare changes nothing). */
int anx_net_set_bare(anx_net *net, int on);

/* Seconds spent in (layer, dir) during the last forward/backward; loss is layer ANX_NUM_LAYERS. */
double anx_net_layer_seconds(const anx_net *net, int layer, anx_dir dir);
double anx_net_adam_seconds(const anx_net *net);

/* Bytes the backend's context of a layer holds beside the tensors now (scratchpads, reordered
 * weights: anx_backend.workspace_bytes; not the net's scratch; loss is layer ANX_NUM_LAYERS),
 * or -1 when the backend does not report it. */
long long anx_net_workspace_bytes(const anx_net *net, int layer);
/* Bytes of the one scratch buffer the net allocated for all its layers' calls (anx_args.scratch:
 * the largest of the backend's scratch_bytes over the layers), *layer (when not NULL) the layer
 * whose need sized it (-1: none needs any); -1 when the backend has no scratch_bytes. */
long long anx_net_scratch_bytes(const anx_net *net, int *layer);

/* *layer = the first layer (0-based, torchsummary order; ANX_NUM_LAYERS = the loss) whose forward
 * output holds a NaN or Inf after the last forward, or -1 when all are finite.  Costs one export
 * per layer.  0, or -1 when its export buffer cannot be allocated (*layer is then unset). */
int anx_net_first_nonfinite(anx_net *net, int *layer);

#endif
