/* The float32 instance of ref/adam.inc (the ref backend's Adam; ref/ref_type.h). */
#include "ref/ref.h"
#include "ref/adam.inc"

void anx_f32_adam__ref(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, size_t count,
                       double lr, double beta1, double beta2, double eps, int64_t t, int threads)
{
    adam_loop(param, grad, exp_avg, exp_avg_sq, count, lr, beta1, beta2, eps, t, threads);
}
