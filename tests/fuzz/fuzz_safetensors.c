/* libFuzzer target: the safetensors reader must reject any malformed file with an error, never
 * crash, read out of bounds or leak; whatever it accepts must be readable in full. */
#include <stdlib.h>
#include <string.h>

#include "anx/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_temp(data, size, ".safetensors");
    if (!path) return 0;
    anx_st_file f;
    char err[512];
    if (anx_st_read(&f, path, err, sizeof err) == 0) {
        for (int i = 0; i < f.count; i++) {
            const anx_st_tensor *t = &f.tensors[i];
            if (t->count > (1u << 20)) continue;
            if (t->dtype == ANX_DTYPE_I64) {
                int64_t *v = malloc((t->count ? t->count : 1) * sizeof *v);
                if (v) anx_st_get_i64(&f, t->name, v, t->count, err, sizeof err);
                free(v);
            } else {
                float *v = malloc((t->count ? t->count : 1) * sizeof *v);
                if (v) anx_st_get_f32(&f, t->name, v, t->count, NULL, -1, err, sizeof err);
                free(v);
            }
        }
        anx_st_meta(&f, "backend");
        anx_st_free(&f);
    }
    return 0;
}
