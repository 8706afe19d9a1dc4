/* anx/model.h — Alexnet(in_dim, n_class) of the tutorial: shapes and parameters. */
#ifndef ANX_MODEL_H
#define ANX_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "anx/layer.h"

#define ANX_NUM_LAYERS 20 /* torchsummary rows */
#define ANX_NUM_PARAMS 16 /* state_dict entries: 8 layers x (weight, bias) */

typedef struct anx_model_config {
    int in_dim;   /* input channels (3 RGB, 1 grayscale) */
    int n_class;  /* classes */
    int batch;
    int input_hw; /* input height = width; 227..258 reach 256x6x6 */
} anx_model_config;

typedef struct anx_param_info {
    char name[24];   /* state_dict key: "conv.0.weight" */
    int layer;       /* index into anx_model.layers (0-based) */
    anx_slot slot;   /* ANX_WEIGHTS or ANX_BIAS */
    int ndim;
    int64_t shape[4]; /* PyTorch shape: [oc, ic, kh, kw], [out, in], [oc] */
    size_t count;
    int fan_in;      /* ic*kh*kw: init bound is 1/sqrt(fan_in) for weight and bias */
} anx_param_info;

typedef struct anx_model {
    anx_model_config cfg;
    anx_layer_desc layers[ANX_NUM_LAYERS]; /* torchsummary order */
    anx_layer_desc loss;                   /* CrossEntropyLoss on [n, n_class] */
    anx_param_info params[ANX_NUM_PARAMS]; /* state_dict order */
} anx_model;

/* Builds the descriptors.  Returns 0, or -1 with a one-line reason in err naming the layer
 * and sizes ("Linear-14 needs 256x6x6 from MaxPool2d-13, got 256x7x7 for input 240"). */
int anx_model_init(anx_model *m, const anx_model_config *cfg, char *err, size_t errlen);

/* Index of the layer named name ("Conv2d-4"), or -1. */
int anx_model_find_layer(const anx_model *m, const char *name);
/* Index of the param named name ("fc.0.weight"), or -1. */
int anx_model_find_param(const anx_model *m, const char *name);
/* Total parameter count (62,378,344 for Alexnet(3,1000)). */
size_t anx_model_param_count(const anx_model *m);

#endif
