/* libFuzzer target: the PNG loader (libpng underneath) must turn any corrupt, truncated or
 * hostile file into an error naming it, never a crash, an out-of-bounds access or a leak. */
#include <stdlib.h>

#include "anx/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_temp(data, size, ".png");
    if (!path) return 0;
    anx_image img = {0};
    char err[512];
    if (anx_png_read(&img, path, err, sizeof err) == 0) {
        /* the whole transform, at a small size to keep the fuzzer fast */
        if ((size_t)img.w * img.h <= (1u << 22)) {
            float *x = malloc(3 * 16 * 16 * sizeof *x);
            float *t = malloc((size_t)3 * img.w * img.h * sizeof *t);
            if (x && t) {
                anx_image_to_tensor(t, &img);
                anx_f32_resize_bilinear__ref(x, t, 3, img.h, img.w, 16, 16, 1);
            }
            free(x), free(t);
        }
        anx_image_free(&img);
    }
    return 0;
}
