/* The float64 instance of ref/loss.inc (anx/ref64.h; ref/ref_type.h): same loops, same order. */
#define REF_F64 1
#include "anx/ref64.h"
#include "ref/loss.inc"
