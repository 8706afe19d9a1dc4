/* The float32 instance of ref/conv2d.inc (the ref backend's kernels; ref/ref_type.h). */
#include "ref/ref.h"
#include "ref/conv2d.inc"
