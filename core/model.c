/* Alexnet(in_dim, n_class): the 20 torchsummary rows, the loss and the 16 parameters. */
#include "anx/model.h"

#include <stdio.h>
#include <string.h>

/* The model, one row per torchsummary layer:
 * X(op, torchsummary name, state_dict prefix, bench tag, out channels, kernel, stride, pad) */
#define ANX_ALEXNET_LAYERS(X)                                   \
    X(CONV2D, "Conv2d-1", "conv.0", "conv1", 96, 11, 4, 0)      \
    X(RELU, "ReLU-2", "", "relu1", 0, 0, 0, 0)                  \
    X(MAXPOOL, "MaxPool2d-3", "", "pool1", 0, 3, 2, 0)          \
    X(CONV2D, "Conv2d-4", "conv.3", "conv2", 256, 5, 1, 2)      \
    X(RELU, "ReLU-5", "", "relu2", 0, 0, 0, 0)                  \
    X(MAXPOOL, "MaxPool2d-6", "", "pool2", 0, 3, 2, 0)          \
    X(CONV2D, "Conv2d-7", "conv.6", "conv3", 384, 3, 1, 1)      \
    X(RELU, "ReLU-8", "", "relu3", 0, 0, 0, 0)                  \
    X(CONV2D, "Conv2d-9", "conv.8", "conv4", 384, 3, 1, 1)      \
    X(RELU, "ReLU-10", "", "relu4", 0, 0, 0, 0)                 \
    X(CONV2D, "Conv2d-11", "conv.10", "conv5", 256, 3, 1, 1)    \
    X(RELU, "ReLU-12", "", "relu5", 0, 0, 0, 0)                 \
    X(MAXPOOL, "MaxPool2d-13", "", "pool3", 0, 3, 2, 0)         \
    X(LINEAR, "Linear-14", "fc.0", "fc6", 4096, 0, 0, 0)        \
    X(RELU, "ReLU-15", "", "relu6", 0, 0, 0, 0)                 \
    X(DROPOUT, "Dropout-16", "", "drop6", 0, 0, 0, 0)           \
    X(LINEAR, "Linear-17", "fc.3", "fc7", 4096, 0, 0, 0)        \
    X(RELU, "ReLU-18", "", "relu7", 0, 0, 0, 0)                 \
    X(DROPOUT, "Dropout-19", "", "drop7", 0, 0, 0, 0)           \
    X(LINEAR, "Linear-20", "fc.6", "fc8", -1, 0, 0, 0)

typedef struct {
    anx_op op;
    const char *name, *param, *tag;
    int oc, k, stride, pad;
} layer_row;

static const layer_row alexnet_rows[ANX_NUM_LAYERS] = {
#define ANX_X_ROW(op, name, param, tag, oc, k, s, p) {ANX_OP_##op, name, param, tag, oc, k, s, p},
    ANX_ALEXNET_LAYERS(ANX_X_ROW)
#undef ANX_X_ROW
};

/* The flatten before Linear-14 must see exactly this (the tutorial's nn.Linear(9216, 4096)). */
enum { FLAT_C = 256, FLAT_HW = 6 };

static void copy_name(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

static int window_out(int in, int k, int stride, int pad)
{
    int span = in - k + 2 * pad;
    return span < 0 ? 0 : span / stride + 1;
}

static int build_layer(anx_layer_desc *l, const layer_row *row, int idx, const anx_layer_desc *prev,
                       const anx_model_config *cfg, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->op = row->op;
    l->index = idx + 1;
    copy_name(l->name, sizeof l->name, row->name);
    copy_name(l->param, sizeof l->param, row->param);
    copy_name(l->tag, sizeof l->tag, row->tag);
    l->n = cfg->batch;
    if (prev) {
        l->ic = prev->oc, l->ih = prev->oh, l->iw = prev->ow;
    } else {
        l->ic = cfg->in_dim, l->ih = cfg->input_hw, l->iw = cfg->input_hw;
    }
    switch (row->op) {
    case ANX_OP_CONV2D:
    case ANX_OP_MAXPOOL:
        l->kh = l->kw = row->k;
        l->stride = row->stride;
        l->pad = row->pad;
        l->oc = row->op == ANX_OP_CONV2D ? row->oc : l->ic;
        l->oh = window_out(l->ih, l->kh, l->stride, l->pad);
        l->ow = window_out(l->iw, l->kw, l->stride, l->pad);
        if (l->oh < 1 || l->ow < 1) {
            snprintf(err, errlen, "%s: input %dx%dx%d is smaller than its %dx%d window (input size %d)",
                     l->name, l->ic, l->ih, l->iw, l->kh, l->kw, cfg->input_hw);
            return -1;
        }
        break;
    case ANX_OP_LINEAR:
        if (idx == 13 && (l->ic != FLAT_C || l->ih != FLAT_HW || l->iw != FLAT_HW)) {
            snprintf(err, errlen,
                     "%s needs %dx%dx%d (9216 features) from MaxPool2d-13, got %dx%dx%d for input size %d (227..258 fit)",
                     l->name, FLAT_C, FLAT_HW, FLAT_HW, l->ic, l->ih, l->iw, cfg->input_hw);
            return -1;
        }
        l->kh = l->ih, l->kw = l->iw;
        l->oc = row->oc > 0 ? row->oc : cfg->n_class;
        l->oh = l->ow = 1;
        break;
    case ANX_OP_DROPOUT:
        l->p = 0.5f;
        /* fall through */
    case ANX_OP_RELU:
        l->oc = l->ic, l->oh = l->ih, l->ow = l->iw;
        break;
    default:
        break;
    }
    return 0;
}

static void add_params(anx_model *m, int *np, int layer)
{
    const anx_layer_desc *l = &m->layers[layer];
    for (int s = 0; s < 2; s++) {
        anx_param_info *p = &m->params[(*np)++];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s.%s", l->param, s == 0 ? "weight" : "bias");
        p->layer = layer;
        p->slot = s == 0 ? ANX_WEIGHTS : ANX_BIAS;
        p->fan_in = l->ic * l->kh * l->kw;
        p->count = anx_desc_plain_count(l, p->slot);
        if (s == 1) {
            p->ndim = 1, p->shape[0] = l->oc;
        } else if (l->op == ANX_OP_CONV2D) {
            p->ndim = 4;
            p->shape[0] = l->oc, p->shape[1] = l->ic, p->shape[2] = l->kh, p->shape[3] = l->kw;
        } else {
            p->ndim = 2, p->shape[0] = l->oc, p->shape[1] = p->fan_in;
        }
    }
}

int anx_model_init(anx_model *m, const anx_model_config *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (cfg->in_dim < 1 || cfg->n_class < 1 || cfg->batch < 1 || cfg->input_hw < 1) {
        snprintf(err, errlen, "model: in_dim %d, classes %d, batch %d and input %d must all be >= 1",
                 cfg->in_dim, cfg->n_class, cfg->batch, cfg->input_hw);
        return -1;
    }
    int np = 0;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        if (build_layer(&m->layers[i], &alexnet_rows[i], i, i ? &m->layers[i - 1] : NULL, cfg, err,
                        errlen))
            return -1;
        if (anx_desc_has_weights(&m->layers[i])) add_params(m, &np, i);
    }
    anx_layer_desc *loss = &m->loss;
    const anx_layer_desc *last = &m->layers[ANX_NUM_LAYERS - 1];
    loss->op = ANX_OP_LOSS;
    loss->index = ANX_NUM_LAYERS + 1;
    copy_name(loss->name, sizeof loss->name, "CrossEntropyLoss");
    copy_name(loss->tag, sizeof loss->tag, "loss");
    loss->n = cfg->batch;
    loss->ic = last->oc, loss->ih = 1, loss->iw = 1;
    loss->oc = 1, loss->oh = 1, loss->ow = 1;
    return 0;
}

int anx_model_find_layer(const anx_model *m, const char *name)
{
    for (int i = 0; i < ANX_NUM_LAYERS; i++)
        if (strcmp(m->layers[i].name, name) == 0) return i;
    return -1;
}

int anx_model_find_param(const anx_model *m, const char *name)
{
    for (int i = 0; i < ANX_NUM_PARAMS; i++)
        if (strcmp(m->params[i].name, name) == 0) return i;
    return -1;
}

size_t anx_model_param_count(const anx_model *m)
{
    size_t total = 0;
    for (int i = 0; i < ANX_NUM_PARAMS; i++) total += m->params[i].count;
    return total;
}
