/* The float32 instance of ref/dropout.inc (the ref backend's kernels; ref/ref_type.h). */
#include "ref/ref.h"
#include "ref/dropout.inc"
