/* ref/ref_type.h — the element type of one instance of the reference kernel templates (*.inc).
 *
 * Every kernel of ref/ is written once, over REF_T, and compiled twice:
 *   ref/<op>.c        REF_T = float,  names anx_f32_<op>_<dir>__ref   (the ref backend, ref/ref.h)
 *   ref/ref64/<op>.c  REF_T = double, names anx_f64_<op>_<dir>__ref64 (anx/ref64.h), with REF_F64
 * so the float64 reference runs the same loops in the same summation order as the float32 one:
 * the two differ only by the rounding of each operation (verify's float64 bounds rely on it).
 * No include guard: each translation unit includes it once, through the template it compiles.
 */
#include <math.h>

#ifdef REF_F64
#define REF_T double
#define REF_FN(opdir) anx_f64_##opdir##__ref64
#define REF_FMA fma
#define REF_SQRT sqrt
#else
#define REF_T float
#define REF_FN(opdir) anx_f32_##opdir##__ref
#define REF_FMA fmaf
#define REF_SQRT sqrtf
#endif
