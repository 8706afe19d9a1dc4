/* Resize against torchvision 0.14 (F.resize on float tensors, bilinear, align_corners=False)
 * with antialias off and on, and the whole transform (decode, ToTensor, Resize((227,227))) of
 * two pictures.  Expectations: data/fixtures/expected.safetensors (gen_fixtures.py).
 *
 * Tolerance 1e-5 absolute on values in [0, 1]: both sides compute in float32 with the same
 * taps; the only freedom is association and rounding order in a 2..9-term weighted sum of
 * terms <= 1 with weights summing to 1, i.e. a few ulps of 1 (6e-8 each), far below 1e-5.
 * A wrong tap or weight (off-by-one, align_corners=True, a missing antialias) moves values
 * by 1e-2 and more on this random data, so the bound separates right from wrong. */
#include <stdlib.h>
#include <string.h>

#include "anx/data.h"
#include "anx/safetensors.h"
#include "testutil.h"

#define FIX ANX_SOURCE_DIR "/data/fixtures"
#define TOL 1e-5

static float *get(const anx_st_file *f, const char *key, int64_t *shape)
{
    const anx_st_tensor *t = anx_st_find(f, key);
    TU_CHECKF(t != NULL, "expected.safetensors has no %s", key);
    if (!t) return NULL;
    float *p = tu_alloc(t->count, key);
    char err[512];
    if (anx_st_get_f32(f, key, p, t->count, t->shape, t->ndim, err, sizeof err)) TU_CHECKF(0, "%s", err);
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return p;
}

static void check_case(const anx_st_file *f, const char *name)
{
    char key[64];
    int64_t ss[3], es[3];
    snprintf(key, sizeof key, "resize.%s.src", name);
    float *src = get(f, key, ss);
    for (int aa = 0; aa < 2 && src; aa++) {
        snprintf(key, sizeof key, "resize.%s.aa%d", name, aa);
        float *want = get(f, key, es);
        if (!want) continue;
        size_t n = (size_t)es[0] * es[1] * es[2];
        float *got = tu_alloc(n, "got");
        TU_CHECK(anx_f32_resize_bilinear__ref(got, src, (int)ss[0], (int)ss[1], (int)ss[2], (int)es[1], (int)es[2], aa) == 0);
        printf("  %s antialias=%d: [%lld,%lld,%lld] -> [%lld,%lld,%lld]\n", name, aa, (long long)ss[0],
               (long long)ss[1], (long long)ss[2], (long long)es[0], (long long)es[1], (long long)es[2]);
        tu_expect_close(got, want, n, TOL, 0, key);
        tu_free(got);
        tu_free(want);
    }
    if (src) tu_free(src);
}

static void check_pipeline(const anx_st_file *f, const char *img)
{
    char path[512], key[64], err[512];
    snprintf(path, sizeof path, FIX "/png/%s.png", img);
    for (int aa = 0; aa < 2; aa++) {
        int64_t es[3];
        snprintf(key, sizeof key, "pipeline.%s.aa%d", img, aa);
        float *want = get(f, key, es);
        if (!want) continue;
        float *got = tu_alloc(3 * 227 * 227, "got");
        TU_CHECKF(anx_image_load(got, path, 227, aa, err, sizeof err) == 0, "%s", err);
        tu_expect_close(got, want, 3 * 227 * 227, TOL, 0, key);
        tu_free(got);
        tu_free(want);
    }
}

int main(void)
{
    anx_st_file f;
    char err[512];
    if (anx_st_read(&f, FIX "/expected.safetensors", err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    check_case(&f, "down");
    check_case(&f, "up");
    check_case(&f, "mixed");
    check_pipeline(&f, "photo_down");
    check_pipeline(&f, "photo_up");
    /* same size: torchvision returns the input unchanged */
    float src[12], dst[12];
    for (int i = 0; i < 12; i++) src[i] = (float)i / 11;
    TU_CHECK(anx_f32_resize_bilinear__ref(dst, src, 3, 2, 2, 2, 2, 1) == 0 && memcmp(dst, src, sizeof src) == 0);
    anx_st_free(&f);
    return tu_finish("test_resize");
}
