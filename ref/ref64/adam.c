/* The float64 instance of ref/adam.inc (anx/ref64.h; ref/ref_type.h): PyTorch 1.13's Adam on a
 * float64 tensor, as the golden generator's model runs it (scalars stay doubles, fma as in float32). */
#define REF_F64 1
#include "anx/ref64.h"
#include "ref/adam.inc"

void anx_f64_adam__ref64(double *param, const double *grad, double *exp_avg, double *exp_avg_sq, size_t count,
                         double lr, double beta1, double beta2, double eps, int64_t t)
{
    adam_loop(param, grad, exp_avg, exp_avg_sq, count, lr, beta1, beta2, eps, t, 0);
}
