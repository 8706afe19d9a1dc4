/* The float32 instance of ref/linear.inc (the ref backend's kernels; ref/ref_type.h). */
#include "ref/ref.h"
#include "ref/linear.inc"
