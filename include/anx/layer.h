/* anx/layer.h — layer descriptors: what one layer of the model computes, at one batch size.
 *
 * A descriptor is pure shape information; it owns nothing.  The model (anx/model.h) makes
 * the 20 descriptors of Alexnet(in_dim, n_class) plus one for the loss, and every backend,
 * test and benchmark works from them, so shapes cannot drift between those places.
 */
#ifndef ANX_LAYER_H
#define ANX_LAYER_H

#include <stddef.h>
#include <stdint.h>

/* X-macro list of layer kinds: X(enum suffix, lower-case name used in logs and benchmarks) */
#define ANX_OP_LIST(X) \
    X(CONV2D, conv2d)   \
    X(RELU, relu)       \
    X(MAXPOOL, maxpool) \
    X(LINEAR, linear)   \
    X(DROPOUT, dropout) \
    X(LOSS, loss)

typedef enum anx_op {
#define ANX_X_ENUM(e, s) ANX_OP_##e,
    ANX_OP_LIST(ANX_X_ENUM)
#undef ANX_X_ENUM
    ANX_OP_COUNT
} anx_op;

/* The three directions of oneDNN.  For ops without weights only FWD and BWD_DATA exist. */
#define ANX_DIR_LIST(X)          \
    X(FWD, fwd)                  \
    X(BWD_DATA, bwd_data)        \
    X(BWD_WEIGHTS, bwd_weights)

typedef enum anx_dir {
#define ANX_X_ENUM(e, s) ANX_##e,
    ANX_DIR_LIST(ANX_X_ENUM)
#undef ANX_X_ENUM
    ANX_DIR_COUNT
} anx_dir;

/* The tensors a layer touches.  A diff tensor has the layout of its primal:
 * diff_src ~ SRC, diff_dst ~ DST, diff_weights ~ WEIGHTS, diff_bias ~ BIAS, dropout mask ~ DST. */
typedef enum anx_slot { ANX_SRC, ANX_DST, ANX_WEIGHTS, ANX_BIAS, ANX_SLOT_COUNT } anx_slot;

typedef struct anx_layer_desc {
    anx_op op;
    int index;          /* torchsummary row 1..20; 21 for the loss */
    char name[24];      /* torchsummary name: "Conv2d-1", "ReLU-2", ..., "CrossEntropyLoss" */
    char param[16];     /* state_dict prefix of its parameters ("conv.0", "fc.6"), "" if none */
    char tag[8];        /* short name for benchmarks: conv1..conv5, fc6..fc8, relu1.., pool1..3, drop6, drop7, loss */
    int n;              /* batch */
    int ic, ih, iw;     /* input  [n, ic, ih, iw].  Linear-14 sees [n,256,6,6] (the flatten is a view);
                           the other Linears see [n, in_features, 1, 1]. */
    int oc, oh, ow;     /* output [n, oc, oh, ow]; Linear and loss: oh = ow = 1 (loss: oc = 1) */
    int kh, kw;         /* Conv2d / MaxPool2d window; Linear: kh = ih, kw = iw (a Linear is a conv
                           whose kernel covers its whole input, weights [oc, ic*ih*iw] == OIHW) */
    int stride, pad;    /* Conv2d / MaxPool2d */
    float p;            /* Dropout probability */
} anx_layer_desc;

const char *anx_op_name(anx_op op);    /* "conv2d", ... */
const char *anx_dir_name(anx_dir dir); /* "fwd", "bwd_data", "bwd_weights" */

/* Element counts of the plain (PyTorch) layout of each slot: NCHW, OIHW, [oc]. */
size_t anx_desc_plain_count(const anx_layer_desc *l, anx_slot slot);
int anx_desc_has_weights(const anx_layer_desc *l); /* Conv2d and Linear */

/* FLOPs of one call, as DESIGN.md section 6 counts them (2*N*OC*OH*OW*IC*KH*KW for conv and
 * linear in all three directions; one per output element for the element-wise ops). */
double anx_desc_flops(const anx_layer_desc *l, anx_dir dir);
/* The same without the products of zero padding: for conv2d only the taps that read the input
 * (about 9% fewer at conv2 and 10% at conv3-5; the count benchdnn uses); anx_desc_flops
 * otherwise.  Kernels that skip the padding (the avx2 and oneDNN ones) do exactly this work. */
double anx_desc_flops_unpadded(const anx_layer_desc *l, anx_dir dir);

#endif
