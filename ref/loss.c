/* The float32 instance of ref/loss.inc (the ref backend's kernels; ref/ref_type.h). */
#include "ref/ref.h"
#include "ref/loss.inc"
