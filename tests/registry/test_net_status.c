/* test_net_status: an exec's status reaches the caller of the step driver, named.
 *
 * A backend made here from the reference's table, with one exec slot replaced by one that
 * returns anx_status_oom("<workspace>", ...) instead of running, stands for a backend whose
 * workspace cannot be allocated.  anx_net_forward / anx_net_backward / anx_net_train_step must
 * return -1 (the library never exits) and anx_net_error must name the layer, the direction, the
 * backend and the workspace; a train step that failed must not have updated (Adam's t stays).
 * Alexnet(1, 10) at batch 1: the forward runs on the reference loops (a second or two).
 */
#include <string.h>

#include "anx/net.h"
#include "testutil.h"

static anx_status no_workspace(void *ctx, const anx_layer_desc *l, const anx_args *a)
{
    (void)ctx, (void)l, (void)a;
    return anx_status_oom("the planted workspace", (size_t)3 << 20);
}

/* The reference's table with exec[op][dir] failing. */
static anx_backend failing(anx_op op, anx_dir dir)
{
    anx_backend be = *anx_backend_reference();
    be.name = "planted";
    be.exec[op][dir] = no_workspace;
    return be;
}

static anx_net *make(const anx_backend *be)
{
    const anx_model_config cfg = {.in_dim = 1, .n_class = 10, .batch = 1, .input_hw = 227};
    char err[256];
    anx_net *net = anx_net_create(be, &cfg, 1, err, sizeof err);
    TU_CHECKF(net != NULL, "anx_net_create: %s", err);
    if (!net) return NULL;
    TU_CHECK(anx_net_init_params(net, 1) == 0);
    static float input[227 * 227];
    const int64_t target[1] = {3};
    for (int i = 0; i < 227 * 227; i++) input[i] = (float)(i % 17) / 17.0f;
    TU_CHECK(anx_net_set_input(net, input, target) == 0);
    return net;
}

static void expect_error(const anx_net *net, const char *what, const char *layer_dir)
{
    const char *e = anx_net_error(net);
    TU_CHECKF(strstr(e, layer_dir) && strstr(e, "on planted") && strstr(e, "out of memory for the planted workspace") &&
                  strstr(e, "3.0 MiB"),
              "%s: anx_net_error says \"%s\", want %s on planted: out of memory for the planted workspace (3.0 MiB)",
              what, e, layer_dir);
}

int main(void)
{
    /* forward: the first layer's forward fails */
    anx_backend fwd = failing(ANX_OP_CONV2D, ANX_FWD);
    anx_net *net = make(&fwd);
    if (net) {
        float loss = -1.0f;
        TU_CHECK(anx_net_forward(net, 1, &loss) == -1);
        TU_CHECKF(loss == -1.0f, "a failed forward wrote the loss (%g)", (double)loss);
        expect_error(net, "forward", "Conv2d-1 fwd");
        TU_CHECK(anx_net_train_step(net, 1e-3f, &loss) == -1);
        TU_CHECKF(anx_net_step_count(net) == 0, "a failed train step updated (t = %lld)", (long long)anx_net_step_count(net));
        anx_net_destroy(net);
    }
    /* backward: the loss's backward (the first exec of the backward pass) fails */
    anx_backend bwd = failing(ANX_OP_LOSS, ANX_BWD_DATA);
    net = make(&bwd);
    if (net) {
        float loss = -1.0f;
        TU_CHECK(anx_net_forward(net, 1, &loss) == 0);
        TU_CHECKF(loss > 0.0f && loss < 10.0f, "the forward's loss %g", (double)loss);
        TU_CHECK(anx_net_backward(net) == -1);
        expect_error(net, "backward", "CrossEntropyLoss bwd_data");
        anx_net_destroy(net);
    }
    return tu_finish("test_net_status");
}
