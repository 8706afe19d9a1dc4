/* The float32 instance of ref/relu.inc (the ref backend's kernels; ref/ref_type.h). */
#include "ref/ref.h"
#include "ref/relu.inc"
