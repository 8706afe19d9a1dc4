/* test_ref_step_time: one full-size AlexNet(3, 1000) training step at batch 2 on the ref backend
 * through the step driver, timed per layer and direction.  It prints the times and asserts only
 * what is not a time: the loss is finite and every parameter gradient is finite.
 * Usage: test_ref_step_time [threads] [batch]     (defaults: OpenMP's default, 2)
 */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include <omp.h>

#include "anx/net.h"
#include "anx/rng.h"
#include "testutil.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU seconds of all threads: on a shared machine wall time includes waiting for a core */
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    int batch = argc > 2 ? atoi(argv[2]) : 2;
    anx_model_config cfg = {3, 1000, batch, 227};
    char err[256];
    anx_net *net = anx_net_create(&anx_backend_ref, &cfg, threads, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create: %s", err);
    if (!net) return tu_finish("test_ref_step_time");
    const anx_model *m = anx_net_model(net);
    anx_net_init_params(net, 1);
    size_t nin = (size_t)batch * 3 * 227 * 227;
    float *input = malloc(nin * sizeof *input);
    int64_t *target = malloc(batch * sizeof *target);
    anx_rng_fill_u01(input, nin, anx_rng_key(1, "input", 0));
    anx_rng_fill_targets(target, batch, anx_rng_key(1, "target", 0), 1000);
    anx_net_set_input(net, input, target);
    anx_net_set_dropout_seed(net, 1);

    double t0 = now(), c0 = cpu_now();
    float loss = tu_net_forward(net, 1);
    double t1 = now(), c1 = cpu_now();
    tu_net_backward(net);
    double t2 = now(), c2 = cpu_now();
    anx_net_adam(net, 1e-3f);
    double t3 = now(), c3 = cpu_now();

    printf("ref AlexNet(3, 1000) batch %d, %d threads: loss %.6f (ln 1000 = %.6f)\n", batch, threads, loss, log(1000.0));
    printf("%-18s %10s %10s %12s\n", "layer", "fwd ms", "bwd_data", "bwd_weights");
    for (int i = 0; i <= ANX_NUM_LAYERS; i++) {
        const char *name = i < ANX_NUM_LAYERS ? m->layers[i].name : m->loss.name;
        printf("%-18s %10.1f %10.1f %12.1f\n", name, 1e3 * anx_net_layer_seconds(net, i, ANX_FWD),
               1e3 * anx_net_layer_seconds(net, i, ANX_BWD_DATA), 1e3 * anx_net_layer_seconds(net, i, ANX_BWD_WEIGHTS));
    }
    printf("wall: forward %.3f s, backward %.3f s, fwd+bwd %.3f s, adam %.3f s, step %.3f s\n", t1 - t0,
           t2 - t1, t2 - t0, t3 - t2, t3 - t0);
    printf("cpu (all threads): forward %.3f s, backward %.3f s, fwd+bwd %.3f s, adam %.3f s, step %.3f s\n",
           c1 - c0, c2 - c1, c2 - c0, c3 - c2, c3 - c0);

    TU_CHECKF(isfinite(loss), "loss is %g", loss);
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        size_t n = m->params[p].count, bad = 0;
        float *g = malloc(n * sizeof *g);
        anx_net_get_state(net, ANX_GRAD, p, g);
        for (size_t i = 0; i < n; i++) bad += !isfinite(g[i]);
        TU_CHECKF(bad == 0, "%zu non-finite elements in grad.%s", bad, m->params[p].name);
        free(g);
    }
    anx_net_destroy(net);
    free(input), free(target);
    return tu_finish("test_ref_step_time");
}
